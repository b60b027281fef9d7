//! STOMP wire codec: bytes to [`Item`]s and [`Frame`]s to bytes, for STOMP
//! 1.0, 1.1 and 1.2. No I/O, no clocks: the connection task owns the socket
//! and the read buffer and calls [`Decoder::decode`] after every read.
//!
//! # Wire format
//!
//! A frame is a command line, header lines `name:value`, a blank line, the
//! body and a NUL octet. Every line ends in an EOL, `\n` or `\r\n` (CRLF is
//! accepted in every version: 1.0 and 1.1 clients in the wild send it). A
//! bare EOL where a frame could start is a heart-beat. The body runs for
//! `content-length` octets when that header is present (so it may contain
//! NUL), and otherwise to the first NUL.
//!
//! # Design
//!
//! The decoder works in two phases, keeping its scan position between calls
//! so a frame that trickles in costs O(frame) in total, not O(frame²):
//!
//! 1. **Head.** Search the buffer for the blank line that ends the header
//!    section, one line at a time, checking the command as soon as its line
//!    is complete and counting header lines. The size and count limits are
//!    enforced here, before anything is allocated. When the blank line is
//!    found the whole header section is split off the buffer, frozen, and
//!    parsed once: names and values become [`ByteString`] slices of that
//!    frozen block (no copy) unless they contain escapes, which must be
//!    rewritten. A declared `content-length` above the body limit fails here,
//!    before a single body byte is buffered.
//! 2. **Body.** Wait for `content-length + 1` bytes (one O(1) check per call),
//!    or search for NUL from where the last call stopped. The body is then
//!    split off the buffer and frozen: it shares the read buffer's
//!    allocation, it is never copied.
//!
//! Every check is a function of the bytes alone, never of how they were cut
//! into reads: the same input gives the same items and the same error
//! whatever the split points. The tests check this at every split index.
//!
//! # Errors
//!
//! Every [`DecodeError`] is fatal to the connection: STOMP has no way to
//! resynchronise after a bad frame. The session sends an `ERROR` frame whose
//! `message` header is the error's `Display` text (one line, no newline) and
//! closes. After an error the decoder resets itself, so calling it again
//! cannot panic, but what it yields then is meaningless.
//!
//! # Escaping
//!
//! 1.2 escapes `\r`, `\n`, `:` and `\` in header names and values as `\r`,
//! `\n`, `\c` and `\\`; 1.1 has the same minus `\r`; 1.0 has none. CONNECT,
//! STOMP and CONNECTED frames are never escaped, in any version, because they
//! are exchanged before the version is agreed. Until
//! [`Decoder::set_version`] is called the decoder applies the 1.2 rules to
//! other frames.
//!
//! # Invariants (decoder state)
//!
//! * `head.line_start <= head.scanned <= buf.len()`, and every byte before
//!   `head.scanned` has been searched for `\n`.
//! * `head.lines` counts the complete lines before `head.line_start`, command
//!   line included, so while scanning the header count is `head.lines - 1`.
//! * `body` is `Some` exactly when a header section has been parsed and
//!   removed from the buffer and its body is not yet complete; the buffer
//!   then starts at the first body byte.

use bytes::{Buf, BufMut, BytesMut};
use bytestring::ByteString;

pub use crate::frame::{Command, Frame, Headers, Item, Version};

/// Size and count bounds for decoded frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame body, whether declared by `content-length` or
    /// found by searching for NUL.
    pub frame_body_max_bytes: usize,
    /// Largest accepted header section: the command line, all header lines
    /// and the blank line, EOLs included.
    pub header_section_max_bytes: usize,
    /// Most header lines accepted in one frame (repeated names count each time).
    pub header_count_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A whole frame is buffered before it is handed on, so this bounds
            // the memory one connection can pin. 16 MiB is far above what
            // STOMP clients send in practice (text and JSON messages), and
            // well under ActiveMQ's 100 MiB default, which is a lot of RAM per
            // connection. Bigger payloads belong in chunks or out of band.
            frame_body_max_bytes: 16 * 1024 * 1024,
            // Real header sections are a few hundred bytes. 64 KiB leaves room
            // for long selectors and JWT-bearing `passcode` headers while
            // keeping a garbage stream (an HTTP request, a port scanner) from
            // growing the buffer without bound.
            header_section_max_bytes: 64 * 1024,
            // Same as ActiveMQ's and Vert.x's STOMP servers; it bounds the
            // linear header lookups and the per-frame header vector.
            header_count_max: 1000,
        }
    }
}

/// Why a byte stream is not valid STOMP. Every variant ends the connection.
///
/// `Display` is a short sentence without newlines, fit to be the `message`
/// header of the `ERROR` frame sent before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The command line is not one of the STOMP commands. Holds at most 32
    /// characters of it, lossily decoded, control characters replaced by `?`.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// A header line has no `:` or an empty name.
    #[error("malformed header line: expected name:value with a non-empty name")]
    MalformedHeader,
    /// A header name or value is not valid UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// A backslash in a header is not one of the escapes the version defines.
    #[error("invalid escape sequence in header")]
    InvalidEscape,
    /// A carriage return is not immediately followed by a line feed.
    #[error("carriage return not followed by line feed")]
    BadLineEnding,
    /// `content-length` is not a plain decimal number that fits in memory.
    #[error("content-length is not a valid decimal length")]
    BadContentLength,
    /// The body is, or is declared to be, larger than the limit.
    #[error("frame body exceeds the limit of {max_bytes} bytes")]
    BodyTooLarge {
        /// The configured `frame_body_max_bytes`.
        max_bytes: usize,
    },
    /// The command and header lines are larger than the limit.
    #[error("frame header section exceeds the limit of {max_bytes} bytes")]
    HeaderSectionTooLarge {
        /// The configured `header_section_max_bytes`.
        max_bytes: usize,
    },
    /// The frame has more header lines than the limit.
    #[error("frame has more than {max} headers")]
    TooManyHeaders {
        /// The configured `header_count_max`.
        max: usize,
    },
    /// The octet after a `content-length` body is not NUL.
    #[error("frame body is not terminated by a NUL octet")]
    MissingNul,
}

impl DecodeError {
    /// Builds [`DecodeError::UnknownCommand`] from a raw command line.
    fn unknown_command(line: &[u8]) -> Self {
        const SHOWN_MAX_CHARS: usize = 32;
        // Four bytes per char at most: never decode more than can be shown.
        let prefix = line.get(..SHOWN_MAX_CHARS * 4).unwrap_or(line);
        let shown = String::from_utf8_lossy(prefix)
            .chars()
            .take(SHOWN_MAX_CHARS)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        DecodeError::UnknownCommand(shown)
    }
}

