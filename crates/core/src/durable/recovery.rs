//! Rebuilding durable state from the journal at start.
//!
//! Records are folded, in LSN order, into the state they describe: the exchanges, queues
//! and bindings that were declared and not deleted, and for each durable queue the
//! persistent messages published to it and not settled. Records made dead by later ones
//! (a deleted queue's declaration, a settled message) are collected for release, and every
//! record that cancels others becomes a tombstone the persister keeps until what it
//! cancels is gone from disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;

use super::codec::{kind, Dec, Malformed};
use crate::exchange::{ExchangeKind, ExchangeOptions};
use crate::idmap::IdMap;
use crate::message::{FieldTable, FieldValue, Message};
use ferromq_store::{Lsn, Record};

/// What a restart restored; logged by the server and returned to tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Records read from the journal.
    pub records: u64,
    /// Durable exchanges restored.
    pub exchanges: usize,
    /// Durable queues restored.
    pub queues: usize,
    /// Bindings restored.
    pub bindings: usize,
    /// Messages put back into queues (a message in two queues counts twice).
    pub messages: u64,
    /// Of those, how many recovery read back from the journal because holding every
    /// recovered body until the queues took them would have exceeded the memory budget.
    pub read_back: u64,
    /// Objects whose vhost is no longer configured; kept on disk, not served.
    pub orphaned: usize,
    /// The torn tail the journal cut off, as "file at offset (bytes)".
    pub truncated: Option<String>,
    /// Milliseconds spent reading the journal and rebuilding.
    pub elapsed_ms: u64,
}

pub(crate) type ObjectKey = (ByteString, ByteString);

pub(crate) struct RExchange {
    pub lsn: Lsn,
    pub kind: ExchangeKind,
    pub options: ExchangeOptions,
}

pub(crate) struct RQueue {
    pub lsn: Lsn,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The latest expiry record (its `x-expires` is in `arguments` already).
    pub expires_lsn: Option<Lsn>,
    /// Unsettled messages by persistent id, which is publish order.
    pub messages: BTreeMap<u64, ()>,
}

pub(crate) struct RBinding {
    pub lsn: Lsn,
    pub vhost: ByteString,
    pub source: ByteString,
    pub destination: ByteString,
    pub destination_is_exchange: bool,
    pub key: ByteString,
    pub arguments: FieldTable,
}

pub(crate) struct RUser {
    pub lsn: Lsn,
    pub record: crate::auth::UserRecord,
}

pub(crate) struct RMessage {
    pub lsn: Lsn,
    /// Queues still holding it.
    pub remaining: u32,
    pub published_ms: u64,
    pub body: RBody,
}

/// A recovered message, in memory or still only in its record.
pub(crate) enum RBody {
    /// Decoded, with the bytes of its record counted against the budget.
    Held(Arc<Message>, u64),
    /// Let go of to stay within the budget: read back from the record at this offset of its
    /// segment when a queue takes it.
    OnDisk { offset: u64 },
}

pub(crate) struct Tomb {
    pub lsn: Lsn,
    pub targets: SmallVec<[Lsn; 4]>,
}

/// Durable state as the journal describes it.
#[derive(Default)]
pub(crate) struct Recovered {
    pub exchanges: HashMap<ObjectKey, RExchange>,
    pub queues: HashMap<ObjectKey, RQueue>,
    /// By record payload, which identifies a binding.
    pub bindings: HashMap<Bytes, RBinding>,
    pub messages: IdMap<u64, RMessage>,
    /// Run-time users by name.
    pub users: HashMap<String, RUser>,
    pub tombs: Vec<Tomb>,
    /// Records nothing needs any more.
    pub dead: Vec<Lsn>,
    pub pid_max: u64,
    pub records: u64,
    /// Record bytes of the [`RBody::Held`] messages, and their bound.
    held_bytes: u64,
    held_max_bytes: u64,
}

