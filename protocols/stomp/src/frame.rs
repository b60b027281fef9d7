//! The STOMP frame model: protocol versions, commands, headers and frames.
//!
//! These types carry no wire-format knowledge; `codec` turns bytes into
//! them and back. They are shared by every STOMP version, so version-specific
//! rules (header escaping, which commands exist in 1.0) live in the codec and
//! the session, not here.
//!
//! # Invariants
//!
//! * Header names and values are always valid UTF-8 (they are
//!   [`ByteString`]s). The decoder guarantees this for received frames;
//!   the type system guarantees it for frames built in code.
//! * [`Headers`] keeps every entry in arrival order, repeated names
//!   included. STOMP 1.2 says only the first occurrence of a repeated header
//!   counts, so [`Headers::get`] returns the first one; the later ones are
//!   kept so a frame survives a decode/encode round trip unchanged.
//! * A decoded [`Frame::body`] is a slice of the connection's read buffer,
//!   never a copy.

use bytes::Bytes;
use bytestring::ByteString;

/// A STOMP protocol version, as negotiated by `accept-version` / `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// STOMP 1.0: no header escaping, no heart-beating, no NACK.
    V1_0,
    /// STOMP 1.1: escapes `\n`, `:` and `\` in headers.
    V1_1,
    /// STOMP 1.2: like 1.1, plus `\r` escaping and CRLF line endings.
    V1_2,
}

impl Version {
    /// The version as written in `accept-version` and `version` headers.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }
}

/// A STOMP frame command, client or server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session (all versions).
    Connect,
    /// Client: open a session (1.1+ alias of CONNECT that old brokers reject).
    Stomp,
    /// Client: publish a message.
    Send,
    /// Client: start receiving from a destination.
    Subscribe,
    /// Client: stop a subscription.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: reject a message (1.1+).
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll back a transaction.
    Abort,
    /// Client: close the session.
    Disconnect,
    /// Server: the session is open.
    Connected,
    /// Server: a delivered message.
    Message,
    /// Server: a requested receipt.
    Receipt,
    /// Server: a fatal error; the connection closes after it.
    Error,
}

impl Command {
    /// Every command, for exhaustive tests.
    #[cfg(test)]
    pub(crate) const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The command as written on the wire.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command line (without its EOL).
    ///
    /// Only the exact upper-case names match: the spec defines commands as
    /// case-sensitive, and a broker that accepted `send` would invite
    /// clients that break on every other broker.
    pub fn parse(line: &[u8]) -> Option<Command> {
        Some(match line {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// Whether this command's headers are written without escaping in every
    /// version. The spec exempts the connection handshake because it happens
    /// before a version is agreed on; a 1.0 peer could not unescape them.
    pub(crate) const fn is_never_escaped(&self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

/// The header entries of a frame, in wire order, repeated names kept.
///
/// Lookups are linear scans: frames carry a handful of headers, and a scan
/// over a short contiguous vector beats hashing. The decoder bounds the
/// count (see `Limits::header_count_max`), so the worst case is bounded too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(ByteString, ByteString)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty header list with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Appends an entry, keeping any earlier entry with the same name.
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.entries.push((name.into(), value.into()));
    }

    /// The value of the first entry named `name`.
    ///
    /// First wins because STOMP 1.2 says only the first of repeated headers
    /// is used (1.0 and 1.1 say nothing, and brokers agree on first).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytestring(name).map(|v| &**v)
    }

    /// Like [`Headers::get`], but returns the shared string so a caller can
    /// keep it (`clone()` is a reference-count bump, not a copy).
    pub fn get_bytestring(&self, name: &str) -> Option<&ByteString> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// All entries as `(name, value)`, in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Number of entries, repeated names counted each time.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry named `name`, returning the value that
    /// [`Headers::get`] would have returned (the first one), if any.
    pub fn remove(&mut self, name: &str) -> Option<ByteString> {
        let mut first = None;
        self.entries.retain(|(n, v)| {
            if n != name {
                return true;
            }
            if first.is_none() {
                first = Some(v.clone());
            }
            false
        });
        first
    }
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command line.
    pub command: Command,
    /// The headers, unescaped, in wire order.
    pub headers: Headers,
    /// The body: binary, possibly containing NUL when `content-length` was given.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }
}

/// What the decoder yields: a frame, or a heart-beat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A bare EOL (`\n` or `\r\n`) between frames, which STOMP 1.1+ peers
    /// send as a heart-beat. It carries no data; it proves the peer is alive.
    Heartbeat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_round_trip_and_are_case_sensitive() {
        for c in Command::ALL {
            assert_eq!(Command::parse(c.as_str().as_bytes()), Some(c));
            let lower = c.as_str().to_ascii_lowercase();
            assert_eq!(Command::parse(lower.as_bytes()), None);
        }
        assert_eq!(Command::parse(b""), None);
        assert_eq!(Command::parse(b"SEND "), None);
    }

    #[test]
    fn version_strings() {
        assert_eq!(Version::V1_0.as_str(), "1.0");
        assert_eq!(Version::V1_1.as_str(), "1.1");
        assert_eq!(Version::V1_2.as_str(), "1.2");
    }

    #[test]
    fn headers_first_wins_and_remove_takes_all() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("b", "2");
        h.push("a", "3");
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get_bytestring("b").map(|v| &**v), Some("2"));
        assert_eq!(h.get("c"), None);
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("a", "3")]
        );
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("a"), None);
        assert_eq!(h.remove("a"), None);
        assert!(!h.is_empty());
        assert_eq!(h.remove("b").as_deref(), Some("2"));
        assert!(h.is_empty());
    }
}
