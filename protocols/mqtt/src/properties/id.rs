//! The MQTT 5 property identifiers, their value types, and the packets each
//! may appear in (the table of MQTT 5 section 2.2.2.2).

use std::fmt;

/// Where a property list sits: a packet type, or the Will Properties inside
/// CONNECT's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    /// CONNECT's variable header.
    Connect,
    /// CONNECT's Will Properties.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyContext {
    /// Every context.
    pub const ALL: [PropertyContext; 14] = [
        Self::Connect,
        Self::Will,
        Self::ConnAck,
        Self::Publish,
        Self::PubAck,
        Self::PubRec,
        Self::PubRel,
        Self::PubComp,
        Self::Subscribe,
        Self::SubAck,
        Self::Unsubscribe,
        Self::UnsubAck,
        Self::Disconnect,
        Self::Auth,
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for PropertyContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "CONNECT",
            Self::Will => "Will Properties",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        })
    }
}

/// The data type of a property's value (MQTT 5 section 1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// One byte.
    Byte,
    /// Two-byte big-endian integer.
    TwoByteInteger,
    /// Four-byte big-endian integer.
    FourByteInteger,
    /// Variable byte integer.
    VariableByteInteger,
    /// Length-prefixed UTF-8 string.
    Utf8String,
    /// Length-prefixed binary data.
    BinaryData,
    /// Two UTF-8 strings: name and value.
    Utf8StringPair,
}

/// An MQTT 5 property identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PropertyId {
    /// 0x01, Byte: whether the payload is UTF-8.
    PayloadFormatIndicator = 0x01,
    /// 0x02, Four Byte Integer: message lifetime in seconds.
    MessageExpiryInterval = 0x02,
    /// 0x03, UTF-8 String: payload MIME type.
    ContentType = 0x03,
    /// 0x08, UTF-8 String: topic for a response.
    ResponseTopic = 0x08,
    /// 0x09, Binary Data: ties a response to its request.
    CorrelationData = 0x09,
    /// 0x0B, Variable Byte Integer: subscription identifier.
    SubscriptionIdentifier = 0x0B,
    /// 0x11, Four Byte Integer: session lifetime in seconds.
    SessionExpiryInterval = 0x11,
    /// 0x12, UTF-8 String: client id chosen by the server.
    AssignedClientIdentifier = 0x12,
    /// 0x13, Two Byte Integer: keep alive imposed by the server.
    ServerKeepAlive = 0x13,
    /// 0x15, UTF-8 String: extended authentication method.
    AuthenticationMethod = 0x15,
    /// 0x16, Binary Data: extended authentication data.
    AuthenticationData = 0x16,
    /// 0x17, Byte: whether reason strings may be sent.
    RequestProblemInformation = 0x17,
    /// 0x18, Four Byte Integer: delay before the Will is published.
    WillDelayInterval = 0x18,
    /// 0x19, Byte: whether Response Information is wanted.
    RequestResponseInformation = 0x19,
    /// 0x1A, UTF-8 String: basis for response topics.
    ResponseInformation = 0x1A,
    /// 0x1C, UTF-8 String: another server to use.
    ServerReference = 0x1C,
    /// 0x1F, UTF-8 String: human-readable diagnostic.
    ReasonString = 0x1F,
    /// 0x21, Two Byte Integer: QoS 1/2 PUBLISHes in flight.
    ReceiveMaximum = 0x21,
    /// 0x22, Two Byte Integer: highest topic alias accepted.
    TopicAliasMaximum = 0x22,
    /// 0x23, Two Byte Integer: topic alias.
    TopicAlias = 0x23,
    /// 0x24, Byte: highest QoS the server supports.
    MaximumQos = 0x24,
    /// 0x25, Byte: whether retained messages are supported.
    RetainAvailable = 0x25,
    /// 0x26, UTF-8 String Pair: application name/value pair.
    UserProperty = 0x26,
    /// 0x27, Four Byte Integer: largest packet accepted.
    MaximumPacketSize = 0x27,
    /// 0x28, Byte: whether wildcard subscriptions are supported.
    WildcardSubscriptionAvailable = 0x28,
    /// 0x29, Byte: whether subscription identifiers are supported.
    SubscriptionIdentifierAvailable = 0x29,
    /// 0x2A, Byte: whether shared subscriptions are supported.
    SharedSubscriptionAvailable = 0x2A,
}

use PropertyContext as C;
use PropertyId as P;

/// The contexts where User Property may appear: all of them.
const EVERYWHERE: u16 = (1 << PropertyContext::ALL.len()) - 1;

/// Reason String may appear in every acknowledgement, CONNACK, DISCONNECT
/// and AUTH.
const REASON_STRING_CONTEXTS: u16 = C::ConnAck.bit()
    | C::PubAck.bit()
    | C::PubRec.bit()
    | C::PubRel.bit()
    | C::PubComp.bit()
    | C::SubAck.bit()
    | C::UnsubAck.bit()
    | C::Disconnect.bit()
    | C::Auth.bit();

