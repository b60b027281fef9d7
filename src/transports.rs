//! Every listener: each protocol over plain TCP and over TLS, and MQTT and STOMP over
//! WebSocket (WS) and WebSocket over TLS (WSS). All of them run the one accept loop of
//! `accept.rs`; this file only binds them and says which protocol serves each stream.
//!
//! A TLS client certificate's subject reaches the protocols as `Peer::verified_user`
//! (with `[tls] client_cert_user` set): STOMP uses it when CONNECT has no `login`, MQTT
//! when CONNECT has neither username nor password, AMQP when the client picks the
//! `EXTERNAL` mechanism (offered first on such connections).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferromq_core::{Broker, Peer};
use ferromq_websocket::{Subprotocol, WsConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::{self, Slot, Spec, Transport};
use crate::config::parse_addr;
use crate::tls::Tls;
use crate::{Config, StartError};

/// Where the listeners listen (`None`: turned off).
#[derive(Clone, Debug, Default)]
pub struct Bound {
    /// STOMP.
    pub stomp: Option<SocketAddr>,
    /// AMQP 0-9-1.
    pub amqp: Option<SocketAddr>,
    /// MQTT.
    pub mqtt: Option<SocketAddr>,
    /// OpenWire.
    pub openwire: Option<SocketAddr>,
    /// AMQP over TLS.
    pub amqp_tls: Option<SocketAddr>,
    /// MQTT over TLS.
    pub mqtt_tls: Option<SocketAddr>,
    /// STOMP over TLS.
    pub stomp_tls: Option<SocketAddr>,
    /// OpenWire over TLS.
    pub openwire_tls: Option<SocketAddr>,
    /// MQTT and STOMP over WebSocket.
    pub ws: Option<SocketAddr>,
    /// MQTT and STOMP over WebSocket over TLS.
    pub wss: Option<SocketAddr>,
    /// The certificate the TLS listeners serve, when any is on.
    pub tls_cert: Option<PathBuf>,
}

/// What the connections of every listener share.
pub(crate) struct Shared {
    pub broker: Broker,
    pub shutdown: CancellationToken,
    pub stomp: Arc<ferromq_stomp::StompConfig>,
    pub amqp: Arc<ferromq_amqp::AmqpConfig>,
    pub mqtt: Arc<ferromq_mqtt::MqttConfig>,
    pub openwire: Arc<ferromq_openwire::OpenWireConfig>,
    /// One client-id table and advisory registry for every OpenWire listener.
    pub openwire_shared: Arc<ferromq_openwire::Shared>,
    /// One client-id table and retained store for every MQTT listener.
    pub mqtt_sessions: Arc<ferromq_mqtt::shared::Shared>,
    pub ws: WsConfig,
    pub ws_connections_max: usize,
}

/// What a listener's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Stomp,
    Amqp,
    Mqtt,
    OpenWire,
    /// MQTT or STOMP, as the WebSocket subprotocol says.
    WebSocket,
}

/// A bound listener, not yet serving.
struct Listener {
    name: &'static str,
    protocol: Protocol,
    tls: bool,
    socket: TcpListener,
    addr: SocketAddr,
}

/// The listeners bound and the TLS configuration loaded, not yet serving.
pub(crate) struct Prepared {
    tls: Option<Arc<Tls>>,
    listeners: Vec<Listener>,
}

