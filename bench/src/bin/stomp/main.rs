//! STOMP 1.2 load generator: the same load against any STOMP broker (ferromq, RabbitMQ's
//! STOMP plugin, ActiveMQ), so all can be driven by the same client in one run.
//! `bench/stomp.sh` runs it against the three and prints the ratios; `bench/README.md`
//! explains the cases.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin stomp -- --port 61613 --case CASE
//!     [--host 127.0.0.1] [--login guest] [--passcode guest] [--vhost /]
//!     [--seconds 10] [--warmup 2] [--size 256] [--prefetch 500] [--ack-every 100]
//!     [--ack client|client-individual] [--window 500] [--fanout 10] [--fanin 10]
//!     [--backlog 20000] [--batch 64] [--rate MSGS_PER_S] [--broker-pid PID] [--label NAME]
//!     connect:  [--parallel 8] [--heartbeat 10] [--source-addrs 4]
//!     idle:     [--connections 5000] [--heartbeat 10] [--hold 25]
//!               [--connect-parallel 256] [--source-addrs 0 (auto)]
//! ```
//!
//! Cases:
//! - `transient`: one producer, one consumer, one queue (`/queue/…`), SENDs without
//!   `persistent` and without receipts.
//! - `persistent`: as `transient` with `persistent:true` and a `receipt` on every SEND;
//!   at most `--window` SENDs wait for their RECEIPT at any time.
//! - `fanout`: one producer, `--fanout` subscribers of one topic (`/topic/…`); the rate
//!   is the total of deliveries over all subscribers.
//! - `fanin`: `--fanin` producers, one consumer, one queue.
//! - With `--rate N`, a case with one producer (`transient`, `persistent`, `fanout`)
//!   sends N msg/s on a fixed schedule and reports end-to-end latency percentiles
//!   instead of flooding (`flow.rs`).
//! - `connect`: connection set-up rate; `--parallel` workers each repeat TCP connect,
//!   CONNECT (heart-beat `--heartbeat` s both ways), CONNECTED, DISCONNECT with a
//!   receipt, RECEIPT, and the end of the TCP connection.
//! - `idle`: `--connections` connections opened the same way, held `--hold` seconds
//!   while sending and checking heart-beats, then disconnected; the broker's RSS per
//!   connection is (RSS held − RSS before) / connections. These two go through the
//!   connection cases every load generator shares (`ferromq_bench::storm`, `conns.rs`).
//!
//! The client is the few frames it needs (`frame.rs`, `client.rs`) on tokio TCP with
//! TCP_NODELAY: CONNECT (1.2, `login`, `passcode`, `host`, no heart-beats), SUBSCRIBE with
//! a receipt (waited for before anything is sent), SEND with `content-length`, ACK,
//! DISCONNECT with a receipt. Every producer and consumer has its own connection. A
//! producer writes up to `--batch` SENDs per socket write, as a buffering client does.
//! Consumers subscribe with `ack:client` (cumulative) and acknowledge every
//! `--ack-every` messages, with a prefetch of `--prefetch` in both RabbitMQ's
//! (`prefetch-count`) and ActiveMQ's (`activemq.prefetchSize`) header.
//!
//! Every message is accounted for, by producer and sequence number in its body
//! (`ferromq_bench::tally`); each producer stays at most `--backlog / producers` messages
//! ahead of its slowest consumer, so queues stay short and the figure is the broker's
//! steady state. With `--broker-pid` the line also carries the broker's CPU seconds and
//! RSS from `/proc`.
//!
//! Output: one line of `key=value` pairs per run, for scripts (`bench/stomp.sh`). The
//! exit status is 1 when the run was not clean (a lost, duplicated or corrupt message, a
//! missing receipt, an ERROR frame, a dropped connection), 2 on a usage or setup error.

mod client;
mod conns;
mod flow;
mod frame;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ferromq_bench::cli::{die, Flags};
use ferromq_bench::storm::{self, Settings};
use ferromq_bench::tally::HEADER_BYTES;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Case {
    Transient,
    Persistent,
    Fanout,
    Fanin,
    Connect,
    Idle,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Transient => "transient",
            Case::Persistent => "persistent",
            Case::Fanout => "fanout",
            Case::Fanin => "fanin",
            Case::Connect => "connect",
            Case::Idle => "idle",
        }
    }
}

