//! The `idle` case: `--connections` concurrent idle connections with heart-beats, and
//! what they cost the broker in memory.
//!
//! 1. Raise this process's open-file limit to the hard limit (one descriptor per
//!    connection); stop early if that is not enough.
//! 2. Read the broker's RSS (`before`).
//! 3. Open the connections, at most `--connect-parallel` handshakes at a time, spread
//!    over loopback source addresses (127.0.0.1, .2, ...; one address has about 28,000
//!    ephemeral ports towards one broker port). Each does the protocol's handshake,
//!    asking for heart-beats every `--heartbeat` seconds both ways.
//! 4. Hold them for `--hold` seconds. Each sends its heart-beat once a period (the
//!    first at a point spread over the first period) and reads everything the broker
//!    sends: only heart-beats (or answers to them) may come, and the broker must not
//!    close the connection. A broker that promised heart-beats must have sent one on
//!    every connection by the end. Read the broker's RSS at the end (`held`).
//! 5. Every connection closes the protocol's way and waits for the acknowledgement (so
//!    all must still be open), then for the end of the TCP connection.
//!
//! RSS per connection = (`held` − `before`) / connections. `rss_closed_kib` is the RSS
//! a moment after they all closed (how much the broker gave back).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::cli::die;
use crate::net::{dial, source_addr, PORTS_PER_SOURCE_ADDR};
use crate::procfs;
use crate::run::{window, FirstError};

use super::{Conn, Protocol, Settings};

/// Descriptors this process needs besides one per connection.
const FD_SPARE: u64 = 64;
/// Longest wait for one connection's TCP connect and handshake, or its close.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the broker's RSS is sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// How long after the last close the broker's RSS is read again.
const AFTER_CLOSE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    failed: AtomicU64,
    /// Connections that the broker closed, or that received something other than
    /// heart-beats, during the hold.
    dropped: AtomicU64,
    beats_sent: AtomicU64,
    beats_received: AtomicU64,
    /// Connections that received no heart-beat although the broker promised them.
    silent: AtomicU64,
    first_error: FirstError,
}

/// What one connection did.
struct Outcome {
    /// Heart-beats (or answers to them) received during the hold.
    beats_received: u64,
    /// Closed cleanly at the end: the broker acknowledged the close.
    alive_at_end: bool,
}

struct Conf {
    i: usize,
    n: usize,
    source_addrs: u8,
}

/// One connection's life: open, hold until `stop`, close.
async fn connection<P: Protocol>(
    p: Arc<P>,
    s: Arc<Settings>,
    conf: Conf,
    gate: Arc<Semaphore>,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let mut out = Outcome {
        beats_received: 0,
        alive_at_end: false,
    };
    let source = source_addr(conf.i, conf.source_addrs);
    let id = format!("idle-{}-{}", std::process::id(), conf.i);
    let permit = gate.acquire().await.expect("never closed");
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut c = Conn::new(dial(source, s.broker).await?);
        let broker_beat = p.open(&mut c, &id, s.heartbeat).await?;
        Ok::<_, std::io::Error>((c, broker_beat))
    })
    .await;
    drop(permit);
    let (mut c, broker_beat) = match opened {
        Ok(Ok(c)) => c,
        failed => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts.first_error.set(match failed {
                Ok(Err(e)) => format!("connect from {source}: {e}"),
                _ => format!("connect from {source}: over {CONNECT_TIMEOUT:?}"),
            });
            return out;
        }
    };
    counts.connected.fetch_add(1, Ordering::Relaxed);

    // Spread the first heart-beats over one period so that they do not all come at once.
    let period = s.heartbeat;
    let mut next = tokio::time::Instant::now() + period.mul_f64(conf.i as f64 / conf.n as f64);
    let mut beats_sent = 0u64;
    let held = async {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    c.write(p.beat()).await?;
                    beats_sent += 1;
                    counts.beats_sent.fetch_add(1, Ordering::Relaxed);
                    next += period;
                }
                read = c.read_more() => {
                    read?;
                    let n = p.heartbeats(&mut c.buf)?;
                    out.beats_received += n;
                    counts.beats_received.fetch_add(n, Ordering::Relaxed);
                }
                _ = stop.changed() => return Ok::<_, std::io::Error>(()),
            }
        }
    };
    if let Err(e) = held.await {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
        counts.first_error.set(format!(
            "connection {id} during the hold: {e} (after {beats_sent} heart-beats sent, {} received)",
            out.beats_received
        ));
        return out;
    }
    if broker_beat.is_some_and(|b| 2 * b <= s.hold) && out.beats_received == 0 {
        counts.silent.fetch_add(1, Ordering::Relaxed);
        counts.first_error.set(format!(
            "connection {id}: no heart-beat from the broker in {:?} (it promised one every {:?})",
            s.hold,
            broker_beat.unwrap_or_default()
        ));
    }
    let unanswered = beats_sent.saturating_sub(out.beats_received);
    match tokio::time::timeout(CONNECT_TIMEOUT, p.close(&mut c, unanswered)).await {
        Ok(Ok(())) => out.alive_at_end = true,
        Ok(Err(e)) => counts
            .first_error
            .set(format!("connection {id} at the end: {e}")),
        Err(_) => counts.first_error.set(format!(
            "connection {id} at the end: no close within {CONNECT_TIMEOUT:?}"
        )),
    }
    out
}

