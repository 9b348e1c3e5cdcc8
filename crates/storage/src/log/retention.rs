//! Retention: Kafka's `UnifiedLog.deleteOldSegments`. Whole segments go, oldest first, while a
//! condition holds for each:
//!
//! - **log start breached** (any `cleanup.policy`): the next segment starts at or below the log
//!   start offset, which DeleteRecords may have moved past this segment;
//! - **size** (`retention.bytes`, policy `delete`): deleting the segment still leaves the log at
//!   or above `retention.bytes`;
//! - **time** (`retention.ms`, policy `delete`): the segment's largest timestamp (its file's
//!   modification time when no batch has a timestamp) is more than `retention.ms` old.
//!
//! A segment is deletable only if everything in it is below the high watermark, so the log
//! start never passes it, and an empty active segment never is. When every segment qualifies,
//! the active one included, the log rolls first (as Kafka's `deleteSegments` does), so the log
//! keeps an empty active segment at its end offset and retention is not held up by a segment
//! that stopped growing.
//!
//! Deleted segments' files are renamed `.deleted` at once and removed `file.delete.delay.ms`
//! later (`remove_expired_deletions`), as Kafka's `LocalLog.deleteSegmentFiles` schedules them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use crate::io::{remove_if_present, LogIo};
use crate::segment::{deletable_paths, Segment, SegmentFile};
use crate::{LogConfig, StorageError};

use super::truncate::deleted_path;
use super::PartitionLog;

/// Files of deleted segments waiting to be removed.
#[derive(Debug)]
pub(super) struct PendingDeletion {
    /// When the files may go (deletion time + `file.delete.delay.ms`).
    due_ms: i64,
    /// Base offsets of the segments whose `.deleted` files wait.
    base_offsets: Vec<i64>,
}

/// `.deleted` files due for removal, taken from their log (`take_expired_deletions`).
#[derive(Debug)]
pub struct ExpiredFiles {
    io: Arc<dyn LogIo>,
    paths: Vec<PathBuf>,
}

