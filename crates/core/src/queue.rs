//! A queue: ready messages, competing consumers, unacknowledged deliveries.
//!
//! All state sits behind one short `Mutex` per queue; nothing awaits while holding it.
//! Work that touches *other* queues (dead-lettering, waking queues that wait on a shared
//! credit gate, auto-deletion through the vhost) is collected in [`Effects`] while locked
//! and carried out after the lock is released, so queue locks never nest.
//!
//! # Invariants
//! - `ready[level]` is ordered by `seq`; requeued messages go back to their place.
//! - `ready_len`/`ready_bytes` equal the count and body bytes of all `ready` entries, paged
//!   or not; `resident` counts the body bytes of those in memory.
//! - A lane's paged entries are all newer than its entries in memory, and a lane with
//!   paged entries has at least one in memory (it reads a batch back when its memory part
//!   empties), so the head of every lane is in memory.
//! - Every entry in `unacked` holds one credit of its gate.
//! - After any public operation returns, either no consumer has credit or nothing is ready,
//!   or (with selectors) no consumer with credit selects one of the first
//!   `selector_scan_max` ready entries in memory.
//! - `selective` is the number of consumers with a selector.
//!
//! # Selectors
//! While no consumer has a selector, dispatch takes the head of the highest non-empty lane
//! (the fast path). Otherwise it scans the entries in memory, highest lane first and
//! oldest first, and gives each to the first consumer in the usual order (priority,
//! round-robin, exclusivity) that has credit and selects it; entries nobody selects stay in
//! place for later consumers. Only the memory part of a lane is scanned: a paged entry is
//! seen by a selective consumer once it is read back, which happens when the entries
//! before it have been consumed. So a backlog of entries no consumer selects that exceeds
//! the memory budget (or the scan bound) hides newer matching messages until it drains,
//! as ActiveMQ's paging cursor does.
//!
//! # Message groups
//! Once a message with a `JMSXGroupID` header is ready, `groups` exists and dispatch
//! takes the scanning path for good: a consumer selects an entry only if the entry's group
//! is bound to nobody or to it (`groups.rs`). Queues whose messages never name a group
//! keep the fast path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytestring::ByteString;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::clock::Clock;
use crate::consumer::{
    AckMode, ConsumerHandle, ConsumerSpec, CreditGate, Delivery, Event, Exclusivity, Sink,
};
use crate::durable::{codec, Durable, Meta};
use crate::error::CoreError;
use crate::groups::{group_of, marked_first, Groups};
use crate::idmap::IdMap;
use crate::message::{DeathReason, FieldTable, Message};
use crate::paging::{Pager, Spill};
use crate::queue_args::{Overflow, QueueArgs};
use crate::selector::Selector;
use crate::vhost::VhostInner;

/// Declared properties of a queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueOptions {
    /// Survives a broker restart (once a store is attached).
    pub durable: bool,
    /// Owned by the declaring connection and deleted with it.
    pub exclusive: bool,
    /// Deleted when its last consumer goes away.
    pub auto_delete: bool,
    /// Raw arguments as declared.
    pub arguments: FieldTable,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        }
    }
}

/// Counts reported by declare and the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready messages.
    pub messages: u64,
    /// Body bytes of ready messages.
    pub message_bytes: u64,
    /// Delivered, not yet acknowledged.
    pub unacked: u64,
    /// Registered consumers.
    pub consumers: u32,
}

/// What happened to a published message at one queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored (and possibly delivered at once).
    Accepted,
    /// Refused by a full `reject-publish` queue.
    Rejected,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    msg: Arc<Message>,
    delivery_count: u32,
    expires_at_ms: Option<u64>,
    /// The message's persistent id when this queue journals it; 0 otherwise.
    pid: u64,
    /// Restored from the journal at start: it may have been delivered before the restart.
    recovered: bool,
}

#[derive(Debug)]
struct Unacked {
    entry: Entry,
    consumer_id: u64,
    gate: Arc<CreditGate>,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    tag: ByteString,
    ack_mode: AckMode,
    gate: Arc<CreditGate>,
    priority: i32,
    exclusive: Exclusivity,
    sink: Sink,
    selector: Option<Arc<Selector>>,
}

impl Slot {
    /// True when this consumer takes `e`.
    fn selects(&self, e: &Entry) -> bool {
        self.selector
            .as_ref()
            .is_none_or(|s| s.matches(&e.msg, e.delivery_count))
    }
}

/// One priority level's ready messages: the oldest in memory, newer ones possibly paged.
#[derive(Debug, Default)]
struct Lane {
    mem: VecDeque<Entry>,
    /// Created on first use; see the module invariants.
    spill: Option<Spill>,
}

impl Lane {
    fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    fn front(&self) -> Option<&Entry> {
        self.mem.front()
    }

    fn is_paging(&self) -> bool {
        self.spill.as_ref().is_some_and(|s| !s.is_empty())
    }
}

#[derive(Debug)]
struct State {
    ready: Vec<Lane>,
    ready_len: u64,
    ready_bytes: u64,
    /// Body bytes of ready entries held in memory (not paged).
    resident: u64,
    unacked: IdMap<u64, Unacked>,
    /// Sorted by priority, highest first; insertion order within a priority.
    consumers: Vec<Slot>,
    /// Consumers with a selector.
    selective: usize,
    /// Message groups; made when the first message with a group is ready.
    groups: Option<Box<Groups>>,
    rr: usize,
    next_seq: u64,
    /// Delivery tags are fresh for every delivery, so a stale ack (from a consumer that is
    /// gone) can never settle a later redelivery of the same message.
    next_tag: u64,
    had_consumers: bool,
    last_used_ms: u64,
    deleted: bool,
}

