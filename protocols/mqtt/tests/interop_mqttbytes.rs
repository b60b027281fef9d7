//! Cross-checks against a third-party codec, the `mqttbytes` crate (the
//! rumqtt project's): what it encodes we decode to the same meaning, and
//! what we encode it reads back. This guards the golden packets against a
//! misreading of the specification shared by the tests and the code.

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use common::*;
use ferromq_mqtt::packet::*;
use ferromq_mqtt::properties::*;
use ferromq_mqtt::{Decoder, Limits, Packet, ProtocolVersion, ReasonCode, Role};
use mqttbytes::{v4, v5, QoS as TheirQoS};

use ProtocolVersion::{V3_1_1, V5};

/// Decodes all of `bytes` with a decoder for `role`/`v`.
fn ours(role: Role, v: ProtocolVersion, bytes: &[u8]) -> Packet {
    decode_one(role, v, bytes).unwrap_or_else(|e| panic!("{e}: {bytes:02x?}"))
}

fn ours_connect(bytes: &[u8]) -> Connect {
    let mut dec = Decoder::server(Limits::default());
    match dec.decode(&mut BytesMut::from(bytes)) {
        Ok(Some(Packet::Connect(c))) => *c,
        other => panic!("{other:?}"),
    }
}

// ---- MQTT 3.1.1 ----------------------------------------------------------------------

#[test]
fn v4_connect_from_mqttbytes() {
    let mut c = v4::Connect::new("client-7");
    c.keep_alive = 30;
    c.clean_session = false;
    c.last_will = Some(v4::LastWill::new(
        "lw/t",
        "bye",
        TheirQoS::AtLeastOnce,
        true,
    ));
    c.set_login("alice", "s3cret");
    let mut buf = BytesMut::new();
    c.write(&mut buf).unwrap();
    let got = ours_connect(&buf);
    assert_eq!(got.version, V3_1_1);
    assert!(!got.clean_start);
    assert_eq!(got.keep_alive_secs, 30);
    assert_eq!(got.client_id, "client-7");
    let will = got.will.as_ref().unwrap();
    assert_eq!((&will.topic[..], &will.payload[..]), ("lw/t", &b"bye"[..]));
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(got.username.as_deref(), Some("alice"));
    assert_eq!(got.password.as_deref(), Some(&b"s3cret"[..]));
    // And our encoding of it is byte for byte theirs.
    assert_eq!(encode(V3_1_1, &Packet::Connect(Box::new(got))), &buf[..]);
}

#[test]
fn v4_publish_both_ways() {
    let mut p = v4::Publish::new("a/b/c", TheirQoS::ExactlyOnce, vec![1, 2, 3]);
    p.pkid = 513;
    p.retain = true;
    p.dup = true;
    let mut buf = BytesMut::new();
    p.write(&mut buf).unwrap();
    let expected = Publish {
        dup: true,
        qos: QosPid::ExactlyOnce(pid(513)),
        retain: true,
        topic: "a/b/c".into(),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(&[1, 2, 3]),
    };
    for role in [Role::Server, Role::Client] {
        assert_eq!(ours(role, V3_1_1, &buf), Packet::Publish(expected.clone()));
    }
    let mut mine = BytesMut::from(&encode(V3_1_1, &Packet::Publish(expected))[..]);
    assert_eq!(v4::read(&mut mine, 1024).unwrap(), v4::Packet::Publish(p));
}

#[test]
fn v4_subscribe_unsubscribe_from_mqttbytes() {
    let mut s = v4::Subscribe::new("x/+", TheirQoS::AtLeastOnce);
    s.add("y/#".into(), TheirQoS::ExactlyOnce);
    s.pkid = 9;
    let mut buf = BytesMut::new();
    s.write(&mut buf).unwrap();
    let Packet::Subscribe(got) = ours(Role::Server, V3_1_1, &buf) else {
        panic!()
    };
    assert_eq!(got.packet_id, pid(9));
    let filters: Vec<_> = got
        .filters
        .iter()
        .map(|f| (&f.filter[..], f.options.qos))
        .collect();
    assert_eq!(
        filters,
        [("x/+", QoS::AtLeastOnce), ("y/#", QoS::ExactlyOnce)]
    );

    let mut u = v4::Unsubscribe::new("x/+");
    u.pkid = 10;
    let mut buf = BytesMut::new();
    u.write(&mut buf).unwrap();
    let Packet::Unsubscribe(got) = ours(Role::Server, V3_1_1, &buf) else {
        panic!()
    };
    assert_eq!(got.filters, ["x/+"]);
}

