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

#[tokio::test]
async fn a_full_disk_fails_appends_and_leaves_synced_data_intact() {
    let dir = TempDir::new("enospc");
    let faults = FaultInjector::new();
    let mut cfg = config(dir.path());
    cfg.segment_size_max_bytes = 1 << 20;
    cfg.faults = faults.clone();
    let (journal, _, _) = open(cfg.clone());
    for i in 1..=10 {
        journal.append(0, payload(i, PAYLOAD)).await.unwrap();
    }
    journal.wait_synced(10).await.unwrap();

    faults.set_disk_full(true);
    let err = journal.append(0, payload(11, PAYLOAD)).await.unwrap_err();
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
    // Refused until reopened, even once space is free again.
    faults.set_disk_full(false);
    let again = journal.append(0, payload(11, PAYLOAD)).await.unwrap_err();
    assert!(matches!(again, StoreError::DiskFull { .. }), "{again}");
    drop(journal);

    let (journal, recovered, recovery) = open(cfg.clone());
    assert_eq!(recovered.len(), 10);
    for (i, r) in recovered.iter().enumerate() {
        assert_eq!(r.payload, payload(i as u64 + 1, PAYLOAD));
    }
    assert!(
        recovery.truncated.is_some(),
        "the half-written record is cut off"
    );
    assert_eq!(journal.append(0, payload(11, PAYLOAD)).await.unwrap(), 11);
    journal.close().await.unwrap();
}

#[tokio::test]
async fn a_full_disk_while_rotating_fails_cleanly() {
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
        "the sealed segment was synced first"
    );
    drop(journal);
    faults.clear();
    let (journal, recovered, _) = open(cfg);
    assert_eq!(recovered.len(), 3);
    assert_eq!(journal.append(0, payload(4, 1000)).await.unwrap(), 4);
    journal.close().await.unwrap();
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

    let full = MemStore::with_faults(FaultInjector::new());
    full.close();
    assert!(matches!(
        full.append(0, Bytes::new()).await,
        Err(StoreError::Closed)
    ));
}
