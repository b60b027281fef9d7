//! Configuration: embedded defaults, overridden by a TOML file, overridden by `FERROMQ_*`
//! environment variables.
//!
//! An environment variable names a key path with `__` between levels:
//! `FERROMQ_LISTENERS__STOMP=127.0.0.1:7000` sets `[listeners] stomp`,
//! `FERROMQ_STOMP__CONNECTIONS_MAX=50` sets `[stomp] connections_max`,
//! `FERROMQ_LISTENERS__AMQP=127.0.0.1:5673` sets `[listeners] amqp`,
//! `FERROMQ_LISTENERS__MQTT=127.0.0.1:1884` sets `[listeners] mqtt`,
//! `FERROMQ_LISTENERS__WSS=""` turns the WSS listener off. Values are read as
//! TOML when they parse as TOML (numbers, booleans, arrays), otherwise as strings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// File or environment.
        origin: String,
        /// The parser's message.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where durable state lives (created at start).
    pub data_dir: PathBuf,
    /// Log filter, `tracing` syntax (`info`, `ferromq_stomp=debug`); `RUST_LOG` wins.
    pub log: String,
    /// Clients that send no credentials are taken as `guest` from loopback.
    pub allow_anonymous: bool,
    /// Vhosts besides `/`.
    pub vhosts: Vec<String>,
    /// Listener addresses; an empty string turns a listener off.
    pub listeners: Listeners,
    /// STOMP settings.
    pub stomp: StompSection,
    /// AMQP 0-9-1 settings.
    pub amqp: AmqpSection,
    /// MQTT settings.
    pub mqtt: MqttSection,
    /// OpenWire settings.
    pub openwire: OpenWireSection,
    /// Core bounds.
    pub limits: LimitsSection,
    /// The journal of durable state.
    pub store: StoreSection,
    /// TLS for the `*_tls` and `wss` listeners.
    pub tls: TlsSection,
    /// MQTT and STOMP over WebSocket (`ws`, `wss` listeners).
    pub websocket: WebSocketSection,
    /// Users; when none are given, `guest`/`guest` exists and may connect from loopback.
    pub users: Vec<UserSection>,
    /// Milliseconds between housekeeping passes (message TTL at queue heads, queue expiry).
    pub housekeeping_interval_ms: u64,
    /// How long shutdown waits for connections to close before giving up on them.
    pub shutdown_timeout_ms: u64,
    /// The local admin socket of `ferromq users`.
    pub admin: AdminSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            log: "info".into(),
            allow_anonymous: true,
            vhosts: Vec::new(),
            listeners: Listeners::default(),
            stomp: StompSection::default(),
            amqp: AmqpSection::default(),
            mqtt: MqttSection::default(),
            openwire: OpenWireSection::default(),
            limits: LimitsSection::default(),
            store: StoreSection::default(),
            tls: TlsSection::default(),
            websocket: WebSocketSection::default(),
            users: Vec::new(),
            housekeeping_interval_ms: 1_000,
            shutdown_timeout_ms: 10_000,
            admin: AdminSection::default(),
        }
    }
}

/// `[admin]`: the Unix socket through which `ferromq users` changes users at run time.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// The socket's path, relative to `data_dir` unless absolute; an empty string turns
    /// it off.
    pub socket: String,
    /// Longest request line accepted.
    pub request_max_bytes: usize,
    /// How long one client may take to send its request and read the answer.
    pub timeout_ms: u64,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            socket: "admin.sock".into(),
            request_max_bytes: 64 * 1024,
            timeout_ms: 5_000,
        }
    }
}

/// Listener addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listeners {
    /// STOMP over TCP.
    pub stomp: String,
    /// AMQP 0-9-1 over TCP.
    pub amqp: String,
    /// MQTT (`127.0.0.1:1883` by default).
    pub mqtt: String,
    /// OpenWire (`127.0.0.1:61616` by default).
    pub openwire: String,
    /// AMQP 0-9-1 over TLS.
    pub amqp_tls: String,
    /// MQTT over TLS.
    pub mqtt_tls: String,
    /// STOMP over TLS.
    pub stomp_tls: String,
    /// OpenWire over TLS (`ssl://` in ActiveMQ clients).
    pub openwire_tls: String,
    /// MQTT and STOMP over WebSocket.
    pub ws: String,
    /// MQTT and STOMP over WebSocket over TLS.
    pub wss: String,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            stomp: "127.0.0.1:61613".into(),
            amqp: "127.0.0.1:5672".into(),
            mqtt: "127.0.0.1:1883".into(),
            openwire: "127.0.0.1:61616".into(),
            amqp_tls: "127.0.0.1:5671".into(),
            mqtt_tls: "127.0.0.1:8883".into(),
            stomp_tls: "127.0.0.1:61614".into(),
            openwire_tls: "127.0.0.1:61617".into(),
            ws: "127.0.0.1:61618".into(),
            wss: "127.0.0.1:61619".into(),
        }
    }
}

