//! A virtual host: the namespace of exchanges and queues, and routing through them.
//!
//! # Lock order
//! `topology` (vhost) -> `Exchange::routes` -> `Queue::state`. Routing collects the target
//! queues under the first two and releases them before any queue lock is taken; a queue
//! never calls back into the vhost while holding its own lock (see `queue::Effects`).

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use base64::Engine as _;
use bytestring::ByteString;
use parking_lot::RwLock;
use smallvec::SmallVec;

use crate::clock::Clock;
use crate::durable::{codec, Durable, Meta, SyncTicket};
use crate::error::CoreError;
use crate::exchange::{BindingInfo, Exchange, ExchangeKind, ExchangeOptions, Target};
use crate::limits::CoreLimits;
use crate::message::{Death, DeathReason, FieldValue, Message};
use crate::queue::{Enqueued, Home, Queue, QueueOptions, QueueStats};
use crate::queue_args::QueueArgs;

/// The result of publishing one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Queues that accepted it.
    pub accepted: usize,
    /// Queues that refused it (full, `reject-publish`): a publisher confirm must nack.
    pub rejected: usize,
    /// Set when the message was journaled (persistent, routed to durable queues): confirm
    /// it to the producer only once a [`SyncWaiter`](crate::SyncWaiter) says it is synced.
    pub ticket: Option<SyncTicket>,
}

impl PublishOutcome {
    /// No queue was found for it (AMQP `mandatory` returns it).
    pub fn unroutable(&self) -> bool {
        self.accepted == 0 && self.rejected == 0
    }
}

#[derive(Debug, Default)]
struct Topology {
    exchanges: HashMap<ByteString, Arc<Exchange>>,
    queues: HashMap<ByteString, Arc<Queue>>,
}

/// Shared state of a vhost; reached through [`Vhost`].
#[derive(Debug)]
pub struct VhostInner {
    name: ByteString,
    topology: RwLock<Topology>,
    limits: CoreLimits,
    clock: Arc<dyn Clock>,
    me: Weak<VhostInner>,
    durable: Option<Arc<Durable>>,
}

/// A cloneable handle to a vhost.
#[derive(Clone, Debug)]
pub struct Vhost(Arc<VhostInner>);

const BUILTIN_EXCHANGES: [(&str, ExchangeKind); 6] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
    ("", ExchangeKind::Direct),
];

fn not_found_queue(name: &str, vhost: &str) -> CoreError {
    CoreError::NotFound(format!("no queue '{name}' in vhost '{vhost}'"))
}

fn not_found_exchange(name: &str, vhost: &str) -> CoreError {
    CoreError::NotFound(format!("no exchange '{name}' in vhost '{vhost}'"))
}

fn inequivalent(
    what: &str,
    kind: &str,
    name: &str,
    vhost: &str,
    got: impl std::fmt::Debug,
    have: impl std::fmt::Debug,
) -> CoreError {
    CoreError::PreconditionFailed(format!(
        "inequivalent arg '{what}' for {kind} '{name}' in vhost '{vhost}': received {got:?} but current is {have:?}"
    ))
}

