//! Bounds on what the decoder accepts, and the protocol's own maxima.
//!
//! Every value here caps memory or work that one peer can cause. A peer that
//! breaks one gets the error's reason code (see [`DecodeError`]) and is
//! disconnected; nobody else notices.
//!
//! [`DecodeError`]: crate::error::DecodeError

/// The largest Remaining Length a four-byte variable byte integer can encode.
pub const REMAINING_LENGTH_MAX_BYTES: u32 = 268_435_455;

/// The largest variable byte integer (also the largest Subscription Identifier).
pub const VARIABLE_BYTE_INTEGER_MAX: u32 = REMAINING_LENGTH_MAX_BYTES;

/// The largest whole packet the protocol can describe: one type byte, four
/// length bytes and the largest Remaining Length. Use it as "no limit" for an
/// [`Encoder`](crate::codec::Encoder) whose peer announced none.
pub const PACKET_SIZE_PROTOCOL_MAX_BYTES: u32 = 1 + 4 + REMAINING_LENGTH_MAX_BYTES;

/// The longest UTF-8 string or binary field: its length is a two-byte integer.
pub const STRING_MAX_BYTES: usize = u16::MAX as usize;

/// Bounds applied while decoding one connection's packets.
///
/// Sizes are in bytes of the encoded form; a packet's size counts its fixed
/// header too, as MQTT 5's Maximum Packet Size does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted after CONNECT. Checked as soon as the fixed
    /// header is buffered, before any of the body is. Announce the same value
    /// to MQTT 5 clients as the CONNACK's Maximum Packet Size.
    pub packet_size_max_bytes: u32,
    /// Largest CONNECT accepted. It arrives before the client has
    /// authenticated, so it gets a smaller budget than later packets.
    pub connect_packet_size_max_bytes: u32,
    /// Longest Client Identifier accepted; longer ones are rejected with
    /// "Client Identifier not valid" (MQTT 3: "identifier rejected").
    pub client_id_max_bytes: usize,
    /// Longest topic name or topic filter accepted (PUBLISH, Will, Response
    /// Topic, SUBSCRIBE, UNSUBSCRIBE), shared-subscription prefix included.
    pub topic_max_bytes: usize,
    /// Most levels (`/`-separated parts) in a topic name or filter.
    pub topic_levels_max: usize,
    /// Most properties in one MQTT 5 property list (User Properties and
    /// repeated Subscription Identifiers count one each). Every other
    /// property may appear at most once, so this mostly bounds User Properties.
    pub properties_max: usize,
    /// Most topic filters in one SUBSCRIBE or UNSUBSCRIBE.
    pub topic_filters_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A whole packet is buffered before it is handed on, so this bounds
            // the memory one connection pins. 16 MiB matches the STOMP
            // listener's body limit; IoT payloads are far smaller, and the
            // protocol's own 256 MiB is a lot of RAM per connection.
            packet_size_max_bytes: 16 * 1024 * 1024,
            // RabbitMQ's limit for not-yet-authenticated MQTT connections: room
            // for credentials, a JWT password and a modest Will message, while
            // an anonymous peer cannot make the broker buffer megabytes.
            connect_packet_size_max_bytes: 64 * 1024,
            // The spec makes servers accept 1..=23 bytes; UUIDs take 36, and
            // AWS IoT and Azure IoT Hub device ids go up to 128. The id also
            // names the client's session queue, which must stay a short string.
            client_id_max_bytes: 128,
            // Four times AWS IoT's 256-byte topic limit. A topic is copied
            // into routing keys, retained-message indexes and trie nodes.
            topic_max_bytes: 1024,
            // The core's topic trie is walked level by level, so depth bounds
            // matching work. Real hierarchies use well under ten levels.
            topic_levels_max: 64,
            // Applications that map JMS or Kafka headers to User Properties
            // carry a few dozen; this bounds the per-packet vectors and the
            // work of turning them into core headers.
            properties_max: 128,
            // Clients subscribe to a handful of filters at a time; this bounds
            // the SUBACK the session must build and the core calls one packet
            // can trigger.
            topic_filters_max: 128,
        }
    }
}
