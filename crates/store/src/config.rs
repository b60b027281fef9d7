//! [`JournalConfig`]: where the journal lives and how it batches, rotates and compacts.

use std::path::PathBuf;

use crate::error::StoreError;
use crate::fault::FaultInjector;
use crate::limits;

/// Settings of a [`Journal`](crate::Journal). Start from [`JournalConfig::new`], which fills in
/// the defaults of [`limits`].
#[derive(Clone, Debug)]
pub struct JournalConfig {
    /// Directory holding the segment files; created if missing. One journal per directory:
    /// the caller (the server) owns the data-directory lock.
    pub dir: PathBuf,
    /// The active segment is sealed and a new one started before a record would take it past
    /// this size. A record larger than this gets a segment of its own.
    pub segment_size_max_bytes: u64,
    /// Longest time the writer holds written but unsynced records waiting for more before it
    /// fsyncs them; 0 fsyncs as soon as the append queue is drained.
    pub sync_delay_max_us: u64,
    /// Unsynced bytes that force an fsync at once, whatever the delay.
    pub sync_batch_max_bytes: u64,
    /// Bytes of appends queued for the writer before `append` waits (backpressure).
    pub append_queue_max_bytes: u32,
    /// Largest record payload accepted.
    pub record_payload_max_bytes: u32,
    /// Sealed segments whose live record bytes are below this percentage of their record
    /// bytes are rewritten by [`Store::compact`](crate::Store::compact). 0 disables it.
    pub compaction_live_percent_max: u8,
    /// Epoch stamped on records written after open, until
    /// [`set_epoch`](crate::Store::set_epoch).
    pub epoch: u64,
    /// Faults to inject into file operations; inert unless a test arms it.
    pub faults: FaultInjector,
}

impl JournalConfig {
    /// A configuration for `dir` with every other field at its default.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_size_max_bytes: limits::SEGMENT_SIZE_MAX_BYTES_DEFAULT,
            sync_delay_max_us: limits::SYNC_DELAY_MAX_US_DEFAULT,
            sync_batch_max_bytes: limits::SYNC_BATCH_MAX_BYTES_DEFAULT,
            append_queue_max_bytes: limits::APPEND_QUEUE_MAX_BYTES_DEFAULT,
            record_payload_max_bytes: limits::RECORD_PAYLOAD_MAX_BYTES_DEFAULT,
            compaction_live_percent_max: limits::COMPACTION_LIVE_PERCENT_MAX_DEFAULT,
            epoch: 0,
            faults: FaultInjector::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.segment_size_max_bytes < limits::SEGMENT_SIZE_MIN_BYTES {
            return Err(StoreError::Config(
                "segment_size_max_bytes is below limits::SEGMENT_SIZE_MIN_BYTES",
            ));
        }
        if self.sync_delay_max_us > limits::SYNC_DELAY_MAX_US_LIMIT {
            return Err(StoreError::Config(
                "sync_delay_max_us exceeds limits::SYNC_DELAY_MAX_US_LIMIT",
            ));
        }
        if self.sync_batch_max_bytes == 0 {
            return Err(StoreError::Config("sync_batch_max_bytes must be positive"));
        }
        if self.append_queue_max_bytes < limits::APPEND_REQUEST_OVERHEAD_BYTES {
            return Err(StoreError::Config(
                "append_queue_max_bytes is below one request's overhead",
            ));
        }
        if self.record_payload_max_bytes > limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT {
            return Err(StoreError::Config(
                "record_payload_max_bytes exceeds limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT",
            ));
        }
        if self.compaction_live_percent_max > 100 {
            return Err(StoreError::Config(
                "compaction_live_percent_max is a percentage (0..=100)",
            ));
        }
        Ok(())
    }
}
