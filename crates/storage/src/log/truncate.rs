//! Removing records from the start of a log: `delete_segments_before` for retention and
//! `advance_log_start_offset` for DeleteRecords, after Kafka's `UnifiedLog.deleteOldSegments`
//! and `maybeIncrementLogStartOffset`.
//!
//! Each runs in three phases:
//!
//! 1. **Plan**: the new log start offset is made durable (`log_start`) before anyone sees it.
//! 2. **Publish**: the writer's state changes in memory and readers get it, offsets first and
//!    then the segment list (see `reader`).
//! 3. **Files**: the deleted segments are retired for the snapshots still holding them (see
//!    `segment`), then their three files are renamed `<name>.deleted`, the directory is
//!    fsynced, and they are removed, as Kafka does; `open` removes what a crash left behind.
//!    A failure here poisons the log: memory and disk disagree, and a reopen recovers from
//!    what is on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::remove_if_present;
use crate::log_start;
use crate::segment::{Segment, SegmentFile};
use crate::StorageError;

use super::{sync_dir, PartitionLog, DELETED_SUFFIX};

impl PartitionLog {
    /// Retention (Kafka's `deleteOldSegments`): deletes every sealed segment whose records all
    /// lie below `offset` and below the high watermark, oldest first; the active segment never
    /// goes. The log start offset moves to the first remaining segment's base if it was below.
    /// Returns how many segments were deleted. Snapshots taken before keep reading the deleted
    /// segments (see `segment`).
    pub fn delete_segments_before(&mut self, offset: i64) -> Result<usize, StorageError> {
        self.check_writable()?;
        let limit = offset.min(self.high_watermark);
        let count = self.deletable_before(limit);
        if count == 0 {
            return Ok(0);
        }
        let log_start_offset = self.log_start_offset.max(self.segments[count].base_offset);
        self.delete_first_segments(count, log_start_offset)?;
        Ok(count)
    }

    /// DeleteRecords (Kafka's `maybeIncrementLogStartOffset`): records below `offset` become
    /// unreadable at once, durably, and every sealed segment wholly below it is deleted (as
    /// `delete_segments_before`). An offset at or below the current start changes nothing.
    /// Fails with `OffsetOutOfRange` (whose `log_end_offset` is then the high watermark, the
    /// end of the allowed range) for an offset past the high watermark, as Kafka refuses to
    /// delete records that are not committed.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), StorageError> {
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
        self.delete_first_segments(count, offset)
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
    /// `log_start_offset`.
    fn delete_first_segments(
        &mut self,
        count: usize,
        log_start_offset: i64,
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
            self.remove_deleted(&removed)?;
            Ok(())
        })();
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Renames every file of `segments` to `<name>.deleted`; durable after the directory fsync.
    fn rename_deleted(&self, segments: &[Segment]) -> io::Result<()> {
        for segment in segments {
            for file in SegmentFile::ALL {
                let path = file.path(&self.dir, segment.base_offset);
                match self.io().rename(&path, &deleted_path(&path)) {
                    Ok(()) => {}
                    // A missing index of a segment never read since open: nothing to delete.
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
            for file in SegmentFile::ALL {
                let path = file.path(&self.dir, segment.base_offset);
                remove_if_present(&**self.io(), &deleted_path(&path))?;
            }
        }
        Ok(())
    }
}

fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}
