//! DISCONNECT: the last packet on a connection. Before MQTT 5 only clients
//! send it and it has no body; in MQTT 5 either side may, with a reason.
//!
//! ```text
//! [reason code | [properties]] (v5)
//! ```
//!
//! A Remaining Length of 0 means Normal disconnection without properties,
//! 1 means a reason code without properties.

use bytes::{BufMut, BytesMut};

use super::{read_reason_code, DecodeCtx, Encode};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list::{self, PropertyList};
use crate::properties::{DisconnectProperties, PropertyContext, PropertyId};
use crate::reason::ReasonCode;
use crate::version::{ProtocolVersion, Role};
use crate::wire::Reader;

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why (MQTT 5; Normal disconnection before).
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5; empty before).
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with this reason and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let mut d = Self::new(ReasonCode::NORMAL_DISCONNECTION);
        if !ctx.version.is_v5() || r.remaining() == 0 {
            return Ok(d);
        }
        d.reason_code = read_reason_code(r)?;
        if !d.reason_code.disconnect_sendable_by(ctx.sender()) {
            return Err(DecodeError::InvalidReasonCode {
                packet: r.packet(),
                code: d.reason_code.as_u8(),
            });
        }
        if r.remaining() > 0 {
            d.properties = list::read(r, PropertyContext::Disconnect, ctx.limits.properties_max)?;
        }
        if ctx.sender() == Role::Server && d.properties.session_expiry_interval_secs.is_some() {
            return Err(DecodeError::PropertyFromWrongSide {
                property: PropertyId::SessionExpiryInterval,
            });
        }
        Ok(d)
    }
}

impl Encode for Disconnect {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(0);
        }
        if !self.properties.is_empty() {
            return Ok(1 + list::encoded_len(&self.properties)?);
        }
        Ok(usize::from(
            self.reason_code != ReasonCode::NORMAL_DISCONNECTION,
        ))
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        if !version.is_v5() {
            return;
        }
        let has_properties = !self.properties.is_empty();
        if has_properties || self.reason_code != ReasonCode::NORMAL_DISCONNECTION {
            out.put_u8(self.reason_code.as_u8());
        }
        if has_properties {
            list::write(&self.properties, out);
        }
    }
}
