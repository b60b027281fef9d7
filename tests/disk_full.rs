//! A full disk: the broker's data directory is a small tmpfs. Persistent publishes are
//! confirmed until free space reaches the configured floor, then refused with a clear
//! error while everything else goes on; once consumers free space the broker accepts them
//! again without a restart, and after a restart exactly the unacknowledged messages are
//! there, intact. The same with no floor, where the journal's own writes meet ENOSPC. And
//! transient messages paged beyond the memory budget fill the disk with spill files: what
//! the disk refuses waits in memory up to a bound, then publishes that need paging are
//! refused with a clear error, and every accepted message comes back once space is freed.
//!
//! Mounting the tmpfs needs root (CI runs as root).

mod common;

use std::path::Path;
use std::time::Duration;

use common::tmpfs::Tmpfs;
use common::Client;
use ferromq::Config;
use ferromq_stomp::codec::Command;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

const QUEUE: &str = "/queue/disk";
const BODY: usize = 64 * 1024;

fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("m{seq}:").into_bytes();
    b.resize(BODY, b'a' + (seq % 26) as u8);
    b
}

fn config(data: &Path) -> Config {
    let mut c = Config::default();
    c.listeners.stomp = "127.0.0.1:0".into();
    c.listeners.amqp = String::new();
    c.listeners.mqtt = String::new();
    c.listeners.openwire = String::new();
    for l in [
        &mut c.listeners.amqp_tls,
        &mut c.listeners.mqtt_tls,
        &mut c.listeners.stomp_tls,
        &mut c.listeners.openwire_tls,
        &mut c.listeners.ws,
        &mut c.listeners.wss,
    ] {
        l.clear();
    }
    c.data_dir = data.to_path_buf();
    c.store.segment_size_max_bytes = 1 << 20;
    c.store.disk_free_min_bytes = 8 << 20;
    c
}

/// Sends persistent messages with receipts to the test queue from `next` on until one is
/// refused; returns the number receipted and the refusal's message header.
async fn fill(c: &mut Client, next: &mut u64) -> String {
    send_until_refused(
        c,
        QUEUE,
        &[("persistent", "true")],
        next,
        "the disk never filled",
    )
    .await
}