/// Loads (or generates) the certificate and binds the listeners `config` turns on, so
/// that a bad certificate or a taken port fails the start before anything serves.
pub(crate) async fn prepare(config: &Config) -> Result<Prepared, StartError> {
    use Protocol::*;
    let l = &config.listeners;
    let table = [
        ("listeners.stomp", "STOMP", Stomp, false, &l.stomp),
        ("listeners.amqp", "AMQP", Amqp, false, &l.amqp),
        ("listeners.mqtt", "MQTT", Mqtt, false, &l.mqtt),
        (
            "listeners.openwire",
            "OpenWire",
            OpenWire,
            false,
            &l.openwire,
        ),
        (
            "listeners.stomp_tls",
            "STOMP/TLS",
            Stomp,
            true,
            &l.stomp_tls,
        ),
        ("listeners.amqp_tls", "AMQP/TLS", Amqp, true, &l.amqp_tls),
        ("listeners.mqtt_tls", "MQTT/TLS", Mqtt, true, &l.mqtt_tls),
        (
            "listeners.openwire_tls",
            "OpenWire/TLS",
            OpenWire,
            true,
            &l.openwire_tls,
        ),
        ("listeners.ws", "WebSocket", WebSocket, false, &l.ws),
        ("listeners.wss", "WebSocket/TLS", WebSocket, true, &l.wss),
    ];
    let mut wanted = Vec::new();
    for (key, name, protocol, tls, value) in table {
        if let Some(addr) = parse_addr(key, value)? {
            wanted.push((name, protocol, tls, addr));
        }
    }
    let tls = if wanted.iter().any(|w| w.2) {
        let tls = Tls::load(&config.tls, &config.data_dir).map_err(StartError::Tls)?;
        Some(Arc::new(tls))
    } else {
        None
    };
    let mut listeners = Vec::with_capacity(wanted.len());
    for (name, protocol, tls, addr) in wanted {
        let (socket, addr) = bind(name, addr).await?;
        listeners.push(Listener {
            name,
            protocol,
            tls,
            socket,
            addr,
        });
    }
    Ok(Prepared { tls, listeners })
}

/// Starts serving the prepared listeners.
pub(crate) fn serve(p: Prepared, shared: Shared, tasks: &TaskTracker) -> Bound {
    let s = Arc::new(shared);
    let mut bound = Bound {
        tls_cert: p.tls.as_ref().map(|t| t.cert_path().to_path_buf()),
        ..Bound::default()
    };
    if p.listeners
        .iter()
        .any(|l| l.protocol == Protocol::Mqtt || l.protocol == Protocol::WebSocket)
    {
        ferromq_mqtt::open_shared(&s.broker, &s.mqtt, &s.mqtt_sessions);
        tasks.spawn(ferromq_mqtt::sweep_sessions(
            s.broker.clone(),
            s.mqtt.clone(),
            s.mqtt_sessions.clone(),
            s.shutdown.clone(),
        ));
    }
    for l in p.listeners {
        let slot = match (l.protocol, l.tls) {
            (Protocol::Stomp, false) => &mut bound.stomp,
            (Protocol::Amqp, false) => &mut bound.amqp,
            (Protocol::Mqtt, false) => &mut bound.mqtt,
            (Protocol::OpenWire, false) => &mut bound.openwire,
            (Protocol::Stomp, true) => &mut bound.stomp_tls,
            (Protocol::Amqp, true) => &mut bound.amqp_tls,
            (Protocol::Mqtt, true) => &mut bound.mqtt_tls,
            (Protocol::OpenWire, true) => &mut bound.openwire_tls,
            (Protocol::WebSocket, false) => &mut bound.ws,
            (Protocol::WebSocket, true) => &mut bound.wss,
        };
        *slot = Some(l.addr);
        let (connections_max, refusal) = match l.protocol {
            Protocol::Stomp => (s.stomp.connections_max, Some(ferromq_stomp::refusal())),
            Protocol::Amqp => (s.amqp.limits.connections_max, None),
            Protocol::Mqtt => (s.mqtt.connections_max, None),
            Protocol::OpenWire => (s.openwire.connections_max, None),
            Protocol::WebSocket => (s.ws_connections_max, None),
        };
        let spec = Spec {
            name: l.name,
            connections_max,
            // `prepare` loads TLS whenever a TLS listener is bound.
            tls: if l.tls { p.tls.clone() } else { None },
            refusal,
        };
        // One accept loop per protocol, each spawning only its own protocol's future: a
        // task is allocated at the size of its future, and a future that could be any
        // protocol's is as large as the largest (an idle MQTT connection paid for
        // AMQP's and WebSocket's state).
        let (s, socket, stop) = (s.clone(), l.socket, s.shutdown.clone());
        match l.protocol {
            Protocol::Stomp => tasks.spawn(accept::serve(
                socket,
                spec,
                stop,
                move |io, peer, slot: Slot| slot.hold(stomp_connection(io, peer, s.clone())),
            )),
            Protocol::Amqp => tasks.spawn(accept::serve(
                socket,
                spec,
                stop,
                move |io, peer, slot: Slot| slot.hold(amqp_connection(io, peer, s.clone())),
            )),
            Protocol::Mqtt => {
                tasks.spawn(accept::serve(socket, spec, stop, move |io, peer, slot| {
                    mqtt_transport_connection(io, peer, slot, s.clone())
                }))
            }
            Protocol::OpenWire => tasks.spawn(accept::serve(
                socket,
                spec,
                stop,
                move |io, peer, slot: Slot| slot.hold(openwire_connection(io, peer, s.clone())),
            )),
            Protocol::WebSocket => tasks.spawn(accept::serve(
                socket,
                spec,
                stop,
                move |io, peer, slot: Slot| slot.hold(websocket_connection(io, peer, s.clone())),
            )),
        };
    }
    bound
}

