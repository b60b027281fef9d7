//! The tokio glue: read bytes, decode, drive the session, write, run the timers.
//!
//! One task per connection. Reads, deliveries, journal syncs and timers are multiplexed
//! with a biased `select!` (deliveries before timers, so a pull with "no wait" sees what
//! its window change dispatched); writes happen in between and are bounded by
//! `write_stall_timeout_ms`, so a client that stops reading is disconnected.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use ferromq_core::{clock::sleep_until, Broker, Event, SyncWaiter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::Decoder;
use crate::session::{ClientIds, Flow, Session};
use crate::OpenWireConfig;

/// Deliveries encoded per wake-up before the socket is written.
const EVENT_BATCH_MAX: usize = 256;
/// Once this much output is buffered it is written before more deliveries are encoded.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long the last bytes may take to write at close.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// Client ids of connections served through [`serve_connection`] in this process (JMS
/// requires them unique per broker).
fn client_ids() -> Arc<ClientIds> {
    static IDS: OnceLock<Arc<ClientIds>> = OnceLock::new();
    IDS.get_or_init(Default::default).clone()
}

/// Runs one OpenWire connection over any byte stream until it closes or `shutdown` fires.
pub async fn serve_connection<S>(
    stream: S,
    peer: Option<SocketAddr>,
    config: Arc<OpenWireConfig>,
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
        client_ids(),
        now(),
    );
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
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                flow = session.on_shutdown(&mut wbuf);
            }
            ev = events.recv() => {
                if let Some(ev) = ev {
                    flow = on_events(&mut session, ev, &mut events, &mut wbuf);
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
                        session.on_read(now());
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
