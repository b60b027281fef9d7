//! UNSUBSCRIBE and UNSUBACK.
//!
//! ```text
//! UNSUBSCRIBE: packet id | [properties (v5)] | topic filter+
//! UNSUBACK:    packet id | [properties | reason code+] (v5)
//! ```
//!
//! Before MQTT 5 an UNSUBACK is the packet id alone.

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;

use super::{check_topic_filter, read_packet_id, read_reason_code, DecodeCtx, Encode, PacketId};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list;
use crate::properties::{AckProperties, PropertyContext, UnsubscribeProperties};
use crate::reason::ReasonCode;
use crate::version::ProtocolVersion;
use crate::wire::{field_len, put_field, Reader};

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// Properties (MQTT 5; empty before).
    pub properties: UnsubscribeProperties,
    /// Topic filters to remove, at least one; each must be a valid filter.
    pub filters: Vec<ByteString>,
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if ctx.version.is_v5() {
            list::read(r, PropertyContext::Unsubscribe, ctx.limits.properties_max)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            if filters.len() == ctx.limits.topic_filters_max {
                return Err(DecodeError::TooManyTopicFilters {
                    max: ctx.limits.topic_filters_max,
                });
            }
            filters.push(r.string("topic filter")?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyPayload { packet: r.packet() });
        }
        for f in &filters {
            check_topic_filter(f, ctx.limits)?;
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }
}

impl Encode for Unsubscribe {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::Unrepresentable {
                what: "an UNSUBSCRIBE without topic filters",
            });
        }
        let mut len = 2;
        if version.is_v5() {
            len += list::encoded_len(&self.properties)?;
        }
        for f in &self.filters {
            len += field_len(f.as_bytes(), "topic filter")?;
        }
        Ok(len)
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if version.is_v5() {
            list::write(&self.properties, out);
        }
        for f in &self.filters {
            put_field(out, f.as_bytes());
        }
    }
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet identifier.
    pub packet_id: PacketId,
    /// Properties (MQTT 5; empty before).
    pub properties: AckProperties,
    /// One code per topic filter (MQTT 5; empty before, where none is sent).
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let mut ack = Self {
            packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        };
        if !ctx.version.is_v5() {
            return Ok(ack);
        }
        ack.properties = list::read(r, PropertyContext::UnsubAck, ctx.limits.properties_max)?;
        while r.remaining() > 0 {
            if ack.reason_codes.len() == ctx.limits.topic_filters_max {
                return Err(DecodeError::TooManyTopicFilters {
                    max: ctx.limits.topic_filters_max,
                });
            }
            ack.reason_codes.push(read_reason_code(r)?);
        }
        if ack.reason_codes.is_empty() {
            return Err(DecodeError::EmptyPayload { packet: r.packet() });
        }
        Ok(ack)
    }
}

impl Encode for UnsubAck {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Unrepresentable {
                what: "an MQTT 5 UNSUBACK without reason codes",
            });
        }
        Ok(2 + list::encoded_len(&self.properties)? + self.reason_codes.len())
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return;
        }
        list::write(&self.properties, out);
        for code in &self.reason_codes {
            out.put_u8(code.as_u8());
        }
    }
}
