//! Which records are live, per segment, and which segments may be deleted or compacted.
//!
//! Release marks are kept in memory only: after a restart every recovered record is live
//! until the caller releases it again (the caller's own records, such as acks, say which).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::record::Lsn;
use crate::segment::SEGMENT_HEADER_LEN;

/// High bit of an entry: the record was released. Record sizes stay below 2^31
/// (`limits::RECORD_PAYLOAD_MAX_BYTES_LIMIT`).
const DEAD: u32 = 1 << 31;

/// One segment file's bookkeeping.
///
/// # Invariants
/// - `entries[i]` is the encoded size of the record with LSN `first_lsn + i`, with [`DEAD`]
///   set while it is not live. A released record never becomes live again; a compaction
///   copy is born dead and becomes live once, when compaction adopts it.
/// - `live_records` and `live_bytes` count and sum the entries without `DEAD`;
///   `record_bytes` sums all entries.
/// - Only the active (last) segment is unsealed; records are only ever added to it.
/// - `held` counts the unadopted compaction copies, in other segments still on disk, of
///   records in this one; `orphan_origins` lists, once per unadopted copy in this segment,
///   the segment its original is in. A held segment is not deleted: recovery skips a copy
///   only while its original is on disk, so the original must outlive the orphan copy.
/// - `deleting` is set only on a sealed, unpinned, unheld segment with no live records; the
///   writer rechecks that, then deletes the file and removes the entry.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_lsn: Lsn,
    pub path: PathBuf,
    entries: Vec<u32>,
    record_bytes: u64,
    live_records: u64,
    live_bytes: u64,
    sealed: bool,
    /// Being compacted: not deleted until compaction is done with it.
    pinned: bool,
    held: u32,
    orphan_origins: Vec<Lsn>,
    deleting: bool,
}

impl Segment {
    pub(crate) fn new(first_lsn: Lsn, path: PathBuf) -> Self {
        Segment {
            first_lsn,
            path,
            entries: Vec::new(),
            record_bytes: 0,
            live_records: 0,
            live_bytes: 0,
            sealed: false,
            pinned: false,
            held: 0,
            orphan_origins: Vec::new(),
            deleting: false,
        }
    }

    /// Adds a record. `live` is false for compaction copies, until adopted.
    pub(crate) fn push(&mut self, size: u32, live: bool) {
        self.record_bytes += u64::from(size);
        if live {
            self.entries.push(size);
            self.live_records += 1;
            self.live_bytes += u64::from(size);
        } else {
            self.entries.push(size | DEAD);
        }
    }

    pub(crate) fn seal(&mut self) {
        self.sealed = true;
    }

    /// Records that an unadopted copy in this segment holds segment `origin_segment`.
    pub(crate) fn add_orphan(&mut self, origin_segment: Lsn) {
        self.orphan_origins.push(origin_segment);
    }

    fn end_lsn(&self) -> Lsn {
        self.first_lsn + self.entries.len() as u64
    }

    fn index(&self, lsn: Lsn) -> Option<usize> {
        (lsn >= self.first_lsn && lsn < self.end_lsn()).then(|| (lsn - self.first_lsn) as usize)
    }

    /// While a compaction runs, a segment with unadopted copies may be receiving copies
    /// that are about to be adopted, so it is kept until the compaction ends.
    fn deletable(&self, compacting: bool) -> bool {
        let awaiting_adoption = compacting && !self.orphan_origins.is_empty();
        self.sealed
            && !self.pinned
            && self.held == 0
            && self.live_records == 0
            && !awaiting_adoption
    }

    fn file_bytes(&self) -> u64 {
        SEGMENT_HEADER_LEN + self.record_bytes
    }
}

/// A sealed segment chosen for compaction, with the liveness of its records at that moment.
pub(crate) struct Candidate {
    pub first_lsn: Lsn,
    pub path: PathBuf,
    /// `live[i]` for LSN `first_lsn + i`.
    pub live: Vec<bool>,
}

/// Totals for [`StoreStats`](crate::StoreStats).
#[derive(Default)]
pub(crate) struct Totals {
    pub segments: usize,
    pub disk_bytes: u64,
    pub records: u64,
    pub live_records: u64,
    pub live_bytes: u64,
}

