//! Golden packets: byte literals written from the MQTT 3.1, 3.1.1 and 5.0
//! specifications, one or more per packet type and version. Each must decode
//! to the expected packet (at every end that may receive it) and the packet
//! must encode back to exactly the same bytes.

mod common;

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use common::*;
use ferromq_mqtt::packet::*;
use ferromq_mqtt::properties::*;
use ferromq_mqtt::{Decoder, Limits, Packet, ProtocolVersion, ReasonCode, Role};

use ProtocolVersion::{V3_1, V3_1_1, V5};

const BOTH: &[Role] = &[Role::Server, Role::Client];
const AT_SERVER: &[Role] = &[Role::Server];
const AT_CLIENT: &[Role] = &[Role::Client];

/// Decodes at each end in `roles` and encodes back.
fn golden(v: ProtocolVersion, roles: &[Role], bytes: &[u8], packet: Packet) {
    for &role in roles {
        assert_eq!(
            decode_one(role, v, bytes),
            Ok(packet.clone()),
            "{v} decoding at {role:?}"
        );
    }
    assert_eq!(encode(v, &packet), bytes, "{v} encoding {packet:?}");
}

/// CONNECT goes to a fresh server decoder, which learns the version from it.
fn golden_connect(bytes: &[u8], connect: Connect) {
    let mut dec = Decoder::server(Limits::default());
    let mut buf = BytesMut::from(bytes);
    let v = connect.version;
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Packet::Connect(Box::new(connect.clone()))))
    );
    assert!(buf.is_empty());
    assert_eq!(dec.version(), Some(v));
    // Whatever the encoder's version, CONNECT speaks its own.
    for enc in ProtocolVersion::ALL {
        assert_eq!(
            encode(enc, &Packet::Connect(Box::new(connect.clone()))),
            bytes
        );
    }
}

fn s(text: &'static str) -> bytestring::ByteString {
    bytestring::ByteString::from_static(text)
}

