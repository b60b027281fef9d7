//! [`Journal`]: the file-backed [`Store`], and its open/close.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, watch, Semaphore};

use crate::compaction;
use crate::config::JournalConfig;
use crate::disk;
use crate::error::{IoOp, StoreError};
use crate::limits;
use crate::record::{Lsn, Record};
use crate::recovery::{self, Recovery};
use crate::segment::SEGMENT_HEADER_LEN;
use crate::space::Segment;
use crate::store::{Moved, Store, StoreStats};
use crate::watermark::{self, Progress, Watermark, Watermarks};
use crate::writer::{Active, AppendRequest, Command, Shared, Writer, WriterConfig};

/// A record queued by [`Journal::submit`]; [`Journal::submitted`] turns it into its LSN.
#[must_use = "a submitted record's LSN is needed to release it"]
pub struct Submitted(oneshot::Receiver<Result<Lsn, StoreError>>);

/// Taken by [`Journal::fence`] before a run of [`Journal::submit_fenced`] calls: once a
/// write fails for lack of space ([`StoreError::DiskFull`]), every later record of the run
/// is refused with the same error without being written. So a run lands on disk as a
/// prefix: whatever comes after a failed record, and might depend on it, is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence(u64);

/// An append-only journal of segment files in one directory.
///
/// Open it with [`Journal::open`], use it through [`Store`], and [`close`](Journal::close) it
/// (or drop it: the writer thread then fsyncs what it has and exits). Share it between tasks
/// behind an `Arc`.
///
/// # Invariants
/// - `queue` holds `queue_max_bytes` permits less those of appends queued but not yet staged
///   by the writer; so queued payload never exceeds the bound by more than one record.
/// - `compacting` is true while exactly one `compact` call is between its start and its end
///   (or its cancellation).
pub struct Journal {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    /// Bytes of queue space (see `limits::APPEND_QUEUE_MAX_BYTES_DEFAULT`).
    queue: Arc<Semaphore>,
    queue_max_bytes: u32,
    record_payload_max_bytes: u32,
    pub(crate) compaction_live_percent_max: u8,
    /// A compaction is running.
    pub(crate) compacting: AtomicBool,
    /// Left by a cancelled compaction: resolves once the copies it queued have landed.
    compaction_fence: Mutex<Option<oneshot::Receiver<()>>>,
    /// The segment [`Journal::read_back`] read last, kept open.
    read_back: Mutex<crate::segment::SegmentReader>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal in `config.dir`, handing every recovered record to
    /// `on_record` in LSN order, then starts the writer thread.
    ///
    /// Records are streamed, not collected: recovery holds one record at a time plus 4 bytes
    /// of bookkeeping per record on disk. If this returns an error, discard whatever
    /// `on_record` received. Blocking: call it before serving, or from `spawn_blocking`.
    pub fn open(
        config: JournalConfig,
        mut on_record: impl FnMut(Record),
    ) -> Result<(Journal, Recovery), StoreError> {
        config.validate()?;
        let recovered = recovery::recover(&config, &mut on_record)?;
        let mut space = recovered.space;
        let next_lsn = recovered.next_lsn;
        let active = match recovered.tail {
            Some(tail) => Active {
                file: tail.file,
                path: tail.path,
                first_lsn: tail.first_lsn,
                len: tail.len,
                records: tail.records,
            },
            None => {
                let (file, path) = disk::create_segment(&config.dir, next_lsn, &config.faults)?;
                space.insert(Segment::new(next_lsn, path.clone()));
                Active {
                    file,
                    path,
                    first_lsn: next_lsn,
                    len: SEGMENT_HEADER_LEN,
                    records: 0,
                }
            }
        };
        let mut report = recovered.report;
        report.segments = space.totals().segments;

        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            space: Mutex::new(space),
            progress: watch::Sender::new(Progress::at(next_lsn - 1)),
            epoch: AtomicU64::new(config.epoch),
            fsyncs: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            faults: config.faults.clone(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            shared.clone(),
            rx,
            WriterConfig {
                segment_size_max_bytes: config.segment_size_max_bytes,
                sync_delay: Duration::from_micros(config.sync_delay_max_us),
                sync_batch_max_bytes: config.sync_batch_max_bytes,
            },
            active,
            next_lsn,
        );
        std::thread::Builder::new()
            .name("ferromq-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(IoOp::Spawn, &config.dir, e))?;
        let journal = Journal {
            shared,
            tx,
            queue: Arc::new(Semaphore::new(config.append_queue_max_bytes as usize)),
            queue_max_bytes: config.append_queue_max_bytes,
            record_payload_max_bytes: config.record_payload_max_bytes,
            compaction_live_percent_max: config.compaction_live_percent_max,
            compacting: AtomicBool::new(false),
            compaction_fence: Mutex::new(None),
            read_back: Mutex::new(Default::default()),
        };
        Ok((journal, report))
    }

    /// Writes and fsyncs everything queued, then stops the writer. Later appends fail with
    /// [`StoreError::Closed`]; a failed journal reports its failure instead.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).is_err() {
            return self.refusal().map_or(Ok(()), |err| match err {
                StoreError::Closed => Ok(()),
                err => Err(err),
            });
        }
        rx.await.unwrap_or_else(|_| Err(self.dead()))
    }

    /// Reads back a record that recovery handed over, from `offset`
    /// ([`Record::offset`]): for a caller that let go of recovered payloads to bound its
    /// memory and needs them again. The record must still be on disk, that is, not released
    /// since (nothing is deleted before the caller releases it). Checks the record's CRC and
    /// LSN. Blocking; consecutive reads from one segment reuse its open file.
    pub fn read_back(&self, lsn: Lsn, offset: u64) -> Result<Record, StoreError> {
        let (first_lsn, path) = self
            .shared
            .space()
            .segment_path(lsn)
            .ok_or(StoreError::NotFound { lsn })?;
        self.read_back
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .read(first_lsn, &path, lsn, offset)
    }

    /// True while the record (or the compaction copy it was moved to) is on disk and not
    /// released.
    pub fn is_live(&self, lsn: Lsn) -> bool {
        let space = self.shared.space();
        space.is_live(space.forward(lsn))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Queues a record; resolves to the receiver of its LSN once queue space is granted.
    pub(crate) async fn enqueue(
        &self,
        kind: u8,
        payload: Bytes,
        origin: Option<crate::record::Copied>,
        fence: Option<Fence>,
    ) -> Result<oneshot::Receiver<Result<Lsn, StoreError>>, StoreError> {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        // A record bigger than the whole queue waits for an empty queue, then goes alone.
        let cost = (payload.len() as u64 + u64::from(limits::APPEND_REQUEST_OVERHEAD_BYTES))
            .min(u64::from(self.queue_max_bytes)) as u32;
        let permit = self
            .queue
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        let request = AppendRequest {
            kind,
            payload,
            origin,
            reply,
            permit,
            fence: fence.map(|f| f.0),
        };
        self.tx
            .send(Command::Append(request))
            .map_err(|_| self.dead())?;
        Ok(rx)
    }

    /// Awaits the writer's answer to [`Journal::enqueue`].
    pub(crate) async fn appended(
        &self,
        rx: oneshot::Receiver<Result<Lsn, StoreError>>,
    ) -> Result<Lsn, StoreError> {
        rx.await.unwrap_or_else(|_| Err(self.dead()))
    }

    /// Queues a record, waiting only for queue space (backpressure), and returns a ticket
    /// for its LSN. Records are written in the order their `submit` calls complete, so a
    /// single task can submit a run of records back to back and collect their LSNs later,
    /// keeping group commit busy instead of waiting for each write.
    pub async fn submit(&self, kind: u8, payload: Bytes) -> Result<Submitted, StoreError> {
        self.submit_inner(kind, payload, None).await
    }

    /// The current [`Fence`], to pass to the [`Journal::submit_fenced`] calls of one run.
    pub fn fence(&self) -> Fence {
        Fence(self.shared.failed_batches.load(Ordering::Relaxed))
    }

    /// [`Journal::submit`], except that the record is refused with
    /// [`StoreError::DiskFull`], unwritten, if any write failed for lack of space after
    /// `fence` was taken and before the writer reached this record.
    pub async fn submit_fenced(
        &self,
        kind: u8,
        payload: Bytes,
        fence: Fence,
    ) -> Result<Submitted, StoreError> {
        self.submit_inner(kind, payload, Some(fence)).await
    }

    async fn submit_inner(
        &self,
        kind: u8,
        payload: Bytes,
        fence: Option<Fence>,
    ) -> Result<Submitted, StoreError> {
        if payload.len() > self.record_payload_max_bytes as usize {
            return Err(StoreError::RecordTooLarge {
                len: payload.len(),
                max: self.record_payload_max_bytes,
            });
        }
        Ok(Submitted(self.enqueue(kind, payload, None, fence).await?))
    }

    /// The LSN of a submitted record, once it is [`Watermark::Appended`].
    pub async fn submitted(&self, ticket: Submitted) -> Result<Lsn, StoreError> {
        self.appended(ticket.0).await
    }

    /// [`Journal::submitted`] by reference: cancel-safe, so a `select!` branch that another
    /// branch wins may wait on the same ticket again. Once this has returned, the ticket
    /// is spent: do not wait on it again.
    pub async fn submitted_ref(&self, ticket: &mut Submitted) -> Result<Lsn, StoreError> {
        (&mut ticket.0).await.unwrap_or_else(|_| Err(self.dead()))
    }

    /// Sends a command to the writer; false if it is gone.
    pub(crate) fn command(&self, cmd: Command) -> bool {
        self.tx.send(cmd).is_ok()
    }

    pub(crate) fn compaction_fence(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<oneshot::Receiver<()>>> {
        self.compaction_fence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn refusal(&self) -> Option<StoreError> {
        self.shared.progress.borrow().refusal()
    }

    /// The error to report when the writer is gone.
    fn dead(&self) -> StoreError {
        self.refusal().unwrap_or(StoreError::Closed)
    }
}

impl Store for Journal {
    async fn append(&self, kind: u8, payload: Bytes) -> Result<Lsn, StoreError> {
        // Compaction copies skip this check: they were accepted once, perhaps under a larger
        // maximum, and recovery reads up to limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT.
        if payload.len() > self.record_payload_max_bytes as usize {
            return Err(StoreError::RecordTooLarge {
                len: payload.len(),
                max: self.record_payload_max_bytes,
            });
        }
        let rx = self.enqueue(kind, payload, None, None).await?;
        self.appended(rx).await
    }

    async fn wait_for(&self, lsn: Lsn, mark: Watermark) -> Result<(), StoreError> {
        watermark::wait_for(self.shared.progress.subscribe(), lsn, mark).await
    }

    fn watermarks(&self) -> Watermarks {
        self.shared.progress.borrow().marks
    }

    fn release(&self, lsn: Lsn) -> bool {
        let (released, delete) = {
            let mut space = self.shared.space();
            let target = space.forward(lsn);
            space.release(target)
        };
        if let Some(first_lsn) = delete {
            // If the writer is gone the journal has failed or closed; the file stays and
            // recovery will hand its records over again.
            self.command(Command::Delete(first_lsn));
        }
        released
    }

    fn contains(&self, lsn: Lsn) -> bool {
        self.shared.space().contains(lsn)
    }

    fn protects(&self, tomb: Lsn, target: Lsn) -> bool {
        self.shared.space().protects(tomb, target)
    }

    fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::SeqCst)
    }

    fn set_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        crate::store::raise_epoch(&self.shared.epoch, epoch)
    }

    async fn compact(&self) -> Result<Vec<Moved>, StoreError> {
        compaction::compact(self).await
    }

    fn stats(&self) -> StoreStats {
        let totals = self.shared.space().totals();
        StoreStats {
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            segments: totals.segments,
            disk_bytes: totals.disk_bytes,
            records: totals.records,
            live_records: totals.live_records,
            live_bytes: totals.live_bytes,
        }
    }
}
