//! Segment files: names, the 20-byte header, and a sequential scanner over the records.
//!
//! ```text
//! name:   {first_lsn:020}.seg         (zero-padded, so names sort in LSN order)
//! offset  size  field
//!  0      4     magic       b"FMQJ"
//!  4      2     version     u16 LE = 1
//!  6      2     reserved    u16, must be 0
//!  8      8     first_lsn   u64 LE, equal to the one in the name
//! 16      4     crc32c      u32 LE of bytes 0..16
//! 20      ...   records, back to back (see `record.rs`)
//! ```
//!
//! # Invariants
//! - The records of a segment have consecutive LSNs starting at `first_lsn`.
//! - A segment's LSNs are all below the next segment's `first_lsn`.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{Corruption, IoOp, StoreError};
use crate::limits;
use crate::record::{self, Header, Lsn, Record, HEADER_LEN};

/// Bytes of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 20;
const MAGIC: &[u8; 4] = b"FMQJ";
const VERSION: u16 = 1;
const SUFFIX: &str = ".seg";
const NAME_DIGITS: usize = 20;

/// The file name of the segment whose first record has `first_lsn`.
pub(crate) fn file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SUFFIX}")
}

/// The first LSN encoded in a segment file name, if `name` is one.
pub(crate) fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0; SEGMENT_HEADER_LEN as usize];
    h[0..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first LSN in a valid header.
pub(crate) fn decode_header(h: &[u8; SEGMENT_HEADER_LEN as usize]) -> Option<Lsn> {
    let crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    let valid = &h[0..4] == MAGIC
        && h[4..6] == VERSION.to_le_bytes()
        && h[6..8] == [0, 0]
        && crc == crc32c::crc32c(&h[0..16]);
    valid.then(|| {
        let mut lsn = [0; 8];
        lsn.copy_from_slice(&h[8..16]);
        u64::from_le_bytes(lsn)
    })
}

/// One verified record, as a scan yields it.
pub(crate) struct Scanned {
    /// Where it starts in the file.
    pub offset: u64,
    /// Encoded size, header included.
    pub len: u64,
    pub lsn: Lsn,
    pub epoch: u64,
    pub kind: u8,
    /// For compaction copies, where they came from.
    pub origin: Option<record::Copied>,
    pub payload: Bytes,
}

/// What the scanner found next.
pub(crate) enum Step {
    Record(Scanned),
    /// Clean end of file.
    End,
    /// Damaged bytes start at `offset`.
    Damaged {
        offset: u64,
        reason: Corruption,
    },
}

/// Reads a segment's records in order, verifying each. Reads through one buffer of
/// [`limits::SCAN_BUFFER_BYTES`]; a record's body is allocated only after its declared length
/// has been checked against the bytes left in the file.
pub(crate) struct Scanner {
    reader: BufReader<File>,
    path: PathBuf,
    file_len: u64,
    offset: u64,
    next_lsn: Lsn,
    body_max: u64,
    damaged: bool,
}

/// Result of opening a segment for scanning.
pub(crate) enum Opened {
    Ok(Scanner),
    /// The file is shorter than a header or the header is invalid.
    BadHeader {
        file_len: u64,
    },
}

impl Scanner {
    /// Opens `path` and checks its header against `name_lsn` from its file name.
    ///
    /// Records are accepted up to [`limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT`], not the configured
    /// maximum: lowering the configuration must not turn old records into damage.
    pub(crate) fn open(path: &Path, name_lsn: Lsn) -> Result<Opened, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::io(IoOp::Open, path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| StoreError::io(IoOp::Read, path, e))?
            .len();
        let mut reader = BufReader::with_capacity(limits::SCAN_BUFFER_BYTES, file);
        if file_len < SEGMENT_HEADER_LEN {
            return Ok(Opened::BadHeader { file_len });
        }
        let mut h = [0; SEGMENT_HEADER_LEN as usize];
        reader
            .read_exact(&mut h)
            .map_err(|e| StoreError::io(IoOp::Read, path, e))?;
        let Some(first_lsn) = decode_header(&h) else {
            return Ok(Opened::BadHeader { file_len });
        };
        if first_lsn != name_lsn {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: Corruption::SegmentNameMismatch {
                    name_lsn,
                    header_lsn: first_lsn,
                },
            });
        }
        Ok(Opened::Ok(Scanner {
            reader,
            path: path.to_path_buf(),
            file_len,
            offset: SEGMENT_HEADER_LEN,
            next_lsn: first_lsn,
            body_max: record::body_max(limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT),
            damaged: false,
        }))
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The LSN the next record must carry.
    pub(crate) fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The next record, the end, or the first damage; after damage, always that damage.
    pub(crate) fn step(&mut self) -> Result<Step, StoreError> {
        let offset = self.offset;
        let remaining = self.file_len - offset;
        if remaining == 0 {
            return Ok(Step::End);
        }
        let damaged = |reason| Ok(Step::Damaged { offset, reason });
        if self.damaged || remaining < HEADER_LEN as u64 {
            self.damaged = true;
            return damaged(Corruption::Truncated);
        }
        let mut raw = [0; HEADER_LEN];
        self.read(&mut raw)?;
        let header = Header::parse(&raw);
        if let Err(reason) = header.precheck(self.body_max, remaining) {
            self.damaged = true;
            return damaged(reason);
        }
        let mut body = vec![0; header.body_len as usize];
        self.read(&mut body)?;
        let origin = match header.verify(&raw, &body) {
            Ok(origin) => origin,
            Err(reason) => {
                self.damaged = true;
                return damaged(reason);
            }
        };
        if header.lsn != self.next_lsn {
            self.damaged = true;
            return damaged(Corruption::LsnOutOfOrder {
                expected: self.next_lsn,
                found: header.lsn,
            });
        }
        let len = header.encoded_len();
        self.offset += len;
        self.next_lsn += 1;
        Ok(Step::Record(Scanned {
            offset,
            len,
            lsn: header.lsn,
            epoch: header.epoch,
            kind: header.kind,
            origin,
            payload: record::payload_of(Bytes::from(body), &header),
        }))
    }

    /// Reads the rest of the file from the damage at `offset` and looks for a record written
    /// after the damaged bytes were fsynced (see [`record::find_synced_record`]). The rest is
    /// at most one segment plus one record.
    pub(crate) fn find_synced_after(&mut self, offset: u64) -> Result<Option<u64>, StoreError> {
        use std::io::{Seek, SeekFrom};
        let path = self.path.clone();
        let file = self.reader.get_mut();
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| StoreError::io(IoOp::Read, &path, e))?;
        let mut rest = Vec::with_capacity((self.file_len - offset) as usize);
        file.take(self.file_len - offset)
            .read_to_end(&mut rest)
            .map_err(|e| StoreError::io(IoOp::Read, &path, e))?;
        Ok(record::find_synced_record(
            &rest,
            offset,
            self.next_lsn,
            self.body_max,
        ))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.reader
            .read_exact(buf)
            .map_err(|e| StoreError::io(IoOp::Read, &self.path, e))
    }
}

