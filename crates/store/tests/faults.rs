//! Injected faults: failed fsyncs and writes, a full disk; and the in-memory store.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use ferromq_store::{FaultInjector, IoOp, MemStore, Store, StoreError, Watermark};

const PAYLOAD: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_fails_its_waiters_and_every_later_append() {
    let dir = TempDir::new("fsync-fails");
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 1 << 20;
    let faults = FaultInjector::new();
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    let journal = Arc::new(journal);
    let synced = journal.append(0, payload(1, PAYLOAD)).await.unwrap();
    journal.wait_synced(synced).await.unwrap();

    faults.fail_fsyncs(1);
    let mut tasks = Vec::new();
    for i in 2..=11 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let lsn = journal.append(0, payload(i, PAYLOAD)).await?;
            journal.wait_synced(lsn).await.map(|()| lsn)
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            Err(StoreError::Io { op: IoOp::Sync, .. }) => {}
            other => panic!("a record was confirmed despite the failed fsync: {other:?}"),
        }
    }
    assert_eq!(journal.watermarks().synced, synced);
    let err = journal.append(0, payload(12, PAYLOAD)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Io { op: IoOp::Sync, .. }),
        "{err}"
    );
    assert!(err.is_fatal());
    assert!(
        journal.wait_for(synced, Watermark::Synced).await.is_ok(),
        "synced before the fault"
    );
    assert!(journal.close().await.is_err());

    // Reopened, the journal works; what was synced is there.
    faults.clear();
    let (journal, recovered, _) = open(cfg);
    assert_eq!(recovered[0].payload, payload(1, PAYLOAD));
    let lsn = journal.append(0, payload(99, PAYLOAD)).await.unwrap();
    journal.wait_synced(lsn).await.unwrap();
    journal.close().await.unwrap();
}

/// The length of the journal's only segment file.
fn segment_len(dir: &std::path::Path) -> u64 {
    let files = segment_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::metadata(&files[0]).unwrap().len()
}

