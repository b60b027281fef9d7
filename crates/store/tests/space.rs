//! Space reclamation: deleting released segments, and compaction.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use common::*;
use ferromq_store::{FaultInjector, Journal, JournalConfig, Lsn, Store, StoreError};

const PAYLOAD: usize = 200;

/// 4 KiB segments (18 records each), and fsyncs batched over 2 ms so that filling a journal
/// with sequential appends costs a few fsyncs rather than one per record.
fn config(dir: &std::path::Path) -> JournalConfig {
    let mut config = common::config(dir);
    config.sync_delay_max_us = 2_000;
    config
}

/// Appends `n` synced records; returns the journal.
async fn filled(cfg: &JournalConfig, n: u64) -> Journal {
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=n {
        assert_eq!(journal.append(0, payload(i, PAYLOAD)).await.unwrap(), i);
    }
    journal.wait_synced(n).await.unwrap();
    journal
}

fn first_lsns(cfg: &JournalConfig) -> Vec<Lsn> {
    segment_files(&cfg.dir)
        .iter()
        .map(|f| {
            f.file_name().unwrap().to_str().unwrap()[..20]
                .parse()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_sealed_segment_is_deleted_once_all_its_records_are_released() {
    let dir = TempDir::new("delete");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 60).await; // 18 records a segment: 4 segments
    let firsts = first_lsns(&cfg);
    assert_eq!(firsts, [1, 19, 37, 55]);

    // All but one record of the first segment: it stays.
    for lsn in 1..18 {
        assert!(journal.release(lsn));
    }
    assert!(!journal.release(1), "double release");
    assert!(!journal.release(1000), "never appended");
    // Everything of the second, and the active segment: the second goes, the active stays.
    for lsn in (19..37).chain(55..=60) {
        assert!(journal.release(lsn));
    }
    journal.close().await.unwrap(); // the writer handles deletions in order, then closes
    assert_eq!(first_lsns(&cfg), [1, 37, 55]);
    assert!(
        journal.contains(18) && journal.contains(1),
        "released but on disk"
    );
    assert!(!journal.contains(19), "its segment is gone");
    assert_eq!(journal.stats().segments, 3);

    // Releases are not persisted: what is on disk comes back.
    let (journal, recovered, _) = open(cfg.clone());
    let lsns: Vec<_> = recovered.iter().map(|r| r.lsn).collect();
    let expected: Vec<Lsn> = (1..=18).chain(37..=60).collect();
    assert_eq!(lsns, expected);
    for lsn in 1..=18 {
        journal.release(lsn);
    }
    journal.close().await.unwrap();
    assert_eq!(first_lsns(&cfg), [37, 55]);
}

#[tokio::test]
async fn compaction_shrinks_disk_use_and_reports_where_live_records_went() {
    let dir = TempDir::new("compact");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 100).await;
    // Keep one record in five.
    let kept: Vec<Lsn> = (1..=100).filter(|lsn| lsn % 5 == 0).collect();
    for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
        assert!(journal.release(lsn));
    }
    let before = disk_bytes(dir.path());
    assert_eq!(journal.stats().disk_bytes, before);

    let moved = journal.compact().await.unwrap();
    assert!(!moved.is_empty());
    assert_eq!(journal.stats().live_records, kept.len() as u64);

    let mapping: HashMap<Lsn, Lsn> = moved.iter().map(|m| (m.old, m.new)).collect();
    for m in &moved {
        assert!(m.new > 100, "copies are new appends");
        assert!(journal.contains(m.old), "old LSNs forward to their copy");
    }
    // A record of the active segment is not moved.
    assert!(!mapping.contains_key(&100));
    // Release through the old LSN works until the next compaction.
    let (&old, &new) = mapping.iter().next().unwrap();
    assert!(journal.release(old));
    assert!(
        !journal.release(new),
        "already released through its old LSN"
    );
    journal.close().await.unwrap(); // the writer deletes the emptied segments first
    let after = disk_bytes(dir.path());
    assert_eq!(journal.stats().disk_bytes, after);
    assert!(after * 2 < before, "disk use {before} -> {after}");

    let (journal, recovered, _) = open(cfg);
    let by_lsn: BTreeMap<Lsn, _> = recovered
        .iter()
        .map(|r| (r.lsn, r.payload.clone()))
        .collect();
    for &lsn in &kept {
        let now = mapping.get(&lsn).copied().unwrap_or(lsn);
        assert_eq!(
            by_lsn.get(&now),
            Some(&payload(lsn, PAYLOAD)),
            "record {lsn} at {now}"
        );
        let copies = recovered
            .iter()
            .filter(|r| r.payload == payload(lsn, PAYLOAD))
            .count();
        assert_eq!(copies, 1, "record {lsn} recovered once");
    }
    // Released records of compacted segments are gone from disk for good.
    for lsn in (1..=90).filter(|lsn| lsn % 5 != 0) {
        assert!(
            recovered.iter().all(|r| r.payload != payload(lsn, PAYLOAD)),
            "{lsn}"
        );
    }
    journal.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_between_copying_and_deleting_recovers_each_record_once() {
    let dir = TempDir::new("compact-crash");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 100).await;
    for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
        journal.release(lsn);
    }
    let snapshot: Vec<_> = segment_files(dir.path())
        .into_iter()
        .map(|f| {
            let bytes = fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect();
    let moved = journal.compact().await.unwrap();
    journal.close().await.unwrap();

    // The crash: the copies are synced but the originals were never deleted.
    for (file, bytes) in &snapshot {
        if !file.exists() {
            fs::write(file, bytes).unwrap();
        }
    }
    let (journal, recovered, recovery) = open(cfg.clone());
    assert_eq!(recovery.duplicates_skipped, moved.len() as u64);
    for lsn in (1..=100).filter(|lsn| lsn % 5 == 0) {
        let found: Vec<_> = recovered
            .iter()
            .filter(|r| r.payload == payload(lsn, PAYLOAD))
            .collect();
        assert_eq!(found.len(), 1, "record {lsn}");
        assert_eq!(found[0].lsn, lsn, "the original wins");
    }

    // The orphan copies keep the originals on disk until the copies are gone, so a later
    // recovery can never mistake them for live records.
    for r in &recovered {
        journal.release(r.lsn);
    }
    journal.close().await.unwrap();
    let (journal, recovered, _) = open(cfg);
    for lsn in (1..=100).filter(|lsn| lsn % 5 == 0) {
        let copies = recovered
            .iter()
            .filter(|r| r.payload == payload(lsn, PAYLOAD))
            .count();
        assert!(copies <= 1, "record {lsn} came back {copies} times");
        if copies == 1 {
            let r = recovered
                .iter()
                .find(|r| r.payload == payload(lsn, PAYLOAD))
                .unwrap();
            assert_eq!(r.lsn, lsn, "only as the original, never as an orphan copy");
        }
    }
    journal.close().await.unwrap();
}

#[tokio::test]
async fn compaction_without_sparse_segments_moves_nothing() {
    let dir = TempDir::new("compact-nothing");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 60).await;
    for lsn in 1..=3 {
        journal.release(lsn);
    }
    assert!(journal.compact().await.unwrap().is_empty());
    assert_eq!(journal.stats().live_records, 57);
    journal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_compaction_leaves_a_consistent_journal() {
    // Cancel after more and more polls, so the cut falls at each await of the compaction:
    // pinning, reading, queueing copies, waiting for them to be written and synced.
    for polls in [0usize, 1, 2, 3, 4, 6, 8, 12, 16, 24] {
        let dir = TempDir::new("compact-cancel");
        let cfg = config(dir.path());
        let journal = filled(&cfg, 100).await;
        let kept: Vec<Lsn> = (1..=100).filter(|lsn| lsn % 5 == 0).collect();
        for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
            journal.release(lsn);
        }
        let mut moved = Vec::new();
        {
            let mut compaction = Box::pin(journal.compact());
            for _ in 0..polls {
                let polled =
                    std::future::poll_fn(|cx| Poll::Ready(compaction.as_mut().poll(cx))).await;
                if let Poll::Ready(result) = polled {
                    moved = result.unwrap(); // not cancelled after all
                    break;
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
        moved.extend(journal.compact().await.unwrap());
        let mapping: HashMap<Lsn, Lsn> = moved.iter().map(|m| (m.old, m.new)).collect();
        assert_eq!(
            journal.stats().live_records,
            kept.len() as u64,
            "after {polls} polls"
        );
        journal.close().await.unwrap();

        let (journal, recovered, _) = open(cfg);
        for &lsn in &kept {
            let found: Vec<_> = recovered
                .iter()
                .filter(|r| r.payload == payload(lsn, PAYLOAD))
                .collect();
            assert_eq!(found.len(), 1, "record {lsn} after {polls} polls");
            let at = found[0].lsn;
            assert!(
                at == lsn || mapping.get(&lsn) == Some(&at),
                "record {lsn} at {at}"
            );
        }
        journal.close().await.unwrap();
    }
}

#[tokio::test]
async fn recovered_records_read_back_from_their_offsets_even_after_compaction() {
    let dir = TempDir::new("read-back");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 100).await;
    for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
        assert!(journal.release(lsn));
    }
    let moved = journal.compact().await.unwrap();
    assert!(!moved.is_empty(), "some records are compaction copies");
    journal.close().await.unwrap();

    let (journal, recovered, _) = open(cfg.clone());
    assert!(!recovered.is_empty());
    for r in &recovered {
        let back = journal.read_back(r.lsn, r.offset).unwrap();
        assert_eq!(&back, r, "record {} at offset {}", r.lsn, r.offset);
    }
    // Reading in reverse switches segments each time; the cache must not mix them up.
    for r in recovered.iter().rev() {
        assert_eq!(
            journal.read_back(r.lsn, r.offset).unwrap().payload,
            r.payload
        );
    }
    // A wrong offset or an LSN on no segment is an error, not a wrong record.
    let r = &recovered[recovered.len() / 2];
    assert!(journal.read_back(r.lsn, r.offset + 1).is_err());
    assert!(matches!(
        journal.read_back(10_000, 64),
        Err(StoreError::NotFound { lsn: 10_000 })
    ));
    journal.close().await.unwrap();

    // A bit flipped in a record's payload after recovery is reported with file and offset.
    let (journal, recovered, _) = open(cfg.clone());
    let r = recovered.last().unwrap().clone();
    let path = segment_files(dir.path())
        .into_iter()
        .rev()
        .find(|p| {
            let first: Lsn = p.file_name().unwrap().to_str().unwrap()[..20]
                .parse()
                .unwrap();
            first <= r.lsn
        })
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Past the 26-byte header: inside the payload.
    let at = r.offset as usize + 30;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match journal.read_back(r.lsn, r.offset) {
        Err(StoreError::Corrupt {
            path: p,
            offset,
            reason: ferromq_store::Corruption::BadChecksum,
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, r.offset);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    journal.close().await.unwrap();
}

/// The index a test payload names.
fn index_of(payload: &[u8]) -> u64 {
    std::str::from_utf8(&payload[7..15])
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn recovery_hands_records_over_in_the_order_they_were_first_written() {
    let dir = TempDir::new("first-order");
    let cfg = config(dir.path());
    let journal = filled(&cfg, 100).await;
    // Keep one record in five, move them with a compaction, then write more after them.
    for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
        assert!(journal.release(lsn));
    }
    let first: HashMap<Lsn, Lsn> = journal
        .compact()
        .await
        .unwrap()
        .iter()
        .map(|m| (m.new, m.old))
        .collect();
    assert!(!first.is_empty());
    // Release half of the copies too.
    for (&new, &old) in &first {
        if old % 10 != 0 {
            assert!(journal.release(new));
        }
    }
    // More records after the copies, most of them released, so that the copies' segments
    // are sparse and the next compaction copies copies.
    for i in 101..=160 {
        let lsn = journal.append(0, payload(i, PAYLOAD)).await.unwrap();
        journal.wait_synced(lsn).await.unwrap();
        if i % 3 != 0 {
            assert!(journal.release(lsn));
        }
    }
    let again = journal.compact().await.unwrap();
    assert!(
        again.iter().any(|m| first.contains_key(&m.old)),
        "the second compaction copies some copies"
    );
    journal.close().await.unwrap();

    let (journal, recovered, _) = open(cfg);
    let order: Vec<u64> = recovered.iter().map(|r| index_of(&r.payload)).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        order, sorted,
        "records come in first-written order, each once"
    );
    assert!(
        order.contains(&10) && !order.contains(&5) && order.contains(&100) && order.contains(&102)
    );
    // Read back from where they lie now, copies included.
    for r in &recovered {
        assert_eq!(&journal.read_back(r.lsn, r.offset).unwrap(), r);
    }
    journal.close().await.unwrap();
}

#[tokio::test]
async fn a_compaction_that_finds_no_space_gives_up_cleanly_and_the_next_one_works() {
    let dir = TempDir::new("compact-enospc");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.faults = faults.clone();
    let journal = filled(&cfg, 100).await;
    let kept: Vec<Lsn> = (1..=100).filter(|lsn| lsn % 5 == 0).collect();
    for lsn in (1..=100).filter(|lsn| lsn % 5 != 0) {
        assert!(journal.release(lsn));
    }
    let before = journal.stats();
    let active_first: Lsn = segment_files(dir.path())
        .last()
        .and_then(|p| p.file_stem()?.to_str()?.parse().ok())
        .unwrap();

    faults.set_disk_full(true);
    let err = journal.compact().await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    assert!(!err.is_fatal());
    let after = journal.stats();
    assert_eq!(
        (after.records, after.live_records, after.segments),
        (before.records, before.live_records, before.segments),
        "no copy was written and nothing was deleted"
    );

    // The copies that were refused hold nothing: the same segments compact now.
    faults.set_disk_full(false);
    let moved = journal.compact().await.unwrap();
    let mapping: HashMap<Lsn, Lsn> = moved.iter().map(|m| (m.old, m.new)).collect();
    for lsn in kept.iter().filter(|&&lsn| lsn < active_first) {
        assert!(
            mapping.contains_key(lsn),
            "record {lsn} of a sparse segment moved"
        );
    }
    journal.close().await.unwrap();
    assert!(journal.stats().segments < before.segments);

    let (journal, recovered, recovery) = open(cfg);
    assert!(recovery.truncated.is_none());
    for &lsn in &kept {
        let now = mapping.get(&lsn).copied().unwrap_or(lsn);
        let copies: Vec<Lsn> = recovered
            .iter()
            .filter(|r| r.payload == payload(lsn, PAYLOAD))
            .map(|r| r.lsn)
            .collect();
        assert_eq!(copies, [now], "record {lsn} recovered once, at {now}");
    }
    journal.close().await.unwrap();
}