fn b(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

fn ack(id: u16, reason_code: ReasonCode) -> PublishAck {
    PublishAck {
        packet_id: pid(id),
        reason_code,
        properties: AckProperties::default(),
    }
}

// ---- MQTT 3.1.1 ----------------------------------------------------------------------

#[test]
fn v3_1_1_connect_with_will_and_credentials() {
    let bytes = cat(&[
        b"\x10\x2a",
        b"\x00\x04MQTT\x04",
        b"\xce", // user name, password, will QoS 1, will, clean session
        b"\x00\x3c",
        b"\x00\x05c-001",
        b"\x00\x05w/top",
        b"\x00\x04gone",
        b"\x00\x04user",
        b"\x00\x04pass",
    ]);
    golden_connect(
        &bytes,
        Connect {
            version: V3_1_1,
            clean_start: true,
            keep_alive_secs: 60,
            properties: ConnectProperties::default(),
            client_id: s("c-001"),
            will: Some(Will {
                topic: s("w/top"),
                payload: b(b"gone"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: WillProperties::default(),
            }),
            username: Some(s("user")),
            password: Some(b(b"pass")),
        },
    );
}

#[test]
fn v3_1_1_connect_minimal_with_empty_client_id() {
    golden_connect(
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00",
        Connect {
            version: V3_1_1,
            clean_start: true,
            keep_alive_secs: 0,
            properties: ConnectProperties::default(),
            client_id: s(""),
            will: None,
            username: None,
            password: None,
        },
    );
}

#[test]
fn v3_1_1_connack() {
    golden(
        V3_1_1,
        AT_CLIENT,
        b"\x20\x02\x01\x00",
        Packet::ConnAck(ConnAck::accepted(true)),
    );
    for (byte, reason) in [
        (1u8, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ] {
        let mut p = ConnAck::accepted(false);
        p.reason_code = reason;
        golden(
            V3_1_1,
            AT_CLIENT,
            &[0x20, 0x02, 0x00, byte],
            Packet::ConnAck(p),
        );
    }
}

#[test]
fn v3_1_1_publish() {
    golden(
        V3_1_1,
        BOTH,
        b"\x30\x0a\x00\x03a/bhello",
        Packet::Publish(Publish::new("a/b", "hello")),
    );
    golden(
        V3_1_1,
        BOTH,
        b"\x3b\x09\x00\x03a/b\x00\x07hi",
        Packet::Publish(Publish {
            dup: true,
            qos: QosPid::AtLeastOnce(pid(7)),
            retain: true,
            topic: s("a/b"),
            properties: PublishProperties::default(),
            payload: b(b"hi"),
        }),
    );
    golden(
        V3_1_1,
        BOTH,
        b"\x34\x07\x00\x03a/b\x12\x34",
        Packet::Publish(Publish {
            dup: false,
            qos: QosPid::ExactlyOnce(pid(0x1234)),
            retain: false,
            topic: s("a/b"),
            properties: PublishProperties::default(),
            payload: Bytes::new(),
        }),
    );
}

#[test]
fn v3_1_1_publish_acks() {
    let a = || ack(7, ReasonCode::Success);
    golden(V3_1_1, BOTH, b"\x40\x02\x00\x07", Packet::PubAck(a()));
    golden(V3_1_1, BOTH, b"\x50\x02\x00\x07", Packet::PubRec(a()));
    golden(V3_1_1, BOTH, b"\x62\x02\x00\x07", Packet::PubRel(a()));
    golden(V3_1_1, BOTH, b"\x70\x02\x00\x07", Packet::PubComp(a()));
}

#[test]
fn v3_1_1_subscribe_and_suback() {
    golden(
        V3_1_1,
        AT_SERVER,
        b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/#\x02",
        Packet::Subscribe(Subscribe {
            packet_id: pid(10),
            properties: SubscribeProperties::default(),
            filters: vec![
                Subscription {
                    filter: s("a/b"),
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                },
                Subscription {
                    filter: s("c/#"),
                    options: SubscriptionOptions::qos(QoS::ExactlyOnce),
                },
            ],
        }),
    );
    golden(
        V3_1_1,
        AT_CLIENT,
        b"\x90\x05\x00\x0a\x01\x02\x80",
        Packet::SubAck(SubAck {
            packet_id: pid(10),
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
            ],
        }),
    );
}

#[test]
fn v3_1_1_unsubscribe_and_unsuback() {
    golden(
        V3_1_1,
        AT_SERVER,
        b"\xa2\x0c\x00\x0b\x00\x03a/b\x00\x03c/#",
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(11),
            properties: UnsubscribeProperties::default(),
            filters: vec![s("a/b"), s("c/#")],
        }),
    );
    golden(
        V3_1_1,
        AT_CLIENT,
        b"\xb0\x02\x00\x0b",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(11),
            properties: AckProperties::default(),
            reason_codes: vec![],
        }),
    );
}

#[test]
fn v3_1_1_ping_and_disconnect() {
    golden(V3_1_1, AT_SERVER, b"\xc0\x00", Packet::PingReq);
    golden(V3_1_1, AT_CLIENT, b"\xd0\x00", Packet::PingResp);
    golden(
        V3_1_1,
        AT_SERVER,
        b"\xe0\x00",
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
    );
}

// ---- MQTT 3.1 ----------------------------------------------------------------------------

#[test]
fn v3_1_connect() {
    let bytes = cat(&[
        b"\x10\x19",
        b"\x00\x06MQIsdp\x03",
        b"\x82", // user name, clean session
        b"\x00\x0a",
        b"\x00\x05c-001",
        b"\x00\x04user",
    ]);
    golden_connect(
        &bytes,
        Connect {
            version: V3_1,
            clean_start: true,
            keep_alive_secs: 10,
            properties: ConnectProperties::default(),
            client_id: s("c-001"),
            will: None,
            username: Some(s("user")),
            password: None,
        },
    );
}

