//! Opening a journal directory: segments are read in LSN order, every record verified and
//! handed to the caller, a torn tail truncated, anything else damaged reported.
//!
//! Rules (also in the README):
//! - Damage in a sealed (non-last) segment is an error: sealed segments were fsynced whole
//!   before the next one was created.
//! - Damage in the last segment is a torn tail, truncated at the damaged record and logged,
//!   unless a valid record flagged `AFTER_SYNC` follows it: that record was written after
//!   the damaged bytes had been fsynced, so they were durable and have rotted. That is an
//!   error naming the file and offset. Valid records *without* the flag after the damage are
//!   part of the same unsynced batch (a crash may persist its pages out of order) and are
//!   dropped with it.
//! - A last segment shorter than its header (a torn create) is removed.
//! - A compaction copy whose original is still on disk (a crash between copying and
//!   deleting the original) is skipped, so the caller sees each record once.
//! - Records are handed over in the order they were first written, not the order they lie
//!   on disk: a compaction copy comes at its first LSN's place, so a caller replaying its
//!   history never sees, say, a message before the declaration of its queue that
//!   compaction moved past it. Hence two passes: the first verifies every segment, cuts a
//!   torn tail, and notes where the copies are (32 bytes each); the second reads the
//!   segments again in order and slips each copy in (read from its offset) before the
//!   first record written after its first LSN.

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use tracing::{debug, warn};

use crate::config::JournalConfig;
use crate::disk;
use crate::error::{Corruption, IoOp, StoreError};
use crate::record::{Lsn, Record};
use crate::segment::{self, Opened, Scanner, Step, SEGMENT_HEADER_LEN};
use crate::space::{Segment, Space};

/// What recovery found, returned by [`Journal::open`](crate::Journal::open).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Records handed to the caller.
    pub records: u64,
    /// Segment files kept.
    pub segments: usize,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
    /// Highest epoch among the records handed over; compare with the configured epoch.
    pub epoch_max: Option<u64>,
    /// Compaction copies skipped because their original was still on disk.
    pub duplicates_skipped: u64,
    /// The torn tail cut off the last segment, if any.
    pub truncated: Option<Truncation>,
}

/// A torn tail removed from the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Where the first bad record started; the file now ends here.
    pub offset: u64,
    /// Bytes removed.
    pub bytes: u64,
}

/// The last segment, opened for appending and fsynced.
pub(crate) struct Tail {
    pub file: File,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub len: u64,
    pub records: u64,
}

pub(crate) struct Recovered {
    pub space: Space,
    pub tail: Option<Tail>,
    pub next_lsn: Lsn,
    pub report: Recovery,
}

pub(crate) fn recover(
    config: &JournalConfig,
    on_record: &mut dyn FnMut(Record),
) -> Result<Recovered, StoreError> {
    let dir = &config.dir;
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(IoOp::Create, dir, e))?;
        // Make the new directory's own name durable, not just the files that will be in it.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            disk::sync_dir(parent)?;
        }
    }
    let names = list_segments(dir)?;

    let mut space = Space::default();
    let mut report = Recovery::default();
    // The segments kept, and the copies to hand over at their first LSN's place.
    let mut kept: Vec<(Lsn, PathBuf)> = Vec::with_capacity(names.len());
    let mut copies: Vec<PendingCopy> = Vec::new();
    let mut next_lsn: Lsn = 1;
    let mut tail = None;
    for (i, (name_lsn, path)) in names.iter().enumerate() {
        let (name_lsn, is_last) = (*name_lsn, i + 1 == names.len());
        if name_lsn < next_lsn {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: Corruption::SegmentOverlap {
                    expected_at_least: next_lsn,
                    found: name_lsn,
                },
            });
        }
        let mut scanner = match Scanner::open(path, name_lsn)? {
            Opened::Ok(scanner) => scanner,
            Opened::BadHeader { file_len } if is_last && file_len <= SEGMENT_HEADER_LEN => {
                warn!(file = %path.display(), file_len, "removing a segment whose creation was torn");
                disk::remove_segment(dir, path)?;
                next_lsn = name_lsn;
                break;
            }
            Opened::BadHeader { .. } => {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: Corruption::BadSegmentHeader,
                })
            }
        };

        let mut seg = Segment::new(name_lsn, path.clone());
        let end = loop {
            match scanner.step()? {
                Step::Record(r) => {
                    // Sizes are below 2^31: checked against record_payload_max_bytes.
                    let size = r.len as u32;
                    // A copy whose original is still on disk: the compaction that wrote it did
                    // not finish. Keep the original; the copy stays dead and holds it.
                    if let Some(origin_segment) = r.origin.and_then(|c| space.hold_origin(c.origin))
                    {
                        seg.add_orphan(origin_segment);
                        seg.push(size, false);
                        report.duplicates_skipped += 1;
                        continue;
                    }
                    seg.push(size, true);
                    report.records += 1;
                    report.epoch_max = report.epoch_max.max(Some(r.epoch));
                    if let Some(c) = r.origin {
                        copies.push(PendingCopy {
                            first: c.first,
                            lsn: r.lsn,
                            segment: kept.len(),
                            offset: r.offset,
                        });
                    }
                }
                Step::End => break scanner.file_len(),
                Step::Damaged { offset, reason } => {
                    let corrupt = StoreError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason,
                    };
                    if !is_last {
                        return Err(corrupt);
                    }
                    if let Some(synced_at) = scanner.find_synced_after(offset)? {
                        warn!(file = %path.display(), offset, synced_at,
                            "damaged record is followed by data written after it was fsynced");
                        return Err(corrupt);
                    }
                    let bytes = scanner.file_len() - offset;
                    warn!(file = %path.display(), offset, bytes, %corrupt,
                        "truncating the torn tail of the last segment");
                    truncate(path, offset)?;
                    report.truncated = Some(Truncation {
                        path: path.clone(),
                        offset,
                        bytes,
                    });
                    break offset;
                }
            }
        };
        next_lsn = scanner.next_lsn();
        if is_last {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| StoreError::io(IoOp::Open, path, e))?;
            // Records of a crashed run may be readable from the page cache yet unsynced; the
            // next record's AFTER_SYNC flag must not vouch for them.
            disk::sync(&file, path, &config.faults)?;
            tail = Some(Tail {
                file,
                path: path.clone(),
                first_lsn: name_lsn,
                len: end,
                records: next_lsn - name_lsn,
            });
        } else {
            seg.seal();
        }
        space.insert(seg);
        kept.push((name_lsn, path.clone()));
        report.segments += 1;
    }
    report.next_lsn = next_lsn;
    replay(&kept, copies, on_record)?;
    Ok(Recovered {
        space,
        tail,
        next_lsn,
        report,
    })
}

