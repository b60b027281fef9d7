//! The MQTT wire codec: bytes to [`Packet`]s with [`Decoder`], packets to
//! bytes with [`Encoder`]. No I/O and no clocks: the connection task owns the
//! socket and the read buffer and calls [`Decoder::decode`] after each read.
//!
//! # Decoding
//!
//! A packet is a fixed header (type and flags in one byte, then the
//! Remaining Length as a one- to four-byte variable byte integer) and a body
//! of Remaining Length bytes. The decoder works in three steps, each only
//! once its bytes are buffered:
//!
//! 1. **First byte.** The packet type must exist in the version, be one this
//!    end receives (a server never receives CONNACK; the first packet must
//!    be CONNECT, and only the first) and carry the flags its type requires.
//!    A peer speaking another protocol fails here, on its first byte.
//! 2. **Remaining Length.** At most four bytes, minimally encoded. The whole
//!    packet's size is then compared with the configured maximum (a smaller
//!    one for CONNECT), *before* any of the body is buffered. Nothing is
//!    reserved in the buffer for the announced size either: a peer that
//!    announces 16 MiB and sends nothing costs nothing.
//! 3. **Body.** Once the whole packet is buffered it is split off the read
//!    buffer and frozen, and the body is parsed from that frozen `Bytes`.
//!    Topic names and other strings are `ByteString` slices of it, binary
//!    fields and the PUBLISH payload `Bytes` slices: no copies. Each packet
//!    family's rules are in its own file under `packet/`.
//!
//! Until a whole packet is buffered `decode` returns `Ok(None)` and takes
//! nothing from the buffer; re-parsing the at most five header bytes on the
//! next call is cheaper than keeping state. Every check is a function of the
//! bytes alone, so the same input gives the same packets and the same error
//! whatever the read sizes; the tests check every split point.
//!
//! # Versions
//!
//! A server-side decoder starts without a version: it accepts only CONNECT,
//! whose layout up to the protocol level is the same in every version, and
//! takes the version from it. A client-side decoder is given the version it
//! sent in its own CONNECT.
//!
//! # Errors
//!
//! Every error is fatal to the connection; see [`DecodeError`] for what to
//! send before closing. After an error the decoder must not be used for
//! that connection again (it will not panic, but what it yields is
//! meaningless).
//!
//! # Encoding
//!
//! [`Encoder`] writes into a `BytesMut` in one pass after computing the size,
//! so `out` grows at most once and nothing else is allocated. It refuses a
//! packet that would exceed the peer's Maximum Packet Size, writing nothing,
//! so that the session can apply MQTT 5's rules: drop the Reason String and
//! User Properties of an acknowledgement ([`Packet::strip_diagnostics`]) or
//! skip a PUBLISH. [`Encoder::encode_publish_header`] writes a PUBLISH
//! without its payload, for vectored writes of large payloads.
//!
//! The encoder trusts the packet's content: it checks only what it must to
//! produce a well-framed packet (field lengths, sizes, values that have no
//! wire form). Topic syntax and the like are the session's to get right.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::framing::{check_first_byte, read_remaining_length};
use crate::limits::{Limits, PACKET_SIZE_PROTOCOL_MAX_BYTES, REMAINING_LENGTH_MAX_BYTES};
use crate::packet::{self, DecodeCtx, Packet, PacketType, Publish};
use crate::version::{ProtocolVersion, Role};
use crate::wire::{put_var_int, var_int_len, Reader};

/// Incremental MQTT decoder for one connection.
///
/// # Invariants
///
/// * `version` is `None` only for a server that has not yet decoded a
///   CONNECT's protocol level; once `Some` it never changes.
/// * The decoder keeps no bytes and no partial packet: the read buffer is
///   the only state between calls.
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    version: Option<ProtocolVersion>,
    limits: Limits,
}

impl Decoder {
    /// A server-side decoder: it expects CONNECT first and learns the
    /// version from it.
    pub fn server(limits: Limits) -> Self {
        Self {
            role: Role::Server,
            version: None,
            limits,
        }
    }

