//! Exactly-once QoS 2 and original packet ids across a broker restart on the same data
//! directory: a restart must look like a reconnect to a persistent session.

use ferromq::Server;
use ferromq_mqtt::packet::{Disconnect, PublishAck, SubscriptionOptions};
use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::durable::{fresh_dir, server_at};
use crate::raw::{connect_packet, pid, publish, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Markers held in the MQTT listener's state queue (each records a piece of state).
fn markers(server: &Server) -> u64 {
    let q = server.broker().vhost("/").unwrap().queue("mqtt-qos-state");
    let stats = q.expect("the state queue exists").stats();
    assert_eq!(stats.messages, 0, "every marker is held");
    stats.unacked
}

fn expiring(secs: u32) -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval_secs: Some(secs),
        ..Default::default()
    }
}

#[tokio::test]
async fn incoming_qos2_awaiting_pubrel_is_routed_once_across_a_restart() {
    let dir = fresh_dir("q2-in");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    // An offline persistent subscriber collects what is routed.
    let (mut w, _) =
        Raw::connect(addr, connect_packet(V5, "q2r-watch", true, expiring(3600))).await;
    w.subscribe("q2r/#", SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await;
    w.send(Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    assert!(w.recv().await.is_none());
    let (mut c, _) = Raw::connect(addr, connect_packet(V5, "q2r-pub", true, expiring(3600))).await;
    c.send(publish("q2r/x", b"once", QoS::ExactlyOnce, 7)).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(a)) if a.packet_id == pid(7)));
    assert_eq!(markers(&server), 1);
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, ack) =
        Raw::connect(addr, connect_packet(V5, "q2r-pub", false, expiring(3600))).await;
    assert!(ack.session_present);
    // The client did not see the PUBREC: it resends the PUBLISH, then completes.
    c.resend_qos2_and_release("q2r/x", b"once", 7).await;
    assert_eq!(markers(&server), 0, "settled by the PUBREL");
    // The exchange is over: a PUBREL for the id again is unknown.
    c.send(Packet::PubRel(PublishAck::new(pid(7)))).await;
    match c.recv().await {
        Some(Packet::PubComp(a)) => {
            assert_eq!(a.reason_code, ReasonCode::PacketIdentifierNotFound)
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    c.publish_acked("q2r/marker", b"end", 8).await;
    let (mut w, ack) =
        Raw::connect(addr, connect_packet(V5, "q2r-watch", false, expiring(3600))).await;
    assert!(ack.session_present);
    let m = w.publish_received().await;
    assert_eq!(&m.payload[..], b"once");
    w.puback(m.qos.packet_id().unwrap()).await;
    let m = w.publish_received().await;
    assert_eq!(&m.topic[..], "q2r/marker", "routed once");
    w.puback(m.qos.packet_id().unwrap()).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// 3.1.1 here (Clean Session 0), 5.0 in the other tests.
#[tokio::test]
async fn unacked_publishes_keep_their_packet_ids_across_a_restart() {
    let v = ProtocolVersion::V3_1_1;
    let dir = fresh_dir("ids-out");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, _) = Raw::connect(
        addr,
        connect_packet(v, "ids-sub", false, Default::default()),
    )
    .await;
    s.subscribe("ids/#", SubscriptionOptions::qos(QoS::ExactlyOnce))
        .await;
    let (mut p, _) =
        Raw::connect(addr, connect_packet(v, "ids-pub", true, Default::default())).await;
    // Two acknowledged first, so that the ids in question are not the first a fresh
    // connection would pick.
    for (i, body) in [&b"a1"[..], b"a2"].into_iter().enumerate() {
        p.publish_acked("ids/acked", body, i as u16 + 1).await;
        let m = s.publish_received().await;
        s.puback(m.qos.packet_id().unwrap()).await;
    }
    p.publish_acked("ids/q1", b"one", 3).await;
    p.publish_completed("ids/q2", b"two", 4).await;
    let mut sent = Vec::new();
    for want in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let m = s.publish_received().await;
        assert!(!m.dup);
        assert_eq!(m.qos.qos(), want);
        sent.push((m.topic.to_string(), m.qos.packet_id().unwrap()));
    }
    assert!(sent.iter().all(|(_, id)| id.get() > 2), "{sent:?}");
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, ack) = Raw::connect(
        addr,
        connect_packet(v, "ids-sub", false, Default::default()),
    )
    .await;
    assert!(ack.session_present);
    for want in &sent {
        let m = s.publish_received().await;
        assert!(m.dup, "{m:?}");
        assert_eq!(&(m.topic.to_string(), m.qos.packet_id().unwrap()), want);
    }
    // Both exchanges finish under those ids.
    s.puback(sent[0].1).await;
    s.send(Packet::PubRec(PublishAck::new(sent[1].1))).await;
    assert!(matches!(s.recv().await, Some(Packet::PubRel(a)) if a.packet_id == sent[1].1));
    s.send(Packet::PubComp(PublishAck::new(sent[1].1))).await;
    s.ping().await;
    // A new message gets an id of its own, not one of theirs.
    let (mut p, _) =
        Raw::connect(addr, connect_packet(v, "ids-pub", true, Default::default())).await;
    p.publish_acked("ids/new", b"new", 1).await;
    let m = s.publish_received().await;
    assert_eq!((&m.topic[..], m.dup), ("ids/new", false));
    s.puback(m.qos.packet_id().unwrap()).await;
    assert_eq!(markers(&server), 0, "all resent, PUBREL completed");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn pubrel_awaiting_pubcomp_is_resent_after_a_restart() {
    let dir = fresh_dir("rel-out");
    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, _) = Raw::connect(addr, connect_packet(V5, "rel-sub", true, expiring(3600))).await;
    s.subscribe("rel/#", SubscriptionOptions::qos(QoS::ExactlyOnce))
        .await;
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "rel-pub", true, expiring(0))).await;
    p.publish_completed("rel/x", b"exactly once", 1).await;
    let m = s.publish_received().await;
    let id = m.qos.packet_id().unwrap();
    s.send(Packet::PubRec(PublishAck::new(id))).await;
    assert!(matches!(s.recv().await, Some(Packet::PubRel(a)) if a.packet_id == id));
    assert_eq!(markers(&server), 1);
    // No PUBCOMP before the restart.
    server.shutdown().await;

    let server = server_at(&dir).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, ack) =
        Raw::connect(addr, connect_packet(V5, "rel-sub", false, expiring(3600))).await;
    assert!(ack.session_present);
    match s.recv().await {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, id),
        other => panic!("expected the PUBREL again, got {other:?}"),
    }
    s.send(Packet::PubComp(PublishAck::new(id))).await;
    s.ping().await;
    // The message itself is not sent again (the client owns it since its PUBREC).
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "rel-pub", true, expiring(0))).await;
    p.publish_completed("rel/marker", b"next", 1).await;
    let m = s.publish_received().await;
    assert_eq!((&m.topic[..], m.dup), ("rel/marker", false));
    assert_eq!(markers(&server), 0, "settled by the PUBCOMP");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
