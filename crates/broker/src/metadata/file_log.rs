//! The single-node [`MetadataLog`]: `meta/metadata.log` plus snapshots `meta/<offset>.checkpoint`
//! (Kafka's KRaft names its snapshots the same way), on the local disk.
//!
//! Every append is fsynced before it is acknowledged: metadata changes are rare, and a topic a
//! client was told exists must exist after any crash. Once `metadata.log.max.record.bytes.between.snapshots`
//! bytes were appended since the last snapshot, the driver writes a snapshot of the image and
//! the log starts over empty, so the log stays short and a restart replays a snapshot plus a
//! short tail instead of every change ever made.
//!
//! Crash safety of a snapshot: the checkpoint is written to a temporary file, fsynced, renamed,
//! and the directory fsynced; only then is the log replaced by an empty one the same way. A
//! crash in between leaves the new checkpoint and the old log, whose entries at or below the
//! checkpoint's offset are skipped on open.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_cluster::error::Result;
use runnel_cluster::metadata::{
    decode_entries, encode_entries, LogEntry, MetadataImage, MetadataLog, MetadataRecord,
};
use runnel_cluster::ClusterError;
use runnel_storage::io::{self as log_io, LogIo, OpenMode, StdIo, WholeFile};

const LOG_FILE: &str = "metadata.log";
const CHECKPOINT_SUFFIX: &str = ".checkpoint";

/// Largest checkpoint or log file read back at open. Snapshots keep the log near
/// `bytes_between_snapshots` and an image within the partition limits is far below this; a
/// larger file is not one of ours (or needs a snapshot by an older runnel first).
pub const METADATA_FILE_BYTES_MAX: u64 = 1 << 30;

/// Limits of the file log.
#[derive(Debug, Clone, Copy)]
pub struct FileLogLimits {
    /// `runnel.metadata.log.records.max`: records the log may hold between snapshots, a hard
    /// bound on its length should snapshots fail.
    pub records_max: u64,
    /// `metadata.log.max.record.bytes.between.snapshots` (Kafka's, 20 MiB).
    pub bytes_between_snapshots: u64,
}

/// What was on disk at open: the latest snapshot and the committed entries after it.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The snapshot's offset and the records that rebuild its image.
    pub snapshot: Option<(i64, Vec<MetadataRecord>)>,
    /// Entries after the snapshot, in order, with consecutive offsets.
    pub entries: Vec<LogEntry>,
}

