//! Connection deadlines (CONNECT timeout, Keep Alive, write stalls), checked by one
//! ticker for every connection that shares a [`Shared`](crate::shared::Shared) instead of
//! a timer in each connection's task. A tokio timer is 136 bytes of every task, idle or
//! not, and is re-armed at every wake-up; a deadline here is one atomic in a 48-byte
//! [`Watch`] that the connection overwrites.
//!
//! A deadline is terminal: the ticker marks the watch expired and cancels the
//! connection's stop token, the one the connection already waits on for shutdown and
//! takeover, and the connection closes (MQTT 5: DISCONNECT 0x8D for Keep Alive). A
//! deadline is seen up to one tick late (`MqttConfig::deadline_check_interval_ms`).
//!
//! The ticker also says when a quiet connection may park (`park.rs`): a second deadline
//! in the watch, which wakes the connection through the watch's [`Notify`] instead of
//! stopping it.
//!
//! # Invariants
//! - Every watch of a live connection is in the table; the ticker drops a watch at the
//!   first tick after its connection dropped it.
//! - `expired` is set before `stop` is cancelled, and only once: a connection that sees
//!   its stop token cancelled and its watch not expired was shut down or taken over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// A deadline that never comes.
const NEVER_MS: u64 = u64::MAX;

/// The deadlines of one listener's connections (one ticker, started with the first).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    table: OnceLock<Arc<Table>>,
}

#[derive(Debug)]
struct Table {
    /// Deadlines are milliseconds since this instant.
    epoch: Instant,
    watches: Mutex<Vec<Arc<Watch>>>,
}

/// One connection's deadline, shared by the connection and the ticker.
#[derive(Debug)]
struct Watch {
    /// Milliseconds since the table's epoch, rounded up; `NEVER_MS`: none.
    deadline_ms: AtomicU64,
    expired: AtomicBool,
    stop: CancellationToken,
    /// When the connection may park (same clock; `NEVER_MS`: not now).
    park_ms: AtomicU64,
    /// Woken (once per `park_ms` set) when `park_ms` passed.
    park: Notify,
}

/// A connection's handle on its deadline.
#[derive(Debug)]
pub(crate) struct Deadline {
    watch: Arc<Watch>,
    epoch: Instant,
}

impl Deadlines {
    /// Registers a connection whose deadline, once passed, cancels `stop`. The first call
    /// starts the ticker, every `interval`; call it inside the runtime.
    pub(crate) fn watch(&self, stop: CancellationToken, interval: Duration) -> Deadline {
        let table = self.table.get_or_init(|| {
            let table = Arc::new(Table {
                epoch: Instant::now(),
                watches: Mutex::new(Vec::new()),
            });
            tokio::spawn(tick(Arc::downgrade(&table), interval));
            table
        });
        let watch = Arc::new(Watch {
            deadline_ms: AtomicU64::new(NEVER_MS),
            expired: AtomicBool::new(false),
            stop,
            park_ms: AtomicU64::new(NEVER_MS),
            park: Notify::new(),
        });
        lock(&table.watches).push(watch.clone());
        Deadline {
            watch,
            epoch: table.epoch,
        }
    }
}

impl Deadline {
    /// Sets the deadline (`None`: none), replacing the one before.
    pub(crate) fn set(&self, at: Option<Instant>) {
        self.watch.deadline_ms.store(self.ms(at), Ordering::Relaxed);
    }

    /// Sets when the connection may park (`None`: not while this holds), replacing the
    /// time before; [`Deadline::park_due`] resolves once the ticker saw it pass.
    pub(crate) fn set_park(&self, at: Option<Instant>) {
        self.watch.park_ms.store(self.ms(at), Ordering::Relaxed);
    }

    /// Resolves once the time set by [`Deadline::set_park`] passed (the ticker then
    /// forgets it: set it again to be woken again).
    pub(crate) async fn park_due(&self) {
        self.watch.park.notified().await;
    }