/// A fresh server-generated queue name, as RabbitMQ makes them.
pub fn generated_queue_name(prefix: &str) -> String {
    let mut raw = [0u8; 16];
    getrandom::getrandom(&mut raw).expect("the OS random source is available");
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

impl Vhost {
    pub(crate) fn new(
        name: &str,
        limits: CoreLimits,
        clock: Arc<dyn Clock>,
        durable: Option<Arc<Durable>>,
    ) -> Self {
        let inner = Arc::new_cyclic(|me| VhostInner {
            name: name.into(),
            topology: RwLock::new(Topology::default()),
            limits,
            clock,
            me: me.clone(),
            durable,
        });
        {
            let mut t = inner.topology.write();
            for (n, kind) in BUILTIN_EXCHANGES {
                t.exchanges.insert(
                    n.into(),
                    Exchange::new(n.into(), kind, ExchangeOptions::default()),
                );
            }
        }
        Vhost(inner)
    }

    pub(crate) fn from_inner(inner: Arc<VhostInner>) -> Self {
        Vhost(inner)
    }

    /// The vhost's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Declares an exchange, or checks that an existing one is equivalent.
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
        passive: bool,
    ) -> Result<Arc<Exchange>, CoreError> {
        let v = &self.0.name;
        if name.is_empty() && !passive {
            return Err(CoreError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        if let Some(e) = self.exchange(name) {
            if passive {
                return Ok(e);
            }
            if e.kind() != kind {
                return Err(inequivalent(
                    "type",
                    "exchange",
                    name,
                    v,
                    kind.as_str(),
                    e.kind().as_str(),
                ));
            }
            let have = e.options();
            if have.durable != options.durable {
                return Err(inequivalent(
                    "durable",
                    "exchange",
                    name,
                    v,
                    options.durable,
                    have.durable,
                ));
            }
            if have.auto_delete != options.auto_delete {
                return Err(inequivalent(
                    "auto_delete",
                    "exchange",
                    name,
                    v,
                    options.auto_delete,
                    have.auto_delete,
                ));
            }
            if have.internal != options.internal {
                return Err(inequivalent(
                    "internal",
                    "exchange",
                    name,
                    v,
                    options.internal,
                    have.internal,
                ));
            }
            // Of the arguments, RabbitMQ compares only this one.
            let alternate = options
                .arguments
                .get("alternate-exchange")
                .and_then(FieldValue::as_str);
            if e.alternate().map(|a| &**a) != alternate {
                return Err(inequivalent(
                    "alternate-exchange",
                    "exchange",
                    name,
                    v,
                    alternate,
                    e.alternate(),
                ));
            }
            return Ok(e);
        }
        if passive {
            return Err(not_found_exchange(name, v));
        }
        if name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let mut t = self.0.topology.write();
        if let Some(e) = t.exchanges.get(name) {
            return Ok(e.clone());
        }
        if t.exchanges.len() >= self.0.limits.exchanges_max {
            return Err(CoreError::ResourceLimit(format!(
                "vhost '{v}' has too many exchanges"
            )));
        }
        if let (true, Some(d)) = (options.durable, &self.0.durable) {
            let mut enc = codec::Enc::with_capacity(64);
            enc.str(v)
                .str(name)
                .str(kind.as_str())
                .exchange_options(&options);
            d.submit(
                codec::kind::EXCHANGE_DECLARE,
                enc.finish(),
                self.0.object_meta(name),
            );
        }
        let e = Exchange::new(name.into(), kind, options);
        t.exchanges.insert(name.into(), e.clone());
        Ok(e)
    }

    /// Deletes an exchange and every binding from or to it.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), CoreError> {
        let v = &self.0.name;
        if name.is_empty() || name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "operation not permitted on the default exchange or '{name}'"
            )));
        }
        let mut t = self.0.topology.write();
        let Some(e) = t.exchanges.get(name).cloned() else {
            return Err(not_found_exchange(name, v));
        };
        if if_unused && e.binding_count() > 0 {
            return Err(CoreError::PreconditionFailed(format!(
                "exchange '{name}' in vhost '{v}' in use"
            )));
        }
        t.exchanges.remove(name);
        if e.options().durable {
            self.0.journal_object(codec::kind::EXCHANGE_DELETE, name);
        }
        let target = Target::Exchange(e);
        let sources: Vec<Arc<Exchange>> = t.exchanges.values().cloned().collect();
        drop(t);
        for s in sources {
            if s.unbind_target(&target) > 0 {
                self.auto_delete_exchange(&s);
            }
        }
        Ok(())
    }

    fn auto_delete_exchange(&self, e: &Arc<Exchange>) {
        if e.options().auto_delete && e.binding_count() == 0 {
            let _ = self.delete_exchange(e.name(), true);
        }
    }

    /// An exchange by name.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.0.topology.read().exchanges.get(name).cloned()
    }

    /// A queue by name.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.0.topology.read().queues.get(name).cloned()
    }

    /// A queue by name that `owner` may use (exclusive queues belong to one connection).
    pub fn queue_for(&self, name: &str, owner: u64) -> Result<Arc<Queue>, CoreError> {
        let q = self
            .queue(name)
            .ok_or_else(|| not_found_queue(name, &self.0.name))?;
        if q.owner().is_some_and(|o| o != owner) {
            return Err(CoreError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'",
                self.0.name
            )));
        }
        Ok(q)
    }

    /// Declares a queue (an empty name gets a generated `amq.gen-` name), or checks that an
    /// existing one is equivalent. Returns the queue and its counts.
    pub fn declare_queue(
        &self,
        name: &str,
        options: QueueOptions,
        passive: bool,
        owner: u64,
    ) -> Result<(Arc<Queue>, QueueStats), CoreError> {
        let v = &self.0.name;
        if passive {
            let q = self.queue_for(name, owner)?;
            q.touch();
            let stats = q.stats();
            return Ok((q, stats));
        }
        let generated;
        let name = if name.is_empty() {
            generated = generated_queue_name("amq.gen-");
            generated.as_str()
        } else if name.starts_with("amq.") {
            return Err(CoreError::AccessRefused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        } else {
            name
        };
        let mut args = QueueArgs::parse_with(&options.arguments, &self.0.limits.selector())?;
        // Before the equivalence check: the stored arguments carry the default too.
        if args.max_length.is_none() {
            args.max_length = self.0.limits.queue_length_default_max;
        }
        let mut t = self.0.topology.write();
        if let Some(q) = t.queues.get(name).cloned() {
            drop(t);
            if q.owner().is_some_and(|o| o != owner) {
                return Err(CoreError::ResourceLocked(format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '{v}'"
                )));
            }
            let have = q.options();
            if have.durable != options.durable {
                return Err(inequivalent(
                    "durable",
                    "queue",
                    name,
                    v,
                    options.durable,
                    have.durable,
                ));
            }
            if have.exclusive != options.exclusive {
                return Err(inequivalent(
                    "exclusive",
                    "queue",
                    name,
                    v,
                    options.exclusive,
                    have.exclusive,
                ));
            }
            if have.auto_delete != options.auto_delete {
                return Err(inequivalent(
                    "auto_delete",
                    "queue",
                    name,
                    v,
                    options.auto_delete,
                    have.auto_delete,
                ));
            }
            if q.args() != &args {
                return Err(inequivalent(
                    "arguments",
                    "queue",
                    name,
                    v,
                    &options.arguments,
                    &have.arguments,
                ));
            }
            q.touch();
            let stats = q.stats();
            return Ok((q, stats));
        }
        if t.queues.len() >= self.0.limits.queues_max {
            return Err(CoreError::ResourceLimit(format!(
                "vhost '{v}' has too many queues"
            )));
        }
        let journal = match &self.0.durable {
            Some(d) if options.durable && !options.exclusive => {
                let mut enc = codec::Enc::with_capacity(64);
                enc.str(v)
                    .str(name)
                    .u8(options.auto_delete as u8)
                    .table(&options.arguments);
                d.submit(
                    codec::kind::QUEUE_DECLARE,
                    enc.finish(),
                    self.0.object_meta(name),
                );
                Some((d.clone(), v.clone()))
            }
            _ => None,
        };
        let q = Queue::new(
            name.into(),
            options.clone(),
            args,
            options.exclusive.then_some(owner),
            self.0.home(journal),
        );
        t.queues.insert(name.into(), q.clone());
        let stats = q.stats();
        Ok((q, stats))
    }

    /// Deletes a queue; returns the number of ready messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        owner: u64,
    ) -> Result<u64, CoreError> {
        let q = self.queue_for(name, owner)?;
        let stats = q.stats();
        if if_unused && stats.consumers > 0 {
            return Err(CoreError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' in use",
                self.0.name
            )));
        }
        if if_empty && (stats.messages > 0 || stats.unacked > 0) {
            return Err(CoreError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' is not empty",
                self.0.name
            )));
        }
        Ok(self.remove_queue(&q))
    }

    /// Deletes `name` only if it is still the queue at `ptr` (auto-delete and expiry race
    /// with redeclaration).
    pub(crate) fn delete_queue_if_same(&self, name: &str, ptr: *const Queue) {
        if let Some(q) = self.queue(name) {
            if Arc::as_ptr(&q) == ptr {
                self.remove_queue(&q);
            }
        }
    }

    fn remove_queue(&self, q: &Arc<Queue>) -> u64 {
        let exchanges: Vec<Arc<Exchange>> = {
            let mut t = self.0.topology.write();
            match t.queues.get(q.name()) {
                Some(cur) if Arc::ptr_eq(cur, q) => {
                    t.queues.remove(q.name());
                    // Under the lock, so that a redeclaration's record comes after it.
                    if q.is_journaled() {
                        self.0.journal_object(codec::kind::QUEUE_DELETE, q.name());
                    }
                }
                _ => return 0,
            }
            t.exchanges.values().cloned().collect()
        };
        let target = Target::Queue(q.clone());
        for e in exchanges {
            if e.unbind_target(&target) > 0 {
                self.auto_delete_exchange(&e);
            }
        }
        q.mark_deleted("queue deleted")
    }

    /// Removes all ready messages of a queue.
    pub fn purge_queue(&self, name: &str, owner: u64) -> Result<u64, CoreError> {
        Ok(self.queue_for(name, owner)?.purge())
    }

    /// Binds a queue to an exchange.
    pub fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: crate::FieldTable,
        owner: u64,
    ) -> Result<(), CoreError> {
        let q = self.queue_for(queue, owner)?;
        let e = self.bindable_source(exchange)?;
        let journal = e.options().durable && q.is_journaled();
        let record = journal.then(|| {
            self.0
                .binding_record(exchange, false, queue, key, &arguments)
        });
        e.bind(
            key.into(),
            arguments,
            Target::Queue(q),
            self.0.limits.bindings_max,
            || self.0.journal_binding(codec::kind::BIND, record),
        )?;
        Ok(())
    }

    /// Removes a queue binding (absent bindings are not an error, as in RabbitMQ).
    pub fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &crate::FieldTable,
        owner: u64,
    ) -> Result<(), CoreError> {
        let q = self.queue_for(queue, owner)?;
        let e = self.bindable_source(exchange)?;
        let journal = e.options().durable && q.is_journaled();
        let record = journal.then(|| {
            self.0
                .binding_record(exchange, false, queue, key, arguments)
        });
        if e.unbind(key, arguments, &Target::Queue(q), || {
            self.0.journal_binding(codec::kind::UNBIND, record)
        }) {
            self.auto_delete_exchange(&e);
        }
        Ok(())
    }

    /// Binds exchange `destination` to exchange `source`.
    pub fn bind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: crate::FieldTable,
    ) -> Result<(), CoreError> {
        let d = self.bindable_source(destination)?;
        let s = self.bindable_source(source)?;
        let journal = s.options().durable && d.options().durable && self.0.durable.is_some();
        let record = journal.then(|| {
            self.0
                .binding_record(source, true, destination, key, &arguments)
        });
        s.bind(
            key.into(),
            arguments,
            Target::Exchange(d),
            self.0.limits.bindings_max,
            || self.0.journal_binding(codec::kind::BIND, record),
        )?;
        Ok(())
    }

    /// Removes an exchange-to-exchange binding.
    pub fn unbind_exchange(
        &self,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &crate::FieldTable,
    ) -> Result<(), CoreError> {
        let d = self.bindable_source(destination)?;
        let s = self.bindable_source(source)?;
        let journal = s.options().durable && d.options().durable && self.0.durable.is_some();
        let record = journal.then(|| {
            self.0
                .binding_record(source, true, destination, key, arguments)
        });
        if s.unbind(key, arguments, &Target::Exchange(d), || {
            self.0.journal_binding(codec::kind::UNBIND, record)
        }) {
            self.auto_delete_exchange(&s);
        }
        Ok(())
    }

    fn bindable_source(&self, name: &str) -> Result<Arc<Exchange>, CoreError> {
        if name.is_empty() {
            return Err(CoreError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        self.exchange(name)
            .ok_or_else(|| not_found_exchange(name, &self.0.name))
    }

    /// Every binding in the vhost (for the admin API).
    pub fn bindings(&self) -> Vec<BindingInfo> {
        let exchanges: Vec<Arc<Exchange>> =
            self.0.topology.read().exchanges.values().cloned().collect();
        exchanges.iter().flat_map(|e| e.bindings()).collect()
    }

    /// Every queue.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.0.topology.read().queues.values().cloned().collect()
    }

    /// Every exchange.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.0.topology.read().exchanges.values().cloned().collect()
    }

    /// Publishes a message to `msg.exchange` with `msg.routing_key`.
    pub fn publish(&self, msg: Arc<Message>) -> Result<PublishOutcome, CoreError> {
        let e = self
            .exchange(&msg.exchange)
            .ok_or_else(|| not_found_exchange(&msg.exchange, &self.0.name))?;
        if e.options().internal {
            return Err(CoreError::AccessRefused(format!(
                "cannot publish to internal exchange '{}' in vhost '{}'",
                msg.exchange, self.0.name
            )));
        }
        let queues = self.0.route(&e, &msg);
        if let Some(d) = &self.0.durable {
            if d.pager().is_failing() && queues.iter().any(|q| q.refuses_paging(&msg)) {
                return Err(CoreError::ResourceLimit(
                    "spill files cannot be written (is the disk full?) and memory holds all it \
                     may of what they could not take: messages for queues over their memory \
                     budget are refused until space is freed"
                        .into(),
                ));
            }
        }
        if msg.properties.persistent {
            if let Some(d) = &self.0.durable {
                if queues.iter().any(|q| q.is_journaled()) {
                    d.admit()?;
                }
            }
        }
        Ok(self.0.deliver(&queues, &msg))
    }

    /// Puts back a durable exchange from the journal (not journaled again).
    pub(crate) fn restore_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) {
        let e = Exchange::new(name.into(), kind, options);
        self.0.topology.write().exchanges.insert(name.into(), e);
    }

    /// Puts back a durable queue from the journal (not journaled again).
    pub(crate) fn restore_queue(
        &self,
        name: &str,
        auto_delete: bool,
        arguments: crate::FieldTable,
    ) -> Result<Arc<Queue>, CoreError> {
        let mut args = QueueArgs::parse_with(&arguments, &self.0.limits.selector())?;
        if args.max_length.is_none() {
            args.max_length = self.0.limits.queue_length_default_max;
        }
        let options = QueueOptions {
            durable: true,
            exclusive: false,
            auto_delete,
            arguments,
        };
        let journal = self.0.durable.clone().map(|d| (d, self.0.name.clone()));
        let q = Queue::new(name.into(), options, args, None, self.0.home(journal));
        self.0
            .topology
            .write()
            .queues
            .insert(name.into(), q.clone());
        Ok(q)
    }

    /// Puts back a binding from the journal (not journaled again); false if an end is
    /// missing.
    pub(crate) fn restore_binding(
        &self,
        source: &str,
        destination_is_exchange: bool,
        destination: &str,
        key: &str,
        arguments: crate::FieldTable,
    ) -> bool {
        let (Some(s), target) = (
            self.exchange(source),
            if destination_is_exchange {
                self.exchange(destination).map(Target::Exchange)
            } else {
                self.queue(destination).map(Target::Queue)
            },
        ) else {
            return false;
        };
        let Some(target) = target else { return false };
        s.bind(key.into(), arguments, target, usize::MAX, || {})
            .is_ok()
    }

    /// Periodic work: message TTL at queue heads, queue expiry.
    pub fn housekeeping(&self) {
        for q in self.queues() {
            if q.housekeeping() {
                self.delete_queue_if_same(q.name(), Arc::as_ptr(&q));
            }
        }
    }
}

