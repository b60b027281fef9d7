//! The parking lot: idle plain-TCP connections without a task of their own.
//!
//! Most connections of a large deployment only send a PINGREQ now and then. A task per
//! connection costs about 1.3 KB however idle it is (its future, with the session, the
//! decoder and the buffers) plus tokio's registration of its socket. A connection that
//! read nothing but PINGREQs for `MqttConfig::park_after_ms` and has nothing under way
//! (`Session::may_park`, nothing buffered, no delivery channel) hands its socket and a
//! compact session ([`ParkedSession`]) to its listener's lot, and its task ends.
//!
//! The lot is one task with an epoll set of its own (level-triggered, `EPOLLIN` and
//! `EPOLLRDHUP`), registered with tokio as one file descriptor. It answers a parked
//! connection's PINGREQs itself, writing PINGRESP without blocking. Anything else gives
//! the connection a task again (`conn::resume`), with the bytes the lot read in front
//! of its read buffer, and that task handles it exactly as before it parked (Wills,
//! MQTT 5 DISCONNECT reason codes, takeover, session expiry all stay in `conn.rs` and
//! `session.rs`): other bytes, a partial packet, end of stream or an error, a PINGRESP
//! that cannot be written at once, a takeover, the Keep Alive deadline passing, and
//! shutdown.
//!
//! Deadlines and takeovers are checked every `deadline_check_interval_ms` by the lot's
//! own tick, a scan of its slots: a parked connection holds no deadline watch and no
//! stop token. A takeover shows as a newer claim of its client id (`Shared::park`); the
//! scan looks for those only when some client id was claimed since the last one.
//!
//! # Invariants
//! - A socket is in the epoll set exactly while its connection is in `slots`; its epoll
//!   data is its slot's index.
//! - Once `closed` (shutdown), nothing is parked: [`Lot::park`] hands the connection back.
//! - `slots` may be held while taking the client-id table's lock (`shared.rs`), never
//!   the other way round.
//! - A parked connection keeps its listener [`Slot`] (connection permit and the
//!   listener's count of live connections), so the listener's limit and its wait at
//!   shutdown include it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferromq_core::Broker;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::conn::{self, Resume, Slot};
use crate::session::ParkedSession;
use crate::shared::Shared;

/// Epoll events taken per `epoll_wait`.
const EVENTS_MAX: usize = 64;
/// Bytes read from a parked socket at once: 32 PINGREQs. More means the client is doing
/// something else, which its task reads the rest of.
const READ_MAX: usize = 64;
const PINGREQ: [u8; 2] = [0xc0, 0x00];
const PINGRESP: [u8; 2] = [0xd0, 0x00];
/// `PINGRESP` repeated, for as many PINGREQs as one read can hold.
const PINGRESPS: [u8; READ_MAX] = {
    let mut r = [0u8; READ_MAX];
    let mut i = 0;
    while i < READ_MAX {
        r[i] = PINGRESP[i % 2];
        i += 1;
    }
    r
};

/// One listener's parked connections and the epoll set that watches their sockets.
#[derive(Debug)]
pub(crate) struct Lot {
    epoll: AsyncFd<OwnedFd>,
    /// Times are milliseconds since this instant.
    epoch: Instant,
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Parked>>,
    /// Indices of `None` entries.
    free: Vec<u32>,
    len: usize,
    closed: bool,
}

/// One parked connection.
#[derive(Debug)]
struct Parked {
    tcp: TcpStream,
    session: Box<ParkedSession>,
    slot: Slot,
    /// Its last read, in ms since the lot's epoch.
    last_read_ms: u64,
}

/// What a listener's connections share, which the lot needs to give them tasks again.
#[derive(Clone)]
pub(crate) struct Context {
    pub config: Arc<MqttConfig>,
    pub broker: Broker,
    pub shared: Arc<Shared>,
    pub shutdown: CancellationToken,
}

