//! The ferromq server: configuration, listeners, housekeeping and shutdown.
//!
//! # Layout
//! - `config.rs`: defaults, TOML file, `FERROMQ_*` environment overrides.
//! - `main.rs`: the command line (`serve`, `hash-password`, `users`).
//! - this file: [`start`] binds every configured listener and returns a [`Server`] handle,
//!   which tests use to run a broker in-process on ephemeral ports.
//! - `transports.rs`: the TLS and WebSocket listeners; `accept.rs` their one accept loop;
//!   `tls.rs` certificates and handshakes.
//! - `admin.rs`: the admin socket behind `ferromq users`.
#![warn(missing_docs)]

mod accept;
pub mod admin;
pub mod config;
pub mod tls;
mod transports;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferromq_core::{Broker, RecoveryReport, SystemClock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ConfigError};
pub use transports::Bound;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error("cannot listen for {protocol} on {addr}: {source}")]
    Bind {
        /// Which listener.
        protocol: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another broker uses the data directory.
    #[error("data directory {0} is in use by another broker (lock file {0}/LOCK)")]
    Locked(std::path::PathBuf),
    /// The TLS certificate, key or CA could not be used.
    #[error("TLS: {0}")]
    Tls(tls::TlsError),
    /// The admin socket could not be created.
    #[error("cannot create the admin socket {path}: {source}")]
    Admin {
        /// The socket.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The journal could not be opened or replayed.
    #[error("cannot restore durable state: {0}")]
    Store(ferromq_core::CoreError),
}

/// A running broker.
pub struct Server {
    broker: Broker,
    transports: Bound,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    shutdown_timeout: Duration,
    persister: Option<tokio::task::JoinHandle<()>>,
    recovery: Option<RecoveryReport>,
    mqtt_shared: Arc<ferromq_mqtt::shared::Shared>,
    _lock: Option<std::fs::File>,
}

impl Server {
    /// The STOMP listener's bound address.
    pub fn stomp_addr(&self) -> Option<SocketAddr> {
        self.transports.stomp
    }

    /// The AMQP listener's bound address.
    pub fn amqp_addr(&self) -> Option<SocketAddr> {
        self.transports.amqp
    }

    /// The MQTT listener's bound address.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.transports.mqtt
    }

    /// The OpenWire listener's bound address.
    pub fn openwire_addr(&self) -> Option<SocketAddr> {
        self.transports.openwire
    }

    /// Every listener's address and the certificate the TLS ones serve.
    pub fn transports(&self) -> &Bound {
        &self.transports
    }

    /// The broker core.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// What the MQTT listeners share (client ids, retained messages, parked connections).
    pub fn mqtt_shared(&self) -> &Arc<ferromq_mqtt::shared::Shared> {
        &self.mqtt_shared
    }

    /// What was restored from the journal at start (`None` without a store).
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, says goodbye to every connection, and waits for every task to end
    /// (at most the configured shutdown timeout).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timed out; some connections did not close in time");
        }
        // Connections are gone: write what they left and close the journal.
        if let Err(e) = self.broker.close().await {
            tracing::error!(%e, "closing the journal failed");
        }
        if let Some(p) = self.persister {
            let _ = p.await;
        }
    }

    /// Waits until the shutdown token fires, then shuts down.
    pub async fn run_until_stopped(self) {
        self.shutdown.cancelled().await;
        self.shutdown().await;
    }
}

/// Binds the configured listeners and starts serving.
pub async fn start(config: Config) -> Result<Server, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let (broker, persister, recovery, lock) = if config.store.enabled {
        let lock = lock_data_dir(&config.data_dir)?;
        let durable = config.store.to_durable(
            config.data_dir.join("journal"),
            config.data_dir.join("paging"),
        );
        let broker_config = config.broker_config();
        let opened = tokio::task::spawn_blocking(move || {
            Broker::open(broker_config, Arc::new(SystemClock), durable)
        })
        .await
        .expect("journal recovery does not panic")
        .map_err(StartError::Store)?;
        let r = &opened.report;
        tracing::info!(
            records = r.records,
            exchanges = r.exchanges,
            queues = r.queues,
            bindings = r.bindings,
            messages = r.messages,
            orphaned = r.orphaned,
            truncated = r.truncated.as_deref().unwrap_or("no"),
            elapsed_ms = r.elapsed_ms,
            "durable state restored"
        );
        let persister = tokio::spawn(opened.persister.run());
        (
            opened.broker,
            Some(persister),
            Some(opened.report),
            Some(lock),
        )
    } else {
        let broker = Broker::new(config.broker_config(), Arc::new(SystemClock));
        (broker, None, None, None)
    };
    let admin = match config.admin_socket() {
        Some(path) => Some((
            admin::bind(&path).map_err(|source| StartError::Admin {
                path: path.clone(),
                source,
            })?,
            path,
        )),
        None => None,
    };
    let prepared = transports::prepare(&config).await?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some((listener, path)) = admin {
        admin::serve(
            listener,
            path,
            broker.clone(),
            config.admin_limits(),
            shutdown.clone(),
            &tasks,
        );
    }

    let mqtt_shared = ferromq_mqtt::shared::Shared::new();
    let shared = transports::Shared {
        broker: broker.clone(),
        shutdown: shutdown.clone(),
        stomp: Arc::new(config.stomp.to_stomp()),
        amqp: Arc::new(config.amqp.to_amqp()),
        mqtt: Arc::new(config.mqtt.to_mqtt()),
        openwire: Arc::new(config.openwire.to_openwire()),
        openwire_shared: ferromq_openwire::Shared::new(),
        mqtt_sessions: mqtt_shared.clone(),
        ws: config.websocket.to_ws(),
        ws_connections_max: config.websocket.connections_max,
    };
    let transports = transports::serve(prepared, shared, &tasks);

    let interval = Duration::from_millis(config.housekeeping_interval_ms.max(10));
    let (b, stop) = (broker.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => b.housekeeping(),
            }
        }
    });

    Ok(Server {
        broker,
        transports,
        shutdown,
        tasks,
        shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        persister,
        recovery,
        mqtt_shared,
        _lock: lock,
    })
}

/// Takes an exclusive lock on `dir/LOCK` for the life of the returned file, so that two
/// brokers never write one journal.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::DataDir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; it has no memory effects.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StartError::Locked(dir.to_path_buf()));
    }
    Ok(file)
}
