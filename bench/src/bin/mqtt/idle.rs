//! The `idle` case: `--connections` concurrent idle MQTT connections with Keep Alive, and
//! what they cost the broker in memory.
//!
//! 1. Raise this process's open-file limit to the hard limit (one descriptor per
//!    connection); stop early if that is not enough.
//! 2. Read the broker's RSS (`before`).
//! 3. Open the connections, at most `--connect-parallel` handshakes at a time, spread
//!    over loopback source addresses (127.0.0.1, .2, ...; one address has about 28,000
//!    ephemeral ports towards one broker port). Each sends CONNECT (3.1.1, clean session,
//!    Keep Alive `--keep-alive`) and expects CONNACK 0.
//! 4. Hold them for `--hold` seconds. Each sends PINGREQ once per keep-alive period (the
//!    first at a point spread over the first period) and expects PINGRESP; the broker
//!    closes a connection silent for 1.5 periods, so this also checks that it keeps the
//!    ones that are not. Read the broker's RSS at the end (`held`).
//! 5. Every connection sends a last PINGREQ (all must still be open) and DISCONNECT.
//!
//! RSS per connection = (`held` − `before`) / connections. `rss_closed_kib` is the RSS
//! a moment after they all closed (how much the broker gave back).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferromq_bench::procfs;
use ferromq_bench::run::{window, FirstError};
use tokio::sync::{watch, Semaphore};

use crate::raw::{dial, disconnect, handshake, ping, source_addr, PORTS_PER_SOURCE_ADDR};
use crate::{die, sample, usage_fields, Args};

/// Descriptors this process needs besides one per connection.
const FD_SPARE: u64 = 64;
/// Longest wait for one connection's TCP connect and CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the broker's RSS is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// How long after the last close the broker's RSS is read again.
const AFTER_CLOSE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    failed: AtomicU64,
    /// Connections that failed a ping or were closed during the hold.
    dropped: AtomicU64,
    pings: AtomicU64,
    first_error: FirstError,
}

/// What one connection did.
struct Outcome {
    /// PINGRESPs during the hold.
    pings: u64,
    /// Answered the last PINGREQ and closed cleanly.
    alive_at_end: bool,
}

struct Conn {
    i: usize,
    n: usize,
    broker: std::net::SocketAddr,
    source_addrs: u8,
    keep_alive: Duration,
}

async fn connection(
    c: Conn,
    gate: Arc<Semaphore>,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let failed = Outcome {
        pings: 0,
        alive_at_end: false,
    };
    let source = source_addr(c.i, c.source_addrs);
    let id = format!("idle-{}-{}", std::process::id(), c.i);
    let permit = gate.acquire().await.expect("never closed");
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut s = dial(source, c.broker).await?;
        handshake(&mut s, &id, c.keep_alive.as_secs() as u16).await?;
        Ok::<_, std::io::Error>(s)
    })
    .await;
    drop(permit);
    let mut s = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts
                .first_error
                .set(format!("connect from {source}: {e}"));
            return failed;
        }
        Err(_) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts
                .first_error
                .set(format!("connect from {source}: over {CONNECT_TIMEOUT:?}"));
            return failed;
        }
    };
    counts.connected.fetch_add(1, Ordering::Relaxed);

    // Spread the first pings over one period so that they do not all come at once.
    let mut next = tokio::time::Instant::now() + c.keep_alive.mul_f64(c.i as f64 / c.n as f64);
    let mut pings = 0;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => break,
        }
        let late = next.elapsed();
        match tokio::time::timeout(c.keep_alive, ping(&mut s)).await {
            Ok(Ok(())) => {
                pings += 1;
                counts.pings.fetch_add(1, Ordering::Relaxed);
                last_ok = tokio::time::Instant::now();
            }
            Ok(Err(e)) => {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                counts.first_error.set(format!(
                    "connection {id}: {e} ({} ms after its last answer, ping {} ms late)",
                    last_ok.elapsed().as_millis(),
                    late.as_millis()
                ));
                return Outcome {
                    pings,
                    alive_at_end: false,
                };
            }
            Err(_) => {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                counts
                    .first_error
                    .set(format!("connection {id}: no PINGRESP within a period"));
                return Outcome {
                    pings,
                    alive_at_end: false,
                };
            }
        }
        next += c.keep_alive;
    }
    let end = tokio::time::timeout(CONNECT_TIMEOUT, async {
        ping(&mut s).await?;
        disconnect(&mut s).await
    })
    .await;
    if let Ok(Err(e)) = &end {
        counts
            .first_error
            .set(format!("connection {id} at the end: {e}"));
    }
    Outcome {
        pings,
        alive_at_end: matches!(end, Ok(Ok(()))),
    }
}

