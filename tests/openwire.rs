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