/// Runs the `idle` case and prints its line; returns whether it was clean.
pub async fn run<P: Protocol>(p: P, s: Settings) -> bool {
    let pid = s
        .broker_pid
        .unwrap_or_else(|| die("--case idle needs --broker-pid (it measures the broker's RSS)"));
    let n = s.connections;
    let limit = procfs::raise_nofile().unwrap_or_else(|e| die(&format!("setrlimit: {e}")));
    if n as u64 + FD_SPARE > limit {
        die(&format!(
            "{n} connections need {} open files; the limit is {limit} (see ulimit -Hn)",
            n as u64 + FD_SPARE
        ));
    }
    let source_addrs = if s.source_addrs == 0 {
        n.div_ceil(PORTS_PER_SOURCE_ADDR).clamp(1, 250) as u8
    } else {
        s.source_addrs
    };
    let rss = || procfs::rss_kib(Some(pid)).unwrap_or_else(|e| die(&format!("broker {pid}: {e}")));
    let rss_before = rss();
    let mut usage = s.usage();

    let s = Arc::new(s);
    let p = Arc::new(p);
    let counts = Arc::new(Counts::default());
    let gate = Arc::new(Semaphore::new(s.connect_parallel));
    let (stop_tx, stop_rx) = watch::channel(false);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let conf = Conf { i, n, source_addrs };
            tokio::spawn(connection(
                p.clone(),
                s.clone(),
                conf,
                gate.clone(),
                counts.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(stop_rx);
    while counts.connected.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed)
        < n as u64
    {
        tokio::time::sleep(SAMPLE_INTERVAL).await;
        procfs::sample(&mut usage);
    }
    let connect_s = t0.elapsed().as_secs_f64();
    let connected = counts.connected.load(Ordering::Relaxed);
    let rss_connected = rss();

    // The hold: the broker's CPU here is what heart-beats cost it.
    if let Some(u) = usage.as_mut() {
        let _ = u.mark();
    }
    window(
        s.hold,
        SAMPLE_INTERVAL,
        || counts.beats_received.load(Ordering::Relaxed),
        || false,
        || procfs::sample(&mut usage),
    )
    .await;
    let rss_held = rss();
    let open_at_end = connected - counts.dropped.load(Ordering::Relaxed);
    let usage_line = procfs::fields(usage.as_mut());

    let _ = stop_tx.send(true);
    let mut beats_min = u64::MAX;
    let mut alive = 0u64;
    for t in tasks {
        match t.await {
            Ok(o) => {
                beats_min = beats_min.min(o.beats_received);
                alive += u64::from(o.alive_at_end);
            }
            Err(e) => counts.first_error.set(format!("connection task: {e}")),
        }
    }
    tokio::time::sleep(AFTER_CLOSE).await;
    let rss_closed = rss();

    let failed = counts.failed.load(Ordering::Relaxed);
    let dropped = counts.dropped.load(Ordering::Relaxed);
    let silent = counts.silent.load(Ordering::Relaxed);
    let per_conn_b = if open_at_end > 0 {
        (rss_held as f64 - rss_before as f64) * 1024.0 / open_at_end as f64
    } else {
        0.0
    };
    println!(
        "label={} case={} connections={} connected={} failed={} dropped={} silent={} \
         alive_at_end={} source_addrs={} heartbeat_s={} hold_s={} connect_s={:.2} \
         connects_per_s={:.0} beats_sent={} beats_received={} beats_received_min={} \
         rss_before_kib={} rss_connected_kib={} rss_held_kib={} rss_closed_kib={} \
         rss_per_conn_b={:.0} {} error={}",
        s.label,
        s.case_name,
        n,
        connected,
        failed,
        dropped,
        silent,
        alive,
        source_addrs,
        s.heartbeat.as_secs(),
        s.hold.as_secs(),
        connect_s,
        connected as f64 / connect_s,
        counts.beats_sent.load(Ordering::Relaxed),
        counts.beats_received.load(Ordering::Relaxed),
        if beats_min == u64::MAX { 0 } else { beats_min },
        rss_before,
        rss_connected,
        rss_held,
        rss_closed,
        per_conn_b,
        usage_line,
        counts.first_error.field(),
    );
    failed == 0
        && dropped == 0
        && silent == 0
        && alive == n as u64
        && counts.first_error.get().is_none()
}
