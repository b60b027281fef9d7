//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, deliveries, the journal's synced point and the stop
//! token are multiplexed with `select!`; writes happen in between and are bounded by
//! `write_stall_timeout_ms`, so a client that stops reading is disconnected instead of
//! pinning memory (its deliveries are already bounded by credit). The stop token is
//! cancelled at shutdown, at a takeover and when a deadline passes (CONNECT timeout,
//! Keep Alive, a write stall: the listener's ticker checks them, `expiry.rs`), so that an
//! idle connection's task holds one small wait besides its read.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::buffers::BufSizes;
use ferromq_core::{next_event, Broker, Event, Peer, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, ReusableBoxFuture};

use crate::config::MqttConfig;
use crate::session::{publish_will, DelayedWill, Flow, Session};
use crate::shared::Shared;
use crate::Decoder;

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

/// Runs one MQTT connection over any byte stream until it closes or `shutdown` fires.
pub async fn serve_connection<S>(
    stream: S,
    peer: impl Into<Peer>,
    config: Arc<MqttConfig>,
    broker: Broker,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Peer {
        addr: peer,
        verified_user,
    } = peer.into();
    let start = Instant::now();
    let now = move || start.elapsed().as_millis() as u64;
    let mut session = Session::new(
        config.clone(),
        broker.clone(),
        shared.clone(),
        peer.map(|p| p.ip()),
        now(),
    );
    session.set_verified_user(verified_user);
    // Cancelled at shutdown and, once the client id is claimed, at a takeover: one wait
    // for both in every connection's task.
    let stop = shutdown.child_token();
    session.set_stop_token(stop.clone());
    // ... and when a deadline passes, which the listener's ticker checks (`expiry.rs`).
    let interval = Duration::from_millis(config.deadline_check_interval_ms);
    let deadline = shared.deadlines().watch(stop.clone(), interval);
    // No channel until the session has a consumer (see `Session::take_events`).
    let mut events = None;
    let mut journal = Journal::new(session.sync_waiter());
    let mut decoder = Decoder::server(config.limits.clone());
    // Not split into halves (that costs an allocation per connection): writes happen
    // between reads, never during one.
    let mut stream = stream;
    let mut rbuf = BUF_SIZES.read_buf();
    // Grows with what is written (see `BufSizes`).
    let mut wbuf = BytesMut::new();

    let mut flow = Flow::Continue;
    while flow == Flow::Continue {
        deadline.set(
            session
                .next_deadline_ms()
                .map(|ms| start + Duration::from_millis(ms)),
        );
        // Flow control: while the journal is behind, producers are not read from.
        let may_read = broker.has_durable_capacity();
        let acks_due = session.has_pending_acks();
        let spare = rbuf.capacity() - rbuf.len();
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                flow = if shutdown.is_cancelled() {
                    session.on_shutdown(&mut wbuf)
                } else if deadline.expired() {
                    session.on_expired(&mut wbuf)
                } else {
                    session.on_taken_over(&mut wbuf)
                };
            }
            _ = journal.wait(&broker, acks_due), if acks_due || !may_read => {
                if acks_due {
                    flow = session.on_synced(&mut wbuf);
                }
            }
            read = stream.read_buf(&mut rbuf), if may_read => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        session.on_read(now());
                        loop {
                            match decoder.decode(&mut rbuf) {
                                Ok(Some(p)) => {
                                    flow = session.on_packet(p, now(), &mut wbuf);
                                    if events.is_none() {
                                        events = session.take_events();
                                    }
                                    if flow == Flow::Close {
                                        break;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    flow = session.on_decode_error(&e, decoder.version(), &mut wbuf);
                                    break;
                                }
                            }
                        }
                        BUF_SIZES.after_read(&mut rbuf, n, spare);
                    }
                }
            }
            ev = next_event(&mut events) => {
                if let (Some(ev), Some(rx)) = (ev, &mut events) {
                    flow = on_events(&mut session, ev, rx, &mut wbuf);
                }
            }
        }
        if !wbuf.is_empty() {
            let written = if flow == Flow::Close || stop.is_cancelled() {
                // The last packets. The stop token cannot bound this write (it may be
                // cancelled already), so it gets a timer of its own, boxed: it runs once
                // per connection, and inline it would be room in every task.
                let limit = write_timeout(&config).min(GOODBYE_TIMEOUT);
                let last = tokio::time::timeout(limit, write_out(&mut stream, &wbuf));
                Box::pin(last)
                    .await
                    .unwrap_or_else(|elapsed| Err(elapsed.into()))
            } else {
                deadline.set(Some(Instant::now() + write_timeout(&config)));
                tokio::select! {
                    biased;
                    r = write_out(&mut stream, &wbuf) => r,
                    // Shut down, taken over or stalled: a write interrupted midway cannot
                    // be followed by a goodbye.
                    _ = stop.cancelled() => {
                        if deadline.expired() {
                            tracing::debug!(?peer, "MQTT client stopped reading; closing connection");
                        }
                        break;
                    }
                }
            };
            match written {
                Ok(()) => {
                    let n = wbuf.len();
                    wbuf.clear();
                    BUF_SIZES.after_write(&mut wbuf, n);
                }
                Err(_) => break,
            }
        }
    }
    let _ = Box::pin(tokio::time::timeout(GOODBYE_TIMEOUT, stream.shutdown())).await;
    if let (Some(client), Some(user)) = (session.client_id().cloned(), session.user()) {
        tracing::info!(protocol = "mqtt", ?peer, user, %client, "connection closed");
    }
    session.close();
    if let Some(will) = session.take_delayed_will() {
        tokio::spawn(delayed_will(will, config, shared, shutdown));
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
    events: &mut ferromq_core::EventReceiver,
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
