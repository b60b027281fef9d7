//! Paging: a queue whose ready messages outgrow its memory budget keeps the newest of them
//! in spill files instead of in memory, and reads them back in order as the in-memory head
//! drains.
//!
//! A spill is a FIFO of opaque records in a chain of files under the paging directory:
//! records are appended to the last file and read from the first, and a file is deleted
//! once it has been read to its end. Spill files are not a durability mechanism (the
//! journal is): they are never fsynced, and the directory is emptied at start, since
//! recovery rebuilds every queue from the journal.
//!
//! Record: `u32` length (little-endian), then the payload. The queue decides what a payload
//! holds; the spill also remembers each record's journal id (`pid`, 0 for none) in memory,
//! so a purge or delete can settle spilled messages without reading them back.
//!
//! The I/O is synchronous and runs under the owning queue's lock: appends go through a
//! 64 KiB buffer into the page cache, and reads fetch a batch of records at a time (a
//! bounded number of bytes), so the lock is held for one buffered write or one batched
//! read.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Paging settings.
#[derive(Clone, Debug)]
pub struct PagingConfig {
    /// Where spill files go; emptied when the broker opens.
    pub dir: PathBuf,
    /// Body bytes of ready messages one queue keeps in memory before it pages newer ones.
    pub queue_memory_max_bytes: u64,
    /// Body bytes of ready messages all queues together keep in memory before they page.
    pub memory_max_bytes: u64,
    /// A spill file is closed and a new one started beyond this size.
    pub file_max_bytes: u64,
    /// Bytes read back from a spill at a time.
    pub read_batch_bytes: usize,
}

impl PagingConfig {
    /// Defaults for spill files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            queue_memory_max_bytes: crate::limits::QUEUE_MEMORY_MAX_BYTES_DEFAULT,
            memory_max_bytes: crate::limits::MEMORY_MAX_BYTES_DEFAULT,
            file_max_bytes: 64 * 1024 * 1024,
            read_batch_bytes: 1024 * 1024,
        }
    }
}

/// The broker-wide paging state: the directory, file naming and the memory budget shared
/// by every queue.
#[derive(Debug)]
pub(crate) struct Pager {
    config: PagingConfig,
    next_file: AtomicU64,
    /// Body bytes of ready messages held in memory by all queues of this broker.
    resident: AtomicU64,
    /// Messages written to spills since start, for stats and tests.
    paged_out: AtomicU64,
}

impl Pager {
    /// Prepares `config.dir`, deleting spill files a previous run left behind.
    pub(crate) fn open(config: PagingConfig) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.dir)?;
        for entry in std::fs::read_dir(&config.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "spill") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Arc::new(Self {
            config,
            next_file: AtomicU64::new(1),
            resident: AtomicU64::new(0),
            paged_out: AtomicU64::new(0),
        }))
    }

    /// Whether a queue holding `queue_resident` bytes in memory should page a message of
    /// `size` bytes rather than keep it.
    pub(crate) fn should_page(&self, queue_resident: u64, size: u64) -> bool {
        queue_resident + size > self.config.queue_memory_max_bytes
            || self.resident.load(Ordering::Relaxed) + size > self.config.memory_max_bytes
    }

    /// How many bytes a queue holding `queue_resident` bytes may read back now.
    pub(crate) fn room(&self, queue_resident: u64) -> usize {
        let queue_room = self
            .config
            .queue_memory_max_bytes
            .saturating_sub(queue_resident);
        let global_room = self
            .config
            .memory_max_bytes
            .saturating_sub(self.resident.load(Ordering::Relaxed));
        (queue_room.min(global_room) as usize).min(self.config.read_batch_bytes)
    }

    pub(crate) fn add_resident(&self, bytes: u64) {
        self.resident.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn sub_resident(&self, bytes: u64) {
        self.resident.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Body bytes of ready messages in memory, all queues together.
    pub(crate) fn resident(&self) -> u64 {
        self.resident.load(Ordering::Relaxed)
    }

    /// Messages written to spills since start.
    pub(crate) fn paged_out(&self) -> u64 {
        self.paged_out.load(Ordering::Relaxed)
    }

    fn new_file(&self) -> std::io::Result<(PathBuf, File)> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.config.dir.join(format!("{n:010}.spill"));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)?;
        Ok((path, file))
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        // Every spill is gone with its queues; leave no empty directory behind.
        let _ = std::fs::remove_dir(&self.config.dir);
    }
}

