//! The persister: the one task that writes the core's records and decides when each may be
//! released.
//!
//! It owns the journal and every LSN the core cares about, so none of this bookkeeping is
//! shared or locked:
//! - a declaration (exchange, queue) or a binding is live until deleted or unbound;
//! - a published message is live until the last durable queue it went to settles it;
//! - a record that cancels others (a delete, an unbind, a settle) is a *tombstone*: it stays
//!   live while any record it cancels is still on disk, since recovery would otherwise find
//!   the cancelled record without it and bring it back.
//!
//! Ops are taken from the channel in batches; each batch is handed to the journal back to
//! back (so the writer thread group-commits it), as one fenced run behind the ops waiting to
//! be written again, then the LSNs are collected in order and the bookkeeping updated (for
//! ops the journal refused for lack of space, see "A full disk" in `durable/mod.rs`). A
//! second task waits for each batch to be synced and publishes the synced sequence number
//! to the [`SyncWaiter`](super::SyncWaiter)s.
//!
//! Batches are handed to the journal while earlier ones are still being written and
//! fsynced, all as parts of one fenced run: once the journal refuses a record for lack of
//! space, every later record of the run is refused too, so what lands is still a prefix of
//! what was submitted. After a refusal, no batch is started until every batch in flight has
//! its outcome; the next one then starts a new run with the ops to be written again. Early
//! confirms (see the parent module) are decided as ops are taken from the channel: an ack
//! that arrives while the journal writes and fsyncs its publish confirms that publish
//! without waiting for either, or for the ack's own record.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use super::codec::kind;
use super::recovery::{binding_ends_with, ObjectKey, Recovered, Tomb};
use super::{Command, Durable, Meta, Op, SyncState};
use crate::idmap::IdMap;
use ferromq_store::{Journal, Lsn, Moved, Store, StoreError, Submitted};

/// Ops taken from the channel per batch: bounds the LSN tickets held at once.
const BATCH_OPS_MAX: usize = 4096;

/// Ops taken from the channel that cannot be handed to the journal yet (after a refusal,
/// or while a compaction's moves wait); intake pauses beyond this. (The durable backlog's
/// byte bound, which makes producers wait, applies to them too: they are not `taken` yet.)
const PENDING_OPS_MAX: usize = 64 * 1024;

/// Ops handed to the journal whose outcomes are not collected yet. The journal's append
/// queue bounds their bytes, and with its default size also their count (8 MiB at 128
/// bytes of overhead per record); this bounds the count whatever the journal is
/// configured with.
const INFLIGHT_OPS_MAX: usize = 64 * 1024;

struct BindingBook {
    lsn: Lsn,
    vhost: bytestring::ByteString,
    source: bytestring::ByteString,
    destination: bytestring::ByteString,
    destination_is_exchange: bool,
}

struct MessageBook {
    lsn: Lsn,
    remaining: u32,
}

/// A publish not known to be synced, while every queue that settled it so far had it
/// consumed: it is confirmed early once `remaining` reaches 0.
struct Unsynced {
    seq: u64,
    remaining: u32,
}

/// A batch handed to the journal as one fenced run, waiting for its outcome: each op, whether
/// it is written again (a rewrite), and its ticket. Never empty.
struct InFlight {
    ops: Vec<(Op, bool, Submitted)>,
    /// It starts with ops written again: nothing starts behind it until it has its outcome
    /// (it is the first try after a refusal; if the disk is still full, what came behind
    /// would be refused with it).
    rewrites: bool,
}

