//! Recovery: torn tails, holes in unsynced data, corruption in synced data, torn creates.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use common::*;
use ferromq_store::{Corruption, JournalConfig, Store, StoreError};

const PAYLOAD: usize = 50;
const RECORD: u64 = record_len(PAYLOAD);

/// Offset of the `k`th record (1-based) in a segment of equal records.
fn offset_of(k: u64) -> u64 {
    SEGMENT_HEADER + (k - 1) * RECORD
}

/// Writes `n` records, each fsynced before the next is appended, and closes.
async fn write_synced(cfg: &JournalConfig, n: u64) {
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=n {
        let lsn = journal.append(0, payload(i, PAYLOAD)).await.unwrap();
        journal.wait_synced(lsn).await.unwrap();
    }
    journal.close().await.unwrap();
}

fn last_segment(cfg: &JournalConfig) -> PathBuf {
    segment_files(&cfg.dir).pop().expect("a segment")
}

fn big_segments(dir: &std::path::Path) -> JournalConfig {
    let mut cfg = config(dir);
    cfg.segment_size_max_bytes = 1 << 20;
    cfg
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_appends_continue() {
    // Each way a crash (or a full disk) can leave the end of the last segment.
    // Each gets a valid record's bytes, standing for a record being written.
    type Tail = fn(&[u8]) -> Vec<u8>;
    let cases: [(&str, Tail); 4] = [
        ("garbage", |_| vec![0xFF; 100]),
        ("zeros", |_| vec![0; 4096]),
        ("partial header", |valid| valid[..20].to_vec()),
        ("partial body", |valid| {
            valid[..RECORD as usize - 3].to_vec()
        }),
    ];
    for (name, tail) in cases {
        let dir = TempDir::new("torn-tail");
        let cfg = big_segments(dir.path());
        write_synced(&cfg, 20).await;
        let path = last_segment(&cfg);
        let bytes = fs::read(&path).unwrap();
        let clean_len = bytes.len() as u64;
        let first_record = &bytes[SEGMENT_HEADER as usize..(SEGMENT_HEADER + RECORD) as usize];
        let junk = tail(first_record);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&junk)
            .unwrap();

        let (journal, recovered, recovery) = open(cfg.clone());
        assert_eq!(recovered.len(), 20, "{name}");
        let truncated = recovery.truncated.expect(name);
        assert_eq!(
            (truncated.path, truncated.offset, truncated.bytes),
            (path.clone(), clean_len, junk.len() as u64),
            "{name}"
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), clean_len);
        for i in 21..=25 {
            assert_eq!(
                journal.append(0, payload(i, PAYLOAD)).await.unwrap(),
                i,
                "{name}"
            );
        }
        journal.close().await.unwrap();

        let (journal, recovered, recovery) = open(cfg);
        assert_eq!(recovered.len(), 25, "{name}");
        assert_eq!(recovery.truncated, None, "{name}");
        for (i, r) in recovered.iter().enumerate() {
            assert_eq!(r.payload, payload(i as u64 + 1, PAYLOAD), "{name}");
        }
        journal.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_hole_in_an_unsynced_batch_is_truncated_not_reported() {
    let dir = TempDir::new("unsynced-hole");
    let mut cfg = big_segments(dir.path());
    cfg.sync_delay_max_us = 1_000_000; // one fsync for the whole batch, at close
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=10 {
        journal.append(0, payload(i, PAYLOAD)).await.unwrap();
    }
    journal.close().await.unwrap();

    // A crash during the fsync persisted pages out of order: record 5 never made it.
    let path = last_segment(&cfg);
    let mut bytes = fs::read(&path).unwrap();
    let at = offset_of(5) as usize;
    bytes[at..at + RECORD as usize].fill(0);
    fs::write(&path, &bytes).unwrap();

    let (journal, recovered, recovery) = open(cfg);
    assert_eq!(recovered.len(), 4);
    assert_eq!(recovery.truncated.unwrap().offset, offset_of(5));
    assert_eq!(journal.append(0, payload(5, PAYLOAD)).await.unwrap(), 5);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn damage_followed_by_later_synced_data_is_an_error() {
    let dir = TempDir::new("synced-damage");
    let cfg = big_segments(dir.path());
    write_synced(&cfg, 10).await;
    let path = last_segment(&cfg);
    let mut bytes = fs::read(&path).unwrap();
    bytes[offset_of(5) as usize + 30] ^= 0x04; // a payload bit of record 5
    fs::write(&path, &bytes).unwrap();

    match try_open(cfg) {
        Err(StoreError::Corrupt {
            path: p,
            offset,
            reason,
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, offset_of(5));
            assert_eq!(reason, Corruption::BadChecksum);
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened despite damage in synced data"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing truncated");
}

#[tokio::test]
async fn damage_in_a_sealed_segment_is_an_error() {
    let dir = TempDir::new("sealed-damage");
    let cfg = config(dir.path()); // 4 KiB segments hold 53 records
    write_synced(&cfg, 60).await;
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    // Cut the sealed segment's last record short.
    let len = fs::metadata(&files[0]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    match try_open(cfg) {
        Err(StoreError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, files[0]);
            assert_eq!(offset, len - RECORD);
            assert_eq!(reason, Corruption::Truncated);
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|(_, r, _)| r.len())),
    }
}

/// A tiny deterministic generator, so the test needs no seed plumbing.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test]
async fn bit_flips_anywhere_restore_a_clean_prefix_or_name_the_damage() {
    let dir = TempDir::new("bit-flips");
    let cfg = config(dir.path());
    let total = 140u64; // three segments, the last one partly filled
    write_synced(&cfg, total).await;
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3);
    let pristine: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let per_segment = (4096 - SEGMENT_HEADER) / RECORD;

    let mut rng = Lcg(0x5eed);
    let last = files.len() - 1;
    let last_record = pristine[last].len() as u64 - RECORD;
    // Random bytes anywhere, plus some in the last record, the only place where damage is
    // a torn tail rather than rot (every record here was fsynced before the next was written).
    let mut flips: Vec<(usize, u64)> = (0..150)
        .map(|_| {
            let seg = rng.next(files.len() as u64) as usize;
            (seg, rng.next(pristine[seg].len() as u64))
        })
        .collect();
    flips.extend((0..10).map(|_| (last, last_record + rng.next(RECORD))));
    let (mut errors, mut truncations) = (0, 0);
    for (seg, at) in flips {
        for (file, bytes) in files.iter().zip(&pristine) {
            fs::write(file, bytes).unwrap();
        }
        let mut damaged = pristine[seg].clone();
        damaged[at as usize] ^= 1 << rng.next(8);
        fs::write(&files[seg], &damaged).unwrap();

        // Records wholly before the flipped byte must survive.
        let before_segment = seg as u64 * per_segment;
        let intact = before_segment + at.saturating_sub(SEGMENT_HEADER) / RECORD;
        match try_open(cfg.clone()) {
            Ok((journal, recovered, recovery)) => {
                truncations += 1;
                assert_eq!(seg, last, "damage in a sealed segment accepted (byte {at})");
                assert!(
                    recovered.len() as u64 >= intact,
                    "lost records before byte {at}"
                );
                assert!(
                    recovery.truncated.is_some(),
                    "byte {at} flipped but nothing truncated"
                );
                for (i, r) in recovered.iter().enumerate() {
                    assert_eq!(r.lsn, i as u64 + 1);
                    assert_eq!(
                        r.payload,
                        payload(i as u64 + 1, PAYLOAD),
                        "corrupted payload returned"
                    );
                }
                journal.close().await.unwrap();
            }
            Err(StoreError::Corrupt { path, offset, .. }) => {
                errors += 1;
                assert_eq!(path, files[seg]);
                assert!(offset <= at, "damage at byte {at} reported at {offset}");
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert!(
        errors > 0 && truncations > 0,
        "{errors} errors, {truncations} truncations"
    );
}

#[tokio::test]
async fn a_torn_segment_create_is_removed() {
    for torn in [&b""[..], &b"FMQJ\x01"[..]] {
        let dir = TempDir::new("torn-create");
        let cfg = config(dir.path());
        write_synced(&cfg, 3).await;
        fs::write(dir.path().join(format!("{:020}.seg", 4)), torn).unwrap();
        fs::write(dir.path().join("README"), b"not a segment").unwrap();
        let (journal, recovered, _) = open(cfg.clone());
        assert_eq!(recovered.len(), 3);
        assert_eq!(journal.append(0, payload(4, PAYLOAD)).await.unwrap(), 4);
        journal.close().await.unwrap();
        let (journal, recovered, _) = open(cfg);
        assert_eq!(recovered.len(), 4);
        journal.close().await.unwrap();
        assert!(
            dir.path().join("README").exists(),
            "foreign files are left alone"
        );
    }
}
