//! Durability: the core's side of the journal (`crates/store`).
//!
//! Core operations stay synchronous. Each one that changes durable state (a durable
//! exchange, queue or binding; a persistent message routed to durable queues; the settling
//! of such a message in one queue) hands an [`Op`] to the [`persister`] task over an
//! unbounded channel *before* its effect can be observed by anyone else: a publish is
//! submitted before the message is enqueued, so the ack that a consumer sends for it can
//! only be submitted after. The channel keeps that order, and the persister writes records
//! in channel order, so the journal never holds an ack before the publish it settles.
//!
//! Every op has a sequence number. A producer that needs its publish confirmed at the
//! `synced` watermark gets a [`SyncTicket`] and waits on a [`SyncWaiter`]; sequence numbers
//! are taken from an atomic counter, so they may reach the channel slightly out of order,
//! and the persister reports the highest number below which *every* op is settled: synced,
//! or refused (below).
//!
//! # A full disk
//! The configured free-space floor (`disk_free_min_bytes`) refuses persistent publishes
//! before the journal runs out of space. If it runs out anyway (the floor is 0, or something
//! else ate the space between two checks), the journal refuses the records that found no
//! space ([`StoreError::DiskFull`]) and carries on. The persister hands each batch of ops to
//! the journal as one fenced run ([`Journal::submit_fenced`](ferromq_store::Journal)), so
//! the records of a batch land as a prefix: from the first refused op on, every op of the
//! batch is refused, even if space came back meanwhile. Then, per op:
//! - a **publish** is refused to its producer: its ticket resolves with
//!   [`CoreError::ResourceLimit`] (AMQP basic.nack, a STOMP ERROR instead of the RECEIPT,
//!   an MQTT 5 error reason code or an MQTT 3 disconnect, an OpenWire exception), as the
//!   floor does. The message was already in its queues (ops are submitted before their
//!   effect is visible, and a consumer may hold it already); it stays there, deliverable,
//!   **as a transient message would**: the persister never tracks it, its settlement
//!   releases nothing, and a restart does not bring it back. That keeps "nothing confirmed
//!   is lost" (it was not confirmed) and at-least-once (a producer that republishes after
//!   the nack may cause a duplicate, as with any nack);
//! - a **settlement** (ack, reject, expiry...) has taken effect in memory: the persister
//!   releases the publish records it settles as if its record had landed, so their
//!   segments can still be deleted (which is how acks free space on a full disk), and
//!   writes the settle record again, like a declaration (below), while a publish record it
//!   cancels is on disk. Until one of the two happens, a restart brings those messages
//!   back (at-least-once). At most half of `limits::DURABLE_REWRITES_MAX` settles wait;
//!   beyond that a refused settle is not written again (at-least-once too);
//! - a **declaration, deletion, binding or user change** has taken effect in memory too,
//!   and later records may depend on it (a message naming a queue must follow the queue's
//!   declaration on replay). Its ticket reports the refusal, and the persister keeps the
//!   op and writes it again at the head of every later batch, in order, until it lands;
//!   nothing after it lands before it does, so replay never meets a record before one it
//!   depends on. At most `limits::DURABLE_REWRITES_MAX` wait; beyond that the journal is
//!   treated as failed (below).
//!
//! Any other journal error is fatal for the durable layer: persistent publishes are
//! refused until a restart, and every ticket not yet synced fails.
//!
//! # Confirming a consumed publish early
//! A publish ticket also resolves, before its record is synced, once every durable queue
//! it went to has had it acknowledged by a consumer (or delivered to an auto-ack one): the
//! broker's responsibility for it is over, as with RabbitMQ's confirms. The records are
//! still written and synced as usual, and the settle records follow the publish record in
//! the journal, so a restart that finds the settles finds the publish settled; one that
//! finds neither loses a message that was consumed. Any other way out of a queue
//! (expiry, dead-lettering, overflow, purge, deletion, [`Queue::discard`]) rules the early
//! confirm out for that message: it then waits for the sync. A requeue settles nothing.
//! The persister decides this when it takes the ops from its channel, before the journal
//! has written them, so an ack does not wait behind an fsync in progress. Only a ticket
//! of one publish can resolve this way; [`SyncTicket::max`] and
//! [`Broker::sync_point`](crate::Broker::sync_point) tickets wait for the watermark.
//!
//! [`Queue::discard`]: crate::Queue::discard
//!
//! Memory is bounded by flow control: the bytes of ops submitted but not yet taken by the
//! journal are counted, and [`Durable::has_capacity`]/[`Durable::capacity`] let a protocol
//! stop reading from a producer's socket while that backlog is over its bound (the journal
//! itself bounds what is queued for its writer thread).
//!
//! # What is journaled
//! - exchanges that are durable, queues that are durable and not exclusive, and bindings
//!   whose two ends are both of those (built-in exchanges always exist and are not);
//! - a persistent message routed to at least one such queue: one `PUBLISH` record naming
//!   those queues, written before any of them can deliver it;
//! - each such queue letting go of it (ack, auto-ack delivery, reject, expiry, overflow,
//!   purge, deletion): a `SETTLE` record per operation, written after the dead-letter copy
//!   is published (a crash in between duplicates rather than loses it);
//! - users made at run time (`Broker::put_user`, `delete_user`): a `USER_PUT` record with
//!   the salted hash, never the password, and a `USER_DELETE` tombstone. Configured users
//!   come from the configuration at every start and are not journaled.
//!
//! Recovery keeps message bodies in memory up to the paging budget (`memory_max_bytes`)
//! and lets go of the rest, reading them back from the journal (`Journal::read_back`) as
//! it puts them into their queues, which page them again beyond their budgets; so a restart
//! with a large backlog stays near the budget too.
//!
//! # Release rules
//! The store deletes a segment once nothing in it is live. A message record is released
//! when its last queue settles it; a declaration when it is deleted; a binding when it is
//! unbound or an end is deleted. A record that cancels others (a delete, unbind or settle)
//! stays live while a cancelled record is on disk in another segment
//! ([`Store::protects`](ferromq_store::Store::protects)), or is still live anywhere (a
//! message settled in one of its queues but not yet in all: compaction would copy it out
//! of the settle record's segment and leave the settle behind); targets always precede their
//! tombstone, so these dependencies never form a cycle, and a record that pins an old
//! segment (a long-lived queue declaration) is moved forward by compaction.
//!
//! # Layout
//! - `codec.rs`: record kinds and payload encoding.
//! - `persister.rs`: the task that owns the journal, the LSN of every live record, and the
//!   rules for releasing them.
//! - `refused.rs`: the bounded set of ops the journal refused for lack of space.
//! - `recovery.rs`: rebuilding vhosts from the records on disk at start.

