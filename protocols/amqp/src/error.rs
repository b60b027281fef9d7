//! AMQP errors, typed by blast radius.
//!
//! AMQP 0-9-1 has two: a *soft* error ends one channel (`channel.close`), a *hard* error
//! ends the connection (`connection.close`). Which one is decided by the reply code, as
//! the spec's constants table classifies them; every error carries the code, the text
//! (`"NOT_FOUND - no queue 'q' in vhost '/'"`, RabbitMQ's format) and the class and method
//! of the frame that caused it.

use std::fmt;

/// The reply codes of AMQP 0-9-1 (and RabbitMQ's use of them).
pub mod code {
    /// `basic.return`: the message could not be routed to any queue.
    pub const NO_ROUTE: u16 = 312;
    /// The broker closed the connection (shutdown).
    pub const CONNECTION_FORCED: u16 = 320;
    /// The user may not do this.
    pub const ACCESS_REFUSED: u16 = 403;
    /// The named entity does not exist.
    pub const NOT_FOUND: u16 = 404;
    /// The entity is exclusive to another connection.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// A precondition (equivalence, an argument, a tag) failed.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// A malformed frame.
    pub const FRAME_ERROR: u16 = 501;
    /// A frame whose fields could not be parsed.
    pub const SYNTAX_ERROR: u16 = 502;
    /// A method that is invalid here.
    pub const COMMAND_INVALID: u16 = 503;
    /// A channel that is not open, or opened twice.
    pub const CHANNEL_ERROR: u16 = 504;
    /// A frame that was not expected now (content out of place).
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// A configured limit was reached.
    pub const RESOURCE_ERROR: u16 = 506;
    /// Not allowed by the connection's state or configuration.
    pub const NOT_ALLOWED: u16 = 530;
    /// Valid, but not implemented by this server.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// A fault inside the broker.
    pub const INTERNAL_ERROR: u16 = 541;

    /// The constant's name as it prefixes reply texts.
    pub fn name(code: u16) -> &'static str {
        match code {
            NO_ROUTE => "NO_ROUTE",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            _ => "INTERNAL_ERROR",
        }
    }

    /// Whether the spec classes the code as a hard (connection) error.
    pub fn is_hard(code: u16) -> bool {
        !matches!(
            code,
            NO_ROUTE | ACCESS_REFUSED | NOT_FOUND | RESOURCE_LOCKED | PRECONDITION_FAILED
        )
    }
}

/// What an error ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The channel the frame arrived on (`channel.close`).
    Channel,
    /// The whole connection (`connection.close`).
    Connection,
}

/// A protocol error with its reply code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpError {
    /// The reply code.
    pub code: u16,
    /// The reply text, `"NAME - detail"`.
    pub text: String,
    /// Class of the method that failed (0 when no method is to blame).
    pub class_id: u16,
    /// Method that failed.
    pub method_id: u16,
}

impl AmqpError {
    /// An error with `code`; the text is prefixed with the code's name.
    pub fn new(code: u16, detail: impl fmt::Display) -> Self {
        Self {
            code,
            text: format!("{} - {detail}", code::name(code)),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method that caused the error (for the close frame).
    pub fn at(mut self, class_id: u16, method_id: u16) -> Self {
        if self.class_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// Whether it ends the channel or the connection.
    pub fn scope(&self) -> Scope {
        if code::is_hard(self.code) {
            Scope::Connection
        } else {
            Scope::Channel
        }
    }

    /// 406, the most common soft error.
    pub fn precondition(detail: impl fmt::Display) -> Self {
        Self::new(code::PRECONDITION_FAILED, detail)
    }

    /// 503, for methods that are not valid here.
    pub fn command_invalid(detail: impl fmt::Display) -> Self {
        Self::new(code::COMMAND_INVALID, detail)
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text, self.code)
    }
}

impl std::error::Error for AmqpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_the_spec_classes() {
        assert_eq!(AmqpError::new(code::NOT_FOUND, "x").scope(), Scope::Channel);
        assert_eq!(
            AmqpError::new(code::FRAME_ERROR, "x").scope(),
            Scope::Connection
        );
        assert_eq!(
            AmqpError::new(code::NOT_FOUND, "no queue 'q'").text,
            "NOT_FOUND - no queue 'q'"
        );
    }
}
