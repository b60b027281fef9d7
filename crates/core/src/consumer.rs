//! Consumers: how a queue hands messages to a connection.
//!
//! A connection registers a consumer with a [`Sink`] (its one delivery channel) and a
//! [`CreditGate`]. The queue dispatches only while the gate has credit, so the channel never
//! holds more than the gate's limit per consumer: the channel is unbounded in type but
//! bounded by credit. Credit comes back when a message is acknowledged, or, for auto-ack
//! consumers, when the connection has taken the delivery off the channel
//! ([`ConsumerHandle::written`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use bytestring::ByteString;
use parking_lot::Mutex;

use crate::message::Message;
use crate::queue::Queue;
use crate::selector::Selector;

/// What a queue sends to a connection.
#[derive(Debug)]
pub enum Event {
    /// A message for one of the connection's consumers.
    Deliver(Delivery),
    /// The consumer was cancelled by the broker (its queue was deleted).
    Cancelled {
        /// The consumer's id.
        consumer_id: u64,
        /// Why, for the protocol's cancel notification.
        reason: String,
    },
}

/// The sending half of a connection's delivery channel.
pub type Sink = tokio::sync::mpsc::UnboundedSender<Event>;
/// The receiving half, owned by the connection task.
pub type EventReceiver = tokio::sync::mpsc::UnboundedReceiver<Event>;

/// A new delivery channel for one connection.
pub fn channel() -> (Sink, EventReceiver) {
    tokio::sync::mpsc::unbounded_channel()
}

/// A connection's delivery channel, made when its first consumer needs it: most
/// connections of a large deployment never consume, and a channel costs about 2 KB (a
/// block of event slots) whether or not anything is ever sent on it.
#[derive(Debug, Default)]
pub struct LazyChannel {
    sink: Option<Sink>,
    /// The receiving half, until the connection task takes it.
    events: Option<EventReceiver>,
}

impl LazyChannel {
    /// The sending half, for a consumer; the channel is made at the first call.
    pub fn sink(&mut self) -> &Sink {
        let events = &mut self.events;
        self.sink.get_or_insert_with(|| {
            let (sink, rx) = channel();
            *events = Some(rx);
            sink
        })
    }

    /// The receiving half, handed over once after the channel was made: a connection
    /// task asks again after each frame it handled.
    pub fn take_events(&mut self) -> Option<EventReceiver> {
        self.events.take()
    }
}

/// The next event on `rx`, or never while there is no channel: a connection task's
/// `select!` branch for deliveries.
pub async fn next_event(rx: &mut Option<EventReceiver>) -> Option<Event> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One message handed to a consumer.
#[derive(Debug)]
pub struct Delivery {
    /// The queue it came from; acks go back here.
    pub queue: Arc<Queue>,
    /// The consumer it is for.
    pub consumer_id: u64,
    /// The queue's tag for this message: pass it to [`Queue::ack`] / [`Queue::nack`].
    pub tag: u64,
    /// The message, shared.
    pub message: Arc<Message>,
    /// It was delivered before.
    pub redelivered: bool,
    /// How many times it was delivered before this delivery.
    pub delivery_count: u32,
    /// The journal's id for the message (one per publish, whatever queues it reached),
    /// the same before and after a restart, so that a protocol can recognise a message it
    /// sent before the restart; 0 when this queue does not journal it (transient message,
    /// non-durable queue, no store).
    pub persistent_id: u64,
}

/// Bounds the deliveries outstanding for one consumer, or for several that share a limit
/// (AMQP's channel-global prefetch).
///
/// # Invariants
/// - `inflight <= limit` except transiently when the limit is lowered.
/// - A queue that found the gate full is in `waiters` before it re-checks the gate, so a
///   release that happens concurrently either sees the waiter or the queue sees the credit.
#[derive(Debug)]
pub struct CreditGate {
    inflight: AtomicU32,
    limit: AtomicU32,
    waiters: Mutex<Vec<Weak<Queue>>>,
    has_waiters: AtomicBool,
}