    /// A server-side decoder for a connection whose CONNECT of `version` was already
    /// handled (a parked connection taken up again: `park.rs`).
    pub fn server_connected(version: ProtocolVersion, limits: Limits) -> Self {
        Self {
            role: Role::Server,
            version: Some(version),
            limits,
        }
    }

    /// A client-side decoder for a connection that sent a CONNECT with
    /// `version`.
    pub fn client(version: ProtocolVersion, limits: Limits) -> Self {
        Self {
            role: Role::Client,
            version: Some(version),
            limits,
        }
    }

    /// The end this decoder serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The connection's protocol version, once known. For a server this is
    /// set as soon as CONNECT's protocol name and level have been read and
    /// are valid, even if the rest of that CONNECT then fails: it tells the
    /// session which CONNACK format the client understands.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The limits being applied.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits from the next packet on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decodes the next packet from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole packet; then
    /// nothing has been taken from it. Returns an error as soon as the bytes
    /// buffered prove the stream invalid or over a limit.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let (packet_type, flags) = self.check_first_byte(first)?;
        let Some((remaining, len_bytes)) = read_remaining_length(buf.get(1..).unwrap_or_default())?
        else {
            return Ok(None);
        };
        let header_len = 1 + len_bytes;
        let size_bytes = header_len as u64 + u64::from(remaining);
        let max_bytes = if packet_type == PacketType::Connect {
            self.limits.connect_packet_size_max_bytes
        } else {
            self.limits.packet_size_max_bytes
        };
        if size_bytes > u64::from(max_bytes) {
            return Err(DecodeError::PacketTooLarge {
                size_bytes,
                max_bytes,
            });
        }
        // Within the limit, which is a u32, so this fits a usize.
        let size = header_len + remaining as usize;
        if buf.len() < size {
            return Ok(None);
        }
        if remaining == 0 {
            // PINGREQ and friends: nothing to keep, so the buffer need not
            // become shared.
            bytes::Buf::advance(buf, size);
            return self.decode_body(packet_type, flags, Bytes::new()).map(Some);
        }
        let mut frame = buf.split_to(size).freeze();
        let body = frame.split_off(header_len);
        self.decode_body(packet_type, flags, body).map(Some)
    }

    /// Step 1: the packet type, whether this end accepts it now, its flags.
    fn check_first_byte(&self, first: u8) -> Result<(PacketType, u8), DecodeError> {
        let unexpected = |packet, why| Err(DecodeError::UnexpectedPacket { packet, why });
        // Before CONNECT, anything but CONNECT is refused as such, not as
        // whatever its first byte would mean in some version.
        if self.role == Role::Server && self.version.is_none() {
            if first >> 4 != PacketType::Connect as u8 {
                let packet = PacketType::from_nibble(first >> 4);
                return match packet {
                    Some(packet) => unexpected(packet, "the first packet must be CONNECT"),
                    None => Err(DecodeError::ReservedPacketType {
                        packet_type: first >> 4,
                    }),
                };
            }
            return check_first_byte(first, None);
        }
        let (packet_type, flags) = check_first_byte(first, self.version)?;
        if packet_type == PacketType::Connect && self.role == Role::Server {
            return unexpected(packet_type, "a second CONNECT");
        }
        if packet_type.sender() == Some(self.role) {
            return unexpected(
                packet_type,
                match self.role {
                    Role::Server => "only servers send it",
                    Role::Client => "only clients send it",
                },
            );
        }
        if packet_type == PacketType::Disconnect
            && self.role == Role::Client
            && self.version.is_some_and(|v| !v.is_v5())
        {
            return unexpected(packet_type, "MQTT 3 servers do not send DISCONNECT");
        }
        Ok((packet_type, flags))
    }

    /// Step 3: a whole body, split off the buffer.
    fn decode_body(
        &mut self,
        packet_type: PacketType,
        flags: u8,
        body: Bytes,
    ) -> Result<Packet, DecodeError> {
        let mut r = Reader::new(&body, packet_type);
        let version = match self.version {
            Some(v) => v,
            None => {
                let connect = packet::decode_connect(&mut r, &self.limits, &mut self.version)?;
                return Ok(Packet::Connect(Box::new(connect)));
            }
        };
        let ctx = DecodeCtx {
            version,
            role: self.role,
            limits: &self.limits,
            flags,
        };
        packet::decode_body(packet_type, &mut r, &ctx)
    }
}

