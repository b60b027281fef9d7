//! Memory stays bounded while a queue holds far more message bytes than its memory budget:
//! the broker runs as a child process with small paging limits, an AMQP producer fills one
//! queue with many times that much, and the broker's resident set size (read from /proc)
//! must stay near the budget while the queue is filled and drained. Every message must come
//! back, in order and intact. Half-way through the drain the broker is killed (`kill -9`)
//! and restarted: recovery must stay near the budget too, and the persistent half of what
//! was left must come back, in order.
//!
//! Size: `FERROMQ_PAGING_TEST_MIB` MiB of 1 KiB messages (default 160) through a queue whose
//! memory budget is `FERROMQ_PAGING_TEST_BUDGET_MIB` (default 16; the broker-wide budget is
//! the same). The example, 2 GiB with a 256 MiB budget, is
//! `FERROMQ_PAGING_TEST_MIB=2048 FERROMQ_PAGING_TEST_BUDGET_MIB=256 cargo test --release
//! --test paging -- --nocapture`.

use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::message::DeliveryResult;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::sync::mpsc;

const BODY: usize = 1024;
/// What the broker may hold beyond its baseline and the paging budget: journal and socket
/// buffers and allocator slack, plus per queued message the bookkeeping that stays in
/// memory while its body is paged (the spill's index, the journal's live-record books;
/// measured at about 150 bytes). Without paging the queue alone would hold the whole fill
/// (160 MiB by default, against a bound of about 130 MiB).
const RSS_SLACK: u64 = 64 << 20;
const RSS_PER_MESSAGE: u64 = 200;

fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(data: &Path, port: u16, budget: u64) -> Broker {
    let child = Process::new(env!("CARGO_BIN_EXE_ferromq"))
        .arg("serve")
        .env_clear()
        .env("FERROMQ_DATA_DIR", data)
        .env("FERROMQ_LISTENERS__STOMP", "")
        .env("FERROMQ_LISTENERS__MQTT", "")
        .env("FERROMQ_LISTENERS__OPENWIRE", "")
        .env("FERROMQ_LISTENERS__AMQP_TLS", "")
        .env("FERROMQ_LISTENERS__MQTT_TLS", "")
        .env("FERROMQ_LISTENERS__STOMP_TLS", "")
        .env("FERROMQ_LISTENERS__OPENWIRE_TLS", "")
        .env("FERROMQ_LISTENERS__WS", "")
        .env("FERROMQ_LISTENERS__WSS", "")
        .env("FERROMQ_LISTENERS__AMQP", format!("127.0.0.1:{port}"))
        .env("FERROMQ_LOG", "warn")
        .env("FERROMQ_STORE__DISK_FREE_MIN_BYTES", "0")
        .env("FERROMQ_STORE__BACKLOG_MAX_BYTES", (4u64 << 20).to_string())
        .envs(std::env::var("MALLOC_ARENA_MAX").map(|v| ("MALLOC_ARENA_MAX", v)))
        .env("FERROMQ_STORE__QUEUE_MEMORY_MAX_BYTES", budget.to_string())
        .env("FERROMQ_STORE__MEMORY_MAX_BYTES", budget.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ferromq");
    Broker(child)
}

/// The child's resident set size in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn body(i: u64) -> Vec<u8> {
    let mut b = format!("{i:010}:").into_bytes();
    b.resize(BODY, b'a' + (i % 26) as u8);
    b
}