/// One file of a spill.
#[derive(Debug)]
struct SpillFile {
    path: PathBuf,
    file: File,
    /// Bytes appended (including what the writer still buffers).
    written: u64,
    /// Bytes consumed by reads.
    read: u64,
}

/// A FIFO of records on disk. Dropping it deletes its files.
#[derive(Debug)]
pub(crate) struct Spill {
    pager: Arc<Pager>,
    files: VecDeque<SpillFile>,
    /// Buffers appends to the last file.
    writer: Option<BufWriter<File>>,
    /// Journal id (0 for none) and body size of each spilled record, in order.
    pids: VecDeque<(u64, u32)>,
    /// Sum of the body sizes.
    bytes: u64,
}

/// Bytes buffered in front of a spill file.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

impl Spill {
    pub(crate) fn new(pager: Arc<Pager>) -> Self {
        Self {
            pager,
            files: VecDeque::new(),
            writer: None,
            pids: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Records waiting in the spill.
    pub(crate) fn len(&self) -> usize {
        self.pids.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Body bytes of the records waiting in the spill.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends one record made of `head` followed by `body`; `pid` is the journal id of
    /// the message it holds (0 for none).
    pub(crate) fn push(&mut self, pid: u64, head: &[u8], body: &[u8]) -> std::io::Result<()> {
        let len = head.len() + body.len();
        let len32 = u32::try_from(len).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too large")
        })?;
        let rotate = self
            .files
            .back()
            .is_none_or(|f| f.written >= self.pager.config.file_max_bytes);
        if rotate {
            if let Some(mut w) = self.writer.take() {
                w.flush()?;
            }
            let (path, file) = self.pager.new_file()?;
            let writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file.try_clone()?);
            self.files.push_back(SpillFile {
                path,
                file,
                written: 0,
                read: 0,
            });
            self.writer = Some(writer);
        }
        let w = self.writer.as_mut().expect("a file is open for writing");
        w.write_all(&len32.to_le_bytes())?;
        w.write_all(head)?;
        w.write_all(body)?;
        let last = self.files.back_mut().expect("a file is open for writing");
        last.written += 4 + len as u64;
        self.pids.push_back((pid, body.len() as u32));
        self.bytes += body.len() as u64;
        self.pager.paged_out.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads records from the head of the spill, at least one (if any is left) and then
    /// more while they fit in `budget` bytes, handing each payload to `each`. The payloads
    /// share one buffer.
    pub(crate) fn pop_batch(
        &mut self,
        budget: usize,
        mut each: impl FnMut(Bytes),
    ) -> std::io::Result<usize> {
        let mut count = 0;
        while !self.pids.is_empty() {
            let Some(front) = self.files.front() else {
                break;
            };
            if front.read >= front.written {
                // Read to its end: the writer has moved on to a later file.
                self.drop_front_file();
                continue;
            }
            if self.files.len() == 1 {
                if let Some(w) = self.writer.as_mut() {
                    w.flush()?;
                }
            }
            let front = self.files.front_mut().expect("checked above");
            let available = (front.written - front.read) as usize;
            let want = budget.max(4).min(available);
            let mut buf = BytesMut::zeroed(want);
            front.file.read_exact_at(&mut buf, front.read)?;
            // Parse the records that are whole in `buf`; a record longer than `buf` is
            // read by itself.
            let mut at = 0;
            let mut taken = 0;
            while at + 4 <= buf.len() {
                let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
                if at + 4 + len > buf.len() {
                    break;
                }
                at += 4 + len;
                taken += 1;
            }
            if taken == 0 {
                let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                if 4 + len > available {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "spill record runs past the end of its file",
                    ));
                }
                buf = BytesMut::zeroed(4 + len);
                front.file.read_exact_at(&mut buf, front.read)?;
                at = 4 + len;
                taken = 1;
            }
            front.read += at as u64;
            let mut buf = buf.freeze();
            for _ in 0..taken {
                let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
                let record = buf.slice(4..4 + len);
                buf = buf.slice(4 + len..);
                if let Some((_, size)) = self.pids.pop_front() {
                    self.bytes -= u64::from(size);
                }
                each(record);
            }
            count += taken;
            if front.read >= front.written && self.files.len() > 1 {
                self.drop_front_file();
            }
            // One batch per call: the caller asks again when it needs more.
            break;
        }
        if self.pids.is_empty() {
            // Everything was read: start over with a fresh file next time.
            self.writer = None;
            while !self.files.is_empty() {
                self.drop_front_file();
            }
        }
        Ok(count)
    }

    /// Empties the spill, returning the journal ids of the records it held.
    pub(crate) fn clear(&mut self) -> Vec<u64> {
        self.writer = None;
        while !self.files.is_empty() {
            self.drop_front_file();
        }
        self.bytes = 0;
        self.pids
            .drain(..)
            .map(|(pid, _)| pid)
            .filter(|&p| p != 0)
            .collect()
    }

    fn drop_front_file(&mut self) {
        if let Some(f) = self.files.pop_front() {
            remove(&f.path);
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.writer = None;
        for f in self.files.drain(..) {
            remove(&f.path);
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete a spill file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pager(dir: &Path, file_max: u64) -> Arc<Pager> {
        let mut c = PagingConfig::new(dir);
        c.file_max_bytes = file_max;
        c.read_batch_bytes = 100;
        Pager::open(c).unwrap()
    }

    fn drain(s: &mut Spill, budget: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        while !s.is_empty() {
            let n = s.pop_batch(budget, |b| out.push(b)).unwrap();
            assert!(n > 0, "a non-empty spill yields at least one record");
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_files_and_files_are_deleted() {
        let dir = tempdir();
        let p = pager(&dir, 64);
        let mut s = Spill::new(p.clone());
        for i in 0..50u64 {
            let body = vec![i as u8; (i as usize * 7) % 40];
            s.push(i, &i.to_le_bytes(), &body).unwrap();
        }
        assert_eq!(s.len(), 50);
        assert!(std::fs::read_dir(&dir).unwrap().count() > 1);
        let got = drain(&mut s, 30);
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(&r[..8], &(i as u64).to_le_bytes());
            assert_eq!(r.len(), 8 + (i * 7) % 40);
            assert!(r[8..].iter().all(|&b| b == i as u8));
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(p.paged_out(), 50);
    }

    #[test]
    fn pushes_between_reads_keep_fifo_order() {
        let dir = tempdir();
        let mut s = Spill::new(pager(&dir, 1024));
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        for round in 0..20 {
            for _ in 0..(round % 5 + 1) {
                s.push(next_in, &next_in.to_le_bytes(), b"x").unwrap();
                next_in += 1;
            }
            s.pop_batch(20, |r| {
                assert_eq!(&r[..8], &next_out.to_le_bytes());
                next_out += 1;
            })
            .unwrap();
        }
        for r in drain(&mut s, 1000) {
            assert_eq!(&r[..8], &next_out.to_le_bytes());
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn clear_returns_journal_ids_and_removes_files() {
        let dir = tempdir();
        let mut s = Spill::new(pager(&dir, 16));
        for pid in [0, 5, 0, 7] {
            s.push(pid, b"head", b"body").unwrap();
        }
        assert_eq!(s.clear(), vec![5, 7]);
        assert!(s.is_empty());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn opening_removes_stale_spill_files() {
        let dir = tempdir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0000000001.spill"), b"old").unwrap();
        std::fs::write(dir.join("keep.txt"), b"not ours").unwrap();
        let _p = pager(&dir, 16);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")]);
    }

    fn tempdir() -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let d = std::env::temp_dir().join(format!(
            "ferromq-paging-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
