//! The AMQP connection state machine: decoded frames, deliveries and the clock go in;
//! encoded frames and core operations come out. No I/O: `conn.rs` owns the socket and
//! the timers, and every method takes the current time (ms on the connection's monotonic
//! clock) instead of reading one.
//!
//! # Phases
//! `Header` -> (`connection.start`) `StartOk` -> (`tune`) `TuneOk` -> `Open` ->
//! (`open-ok`) `Running` -> `Closing` (the server sent `connection.close` and waits for
//! `close-ok`) -> `Closed`. A client `connection.close` goes straight to `Closed`.
//!
//! # Invariants
//! - Channel frames are accepted only in `Running`.
//! - `consumers` maps every live (or retired) core consumer id to its channel; a channel
//!   removes its ids when it is released.
//! - After a connection error, nothing but `close`/`close-ok` is processed, and the core
//!   connection has already been released.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use amq_protocol::protocol::{channel, connection, AMQPClass};
use ferromq_core::IdMap;

use crate::adapter::{self, Broker, Event, EventReceiver, Link, Principal};
use crate::channel::{Channel, Ctx};
use crate::codec::{encode_heartbeat, encode_method, short, DecodeError, Frame, PROTOCOL_HEADER};
use crate::error::{code, AmqpError, Scope};
use crate::handshake::{self, ClientCaps, Tuned};
use crate::out::Out;
use crate::AmqpConfig;

/// What the connection should do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Flush what was written, then close the socket.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Header,
    StartOk,
    TuneOk,
    Open,
    Running,
    Closing { deadline_ms: u64 },
    Closed,
}

/// One AMQP connection's protocol state.
pub struct Session {
    cfg: Arc<AmqpConfig>,
    broker: Broker,
    peer: Option<IpAddr>,
    /// A user proven by the transport (TLS client certificate), used when the client
    /// sends no credentials.
    verified_user: Option<String>,
    phase: Phase,
    handshake_deadline_ms: u64,
    caps: ClientCaps,
    principal: Option<Principal>,
    tuned: Tuned,
    link: Option<Link>,
    channels: HashMap<u16, Channel>,
    consumers: IdMap<u64, u16>,
    /// Channels with confirms ready to send.
    dirty: Vec<u16>,
    last_read_ms: u64,
    last_write_ms: u64,
    now_ms: u64,
    blocked: bool,
    scratch: Vec<u8>,
    identity: Option<(u64, String)>,
}

fn conn_method(m: connection::AMQPMethod) -> AMQPClass {
    AMQPClass::Connection(m)
}

impl Session {
    /// Sets the user the transport proved (see `ferromq_core::Peer`).
    pub fn set_verified_user(&mut self, user: Option<String>) {
        self.verified_user = user;
    }

    /// A session for a new connection. Its deliveries arrive on the receiver that
    /// [`Session::take_events`] hands over once it has one.
    pub fn new(cfg: Arc<AmqpConfig>, broker: Broker, peer: Option<IpAddr>, now_ms: u64) -> Self {
        let l = &cfg.limits;
        let tuned = Tuned {
            channel_max: l.channel_max,
            frame_max: l.frame_max_bytes,
            heartbeat_s: l.heartbeat_s,
        };
        Session {
            handshake_deadline_ms: now_ms + l.handshake_timeout_ms,
            cfg,
            broker,
            peer,
            verified_user: None,
            phase: Phase::Header,
            caps: ClientCaps::default(),
            principal: None,
            tuned,
            link: None,
            channels: HashMap::new(),
            consumers: IdMap::default(),
            dirty: Vec::new(),
            last_read_ms: now_ms,
            last_write_ms: now_ms,
            now_ms,
            blocked: false,
            scratch: Vec::with_capacity(256),
            identity: None,
        }
    }

    /// Where deliveries arrive, once a consumer made the channel (see `Link`), handed
    /// over once: check again after each batch of frames.
    pub fn take_events(&mut self) -> Option<EventReceiver> {
        self.link.as_ref().and_then(Link::take_events)
    }

