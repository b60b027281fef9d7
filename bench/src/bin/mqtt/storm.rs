//! The `connect` case: connection set-up rate. `--parallel` workers each repeat: TCP
//! connect, CONNECT (3.1.1, clean session, a fresh client id), CONNACK, DISCONNECT, then
//! wait until the broker closes the socket, so each cycle is a whole connection's life
//! on both sides. Waiting for the broker's close also leaves the TIME_WAIT state on the
//! broker's side, so the client's ephemeral ports do not run out; sockets are spread
//! over `--source-addrs` loopback addresses all the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferromq_bench::run::{window, FirstError};

use crate::raw::{dial, disconnect, handshake, source_addr};
use crate::{sample, usage_fields, Args};

/// Longest a single connection cycle may take.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the window samples the broker's RSS.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: FirstError,
    stop: AtomicBool,
}

async fn worker(a: Arc<WorkerArgs>, w: usize, counts: Arc<Counts>) {
    let source = source_addr(w, a.source_addrs);
    let mut n = 0u64;
    while !counts.stop.load(Ordering::Relaxed) {
        let id = format!("storm-{}-{w}-{n}", std::process::id());
        n += 1;
        let cycle = async {
            let mut s = dial(source, a.broker).await?;
            handshake(&mut s, &id, a.keep_alive_s).await?;
            disconnect(&mut s).await
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

struct WorkerArgs {
    broker: std::net::SocketAddr,
    keep_alive_s: u16,
    source_addrs: u8,
}

/// Runs the `connect` case and prints its line; returns whether it was clean.
pub async fn run(a: &Args) -> bool {
    let wa = Arc::new(WorkerArgs {
        broker: a.broker(),
        keep_alive_s: a.keep_alive_s,
        source_addrs: if a.source_addrs == 0 {
            4
        } else {
            a.source_addrs
        },
    });
    let counts = Arc::new(Counts::default());
    let mut usage = a.usage();
    let workers: Vec<_> = (0..a.parallel)
        .map(|w| tokio::spawn(worker(wa.clone(), w, counts.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    if let Some(u) = usage.as_mut() {
        let _ = u.mark();
    }
    let (t0, ok0, failed0) = (
        Instant::now(),
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let stall_max = window(
        Duration::from_secs(a.seconds),
        SAMPLE_INTERVAL,
        || counts.ok.load(Ordering::Relaxed),
        || false,
        || sample(&mut usage),
    )
    .await;
    let (t1, ok1, failed1) = (
        Instant::now(),
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let usage_line = usage_fields(usage.as_mut());
    counts.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let failed = counts.failed.load(Ordering::Relaxed);
    println!(
        "label={} case={} connects_per_s={:.0} seconds={:.2} parallel={} \
         source_addrs={} connects_window={} failed_window={} connects={} failed={} \
         stall_max_ms={} {} error={}",
        a.label,
        a.case_name,
        (ok1 - ok0) as f64 / (t1 - t0).as_secs_f64(),
        (t1 - t0).as_secs_f64(),
        a.parallel,
        wa.source_addrs,
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
