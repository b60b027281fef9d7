//! The STOMP state machine: decoded frames, deliveries and the clock go in; encoded frames
//! and core operations come out. No I/O: `conn.rs` owns the socket and the timers.
//!
//! # Invariants
//! - Before CONNECT only CONNECT/STOMP is accepted; after an error the session is closed
//!   and accepts nothing.
//! - `acks` holds exactly the ack ids of unacknowledged MESSAGEs of client-ack
//!   subscriptions; each names its subscription, whose `pending` holds the delivery.
//! - Every subscription's pending count is bounded by its credit gate (its prefetch).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;
use bytestring::ByteString;
use ferromq_core::IdMap;
use ferromq_core::{
    AckMode, Broker, Connection, ConsumerHandle, ConsumerSpec, CreditGate, Delivery, Event,
    EventReceiver, Exclusivity, LazyChannel, Queue, QueueOptions, SyncTicket, SyncWaiter,
    Transaction, DEFAULT_VHOST,
};

use crate::adapter::{self, MessageFrame, SubscribeOptions};
use crate::codec::{encode_parts, Command, Frame, Headers, Item, Version};
use crate::destination::Destination;
use crate::error::StompError;
use crate::StompConfig;

/// What the connection should do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Flush what was written, then close the socket.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckKind {
    Auto,
    /// Cumulative: acknowledging a message acknowledges every earlier one of the subscription.
    Client,
    ClientIndividual,
}

struct Subscription {
    ack: AckKind,
    handle: ConsumerHandle,
    /// ack id -> (queue, tag), in delivery order.
    pending: BTreeMap<u64, (Arc<Queue>, u64)>,
    /// Set for durable subscriptions: UNSUBSCRIBE with `durable:true` deletes this queue.
    durable_queue: Option<ByteString>,
    /// Temp queues are delivered with the name the client used.
    destination: Option<ByteString>,
}

struct Txn {
    core: Transaction,
    /// Deliveries acked inside the transaction: redelivered if it is aborted.
    acked: Vec<(Arc<Queue>, u64)>,
}

/// Heart-beat bookkeeping, all times in ms on the connection's monotonic clock.
#[derive(Debug, Default)]
struct Heartbeat {
    send_every_ms: u64,
    expect_within_ms: u64,
    last_read_ms: u64,
    last_write_ms: u64,
}

/// One STOMP connection's protocol state.
pub struct Session {
    cfg: Arc<StompConfig>,
    broker: Broker,
    peer: Option<IpAddr>,
    /// A user proven by the transport (TLS client certificate), used when the client
    /// sends no credentials.
    verified_user: Option<String>,
    /// Made at the first subscription (or temporary queue).
    deliveries: LazyChannel,
    conn: Option<Connection>,
    version: Version,
    closed: bool,
    connect_deadline_ms: u64,
    client_id: Option<String>,
    subs: HashMap<ByteString, Subscription>,
    by_consumer: IdMap<u64, ByteString>,
    acks: IdMap<u64, ByteString>,
    next_message_id: u64,
    txns: HashMap<ByteString, Txn>,
    /// `/temp-queue/x` name -> generated queue name.
    temp_queues: HashMap<ByteString, ByteString>,
    hb: Heartbeat,
    scratch: String,
    identity: Option<(u64, String)>,
    /// Tells when journaled messages are synced (brokers with a store).
    sync: Option<SyncWaiter>,
    /// The journal ticket of the frame being handled (a persistent SEND or a COMMIT).
    frame_ticket: Option<SyncTicket>,
    /// RECEIPTs held until their ticket is synced, in order; a receipt for a frame with
    /// no ticket queues behind earlier ones, so receipts keep frame order.
    pending_receipts: VecDeque<(SyncTicket, ByteString)>,
    /// DISCONNECT arrived while receipts were pending: close once they are sent.
    closing: bool,
}

fn err<T>(message: &str, detail: impl Into<String>) -> Result<T, StompError> {
    Err(StompError::new(message, detail))
}

impl Session {
    /// Sets the user the transport proved (see `ferromq_core::Peer`).
    pub fn set_verified_user(&mut self, user: Option<String>) {
        self.verified_user = user;
    }