/// Reads records at known offsets, keeping the segment file it read last open (callers read
/// runs of records from one segment).
#[derive(Debug, Default)]
pub(crate) struct SegmentReader {
    /// The open segment's first LSN, file and length.
    open: Option<(Lsn, File, u64)>,
}

impl SegmentReader {
    /// The record `lsn` at `offset` of the segment whose first LSN is `first_lsn`, in `path`.
    pub(crate) fn read(
        &mut self,
        first_lsn: Lsn,
        path: &Path,
        lsn: Lsn,
        offset: u64,
    ) -> Result<Record, StoreError> {
        if self.open.as_ref().map(|o| o.0) != Some(first_lsn) {
            let file = File::open(path).map_err(|e| StoreError::io(IoOp::Open, path, e))?;
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(IoOp::Read, path, e))?
                .len();
            self.open = Some((first_lsn, file, len));
        }
        let (_, file, len) = self.open.as_ref().expect("opened above");
        read_at(file, path, *len, lsn, offset)
    }
}

/// Reads the record `lsn` that starts at `offset` of the segment `file` (`file_len` bytes
/// long), checking its length bound, CRC and LSN as a scan would.
fn read_at(
    file: &File,
    path: &Path,
    file_len: u64,
    lsn: Lsn,
    offset: u64,
) -> Result<Record, StoreError> {
    use std::os::unix::fs::FileExt;
    let corrupt = |reason| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let remaining = file_len.saturating_sub(offset);
    if offset < SEGMENT_HEADER_LEN || remaining < HEADER_LEN as u64 {
        return Err(corrupt(Corruption::Truncated));
    }
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| StoreError::io(IoOp::Read, path, e))
    };
    let mut raw = [0; HEADER_LEN];
    read(&mut raw, offset)?;
    let header = Header::parse(&raw);
    let body_max = record::body_max(limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT);
    header.precheck(body_max, remaining).map_err(corrupt)?;
    let mut body = vec![0; header.body_len as usize];
    read(&mut body, offset + HEADER_LEN as u64)?;
    header.verify(&raw, &body).map_err(corrupt)?;
    if header.lsn != lsn {
        return Err(corrupt(Corruption::LsnOutOfOrder {
            expected: lsn,
            found: header.lsn,
        }));
    }
    Ok(Record {
        lsn,
        epoch: header.epoch,
        kind: header.kind,
        payload: record::payload_of(Bytes::from(body), &header),
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_numerically() {
        let mut names: Vec<String> = [10, 9, 1_000_000, 0, u64::MAX].map(file_name).to_vec();
        names.sort();
        let lsns: Vec<_> = names.iter().map(|n| parse_file_name(n).unwrap()).collect();
        assert_eq!(lsns, [0, 9, 10, 1_000_000, u64::MAX]);
        assert_eq!(file_name(42), "00000000000000000042.seg");
    }

    #[test]
    fn rejects_foreign_names() {
        for name in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.tmp",
            "",
        ] {
            assert_eq!(parse_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(77);
        assert_eq!(decode_header(&h), Some(77));
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert_eq!(decode_header(&bad), None, "byte {i}");
        }
    }
}