/// Application message properties: PUBLISH and the Will.
const MESSAGE: u16 = C::Publish.bit() | C::Will.bit();

impl PropertyId {
    /// Every property, in identifier order.
    pub const ALL: [PropertyId; 27] = [
        P::PayloadFormatIndicator,
        P::MessageExpiryInterval,
        P::ContentType,
        P::ResponseTopic,
        P::CorrelationData,
        P::SubscriptionIdentifier,
        P::SessionExpiryInterval,
        P::AssignedClientIdentifier,
        P::ServerKeepAlive,
        P::AuthenticationMethod,
        P::AuthenticationData,
        P::RequestProblemInformation,
        P::WillDelayInterval,
        P::RequestResponseInformation,
        P::ResponseInformation,
        P::ServerReference,
        P::ReasonString,
        P::ReceiveMaximum,
        P::TopicAliasMaximum,
        P::TopicAlias,
        P::MaximumQos,
        P::RetainAvailable,
        P::UserProperty,
        P::MaximumPacketSize,
        P::WildcardSubscriptionAvailable,
        P::SubscriptionIdentifierAvailable,
        P::SharedSubscriptionAvailable,
    ];

    /// The property with this identifier, if MQTT 5 defines one.
    pub fn from_u32(id: u32) -> Option<PropertyId> {
        let byte = u8::try_from(id).ok()?;
        Self::ALL
            .binary_search_by_key(&byte, |p| *p as u8)
            .ok()
            .map(|i| Self::ALL[i])
    }

    /// The identifier byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The type of the value that follows the identifier.
    pub fn value_type(self) -> ValueType {
        use ValueType as T;
        match self {
            P::PayloadFormatIndicator
            | P::RequestProblemInformation
            | P::RequestResponseInformation
            | P::MaximumQos
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => T::Byte,
            P::ServerKeepAlive | P::ReceiveMaximum | P::TopicAliasMaximum | P::TopicAlias => {
                T::TwoByteInteger
            }
            P::MessageExpiryInterval
            | P::SessionExpiryInterval
            | P::WillDelayInterval
            | P::MaximumPacketSize => T::FourByteInteger,
            P::SubscriptionIdentifier => T::VariableByteInteger,
            P::ContentType
            | P::ResponseTopic
            | P::AssignedClientIdentifier
            | P::AuthenticationMethod
            | P::ResponseInformation
            | P::ServerReference
            | P::ReasonString => T::Utf8String,
            P::CorrelationData | P::AuthenticationData => T::BinaryData,
            P::UserProperty => T::Utf8StringPair,
        }
    }

    /// The contexts this property may appear in, as a bit set.
    const fn contexts(self) -> u16 {
        match self {
            P::PayloadFormatIndicator
            | P::MessageExpiryInterval
            | P::ContentType
            | P::ResponseTopic
            | P::CorrelationData => MESSAGE,
            P::SubscriptionIdentifier => C::Publish.bit() | C::Subscribe.bit(),
            P::SessionExpiryInterval => C::Connect.bit() | C::ConnAck.bit() | C::Disconnect.bit(),
            P::AssignedClientIdentifier
            | P::ServerKeepAlive
            | P::ResponseInformation
            | P::MaximumQos
            | P::RetainAvailable
            | P::WildcardSubscriptionAvailable
            | P::SubscriptionIdentifierAvailable
            | P::SharedSubscriptionAvailable => C::ConnAck.bit(),
            P::AuthenticationMethod | P::AuthenticationData => {
                C::Connect.bit() | C::ConnAck.bit() | C::Auth.bit()
            }
            P::RequestProblemInformation | P::RequestResponseInformation => C::Connect.bit(),
            P::WillDelayInterval => C::Will.bit(),
            P::ServerReference => C::ConnAck.bit() | C::Disconnect.bit(),
            P::ReasonString => REASON_STRING_CONTEXTS,
            P::ReceiveMaximum | P::TopicAliasMaximum | P::MaximumPacketSize => {
                C::Connect.bit() | C::ConnAck.bit()
            }
            P::TopicAlias => C::Publish.bit(),
            P::UserProperty => EVERYWHERE,
        }
    }

    /// Whether the property may appear in `context`. A property anywhere
    /// else makes the packet malformed.
    pub fn allowed_in(self, context: PropertyContext) -> bool {
        self.contexts() & context.bit() != 0
    }

    /// Whether the property may appear more than once in `context`: User
    /// Property anywhere, Subscription Identifier in PUBLISH (one per
    /// matching subscription). Any other repeat is a protocol error.
    pub fn may_repeat(self, context: PropertyContext) -> bool {
        match self {
            P::UserProperty => true,
            P::SubscriptionIdentifier => context == C::Publish,
            _ => false,
        }
    }

