//! One measured run: producers SEND to one destination, consumers subscribed to it
//! receive and acknowledge, every message is accounted for.
//!
//! Flow control: producer `p` pauses while it is more than `--backlog / producers`
//! messages ahead of the slowest consumer's highest number received from `p`; in the
//! persistent case it also waits while `--window` SENDs have no RECEIPT yet.
//!
//! Fixed rate (`--rate N`, one producer): instead of flooding, the producer sends message
//! `i` at `start + i / N` from a pacing thread ([`ferromq_bench::latency`]), one SEND per
//! write, its body stamped with that due time; consumers record due time → arrival for
//! every message due inside the measurement window, and the line gets `lat_p50_us`,
//! `lat_p99_us`, `lat_p999_us`, `lat_max_us`, the pacer's own lateness (`pace_late_*`)
//! and how long each hand-over took (`pace_send_*`: the socket write, and in the
//! persistent case the wait for a free slot of the receipt window). There is no backlog
//! limit then: the rate is the limit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferromq_bench::latency::{self, now_ns, Pacing, Recorder};
use ferromq_bench::procfs;
use ferromq_bench::run::{drain, window, FirstError};
use ferromq_bench::tally::{pattern, stamp, Received};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::client::{self, Login, Reader, Subscription};
use crate::frame::{self, Frame};
use crate::{Args, Case};

/// Longest wait for a connection, a subscription, the last receipts or a DISCONNECT.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the producers stop, the drain gives up when no delivery arrived for this long.
const DRAIN_IDLE_MAX: Duration = Duration::from_secs(5);
/// How often the measurement window samples progress (for the longest stall).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// How long a producer waits before checking the backlog again.
const BACKLOG_PAUSE: Duration = Duration::from_millis(1);

/// One producer's counts.
#[derive(Default)]
struct Producer {
    /// SENDs written to the socket; `confirmed`: RECEIPTs for SENDs (persistent case).
    counts: ferromq_bench::tally::Sent,
    /// Wakes the producer when a receipt frees a slot of its window.
    receipt_arrived: Notify,
}

/// State shared by every task of a run.
struct Shared {
    producers: Vec<Producer>,
    consumers: Vec<Received>,
    /// MESSAGE frames flagged `redelivered:true`.
    redelivered: AtomicU64,
    /// Due time → arrival, over every consumer (fixed-rate runs only).
    latency: Recorder,
    /// The paced producer's own lateness and hand-over times.
    pacing: Pacing,
    stop: AtomicBool,
    error: FirstError,
}

impl Shared {
    fn delivered_total(&self) -> u64 {
        self.consumers
            .iter()
            .map(|c| c.delivered.load(Ordering::Relaxed))
            .sum()
    }