/// The persister task; run it with [`Persister::run`] on the runtime that serves clients.
pub struct Persister {
    journal: Arc<Journal>,
    dir: PathBuf,
    rx: mpsc::UnboundedReceiver<Command>,
    durable: Arc<Durable>,
    synced_tx: watch::Sender<SyncState>,
    tick: Duration,
    compaction_every_ticks: u64,
    disk_free_min_bytes: u64,
    /// Bytes submitted since free space was last measured, and half the room above the
    /// floor found then: once the one reaches the other, free space is measured again
    /// (between ticks too), so a fast producer cannot run the disk full between checks.
    written_since_check: u64,
    recheck_after_bytes: u64,
    exchanges: HashMap<ObjectKey, Lsn>,
    queues: HashMap<ObjectKey, Lsn>,
    /// The latest expiry record of each durable queue that has one.
    queue_expires: HashMap<ObjectKey, Lsn>,
    /// Run-time users (keyed with an empty vhost).
    users: HashMap<ObjectKey, Lsn>,
    bindings: HashMap<Bytes, BindingBook>,
    messages: IdMap<u64, MessageBook>,
    tombs: Vec<Tomb>,
    /// Declarations, deletions, bindings and user changes the journal refused for lack of
    /// space, in submission order, to be written again ahead of everything else.
    rewrites: VecDeque<Op>,
    /// How many of `rewrites` are settles.
    resettles: usize,
    /// The fence of the run the batches in flight belong to; `None` once one of them had a
    /// record refused, until a new run starts.
    fence: Option<ferromq_store::Fence>,
    failed: bool,
    /// Candidates for an early confirm by pid, and (sequence number, pid) in the order
    /// taken, to forget them once synced. Both hold at most the publishes taken and not
    /// yet synced: bounded by `PENDING_OPS_MAX` and `BATCH_OPS_MAX` plus what the journal
    /// writer holds unsynced (its append queue and `sync_batch_max_bytes`).
    unsynced: IdMap<u64, Unsynced>,
    unsynced_order: VecDeque<(u64, u64)>,
    /// Publishes found consumed in the ops being taken.
    consumed: Vec<u64>,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Parts {
    pub journal: Arc<Journal>,
    pub rx: mpsc::UnboundedReceiver<Command>,
    pub durable: Arc<Durable>,
    pub synced_tx: watch::Sender<SyncState>,
    pub config: super::DurableConfig,
}

impl Persister {
    pub(crate) fn new(parts: Parts, recovered: &mut Recovered) -> Self {
        let journal = parts.journal;
        for lsn in recovered.dead.drain(..) {
            journal.release(lsn);
        }
        let cfg = &parts.config;
        let tick_ms = cfg.tick_ms.max(1);
        Persister {
            dir: cfg.journal.dir.clone(),
            journal,
            rx: parts.rx,
            durable: parts.durable,
            synced_tx: parts.synced_tx,
            tick: Duration::from_millis(tick_ms),
            compaction_every_ticks: if cfg.compaction_interval_ms == 0 {
                0
            } else {
                (cfg.compaction_interval_ms / tick_ms).max(1)
            },
            disk_free_min_bytes: cfg.disk_free_min_bytes,
            written_since_check: 0,
            recheck_after_bytes: 0,
            exchanges: recovered
                .exchanges
                .iter()
                .map(|(k, e)| (k.clone(), e.lsn))
                .collect(),
            queues: recovered
                .queues
                .iter()
                .map(|(k, q)| (k.clone(), q.lsn))
                .collect(),
            users: recovered
                .users
                .iter()
                .map(|(name, u)| ((bytestring::ByteString::new(), name.as_str().into()), u.lsn))
                .collect(),
            queue_expires: recovered
                .queues
                .iter()
                .filter_map(|(k, q)| Some((k.clone(), q.expires_lsn?)))
                .collect(),
            bindings: recovered
                .bindings
                .iter()
                .map(|(k, b)| {
                    (
                        k.clone(),
                        BindingBook {
                            lsn: b.lsn,
                            vhost: b.vhost.clone(),
                            source: b.source.clone(),
                            destination: b.destination.clone(),
                            destination_is_exchange: b.destination_is_exchange,
                        },
                    )
                })
                .collect(),
            messages: recovered
                .messages
                .iter()
                .map(|(pid, m)| {
                    (
                        *pid,
                        MessageBook {
                            lsn: m.lsn,
                            remaining: m.remaining,
                        },
                    )
                })
                .collect(),
            tombs: std::mem::take(&mut recovered.tombs),
            rewrites: VecDeque::new(),
            resettles: 0,
            fence: None,
            failed: false,
            unsynced: IdMap::default(),
            unsynced_order: VecDeque::new(),
            consumed: Vec::new(),
        }
    }

