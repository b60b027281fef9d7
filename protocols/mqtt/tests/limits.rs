//! Each configured limit: the largest value it allows passes, one more fails
//! with the documented error and reason code.

mod common;

use bytes::BytesMut;
use common::*;
use ferromq_mqtt::topic::TopicError;
use ferromq_mqtt::{
    ConnectReturnCode, DecodeError as E, Decoder, Limits, Packet, ProtocolVersion, ReasonCode as R,
    Role,
};

use ProtocolVersion::{V3_1_1, V5};

fn ok(role: Role, v: ProtocolVersion, limits: &Limits, bytes: &[u8]) -> Packet {
    let mut dec = decoder(role, v, limits.clone());
    let mut buf = BytesMut::from(bytes);
    match dec.decode(&mut buf) {
        Ok(Some(p)) if buf.is_empty() => p,
        other => panic!("{bytes:02x?}: {other:?}"),
    }
}

fn fails(role: Role, v: ProtocolVersion, limits: &Limits, bytes: &[u8], err: E, reason: R) {
    let got = error_with(role, v, limits.clone(), bytes);
    assert_eq!(got, err);
    assert_eq!(got.reason_code(), reason);
}

/// A PUBLISH (QoS 0) with `topic` and `payload_len` bytes of payload.
fn publish(v: ProtocolVersion, topic: &str, payload_len: usize) -> Vec<u8> {
    let mut body = vec![0, topic.len() as u8];
    body.extend_from_slice(topic.as_bytes());
    if v == V5 {
        body.push(0);
    }
    body.resize(body.len() + payload_len, b'p');
    framed(0x30, &body)
}

/// A packet with a one- or two-byte Remaining Length.
fn framed(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    if body.len() < 128 {
        out.push(body.len() as u8);
    } else {
        assert!(body.len() < 16_384);
        out.push((body.len() % 128) as u8 | 0x80);
        out.push((body.len() / 128) as u8);
    }
    out.extend_from_slice(body);
    out
}

#[test]
fn defaults() {
    let l = Limits::default();
    assert_eq!(l.packet_size_max_bytes, 16 * 1024 * 1024);
    assert_eq!(l.connect_packet_size_max_bytes, 64 * 1024);
    assert_eq!(l.client_id_max_bytes, 128);
    assert_eq!(l.topic_max_bytes, 1024);
    assert_eq!(l.topic_levels_max, 64);
    assert_eq!(l.properties_max, 128);
    assert_eq!(l.topic_filters_max, 128);
}

#[test]
fn packet_size_max_bytes() {
    for v in [V3_1_1, V5] {
        let exact = publish(v, "a/b", 100);
        let limits = Limits {
            packet_size_max_bytes: exact.len() as u32,
            ..Limits::default()
        };
        ok(Role::Server, v, &limits, &exact);
        ok(Role::Client, v, &limits, &exact);
        let over = publish(v, "a/b", 101);
        let err = E::PacketTooLarge {
            size_bytes: over.len() as u64,
            max_bytes: exact.len() as u32,
        };
        fails(
            Role::Server,
            v,
            &limits,
            &over,
            err.clone(),
            R::PacketTooLarge,
        );
        // The fixed header alone is enough to refuse it.
        fails(Role::Server, v, &limits, &over[..3], err, R::PacketTooLarge);
    }
}

