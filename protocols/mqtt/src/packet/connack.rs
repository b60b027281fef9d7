//! CONNACK: the server's answer to CONNECT.
//!
//! ```text
//! acknowledge flags (byte: bit 0 session present, 7-1 reserved)
//! reason code (v5) or return code (v3) | [properties (v5)]
//! ```
//!
//! MQTT 3.1 has no session present bit: its first byte is wholly reserved.

use bytes::{BufMut, BytesMut};

use super::{read_reason_code, DecodeCtx, Encode};
use crate::error::{DecodeError, EncodeError};
use crate::properties::list;
use crate::properties::{ConnAckProperties, PropertyContext};
use crate::reason::{ConnectReturnCode, ReasonCode};
use crate::version::ProtocolVersion;
use crate::wire::Reader;

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a stored session. Always false in MQTT
    /// 3.1, which cannot say it.
    pub session_present: bool,
    /// The outcome. Before MQTT 5 only the codes with a
    /// [`ConnectReturnCode`] can be sent.
    pub reason_code: ReasonCode,
    /// Properties (MQTT 5; empty before).
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A successful CONNACK with no properties.
    pub fn accepted(session_present: bool) -> Self {
        Self {
            session_present,
            reason_code: ReasonCode::Success,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, ctx: &DecodeCtx<'_>) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        let reserved_mask = if ctx.version == ProtocolVersion::V3_1 {
            0xFF
        } else {
            0xFE
        };
        if flags & reserved_mask != 0 {
            return Err(DecodeError::ReservedBits {
                field: "CONNACK acknowledge flags",
            });
        }
        let session_present = flags & 0x01 != 0;
        let (reason_code, properties) = if ctx.version.is_v5() {
            let code = read_reason_code(r)?;
            let props = list::read(r, PropertyContext::ConnAck, ctx.limits.properties_max)?;
            (code, props)
        } else {
            let byte = r.u8()?;
            let code = ConnectReturnCode::from_u8(byte).ok_or(DecodeError::InvalidReasonCode {
                packet: r.packet(),
                code: byte,
            })?;
            (code.to_reason_code(), ConnAckProperties::default())
        };
        if session_present && reason_code != ReasonCode::Success {
            return Err(DecodeError::SessionPresentWithError);
        }
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    fn return_code(&self) -> Result<ConnectReturnCode, EncodeError> {
        ConnectReturnCode::from_reason_code(self.reason_code).ok_or(EncodeError::Unrepresentable {
            what: "a CONNACK reason code without an MQTT 3 return code",
        })
    }
}

impl Encode for ConnAck {
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if version.is_v5() {
            if self.properties.maximum_qos == Some(super::QoS::ExactlyOnce) {
                return Err(EncodeError::Unrepresentable {
                    what: "a Maximum QoS of 2 (leave it out instead)",
                });
            }
            Ok(2 + list::encoded_len(&self.properties)?)
        } else {
            self.return_code()?;
            Ok(2)
        }
    }

    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let present = self.session_present && version != ProtocolVersion::V3_1;
        out.put_u8(u8::from(present));
        if version.is_v5() {
            out.put_u8(self.reason_code.as_u8());
            list::write(&self.properties, out);
        } else {
            let code = self
                .return_code()
                .unwrap_or(ConnectReturnCode::ServerUnavailable);
            out.put_u8(code as u8);
        }
    }
}
