//! [`FaultInjector`]: failed writes, failed fsyncs, held fsyncs and a full disk, on demand.
//!
//! The file journal consults it before every write, fsync and segment create (see
//! `disk.rs`); [`MemStore`](crate::MemStore) consults it on append. It lives in the public API,
//! not behind `cfg(test)`, so that the core's and the server's fault tests can use it too;
//! files written outside the store (the core's spill files) consult [`FaultInjector::write_fault`].

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A handle shared by a test and the store it configures; cloning shares the same switches.
/// Inert by default.
#[derive(Clone, Debug, Default)]
pub struct FaultInjector {
    inner: Arc<Switches>,
}

#[derive(Debug, Default)]
struct Switches {
    fsync_failures: AtomicU32,
    write_failures: AtomicU32,
    disk_full: AtomicBool,
    /// While true, fsyncs wait (see [`FaultInjector::hold_fsyncs`]).
    held: Mutex<bool>,
    released: Condvar,
    /// How many fsyncs are waiting for the release now.
    waiting: AtomicU32,
}

/// What the store should do instead of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// Fail with EIO before writing anything.
    Eio,
    /// Write the first half of the buffer, then fail with ENOSPC, as a real full disk does.
    DiskFull,
}

impl FaultInjector {
    /// A fresh, inert injector.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `count` fsyncs of segment files fail with EIO without syncing anything.
    pub fn fail_fsyncs(&self, count: u32) {
        self.inner.fsync_failures.store(count, Ordering::SeqCst);
    }

    /// The next `count` writes fail with EIO before writing anything.
    pub fn fail_writes(&self, count: u32) {
        self.inner.write_failures.store(count, Ordering::SeqCst);
    }

    /// While set, writes and segment creates fail with ENOSPC (a write first writes half of
    /// its buffer, leaving a torn record as a real full disk would).
    pub fn set_disk_full(&self, full: bool) {
        self.inner.disk_full.store(full, Ordering::SeqCst);
    }

    /// While set, every fsync of a segment file (the file journal; not
    /// [`MemStore`](crate::MemStore)) waits until it is cleared: a disk whose
    /// flushes take as long as a test wants. The writer thread blocks meanwhile, so
    /// nothing more is appended either, and closing the journal waits for the release.
    pub fn hold_fsyncs(&self, held: bool) {
        *self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = held;
        self.inner.released.notify_all();
    }

    /// How many fsyncs are waiting for [`FaultInjector::hold_fsyncs`]'s release now: a test
    /// that needs a batch to be in flight (written, its fsync not done) polls for it.
    pub fn held_fsyncs(&self) -> u32 {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        self.fail_fsyncs(0);
        self.fail_writes(0);
        self.set_disk_full(false);
        self.hold_fsyncs(false);
    }

    /// For a write of `len` bytes to a file outside the store: `None` to write normally, or
    /// how many leading bytes to write before failing with the given error (EIO after
    /// nothing, or ENOSPC after half of the buffer while the disk is set full).
    pub fn write_fault(&self, len: usize) -> Option<(usize, std::io::Error)> {
        self.on_write().map(|fault| match fault {
            WriteFault::Eio => (0, std::io::Error::from_raw_os_error(crate::disk::EIO)),
            WriteFault::DiskFull => (
                len / 2,
                std::io::Error::from_raw_os_error(crate::error::ENOSPC),
            ),
        })
    }

    pub(crate) fn on_fsync(&self) -> bool {
        take_one(&self.inner.fsync_failures)
    }

    /// Blocks while fsyncs are held; the file journal's writer thread calls it before each
    /// fsync (never an async task: it blocks the thread).
    pub(crate) fn wait_while_held(&self) {
        let held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !*held {
            return;
        }
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        drop(
            self.inner
                .released
                .wait_while(held, |h| *h)
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn on_write(&self) -> Option<WriteFault> {
        if self.inner.disk_full.load(Ordering::SeqCst) {
            Some(WriteFault::DiskFull)
        } else if take_one(&self.inner.write_failures) {
            Some(WriteFault::Eio)
        } else {
            None
        }
    }

    pub(crate) fn on_create(&self) -> bool {
        self.inner.disk_full.load(Ordering::SeqCst)
    }
}

/// Decrements `counter` if positive; true if it did (the fault fires).
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_fault_tears_writes_while_full_and_counts_down_eio() {
        let f = FaultInjector::new();
        assert!(f.write_fault(10).is_none());
        f.set_disk_full(true);
        let (landed, e) = f.write_fault(10).expect("a fault");
        assert_eq!((landed, e.raw_os_error()), (5, Some(crate::error::ENOSPC)));
        f.set_disk_full(false);
        f.fail_writes(1);
        let (landed, e) = f.write_fault(10).expect("a fault");
        assert_eq!((landed, e.raw_os_error()), (0, Some(crate::disk::EIO)));
        assert!(f.write_fault(10).is_none(), "one failure, as asked");
    }
}
