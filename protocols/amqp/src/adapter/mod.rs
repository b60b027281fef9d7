//! The only modules that import `ferromq-core`: frame <-> core translation.
//!
//! - `mod.rs`: [`Link`], the connection's handle on the core (consume, get, publish,
//!   settle, transactions, the direct reply-to queue), and the few core types the state
//!   machine holds (consumer handles, deliveries), re-exported so that the rest of the
//!   crate names the core only through this module.
//! - `topology.rs`: `exchange.*` and `queue.*`.
//! - `properties.rs`: content properties and field tables, inbound.
//! - `wire.rs`: deliveries, returns and content frames, outbound.

mod properties;
mod topology;
pub(crate) mod wire;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use amq_protocol::types::{AMQPValue, FieldTable as AmqpTable};
use bytestring::ByteString;
use ferromq_core::{AckMode, Connection, ConsumerSpec, Exclusivity, LazyChannel, QueueOptions};

pub(crate) use ferromq_core::clock::sleep_until;
pub(crate) use ferromq_core::{
    Broker, ConsumerHandle, CreditGate, Delivery, Event, EventReceiver, Message, Peer, Principal,
    PublishOutcome, Queue, SyncTicket, SyncWaiter, Transaction,
};
pub(crate) use properties::message_from_publish;

use ferromq_core::{AuthError, CoreError};

use crate::error::{code, AmqpError};

/// The pseudo-queue an RPC client consumes from for direct reply-to.
pub(crate) const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// The prefix of the reply addresses handed out for it.
pub(crate) const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Checks a login made with SASL `mechanism`. Unknown users and wrong passwords get
/// RabbitMQ's one text for both.
pub(crate) fn authenticate(
    broker: &Broker,
    mechanism: &str,
    user: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> Result<Principal, AmqpError> {
    broker
        .authenticate(user, password, peer)
        .map_err(|e| match e {
            ferromq_core::AuthError::BadCredentials | ferromq_core::AuthError::AnonymousRefused => {
                login_refused(mechanism)
            }
            other => other.into(),
        })
}

/// Admits the user a TLS client certificate proved (SASL `EXTERNAL`).
pub(crate) fn authenticate_verified(
    broker: &Broker,
    user: &str,
    peer: Option<IpAddr>,
) -> Result<Principal, AmqpError> {
    broker
        .users()
        .authenticate_verified(user, peer)
        .map_err(|e| match e {
            ferromq_core::AuthError::BadCredentials => login_refused("EXTERNAL"),
            other => other.into(),
        })
}

/// The 403 of a failed login.
pub(crate) fn login_refused(mechanism: &str) -> AmqpError {
    AmqpError::new(
        code::ACCESS_REFUSED,
        format!(
            "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
        ),
    )
}

/// A credit gate admitting `limit` outstanding deliveries.
pub(crate) fn gate(limit: u32) -> Arc<CreditGate> {
    CreditGate::new(limit)
}

/// A delivery waiting for the client's ack.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) queue: Arc<Queue>,
    pub(crate) tag: u64,
    /// The core consumer it was delivered to; 0 for `basic.get`.
    pub(crate) consumer: u64,
}

/// How deliveries are settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
    Reject,
}

/// Settles deliveries, one core call per run of the same queue. Unknown tags can only
/// be tags of a queue deleted meanwhile (the channel checked its own), so errors are moot.
pub(crate) fn settle<'a>(items: impl IntoIterator<Item = &'a Unacked>, how: Settle) {
    let mut tags: smallvec::SmallVec<[u64; 16]> = smallvec::SmallVec::new();
    let mut current: Option<&Arc<Queue>> = None;
    let flush = |q: &Arc<Queue>, tags: &mut smallvec::SmallVec<[u64; 16]>| {
        let _ = match how {
            Settle::Ack => q.ack(tags),
            Settle::Requeue => q.nack(tags, true),
            Settle::Reject => q.nack(tags, false),
        };
        tags.clear();
    };
    for u in items {
        if let Some(c) = current {
            if !Arc::ptr_eq(c, &u.queue) {
                flush(c, &mut tags);
            }
        }
        tags.push(u.tag);
        current = Some(&u.queue);
    }
    if let Some(c) = current {
        flush(c, &mut tags);
    }
}

/// What `basic.consume` asks for, beyond the queue.
pub(crate) struct ConsumeRequest<'a> {
    pub(crate) tag: ByteString,
    pub(crate) no_ack: bool,
    pub(crate) exclusive: bool,
    pub(crate) arguments: &'a AmqpTable,
    pub(crate) gate: Arc<CreditGate>,
}

/// One client connection's handle on the core, after `connection.open`.
pub(crate) struct Link {
    conn: Connection,
    /// The delivery channel, made at the first `basic.consume` (locked only there and
    /// when the connection task takes the receiver).
    deliveries: Mutex<LazyChannel>,
    /// Set once the channel is made: until then the connection task, which asks after
    /// every batch of frames, need not take the lock.
    channel_made: AtomicBool,
    sync: Option<ferromq_core::SyncWaiter>,
}

