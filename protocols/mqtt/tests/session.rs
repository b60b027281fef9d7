//! The session state machine driven directly: packets and a manual clock in, bytes out.

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_core::{Broker, BrokerConfig, ManualClock};
use ferromq_mqtt::packet::{
    Connect, Publish, PublishAck, QosPid, Subscribe, Subscription, SubscriptionOptions,
};
use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::session::{Flow, Session};
use ferromq_mqtt::shared::Shared;
use ferromq_mqtt::{Decoder, Limits, MqttConfig, Packet, ProtocolVersion, QoS, ReasonCode};

fn broker() -> Broker {
    let config = BrokerConfig {
        allow_anonymous: true,
        ..BrokerConfig::default()
    };
    Broker::new(config, Arc::new(ManualClock::new(1_000_000)))
}

fn connect(version: ProtocolVersion, id: &str, keep_alive_secs: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        version,
        clean_start: true,
        keep_alive_secs,
        properties: ConnectProperties::default(),
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
    }))
}

fn decode_all(version: ProtocolVersion, out: &mut BytesMut) -> Vec<Packet> {
    let mut d = Decoder::client(version, Limits::default());
    let mut v = Vec::new();
    while let Some(p) = d.decode(out).expect("server output decodes") {
        v.push(p);
    }
    assert!(out.is_empty());
    v
}

fn session(b: &Broker, shared: &Arc<Shared>) -> Session {
    Session::new(
        Arc::new(MqttConfig::default()),
        b.clone(),
        shared.clone(),
        None,
        0,
    )
    .0
}

fn pid(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).unwrap()
}

