//! The real ActiveMQ JMS client (Debian's `libactivemq-java`) against the broker: one JVM
//! runs every scenario of `interop/jms/JmsScenarios.java` and reports each one. Scenarios
//! that need the harness print `SYNC <action>` and wait for its answer: the harness restarts
//! the broker on the same ports and data directory (failover), or plays the AMQP (lapin)
//! or MQTT (rumqttc) peer of a cross-protocol exchange.
//! `scripts/test.sh` installs the package; without it (or without a JDK) this test fails
//! and says what to install.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ferromq::{Config, Server};

const JARS: [&str; 6] = [
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

fn classpath() -> String {
    let dir = Path::new("/usr/share/java");
    let missing: Vec<&str> = JARS
        .iter()
        .copied()
        .filter(|j| !dir.join(j).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?} in /usr/share/java: install Debian's libactivemq-java (scripts/test.sh does)"
    );
    JARS.iter()
        .map(|j| dir.join(j).display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn compile(cp: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jms-classes");
    std::fs::create_dir_all(&out).expect("class output dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/jms/JmsScenarios.java");
    let status = Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&out)
        .args(["-cp", cp])
        .arg(&src)
        .status()
        .expect("javac runs (install a JDK, e.g. openjdk-17-jdk-headless)");
    assert!(status.success(), "javac failed on {}", src.display());
    out
}

/// The listeners and data directory of the first broker, so that a restart reuses them.
/// A PKCS#12 trust store holding the broker's certificate, for the JVM.
fn trust_store(cert: &Path) -> PathBuf {
    let store = cert.with_file_name("jms-trust.p12");
    let _ = std::fs::remove_file(&store);
    let status = Command::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "ferromq",
            "-storetype",
            "PKCS12",
        ])
        .args(["-storepass", "changeit", "-file"])
        .arg(cert)
        .arg("-keystore")
        .arg(&store)
        .stdout(Stdio::null())
        .status()
        .expect("keytool (from the JDK) runs");
    assert!(status.success(), "keytool imports the broker's certificate");
    store
}

