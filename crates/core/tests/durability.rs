//! Durability through the core: what a restart restores from the journal.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ferromq_core::{
    Broker, BrokerConfig, Connection, DurableConfig, ExchangeKind, ExchangeOptions, FieldTable,
    ManualClock, Message, QueueOptions,
};

/// A running broker on a journal, and its persister task.
struct Node {
    broker: Broker,
    conn: Connection,
    persister: tokio::task::JoinHandle<()>,
    report: ferromq_core::RecoveryReport,
}

fn config(dir: &Path) -> DurableConfig {
    let mut c = DurableConfig::new(dir);
    c.journal.segment_size_max_bytes = 64 * 1024;
    c.tick_ms = 10;
    c.compaction_interval_ms = 50;
    c.disk_free_min_bytes = 0;
    c
}

fn start(dir: &Path) -> Node {
    start_with(config(dir))
}

/// A node whose journal's faults the test sets.
fn start_faulty(dir: &Path) -> (Node, ferromq_core::FaultInjector) {
    let cfg = config(dir);
    let faults = cfg.journal.faults.clone();
    (start_with(cfg), faults)
}

fn start_with(cfg: DurableConfig) -> Node {
    let clock = Arc::new(ManualClock::new(T0_MS));
    let opened = Broker::open(BrokerConfig::default(), clock, cfg).expect("open broker");
    let persister = tokio::spawn(opened.persister.run());
    let conn = connect(&opened.broker);
    Node {
        broker: opened.broker,
        conn,
        persister,
        report: opened.report,
    }
}

impl Node {
    /// Publishes, acks and syncs 500 messages of 1,000 bytes on a queue `churn`, with
    /// pauses, so that the 64 KiB segments fill and compaction moves the live records.
    async fn churn(&self) {
        self.durable_queue("churn");
        let mut sub = self.sub("churn");
        let body = "x".repeat(1000);
        let mut waiter = self.broker.sync_waiter().unwrap();
        let mut last = None;
        for _ in 0..5 {
            for _ in 0..100 {
                last = self.persistent("", "churn", &body).ticket;
            }
            ack_all(&sub.drain());
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        waiter.wait(last.unwrap()).await.unwrap();
    }

    async fn stop(self) {
        self.broker.close().await.expect("clean close");
        drop(self.conn);
        self.persister.await.unwrap();
    }

    fn durable_queue(&self, name: &str) {
        self.conn
            .declare_queue(name, QueueOptions::default(), false)
            .unwrap();
    }

    /// Durable queue "work", whose dead letters go through `amq.fanout` to durable queue
    /// "dlq".
    fn dead_letter_queues(&self) {
        self.durable_queue("dlq");
        let id = self.conn.id();
        self.conn
            .vhost()
            .bind_queue("dlq", "amq.fanout", "", FieldTable::new(), id)
            .unwrap();
        self.conn
            .declare_queue(
                "work",
                options(&[("x-dead-letter-exchange", s("amq.fanout"))]),
                false,
            )
            .unwrap();
    }

    fn transient_queue(&self, name: &str) {
        let o = QueueOptions {
            durable: false,
            ..Default::default()
        };
        self.conn.declare_queue(name, o, false).unwrap();
    }

    fn persistent(&self, exchange: &str, key: &str, body: &str) -> ferromq_core::PublishOutcome {
        let mut m = Message::new(exchange, key, Bytes::copy_from_slice(body.as_bytes()));
        m.properties.persistent = true;
        self.conn.vhost().publish(Arc::new(m)).unwrap()
    }

    fn transient(&self, exchange: &str, key: &str, body: &str) {
        publish(&self.conn, exchange, key, body);
    }

    fn sub(&self, queue: &str) -> Sub {
        Sub::new(&self.conn, queue, ConsumerOpts::default()).unwrap()
    }

    fn messages(&self, queue: &str) -> u64 {
        self.conn.vhost().queue(queue).unwrap().stats().messages
    }
}

#[tokio::test]
async fn persistent_messages_in_durable_queues_survive_in_order_and_redelivered() {
    let dir = TempDir::new("messages");
    let n = start(&dir.0);
    n.durable_queue("d");
    n.transient_queue("t");
    for i in 0..5 {
        let out = n.persistent("", "d", &format!("p{i}"));
        assert!(out.ticket.is_some(), "journaled");
    }
    n.transient("", "d", "transient-in-durable");
    n.persistent("", "t", "persistent-in-transient");
    let mut sub = n.sub("d");
    let got = sub.drain();
    assert_eq!(got.len(), 6);
    assert!(!got[0].redelivered);
    ack(&got[1]);
    ack(&got[3]);
    // got[0], got[2], got[4] stay unacked; the consumer goes away without acking.
    drop(sub);
    n.stop().await;

    let n = start(&dir.0);
    assert!(
        n.conn.vhost().queue("t").is_none(),
        "non-durable queue is gone"
    );
    assert_eq!(n.report.queues, 1);
    assert_eq!(n.report.messages, 3);
    let mut sub = n.sub("d");
    let got = sub.drain();
    assert_eq!(bodies(&got), ["p0", "p2", "p4"]);
    assert!(got.iter().all(|d| d.redelivered), "flagged redelivered");
    ack_all(&got);
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("d"), 0, "acked ones do not come back");
    n.stop().await;
}

