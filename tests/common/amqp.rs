//! lapin (a third-party AMQP 0-9-1 client) helpers for the black-box tests.

use std::net::SocketAddr;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::{Connection, ConnectionProperties, Consumer};
use tokio::sync::mpsc;

use super::WAIT;

/// Connects as guest to the default vhost.
pub async fn connect(addr: SocketAddr) -> Connection {
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    tokio::time::timeout(
        WAIT,
        Connection::connect(&uri, ConnectionProperties::default()),
    )
    .await
    .expect("connects in time")
    .expect("connects")
}

/// Deliveries of a consumer, in the order the broker sent them, as a channel the test can
/// wait on. One task reads the consumer's stream: a delegate would run one future per
/// delivery, and those can reach the channel out of order.
pub fn deliveries(consumer: &Consumer) -> mpsc::UnboundedReceiver<Delivery> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut stream = consumer.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = stream.next().await {
            if tx.send(d).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next delivery.
pub async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a delivery arrives in time")
        .expect("consumer open")
}