    fn sent_total(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| p.counts.sent.load(Ordering::Relaxed))
            .sum()
    }

    /// Lowest over the consumers of the highest number received from producer `p`.
    fn progress(&self, p: usize) -> u64 {
        self.consumers
            .iter()
            .map(|c| c.high[p].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn fail(&self, what: String) {
        self.error.set(what);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Accounts for a MESSAGE body that consumer `c` received, and times it if it is the
    /// first arrival of its number.
    fn record(&self, c: usize, body: &[u8], patterns: &[Vec<u8>]) {
        let at_ns = now_ns();
        if let Some(h) = self.consumers[c].record(body, patterns) {
            self.latency.record(h.due_ns, at_ns);
        }
    }
}

/// What consumers do with each MESSAGE: count it, check it, acknowledge now and then.
struct Acker {
    individual: bool,
    every: u64,
    since: u64,
    pending: BytesMut,
}

impl Acker {
    /// Records `f` for consumer `c`; returns ACK frames to write, if it is time.
    fn on_message(&mut self, f: &Frame, c: usize, shared: &Shared, patterns: &[Vec<u8>]) -> bool {
        shared.record(c, &f.body, patterns);
        if f.header("redelivered").as_deref() == Some("true") {
            shared.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        self.since += 1;
        let last = self.since >= self.every;
        if self.individual || last {
            match f.header("ack") {
                Some(id) => frame::encode(&mut self.pending, "ACK", &[("id", &id)], &[]),
                None => {
                    shared.consumers[c].corrupt.fetch_add(1, Ordering::Relaxed);
                    shared.fail(format!("consumer {c}: a MESSAGE without an ack header"));
                }
            }
        }
        if last {
            self.since = 0;
        }
        last
    }
}

/// Connects consumer `c`, subscribes, and spawns its receiving loop, which ends with a
/// DISCONNECT once `done` turns true.
async fn start_consumer(
    a: &Args,
    login: &Login,
    destination: &str,
    c: usize,
    shared: Arc<Shared>,
    patterns: Arc<Vec<Vec<u8>>>,
    mut done: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let name = format!("consumer {c}");
    let (mut r, mut w) = client::connect(login, &name).await?;
    let id = format!("s{c}");
    client::subscribe(
        &mut r,
        &mut w,
        &Subscription {
            id: &id,
            destination,
            ack: &a.ack,
            prefetch: a.prefetch,
        },
        SETUP_TIMEOUT,
    )
    .await?;
    let mut acker = Acker {
        individual: a.ack == "client-individual",
        every: a.ack_every,
        since: 0,
        pending: BytesMut::new(),
    };
    Ok(tokio::spawn(async move {
        let result = async {
            loop {
                let f = tokio::select! {
                    f = r.next() => f?,
                    _ = done.wait_for(|d| *d) => break,
                };
                match f.command() {
                    "MESSAGE" => {
                        if acker.on_message(&f, c, &shared, &patterns) {
                            client::write(&mut w, &acker.pending).await?;
                            acker.pending.clear();
                        }
                    }
                    "ERROR" => return Err(f.error_text()),
                    other => return Err(format!("unexpected {other}")),
                }
            }
            // Acknowledge the rest, then leave; late MESSAGEs are still counted.
            if !acker.pending.is_empty() {
                client::write(&mut w, &acker.pending).await?;
            }
            client::disconnect(&mut r, &mut w, SETUP_TIMEOUT, |f| {
                shared.record(c, &f.body, &patterns);
            })
            .await
        }
        .await;
        if let Err(e) = result {
            shared.fail(format!("{name}: {e}"));
        }
    }))
}

/// What every producer sends, and how.
#[derive(Clone)]
struct Send {
    destination: String,
    persistent: bool,
    window: u64,
    /// Per producer; 0: no limit.
    backlog: u64,
    batch: usize,
    /// Fixed rate in msg/s (0: flood, up to the backlog).
    rate: u64,
}

/// Connects producer `p` and spawns its receiving loop (RECEIPTs, ERRORs; it ends at the
/// DISCONNECT's receipt) and its sending loop (which ends with that DISCONNECT).
async fn start_producer(
    login: &Login,
    p: usize,
    s: Send,
    body: Vec<u8>,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, String> {
    let name = format!("producer {p}");
    let (r, w) = client::connect(login, &name).await?;
    let receiving = tokio::spawn(receipts(r, p, shared.clone()));
    Ok(tokio::spawn(async move {
        let sent = if s.rate > 0 {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || send_paced(w, p, &s, body, &shared))
                .await
                .unwrap_or_else(|e| Err(format!("pacing thread: {e}")))
        } else {
            send_loop(w, p, &s, body, &shared).await
        };
        if let Err(e) = sent {
            shared.fail(format!("{name}: {e}"));
        }
        match tokio::time::timeout(SETUP_TIMEOUT, receiving).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => shared.fail(format!("{name}: {e}")),
            Ok(Err(e)) => shared.fail(format!("{name}: receiving task: {e}")),
            Err(_) => shared.fail(format!(
                "{name}: no DISCONNECT receipt within {SETUP_TIMEOUT:?}"
            )),
        }
    }))
}

/// A producer's incoming frames: a RECEIPT per persistent SEND, then `bye`.
async fn receipts(mut r: Reader, p: usize, shared: Arc<Shared>) -> Result<(), String> {
    let me = &shared.producers[p];
    loop {
        let f = r.next().await?;
        match f.command() {
            "RECEIPT" => {
                if f.header("receipt-id").as_deref() == Some("bye") {
                    return Ok(());
                }
                me.counts.confirmed.fetch_add(1, Ordering::Relaxed);
                me.receipt_arrived.notify_one();
            }
            "ERROR" => return Err(f.error_text()),
            other => return Err(format!("unexpected {other}")),
        }
    }
}

async fn send_loop(
    mut w: OwnedWriteHalf,
    p: usize,
    s: &Send,
    mut body: Vec<u8>,
    shared: &Shared,
) -> Result<(), String> {
    let me = &shared.producers[p];
    let mut out = BytesMut::new();
    let mut seq = 0u64;
    let mut receipt = String::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut room = s.batch as u64;
        if s.backlog > 0 {
            room = room.min((shared.progress(p) + s.backlog).saturating_sub(seq));
            if room == 0 {
                tokio::time::sleep(BACKLOG_PAUSE).await;
                continue;
            }
        }
        if s.persistent {
            let outstanding = seq - me.counts.confirmed.load(Ordering::Relaxed);
            room = room.min(s.window.saturating_sub(outstanding));
            if room == 0 {
                // A short wait, so that `stop` is seen even if receipts stopped coming.
                let _ =
                    tokio::time::timeout(BACKLOG_PAUSE * 10, me.receipt_arrived.notified()).await;
                continue;
            }
        }
        out.clear();
        for _ in 0..room {
            stamp(&mut body, seq, 0);
            encode_send(&mut out, s, &body, seq, &mut receipt);
            seq += 1;
        }
        client::write(&mut w, &out).await?;
        me.counts.sent.store(seq, Ordering::Relaxed);
    }
    finish(&mut w, me, s.persistent, seq).await
}

/// Sends at `s.rate` msg/s until the run stops, one SEND per write, then finishes as
/// [`send_loop`] does. Blocks: runs on its own thread (see [`latency::pace`]). In the
/// persistent case a message waits for a free slot of the receipt window before it is
/// written: that is back-pressure, and shows in the latencies of the messages due
/// meanwhile.
fn send_paced(
    mut w: OwnedWriteHalf,
    p: usize,
    s: &Send,
    mut body: Vec<u8>,
    shared: &Shared,
) -> Result<(), String> {
    let runtime = tokio::runtime::Handle::current();
    let me = &shared.producers[p];
    let mut out = BytesMut::new();
    let mut receipt = String::new();
    let failed = RefCell::new(None);
    let sent = latency::pace(
        s.rate,
        &shared.pacing,
        || failed.borrow().is_none() && !shared.stop.load(Ordering::Relaxed),
        |tick| {
            if s.persistent {
                runtime.block_on(async {
                    while tick.seq - me.counts.confirmed.load(Ordering::Relaxed) >= s.window
                        && !shared.stop.load(Ordering::Relaxed)
                    {
                        // A short wait, so that `stop` is seen even if receipts stopped.
                        let _ =
                            tokio::time::timeout(BACKLOG_PAUSE * 10, me.receipt_arrived.notified())
                                .await;
                    }
                });
            }
            stamp(&mut body, tick.seq, tick.due_ns);
            out.clear();
            encode_send(&mut out, s, &body, tick.seq, &mut receipt);
            match runtime.block_on(client::write(&mut w, &out)) {
                Ok(()) => me.counts.sent.store(tick.seq + 1, Ordering::Relaxed),
                Err(e) => *failed.borrow_mut() = Some(e),
            }
        },
    );
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    runtime.block_on(finish(&mut w, me, s.persistent, sent))
}

/// Appends the SEND of `body` (message `seq`) to `out`: persistent with a receipt, or
/// neither.
fn encode_send(out: &mut BytesMut, s: &Send, body: &[u8], seq: u64, receipt: &mut String) {
    if s.persistent {
        receipt.clear();
        receipt.push_str(itoa(seq, &mut [0; 20]));
        frame::encode(
            out,
            "SEND",
            &[
                ("destination", &s.destination),
                ("persistent", "true"),
                ("receipt", receipt.as_str()),
            ],
            body,
        );
    } else {
        frame::encode(out, "SEND", &[("destination", &s.destination)], body);
    }
}

/// A producer's end, after `sent` SENDs: every receipt (persistent case), then
/// DISCONNECT, whose receipt ends the receiving loop.
async fn finish(
    w: &mut OwnedWriteHalf,
    me: &Producer,
    persistent: bool,
    sent: u64,
) -> Result<(), String> {
    if persistent {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while me.counts.confirmed.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            let _ = tokio::time::timeout(SAMPLE_INTERVAL, me.receipt_arrived.notified()).await;
        }
    }
    let mut out = BytesMut::new();
    frame::encode(&mut out, "DISCONNECT", &[("receipt", "bye")], &[]);
    client::write(w, &out).await
}

