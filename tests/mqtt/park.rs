//! Idle connections in the parking lot (the MQTT crate's `park.rs`): PINGREQs answered
//! there, and everything else (packets, Keep Alive, an abrupt close, a takeover, a split
//! PINGREQ, shutdown) handled as by a connection that never parked.

use std::time::Duration;

use ferromq::Server;
use ferromq_mqtt::packet::{SubscriptionOptions, Will};
use ferromq_mqtt::properties::{ConnectProperties, WillProperties};
use ferromq_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{broker, WAIT};
use crate::raw::{connect_packet, publish, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A broker whose idle connections park after 100 ms (seen within a 20 ms tick).
async fn parking_broker() -> Server {
    broker(|c| {
        c.mqtt.park_after_ms = 100;
        c.mqtt.deadline_check_interval_ms = 20;
    })
    .await
}

/// Waits (at most WAIT) until `n` connections are parked.
async fn parked(server: &Server, n: usize) {
    let shared = server.mqtt_shared();
    let waited = tokio::time::timeout(WAIT, async {
        while shared.parked_len() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{} parked, expected {n}",
        shared.parked_len()
    );
}

fn with_will(mut c: ferromq_mqtt::packet::Connect, topic: &str) -> ferromq_mqtt::packet::Connect {
    c.will = Some(Will {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c
}

/// A subscriber (never parked: it has a consumer) to `filter`.
async fn watcher(server: &Server, id: &str, filter: &str) -> Raw {
    let addr = server.mqtt_addr().unwrap();
    let (mut w, _) = Raw::connect(addr, connect_packet(V311, id, true, Default::default())).await;
    w.subscribe(filter, SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await;
    w
}

#[tokio::test]
async fn a_parked_connection_answers_pingreqs_and_stays_parked() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, _) = Raw::connect(
        addr,
        connect_packet(V311, "pk-ping", true, Default::default()),
    )
    .await;
    parked(&server, 1).await;
    for _ in 0..3 {
        c.ping().await;
        // Answered by the lot: a connection that left it would be counted out until it
        // parks again, at least 100 ms later.
        assert_eq!(server.mqtt_shared().parked_len(), 1);
    }
    // Two PINGREQs in one segment: two PINGRESPs, still parked.
    c.send_bytes(&[0xc0, 0x00, 0xc0, 0x00]).await;
    for _ in 0..2 {
        assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    }
    assert_eq!(server.mqtt_shared().parked_len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_publishes_and_subscribes() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let mut w = watcher(&server, "pk-watch", "pk/#").await;
    let (mut c, _) = Raw::connect(
        addr,
        connect_packet(V5, "pk-pubsub", true, Default::default()),
    )
    .await;
    parked(&server, 1).await;

    // QoS 1 and QoS 0 publishes from the parked connection.
    c.publish_acked("pk/one", b"1", 1).await;
    let m = w.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("pk/one", &b"1"[..]));
    w.puback(m.qos.packet_id().unwrap()).await;
    parked(&server, 1).await;
    c.send(publish("pk/zero", b"0", QoS::AtMostOnce, 0)).await;
    let m = w.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("pk/zero", &b"0"[..]));

    // Parked again, it subscribes; with a consumer it stays out of the lot.
    parked(&server, 1).await;
    c.subscribe("back/#", SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await;
    w.publish_acked("back/x", b"b", 1).await;
    let m = c.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("back/x", &b"b"[..]));
    c.puback(m.qos.packet_id().unwrap()).await;
    c.ping().await;
    assert_eq!(server.mqtt_shared().parked_len(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn keep_alive_expiry_while_parked_closes_it_and_publishes_its_will() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let mut w = watcher(&server, "pk-ka-watch", "will/#").await;
    let mut c = with_will(
        connect_packet(V5, "pk-ka", true, Default::default()),
        "will/ka",
    );
    c.keep_alive_secs = 1;
    let (mut c, _) = Raw::connect(addr, c).await;
    parked(&server, 1).await;
    // Silent past 1.5 s: DISCONNECT 0x8D, then the end, and the Will.
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::KeepAliveTimeout),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    assert!(c.recv().await.is_none());
    let m = w.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("will/ka", &b"gone"[..]));
    assert_eq!(server.mqtt_shared().parked_len(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn an_abrupt_close_while_parked_publishes_the_will() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let mut w = watcher(&server, "pk-rst-watch", "will/#").await;
    let c = with_will(
        connect_packet(V311, "pk-rst", true, Default::default()),
        "will/rst",
    );
    let (c, _) = Raw::connect(addr, c).await;
    parked(&server, 1).await;
    drop(c);
    let m = w.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("will/rst", &b"gone"[..]));
    parked(&server, 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_takeover_while_parked_closes_the_old_connection() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let (mut first, _) =
        Raw::connect(addr, connect_packet(V5, "pk-tk", true, Default::default())).await;
    parked(&server, 1).await;
    let (mut second, ack) =
        Raw::connect(addr, connect_packet(V5, "pk-tk", true, Default::default())).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    match first.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SessionTakenOver),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert!(first.recv().await.is_none());
    second.ping().await;
    second.publish_acked("tk/x", b"x", 1).await;
    // The new connection parks in its turn and still answers.
    parked(&server, 1).await;
    second.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_with_parked_connections_ends_promptly_with_a_goodbye() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let mut clients = Vec::new();
    for i in 0..20 {
        let id = format!("pk-down-{i}");
        let (c, _) = Raw::connect(addr, connect_packet(V5, &id, true, Default::default())).await;
        clients.push(c);
    }
    parked(&server, 20).await;
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown ends");
    for c in &mut clients {
        match c.recv().await {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown)
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
        assert!(c.recv().await.is_none());
    }
}

#[tokio::test]
async fn a_pingreq_split_over_two_segments_while_parked_is_answered() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, _) = Raw::connect(
        addr,
        connect_packet(V311, "pk-split", true, Default::default()),
    )
    .await;
    parked(&server, 1).await;
    c.send_bytes(&[0xc0]).await;
    // The first byte alone takes the connection out of the lot; the second arrives after.
    parked(&server, 0).await;
    c.send_bytes(&[0x00]).await;
    assert!(matches!(c.recv().await, Some(Packet::PingResp)));
    // And it parks again.
    parked(&server, 1).await;
    c.ping().await;
    server.shutdown().await;
}

#[tokio::test]
async fn park_after_zero_never_parks() {
    let server = broker(|c| {
        c.mqtt.park_after_ms = 0;
        c.mqtt.deadline_check_interval_ms = 20;
    })
    .await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, _) = Raw::connect(
        addr,
        connect_packet(V311, "pk-never", true, Default::default()),
    )
    .await;
    // Checking that something does not happen: a slow machine can only make this pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.ping().await;
    assert_eq!(server.mqtt_shared().parked_len(), 0);
    server.shutdown().await;
}

