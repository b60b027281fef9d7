//! AMQP 0-9-1 load generator: one producer and one or more consumers against any AMQP
//! 0-9-1 broker (ferromq, RabbitMQ), so both can be driven by the same client in one run.
//! `bench/amqp.sh` runs it against both and prints the ratio; `bench/README.md` has the
//! figures.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin amqp -- --uri amqp://guest:guest@127.0.0.1:5692/%2f
//!     --case transient|persistent|fanout|connect|idle [--seconds 10] [--warmup 2]
//!     [--size 256] [--prefetch 500] [--window 500] [--fanout 10] [--ack-every 100]
//!     [--pipeline 16] [--backlog 20000] [--rate MSGS_PER_S] [--broker-pid PID]
//!     [--label NAME]
//!     connect:  [--parallel 8] [--channels 1] [--heartbeat 10] [--source-addrs 4]
//!     idle:     [--connections 5000] [--heartbeat 10] [--hold 25] [--channels 1]
//!               [--connect-parallel 256] [--source-addrs 0 (auto)]
//! ```
//!
//! Cases:
//! - `transient`: a non-durable queue, messages without delivery-mode 2, no confirms.
//! - `persistent`: a durable queue, delivery-mode 2, publisher confirms with at most
//!   `--window` publishes unconfirmed.
//! - `fanout`: a fanout exchange with `--fanout` non-durable queues bound to it, one
//!   consumer each on its own connection; transient messages; the rate is the total of
//!   deliveries over all queues.
//! - `connect`: connection set-up rate; `--parallel` workers each repeat TCP connect,
//!   the handshake up to Connection.OpenOk, `--channels` Channel.Open, Connection.Close
//!   and CloseOk, and the end of the TCP connection.
//! - `idle`: `--connections` connections opened the same way, heartbeat `--heartbeat`
//!   seconds, held `--hold` seconds while sending and checking heartbeats, then closed;
//!   the broker's RSS per connection is (RSS held − RSS before) / connections.
//!
//! The message cases use lapin (a third-party client); `connect` and `idle` write the
//! handful of frames they need directly (`raw.rs`) through the connection cases every
//! load generator shares (`ferromq_bench::storm`).
//!
//! How it measures: the producer and every consumer have their own connection. Each
//! consumer has `basic.qos` `--prefetch` and acknowledges with `multiple` every
//! `--ack-every` deliveries (the same for every broker). After `--warmup` seconds the
//! delivered count is sampled, again `--seconds` later; the rate is the difference over
//! the elapsed time. Then the producer stops, the consumers drain, and every message is
//! accounted for: each body is numbered as `ferromq_bench::tally` numbers them (producer
//! 0, a 64-bit sequence number, a due time; the rest a pattern checked on arrival), each
//! consumer keeps a bitmap of the numbers it has seen, so lost, duplicated and corrupt
//! messages are counted exactly, not estimated.
//!
//! The producer keeps at most `--backlog` messages published but not yet delivered to
//! the slowest consumer (0: no limit), so the queue stays short and the figure is the
//! broker's steady state, not the rate at which it can buffer a backlog. A broker
//! without flow control would otherwise look fast while its queue grows without bound.
//! `--pipeline` publishes are handed to the client at once (lapin's `basic_publish`
//! waits until its frames are written; one at a time would measure the client's I/O
//! loop).
//!
//! Fixed rate (`--rate N`): instead of flooding up to the backlog, message `i` is
//! published at `start + i / N` by a pacing thread ([`ferromq_bench::latency`]), each in
//! its own task (at most `--pipeline` in flight), and its body's header carries that due
//! time. Consumers record due time → delivery for every message due
//! inside the measurement window; the line gets `lat_p50_us`, `lat_p99_us`,
//! `lat_p999_us`, `lat_max_us`, the pacer's own lateness (`pace_late_*`) and how long
//! it waited for a free slot or the confirm window (`pace_send_*`).
//!
//! Output: one line of `key=value` pairs per run, for scripts (`bench/amqp.sh`).

