//! Every bound the store enforces, with the reason for its value.
//!
//! Defaults are what [`JournalConfig::new`](crate::JournalConfig::new) starts from; the
//! `*_LIMIT` values are hard ceilings that configuration cannot raise.

/// Default size at which the active segment is sealed and a new one started.
///
/// A segment is the unit of reclamation: its file is deleted only when every record in it is
/// released, so smaller segments return space sooner after consumers catch up. 16 MiB is in
/// the range of ActiveMQ Artemis (10 MiB journal files) and LavinMQ (8 MiB segments); a
/// terabyte of history is then ~65,000 files, which directories handle well.
pub const SEGMENT_SIZE_MAX_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

/// Smallest accepted `segment_size_max_bytes`. Below a page, rotation (an fsync of the old
/// file plus a create, an fsync and a directory fsync) would dominate every append.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 4 * 1024;

/// Default time the writer waits for more records before it fsyncs a batch, in µs.
///
/// Zero means "fsync as soon as the queue is drained". Group commit still happens: records
/// that arrive while one fsync runs form the next batch, so batches grow with load and a
/// lone producer pays no added latency (PostgreSQL's `commit_delay` defaults to 0 for the
/// same reason). A positive delay trades latency for fewer fsyncs on disks where an fsync is
/// very slow.
pub const SYNC_DELAY_MAX_US_DEFAULT: u64 = 0;

/// Ceiling on `sync_delay_max_us`: one second. A longer delay would make every producer
/// confirm wait that long, which no broker policy wants.
pub const SYNC_DELAY_MAX_US_LIMIT: u64 = 1_000_000;

/// Default bytes written since the last fsync that force an fsync even if more records are
/// queued. Under sustained load the queue never drains, so without this bound the synced
/// watermark would never advance. 1 MiB keeps each fsync's latency to a few ms on an SSD while
/// making each write large enough for sequential throughput.
pub const SYNC_BATCH_MAX_BYTES_DEFAULT: u64 = 1024 * 1024;

/// Default bytes of appends queued for the writer (payload plus
/// [`APPEND_REQUEST_OVERHEAD_BYTES`] each). A producer that outruns the disk waits in
/// `append` once this much is queued instead of growing the heap. 8 MiB is several sync
/// batches, so the writer never idles for lack of queued work.
pub const APPEND_QUEUE_MAX_BYTES_DEFAULT: u32 = 8 * 1024 * 1024;

/// What one queued append is charged besides its payload: the request, its reply channel and
/// the record header. Keeps a flood of empty records bounded too.
pub const APPEND_REQUEST_OVERHEAD_BYTES: u32 = 128;

/// Default largest record payload. RabbitMQ 3.x refuses messages above 128 MiB by default
/// (`max_message_size`); a broker message body plus its properties must fit in one record.
pub const RECORD_PAYLOAD_MAX_BYTES_DEFAULT: u32 = 128 * 1024 * 1024;

/// Ceiling on `record_payload_max_bytes`: 1 GiB. Record sizes are kept in memory as `u32`
/// with one bit borrowed for liveness, and a record is read whole into memory.
pub const RECORD_PAYLOAD_MAX_BYTES_LIMIT: u32 = 1024 * 1024 * 1024;

/// Default live fraction, in percent of a sealed segment's record bytes, below which
/// compaction rewrites the segment. At 50 % the disk holds at most about twice the live data
/// (plus the active segment), and each rewrite copies at most half a segment.
pub const COMPACTION_LIVE_PERCENT_MAX_DEFAULT: u8 = 50;

/// Read buffer for recovery and compaction scans. Large enough that a scan is a sequence of
/// big sequential reads; one buffer at a time.
pub const SCAN_BUFFER_BYTES: usize = 1024 * 1024;