impl Listeners {
    /// The STOMP address, or `None` when turned off.
    pub fn stomp_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_addr("listeners.stomp", &self.stomp)
    }

    /// The AMQP address, or `None` when turned off.
    pub fn amqp_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_addr("listeners.amqp", &self.amqp)
    }

    /// The MQTT address, `None` when turned off.
    pub fn mqtt_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_addr("listeners.mqtt", &self.mqtt)
    }

    /// The OpenWire address, `None` when turned off.
    pub fn openwire_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        parse_addr("listeners.openwire", &self.openwire)
    }
}

pub(crate) fn parse_addr(key: &str, s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.is_empty() || s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| ConfigError::Invalid {
        origin: key.into(),
        message: format!("'{s}' is not an address like 127.0.0.1:61613: {e}"),
    })
}

/// `[stomp]`; see `ferromq_stomp::StompConfig` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StompSection {
    pub connections_max: usize,
    pub heartbeat_send_ms: u64,
    pub heartbeat_receive_ms: u64,
    pub connect_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub subscriptions_max: usize,
    pub transactions_max: usize,
    pub topic_backlog_max: u64,
    pub frame_body_max_bytes: usize,
    pub header_section_max_bytes: usize,
    pub header_count_max: usize,
}

impl Default for StompSection {
    fn default() -> Self {
        let d = ferromq_stomp::StompConfig::default();
        Self {
            connections_max: d.connections_max,
            heartbeat_send_ms: d.heartbeat_send_ms,
            heartbeat_receive_ms: d.heartbeat_receive_ms,
            connect_timeout_ms: d.connect_timeout_ms,
            write_stall_timeout_ms: d.write_stall_timeout_ms,
            subscriptions_max: d.subscriptions_max,
            transactions_max: d.transactions_max,
            topic_backlog_max: d.topic_backlog_max,
            frame_body_max_bytes: d.limits.frame_body_max_bytes,
            header_section_max_bytes: d.limits.header_section_max_bytes,
            header_count_max: d.limits.header_count_max,
        }
    }
}

impl StompSection {
    /// The STOMP crate's configuration.
    pub fn to_stomp(&self) -> ferromq_stomp::StompConfig {
        ferromq_stomp::StompConfig {
            limits: ferromq_stomp::Limits {
                frame_body_max_bytes: self.frame_body_max_bytes,
                header_section_max_bytes: self.header_section_max_bytes,
                header_count_max: self.header_count_max,
            },
            heartbeat_send_ms: self.heartbeat_send_ms,
            heartbeat_receive_ms: self.heartbeat_receive_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            write_stall_timeout_ms: self.write_stall_timeout_ms,
            subscriptions_max: self.subscriptions_max,
            transactions_max: self.transactions_max,
            topic_backlog_max: self.topic_backlog_max,
            connections_max: self.connections_max,
            ..Default::default()
        }
    }
}

/// `[amqp]`; see `ferromq_amqp::Limits` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AmqpSection {
    pub frame_max_bytes: u32,
    pub channel_max: u16,
    pub heartbeat_s: u16,
    pub body_max_bytes: u64,
    pub unconfirmed_max: usize,
    pub consumers_per_channel_max: usize,
    pub table_depth_max: usize,
    pub handshake_timeout_ms: u64,
    pub close_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub connections_max: usize,
}

impl Default for AmqpSection {
    fn default() -> Self {
        let d = ferromq_amqp::Limits::default();
        Self {
            frame_max_bytes: d.frame_max_bytes,
            channel_max: d.channel_max,
            heartbeat_s: d.heartbeat_s,
            body_max_bytes: d.body_max_bytes,
            unconfirmed_max: d.unconfirmed_max,
            consumers_per_channel_max: d.consumers_per_channel_max,
            table_depth_max: d.table_depth_max,
            handshake_timeout_ms: d.handshake_timeout_ms,
            close_timeout_ms: d.close_timeout_ms,
            write_stall_timeout_ms: d.write_stall_timeout_ms,
            connections_max: d.connections_max,
        }
    }
}

