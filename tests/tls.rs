//! Black-box tests of the TLS listeners: STOMP (raw client), AMQP (lapin) and MQTT
//! (rumqttc) over TLS with the generated certificate trusted and with a configured one;
//! client certificates as user names; bad handshakes cost nothing.
//!
//! lapin and rumqttc are built without a TLS stack here, so they reach the TLS listener
//! through `common::net::bridge`: a local port whose connections the test carries over a
//! rustls client connection. Their whole protocol still runs over the broker's TLS.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::net::{bridge, client_config, tls};
use common::{broker, Client, WAIT};
use ferromq::config::{ClientCertMode, ClientCertUser, UserSection};
use ferromq::{Config, Server};
use ferromq_stomp::codec::Command;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

fn tls_on(c: &mut Config) {
    c.listeners.stomp_tls = "127.0.0.1:0".into();
    c.listeners.openwire_tls = "127.0.0.1:0".into();
    c.listeners.amqp_tls = "127.0.0.1:0".into();
    c.listeners.mqtt_tls = "127.0.0.1:0".into();
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferromq-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CA and certificates it signs, written as PEM files.
struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = scratch(name);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ferromq test CA");
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf certificate: `(cert PEM, key PEM)`, also written as `<name>.pem`/`.key`.
    fn leaf(&self, name: &str, sans: &[&str], cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (cert.pem(), key.serialize_pem());
        std::fs::write(self.dir.join(format!("{name}.pem")), &c).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), &k).unwrap();
        (c, k)
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }
}

fn cert_of(server: &Server) -> PathBuf {
    server
        .transports()
        .tls_cert
        .clone()
        .expect("TLS listeners are on")
}

/// STOMP over TLS: subscribe, send, receive.
async fn stomp_round_trip(server: &Server, cfg: &Arc<ClientConfig>) {
    let addr = server.transports().stomp_tls.unwrap();
    let io = tls(addr, cfg).await.expect("TLS handshake");
    let mut c = Client::over(io).login(&[]).await;
    c.subscribe("s1", "/queue/tls-stomp", "auto").await;
    c.send("/queue/tls-stomp", b"over tls", &[]).await;
    let m = c.message().await;
    assert_eq!(&m.body[..], b"over tls");
}

/// AMQP over TLS with lapin: declare, publish, get.
async fn amqp_round_trip(server: &Server, cfg: &Arc<ClientConfig>) {
    let addr = server.transports().amqp_tls.unwrap();
    let cfg = cfg.clone();
    let local = bridge(move || {
        let cfg = cfg.clone();
        async move { tls(addr, &cfg).await.expect("TLS handshake") }
    })
    .await;
    let conn = timeout(
        WAIT,
        Connection::connect(
            &format!("amqp://guest:guest@{local}/%2f"),
            ConnectionProperties::default(),
        ),
    )
    .await
    .unwrap()
    .expect("AMQP over TLS");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "tls-amqp".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "tls-amqp".into(),
        BasicPublishOptions::default(),
        b"amqps",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = loop {
        if let Some(m) = ch
            .basic_get("tls-amqp".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            break m;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(got.delivery.data, b"amqps");
    conn.close(200, "bye".into()).await.unwrap();
}

/// MQTT over TLS with rumqttc: QoS 1 to itself.
async fn mqtt_round_trip(server: &Server, cfg: &Arc<ClientConfig>, credentials: bool) {
    let addr = server.transports().mqtt_tls.unwrap();
    let cfg = cfg.clone();
    let local = bridge(move || {
        let cfg = cfg.clone();
        async move { tls(addr, &cfg).await.expect("TLS handshake") }
    })
    .await;
    let mut o = MqttOptions::new("tls-client", local.ip().to_string(), local.port());
    if credentials {
        o.set_credentials("guest", "guest");
    }
    let (client, mut events) = AsyncClient::new(o, 16);
    client.subscribe("tls/t", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("tls/t", QoS::AtLeastOnce, false, b"mqtts".to_vec())
        .await
        .unwrap();
    let got = timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(c))) => {
                    assert_eq!(c.code, rumqttc::ConnectReturnCode::Success)
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => break p,
                Ok(_) => {}
                Err(e) => panic!("MQTT over TLS: {e}"),
            }
        }
    })
    .await
    .expect("publish comes back");
    assert_eq!(&got.payload[..], b"mqtts");
}

#[tokio::test]
async fn every_protocol_over_tls_with_the_generated_certificate() {
    let server = broker(tls_on).await;
    let cert = cert_of(&server);
    assert!(cert.starts_with(std::env::temp_dir()), "{}", cert.display());
    let cfg = client_config(&cert, None);
    stomp_round_trip(&server, &cfg).await;
    amqp_round_trip(&server, &cfg).await;
    mqtt_round_trip(&server, &cfg, true).await;
    openwire_greets(&server, &cfg).await;
    server.shutdown().await;
}

/// OpenWire over TLS: the broker opens with its WireFormatInfo (size prefix, type 1, the
/// `ActiveMQ` magic). The JMS scenarios themselves run over TCP in tests/openwire.rs.
async fn openwire_greets(server: &Server, cfg: &Arc<ClientConfig>) {
    let addr = server.transports().openwire_tls.unwrap();
    let mut io = tls(addr, cfg).await.expect("TLS handshake");
    let mut head = [0u8; 4 + 1 + 8];
    timeout(common::WAIT, io.read_exact(&mut head))
        .await
        .expect("WireFormatInfo in time")
        .expect("read");
    assert_eq!(head[4], 1, "WIREFORMAT_INFO command type");
    assert_eq!(&head[5..], b"ActiveMQ");
}