#[test]
fn keep_alive_expires_at_one_and_a_half_times() {
    let b = broker();
    let shared = Shared::new();
    let mut s = session(&b, &shared);
    let mut out = BytesMut::new();
    assert_eq!(
        s.on_packet(connect(ProtocolVersion::V5, "ka", 10), 0, &mut out),
        Flow::Continue
    );
    let p = decode_all(ProtocolVersion::V5, &mut out);
    assert!(matches!(&p[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::Success));
    assert_eq!(s.next_deadline_ms(), Some(15_000));
    assert_eq!(s.on_timer(14_999, &mut out), Flow::Continue);
    s.on_packet(Packet::PingReq, 10_000, &mut out);
    assert!(matches!(
        &decode_all(ProtocolVersion::V5, &mut out)[..],
        [Packet::PingResp]
    ));
    assert_eq!(s.on_timer(24_999, &mut out), Flow::Continue);
    assert_eq!(s.on_timer(25_000, &mut out), Flow::Close);
    let p = decode_all(ProtocolVersion::V5, &mut out);
    assert!(
        matches!(&p[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout)
    );
}

#[test]
fn connect_timeout_and_bad_password() {
    let b = broker();
    let shared = Shared::new();
    let mut s = session(&b, &shared);
    let mut out = BytesMut::new();
    assert_eq!(s.next_deadline_ms(), Some(10_000));
    assert_eq!(s.on_timer(10_000, &mut out), Flow::Close);
    assert!(out.is_empty());

    let mut s = session(&b, &shared);
    let Packet::Connect(mut c) = connect(ProtocolVersion::V5, "pw", 0) else {
        unreachable!()
    };
    c.username = Some("guest".into());
    c.password = Some(bytes::Bytes::from_static(b"nope"));
    assert_eq!(
        s.on_packet(Packet::Connect(c.clone()), 0, &mut out),
        Flow::Close
    );
    let p = decode_all(ProtocolVersion::V5, &mut out);
    assert!(
        matches!(&p[..], [Packet::ConnAck(a)] if a.reason_code == ReasonCode::BadUserNameOrPassword)
    );

    let mut s = session(&b, &shared);
    c.version = ProtocolVersion::V3_1_1;
    assert_eq!(s.on_packet(Packet::Connect(c), 0, &mut out), Flow::Close);
    assert_eq!(&out[..], b"\x20\x02\x00\x04");
}

#[test]
fn empty_client_id_is_assigned_and_takeover_kicks_the_first() {
    let b = broker();
    let shared = Shared::new();
    let mut out = BytesMut::new();
    let mut s = session(&b, &shared);
    s.on_packet(connect(ProtocolVersion::V5, "", 0), 0, &mut out);
    let p = decode_all(ProtocolVersion::V5, &mut out);
    let Packet::ConnAck(a) = &p[0] else {
        panic!("{p:?}")
    };
    let id = a
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned");
    assert!(id.starts_with("ferromq-"));

    let mut first = session(&b, &shared);
    first.on_packet(connect(ProtocolVersion::V5, "same", 0), 0, &mut out);
    let kick = first.kicked().unwrap();
    assert!(!kick.is_cancelled());
    let mut second = session(&b, &shared);
    second.on_packet(connect(ProtocolVersion::V5, "same", 0), 0, &mut out);
    assert!(kick.is_cancelled());
    out.clear();
    assert_eq!(first.on_taken_over(&mut out), Flow::Close);
    let p = decode_all(ProtocolVersion::V5, &mut out);
    assert!(
        matches!(&p[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver)
    );
    // The first one's end does not delete the session the second one uses.
    drop(first);
    assert!(b.vhost("/").unwrap().queue("mqtt-session-same").is_some());
}

#[test]
fn qos2_resend_is_not_routed_twice() {
    let b = broker();
    let shared = Shared::new();
    let mut out = BytesMut::new();
    let (mut sub, mut events) = Session::new(
        Arc::new(MqttConfig::default()),
        b.clone(),
        shared.clone(),
        None,
        0,
    );
    sub.on_packet(connect(ProtocolVersion::V3_1_1, "sub", 0), 0, &mut out);
    sub.on_packet(
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            filters: vec![Subscription {
                filter: "t/#".into(),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            }],
        }),
        0,
        &mut out,
    );
    out.clear();
    let mut p = session(&b, &shared);
    p.on_packet(connect(ProtocolVersion::V3_1_1, "pub", 0), 0, &mut out);
    out.clear();
    let mut publish = Publish::new("t/x", &b"one"[..]);
    publish.qos = QosPid::ExactlyOnce(pid(9));
    p.on_packet(Packet::Publish(publish.clone()), 0, &mut out);
    publish.dup = true;
    p.on_packet(Packet::Publish(publish), 0, &mut out);
    let acks = decode_all(ProtocolVersion::V3_1_1, &mut out);
    assert_eq!(acks.len(), 2);
    assert!(acks
        .iter()
        .all(|a| matches!(a, Packet::PubRec(r) if r.packet_id == pid(9))));
    p.on_packet(Packet::PubRel(PublishAck::new(pid(9))), 0, &mut out);
    assert!(matches!(
        &decode_all(ProtocolVersion::V3_1_1, &mut out)[..],
        [Packet::PubComp(_)]
    ));
    // Exactly one delivery reached the subscriber.
    let mut n = 0;
    while let Ok(ev) = events.try_recv() {
        sub.on_event(ev, &mut out);
        n += 1;
    }
    assert_eq!(n, 1);
    let d = decode_all(ProtocolVersion::V3_1_1, &mut out);
    let [Packet::Publish(got)] = &d[..] else {
        panic!("{d:?}")
    };
    assert_eq!(got.qos.qos(), QoS::ExactlyOnce);
    // PUBREC from the subscriber gets PUBREL.
    let id = got.qos.packet_id().unwrap();
    sub.on_packet(Packet::PubRec(PublishAck::new(id)), 0, &mut out);
    assert!(
        matches!(&decode_all(ProtocolVersion::V3_1_1, &mut out)[..], [Packet::PubRel(r)] if r.packet_id == id)
    );
    assert_eq!(sub.inflight_out(), 0);
}

#[test]
fn unknown_topic_alias_is_a_protocol_error() {
    let b = broker();
    let shared = Shared::new();
    let mut out = BytesMut::new();
    let mut s = session(&b, &shared);
    s.on_packet(connect(ProtocolVersion::V5, "alias", 0), 0, &mut out);
    out.clear();
    let mut p = Publish::new("", &b"x"[..]);
    p.properties.topic_alias = Some(pid(3));
    assert_eq!(
        s.on_packet(Packet::Publish(p.clone()), 0, &mut out),
        Flow::Close
    );
    let d = decode_all(ProtocolVersion::V5, &mut out);
    assert!(
        matches!(&d[..], [Packet::Disconnect(x)] if x.reason_code == ReasonCode::ProtocolError)
    );

    let mut s = session(&b, &shared);
    s.on_packet(connect(ProtocolVersion::V5, "alias2", 0), 0, &mut out);
    out.clear();
    p.properties.topic_alias = Some(pid(65));
    p.topic = "a".into();
    assert_eq!(s.on_packet(Packet::Publish(p), 0, &mut out), Flow::Close);
    let d = decode_all(ProtocolVersion::V5, &mut out);
    assert!(
        matches!(&d[..], [Packet::Disconnect(x)] if x.reason_code == ReasonCode::TopicAliasInvalid)
    );
}