impl Lot {
    /// A new lot and its task, which ends at shutdown once every parked connection has a
    /// task again. Call inside the runtime.
    pub(crate) fn start(cx: Context) -> io::Result<Arc<Lot>> {
        // SAFETY: epoll_create1 has no memory preconditions; a non-negative result is a
        // new descriptor that nothing else owns, so `OwnedFd` may take it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an `OwnedFd` keeps its descriptor open, and returns that same one, for
        // as long as it lives, which is as long as the `AsyncFd` that owns it.
        let epoll = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        let lot = Arc::new(Lot {
            epoll,
            epoch: Instant::now(),
            slots: Mutex::new(Slots::default()),
        });
        tokio::spawn(run(lot.clone(), cx));
        Ok(lot)
    }

    /// Parked connections.
    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).len
    }

    /// Parks a connection whose last read was at `last_read`; hands it back if the lot
    /// is closed or the socket cannot be watched.
    pub(crate) fn park(
        &self,
        tcp: TcpStream,
        session: Box<ParkedSession>,
        slot: Slot,
        last_read: Instant,
    ) -> Result<(), (TcpStream, Box<ParkedSession>, Slot)> {
        let mut slots = lock(&self.slots);
        if slots.closed {
            return Err((tcp, session, slot));
        }
        let index = match slots.free.pop() {
            Some(i) => i as usize,
            None => {
                slots.entries.push(None);
                slots.entries.len() - 1
            }
        };
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if let Err(e) = self.ctl(libc::EPOLL_CTL_ADD, tcp.as_raw_fd(), events, index) {
            tracing::debug!(error = %e, "MQTT connection not parked");
            slots.free.push(index as u32);
            return Err((tcp, session, slot));
        }
        slots.entries[index] = Some(Parked {
            tcp,
            session,
            slot,
            last_read_ms: self.ms(last_read),
        });
        slots.len += 1;
        Ok(())
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, index: usize) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: index as u64,
        };
        // SAFETY: both descriptors are open (the epoll set is owned by `self`, `fd` by
        // the caller's socket) and `ev` is a valid event for the call's duration.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes the connection in slot `index` out of the lot.
    fn take(&self, slots: &mut Slots, index: usize) -> Option<Parked> {
        let p = slots.entries.get_mut(index)?.take()?;
        // Closing would drop it from the set too, but the socket lives on in tokio.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, p.tcp.as_raw_fd(), 0, index);
        slots.free.push(index as u32);
        slots.len -= 1;
        Some(p)
    }

    /// Handles the readiness of slot `index`: answers PINGREQs, or takes the connection
    /// out to be resumed with what was read.
    fn on_ready(&self, index: usize, events: u32, now_ms: u64) -> Option<(Parked, Resume)> {
        let mut slots = lock(&self.slots);
        let p = slots.entries.get_mut(index)?.as_mut()?;
        let mut buf = [0u8; READ_MAX];
        let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let n = if events & hangup != 0 {
            // Whatever the client sent before it left, its task reads, then the end.
            0
        } else {
            match (&p.tcp).read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(_) | Ok(0) => 0,
                Ok(n) => n,
            }
        };
        let read = &buf[..n];
        let mut resume = Resume::default();
        if n > 0 && n % 2 == 0 && read.chunks(2).all(|c| c == PINGREQ) {
            match (&p.tcp).write(&PINGRESPS[..n]) {
                Ok(w) if w == n => {
                    p.last_read_ms = now_ms;
                    return None;
                }
                // Answered in part: its task writes the rest.
                Ok(w) => resume.wbuf.extend_from_slice(&PINGRESPS[w..n]),
                // Its task answers (or finds the error).
                Err(_) => resume.rbuf.extend_from_slice(read),
            }
        } else {
            resume.rbuf.extend_from_slice(read);
        }
        let p = self.take(&mut slots, index)?;
        Some((p, resume))
    }

    /// The tick: connections whose Keep Alive passed, or (with `claims`: some client id
    /// was claimed since the last look) whose session was taken over.
    fn due(&self, now_ms: u64, claims: Option<&Shared>, out: &mut Vec<(Parked, Resume)>) {
        let mut slots = lock(&self.slots);
        for index in 0..slots.entries.len() {
            let Some(p) = &slots.entries[index] else {
                continue;
            };
            let keep_alive = p.session.keep_alive_ms();
            let expired =
                keep_alive > 0 && now_ms >= p.last_read_ms.saturating_add(keep_alive * 3 / 2);
            let taken_over = claims.is_some_and(|shared| {
                let s = &p.session;
                !shared.is_current(s.client_id(), s.generation())
            });
            if expired || taken_over {
                if let Some(p) = self.take(&mut slots, index) {
                    let resume = Resume {
                        expired,
                        ..Resume::default()
                    };
                    out.push((p, resume));
                }
            }
        }
        // After a storm of connections, give the room back.
        let cap = slots.entries.capacity();
        if cap > 64 && slots.len < cap / 4 {
            while slots.entries.last().is_some_and(Option::is_none) {
                slots.entries.pop();
            }
            let len = slots.entries.len();
            slots.free.retain(|&i| (i as usize) < len);
            let keep = len.max(slots.len * 2);
            slots.entries.shrink_to(keep);
            slots.free.shrink_to_fit();
        }
    }

    /// Closes the lot (shutdown) and takes every connection out.
    fn close(&self) -> Vec<Parked> {
        let mut slots = lock(&self.slots);
        slots.closed = true;
        let all = (0..slots.entries.len())
            .filter_map(|i| self.take(&mut slots, i))
            .collect();
        slots.entries = Vec::new();
        slots.free = Vec::new();
        all
    }

    /// Ready events, without waiting: `Ok(0)` when there are none.
    fn wait(&self, events: &mut [libc::epoll_event; EVENTS_MAX]) -> io::Result<usize> {
        // SAFETY: the epoll set is open and `events` has room for EVENTS_MAX entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS_MAX as libc::c_int,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }
}

