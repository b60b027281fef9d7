//! A persistent publish is confirmed once its message is consumed, even while its journal
//! record waits for an fsync (see `crates/core/src/durable/mod.rs`), end to end over
//! STOMP: the receipt of a persistent SEND arrives after the consumer's ACK although every
//! fsync is held; a message that is delivered but not acknowledged still waits for one.

mod common;

use common::Client;
use ferromq_stomp::codec::{Command, Frame};

const QUEUE: &str = "/queue/confirm-consumed";

async fn ack_without_receipt(c: &mut Client, msg: &Frame) {
    let id = msg.headers.get("ack").expect("ack header").to_string();
    c.send_frame(Command::Ack, &[("id", &id)], b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_follows_the_consumers_ack_while_fsyncs_are_held() {
    let faults = ferromq_core::FaultInjector::new();
    let server = common::broker(|c| c.store.faults = faults.clone()).await;
    let mut consumer = Client::connect(server.stomp_addr().unwrap()).await;
    consumer.subscribe("s", QUEUE, "client-individual").await;
    let mut producer = Client::connect(server.stomp_addr().unwrap()).await;
    // A synced persistent send first: the queue and the connections are settled.
    producer
        .send(QUEUE, b"warm-up", &[("persistent", "true")])
        .await;
    let m = consumer.message().await;
    ack_without_receipt(&mut consumer, &m).await;

    faults.hold_fsyncs(true);
    let send = |receipt| {
        [
            ("destination", QUEUE),
            ("persistent", "true"),
            ("receipt", receipt),
        ]
    };
    producer
        .send_frame(Command::Send, &send("r1"), b"one")
        .await;
    let m = consumer.message().await;
    assert_eq!(&m.body[..], b"one");
    ack_without_receipt(&mut consumer, &m).await;
    let r = producer.frame().await;
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    assert_eq!(r.headers.get("receipt-id"), Some("r1"));

    // Delivered, not acknowledged: its receipt waits for the fsync.
    producer
        .send_frame(Command::Send, &send("r2"), b"two")
        .await;
    let m = consumer.message().await;
    assert_eq!(&m.body[..], b"two");
    producer.expect_silence(300).await;
    faults.hold_fsyncs(false);
    let r = producer.frame().await;
    assert_eq!(r.headers.get("receipt-id"), Some("r2"), "{r:?}");
    ack_without_receipt(&mut consumer, &m).await;
    server.shutdown().await;
}