mod raw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferromq_bench::cli::{die, Flags};
use ferromq_bench::latency::{self, now_ns, Pacing, Recorder};
use ferromq_bench::run::{self, FirstError};
use ferromq_bench::storm::{self, Settings};
use ferromq_bench::tally::{self, Received, HEADER_BYTES};
use lapin::message::DeliveryResult;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, Semaphore};

/// Longest wait for a connection or a topology operation.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// After the producer stops, the drain gives up when no delivery arrived for this long.
const DRAIN_IDLE_MAX: Duration = Duration::from_secs(5);
/// How often the measurement window samples progress (for the longest stall).
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// How long a producer waits before checking the backlog again.
const BACKLOG_PAUSE: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    Transient,
    Persistent,
    Fanout,
    Connect,
    Idle,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Transient => "transient",
            Case::Persistent => "persistent",
            Case::Fanout => "fanout",
            Case::Connect => "connect",
            Case::Idle => "idle",
        }
    }
}

struct Args {
    uri: String,
    case: Case,
    seconds: u64,
    warmup: u64,
    size: usize,
    prefetch: u16,
    window: usize,
    fanout: usize,
    ack_every: u64,
    pipeline: usize,
    backlog: u64,
    /// Fixed publish rate in msg/s (0: as fast as the backlog allows).
    rate: u64,
    label: String,
    /// The `connect` and `idle` cases' settings (the broker's address comes from `uri`).
    storm: Settings,
    /// Channels each connection of `connect` and `idle` opens.
    channels: u16,
}

fn args() -> Args {
    let mut a = Args {
        uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        case: Case::Transient,
        seconds: 10,
        warmup: 2,
        size: 256,
        prefetch: 500,
        window: 500,
        fanout: 10,
        ack_every: 100,
        pipeline: 16,
        backlog: 20_000,
        rate: 0,
        label: String::new(),
        storm: Settings::new(([127, 0, 0, 1], 5672).into()),
        channels: 1,
    };
    let mut f = Flags::from_env();
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--uri" => a.uri = f.value(&flag),
            "--case" => {
                a.case = match f.value(&flag).as_str() {
                    "transient" => Case::Transient,
                    "persistent" => Case::Persistent,
                    "fanout" => Case::Fanout,
                    "connect" => Case::Connect,
                    "idle" => Case::Idle,
                    other => die(&format!("unknown case {other}")),
                }
            }
            "--seconds" => a.seconds = f.number(&flag),
            "--warmup" => a.warmup = f.number(&flag),
            "--size" => a.size = f.number(&flag),
            "--prefetch" => a.prefetch = f.number(&flag),
            "--window" => a.window = f.number(&flag),
            "--fanout" => a.fanout = f.number(&flag),
            "--ack-every" => a.ack_every = f.number(&flag),
            "--pipeline" => a.pipeline = f.number(&flag),
            "--backlog" => a.backlog = f.number(&flag),
            "--rate" => a.rate = f.number(&flag),
            "--label" => a.label = f.value(&flag),
            "--broker-pid" => a.storm.broker_pid = Some(f.number(&flag)),
            "--channels" => a.channels = f.number(&flag),
            other if a.storm.flag(other, &mut f) => {}
            other => die(&format!("unknown flag {other}")),
        }
    }
    if a.size < HEADER_BYTES {
        die(&format!(
            "--size must be at least {HEADER_BYTES} (producer id, sequence number, due time)"
        ));
    }
    if a.rate > 0 && matches!(a.case, Case::Connect | Case::Idle) {
        die("--rate needs a message case (transient persistent fanout)");
    }
    if a.ack_every == 0 || a.ack_every >= u64::from(a.prefetch) {
        die("--ack-every must be at least 1 and below --prefetch, or consumers stall");
    }
    if a.window == 0 || a.pipeline == 0 || a.fanout == 0 || a.seconds == 0 {
        die("--window, --pipeline, --fanout and --seconds must be at least 1");
    }
    a.storm = Settings {
        case_name: a.case.name().into(),
        label: a.label.clone(),
        seconds: a.seconds,
        warmup: a.warmup,
        ..a.storm
    }
    .checked();
    a
}

