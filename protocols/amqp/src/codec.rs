//! Bytes <-> AMQP frames.
//!
//! Framing (type, channel, size, payload, frame-end) is done here, so that the declared
//! size is checked against the negotiated `frame_max` before anything is buffered or
//! parsed, and so that a content body is handed on as a slice of the read buffer
//! (`Bytes`, no copy). Method and content-header payloads are parsed by `amq-protocol`,
//! after `nesting.rs` has bounded how deeply their field tables nest.
//!
//! Encoding of methods goes through `amq-protocol` too; the per-message frames
//! (`basic.deliver`, content header, body) are written by `adapter::wire` straight from
//! the core's message, with the helpers [`begin_frame`] and [`end_frame`].

use amq_protocol::frame::{parsing::parse_content_header, AMQPContentHeader, WriteContext};
use amq_protocol::protocol::{gen_class, parse_class, AMQPClass};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{code, AmqpError};
use crate::nesting;

/// Appends `basic.deliver`, the content header and the body frames of a core message: the
/// per-delivery hot path, written by `adapter::wire`. Exported for the micro-benchmarks.
pub use crate::adapter::wire::deliver as encode_deliver;

/// `AMQP 0-9-1`, the only protocol header accepted, and the one sent back to a client that
/// offers another.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload: type, channel, size, frame-end.
pub const FRAME_OVERHEAD: usize = 8;

/// One decoded frame.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The client's protocol header, which was the right one.
    ProtocolHeader,
    /// A method on a channel (0 for the connection).
    Method(u16, AMQPClass),
    /// A content header.
    Header(u16, AMQPContentHeader),
    /// A piece of content body; a slice of the read buffer.
    Body(u16, Bytes),
    /// A heartbeat.
    Heartbeat,
}

/// Why the byte stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The client sent another protocol header: answer with ours and close.
    ProtocolHeader,
    /// A framing or syntax error: `connection.close` with this error.
    Frame(AmqpError),
}

impl DecodeError {
    fn frame(code: u16, detail: impl std::fmt::Display) -> Self {
        DecodeError::Frame(AmqpError::new(code, detail))
    }
}

/// Splits a byte stream into frames.
///
/// # Invariants
/// - Before the protocol header has been accepted, no frame is decoded.
/// - No frame larger than `frame_max` is buffered beyond its 7-byte header.
#[derive(Debug)]
pub struct Decoder {
    header_seen: bool,
    frame_max: u32,
    table_depth_max: usize,
}

impl Decoder {
    /// A decoder for a new connection.
    pub fn new(frame_max: u32, table_depth_max: usize) -> Self {
        Self {
            header_seen: false,
            frame_max,
            table_depth_max,
        }
    }

    /// The largest frame accepted from now on (after `connection.tune-ok`).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }

