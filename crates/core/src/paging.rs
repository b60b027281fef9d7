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
//! Record: `u32` payload length and `u32` CRC32C of the payload (both little-endian), then
//! the payload. The queue decides what a payload holds; the spill also remembers each
//! record's journal id (`pid`, 0 for none) in memory, so a purge or delete can settle
//! spilled messages without reading them back.
//!
//! The I/O is synchronous and runs under the owning queue's lock: appends collect in a
//! 64 KiB buffer written with one positioned write, and reads fetch a batch of records at a
//! time (a bounded number of bytes), so the lock is held for one write or one batched read.
//!
//! # A write that fails
//! A full disk (the spill directory shares the journal's file system) fails a write, often
//! after part of it landed. The spill never loses or misframes a record over it: records go
//! to the file only as whole buffers written at the offset where the last whole record on
//! disk ends (`flushed`), so torn bytes past it are never read and are overwritten by the
//! next write (they are cut off at once, to give the space back). The buffer keeps the
//! records the disk refused, and reads take them straight from it. While the disk refuses
//! writes (an *episode*, logged once when it starts and once when it ends) appends only
//! buffer (a spill tries its write again once per 64 KiB of new records), the memory they
//! hold is counted broker-wide, and the queues refuse messages that would be paged once
//! that memory reaches `unwritten_max_bytes`; the periodic housekeeping tries the writes
//! again too, and the first write that succeeds ends the episode.
//!
//! # Invariants
//! - Records on disk in a file end at its `flushed` offset; the last file's records from
//!   `flushed` to `written` are the bytes of `pending`, whole.
//! - `read <= flushed <= written` for every file; only the last file has `flushed < written`.
//! - `pids` has one entry per record not yet read, and `bytes` sums their body sizes.
//! - The pager's `unwritten` is the sum of every spill's `pending` length.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ferromq_store::FaultInjector;

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
    /// Bytes of paged records all queues together may hold in memory, beyond
    /// `memory_max_bytes`, while spill files cannot be written (a full disk). Past it,
    /// messages that would be paged are refused until a write succeeds again.
    pub unwritten_max_bytes: u64,
    /// Fault injection for spill writes (tests); inert by default.
    pub faults: FaultInjector,
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
            unwritten_max_bytes: crate::limits::PAGING_UNWRITTEN_MAX_BYTES_DEFAULT,
            faults: FaultInjector::default(),
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
    /// Messages written to spills since start.
    paged_out: AtomicU64,
    /// Bytes of spilled records held in memory, not (yet) in a file: every spill's buffer.
    unwritten: AtomicU64,
    /// A spill write failed and none has succeeded since: an episode of a full disk.
    failing: AtomicBool,
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
            unwritten: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }))
    }

    /// Whether a queue holding `queue_resident` bytes in memory should page a message of
    /// `size` bytes rather than keep it.
    pub(crate) fn should_page(&self, queue_resident: u64, size: u64) -> bool {
        queue_resident + size > self.config.queue_memory_max_bytes
            || self.resident.load(Ordering::Relaxed) + size > self.config.memory_max_bytes
    }

    /// Whether a message of `size` bytes that would be paged must be refused: spill writes
    /// are failing and memory is full with what could not be written.
    pub(crate) fn refuses(&self, size: u64) -> bool {
        self.is_failing()
            && self.resident.load(Ordering::Relaxed) + self.unwritten.load(Ordering::Relaxed) + size
                > self.config.memory_max_bytes + self.config.unwritten_max_bytes
    }

    /// True while spill writes fail.
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
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

    /// Bytes of spilled records held in memory rather than in files.
    pub(crate) fn unwritten(&self) -> u64 {
        self.unwritten.load(Ordering::Relaxed)
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

    /// Starts an episode of failing writes (logged once) or continues it.
    fn write_failed(&self, error: &std::io::Error) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.config.dir.display(),
                %error,
                unwritten_max_bytes = self.config.unwritten_max_bytes,
                "cannot write spill files; paged messages stay in memory up to the bound, \
                 then messages that would be paged are refused until a write succeeds"
            );
        }
    }

    /// Ends an episode of failing writes, if one was on.
    fn write_succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %self.config.dir.display(), "spill files are written again");
        }
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
    /// End of the records appended (including those still in the spill's buffer).
    written: u64,
    /// End of the records in the file itself (or read from the buffer): where the buffer's
    /// bytes go.
    flushed: u64,
    /// Bytes consumed by reads.
    read: u64,
}

