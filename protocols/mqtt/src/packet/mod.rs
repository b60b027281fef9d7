//! Packet types: one struct per packet family, and [`Packet`], the sum of
//! all fifteen.
//!
//! Every struct is the same in all versions; fields a version cannot carry
//! (properties and reason codes before MQTT 5) decode as their defaults and
//! are left out when encoding for that version. Each file holds one family
//! and both directions of its wire form.

use std::fmt;
use std::num::NonZeroU16;

use bytes::BytesMut;

use crate::error::{DecodeError, EncodeError};
use crate::limits::Limits;
use crate::reason::ReasonCode;
use crate::topic;
use crate::version::{ProtocolVersion, Role};
use crate::wire::Reader;

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

pub use ack::PublishAck;
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::{Publish, QosPid};
pub use subscribe::{RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe};

pub(crate) use connect::decode as decode_connect;

/// A packet identifier: never 0.
pub type PacketId = NonZeroU16;

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// 0: at most once.
    #[default]
    AtMostOnce = 0,
    /// 1: at least once.
    AtLeastOnce = 1,
    /// 2: exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS with this value; 3 and above are not QoS levels.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The packet type, the high nibble of a packet's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1: client requests a connection.
    Connect = 1,
    /// 2: server acknowledges a connection.
    ConnAck = 2,
    /// 3: an application message, either direction.
    Publish = 3,
    /// 4: QoS 1 acknowledgement.
    PubAck = 4,
    /// 5: QoS 2 step 1.
    PubRec = 5,
    /// 6: QoS 2 step 2.
    PubRel = 6,
    /// 7: QoS 2 step 3.
    PubComp = 7,
    /// 8: client subscribes.
    Subscribe = 8,
    /// 9: server acknowledges a subscription.
    SubAck = 9,
    /// 10: client unsubscribes.
    Unsubscribe = 10,
    /// 11: server acknowledges an unsubscription.
    UnsubAck = 11,
    /// 12: client ping.
    PingReq = 12,
    /// 13: server ping response.
    PingResp = 13,
    /// 14: either side closes (client only before MQTT 5).
    Disconnect = 14,
    /// 15: MQTT 5 extended authentication, either direction.
    Auth = 15,
}

impl PacketType {
    /// The type for a first byte's high nibble; 0 is reserved, and so is 15
    /// before MQTT 5 (the caller checks that).
    pub fn from_nibble(nibble: u8) -> Option<PacketType> {
        use PacketType as T;
        Some(match nibble {
            1 => T::Connect,
            2 => T::ConnAck,
            3 => T::Publish,
            4 => T::PubAck,
            5 => T::PubRec,
            6 => T::PubRel,
            7 => T::PubComp,
            8 => T::Subscribe,
            9 => T::SubAck,
            10 => T::Unsubscribe,
            11 => T::UnsubAck,
            12 => T::PingReq,
            13 => T::PingResp,
            14 => T::Disconnect,
            15 => T::Auth,
            _ => return None,
        })
    }

    /// Which side sends packets of this type: `None` for both.
    pub fn sender(self) -> Option<Role> {
        use PacketType as T;
        match self {
            T::Connect | T::Subscribe | T::Unsubscribe | T::PingReq => Some(Role::Client),
            T::ConnAck | T::SubAck | T::UnsubAck | T::PingResp => Some(Role::Server),
            T::Publish
            | T::PubAck
            | T::PubRec
            | T::PubRel
            | T::PubComp
            | T::Disconnect
            | T::Auth => None,
        }
    }

    /// The specification's name.
    pub fn name(self) -> &'static str {
        use PacketType as T;
        match self {
            T::Connect => "CONNECT",
            T::ConnAck => "CONNACK",
            T::Publish => "PUBLISH",
            T::PubAck => "PUBACK",
            T::PubRec => "PUBREC",
            T::PubRel => "PUBREL",
            T::PubComp => "PUBCOMP",
            T::Subscribe => "SUBSCRIBE",
            T::SubAck => "SUBACK",
            T::Unsubscribe => "UNSUBSCRIBE",
            T::UnsubAck => "UNSUBACK",
            T::PingReq => "PINGREQ",
            T::PingResp => "PINGRESP",
            T::Disconnect => "DISCONNECT",
            T::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: it is large and comes once per connection).
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PublishAck),
    /// PUBREC.
    PubRec(PublishAck),
    /// PUBREL.
    PubRel(PublishAck),
    /// PUBCOMP.
    PubComp(PublishAck),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        use PacketType as T;
        match self {
            Packet::Connect(_) => T::Connect,
            Packet::ConnAck(_) => T::ConnAck,
            Packet::Publish(_) => T::Publish,
            Packet::PubAck(_) => T::PubAck,
            Packet::PubRec(_) => T::PubRec,
            Packet::PubRel(_) => T::PubRel,
            Packet::PubComp(_) => T::PubComp,
            Packet::Subscribe(_) => T::Subscribe,
            Packet::SubAck(_) => T::SubAck,
            Packet::Unsubscribe(_) => T::Unsubscribe,
            Packet::UnsubAck(_) => T::UnsubAck,
            Packet::PingReq => T::PingReq,
            Packet::PingResp => T::PingResp,
            Packet::Disconnect(_) => T::Disconnect,
            Packet::Auth(_) => T::Auth,
        }
    }

    /// Drops the Reason String and User Properties of a CONNACK, an
    /// acknowledgement, a DISCONNECT or an AUTH: MQTT 5 requires a sender to
    /// leave them out rather than exceed the receiver's Maximum Packet Size.
    /// Other packets are left alone (a PUBLISH's User Properties belong to
    /// the message). Returns whether anything was dropped.
    pub fn strip_diagnostics(&mut self) -> bool {
        match self {
            Packet::ConnAck(p) => p.properties.strip_diagnostics(),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.properties.strip_diagnostics()
            }
            Packet::SubAck(p) => p.properties.strip_diagnostics(),
            Packet::UnsubAck(p) => p.properties.strip_diagnostics(),
            Packet::Disconnect(p) => p.properties.strip_diagnostics(),
            Packet::Auth(p) => p.properties.strip_diagnostics(),
            Packet::Connect(_)
            | Packet::Publish(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::PingResp => false,
        }
    }
}

