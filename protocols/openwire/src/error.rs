//! Errors, by blast radius.
//!
//! - [`DecodeError`]: the bytes cannot be an OpenWire frame (or break a limit). The
//!   stream cannot be resynchronised, so the connection ends; the client is told with a
//!   `ConnectionError` first when the negotiation is done.
//! - [`CommandError`]: a well-formed command the broker refuses (bad destination, access
//!   refused, unknown transaction, unsupported XA...). It ends only that command: the
//!   client gets an `ExceptionResponse` carrying the Java exception class it will throw,
//!   and the connection goes on. Only a refused `ConnectionInfo` also closes it.

use ferromq_core::{AuthError, CoreError};

/// Why a byte stream is not acceptable OpenWire. Ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame's size prefix is above the negotiated maximum; checked before buffering.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Declared size.
        size: u64,
        /// The maximum in force.
        max: u64,
    },
    /// A negative or empty size prefix.
    #[error("invalid frame size {0}")]
    BadFrameSize(i32),
    /// A field runs past the end of its frame.
    #[error("frame ends inside {0}")]
    Truncated(&'static str),
    /// Bytes left over after the command.
    #[error("{0} bytes after the end of the command")]
    Trailing(usize),
    /// A boolean that is neither 0 nor 1.
    #[error("{0}: boolean byte {1} is neither 0 nor 1")]
    BadBoolean(&'static str, u8),
    /// A negative or oversized length.
    #[error("{0}: invalid length {1}")]
    BadLength(&'static str, i64),
    /// Malformed modified UTF-8 (or a lone surrogate).
    #[error("{0}: malformed modified UTF-8")]
    BadUtf8(&'static str),
    /// An unknown data structure type byte where a specific kind is expected.
    #[error("{what}: data structure type {ty} is not allowed here")]
    UnexpectedType {
        /// The field.
        what: &'static str,
        /// The type byte.
        ty: u8,
    },
    /// A command type this broker does not know.
    #[error("unknown command type {0}")]
    UnknownCommand(u8),
    /// A primitive (property, map entry) of an unknown type.
    #[error("unknown primitive type {0}")]
    UnknownPrimitive(u8),
    /// Maps or lists nested deeper than the configured bound.
    #[error("properties nested deeper than {0} levels")]
    TooDeep(usize),
    /// The first frame was not a WireFormatInfo, or its magic is wrong.
    #[error("not an OpenWire client: {0}")]
    NotOpenWire(&'static str),
    /// The client's version is below what the broker speaks.
    #[error("OpenWire version {0} is not supported (9 to 12 are)")]
    UnsupportedVersion(i32),
    /// Options the broker cannot speak were forced (tight encoding or caching on with
    /// both sides agreeing can not happen; this is a client that disabled the size prefix).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A refused command: the Java exception class the client should throw and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The fully qualified Java class (`javax.jms.JMSException`...), which the client
    /// instantiates by reflection.
    pub class: &'static str,
    /// The message.
    pub message: String,
}

impl CommandError {
    /// A plain `javax.jms.JMSException`.
    pub fn jms(message: impl Into<String>) -> Self {
        Self {
            class: "javax.jms.JMSException",
            message: message.into(),
        }
    }

    /// An error of a given class.
    pub fn new(class: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl From<CoreError> for CommandError {
    fn from(e: CoreError) -> Self {
        let class = match e {
            CoreError::AccessRefused(_) => "java.lang.SecurityException",
            CoreError::NotFound(_) => "javax.jms.InvalidDestinationException",
            CoreError::ResourceLimit(_) => "javax.jms.ResourceAllocationException",
            _ => "javax.jms.JMSException",
        };
        Self::new(class, e.to_string())
    }
}

impl From<AuthError> for CommandError {
    fn from(e: AuthError) -> Self {
        Self::new("java.lang.SecurityException", e.to_string())
    }
}
