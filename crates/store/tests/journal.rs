//! Appending, watermarks, group commit, rotation and reopening.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ferromq_store::{Store, StoreError, Watermark};

#[tokio::test]
async fn round_trip_append_and_recover() {
    let dir = TempDir::new("round-trip");
    let (journal, recovered, recovery) = open(config(dir.path()));
    assert!(recovered.is_empty());
    assert_eq!(recovery.next_lsn, 1);

    let mut expected = Vec::new();
    for i in 0..100u64 {
        let len = (i as usize * 7) % 300;
        let p = if len == 0 {
            Bytes::new()
        } else {
            payload(i, len)
        };
        let lsn = journal.append((i % 5) as u8, p.clone()).await.unwrap();
        assert_eq!(lsn, i + 1, "LSNs start at 1 and have no gaps");
        expected.push((lsn, (i % 5) as u8, p));
    }
    journal.wait_synced(100).await.unwrap();
    journal.close().await.unwrap();

    let (journal, recovered, recovery) = open(config(dir.path()));
    let got: Vec<_> = recovered
        .iter()
        .map(|r| (r.lsn, r.kind, r.payload.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(recovery.records, 100);
    assert_eq!(recovery.next_lsn, 101);
    assert_eq!(recovery.truncated, None);
    assert_eq!(
        journal.watermarks().synced,
        100,
        "recovered records count as synced"
    );
    journal.close().await.unwrap();
}

#[tokio::test]
async fn reopening_after_a_clean_close_continues_lsns_and_keeps_epochs() {
    let dir = TempDir::new("reopen");
    let mut cfg = config(dir.path());
    cfg.epoch = 7;
    let (journal, _, _) = open(cfg.clone());
    journal.append(1, payload(1, 10)).await.unwrap();
    journal.set_epoch(9).unwrap();
    assert!(matches!(
        journal.set_epoch(8),
        Err(StoreError::EpochRegressed {
            current: 9,
            requested: 8
        })
    ));
    journal.append(1, payload(2, 10)).await.unwrap();
    journal.close().await.unwrap();
    assert!(matches!(
        journal.append(1, Bytes::new()).await,
        Err(StoreError::Closed)
    ));

    cfg.epoch = 9;
    let (journal, recovered, recovery) = open(cfg.clone());
    let epochs: Vec<_> = recovered.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [7, 9]);
    assert_eq!(recovery.epoch_max, Some(9));
    assert_eq!(journal.append(1, payload(3, 10)).await.unwrap(), 3);
    journal.close().await.unwrap();

    let (journal, recovered, _) = open(cfg);
    assert_eq!(recovered.len(), 3);
    assert_eq!(recovered[2].epoch, 9);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn segments_rotate_with_sortable_names() {
    let dir = TempDir::new("rotation");
    let (journal, _, _) = open(config(dir.path()));
    for i in 1..=40 {
        journal.append(0, payload(i, 500)).await.unwrap();
    }
    // Larger than a segment: gets a segment of its own.
    let big = journal.append(0, payload(41, 10_000)).await.unwrap();
    let after = journal.append(0, payload(42, 10)).await.unwrap();
    journal.close().await.unwrap();

    let files = segment_files(dir.path());
    assert!(files.len() >= 7, "{files:?}");
    let (journal, recovered, _) = open(config(dir.path()));
    assert_eq!(recovered.len(), 42);
    let mut previous_first = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 24, "20 zero-padded digits + .seg: {name}");
        let first: u64 = name[..20].parse().unwrap();
        assert!(first > previous_first);
        previous_first = first;
        assert!(
            recovered.iter().any(|r| r.lsn == first),
            "{name} starts at a record"
        );
        let len = std::fs::metadata(file).unwrap().len();
        let holds_big = first == big;
        assert!(holds_big || len <= 4096, "{name} is {len} bytes");
    }
    assert!(files
        .iter()
        .any(|f| f.ends_with(format!("{after:020}.seg"))));
    journal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_syncs_many_appenders_with_few_fsyncs() {
    let dir = TempDir::new("group-commit");
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 1 << 20;
    cfg.sync_delay_max_us = 50_000;
    cfg.sync_batch_max_bytes = 10 * record_len(100);
    let (journal, _, _) = open(cfg);
    let journal = Arc::new(journal);

    let records = 200u64;
    let mut tasks = Vec::new();
    for i in 0..records {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let lsn = journal.append(0, payload(i, 100)).await?;
            journal.wait_synced(lsn).await?;
            Ok::<_, StoreError>(lsn)
        }));
    }
    let mut lsns = BTreeSet::new();
    for task in tasks {
        lsns.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(lsns, (1..=records).collect::<BTreeSet<_>>());
    let fsyncs = journal.stats().fsyncs;
    assert!(fsyncs >= 1);
    assert!(
        fsyncs < records / 2,
        "{fsyncs} fsyncs for {records} records"
    );
    journal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_watermark_is_ordered_and_never_ahead_of_appended() {
    let dir = TempDir::new("watermarks");
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 1 << 20;
    let (journal, _, _) = open(cfg);
    let journal = Arc::new(journal);
    let done = Arc::new(AtomicBool::new(false));

    let sampler = {
        let (journal, done) = (journal.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = journal.watermarks();
            while !done.load(Ordering::SeqCst) {
                let now = journal.watermarks();
                assert!(now.synced <= now.appended, "{now:?}");
                assert!(now.appended >= last.appended && now.synced >= last.synced);
                last = now;
                tokio::task::yield_now().await;
            }
        })
    };

    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..50 {
                let lsn = journal.append(0, payload(t * 100 + i, 20)).await.unwrap();
                if let Some(&previous) = mine.last() {
                    assert!(lsn > previous, "one task's appends keep their order");
                }
                journal.wait_for(lsn, Watermark::Appended).await.unwrap();
                journal.wait_synced(lsn).await.unwrap();
                let marks = journal.watermarks();
                assert!(marks.synced >= lsn && marks.appended >= marks.synced);
                mine.push(lsn);
            }
            mine
        }));
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(all, (1..=400).collect::<BTreeSet<_>>());
    journal.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_append_queue_slows_producers_without_deadlock() {
    let dir = TempDir::new("backpressure");
    let mut cfg = config(dir.path());
    cfg.append_queue_max_bytes = 256; // less than one record: each goes alone
    let (journal, _, _) = open(cfg.clone());
    let journal = Arc::new(journal);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            journal.append(0, payload(i, 1000)).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    journal.close().await.unwrap();
    let (journal, recovered, _) = open(cfg);
    assert_eq!(recovered.len(), 20);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn an_oversized_record_is_refused_alone() {
    let dir = TempDir::new("too-large");
    let mut cfg = config(dir.path());
    cfg.record_payload_max_bytes = 1000;
    let (journal, _, _) = open(cfg);
    let err = journal.append(0, payload(0, 1001)).await.unwrap_err();
    assert!(matches!(
        err,
        StoreError::RecordTooLarge {
            len: 1001,
            max: 1000
        }
    ));
    assert!(!err.is_fatal());
    assert_eq!(journal.append(0, payload(0, 1000)).await.unwrap(), 1);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn config_out_of_range_is_refused() {
    let dir = TempDir::new("config");
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 100;
    assert!(matches!(try_open(cfg), Err(StoreError::Config(_))));
    let mut cfg = config(dir.path());
    cfg.compaction_live_percent_max = 101;
    assert!(matches!(try_open(cfg), Err(StoreError::Config(_))));
}