pub struct Args {
    pub host: IpAddr,
    pub port: u16,
    pub login: String,
    pub passcode: String,
    pub vhost: String,
    pub case: Case,
    pub seconds: u64,
    pub warmup: u64,
    pub size: usize,
    pub prefetch: u32,
    pub ack_every: u64,
    pub ack: String,
    pub window: u64,
    pub fanout: usize,
    pub fanin: usize,
    pub backlog: u64,
    pub batch: usize,
    /// Fixed send rate in msg/s (0: as fast as the backlog allows).
    pub rate: u64,
    pub broker_pid: Option<u32>,
    pub label: String,
    /// The `connect` and `idle` cases' settings.
    pub storm: Settings,
}

fn args() -> Args {
    let mut a = Args {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 61613,
        login: "guest".into(),
        passcode: "guest".into(),
        vhost: "/".into(),
        case: Case::Transient,
        seconds: 10,
        warmup: 2,
        size: 256,
        prefetch: 500,
        ack_every: 100,
        ack: "client".into(),
        window: 500,
        fanout: 10,
        fanin: 10,
        backlog: 20_000,
        batch: 64,
        rate: 0,
        broker_pid: None,
        label: "-".into(),
        storm: Settings::new(([127, 0, 0, 1], 61613).into()),
    };
    let mut f = Flags::from_env();
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--host" => a.host = f.number(&flag),
            "--port" => a.port = f.number(&flag),
            "--login" => a.login = f.value(&flag),
            "--passcode" => a.passcode = f.value(&flag),
            "--vhost" => a.vhost = f.value(&flag),
            "--case" => {
                a.case = match f.value(&flag).as_str() {
                    "transient" => Case::Transient,
                    "persistent" => Case::Persistent,
                    "fanout" => Case::Fanout,
                    "fanin" => Case::Fanin,
                    "connect" => Case::Connect,
                    "idle" => Case::Idle,
                    other => die(&format!(
                        "unknown case {other} (transient persistent fanout fanin connect idle)"
                    )),
                }
            }
            "--seconds" => a.seconds = f.number(&flag),
            "--warmup" => a.warmup = f.number(&flag),
            "--size" => a.size = f.number(&flag),
            "--prefetch" => a.prefetch = f.number(&flag),
            "--ack-every" => a.ack_every = f.number(&flag),
            "--ack" => a.ack = f.value(&flag),
            "--window" => a.window = f.number(&flag),
            "--fanout" => a.fanout = f.number(&flag),
            "--fanin" => a.fanin = f.number(&flag),
            "--backlog" => a.backlog = f.number(&flag),
            "--batch" => a.batch = f.number(&flag),
            "--rate" => a.rate = f.number(&flag),
            "--broker-pid" => a.broker_pid = Some(f.number(&flag)),
            "--label" => a.label = f.value(&flag),
            other if a.storm.flag(other, &mut f) => {}
            other => die(&format!("unknown flag {other}")),
        }
    }
    if a.size < HEADER_BYTES {
        die(&format!(
            "--size must be at least {HEADER_BYTES} (producer id, sequence number, due time)"
        ));
    }
    if a.rate > 0 && matches!(a.case, Case::Fanin | Case::Connect | Case::Idle) {
        die("--rate needs a case with one producer (transient persistent fanout)");
    }
    if a.ack != "client" && a.ack != "client-individual" {
        die("--ack must be client or client-individual");
    }
    if a.ack_every == 0 || a.ack_every >= u64::from(a.prefetch) {
        die("--ack-every must be at least 1 and below --prefetch, or consumers stall");
    }
    if a.window == 0 || a.fanout == 0 || a.fanin == 0 || a.seconds == 0 || a.batch == 0 {
        die("--window, --fanout, --fanin, --seconds and --batch must be at least 1");
    }
    a.storm = Settings {
        broker: a.broker(),
        case_name: a.case.name().into(),
        label: a.label.clone(),
        seconds: a.seconds,
        warmup: a.warmup,
        broker_pid: a.broker_pid,
        ..a.storm
    }
    .checked();
    a
}

impl Args {
    pub fn broker(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let p = || conns::Stomp {
        login: a.login.clone(),
        passcode: a.passcode.clone(),
        host: a.vhost.clone(),
    };
    let clean = match a.case {
        Case::Connect => storm::run_connect(p(), a.storm.clone()).await,
        Case::Idle => storm::run_idle(p(), a.storm.clone()).await,
        _ => flow::run(&a).await,
    };
    if !clean {
        std::process::exit(1);
    }
}
