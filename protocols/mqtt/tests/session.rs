//! The session state machine driven directly: packets and a manual clock in, bytes out.

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_core::{Broker, BrokerConfig, ManualClock};
use ferromq_mqtt::packet::{
    Connect, Publish, PublishAck, QosPid, Subscribe, Subscription, SubscriptionOptions,
};
use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::session::{Flow, Session};
use ferromq_mqtt::shared::{QosState, Shared, Unacked};
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
    // A session that ends with its connection opens its queue at its first subscription.
    assert!(b.vhost("/").unwrap().queue("mqtt-session-same").is_none());
    second.on_packet(subscribe("s/#", QoS::AtMostOnce), 0, &mut out);
    assert!(b.vhost("/").unwrap().queue("mqtt-session-same").is_some());
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
    let mut sub = session(&b, &shared);
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
    let mut events = sub.take_events().expect("a subscription makes the channel");
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

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![Subscription {
            filter: filter.into(),
            options: SubscriptionOptions::qos(qos),
        }],
    })
}

/// Hands every queued delivery to the session; returns what it wrote.
fn drain(
    s: &mut Session,
    events: &mut ferromq_core::EventReceiver,
    version: ProtocolVersion,
) -> Vec<Packet> {
    let mut out = BytesMut::new();
    while let Ok(ev) = events.try_recv() {
        s.on_event(ev, &mut out);
    }
    decode_all(version, &mut out)
}

#[test]
fn reconnect_resends_unacknowledged_publishes_under_their_original_ids() {
    let v = ProtocolVersion::V3_1_1;
    let b = broker();
    let shared = Shared::new();
    let cfg = Arc::new(MqttConfig::default());
    let mut out = BytesMut::new();
    let persistent = |id: &str| {
        let Packet::Connect(mut c) = connect(v, id, 0) else {
            unreachable!()
        };
        c.clean_start = false;
        Packet::Connect(c)
    };
    let mut sub = Session::new(cfg.clone(), b.clone(), shared.clone(), None, 0);
    sub.on_packet(persistent("keeper"), 0, &mut out);
    let mut events = sub
        .take_events()
        .expect("a persistent session consumes at CONNECT");
    sub.on_packet(subscribe("r/#", QoS::ExactlyOnce), 0, &mut out);
    out.clear();
    let mut p = session(&b, &shared);
    p.on_packet(connect(v, "sender", 0), 0, &mut out);
    // Two acknowledged deliveries first, so that the next ids are not where a fresh
    // connection's counter starts.
    for i in [10, 11] {
        let mut m = Publish::new("r/0", &b"w"[..]);
        m.qos = QosPid::AtLeastOnce(pid(i));
        p.on_packet(Packet::Publish(m), 0, &mut out);
    }
    for w in drain(&mut sub, &mut events, v) {
        let Packet::Publish(w) = w else { panic!() };
        sub.on_packet(
            Packet::PubAck(PublishAck::new(w.qos.packet_id().unwrap())),
            0,
            &mut out,
        );
    }
    assert_eq!(sub.inflight_out(), 0);
    for (i, qos) in [
        (1u16, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
        (3, QoS::ExactlyOnce),
    ] {
        let mut m = Publish::new(format!("r/{i}").as_str(), &b"x"[..]);
        m.qos = if qos == QoS::AtLeastOnce {
            QosPid::AtLeastOnce(pid(i))
        } else {
            QosPid::ExactlyOnce(pid(i))
        };
        p.on_packet(Packet::Publish(m), 0, &mut out);
    }
    out.clear();
    let first = drain(&mut sub, &mut events, v);
    let ids: Vec<(String, u16, bool)> = first
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.topic.to_string(), p.qos.packet_id().unwrap().get(), p.dup),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|(_, id, dup)| !dup && *id > 2));
    // r/2 gets its PUBREC (PUBREL follows, PUBCOMP never comes); r/1 and r/3 nothing.
    let (_, id2, _) = ids.iter().find(|(t, _, _)| t == "r/2").unwrap();
    sub.on_packet(Packet::PubRec(PublishAck::new(pid(*id2))), 0, &mut out);
    out.clear();
    drop(sub);
    drop(events);

    // A message published while the session is away gets an id none of those hold.
    let mut m = Publish::new("r/4", &b"x"[..]);
    m.qos = QosPid::AtLeastOnce(pid(4));
    p.on_packet(Packet::Publish(m), 0, &mut out);
    out.clear();

    let mut sub = Session::new(cfg, b.clone(), shared.clone(), None, 0);
    sub.on_packet(persistent("keeper"), 0, &mut out);
    let mut events = sub
        .take_events()
        .expect("a persistent session consumes at CONNECT");
    let d = decode_all(v, &mut out);
    assert!(
        matches!(&d[..], [Packet::ConnAck(a), Packet::PubRel(r)] if a.session_present && r.packet_id == pid(*id2)),
        "{d:?}"
    );
    let again = drain(&mut sub, &mut events, v);
    let mut resent = Vec::new();
    for p in &again {
        let Packet::Publish(p) = p else {
            panic!("{p:?}")
        };
        resent.push((p.topic.to_string(), p.qos.packet_id().unwrap().get(), p.dup));
    }
    for t in ["r/1", "r/3"] {
        let before = ids.iter().find(|(x, _, _)| x == t).unwrap();
        let after = resent.iter().find(|(x, _, _)| x == t).unwrap();
        assert_eq!(after.1, before.1, "{t} keeps its packet id");
        assert!(after.2, "{t} is resent with DUP");
    }
    let fresh = resent.iter().find(|(x, _, _)| x == "r/4").unwrap();
    assert!(!fresh.2);
    assert!(
        ids.iter().all(|(_, id, _)| *id != fresh.1),
        "a new message does not reuse an id still in flight: {resent:?} {ids:?}"
    );
    assert_eq!(resent.len(), 3, "r/2 was acknowledged: {resent:?}");
}