    /// Milliseconds since the table's epoch, rounded up: the ticker acts only once `at`
    /// has passed.
    fn ms(&self, at: Option<Instant>) -> u64 {
        at.map_or(NEVER_MS, |at| {
            let d = at.saturating_duration_since(self.epoch);
            let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            u64::try_from(ms).unwrap_or(NEVER_MS)
        })
    }

    /// True once the ticker found the deadline passed (and cancelled the stop token).
    pub(crate) fn expired(&self) -> bool {
        self.watch.expired.load(Ordering::Acquire)
    }
}

/// Expires the watches whose deadline passed, every `interval`, until the table is gone.
async fn tick(table: Weak<Table>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(table) = table.upgrade() else { return };
        let now_ms = u64::try_from(table.epoch.elapsed().as_millis()).unwrap_or(NEVER_MS);
        let mut watches = lock(&table.watches);
        watches.retain(|w| {
            if Arc::strong_count(w) == 1 {
                return false;
            }
            if w.deadline_ms.load(Ordering::Relaxed) <= now_ms
                && !w.expired.swap(true, Ordering::AcqRel)
            {
                w.stop.cancel();
            }
            let park = w.park_ms.load(Ordering::Relaxed);
            if park <= now_ms
                && w.park_ms
                    .compare_exchange(park, NEVER_MS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                w.park.notify_one();
            }
            true
        });
        // After a storm of connections, give the room back.
        let len = watches.len();
        if watches.capacity() > 64 && len < watches.capacity() / 4 {
            watches.shrink_to(len * 2);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The table is plain data; a panic elsewhere while holding it leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_cancels_the_stop_token_within_a_tick() {
        let deadlines = Deadlines::default();
        let stop = CancellationToken::new();
        let d = deadlines.watch(stop.clone(), TICK);
        let start = Instant::now();
        d.set(Some(start + Duration::from_millis(1_000)));
        tokio::time::sleep(Duration::from_millis(950)).await;
        assert!(!stop.is_cancelled() && !d.expired());
        stop.cancelled().await;
        assert!(d.expired());
        let late = start.elapsed();
        assert!(late >= Duration::from_millis(1_000), "{late:?}");
        assert!(late <= Duration::from_millis(1_000) + TICK, "{late:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_moved_deadline_or_none_does_not_expire() {
        let deadlines = Deadlines::default();
        let (stop, none) = (CancellationToken::new(), CancellationToken::new());
        let d = deadlines.watch(stop.clone(), TICK);
        let never = deadlines.watch(none.clone(), TICK);
        never.set(None);
        for _ in 0..10 {
            d.set(Some(Instant::now() + Duration::from_millis(500)));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(!stop.is_cancelled() && !d.expired());
        assert!(!none.is_cancelled() && !never.expired());
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_park_time_wakes_without_stopping() {
        let deadlines = Deadlines::default();
        let stop = CancellationToken::new();
        let d = deadlines.watch(stop.clone(), TICK);
        let start = Instant::now();
        d.set_park(Some(start + Duration::from_millis(1_000)));
        d.park_due().await;
        let late = start.elapsed();
        assert!(late >= Duration::from_millis(1_000), "{late:?}");
        assert!(late <= Duration::from_millis(1_000) + TICK, "{late:?}");
        assert!(!stop.is_cancelled() && !d.expired());
        // Woken once: without a new time, no second wake.
        let again = tokio::time::timeout(TICK * 5, d.park_due()).await;
        assert!(again.is_err(), "woken twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_leaves_the_table() {
        let deadlines = Deadlines::default();
        let kept = deadlines.watch(CancellationToken::new(), TICK);
        drop(deadlines.watch(CancellationToken::new(), TICK));
        let table = deadlines.table.get().expect("started").clone();
        assert_eq!(lock(&table.watches).len(), 2);
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(lock(&table.watches).len(), 1);
        drop(kept);
    }
}