async fn connect(port: u16) -> Connection {
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    for _ in 0..400 {
        if let Ok(c) = Connection::connect(&uri, ConnectionProperties::default()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not accept AMQP on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_near_the_paging_budget_while_a_queue_fills_and_drains() {
    let mib = env_mib("FERROMQ_PAGING_TEST_MIB", 160);
    let budget = env_mib("FERROMQ_PAGING_TEST_BUDGET_MIB", 16) << 20;
    let count = mib * 1024 * 1024 / BODY as u64;
    let data = std::env::temp_dir().join(format!("ferromq-paging-rss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let port = free_port();
    let broker = spawn(&data, port, budget);
    let pid = broker.0.id();
    let conn = connect(port).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "big".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let baseline = rss(pid);
    assert!(baseline > 0, "reads the broker's RSS");

    // Sample the broker's RSS for as long as the test runs.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Fill: half persistent, half transient; confirms bound what is in flight.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..count {
        let props = BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
        let confirm = ch
            .basic_publish(
                "".into(),
                "big".into(),
                BasicPublishOptions::default(),
                &body(i),
                props,
            )
            .await
            .expect("publish");
        pending.push_back(confirm);
        if pending.len() >= 1000 {
            let c = pending.pop_front().unwrap().await.expect("confirm");
            assert!(c.is_ack(), "message confirmed");
        }
    }
    for c in pending {
        assert!(c.await.expect("confirm").is_ack());
    }
    let filled_peak = peak.load(Ordering::Relaxed);
    let q = ch
        .queue_declare(
            "big".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        u64::from(q.message_count()),
        count,
        "every message is in the queue"
    );

    // Drain the first half, checking order and content.
    let half = count / 2;
    drain(&ch, &(0..half).collect::<Vec<_>>(), false).await;
    sampler.abort();
    let drained_peak = peak.load(Ordering::Relaxed);
    let bound = baseline + budget + budget / 4 + RSS_SLACK + count * RSS_PER_MESSAGE;
    eprintln!(
        "paging: {mib} MiB through one queue with a {} MiB budget; broker RSS baseline {} MiB, peak while filling {} MiB, while draining half {} MiB",
        budget >> 20,
        baseline >> 20,
        filled_peak >> 20,
        drained_peak >> 20
    );
    assert!(
        drained_peak < bound,
        "broker RSS peaked at {} MiB (baseline {} MiB, budget {} MiB)",
        drained_peak >> 20,
        baseline >> 20,
        budget >> 20
    );

    // kill -9 and restart on the same data: recovery reads back what its budget does not
    // hold, the queue pages, and the persistent half of the rest comes back in order. The
    // acks of the drain are synced first: an ack the kill catches unsynced would bring its
    // message back (at-least-once), which is not what this test is about.
    acks_synced(&conn).await;
    drop(conn);
    drop(broker);
    let broker = spawn(&data, port, budget);
    let pid = broker.0.id();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let conn = connect(port).await;
    let ch = conn.create_channel().await.unwrap();
    let recovered_peak = peak.load(Ordering::Relaxed);
    let persistent: Vec<u64> = (half..count).filter(|i| i % 2 == 0).collect();
    drain(&ch, &persistent, true).await;
    sampler.abort();
    let total_peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "paging: after kill -9, peak RSS during recovery {} MiB, while draining the rest {} MiB",
        recovered_peak >> 20,
        total_peak >> 20
    );
    assert!(
        total_peak < bound,
        "broker RSS peaked at {} MiB after the restart (baseline {} MiB, budget {} MiB)",
        total_peak >> 20,
        baseline >> 20,
        budget >> 20
    );
    let _ = conn.close(200, "done".into()).await;
    drop(broker);
    let _ = std::fs::remove_dir_all(&data);
}

/// Returns once everything the broker took from `conn` before is synced: a persistent
/// publish to a queue nobody consumes is confirmed only at the journal's synced point,
/// which is past every op submitted before it.
async fn acks_synced(conn: &Connection) {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("sync-marker".into(), durable, FieldTable::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "sync-marker".into(),
            BasicPublishOptions::default(),
            b"marker",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    let _ = ch.close(200, "synced".into()).await;
}

/// Consumes `expected.len()` messages from "big" on `ch` and checks that they are the bodies
/// of `expected`, in order (and flagged redelivered when `redelivered`), acking as it goes;
/// then cancels the consumer.
async fn drain(ch: &lapin::Channel, expected: &[u64], redelivered: bool) {
    let n = expected.len();
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let consumer = ch
        .basic_consume(
            "big".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Sent from the delegate itself, not from the future it returns: those futures may
    // run out of order.
    consumer.set_delegate(move |d: DeliveryResult| {
        if let Ok(Some(d)) = d {
            let _ = tx.send(d);
        }
        async {}
    });
    for (k, &i) in expected.iter().enumerate() {
        let d = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("message {i} ({k} of {n}) arrives"))
            .expect("consumer open");
        assert!(
            d.data == body(i),
            "message {i} comes back intact and in order: got {} bytes starting {:?}",
            d.data.len(),
            String::from_utf8_lossy(&d.data[..d.data.len().min(24)])
        );
        assert_eq!(d.redelivered, redelivered, "message {i}: redelivered flag");
        if k % 100 == 99 || k + 1 == n {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
}
