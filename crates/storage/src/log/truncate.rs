//! Removing records: from the end (`truncate_to`, which replication calls when a follower's log
//! diverged from its leader's) and from the start (`delete_segments_before` for retention,
//! `advance_log_start_offset` for DeleteRecords). After Kafka's `UnifiedLog.truncateTo`,
//! `LocalLog.truncateTo`, `UnifiedLog.deleteOldSegments` and `maybeIncrementLogStartOffset`.
//!
//! Each runs in three phases:
//!
//! 1. **Plan**, reading only: what stays, and the new state of a segment cut in two. A failure
//!    here changes nothing.
//! 2. **Publish**: the writer's state changes in memory and readers get it, offsets first and
//!    then the segment list (see `reader`). A truncation then invalidates older snapshots.
//! 3. **Files**: renames, cuts, fsyncs, removals. A failure here poisons the log: memory and
//!    disk disagree, and a reopen recovers from what is on disk.
//!
//! # Crash safety
//!
//! - A deleted segment's three files are renamed `<name>.deleted`, the directory is fsynced,
//!   then they are removed, as Kafka does; `open` removes what a crash left behind.
//! - `truncate_to` makes the removal of the later segments durable before it cuts the segment
//!   holding the target. A crash in between leaves a prefix of the old log that is longer than
//!   asked (replication truncates it again), never a cut segment followed by segments that
//!   should have gone, which would be a hole in the offsets with stale records after it.
//! - A new log start offset is checkpointed (`log_start`) before anyone sees it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::index;
use crate::io::{remove_if_present, OpenMode};
use crate::log_start;
use crate::producer_state::ProducerStateManager;
use crate::reader::scan_batches;
use crate::recovery::{replay_batch, sync_txn_index};
use crate::segment::{
    create_files, deletable_paths, ActiveFiles, Segment, SegmentFile, SegmentRead,
};
use crate::StorageError;

use super::{sync_dir, PartitionLog, DELETED_SUFFIX};