/// A FIFO of records on disk. Dropping it deletes its files.
#[derive(Debug)]
pub(crate) struct Spill {
    pager: Arc<Pager>,
    files: VecDeque<SpillFile>,
    /// Whole records appended to the last file but not yet written to it.
    pending: BytesMut,
    /// Journal id (0 for none) and body size of each spilled record, in order.
    pids: VecDeque<(u64, u32)>,
    /// Sum of the body sizes.
    bytes: u64,
    /// An append writes the buffer once it holds this many bytes: [`WRITE_BUFFER_BYTES`],
    /// or after a failed write that many more than it held then (one try per buffer's
    /// worth of new records while the disk is full).
    write_at_len: usize,
}

/// Bytes buffered in front of a spill file.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// A record's length and checksum.
const RECORD_HEADER_BYTES: usize = 8;

impl Spill {
    pub(crate) fn new(pager: Arc<Pager>) -> Self {
        Self {
            pager,
            files: VecDeque::new(),
            pending: BytesMut::new(),
            pids: VecDeque::new(),
            bytes: 0,
            write_at_len: WRITE_BUFFER_BYTES,
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
    /// the message it holds (0 for none). Fails, holding nothing, only when the record is
    /// too large or no file can be created for an empty spill; a failed write of earlier
    /// records leaves them buffered (see "A write that fails").
    pub(crate) fn push(&mut self, pid: u64, head: &[u8], body: &[u8]) -> std::io::Result<()> {
        let len = head.len() + body.len();
        let len32 = u32::try_from(len).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too large")
        })?;
        match self.files.back() {
            None => {
                if let Err(e) = self.open_file() {
                    self.pager.write_failed(&e);
                    return Err(e);
                }
            }
            Some(f) if f.written >= self.pager.config.file_max_bytes => {
                if self.write_at_len == WRITE_BUFFER_BYTES {
                    self.flush();
                }
                // Without room for the buffer, the records stay in the current file.
                if self.pending.is_empty() {
                    if let Err(e) = self.open_file() {
                        self.pager.write_failed(&e);
                    }
                }
            }
            Some(_) => {}
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(head), body);
        self.pending.reserve(RECORD_HEADER_BYTES + len);
        self.pending.put_u32_le(len32);
        self.pending.put_u32_le(crc);
        self.pending.put_slice(head);
        self.pending.put_slice(body);
        let grown = (RECORD_HEADER_BYTES + len) as u64;
        self.pager.unwritten.fetch_add(grown, Ordering::Relaxed);
        let last = self.files.back_mut().expect("a file is open for writing");
        last.written += grown;
        self.pids.push_back((pid, body.len() as u32));
        self.bytes += body.len() as u64;
        self.pager.paged_out.fetch_add(1, Ordering::Relaxed);
        if self.pending.len() >= self.write_at_len {
            self.flush();
        }
        Ok(())
    }

    /// Tries again to write what a failed write left in memory.
    pub(crate) fn retry_write(&mut self) {
        self.flush();
    }

    fn open_file(&mut self) -> std::io::Result<()> {
        let (path, file) = self.pager.new_file()?;
        self.files.push_back(SpillFile {
            path,
            file,
            written: 0,
            flushed: 0,
            read: 0,
        });
        Ok(())
    }