#[test]
fn v3_1_packets() {
    let mut refused = ConnAck::accepted(false);
    refused.reason_code = ReasonCode::ClientIdentifierNotValid;
    golden(
        V3_1,
        AT_CLIENT,
        b"\x20\x02\x00\x02",
        Packet::ConnAck(refused),
    );
    golden(
        V3_1,
        BOTH,
        b"\x32\x07\x00\x01x\x00\x05ab",
        Packet::Publish(Publish {
            dup: false,
            qos: QosPid::AtLeastOnce(pid(5)),
            retain: false,
            topic: s("x"),
            properties: PublishProperties::default(),
            payload: b(b"ab"),
        }),
    );
    golden(
        V3_1,
        BOTH,
        b"\x62\x02\x00\x05",
        Packet::PubRel(ack(5, ReasonCode::Success)),
    );
    golden(
        V3_1,
        AT_CLIENT,
        b"\x90\x03\x00\x01\x00",
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_0],
        }),
    );
    golden(
        V3_1,
        AT_SERVER,
        b"\xe0\x00",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
}

#[test]
fn v3_1_remaining_packet_types() {
    let a = || ack(0x0102, ReasonCode::Success);
    golden(V3_1, BOTH, b"\x40\x02\x01\x02", Packet::PubAck(a()));
    golden(V3_1, BOTH, b"\x50\x02\x01\x02", Packet::PubRec(a()));
    golden(V3_1, BOTH, b"\x70\x02\x01\x02", Packet::PubComp(a()));
    golden(
        V3_1,
        AT_SERVER,
        b"\x82\x08\x00\x01\x00\x03a/b\x02",
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![Subscription {
                filter: s("a/b"),
                options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            }],
        }),
    );
    golden(
        V3_1,
        AT_SERVER,
        b"\xa2\x07\x00\x01\x00\x03a/b",
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(1),
            properties: UnsubscribeProperties::default(),
            filters: vec![s("a/b")],
        }),
    );
    golden(
        V3_1,
        AT_CLIENT,
        b"\xb0\x02\x00\x01",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![],
        }),
    );
    golden(V3_1, AT_SERVER, b"\xc0\x00", Packet::PingReq);
    golden(V3_1, AT_CLIENT, b"\xd0\x00", Packet::PingResp);
    golden(
        V3_1,
        AT_CLIENT,
        b"\x20\x02\x00\x00",
        Packet::ConnAck(ConnAck::accepted(false)),
    );
}

/// MQTT 3.1 clients set DUP on retransmitted SUBSCRIBE, UNSUBSCRIBE and
/// PUBREL; 3.1 accepts it (and the encoder, which never retransmits, never
/// sets it).
#[test]
fn v3_1_dup_on_qos1_control_packets() {
    let sub = decode_one(Role::Server, V3_1, b"\x8a\x08\x00\x01\x00\x03a/b\x00").unwrap();
    assert_eq!(encode(V3_1, &sub), b"\x82\x08\x00\x01\x00\x03a/b\x00");
    let unsub = decode_one(Role::Server, V3_1, b"\xaa\x07\x00\x01\x00\x03a/b").unwrap();
    assert!(matches!(unsub, Packet::Unsubscribe(_)));
    let rel = decode_one(Role::Server, V3_1, b"\x6a\x02\x00\x01").unwrap();
    assert_eq!(rel, Packet::PubRel(ack(1, ReasonCode::Success)));
}

// ---- MQTT 5.0 ----------------------------------------------------------------------------

