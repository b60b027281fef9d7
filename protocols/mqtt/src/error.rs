//! Typed decode and encode errors.
//!
//! # Blast radius
//!
//! MQTT has no per-stream errors: every [`DecodeError`] ends the connection.
//! What differs is what the server says first, and that depends on the
//! version and on whether CONNACK has been sent:
//!
//! | version | during CONNECT | after CONNACK |
//! |---|---|---|
//! | 5.0 | CONNACK with [`DecodeError::reason_code`], then close | DISCONNECT with [`DecodeError::reason_code`], then close |
//! | 3.1, 3.1.1 | CONNACK with [`DecodeError::connect_return_code`] if it is `Some`, then close | close |
//!
//! For an unknown protocol level the version is unknown too; the README
//! recommends a 3.1.1-form CONNACK 0x01, which every MQTT client can read.
//!
//! # Malformed Packet or Protocol Error
//!
//! MQTT 5 calls a packet *malformed* when it cannot be parsed (bad lengths,
//! reserved bits, bad UTF-8, a property in the wrong packet) and a *protocol
//! error* when it parses but breaks a rule (duplicate properties, a zero
//! packet identifier, a wildcard in a topic name). Where the specification
//! names the code, the variant uses it; the README lists the choices made
//! where it does not.

use crate::packet::PacketType;
use crate::properties::{PropertyContext, PropertyId};
use crate::reason::{ConnectReturnCode, ReasonCode};
use crate::topic::TopicError;
use crate::version::ProtocolVersion;