/// `n` in decimal, without allocating.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ASCII digits")
}

/// Runs the case and prints its line; returns whether it was clean.
pub async fn run(a: &Args) -> bool {
    let (producers, consumers) = match a.case {
        Case::Fanout => (1, a.fanout),
        Case::Fanin => (a.fanin, 1),
        Case::Transient | Case::Persistent => (1, 1),
        Case::Connect | Case::Idle => unreachable!("main.rs runs the connection cases"),
    };
    let unique = format!(
        "bench-stomp-{}-{}-{}",
        a.case.name(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let destination = match a.case {
        Case::Fanout => format!("/topic/{unique}"),
        _ => format!("/queue/{unique}"),
    };
    let login = Login {
        broker: a.broker(),
        login: a.login.clone(),
        passcode: a.passcode.clone(),
        host: a.vhost.clone(),
        timeout: SETUP_TIMEOUT,
    };
    let patterns: Arc<Vec<Vec<u8>>> =
        Arc::new((0..producers).map(|p| pattern(p, a.size)).collect());
    let shared = Arc::new(Shared {
        producers: (0..producers).map(|_| Producer::default()).collect(),
        consumers: (0..consumers).map(|_| Received::new(producers)).collect(),
        redelivered: AtomicU64::new(0),
        latency: Recorder::default(),
        pacing: Pacing::default(),
        stop: AtomicBool::new(false),
        error: FirstError::default(),
    });
    let mut usage =
        procfs::watch(a.broker_pid).unwrap_or_else(|e| crate::die(&format!("--broker-pid: {e}")));

    let (done_tx, done_rx) = watch::channel(false);
    let mut consumer_tasks = Vec::new();
    for c in 0..consumers {
        let task = start_consumer(
            a,
            &login,
            &destination,
            c,
            shared.clone(),
            patterns.clone(),
            done_rx.clone(),
        )
        .await
        .unwrap_or_else(|e| crate::die(&e));
        consumer_tasks.push(task);
    }
    let send = Send {
        destination: destination.clone(),
        persistent: a.case == Case::Persistent,
        window: a.window,
        backlog: if a.backlog == 0 {
            0
        } else {
            (a.backlog / producers as u64).max(1)
        },
        batch: a.batch,
        rate: a.rate,
    };
    let mut producer_tasks = Vec::new();
    for p in 0..producers {
        let task = start_producer(&login, p, send.clone(), patterns[p].clone(), shared.clone())
            .await
            .unwrap_or_else(|e| crate::die(&e));
        producer_tasks.push(task);
    }

    // Warm-up, then the measurement window.
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    if let Some(u) = usage.as_mut() {
        let _ = u.mark();
    }
    shared.latency.open(now_ns());
    shared.pacing.open(now_ns());
    let (t0, delivered0, sent0) = (
        Instant::now(),
        shared.delivered_total(),
        shared.sent_total(),
    );
    let stall_max = window(
        Duration::from_secs(a.seconds),
        SAMPLE_INTERVAL,
        || shared.delivered_total(),
        || shared.stop.load(Ordering::Relaxed),
        || procfs::sample(&mut usage),
    )
    .await;
    shared.latency.close(now_ns());
    shared.pacing.close(now_ns());
    let (t1, delivered1, sent1) = (
        Instant::now(),
        shared.delivered_total(),
        shared.sent_total(),
    );
    let usage_line = procfs::fields(usage.as_mut());
    let failed_early = shared.stop.swap(true, Ordering::Relaxed);

    // Producers finish: their receipts, then DISCONNECT and its receipt, so every SEND
    // counted in `sent` has been taken by the broker.
    for t in producer_tasks {
        let _ = t.await;
    }
    let (sent, unconfirmed) =
        ferromq_bench::tally::sent_totals(shared.producers.iter().map(|p| &p.counts));
    let published: u64 = sent.iter().sum();
    let unreceipted = if send.persistent { unconfirmed } else { 0 };

    // Drain: until every consumer has everything, or nothing arrives for a while.
    let expected = published * consumers as u64;
    drain(
        DRAIN_IDLE_MAX,
        SAMPLE_INTERVAL,
        || shared.delivered_total(),
        || {
            shared.error.get().is_some()
                || shared
                    .consumers
                    .iter()
                    .all(|c| c.distinct_below(&sent) >= published)
        },
    )
    .await;
    let _ = done_tx.send(true);
    for t in consumer_tasks {
        if tokio::time::timeout(SETUP_TIMEOUT * 2, t).await.is_err() {
            shared.fail("a consumer did not disconnect in time".into());
        }
    }

    let sum = |f: fn(&Received) -> &AtomicU64| -> u64 {
        shared
            .consumers
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .sum()
    };
    let distinct: u64 = shared
        .consumers
        .iter()
        .map(|c| c.distinct_below(&sent))
        .sum();
    let duplicates = sum(|c| &c.duplicates);
    let corrupt = sum(|c| &c.corrupt);
    let lost = expected - distinct.min(expected);
    let error = shared.error.get();
    let elapsed = (t1 - t0).as_secs_f64();
    let delivered_window = delivered1 - delivered0;
    let published_window = sent1 - sent0;
    println!(
        "label={} case={} msgs_per_s={:.0} seconds={:.2} producers={} consumers={} size={} \
         ack={} prefetch={} ack_every={} window={} backlog={} batch={} published_window={} \
         delivered_window={} window_diff={} published={} delivered={} expected={} lost={} \
         duplicates={} out_of_order={} corrupt={} redelivered={} unreceipted={} \
         stall_max_ms={}{} {} error={}",
        a.label,
        a.case.name(),
        delivered_window as f64 / elapsed,
        elapsed,
        producers,
        consumers,
        a.size,
        a.ack,
        a.prefetch,
        a.ack_every,
        if send.persistent { a.window } else { 0 },
        a.backlog,
        a.batch,
        published_window,
        delivered_window,
        delivered_window as i64 - (published_window * consumers as u64) as i64,
        published,
        shared.delivered_total(),
        expected,
        lost,
        duplicates,
        sum(|c| &c.out_of_order),
        corrupt,
        shared.redelivered.load(Ordering::Relaxed),
        unreceipted,
        stall_max.as_millis(),
        latency::rate_fields(a.rate, &shared.latency, &shared.pacing),
        usage_line,
        shared.error.field(),
    );
    !(failed_early
        || error.is_some()
        || lost > 0
        || duplicates > 0
        || corrupt > 0
        || unreceipted > 0)
}

#[cfg(test)]
mod tests {
    use super::itoa;

    #[test]
    fn itoa_writes_decimal() {
        for n in [0, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string());
        }
    }
}