/// What a packet body's decoder needs besides the bytes.
pub(crate) struct DecodeCtx<'a> {
    /// The negotiated version.
    pub version: ProtocolVersion,
    /// The side decoding (so the sender is the other side).
    pub role: Role,
    /// The decoder's limits.
    pub limits: &'a Limits,
    /// The fixed header's flag nibble (already validated).
    pub flags: u8,
}

impl DecodeCtx<'_> {
    /// The side that sent the packet.
    pub fn sender(&self) -> Role {
        self.role.peer()
    }
}

/// Decodes the body of a packet other than CONNECT, whose fixed header has
/// been validated already.
pub(crate) fn decode_body(
    packet_type: PacketType,
    r: &mut Reader<'_>,
    ctx: &DecodeCtx<'_>,
) -> Result<Packet, DecodeError> {
    use PacketType as T;
    let packet = match packet_type {
        T::Connect => {
            return Err(DecodeError::UnexpectedPacket {
                packet: T::Connect,
                why: "a second CONNECT",
            })
        }
        T::ConnAck => Packet::ConnAck(ConnAck::decode(r, ctx)?),
        T::Publish => Packet::Publish(Publish::decode(r, ctx)?),
        T::PubAck => Packet::PubAck(PublishAck::decode(r, ctx)?),
        T::PubRec => Packet::PubRec(PublishAck::decode(r, ctx)?),
        T::PubRel => Packet::PubRel(PublishAck::decode(r, ctx)?),
        T::PubComp => Packet::PubComp(PublishAck::decode(r, ctx)?),
        T::Subscribe => Packet::Subscribe(Subscribe::decode(r, ctx)?),
        T::SubAck => Packet::SubAck(SubAck::decode(r, ctx)?),
        T::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, ctx)?),
        T::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, ctx)?),
        T::PingReq => Packet::PingReq,
        T::PingResp => Packet::PingResp,
        T::Disconnect => Packet::Disconnect(Disconnect::decode(r, ctx)?),
        T::Auth => Packet::Auth(Auth::decode(r, ctx)?),
    };
    r.finish()?;
    Ok(packet)
}

/// The encoding side of one packet family.
pub(crate) trait Encode {
    /// The Remaining Length: the size of everything after the fixed header.
    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError>;

    /// Writes everything after the fixed header. Only called after
    /// `body_len` succeeded.
    fn write_body(&self, version: ProtocolVersion, out: &mut BytesMut);
}

/// An empty body (PINGREQ, PINGRESP).
pub(crate) struct Empty;

impl Encode for Empty {
    fn body_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(0)
    }

    fn write_body(&self, _: ProtocolVersion, _: &mut BytesMut) {}
}

/// PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010 in their flags.
const FLAGS_0010: u8 = 0b0010;

impl Packet {
    /// The first byte: type and flags.
    pub(crate) fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => FLAGS_0010,
            _ => 0,
        };
        ((self.packet_type() as u8) << 4) | flags
    }

    /// The packet's body encoder.
    pub(crate) fn body(&self) -> &dyn Encode {
        match self {
            Packet::Connect(p) => &**p,
            Packet::ConnAck(p) => p,
            Packet::Publish(p) => p,
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => p,
            Packet::Subscribe(p) => p,
            Packet::SubAck(p) => p,
            Packet::Unsubscribe(p) => p,
            Packet::UnsubAck(p) => p,
            Packet::PingReq | Packet::PingResp => &Empty,
            Packet::Disconnect(p) => p,
            Packet::Auth(p) => p,
        }
    }
}

/// Reads a packet identifier, refusing 0.
pub(crate) fn read_packet_id(r: &mut Reader<'_>) -> Result<PacketId, DecodeError> {
    let id = r.u16()?;
    PacketId::new(id).ok_or(DecodeError::ZeroPacketId { packet: r.packet() })
}

/// Checks a topic name against the protocol and the limits.
pub(crate) fn check_topic_name(name: &str, limits: &Limits) -> Result<(), DecodeError> {
    topic::check_topic_name(name)
        .and_then(|()| topic::check_limits(name, limits.topic_max_bytes, limits.topic_levels_max))
        .map_err(DecodeError::InvalidTopicName)
}

/// Checks a topic filter against the protocol and the limits.
pub(crate) fn check_topic_filter(filter: &str, limits: &Limits) -> Result<(), DecodeError> {
    topic::check_topic_filter(filter)
        .and_then(|()| topic::check_limits(filter, limits.topic_max_bytes, limits.topic_levels_max))
        .map_err(DecodeError::InvalidTopicFilter)
}

/// Reads a reason code byte and checks it belongs to the packet type.
pub(crate) fn read_reason_code(r: &mut Reader<'_>) -> Result<ReasonCode, DecodeError> {
    let byte = r.u8()?;
    ReasonCode::from_u8(byte)
        .filter(|code| code.allowed_in(r.packet()))
        .ok_or(DecodeError::InvalidReasonCode {
            packet: r.packet(),
            code: byte,
        })
}
