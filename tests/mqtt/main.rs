//! Black-box MQTT tests: rumqttc (3.1.1 and 5) and a raw client built on the codec
//! against the in-process server on port 0.
//!
//! - `main.rs`: 3.1.1 basics (QoS, retained, wills, keep alive) and the shared helpers.
//! - `durable.rs`: persistent sessions and retained messages across a broker restart.
//! - `durable_ids.rs`: QoS 2 exchanges and original packet ids across a broker restart.
//! - `flows.rs`: shared subscriptions, will delay, receive maximum, takeover, QoS 2, with
//!   the raw client of `raw.rs`.
//! - `malformed.rs`: bad packets on the socket.
//! - `park.rs`: idle connections in the parking lot and every way out of it.

#[path = "../common/mod.rs"]
mod common;
mod durable;
mod durable_ids;
mod flows;
mod malformed;
mod park;
mod raw;

use std::time::Duration;

use common::{broker, WAIT};
use ferromq_stomp::codec::Command;
use rumqttc::{AsyncClient, ConnectReturnCode, Event, Incoming, LastWill, MqttOptions, QoS};
use tokio::sync::mpsc;

/// A 3.1.1 client whose event loop runs in a task; incoming packets arrive on the channel.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Incoming, String>>,
    task: tokio::task::JoinHandle<()>,
}