#[test]
fn v5_connect_with_every_property() {
    let bytes = cat(&[
        b"\x10\x66",
        b"\x00\x04MQTT\x05",
        b"\xf6", // user name, password, will retain, will QoS 2, will, clean start
        b"\x00\x1e",
        b"\x1b",                   // property length 27
        b"\x11\x00\x00\x0e\x10",   // Session Expiry Interval 3600
        b"\x21\x00\x14",           // Receive Maximum 20
        b"\x27\x00\x01\x00\x00",   // Maximum Packet Size 65536
        b"\x22\x00\x0a",           // Topic Alias Maximum 10
        b"\x19\x01",               // Request Response Information
        b"\x17\x00",               // Request Problem Information off
        b"\x26\x00\x01k\x00\x01v", // User Property k=v
        b"\x00\x03cid",            // client id
        b"\x26",                   // will property length 38
        b"\x18\x00\x00\x00\x05",   // Will Delay Interval 5
        b"\x01\x01",               // Payload Format Indicator UTF-8
        b"\x02\x00\x00\x00\x3c",   // Message Expiry Interval 60
        b"\x03\x00\x0atext/plain", // Content Type
        b"\x08\x00\x05reply",      // Response Topic
        b"\x09\x00\x02id",         // Correlation Data
        b"\x00\x04will",           // will topic
        b"\x00\x03bye",            // will payload
        b"\x00\x02me",             // user name
        b"\x00\x03\x01\x02\x03",   // password
    ]);
    golden_connect(
        &bytes,
        Connect {
            version: V5,
            clean_start: true,
            keep_alive_secs: 30,
            properties: ConnectProperties {
                session_expiry_interval_secs: Some(3600),
                receive_maximum: NonZeroU16::new(20),
                maximum_packet_size_bytes: NonZeroU32::new(65536),
                topic_alias_maximum: Some(10),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                authentication_method: None,
                authentication_data: None,
                user_properties: vec![(s("k"), s("v"))],
            },
            client_id: s("cid"),
            will: Some(Will {
                topic: s("will"),
                payload: b(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: WillProperties {
                    will_delay_interval_secs: Some(5),
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval_secs: Some(60),
                    content_type: Some(s("text/plain")),
                    response_topic: Some(s("reply")),
                    correlation_data: Some(b(b"id")),
                    user_properties: vec![],
                },
            }),
            username: Some(s("me")),
            password: Some(b(b"\x01\x02\x03")),
        },
    );
}

#[test]
fn v5_connect_with_extended_auth_and_password_only() {
    // MQTT 5 allows a password without a user name.
    let bytes = cat(&[
        b"\x10\x22",
        b"\x00\x04MQTT\x05",
        b"\x40",
        b"\x00\x00",
        b"\x0d",
        b"\x15\x00\x05SCRAM",
        b"\x16\x00\x02\xab\xcd",
        b"\x00\x00",
        b"\x00\x06secret",
    ]);
    golden_connect(
        &bytes,
        Connect {
            version: V5,
            clean_start: false,
            keep_alive_secs: 0,
            properties: ConnectProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(b(b"\xab\xcd")),
                ..ConnectProperties::default()
            },
            client_id: s(""),
            will: None,
            username: None,
            password: Some(b(b"secret")),
        },
    );
}

#[test]
fn v5_connack_with_every_property() {
    let bytes = cat(&[
        b"\x20\x4c",
        b"\x01\x00",
        b"\x49",
        b"\x11\x00\x00\x00\x78",
        b"\x21\x00\x0a",
        b"\x24\x01",
        b"\x25\x00",
        b"\x27\x00\x00\x10\x00",
        b"\x12\x00\x03abc",
        b"\x22\x00\x05",
        b"\x1f\x00\x02ok",
        b"\x28\x00",
        b"\x29\x00",
        b"\x2a\x01",
        b"\x13\x00\x3c",
        b"\x1a\x00\x04resp",
        b"\x1c\x00\x03srv",
        b"\x15\x00\x05SCRAM",
        b"\x16\x00\x02\xab\xcd",
        b"\x26\x00\x01a\x00\x01b",
    ]);
    golden(
        V5,
        AT_CLIENT,
        &bytes,
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties {
                session_expiry_interval_secs: Some(120),
                receive_maximum: NonZeroU16::new(10),
                maximum_qos: Some(QoS::AtLeastOnce),
                retain_available: Some(false),
                maximum_packet_size_bytes: NonZeroU32::new(4096),
                assigned_client_identifier: Some(s("abc")),
                topic_alias_maximum: Some(5),
                reason_string: Some(s("ok")),
                user_properties: vec![(s("a"), s("b"))],
                wildcard_subscription_available: Some(false),
                subscription_identifiers_available: Some(false),
                shared_subscription_available: Some(true),
                server_keep_alive_secs: Some(60),
                response_information: Some(s("resp")),
                server_reference: Some(s("srv")),
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(b(b"\xab\xcd")),
            },
        }),
    );
}