#[test]
fn v4_server_packets_to_mqttbytes() {
    let read = |p: Packet| {
        let mut buf = BytesMut::from(&encode(V3_1_1, &p)[..]);
        v4::read(&mut buf, 1024).unwrap()
    };
    let mut refused = ConnAck::accepted(false);
    refused.reason_code = ReasonCode::BadUserNameOrPassword;
    assert_eq!(
        read(Packet::ConnAck(refused)),
        v4::Packet::ConnAck(v4::ConnAck::new(
            v4::ConnectReturnCode::BadUserNamePassword,
            false
        ))
    );
    assert_eq!(
        read(Packet::ConnAck(ConnAck::accepted(true))),
        v4::Packet::ConnAck(v4::ConnAck::new(v4::ConnectReturnCode::Success, true))
    );
    let suback = SubAck {
        packet_id: pid(4),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GrantedQos1, ReasonCode::NotAuthorized],
    };
    assert_eq!(
        read(Packet::SubAck(suback)),
        v4::Packet::SubAck(v4::SubAck::new(
            4,
            vec![
                v4::SubscribeReasonCode::Success(TheirQoS::AtLeastOnce),
                v4::SubscribeReasonCode::Failure
            ]
        ))
    );
    assert_eq!(
        read(Packet::PubAck(PublishAck::new(pid(77)))),
        v4::Packet::PubAck(v4::PubAck::new(77))
    );
    assert_eq!(read(Packet::PingResp), v4::Packet::PingResp);
}

// ---- MQTT 5.0 ----------------------------------------------------------------------------

#[test]
fn v5_connect_from_mqttbytes() {
    let mut c = v5::Connect::new("dev-1");
    c.keep_alive = 45;
    c.properties = Some(v5::ConnectProperties {
        session_expiry_interval: Some(300),
        receive_maximum: Some(16),
        max_packet_size: Some(1 << 20),
        topic_alias_max: Some(8),
        request_response_info: Some(1),
        request_problem_info: Some(0),
        user_properties: vec![("region".into(), "eu".into())],
        authentication_method: Some("PLAIN".into()),
        authentication_data: Some(Bytes::from_static(b"\x00a\x00b")),
    });
    let mut will = v5::LastWill::new("status/dev-1", "offline", TheirQoS::AtLeastOnce, true);
    will.properties = Some(v5::WillProperties {
        delay_interval: Some(10),
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies".into()),
        correlation_data: Some(Bytes::from_static(b"c1")),
        user_properties: vec![("k".into(), "v".into())],
    });
    c.last_will = Some(will);
    c.set_login("bob", "pw");
    let mut buf = BytesMut::new();
    c.write(&mut buf).unwrap();

    let got = ours_connect(&buf);
    assert_eq!(got.version, V5);
    assert_eq!(
        got.properties,
        ConnectProperties {
            session_expiry_interval_secs: Some(300),
            receive_maximum: NonZeroU16::new(16),
            maximum_packet_size_bytes: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(8),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            authentication_method: Some("PLAIN".into()),
            authentication_data: Some(Bytes::from_static(b"\x00a\x00b")),
            user_properties: vec![("region".into(), "eu".into())],
        }
    );
    let will = got.will.as_ref().unwrap();
    assert_eq!(will.topic, "status/dev-1");
    assert_eq!(will.properties.will_delay_interval_secs, Some(10));
    assert_eq!(
        will.properties.payload_format_indicator,
        Some(PayloadFormat::Utf8)
    );
    assert_eq!(will.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(will.properties.response_topic.as_deref(), Some("replies"));
    assert_eq!(will.properties.user_properties, [("k".into(), "v".into())]);
    assert_eq!(got.username.as_deref(), Some("bob"));
}

#[test]
fn v5_publish_both_ways() {
    let mut p = v5::Publish::new("t/1", TheirQoS::AtLeastOnce, "data");
    p.pkid = 3;
    p.properties = Some(v5::PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        topic_alias: Some(2),
        response_topic: Some("r/1".into()),
        correlation_data: Some(Bytes::from_static(b"cd")),
        user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
        subscription_identifiers: vec![],
        content_type: Some("application/json".into()),
    });
    let mut buf = BytesMut::new();
    p.write(&mut buf).unwrap();
    let Packet::Publish(got) = ours(Role::Server, V5, &buf) else {
        panic!()
    };
    assert_eq!(got.qos, QosPid::AtLeastOnce(pid(3)));
    assert_eq!(&got.payload[..], b"data");
    assert_eq!(got.properties.topic_alias, NonZeroU16::new(2));
    assert_eq!(got.properties.user_properties.len(), 2);
    assert_eq!(
        got.properties.content_type.as_deref(),
        Some("application/json")
    );

    // Ours, with subscription identifiers, read by theirs.
    let mut mine = got.clone();
    mine.properties.subscription_identifiers =
        vec![NonZeroU32::new(1).unwrap(), NonZeroU32::new(300).unwrap()];
    let mut buf = BytesMut::from(&encode(V5, &Packet::Publish(mine))[..]);
    let v5::Packet::Publish(theirs) = v5::read(&mut buf, 1024).unwrap() else {
        panic!()
    };
    let props = theirs.properties.unwrap();
    assert_eq!(props.subscription_identifiers, [1, 300]);
    assert_eq!(props.topic_alias, Some(2));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"cd"[..]));
    assert_eq!(&theirs.payload[..], b"data");
}

