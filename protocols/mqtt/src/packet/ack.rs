//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 handshakes.
//!
//! ```text
//! packet id | [reason code | [properties]] (v5)
//! ```
//!
//! In MQTT 5 the reason code and properties may be cut off: a Remaining
//! Length of 2 means Success without properties, 3 means a reason code
//! without properties. The encoder uses the shortest form that says the
//! same. Before MQTT 5 the body is the packet id alone, so a failure code
//! cannot be sent and is left out.

use bytes::{BufMut, BytesMut};

use super::{read_packet_id, read_reason_code, DecodeCtx, Encode, PacketId, PacketType};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list::{self, PropertyList};
use crate::properties::{AckProperties, PropertyContext};
use crate::reason::ReasonCode;
use crate::version::ProtocolVersion;
use crate::wire::Reader;

/// The body of PUBACK, PUBREC, PUBREL and PUBCOMP: which packet it is comes
/// from the [`Packet`](super::Packet) variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    /// The PUBLISH's packet identifier.
    pub packet_id: PacketId,
    /// The outcome (MQTT 5; always Success before).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5; empty before).
    pub properties: AckProperties,
}

impl PublishAck {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let mut ack = Self::new(packet_id);
        if ctx.version.is_v5() && r.remaining() > 0 {
            ack.reason_code = read_reason_code(r)?;
            if r.remaining() > 0 {
                let context = match r.packet() {
                    PacketType::PubAck => PropertyContext::PubAck,
                    PacketType::PubRec => PropertyContext::PubRec,
                    PacketType::PubRel => PropertyContext::PubRel,
                    _ => PropertyContext::PubComp,
                };
                ack.properties = list::read(r, context, ctx.limits.properties_max)?;
            }
        }
        Ok(ack)
    }
}

impl Encode for PublishAck {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(2);
        }
        if !self.properties.is_empty() {
            return Ok(3 + list::encoded_len(&self.properties)?);
        }
        Ok(if self.reason_code == ReasonCode::Success {
            2
        } else {
            3
        })
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if !version.is_v5() {
            return;
        }
        let has_properties = !self.properties.is_empty();
        if has_properties || self.reason_code != ReasonCode::Success {
            out.put_u8(self.reason_code.as_u8());
        }
        if has_properties {
            list::write(&self.properties, out);
        }
    }
}