#[tokio::test]
async fn generated_certificate_is_reused_on_restart() {
    let data = scratch("reuse");
    let first = broker(|c| {
        tls_on(c);
        c.data_dir = data.clone();
    })
    .await;
    let pem = std::fs::read(cert_of(&first)).unwrap();
    first.shutdown().await;
    let second = broker(|c| {
        tls_on(c);
        c.data_dir = data.clone();
    })
    .await;
    assert_eq!(std::fs::read(cert_of(&second)).unwrap(), pem);
    // And it still serves it.
    stomp_round_trip(&second, &client_config(&cert_of(&second), None)).await;
    second.shutdown().await;
}

#[tokio::test]
async fn configured_certificate_is_served() {
    let pki = Pki::new("configured");
    pki.leaf("server", &["localhost"], "localhost");
    let server = broker(|c| {
        tls_on(c);
        c.tls.cert = pki.path("server.pem");
        c.tls.key = pki.path("server.key");
    })
    .await;
    assert_eq!(cert_of(&server), Path::new(&pki.path("server.pem")));
    let cfg = client_config(&pki.ca(), None);
    stomp_round_trip(&server, &cfg).await;
    amqp_round_trip(&server, &cfg).await;
    mqtt_round_trip(&server, &cfg, true).await;
    openwire_greets(&server, &cfg).await;
    // A client that trusts only some other CA refuses the server.
    let other = Pki::new("other");
    let addr = server.transports().stomp_tls.unwrap();
    assert!(tls(addr, &client_config(&other.ca(), None)).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn client_certificate_subject_is_the_user() {
    let pki = Pki::new("clientcert");
    pki.leaf("server", &["localhost"], "localhost");
    let alice = pki.leaf("alice", &[], "alice");
    let mallory = pki.leaf("mallory", &[], "mallory");
    let server = broker(|c| {
        tls_on(c);
        c.tls.cert = pki.path("server.pem");
        c.tls.key = pki.path("server.key");
        c.tls.client_ca = pki.ca().to_string_lossy().into_owned();
        c.tls.client_cert = ClientCertMode::Required;
        c.tls.client_cert_user = ClientCertUser::CommonName;
        c.allow_anonymous = false;
        c.users = vec![UserSection {
            name: "alice".into(),
            password_hash: ferromq_core::hash_password("not used here"),
            vhosts: vec!["*".into()],
            tags: vec![],
            loopback_only: false,
        }];
    })
    .await;
    let stomp = server.transports().stomp_tls.unwrap();
    let as_alice = client_config(&pki.ca(), Some((&alice.0, &alice.1)));

    // STOMP without login is alice.
    let io = tls(stomp, &as_alice).await.unwrap();
    let mut c = Client::over(io);
    c.send_frame(Command::Connect, &[("accept-version", "1.2")], b"")
        .await;
    assert_eq!(c.frame().await.command, Command::Connected);

    // MQTT without username is alice.
    mqtt_round_trip(&server, &as_alice, false).await;

    // AMQP with EXTERNAL is alice.
    let addr = server.transports().amqp_tls.unwrap();
    let cfg = as_alice.clone();
    let local = bridge(move || {
        let cfg = cfg.clone();
        async move { tls(addr, &cfg).await.unwrap() }
    })
    .await;
    let conn = timeout(
        WAIT,
        Connection::connect(
            &format!("amqp://{local}/%2f?auth_mechanism=external"),
            ConnectionProperties::default(),
        ),
    )
    .await
    .unwrap()
    .expect("AMQP EXTERNAL login");
    conn.close(200, "bye".into()).await.unwrap();

    // A certificate for a user that does not exist is refused by the protocol.
    let io = tls(
        stomp,
        &client_config(&pki.ca(), Some((&mallory.0, &mallory.1))),
    )
    .await
    .unwrap();
    let mut c = Client::over(io);
    c.send_frame(Command::Connect, &[("accept-version", "1.2")], b"")
        .await;
    assert_eq!(c.frame().await.command, Command::Error);

    // Without a certificate the handshake fails (required).
    let no_cert = client_config(&pki.ca(), None);
    let refused = match tls(stomp, &no_cert).await {
        Err(_) => true,
        // TLS 1.3: the client learns of the refusal on its first read.
        Ok(mut io) => {
            let _ = io.write_all(b"CONNECT\n\n\0").await;
            let mut buf = [0u8; 64];
            !matches!(timeout(WAIT, io.read(&mut buf)).await, Ok(Ok(n)) if n > 0)
        }
    };
    assert!(refused);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_handshakes_cost_nothing() {
    let server = broker(|c| {
        tls_on(c);
        c.tls.handshake_timeout_ms = 300;
    })
    .await;
    let addr = server.transports().stomp_tls.unwrap();
    // Plain STOMP on the TLS port: closed.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"CONNECT\naccept-version:1.2\n\n\0")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = timeout(WAIT, plain.read(&mut buf)).await.unwrap();
    assert!(!matches!(n, Ok(n) if n > 0 && buf[..n].starts_with(b"CONNECTED")));
    // A silent client: closed when the handshake times out.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let n = timeout(WAIT, silent.read(&mut buf)).await.expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    // Everyone else is fine.
    stomp_round_trip(&server, &client_config(&cert_of(&server), None)).await;
    server.shutdown().await;
}
