//! Connection storms for any protocol: how fast a broker sets up and tears down whole
//! connections (`connect`), and what idle connections cost it (`idle`). A protocol
//! plugs in its handshake, its heart-beat and its close ([`Protocol`]); the cases, the
//! ramp-up, the counting of failures and the broker's RSS from `/proc` are shared.
//!
//! # Layout
//! - this file: [`Protocol`], [`Conn`] (a socket and its read buffer) and [`Settings`]
//!   (the flags of both cases).
//! - `connect.rs`: the connection-rate case.
//! - `idle.rs`: the idle-connections case.
//!
//! Every connection is checked: a handshake the broker does not answer as the protocol
//! says, a close it does not acknowledge, a heart-beat it does not send or a connection it
//! drops is counted and reported, and makes the run fail.

mod connect;
mod idle;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{die, Flags};
use crate::procfs::{self, Usage};

pub use connect::run as run_connect;
pub use idle::run as run_idle;

/// Read buffer of a connection, grown only for a large handshake frame: idle
/// connections receive a few bytes at a time, and the load generator holds thousands.
const READ_RESERVE_BYTES: usize = 256;

/// One protocol's side of a connection's life, as the client sees it.
pub trait Protocol: Send + Sync + 'static {
    /// The handshake on a fresh connection, up to the point where the client may use it,
    /// asking for heart-beats every `heartbeat` both ways where the protocol lets the
    /// client ask. `id` is unique per connection (a client id where one is needed).
    /// Returns how often the broker will send heart-beats (`None`: it will not).
    fn open(
        &self,
        c: &mut Conn,
        id: &str,
        heartbeat: Duration,
    ) -> impl Future<Output = io::Result<Option<Duration>>> + Send;

    /// One client heart-beat, sent once per `heartbeat` while the connection is idle.
    fn beat(&self) -> &'static [u8];

    /// Takes the whole heart-beats (or, in MQTT, answers to them) off the front of
    /// `buf` and returns how many; anything else from the broker while idle is an error.
    fn heartbeats(&self, buf: &mut BytesMut) -> io::Result<u64>;

    /// The protocol's close and its acknowledgement, then the end of the TCP
    /// connection. `unanswered` is how many heart-beats were sent and not yet answered
    /// (only MQTT's are answered).
    fn close(&self, c: &mut Conn, unanswered: u64) -> impl Future<Output = io::Result<()>> + Send;
}

/// A client connection and what has been read from it and not yet parsed.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet taken by a parser.
    pub buf: BytesMut,
}