    /// Serves ops until the broker closes the durable layer (or every handle is gone),
    /// then writes and fsyncs what is left and closes the journal.
    pub async fn run(mut self) {
        let (batch_tx, batch_rx) = mpsc::unbounded_channel();
        let syncer = tokio::spawn(syncer(
            self.journal.clone(),
            batch_rx,
            self.synced_tx.clone(),
        ));
        self.check_disk();
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u64;
        let mut compaction: Option<tokio::task::JoinHandle<Result<Vec<Moved>, StoreError>>> = None;
        // The last attempt failed: the next failure is not logged as a warning again.
        let mut compaction_failing = false;
        // The batches with the journal, oldest first, and the ops taken but not handed over.
        let mut writing: VecDeque<InFlight> = VecDeque::new();
        let mut inflight_ops = 0;
        let mut pending: Vec<Op> = Vec::new();
        // A finished compaction's moves, applied once no batch is with the journal (the
        // moved records' old LSNs must all be in the books first); no batch is started
        // meanwhile.
        let mut moves: Option<Vec<Moved>> = None;
        let mut closing = None;
        let close_reply = loop {
            if writing.is_empty() {
                if let Some(moved) = moves.take() {
                    self.apply_moves(&moved);
                }
            }
            let may_start = writing.is_empty()
                || (self.fence.is_some()
                    && self.rewrites.is_empty()
                    && !writing.back().is_some_and(|b| b.rewrites)
                    && moves.is_none()
                    && inflight_ops < INFLIGHT_OPS_MAX);
            if may_start && !pending.is_empty() {
                if let Some(batch) = self.start(std::mem::take(&mut pending)).await {
                    inflight_ops += batch.ops.len();
                    writing.push_back(batch);
                }
            }
            if closing.is_some() && writing.is_empty() && pending.is_empty() {
                break closing;
            }
            tokio::select! {
                biased;
                last = last_lsn(&self.journal, &mut writing), if !writing.is_empty() => {
                    let batch = writing.pop_front().expect("guarded");
                    inflight_ops -= batch.ops.len();
                    self.complete(batch, last, &batch_tx).await;
                }
                cmd = self.rx.recv(), if closing.is_none() && pending.len() < PENDING_OPS_MAX => {
                    let Some(cmd) = cmd else { break None };
                    let mut batch = Vec::new();
                    match cmd {
                        Command::Op(op) => batch.push(op),
                        Command::Close(reply) => closing = Some(reply),
                    }
                    while closing.is_none() && batch.len() < BATCH_OPS_MAX {
                        match self.rx.try_recv() {
                            Ok(Command::Op(op)) => batch.push(op),
                            Ok(Command::Close(reply)) => closing = Some(reply),
                            Err(_) => break,
                        }
                    }
                    self.find_consumed(&batch);
                    pending.append(&mut batch);
                }
                _ = ticker.tick() => {
                    ticks += 1;
                    self.release_tombs();
                    self.check_disk();
                    if writing.is_empty() && pending.is_empty() && !self.rewrites.is_empty() && !self.failed {
                        // Refused declarations are tried again even when nothing else comes.
                        if let Some(batch) = self.start(Vec::new()).await {
                            inflight_ops += batch.ops.len();
                            writing.push_back(batch);
                        }
                    }
                    if compaction.is_none()
                        && moves.is_none()
                        && self.compaction_every_ticks > 0
                        && ticks.is_multiple_of(self.compaction_every_ticks)
                        && !self.failed
                    {
                        let j = self.journal.clone();
                        compaction = Some(tokio::spawn(async move { j.compact().await }));
                    }
                }
                done = async { compaction.as_mut().expect("guarded").await }, if compaction.is_some() => {
                    compaction = None;
                    let failure = match done {
                        Ok(Ok(moved)) => {
                            if !moved.is_empty() {
                                moves = Some(moved);
                            }
                            None
                        }
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(format!("compaction task ended abnormally: {e}")),
                    };
                    // Once per episode: a full disk fails every attempt until space is back.
                    match (failure, compaction_failing) {
                        (Some(e), false) => {
                            warn!(dir = %self.dir.display(), error = %e, "journal compaction failed; retrying every interval");
                            compaction_failing = true;
                        }
                        (Some(e), true) => debug!(dir = %self.dir.display(), error = %e, "journal compaction failed again"),
                        (None, true) => {
                            info!(dir = %self.dir.display(), "journal compaction works again");
                            compaction_failing = false;
                        }
                        (None, false) => {}
                    }
                }
            }
        };
        if let Some(task) = compaction.take() {
            task.abort();
        }
        // Every handle is gone or the broker closes: write what was taken.
        loop {
            while !writing.is_empty() {
                let last = last_lsn(&self.journal, &mut writing).await;
                let batch = writing.pop_front().expect("not empty");
                self.complete(batch, last, &batch_tx).await;
            }
            if let Some(moved) = moves.take() {
                self.apply_moves(&moved);
            }
            if pending.is_empty() {
                break;
            }
            writing.extend(self.start(std::mem::take(&mut pending)).await);
        }
        if !self.rewrites.is_empty() && !self.failed {
            // A last try for refused declarations; if it fails too they are lost with the
            // process, as the declarations of a crashed broker would be.
            writing.extend(self.start(Vec::new()).await);
            if !writing.is_empty() {
                let last = last_lsn(&self.journal, &mut writing).await;
                let batch = writing.pop_front().expect("not empty");
                self.complete(batch, last, &batch_tx).await;
            }
        }
        // Ops sent before the close request were taken above; late ones are dropped.
        drop(batch_tx);
        let _ = syncer.await;
        let result = self.journal.close().await;
        if let Err(e) = &result {
            error!(dir = %self.dir.display(), %e, "closing the journal failed");
        }
        if let Some(reply) = close_reply {
            let _ = reply.send(result);
        }
    }

