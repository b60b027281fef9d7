//! The writer thread: the only code that writes, fsyncs, creates or deletes segment files.
//!
//! It takes commands from an mpsc channel, stages appends into one buffer, writes each
//! drained batch with one `write`, and fsyncs when `sync_delay_max_us` has passed since the
//! first unsynced write or `sync_batch_max_bytes` are unsynced (group commit). It is a
//! dedicated std thread so blocking file I/O never runs on a tokio worker.
//!
//! # Faults
//! - **No space** (ENOSPC or EDQUOT) while writing a batch, a partial write included: the
//!   segment is cut back to the end of its last good record and fsynced (`disk::cut`), the
//!   records of that batch fail with [`StoreError::DiskFull`] and give their LSNs back (the
//!   next records take them, so the LSNs on disk stay consecutive), and the writer goes on.
//!   Records written before the batch stay; the fsync of the cut makes them synced. The
//!   same for a segment that cannot be created: the record that needed it fails, the active
//!   segment stays active (already fsynced whole), and the next record tries again. Either
//!   way `failed_batches` is counted, which fails the records submitted with an older
//!   [`Fence`](crate::Fence) without writing them. Nothing is retried by the writer: the
//!   appender decides.
//! - **Any other I/O error** on write (EIO and the like), and **any failed fsync**, is fatal:
//!   the writer publishes the error in [`Progress::failure`], fails every staged append, and
//!   exits; dropping the channel fails whatever was still queued. After a failed fsync the
//!   kernel may have dropped the dirty pages and cleared the error (PostgreSQL's
//!   "fsyncgate"), so a later fsync could report success for data that is gone: only a
//!   reopen, whose recovery trusts nothing but what it reads back, is safe. An EIO from a
//!   write means the device, not the space, failed: freeing space cures nothing, and what
//!   reached the disk is unknown; recovery finds out. A failed cut (truncate or its fsync)
//!   is fatal for the same reasons.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tracing::{error, info, warn};

use crate::disk;
use crate::error::{IoOp, StoreError};
use crate::fault::FaultInjector;
use crate::record::{self, Lsn};
use crate::space::{Segment, Space};
use crate::watermark::Progress;

/// State shared by the journal handle and the writer thread.
///
/// Lock order: `space` is a leaf lock; nothing else is locked or sent while it is held.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub space: Mutex<Space>,
    pub progress: watch::Sender<Progress>,
    pub epoch: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Batches and segment creates that failed for lack of space, since open; the
    /// generation a [`Fence`](crate::Fence) remembers.
    pub failed_batches: AtomicU64,
    pub faults: FaultInjector,
}

impl Shared {
    pub(crate) fn space(&self) -> MutexGuard<'_, Space> {
        // Space updates cannot panic half-way; a poisoned lock still holds a consistent map.
        self.space.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the writer thread is asked to do, in queue order.
pub(crate) enum Command {
    Append(AppendRequest),
    /// Delete a segment that [`Space`] marked for deletion.
    Delete(Lsn),
    /// Replies once every earlier command has been handled.
    Barrier(oneshot::Sender<()>),
    /// Write and fsync everything, reply, and exit.
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
}

pub(crate) struct AppendRequest {
    pub kind: u8,
    pub payload: Bytes,
    /// For compaction copies: the LSN copied.
    pub origin: Option<record::Copied>,
    pub reply: oneshot::Sender<Result<Lsn, StoreError>>,
    /// Queue space held until the record is staged.
    pub permit: OwnedSemaphorePermit,
    /// Refuse the record unwritten if `failed_batches` has passed this.
    pub fence: Option<u64>,
}

/// The segment being appended to.
pub(crate) struct Active {
    pub file: File,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// File length after the last flush.
    pub len: u64,
    /// Records in the file after the last flush.
    pub records: u64,
}

pub(crate) struct WriterConfig {
    pub segment_size_max_bytes: u64,
    pub sync_delay: Duration,
    pub sync_batch_max_bytes: u64,
}

/// # Invariants
/// - `buf` holds the encoded records of `staged`, in LSN order, from `appended + 1`;
///   `next_lsn == appended + staged.len() + 1` between commands.
/// - `active.len` is the file's length up to its last good record: bytes beyond it exist
///   only during a write, and a failed write's are cut before the next command.
/// - Space counts exactly the records in `active.len`; a staged compaction copy holds its
///   original's segment (given back if the copy is not written).
/// - `synced <= appended`; `unsynced_since` is `Some` iff `synced < appended`.
/// - `after_sync` is true iff nothing has been staged since the last fsync (or open, or
///   rotation): the next record gets the `AFTER_SYNC` flag.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    config: WriterConfig,
    active: Active,
    next_lsn: Lsn,
    buf: Vec<u8>,
    staged: Vec<Staged>,
    appended: Lsn,
    synced: Lsn,
    unsynced_since: Option<Instant>,
    unsynced_bytes: u64,
    after_sync: bool,
    /// The last write or create failed for lack of space (for logging the change only).
    out_of_space: bool,
}