#[test]
fn connect_packet_size_max_bytes() {
    let connect = connect_bytes(V3_1_1);
    let limits = Limits {
        connect_packet_size_max_bytes: connect.len() as u32,
        packet_size_max_bytes: 1000,
        ..Limits::default()
    };
    let mut dec = Decoder::server(limits.clone());
    let mut buf = BytesMut::from(&connect[..]);
    assert!(matches!(dec.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    // After CONNECT the general limit applies.
    buf.extend_from_slice(&publish(V3_1_1, "a", 500));
    assert!(matches!(dec.decode(&mut buf), Ok(Some(Packet::Publish(_)))));

    let limits = Limits {
        connect_packet_size_max_bytes: connect.len() as u32 - 1,
        ..limits
    };
    let mut dec = Decoder::server(limits);
    let err = dec.decode(&mut BytesMut::from(&connect[..2])).unwrap_err();
    assert_eq!(
        err,
        E::PacketTooLarge {
            size_bytes: connect.len() as u64,
            max_bytes: connect.len() as u32 - 1
        }
    );
    assert_eq!(err.reason_code(), R::PacketTooLarge);
}

#[test]
fn client_id_max_bytes() {
    let limits = Limits {
        client_id_max_bytes: 5,
        ..Limits::default()
    };
    for (v, level) in [(V3_1_1, 4u8), (V5, 5)] {
        let connect = |id: &str| {
            let mut body = b"\x00\x04MQTT".to_vec();
            body.extend_from_slice(&[level, 0x02, 0, 60]);
            if v == V5 {
                body.push(0);
            }
            body.extend_from_slice(&[0, id.len() as u8]);
            body.extend_from_slice(id.as_bytes());
            framed(0x10, &body)
        };
        let mut dec = Decoder::server(limits.clone());
        assert!(dec
            .decode(&mut BytesMut::from(&connect("12345")[..]))
            .is_ok());
        let mut dec = Decoder::server(limits.clone());
        let err = dec
            .decode(&mut BytesMut::from(&connect("123456")[..]))
            .unwrap_err();
        assert_eq!(
            err,
            E::ClientIdRejected {
                why: "longer than the configured limit"
            }
        );
        assert_eq!(err.reason_code(), R::ClientIdentifierNotValid);
        assert_eq!(
            err.connect_return_code(),
            Some(ConnectReturnCode::IdentifierRejected)
        );
        // The version is known, so the session can answer in the right form.
        assert_eq!(dec.version(), Some(v));
    }
}

#[test]
fn topic_max_bytes() {
    let limits = Limits {
        topic_max_bytes: 8,
        ..Limits::default()
    };
    let too_long = TopicError::TooLong { max_bytes: 8 };
    for v in [V3_1_1, V5] {
        ok(Role::Server, v, &limits, &publish(v, "12345678", 1));
        ok(Role::Client, v, &limits, &publish(v, "12345678", 1));
        fails(
            Role::Server,
            v,
            &limits,
            &publish(v, "123456789", 1),
            E::InvalidTopicName(too_long),
            R::TopicNameInvalid,
        );
        let props: &[u8] = if v == V5 { b"\x00" } else { b"" };
        let sub = |filter: &[u8]| {
            let body = [
                b"\x00\x01",
                props,
                &[0, filter.len() as u8],
                filter,
                b"\x00",
            ]
            .concat();
            framed(0x82, &body)
        };
        ok(Role::Server, v, &limits, &sub(b"123456/#"));
        fails(
            Role::Server,
            v,
            &limits,
            &sub(b"1234567/#"),
            E::InvalidTopicFilter(too_long),
            R::TopicFilterInvalid,
        );
        let unsub = framed(0xa2, &[b"\x00\x01", props, b"\x00\x0a$share/g/a"].concat());
        fails(
            Role::Server,
            v,
            &limits,
            &unsub,
            E::InvalidTopicFilter(too_long),
            R::TopicFilterInvalid,
        );
    }
    // The Will topic too, reported in CONNACK as Topic Name invalid.
    let mut dec = Decoder::server(limits);
    let err = dec
        .decode(&mut BytesMut::from(
            &b"\x10\x1a\x00\x04MQTT\x04\x06\x00\x3c\x00\x01c\x00\x09123456789\x00\x00"[..],
        ))
        .unwrap_err();
    assert_eq!(err, E::InvalidTopicName(too_long));
    assert_eq!(err.reason_code(), R::TopicNameInvalid);
}

#[test]
fn topic_levels_max() {
    let limits = Limits {
        topic_levels_max: 3,
        ..Limits::default()
    };
    let deep = TopicError::TooManyLevels { max: 3 };
    for v in [V3_1_1, V5] {
        ok(Role::Server, v, &limits, &publish(v, "a/b/c", 0));
        ok(Role::Server, v, &limits, &publish(v, "//", 0));
        fails(
            Role::Server,
            v,
            &limits,
            &publish(v, "a/b/c/", 0),
            E::InvalidTopicName(deep),
            R::TopicNameInvalid,
        );
        fails(
            Role::Client,
            v,
            &limits,
            &publish(v, "///", 0),
            E::InvalidTopicName(deep),
            R::TopicNameInvalid,
        );
    }
    fails(
        Role::Server,
        V5,
        &limits,
        b"\x82\x0d\x00\x01\x00\x00\x07+/+/+/#\x00",
        E::InvalidTopicFilter(deep),
        R::TopicFilterInvalid,
    );
}

#[test]
fn properties_max() {
    let limits = Limits {
        properties_max: 3,
        ..Limits::default()
    };
    let user = b"\x26\x00\x01k\x00\x01v";
    let publish_with = |n: usize, extra: &[u8]| {
        let props: Vec<u8> = [user.repeat(n), extra.to_vec()].concat();
        framed(
            0x30,
            &[b"\x00\x01t", &[props.len() as u8][..], &props, b"x"].concat(),
        )
    };
    ok(Role::Server, V5, &limits, &publish_with(3, b""));
    fails(
        Role::Server,
        V5,
        &limits,
        &publish_with(4, b""),
        E::TooManyProperties { max: 3 },
        R::QuotaExceeded,
    );
    // Every entry counts, not only User Properties.
    fails(
        Role::Server,
        V5,
        &limits,
        &publish_with(3, b"\x02\x00\x00\x00\x01"),
        E::TooManyProperties { max: 3 },
        R::QuotaExceeded,
    );
    // Repeated Subscription Identifiers to a client.
    let sub_ids = framed(0x30, b"\x00\x01t\x08\x0b\x01\x0b\x02\x0b\x03\x0b\x04x");
    fails(
        Role::Client,
        V5,
        &limits,
        &sub_ids,
        E::TooManyProperties { max: 3 },
        R::QuotaExceeded,
    );
    // In CONNECT, counted per list: three in CONNECT's and three in the Will's pass.
    let three = user.repeat(3);
    let body = [
        b"\x00\x04MQTT\x05\x06\x00\x3c".as_slice(),
        &[three.len() as u8],
        &three,
        b"\x00\x01c",
        &[three.len() as u8],
        &three,
        b"\x00\x01t\x00\x00",
    ]
    .concat();
    let mut dec = Decoder::server(limits);
    let p = dec
        .decode(&mut BytesMut::from(&framed(0x10, &body)[..]))
        .unwrap();
    assert!(matches!(p, Some(Packet::Connect(_))));
}

#[test]
fn topic_filters_max() {
    let limits = Limits {
        topic_filters_max: 2,
        ..Limits::default()
    };
    let too_many = E::TooManyTopicFilters { max: 2 };
    for v in [V3_1_1, V5] {
        let props: &[u8] = if v == V5 { b"\x00" } else { b"" };
        let sub = |n: usize| {
            framed(
                0x82,
                &[b"\x00\x01", props, &b"\x00\x01a\x00".repeat(n)].concat(),
            )
        };
        let unsub = |n: usize| {
            framed(
                0xa2,
                &[b"\x00\x01", props, &b"\x00\x01a".repeat(n)].concat(),
            )
        };
        let suback = |n: usize| framed(0x90, &[b"\x00\x01", props, &b"\x00".repeat(n)].concat());
        ok(Role::Server, v, &limits, &sub(2));
        fails(
            Role::Server,
            v,
            &limits,
            &sub(3),
            too_many.clone(),
            R::QuotaExceeded,
        );
        ok(Role::Server, v, &limits, &unsub(2));
        fails(
            Role::Server,
            v,
            &limits,
            &unsub(3),
            too_many.clone(),
            R::QuotaExceeded,
        );
        ok(Role::Client, v, &limits, &suback(2));
        fails(
            Role::Client,
            v,
            &limits,
            &suback(3),
            too_many.clone(),
            R::QuotaExceeded,
        );
    }
    ok(Role::Client, V5, &limits, b"\xb0\x05\x00\x01\x00\x00\x00");
    fails(
        Role::Client,
        V5,
        &limits,
        b"\xb0\x06\x00\x01\x00\x00\x00\x11",
        too_many,
        R::QuotaExceeded,
    );
}

#[test]
fn set_limits_applies_to_the_next_packet() {
    let mut dec = server(V5, Limits::default());
    let wire = publish(V5, "a", 50);
    let mut buf = BytesMut::from(&wire[..]);
    assert!(dec.decode(&mut buf).unwrap().is_some());
    dec.set_limits(Limits {
        packet_size_max_bytes: 10,
        ..Limits::default()
    });
    assert_eq!(dec.limits().packet_size_max_bytes, 10);
    buf.extend_from_slice(&wire);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(E::PacketTooLarge { .. })
    ));
}
