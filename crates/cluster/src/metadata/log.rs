//! The metadata log on disk: `meta/metadata.log`, a sequence of CRC-checked frames.
//!
//! Frame: `length: u32 BE` (payload bytes), `crc32c: u32 BE` (of the payload), payload (one JSON
//! [`MetadataRecord`]). Every append is fsynced before it is applied: metadata changes are rare,
//! and a topic that a client was told exists must exist after any crash.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::MetadataRecord;
use crate::error::{ClusterError, Result};

/// Largest payload of one metadata record. A topic with thousands of configs is still far below;
/// anything larger read from disk is corruption, not a record.
pub const METADATA_RECORD_BYTES_MAX: u32 = 1 << 20;

const FRAME_HEADER_LEN: u64 = 8;

/// An open, append-only metadata log.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    /// Records in the log, checked against `records_max` before every append.
    record_count: u64,
    /// The named limit on the log's length (`metadata.log.records.max`). Without snapshots the log
    /// only grows; the limit turns an unbounded file into a clear error.
    records_max: u64,
}

impl MetadataLog {
    /// Opens (creating) `dir/metadata.log`, returning it with every intact record in order.
    ///
    /// A torn or corrupt tail (a crash mid-append) is truncated away: the record it held was never
    /// acknowledged, because appends are acknowledged only after fsync.
    pub fn open(dir: &Path, records_max: u64) -> Result<(MetadataLog, Vec<MetadataRecord>)> {
        std::fs::create_dir_all(dir).map_err(|source| ClusterError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("metadata.log");
        let io = |source| ClusterError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let (records, valid_len) = read_records(&path, &file)?;
        let file_len = file.metadata().map_err(io)?.len();
        if valid_len < file_len {
            tracing::warn!(path = %path.display(), valid_len, file_len, "truncating torn tail of metadata log");
            file.set_len(valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let log = MetadataLog {
            path,
            file,
            record_count: records.len() as u64,
            records_max,
        };
        Ok((log, records))
    }

    /// Appends records as one write and fsyncs them. On error nothing may be assumed written; the
    /// caller must not apply the records.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<()> {
        if self.record_count + records.len() as u64 > self.records_max {
            return Err(ClusterError::MetadataLogFull(self.record_count));
        }
        let mut buf = Vec::new();
        for record in records {
            let payload = serde_json::to_vec(record).map_err(|e| ClusterError::CorruptLog {
                path: self.path.clone(),
                position: 0,
                reason: format!("cannot serialize record: {e}"),
            })?;
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|len| *len <= METADATA_RECORD_BYTES_MAX)
                .ok_or_else(|| ClusterError::InvalidConfig {
                    name: "metadata record".into(),
                    value: format!("{} bytes", payload.len()),
                    reason: format!("larger than {METADATA_RECORD_BYTES_MAX} bytes"),
                })?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            buf.extend_from_slice(&payload);
        }
        let io = |source| ClusterError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(io)?;
        // Durability: metadata is acknowledged to clients only after this fsync.
        self.file.sync_data().map_err(io)?;
        self.record_count += records.len() as u64;
        Ok(())
    }

    pub fn record_count(&self) -> u64 {
        self.record_count
    }
}

/// Reads frames until the end or the first invalid one. Returns the records and the byte length
/// of the valid prefix.
fn read_records(path: &Path, file: &File) -> Result<(Vec<MetadataRecord>, u64)> {
    let io = |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut records = Vec::new();
    let mut position = 0u64;
    loop {
        if file_len - position < FRAME_HEADER_LEN {
            break;
        }
        let mut header = [0u8; FRAME_HEADER_LEN as usize];
        reader.read_exact(&mut header).map_err(io)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > METADATA_RECORD_BYTES_MAX
            || u64::from(len) > file_len - position - FRAME_HEADER_LEN
        {
            break;
        }
        // Bounded: len <= METADATA_RECORD_BYTES_MAX and within the file.
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload).map_err(io)?;
        if crc32c::crc32c(&payload) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<MetadataRecord>(&payload) else {
            // A record with a valid CRC that we cannot parse was written by a newer runnel.
            // Truncating it would destroy state; refuse to start instead.
            return Err(ClusterError::CorruptLog {
                path: path.to_path_buf(),
                position,
                reason:
                    "record with a valid checksum could not be parsed (written by a newer version?)"
                        .into(),
            });
        };
        records.push(record);
        position += FRAME_HEADER_LEN + u64::from(len);
    }
    Ok((records, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: i64) -> MetadataRecord {
        MetadataRecord::ProducerIds {
            next_producer_id: n,
        }
    }

    // Records appended are read back in order after reopening.
    #[test]
    fn append_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, records) = MetadataLog::open(dir.path(), 100).expect("open");
        assert!(records.is_empty());
        log.append(&[rec(1), rec(2)]).expect("append");
        log.append(&[rec(3)]).expect("append");
        drop(log);
        let (log, records) = MetadataLog::open(dir.path(), 100).expect("reopen");
        assert_eq!(records, vec![rec(1), rec(2), rec(3)]);
        assert_eq!(log.record_count(), 3);
    }

    // A crash mid-append (torn frame) loses only that frame, and later appends follow the last
    // intact one.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = MetadataLog::open(dir.path(), 100).expect("open");
        log.append(&[rec(1), rec(2)]).expect("append");
        drop(log);
        let path = dir.path().join("metadata.log");
        let len = std::fs::metadata(&path).expect("stat").len();
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open file");
        file.set_len(len - 3).expect("tear");
        drop(file);
        let (mut log, records) = MetadataLog::open(dir.path(), 100).expect("reopen");
        assert_eq!(records, vec![rec(1)]);
        log.append(&[rec(9)]).expect("append after recovery");
        drop(log);
        let (_, records) = MetadataLog::open(dir.path(), 100).expect("reopen");
        assert_eq!(records, vec![rec(1), rec(9)]);
    }

    // A flipped byte in the last record fails its CRC and that record is dropped, not parsed.
    #[test]
    fn corrupt_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = MetadataLog::open(dir.path(), 100).expect("open");
        log.append(&[rec(1), rec(22)]).expect("append");
        drop(log);
        let path = dir.path().join("metadata.log");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        let (_, records) = MetadataLog::open(dir.path(), 100).expect("reopen");
        assert_eq!(records, vec![rec(1)]);
    }

    // A huge length field read from disk is treated as a torn tail, never allocated.
    #[test]
    fn hostile_length_is_not_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        std::fs::write(&path, [0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 1, 2, 3]).expect("write");
        let (_, records) = MetadataLog::open(dir.path(), 100).expect("open");
        assert!(records.is_empty());
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
    }

    // The named record limit refuses appends instead of growing without bound.
    #[test]
    fn record_limit_is_enforced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = MetadataLog::open(dir.path(), 2).expect("open");
        log.append(&[rec(1), rec(2)]).expect("append");
        assert!(matches!(
            log.append(&[rec(3)]),
            Err(ClusterError::MetadataLogFull(2))
        ));
    }
}