#[tokio::test]
async fn tickets_resolve_once_synced() {
    let dir = TempDir::new("tickets");
    let n = start(&dir.0);
    n.durable_queue("d");
    let mut waiter = n.broker.sync_waiter().expect("a store is attached");
    let mut last = None;
    for i in 0..100 {
        last = n.persistent("", "d", &format!("m{i}")).ticket;
    }
    waiter.wait(last.unwrap()).await.expect("synced");
    assert_eq!(waiter.poll(last.unwrap()), Some(Ok(())));
    n.stop().await;
}

/// How long a test waits for a ticket that must resolve; only a broken broker takes
/// this long, and the test then fails instead of hanging.
const RESOLVES_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for `t`, failing the test if it does not resolve.
async fn resolved(waiter: &mut ferromq_core::SyncWaiter, t: ferromq_core::SyncTicket, what: &str) {
    tokio::time::timeout(RESOLVES_WITHIN, waiter.wait(t))
        .await
        .unwrap_or_else(|_| panic!("{what}: the ticket did not resolve"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

impl Node {
    /// Publishes to queue `s`, consumes and acks it, and waits for its ticket: every op
    /// submitted before has then been seen by the persister, so a ticket of theirs that
    /// still does not resolve (with fsyncs held) will not resolve early at all.
    async fn sentinel(&self, waiter: &mut ferromq_core::SyncWaiter) {
        if self.conn.vhost().queue("s").is_none() {
            self.durable_queue("s");
        }
        let t = self.persistent("", "s", "sentinel").ticket.unwrap();
        let mut sub = self.sub("s");
        ack(&sub.expect());
        drop(sub);
        resolved(waiter, t, "the sentinel, consumed").await;
    }
}

#[tokio::test]
async fn a_consumed_publish_is_confirmed_before_its_record_is_synced() {
    let dir = TempDir::new("early");
    let (n, faults) = start_faulty(&dir.0);
    n.durable_queue("d");
    let mut waiter = n.broker.sync_waiter().unwrap();
    resolved(
        &mut waiter,
        n.broker.sync_point().unwrap(),
        "the declaration",
    )
    .await;
    faults.hold_fsyncs(true);
    let t = n.persistent("", "d", "m").ticket.unwrap();
    let mut sub = n.sub("d");
    ack(&sub.expect());
    resolved(&mut waiter, t, "consumed while its fsync is held").await;
    // A point ticket covers the unsynced records too: it still waits.
    n.sentinel(&mut waiter).await;
    assert_eq!(waiter.poll(t.watermark()), None, "not synced yet");
    faults.hold_fsyncs(false);
    drop(sub);
    n.stop().await;

    // The ack record was synced with the publish: the message does not come back.
    let n = start(&dir.0);
    assert_eq!(n.messages("d"), 0);
    n.stop().await;
}

#[tokio::test]
async fn an_early_confirm_needs_every_durable_copy_consumed() {
    let dir = TempDir::new("early-fanout");
    let (n, faults) = start_faulty(&dir.0);
    n.durable_queue("a");
    n.durable_queue("b");
    n.transient_queue("t");
    let id = n.conn.id();
    let v = n.conn.vhost();
    for q in ["a", "b", "t"] {
        v.bind_queue(q, "amq.fanout", "", FieldTable::new(), id)
            .unwrap();
    }
    let mut waiter = n.broker.sync_waiter().unwrap();
    resolved(
        &mut waiter,
        n.broker.sync_point().unwrap(),
        "the declarations",
    )
    .await;
    faults.hold_fsyncs(true);
    let t = n.persistent("amq.fanout", "", "m").ticket.unwrap();
    let mut sa = n.sub("a");
    ack(&sa.expect());
    n.sentinel(&mut waiter).await;
    assert_eq!(waiter.poll(t), None, "b has not had it consumed");
    let mut sb = n.sub("b");
    ack(&sb.expect());
    // The copy in the transient queue t is never consumed: it does not count.
    resolved(&mut waiter, t, "consumed from both durable queues").await;
    assert_eq!(n.messages("t"), 1);
    faults.hold_fsyncs(false);
    drop((sa, sb));
    n.stop().await;
}

#[tokio::test]
async fn requeued_and_dead_lettered_messages_wait_for_the_sync() {
    let dir = TempDir::new("early-not");
    let (n, faults) = start_faulty(&dir.0);
    n.dead_letter_queues();
    let mut waiter = n.broker.sync_waiter().unwrap();
    resolved(
        &mut waiter,
        n.broker.sync_point().unwrap(),
        "the declarations",
    )
    .await;
    faults.hold_fsyncs(true);
    let requeued = n.persistent("", "work", "requeued").ticket.unwrap();
    let dead = n.persistent("", "work", "dead").ticket.unwrap();
    let mut sub = n.sub("work");
    let (d1, d2) = (sub.expect(), sub.expect());
    d1.queue.nack(&[d1.tag], true).unwrap();
    d2.queue.nack(&[d2.tag], false).unwrap();
    // The dead-letter copy is consumed; the message it came from was not.
    let mut sd = n.sub("dlq");
    ack(&sd.expect());
    let redelivered = sub.expect();
    assert_eq!(body(&redelivered), "requeued");
    n.sentinel(&mut waiter).await;
    assert_eq!(waiter.poll(requeued), None, "a requeue is not consumption");
    assert_eq!(waiter.poll(dead), None, "dead-lettering is not consumption");
    faults.hold_fsyncs(false);
    resolved(&mut waiter, requeued, "synced").await;
    resolved(&mut waiter, dead, "synced").await;
    // Consumed after the requeue: confirmed already, and settled for good.
    ack(&redelivered);
    drop((sub, sd));
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("work"), 0);
    assert_eq!(n.messages("dlq"), 0);
    n.stop().await;
}

#[tokio::test]
async fn topology_is_restored_and_deletions_stick() {
    let dir = TempDir::new("topology");
    let n = start(&dir.0);
    let v = n.conn.vhost().clone();
    v.declare_exchange("x", ExchangeKind::Topic, ExchangeOptions::default(), false)
        .unwrap();
    let transient_x = ExchangeOptions {
        durable: false,
        ..Default::default()
    };
    v.declare_exchange("tx", ExchangeKind::Fanout, transient_x, false)
        .unwrap();
    v.declare_exchange(
        "gone",
        ExchangeKind::Direct,
        ExchangeOptions::default(),
        false,
    )
    .unwrap();
    n.durable_queue("q1");
    n.durable_queue("q2");
    n.durable_queue("dead");
    let id = n.conn.id();
    v.bind_queue("q1", "x", "a.*", FieldTable::new(), id)
        .unwrap();
    v.bind_queue("q2", "x", "#", FieldTable::new(), id).unwrap();
    v.bind_queue("q2", "x", "b", FieldTable::new(), id).unwrap();
    v.unbind_queue("q2", "x", "b", &FieldTable::new(), id)
        .unwrap();
    v.bind_queue("dead", "amq.fanout", "", FieldTable::new(), id)
        .unwrap();
    v.bind_exchange("x", "amq.direct", "to-x", FieldTable::new())
        .unwrap();
    n.persistent("", "dead", "lost with its queue");
    v.delete_queue("dead", false, false, id).unwrap();
    v.delete_exchange("gone", false).unwrap();
    n.stop().await;

    let n = start(&dir.0);
    let v = n.conn.vhost().clone();
    assert!(v.exchange("x").is_some());
    assert!(v.exchange("tx").is_none(), "transient exchange");
    assert!(v.exchange("gone").is_none(), "deleted exchange");
    assert!(v.queue("dead").is_none(), "deleted queue");
    let mut keys: Vec<_> = v
        .bindings()
        .into_iter()
        .map(|b| format!("{}->{}:{}", b.source, b.destination, b.key))
        .collect();
    keys.sort();
    assert_eq!(keys, ["amq.direct->x:to-x", "x->q1:a.*", "x->q2:#"]);
    // Routing works through the restored bindings.
    n.persistent("amq.direct", "to-x", "via e2e");
    assert_eq!(n.messages("q1"), 0);
    assert_eq!(n.messages("q2"), 1);
    n.persistent("x", "a.b", "both");
    assert_eq!(n.messages("q1"), 1);
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("q1"), 1);
    assert_eq!(n.messages("q2"), 2);
    // A redeclared queue after a delete starts empty, and survives.
    let id = n.conn.id();
    n.conn.vhost().delete_queue("q1", false, false, id).unwrap();
    n.durable_queue("q1");
    n.persistent("", "q1", "new");
    n.stop().await;

    let n = start(&dir.0);
    let mut sub = n.sub("q1");
    assert_eq!(sub.drain_bodies(), ["new"]);
    n.stop().await;
}

#[tokio::test]
async fn a_changed_queue_expiry_survives_restarts_and_compaction() {
    let dir = TempDir::new("expires");
    let n = start(&dir.0);
    let mut args = FieldTable::new();
    args.insert("x-expires", ferromq_core::FieldValue::U64(1000));
    let options = QueueOptions {
        arguments: args,
        ..Default::default()
    };
    n.conn.declare_queue("s", options.clone(), false).unwrap();
    let q = n.conn.vhost().queue("s").unwrap();
    q.set_expires(Some(60_000));
    n.persistent("", "s", "kept");
    q.set_expires(Some(120_000));
    // Churn through 64 KiB segments so that compaction moves the live records.
    n.churn().await;
    n.stop().await;

    let n = start(&dir.0);
    let q = n.conn.vhost().queue("s").expect("restored");
    assert_eq!(q.expires(), Some(120_000), "the latest expiry");
    assert_eq!(n.messages("s"), 1, "its messages stay");
    q.set_expires(None);
    n.stop().await;

    let n = start(&dir.0);
    let v = n.conn.vhost().clone();
    assert_eq!(v.queue("s").unwrap().expires(), None);
    let id = n.conn.id();
    v.delete_queue("s", false, false, id).unwrap();
    n.conn.declare_queue("s", options, false).unwrap();
    n.stop().await;

    // The recreated queue has its own declared expiry, not the deleted one's.
    let n = start(&dir.0);
    assert_eq!(n.conn.vhost().queue("s").unwrap().expires(), Some(1000));
    assert_eq!(n.messages("s"), 0);
    n.stop().await;
}

#[tokio::test]
async fn a_message_in_two_queues_is_settled_per_queue() {
    let dir = TempDir::new("fanout");
    let n = start(&dir.0);
    n.durable_queue("a");
    n.durable_queue("b");
    let id = n.conn.id();
    let v = n.conn.vhost();
    v.bind_queue("a", "amq.fanout", "", FieldTable::new(), id)
        .unwrap();
    v.bind_queue("b", "amq.fanout", "", FieldTable::new(), id)
        .unwrap();
    n.persistent("amq.fanout", "", "m");
    let mut sa = n.sub("a");
    ack(&sa.expect());
    drop(sa);
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("a"), 0);
    assert_eq!(n.messages("b"), 1);
    n.conn.vhost().purge_queue("b", n.conn.id()).unwrap();
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("b"), 0, "purge is journaled");
    n.stop().await;
}