/// Sends messages with receipts (and `extra` headers) to `dest` from `next` on until one is
/// refused; returns the refusal's message header and body. Panics with `never` if none is
/// refused within 10,000 messages.
async fn send_until_refused(
    c: &mut Client,
    dest: &str,
    extra: &[(&str, &str)],
    next: &mut u64,
    never: &str,
) -> String {
    loop {
        let receipt = next.to_string();
        let mut hs = vec![("destination", dest), ("receipt", receipt.as_str())];
        hs.extend_from_slice(extra);
        c.send_frame(Command::Send, &hs, &body(*next)).await;
        let f = c.frame().await;
        match f.command {
            Command::Receipt => *next += 1,
            Command::Error => {
                return format!(
                    "{}: {}",
                    f.headers.get("message").unwrap_or(""),
                    String::from_utf8_lossy(&f.body)
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(*next < 10_000, "{never}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_persistent_publishes_until_space_is_freed() {
    let fs = Tmpfs::mount("diskfull", 48);
    let data = fs.path().join("data");
    let server = ferromq::start(config(&data)).await.expect("starts");
    let addr = server.stomp_addr().unwrap();

    // 1. Fill until the floor refuses.
    let mut producer = Client::connect(addr).await;
    let mut next = 0u64;
    let why = fill(&mut producer, &mut next).await;
    assert!(why.contains("disk"), "the error says why: {why}");
    let filled = next;
    assert!(
        filled >= 100,
        "about 40 MiB fit before the floor, got {filled}"
    );

    // 2. Transient traffic still flows.
    let mut other = Client::connect(addr).await;
    other.subscribe("t", "/queue/transient", "auto").await;
    other.send("/queue/transient", b"still here", &[]).await;
    assert_eq!(&other.message().await.body[..], b"still here");

    // 3. A consumer takes and acks the first half: space comes back and persistent
    //    publishes are accepted again, without a restart.
    let mut consumer = Client::connect(addr).await;
    consumer.subscribe("s", QUEUE, "client-individual").await;
    let acked = filled / 2;
    for seq in 0..acked {
        let m = consumer.message().await;
        assert_eq!(&m.body[..], &body(seq)[..]);
        let id = m.headers.get("ack").expect("ack header").to_string();
        consumer.send_frame(Command::Ack, &[("id", &id)], b"").await;
    }
    // A receipt for a frame after the acks: the broker has taken them all.
    consumer
        .send_frame(
            Command::Unsubscribe,
            &[("id", "s"), ("receipt", "done")],
            b"",
        )
        .await;
    loop {
        let f = consumer.frame().await;
        if f.command == Command::Receipt {
            break;
        }
        assert_eq!(f.command, Command::Message);
    }
    drop(consumer);
    let mut producer = Client::connect(addr).await;
    let mut accepted = false;
    for _ in 0..100 {
        let receipt = next.to_string();
        let hs = [
            ("destination", QUEUE),
            ("persistent", "true"),
            ("receipt", receipt.as_str()),
        ];
        producer.send_frame(Command::Send, &hs, &body(next)).await;
        let f = producer.frame().await;
        if f.command == Command::Receipt {
            next += 1;
            accepted = true;
            break;
        }
        assert_eq!(f.command, Command::Error);
        // Refused while the floor is still reached: the connection is gone; wait for the
        // persister to measure free space again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        producer = Client::connect(addr).await;
    }
    assert!(accepted, "persistent publishes resume once space is freed");
    drop(producer);
    server.shutdown().await;

    // 4. After a restart: exactly the unacked ones, intact, in order.
    let server = ferromq::start(config(&data)).await.expect("restarts");
    let mut c = Client::connect(server.stomp_addr().unwrap()).await;
    c.subscribe("s", QUEUE, "auto").await;
    for seq in acked..next {
        let m = c.message().await;
        assert_eq!(&m.body[..], &body(seq)[..], "message {seq}");
    }
    c.expect_silence(300).await;
    drop(c);
    server.shutdown().await;
}

/// Publishes `seq` persistently and waits for its confirm: true if acked, false if nacked.
async fn confirmed(ch: &Channel, seq: u64) -> bool {
    let confirm = ch
        .basic_publish(
            "".into(),
            "disk".into(),
            BasicPublishOptions::default(),
            &body(seq),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish sent")
        .await
        .expect("confirmed or nacked");
    assert!(confirm.is_ack() || confirm.is_nack(), "{confirm:?}");
    confirm.is_ack()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_in_the_journal_nacks_publishes_and_the_broker_carries_on() {
    let fs = Tmpfs::mount("enospc", 8);
    let data = fs.path().join("data");
    let config = || {
        let mut c = config(&data);
        c.listeners.amqp = "127.0.0.1:0".into();
        // No floor: the journal's writes themselves run out of space.
        c.store.disk_free_min_bytes = 0;
        c
    };
    let server = ferromq::start(config()).await.expect("starts");
    let addr = server.amqp_addr().unwrap();

    // 1. Publish with confirms until the journal refuses: a nack, the channel stays open,
    //    and it keeps refusing while the disk is full.
    let producer = common::amqp::connect(addr).await;
    let ch = producer.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("disk".into(), durable, FieldTable::default())
        .await
        .unwrap();
    let mut acked_by_broker = Vec::new();
    let mut next_seq = 0u64;
    while confirmed(&ch, next_seq).await {
        acked_by_broker.push(next_seq);
        next_seq += 1;
        assert!(next_seq < 10_000, "the disk never filled");
    }
    assert!(
        acked_by_broker.len() >= 50,
        "about 7 MiB fit, got {}",
        acked_by_broker.len()
    );
    next_seq += 1;
    for _ in 0..3 {
        assert!(!confirmed(&ch, next_seq).await, "still full: refused");
        next_seq += 1;
    }
    // A STOMP producer asking for a receipt gets an ERROR saying why.
    let mut stomp = Client::connect(server.stomp_addr().unwrap()).await;
    let hs = [
        ("destination", "/queue/disk"),
        ("persistent", "true"),
        ("receipt", "r"),
    ];
    stomp.send_frame(Command::Send, &hs, &body(next_seq)).await;
    next_seq += 1;
    let f = stomp.frame().await;
    assert_eq!(f.command, Command::Error);
    let why = String::from_utf8_lossy(&f.body);
    assert!(why.contains("disk is full"), "the error says why: {why}");

    // 2. Another connection works meanwhile.
    let other = common::amqp::connect(addr).await;
    let och = other.create_channel().await.unwrap();
    och.queue_declare("t".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    och.basic_publish(
        "".into(),
        "t".into(),
        BasicPublishOptions::default(),
        b"still here",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let got = och
        .basic_get("t".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(&got.delivery.data[..], b"still here");

    // 3. A consumer takes and acks the first half of what was confirmed (the refused
    //    messages are in the queue too, behind them, as transient ones would be).
    let consumer = common::amqp::connect(addr).await;
    let cch = consumer.create_channel().await.unwrap();
    let acked = acked_by_broker.len() / 2;
    for &seq in &acked_by_broker[..acked] {
        let m = cch
            .basic_get("disk".into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .expect("a message");
        assert!(
            m.delivery.data == body(seq),
            "message {seq} expected, got {:?}",
            String::from_utf8_lossy(&m.delivery.data[..12])
        );
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }

    // 4. Space freed by the acks: publishes are confirmed again on the same channel,
    //    without a restart. Until the acks have freed it, they may still be refused.
    let mut resumed = false;
    for _ in 0..100 {
        if confirmed(&ch, next_seq).await {
            acked_by_broker.push(next_seq);
            next_seq += 1;
            resumed = true;
            break;
        }
        next_seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        resumed,
        "persistent publishes are confirmed again once space is freed"
    );
    for _ in 0..3 {
        assert!(confirmed(&ch, next_seq).await, "and keep being confirmed");
        acked_by_broker.push(next_seq);
        next_seq += 1;
    }
    drop((ch, producer, och, other, cch, consumer));
    server.shutdown().await;

    // 5. After a restart: exactly the confirmed and unacked ones, intact, in order; none
    //    of the refused ones.
    let server = ferromq::start(config()).await.expect("restarts");
    let conn = common::amqp::connect(server.amqp_addr().unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    let mut back = Vec::new();
    while let Some(m) = ch
        .basic_get("disk".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        back.push(m.delivery.data);
    }
    let expected: Vec<Vec<u8>> = acked_by_broker[acked..].iter().map(|&s| body(s)).collect();
    assert_eq!(
        back.len(),
        expected.len(),
        "confirmed and unacked come back"
    );
    for (i, (got, want)) in back.iter().zip(&expected).enumerate() {
        assert!(
            got == want,
            "message {} differs",
            acked_by_broker[acked + i]
        );
    }
    drop((ch, conn));
    server.shutdown().await;
}

/// Sends transient messages with receipts to `dest` from `next` on until one is refused;
/// returns the refusal's message header and body.
async fn fill_transient(c: &mut Client, dest: &str, next: &mut u64) -> String {
    send_until_refused(c, dest, &[], next, "publishes were never refused").await
}

/// Subscribes to `dest` and takes messages `from..to` in order, acking each; then
/// unsubscribes and checks that nothing else came before the receipt for that.
async fn take_all(c: &mut Client, dest: &str, from: u64, to: u64) {
    c.subscribe("s", dest, "client-individual").await;
    for seq in from..to {
        let m = c.message().await;
        assert!(
            m.body[..] == body(seq)[..],
            "message {seq} expected, got {:?}",
            String::from_utf8_lossy(&m.body[..12])
        );
        let id = m.headers.get("ack").expect("ack header").to_string();
        c.send_frame(Command::Ack, &[("id", &id)], b"").await;
    }
    c.send_frame(
        Command::Unsubscribe,
        &[("id", "s"), ("receipt", "done")],
        b"",
    )
    .await;
    let f = c.frame().await;
    assert_eq!(f.command, Command::Receipt, "each message once: {f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_files_that_fill_the_disk_lose_nothing_and_paging_resumes_once_space_is_freed() {
    const PAGED: &str = "/queue/paged";
    let fs = Tmpfs::mount("spillfull", 12);
    let data = fs.path().join("data");
    let mut c = config(&data);
    c.store.disk_free_min_bytes = 0;
    c.store.queue_memory_max_bytes = 1 << 20;
    c.store.memory_max_bytes = 1 << 20;
    c.store.paging_unwritten_max_bytes = 4 << 20;
    let server = ferromq::start(c).await.expect("starts");
    let addr = server.stomp_addr().unwrap();

    // 1. Transient messages beyond the 1 MiB budget page to the 12 MiB disk until it is
    //    full; 4 MiB more wait in memory; then publishes to the queue are refused.
    let mut producer = Client::connect(addr).await;
    let mut next = 0u64;
    let why = fill_transient(&mut producer, PAGED, &mut next).await;
    assert!(why.contains("disk"), "the error says why: {why}");
    let filled = next;
    assert!(
        filled >= 150,
        "1 MiB in memory, most of 12 MiB on disk and 4 MiB waiting in memory, got {filled}"
    );
    assert!(
        filled <= 17 * 16,
        "memory beyond the disk is bounded, got {filled} messages of 64 KiB"
    );

    // 2. A queue that needs no paging still takes messages.
    let mut other = Client::connect(addr).await;
    other.subscribe("t", "/queue/other", "auto").await;
    other.send("/queue/other", b"still here", &[]).await;
    assert_eq!(&other.message().await.body[..], b"still here");

    // 3. Every accepted message comes back once, whole and in order, from memory, the
    //    spill file and what the disk refused; reading them frees the disk.
    let mut consumer = Client::connect(addr).await;
    take_all(&mut consumer, PAGED, 0, filled).await;

    // 4. The broker carries on: the queue pages again (the disk fills again with the same
    //    amount) and hands everything back.
    let mut producer = Client::connect(addr).await;
    let from = next;
    let why = fill_transient(&mut producer, PAGED, &mut next).await;
    assert!(why.contains("disk"), "the error says why: {why}");
    assert!(
        next - from + 2 >= filled,
        "as much fits as the first time: {} then {filled}",
        next - from
    );
    take_all(&mut consumer, PAGED, from, next).await;
    drop((producer, other, consumer));
    server.shutdown().await;
}