// The connection functions return the protocol's future itself rather than an `async fn`
// awaiting it: that would be one more layer in every connection's task, holding its
// own copy of the arguments.

fn amqp_connection(io: Transport, peer: Peer, s: Arc<Shared>) -> impl Future<Output = ()> {
    ferromq_amqp::serve_connection(
        io,
        peer,
        s.amqp.clone(),
        s.broker.clone(),
        s.shutdown.clone(),
    )
}

fn openwire_connection(io: Transport, peer: Peer, s: Arc<Shared>) -> impl Future<Output = ()> {
    ferromq_openwire::serve_connection(
        io,
        peer.addr,
        s.openwire.clone(),
        s.openwire_shared.clone(),
        s.broker.clone(),
        s.shutdown.clone(),
    )
}

async fn bind(
    protocol: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind {
        protocol,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    tracing::info!(protocol, addr = %bound, "listening");
    Ok((listener, bound))
}

fn stomp_connection<S>(io: S, peer: Peer, s: Arc<Shared>) -> impl Future<Output = ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ferromq_stomp::serve_connection(
        io,
        peer,
        s.stomp.clone(),
        s.broker.clone(),
        s.shutdown.clone(),
    )
}

fn mqtt_connection<S>(
    io: S,
    peer: Peer,
    slot: ferromq_mqtt::Slot,
    into_tcp: Option<fn(S) -> Result<tokio::net::TcpStream, S>>,
    s: Arc<Shared>,
) -> impl Future<Output = ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ferromq_mqtt::serve_connection(
        io,
        peer,
        s.mqtt.clone(),
        s.broker.clone(),
        s.mqtt_sessions.clone(),
        s.shutdown.clone(),
        ferromq_mqtt::Parking { slot, into_tcp },
    )
}

/// MQTT over TCP or TLS; a plain socket parks while idle (see the MQTT crate's `park.rs`),
/// keeping its slot.
fn mqtt_transport_connection(
    io: Transport,
    peer: Peer,
    slot: Slot,
    s: Arc<Shared>,
) -> impl Future<Output = ()> {
    let into_tcp = match io {
        Transport::Plain(_) => Some(Transport::into_tcp as fn(Transport) -> _),
        Transport::Tls(_) => None,
    };
    let slot = ferromq_mqtt::Slot {
        permit: Some(slot.permit),
        task: Some(slot.task),
    };
    mqtt_connection(io, peer, slot, into_tcp, s)
}

/// Upgrades to a WebSocket and runs the protocol its subprotocol names.
async fn websocket_connection(io: Transport, peer: Peer, s: Arc<Shared>) {
    let upgraded = tokio::select! {
        _ = s.shutdown.cancelled() => return,
        r = ferromq_websocket::accept(io, &s.ws) => r,
    };
    match upgraded {
        // The WebSocket's slot is held around this whole function.
        Ok((ws, Subprotocol::Mqtt)) => {
            mqtt_connection(ws, peer, ferromq_mqtt::Slot::default(), None, s).await
        }
        Ok((ws, Subprotocol::Stomp)) => stomp_connection(ws, peer, s).await,
        Err(e) => tracing::debug!(peer = ?peer.addr, error = %e, "no WebSocket"),
    }
}
