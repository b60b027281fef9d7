//! MQTT 5 reason codes, the packets each may appear in, and the MQTT 3
//! CONNACK return codes they map to.
//!
//! One [`ReasonCode`] type serves every packet, as in the specification's
//! single table. Three values have several names depending on the packet:
//! 0x00 is Success, Normal disconnection and Granted QoS 0; 0x01 and 0x02 are
//! only Granted QoS 1 and 2. The aliases are associated constants.

use std::fmt;

use crate::packet::PacketType;
use crate::version::Role;

/// An MQTT 5 reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReasonCode {
    /// 0x00: Success; also Normal disconnection and Granted QoS 0.
    Success = 0x00,
    /// 0x01: Granted QoS 1 (SUBACK).
    GrantedQos1 = 0x01,
    /// 0x02: Granted QoS 2 (SUBACK).
    GrantedQos2 = 0x02,
    /// 0x04: Disconnect with Will Message (client DISCONNECT).
    DisconnectWithWillMessage = 0x04,
    /// 0x10: No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10,
    /// 0x11: No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11,
    /// 0x18: Continue authentication (AUTH).
    ContinueAuthentication = 0x18,
    /// 0x19: Re-authenticate (AUTH).
    ReAuthenticate = 0x19,
    /// 0x80: Unspecified error.
    UnspecifiedError = 0x80,
    /// 0x81: Malformed Packet: the packet could not be parsed.
    MalformedPacket = 0x81,
    /// 0x82: Protocol Error: parsed, but breaks a rule of the protocol.
    ProtocolError = 0x82,
    /// 0x83: Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// 0x84: Unsupported Protocol Version (CONNACK).
    UnsupportedProtocolVersion = 0x84,
    /// 0x85: Client Identifier not valid (CONNACK).
    ClientIdentifierNotValid = 0x85,
    /// 0x86: Bad User Name or Password (CONNACK).
    BadUserNameOrPassword = 0x86,
    /// 0x87: Not authorized.
    NotAuthorized = 0x87,
    /// 0x88: Server unavailable (CONNACK).
    ServerUnavailable = 0x88,
    /// 0x89: Server busy.
    ServerBusy = 0x89,
    /// 0x8A: Banned (CONNACK).
    Banned = 0x8A,
    /// 0x8B: Server shutting down (DISCONNECT).
    ServerShuttingDown = 0x8B,
    /// 0x8C: Bad authentication method (CONNACK).
    BadAuthenticationMethod = 0x8C,
    /// 0x8D: Keep Alive timeout (DISCONNECT).
    KeepAliveTimeout = 0x8D,
    /// 0x8E: Session taken over (DISCONNECT).
    SessionTakenOver = 0x8E,
    /// 0x8F: Topic Filter invalid.
    TopicFilterInvalid = 0x8F,
    /// 0x90: Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// 0x91: Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// 0x92: Packet Identifier not found (PUBREL, PUBCOMP).
    PacketIdentifierNotFound = 0x92,
    /// 0x93: Receive Maximum exceeded (DISCONNECT).
    ReceiveMaximumExceeded = 0x93,
    /// 0x94: Topic Alias invalid (DISCONNECT).
    TopicAliasInvalid = 0x94,
    /// 0x95: Packet too large.
    PacketTooLarge = 0x95,
    /// 0x96: Message rate too high (DISCONNECT).
    MessageRateTooHigh = 0x96,
    /// 0x97: Quota exceeded.
    QuotaExceeded = 0x97,
    /// 0x98: Administrative action (DISCONNECT).
    AdministrativeAction = 0x98,
    /// 0x99: Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// 0x9A: Retain not supported.
    RetainNotSupported = 0x9A,
    /// 0x9B: QoS not supported.
    QosNotSupported = 0x9B,
    /// 0x9C: Use another server.
    UseAnotherServer = 0x9C,
    /// 0x9D: Server moved.
    ServerMoved = 0x9D,
    /// 0x9E: Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// 0x9F: Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// 0xA0: Maximum connect time (DISCONNECT).
    MaximumConnectTime = 0xA0,
    /// 0xA1: Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// 0xA2: Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

use ReasonCode as R;

/// Reason codes a CONNACK may carry.
const CONNACK: &[ReasonCode] = &[
    R::Success,
    R::UnspecifiedError,
    R::MalformedPacket,
    R::ProtocolError,
    R::ImplementationSpecificError,
    R::UnsupportedProtocolVersion,
    R::ClientIdentifierNotValid,
    R::BadUserNameOrPassword,
    R::NotAuthorized,
    R::ServerUnavailable,
    R::ServerBusy,
    R::Banned,
    R::BadAuthenticationMethod,
    R::TopicNameInvalid,
    R::PacketTooLarge,
    R::QuotaExceeded,
    R::PayloadFormatInvalid,
    R::RetainNotSupported,
    R::QosNotSupported,
    R::UseAnotherServer,
    R::ServerMoved,
    R::ConnectionRateExceeded,
];