impl Conn {
    /// Wraps a connected socket.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_RESERVE_BYTES),
        }
    }

    /// Writes `bytes` whole.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads what is there into `buf` (at least one byte); the broker's close is an
    /// error. Cancel-safe.
    pub async fn read_more(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < READ_RESERVE_BYTES / 4 {
            self.buf.reserve(READ_RESERVE_BYTES);
        }
        match self.stream.read_buf(&mut self.buf).await? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            )),
            _ => Ok(()),
        }
    }

    /// Reads until `buf` holds at least `n` bytes (the caller bounds `n`).
    pub async fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.buf.capacity() < n {
            self.buf.reserve(n - self.buf.len());
        }
        while self.buf.len() < n {
            self.read_more().await?;
        }
        Ok(())
    }

    /// Reads until the broker closes the connection; what arrives meanwhile is kept in
    /// `buf`.
    pub async fn until_closed(&mut self) -> io::Result<()> {
        loop {
            match self.read_more().await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the connection from the client's side after an acknowledged close: sends
    /// FIN and waits for the broker's, discarding anything that still arrives. A reset
    /// counts as the broker's close here: RabbitMQ closes its sockets with a zero linger
    /// (its default `tcp_listen_options`), which sends RST instead of FIN.
    pub async fn finish(&mut self) -> io::Result<()> {
        let closed = match self.stream.shutdown().await {
            Ok(()) => self.until_closed().await,
            Err(e) => Err(e),
        };
        self.buf.clear();
        match closed {
            Err(e) if e.kind() != io::ErrorKind::ConnectionReset => Err(e),
            _ => Ok(()),
        }
    }
}

/// The flags of the `connect` and `idle` cases, and what the load generator's own
/// flags fill in.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The broker's address.
    pub broker: SocketAddr,
    /// The case's name, for the result line.
    pub case_name: String,
    /// The broker's name, for the result line.
    pub label: String,
    /// `connect`: measured seconds.
    pub seconds: u64,
    /// `connect`: seconds before the measurement.
    pub warmup: u64,
    /// `connect`: concurrent open/close cycles (`--parallel`).
    pub parallel: usize,
    /// `idle`: connections held (`--connections`).
    pub connections: usize,
    /// Heart-beat period asked for, both ways (`--heartbeat`, seconds).
    pub heartbeat: Duration,
    /// `idle`: how long the connections are held (`--hold`; 0: two heart-beat periods
    /// plus 5 s).
    pub hold: Duration,
    /// `idle`: handshakes in progress at a time while connecting (`--connect-parallel`).
    pub connect_parallel: usize,
    /// Loopback source addresses to spread client sockets over (`--source-addrs`; 0:
    /// 4 for `connect`, as many as needed for `idle`).
    pub source_addrs: u8,
    /// The broker's pid, for its CPU and RSS (`--broker-pid`; `idle` needs it).
    pub broker_pid: Option<u32>,
}

impl Settings {
    /// The defaults: 8 parallel cycles, 5,000 idle connections with 10 s heart-beats.
    pub fn new(broker: SocketAddr) -> Self {
        Self {
            broker,
            case_name: "connect".into(),
            label: "-".into(),
            seconds: 10,
            warmup: 2,
            parallel: 8,
            connections: 5_000,
            heartbeat: Duration::from_secs(10),
            hold: Duration::ZERO,
            connect_parallel: 256,
            source_addrs: 0,
            broker_pid: None,
        }
    }

    /// Takes `flag` (and its value) if it is one of the connection cases' own:
    /// `--parallel`, `--connections`, `--heartbeat` (seconds), `--hold` (seconds),
    /// `--connect-parallel`, `--source-addrs`. Returns whether it was.
    pub fn flag(&mut self, flag: &str, f: &mut Flags) -> bool {
        match flag {
            "--parallel" => self.parallel = f.number(flag),
            "--connections" => self.connections = f.number(flag),
            "--heartbeat" => self.heartbeat = Duration::from_secs(f.number(flag)),
            "--hold" => self.hold = Duration::from_secs(f.number(flag)),
            "--connect-parallel" => self.connect_parallel = f.number(flag),
            "--source-addrs" => self.source_addrs = f.number(flag),
            _ => return false,
        }
        true
    }

    /// Checks the values and fills in the defaults that depend on others; exits on a
    /// usage error.
    pub fn checked(mut self) -> Self {
        if self.parallel == 0 || self.connect_parallel == 0 || self.seconds == 0 {
            die("--parallel, --connect-parallel and --seconds must be at least 1");
        }
        if self.heartbeat.is_zero() {
            die("--heartbeat must be at least 1 (s)");
        }
        if self.hold.is_zero() {
            // Every connection sends at least two heart-beats, and the broker's
            // timeout for a silent connection (1.5 to 2 periods) passes at least once.
            self.hold = 2 * self.heartbeat + Duration::from_secs(5);
        }
        self
    }

    /// Starts watching the broker's CPU and RSS, if its pid was given.
    fn usage(&self) -> Option<Usage> {
        procfs::watch(self.broker_pid).unwrap_or_else(|e| {
            die(&format!(
                "--broker-pid {}: {e}",
                self.broker_pid.unwrap_or_default()
            ))
        })
    }
}