#[tokio::test]
async fn a_message_settled_in_one_of_two_queues_survives_compaction_for_the_other() {
    let dir = TempDir::new("fanout-compaction");
    let n = start(&dir.0);
    n.durable_queue("a");
    n.durable_queue("b");
    n.durable_queue("filler");
    let id = n.conn.id();
    let v = n.conn.vhost();
    for q in ["a", "b"] {
        v.bind_queue(q, "amq.fanout", "", FieldTable::new(), id)
            .unwrap();
    }
    n.persistent("amq.fanout", "", "m");
    let mut sa = n.sub("a");
    ack(&sa.expect());
    drop(sa);
    // Settled records fill the first segment past its size, so it is sealed, sparse, and
    // compacted away: only what is still live may be copied out of it.
    let filler = "x".repeat(1024);
    let mut sf = n.sub("filler");
    for _ in 0..100 {
        n.persistent("", "filler", &filler);
        ack_all(&sf.drain());
    }
    drop(sf);
    let first = dir.0.join(format!("{:020}.seg", 1));
    for _ in 0..500 {
        if !first.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!first.exists(), "the first segment was compacted");
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("a"), 0);
    assert_eq!(n.messages("b"), 1, "still unsettled in b");
    n.stop().await;
}

#[tokio::test]
async fn dead_lettered_messages_move_durably() {
    let dir = TempDir::new("dlx");
    let n = start(&dir.0);
    n.dead_letter_queues();
    n.persistent("", "work", "poison");
    let mut sub = n.sub("work");
    let d = sub.expect();
    d.queue.nack(&[d.tag], false).unwrap();
    drop(sub);
    n.stop().await;

    let n = start(&dir.0);
    assert_eq!(n.messages("work"), 0);
    let mut sub = n.sub("dlq");
    let d = sub.expect();
    assert_eq!(body(&d), "poison");
    assert_eq!(d.message.deaths.len(), 1, "death history is journaled");
    n.stop().await;
}

