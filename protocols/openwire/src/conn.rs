//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, advisories, deliveries, journal syncs and timers are
//! multiplexed with a biased `select!` (advisories before deliveries, so a temporary
//! destination is announced before a message naming it; deliveries before timers, so a
//! pull with "no wait" sees what its window change dispatched); writes happen in between and are bounded by
//! `write_stall_timeout_ms`, so a client that stops reading is disconnected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::{clock::sleep_until, Broker, Event, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::advisory::Mailbox;
use crate::codec::Decoder;
use crate::session::{Flow, Session};
use crate::shared::Shared;
use crate::OpenWireConfig;

/// Deliveries encoded per wake-up before the socket is written.
const EVENT_BATCH_MAX: usize = 256;
/// Once this much output is buffered it is written before more deliveries are encoded.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long the last bytes may take to write at close.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs one OpenWire connection over any byte stream until it closes or `shutdown` fires.
/// `shared` is the same for every OpenWire connection of the server.
pub async fn serve_connection<S>(
    stream: S,
    peer: Option<SocketAddr>,
    config: Arc<OpenWireConfig>,
    shared: Arc<Shared>,
    broker: Broker,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let now = move || start.elapsed().as_millis() as u64;
    let (mut session, mut events) = Session::new(
        config.clone(),
        broker.clone(),
        peer.map(|p| p.ip()),
        shared,
        now(),
    );
    let mailbox = session.mailbox();
    let mut synced = session.sync_waiter();
    let mut decoder = Decoder::new(session.frame_max_bytes(), session.format());
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(8 * 1024);
    let mut wbuf = BytesMut::with_capacity(8 * 1024);
    let write_timeout = Duration::from_millis(config.write_stall_timeout_ms);
    session.start(&mut wbuf);

    let mut flow = Flow::Continue;
    loop {
        if !wbuf.is_empty() {
            let written = tokio::select! {
                r = tokio::time::timeout(write_timeout, writer.write_all(&wbuf)) => r,
                _ = shutdown.cancelled() => break,
            };
            match written {
                Ok(Ok(())) => {
                    wbuf.clear();
                    session.on_write(now());
                }
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!(?peer, "OpenWire client stopped reading; closing connection");
                    break;
                }
            }
        }
        if flow == Flow::Close {
            break;
        }
        let deadline = session
            .next_deadline_ms()
            .map(|ms| start + Duration::from_millis(ms));
        // Flow control: while the journal is behind, producers are not read from.
        let may_read = broker.has_durable_capacity();
        let responses_due = session.has_pending_responses();
        let watching = session.watches_advisories();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                flow = session.on_shutdown(&mut wbuf);
            }
            // Before deliveries: a temporary destination is announced before a message
            // naming it as JMSReplyTo arrives, and the client must have heard of it by then.
            _ = mailbox.changed(), if watching => {
                flow = session.on_advisories(&mut wbuf);
            }
            ev = events.recv() => {
                if let Some(ev) = ev {
                    flow = on_events(&mut session, &mailbox, ev, &mut events, &mut wbuf);
                }
            }
            _ = SyncWaiter::changed_opt(&mut synced), if responses_due => {
                flow = session.on_synced(&mut wbuf);
            }
            _ = broker.durable_capacity(), if !may_read => {}
            read = reader.read_buf(&mut rbuf), if may_read => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        session.on_read();
                        loop {
                            match decoder.decode(&mut rbuf) {
                                Ok(Some(cmd)) => {
                                    flow = session.on_command(cmd, now(), &mut wbuf);
                                    decoder.format = session.format();
                                    decoder.frame_max_bytes = session.frame_max_bytes();
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
                        if rbuf.capacity() - rbuf.len() < 1024 {
                            rbuf.reserve(8 * 1024);
                        }
                    }
                }
            }
            _ = sleep_until(deadline) => {
                flow = session.on_timer(now(), &mut wbuf);
            }
        }
        if flow == Flow::Close && !wbuf.is_empty() {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.write_all(&wbuf)).await;
            wbuf.clear();
        }
    }
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, writer.shutdown()).await;
    if let Some((id, user)) = session.identity() {
        tracing::info!(
            conn = id,
            protocol = "openwire",
            ?peer,
            user,
            "connection closed"
        );
    }
    session.close();
}

/// Handles `first` and the deliveries queued behind it. Advisories that arrive meanwhile
/// are written before the next delivery (one atomic load per delivery), for the same
/// reason as the order of the `select!` branches.
fn on_events(
    session: &mut Session,
    mailbox: &Mailbox,
    first: Event,
    events: &mut ferromq_core::EventReceiver,
    wbuf: &mut BytesMut,
) -> Flow {
    let mut flow = session.on_event(first, wbuf);
    let mut n = 1;
    while flow == Flow::Continue && n < EVENT_BATCH_MAX && wbuf.len() < WRITE_BATCH_BYTES {
        let Ok(ev) = events.try_recv() else { break };
        if mailbox.has_pending() {
            flow = session.on_advisories(wbuf);
            if flow == Flow::Close {
                break;
            }
        }
        flow = session.on_event(ev, wbuf);
        n += 1;
    }
    flow
}