/// Which escape rules apply to a frame's header names and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escaping {
    /// Bytes are taken as they are (1.0, and the connect handshake).
    Raw,
    /// `\n`, `\c`, `\\`.
    V1_1,
    /// `\r`, `\n`, `\c`, `\\`.
    V1_2,
}

impl Escaping {
    fn for_frame(command: Command, version: Version) -> Self {
        if command.is_never_escaped() {
            return Escaping::Raw;
        }
        match version {
            Version::V1_0 => Escaping::Raw,
            Version::V1_1 => Escaping::V1_1,
            Version::V1_2 => Escaping::V1_2,
        }
    }
}

/// Progress through a header section that is not complete yet.
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    /// Bytes of the buffer already searched for `\n`.
    scanned: usize,
    /// Offset of the first byte of the line being scanned.
    line_start: usize,
    /// Complete lines so far, command line included.
    lines: usize,
}

/// A parsed header section waiting for its body.
#[derive(Debug)]
struct PendingBody {
    command: Command,
    headers: Headers,
    /// The first `content-length`, already checked against the body limit.
    content_length: Option<usize>,
    /// Without `content-length`: body bytes already searched for NUL.
    scanned: usize,
}

impl PendingBody {
    /// The body length once the body and its NUL are buffered. `buf` starts
    /// at the first body byte.
    fn body_len(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, DecodeError> {
        if let Some(len) = self.content_length {
            return match buf.get(len) {
                None => Ok(None),
                Some(0) => Ok(Some(len)),
                Some(_) => Err(DecodeError::MissingNul),
            };
        }
        // A body of exactly the limit is fine, so its NUL may sit at index
        // `max`: search one byte past the limit, and no further.
        let window_end = buf.len().min(limits.frame_body_max_bytes.saturating_add(1));
        let from = self.scanned.min(window_end);
        if let Some(rel) = buf
            .get(from..window_end)
            .and_then(|w| w.iter().position(|&b| b == 0))
        {
            return Ok(Some(from + rel));
        }
        self.scanned = window_end;
        if buf.len() > limits.frame_body_max_bytes {
            return Err(DecodeError::BodyTooLarge {
                max_bytes: limits.frame_body_max_bytes,
            });
        }
        Ok(None)
    }
}

/// Incremental STOMP decoder for one connection.
///
/// Feed it the connection's read buffer after each read; it consumes what it
/// decodes and leaves the rest. See the module docs for the algorithm.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    head: HeadScan,
    body: Option<PendingBody>,
}

impl Decoder {
    /// A decoder applying `limits`, with 1.2 escaping rules until
    /// [`Decoder::set_version`] is called.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            version: Version::V1_2,
            head: HeadScan::default(),
            body: None,
        }
    }

    /// Sets the negotiated version; it governs header unescaping from the
    /// next header section on.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
    }

    /// The version whose escaping rules the decoder applies.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes the next item from the front of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed; bytes of an incomplete
    /// frame may already have been taken from `buf` (the header section, once
    /// parsed), so keep passing the same buffer. Returns an error as soon as
    /// the bytes seen prove the stream invalid or over a limit.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.head = HeadScan::default();
            self.body = None;
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let mut pending = match self.body.take() {
            Some(pending) => pending,
            None => {
                if self.head.scanned == 0 {
                    match heartbeat_len(buf)? {
                        Some(0) => {}
                        Some(n) => {
                            // `advance`, not `split_to`: nothing keeps these
                            // bytes, so the buffer need not become shared.
                            buf.advance(n);
                            return Ok(Some(Item::Heartbeat));
                        }
                        None => return Ok(None),
                    }
                }
                let Some(head_len) = scan_head(&mut self.head, buf, &self.limits)? else {
                    return Ok(None);
                };
                // Lines seen: the command, the headers and the blank line.
                let header_count = self.head.lines.saturating_sub(2);
                self.head = HeadScan::default();
                let head = buf.split_to(head_len).freeze();
                parse_head(&head, header_count, self.version, &self.limits)?
            }
        };
        match pending.body_len(buf, &self.limits)? {
            None => {
                self.body = Some(pending);
                Ok(None)
            }
            Some(len) => {
                // `body_len` saw the NUL at index `len`, so `len + 1 <= buf.len()`.
                let mut body = buf.split_to(len + 1).freeze();
                body.truncate(len);
                Ok(Some(Item::Frame(Frame {
                    command: pending.command,
                    headers: pending.headers,
                    body,
                })))
            }
        }
    }
}

/// At a frame boundary: `Some(n)` if the buffer starts with an `n`-byte EOL,
/// `Some(0)` if it starts with anything else, `None` if it cannot tell yet.
fn heartbeat_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    match buf {
        [] | [b'\r'] => Ok(None),
        [b'\n', ..] => Ok(Some(1)),
        [b'\r', b'\n', ..] => Ok(Some(2)),
        [b'\r', ..] => Err(DecodeError::BadLineEnding),
        _ => Ok(Some(0)),
    }
}

