//! The store's one error type, typed by blast radius: see [`StoreError::is_fatal`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The file operation that failed, for error messages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Creating the journal directory or a segment file.
    Create,
    /// Opening a file or directory.
    Open,
    /// Listing the journal directory.
    ReadDir,
    /// Reading a segment.
    Read,
    /// Writing records or a segment header.
    Write,
    /// fsync of a segment file.
    Sync,
    /// fsync of the journal directory after a create or delete.
    SyncDir,
    /// Truncating a torn tail.
    Truncate,
    /// Deleting a segment.
    Remove,
    /// Starting the writer thread.
    Spawn,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOp::Create => "create",
            IoOp::Open => "open",
            IoOp::ReadDir => "list",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "fsync",
            IoOp::SyncDir => "fsync directory",
            IoOp::Truncate => "truncate",
            IoOp::Remove => "remove",
            IoOp::Spawn => "start the writer thread for",
        })
    }
}

/// What was wrong with damaged bytes found in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The segment header's magic, version, reserved bits or checksum is wrong.
    BadSegmentHeader,
    /// The first LSN in the segment header differs from the one in the file name.
    SegmentNameMismatch {
        /// From the file name.
        name_lsn: u64,
        /// From the header.
        header_lsn: u64,
    },
    /// This segment's LSN range overlaps the previous segment's.
    SegmentOverlap {
        /// The previous segment's next LSN.
        expected_at_least: u64,
        /// This segment's first LSN.
        found: u64,
    },
    /// Fewer bytes remain than a record header, or than the length the header declares.
    Truncated,
    /// The declared length exceeds `record_payload_max_bytes` (plus the origin field).
    LengthTooLarge {
        /// The declared body length.
        len: u32,
    },
    /// The CRC32C does not match the bytes.
    BadChecksum,
    /// Unknown flag bits are set, or the origin of a moved record is not below its LSN.
    BadFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The record's LSN is not the one that follows the previous record.
    LsnOutOfOrder {
        /// The LSN the position requires.
        expected: u64,
        /// The LSN in the record.
        found: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::BadSegmentHeader => f.write_str("bad segment header"),
            Corruption::SegmentNameMismatch {
                name_lsn,
                header_lsn,
            } => write!(
                f,
                "file name says first LSN {name_lsn}, header says {header_lsn}"
            ),
            Corruption::SegmentOverlap {
                expected_at_least,
                found,
            } => write!(
                f,
                "segment starts at LSN {found}, overlapping the previous segment (next LSN {expected_at_least})"
            ),
            Corruption::Truncated => f.write_str("record truncated"),
            Corruption::LengthTooLarge { len } => {
                write!(f, "record length {len} exceeds the maximum")
            }
            Corruption::BadChecksum => f.write_str("CRC32C mismatch"),
            Corruption::BadFlags { flags } => write!(f, "invalid record flags {flags:#04x}"),
            Corruption::LsnOutOfOrder { expected, found } => {
                write!(f, "LSN {found} where {expected} was expected")
            }
        }
    }
}

/// Errors of the store.
///
/// Fatal errors ([`StoreError::is_fatal`]) leave the journal refusing every further append
/// with a clone of the same error until it is reopened; the others concern one call only
/// (or, for [`StoreError::DiskFull`], the records of one write; for [`StoreError::Corrupt`]
/// and [`StoreError::Config`] from `open`, the open).
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed. Fatal.
    #[error("journal I/O error: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A write of records or the create of a segment failed for lack of space (ENOSPC, or
    /// EDQUOT: a quota is full). Not fatal: the journal cut the segment back to its last
    /// good record, failed exactly the records of that write (and those submitted with a
    /// [`Fence`](crate::Fence) older than it), and tries later appends again, so they
    /// succeed once space is freed. Records appended before stay intact.
    #[error("journal disk full: {op} {path}: no space left for the record")]
    DiskFull {
        /// What was being done.
        op: IoOp,
        /// The file or directory.
        path: PathBuf,
    },
    /// Damaged data that may not be truncated away: in a sealed segment, or in the last
    /// segment followed by data written after the damaged bytes were fsynced. From `open`,
    /// nothing was opened; from `compact`, the segment is left as it is (and the next open
    /// will report it too).
    #[error("journal corrupt: {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record (or 0 for the segment header).
        offset: u64,
        /// What was wrong.
        reason: Corruption,
    },
    /// The payload is larger than `record_payload_max_bytes`. Only this append fails.
    #[error("record payload of {len} bytes exceeds record_payload_max_bytes ({max})")]
    RecordTooLarge {
        /// The payload length.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// `set_epoch` was asked to go backwards. Only this call fails.
    #[error("epoch {requested} is below the current epoch {current}")]
    EpochRegressed {
        /// The epoch in force.
        current: u64,
        /// The epoch asked for.
        requested: u64,
    },
    /// [`Journal::read_back`](crate::Journal::read_back) of a record no segment on disk
    /// holds. Only this call fails.
    #[error("no journal segment holds record {lsn}")]
    NotFound {
        /// The record asked for.
        lsn: u64,
    },
    /// A configuration value is out of range. Nothing was opened.
    #[error("invalid journal config: {0}")]
    Config(&'static str),
    /// The journal was closed. Fatal.
    #[error("journal is closed")]
    Closed,
}

impl StoreError {
    /// True when the journal accepts no more appends after this error and must be reopened.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::Closed)
    }

    /// Classifies an I/O error: lack of space while writing records or creating a segment
    /// becomes [`StoreError::DiskFull`]. Lack of space reported by anything else (an fsync
    /// on a thin-provisioned or network file system, say) stays a fatal
    /// [`StoreError::Io`]: see the journal's fault rules in `writer.rs`.
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, err: io::Error) -> Self {
        let path = path.into();
        if matches!(op, IoOp::Write | IoOp::Create) && is_no_space(&err) {
            StoreError::DiskFull { op, path }
        } else {
            StoreError::Io {
                op,
                path,
                source: Arc::new(err),
            }
        }
    }
}

/// ENOSPC is 28 on Linux, the BSDs and macOS. `io::ErrorKind::StorageFull` is newer than the
/// workspace's minimum Rust version.
pub(crate) const ENOSPC: i32 = 28;

/// EDQUOT (disk quota exceeded) on Linux: a full quota is a full disk for this user, and
/// freeing space cures it the same way.
const EDQUOT: i32 = 122;

fn is_no_space(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(ENOSPC | EDQUOT))
}
