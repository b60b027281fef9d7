//! Pieces shared by the load generators in `src/bin/`: command-line flags, exact
//! loss/duplicate accounting by sequence number, fixed-rate pacing and latency
//! percentiles, and `/proc` readers for a broker's CPU time and memory.
//!
//! # Layout
//! - [`cli`]: `--flag value` parsing and the exit on a usage error.
//! - [`seq`]: [`seq::SeqSet`], the bitmap of sequence numbers a consumer has received.
//! - [`tally`]: bodies numbered by producer and sequence and stamped with their due
//!   time, and [`tally::Received`], what a consumer got of them (lost, duplicated,
//!   reordered, corrupt).
//! - [`run`]: the measurement window and the first error of a run.
//! - [`latency`]: the fixed-rate pacer, the process-wide clock of due times, and the
//!   lock-free histogram of end-to-end latencies (p50, p99, p99.9, max).
//! - [`procfs`]: CPU seconds and RSS of a process, busy time of the machine, the open
//!   file limit, and the broker usage fields of a result line.
//! - [`net`]: client sockets spread over loopback source addresses.
//! - [`storm`]: the connection cases of every protocol (connection rate, idle
//!   connections and their RSS), given the protocol's handshake, heart-beat and close.
#![warn(missing_docs)]

pub mod cli;
pub mod latency;
pub mod net;
pub mod procfs;
pub mod run;
pub mod seq;
pub mod storm;
pub mod tally;