impl AmqpSection {
    /// The AMQP crate's configuration. `frame_max_bytes` below the protocol minimum
    /// (4096) is raised to it.
    pub fn to_amqp(&self) -> ferromq_amqp::AmqpConfig {
        ferromq_amqp::AmqpConfig {
            limits: ferromq_amqp::Limits {
                frame_max_bytes: self
                    .frame_max_bytes
                    .max(ferromq_amqp::limits::FRAME_MIN_SIZE_BYTES),
                channel_max: self.channel_max.max(1),
                heartbeat_s: self.heartbeat_s,
                body_max_bytes: self.body_max_bytes,
                unconfirmed_max: self.unconfirmed_max.max(1),
                consumers_per_channel_max: self.consumers_per_channel_max,
                table_depth_max: self.table_depth_max.max(1),
                handshake_timeout_ms: self.handshake_timeout_ms,
                close_timeout_ms: self.close_timeout_ms,
                write_stall_timeout_ms: self.write_stall_timeout_ms,
                connections_max: self.connections_max,
            },
            ..Default::default()
        }
    }
}

/// `[mqtt]`; see `ferromq_mqtt::MqttConfig` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MqttSection {
    pub vhost: String,
    pub packet_size_max_bytes: u32,
    pub client_id_max_bytes: usize,
    pub topic_max_bytes: usize,
    pub topic_levels_max: usize,
    pub connect_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub connections_max: usize,
    pub server_keep_alive_max_secs: u16,
    pub subscriptions_max: usize,
    pub inflight_in_max: u16,
    pub inflight_out_max: u16,
    pub topic_aliases_max: u16,
    pub session_messages_max: u64,
    pub session_bytes_max: u64,
    pub persistent_sessions_max: usize,
    pub session_expiry_max_secs: u32,
    pub retained_max: usize,
    pub retained_bytes_max: u64,
    pub will_delay_max_secs: u32,
    pub session_sweep_interval_ms: u64,
    pub deadline_check_interval_ms: u64,
    pub park_after_ms: u64,
    pub park_after_connect_ms: u64,
}

impl Default for MqttSection {
    fn default() -> Self {
        let d = ferromq_mqtt::MqttConfig::default();
        Self {
            vhost: d.vhost,
            packet_size_max_bytes: d.limits.packet_size_max_bytes,
            client_id_max_bytes: d.limits.client_id_max_bytes,
            topic_max_bytes: d.limits.topic_max_bytes,
            topic_levels_max: d.limits.topic_levels_max,
            connect_timeout_ms: d.connect_timeout_ms,
            write_stall_timeout_ms: d.write_stall_timeout_ms,
            connections_max: d.connections_max,
            server_keep_alive_max_secs: d.server_keep_alive_max_secs,
            subscriptions_max: d.subscriptions_max,
            inflight_in_max: d.inflight_in_max,
            inflight_out_max: d.inflight_out_max,
            topic_aliases_max: d.topic_aliases_max,
            session_messages_max: d.session_messages_max,
            session_bytes_max: d.session_bytes_max,
            persistent_sessions_max: d.persistent_sessions_max,
            session_expiry_max_secs: d.session_expiry_max_secs,
            retained_max: d.retained_max,
            retained_bytes_max: d.retained_bytes_max,
            will_delay_max_secs: d.will_delay_max_secs,
            session_sweep_interval_ms: d.session_sweep_interval_ms,
            deadline_check_interval_ms: d.deadline_check_interval_ms,
            park_after_ms: d.park_after_ms,
            park_after_connect_ms: d.park_after_connect_ms,
        }
    }
}