/// Runs the `idle` case and prints its line; returns whether it was clean.
pub async fn run(a: &Args) -> bool {
    let pid = a
        .broker_pid
        .unwrap_or_else(|| die("--case idle needs --broker-pid (it measures the broker's RSS)"));
    let n = a.connections;
    let limit = procfs::raise_nofile().unwrap_or_else(|e| die(&format!("setrlimit: {e}")));
    if n as u64 + FD_SPARE > limit {
        die(&format!(
            "{n} connections need {} open files; the limit is {limit} (see ulimit -Hn)",
            n as u64 + FD_SPARE
        ));
    }
    let source_addrs = if a.source_addrs == 0 {
        n.div_ceil(PORTS_PER_SOURCE_ADDR).clamp(1, 250) as u8
    } else {
        a.source_addrs
    };
    let rss = || procfs::rss_kib(Some(pid)).unwrap_or_else(|e| die(&format!("broker {pid}: {e}")));
    let rss_before = rss();
    let mut usage = a.usage();

    let counts = Arc::new(Counts::default());
    let gate = Arc::new(Semaphore::new(a.connect_parallel));
    let (stop_tx, stop_rx) = watch::channel(false);
    let keep_alive = Duration::from_secs(u64::from(a.keep_alive_s));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = Conn {
                i,
                n,
                broker: a.broker(),
                source_addrs,
                keep_alive,
            };
            tokio::spawn(connection(c, gate.clone(), counts.clone(), stop_rx.clone()))
        })
        .collect();
    drop(stop_rx);
    while counts.connected.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed)
        < n as u64
    {
        tokio::time::sleep(SAMPLE_INTERVAL).await;
        sample(&mut usage);
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let connected = counts.connected.load(Ordering::Relaxed);
    let rss_connected = rss();

    // The hold: the broker's CPU here is what keep-alives cost it.
    if let Some(u) = usage.as_mut() {
        let _ = u.mark();
    }
    window(
        Duration::from_secs(a.hold_s),
        SAMPLE_INTERVAL,
        || counts.pings.load(Ordering::Relaxed),
        || false,
        || sample(&mut usage),
    )
    .await;
    let rss_held = rss();
    let open_at_end = connected - counts.dropped.load(Ordering::Relaxed);
    let usage_line = usage_fields(usage.as_mut());

    let _ = stop_tx.send(true);
    let mut pings_min = u64::MAX;
    let mut alive = 0u64;
    for t in tasks {
        match t.await {
            Ok(o) => {
                pings_min = pings_min.min(o.pings);
                alive += u64::from(o.alive_at_end);
            }
            Err(e) => counts.first_error.set(format!("connection task: {e}")),
        }
    }
    tokio::time::sleep(AFTER_CLOSE).await;
    let rss_closed = rss();

    let failed = counts.failed.load(Ordering::Relaxed);
    let dropped = counts.dropped.load(Ordering::Relaxed);
    let error = counts.first_error.get();
    let per_conn_b = if open_at_end > 0 {
        (rss_held as f64 - rss_before as f64) * 1024.0 / open_at_end as f64
    } else {
        0.0
    };
    println!(
        "label={} case={} connections={} connected={} failed={} dropped={} alive_at_end={} \
         source_addrs={} keep_alive_s={} hold_s={} connect_s={:.2} connects_per_s={:.0} \
         pings={} pings_min={} rss_before_kib={} rss_connected_kib={} rss_held_kib={} \
         rss_closed_kib={} rss_per_conn_b={:.0} {} error={}",
        a.label,
        a.case_name,
        n,
        connected,
        failed,
        dropped,
        alive,
        source_addrs,
        a.keep_alive_s,
        a.hold_s,
        connect_s,
        connected as f64 / connect_s,
        counts.pings.load(Ordering::Relaxed),
        if pings_min == u64::MAX { 0 } else { pings_min },
        rss_before,
        rss_connected,
        rss_held,
        rss_closed,
        per_conn_b,
        usage_line,
        counts.first_error.field(),
    );
    failed == 0 && dropped == 0 && alive == n as u64 && pings_min >= 1 && error.is_none()
}
