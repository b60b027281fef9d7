//! Journal append throughput, records of 256 B and 4 KiB, in a directory under the system
//! temp dir (removed at the end; check `df` for which disk that is).
//!
//! - `appended`: a run of [`RUN`] records submitted back to back, timed until the writer
//!   has written them all (watermark `appended`). The journal is opened with group commit
//!   held back (fsync at most once a second or per GiB), so this is the write path without
//!   waiting for fsync.
//! - `synced`: the same run, then waiting for the last record to be `synced` with the
//!   default settings (fsync as soon as the append queue drains): group commit, what a
//!   window of persistent publishes awaiting confirms costs.
//! - `synced one by one`: append one record and wait for it to be synced before the next:
//!   one fsync per record, the latency floor of a producer without a window.
//! - `memstore`: the same run through the in-memory store, for comparison.
//!
//! Records are released after each timed run (outside the timing) so that emptied segments
//! are deleted and the disk does not fill.
//!
//! ```text
//! cargo bench -p ferromq-bench --bench journal -- --quick
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferromq_store::{Journal, JournalConfig, Lsn, MemStore, Store};

const SIZES: [usize; 2] = [256, 4096];
/// Records per timed run.
const RUN: usize = 256;
const KIND: u8 = 1;

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ferromq-microbench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn open(dir: &TempDir, lazy_sync: bool) -> Journal {
    let mut cfg = JournalConfig::new(dir.0.join("journal"));
    if lazy_sync {
        cfg.sync_delay_max_us = ferromq_store::limits::SYNC_DELAY_MAX_US_LIMIT;
        cfg.sync_batch_max_bytes = 1 << 30;
    }
    let (journal, _) = Journal::open(cfg, |_| {}).expect("open the journal");
    journal
}

/// Submits `RUN` records and waits until all are appended (and, if `synced`, the last is
/// synced). Returns the time taken; the LSNs are left in `lsns`.
async fn journal_run(j: &Journal, payload: &Bytes, synced: bool, lsns: &mut Vec<Lsn>) -> Duration {
    let mut tickets = Vec::with_capacity(RUN);
    let started = Instant::now();
    for _ in 0..RUN {
        tickets.push(j.submit(KIND, payload.clone()).await.expect("submit"));
    }
    for t in tickets {
        lsns.push(j.submitted(t).await.expect("appended"));
    }
    if synced {
        let last = *lsns.last().expect("a record");
        j.wait_synced(last).await.expect("synced");
    }
    started.elapsed()
}

fn journal(c: &mut Criterion) {
    let rt = runtime();
    for size in SIZES {
        let payload: Bytes = vec![0x5a; size].into();
        let mut g = c.benchmark_group("journal/append");

        g.throughput(Throughput::ElementsAndBytes {
            elements: RUN as u64,
            bytes: (RUN * size) as u64,
        });
        for (name, synced) in [("appended", false), ("synced", true)] {
            let dir = TempDir::new(name);
            let j = open(&dir, !synced);
            let mut lsns = Vec::with_capacity(RUN);
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += journal_run(&j, &payload, synced, &mut lsns).await;
                            for lsn in lsns.drain(..) {
                                j.release(lsn);
                            }
                        }
                        total
                    })
                })
            });
            if let Err(e) = rt.block_on(j.close()) {
                panic!("close: {e}");
            }
        }

        let mem = MemStore::new();
        g.bench_function(BenchmarkId::new("memstore", size), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut lsns = Vec::with_capacity(RUN);
                    for _ in 0..iters {
                        let started = Instant::now();
                        for _ in 0..RUN {
                            lsns.push(mem.append(KIND, payload.clone()).await.expect("append"));
                        }
                        total += started.elapsed();
                        for lsn in lsns.drain(..) {
                            mem.release(lsn);
                        }
                    }
                    total
                })
            })
        });

        g.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: size as u64,
        });
        let dir = TempDir::new("one-by-one");
        let j = open(&dir, false);
        g.bench_function(BenchmarkId::new("synced one by one", size), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut lsns = Vec::with_capacity(iters as usize);
                    let started = Instant::now();
                    for _ in 0..iters {
                        let lsn = j.append(KIND, payload.clone()).await.expect("append");
                        j.wait_synced(lsn).await.expect("synced");
                        lsns.push(lsn);
                    }
                    let took = started.elapsed();
                    for lsn in lsns {
                        j.release(lsn);
                    }
                    took
                })
            })
        });
        if let Err(e) = rt.block_on(j.close()) {
            panic!("close: {e}");
        }
        g.finish();
    }
}

criterion_group!(benches, journal);
criterion_main!(benches);