fn options(addr: std::net::SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn start(o: MqttOptions) -> Client {
    let (client, mut ev) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(p)) => {
                    if tx.send(Ok(p)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    Client { client, rx, task }
}

impl Client {
    async fn next(&mut self) -> Result<Incoming, String> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("an MQTT event in time")
            .expect("event loop alive")
    }

    /// Waits for the CONNACK; returns session present.
    async fn connack(&mut self) -> bool {
        match self.next().await {
            Ok(Incoming::ConnAck(a)) => {
                assert_eq!(a.code, ConnectReturnCode::Success);
                a.session_present
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn until<T>(&mut self, mut f: impl FnMut(&Incoming) -> Option<T>) -> T {
        loop {
            let p = self.next().await.expect("no error");
            if let Some(t) = f(&p) {
                return t;
            }
        }
    }

    async fn publish_received(&mut self) -> rumqttc::Publish {
        self.until(|p| match p {
            Incoming::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        self.until(|p| matches!(p, Incoming::SubAck(_)).then_some(()))
            .await;
    }

    fn stop(self) {
        self.task.abort();
    }

    /// Waits until the event loop ends (the connection closed).
    async fn closed(mut self) {
        tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.rx.recv().await {}
        })
        .await
        .expect("the connection closes in time");
        self.task.abort();
    }
}

async fn connected(addr: std::net::SocketAddr, id: &str) -> Client {
    let mut c = start(options(addr, id));
    c.connack().await;
    c
}

#[tokio::test]
async fn qos0_and_qos1_round_trip_with_topic_translation() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut sub = connected(addr, "sub").await;
    sub.subscribe("sensors/+/temp", QoS::AtLeastOnce).await;
    let pubc = connected(addr, "pub").await;
    pubc.client
        .publish("sensors/k1.2/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    let p = sub.publish_received().await;
    assert_eq!(p.topic, "sensors/k1.2/temp");
    assert_eq!(&p.payload[..], b"21.5");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    pubc.client
        .publish("sensors/x/temp", QoS::AtMostOnce, false, "0")
        .await
        .unwrap();
    let p = sub.publish_received().await;
    assert_eq!(
        (p.topic.as_str(), p.qos),
        ("sensors/x/temp", QoS::AtMostOnce)
    );
    // Not matched: one level too deep.
    pubc.client
        .publish("sensors/x/temp/raw", QoS::AtMostOnce, false, "no")
        .await
        .unwrap();
    pubc.client
        .publish("sensors/y/temp", QoS::AtMostOnce, false, "yes")
        .await
        .unwrap();
    assert_eq!(&sub.publish_received().await.payload[..], b"yes");
    sub.stop();
    pubc.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn qos2_both_directions() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut sub = connected(addr, "sub2").await;
    sub.subscribe("q2/#", QoS::ExactlyOnce).await;
    let mut pubc = connected(addr, "pub2").await;
    pubc.client
        .publish("q2/a", QoS::ExactlyOnce, false, "once")
        .await
        .unwrap();
    pubc.until(|p| matches!(p, Incoming::PubComp(_)).then_some(()))
        .await;
    let p = sub.publish_received().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"once"[..]));
    // The client's PUBREC/PUBREL/PUBCOMP exchange completes: the broker sends PUBREL.
    sub.until(|p| matches!(p, Incoming::PubRel(_)).then_some(()))
        .await;
    sub.stop();
    pubc.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn bad_password_and_anonymous() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut o = options(addr, "bad");
    o.set_credentials("guest", "wrong");
    let mut c = start(o);
    let e = c.next().await.unwrap_err();
    assert!(e.contains("BadUserNamePassword"), "{e}");
    c.stop();
    let mut o = options(addr, "good");
    o.set_credentials("guest", "guest");
    let mut c = start(o);
    c.connack().await;
    c.stop();
    server.shutdown().await;

    let server = broker(|c| c.allow_anonymous = false).await;
    let mut c = start(options(server.mqtt_addr().unwrap(), "anon"));
    let e = c.next().await.unwrap_err();
    assert!(e.contains("NotAuthorized"), "{e}");
    c.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn mqtt_and_stomp_meet_on_amq_topic() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut stomp = common::Client::connect(server.stomp_addr().unwrap()).await;
    stomp
        .send_frame(
            Command::Subscribe,
            &[
                ("destination", "/topic/home.*"),
                ("id", "s1"),
                ("receipt", "r1"),
            ],
            b"",
        )
        .await;
    assert_eq!(stomp.frame().await.command, Command::Receipt);
    let mut m = connected(addr, "x1").await;
    m.subscribe("office/#", QoS::AtLeastOnce).await;
    m.client
        .publish("home/kitchen", QoS::AtLeastOnce, false, "from mqtt")
        .await
        .unwrap();
    let f = stomp.frame().await;
    assert_eq!(f.command, Command::Message);
    assert_eq!(f.headers.get("destination"), Some("/topic/home.kitchen"));
    assert_eq!(&f.body[..], b"from mqtt");
    stomp
        .send_frame(
            Command::Send,
            &[("destination", "/topic/office.desk")],
            b"from stomp",
        )
        .await;
    let p = m.publish_received().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("office/desk", &b"from stomp"[..])
    );
    m.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn persistent_session_keeps_messages_and_redelivers() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut o = options(addr, "durable-1");
    o.set_clean_session(false);
    let mut c = start(o.clone());
    assert!(!c.connack().await, "a new session is not present");
    c.subscribe("news/#", QoS::AtLeastOnce).await;
    c.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.stop();

    let p = connected(addr, "publisher").await;
    p.client
        .publish("news/1", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut c = start(o.clone());
    assert!(c.connack().await, "session present");
    let m = c.publish_received().await;
    assert_eq!(&m.payload[..], b"while away");

    // A clean session discards it all.
    let mut clean = options(addr, "durable-1");
    clean.set_clean_session(true);
    c.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = start(clean);
    assert!(!c.connack().await);
    c.stop();
    p.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn retained_messages_and_clearing() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut p = connected(addr, "retainer").await;
    p.client
        .publish("status/door", QoS::AtLeastOnce, true, "open")
        .await
        .unwrap();
    p.until(|x| matches!(x, Incoming::PubAck(_)).then_some(()))
        .await;
    let mut s = connected(addr, "late").await;
    s.client
        .subscribe("status/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let m = s.publish_received().await;
    assert!(m.retain);
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("status/door", &b"open"[..])
    );
    // Cleared by an empty retained publish.
    p.client
        .publish("status/door", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    let live = s.publish_received().await;
    assert!(!live.retain, "live deliveries do not carry RETAIN");
    let mut s2 = connected(addr, "later").await;
    s2.subscribe("status/#", QoS::AtLeastOnce).await;
    p.client
        .publish("status/other", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let m = s2.publish_received().await;
    assert_eq!(m.topic, "status/other", "no retained message is left");
    p.stop();
    s.stop();
    s2.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn will_on_abrupt_close_and_takeover() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let mut watcher = connected(addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut o = options(addr, "dying");
    o.set_last_will(LastWill::new(
        "wills/dying",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let mut c = start(o.clone());
    c.connack().await;
    // A second connection with the same id ends the first, whose will is published.
    let mut c2 = start(o);
    c2.connack().await;
    let ended = c.next().await;
    assert!(ended.is_err(), "{ended:?}");
    let w = watcher.publish_received().await;
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("wills/dying", &b"gone"[..])
    );
    // Dropping the socket without DISCONNECT publishes the second one's will too.
    c2.stop();
    let w = watcher.publish_received().await;
    assert_eq!(&w.payload[..], b"gone");
    c.stop();
    watcher.stop();
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_is_enforced() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // 3.1.1 CONNECT, keep alive 1 s, client id "ka".
    s.write_all(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x01\x00\x02ka")
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"\x20\x02\x00\x00");
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(WAIT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_is_closed_without_panic() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Unsupported level 6: CONNACK 0x01 in the 3.1.1 form.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, b"\x20\x02\x00\x01");
    // A SUBSCRIBE before CONNECT: closed without a word.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"\x82\x06\x00\x01\x00\x01a\x00").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.is_empty());
    server.shutdown().await;
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    #[tokio::test]
    async fn v5_properties_aliases_and_no_local() {
        let server = broker(|_| {}).await;
        let addr = server.mqtt_addr().unwrap();
        let mut o = MqttOptions::new("v5c", addr.ip().to_string(), addr.port());
        o.set_topic_alias_max(Some(10));
        let (client, mut ev) = AsyncClient::new(o, 100);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(e) = ev.poll().await {
                if let Event::Incoming(p) = e {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
            }
        });
        async fn recv(rx: &mut mpsc::UnboundedReceiver<Packet>) -> Packet {
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("in time")
                .expect("open")
        }
        loop {
            if let Packet::ConnAck(a) = recv(&mut rx).await {
                let p = a.properties.expect("v5 CONNACK has properties");
                assert_eq!(p.receive_max, Some(128));
                assert_eq!(p.topic_alias_max, Some(64));
                break;
            }
        }
        client
            .subscribe_with_properties(
                "v5/#",
                Q5::AtLeastOnce,
                rumqttc::v5::mqttbytes::v5::SubscribeProperties {
                    id: Some(7),
                    user_properties: vec![],
                },
            )
            .await
            .unwrap();
        loop {
            if let Packet::SubAck(_) = recv(&mut rx).await {
                break;
            }
        }
        let props = PublishProperties {
            content_type: Some("text/plain".into()),
            user_properties: vec![("k".into(), "v".into())],
            response_topic: Some("replies/1".into()),
            correlation_data: Some(bytes::Bytes::from_static(b"c-1")),
            message_expiry_interval: Some(60),
            ..Default::default()
        };
        client
            .publish_with_properties("v5/a.b", Q5::AtLeastOnce, false, "hi", props)
            .await
            .unwrap();
        let p = loop {
            if let Packet::Publish(p) = recv(&mut rx).await {
                break p;
            }
        };
        assert_eq!(&p.topic[..], b"v5/a.b");
        let pp = p.properties.expect("properties");
        assert_eq!(pp.content_type.as_deref(), Some("text/plain"));
        assert_eq!(pp.user_properties, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(pp.response_topic.as_deref(), Some("replies/1"));
        assert_eq!(pp.correlation_data.as_deref(), Some(&b"c-1"[..]));
        assert_eq!(pp.subscription_identifiers, vec![7]);
        assert!(pp.message_expiry_interval.is_some_and(|s| s <= 60 && s > 0));
        task.abort();
        server.shutdown().await;
    }
}
