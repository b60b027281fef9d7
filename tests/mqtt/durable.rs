//! Persistent sessions and retained messages across a broker restart on the same data
//! directory (the in-process server shut down and started again).

use std::path::{Path, PathBuf};

use ferromq::Server;
use ferromq_mqtt::packet::{Disconnect, SubscriptionOptions};
use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::{Packet, ProtocolVersion, QoS as MQoS, ReasonCode};
use rumqttc::{Incoming, QoS};

use super::{connected, options, start};
use crate::common::broker;
use crate::raw::{connect_packet, Raw};

pub(crate) fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferromq-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub(crate) async fn server_at(dir: &Path) -> Server {
    let d = dir.to_path_buf();
    broker(move |c| c.data_dir = d).await
}

#[tokio::test]
async fn persistent_session_survives_a_restart() {
    let dir = fresh_dir("session");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let mut o = options(addr, "plant-1");
    o.set_clean_session(false);
    let mut c = start(o);
    assert!(!c.connack().await);
    c.subscribe("plant/q/#", QoS::AtLeastOnce).await;
    c.client.disconnect().await.unwrap();
    c.closed().await;

    let mut p = connected(addr, "plant-pub").await;
    for body in ["queued-1", "queued-2"] {
        p.client
            .publish("plant/q/1", QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
        p.until(|x| matches!(x, Incoming::PubAck(_)).then_some(()))
            .await;
    }
    p.stop();
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let mut o = options(addr, "plant-1");
    o.set_clean_session(false);
    let mut c = start(o);
    assert!(
        c.connack().await,
        "the session is present after the restart"
    );
    for body in ["queued-1", "queued-2"] {
        let m = c.publish_received().await;
        assert_eq!(
            (m.topic.as_str(), &m.payload[..]),
            ("plant/q/1", body.as_bytes())
        );
        assert_eq!(m.qos, QoS::AtLeastOnce);
    }
    // Its subscription came back too.
    let p = connected(addr, "plant-pub").await;
    p.client
        .publish("plant/q/2", QoS::AtLeastOnce, false, "after restart")
        .await
        .unwrap();
    let m = c.publish_received().await;
    assert_eq!(&m.payload[..], b"after restart");
    c.stop();
    p.stop();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn subscription_options_survive_a_restart() {
    let dir = fresh_dir("options");
    let server = server_at(&dir).await;
    let v = ProtocolVersion::V5;
    let props = || ConnectProperties {
        session_expiry_interval_secs: Some(3600),
        ..Default::default()
    };
    let (mut c, _) = Raw::connect(
        server.mqtt_addr().unwrap(),
        connect_packet(v, "opts", true, props()),
    )
    .await;
    let mut sub = crate::raw::subscribe(
        "opts/#",
        SubscriptionOptions {
            no_local: true,
            retain_as_published: true,
            ..SubscriptionOptions::qos(MQoS::AtLeastOnce)
        },
    );
    if let Packet::Subscribe(s) = &mut sub {
        s.properties.subscription_identifier = std::num::NonZeroU32::new(9);
    }
    c.send(sub).await;
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    c.send(Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    assert!(c.recv().await.is_none());
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, ack) = Raw::connect(addr, connect_packet(v, "opts", false, props())).await;
    assert!(ack.session_present);
    // No Local: its own message is not delivered back to it.
    c.publish_acked("opts/self", b"mine", 1).await;
    let (mut other, _) = Raw::connect(addr, connect_packet(v, "opts-pub", true, props())).await;
    other
        .send(crate::raw::publish(
            "opts/other",
            b"theirs",
            MQoS::AtLeastOnce,
            1,
        ))
        .await;
    let m = c.publish_received().await;
    assert_eq!(
        &m.topic[..],
        "opts/other",
        "the own message was not delivered"
    );
    assert_eq!(m.qos.qos(), MQoS::AtLeastOnce);
    assert_eq!(
        m.properties.subscription_identifiers,
        vec![std::num::NonZeroU32::new(9).unwrap()]
    );
    c.puback(m.qos.packet_id().unwrap()).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn retained_messages_survive_a_restart_and_clearing_does_too() {
    let dir = fresh_dir("retained");
    let server = server_at(&dir).await;
    let mut p = connected(server.mqtt_addr().unwrap(), "ret-pub").await;
    let retained = [
        ("site/a", "kept", QoS::AtLeastOnce),
        ("site/b", "also kept at QoS 0", QoS::AtMostOnce),
        ("site/c", "to be cleared", QoS::AtLeastOnce),
        ("site/a", "replaced", QoS::AtLeastOnce),
        ("site/c", "", QoS::AtLeastOnce),
    ];
    for (topic, body, qos) in retained {
        p.client.publish(topic, qos, true, body).await.unwrap();
    }
    // A QoS 1 PUBACK after them all: everything before it was handled.
    p.client
        .publish("site/end", QoS::AtLeastOnce, false, "")
        .await
        .unwrap();
    let mut acks = 0;
    p.until(|x| {
        acks += usize::from(matches!(x, Incoming::PubAck(_)));
        (acks == 5).then_some(())
    })
    .await;
    p.stop();
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let mut s = connected(addr, "ret-late").await;
    s.client
        .subscribe("site/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = s.publish_received().await;
        assert!(m.retain);
        got.push((
            m.topic.clone(),
            String::from_utf8(m.payload.to_vec()).unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("site/a".to_string(), "replaced".to_string()),
            ("site/b".to_string(), "also kept at QoS 0".to_string()),
        ]
    );
    // Nothing else was retained: the next message is a live one.
    let p = connected(addr, "ret-pub").await;
    p.client
        .publish("site/marker", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    let m = s.publish_received().await;
    assert_eq!((m.topic.as_str(), m.retain), ("site/marker", false));
    s.stop();
    p.stop();
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn session_expiry_is_enforced_after_a_restart() {
    let dir = fresh_dir("expiry");
    let server = server_at(&dir).await;
    let props = || ConnectProperties {
        session_expiry_interval_secs: Some(3),
        ..Default::default()
    };
    let v = ProtocolVersion::V5;
    let (mut c, _) = Raw::connect(
        server.mqtt_addr().unwrap(),
        connect_packet(v, "short", true, props()),
    )
    .await;
    c.subscribe("short/#", SubscriptionOptions::qos(MQoS::AtLeastOnce))
        .await;
    drop(c);
    server.shutdown().await;

    let server = server_at(&dir).await;
    let vhost = server.broker().vhost("/").unwrap();
    assert!(
        vhost.queue("mqtt-session-short").is_some(),
        "restored from the journal"
    );
    tokio::time::timeout(crate::common::WAIT, async {
        while vhost.queue("mqtt-session-short").is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the session expires after the restart");
    let (_, ack) = Raw::connect(
        server.mqtt_addr().unwrap(),
        connect_packet(v, "short", false, props()),
    )
    .await;
    assert!(!ack.session_present);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_latest_session_expiry_wins_across_a_restart() {
    let dir = fresh_dir("expiry-latest");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let v = ProtocolVersion::V5;
    let props = |secs| ConnectProperties {
        session_expiry_interval_secs: Some(secs),
        ..Default::default()
    };
    // Created with 1 s, renewed by a later CONNECT asking for an hour.
    let (c, _) = Raw::connect(addr, connect_packet(v, "renew", true, props(1))).await;
    drop(c);
    let (c, ack) = Raw::connect(addr, connect_packet(v, "renew", false, props(3600))).await;
    assert!(ack.session_present);
    drop(c);
    // Created with an hour, shortened to 1 s by its DISCONNECT.
    let (mut c, _) = Raw::connect(addr, connect_packet(v, "lower", true, props(3600))).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval_secs = Some(1);
    c.send(Packet::Disconnect(d)).await;
    assert!(c.recv().await.is_none());
    server.shutdown().await;

    let server = server_at(&dir).await;
    let vhost = server.broker().vhost("/").unwrap();
    let expires = |client: &str| {
        vhost
            .queue(&format!("mqtt-session-{client}"))
            .map(|q| q.expires())
    };
    assert_eq!(expires("renew"), Some(Some(3_600_000)));
    assert_eq!(expires("lower"), Some(Some(1_000)));
    tokio::time::timeout(crate::common::WAIT, async {
        while expires("lower").is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the shortened session expires");
    let (_, ack) = Raw::connect(
        server.mqtt_addr().unwrap(),
        connect_packet(v, "renew", false, props(3600)),
    )
    .await;
    assert!(ack.session_present, "the renewed session outlived 1 s");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_persistent_member_keeps_its_shared_subscription_while_away_and_across_a_restart() {
    let dir = fresh_dir("shared-member");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let v = ProtocolVersion::V5;
    let props = |secs| ConnectProperties {
        session_expiry_interval_secs: Some(secs),
        ..Default::default()
    };
    let group = "mqtt-shared/g/jobs/#";
    let (mut m, _) = Raw::connect(addr, connect_packet(v, "member", true, props(3600))).await;
    m.subscribe(
        "$share/g/jobs/#",
        SubscriptionOptions::qos(MQoS::AtLeastOnce),
    )
    .await;
    m.send(Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    assert!(m.recv().await.is_none());
    // While the only member is away, the group keeps what is published for it.
    let (mut p, _) = Raw::connect(addr, connect_packet(v, "jobs-pub", true, props(0))).await;
    p.publish_acked("jobs/1", b"while away", 1).await;
    let vhost = server.broker().vhost("/").unwrap();
    assert_eq!(vhost.queue(group).unwrap().stats().messages, 1);
    drop(p);
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut m, ack) = Raw::connect(addr, connect_packet(v, "member", false, props(3600))).await;
    assert!(ack.session_present);
    let got = m.publish_received().await;
    assert_eq!(&got.payload[..], b"while away");
    m.puback(got.qos.packet_id().unwrap()).await;
    // Still a member: new messages arrive without subscribing again.
    let (mut p, _) = Raw::connect(addr, connect_packet(v, "jobs-pub", true, props(0))).await;
    p.publish_acked("jobs/2", b"after the restart", 2).await;
    let got = m.publish_received().await;
    assert_eq!(&got.payload[..], b"after the restart");
    m.puback(got.qos.packet_id().unwrap()).await;
    // Unsubscribing leaves the group without members: it ends.
    m.send(Packet::Unsubscribe(ferromq_mqtt::packet::Unsubscribe {
        packet_id: crate::raw::pid(7),
        properties: Default::default(),
        filters: vec!["$share/g/jobs/#".into()],
    }))
    .await;
    assert!(matches!(m.recv().await, Some(Packet::UnsubAck(_))));
    let vhost = server.broker().vhost("/").unwrap();
    assert!(vhost.queue(group).is_none());
    // A group of clean sessions only ends when its last member leaves.
    let (mut t, _) = Raw::connect(addr, connect_packet(v, "temp", true, props(0))).await;
    t.subscribe("$share/t/x", SubscriptionOptions::qos(MQoS::AtLeastOnce))
        .await;
    assert!(vhost.queue("mqtt-shared/t/x").is_some());
    drop(t);
    tokio::time::timeout(crate::common::WAIT, async {
        while vhost.queue("mqtt-shared/t/x").is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the group of a clean session ends with it");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
