//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, deliveries and timers are multiplexed with `select!`;
//! writes happen in between and are bounded by `write_stall_timeout_ms`, so a client
//! that stops reading is disconnected instead of pinning memory (its deliveries are
//! already bounded by credit). Confirms are flushed once per batch of frames read, so a
//! pipelining publisher gets them coalesced (`multiple`). Large message bodies go out by
//! reference in vectored writes where the stream supports them (`out.rs`).

use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::buffers::BufSizes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::adapter::{sleep_until, Broker, Event, EventReceiver, Peer, SyncWaiter};
use crate::codec::Decoder;
use crate::out::Out;
use crate::session::{Flow, Session};
use crate::AmqpConfig;
use ferromq_core::next_event;

/// Deliveries encoded per wake-up before the socket is written, so a busy consumer gets
/// batched writes without starving reads.
const EVENT_BATCH_MAX: usize = 256;
/// Once this much output is buffered it is written before more deliveries are encoded.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Buffers handed to one vectored write. A write batch of large deliveries is about three
/// per body piece (the frames before it, the piece, its frame-end and what follows), so 8
/// take a batch's one or two large bodies in one call; a longer output (one body of many
/// frames) takes several. The array lives in every connection's task (the write is part
/// of its future), 16 bytes a buffer: 64 of them cost an idle connection 800 bytes more.
const WRITE_SLICES_MAX: usize = 8;
/// How long the last frames (`connection.close` at shutdown) may take to write.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// The read buffer starts with room for the handshake (a `connection.start-ok` with
/// client properties may need one growth) and heartbeats; it grows by 16 KiB reads for a
/// publisher and goes back to the start size when a heartbeat-sized read drains it.
const BUF_SIZES: BufSizes = BufSizes {
    read_start_bytes: 256,
    read_grow_bytes: 16 * 1024,
    keep_bytes: 4 * 1024,
};

/// Runs one AMQP connection over any byte stream until it closes or `shutdown` fires.
pub async fn serve_connection<S>(
    stream: S,
    peer: impl Into<Peer>,
    config: Arc<AmqpConfig>,
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
    // No channel until the connection has a consumer (see `Session::take_events`).
    let mut events = None;
    session.set_verified_user(verified_user);
    let mut synced = None;
    let mut decoder = Decoder::new(session.frame_max(), config.limits.table_depth_max);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BUF_SIZES.read_buf();
    // Grows with what is written (see `BufSizes`). Large bodies are written from where
    // they are kept, where the stream takes several buffers in one write (see `out.rs`).
    let mut wbuf = if writer.is_write_vectored() {
        Out::splicing()
    } else {
        Out::copying()
    };
    let write_timeout = Duration::from_millis(config.limits.write_stall_timeout_ms);

    let mut flow = Flow::Continue;
    // Frames are left in `rbuf` when the output grew past a batch (a client pipelining
    // `basic.get`s of large messages): they are handled after that output is written.
    let mut unread = false;
    while flow == Flow::Continue {
        if unread {
            (flow, unread) = drain(&mut session, &mut decoder, &mut rbuf, &mut wbuf, now());
        } else {
            let deadline = session
                .next_deadline_ms()
                .map(|ms| start + Duration::from_millis(ms));
            if synced.is_none() {
                synced = session.sync_waiter();
            }
            if events.is_none() {
                events = session.take_events();
            }
            // Flow control: while the journal is behind, publishers are not read from
            // (and clients that asked are told with connection.blocked).
            let may_read = broker.has_durable_capacity();
            session.set_blocked((!may_read).then_some("journal backlog"), &mut wbuf);
            let confirms_due = session.has_pending_sync();
            let spare = rbuf.capacity() - rbuf.len();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    flow = session.on_shutdown(&mut wbuf);
                }
                _ = broker.durable_capacity(), if !may_read => {}
                _ = SyncWaiter::changed_opt(&mut synced), if confirms_due => {
                    session.on_synced(&mut wbuf);
                }
                read = reader.read_buf(&mut rbuf), if may_read => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let t = now();
                            session.on_read(t);
                            (flow, unread) = drain(&mut session, &mut decoder, &mut rbuf, &mut wbuf, t);
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
        }
        if !wbuf.is_empty() {
            let stopping = shutdown.is_cancelled() || flow == Flow::Close;
            let limit = if stopping {
                write_timeout.min(GOODBYE_TIMEOUT)
            } else {
                write_timeout
            };
            let written = tokio::select! {
                r = tokio::time::timeout(limit, write_out(&mut writer, &wbuf)) => r,
                // A write interrupted midway cannot be resumed with a goodbye after it.
                _ = shutdown.cancelled(), if !stopping => break,
            };
            match written {
                Ok(Ok(())) => {
                    let n = wbuf.len();
                    wbuf.clear();
                    BUF_SIZES.after_write(wbuf.buf_mut(), n);
                    session.on_write(now());
                }
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(?peer, "AMQP client stopped reading; closing connection");
                    break;
                }
            }
        }
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    if let Some((id, user)) = session.identity() {
        tracing::info!(
            conn = id,
            protocol = "amqp",
            ?peer,
            user,
            "connection closed"
        );
    }
    session.close();
}

/// Handles the frames buffered in `rbuf` until it runs dry, the connection is to close,
/// or the output passed a write batch. Returns the flow and whether frames may remain.
fn drain(
    session: &mut Session,
    decoder: &mut Decoder,
    rbuf: &mut BytesMut,
    wbuf: &mut Out,
    now_ms: u64,
) -> (Flow, bool) {
    loop {
        if wbuf.len() >= WRITE_BATCH_BYTES {
            session.flush(wbuf);
            return (Flow::Continue, true);
        }
        match decoder.decode(rbuf) {
            Ok(Some(frame)) => {
                let flow = session.on_frame(frame, now_ms, wbuf);
                decoder.set_frame_max(session.frame_max());
                if flow == Flow::Close {
                    return (flow, false);
                }
            }
            Ok(None) => {
                session.flush(wbuf);
                return (Flow::Continue, false);
            }
            Err(e) => {
                // The stream cannot be framed any more: whatever follows is not read.
                rbuf.clear();
                return (session.on_decode_error(e, wbuf), false);
            }
        }
    }
}

/// Writes `out` whole: its buffer and spliced bodies as vectored writes of at most
/// [`WRITE_SLICES_MAX`] buffers, resumed where a short write ended.
async fn write_out<W: AsyncWrite + Unpin>(writer: &mut W, out: &Out) -> std::io::Result<()> {
    let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
    let mut done = 0;
    while done < out.len() {
        let k = out.slices(done, &mut slices);
        let n = writer.write_vectored(&slices[..k]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    // TLS and WebSocket streams buffer; a plain socket ignores this.
    writer.flush().await
}

fn on_events(
    session: &mut Session,
    first: Event,
    events: &mut EventReceiver,
    wbuf: &mut Out,
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
