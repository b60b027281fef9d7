//! The MQTT state machine: decoded packets, deliveries and the clock go in; encoded
//! packets and core operations come out. No I/O: `conn.rs` owns the socket and timers.
//!
//! # Invariants
//! - Before CONNECT nothing but CONNECT is handled (the decoder enforces it); after
//!   `close` nothing is handled and nothing is written.
//! - `outgoing` holds exactly the QoS 1/2 deliveries written and not yet acknowledged
//!   (PUBACK, PUBREC); each names its core queue and tag, and its count is bounded by
//!   the consumers' credit gate (the client's Receive Maximum).
//! - A packet id is in use while it is in `outgoing`, in the session's
//!   `QosState::released` (PUBREL sent, PUBCOMP awaited) or in `QosState::unacked` (sent
//!   by an earlier connection, to be resent under the same id when redelivered).
//! - `pending_acks` keeps PUBACK/PUBREC packets in arrival order; each waits for its
//!   journal ticket (or the one before it) to be synced.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use bytestring::ByteString;
use ferromq_core::{
    AckMode, Broker, Connection, ConsumerHandle, ConsumerSpec, CreditGate, Delivery, Event,
    EventReceiver, Exclusivity, FieldTable, LazyChannel, Queue, QueueOptions, Sink, SyncTicket,
    SyncWaiter, Vhost,
};

use crate::adapter::{self, TOPIC_EXCHANGE};
use crate::config::MqttConfig;
use crate::mapping;
use crate::packet::{
    ConnAck, Connect, Disconnect, Publish, PublishAck, QosPid, RetainHandling, SubAck, Subscribe,
    UnsubAck, Unsubscribe, Will,
};
use crate::qos_store::{self, Kind};
use crate::retained::RetainOutcome;
use crate::shared::{Claim, QosState, Shared, SharedSub, Unacked};
use crate::{
    ConnectReturnCode, DecodeError, EncodeError, Encoder, Packet, ProtocolVersion, QoS, ReasonCode,
};

/// What the connection should do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Flush what was written, then close the socket.
    Close,
}

/// A Will to publish later (MQTT 5 Will Delay Interval), handed to the connection task.
#[derive(Debug)]
pub struct DelayedWill {
    /// Seconds to wait.
    pub delay_secs: u32,
    /// The client id, to check that no newer connection resumed the session.
    pub client_id: ByteString,
    /// The claim generation of the connection that left it.
    pub generation: u64,
    /// What to publish.
    pub message: ferromq_core::Message,
    /// Retain it too.
    pub retain: bool,
    /// Where to publish it.
    pub vhost: Vhost,
}

struct Sub {
    filter: ByteString,
    key: String,
    qos: QoS,
    no_local: bool,
    retain_as_published: bool,
    id: Option<NonZeroU32>,
    /// `$share/{group}/...`: the group's queue and this member's consumer on it.
    shared: Option<(String, ConsumerHandle)>,
}

struct Outgoing {
    queue: Arc<Queue>,
    tag: u64,
    qos: QoS,
    /// Kept for a persistent session's next connection (see `QosState::unacked`).
    message: Arc<ferromq_core::Message>,
    /// The message's id in the journal (0: not journaled), for the same after a restart.
    persistent_id: u64,
}

/// Connected-state fields.
struct Live {
    conn: Connection,
    client_id: ByteString,
    claim: Claim,
    /// The session's QoS state, made when first needed (see `Shared::qos_state`).
    qos: std::sync::OnceLock<Arc<Mutex<QosState>>>,
    expiry_secs: u32,
    /// Boxed, as the Will is rare and large: every connection's task holds its session.
    will: Option<Box<Will>>,
    /// The session queue and its consumer; `None` until the first subscription of a
    /// session that ends with its connection (see `Session::session_queue`).
    queue: Option<Arc<Queue>>,
    consumer: Option<ConsumerHandle>,
    /// The consumers' credit gate (the client's Receive Maximum), made with the first
    /// consumer: most connections of a large deployment never have one.
    gate: std::sync::OnceLock<Arc<CreditGate>>,
    receive_max: u16,
}

impl Live {
    /// The session's QoS state, made now if it has none.
    fn qos(&self, shared: &Shared) -> &Arc<Mutex<QosState>> {
        self.qos
            .get_or_init(|| shared.qos_state(&self.client_id, self.claim.generation))
    }

    /// The session's QoS state, if it has one (none: nothing in it).
    fn qos_if_any(&self) -> Option<&Arc<Mutex<QosState>>> {
        self.qos.get()
    }

    fn gate(&self) -> Arc<CreditGate> {
        self.gate
            .get_or_init(|| CreditGate::new(u32::from(self.receive_max)))
            .clone()
    }

    /// How this session consumes a queue: manual acks, gated by its Receive Maximum.
    fn consumer_spec(&self, tag: ByteString, sink: Sink) -> ConsumerSpec {
        ConsumerSpec {
            tag,
            ack_mode: AckMode::Manual,
            gate: self.gate(),
            priority: 0,
            exclusive: Exclusivity::Shared,
            sink,
            selector: None,
        }
    }
}

/// The tables of a session that publishes or receives messages.
#[derive(Default)]
struct Traffic {
    outgoing: HashMap<u16, Outgoing>,
    /// Topic aliases the client set (MQTT 5).
    aliases_in: HashMap<u16, ByteString>,
    /// Topic aliases the broker set towards the client (MQTT 5).
    aliases_out: HashMap<ByteString, NonZeroU16>,
    pending_acks: VecDeque<(SyncTicket, Packet)>,
    /// A delivery's MQTT topic, built from its routing key.
    topic_buf: String,
}

/// One MQTT connection's protocol state.
pub struct Session {
    cfg: Arc<MqttConfig>,
    broker: Broker,
    shared: Arc<Shared>,
    peer: Option<IpAddr>,
    /// A user proven by the transport (TLS client certificate), used when the client
    /// sends no credentials.
    verified_user: Option<String>,
    /// Made with the first consumer (a session queue or a shared subscription).
    deliveries: LazyChannel,
    encoder: Encoder,
    live: Option<Live>,
    closed: bool,
    connect_deadline_ms: u64,
    keep_alive_ms: u64,
    last_read_ms: u64,
    subs: Vec<Sub>,
    /// Made at the first packet that needs one of its tables: a connection that only
    /// sends PINGREQs (most of a large deployment) never does.
    traffic: Option<Box<Traffic>>,
    next_packet_id: u16,
    aliases_out_max: u16,
    sync: Option<SyncWaiter>,
    /// QoS 1 PUBACKs waiting in `pending_acks` (for Receive Maximum).
    pending_qos1: usize,
    /// Set by a normal DISCONNECT: the Will is discarded.
    will_cancelled: bool,
    /// Boxed for the same reason as `Live::will`.
    delayed_will: Option<Box<DelayedWill>>,
    /// The token the connection waits on, if it gave one: cancelled at a takeover.
    stop: Option<tokio_util::sync::CancellationToken>,
}

