//! Java `DataInput`/`DataOutput` primitives as OpenWire's loose encoding uses them:
//! big-endian integers, one-byte booleans, and strings in Java's *modified* UTF-8 (a
//! `u16` byte length; NUL as `C0 80`; characters outside the BMP as two 3-byte
//! surrogates).
//!
//! Reading never panics: every read checks the remaining length first, and the byte
//! runs it hands out are `Bytes` slices of the frame (no copy).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;

/// A cursor over one frame's bytes.
#[derive(Debug)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// Reads `buf` from its start.
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `n` bytes as a slice of the frame.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(what));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A Java `boolean`: strictly 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadBoolean(what, v)),
        }
    }

    /// A Java `short`.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// A Java `char` (a UTF-16 code unit).
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A Java `int`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A Java `long`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length that must be non-negative and fit in what is left of the frame.
    pub fn len_i32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| DecodeError::BadLength(what, n as i64))?;
        if n > self.remaining() {
            return Err(DecodeError::Truncated(what));
        }
        Ok(n)
    }

    /// `DataInput.readUTF`: a `u16` length then modified UTF-8.
    pub fn utf(&mut self, what: &'static str) -> Result<ByteString, DecodeError> {
        let n = self.u16(what)? as usize;
        let raw = self.bytes(n, what)?;
        decode_modified_utf8(raw, what)
    }

    /// A loose-encoded optional string: a presence boolean, then `readUTF`.
    pub fn opt_string(&mut self, what: &'static str) -> Result<Option<ByteString>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.utf(what)?))
        } else {
            Ok(None)
        }
    }

    /// A loose-encoded optional byte run (`int` length): a presence boolean, the length,
    /// the bytes.
    pub fn opt_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        if self.bool(what)? {
            let n = self.len_i32(what)?;
            Ok(Some(self.bytes(n, what)?))
        } else {
            Ok(None)
        }
    }
}

/// Decodes modified UTF-8. Pure ASCII (the common case) is taken as it is, without a copy.
pub fn decode_modified_utf8(raw: Bytes, what: &'static str) -> Result<ByteString, DecodeError> {
    if raw.iter().all(|&b| b != 0 && b < 0x80) {
        // Safety of the unchecked form is not needed: ASCII is valid UTF-8, so this cannot
        // fail; the checked constructor keeps the crate free of `unsafe`.
        return ByteString::try_from(raw).map_err(|_| DecodeError::BadUtf8(what));
    }
    let mut units: Vec<u16> = Vec::with_capacity(raw.len());
    let mut i = 0;
    let bad = || DecodeError::BadUtf8(what);
    while i < raw.len() {
        let a = raw[i] as u16;
        match raw[i] >> 4 {
            0..=7 => {
                units.push(a);
                i += 1;
            }
            12 | 13 => {
                let b = *raw.get(i + 1).ok_or_else(bad)? as u16;
                if b & 0xC0 != 0x80 {
                    return Err(bad());
                }
                units.push(((a & 0x1F) << 6) | (b & 0x3F));
                i += 2;
            }
            14 => {
                let b = *raw.get(i + 1).ok_or_else(bad)? as u16;
                let c = *raw.get(i + 2).ok_or_else(bad)? as u16;
                if b & 0xC0 != 0x80 || c & 0xC0 != 0x80 {
                    return Err(bad());
                }
                units.push(((a & 0x0F) << 12) | ((b & 0x3F) << 6) | (c & 0x3F));
                i += 3;
            }
            _ => return Err(bad()),
        }
    }
    String::from_utf16(&units)
        .map(ByteString::from)
        .map_err(|_| bad())
}

/// Bytes `s` takes in modified UTF-8.
pub fn modified_utf8_len(s: &str) -> usize {
    // Modified UTF-8 differs from UTF-8 in two places only: NUL takes two bytes, and a
    // supplementary character (four UTF-8 bytes, led by 0xF0..) is two surrogates of
    // three bytes each.
    s.len()
        + s.bytes()
            .map(|b| usize::from(b == 0) + 2 * usize::from(b >= 0xF0))
            .sum::<usize>()
}

