//! Compaction: re-append the live records of sparse sealed segments, then let the emptied
//! segments be deleted.
//!
//! 1. Pin the sealed, unheld segments whose live bytes are below
//!    `compaction_live_percent_max` (pinned segments are not deleted under our feet), and
//!    snapshot which of their records are live.
//! 2. For each, read it on the blocking pool and re-append its live records through the
//!    ordinary append queue, flagged MOVED with their old LSN as origin, so that compaction
//!    is throttled by the same backpressure as producers. Copies are born dead, as orphans
//!    that hold their original's segment (see `Space`).
//! 3. Wait until the copies are synced.
//! 4. Under the space lock, adopt each copy: it becomes live and its original is released;
//!    or, if the caller released the original meanwhile, it stays dead as a ghost. Unpin.
//!    This is the last step, with no await after it, so a caller that sees the future
//!    complete always gets the mapping. The writer then deletes the emptied segments, in
//!    order with the appends queued after them.
//!
//! Crash safety rests on one rule of recovery: a copy is skipped while its origin is on
//! disk. Before the originals' segments are deleted a crash leaves both, and the originals
//! win. A copy that is never adopted (an error, or a cancelled `compact`) holds its
//! original's segment for as long as the copy is on disk, and held segments are not
//! compacted, so an original never disappears before its orphan copies do.
//!
//! A cancelled run may leave copies in the queue. It leaves a barrier behind them, and the
//! next run waits for it, so that no copy of an earlier run lands during a later one.

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Corruption, IoOp, StoreError};
use crate::journal::Journal;
use crate::record::{Copied, Lsn};
use crate::segment::{Opened, Scanner, Step};
use crate::space::{Adoption, Candidate};
use crate::store::Moved;
use crate::watermark::{self, Watermark};
use crate::writer::Command;

/// Runs one compaction. A call while another runs returns an empty list at once.
pub(crate) async fn compact(journal: &Journal) -> Result<Vec<Moved>, StoreError> {
    if journal.compacting.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let mut run = Run {
        journal,
        candidates: Vec::new(),
        finished: false,
    };
    let fence = journal.compaction_fence().take();
    if let Some(earlier_copies_landed) = fence {
        let _ = earlier_copies_landed.await;
    }
    let percent = journal.compaction_live_percent_max;
    run.candidates = journal.shared().space().pin_candidates(percent);
    let mut moves = Vec::new();
    let copied = copy_live(journal, &run.candidates, &mut moves).await;
    let (result, deletions) = finish(journal, &run.candidates, moves, copied);
    run.finished = true;
    drop(run);
    // No await from here on: a caller that is handed the adoptions must get the mapping.
    for first_lsn in deletions {
        journal.command(Command::Delete(first_lsn));
    }
    result
}

/// One compaction in progress. Dropped unfinished (the `compact` future was cancelled), it
/// unpins its candidates and fences off the copies it queued, which stay unadopted orphans.
/// Either way it clears the "compaction running" flag.
struct Run<'a> {
    journal: &'a Journal,
    candidates: Vec<Candidate>,
    finished: bool,
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let deletions = self
                .journal
                .shared()
                .space()
                .end_compaction(&self.candidates);
            for first_lsn in deletions {
                self.journal.command(Command::Delete(first_lsn));
            }
            let (tx, rx) = oneshot::channel();
            if self.journal.command(Command::Barrier(tx)) {
                *self.journal.compaction_fence() = Some(rx);
            }
        }
        self.journal.compacting.store(false, Ordering::SeqCst);
    }
}

/// Copies the live records of every candidate, pushing each (old, new) that got an LSN to
/// `moves`, and waits until they are synced.
async fn copy_live(
    journal: &Journal,
    candidates: &[Candidate],
    moves: &mut Vec<(Lsn, Lsn)>,
) -> Result<(), StoreError> {
    for candidate in candidates {
        let path = candidate.path.clone();
        let first_lsn = candidate.first_lsn;
        let live = candidate.live.clone();
        let records = tokio::task::spawn_blocking(move || read_live(&path, first_lsn, &live))
            .await
            .map_err(|join| {
                StoreError::io(IoOp::Read, &candidate.path, std::io::Error::other(join))
            })??;
        let mut pending = Vec::with_capacity(records.len());
        let mut outcome = Ok(());
        for (origin, kind, payload) in records {
            let old = origin.origin;
            match journal.enqueue(kind, payload, Some(origin), None).await {
                Ok(rx) => pending.push((old, rx)),
                Err(err) => {
                    outcome = Err(err);
                    break;
                }
            }
        }
        // Collect every copy that was written, even after an error, so it can be released.
        for (old, rx) in pending {
            match journal.appended(rx).await {
                Ok(new) => moves.push((old, new)),
                Err(err) => outcome = outcome.and(Err(err)),
            }
        }
        outcome?;
    }
    if let Some(&(_, last)) = moves.last() {
        watermark::wait_for(
            journal.shared().progress.subscribe(),
            last,
            Watermark::Synced,
        )
        .await?;
    }
    Ok(())
}

/// Reads a sealed segment and returns its records that were live in the snapshot.
fn read_live(
    path: &Path,
    first_lsn: Lsn,
    live: &[bool],
) -> Result<Vec<(Copied, u8, Bytes)>, StoreError> {
    let mut scanner = match Scanner::open(path, first_lsn)? {
        Opened::Ok(scanner) => scanner,
        Opened::BadHeader { .. } => {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: Corruption::BadSegmentHeader,
            })
        }
    };
    let mut out = Vec::new();
    loop {
        match scanner.step()? {
            Step::Record(r) => {
                let index = (r.lsn - first_lsn) as usize;
                if live.get(index).copied().unwrap_or(false) {
                    // A copy of a copy keeps the LSN the record was first written at.
                    let first = r.origin.map_or(r.lsn, |c| c.first);
                    let origin = Copied {
                        origin: r.lsn,
                        first,
                    };
                    out.push((origin, r.kind, r.payload));
                }
            }
            Step::End => return Ok(out),
            Step::Damaged { offset, reason } => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason,
                })
            }
        }
    }
}

/// Applies the outcome to the space map; returns the result and the segments to delete.
fn finish(
    journal: &Journal,
    candidates: &[Candidate],
    moves: Vec<(Lsn, Lsn)>,
    copied: Result<(), StoreError>,
) -> (Result<Vec<Moved>, StoreError>, Vec<Lsn>) {
    let mut deletions = Vec::new();
    let mut space = journal.shared().space();
    let result = match copied {
        Ok(()) => {
            let mut out = Vec::with_capacity(moves.len());
            for (old, new) in moves {
                match space.adopt(old, new) {
                    Adoption::Live { delete } => {
                        deletions.extend(delete);
                        out.push(Moved { old, new });
                    }
                    // The caller released `old` meanwhile; `contains(old)` follows the ghost.
                    Adoption::Ghost => {}
                    Adoption::Refused => {
                        tracing::error!(old, new, "compaction copy is not an orphan of its origin");
                    }
                }
            }
            Ok(out)
        }
        Err(err) => {
            // Copies already written stay dead orphans holding their originals' segments;
            // recovery skips them while the originals are on disk, which is as long as the
            // copies are.
            tracing::warn!(dir = %journal.dir().display(), %err, "compaction abandoned");
            Err(err)
        }
    };
    deletions.extend(space.end_compaction(candidates));
    (result, deletions)
}
