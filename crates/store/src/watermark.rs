//! The named durability watermarks and waiting on them.
//!
//! A record is *appended* (written to its segment file, in the page cache), then *synced*
//! (fsynced). A *replicated* watermark (acknowledged by a standby) will join them as one more
//! [`Watermark`] variant and one more field of [`Watermarks`]; both are `non_exhaustive` so
//! that adding it breaks no caller.
//!
//! # Invariants
//! - Every watermark only grows, and `synced <= appended`.
//! - A watermark `w` means every record with LSN `<= w` has reached that level.

use tokio::sync::watch;

use crate::error::StoreError;
use crate::record::Lsn;

/// A durability level a caller can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Watermark {
    /// Written to the segment file; survives a crash of the process, not of the machine.
    Appended,
    /// fsynced; survives a crash of the machine.
    Synced,
}

/// The highest LSN at each level (0: none yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Watermarks {
    /// Highest LSN written to its segment file.
    pub appended: Lsn,
    /// Highest LSN fsynced, with everything before it.
    pub synced: Lsn,
}

impl Watermarks {
    /// The watermark of one level.
    pub fn get(&self, mark: Watermark) -> Lsn {
        match mark {
            Watermark::Appended => self.appended,
            Watermark::Synced => self.synced,
        }
    }
}

/// What waiters watch: the watermarks, and why they will move no further.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub marks: Watermarks,
    /// The fatal error that stopped the writer; records above the watermarks never reach
    /// them.
    pub failure: Option<StoreError>,
    /// Closed cleanly; the watermarks are final.
    pub closed: bool,
}

impl Progress {
    pub(crate) fn at(lsn: Lsn) -> Self {
        Progress {
            marks: Watermarks {
                appended: lsn,
                synced: lsn,
            },
            failure: None,
            closed: false,
        }
    }

    /// Why nothing more can be appended, if that is so.
    pub(crate) fn refusal(&self) -> Option<StoreError> {
        match (&self.failure, self.closed) {
            (Some(err), _) => Some(err.clone()),
            (None, true) => Some(StoreError::Closed),
            (None, false) => None,
        }
    }
}

/// Resolves once `lsn` has reached `mark`, or with the error that means it never will.
pub(crate) async fn wait_for(
    mut rx: watch::Receiver<Progress>,
    lsn: Lsn,
    mark: Watermark,
) -> Result<(), StoreError> {
    let progress = rx
        .wait_for(|p| p.marks.get(mark) >= lsn || p.refusal().is_some())
        .await
        .map_err(|_| StoreError::Closed)?;
    if progress.marks.get(mark) >= lsn {
        return Ok(());
    }
    Err(progress.refusal().unwrap_or(StoreError::Closed))
}