/// Reason codes a PUBACK or PUBREC may carry.
const PUBACK_PUBREC: &[ReasonCode] = &[
    R::Success,
    R::NoMatchingSubscribers,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicNameInvalid,
    R::PacketIdentifierInUse,
    R::QuotaExceeded,
    R::PayloadFormatInvalid,
];

/// Reason codes a PUBREL or PUBCOMP may carry.
const PUBREL_PUBCOMP: &[ReasonCode] = &[R::Success, R::PacketIdentifierNotFound];

/// Reason codes a SUBACK may carry, one per topic filter.
const SUBACK: &[ReasonCode] = &[
    R::Success,
    R::GrantedQos1,
    R::GrantedQos2,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicFilterInvalid,
    R::PacketIdentifierInUse,
    R::QuotaExceeded,
    R::SharedSubscriptionsNotSupported,
    R::SubscriptionIdentifiersNotSupported,
    R::WildcardSubscriptionsNotSupported,
];

/// Reason codes an UNSUBACK may carry, one per topic filter.
const UNSUBACK: &[ReasonCode] = &[
    R::Success,
    R::NoSubscriptionExisted,
    R::UnspecifiedError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::TopicFilterInvalid,
    R::PacketIdentifierInUse,
];

/// DISCONNECT reason codes a client may send. A server may send every
/// DISCONNECT code except Disconnect with Will Message.
const DISCONNECT_BY_CLIENT: &[ReasonCode] = &[
    R::Success,
    R::DisconnectWithWillMessage,
    R::UnspecifiedError,
    R::MalformedPacket,
    R::ProtocolError,
    R::ImplementationSpecificError,
    R::TopicNameInvalid,
    R::ReceiveMaximumExceeded,
    R::TopicAliasInvalid,
    R::PacketTooLarge,
    R::MessageRateTooHigh,
    R::QuotaExceeded,
    R::AdministrativeAction,
    R::PayloadFormatInvalid,
];

/// Reason codes a DISCONNECT may carry, from either side.
const DISCONNECT: &[ReasonCode] = &[
    R::Success,
    R::DisconnectWithWillMessage,
    R::UnspecifiedError,
    R::MalformedPacket,
    R::ProtocolError,
    R::ImplementationSpecificError,
    R::NotAuthorized,
    R::ServerBusy,
    R::ServerShuttingDown,
    R::KeepAliveTimeout,
    R::SessionTakenOver,
    R::TopicFilterInvalid,
    R::TopicNameInvalid,
    R::ReceiveMaximumExceeded,
    R::TopicAliasInvalid,
    R::PacketTooLarge,
    R::MessageRateTooHigh,
    R::QuotaExceeded,
    R::AdministrativeAction,
    R::PayloadFormatInvalid,
    R::RetainNotSupported,
    R::QosNotSupported,
    R::UseAnotherServer,
    R::ServerMoved,
    R::SharedSubscriptionsNotSupported,
    R::ConnectionRateExceeded,
    R::MaximumConnectTime,
    R::SubscriptionIdentifiersNotSupported,
    R::WildcardSubscriptionsNotSupported,
];

/// Reason codes an AUTH may carry.
const AUTH: &[ReasonCode] = &[R::Success, R::ContinueAuthentication, R::ReAuthenticate];

impl ReasonCode {
    /// Normal disconnection (DISCONNECT), the same byte as Success.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// Granted QoS 0 (SUBACK), the same byte as Success.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// Every reason code, in byte order.
    pub const ALL: [ReasonCode; 43] = [
        R::Success,
        R::GrantedQos1,
        R::GrantedQos2,
        R::DisconnectWithWillMessage,
        R::NoMatchingSubscribers,
        R::NoSubscriptionExisted,
        R::ContinueAuthentication,
        R::ReAuthenticate,
        R::UnspecifiedError,
        R::MalformedPacket,
        R::ProtocolError,
        R::ImplementationSpecificError,
        R::UnsupportedProtocolVersion,
        R::ClientIdentifierNotValid,
        R::BadUserNameOrPassword,
        R::NotAuthorized,
        R::ServerUnavailable,
        R::ServerBusy,
        R::Banned,
        R::ServerShuttingDown,
        R::BadAuthenticationMethod,
        R::KeepAliveTimeout,
        R::SessionTakenOver,
        R::TopicFilterInvalid,
        R::TopicNameInvalid,
        R::PacketIdentifierInUse,
        R::PacketIdentifierNotFound,
        R::ReceiveMaximumExceeded,
        R::TopicAliasInvalid,
        R::PacketTooLarge,
        R::MessageRateTooHigh,
        R::QuotaExceeded,
        R::AdministrativeAction,
        R::PayloadFormatInvalid,
        R::RetainNotSupported,
        R::QosNotSupported,
        R::UseAnotherServer,
        R::ServerMoved,
        R::SharedSubscriptionsNotSupported,
        R::ConnectionRateExceeded,
        R::MaximumConnectTime,
        R::SubscriptionIdentifiersNotSupported,
        R::WildcardSubscriptionsNotSupported,
    ];