    /// A session for a new connection. Its deliveries arrive on the receiver that
    /// [`Session::take_events`] hands over once it has one.
    pub fn new(cfg: Arc<StompConfig>, broker: Broker, peer: Option<IpAddr>, now_ms: u64) -> Self {
        let connect_deadline_ms = now_ms + cfg.connect_timeout_ms;
        let sync = broker.sync_waiter();
        Session {
            cfg,
            broker,
            peer,
            verified_user: None,
            deliveries: LazyChannel::default(),
            conn: None,
            version: Version::V1_0,
            closed: false,
            connect_deadline_ms,
            client_id: None,
            subs: HashMap::new(),
            by_consumer: IdMap::default(),
            acks: IdMap::default(),
            next_message_id: 1,
            txns: HashMap::new(),
            temp_queues: HashMap::new(),
            hb: Heartbeat {
                last_read_ms: now_ms,
                last_write_ms: now_ms,
                ..Default::default()
            },
            scratch: String::new(),
            identity: None,
            sync,
            frame_ticket: None,
            pending_receipts: VecDeque::new(),
            closing: false,
        }
    }

    /// Where deliveries arrive, once the session has a consumer, handed over once: check
    /// again after each frame.
    pub fn take_events(&mut self) -> Option<EventReceiver> {
        self.deliveries.take_events()
    }

    /// A waiter for the journal, if the broker has one, for the connection to learn when
    /// [`Session::on_synced`] has work.
    pub fn sync_waiter(&self) -> Option<SyncWaiter> {
        self.sync.clone()
    }

    /// True while RECEIPTs wait for the journal.
    pub fn has_pending_receipts(&self) -> bool {
        !self.pending_receipts.is_empty()
    }

    /// The journal's synced point moved: sends the RECEIPTs that are now due (or an ERROR
    /// if the journal failed or refused the message for lack of space), and closes after a
    /// DISCONNECT that waited for them.
    pub fn on_synced(&mut self, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        let Some(sync) = &self.sync else {
            return Flow::Continue;
        };
        while let Some((t, _)) = self.pending_receipts.front() {
            match sync.poll(*t) {
                None => break,
                Some(Ok(())) => {
                    let (_, r) = self.pending_receipts.pop_front().expect("front exists");
                    self.write_receipt(&r, out);
                }
                Some(Err(e)) => {
                    let (_, r) = self.pending_receipts.pop_front().expect("front exists");
                    return self.fail(e.into(), Some(&r), out);
                }
            }
        }
        if self.closing && self.pending_receipts.is_empty() {
            self.close();
            return Flow::Close;
        }
        Flow::Continue
    }

    fn write_receipt(&self, receipt: &str, out: &mut BytesMut) {
        encode_parts(
            out,
            self.version,
            Command::Receipt,
            &[("receipt-id", receipt)],
            &Headers::new(),
            &[],
        );
    }

    /// The negotiated version (1.0 until CONNECT is handled).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether CONNECT has succeeded.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The core's connection id and the authenticated user, once CONNECT succeeded (kept
    /// after the session closes, for the closing log line).
    pub fn identity(&self) -> Option<(u64, &str)> {
        self.identity
            .as_ref()
            .map(|(id, user)| (*id, user.as_str()))
    }

    /// Bytes arrived from the client.
    pub fn on_read(&mut self, now_ms: u64) {
        self.hb.last_read_ms = now_ms;
    }

    /// Bytes were written to the client.
    pub fn on_write(&mut self, now_ms: u64) {
        self.hb.last_write_ms = now_ms;
    }