pub(crate) mod codec;
mod persister;
mod recovery;
mod refused;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot, watch, Notify};

pub use persister::Persister;
pub(crate) use recovery::Recovered;
pub use recovery::RecoveryReport;

use crate::error::CoreError;
use ferromq_store::StoreError;

/// How the broker stores durable state.
#[derive(Clone, Debug)]
pub struct DurableConfig {
    /// The journal: directory, segment size, fsync batching.
    pub journal: ferromq_store::JournalConfig,
    /// Bytes of records submitted by the core but not yet taken by the journal, beyond
    /// which producers of persistent messages are paused.
    pub backlog_max_bytes: u64,
    /// Persistent publishes are refused while the journal's file system has less free space
    /// than this; 0 disables the check. Either way, records that find no space are refused
    /// one by one (see "A full disk" above).
    pub disk_free_min_bytes: u64,
    /// How often the persister releases settled records, checks free space and compacts.
    pub tick_ms: u64,
    /// How often sparse segments are compacted; 0 never.
    pub compaction_interval_ms: u64,
    /// Paging of ready messages beyond the memory budget (spill files in `paging.dir`, by
    /// default the journal directory's name with `.paging` appended).
    pub paging: crate::paging::PagingConfig,
}

impl DurableConfig {
    /// Defaults for a journal in `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        let dir: std::path::PathBuf = dir.into();
        let mut paging_dir = dir.clone().into_os_string();
        paging_dir.push(".paging");
        Self {
            paging: crate::paging::PagingConfig::new(paging_dir),
            journal: ferromq_store::JournalConfig::new(dir),
            backlog_max_bytes: crate::limits::DURABLE_BACKLOG_MAX_BYTES_DEFAULT,
            disk_free_min_bytes: crate::limits::DISK_FREE_MIN_BYTES_DEFAULT,
            tick_ms: 1000,
            compaction_interval_ms: 30_000,
        }
    }
}

