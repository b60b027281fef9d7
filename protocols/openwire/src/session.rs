//! The OpenWire state machine: decoded commands, deliveries and the clock go in; encoded
//! commands and core operations come out. No I/O: `conn.rs` owns the socket and timers.
//!
//! # Invariants
//! - Before the client's WireFormatInfo only that is accepted; before ConnectionInfo only
//!   connection-level commands are; after a fatal error the session is closed.
//! - Every delivery sent to the client is in its consumer's `pending` until it is settled
//!   (acked, dead-lettered) or the consumer ends (its handles' drop requeues it).
//! - A consumer's credit gate limit is `prefetch + extended` (prefetch > 0), or the
//!   number of deliveries it holds plus one while a pull waits (prefetch 0); `extended`
//!   counts pending deliveries the client reported delivered but has not settled.
//! - Responses to persistent sends wait in `pending_responses`, in command order, until the
//!   journal has synced them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;
use bytestring::ByteString;
use ferromq_core::IdMap;
use ferromq_core::{
    AckMode, Broker, Connection, ConsumerHandle, ConsumerSpec, CreditGate, Delivery, Event,
    EventReceiver, Exclusivity, FieldTable, FieldValue, Message, Queue, QueueOptions, Selector,
    Sink, SyncTicket, SyncWaiter, Transaction,
};

use crate::adapter::{self, Inbound, Outbound};
use crate::advisory::{self, Mailbox, Watch};
use crate::codec::encode;
use crate::command::*;
use crate::destination::{
    self, binding_key, elements, has_wildcards, is_advisory, virtual_topic_of, DLQ,
};
use crate::error::{CommandError, DecodeError};
use crate::inactivity::{Due, Monitor};
use crate::marshal::Format;
use crate::shared::Shared;
use crate::OpenWireConfig;

/// What the connection should do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Flush what was written, then close the socket.
    Close,
}

/// The version this broker prefers (and the highest it speaks).
pub const VERSION_MAX: i32 = 12;
/// The lowest version it speaks.
pub const VERSION_MIN: i32 = 9;

struct Pending {
    seq: u64,
    queue: Arc<Queue>,
    tag: u64,
    message: Arc<Message>,
    /// Reported delivered (a DELIVERED ack widened the window for it).
    delivered: bool,
    /// Acknowledged inside this open transaction.
    in_txn: Option<i64>,
}

struct Consumer {
    subscribed: Destination,
    handles: Vec<ConsumerHandle>,
    gate: Arc<CreditGate>,
    /// 0 = pull mode.
    prefetch: u32,
    extended: u32,
    pull_waiting: bool,
    pull_deadline_ms: Option<u64>,
    held: VecDeque<Delivery>,
    pending: VecDeque<Pending>,
    no_local: bool,
    /// A topic subscription's own queue (durable or not): its messages are this
    /// consumer's alone, so the ones it must not see can be settled.
    own_queue: bool,
    /// The temporary-destination advisory topics it subscribed to (registered with the
    /// shared [`advisory::Advisories`] while it lives).
    advisories: Watch,
    session: i64,
}

impl Consumer {
    fn update_window(&self) {
        let limit = if self.prefetch > 0 {
            self.prefetch.saturating_add(self.extended)
        } else {
            let holding = (self.pending.len() + self.held.len()) as u32;
            holding + u32::from(self.pull_waiting && self.held.is_empty())
        };
        if self.gate.limit() != limit {
            self.gate.set_limit(limit);
        }
    }
}

struct Txn {
    core: Transaction,
    /// (consumer, dispatch seq) acked in it.
    acked: Vec<(ConsumerId, u64)>,
}

/// One OpenWire connection's protocol state.
pub struct Session {
    cfg: Arc<OpenWireConfig>,
    broker: Broker,
    peer: Option<IpAddr>,
    sink: Sink,
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
    conn: Option<Connection>,
    format: Format,
    negotiated: bool,
    frame_max_bytes: u64,
    closed: bool,
    connect_deadline_ms: u64,
    connection_id: Option<ByteString>,
    client_id: Option<String>,
    sessions: HashSet<i64>,
    producers: HashMap<ProducerId, i32>,
    consumers: HashMap<ConsumerId, Consumer>,
    by_core: IdMap<u64, ConsumerId>,
    txns: HashMap<i64, Txn>,
    temp_dests: HashSet<Destination>,
    /// Consumers watching advisory topics.
    watchers: usize,
    next_seq: u64,
    inactivity: Monitor,
    identity: Option<(u64, String)>,
    sync: Option<SyncWaiter>,
    /// Responses held until their ticket is synced, in order.
    pending_responses: VecDeque<(SyncTicket, i32)>,
}

fn response(correlation_id: i32) -> Command {
    Command::new(0, Body::Response { correlation_id })
}

impl Session {
    /// A session for a new connection; the receiver is where its deliveries arrive.
    pub fn new(
        cfg: Arc<OpenWireConfig>,
        broker: Broker,
        peer: Option<IpAddr>,
        shared: Arc<Shared>,
        now_ms: u64,
    ) -> (Self, EventReceiver) {
        let (sink, rx) = ferromq_core::channel();
        let sync = broker.sync_waiter();
        let format = Format {
            version: VERSION_MAX,
            stack_trace: false,
            depth_max: cfg.properties_depth_max,
        };
        let mailbox = Mailbox::new(cfg.advisory_backlog_max);
        let s = Session {
            frame_max_bytes: cfg.frame_max_bytes,
            connect_deadline_ms: now_ms + cfg.connect_timeout_ms,
            cfg,
            broker,
            peer,
            sink,
            mailbox,
            shared,
            conn: None,
            format,
            negotiated: false,
            closed: false,
            connection_id: None,
            client_id: None,
            sessions: HashSet::new(),
            producers: HashMap::new(),
            consumers: HashMap::new(),
            by_core: IdMap::default(),
            txns: HashMap::new(),
            temp_dests: HashSet::new(),
            watchers: 0,
            next_seq: 1,
            inactivity: Monitor::off(),
            identity: None,
            sync,
            pending_responses: VecDeque::new(),
        };
        (s, rx)
    }

