//! The message-flow cases: producers publish to one topic, consumers subscribed to it
//! receive, every message is accounted for.
//!
//! Each body starts with the header of `ferromq_bench::tally`: the producer's number
//! (u32), its sequence number and, with `--rate`, the time it was due (u64 each), all
//! little-endian; the rest is a pattern that depends on the producer, checked byte for
//! byte on arrival (`corrupt` counts mismatches). Every consumer keeps, per producer, the
//! set of numbers it received, so `lost` (published × consumers − distinct deliveries)
//! and `duplicates` are exact. At QoS 0 a broker may drop messages; the loss
//! is reported, and only a loss at QoS 1 fails the run.
//!
//! Flow control: producer `p` pauses while it is more than `--backlog / producers`
//! messages ahead of the slowest consumer's highest number received from `p` (highest,
//! not count, so that a QoS 0 loss does not stall it forever). Queues stay short and the
//! figure is the broker's steady state, not the rate at which it can buffer.
//!
//! Fixed rate (`--rate N`, one producer): instead of flooding, the producer publishes
//! message `i` at `start + i / N` from a pacing thread ([`ferromq_bench::latency`]) and
//! stamps it with that due time; the consumer records due time → arrival for every
//! message due inside the measurement window, and the line gets `lat_p50_us`,
//! `lat_p99_us`, `lat_p999_us`, `lat_max_us`, plus the pacer's own lateness
//! (`pace_late_*`) and how long each hand-over to the client took (`pace_send_*`).
//! There is no backlog limit then: the rate is the limit. The clients' sockets get
//! TCP_NODELAY ([`raw::nodelay_towards`]): with Nagle's algorithm a QoS 0
//! producer, which never hears back from the broker, holds each publish until the
//! broker's delayed ACK, which measured about 1.4 ms at the median even through a relay
//! that only forwards bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferromq_bench::latency::{self, now_ns, Pacing, Recorder};
use ferromq_bench::run::{drain, window, FirstError};
use ferromq_bench::tally::{pattern, stamp, Received};
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, SubscribeReasonCode,
};

use crate::{raw, sample, usage_fields, Args};

/// Longest wait for a connection, a subscription, or the last PUBACKs.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// After the producers stop, the drain gives up when no delivery arrived for this long.
const DRAIN_IDLE_MAX: Duration = Duration::from_secs(5);
/// How often the measurement window samples progress (for the longest stall).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// How long a producer waits before checking the backlog again.
const BACKLOG_PAUSE: Duration = Duration::from_millis(1);
/// Keep Alive of every client; far longer than a run's pauses.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// rumqttc's request channel (publishes handed over, not yet written).
const REQUEST_CHANNEL_CAP: usize = 256;

/// One producer's counts.
/// Publishes handed to the client; `confirmed`: PUBACKs received (QoS 1).
type Producer = ferromq_bench::tally::Sent;

/// State shared by every task of a run.
struct Shared {
    producers: Vec<Producer>,
    consumers: Vec<Received>,
    /// Due time → delivery, over every consumer (fixed-rate runs only).
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

    /// Lowest over the consumers of the highest number received from producer `p`.
    fn progress(&self, p: usize) -> u64 {
        self.consumers
            .iter()
            .map(|c| c.high[p].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn sent_total(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| p.sent.load(Ordering::Relaxed))
            .sum()
    }

    fn fail(&self, what: String) {
        self.error.set(what);
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn qos_of(n: u8) -> QoS {
    if n == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// A connected client: polls its event loop until CONNACK.
async fn connect(a: &Args, id: String, inflight: u16) -> Result<(AsyncClient, EventLoop), String> {
    let mut o = MqttOptions::new(id.clone(), a.host.to_string(), a.port);
    o.set_keep_alive(KEEP_ALIVE);
    o.set_clean_session(true);
    o.set_inflight(inflight);
    o.set_max_packet_size(a.size + 1024, a.size + 1024);
    let (client, mut ev) = AsyncClient::new(o, REQUEST_CHANNEL_CAP);
    let mut net = ev.network_options();
    net.set_connection_timeout(SETUP_TIMEOUT.as_secs());
    ev.set_network_options(net);
    match tokio::time::timeout(SETUP_TIMEOUT, ev.poll()).await {
        Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) if a.rate > 0 => {
            match raw::nodelay_towards(a.broker()) {
                Ok(n) if n > 0 => Ok((client, ev)),
                Ok(_) => Err(format!("{id}: its socket to {} not found", a.broker())),
                Err(e) => Err(format!("{id}: TCP_NODELAY: {e}")),
            }
        }
        Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => Ok((client, ev)),
        Ok(Ok(other)) => Err(format!("{id}: expected CONNACK, got {other:?}")),
        Ok(Err(e)) => Err(format!("{id}: connect: {e}")),
        Err(_) => Err(format!("{id}: no CONNACK within {SETUP_TIMEOUT:?}")),
    }
}

/// Connects consumer `c`, subscribes, and spawns its receiving loop.
async fn start_consumer(
    a: &Args,
    run: &str,
    topic: &str,
    qos: QoS,
    c: usize,
    shared: Arc<Shared>,
    patterns: Arc<Vec<Vec<u8>>>,
) -> Result<(AsyncClient, tokio::task::JoinHandle<()>), String> {
    let (client, mut ev) = connect(a, format!("{run}-c{c}"), a.inflight).await?;
    client
        .subscribe(topic, qos)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::SubAck(ack)))) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    return Err(format!("SUBACK refused: {ack:?}"));
                }
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("consumer {c}: {e}")),
            Err(_) => return Err(format!("consumer {c}: no SUBACK within {SETUP_TIMEOUT:?}")),
        }
    }
    let topic = topic.to_string();
    let task = tokio::spawn(async move {
        let me = &shared.consumers[c];
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if p.topic != topic {
                        me.corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                    let at_ns = now_ns();
                    if let Some(h) = me.record(&p.payload, &patterns) {
                        shared.latency.record(h.due_ns, at_ns);
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    shared.fail(format!("consumer {c}: {e}"));
                    return;
                }
            }
        }
    });
    Ok((client, task))
}