impl MqttSection {
    /// The MQTT crate's configuration (in-flight windows of at least 1).
    pub fn to_mqtt(&self) -> ferromq_mqtt::MqttConfig {
        let d = ferromq_mqtt::MqttConfig::default();
        ferromq_mqtt::MqttConfig {
            limits: ferromq_mqtt::Limits {
                packet_size_max_bytes: self.packet_size_max_bytes,
                client_id_max_bytes: self.client_id_max_bytes,
                topic_max_bytes: self.topic_max_bytes,
                topic_levels_max: self.topic_levels_max,
                ..d.limits
            },
            vhost: self.vhost.clone(),
            connect_timeout_ms: self.connect_timeout_ms,
            write_stall_timeout_ms: self.write_stall_timeout_ms,
            connections_max: self.connections_max,
            server_keep_alive_max_secs: self.server_keep_alive_max_secs,
            subscriptions_max: self.subscriptions_max,
            inflight_in_max: self.inflight_in_max.max(1),
            inflight_out_max: self.inflight_out_max.max(1),
            topic_aliases_max: self.topic_aliases_max,
            session_messages_max: self.session_messages_max,
            session_bytes_max: self.session_bytes_max,
            persistent_sessions_max: self.persistent_sessions_max,
            session_expiry_max_secs: self.session_expiry_max_secs,
            retained_max: self.retained_max,
            retained_bytes_max: self.retained_bytes_max,
            will_delay_max_secs: self.will_delay_max_secs,
            session_sweep_interval_ms: self.session_sweep_interval_ms,
            deadline_check_interval_ms: self.deadline_check_interval_ms,
            park_after_ms: self.park_after_ms,
            park_after_connect_ms: self.park_after_connect_ms,
        }
    }
}

/// `[limits]`; see `ferromq_core::CoreLimits` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitsSection {
    pub consumer_unacked_max: u32,
    pub queues_max: usize,
    pub exchanges_max: usize,
    pub bindings_max: usize,
    pub consumers_per_queue_max: usize,
    pub transaction_ops_max: usize,
    pub selector_length_max_bytes: usize,
    pub selector_depth_max: usize,
    pub selector_scan_max: usize,
    pub message_groups_max: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = ferromq_core::CoreLimits::default();
        Self {
            consumer_unacked_max: d.consumer_unacked_max,
            queues_max: d.queues_max,
            exchanges_max: d.exchanges_max,
            bindings_max: d.bindings_max,
            consumers_per_queue_max: d.consumers_per_queue_max,
            transaction_ops_max: d.transaction_ops_max,
            selector_length_max_bytes: d.selector_length_max_bytes,
            selector_depth_max: d.selector_depth_max,
            selector_scan_max: d.selector_scan_max,
            message_groups_max: d.message_groups_max,
        }
    }
}

impl LimitsSection {
    /// The core's limits.
    pub fn to_core(&self) -> ferromq_core::CoreLimits {
        ferromq_core::CoreLimits {
            consumer_unacked_max: self.consumer_unacked_max,
            queues_max: self.queues_max,
            exchanges_max: self.exchanges_max,
            bindings_max: self.bindings_max,
            consumers_per_queue_max: self.consumers_per_queue_max,
            transaction_ops_max: self.transaction_ops_max,
            selector_length_max_bytes: self.selector_length_max_bytes,
            selector_depth_max: self.selector_depth_max,
            selector_scan_max: self.selector_scan_max,
            message_groups_max: self.message_groups_max,
            ..Default::default()
        }
    }
}

/// `[store]`: the journal under `data_dir/journal`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Journal durable state; `false` keeps everything in memory (nothing survives a
    /// restart).
    pub enabled: bool,
    /// Size at which a segment file is sealed and the next one started.
    pub segment_size_max_bytes: u64,
    /// Longest wait for more records before an fsync (group commit); 0 syncs as soon as
    /// the writer's queue is empty.
    pub fsync_delay_max_us: u64,
    /// Unsynced bytes that force an fsync.
    pub fsync_batch_max_bytes: u64,
    /// Largest record, so largest persistent message (body plus properties).
    pub record_max_bytes: u32,
    /// Bytes of records waiting for the journal beyond which persistent producers pause.
    pub backlog_max_bytes: u64,
    /// Persistent publishes are refused while the journal's file system has less free
    /// space than this; 0 turns the check off. Either way, a publish whose journal record
    /// finds no space is refused and the broker carries on.
    pub disk_free_min_bytes: u64,
    /// How often sparse segments are rewritten; 0 never.
    pub compaction_interval_ms: u64,
    /// Body bytes of ready messages one queue keeps in memory; newer ones are paged to
    /// spill files under `<data_dir>/paging` and read back as the queue drains.
    pub queue_memory_max_bytes: u64,
    /// Body bytes of ready messages all queues together keep in memory before paging.
    pub memory_max_bytes: u64,
    /// Bytes of paged messages all queues together may hold in memory, beyond
    /// `memory_max_bytes`, while spill files cannot be written (a full disk); past it,
    /// publishes that would be paged are refused until a spill write succeeds.
    pub paging_unwritten_max_bytes: u64,
    /// Faults to inject into the journal's file operations: inert unless a test arms it;
    /// not read from files or the environment.
    #[serde(skip)]
    pub faults: ferromq_core::FaultInjector,
}

