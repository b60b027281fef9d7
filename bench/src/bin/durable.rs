//! Durability benchmark: confirmed persistent publish throughput with 1, 4 and 32
//! concurrent producers, fsyncs per second, and recovery time for a journal of N messages.
//!
//! It drives the broker core in-process (no network), so it measures the journal and the
//! core's durability path, which is what every protocol's persistent confirm waits on.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin durable -- [--dir DIR] [--seconds S]
//!     [--size BYTES] [--window N] [--recover N]
//! ```
//! `--dir` should be on the disk the broker would use (default: a directory under the
//! system temp dir, which may be a tmpfs on some machines; check `df`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferromq_core::{
    Broker, BrokerConfig, DurableConfig, Message, QueueOptions, SyncTicket, SystemClock,
};

struct Args {
    dir: PathBuf,
    seconds: u64,
    size: usize,
    window: usize,
    recover: u64,
}

fn args() -> Args {
    let mut a = Args {
        dir: std::env::temp_dir().join("ferromq-bench-durable"),
        seconds: 5,
        size: 256,
        window: 64,
        recover: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => a.dir = value().into(),
            "--seconds" => a.seconds = value().parse().expect("--seconds"),
            "--size" => a.size = value().parse().expect("--size"),
            "--window" => a.window = value().parse().expect("--window"),
            "--recover" => a.recover = value().parse().expect("--recover"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn open(
    dir: &PathBuf,
) -> (
    Broker,
    tokio::task::JoinHandle<()>,
    ferromq_core::RecoveryReport,
) {
    let mut cfg = DurableConfig::new(dir);
    cfg.disk_free_min_bytes = 0;
    let opened = Broker::open(BrokerConfig::default(), Arc::new(SystemClock), cfg)
        .expect("open the journal");
    let persister = tokio::spawn(opened.persister.run());
    (opened.broker, persister, opened.report)
}

fn persistent(body: &Bytes) -> Arc<Message> {
    let mut m = Message::new("", "bench", body.clone());
    m.properties.persistent = true;
    Arc::new(m)
}

/// One producer: publishes with at most `window` unconfirmed, until `stop`.
async fn producer(
    broker: Broker,
    body: Bytes,
    window: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let vhost = broker.vhost("/").expect("default vhost");
    let mut waiter = broker.sync_waiter().expect("a journal");
    let mut outstanding: std::collections::VecDeque<SyncTicket> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        if !broker.has_durable_capacity() {
            broker.durable_capacity().await;
        }
        let t = vhost
            .publish(persistent(&body))
            .expect("publish")
            .ticket
            .expect("journaled");
        outstanding.push_back(t);
        if outstanding.len() >= window {
            // Confirms arrive in order: waiting for the newest covers the window.
            let newest = *outstanding.back().expect("non-empty");
            waiter.wait(newest).await.expect("synced");
            done.fetch_add(outstanding.len() as u64, Ordering::Relaxed);
            outstanding.clear();
        }
    }
    if let Some(&newest) = outstanding.back() {
        waiter.wait(newest).await.expect("synced");
        done.fetch_add(outstanding.len() as u64, Ordering::Relaxed);
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    let body = Bytes::from(vec![b'x'; a.size]);
    println!(
        "# confirmed persistent publishes, {} B bodies, window {} per producer, {} s per run, journal in {}",
        a.size,
        a.window,
        a.seconds,
        a.dir.display()
    );
    println!("producers  msgs/s  fsyncs/s  msgs/fsync");
    for producers in [1usize, 4, 32] {
        let dir = a.dir.join(format!("p{producers}"));
        let (broker, persister, _) = open(&dir);
        let conn = {
            let p = broker.authenticate("guest", "guest", None).expect("guest");
            broker.connect(p, "/").expect("connect")
        };
        conn.declare_queue("bench", QueueOptions::default(), false)
            .expect("declare");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let fsyncs0 = broker.store_stats().expect("journal").fsyncs;
        let started = Instant::now();
        let tasks: Vec<_> = (0..producers)
            .map(|_| {
                tokio::spawn(producer(
                    broker.clone(),
                    body.clone(),
                    a.window,
                    stop.clone(),
                    done.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(a.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("producer");
        }
        let secs = started.elapsed().as_secs_f64();
        let fsyncs = broker.store_stats().expect("journal").fsyncs - fsyncs0;
        let n = done.load(Ordering::Relaxed);
        println!(
            "{producers:>9}  {:>6.0}  {:>8.0}  {:>10.1}",
            n as f64 / secs,
            fsyncs as f64 / secs,
            n as f64 / fsyncs.max(1) as f64
        );
        broker.close().await.expect("close");
        drop(conn);
        persister.await.expect("persister");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Recovery time.
    let dir = a.dir.join("recover");
    let (broker, persister, _) = open(&dir);
    {
        let p = broker.authenticate("guest", "guest", None).expect("guest");
        let conn = broker.connect(p, "/").expect("connect");
        conn.declare_queue("bench", QueueOptions::default(), false)
            .expect("declare");
        let vhost = conn.vhost().clone();
        let mut last = None;
        for _ in 0..a.recover {
            if !broker.has_durable_capacity() {
                broker.durable_capacity().await;
            }
            last = vhost.publish(persistent(&body)).expect("publish").ticket;
        }
        if let Some(t) = last {
            broker
                .sync_waiter()
                .expect("journal")
                .wait(t)
                .await
                .expect("synced");
        }
        let s = broker.store_stats().expect("journal");
        println!(
            "# recovery: {} messages of {} B stored in {} segments, {} MB on disk",
            a.recover,
            a.size,
            s.segments,
            s.disk_bytes / 1_000_000
        );
    }
    broker.close().await.expect("close");
    persister.await.expect("persister");
    drop(broker);
    let started = Instant::now();
    let (broker, persister, report) = tokio::task::block_in_place(|| open(&dir));
    let elapsed = started.elapsed();
    println!(
        "recovered {} messages ({} records) in {:.2} s ({:.0} msgs/s)",
        report.messages,
        report.records,
        elapsed.as_secs_f64(),
        report.messages as f64 / elapsed.as_secs_f64()
    );
    broker.close().await.expect("close");
    persister.await.expect("persister");
    let _ = std::fs::remove_dir_all(&a.dir);
}
