//! MQTT 3.1, 3.1.1 and 5.0 for ferromq: a strict codec and the packet types.
//!
//! This crate turns bytes into [`Packet`]s and back, for both ends of a
//! connection, and enforces every rule that can be checked from the bytes
//! alone: fixed-header flags, reserved bits, variable byte integers, UTF-8,
//! topic syntax, which properties each packet may carry, reason codes, and
//! the configured [`Limits`]. Sessions, the core and networking are built on
//! top of it elsewhere.
//!
//! # Layout
//!
//! - `codec.rs`: [`Decoder`] and [`Encoder`]: framing, version and
//!   direction rules, size limits, zero-copy splitting.
//! - `framing.rs`: the fixed header: packet type, flags, Remaining Length.
//! - `packet/`: one file per packet family (CONNECT, CONNACK, PUBLISH, the
//!   four publish acknowledgements, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK,
//!   DISCONNECT, AUTH), each with its wire form in both directions.
//! - `properties/`: MQTT 5 property identifiers, where each may appear, the
//!   per-packet property structs, the generic list reader and writer.
//! - `reason.rs`: MQTT 5 reason codes per packet, MQTT 3 CONNACK codes.
//! - `topic.rs`: topic name, topic filter and shared subscription rules.
//! - `text.rs`: the code points MQTT discourages in strings (accepted, and
//!   reported on request).
//! - `wire.rs`: integers, variable byte integers, strings, binary data.
//! - `error.rs`: [`DecodeError`] (each with its MQTT 5 reason code and MQTT
//!   3 CONNACK code) and [`EncodeError`].
//! - `limits.rs`: [`Limits`] with the reason for each default.
//! - `version.rs`: [`ProtocolVersion`] and [`Role`].
//!
//! The validation choices where the specification leaves room are listed
//! in this crate's README.md.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use ferromq_mqtt::{Decoder, Encoder, Limits, Packet, ProtocolVersion};
//! use ferromq_mqtt::packet::{ConnAck, Publish};
//!
//! // A 3.1.1 CONNECT, then a QoS 0 PUBLISH of "hi" to "a/b".
//! let mut buf = BytesMut::from(
//!     &b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03c-1\x30\x07\x00\x03a/bhi"[..],
//! );
//! let mut decoder = Decoder::server(Limits::default());
//! let Some(Packet::Connect(connect)) = decoder.decode(&mut buf)? else { panic!() };
//! assert_eq!(connect.client_id, "c-1");
//! assert_eq!(decoder.version(), Some(ProtocolVersion::V3_1_1));
//! let Some(Packet::Publish(publish)) = decoder.decode(&mut buf)? else { panic!() };
//! assert_eq!((&publish.topic[..], &publish.payload[..]), ("a/b", &b"hi"[..]));
//!
//! let mut out = BytesMut::new();
//! Encoder::new(ProtocolVersion::V3_1_1).encode(&Packet::ConnAck(ConnAck::accepted(false)), &mut out)?;
//! assert_eq!(&out[..], b"\x20\x02\x00\x00");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod codec;
pub mod error;
mod framing;
pub mod limits;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod text;
pub mod topic;
mod version;
mod wire;

pub use codec::{Decoder, Encoder};
pub use error::{DecodeError, EncodeError};
pub use limits::Limits;
pub use packet::{Packet, PacketType, QoS};
pub use reason::{ConnectReturnCode, ReasonCode};
pub use version::{ProtocolVersion, Role};
