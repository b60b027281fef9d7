//! The encoder: the peer's Maximum Packet Size, PUBLISH header/payload
//! separation, what older versions cannot carry, and values with no wire form.

mod common;

use std::num::NonZeroU32;

use bytes::{Bytes, BytesMut};
use common::*;
use ferromq_mqtt::packet::*;
use ferromq_mqtt::properties::*;
use ferromq_mqtt::{EncodeError, Encoder, Packet, PacketType, ProtocolVersion, QoS, ReasonCode};

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn encoder(v: ProtocolVersion, max: u32) -> Encoder {
    let mut e = Encoder::new(v);
    e.set_packet_size_max_bytes(max);
    e
}

#[test]
fn peer_maximum_packet_size() {
    let mut ack = PublishAck::new(pid(1));
    ack.reason_code = ReasonCode::NoMatchingSubscribers;
    ack.properties.reason_string = Some("nobody is listening".into());
    ack.properties
        .user_properties
        .push(("k".into(), "v".into()));
    let mut packet = Packet::PubAck(ack);
    let full = Encoder::new(V5).encoded_len(&packet).unwrap();
    assert_eq!(full, 4 + 1 + 1 + (3 + 19) + (1 + 3 + 3));

    // At the limit it fits; one byte less and nothing is written.
    let mut out = BytesMut::from(&b"prefix"[..]);
    assert_eq!(encoder(V5, full as u32).encode(&packet, &mut out), Ok(full));
    let mut out = BytesMut::from(&b"prefix"[..]);
    let err = encoder(V5, full as u32 - 1).encode(&packet, &mut out);
    assert_eq!(
        err,
        Err(EncodeError::PacketTooLarge {
            size_bytes: full as u64,
            max_bytes: full as u32 - 1
        })
    );
    assert_eq!(&out[..], b"prefix");

    // What the session does next: drop the diagnostics and send the rest.
    assert!(packet.strip_diagnostics());
    assert!(!packet.strip_diagnostics());
    let mut out = BytesMut::new();
    assert_eq!(encoder(V5, 5).encode(&packet, &mut out), Ok(5));
    assert_eq!(&out[..], b"\x40\x03\x00\x01\x10");
}

#[test]
fn strip_diagnostics_keeps_what_matters() {
    let mut d = Disconnect::new(ReasonCode::ServerMoved);
    d.properties.reason_string = Some("moving".into());
    d.properties.server_reference = Some("other:1883".into());
    let mut p = Packet::Disconnect(d);
    assert!(p.strip_diagnostics());
    let Packet::Disconnect(d) = &p else {
        unreachable!()
    };
    assert_eq!(d.properties.server_reference.as_deref(), Some("other:1883"));
    assert_eq!(d.reason_code, ReasonCode::ServerMoved);

    let mut c = ConnAck::accepted(false);
    c.properties.assigned_client_identifier = Some("auto-1".into());
    c.properties.user_properties.push(("a".into(), "b".into()));
    let mut p = Packet::ConnAck(c);
    assert!(p.strip_diagnostics());
    let Packet::ConnAck(c) = &p else {
        unreachable!()
    };
    assert_eq!(
        c.properties.assigned_client_identifier.as_deref(),
        Some("auto-1")
    );
    assert!(c.properties.user_properties.is_empty());

    // A PUBLISH's User Properties are the message's: never stripped.
    let mut publish = Publish::new("t", "x");
    publish
        .properties
        .user_properties
        .push(("a".into(), "b".into()));
    let mut p = Packet::Publish(publish);
    assert!(!p.strip_diagnostics());
    let Packet::Publish(publish) = &p else {
        unreachable!()
    };
    assert_eq!(publish.properties.user_properties.len(), 1);
}