    /// Hands the ops waiting to be written again, then `batch`, to the journal as part of
    /// the current fenced run, or of a new one if the last had a refusal (so the records
    /// land as a prefix: see the module docs of `durable`); `None` if no record of it was
    /// accepted.
    async fn start(&mut self, batch: Vec<Op>) -> Option<InFlight> {
        let rewrites = std::mem::take(&mut self.rewrites);
        let rewriting = !rewrites.is_empty();
        self.resettles = 0;
        let journal = &self.journal;
        let fence = *self.fence.get_or_insert_with(|| journal.fence());
        let mut tickets: Vec<(Op, bool, Submitted)> =
            Vec::with_capacity(rewrites.len() + batch.len());
        let ops = rewrites
            .into_iter()
            .map(|op| (op, true))
            .chain(batch.into_iter().map(|op| (op, false)));
        for (op, rewrite) in ops {
            let len = op.payload.len() as u64;
            if !self.failed {
                let payload = op.payload.clone();
                match self.journal.submit_fenced(op.kind, payload, fence).await {
                    Ok(t) => tickets.push((op, rewrite, t)),
                    Err(e) => self.fail(&e),
                }
            }
            if !rewrite {
                self.durable.taken(len);
                self.written_since_check += len;
            }
        }
        if self.written_since_check >= self.recheck_after_bytes {
            self.check_disk();
        }
        (!tickets.is_empty()).then_some(InFlight {
            ops: tickets,
            rewrites: rewriting,
        })
    }

    /// Applies the outcome of each op of a batch whose last record's outcome is `last`
    /// (the writer answers in order, so every other op's is known too) and hands the batch
    /// to the syncer.
    async fn complete(
        &mut self,
        batch: InFlight,
        last: Result<Lsn, StoreError>,
        synced: &mpsc::UnboundedSender<Batch>,
    ) {
        let mut ops = batch.ops;
        let mut done = Batch {
            seqs: Vec::with_capacity(ops.len()),
            lsn: 0,
            refused: Vec::new(),
        };
        let (last_op, last_rewrite, _) = ops.pop().expect("batches in flight are not empty");
        let outcomes = ops
            .into_iter()
            .map(|(op, rewrite, ticket)| (op, rewrite, Some(ticket)))
            .chain(std::iter::once((last_op, last_rewrite, None)));
        let mut last = Some(last);
        for (op, rewrite, ticket) in outcomes {
            let outcome = match ticket {
                Some(t) => self.journal.submitted(t).await,
                None => last.take().expect("the last op comes last"),
            };
            match outcome {
                Ok(lsn) => {
                    done.lsn = lsn;
                    if !rewrite {
                        done.seqs.push(op.seq);
                    }
                    self.apply(op, lsn);
                }
                Err(e) if !e.is_fatal() => {
                    // The rest of this run is refused too: the next batch starts a new one.
                    self.fence = None;
                    self.refused(op, rewrite, &mut done.refused);
                }
                Err(e) => {
                    self.fail(&e);
                    return;
                }
            }
        }
        if self.rewrites.len() > crate::limits::DURABLE_REWRITES_MAX {
            self.rewrites.clear();
            self.fail(&"journal out of space with more refused declarations waiting to be written again than limits::DURABLE_REWRITES_MAX");
        }
        if done.lsn > 0 || !done.refused.is_empty() {
            let _ = synced.send(done);
        }
    }

