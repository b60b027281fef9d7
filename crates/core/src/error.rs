//! Errors of core operations, with the AMQP 0-9-1 reply code each one maps to (the other
//! protocols translate that code into their own error frame).

use thiserror::Error;

/// A failed core operation. Every variant ends only the operation (a channel-level fault in
/// AMQP terms) unless noted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The named exchange, queue or vhost does not exist.
    #[error("NOT_FOUND - {0}")]
    NotFound(String),
    /// The user may not do this, or the name is reserved.
    #[error("ACCESS_REFUSED - {0}")]
    AccessRefused(String),
    /// An exclusive queue or consumer belongs to another connection or consumer.
    #[error("RESOURCE_LOCKED - {0}")]
    ResourceLocked(String),
    /// Redeclaration with other properties, or a condition such as if-unused failed.
    #[error("PRECONDITION_FAILED - {0}")]
    PreconditionFailed(String),
    /// A configured bound was reached.
    #[error("RESOURCE_ERROR - {0}")]
    ResourceLimit(String),
    /// An argument is malformed (bad type or value).
    #[error("INVALID_ARGUMENT - {0}")]
    InvalidArgument(String),
    /// The request names something that does not exist as a kind (an unknown exchange
    /// type); a connection-level fault in AMQP.
    #[error("COMMAND_INVALID - {0}")]
    CommandInvalid(String),
    /// The journal failed (an I/O error); what was not confirmed may not be stored. A
    /// connection-level fault in AMQP.
    #[error("INTERNAL_ERROR - {0}")]
    Storage(String),
}

impl CoreError {
    /// The AMQP 0-9-1 reply code for this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            CoreError::NotFound(_) => 404,
            CoreError::AccessRefused(_) => 403,
            CoreError::ResourceLocked(_) => 405,
            CoreError::PreconditionFailed(_) | CoreError::InvalidArgument(_) => 406,
            CoreError::ResourceLimit(_) => 506,
            CoreError::CommandInvalid(_) => 503,
            CoreError::Storage(_) => 541,
        }
    }
}

/// Why authentication failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password; deliberately not told apart.
    #[error("ACCESS_REFUSED - login was refused using authentication mechanism PLAIN")]
    BadCredentials,
    /// A loopback-only user (the default `guest`) connected from another host.
    #[error("ACCESS_REFUSED - user '{0}' can only connect via localhost")]
    LoopbackOnly(String),
    /// No username was given and anonymous access is not allowed.
    #[error("ACCESS_REFUSED - a username is required")]
    AnonymousRefused,
    /// The user exists but may not use the vhost.
    #[error("NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'")]
    VhostRefused {
        /// The user.
        user: String,
        /// The vhost asked for.
        vhost: String,
    },
}
