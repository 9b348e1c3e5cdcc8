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

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use runnel_cluster::error::Result;
use runnel_cluster::metadata::{
    decode_entries, encode_entries, LogEntry, MetadataImage, MetadataLog, MetadataRecord,
};
use runnel_cluster::ClusterError;

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
    file: File,
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

/// Reads a whole file of at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if len > max {
        return Err(ClusterError::CorruptLog {
            path: path.to_path_buf(),
            position: 0,
            reason: format!("{len} bytes, more than the {max} a metadata file may hold"),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Ok(bytes)
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync the dir.
fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    fsync_dir(dir)
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
        let dir_created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        if dir_created {
            // The directory's own entry must survive a power loss before anything in it may.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fsync_dir(parent)?;
            }
        }
        let mut recovered = Recovered::default();
        if let Some((offset, path)) = checkpoints(dir)?.pop() {
            let bytes = read_bounded(&path, METADATA_FILE_BYTES_MAX)?;
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
        let log_created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error(&path))?;
        if log_created {
            // Appends fsync the file's data; its name is durable only once the directory is.
            fsync_dir(dir)?;
        }
        let len = file.metadata().map_err(io_error(&path))?.len();
        let bytes = read_bounded(&path, METADATA_FILE_BYTES_MAX)?;
        let decoded = decode_entries(&bytes, 0).map_err(|reason| ClusterError::CorruptLog {
            path: path.clone(),
            position: 0,
            reason,
        })?;
        if (decoded.valid_bytes as u64) < len {
            tracing::warn!(path = %path.display(), valid = decoded.valid_bytes, len, "truncating torn tail of metadata log");
            file.set_len(decoded.valid_bytes as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path))?;
        }
        let records = decoded.entries.len() as u64;
        let mut last_offset = snapshot_offset;
        for entry in decoded.entries {
            if entry.offset <= snapshot_offset {
                continue;
            }
            if entry.offset != last_offset + 1 {
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
            file,
            last_offset,
            records,
            bytes_since_snapshot: decoded.valid_bytes as u64,
            limits,
        };
        Ok((log, recovered))
    }
}

impl MetadataLog for FileMetadataLog {
    fn append(&mut self, records: &[MetadataRecord]) -> Result<i64> {
        if self.records + records.len() as u64 > self.limits.records_max {
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
        let path = self.dir.join(LOG_FILE);
        self.file.write_all(&buf).map_err(io_error(&path))?;
        // Durability: metadata is acknowledged to clients only after this fsync.
        self.file.sync_data().map_err(io_error(&path))?;
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
        replace_file(&self.dir, &checkpoint, &bytes)?;
        // The checkpoint is durable: the log's entries are now redundant.
        let path = self.dir.join(LOG_FILE);
        replace_file(&self.dir, &path, &[])?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        self.records = 0;
        self.bytes_since_snapshot = 0;
        for (offset, old) in checkpoints(&self.dir)? {
            if offset < image.offset {
                if let Err(e) = std::fs::remove_file(&old) {
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
}