#[test]
fn publish_header_then_payload() {
    let payload = Bytes::from(vec![7u8; 300]);
    for v in ProtocolVersion::ALL {
        let mut publish = Publish::new("sensors/1", payload.clone());
        publish.qos = QosPid::ExactlyOnce(pid(9));
        publish.retain = true;
        if v == V5 {
            publish.properties.content_type = Some("bin".into());
        }
        let whole = encode(v, &Packet::Publish(publish.clone()));
        let mut header = BytesMut::new();
        let n = Encoder::new(v)
            .encode_publish_header(&publish, &mut header)
            .unwrap();
        assert_eq!(n, header.len());
        assert_eq!(n + payload.len(), whole.len());
        assert_eq!([&header[..], &payload[..]].concat(), whole);
        // The size checked is the whole packet's.
        let mut out = BytesMut::new();
        assert_eq!(
            encoder(v, whole.len() as u32 - 1).encode_publish_header(&publish, &mut out),
            Err(EncodeError::PacketTooLarge {
                size_bytes: whole.len() as u64,
                max_bytes: whole.len() as u32 - 1
            })
        );
        assert!(out.is_empty());
    }
}

#[test]
fn mqtt3_leaves_out_what_it_cannot_carry() {
    let mut publish = Publish::new("a", "x");
    publish.properties.message_expiry_interval_secs = Some(5);
    publish
        .properties
        .user_properties
        .push(("k".into(), "v".into()));
    assert_eq!(
        encode(V3_1_1, &Packet::Publish(publish)),
        b"\x30\x04\x00\x01ax"
    );

    let mut ack = PublishAck::new(pid(3));
    ack.reason_code = ReasonCode::QuotaExceeded;
    ack.properties.reason_string = Some("full".into());
    assert_eq!(encode(V3_1_1, &Packet::PubAck(ack)), b"\x40\x02\x00\x03");

    let suback = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::GrantedQos2,
            ReasonCode::NotAuthorized,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ],
    };
    assert_eq!(
        encode(V3_1_1, &Packet::SubAck(suback)),
        b"\x90\x05\x00\x01\x02\x80\x80"
    );

    let unsuback = UnsubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::NoSubscriptionExisted],
    };
    assert_eq!(
        encode(V3_1_1, &Packet::UnsubAck(unsuback)),
        b"\xb0\x02\x00\x01"
    );

    let mut sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties {
            subscription_identifier: NonZeroU32::new(3),
            user_properties: vec![],
        },
        filters: vec![Subscription {
            filter: "a".into(),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        }],
    };
    assert_eq!(
        encode(V3_1_1, &Packet::Subscribe(sub.clone())),
        b"\x82\x06\x00\x01\x00\x01a\x01"
    );
    sub.filters[0].options.no_local = false;
    assert_eq!(
        encode(V5, &Packet::Subscribe(sub)),
        b"\x82\x09\x00\x01\x02\x0b\x03\x00\x01a\x29"
    );

    let mut d = Disconnect::new(ReasonCode::ServerShuttingDown);
    d.properties.reason_string = Some("bye".into());
    assert_eq!(encode(V3_1_1, &Packet::Disconnect(d)), b"\xe0\x00");

    // MQTT 3.1 has no session present flag.
    assert_eq!(
        encode(V3_1, &Packet::ConnAck(ConnAck::accepted(true))),
        b"\x20\x02\x00\x00"
    );
}

#[test]
fn connack_reason_codes_in_mqtt3() {
    for (reason, code) in [
        (ReasonCode::Success, 0u8),
        (ReasonCode::UnsupportedProtocolVersion, 1),
        (ReasonCode::ClientIdentifierNotValid, 2),
        (ReasonCode::ServerBusy, 3),
        (ReasonCode::ServerUnavailable, 3),
        (ReasonCode::BadAuthenticationMethod, 4),
        (ReasonCode::BadUserNameOrPassword, 4),
        (ReasonCode::Banned, 5),
        (ReasonCode::NotAuthorized, 5),
    ] {
        let mut c = ConnAck::accepted(false);
        c.reason_code = reason;
        assert_eq!(
            encode(V3_1_1, &Packet::ConnAck(c)),
            [0x20, 2, 0, code],
            "{reason}"
        );
    }
    for reason in [
        ReasonCode::MalformedPacket,
        ReasonCode::ProtocolError,
        ReasonCode::PacketTooLarge,
    ] {
        let mut c = ConnAck::accepted(false);
        c.reason_code = reason;
        assert!(matches!(
            Encoder::new(V3_1_1).encode(&Packet::ConnAck(c), &mut BytesMut::new()),
            Err(EncodeError::Unrepresentable { .. })
        ));
    }
}

