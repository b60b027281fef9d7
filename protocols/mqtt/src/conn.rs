//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection while it is busy. Reads, deliveries, the journal's synced
//! point and the stop token are multiplexed with `select!`; writes happen in between and
//! are bounded by `write_stall_timeout_ms`, so a client that stops reading is disconnected
//! instead of pinning memory (its deliveries are already bounded by credit). The stop
//! token is cancelled at shutdown, at a takeover and when a deadline passes (CONNECT
//! timeout, Keep Alive, a write stall: the listener's ticker checks them, `expiry.rs`),
//! so that an idle connection's task holds one small wait besides its read.
//!
//! An idle plain-TCP connection gives up its task: after a quiet period it hands its
//! socket and its compacted session to the listener's parking lot (`park.rs`), which
//! answers its PINGREQs, and it gets a task again (`resume`) for anything else. The
//! ticker wakes it for that (`Deadline::park_due`); a fresh connection with
//! `park_after_connect_ms` 0 parks without waiting as soon as its CONNACK is written.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::buffers::BufSizes;
use ferromq_core::{next_event, Broker, Event, EventReceiver, Peer, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, ReusableBoxFuture};
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::config::MqttConfig;
use crate::park::{self, Context, Lot};
use crate::session::{publish_will, DelayedWill, Flow, ParkedSession, Session};
use crate::shared::Shared;
use crate::{Decoder, Packet};

/// Deliveries encoded per wake-up before the socket is written.
const EVENT_BATCH_MAX: usize = 256;
/// Once this much output is buffered it is written before more deliveries are encoded.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long the last packets (DISCONNECT at shutdown) may take to write.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// The read buffer starts with room for a CONNECT and keep-alives, grows by 8 KiB reads
/// for a client sending in bulk and goes back to the start size when a PINGREQ-sized read
/// drains it. Most connections of a large deployment are idle, and 8 KiB buffers were
/// most of their memory.
const BUF_SIZES: BufSizes = BufSizes {
    read_start_bytes: 128,
    read_grow_bytes: 8 * 1024,
    keep_bytes: 4 * 1024,
};

/// A connection's place in its listener, kept while the connection lives, parked or not.
#[derive(Debug, Default)]
pub struct Slot {
    /// Its share of the listener's connection limit.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Its entry in the connections the listener waits for at shutdown.
    pub task: Option<TaskTrackerToken>,
}

/// What a parked connection's new task starts with (`park.rs`).
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// Read by the lot and not handled: in front of everything read next.
    pub rbuf: BytesMut,
    /// Owed to the client (the rest of a PINGRESP).
    pub wbuf: BytesMut,
    /// The Keep Alive deadline passed while parked.
    pub expired: bool,
}

/// How a connection may park while idle (`park.rs`).
#[derive(Debug)]
pub struct Parking<S> {
    /// The connection's place in its listener, which it keeps while parked.
    pub slot: Slot,
    /// The plain TCP socket the stream is, for a stream that may be one; `None`: the
    /// connection never parks (TLS, WebSocket).
    pub into_tcp: Option<fn(S) -> Result<TcpStream, S>>,
}

/// Runs one MQTT connection over any byte stream until it closes or `shutdown` fires.
pub fn serve_connection<S>(
    stream: S,
    peer: impl Into<Peer>,
    config: Arc<MqttConfig>,
    broker: Broker,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    parking: Parking<S>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Peer {
        addr: peer,
        verified_user,
    } = peer.into();
    let mut session = Session::new(
        config.clone(),
        broker.clone(),
        shared.clone(),
        peer.map(|p| p.ip()),
        0,
    );
    session.set_verified_user(verified_user);
    // Cancelled at shutdown and, once the client id is claimed, at a takeover: one wait
    // for both in every connection's task.
    let stop = shutdown.child_token();
    session.set_stop_token(stop.clone());
    let cx = Context {
        config,
        broker,
        shared,
        shutdown,
    };
    run(
        Conn {
            stream,
            peer,
            session,
            stop,
            start: Instant::now(),
            slot: parking.slot,
            into_tcp: parking.into_tcp,
        },
        Resume::default(),
        cx,
    )
}

