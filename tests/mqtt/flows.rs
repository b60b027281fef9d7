//! Protocol flows driven with the raw client: shared subscriptions, will delay, receive
//! maximum in both directions, takeover, QoS 2 and redelivery across reconnects.

use std::num::NonZeroU16;

use ferromq_mqtt::packet::{SubscriptionOptions, Will};
use ferromq_mqtt::properties::{ConnectProperties, WillProperties};
use ferromq_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::broker;
use crate::raw::{connect_packet, pid, publish, Raw};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn expiring(secs: u32) -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval_secs: Some(secs),
        ..Default::default()
    }
}

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions::qos(QoS::AtLeastOnce)
}

#[tokio::test]
async fn shared_subscription_spreads_and_hands_over_unacked_messages() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "sh-pub", true, expiring(0))).await;

    // Two members of group g: ten messages are spread over both, each delivered once.
    let (mut a, _) = Raw::connect(addr, connect_packet(V5, "sh-a", true, expiring(0))).await;
    let (mut b, _) = Raw::connect(addr, connect_packet(V5, "sh-b", true, expiring(0))).await;
    a.subscribe("$share/g/jobs/#", qos1()).await;
    b.subscribe("$share/g/jobs/#", qos1()).await;
    const BODIES: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    for (i, body) in BODIES.iter().enumerate() {
        p.publish_acked("jobs/x", body, i as u16 + 1).await;
    }
    let (mut from_a, mut from_b) = (Vec::new(), Vec::new());
    while from_a.len() + from_b.len() < BODIES.len() {
        tokio::select! {
            m = a.publish_received() => {
                a.puback(m.qos.packet_id().unwrap()).await;
                from_a.push(m.payload);
            }
            m = b.publish_received() => {
                b.puback(m.qos.packet_id().unwrap()).await;
                from_b.push(m.payload);
            }
        }
    }
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "{from_a:?} {from_b:?}"
    );
    let mut all: Vec<_> = from_a.iter().chain(&from_b).map(|b| b.to_vec()).collect();
    all.sort();
    assert_eq!(all, BODIES.iter().map(|b| b.to_vec()).collect::<Vec<_>>());

    // A member that leaves with unacknowledged messages: they go to the other member.
    let (mut c, _) = Raw::connect(addr, connect_packet(V5, "sh-c", true, expiring(0))).await;
    c.subscribe("$share/h/work", qos1()).await;
    for (i, body) in [&b"w1"[..], b"w2", b"w3"].iter().enumerate() {
        p.publish_acked("work", body, i as u16 + 20).await;
    }
    for _ in 0..3 {
        c.publish_received().await; // and never acknowledged
    }
    let (mut d, _) = Raw::connect(addr, connect_packet(V5, "sh-d", true, expiring(0))).await;
    d.subscribe("$share/h/work", qos1()).await;
    drop(c);
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = d.publish_received().await;
        assert!(m.dup, "a redelivery");
        got.push(m.payload.to_vec());
    }
    got.sort();
    assert_eq!(got, vec![b"w1".to_vec(), b"w2".to_vec(), b"w3".to_vec()]);
    server.shutdown().await;
}

fn will_connect(id: &str, delay_secs: u32) -> ferromq_mqtt::packet::Connect {
    let mut c = connect_packet(V5, id, true, expiring(60));
    c.will = Some(Will {
        topic: format!("wd/{id}").into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval_secs: Some(delay_secs),
            ..Default::default()
        },
    });
    c
}

