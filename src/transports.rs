//! The listeners beside the plain TCP ones: every protocol over TLS, and MQTT and STOMP
//! over WebSocket (WS) and WebSocket over TLS (WSS). All of them run the one accept loop
//! of `accept.rs`; this file only binds them and says which protocol serves each stream.
//!
//! A TLS client certificate's subject reaches the protocols as `Peer::verified_user`
//! (with `[tls] client_cert_user` set): STOMP uses it when CONNECT has no `login`, MQTT
//! when CONNECT has neither username nor password, AMQP when the client picks the
//! `EXTERNAL` mechanism (offered first on such connections).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferromq_core::{Broker, Peer};
use ferromq_websocket::{Subprotocol, WsConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::{self, Spec, Transport};
use crate::config::parse_addr;
use crate::tls::Tls;
use crate::{Config, StartError};

/// Where the TLS and WebSocket listeners listen (`None`: turned off).
#[derive(Clone, Debug, Default)]
pub struct Bound {
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

/// What the connections of these listeners share.
pub(crate) struct Shared {
    pub broker: Broker,
    pub shutdown: CancellationToken,
    pub stomp: Arc<ferromq_stomp::StompConfig>,
    pub amqp: Arc<ferromq_amqp::AmqpConfig>,
    pub mqtt: Arc<ferromq_mqtt::MqttConfig>,
    pub openwire: Arc<ferromq_openwire::OpenWireConfig>,
    /// The same client-id table and retained store as the plain MQTT listener.
    pub mqtt_sessions: Arc<ferromq_mqtt::shared::Shared>,
    pub ws: WsConfig,
}

/// The listeners bound and the TLS configuration loaded, not yet serving.
pub(crate) struct Prepared {
    tls: Option<Arc<Tls>>,
    stomp_tls: Option<(TcpListener, SocketAddr)>,
    amqp_tls: Option<(TcpListener, SocketAddr)>,
    mqtt_tls: Option<(TcpListener, SocketAddr)>,
    openwire_tls: Option<(TcpListener, SocketAddr)>,
    ws: Option<(TcpListener, SocketAddr)>,
    wss: Option<(TcpListener, SocketAddr)>,
    ws_connections_max: usize,
}

/// Loads (or generates) the certificate and binds the listeners `config` turns on, so
/// that a bad certificate or a taken port fails the start before anything serves.
pub(crate) async fn prepare(config: &Config) -> Result<Prepared, StartError> {
    let l = &config.listeners;
    let amqp_tls = parse_addr("listeners.amqp_tls", &l.amqp_tls)?;
    let mqtt_tls = parse_addr("listeners.mqtt_tls", &l.mqtt_tls)?;
    let stomp_tls = parse_addr("listeners.stomp_tls", &l.stomp_tls)?;
    let openwire_tls = parse_addr("listeners.openwire_tls", &l.openwire_tls)?;
    let ws = parse_addr("listeners.ws", &l.ws)?;
    let wss = parse_addr("listeners.wss", &l.wss)?;
    let tls = if [amqp_tls, mqtt_tls, stomp_tls, openwire_tls, wss]
        .iter()
        .any(Option::is_some)
    {
        let tls = Tls::load(&config.tls, &config.data_dir).map_err(StartError::Tls)?;
        Some(Arc::new(tls))
    } else {
        None
    };
    Ok(Prepared {
        tls,
        stomp_tls: bind("STOMP/TLS", stomp_tls).await?,
        amqp_tls: bind("AMQP/TLS", amqp_tls).await?,
        mqtt_tls: bind("MQTT/TLS", mqtt_tls).await?,
        openwire_tls: bind("OpenWire/TLS", openwire_tls).await?,
        ws: bind("WebSocket", ws).await?,
        wss: bind("WebSocket/TLS", wss).await?,
        ws_connections_max: config.websocket.connections_max,
    })
}

/// Starts serving the prepared listeners.
pub(crate) fn serve(p: Prepared, shared: Shared, tasks: &TaskTracker) -> Bound {
    let s = Arc::new(shared);
    let stop = s.shutdown.clone();
    let at = |l: &Option<(TcpListener, SocketAddr)>| l.as_ref().map(|(_, a)| *a);
    let bound = Bound {
        amqp_tls: at(&p.amqp_tls),
        mqtt_tls: at(&p.mqtt_tls),
        stomp_tls: at(&p.stomp_tls),
        openwire_tls: at(&p.openwire_tls),
        ws: at(&p.ws),
        wss: at(&p.wss),
        tls_cert: p.tls.as_ref().map(|t| t.cert_path().to_path_buf()),
    };
    // `prepare` loads TLS whenever a TLS listener is bound.
    let tls = p.tls;
    if let (Some((listener, _)), Some(tls)) = (p.stomp_tls, &tls) {
        let spec = spec("STOMP/TLS", s.stomp.connections_max, Some(tls));
        let s = s.clone();
        tasks.spawn(accept::serve(
            listener,
            spec,
            stop.clone(),
            move |io, peer| {
                ferromq_stomp::serve_connection(
                    io,
                    peer,
                    s.stomp.clone(),
                    s.broker.clone(),
                    s.shutdown.clone(),
                )
            },
        ));
    }
    if let (Some((listener, _)), Some(tls)) = (p.amqp_tls, &tls) {
        let spec = spec("AMQP/TLS", s.amqp.limits.connections_max, Some(tls));
        let s = s.clone();
        tasks.spawn(accept::serve(
            listener,
            spec,
            stop.clone(),
            move |io, peer| {
                ferromq_amqp::serve_connection(
                    io,
                    peer,
                    s.amqp.clone(),
                    s.broker.clone(),
                    s.shutdown.clone(),
                )
            },
        ));
    }
    if let (Some((listener, _)), Some(tls)) = (p.mqtt_tls, &tls) {
        let spec = spec("MQTT/TLS", s.mqtt.connections_max, Some(tls));
        let s = s.clone();
        tasks.spawn(accept::serve(
            listener,
            spec,
            stop.clone(),
            move |io, peer| mqtt_connection(io, peer, s.clone()),
        ));
    }
    if let (Some((listener, _)), Some(tls)) = (p.openwire_tls, &tls) {
        let spec = spec("OpenWire/TLS", s.openwire.connections_max, Some(tls));
        let s = s.clone();
        tasks.spawn(accept::serve(
            listener,
            spec,
            stop.clone(),
            move |io, peer| {
                ferromq_openwire::serve_connection(
                    io,
                    peer.addr,
                    s.openwire.clone(),
                    s.broker.clone(),
                    s.shutdown.clone(),
                )
            },
        ));
    }
    let websockets = [
        ("WebSocket", p.ws, None),
        ("WebSocket/TLS", p.wss, tls.as_ref()),
    ];
    for (name, listener, tls) in websockets {
        let Some((listener, _)) = listener else {
            continue;
        };
        let s = s.clone();
        tasks.spawn(accept::serve(
            listener,
            spec(name, p.ws_connections_max, tls),
            stop.clone(),
            move |io, peer| websocket_connection(io, peer, s.clone()),
        ));
    }
    bound
}

fn spec(name: &'static str, connections_max: usize, tls: Option<&Arc<Tls>>) -> Spec {
    Spec {
        name,
        connections_max,
        tls: tls.cloned(),
    }
}

async fn bind(
    protocol: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let Some(addr) = addr else { return Ok(None) };
    let err = |source| StartError::Bind {
        protocol,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    tracing::info!(protocol, addr = %bound, "listening");
    Ok(Some((listener, bound)))
}

async fn mqtt_connection<S>(io: S, peer: Peer, s: Arc<Shared>)
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
    )
    .await
}

/// Upgrades to a WebSocket and runs the protocol its subprotocol names.
async fn websocket_connection(io: Transport, peer: Peer, s: Arc<Shared>) {
    let upgraded = tokio::select! {
        _ = s.shutdown.cancelled() => return,
        r = ferromq_websocket::accept(io, &s.ws) => r,
    };
    match upgraded {
        Ok((ws, Subprotocol::Mqtt)) => mqtt_connection(ws, peer, s).await,
        Ok((ws, Subprotocol::Stomp)) => {
            ferromq_stomp::serve_connection(
                ws,
                peer,
                s.stomp.clone(),
                s.broker.clone(),
                s.shutdown.clone(),
            )
            .await
        }
        Err(e) => tracing::debug!(peer = ?peer.addr, error = %e, "no WebSocket"),
    }
}