/// Runs a connection that leaves the parking lot, its last read at `last_read`.
pub(crate) fn resume(
    tcp: TcpStream,
    session: ParkedSession,
    slot: Slot,
    last_read: Instant,
    resume: Resume,
    cx: Context,
) -> impl Future<Output = ()> {
    let peer = tcp.peer_addr().ok();
    // Its stop token again, and its clock starts at its last read.
    let stop = cx.shutdown.child_token();
    let session = resumed_session(&cx, session, 0, stop.clone());
    let conn = Conn {
        stream: tcp,
        peer,
        session,
        stop,
        start: last_read,
        slot,
        into_tcp: Some(Ok),
    };
    run(conn, resume, cx)
}

/// The session of a parked connection again, its last read at `last_read_ms` on its new
/// clock, `stop` its connection's token: a child of the shutdown token (so cancelled if
/// the server is stopping), given to its client-id claim (and cancelled now if the
/// session was taken over while parked).
pub(crate) fn resumed_session(
    cx: &Context,
    session: ParkedSession,
    last_read_ms: u64,
    stop: CancellationToken,
) -> Session {
    cx.shared
        .unpark(session.client_id(), session.generation(), &stop);
    Session::unpark(
        session,
        cx.config.clone(),
        cx.broker.clone(),
        cx.shared.clone(),
        last_read_ms,
        stop,
    )
}

/// One connection's own parts, as `run` takes them.
struct Conn<S> {
    stream: S,
    peer: Option<SocketAddr>,
    session: Session,
    stop: CancellationToken,
    /// The session's clock starts here.
    start: Instant,
    slot: Slot,
    into_tcp: Option<fn(S) -> Result<TcpStream, S>>,
}

