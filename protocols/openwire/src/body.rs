//! JMS message bodies as OpenWire carries them in `Message.content`:
//!
//! | kind | content |
//! |---|---|
//! | TextMessage | `int` length (-1 = null) + modified UTF-8 |
//! | BytesMessage | the bytes |
//! | MapMessage | a primitive map |
//! | StreamMessage | primitive values one after another |
//! | ObjectMessage | Java serialization (opaque here) |
//!
//! A compressed body is a zlib stream of that content; for BytesMessage it is preceded by
//! the `int` length of the inflated bytes.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::CommandError;
use crate::wire::{decode_modified_utf8, Reader};

/// Inflates a zlib stream, refusing output above `max_bytes`.
pub fn inflate(data: &[u8], max_bytes: u64) -> Result<Bytes, CommandError> {
    let mut out = Vec::new();
    let mut z = flate2::read::ZlibDecoder::new(data).take(max_bytes + 1);
    z.read_to_end(&mut out).map_err(|e| {
        CommandError::jms(format!("compressed message body cannot be inflated: {e}"))
    })?;
    if out.len() as u64 > max_bytes {
        return Err(CommandError::new(
            "javax.jms.ResourceAllocationException",
            format!("compressed message body inflates beyond {max_bytes} bytes"),
        ));
    }
    Ok(Bytes::from(out))
}

/// The content with compression undone.
pub fn plain_content(
    kind: u8,
    content: Bytes,
    compressed: bool,
    max_bytes: u64,
) -> Result<Bytes, CommandError> {
    if !compressed || content.is_empty() {
        return Ok(content);
    }
    if kind == crate::command::types::BYTES_MESSAGE {
        if content.len() < 4 {
            return Err(CommandError::jms(
                "compressed BytesMessage body is shorter than its length prefix",
            ));
        }
        let declared = u32::from_be_bytes([content[0], content[1], content[2], content[3]]) as u64;
        if declared > max_bytes {
            return Err(CommandError::new(
                "javax.jms.ResourceAllocationException",
                format!("compressed message body inflates beyond {max_bytes} bytes"),
            ));
        }
        let out = inflate(&content[4..], declared)?;
        if out.len() as u64 != declared {
            return Err(CommandError::jms(
                "compressed BytesMessage body does not match its declared length",
            ));
        }
        return Ok(out);
    }
    inflate(&content, max_bytes)
}

/// A TextMessage's text (`None` for a null text), from uncompressed content.
pub fn text_of(content: &Bytes) -> Result<Option<ByteString>, CommandError> {
    if content.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::new(content.clone());
    let bad = |e: crate::error::DecodeError| {
        CommandError::jms(format!("malformed TextMessage body: {e}"))
    };
    let n = r.i32("text length").map_err(bad)?;
    if n == -1 {
        return Ok(None);
    }
    let n = usize::try_from(n)
        .map_err(|_| CommandError::jms("malformed TextMessage body: negative length"))?;
    let raw = r.bytes(n, "text").map_err(bad)?;
    if r.remaining() > 0 {
        return Err(CommandError::jms(
            "malformed TextMessage body: bytes after the text",
        ));
    }
    decode_modified_utf8(raw, "text").map(Some).map_err(bad)
}

/// Writes a TextMessage content for `text` into `out`.
pub fn put_text(out: &mut BytesMut, text: &str) {
    use bytes::BufMut;
    out.put_i32(crate::wire::modified_utf8_len(text) as i32);
    crate::wire::put_modified_utf8(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn text_round_trip_and_compression() {
        let mut b = BytesMut::new();
        put_text(&mut b, "héllo\0");
        let content = b.freeze();
        assert_eq!(text_of(&content).unwrap().as_deref(), Some("héllo\0"));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&content).unwrap();
        let zipped = Bytes::from(z.finish().unwrap());
        let back = plain_content(
            crate::command::types::TEXT_MESSAGE,
            zipped.clone(),
            true,
            1 << 20,
        )
        .unwrap();
        assert_eq!(back, content);
        // Bounded: a body that inflates beyond the limit is refused.
        assert!(plain_content(crate::command::types::TEXT_MESSAGE, zipped, true, 4).is_err());
        assert!(text_of(&Bytes::from_static(&[0, 0, 0, 9, b'a'])).is_err());
    }
}