/// An open metadata log.
#[derive(Debug)]
pub struct FileMetadataLog {
    dir: PathBuf,
    /// Every file operation goes through it (a fault-injecting one in tests).
    io: Arc<dyn LogIo>,
    file: File,
    /// Bytes in the log file: where the next append writes.
    len: u64,
    /// A write or fsync failed: what reached the disk is unknown, so the log refuses appends
    /// until reopened (which truncates a torn tail), as a partition log does.
    poisoned: bool,
    last_offset: i64,
    /// Records in the log file (since the last snapshot).
    records: u64,
    /// Bytes appended since the last snapshot.
    bytes_since_snapshot: u64,
    limits: FileLogLimits,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file of at most `max` bytes (empty when missing).
fn read_bounded(io: &dyn LogIo, path: &Path, max: u64) -> Result<Vec<u8>> {
    match log_io::read_whole_file(io, path, max).map_err(io_error(path))? {
        WholeFile::Missing => Ok(Vec::new()),
        WholeFile::TooLarge => Err(ClusterError::CorruptLog {
            path: path.to_path_buf(),
            position: 0,
            reason: format!("more than the {max} bytes a metadata file may hold"),
        }),
        WholeFile::Bytes(bytes) => Ok(bytes),
    }
}

/// Checkpoint files in `dir` with their offsets, newest last.
fn checkpoints(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(offset) = name
            .strip_suffix(CHECKPOINT_SUFFIX)
            .and_then(|stem| stem.parse::<i64>().ok())
        {
            found.push((offset, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

impl FileMetadataLog {
    /// Opens (creating) the log in `dir`, returning it with the latest snapshot and every
    /// committed entry after it. A torn or corrupt tail (a crash mid-append) is truncated away:
    /// the record it held was never acknowledged.
    pub fn open(dir: &Path, limits: FileLogLimits) -> Result<(FileMetadataLog, Recovered)> {
        Self::open_with_io(dir, limits, Arc::new(StdIo))
    }

    /// [`FileMetadataLog::open`] over the file-I/O backend `io`.
    pub fn open_with_io(
        dir: &Path,
        limits: FileLogLimits,
        io: Arc<dyn LogIo>,
    ) -> Result<(FileMetadataLog, Recovered)> {
        // The directory's own entry must survive a power loss before anything in it may.
        log_io::create_dir_all(&*io, dir).map_err(io_error(dir))?;
        let mut recovered = Recovered::default();
        if let Some((offset, path)) = checkpoints(dir)?.pop() {
            let bytes = read_bounded(&*io, &path, METADATA_FILE_BYTES_MAX)?;
            let decoded =
                decode_entries(&bytes, offset).map_err(|reason| ClusterError::CorruptLog {
                    path: path.clone(),
                    position: 0,
                    reason,
                })?;
            if decoded.valid_bytes != bytes.len() {
                // Checkpoints are renamed into place only once whole and fsynced.
                return Err(ClusterError::CorruptLog {
                    path,
                    position: decoded.valid_bytes as u64,
                    reason: "checkpoint is damaged".into(),
                });
            }
            recovered.snapshot = Some((
                offset,
                decoded.entries.into_iter().map(|e| e.record).collect(),
            ));
        }
        let snapshot_offset = recovered.snapshot.as_ref().map_or(-1, |(o, _)| *o);
        let path = dir.join(LOG_FILE);
        let bytes = read_bounded(&*io, &path, METADATA_FILE_BYTES_MAX)?;
        let log_created = !path.exists();
        let file = io.open(&path, OpenMode::Create).map_err(io_error(&path))?;
        if log_created {
            // Appends fsync the file's data; its name is durable only once the directory is.
            io.sync_dir(dir).map_err(io_error(dir))?;
        }
        let decoded = decode_entries(&bytes, 0).map_err(|reason| ClusterError::CorruptLog {
            path: path.clone(),
            position: 0,
            reason,
        })?;
        let len = decoded.valid_bytes as u64;
        if len < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), valid = len, file_len = bytes.len(), "truncating torn tail of metadata log");
            io.set_len(&file, len)
                .and_then(|()| io.sync_all(&file))
                .map_err(io_error(&path))?;
        }
        let records = decoded.entries.len() as u64;
        let mut last_offset = snapshot_offset;
        for entry in decoded.entries {
            if entry.offset <= snapshot_offset {
                continue;
            }
            if last_offset.checked_add(1) != Some(entry.offset) {
                return Err(ClusterError::CorruptLog {
                    path,
                    position: 0,
                    reason: format!(
                        "entry at offset {} follows offset {last_offset}",
                        entry.offset
                    ),
                });
            }
            last_offset = entry.offset;
            recovered.entries.push(entry);
        }
        let log = FileMetadataLog {
            dir: dir.to_path_buf(),
            io,
            file,
            len,
            poisoned: false,
            last_offset,
            records,
            bytes_since_snapshot: len,
            limits,
        };
        Ok((log, recovered))
    }

    /// Fails and poisons the log: after a failed write or fsync nothing about the file's tail
    /// can be trusted until a reopen truncates it to its last whole frame.
    fn poison(&mut self, e: std::io::Error, path: &Path) -> ClusterError {
        tracing::error!(path = %path.display(), error = %e, "metadata log write failed; refusing further appends until restart");
        self.poisoned = true;
        io_error(path)(e)
    }
}

impl MetadataLog for FileMetadataLog {
    fn append(&mut self, records: &[MetadataRecord]) -> Result<i64> {
        let path = self.dir.join(LOG_FILE);
        if self.poisoned {
            return Err(io_error(&path)(std::io::Error::other(
                "the metadata log failed an earlier write and refuses appends until restart",
            )));
        }
        if self.records + records.len() as u64 > self.limits.records_max {
            return Err(ClusterError::MetadataLogFull(self.records));
        }
        // Offsets come from the disk: one near i64::MAX leaves no room after it.
        if i64::try_from(records.len())
            .ok()
            .and_then(|n| self.last_offset.checked_add(n))
            .is_none()
        {
            return Err(ClusterError::MetadataLogFull(self.records));
        }
        let entries: Vec<LogEntry> = records
            .iter()
            .zip(self.last_offset + 1..)
            .map(|(record, offset)| LogEntry {
                offset,
                // One node, no elections: every record is written in epoch 0.
                epoch: 0,
                record: record.clone(),
            })
            .collect();
        let mut buf = Vec::new();
        encode_entries(&entries, &mut buf)?;
        if let Err(e) = self.io.write_all_at(&self.file, &buf, self.len) {
            return Err(self.poison(e, &path));
        }
        // Durability: metadata is acknowledged to clients only after this fsync.
        if let Err(e) = self.io.sync_data(&self.file) {
            return Err(self.poison(e, &path));
        }
        self.len += buf.len() as u64;
        self.records += records.len() as u64;
        self.bytes_since_snapshot += buf.len() as u64;
        self.last_offset += records.len() as i64;
        Ok(self.last_offset)
    }

    fn last_offset(&self) -> i64 {
        self.last_offset
    }

    fn wants_snapshot(&self) -> bool {
        self.bytes_since_snapshot >= self.limits.bytes_between_snapshots
    }

    fn snapshot(&mut self, image: &MetadataImage) -> Result<()> {
        assert_eq!(
            image.offset, self.last_offset,
            "a snapshot covers exactly the committed log"
        );
        let entries: Vec<LogEntry> = image
            .to_records()
            .into_iter()
            .map(|record| LogEntry {
                offset: image.offset,
                epoch: 0,
                record,
            })
            .collect();
        let mut bytes = Vec::new();
        encode_entries(&entries, &mut bytes)?;
        let checkpoint = self
            .dir
            .join(format!("{:020}{CHECKPOINT_SUFFIX}", image.offset));
        log_io::replace_file(&*self.io, &checkpoint, &bytes).map_err(io_error(&checkpoint))?;
        // The checkpoint is durable: the log's entries are now redundant.
        let path = self.dir.join(LOG_FILE);
        if let Err(e) = log_io::replace_file(&*self.io, &path, &[]) {
            // The old log may or may not be in place: its entries are covered by the
            // checkpoint either way, but this handle may point at a replaced file.
            return Err(self.poison(e, &path));
        }
        self.file = match self.io.open(&path, OpenMode::ReadWrite) {
            Ok(file) => file,
            Err(e) => return Err(self.poison(e, &path)),
        };
        self.len = 0;
        self.records = 0;
        self.bytes_since_snapshot = 0;
        for (offset, old) in checkpoints(&self.dir)? {
            if offset < image.offset {
                if let Err(e) = self.io.remove_file(&old) {
                    tracing::warn!(path = %old.display(), error = %e, "removing an old metadata checkpoint");
                }
            }
        }
        tracing::info!(offset = image.offset, "metadata snapshot written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_storage::io::faulty::{FaultyIo, InjectedError};
    use std::fs::OpenOptions;

    fn limits() -> FileLogLimits {
        FileLogLimits {
            records_max: 100,
            bytes_between_snapshots: 1 << 20,
        }
    }

    fn rec(n: i64) -> MetadataRecord {
        MetadataRecord::ProducerIds {
            next_producer_id: n,
        }
    }

    fn offsets_and_records(r: &Recovered) -> Vec<(i64, MetadataRecord)> {
        r.entries
            .iter()
            .map(|e| (e.offset, e.record.clone()))
            .collect()
    }

    // Proves appended records come back in order with consecutive offsets after a reopen, and
    // appends continue from the last offset.
    #[test]
    fn append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert!(recovered.entries.is_empty() && recovered.snapshot.is_none());
        assert_eq!(log.append(&[rec(1), rec(2)]).unwrap(), 1);
        assert_eq!(log.append(&[rec(3)]).unwrap(), 2);
        drop(log);
        let (mut log, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert_eq!(
            offsets_and_records(&recovered),
            vec![(0, rec(1)), (1, rec(2)), (2, rec(3))]
        );
        assert_eq!(log.append(&[rec(4)]).unwrap(), 3);
    }

    // Proves a crash mid-append (torn frame) loses only that frame, and later appends follow
    // the last intact one.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        log.append(&[rec(1), rec(2)]).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut log, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert_eq!(offsets_and_records(&recovered), vec![(0, rec(1))]);
        assert_eq!(log.append(&[rec(9)]).unwrap(), 1);
        drop(log);
        let (_, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert_eq!(
            offsets_and_records(&recovered),
            vec![(0, rec(1)), (1, rec(9))]
        );
    }

    // Proves the named record limit refuses appends instead of growing without bound.
    #[test]
    fn record_limit_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileMetadataLog::open(
            dir.path(),
            FileLogLimits {
                records_max: 2,
                ..limits()
            },
        )
        .unwrap();
        log.append(&[rec(1), rec(2)]).unwrap();
        assert!(matches!(
            log.append(&[rec(3)]),
            Err(ClusterError::MetadataLogFull(2))
        ));
    }

    // Proves a snapshot empties the log, a reopen yields the snapshot and only the entries
    // after it, offsets keep counting, and a crash between writing the checkpoint and emptying
    // the log (old log left behind) skips the entries the checkpoint covers.
    #[test]
    fn snapshot_then_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileMetadataLog::open(
            dir.path(),
            FileLogLimits {
                records_max: 100,
                bytes_between_snapshots: 1,
            },
        )
        .unwrap();
        let mut image = MetadataImage::empty();
        for n in [1000, 2000] {
            let offset = log.append(&[rec(n)]).unwrap();
            image.apply(&rec(n));
            image.offset = offset;
        }
        let old_log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        assert!(log.wants_snapshot());
        log.snapshot(&image).unwrap();
        assert!(!log.wants_snapshot());
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            0
        );
        assert_eq!(log.append(&[rec(3000)]).unwrap(), 2);
        drop(log);
        let (_, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert_eq!(recovered.snapshot, Some((1, vec![rec(2000)])));
        assert_eq!(offsets_and_records(&recovered), vec![(2, rec(3000))]);
        // The crash case: the checkpoint is in place but the log still holds offsets 0 and 1.
        std::fs::write(dir.path().join(LOG_FILE), &old_log).unwrap();
        let (mut log, recovered) = FileMetadataLog::open(dir.path(), limits()).unwrap();
        assert_eq!(recovered.snapshot, Some((1, vec![rec(2000)])));
        assert!(recovered.entries.is_empty());
        assert_eq!(log.append(&[rec(4000)]).unwrap(), 2);
    }

    fn open_faulty(dir: &Path, io: &Arc<FaultyIo>) -> (FileMetadataLog, Recovered) {
        let io: Arc<dyn LogIo> = Arc::clone(io) as Arc<dyn LogIo>;
        FileMetadataLog::open_with_io(dir, limits(), io).unwrap()
    }

    // Proves a failed fsync of an append fails it and poisons the log (later appends refused),
    // and after a crash the failed record is not there while every acknowledged one is: an
    // acknowledged topic survives, an unacknowledged one never appears.
    #[test]
    fn a_failed_fsync_poisons_and_the_failed_record_never_appears() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let io = FaultyIo::new();
        let (mut log, _) = open_faulty(&meta, &io);
        assert_eq!(log.append(&[rec(1)]).unwrap(), 0);
        io.fail_sync(1, LOG_FILE, InjectedError::Eio);
        assert!(log.append(&[rec(2)]).is_err());
        assert_eq!(io.armed_faults(), 0, "the injected fault fired");
        assert!(
            log.append(&[rec(3)]).is_err(),
            "a poisoned log refuses appends"
        );
        drop(log);
        io.crash().unwrap();
        let (mut log, recovered) = open_faulty(&meta, &io);
        assert_eq!(offsets_and_records(&recovered), vec![(0, rec(1))]);
        assert_eq!(log.append(&[rec(4)]).unwrap(), 1);
    }

    // Proves a torn append (part of its frame written, then ENOSPC) fails and poisons the log,
    // and a reopen after a crash truncates the torn frame and goes on from the last whole one.
    #[test]
    fn a_torn_append_is_truncated_at_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let io = FaultyIo::new();
        let (mut log, _) = open_faulty(&meta, &io);
        log.append(&[rec(1), rec(2)]).unwrap();
        io.tear_write(1, LOG_FILE, 5, InjectedError::Enospc);
        assert!(log.append(&[rec(3)]).is_err());
        assert!(log.append(&[rec(4)]).is_err());
        drop(log);
        io.crash().unwrap();
        let (mut log, recovered) = open_faulty(&meta, &io);
        assert_eq!(
            offsets_and_records(&recovered),
            vec![(0, rec(1)), (1, rec(2))]
        );
        assert_eq!(log.append(&[rec(5)]).unwrap(), 2);
        drop(log);
        let (_, recovered) = open_faulty(&meta, &io);
        assert_eq!(recovered.entries.len(), 3);
    }

