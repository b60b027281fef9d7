//! SUBSCRIBE and SUBACK.
//!
//! ```text
//! SUBSCRIBE: packet id | [properties (v5)] | (topic filter, options byte)+
//! SUBACK:    packet id | [properties (v5)] | reason code+
//! ```
//!
//! The options byte is bits 1-0 maximum QoS and, in MQTT 5, bit 2 No Local,
//! bit 3 Retain As Published, bits 5-4 Retain Handling; the other bits are
//! reserved and must be 0 (before MQTT 5, bits 7-2 are all reserved).

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use super::{check_topic_filter, read_packet_id, DecodeCtx, Encode, PacketId, QoS};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list;
use crate::properties::{AckProperties, PropertyContext, SubscribeProperties};
use crate::reason::ReasonCode;
use crate::topic;
use crate::version::ProtocolVersion;
use crate::wire::{field_len, put_field, Reader};

/// When the server sends retained messages for a new subscription (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send them whenever the subscription is made.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist yet.
    SendIfNew = 1,
    /// 2: never send them at subscribe time.
    DoNotSend = 2,
}

/// A subscription's options. Before MQTT 5 only `qos` exists; the rest
/// decode as their defaults and are not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Highest QoS the client accepts for this subscription.
    pub qos: QoS,
    /// Do not deliver the client's own messages back to it (not allowed on
    /// shared subscriptions).
    pub no_local: bool,
    /// Keep the RETAIN flag messages were published with.
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

const OPT_NO_LOCAL: u8 = 0b0000_0100;
const OPT_RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const OPT_RETAIN_HANDLING_SHIFT: u8 = 4;
const OPT_RESERVED_V5: u8 = 0b1100_0000;
const OPT_RESERVED_V3: u8 = 0b1111_1100;

impl SubscriptionOptions {
    /// Options asking for `qos` and nothing else.
    pub fn qos(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() {
            OPT_RESERVED_V5
        } else {
            OPT_RESERVED_V3
        };
        if byte & reserved != 0 {
            return Err(DecodeError::ReservedBits {
                field: "subscription options",
            });
        }
        let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidSubscriptionQos)?;
        let retain_handling = match (byte >> OPT_RETAIN_HANDLING_SHIFT) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(Self {
            qos,
            no_local: byte & OPT_NO_LOCAL != 0,
            retain_as_published: byte & OPT_RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn encode(&self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            if self.no_local {
                byte |= OPT_NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= OPT_RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << OPT_RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter, possibly a `$share/{group}/{filter}` shared
    /// subscription (see [`topic::shared_subscription`]).
    pub filter: ByteString,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, echoed by the SUBACK.
    pub packet_id: PacketId,
    /// Properties (MQTT 5; empty before).
    pub properties: SubscribeProperties,
    /// The subscriptions, at least one.
    pub filters: Vec<Subscription>,
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if ctx.version.is_v5() {
            list::read(r, PropertyContext::Subscribe, ctx.limits.properties_max)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            if filters.len() == ctx.limits.topic_filters_max {
                return Err(DecodeError::TooManyTopicFilters {
                    max: ctx.limits.topic_filters_max,
                });
            }
            let filter = r.string("topic filter")?;
            let options = SubscriptionOptions::decode(r.u8()?, ctx.version)?;
            filters.push(Subscription { filter, options });
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyPayload { packet: r.packet() });
        }
        for s in &filters {
            check_topic_filter(&s.filter, ctx.limits)?;
            if s.options.no_local && topic::is_shared(&s.filter) {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Encode for Subscribe {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Unrepresentable {
                what: "a SUBSCRIBE without topic filters",
            });
        }
        let mut len = 2;
        if version.is_v5() {
            len += list::encoded_len(&self.properties)?;
        }
        for s in &self.filters {
            len += field_len(s.filter.as_bytes(), "topic filter")? + 1;
        }
        Ok(len)
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            list::write(&self.properties, out);
        }
        for s in &self.filters {
            put_field(out, s.filter.as_bytes());
            out.put_u8(s.options.encode(version));
        }
    }
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5; empty before).
    pub properties: AckProperties,
    /// One code per topic filter, in order: Granted QoS 0/1/2 or a failure.
    /// Before MQTT 5 every failure is sent as 0x80.
    pub reason_codes: Vec<ReasonCode>,
}

/// The one failure code of MQTT 3 SUBACKs.
const V3_FAILURE: u8 = 0x80;

impl SubAck {
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if ctx.version.is_v5() {
            list::read(r, PropertyContext::SubAck, ctx.limits.properties_max)?
        } else {
            AckProperties::default()
        };
        let mut reason_codes = Vec::new();
        while r.remaining() > 0 {
            if reason_codes.len() == ctx.limits.topic_filters_max {
                return Err(DecodeError::TooManyTopicFilters {
                    max: ctx.limits.topic_filters_max,
                });
            }
            let code = if ctx.version.is_v5() {
                super::read_reason_code(r)?
            } else {
                // MQTT 3.1 only defines 0-2; 0x80 is accepted there too, as
                // servers send it for failures in both versions.
                let byte = r.u8()?;
                match byte {
                    0 => ReasonCode::Success,
                    1 => ReasonCode::GrantedQos1,
                    2 => ReasonCode::GrantedQos2,
                    V3_FAILURE => ReasonCode::UnspecifiedError,
                    _ => {
                        return Err(DecodeError::InvalidReasonCode {
                            packet: r.packet(),
                            code: byte,
                        })
                    }
                }
            };
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::EmptyPayload { packet: r.packet() });
        }
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Encode for SubAck {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Unrepresentable {
                what: "a SUBACK without reason codes",
            });
        }
        let mut len = 2 + self.reason_codes.len();
        if version.is_v5() {
            len += list::encoded_len(&self.properties)?;
        }
        Ok(len)
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            list::write(&self.properties, out);
            for code in &self.reason_codes {
                out.put_u8(code.as_u8());
            }
        } else {
            for code in &self.reason_codes {
                out.put_u8(match code {
                    ReasonCode::Success | ReasonCode::GrantedQos1 | ReasonCode::GrantedQos2 => {
                        code.as_u8()
                    }
                    _ => V3_FAILURE,
                });
            }
        }
    }
}