#[test]
fn values_without_a_wire_form() {
    let unrepresentable = |v: ProtocolVersion, p: Packet| {
        let mut out = BytesMut::new();
        let r = Encoder::new(v).encode(&p, &mut out);
        assert!(
            matches!(r, Err(EncodeError::Unrepresentable { .. })),
            "{r:?}"
        );
        assert!(out.is_empty());
    };
    let mut p = Publish::new("a", "x");
    p.dup = true;
    unrepresentable(V3_1_1, Packet::Publish(p));
    let mut c = ConnAck::accepted(false);
    c.properties.maximum_qos = Some(QoS::ExactlyOnce);
    unrepresentable(V5, Packet::ConnAck(c));
    unrepresentable(
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![],
        }),
    );
    unrepresentable(
        V5,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(1),
            properties: UnsubscribeProperties::default(),
            filters: vec![],
        }),
    );
    unrepresentable(
        V5,
        Packet::SubAck(SubAck {
            packet_id: pid(1),
            properties: AckProperties::default(),
            reason_codes: vec![],
        }),
    );
    let mut p = Publish::new("a", "x");
    p.properties.subscription_identifiers = vec![NonZeroU32::new(268_435_456).unwrap()];
    unrepresentable(V5, Packet::Publish(p));
    let mut p = Publish::new("a", "x");
    p.properties.subscription_identifiers = vec![NonZeroU32::new(268_435_455).unwrap()];
    assert!(Encoder::new(V5).encoded_len(&Packet::Publish(p)).is_ok());

    let auth = Packet::Auth(Auth {
        reason_code: ReasonCode::Success,
        properties: AuthProperties::default(),
    });
    for v in [V3_1, V3_1_1] {
        assert_eq!(
            Encoder::new(v).encode(&auth, &mut BytesMut::new()),
            Err(EncodeError::NotInVersion {
                packet: PacketType::Auth,
                version: v
            })
        );
    }
    // MQTT 3 cannot send a password without a user name.
    let connect = Connect {
        version: V3_1_1,
        clean_start: true,
        keep_alive_secs: 0,
        properties: ConnectProperties::default(),
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"p")),
    };
    unrepresentable(V3_1_1, Packet::Connect(Box::new(connect)));
}

#[test]
fn fields_too_long() {
    let long = "x".repeat(65_536);
    let mut out = BytesMut::new();
    assert_eq!(
        Encoder::new(V5).encode(&Packet::Publish(Publish::new(long.as_str(), "x")), &mut out),
        Err(EncodeError::FieldTooLong {
            field: "topic name"
        })
    );
    let mut p = Publish::new("t", "x");
    p.properties
        .user_properties
        .push(("k".into(), long.as_str().into()));
    assert_eq!(
        Encoder::new(V5).encode(&Packet::Publish(p), &mut out),
        Err(EncodeError::FieldTooLong {
            field: "User Property value"
        })
    );
    let mut p = Publish::new("t", "x");
    p.properties.correlation_data = Some(Bytes::from(vec![0; 65_536]));
    assert_eq!(
        Encoder::new(V5).encode(&Packet::Publish(p), &mut out),
        Err(EncodeError::FieldTooLong {
            field: "Correlation Data"
        })
    );
    assert!(out.is_empty());
    // 65,535 is fine.
    let max = "x".repeat(65_535);
    assert!(Encoder::new(V5)
        .encode(&Packet::Publish(Publish::new(max.as_str(), "x")), &mut out)
        .is_ok());
}

#[test]
fn encoder_accessors() {
    let mut e = Encoder::new(V5);
    assert_eq!(e.version(), V5);
    assert_eq!(
        e.packet_size_max_bytes(),
        ferromq_mqtt::limits::PACKET_SIZE_PROTOCOL_MAX_BYTES
    );
    e.set_packet_size_max_bytes(100);
    assert_eq!(e.packet_size_max_bytes(), 100);
    let mut out = BytesMut::new();
    assert_eq!(e.encode(&Packet::PingResp, &mut out), Ok(2));
    assert_eq!(&out[..], b"\xd0\x00");
}
