//! The `connect` case: connection set-up rate. `--parallel` workers each repeat: TCP
//! connect, the protocol's handshake, its close and its acknowledgement, and the end of
//! the TCP connection, so each cycle is a whole connection's life on both sides. Sockets
//! are spread over `--source-addrs` loopback addresses (4 by default) so that the
//! client's ephemeral ports last.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{dial, source_addr};
use crate::procfs;
use crate::run::{window, FirstError};

use super::{Conn, Protocol, Settings};

/// Longest a single connection cycle may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the window samples the broker's RSS.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Source addresses when `--source-addrs` is 0.
const SOURCE_ADDRS_DEFAULT: u8 = 4;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: FirstError,
    stop: AtomicBool,
}

async fn worker<P: Protocol>(p: Arc<P>, s: Arc<Settings>, w: usize, counts: Arc<Counts>) {
    let source = source_addr(w, s.source_addrs);
    let mut n = 0u64;
    while !counts.stop.load(Ordering::Relaxed) {
        let id = format!("storm-{}-{w}-{n}", std::process::id());
        n += 1;
        let cycle = async {
            let mut c = Conn::new(dial(source, s.broker).await?);
            p.open(&mut c, &id, s.heartbeat).await?;
            p.close(&mut c, 0).await
        };
        match tokio::time::timeout(CYCLE_TIMEOUT, cycle).await {
            Ok(Ok(())) => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            failed => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                counts.first_error.set(match failed {
                    Ok(Err(e)) => format!("{source}: {e}"),
                    _ => format!("{source}: cycle over {CYCLE_TIMEOUT:?}"),
                });
            }
        }
    }
}

/// Runs the `connect` case and prints its line; returns whether it was clean (no
/// failed cycle).
pub async fn run<P: Protocol>(p: P, s: Settings) -> bool {
    let mut s = s;
    if s.source_addrs == 0 {
        s.source_addrs = SOURCE_ADDRS_DEFAULT;
    }
    let s = Arc::new(s);
    let p = Arc::new(p);
    let counts = Arc::new(Counts::default());
    let mut usage = s.usage();
    let workers: Vec<_> = (0..s.parallel)
        .map(|w| tokio::spawn(worker(p.clone(), s.clone(), w, counts.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(s.warmup)).await;
    if let Some(u) = usage.as_mut() {
        let _ = u.mark();
    }
    let load = || {
        (
            Instant::now(),
            counts.ok.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        )
    };
    let (t0, ok0, failed0) = load();
    let stall_max = window(
        Duration::from_secs(s.seconds),
        SAMPLE_INTERVAL,
        || counts.ok.load(Ordering::Relaxed),
        || false,
        || procfs::sample(&mut usage),
    )
    .await;
    let (t1, ok1, failed1) = load();
    let usage_line = procfs::fields(usage.as_mut());
    counts.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let failed = counts.failed.load(Ordering::Relaxed);
    println!(
        "label={} case={} connects_per_s={:.0} seconds={:.2} parallel={} \
         source_addrs={} connects_window={} failed_window={} connects={} failed={} \
         stall_max_ms={} {} error={}",
        s.label,
        s.case_name,
        (ok1 - ok0) as f64 / (t1 - t0).as_secs_f64(),
        (t1 - t0).as_secs_f64(),
        s.parallel,
        s.source_addrs,
        ok1 - ok0,
        failed1 - failed0,
        counts.ok.load(Ordering::Relaxed),
        failed,
        stall_max.as_millis(),
        usage_line,
        counts.first_error.field(),
    );
    failed == 0
}
