//! [`MqttConfig`]: the listener's and sessions' settings. Every bound a client can push
//! against is here, with the reason for its default.

use crate::limits::Limits;

/// Settings of the MQTT listener, its connections and its sessions.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// Codec bounds (packet size, topic length, client id length...).
    pub limits: Limits,
    /// The vhost MQTT clients use (RabbitMQ's `mqtt.vhost`).
    pub vhost: String,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout_ms: u64,
    /// A write that makes no progress for this long ends the connection (slow readers).
    pub write_stall_timeout_ms: u64,
    /// Open connections on one listener; more get CONNACK "Server unavailable"/0x9F.
    pub connections_max: usize,
    /// Keep Alive imposed on MQTT 5 clients that ask for none or for more (Server Keep
    /// Alive); 0 accepts whatever the client asks. MQTT 3 cannot be told.
    pub server_keep_alive_max_secs: u16,
    /// Subscriptions (topic filters) per session.
    pub subscriptions_max: usize,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker (announced
    /// as MQTT 5 Receive Maximum; MQTT 3 clients past it are disconnected).
    pub inflight_in_max: u16,
    /// QoS 1/2 PUBLISHes the broker sends before waiting for acknowledgements (lowered
    /// to the client's MQTT 5 Receive Maximum).
    pub inflight_out_max: u16,
    /// Topic aliases a client may set (announced as Topic Alias Maximum); 0 refuses them.
    pub topic_aliases_max: u16,
    /// Messages a session queue keeps while its client is away or slow; past it the oldest
    /// are dropped (RabbitMQ's `x-max-length` with `drop-head`).
    pub session_messages_max: u64,
    /// Bytes of message bodies a session queue keeps; same policy.
    pub session_bytes_max: u64,
    /// Sessions with a non-zero expiry (persistent sessions) at one time; a new one past
    /// this is refused with CONNACK "Quota exceeded" (MQTT 3: "Server unavailable").
    pub persistent_sessions_max: usize,
    /// Longest Session Expiry Interval granted; longer requests are lowered (and the
    /// granted value is announced in CONNACK). `u32::MAX` means "never expires".
    pub session_expiry_max_secs: u32,
    /// Retained messages kept (one per topic); a retained PUBLISH for a new topic past
    /// this is not retained (and a QoS 1/2 publish is answered "Quota exceeded" in MQTT 5).
    pub retained_max: usize,
    /// Total body bytes of retained messages; same policy.
    pub retained_bytes_max: u64,
    /// Longest Will Delay Interval honoured; longer ones are lowered.
    pub will_delay_max_secs: u32,
    /// How often the per-listener state of expired persistent sessions (packet ids,
    /// QoS 2 state) is swept; until then it stays in memory.
    pub session_sweep_interval_ms: u64,
    /// How often one ticker per listener looks for connections past their deadline
    /// (CONNECT timeout, Keep Alive, `write_stall_timeout_ms`): each is enforced up to
    /// this much late. A timer in every connection cost 136 bytes of each.
    pub deadline_check_interval_ms: u64,
    /// A plain-TCP connection that has read nothing but PINGREQs for this long, and has
    /// nothing under way (no subscription or consumer, no acknowledgement owed, nothing
    /// buffered), is parked: its task ends, and the listener's parking lot answers its
    /// PINGREQs and watches its socket and Keep Alive until anything else happens, when
    /// it gets a task again (`park.rs`). 0: never park. Checked by the deadline ticker,
    /// so a connection parks up to `deadline_check_interval_ms` later.
    pub park_after_ms: u64,
    /// The same for a connection that has sent nothing but its CONNECT (and PINGREQs) so
    /// far: its first quiet period. 0: it parks as soon as its CONNACK is written, if
    /// nothing else is buffered (a client that goes on, SUBSCRIBE after CONNACK, is taken
    /// out of the lot again at the cost of one task).
    pub park_after_connect_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            vhost: "/".into(),
            connect_timeout_ms: 10_000,
            write_stall_timeout_ms: 30_000,
            connections_max: 10_000,
            // Accept the client's own choice, as RabbitMQ and Mosquitto do.
            server_keep_alive_max_secs: 0,
            subscriptions_max: 1_000,
            // RabbitMQ's default prefetch for MQTT consumers is 10; clients pipeline more.
            inflight_in_max: 128,
            inflight_out_max: 128,
            topic_aliases_max: 64,
            session_messages_max: 100_000,
            session_bytes_max: 256 * 1024 * 1024,
            persistent_sessions_max: 100_000,
            // RabbitMQ's default max session expiry is one day; we keep a week.
            session_expiry_max_secs: 7 * 24 * 3600,
            retained_max: 100_000,
            retained_bytes_max: 256 * 1024 * 1024,
            will_delay_max_secs: 24 * 3600,
            // Sessions expire in seconds at the finest; a scan a minute is cheap.
            session_sweep_interval_ms: 60_000,
            // Keep Alive is counted in seconds; a scan of 50,000 deadlines costs ~0.1 ms.
            deadline_check_interval_ms: 500,
            // Long enough that a client in the middle of an exchange (CONNECT then
            // SUBSCRIBE, a burst of publishes) is not parked between its packets; short
            // enough that a fleet of idle devices costs little shortly after it connects.
            park_after_ms: 2_000,
            // Most connections of a large fleet connect and go quiet. Parked at once, they
            // never all hold a task together during a reconnection storm, whose peak the
            // allocator would otherwise keep (freed tasks leave holes, not free pages).
            park_after_connect_ms: 0,
        }
    }
}