    /// Tracks the publishes of `batch` and the settles that consume them; publishes whose
    /// every durable copy is now consumed are confirmed at once.
    fn find_consumed(&mut self, batch: &[Op]) {
        for op in batch {
            match &op.meta {
                Meta::Publish { pid, queues } if *queues > 0 => {
                    self.unsynced.insert(
                        *pid,
                        Unsynced {
                            seq: op.seq,
                            remaining: *queues,
                        },
                    );
                    self.unsynced_order.push_back((op.seq, *pid));
                }
                Meta::Settle { pids, consumed } => {
                    for (i, pid) in pids.iter().enumerate() {
                        let std::collections::hash_map::Entry::Occupied(mut u) =
                            self.unsynced.entry(*pid)
                        else {
                            continue;
                        };
                        if i >= *consumed {
                            // Left a queue without a consumer: wait for the sync.
                            u.remove();
                            continue;
                        }
                        u.get_mut().remaining -= 1;
                        if u.get().remaining == 0 {
                            self.consumed.push(u.remove().seq);
                        }
                    }
                }
                _ => {}
            }
        }
        let synced = self.synced_tx.borrow().synced;
        while let Some(&(seq, pid)) = self.unsynced_order.front() {
            if seq > synced {
                break;
            }
            self.unsynced_order.pop_front();
            if self.unsynced.get(&pid).is_some_and(|u| u.seq == seq) {
                self.unsynced.remove(&pid);
            }
        }
        if !self.consumed.is_empty() {
            let consumed = &mut self.consumed;
            self.synced_tx.send_modify(|s| {
                for seq in consumed.drain(..) {
                    if seq > s.synced {
                        s.consumed.insert(seq);
                    }
                }
            });
        }
    }

    /// The journal refused `op`'s record for lack of space (see the module docs of
    /// `durable` for why each kind is handled so).
    fn refused(&mut self, op: Op, rewrite: bool, refused: &mut Vec<u64>) {
        if !rewrite {
            refused.push(op.seq);
        }
        match op.meta {
            // Stays in its queues as a transient message would; nothing to track.
            Meta::Publish { .. } => {}
            Meta::Settle { pids, .. } => {
                let targets = self.settle(&pids);
                if targets.is_empty() || self.resettles >= crate::limits::DURABLE_REWRITES_MAX / 2 {
                    return;
                }
                self.resettles += 1;
                self.rewrites.push_back(Op {
                    meta: Meta::Resettle { targets },
                    ..op
                });
            }
            Meta::Resettle { ref targets } => {
                if targets.iter().any(|&t| self.journal.contains(t)) {
                    self.resettles += 1;
                    self.rewrites.push_back(op);
                }
            }
            Meta::Object { .. } | Meta::Binding { .. } => self.rewrites.push_back(op),
        }
    }

    fn fail(&mut self, e: &dyn std::fmt::Display) {
        if !self.failed {
            error!(dir = %self.dir.display(), %e, "journal failed; persistent publishes are refused");
            self.failed = true;
            let text: Arc<str> = e.to_string().into();
            self.synced_tx
                .send_modify(|s| s.failed = Some(text.clone()));
        }
    }

