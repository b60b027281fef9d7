//! The protocol-neutral broker core of ferromq.
//!
//! Protocol adapters translate their frames into calls on this crate: declare and bind
//! through a [`Vhost`], publish [`Message`]s, consume through [`Connection::consume`] and
//! receive [`Event`]s on one channel per connection. Nothing here knows what a frame is.
//!
//! # Layout
//! - `broker.rs`: [`Broker`] (vhosts, users, ids) and [`Connection`] (exclusive ownership).
//! - `vhost.rs`: topology (exchanges, queues, bindings), routing, dead-lettering.
//! - `exchange.rs`: exchange kinds and binding tables; `topic.rs` the `*`/`#` trie.
//! - `queue.rs`: ready messages, consumers, unacked deliveries, TTL, limits, priorities;
//!   `queue_args.rs` parses `x-` arguments.
//! - `consumer.rs`: delivery events, credit gates, consumer handles.
//! - `selector.rs`: JMS SQL-92 message selectors (OpenWire consumers, STOMP `selector`).
//! - `message.rs`: the message model. `txn.rs`: transactions. `auth.rs`: users.
//! - `limits.rs`: every bound, with reasons. `clock.rs`: injected time. `error.rs`: errors.
//! - `buffers.rs`: how connection tasks size their read and write buffers.
//! - `groups.rs`: message groups (`JMSXGroupID`), one consumer per group.
//! - `idmap.rs`: hash maps keyed by ids the broker assigns (tags, consumer ids).
//!
//! - `durable/`: journaling durable state through `crates/store`, and restoring it.
//! - `paging.rs`: spill files for ready messages beyond the memory budget.
//!
//! A broker made with [`Broker::new`] keeps everything in memory; [`Broker::open`] attaches
//! a journal, restores what it holds, and journals durable exchanges, queues, bindings and
//! the persistent messages routed to durable queues from then on.
#![warn(missing_docs)]

pub mod auth;
mod broker;
pub mod buffers;
pub mod clock;
mod consumer;
mod durable;
mod error;
mod exchange;
pub mod groups;
pub mod idmap;
mod limits;
mod message;
mod paging;
mod queue;
mod queue_args;
pub mod selector;
pub mod topic;
mod txn;
mod vhost;

pub use auth::{hash_password, Identity, Peer, Principal, UserRecord};
pub use broker::{Broker, BrokerConfig, Connection, Opened, PagingStats, DEFAULT_VHOST};
pub use clock::{Clock, ManualClock, SystemClock};
pub use consumer::{
    channel, next_event, AckMode, ConsumerHandle, ConsumerSpec, CreditGate, Delivery, Event,
    EventReceiver, Exclusivity, LazyChannel, Sink,
};
pub use durable::{DurableConfig, Persister, RecoveryReport, SyncTicket, SyncWaiter};
pub use error::{AuthError, CoreError};
pub use exchange::{BindingInfo, Exchange, ExchangeKind, ExchangeOptions};
pub use ferromq_store::{FaultInjector, StoreStats};
pub use idmap::{IdMap, IdSet};
pub use limits::CoreLimits;
pub use message::{Death, DeathReason, FieldTable, FieldValue, Message, Properties};
pub use paging::PagingConfig;
pub use queue::{Enqueued, Queue, QueueOptions, QueueStats};
pub use queue_args::{Overflow, QueueArgs, QueueSelector};
pub use selector::{Selector, SelectorError, SelectorLimits};
pub use txn::Transaction;
pub use vhost::{generated_queue_name, PublishOutcome, Vhost};