    /// The next moment `on_timer` has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        if self.conn.is_none() {
            return Some(self.connect_deadline_ms);
        }
        let send =
            (self.hb.send_every_ms > 0).then(|| self.hb.last_write_ms + self.hb.send_every_ms);
        let recv =
            (self.hb.expect_within_ms > 0).then(|| self.hb.last_read_ms + self.hb.expect_within_ms);
        match (send, recv) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: send a heart-beat, or give up on a silent client.
    pub fn on_timer(&mut self, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        if self.conn.is_none() {
            if now_ms >= self.connect_deadline_ms {
                return self.fail(
                    StompError::new("Timeout", "no CONNECT frame was received in time"),
                    None,
                    out,
                );
            }
            return Flow::Continue;
        }
        if self.hb.expect_within_ms > 0 && now_ms >= self.hb.last_read_ms + self.hb.expect_within_ms
        {
            tracing::debug!(peer = ?self.peer, "STOMP heart-beat timeout");
            return self.fail(StompError::new("Heart-beat timeout", "no data was received from the client within the negotiated heart-beat interval"), None, out);
        }
        if self.hb.send_every_ms > 0 && now_ms >= self.hb.last_write_ms + self.hb.send_every_ms {
            adapter::encode_heartbeat(out);
        }
        Flow::Continue
    }

    /// The decoder failed: the bytes cannot be framed, so the connection ends.
    pub fn on_decode_error(&mut self, e: crate::codec::DecodeError, out: &mut BytesMut) -> Flow {
        self.fail(e.into(), None, out)
    }

    /// The server is shutting down.
    pub fn on_shutdown(&mut self, out: &mut BytesMut) -> Flow {
        self.fail(
            StompError::new(
                "Server shutdown",
                "the broker is shutting down; reconnect later",
            ),
            None,
            out,
        )
    }

    /// A frame (or heart-beat) from the client.
    pub fn on_item(&mut self, item: Item, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        if self.closing {
            // After DISCONNECT nothing more is taken; the pending receipts still go out.
            return Flow::Continue;
        }
        let Item::Frame(frame) = item else {
            return Flow::Continue;
        };
        let receipt = frame.headers.get_bytestring("receipt").cloned();
        let result = if self.conn.is_none() {
            match frame.command {
                Command::Connect | Command::Stomp => self.on_connect(&frame, now_ms, out),
                other => err(
                    "Not connected",
                    format!(
                        "the first frame must be CONNECT or STOMP, not {}",
                        other.as_str()
                    ),
                ),
            }
        } else {
            self.frame_ticket = None;
            self.on_frame(frame)
        };
        match result {
            Ok(flow) => {
                if let Some(r) = receipt {
                    if self.conn.is_some() {
                        // A persistent SEND is receipted once it is synced.
                        let wait = self
                            .frame_ticket
                            .take()
                            .or(self.pending_receipts.back().map(|p| p.0.behind()));
                        match wait {
                            Some(t) if self.sync.is_some() => {
                                self.pending_receipts.push_back((t, r));
                            }
                            _ => self.write_receipt(&r, out),
                        }
                    }
                }
                if flow == Flow::Close && !self.pending_receipts.is_empty() {
                    self.closing = true;
                }
                if !self.pending_receipts.is_empty() {
                    // Some may be synced already, and no later change would announce them.
                    return self.on_synced(out);
                }
                if flow == Flow::Close {
                    self.close();
                }
                flow
            }
            Err(e) => self.fail(e, receipt.as_deref(), out),
        }
    }

    /// A delivery or cancellation from the core.
    pub fn on_event(&mut self, ev: Event, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        match ev {
            Event::Deliver(d) => {
                self.deliver(d, out);
                Flow::Continue
            }
            Event::Cancelled {
                consumer_id,
                reason,
            } => {
                let Some(id) = self.by_consumer.remove(&consumer_id) else {
                    return Flow::Continue;
                };
                self.subs.remove(&id);
                self.fail(
                    StompError::new(
                        "Subscription cancelled",
                        format!("subscription '{id}' ended: {reason}"),
                    ),
                    None,
                    out,
                )
            }
        }
    }

    fn deliver(&mut self, d: Delivery, out: &mut BytesMut) {
        let Some(id) = self.by_consumer.get(&d.consumer_id) else {
            // The subscription ended while this was in flight; its handle's drop already
            // returned unacked messages to the queue.
            return;
        };
        let Some(sub) = self.subs.get_mut(id) else {
            return;
        };
        let message_id = self.next_message_id;
        self.next_message_id += 1;
        if sub.ack == AckKind::Auto {
            sub.handle.written(1);
        } else {
            sub.pending.insert(message_id, (d.queue.clone(), d.tag));
            self.acks.insert(message_id, id.clone());
        }
        let frame = MessageFrame {
            version: self.version,
            subscription: id,
            message_id,
            with_ack_header: self.version == Version::V1_2 && sub.ack != AckKind::Auto,
            destination: sub.destination.as_deref(),
        };
        adapter::encode_message(out, &frame, &d, &mut self.scratch);
    }

    fn fail(&mut self, e: StompError, receipt: Option<&str>, out: &mut BytesMut) -> Flow {
        if !self.closed {
            tracing::debug!(peer = ?self.peer, error = %e, "STOMP error; closing connection");
            let mut hs: smallvec::SmallVec<[(&str, &str); 4]> = smallvec::smallvec![
                ("message", e.message.as_str()),
                ("content-type", "text/plain")
            ];
            if let Some(r) = receipt {
                hs.push(("receipt-id", r));
            }
            if let Some((k, v)) = &e.extra_header {
                hs.push((k, v.as_str()));
            }
            encode_parts(
                out,
                self.version,
                Command::Error,
                &hs,
                &Headers::new(),
                e.detail.as_bytes(),
            );
        }
        self.close();
        Flow::Close
    }

    /// Releases everything the session holds in the core: open transactions are rolled
    /// back, subscriptions cancelled (unacked messages redelivered), exclusive queues deleted.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        for (_, t) in self.txns.drain() {
            requeue_all(t.acked);
        }
        self.acks.clear();
        self.by_consumer.clear();
        self.subs.clear();
        self.conn = None;
    }

    fn on_connect(
        &mut self,
        f: &Frame,
        now_ms: u64,
        out: &mut BytesMut,
    ) -> Result<Flow, StompError> {
        let h = &f.headers;
        let version = match h.get("accept-version") {
            None => Version::V1_0,
            Some(list) => {
                let offered: Vec<&str> = list.split(',').map(str::trim).collect();
                if offered.contains(&"1.2") {
                    Version::V1_2
                } else if offered.contains(&"1.1") {
                    Version::V1_1
                } else if offered.contains(&"1.0") {
                    Version::V1_0
                } else {
                    let mut e = StompError::new(
                        "Supported protocol versions are 1.0,1.1,1.2",
                        format!("none of the versions offered ({list}) is supported"),
                    );
                    e.extra_header = Some(("version", "1.0,1.1,1.2".into()));
                    return Err(e);
                }
            }
        };
        self.version = version;
        let (cx, cy) = match h.get("heart-beat") {
            None => (0, 0),
            Some(v) => parse_heartbeat(v)?,
        };
        let principal = match (h.get("login"), h.get("passcode")) {
            (Some(user), pass) => self
                .broker
                .authenticate(user, pass.unwrap_or(""), self.peer)?,
            (None, _) => match &self.verified_user {
                Some(user) => self.broker.users().authenticate_verified(user, self.peer)?,
                None => self.broker.users().authenticate_anonymous(self.peer)?,
            },
        };
        // `host` names the vhost when such a vhost exists; clients such as stomp.py send the
        // server's host name there, which falls back to the default vhost.
        let vhost = match h.get("host") {
            Some(v) if self.broker.vhost(v).is_some() => v.to_string(),
            _ => DEFAULT_VHOST.to_string(),
        };
        let conn = self.broker.connect(principal, &vhost)?;
        self.client_id = h.get("client-id").map(str::to_string);
        let (sx, sy) = (self.cfg.heartbeat_send_ms, self.cfg.heartbeat_receive_ms);
        if version != Version::V1_0 {
            self.hb.send_every_ms = if sx == 0 || cy == 0 { 0 } else { sx.max(cy) };
            // Tolerate a late heart-beat: twice the negotiated period, as clients drift.
            self.hb.expect_within_ms = if cx == 0 || sy == 0 {
                0
            } else {
                2 * cx.max(sy)
            };
        }
        self.hb.last_read_ms = now_ms;
        self.hb.last_write_ms = now_ms;
        let session = format!("session-{}", conn.id());
        let hb = format!("{sx},{sy}");
        let mut hs: smallvec::SmallVec<[(&str, &str); 4]> = smallvec::smallvec![
            ("version", version.as_str()),
            ("server", self.cfg.server_name.as_str()),
            ("session", session.as_str())
        ];
        if version != Version::V1_0 {
            hs.push(("heart-beat", hb.as_str()));
        }
        encode_parts(out, version, Command::Connected, &hs, &Headers::new(), &[]);
        tracing::info!(
            conn = conn.id(),
            protocol = "stomp",
            peer = ?self.peer,
            user = %conn.principal().name,
            vhost,
            version = version.as_str(),
            "connection opened"
        );
        self.identity = Some((conn.id(), conn.principal().name.clone()));
        self.conn = Some(conn);
        Ok(Flow::Continue)
    }

    fn on_frame(&mut self, f: Frame) -> Result<Flow, StompError> {
        match f.command {
            Command::Send => self.on_send(f)?,
            Command::Subscribe => self.on_subscribe(&f.headers)?,
            Command::Unsubscribe => self.on_unsubscribe(&f.headers)?,
            Command::Ack | Command::Nack => {
                self.on_ack(&f.headers, f.command == Command::Ack)?;
                // Its receipt waits until the settlement is journaled (if it was).
                self.frame_ticket = self.broker.sync_point();
            }
            Command::Begin => self.on_begin(&f.headers)?,
            Command::Commit => self.on_commit(&f.headers)?,
            Command::Abort => self.on_abort(&f.headers)?,
            Command::Disconnect => return Ok(Flow::Close),
            Command::Connect | Command::Stomp => {
                return err("Already connected", "CONNECT was sent twice")
            }
            other => {
                return err(
                    "Invalid frame",
                    format!(
                        "{} is a server frame; clients may not send it",
                        other.as_str()
                    ),
                )
            }
        }
        Ok(Flow::Continue)
    }

    fn conn(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("frames after CONNECT have a connection")
    }

    fn on_send(&mut self, f: Frame) -> Result<(), StompError> {
        let h = &f.headers;
        let dest_s = h
            .get("destination")
            .ok_or_else(|| StompError::missing_header("SEND", "destination"))?;
        let dest =
            Destination::parse(dest_s).map_err(|e| StompError::new("Invalid destination", e.0))?;
        let (exchange, key) = {
            let temp = &mut self.temp_queues;
            let conn = self.conn.as_ref().expect("connected");
            let subs = &mut self.subs;
            let by_consumer = &mut self.by_consumer;
            let deliveries = &mut self.deliveries;
            let cfg = &self.cfg;
            adapter::resolve_send(conn, &dest, |name| {
                temp_queue(conn, cfg, deliveries, temp, subs, by_consumer, name)
            })?
        };
        let user = self.conn().principal().name.as_str();
        let mut msg =
            adapter::message_from_send(h, f.body, exchange, key, user, self.broker.now_ms())?;
        if let Some(reply_to) = msg.properties.reply_to.clone() {
            if let Ok(Destination::TempQueue(name)) = Destination::parse(&reply_to) {
                let conn = self.conn.as_ref().expect("connected");
                let q = temp_queue(
                    conn,
                    &self.cfg,
                    &mut self.deliveries,
                    &mut self.temp_queues,
                    &mut self.subs,
                    &mut self.by_consumer,
                    name,
                )?;
                msg.properties.reply_to = Some(format!("/reply-queue/{q}").into());
            }
        }
        let msg = Arc::new(msg);
        if let Some(t) = h.get("transaction") {
            let txn = self.txns.get_mut(t).ok_or_else(|| unknown_txn(t))?;
            return txn.core.publish(msg).map_err(Into::into);
        }
        let outcome = self.conn().vhost().publish(msg)?;
        self.frame_ticket = outcome.ticket;
        if outcome.rejected > 0 && h.get("receipt").is_some() {
            return err("Message rejected", format!("a queue for '{dest_s}' is full and refuses new messages (x-overflow reject-publish)"));
        }
        Ok(())
    }

    fn on_subscribe(&mut self, h: &Headers) -> Result<(), StompError> {
        let dest_s = h
            .get("destination")
            .ok_or_else(|| StompError::missing_header("SUBSCRIBE", "destination"))?;
        let id: ByteString = match h.get_bytestring("id") {
            Some(id) => id.clone(),
            None if self.version == Version::V1_0 => dest_s.into(),
            None => return Err(StompError::missing_header("SUBSCRIBE", "id")),
        };
        if self.subs.contains_key(&id) {
            return err(
                "Duplicate subscription",
                format!("a subscription with id '{id}' already exists on this connection"),
            );
        }
        if self.subs.len() >= self.cfg.subscriptions_max {
            return err(
                "Too many subscriptions",
                format!(
                    "at most {} subscriptions per connection",
                    self.cfg.subscriptions_max
                ),
            );
        }
        let selector = ferromq_core::Selector::parse_optional(
            h.get("selector"),
            &self.broker.limits().selector(),
        )
        .map_err(|e| StompError::new("Invalid selector", e.to_string()))?
        .map(Arc::new);
        let ack = match h.get("ack").unwrap_or("auto") {
            "auto" => AckKind::Auto,
            "client" => AckKind::Client,
            "client-individual" => AckKind::ClientIndividual,
            other => {
                return err(
                    "Invalid ack mode",
                    format!("ack must be auto, client or client-individual, not '{other}'"),
                )
            }
        };
        let dest =
            Destination::parse(dest_s).map_err(|e| StompError::new("Invalid destination", e.0))?;
        let durable = self.durable_name(h, &id);
        let conn = self.conn.as_ref().expect("connected");
        let sq = adapter::resolve_subscribe(
            conn,
            &dest,
            &SubscribeOptions {
                durable,
                backlog_max: self.cfg.topic_backlog_max,
                selector: selector.as_ref().map(|s| s.text()),
            },
        )?;
        let prefetch = prefetch(h)?;
        let limit = match prefetch {
            Some(n) if n > 0 => n.min(self.broker.limits().consumer_unacked_max),
            _ => self.broker.limits().consumer_unacked_max,
        };
        let priority = match h.get("x-priority").or(h.get("activemq.priority")) {
            None => 0,
            Some(p) => p.trim().parse::<i32>().map_err(|_| {
                StompError::new(
                    "Invalid header",
                    format!("priority must be an integer, got '{p}'"),
                )
            })?,
        };
        let spec = ConsumerSpec {
            tag: id.clone(),
            ack_mode: if ack == AckKind::Auto {
                AckMode::Auto
            } else {
                AckMode::Manual
            },
            gate: CreditGate::new(limit),
            priority,
            // RabbitMQ's `exclusive` refuses other consumers; ActiveMQ's keeps them on standby.
            exclusive: if h.get("exclusive") == Some("true") {
                Exclusivity::Sole
            } else if h.get("activemq.exclusive") == Some("true") {
                Exclusivity::Failover
            } else {
                Exclusivity::Shared
            },
            sink: self.deliveries.sink().clone(),
            selector: if sq.filtered { None } else { selector },
        };
        let handle = conn.consume(&sq.name, spec)?;
        self.by_consumer.insert(handle.id(), id.clone());
        self.subs.insert(
            id,
            Subscription {
                ack,
                handle,
                pending: BTreeMap::new(),
                durable_queue: sq.durable_name,
                destination: None,
            },
        );
        Ok(())
    }

    /// The queue-name suffix of a durable topic subscription, if this SUBSCRIBE asks for one:
    /// RabbitMQ's `durable:true` (or `persistent:true`) with the subscription id, or
    /// ActiveMQ's `activemq.subscriptionName`; qualified by the CONNECT `client-id` if any.
    fn durable_name(&self, h: &Headers, id: &str) -> Option<String> {
        let name = match h.get("activemq.subscriptionName") {
            Some(n) => n,
            None if matches!(h.get("durable").or(h.get("persistent")), Some("true")) => id,
            None => return None,
        };
        Some(match &self.client_id {
            Some(c) => format!("{c}.{name}"),
            None => name.to_string(),
        })
    }

    fn on_unsubscribe(&mut self, h: &Headers) -> Result<(), StompError> {
        let id = match (h.get("id"), self.version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => h
                .get("destination")
                .ok_or_else(|| StompError::missing_header("UNSUBSCRIBE", "id"))?,
            (None, _) => return Err(StompError::missing_header("UNSUBSCRIBE", "id")),
        };
        let sub = self.subs.remove(id).ok_or_else(|| {
            StompError::new(
                "Unknown subscription",
                format!("no subscription with id '{id}'"),
            )
        })?;
        self.by_consumer.remove(&sub.handle.id());
        for ack_id in sub.pending.keys() {
            self.acks.remove(ack_id);
        }
        let forget = matches!(h.get("durable").or(h.get("persistent")), Some("true"))
            || h.get("activemq.subscriptionName").is_some();
        let durable_queue = sub.durable_queue.clone();
        drop(sub);
        if let (true, Some(q)) = (forget, durable_queue) {
            let conn = self.conn();
            conn.vhost().delete_queue(&q, false, false, conn.id())?;
        }
        Ok(())
    }

    fn on_ack(&mut self, h: &Headers, positive: bool) -> Result<(), StompError> {
        let cmd = if positive { "ACK" } else { "NACK" };
        let id_header = if self.version == Version::V1_2 {
            "id"
        } else {
            "message-id"
        };
        let id_s = h
            .get(id_header)
            .ok_or_else(|| StompError::missing_header(cmd, id_header))?;
        let unknown = || {
            StompError::new("Unknown message", format!("{cmd} for message '{id_s}', which is not awaiting acknowledgement on this connection"))
        };
        let ack_id: u64 = id_s.parse().map_err(|_| unknown())?;
        let sub_id = self.acks.get(&ack_id).cloned().ok_or_else(unknown)?;
        let sub = self.subs.get_mut(&sub_id).ok_or_else(unknown)?;
        let settled: Vec<(u64, (Arc<Queue>, u64))> = if sub.ack == AckKind::Client {
            let later = sub.pending.split_off(&(ack_id + 1));
            std::mem::replace(&mut sub.pending, later)
                .into_iter()
                .collect()
        } else {
            sub.pending
                .remove(&ack_id)
                .map(|d| vec![(ack_id, d)])
                .unwrap_or_default()
        };
        for (id, _) in &settled {
            self.acks.remove(id);
        }
        let requeue = !matches!(h.get("requeue"), Some("false"));
        if let Some(t) = h.get("transaction") {
            let txn = self.txns.get_mut(t).ok_or_else(|| unknown_txn(t))?;
            for (_, (q, tag)) in settled {
                if positive {
                    txn.core.ack(q.clone(), tag)?;
                } else {
                    txn.core.nack(q.clone(), tag, requeue)?;
                }
                txn.acked.push((q, tag));
            }
            return Ok(());
        }
        settle(settled.into_iter().map(|(_, d)| d), positive, requeue);
        Ok(())
    }

    fn on_begin(&mut self, h: &Headers) -> Result<(), StompError> {
        let t = h
            .get_bytestring("transaction")
            .ok_or_else(|| StompError::missing_header("BEGIN", "transaction"))?;
        if self.txns.contains_key(t) {
            return err(
                "Transaction exists",
                format!("transaction '{t}' is already open"),
            );
        }
        if self.txns.len() >= self.cfg.transactions_max {
            return err(
                "Too many transactions",
                format!(
                    "at most {} open transactions per connection",
                    self.cfg.transactions_max
                ),
            );
        }
        let core = Transaction::new(self.broker.limits());
        self.txns.insert(
            t.clone(),
            Txn {
                core,
                acked: Vec::new(),
            },
        );
        Ok(())
    }

    fn on_commit(&mut self, h: &Headers) -> Result<(), StompError> {
        let t = h
            .get("transaction")
            .ok_or_else(|| StompError::missing_header("COMMIT", "transaction"))?;
        let mut txn = self.txns.remove(t).ok_or_else(|| unknown_txn(t))?;
        let outcomes = txn.core.commit(self.conn().vhost())?;
        // Answered once what it published is synced (never early: a commit covers more).
        self.frame_ticket = outcomes
            .iter()
            .filter_map(|o| o.ticket)
            .reduce(SyncTicket::max)
            .map(SyncTicket::watermark);
        Ok(())
    }

    fn on_abort(&mut self, h: &Headers) -> Result<(), StompError> {
        let t = h
            .get("transaction")
            .ok_or_else(|| StompError::missing_header("ABORT", "transaction"))?;
        let mut txn = self.txns.remove(t).ok_or_else(|| unknown_txn(t))?;
        txn.core.rollback();
        requeue_all(txn.acked);
        Ok(())
    }
}

