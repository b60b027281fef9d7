//! The broker handle, and connections as the core sees them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};

use crate::auth::{Principal, UserRecord, Users};
use crate::clock::Clock;
use crate::consumer::{ConsumerHandle, ConsumerSpec};
use crate::durable::{
    Durable, DurableConfig, Persister, Recovered, RecoveryReport, SyncState, SyncTicket, SyncWaiter,
};
use crate::error::{AuthError, CoreError};
use crate::limits::CoreLimits;
use crate::queue::{Queue, QueueOptions, QueueStats};
use crate::vhost::Vhost;

/// What the broker is built from.
#[derive(Clone, Debug, Default)]
pub struct BrokerConfig {
    /// Bounds on state.
    pub limits: CoreLimits,
    /// Configured users; when empty, the default `guest` user exists.
    pub users: Vec<UserRecord>,
    /// Clients that send no credentials are taken as `guest` (from loopback).
    pub allow_anonymous: bool,
    /// Vhosts besides the default `/`.
    pub vhosts: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    vhosts: RwLock<HashMap<String, Vhost>>,
    users: Users,
    /// Serialises run-time user changes, so that the journal has them in the order the
    /// user database applied them.
    user_changes: Mutex<()>,
    limits: CoreLimits,
    clock: Arc<dyn Clock>,
    next_id: AtomicU64,
    durable: Option<Arc<Durable>>,
}

/// A broker opened on a journal: run `persister` on the runtime before serving clients.
#[derive(Debug)]
pub struct Opened {
    /// The broker, with its durable state restored.
    pub broker: Broker,
    /// The task that writes the journal; it ends after [`Broker::close`].
    pub persister: Persister,
    /// What was restored.
    pub report: RecoveryReport,
}

/// A cloneable handle to the whole broker.
#[derive(Clone, Debug)]
pub struct Broker(Arc<Inner>);

/// What [`Broker::paging_stats`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingStats {
    /// Body bytes of ready messages held in memory by all queues.
    pub resident_bytes: u64,
    /// Messages written to spill files since start.
    pub paged_out: u64,
    /// Bytes of paged messages held in memory rather than in spill files (write buffers,
    /// and what a full disk refused).
    pub unwritten_bytes: u64,
    /// True while spill writes fail (see `paging.rs`, "A write that fails").
    pub writes_failing: bool,
}

/// The default vhost.
pub const DEFAULT_VHOST: &str = "/";

