//! MQTT 3.1, 3.1.1 and 5.0 for ferromq: a strict codec, the session state
//! machine, and the listener.
//!
//! The codec turns bytes into [`Packet`]s and back, for both ends of a
//! connection, and enforces every rule that can be checked from the bytes
//! alone: fixed-header flags, reserved bits, variable byte integers, UTF-8,
//! topic syntax, which properties each packet may carry, reason codes, and
//! the configured [`Limits`]. [`serve_connection`] runs one connection whose session maps
//! MQTT onto the core (`amq.topic`, one queue per session).
//!
//! # Layout
//!
//! - `session.rs`: the protocol state machine (no I/O): CONNECT, publish
//!   flows for QoS 0/1/2 in both directions, subscriptions, wills.
//! - `adapter.rs`: PUBLISH <-> core message, session queues and bindings.
//! - `mapping.rs`: MQTT topics and filters <-> `amq.topic` keys (reversible).
//! - `shared.rs`: per-listener state: client ids (takeover), QoS 2 state and
//!   unacknowledged packet ids of persistent sessions, retained messages.
//! - `retained.rs`: retained messages, in memory and in a durable core queue.
//! - `held.rs`: the durable queue whose messages those two hold unacknowledged.
//! - `qos_store.rs`: persistent sessions' packet-id state (QoS 2 exchanges,
//!   unacknowledged PUBLISHes) as markers in a durable core queue.
//! - `conn.rs`: the tokio glue for one connection.
//! - `expiry.rs`: connection deadlines, checked by one ticker per listener.
//! - `park.rs`: the parking lot, where idle plain-TCP connections wait without a task.
//! - `config.rs`: [`MqttConfig`], every session and listener bound.
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

mod adapter;
pub mod codec;
mod config;
mod conn;
pub mod error;
mod expiry;
mod framing;
mod held;
pub mod limits;
pub mod mapping;
pub mod packet;
mod park;
pub mod properties;
mod qos_store;
pub mod reason;
pub mod retained;
pub mod session;
pub mod shared;
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

pub use config::MqttConfig;
pub use conn::{serve_connection, Parking, Slot};

use std::sync::Arc;

use ferromq_core::Broker;
use tokio_util::sync::CancellationToken;

/// Loads what the sessions of every MQTT listener share from the core: the retained
/// messages and the packet-id state of persistent sessions. Call once, before serving
/// connections with `shared`; spawn [`sweep_sessions`] beside them.
pub fn open_shared(broker: &Broker, config: &MqttConfig, shared: &shared::Shared) {
    let Some(vhost) = broker.vhost(&config.vhost) else {
        tracing::warn!(vhost = %config.vhost, "MQTT vhost does not exist");
        return;
    };
    match shared.retained().open(&vhost, broker.next_id()) {
        Ok(n) => tracing::debug!(retained = n, "MQTT retained messages loaded"),
        Err(e) => tracing::warn!(error = %e, "MQTT retained messages kept in memory only"),
    }
    let exists = |id: &str| vhost.queue(&adapter::session_queue_name(id)).is_some();
    match shared.open_qos_state(&vhost, broker.next_id(), exists) {
        Ok(n) => tracing::debug!(sessions = n, "MQTT session packet id state loaded"),
        Err(e) => tracing::warn!(error = %e, "MQTT packet id state kept in memory only"),
    }
    adapter::release_unused_groups(shared, &vhost);
}

/// Forgets, every `session_sweep_interval_ms`, the in-memory state of persistent sessions
/// whose queue the core has expired or deleted, and deletes the shared subscription groups
/// left without members. Ends at shutdown.
pub async fn sweep_sessions(
    broker: Broker,
    config: Arc<MqttConfig>,
    shared: Arc<shared::Shared>,
    shutdown: CancellationToken,
) {
    let period = std::time::Duration::from_millis(config.session_sweep_interval_ms.max(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(vhost) = broker.vhost(&config.vhost) else {
            continue;
        };
        let n = shared.sweep(|id| vhost.queue(&adapter::session_queue_name(id)).is_some());
        if n > 0 {
            tracing::debug!(sessions = n, "MQTT expired sessions forgotten");
        }
        adapter::release_unused_groups(&shared, &vhost);
    }
}