fn unknown_txn(t: &str) -> StompError {
    StompError::new(
        "Unknown transaction",
        format!("transaction '{t}' was not begun on this connection"),
    )
}

fn prefetch(h: &Headers) -> Result<Option<u32>, StompError> {
    match h.get("prefetch-count").or(h.get("activemq.prefetchSize")) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
            StompError::new(
                "Invalid header",
                format!("prefetch must be a non-negative integer, got '{v}'"),
            )
        }),
    }
}

/// Parses `heart-beat: cx,cy`.
fn parse_heartbeat(v: &str) -> Result<(u64, u64), StompError> {
    let bad = || {
        StompError::new(
            "Invalid heart-beat",
            format!("heart-beat must be two non-negative integers 'cx,cy', got '{v}'"),
        )
    };
    let (a, b) = v.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// Acks or nacks deliveries, grouping consecutive ones of the same queue into one call.
fn settle(items: impl Iterator<Item = (Arc<Queue>, u64)>, positive: bool, requeue: bool) {
    let mut batch: Vec<u64> = Vec::new();
    let mut current: Option<Arc<Queue>> = None;
    let flush = |q: &Arc<Queue>, tags: &mut Vec<u64>| {
        // A tag can be unknown only if the queue was deleted meanwhile: nothing to settle.
        let _ = if positive {
            q.ack(tags)
        } else {
            q.nack(tags, requeue)
        };
        tags.clear();
    };
    for (q, tag) in items {
        if let Some(c) = &current {
            if !Arc::ptr_eq(c, &q) {
                flush(c, &mut batch);
            }
        }
        batch.push(tag);
        current = Some(q);
    }
    if let Some(c) = &current {
        flush(c, &mut batch);
    }
}

fn requeue_all(items: Vec<(Arc<Queue>, u64)>) {
    settle(items.into_iter(), false, true);
}

/// The connection's private queue for `/temp-queue/name`, created and subscribed on first
/// use (RabbitMQ's temp-queue semantics: exclusive, auto-ack, deleted with the connection).
fn temp_queue(
    conn: &Connection,
    cfg: &StompConfig,
    deliveries: &mut LazyChannel,
    temps: &mut HashMap<ByteString, ByteString>,
    subs: &mut HashMap<ByteString, Subscription>,
    by_consumer: &mut IdMap<u64, ByteString>,
    name: &str,
) -> Result<ByteString, StompError> {
    if let Some(q) = temps.get(name) {
        return Ok(q.clone());
    }
    if temps.len() >= cfg.subscriptions_max {
        return err(
            "Too many temp queues",
            format!(
                "at most {} temporary queues per connection",
                cfg.subscriptions_max
            ),
        );
    }
    let options = QueueOptions {
        durable: false,
        exclusive: true,
        auto_delete: false,
        arguments: Default::default(),
    };
    let (q, _) = conn.declare_queue("", options, false)?;
    let dest: ByteString = format!("/temp-queue/{name}").into();
    let spec = ConsumerSpec {
        tag: dest.clone(),
        ack_mode: AckMode::Auto,
        gate: CreditGate::new(conn.broker().limits().consumer_unacked_max),
        priority: 0,
        exclusive: Exclusivity::Sole,
        sink: deliveries.sink().clone(),
        selector: None,
    };
    let handle = conn.consume(q.name(), spec)?;
    by_consumer.insert(handle.id(), dest.clone());
    subs.insert(
        dest.clone(),
        Subscription {
            ack: AckKind::Auto,
            handle,
            pending: BTreeMap::new(),
            durable_queue: None,
            destination: Some(dest),
        },
    );
    temps.insert(name.into(), q.name().clone());
    Ok(q.name().clone())
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