struct Staged {
    lsn: Lsn,
    size: u32,
    /// False for compaction copies: born dead until adopted.
    live: bool,
    /// For compaction copies: the segment of the original, held by the copy.
    origin_segment: Option<Lsn>,
    reply: oneshot::Sender<Result<Lsn, StoreError>>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Command>,
        config: WriterConfig,
        active: Active,
        next_lsn: Lsn,
    ) -> Self {
        Writer {
            shared,
            rx,
            config,
            active,
            next_lsn,
            buf: Vec::new(),
            staged: Vec::new(),
            appended: next_lsn - 1,
            synced: next_lsn - 1,
            unsynced_since: None,
            unsynced_bytes: 0,
            after_sync: true,
            out_of_space: false,
        }
    }

    /// The thread's body.
    pub(crate) fn run(mut self) {
        let outcome = self.serve();
        match outcome {
            Ok(shutdown) => {
                self.shared.progress.send_modify(|p| p.closed = true);
                if let Some(reply) = shutdown {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(err) => {
                error!(dir = %self.shared.dir.display(), %err,
                    "journal writer failed; appends are refused until the journal is reopened");
                // Published before any reply channel is dropped, so that an appender whose
                // channel closes finds the cause.
                self.shared
                    .progress
                    .send_modify(|p| p.failure = Some(err.clone()));
                for staged in self.staged.drain(..) {
                    let _ = staged.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Handles commands until shutdown (returning its reply channel), the last handle is
    /// dropped, or an I/O error.
    fn serve(&mut self) -> Result<Option<oneshot::Sender<Result<(), StoreError>>>, StoreError> {
        loop {
            let first = match self.unsynced_since {
                None => match self.rx.recv() {
                    Ok(cmd) => cmd,
                    Err(_) => return Ok(None),
                },
                Some(since) => {
                    let deadline = since + self.config.sync_delay;
                    let now = Instant::now();
                    if now >= deadline {
                        self.sync()?;
                        continue;
                    }
                    match self.rx.recv_timeout(deadline - now) {
                        Ok(cmd) => cmd,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => {
                            self.sync()?;
                            return Ok(None);
                        }
                    }
                }
            };
            if let Some(reply) = self.handle(first)? {
                return Ok(Some(reply));
            }
            // Drain what else is queued into the same write, up to one sync batch.
            while (self.buf.len() as u64) < self.config.sync_batch_max_bytes {
                let Ok(cmd) = self.rx.try_recv() else { break };
                if let Some(reply) = self.handle(cmd)? {
                    return Ok(Some(reply));
                }
            }
            self.flush()?;
            if self.unsynced_bytes >= self.config.sync_batch_max_bytes {
                self.sync()?;
            }
        }
    }

    fn handle(
        &mut self,
        cmd: Command,
    ) -> Result<Option<oneshot::Sender<Result<(), StoreError>>>, StoreError> {
        match cmd {
            Command::Append(req) => self.stage(req)?,
            Command::Delete(first_lsn) => self.delete(first_lsn)?,
            Command::Barrier(reply) => {
                let _ = reply.send(());
            }
            Command::Shutdown(reply) => {
                self.sync()?;
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }

    /// Encodes a record into the write buffer, rotating first if it would overflow the
    /// active segment.
    fn stage(&mut self, req: AppendRequest) -> Result<(), StoreError> {
        let AppendRequest {
            kind,
            payload,
            origin,
            reply,
            permit,
            fence,
        } = req;
        if fence.is_some_and(|f| f < self.shared.failed_batches.load(Ordering::Relaxed)) {
            // An earlier record of the caller's run failed: so does this one, unwritten, so
            // that the run lands as a prefix.
            let _ = reply.send(Err(self.no_space(IoOp::Write)));
            return Ok(());
        }
        let size = record::encoded_len(
            payload.len(),
            origin.is_some(),
            origin.is_some_and(|c| c.first != c.origin),
        ) as u64;
        let pending = self.active.len + self.buf.len() as u64;
        let has_records = self.active.records > 0 || !self.staged.is_empty();
        if has_records && pending + size > self.config.segment_size_max_bytes {
            if let Err(err) = self.rotate() {
                let _ = reply.send(Err(err.clone()));
                if err.is_fatal() {
                    return Err(err);
                }
                // No segment for lack of space: the active one stays; the next record that
                // needs a new one tries again.
                self.ran_out_of_space(&err);
                return Ok(());
            }
        }
        let mut origin_segment = None;
        if let Some(origin) = origin {
            let mut space = self.shared.space();
            let Some(held) = space.hold_origin(origin.origin) else {
                // The original left the disk (a cancelled compaction's copy that was still
                // queued). Writing the copy would resurrect it; drop it unanswered.
                return Ok(());
            };
            if let Some(active) = space.segment_mut(self.active.first_lsn) {
                active.add_orphan(held);
            }
            origin_segment = Some(held);
        }
        let lsn = self.next_lsn;
        record::encode(
            &mut self.buf,
            &record::Encode {
                lsn,
                epoch: self.shared.epoch.load(Ordering::SeqCst),
                kind,
                after_sync: std::mem::take(&mut self.after_sync),
                origin,
                payload: &payload,
            },
        );
        self.next_lsn += 1;
        // Below 2^31: the journal checked the payload against record_payload_max_bytes.
        self.staged.push(Staged {
            lsn,
            size: size as u32,
            live: origin.is_none(),
            origin_segment,
            reply,
        });
        drop(permit);
        Ok(())
    }

    /// Writes the staged records, advances `appended` and answers their appenders; or, if
    /// there is no space for them, refuses them (see [`Writer::refuse_staged`]).
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Err(err) = disk::write_all(
            &mut self.active.file,
            &self.active.path,
            &self.buf,
            &self.shared.faults,
        ) {
            if err.is_fatal() {
                return Err(err);
            }
            return self.refuse_staged(err);
        }
        if self.out_of_space {
            self.out_of_space = false;
            info!(dir = %self.shared.dir.display(), "journal writes succeed again");
        }
        self.shared.space().push_active(
            self.active.first_lsn,
            self.staged.iter().map(|s| (s.size, s.live)),
        );
        self.active.len += self.buf.len() as u64;
        self.active.records += self.staged.len() as u64;
        self.unsynced_bytes += self.buf.len() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        self.buf.clear();
        self.appended = self.next_lsn - 1;
        let appended = self.appended;
        self.shared
            .progress
            .send_modify(|p| p.marks.appended = appended);
        for staged in self.staged.drain(..) {
            let _ = staged.reply.send(Ok(staged.lsn));
        }
        Ok(())
    }

    /// The staged batch could not be written for lack of space (`err`): cuts the segment back
    /// to `active.len` and fsyncs it, fails every staged record with `err`, gives their LSNs
    /// back and lets go of what their compaction copies held. Records written before stay
    /// and are now synced. Fails (fatally) only if the cut does.
    fn refuse_staged(&mut self, err: StoreError) -> Result<(), StoreError> {
        disk::cut(
            &self.active.file,
            &self.active.path,
            self.active.len,
            &self.shared.faults,
        )?;
        self.buf.clear();
        self.next_lsn = self.appended + 1;
        self.ran_out_of_space(&err);
        // The cut's fsync covered every record before the batch; published before the
        // refusals, so that a refused appender already sees them synced.
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.mark_synced();
        let mut deletions = Vec::new();
        {
            let mut space = self.shared.space();
            for origin in self.staged.iter().filter_map(|s| s.origin_segment) {
                deletions.extend(space.release_hold(origin, self.active.first_lsn));
            }
        }
        for staged in self.staged.drain(..) {
            let _ = staged.reply.send(Err(err.clone()));
        }
        for first_lsn in deletions {
            self.delete(first_lsn)?;
        }
        Ok(())
    }

    /// Counts a write or create that failed for lack of space, which fences off the records
    /// submitted before it, and logs the change from writing to refusing.
    fn ran_out_of_space(&mut self, err: &StoreError) {
        self.shared.failed_batches.fetch_add(1, Ordering::Relaxed);
        if !self.out_of_space {
            self.out_of_space = true;
            warn!(dir = %self.shared.dir.display(), %err,
                "journal out of space: records are refused until space is freed");
        }
    }

    /// The error for a record refused for lack of space without being written.
    fn no_space(&self, op: IoOp) -> StoreError {
        StoreError::DiskFull {
            op,
            path: self.active.path.clone(),
        }
    }

    /// Everything appended is fsynced: advances `synced`.
    fn mark_synced(&mut self) {
        self.synced = self.appended;
        self.unsynced_since = None;
        self.unsynced_bytes = 0;
        self.after_sync = true;
        let synced = self.synced;
        self.shared
            .progress
            .send_modify(|p| p.marks.synced = synced);
    }

    /// Flushes, then fsyncs if anything is unsynced, and advances `synced`.
    fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        disk::sync(&self.active.file, &self.active.path, &self.shared.faults)?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.mark_synced();
        Ok(())
    }

    /// Seals the active segment (fsynced whole, so recovery may treat damage in it as an
    /// error) and starts the next one at `next_lsn`.
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let (file, path) =
            disk::create_segment(&self.shared.dir, self.next_lsn, &self.shared.faults)?;
        let sealed = self.active.first_lsn;
        let delete = {
            let mut space = self.shared.space();
            let delete = space.seal(sealed);
            space.insert(Segment::new(self.next_lsn, path.clone()));
            delete
        };
        self.active = Active {
            file,
            path,
            first_lsn: self.next_lsn,
            len: crate::segment::SEGMENT_HEADER_LEN,
            records: 0,
        };
        self.after_sync = true;
        if let Some(first_lsn) = delete {
            self.delete(first_lsn)?;
        }
        Ok(())
    }

    /// Deletes a segment marked for deletion, then any segment its orphan copies held.
    fn delete(&mut self, first_lsn: Lsn) -> Result<(), StoreError> {
        let mut queue = vec![first_lsn];
        while let Some(first_lsn) = queue.pop() {
            let Some(path) = self.shared.space().begin_delete(first_lsn) else {
                continue;
            };
            disk::remove_segment(&self.shared.dir, &path)?;
            let freed = self.shared.space().remove(first_lsn);
            queue.extend(freed);
        }
        Ok(())
    }
}
