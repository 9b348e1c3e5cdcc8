//! The log's side of compaction (see `cleaner`): which part of it a round may clean (Kafka's
//! `LogCleanerManager.cleanableOffsets` and `LogToClean`), the snapshot a round works from,
//! and swapping a cleaned segment in for the segments it replaces (Kafka's
//! `UnifiedLog.replaceSegments`).
//!
//! # Crash safety of the swap (Kafka's protocol)
//!
//! 1. The round wrote and fsynced `<base>.{log,index,timeindex}.cleaned`.
//! 2. They are renamed `.swap` and the directory is fsynced: from here on recovery completes
//!    the swap instead of discarding it.
//! 3. Readers get the new segment list (the old segments are retired first, so snapshots that
//!    still list them keep reading their bytes).
//! 4. The old segments' files are renamed `.deleted`, the `.swap` files take their final
//!    names, the directory is fsynced, and the `.deleted` files are removed.
//!
//! `open` (see `recover_swaps`) removes `.cleaned` files, and for each `.swap` segment
//! removes the old segments whose base offsets it covers, then renames it into place.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cleaner::{
    self, CleanRound, CleanedSegment, CleaningCandidate, CLEANED_SUFFIX, SWAP_SUFFIX,
};
use crate::io::{remove_if_present, LogIo};
use crate::segment::{deletable_paths, read_header_at, Segment, SegmentFile};
use crate::StorageError;

use super::{sync_dir, PartitionLog, DELETED_SUFFIX};

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    cleaner::with_suffix(path, suffix)
}