    /// The next frame, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if !self.header_seen {
            // Compare what has arrived so far, so that garbage is refused at once instead
            // of waiting for eight bytes that may never come.
            let n = buf.len().min(PROTOCOL_HEADER.len());
            if buf[..n] != PROTOCOL_HEADER[..n] {
                return Err(DecodeError::ProtocolHeader);
            }
            if n < PROTOCOL_HEADER.len() {
                return Ok(None);
            }
            buf.advance(PROTOCOL_HEADER.len());
            self.header_seen = true;
            return Ok(Some(Frame::ProtocolHeader));
        }
        if buf.len() < 7 {
            return Ok(None);
        }
        let kind = buf[0];
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
        if !matches!(
            kind,
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
        ) {
            return Err(DecodeError::frame(
                code::FRAME_ERROR,
                format!("unknown frame type {kind}"),
            ));
        }
        let total = size as u64 + FRAME_OVERHEAD as u64;
        if total > u64::from(self.frame_max) {
            return Err(DecodeError::frame(
                code::FRAME_ERROR,
                format!(
                    "frame of {total} bytes on channel {channel} exceeds the negotiated frame_max of {}",
                    self.frame_max
                ),
            ));
        }
        let total = total as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        if buf[total - 1] != FRAME_END {
            return Err(DecodeError::frame(
                code::FRAME_ERROR,
                format!("frame on channel {channel} does not end with 0xCE"),
            ));
        }
        let size = size as usize;
        let frame = match kind {
            FRAME_BODY => {
                let mut f = buf.split_to(total);
                f.advance(7);
                f.truncate(size);
                return Ok(Some(Frame::Body(channel, f.freeze())));
            }
            FRAME_HEARTBEAT => {
                if channel != 0 || size != 0 {
                    return Err(DecodeError::frame(
                        code::FRAME_ERROR,
                        format!(
                            "heartbeat frame on channel {channel} with {size} bytes of payload"
                        ),
                    ));
                }
                Frame::Heartbeat
            }
            FRAME_METHOD => {
                let payload = &buf[7..7 + size];
                let ids = method_ids(payload);
                if !nesting::method_ok(payload, self.table_depth_max) {
                    return Err(DecodeError::Frame(
                        AmqpError::new(
                            code::SYNTAX_ERROR,
                            format!(
                                "field tables nest deeper than {} levels",
                                self.table_depth_max
                            ),
                        )
                        .at(ids.0, ids.1),
                    ));
                }
                match parse_class(payload) {
                    Ok(([], m)) => Frame::Method(channel, m),
                    _ => {
                        return Err(DecodeError::Frame(
                            AmqpError::new(
                                code::SYNTAX_ERROR,
                                format!(
                                    "cannot parse method {}.{} on channel {channel}",
                                    ids.0, ids.1
                                ),
                            )
                            .at(ids.0, ids.1),
                        ))
                    }
                }
            }
            _ => {
                let payload = &buf[7..7 + size];
                if !nesting::content_header_ok(payload, self.table_depth_max) {
                    return Err(DecodeError::frame(
                        code::SYNTAX_ERROR,
                        format!(
                            "message headers nest deeper than {} levels",
                            self.table_depth_max
                        ),
                    ));
                }
                match parse_content_header(payload) {
                    Ok(([], h)) => Frame::Header(channel, h),
                    _ => {
                        return Err(DecodeError::frame(
                            code::SYNTAX_ERROR,
                            format!("cannot parse content header on channel {channel}"),
                        ))
                    }
                }
            }
        };
        // `advance`, not `split_to`: nothing keeps these bytes, so the buffer stays unshared.
        buf.advance(total);
        Ok(Some(frame))
    }
}

fn method_ids(payload: &[u8]) -> (u16, u16) {
    match payload {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    }
}

/// Appends a method frame. `scratch` is a reusable buffer (the generator needs to seek
/// back to patch lengths, which `BytesMut` cannot).
pub fn encode_method(out: &mut BytesMut, scratch: &mut Vec<u8>, channel: u16, method: &AMQPClass) {
    scratch.clear();
    let buf = std::mem::take(scratch);
    match gen_class(method)(WriteContext::from(buf)) {
        Ok(ctx) => {
            let (buf, _) = ctx.into_inner();
            let start = begin_frame(out, FRAME_METHOD, channel);
            out.extend_from_slice(&buf);
            end_frame(out, start);
            *scratch = buf;
        }
        // Only a short string over 255 bytes can fail, and every string the server puts
        // in a method goes through `short()` first.
        Err(e) => tracing::error!(error = ?e, "cannot encode an AMQP method"),
    }
}

/// Appends a heartbeat frame.
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Starts a frame: writes type and channel and reserves the size. Returns the frame's
/// offset in `out`, for [`end_frame`].
pub fn begin_frame(out: &mut BytesMut, kind: u8, channel: u16) -> usize {
    let start = out.len();
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(0);
    start
}