/// Whether dead-lettering a message with `deaths` (newest first) into `queue` closes a
/// cycle with no client in it: the message died in `queue` before, and neither that death
/// nor any since was a rejection. Such a target is skipped. Only the stretch since the last
/// death in `queue` counts: an old rejection elsewhere does not license a loop that has run
/// without one since (it would bounce forever, or recurse without bound when the queues
/// overflow into each other).
fn is_automatic_cycle(deaths: &[Death], queue: &str) -> bool {
    match deaths.iter().position(|d| d.queue == queue) {
        None => false,
        Some(last) => deaths[..=last].iter().all(|d| d.reason.is_automatic()),
    }
}

impl VhostInner {
    /// Journals a persistent message bound for durable queues (before any queue can hand
    /// it to a consumer, whose ack must come after it in the journal), then enqueues it.
    fn deliver(&self, queues: &[Arc<Queue>], msg: &Arc<Message>) -> PublishOutcome {
        let mut out = PublishOutcome::default();
        let mut pid = 0;
        if let (true, Some(d)) = (msg.properties.persistent, &self.durable) {
            let journaled = queues.iter().filter(|q| q.is_journaled()).count();
            if journaled > 0 {
                pid = d.next_pid();
                let mut enc = codec::Enc::with_capacity(
                    128 + msg.body.len() + queues.iter().map(|q| q.name().len() + 4).sum::<usize>(),
                );
                enc.u64(pid)
                    .u64(self.clock.now_ms())
                    .str(&self.name)
                    .u32(journaled as u32);
                for q in queues.iter().filter(|q| q.is_journaled()) {
                    enc.str(q.name());
                }
                enc.message(msg);
                out.ticket = Some(d.submit(
                    codec::kind::PUBLISH,
                    enc.finish(),
                    Meta::Publish {
                        pid,
                        queues: journaled as u32,
                    },
                ));
            }
        }
        for q in queues {
            let outcome = if q.is_journaled() {
                q.enqueue_journaled(msg.clone(), pid)
            } else {
                q.enqueue(msg.clone())
            };
            match outcome {
                Enqueued::Accepted => out.accepted += 1,
                Enqueued::Rejected => out.rejected += 1,
            }
        }
        out
    }

