//! The [`Store`] trait: what the core needs from a journal, implemented by
//! [`Journal`](crate::Journal) (files) and [`MemStore`](crate::MemStore) (tests).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::StoreError;
use crate::record::Lsn;
use crate::watermark::{Watermark, Watermarks};

/// A record moved by compaction: the record at `old` now lives at `new`.
///
/// The caller must replace `old` by `new` wherever it keeps LSNs (release bookkeeping,
/// tombstones waiting for `contains(old)` to turn false) before it calls `compact` again;
/// until then `release(old)` and `contains(old)` act on `new` as well. Records the caller
/// released while compaction ran are not moved and not reported. Recovery hands over moved
/// records at their new LSN, so payloads should name things by the caller's own ids, never
/// by LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moved {
    /// The LSN the caller knew.
    pub old: Lsn,
    /// The LSN of the copy.
    pub new: Lsn,
}

/// Counters and sizes, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// fsyncs of segment data by the writer (group commits and rotations), since open.
    pub fsyncs: u64,
    /// Segment files on disk.
    pub segments: usize,
    /// Bytes of segment files on disk.
    pub disk_bytes: u64,
    /// Records on disk, live or released.
    pub records: u64,
    /// Records not released.
    pub live_records: u64,
    /// Encoded bytes of records not released.
    pub live_bytes: u64,
}

/// An append-only journal of opaque records.
///
/// # Contract
/// - LSNs are assigned in append order, from 1, without gaps while the store is open. A
///   record refused for lack of space ([`StoreError::DiskFull`]) takes no LSN; the store
///   carries on and later appends are tried again.
/// - `append` resolves once the record is [`Watermark::Appended`]; wait for a higher level
///   with [`Store::wait_for`]. A producer is confirmed at the level its policy asks for.
/// - After a fatal error ([`StoreError::is_fatal`]) every append and every wait for a level
///   not yet reached fails with that error until the store is reopened.
/// - `release` is not persisted: after reopening, the caller releases again what its own
///   records say is dead. A record that cancels another (an ack) must stay live while
///   [`Store::contains`] still reports the cancelled one, or the cancelled one returns.
pub trait Store: Send + Sync {
    /// Queues a record and resolves with its LSN once it is written to the file. Waits
    /// while the append queue is full (backpressure).
    fn append(
        &self,
        kind: u8,
        payload: Bytes,
    ) -> impl Future<Output = Result<Lsn, StoreError>> + Send;

    /// Resolves once `lsn` has reached `mark`; fails if the store failed or closed first.
    fn wait_for(
        &self,
        lsn: Lsn,
        mark: Watermark,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Store::wait_for`] at [`Watermark::Synced`].
    fn wait_synced(&self, lsn: Lsn) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.wait_for(lsn, Watermark::Synced)
    }

    /// The current watermarks.
    fn watermarks(&self) -> Watermarks;

    /// Marks a record dead. Returns false if it was not live (already released, never
    /// appended, or gone with its segment). Sealed segments with nothing live are deleted.
    fn release(&self, lsn: Lsn) -> bool;

    /// True while the record (or its compaction copy) is on disk, live or released.
    fn contains(&self, lsn: Lsn) -> bool;

    /// True while `tomb` (a record that cancels `target`) must stay live: recovery could
    /// still hand over `target` (or a compaction copy of it) from a segment that may
    /// outlive `tomb`'s. A target in the tomb's own segment needs no protection, since the
    /// two leave the disk together; this is what lets a segment whose records cancel each
    /// other be deleted.
    fn protects(&self, tomb: Lsn, target: Lsn) -> bool;

    /// The epoch stamped on records written from now on.
    fn epoch(&self) -> u64;

    /// Raises the epoch; records appended after this returns carry it. Epochs never go down.
    fn set_epoch(&self, epoch: u64) -> Result<(), StoreError>;

    /// Rewrites sparse sealed segments, returning where each live record moved. See
    /// [`Moved`] for what the caller must do with the result.
    fn compact(&self) -> impl Future<Output = Result<Vec<Moved>, StoreError>> + Send;

    /// Counters and sizes.
    fn stats(&self) -> StoreStats;
}

/// Raises `cell` to `epoch`; epochs never go down (a writer of an older epoch is fenced).
pub(crate) fn raise_epoch(cell: &AtomicU64, epoch: u64) -> Result<(), StoreError> {
    cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
        (epoch >= current).then_some(epoch)
    })
    .map(|_| ())
    .map_err(|current| StoreError::EpochRegressed {
        current,
        requested: epoch,
    })
}
