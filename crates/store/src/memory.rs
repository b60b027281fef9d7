//! [`MemStore`]: an in-memory [`Store`] for tests of the layers above.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::error::{IoOp, StoreError};
use crate::fault::{FaultInjector, WriteFault};
use crate::record::{self, Lsn, Record};
use crate::store::{Moved, Store, StoreStats};
use crate::watermark::{self, Progress, Watermark, Watermarks};

/// A [`Store`] in memory. Every append is synced at once (one "fsync" each) unless a
/// [`FaultInjector`] says otherwise; faults behave as in the file journal (a full disk fails
/// that append only, and takes no LSN; a failed write or fsync is fatal until a new store is
/// made). Unlike the journal it forgets a record the
/// moment it is released, so [`Store::contains`] turns false at once, and it never moves
/// records. [`MemStore::records`] is what a reopen would hand over.
#[derive(Debug)]
pub struct MemStore {
    records: Mutex<BTreeMap<Lsn, Record>>,
    progress: watch::Sender<Progress>,
    epoch: AtomicU64,
    fsyncs: AtomicU64,
    faults: FaultInjector,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store at epoch 0.
    pub fn new() -> Self {
        Self::with_faults(FaultInjector::default())
    }

    /// An empty store that consults `faults` on every append.
    pub fn with_faults(faults: FaultInjector) -> Self {
        MemStore {
            records: Mutex::new(BTreeMap::new()),
            progress: watch::Sender::new(Progress::default()),
            epoch: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            faults,
        }
    }

    /// The records not released, in LSN order: what recovery would hand over.
    pub fn records(&self) -> Vec<Record> {
        self.lock().values().cloned().collect()
    }

    /// Stops accepting appends, as [`Journal::close`](crate::Journal::close) does.
    pub fn close(&self) {
        self.progress.send_modify(|p| p.closed = true);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Lsn, Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, op: IoOp, err: io::Error) -> StoreError {
        let err = StoreError::io(op, PathBuf::from("<memory>"), err);
        self.progress.send_modify(|p| p.failure = Some(err.clone()));
        err
    }

    fn append_now(&self, kind: u8, payload: Bytes) -> Result<Lsn, StoreError> {
        let refusal = self.progress.borrow().refusal();
        if let Some(err) = refusal {
            return Err(err);
        }
        match self.faults.on_write() {
            None => {}
            Some(WriteFault::Eio) => {
                return Err(self.fail(IoOp::Write, io::Error::from_raw_os_error(5)))
            }
            Some(WriteFault::DiskFull) => {
                return Err(StoreError::io(
                    IoOp::Write,
                    PathBuf::from("<memory>"),
                    io::Error::from_raw_os_error(crate::error::ENOSPC),
                ))
            }
        }
        let lsn = {
            let mut records = self.lock();
            let lsn = self.progress.borrow().marks.appended + 1;
            records.insert(
                lsn,
                Record {
                    lsn,
                    epoch: self.epoch.load(Ordering::SeqCst),
                    kind,
                    payload,
                    offset: 0,
                },
            );
            self.progress.send_modify(|p| p.marks.appended = lsn);
            lsn
        };
        if self.faults.on_fsync() {
            self.fail(IoOp::Sync, io::Error::from_raw_os_error(5));
        } else {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.progress.send_modify(|p| p.marks.synced = lsn);
        }
        Ok(lsn)
    }
}

impl Store for MemStore {
    async fn append(&self, kind: u8, payload: Bytes) -> Result<Lsn, StoreError> {
        self.append_now(kind, payload)
    }

    async fn wait_for(&self, lsn: Lsn, mark: Watermark) -> Result<(), StoreError> {
        watermark::wait_for(self.progress.subscribe(), lsn, mark).await
    }

    fn watermarks(&self) -> Watermarks {
        self.progress.borrow().marks
    }

    fn release(&self, lsn: Lsn) -> bool {
        self.lock().remove(&lsn).is_some()
    }

    fn contains(&self, lsn: Lsn) -> bool {
        self.lock().contains_key(&lsn)
    }

    fn protects(&self, _tomb: Lsn, target: Lsn) -> bool {
        self.contains(target)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn set_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        crate::store::raise_epoch(&self.epoch, epoch)
    }

    async fn compact(&self) -> Result<Vec<Moved>, StoreError> {
        Ok(Vec::new())
    }

    fn stats(&self) -> StoreStats {
        let records = self.lock();
        let live_bytes = records
            .values()
            .map(|r| record::encoded_len(r.payload.len(), false, false) as u64)
            .sum();
        StoreStats {
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            segments: 0,
            disk_bytes: 0,
            records: records.len() as u64,
            live_records: records.len() as u64,
            live_bytes,
        }
    }
}
