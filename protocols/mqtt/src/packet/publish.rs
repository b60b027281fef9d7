//! PUBLISH: an application message, in either direction.
//!
//! ```text
//! fixed header flags: DUP (bit 3) | QoS (bits 2-1) | RETAIN (bit 0)
//! topic name | [packet id (QoS > 0)] | [properties (v5)] | payload
//! ```
//!
//! The payload and the topic are slices of the read buffer: decoding a
//! PUBLISH copies nothing. For encoding, [`Encoder::encode_publish_header`]
//! writes everything but the payload so that the payload's `Bytes` can go
//! to the socket with vectored I/O.
//!
//! [`Encoder::encode_publish_header`]: crate::codec::Encoder::encode_publish_header

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{check_topic_name, read_packet_id, DecodeCtx, Encode, PacketId, QoS};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list;
use crate::properties::{PropertyContext, PropertyId, PublishProperties};
use crate::version::{ProtocolVersion, Role};
use crate::wire::{field_len, put_field, Reader};

/// The QoS of a PUBLISH together with its packet identifier, which QoS 1
/// and 2 carry and QoS 0 does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0: no identifier.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// The QoS level.
    pub fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, for QoS 1 and 2.
    pub fn packet_id(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(id) | QosPid::ExactlyOnce(id) => Some(id),
        }
    }
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// A redelivery. Must be false at QoS 0.
    pub dup: bool,
    /// QoS and packet identifier.
    pub qos: QosPid,
    /// Retained message (client to server), or sent from the retained store
    /// / retain-as-published (server to client).
    pub retain: bool,
    /// Topic name; empty only in MQTT 5 with a Topic Alias.
    pub topic: ByteString,
    /// Properties (MQTT 5; empty before).
    pub properties: PublishProperties,
    /// Application payload.
    pub payload: Bytes,
}

const FLAG_DUP: u8 = 0b1000;
const FLAG_RETAIN: u8 = 0b0001;

impl Publish {
    /// A QoS 0, non-retained PUBLISH without properties.
    pub fn new(topic: impl Into<ByteString>, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos: QosPid::AtMostOnce,
            retain: false,
            topic: topic.into(),
            properties: PublishProperties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        // The fixed header check has refused QoS 3 and DUP at QoS 0.
        let dup = ctx.flags & FLAG_DUP != 0;
        let retain = ctx.flags & FLAG_RETAIN != 0;
        let qos_bits = (ctx.flags >> 1) & 0b11;
        let topic = r.string("topic name")?;
        let qos = match qos_bits {
            0 => QosPid::AtMostOnce,
            1 => QosPid::AtLeastOnce(read_packet_id(r)?),
            _ => QosPid::ExactlyOnce(read_packet_id(r)?),
        };
        let properties: PublishProperties = if ctx.version.is_v5() {
            list::read(r, PropertyContext::Publish, ctx.limits.properties_max)?
        } else {
            PublishProperties::default()
        };
        let payload = r.rest();

        if !(topic.is_empty() && properties.topic_alias.is_some()) {
            check_topic_name(&topic, ctx.limits)?;
        }
        if let Some(t) = &properties.response_topic {
            check_topic_name(t, ctx.limits)?;
        }
        if ctx.sender() == Role::Client && !properties.subscription_identifiers.is_empty() {
            return Err(DecodeError::PropertyFromWrongSide {
                property: PropertyId::SubscriptionIdentifier,
            });
        }
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            properties,
            payload,
        })
    }

    /// Bytes of the body before the payload.
    pub(crate) fn header_fields_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.dup && self.qos == QosPid::AtMostOnce {
            return Err(EncodeError::Unrepresentable {
                what: "DUP on a QoS 0 PUBLISH",
            });
        }
        let mut len = field_len(self.topic.as_bytes(), "topic name")?;
        if self.qos.packet_id().is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += list::encoded_len(&self.properties)?;
        }
        Ok(len)
    }

    /// Writes the body up to, not including, the payload.
    pub(crate) fn write_header_fields(&self, version: ProtocolVersion, out: &mut BytesMut) {
        put_field(out, self.topic.as_bytes());
        if let Some(id) = self.qos.packet_id() {
            out.put_u16(id.get());
        }
        if version.is_v5() {
            list::write(&self.properties, out);
        }
    }
}

impl Publish {
    /// The fixed header's flag nibble.
    pub(crate) fn flags(&self) -> u8 {
        let mut flags = (self.qos.qos() as u8) << 1;
        if self.dup {
            flags |= FLAG_DUP;
        }
        if self.retain {
            flags |= FLAG_RETAIN;
        }
        flags
    }
}

impl Encode for Publish {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(self.header_fields_len(version)? + self.payload.len())
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        self.write_header_fields(version, out);
        out.extend_from_slice(&self.payload);
    }
}