    fn apply(&mut self, op: Op, lsn: Lsn) {
        match op.meta {
            Meta::Object { vhost, name } => {
                let key = (vhost, name);
                match op.kind {
                    kind::EXCHANGE_DECLARE => {
                        if let Some(old) = self.exchanges.insert(key, lsn) {
                            self.journal.release(old);
                        }
                    }
                    kind::QUEUE_DECLARE => {
                        if let Some(old) = self.queues.insert(key, lsn) {
                            self.journal.release(old);
                        }
                    }
                    kind::USER_PUT => {
                        if let Some(old) = self.users.insert(key, lsn) {
                            self.journal.release(old);
                        }
                    }
                    kind::USER_DELETE => {
                        let targets = self.users.remove(&key).into_iter().collect();
                        self.cancel(lsn, targets);
                    }
                    kind::QUEUE_EXPIRES => {
                        // Live while its queue is; one for a queue already gone is dead.
                        if !self.queues.contains_key(&key) {
                            self.journal.release(lsn);
                        } else if let Some(old) = self.queue_expires.insert(key, lsn) {
                            self.journal.release(old);
                        }
                    }
                    _ => {
                        let is_queue = op.kind == kind::QUEUE_DELETE;
                        let map = if is_queue {
                            &mut self.queues
                        } else {
                            &mut self.exchanges
                        };
                        let mut targets: SmallVec<[Lsn; 4]> =
                            map.remove(&key).into_iter().collect();
                        if is_queue {
                            targets.extend(self.queue_expires.remove(&key));
                        }
                        self.bindings.retain(|_, b| {
                            let gone = binding_ends_with(
                                (
                                    &b.vhost,
                                    &b.source,
                                    &b.destination,
                                    b.destination_is_exchange,
                                ),
                                &key,
                                is_queue,
                            );
                            if gone {
                                targets.push(b.lsn);
                            }
                            !gone
                        });
                        self.cancel(lsn, targets);
                    }
                }
            }
            Meta::Binding {
                vhost,
                source,
                destination,
                destination_is_exchange,
            } => {
                if op.kind == kind::BIND {
                    let book = BindingBook {
                        lsn,
                        vhost,
                        source,
                        destination,
                        destination_is_exchange,
                    };
                    if let Some(old) = self.bindings.insert(op.payload, book) {
                        self.journal.release(old.lsn);
                    }
                } else {
                    let targets = self
                        .bindings
                        .remove(&op.payload)
                        .map(|b| b.lsn)
                        .into_iter()
                        .collect();
                    self.cancel(lsn, targets);
                }
            }
            Meta::Publish { pid, queues } => {
                if queues == 0 {
                    self.journal.release(lsn);
                } else {
                    self.messages.insert(
                        pid,
                        MessageBook {
                            lsn,
                            remaining: queues,
                        },
                    );
                }
            }
            Meta::Settle { pids, .. } => {
                let targets = self.settle(&pids);
                self.entomb(lsn, targets);
            }
            Meta::Resettle { targets } => self.entomb(lsn, targets),
        }
    }

    /// Settles `pids` in one queue: counts the settlement, releases each publish record its
    /// last queue settled, and returns the publish records the settle record cancels.
    fn settle(&mut self, pids: &[u64]) -> SmallVec<[Lsn; 4]> {
        let mut targets = SmallVec::new();
        for pid in pids {
            if let Some(m) = self.messages.get_mut(pid) {
                targets.push(m.lsn);
                m.remaining -= 1;
                if m.remaining == 0 {
                    let lsn = m.lsn;
                    self.messages.remove(pid);
                    self.journal.release(lsn);
                }
            }
        }
        targets
    }

    /// `lsn` cancels `targets`: they are released now; it stays until they leave the disk.
    fn cancel(&mut self, lsn: Lsn, targets: SmallVec<[Lsn; 4]>) {
        for &t in &targets {
            self.journal.release(t);
        }
        self.entomb(lsn, targets);
    }

    /// `lsn` cancels `targets` (already released where due): it stays until they leave the
    /// disk.
    ///
    /// A target still live (a message that other queues have not settled) keeps the tomb
    /// even in the tomb's own segment: compaction would copy the target out and leave the
    /// tomb behind, and the settled queue would get the message back on replay.
    fn entomb(&mut self, lsn: Lsn, targets: SmallVec<[Lsn; 4]>) {
        if targets.iter().any(|&t| needed(&self.journal, lsn, t)) {
            self.tombs.push(Tomb { lsn, targets });
        } else {
            self.journal.release(lsn);
        }
    }

    fn release_tombs(&mut self) {
        let journal = &self.journal;
        self.tombs.retain_mut(|t| {
            let tomb = t.lsn;
            t.targets.retain(|l| needed(journal, tomb, *l));
            if t.targets.is_empty() {
                journal.release(t.lsn);
                false
            } else {
                true
            }
        });
    }