/// Identifies submitted ops; a [`SyncWaiter`] says when they may be confirmed.
///
/// A ticket waits until every op up to `seq` is settled, and fails if one of the ops it
/// *owns*, `first..=seq`, was refused. A publish's ticket owns its op, and also resolves
/// once that message is consumed (see the module docs); [`SyncTicket::max`] of two owns
/// both (and the ops between, which at worst turns a confirm into a refusal);
/// [`Broker::sync_point`](crate::Broker::sync_point) and [`SyncTicket::behind`] own none.
/// Deliberately not ordered: a publish ticket can resolve before a lower-numbered one, so
/// combine tickets with [`SyncTicket::max`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncTicket {
    first: u64,
    seq: u64,
    /// The ticket of one publish: it also resolves once that message is consumed.
    publish: bool,
}

impl SyncTicket {
    /// A ticket that resolves once every op up to number `seq` is synced; for tests of
    /// protocol state machines.
    pub fn from_seq(seq: u64) -> SyncTicket {
        SyncTicket {
            first: seq,
            seq,
            publish: false,
        }
    }

    pub(crate) fn publish(seq: u64) -> SyncTicket {
        SyncTicket {
            first: seq,
            seq,
            publish: true,
        }
    }

    /// A ticket that waits for everything up to op `seq` and owns none of it.
    pub(crate) fn waiting_for(seq: u64) -> SyncTicket {
        SyncTicket {
            first: seq + 1,
            seq,
            publish: false,
        }
    }

    /// This ticket, resolved only by the watermark: once every op up to it is settled (it
    /// still owns what it owned).
    pub fn watermark(self) -> SyncTicket {
        SyncTicket {
            publish: false,
            ..self
        }
    }

    /// A ticket for both: waits for the later (by the watermark), owns what either owns.
    pub fn max(self, other: SyncTicket) -> SyncTicket {
        if self == other {
            return self;
        }
        SyncTicket {
            first: self.first.min(other.first),
            seq: self.seq.max(other.seq),
            publish: false,
        }
    }

    /// A ticket that resolves when this one's watermark does but owns none of its ops: for
    /// a reply that only keeps its place in line behind another.
    pub fn behind(self) -> SyncTicket {
        SyncTicket::waiting_for(self.seq)
    }

    /// The op sequence number waited for.
    pub fn seq(self) -> u64 {
        self.seq
    }
}

/// What the persister publishes to waiters.
///
/// # Invariants
/// - `consumed` holds only numbers above `synced`, each that of a publish op.
#[derive(Clone, Debug)]
pub(crate) struct SyncState {
    /// Every op with a sequence number up to this one is settled: synced or refused.
    pub synced: u64,
    /// Ops whose records the journal refused for lack of space.
    pub refused: refused::Refused,
    /// Publish ops above `synced` whose message every durable queue has had consumed:
    /// their tickets resolve without waiting for the sync. At most one per publish not yet
    /// synced, which the journal's batch and queue bounds limit.
    pub consumed: BTreeSet<u64>,
    /// The journal failed: ops above `synced` never will be.
    pub failed: Option<Arc<str>>,
}

impl Default for SyncState {
    fn default() -> Self {
        SyncState {
            synced: 0,
            refused: refused::Refused::new(crate::limits::REFUSED_RANGES_MAX),
            consumed: BTreeSet::new(),
            failed: None,
        }
    }
}

impl SyncState {
    fn resolves(&self, t: SyncTicket) -> bool {
        self.synced >= t.seq || (t.publish && self.consumed.contains(&t.seq))
    }

