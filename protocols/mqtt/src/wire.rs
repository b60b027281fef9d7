//! The data representations of MQTT's section 1.5: big-endian integers,
//! variable byte integers, length-prefixed UTF-8 strings and binary data.
//!
//! [`Reader`] walks one packet's body, a frozen [`Bytes`], and hands out
//! strings and binary fields as slices of it: nothing is copied.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::{DecodeError, EncodeError};
use crate::limits::{STRING_MAX_BYTES, VARIABLE_BYTE_INTEGER_MAX};
use crate::packet::PacketType;

/// What the front of a buffer holds, when it should hold a variable byte integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The integer and how many bytes encode it.
    Value(u32, usize),
    /// The buffer ends inside the integer.
    Incomplete,
    /// More than four bytes, or a longer encoding than the value needs.
    Malformed,
}

/// Decodes a variable byte integer from the front of `bytes`.
///
/// Strict: the encoding must be minimal (MQTT 5 [MQTT-1.5.5-1]; MQTT 3.1.1
/// asks the same of senders), so a last byte of 0x00 after a continuation
/// byte is malformed. That makes every value have exactly one encoding.
pub(crate) fn read_var_int(bytes: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return VarInt::Malformed;
            }
            return VarInt::Value(value, i + 1);
        }
    }
    if bytes.len() >= 4 {
        VarInt::Malformed
    } else {
        VarInt::Incomplete
    }
}