    fn apply_moves(&mut self, moved: &[Moved]) {
        if moved.is_empty() {
            return;
        }
        let map: HashMap<Lsn, Lsn> = moved.iter().map(|m| (m.old, m.new)).collect();
        let fwd = |l: &mut Lsn| {
            if let Some(n) = map.get(l) {
                *l = *n;
            }
        };
        self.exchanges.values_mut().for_each(fwd);
        self.queues.values_mut().for_each(fwd);
        self.queue_expires.values_mut().for_each(fwd);
        self.users.values_mut().for_each(fwd);
        self.bindings.values_mut().for_each(|b| fwd(&mut b.lsn));
        self.messages.values_mut().for_each(|m| fwd(&mut m.lsn));
        for t in &mut self.tombs {
            fwd(&mut t.lsn);
            t.targets.iter_mut().for_each(fwd);
        }
        for op in &mut self.rewrites {
            if let Meta::Resettle { targets } = &mut op.meta {
                targets.iter_mut().for_each(fwd);
            }
        }
        debug!(records = moved.len(), "journal compaction moved records");
    }

    fn check_disk(&mut self) {
        if self.disk_free_min_bytes == 0 {
            self.recheck_after_bytes = u64::MAX;
            return;
        }
        self.written_since_check = 0;
        match free_bytes(&self.dir) {
            Some(free) => {
                self.recheck_after_bytes = free.saturating_sub(self.disk_free_min_bytes) / 2;
                let low = free < self.disk_free_min_bytes;
                let was = self
                    .durable
                    .disk_alarm
                    .swap(low, std::sync::atomic::Ordering::Relaxed);
                if low != was {
                    if low {
                        warn!(dir = %self.dir.display(), free_bytes = free, floor_bytes = self.disk_free_min_bytes,
                            "free disk space below the floor; persistent publishes are refused");
                    } else {
                        warn!(dir = %self.dir.display(), free_bytes = free,
                            "free disk space back above the floor; persistent publishes accepted");
                    }
                }
            }
            None => {
                self.recheck_after_bytes = u64::MAX;
                debug!(dir = %self.dir.display(), "cannot read free disk space");
            }
        }
    }
}

/// True while the tomb `tomb` must stay to cancel `target` on replay.
fn needed(journal: &Journal, tomb: Lsn, target: Lsn) -> bool {
    journal.is_live(target) || journal.protects(tomb, target)
}

/// Free bytes available to unprivileged users on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to writable memory
    // of the right type; statvfs initialises it fully when it returns 0.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// What became of a batch of ops.
struct Batch {
    /// Ops whose records were written,
    seqs: Vec<u64>,
    /// the last of them at this LSN (0: none).
    lsn: Lsn,
    /// Ops whose records the journal refused for lack of space.
    refused: Vec<u64>,
}

/// Waits for each batch to be synced and advances the synced sequence number past every op
/// below which all are settled (synced or refused). The refusals are published with the
/// advance that covers them, so a waiter never sees its op settled before it can tell how.
async fn syncer(
    journal: Arc<Journal>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    tx: watch::Sender<SyncState>,
) {
    let mut mark = tx.borrow().synced;
    let mut ahead = BTreeSet::new();
    while let Some(batch) = rx.recv().await {
        if batch.lsn > 0 {
            if let Err(e) = journal.wait_synced(batch.lsn).await {
                let text: Arc<str> = e.to_string().into();
                tx.send_modify(|s| s.failed = Some(text));
                return;
            }
        }
        for &s in batch.seqs.iter().chain(&batch.refused) {
            if s == mark + 1 {
                mark = s;
                while ahead.remove(&(mark + 1)) {
                    mark += 1;
                }
            } else {
                ahead.insert(s);
            }
        }
        tx.send_modify(|s| {
            for &seq in &batch.refused {
                s.refused.insert(seq);
            }
            s.advance(mark);
        });
    }
}

/// The outcome of the last record of the oldest batch in flight, once known. Cancel-safe:
/// the ticket is awaited by reference and is spent only when this returns.
async fn last_lsn(journal: &Journal, writing: &mut VecDeque<InFlight>) -> Result<Lsn, StoreError> {
    let batch = writing.front_mut().expect("guarded by the caller");
    let (_, _, last) = batch
        .ops
        .last_mut()
        .expect("batches in flight are not empty");
    journal.submitted_ref(last).await
}