#[test]
fn v5_connack_failure() {
    let mut p = ConnAck::accepted(false);
    p.reason_code = ReasonCode::BadUserNameOrPassword;
    golden(V5, AT_CLIENT, b"\x20\x03\x00\x86\x00", Packet::ConnAck(p));
}

#[test]
fn v5_publish_with_properties() {
    let bytes = cat(&[
        b"\x32\x31",
        b"\x00\x03a/b",
        b"\x00\x01",
        b"\x22",
        b"\x01\x01",
        b"\x02\x00\x00\x00\x0a",
        b"\x23\x00\x01",
        b"\x08\x00\x03r/1",
        b"\x09\x00\x01x",
        b"\x26\x00\x01k\x00\x01v",
        b"\x03\x00\x04json",
        b"payload",
    ]);
    golden(
        V5,
        BOTH,
        &bytes,
        Packet::Publish(Publish {
            dup: false,
            qos: QosPid::AtLeastOnce(pid(1)),
            retain: false,
            topic: s("a/b"),
            properties: PublishProperties {
                payload_format_indicator: Some(PayloadFormat::Utf8),
                message_expiry_interval_secs: Some(10),
                topic_alias: NonZeroU16::new(1),
                response_topic: Some(s("r/1")),
                correlation_data: Some(b(b"x")),
                user_properties: vec![(s("k"), s("v"))],
                subscription_identifiers: vec![],
                content_type: Some(s("json")),
            },
            payload: b(b"payload"),
        }),
    );
}

#[test]
fn v5_publish_topic_alias_only() {
    let mut p = Publish::new("", "p");
    p.properties.topic_alias = NonZeroU16::new(1);
    golden(
        V5,
        BOTH,
        b"\x30\x07\x00\x00\x03\x23\x00\x01p",
        Packet::Publish(p),
    );
}

#[test]
fn v5_publish_with_subscription_identifiers_to_a_client() {
    let mut p = Publish::new("a/b", "x");
    p.properties.subscription_identifiers = vec![NonZeroU32::MIN, NonZeroU32::new(128).unwrap()];
    golden(
        V5,
        AT_CLIENT,
        b"\x30\x0c\x00\x03a/b\x05\x0b\x01\x0b\x80\x01x",
        Packet::Publish(p),
    );
}

#[test]
fn v5_publish_acks_in_each_form() {
    golden(
        V5,
        BOTH,
        b"\x40\x02\x00\x01",
        Packet::PubAck(ack(1, ReasonCode::Success)),
    );
    golden(
        V5,
        BOTH,
        b"\x40\x03\x00\x01\x10",
        Packet::PubAck(ack(1, ReasonCode::NoMatchingSubscribers)),
    );
    let mut with_props = ack(1, ReasonCode::NoMatchingSubscribers);
    with_props.properties.reason_string = Some(s("n/a"));
    golden(
        V5,
        BOTH,
        b"\x40\x0a\x00\x01\x10\x06\x1f\x00\x03n/a",
        Packet::PubAck(with_props),
    );
    golden(
        V5,
        BOTH,
        b"\x50\x03\x00\x02\x97",
        Packet::PubRec(ack(2, ReasonCode::QuotaExceeded)),
    );
    golden(
        V5,
        BOTH,
        b"\x62\x03\x00\x02\x92",
        Packet::PubRel(ack(2, ReasonCode::PacketIdentifierNotFound)),
    );
    golden(
        V5,
        BOTH,
        b"\x70\x02\x00\x02",
        Packet::PubComp(ack(2, ReasonCode::Success)),
    );
}

