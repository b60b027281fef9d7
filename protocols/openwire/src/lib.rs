//! OpenWire for ferromq: ActiveMQ 5.x JMS clients connect unchanged.
//!
//! The broker speaks the loose, uncached encoding of versions 9 to 12 with a size
//! prefix: it announces tight encoding and caching off, so whatever the client prefers,
//! the negotiated format (the AND of both sides' options) is the one implemented here.
//!
//! # Layout
//! - `wire.rs`: Java `DataInput` primitives and modified UTF-8.
//! - `primitive.rs`: the marshalled primitive map (properties, MapMessage bodies).
//! - `command.rs`: the commands as data; `marshal.rs` reads and writes them (loose).
//! - `codec.rs`: size-prefixed framing with the frame bound checked first.
//! - `body.rs`: JMS message bodies (text, map, stream, compression) <-> bytes.
//! - `destination.rs`: `queue://`/`topic://` names, wildcards, composites, virtual topics.
//! - `selector` lives in the core (`ferromq_core::selector`), shared with STOMP.
//! - `inactivity.rs`: the inactivity monitor (read checks, KeepAliveInfo), timed as
//!   ActiveMQ's.
//! - `session.rs`: the protocol state machine (no I/O); `adapter.rs` the only module
//!   that translates between OpenWire messages and core messages.
//! - `advisory.rs`: temporary-destination advisories (`ActiveMQ.Advisory.TempQueue`,
//!   `.TempTopic`): the live set, its watchers, and the messages announcing changes.
//! - `shared.rs`: what the connections of a server share (client ids, advisories).
//! - `conn.rs`: the tokio glue: read, decode, drive the session, write, timers.
//! - `error.rs`: decode errors (end the connection) and command errors
//!   (ExceptionResponse).
//!
//! The mapping from JMS concepts to the core is in this crate's README.md.
#![warn(missing_docs)]

mod adapter;
pub mod advisory;
pub mod body;
pub mod codec;
pub mod command;
mod conn;
pub mod destination;
pub mod error;
pub mod inactivity;
pub mod marshal;
pub mod primitive;
pub mod session;
pub mod shared;
pub mod wire;

pub use conn::serve_connection;
pub use error::{CommandError, DecodeError};
pub use shared::Shared;

/// Settings of the OpenWire listener and its connections. Every bound a client can push
/// against is here, with the reason for its default.
#[derive(Clone, Debug)]
pub struct OpenWireConfig {
    /// Largest frame accepted and announced (`MaxFrameSize`). ActiveMQ's default is
    /// 100 MB; 64 MiB keeps one hostile frame from taking more memory than a large message.
    pub frame_max_bytes: u64,
    /// `MaxInactivityDuration` announced. The lower of both sides' values is the read
    /// check period: after the initial delay, a connection that sent nothing for a whole
    /// period is closed, and KeepAliveInfo is written after a third of one without
    /// writes (`inactivity.rs`). 0 on either side disables monitoring. ActiveMQ's default
    /// is 30 s.
    pub inactivity_ms: u64,
    /// The shortest `MaxInactivityDuration` a client may negotiate (other than 0, off): a
    /// period of a few milliseconds would have the broker write a KeepAliveInfo every
    /// millisecond on that connection. A client that asks for less is refused at
    /// negotiation with a ConnectionError naming this bound. ActiveMQ has no floor; no
    /// client keeps its 30 s default below one second.
    pub inactivity_min_ms: u64,
    /// `MaxInactivityDurationInitalDelay` announced: the lower of both sides' values is
    /// how long after negotiation monitoring starts. ActiveMQ's default is 10 s.
    pub inactivity_initial_delay_ms: u64,
    /// Time a new connection has to complete WireFormatInfo and ConnectionInfo.
    pub connect_timeout_ms: u64,
    /// A write that makes no progress for this long ends the connection (slow readers).
    pub write_stall_timeout_ms: u64,
    /// Open connections on one listener; more are refused.
    pub connections_max: usize,
    /// Sessions per connection.
    pub sessions_max: usize,
    /// Consumers per connection.
    pub consumers_max: usize,
    /// Producers per connection.
    pub producers_max: usize,
    /// Temporary destinations per connection.
    pub temp_destinations_max: usize,
    /// Advisories waiting to be written to one connection (a burst of temporary
    /// destinations created or removed while it is slow to read); one that falls further
    /// behind is closed rather than left with a wrong view of which temporary destinations
    /// exist (failover clients reconnect and are sent the current set).
    pub advisory_backlog_max: usize,
    /// Open local transactions per connection.
    pub transactions_max: usize,
    /// Highest prefetch honoured (larger ones are lowered to it; ActiveMQ's default
    /// queue prefetch is 1000, topic prefetch 32766).
    pub prefetch_max: u32,
    /// Messages a QueueBrowser sees at most (the head of the queue; ActiveMQ's
    /// `maxBrowsePageSize`, 400 by default, bounds its browsers alike).
    pub browse_max: usize,
    /// Messages a non-durable topic subscription keeps for a slow subscriber before the
    /// oldest are dropped (ActiveMQ's pending message limit for slow topic consumers).
    pub topic_backlog_max: u64,
    /// Nesting bound of maps and lists in properties and MapMessage bodies.
    pub properties_depth_max: usize,
    /// Largest body a compressed message may inflate to when another protocol needs it.
    pub inflated_max_bytes: u64,
    /// Name announced in BrokerInfo.
    pub broker_name: String,
    /// The vhost OpenWire clients use.
    pub vhost: String,
}

impl Default for OpenWireConfig {
    fn default() -> Self {
        Self {
            frame_max_bytes: 64 * 1024 * 1024,
            inactivity_ms: 30_000,
            inactivity_min_ms: 1_000,
            inactivity_initial_delay_ms: 10_000,
            connect_timeout_ms: 30_000,
            write_stall_timeout_ms: 30_000,
            connections_max: 10_000,
            sessions_max: 1_000,
            consumers_max: 1_000,
            producers_max: 1_000,
            temp_destinations_max: 1_000,
            advisory_backlog_max: 10_000,
            transactions_max: 1_000,
            prefetch_max: 32_766,
            browse_max: 400,
            topic_backlog_max: 100_000,
            properties_depth_max: 16,
            inflated_max_bytes: 64 * 1024 * 1024,
            broker_name: "ferromq".into(),
            vhost: "/".into(),
        }
    }
}