/// MQTT encoder for one connection: the negotiated version and the peer's
/// Maximum Packet Size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    version: ProtocolVersion,
    packet_size_max_bytes: u32,
}

impl Encoder {
    /// An encoder for `version` with no peer limit beyond the protocol's.
    pub fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            packet_size_max_bytes: PACKET_SIZE_PROTOCOL_MAX_BYTES,
        }
    }

    /// Sets the peer's Maximum Packet Size (from its CONNECT or CONNACK).
    pub fn set_packet_size_max_bytes(&mut self, max_bytes: u32) {
        self.packet_size_max_bytes = max_bytes;
    }

    /// The peer's Maximum Packet Size being enforced.
    pub fn packet_size_max_bytes(&self) -> u32 {
        self.packet_size_max_bytes
    }

    /// The version encoded for.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The size of `packet` once encoded, fixed header included, without
    /// checking the peer's maximum.
    pub fn encoded_len(&self, packet: &Packet) -> Result<usize, EncodeError> {
        let remaining = packet.body().body_len(self.version)?;
        total_len(remaining)
    }

    /// Appends `packet` to `out` and returns the bytes written. On error
    /// nothing is written.
    ///
    /// A CONNECT is encoded in its own `version` field's version.
    pub fn encode(&self, packet: &Packet, out: &mut BytesMut) -> Result<usize, EncodeError> {
        let body = packet.body();
        let remaining = body.body_len(self.version)?;
        let total = self.check_size(remaining)?;
        out.reserve(total);
        out.put_u8(packet.first_byte());
        put_var_int(out, remaining as u32);
        body.write_body(self.version, out);
        debug_assert_eq!(total, 1 + var_int_len(remaining as u32) + remaining);
        Ok(total)
    }

    /// Appends a PUBLISH's fixed header, variable header and properties to
    /// `out`, but not its payload: the caller sends `publish.payload` right
    /// after, as its own buffer. Returns the bytes written. The size checked
    /// against the peer's maximum includes the payload.
    pub fn encode_publish_header(
        &self,
        publish: &Publish,
        out: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        use crate::packet::Encode as _;
        let remaining = publish.body_len(self.version)?;
        self.check_size(remaining)?;
        let header_len = 1 + var_int_len(remaining as u32) + remaining - publish.payload.len();
        out.reserve(header_len);
        out.put_u8(((PacketType::Publish as u8) << 4) | publish.flags());
        put_var_int(out, remaining as u32);
        publish.write_header_fields(self.version, out);
        Ok(header_len)
    }

    /// Checks a Remaining Length against the protocol and the peer; returns
    /// the whole packet's size.
    fn check_size(&self, remaining: usize) -> Result<usize, EncodeError> {
        let total = total_len(remaining)?;
        if total as u64 > u64::from(self.packet_size_max_bytes) {
            return Err(EncodeError::PacketTooLarge {
                size_bytes: total as u64,
                max_bytes: self.packet_size_max_bytes,
            });
        }
        Ok(total)
    }
}

/// The whole packet's size for a Remaining Length, or an error if the
/// Remaining Length cannot be encoded.
fn total_len(remaining: usize) -> Result<usize, EncodeError> {
    match u32::try_from(remaining) {
        Ok(r) if r <= REMAINING_LENGTH_MAX_BYTES => Ok(1 + var_int_len(r) + remaining),
        _ => Err(EncodeError::PacketTooLarge {
            size_bytes: (remaining as u64).saturating_add(5),
            max_bytes: PACKET_SIZE_PROTOCOL_MAX_BYTES,
        }),
    }
}