#[tokio::test]
async fn a_full_disk_fails_the_batch_and_the_journal_carries_on_once_space_is_freed() {
    let dir = TempDir::new("enospc");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 1 << 20;
    // Records stay appended but unsynced until the cut fsyncs them.
    cfg.sync_delay_max_us = 1_000_000;
    cfg.sync_batch_max_bytes = 1 << 20;
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=10 {
        assert_eq!(journal.append(0, payload(i, PAYLOAD)).await.unwrap(), i);
    }
    let good_len = segment_len(dir.path());
    let good = journal.stats();

    // A run of records submitted back to back: the writer batches them, writes half of the
    // buffer (whole records among it) and gets ENOSPC.
    faults.set_disk_full(true);
    let mut tickets = Vec::new();
    for i in 11..=16 {
        tickets.push(journal.submit(0, payload(i, PAYLOAD)).await.unwrap());
    }
    for ticket in tickets {
        let err = journal.submitted(ticket).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::DiskFull {
                    op: IoOp::Write,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_fatal());
        assert!(err.to_string().contains("disk full"), "{err}");
    }
    assert_eq!(segment_len(dir.path()), good_len, "the torn batch was cut");
    let marks = journal.watermarks();
    assert_eq!(
        (marks.appended, marks.synced),
        (10, 10),
        "the cut was fsynced"
    );
    let stats = journal.stats();
    assert_eq!(
        (
            stats.records,
            stats.live_records,
            stats.live_bytes,
            stats.disk_bytes
        ),
        (
            good.records,
            good.live_records,
            good.live_bytes,
            good.disk_bytes
        ),
        "nothing counted for the records that were cut"
    );

    // Still full: refused again. Space freed: the same journal takes the next records, at
    // the LSNs the failed ones gave back.
    assert!(journal.append(0, payload(11, PAYLOAD)).await.is_err());
    faults.set_disk_full(false);
    for i in 11..=12 {
        assert_eq!(journal.append(0, payload(i, PAYLOAD)).await.unwrap(), i);
    }
    journal.wait_synced(12).await.unwrap();
    journal.close().await.unwrap();

    // Exactly the good records, in sequence, and no torn tail to cut.
    let (journal, recovered, recovery) = open(cfg);
    let lsns: Vec<u64> = recovered.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, (1..=12).collect::<Vec<_>>());
    for r in &recovered {
        assert_eq!(r.payload, payload(r.lsn, PAYLOAD));
    }
    assert!(recovery.truncated.is_none(), "{:?}", recovery.truncated);
    assert_eq!(journal.append(0, payload(13, PAYLOAD)).await.unwrap(), 13);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn a_fenced_run_lands_as_a_prefix() {
    let dir = TempDir::new("enospc-fence");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    let fence = journal.fence();
    let first = journal.submit_fenced(0, payload(1, PAYLOAD), fence).await;
    assert_eq!(journal.submitted(first.unwrap()).await.unwrap(), 1);
    faults.set_disk_full(true);
    let second = journal.submit_fenced(0, payload(2, PAYLOAD), fence).await;
    assert!(journal.submitted(second.unwrap()).await.is_err());
    faults.set_disk_full(false);
    // Space is back, but the run already lost a record: the rest of it is refused unwritten.
    let third = journal.submit_fenced(0, payload(3, PAYLOAD), fence).await;
    let err = journal.submitted(third.unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
    // A new run, and plain appends, are written.
    let fresh = journal
        .submit_fenced(0, payload(4, PAYLOAD), journal.fence())
        .await;
    assert_eq!(journal.submitted(fresh.unwrap()).await.unwrap(), 2);
    assert_eq!(journal.append(0, payload(5, PAYLOAD)).await.unwrap(), 3);
    journal.close().await.unwrap();
    let (_, recovered, _) = open(cfg);
    let payloads: Vec<_> = recovered.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(
        payloads,
        [
            payload(1, PAYLOAD),
            payload(4, PAYLOAD),
            payload(5, PAYLOAD)
        ]
    );
}

#[tokio::test]
async fn a_full_disk_while_rotating_fails_the_record_and_rotation_is_tried_again() {
    let dir = TempDir::new("enospc-rotate");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=3 {
        journal.append(0, payload(i, 1000)).await.unwrap();
    }
    faults.set_disk_full(true);
    // The fourth record needs a new segment, which cannot be created.
    let err = journal.append(0, payload(4, 1000)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::DiskFull {
                op: IoOp::Create,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        journal.watermarks().synced,
        3,
        "the full segment was synced first"
    );
    assert_eq!(segment_files(dir.path()).len(), 1, "no stray segment file");
    faults.set_disk_full(false);
    assert_eq!(journal.append(0, payload(4, 1000)).await.unwrap(), 4);
    assert_eq!(journal.stats().segments, 2);
    journal.close().await.unwrap();
    let (_, recovered, recovery) = open(cfg);
    assert_eq!(recovered.len(), 4);
    assert!(recovery.truncated.is_none());
}

#[tokio::test]
async fn a_failed_fsync_of_the_cut_is_fatal() {
    let dir = TempDir::new("enospc-cut-fsync");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    journal.append(0, payload(1, PAYLOAD)).await.unwrap();
    journal.wait_synced(1).await.unwrap();
    faults.set_disk_full(true);
    faults.fail_fsyncs(1);
    let err = journal.append(0, payload(2, PAYLOAD)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Io { op: IoOp::Sync, .. }),
        "{err}"
    );
    faults.clear();
    let again = journal.append(0, payload(2, PAYLOAD)).await.unwrap_err();
    assert!(again.is_fatal(), "{again}");
    drop(journal);
    let (_, recovered, _) = open(cfg);
    assert_eq!(recovered.len(), 1);
}

#[tokio::test]
async fn a_failed_write_is_fatal() {
    let dir = TempDir::new("eio");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg);
    faults.fail_writes(1);
    let err = journal.append(0, payload(1, PAYLOAD)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Io {
                op: IoOp::Write,
                ..
            }
        ),
        "{err}"
    );
    assert!(journal.append(0, payload(2, PAYLOAD)).await.is_err());
}

#[tokio::test]
async fn mem_store_behaves_like_a_journal() {
    let faults = FaultInjector::new();
    let store = MemStore::with_faults(faults.clone());
    let a = store.append(1, Bytes::from_static(b"a")).await.unwrap();
    let b = store.append(2, Bytes::from_static(b"b")).await.unwrap();
    assert_eq!((a, b), (1, 2));
    store.wait_synced(b).await.unwrap();
    assert!(store.release(a) && !store.release(a));
    assert!(!store.contains(a) && store.contains(b));
    assert_eq!(store.records().len(), 1);
    store.set_epoch(3).unwrap();
    let c = store.append(1, Bytes::new()).await.unwrap();
    assert_eq!(store.records().last().unwrap().epoch, 3);

    faults.fail_fsyncs(1);
    let d = store.append(1, Bytes::new()).await.unwrap();
    assert!(store.wait_synced(c).await.is_ok());
    assert!(matches!(
        store.wait_synced(d).await,
        Err(StoreError::Io { op: IoOp::Sync, .. })
    ));
    assert!(store.append(1, Bytes::new()).await.is_err());

    let faults = FaultInjector::new();
    let full = MemStore::with_faults(faults.clone());
    faults.set_disk_full(true);
    let err = full.append(0, Bytes::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }) && !err.is_fatal());
    faults.set_disk_full(false);
    assert_eq!(
        full.append(0, Bytes::new()).await.unwrap(),
        1,
        "no LSN taken"
    );
    full.close();
    assert!(matches!(
        full.append(0, Bytes::new()).await,
        Err(StoreError::Closed)
    ));
}
