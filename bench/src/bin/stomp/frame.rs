//! STOMP 1.2 frames as a client needs them: encoding with header escaping, and a decoder
//! that skips heart-beat EOLs, honours `content-length` (bodies may hold NULs) and
//! returns `Ok(None)` until a whole frame is buffered.
//!
//! A decoded frame keeps its command and header lines as one shared buffer and looks
//! headers up on demand: a consumer reads one or two headers of each MESSAGE, and
//! allocating every name and value would cost the load generator more than the lookup.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest command + header section accepted (a bound, not a STOMP rule).
pub const HEAD_MAX_BYTES: usize = 64 * 1024;

/// One frame from the broker.
///
/// # Invariants
/// `head` is the command line and the header lines, each ended by `\n` (a `\r` before it
/// already removed is not; lookups strip it), without the blank line; every header line
/// holds a `:`.
#[derive(Debug, Clone)]
pub struct Frame {
    head: Bytes,
    /// The body, without the terminating NUL.
    pub body: Bytes,
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Frame {
    /// The command (`MESSAGE`, `RECEIPT`, `ERROR`, `CONNECTED`).
    pub fn command(&self) -> &str {
        let line = self.head.split(|&b| b == b'\n').next().unwrap_or(b"");
        std::str::from_utf8(strip_cr(line)).unwrap_or("?")
    }

    /// The value of the first header called `name`, unescaped (STOMP 1.2: the first
    /// occurrence wins). `CONNECTED` values are not escaped, as the spec says.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let raw = self.head.split(|&b| b == b'\n').skip(1).find_map(|line| {
            let line = strip_cr(line);
            let colon = line.iter().position(|&b| b == b':')?;
            (&line[..colon] == name.as_bytes()).then(|| &line[colon + 1..])
        })?;
        let text = String::from_utf8_lossy(raw);
        if self.command() == "CONNECTED" || !text.contains('\\') {
            return Some(text);
        }
        Some(Cow::Owned(unescape(&text)))
    }

    /// What an ERROR frame says: its `message` header and body.
    pub fn error_text(&self) -> String {
        format!(
            "ERROR {:?}: {:?}",
            self.header("message").unwrap_or_default(),
            String::from_utf8_lossy(&self.body).trim()
        )
    }
}

/// Undoes STOMP 1.2 header escaping (`\r \n \c \\`); an unknown escape stays as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn put_escaped(out: &mut BytesMut, s: &str) {
    for b in s.bytes() {
        match b {
            b'\r' => out.put_slice(b"\\r"),
            b'\n' => out.put_slice(b"\\n"),
            b':' => out.put_slice(b"\\c"),
            b'\\' => out.put_slice(b"\\\\"),
            _ => out.put_u8(b),
        }
    }
}

