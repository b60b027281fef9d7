//! lapin (a third-party AMQP 0-9-1 client) helpers for the black-box tests.

use std::net::SocketAddr;

use lapin::message::{Delivery, DeliveryResult};
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

/// Deliveries of a consumer, as a channel the test can wait on.
pub fn deliveries(consumer: &Consumer) -> mpsc::UnboundedReceiver<Delivery> {
    let (tx, rx) = mpsc::unbounded_channel();
    consumer.set_delegate(move |d: DeliveryResult| {
        let tx = tx.clone();
        async move {
            if let Ok(Some(d)) = d {
                let _ = tx.send(d);
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