    /// Writes the buffer to the end of the last whole record in the last file. On failure
    /// the buffer stays, and whatever part of it landed is cut off again.
    fn flush(&mut self) {
        let Some(last) = self.files.back_mut() else {
            return;
        };
        if self.pending.is_empty() {
            return;
        }
        let result = match self.pager.config.faults.write_fault(self.pending.len()) {
            None => last.file.write_all_at(&self.pending, last.flushed),
            Some((landed, error)) => last
                .file
                .write_all_at(&self.pending[..landed], last.flushed)
                .and(Err(error)),
        };
        match result {
            Ok(()) => {
                let n = self.pending.len() as u64;
                self.pager.unwritten.fetch_sub(n, Ordering::Relaxed);
                last.flushed = last.written;
                if self.pending.capacity() > 2 * WRITE_BUFFER_BYTES {
                    // It grew while writes failed: give the memory back.
                    self.pending = BytesMut::new();
                } else {
                    self.pending.clear();
                }
                self.write_at_len = WRITE_BUFFER_BYTES;
                self.pager.write_succeeded();
            }
            Err(e) => {
                // Shrinking needs no space. Should it fail too, the torn bytes are still
                // never read and the next write covers them.
                let _ = last.file.set_len(last.flushed);
                self.write_at_len = self.pending.len() + WRITE_BUFFER_BYTES;
                self.pager.write_failed(&e);
            }
        }
    }

    /// Reads records from the head of the spill, at least one (if any is left) and then
    /// more while they fit in `budget` bytes, handing each payload to `each`. The payloads
    /// share one buffer. A record that cannot be read or fails its checksum ends the batch
    /// with an error after the records before it were handed out; nothing is handed out
    /// from it or after it.
    pub(crate) fn pop_batch(
        &mut self,
        budget: usize,
        mut each: impl FnMut(Bytes),
    ) -> std::io::Result<usize> {
        let mut count = 0;
        while !self.pids.is_empty() {
            let Some(front) = self.files.front() else {
                return Err(invalid("records are missing from the spill"));
            };
            if front.read >= front.written {
                if self.files.len() == 1 {
                    return Err(invalid("records are missing from the spill"));
                }
                // Read to its end: the writer has moved on to a later file.
                self.drop_front_file();
                continue;
            }
            let from_buffer = front.read >= front.flushed;
            let batch = if from_buffer {
                self.take_buffered(budget)
            } else {
                self.read_file(budget)
            };
            let (records, result) = batch;
            for record in records {
                if let Some((_, size)) = self.pids.pop_front() {
                    self.bytes -= u64::from(size);
                }
                count += 1;
                each(record);
            }
            result?;
            let front = self.files.front().expect("read from it");
            if front.read >= front.written && self.files.len() > 1 {
                self.drop_front_file();
            }
            // One batch per call: the caller asks again when it needs more.
            break;
        }
        if self.pids.is_empty() {
            // Everything was read: start over with a fresh file next time.
            self.reset();
        }
        Ok(count)
    }

    /// Takes whole records from the front of the buffer (the last file's unwritten tail).
    fn take_buffered(&mut self, budget: usize) -> (Vec<Bytes>, std::io::Result<()>) {
        let (at, _) = whole_records(&self.pending, budget);
        if at == 0 {
            return (
                Vec::new(),
                Err(invalid("a spill buffer holds a torn record")),
            );
        }
        let mut chunk = self.pending.split_to(at).freeze();
        self.pager.unwritten.fetch_sub(at as u64, Ordering::Relaxed);
        let front = self.files.front_mut().expect("checked by the caller");
        front.read += at as u64;
        front.flushed += at as u64;
        let mut records = Vec::new();
        while !chunk.is_empty() {
            let len = record_len(&chunk);
            records.push(chunk.slice(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len));
            chunk = chunk.slice(RECORD_HEADER_BYTES + len..);
        }
        (records, Ok(()))
    }