impl Recovered {
    /// Nothing yet; messages' bodies are kept in memory up to `held_max_bytes` of records
    /// (the paging budget: the queues would page the rest anyway), and read back from the
    /// journal beyond that.
    pub(crate) fn new(held_max_bytes: u64) -> Self {
        Recovered {
            held_max_bytes,
            ..Recovered::default()
        }
    }

    /// Folds one record in.
    pub(crate) fn apply(&mut self, r: Record) -> Result<(), Malformed> {
        self.records += 1;
        let lsn = r.lsn;
        let mut d = Dec::new(r.payload.clone());
        match r.kind {
            kind::EXCHANGE_DECLARE => {
                let key = (d.str()?, d.str()?);
                let kind = ExchangeKind::parse(&d.str()?).map_err(|_| malformed())?;
                let options = d.exchange_options()?;
                d.end()?;
                let old = self.exchanges.insert(key, RExchange { lsn, kind, options });
                self.dead.extend(old.map(|o| o.lsn));
            }
            kind::QUEUE_DECLARE => {
                let key = (d.str()?, d.str()?);
                let auto_delete = d.bool()?;
                let arguments = d.table()?;
                d.end()?;
                if let Some(old) = self.queues.insert(
                    key,
                    RQueue {
                        lsn,
                        auto_delete,
                        arguments,
                        expires_lsn: None,
                        messages: BTreeMap::new(),
                    },
                ) {
                    let mut targets = SmallVec::new();
                    targets.push(old.lsn);
                    self.dead.push(old.lsn);
                    targets.extend(old.expires_lsn);
                    self.dead.extend(old.expires_lsn);
                    self.settle(old.messages.keys().copied(), &mut targets);
                }
            }
            kind::EXCHANGE_DELETE | kind::QUEUE_DELETE => {
                let key = (d.str()?, d.str()?);
                d.end()?;
                let is_queue = r.kind == kind::QUEUE_DELETE;
                let mut targets = SmallVec::new();
                if is_queue {
                    if let Some(q) = self.queues.remove(&key) {
                        targets.push(q.lsn);
                        self.dead.push(q.lsn);
                        targets.extend(q.expires_lsn);
                        self.dead.extend(q.expires_lsn);
                        self.settle(q.messages.keys().copied(), &mut targets);
                    }
                } else if let Some(e) = self.exchanges.remove(&key) {
                    targets.push(e.lsn);
                    self.dead.push(e.lsn);
                }
                let gone: Vec<Bytes> = self
                    .bindings
                    .iter()
                    .filter(|(_, b)| {
                        binding_ends_with(
                            (
                                &b.vhost,
                                &b.source,
                                &b.destination,
                                b.destination_is_exchange,
                            ),
                            &key,
                            is_queue,
                        )
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    if let Some(b) = self.bindings.remove(&k) {
                        targets.push(b.lsn);
                        self.dead.push(b.lsn);
                    }
                }
                self.tomb(lsn, targets);
            }
            kind::QUEUE_EXPIRES => {
                let key = (d.str()?, d.str()?);
                let expires_ms = d.opt_u64()?;
                d.end()?;
                match self.queues.get_mut(&key) {
                    Some(q) => {
                        match expires_ms {
                            Some(ms) => q.arguments.insert("x-expires", FieldValue::U64(ms)),
                            None => {
                                q.arguments.remove("x-expires");
                            }
                        }
                        self.dead.extend(q.expires_lsn.replace(lsn));
                    }
                    None => self.dead.push(lsn),
                }
            }
            kind::BIND => {
                let b = RBinding {
                    lsn,
                    vhost: d.str()?,
                    source: d.str()?,
                    destination_is_exchange: d.bool()?,
                    destination: d.str()?,
                    key: d.str()?,
                    arguments: d.table()?,
                };
                d.end()?;
                if let Some(old) = self.bindings.insert(r.payload, b) {
                    self.dead.push(old.lsn);
                }
            }
            kind::UNBIND => {
                let mut targets = SmallVec::new();
                if let Some(b) = self.bindings.remove(&r.payload) {
                    targets.push(b.lsn);
                    self.dead.push(b.lsn);
                }
                self.tomb(lsn, targets);
            }
            kind::PUBLISH => {
                let mut remaining = 0;
                let queues = &mut self.queues;
                let (pid, published_ms) = publish_head(&mut d, |pid, key| {
                    if let Some(q) = queues.get_mut(&key) {
                        q.messages.insert(pid, ());
                        remaining += 1;
                    }
                })?;
                let message = d.message()?;
                d.end()?;
                self.pid_max = self.pid_max.max(pid);
                if remaining == 0 {
                    self.dead.push(lsn);
                } else {
                    let size = r.payload.len() as u64;
                    let body = if self.held_bytes + size <= self.held_max_bytes {
                        self.held_bytes += size;
                        RBody::Held(Arc::new(message), size)
                    } else {
                        RBody::OnDisk { offset: r.offset }
                    };
                    self.messages.insert(
                        pid,
                        RMessage {
                            lsn,
                            remaining,
                            published_ms,
                            body,
                        },
                    );
                }
            }
            kind::USER_PUT => {
                let record = super::codec::parse_user(&mut d)?;
                let old = self
                    .users
                    .insert(record.name.clone(), RUser { lsn, record });
                self.dead.extend(old.map(|u| u.lsn));
            }
            kind::USER_DELETE => {
                let name = d.str()?;
                d.end()?;
                let targets = self
                    .users
                    .remove(&*name)
                    .map(|u| u.lsn)
                    .into_iter()
                    .collect();
                self.tomb(lsn, targets);
            }
            kind::SETTLE => {
                let key = (d.str()?, d.str()?);
                let n = d.u32()? as usize;
                let mut pids = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    pids.push(d.u64()?);
                }
                d.end()?;
                let mut targets = SmallVec::new();
                if let Some(q) = self.queues.get_mut(&key) {
                    let held: Vec<u64> = pids
                        .into_iter()
                        .filter(|p| q.messages.remove(p).is_some())
                        .collect();
                    self.settle(held.into_iter(), &mut targets);
                }
                self.tomb(lsn, targets);
            }
            _ => return Err(malformed()),
        }
        Ok(())
    }