/// A parked session keeps what its CONNECT negotiated (here the client's Maximum Packet
/// Size).
#[tokio::test]
async fn a_parked_session_keeps_its_negotiated_limits() {
    let server = parking_broker().await;
    let addr = server.mqtt_addr().unwrap();
    let props = ConnectProperties {
        maximum_packet_size_bytes: std::num::NonZeroU32::new(1024),
        ..Default::default()
    };
    let (mut c, _) = Raw::connect(addr, connect_packet(V5, "pk-props", true, props)).await;
    parked(&server, 1).await;
    // Its limit survives parking: a larger delivery is not sent.
    c.subscribe("big/#", SubscriptionOptions::qos(QoS::AtMostOnce))
        .await;
    static BIG: [u8; 2048] = [1; 2048];
    let mut w = watcher(&server, "pk-props-pub", "none").await;
    w.send(publish("big/x", &BIG, QoS::AtMostOnce, 0)).await;
    w.send(publish("big/y", b"small", QoS::AtMostOnce, 0)).await;
    let m = c.publish_received().await;
    assert_eq!(&m.topic[..], "big/y");
    server.shutdown().await;
}

/// With `park_after_connect_ms` set, a fresh connection keeps its task for that long;
/// after other packets, `park_after_ms` applies.
#[tokio::test]
async fn park_after_connect_holds_back_the_first_park_only() {
    let server = broker(|c| {
        c.mqtt.park_after_ms = 100;
        c.mqtt.park_after_connect_ms = 60_000;
        c.mqtt.deadline_check_interval_ms = 20;
    })
    .await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, _) = Raw::connect(
        addr,
        connect_packet(V311, "pk-late", true, Default::default()),
    )
    .await;
    // Checking that something does not happen: a slow machine can only make this pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.ping().await;
    assert_eq!(server.mqtt_shared().parked_len(), 0);
    // A publish ends the first quiet period; the next one is 100 ms.
    c.publish_acked("late/x", b"x", 1).await;
    parked(&server, 1).await;
    c.ping().await;
    server.shutdown().await;
}
