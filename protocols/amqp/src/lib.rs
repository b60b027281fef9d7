//! AMQP 0-9-1 for ferromq: RabbitMQ client applications (pika, lapin, amqplib, the Java
//! client...) connect unchanged.
//!
//! # Layout
//! - `codec.rs`: bytes <-> frames (framing here, method parsing by `amq-protocol`);
//!   `nesting.rs` bounds field-table nesting before the parser recurses.
//! - `session.rs`: the connection state machine (handshake, tune, heartbeats, channel
//!   table, connection errors); no I/O. `handshake.rs` holds its pure parts (server
//!   properties, SASL PLAIN/AMQPLAIN, tune negotiation).
//! - `channel.rs`: one channel's state (content assembly, exchange/queue/tx/confirm
//!   methods, channel errors); `basic.rs` its `basic.*` methods; `confirms.rs` the
//!   in-order publisher confirm list.
//! - `adapter/`: the only modules that import the core: topology calls, properties in,
//!   deliveries out (`wire.rs`), direct reply-to.
//! - `out.rs`: what a connection has to write: frames in a buffer, large bodies spliced
//!   in by reference for one vectored write.
//! - `conn.rs`: the tokio glue for one connection.
//! - `error.rs`: reply codes, and errors typed by blast radius (channel or connection).
//! - `limits.rs`: every bound, with reasons.
//!
//! The mapping from AMQP concepts to the core, and every deviation from RabbitMQ, is in
//! this crate's README.md.
#![warn(missing_docs)]

mod adapter;
mod basic;
mod channel;
pub mod codec;
mod confirms;
mod conn;
pub mod error;
pub mod handshake;
pub mod limits;
mod nesting;
pub mod out;
pub mod session;

pub use conn::serve_connection;
pub use error::AmqpError;
pub use limits::Limits;

/// Settings of the AMQP listener and its connections.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    /// Every bound (frame size, channels, heartbeat, body size...).
    pub limits: Limits,
    /// `product` in the server properties.
    pub product: String,
    /// `version` in the server properties.
    pub version: String,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            product: "ferromq".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}