impl CreditGate {
    /// A gate admitting `limit` outstanding deliveries.
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            inflight: AtomicU32::new(0),
            limit: AtomicU32::new(limit.max(1)),
            waiters: Mutex::new(Vec::new()),
            has_waiters: AtomicBool::new(false),
        })
    }

    /// Outstanding deliveries.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Changes the limit (0 stops deliveries). Raising it wakes the queues that waited for
    /// credit, so a consumer can widen its window without acknowledging (OpenWire's
    /// delivered acks and pulls).
    pub fn set_limit(&self, limit: u32) {
        let old = self.limit.swap(limit, Ordering::SeqCst);
        if limit > old && self.has_waiters.swap(false, Ordering::SeqCst) {
            let waiting = std::mem::take(&mut *self.waiters.lock());
            crate::queue::kick_all(waiting);
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::SeqCst)
    }

    /// True when a credit is free (without taking it).
    pub(crate) fn has_credit(&self) -> bool {
        self.inflight.load(Ordering::SeqCst) < self.limit.load(Ordering::SeqCst)
    }

    /// Takes one credit if there is one.
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::SeqCst);
        self.inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Records that `queue` is waiting for credit.
    pub(crate) fn wait(&self, queue: &Arc<Queue>) {
        let mut w = self.waiters.lock();
        if !w.iter().any(|q| q.as_ptr() == Arc::as_ptr(queue)) {
            w.push(Arc::downgrade(queue));
        }
        self.has_waiters.store(true, Ordering::SeqCst);
    }

    /// Returns `n` credits; the queues that were waiting are returned for the caller to kick
    /// once it holds no queue lock.
    #[must_use]
    pub(crate) fn release(&self, n: u32) -> Vec<Weak<Queue>> {
        if n == 0 {
            return Vec::new();
        }
        let _ = self
            .inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(n))
            });
        if self.has_waiters.swap(false, Ordering::SeqCst) {
            std::mem::take(&mut *self.waiters.lock())
        } else {
            Vec::new()
        }
    }
}

/// How a consumer shares its queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Exclusivity {
    /// Competing consumers, served round-robin.
    #[default]
    Shared,
    /// The only consumer: refused if the queue has consumers, and others are refused while
    /// it exists (AMQP `basic.consume` exclusive).
    Sole,
    /// One active consumer with the others on standby: the oldest `Failover` consumer gets
    /// every message while it exists, then the next takes over (ActiveMQ's exclusive
    /// consumer).
    Failover,
}

/// How a consumer acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// Messages are settled when sent (AMQP no-ack, STOMP `ack:auto`).
    Auto,
    /// The client acknowledges each message.
    Manual,
}

/// What a connection asks for when it starts consuming.
#[derive(Debug)]
pub struct ConsumerSpec {
    /// The protocol's name for the consumer (AMQP consumer tag, STOMP subscription id).
    pub tag: ByteString,
    /// How messages are acknowledged.
    pub ack_mode: AckMode,
    /// Credit; shared between consumers for a channel-wide limit.
    pub gate: Arc<CreditGate>,
    /// Higher priority consumers are served first while they have credit.
    pub priority: i32,
    /// Whether the consumer shares the queue with others.
    pub exclusive: Exclusivity,
    /// Where deliveries go.
    pub sink: Sink,
    /// Only messages it selects are delivered to this consumer; the others stay for other
    /// consumers. See `Queue`'s dispatch for how far a queue looks for a match.
    pub selector: Option<Arc<Selector>>,
}

/// A registered consumer. Dropping it cancels the consumer and returns its unacknowledged
/// messages to the queue, flagged redelivered.
#[derive(Debug)]
pub struct ConsumerHandle {
    pub(crate) queue: Arc<Queue>,
    pub(crate) id: u64,
    pub(crate) gate: Arc<CreditGate>,
    pub(crate) auto_ack: bool,
}

impl ConsumerHandle {
    /// The consumer's id, as carried by its deliveries.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The queue consumed from.
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// For auto-ack consumers: `n` deliveries have been taken off the channel, so the queue
    /// may send more. No-op for manual-ack consumers (their credit returns with acks).
    pub fn written(&self, n: u32) {
        if self.auto_ack {
            crate::queue::kick_all(self.gate.release(n));
        }
    }

    /// Stops deliveries but keeps unacknowledged messages ackable (AMQP `basic.cancel`).
    pub fn cancel(&self) {
        self.queue.remove_consumer(self.id, false);
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.id, true);
    }
}
