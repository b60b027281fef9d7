//! Framing: a 4-byte big-endian size prefix, then the command. The size is checked
//! against the maximum before anything is buffered for it.

use bytes::{Buf, BufMut, BytesMut};

use crate::command::Command;
use crate::error::DecodeError;
use crate::marshal::{read_command, write_command, Format};
use crate::wire::Reader;

/// Splits a byte stream into commands.
#[derive(Debug)]
pub struct Decoder {
    /// Largest frame accepted (the size prefix's value).
    pub frame_max_bytes: u64,
    /// How commands are encoded (version, stack traces).
    pub format: Format,
}

impl Decoder {
    /// A decoder for frames of at most `frame_max_bytes`.
    pub fn new(frame_max_bytes: u64, format: Format) -> Self {
        Self {
            frame_max_bytes,
            format,
        }
    }

    /// The next command, `Ok(None)` until a whole frame is buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if size <= 0 {
            return Err(DecodeError::BadFrameSize(size));
        }
        if size as u64 > self.frame_max_bytes {
            return Err(DecodeError::FrameTooLarge {
                size: size as u64,
                max: self.frame_max_bytes,
            });
        }
        let total = 4 + size as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let frame = buf.split_to(size as usize).freeze();
        let mut r = Reader::new(frame);
        let ty = r.u8("command type")?;
        read_command(ty, &mut r, &self.format).map(Some)
    }
}

/// Appends `c` as one size-prefixed frame.
pub fn encode(out: &mut BytesMut, format: &Format, c: &Command) {
    let at = out.len();
    out.put_i32(0);
    write_command(out, format, c);
    let size = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}