    /// The reason code with this byte value, if MQTT 5 defines one.
    pub fn from_u8(byte: u8) -> Option<ReasonCode> {
        // ALL is sorted by value, so a binary search finds it.
        Self::ALL
            .binary_search_by_key(&byte, |r| *r as u8)
            .ok()
            .map(|i| Self::ALL[i])
    }

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this code reports a failure (0x80 and above).
    pub fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// Whether packets of type `packet` may carry this code. Packets without
    /// reason codes (PUBLISH, SUBSCRIBE, ...) allow none.
    pub fn allowed_in(self, packet: PacketType) -> bool {
        let set = match packet {
            PacketType::ConnAck => CONNACK,
            PacketType::PubAck | PacketType::PubRec => PUBACK_PUBREC,
            PacketType::PubRel | PacketType::PubComp => PUBREL_PUBCOMP,
            PacketType::SubAck => SUBACK,
            PacketType::UnsubAck => UNSUBACK,
            PacketType::Disconnect => DISCONNECT,
            PacketType::Auth => AUTH,
            _ => &[],
        };
        set.contains(&self)
    }

    /// Whether `sender` may put this code in a DISCONNECT: a client may not
    /// send the server-side codes (Server busy, Session taken over, ...), a
    /// server may not send Disconnect with Will Message.
    pub fn disconnect_sendable_by(self, sender: Role) -> bool {
        match sender {
            Role::Client => DISCONNECT_BY_CLIENT.contains(&self),
            Role::Server => self != R::DisconnectWithWillMessage && DISCONNECT.contains(&self),
        }
    }

    /// The specification's name for the code (its first name, for aliases).
    pub fn name(self) -> &'static str {
        match self {
            R::Success => "Success",
            R::GrantedQos1 => "Granted QoS 1",
            R::GrantedQos2 => "Granted QoS 2",
            R::DisconnectWithWillMessage => "Disconnect with Will Message",
            R::NoMatchingSubscribers => "No matching subscribers",
            R::NoSubscriptionExisted => "No subscription existed",
            R::ContinueAuthentication => "Continue authentication",
            R::ReAuthenticate => "Re-authenticate",
            R::UnspecifiedError => "Unspecified error",
            R::MalformedPacket => "Malformed Packet",
            R::ProtocolError => "Protocol Error",
            R::ImplementationSpecificError => "Implementation specific error",
            R::UnsupportedProtocolVersion => "Unsupported Protocol Version",
            R::ClientIdentifierNotValid => "Client Identifier not valid",
            R::BadUserNameOrPassword => "Bad User Name or Password",
            R::NotAuthorized => "Not authorized",
            R::ServerUnavailable => "Server unavailable",
            R::ServerBusy => "Server busy",
            R::Banned => "Banned",
            R::ServerShuttingDown => "Server shutting down",
            R::BadAuthenticationMethod => "Bad authentication method",
            R::KeepAliveTimeout => "Keep Alive timeout",
            R::SessionTakenOver => "Session taken over",
            R::TopicFilterInvalid => "Topic Filter invalid",
            R::TopicNameInvalid => "Topic Name invalid",
            R::PacketIdentifierInUse => "Packet Identifier in use",
            R::PacketIdentifierNotFound => "Packet Identifier not found",
            R::ReceiveMaximumExceeded => "Receive Maximum exceeded",
            R::TopicAliasInvalid => "Topic Alias invalid",
            R::PacketTooLarge => "Packet too large",
            R::MessageRateTooHigh => "Message rate too high",
            R::QuotaExceeded => "Quota exceeded",
            R::AdministrativeAction => "Administrative action",
            R::PayloadFormatInvalid => "Payload format invalid",
            R::RetainNotSupported => "Retain not supported",
            R::QosNotSupported => "QoS not supported",
            R::UseAnotherServer => "Use another server",
            R::ServerMoved => "Server moved",
            R::SharedSubscriptionsNotSupported => "Shared Subscriptions not supported",
            R::ConnectionRateExceeded => "Connection rate exceeded",
            R::MaximumConnectTime => "Maximum connect time",
            R::SubscriptionIdentifiersNotSupported => "Subscription Identifiers not supported",
            R::WildcardSubscriptionsNotSupported => "Wildcard Subscriptions not supported",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.as_u8(), self.name())
    }
}

