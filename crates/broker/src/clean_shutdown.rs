//! Kafka's clean-shutdown marker, `.kafka_cleanshutdown` in the log directory
//! (`CleanShutdownFileHandler`): written once every partition log was closed cleanly, removed
//! once the logs are loaded at the next start, so that a crash at any later point is seen as
//! unclean. Its presence lets each log open from its index files, recovery point and producer
//! snapshot without reading its batches (`runnel_storage::LastShutdown`).
//!
//! Only its presence means anything: its contents (Kafka writes a small JSON object with the
//! broker epoch; so do we, with -1 as runnel has no broker epochs) are never read, so no bytes
//! found there can matter. A marker that lies (left by something else, or restored from a
//! backup) is caught per log: a log whose files disagree after a "clean" shutdown is recovered.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use runnel_storage::LastShutdown;

pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

/// How the previous run ended, as the marker in `data_dir` says.
pub fn last_shutdown(data_dir: &Path) -> LastShutdown {
    if data_dir.join(CLEAN_SHUTDOWN_FILE).is_file() {
        LastShutdown::Clean
    } else {
        LastShutdown::Unclean
    }
}

/// Removes the marker (if present) durably, before anything is appended to a log. Something
/// else under its name (a directory) was never a marker and is left alone.
pub fn remove(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(CLEAN_SHUTDOWN_FILE);
    if !path.is_file() {
        return Ok(());
    }
    match std::fs::remove_file(path) {
        Ok(()) => File::open(data_dir)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes the marker durably; the caller has closed every partition log.
pub fn write(data_dir: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(data_dir.join(CLEAN_SHUTDOWN_FILE))?;
    file.write_all(br#"{"version":0,"brokerEpoch":-1}"#)?;
    file.sync_all()?;
    File::open(data_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_present_between_write_and_remove_only() {
        // No marker reads as unclean; a written one as clean, whatever its bytes; removing it
        // (twice is fine) makes the next start unclean again.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_shutdown(dir.path()), LastShutdown::Unclean);
        write(dir.path()).unwrap();
        assert_eq!(last_shutdown(dir.path()), LastShutdown::Clean);
        std::fs::write(dir.path().join(CLEAN_SHUTDOWN_FILE), [0xff, 0, 7]).unwrap();
        assert_eq!(last_shutdown(dir.path()), LastShutdown::Clean);
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(last_shutdown(dir.path()), LastShutdown::Unclean);
        // A directory of that name is no marker: unclean, and left alone.
        std::fs::create_dir(dir.path().join(CLEAN_SHUTDOWN_FILE)).unwrap();
        assert_eq!(last_shutdown(dir.path()), LastShutdown::Unclean);
        remove(dir.path()).unwrap();
        assert!(write(dir.path()).is_err());
    }
}