impl PartitionLog {
    /// Kafka's `UnifiedLog.truncateTo`: removes every batch whose last offset is at or past
    /// `target_offset`. A batch holding the target goes whole, so the log then ends at or below
    /// it. Segments starting past the target are deleted, the one holding it is cut at the
    /// batch boundary (with its indexes) and becomes the active segment; producer state is
    /// rebuilt from the batches that stay (every batch header is read; producer snapshots past
    /// the new end are removed, earlier ones are not used here), leader epochs starting at or past the new end are
    /// forgotten, and the high watermark and log start offset come down to the new end if they
    /// were past it. A target below the first segment empties the log, which restarts at the
    /// target. A target at or past the log end changes nothing.
    ///
    /// Snapshots taken before the call fail their next read with `SnapshotStale`
    /// (`LogReader::with_snapshot` retries on a new one).
    ///
    /// # Panics
    /// On a negative target: the caller computes it from offsets, so that is our bug.
    pub fn truncate_to(&mut self, target_offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        assert!(
            target_offset >= 0,
            "truncation to a negative offset {target_offset}"
        );
        if target_offset >= self.log_end_offset() {
            return Ok(());
        }
        self.truncate_cleaner_checkpoint(target_offset)?;
        if target_offset < self.segments[0].base_offset {
            return self.truncate_fully_and_start_at(target_offset);
        }
        let containing = self
            .segments
            .partition_point(|s| s.base_offset <= target_offset)
            - 1;

        // 1. Plan: producer state from every batch that stays, and the cut.
        let mut producers = ProducerStateManager::default();
        for segment in &self.segments[..containing] {
            replay_batches(&segment.read(), self.budget(), &mut producers)?;
        }
        let mut segment = plan_cut(
            &self.segments[containing],
            self.budget(),
            &self.dir,
            self.io(),
            target_offset,
            &mut producers,
        )?;

        // 2. Publish.
        let mut removed: Vec<Segment> = self.segments.drain(containing..).collect();
        let old_containing = removed.remove(0);
        // The cut below fsyncs all three files, whatever was written to them before.
        segment.files = Some(Arc::new(ActiveFiles::new(
            self.budget(),
            self.io(),
            &self.dir,
            segment.base_offset,
            false,
        )));
        segment.publish();
        let cut_stats = segment.stats();
        self.segments.push(segment);
        let leo = self.log_end_offset();
        let log_start_moved = self.log_start_offset > leo;
        self.log_start_offset = self.log_start_offset.min(leo);
        self.high_watermark = self.high_watermark.min(leo);
        self.producers = producers;
        self.producers.on_high_watermark(self.high_watermark);
        self.publish_producers(None);
        // The cut below is fsynced, but bytes appended past the new end after this are not.
        self.recovery_point = self.recovery_point.min(leo);
        let epochs_changed = self.epochs.truncate_from_end(leo);
        self.validate();
        self.publish_segments();
        if epochs_changed {
            self.publish_epochs();
        }
        self.shared.begin_truncation();
        drop(old_containing);

        // 3. Files.
        let result = (|| {
            if log_start_moved {
                log_start::write(&**self.io(), &self.dir, self.log_start_offset)?;
            }
            if !removed.is_empty() {
                self.rename_deleted(&removed)?;
                sync_dir(&**self.io(), &self.dir)?;
            }
            let base_offset = self.active_base_offset();
            for (file, size_bytes) in [
                (SegmentFile::Log, cut_stats.size_bytes),
                (
                    SegmentFile::OffsetIndex,
                    cut_stats.offset_index_entries * index::OFFSET_ENTRY_BYTES,
                ),
                (
                    SegmentFile::TimeIndex,
                    cut_stats.time_index_entries * index::TIME_ENTRY_BYTES,
                ),
            ] {
                self.cut_file(&file.path(&self.dir, base_offset), size_bytes)?;
            }
            // Producer state was rebuilt; a snapshot past the new end would bring back what
            // the truncation removed.
            super::producer_snapshots::remove_where(&**self.io(), &self.dir, |o| o > leo)?;
            let aborted = self.segments[self.segments.len() - 1]
                .shared
                .with_aborted(<[_]>::to_vec);
            sync_txn_index(&**self.io(), &self.dir, base_offset, &aborted, true)?;
            if epochs_changed {
                self.epochs.write()?;
            }
            self.remove_deleted(&removed)?;
            Ok(())
        })();
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Kafka's `truncateFullyAndStartAt`: every segment goes and the log restarts empty at
    /// `offset`, which becomes its start, high watermark and end. A follower starts its copy
    /// at the leader's log start offset this way.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), StorageError> {
        self.check_writable()?;
        // 2. Publish (nothing to plan). The new segment's files are created in phase 3; no
        // reader opens the files of an empty segment.
        let removed: Vec<Segment> = self.segments.drain(..).collect();
        let mut segment = Segment::empty(&self.dir, offset, self.io());
        segment.files = Some(Arc::new(ActiveFiles::new(
            self.budget(),
            self.io(),
            &self.dir,
            offset,
            false,
        )));
        segment.publish();
        self.segments.push(segment);
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.producers = ProducerStateManager::default();
        self.publish_producers(None);
        self.recovery_point = self.recovery_point.min(offset);
        self.epochs.clear();
        self.validate();
        self.publish_segments();
        self.publish_epochs();
        self.shared.begin_truncation();

        // 3. Files. The start first: a crash after it finds either the old segments (which
        // start past `offset`, so the checkpoint does not apply) or none (and restarts the
        // log at the checkpointed start).
        let result = (|| {
            log_start::write(&**self.io(), &self.dir, offset)?;
            super::producer_snapshots::remove_where(&**self.io(), &self.dir, |o| o >= offset)?;
            self.rename_deleted(&removed)?;
            sync_dir(&**self.io(), &self.dir)?;
            create_files(self.budget(), &**self.io(), &self.dir, offset)?;
            sync_dir(&**self.io(), &self.dir)?;
            self.epochs.write()?;
            self.remove_deleted(&removed)?;
            Ok(())
        })();
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Retention (Kafka's `deleteOldSegments`): deletes every sealed segment whose records all
    /// lie below `offset` and below the high watermark, oldest first; the active segment never
    /// goes. The log start offset moves to the first remaining segment's base if it was below.
    /// Returns how many segments were deleted. Snapshots taken before keep reading the deleted
    /// segments (see `segment`); their files are removed `file.delete.delay.ms` after `now_ms`
    /// (`remove_expired_deletions`).
    pub fn delete_segments_before(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        self.check_writable()?;
        let limit = offset.min(self.high_watermark);
        let count = self.deletable_before(limit);
        if count == 0 {
            return Ok(0);
        }
        let log_start_offset = self.log_start_offset.max(self.segments[count].base_offset);
        self.delete_first_segments(count, log_start_offset, now_ms)?;
        Ok(count)
    }

    /// DeleteRecords (Kafka's `maybeIncrementLogStartOffset`): records below `offset` become
    /// unreadable at once, durably, and every sealed segment wholly below it is deleted (as
    /// `delete_segments_before`). An offset at or below the current start changes nothing.
    /// Fails with `OffsetOutOfRange` (whose `log_end_offset` is then the high watermark, the
    /// end of the allowed range) for an offset past the high watermark, as Kafka refuses to
    /// delete records that are not committed.
    pub fn advance_log_start_offset(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        self.check_writable()?;
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if offset > self.high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.high_watermark,
            });
        }
        let count = self.deletable_before(offset);
        self.delete_first_segments(count, offset, now_ms)
    }

    /// How many segments from the first lie wholly below `offset`: each is followed by a
    /// segment starting at or below it, so the active segment never counts.
    fn deletable_before(&self, offset: i64) -> usize {
        self.segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset <= offset)
            .count()
    }

    /// Deletes the first `count` segments (all sealed) and moves the log start offset to
    /// `log_start_offset`. The segments' files are renamed `.deleted` now and removed once
    /// `file.delete.delay.ms` has passed since `now_ms` (`take_expired_deletions`; at once when
    /// it is 0), as Kafka's `LocalLog.deleteSegmentFiles` schedules them.
    pub(super) fn delete_first_segments(
        &mut self,
        count: usize,
        log_start_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        assert!(
            count < self.segments.len(),
            "deleting {count} of {} segments would delete the active one",
            self.segments.len()
        );
        // 1. Plan: the new start is durable before anyone sees it.
        if log_start_offset != self.log_start_offset {
            if let Err(e) = log_start::write(&**self.io(), &self.dir, log_start_offset) {
                self.poison();
                return Err(e);
            }
        }

        // 2. Publish.
        self.log_start_offset = log_start_offset;
        let removed: Vec<Segment> = self.segments.drain(..count).collect();
        let epochs_changed = self.epochs.truncate_from_start(log_start_offset);
        self.validate();
        if count > 0 {
            self.publish_segments();
        }
        if epochs_changed {
            self.publish_epochs();
        }

        // 3. Files.
        let result = (|| {
            for segment in &removed {
                // No new snapshot can reach the segment now; one taken earlier still holds it
                // (a second reference besides ours), and reads on through retired handles.
                if Arc::strong_count(&segment.shared) > 1 {
                    segment.shared.retire(self.budget())?;
                }
            }
            if !removed.is_empty() {
                self.rename_deleted(&removed)?;
                sync_dir(&**self.io(), &self.dir)?;
            }
            if epochs_changed {
                self.epochs.write()?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.poison();
            return result;
        }
        if removed.is_empty() {
            return Ok(());
        }
        if self.config.file_delete_delay_ms > 0 {
            self.schedule_removal(&removed, now_ms);
        } else if let Err(e) = self.remove_deleted(&removed) {
            // The deletion itself is done and durable; `open` removes what is left.
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing deleted segment files");
        }
        Ok(())
    }

    pub(super) fn active_base_offset(&self) -> i64 {
        self.segments[self.segments.len() - 1].base_offset
    }

    /// Renames every file of `segments` to `<name>.deleted`; durable after the directory fsync.
    fn rename_deleted(&self, segments: &[Segment]) -> io::Result<()> {
        for segment in segments {
            for path in deletable_paths(&self.dir, segment.base_offset) {
                match self.io().rename(&path, &deleted_path(&path)) {
                    Ok(()) => {}
                    // A missing index of a segment never read since open, or a `.txnindex`
                    // never created: nothing to delete.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Removes the `.deleted` files `rename_deleted` left. Not fsynced: a removal a crash
    /// undoes leaves a `.deleted` file, which `open` removes.
    fn remove_deleted(&self, segments: &[Segment]) -> io::Result<()> {
        for segment in segments {
            for path in deletable_paths(&self.dir, segment.base_offset) {
                remove_if_present(&**self.io(), &deleted_path(&path))?;
            }
        }
        Ok(())
    }

    /// Cuts a file of the segment being truncated to `size_bytes`, durably.
    fn cut_file(&self, path: &Path, size_bytes: u64) -> io::Result<()> {
        let file = self
            .budget()
            .open_transient(&**self.io(), path, OpenMode::ReadWrite)?;
        self.io().set_len(&file, size_bytes)?;
        self.io().sync_data(&file)
    }
}

pub(super) fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Feeds every batch of a segment to `producers`, as recovery does (its aborted transactions
/// stay as they are: the segment stays whole).
pub(super) fn replay_batches(
    segment: &SegmentRead,
    budget: &Arc<crate::FileBudget>,
    producers: &mut ProducerStateManager,
) -> Result<(), StorageError> {
    let size_bytes = segment.stats.size_bytes;
    let mut aborted = crate::recovery::ReplayedTxns::default();
    segment.with_log(budget, |file| {
        let mut position = 0u64;
        let mut replayed = Ok(());
        scan_batches(file, 0, size_bytes, |header| {
            replayed = replay_batch(file, position, header, Some(&mut *producers), &mut aborted);
            position += header.size_bytes() as u64;
            replayed.is_err()
        })?;
        replayed
    })
}

/// Works out how truncating at `target_offset` cuts `old`, the segment holding it: the batches
/// that end below the target stay (and feed `producers`), and the indexes keep the entries
/// that point at them. Reads only; the result is the segment's state after the cut, with a new
/// shared side (snapshots taken before keep the old one).
fn plan_cut(
    old: &Segment,
    budget: &Arc<crate::FileBudget>,
    dir: &Path,
    io: &Arc<dyn crate::io::LogIo>,
    target_offset: i64,
    producers: &mut ProducerStateManager,
) -> Result<Segment, StorageError> {
    let read = old.read();
    let mut segment = Segment::empty(dir, old.base_offset, io);
    let mut aborted = crate::recovery::ReplayedTxns::default();
    read.with_log(budget, |file| {
        let mut replayed = Ok(());
        scan_batches(file, 0, read.stats.size_bytes, |header| {
            if header.last_offset() >= target_offset {
                return true;
            }
            segment.note_batch(header);
            replayed = replay_batch(
                file,
                segment.size_bytes,
                header,
                Some(&mut *producers),
                &mut aborted,
            );
            segment.size_bytes += header.size_bytes() as u64;
            replayed.is_err()
        })?;
        replayed
    })?;
    // Kafka's `TransactionIndex.truncateTo`: entries of markers at or past the target go.
    // The entries kept are the old ones, not those replayed: a transaction that began in a
    // segment deleted since open would replay with a later first offset.
    drop(aborted);
    let kept = old.shared.with_aborted(|entries| {
        entries
            .iter()
            .filter(|e| e.last_offset < target_offset)
            .copied()
            .collect()
    });
    segment.shared.set_aborted(kept);
    let relative_target = target_offset - old.base_offset;
    if read.stats.offset_index_entries > 0 {
        segment.offset_index_entries =
            read.with_file(budget, SegmentFile::OffsetIndex, |file| {
                Ok(index::offset_entries_below(
                    file,
                    read.stats.offset_index_entries,
                    relative_target,
                )?)
            })?;
    }
    if read.stats.time_index_entries > 0 {
        let (entries, last_timestamp) = read.with_file(budget, SegmentFile::TimeIndex, |file| {
            let entries =
                index::time_entries_below(file, read.stats.time_index_entries, relative_target)?;
            let last_timestamp = match entries.checked_sub(1) {
                Some(last) => index::read_time_entry(file, last)?.0,
                None => -1,
            };
            Ok((entries, last_timestamp))
        })?;
        segment.time_index_entries = entries;
        // New time entries must exceed the last one kept.
        segment.index.last_time_entry_timestamp = last_timestamp;
    }
    // As Kafka's `LogSegment.truncateTo`, the next index entry waits a full interval.
    segment.index.bytes_since_last_entry = 0;
    Ok(segment)
}