// An `async` block, not an `async fn`: an `async fn` moves its arguments into locals,
// which take room in the task beside the arguments themselves, and the session alone is
// 472 bytes. For the same reason the connection's parts are used where they are, in
// `conn` and `resume`, not moved out of them.
#[allow(clippy::manual_async_fn)] // The reason is above.
fn run<S>(mut conn: Conn<S>, mut resume: Resume, cx: Context) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let start = conn.start;
        let Context {
            config,
            broker,
            shared,
            shutdown,
        } = &cx;
        let now = move || start.elapsed().as_millis() as u64;
        // The stop token is also cancelled when a deadline passes, which the listener's
        // ticker checks (`expiry.rs`).
        let interval = Duration::from_millis(config.deadline_check_interval_ms);
        let deadline = shared.deadlines().watch(conn.stop.clone(), interval);
        // No channel until the session has a consumer (see `Session::take_events`).
        let mut events = None;
        let mut journal = Journal::new(conn.session.sync_waiter());
        let mut decoder = match conn.session.version() {
            Some(v) => Decoder::server_connected(v, config.limits.clone()),
            None => Decoder::server(config.limits.clone()),
        };
        // Not split into halves (that costs an allocation per connection): writes happen
        // between reads, never during one. A resumed connection starts with what the lot
        // read and did not handle; the write buffer grows with what is written (see
        // `BufSizes`), and a resumed connection may owe bytes.
        if resume.rbuf.is_empty() {
            resume.rbuf = BUF_SIZES.read_buf();
        }
        // Parking (`park.rs`). A stream that is not a plain socket, or a listener without a
        // lot, never parks; a resumed connection was busy.
        let mut parkable = config.park_after_ms > 0 && conn.into_tcp.is_some();
        let mut quiet = Quiet {
            since_ms: 0,
            fresh: conn.session.version().is_none(),
        };

        let mut flow = if resume.expired {
            conn.session.on_expired(&mut resume.wbuf)
        } else {
            Flow::Continue
        };
        if !resume.rbuf.is_empty() && flow == Flow::Continue {
            // What the lot read, decoded as if just read.
            let (t, q) = (now(), &mut quiet);
            flow = on_read(
                &mut conn.session,
                &mut decoder,
                &mut resume.rbuf,
                &mut events,
                &mut resume.wbuf,
                t,
                q,
            );
        }
        loop {
            if resume.wbuf.is_empty() {
                if flow != Flow::Continue {
                    break;
                }
                deadline.set(
                    conn.session
                        .next_deadline_ms()
                        .map(|ms| start + Duration::from_millis(ms)),
                );
                let may_park = parkable && events.is_none() && conn.session.may_park();
                let idle = resume.rbuf.is_empty() && resume.wbuf.is_empty();
                let mut park_due = false;
                if may_park {
                    // Due now (a fresh connection answered, with `park_after_connect_ms` 0),
                    // or when the ticker says so.
                    let at = quiet.park_at_ms(config);
                    park_due = idle && at <= now();
                    deadline.set_park(Some(start + Duration::from_millis(at)));
                }
                // Flow control: while the journal is behind, producers are not read from.
                let may_read = broker.has_durable_capacity();
                let acks_due = conn.session.has_pending_acks();
                let spare = resume.rbuf.capacity() - resume.rbuf.len();
                if !park_due {
                    tokio::select! {
                        biased;
                        _ = conn.stop.cancelled() => {
                            flow = if shutdown.is_cancelled() {
                                conn.session.on_shutdown(&mut resume.wbuf)
                            } else if deadline.expired() {
                                conn.session.on_expired(&mut resume.wbuf)
                            } else {
                                conn.session.on_taken_over(&mut resume.wbuf)
                            };
                        }
                        _ = journal.wait(broker, acks_due), if acks_due || !may_read => {
                            if acks_due {
                                flow = conn.session.on_synced(&mut resume.wbuf);
                            }
                        }
                        read = conn.stream.read_buf(&mut resume.rbuf), if may_read => {
                            match read {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    let (t, q) = (now(), &mut quiet);
                                    flow = on_read(&mut conn.session, &mut decoder, &mut resume.rbuf, &mut events, &mut resume.wbuf, t, q);
                                    BUF_SIZES.after_read(&mut resume.rbuf, n, spare);
                                }
                            }
                        }
                        ev = next_event(&mut events) => {
                            if let (Some(ev), Some(rx)) = (ev, &mut events) {
                                flow = on_events(&mut conn.session, ev, rx, &mut resume.wbuf);
                            }
                        }
                        _ = deadline.park_due(), if may_park => park_due = true,
                    }
                }
                let idle =
                    flow == Flow::Continue && resume.rbuf.is_empty() && resume.wbuf.is_empty();
                if park_due && idle && events.is_none() && !conn.stop.is_cancelled() {
                    match (shared.lot(|| cx.clone()), conn.into_tcp) {
                        (Some(lot), Some(into_tcp)) => {
                            let last_read_ms = conn.session.last_read_ms();
                            if let Some(parked) = conn.session.park() {
                                match into_tcp(conn.stream) {
                                    Ok(tcp) => {
                                        let last_read = start + Duration::from_millis(last_read_ms);
                                        park(lot, tcp, parked, conn.slot, last_read, &cx);
                                        return;
                                    }
                                    Err(s) => {
                                        conn.stream = s;
                                        parkable = false;
                                        conn.session = resumed_session(
                                            &cx,
                                            *parked,
                                            last_read_ms,
                                            conn.stop.clone(),
                                        );
                                    }
                                }
                            }
                        }
                        _ => parkable = false,
                    }
                }
                if park_due {
                    // Not parked: try again after another quiet period.
                    quiet = Quiet {
                        since_ms: now(),
                        fresh: false,
                    };
                }
            }
            if !resume.wbuf.is_empty() {
                let written = if flow == Flow::Close || conn.stop.is_cancelled() {
                    // The last packets. The stop token cannot bound this write (it may be
                    // cancelled already), so it gets a timer of its own, boxed: it runs once
                    // per connection, and inline it would be room in every task.
                    let limit = write_timeout(config).min(GOODBYE_TIMEOUT);
                    let last =
                        tokio::time::timeout(limit, write_out(&mut conn.stream, &resume.wbuf));
                    Box::pin(last)
                        .await
                        .unwrap_or_else(|elapsed| Err(elapsed.into()))
                } else {
                    deadline.set(Some(Instant::now() + write_timeout(config)));
                    tokio::select! {
                        biased;
                        r = write_out(&mut conn.stream, &resume.wbuf) => r,
                        // Shut down, taken over or stalled: a write interrupted midway cannot
                        // be followed by a goodbye.
                        _ = conn.stop.cancelled() => {
                            if deadline.expired() {
                                tracing::debug!(peer = ?conn.peer, "MQTT client stopped reading; closing connection");
                            }
                            break;
                        }
                    }
                };
                match written {
                    Ok(()) => {
                        let n = resume.wbuf.len();
                        resume.wbuf.clear();
                        BUF_SIZES.after_write(&mut resume.wbuf, n);
                    }
                    Err(_) => break,
                }
            }
        }
        let _ = Box::pin(tokio::time::timeout(
            GOODBYE_TIMEOUT,
            conn.stream.shutdown(),
        ))
        .await;
        if let (Some(client), Some(user)) = (conn.session.client_id().cloned(), conn.session.user())
        {
            tracing::info!(protocol = "mqtt", peer = ?conn.peer, user, %client, "connection closed");
        }
        conn.session.close();
        if let Some(will) = conn.session.take_delayed_will() {
            tokio::spawn(delayed_will(
                will,
                config.clone(),
                shared.clone(),
                shutdown.clone(),
            ));
        }
        drop(conn.slot);
    }
}