    /// One queue lets go of each message: it dies with its last queue.
    fn settle(&mut self, pids: impl Iterator<Item = u64>, targets: &mut SmallVec<[Lsn; 4]>) {
        for pid in pids {
            if let Some(m) = self.messages.get_mut(&pid) {
                targets.push(m.lsn);
                m.remaining -= 1;
                if m.remaining == 0 {
                    self.dead.push(m.lsn);
                    if let Some(RMessage {
                        body: RBody::Held(_, size),
                        ..
                    }) = self.messages.remove(&pid)
                    {
                        self.held_bytes -= size;
                    }
                }
            }
        }
    }

    fn tomb(&mut self, lsn: Lsn, targets: SmallVec<[Lsn; 4]>) {
        if targets.is_empty() {
            self.dead.push(lsn);
        } else {
            self.tombs.push(Tomb { lsn, targets });
        }
    }
}

/// True if a binding `(vhost, source, destination, destination_is_exchange)` goes when
/// the queue (or exchange) `key` is deleted: it leads to it, or (an exchange) starts there.
pub(crate) fn binding_ends_with(
    (vhost, source, destination, destination_is_exchange): (
        &ByteString,
        &ByteString,
        &ByteString,
        bool,
    ),
    key: &ObjectKey,
    is_queue: bool,
) -> bool {
    let (v, name) = key;
    vhost == v
        && ((destination == name && destination_is_exchange != is_queue)
            || (!is_queue && source == name))
}