/// Bytes needed to encode `value` as a variable byte integer (at most 4 for
/// values up to [`VARIABLE_BYTE_INTEGER_MAX`]).
pub(crate) fn var_int_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` as a variable byte integer. The caller has checked that it
/// is at most [`VARIABLE_BYTE_INTEGER_MAX`]; larger values are clamped rather
/// than written as five bytes.
pub(crate) fn put_var_int(out: &mut BytesMut, value: u32) {
    let mut v = value.min(VARIABLE_BYTE_INTEGER_MAX);
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// Writes a length-prefixed string or binary field. The caller has checked
/// the length with [`field_len`].
pub(crate) fn put_field(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(bytes.len().min(STRING_MAX_BYTES) as u16);
    out.extend_from_slice(bytes.get(..STRING_MAX_BYTES).unwrap_or(bytes));
}

/// The encoded length of a length-prefixed string or binary field, or an
/// error if it is too long to encode.
pub(crate) fn field_len(bytes: &[u8], field: &'static str) -> Result<usize, EncodeError> {
    if bytes.len() > STRING_MAX_BYTES {
        return Err(EncodeError::FieldTooLong { field });
    }
    Ok(2 + bytes.len())
}

/// Checks MQTT's rules for UTF-8 strings beyond what `str` guarantees: no
/// U+0000. (Surrogates and overlong forms are already ill-formed UTF-8.)
///
/// The other code points MQTT discourages (C0 and C1 controls,
/// non-characters) are accepted; see [`crate::text`].
fn is_mqtt_text(bytes: &[u8]) -> bool {
    // In UTF-8 the byte 0 only ever encodes U+0000.
    !bytes.contains(&0)
}

/// A cursor over one packet's body.
///
/// # Invariants
///
/// * `pos <= end <= body.len()`; every read stays below `end`, so a nested
///   reader (a property list) cannot read past its declared length.
pub(crate) struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
    end: usize,
    packet: PacketType,
}

impl<'a> Reader<'a> {
    /// A reader over the whole body of a `packet`.
    pub(crate) fn new(body: &'a Bytes, packet: PacketType) -> Self {
        Self {
            body,
            pos: 0,
            end: body.len(),
            packet,
        }
    }

    /// The packet type being read, for error messages.
    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    /// Bytes left before the end of this reader's range.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    fn truncated(&self) -> DecodeError {
        DecodeError::Truncated {
            packet: self.packet,
        }
    }

    /// Takes `n` bytes as a range of the body.
    fn range(&mut self, n: usize) -> Result<(usize, usize), DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated());
        }
        let start = self.pos;
        self.pos += n;
        Ok((start, self.pos))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (start, end) = self.range(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.body.get(start..end).ok_or_else(|| self.truncated())?);
        Ok(out)
    }

    /// A one-byte integer.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A two-byte big-endian integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A four-byte big-endian integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A variable byte integer; `field` names it in errors.
    pub(crate) fn var_int(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let rest = self.body.get(self.pos..self.end).unwrap_or_default();
        match read_var_int(rest) {
            VarInt::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            VarInt::Incomplete => Err(self.truncated()),
            VarInt::Malformed => Err(DecodeError::MalformedVarInt { field }),
        }
    }

    /// Binary data: a two-byte length and that many bytes, shared with the body.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        let (start, end) = self.range(len)?;
        Ok(self.body.slice(start..end))
    }

    /// A UTF-8 string, shared with the body; `field` names it in errors.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if !is_mqtt_text(&raw) {
            return Err(DecodeError::MalformedString { field });
        }
        ByteString::try_from(raw).map_err(|_| DecodeError::MalformedString { field })
    }

    /// Everything up to the end of this reader's range (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos;
        self.pos = self.end;
        self.body.slice(start..self.end)
    }

    /// A reader over the next `len` bytes, which this reader skips.
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        let (start, end) = self.range(len)?;
        Ok(Reader {
            body: self.body,
            pos: start,
            end,
            packet: self.packet,
        })
    }

    /// Fails if any bytes are left.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_boundaries() {
        // The boundary values of each width, from the specification's table.
        for (value, wire) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            assert_eq!(read_var_int(wire), VarInt::Value(value, wire.len()));
            assert_eq!(var_int_len(value), wire.len());
            let mut out = BytesMut::new();
            put_var_int(&mut out, value);
            assert_eq!(&out[..], wire);
        }
    }

    #[test]
    fn var_int_incomplete_and_malformed() {
        assert_eq!(read_var_int(&[]), VarInt::Incomplete);
        assert_eq!(read_var_int(&[0x80]), VarInt::Incomplete);
        assert_eq!(read_var_int(&[0xFF, 0xFF, 0xFF]), VarInt::Incomplete);
        // A fifth byte is never allowed.
        assert_eq!(read_var_int(&[0xFF, 0xFF, 0xFF, 0xFF]), VarInt::Malformed);
        assert_eq!(
            read_var_int(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            VarInt::Malformed
        );
        // Non-minimal encodings of 0 and 1.
        assert_eq!(read_var_int(&[0x80, 0x00]), VarInt::Malformed);
        assert_eq!(read_var_int(&[0x81, 0x80, 0x00]), VarInt::Malformed);
        // Trailing bytes after a complete integer are not its business.
        assert_eq!(read_var_int(&[0x05, 0x00]), VarInt::Value(5, 1));
    }

    #[test]
    fn strings() {
        let body =
            Bytes::from_static(b"\x00\x03a/b\x00\x02\xc3\x28\x00\x01\x00\x00\x03\xed\xa0\x80");
        let mut r = Reader::new(&body, PacketType::Publish);
        assert_eq!(r.string("t").unwrap(), "a/b");
        assert_eq!(
            r.string("t"),
            Err(DecodeError::MalformedString { field: "t" })
        );
        assert_eq!(
            r.string("t"),
            Err(DecodeError::MalformedString { field: "t" })
        );
        // An encoded surrogate (U+D800) is ill-formed.
        assert_eq!(
            r.string("t"),
            Err(DecodeError::MalformedString { field: "t" })
        );
        r.finish().unwrap();
        // U+FEFF is kept, U+0001 and U+009F are accepted.
        let text = "\u{feff}\u{1}\u{9f}x";
        let mut raw = vec![0, text.len() as u8];
        raw.extend_from_slice(text.as_bytes());
        let body = Bytes::from(raw);
        let mut r = Reader::new(&body, PacketType::Publish);
        assert_eq!(r.string("t").unwrap(), "\u{feff}\u{1}\u{9f}x");
    }

    #[test]
    fn reads_stay_in_range() {
        let body = Bytes::from_static(&[0, 5, 1, 2, 3]);
        let mut r = Reader::new(&body, PacketType::Publish);
        assert_eq!(
            r.binary(),
            Err(DecodeError::Truncated {
                packet: PacketType::Publish
            })
        );
        let mut r = Reader::new(&body, PacketType::Publish);
        let mut sub = r.sub(2).unwrap();
        assert_eq!(sub.u16().unwrap(), 5);
        assert!(sub.u8().is_err());
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(&r.rest()[..], &[2, 3]);
        r.finish().unwrap();
    }
}
