//! The few file operations the journal performs, each consulting the [`FaultInjector`] and
//! mapping failures to [`StoreError`] with the operation and path.
//!
//! Every function here blocks; they run on the writer thread, in `Journal::open`, or under
//! `spawn_blocking`, never on a tokio worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{IoOp, StoreError};
use crate::fault::FaultInjector;
use crate::segment;

use crate::error::ENOSPC;

pub(crate) const EIO: i32 = 5;

/// Creates a segment file holding only its header, fsyncs it, then fsyncs the directory so
/// that the new name survives a crash.
///
/// If the header cannot be written for lack of space, the new file is removed again (an
/// unlink needs no space), so that a later attempt can create it and no stray file is left
/// for recovery; that error is [`StoreError::DiskFull`] and the caller may go on.
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
    if let Err(err) = write_all(&mut file, &path, &segment::encode_header(first_lsn), faults) {
        drop(file);
        if err.is_fatal() {
            return Err(err);
        }
        fs::remove_file(&path).map_err(|e| StoreError::io(IoOp::Remove, &path, e))?;
        return Err(err);
    }
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
    if let Some((written, err)) = faults.write_fault(buf.len()) {
        // A full disk accepts part of a write; leave the torn record recovery must handle.
        file.write_all(&buf[..written])
            .map_err(|e| StoreError::io(IoOp::Write, path, e))?;
        return Err(StoreError::io(IoOp::Write, path, err));
    }
    file.write_all(buf)
        .map_err(|e| StoreError::io(IoOp::Write, path, e))
}

/// Cuts the file back to `len` bytes (dropping a partly written batch; shrinking needs no
/// space) and fsyncs it, so that the bytes cut off cannot reappear after a crash: they may
/// hold whole records whose appenders were told they failed.
pub(crate) fn cut(
    file: &File,
    path: &Path,
    len: u64,
    faults: &FaultInjector,
) -> Result<(), StoreError> {
    file.set_len(len)
        .map_err(|e| StoreError::io(IoOp::Truncate, path, e))?;
    injected_fsync_failure(faults, path)?;
    // A full fsync, not fdatasync: the new length is the point.
    file.sync_all()
        .map_err(|e| StoreError::io(IoOp::Sync, path, e))
}

/// The failure the [`FaultInjector`] asks of the next fsync, if any.
fn injected_fsync_failure(faults: &FaultInjector, path: &Path) -> Result<(), StoreError> {
    if faults.on_fsync() {
        return Err(StoreError::io(
            IoOp::Sync,
            path,
            io::Error::from_raw_os_error(EIO),
        ));
    }
    Ok(())
}

/// fsync of a segment's data (and the size change that makes it readable).
pub(crate) fn sync(file: &File, path: &Path, faults: &FaultInjector) -> Result<(), StoreError> {
    faults.wait_while_held();
    injected_fsync_failure(faults, path)?;
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
