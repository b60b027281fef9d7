//! Paging: queues over their memory budget keep newer ready messages in spill files and
//! read them back in order.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ferromq_core::{
    AckMode, Broker, BrokerConfig, Connection, CoreError, DurableConfig, FieldValue, ManualClock,
    Message, QueueOptions,
};

const BODY: usize = 100;
/// A queue keeps ten 100-byte bodies in memory.
const QUEUE_BUDGET: u64 = 1000;

struct Node {
    broker: Broker,
    conn: Connection,
    persister: tokio::task::JoinHandle<()>,
    clock: Arc<ManualClock>,
}

fn start(dir: &Path, global: u64) -> Node {
    let clock = Arc::new(ManualClock::new(T0_MS));
    let opened = Broker::open(BrokerConfig::default(), clock.clone(), config(dir, global))
        .expect("open broker");
    node(opened, clock)
}

fn config(dir: &Path, global: u64) -> DurableConfig {
    let mut c = DurableConfig::new(dir);
    c.journal.segment_size_max_bytes = 64 * 1024;
    c.tick_ms = 10;
    c.disk_free_min_bytes = 0;
    c.paging.queue_memory_max_bytes = QUEUE_BUDGET;
    c.paging.memory_max_bytes = global;
    c.paging.file_max_bytes = 4096;
    c.paging.read_batch_bytes = 512;
    c
}

fn node(opened: ferromq_core::Opened, clock: Arc<ManualClock>) -> Node {
    let persister = tokio::spawn(opened.persister.run());
    let conn = connect(&opened.broker);
    Node {
        broker: opened.broker,
        conn,
        persister,
        clock,
    }
}

impl Node {
    async fn stop(self) {
        self.broker.close().await.expect("clean close");
        drop(self.conn);
        self.persister.await.unwrap();
    }

    fn send(&self, queue: &str, i: usize, persistent: bool) {
        let mut m = Message::new("", queue, body_of(i));
        m.properties.persistent = persistent;
        self.conn.vhost().publish(Arc::new(m)).unwrap();
    }

    fn resident(&self) -> u64 {
        self.broker.paging_stats().unwrap().resident_bytes
    }

    fn paged_out(&self) -> u64 {
        self.broker.paging_stats().unwrap().paged_out
    }

    fn stats(&self, queue: &str) -> ferromq_core::QueueStats {
        self.conn.vhost().queue(queue).unwrap().stats()
    }
}

fn body_of(i: usize) -> Bytes {
    let mut b = format!("{i:08}-").into_bytes();
    b.resize(BODY, b'a' + (i % 26) as u8);
    Bytes::from(b)
}