fn malformed() -> Malformed {
    super::codec::malformed("record kind")
}

impl Recovered {
    /// Rebuilds the recovered objects and messages in `vhosts`, reading back from `journal`
    /// the bodies that were let go of. Objects of vhosts that are not configured stay on
    /// disk (and in the persister's books) but are not served. Fails if a record read back
    /// is damaged or unreadable.
    pub(crate) fn restore(
        &self,
        vhost: impl Fn(&str) -> Option<crate::vhost::Vhost>,
        journal: &ferromq_store::Journal,
    ) -> Result<RecoveryReport, String> {
        let mut report = RecoveryReport {
            records: self.records,
            ..RecoveryReport::default()
        };
        let mut exchanges: Vec<_> = self.exchanges.iter().collect();
        exchanges.sort_by_key(|(_, e)| e.lsn);
        for ((v, name), e) in exchanges {
            match vhost(v) {
                Some(vh) => {
                    vh.restore_exchange(name, e.kind, e.options.clone());
                    report.exchanges += 1;
                }
                None => report.orphaned += 1,
            }
        }
        let mut queues: Vec<_> = self.queues.iter().collect();
        queues.sort_by_key(|(_, q)| q.lsn);
        for ((v, name), q) in queues {
            let Some(vh) = vhost(v) else {
                report.orphaned += 1;
                continue;
            };
            let queue = match vh.restore_queue(name, q.auto_delete, q.arguments.clone()) {
                Ok(queue) => queue,
                Err(e) => {
                    tracing::warn!(vhost = %v, queue = %name, %e, "journaled queue not restored");
                    continue;
                }
            };
            report.queues += 1;
            for pid in q.messages.keys() {
                let Some(m) = self.messages.get(pid) else {
                    continue;
                };
                let message = match &m.body {
                    RBody::Held(message, _) => message.clone(),
                    RBody::OnDisk { offset } => {
                        report.read_back += 1;
                        read_back(journal, m.lsn, *offset)?
                    }
                };
                queue.restore(message, *pid, m.published_ms);
                report.messages += 1;
            }
        }
        let mut bindings: Vec<_> = self.bindings.values().collect();
        bindings.sort_by_key(|b| b.lsn);
        for b in bindings {
            let Some(vh) = vhost(&b.vhost) else {
                report.orphaned += 1;
                continue;
            };
            if vh.restore_binding(
                &b.source,
                b.destination_is_exchange,
                &b.destination,
                &b.key,
                b.arguments.clone(),
            ) {
                report.bindings += 1;
            }
        }
        Ok(report)
    }
}

/// Reads a `PUBLISH` record up to its message: returns its persistent id and publish time,
/// and hands each queue it names to `queue`, as (persistent id, (vhost, queue)).
fn publish_head(
    d: &mut Dec,
    mut queue: impl FnMut(u64, ObjectKey),
) -> Result<(u64, u64), Malformed> {
    let pid = d.u64()?;
    let published_ms = d.u64()?;
    let vhost = d.str()?;
    for _ in 0..d.u32()? {
        queue(pid, (vhost.clone(), d.str()?));
    }
    Ok((pid, published_ms))
}

/// The message of the `PUBLISH` record `lsn`, read again from the journal.
fn read_back(
    journal: &ferromq_store::Journal,
    lsn: Lsn,
    offset: u64,
) -> Result<Arc<Message>, String> {
    let record = journal
        .read_back(lsn, offset)
        .map_err(|e| format!("record {lsn}: {e}"))?;
    let mut d = Dec::new(record.payload);
    let decoded = (|| {
        if record.kind != kind::PUBLISH {
            return Err(malformed());
        }
        publish_head(&mut d, |_, _| {})?;
        let message = d.message()?;
        d.end()?;
        Ok(message)
    })();
    decoded
        .map(Arc::new)
        .map_err(|e: Malformed| format!("record {lsn} read back: {e}"))
}
