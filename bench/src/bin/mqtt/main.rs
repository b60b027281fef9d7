//! MQTT load generator: the same load against any MQTT 3.1.1 broker (ferromq, Mosquitto),
//! so both can be driven by the same client in one run. `bench/mqtt.sh` runs it against
//! both and prints the ratio; `bench/README.md` has the figures.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin mqtt -- --port 1883 --case CASE
//!     [--host 127.0.0.1] [--broker-pid PID] [--label NAME]
//!     flow cases:  [--seconds 10] [--warmup 2] [--size 256] [--fanout 10] [--fanin 10]
//!                  [--backlog 20000] [--inflight 100] [--rate MSGS_PER_S]
//!     connect:     [--seconds 10] [--warmup 2] [--parallel 8] [--source-addrs 4]
//!     idle:        [--connections 50000] [--keep-alive 10] [--hold 25]
//!                  [--connect-parallel 256] [--source-addrs 0 (auto)]
//! ```
//!
//! Cases:
//! - `qos0`, `qos1`: one producer, one consumer, one topic; messages published and
//!   subscribed at that QoS.
//! - `fanout0`, `fanout1`: one producer, `--fanout` consumers of the same topic; the rate
//!   is the total of deliveries over all consumers.
//! - `fanin0`, `fanin1`: `--fanin` producers, one consumer.
//! - With `--rate N`, a flow case with one producer publishes N msg/s on a fixed schedule
//!   and reports end-to-end latency percentiles instead of flooding (`flow.rs`).
//! - `connect`: connection set-up rate; `--parallel` workers each repeat TCP connect,
//!   CONNECT, CONNACK, DISCONNECT, and wait for the broker to close.
//! - `idle`: `--connections` concurrent idle connections with Keep Alive `--keep-alive`,
//!   each sending PINGREQ once per keep-alive period, held for `--hold` seconds; the
//!   broker's RSS per connection is (RSS held − RSS before) / connections.
//!
//! The flow cases use rumqttc (a third-party client, MQTT 3.1.1), one connection per
//! producer and consumer; `connect` and `idle` speak the few packets they need directly
//! over tokio sockets (`raw.rs`), which is far cheaper than a full client per connection,
//! through the connection cases every load generator shares (`ferromq_bench::storm`).
//! With `--broker-pid` every case also reports the broker's CPU seconds and RSS from
//! `/proc`, and the CPU the load generator and the rest of the machine used.
//!
//! Output: one line of `key=value` pairs per run, for scripts (`bench/mqtt.sh`). The exit
//! status is 1 when the run was not clean (a loss at QoS 1, a duplicate, a corrupt body,
//! an error, a dropped idle connection), 2 on a usage or setup error.

mod flow;
mod raw;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ferromq_bench::cli::{die, Flags};
use ferromq_bench::procfs::{self, Usage};
use ferromq_bench::storm::{self, Settings};
use ferromq_bench::tally::HEADER_BYTES;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Case {
    /// Messages from producers to consumers of one topic.
    Flow {
        qos: u8,
        producers: usize,
        consumers: usize,
    },
    Connect,
    Idle,
}

pub struct Args {
    pub host: IpAddr,
    pub port: u16,
    pub case_name: String,
    pub case: Case,
    pub seconds: u64,
    pub warmup: u64,
    pub size: usize,
    pub backlog: u64,
    pub inflight: u16,
    /// Fixed publish rate in msg/s (0: as fast as the backlog allows).
    pub rate: u64,
    /// The `connect` and `idle` cases' settings.
    pub storm: Settings,
    pub broker_pid: Option<u32>,
    pub label: String,
}

fn args() -> Args {
    let mut a = Args {
        host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 1883,
        case_name: "qos0".into(),
        case: Case::Connect,
        seconds: 10,
        warmup: 2,
        size: 256,
        backlog: 20_000,
        inflight: 100,
        rate: 0,
        storm: Settings {
            connections: 50_000,
            ..Settings::new(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1883))
        },
        broker_pid: None,
        label: "-".into(),
    };
    let (mut fanout, mut fanin) = (10, 10);
    let mut f = Flags::from_env();
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--host" => a.host = f.number(&flag),
            "--port" => a.port = f.number(&flag),
            "--case" => a.case_name = f.value(&flag),
            "--seconds" => a.seconds = f.number(&flag),
            "--warmup" => a.warmup = f.number(&flag),
            "--size" => a.size = f.number(&flag),
            "--fanout" => fanout = f.number(&flag),
            "--fanin" => fanin = f.number(&flag),
            "--backlog" => a.backlog = f.number(&flag),
            "--inflight" => a.inflight = f.number(&flag),
            "--rate" => a.rate = f.number(&flag),
            // MQTT's name for the heart-beat period.
            "--keep-alive" => a.storm.heartbeat = Duration::from_secs(f.number(&flag)),
            "--broker-pid" => a.broker_pid = Some(f.number(&flag)),
            "--label" => a.label = f.value(&flag),
            other if a.storm.flag(other, &mut f) => {}
            other => die(&format!("unknown flag {other}")),
        }
    }
    let flow = |qos, producers, consumers| Case::Flow {
        qos,
        producers,
        consumers,
    };
    a.case = match a.case_name.as_str() {
        "qos0" => flow(0, 1, 1),
        "qos1" => flow(1, 1, 1),
        "fanout0" => flow(0, 1, fanout),
        "fanout1" => flow(1, 1, fanout),
        "fanin0" => flow(0, fanin, 1),
        "fanin1" => flow(1, fanin, 1),
        "connect" => Case::Connect,
        "idle" => Case::Idle,
        other => die(&format!(
            "unknown case {other} (qos0 qos1 fanout0 fanout1 fanin0 fanin1 connect idle)"
        )),
    };
    if a.size < HEADER_BYTES {
        die(&format!(
            "--size must be at least {HEADER_BYTES} (producer id, sequence number, due time)"
        ));
    }
    if a.rate > 0 && !matches!(a.case, Case::Flow { producers: 1, .. }) {
        die("--rate needs a flow case with one producer (qos0 qos1 fanout0 fanout1)");
    }
    if fanout == 0 || fanin == 0 || a.seconds == 0 || a.inflight == 0 {
        die("--fanout, --fanin, --seconds and --inflight must be at least 1");
    }
    a.storm = Settings {
        broker: a.broker(),
        case_name: a.case_name.clone(),
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

    /// Starts watching the broker's CPU and RSS, if its pid was given.
    pub fn usage(&self) -> Option<Usage> {
        procfs::watch(self.broker_pid).unwrap_or_else(|e| {
            die(&format!(
                "--broker-pid {}: {e}",
                self.broker_pid.unwrap_or_default()
            ))
        })
    }
}

pub use procfs::{fields as usage_fields, sample};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let clean = match a.case {
        Case::Flow {
            qos,
            producers,
            consumers,
        } => flow::run(&a, qos, producers, consumers).await,
        Case::Connect => storm::run_connect(raw::Mqtt, a.storm.clone()).await,
        Case::Idle => storm::run_idle(raw::Mqtt, a.storm.clone()).await,
    };
    if !clean {
        std::process::exit(1);
    }
}