/// The lot's task: readiness, the tick, shutdown.
async fn run(lot: Arc<Lot>, cx: Context) {
    let interval = Duration::from_millis(cx.config.deadline_check_interval_ms.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut due = Vec::new();
    let mut claims = cx.shared.claims();
    loop {
        tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            _ = tick.tick() => {
                // Read before the scan: a claim during it is looked at next time.
                let now = cx.shared.claims();
                let claimed = (now != claims).then_some(&*cx.shared);
                claims = now;
                lot.due(lot.ms(Instant::now()), claimed, &mut due);
            }
            ready = lot.epoll.readable() => {
                let Ok(mut guard) = ready else { break };
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX];
                match lot.wait(&mut events) {
                    Ok(0) => guard.clear_ready(),
                    Ok(n) => {
                        let now_ms = lot.ms(Instant::now());
                        for ev in &events[..n] {
                            let (index, bits) = (ev.u64 as usize, ev.events);
                            due.extend(lot.on_ready(index, bits, now_ms));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "MQTT parking lot failed; resuming its connections");
                        break;
                    }
                }
            }
        }
        for (p, resume) in due.drain(..) {
            unpark(&lot, &cx, p, resume);
        }
    }
    // Shutdown (or a failed epoll set): every connection gets its task back, which says
    // goodbye as any other does.
    for p in lot.close() {
        unpark(&lot, &cx, p, Resume::default());
    }
}

/// Gives a parked connection its task again.
fn unpark(lot: &Lot, cx: &Context, p: Parked, resume: Resume) {
    let last_read = lot.epoch + Duration::from_millis(p.last_read_ms);
    spawn(cx, p.tcp, *p.session, p.slot, last_read, resume);
}

/// Spawns the task of a connection that leaves the lot (or could not enter it).
pub(crate) fn spawn(
    cx: &Context,
    tcp: TcpStream,
    session: ParkedSession,
    slot: Slot,
    last_read: Instant,
    resume: Resume,
) {
    let tcp = match tokio::net::TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(e) => {
            // The socket cannot be watched any more: the session ends as if it had
            // closed (its Will is published).
            tracing::debug!(error = %e, "MQTT parked connection lost");
            drop(conn::resumed_session(
                cx,
                session,
                0,
                cx.shutdown.child_token(),
            ));
            return;
        }
    };
    tokio::spawn(conn::resume(
        tcp,
        session,
        slot,
        last_read,
        resume,
        Context {
            config: cx.config.clone(),
            broker: cx.broker.clone(),
            shared: cx.shared.clone(),
            shutdown: cx.shutdown.clone(),
        },
    ));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data; a panic elsewhere while holding it leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingresps_repeat_the_packet() {
        assert!(PINGRESPS.chunks(2).all(|c| c == PINGRESP));
    }
}
