//! `recovery-point-offset-checkpoint`: the offset below which the log's data was fsynced, so an
//! open after an unclean shutdown recovers (reads whole and CRC-checks) only the segments
//! holding offsets at or past it, as Kafka's `LogLoader.recoverLog` does. Text, the same
//! one-partition form as `log-start-offset-checkpoint`: "0\n<offset>\n".
//!
//! Kafka keeps one file of that name per log directory and rewrites it every
//! `log.flush.offset.checkpoint.interval.ms`; we keep one per partition directory (for the
//! reasons `log_start` gives) and write it when the recovery point jumps: at a roll, whose fsync
//! makes the sealed segment durable, and at `close`. It may lag the in-memory recovery point
//! (which a flush also advances): a lagging checkpoint costs more recovery, never records.
//! A checkpoint that runs ahead of the data (copied files, a disk that lost writes) costs
//! nothing either: every non-active segment was fsynced when it rolled, and the active segment
//! is recovered after every unclean shutdown whatever the checkpoint says. A missing or
//! malformed file means the log start: everything is recovered.

use std::path::Path;

use crate::io::{replace_file_unsynced_name, LogIo};
use crate::log_start::{offset_file_text, read_offset_checkpoint};
use crate::StorageError;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";

/// The checkpointed recovery point; `None` when missing or not ours (see `log_start`).
pub(crate) fn read(io: &dyn LogIo, dir: &Path) -> Option<i64> {
    read_offset_checkpoint(io, &dir.join(RECOVERY_POINT_FILE))
}

/// Replaces the checkpoint atomically; its name is durable once the caller fsyncs the
/// directory (`replace_file_unsynced_name`).
pub(crate) fn write_unsynced_name(
    io: &dyn LogIo,
    dir: &Path,
    recovery_point: i64,
) -> Result<(), StorageError> {
    let text = offset_file_text(recovery_point);
    replace_file_unsynced_name(io, &dir.join(RECOVERY_POINT_FILE), text.as_bytes())?;
    Ok(())
}