/// A connected session whose connection is parked (`park.rs`): what an idle session needs
/// to go on, and nothing that can be rebuilt when it does (encoder, journal waiter, empty
/// tables, the listener's handles). Made by [`Session::park`], which only parks a session
/// with nothing under way; [`Session::unpark`] makes the session again.
#[derive(Debug)]
pub struct ParkedSession {
    conn: Connection,
    client_id: ByteString,
    generation: u64,
    qos: Option<Arc<Mutex<QosState>>>,
    will: Option<Box<Will>>,
    peer: Option<IpAddr>,
    version: ProtocolVersion,
    packet_size_max_bytes: u32,
    expiry_secs: u32,
    /// At most `u16::MAX` seconds.
    keep_alive_ms: u32,
    receive_max: u16,
    aliases_out_max: u16,
    next_packet_id: u16,
}

impl ParkedSession {
    /// The protocol version of its CONNECT.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The negotiated Keep Alive (0: none).
    pub fn keep_alive_ms(&self) -> u64 {
        u64::from(self.keep_alive_ms)
    }

    /// The client id it claimed.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The generation of its claim (see [`Shared::claim`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Session {
    /// True while the session has nothing under way that its connection task must watch:
    /// connected, no consumer and no subscription, no acknowledgements owed either way,
    /// no topic aliases to remember. The connection itself must also have nothing
    /// buffered and no delivery channel.
    pub fn may_park(&self) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        let quiet = |t: &Traffic| {
            t.outgoing.is_empty()
                && t.aliases_in.is_empty()
                && t.aliases_out.is_empty()
                && t.pending_acks.is_empty()
        };
        !self.closed
            && live.queue.is_none()
            && live.consumer.is_none()
            && live.gate.get().is_none()
            && self.subs.is_empty()
            && self.traffic.as_deref().is_none_or(quiet)
            && self.pending_qos1 == 0
            && self.delayed_will.is_none()
    }

    /// Parks the session if [`Session::may_park`]: what is left of `self` is closed and
    /// does nothing when dropped.
    pub fn park(&mut self) -> Option<Box<ParkedSession>> {
        if !self.may_park() {
            return None;
        }
        let live = self.live.take()?;
        self.closed = true;
        // A parked connection holds no token: the lot checks its claim's generation.
        self.shared.park(&live.client_id, live.claim.generation);
        let Live {
            conn,
            client_id,
            claim,
            qos,
            expiry_secs,
            will,
            receive_max,
            ..
        } = live;
        Some(Box::new(ParkedSession {
            conn,
            client_id,
            generation: claim.generation,
            qos: qos.into_inner(),
            will,
            peer: self.peer,
            version: self.encoder.version(),
            packet_size_max_bytes: self.encoder.packet_size_max_bytes(),
            expiry_secs,
            keep_alive_ms: u32::try_from(self.keep_alive_ms).unwrap_or(u32::MAX),
            receive_max,
            aliases_out_max: self.aliases_out_max,
            next_packet_id: self.next_packet_id,
        }))
    }

    /// The session of a parked connection again, its last read at `last_read_ms` on the
    /// new connection task's clock, `kick` its claim's token again (see
    /// [`Shared::claim_with`]).
    pub fn unpark(
        p: ParkedSession,
        cfg: Arc<MqttConfig>,
        broker: Broker,
        shared: Arc<Shared>,
        last_read_ms: u64,
        kick: tokio_util::sync::CancellationToken,
    ) -> Self {
        let mut encoder = Encoder::new(p.version);
        encoder.set_packet_size_max_bytes(p.packet_size_max_bytes);
        let sync = broker.sync_waiter();
        Session {
            connect_deadline_ms: 0,
            cfg,
            broker,
            shared,
            peer: p.peer,
            verified_user: None,
            deliveries: LazyChannel::default(),
            encoder,
            live: Some(Live {
                conn: p.conn,
                client_id: p.client_id,
                claim: Claim {
                    generation: p.generation,
                    kick,
                    state: None,
                    took_over: false,
                },
                qos: p.qos.map(std::sync::OnceLock::from).unwrap_or_default(),
                expiry_secs: p.expiry_secs,
                will: p.will,
                queue: None,
                consumer: None,
                gate: std::sync::OnceLock::new(),
                receive_max: p.receive_max,
            }),
            closed: false,
            keep_alive_ms: u64::from(p.keep_alive_ms),
            last_read_ms,
            subs: Vec::new(),
            traffic: None,
            next_packet_id: p.next_packet_id,
            aliases_out_max: p.aliases_out_max,
            sync,
            pending_qos1: 0,
            will_cancelled: false,
            delayed_will: None,
            stop: None,
        }
    }

    /// Sets the user the transport proved (see `ferromq_core::Peer`).
    pub fn set_verified_user(&mut self, user: Option<String>) {
        self.verified_user = user;
    }

    /// Gives the token that the connection already waits on (for shutdown): the client id
    /// claim cancels it when another connection takes the session over, so that the
    /// connection needs only one wait for both (see [`Shared::claim_with`]).
    pub fn set_stop_token(&mut self, token: tokio_util::sync::CancellationToken) {
        self.stop = Some(token);
    }

    /// A session for a new connection. Its deliveries arrive on the receiver that
    /// [`Session::take_events`] hands over once it has one.
    pub fn new(
        cfg: Arc<MqttConfig>,
        broker: Broker,
        shared: Arc<Shared>,
        peer: Option<IpAddr>,
        now_ms: u64,
    ) -> Self {
        let sync = broker.sync_waiter();
        Session {
            connect_deadline_ms: now_ms + cfg.connect_timeout_ms,
            cfg,
            broker,
            shared,
            peer,
            verified_user: None,
            deliveries: LazyChannel::default(),
            encoder: Encoder::new(ProtocolVersion::V3_1_1),
            live: None,
            closed: false,
            keep_alive_ms: 0,
            last_read_ms: now_ms,
            subs: Vec::new(),
            traffic: None,
            next_packet_id: 1,
            aliases_out_max: 0,
            sync,
            pending_qos1: 0,
            will_cancelled: false,
            delayed_will: None,
            stop: None,
        }
    }

    /// Where deliveries arrive, once the session has a consumer (a session queue or a
    /// shared subscription), handed over once: check again after each packet.
    pub fn take_events(&mut self) -> Option<EventReceiver> {
        self.deliveries.take_events()
    }

    fn traffic_mut(&mut self) -> &mut Traffic {
        self.traffic.get_or_insert_with(Box::default)
    }

    /// The sending half of the delivery channel, made on first use.
    fn sink(&mut self) -> Sink {
        self.deliveries.sink().clone()
    }

    /// The session queue, opened (and consumed from) now if it is not yet. A session that
    /// ends with its connection and has no subscription has nothing to receive, so its
    /// queue waits for the first subscription: idle connections cost a queue and a
    /// consumer less (RabbitMQ also declares the queue at the first SUBSCRIBE). A session
    /// that outlives its connection, or resumes one, opens it at CONNECT.
    fn session_queue(&mut self) -> Result<Arc<Queue>, ferromq_core::CoreError> {
        if let Some(q) = self.live.as_ref().and_then(|l| l.queue.clone()) {
            return Ok(q);
        }
        let sink = self.sink();
        let live = self.live.as_mut().expect("live");
        let name = adapter::session_queue_name(&live.client_id);
        let options = adapter::session_queue_options(&self.cfg, live.expiry_secs);
        let (queue, _) = adapter::open_session_queue(&live.conn, &name, options)?;
        let consumer = live
            .conn
            .consume(&name, live.consumer_spec(live.client_id.clone(), sink))?;
        live.queue = Some(queue.clone());
        live.consumer = Some(consumer);
        Ok(queue)
    }

    fn v5(&self) -> bool {
        self.encoder.version().is_v5()
    }

    /// The client id, once connected.
    pub fn client_id(&self) -> Option<&ByteString> {
        self.live.as_ref().map(|l| &l.client_id)
    }

    /// The authenticated user, once connected.
    pub fn user(&self) -> Option<&str> {
        self.live.as_ref().map(|l| l.conn.principal().name.as_str())
    }

    /// Fires when another connection takes this session over.
    pub fn kicked(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.live.as_ref().map(|l| l.claim.kick.clone())
    }

    /// A waiter for the journal, if the broker has one.
    pub fn sync_waiter(&self) -> Option<SyncWaiter> {
        self.sync.clone()
    }

    /// True while PUBACK/PUBREC packets wait for the journal.
    pub fn has_pending_acks(&self) -> bool {
        self.traffic
            .as_ref()
            .is_some_and(|t| !t.pending_acks.is_empty())
    }

    /// QoS 1/2 deliveries awaiting acknowledgement.
    pub fn inflight_out(&self) -> usize {
        self.traffic.as_ref().map_or(0, |t| t.outgoing.len())
    }

    /// The Will to publish after a delay, once the session has closed.
    pub fn take_delayed_will(&mut self) -> Option<DelayedWill> {
        self.delayed_will.take().map(|w| *w)
    }

    /// When `on_timer` must next run (ms on the connection's clock).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.closed {
            return None;
        }
        if self.live.is_none() {
            return Some(self.connect_deadline_ms);
        }
        (self.keep_alive_ms > 0).then(|| self.last_read_ms + self.keep_alive_ms * 3 / 2)
    }

    /// The protocol version, once connected.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.live.as_ref().map(|_| self.encoder.version())
    }

    /// When bytes last arrived (ms on the connection's clock).
    pub fn last_read_ms(&self) -> u64 {
        self.last_read_ms
    }

    /// Bytes arrived (any packet counts for Keep Alive).
    pub fn on_read(&mut self, now_ms: u64) {
        self.last_read_ms = now_ms;
    }

    /// Timers: CONNECT timeout, Keep Alive (1.5 times the negotiated value).
    pub fn on_timer(&mut self, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        match self.next_deadline_ms() {
            Some(d) if now_ms >= d => {
                if self.live.is_none() {
                    tracing::debug!(peer = ?self.peer, "MQTT client sent no CONNECT in time");
                    self.close();
                    return Flow::Close;
                }
                tracing::debug!(peer = ?self.peer, "MQTT keep alive expired");
                self.disconnect(ReasonCode::KeepAliveTimeout, out)
            }
            _ => Flow::Continue,
        }
    }

    /// The decoder failed: say why if the protocol lets us, then close.
    pub fn on_decode_error(
        &mut self,
        e: &DecodeError,
        version: Option<ProtocolVersion>,
        out: &mut BytesMut,
    ) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        tracing::debug!(peer = ?self.peer, error = %e, "MQTT decode error");
        if self.live.is_some() {
            return self.disconnect(e.reason_code(), out);
        }
        match version {
            None => {
                if matches!(e, DecodeError::UnsupportedProtocolLevel { .. }) {
                    out.extend_from_slice(b"\x20\x02\x00\x01");
                }
            }
            Some(v) => {
                self.encoder = Encoder::new(v);
                if v.is_v5() {
                    self.write_connack_error(e.reason_code(), out);
                } else if let Some(code) = e.connect_return_code() {
                    self.write_connack_error(code.to_reason_code(), out);
                }
            }
        }
        self.close();
        Flow::Close
    }

    /// The server is stopping.
    pub fn on_shutdown(&mut self, out: &mut BytesMut) -> Flow {
        if self.live.is_some() && !self.closed {
            // No Will: the client did nothing wrong and the broker is going away.
            self.will_cancelled = true;
            return self.disconnect(ReasonCode::ServerShuttingDown, out);
        }
        self.close();
        Flow::Close
    }

    /// The connection's deadline passed, as the listener's ticker saw it (see
    /// `expiry.rs`): CONNECT timeout or Keep Alive as [`Session::on_timer`] handles them,
    /// or else a write that stalled. Closes in every case.
    pub fn on_expired(&mut self, out: &mut BytesMut) -> Flow {
        let at = self.next_deadline_ms().unwrap_or(0).max(self.last_read_ms);
        if self.on_timer(at, out) == Flow::Continue {
            self.close();
        }
        Flow::Close
    }

    /// Another connection claimed this client id.
    pub fn on_taken_over(&mut self, out: &mut BytesMut) -> Flow {
        tracing::debug!(client = ?self.client_id(), "MQTT session taken over");
        self.disconnect(ReasonCode::SessionTakenOver, out)
    }

    /// Sends DISCONNECT (MQTT 5 only) and closes.
    fn disconnect(&mut self, code: ReasonCode, out: &mut BytesMut) -> Flow {
        if !self.closed && self.v5() && self.live.is_some() {
            self.write(Packet::Disconnect(Disconnect::new(code)), out);
        }
        self.close();
        Flow::Close
    }

    fn write_connack_error(&mut self, code: ReasonCode, out: &mut BytesMut) {
        let mut ack = ConnAck::accepted(false);
        ack.reason_code = code;
        if !self.v5() {
            // MQTT 3 has six return codes; map what has no equivalent to "unavailable".
            if ConnectReturnCode::from_reason_code(code).is_none() {
                ack.reason_code = ReasonCode::ServerUnavailable;
            }
        }
        self.write(Packet::ConnAck(ack), out);
    }

    /// Encodes a packet; a too-large acknowledgement loses its diagnostics, and anything
    /// that still does not fit is dropped (MQTT 5's rule for the peer's Maximum Packet Size).
    fn write(&self, mut p: Packet, out: &mut BytesMut) -> bool {
        match self.encoder.encode(&p, out) {
            Ok(_) => true,
            Err(EncodeError::PacketTooLarge { .. }) if p.strip_diagnostics() => {
                self.encoder.encode(&p, out).is_ok()
            }
            Err(e) => {
                tracing::debug!(error = %e, "MQTT packet not sent");
                false
            }
        }
    }

    /// The journal's synced point moved: sends the acknowledgements now due.
    pub fn on_synced(&mut self, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        let Some(sync) = self.sync.clone() else {
            return Flow::Continue;
        };
        while let Some(&(t, _)) = self.traffic.as_ref().and_then(|x| x.pending_acks.front()) {
            match sync.poll(t) {
                None => break,
                Some(result) => {
                    let (_, mut p) = self
                        .traffic_mut()
                        .pending_acks
                        .pop_front()
                        .expect("front exists");
                    if matches!(p, Packet::PubAck(_)) {
                        self.pending_qos1 -= 1;
                    }
                    if let Err(e) = result {
                        // Per message, and frequent while a disk is full: the journal
                        // logs the failure itself.
                        tracing::debug!(error = %e, "journal refused or failed; MQTT publish not confirmed");
                        if !self.v5() {
                            self.close();
                            return Flow::Close;
                        }
                        if let Packet::PubAck(a) | Packet::PubRec(a) = &mut p {
                            a.reason_code = ReasonCode::UnspecifiedError;
                        }
                    }
                    self.write(p, out);
                }
            }
        }
        Flow::Continue
    }

    /// Queues an acknowledgement behind the journal (or sends it at once).
    fn acknowledge(&mut self, ticket: Option<SyncTicket>, p: Packet, out: &mut BytesMut) {
        // An acknowledgement without a ticket of its own keeps its place in line, and does
        // not share the refusal of the one ahead.
        let ticket = ticket.or(self
            .traffic
            .as_ref()
            .and_then(|x| x.pending_acks.back())
            .map(|p| p.0.behind()));
        match ticket {
            Some(t) => {
                if matches!(p, Packet::PubAck(_)) {
                    self.pending_qos1 += 1;
                }
                self.traffic_mut().pending_acks.push_back((t, p));
                // Already synced (or no waiter): send what is due right away.
                if self.sync.is_some() {
                    self.on_synced(out);
                }
            }
            None => {
                self.write(p, out);
            }
        }
    }

    /// A decoded packet.
    pub fn on_packet(&mut self, p: Packet, now_ms: u64, out: &mut BytesMut) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        self.last_read_ms = now_ms;
        let live = self.live.is_some();
        match p {
            Packet::Connect(c) if !live => self.on_connect(*c, out),
            Packet::Publish(p) if live => self.on_publish(p, out),
            Packet::PubAck(a) if live => {
                self.on_puback(a.packet_id.get());
                Flow::Continue
            }
            Packet::PubRec(a) if live => self.on_pubrec(a, out),
            Packet::PubRel(a) if live => self.on_pubrel(a, out),
            Packet::PubComp(a) if live => {
                let q = self.live.as_ref().expect("live").qos_if_any();
                let marker = q.and_then(|q| lock(q).released.remove(&a.packet_id.get()).flatten());
                self.shared.settle(marker.as_slice());
                Flow::Continue
            }
            Packet::Subscribe(s) if live => self.on_subscribe(s, out),
            Packet::Unsubscribe(u) if live => self.on_unsubscribe(u, out),
            Packet::PingReq if live => {
                self.write(Packet::PingResp, out);
                Flow::Continue
            }
            Packet::Disconnect(d) if live => self.on_disconnect(d, out),
            Packet::Auth(_) if live => self.disconnect(ReasonCode::ProtocolError, out),
            // The server decoder yields nothing else; refuse rather than trust that.
            _ => self.disconnect(ReasonCode::ProtocolError, out),
        }
    }

    fn on_connect(&mut self, c: Connect, out: &mut BytesMut) -> Flow {
        self.encoder = Encoder::new(c.version);
        let v5 = c.version.is_v5();
        // Authentication.
        let principal = match (&c.username, &c.password) {
            (Some(u), password) => {
                let pw = password
                    .as_ref()
                    .map(|p| std::str::from_utf8(p).map_err(|_| ()))
                    .unwrap_or(Ok(""));
                match pw {
                    Ok(pw) => self.broker.authenticate(u, pw, self.peer),
                    Err(()) => Err(ferromq_core::AuthError::BadCredentials),
                }
            }
            (None, Some(_)) => Err(ferromq_core::AuthError::BadCredentials),
            (None, None) => match &self.verified_user {
                Some(user) => self.broker.users().authenticate_verified(user, self.peer),
                None => self.broker.users().authenticate_anonymous(self.peer),
            },
        };
        let principal = match principal {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(peer = ?self.peer, error = %e, "MQTT login refused");
                let code = match e {
                    ferromq_core::AuthError::BadCredentials => ReasonCode::BadUserNameOrPassword,
                    _ => ReasonCode::NotAuthorized,
                };
                self.write_connack_error(code, out);
                self.close();
                return Flow::Close;
            }
        };
        let conn = match self.broker.connect(principal, &self.cfg.vhost) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(peer = ?self.peer, error = %e, "MQTT connection refused");
                self.write_connack_error(ReasonCode::NotAuthorized, out);
                self.close();
                return Flow::Close;
            }
        };
        // Client id: an empty one gets a generated id.
        let assigned = c.client_id.is_empty();
        let client_id: ByteString = if assigned {
            format!("ferromq-{}", self.broker.next_id()).into()
        } else {
            // A copy, not a slice of the CONNECT: the slice would keep the connection's
            // first read buffer for as long as the client id lives (here and in the
            // listener's client-id table).
            String::from(&*c.client_id).into()
        };
        // Session expiry: MQTT 3 persistent sessions never expire (bounded by the config).
        let requested = if v5 {
            c.properties.session_expiry_interval_secs.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry_secs = requested.min(self.cfg.session_expiry_max_secs);
        let queue_name = adapter::session_queue_name(&client_id);
        if c.clean_start {
            if let Some(q) = conn.vhost().queue(&queue_name) {
                let _ = conn.vhost().delete_queue(q.name(), false, false, conn.id());
            }
        } else if expiry_secs > 0
            && conn.vhost().queue(&queue_name).is_none()
            && self.persistent_sessions(&conn) >= self.cfg.persistent_sessions_max
        {
            tracing::info!(client = %client_id, "MQTT persistent session refused: limit reached");
            self.write_connack_error(ReasonCode::QuotaExceeded, out);
            self.close();
            return Flow::Close;
        }
        if c.clean_start && expiry_secs > 0 {
            // Counted only for brand-new persistent sessions, as above.
            if self.persistent_sessions(&conn) >= self.cfg.persistent_sessions_max {
                self.write_connack_error(ReasonCode::QuotaExceeded, out);
                self.close();
                return Flow::Close;
            }
        }
        // A session without expiry and without a queue to resume opens its queue at its
        // first subscription (`session_queue`).
        let present = conn.vhost().queue(&queue_name).is_some();
        if expiry_secs > 0 || present {
            let options = adapter::session_queue_options(&self.cfg, expiry_secs);
            match adapter::open_session_queue(&conn, &queue_name, options) {
                Ok((queue, present)) if present && expiry_secs > 0 => {
                    // A resumed session keeps the expiry its latest connection asked for.
                    queue.set_expires(adapter::session_expires_ms(expiry_secs));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(client = %client_id, error = %e, "MQTT session queue failed");
                    self.write_connack_error(ReasonCode::ServerUnavailable, out);
                    self.close();
                    return Flow::Close;
                }
            }
        }
        let kick = self.stop.take().unwrap_or_default();
        let mut claim = self
            .shared
            .claim_with(&client_id, c.clean_start || !present, kick);
        if claim.took_over {
            tracing::debug!(client = %client_id, "MQTT session takeover");
        }
        // Subscriptions of a resumed session come back from its bindings.
        if present {
            for (filter, qos, no_local, rap, id) in adapter::bound_subscriptions(&conn, &queue_name)
            {
                let key = mapping::binding_key(&filter);
                self.subs.push(Sub {
                    filter,
                    key,
                    qos,
                    no_local,
                    retain_as_published: rap,
                    id,
                    shared: None,
                });
            }
        }
        let receive_max = c
            .properties
            .receive_maximum
            .map_or(u16::MAX, |n| n.get())
            .min(self.cfg.inflight_out_max)
            .max(1);
        if let Some(max) = c.properties.maximum_packet_size_bytes {
            self.encoder.set_packet_size_max_bytes(max.get());
        }
        self.aliases_out_max = c.properties.topic_alias_maximum.unwrap_or(0);
        // Keep Alive, possibly imposed (MQTT 5 Server Keep Alive).
        let mut keep_alive = c.keep_alive_secs;
        let mut server_keep_alive = None;
        let max = self.cfg.server_keep_alive_max_secs;
        if v5 && max > 0 && (keep_alive == 0 || keep_alive > max) {
            keep_alive = max;
            server_keep_alive = Some(max);
        }
        self.keep_alive_ms = u64::from(keep_alive) * 1000;

        let mut ack = ConnAck::accepted(present && !c.clean_start);
        if v5 {
            let p = &mut ack.properties;
            p.receive_maximum = NonZeroU16::new(self.cfg.inflight_in_max.max(1));
            p.topic_alias_maximum = Some(self.cfg.topic_aliases_max);
            p.retain_available = Some(true);
            p.wildcard_subscription_available = Some(true);
            p.subscription_identifiers_available = Some(true);
            p.shared_subscription_available = Some(true);
            p.maximum_packet_size_bytes =
                std::num::NonZeroU32::new(self.cfg.limits.packet_size_max_bytes);
            p.server_keep_alive_secs = server_keep_alive;
            if assigned {
                p.assigned_client_identifier = Some(client_id.clone());
            }
            if expiry_secs != requested {
                p.session_expiry_interval_secs = Some(expiry_secs);
            }
        }
        self.write(Packet::ConnAck(ack), out);

        // Unfinished outgoing QoS 2 exchanges resume with PUBREL.
        let qos = claim.state.take();
        let released: Vec<u16> = qos
            .as_ref()
            .map(|q| lock(q).released.keys().copied().collect())
            .unwrap_or_default();
        for id in released {
            if let Some(id) = NonZeroU16::new(id) {
                self.write(Packet::PubRel(PublishAck::new(id)), out);
            }
        }
        tracing::info!(
            conn = conn.id(),
            protocol = "mqtt",
            peer = ?self.peer,
            user = %conn.principal().name,
            client = %client_id,
            version = ?c.version,
            session_present = present,
            "connection opened"
        );
        let will = c.will.map(Box::new);
        self.live = Some(Live {
            conn,
            client_id,
            claim,
            qos: qos.map(std::sync::OnceLock::from).unwrap_or_default(),
            expiry_secs,
            will,
            queue: None,
            consumer: None,
            gate: std::sync::OnceLock::new(),
            receive_max,
        });
        if expiry_secs > 0 || present {
            if let Err(e) = self.session_queue() {
                tracing::warn!(error = %e, "MQTT session consumer failed");
                self.live = None;
                return self.disconnect(ReasonCode::ServerUnavailable, out);
            }
        }
        if present {
            // A resumed session takes up its shared subscriptions again.
            let saved = (self.live.as_ref().expect("live").qos_if_any())
                .map(|q| lock(q).shared_subs.clone())
                .unwrap_or_default();
            for s in saved {
                if let Err(code) =
                    self.subscribe_one(&s.filter, s.qos, s.no_local, s.retain_as_published, s.id)
                {
                    tracing::debug!(filter = %s.filter, ?code, "MQTT shared subscription not resumed");
                }
            }
            self.save_shared();
        }
        Flow::Continue
    }

    /// Durable session queues in the vhost (persistent sessions, connected or not).
    fn persistent_sessions(&self, conn: &Connection) -> usize {
        conn.vhost()
            .queues()
            .iter()
            .filter(|q| q.options().durable && q.name().starts_with(adapter::SESSION_QUEUE_PREFIX))
            .count()
    }

    fn on_disconnect(&mut self, d: Disconnect, out: &mut BytesMut) -> Flow {
        let live = self.live.as_mut().expect("live");
        if let Some(e) = d.properties.session_expiry_interval_secs {
            if live.expiry_secs == 0 && e > 0 {
                return self.disconnect(ReasonCode::ProtocolError, out);
            }
            live.expiry_secs = e.min(self.cfg.session_expiry_max_secs);
            if let (true, Some(queue)) = (live.expiry_secs > 0, &live.queue) {
                queue.set_expires(adapter::session_expires_ms(live.expiry_secs));
            }
        }
        self.will_cancelled = d.reason_code != ReasonCode::DisconnectWithWillMessage;
        self.close();
        Flow::Close
    }

    fn incoming_inflight(&self) -> usize {
        let l = self.live.as_ref().expect("live");
        self.pending_qos1 + l.qos_if_any().map_or(0, |q| lock(q).incoming.len())
    }

    fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Flow {
        // Topic alias (MQTT 5).
        let topic = match p.properties.topic_alias {
            Some(alias) => {
                let a = alias.get();
                if a > self.cfg.topic_aliases_max {
                    return self.disconnect(ReasonCode::TopicAliasInvalid, out);
                }
                if p.topic.is_empty() {
                    match self.traffic.as_ref().and_then(|x| x.aliases_in.get(&a)) {
                        Some(t) => t.clone(),
                        None => return self.disconnect(ReasonCode::ProtocolError, out),
                    }
                } else {
                    self.traffic_mut().aliases_in.insert(a, p.topic.clone());
                    p.topic.clone()
                }
            }
            None => p.topic.clone(),
        };
        let qos = p.qos.qos();
        if let Some(id) = p.qos.packet_id() {
            if qos == QoS::ExactlyOnce {
                let live = self.live.as_ref().expect("live");
                let seen = live.qos_if_any();
                if seen.is_some_and(|q| lock(q).incoming.contains_key(&id.get())) {
                    // A resend of a message already routed: acknowledge it again only.
                    self.acknowledge(None, Packet::PubRec(PublishAck::new(id)), out);
                    return Flow::Continue;
                }
            }
            if self.incoming_inflight() >= usize::from(self.cfg.inflight_in_max) {
                tracing::debug!(client = ?self.client_id(), "MQTT receive maximum exceeded");
                return self.disconnect(ReasonCode::ReceiveMaximumExceeded, out);
            }
        }
        let live = self.live.as_ref().expect("live");
        let now = self.broker.now_ms();
        let msg = adapter::message_from_publish(
            &topic,
            p.payload,
            qos,
            p.retain,
            &p.properties,
            &live.client_id,
            &live.conn.principal().name,
            now,
        );
        let msg = Arc::new(msg);
        let mut code = ReasonCode::Success;
        let mut retained_ticket = None;
        if p.retain {
            match self.shared.retained().retain(
                &topic,
                &msg,
                self.cfg.retained_max,
                self.cfg.retained_bytes_max,
            ) {
                RetainOutcome::Done(t) => retained_ticket = t,
                RetainOutcome::Refused => code = ReasonCode::QuotaExceeded,
            }
        }
        let outcome = live.conn.vhost().publish(msg);
        let ticket = match outcome {
            Ok(o) => {
                if o.rejected > 0 && code == ReasonCode::Success {
                    code = ReasonCode::QuotaExceeded;
                } else if o.unroutable() && code == ReasonCode::Success {
                    code = ReasonCode::NoMatchingSubscribers;
                }
                match (o.ticket, retained_ticket) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "MQTT publish failed");
                if !self.v5() {
                    self.close();
                    return Flow::Close;
                }
                code = ReasonCode::UnspecifiedError;
                None
            }
        };
        match p.qos {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(id) => {
                let mut a = PublishAck::new(id);
                a.reason_code = code;
                self.acknowledge(ticket, Packet::PubAck(a), out);
            }
            QosPid::ExactlyOnce(id) => {
                let mut a = PublishAck::new(id);
                a.reason_code = code;
                let mut ticket = ticket;
                if !code.is_error() {
                    // Recorded after the message, so the journal cannot hold the id
                    // without the message; the PUBREC waits for both.
                    let live = self.live.as_ref().expect("live");
                    let mut st = lock(live.qos(&self.shared));
                    let marker = mark(&self.shared, live, &st, Kind::Incoming, id.get());
                    if let Some((_, Some(t))) = marker {
                        ticket = Some(ticket.map_or(t, |a| a.max(t)));
                    }
                    st.incoming.insert(id.get(), marker.map(|m| m.0));
                }
                self.acknowledge(ticket, Packet::PubRec(a), out);
            }
        }
        Flow::Continue
    }

    fn on_pubrel(&mut self, a: PublishAck, out: &mut BytesMut) -> Flow {
        let live = self.live.as_ref().expect("live");
        let known = (live.qos_if_any()).and_then(|q| lock(q).incoming.remove(&a.packet_id.get()));
        let mut comp = PublishAck::new(a.packet_id);
        match known {
            Some(marker) => self.shared.settle(marker.as_slice()),
            None => comp.reason_code = ReasonCode::PacketIdentifierNotFound,
        }
        // Behind any PUBREC still waiting for the journal.
        self.acknowledge(None, Packet::PubComp(comp), out);
        Flow::Continue
    }

    fn on_puback(&mut self, id: u16) {
        if let Some(o) = self.traffic.as_mut().and_then(|x| x.outgoing.remove(&id)) {
            let _ = o.queue.ack(&[o.tag]);
        }
    }

    fn on_pubrec(&mut self, a: PublishAck, out: &mut BytesMut) -> Flow {
        let id = a.packet_id.get();
        match self.traffic.as_mut().and_then(|x| x.outgoing.remove(&id)) {
            Some(o) => {
                // The client owns the message now: settle it in the core.
                let _ = o.queue.ack(&[o.tag]);
                if a.reason_code.is_error() || o.qos != QoS::ExactlyOnce {
                    return Flow::Continue;
                }
                // Recorded after the settlement above: a restart cannot find both the
                // message queued and its PUBREL pending.
                let live = self.live.as_ref().expect("live");
                let mut st = lock(live.qos(&self.shared));
                let marker = (st.released.len() < usize::from(self.cfg.inflight_out_max))
                    .then(|| mark(&self.shared, live, &st, Kind::Released, id))
                    .flatten();
                st.released.insert(id, marker.map(|m| m.0));
                drop(st);
                self.write(Packet::PubRel(PublishAck::new(a.packet_id)), out);
            }
            None => {
                let mut rel = PublishAck::new(a.packet_id);
                let live = self.live.as_ref().expect("live");
                let pending = live.qos_if_any();
                if !pending.is_some_and(|q| lock(q).released.contains_key(&id)) {
                    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.write(Packet::PubRel(rel), out);
            }
        }
        Flow::Continue
    }

    fn on_subscribe(&mut self, s: Subscribe, out: &mut BytesMut) -> Flow {
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained: Vec<(ByteString, bool)> = Vec::new();
        let sub_id = s.properties.subscription_identifier;
        for f in &s.filters {
            let o = f.options;
            let code = match self.subscribe_one(
                &f.filter,
                o.qos,
                o.no_local,
                o.retain_as_published,
                sub_id,
            ) {
                Ok(is_new) => {
                    let send = match o.retain_handling {
                        RetainHandling::SendAtSubscribe => true,
                        RetainHandling::SendIfNew => is_new,
                        RetainHandling::DoNotSend => false,
                    };
                    if send && !crate::topic::is_shared(&f.filter) {
                        retained.push((f.filter.clone(), is_new));
                    }
                    match o.qos {
                        QoS::AtMostOnce => ReasonCode::Success,
                        QoS::AtLeastOnce => ReasonCode::GrantedQos1,
                        QoS::ExactlyOnce => ReasonCode::GrantedQos2,
                    }
                }
                Err(code) => code,
            };
            codes.push(code);
        }
        self.save_shared();
        self.write(
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Default::default(),
                reason_codes: codes,
            }),
            out,
        );
        // Retained messages go through the session queue, after the SUBACK (a filter
        // that is not shared subscribed through it, so it is open).
        let live = self.live.as_ref().expect("live");
        let Some(queue) = &live.queue else {
            return Flow::Continue;
        };
        let now = self.broker.now_ms();
        for (filter, _) in retained {
            for m in self
                .shared
                .retained()
                .matching(&filter, self.cfg.retained_max, now)
            {
                queue.enqueue(Arc::new(adapter::retained_copy(&m)));
            }
        }
        Flow::Continue
    }

    /// Adds or replaces one subscription; `Ok(true)` if it is new.
    fn subscribe_one(
        &mut self,
        filter: &ByteString,
        qos: QoS,
        no_local: bool,
        rap: bool,
        id: Option<NonZeroU32>,
    ) -> Result<bool, ReasonCode> {
        let existing = self.subs.iter().position(|s| s.filter == *filter);
        if existing.is_none() && self.subs.len() >= self.cfg.subscriptions_max {
            return Err(ReasonCode::QuotaExceeded);
        }
        let share = crate::topic::shared_subscription(filter);
        let (sink, queue) = match share {
            Some(_) => (self.sink(), None),
            None => {
                let queue = self.session_queue().map_err(|e| {
                    tracing::debug!(error = %e, "MQTT session queue failed");
                    ReasonCode::UnspecifiedError
                })?;
                (self.sink(), Some(queue))
            }
        };
        let live = self.live.as_ref().expect("live");
        let vhost = live.conn.vhost();
        let owner = live.conn.id();
        if let Some(share) = share {
            if let Some(i) = existing {
                // Same group and filter: only the options change.
                let s = &mut self.subs[i];
                s.qos = qos;
                s.id = id;
                return Ok(false);
            }
            let key = mapping::binding_key(share.filter);
            let name = adapter::shared_queue_name(share.share_name, share.filter);
            // Not auto-deleted: a persistent member that is away still belongs to the
            // group, which keeps its messages (`adapter::release_group` ends it). Durable
            // when a persistent session makes it, so those messages survive a restart.
            let options = QueueOptions {
                durable: live.expiry_secs > 0,
                exclusive: false,
                auto_delete: false,
                arguments: FieldTable::new(),
            };
            let handle = (|| {
                if vhost.queue(&name).is_none() {
                    live.conn.declare_queue(&name, options, false)?;
                }
                vhost.bind_queue(&name, TOPIC_EXCHANGE, &key, FieldTable::new(), owner)?;
                live.conn
                    .consume(&name, live.consumer_spec(filter.clone(), sink))
            })()
            .map_err(|e| {
                tracing::debug!(error = %e, "MQTT shared subscription failed");
                ReasonCode::UnspecifiedError
            })?;
            self.subs.push(Sub {
                filter: filter.clone(),
                key,
                qos,
                no_local,
                retain_as_published: rap,
                id,
                shared: Some((name, handle)),
            });
            return Ok(true);
        }
        let key = mapping::binding_key(filter);
        let queue = queue.expect("opened above").name().clone();
        if let Some(i) = existing {
            let old = &self.subs[i];
            let old_args =
                adapter::binding_args(old.qos, old.no_local, old.retain_as_published, old.id);
            let _ = vhost.unbind_queue(&queue, TOPIC_EXCHANGE, &key, &old_args, owner);
        }
        let args = adapter::binding_args(qos, no_local, rap, id);
        vhost
            .bind_queue(&queue, TOPIC_EXCHANGE, &key, args, owner)
            .map_err(|e| {
                tracing::debug!(error = %e, "MQTT subscription failed");
                ReasonCode::UnspecifiedError
            })?;
        let sub = Sub {
            filter: filter.clone(),
            key,
            qos,
            no_local,
            retain_as_published: rap,
            id,
            shared: None,
        };
        match existing {
            Some(i) => {
                self.subs[i] = sub;
                Ok(false)
            }
            None => {
                self.subs.push(sub);
                Ok(true)
            }
        }
    }

    /// Records a persistent session's shared subscriptions with its QoS state (and in a
    /// marker, for a restart) when they changed.
    fn save_shared(&self) {
        let Some(live) = self.live.as_ref().filter(|l| l.expiry_secs > 0) else {
            return;
        };
        let subs: Vec<SharedSub> = self
            .subs
            .iter()
            .filter(|s| s.shared.is_some())
            .map(|s| SharedSub {
                filter: s.filter.clone(),
                qos: s.qos,
                no_local: s.no_local,
                retain_as_published: s.retain_as_published,
                id: s.id,
            })
            .collect();
        if subs.is_empty() && live.qos_if_any().is_none() {
            return;
        }
        let mut st = lock(live.qos(&self.shared));
        if st.shared_subs == subs {
            return;
        }
        // The new marker first: a crash in between leaves the newer one, which wins.
        let old = st.shared_marker.take();
        if !subs.is_empty() {
            let body = qos_store::shared_body(&subs);
            st.shared_marker = self
                .shared
                .record(&st, &live.client_id, Kind::Shared, body)
                .map(|m| m.0);
        }
        st.shared_subs = subs;
        drop(st);
        self.shared.settle(old.as_slice());
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe, out: &mut BytesMut) -> Flow {
        let mut codes = Vec::with_capacity(u.filters.len());
        let mut left = Vec::new();
        for f in &u.filters {
            let Some(i) = self.subs.iter().position(|s| s.filter == *f) else {
                codes.push(ReasonCode::NoSubscriptionExisted);
                continue;
            };
            let sub = self.subs.remove(i);
            let live = self.live.as_ref().expect("live");
            if let (None, Some(queue)) = (&sub.shared, &live.queue) {
                let args =
                    adapter::binding_args(sub.qos, sub.no_local, sub.retain_as_published, sub.id);
                let _ = live.conn.vhost().unbind_queue(
                    queue.name(),
                    TOPIC_EXCHANGE,
                    &sub.key,
                    &args,
                    live.conn.id(),
                );
            }
            // A shared member's consumer ends with `sub`: its unacked messages go back to
            // the group's queue for the other members.
            if let Some((group, handle)) = sub.shared {
                drop(handle);
                left.push(group);
            }
            codes.push(ReasonCode::Success);
        }
        self.save_shared();
        if let Some(live) = &self.live {
            for group in left {
                adapter::release_group(&self.shared, live.conn.vhost(), &group);
            }
        }
        self.write(
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Default::default(),
                reason_codes: codes,
            }),
            out,
        );
        Flow::Continue
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
                let own = self
                    .live
                    .as_ref()
                    .and_then(|l| l.consumer.as_ref())
                    .is_some_and(|c| c.id() == consumer_id);
                if own {
                    tracing::debug!(%reason, "MQTT session queue deleted");
                    return self.disconnect(ReasonCode::AdministrativeAction, out);
                }
                self.subs
                    .retain(|s| s.shared.as_ref().is_none_or(|(_, h)| h.id() != consumer_id));
                Flow::Continue
            }
        }
    }

    fn allocate_packet_id(&mut self) -> Option<NonZeroU16> {
        let live = self.live.as_ref()?;
        let state = live.qos_if_any().map(|q| lock(q));
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let in_use = self
                .traffic
                .as_ref()
                .is_some_and(|x| x.outgoing.contains_key(&id));
            if !in_use && !state.as_ref().is_some_and(|s| s.holds_id(id)) {
                return NonZeroU16::new(id);
            }
        }
        None
    }

    fn deliver(&mut self, d: Delivery, out: &mut BytesMut) {
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let m = &d.message;
        let traffic = self.traffic.get_or_insert_with(Box::default);
        mapping::topic_name(&m.routing_key, &mut traffic.topic_buf);
        // Which subscriptions does it satisfy?
        let own = live
            .consumer
            .as_ref()
            .is_some_and(|c| c.id() == d.consumer_id);
        let mut granted: Option<QoS> = None;
        let mut rap = false;
        let mut ids: smallvec::SmallVec<[NonZeroU32; 2]> = smallvec::SmallVec::new();
        let from_self = adapter::published_by(m, &live.client_id);
        for s in &self.subs {
            let hit = if own {
                s.shared.is_none() && mapping::filter_matches(&s.filter, &traffic.topic_buf)
            } else {
                s.shared
                    .as_ref()
                    .is_some_and(|(_, h)| h.id() == d.consumer_id)
            };
            if !hit || (s.no_local && from_self) {
                continue;
            }
            granted = Some(granted.map_or(s.qos, |g| g.max(s.qos)));
            rap |= s.retain_as_published;
            if let Some(id) = s.id {
                ids.push(id);
            }
        }
        let settle = |d: &Delivery| {
            let _ = d.queue.ack(&[d.tag]);
        };
        let Some(granted) = granted else {
            settle(&d);
            return;
        };
        let qos = adapter::published_qos(m).min(granted);
        let retain = adapter::is_retained_copy(m) || (rap && adapter::was_retained(m));
        // A message an earlier connection sent and did not get acknowledged is resent
        // under its original packet identifier.
        let state = live.qos_if_any().filter(|_| own && d.redelivered);
        let original = if let Some(state) = state.filter(|_| qos != QoS::AtMostOnce) {
            let mut st = lock(state);
            let id = st.take_unacked(&d.message, d.persistent_id);
            if st.unacked.is_empty() {
                // All resent: the marker that kept them for a restart has done its job.
                self.shared.settle(st.unacked_marker.take().as_slice());
            }
            id.and_then(NonZeroU16::new)
        } else {
            None
        };
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            q => match original.or_else(|| self.allocate_packet_id()) {
                Some(id) if q == QoS::AtLeastOnce => QosPid::AtLeastOnce(id),
                Some(id) => QosPid::ExactlyOnce(id),
                None => {
                    // Cannot happen while credit bounds `outgoing`; requeue to be safe.
                    let _ = d.queue.nack(&[d.tag], true);
                    return;
                }
            },
        };
        let v5 = self.v5();
        let topic: ByteString = self
            .traffic
            .as_ref()
            .map_or("", |t| t.topic_buf.as_str())
            .into();
        let Some(mut publish) = adapter::publish_for(
            m,
            topic,
            qos_pid,
            d.redelivered && qos != QoS::AtMostOnce,
            retain,
            &ids,
            v5,
            self.broker.now_ms(),
        ) else {
            settle(&d);
            return;
        };
        if v5 && self.aliases_out_max > 0 {
            self.apply_alias_out(&mut publish);
        }
        let written = self.write(Packet::Publish(publish), out);
        match qos_pid.packet_id() {
            Some(id) if written => {
                self.traffic_mut().outgoing.insert(
                    id.get(),
                    Outgoing {
                        queue: d.queue,
                        tag: d.tag,
                        qos,
                        message: d.message,
                        persistent_id: d.persistent_id,
                    },
                );
            }
            // QoS 0, or too large for the client: settled as if delivered.
            _ => settle(&d),
        }
    }

    fn apply_alias_out(&mut self, p: &mut Publish) {
        let max = usize::from(self.aliases_out_max);
        let aliases = &mut self.traffic_mut().aliases_out;
        if let Some(a) = aliases.get(&p.topic) {
            p.properties.topic_alias = Some(*a);
            p.topic = ByteString::new();
            return;
        }
        let n = aliases.len();
        if n < max {
            let a = NonZeroU16::new(n as u16 + 1).expect("n + 1 > 0");
            aliases.insert(p.topic.clone(), a);
            p.properties.topic_alias = Some(a);
        }
    }

    /// Ends the session: consumers are cancelled (unacknowledged messages return to the
    /// queue, to be redelivered with DUP), the Will is published or scheduled, and a
    /// session that does not outlive its connection is deleted.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let outgoing = self
            .traffic
            .as_mut()
            .map(|t| std::mem::take(&mut t.outgoing))
            .unwrap_or_default();
        // Shared subscriptions end here: their unacknowledged messages go back to the
        // group's queue for the other members.
        let groups: Vec<String> = self
            .subs
            .drain(..)
            .filter_map(|s| s.shared.map(|(group, _)| group))
            .collect();
        let Some(mut live) = self.live.take() else {
            return;
        };
        if live.expiry_secs > 0 {
            // Recorded before the consumer ends, so that the session's next connection,
            // which can only see the requeued messages after that, finds their ids here.
            let mut sent: Vec<(u16, Outgoing)> = outgoing
                .into_iter()
                .filter(|(_, o)| {
                    live.queue
                        .as_ref()
                        .is_some_and(|q| Arc::ptr_eq(&o.queue, q))
                })
                .collect();
            sent.sort_unstable_by_key(|(_, o)| o.tag);
            let mut state = lock(live.qos(&self.shared));
            state
                .unacked
                .extend(sent.into_iter().map(|(id, o)| Unacked {
                    id,
                    message: Some(o.message),
                    persistent_id: o.persistent_id,
                }));
            let over = state
                .unacked
                .len()
                .saturating_sub(usize::from(self.cfg.inflight_out_max));
            state.unacked.drain(..over);
            // For a restart: one marker for them all, replacing the previous one (written
            // first, so that a crash in between leaves the newer one, which wins).
            let old = state.unacked_marker.take();
            if state.unacked.iter().any(|u| u.persistent_id != 0) {
                let body = qos_store::unacked_body(&state.unacked);
                state.unacked_marker = self
                    .shared
                    .record(&state, &live.client_id, Kind::Unacked, body)
                    .map(|m| m.0);
            }
            self.shared.settle(old.as_slice());
        }
        live.consumer = None;
        let current =
            self.shared
                .release(&live.client_id, live.claim.generation, live.expiry_secs > 0);
        if let Some(will) = live.will.take().filter(|_| !self.will_cancelled) {
            let now = self.broker.now_ms();
            let msg = adapter::message_from_will(
                &will,
                &live.client_id,
                &live.conn.principal().name,
                now,
            );
            let delay = will
                .properties
                .will_delay_interval_secs
                .unwrap_or(0)
                .min(self.cfg.will_delay_max_secs)
                .min(live.expiry_secs);
            if delay > 0 {
                self.delayed_will = Some(Box::new(DelayedWill {
                    delay_secs: delay,
                    client_id: live.client_id.clone(),
                    generation: live.claim.generation,
                    message: msg,
                    retain: will.retain,
                    vhost: live.conn.vhost().clone(),
                }));
            } else {
                publish_will(&self.shared, &self.cfg, live.conn.vhost(), msg, will.retain);
            }
        }
        if let (0, true, Some(queue)) = (live.expiry_secs, current, &live.queue) {
            let _ = live
                .conn
                .vhost()
                .delete_queue(queue.name(), false, false, live.conn.id());
        }
        for group in groups {
            adapter::release_group(&self.shared, live.conn.vhost(), &group);
        }
        tracing::debug!(client = %live.client_id, "MQTT session closed");
    }
}

/// Publishes a Will (now, or when its delay is over).
pub fn publish_will(
    shared: &Shared,
    cfg: &MqttConfig,
    vhost: &Vhost,
    msg: ferromq_core::Message,
    retain: bool,
) {
    let msg = Arc::new(msg);
    if retain {
        let topic: ByteString = {
            let mut t = String::new();
            mapping::topic_name(&msg.routing_key, &mut t);
            t.into()
        };
        shared
            .retained()
            .retain(&topic, &msg, cfg.retained_max, cfg.retained_bytes_max);
    }
    if let Err(e) = vhost.publish(msg) {
        tracing::debug!(error = %e, "MQTT will not published");
    }
}

/// Records a marker of a packet id for a persistent session (see `qos_store.rs`): its tag
/// and journal ticket; `None` when the state is in memory only.
fn mark(
    shared: &Shared,
    live: &Live,
    state: &QosState,
    kind: Kind,
    id: u16,
) -> Option<(u64, Option<SyncTicket>)> {
    if live.expiry_secs == 0 {
        return None;
    }
    shared.record(state, &live.client_id, kind, qos_store::id_body(id))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