impl Default for StoreSection {
    fn default() -> Self {
        let d = ferromq_core::DurableConfig::new("");
        Self {
            enabled: true,
            segment_size_max_bytes: d.journal.segment_size_max_bytes,
            fsync_delay_max_us: d.journal.sync_delay_max_us,
            fsync_batch_max_bytes: d.journal.sync_batch_max_bytes,
            record_max_bytes: d.journal.record_payload_max_bytes,
            backlog_max_bytes: d.backlog_max_bytes,
            disk_free_min_bytes: d.disk_free_min_bytes,
            compaction_interval_ms: d.compaction_interval_ms,
            queue_memory_max_bytes: d.paging.queue_memory_max_bytes,
            memory_max_bytes: d.paging.memory_max_bytes,
            paging_unwritten_max_bytes: d.paging.unwritten_max_bytes,
            faults: d.journal.faults,
        }
    }
}

impl StoreSection {
    /// The core's durability settings for a journal in `dir` and spill files in
    /// `paging_dir`.
    pub fn to_durable(&self, dir: PathBuf, paging_dir: PathBuf) -> ferromq_core::DurableConfig {
        let mut d = ferromq_core::DurableConfig::new(dir);
        d.paging.dir = paging_dir;
        d.paging.queue_memory_max_bytes = self.queue_memory_max_bytes;
        d.paging.memory_max_bytes = self.memory_max_bytes;
        d.paging.unwritten_max_bytes = self.paging_unwritten_max_bytes;
        d.journal.segment_size_max_bytes = self.segment_size_max_bytes;
        d.journal.sync_delay_max_us = self.fsync_delay_max_us;
        d.journal.sync_batch_max_bytes = self.fsync_batch_max_bytes;
        d.journal.record_payload_max_bytes = self.record_max_bytes;
        d.backlog_max_bytes = self.backlog_max_bytes;
        d.disk_free_min_bytes = self.disk_free_min_bytes;
        d.compaction_interval_ms = self.compaction_interval_ms;
        d.journal.faults = self.faults.clone();
        d
    }
}

/// `[[users]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: String,
    /// From `ferromq hash-password` (RabbitMQ's SHA-256 format).
    pub password_hash: String,
    /// Vhosts the user may open; `["*"]` for all.
    #[serde(default = "all_vhosts")]
    pub vhosts: Vec<String>,
    /// Tags, e.g. `administrator`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only from loopback addresses.
    #[serde(default)]
    pub loopback_only: bool,
}

fn all_vhosts() -> Vec<String> {
    vec!["*".into()]
}

impl Config {
    /// Loads the configuration: defaults, then `file` if given, then the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid {
                        origin: path.display().to_string(),
                        message: e.to_string(),
                    })?
            }
        };
        for (key, value) in env {
            let Some(path) = key.strip_prefix("FERROMQ_") else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut table, &path, parse_env_value(&value)).map_err(|message| {
                ConfigError::Invalid {
                    origin: format!("environment variable {key}"),
                    message,
                }
            })?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: "configuration".into(),
                    message: e.to_string(),
                })?;
        config.listeners.stomp_addr()?;
        config.listeners.amqp_addr()?;
        config.listeners.mqtt_addr()?;
        config.listeners.openwire_addr()?;
        Ok(config)
    }

    /// Where the admin socket is, or `None` when it is turned off.
    pub fn admin_socket(&self) -> Option<PathBuf> {
        if self.admin.socket.is_empty() || self.admin.socket == "off" {
            return None;
        }
        Some(self.data_dir.join(&self.admin.socket))
    }

    /// The admin socket's bounds.
    pub fn admin_limits(&self) -> crate::admin::AdminLimits {
        crate::admin::AdminLimits {
            request_max_bytes: self.admin.request_max_bytes.max(256),
            timeout: std::time::Duration::from_millis(self.admin.timeout_ms.max(1)),
        }
    }

    /// The core's configuration.
    pub fn broker_config(&self) -> ferromq_core::BrokerConfig {
        ferromq_core::BrokerConfig {
            limits: self.limits.to_core(),
            users: self
                .users
                .iter()
                .map(|u| ferromq_core::UserRecord {
                    name: u.name.clone(),
                    password_hash: u.password_hash.clone(),
                    vhosts: u.vhosts.clone(),
                    tags: u.tags.clone(),
                    loopback_only: u.loopback_only,
                })
                .collect(),
            allow_anonymous: self.allow_anonymous,
            vhosts: self.vhosts.clone(),
        }
    }
}

