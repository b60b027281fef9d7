//! One struct per packet's property set. Absent properties are `None` (or
//! empty), so a decoded packet re-encodes to the same bytes, and "absent"
//! stays distinguishable from "present with the default value".
//!
//! Field names follow the specification's property names, with units last
//! (`_secs`, `_bytes`) where the value has one.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use bytestring::ByteString;

use super::id::{PropertyContext, PropertyId};
use super::list::{Prop, PropertyList, Value};
use crate::error::DecodeError;
use crate::packet::QoS;

/// User Properties in the order received: name/value pairs, names may repeat.
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// The Payload Format Indicator's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    Unspecified = 0,
    /// 1: UTF-8 encoded character data. The codec does not check the payload;
    /// a receiver may, and then answers 0x99 Payload format invalid.
    Utf8 = 1,
}

use PropertyId as P;

fn not_allowed(id: PropertyId, context: PropertyContext) -> DecodeError {
    DecodeError::PropertyNotAllowed {
        property: id,
        context,
    }
}

fn invalid(id: PropertyId) -> DecodeError {
    DecodeError::InvalidPropertyValue { property: id }
}

/// A Byte property that may only be 0 or 1.
fn flag(id: PropertyId, byte: u8) -> Result<bool, DecodeError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(invalid(id)),
    }
}

fn payload_format(byte: u8) -> Result<PayloadFormat, DecodeError> {
    match byte {
        0 => Ok(PayloadFormat::Unspecified),
        1 => Ok(PayloadFormat::Utf8),
        _ => Err(invalid(P::PayloadFormatIndicator)),
    }
}

fn nonzero_u16(id: PropertyId, v: u16) -> Result<NonZeroU16, DecodeError> {
    NonZeroU16::new(v).ok_or_else(|| invalid(id))
}

fn nonzero_u32(id: PropertyId, v: u32) -> Result<NonZeroU32, DecodeError> {
    NonZeroU32::new(v).ok_or_else(|| invalid(id))
}

fn visit_users<'a>(users: &'a UserProperties, f: &mut dyn FnMut(Prop<'a>)) {
    for (k, v) in users {
        f(Prop::Pair(k, v));
    }
}

/// Calls `f` with a Byte property for a flag, if present.
fn visit_flag<'a>(f: &mut dyn FnMut(Prop<'a>), id: PropertyId, v: Option<bool>) {
    if let Some(v) = v {
        f(Prop::Byte(id, u8::from(v)));
    }
}