/// All segments on disk, by first LSN.
///
/// # Invariants
/// - Segments' LSN ranges are disjoint and ascend with their keys.
/// - `forwards` maps each record adopted live by the current or last compaction to its copy.
/// - `ghosts` maps records the caller released during a compaction to their (dead) copy,
///   for as long as the copy is on disk: recovery will hand the copy over, since its origin
///   is gone, so the caller's tombstone must outlive it.
/// - `compacting` is true from `pin_candidates` to `end_compaction`.
#[derive(Debug, Default)]
pub(crate) struct Space {
    segments: BTreeMap<Lsn, Segment>,
    forwards: HashMap<Lsn, Lsn>,
    ghosts: HashMap<Lsn, Lsn>,
    compacting: bool,
}

/// What [`Space::adopt`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Adoption {
    /// The copy is live and the original released; `delete` if that emptied its segment.
    Live { delete: Option<Lsn> },
    /// The original had been released: the copy stays dead, as a ghost.
    Ghost,
    /// Not an orphan copy of that record.
    Refused,
}

impl Space {
    pub(crate) fn insert(&mut self, segment: Segment) {
        self.segments.insert(segment.first_lsn, segment);
    }

    fn segment_of(&self, lsn: Lsn) -> Option<(&Segment, usize)> {
        let (_, seg) = self.segments.range(..=lsn).next_back()?;
        Some((seg, seg.index(lsn)?))
    }

    /// The first LSN and file of the segment holding `lsn`.
    pub(crate) fn segment_path(&self, lsn: Lsn) -> Option<(Lsn, PathBuf)> {
        self.segment_of(lsn)
            .map(|(seg, _)| (seg.first_lsn, seg.path.clone()))
    }

    /// True if a segment on disk holds `lsn` (live or released).
    pub(crate) fn holds(&self, lsn: Lsn) -> bool {
        self.segment_of(lsn).is_some()
    }

    /// `lsn`, or its copy if the last compaction moved it.
    pub(crate) fn forward(&self, lsn: Lsn) -> Lsn {
        self.forwards.get(&lsn).copied().unwrap_or(lsn)
    }

    /// True while recovery could hand over `lsn` or a copy of it: it is on disk, or a copy
    /// made by the last compaction is, or a ghost copy is.
    pub(crate) fn contains(&self, lsn: Lsn) -> bool {
        let on_disk = |map: &HashMap<Lsn, Lsn>| map.get(&lsn).is_some_and(|&c| self.holds(c));
        self.holds(lsn) || on_disk(&self.forwards) || on_disk(&self.ghosts)
    }

    /// The first LSN of the segment holding `lsn`.
    fn segment_key(&self, lsn: Lsn) -> Option<Lsn> {
        self.segment_of(lsn).map(|(seg, _)| seg.first_lsn)
    }