impl Link {
    /// Opens `vhost` for `principal`. Refusals are 530, as RabbitMQ answers
    /// `connection.open`.
    pub(crate) fn open(
        broker: &Broker,
        principal: Principal,
        vhost: &str,
    ) -> Result<Self, AmqpError> {
        if broker.vhost(vhost).is_none() {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!("vhost {vhost} not found"),
            ));
        }
        let user = principal.name.clone();
        let conn = broker.connect(principal, vhost).map_err(|_| {
            AmqpError::new(
                code::NOT_ALLOWED,
                format!("access to vhost '{vhost}' refused for user '{user}'"),
            )
        })?;
        Ok(Self {
            conn,
            deliveries: Mutex::new(LazyChannel::default()),
            channel_made: AtomicBool::new(false),
            sync: broker.sync_waiter(),
        })
    }

    /// Where deliveries arrive, once a consumer made the channel; handed over once.
    pub(crate) fn take_events(&self) -> Option<EventReceiver> {
        if !self.channel_made.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.deliveries).take_events()
    }

    /// Whether a journaled publish is synced: `Some(true)` synced, `Some(false)` never will
    /// be (the journal failed, or refused the record for lack of space), `None` not yet.
    pub(crate) fn synced(&self, t: SyncTicket) -> Option<bool> {
        self.sync.as_ref()?.poll(t).map(|r| r.is_ok())
    }

    /// A ticket covering every journal record submitted so far; `None` without a store.
    pub(crate) fn sync_point(&self) -> Option<SyncTicket> {
        self.conn.broker().sync_point()
    }

    /// A waiter for the connection task to learn when the synced point moves.
    pub(crate) fn sync_waiter(&self) -> Option<SyncWaiter> {
        self.sync.clone()
    }

    /// The core's connection id.
    pub(crate) fn id(&self) -> u64 {
        self.conn.id()
    }

    /// The authenticated user.
    pub(crate) fn user(&self) -> &str {
        &self.conn.principal().name
    }

    /// Unacked deliveries a consumer may hold when the client sets no prefetch.
    pub(crate) fn unacked_max(&self) -> u32 {
        self.conn.broker().limits().consumer_unacked_max
    }

    /// A fresh server-generated consumer tag.
    pub(crate) fn consumer_tag() -> ByteString {
        ferromq_core::generated_queue_name("amq.ctag-").into()
    }

    /// `basic.consume` on `queue`.
    pub(crate) fn consume(
        &self,
        queue: &str,
        r: ConsumeRequest<'_>,
    ) -> Result<ConsumerHandle, AmqpError> {
        let priority = match r.arguments.inner().get("x-priority") {
            None => 0,
            Some(v) => int(v).and_then(|p| i32::try_from(p).ok()).ok_or_else(|| {
                AmqpError::precondition(format!("invalid arg 'x-priority' for consumer: {v:?}"))
            })?,
        };
        let spec = ConsumerSpec {
            tag: r.tag,
            ack_mode: if r.no_ack {
                AckMode::Auto
            } else {
                AckMode::Manual
            },
            gate: r.gate,
            priority,
            exclusive: if r.exclusive {
                Exclusivity::Sole
            } else {
                Exclusivity::Shared
            },
            sink: {
                let sink = lock(&self.deliveries).sink().clone();
                self.channel_made.store(true, Ordering::Release);
                sink
            },
            selector: None,
        };
        match self.conn.consume(queue, spec) {
            Ok(h) => Ok(h),
            Err(CoreError::AccessRefused(_)) => Err(AmqpError::new(
                code::ACCESS_REFUSED,
                format!(
                    "queue '{queue}' in vhost '{}' in exclusive use",
                    self.conn.vhost().name()
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `basic.get`: the next message and the count still ready.
    pub(crate) fn get(
        &self,
        queue: &str,
        no_ack: bool,
    ) -> Result<Option<(Delivery, u32)>, AmqpError> {
        let q = self.conn.vhost().queue_for(queue, self.conn.id())?;
        let mode = if no_ack {
            AckMode::Auto
        } else {
            AckMode::Manual
        };
        Ok(q.get(mode, 0)
            .map(|(d, left)| (d, u32::try_from(left).unwrap_or(u32::MAX))))
    }

    /// Publishes a message, routing direct reply-to addresses (see [`direct_reply`]).
    pub(crate) fn publish(
        &self,
        mut msg: Message,
    ) -> Result<(PublishOutcome, Arc<Message>), AmqpError> {
        direct_reply(&mut msg);
        let msg = Arc::new(msg);
        Ok((self.conn.vhost().publish(msg.clone())?, msg))
    }

    /// A new transaction.
    pub(crate) fn transaction(&self) -> Transaction {
        Transaction::new(self.conn.broker().limits())
    }

    /// Buffers a publish in `txn`, with the same routing as [`Link::publish`].
    pub(crate) fn publish_in(
        &self,
        txn: &mut Transaction,
        mut msg: Message,
    ) -> Result<Arc<Message>, AmqpError> {
        direct_reply(&mut msg);
        if self.conn.vhost().exchange(&msg.exchange).is_none() {
            return Err(AmqpError::new(
                code::NOT_FOUND,
                format!(
                    "no exchange '{}' in vhost '{}'",
                    msg.exchange,
                    self.conn.vhost().name()
                ),
            ));
        }
        let msg = Arc::new(msg);
        txn.publish(msg.clone())?;
        Ok(msg)
    }

    /// Commits `txn`: the outcome of each buffered publish, in order.
    pub(crate) fn commit(&self, txn: &mut Transaction) -> Result<Vec<PublishOutcome>, AmqpError> {
        Ok(txn.commit(self.conn.vhost())?)
    }

    /// Buffers the settlement of `u` in `txn`.
    pub(crate) fn settle_in(
        txn: &mut Transaction,
        u: &Unacked,
        how: Settle,
    ) -> Result<(), AmqpError> {
        match how {
            Settle::Ack => txn.ack(u.queue.clone(), u.tag)?,
            Settle::Requeue => txn.nack(u.queue.clone(), u.tag, true)?,
            Settle::Reject => txn.nack(u.queue.clone(), u.tag, false)?,
        }
        Ok(())
    }

    /// Declares the private queue behind a direct reply-to consumer: exclusive to this
    /// connection, deleted with its consumer.
    pub(crate) fn reply_queue(&self) -> Result<ByteString, AmqpError> {
        let options = QueueOptions {
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Default::default(),
        };
        let (q, _) = self.conn.declare_queue("", options, false)?;
        Ok(q.name().clone())
    }
}

/// `amq.default` is another name for the default exchange; a reply address
/// `amq.rabbitmq.reply-to.amq.gen-…` on it routes to the private queue `amq.gen-…` of the
/// requesting channel. Anything else after the prefix names no queue (names starting with
/// `amq.` cannot be declared), so it stays unroutable.
fn direct_reply(msg: &mut Message) {
    if msg.exchange == "amq.default" {
        msg.exchange = ByteString::new();
    }
    if msg.exchange.is_empty() {
        if let Some(q) = msg.routing_key.strip_prefix(REPLY_TO_PREFIX) {
            if q.starts_with("amq.gen-") {
                msg.routing_key = q.into();
            }
        }
    }
}

fn int(v: &AMQPValue) -> Option<i64> {
    Some(match *v {
        AMQPValue::ShortShortInt(n) => n.into(),
        AMQPValue::ShortShortUInt(n) => n.into(),
        AMQPValue::ShortInt(n) => n.into(),
        AMQPValue::ShortUInt(n) => n.into(),
        AMQPValue::LongInt(n) => n.into(),
        AMQPValue::LongUInt(n) => n.into(),
        AMQPValue::LongLongInt(n) => n,
        _ => return None,
    })
}

// Core errors carry their AMQP reply code; the text gets RabbitMQ's `NAME - ` prefix.
impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> Self {
        let code = e.reply_code();
        let detail = match e {
            CoreError::NotFound(d)
            | CoreError::AccessRefused(d)
            | CoreError::ResourceLocked(d)
            | CoreError::PreconditionFailed(d)
            | CoreError::ResourceLimit(d)
            | CoreError::InvalidArgument(d)
            | CoreError::CommandInvalid(d)
            | CoreError::Storage(d) => d,
        };
        Self::new(code, detail)
    }
}

impl From<AuthError> for AmqpError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::VhostRefused { user, vhost } => Self::new(
                code::NOT_ALLOWED,
                format!("access to vhost '{vhost}' refused for user '{user}'"),
            ),
            AuthError::LoopbackOnly(user) => Self::new(
                code::ACCESS_REFUSED,
                format!("user '{user}' can only connect via localhost"),
            ),
            AuthError::BadCredentials | AuthError::AnonymousRefused => Self::new(
                code::ACCESS_REFUSED,
                "Login was refused. For details see the broker logfile.",
            ),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data; a panic elsewhere while holding it leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Scope;

    #[test]
    fn core_errors_keep_their_codes() {
        let e: AmqpError = CoreError::NotFound("no queue 'q' in vhost '/'".into()).into();
        assert_eq!(e.text, "NOT_FOUND - no queue 'q' in vhost '/'");
        let e: AmqpError = CoreError::InvalidArgument("bad".into()).into();
        assert_eq!(
            (e.code, e.text.as_str()),
            (406, "PRECONDITION_FAILED - bad")
        );
        let e: AmqpError = CoreError::CommandInvalid("unknown exchange type 'x'".into()).into();
        assert_eq!(e.scope(), Scope::Connection);
    }
}