fn parse_env_value(v: &str) -> toml::Value {
    match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(v.into())),
        Err(_) => toml::Value::String(v.into()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("'{p}' is not a table"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_defaults() {
        let dir = std::env::temp_dir().join(format!("ferromq-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "log = \"debug\"\n[stomp]\nconnections_max = 7\nheartbeat_send_ms = 5\n",
        )
        .unwrap();
        let env = vec![
            (
                "FERROMQ_STOMP__CONNECTIONS_MAX".to_string(),
                "9".to_string(),
            ),
            (
                "FERROMQ_LISTENERS__STOMP".to_string(),
                "127.0.0.1:7000".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let c = Config::load(Some(&file), env.into_iter()).unwrap();
        assert_eq!(c.log, "debug");
        assert_eq!(c.stomp.connections_max, 9);
        assert_eq!(c.stomp.heartbeat_send_ms, 5);
        assert_eq!(
            c.listeners.stomp_addr().unwrap(),
            Some("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(
            c.listeners.amqp_addr().unwrap(),
            Some("127.0.0.1:5672".parse().unwrap())
        );
        assert_eq!(c.amqp.to_amqp().limits.frame_max_bytes, 131_072);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_unknown_keys_and_bad_addresses() {
        let bad = vec![("FERROMQ_STOMP__NO_SUCH_KEY".to_string(), "1".to_string())];
        assert!(Config::load(None, bad.into_iter()).is_err());
        let bad = vec![(
            "FERROMQ_LISTENERS__STOMP".to_string(),
            "localhost".to_string(),
        )];
        assert!(Config::load(None, bad.into_iter()).is_err());
        let off = vec![("FERROMQ_LISTENERS__STOMP".to_string(), "".to_string())];
        assert_eq!(
            Config::load(None, off.into_iter())
                .unwrap()
                .listeners
                .stomp_addr()
                .unwrap(),
            None
        );
    }
}

/// `[openwire]`; see `ferromq_openwire::OpenWireConfig` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct OpenWireSection {
    pub vhost: String,
    pub frame_max_bytes: u64,
    pub inactivity_ms: u64,
    pub inactivity_min_ms: u64,
    pub inactivity_initial_delay_ms: u64,
    pub connect_timeout_ms: u64,
    pub write_stall_timeout_ms: u64,
    pub connections_max: usize,
    pub sessions_max: usize,
    pub consumers_max: usize,
    pub producers_max: usize,
    pub temp_destinations_max: usize,
    pub advisory_backlog_max: usize,
    pub transactions_max: usize,
    pub prefetch_max: u32,
    pub browse_max: usize,
    pub topic_backlog_max: u64,
    pub properties_depth_max: usize,
    pub inflated_max_bytes: u64,
    pub broker_name: String,
}

impl Default for OpenWireSection {
    fn default() -> Self {
        let d = ferromq_openwire::OpenWireConfig::default();
        Self {
            vhost: d.vhost,
            frame_max_bytes: d.frame_max_bytes,
            inactivity_ms: d.inactivity_ms,
            inactivity_min_ms: d.inactivity_min_ms,
            inactivity_initial_delay_ms: d.inactivity_initial_delay_ms,
            connect_timeout_ms: d.connect_timeout_ms,
            write_stall_timeout_ms: d.write_stall_timeout_ms,
            connections_max: d.connections_max,
            sessions_max: d.sessions_max,
            consumers_max: d.consumers_max,
            producers_max: d.producers_max,
            temp_destinations_max: d.temp_destinations_max,
            advisory_backlog_max: d.advisory_backlog_max,
            transactions_max: d.transactions_max,
            prefetch_max: d.prefetch_max,
            browse_max: d.browse_max,
            topic_backlog_max: d.topic_backlog_max,
            properties_depth_max: d.properties_depth_max,
            inflated_max_bytes: d.inflated_max_bytes,
            broker_name: d.broker_name,
        }
    }
}

/// `[tls]`: the certificate of every TLS listener and how client certificates are used.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain; empty uses a self-signed certificate for localhost that is
    /// generated once into `data_dir/tls/cert.pem` (its path is logged at start).
    pub cert: String,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// PEM CA certificates that sign client certificates.
    pub client_ca: String,
    /// Whether clients must present a certificate signed by `client_ca`.
    pub client_cert: ClientCertMode,
    /// Whether a verified client certificate names the user (used when the client sends
    /// no credentials of its own; the user must exist).
    pub client_cert_user: ClientCertUser,
    /// Time for a TLS handshake, waiting for a handshake slot included.
    pub handshake_timeout_ms: u64,
    /// TLS handshakes in progress at once, over all TLS listeners (they cost CPU).
    pub handshakes_max: usize,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert: String::new(),
            key: String::new(),
            client_ca: String::new(),
            client_cert: ClientCertMode::None,
            client_cert_user: ClientCertUser::Off,
            handshake_timeout_ms: 10_000,
            handshakes_max: 64,
        }
    }
}

/// `[tls] client_cert`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertMode {
    /// Not asked for.
    None,
    /// Asked for and verified when sent.
    Optional,
    /// A connection without a valid one fails the handshake.
    Required,
}

/// `[tls] client_cert_user`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertUser {
    /// Certificates do not name users.
    Off,
    /// The subject's first common name (`CN`).
    CommonName,
    /// The whole subject, as `C=.., O=.., CN=..` in certificate order.
    DistinguishedName,
}