/// Why a byte stream is not an acceptable MQTT packet. Every variant ends the
/// connection; see the module docs for what to send first.
///
/// `Display` is one short line, fit for a log or an MQTT 5 Reason String.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    // ---- framing -------------------------------------------------------------------
    /// The packet type nibble is 0, or 15 (AUTH) before MQTT 5.
    #[error("packet type {packet_type} is reserved")]
    ReservedPacketType {
        /// The type nibble, 0..=15.
        packet_type: u8,
    },
    /// The fixed header's flag nibble is wrong for the packet type, including
    /// a PUBLISH with QoS 3 or with DUP set at QoS 0.
    #[error("{packet} has invalid fixed header flags {flags:#06b}")]
    InvalidFlags {
        /// The packet type.
        packet: PacketType,
        /// The flag nibble received.
        flags: u8,
    },
    /// A variable byte integer runs past four bytes or is not minimally
    /// encoded (the Remaining Length, a property length, a property
    /// identifier or a Subscription Identifier).
    #[error("{field} is not a valid variable byte integer")]
    MalformedVarInt {
        /// Which integer.
        field: &'static str,
    },
    /// The packet is, or says it is, larger than the configured maximum.
    /// Raised from the fixed header alone, before the body is buffered.
    #[error("packet of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    PacketTooLarge {
        /// The whole packet's size as declared by its fixed header.
        size_bytes: u64,
        /// The configured maximum that applied.
        max_bytes: u32,
    },
    /// A packet this end never receives (CONNACK at a server, SUBSCRIBE at a
    /// client), anything but CONNECT first, or a second CONNECT.
    #[error("unexpected {packet} packet: {why}")]
    UnexpectedPacket {
        /// The packet type received.
        packet: PacketType,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A field runs past the end of the packet's Remaining Length.
    #[error("{packet} is truncated: a field runs past the remaining length")]
    Truncated {
        /// The packet type.
        packet: PacketType,
    },
    /// Bytes are left over after the last field of a packet.
    #[error("{packet} has bytes after its last field")]
    TrailingBytes {
        /// The packet type.
        packet: PacketType,
    },
    /// A UTF-8 string field is ill-formed UTF-8 (surrogates and overlong
    /// forms included) or contains U+0000.
    #[error("{field} is not a valid MQTT UTF-8 string")]
    MalformedString {
        /// Which field.
        field: &'static str,
    },

    // ---- CONNECT -------------------------------------------------------------------
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`: probably not
    /// MQTT at all.
    #[error("unknown protocol name in CONNECT")]
    UnknownProtocolName,
    /// A known protocol name with a level this codec does not speak (or the
    /// wrong level for the name, like `MQIsdp` with level 4).
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolLevel {
        /// The level byte received.
        level: u8,
    },
    /// A reserved bit is set: in the CONNECT flags, the CONNACK acknowledge
    /// flags, or a subscription's options byte.
    #[error("reserved bits set in {field}")]
    ReservedBits {
        /// Which field.
        field: &'static str,
    },
    /// Will QoS is 3, or Will QoS or Will Retain is set without the Will flag.
    #[error("invalid Will flags in CONNECT")]
    InvalidWillFlags,
    /// MQTT 3 forbids a password without a user name.
    #[error("password flag set without user name flag")]
    PasswordWithoutUsername,
    /// The Client Identifier is refused: empty where the version forbids it,
    /// longer than MQTT 3.1's 23 bytes, or over the configured limit.
    #[error("client identifier rejected: {why}")]
    ClientIdRejected {
        /// Which rule it breaks.
        why: &'static str,
    },

    // ---- properties (MQTT 5) -------------------------------------------------------
    /// A property identifier MQTT 5 does not define.
    #[error("unknown property identifier {id:#04x}")]
    UnknownProperty {
        /// The identifier received.
        id: u32,
    },
    /// A defined property in a packet that may not carry it.
    #[error("{property} is not allowed in {context}")]
    PropertyNotAllowed {
        /// The property.
        property: PropertyId,
        /// The packet (or Will) it appeared in.
        context: PropertyContext,
    },
    /// A property that may appear once appears again.
    #[error("{property} appears more than once")]
    DuplicateProperty {
        /// The property.
        property: PropertyId,
    },
    /// A property value the protocol forbids (0 for Receive Maximum, 2 for
    /// a flag, ...).
    #[error("invalid value for {property}")]
    InvalidPropertyValue {
        /// The property.
        property: PropertyId,
    },
    /// A property required by another field is missing (Authentication Data
    /// without Authentication Method, an AUTH without a method).
    #[error("{property} is missing")]
    MissingProperty {
        /// The missing property.
        property: PropertyId,
    },
    /// A property the sender's side may not send: a Subscription Identifier
    /// in a client's PUBLISH, a Session Expiry Interval in a server's
    /// DISCONNECT.
    #[error("{property} may not be sent by this side")]
    PropertyFromWrongSide {
        /// The property.
        property: PropertyId,
    },
    /// More properties in one list than the configured limit.
    #[error("more than {max} properties in one property list")]
    TooManyProperties {
        /// The configured `properties_max`.
        max: usize,
    },
    /// A Topic Alias of 0.
    #[error("topic alias 0 is not allowed")]
    TopicAliasZero,

    // ---- other fields --------------------------------------------------------------
    /// A packet identifier of 0.
    #[error("{packet} has packet identifier 0")]
    ZeroPacketId {
        /// The packet type.
        packet: PacketType,
    },
    /// A reason or return code the packet type does not define, or one the
    /// sender's side may not use.
    #[error("{packet} has invalid reason code {code:#04x}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The byte received.
        code: u8,
    },
    /// A CONNACK with Session Present set and a non-zero reason code.
    #[error("CONNACK with session present and a failure code")]
    SessionPresentWithError,
    /// A topic name (PUBLISH, Will or Response Topic) is invalid or over a limit.
    #[error("topic name {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter (SUBSCRIBE, UNSUBSCRIBE) is invalid or over a limit.
    #[error("topic filter {0}")]
    InvalidTopicFilter(TopicError),
    /// A SUBSCRIBE, UNSUBSCRIBE, SUBACK or UNSUBACK without a single entry.
    #[error("{packet} has an empty payload")]
    EmptyPayload {
        /// The packet type.
        packet: PacketType,
    },
    /// More topic filters in one SUBSCRIBE or UNSUBSCRIBE than the limit.
    #[error("more than {max} topic filters in one packet")]
    TooManyTopicFilters {
        /// The configured `topic_filters_max`.
        max: usize,
    },
    /// A subscription asks for QoS 3.
    #[error("subscription requests QoS 3")]
    InvalidSubscriptionQos,
    /// A subscription's Retain Handling is 3.
    #[error("subscription has retain handling 3")]
    InvalidRetainHandling,
    /// No Local set on a shared subscription.
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
}

impl DecodeError {
    /// The MQTT 5 reason code for the CONNACK or DISCONNECT that reports
    /// this error. Each is valid in the packet that reports it: errors only
    /// CONNECT can cause (0x84, 0x85) are CONNACK codes, errors only later
    /// packets can cause (0x8F, 0x94) are DISCONNECT codes, and the rest are
    /// valid in both.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError as E;
        match self {
            E::ReservedPacketType { .. }
            | E::InvalidFlags { .. }
            | E::MalformedVarInt { .. }
            | E::Truncated { .. }
            | E::TrailingBytes { .. }
            | E::MalformedString { .. }
            | E::ReservedBits { .. }
            | E::InvalidWillFlags
            | E::PasswordWithoutUsername
            | E::UnknownProperty { .. }
            | E::PropertyNotAllowed { .. } => ReasonCode::MalformedPacket,
            E::UnexpectedPacket { .. }
            | E::DuplicateProperty { .. }
            | E::InvalidPropertyValue { .. }
            | E::MissingProperty { .. }
            | E::PropertyFromWrongSide { .. }
            | E::ZeroPacketId { .. }
            | E::InvalidReasonCode { .. }
            | E::SessionPresentWithError
            | E::EmptyPayload { .. }
            | E::InvalidSubscriptionQos
            | E::InvalidRetainHandling
            | E::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            E::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            E::UnknownProtocolName | E::UnsupportedProtocolLevel { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            E::ClientIdRejected { .. } => ReasonCode::ClientIdentifierNotValid,
            E::TooManyProperties { .. } | E::TooManyTopicFilters { .. } => {
                ReasonCode::QuotaExceeded
            }
            E::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            E::InvalidTopicName(e) if e.is_limit() => ReasonCode::TopicNameInvalid,
            E::InvalidTopicFilter(e) if e.is_limit() => ReasonCode::TopicFilterInvalid,
            E::InvalidTopicName(_) | E::InvalidTopicFilter(_) => ReasonCode::ProtocolError,
        }
    }

    /// The MQTT 3 CONNACK return code to send before closing, for the two
    /// CONNECT failures MQTT 3 reports: an unsupported protocol level (0x01)
    /// and a refused Client Identifier (0x02). `None` means close without a
    /// CONNACK, which is what MQTT 3 asks for everything else.
    pub fn connect_return_code(&self) -> Option<ConnectReturnCode> {
        match self {
            DecodeError::UnsupportedProtocolLevel { .. } => {
                Some(ConnectReturnCode::UnacceptableProtocolVersion)
            }
            DecodeError::ClientIdRejected { .. } => Some(ConnectReturnCode::IdentifierRejected),
            _ => None,
        }
    }
}

/// Why a packet cannot be encoded. Nothing is written to the output when
/// encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded packet would exceed the peer's Maximum Packet Size (or the
    /// protocol's 256 MiB). For anything but PUBLISH the sender should retry
    /// without Reason String and User Properties
    /// ([`Packet::strip_diagnostics`](crate::packet::Packet::strip_diagnostics));
    /// a PUBLISH that does not fit is dropped as if it had been delivered.
    #[error("packet of {size_bytes} bytes exceeds the peer's maximum of {max_bytes} bytes")]
    PacketTooLarge {
        /// The size the packet would have.
        size_bytes: u64,
        /// The maximum that applied.
        max_bytes: u32,
    },
    /// A string or binary field is longer than 65,535 bytes.
    #[error("{field} is longer than 65535 bytes")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
    },
    /// The packet type does not exist in the version (AUTH before MQTT 5).
    #[error("{packet} does not exist in {version}")]
    NotInVersion {
        /// The packet type.
        packet: PacketType,
        /// The version encoded for.
        version: ProtocolVersion,
    },
    /// A value has no wire form: DUP on a QoS 0 PUBLISH, a Maximum QoS of 2,
    /// a CONNACK reason code with no MQTT 3 return code, a Subscription
    /// Identifier above 268,435,455, an empty SUBSCRIBE, ...
    #[error("cannot encode {what}")]
    Unrepresentable {
        /// What could not be encoded.
        what: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Role;

    /// One of each variant.
    fn all() -> Vec<DecodeError> {
        use DecodeError as E;
        let p = PacketType::Publish;
        vec![
            E::ReservedPacketType { packet_type: 0 },
            E::InvalidFlags {
                packet: p,
                flags: 6,
            },
            E::MalformedVarInt { field: "x" },
            E::PacketTooLarge {
                size_bytes: 2,
                max_bytes: 1,
            },
            E::UnexpectedPacket {
                packet: p,
                why: "x",
            },
            E::Truncated { packet: p },
            E::TrailingBytes { packet: p },
            E::MalformedString { field: "x" },
            E::UnknownProtocolName,
            E::UnsupportedProtocolLevel { level: 6 },
            E::ReservedBits { field: "x" },
            E::InvalidWillFlags,
            E::PasswordWithoutUsername,
            E::ClientIdRejected { why: "x" },
            E::UnknownProperty { id: 0 },
            E::PropertyNotAllowed {
                property: PropertyId::TopicAlias,
                context: PropertyContext::Connect,
            },
            E::DuplicateProperty {
                property: PropertyId::TopicAlias,
            },
            E::InvalidPropertyValue {
                property: PropertyId::TopicAlias,
            },
            E::MissingProperty {
                property: PropertyId::AuthenticationMethod,
            },
            E::PropertyFromWrongSide {
                property: PropertyId::SubscriptionIdentifier,
            },
            E::TooManyProperties { max: 1 },
            E::TopicAliasZero,
            E::ZeroPacketId { packet: p },
            E::InvalidReasonCode { packet: p, code: 3 },
            E::SessionPresentWithError,
            E::InvalidTopicName(TopicError::Empty),
            E::InvalidTopicName(TopicError::TooLong { max_bytes: 1 }),
            E::InvalidTopicFilter(TopicError::MisplacedWildcard),
            E::InvalidTopicFilter(TopicError::TooManyLevels { max: 1 }),
            E::EmptyPayload { packet: p },
            E::TooManyTopicFilters { max: 1 },
            E::InvalidSubscriptionQos,
            E::InvalidRetainHandling,
            E::NoLocalOnSharedSubscription,
        ]
    }

    #[test]
    fn reason_codes_fit_disconnect_and_connack() {
        use DecodeError as E;
        for e in all() {
            let code = e.reason_code();
            assert!(code.is_error(), "{e}");
            let connect_only = matches!(
                e,
                E::UnknownProtocolName
                    | E::UnsupportedProtocolLevel { .. }
                    | E::ClientIdRejected { .. }
                    | E::InvalidWillFlags
                    | E::PasswordWithoutUsername
            );
            let after_connect_only = matches!(e, E::TopicAliasZero | E::InvalidTopicFilter(_));
            if !after_connect_only {
                assert!(code.allowed_in(PacketType::ConnAck), "{e}: {code}");
            }
            if !connect_only {
                assert!(code.disconnect_sendable_by(Role::Server), "{e}: {code}");
            }
        }
    }

    #[test]
    fn messages_are_single_lines() {
        for e in all() {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains(['\n', '\r']), "{text:?}");
        }
    }

    #[test]
    fn v3_connack_codes() {
        for e in all() {
            let expected = match e {
                DecodeError::UnsupportedProtocolLevel { .. } => {
                    Some(ConnectReturnCode::UnacceptableProtocolVersion)
                }
                DecodeError::ClientIdRejected { .. } => Some(ConnectReturnCode::IdentifierRejected),
                _ => None,
            };
            assert_eq!(e.connect_return_code(), expected, "{e}");
        }
    }
}
