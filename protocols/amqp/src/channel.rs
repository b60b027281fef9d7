//! One channel's protocol state: what it is waiting for, its consumers, its unacked
//! deliveries, and its mode (plain, confirm or transactional). The connection-level
//! state machine (`session.rs`) routes frames here; `basic.rs` holds the `basic.*`
//! methods, this file the rest and the content assembly.
//!
//! # Invariants
//! - `incoming` is `Some` exactly between a `basic.publish` and the last frame of its
//!   content; while it is, only content frames are accepted (the session enforces it).
//! - Every entry of `unacked` (and of a transaction's `settled`) counts once in the
//!   `outstanding` of the consumer it was delivered to (`basic.get` deliveries count
//!   nowhere).
//! - `consumers` and `retired` together hold exactly the consumer ids that map to this
//!   channel in the session's index.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{access, channel, confirm, exchange, queue, tx, AMQPClass};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use ferromq_core::IdMap;

use crate::adapter::{self, ConsumerHandle, CreditGate, Link, Message, Transaction, Unacked};
use crate::codec::{encode_method, short};
use crate::confirms::Confirms;
use crate::error::{code, AmqpError};
use crate::limits::{Limits, BODY_RESERVE_MAX_BYTES};
use crate::out::Out;

/// What a channel operation needs from its connection.
pub(crate) struct Ctx<'a> {
    pub(crate) link: &'a Link,
    pub(crate) out: &'a mut Out,
    pub(crate) scratch: &'a mut Vec<u8>,
    pub(crate) frame_max: u32,
    pub(crate) limits: &'a Limits,
    /// Core consumer id -> channel, for routing deliveries.
    pub(crate) consumers: &'a mut IdMap<u64, u16>,
    /// The client asked for `basic.cancel` when the broker cancels a consumer.
    pub(crate) cancel_notify: bool,
}

impl Ctx<'_> {
    pub(crate) fn send(&mut self, channel: u16, m: AMQPClass) {
        encode_method(self.out, self.scratch, channel, &m);
    }
}

/// A message being received: the `basic.publish` and its content so far.
pub(crate) struct Incoming {
    pub(crate) exchange: ByteString,
    pub(crate) routing_key: ByteString,
    pub(crate) mandatory: bool,
    pub(crate) header: Option<(u64, amq_protocol::protocol::BasicProperties)>,
    pub(crate) body: Body,
}

/// Body frames so far. One frame is kept as the slice it arrived in (no copy); only a
/// body split over several frames is assembled.
pub(crate) enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::One(b) => b.len(),
            Body::Many(b) => b.len(),
        }
    }

    fn push(&mut self, piece: Bytes, total: u64) {
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty => Body::One(piece),
            Body::One(first) => {
                // Reserve for the whole body only up to a bound: the declared size is the
                // client's word, and the memory should follow the bytes actually sent.
                let reserve = total.min(BODY_RESERVE_MAX_BYTES) as usize;
                let mut all = BytesMut::with_capacity(reserve.max(first.len() + piece.len()));
                all.extend_from_slice(&first);
                all.extend_from_slice(&piece);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&piece);
                Body::Many(all)
            }
        };
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        }
    }
}

pub(crate) struct Consumer {
    pub(crate) tag: ByteString,
    pub(crate) handle: ConsumerHandle,
    pub(crate) no_ack: bool,
    /// The direct reply-to consumer: deliveries show the reply address as routing key.
    pub(crate) reply: bool,
    pub(crate) outstanding: u32,
}

/// A cancelled consumer whose deliveries are not all settled yet: its handle is kept so
/// that dropping it does not requeue what the client may still ack.
pub(crate) struct Retired {
    pub(crate) _handle: ConsumerHandle,
    pub(crate) outstanding: u32,
}

pub(crate) struct Tx {
    pub(crate) txn: Transaction,
    /// Per buffered publish: the key it was published with and the message, when
    /// mandatory (returned at commit if unroutable).
    pub(crate) returns: Vec<Option<(ByteString, Arc<Message>)>>,
    /// Deliveries settled inside the transaction: back to `unacked` on rollback.
    pub(crate) settled: Vec<(u64, Unacked)>,
    /// Commits whose `tx.commit-ok` waits for the journal to sync what they stored.
    pub(crate) commits: VecDeque<adapter::SyncTicket>,
}

pub(crate) enum Mode {
    Plain,
    Confirm(Confirms),
    Tx(Box<Tx>),
}