/// Properties of CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// How long the session outlives the connection; absent means 0.
    pub session_expiry_interval_secs: Option<u32>,
    /// QoS 1 and 2 PUBLISHes the client accepts in flight; absent means 65,535.
    pub receive_maximum: Option<NonZeroU16>,
    /// Largest packet the client accepts; absent means no limit.
    pub maximum_packet_size_bytes: Option<NonZeroU32>,
    /// Highest Topic Alias the client accepts from the server; absent means 0.
    pub topic_alias_maximum: Option<u16>,
    /// Whether the client wants Response Information in CONNACK.
    pub request_response_information: Option<bool>,
    /// Whether the server may send Reason Strings and User Properties on
    /// failures; absent means yes.
    pub request_problem_information: Option<bool>,
    /// Extended authentication method.
    pub authentication_method: Option<ByteString>,
    /// Extended authentication data (only with a method).
    pub authentication_data: Option<Bytes>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for ConnectProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.session_expiry_interval_secs {
            f(Prop::U32(P::SessionExpiryInterval, v));
        }
        if let Some(v) = self.receive_maximum {
            f(Prop::U16(P::ReceiveMaximum, v.get()));
        }
        if let Some(v) = self.maximum_packet_size_bytes {
            f(Prop::U32(P::MaximumPacketSize, v.get()));
        }
        if let Some(v) = self.topic_alias_maximum {
            f(Prop::U16(P::TopicAliasMaximum, v));
        }
        visit_flag(
            f,
            P::RequestResponseInformation,
            self.request_response_information,
        );
        visit_flag(
            f,
            P::RequestProblemInformation,
            self.request_problem_information,
        );
        if let Some(v) = &self.authentication_method {
            f(Prop::Str(P::AuthenticationMethod, v));
        }
        if let Some(v) = &self.authentication_data {
            f(Prop::Bin(P::AuthenticationData, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::SessionExpiryInterval, Value::U32(v)) => {
                self.session_expiry_interval_secs = Some(v)
            }
            (P::ReceiveMaximum, Value::U16(v)) => self.receive_maximum = Some(nonzero_u16(id, v)?),
            (P::MaximumPacketSize, Value::U32(v)) => {
                self.maximum_packet_size_bytes = Some(nonzero_u32(id, v)?)
            }
            (P::TopicAliasMaximum, Value::U16(v)) => self.topic_alias_maximum = Some(v),
            (P::RequestResponseInformation, Value::Byte(v)) => {
                self.request_response_information = Some(flag(id, v)?)
            }
            (P::RequestProblemInformation, Value::Byte(v)) => {
                self.request_problem_information = Some(flag(id, v)?)
            }
            (P::AuthenticationMethod, Value::Str(v)) => self.authentication_method = Some(v),
            (P::AuthenticationData, Value::Bin(v)) => self.authentication_data = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

/// Properties of the Will message in CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Delay between the connection's end and publishing the Will.
    pub will_delay_interval_secs: Option<u32>,
    /// Whether the Will payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the Will message once published.
    pub message_expiry_interval_secs: Option<u32>,
    /// MIME type of the payload.
    pub content_type: Option<ByteString>,
    /// Topic for responses (a topic name: no wildcards).
    pub response_topic: Option<ByteString>,
    /// Correlation data for responses.
    pub correlation_data: Option<Bytes>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for WillProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.will_delay_interval_secs {
            f(Prop::U32(P::WillDelayInterval, v));
        }
        if let Some(v) = self.payload_format_indicator {
            f(Prop::Byte(P::PayloadFormatIndicator, v as u8));
        }
        if let Some(v) = self.message_expiry_interval_secs {
            f(Prop::U32(P::MessageExpiryInterval, v));
        }
        if let Some(v) = &self.content_type {
            f(Prop::Str(P::ContentType, v));
        }
        if let Some(v) = &self.response_topic {
            f(Prop::Str(P::ResponseTopic, v));
        }
        if let Some(v) = &self.correlation_data {
            f(Prop::Bin(P::CorrelationData, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::WillDelayInterval, Value::U32(v)) => self.will_delay_interval_secs = Some(v),
            (P::PayloadFormatIndicator, Value::Byte(v)) => {
                self.payload_format_indicator = Some(payload_format(v)?)
            }
            (P::MessageExpiryInterval, Value::U32(v)) => {
                self.message_expiry_interval_secs = Some(v)
            }
            (P::ContentType, Value::Str(v)) => self.content_type = Some(v),
            (P::ResponseTopic, Value::Str(v)) => self.response_topic = Some(v),
            (P::CorrelationData, Value::Bin(v)) => self.correlation_data = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

/// Properties of CONNACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// The session expiry the server will use, if it differs from the client's.
    pub session_expiry_interval_secs: Option<u32>,
    /// QoS 1 and 2 PUBLISHes the server accepts in flight; absent means 65,535.
    pub receive_maximum: Option<NonZeroU16>,
    /// Highest QoS the server supports: only 0 or 1 may be sent; absent means 2.
    pub maximum_qos: Option<QoS>,
    /// Whether retained messages are supported; absent means yes.
    pub retain_available: Option<bool>,
    /// Largest packet the server accepts; absent means no limit.
    pub maximum_packet_size_bytes: Option<NonZeroU32>,
    /// The client id the server chose for an empty one.
    pub assigned_client_identifier: Option<ByteString>,
    /// Highest Topic Alias the server accepts; absent means 0.
    pub topic_alias_maximum: Option<u16>,
    /// Diagnostic text.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Whether wildcard subscriptions are supported; absent means yes.
    pub wildcard_subscription_available: Option<bool>,
    /// Whether subscription identifiers are supported; absent means yes.
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported; absent means yes.
    pub shared_subscription_available: Option<bool>,
    /// Keep alive the client must use instead of its own.
    pub server_keep_alive_secs: Option<u16>,
    /// Basis for response topics.
    pub response_information: Option<ByteString>,
    /// Another server to use.
    pub server_reference: Option<ByteString>,
    /// Extended authentication method.
    pub authentication_method: Option<ByteString>,
    /// Extended authentication data.
    pub authentication_data: Option<Bytes>,
}

impl PropertyList for ConnAckProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.session_expiry_interval_secs {
            f(Prop::U32(P::SessionExpiryInterval, v));
        }
        if let Some(v) = self.receive_maximum {
            f(Prop::U16(P::ReceiveMaximum, v.get()));
        }
        if let Some(v) = self.maximum_qos {
            f(Prop::Byte(P::MaximumQos, v as u8));
        }
        visit_flag(f, P::RetainAvailable, self.retain_available);
        if let Some(v) = self.maximum_packet_size_bytes {
            f(Prop::U32(P::MaximumPacketSize, v.get()));
        }
        if let Some(v) = &self.assigned_client_identifier {
            f(Prop::Str(P::AssignedClientIdentifier, v));
        }
        if let Some(v) = self.topic_alias_maximum {
            f(Prop::U16(P::TopicAliasMaximum, v));
        }
        if let Some(v) = &self.reason_string {
            f(Prop::Str(P::ReasonString, v));
        }
        visit_flag(
            f,
            P::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        visit_flag(
            f,
            P::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        visit_flag(
            f,
            P::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        if let Some(v) = self.server_keep_alive_secs {
            f(Prop::U16(P::ServerKeepAlive, v));
        }
        if let Some(v) = &self.response_information {
            f(Prop::Str(P::ResponseInformation, v));
        }
        if let Some(v) = &self.server_reference {
            f(Prop::Str(P::ServerReference, v));
        }
        if let Some(v) = &self.authentication_method {
            f(Prop::Str(P::AuthenticationMethod, v));
        }
        if let Some(v) = &self.authentication_data {
            f(Prop::Bin(P::AuthenticationData, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::SessionExpiryInterval, Value::U32(v)) => {
                self.session_expiry_interval_secs = Some(v)
            }
            (P::ReceiveMaximum, Value::U16(v)) => self.receive_maximum = Some(nonzero_u16(id, v)?),
            (P::MaximumQos, Value::Byte(v)) => {
                self.maximum_qos = Some(match v {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => return Err(invalid(id)),
                })
            }
            (P::RetainAvailable, Value::Byte(v)) => self.retain_available = Some(flag(id, v)?),
            (P::MaximumPacketSize, Value::U32(v)) => {
                self.maximum_packet_size_bytes = Some(nonzero_u32(id, v)?)
            }
            (P::AssignedClientIdentifier, Value::Str(v)) => {
                self.assigned_client_identifier = Some(v)
            }
            (P::TopicAliasMaximum, Value::U16(v)) => self.topic_alias_maximum = Some(v),
            (P::ReasonString, Value::Str(v)) => self.reason_string = Some(v),
            (P::WildcardSubscriptionAvailable, Value::Byte(v)) => {
                self.wildcard_subscription_available = Some(flag(id, v)?)
            }
            (P::SubscriptionIdentifierAvailable, Value::Byte(v)) => {
                self.subscription_identifiers_available = Some(flag(id, v)?)
            }
            (P::SharedSubscriptionAvailable, Value::Byte(v)) => {
                self.shared_subscription_available = Some(flag(id, v)?)
            }
            (P::ServerKeepAlive, Value::U16(v)) => self.server_keep_alive_secs = Some(v),
            (P::ResponseInformation, Value::Str(v)) => self.response_information = Some(v),
            (P::ServerReference, Value::Str(v)) => self.server_reference = Some(v),
            (P::AuthenticationMethod, Value::Str(v)) => self.authentication_method = Some(v),
            (P::AuthenticationData, Value::Bin(v)) => self.authentication_data = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl ConnAckProperties {
    /// Drops Reason String and User Properties, which a sender must leave
    /// out rather than exceed the peer's Maximum Packet Size. Returns whether
    /// anything was dropped.
    pub fn strip_diagnostics(&mut self) -> bool {
        let had = self.reason_string.is_some() || !self.user_properties.is_empty();
        self.reason_string = None;
        self.user_properties.clear();
        had
    }
}

/// Properties of PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// Whether the payload is UTF-8.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime of the message.
    pub message_expiry_interval_secs: Option<u32>,
    /// Topic alias; with an empty topic name it stands for the topic.
    pub topic_alias: Option<NonZeroU16>,
    /// Topic for responses (a topic name: no wildcards).
    pub response_topic: Option<ByteString>,
    /// Correlation data for responses.
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: UserProperties,
    /// Identifiers of the subscriptions the message matched (server to
    /// client only; a client may not send them).
    pub subscription_identifiers: Vec<NonZeroU32>,
    /// MIME type of the payload.
    pub content_type: Option<ByteString>,
}

impl PropertyList for PublishProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.payload_format_indicator {
            f(Prop::Byte(P::PayloadFormatIndicator, v as u8));
        }
        if let Some(v) = self.message_expiry_interval_secs {
            f(Prop::U32(P::MessageExpiryInterval, v));
        }
        if let Some(v) = self.topic_alias {
            f(Prop::U16(P::TopicAlias, v.get()));
        }
        if let Some(v) = &self.response_topic {
            f(Prop::Str(P::ResponseTopic, v));
        }
        if let Some(v) = &self.correlation_data {
            f(Prop::Bin(P::CorrelationData, v));
        }
        visit_users(&self.user_properties, f);
        for id in &self.subscription_identifiers {
            f(Prop::VarInt(P::SubscriptionIdentifier, id.get()));
        }
        if let Some(v) = &self.content_type {
            f(Prop::Str(P::ContentType, v));
        }
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::PayloadFormatIndicator, Value::Byte(v)) => {
                self.payload_format_indicator = Some(payload_format(v)?)
            }
            (P::MessageExpiryInterval, Value::U32(v)) => {
                self.message_expiry_interval_secs = Some(v)
            }
            (P::TopicAlias, Value::U16(v)) => {
                self.topic_alias = Some(NonZeroU16::new(v).ok_or(DecodeError::TopicAliasZero)?)
            }
            (P::ResponseTopic, Value::Str(v)) => self.response_topic = Some(v),
            (P::CorrelationData, Value::Bin(v)) => self.correlation_data = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (P::SubscriptionIdentifier, Value::VarInt(v)) => {
                self.subscription_identifiers.push(nonzero_u32(id, v)?)
            }
            (P::ContentType, Value::Str(v)) => self.content_type = Some(v),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Diagnostic text.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for AckProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = &self.reason_string {
            f(Prop::Str(P::ReasonString, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::ReasonString, Value::Str(v)) => self.reason_string = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl AckProperties {
    /// Drops everything: acknowledgements carry only diagnostics. Returns
    /// whether anything was dropped.
    pub fn strip_diagnostics(&mut self) -> bool {
        let had = !PropertyList::is_empty(self);
        *self = Self::default();
        had
    }
}

/// Properties of SUBSCRIBE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// Identifier the server attaches to messages this subscription matches.
    pub subscription_identifier: Option<NonZeroU32>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for SubscribeProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.subscription_identifier {
            f(Prop::VarInt(P::SubscriptionIdentifier, v.get()));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::SubscriptionIdentifier, Value::VarInt(v)) => {
                self.subscription_identifier = Some(nonzero_u32(id, v)?)
            }
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

/// Properties of UNSUBSCRIBE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for UnsubscribeProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

/// Properties of DISCONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// New session expiry (client to server only).
    pub session_expiry_interval_secs: Option<u32>,
    /// Diagnostic text.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Another server to use.
    pub server_reference: Option<ByteString>,
}

impl PropertyList for DisconnectProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = self.session_expiry_interval_secs {
            f(Prop::U32(P::SessionExpiryInterval, v));
        }
        if let Some(v) = &self.reason_string {
            f(Prop::Str(P::ReasonString, v));
        }
        if let Some(v) = &self.server_reference {
            f(Prop::Str(P::ServerReference, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::SessionExpiryInterval, Value::U32(v)) => {
                self.session_expiry_interval_secs = Some(v)
            }
            (P::ReasonString, Value::Str(v)) => self.reason_string = Some(v),
            (P::ServerReference, Value::Str(v)) => self.server_reference = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl DisconnectProperties {
    /// Drops Reason String and User Properties. Returns whether anything was
    /// dropped.
    pub fn strip_diagnostics(&mut self) -> bool {
        let had = self.reason_string.is_some() || !self.user_properties.is_empty();
        self.reason_string = None;
        self.user_properties.clear();
        had
    }
}

/// Properties of AUTH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// Extended authentication method (required whenever properties are sent).
    pub authentication_method: Option<ByteString>,
    /// Extended authentication data.
    pub authentication_data: Option<Bytes>,
    /// Diagnostic text.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl PropertyList for AuthProperties {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(Prop<'a>)) {
        if let Some(v) = &self.authentication_method {
            f(Prop::Str(P::AuthenticationMethod, v));
        }
        if let Some(v) = &self.authentication_data {
            f(Prop::Bin(P::AuthenticationData, v));
        }
        if let Some(v) = &self.reason_string {
            f(Prop::Str(P::ReasonString, v));
        }
        visit_users(&self.user_properties, f);
    }

    fn apply(
        &mut self,
        id: PropertyId,
        value: Value,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match (id, value) {
            (P::AuthenticationMethod, Value::Str(v)) => self.authentication_method = Some(v),
            (P::AuthenticationData, Value::Bin(v)) => self.authentication_data = Some(v),
            (P::ReasonString, Value::Str(v)) => self.reason_string = Some(v),
            (P::UserProperty, Value::Pair(k, v)) => self.user_properties.push((k, v)),
            (id, _) => return Err(not_allowed(id, ctx)),
        }
        Ok(())
    }
}

impl AuthProperties {
    /// Drops Reason String and User Properties. Returns whether anything was
    /// dropped.
    pub fn strip_diagnostics(&mut self) -> bool {
        let had = self.reason_string.is_some() || !self.user_properties.is_empty();
        self.reason_string = None;
        self.user_properties.clear();
        had
    }
}