    /// Reads a batch of whole records from the front file's written part.
    fn read_file(&mut self, budget: usize) -> (Vec<Bytes>, std::io::Result<()>) {
        let front = self.files.front_mut().expect("checked by the caller");
        let available = (front.flushed - front.read) as usize;
        let want = budget.max(RECORD_HEADER_BYTES).min(available);
        let mut buf = BytesMut::zeroed(want);
        if let Err(e) = front.file.read_exact_at(&mut buf, front.read) {
            return (Vec::new(), Err(e));
        }
        let (mut at, _) = whole_records(&buf, want);
        if at == 0 {
            // A record longer than the batch is read by itself.
            if buf.len() < RECORD_HEADER_BYTES {
                return (
                    Vec::new(),
                    Err(invalid("a spill file ends in a torn record")),
                );
            }
            let len = RECORD_HEADER_BYTES + record_len(&buf);
            if len > available {
                return (
                    Vec::new(),
                    Err(invalid("a spill record runs past the end of its file")),
                );
            }
            buf = BytesMut::zeroed(len);
            if let Err(e) = front.file.read_exact_at(&mut buf, front.read) {
                return (Vec::new(), Err(e));
            }
            at = len;
        }
        let mut chunk = buf.freeze().slice(..at);
        let mut records = Vec::new();
        while !chunk.is_empty() {
            let len = record_len(&chunk);
            let crc = u32::from_le_bytes(chunk[4..8].try_into().expect("4 bytes"));
            let record = chunk.slice(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len);
            if crc32c::crc32c(&record) != crc {
                return (records, Err(invalid("a spill record fails its checksum")));
            }
            front.read += (RECORD_HEADER_BYTES + len) as u64;
            records.push(record);
            chunk = chunk.slice(RECORD_HEADER_BYTES + len..);
        }
        (records, Ok(()))
    }

    /// Empties the spill, returning the journal ids of the records it held.
    pub(crate) fn clear(&mut self) -> Vec<u64> {
        self.reset();
        self.bytes = 0;
        self.pids
            .drain(..)
            .map(|(pid, _)| pid)
            .filter(|&p| p != 0)
            .collect()
    }

    /// Drops the buffer and every file.
    fn reset(&mut self) {
        self.pager
            .unwritten
            .fetch_sub(self.pending.len() as u64, Ordering::Relaxed);
        self.pending = BytesMut::new();
        self.write_at_len = WRITE_BUFFER_BYTES;
        while !self.files.is_empty() {
            self.drop_front_file();
        }
    }

    fn drop_front_file(&mut self) {
        if let Some(f) = self.files.pop_front() {
            remove(&f.path);
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.reset();
    }
}

/// The length of the record at the start of `buf`, which holds at least its header.
fn record_len(buf: &[u8]) -> usize {
    u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize
}

/// How many bytes of `buf`'s leading whole records fit in `budget` (at least one record if
/// `buf` starts with a whole one), and how many records that is.
fn whole_records(buf: &[u8], budget: usize) -> (usize, usize) {
    let (mut at, mut taken) = (0, 0);
    while at + RECORD_HEADER_BYTES <= buf.len() {
        let end = at + RECORD_HEADER_BYTES + record_len(&buf[at..]);
        if end > buf.len() || (taken > 0 && end > budget) {
            break;
        }
        at = end;
        taken += 1;
    }
    (at, taken)
}

fn invalid(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
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
        pager_with(dir, file_max, FaultInjector::new())
    }

    fn pager_with(dir: &Path, file_max: u64, faults: FaultInjector) -> Arc<Pager> {
        let mut c = PagingConfig::new(dir);
        c.file_max_bytes = file_max;
        c.read_batch_bytes = 100;
        c.faults = faults;
        Pager::open(c).unwrap()
    }

    /// A record for message `i`: its number, then a body of a size and content that
    /// depend on `i`.
    fn push_numbered(s: &mut Spill, i: u64) {
        let body = vec![i as u8; 1000 + (i as usize * 37) % 3000];
        s.push(i, &i.to_le_bytes(), &body).unwrap();
    }

    fn check_numbered(r: &[u8], i: u64) {
        assert_eq!(&r[..8], &i.to_le_bytes(), "record {i} in order");
        assert_eq!(
            r.len(),
            8 + 1000 + (i as usize * 37) % 3000,
            "record {i} size"
        );
        assert!(r[8..].iter().all(|&b| b == i as u8), "record {i} body");
    }