impl ExpiredFiles {
    /// Removes the files. Not fsynced: a removal a crash undoes leaves a `.deleted` file,
    /// which `open` removes; so does a removal that fails here.
    pub fn remove(self) -> Result<(), StorageError> {
        for path in &self.paths {
            remove_if_present(&*self.io, path)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Which of Kafka's deletion conditions a pass applies.
enum Condition {
    LogStartBreached,
    /// Bytes still to shed: the log's size minus `retention.bytes`.
    Size {
        excess_bytes: i64,
    },
    Time {
        now_ms: i64,
        retention_ms: i64,
    },
}

/// Kafka's `LogConfig.randomSegmentJitter`: a random amount below
/// `min(segment.jitter.ms, segment.ms)`, or 0 without jitter.
pub(super) fn random_roll_jitter_ms(config: &LogConfig) -> i64 {
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    if config.segment_jitter_ms <= 0 || bound <= 0 {
        return 0;
    }
    // A fresh `RandomState` is seeded from the OS: randomness enough to spread rolls.
    let random = RandomState::new().build_hasher().finish();
    // `bound` is positive, so both conversions are exact.
    i64::try_from(random % bound.unsigned_abs()).unwrap_or(0)
}

impl PartitionLog {
    /// Kafka's `deleteOldSegments`: deletes the segments the log start, `retention.bytes` and
    /// `retention.ms` (the last two only under `cleanup.policy=delete`) no longer keep, at
    /// `now_ms`; returns how many went. See the module docs.
    pub fn delete_old_segments(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        self.check_writable()?;
        let mut deleted = self.delete_while(Condition::LogStartBreached, now_ms)?;
        if self.config.retention_enabled {
            let retention_bytes = self.config.retention_bytes;
            let size_bytes = self.size_bytes();
            if retention_bytes >= 0 && size_bytes >= retention_bytes {
                let excess_bytes = size_bytes - retention_bytes;
                deleted += self.delete_while(Condition::Size { excess_bytes }, now_ms)?;
            }
            let retention_ms = self.config.retention_ms;
            if retention_ms >= 0 {
                deleted += self.delete_while(
                    Condition::Time {
                        now_ms,
                        retention_ms,
                    },
                    now_ms,
                )?;
            }
        }
        Ok(deleted)
    }

    /// Bytes of every segment (Kafka's `UnifiedLog.size`).
    pub fn size_bytes(&self) -> i64 {
        let total: u64 = self.segments.iter().map(|s| s.size_bytes).sum();
        i64::try_from(total).unwrap_or(i64::MAX)
    }

    /// Kafka's `deletableSegments` + `deleteSegments` for one condition.
    fn delete_while(
        &mut self,
        mut condition: Condition,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        let leo = self.log_end_offset();
        let mut count = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let next = self.segments.get(i + 1);
            let upper_bound_offset = next.map_or(leo, |n| n.base_offset);
            let last_and_empty = next.is_none() && segment.size_bytes == 0;
            // Nothing at or past the high watermark goes, so the log start never passes it.
            if self.high_watermark < upper_bound_offset
                || last_and_empty
                || !self.breaches(&mut condition, segment, next)?
            {
                break;
            }
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            // A log always has an active segment: roll one at the end first.
            self.roll(leo, now_ms)?;
        }
        let new_start = self.log_start_offset.max(self.segments[count].base_offset);
        for segment in &self.segments[..count] {
            tracing::info!(
                dir = %self.dir.display(),
                base_offset = segment.base_offset,
                size_bytes = segment.size_bytes,
                largest_timestamp = segment.max_timestamp,
                reason = condition.reason(),
                "deleting segment"
            );
        }
        self.delete_first_segments(count, new_start, now_ms)?;
        Ok(count)
    }

    fn breaches(
        &self,
        condition: &mut Condition,
        segment: &Segment,
        next: Option<&Segment>,
    ) -> Result<bool, StorageError> {
        Ok(match condition {
            Condition::LogStartBreached => {
                next.is_some_and(|n| n.base_offset <= self.log_start_offset)
            }
            Condition::Size { excess_bytes } => {
                let size_bytes = i64::try_from(segment.size_bytes).unwrap_or(i64::MAX);
                let breached = *excess_bytes - size_bytes >= 0;
                if breached {
                    *excess_bytes -= size_bytes;
                }
                breached
            }
            Condition::Time {
                now_ms,
                retention_ms,
            } => {
                let largest_timestamp = if segment.max_timestamp >= 0 {
                    segment.max_timestamp
                } else {
                    let path = SegmentFile::Log.path(&self.dir, segment.base_offset);
                    self.io().modified_ms(&path)?
                };
                if *now_ms < largest_timestamp {
                    tracing::debug!(
                        dir = %self.dir.display(),
                        base_offset = segment.base_offset,
                        largest_timestamp,
                        "segment has future timestamps and is not eligible for time retention"
                    );
                }
                now_ms.saturating_sub(largest_timestamp) > *retention_ms
            }
        })
    }

    /// Queues the `.deleted` files of `segments` for removal `file.delete.delay.ms` after
    /// `now_ms`.
    pub(super) fn schedule_removal(&mut self, segments: &[Segment], now_ms: i64) {
        self.pending_deletions.push(PendingDeletion {
            due_ms: now_ms.saturating_add(self.config.file_delete_delay_ms.max(0)),
            base_offsets: segments.iter().map(|s| s.base_offset).collect(),
        });
    }

    /// Removes the `.deleted` files whose `file.delete.delay.ms` has passed by `now_ms`
    /// (`take_expired_deletions`, then `ExpiredFiles::remove`).
    pub fn remove_expired_deletions(&mut self, now_ms: i64) -> Result<(), StorageError> {
        self.take_expired_deletions(now_ms).remove()
    }

    /// The `.deleted` files whose `file.delete.delay.ms` has passed by `now_ms`, no longer
    /// queued here: the caller removes them (`ExpiredFiles::remove`) without holding the log's
    /// lock, since nothing reads or renames them any more.
    pub fn take_expired_deletions(&mut self, now_ms: i64) -> ExpiredFiles {
        let mut paths = Vec::new();
        self.pending_deletions.retain(|pending| {
            if pending.due_ms > now_ms {
                return true;
            }
            for &base_offset in &pending.base_offsets {
                for path in deletable_paths(&self.dir, base_offset) {
                    paths.push(deleted_path(&path));
                }
            }
            false
        });
        ExpiredFiles {
            io: Arc::clone(self.io()),
            paths,
        }
    }

    /// When the next queued `.deleted` files may be removed, if any wait.
    pub fn next_removal_due_ms(&self) -> Option<i64> {
        self.pending_deletions.iter().map(|p| p.due_ms).min()
    }
}

impl Condition {
    fn reason(&self) -> &'static str {
        match self {
            Condition::LogStartBreached => "log start offset breach",
            Condition::Size { .. } => "retention.bytes breach",
            Condition::Time { .. } => "retention.ms breach",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Jitter stays below min(segment.jitter.ms, segment.ms) and is 0 without jitter.
    #[test]
    fn roll_jitter_is_bounded() {
        let mut config = LogConfig::default();
        assert_eq!(random_roll_jitter_ms(&config), 0);
        config.segment_jitter_ms = 50;
        config.segment_ms = 10;
        for _ in 0..100 {
            assert!((0..10).contains(&random_roll_jitter_ms(&config)));
        }
        config.segment_ms = 1000;
        for _ in 0..100 {
            assert!((0..50).contains(&random_roll_jitter_ms(&config)));
        }
    }
}
