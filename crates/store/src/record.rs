//! The record format: encoding, header parsing and verification. No I/O.
//!
//! ```text
//! offset  size  field
//!  0      4     body_len   u32 LE: bytes after this 26-byte header
//!  4      4     crc32c     u32 LE, over bytes 0..4, then 8..26, then the body
//!  8      8     lsn        u64 LE
//! 16      8     epoch      u64 LE
//! 24      1     kind       u8, the caller's
//! 25      1     flags      u8: 0x01 MOVED, 0x02 AFTER_SYNC, 0x04 FIRST; others must be 0
//! 26      8     origin     u64 LE, only if MOVED: the LSN this record is a copy of
//! 34      8     first      u64 LE, only if FIRST (set only with MOVED, for a copy of a
//!                          copy): the LSN the record was first written at
//! 26/34/42 n    payload
//! ```
//!
//! A copy's *first* LSN (its `first` field, else its origin) is where the record belongs in
//! the history its writer wrote: recovery hands copies over at that place.
//!
//! `AFTER_SYNC` marks the first record written after an fsync: every byte before it in its
//! segment was durable when it was written. Recovery uses it to tell damage in synced data
//! (an error) from holes in an unsynced tail (truncated).

use bytes::Bytes;

use crate::error::Corruption;

/// Log sequence number: the position of a record in the journal. The first record is 1;
/// 0 means "none" in watermarks.
pub type Lsn = u64;

/// One record as appended and as yielded by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its log sequence number.
    pub lsn: Lsn,
    /// Epoch of the writer that wrote it (for compaction copies: the writer that copied it).
    pub epoch: u64,
    /// The caller's record type; opaque to the store.
    pub kind: u8,
    /// The caller's bytes; opaque to the store.
    pub payload: Bytes,
    /// Where the record starts in its segment file, as recovery found it: with the LSN, what
    /// [`Journal::read_back`](crate::Journal::read_back) needs. 0 from the in-memory store.
    pub offset: u64,
}

/// Bytes of the fixed header.
pub(crate) const HEADER_LEN: usize = 26;
/// Bytes of the origin field of a moved record.
pub(crate) const ORIGIN_LEN: usize = 8;
/// The record is a compaction copy; an origin LSN precedes the payload.
pub(crate) const FLAG_MOVED: u8 = 0x01;
/// The first record written after an fsync (see the module docs).
pub(crate) const FLAG_AFTER_SYNC: u8 = 0x02;
/// A copy of a copy; the LSN it was first written at follows the origin.
pub(crate) const FLAG_FIRST: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_MOVED | FLAG_AFTER_SYNC | FLAG_FIRST;

/// Encoded size of a record with a payload of `payload_len` bytes: a copy (`moved`) has an
/// origin field, a copy of a copy (`chained`) a first-LSN field too.
pub(crate) fn encoded_len(payload_len: usize, moved: bool, chained: bool) -> usize {
    HEADER_LEN + prefix_len(moved, chained) + payload_len
}

fn prefix_len(moved: bool, chained: bool) -> usize {
    match (moved, chained) {
        (false, _) => 0,
        (true, false) => ORIGIN_LEN,
        (true, true) => 2 * ORIGIN_LEN,
    }
}

/// Largest valid `body_len` for a payload maximum.
pub(crate) fn body_max(payload_max: u32) -> u64 {
    u64::from(payload_max) + 2 * ORIGIN_LEN as u64
}

/// Where a compaction copy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Copied {
    /// The LSN it is a copy of.
    pub origin: Lsn,
    /// The LSN the record was first written at (`origin` unless that was a copy too).
    pub first: Lsn,
}

/// What to write: everything but the CRC and length, which `encode` computes.
pub(crate) struct Encode<'a> {
    pub lsn: Lsn,
    pub epoch: u64,
    pub kind: u8,
    pub after_sync: bool,
    pub origin: Option<Copied>,
    pub payload: &'a [u8],
}

