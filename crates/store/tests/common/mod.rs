//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use ferromq_store::{Journal, JournalConfig, Record, Recovery, StoreError};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir()
            .join("ferromq-store-tests")
            .join(format!("{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A config with small segments so that tests rotate.
pub fn config(dir: &Path) -> JournalConfig {
    let mut config = JournalConfig::new(dir);
    config.segment_size_max_bytes = 4096;
    config
}

/// Opens, collecting the recovered records.
pub fn try_open(config: JournalConfig) -> Result<(Journal, Vec<Record>, Recovery), StoreError> {
    let mut records = Vec::new();
    let (journal, recovery) = Journal::open(config, |r| records.push(r))?;
    Ok((journal, records, recovery))
}

pub fn open(config: JournalConfig) -> (Journal, Vec<Record>, Recovery) {
    try_open(config).expect("open journal")
}

/// The segment files in `dir`, sorted by name.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Total bytes of the segment files in `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).expect("metadata").len())
        .sum()
}

/// A payload that names its index, padded to `len` bytes.
pub fn payload(i: u64, len: usize) -> Bytes {
    let mut v = format!("record-{i:08}-").into_bytes();
    v.resize(len.max(v.len()), b'a' + (i % 26) as u8);
    Bytes::from(v)
}

/// Bytes of a record with a `len`-byte payload (header 26 + payload).
pub const fn record_len(len: usize) -> u64 {
    26 + len as u64
}

/// Bytes of a segment header.
pub const SEGMENT_HEADER: u64 = 20;
