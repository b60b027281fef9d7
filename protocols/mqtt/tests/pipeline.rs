//! Pipelined packets cut at every split point and fed a byte at a time: the
//! decoder must give the same packets (and the same error) whatever the read
//! sizes, and must not copy PUBLISH payloads or topics.

mod common;

use bytes::BytesMut;
use common::*;
use ferromq_mqtt::{DecodeError, Decoder, Limits, Packet, PacketType, ProtocolVersion, Role};

/// Decodes `wire` cut once at `split`.
fn decode_split(mut dec: Decoder, wire: &[u8], split: usize) -> Vec<Result<Packet, DecodeError>> {
    let mut buf = BytesMut::from(&wire[..split]);
    let mut out = drain(&mut dec, &mut buf);
    if matches!(out.last(), Some(Err(_))) {
        return out;
    }
    buf.extend_from_slice(&wire[split..]);
    out.extend(drain(&mut dec, &mut buf));
    if out.iter().all(Result::is_ok) {
        assert!(buf.is_empty(), "split at {split}: {buf:02x?} left");
    }
    out
}

/// Decodes `wire` one byte per read.
fn decode_bytewise(mut dec: Decoder, wire: &[u8]) -> Vec<Result<Packet, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in wire {
        buf.extend_from_slice(&[b]);
        out.extend(drain(&mut dec, &mut buf));
        if matches!(out.last(), Some(Err(_))) {
            break;
        }
    }
    out
}

/// Checks `wire` gives `expected_types` (or ends in `error`) at every split
/// and byte by byte.
fn check_every_split(
    fresh: impl Fn() -> Decoder,
    wire: &[u8],
    expected_types: &[PacketType],
    error: Option<DecodeError>,
) {
    let whole = decode_split(fresh(), wire, wire.len());
    let types: Vec<_> = whole
        .iter()
        .filter_map(|r| r.as_ref().ok().map(Packet::packet_type))
        .collect();
    assert_eq!(types, expected_types, "{whole:?}");
    assert_eq!(whole.last().and_then(|r| r.clone().err()), error);
    for split in 0..=wire.len() {
        assert_eq!(
            decode_split(fresh(), wire, split),
            whole,
            "split at {split}"
        );
    }
    assert_eq!(decode_bytewise(fresh(), wire), whole, "byte by byte");
}

/// A client's side of an MQTT 5 session: CONNECT, SUBSCRIBE, a PUBLISH with
/// properties and a payload long enough for a two-byte Remaining Length,
/// the QoS 2 handshake, AUTH, PINGREQ and DISCONNECT.
fn v5_client_stream() -> Vec<u8> {
    let mut big = cat(&[
        b"\x34\x8a\x01", // QoS 2, Remaining Length 138
        b"\x00\x05big/1",
        b"\x00\x09",
        b"\x02\x01\x00",
    ]);
    big.extend_from_slice(&[0xAB; 138 - 7 - 2 - 1 - 2]);
    cat(&[
        b"\x10\x17\x00\x04MQTT\x05\x02\x00\x3c\x05\x11\x00\x00\x00\x3c\x00\x05cli-1",
        b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03a/#\x01",
        b"\x32\x14\x00\x03a/b\x00\x02\x05\x23\x00\x01\x01\x00payload",
        &big,
        b"\x40\x02\x00\x02",
        b"\x50\x03\x00\x09\x10",
        b"\x62\x02\x00\x09",
        b"\x70\x02\x00\x09",
        b"\xf0\x08\x19\x06\x15\x00\x03ABC",
        b"\xc0\x00",
        b"\xa2\x06\x00\x03\x00\x00\x01#",
        b"\xe0\x01\x04",
    ])
}

#[test]
fn v5_client_to_server_every_split() {
    let wire = v5_client_stream();
    use PacketType::*;
    check_every_split(
        || Decoder::server(Limits::default()),
        &wire,
        &[
            Connect,
            Subscribe,
            Publish,
            Publish,
            PubAck,
            PubRec,
            PubRel,
            PubComp,
            Auth,
            PingReq,
            Unsubscribe,
            Disconnect,
        ],
        None,
    );
}

#[test]
fn v3_1_1_client_to_server_every_split() {
    let wire = cat(&[
        b"\x10\x1b\x00\x04MQTT\x04\xc2\x00\x3c\x00\x03cli\x00\x04user\x00\x04pass",
        b"\x82\x08\x00\x01\x00\x03a/+\x01",
        b"\x30\x07\x00\x03a/bhi",
        b"\x32\x09\x00\x03a/b\x00\x02hi",
        b"\x40\x02\x00\x01",
        b"\xc0\x00",
        b"\xa2\x07\x00\x02\x00\x03a/+",
        b"\xe0\x00",
    ]);
    use PacketType::*;
    check_every_split(
        || Decoder::server(Limits::default()),
        &wire,
        &[
            Connect,
            Subscribe,
            Publish,
            Publish,
            PubAck,
            PingReq,
            Unsubscribe,
            Disconnect,
        ],
        None,
    );
}