    /// The broker's WireFormatInfo, sent as soon as the connection is accepted.
    pub fn start(&mut self, out: &mut BytesMut) {
        let mut p = FieldTable::new();
        p.insert("TightEncodingEnabled", FieldValue::Bool(false));
        p.insert("CacheEnabled", FieldValue::Bool(false));
        p.insert("SizePrefixDisabled", FieldValue::Bool(false));
        p.insert("StackTraceEnabled", FieldValue::Bool(false));
        p.insert("TcpNoDelayEnabled", FieldValue::Bool(true));
        p.insert("CacheSize", FieldValue::I32(0));
        p.insert(
            "MaxFrameSize",
            FieldValue::I64(self.cfg.frame_max_bytes as i64),
        );
        p.insert(
            "MaxInactivityDuration",
            FieldValue::I64(self.cfg.inactivity_ms as i64),
        );
        p.insert(
            "MaxInactivityDurationInitalDelay",
            FieldValue::I64(self.cfg.inactivity_initial_delay_ms as i64),
        );
        let wf = WireFormatInfo {
            version: VERSION_MAX,
            properties: p,
        };
        self.write(out, &Command::new(0, Body::WireFormatInfo(wf)));
    }

    /// The format commands are read and written in (changes at negotiation).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The largest frame accepted now.
    pub fn frame_max_bytes(&self) -> u64 {
        self.frame_max_bytes
    }

    /// A waiter for the journal, if the broker has one.
    pub fn sync_waiter(&self) -> Option<SyncWaiter> {
        self.sync.clone()
    }

    /// True while responses wait for the journal.
    pub fn has_pending_responses(&self) -> bool {
        !self.pending_responses.is_empty()
    }

    /// Where the advisories for this connection's watching consumers arrive.
    pub fn mailbox(&self) -> Arc<Mailbox> {
        self.mailbox.clone()
    }

    /// True while some consumer watches the advisory topics.
    pub fn watches_advisories(&self) -> bool {
        self.watchers > 0
    }

    /// Advisories arrived in the mailbox: dispatch them to their consumers. A connection
    /// whose mailbox overflowed has missed some, and is closed.
    pub fn on_advisories(&mut self, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        let Ok(advisories) = self.mailbox.take() else {
            tracing::debug!(peer = ?self.peer, "OpenWire advisory backlog exceeded; closing connection");
            return self.fail_connection(
                "too many advisories waiting for this connection (advisory_backlog_max)",
                out,
            );
        };
        for a in advisories {
            if self.consumers.contains_key(&a.consumer) {
                self.write_advisory(out, &a.consumer, &a.info, false);
            }
        }
        Flow::Continue
    }

    /// Dispatches one advisory to `consumer` (`replay`: it is part of the current set sent
    /// to a new watcher, and names it as its target consumer, as ActiveMQ does).
    fn write_advisory(
        &mut self,
        out: &mut BytesMut,
        consumer: &ConsumerId,
        info: &DestinationInfo,
        replay: bool,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg = advisory::message(
            info,
            replay.then_some(consumer),
            &self.cfg.broker_name,
            seq,
            self.broker.now_ms(),
        );
        let d = MessageDispatch {
            consumer_id: Some(consumer.clone()),
            destination: msg.destination.clone(),
            message: Some(Box::new(msg)),
            redelivery_counter: 0,
        };
        self.write(out, &Command::new(0, Body::MessageDispatch(d)));
    }

    /// The core's connection id and the user, once connected (for the closing log line).
    pub fn identity(&self) -> Option<(u64, &str)> {
        self.identity.as_ref().map(|(id, u)| (*id, u.as_str()))
    }

    /// Bytes arrived.
    pub fn on_read(&mut self) {
        self.inactivity.on_read();
    }

    /// Bytes were written.
    pub fn on_write(&mut self, now_ms: u64) {
        self.inactivity.on_write(now_ms);
    }

    fn write(&self, out: &mut BytesMut, c: &Command) {
        encode(out, &self.format, c);
    }