/// One open channel.
pub(crate) struct Channel {
    pub(crate) id: u16,
    /// The server sent `channel.close` and waits for `close-ok`.
    pub(crate) closing: bool,
    pub(crate) incoming: Option<Incoming>,
    pub(crate) next_delivery_tag: u64,
    pub(crate) unacked: BTreeMap<u64, Unacked>,
    pub(crate) consumers: IdMap<u64, Consumer>,
    pub(crate) tags: HashMap<ByteString, u64>,
    pub(crate) retired: IdMap<u64, Retired>,
    /// Per-consumer prefetch (`basic.qos`, global = false); 0 = the broker's bound.
    pub(crate) prefetch: u16,
    /// Channel-wide prefetch (`basic.qos`, global = true), shared by later consumers.
    pub(crate) global_gate: Option<Arc<CreditGate>>,
    pub(crate) mode: Mode,
    /// The queue named by an empty queue name (the last one declared here).
    pub(crate) last_queue: Option<ByteString>,
    /// Direct reply-to: the consumer's id and its private queue.
    pub(crate) reply: Option<(u64, ByteString)>,
}

fn ok(nowait: bool, ctx: &mut Ctx<'_>, ch: u16, m: AMQPClass) -> Result<(), AmqpError> {
    if !nowait {
        ctx.send(ch, m);
    }
    Ok(())
}

impl Channel {
    pub(crate) fn new(id: u16) -> Self {
        Self {
            id,
            closing: false,
            incoming: None,
            next_delivery_tag: 1,
            unacked: BTreeMap::new(),
            consumers: IdMap::default(),
            tags: HashMap::new(),
            retired: IdMap::default(),
            prefetch: 0,
            global_gate: None,
            mode: Mode::Plain,
            last_queue: None,
            reply: None,
        }
    }

    /// Whether content frames are expected next.
    pub(crate) fn expecting_content(&self) -> bool {
        self.incoming.is_some()
    }

    /// Whether confirms are ready to be sent.
    pub(crate) fn confirms_ready(&self, link: &Link) -> bool {
        matches!(&self.mode, Mode::Confirm(c) if c.ready(&|t| link.synced(t)))
    }

    /// Whether confirms wait for the journal.
    pub(crate) fn confirms_waiting(&self) -> bool {
        matches!(&self.mode, Mode::Confirm(c) if c.waiting_for_sync())
    }

    /// Sends the confirms that are ready.
    pub(crate) fn flush_confirms(
        &mut self,
        out: &mut BytesMut,
        scratch: &mut Vec<u8>,
        link: &Link,
    ) {
        if let Mode::Confirm(c) = &mut self.mode {
            c.flush(out, scratch, self.id, &|t| link.synced(t));
        }
    }

    /// Whether `tx.commit-ok`s wait for the journal.
    pub(crate) fn commits_waiting(&self) -> bool {
        matches!(&self.mode, Mode::Tx(t) if !t.commits.is_empty())
    }