/// Appends `s` in modified UTF-8 (no length).
pub fn put_modified_utf8(out: &mut BytesMut, s: &str) {
    if !s.bytes().any(|b| b == 0 || b >= 0xF0) {
        // No NUL, no supplementary character: the UTF-8 bytes are the modified UTF-8.
        out.put_slice(s.as_bytes());
        return;
    }
    for u in s.encode_utf16() {
        match u {
            1..=0x7F => out.put_u8(u as u8),
            0 | 0x80..=0x7FF => {
                out.put_u8(0xC0 | ((u >> 6) & 0x1F) as u8);
                out.put_u8(0x80 | (u & 0x3F) as u8);
            }
            _ => {
                out.put_u8(0xE0 | ((u >> 12) & 0x0F) as u8);
                out.put_u8(0x80 | ((u >> 6) & 0x3F) as u8);
                out.put_u8(0x80 | (u & 0x3F) as u8);
            }
        }
    }
}

/// `DataOutput.writeUTF`. Strings over 65535 encoded bytes cannot be written this way;
/// they are cut at a character boundary (only broker-made texts such as error messages
/// go through here, and those are short).
pub fn put_utf(out: &mut BytesMut, s: &str) {
    let mut s = s;
    let mut len = modified_utf8_len(s);
    while len > u16::MAX as usize {
        let mut cut = s.len() / 2;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s = &s[..cut];
        len = modified_utf8_len(s);
    }
    out.put_u16(len as u16);
    put_modified_utf8(out, s);
}

/// A loose optional string.
pub fn put_opt_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            out.put_u8(1);
            put_utf(out, s);
        }
        None => out.put_u8(0),
    }
}

/// A loose optional byte run.
pub fn put_opt_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            out.put_i32(b.len() as i32);
            out.put_slice(b);
        }
        None => out.put_u8(0),
    }
}

/// A Java boolean.
pub fn put_bool(out: &mut BytesMut, b: bool) {
    out.put_u8(b as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_modified_utf8(&mut b, s);
        let back = decode_modified_utf8(b.clone().freeze(), "t").unwrap();
        assert_eq!(&*back, s);
        assert_eq!(b.len(), modified_utf8_len(s));
        b.to_vec()
    }

    #[test]
    fn modified_utf8_special_cases() {
        assert_eq!(round("abc"), b"abc");
        assert_eq!(round("\0"), [0xC0, 0x80]);
        assert_eq!(round("é"), [0xC3, 0xA9]);
        assert_eq!(round("€"), [0xE2, 0x82, 0xAC]);
        // U+1F600 as a surrogate pair, 3 bytes each (not the 4-byte UTF-8 form).
        assert_eq!(round("😀"), [0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80]);
        // Mixed, and the fast paths agree with a character-by-character count.
        for s in ["a\0é€😀z", "plain ascii", "ünïcödé", "😀😀\0\0", ""] {
            round(s);
            let slow: usize = s
                .encode_utf16()
                .map(|u| match u {
                    1..=0x7F => 1,
                    0 | 0x80..=0x7FF => 2,
                    _ => 3,
                })
                .sum();
            assert_eq!(modified_utf8_len(s), slow, "{s:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &[0xF0u8, 0x9F, 0x98, 0x80][..],
            &[0xC3],
            &[0xE2, 0x82],
            &[0xC3, 0x41],
            &[0x80],
        ] {
            assert!(decode_modified_utf8(Bytes::copy_from_slice(bad), "t").is_err());
        }
        // A lone surrogate is valid Java but not a Rust string: refused, not mangled.
        assert!(decode_modified_utf8(Bytes::from_static(&[0xED, 0xA0, 0xBD]), "t").is_err());
    }

    #[test]
    fn reader_checks_lengths() {
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0, 9, 1]));
        assert!(r.len_i32("x").is_err());
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF]));
        assert!(r.len_i32("x").is_err());
        let mut r = Reader::new(Bytes::from_static(&[2]));
        assert!(r.bool("x").is_err());
    }
}