#[tokio::test]
async fn acked_records_are_reclaimed_from_disk() {
    let dir = TempDir::new("reclaim");
    let n = start(&dir.0);
    n.durable_queue("d");
    let body = "x".repeat(1000);
    let mut waiter = n.broker.sync_waiter().unwrap();
    let mut sub = n.sub("d");
    let mut last = None;
    for _ in 0..10 {
        for _ in 0..100 {
            last = n.persistent("", "d", &body).ticket;
        }
        ack_all(&sub.drain());
    }
    waiter.wait(last.unwrap()).await.unwrap();
    let segments = |p: &Path| {
        std::fs::read_dir(p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    };
    // ~1 MB went through 64 KiB segments; once the tombstones' targets are gone, only a
    // few segments remain.
    let mut left = usize::MAX;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        left = segments(&dir.0);
        if left <= 3 {
            break;
        }
    }
    assert!(left <= 3, "{left} segments left");
    drop(sub);
    n.stop().await;
    let n = start(&dir.0);
    assert_eq!(n.messages("d"), 0);
    n.stop().await;
}

#[tokio::test]
async fn persistent_publishes_are_refused_below_the_disk_floor() {
    let dir = TempDir::new("floor");
    let mut cfg = config(&dir.0);
    cfg.disk_free_min_bytes = u64::MAX;
    let n = start_with(cfg);
    n.durable_queue("d");
    // The persister checks the floor when it starts.
    let mut refused = None;
    for _ in 0..100 {
        let mut m = Message::new("", "d", Bytes::from_static(b"x"));
        m.properties.persistent = true;
        match n.conn.vhost().publish(Arc::new(m)) {
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    let e = refused.expect("refused");
    assert_eq!(e.reply_code(), 506, "{e}");
    // Transient messages, and persistent ones to non-durable queues, still flow.
    n.transient("", "d", "t");
    n.transient_queue("t");
    n.persistent("", "t", "p");
    n.stop().await;
}

/// Copies every file of `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_journals_restore_a_prefix_or_stop_with_a_clear_error() {
    let dir = TempDir::new("damage");
    let pristine = dir.0.join("pristine");
    let mut cfg = config(&pristine);
    cfg.journal.segment_size_max_bytes = 8 * 1024;
    let n = start_with(cfg.clone());
    n.durable_queue("d");
    let mut last = None;
    for i in 0..1000 {
        last = n
            .persistent("", "d", &format!("{i:04}-{}", "y".repeat(i % 97)))
            .ticket;
    }
    n.broker
        .sync_waiter()
        .unwrap()
        .wait(last.unwrap())
        .await
        .unwrap();
    n.stop().await;
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&pristine)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() > 3, "the data spans several segments");

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut restored, mut refused) = (0, 0);
    for case in 0..40 {
        let work = dir.0.join(format!("case{case}"));
        copy_dir(&pristine, &work);
        let victim = work.join(
            segments[rand(segments.len() as u64) as usize]
                .file_name()
                .unwrap(),
        );
        let mut bytes = std::fs::read(&victim).unwrap();
        if case % 2 == 0 {
            let at = rand(bytes.len() as u64) as usize;
            bytes.truncate(at);
        } else {
            let at = rand(bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rand(8);
        }
        std::fs::write(&victim, &bytes).unwrap();
        let mut c = cfg.clone();
        c.journal.dir = work.clone();
        match Broker::open(
            BrokerConfig::default(),
            Arc::new(ManualClock::new(T0_MS)),
            c,
        ) {
            Ok(opened) => {
                restored += 1;
                // Whatever came back is a prefix of what was sent, in order, intact.
                let q = opened.broker.vhost("/").unwrap().queue("d");
                if let Some(q) = q {
                    let conn = connect(&opened.broker);
                    let mut sub = Sub::new(
                        &conn,
                        "d",
                        ConsumerOpts {
                            prefetch: 1000,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    let got = sub.drain_bodies();
                    for (i, b) in got.iter().enumerate() {
                        assert_eq!(
                            b,
                            &format!("{i:04}-{}", "y".repeat(i % 97)),
                            "case {case}: message {i}"
                        );
                    }
                    drop(q);
                }
                let persister = tokio::spawn(opened.persister.run());
                opened.broker.close().await.unwrap();
                persister.await.unwrap();
            }
            Err(e) => {
                refused += 1;
                let text = e.to_string();
                assert!(
                    text.contains(".seg"),
                    "case {case}: the error names the file: {text}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&work);
    }
    assert!(
        restored > 0 && refused > 0,
        "both outcomes occur ({restored} restored, {refused} refused)"
    );
}

#[tokio::test]
async fn a_failed_journal_fails_pending_confirms_and_refuses_persistent_publishes() {
    let dir = TempDir::new("failed");
    let (n, faults) = start_faulty(&dir.0);
    n.durable_queue("d");
    let mut waiter = n.broker.sync_waiter().unwrap();
    let ok = n.persistent("", "d", "before").ticket.unwrap();
    waiter.wait(ok).await.expect("synced before the fault");
    faults.fail_fsyncs(1);
    let doomed = n.persistent("", "d", "during").ticket.unwrap();
    let e = waiter.wait(doomed).await.expect_err("an fsync failed");
    assert_eq!(e.reply_code(), 541, "{e}");
    assert_eq!(
        waiter.poll(ok),
        Some(Ok(())),
        "what was synced stays synced"
    );
    let mut m = Message::new("", "d", Bytes::from_static(b"after"));
    m.properties.persistent = true;
    let e = n.conn.vhost().publish(Arc::new(m)).expect_err("refused");
    assert_eq!(e.reply_code(), 541, "{e}");
    n.transient("", "d", "transient still flows");
    n.broker
        .close()
        .await
        .expect_err("the journal reports its failure");
    drop(n.conn);
    n.persister.await.unwrap();

    // Reopened, the journal holds what was synced.
    let n = start(&dir.0);
    let mut sub = n.sub("d");
    let got = sub.drain_bodies();
    assert_eq!(got.first().map(String::as_str), Some("before"), "{got:?}");
    n.stop().await;
}

#[tokio::test]
async fn a_full_disk_refuses_what_found_no_space_and_the_broker_carries_on() {
    let dir = TempDir::new("disk-full");
    let (n, faults) = start_faulty(&dir.0);
    n.durable_queue("d");
    let mut waiter = n.broker.sync_waiter().unwrap();
    let before = n.persistent("", "d", "before").ticket.unwrap();
    waiter.wait(before).await.expect("synced");

    faults.set_disk_full(true);
    let refused = n.persistent("", "d", "refused").ticket.unwrap();
    let e = waiter.wait(refused).await.expect_err("no space for it");
    assert_eq!(e.reply_code(), 506, "{e}");
    assert!(e.to_string().contains("disk is full"), "{e}");
    // A declaration made meanwhile takes effect at once; its record waits for space.
    n.durable_queue("later");
    // The refused message stays deliverable in memory, as a transient one would.
    let mut sub = n.sub("d");
    let got = sub.drain();
    assert_eq!(bodies(&got), ["before", "refused"]);
    // The ack's record finds no space either; the ack holds in memory.
    ack(&got[0]);
    let point = n.broker.sync_point().unwrap();
    waiter
        .wait(point)
        .await
        .expect("a sync point owns no refused op");
    assert_eq!(n.messages("d"), 0);

    // Space is back: confirmed again, without a restart, in the queue declared meanwhile.
    faults.set_disk_full(false);
    let after = n.persistent("", "later", "after").ticket.unwrap();
    waiter.wait(after).await.expect("confirmed again");
    assert_eq!(waiter.poll(before), Some(Ok(())));
    assert!(
        matches!(waiter.poll(refused), Some(Err(_))),
        "a refusal stays one"
    );
    drop(sub);
    n.stop().await;

    // "refused" was never stored; the ack of "before" and the queue declared while the
    // disk was full were written again once there was space, ahead of "after".
    let n = start(&dir.0);
    let mut sub = n.sub("d");
    assert_eq!(sub.drain_bodies(), Vec::<String>::new());
    let mut later = n.sub("later");
    assert_eq!(later.drain_bodies(), ["after"]);
    drop((sub, later));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_behind_a_batch_in_flight_refuses_only_what_found_no_space() {
    let dir = TempDir::new("disk-full-in-flight");
    let (n, faults) = start_faulty(&dir.0);
    n.durable_queue("d");
    let mut waiter = n.broker.sync_waiter().unwrap();
    let warm = n.persistent("", "d", "warm-up").ticket.unwrap();
    waiter.wait(warm).await.expect("synced");

    // "a" is written and its fsync held: a batch in flight.
    faults.hold_fsyncs(true);
    let a = n.persistent("", "d", "a").ticket.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while faults.held_fsyncs() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a's fsync never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Behind it, with the disk full, more batches: two messages and a declaration.
    faults.set_disk_full(true);
    let b = n.persistent("", "d", "b").ticket.unwrap();
    n.durable_queue("later");
    let c = n.persistent("", "d", "c").ticket.unwrap();
    faults.hold_fsyncs(false);
    waiter
        .wait(a)
        .await
        .expect("the batch in flight was synced");
    for (name, t) in [("b", b), ("c", c)] {
        let e = waiter.wait(t).await.expect_err("no space for it");
        assert_eq!(e.reply_code(), 506, "{name}: {e}");
    }

    // Space is back: the declaration made meanwhile is written ahead of what follows.
    faults.set_disk_full(false);
    let after = n.persistent("", "later", "after").ticket.unwrap();
    waiter.wait(after).await.expect("confirmed again");
    assert_eq!(waiter.poll(a), Some(Ok(())), "a synced op stays synced");
    let mut sub = n.sub("d");
    assert_eq!(
        sub.drain_bodies(),
        ["warm-up", "a", "b", "c"],
        "all in memory"
    );
    drop(sub);
    n.stop().await;

    // Only what was confirmed comes back.
    let n = start(&dir.0);
    let mut sub = n.sub("d");
    assert_eq!(sub.drain_bodies(), ["warm-up", "a"]);
    let mut later = n.sub("later");
    assert_eq!(later.drain_bodies(), ["after"]);
    drop((sub, later));
    n.stop().await;
}

#[tokio::test]
async fn run_time_users_survive_restarts_and_compaction() {
    use ferromq_core::{hash_password, CoreError, UserRecord};
    let user = |name: &str, password: &str| UserRecord {
        name: name.into(),
        password_hash: hash_password(password),
        vhosts: vec!["/".into()],
        tags: vec![],
        loopback_only: false,
    };
    let dir = TempDir::new("users");
    let n = start(&dir.0);
    let b = &n.broker;
    b.put_user(user("alice", "one")).unwrap();
    b.put_user(user("alice", "two")).unwrap();
    b.put_user(user("bob", "b")).unwrap();
    b.delete_user("bob").unwrap();
    assert!(matches!(b.delete_user("bob"), Err(CoreError::NotFound(_))));
    assert!(
        matches!(
            b.put_user(user("guest", "x")),
            Err(CoreError::PreconditionFailed(_))
        ),
        "a configured user is changed in the configuration only"
    );
    assert!(matches!(
        b.delete_user("guest"),
        Err(CoreError::PreconditionFailed(_))
    ));
    let mut bad = user("carol", "c");
    bad.password_hash = "plaintext".into();
    assert!(matches!(
        b.put_user(bad),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(b.authenticate("alice", "two", None).is_ok());
    // Churn through 64 KiB segments so that compaction moves the user records.
    n.churn().await;
    n.stop().await;

    for _ in 0..2 {
        let n = start(&dir.0);
        let b = &n.broker;
        assert_eq!(b.users().names(), ["alice", "guest"]);
        assert!(
            b.authenticate("alice", "two", None).is_ok(),
            "the latest put"
        );
        assert!(b.authenticate("alice", "one", None).is_err());
        assert!(b.authenticate("bob", "b", None).is_err(), "deleted");
        assert!(b.authenticate("guest", "guest", None).is_ok());
        n.stop().await;
    }
    let n = start(&dir.0);
    n.broker.delete_user("alice").unwrap();
    n.stop().await;
    let n = start(&dir.0);
    assert_eq!(n.broker.users().names(), ["guest"]);
    n.stop().await;
}
