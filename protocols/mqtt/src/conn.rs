//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, deliveries, the journal's synced point, takeover and
//! timers are multiplexed with `select!`; writes happen in between and are bounded by
//! `write_stall_timeout_ms`, so a client that stops reading is disconnected instead of
//! pinning memory (its deliveries are already bounded by credit).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::{clock::sleep_until, Broker, Event, Peer, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
/// First capacity of the read buffer: a CONNECT and keep-alives fit. Most connections
/// of a large deployment are idle, and 8 KiB buffers were most of their memory.
const READ_BUF_START_BYTES: usize = 128;
/// How much the read buffer grows when a read filled it (a client sending in bulk).
const READ_BUF_GROW_BYTES: usize = 8 * 1024;

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
    // No channel until the session has a consumer (see `Session::take_events`).
    let mut events = None;
    let mut synced = session.sync_waiter();
    let mut decoder = Decoder::server(config.limits.clone());
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(READ_BUF_START_BYTES);
    // Grows with what is written, and keeps its size for the next batch.
    let mut wbuf = BytesMut::new();
    let write_timeout = Duration::from_millis(config.write_stall_timeout_ms);
    let mut kick: Option<CancellationToken> = None;

    let mut flow = Flow::Continue;
    while flow == Flow::Continue {
        let deadline = session
            .next_deadline_ms()
            .map(|ms| start + Duration::from_millis(ms));
        // Flow control: while the journal is behind, producers are not read from.
        let may_read = broker.has_durable_capacity();
        let acks_due = session.has_pending_acks();
        let kicked = kick.clone();
        let spare = rbuf.capacity() - rbuf.len();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                flow = session.on_shutdown(&mut wbuf);
            }
            _ = cancelled(&kicked) => {
                flow = session.on_taken_over(&mut wbuf);
            }
            _ = broker.durable_capacity(), if !may_read => {}
            _ = SyncWaiter::changed_opt(&mut synced), if acks_due => {
                flow = session.on_synced(&mut wbuf);
            }
            read = reader.read_buf(&mut rbuf), if may_read => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        session.on_read(now());
                        loop {
                            match decoder.decode(&mut rbuf) {
                                Ok(Some(p)) => {
                                    flow = session.on_packet(p, now(), &mut wbuf);
                                    if kick.is_none() {
                                        kick = session.kicked();
                                    }
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
                        if n >= spare {
                            rbuf.reserve(READ_BUF_GROW_BYTES);
                        }
                    }
                }
            }
            ev = recv(&mut events) => {
                if let (Some(ev), Some(rx)) = (ev, &mut events) {
                    flow = on_events(&mut session, ev, rx, &mut wbuf);
                }
            }
            _ = sleep_until(deadline) => {
                flow = session.on_timer(now(), &mut wbuf);
            }
        }
        if !wbuf.is_empty() {
            let stopping = shutdown.is_cancelled() || flow == Flow::Close;
            let limit = if stopping {
                write_timeout.min(GOODBYE_TIMEOUT)
            } else {
                write_timeout
            };
            let written = tokio::select! {
                r = tokio::time::timeout(limit, async {
                    writer.write_all(&wbuf).await?;
                    // TLS and WebSocket streams buffer; a plain socket ignores this.
                    writer.flush().await
                }) => r,
                _ = shutdown.cancelled(), if !stopping => break,
            };
            match written {
                Ok(Ok(())) => wbuf.clear(),
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(?peer, "MQTT client stopped reading; closing connection");
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
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

async fn recv(events: &mut Option<ferromq_core::EventReceiver>) -> Option<Event> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn cancelled(token: &Option<CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}
