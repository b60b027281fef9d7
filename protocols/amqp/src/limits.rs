//! Every bound the AMQP listener enforces, with the reason for its default.

/// Bounds on what one connection may hold or send. Values ending in `_max` are inclusive.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame the server accepts and offers in `connection.tune` (header and end
    /// octet included). RabbitMQ's default, 128 KiB: large enough that a typical message
    /// body fits one frame, small enough that a connection's read buffer stays small.
    pub frame_max_bytes: u32,
    /// Channels per connection offered in `connection.tune`. RabbitMQ's default (2047):
    /// each channel holds consumers and unacked deliveries, so the count is bounded.
    pub channel_max: u16,
    /// Heartbeat interval offered in `connection.tune`, in seconds; 0 offers none.
    /// RabbitMQ's default, 60 s.
    pub heartbeat_s: u16,
    /// Largest message body accepted, checked against the content header before any of the
    /// body arrives. RabbitMQ's `max_message_size` defaults to 128 MiB; 16 MiB keeps a single
    /// publisher from pinning that much memory per channel.
    pub body_max_bytes: u64,
    /// Publisher confirms that may be pending on a channel before they are flushed even in
    /// the middle of a read batch.
    pub unconfirmed_max: usize,
    /// Consumers per channel (RabbitMQ's `consumer_max_per_channel`, unlimited by default
    /// there); each holds a credit gate and a map entry.
    pub consumers_per_channel_max: usize,
    /// Nesting depth of field tables and arrays in methods and message headers. The parser
    /// recurses per level, so unbounded nesting could exhaust the stack.
    pub table_depth_max: usize,
    /// Time from accepting the socket to `connection.open`, in ms (RabbitMQ: 10 s).
    pub handshake_timeout_ms: u64,
    /// Time to wait for `connection.close-ok` after the server sent `connection.close`.
    pub close_timeout_ms: u64,
    /// A write that makes no progress for this long ends the connection (slow readers).
    pub write_stall_timeout_ms: u64,
    /// Open connections on one listener; more are closed at once.
    pub connections_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frame_max_bytes: 131_072,
            channel_max: 2047,
            heartbeat_s: 60,
            body_max_bytes: 16 * 1024 * 1024,
            unconfirmed_max: 10_000,
            consumers_per_channel_max: 1_000,
            table_depth_max: 32,
            handshake_timeout_ms: 10_000,
            close_timeout_ms: 3_000,
            write_stall_timeout_ms: 30_000,
            connections_max: 10_000,
        }
    }
}

/// The smallest frame_max a peer may negotiate (the spec's frame-min-size).
pub const FRAME_MIN_SIZE_BYTES: u32 = 4096;

/// The most reserved at once for a message body that arrives in several frames; beyond
/// it the buffer grows as the frames arrive. The declared body size is the client's word,
/// so memory should follow the bytes actually received.
pub const BODY_RESERVE_MAX_BYTES: u64 = 1024 * 1024;
