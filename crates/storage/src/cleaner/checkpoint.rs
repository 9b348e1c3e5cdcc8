//! `cleaner-offset-checkpoint`: the offset where the next round's dirty section starts.
//!
//! Kafka keeps one file of that name per log directory, listing every partition. We keep one
//! per partition directory, for the reasons `log_start` gives for the log start checkpoint: the
//! storage crate owns one partition, a per-partition file needs no coordination between
//! cleaner threads, and it is rewritten once per cleaning round, never per append. Same text
//! format as the other checkpoints: "0\n<offset>\n". A missing or unreadable file means the
//! whole log is dirty, which only costs one extra round.

use std::path::Path;

use crate::io::{read_whole_file, replace_file, LogIo, WholeFile};
use crate::log_start::{offset_file_text, parse_offset_file};
use crate::StorageError;

pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const FILE_BYTES_MAX: u64 = 64;

pub(crate) fn read(io: &dyn LogIo, dir: &Path) -> Option<i64> {
    let path = dir.join(CLEANER_CHECKPOINT_FILE);
    let Ok(WholeFile::Bytes(bytes)) = read_whole_file(io, &path, FILE_BYTES_MAX) else {
        return None;
    };
    parse_offset_file(std::str::from_utf8(&bytes).ok()?)
}

pub(crate) fn write(io: &dyn LogIo, dir: &Path, offset: i64) -> Result<(), StorageError> {
    replace_file(
        io,
        &dir.join(CLEANER_CHECKPOINT_FILE),
        offset_file_text(offset).as_bytes(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    #[test]
    fn round_trips_and_ignores_garbage() {
        // A written offset reads back; a missing or malformed file reads as none.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&StdIo, dir.path()), None);
        write(&StdIo, dir.path(), 77).unwrap();
        assert_eq!(read(&StdIo, dir.path()), Some(77));
        std::fs::write(dir.path().join(CLEANER_CHECKPOINT_FILE), "0\n-1\n").unwrap();
        assert_eq!(read(&StdIo, dir.path()), None);
    }
}