impl Broker {
    /// A broker with the default vhost and the configured ones, and no store: durable
    /// queues and persistent messages last as long as the process.
    pub fn new(config: BrokerConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, clock, None)
    }

    fn build(config: BrokerConfig, clock: Arc<dyn Clock>, durable: Option<Arc<Durable>>) -> Self {
        let mut vhosts = HashMap::new();
        for name in std::iter::once(DEFAULT_VHOST.to_string()).chain(config.vhosts) {
            vhosts.insert(
                name.clone(),
                Vhost::new(&name, config.limits.clone(), clock.clone(), durable.clone()),
            );
        }
        Broker(Arc::new(Inner {
            vhosts: RwLock::new(vhosts),
            users: Users::new(config.users, config.allow_anonymous),
            user_changes: Mutex::new(()),
            limits: config.limits,
            clock,
            next_id: AtomicU64::new(1),
            durable,
        }))
    }

    /// Opens the journal in `durable.journal.dir`, restores the durable exchanges, queues,
    /// bindings and unsettled persistent messages it holds (flagged redelivered), and
    /// returns the broker with the persister task to run. Blocking: call it before serving
    /// (or from `spawn_blocking`).
    pub fn open(
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
        durable: DurableConfig,
    ) -> Result<Opened, CoreError> {
        let started = std::time::Instant::now();
        let mut recovered = Recovered::new(durable.paging.memory_max_bytes);
        let mut damage = None;
        let (journal, found) = ferromq_store::Journal::open(durable.journal.clone(), |r| {
            if damage.is_none() {
                let lsn = r.lsn;
                if let Err(e) = recovered.apply(r) {
                    damage = Some(format!("record {lsn}: {e}"));
                }
            }
        })
        .map_err(|e| CoreError::Storage(e.to_string()))?;
        if let Some(d) = damage {
            return Err(CoreError::Storage(format!(
                "journal in {} cannot be replayed: {d}",
                durable.journal.dir.display()
            )));
        }
        let journal = Arc::new(journal);
        let pager = crate::paging::Pager::open(durable.paging.clone()).map_err(|e| {
            CoreError::Storage(format!(
                "cannot prepare the paging directory {}: {e}",
                durable.paging.dir.display()
            ))
        })?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (synced_tx, synced_rx) = tokio::sync::watch::channel(SyncState::default());
        let handle = Arc::new(Durable::new(
            tx,
            synced_rx,
            recovered.pid_max + 1,
            durable.backlog_max_bytes,
            journal.clone(),
            pager,
        ));
        let broker = Self::build(config, clock, Some(handle.clone()));
        for u in recovered.users.values() {
            if !broker.0.users.restore(u.record.clone()) {
                tracing::warn!(user = %u.record.name, "a journaled user is now in the configuration; the configuration wins");
            }
        }
        let mut report = recovered
            .restore(|v| broker.vhost(v), &journal)
            .map_err(|e| {
                CoreError::Storage(format!(
                    "journal in {} cannot be replayed: {e}",
                    durable.journal.dir.display()
                ))
            })?;
        report.truncated = found.truncated.map(|t| {
            format!(
                "{} at offset {} ({} bytes)",
                t.path.display(),
                t.offset,
                t.bytes
            )
        });
        let persister = Persister::new(
            crate::durable::persister_parts(journal, rx, handle, synced_tx, durable),
            &mut recovered,
        );
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(Opened {
            broker,
            persister,
            report,
        })
    }

    /// Waits on the synced watermark for [`PublishOutcome::ticket`](crate::PublishOutcome);
    /// `None` for a broker without a store.
    pub fn sync_waiter(&self) -> Option<SyncWaiter> {
        self.0.durable.as_ref().map(|d| d.waiter())
    }

    /// The journal's counters (fsyncs, segments, live records); `None` without a store.
    pub fn store_stats(&self) -> Option<ferromq_store::StoreStats> {
        self.0.durable.as_ref().map(|d| d.stats())
    }

    /// Paging counters: body bytes of ready messages in memory (all queues) and messages
    /// paged out since start; `None` without a store.
    pub fn paging_stats(&self) -> Option<PagingStats> {
        self.0.durable.as_ref().map(|d| PagingStats {
            resident_bytes: d.pager().resident(),
            paged_out: d.pager().paged_out(),
            unwritten_bytes: d.pager().unwritten(),
            writes_failing: d.pager().is_failing(),
        })
    }

    /// A ticket covering every journal record submitted so far (by any connection): once it
    /// is synced, so is everything this connection did before asking. `None` without a
    /// store.
    pub fn sync_point(&self) -> Option<SyncTicket> {
        self.0.durable.as_ref().map(|d| d.sync_point())
    }

    /// True unless producers of persistent messages should pause (the journal is behind).
    pub fn has_durable_capacity(&self) -> bool {
        self.0.durable.as_ref().is_none_or(|d| d.has_capacity())
    }

    /// Resolves once producers of persistent messages may go on (flow control).
    pub async fn durable_capacity(&self) {
        if let Some(d) = &self.0.durable {
            d.capacity().await;
        }
    }

    /// Writes and fsyncs everything submitted and closes the journal; the persister task
    /// then ends. Publishes after this are not stored.
    pub async fn close(&self) -> Result<(), CoreError> {
        match &self.0.durable {
            Some(d) => d.close().await,
            None => Ok(()),
        }
    }

    /// The user database.
    pub fn users(&self) -> &Users {
        &self.0.users
    }

    /// Creates or replaces a user at run time, as `rabbitmqctl add_user` or the admin API
    /// would; journaled (the password only as its salted hash), so a restart keeps it.
    /// Users from the configuration cannot be changed this way. The ticket resolves once the
    /// change is synced; `None` without a store.
    pub fn put_user(&self, record: UserRecord) -> Result<Option<SyncTicket>, CoreError> {
        let _order = self.0.user_changes.lock();
        let payload = crate::durable::codec::user_record(&record);
        let name = ByteString::from(record.name.as_str());
        self.0.users.put(record)?;
        Ok(self.journal_user(crate::durable::codec::kind::USER_PUT, payload, name))
    }

    /// Deletes a run-time user (connections it has open stay open, as in RabbitMQ until they
    /// are closed); journaled.
    pub fn delete_user(&self, name: &str) -> Result<Option<SyncTicket>, CoreError> {
        let _order = self.0.user_changes.lock();
        if !self.0.users.remove(name)? {
            return Err(CoreError::NotFound(format!("no user '{name}'")));
        }
        let mut enc = crate::durable::codec::Enc::with_capacity(8 + name.len());
        enc.str(name);
        Ok(self.journal_user(
            crate::durable::codec::kind::USER_DELETE,
            enc.finish(),
            name.into(),
        ))
    }

    fn journal_user(
        &self,
        kind: u8,
        payload: bytes::Bytes,
        name: ByteString,
    ) -> Option<SyncTicket> {
        let d = self.0.durable.as_ref()?;
        let meta = crate::durable::Meta::Object {
            vhost: ByteString::new(),
            name,
        };
        Some(d.submit(kind, payload, meta))
    }

    /// Bounds in force.
    pub fn limits(&self) -> &CoreLimits {
        &self.0.limits
    }

    /// Now, by the broker's clock (milliseconds since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }

    /// A vhost by name.
    pub fn vhost(&self, name: &str) -> Option<Vhost> {
        self.0.vhosts.read().get(name).cloned()
    }

    /// Every vhost's name.
    pub fn vhost_names(&self) -> Vec<String> {
        self.0.vhosts.read().keys().cloned().collect()
    }

    /// A fresh id, unique for the broker's lifetime (connections, consumers).
    pub fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Checks credentials (`peer` is the client's address).
    pub fn authenticate(
        &self,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.0.users.authenticate(user, password, peer)
    }

    /// Opens a connection of `principal` to `vhost`.
    pub fn connect(&self, principal: Principal, vhost: &str) -> Result<Connection, CoreError> {
        if !principal.may_open(vhost) {
            return Err(CoreError::AccessRefused(format!(
                "access to vhost '{vhost}' refused for user '{}'",
                principal.name
            )));
        }
        let v = self
            .vhost(vhost)
            .ok_or_else(|| CoreError::NotFound(format!("no vhost '{vhost}'")))?;
        Ok(Connection {
            id: self.next_id(),
            vhost: v,
            principal,
            broker: self.clone(),
            exclusive: Mutex::new(Vec::new()),
        })
    }

    /// Periodic work on every vhost; the server calls this about once a second.
    pub fn housekeeping(&self) {
        let vhosts: Vec<Vhost> = self.0.vhosts.read().values().cloned().collect();
        for v in vhosts {
            v.housekeeping();
        }
    }
}

