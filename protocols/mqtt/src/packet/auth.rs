//! AUTH (MQTT 5 only): extended authentication exchanges, in either
//! direction, before CONNACK or to re-authenticate later.
//!
//! ```text
//! [reason code | properties]
//! ```
//!
//! A Remaining Length of 0 means Success without properties. Otherwise the
//! reason code and a property list follow, and the property list must name
//! the Authentication Method. Unlike the acknowledgements, a reason code
//! without a property list is not a short form of AUTH, so a Remaining
//! Length of 1 is malformed.

use bytes::{BufMut, BytesMut};

use super::{read_reason_code, DecodeCtx, Encode, PacketType};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list::{self, PropertyList};
use crate::properties::{AuthProperties, PropertyContext, PropertyId};
use crate::reason::ReasonCode;
use crate::version::ProtocolVersion;
use crate::wire::Reader;

/// AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties; the Authentication Method is required unless the packet
    /// is an empty Success.
    pub properties: AuthProperties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let mut auth = Self {
            reason_code: ReasonCode::Success,
            properties: AuthProperties::default(),
        };
        if r.remaining() == 0 {
            return Ok(auth);
        }
        auth.reason_code = read_reason_code(r)?;
        auth.properties = list::read(r, PropertyContext::Auth, ctx.limits.properties_max)?;
        if auth.properties.authentication_method.is_none() {
            return Err(DecodeError::MissingProperty {
                property: PropertyId::AuthenticationMethod,
            });
        }
        Ok(auth)
    }

    fn is_empty_success(&self) -> bool {
        self.reason_code == ReasonCode::Success && self.properties.is_empty()
    }
}

impl Encode for Auth {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                packet: PacketType::Auth,
                version,
            });
        }
        if self.is_empty_success() {
            return Ok(0);
        }
        Ok(1 + list::encoded_len(&self.properties)?)
    }

    fn write_body(&self, _: ProtocolVersion, out: &mut BytesMut) {
        if self.is_empty_success() {
            return;
        }
        out.put_u8(self.reason_code.as_u8());
        list::write(&self.properties, out);
    }
}
