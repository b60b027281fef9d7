//! Retained messages: one per topic, kept in memory for matching and in a durable core
//! queue so that they survive a restart.
//!
//! # Design
//! Every retained message is also published, as a persistent copy, to the durable fanout
//! exchange `mqtt.retained`, whose only binding is the durable queue `mqtt-retained`. The
//! store then takes the copy off that queue with a manual-ack `get` and holds it unacked
//! under its delivery tag for as long as it is the topic's retained message. Replacing or
//! clearing the topic acknowledges the old tag, which settles it in the journal. After a
//! restart the journal gives the queue back its unsettled copies as ready messages, and
//! [`RetainedStore::open`] takes them all again to rebuild the map (if a crash left two
//! copies of one topic, the later one wins and the earlier is settled). Nothing new goes
//! into the journal format: the retained store is plain core state.
//!
//! # Invariants
//! - Once opened, every ready message of `mqtt-retained` was put there by a publish made
//!   while holding `inner`; the `get` that follows under the same lock takes it.
//! - `bytes` is the sum of the body sizes in `by_topic`.
//!
//! # Locks
//! `inner` is taken before core locks (publish, get, ack) and never held across `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use ferromq_core::{
    AckMode, CoreError, ExchangeKind, ExchangeOptions, FieldTable, Message, QueueOptions,
    SyncTicket, Vhost,
};

use crate::held::HeldQueue;
use crate::mapping::{self, filter_matches};

/// The exchange retained copies are published to.
pub(crate) const RETAINED_EXCHANGE: &str = "mqtt.retained";
/// The queue that keeps them.
pub(crate) const RETAINED_QUEUE: &str = "mqtt-retained";

/// What storing a retained message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainOutcome {
    /// Stored, replaced or cleared; the ticket (if any) covers the journal record.
    Done(Option<SyncTicket>),
    /// Not stored: the configured count or byte bound is reached, or the store refused it
    /// (the journal is failing or behind).
    Refused,
}

#[derive(Debug)]
struct Kept {
    msg: Arc<Message>,
    /// The copy's delivery tag in `mqtt-retained` (none without a backing queue).
    tag: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    by_topic: HashMap<ByteString, Kept>,
    bytes: u64,
    backing: Option<HeldQueue>,
}

/// The retained messages of one vhost.
#[derive(Debug, Default)]
pub struct RetainedStore {
    inner: Mutex<Inner>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Forgets a topic's message and settles its stored copy.
    fn remove(&mut self, topic: &str) {
        if let Some(old) = self.by_topic.remove(topic) {
            self.bytes -= old.msg.body.len() as u64;
            self.settle(old.tag);
        }
    }

    fn settle(&self, tag: Option<u64>) {
        if let (Some(b), Some(tag)) = (&self.backing, tag) {
            b.settle(&[tag]);
        }
    }

    fn insert(&mut self, topic: ByteString, msg: Arc<Message>, tag: Option<u64>) {
        self.remove(&topic);
        self.bytes += msg.body.len() as u64;
        self.by_topic.insert(topic, Kept { msg, tag });
    }
}

impl RetainedStore {
    /// Declares the backing exchange and queue in `vhost` (durable: journaled when the
    /// broker has a store) and loads what they hold. `holder` must be an id no consumer
    /// uses (`Broker::next_id`). Returns how many retained messages were loaded. A second
    /// call does nothing.
    pub fn open(&self, vhost: &Vhost, holder: u64) -> Result<usize, CoreError> {
        let mut inner = lock(&self.inner);
        if inner.backing.is_some() {
            return Ok(0);
        }
        vhost.declare_exchange(
            RETAINED_EXCHANGE,
            ExchangeKind::Fanout,
            ExchangeOptions::default(),
            false,
        )?;
        let options = QueueOptions {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let (queue, _) = vhost.declare_queue(RETAINED_QUEUE, options, false, 0)?;
        vhost.bind_queue(RETAINED_QUEUE, RETAINED_EXCHANGE, "", FieldTable::new(), 0)?;
        inner.backing = Some(HeldQueue {
            vhost: vhost.clone(),
            queue: queue.clone(),
            holder,
        });
        let mut topic = String::new();
        while let Some((d, _)) = queue.get(AckMode::Manual, holder) {
            mapping::topic_name(&d.message.routing_key, &mut topic);
            if d.message.body.is_empty() {
                let _ = queue.discard(&[d.tag]);
                continue;
            }
            // Queue order is publish order: a later copy of a topic replaces an earlier one.
            inner.insert(topic.as_str().into(), d.message, Some(d.tag));
        }
        Ok(inner.by_topic.len())
    }

    /// Stores, replaces or (empty body) clears the retained message of `topic`.
    pub fn retain(
        &self,
        topic: &ByteString,
        msg: &Arc<Message>,
        count_max: usize,
        bytes_max: u64,
    ) -> RetainOutcome {
        let mut inner = lock(&self.inner);
        let size = msg.body.len() as u64;
        if size == 0 {
            inner.remove(topic);
            return RetainOutcome::Done(None);
        }
        let old_size = inner.by_topic.get(topic).map(|k| k.msg.body.len() as u64);
        let count_after = inner.by_topic.len() + usize::from(old_size.is_none());
        let bytes_after = inner.bytes - old_size.unwrap_or(0) + size;
        if count_after > count_max || bytes_after > bytes_max {
            return RetainOutcome::Refused;
        }
        let Some(b) = &inner.backing else {
            inner.insert(topic.clone(), msg.clone(), None);
            return RetainOutcome::Done(None);
        };
        // Every retained message is kept, whatever its QoS (as Mosquitto does).
        let mut copy = Message::clone(msg);
        copy.exchange = RETAINED_EXCHANGE.into();
        copy.properties.persistent = true;
        let copy = Arc::new(copy);
        let (tag, ticket) = match b.publish_and_hold(&copy) {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(error = %e, "MQTT retained message not stored");
                return RetainOutcome::Refused;
            }
        };
        if tag.is_none() {
            tracing::warn!("MQTT retained message lost its backing queue; kept in memory only");
        }
        inner.insert(topic.clone(), copy, tag);
        RetainOutcome::Done(ticket)
    }

    /// The retained messages whose topic matches `filter` (at most `max`); expired ones are
    /// dropped on the way.
    pub fn matching(&self, filter: &str, max: usize, now_ms: u64) -> Vec<Arc<Message>> {
        let mut inner = lock(&self.inner);
        let expired: Vec<ByteString> = inner
            .by_topic
            .iter()
            .filter(|(_, k)| is_expired(&k.msg, now_ms))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &expired {
            inner.remove(t);
        }
        inner
            .by_topic
            .iter()
            .filter(|(t, _)| filter_matches(filter, t))
            .take(max)
            .map(|(_, k)| k.msg.clone())
            .collect()
    }

    /// How many retained messages are stored.
    pub fn len(&self) -> usize {
        lock(&self.inner).by_topic.len()
    }

    /// True when no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn is_expired(m: &Message, now_ms: u64) -> bool {
    match (m.properties.expiration_ms, m.properties.timestamp_ms) {
        (Some(ttl), Some(ts)) => now_ms.saturating_sub(ts) >= ttl,
        _ => false,
    }
}