/// Longer forms than needed are accepted and re-encoded in the short form.
#[test]
fn v5_acks_accept_long_forms() {
    for bytes in [&b"\x40\x03\x00\x01\x00"[..], b"\x40\x04\x00\x01\x00\x00"] {
        let p = decode_one(Role::Server, V5, bytes).unwrap();
        assert_eq!(p, Packet::PubAck(ack(1, ReasonCode::Success)));
        assert_eq!(encode(V5, &p), b"\x40\x02\x00\x01");
    }
    let p = decode_one(Role::Server, V5, b"\xe0\x02\x00\x00").unwrap();
    assert_eq!(encode(V5, &p), b"\xe0\x00");
}

#[test]
fn v5_subscribe_and_suback() {
    let bytes = cat(&[
        b"\x82\x21",
        b"\x00\x0a",
        b"\x09",
        b"\x0b\x2a",
        b"\x26\x00\x01k\x00\x01v",
        b"\x00\x03a/+\x2d", // QoS 1, No Local, Retain As Published, Retain Handling 2
        b"\x00\x0c$share/g/c/#\x12", // QoS 2, Retain Handling 1
    ]);
    golden(
        V5,
        AT_SERVER,
        &bytes,
        Packet::Subscribe(Subscribe {
            packet_id: pid(10),
            properties: SubscribeProperties {
                subscription_identifier: NonZeroU32::new(42),
                user_properties: vec![(s("k"), s("v"))],
            },
            filters: vec![
                Subscription {
                    filter: s("a/+"),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                },
                Subscription {
                    filter: s("$share/g/c/#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                },
            ],
        }),
    );
    golden(
        V5,
        AT_CLIENT,
        b"\x90\x06\x00\x0a\x00\x01\x9e\x8f",
        Packet::SubAck(SubAck {
            packet_id: pid(10),
            properties: AckProperties::default(),
            reason_codes: vec![
                ReasonCode::GrantedQos1,
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::TopicFilterInvalid,
            ],
        }),
    );
}

#[test]
fn v5_unsubscribe_and_unsuback() {
    golden(
        V5,
        AT_SERVER,
        b"\xa2\x08\x00\x0b\x00\x00\x03a/+",
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(11),
            properties: UnsubscribeProperties::default(),
            filters: vec![s("a/+")],
        }),
    );
    golden(
        V5,
        AT_CLIENT,
        b"\xb0\x05\x00\x0b\x00\x00\x11",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(11),
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        }),
    );
}

#[test]
fn v5_ping() {
    golden(V5, AT_SERVER, b"\xc0\x00", Packet::PingReq);
    golden(V5, AT_CLIENT, b"\xd0\x00", Packet::PingResp);
}

#[test]
fn v5_disconnect_from_client() {
    golden(
        V5,
        AT_SERVER,
        b"\xe0\x00",
        Packet::Disconnect(Disconnect::new(ReasonCode::Success)),
    );
    golden(
        V5,
        AT_SERVER,
        b"\xe0\x01\x04",
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage)),
    );
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval_secs = Some(0);
    golden(
        V5,
        AT_SERVER,
        b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00",
        Packet::Disconnect(d),
    );
}

#[test]
fn v5_disconnect_from_server() {
    let mut d = Disconnect::new(ReasonCode::SessionTakenOver);
    d.properties.reason_string = Some(s("took"));
    golden(
        V5,
        AT_CLIENT,
        b"\xe0\x09\x8e\x07\x1f\x00\x04took",
        Packet::Disconnect(d),
    );
    let mut d = Disconnect::new(ReasonCode::UseAnotherServer);
    d.properties.server_reference = Some(s("host2"));
    golden(
        V5,
        AT_CLIENT,
        b"\xe0\x0a\x9c\x08\x1c\x00\x05host2",
        Packet::Disconnect(d),
    );
}

#[test]
fn v5_auth() {
    golden(
        V5,
        BOTH,
        b"\xf0\x00",
        Packet::Auth(Auth {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        }),
    );
    golden(
        V5,
        BOTH,
        b"\xf0\x10\x18\x0e\x15\x00\x05SCRAM\x16\x00\x03abc",
        Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(b(b"abc")),
                ..AuthProperties::default()
            },
        }),
    );
}
