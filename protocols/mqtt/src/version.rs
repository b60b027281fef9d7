//! Protocol versions and the two ends of a connection.

use std::fmt;

/// An MQTT protocol version, named by the CONNECT packet's protocol name and
/// level: `MQIsdp`/3, `MQTT`/4 and `MQTT`/5.
///
/// The order is chronological, so `v >= ProtocolVersion::V5` reads naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (IBM's pre-OASIS specification), protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1 (OASIS), protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0 (OASIS), protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// Every version, oldest first.
    pub const ALL: [ProtocolVersion; 3] = [Self::V3_1, Self::V3_1_1, Self::V5];

    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name string of CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether packets carry MQTT 5 properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3_1 => "MQTT 3.1",
            Self::V3_1_1 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}

/// Which end of a connection a [`Decoder`](crate::codec::Decoder) serves,
/// and so which packets it accepts.
///
/// A server decodes what clients send (CONNECT, SUBSCRIBE, PINGREQ, ...) and
/// refuses what only servers send (CONNACK, SUBACK, PINGRESP, ...); a client
/// the reverse. A few rules also depend on the sender: a client's PUBLISH must
/// not carry a Subscription Identifier, a server's DISCONNECT must not carry a
/// Session Expiry Interval, and each side has its own DISCONNECT reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The broker end: decodes client-to-server packets.
    Server,
    /// The client end (tests, load generators, bridges): decodes
    /// server-to-client packets.
    Client,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        }
    }
}
