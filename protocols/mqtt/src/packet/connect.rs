//! CONNECT: the first packet of every connection, and the one that decides
//! the protocol version for the rest of it.
//!
//! ```text
//! protocol name (string) | level (byte) | flags (byte) | keep alive (u16)
//! [properties (v5)]
//! client id | [will properties (v5) | will topic | will payload] | [user name] | [password]
//! ```
//!
//! Flags: bit 7 user name, 6 password, 5 will retain, 4-3 will QoS, 2 will,
//! 1 clean start (clean session before MQTT 5), 0 reserved.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{check_topic_name, Encode, QoS};
use crate::error::{DecodeError, EncodeError};
use crate::limits::Limits;
use crate::properties::list;
use crate::properties::{ConnectProperties, PropertyContext, PropertyId, WillProperties};
use crate::version::ProtocolVersion;
use crate::wire::{field_len, put_field, Reader};

/// MQTT 3.1 caps the Client Identifier at 23 bytes, and servers of that
/// version answer a longer one with "identifier rejected".
const V3_1_CLIENT_ID_MAX_BYTES: usize = 23;

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version the client speaks, from the protocol name and level.
    pub version: ProtocolVersion,
    /// Clean Start (MQTT 5) or Clean Session (MQTT 3).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive_secs: u16,
    /// Properties (MQTT 5; empty before).
    pub properties: ConnectProperties,
    /// Client Identifier; may be empty (see the README for when).
    pub client_id: ByteString,
    /// The Will message, if the Will flag is set.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<ByteString>,
    /// Password: binary data (a UTF-8 string in MQTT 3.1, taken as bytes).
    pub password: Option<Bytes>,
}

/// The Will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name to publish to.
    pub topic: ByteString,
    /// Payload.
    pub payload: Bytes,
    /// QoS to publish with.
    pub qos: QoS,
    /// Whether to publish as retained.
    pub retain: bool,
    /// Will Properties (MQTT 5; empty before).
    pub properties: WillProperties,
}

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;
const WILL_QOS_SHIFT: u8 = 3;