    /// The largest frame the decoder must accept now.
    pub fn frame_max(&self) -> u32 {
        self.tuned.frame_max
    }

    /// The negotiated heartbeat interval in seconds (0: none).
    pub fn heartbeat_s(&self) -> u16 {
        self.tuned.heartbeat_s
    }

    /// Whether `connection.open` has succeeded and the connection is in use.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The core's connection id and the user, once open (kept after close, for logs).
    pub fn identity(&self) -> Option<(u64, &str)> {
        self.identity.as_ref().map(|(id, u)| (*id, u.as_str()))
    }

    /// Bytes arrived from the client.
    pub fn on_read(&mut self, now_ms: u64) {
        self.last_read_ms = now_ms;
        self.now_ms = now_ms;
    }

    /// Bytes were written to the client.
    pub fn on_write(&mut self, now_ms: u64) {
        self.last_write_ms = now_ms;
    }

    fn send(&mut self, out: &mut Out, channel: u16, m: AMQPClass) {
        encode_method(out, &mut self.scratch, channel, &m);
    }

    /// The next moment [`Session::on_timer`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Closed => None,
            Phase::Closing { deadline_ms } => Some(deadline_ms),
            Phase::Running | Phase::Open if self.tuned.heartbeat_s > 0 => {
                let (send, dead) = self.heartbeat_ms();
                Some((self.last_write_ms + send).min(self.last_read_ms + dead))
            }
            Phase::Running => None,
            _ => Some(self.handshake_deadline_ms),
        }
    }

    /// (send a heartbeat after this much silence, give up after this much).
    fn heartbeat_ms(&self) -> (u64, u64) {
        let hb = u64::from(self.tuned.heartbeat_s) * 1000;
        ((hb / 2).max(1), 2 * hb)
    }

    /// Time passed: send a heartbeat, give up on a silent client or a handshake that
    /// takes too long, or stop waiting for `close-ok`.
    pub fn on_timer(&mut self, now_ms: u64, out: &mut Out) -> Flow {
        self.now_ms = now_ms;
        match self.phase {
            Phase::Closed => Flow::Close,
            Phase::Closing { deadline_ms } => {
                if now_ms >= deadline_ms {
                    self.phase = Phase::Closed;
                    return Flow::Close;
                }
                Flow::Continue
            }
            Phase::Running | Phase::Open if self.tuned.heartbeat_s > 0 => {
                let (send, dead) = self.heartbeat_ms();
                if now_ms >= self.last_read_ms + dead {
                    tracing::debug!(peer = ?self.peer, "AMQP heartbeat timeout; closing connection");
                    self.close();
                    return Flow::Close;
                }
                if now_ms >= self.last_write_ms + send {
                    encode_heartbeat(out);
                    // Counted as written now, so the next deadline moves on even before
                    // the socket write completes.
                    self.last_write_ms = now_ms;
                }
                Flow::Continue
            }
            Phase::Running => Flow::Continue,
            _ => {
                if now_ms >= self.handshake_deadline_ms {
                    tracing::debug!(peer = ?self.peer, "AMQP handshake timeout; closing connection");
                    self.close();
                    return Flow::Close;
                }
                Flow::Continue
            }
        }
    }

    /// The bytes cannot be read on: `connection.close` (or, for a wrong protocol
    /// header, ours), then the socket closes. There is no waiting for `close-ok`: the
    /// stream can no longer be framed.
    pub fn on_decode_error(&mut self, e: DecodeError, out: &mut Out) -> Flow {
        match e {
            DecodeError::ProtocolHeader => out.extend_from_slice(&PROTOCOL_HEADER),
            DecodeError::Frame(e) => {
                self.fail(e, out);
            }
        }
        self.close();
        Flow::Close
    }

    /// The server is shutting down: `connection.close` 320, then close the socket.
    pub fn on_shutdown(&mut self, out: &mut Out) -> Flow {
        if matches!(self.phase, Phase::Running | Phase::Open | Phase::TuneOk) {
            self.fail(
                AmqpError::new(
                    code::CONNECTION_FORCED,
                    "broker forced connection closure with reason 'shutdown'",
                ),
                out,
            );
        }
        self.close();
        Flow::Close
    }

    /// The broker applies (`Some(reason)`) or lifts (`None`) flow control on publishers:
    /// `connection.blocked` / `unblocked`, to clients that announced the capability.
    pub fn set_blocked(&mut self, reason: Option<&str>, out: &mut Out) {
        if self.phase != Phase::Running || !self.caps.connection_blocked {
            return;
        }
        match (reason, self.blocked) {
            (Some(r), false) => {
                self.blocked = true;
                let m = connection::AMQPMethod::Blocked(connection::Blocked { reason: short(r) });
                self.send(out, 0, conn_method(m));
            }
            (None, true) => {
                self.blocked = false;
                let m = connection::AMQPMethod::Unblocked(connection::Unblocked {});
                self.send(out, 0, conn_method(m));
            }
            _ => {}
        }
    }

    /// A connection error: `connection.close` with it, release everything, and wait for
    /// `close-ok` (briefly).
    fn fail(&mut self, e: AmqpError, out: &mut Out) -> Flow {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed) {
            return Flow::Close;
        }
        tracing::debug!(peer = ?self.peer, error = %e, "AMQP connection error");
        let m = connection::AMQPMethod::Close(connection::Close {
            reply_code: e.code,
            reply_text: short(&e.text),
            class_id: e.class_id,
            method_id: e.method_id,
        });
        self.send(out, 0, conn_method(m));
        let handshaking = !matches!(self.phase, Phase::Running);
        self.close();
        if handshaking {
            // Before the connection is open there is nothing to wait for.
            return Flow::Close;
        }
        self.phase = Phase::Closing {
            deadline_ms: self.now_ms + self.cfg.limits.close_timeout_ms,
        };
        Flow::Continue
    }

    /// Releases everything the session holds in the core: channels are released
    /// (transactions rolled back, unacked deliveries requeued, consumers cancelled) and
    /// the core connection dropped (its exclusive queues go with it).
    pub fn close(&mut self) {
        for (_, mut ch) in self.channels.drain() {
            ch.release(&mut self.consumers);
        }
        self.consumers.clear();
        self.dirty.clear();
        self.link = None;
        self.phase = Phase::Closed;
    }

    /// Sends what became ready while frames were processed (publisher confirms).
    pub fn flush(&mut self, out: &mut Out) {
        let Some(link) = &self.link else {
            self.dirty.clear();
            return;
        };
        for id in self.dirty.drain(..) {
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.flush_confirms(out, &mut self.scratch, link);
            }
        }
    }

    /// A waiter on the journal, once the connection is open on a broker with a store.
    pub fn sync_waiter(&self) -> Option<adapter::SyncWaiter> {
        self.link.as_ref().and_then(|l| l.sync_waiter())
    }

    /// True while some channel's confirms wait for the journal.
    pub fn has_pending_sync(&self) -> bool {
        self.channels
            .values()
            .any(|c| c.confirms_waiting() || c.commits_waiting())
    }

    /// The journal's synced point moved: sends the confirms that became due.
    pub fn on_synced(&mut self, out: &mut Out) {
        let Some(link) = &self.link else {
            return;
        };
        let mut failed = Vec::new();
        for (&id, ch) in self.channels.iter_mut() {
            ch.flush_confirms(out, &mut self.scratch, link);
            if let Err(e) = ch.flush_commits(out, &mut self.scratch, link) {
                failed.push((id, e));
            }
        }
        for (id, e) in failed {
            self.channel_error(id, e, out);
        }
    }

    /// Closes channel `ch_id` with `e` (a channel-scoped error), releasing what it holds.
    fn channel_error(&mut self, ch_id: u16, e: AmqpError, out: &mut Out) {
        let (Some(ch), Some(link)) = (self.channels.get_mut(&ch_id), &self.link) else {
            return;
        };
        tracing::debug!(peer = ?self.peer, channel = ch_id, error = %e, "AMQP channel error");
        // Confirms already earned are sent before the close.
        ch.flush_confirms(out, &mut self.scratch, link);
        ch.release(&mut self.consumers);
        ch.closing = true;
        let m = channel::AMQPMethod::Close(channel::Close {
            reply_code: e.code,
            reply_text: short(&e.text),
            class_id: e.class_id,
            method_id: e.method_id,
        });
        encode_method(out, &mut self.scratch, ch_id, &AMQPClass::Channel(m));
    }

    /// A delivery or cancellation from the core.
    pub fn on_event(&mut self, ev: Event, out: &mut Out) -> Flow {
        if self.phase != Phase::Running {
            return Flow::Continue;
        }
        let consumer = match &ev {
            Event::Deliver(d) => d.consumer_id,
            Event::Cancelled { consumer_id, .. } => *consumer_id,
        };
        let Some(ch_id) = self.consumers.get(&consumer).copied() else {
            // A consumer released meanwhile: dropping its handle already returned its
            // unacked messages to the queue.
            return Flow::Continue;
        };
        let Some(link) = self.link.as_ref() else {
            return Flow::Continue;
        };
        let Some(ch) = self.channels.get_mut(&ch_id) else {
            return Flow::Continue;
        };
        let mut ctx = Ctx {
            link,
            out,
            scratch: &mut self.scratch,
            frame_max: self.tuned.frame_max,
            limits: &self.cfg.limits,
            consumers: &mut self.consumers,
            cancel_notify: self.caps.consumer_cancel_notify,
        };
        match ev {
            Event::Deliver(d) => ch.deliver(d, &mut ctx),
            Event::Cancelled { consumer_id, .. } => ch.cancelled(consumer_id, &mut ctx),
        }
        Flow::Continue
    }

    /// A frame from the client.
    pub fn on_frame(&mut self, frame: Frame, now_ms: u64, out: &mut Out) -> Flow {
        self.now_ms = now_ms;
        let result = match self.phase {
            Phase::Closed => return Flow::Close,
            Phase::Closing { .. } => return self.on_frame_closing(frame, out),
            Phase::Running => self.on_frame_running(frame, out),
            _ => self.on_handshake(frame, out),
        };
        match result {
            Ok(flow) => flow,
            Err(e) => self.fail(e, out),
        }
    }

    fn on_frame_closing(&mut self, frame: Frame, out: &mut Out) -> Flow {
        match frame {
            Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                self.phase = Phase::Closed;
                Flow::Close
            }
            Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                let m = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                self.send(out, 0, conn_method(m));
                self.phase = Phase::Closed;
                Flow::Close
            }
            _ => Flow::Continue,
        }
    }

    fn expected(&self, what: &str) -> AmqpError {
        AmqpError::command_invalid(format!("expected '{what}'"))
    }

    fn on_handshake(&mut self, frame: Frame, out: &mut Out) -> Result<Flow, AmqpError> {
        match (self.phase, frame) {
            (Phase::Header, Frame::ProtocolHeader) => {
                let mut m = handshake::start(&self.cfg.product, &self.cfg.version);
                if self.verified_user.is_some() {
                    // A verified client certificate: offer it first, as RabbitMQ's
                    // rabbitmq_auth_mechanism_ssl does.
                    m.mechanisms = handshake::MECHANISMS_WITH_EXTERNAL.into();
                }
                self.send(out, 0, conn_method(connection::AMQPMethod::Start(m)));
                self.phase = Phase::StartOk;
                Ok(Flow::Continue)
            }
            (_, Frame::Heartbeat) => Ok(Flow::Continue),
            (
                Phase::StartOk,
                Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(s))),
            ) => self.on_start_ok(s, out),
            (
                Phase::TuneOk,
                Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(t))),
            ) => {
                self.tuned = handshake::tune_ok(self.tuned, &t).map_err(|e| e.at(10, 31))?;
                self.phase = Phase::Open;
                Ok(Flow::Continue)
            }
            (
                Phase::Open,
                Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Open(o))),
            ) => {
                let principal = self.principal.take().expect("set at start-ok");
                let user = principal.name.clone();
                let link = Link::open(&self.broker, principal, o.virtual_host.as_str())
                    .map_err(|e| e.at(10, 40))?;
                tracing::info!(
                    conn = link.id(),
                    protocol = "amqp",
                    peer = ?self.peer,
                    user,
                    vhost = o.virtual_host.as_str(),
                    "connection opened"
                );
                self.identity = Some((link.id(), user));
                self.link = Some(link);
                self.phase = Phase::Running;
                let m = connection::AMQPMethod::OpenOk(connection::OpenOk {});
                self.send(out, 0, conn_method(m));
                Ok(Flow::Continue)
            }
            (_, Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_)))) => {
                let m = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                self.send(out, 0, conn_method(m));
                self.close();
                Ok(Flow::Close)
            }
            (phase, _) => Err(self.expected(match phase {
                Phase::StartOk => "connection.start-ok",
                Phase::TuneOk => "connection.tune-ok",
                _ => "connection.open",
            })),
        }
    }

    fn on_start_ok(&mut self, s: connection::StartOk, out: &mut Out) -> Result<Flow, AmqpError> {
        self.caps = handshake::client_caps(&s.client_properties);
        let mechanism = s.mechanism.as_str();
        let principal = match (mechanism, &self.verified_user) {
            ("EXTERNAL", Some(user)) => {
                adapter::authenticate_verified(&self.broker, user, self.peer)
            }
            _ => {
                let depth = self.cfg.limits.table_depth_max;
                let creds = handshake::credentials(mechanism, &s.response, depth)
                    .map_err(|e| e.at(10, 11))?;
                match creds {
                    None => Err(adapter::login_refused(mechanism)),
                    Some((user, pass)) => {
                        adapter::authenticate(&self.broker, mechanism, &user, &pass, self.peer)
                    }
                }
            }
        }
        .map_err(|e| e.at(10, 11));
        match principal {
            Ok(p) => {
                self.principal = Some(p);
                let m = connection::AMQPMethod::Tune(connection::Tune {
                    channel_max: self.tuned.channel_max,
                    frame_max: self.tuned.frame_max,
                    heartbeat: self.tuned.heartbeat_s,
                });
                self.send(out, 0, conn_method(m));
                self.phase = Phase::TuneOk;
                Ok(Flow::Continue)
            }
            Err(e) => {
                tracing::info!(peer = ?self.peer, protocol = "amqp", error = %e, "login refused");
                // Clients that did not ask for `connection.close` on a failed login get a
                // closed socket, as the spec says.
                if self.caps.authentication_failure_close {
                    return Err(e);
                }
                self.close();
                Ok(Flow::Close)
            }
        }
    }

    fn on_frame_running(&mut self, frame: Frame, out: &mut Out) -> Result<Flow, AmqpError> {
        let ch_id = match &frame {
            Frame::Heartbeat | Frame::ProtocolHeader => return Ok(Flow::Continue),
            Frame::Method(0, AMQPClass::Connection(_)) => {
                let Frame::Method(_, AMQPClass::Connection(m)) = frame else {
                    unreachable!()
                };
                return self.on_connection_method(m, out);
            }
            Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) => *c,
        };
        if ch_id == 0 {
            return Err(AmqpError::command_invalid(
                "only connection methods may be sent on channel 0",
            ));
        }
        if let Frame::Method(_, AMQPClass::Connection(m)) = &frame {
            return Err(AmqpError::command_invalid(format!(
                "connection method {} on channel {ch_id}",
                AMQPClass::Connection(m.clone()).get_amqp_method_id()
            )));
        }
        if let Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Open(_))) = &frame {
            return self.open_channel(ch_id, out);
        }
        let Some(ch) = self.channels.get_mut(&ch_id) else {
            let (c, m) = match &frame {
                Frame::Method(_, m) => (m.get_amqp_class_id(), m.get_amqp_method_id()),
                _ => (0, 0),
            };
            return Err(AmqpError::new(code::CHANNEL_ERROR, "expected 'channel.open'").at(c, m));
        };
        if ch.closing {
            match frame {
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                    self.channels.remove(&ch_id);
                }
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                    let m = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                    self.send(out, ch_id, AMQPClass::Channel(m));
                }
                _ => {}
            }
            return Ok(Flow::Continue);
        }
        let link = self.link.as_ref().expect("running sessions have a link");
        let mut ctx = Ctx {
            link,
            out,
            scratch: &mut self.scratch,
            frame_max: self.tuned.frame_max,
            limits: &self.cfg.limits,
            consumers: &mut self.consumers,
            cancel_notify: self.caps.consumer_cancel_notify,
        };
        let result = match frame {
            Frame::Method(_, m) if ch.expecting_content() => {
                let (c, mm) = (m.get_amqp_class_id(), m.get_amqp_method_id());
                Err(AmqpError::new(
                    code::UNEXPECTED_FRAME,
                    "expected content header for class 60, got non content header frame instead",
                )
                .at(c, mm))
            }
            Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                ch.release(ctx.consumers);
                self.channels.remove(&ch_id);
                let m = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                encode_method(out, &mut self.scratch, ch_id, &AMQPClass::Channel(m));
                return Ok(Flow::Continue);
            }
            Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => Ok(()),
            Frame::Method(_, m) => ch.on_method(m, &mut ctx),
            Frame::Header(_, h) => ch.on_header(h, &mut ctx),
            Frame::Body(_, b) => ch.on_body(b, &mut ctx),
            Frame::Heartbeat | Frame::ProtocolHeader => Ok(()),
        };
        if ch.confirms_ready(link) && self.dirty.last() != Some(&ch_id) {
            self.dirty.push(ch_id);
        }
        match result {
            Ok(()) => Ok(Flow::Continue),
            Err(e) if e.scope() == Scope::Channel => {
                self.channel_error(ch_id, e, out);
                Ok(Flow::Continue)
            }
            Err(e) => Err(e),
        }
    }

    fn open_channel(&mut self, id: u16, out: &mut Out) -> Result<Flow, AmqpError> {
        if self.channels.contains_key(&id) {
            return Err(
                AmqpError::new(code::CHANNEL_ERROR, "second 'channel.open' seen").at(20, 10),
            );
        }
        if id > self.tuned.channel_max {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!(
                    "channel number {id} is above the negotiated channel_max {}",
                    self.tuned.channel_max
                ),
            )
            .at(20, 10));
        }
        self.channels.insert(id, Channel::new(id));
        let m = channel::AMQPMethod::OpenOk(channel::OpenOk {});
        self.send(out, id, AMQPClass::Channel(m));
        Ok(Flow::Continue)
    }

    fn on_connection_method(
        &mut self,
        m: connection::AMQPMethod,
        out: &mut Out,
    ) -> Result<Flow, AmqpError> {
        match m {
            connection::AMQPMethod::Close(c) => {
                tracing::debug!(peer = ?self.peer, code = c.reply_code, text = c.reply_text.as_str(), "AMQP client closed the connection");
                let m = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                self.send(out, 0, conn_method(m));
                self.close();
                Ok(Flow::Close)
            }
            connection::AMQPMethod::UpdateSecret(_) => Err(AmqpError::new(
                code::NOT_IMPLEMENTED,
                "connection.update-secret is not supported",
            )
            .at(10, 70)),
            // Sent by a client that is itself flow-controlled; nothing to do.
            connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_) => {
                Ok(Flow::Continue)
            }
            other => {
                let id = AMQPClass::Connection(other).get_amqp_method_id();
                Err(AmqpError::command_invalid("unexpected connection method").at(10, id))
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