/// The parts of an `amqp://user:password@host:port/vhost` URI the raw cases need, with
/// lapin's defaults (guest, port 5672, vhost `/`); `%xx` escapes are decoded.
fn raw_target(uri: &str, channels: u16) -> (std::net::SocketAddr, raw::Amqp) {
    let rest = uri
        .strip_prefix("amqp://")
        .unwrap_or_else(|| die(&format!("--uri {uri}: only amqp:// URIs")));
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5672")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| die(&format!("--uri {uri}: cannot resolve {hostport}")));
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            percent_decode(s)
        }
    };
    let p = raw::Amqp {
        user: or(user, "guest"),
        password: or(password, "guest"),
        vhost: if vhost.is_empty() {
            "/".into()
        } else {
            percent_decode(vhost)
        },
        channels,
    };
    (addr, p)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What one consumer has received.
struct ConsumerStats {
    /// Numbers, duplicates and corrupt bodies (the one producer is number 0).
    received: Received,
    redelivered: AtomicU64,
}

impl ConsumerStats {
    fn new() -> Self {
        Self {
            received: Received::new(1),
            redelivered: AtomicU64::new(0),
        }
    }

    /// Accounts for `body`, delivered at `at_ns`; its latency goes to `latency`.
    fn record(
        &self,
        body: &[u8],
        redelivered: bool,
        at_ns: u64,
        patterns: &[Vec<u8>],
        latency: &Recorder,
    ) {
        if let Some(h) = self.received.record(body, patterns) {
            latency.record(h.due_ns, at_ns);
        }
        if redelivered {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// State shared by the producer tasks, the consumers and the main task.
struct Shared {
    /// Next sequence number to publish.
    next_seq: AtomicU64,
    /// Publishes whose frames the client has written.
    sent: AtomicU64,
    /// Publisher confirms (persistent case).
    acked: AtomicU64,
    nacked: AtomicU64,
    stop: AtomicBool,
    consumers: Vec<Arc<ConsumerStats>>,
    /// What the one producer's bodies hold (see `ferromq_bench::tally`).
    patterns: Vec<Vec<u8>>,
    /// Due time → delivery over every consumer (`--rate` runs only).
    latency: Recorder,
    /// The pacer's own lateness and hand-over times (`--rate` runs only).
    pacing: Pacing,
    /// First error seen by a producer or consumer task.
    error: FirstError,
}

impl Shared {
    fn delivered_total(&self) -> u64 {
        self.consumers
            .iter()
            .map(|c| c.received.delivered.load(Ordering::Relaxed))
            .sum()
    }

    fn delivered_min(&self) -> u64 {
        self.consumers
            .iter()
            .map(|c| c.received.delivered.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn fail(&self, what: String) {
        self.error.set(what);
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn connect(uri: &str) -> Connection {
    match tokio::time::timeout(
        SETUP_TIMEOUT,
        Connection::connect(uri, ConnectionProperties::default()),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => die(&format!("cannot connect to {uri}: {e}")),
        Err(_) => die(&format!("no connection to {uri} within {SETUP_TIMEOUT:?}")),
    }
}

/// Awaits a setup step, dying with its name if it fails or takes too long.
async fn setup<T>(what: &str, f: impl std::future::Future<Output = lapin::Result<T>>) -> T {
    match tokio::time::timeout(SETUP_TIMEOUT, f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => die(&format!("{what}: {e}")),
        Err(_) => die(&format!("{what}: no answer within {SETUP_TIMEOUT:?}")),
    }
}

/// Starts a consumer on its own connection. Deliveries are counted in lapin's delegate
/// call, which runs in delivery order; acknowledgements go through one task per consumer
/// so that `multiple` acks leave in increasing tag order.
async fn start_consumer(
    uri: &str,
    queue: &str,
    prefetch: u16,
    ack_every: u64,
    stats: Arc<ConsumerStats>,
    shared: Arc<Shared>,
) -> Connection {
    let conn = connect(uri).await;
    let ch = setup("consumer channel.open", conn.create_channel()).await;
    setup(
        "basic.qos",
        ch.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await;
    let consumer = setup(
        "basic.consume",
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<u64>();
    let ack_ch = ch.clone();
    let ack_shared = shared.clone();
    tokio::spawn(async move {
        while let Some(tag) = ack_rx.recv().await {
            if let Err(e) = ack_ch
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
            {
                ack_shared.fail(format!("basic.ack {tag}: {e}"));
                return;
            }
        }
    });
    let acked_upto = AtomicU64::new(0);
    consumer.set_delegate(move |d: DeliveryResult| {
        match d {
            Ok(Some(d)) => {
                let at_ns = now_ns();
                stats.record(
                    &d.data,
                    d.redelivered,
                    at_ns,
                    &shared.patterns,
                    &shared.latency,
                );
                if d.delivery_tag >= acked_upto.load(Ordering::Relaxed) + ack_every {
                    acked_upto.store(d.delivery_tag, Ordering::Relaxed);
                    let _ = ack_tx.send(d.delivery_tag);
                }
            }
            Ok(None) => {
                if !shared.stop.load(Ordering::Relaxed) {
                    shared.fail("consumer cancelled by the broker".into());
                }
            }
            Err(e) => shared.fail(format!("consumer: {e}")),
        }
        std::future::ready(())
    });
    conn
}

/// What every publishing task sends, and where.
#[derive(Clone)]
struct Publish {
    exchange: String,
    routing_key: String,
    props: BasicProperties,
    /// The body, numbered and stamped before each publish.
    body: Vec<u8>,
    backlog: u64,
    /// Free slots of the confirm window and the collector (persistent case only).
    window: Option<(Arc<Semaphore>, mpsc::UnboundedSender<ConfirmSlot>)>,
}

/// One of `--pipeline` publishing tasks on the producer's channel.
async fn produce(ch: Channel, shared: Arc<Shared>, p: Publish) {
    let Publish {
        exchange,
        routing_key,
        props,
        mut body,
        backlog,
        window,
    } = p;
    while !shared.stop.load(Ordering::Relaxed) {
        if backlog > 0 && shared.sent.load(Ordering::Relaxed) >= shared.delivered_min() + backlog {
            tokio::time::sleep(BACKLOG_PAUSE).await;
            continue;
        }
        let permit = match &window {
            Some((sem, _)) => Some(sem.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        tally::stamp(&mut body, seq, 0);
        let confirm = match ch
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                shared.fail(format!("basic.publish: {e}"));
                return;
            }
        };
        shared.sent.fetch_add(1, Ordering::Relaxed);
        if let (Some((_, tx)), Some(permit)) = (&window, permit) {
            let _ = tx.send((confirm, permit));
        }
    }
}

/// Publishes at `rate` msg/s until the run stops, on a blocking thread (see
/// [`latency::pace`]). Each message gets its own task, at most `pipeline` at once, so one
/// slow write to the client does not hold up the schedule; waiting for a free slot (or
/// for the confirm window) is back-pressure, and shows in the latencies. Returns once
/// every publish has been written.
fn produce_paced(rate: u64, pipeline: usize, ch: Channel, shared: Arc<Shared>, p: Arc<Publish>) {
    let runtime = tokio::runtime::Handle::current();
    let slots = Arc::new(Semaphore::new(pipeline));
    latency::pace(
        rate,
        &shared.pacing,
        || !shared.stop.load(Ordering::Relaxed),
        |tick| {
            let mut body = p.body.clone();
            tally::stamp(&mut body, tick.seq, tick.due_ns);
            let (slot, confirm_slot) = runtime.block_on(async {
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                let confirm_slot = match &p.window {
                    Some((sem, _)) => {
                        Some(sem.clone().acquire_owned().await.expect("never closed"))
                    }
                    None => None,
                };
                (slot, confirm_slot)
            });
            let (ch, shared, p) = (ch.clone(), shared.clone(), p.clone());
            runtime.spawn(async move {
                let published = ch
                    .basic_publish(
                        p.exchange.as_str().into(),
                        p.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        p.props.clone(),
                    )
                    .await;
                match published {
                    Ok(confirm) => {
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                        if let (Some((_, tx)), Some(permit)) = (&p.window, confirm_slot) {
                            let _ = tx.send((confirm, permit));
                        }
                    }
                    Err(e) => shared.fail(format!("basic.publish: {e}")),
                }
                drop(slot);
            });
        },
    );
    let all = u32::try_from(pipeline).expect("--pipeline fits in u32");
    let _ = runtime.block_on(slots.acquire_many(all));
}

type ConfirmSlot = (lapin::PublisherConfirm, tokio::sync::OwnedSemaphorePermit);

/// Awaits confirms roughly in publish order and frees a window slot for each.
async fn collect_confirms(mut rx: mpsc::UnboundedReceiver<ConfirmSlot>, shared: Arc<Shared>) {
    while let Some((confirm, permit)) = rx.recv().await {
        match confirm.await {
            Ok(c) if c.is_ack() => {
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                shared.nacked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.fail(format!("publisher confirm: {e}"));
                return;
            }
        }
        drop(permit);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    if matches!(a.case, Case::Connect | Case::Idle) {
        let (addr, p) = raw_target(&a.uri, a.channels);
        let s = Settings {
            broker: addr,
            ..a.storm
        };
        let clean = if a.case == Case::Connect {
            storm::run_connect(p, s).await
        } else {
            storm::run_idle(p, s).await
        };
        std::process::exit(if clean { 0 } else { 1 });
    }
    let unique = format!(
        "bench-amqp-{}-{}-{}",
        a.case.name(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let queues: Vec<String> = match a.case {
        Case::Fanout => (0..a.fanout).map(|i| format!("{unique}-q{i}")).collect(),
        _ => vec![unique.clone()],
    };

    // Topology, on the producer's connection.
    let producer_conn = connect(&a.uri).await;
    let admin = setup("channel.open", producer_conn.create_channel()).await;
    let durable = a.case == Case::Persistent;
    for q in &queues {
        setup(
            "queue.declare",
            admin.queue_declare(
                q.as_str().into(),
                QueueDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await;
    }
    let (exchange, routing_key) = if a.case == Case::Fanout {
        setup(
            "exchange.declare",
            admin.exchange_declare(
                unique.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await;
        for q in &queues {
            setup(
                "queue.bind",
                admin.queue_bind(
                    q.as_str().into(),
                    unique.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await;
        }
        (unique.clone(), String::new())
    } else {
        (String::new(), unique.clone())
    };

    let shared = Arc::new(Shared {
        next_seq: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        consumers: queues
            .iter()
            .map(|_| Arc::new(ConsumerStats::new()))
            .collect(),
        patterns: vec![tally::pattern(0, a.size)],
        latency: Recorder::default(),
        pacing: Pacing::default(),
        error: FirstError::default(),
    });

    let mut consumer_conns = Vec::new();
    for (q, stats) in queues.iter().zip(&shared.consumers) {
        consumer_conns.push(
            start_consumer(
                &a.uri,
                q,
                a.prefetch,
                a.ack_every,
                stats.clone(),
                shared.clone(),
            )
            .await,
        );
    }

    let pub_ch = setup("channel.open", producer_conn.create_channel()).await;
    let props = if durable {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut window = None;
    let mut collector = None;
    if a.case == Case::Persistent {
        setup(
            "confirm.select",
            pub_ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await;
        let (tx, rx) = mpsc::unbounded_channel();
        window = Some((Arc::new(Semaphore::new(a.window)), tx));
        collector = Some(tokio::spawn(collect_confirms(rx, shared.clone())));
    }
    let publish = Publish {
        exchange,
        routing_key,
        props,
        body: shared.patterns[0].clone(),
        backlog: a.backlog,
        window,
    };
    let mut producers = Vec::new();
    let mut paced = None;
    if a.rate > 0 {
        let (rate, pipeline, ch, shared) = (a.rate, a.pipeline, pub_ch.clone(), shared.clone());
        let publish = Arc::new(publish);
        paced = Some(tokio::task::spawn_blocking(move || {
            produce_paced(rate, pipeline, ch, shared, publish)
        }));
    } else {
        producers = (0..a.pipeline)
            .map(|_| tokio::spawn(produce(pub_ch.clone(), shared.clone(), publish.clone())))
            .collect();
        drop(publish);
    }

    // Warm-up, then the measurement window.
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    if a.rate > 0 {
        shared.latency.open(now_ns());
        shared.pacing.open(now_ns());
    }
    let (t0, delivered0, sent0) = (
        Instant::now(),
        shared.delivered_total(),
        shared.sent.load(Ordering::Relaxed),
    );
    let stall_max = run::window(
        Duration::from_secs(a.seconds),
        SAMPLE_INTERVAL,
        || shared.delivered_total(),
        || shared.stop.load(Ordering::Relaxed),
        || {},
    )
    .await;
    shared.latency.close(now_ns());
    shared.pacing.close(now_ns());
    let (t1, delivered1, sent1) = (
        Instant::now(),
        shared.delivered_total(),
        shared.sent.load(Ordering::Relaxed),
    );
    let failed_early = shared.stop.swap(true, Ordering::Relaxed);

    // Stop publishing, let confirms and deliveries drain.
    for p in producers {
        let _ = p.await;
    }
    if let Some(p) = paced {
        let _ = p.await;
    }
    if let Some(c) = collector {
        if tokio::time::timeout(DRAIN_IDLE_MAX * 4, c).await.is_err() {
            shared.fail("publisher confirms still outstanding after the drain timeout".into());
        }
    }
    let sent = shared.sent.load(Ordering::Relaxed);
    let expected_each = sent;
    run::drain(
        DRAIN_IDLE_MAX,
        SAMPLE_INTERVAL,
        || shared.delivered_total(),
        || {
            shared
                .consumers
                .iter()
                .all(|c| c.received.delivered.load(Ordering::Relaxed) >= expected_each)
        },
    )
    .await;

    let elapsed = (t1 - t0).as_secs_f64();
    let delivered_window = delivered1 - delivered0;
    let published_window = sent1 - sent0;
    let n = queues.len() as u64;
    let delivered_all = shared.delivered_total();
    let distinct: u64 = shared
        .consumers
        .iter()
        .map(|c| c.received.distinct_below(&[sent]))
        .sum();
    let duplicates: u64 = shared
        .consumers
        .iter()
        .map(|c| c.received.duplicates.load(Ordering::Relaxed))
        .sum();
    let corrupt: u64 = shared
        .consumers
        .iter()
        .map(|c| c.received.corrupt.load(Ordering::Relaxed))
        .sum();
    let redelivered: u64 = shared
        .consumers
        .iter()
        .map(|c| c.redelivered.load(Ordering::Relaxed))
        .sum();
    let lost = sent * n - distinct;
    let error = shared.error.get();

    // Clean up: delete what this run declared; closing the connections cancels consumers.
    for q in &queues {
        let _ = tokio::time::timeout(
            SETUP_TIMEOUT,
            admin.queue_delete(q.as_str().into(), QueueDeleteOptions::default()),
        )
        .await;
    }
    if a.case == Case::Fanout {
        let _ = tokio::time::timeout(
            SETUP_TIMEOUT,
            admin.exchange_delete(unique.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await;
    }
    for c in consumer_conns.iter().chain(std::iter::once(&producer_conn)) {
        let _ = tokio::time::timeout(SETUP_TIMEOUT, c.close(200, "bench done".into())).await;
    }

    println!(
        "label={} case={} msgs_per_s={:.0} seconds={:.2} queues={} size={} prefetch={} \
         ack_every={} window={} pipeline={} backlog={} published_window={} \
         delivered_window={} window_diff={} published={} delivered={} lost={} \
         duplicates={} corrupt={} redelivered={} nacked={} stall_max_ms={}{} error={}",
        if a.label.is_empty() { "-" } else { &a.label },
        a.case.name(),
        delivered_window as f64 / elapsed,
        elapsed,
        n,
        a.size,
        a.prefetch,
        a.ack_every,
        if durable { a.window } else { 0 },
        a.pipeline,
        a.backlog,
        published_window,
        delivered_window,
        delivered_window as i64 - (published_window * n) as i64,
        sent,
        delivered_all,
        lost,
        duplicates,
        corrupt,
        redelivered,
        shared.nacked.load(Ordering::Relaxed),
        stall_max.as_millis(),
        latency::rate_fields(a.rate, &shared.latency, &shared.pacing),
        shared.error.field(),
    );
    if failed_early || error.is_some() || lost > 0 || duplicates > 0 || corrupt > 0 {
        std::process::exit(1);
    }
}