    /// Sends the `tx.commit-ok`s whose transactions the journal has synced; fails the
    /// channel if the journal failed instead.
    pub(crate) fn flush_commits(
        &mut self,
        out: &mut BytesMut,
        scratch: &mut Vec<u8>,
        link: &Link,
    ) -> Result<(), AmqpError> {
        let Mode::Tx(t) = &mut self.mode else {
            return Ok(());
        };
        while let Some(&at) = t.commits.front() {
            match link.synced(at) {
                None => break,
                Some(true) => {
                    t.commits.pop_front();
                    let ok = AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {}));
                    encode_method(out, scratch, self.id, &ok);
                }
                Some(false) => {
                    t.commits.clear();
                    return Err(AmqpError::new(
                        code::INTERNAL_ERROR,
                        "the journal failed or its disk is full: the committed messages may not be stored",
                    )
                    .at(90, 20));
                }
            }
        }
        Ok(())
    }

    /// The queue an empty name stands for.
    pub(crate) fn queue_name<'a>(&'a self, name: &'a str) -> Result<&'a str, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue
            .as_deref()
            .ok_or_else(|| AmqpError::new(code::NOT_FOUND, "no previously declared queue"))
    }

    /// A method for this channel (not `channel.open`/`close`/`close-ok`, which the
    /// session handles).
    pub(crate) fn on_method(&mut self, m: AMQPClass, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let (class_id, method_id) = (m.get_amqp_class_id(), m.get_amqp_method_id());
        self.dispatch(m, ctx).map_err(|e| e.at(class_id, method_id))
    }

    fn dispatch(&mut self, m: AMQPClass, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let ch = self.id;
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    return Err(AmqpError::new(code::NOT_IMPLEMENTED, "active=false"));
                }
                ctx.send(
                    ch,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                ctx.send(
                    ch,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(m) => self.on_exchange(m, ctx),
            AMQPClass::Queue(m) => self.on_queue(m, ctx),
            AMQPClass::Basic(m) => self.on_basic(m, ctx),
            AMQPClass::Tx(m) => self.on_tx(m, ctx),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                match self.mode {
                    Mode::Tx(_) => {
                        return Err(AmqpError::precondition(
                            "cannot switch from tx to confirm mode",
                        ))
                    }
                    Mode::Plain => self.mode = Mode::Confirm(Confirms::new()),
                    Mode::Confirm(_) => {}
                }
                if !s.nowait {
                    ctx.send(
                        ch,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn on_exchange(&mut self, m: exchange::AMQPMethod, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let ch = self.id;
        match m {
            exchange::AMQPMethod::Declare(d) => {
                ctx.link.exchange_declare(&d)?;
                ok(
                    d.nowait,
                    ctx,
                    ch,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
                )
            }
            exchange::AMQPMethod::Delete(d) => {
                ctx.link.exchange_delete(&d)?;
                ok(
                    d.nowait,
                    ctx,
                    ch,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                )
            }
            exchange::AMQPMethod::Bind(b) => {
                ctx.link.exchange_binding(
                    true,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                ok(
                    b.nowait,
                    ctx,
                    ch,
                    AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                )
            }
            exchange::AMQPMethod::Unbind(b) => {
                ctx.link.exchange_binding(
                    false,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                ok(
                    b.nowait,
                    ctx,
                    ch,
                    AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                )
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn on_queue(&mut self, m: queue::AMQPMethod, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let ch = self.id;
        match m {
            queue::AMQPMethod::Declare(d) => {
                let (name, messages, consumers) = ctx.link.queue_declare(&d)?;
                self.last_queue = Some(name.clone());
                ok(
                    d.nowait,
                    ctx,
                    ch,
                    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: short(&name),
                        message_count: messages,
                        consumer_count: consumers,
                    })),
                )
            }
            queue::AMQPMethod::Bind(b) => {
                let q = self.queue_name(b.queue.as_str())?;
                let key = if b.queue.as_str().is_empty() && b.routing_key.as_str().is_empty() {
                    q
                } else {
                    b.routing_key.as_str()
                };
                ctx.link
                    .queue_binding(true, q, b.exchange.as_str(), key, &b.arguments)?;
                ok(
                    b.nowait,
                    ctx,
                    ch,
                    AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                )
            }
            queue::AMQPMethod::Unbind(b) => {
                let q = self.queue_name(b.queue.as_str())?;
                let key = if b.queue.as_str().is_empty() && b.routing_key.as_str().is_empty() {
                    q
                } else {
                    b.routing_key.as_str()
                };
                ctx.link
                    .queue_binding(false, q, b.exchange.as_str(), key, &b.arguments)?;
                ok(
                    false,
                    ctx,
                    ch,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                )
            }
            queue::AMQPMethod::Purge(p) => {
                let n = ctx.link.queue_purge(self.queue_name(p.queue.as_str())?)?;
                ok(
                    p.nowait,
                    ctx,
                    ch,
                    AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                        message_count: n,
                    })),
                )
            }
            queue::AMQPMethod::Delete(d) => {
                let n = ctx.link.queue_delete(
                    self.queue_name(d.queue.as_str())?,
                    d.if_unused,
                    d.if_empty,
                )?;
                ok(
                    d.nowait,
                    ctx,
                    ch,
                    AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                        message_count: n,
                    })),
                )
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn on_tx(&mut self, m: tx::AMQPMethod, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let ch = self.id;
        let not_tx = || AmqpError::precondition("channel is not transactional");
        match m {
            tx::AMQPMethod::Select(_) => {
                match self.mode {
                    Mode::Confirm(_) => {
                        return Err(AmqpError::precondition(
                            "cannot switch from confirm to tx mode",
                        ))
                    }
                    Mode::Plain => {
                        self.mode = Mode::Tx(Box::new(Tx {
                            txn: ctx.link.transaction(),
                            returns: Vec::new(),
                            settled: Vec::new(),
                            commits: VecDeque::new(),
                        }))
                    }
                    Mode::Tx(_) => {}
                }
                ctx.send(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            tx::AMQPMethod::Commit(_) => {
                let Mode::Tx(t) = &mut self.mode else {
                    return Err(not_tx());
                };
                let returns = std::mem::take(&mut t.returns);
                let settled = std::mem::take(&mut t.settled);
                let outcomes = ctx.link.commit(&mut t.txn);
                for (outcome, ret) in outcomes.iter().flatten().zip(returns) {
                    if let (true, Some((key, msg))) = (outcome.unroutable(), ret) {
                        adapter::wire::returned(ctx.out, ch, ctx.frame_max, &key, &msg);
                    }
                }
                for (_, u) in &settled {
                    self.settled_one(u.consumer, ctx);
                }
                // The transaction's own publishes: commit-ok is refused if one was.
                let owned = outcomes
                    .iter()
                    .flatten()
                    .filter_map(|o| o.ticket)
                    .reduce(adapter::SyncTicket::max);
                let journaled = owned.is_some();
                outcomes?;
                // Like a publisher confirm, commit-ok means stored: it waits for the
                // journal to sync the transaction's persistent messages and acks.
                let Mode::Tx(t) = &mut self.mode else {
                    unreachable!("checked above")
                };
                match ctx.link.sync_point() {
                    Some(at) if journaled || !settled.is_empty() || !t.commits.is_empty() => {
                        t.commits.push_back(owned.map_or(at, |o| o.max(at)));
                        self.flush_commits(ctx.out, ctx.scratch, ctx.link)
                    }
                    _ => {
                        ctx.send(ch, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                        Ok(())
                    }
                }
            }
            tx::AMQPMethod::Rollback(_) => {
                let Mode::Tx(t) = &mut self.mode else {
                    return Err(not_tx());
                };
                t.txn.rollback();
                t.returns.clear();
                for (dtag, u) in t.settled.drain(..) {
                    self.unacked.insert(dtag, u);
                }
                ctx.send(
                    ch,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    /// A content header for the pending `basic.publish`.
    pub(crate) fn on_header(
        &mut self,
        h: AMQPContentHeader,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let Some(inc) = self.incoming.as_mut() else {
            return Err(AmqpError::new(
                code::UNEXPECTED_FRAME,
                "expected method frame, got non method frame instead",
            ));
        };
        if inc.header.is_some() {
            return Err(AmqpError::new(
                code::UNEXPECTED_FRAME,
                "expected content body, got non content body frame instead",
            ));
        }
        if h.class_id != 60 {
            return Err(AmqpError::new(
                code::FRAME_ERROR,
                format!("content header for class {} instead of 60", h.class_id),
            ));
        }
        if h.body_size > ctx.limits.body_max_bytes {
            self.incoming = None;
            return Err(AmqpError::precondition(format!(
                "message size {} is larger than configured max size {}",
                h.body_size, ctx.limits.body_max_bytes
            ))
            .at(60, 40));
        }
        inc.header = Some((h.body_size, h.properties));
        if h.body_size == 0 {
            return self.complete(ctx);
        }
        Ok(())
    }

    /// A body frame for the pending `basic.publish`.
    pub(crate) fn on_body(&mut self, piece: Bytes, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let Some(inc) = self.incoming.as_mut() else {
            return Err(AmqpError::new(
                code::UNEXPECTED_FRAME,
                "expected method frame, got non method frame instead",
            ));
        };
        let Some((size, _)) = &inc.header else {
            return Err(AmqpError::new(
                code::UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
            ));
        };
        let size = *size;
        if inc.body.len() as u64 + piece.len() as u64 > size {
            return Err(AmqpError::new(
                code::FRAME_ERROR,
                format!("content body is longer than the {size} bytes its header declared"),
            ));
        }
        inc.body.push(piece, size);
        if inc.body.len() as u64 == size {
            return self.complete(ctx);
        }
        Ok(())
    }

    fn complete(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let inc = self.incoming.take().expect("checked by the caller");
        self.publish(inc, ctx).map_err(|e| e.at(60, 40))
    }

    /// A settled delivery leaves its consumer's count; a retired consumer whose last
    /// delivery is settled is dropped.
    pub(crate) fn settled_one(&mut self, consumer: u64, ctx: &mut Ctx<'_>) {
        if let Some(c) = self.consumers.get_mut(&consumer) {
            c.outstanding = c.outstanding.saturating_sub(1);
        } else if let Some(r) = self.retired.get_mut(&consumer) {
            r.outstanding = r.outstanding.saturating_sub(1);
            if r.outstanding == 0 {
                self.retired.remove(&consumer);
                ctx.consumers.remove(&consumer);
            }
        }
    }

    /// Ends the channel's use of the core: a transaction is rolled back, unacked
    /// deliveries are requeued (in delivery order), consumers are cancelled.
    pub(crate) fn release(&mut self, index: &mut IdMap<u64, u16>) {
        self.incoming = None;
        if let Mode::Tx(t) = &mut self.mode {
            t.txn.rollback();
            t.returns.clear();
            for (dtag, u) in t.settled.drain(..) {
                self.unacked.insert(dtag, u);
            }
        }
        adapter::settle(self.unacked.values(), adapter::Settle::Requeue);
        self.unacked.clear();
        for id in self.consumers.keys().chain(self.retired.keys()) {
            index.remove(id);
        }
        self.consumers.clear();
        self.retired.clear();
        self.tags.clear();
        self.reply = None;
    }
}