/// Appends the encoded record to `out`. The caller has checked the payload against
/// `record_payload_max_bytes`, which keeps `body_len` within `u32`.
pub(crate) fn encode(out: &mut Vec<u8>, r: &Encode<'_>) {
    let start = out.len();
    let chained = r.origin.is_some_and(|c| c.first != c.origin);
    let body_len = r.payload.len() + prefix_len(r.origin.is_some(), chained);
    let mut flags = 0;
    if r.origin.is_some() {
        flags |= FLAG_MOVED;
    }
    if chained {
        flags |= FLAG_FIRST;
    }
    if r.after_sync {
        flags |= FLAG_AFTER_SYNC;
    }
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&r.lsn.to_le_bytes());
    out.extend_from_slice(&r.epoch.to_le_bytes());
    out.push(r.kind);
    out.push(flags);
    if let Some(c) = r.origin {
        out.extend_from_slice(&c.origin.to_le_bytes());
        if chained {
            out.extend_from_slice(&c.first.to_le_bytes());
        }
    }
    out.extend_from_slice(r.payload);
    let crc = checksum(&out[start..start + HEADER_LEN], &out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&header[0..4]);
    let crc = crc32c::crc32c_append(crc, &header[8..HEADER_LEN]);
    crc32c::crc32c_append(crc, body)
}

/// A parsed, not yet verified, record header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub body_len: u32,
    crc: u32,
    pub lsn: Lsn,
    pub epoch: u64,
    pub kind: u8,
    pub flags: u8,
}

impl Header {
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Header {
            body_len: u32_at(0),
            crc: u32_at(4),
            lsn: u64_at(8),
            epoch: u64_at(16),
            kind: b[24],
            flags: b[25],
        }
    }

    /// Whole record size, header included.
    pub(crate) fn encoded_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len)
    }

    pub(crate) fn after_sync(&self) -> bool {
        self.flags & FLAG_AFTER_SYNC != 0
    }

    /// Checks that can be made before the body is read, so that a damaged length never
    /// causes an allocation: known flags, and a length within `body_max` and `remaining`.
    pub(crate) fn precheck(&self, body_max: u64, remaining: u64) -> Result<(), Corruption> {
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(Corruption::BadFlags { flags: self.flags });
        }
        if u64::from(self.body_len) > body_max {
            return Err(Corruption::LengthTooLarge { len: self.body_len });
        }
        if self.encoded_len() > remaining {
            return Err(Corruption::Truncated);
        }
        Ok(())
    }

    /// Verifies the CRC over `header` (the raw bytes this was parsed from) and `body`, then
    /// reads where a moved record came from.
    pub(crate) fn verify(
        &self,
        header: &[u8; HEADER_LEN],
        body: &[u8],
    ) -> Result<Option<Copied>, Corruption> {
        if checksum(header, body) != self.crc {
            return Err(Corruption::BadChecksum);
        }
        let moved = self.flags & FLAG_MOVED != 0;
        let chained = self.flags & FLAG_FIRST != 0;
        // Covered by the CRC, so only a writer bug could produce these.
        let bad = Corruption::BadFlags { flags: self.flags };
        let lsn_at = |i: usize| {
            body.get(i..i + ORIGIN_LEN)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(bad.clone())
        };
        match (moved, chained) {
            (false, false) => Ok(None),
            (false, true) => Err(bad),
            (true, _) => {
                let origin = lsn_at(0)?;
                let first = if chained { lsn_at(ORIGIN_LEN)? } else { origin };
                if origin >= self.lsn || first > origin {
                    return Err(bad);
                }
                Ok(Some(Copied { origin, first }))
            }
        }
    }

    /// Bytes of the origin and first-LSN fields before the payload.
    pub(crate) fn prefix_len(&self) -> usize {
        prefix_len(self.flags & FLAG_MOVED != 0, self.flags & FLAG_FIRST != 0)
    }
}

/// The payload of a verified body whose header is `h`.
pub(crate) fn payload_of(body: Bytes, h: &Header) -> Bytes {
    body.slice(h.prefix_len()..)
}