/// A producer's publishing task.
type Publishing = tokio::task::JoinHandle<()>;

/// Connects producer `p` and spawns its event loop (which counts PUBACKs and ends once
/// DISCONNECT is written) and its publishing loop: flooding up to the backlog, or at
/// `--rate` from a pacing thread.
async fn start_producer(
    a: &Args,
    run: &str,
    topic: &str,
    qos: QoS,
    p: usize,
    shared: Arc<Shared>,
    body: Vec<u8>,
) -> Result<(AsyncClient, tokio::task::JoinHandle<()>, Publishing), String> {
    let (client, mut ev) = connect(a, format!("{run}-p{p}"), a.inflight).await?;
    let loop_shared = shared.clone();
    let event_loop = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Incoming::PubAck(_))) => {
                    loop_shared.producers[p]
                        .confirmed
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    loop_shared.fail(format!("producer {p}: {e}"));
                    return;
                }
            }
        }
    });
    let publisher = client.clone();
    let topic = topic.to_string();
    if a.rate > 0 {
        let rate = a.rate;
        let publishing = tokio::task::spawn_blocking(move || {
            publish_paced(rate, publisher, topic, qos, p, shared, body)
        });
        return Ok((client, event_loop, publishing));
    }
    let backlog = (a.backlog / shared.producers.len() as u64).max(1);
    let unlimited = a.backlog == 0;
    let publishing = tokio::spawn(async move {
        let me = &shared.producers[p];
        let mut body = BytesMut::from(&body[..]);
        let mut seq = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            if !unlimited && seq >= shared.progress(p) + backlog {
                tokio::time::sleep(BACKLOG_PAUSE).await;
                continue;
            }
            stamp(&mut body, seq, 0);
            if let Err(e) = publisher
                .publish_bytes(topic.as_str(), qos, false, body.clone().freeze())
                .await
            {
                shared.fail(format!("producer {p}: publish: {e}"));
                return;
            }
            seq += 1;
            me.sent.store(seq, Ordering::Relaxed);
        }
    });
    Ok((client, event_loop, publishing))
}

/// Publishes at `rate` msg/s until the run stops (runs on a blocking thread: see
/// [`latency::pace`]).
fn publish_paced(
    rate: u64,
    publisher: AsyncClient,
    topic: String,
    qos: QoS,
    p: usize,
    shared: Arc<Shared>,
    body: Vec<u8>,
) {
    let runtime = tokio::runtime::Handle::current();
    let me = &shared.producers[p];
    let mut body = BytesMut::from(&body[..]);
    latency::pace(
        rate,
        &shared.pacing,
        || !shared.stop.load(Ordering::Relaxed),
        |tick| {
            stamp(&mut body, tick.seq, tick.due_ns);
            // Waits only while rumqttc's request channel is full (back-pressure).
            let publish =
                publisher.publish_bytes(topic.as_str(), qos, false, body.clone().freeze());
            match runtime.block_on(publish) {
                Ok(()) => me.sent.store(tick.seq + 1, Ordering::Relaxed),
                Err(e) => shared.fail(format!("producer {p}: publish: {e}")),
            }
        },
    );
}