    /// Moves the settled point to `mark`, forgetting the early confirms it now covers.
    pub(crate) fn advance(&mut self, mark: u64) {
        self.synced = mark;
        while self.consumed.first().is_some_and(|&s| s <= mark) {
            self.consumed.pop_first();
        }
    }
}

/// What a refused op's ticket reports.
const REFUSED: &str =
    "the journal's disk is full: the message was not stored; persistent messages are refused until space is freed";

/// Waits for [`SyncTicket`]s. One per connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct SyncWaiter(watch::Receiver<SyncState>);

impl SyncWaiter {
    /// `Some(Ok)` once the ticket is synced, `Some(Err)` if it never will be, `None` while
    /// it is pending.
    pub fn poll(&self, t: SyncTicket) -> Option<Result<(), CoreError>> {
        let s = self.0.borrow();
        if t.publish && s.consumed.contains(&t.seq) {
            return Some(Ok(()));
        }
        if s.synced >= t.seq {
            if s.refused.any_in(t.first, t.seq) {
                return Some(Err(CoreError::ResourceLimit(REFUSED.into())));
            }
            return Some(Ok(()));
        }
        s.failed
            .as_ref()
            .map(|e| Err(CoreError::Storage(format!("journal failed: {e}"))))
    }

    /// Resolves once the ticket is synced, or with the error that means it never will be.
    pub async fn wait(&mut self, t: SyncTicket) -> Result<(), CoreError> {
        let closed = self
            .0
            .wait_for(|s| s.resolves(t) || s.failed.is_some())
            .await
            .is_err();
        match self.poll(t) {
            Some(outcome) => outcome,
            None if closed => Err(CoreError::Storage("journal closed".into())),
            None => Ok(()),
        }
    }

    /// Resolves when the synced point moves (or the journal fails or closes); for a
    /// connection task that waits on several tickets in a `select!`.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// [`SyncWaiter::changed`] of `waiter`, or never when there is none (a broker without
    /// a store): a `select!` branch that works either way.
    pub async fn changed_opt(waiter: &mut Option<SyncWaiter>) {
        match waiter {
            Some(w) => w.changed().await,
            None => std::future::pending().await,
        }
    }
}

/// What a record does to the persister's bookkeeping.
#[derive(Debug)]
pub(crate) enum Meta {
    /// Declares or deletes (by `kind`) an exchange or a queue.
    Object { vhost: ByteString, name: ByteString },
    /// Adds or removes (by `kind`) a binding; the payload names it.
    Binding {
        vhost: ByteString,
        source: ByteString,
        destination: ByteString,
        destination_is_exchange: bool,
    },
    /// A message bound for `queues` durable queues.
    Publish { pid: u64, queues: u32 },
    /// Messages settled in one queue: the first `consumed` of `pids` were acknowledged by
    /// a consumer (or delivered to an auto-ack one), the rest left the queue otherwise.
    Settle { pids: Vec<u64>, consumed: usize },
    /// A settle whose record the journal refused, to be written again: it has been applied
    /// already, and cancels the publish records `targets` (still on disk when it was
    /// refused), which it must outlive once written.
    Resettle { targets: SmallVec<[u64; 4]> },
}

/// One record to write.
#[derive(Debug)]
pub(crate) struct Op {
    pub seq: u64,
    pub kind: u8,
    pub payload: Bytes,
    pub meta: Meta,
}

pub(crate) enum Command {
    Op(Op),
    Close(oneshot::Sender<Result<(), StoreError>>),
}

/// The core's handle on the persister. Shared by every vhost.
#[derive(Debug)]
pub(crate) struct Durable {
    tx: mpsc::UnboundedSender<Command>,
    next_seq: AtomicU64,
    next_pid: AtomicU64,
    backlog_bytes: AtomicU64,
    backlog_max_bytes: u64,
    capacity: Notify,
    synced: watch::Receiver<SyncState>,
    /// Free space is below the floor.
    disk_alarm: AtomicBool,
    /// For statistics only; the persister does all the writing.
    journal: Arc<ferromq_store::Journal>,
    /// Spill files for queues over their memory budget.
    pager: Arc<crate::paging::Pager>,
}