/// An MQTT 3.1 / 3.1.1 CONNACK return code.
///
/// [`ConnAck`](crate::packet::ConnAck) carries a [`ReasonCode`] in every
/// version; these are the six values MQTT 3 can put on the wire and how the
/// MQTT 5 codes map onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0x00: connection accepted.
    Accepted = 0,
    /// 0x01: unacceptable protocol version.
    UnacceptableProtocolVersion = 1,
    /// 0x02: identifier rejected.
    IdentifierRejected = 2,
    /// 0x03: server unavailable.
    ServerUnavailable = 3,
    /// 0x04: bad user name or password.
    BadUserNameOrPassword = 4,
    /// 0x05: not authorized.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The return code with this byte value; 6..=255 are reserved.
    pub fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The MQTT 5 reason code with the same meaning.
    pub fn to_reason_code(self) -> ReasonCode {
        match self {
            Self::Accepted => R::Success,
            Self::UnacceptableProtocolVersion => R::UnsupportedProtocolVersion,
            Self::IdentifierRejected => R::ClientIdentifierNotValid,
            Self::ServerUnavailable => R::ServerUnavailable,
            Self::BadUserNameOrPassword => R::BadUserNameOrPassword,
            Self::NotAuthorized => R::NotAuthorized,
        }
    }

    /// The MQTT 3 return code for an MQTT 5 CONNACK reason code, or `None`
    /// when MQTT 3 has none: then the server closes the connection without a
    /// CONNACK, as MQTT 3.1.1 requires when no return code applies. Codes
    /// that mean "not now" become Server unavailable, authentication failures
    /// become Bad user name or password, and bans become Not authorized.
    pub fn from_reason_code(code: ReasonCode) -> Option<Self> {
        Some(match code {
            R::Success => Self::Accepted,
            R::UnsupportedProtocolVersion => Self::UnacceptableProtocolVersion,
            R::ClientIdentifierNotValid => Self::IdentifierRejected,
            R::UnspecifiedError
            | R::ImplementationSpecificError
            | R::ServerUnavailable
            | R::ServerBusy
            | R::QuotaExceeded
            | R::UseAnotherServer
            | R::ServerMoved
            | R::ConnectionRateExceeded => Self::ServerUnavailable,
            R::BadUserNameOrPassword | R::BadAuthenticationMethod => Self::BadUserNameOrPassword,
            R::NotAuthorized | R::Banned => Self::NotAuthorized,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_sorted_and_round_trips() {
        for pair in ReasonCode::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for byte in 0..=255u8 {
            if let Some(code) = ReasonCode::from_u8(byte) {
                assert_eq!(code.as_u8(), byte);
            }
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xA3), None);
    }

    #[test]
    fn every_code_belongs_to_some_packet() {
        for code in ReasonCode::ALL {
            let somewhere = [
                PacketType::ConnAck,
                PacketType::PubAck,
                PacketType::PubRel,
                PacketType::SubAck,
                PacketType::UnsubAck,
                PacketType::Disconnect,
                PacketType::Auth,
            ]
            .into_iter()
            .any(|p| code.allowed_in(p));
            assert!(somewhere, "{code}");
        }
        assert!(!ReasonCode::Success.allowed_in(PacketType::Publish));
    }

    #[test]
    fn disconnect_senders() {
        for code in ReasonCode::ALL {
            if code.disconnect_sendable_by(Role::Client)
                || code.disconnect_sendable_by(Role::Server)
            {
                assert!(code.allowed_in(PacketType::Disconnect), "{code}");
            }
        }
        assert!(ReasonCode::DisconnectWithWillMessage.disconnect_sendable_by(Role::Client));
        assert!(!ReasonCode::DisconnectWithWillMessage.disconnect_sendable_by(Role::Server));
        assert!(!ReasonCode::SessionTakenOver.disconnect_sendable_by(Role::Client));
        assert!(ReasonCode::SessionTakenOver.disconnect_sendable_by(Role::Server));
        assert!(ReasonCode::QuotaExceeded.disconnect_sendable_by(Role::Client));
    }

    #[test]
    fn v3_return_codes() {
        for byte in 0..=5 {
            let code = ConnectReturnCode::from_u8(byte).unwrap();
            assert_eq!(code as u8, byte);
            let reason = code.to_reason_code();
            assert!(reason.allowed_in(PacketType::ConnAck));
            assert_eq!(ConnectReturnCode::from_reason_code(reason), Some(code));
        }
        assert_eq!(ConnectReturnCode::from_u8(6), None);
        assert_eq!(
            ConnectReturnCode::from_reason_code(ReasonCode::MalformedPacket),
            None
        );
        assert_eq!(
            ConnectReturnCode::from_reason_code(ReasonCode::Banned),
            Some(ConnectReturnCode::NotAuthorized)
        );
    }
}