/// Searches for the end of the header section, resuming at `scan.scanned`.
/// Returns the header section's length (through the blank line's EOL) once
/// it is buffered.
fn scan_head(
    scan: &mut HeadScan,
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<usize>, DecodeError> {
    // Only the first `max` bytes can belong to an acceptable header section;
    // searching further would let the verdict depend on read sizes.
    let window_end = buf.len().min(limits.header_section_max_bytes);
    if scan.scanned > window_end || scan.line_start > scan.scanned {
        // The caller changed the buffer under us: start over rather than
        // index out of bounds.
        *scan = HeadScan::default();
    }
    while let Some(rel) = buf
        .get(scan.scanned..window_end)
        .and_then(|w| w.iter().position(|&b| b == b'\n'))
    {
        let eol = scan.scanned + rel;
        let line = buf.get(scan.line_start..eol).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        scan.scanned = eol + 1;
        scan.line_start = eol + 1;
        scan.lines += 1;
        if scan.lines == 1 {
            // Reject a wrong protocol (HTTP, TLS, a port scan) at its first
            // line instead of buffering up to the header limit.
            parse_command(line)?;
        } else if line.is_empty() {
            return Ok(Some(eol + 1));
        } else if scan.lines - 1 > limits.header_count_max {
            return Err(DecodeError::TooManyHeaders {
                max: limits.header_count_max,
            });
        }
    }
    scan.scanned = window_end;
    if buf.len() > limits.header_section_max_bytes {
        return Err(DecodeError::HeaderSectionTooLarge {
            max_bytes: limits.header_section_max_bytes,
        });
    }
    Ok(None)
}

fn parse_command(line: &[u8]) -> Result<Command, DecodeError> {
    if line.contains(&b'\r') {
        return Err(DecodeError::BadLineEnding);
    }
    Command::parse(line).ok_or_else(|| DecodeError::unknown_command(line))
}

/// Parses a complete, frozen header section (command line through the blank
/// line). `header_count` sizes the header vector exactly.
fn parse_head(
    head: &bytes::Bytes,
    header_count: usize,
    version: Version,
    limits: &Limits,
) -> Result<PendingBody, DecodeError> {
    let mut lines = LineRanges {
        bytes: head,
        pos: 0,
    };
    let (start, end) = lines.next().ok_or(DecodeError::MalformedHeader)??;
    let command = parse_command(head.get(start..end).unwrap_or_default())?;
    let escaping = Escaping::for_frame(command, version);
    let mut headers = Headers::with_capacity(header_count);
    let mut content_length = None;
    for range in lines {
        let (start, end) = range?;
        if start == end {
            break; // the blank line
        }
        let line = head.get(start..end).unwrap_or_default();
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(DecodeError::MalformedHeader)?;
        if colon == 0 {
            return Err(DecodeError::MalformedHeader);
        }
        let name = header_text(head, start, start + colon, escaping)?;
        let value = header_text(head, start + colon + 1, end, escaping)?;
        if name == "content-length" {
            // Every occurrence must be well formed; the first one counts.
            let len = parse_decimal(value.as_bytes()).ok_or(DecodeError::BadContentLength)?;
            content_length.get_or_insert(len);
        }
        headers.push(name, value);
    }
    if let Some(len) = content_length {
        if len > limits.frame_body_max_bytes {
            return Err(DecodeError::BodyTooLarge {
                max_bytes: limits.frame_body_max_bytes,
            });
        }
    }
    Ok(PendingBody {
        command,
        headers,
        content_length,
        scanned: 0,
    })
}

/// Iterates over the lines of a header section as `(start, end)` ranges,
/// EOL excluded, failing on a carriage return that does not end a line.
struct LineRanges<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for LineRanges<'_> {
    type Item = Result<(usize, usize), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let rel = self.bytes.get(start..)?.iter().position(|&b| b == b'\n')?;
        let mut end = start + rel;
        self.pos = end + 1;
        if end > start && self.bytes.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        let line = self.bytes.get(start..end).unwrap_or_default();
        if line.contains(&b'\r') {
            return Some(Err(DecodeError::BadLineEnding));
        }
        Some(Ok((start, end)))
    }
}

/// A header name or value: a zero-copy slice of `head` when nothing needs
/// unescaping, a fresh string otherwise.
fn header_text(
    head: &bytes::Bytes,
    start: usize,
    end: usize,
    escaping: Escaping,
) -> Result<ByteString, DecodeError> {
    let raw = head.get(start..end).unwrap_or_default();
    if escaping == Escaping::Raw || !raw.contains(&b'\\') {
        // `try_from` validates UTF-8; `slice` shares `head`'s allocation.
        return ByteString::try_from(head.slice(start..end)).map_err(|_| DecodeError::InvalidUtf8);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match (bytes.next(), escaping) {
            (Some(b'n'), _) => b'\n',
            (Some(b'c'), _) => b':',
            (Some(b'\\'), _) => b'\\',
            (Some(b'r'), Escaping::V1_2) => b'\r',
            _ => return Err(DecodeError::InvalidEscape),
        });
    }
    // Escapes only produce ASCII, so validating after unescaping is exact.
    String::from_utf8(out)
        .map(ByteString::from)
        .map_err(|_| DecodeError::InvalidUtf8)
}

/// Digits only: no sign, no spaces, no empty string, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Encodes `frame` for a peer speaking `version`, appending to `out`.
///
/// A `content-length` header is added when the body is non-empty and the
/// frame has none, so bodies containing NUL survive.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    encode_parts(
        out,
        version,
        frame.command,
        &[],
        &frame.headers,
        &frame.body,
    );
}