/// Side effects on other objects, carried out after the queue lock is released.
#[derive(Default)]
pub(crate) struct Effects {
    dead: Vec<(Arc<Message>, DeathReason)>,
    kicks: Vec<Weak<Queue>>,
    delete_self: bool,
    /// Journaled messages that left the queue; one settle record after dead-lettering
    /// (so a crash in between duplicates a dead message rather than losing it).
    settled: SmallVec<[u64; 8]>,
    /// Journaled messages that a consumer acknowledged (or took without acks): in the same
    /// record, but they may confirm their publish early (see `durable`).
    consumed: SmallVec<[u64; 8]>,
}

impl Effects {
    /// `e` leaves the queue for good, but not to a consumer.
    fn settle(&mut self, e: &Entry) {
        if e.pid != 0 {
            self.settled.push(e.pid);
        }
    }

    /// `e` leaves the queue for good: a consumer has it.
    fn consume(&mut self, e: &Entry) {
        if e.pid != 0 {
            self.consumed.push(e.pid);
        }
    }

    /// `e` leaves the queue for good, to the dead-letter exchange.
    fn die(&mut self, e: Entry, reason: DeathReason) {
        self.settle(&e);
        self.dead.push((e.msg, reason));
    }
}

/// A queue. Shared as `Arc<Queue>` by the vhost's topology, bindings and deliveries.
#[derive(Debug)]
pub struct Queue {
    name: ByteString,
    options: QueueOptions,
    args: QueueArgs,
    /// `x-expires` in milliseconds, 0 for none; starts as the argument and changes with
    /// [`Queue::set_expires`] (an MQTT session's expiry interval, renewed by each
    /// connection).
    expires_ms: AtomicU64,
    /// The owning connection of an exclusive queue.
    owner: Option<u64>,
    vhost: Weak<VhostInner>,
    me: Weak<Queue>,
    clock: Arc<dyn Clock>,
    consumers_max: usize,
    /// Entries examined per dispatch pass while consumers have selectors.
    selector_scan_max: usize,
    /// `CoreLimits::message_groups_max`.
    groups_max: usize,
    /// The journal, for a durable queue of a broker with a store.
    journal: Option<Journal>,
    /// Where ready messages beyond the memory budget go (a broker with a store).
    pager: Option<Arc<Pager>>,
    state: Mutex<State>,
}