fn spill_files(dir: &Path) -> usize {
    let mut paging = dir.as_os_str().to_owned();
    paging.push(".paging");
    std::fs::read_dir(paging).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_queue_over_budget_pages_and_delivers_everything_in_order() {
    let dir = TempDir::new("order");
    let n = start(&dir.0, 1 << 30);
    n.conn
        .declare_queue("q", QueueOptions::default(), false)
        .unwrap();
    for i in 0..500 {
        n.send("q", i, i % 2 == 0);
        assert!(n.resident() <= QUEUE_BUDGET, "memory stays within budget");
    }
    let st = n.stats("q");
    assert_eq!(st.messages, 500);
    assert_eq!(st.message_bytes, 500 * BODY as u64);
    assert!(n.paged_out() >= 490, "paged {}", n.paged_out());
    assert!(spill_files(&dir.0) > 1, "several spill files");

    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let mut next = 0;
    while next < 500 {
        let got = sub.drain();
        assert!(!got.is_empty(), "deliveries keep coming at {next}");
        for d in &got {
            assert_eq!(d.message.body, body_of(next));
            assert_eq!(d.message.properties.persistent, next % 2 == 0);
            next += 1;
        }
        ack_all(&got);
        assert!(n.resident() <= QUEUE_BUDGET + BODY as u64);
    }
    assert_eq!(n.stats("q").messages, 0);
    assert_eq!(n.resident(), 0);
    assert_eq!(spill_files(&dir.0), 0, "spill files are deleted once read");
    drop(sub);
    n.stop().await;
}

#[tokio::test]
async fn paged_persistent_messages_survive_a_restart_and_acked_ones_do_not_return() {
    let dir = TempDir::new("restart");
    let n = start(&dir.0, 1 << 30);
    n.conn
        .declare_queue("q", QueueOptions::default(), false)
        .unwrap();
    for i in 0..200 {
        n.send("q", i, true);
    }
    // Take and ack the first 50 (some read back from the spill).
    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let got = sub.drain();
    assert_eq!(got.len(), 50);
    ack_all(&got);
    drop(sub);
    n.stop().await;

    // Restarting restores 150 messages into a queue that pages again.
    let n = start(&dir.0, 1 << 30);
    assert_eq!(n.stats("q").messages, 150);
    assert!(n.resident() <= QUEUE_BUDGET);
    let q = n.conn.vhost().queue("q").unwrap();
    for i in 50..200 {
        let (d, _) = q.get(AckMode::Auto, 0).expect("a message");
        assert_eq!(d.message.body, body_of(i));
        assert!(d.redelivered, "restored messages are flagged redelivered");
    }
    assert!(q.get(AckMode::Auto, 0).is_none());
    n.stop().await;
    let n = start(&dir.0, 1 << 30);
    assert_eq!(n.stats("q").messages, 0, "auto-acked ones are settled");
    n.stop().await;
}

#[tokio::test]
async fn purge_and_delete_settle_paged_messages() {
    let dir = TempDir::new("purge");
    let n = start(&dir.0, 1 << 30);
    let v = n.conn.vhost().clone();
    for q in ["p", "d"] {
        n.conn
            .declare_queue(q, QueueOptions::default(), false)
            .unwrap();
        for i in 0..100 {
            n.send(q, i, true);
        }
    }
    assert!(spill_files(&dir.0) > 0);
    assert_eq!(v.queue("p").unwrap().purge(), 100);
    v.delete_queue("d", false, false, n.conn.id()).unwrap();
    assert_eq!(n.resident(), 0);
    assert_eq!(spill_files(&dir.0), 0);
    n.stop().await;
    let n = start(&dir.0, 1 << 30);
    assert_eq!(n.stats("p").messages, 0, "purged paged messages stay gone");
    assert!(n.conn.vhost().queue("d").is_none());
    n.stop().await;
}

#[tokio::test]
async fn requeued_messages_go_back_ahead_of_paged_ones() {
    let dir = TempDir::new("requeue");
    let n = start(&dir.0, 1 << 30);
    n.conn
        .declare_queue("q", QueueOptions::default(), false)
        .unwrap();
    for i in 0..100 {
        n.send("q", i, false);
    }
    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 30,
            ..Default::default()
        },
    )
    .unwrap();
    let first = sub.drain();
    assert_eq!(first.len(), 30);
    // Requeue them all by cancelling the consumer.
    drop(sub);
    let q = n.conn.vhost().queue("q").unwrap();
    assert_eq!(q.stats().messages, 100);
    for i in 0..100 {
        let (d, _) = q.get(AckMode::Auto, 0).expect("a message");
        assert_eq!(d.message.body, body_of(i), "in order after requeue");
        assert_eq!(d.redelivered, i < 30);
    }
    n.stop().await;
}