/// Encodes a frame from parts without building a [`Frame`]: the command,
/// then `headers`, then `extra`, then `content-length: body.len()` if the body
/// is non-empty and neither list has a `content-length`, then the blank line,
/// body and NUL. Allocates nothing except to grow `out`.
///
/// Header text is escaped for `version` (never for CONNECT, STOMP and
/// CONNECTED). Where the version cannot represent a character the frame is
/// kept well formed instead of faithful: `\r` and `\n` become spaces in raw
/// frames, and `\r` becomes a space in 1.1. A `:` in a raw header *name* is
/// written as is and the peer will split the name there; empty names are
/// the caller's bug and the peer will reject them.
pub fn encode_parts(
    out: &mut BytesMut,
    version: Version,
    command: Command,
    headers: &[(&str, &str)],
    extra: &Headers,
    body: &[u8],
) {
    let escaping = Escaping::for_frame(command, version);
    let has_content_length = headers.iter().any(|(n, _)| *n == "content-length")
        || extra.iter().any(|(n, _)| n == "content-length");
    let write_content_length = !body.is_empty() && !has_content_length;

    // One reservation for the common case of nothing to escape.
    let header_bytes: usize = headers
        .iter()
        .copied()
        .chain(extra.iter())
        .map(|(n, v)| n.len() + v.len() + 2)
        .sum();
    let content_length_bytes = if write_content_length { 36 } else { 0 };
    out.reserve(
        command.as_str().len() + 1 + header_bytes + content_length_bytes + 1 + body.len() + 1,
    );

    out.extend_from_slice(command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in headers.iter().copied().chain(extra.iter()) {
        write_header_text(out, escaping, name.as_bytes());
        out.put_u8(b':');
        write_header_text(out, escaping, value.as_bytes());
        out.put_u8(b'\n');
    }
    if write_content_length {
        out.extend_from_slice(b"content-length:");
        write_decimal(out, body.len());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.extend_from_slice(body);
    out.put_u8(0);
}

/// Writes `text` escaped for `escaping`, copying unescaped runs whole.
fn write_header_text(out: &mut BytesMut, escaping: Escaping, text: &[u8]) {
    // Most header text has nothing to escape: one branch-free pass finds that out (a
    // fold without early exit, which the compiler vectorises).
    let special = text.iter().fold(false, |acc, &b| {
        acc | (b == b'\\') | (b == b'\n') | (b == b':') | (b == b'\r')
    });
    if !special {
        out.extend_from_slice(text);
        return;
    }
    let mut run_start = 0;
    for (i, &b) in text.iter().enumerate() {
        let replacement: &[u8] = match (escaping, b) {
            (Escaping::Raw, b'\r' | b'\n') => b" ",
            (Escaping::Raw, _) => continue,
            (_, b'\\') => b"\\\\",
            (_, b'\n') => b"\\n",
            (_, b':') => b"\\c",
            (Escaping::V1_2, b'\r') => b"\\r",
            (Escaping::V1_1, b'\r') => b" ",
            _ => continue,
        };
        out.extend_from_slice(text.get(run_start..i).unwrap_or_default());
        out.extend_from_slice(replacement);
        run_start = i + 1;
    }
    out.extend_from_slice(text.get(run_start..).unwrap_or_default());
}

/// Writes `n` in decimal without going through `fmt` or the heap.
fn write_decimal(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits small enough to reach in a test.
    const SMALL: Limits = Limits {
        frame_body_max_bytes: 16,
        header_section_max_bytes: 64,
        header_count_max: 3,
    };

    /// Decodes until more bytes are needed; a first error ends the list.
    fn drain(dec: &mut Decoder, buf: &mut BytesMut) -> Vec<Result<Item, DecodeError>> {
        let mut out = Vec::new();
        loop {
            match dec.decode(buf) {
                Ok(Some(item)) => out.push(Ok(item)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    /// Decodes all of `bytes` at once, which must end on a frame boundary.
    fn decode_all(
        limits: Limits,
        version: Version,
        bytes: &[u8],
    ) -> Result<Vec<Item>, DecodeError> {
        let mut dec = Decoder::new(limits);
        dec.set_version(version);
        let mut buf = BytesMut::from(bytes);
        let items = drain(&mut dec, &mut buf)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        assert!(buf.is_empty(), "undecoded bytes left: {buf:?}");
        Ok(items)
    }

    fn frames(version: Version, bytes: &[u8]) -> Vec<Frame> {
        decode_all(Limits::default(), version, bytes)
            .expect("valid input")
            .into_iter()
            .filter_map(|item| match item {
                Item::Frame(f) => Some(f),
                Item::Heartbeat => None,
            })
            .collect()
    }

    fn one_frame(version: Version, bytes: &[u8]) -> Frame {
        let mut fs = frames(version, bytes);
        assert_eq!(fs.len(), 1);
        fs.remove(0)
    }

    /// The error that `bytes` ends with, decoded whole.
    fn error(limits: Limits, version: Version, bytes: &[u8]) -> DecodeError {
        let mut dec = Decoder::new(limits);
        dec.set_version(version);
        match drain(&mut dec, &mut BytesMut::from(bytes)).pop() {
            Some(Err(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn pairs(f: &Frame) -> Vec<(&str, &str)> {
        f.headers.iter().collect()
    }

    // ---- golden frames -------------------------------------------------

    /// stomp.py 8.x, `Connection12(heartbeats=(4000, 4000))`: it connects
    /// with STOMP, sorts headers by name, ends lines with LF, escapes values
    /// (1.2 rules) and adds `content-length` to SEND.
    #[test]
    fn golden_stomp_py_1_2() {
        let f = one_frame(
            Version::V1_2,
            b"STOMP\naccept-version:1.2\nheart-beat:4000,4000\nhost:localhost\n\
              login:admin\npasscode:password\n\n\x00",
        );
        assert_eq!(f.command, Command::Stomp);
        assert_eq!(
            pairs(&f),
            [
                ("accept-version", "1.2"),
                ("heart-beat", "4000,4000"),
                ("host", "localhost"),
                ("login", "admin"),
                ("passcode", "password"),
            ]
        );
        assert!(f.body.is_empty());

        let f = one_frame(
            Version::V1_2,
            b"SEND\ncontent-length:11\ncontent-type:text/plain\ndestination:/queue/test\n\n\
              hello world\x00",
        );
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.headers.get("destination"), Some("/queue/test"));
        assert_eq!(f.headers.get("content-length"), Some("11"));
        assert_eq!(f.body, &b"hello world"[..]);

        let f = one_frame(
            Version::V1_2,
            b"SUBSCRIBE\nack:client-individual\ndestination:/queue/test\nid:1\n\n\x00",
        );
        assert_eq!(f.command, Command::Subscribe);
        assert_eq!(
            pairs(&f),
            [
                ("ack", "client-individual"),
                ("destination", "/queue/test"),
                ("id", "1")
            ]
        );

        // An ActiveMQ message id, whose colons stomp.py escapes as `\c`.
        let f = one_frame(
            Version::V1_2,
            b"ACK\nid:ID\\cbroker-41231-1700000000000-3\\c1\\c1\\c1\\c1\ntransaction:tx1\n\n\x00",
        );
        assert_eq!(f.command, Command::Ack);
        assert_eq!(
            f.headers.get("id"),
            Some("ID:broker-41231-1700000000000-3:1:1:1:1")
        );
        assert_eq!(f.headers.get("transaction"), Some("tx1"));

        let f = one_frame(
            Version::V1_2,
            b"DISCONNECT\nreceipt:6f2b9a4e-3c1d-4f7e-9a1b-2c3d4e5f6a7b\n\n\x00",
        );
        assert_eq!(f.command, Command::Disconnect);
        assert_eq!(
            f.headers.get("receipt"),
            Some("6f2b9a4e-3c1d-4f7e-9a1b-2c3d4e5f6a7b")
        );
    }

    /// stompjs-style session: STOMP command, LF EOLs, headers in insertion
    /// order, `content-length` on SEND, LF heart-beats between frames.
    #[test]
    fn golden_stompjs() {
        let wire: &[u8] = b"STOMP\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\
              login:guest\npasscode:guest\nhost:/\n\n\x00\
              \n\
              SUBSCRIBE\nid:sub-0\ndestination:/topic/greetings\n\n\x00\
              \n\n\
              SEND\ndestination:/topic/greetings\ncontent-type:application/json\n\
              content-length:16\n\n{\"name\":\"world\"}\x00";
        let items = decode_all(Limits::default(), Version::V1_2, wire).unwrap();
        assert_eq!(items.len(), 6);
        assert_eq!(items[1], Item::Heartbeat);
        assert_eq!(items[3], Item::Heartbeat);
        assert_eq!(items[4], Item::Heartbeat);
        let fs = frames(Version::V1_2, wire);
        assert_eq!(fs[0].command, Command::Stomp);
        assert_eq!(fs[0].headers.get("accept-version"), Some("1.2,1.1,1.0"));
        assert_eq!(fs[0].headers.get("host"), Some("/"));
        assert_eq!(fs[1].command, Command::Subscribe);
        assert_eq!(fs[1].headers.get("id"), Some("sub-0"));
        assert_eq!(fs[2].command, Command::Send);
        assert_eq!(fs[2].headers.get("content-type"), Some("application/json"));
        assert_eq!(fs[2].body, &b"{\"name\":\"world\"}"[..]);
    }

    /// STOMP 1.0: CONNECT without accept-version, SEND without
    /// content-length (body runs to NUL), a LF after each NUL, and
    /// backslashes that are plain characters.
    #[test]
    fn golden_stomp_1_0() {
        let wire: &[u8] = b"CONNECT\nlogin:guest\npasscode:guest\n\n\x00\n\
              SEND\ndestination:/queue/a\nselector:a\\b\n\nhello queue a\x00\n";
        let items = decode_all(Limits::default(), Version::V1_0, wire).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[3], Item::Heartbeat);
        let fs = frames(Version::V1_0, wire);
        assert_eq!(fs[0].command, Command::Connect);
        assert_eq!(pairs(&fs[0]), [("login", "guest"), ("passcode", "guest")]);
        assert_eq!(fs[1].headers.get("selector"), Some("a\\b"));
        assert_eq!(fs[1].headers.get("content-length"), None);
        assert_eq!(fs[1].body, &b"hello queue a"[..]);
    }

    /// A 1.2 server frame with CRLF line endings.
    #[test]
    fn golden_crlf_message() {
        let f = one_frame(
            Version::V1_2,
            b"MESSAGE\r\nsubscription:0\r\nmessage-id:007\r\ndestination:/queue/a\r\n\
              content-type:text/plain\r\n\r\nhello queue a\x00",
        );
        assert_eq!(f.command, Command::Message);
        assert_eq!(f.headers.get("message-id"), Some("007"));
        assert_eq!(f.headers.get("content-type"), Some("text/plain"));
        assert_eq!(f.body, &b"hello queue a"[..]);
    }

    #[test]
    fn connect_frames_are_never_unescaped() {
        for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
            for cmd in ["CONNECT", "STOMP", "CONNECTED"] {
                let wire = format!("{cmd}\nlogin:a\\cb\\t\npasscode:x:y\n\n\0");
                let f = one_frame(version, wire.as_bytes());
                assert_eq!(f.headers.get("login"), Some("a\\cb\\t"));
                assert_eq!(f.headers.get("passcode"), Some("x:y"));
            }
        }
    }

    #[test]
    fn escapes_per_version() {
        let f = one_frame(Version::V1_2, b"SEND\na\\cb:1\\r2\\n3\\c4\\\\5\n\n\x00");
        assert_eq!(pairs(&f), [("a:b", "1\r2\n3:4\\5")]);
        let f = one_frame(Version::V1_1, b"SEND\na\\cb:2\\n3\\c4\\\\5\n\n\x00");
        assert_eq!(pairs(&f), [("a:b", "2\n3:4\\5")]);
        let f = one_frame(Version::V1_0, b"SEND\na\\cb:1\\r2\\n\n\n\x00");
        assert_eq!(pairs(&f), [("a\\cb", "1\\r2\\n")]);
        // Before set_version: 1.2 rules.
        let mut buf = BytesMut::from(&b"SEND\nk:a\\rb\n\n\x00"[..]);
        match decoder_default().decode(&mut buf) {
            Ok(Some(Item::Frame(f))) => assert_eq!(f.headers.get("k"), Some("a\rb")),
            other => panic!("{other:?}"),
        }
    }

    fn decoder_default() -> Decoder {
        Decoder::new(Limits::default())
    }

    #[test]
    fn header_rules() {
        // Split at the first colon; repeated headers kept, first wins.
        let f = one_frame(
            Version::V1_0,
            b"SEND\nurl:http://x:80/\nfoo:1\nfoo:2\nempty:\n\n\x00",
        );
        assert_eq!(
            pairs(&f),
            [
                ("url", "http://x:80/"),
                ("foo", "1"),
                ("foo", "2"),
                ("empty", "")
            ]
        );
        assert_eq!(f.headers.get("foo"), Some("1"));
        // No trimming: the spec makes spaces significant.
        let f = one_frame(Version::V1_2, b"SEND\n k : v \n\n\x00");
        assert_eq!(pairs(&f), [(" k ", " v ")]);
        // Non-ASCII UTF-8 passes.
        let f = one_frame(Version::V1_2, "SEND\nnäme:välue ✓\n\n\0".as_bytes());
        assert_eq!(f.headers.get("näme"), Some("välue ✓"));
    }

    #[test]
    fn content_length_body_may_hold_nul_and_first_wins() {
        let f = one_frame(
            Version::V1_2,
            b"SEND\ncontent-length:3\ncontent-length:5\n\na\x00b\x00",
        );
        assert_eq!(f.body, &b"a\x00b"[..]);
        let f = one_frame(Version::V1_2, b"SEND\ncontent-length:0\n\n\x00");
        assert!(f.body.is_empty());
    }

    #[test]
    fn body_and_headers_share_the_read_buffer() {
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(b"SEND\ndestination:/queue/a\ncontent-length:5\n\nhello\x00");
        let base = buf.as_ptr() as usize;
        let end = base + buf.len();
        let Ok(Some(Item::Frame(f))) = decoder_default().decode(&mut buf) else {
            panic!("no frame");
        };
        let in_buffer = |p: *const u8| (base..end).contains(&(p as usize));
        assert!(in_buffer(f.body.as_ptr()), "body was copied");
        let dest = f.headers.get_bytestring("destination").unwrap();
        assert!(in_buffer(dest.as_bytes().as_ptr()), "header was copied");
    }

    // ---- heart-beats and line endings ------------------------------------

    #[test]
    fn heartbeats_and_lone_carriage_return() {
        let mut dec = decoder_default();
        let mut buf = BytesMut::from(&b"\n\r\n"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(Some(Item::Heartbeat)));
        assert_eq!(dec.decode(&mut buf), Ok(Some(Item::Heartbeat)));
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r");
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 1);
        buf.extend_from_slice(b"\n");
        assert_eq!(dec.decode(&mut buf), Ok(Some(Item::Heartbeat)));
        assert!(buf.is_empty());
    }

    // ---- every split point -----------------------------------------------

    /// Three pipelined frames with heart-beats around them: a body with NUL
    /// and content-length, escaped headers, and CRLF line endings.
    const PIPELINE: &[u8] = b"\n\
        SEND\ndestination:/queue/a\ncontent-length:7\n\nab\x00cd\x00e\x00\
        \r\n\n\
        SEND\ndestination:/queue/b\nfoo:a\\cb\\nc\\\\d\\re\n\nplain\x00\
        SUBSCRIBE\r\nid:1\r\ndestination:/queue/c\r\nack:client\r\n\r\n\x00\
        \n";

    fn pipeline_expected() -> Vec<Result<Item, DecodeError>> {
        let mut send_a = Frame::new(Command::Send);
        send_a.headers.push("destination", "/queue/a");
        send_a.headers.push("content-length", "7");
        send_a.body = bytes::Bytes::from_static(b"ab\x00cd\x00e");
        let mut send_b = Frame::new(Command::Send);
        send_b.headers.push("destination", "/queue/b");
        send_b.headers.push("foo", "a:b\nc\\d\re");
        send_b.body = bytes::Bytes::from_static(b"plain");
        let mut sub = Frame::new(Command::Subscribe);
        sub.headers.push("id", "1");
        sub.headers.push("destination", "/queue/c");
        sub.headers.push("ack", "client");
        vec![
            Ok(Item::Heartbeat),
            Ok(Item::Frame(send_a)),
            Ok(Item::Heartbeat),
            Ok(Item::Heartbeat),
            Ok(Item::Frame(send_b)),
            Ok(Item::Frame(sub)),
            Ok(Item::Heartbeat),
        ]
    }

    #[test]
    fn pipeline_whole() {
        let mut buf = BytesMut::from(PIPELINE);
        assert_eq!(drain(&mut decoder_default(), &mut buf), pipeline_expected());
        assert!(buf.is_empty());
    }

    #[test]
    fn pipeline_every_split_point() {
        let expected = pipeline_expected();
        for split in 0..=PIPELINE.len() {
            let mut dec = decoder_default();
            let mut buf = BytesMut::from(&PIPELINE[..split]);
            let mut items = drain(&mut dec, &mut buf);
            buf.extend_from_slice(&PIPELINE[split..]);
            items.extend(drain(&mut dec, &mut buf));
            assert_eq!(items, expected, "split at {split}");
            assert!(buf.is_empty(), "split at {split}");
        }
    }

    #[test]
    fn pipeline_one_byte_at_a_time() {
        let mut dec = decoder_default();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for &b in PIPELINE {
            buf.extend_from_slice(&[b]);
            items.extend(drain(&mut dec, &mut buf));
        }
        assert_eq!(items, pipeline_expected());
        assert!(buf.is_empty());
    }

    /// The deterministic half of linearity: after each partial read the
    /// decoder remembers how far it searched, in the head and in the body.
    #[test]
    fn scan_offsets_are_kept_between_calls() {
        let mut dec = decoder_default();
        let mut buf = BytesMut::from(&b"SEND\ndestination:/qu"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.head.scanned, buf.len());
        assert_eq!(dec.head.line_start, b"SEND\n".len());
        assert_eq!(dec.head.lines, 1);
        buf.extend_from_slice(b"eue/a\n\nbody without nul yet");
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"body without nul yet");
        assert_eq!(dec.body.as_ref().map(|p| p.scanned), Some(buf.len()));
        buf.extend_from_slice(b"\x00");
        assert!(matches!(dec.decode(&mut buf), Ok(Some(Item::Frame(_)))));
        assert_eq!(dec.head.scanned, 0);
        assert!(dec.body.is_none());
    }

    /// A 10 MB body trickling in 4 KiB reads: quadratic rescanning takes
    /// about a minute here, linear scanning takes milliseconds.
    #[test]
    fn trickled_large_body_is_linear() {
        const BODY_BYTES: usize = 10 * 1024 * 1024;
        for with_length in [false, true] {
            let mut wire = Vec::with_capacity(BODY_BYTES + 64);
            wire.extend_from_slice(b"SEND\ndestination:/queue/big\n");
            if with_length {
                wire.extend_from_slice(format!("content-length:{BODY_BYTES}\n").as_bytes());
            }
            wire.extend_from_slice(b"\n");
            wire.resize(wire.len() + BODY_BYTES, b'x');
            wire.push(0);
            let mut dec = decoder_default();
            let mut buf = BytesMut::new();
            let mut items = Vec::new();
            for chunk in wire.chunks(4096) {
                buf.extend_from_slice(chunk);
                items.extend(drain(&mut dec, &mut buf));
            }
            assert_eq!(items.len(), 1);
            let Some(Ok(Item::Frame(f))) = items.pop() else {
                panic!("no frame")
            };
            assert_eq!(f.body.len(), BODY_BYTES);
        }
    }

    // ---- errors ------------------------------------------------------------

    #[test]
    fn error_unknown_command() {
        let e = error(Limits::default(), Version::V1_2, b"FOO\n\n\x00");
        assert_eq!(e, DecodeError::UnknownCommand("FOO".into()));
        // Lower case is not accepted.
        let e = error(Limits::default(), Version::V1_2, b"send\n\n\x00");
        assert_eq!(e, DecodeError::UnknownCommand("send".into()));
        // An HTTP request fails at its first line, long before any limit.
        let e = error(
            Limits::default(),
            Version::V1_2,
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        );
        assert_eq!(e, DecodeError::UnknownCommand("GET / HTTP/1.1".into()));
        // Shown text is bounded and has no control characters.
        let mut long = vec![b'Z'; 100];
        long[3] = 0x1b;
        long[5] = 0xff;
        long.push(b'\n');
        let DecodeError::UnknownCommand(shown) = error(Limits::default(), Version::V1_2, &long)
        else {
            panic!("wrong error")
        };
        assert_eq!(shown.chars().count(), 32);
        assert!(shown.starts_with("ZZZ?Z\u{fffd}Z"));
    }

    #[test]
    fn error_malformed_header() {
        for wire in [
            &b"SEND\nnocolon\n\n\x00"[..],
            b"SEND\n:value\n\n\x00",
            b"SEND\nk:v\n:\n\n\x00",
        ] {
            assert_eq!(
                error(Limits::default(), Version::V1_2, wire),
                DecodeError::MalformedHeader,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn error_invalid_utf8() {
        for wire in [&b"SEND\nk:\xff\n\n\x00"[..], b"SEND\n\xc3:v\n\n\x00"] {
            for version in [Version::V1_0, Version::V1_2] {
                assert_eq!(
                    error(Limits::default(), version, wire),
                    DecodeError::InvalidUtf8
                );
            }
        }
        // Also when the value needed unescaping.
        assert_eq!(
            error(Limits::default(), Version::V1_2, b"SEND\nk:\\c\xff\n\n\x00"),
            DecodeError::InvalidUtf8
        );
    }

    #[test]
    fn error_invalid_escape() {
        for (version, wire) in [
            (Version::V1_2, &b"SEND\nk:a\\tb\n\n\x00"[..]),
            (Version::V1_2, b"SEND\nk:trailing\\\n\n\x00"),
            (Version::V1_2, b"SEND\nk\\x:v\n\n\x00"),
            (Version::V1_1, b"SEND\nk:a\\rb\n\n\x00"),
        ] {
            assert_eq!(
                error(Limits::default(), version, wire),
                DecodeError::InvalidEscape,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn error_bad_line_ending() {
        for wire in [
            &b"\rX"[..],
            b"SE\rND\n\n\x00",
            b"SEND\nk:a\rb\n\n\x00",
            b"SEND\r\nk:v\r\r\n\r\n\x00",
        ] {
            assert_eq!(
                error(Limits::default(), Version::V1_2, wire),
                DecodeError::BadLineEnding,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn error_bad_content_length() {
        for value in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1a",
            "0x10",
            "١",
            "99999999999999999999999",
        ] {
            let wire = format!("SEND\ncontent-length:{value}\n\n\0");
            assert_eq!(
                error(Limits::default(), Version::V1_2, wire.as_bytes()),
                DecodeError::BadContentLength,
                "{value:?}"
            );
        }
        // A later, ignored occurrence must still be well formed.
        assert_eq!(
            error(
                Limits::default(),
                Version::V1_2,
                b"SEND\ncontent-length:1\ncontent-length:x\n\na\x00"
            ),
            DecodeError::BadContentLength
        );
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(
            parse_decimal(usize::MAX.to_string().as_bytes()),
            Some(usize::MAX)
        );
    }

    #[test]
    fn error_body_too_large_declared_fails_before_the_body_arrives() {
        let mut dec = decoder_default();
        let mut buf =
            BytesMut::from(&b"SEND\ndestination:/queue/a\ncontent-length:104857600\n\n"[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(DecodeError::BodyTooLarge {
                max_bytes: 16 * 1024 * 1024
            })
        );
        // At the limit is fine.
        let max = SMALL.frame_body_max_bytes;
        let wire = format!("SEND\ncontent-length:{max}\n\n{}\0", "x".repeat(max));
        let items = decode_all(SMALL, Version::V1_2, wire.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn error_body_too_large_without_content_length() {
        let max = SMALL.frame_body_max_bytes;
        // Exactly the limit passes.
        let wire = format!("SEND\n\n{}\0", "x".repeat(max));
        assert_eq!(
            decode_all(SMALL, Version::V1_2, wire.as_bytes())
                .unwrap()
                .len(),
            1
        );
        // One byte more fails as soon as it is buffered, NUL or not.
        let mut dec = Decoder::new(SMALL);
        let mut buf = BytesMut::from(format!("SEND\n\n{}", "x".repeat(max)).as_bytes());
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"x");
        assert_eq!(
            dec.decode(&mut buf),
            Err(DecodeError::BodyTooLarge { max_bytes: max })
        );
    }

    #[test]
    fn error_header_section_too_large() {
        let max = Limits::default().header_section_max_bytes;
        let garbage = vec![b'A'; 1024 * 1024];
        assert_eq!(
            error(Limits::default(), Version::V1_2, &garbage),
            DecodeError::HeaderSectionTooLarge { max_bytes: max }
        );
        // Arriving in reads, it fails on the first read past the limit.
        let mut dec = decoder_default();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let err = loop {
            buf.extend_from_slice(&garbage[fed..fed + 4096]);
            fed += 4096;
            match dec.decode(&mut buf) {
                Ok(None) => continue,
                Ok(Some(item)) => panic!("{item:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, DecodeError::HeaderSectionTooLarge { max_bytes: max });
        assert_eq!(fed, max + 4096);

        // The boundary: a section of exactly the limit passes, one more fails.
        let head = |len: usize| {
            let mut h = b"SEND\nk:".to_vec();
            h.resize(len - 2, b'v');
            h.extend_from_slice(b"\n\n");
            h
        };
        let mut exact = head(SMALL.header_section_max_bytes);
        exact.push(0);
        assert_eq!(decode_all(SMALL, Version::V1_2, &exact).unwrap().len(), 1);
        let mut over = head(SMALL.header_section_max_bytes + 1);
        over.push(0);
        assert_eq!(
            error(SMALL, Version::V1_2, &over),
            DecodeError::HeaderSectionTooLarge {
                max_bytes: SMALL.header_section_max_bytes
            }
        );
    }

    #[test]
    fn error_too_many_headers() {
        let ok = b"SEND\na:1\nb:2\nc:3\n\n\x00";
        assert_eq!(decode_all(SMALL, Version::V1_2, ok).unwrap().len(), 1);
        // Fails at the fourth header line, before the section ends.
        assert_eq!(
            error(SMALL, Version::V1_2, b"SEND\na:1\nb:2\nc:3\nd:4\n"),
            DecodeError::TooManyHeaders {
                max: SMALL.header_count_max
            }
        );
    }

    #[test]
    fn error_missing_nul() {
        assert_eq!(
            error(
                Limits::default(),
                Version::V1_2,
                b"SEND\ncontent-length:3\n\nabcd\x00"
            ),
            DecodeError::MissingNul
        );
    }

    #[test]
    fn error_messages_are_single_lines() {
        let all = [
            DecodeError::unknown_command(b"X\x00\x7f\x1b"),
            DecodeError::MalformedHeader,
            DecodeError::InvalidUtf8,
            DecodeError::InvalidEscape,
            DecodeError::BadLineEnding,
            DecodeError::BadContentLength,
            DecodeError::BodyTooLarge { max_bytes: 1 },
            DecodeError::HeaderSectionTooLarge { max_bytes: 1 },
            DecodeError::TooManyHeaders { max: 1 },
            DecodeError::MissingNul,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert!(!text.contains(['\n', '\r', '\0']), "{text:?}");
        }
    }

    #[test]
    fn decoder_is_usable_after_an_error() {
        let mut dec = decoder_default();
        let mut buf = BytesMut::from(&b"SEND\nbad\n\n\x00"[..]);
        assert_eq!(dec.decode(&mut buf), Err(DecodeError::MalformedHeader));
        // What comes next is meaningless, but must not panic.
        buf.clear();
        buf.extend_from_slice(b"\nSEND\n\n\x00");
        assert_eq!(dec.decode(&mut buf), Ok(Some(Item::Heartbeat)));
        assert!(matches!(dec.decode(&mut buf), Ok(Some(Item::Frame(_)))));
    }

    // ---- encoding ------------------------------------------------------------

    #[test]
    fn encode_parts_message() {
        let mut extra = Headers::new();
        extra.push("x-colour", "re:d\n\\");
        let mut out = BytesMut::new();
        encode_parts(
            &mut out,
            Version::V1_2,
            Command::Message,
            &[
                ("subscription", "0"),
                ("message-id", "42"),
                ("destination", "/queue/a"),
            ],
            &extra,
            b"hi\x00",
        );
        assert_eq!(
            &out[..],
            &b"MESSAGE\nsubscription:0\nmessage-id:42\ndestination:/queue/a\n\
               x-colour:re\\cd\\n\\\\\ncontent-length:3\n\nhi\x00\x00"[..]
        );
    }

    #[test]
    fn encode_content_length_rules() {
        let mut out = BytesMut::new();
        encode_parts(
            &mut out,
            Version::V1_2,
            Command::Send,
            &[("content-length", "2")],
            &Headers::new(),
            b"ab",
        );
        assert_eq!(&out[..], &b"SEND\ncontent-length:2\n\nab\x00"[..]);

        let mut extra = Headers::new();
        extra.push("content-length", "2");
        out.clear();
        encode_parts(&mut out, Version::V1_2, Command::Send, &[], &extra, b"ab");
        assert_eq!(&out[..], &b"SEND\ncontent-length:2\n\nab\x00"[..]);

        out.clear();
        encode(&Frame::new(Command::Receipt), Version::V1_2, &mut out);
        assert_eq!(&out[..], &b"RECEIPT\n\n\x00"[..]);
    }

    #[test]
    fn encode_unrepresentable_characters_keep_the_frame_well_formed() {
        let mut f = Frame::new(Command::Error);
        f.headers.push("message", "line1\nline2\r:x");
        let mut out = BytesMut::new();
        encode(&f, Version::V1_0, &mut out);
        assert_eq!(&out[..], &b"ERROR\nmessage:line1 line2 :x\n\n\x00"[..]);
        out.clear();
        encode(&f, Version::V1_1, &mut out);
        assert_eq!(&out[..], &b"ERROR\nmessage:line1\\nline2 \\cx\n\n\x00"[..]);
        // CONNECTED is never escaped.
        let mut f = Frame::new(Command::Connected);
        f.headers.push("server", "ferromq/0.1:x\\y");
        out.clear();
        encode(&f, Version::V1_2, &mut out);
        assert_eq!(&out[..], &b"CONNECTED\nserver:ferromq/0.1:x\\y\n\n\x00"[..]);
    }

    #[test]
    fn decimal_writer() {
        for n in [0, 9, 10, 1234567, usize::MAX] {
            let mut out = BytesMut::new();
            write_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }

    // ---- properties ------------------------------------------------------------

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Text biased towards the characters that need escaping.
        fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
            let c = prop_oneof![
                4 => prop::sample::select(vec![':', '\n', '\r', '\\', 'c', 'n', 'r']),
                6 => any::<char>(),
            ];
            prop::collection::vec(c, len).prop_map(|cs| cs.into_iter().collect())
        }

        /// A frame the version can represent exactly.
        fn frame(version: Version) -> impl Strategy<Value = Frame> {
            (
                prop::sample::select(Command::ALL.to_vec()),
                prop::collection::vec((text(1..10), text(0..10)), 0..8),
                prop::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(move |(command, pairs, body)| {
                    let raw = Escaping::for_frame(command, version) == Escaping::Raw;
                    let mut f = Frame::new(command);
                    for (mut name, mut value) in pairs {
                        if raw {
                            name.retain(|c| !matches!(c, ':' | '\r' | '\n'));
                            value.retain(|c| !matches!(c, '\r' | '\n'));
                        } else if version == Version::V1_1 {
                            name.retain(|c| c != '\r');
                            value.retain(|c| c != '\r');
                        }
                        if name.is_empty() || name == "content-length" {
                            name.insert(0, 'x');
                        }
                        f.headers.push(name, value);
                    }
                    f.body = body.into();
                    f
                })
        }

        fn round_trip(version: Version, f: &Frame) -> Result<(), TestCaseError> {
            let mut buf = BytesMut::new();
            encode(f, version, &mut buf);
            let mut dec = Decoder::new(Limits::default());
            dec.set_version(version);
            let decoded = dec.decode(&mut buf);
            prop_assert_eq!(decoded, Ok(Some(Item::Frame(expected(f)))));
            prop_assert!(buf.is_empty());
            Ok(())
        }

        /// What decoding gives back: the frame plus the `content-length`
        /// that encoding adds to a non-empty body.
        fn expected(f: &Frame) -> Frame {
            let mut f = f.clone();
            if !f.body.is_empty() {
                f.headers.push("content-length", f.body.len().to_string());
            }
            f
        }

        /// Byte soup made of STOMP fragments, or plain random bytes.
        fn garbage() -> impl Strategy<Value = Vec<u8>> {
            let token = prop::sample::select(vec![
                &b"SEND"[..],
                b"MESSAGE",
                b"CONNECT",
                b"\n",
                b"\r\n",
                b"\r",
                b":",
                b"content-length:",
                b"3",
                b"\x00",
                b"\\",
                b"\\c",
                b"a",
                b"\xff",
                b"\n\n",
            ]);
            prop_oneof![
                prop::collection::vec(token, 0..48).prop_map(|ts| ts.concat()),
                prop::collection::vec(any::<u8>(), 0..256),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn round_trip_1_2(f in frame(Version::V1_2)) {
                round_trip(Version::V1_2, &f)?;
            }

            #[test]
            fn round_trip_1_1(f in frame(Version::V1_1)) {
                round_trip(Version::V1_1, &f)?;
            }

            #[test]
            fn round_trip_1_0(f in frame(Version::V1_0)) {
                round_trip(Version::V1_0, &f)?;
            }

            /// Never panics, and the result does not depend on read sizes.
            #[test]
            fn garbage_is_split_invariant(
                bytes in garbage(),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
                small in any::<bool>(),
                version in prop::sample::select(vec![Version::V1_0, Version::V1_1, Version::V1_2]),
            ) {
                let limits = if small { SMALL } else { Limits::default() };
                let mut dec = Decoder::new(limits.clone());
                dec.set_version(version);
                let whole = drain(&mut dec, &mut BytesMut::from(&bytes[..]));

                let mut points: Vec<usize> =
                    cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
                points.push(bytes.len());
                points.sort_unstable();
                let mut dec = Decoder::new(limits);
                dec.set_version(version);
                let mut buf = BytesMut::new();
                let mut chunked = Vec::new();
                let mut from = 0;
                for to in points {
                    buf.extend_from_slice(&bytes[from..to]);
                    from = to;
                    chunked.extend(drain(&mut dec, &mut buf));
                    if matches!(chunked.last(), Some(Err(_))) {
                        break;
                    }
                }
                prop_assert_eq!(chunked, whole);
            }
        }
    }
}