    fn home(&self, journal: Option<(Arc<Durable>, ByteString)>) -> Home {
        Home {
            vhost: self.me.clone(),
            clock: self.clock.clone(),
            consumers_max: self.limits.consumers_per_queue_max,
            selector_scan_max: self.limits.selector_scan_max,
            groups_max: self.limits.message_groups_max,
            journal,
            pager: self.durable.as_ref().map(|d| d.pager().clone()),
        }
    }

    fn object_meta(&self, name: &str) -> Meta {
        Meta::Object {
            vhost: self.name.clone(),
            name: name.into(),
        }
    }

    /// Journals the deletion of a durable exchange or queue.
    fn journal_object(&self, kind: u8, name: &str) {
        if let Some(d) = &self.durable {
            let mut enc = codec::Enc::with_capacity(32 + name.len());
            enc.str(&self.name).str(name);
            d.submit(kind, enc.finish(), self.object_meta(name));
        }
    }

    /// The payload naming a binding, and its bookkeeping.
    fn binding_record(
        &self,
        source: &str,
        destination_is_exchange: bool,
        destination: &str,
        key: &str,
        arguments: &crate::FieldTable,
    ) -> (bytes::Bytes, Meta) {
        let mut enc = codec::Enc::with_capacity(64);
        enc.str(&self.name)
            .str(source)
            .u8(destination_is_exchange as u8)
            .str(destination)
            .str(key)
            .table(arguments);
        let meta = Meta::Binding {
            vhost: self.name.clone(),
            source: source.into(),
            destination: destination.into(),
            destination_is_exchange,
        };
        (enc.finish(), meta)
    }