#[tokio::test]
async fn priority_lanes_page_separately_and_high_priority_still_comes_first() {
    let dir = TempDir::new("priority");
    let n = start(&dir.0, 1 << 30);
    declare(&n.conn, "q", &[("x-max-priority", FieldValue::I32(5))]);
    for i in 0..60 {
        let mut m = Message::new("", "q", body_of(i));
        m.properties.priority = Some(if i % 3 == 0 { 5 } else { 0 });
        n.conn.vhost().publish(Arc::new(m)).unwrap();
    }
    assert!(n.paged_out() > 0);
    let q = n.conn.vhost().queue("q").unwrap();
    let order: Vec<usize> = (0..60)
        .map(|_| {
            let (d, _) = q.get(AckMode::Auto, 0).unwrap();
            std::str::from_utf8(&d.message.body[..8])
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let high: Vec<usize> = (0..60).filter(|i| i % 3 == 0).collect();
    let low: Vec<usize> = (0..60).filter(|i| i % 3 != 0).collect();
    assert_eq!(order[..20], high[..]);
    assert_eq!(order[20..], low[..]);
    n.stop().await;
}

#[tokio::test]
async fn the_global_budget_pages_across_queues_and_ttl_applies_to_paged_messages() {
    let dir = TempDir::new("global");
    // Two queues of 1000 bytes each could hold 2000; the broker-wide budget is 1500.
    let n = start(&dir.0, 1500);
    declare(&n.conn, "a", &[("x-message-ttl", FieldValue::I32(1000))]);
    n.conn
        .declare_queue("b", QueueOptions::default(), false)
        .unwrap();
    for i in 0..40 {
        n.send("a", i, false);
        n.send("b", i, false);
    }
    assert!(
        n.resident() <= 1500 + BODY as u64,
        "resident {}",
        n.resident()
    );
    n.clock.advance(2000);
    let a = n.conn.vhost().queue("a").unwrap();
    assert!(a.get(AckMode::Auto, 0).is_none(), "expired, paged or not");
    assert_eq!(a.stats().messages, 0);
    let b = n.conn.vhost().queue("b").unwrap();
    for i in 0..40 {
        assert_eq!(b.get(AckMode::Auto, 0).unwrap().0.message.body, body_of(i));
    }
    assert_eq!(n.resident(), 0);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_reads_bodies_beyond_the_budget_back_from_the_journal_in_order() {
    let dir = TempDir::new("recover-budget");
    let mut c = config(&dir.0, 1 << 30);
    c.compaction_interval_ms = 10;
    c.journal.segment_size_max_bytes = 16 * 1024;
    let clock = Arc::new(ManualClock::new(T0_MS));
    let n = node(
        Broker::open(BrokerConfig::default(), clock.clone(), c.clone()).unwrap(),
        clock,
    );
    for q in ["old", "new"] {
        n.conn
            .declare_queue(q, QueueOptions::default(), false)
            .unwrap();
    }
    // "old" gets one message in ten, early; "new" the rest, most of them acked later, so
    // that compaction moves old's records past new's and journal order is not queue order.
    for i in 0..2000 {
        n.send(if i % 10 == 0 { "old" } else { "new" }, i, true);
    }
    let q = n.conn.vhost().queue("new").unwrap();
    for _ in 0..1500 {
        q.get(AckMode::Auto, 0).expect("a message");
    }
    // Wait until compaction has emptied at least half of the segments seen at the peak.
    let segments = || n.broker.store_stats().unwrap().segments;
    let mut peak = 0;
    for _ in 0..1000 {
        peak = peak.max(segments());
        if peak >= 6 && segments() * 2 <= peak {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        peak >= 6 && segments() * 2 <= peak,
        "compaction ran: {peak} -> {} segments",
        segments()
    );
    n.stop().await;

    // Restart with a budget of about ten records: the rest are read back, queue by queue.
    let budget = 2000;
    let clock = Arc::new(ManualClock::new(T0_MS));
    let opened = Broker::open(
        BrokerConfig::default(),
        clock.clone(),
        config(&dir.0, budget),
    )
    .unwrap();
    let old: Vec<usize> = (0..2000).filter(|i| i % 10 == 0).collect();
    let new: Vec<usize> = (0..2000).filter(|i| i % 10 != 0).skip(1500).collect();
    assert_eq!(opened.report.messages, (old.len() + new.len()) as u64);
    assert!(
        opened.report.read_back >= opened.report.messages - 20,
        "at most about ten bodies held: {:?}",
        opened.report
    );
    let n = node(opened, clock);
    assert!(n.resident() <= budget);
    for (name, expected) in [("old", old), ("new", new)] {
        let q = n.conn.vhost().queue(name).unwrap();
        for i in expected {
            let (d, _) = q.get(AckMode::Auto, 0).expect("a message");
            assert_eq!(d.message.body, body_of(i), "{name}: message {i}");
            assert!(d.redelivered);
        }
        assert!(q.get(AckMode::Auto, 0).is_none());
    }
    n.stop().await;
}

/// Sends `count` messages from `*next` on to `q`, every third one persistent.
fn send_many(n: &Node, next: &mut usize, count: usize) {
    for _ in 0..count {
        n.send("q", *next, next.is_multiple_of(3));
        *next += 1;
    }
}

/// Takes deliveries from `sub` until `upto` have come, checking each is the next one, whole.
fn take_in_order(sub: &mut Sub, next: &mut usize, upto: usize) {
    while *next < upto {
        let got = sub.drain();
        assert!(!got.is_empty(), "deliveries keep coming at {next}");
        for d in &got {
            assert_eq!(d.message.body, body_of(*next), "message {next}");
            assert_eq!(d.message.properties.persistent, next.is_multiple_of(3));
            *next += 1;
        }
        ack_all(&got);
    }
}

#[tokio::test]
async fn spill_writes_torn_by_a_full_disk_lose_nothing_and_paging_resumes_once_it_frees() {
    let dir = TempDir::new("torn");
    let faults = ferromq_store::FaultInjector::new();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let mut c = config(&dir.0, 1 << 30);
    c.paging.faults = faults.clone();
    let n = node(
        Broker::open(BrokerConfig::default(), clock.clone(), c).expect("open broker"),
        clock,
    );
    n.conn
        .declare_queue("q", QueueOptions::default(), false)
        .unwrap();
    let mut sent = 0;
    send_many(&n, &mut sent, 1000);
    assert!(!n.broker.paging_stats().unwrap().writes_failing);

    // Every spill write now lands half its bytes, then fails with ENOSPC.
    faults.set_disk_full(true);
    send_many(&n, &mut sent, 2000);
    let stats = n.broker.paging_stats().unwrap();
    assert!(stats.writes_failing, "the failed writes were seen");
    assert!(
        stats.unwritten_bytes > 128 * 1024,
        "refused records wait in memory"
    );
    assert!(
        n.resident() <= QUEUE_BUDGET,
        "ready bodies stay within budget"
    );
    assert_eq!(n.stats("q").messages, 3000);

    // A consumer takes some while the disk is still full: from the files, then from what
    // the disk refused.
    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let mut next = 0;
    take_in_order(&mut sub, &mut next, 1200);
    // Deliveries it has not looked at go back to their place.
    drop(sub);

    // Space comes back: housekeeping writes what waited, and paging carries on.
    faults.set_disk_full(false);
    n.broker.housekeeping();
    let stats = n.broker.paging_stats().unwrap();
    assert!(!stats.writes_failing, "a successful write ends the episode");
    assert!(
        stats.unwritten_bytes < 64 * 1024,
        "{}",
        stats.unwritten_bytes
    );
    send_many(&n, &mut sent, 1000);

    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 50,
            ..Default::default()
        },
    )
    .unwrap();
    take_in_order(&mut sub, &mut next, sent);
    assert!(sub.drain().is_empty(), "each message once");
    assert_eq!(n.stats("q").messages, 0);
    assert_eq!(n.broker.paging_stats().unwrap().unwritten_bytes, 0);
    assert_eq!(spill_files(&dir.0), 0);
    drop(sub);
    n.stop().await;
}

#[tokio::test]
async fn while_spill_writes_fail_memory_is_bounded_and_publishes_that_need_paging_are_refused() {
    let dir = TempDir::new("bounded");
    let faults = ferromq_store::FaultInjector::new();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let global = 2 * QUEUE_BUDGET;
    let unwritten_max = 100 * 1024;
    let mut c = config(&dir.0, global);
    c.paging.faults = faults.clone();
    c.paging.unwritten_max_bytes = unwritten_max;
    let n = node(
        Broker::open(BrokerConfig::default(), clock.clone(), c).expect("open broker"),
        clock,
    );
    for q in ["q", "other"] {
        let durable = QueueOptions {
            durable: true,
            ..Default::default()
        };
        n.conn.declare_queue(q, durable, false).unwrap();
    }
    faults.fail_writes(u32::MAX);
    let mut sent = 0;
    let why = loop {
        let mut m = Message::new("", "q", body_of(sent));
        m.properties.persistent = sent.is_multiple_of(3);
        match n.conn.vhost().publish(Arc::new(m)) {
            Ok(o) => assert_eq!(o.accepted, 1),
            Err(e) => break e,
        }
        sent += 1;
        assert!(sent < 100_000, "publishes were never refused");
    };
    assert!(matches!(why, CoreError::ResourceLimit(_)), "{why:?}");
    assert!(
        why.to_string().contains("disk"),
        "the error says why: {why}"
    );
    let stats = n.broker.paging_stats().unwrap();
    assert!(stats.writes_failing);
    assert!(
        stats.resident_bytes + stats.unwritten_bytes <= global + unwritten_max,
        "memory stays bounded: {stats:?}"
    );
    // A persistent publish is refused the same way, before it is journaled.
    let mut m = Message::new("", "q", body_of(sent));
    m.properties.persistent = true;
    assert!(n.conn.vhost().publish(Arc::new(m)).is_err());
    // A queue that needs no paging still takes messages.
    let mut m = Message::new("", "other", Bytes::from_static(b"small"));
    m.properties.persistent = true;
    assert_eq!(n.conn.vhost().publish(Arc::new(m)).unwrap().accepted, 1);

    // Space comes back: the next housekeeping writes what waited and publishes go on.
    faults.clear();
    n.broker.housekeeping();
    assert!(!n.broker.paging_stats().unwrap().writes_failing);
    send_many(&n, &mut sent, 500);

    let mut sub = Sub::new(
        &n.conn,
        "q",
        ConsumerOpts {
            prefetch: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let mut next = 0;
    take_in_order(&mut sub, &mut next, sent);
    assert!(
        sub.drain().is_empty(),
        "each message once, none of the refused"
    );
    assert_eq!(n.stats("q").messages, 0);
    drop(sub);
    n.stop().await;
}
