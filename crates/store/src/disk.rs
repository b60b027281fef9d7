//! The few file operations the journal performs, each consulting the [`FaultInjector`] and
//! mapping failures to [`StoreError`] with the operation and path.
//!
//! Every function here blocks; they run on the writer thread, in `Journal::open`, or under
//! `spawn_blocking`, never on a tokio worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{IoOp, StoreError};
use crate::fault::{FaultInjector, WriteFault};
use crate::segment;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// Creates a segment file holding only its header, fsyncs it, then fsyncs the directory so
/// that the new name survives a crash.
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: u64,
    faults: &FaultInjector,
) -> Result<(File, std::path::PathBuf), StoreError> {
    let path = dir.join(segment::file_name(first_lsn));
    if faults.on_create() {
        return Err(StoreError::io(
            IoOp::Create,
            &path,
            io::Error::from_raw_os_error(ENOSPC),
        ));
    }
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(IoOp::Create, &path, e))?;
    write_all(&mut file, &path, &segment::encode_header(first_lsn), faults)?;
    sync(&file, &path, faults)?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Writes the whole buffer at the end of the file.
pub(crate) fn write_all(
    file: &mut File,
    path: &Path,
    buf: &[u8],
    faults: &FaultInjector,
) -> Result<(), StoreError> {
    match faults.on_write() {
        None => {}
        Some(WriteFault::Eio) => {
            return Err(StoreError::io(
                IoOp::Write,
                path,
                io::Error::from_raw_os_error(EIO),
            ))
        }
        Some(WriteFault::DiskFull) => {
            // A full disk accepts part of a write; leave the torn record recovery must handle.
            let half = &buf[..buf.len() / 2];
            file.write_all(half)
                .map_err(|e| StoreError::io(IoOp::Write, path, e))?;
            return Err(StoreError::io(
                IoOp::Write,
                path,
                io::Error::from_raw_os_error(ENOSPC),
            ));
        }
    }
    file.write_all(buf)
        .map_err(|e| StoreError::io(IoOp::Write, path, e))
}

/// fsync of a segment's data (and the size change that makes it readable).
pub(crate) fn sync(file: &File, path: &Path, faults: &FaultInjector) -> Result<(), StoreError> {
    faults.wait_while_held();
    if faults.on_fsync() {
        return Err(StoreError::io(
            IoOp::Sync,
            path,
            io::Error::from_raw_os_error(EIO),
        ));
    }
    file.sync_data()
        .map_err(|e| StoreError::io(IoOp::Sync, path, e))
}

/// fsync of the directory, making creates and deletes of entries in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let handle = File::open(dir).map_err(|e| StoreError::io(IoOp::Open, dir, e))?;
    handle
        .sync_all()
        .map_err(|e| StoreError::io(IoOp::SyncDir, dir, e))
}

/// Deletes a segment file and fsyncs the directory.
pub(crate) fn remove_segment(dir: &Path, path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path).map_err(|e| StoreError::io(IoOp::Remove, path, e))?;
    sync_dir(dir)
}