    /// Journals a binding change (called under the exchange's binding lock).
    fn journal_binding(&self, kind: u8, record: Option<(bytes::Bytes, Meta)>) {
        if let (Some(d), Some((payload, meta))) = (&self.durable, record) {
            d.submit(kind, payload, meta);
        }
    }

    /// The queues `msg` goes to from exchange `e`, deduplicated, without those whose
    /// `x-selector` does not select it.
    fn route(&self, e: &Arc<Exchange>, msg: &Message) -> SmallVec<[Arc<Queue>; 4]> {
        let mut queues = SmallVec::new();
        if e.name().is_empty() {
            if let Some(q) = self.topology.read().queues.get(&msg.routing_key) {
                queues.push(q.clone());
            }
        } else {
            self.route_from(e, msg, &mut queues, &mut SmallVec::new(), 0);
            queues.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
            queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        queues.retain(|q| {
            q.args()
                .selector
                .as_ref()
                .is_none_or(|s| s.0.matches(msg, 0))
        });
        queues
    }

    /// Routes through `e` and the exchanges it leads to; true if that reached a queue.
    /// `seen` holds each exchange visited for this message with its result, so that each
    /// is routed through once: cycles and diamonds of exchange bindings cost one visit per
    /// exchange, not one per path (which grows exponentially with the hop limit).
    fn route_from(
        &self,
        e: &Arc<Exchange>,
        msg: &Message,
        queues: &mut SmallVec<[Arc<Queue>; 4]>,
        seen: &mut SmallVec<[(*const Exchange, bool); 4]>,
        hops: usize,
    ) -> bool {
        if let Some(&(_, routed)) = seen.iter().find(|(x, _)| *x == Arc::as_ptr(e)) {
            return routed;
        }
        let slot = seen.len();
        seen.push((Arc::as_ptr(e), false));
        let before = queues.len();
        let mut next = SmallVec::<[Arc<Exchange>; 2]>::new();
        e.route(msg, queues, &mut next);
        let mut routed = queues.len() > before;
        if hops < self.limits.exchange_hops_max {
            for n in next {
                routed |= self.route_from(&n, msg, queues, seen, hops + 1);
            }
            if !routed {
                if let Some(alt) = e
                    .alternate()
                    .and_then(|a| self.topology.read().exchanges.get(a).cloned())
                {
                    routed = self.route_from(&alt, msg, queues, seen, hops + 1);
                }
            }
        }
        seen[slot].1 = routed;
        routed
    }

    /// Republishes messages that died in `queue` to its dead-letter exchange, if it has
    /// one; otherwise they are dropped. Dead-letter cycles without a client in them are
    /// broken as RabbitMQ breaks them (see [`is_automatic_cycle`]).
    pub(crate) fn dead_letter(&self, queue: &Queue, dead: Vec<(Arc<Message>, DeathReason)>) {
        let args = queue.args();
        let Some(dlx) = &args.dead_letter_exchange else {
            return;
        };
        let Some(e) = self.topology.read().exchanges.get(dlx).cloned() else {
            tracing::debug!(queue = %queue.name(), dlx = %dlx, "dead-letter exchange missing; message dropped");
            return;
        };
        let now = self.clock.now_ms();
        for (msg, reason) in dead {
            let mut m = Message::clone(&msg);
            let original_expiration_ms = m.properties.expiration_ms.take();
            match m
                .deaths
                .iter()
                .position(|d| d.queue == *queue.name() && d.reason == reason)
            {
                Some(pos) => {
                    let mut d = m.deaths.remove(pos);
                    d.count += 1;
                    d.time_ms = now;
                    m.deaths.insert(0, d);
                }
                None => m.deaths.insert(
                    0,
                    Death {
                        queue: queue.name().clone(),
                        reason,
                        exchange: m.exchange.clone(),
                        routing_key: m.routing_key.clone(),
                        count: 1,
                        time_ms: now,
                        original_expiration_ms,
                    },
                ),
            }
            m.deaths.truncate(self.limits.deaths_max);
            if let Some(k) = &args.dead_letter_routing_key {
                m.routing_key = k.clone();
            }
            m.exchange = dlx.clone();
            let mut targets = self.route(&e, &m);
            targets.retain(|q| !is_automatic_cycle(&m.deaths, q.name()));
            self.deliver(&targets, &Arc::new(m));
        }
    }
}