/// Runs one flow case and prints its line; returns whether it was clean.
pub async fn run(a: &Args, qos_n: u8, producers: usize, consumers: usize) -> bool {
    let qos = qos_of(qos_n);
    let run = format!(
        "bench-{}-{}-{}",
        a.case_name,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let topic = format!("bench/{run}/t");
    let patterns: Arc<Vec<Vec<u8>>> =
        Arc::new((0..producers).map(|p| pattern(p, a.size)).collect());
    let shared = Arc::new(Shared {
        producers: (0..producers).map(|_| Producer::default()).collect(),
        consumers: (0..consumers).map(|_| Received::new(producers)).collect(),
        latency: Recorder::default(),
        pacing: Pacing::default(),
        stop: AtomicBool::new(false),
        error: FirstError::default(),
    });
    let mut usage = a.usage();

    let mut consumer_clients = Vec::new();
    let mut consumer_tasks = Vec::new();
    for c in 0..consumers {
        match start_consumer(a, &run, &topic, qos, c, shared.clone(), patterns.clone()).await {
            Ok((client, task)) => {
                consumer_clients.push(client);
                consumer_tasks.push(task);
            }
            Err(e) => crate::die(&e),
        }
    }
    let mut producer_clients = Vec::new();
    let mut event_loops = Vec::new();
    let mut publishing = Vec::new();
    for p in 0..producers {
        match start_producer(a, &run, &topic, qos, p, shared.clone(), patterns[p].clone()).await {
            Ok((client, ev, publish)) => {
                producer_clients.push(client);
                event_loops.push(ev);
                publishing.push(publish);
            }
            Err(e) => crate::die(&e),
        }
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
        || sample(&mut usage),
    )
    .await;
    shared.latency.close(now_ns());
    shared.pacing.close(now_ns());
    let (t1, delivered1, sent1) = (
        Instant::now(),
        shared.delivered_total(),
        shared.sent_total(),
    );
    let usage_line = usage_fields(usage.as_mut());
    let failed_early = shared.stop.swap(true, Ordering::Relaxed);

    // Stop publishing; at QoS 1 wait for every PUBACK; then DISCONNECT, which rumqttc
    // writes after every publish handed to it, so `sent` is exactly what was written.
    for t in publishing {
        let _ = t.await;
    }
    if qos_n > 0 {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        while shared.producers.iter().any(|p| p.unconfirmed() > 0)
            && Instant::now() < deadline
            && shared.error.get().is_none()
        {
            tokio::time::sleep(SAMPLE_INTERVAL).await;
        }
    }
    for c in &producer_clients {
        let _ = c.disconnect().await;
    }
    for t in event_loops {
        if tokio::time::timeout(SETUP_TIMEOUT, t).await.is_err() {
            shared.fail("a producer did not finish writing within the drain timeout".into());
        }
    }
    let (sent, unconfirmed) = ferromq_bench::tally::sent_totals(&shared.producers);
    let published: u64 = sent.iter().sum();
    let unacked = if qos_n > 0 { unconfirmed } else { 0 };

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
                    .all(|c| c.delivered.load(Ordering::Relaxed) >= published)
        },
    )
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    for c in &consumer_clients {
        let _ = c.disconnect().await;
    }
    for t in consumer_tasks {
        let _ = tokio::time::timeout(SETUP_TIMEOUT, t).await;
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
    let delivered_all = shared.delivered_total();
    let duplicates = sum(|c| &c.duplicates);
    let corrupt = sum(|c| &c.corrupt);
    let lost = expected - distinct.min(expected);
    let error = shared.error.get();
    let elapsed = (t1 - t0).as_secs_f64();
    let delivered_window = delivered1 - delivered0;
    let published_window = sent1 - sent0;
    println!(
        "label={} case={} msgs_per_s={:.0} seconds={:.2} qos={} producers={} consumers={} \
         size={} backlog={} inflight={} published_window={} delivered_window={} \
         window_diff={} published={} delivered={} expected={} lost={} duplicates={} \
         out_of_order={} corrupt={} unacked={} stall_max_ms={}{} {} error={}",
        a.label,
        a.case_name,
        delivered_window as f64 / elapsed,
        elapsed,
        qos_n,
        producers,
        consumers,
        a.size,
        a.backlog,
        a.inflight,
        published_window,
        delivered_window,
        delivered_window as i64 - (published_window * consumers as u64) as i64,
        published,
        delivered_all,
        expected,
        lost,
        duplicates,
        sum(|c| &c.out_of_order),
        corrupt,
        unacked,
        stall_max.as_millis(),
        latency::rate_fields(a.rate, &shared.latency, &shared.pacing),
        usage_line,
        shared.error.field(),
    );
    !(failed_early
        || error.is_some()
        || duplicates > 0
        || corrupt > 0
        || unacked > 0
        || (qos_n > 0 && lost > 0))
}