pub(crate) fn persister_parts(
    journal: Arc<ferromq_store::Journal>,
    rx: mpsc::UnboundedReceiver<Command>,
    durable: Arc<Durable>,
    synced_tx: watch::Sender<SyncState>,
    config: DurableConfig,
) -> persister::Parts {
    persister::Parts {
        journal,
        rx,
        durable,
        synced_tx,
        config,
    }
}

impl Durable {
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<Command>,
        synced: watch::Receiver<SyncState>,
        next_pid: u64,
        backlog_max_bytes: u64,
        journal: Arc<ferromq_store::Journal>,
        pager: Arc<crate::paging::Pager>,
    ) -> Self {
        Durable {
            pager,
            tx,
            next_seq: AtomicU64::new(1),
            next_pid: AtomicU64::new(next_pid),
            backlog_bytes: AtomicU64::new(0),
            backlog_max_bytes,
            capacity: Notify::new(),
            synced,
            disk_alarm: AtomicBool::new(false),
            journal,
        }
    }

    /// Paging, shared by every queue of the broker.
    pub(crate) fn pager(&self) -> &Arc<crate::paging::Pager> {
        &self.pager
    }

    /// The journal's counters (fsyncs, segments, live records).
    pub(crate) fn stats(&self) -> ferromq_store::StoreStats {
        use ferromq_store::Store;
        self.journal.stats()
    }

    /// Submits a record; returns its ticket. Never blocks.
    pub(crate) fn submit(&self, kind: u8, payload: Bytes, meta: Meta) -> SyncTicket {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.backlog_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        let ticket = match meta {
            Meta::Publish { .. } => SyncTicket::publish(seq),
            _ => SyncTicket::from_seq(seq),
        };
        let op = Op {
            seq,
            kind,
            payload,
            meta,
        };
        // A closed channel means the broker is shutting down: the op is lost like any
        // other unconfirmed one, and its ticket never resolves as synced.
        let _ = self.tx.send(Command::Op(op));
        ticket
    }

    /// A ticket waiting for the latest op submitted, owning none.
    pub(crate) fn sync_point(&self) -> SyncTicket {
        SyncTicket::waiting_for(self.next_seq.load(Ordering::Relaxed) - 1)
    }

    /// A fresh persistent-message id.
    pub(crate) fn next_pid(&self) -> u64 {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }

    /// Refuses a persistent publish while free disk space is below the floor, or after
    /// the journal failed.
    pub(crate) fn admit(&self) -> Result<(), CoreError> {
        if let Some(e) = &self.synced.borrow().failed {
            return Err(CoreError::Storage(format!("journal failed: {e}")));
        }
        if self.disk_alarm.load(Ordering::Relaxed) {
            return Err(CoreError::ResourceLimit(
                "free disk space is below the configured floor; persistent messages are refused"
                    .into(),
            ));
        }
        Ok(())
    }

    /// True while the backlog is within bounds.
    pub(crate) fn has_capacity(&self) -> bool {
        self.backlog_bytes.load(Ordering::Relaxed) <= self.backlog_max_bytes
    }

    /// Resolves once the backlog is within bounds.
    pub(crate) async fn capacity(&self) {
        loop {
            let notified = self.capacity.notified();
            if self.has_capacity() {
                return;
            }
            notified.await;
        }
    }

    fn taken(&self, bytes: u64) {
        let before = self.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
        if before > self.backlog_max_bytes && before - bytes <= self.backlog_max_bytes {
            self.capacity.notify_waiters();
        }
    }

    pub(crate) fn waiter(&self) -> SyncWaiter {
        SyncWaiter(self.synced.clone())
    }

    /// Asks the persister to write everything submitted, fsync and close the journal.
    pub(crate) async fn close(&self) -> Result<(), CoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_err() {
            return Ok(());
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CoreError::Storage(e.to_string())),
            Err(_) => Ok(()),
        }
    }
}