/// When an idle connection parks (`park.rs`): after a quiet period, in which nothing but
/// PINGREQs was read.
struct Quiet {
    /// The period's start, in ms on the session's clock.
    since_ms: u64,
    /// Nothing but CONNECT and PINGREQs read yet on this connection: the first quiet
    /// period is `park_after_connect_ms`, the later ones `park_after_ms`.
    fresh: bool,
}

impl Quiet {
    fn on_packet(&mut self, p: &Packet, now_ms: u64) {
        match p {
            Packet::PingReq => {}
            Packet::Connect(_) => self.since_ms = now_ms,
            _ => {
                self.since_ms = now_ms;
                self.fresh = false;
            }
        }
    }

    /// When the connection may park if it stays quiet (ms on the session's clock).
    fn park_at_ms(&self, config: &MqttConfig) -> u64 {
        let after = if self.fresh {
            config.park_after_connect_ms
        } else {
            config.park_after_ms
        };
        self.since_ms.saturating_add(after)
    }
}

/// Decodes and handles what `rbuf` holds; anything but PINGREQ restarts the quiet period
/// that parking waits for.
fn on_read(
    session: &mut Session,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
    events: &mut Option<EventReceiver>,
    wbuf: &mut BytesMut,
    now_ms: u64,
    quiet: &mut Quiet,
) -> Flow {
    session.on_read(now_ms);
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(p)) => {
                quiet.on_packet(&p, now_ms);
                let flow = session.on_packet(p, now_ms, wbuf);
                if events.is_none() {
                    *events = session.take_events();
                }
                if flow == Flow::Close {
                    return flow;
                }
            }
            Ok(None) => return Flow::Continue,
            Err(e) => return session.on_decode_error(&e, decoder.version(), wbuf),
        }
    }
}

