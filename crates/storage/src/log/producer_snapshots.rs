//! The log's side of producer snapshots (see `producer_snapshot` for the file): which one
//! `open` starts from, writing one at a roll or a clean shutdown, and removing stale ones.

use std::path::Path;

use crate::io::{read_whole_file, remove_if_present, LogIo, WholeFile};
use crate::producer_snapshot::{self, snapshot_path};
use crate::producer_state::ProducerStateManager;
use crate::StorageError;

use super::PartitionLog;

/// A snapshot holds 46 bytes a producer, and a partition's producers are bounded by its
/// batches; a file past this is not one we wrote.
const SNAPSHOT_BYTES_MAX: u64 = 256 << 20;

/// Kafka's `loadFromSnapshot`: the latest snapshot that reads back (a torn or corrupt one is
/// removed and the next older one tried), as producer state and the offset to replay the log
/// from; empty state from the start of the log when there is none.
pub(super) fn load_latest(
    io: &dyn LogIo,
    dir: &Path,
    names: &[String],
    names_changed: &mut bool,
) -> Result<(ProducerStateManager, i64), StorageError> {
    for offset in producer_snapshot::offsets_in(names).into_iter().rev() {
        let path = snapshot_path(dir, offset);
        let loaded = match read_whole_file(io, &path, SNAPSHOT_BYTES_MAX)? {
            WholeFile::Bytes(bytes) => producer_snapshot::decode(&bytes),
            WholeFile::Missing => continue,
            WholeFile::TooLarge => Err(StorageError::Corrupt("snapshot too large".into())),
        };
        match loaded {
            Ok(producers) => return Ok((ProducerStateManager::from_snapshot(producers), offset)),
            Err(e) => {
                tracing::warn!(snapshot = %path.display(), error = %e, "removing an unreadable producer snapshot");
                *names_changed |= remove_if_present(io, &path)?;
            }
        }
    }
    Ok((ProducerStateManager::default(), i64::MIN))
}

/// Removes every snapshot `stale` picks; answers whether any was removed.
pub(super) fn remove_where(
    io: &dyn LogIo,
    dir: &Path,
    stale: impl Fn(i64) -> bool,
) -> Result<bool, StorageError> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut removed = false;
    for offset in producer_snapshot::offsets_in(&names)
        .into_iter()
        .filter(|&o| stale(o))
    {
        removed |= remove_if_present(io, &snapshot_path(dir, offset))?;
    }
    Ok(removed)
}

impl PartitionLog {
    /// Writes a producer snapshot at `offset` (the log end). Best effort: a snapshot only
    /// shortens the next open's replay, so a failure is logged and its file removed, and the
    /// write that wanted it goes on.
    pub(super) fn write_producer_snapshot(&self, offset: i64) {
        debug_assert_eq!(
            offset,
            self.log_end_offset(),
            "a snapshot covers the whole log"
        );
        if let Err(e) =
            producer_snapshot::write(&**self.io(), &self.dir, offset, self.producers.producers())
        {
            tracing::warn!(dir = %self.dir.display(), offset, error = %e, "could not write a producer snapshot");
            let _ = remove_if_present(&**self.io(), &snapshot_path(&self.dir, offset));
        }
    }
}
