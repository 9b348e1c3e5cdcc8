//! `log-start-offset-checkpoint`: where the log starts once DeleteRecords moved the start past
//! the first segment's base offset. Text, "0\n<log start offset>\n".
//!
//! Kafka keeps one file of that name per log directory, listing every partition, and rewrites it
//! every `log.flush.start.offset.checkpoint.interval.ms` (a minute by default); a crash within
//! that minute brings deleted records back. We keep one per partition directory instead and
//! replace it durably (`replace_file`) whenever the start moves, before the move is visible:
//! - the storage crate owns one partition and has no log-directory-wide owner to batch writes
//!   for, and a per-partition file needs no coordination between partitions;
//! - the start moves on retention and DeleteRecords, minutes apart and never per append, so a
//!   small fsynced write costs nothing that matters, and in exchange a DeleteRecords is durable
//!   when answered.
//!
//! Without the file (older data directories, or a start that never moved) the log starts at its
//! first segment's base offset, which retention alone keeps right.

use std::path::Path;

use crate::io::{read_whole_file, replace_file, LogIo, WholeFile};
use crate::StorageError;

pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// Two short lines; anything bigger is not ours and is ignored.
const LOG_START_FILE_BYTES_MAX: u64 = 64;

/// The checkpointed log start offset; `None` when the file is missing or unreadable, with a
/// warning for the latter (the first segment's base then applies).
pub(crate) fn read(io: &dyn LogIo, dir: &Path) -> Option<i64> {
    read_offset_checkpoint(io, &dir.join(LOG_START_FILE))
}

/// The offset of a one-partition checkpoint file at `path` (this one, or
/// `recovery-point-offset-checkpoint`); `None` when it is missing, and with a warning when it is
/// unreadable, oversized or malformed: such a file is ignored, never trusted.
pub(crate) fn read_offset_checkpoint(io: &dyn LogIo, path: &Path) -> Option<i64> {
    let bytes = match read_whole_file(io, path, LOG_START_FILE_BYTES_MAX) {
        Ok(WholeFile::Bytes(bytes)) => bytes,
        Ok(WholeFile::Missing) => return None,
        Ok(WholeFile::TooLarge) => {
            tracing::warn!(path = %path.display(), "ignoring an oversized offset checkpoint");
            return None;
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable offset checkpoint");
            return None;
        }
    };
    let parsed = std::str::from_utf8(&bytes).ok().and_then(parse_offset_file);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "ignoring a malformed offset checkpoint");
    }
    parsed
}

/// The offset in the text of a one-partition checkpoint ("0\n<offset>\n", as this one and
/// `cleaner-offset-checkpoint` are written by [`offset_file_text`]); `None` for anything else,
/// a negative offset included.
pub(crate) fn parse_offset_file(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let offset: i64 = lines.next()?.trim().parse().ok()?;
    (offset >= 0 && lines.next().is_none()).then_some(offset)
}

/// Replaces the checkpoint atomically and durably. A failure may leave the old or the new
/// contents under the name; the caller poisons the log.
pub(crate) fn write(io: &dyn LogIo, dir: &Path, log_start_offset: i64) -> Result<(), StorageError> {
    let text = offset_file_text(log_start_offset);
    replace_file(io, &dir.join(LOG_START_FILE), text.as_bytes())?;
    Ok(())
}

/// The text of a one-partition checkpoint holding `offset`: version 0, then the offset.
pub(crate) fn offset_file_text(offset: i64) -> String {
    format!("0\n{offset}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;
    use std::fs;

    #[test]
    fn round_trips_and_ignores_what_it_did_not_write() {
        // A written offset reads back; a missing, garbled or negative one reads as none.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&StdIo, dir.path()), None);
        write(&StdIo, dir.path(), 1234).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(LOG_START_FILE)).unwrap(),
            "0\n1234\n"
        );
        assert_eq!(read(&StdIo, dir.path()), Some(1234));
        for garbage in ["", "1\n5\n", "0\n-3\n", "0\nx\n", "0\n5\n6\n"] {
            fs::write(dir.path().join(LOG_START_FILE), garbage).unwrap();
            assert_eq!(read(&StdIo, dir.path()), None, "{garbage:?}");
        }
    }
}