/// Ends the frame begun at `start`: patches its size and writes the frame-end octet.
pub fn end_frame(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start - 7) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// A short string for a method the server sends: at most 255 bytes, cut at a character
/// boundary (names from other protocols and error texts can be longer).
pub fn short(s: &str) -> amq_protocol::types::ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    amq_protocol::types::ShortString::try_new(&s[..end]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, channel};

    fn frames(bytes: &[u8], frame_max: u32) -> Result<Vec<Frame>, DecodeError> {
        let mut d = Decoder::new(frame_max, 32);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    fn method_bytes(channel: u16, m: &AMQPClass) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_method(&mut out, &mut Vec::new(), channel, m);
        out.to_vec()
    }

    #[test]
    fn protocol_header_then_frames_at_every_split_point() {
        let mut stream = PROTOCOL_HEADER.to_vec();
        stream.extend(method_bytes(
            1,
            &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        ));
        stream.extend([FRAME_BODY, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c', FRAME_END]);
        encode_heartbeat(&mut BytesMut::new());
        stream.extend([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
        let whole = frames(&stream, 4096).unwrap();
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[2], Frame::Body(1, Bytes::from_static(b"abc")));
        for split in 0..stream.len() {
            let mut d = Decoder::new(4096, 32);
            let mut buf = BytesMut::from(&stream[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&stream[split..]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn wrong_protocol_header_is_refused_early() {
        assert_eq!(frames(b"GET", 4096), Err(DecodeError::ProtocolHeader));
        assert_eq!(
            frames(b"AMQP\x01\x01\x00\x09", 4096),
            Err(DecodeError::ProtocolHeader)
        );
        assert_eq!(frames(b"AMQ", 4096), Ok(vec![]));
    }

    #[test]
    fn oversized_frame_is_refused_before_its_payload_arrives() {
        let mut s = PROTOCOL_HEADER.to_vec();
        s.extend([FRAME_BODY, 0, 1, 0, 0, 0x10, 0]);
        match frames(&s, 4096) {
            Err(DecodeError::Frame(e)) => assert_eq!(e.code, code::FRAME_ERROR),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_frames_are_frame_or_syntax_errors() {
        let cases: [(&[u8], u16); 5] = [
            (&[9, 0, 0, 0, 0, 0, 0, FRAME_END], code::FRAME_ERROR),
            (&[FRAME_BODY, 0, 1, 0, 0, 0, 1, b'x', 0], code::FRAME_ERROR),
            (
                &[FRAME_HEARTBEAT, 0, 1, 0, 0, 0, 0, FRAME_END],
                code::FRAME_ERROR,
            ),
            (
                &[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 1, 0, FRAME_END],
                code::FRAME_ERROR,
            ),
            (
                &[FRAME_METHOD, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, FRAME_END],
                code::SYNTAX_ERROR,
            ),
        ];
        for (bytes, want) in cases {
            let mut s = PROTOCOL_HEADER.to_vec();
            s.extend_from_slice(bytes);
            match frames(&s, 4096) {
                Err(DecodeError::Frame(e)) => assert_eq!(e.code, want, "{bytes:?}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn deeply_nested_headers_are_refused_without_recursing() {
        // A basic.consume whose arguments nest 5,000 levels deep.
        let mut payload = vec![0, 60, 0, 20, 0, 0, 1, b'q', 0, 0];
        payload.extend(nesting::nested_table(5_000));
        let mut s = PROTOCOL_HEADER.to_vec();
        let mut out = BytesMut::new();
        let start = begin_frame(&mut out, FRAME_METHOD, 1);
        out.extend_from_slice(&payload);
        end_frame(&mut out, start);
        s.extend_from_slice(&out);
        match frames(&s, 10_000_000) {
            Err(DecodeError::Frame(e)) => assert_eq!(e.code, code::SYNTAX_ERROR),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn methods_round_trip() {
        let m = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "x".into(),
            routing_key: "k".into(),
            mandatory: true,
            immediate: false,
        }));
        let mut s = PROTOCOL_HEADER.to_vec();
        s.extend(method_bytes(7, &m));
        let got = frames(&s, 4096).unwrap();
        assert_eq!(got[1], Frame::Method(7, m));
    }

    #[test]
    fn short_strings_are_cut_at_char_boundaries() {
        let long = "é".repeat(200);
        let s = short(&long);
        assert!(s.as_str().len() <= 255);
        assert!(long.starts_with(s.as_str()));
    }
}