    fn file_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
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
    fn writes_torn_by_a_full_disk_are_cut_off_and_records_come_back_whole_once_it_frees() {
        let dir = tempdir();
        let faults = FaultInjector::new();
        let p = pager_with(&dir, 256 * 1024, faults.clone());
        let mut s = Spill::new(p.clone());
        let mut next = 0u64;
        while p.paged_out() < 40 {
            push_numbered(&mut s, next);
            next += 1;
        }
        let on_disk = file_bytes(&dir);
        assert!(on_disk > 0 && p.unwritten() < WRITE_BUFFER_BYTES as u64);
        // Each write now lands half of its buffer, then fails with ENOSPC.
        faults.set_disk_full(true);
        for _ in 0..100 {
            push_numbered(&mut s, next);
            next += 1;
        }
        assert!(p.is_failing());
        assert_eq!(file_bytes(&dir), on_disk, "torn writes are cut off");
        assert!(
            p.unwritten() > 2 * WRITE_BUFFER_BYTES as u64,
            "refused records wait in memory"
        );
        // Read some back while the disk is still full (from the file, then the buffer).
        let mut out = 0u64;
        while out < 60 {
            s.pop_batch(5000, |r| {
                check_numbered(&r, out);
                out += 1;
            })
            .unwrap();
        }
        faults.set_disk_full(false);
        s.retry_write();
        assert!(!p.is_failing(), "a write that succeeds ends the episode");
        assert_eq!(p.unwritten(), 0);
        for _ in 0..100 {
            push_numbered(&mut s, next);
            next += 1;
        }
        while !s.is_empty() {
            s.pop_batch(7000, |r| {
                check_numbered(&r, out);
                out += 1;
            })
            .unwrap();
        }
        assert_eq!(out, next, "every record once");
        assert_eq!(p.unwritten(), 0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_spill_that_never_gets_to_write_still_hands_back_every_record() {
        let dir = tempdir();
        let faults = FaultInjector::new();
        faults.fail_writes(u32::MAX);
        let p = pager_with(&dir, 16 * 1024, faults.clone());
        let mut s = Spill::new(p.clone());
        for i in 0..200 {
            push_numbered(&mut s, i);
        }
        assert!(p.is_failing());
        assert_eq!(file_bytes(&dir), 0);
        let mut out = 0u64;
        while !s.is_empty() {
            s.pop_batch(3000, |r| {
                check_numbered(&r, out);
                out += 1;
            })
            .unwrap();
        }
        assert_eq!(out, 200);
        assert_eq!(p.unwritten(), 0);
        // Emptied, the spill writes at its first full buffer again, not after the backlog
        // it had.
        faults.clear();
        for i in 0..100 {
            push_numbered(&mut s, i);
        }
        assert!(!p.is_failing());
        assert!(p.unwritten() < WRITE_BUFFER_BYTES as u64);
        drop(s);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_or_truncated_spill_file_is_an_error_not_a_corrupt_record() {
        let dir = tempdir();
        let p = pager(&dir, 1 << 20);
        let mut s = Spill::new(p.clone());
        for i in 0..100 {
            push_numbered(&mut s, i);
        }
        s.retry_write();
        assert_eq!(p.unwritten(), 0);
        let path = s.files.front().unwrap().path.clone();
        // Flip one byte in the body of record 3.
        let at: u64 = (0..3u64)
            .map(|i| (RECORD_HEADER_BYTES + 8 + 1000 + (i as usize * 37) % 3000) as u64)
            .sum::<u64>()
            + (RECORD_HEADER_BYTES + 8 + 10) as u64;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xee], at).unwrap();
        let mut got = Vec::new();
        let err = loop {
            match s.pop_batch(1 << 20, |r| got.push(r)) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(got.len(), 3, "the records before the damaged one");
        for (i, r) in got.iter().enumerate() {
            check_numbered(r, i as u64);
        }
        s.clear();

        // A file cut short under the spill: a read error, no panic, nothing handed out.
        for i in 0..100 {
            push_numbered(&mut s, i);
        }
        s.retry_write();
        let path = s.files.front().unwrap().path.clone();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let mut n = 0;
        assert!(s.pop_batch(1 << 20, |_| n += 1).is_err());
        assert_eq!(n, 0);
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