#[test]
fn sweep_forgets_offline_sessions_whose_queue_is_gone() {
    let v = ProtocolVersion::V5;
    let b = broker();
    let shared = Shared::new();
    let mut out = BytesMut::new();
    let persistent = |id: &str| {
        let Packet::Connect(mut c) = connect(v, id, 0) else {
            unreachable!()
        };
        c.properties.session_expiry_interval_secs = Some(60);
        Packet::Connect(c)
    };
    let mut away = session(&b, &shared);
    away.on_packet(persistent("away"), 0, &mut out);
    drop(away);
    let mut kept = session(&b, &shared);
    kept.on_packet(persistent("kept"), 0, &mut out);
    drop(kept);
    let mut online = session(&b, &shared);
    online.on_packet(persistent("online"), 0, &mut out);
    assert_eq!(shared.sessions_len(), 3);
    let vhost = b.vhost("/").unwrap();
    vhost
        .delete_queue("mqtt-session-away", false, false, 0)
        .unwrap();
    vhost
        .delete_queue("mqtt-session-online", false, false, 0)
        .unwrap();
    let exists = |id: &str| vhost.queue(&format!("mqtt-session-{id}")).is_some();
    // Only the offline session whose queue is gone: "online" is still connected.
    assert_eq!(shared.sweep(exists), 1);
    assert_eq!(shared.sessions_len(), 2);
    assert_eq!(shared.sweep(exists), 0);
}

#[test]
fn a_clean_start_discards_the_previous_qos_state() {
    let shared = Shared::new();
    let id: bytestring::ByteString = "c".into();
    let first = shared.claim(&id, false);
    assert!(first.state.is_none(), "made when first needed");
    let state = shared.qos_state("c", first.generation);
    state.lock().unwrap().incoming.insert(5, None);
    assert!(shared.release("c", first.generation, true));
    let resumed = shared.claim(&id, false);
    let kept = resumed
        .state
        .as_ref()
        .expect("kept for the next connection");
    assert!(Arc::ptr_eq(&state, kept), "resumed as is");
    assert!(shared.release("c", resumed.generation, true));
    let clean = shared.claim(&id, true);
    assert!(clean.state.is_none());
    let old = state.lock().unwrap();
    // A connection still holding the old state (taken over) can record nothing more.
    assert!(old.discarded && old.incoming.is_empty());
    assert!(
        !shared
            .qos_state("c", clean.generation)
            .lock()
            .unwrap()
            .discarded
    );
    // One that was taken over before it made its state gets a discarded one.
    assert!(
        shared
            .qos_state("c", first.generation)
            .lock()
            .unwrap()
            .discarded
    );
}

#[test]
fn after_a_restart_an_unacked_message_is_known_by_its_persistent_id() {
    let mut st = QosState::default();
    st.unacked.push(Unacked {
        id: 9,
        message: None,
        persistent_id: 42,
    });
    let requeued = Arc::new(ferromq_core::Message::new(
        "amq.topic",
        "k",
        bytes::Bytes::from_static(b"body"),
    ));
    assert_eq!(
        st.take_unacked(&requeued, 0),
        None,
        "not journaled: unknown"
    );
    assert_eq!(st.take_unacked(&requeued, 41), None);
    assert_eq!(st.take_unacked(&requeued, 42), Some(9));
    assert!(st.unacked.is_empty() && !st.holds_id(9));
}