#[tokio::test]
async fn will_delay_is_honoured_and_cancelled_by_a_reconnect() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut watcher, _) =
        Raw::connect(addr, connect_packet(V5, "wd-watch", true, expiring(0))).await;
    watcher.subscribe("wd/#", qos1()).await;

    // Dropped without DISCONNECT: the will comes, after its delay.
    let (w, _) = Raw::connect(addr, will_connect("w1", 1)).await;
    let dropped_at = std::time::Instant::now();
    drop(w);
    let m = watcher.publish_received().await;
    assert_eq!((&m.topic[..], &m.payload[..]), ("wd/w1", &b"gone"[..]));
    assert!(dropped_at.elapsed() >= std::time::Duration::from_millis(900));
    watcher.puback(m.qos.packet_id().unwrap()).await;

    // Resumed within the delay: no will.
    let (w, _) = Raw::connect(addr, will_connect("w2", 1)).await;
    drop(w);
    let (_w, ack) = Raw::connect(addr, connect_packet(V5, "w2", false, expiring(60))).await;
    assert!(ack.session_present);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "wd-pub", true, expiring(0))).await;
    p.publish_acked("wd/marker", b"after the delay", 1).await;
    let m = watcher.publish_received().await;
    assert_eq!(
        &m.topic[..],
        "wd/marker",
        "the cancelled will was not published"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_past_our_receive_maximum_is_disconnected() {
    let server = broker(|c| c.mqtt.inflight_in_max = 2).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut c, ack) = Raw::connect(addr, connect_packet(V5, "rm-in", true, expiring(0))).await;
    assert_eq!(ack.properties.receive_maximum, NonZeroU16::new(2));
    // QoS 2 exchanges stay open until PUBREL: the third one is one too many.
    for id in 1..=3 {
        c.send(publish("rm/in", b"x", QoS::ExactlyOnce, id)).await;
    }
    for id in 1..=2 {
        assert!(matches!(c.recv().await, Some(Packet::PubRec(a)) if a.packet_id == pid(id)));
    }
    match c.recv().await {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, ReasonCode::ReceiveMaximumExceeded)
        }
        other => panic!("expected DISCONNECT 0x93, got {other:?}"),
    }
    assert!(c.recv().await.is_none());
    // Nobody else noticed.
    let (mut ok, _) = Raw::connect(addr, connect_packet(V5, "rm-ok", true, expiring(0))).await;
    ok.publish_acked("rm/in", b"y", 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn broker_respects_the_client_receive_maximum() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let props = ConnectProperties {
        receive_maximum: NonZeroU16::new(2),
        ..Default::default()
    };
    let (mut s, _) = Raw::connect(addr, connect_packet(V5, "rm-out", true, props)).await;
    s.subscribe("rm/out", qos1()).await;
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "rm-pub", true, expiring(0))).await;
    for id in 1..=5 {
        p.publish_acked("rm/out", b"m", id).await;
    }
    let first = s.publish_received().await;
    let second = s.publish_received().await;
    s.expect_silence(300).await;
    s.puback(first.qos.packet_id().unwrap()).await;
    let third = s.publish_received().await;
    s.expect_silence(300).await;
    for m in [second, third] {
        s.puback(m.qos.packet_id().unwrap()).await;
    }
    for _ in 0..2 {
        let m = s.publish_received().await;
        s.puback(m.qos.packet_id().unwrap()).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn takeover_sends_session_taken_over() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut first, _) = Raw::connect(addr, connect_packet(V5, "tk", true, expiring(0))).await;
    let (_second, ack) = Raw::connect(addr, connect_packet(V5, "tk", true, expiring(0))).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    match first.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, ReasonCode::SessionTakenOver),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert!(first.recv().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn incoming_qos2_is_not_routed_twice_across_a_reconnect() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut w, _) = Raw::connect(addr, connect_packet(V5, "q2-watch", true, expiring(0))).await;
    w.subscribe("q2/#", qos1()).await;
    let (mut c, _) = Raw::connect(addr, connect_packet(V5, "q2-pub", true, expiring(60))).await;
    c.send(publish("q2/x", b"once", QoS::ExactlyOnce, 7)).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(a)) if a.packet_id == pid(7)));
    drop(c);
    let (mut c, ack) = Raw::connect(addr, connect_packet(V5, "q2-pub", false, expiring(60))).await;
    assert!(ack.session_present);
    // The client did not see the PUBREC: it resends the PUBLISH, then completes.
    c.resend_qos2_and_release("q2/x", b"once", 7).await;
    c.publish_acked("q2/marker", b"end", 8).await;
    let m = w.publish_received().await;
    assert_eq!(&m.payload[..], b"once");
    w.puback(m.qos.packet_id().unwrap()).await;
    let m = w.publish_received().await;
    assert_eq!(&m.topic[..], "q2/marker", "routed once");
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_resends_with_dup_and_the_original_packet_ids() {
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, _) = Raw::connect(addr, connect_packet(V5, "orig", true, expiring(60))).await;
    s.subscribe("og/#", qos1()).await;
    let (mut p, _) = Raw::connect(addr, connect_packet(V5, "og-pub", true, expiring(0))).await;
    for (i, t) in ["og/1", "og/2", "og/3"].iter().enumerate() {
        p.publish_acked(t, b"m", i as u16 + 1).await;
    }
    let mut sent = Vec::new();
    for _ in 0..3 {
        let m = s.publish_received().await;
        assert!(!m.dup);
        sent.push((m.topic.to_string(), m.qos.packet_id().unwrap()));
    }
    s.puback(sent[1].1).await; // og/2 only
    s.ping().await;
    drop(s);
    let (mut s, ack) = Raw::connect(addr, connect_packet(V5, "orig", false, expiring(60))).await;
    assert!(ack.session_present);
    for want in [&sent[0], &sent[2]] {
        let m = s.publish_received().await;
        assert!(m.dup);
        assert_eq!(
            (m.topic.to_string(), m.qos.packet_id().unwrap()),
            want.clone()
        );
        s.puback(want.1).await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn offline_sessions_are_bounded_drop_oldest_and_count_limited() {
    let server = broker(|c| {
        c.mqtt.session_messages_max = 2;
        c.mqtt.persistent_sessions_max = 1;
    })
    .await;
    let addr = server.mqtt_addr().unwrap();
    let (mut s, _) = Raw::connect(addr, connect_packet(V5, "bounded", true, expiring(60))).await;
    s.subscribe("bd/#", qos1()).await;
    drop(s);
    // A second persistent session is one too many; a clean one is fine.
    let (_, ack) = Raw::connect(addr, connect_packet(V5, "second", true, expiring(60))).await;
    assert_eq!(ack.reason_code, ReasonCode::QuotaExceeded);
    let (mut p, ack) = Raw::connect(addr, connect_packet(V5, "bd-pub", true, expiring(0))).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    for (i, body) in [&b"1"[..], b"2", b"3", b"4"].iter().enumerate() {
        p.publish_acked("bd/x", body, i as u16 + 1).await;
    }
    // Drop-head: the two newest are kept.
    let (mut s, ack) = Raw::connect(addr, connect_packet(V5, "bounded", false, expiring(60))).await;
    assert!(ack.session_present);
    for want in [&b"3"[..], b"4"] {
        let m = s.publish_received().await;
        assert_eq!(&m.payload[..], want);
        s.puback(m.qos.packet_id().unwrap()).await;
    }
    s.expect_silence(300).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_its_will_published() {
    static BIG: [u8; 64 * 1024] = [7; 64 * 1024];
    let server = broker(|c| {
        c.mqtt.write_stall_timeout_ms = 300;
        c.mqtt.deadline_check_interval_ms = 50;
    })
    .await;
    let addr = server.mqtt_addr().unwrap();
    let (mut watcher, _) =
        Raw::connect(addr, connect_packet(V5, "ws-watch", true, expiring(0))).await;
    watcher.subscribe("ws/#", qos1()).await;
    let mut c = connect_packet(V5, "ws-stalled", true, expiring(0));
    c.will = Some(Will {
        topic: "ws/stalled".into(),
        payload: bytes::Bytes::from_static(b"stalled"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let (mut stalled, _) = Raw::connect(addr, c).await;
    stalled
        .subscribe("flood", SubscriptionOptions::qos(QoS::AtMostOnce))
        .await;
    // From here on it reads nothing; the broker's writes to it stall once the socket
    // buffers are full.
    let (mut producer, _) =
        Raw::connect(addr, connect_packet(V5, "ws-pub", true, expiring(0))).await;
    let flood = async {
        loop {
            producer
                .send(publish("flood", &BIG, QoS::AtMostOnce, 0))
                .await;
        }
    };
    let will = tokio::select! {
        m = watcher.publish_received() => m,
        _ = flood => unreachable!("the flood never ends"),
    };
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        ("ws/stalled", &b"stalled"[..])
    );
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test]
async fn a_socket_that_sends_no_connect_is_closed_after_the_connect_timeout() {
    use tokio::io::AsyncReadExt;
    let server = broker(|c| {
        c.mqtt.connect_timeout_ms = 300;
        c.mqtt.deadline_check_interval_ms = 50;
    })
    .await;
    let addr = server.mqtt_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(crate::common::WAIT, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "{waited:?}"
    );
    server.shutdown().await;
}