impl PartitionLog {
    /// Kafka's `cleanableOffsets` and `LogToClean` for this log at `now_ms`; `None` unless the
    /// log is compacted. Reads `cleaner-offset-checkpoint`.
    pub fn cleaning_candidate(&self, now_ms: i64) -> Option<CleaningCandidate> {
        let compaction = self.config.compaction;
        if !compaction.compact {
            return None;
        }
        let log_start = self.log_start_offset;
        let leo = self.log_end_offset();
        let checkpoint = cleaner::read_checkpoint(&**self.io(), &self.dir);
        let (first_dirty, reset_checkpoint) = match checkpoint {
            Some(c) if c >= log_start && c <= leo => (c, false),
            Some(_) => (log_start, true),
            None => (log_start, false),
        };
        let active_base = self.segments[self.segments.len() - 1].base_offset;
        let sealed = &self.segments[..self.segments.len() - 1];
        // Dirty sealed segments: from the one holding the first dirty offset.
        let dirty_from = sealed
            .partition_point(|s| s.base_offset <= first_dirty)
            .saturating_sub(1);
        let dirty = sealed.get(dirty_from..).unwrap_or(&[]);
        let lag_ms = compaction.min_compaction_lag_ms.max(0);
        let lag_bound = (lag_ms > 0)
            .then(|| {
                dirty
                    .iter()
                    .find(|s| s.max_timestamp > now_ms.saturating_sub(lag_ms))
                    .map(|s| s.base_offset)
            })
            .flatten();
        // Kafka's `cleanableOffsets`: never past the last stable offset, so an ongoing
        // transaction is never cleaned.
        let uncleanable = [
            Some(self.high_watermark),
            Some(self.last_stable_offset()),
            Some(active_base),
            lag_bound,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(active_base)
        .max(first_dirty);
        // The first uncleanable segment: the one holding `uncleanable`, or the active one.
        let holder = self
            .segments
            .partition_point(|s| s.base_offset <= uncleanable)
            .saturating_sub(1);
        let first_uncleanable = self.segments[holder].base_offset;
        let from = first_dirty.min(first_uncleanable);
        let overlapping = |from: i64, to: i64| -> u64 {
            self.segments
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    let next = self.segments.get(i + 1).map_or(i64::MAX, |n| n.base_offset);
                    s.base_offset < to && next > from
                })
                .map(|(_, s)| s.size_bytes)
                .sum()
        };
        let cleanable_bytes = overlapping(from, first_uncleanable);
        let clean_bytes = self
            .segments
            .iter()
            .filter(|s| s.base_offset < first_dirty)
            .map(|s| s.size_bytes)
            .sum();
        let max_lag_ms = compaction.max_compaction_lag_ms.max(0);
        let clean_until = now_ms.saturating_sub(max_lag_ms);
        let needs_compaction_now = dirty
            .iter()
            .filter_map(|s| s.first_batch_timestamp)
            .filter(|&ts| ts > 0)
            .min()
            .is_some_and(|earliest| earliest < clean_until);
        Some(CleaningCandidate {
            first_dirty_offset: first_dirty,
            first_uncleanable_offset: first_uncleanable,
            clean_bytes,
            cleanable_bytes,
            needs_compaction_now,
            reset_checkpoint,
        })
    }

    /// The snapshot a cleaning round works from, for `candidate` (from `cleaning_candidate`
    /// under the same lock).
    pub fn begin_cleaning(&self, candidate: &CleaningCandidate, now_ms: i64) -> CleanRound {
        let sealed = &self.segments[..self.segments.len() - 1];
        let producer_last = self.producers.last_records();
        CleanRound {
            dir: self.dir.clone(),
            io: Arc::clone(self.io()),
            budget: Arc::clone(self.budget()),
            config: self.config.clone(),
            segments: sealed
                .iter()
                .filter(|s| s.base_offset < candidate.first_uncleanable_offset)
                .map(Segment::read)
                .collect(),
            first_dirty: candidate.first_dirty_offset,
            first_uncleanable: candidate.first_uncleanable_offset,
            producer_last,
            aborted_txns: {
                let mut entries: Vec<crate::txn::AbortedTxn> = self
                    .segments
                    .iter()
                    .flat_map(|s| s.shared.with_aborted(<[_]>::to_vec))
                    .filter(|e| e.first_offset < candidate.first_uncleanable_offset)
                    .collect();
                entries.sort_by_key(|e| e.first_offset);
                entries
            },
            now_ms,
        }
    }

    /// Kafka's `maybeTruncateCheckpoint`: a truncation below the cleaner checkpoint brings it
    /// down to the truncation point, so records appended again there count as dirty. Done
    /// before the truncation: a lower checkpoint is always safe (it only means more to clean).
    pub(crate) fn truncate_cleaner_checkpoint(&self, offset: i64) -> Result<(), StorageError> {
        if !self.config.compaction.compact {
            return Ok(());
        }
        match cleaner::read_checkpoint(&**self.io(), &self.dir) {
            Some(checkpoint) if checkpoint > offset => {
                cleaner::write_checkpoint(&**self.io(), &self.dir, offset)
            }
            _ => Ok(()),
        }
    }

    /// Records where the next round's dirty section starts (`cleaner-offset-checkpoint`).
    pub fn checkpoint_cleaned(&self, offset: i64) -> Result<(), StorageError> {
        cleaner::write_checkpoint(&**self.io(), &self.dir, offset)
    }

    /// Kafka's `replaceSegments`: swaps `cleaned` in for the segments it was cleaned from
    /// (module docs). Answers `false`, removing the cleaned files, when those segments are no
    /// longer all in the log (retention or truncation got there first). A failure after the
    /// swap became durable poisons the log: memory and disk may disagree, and a reopen
    /// completes the swap from the `.swap` files.
    pub fn replace_segments(&mut self, cleaned: CleanedSegment) -> Result<bool, StorageError> {
        let base = cleaned.base_offset();
        let final_paths = SegmentFile::ALL.map(|f| f.path(&self.dir, base));
        let discard = |io: &dyn LogIo| {
            for path in &final_paths {
                let _ = remove_if_present(io, &suffixed(path, CLEANED_SUFFIX));
                let _ = remove_if_present(io, &suffixed(path, SWAP_SUFFIX));
            }
        };
        if let Err(e) = self.check_writable() {
            discard(&**self.io());
            return Err(e);
        }
        let start = self
            .segments
            .iter()
            .position(|s| Arc::ptr_eq(&s.shared, &cleaned.replaces[0]));
        let count = cleaned.replaces.len();
        let in_place = start.is_some_and(|start| {
            start + count < self.segments.len()
                && cleaned
                    .replaces
                    .iter()
                    .zip(&self.segments[start..start + count])
                    .all(|(old, s)| Arc::ptr_eq(old, &s.shared))
        });
        let (Some(start), true) = (start, in_place) else {
            discard(&**self.io());
            return Ok(false);
        };
        assert_eq!(
            self.segments[start].base_offset, base,
            "a cleaned segment is named by the first segment it replaces"
        );
        // 2. `.cleaned` -> `.swap`, durably. Until the directory fsync returns the old files
        // are intact and recovery discards whichever suffix it finds; a failure here leaves
        // the log as it was.
        let swapped = (|| {
            for path in &final_paths {
                self.io().rename(
                    &suffixed(path, CLEANED_SUFFIX),
                    &suffixed(path, SWAP_SUFFIX),
                )?;
            }
            sync_dir(&**self.io(), &self.dir)
        })();
        if let Err(e) = swapped {
            discard(&**self.io());
            return Err(e);
        }
        // 3. Readers: old segments retired, then the new list.
        let result = (|| {
            for old in &self.segments[start..start + count] {
                old.shared.retire(self.budget())?;
            }
            let mut segment = cleaned.segment;
            // The aborted transactions whose ABORT marker the clean kept with some of their
            // batches (Kafka's cleaned transaction index): one whose data is all gone needs no
            // entry, and its marker goes once its delete horizon passed.
            let aborted = cleaned.aborted;
            segment.shared.set_aborted(aborted.clone());
            segment.seal();
            let removed: Vec<Segment> = self
                .segments
                .splice(start..start + count, [segment])
                .collect();
            self.publish_segments();
            // 4. Files.
            for old in &removed {
                for path in deletable_paths(&self.dir, old.base_offset) {
                    match self.io().rename(&path, &suffixed(&path, DELETED_SUFFIX)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StorageError::from(e)),
                    }
                }
            }
            for path in &final_paths {
                self.io().rename(&suffixed(path, SWAP_SUFFIX), path)?;
            }
            // Rebuilt from the log at open if a crash interrupts this.
            crate::recovery::sync_txn_index(&**self.io(), &self.dir, base, &aborted, true)?;
            sync_dir(&**self.io(), &self.dir)?;
            for old in &removed {
                for path in deletable_paths(&self.dir, old.base_offset) {
                    remove_if_present(&**self.io(), &suffixed(&path, DELETED_SUFFIX))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.poison();
            return Err(e);
        }
        self.validate();
        Ok(true)
    }
}

/// Completes or discards what a crash left of a swap (Kafka's `LogLoader`): `.cleaned` files
/// go; a `.swap` segment replaces every segment whose base offset lies in its offset range
/// (at least its own base) and takes its final name, with the index files it has (missing ones
/// are rebuilt by the load that follows, since the old ones were removed). Answers whether
/// any name changed. `names` is the directory listing; it is not updated.
pub(crate) fn recover_swaps(
    io: &dyn LogIo,
    dir: &Path,
    names: &[String],
) -> Result<bool, StorageError> {
    let mut changed = false;
    let mut min_cleaned_base: Option<i64> = None;
    for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        if let Some(base) = base_of(name, CLEANED_SUFFIX) {
            min_cleaned_base = Some(min_cleaned_base.map_or(base, |m| m.min(base)));
        }
        changed |= remove_if_present(io, &dir.join(name))?;
    }
    let mut swap_bases: Vec<i64> = names
        .iter()
        .filter(|n| n.ends_with(&format!(".log{SWAP_SUFFIX}")))
        .filter_map(|n| base_of(n, SWAP_SUFFIX))
        .collect();
    swap_bases.sort_unstable();
    // A swap whose group still had `.cleaned` files (a crash during the renames to `.swap`,
    // whose directory fsync never returned) is incomplete: discard it (Kafka's KAFKA-6264).
    swap_bases.retain(|b| min_cleaned_base.is_none_or(|m| *b < m));
    for name in names.iter().filter(|n| n.ends_with(SWAP_SUFFIX)) {
        let Some(base) = base_of(name, SWAP_SUFFIX) else {
            continue;
        };
        if min_cleaned_base.is_some_and(|m| base >= m) {
            changed |= remove_if_present(io, &dir.join(name))?;
        } else if !swap_bases.contains(&base) {
            // An index whose log already took its final name (a crash during step 4, after
            // the old files were renamed away): it belongs to that log.
            if let Some(final_name) = name.strip_suffix(SWAP_SUFFIX) {
                io.rename(&dir.join(name), &dir.join(final_name))?;
                changed = true;
            }
        }
    }
    let log_bases: Vec<i64> = names
        .iter()
        .filter_map(|n| super::parse_log_file_name(n))
        .collect();
    for base in swap_bases {
        let swap_log = suffixed(&SegmentFile::Log.path(dir, base), SWAP_SUFFIX);
        let next_offset = swap_next_offset(io, &swap_log, base)?;
        for &old in log_bases
            .iter()
            .filter(|&&b| b >= base && b < next_offset.max(base + 1))
        {
            for path in deletable_paths(dir, old) {
                remove_if_present(io, &path)?;
            }
        }
        for file in SegmentFile::ALL {
            let path = file.path(dir, base);
            let swap = suffixed(&path, SWAP_SUFFIX);
            if swap.exists() {
                io.rename(&swap, &path)?;
            }
        }
        tracing::info!(base_offset = base, dir = %dir.display(), "completed an interrupted segment swap");
        changed = true;
    }
    Ok(changed)
}

/// `<20 digits>.<ext><suffix>` -> the base offset.
fn base_of(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    let (digits, _ext) = stem.split_once('.')?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Next offset after the last whole batch of a swap log (its base when it holds none).
fn swap_next_offset(io: &dyn LogIo, path: &Path, base: i64) -> Result<i64, StorageError> {
    let file = io.open(path, crate::io::OpenMode::Read)?;
    let size = io.size_bytes(&file)?;
    let mut position = 0u64;
    let mut next = base;
    while position < size {
        match read_header_at(crate::io::IoFile::new(io, &file), position, size) {
            Ok(header) => {
                next = next.max(header.last_offset().saturating_add(1));
                position += header.size_bytes() as u64;
            }
            Err(StorageError::Io(e)) => return Err(StorageError::Io(e)),
            Err(_) => break,
        }
    }
    Ok(next)
}