/// Decodes a CONNECT body. Sets `version_out` as soon as the protocol name
/// and level are read and valid, so that a caller whose decode failed later
/// in the packet still knows which CONNACK format the client understands.
pub(crate) fn decode(
    r: &mut Reader<'_>,
    limits: &Limits,
    version_out: &mut Option<ProtocolVersion>,
) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let version = match (&name[..], level) {
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQTT" | b"MQIsdp", level) => {
            return Err(DecodeError::UnsupportedProtocolLevel { level })
        }
        _ => return Err(DecodeError::UnknownProtocolName),
    };
    *version_out = Some(version);

    let flags = r.u8()?;
    if flags & FLAG_RESERVED != 0 {
        return Err(DecodeError::ReservedBits {
            field: "CONNECT flags",
        });
    }
    let has_will = flags & FLAG_WILL != 0;
    let will_qos_bits = (flags >> WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & FLAG_WILL_RETAIN != 0;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::InvalidWillFlags);
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidWillFlags)?;
    let has_password = flags & FLAG_PASSWORD != 0;
    let has_username = flags & FLAG_USERNAME != 0;
    if has_password && !has_username && !version.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive_secs = r.u16()?;

    let properties: ConnectProperties = if version.is_v5() {
        list::read(r, PropertyContext::Connect, limits.properties_max)?
    } else {
        ConnectProperties::default()
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::MissingProperty {
            property: PropertyId::AuthenticationMethod,
        });
    }

    let client_id = r.string("client identifier")?;
    let will = if has_will {
        let properties: WillProperties = if version.is_v5() {
            list::read(r, PropertyContext::Will, limits.properties_max)?
        } else {
            WillProperties::default()
        };
        let topic = r.string("will topic")?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish()?;

    // Rules about values come after the packet has parsed, so that a packet
    // that is both malformed and wrong reports the malformation.
    if let Some(will) = &will {
        check_topic_name(&will.topic, limits)?;
        if let Some(t) = &will.properties.response_topic {
            check_topic_name(t, limits)?;
        }
    }
    check_client_id(version, &client_id, flags & FLAG_CLEAN_START != 0, limits)?;

    Ok(Connect {
        version,
        clean_start: flags & FLAG_CLEAN_START != 0,
        keep_alive_secs,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

/// The Client Identifier rules. Any MQTT UTF-8 string is accepted, not only
/// the alphanumerics servers must accept; an empty one only where the
/// version lets the server assign one.
fn check_client_id(
    version: ProtocolVersion,
    id: &str,
    clean_start: bool,
    limits: &Limits,
) -> Result<(), DecodeError> {
    let rejected = |why| Err(DecodeError::ClientIdRejected { why });
    match version {
        ProtocolVersion::V3_1 if id.is_empty() => rejected("MQTT 3.1 requires a client identifier"),
        ProtocolVersion::V3_1 if id.len() > V3_1_CLIENT_ID_MAX_BYTES => {
            rejected("MQTT 3.1 allows at most 23 bytes")
        }
        ProtocolVersion::V3_1_1 if id.is_empty() && !clean_start => {
            rejected("an empty client identifier requires clean session")
        }
        _ if id.len() > limits.client_id_max_bytes => rejected("longer than the configured limit"),
        _ => Ok(()),
    }
}

impl Connect {
    fn connect_flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        flags
    }
}

/// Encodes for `self.version`; the version argument (the connection's) is
/// ignored, since a CONNECT always speaks its own version.
impl Encode for Connect {
    fn body_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        let v5 = self.version.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::Unrepresentable {
                what: "a password without a user name before MQTT 5",
            });
        }
        let mut len =
            field_len(self.version.protocol_name().as_bytes(), "protocol name")? + 1 + 1 + 2;
        if v5 {
            len += list::encoded_len(&self.properties)?;
        }
        len += field_len(self.client_id.as_bytes(), "client identifier")?;
        if let Some(will) = &self.will {
            if v5 {
                len += list::encoded_len(&will.properties)?;
            }
            len += field_len(will.topic.as_bytes(), "will topic")?;
            len += field_len(&will.payload, "will payload")?;
        }
        if let Some(u) = &self.username {
            len += field_len(u.as_bytes(), "user name")?;
        }
        if let Some(p) = &self.password {
            len += field_len(p, "password")?;
        }
        Ok(len)
    }

    fn write_body(&self, _: ProtocolVersion, out: &mut BytesMut) {
        let v5 = self.version.is_v5();
        put_field(out, self.version.protocol_name().as_bytes());
        out.put_u8(self.version.level());
        out.put_u8(self.connect_flags());
        out.put_u16(self.keep_alive_secs);
        if v5 {
            list::write(&self.properties, out);
        }
        put_field(out, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                list::write(&will.properties, out);
            }
            put_field(out, will.topic.as_bytes());
            put_field(out, &will.payload);
        }
        if let Some(u) = &self.username {
            put_field(out, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_field(out, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_rules() {
        let l = Limits::default();
        use ProtocolVersion::*;
        assert!(check_client_id(V3_1, "", true, &l).is_err());
        assert!(check_client_id(V3_1, &"x".repeat(23), true, &l).is_ok());
        assert!(check_client_id(V3_1, &"x".repeat(24), true, &l).is_err());
        assert!(check_client_id(V3_1_1, "", true, &l).is_ok());
        assert!(check_client_id(V3_1_1, "", false, &l).is_err());
        assert!(check_client_id(V5, "", false, &l).is_ok());
        let max = l.client_id_max_bytes;
        for v in [V3_1_1, V5] {
            assert!(check_client_id(v, &"x".repeat(max), false, &l).is_ok());
            assert!(check_client_id(v, &"x".repeat(max + 1), false, &l).is_err());
        }
    }
}
