//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, deliveries and timers are multiplexed with `select!`;
//! writes happen in between and are bounded by `write_stall_timeout_ms`, so a client that
//! stops reading is disconnected instead of pinning memory (its deliveries are already
//! bounded by credit).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::buffers::BufSizes;
use ferromq_core::{clock::sleep_until, next_event, Broker, Event, Peer, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::Decoder;
use crate::session::{Flow, Session};
use crate::StompConfig;

/// Deliveries encoded per wake-up before the socket is written, so a busy subscription
/// gets batched writes without starving reads.
const EVENT_BATCH_MAX: usize = 256;
/// Once this much output is buffered it is written before more deliveries are encoded.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// How long the last frames (ERROR at shutdown) may take to write.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// The read buffer starts with room for a CONNECT and heart-beats; it grows by 8 KiB reads
/// for a producer and goes back to the start size when a heart-beat-sized read drains it.
const BUF_SIZES: BufSizes = BufSizes {
    read_start_bytes: 256,
    read_grow_bytes: 8 * 1024,
    keep_bytes: 4 * 1024,
};

/// Runs one STOMP connection over any byte stream until it closes or `shutdown` fires.
pub async fn serve_connection<S>(
    stream: S,
    peer: impl Into<Peer>,
    config: Arc<StompConfig>,
    broker: Broker,
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
    let mut session = Session::new(config.clone(), broker.clone(), peer.map(|p| p.ip()), now());
    // No channel until the session has a consumer (see `Session::take_events`).
    let mut events = None;
    session.set_verified_user(verified_user);
    let mut synced = session.sync_waiter();
    let mut decoder = Decoder::new(config.limits.clone());
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BUF_SIZES.read_buf();
    // Grows with what is written (see `BufSizes`).
    let mut wbuf = BytesMut::new();
    let write_timeout = Duration::from_millis(config.write_stall_timeout_ms);

    let mut flow = Flow::Continue;
    while flow == Flow::Continue {
        let deadline = session
            .next_deadline_ms()
            .map(|ms| start + Duration::from_millis(ms));
        // Flow control: while the journal is behind, producers are not read from.
        let may_read = broker.has_durable_capacity();
        let receipts_due = session.has_pending_receipts();
        let spare = rbuf.capacity() - rbuf.len();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                flow = session.on_shutdown(&mut wbuf);
            }
            _ = broker.durable_capacity(), if !may_read => {}
            _ = SyncWaiter::changed_opt(&mut synced), if receipts_due => {
                flow = session.on_synced(&mut wbuf);
            }
            read = reader.read_buf(&mut rbuf), if may_read => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        session.on_read(now());
                        loop {
                            match decoder.decode(&mut rbuf) {
                                Ok(Some(item)) => {
                                    flow = session.on_item(item, now(), &mut wbuf);
                                    decoder.set_version(session.version());
                                    if events.is_none() {
                                        events = session.take_events();
                                    }
                                    if flow == Flow::Close {
                                        break;
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    flow = session.on_decode_error(e, &mut wbuf);
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
            _ = sleep_until(deadline) => {
                flow = session.on_timer(now(), &mut wbuf);
            }
        }
        if !wbuf.is_empty() {
            let stopping = shutdown.is_cancelled();
            // The goodbye at shutdown gets a short deadline; a client that stopped reading
            // must not hold up the broker's exit.
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
                Ok(Ok(())) => {
                    let n = wbuf.len();
                    wbuf.clear();
                    BUF_SIZES.after_write(&mut wbuf, n);
                    session.on_write(now());
                }
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(?peer, "STOMP client stopped reading; closing connection");
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    if let Some((id, user)) = session.identity() {
        tracing::info!(
            conn = id,
            protocol = "stomp",
            ?peer,
            user,
            "connection closed"
        );
    }
    session.close();
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