#[test]
fn v5_server_to_client_every_split() {
    let wire = cat(&[
        b"\x20\x09\x00\x00\x06\x22\x00\x0a\x21\x00\x05",
        b"\x90\x04\x00\x01\x00\x01",
        b"\x31\x0d\x00\x03a/b\x04\x0b\x07\x01\x00hey",
        b"\x3a\x0c\x00\x03a/b\x00\x05\x00\x00\x01\x00\x00",
        b"\x40\x02\x00\x05",
        b"\xd0\x00",
        b"\xb0\x05\x00\x02\x00\x00\x11",
        b"\xe0\x09\x8b\x07\x1f\x00\x04bye!",
    ]);
    use PacketType::*;
    check_every_split(
        || Decoder::client(ProtocolVersion::V5, Limits::default()),
        &wire,
        &[
            ConnAck, SubAck, Publish, Publish, PubAck, PingResp, UnsubAck, Disconnect,
        ],
        None,
    );
}

/// A stream that goes wrong in its third packet gives the same packets and
/// the same error at every split.
#[test]
fn error_after_good_packets_every_split() {
    let wire = cat(&[
        &connect_bytes(ProtocolVersion::V3_1_1),
        b"\xc0\x00",
        b"\x30\x07\x00\x03a/+hi", // wildcard in a topic name
        b"\xc0\x00",
    ]);
    use PacketType::*;
    check_every_split(
        || Decoder::server(Limits::default()),
        &wire,
        &[Connect, PingReq],
        Some(DecodeError::InvalidTopicName(
            ferromq_mqtt::topic::TopicError::WildcardInName,
        )),
    );
}

#[test]
fn oversize_fails_on_the_header_at_every_split() {
    let limits = Limits {
        packet_size_max_bytes: 100,
        ..Limits::default()
    };
    let mut wire = connect_bytes(ProtocolVersion::V5);
    // A PUBLISH announcing 16 KiB, of which only a few bytes ever arrive.
    wire.extend_from_slice(b"\x30\x80\x80\x01\x00\x01a");
    let err = DecodeError::PacketTooLarge {
        size_bytes: 4 + 16384,
        max_bytes: 100,
    };
    check_every_split(
        || Decoder::server(limits.clone()),
        &wire,
        &[PacketType::Connect],
        Some(err),
    );
}

/// Remaining Lengths of three and four bytes, fed in small reads.
#[test]
fn long_remaining_lengths() {
    for payload_len in [16_384usize - 8, 2_097_152] {
        let mut wire = connect_bytes(ProtocolVersion::V3_1_1);
        let remaining = 5 + payload_len;
        let mut header = vec![0x30];
        let mut r = remaining;
        loop {
            let byte = (r % 128) as u8;
            r /= 128;
            if r == 0 {
                header.push(byte);
                break;
            }
            header.push(byte | 0x80);
        }
        wire.extend_from_slice(&header);
        wire.extend_from_slice(b"\x00\x03a/b");
        wire.resize(wire.len() + payload_len, b'z');
        let mut dec = Decoder::server(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(4093) {
            buf.extend_from_slice(chunk);
            out.extend(drain(&mut dec, &mut buf));
        }
        assert_eq!(out.len(), 2);
        let Some(Ok(Packet::Publish(p))) = out.pop() else {
            panic!("no publish")
        };
        assert_eq!(p.payload.len(), payload_len);
    }
}

#[test]
fn publish_payload_and_topic_share_the_read_buffer() {
    for (role, v) in [
        (Role::Server, ProtocolVersion::V3_1_1),
        (Role::Server, ProtocolVersion::V5),
        (Role::Client, ProtocolVersion::V5),
    ] {
        let mut dec = decoder(role, v, Limits::default());
        let wire: &[u8] = if v == ProtocolVersion::V5 {
            b"\x30\x13\x00\x09topic/one\x00hello!!"
        } else {
            b"\x30\x12\x00\x09topic/onehello!!"
        };
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(wire);
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        let Ok(Some(Packet::Publish(p))) = dec.decode(&mut buf) else {
            panic!("no publish")
        };
        let inside = |ptr: *const u8| (base..end).contains(&(ptr as usize));
        assert_eq!(&p.payload[..], b"hello!!");
        assert!(inside(p.payload.as_ptr()), "payload was copied");
        assert!(inside(p.topic.as_bytes().as_ptr()), "topic was copied");
    }
}

/// Incomplete input takes nothing from the buffer.
#[test]
fn incomplete_input_is_left_in_place() {
    let mut dec = server(ProtocolVersion::V5, Limits::default());
    let wire = b"\x30\x07\x00\x03a/bhi";
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), cut);
    }
}