/// Searches `bytes` (the rest of a segment after damage at `base`) for a valid record with
/// LSN at least `lsn_min` and the `AFTER_SYNC` flag. Returns its offset in the file.
///
/// Valid records without the flag are skipped whole: they may have been written in the same
/// unsynced batch as the damaged bytes, where a crash can persist later pages but not
/// earlier ones. One with the flag proves the damaged bytes had been fsynced.
pub(crate) fn find_synced_record(
    bytes: &[u8],
    base: u64,
    lsn_min: Lsn,
    body_max: u64,
) -> Option<u64> {
    // Damage is at bytes[0]; a record starting there is the damaged one.
    let lsn_max = lsn_min.saturating_add((bytes.len() / HEADER_LEN) as u64 + 1);
    let mut at = 1;
    while bytes.len().saturating_sub(at) >= HEADER_LEN {
        let mut raw = [0; HEADER_LEN];
        raw.copy_from_slice(&bytes[at..at + HEADER_LEN]);
        let header = Header::parse(&raw);
        let plausible = (lsn_min..=lsn_max).contains(&header.lsn)
            && header.precheck(body_max, (bytes.len() - at) as u64).is_ok();
        if plausible {
            let end = at + header.encoded_len() as usize;
            if header.verify(&raw, &bytes[at + HEADER_LEN..end]).is_ok() {
                if header.after_sync() {
                    return Some(base + at as u64);
                }
                at = end;
                continue;
            }
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(buf: &[u8], body_max: u64) -> Result<(Header, Option<Copied>, Vec<u8>), Corruption> {
        let raw: [u8; HEADER_LEN] = buf[..HEADER_LEN]
            .try_into()
            .map_err(|_| Corruption::Truncated)?;
        let h = Header::parse(&raw);
        h.precheck(body_max, buf.len() as u64)?;
        let body = &buf[HEADER_LEN..h.encoded_len() as usize];
        let origin = h.verify(&raw, body)?;
        Ok((h, origin, body[h.prefix_len()..].to_vec()))
    }

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        encode(
            &mut out,
            &Encode {
                lsn: 1,
                epoch: 2,
                kind: 3,
                after_sync: true,
                origin: None,
                payload: b"hi",
            },
        );
        let crc = u32::from_le_bytes(out[4..8].try_into().unwrap());
        let mut expected = vec![2, 0, 0, 0];
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 2]);
        expected.extend_from_slice(b"hi");
        assert_eq!(out, expected);
        let mut covered = out[0..4].to_vec();
        covered.extend_from_slice(&out[8..]);
        assert_eq!(crc, crc32c::crc32c(&covered));
    }

    proptest! {
        #[test]
        fn round_trip(
            lsn in 1u64..u64::MAX,
            epoch: u64,
            kind: u8,
            after_sync: bool,
            moved: bool,
            chained: bool,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let origin = moved.then_some(Copied {
                origin: lsn - 1,
                first: if chained { (lsn - 1) / 2 } else { lsn - 1 },
            });
            let chained = origin.is_some_and(|c| c.first != c.origin);
            let mut out = Vec::new();
            encode(&mut out, &Encode { lsn, epoch, kind, after_sync, origin, payload: &payload });
            prop_assert_eq!(out.len(), encoded_len(payload.len(), moved, chained));
            let (h, got_origin, got) = decode(&out, body_max(300)).unwrap();
            prop_assert_eq!((h.lsn, h.epoch, h.kind, h.after_sync()), (lsn, epoch, kind, after_sync));
            prop_assert_eq!(got_origin, origin);
            prop_assert_eq!(got, payload);
        }

        #[test]
        fn any_bit_flip_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            bit in 0usize..1000,
        ) {
            let mut out = Vec::new();
            encode(&mut out, &Encode { lsn: 7, epoch: 1, kind: 9, after_sync: false, origin: None, payload: &payload });
            let bit = bit % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&out, body_max(64)).is_err());
        }
    }

    #[test]
    fn finds_only_synced_records_after_damage() {
        let mut out = vec![0xAB; 5]; // damage
        encode(
            &mut out,
            &Encode {
                lsn: 5,
                epoch: 0,
                kind: 0,
                after_sync: false,
                origin: None,
                payload: b"x",
            },
        );
        assert_eq!(find_synced_record(&out, 100, 4, 64), None);
        let at = out.len();
        encode(
            &mut out,
            &Encode {
                lsn: 6,
                epoch: 0,
                kind: 0,
                after_sync: true,
                origin: None,
                payload: b"y",
            },
        );
        assert_eq!(find_synced_record(&out, 100, 4, 64), Some(100 + at as u64));
        // An LSN below the damaged position is stale data, not a successor.
        assert_eq!(find_synced_record(&out, 100, 7, 64), None);
    }
}