/// Where a compaction copy lies, and the LSN it was first written at.
struct PendingCopy {
    first: Lsn,
    lsn: Lsn,
    /// Index into the kept segments.
    segment: usize,
    offset: u64,
}

/// The second pass: hands every record of the verified `segments` to `on_record` in the
/// order of first LSNs. Copies skipped as duplicates in the first pass are not in `copies`
/// and are skipped again here with every other copy met in place.
fn replay(
    segments: &[(Lsn, PathBuf)],
    mut copies: Vec<PendingCopy>,
    on_record: &mut dyn FnMut(Record),
) -> Result<(), StoreError> {
    copies.sort_unstable_by_key(|c| c.first);
    let mut copies = copies.into_iter().peekable();
    let mut reader = segment::SegmentReader::default();
    let mut read_copy = |c: PendingCopy| -> Result<Record, StoreError> {
        let (first_lsn, path) = &segments[c.segment];
        reader.read(*first_lsn, path, c.lsn, c.offset)
    };
    for (first_lsn, path) in segments {
        let mut scanner = match Scanner::open(path, *first_lsn)? {
            Opened::Ok(scanner) => scanner,
            Opened::BadHeader { .. } => return Err(changed(path, 0)),
        };
        loop {
            match scanner.step()? {
                Step::Record(r) if r.origin.is_some() => {}
                Step::Record(r) => {
                    while let Some(c) = copies.next_if(|c| c.first < r.lsn) {
                        on_record(read_copy(c)?);
                    }
                    on_record(Record {
                        lsn: r.lsn,
                        epoch: r.epoch,
                        kind: r.kind,
                        payload: r.payload,
                        offset: r.offset,
                    });
                }
                Step::End => break,
                Step::Damaged { offset, .. } => return Err(changed(path, offset)),
            }
        }
    }
    for c in copies {
        on_record(read_copy(c)?);
    }
    Ok(())
}

/// A segment verified by the first pass reads differently in the second: something else
/// writes to the journal directory.
fn changed(path: &std::path::Path, offset: u64) -> StoreError {
    StoreError::io(
        IoOp::Read,
        path,
        std::io::Error::other(format!(
            "segment changed while the journal was being opened (at offset {offset}); is another process using the directory?"
        )),
    )
}

/// Segment files in the directory, in LSN order. Other files are left alone.
fn list_segments(dir: &std::path::Path) -> Result<Vec<(Lsn, PathBuf)>, StoreError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io(IoOp::ReadDir, dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(IoOp::ReadDir, dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(segment::parse_file_name) {
            Some(lsn) => names.push((lsn, entry.path())),
            None => debug!(file = ?name, "ignoring a file that is not a segment"),
        }
    }
    names.sort_unstable_by_key(|(lsn, _)| *lsn);
    Ok(names)
}

fn truncate(path: &std::path::Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(IoOp::Open, path, e))?;
    file.set_len(len)
        .map_err(|e| StoreError::io(IoOp::Truncate, path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io(IoOp::Sync, path, e))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::record::{self, Encode};

    /// Recovery streams: a million small records pass through the callback one at a time,
    /// and the journal keeps 4 bytes of bookkeeping for each.
    #[test]
    fn recovers_a_million_small_records_streaming() {
        let dir =
            std::env::temp_dir().join(format!("ferromq-store-million-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let total: u64 = 1_000_000;
        let mut file = fs::File::create(dir.join(segment::file_name(1))).unwrap();
        file.write_all(&segment::encode_header(1)).unwrap();
        let mut buf = Vec::with_capacity(1 << 20);
        for lsn in 1..=total {
            let payload = lsn.to_le_bytes();
            let r = Encode {
                lsn,
                epoch: 1,
                kind: 0,
                after_sync: false,
                origin: None,
                payload: &payload,
            };
            record::encode(&mut buf, &r);
            if buf.len() >= 1 << 20 {
                file.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        file.write_all(&buf).unwrap();
        drop(file);

        let mut config = JournalConfig::new(&dir);
        config.segment_size_max_bytes = 1 << 30;
        let (mut count, mut expected) = (0u64, 1u64);
        let recovered = recover(&config, &mut |r: Record| {
            assert_eq!(r.lsn, expected);
            assert_eq!(r.payload.as_ref(), &expected.to_le_bytes());
            expected += 1;
            count += 1;
        })
        .unwrap();
        assert_eq!(count, total);
        assert_eq!(recovered.next_lsn, total + 1);
        assert_eq!(recovered.space.totals().live_records, total);
        let _ = fs::remove_dir_all(&dir);
    }
}
