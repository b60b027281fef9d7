//! Black-box AMQP 0-9-1 tests: the server in-process on an ephemeral port, driven by
//! lapin (a third-party client) over TCP, and by raw bytes where a client library would
//! not misbehave on purpose.

mod common;

use std::time::Duration;

use common::amqp::{deliveries, next};
use common::{broker, Client, WAIT};
use ferromq::Server;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::*;
use lapin::protocol::AMQPErrorKind;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

async fn connect(server: &Server) -> Connection {
    common::amqp::connect(server.amqp_addr().unwrap()).await
}

async fn channel(conn: &Connection) -> Channel {
    conn.create_channel().await.expect("channel opens")
}

fn ss(s: &str) -> ShortString {
    s.into()
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(ss(name), QueueDeclareOptions::default(), args)
        .await
        .expect("queue declared");
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> mpsc::UnboundedReceiver<Delivery> {
    let c = ch
        .basic_consume(
            ss(queue),
            ss(""),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    deliveries(&c)
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        ss(exchange),
        ss(key),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish");
}

/// The reply code of a failed operation.
fn code(e: &lapin::Error) -> u16 {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(e) => e.get_id(),
        other => panic!("not an AMQP error: {other:?}"),
    }
}

fn text(d: &Delivery) -> &str {
    std::str::from_utf8(&d.data).unwrap()
}

#[tokio::test]
async fn work_queue_with_acks_and_redelivery() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let p = channel(&conn).await;
    declare(&p, "work", FieldTable::default()).await;
    let worker_conn = connect(&server).await;
    let a = channel(&worker_conn).await;
    a.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut ra = consume(&a, "work", false).await;
    let b = channel(&worker_conn).await;
    b.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut rb = consume(&b, "work", false).await;
    for i in 0..4 {
        publish(
            &p,
            "",
            "work",
            format!("task{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    // Prefetch 1: each worker holds one until it acks.
    let first_a = next(&mut ra).await;
    let first_b = next(&mut rb).await;
    assert!(!first_a.redelivered);
    first_a.ack(BasicAckOptions::default()).await.unwrap();
    let second_a = next(&mut ra).await;
    // b closes without acking: its message goes to a, flagged redelivered.
    let held_by_b = text(&first_b).to_string();
    b.close(200, ss("bye")).await.unwrap();
    second_a.ack(BasicAckOptions::default()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let d = next(&mut ra).await;
        got.push((text(&d).to_string(), d.redelivered));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(got.contains(&(held_by_b, true)), "{got:?}");
    let q = p
        .queue_declare(
            ss("work"),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!((q.message_count(), q.consumer_count()), (0, 1));
    server.shutdown().await;
}

/// Large bodies are written from where they are kept (vectored writes, see
/// `protocols/amqp/src/out.rs`): a burst of them, of sizes around the splicing threshold
/// and over `frame_max`, fills the socket so that writes end midway and resume, and every
/// body must arrive whole, in order, byte for byte.
#[tokio::test]
async fn large_bodies_arrive_whole_and_in_order() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let p = channel(&conn).await;
    declare(&p, "big", FieldTable::default()).await;
    let sizes: [usize; 7] = [
        16,
        16 * 1024 - 1,
        16 * 1024,
        65_536,
        131_072 - 8,
        300_000,
        1,
    ];
    let body = |i: usize| -> Vec<u8> {
        let len = sizes[i % sizes.len()];
        (0..len).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect()
    };
    let n = 3 * sizes.len() * 10;
    for i in 0..n {
        publish(&p, "", "big", &body(i), BasicProperties::default()).await;
    }
    let consumer_conn = connect(&server).await;
    let c = channel(&consumer_conn).await;
    let mut rx = consume(&c, "big", true).await;
    for i in 0..n {
        let d = next(&mut rx).await;
        assert_eq!(d.data.len(), sizes[i % sizes.len()], "message {i}");
        assert!(d.data == body(i), "message {i}: body differs");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_exchange_type_routes() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let none = FieldTable::default();
    for (x, kind) in [
        ("d", ExchangeKind::Direct),
        ("f", ExchangeKind::Fanout),
        ("t", ExchangeKind::Topic),
        ("h", ExchangeKind::Headers),
    ] {
        ch.exchange_declare(ss(x), kind, ExchangeDeclareOptions::default(), none.clone())
            .await
            .unwrap();
    }
    for q in ["qd", "qf1", "qf2", "qt", "qh"] {
        declare(&ch, q, none.clone()).await;
    }
    let bind = |q: &'static str, x: &'static str, k: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.queue_bind(ss(q), ss(x), ss(k), QueueBindOptions::default(), args)
                .await
                .unwrap()
        }
    };
    bind("qd", "d", "red", none.clone()).await;
    bind("qf1", "f", "", none.clone()).await;
    bind("qf2", "f", "", none.clone()).await;
    bind("qt", "t", "logs.*.error", none.clone()).await;
    let mut hargs = FieldTable::default();
    hargs.insert(ss("x-match"), AMQPValue::LongString("all".into()));
    hargs.insert(ss("format"), AMQPValue::LongString("pdf".into()));
    bind("qh", "h", "", hargs).await;

    publish(&ch, "d", "red", b"direct", BasicProperties::default()).await;
    publish(&ch, "d", "blue", b"lost", BasicProperties::default()).await;
    publish(&ch, "f", "anything", b"fanout", BasicProperties::default()).await;
    publish(
        &ch,
        "t",
        "logs.app.error",
        b"topic",
        BasicProperties::default(),
    )
    .await;
    publish(
        &ch,
        "t",
        "logs.app.info",
        b"lost",
        BasicProperties::default(),
    )
    .await;
    let mut h = FieldTable::default();
    h.insert(ss("format"), AMQPValue::LongString("pdf".into()));
    publish(
        &ch,
        "h",
        "",
        b"headers",
        BasicProperties::default().with_headers(h),
    )
    .await;
    publish(&ch, "h", "", b"lost", BasicProperties::default()).await;

    for (q, want) in [
        ("qd", "direct"),
        ("qf1", "fanout"),
        ("qf2", "fanout"),
        ("qt", "topic"),
        ("qh", "headers"),
    ] {
        let got = ch
            .basic_get(ss(q), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{q} got nothing"));
        assert_eq!(text(&got.delivery), want);
        assert_eq!(got.message_count, 0, "{q} has exactly one message");
    }
    // Exchange to exchange: e2 -> f (fanout) reaches both fanout queues.
    ch.exchange_declare(
        ss("e2"),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        none.clone(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        ss("f"),
        ss("e2"),
        ss("k"),
        ExchangeBindOptions::default(),
        none.clone(),
    )
    .await
    .unwrap();
    publish(&ch, "e2", "k", b"via-e2e", BasicProperties::default()).await;
    for q in ["qf1", "qf2"] {
        let got = ch
            .basic_get(ss(q), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text(&got.delivery), "via-e2e");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn publisher_confirms_ack_and_nack() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(ss("x-max-length"), AMQPValue::LongInt(1));
    args.insert(
        ss("x-overflow"),
        AMQPValue::LongString("reject-publish".into()),
    );
    declare(&ch, "small", args).await;
    let c1 = ch
        .basic_publish(
            ss(""),
            ss("small"),
            BasicPublishOptions::default(),
            b"1",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c1.is_ack());
    let c2 = ch
        .basic_publish(
            ss(""),
            ss("small"),
            BasicPublishOptions::default(),
            b"2",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c2.is_nack(), "a full reject-publish queue nacks");
    // Many in flight, then wait for all.
    for i in 0..500 {
        ch.basic_publish(
            ss(""),
            ss("nowhere"),
            BasicPublishOptions::default(),
            format!("{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    let returned = tokio::time::timeout(WAIT, ch.wait_for_confirms())
        .await
        .unwrap()
        .unwrap();
    assert!(returned.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_before_its_ack() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            ss("amq.direct"),
            ss("no-such-key"),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounce",
            BasicProperties::default().with_correlation_id(ss("c-1")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let ret = confirm.take_message().expect("returned with the ack");
    assert_eq!(ret.reply_code, 312);
    assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(ret.delivery.routing_key.as_str(), "no-such-key");
    assert_eq!(ret.delivery.data, b"bounce");
    assert_eq!(
        ret.delivery
            .properties
            .correlation_id()
            .as_ref()
            .unwrap()
            .as_str(),
        "c-1"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn basic_get_counts_and_acks() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    declare(&ch, "g", FieldTable::default()).await;
    assert!(ch
        .basic_get(ss("g"), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
    for b in ["a", "b"] {
        publish(&ch, "", "g", b.as_bytes(), BasicProperties::default()).await;
    }
    let m = ch
        .basic_get(ss("g"), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((text(&m.delivery), m.message_count), ("a", 1));
    m.delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let m = ch
        .basic_get(ss("g"), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((text(&m.delivery), m.delivery.redelivered), ("a", true));
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let m = ch
        .basic_get(ss("g"), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((text(&m.delivery), m.message_count), ("b", 0));
    server.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    declare(&ch, "tq", FieldTable::default()).await;
    publish(&ch, "", "tq", b"before", BasicProperties::default()).await;
    let tx = channel(&conn).await;
    tx.tx_select().await.unwrap();
    let got = tx
        .basic_get(ss("tq"), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    publish(&tx, "", "tq", b"in-tx", BasicProperties::default()).await;
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    // Nothing took effect yet: the publish is invisible, the ack undone by rollback.
    tx.tx_rollback().await.unwrap();
    let q = ch
        .queue_declare(
            ss("tq"),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        q.message_count(),
        0,
        "the message is still unacked, not requeued"
    );
    // After rollback the delivery is still ours to ack, in a committed transaction.
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();
    publish(&tx, "", "tq", b"committed", BasicProperties::default()).await;
    tx.tx_commit().await.unwrap();
    let m = ch
        .basic_get(ss("tq"), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((text(&m.delivery), m.message_count), ("committed", 0));
    // tx.commit on a plain channel is a channel error.
    let e = ch.tx_commit().await.unwrap_err();
    assert_eq!(code(&e), 406);
    server.shutdown().await;
}

#[tokio::test]
async fn passive_declare_of_missing_queue_closes_only_the_channel() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let e = ch
        .queue_declare(
            ss("absent"),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 404);
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => {
            assert_eq!(
                p.get_message().as_str(),
                "NOT_FOUND - no queue 'absent' in vhost '/'"
            );
            assert!(matches!(p.kind(), AMQPErrorKind::Soft(_)));
        }
        _ => unreachable!(),
    }
    assert!(!ch.status().connected(), "the channel is closed");
    // The connection lives on.
    let again = channel(&conn).await;
    declare(&again, "present", FieldTable::default()).await;
    server.shutdown().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let server = broker(|_| {}).await;
    let owner = connect(&server).await;
    let ch = channel(&owner).await;
    let q = ch
        .queue_declare(
            ss(""),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    let other = connect(&server).await;
    let och = channel(&other).await;
    let e = och
        .basic_consume(
            q.name().clone(),
            ss(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 405);
    // Closing the owner deletes the queue.
    owner.close(200, ss("bye")).await.unwrap();
    let och = channel(&other).await;
    let e = och
        .queue_declare(
            q.name().clone(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn rpc_with_direct_reply_to() {
    let server = broker(|_| {}).await;
    // The server side: consumes requests and answers to their reply-to.
    let srv_conn = connect(&server).await;
    let srv = channel(&srv_conn).await;
    declare(&srv, "rpc", FieldTable::default()).await;
    let mut requests = consume(&srv, "rpc", false).await;
    // The client: consumes the pseudo-queue, then publishes with reply-to.
    let cli_conn = connect(&server).await;
    let cli = channel(&cli_conn).await;
    let mut replies = consume(&cli, "amq.rabbitmq.reply-to", true).await;
    publish(
        &cli,
        "",
        "rpc",
        b"2+2",
        BasicProperties::default()
            .with_reply_to(ss("amq.rabbitmq.reply-to"))
            .with_correlation_id(ss("req-1")),
    )
    .await;
    let req = next(&mut requests).await;
    let reply_to = req.properties.reply_to().clone().unwrap();
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "{reply_to}"
    );
    publish(
        &srv,
        "",
        reply_to.as_str(),
        b"4",
        BasicProperties::default()
            .with_correlation_id(req.properties.correlation_id().clone().unwrap()),
    )
    .await;
    req.ack(BasicAckOptions::default()).await.unwrap();
    let reply = next(&mut replies).await;
    assert_eq!(text(&reply), "4");
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "req-1"
    );
    assert_eq!(reply.routing_key.as_str(), reply_to.as_str());
    // Publishing with the pseudo reply-to on a channel that does not consume it fails.
    let lonely = channel(&cli_conn).await;
    lonely
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = lonely
        .basic_publish(
            ss(""),
            ss("rpc"),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_reply_to(ss("amq.rabbitmq.reply-to")),
        )
        .await
        .unwrap()
        .await;
    assert_eq!(code(&r.unwrap_err()), 406);
    server.shutdown().await;
}

#[tokio::test]
async fn message_properties_are_carried_exactly() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    declare(&ch, "props", FieldTable::default()).await;
    let mut headers = FieldTable::default();
    headers.insert(ss("s"), AMQPValue::LongString("text".into()));
    headers.insert(ss("n"), AMQPValue::LongLongInt(-42));
    headers.insert(ss("b"), AMQPValue::Boolean(true));
    headers.insert(ss("d"), AMQPValue::Double(1.5));
    let mut inner = FieldTable::default();
    inner.insert(ss("k"), AMQPValue::LongInt(7));
    headers.insert(ss("t"), AMQPValue::FieldTable(inner));
    let props = BasicProperties::default()
        .with_content_type(ss("application/json"))
        .with_content_encoding(ss("utf-8"))
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id(ss("corr"))
        .with_reply_to(ss("back"))
        .with_expiration(ss("60000"))
        .with_message_id(ss("mid"))
        .with_timestamp(1_700_000_000)
        .with_type(ss("kind"))
        .with_user_id(ss("guest"))
        .with_app_id(ss("app"));
    let body = vec![0xABu8; 300_000];
    publish(&ch, "", "props", &body, props.clone()).await;
    let m = ch
        .basic_get(ss("props"), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.delivery.data.len(),
        body.len(),
        "a body over several frames"
    );
    assert_eq!(m.delivery.data, body);
    assert_eq!(m.delivery.properties, props);
    server.shutdown().await;
}

#[tokio::test]
async fn dead_lettering_ttl_and_priorities() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    declare(&ch, "dead", FieldTable::default()).await;
    let mut args = FieldTable::default();
    args.insert(
        ss("x-dead-letter-exchange"),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        ss("x-dead-letter-routing-key"),
        AMQPValue::LongString("dead".into()),
    );
    declare(&ch, "live", args).await;
    publish(&ch, "", "live", b"doomed", BasicProperties::default()).await;
    let m = ch
        .basic_get(ss("live"), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let d = ch
        .basic_get(ss("dead"), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&d.delivery), "doomed");
    let h = d.delivery.properties.headers().as_ref().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = h.inner().get("x-death") else {
        panic!("x-death: {h:?}")
    };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else {
        panic!()
    };
    assert_eq!(
        death.inner()["reason"],
        AMQPValue::LongString("rejected".into())
    );
    assert_eq!(death.inner()["queue"], AMQPValue::LongString("live".into()));

    // Per-message TTL 0 with no consumer: expires at once into the dead-letter queue.
    publish(
        &ch,
        "",
        "live",
        b"late",
        BasicProperties::default().with_expiration(ss("0")),
    )
    .await;
    let d = ch
        .basic_get(ss("dead"), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&d.delivery), "late");

    let mut args = FieldTable::default();
    args.insert(ss("x-max-priority"), AMQPValue::ShortShortUInt(9));
    declare(&ch, "prio", args).await;
    for (body, p) in [("low", 1), ("high", 8), ("mid", 4)] {
        publish(
            &ch,
            "",
            "prio",
            body.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let m = ch
            .basic_get(ss("prio"), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap();
        order.push(text(&m.delivery).to_string());
    }
    assert_eq!(order, ["high", "mid", "low"]);
    server.shutdown().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let server = broker(|_| {}).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    declare(&ch, "doomed", FieldTable::default()).await;
    let consumer = ch
        .basic_consume(
            ss("doomed"),
            ss("ctag"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    consumer.set_delegate(move |d: DeliveryResult| {
        let tx = tx.clone();
        async move {
            if let Ok(None) = d {
                let _ = tx.send(());
            }
        }
    });
    let other = channel(&conn).await;
    let n = other
        .queue_delete(ss("doomed"), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(n, 0);
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("cancel notified")
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn cross_protocol_amq_topic_both_ways() {
    let server = broker(|_| {}).await;
    let stomp_addr = server.stomp_addr().unwrap();
    // AMQP -> STOMP
    let mut sub = Client::connect(stomp_addr).await;
    sub.subscribe("s", "/topic/prices.*", "auto").await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let mut h = FieldTable::default();
    h.insert(ss("x-source"), AMQPValue::LongString("amqp".into()));
    h.insert(ss("n"), AMQPValue::LongInt(3));
    publish(
        &ch,
        "amq.topic",
        "prices.eur",
        b"1.08",
        BasicProperties::default()
            .with_content_type(ss("text/plain"))
            .with_correlation_id(ss("c9"))
            .with_headers(h),
    )
    .await;
    let m = sub.message().await;
    assert_eq!(&m.body[..], b"1.08");
    assert_eq!(m.headers.get("destination"), Some("/topic/prices.eur"));
    assert_eq!(m.headers.get("content-type"), Some("text/plain"));
    assert_eq!(m.headers.get("correlation-id"), Some("c9"));
    assert_eq!(m.headers.get("x-source"), Some("amqp"));
    assert_eq!(m.headers.get("n"), Some("3"));

    // STOMP -> AMQP
    let q = ch
        .queue_declare(
            ss(""),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        ss("amq.topic"),
        ss("orders.#"),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut rx = consume(&ch, q.name().as_str(), true).await;
    let mut p = Client::connect(stomp_addr).await;
    p.send(
        "/topic/orders.new",
        b"{\"id\":1}",
        &[
            ("content-type", "application/json"),
            ("persistent", "true"),
            ("priority", "4"),
            ("x-trace", "t1"),
            ("reply-to", "/queue/answers"),
        ],
    )
    .await;
    let d = next(&mut rx).await;
    assert_eq!(d.data, b"{\"id\":1}");
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("amq.topic", "orders.new")
    );
    let props = &d.properties;
    assert_eq!(
        props.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(*props.priority(), Some(4));
    assert_eq!(
        props.reply_to().as_ref().unwrap().as_str(),
        "/queue/answers"
    );
    assert!(
        props.timestamp().is_some(),
        "STOMP messages are stamped on arrival"
    );
    let headers = props.headers().as_ref().unwrap();
    assert_eq!(
        headers.inner().get("x-trace"),
        Some(&AMQPValue::LongString(LongString::from("t1")))
    );
    server.shutdown().await;
}

/// Reads until the peer closes; returns everything read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .ok();
    out
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back() {
    let server = broker(|_| {}).await;
    let mut s = TcpStream::connect(server.amqp_addr().unwrap())
        .await
        .unwrap();
    s.write_all(b"AMQP\x01\x01\x00\x09").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"AMQP\x00\x00\x09\x01");
    let mut s = TcpStream::connect(server.amqp_addr().unwrap())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"AMQP\x00\x00\x09\x01");
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeat_timeout_closes_a_silent_client() {
    let server = broker(|_| {}).await;
    // A real client negotiates a 1 s heartbeat, then its socket goes silent: lapin would
    // send heartbeats, so this is done by hand up to connection.open.
    let mut s = TcpStream::connect(server.amqp_addr().unwrap())
        .await
        .unwrap();
    let frames = handshake_bytes(1);
    s.write_all(&frames).await.unwrap();
    let started = tokio::time::Instant::now();
    let got = read_to_close(&mut s).await;
    let waited = started.elapsed();
    assert!(got.len() > 20, "start, tune and open-ok arrive first");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "closed after about two heartbeat intervals, not {waited:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn frames_over_frame_max_are_a_connection_error() {
    let server = broker(|_| {}).await;
    let mut s = TcpStream::connect(server.amqp_addr().unwrap())
        .await
        .unwrap();
    s.write_all(&handshake_bytes(0)).await.unwrap();
    // A body frame claiming 1 MiB on a connection tuned to 4096.
    s.write_all(&[3, 0, 1, 0, 0x10, 0, 0]).await.unwrap();
    let got = read_to_close(&mut s).await;
    // The last frame is connection.close 501 FRAME_ERROR.
    let close = find_method(&got, 10, 50).expect("connection.close");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 501);
    server.shutdown().await;
}

/// Protocol header, start-ok (PLAIN guest/guest), tune-ok (frame_max 4096, `heartbeat`
/// seconds), connection.open `/`.
fn handshake_bytes(heartbeat: u16) -> Vec<u8> {
    let mut v = b"AMQP\x00\x00\x09\x01".to_vec();
    let mut start_ok = vec![0, 10, 0, 11, 0, 0, 0, 0, 5];
    start_ok.extend_from_slice(b"PLAIN");
    let resp = b"\0guest\0guest";
    start_ok.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    start_ok.extend_from_slice(resp);
    start_ok.extend_from_slice(&[5]);
    start_ok.extend_from_slice(b"en_US");
    v.extend(frame(1, 0, &start_ok));
    let mut tune_ok = vec![0, 10, 0, 31, 0, 0, 0, 0, 0x10, 0];
    tune_ok.extend_from_slice(&heartbeat.to_be_bytes());
    v.extend(frame(1, 0, &tune_ok));
    v.extend(frame(1, 0, &[0, 10, 0, 40, 1, b'/', 0, 0]));
    v
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

/// The arguments of the first method frame `class.method` in `bytes` (after the header).
fn find_method(bytes: &[u8], class: u16, method: u16) -> Option<&[u8]> {
    let mut rest = bytes;
    while rest.len() >= 8 {
        let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
        let payload = rest.get(7..7 + size)?;
        if rest[0] == 1
            && u16::from_be_bytes([payload[0], payload[1]]) == class
            && u16::from_be_bytes([payload[2], payload[3]]) == method
        {
            return Some(&payload[4..]);
        }
        rest = &rest[8 + size..];
    }
    None
}

#[tokio::test]
async fn confirmed_persistent_messages_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("ferromq-amqp-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.clone();
    let server = broker(move |c| c.data_dir = d).await;
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        ss("durable-q"),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for i in 0..20 {
        let confirm = ch
            .basic_publish(
                ss(""),
                ss("durable-q"),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                persistent.clone(),
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }
    // Transient messages do not survive.
    publish(
        &ch,
        "",
        "durable-q",
        b"transient",
        BasicProperties::default(),
    )
    .await;
    conn.close(200, ss("bye")).await.unwrap();
    server.shutdown().await;

    let d = dir.clone();
    let server = broker(move |c| c.data_dir = d).await;
    assert_eq!(server.recovery().unwrap().messages, 20);
    let conn = connect(&server).await;
    let ch = channel(&conn).await;
    let mut rx = consume(&ch, "durable-q", true).await;
    for i in 0..20 {
        let d = next(&mut rx).await;
        assert_eq!(text(&d), format!("m{i}"));
        assert!(d.redelivered, "restored messages are flagged redelivered");
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