#[test]
fn v5_subscribe_from_mqttbytes() {
    let mut f = v5::SubscribeFilter::new("s/+/x".into(), TheirQoS::ExactlyOnce);
    f.nolocal = true;
    f.preserve_retain = true;
    f.retain_forward_rule = v5::RetainForwardRule::OnNewSubscribe;
    let s = v5::Subscribe {
        pkid: 12,
        filters: vec![f],
        properties: Some(v5::SubscribeProperties {
            id: Some(99),
            user_properties: vec![],
        }),
    };
    let mut buf = BytesMut::new();
    s.write(&mut buf).unwrap();
    let Packet::Subscribe(got) = ours(Role::Server, V5, &buf) else {
        panic!()
    };
    assert_eq!(got.properties.subscription_identifier, NonZeroU32::new(99));
    assert_eq!(
        got.filters[0].options,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::SendIfNew,
        }
    );
}

#[test]
fn v5_server_packets_to_mqttbytes() {
    let read = |p: Packet| {
        let mut buf = BytesMut::from(&encode(V5, &p)[..]);
        v5::read(&mut buf, 4096).unwrap()
    };
    let mut c = ConnAck::accepted(true);
    c.properties.receive_maximum = NonZeroU16::new(100);
    c.properties.maximum_qos = Some(QoS::AtLeastOnce);
    c.properties.topic_alias_maximum = Some(16);
    c.properties.assigned_client_identifier = Some("auto-1".into());
    c.properties.reason_string = Some("welcome".into());
    let v5::Packet::ConnAck(theirs) = read(Packet::ConnAck(c)) else {
        panic!()
    };
    assert!(theirs.session_present);
    assert_eq!(theirs.code, v5::ConnectReturnCode::Success);
    let props = theirs.properties.unwrap();
    assert_eq!(props.receive_max, Some(100));
    assert_eq!(props.max_qos, Some(1));
    assert_eq!(props.topic_alias_max, Some(16));
    assert_eq!(props.assigned_client_identifier.as_deref(), Some("auto-1"));
    assert_eq!(props.reason_string.as_deref(), Some("welcome"));

    let suback = SubAck {
        packet_id: pid(12),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::GrantedQos2,
            ReasonCode::SharedSubscriptionsNotSupported,
        ],
    };
    let v5::Packet::SubAck(theirs) = read(Packet::SubAck(suback)) else {
        panic!()
    };
    assert_eq!(theirs.pkid, 12);
    assert_eq!(
        theirs.return_codes,
        [
            v5::SubscribeReasonCode::QoS2,
            v5::SubscribeReasonCode::SharedSubscriptionsNotSupported
        ]
    );

    let mut ack = PublishAck::new(pid(5));
    ack.reason_code = ReasonCode::NoMatchingSubscribers;
    let v5::Packet::PubAck(theirs) = read(Packet::PubAck(ack)) else {
        panic!()
    };
    assert_eq!(
        (theirs.pkid, theirs.reason),
        (5, v5::PubAckReason::NoMatchingSubscribers)
    );
}
