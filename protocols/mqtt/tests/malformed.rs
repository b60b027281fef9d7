//! Every rule the codec enforces, broken once: the error, its MQTT 5 reason
//! code and, for CONNECT, its MQTT 3 CONNACK return code.

mod common;

use common::*;
use ferromq_mqtt::properties::{PropertyContext, PropertyId};
use ferromq_mqtt::topic::TopicError;
use ferromq_mqtt::{
    ConnectReturnCode, DecodeError as E, Decoder, Limits, PacketType as T, ProtocolVersion,
    ReasonCode as R, Role,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// `bytes`, sent after CONNECT to `role` in `v`, fail with `err` whose
/// reason code is `reason`.
fn case(role: Role, v: ProtocolVersion, bytes: &[u8], err: E, reason: R) {
    let got = error_with(role, v, Limits::default(), bytes);
    assert_eq!(got, err, "{v} at {role:?}: {bytes:02x?}");
    assert_eq!(got.reason_code(), reason, "{got}");
    let text = got.to_string();
    assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
}

fn at_server(v: ProtocolVersion, bytes: &[u8], err: E, reason: R) {
    case(Role::Server, v, bytes, err, reason);
}

fn at_client(v: ProtocolVersion, bytes: &[u8], err: E, reason: R) {
    case(Role::Client, v, bytes, err, reason);
}

/// A CONNECT to a fresh server fails with `err`.
fn connect(bytes: &[u8], err: E, reason: R, v3_code: Option<ConnectReturnCode>) {
    let got = connect_error(bytes);
    assert_eq!(got, err, "{bytes:02x?}");
    assert_eq!(got.reason_code(), reason);
    assert_eq!(got.connect_return_code(), v3_code);
}

// ---- framing -------------------------------------------------------------------------

#[test]
fn reserved_packet_types() {
    for v in [V3_1, V3_1_1, V5] {
        at_server(
            v,
            b"\x00\x00",
            E::ReservedPacketType { packet_type: 0 },
            R::MalformedPacket,
        );
        at_client(
            v,
            b"\x00\x00",
            E::ReservedPacketType { packet_type: 0 },
            R::MalformedPacket,
        );
    }
    for v in [V3_1, V3_1_1] {
        at_server(
            v,
            b"\xf0\x00",
            E::ReservedPacketType { packet_type: 15 },
            R::MalformedPacket,
        );
    }
}

#[test]
fn invalid_fixed_header_flags() {
    let flags = |packet, flags| E::InvalidFlags { packet, flags };
    for v in [V3_1_1, V5] {
        at_server(
            v,
            b"\x80\x08\x00\x01\x00\x03a/b\x00",
            flags(T::Subscribe, 0),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x83\x08\x00\x01\x00\x03a/b\x00",
            flags(T::Subscribe, 3),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x8a\x08\x00\x01\x00\x03a/b\x00",
            flags(T::Subscribe, 10),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\xa0\x07\x00\x01\x00\x03a/b",
            flags(T::Unsubscribe, 0),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x60\x02\x00\x01",
            flags(T::PubRel, 0),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x41\x02\x00\x01",
            flags(T::PubAck, 1),
            R::MalformedPacket,
        );
        at_server(v, b"\xc1\x00", flags(T::PingReq, 1), R::MalformedPacket);
        at_server(v, b"\xe2\x00", flags(T::Disconnect, 2), R::MalformedPacket);
        // PUBLISH with QoS 3, and with DUP at QoS 0.
        at_server(
            v,
            b"\x36\x07\x00\x03a/bhi",
            flags(T::Publish, 6),
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x38\x07\x00\x03a/bhi",
            flags(T::Publish, 8),
            R::MalformedPacket,
        );
        at_client(
            v,
            b"\x21\x02\x00\x00",
            flags(T::ConnAck, 1),
            R::MalformedPacket,
        );
    }
    // 3.1 allows DUP on SUBSCRIBE but nothing else extra.
    at_server(
        V3_1,
        b"\x8b\x08\x00\x01\x00\x03a/b\x00",
        flags(T::Subscribe, 11),
        R::MalformedPacket,
    );
    at_server(
        V3_1,
        b"\x88\x08\x00\x01\x00\x03a/b\x00",
        flags(T::Subscribe, 8),
        R::MalformedPacket,
    );
    at_server(V5, b"\xf1\x00", flags(T::Auth, 1), R::MalformedPacket);
    connect(b"\x11\x00", flags(T::Connect, 1), R::MalformedPacket, None);
}

#[test]
fn remaining_length_encoding() {
    let bad = E::MalformedVarInt {
        field: "remaining length",
    };
    // Five bytes: fails as soon as the fourth has its continuation bit.
    at_server(V5, b"\x30\xff\xff\xff\xff", bad.clone(), R::MalformedPacket);
    // Non-minimal encodings of 0 and of 5.
    at_server(V5, b"\xc0\x80\x00", bad.clone(), R::MalformedPacket);
    at_server(V3_1_1, b"\x30\x85\x80\x00", bad, R::MalformedPacket);
}

#[test]
fn lengths_that_do_not_add_up() {
    for v in [V3_1_1, V5] {
        // A topic length past the end of the packet.
        at_server(
            v,
            b"\x30\x02\x00\x05",
            E::Truncated { packet: T::Publish },
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\x40\x01\x00",
            E::Truncated { packet: T::PubAck },
            R::MalformedPacket,
        );
        at_server(
            v,
            b"\xc0\x01\x00",
            E::TrailingBytes { packet: T::PingReq },
            R::MalformedPacket,
        );
        // A filter without its options byte.
        at_server(
            v,
            b"\x82\x07\x00\x01\x00\x03a/b",
            E::Truncated {
                packet: T::Subscribe,
            },
            R::MalformedPacket,
        );
    }
    at_server(
        V3_1_1,
        b"\x40\x03\x00\x01\x00",
        E::TrailingBytes { packet: T::PubAck },
        R::MalformedPacket,
    );
    at_server(
        V3_1_1,
        b"\xe0\x01\x00",
        E::TrailingBytes {
            packet: T::Disconnect,
        },
        R::MalformedPacket,
    );
    at_client(
        V3_1_1,
        b"\x20\x03\x00\x00\x00",
        E::TrailingBytes { packet: T::ConnAck },
        R::MalformedPacket,
    );
    at_client(
        V3_1_1,
        b"\xb0\x03\x00\x01\x00",
        E::TrailingBytes {
            packet: T::UnsubAck,
        },
        R::MalformedPacket,
    );
    // A property length longer than the packet.
    at_server(
        V5,
        b"\x30\x07\x00\x03a/b\x09\x01",
        E::Truncated { packet: T::Publish },
        R::MalformedPacket,
    );
    // A property value longer than the property length.
    at_server(
        V5,
        b"\x30\x0a\x00\x03a/b\x02\x02\x00\x00\x00",
        E::Truncated { packet: T::Publish },
        R::MalformedPacket,
    );
    // MQTT 5 CONNACK needs its property length.
    at_client(
        V5,
        b"\x20\x02\x00\x00",
        E::Truncated { packet: T::ConnAck },
        R::MalformedPacket,
    );
    // AUTH with a reason code but no property length.
    at_server(
        V5,
        b"\xf0\x01\x18",
        E::Truncated { packet: T::Auth },
        R::MalformedPacket,
    );
}

#[test]
fn packets_the_receiving_end_never_gets() {
    let unexpected = |packet, why| E::UnexpectedPacket { packet, why };
    for v in [V3_1, V3_1_1, V5] {
        let servers_only = "only servers send it";
        at_server(
            v,
            b"\x20\x02\x00\x00",
            unexpected(T::ConnAck, servers_only),
            R::ProtocolError,
        );
        at_server(
            v,
            b"\x90\x03\x00\x01\x00",
            unexpected(T::SubAck, servers_only),
            R::ProtocolError,
        );
        at_server(
            v,
            b"\xb0\x02\x00\x01",
            unexpected(T::UnsubAck, servers_only),
            R::ProtocolError,
        );
        at_server(
            v,
            b"\xd0\x00",
            unexpected(T::PingResp, servers_only),
            R::ProtocolError,
        );
        at_server(
            v,
            &connect_bytes(v),
            unexpected(T::Connect, "a second CONNECT"),
            R::ProtocolError,
        );
        let clients_only = "only clients send it";
        at_client(
            v,
            &connect_bytes(v),
            unexpected(T::Connect, clients_only),
            R::ProtocolError,
        );
        at_client(
            v,
            b"\x82\x08\x00\x01\x00\x03a/b\x00",
            unexpected(T::Subscribe, clients_only),
            R::ProtocolError,
        );
        at_client(
            v,
            b"\xa2\x07\x00\x01\x00\x03a/b",
            unexpected(T::Unsubscribe, clients_only),
            R::ProtocolError,
        );
        at_client(
            v,
            b"\xc0\x00",
            unexpected(T::PingReq, clients_only),
            R::ProtocolError,
        );
    }
    at_client(
        V3_1_1,
        b"\xe0\x00",
        unexpected(T::Disconnect, "MQTT 3 servers do not send DISCONNECT"),
        R::ProtocolError,
    );
}

#[test]
fn first_packet_must_be_connect() {
    let first = "the first packet must be CONNECT";
    connect(
        b"\xc0\x00",
        E::UnexpectedPacket {
            packet: T::PingReq,
            why: first,
        },
        R::ProtocolError,
        None,
    );
    connect(
        b"\x30\x07\x00\x03a/bhi",
        E::UnexpectedPacket {
            packet: T::Publish,
            why: first,
        },
        R::ProtocolError,
        None,
    );
    connect(
        b"\xf0\x00",
        E::UnexpectedPacket {
            packet: T::Auth,
            why: first,
        },
        R::ProtocolError,
        None,
    );
    connect(
        b"\x00",
        E::ReservedPacketType { packet_type: 0 },
        R::MalformedPacket,
        None,
    );
    // Other protocols fail on their first byte.
    connect(
        b"G",
        E::UnexpectedPacket {
            packet: T::PubAck,
            why: first,
        },
        R::ProtocolError,
        None,
    );
    // A TLS ClientHello starts with 0x16: CONNECT's type with flags 6.
    connect(
        b"\x16\x03\x01",
        E::InvalidFlags {
            packet: T::Connect,
            flags: 6,
        },
        R::MalformedPacket,
        None,
    );
}

// ---- strings -------------------------------------------------------------------------

#[test]
fn ill_formed_strings() {
    let bad = |field| E::MalformedString { field };
    for v in [V3_1_1, V5] {
        at_server(
            v,
            b"\x30\x06\x00\x02\xc3\x28hi",
            bad("topic name"),
            R::MalformedPacket,
        );
        // U+0000.
        at_server(
            v,
            b"\x30\x07\x00\x03a\x00bhi",
            bad("topic name"),
            R::MalformedPacket,
        );
        // An encoded surrogate, U+D800.
        at_server(
            v,
            b"\x30\x05\x00\x03\xed\xa0\x80",
            bad("topic name"),
            R::MalformedPacket,
        );
        // An overlong encoding of '/'.
        at_server(
            v,
            b"\x30\x04\x00\x02\xc0\xaf",
            bad("topic name"),
            R::MalformedPacket,
        );
    }
    at_server(
        V3_1_1,
        b"\x82\x06\x00\x01\x00\x01\xff\x00",
        bad("topic filter"),
        R::MalformedPacket,
    );
    at_server(
        V5,
        b"\x82\x07\x00\x01\x00\x00\x01\xff\x00",
        bad("topic filter"),
        R::MalformedPacket,
    );
    at_server(
        V5,
        b"\x30\x0d\x00\x03a/b\x07\x26\x00\x01\xff\x00\x01v",
        bad("User Property name"),
        R::MalformedPacket,
    );
    at_server(
        V5,
        b"\x30\x0d\x00\x03a/b\x07\x26\x00\x01k\x00\x01\x00",
        bad("User Property value"),
        R::MalformedPacket,
    );
    at_client(
        V5,
        b"\x20\x08\x00\x00\x05\x1f\x00\x02\xc3\x28",
        bad("Reason String"),
        R::MalformedPacket,
    );
    connect(
        b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03\xed\xa0\x80",
        bad("client identifier"),
        R::MalformedPacket,
        None,
    );
}

// ---- CONNECT -------------------------------------------------------------------------

#[test]
fn connect_protocol_name_and_level() {
    connect(
        b"\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01c",
        E::UnknownProtocolName,
        R::UnsupportedProtocolVersion,
        None,
    );
    for (bytes, level) in [
        (&b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01c"[..], 6),
        (b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01c", 3),
        (b"\x10\x0f\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01c", 4),
        // A Mosquitto bridge's "try private" bit is not a version.
        (b"\x10\x0d\x00\x04MQTT\x84\x02\x00\x3c\x00\x01c", 0x84),
    ] {
        connect(
            bytes,
            E::UnsupportedProtocolLevel { level },
            R::UnsupportedProtocolVersion,
            Some(ConnectReturnCode::UnacceptableProtocolVersion),
        );
    }
    let mut dec = Decoder::server(Limits::default());
    let _ = dec.decode(&mut bytes::BytesMut::from(
        &b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01c"[..],
    ));
    assert_eq!(dec.version(), None);
}

#[test]
fn connect_flags() {
    connect(
        b"\x10\x0d\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c",
        E::ReservedBits {
            field: "CONNECT flags",
        },
        R::MalformedPacket,
        None,
    );
    // The version is known once the level is read, even though CONNECT failed.
    let mut dec = Decoder::server(Limits::default());
    let _ = dec.decode(&mut bytes::BytesMut::from(
        &b"\x10\x0e\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x01c"[..],
    ));
    assert_eq!(dec.version(), Some(V5));
    for flags in [
        0x1e, // will QoS 3
        0x0a, // will QoS 1 without will
        0x22, // will retain without will
    ] {
        let bytes = [
            b"\x10\x0d\x00\x04MQTT\x04".as_slice(),
            &[flags],
            b"\x00\x3c\x00\x01c",
        ]
        .concat();
        connect(&bytes, E::InvalidWillFlags, R::MalformedPacket, None);
    }
    connect(
        b"\x10\x0f\x00\x04MQTT\x04\x42\x00\x3c\x00\x01c\x00\x00",
        E::PasswordWithoutUsername,
        R::MalformedPacket,
        None,
    );
    connect(
        b"\x10\x11\x00\x06MQIsdp\x03\x42\x00\x3c\x00\x01c\x00\x00",
        E::PasswordWithoutUsername,
        R::MalformedPacket,
        None,
    );
}

#[test]
fn connect_missing_and_extra_fields() {
    let truncated = E::Truncated { packet: T::Connect };
    // Will flag without will topic and payload.
    connect(
        b"\x10\x0d\x00\x04MQTT\x04\x06\x00\x3c\x00\x01c",
        truncated.clone(),
        R::MalformedPacket,
        None,
    );
    // User name flag without a user name.
    connect(
        b"\x10\x0d\x00\x04MQTT\x04\x82\x00\x3c\x00\x01c",
        truncated,
        R::MalformedPacket,
        None,
    );
    connect(
        b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01cX",
        E::TrailingBytes { packet: T::Connect },
        R::MalformedPacket,
        None,
    );
}

#[test]
fn connect_client_identifier() {
    let rejected = |why| E::ClientIdRejected { why };
    let code = Some(ConnectReturnCode::IdentifierRejected);
    connect(
        b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00",
        rejected("an empty client identifier requires clean session"),
        R::ClientIdentifierNotValid,
        code,
    );
    connect(
        b"\x10\x0e\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00",
        rejected("MQTT 3.1 requires a client identifier"),
        R::ClientIdentifierNotValid,
        code,
    );
    let long = [
        b"\x10\x26\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x18".as_slice(),
        &[b'x'; 24],
    ]
    .concat();
    connect(
        &long,
        rejected("MQTT 3.1 allows at most 23 bytes"),
        R::ClientIdentifierNotValid,
        code,
    );
    // A malformed packet is reported as such, not as a bad identifier.
    connect(
        b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x3c\x00\x00X",
        E::TrailingBytes { packet: T::Connect },
        R::MalformedPacket,
        None,
    );
}

#[test]
fn connect_v5_properties() {
    // Authentication Data without Authentication Method.
    connect(
        b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3c\x04\x16\x00\x01x\x00\x01c",
        E::MissingProperty {
            property: PropertyId::AuthenticationMethod,
        },
        R::ProtocolError,
        None,
    );
    // A Will property in CONNECT's own properties.
    connect(
        b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x05\x18\x00\x00\x00\x01\x00\x01c",
        E::PropertyNotAllowed {
            property: PropertyId::WillDelayInterval,
            context: PropertyContext::Connect,
        },
        R::MalformedPacket,
        None,
    );
    // A CONNECT property in the Will properties.
    connect(
        b"\x10\x19\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01c\x05\x11\x00\x00\x00\x01\x00\x01t\x00\x00",
        E::PropertyNotAllowed {
            property: PropertyId::SessionExpiryInterval,
            context: PropertyContext::Will,
        },
        R::MalformedPacket,
        None,
    );
    let invalid = |property| E::InvalidPropertyValue { property };
    for (props, err) in [
        (
            &b"\x03\x21\x00\x00"[..],
            invalid(PropertyId::ReceiveMaximum),
        ),
        (
            b"\x05\x27\x00\x00\x00\x00",
            invalid(PropertyId::MaximumPacketSize),
        ),
        (
            b"\x02\x17\x02",
            invalid(PropertyId::RequestProblemInformation),
        ),
        (
            b"\x02\x19\x05",
            invalid(PropertyId::RequestResponseInformation),
        ),
        (
            b"\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02",
            E::DuplicateProperty {
                property: PropertyId::SessionExpiryInterval,
            },
        ),
    ] {
        let reason = R::ProtocolError;
        let bytes = connect_v5_with_properties(props);
        connect(&bytes, err, reason, None);
    }
    connect(
        &connect_v5_with_properties(b"\x02\x05\x00"),
        E::UnknownProperty { id: 5 },
        R::MalformedPacket,
        None,
    );
    connect(
        &connect_v5_with_properties(b"\x03\x80\x00\x00"),
        E::MalformedVarInt {
            field: "property identifier",
        },
        R::MalformedPacket,
        None,
    );
    connect(
        &connect_v5_with_properties(b"\x03\xa6\x80\x00"),
        E::MalformedVarInt {
            field: "property identifier",
        },
        R::MalformedPacket,
        None,
    );
}

fn connect_v5_with_properties(props: &[u8]) -> Vec<u8> {
    let body = [
        b"\x00\x04MQTT\x05\x02\x00\x3c".as_slice(),
        props,
        b"\x00\x01c",
    ]
    .concat();
    [&[0x10, body.len() as u8][..], &body].concat()
}

#[test]
fn connect_will_topic() {
    connect(
        b"\x10\x12\x00\x04MQTT\x04\x06\x00\x3c\x00\x01c\x00\x01#\x00\x00",
        E::InvalidTopicName(TopicError::WildcardInName),
        R::ProtocolError,
        None,
    );
    connect(
        b"\x10\x11\x00\x04MQTT\x04\x06\x00\x3c\x00\x01c\x00\x00\x00\x00",
        E::InvalidTopicName(TopicError::Empty),
        R::ProtocolError,
        None,
    );
    // A Will Response Topic is a topic name too.
    connect(
        b"\x10\x18\x00\x04MQTT\x05\x06\x00\x3c\x00\x00\x01c\x04\x08\x00\x01+\x00\x01t\x00\x00",
        E::InvalidTopicName(TopicError::WildcardInName),
        R::ProtocolError,
        None,
    );
}

// ---- PUBLISH -------------------------------------------------------------------------

#[test]
fn publish_rules() {
    for v in [V3_1, V3_1_1, V5] {
        // The same PUBLISH in each version: MQTT 5 adds an empty property list.
        let publish = |first: u8, fields: &[u8]| {
            let props: &[u8] = if v == V5 { b"\x00" } else { b"" };
            let body = [fields, props, b"hi"].concat();
            [&[first, body.len() as u8][..], &body].concat()
        };
        let wildcard = E::InvalidTopicName(TopicError::WildcardInName);
        at_server(
            v,
            &publish(0x32, b"\x00\x03a/b\x00\x00"),
            E::ZeroPacketId { packet: T::Publish },
            R::ProtocolError,
        );
        at_server(
            v,
            &publish(0x30, b"\x00\x03a/+"),
            wildcard.clone(),
            R::ProtocolError,
        );
        at_server(
            v,
            &publish(0x30, b"\x00\x03#/b"),
            wildcard.clone(),
            R::ProtocolError,
        );
        at_server(
            v,
            &publish(0x30, b"\x00\x01#"),
            wildcard.clone(),
            R::ProtocolError,
        );
        at_client(
            v,
            &publish(0x30, b"\x00\x03a/+"),
            wildcard,
            R::ProtocolError,
        );
        at_server(
            v,
            &publish(0x30, b"\x00\x00"),
            E::InvalidTopicName(TopicError::Empty),
            R::ProtocolError,
        );
    }
    // MQTT 5: an empty topic needs a Topic Alias.
    at_server(
        V5,
        b"\x30\x05\x00\x00\x00hi",
        E::InvalidTopicName(TopicError::Empty),
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x30\x08\x00\x00\x03\x23\x00\x00hi",
        E::TopicAliasZero,
        R::TopicAliasInvalid,
    );
    at_server(
        V5,
        b"\x30\x0c\x00\x03a/b\x06\x23\x00\x01\x23\x00\x02",
        E::DuplicateProperty {
            property: PropertyId::TopicAlias,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x30\x08\x00\x03a/b\x02\x01\x02",
        E::InvalidPropertyValue {
            property: PropertyId::PayloadFormatIndicator,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x30\x0a\x00\x03a/b\x04\x08\x00\x01#",
        E::InvalidTopicName(TopicError::WildcardInName),
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x30\x0b\x00\x03a/b\x05\x11\x00\x00\x00\x01",
        E::PropertyNotAllowed {
            property: PropertyId::SessionExpiryInterval,
            context: PropertyContext::Publish,
        },
        R::MalformedPacket,
    );
    // Subscription Identifiers come only from servers, and never 0.
    at_server(
        V5,
        b"\x30\x08\x00\x03a/b\x02\x0b\x01",
        E::PropertyFromWrongSide {
            property: PropertyId::SubscriptionIdentifier,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x30\x08\x00\x03a/b\x02\x0b\x00",
        E::InvalidPropertyValue {
            property: PropertyId::SubscriptionIdentifier,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x30\x0b\x00\x03a/b\x05\x0b\x80\x80\x80\x80",
        E::MalformedVarInt {
            field: "Subscription Identifier",
        },
        R::MalformedPacket,
    );
    // A non-minimal property length.
    at_server(
        V5,
        b"\x30\x07\x00\x03a/b\x80\x00",
        E::MalformedVarInt {
            field: "property length",
        },
        R::MalformedPacket,
    );
}

// ---- acknowledgements ----------------------------------------------------------------

#[test]
fn ack_rules() {
    for (first, packet) in [
        (0x40u8, T::PubAck),
        (0x50, T::PubRec),
        (0x62, T::PubRel),
        (0x70, T::PubComp),
    ] {
        for v in [V3_1_1, V5] {
            at_server(
                v,
                &[first, 2, 0, 0],
                E::ZeroPacketId { packet },
                R::ProtocolError,
            );
        }
        // 0x03 is no reason code; 0x11 is UNSUBACK's.
        for code in [0x03u8, 0x11] {
            at_server(
                V5,
                &[first, 3, 0, 1, code],
                E::InvalidReasonCode { packet, code },
                R::ProtocolError,
            );
        }
    }
    // Reason codes of the other pair.
    at_server(
        V5,
        b"\x40\x03\x00\x01\x92",
        E::InvalidReasonCode {
            packet: T::PubAck,
            code: 0x92,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x62\x03\x00\x01\x10",
        E::InvalidReasonCode {
            packet: T::PubRel,
            code: 0x10,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x40\x07\x00\x01\x00\x03\x23\x00\x01",
        E::PropertyNotAllowed {
            property: PropertyId::TopicAlias,
            context: PropertyContext::PubAck,
        },
        R::MalformedPacket,
    );
    at_server(
        V5,
        b"\x50\x0c\x00\x01\x00\x08\x1f\x00\x01a\x1f\x00\x01b",
        E::DuplicateProperty {
            property: PropertyId::ReasonString,
        },
        R::ProtocolError,
    );
}

// ---- SUBSCRIBE and UNSUBSCRIBE -----------------------------------------------------

#[test]
fn subscribe_rules() {
    for v in [V3_1_1, V5] {
        let pre: &[u8] = if v == V5 {
            b"\x00\x01\x00"
        } else {
            b"\x00\x01"
        };
        let sub = |payload: &[u8]| {
            let body = [pre, payload].concat();
            [&[0x82, body.len() as u8][..], &body].concat()
        };
        at_server(
            v,
            &sub(b""),
            E::EmptyPayload {
                packet: T::Subscribe,
            },
            R::ProtocolError,
        );
        at_server(
            v,
            b"\x82\x07\x00\x00\x00\x02a/\x00",
            E::ZeroPacketId {
                packet: T::Subscribe,
            },
            R::ProtocolError,
        );
        at_server(
            v,
            &sub(b"\x00\x03a/b\x03"),
            E::InvalidSubscriptionQos,
            R::ProtocolError,
        );
        at_server(
            v,
            &sub(b"\x00\x03a/b\xc0"),
            E::ReservedBits {
                field: "subscription options",
            },
            R::MalformedPacket,
        );
        at_server(
            v,
            &sub(b"\x00\x00\x00"),
            E::InvalidTopicFilter(TopicError::Empty),
            R::ProtocolError,
        );
        for filter in [&b"a/b#"[..], b"a/#/b", b"a+/b", b"++"] {
            let payload = [&[0, filter.len() as u8][..], filter, b"\x00"].concat();
            at_server(
                v,
                &sub(&payload),
                E::InvalidTopicFilter(TopicError::MisplacedWildcard),
                R::ProtocolError,
            );
        }
        for filter in [&b"$share/g"[..], b"$share//a", b"$share/g+/a", b"$share/g/"] {
            let payload = [&[0, filter.len() as u8][..], filter, b"\x00"].concat();
            at_server(
                v,
                &sub(&payload),
                E::InvalidTopicFilter(TopicError::InvalidSharedSubscription),
                R::ProtocolError,
            );
        }
        // Every filter is checked, not only the first.
        at_server(
            v,
            &sub(b"\x00\x01a\x00\x00\x01#\x00\x00\x02#a\x00"),
            E::InvalidTopicFilter(TopicError::MisplacedWildcard),
            R::ProtocolError,
        );
    }
    // MQTT 3: every bit above the QoS is reserved.
    for byte in [0x04u8, 0x08, 0x10, 0x80] {
        let bytes = [b"\x82\x08\x00\x01\x00\x03a/b".as_slice(), &[byte]].concat();
        at_server(
            V3_1_1,
            &bytes,
            E::ReservedBits {
                field: "subscription options",
            },
            R::MalformedPacket,
        );
    }
    // MQTT 5: bits 6 and 7 are reserved, Retain Handling 3 is an error.
    at_server(
        V5,
        b"\x82\x09\x00\x01\x00\x00\x03a/b\x40",
        E::ReservedBits {
            field: "subscription options",
        },
        R::MalformedPacket,
    );
    at_server(
        V5,
        b"\x82\x09\x00\x01\x00\x00\x03a/b\x30",
        E::InvalidRetainHandling,
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04",
        E::NoLocalOnSharedSubscription,
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00",
        E::InvalidPropertyValue {
            property: PropertyId::SubscriptionIdentifier,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00",
        E::DuplicateProperty {
            property: PropertyId::SubscriptionIdentifier,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\x82\x09\x00\x01\x02\x1f\x00\x00\x01a\x00",
        E::PropertyNotAllowed {
            property: PropertyId::ReasonString,
            context: PropertyContext::Subscribe,
        },
        R::MalformedPacket,
    );
}

#[test]
fn unsubscribe_rules() {
    at_server(
        V3_1_1,
        b"\xa2\x02\x00\x01",
        E::EmptyPayload {
            packet: T::Unsubscribe,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\xa2\x03\x00\x01\x00",
        E::EmptyPayload {
            packet: T::Unsubscribe,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\xa2\x08\x00\x00\x00\x00\x03a/b",
        E::ZeroPacketId {
            packet: T::Unsubscribe,
        },
        R::ProtocolError,
    );
    at_server(
        V3_1_1,
        b"\xa2\x06\x00\x01\x00\x02a#",
        E::InvalidTopicFilter(TopicError::MisplacedWildcard),
        R::ProtocolError,
    );
}

// ---- server-to-client packets ----------------------------------------------------------

#[test]
fn connack_rules() {
    at_client(
        V3_1_1,
        b"\x20\x02\x02\x00",
        E::ReservedBits {
            field: "CONNACK acknowledge flags",
        },
        R::MalformedPacket,
    );
    // 3.1 has no session present bit.
    at_client(
        V3_1,
        b"\x20\x02\x01\x00",
        E::ReservedBits {
            field: "CONNACK acknowledge flags",
        },
        R::MalformedPacket,
    );
    at_client(
        V3_1_1,
        b"\x20\x02\x00\x06",
        E::InvalidReasonCode {
            packet: T::ConnAck,
            code: 6,
        },
        R::ProtocolError,
    );
    at_client(
        V3_1_1,
        b"\x20\x02\x01\x05",
        E::SessionPresentWithError,
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x20\x03\x01\x87\x00",
        E::SessionPresentWithError,
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x20\x03\x00\x10\x00",
        E::InvalidReasonCode {
            packet: T::ConnAck,
            code: 0x10,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x20\x05\x00\x00\x02\x24\x02",
        E::InvalidPropertyValue {
            property: PropertyId::MaximumQos,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x20\x05\x00\x00\x02\x25\x02",
        E::InvalidPropertyValue {
            property: PropertyId::RetainAvailable,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x20\x06\x00\x00\x03\x23\x00\x01",
        E::PropertyNotAllowed {
            property: PropertyId::TopicAlias,
            context: PropertyContext::ConnAck,
        },
        R::MalformedPacket,
    );
}

#[test]
fn suback_and_unsuback_rules() {
    at_client(
        V3_1_1,
        b"\x90\x02\x00\x01",
        E::EmptyPayload { packet: T::SubAck },
        R::ProtocolError,
    );
    at_client(
        V3_1_1,
        b"\x90\x03\x00\x01\x03",
        E::InvalidReasonCode {
            packet: T::SubAck,
            code: 3,
        },
        R::ProtocolError,
    );
    at_client(
        V3_1_1,
        b"\x90\x03\x00\x01\x87",
        E::InvalidReasonCode {
            packet: T::SubAck,
            code: 0x87,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x90\x03\x00\x01\x00",
        E::EmptyPayload { packet: T::SubAck },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\x90\x04\x00\x01\x00\x10",
        E::InvalidReasonCode {
            packet: T::SubAck,
            code: 0x10,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\xb0\x03\x00\x01\x00",
        E::EmptyPayload {
            packet: T::UnsubAck,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\xb0\x04\x00\x01\x00\x02",
        E::InvalidReasonCode {
            packet: T::UnsubAck,
            code: 2,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\xb0\x04\x00\x00\x00\x00",
        E::ZeroPacketId {
            packet: T::UnsubAck,
        },
        R::ProtocolError,
    );
}

#[test]
fn disconnect_rules() {
    // Server-only codes from a client, and the client-only code from a server.
    for code in [0x8eu8, 0x8b, 0x89, 0x9c, 0x87] {
        at_server(
            V5,
            &[0xe0, 1, code],
            E::InvalidReasonCode {
                packet: T::Disconnect,
                code,
            },
            R::ProtocolError,
        );
        assert!(decode_one(Role::Client, V5, &[0xe0, 1, code]).is_ok());
    }
    at_client(
        V5,
        b"\xe0\x01\x04",
        E::InvalidReasonCode {
            packet: T::Disconnect,
            code: 4,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\xe0\x01\x10",
        E::InvalidReasonCode {
            packet: T::Disconnect,
            code: 0x10,
        },
        R::ProtocolError,
    );
    // Only a client may change the session expiry on the way out.
    at_client(
        V5,
        b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00",
        E::PropertyFromWrongSide {
            property: PropertyId::SessionExpiryInterval,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\xe0\x06\x00\x04\x24\x00\x00\x00",
        E::PropertyNotAllowed {
            property: PropertyId::MaximumQos,
            context: PropertyContext::Disconnect,
        },
        R::MalformedPacket,
    );
}

#[test]
fn auth_rules() {
    at_server(
        V5,
        b"\xf0\x02\x18\x00",
        E::MissingProperty {
            property: PropertyId::AuthenticationMethod,
        },
        R::ProtocolError,
    );
    at_server(
        V5,
        b"\xf0\x02\x10\x00",
        E::InvalidReasonCode {
            packet: T::Auth,
            code: 0x10,
        },
        R::ProtocolError,
    );
    at_client(
        V5,
        b"\xf0\x0a\x18\x08\x15\x00\x01M\x15\x00\x01N",
        E::DuplicateProperty {
            property: PropertyId::AuthenticationMethod,
        },
        R::ProtocolError,
    );
}