/// One client connection's view of the core. Dropping it deletes the exclusive queues it
/// declared; consumers end when their [`ConsumerHandle`]s are dropped.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    vhost: Vhost,
    principal: Principal,
    broker: Broker,
    exclusive: Mutex<Vec<ByteString>>,
}

impl Connection {
    /// The connection's id (owner of its exclusive queues).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The vhost it opened.
    pub fn vhost(&self) -> &Vhost {
        &self.vhost
    }

    /// The authenticated user.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Declares a queue owned (if exclusive) by this connection.
    pub fn declare_queue(
        &self,
        name: &str,
        options: QueueOptions,
        passive: bool,
    ) -> Result<(Arc<Queue>, QueueStats), CoreError> {
        let exclusive = options.exclusive;
        let (q, stats) = self.vhost.declare_queue(name, options, passive, self.id)?;
        if exclusive && !passive {
            let mut mine = self.exclusive.lock();
            if !mine.contains(q.name()) {
                mine.push(q.name().clone());
            }
        }
        Ok((q, stats))
    }

    /// Starts consuming from `queue`.
    pub fn consume(&self, queue: &str, spec: ConsumerSpec) -> Result<ConsumerHandle, CoreError> {
        let q = self.vhost.queue_for(queue, self.id)?;
        q.consume(spec, self.id, self.broker.next_id())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for name in self.exclusive.get_mut().drain(..) {
            if let Some(q) = self.vhost.queue(&name) {
                if q.owner() == Some(self.id) {
                    let _ = self.vhost.delete_queue(&name, false, false, self.id);
                }
            }
        }
    }
}
