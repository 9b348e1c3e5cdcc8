//! Leader-epoch cache and its `leader-epoch-checkpoint` file (Kafka's `LeaderEpochFileCache`
//! and `LeaderEpochCheckpointFile`): text, "0\n<count>\n<epoch> <startOffset>\n...".

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::{read_whole_file, replace_file, LogIo, WholeFile};
use crate::StorageError;

pub(crate) const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// The checkpoint is tiny; a bigger file is not ours and is ignored (rebuilt from batches).
const CHECKPOINT_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The first offset written under a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub(crate) struct EpochCache {
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<EpochEntry>,
    /// What the checkpoint file holds, as loaded or last written (`None`: unknown, after a load
    /// that found it missing or unreadable, or a failed write). `write` skips a file that
    /// already holds the entries, so the truncation every open applies to an empty log's epoch
    /// and the leader epoch assigned again right after cost no I/O.
    persisted: Option<Vec<EpochEntry>>,
    path: PathBuf,
    /// The log's file backend.
    io: Arc<dyn LogIo>,
}

impl EpochCache {
    /// Loads the checkpoint. A missing or malformed file yields an empty cache: recovery
    /// re-derives the entries from batch headers, so nothing is lost.
    pub(crate) fn load(io: &Arc<dyn LogIo>, dir: &Path) -> EpochCache {
        let path = dir.join(CHECKPOINT_FILE);
        let persisted = match read_whole_file(&**io, &path, CHECKPOINT_BYTES_MAX) {
            Ok(WholeFile::Bytes(bytes)) => std::str::from_utf8(&bytes).ok().and_then(parse),
            _ => None,
        };
        EpochCache {
            entries: persisted.clone().unwrap_or_default(),
            persisted,
            path,
            io: Arc::clone(io),
        }
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Kafka's `assign`: records that `epoch` starts at `start_offset`. A repeat of the latest
    /// epoch is a no-op; entries that would break monotonicity are dropped first. Returns
    /// whether the cache changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch && last.start_offset <= start_offset {
                return false;
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// A leader's first offset in `epoch` (Kafka's `maybeAssignEpochStartOffset`): assigns it
    /// and rewrites the checkpoint, unless `epoch` is negative or already the latest. When the
    /// write fails the cache keeps its entries, whatever the file now holds: the caller poisons
    /// the log, and a reopen re-derives the entries from the batches.
    pub(crate) fn start_epoch(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Result<(), StorageError> {
        if epoch < 0 || self.latest_epoch() == Some(epoch) {
            return Ok(());
        }
        let before = self.entries.clone();
        if self.assign(epoch, start_offset) {
            if let Err(e) = self.write() {
                self.entries = before;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Kafka's `truncateFromEnd`: forget epochs that start at or after `end_offset`.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// Kafka's `truncateFromStart`: forget epochs that start at or before `start_offset`,
    /// except that the last of them now starts at `start_offset` (the log start moved into
    /// it). Returns whether the cache changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        let Some(&last_removed) = removed.checked_sub(1).and_then(|i| self.entries.get(i)) else {
            return false;
        };
        let first = EpochEntry {
            epoch: last_removed.epoch,
            start_offset,
        };
        if removed == 1 && last_removed == first {
            return false;
        }
        self.entries.drain(..removed);
        self.entries.insert(0, first);
        true
    }

    /// Forgets every epoch (a log restarted empty, Kafka's `clearAndFlush` without the flush).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// The epoch in force at `offset`.
    pub(crate) fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        epoch_for_offset(&self.entries, offset)
    }

    /// Rewrites the checkpoint atomically and durably (`replace_file`: fsync, rename, directory
    /// fsync), as Kafka's `LeaderEpochCheckpointFile` does again since KAFKA-16541: a checkpoint
    /// renamed into place before its bytes or its name reached the disk can come back empty,
    /// torn or stale after a power loss. Only a new leader epoch, a truncation, or the first append
    /// after an open that changed the entries in memory writes it, never an ordinary append, and
    /// never when the file already holds the entries. A failure may leave anything under the checkpoint's
    /// name; the caller poisons the log.
    pub(crate) fn write(&mut self) -> Result<(), StorageError> {
        if self.is_persisted() {
            return Ok(());
        }
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        self.persisted = None;
        replace_file(&*self.io, &self.path, text.as_bytes())?;
        self.persisted = Some(self.entries.clone());
        Ok(())
    }

    /// The checkpoint file holds exactly the entries.
    pub(crate) fn is_persisted(&self) -> bool {
        self.persisted.as_deref() == Some(self.entries.as_slice())
    }
}

/// The epoch in force at `offset` among `entries` (a cache's, or a snapshot's copy of them).
pub(crate) fn epoch_for_offset(entries: &[EpochEntry], offset: i64) -> Option<i32> {
    entries
        .iter()
        .rev()
        .find(|e| e.start_offset <= offset)
        .map(|e| e.epoch)
}

/// Kafka's `LeaderEpochFileCache.endOffsetFor` as `UnifiedLog.endOffsetForEpoch` uses it: the
/// end offset of `requested_epoch` (where the next larger epoch starts, or `log_end_offset` for
/// the latest epoch) and the largest known epoch at or below the requested one. `None` where
/// Kafka answers UNDEFINED_EPOCH_OFFSET: the requested epoch is -1, larger than any known, or
/// the cache is empty. An epoch below every known one ends where the first known one starts.
pub(crate) fn end_offset_for_epoch(
    entries: &[EpochEntry],
    requested_epoch: i32,
    log_end_offset: i64,
) -> Option<(i32, i64)> {
    const UNDEFINED_EPOCH: i32 = -1;
    if requested_epoch == UNDEFINED_EPOCH {
        return None;
    }
    if entries.last().map(|e| e.epoch) == Some(requested_epoch) {
        return Some((requested_epoch, log_end_offset));
    }
    let higher = entries.iter().find(|e| e.epoch > requested_epoch)?;
    let floor = entries.iter().rev().find(|e| e.epoch <= requested_epoch);
    Some(match floor {
        Some(floor) => (floor.epoch, higher.start_offset),
        None => (requested_epoch, higher.start_offset),
    })
}

fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    // No allocation from the count: entries grow with the lines actually present.
    let mut entries = Vec::new();
    for line in lines {
        let mut parts = line.split_whitespace();
        let epoch = parts.next()?.parse().ok()?;
        let start_offset = parts.next()?.parse().ok()?;
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;
    use std::fs;

    fn std_io() -> Arc<dyn LogIo> {
        Arc::new(StdIo)
    }

    // Kafka's endOffsetFor cases (LeaderEpochFileCacheTest): current epoch -> LEO; an epoch
    // between two known ones -> the floor epoch ending where the next starts; below all known
    // -> itself, ending at the first start; above all, -1, or an empty cache -> undefined.
    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let entries = [
            EpochEntry {
                epoch: 2,
                start_offset: 6,
            },
            EpochEntry {
                epoch: 4,
                start_offset: 11,
            },
            EpochEntry {
                epoch: 7,
                start_offset: 20,
            },
        ];
        assert_eq!(end_offset_for_epoch(&entries, 7, 25), Some((7, 25)));
        assert_eq!(end_offset_for_epoch(&entries, 4, 25), Some((4, 20)));
        assert_eq!(end_offset_for_epoch(&entries, 5, 25), Some((4, 20)));
        assert_eq!(end_offset_for_epoch(&entries, 2, 25), Some((2, 11)));
        assert_eq!(end_offset_for_epoch(&entries, 3, 25), Some((2, 11)));
        assert_eq!(end_offset_for_epoch(&entries, 1, 25), Some((1, 6)));
        assert_eq!(end_offset_for_epoch(&entries, 8, 25), None);
        assert_eq!(end_offset_for_epoch(&entries, -1, 25), None);
        assert_eq!(end_offset_for_epoch(&[], 0, 25), None);
    }

    #[test]
    fn checkpoint_round_trips_in_kafka_text_format() {
        // assign() keeps epochs monotonic and the file reads "0\n<n>\n<epoch> <offset>" lines.
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EpochCache::load(&std_io(), dir.path());
        assert!(cache.assign(0, 0));
        assert!(!cache.assign(0, 5));
        assert!(cache.assign(3, 10));
        cache.write().unwrap();
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n3 10\n");
        let loaded = EpochCache::load(&std_io(), dir.path());
        assert_eq!(loaded.entries(), cache.entries());
        assert_eq!(loaded.epoch_for_offset(9), Some(0));
        assert_eq!(loaded.epoch_for_offset(10), Some(3));
    }

    #[test]
    fn truncating_from_the_start_moves_the_first_epoch_to_the_new_start() {
        // As Kafka's truncateFromStart: epochs wholly before the start go, the one in force there now starts at it.
        let dir = tempfile::tempdir().unwrap();
        let mut cache = EpochCache::load(&std_io(), dir.path());
        for (epoch, start) in [(0, 0), (2, 10), (5, 20)] {
            assert!(cache.assign(epoch, start));
        }
        assert!(!cache.truncate_from_start(0), "nothing before offset 0");
        assert!(cache.truncate_from_start(15));
        let starts: Vec<(i32, i64)> = cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(starts, vec![(2, 15), (5, 20)]);
        assert!(!cache.truncate_from_start(15), "already starts there");
        assert!(cache.truncate_from_start(20));
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: 5,
                start_offset: 20
            }]
        );
        assert_eq!(cache.epoch_for_offset(19), None);
    }

    #[test]
    fn malformed_checkpoint_loads_empty() {
        // A count that disagrees with the lines, or garbage, is ignored rather than trusted.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CHECKPOINT_FILE), "0\n999999999\n1 0\n").unwrap();
        assert!(EpochCache::load(&std_io(), dir.path()).entries().is_empty());
        fs::write(dir.path().join(CHECKPOINT_FILE), "\u{0}\u{1}").unwrap();
        assert!(EpochCache::load(&std_io(), dir.path()).entries().is_empty());
    }
}
