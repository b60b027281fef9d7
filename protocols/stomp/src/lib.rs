//! STOMP 1.0, 1.1 and 1.2 for ferromq.
//!
//! # Layout
//! - `frame.rs`: frame types (commands, headers, versions).
//! - `codec.rs`: bytes <-> frames, per-version header escaping, limits.
//! - `destination.rs`: `/queue/`, `/topic/`, `/exchange/`... names and their mapping.
//! - `session.rs`: the protocol state machine (no I/O).
//! - `adapter.rs`: the only module that calls the core: headers <-> properties.
//! - `conn.rs`: the tokio glue for one connection.
//! - `error.rs`: errors as ERROR frames.
//!
//! The mapping from STOMP concepts to the core is in this crate's README.md.
#![warn(missing_docs)]

mod adapter;
pub mod codec;
mod conn;
pub mod destination;
mod error;
pub mod frame;
pub mod session;

pub use codec::Limits;
pub use conn::serve_connection;
pub use error::StompError;

/// Settings of the STOMP listener and its connections.
#[derive(Clone, Debug)]
pub struct StompConfig {
    /// Frame size and header bounds.
    pub limits: Limits,
    /// The shortest heart-beat interval the server offers to send (the `sx` of
    /// `heart-beat: sx,sy`): a client asking for more frequent heart-beats gets this; 0
    /// disables server heart-beats.
    pub heartbeat_send_ms: u64,
    /// Heart-beat the server asks to receive (`sy`); 0 disables. A client silent for twice
    /// the negotiated period is disconnected.
    pub heartbeat_receive_ms: u64,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout_ms: u64,
    /// A write that makes no progress for this long ends the connection (slow readers).
    pub write_stall_timeout_ms: u64,
    /// Subscriptions (and temp queues) per connection.
    pub subscriptions_max: usize,
    /// Open transactions per connection.
    pub transactions_max: usize,
    /// Messages a non-durable topic subscription keeps for a slow subscriber before the
    /// oldest are dropped (ActiveMQ's pending-message limit for slow topic consumers).
    pub topic_backlog_max: u64,
    /// Open connections on one listener; more are refused with an ERROR frame.
    pub connections_max: usize,
    /// The CONNECTED frame's `server` header.
    pub server_name: String,
}

impl Default for StompConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            heartbeat_send_ms: 100,
            heartbeat_receive_ms: 10_000,
            connect_timeout_ms: 10_000,
            write_stall_timeout_ms: 30_000,
            subscriptions_max: 1_000,
            transactions_max: 100,
            topic_backlog_max: 100_000,
            connections_max: 10_000,
            server_name: concat!("ferromq/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// What a client refused at the listener's connection limit is told before the close:
/// a STOMP 1.0 ERROR frame (readable by every version).
pub fn refusal() -> bytes::Bytes {
    let mut out = bytes::BytesMut::new();
    codec::encode_parts(
        &mut out,
        frame::Version::V1_0,
        frame::Command::Error,
        &[
            ("message", "Too many connections"),
            ("content-type", "text/plain"),
        ],
        &frame::Headers::new(),
        b"the listener is at its configured connection limit; try again later",
    );
    out.freeze()
}
