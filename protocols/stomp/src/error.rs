//! STOMP errors. STOMP has one blast radius: every error is an ERROR frame followed by the
//! end of the connection. What varies is the text, and whether the client is told at all
//! (a dead socket is not).

use ferromq_core::{AuthError, CoreError};

use crate::codec::DecodeError;

/// An error that ends the connection with an ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompError {
    /// The ERROR frame's `message` header: short, one line.
    pub message: String,
    /// The ERROR frame's body: what went wrong and what to do.
    pub detail: String,
    /// One more header for the ERROR frame (the `version` list for a failed negotiation).
    pub extra_header: Option<(&'static str, String)>,
}

impl StompError {
    /// An error with a short message and an explanation.
    pub fn new(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            detail: detail.into(),
            extra_header: None,
        }
    }

    /// A frame lacks a header the protocol requires.
    pub fn missing_header(command: &str, header: &str) -> Self {
        Self::new(
            "Missing header",
            format!("{command} frames must carry a '{header}' header"),
        )
    }
}

impl std::fmt::Display for StompError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.message, self.detail)
    }
}

impl std::error::Error for StompError {}

impl From<CoreError> for StompError {
    fn from(e: CoreError) -> Self {
        let message = match e {
            CoreError::NotFound(_) => "not_found",
            CoreError::AccessRefused(_) => "access_refused",
            CoreError::ResourceLocked(_) => "resource_locked",
            CoreError::PreconditionFailed(_) | CoreError::InvalidArgument(_) => {
                "precondition_failed"
            }
            CoreError::ResourceLimit(_) => "resource_limit",
            CoreError::CommandInvalid(_) => "command_invalid",
            CoreError::Storage(_) => "internal_error",
        };
        Self::new(message, e.to_string())
    }
}

impl From<AuthError> for StompError {
    fn from(e: AuthError) -> Self {
        Self::new("Access refused", e.to_string())
    }
}

impl From<DecodeError> for StompError {
    fn from(e: DecodeError) -> Self {
        Self::new("Malformed frame", e.to_string())
    }
}