    /// True if `target`, or a copy of it recovery would hand over, is on disk in a segment
    /// other than the one holding `tomb` (or its copy).
    pub(crate) fn protects(&self, tomb: Lsn, target: Lsn) -> bool {
        let tomb_segment = self.segment_key(self.forward(tomb));
        [
            Some(target),
            self.forwards.get(&target).copied(),
            self.ghosts.get(&target).copied(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|l| self.segment_key(l))
        .any(|seg| Some(seg) != tomb_segment)
    }

    pub(crate) fn is_live(&self, lsn: Lsn) -> bool {
        self.segment_of(lsn)
            .is_some_and(|(seg, i)| seg.entries[i] & DEAD == 0)
    }

    /// Marks `lsn` released. Returns whether it was live, and the segment to delete if this
    /// made one deletable.
    pub(crate) fn release(&mut self, lsn: Lsn) -> (bool, Option<Lsn>) {
        let compacting = self.compacting;
        let Some((_, seg)) = self.segments.range_mut(..=lsn).next_back() else {
            return (false, None);
        };
        let Some(i) = seg.index(lsn) else {
            return (false, None);
        };
        let entry = &mut seg.entries[i];
        if *entry & DEAD != 0 {
            return (false, None);
        }
        seg.live_records -= 1;
        seg.live_bytes -= u64::from(*entry);
        *entry |= DEAD;
        (true, Self::mark_if_deletable(seg, compacting))
    }

    fn mark_if_deletable(seg: &mut Segment, compacting: bool) -> Option<Lsn> {
        (seg.deletable(compacting) && !seg.deleting).then(|| {
            seg.deleting = true;
            seg.first_lsn
        })
    }

    /// Appends freshly written records `(size, live)` to the active segment.
    pub(crate) fn push_active(
        &mut self,
        first_lsn: Lsn,
        records: impl Iterator<Item = (u32, bool)>,
    ) {
        if let Some(seg) = self.segments.get_mut(&first_lsn) {
            for (size, live) in records {
                seg.push(size, live);
            }
        }
    }

    /// A copy of `origin` is about to be written: holds the original's segment. Returns that
    /// segment's first LSN, or `None` if the original is no longer on disk (then the copy
    /// must not be written).
    pub(crate) fn hold_origin(&mut self, origin: Lsn) -> Option<Lsn> {
        let (_, seg) = self.segments.range_mut(..=origin).next_back()?;
        seg.index(origin)?;
        seg.held += 1;
        Some(seg.first_lsn)
    }

    /// Undoes [`Space::hold_origin`] and the orphan entry in `copy_segment` for a copy that
    /// was not written after all. Returns the original's segment, marked, if that made it
    /// deletable.
    pub(crate) fn release_hold(&mut self, origin_segment: Lsn, copy_segment: Lsn) -> Option<Lsn> {
        if let Some(seg) = self.segments.get_mut(&copy_segment) {
            if let Some(pos) = seg.orphan_origins.iter().position(|&o| o == origin_segment) {
                seg.orphan_origins.swap_remove(pos);
            }
        }
        let compacting = self.compacting;
        let origin = self.segments.get_mut(&origin_segment)?;
        origin.held -= 1;
        Self::mark_if_deletable(origin, compacting)
    }

    pub(crate) fn segment_mut(&mut self, first_lsn: Lsn) -> Option<&mut Segment> {
        self.segments.get_mut(&first_lsn)
    }

    /// Ends the copy `new` of `old` being an orphan: lets go of `old`'s segment, and makes
    /// `new` live if `old` still is (releasing `old`). If the caller released `old` while
    /// compaction ran, `new` stays dead and becomes a ghost of `old` (see `contains`).
    pub(crate) fn adopt(&mut self, old: Lsn, new: Lsn) -> Adoption {
        let Some((origin_seg, _)) = self.segment_of(old) else {
            return Adoption::Refused;
        };
        let origin_first = origin_seg.first_lsn;
        let old_live = self.is_live(old);
        let Some((_, seg)) = self.segments.range_mut(..=new).next_back() else {
            return Adoption::Refused;
        };
        let Some(i) = seg.index(new) else {
            return Adoption::Refused;
        };
        let Some(pos) = seg.orphan_origins.iter().position(|&o| o == origin_first) else {
            return Adoption::Refused;
        };
        if seg.entries[i] & DEAD == 0 {
            return Adoption::Refused;
        }
        seg.orphan_origins.swap_remove(pos);
        if old_live {
            seg.entries[i] &= !DEAD;
            seg.live_records += 1;
            seg.live_bytes += u64::from(seg.entries[i]);
        }
        if let Some(origin) = self.segments.get_mut(&origin_first) {
            origin.held -= 1;
        }
        if old_live {
            let (_, delete) = self.release(old);
            self.forwards.insert(old, new);
            Adoption::Live { delete }
        } else {
            self.ghosts.insert(old, new);
            Adoption::Ghost
        }
    }

    /// Seals the active segment; returns it for deletion if nothing in it is live.
    pub(crate) fn seal(&mut self, first_lsn: Lsn) -> Option<Lsn> {
        let compacting = self.compacting;
        let seg = self.segments.get_mut(&first_lsn)?;
        seg.seal();
        Self::mark_if_deletable(seg, compacting)
    }

    /// The path of a segment marked for deletion, if it may still be deleted; otherwise
    /// (a compaction copy came to hold it since it was marked) unmarks it.
    pub(crate) fn begin_delete(&mut self, first_lsn: Lsn) -> Option<PathBuf> {
        let compacting = self.compacting;
        let seg = self.segments.get_mut(&first_lsn)?;
        if !seg.deleting {
            return None;
        }
        if !seg.deletable(compacting) {
            seg.deleting = false;
            return None;
        }
        Some(seg.path.clone())
    }

    /// Forgets a deleted segment. Returns the segments its orphan copies held that are now
    /// deletable (and marks them).
    pub(crate) fn remove(&mut self, first_lsn: Lsn) -> Vec<Lsn> {
        let Some(seg) = self.segments.remove(&first_lsn) else {
            return Vec::new();
        };
        let end = seg.end_lsn();
        let elsewhere = |copy: &mut Lsn| !(first_lsn..end).contains(copy);
        self.ghosts.retain(|_, copy| elsewhere(copy));
        self.forwards.retain(|_, copy| elsewhere(copy));
        let mut deletable = Vec::new();
        for origin_first in seg.orphan_origins {
            if let Some(origin) = self.segments.get_mut(&origin_first) {
                origin.held -= 1;
                deletable.extend(Self::mark_if_deletable(origin, self.compacting));
            }
        }
        deletable
    }

    /// Starts a compaction: clears the forwards of the last one (the caller has applied its
    /// mapping), then pins and returns the sealed segments whose live bytes are below
    /// `percent` of their record bytes (and above zero: empty ones are deleted instead).
    ///
    /// Held segments are left alone: adopting copies of their records would leave the
    /// originals on disk (where recovery prefers them) while the copies live on, and a later
    /// copy of a copy could then be handed over beside the original.
    pub(crate) fn pin_candidates(&mut self, percent: u8) -> Vec<Candidate> {
        self.compacting = true;
        self.forwards.clear();
        let mut out = Vec::new();
        for seg in self.segments.values_mut() {
            let sparse = seg.live_bytes * 100 < seg.record_bytes * u64::from(percent)
                && seg.live_records > 0;
            if seg.sealed && !seg.deleting && !seg.pinned && seg.held == 0 && sparse {
                seg.pinned = true;
                out.push(Candidate {
                    first_lsn: seg.first_lsn,
                    path: seg.path.clone(),
                    live: seg.entries.iter().map(|e| e & DEAD == 0).collect(),
                });
            }
        }
        out
    }

    /// Unpins the candidates and returns (marked) every segment now deletable: emptied
    /// candidates, and segments of copies that were not adopted.
    pub(crate) fn end_compaction(&mut self, candidates: &[Candidate]) -> Vec<Lsn> {
        self.compacting = false;
        for candidate in candidates {
            if let Some(seg) = self.segments.get_mut(&candidate.first_lsn) {
                seg.pinned = false;
            }
        }
        self.segments
            .values_mut()
            .filter_map(|seg| Self::mark_if_deletable(seg, false))
            .collect()
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for seg in self.segments.values() {
            t.segments += 1;
            t.disk_bytes += seg.file_bytes();
            t.records += seg.entries.len() as u64;
            t.live_records += seg.live_records;
            t.live_bytes += seg.live_bytes;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space_with(records: &[(Lsn, usize)], sealed_upto: Lsn) -> Space {
        let mut space = Space::default();
        for &(first, n) in records {
            let mut seg = Segment::new(first, PathBuf::from(format!("{first}")));
            for _ in 0..n {
                seg.push(100, true);
            }
            if first < sealed_upto {
                seg.seal();
            }
            space.insert(seg);
        }
        space
    }

    #[test]
    fn release_deletes_sealed_segments_only_once_empty() {
        let mut space = space_with(&[(1, 2), (3, 2)], 3);
        assert_eq!(space.release(1), (true, None));
        assert_eq!(space.release(1), (false, None), "double release");
        assert_eq!(space.release(2), (true, Some(1)));
        // The active segment is never deleted, even when empty.
        assert_eq!(space.release(3), (true, None));
        assert_eq!(space.release(4), (true, None));
        assert_eq!(space.release(99), (false, None), "unknown LSN");
        assert!(space.holds(1), "held until the writer removes it");
        assert_eq!(space.begin_delete(1), Some(PathBuf::from("1")));
        assert_eq!(space.remove(1), Vec::<Lsn>::new());
        assert!(!space.holds(1));
    }

    #[test]
    fn an_orphan_copy_holds_its_original_until_the_copy_is_gone() {
        // Segment 1 holds LSN 1..=2, segment 3 is active.
        let mut space = space_with(&[(1, 2), (3, 0)], 3);
        let origin_seg = space.hold_origin(1).unwrap();
        space.segment_mut(3).unwrap().add_orphan(origin_seg);
        space.push_active(3, [(100, false)].into_iter()); // copy of 1 at LSN 3, not adopted
        space.release(1);
        assert_eq!(space.release(2), (true, None), "held by the orphan copy");
        assert_eq!(
            space.seal(3),
            Some(3),
            "the copy's segment has nothing live"
        );
        assert_eq!(
            space.remove(3),
            vec![1],
            "its removal frees the original's segment"
        );
    }

    #[test]
    fn a_copy_that_was_not_written_lets_go_of_its_original() {
        let mut space = space_with(&[(1, 2), (3, 0)], 3);
        let origin_seg = space.hold_origin(1).unwrap();
        space.segment_mut(3).unwrap().add_orphan(origin_seg);
        space.release(1);
        assert_eq!(space.release(2), (true, None), "held by the staged copy");
        assert_eq!(space.release_hold(origin_seg, 3), Some(1), "now deletable");
        assert!(space.segment_mut(3).unwrap().orphan_origins.is_empty());
    }

    #[test]
    fn adoption_makes_the_copy_live_and_frees_the_original() {
        let mut space = space_with(&[(1, 2), (3, 0)], 3);
        let origin_seg = space.hold_origin(2).unwrap();
        space.segment_mut(3).unwrap().add_orphan(origin_seg);
        space.push_active(3, [(100, false)].into_iter());
        assert!(!space.is_live(3));
        space.release(1);
        assert_eq!(space.adopt(2, 3), Adoption::Live { delete: Some(1) });
        assert_eq!(space.adopt(2, 3), Adoption::Refused, "once");
        assert!(space.is_live(3) && !space.is_live(2));
        assert!(space.contains(2), "forwarded to its copy");
    }

    #[test]
    fn a_copy_of_a_record_released_meanwhile_is_a_ghost_until_gone() {
        let mut space = space_with(&[(1, 2), (3, 0)], 3);
        let origin_seg = space.hold_origin(2).unwrap();
        space.segment_mut(3).unwrap().add_orphan(origin_seg);
        space.push_active(3, [(100, false), (100, true)].into_iter());
        space.release(1);
        space.release(2);
        assert_eq!(space.adopt(2, 3), Adoption::Ghost);
        assert!(!space.is_live(3));
        assert_eq!(
            space.end_compaction(&[]),
            vec![1],
            "the original's segment is free"
        );
        assert_eq!(space.remove(1), Vec::<Lsn>::new());
        assert!(space.contains(2), "its ghost copy is still on disk");
        space.release(4);
        assert_eq!(space.seal(3), Some(3));
        space.remove(3);
        assert!(!space.contains(2));
    }

    #[test]
    fn a_tomb_protects_targets_in_other_segments_only() {
        let space = space_with(&[(1, 2), (3, 2)], 3);
        assert!(space.protects(3, 1), "target in an earlier segment");
        assert!(!space.protects(4, 3), "target in the tomb's own segment");
        assert!(!space.protects(4, 99), "target gone");
    }

    #[test]
    fn candidates_are_pinned_and_sparse() {
        let mut space = space_with(&[(1, 4), (5, 4), (9, 4)], 9);
        space.release(1);
        space.release(2);
        space.release(3); // segment 1: 25 % live
        space.release(5); // segment 5: 75 % live
        let c = space.pin_candidates(50);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].first_lsn, 1);
        assert_eq!(c[0].live, [false, false, false, true]);
        assert_eq!(space.release(4), (true, None), "pinned: not deleted yet");
        assert_eq!(space.end_compaction(&c), vec![1]);
    }
}