fn same_place(server: &Server, data_dir: &Path) -> Config {
    let mut c = Config::default();
    let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    c.listeners.stomp = addr(server.stomp_addr());
    c.listeners.amqp = addr(server.amqp_addr());
    c.listeners.mqtt = addr(server.mqtt_addr());
    c.listeners.openwire = addr(server.openwire_addr());
    c.listeners.openwire_tls = addr(server.transports().openwire_tls);
    for l in [
        &mut c.listeners.amqp_tls,
        &mut c.listeners.mqtt_tls,
        &mut c.listeners.stomp_tls,
        &mut c.listeners.ws,
        &mut c.listeners.wss,
    ] {
        l.clear();
    }
    c.data_dir = data_dir.to_path_buf();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jms_client_scenarios() {
    let cp = classpath();
    let classes = compile(&cp);
    let mut data_dir = PathBuf::new();
    let mut server = common::broker(|c| {
        data_dir = c.data_dir.clone();
        c.listeners.openwire_tls = "127.0.0.1:0".into();
    })
    .await;
    let restart_config = same_place(&server, &data_dir);
    let ow = server.openwire_addr().expect("openwire listener").port();
    let ssl = server
        .transports()
        .openwire_tls
        .expect("TLS listener")
        .port();
    let trust = trust_store(server.transports().tls_cert.as_ref().expect("certificate"));
    let stomp = server.stomp_addr().expect("stomp listener").port();
    let run_cp = format!("{}:{cp}", classes.display());
    let mut child = std::process::Command::new("java")
        .arg(format!("-Djavax.net.ssl.trustStore={}", trust.display()))
        .args([
            "-Djavax.net.ssl.trustStorePassword=changeit",
            "-Djavax.net.ssl.trustStoreType=PKCS12",
        ])
        .arg(format!("-Dferromq.sslPort={ssl}"))
        .args([
            "-cp",
            &run_cp,
            "JmsScenarios",
            &ow.to_string(),
            &stomp.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("java runs");
    let mut to_java = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let mut peer = Peer::default();
    while let Some(line) = lines.recv().await {
        out.push_str(&line);
        out.push('\n');
        let Some(action) = line.strip_prefix("SYNC ") else {
            continue;
        };
        let answer = match action.split_once(' ').unwrap_or((action, "")) {
            ("restart", _) => {
                server.shutdown().await;
                server = ferromq::start(restart_config.clone())
                    .await
                    .expect("broker restarts on the same ports and data");
                "GO".to_string()
            }
            (act, arg) => format!("GO {}", peer.act(&server, act, arg).await),
        };
        writeln!(to_java, "{answer}").expect("answer java");
        to_java.flush().expect("answer java");
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("java task")
        .expect("java exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let passed = out.lines().filter(|l| l.starts_with("PASS ")).count();
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    server.shutdown().await;
    assert!(
        output.status.success() && failed.is_empty() && passed >= 26,
        "JMS scenarios: {passed} passed, failures:\n{}\nstdout:\n{out}\nstderr:\n{stderr}",
        failed.join("\n")
    );
}

/// The AMQP and MQTT side of the cross-protocol scenarios.
#[derive(Default)]
struct Peer {
    mqtt: Option<(
        rumqttc::AsyncClient,
        tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
    )>,
}

impl Peer {
    /// Does `act`; the answer is "ok" or what went wrong (the JMS side fails on it).
    async fn act(&mut self, server: &Server, act: &str, arg: &str) -> String {
        let r = match act {
            "amqp_send" => amqp_send(server, arg).await,
            "amqp_recv" => amqp_recv(server, arg).await,
            "mqtt_send" => mqtt_send(server, arg).await,
            "mqtt_sub" => self.mqtt_sub(server, arg).await,
            "mqtt_recv" => self.mqtt_recv(arg).await,
            other => Err(format!("unknown action {other}")),
        };
        match r {
            Ok(()) => "ok".into(),
            Err(e) => e.replace('\n', " "),
        }
    }

    async fn mqtt_sub(&mut self, server: &Server, topic: &str) -> Result<(), String> {
        let (client, mut ev) = mqtt_client(server, "jms-peer-sub");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        client
            .subscribe(topic, rumqttc::QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        let mut subacks = 0;
        while subacks < 1 {
            match timeout(ev.poll()).await? {
                Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => subacks += 1,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        tokio::spawn(async move {
            while let Ok(e) = ev.poll().await {
                if let rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)) = e {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
        });
        self.mqtt = Some((client, rx));
        Ok(())
    }

    async fn mqtt_recv(&mut self, topic: &str) -> Result<(), String> {
        let (client, mut rx) = self.mqtt.take().ok_or("no MQTT subscription")?;
        let mut got = Vec::new();
        while got.len() < 2 {
            let p = timeout(rx.recv()).await?.ok_or("MQTT connection ended")?;
            if p.topic != topic {
                return Err(format!("topic {} (want {topic})", p.topic));
            }
            got.push(p.payload.to_vec());
        }
        let _ = client.disconnect().await;
        let want = vec!["from jms ü".as_bytes().to_vec(), vec![1u8, 2, 3]];
        if got != want {
            return Err(format!("payloads {got:?}, want {want:?}"));
        }
        Ok(())
    }
}

async fn timeout<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::time::timeout(common::WAIT, f)
        .await
        .map_err(|_| "timed out".to_string())
}

fn mqtt_client(server: &Server, id: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let addr = server.mqtt_addr().expect("mqtt listener");
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(std::time::Duration::from_secs(30));
    rumqttc::AsyncClient::new(o, 16)
}

async fn mqtt_send(server: &Server, topic: &str) -> Result<(), String> {
    let (client, mut ev) = mqtt_client(server, "jms-peer-pub");
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, "from mqtt")
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match timeout(ev.poll()).await? {
            Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let _ = client.disconnect().await;
    Ok(())
}

async fn amqp(server: &Server) -> Result<lapin::Channel, String> {
    let uri = format!(
        "amqp://guest:guest@{}/%2f",
        server.amqp_addr().expect("amqp")
    );
    let conn = timeout(lapin::Connection::connect(&uri, Default::default()))
        .await?
        .map_err(|e| e.to_string())?;
    conn.create_channel().await.map_err(|e| e.to_string())
}

async fn amqp_send(server: &Server, queue: &str) -> Result<(), String> {
    use lapin::types::{AMQPValue, FieldTable};
    let ch = amqp(server).await?;
    let mut headers = FieldTable::default();
    headers.insert("color".into(), AMQPValue::LongString("red".into()));
    headers.insert("n".into(), AMQPValue::LongInt(7));
    let text = lapin::BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_headers(headers)
        .with_correlation_id("c-amqp".into())
        .with_type("t-amqp".into())
        .with_priority(6)
        .with_delivery_mode(2);
    let bytes =
        lapin::BasicProperties::default().with_content_type("application/octet-stream".into());
    for (body, props) in [(&b"from amqp"[..], text), (&[0u8, 1, 2][..], bytes)] {
        ch.basic_publish("".into(), queue.into(), Default::default(), body, props)
            .await
            .map_err(|e| e.to_string())?;
    }
    let _ = ch.close(200, "bye".into()).await;
    Ok(())
}

async fn amqp_recv(server: &Server, queue: &str) -> Result<(), String> {
    use lapin::types::AMQPValue;
    let ch = amqp(server).await?;
    let get = |ch: lapin::Channel| async move {
        ch.basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("queue {queue} is empty"))
    };
    let text = get(ch.clone()).await?;
    let p = &text.delivery.properties;
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    check(
        text.delivery.data == "from jms ü".as_bytes(),
        format!("body {:?}", String::from_utf8_lossy(&text.delivery.data)),
    )?;
    let ct = p.content_type().as_ref().map(|c| c.to_string());
    check(
        ct.as_deref().is_some_and(|c| c.starts_with("text/plain")),
        format!("content type {ct:?}"),
    )?;
    check(
        p.correlation_id().as_ref().map(|c| c.as_str()) == Some("c-jms"),
        format!("correlation id {:?}", p.correlation_id()),
    )?;
    check(
        p.kind().as_ref().map(|c| c.as_str()) == Some("t-jms"),
        format!("type {:?}", p.kind()),
    )?;
    check(
        *p.priority() == Some(3),
        format!("priority {:?}", p.priority()),
    )?;
    check(
        *p.delivery_mode() == Some(2),
        format!("delivery mode {:?}", p.delivery_mode()),
    )?;
    let headers = p.headers().clone().unwrap_or_default();
    let h = headers.inner();
    let color = h.get("color").cloned();
    check(
        matches!(&color, Some(AMQPValue::LongString(s)) if s.to_string() == "blue"),
        format!("color header {color:?}"),
    )?;
    let n = h.get("n").cloned();
    check(
        matches!(n, Some(AMQPValue::LongInt(42))),
        format!("n header {n:?}"),
    )?;
    let bytes = get(ch.clone()).await?;
    check(
        bytes.delivery.data == [9, 8, 7],
        format!("bytes body {:?}", bytes.delivery.data),
    )?;
    let ct = bytes
        .delivery
        .properties
        .content_type()
        .as_ref()
        .map(|c| c.to_string());
    check(
        ct.as_deref() == Some("application/octet-stream"),
        format!("bytes content type {ct:?}"),
    )?;
    let _ = ch.close(200, "bye".into()).await;
    Ok(())
}

/// A raw OpenWire client: a socket, its decoder and what it has read but not decoded.
struct RawClient {
    sock: tokio::net::TcpStream,
    dec: ferromq_openwire::codec::Decoder,
    buf: bytes::BytesMut,
}

impl RawClient {
    /// Connects, reads the broker's WireFormatInfo and answers with one announcing
    /// `period_ms` and `delay_ms`; returns when that was sent.
    async fn negotiate(
        server: &Server,
        period_ms: i64,
        delay_ms: i64,
    ) -> (Self, std::time::Instant) {
        use ferromq_core::{FieldTable, FieldValue};
        use ferromq_openwire::command::{Body, Command, WireFormatInfo};
        use tokio::io::AsyncReadExt;
        let sock = tokio::net::TcpStream::connect(server.openwire_addr().expect("openwire"))
            .await
            .expect("connect");
        let mut c = RawClient {
            sock,
            dec: ferromq_openwire::codec::Decoder::new(1 << 20, Default::default()),
            buf: bytes::BytesMut::new(),
        };
        let first = loop {
            if let Some(f) = c.dec.decode(&mut c.buf).expect("decodes") {
                break f;
            }
            let n = timeout(c.sock.read_buf(&mut c.buf))
                .await
                .expect("broker speaks");
            assert!(n.expect("read") > 0, "closed before its WireFormatInfo");
        };
        let Body::WireFormatInfo(theirs) = first.body else {
            panic!("first frame is {}", first.body.name());
        };
        assert_eq!(
            theirs
                .properties
                .get("MaxInactivityDurationInitalDelay")
                .and_then(FieldValue::as_i64),
            Some(10_000)
        );
        let mut p = FieldTable::new();
        p.insert("TightEncodingEnabled", FieldValue::Bool(false));
        p.insert("CacheEnabled", FieldValue::Bool(false));
        p.insert("MaxInactivityDuration", FieldValue::I64(period_ms));
        p.insert(
            "MaxInactivityDurationInitalDelay",
            FieldValue::I64(delay_ms),
        );
        let wf = WireFormatInfo {
            version: 12,
            properties: p,
        };
        c.send(Command::new(0, Body::WireFormatInfo(wf))).await;
        let sent = std::time::Instant::now();
        (c, sent)
    }

    async fn send(&mut self, c: ferromq_openwire::command::Command) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        ferromq_openwire::codec::encode(&mut out, &Default::default(), &c);
        self.sock.write_all(&out).await.expect("connection open");
    }

    /// Reads frames until the broker closes the socket (or `bound` passes: a failure);
    /// returns each with the time it was decoded.
    async fn until_closed(
        &mut self,
        bound: std::time::Duration,
    ) -> Vec<(std::time::Instant, ferromq_openwire::command::Body)> {
        use tokio::io::AsyncReadExt;
        let mut bodies = Vec::new();
        let closed = tokio::time::timeout(bound, async {
            loop {
                while let Some(c) = self
                    .dec
                    .decode(&mut self.buf)
                    .expect("broker frames decode")
                {
                    bodies.push((std::time::Instant::now(), c.body));
                }
                if self.sock.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a silent client is still connected after {bound:?}; it got {:?}",
            bodies.iter().map(|(_, b)| b.name()).collect::<Vec<_>>()
        );
        bodies
    }
}

/// A client negotiates a 300 ms MaxInactivityDuration with a 200 ms initial delay over a
/// raw socket and keeps the connection alive with KeepAliveInfo for a while (it gets the
/// broker's), then goes silent: the broker closes it with a ConnectionError, no sooner than
/// a whole read-check period after its last byte, and within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_the_negotiated_inactivity() {
    use ferromq_openwire::command::{Body, Command};
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    let server = common::broker(|c| c.openwire.inactivity_min_ms = 100).await;
    let (mut c, _) = RawClient::negotiate(&server, 300, 200).await;
    // Alive: a KeepAliveInfo every 100 ms or so for 1.5 s (five read-check periods).
    let mut keep_alives = 0;
    let mut last_sent = Instant::now();
    let alive_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < alive_until {
        last_sent = Instant::now();
        c.send(Command::new(0, Body::KeepAliveInfo)).await;
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(100), c.sock.read_buf(&mut c.buf)).await
        {
            assert!(read.expect("read") > 0, "closed while the client was alive");
        }
        while let Some(f) = c.dec.decode(&mut c.buf).expect("decodes") {
            match f.body {
                Body::KeepAliveInfo => keep_alives += 1,
                Body::BrokerInfo(_) => {}
                other => panic!("unexpected {} while alive", other.name()),
            }
        }
    }
    assert!(keep_alives > 0, "the broker sent no KeepAliveInfo in 1.5 s");

    let bodies = c.until_closed(Duration::from_secs(10)).await;
    let silent_for = last_sent.elapsed();
    assert!(
        silent_for >= Duration::from_millis(290),
        "closed {silent_for:?} after the last byte, before a whole period"
    );
    assert!(
        matches!(bodies.last(), Some((_, Body::ConnectionError { .. }))),
        "closed with {:?}",
        bodies.iter().map(|(_, b)| b.name()).collect::<Vec<_>>()
    );
    server.shutdown().await;
}

/// Silent from negotiation with a 300 ms period and a 600 ms initial delay: the broker
/// neither checks nor sends before the initial delay is over, writes KeepAliveInfo after
/// it, and closes the connection once a whole period after it passed without a byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_monitoring_waits_for_the_initial_delay() {
    use ferromq_openwire::command::Body;
    use std::time::Duration;

    let server = common::broker(|c| c.openwire.inactivity_min_ms = 100).await;
    let (mut c, sent) = RawClient::negotiate(&server, 300, 600).await;
    let bodies = c.until_closed(Duration::from_secs(10)).await;
    let closed_after = sent.elapsed();
    let names: Vec<&str> = bodies.iter().map(|(_, b)| b.name()).collect();
    assert!(
        closed_after >= Duration::from_millis(890),
        "closed {closed_after:?} after negotiation, before the initial delay and a period"
    );
    assert!(
        matches!(bodies.last(), Some((_, Body::ConnectionError { .. }))),
        "closed with {names:?}"
    );
    let keep_alives: Vec<Duration> = bodies
        .iter()
        .filter(|(_, b)| matches!(b, Body::KeepAliveInfo))
        .map(|(at, _)| at.duration_since(sent))
        .collect();
    assert!(!keep_alives.is_empty(), "no KeepAliveInfo: {names:?}");
    assert!(
        keep_alives[0] >= Duration::from_millis(590),
        "a KeepAliveInfo {:?} after negotiation, within the initial delay",
        keep_alives[0]
    );
    server.shutdown().await;
}

/// A client that announces a MaxInactivityDuration below `[openwire] inactivity_min_ms` is
/// refused at negotiation with a ConnectionError naming both values (a 5 ms period would
/// have the broker write a KeepAliveInfo every few milliseconds); 0, monitoring off, is
/// accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactivity_period_below_the_floor_is_refused_at_negotiation() {
    use ferromq_openwire::command::{Body, Command};
    use std::time::Duration;

    let server = common::broker(|_| {}).await;
    let (mut c, _) = RawClient::negotiate(&server, 5, 0).await;
    let bodies = c.until_closed(Duration::from_secs(10)).await;
    let Some((_, Body::ConnectionError { exception, .. })) = bodies.last() else {
        panic!(
            "closed with {:?}",
            bodies.iter().map(|(_, b)| b.name()).collect::<Vec<_>>()
        );
    };
    let message = exception
        .as_ref()
        .and_then(|e| e.message.as_deref())
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("5 ms") && message.contains("1000 ms"),
        "{message}"
    );

    // Off is not a short period: the connection stays and answers.
    let (mut c, _) = RawClient::negotiate(&server, 0, 0).await;
    c.send(Command {
        response_required: true,
        ..Command::new(7, Body::KeepAliveInfo)
    })
    .await;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        loop {
            while let Some(f) = c.dec.decode(&mut c.buf).expect("decodes") {
                if !matches!(f.body, Body::BrokerInfo(_)) {
                    return f.body;
                }
            }
            assert!(
                c.sock.read_buf(&mut c.buf).await.expect("read") > 0,
                "closed"
            );
        }
    })
    .await
    .expect("an answer");
    assert!(
        !matches!(answered, Body::ConnectionError { .. }),
        "refused: {}",
        answered.name()
    );
    server.shutdown().await;
}