/// Appends a frame to `out`. Header names and values are escaped, except in CONNECT
/// (STOMP 1.2); a body is sent with its `content-length`, so it may hold NULs.
pub fn encode(out: &mut BytesMut, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    let escape = command != "CONNECT";
    out.put_slice(command.as_bytes());
    out.put_u8(b'\n');
    for (k, v) in headers {
        if escape {
            put_escaped(out, k);
            out.put_u8(b':');
            put_escaped(out, v);
        } else {
            out.put_slice(k.as_bytes());
            out.put_u8(b':');
            out.put_slice(v.as_bytes());
        }
        out.put_u8(b'\n');
    }
    if !body.is_empty() {
        out.put_slice(b"content-length:");
        out.put_slice(body.len().to_string().as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(body);
    out.put_u8(0);
}

/// Takes the next frame off `buf`, after any heart-beat EOLs; `Ok(None)` while it is
/// incomplete. `body_max` bounds a declared `content-length`.
pub fn decode(buf: &mut BytesMut, body_max: usize) -> Result<Option<Frame>, String> {
    // Heart-beats: EOLs between frames.
    let eols = buf
        .iter()
        .position(|&b| b != b'\n' && b != b'\r')
        .unwrap_or(buf.len());
    buf.advance(eols);
    if buf.is_empty() {
        return Ok(None);
    }
    // The head: lines up to the first empty one.
    let mut pos = 0;
    let mut content_length = None;
    let head_end = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > HEAD_MAX_BYTES {
                return Err(format!("no end of headers within {HEAD_MAX_BYTES} bytes"));
            }
            return Ok(None);
        };
        let line = strip_cr(&buf[pos..pos + nl]);
        if line.is_empty() {
            break pos;
        }
        if pos > 0 {
            let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
                format!(
                    "header line without ':': {:?}",
                    String::from_utf8_lossy(line)
                )
            })?;
            if content_length.is_none() && &line[..colon] == b"content-length" {
                let v = std::str::from_utf8(&line[colon + 1..])
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("content-length is not a number")?;
                if v > body_max {
                    return Err(format!("content-length {v} is above {body_max}"));
                }
                content_length = Some(v);
            }
        }
        pos += nl + 1;
        if pos > HEAD_MAX_BYTES {
            return Err(format!("headers longer than {HEAD_MAX_BYTES} bytes"));
        }
    };
    let body_start = head_end + if buf[head_end] == b'\r' { 2 } else { 1 };
    let body_len = match content_length {
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(None);
            }
            if buf[body_start + n] != 0 {
                return Err("no NUL after a content-length body".into());
            }
            n
        }
        None => match buf[body_start..].iter().position(|&b| b == 0) {
            Some(n) if n <= body_max => n,
            Some(n) => return Err(format!("body of {n} bytes is above {body_max}")),
            None if buf.len() - body_start > body_max => {
                return Err(format!("no NUL within {body_max} body bytes"))
            }
            None => return Ok(None),
        },
    };
    let mut frame = buf.split_to(body_start + body_len + 1).freeze();
    // The first line is not empty (EOLs were skipped), so `head` ends with the last
    // header line's `\n`; the blank line stays in `frame`.
    let head = frame.split_to(head_end);
    frame.advance(body_start - head_end);
    frame.truncate(body_len);
    Ok(Some(Frame { head, body: frame }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = decode(&mut buf, 1 << 20).unwrap() {
            out.push(f);
        }
        assert!(
            buf.iter().all(|&b| b == b'\n' || b == b'\r'),
            "left {buf:?}"
        );
        out
    }

    #[test]
    fn decodes_every_split_of_a_pipelined_buffer() {
        let mut wire = BytesMut::new();
        wire.put_slice(b"\n\r\n");
        encode(
            &mut wire,
            "MESSAGE",
            &[("ack", "ID:a:1"), ("destination", "/queue/q")],
            b"a\0b",
        );
        wire.put_slice(b"\n");
        wire.put_slice(b"RECEIPT\r\nreceipt-id:7\r\n\r\n\0");
        wire.put_slice(b"CONNECTED\nserver:x:y\n\n\0\n\n");
        for split in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(f) = decode(&mut buf, 1 << 20).unwrap() {
                got.push(f);
            }
            buf.put_slice(&wire[split..]);
            while let Some(f) = decode(&mut buf, 1 << 20).unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0].command(), "MESSAGE");
            assert_eq!(got[0].header("ack").as_deref(), Some("ID:a:1"));
            assert_eq!(got[0].header("content-length").as_deref(), Some("3"));
            assert_eq!(&got[0].body[..], b"a\0b");
            assert_eq!(got[1].command(), "RECEIPT");
            assert_eq!(got[1].header("receipt-id").as_deref(), Some("7"));
            assert!(got[1].body.is_empty());
            assert_eq!(got[2].header("server").as_deref(), Some("x:y"));
        }
    }

    #[test]
    fn first_header_wins_and_escapes_are_undone() {
        let f = &all(b"MESSAGE\nk:a\\cb\\\\c\\nd\nk:second\n\nbody\0")[0];
        assert_eq!(f.header("k").as_deref(), Some("a:b\\c\nd"));
        assert_eq!(f.header("missing"), None);
        assert_eq!(&f.body[..], b"body");
    }

    #[test]
    fn refuses_what_a_broker_must_not_send() {
        let mut b = BytesMut::from(&b"MESSAGE\nno colon\n\n\0"[..]);
        assert!(decode(&mut b, 100).is_err());
        let mut b = BytesMut::from(&b"MESSAGE\ncontent-length:101\n\n"[..]);
        assert!(decode(&mut b, 100).is_err());
        let mut b = BytesMut::from(&b"MESSAGE\ncontent-length:1\n\nab\0"[..]);
        assert!(decode(&mut b, 100).is_err());
    }
}
