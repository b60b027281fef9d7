//! Helpers shared by the integration tests.
#![allow(dead_code)]

use bytes::BytesMut;
use ferromq_mqtt::packet::PacketId;
use ferromq_mqtt::{DecodeError, Decoder, Encoder, Limits, Packet, ProtocolVersion, Role};

/// A minimal CONNECT (client id "c", clean start, keep alive 60) for `v`.
pub fn connect_bytes(v: ProtocolVersion) -> Vec<u8> {
    match v {
        ProtocolVersion::V3_1 => b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01c".to_vec(),
        ProtocolVersion::V3_1_1 => b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c".to_vec(),
        ProtocolVersion::V5 => b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c".to_vec(),
    }
}

/// A server decoder that has already decoded a CONNECT for `v`.
pub fn server(v: ProtocolVersion, limits: Limits) -> Decoder {
    let mut d = Decoder::server(limits);
    let mut buf = BytesMut::from(&connect_bytes(v)[..]);
    match d.decode(&mut buf) {
        Ok(Some(Packet::Connect(_))) => {}
        other => panic!("connect failed: {other:?}"),
    }
    assert!(buf.is_empty());
    d
}

/// A decoder for `role` in version `v`, past CONNECT.
pub fn decoder(role: Role, v: ProtocolVersion, limits: Limits) -> Decoder {
    match role {
        Role::Server => server(v, limits),
        Role::Client => Decoder::client(v, limits),
    }
}

/// Decodes until more bytes are needed; a first error ends the list.
pub fn drain(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Result<Packet, DecodeError>> {
    let mut out = Vec::new();
    loop {
        match dec.decode(buf) {
            Ok(Some(p)) => out.push(Ok(p)),
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

/// Decodes exactly one packet from `bytes` with a decoder for `role`/`v`,
/// insisting that every byte is used.
pub fn decode_one(role: Role, v: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut dec = decoder(role, v, Limits::default());
    let mut buf = BytesMut::from(bytes);
    let mut out = drain(&mut dec, &mut buf);
    assert_eq!(
        out.len(),
        1,
        "expected one result from {bytes:02x?}: {out:?}"
    );
    let result = out.remove(0);
    if result.is_ok() {
        assert!(buf.is_empty(), "left over: {buf:02x?}");
    }
    result
}

/// The error `bytes` produce with a decoder for `role`/`v` and `limits`.
pub fn error_with(role: Role, v: ProtocolVersion, limits: Limits, bytes: &[u8]) -> DecodeError {
    let mut dec = decoder(role, v, limits);
    match drain(&mut dec, &mut BytesMut::from(bytes)).pop() {
        Some(Err(e)) => e,
        other => panic!("expected an error from {bytes:02x?}, got {other:?}"),
    }
}

/// The error a server in version `v` gives for `bytes` with default limits.
pub fn server_error(v: ProtocolVersion, bytes: &[u8]) -> DecodeError {
    error_with(Role::Server, v, Limits::default(), bytes)
}

/// The error a fresh server decoder (no CONNECT yet) gives for `bytes`.
pub fn connect_error(bytes: &[u8]) -> DecodeError {
    let mut dec = Decoder::server(Limits::default());
    match drain(&mut dec, &mut BytesMut::from(bytes)).pop() {
        Some(Err(e)) => e,
        other => panic!("expected an error from {bytes:02x?}, got {other:?}"),
    }
}

/// Encodes `p` for `v` with no peer limit.
pub fn encode(v: ProtocolVersion, p: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    let n = Encoder::new(v).encode(p, &mut out).expect("encodable");
    assert_eq!(n, out.len());
    assert_eq!(Encoder::new(v).encoded_len(p), Ok(n));
    out.to_vec()
}

/// A packet identifier.
pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

/// Bytes from segments, for readable golden packets.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