    /// The next moment `on_timer` has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        let mut next = if self.conn.is_none() {
            Some(self.connect_deadline_ms)
        } else {
            None
        };
        let mut fold = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some(d) = self.inactivity.next_deadline_ms() {
            fold(d);
        }
        for c in self.consumers.values() {
            if let Some(d) = c.pull_deadline_ms {
                fold(d);
            }
        }
        next
    }

    /// Time passed: keep-alives, the inactivity monitor, pull timeouts.
    pub fn on_timer(&mut self, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        if self.conn.is_none() && now_ms >= self.connect_deadline_ms {
            tracing::debug!(peer = ?self.peer, "OpenWire connection not established in time");
            return self.fail_connection("connection was not established in time", out);
        }
        match self.inactivity.poll(now_ms) {
            Due::Nothing => {}
            Due::KeepAlive => self.write(out, &Command::new(0, Body::KeepAliveInfo)),
            Due::Inactive => {
                tracing::debug!(peer = ?self.peer, "OpenWire inactivity timeout");
                return self.fail_connection(
                    "Channel was inactive for too long (nothing received within the negotiated MaxInactivityDuration)",
                    out,
                );
            }
        }
        let expired: Vec<ConsumerId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.pull_deadline_ms.is_some_and(|d| now_ms >= d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(c) = self.consumers.get_mut(&id) {
                c.pull_deadline_ms = None;
                if c.pull_waiting {
                    c.pull_waiting = false;
                    c.update_window();
                    write_empty_dispatch(out, &self.format, &id, c.subscribed.clone());
                }
            }
        }
        Flow::Continue
    }

    /// The bytes cannot be framed: the connection ends, the client told why.
    pub fn on_decode_error(&mut self, e: DecodeError, out: &mut BytesMut) -> Flow {
        tracing::debug!(peer = ?self.peer, error = %e, "OpenWire decode error; closing connection");
        self.fail_connection(&e.to_string(), out)
    }

    /// The server is shutting down: the socket is closed, failover clients reconnect.
    pub fn on_shutdown(&mut self, _out: &mut BytesMut) -> Flow {
        self.close();
        Flow::Close
    }

    fn fail_connection(&mut self, message: &str, out: &mut BytesMut) -> Flow {
        if !self.closed && self.negotiated {
            let e = Body::ConnectionError {
                exception: Some(Throwable {
                    class: Some("java.io.IOException".into()),
                    message: Some(message.into()),
                }),
                connection_id: self.connection_id.clone(),
            };
            self.write(out, &Command::new(0, e));
        }
        self.close();
        Flow::Close
    }

    /// The journal's synced point moved: send the responses that are now due.
    pub fn on_synced(&mut self, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        let Some(sync) = self.sync.clone() else {
            return Flow::Continue;
        };
        while let Some((t, corr)) = self.pending_responses.front().copied() {
            match sync.poll(t) {
                None => break,
                Some(r) => {
                    self.pending_responses.pop_front();
                    match r {
                        Ok(()) => self.write(out, &response(corr)),
                        Err(e) => {
                            let e: CommandError = e.into();
                            self.write_exception(out, corr, &e)
                        }
                    }
                }
            }
        }
        Flow::Continue
    }

    fn write_exception(&self, out: &mut BytesMut, correlation_id: i32, e: &CommandError) {
        let body = Body::ExceptionResponse {
            correlation_id,
            exception: Some(Throwable {
                class: Some(e.class.into()),
                message: Some(e.message.as_str().into()),
            }),
        };
        self.write(out, &Command::new(0, body));
    }

    /// A command from the client.
    pub fn on_command(&mut self, c: Command, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        if !self.negotiated {
            return match c.body {
                Body::WireFormatInfo(w) => self.on_wire_format(w, now_ms, out),
                other => self.fail_connection(
                    &format!("expected WireFormatInfo first, got {}", other.name()),
                    out,
                ),
            };
        }
        let corr = c.command_id;
        let wants = c.response_required;
        let name = c.body.name();
        let is_connection_info = matches!(c.body, Body::ConnectionInfo(_));
        let result = self.dispatch_command(c, now_ms, out);
        match result {
            Ok(Reply::Now) => {
                if wants {
                    self.write(out, &response(corr));
                }
                Flow::Continue
            }
            Ok(Reply::After(ticket)) => {
                if wants {
                    match (ticket, &self.sync) {
                        (Some(t), Some(_)) => {
                            self.pending_responses.push_back((t, corr));
                            return self.on_synced(out);
                        }
                        _ if !self.pending_responses.is_empty() => {
                            // Keep responses in order behind the ones waiting.
                            let t = self.pending_responses.back().expect("not empty").0;
                            self.pending_responses.push_back((t.behind(), corr));
                        }
                        _ => self.write(out, &response(corr)),
                    }
                }
                Flow::Continue
            }
            Ok(Reply::None) => Flow::Continue,
            Ok(Reply::Close) => {
                self.close();
                Flow::Close
            }
            Err(e) => {
                tracing::debug!(peer = ?self.peer, command = name, error = %e, "OpenWire command refused");
                if wants {
                    self.write_exception(out, corr, &e);
                }
                if is_connection_info {
                    self.close();
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    fn on_wire_format(&mut self, w: WireFormatInfo, now_ms: u64, out: &mut BytesMut) -> Flow {
        if w.version < VERSION_MIN {
            return self
                .fail_connection(&DecodeError::UnsupportedVersion(w.version).to_string(), out);
        }
        let flag = |k: &str| matches!(w.properties.get(k), Some(FieldValue::Bool(true)));
        if flag("SizePrefixDisabled") {
            // The AND of both sides keeps the prefix: the broker announced it on.
        }
        self.format.version = w.version.min(VERSION_MAX);
        self.format.stack_trace = false;
        if let Some(max) = w
            .properties
            .get("MaxFrameSize")
            .and_then(FieldValue::as_i64)
        {
            if max > 0 {
                self.frame_max_bytes = self.frame_max_bytes.min(max as u64);
            }
        }
        let announced = |k: &str| w.properties.get(k).and_then(FieldValue::as_i64);
        if let Some(theirs) = announced("MaxInactivityDuration") {
            let floor = self.cfg.inactivity_min_ms;
            if self.cfg.inactivity_ms > 0 && theirs > 0 && (theirs as u64) < floor {
                let why = format!(
                    "MaxInactivityDuration of {theirs} ms is below this broker's minimum of {floor} ms"
                );
                // The format is agreed on (ours went out at connect, theirs just came): the
                // refusal can be written in it.
                self.negotiated = true;
                return self.fail_connection(&why, out);
            }
        }
        self.inactivity = Monitor::negotiated(
            self.cfg.inactivity_ms,
            self.cfg.inactivity_initial_delay_ms,
            announced("MaxInactivityDuration"),
            announced("MaxInactivityDurationInitalDelay"),
            now_ms,
        );
        self.negotiated = true;
        let info = BrokerInfo {
            broker_id: Some(format!("ID:{}", self.cfg.broker_name).into()),
            broker_name: Some(self.cfg.broker_name.as_str().into()),
            broker_url: None,
            ..Default::default()
        };
        self.write(out, &Command::new(0, Body::BrokerInfo(Box::new(info))));
        Flow::Continue
    }

    fn dispatch_command(
        &mut self,
        c: Command,
        now_ms: u64,
        out: &mut BytesMut,
    ) -> Result<Reply, CommandError> {
        if self.conn.is_none() {
            return match c.body {
                Body::ConnectionInfo(info) => self.on_connection_info(*info),
                Body::KeepAliveInfo => Ok(self.keep_alive(c.response_required, out)),
                Body::ShutdownInfo => Ok(Reply::Close),
                Body::WireFormatInfo(_) => Err(CommandError::jms("WireFormatInfo was sent twice")),
                other => Err(CommandError::new(
                    "javax.jms.IllegalStateException",
                    format!("{} before ConnectionInfo", other.name()),
                )),
            };
        }
        match c.body {
            Body::ConnectionInfo(_) => Err(CommandError::jms("ConnectionInfo was sent twice")),
            Body::WireFormatInfo(_) => Err(CommandError::jms("WireFormatInfo was sent twice")),
            Body::SessionInfo(id) => {
                if self.sessions.len() >= self.cfg.sessions_max
                    && !self.sessions.contains(&id.value)
                {
                    return Err(limit("sessions", self.cfg.sessions_max));
                }
                self.sessions.insert(id.value);
                Ok(Reply::Now)
            }
            Body::ProducerInfo(p) => {
                if self.producers.len() >= self.cfg.producers_max {
                    return Err(limit("producers", self.cfg.producers_max));
                }
                self.producers.insert(p.producer_id.clone(), p.window_size);
                Ok(Reply::Now)
            }
            Body::ConsumerInfo(info) if info.browser => {
                self.on_browse(&info, c.command_id, c.response_required, out)
            }
            Body::ConsumerInfo(info) => self.on_consumer_info(*info, out).map(|_| Reply::Now),
            Body::RemoveInfo(r) => {
                self.on_remove(r.object_id);
                Ok(Reply::Now)
            }
            Body::RemoveSubscriptionInfo(r) => self.on_remove_subscription(*r).map(|_| Reply::Now),
            Body::DestinationInfo(d) => self.on_destination_info(*d).map(|_| Reply::Now),
            Body::TransactionInfo(t) => self.on_transaction(*t),
            Body::Message(m) => self.on_message(*m, c.response_required, now_ms, out),
            Body::MessageAck(a) => self.on_ack(*a).map(|_| Reply::Now),
            Body::MessagePull(p) => self.on_pull(*p, now_ms, out).map(|_| Reply::Now),
            Body::KeepAliveInfo => Ok(self.keep_alive(c.response_required, out)),
            Body::ShutdownInfo => Ok(Reply::Close),
            Body::ConsumerControl(cc) => {
                self.on_consumer_control(*cc, out);
                Ok(Reply::Now)
            }
            Body::FlushCommand | Body::ConnectionControl(_) | Body::ControlCommand(_) => {
                Ok(Reply::Now)
            }
            Body::Response { .. }
            | Body::ExceptionResponse { .. }
            | Body::IntegerResponse { .. } => Ok(Reply::None),
            other => Err(CommandError::new(
                "java.lang.UnsupportedOperationException",
                format!(
                    "{} (command type {}) is not supported by this broker",
                    other.name(),
                    other.type_byte()
                ),
            )),
        }
    }

    fn keep_alive(&self, response_required: bool, out: &mut BytesMut) -> Reply {
        if response_required {
            self.write(out, &Command::new(0, Body::KeepAliveInfo));
        }
        Reply::None
    }

    fn on_connection_info(&mut self, info: ConnectionInfo) -> Result<Reply, CommandError> {
        let principal = match info.user_name.as_deref() {
            Some(u) if !u.is_empty() => {
                self.broker
                    .authenticate(u, info.password.as_deref().unwrap_or(""), self.peer)?
            }
            _ => self.broker.users().authenticate_anonymous(self.peer)?,
        };
        let conn = self.broker.connect(principal, &self.cfg.vhost)?;
        if let Some(cid) = info.client_id.as_deref() {
            if !self.shared.client_ids.claim(cid) {
                return Err(CommandError::new(
                    "javax.jms.InvalidClientIDException",
                    format!(
                        "Broker: {} - Client: {cid} already connected",
                        self.cfg.broker_name
                    ),
                ));
            }
            self.client_id = Some(cid.to_string());
        }
        tracing::info!(
            conn = conn.id(),
            protocol = "openwire",
            peer = ?self.peer,
            user = %conn.principal().name,
            version = self.format.version,
            "connection opened"
        );
        self.identity = Some((conn.id(), conn.principal().name.clone()));
        self.connection_id = info.connection_id;
        self.conn = Some(conn);
        Ok(Reply::Now)
    }

    fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("commands after ConnectionInfo have a connection")
    }

    /// Declares a shared queue unless it exists.
    fn ensure_queue(&self, name: &str) -> Result<Arc<Queue>, CommandError> {
        let conn = self.conn();
        if let Some(q) = conn.vhost().queue(name) {
            return Ok(q);
        }
        match conn.declare_queue(name, QueueOptions::default(), false) {
            Ok((q, _)) => Ok(q),
            Err(_) if conn.vhost().queue(name).is_some() => {
                Ok(conn.vhost().queue(name).expect("exists"))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn selector(&self, info: &ConsumerInfo) -> Result<Option<Arc<Selector>>, CommandError> {
        Selector::parse_optional(info.selector.as_deref(), &self.broker.limits().selector())
            .map_err(|e| CommandError::new("javax.jms.InvalidSelectorException", e.to_string()))
            .map(|s| s.map(Arc::new))
    }

    /// A QueueBrowser: its ConsumerInfo is answered, then the queue's ready messages go
    /// out as dispatches to it (at most `browse_max`, those its selector selects, none
    /// taken from the queue), then a dispatch without a message, which tells the client
    /// the browse is complete. Nothing is registered: the browser's acks and its
    /// RemoveInfo find no consumer and change nothing.
    fn on_browse(
        &mut self,
        info: &ConsumerInfo,
        correlation_id: i32,
        response_required: bool,
        out: &mut BytesMut,
    ) -> Result<Reply, CommandError> {
        let selector = self.selector(info)?;
        let (dest, queue) = match &info.destination {
            Some(d @ Destination::Queue(name)) if !has_wildcards(name) => {
                (d.clone(), self.ensure_queue(name)?)
            }
            Some(d @ Destination::TempQueue(name)) => {
                let conn = self.conn();
                (d.clone(), conn.vhost().queue_for(name, conn.id())?)
            }
            _ => {
                return Err(CommandError::new(
                    "javax.jms.InvalidDestinationException",
                    "a QueueBrowser browses one queue",
                ))
            }
        };
        if response_required {
            self.write(out, &response(correlation_id));
        }
        for (message, count) in queue.browse(self.cfg.browse_max, selector.as_deref()) {
            let seq = self.next_seq;
            self.next_seq += 1;
            write_dispatch(
                out,
                &self.format,
                &info.consumer_id,
                &dest,
                &message,
                seq,
                count,
            );
        }
        write_empty_dispatch(out, &self.format, &info.consumer_id, dest);
        Ok(Reply::None)
    }

    fn on_consumer_info(
        &mut self,
        info: ConsumerInfo,
        out: &mut BytesMut,
    ) -> Result<(), CommandError> {
        if self.consumers.contains_key(&info.consumer_id) {
            return Err(CommandError::jms(format!(
                "consumer {:?} already exists",
                info.consumer_id
            )));
        }
        if self.consumers.len() >= self.cfg.consumers_max {
            return Err(limit("consumers", self.cfg.consumers_max));
        }
        let dest = info.destination.clone().ok_or_else(|| {
            CommandError::new(
                "javax.jms.InvalidDestinationException",
                "ConsumerInfo without a destination",
            )
        })?;
        let selector = self.selector(&info)?;
        let advisories = Watch::of(&dest);
        if info.retroactive {
            tracing::info!(peer = ?self.peer, "retroactive consumer requested; retroactive delivery is not supported and is ignored");
        }
        let prefetch = if info.prefetch <= 0 {
            0
        } else {
            (info.prefetch as u32).min(self.cfg.prefetch_max)
        };
        let gate = CreditGate::new(prefetch.max(1));
        if prefetch == 0 {
            gate.set_limit(0);
        }
        let durable_name = match (&info.subscription_name, dest.is_topic()) {
            (Some(sub), true) => {
                let cid = self
                    .client_id
                    .as_deref()
                    .or(info.client_id.as_deref())
                    .ok_or_else(|| {
                        CommandError::new(
                            "javax.jms.JMSException",
                            "a durable subscription needs a client id on the connection",
                        )
                    })?;
                Some(format!("jms-durable.{cid}.{sub}"))
            }
            _ => None,
        };
        // Each queue, and whether it is this subscriber's own (filtered by `x-selector`).
        let mut queues: Vec<(Arc<Queue>, bool)> = Vec::new();
        let mut own_queue = false;
        for d in elements(&dest) {
            if is_advisory(&d) {
                continue;
            }
            match &d {
                Destination::Queue(name) => {
                    if has_wildcards(name) {
                        return Err(CommandError::new(
                            "javax.jms.InvalidDestinationException",
                            format!("wildcard queue consumers ('{name}') are not supported by this broker"),
                        ));
                    }
                    let q = self.ensure_queue(name)?;
                    if let Some(topic) = virtual_topic_of(name) {
                        self.conn().vhost().bind_queue(
                            name,
                            "amq.topic",
                            topic,
                            FieldTable::new(),
                            self.conn().id(),
                        )?;
                    }
                    queues.push((q, false));
                }
                Destination::TempQueue(name) => {
                    queues.push((
                        self.conn().vhost().queue_for(name, self.conn().id())?,
                        false,
                    ));
                }
                Destination::Topic(pattern) | Destination::TempTopic(pattern) => {
                    own_queue = true;
                    let key = binding_key(pattern);
                    let conn = self.conn();
                    // A subscription's selector filters what enters its queue, so what it
                    // does not select never piles up there (ActiveMQ stores only matching
                    // messages for a durable subscriber too).
                    let mut arguments = FieldTable::new();
                    if let Some(sel) = &selector {
                        arguments.insert("x-selector", FieldValue::Str(sel.text().into()));
                    }
                    let (name, options) = match &durable_name {
                        Some(n) => (
                            n.clone(),
                            QueueOptions {
                                arguments,
                                ..QueueOptions::default()
                            },
                        ),
                        None => {
                            arguments.insert(
                                "x-max-length",
                                FieldValue::U64(self.cfg.topic_backlog_max),
                            );
                            (
                                ferromq_core::generated_queue_name("jms-subscription-"),
                                QueueOptions {
                                    durable: false,
                                    exclusive: true,
                                    auto_delete: true,
                                    arguments,
                                },
                            )
                        }
                    };
                    let q = match conn.declare_queue(&name, options.clone(), false) {
                        Ok((q, _)) => q,
                        // A durable subscriber back with another selector: JMS makes that
                        // a new subscription (the old one and its messages go), unless the
                        // old one is in use.
                        Err(ferromq_core::CoreError::PreconditionFailed(_))
                            if durable_name.is_some() =>
                        {
                            conn.vhost()
                                .delete_queue(&name, true, false, conn.id())
                                .map_err(|_| {
                                    CommandError::jms(format!(
                                        "durable subscription '{name}' is in use with another selector"
                                    ))
                                })?;
                            conn.declare_queue(&name, options, false)?.0
                        }
                        Err(e) => return Err(e.into()),
                    };
                    conn.vhost().bind_queue(
                        &name,
                        "amq.topic",
                        &key,
                        FieldTable::new(),
                        conn.id(),
                    )?;
                    queues.push((q, true));
                }
            }
        }
        let mut handles = Vec::with_capacity(queues.len());
        for (q, filtered) in &queues {
            let spec = ConsumerSpec {
                tag: format!(
                    "{}:{}:{}",
                    info.consumer_id.connection, info.consumer_id.session, info.consumer_id.value
                )
                .into(),
                ack_mode: AckMode::Manual,
                gate: gate.clone(),
                priority: info.priority as i32,
                exclusive: if info.exclusive {
                    Exclusivity::Failover
                } else {
                    Exclusivity::Shared
                },
                sink: self.sink.clone(),
                // Topic subscriptions filter at their queue's `x-selector` instead.
                selector: if *filtered { None } else { selector.clone() },
            };
            let h = self.conn().consume(q.name(), spec)?;
            self.by_core.insert(h.id(), info.consumer_id.clone());
            handles.push(h);
        }
        self.consumers.insert(
            info.consumer_id.clone(),
            Consumer {
                subscribed: dest,
                handles,
                gate,
                prefetch,
                extended: 0,
                pull_waiting: false,
                pull_deadline_ms: None,
                held: VecDeque::new(),
                pending: VecDeque::new(),
                no_local: info.no_local,
                own_queue,
                advisories,
                session: info.consumer_id.session,
            },
        );
        if !advisories.is_empty() {
            self.watchers += 1;
            // The live set goes out before the ConsumerInfo's response, as from ActiveMQ:
            // a client's connection start() returns knowing every temporary destination.
            let conn_id = self.conn().id();
            let live =
                self.shared
                    .advisories
                    .watch(conn_id, &info.consumer_id, advisories, &self.mailbox);
            for d in live {
                self.write_advisory(out, &info.consumer_id, &d, true);
            }
        }
        Ok(())
    }

    fn remove_consumer(&mut self, id: &ConsumerId) {
        if let Some(c) = self.consumers.remove(id) {
            if !c.advisories.is_empty() {
                self.watchers -= 1;
                let conn_id = self.conn().id();
                self.shared.advisories.unwatch(conn_id, id);
            }
            for h in &c.handles {
                self.by_core.remove(&h.id());
            }
            for t in self.txns.values_mut() {
                t.acked.retain(|(cid, _)| cid != id);
            }
            // Dropping the handles returns every unsettled delivery to its queue.
        }
    }

    fn on_remove(&mut self, id: ObjectId) {
        match id {
            ObjectId::Consumer(c) => self.remove_consumer(&c),
            ObjectId::Producer(p) => {
                self.producers.remove(&p);
            }
            ObjectId::Session(s) => {
                let ids: Vec<ConsumerId> = self
                    .consumers
                    .iter()
                    .filter(|(_, c)| c.session == s.value)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    self.remove_consumer(&id);
                }
                self.producers.retain(|p, _| p.session != s.value);
                self.sessions.remove(&s.value);
            }
            ObjectId::Connection(_) => {
                let ids: Vec<ConsumerId> = self.consumers.keys().cloned().collect();
                for id in ids {
                    self.remove_consumer(&id);
                }
                self.producers.clear();
                self.sessions.clear();
            }
        }
    }

    fn on_remove_subscription(&mut self, r: RemoveSubscriptionInfo) -> Result<(), CommandError> {
        let sub = r.subscription_name.ok_or_else(|| {
            CommandError::jms("RemoveSubscriptionInfo without a subscription name")
        })?;
        let cid = r
            .client_id
            .as_deref()
            .or(self.client_id.as_deref())
            .ok_or_else(|| CommandError::jms("RemoveSubscriptionInfo without a client id"))?;
        let name = format!("jms-durable.{cid}.{sub}");
        let conn = self.conn();
        match conn.vhost().delete_queue(&name, true, false, conn.id()) {
            Ok(_) => Ok(()),
            Err(ferromq_core::CoreError::PreconditionFailed(_)) => Err(CommandError::new(
                "javax.jms.JMSException",
                format!("Durable consumer is in use for client: {cid} and subscriptionName: {sub}"),
            )),
            Err(ferromq_core::CoreError::NotFound(_)) => Err(CommandError::new(
                "javax.jms.InvalidDestinationException",
                format!("No durable subscription exists for clientID: {cid} and subscriptionName: {sub}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn on_destination_info(&mut self, d: DestinationInfo) -> Result<(), CommandError> {
        let dest = d.destination.clone().ok_or_else(|| {
            CommandError::new(
                "javax.jms.InvalidDestinationException",
                "DestinationInfo without a destination",
            )
        })?;
        let adding = d.operation == 0;
        match (&dest, adding) {
            (Destination::TempQueue(name), true) => {
                if self.temp_dests.len() >= self.cfg.temp_destinations_max {
                    return Err(limit(
                        "temporary destinations",
                        self.cfg.temp_destinations_max,
                    ));
                }
                let options = QueueOptions {
                    durable: false,
                    exclusive: true,
                    auto_delete: false,
                    arguments: FieldTable::new(),
                };
                self.conn().declare_queue(name, options, false)?;
                self.temp_dests.insert(dest);
                self.shared.advisories.added(self.conn().id(), d);
            }
            (Destination::TempTopic(_), true) => {
                if self.temp_dests.len() >= self.cfg.temp_destinations_max {
                    return Err(limit(
                        "temporary destinations",
                        self.cfg.temp_destinations_max,
                    ));
                }
                self.temp_dests.insert(dest);
                self.shared.advisories.added(self.conn().id(), d);
            }
            (Destination::TempQueue(name), false) => {
                let conn = self.conn();
                match conn.vhost().delete_queue(name, false, false, conn.id()) {
                    Ok(_) | Err(ferromq_core::CoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                self.temp_dests.remove(&dest);
                self.shared.advisories.removed(self.conn().id(), &dest);
            }
            (Destination::TempTopic(_), false) => {
                self.temp_dests.remove(&dest);
                self.shared.advisories.removed(self.conn().id(), &dest);
            }
            // Creating a queue or topic explicitly: queues are declared, topics need nothing.
            (Destination::Queue(name), true) => {
                self.ensure_queue(name)?;
            }
            (Destination::Queue(name), false) => {
                let conn = self.conn();
                conn.vhost().delete_queue(name, false, false, conn.id())?;
            }
            (Destination::Topic(_), _) => {}
        }
        Ok(())
    }

    fn on_transaction(&mut self, t: TransactionInfo) -> Result<Reply, CommandError> {
        let id = match t.transaction_id {
            Some(TransactionId::Local { value, .. }) => value,
            Some(TransactionId::Xa { .. }) => {
                return Err(CommandError::new(
                    "javax.transaction.xa.XAException",
                    "XA transactions are not supported by this broker",
                ))
            }
            None => {
                return Err(CommandError::jms(
                    "TransactionInfo without a transaction id",
                ))
            }
        };
        match t.kind {
            0 => {
                if self.txns.contains_key(&id) {
                    return Err(CommandError::new(
                        "javax.jms.TransactionInProgressException",
                        format!("transaction {id} is already open"),
                    ));
                }
                if self.txns.len() >= self.cfg.transactions_max {
                    return Err(limit("open transactions", self.cfg.transactions_max));
                }
                self.txns.insert(
                    id,
                    Txn {
                        core: Transaction::new(self.broker.limits()),
                        acked: Vec::new(),
                    },
                );
                Ok(Reply::Now)
            }
            2 => {
                let mut txn = self.txns.remove(&id).ok_or_else(|| unknown_txn(id))?;
                let outcomes = txn.core.commit(self.conn().vhost())?;
                for (cid, seq) in txn.acked {
                    if let Some(c) = self.consumers.get_mut(&cid) {
                        if let Some(pos) = c.pending.iter().position(|p| p.seq == seq) {
                            let p = c.pending.remove(pos).expect("position is valid");
                            if p.delivered {
                                c.extended = c.extended.saturating_sub(1);
                            }
                        }
                        c.update_window();
                    }
                }
                // A commit is answered once what it published is synced.
                let ticket = outcomes
                    .iter()
                    .filter_map(|o| o.ticket)
                    .reduce(SyncTicket::max)
                    .map(SyncTicket::watermark);
                Ok(Reply::After(ticket.or_else(|| self.broker.sync_point())))
            }
            4 => {
                let mut txn = self.txns.remove(&id).ok_or_else(|| unknown_txn(id))?;
                txn.core.rollback();
                // The client redelivers the acked messages itself; they stay pending here.
                for (cid, seq) in txn.acked {
                    if let Some(c) = self.consumers.get_mut(&cid) {
                        if let Some(p) = c.pending.iter_mut().find(|p| p.seq == seq) {
                            p.in_txn = None;
                        }
                    }
                }
                Ok(Reply::Now)
            }
            k => Err(CommandError::new(
                "javax.transaction.xa.XAException",
                format!("transaction operation {k} is for XA transactions, which are not supported by this broker"),
            )),
        }
    }

    fn on_message(
        &mut self,
        m: crate::command::Message,
        response_required: bool,
        now_ms: u64,
        out: &mut BytesMut,
    ) -> Result<Reply, CommandError> {
        let _ = now_ms;
        let dest = m.destination.clone().ok_or_else(|| {
            CommandError::new(
                "javax.jms.InvalidDestinationException",
                "message without a destination",
            )
        })?;
        let txn = match &m.transaction_id {
            None => None,
            Some(TransactionId::Local { value, .. }) => Some(*value),
            Some(TransactionId::Xa { .. }) => {
                return Err(CommandError::new(
                    "javax.transaction.xa.XAException",
                    "XA transactions are not supported by this broker",
                ))
            }
        };
        if let Some(t) = txn {
            if !self.txns.contains_key(&t) {
                return Err(unknown_txn(t));
            }
        }
        let now = self.broker.now_ms();
        let mut ticket: Option<SyncTicket> = None;
        for d in elements(&dest) {
            if is_advisory(&d) {
                continue;
            }
            let (exchange, key): (&str, &str) = match &d {
                Destination::Queue(q) => {
                    if has_wildcards(q) {
                        return Err(CommandError::new(
                            "javax.jms.InvalidDestinationException",
                            format!("cannot send to the wildcard queue '{q}'"),
                        ));
                    }
                    self.ensure_queue(q)?;
                    ("", q)
                }
                Destination::TempQueue(q) => {
                    if self.conn().vhost().queue(q).is_none() {
                        return Err(CommandError::new(
                            "javax.jms.InvalidDestinationException",
                            format!("Cannot publish to a deleted Destination: temp-queue://{q}"),
                        ));
                    }
                    ("", q)
                }
                Destination::Topic(t) | Destination::TempTopic(t) => ("amq.topic", t),
            };
            let how = Inbound {
                inflated_max_bytes: self.cfg.inflated_max_bytes,
                depth_max: self.cfg.properties_depth_max,
                now_ms: now,
                exchange,
                routing_key: key,
            };
            let msg = Arc::new(adapter::to_core(&m, &how)?);
            match txn {
                Some(t) => self.txns.get_mut(&t).expect("checked").core.publish(msg)?,
                None => {
                    let outcome = self.conn().vhost().publish(msg)?;
                    if let Some(t) = outcome.ticket {
                        ticket = Some(ticket.map_or(t, |x| x.max(t)));
                    }
                }
            }
        }
        if !response_required {
            if let Some(pid) = &m.producer_id {
                if self.producers.get(pid).is_some_and(|w| *w > 0) {
                    let size = m.content.as_ref().map_or(0, |c| c.len()) as i32;
                    let ack = ProducerAck {
                        producer_id: Some(pid.clone()),
                        size,
                    };
                    self.write(out, &Command::new(0, Body::ProducerAck(ack)));
                }
            }
        }
        Ok(Reply::After(ticket))
    }

    fn on_ack(&mut self, a: MessageAck) -> Result<(), CommandError> {
        let cid = a
            .consumer_id
            .clone()
            .ok_or_else(|| CommandError::jms("MessageAck without a consumer id"))?;
        let txn = match &a.transaction_id {
            None => None,
            Some(TransactionId::Local { value, .. }) => {
                if !self.txns.contains_key(value) {
                    return Err(unknown_txn(*value));
                }
                Some(*value)
            }
            Some(TransactionId::Xa { .. }) => {
                return Err(CommandError::new(
                    "javax.transaction.xa.XAException",
                    "XA transactions are not supported by this broker",
                ))
            }
        };
        let Some(c) = self.consumers.get_mut(&cid) else {
            // The consumer is gone; its deliveries were returned to their queues already.
            return Ok(());
        };
        let Some(last) = a.last_message_id.as_ref() else {
            return Err(CommandError::jms("MessageAck without a last message id"));
        };
        let last_seq = last.broker_seq as u64;
        let Some(idx) = c.pending.iter().position(|p| p.seq == last_seq) else {
            // Already settled (a duplicate or a range acked before): nothing to do.
            return Ok(());
        };
        match a.ack_type {
            ack::DELIVERED => {
                for p in c.pending.iter_mut().take(idx + 1) {
                    if !p.delivered {
                        p.delivered = true;
                        c.extended += 1;
                    }
                }
                c.update_window();
                Ok(())
            }
            ack::REDELIVERED => Ok(()),
            ack::STANDARD | ack::INDIVIDUAL | ack::POISON | ack::EXPIRED | ack::UNMATCHED => {
                let individual = a.ack_type == ack::INDIVIDUAL;
                let range: Vec<usize> = if individual {
                    vec![idx]
                } else {
                    (0..=idx)
                        .filter(|&i| c.pending[i].in_txn.is_none())
                        .collect()
                };
                if let (Some(t), ack::STANDARD | ack::INDIVIDUAL) = (txn, a.ack_type) {
                    let txn = self.txns.get_mut(&t).expect("checked");
                    for i in range {
                        let p = &mut c.pending[i];
                        txn.core.ack(p.queue.clone(), p.tag)?;
                        p.in_txn = Some(t);
                        txn.acked.push((cid.clone(), p.seq));
                    }
                    return Ok(());
                }
                let mut settled = Vec::with_capacity(range.len());
                for i in range.into_iter().rev() {
                    if let Some(p) = c.pending.remove(i) {
                        if p.delivered {
                            c.extended = c.extended.saturating_sub(1);
                        }
                        settled.push(p);
                    }
                }
                settled.reverse();
                let poison = a.ack_type == ack::POISON;
                let cause = a.poison_cause.as_ref().and_then(|t| t.message.clone());
                for p in &settled {
                    if poison {
                        dead_letter(self.conn.as_ref().expect("connected"), p, cause.as_deref());
                    }
                    // The tag can be unknown only if its queue was deleted meanwhile. A
                    // poison message is not consumed: its dead-letter copy may not be
                    // synced yet, so its publish waits for the journal.
                    let _ = if poison {
                        p.queue.discard(&[p.tag])
                    } else {
                        p.queue.ack(&[p.tag])
                    };
                }
                c.update_window();
                Ok(())
            }
            t => Err(CommandError::jms(format!("unknown MessageAck type {t}"))),
        }
    }

    fn on_pull(
        &mut self,
        p: MessagePull,
        now_ms: u64,
        out: &mut BytesMut,
    ) -> Result<(), CommandError> {
        let cid = p
            .consumer_id
            .ok_or_else(|| CommandError::jms("MessagePull without a consumer id"))?;
        let Some(c) = self.consumers.get_mut(&cid) else {
            return Err(CommandError::jms("MessagePull for an unknown consumer"));
        };
        if c.prefetch > 0 {
            return Ok(());
        }
        if let Some(d) = c.held.pop_front() {
            self.send_delivery(&cid, d, out);
            return Ok(());
        }
        c.pull_waiting = true;
        c.pull_deadline_ms = match p.timeout {
            0 => None,
            // "No wait": whatever the queue has is dispatched synchronously by the window
            // change below and handled before this zero-length deadline fires.
            t if t < 0 => Some(now_ms),
            t => Some(now_ms + t as u64),
        };
        c.update_window();
        Ok(())
    }

    /// A client's ConsumerControl changes a consumer's prefetch. The failover transport
    /// resubscribes a consumer that had prefetched messages with prefetch 0 and, once it has
    /// dropped its stale buffer, restores the real prefetch this way.
    fn on_consumer_control(&mut self, cc: ConsumerControl, out: &mut BytesMut) {
        let Some(cid) = cc.consumer_id else {
            return;
        };
        let prefetch = if cc.prefetch <= 0 {
            0
        } else {
            (cc.prefetch as u32).min(self.cfg.prefetch_max)
        };
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        if cc.close || prefetch == c.prefetch {
            return;
        }
        c.prefetch = prefetch;
        if prefetch == 0 {
            c.update_window();
            return;
        }
        c.pull_waiting = false;
        c.pull_deadline_ms = None;
        let held = std::mem::take(&mut c.held);
        c.update_window();
        for d in held {
            self.send_delivery(&cid, d, out);
        }
    }

    /// A delivery or cancellation from the core.
    pub fn on_event(&mut self, ev: Event, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        match ev {
            Event::Deliver(d) => {
                let Some(cid) = self.by_core.get(&d.consumer_id).cloned() else {
                    return Flow::Continue;
                };
                let Some(c) = self.consumers.get_mut(&cid) else {
                    return Flow::Continue;
                };
                if c.own_queue && c.no_local && self.is_local(&d.message) {
                    let _ = d.queue.ack(&[d.tag]);
                    return Flow::Continue;
                }
                let c = self.consumers.get_mut(&cid).expect("present");
                if c.prefetch == 0 && !c.pull_waiting {
                    c.held.push_back(d);
                    return Flow::Continue;
                }
                self.send_delivery(&cid, d, out);
                Flow::Continue
            }
            Event::Cancelled {
                consumer_id,
                reason,
            } => {
                let Some(cid) = self.by_core.remove(&consumer_id) else {
                    return Flow::Continue;
                };
                tracing::debug!(peer = ?self.peer, %reason, "OpenWire consumer cancelled by the broker");
                let dest = self.consumers.get(&cid).map(|c| c.subscribed.clone());
                self.remove_consumer(&cid);
                let cc = ConsumerControl {
                    destination: dest,
                    close: true,
                    consumer_id: Some(cid),
                    prefetch: 0,
                    flush: false,
                    start: false,
                    stop: false,
                };
                self.write(out, &Command::new(0, Body::ConsumerControl(Box::new(cc))));
                Flow::Continue
            }
        }
    }

    fn is_local(&self, m: &Message) -> bool {
        match (&self.connection_id, m.properties.message_id.as_deref()) {
            (Some(conn), Some(id)) => {
                id.starts_with(&**conn) && id.as_bytes().get(conn.len()) == Some(&b':')
            }
            _ => false,
        }
    }

    fn send_delivery(&mut self, cid: &ConsumerId, d: Delivery, out: &mut BytesMut) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let c = self.consumers.get_mut(cid).expect("caller checked");
        write_dispatch(
            out,
            &self.format,
            cid,
            &c.subscribed,
            &d.message,
            seq,
            d.delivery_count,
        );
        c.pending.push_back(Pending {
            seq,
            queue: d.queue,
            tag: d.tag,
            message: d.message,
            delivered: false,
            in_txn: None,
        });
        if c.prefetch == 0 {
            c.pull_waiting = false;
            c.pull_deadline_ms = None;
            c.update_window();
        }
    }

    /// Releases everything the session holds in the core: open transactions are rolled
    /// back, consumers cancelled (unsettled messages redelivered), temporary queues deleted.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.txns.clear();
        self.by_core.clear();
        let conn_id = self.conn.as_ref().map(|c| c.id());
        let advisories = &self.shared.advisories;
        if let Some(conn_id) = conn_id {
            for (id, c) in &self.consumers {
                if !c.advisories.is_empty() {
                    advisories.unwatch(conn_id, id);
                }
            }
        }
        self.watchers = 0;
        // The temporary queues go with the connection (the core deletes its exclusive
        // queues); watchers hear of every temporary destination it had.
        if let Some(conn_id) = conn_id {
            for d in self.temp_dests.drain() {
                advisories.removed(conn_id, &d);
            }
        }
        for (_, c) in self.consumers.drain() {
            drop(c.handles);
            // Messages held for a pull were never sent; they go back unflagged... the core
            // counts them delivered once, which the redelivery counter then shows.
            drop(c.held);
        }
        if let Some(cid) = self.client_id.take() {
            self.shared.client_ids.release(&cid);
        }
        self.conn = None;
    }
}

/// How a handled command is answered.
enum Reply {
    /// A Response now (if one was asked for).
    Now,
    /// A Response once the journal has synced this ticket.
    After(Option<SyncTicket>),
    /// Nothing.
    None,
    /// Nothing; the connection ends.
    Close,
}

/// Writes the dispatch of `message` to consumer `cid`: `seq` (unique per connection) is
/// the broker sequence its acks name, `delivery_count` the times it was delivered before.
fn write_dispatch(
    out: &mut BytesMut,
    format: &Format,
    cid: &ConsumerId,
    subscribed: &Destination,
    message: &Arc<Message>,
    seq: u64,
    delivery_count: u32,
) {
    let redelivery_counter = delivery_count.min(i32::MAX as u32) as i32;
    let msg = adapter::to_openwire(
        message,
        &Outbound {
            subscribed,
            dispatch_seq: seq,
            redelivery_counter,
        },
    );
    let d = MessageDispatch {
        consumer_id: Some(cid.clone()),
        destination: msg.destination.clone(),
        message: Some(Box::new(msg)),
        redelivery_counter,
    };
    encode(out, format, &Command::new(0, Body::MessageDispatch(d)));
}

/// Writes a dispatch without a message: the end of a browse, or a pull that found
/// nothing in time.
fn write_empty_dispatch(out: &mut BytesMut, format: &Format, cid: &ConsumerId, dest: Destination) {
    let d = MessageDispatch {
        consumer_id: Some(cid.clone()),
        destination: Some(dest),
        message: None,
        redelivery_counter: 0,
    };
    encode(out, format, &Command::new(0, Body::MessageDispatch(d)));
}

fn limit(what: &str, max: usize) -> CommandError {
    CommandError::new(
        "javax.jms.ResourceAllocationException",
        format!("at most {max} {what} per connection"),
    )
}

fn unknown_txn(id: i64) -> CommandError {
    CommandError::new(
        "javax.jms.TransactionRolledBackException",
        format!("transaction {id} is not open on this connection"),
    )
}

/// Sends a copy of a poison message to `ActiveMQ.DLQ`, with the cause as ActiveMQ records
/// it (`dlqDeliveryFailureCause`) and where it came from.
fn dead_letter(conn: &Connection, p: &Pending, cause: Option<&str>) {
    let vhost = conn.vhost();
    if vhost.queue(DLQ).is_none() {
        let _ = conn.declare_queue(DLQ, QueueOptions::default(), false);
    }
    let mut m: Message = (*p.message).clone();
    if let Some(cause) = cause {
        m.properties
            .headers
            .insert("dlqDeliveryFailureCause", FieldValue::Str(cause.into()));
    }
    let origin = if m.exchange == "amq.topic" {
        destination::to_url(&Destination::Topic(m.routing_key.clone()))
    } else {
        destination::to_url(&Destination::Queue(p.queue.name().clone()))
    };
    m.properties
        .headers
        .insert("originalDestination", FieldValue::Str(origin.into()));
    m.exchange = ByteString::from_static("");
    m.routing_key = ByteString::from_static(DLQ);
    if let Err(e) = vhost.publish(Arc::new(m)) {
        tracing::warn!(error = %e, "poison message could not be moved to {DLQ}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