/// `[websocket]`; see `ferromq_websocket::WsConfig` for the meaning of each.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(missing_docs)]
pub struct WebSocketSection {
    pub connections_max: usize,
    pub message_size_max_bytes: usize,
    pub frame_size_max_bytes: usize,
    pub request_head_max_bytes: usize,
    pub handshake_timeout_ms: u64,
    pub allowed_origins: Vec<String>,
    pub write_buffer_max_bytes: usize,
}

impl Default for WebSocketSection {
    fn default() -> Self {
        let d = ferromq_websocket::WsConfig::default();
        Self {
            connections_max: 10_000,
            message_size_max_bytes: d.message_size_max_bytes,
            frame_size_max_bytes: d.frame_size_max_bytes,
            request_head_max_bytes: d.request_head_max_bytes,
            handshake_timeout_ms: d.handshake_timeout_ms,
            allowed_origins: d.allowed_origins,
            write_buffer_max_bytes: d.write_buffer_max_bytes,
        }
    }
}

impl OpenWireSection {
    /// The OpenWire crate's configuration (frames of at least 1 KiB, nesting of at least 1).
    pub fn to_openwire(&self) -> ferromq_openwire::OpenWireConfig {
        ferromq_openwire::OpenWireConfig {
            vhost: self.vhost.clone(),
            frame_max_bytes: self.frame_max_bytes.max(1024),
            inactivity_ms: self.inactivity_ms,
            inactivity_min_ms: self.inactivity_min_ms,
            inactivity_initial_delay_ms: self.inactivity_initial_delay_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            write_stall_timeout_ms: self.write_stall_timeout_ms,
            connections_max: self.connections_max,
            sessions_max: self.sessions_max,
            consumers_max: self.consumers_max,
            producers_max: self.producers_max,
            temp_destinations_max: self.temp_destinations_max,
            advisory_backlog_max: self.advisory_backlog_max.max(1),
            transactions_max: self.transactions_max,
            prefetch_max: self.prefetch_max.max(1),
            browse_max: self.browse_max,
            topic_backlog_max: self.topic_backlog_max,
            properties_depth_max: self.properties_depth_max.max(1),
            inflated_max_bytes: self.inflated_max_bytes,
            broker_name: self.broker_name.clone(),
        }
    }
}

impl WebSocketSection {
    /// The WebSocket crate's configuration.
    pub fn to_ws(&self) -> ferromq_websocket::WsConfig {
        ferromq_websocket::WsConfig {
            message_size_max_bytes: self.message_size_max_bytes,
            frame_size_max_bytes: self.frame_size_max_bytes,
            request_head_max_bytes: self.request_head_max_bytes,
            handshake_timeout_ms: self.handshake_timeout_ms,
            allowed_origins: self.allowed_origins.clone(),
            write_buffer_max_bytes: self.write_buffer_max_bytes,
        }
    }
}