/// Hands a connection to the lot, or gives it a new task if the lot will not take it.
fn park(
    lot: &Lot,
    tcp: TcpStream,
    session: Box<ParkedSession>,
    slot: Slot,
    last_read: Instant,
    cx: &Context,
) {
    // Out of tokio's reactor: the lot's epoll set watches it now.
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => {
            // The socket is gone: the session ends as if it had closed (Will included).
            tracing::debug!(error = %e, "MQTT connection lost while parking");
            drop(resumed_session(cx, *session, 0, cx.shutdown.child_token()));
            return;
        }
    };
    if let Err((tcp, session, slot)) = lot.park(tcp, session, slot, last_read) {
        park::spawn(cx, tcp, *session, slot, last_read, Resume::default());
    }
}

/// Publishes a Will once its delay is over, unless the session was resumed meanwhile.
async fn delayed_will(
    will: DelayedWill,
    config: Arc<MqttConfig>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(u64::from(will.delay_secs))) => {}
        _ = shutdown.cancelled() => return,
    }
    if !shared.superseded(&will.client_id, will.generation) {
        publish_will(&shared, &config, &will.vhost, will.message, will.retain);
    }
}

fn write_timeout(config: &MqttConfig) -> Duration {
    Duration::from_millis(config.write_stall_timeout_ms)
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, buf: &[u8]) -> std::io::Result<()> {
    stream.write_all(buf).await?;
    // TLS and WebSocket streams buffer; a plain socket ignores this.
    stream.flush().await
}

fn on_events(
    session: &mut Session,
    first: Event,
    events: &mut EventReceiver,
    wbuf: &mut BytesMut,
) -> Flow {
    let mut flow = session.on_event(first, wbuf);
    let mut n = 1;
    while flow == Flow::Continue && n < EVENT_BATCH_MAX && wbuf.len() < WRITE_BATCH_BYTES {
        let Ok(ev) = events.try_recv() else { break };
        flow = session.on_event(ev, wbuf);
        n += 1;
    }
    flow
}

/// What the journal owes the connection: the sync of the acknowledgements it holds back,
/// or else room for persistent publishes while reading is paused. Paused with
/// acknowledgements due, it waits for the sync, after which the loop looks at the room
/// again.
///
/// The wait is boxed, made the first time a connection needs one (it publishes
/// persistent messages) and then reused: inline, its 176 bytes were room in every
/// connection's task, idle or not.
struct Journal {
    /// The waiter, while no wait holds it.
    synced: Option<SyncWaiter>,
    wait: Option<ReusableBoxFuture<'static, Option<SyncWaiter>>>,
    /// What the armed wait waits for (`Some(acks_due)`), if one is armed.
    armed: Option<bool>,
}

impl Journal {
    fn new(synced: Option<SyncWaiter>) -> Self {
        Self {
            synced,
            wait: None,
            armed: None,
        }
    }

    /// Resolves once the journal synced more (`acks_due`) or has room again.
    async fn wait(&mut self, broker: &Broker, acks_due: bool) {
        if self.armed != Some(acks_due) {
            // A wait for the other thing gives up its waiter's clone; the next sync
            // wakes this one at worst once too early.
            let fut = wait_owned(broker.clone(), self.synced.clone(), acks_due);
            match &mut self.wait {
                Some(w) => w.set(fut),
                None => self.wait = Some(ReusableBoxFuture::new(fut)),
            }
            self.armed = Some(acks_due);
        }
        let Some(wait) = &mut self.wait else {
            return;
        };
        let waiter = std::future::poll_fn(|cx| wait.poll(cx)).await;
        self.armed = None;
        // The waiter that saw the change replaces the one that did not.
        if waiter.is_some() {
            self.synced = waiter;
        }
    }
}

async fn wait_owned(
    broker: Broker,
    mut synced: Option<SyncWaiter>,
    acks_due: bool,
) -> Option<SyncWaiter> {
    if acks_due {
        SyncWaiter::changed_opt(&mut synced).await;
    } else {
        broker.durable_capacity().await;
    }
    synced
}
