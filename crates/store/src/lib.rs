//! ferromq's durable store: an append-only journal of segment files holding opaque records.
//!
//! The store knows nothing of messages. A record is `(lsn, epoch, kind, payload)`: the
//! caller picks `kind` and `payload`, the store assigns the LSN and stamps the writer's
//! epoch. Appends from many tasks are group-committed by one writer thread; callers wait for
//! the durability level their policy asks for ([`Watermark`]). The caller releases records
//! it no longer needs; emptied segments are deleted and sparse ones compacted. On open,
//! recovery hands every record on disk to the caller in order. A full disk fails only the
//! records that found no space ([`StoreError::DiskFull`]) and the journal carries on; other
//! I/O errors are fatal until reopened. See `README.md` for the file format and the rules.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferromq_store::StoreError> {
//! use ferromq_store::{Journal, JournalConfig, Store};
//! let (journal, _recovery) = Journal::open(JournalConfig::new("data/journal"), |record| {
//!     // rebuild state from record.kind / record.payload
//!     let _ = record;
//! })?;
//! let lsn = journal.append(1, bytes::Bytes::from_static(b"hello")).await?;
//! journal.wait_synced(lsn).await?; // now confirm to the producer
//! journal.release(lsn); // later, once the message is acked
//! journal.close().await
//! # }
//! ```
//!
//! # Layout
//! - `store.rs`: the [`Store`] trait, [`Moved`], [`StoreStats`].
//! - `journal.rs`: [`Journal`], the file implementation: open, append, release, close.
//! - `writer.rs`: the writer thread: batching, group commit, rotation, deletion.
//! - `recovery.rs`: reading segments on open, torn-tail truncation, corruption reports.
//! - `compaction.rs`: re-appending the live records of sparse segments.
//! - `space.rs`: per-segment liveness; when segments may be deleted or compacted.
//! - `record.rs` and `segment.rs`: the byte formats, and the segment scanner.
//! - `watermark.rs`: [`Watermark`], [`Watermarks`], waiting on them.
//! - `memory.rs`: [`MemStore`], the in-memory implementation for tests.
//! - `fault.rs` and `disk.rs`: [`FaultInjector`] and the file operations that consult it.
//! - `config.rs`, `limits.rs` (every bound, with reasons), `error.rs`.
#![warn(missing_docs)]

mod compaction;
mod config;
mod disk;
mod error;
mod fault;
mod journal;
pub mod limits;
mod memory;
mod record;
mod recovery;
mod segment;
mod space;
mod store;
mod watermark;
mod writer;

pub use config::JournalConfig;
pub use error::{Corruption, IoOp, StoreError};
pub use fault::FaultInjector;
pub use journal::{Fence, Journal, Submitted};
pub use memory::MemStore;
pub use record::{Lsn, Record};
pub use recovery::{Recovery, Truncation};
pub use store::{Moved, Store, StoreStats};
pub use watermark::{Watermark, Watermarks};