    // Proves the first committed record of a brand-new log survives a crash: the directory and
    // the file's name are made durable, not only the file's bytes.
    #[test]
    fn a_new_logs_first_record_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let io = FaultyIo::new();
        let (mut log, _) = open_faulty(&meta, &io);
        log.append(&[rec(1)]).unwrap();
        drop(log);
        io.crash().unwrap();
        let (_, recovered) = open_faulty(&meta, &io);
        assert_eq!(offsets_and_records(&recovered), vec![(0, rec(1))]);
    }

    // Proves a snapshot interrupted after its checkpoint is durable (the log's replacement
    // fails, then a crash) loses nothing and repeats nothing: the reopened log starts from the
    // checkpoint, skips the entries it covers, and offsets go on.
    #[test]
    fn a_snapshot_interrupted_before_the_log_is_replaced_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let io = FaultyIo::new();
        let (mut log, _) = open_faulty(&meta, &io);
        let mut image = MetadataImage::empty();
        for n in [1000, 2000] {
            image.offset = log.append(&[rec(n)]).unwrap();
            image.apply(&rec(n));
        }
        // The checkpoint goes in first; the empty log's temporary file fails to be written.
        io.fail_write(1, "metadata.log.tmp", InjectedError::Eio);
        assert!(log.snapshot(&image).is_err());
        assert!(
            log.append(&[rec(3000)]).is_err(),
            "poisoned after a failed snapshot"
        );
        drop(log);
        io.crash().unwrap();
        let (mut log, recovered) = open_faulty(&meta, &io);
        assert_eq!(recovered.snapshot, Some((1, vec![rec(2000)])));
        assert!(
            recovered.entries.is_empty(),
            "entries the checkpoint covers are skipped"
        );
        assert_eq!(log.append(&[rec(4000)]).unwrap(), 2);
    }
}