/// A journaled queue's handle on the persister, and its names for settle records.
#[derive(Debug)]
struct Journal {
    durable: Arc<Durable>,
    vhost: ByteString,
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// What a queue gets from the vhost that makes it.
pub(crate) struct Home {
    pub vhost: Weak<VhostInner>,
    pub clock: Arc<dyn Clock>,
    pub consumers_max: usize,
    /// `CoreLimits::selector_scan_max`.
    pub selector_scan_max: usize,
    /// `CoreLimits::message_groups_max`.
    pub groups_max: usize,
    /// The persister and the vhost's name, if this queue is journaled.
    pub journal: Option<(Arc<Durable>, ByteString)>,
    /// Paging, for a broker with a store.
    pub pager: Option<Arc<Pager>>,
}

impl Queue {
    pub(crate) fn new(
        name: ByteString,
        options: QueueOptions,
        args: QueueArgs,
        owner: Option<u64>,
        home: Home,
    ) -> Arc<Self> {
        let Home {
            vhost,
            clock,
            consumers_max,
            selector_scan_max,
            groups_max,
            journal,
            pager,
        } = home;
        let levels = args.max_priority.map_or(1, |p| p as usize + 1);
        let now = clock.now_ms();
        Arc::new_cyclic(|me| Queue {
            name,
            options,
            expires_ms: AtomicU64::new(args.expires_ms.unwrap_or(0)),
            args,
            owner,
            vhost,
            me: me.clone(),
            clock,
            consumers_max,
            selector_scan_max: selector_scan_max.max(1),
            groups_max,
            journal: journal.map(|(durable, vhost)| Journal { durable, vhost }),
            pager,
            state: Mutex::new(State {
                ready: (0..levels).map(|_| Lane::default()).collect(),
                ready_len: 0,
                ready_bytes: 0,
                resident: 0,
                unacked: IdMap::default(),
                consumers: Vec::new(),
                selective: 0,
                groups: None,
                rr: 0,
                next_seq: 1,
                next_tag: 1,
                had_consumers: false,
                last_used_ms: now,
                deleted: false,
            }),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &ByteString {
        &self.name
    }

    /// Declared options.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Parsed arguments (as declared: see [`Queue::expires`] for the current expiry).
    pub fn args(&self) -> &QueueArgs {
        &self.args
    }

    /// How long the queue may stay unused before it is deleted (`x-expires`, or what
    /// [`Queue::set_expires`] set since), in milliseconds.
    pub fn expires(&self) -> Option<u64> {
        Some(self.expires_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// Changes how long the queue may stay unused before it is deleted (`None`: never);
    /// journaled for a durable queue, so that a restart keeps it. The time counts from
    /// the queue's last use, as for `x-expires`.
    pub fn set_expires(&self, expires_ms: Option<u64>) {
        let ms = expires_ms.unwrap_or(0);
        if self.expires_ms.swap(ms, Ordering::Relaxed) == ms {
            return;
        }
        if let Some(j) = &self.journal {
            let mut enc = codec::Enc::with_capacity(32 + self.name.len());
            enc.str(&j.vhost).str(&self.name).opt_u64(expires_ms);
            j.durable.submit(
                codec::kind::QUEUE_EXPIRES,
                enc.finish(),
                Meta::Object {
                    vhost: j.vhost.clone(),
                    name: self.name.clone(),
                },
            );
        }
    }

    /// The connection that owns this exclusive queue.
    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    /// A look at the ready messages without taking them (a JMS QueueBrowser): at most
    /// `max`, in the order consumers would get them (highest priority first), those that
    /// `selector` selects, with the times each was delivered before. Expired ones are left
    /// out; paged-out messages (beyond the queue's memory budget) are not read back, so a
    /// browse sees the in-memory head of a long queue, and at most `selector_scan_max`
    /// messages are examined (the queue lock is held meanwhile). Unacknowledged messages
    /// are not ready and not shown.
    pub fn browse(&self, max: usize, selector: Option<&Selector>) -> Vec<(Arc<Message>, u32)> {
        let now = self.clock.now_ms();
        let st = self.state.lock();
        st.ready
            .iter()
            .rev()
            .flat_map(|lane| lane.mem.iter())
            .take(self.selector_scan_max.max(max))
            .filter(|e| !is_expired(e, now))
            .filter(|e| selector.is_none_or(|s| s.matches(&e.msg, e.delivery_count)))
            .take(max)
            .map(|e| (e.msg.clone(), e.delivery_count))
            .collect()
    }

    /// Current counts.
    pub fn stats(&self) -> QueueStats {
        let st = self.state.lock();
        QueueStats {
            messages: st.ready_len,
            message_bytes: st.ready_bytes,
            unacked: st.unacked.len() as u64,
            consumers: st.consumers.len() as u32,
        }
    }

    /// The consumers, in dispatch order: (id, tag, priority, manual ack).
    pub fn consumers(&self) -> Vec<(u64, ByteString, i32, bool)> {
        let st = self.state.lock();
        st.consumers
            .iter()
            .map(|c| {
                (
                    c.id,
                    c.tag.clone(),
                    c.priority,
                    c.ack_mode == AckMode::Manual,
                )
            })
            .collect()
    }

    /// True if the queue journals the persistent messages it holds.
    pub(crate) fn is_journaled(&self) -> bool {
        self.journal.is_some()
    }

    /// Whether the queue was deleted (a handle may outlive deletion).
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    fn arc(&self) -> Arc<Queue> {
        self.me
            .upgrade()
            .expect("a queue method runs through an Arc")
    }

    /// Marks the queue used now (for `x-expires`).
    pub(crate) fn touch(&self) {
        self.state.lock().last_used_ms = self.clock.now_ms();
    }

    /// Adds a message; delivers it at once if a consumer has credit.
    pub fn enqueue(&self, msg: Arc<Message>) -> Enqueued {
        self.enqueue_journaled(msg, 0)
    }

    /// Adds a message that the journal holds under `pid` (0: not journaled here).
    pub(crate) fn enqueue_journaled(&self, msg: Arc<Message>, pid: u64) -> Enqueued {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        let outcome = {
            let mut st = self.state.lock();
            if st.deleted {
                // Routed here just before the queue went: the journal must not keep the
                // message on its account.
                if pid != 0 {
                    fx.settled.push(pid);
                }
                drop(st);
                self.finish(fx);
                return Enqueued::Accepted;
            }
            let size = msg.size_bytes();
            let full = self.args.max_length.is_some_and(|max| st.ready_len >= max)
                || self
                    .args
                    .max_length_bytes
                    .is_some_and(|max| st.ready_bytes + size > max);
            let level = self.level_of(&msg);
            if full && self.args.overflow != Overflow::DropHead {
                if pid != 0 {
                    fx.settled.push(pid);
                }
                if self.args.overflow == Overflow::RejectPublishDlx {
                    fx.dead.push((msg, DeathReason::MaxLen));
                }
                Enqueued::Rejected
            } else if self.paging_refuses(&st, level, size) {
                // Memory holds all it may of what the disk refused (see `paging.rs`).
                if pid != 0 {
                    fx.settled.push(pid);
                }
                Enqueued::Rejected
            } else {
                let ttl = match (self.args.message_ttl_ms, msg.properties.expiration_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let seq = st.next_seq;
                st.next_seq += 1;
                let entry = Entry {
                    seq,
                    msg,
                    delivery_count: 0,
                    expires_at_ms: ttl.map(|t| now.saturating_add(t)),
                    pid,
                    recovered: false,
                };
                if ttl == Some(0) && st.ready[level].is_paging() {
                    // Older messages wait ahead of it: it cannot be delivered now.
                    fx.die(entry, DeathReason::Expired);
                } else {
                    self.push_ready(&mut st, level, entry);
                    self.dispatch(&mut st, now, &mut fx);
                }
                // A zero TTL means "now or never" (RabbitMQ's replacement for `immediate`):
                // left undelivered, the message expires at once rather than a tick later.
                if ttl == Some(0) && st.ready[level].mem.back().is_some_and(|e| e.seq == seq) {
                    let e = st.ready[level].mem.pop_back().expect("checked above");
                    self.forget(&mut st, &e);
                    fx.die(e, DeathReason::Expired);
                }
                self.drop_head_over_limit(&mut st, &mut fx);
                Enqueued::Accepted
            }
        };
        self.finish(fx);
        outcome
    }

    fn level_of(&self, msg: &Message) -> usize {
        match self.args.max_priority {
            None => 0,
            Some(max) => msg.properties.priority.unwrap_or(0).min(max) as usize,
        }
    }

    fn drop_head_over_limit(&self, st: &mut State, fx: &mut Effects) {
        if self.args.overflow != Overflow::DropHead {
            return;
        }
        while self.args.max_length.is_some_and(|max| st.ready_len > max)
            || self
                .args
                .max_length_bytes
                .is_some_and(|max| st.ready_bytes > max)
        {
            // The oldest message of the lowest priority goes first.
            let Some(level) = st.ready.iter().position(|l| !l.is_empty()) else {
                break;
            };
            let e = self.pop(st, level);
            fx.die(e, DeathReason::MaxLen);
        }
    }

    /// Registers a consumer. `owner` is the connection id, checked against exclusivity.
    pub fn consume(
        &self,
        spec: ConsumerSpec,
        owner: u64,
        id: u64,
    ) -> Result<ConsumerHandle, CoreError> {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        let handle = {
            let mut st = self.state.lock();
            if st.deleted {
                return Err(CoreError::NotFound(format!(
                    "no queue '{}' in vhost",
                    self.name
                )));
            }
            if self.owner.is_some_and(|o| o != owner) {
                return Err(CoreError::ResourceLocked(format!(
                    "cannot obtain exclusive access to locked queue '{}'",
                    self.name
                )));
            }
            if st
                .consumers
                .iter()
                .any(|c| c.exclusive == Exclusivity::Sole)
                || (spec.exclusive == Exclusivity::Sole && !st.consumers.is_empty())
            {
                return Err(CoreError::AccessRefused(format!(
                    "queue '{}' in vhost has an exclusive consumer",
                    self.name
                )));
            }
            if st.consumers.len() >= self.consumers_max {
                return Err(CoreError::ResourceLimit(format!(
                    "queue '{}' has too many consumers",
                    self.name
                )));
            }
            // A single active consumer stays active until it goes, whatever the priority
            // of newcomers: the oldest consumer is first.
            let pos = if self.args.single_active_consumer {
                st.consumers.len()
            } else {
                st.consumers
                    .iter()
                    .position(|c| c.priority < spec.priority)
                    .unwrap_or(st.consumers.len())
            };
            let handle = ConsumerHandle {
                queue: self.arc(),
                id,
                gate: spec.gate.clone(),
                auto_ack: spec.ack_mode == AckMode::Auto,
            };
            st.consumers.insert(
                pos,
                Slot {
                    id,
                    tag: spec.tag,
                    ack_mode: spec.ack_mode,
                    gate: spec.gate,
                    priority: spec.priority,
                    exclusive: spec.exclusive,
                    sink: spec.sink,
                    selector: spec.selector,
                },
            );
            st.selective = st.consumers.iter().filter(|c| c.selector.is_some()).count();
            st.had_consumers = true;
            st.last_used_ms = now;
            self.dispatch(&mut st, now, &mut fx);
            handle
        };
        self.finish(fx);
        Ok(handle)
    }

    /// Removes a consumer; with `requeue_unacked` its unacknowledged messages go back.
    pub(crate) fn remove_consumer(&self, id: u64, requeue_unacked: bool) {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            if let Some(pos) = st.consumers.iter().position(|c| c.id == id) {
                remove_slot(&mut st, pos);
                st.last_used_ms = now;
            }
            if requeue_unacked {
                let tags: Vec<u64> = st
                    .unacked
                    .iter()
                    .filter(|(_, u)| u.consumer_id == id)
                    .map(|(t, _)| *t)
                    .collect();
                for tag in tags {
                    if let Some(u) = st.unacked.remove(&tag) {
                        fx.kicks.extend(u.gate.release(1));
                        self.requeue(&mut st, u.entry, &mut fx);
                    }
                }
            }
            if st.consumers.is_empty()
                && st.had_consumers
                && self.options.auto_delete
                && !st.deleted
            {
                fx.delete_self = true;
            }
            self.dispatch(&mut st, now, &mut fx);
        }
        self.finish(fx);
    }

    /// Acknowledges delivered messages by tag: a consumer has them. Unknown tags are an
    /// error (after the known ones are settled), as RabbitMQ treats them; once the queue is
    /// deleted, every tag is accepted (its deliveries are gone).
    pub fn ack(&self, tags: &[u64]) -> Result<(), CoreError> {
        self.settle_tags(tags, Settle::Ack)
    }

    /// Settles deliveries that the broker itself took and now lets go of, not a
    /// consumer's acknowledgement: state a protocol keeps in a queue, or a poison message
    /// it has moved elsewhere. Like [`Queue::ack`], except that a persistent message
    /// settled this way is confirmed to its producer only once its record is synced.
    pub fn discard(&self, tags: &[u64]) -> Result<(), CoreError> {
        self.settle_tags(tags, Settle::Discard)
    }

    /// Negatively acknowledges: requeue, or dead-letter as `rejected`.
    pub fn nack(&self, tags: &[u64], requeue: bool) -> Result<(), CoreError> {
        self.settle_tags(
            tags,
            if requeue {
                Settle::Requeue
            } else {
                Settle::Reject
            },
        )
    }

    /// Returns an entry to `ready`, or dead-letters it past the delivery limit.
    fn requeue(&self, st: &mut State, e: Entry, fx: &mut Effects) {
        if st.deleted {
            return;
        }
        if self
            .args
            .delivery_limit
            .is_some_and(|limit| e.delivery_count > limit)
        {
            fx.die(e, DeathReason::DeliveryLimit);
            return;
        }
        let level = self.level_of(&e.msg);
        self.remember(st, &e);
        // Paged entries are newer than any delivered one: the place is in memory.
        let lane = &mut st.ready[level].mem;
        let at = lane.partition_point(|x| x.seq < e.seq);
        lane.insert(at, e);
    }

    /// Delivers ready messages while consumers have credit.
    fn dispatch(&self, st: &mut State, now: u64, fx: &mut Effects) {
        if st.selective > 0 || st.groups.is_some() {
            self.dispatch_selective(st, now, fx);
            return;
        }
        while st.ready_len > 0 && !st.consumers.is_empty() {
            let Some(level) = st.ready.iter().rposition(|l| !l.is_empty()) else {
                break;
            };
            if st.ready[level].front().is_some_and(|e| is_expired(e, now)) {
                let e = self.pop(st, level);
                fx.die(e, DeathReason::Expired);
                continue;
            }
            let Some(ci) = self.pick_consumer(&st.consumers, &mut st.rr, None, None) else {
                break;
            };
            let e = self.pop(st, level);
            self.deliver(st, ci, level, e, fx);
        }
    }

    /// Dispatch while some consumer has a selector: see the module docs.
    fn dispatch_selective(&self, st: &mut State, now: u64, fx: &mut Effects) {
        let mut scanned = 0;
        for level in (0..st.ready.len()).rev() {
            let mut i = 0;
            while i < st.ready[level].mem.len() {
                if scanned >= self.selector_scan_max || !self.any_credit(st) {
                    return;
                }
                if is_expired(&st.ready[level].mem[i], now) {
                    let e = self.take(st, level, i);
                    fx.die(e, DeathReason::Expired);
                    continue;
                }
                let State {
                    ready,
                    consumers,
                    rr,
                    groups,
                    ..
                } = &mut *st;
                let entry = &ready[level].mem[i];
                let group = groups.as_ref().and_then(|_| group_of(&entry.msg));
                let owner = group.and_then(|(g, _)| groups.as_ref()?.owner(g));
                match self.pick_consumer(consumers, rr, Some(entry), owner) {
                    Some(ci) => {
                        let mut e = self.take(st, level, i);
                        if let (Some(groups), Some((g, closes))) =
                            (st.groups.as_mut(), group_of(&e.msg))
                        {
                            if groups.deliver(g, st.consumers[ci].id, closes) {
                                e.msg = Arc::new(marked_first(&e.msg));
                            }
                        }
                        self.deliver(st, ci, level, e, fx);
                    }
                    None => {
                        i += 1;
                        scanned += 1;
                    }
                }
            }
        }
    }

    /// True when some consumer has credit; otherwise the queue waits on every gate, so that
    /// credit coming back on any of them runs dispatch again.
    fn any_credit(&self, st: &State) -> bool {
        if st.consumers.iter().any(|c| c.gate.has_credit()) {
            return true;
        }
        let me = self.arc();
        for c in &st.consumers {
            c.gate.wait(&me);
        }
        // Re-check after registering so a concurrent release is not missed.
        st.consumers.iter().any(|c| c.gate.has_credit())
    }

    /// Sends `e`, taken from `level`, to consumer `ci` (whose credit is already taken).
    fn deliver(&self, st: &mut State, ci: usize, level: usize, mut e: Entry, fx: &mut Effects) {
        let tag = st.next_tag;
        st.next_tag += 1;
        let slot = &st.consumers[ci];
        let delivery = Delivery {
            queue: self.arc(),
            consumer_id: slot.id,
            tag,
            message: e.msg.clone(),
            redelivered: e.delivery_count > 0 || e.recovered,
            delivery_count: e.delivery_count,
            persistent_id: e.pid,
        };
        match slot.sink.send(Event::Deliver(delivery)) {
            Ok(()) => {
                if slot.ack_mode == AckMode::Manual {
                    e.delivery_count = e.delivery_count.saturating_add(1);
                    let unacked = Unacked {
                        entry: e,
                        consumer_id: slot.id,
                        gate: slot.gate.clone(),
                    };
                    st.unacked.insert(tag, unacked);
                } else {
                    fx.consume(&e);
                }
            }
            Err(_) => {
                // The connection is gone but has not dropped its handle yet: put the
                // message back in its place and stop serving that consumer.
                let dead = remove_slot(st, ci);
                fx.kicks.extend(dead.gate.release(1));
                self.remember(st, &e);
                let lane = &mut st.ready[level].mem;
                let at = lane.partition_point(|x| x.seq < e.seq);
                lane.insert(at, e);
            }
        }
    }

    /// The next consumer with credit (that selects `entry`, when given, and is `owner`,
    /// the consumer its group is bound to, if any): highest priority first, round-robin
    /// within it; with single-active-consumer only the oldest consumer is eligible, and
    /// with failover exclusivity only the oldest exclusive one.
    fn pick_consumer(
        &self,
        consumers: &[Slot],
        rr: &mut usize,
        entry: Option<&Entry>,
        owner: Option<u64>,
    ) -> Option<usize> {
        // Made only when a gate has to remember this queue: an upgrade is two contended
        // atomic operations, and most picks find credit at once.
        let me = || self.arc();
        let selects =
            |c: &Slot| entry.is_none_or(|e| c.selects(e)) && owner.is_none_or(|o| o == c.id);
        let active = if self.args.single_active_consumer {
            Some(0)
        } else {
            consumers
                .iter()
                .position(|c| c.exclusive == Exclusivity::Failover)
        };
        if let Some(i) = active {
            let slot = consumers.get(i)?;
            if !selects(slot) {
                return None;
            }
            let gate = &slot.gate;
            if gate.try_acquire() {
                return Some(i);
            }
            gate.wait(&me());
            return gate.try_acquire().then_some(i);
        }
        let n = consumers.len();
        let mut start = 0;
        while start < n {
            let prio = consumers[start].priority;
            let end = consumers[start..]
                .iter()
                .position(|c| c.priority != prio)
                .map_or(n, |p| start + p);
            let len = end - start;
            for k in 0..len {
                let i = start + (*rr + k) % len;
                if !selects(&consumers[i]) {
                    continue;
                }
                let gate = &consumers[i].gate;
                if gate.try_acquire() {
                    *rr = (i - start + 1) % len;
                    return Some(i);
                }
                gate.wait(&me());
                // Re-check after registering so a concurrent release is not missed.
                if gate.try_acquire() {
                    *rr = (i - start + 1) % len;
                    return Some(i);
                }
            }
            start = end;
        }
        None
    }

    /// Re-runs dispatch (credit came back on a gate this queue waited on).
    pub(crate) fn kick(&self) {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            self.dispatch(&mut st, now, &mut fx);
        }
        self.finish(fx);
    }

    /// Takes the next ready message outside of any consumer (AMQP `basic.get`). Expired
    /// messages at the head are dead-lettered on the way. With [`AckMode::Manual`] the
    /// delivery waits for [`Queue::ack`] / [`Queue::nack`] under its tag like a consumer's
    /// (`holder` is recorded as its consumer id, so use one no consumer has, such as 0);
    /// with [`AckMode::Auto`] it is settled at once. Returns the delivery and the number of
    /// messages still ready; `None` when the queue is empty or deleted.
    pub fn get(&self, ack_mode: AckMode, holder: u64) -> Option<(Delivery, u64)> {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        let got = {
            let mut st = self.state.lock();
            st.last_used_ms = now;
            let mut got = None;
            while !st.deleted {
                let Some(level) = st.ready.iter().rposition(|l| !l.is_empty()) else {
                    break;
                };
                let mut e = self.pop(&mut st, level);
                if is_expired(&e, now) {
                    fx.die(e, DeathReason::Expired);
                    continue;
                }
                let tag = st.next_tag;
                st.next_tag += 1;
                let delivery = Delivery {
                    queue: self.arc(),
                    consumer_id: holder,
                    tag,
                    message: e.msg.clone(),
                    redelivered: e.delivery_count > 0 || e.recovered,
                    delivery_count: e.delivery_count,
                    persistent_id: e.pid,
                };
                if ack_mode == AckMode::Manual {
                    e.delivery_count = e.delivery_count.saturating_add(1);
                    // A gate of its own, so that the invariant "every unacked entry holds
                    // one credit of its gate" holds without touching any consumer's credit.
                    let gate = CreditGate::new(1);
                    let _ = gate.try_acquire();
                    st.unacked.insert(
                        tag,
                        Unacked {
                            entry: e,
                            consumer_id: holder,
                            gate,
                        },
                    );
                } else {
                    fx.consume(&e);
                }
                got = Some((delivery, st.ready_len));
                break;
            }
            got
        };
        self.finish(fx);
        got
    }

    /// Removes every ready message; returns how many.
    pub fn purge(&self) -> u64 {
        let mut fx = Effects::default();
        let n = {
            let mut st = self.state.lock();
            let n = st.ready_len;
            self.drop_ready(&mut st, &mut fx);
            n
        };
        self.finish(fx);
        n
    }

    /// Marks the queue deleted, cancels its consumers and drops its messages; returns the
    /// number of ready messages it had.
    pub(crate) fn mark_deleted(&self, reason: &str) -> u64 {
        let mut kicks = Vec::new();
        let mut fx = Effects::default();
        let n = {
            let mut st = self.state.lock();
            if st.deleted {
                return 0;
            }
            st.deleted = true;
            let n = st.ready_len;
            for c in st.consumers.drain(..) {
                let _ = c.sink.send(Event::Cancelled {
                    consumer_id: c.id,
                    reason: reason.to_string(),
                });
            }
            self.drop_ready(&mut st, &mut fx);
            // Deliveries still out hold credit on gates that other queues may share
            // (channel-wide prefetch): give it back, or those queues starve.
            for (_, u) in st.unacked.drain() {
                kicks.extend(u.gate.release(1));
                fx.settle(&u.entry);
            }
            n
        };
        self.submit_settled(&fx.consumed, &fx.settled);
        kick_all(kicks);
        n
    }

    /// Periodic work: expire messages at the head, and report whether the queue has been
    /// unused for longer than `x-expires`.
    pub(crate) fn housekeeping(&self) -> bool {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        let expired_queue = {
            let mut st = self.state.lock();
            if st.deleted {
                return false;
            }
            if self.pager.as_ref().is_some_and(|p| p.is_failing()) {
                // Paged entries the disk refused wait in memory: try writing them again.
                for lane in st.ready.iter_mut() {
                    if let Some(spill) = lane.spill.as_mut() {
                        spill.retry_write();
                    }
                }
            }
            for level in 0..st.ready.len() {
                while st.ready[level].front().is_some_and(|e| is_expired(e, now)) {
                    let e = self.pop(&mut st, level);
                    fx.die(e, DeathReason::Expired);
                }
            }
            let ttl = self.expires_ms.load(Ordering::Relaxed);
            ttl > 0 && st.consumers.is_empty() && now.saturating_sub(st.last_used_ms) >= ttl
        };
        self.finish(fx);
        expired_queue
    }

    fn finish(&self, fx: Effects) {
        if fx.dead.is_empty()
            && fx.kicks.is_empty()
            && !fx.delete_self
            && fx.settled.is_empty()
            && fx.consumed.is_empty()
        {
            return;
        }
        let vhost = self.vhost.upgrade();
        if let Some(v) = &vhost {
            if !fx.dead.is_empty() {
                v.dead_letter(self, fx.dead);
            }
        }
        self.submit_settled(&fx.consumed, &fx.settled);
        let me = self.me.as_ptr();
        kick_all(fx.kicks.into_iter().filter(|w| w.as_ptr() != me).collect());
        if fx.delete_self {
            if let Some(v) = vhost {
                crate::vhost::Vhost::from_inner(v).delete_queue_if_same(&self.name, me);
            }
        }
    }
}

impl Queue {
    /// Journals that this queue let go of `consumed` (to consumers) and `settled`
    /// (otherwise), as one record.
    fn submit_settled(&self, consumed: &[u64], settled: &[u64]) {
        let n = consumed.len() + settled.len();
        let (Some(j), false) = (&self.journal, n == 0) else {
            return;
        };
        let mut enc = codec::Enc::with_capacity(16 + j.vhost.len() + self.name.len() + 8 * n);
        enc.str(&j.vhost).str(&self.name).u32(n as u32);
        let mut pids = Vec::with_capacity(n);
        for &pid in consumed.iter().chain(settled) {
            enc.u64(pid);
            pids.push(pid);
        }
        j.durable.submit(
            codec::kind::SETTLE,
            enc.finish(),
            Meta::Settle {
                pids,
                consumed: consumed.len(),
            },
        );
    }

    /// Puts back a message restored from the journal at start (no consumers exist yet).
    pub(crate) fn restore(&self, msg: Arc<Message>, pid: u64, published_ms: u64) {
        let mut st = self.state.lock();
        let ttl = match (self.args.message_ttl_ms, msg.properties.expiration_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        let level = self.level_of(&msg);
        let entry = Entry {
            seq,
            msg,
            delivery_count: 0,
            expires_at_ms: ttl.map(|t| published_ms.saturating_add(t)),
            pid,
            recovered: true,
        };
        self.push_ready(&mut st, level, entry);
    }
}

impl Queue {
    /// Settles deliveries: each tag is acked, requeued or dead-lettered as `rejected`.
    fn settle_tags(&self, tags: &[u64], outcome: Settle) -> Result<(), CoreError> {
        let now = self.clock.now_ms();
        let mut fx = Effects::default();
        let result = {
            let mut st = self.state.lock();
            let mut missing = None;
            for &tag in tags {
                let Some(u) = st.unacked.remove(&tag) else {
                    // A deleted queue dropped its deliveries and their credit; settling
                    // them is harmless, as in RabbitMQ.
                    if !st.deleted {
                        missing = Some(tag);
                    }
                    continue;
                };
                fx.kicks.extend(u.gate.release(1));
                match outcome {
                    Settle::Ack => fx.consume(&u.entry),
                    Settle::Discard => fx.settle(&u.entry),
                    Settle::Requeue => self.requeue(&mut st, u.entry, &mut fx),
                    Settle::Reject => fx.die(u.entry, DeathReason::Rejected),
                }
            }
            self.dispatch(&mut st, now, &mut fx);
            match missing {
                None => Ok(()),
                Some(tag) => Err(CoreError::PreconditionFailed(format!(
                    "unknown delivery tag {tag}"
                ))),
            }
        };
        self.finish(fx);
        result
    }
}

/// Ready-list bookkeeping and paging.
impl Queue {
    /// Counts `e` as ready and in memory.
    fn remember(&self, st: &mut State, e: &Entry) {
        if st.groups.is_none() && group_of(&e.msg).is_some() {
            st.groups = Some(Box::new(Groups::new(self.groups_max)));
        }
        let size = e.msg.size_bytes();
        st.ready_len += 1;
        st.ready_bytes += size;
        st.resident += size;
        if let Some(p) = &self.pager {
            p.add_resident(size);
        }
    }

    /// Stops counting `e`, which left memory and the ready list.
    fn forget(&self, st: &mut State, e: &Entry) {
        let size = e.msg.size_bytes();
        st.ready_len -= 1;
        st.ready_bytes -= size;
        st.resident -= size;
        if let Some(p) = &self.pager {
            p.sub_resident(size);
        }
    }

    /// Whether a new entry of `size` bytes for `level` goes to the lane's spill.
    fn would_page(pager: &Pager, st: &State, level: usize, size: u64) -> bool {
        let lane = &st.ready[level];
        // The head stays in memory, so a lane's first entry is never paged.
        lane.is_paging() || (!lane.is_empty() && pager.should_page(st.resident, size))
    }

    /// Whether a new entry of `size` bytes for `level` must be refused: it would be paged,
    /// and spill writes are failing with memory full of what they could not write.
    fn paging_refuses(&self, st: &State, level: usize, size: u64) -> bool {
        self.pager
            .as_ref()
            .is_some_and(|p| p.refuses(size) && Self::would_page(p, st, level, size))
    }

    /// Whether a message published now would be refused for want of paging (checked
    /// before a publish is journaled, so that the producer gets a clear error).
    pub(crate) fn refuses_paging(&self, msg: &Message) -> bool {
        let st = self.state.lock();
        !st.deleted && self.paging_refuses(&st, self.level_of(msg), msg.size_bytes())
    }

    /// Appends a new entry to its lane: in memory, or paged when the lane already pages or
    /// memory is over budget.
    fn push_ready(&self, st: &mut State, level: usize, e: Entry) {
        if let Some(pager) = &self.pager {
            let size = e.msg.size_bytes();
            // A spill that cannot take the entry is empty (it failed to create its first
            // file; the pager logs it), so keeping it in memory keeps the lane's order.
            if Self::would_page(pager, st, level, size) && self.page_out(st, level, &e).is_ok() {
                st.ready_len += 1;
                st.ready_bytes += size;
                return;
            }
        }
        self.remember(st, &e);
        st.ready[level].mem.push_back(e);
    }

    fn page_out(&self, st: &mut State, level: usize, e: &Entry) -> std::io::Result<()> {
        let pager = self.pager.as_ref().expect("only paging queues page");
        let m = &e.msg;
        let mut enc = codec::Enc::with_capacity(128 + m.routing_key.len() + m.exchange.len());
        enc.u64(e.seq)
            .u32(e.delivery_count)
            .opt_u64(e.expires_at_ms)
            .u64(e.pid)
            .u8(e.recovered as u8)
            .message_head(m);
        let spill = st.ready[level]
            .spill
            .get_or_insert_with(|| Spill::new(pager.clone()));
        spill.push(e.pid, enc.as_slice(), &m.body)
    }

    /// Takes the head of a non-empty lane, reading paged entries back when the memory part
    /// runs empty.
    fn pop(&self, st: &mut State, level: usize) -> Entry {
        self.take(st, level, 0)
    }

    /// Takes entry `i` of a lane's memory part, reading paged entries back when the memory
    /// part runs empty.
    fn take(&self, st: &mut State, level: usize, i: usize) -> Entry {
        let e = st.ready[level]
            .mem
            .remove(i)
            .expect("caller checked the index is in the lane");
        self.forget(st, &e);
        if st.ready[level].mem.is_empty() && st.ready[level].is_paging() {
            self.page_in(st, level);
        }
        e
    }

    /// Reads a batch of paged entries of `level` back into memory.
    fn page_in(&self, st: &mut State, level: usize) {
        let pager = self.pager.as_ref().expect("only paging queues page");
        let budget = pager.room(st.resident);
        let mut lane = std::mem::take(&mut st.ready[level]);
        let spill = lane.spill.as_mut().expect("checked: the lane pages");
        let mut damaged = None;
        let result = spill.pop_batch(budget, |record| {
            if damaged.is_some() {
                return;
            }
            match decode_entry(record) {
                Ok(e) => {
                    let size = e.msg.size_bytes();
                    st.resident += size;
                    pager.add_resident(size);
                    lane.mem.push_back(e);
                }
                Err(err) => damaged = Some(err.to_string()),
            }
        });
        let failure = match (result, damaged) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(0), None) => Some("no record could be read".to_string()),
            (Ok(_), d) => d,
        };
        if let Some(why) = failure {
            // The paged entries are lost to this run. Journaled ones stay unsettled in the
            // journal and come back at the next start.
            let (lost, lost_bytes) = (spill.len() as u64, spill.bytes());
            let _ = spill.clear();
            st.ready_len -= lost;
            st.ready_bytes -= lost_bytes;
            tracing::error!(queue = %self.name, lost, error = %why, "cannot read paged messages back");
        }
        st.ready[level] = lane;
    }

    /// Drops every ready entry, in memory or paged, settling journaled ones.
    fn drop_ready(&self, st: &mut State, fx: &mut Effects) {
        for lane in st.ready.iter_mut() {
            for e in lane.mem.drain(..) {
                fx.settle(&e);
            }
            if let Some(spill) = lane.spill.as_mut() {
                fx.settled.extend(spill.clear());
            }
        }
        if let Some(p) = &self.pager {
            p.sub_resident(st.resident);
        }
        st.resident = 0;
        st.ready_len = 0;
        st.ready_bytes = 0;
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(p) = &self.pager {
            p.sub_resident(self.state.get_mut().resident);
        }
    }
}

/// Reads back an entry written by [`Queue::page_out`].
fn decode_entry(record: bytes::Bytes) -> Result<Entry, codec::Malformed> {
    let mut d = codec::Dec::new(record);
    let seq = d.u64()?;
    let delivery_count = d.u32()?;
    let expires_at_ms = d.opt_u64()?;
    let pid = d.u64()?;
    let recovered = d.bool()?;
    let msg = Arc::new(d.message()?);
    d.end()?;
    Ok(Entry {
        seq,
        msg,
        delivery_count,
        expires_at_ms,
        pid,
        recovered,
    })
}

#[derive(Clone, Copy)]
enum Settle {
    Ack,
    Discard,
    Requeue,
    Reject,
}

fn is_expired(e: &Entry, now: u64) -> bool {
    e.expires_at_ms.is_some_and(|at| now > at)
}

/// Wakes queues that waited on a gate which now has credit.
/// Removes consumer `pos`, keeping the round-robin position and the selector count right.
fn remove_slot(st: &mut State, pos: usize) -> Slot {
    let slot = st.consumers.remove(pos);
    if st.rr > pos {
        st.rr -= 1;
    }
    if slot.selector.is_some() {
        st.selective -= 1;
    }
    if let Some(groups) = st.groups.as_mut() {
        groups.release(slot.id);
    }
    slot
}

pub(crate) fn kick_all(queues: Vec<Weak<Queue>>) {
    for q in queues.into_iter().filter_map(|w| w.upgrade()) {
        q.kick();
    }
}
