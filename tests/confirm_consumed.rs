//! A persistent publish is confirmed once its message is consumed, even while its journal
//! record waits for an fsync (see `crates/core/src/durable/mod.rs`), end to end over
//! STOMP and over AMQP with a third-party client (lapin): the receipt of a persistent SEND,
//! or the publisher confirm of a persistent publish, arrives after the consumer's
//! acknowledgement although every fsync is held; a message that is delivered but not
//! acknowledged still waits for one.

mod common;

use std::time::Duration;

use common::amqp::{deliveries, next};
use common::{Client, WAIT};
use ferromq_stomp::codec::{Command, Frame};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, PublisherConfirm};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_confirm_follows_the_consumers_ack_while_fsyncs_are_held() {
    let faults = ferromq_core::FaultInjector::new();
    let server = common::broker(|c| c.store.faults = faults.clone()).await;
    let addr = server.amqp_addr().unwrap();
    let queue = "confirm-consumed-amqp";
    let consumer_conn = common::amqp::connect(addr).await;
    let cch = consumer_conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    cch.queue_declare(queue.into(), durable, FieldTable::default())
        .await
        .unwrap();
    let consumer = cch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut rx = deliveries(&consumer);
    let producer_conn = common::amqp::connect(addr).await;
    let pch = producer_conn.create_channel().await.unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // A synced persistent publish first: the queue and the connections are settled.
    let warm = publish(&pch, queue, b"warm-up").await;
    let d = next(&mut rx).await;
    d.ack(BasicAckOptions::default()).await.unwrap();
    assert!(tokio::time::timeout(WAIT, warm)
        .await
        .unwrap()
        .unwrap()
        .is_ack());

    faults.hold_fsyncs(true);
    let one = publish(&pch, queue, b"one").await;
    let d = next(&mut rx).await;
    assert_eq!(&d.data[..], b"one");
    d.ack(BasicAckOptions::default()).await.unwrap();
    let confirm = tokio::time::timeout(WAIT, one)
        .await
        .expect("confirmed while every fsync is held")
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");

    // Delivered, not acknowledged: its confirm waits for the fsync.
    let two = publish(&pch, queue, b"two").await;
    let mut two = std::pin::pin!(two);
    let d = next(&mut rx).await;
    assert_eq!(&d.data[..], b"two");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), two.as_mut())
            .await
            .is_err(),
        "confirmed before its fsync although not consumed"
    );
    faults.hold_fsyncs(false);
    let confirm = tokio::time::timeout(WAIT, two.as_mut())
        .await
        .expect("confirmed once synced")
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    d.ack(BasicAckOptions::default()).await.unwrap();
    server.shutdown().await;
}

/// A persistent publish to the default exchange; the confirm to wait for.
async fn publish(ch: &Channel, queue: &str, body: &[u8]) -> PublisherConfirm {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("published")
}