    /// The specification's name for the property.
    pub fn name(self) -> &'static str {
        match self {
            P::PayloadFormatIndicator => "Payload Format Indicator",
            P::MessageExpiryInterval => "Message Expiry Interval",
            P::ContentType => "Content Type",
            P::ResponseTopic => "Response Topic",
            P::CorrelationData => "Correlation Data",
            P::SubscriptionIdentifier => "Subscription Identifier",
            P::SessionExpiryInterval => "Session Expiry Interval",
            P::AssignedClientIdentifier => "Assigned Client Identifier",
            P::ServerKeepAlive => "Server Keep Alive",
            P::AuthenticationMethod => "Authentication Method",
            P::AuthenticationData => "Authentication Data",
            P::RequestProblemInformation => "Request Problem Information",
            P::WillDelayInterval => "Will Delay Interval",
            P::RequestResponseInformation => "Request Response Information",
            P::ResponseInformation => "Response Information",
            P::ServerReference => "Server Reference",
            P::ReasonString => "Reason String",
            P::ReceiveMaximum => "Receive Maximum",
            P::TopicAliasMaximum => "Topic Alias Maximum",
            P::TopicAlias => "Topic Alias",
            P::MaximumQos => "Maximum QoS",
            P::RetainAvailable => "Retain Available",
            P::UserProperty => "User Property",
            P::MaximumPacketSize => "Maximum Packet Size",
            P::WildcardSubscriptionAvailable => "Wildcard Subscription Available",
            P::SubscriptionIdentifierAvailable => "Subscription Identifier Available",
            P::SharedSubscriptionAvailable => "Shared Subscription Available",
        }
    }
}

impl fmt::Display for PropertyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip() {
        for pair in PropertyId::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for p in PropertyId::ALL {
            assert_eq!(PropertyId::from_u32(u32::from(p.as_u8())), Some(p));
        }
        let defined = (0..=255u32).filter_map(PropertyId::from_u32).count();
        assert_eq!(defined, 27);
        assert_eq!(PropertyId::from_u32(0x26 + 256), None);
    }

    /// The specification's table, written out again as (property, contexts)
    /// so that a typo in `contexts` shows up as a mismatch.
    #[test]
    fn allowed_contexts_match_the_table() {
        use PropertyContext::*;
        let table: &[(PropertyId, &[PropertyContext])] = &[
            (P::PayloadFormatIndicator, &[Publish, Will]),
            (P::MessageExpiryInterval, &[Publish, Will]),
            (P::ContentType, &[Publish, Will]),
            (P::ResponseTopic, &[Publish, Will]),
            (P::CorrelationData, &[Publish, Will]),
            (P::SubscriptionIdentifier, &[Publish, Subscribe]),
            (P::SessionExpiryInterval, &[Connect, ConnAck, Disconnect]),
            (P::AssignedClientIdentifier, &[ConnAck]),
            (P::ServerKeepAlive, &[ConnAck]),
            (P::AuthenticationMethod, &[Connect, ConnAck, Auth]),
            (P::AuthenticationData, &[Connect, ConnAck, Auth]),
            (P::RequestProblemInformation, &[Connect]),
            (P::WillDelayInterval, &[Will]),
            (P::RequestResponseInformation, &[Connect]),
            (P::ResponseInformation, &[ConnAck]),
            (P::ServerReference, &[ConnAck, Disconnect]),
            (
                P::ReasonString,
                &[
                    ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth,
                ],
            ),
            (P::ReceiveMaximum, &[Connect, ConnAck]),
            (P::TopicAliasMaximum, &[Connect, ConnAck]),
            (P::TopicAlias, &[Publish]),
            (P::MaximumQos, &[ConnAck]),
            (P::RetainAvailable, &[ConnAck]),
            (P::UserProperty, &PropertyContext::ALL),
            (P::MaximumPacketSize, &[Connect, ConnAck]),
            (P::WildcardSubscriptionAvailable, &[ConnAck]),
            (P::SubscriptionIdentifierAvailable, &[ConnAck]),
            (P::SharedSubscriptionAvailable, &[ConnAck]),
        ];
        assert_eq!(table.len(), PropertyId::ALL.len());
        for (p, contexts) in table {
            for c in PropertyContext::ALL {
                assert_eq!(p.allowed_in(c), contexts.contains(&c), "{p} in {c}");
            }
        }
    }

    #[test]
    fn repeats() {
        assert!(P::UserProperty.may_repeat(PropertyContext::Connect));
        assert!(P::SubscriptionIdentifier.may_repeat(PropertyContext::Publish));
        assert!(!P::SubscriptionIdentifier.may_repeat(PropertyContext::Subscribe));
        assert!(!P::ReasonString.may_repeat(PropertyContext::PubAck));
    }
}
