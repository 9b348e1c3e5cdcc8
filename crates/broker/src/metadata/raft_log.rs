//! The durable Raft log under `<data-dir>/meta/raft/`:
//!
//! - `raft.log`: frames `length: u32 BE`, `crc32c: u32 BE` (of kind and body), `kind: u8`,
//!   body (protobuf): kind 1 an entry, kind 2 the hard state. An entry at an index already
//!   written replaces it and every later one (Raft's log truncation, done by appending); the
//!   last hard state wins. One append and one fsync per ready, before any of its messages
//!   leave: a vote or an append acknowledgement is durable before it is sent.
//! - `raft.snapshot`: one frame of kind 3 (a snapshot: the metadata image and the voters),
//!   replaced atomically (temporary file, fsync, rename, fsync of the directory). After a
//!   snapshot the log is rewritten with only the entries after it (again atomically); a crash
//!   between the two leaves the old log, whose entries the snapshot covers are skipped.
//!
//! Recovery reads frames until the first torn or corrupt one and truncates the file there (a
//! crash mid-append: nothing after it was acknowledged). Lengths are bounded before any
//! allocation, so hostile bytes give an error or a truncation, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use raft::prelude::{Entry, HardState, Snapshot};
use runnel_cluster::quorum::{Persisted, MAX_MESSAGE_BYTES};
use runnel_cluster::ClusterError;

const LOG: &str = "raft.log";
const SNAPSHOT: &str = "raft.snapshot";
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

pub struct RaftLog {
    dir: PathBuf,
    file: File,
    /// Entries held after the snapshot, to rewrite the log at compaction.
    persisted: Persisted,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_owned(),
        source,
    }
}

fn frame(kind: u8, body: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, body);
    out.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().unwrap_or_default()
}

/// Reads the intact frames of `bytes`: (kind, body) and the length of the intact prefix.
fn frames(bytes: &[u8]) -> (Vec<(u8, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut position = 0;
    while let Some(header) = bytes.get(position..position + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_MESSAGE_BYTES {
            break;
        }
        let Some(payload) = bytes.get(position + 8..position + 8 + len) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        out.push((payload[0], &payload[1..]));
        position += 8 + len;
    }
    (out, position)
}

/// Writes `bytes` to `path` atomically and durably.
fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), ClusterError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

fn corrupt(path: &Path, reason: String) -> ClusterError {
    ClusterError::CorruptLog {
        path: path.to_owned(),
        position: 0,
        reason,
    }
}

impl RaftLog {
    /// Whether `meta_dir` already holds a Raft log.
    pub fn exists(meta_dir: &Path) -> bool {
        meta_dir.join("raft").join(LOG).exists() || meta_dir.join("raft").join(SNAPSHOT).exists()
    }

    /// Opens (creating) the log and reads back what was persisted, truncating a torn tail.
    pub fn open(meta_dir: &Path) -> Result<(RaftLog, Persisted), ClusterError> {
        let dir = meta_dir.join("raft");
        let meta_created = !meta_dir.exists();
        let created = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        // New directories are durable only once their parents' entries are.
        if created {
            File::open(meta_dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(meta_dir))?;
        }
        if let Some(parent) = meta_dir.parent().filter(|_| meta_created) {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_error(parent))?;
        }
        let mut persisted = Persisted::default();
        let snapshot_path = dir.join(SNAPSHOT);
        if snapshot_path.exists() {
            let bytes = read_bounded(&snapshot_path)?;
            let (frames, _) = frames(&bytes);
            match frames.first() {
                Some((KIND_SNAPSHOT, body)) => {
                    let snapshot: Snapshot = protobuf::Message::parse_from_bytes(body)
                        .map_err(|e| corrupt(&snapshot_path, e.to_string()))?;
                    persisted.apply(Some(&snapshot), &[], None);
                }
                _ => {
                    return Err(corrupt(
                        &snapshot_path,
                        "the snapshot is damaged (it is replaced atomically, so this is not a \
                         torn write)"
                            .into(),
                    ))
                }
            }
        }
        let snapshot_index = persisted
            .snapshot
            .as_ref()
            .map_or(0, |s| s.get_metadata().index);
        let log_path = dir.join(LOG);
        let bytes = if log_path.exists() {
            read_bounded(&log_path)?
        } else {
            Vec::new()
        };
        let (frames, valid) = frames(&bytes);
        for (kind, body) in frames {
            match kind {
                KIND_ENTRY => {
                    let entry: Entry = protobuf::Message::parse_from_bytes(body)
                        .map_err(|e| corrupt(&log_path, e.to_string()))?;
                    if entry.index <= snapshot_index {
                        continue;
                    }
                    let expected = persisted
                        .entries
                        .last()
                        .map_or(snapshot_index, |e| e.index)
                        .saturating_add(1);
                    if entry.index > expected {
                        return Err(corrupt(
                            &log_path,
                            format!("entry {} follows {}", entry.index, expected - 1),
                        ));
                    }
                    persisted.apply(None, std::slice::from_ref(&entry), None);
                }
                KIND_HARD_STATE => {
                    let hard_state: HardState = protobuf::Message::parse_from_bytes(body)
                        .map_err(|e| corrupt(&log_path, e.to_string()))?;
                    persisted.apply(None, &[], Some(&hard_state));
                }
                other => {
                    return Err(corrupt(
                        &log_path,
                        format!("frame of unknown kind {other} (written by a newer version?)"),
                    ))
                }
            }
        }
        // raft-rs refuses to start (it panics) on a commit index past the log; only damage
        // writes one: entries reach the disk before the hard state that commits them.
        let last_index = persisted.entries.last().map_or(snapshot_index, |e| e.index);
        if persisted.hard_state.commit > last_index {
            return Err(corrupt(
                &log_path,
                format!(
                    "the commit index {} is past the last entry {last_index}",
                    persisted.hard_state.commit
                ),
            ));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(&log_path))?;
        if valid < bytes.len() {
            tracing::warn!(
                path = %log_path.display(),
                dropped = bytes.len() - valid,
                "truncating a torn tail of the raft log"
            );
            file.set_len(valid as u64).map_err(io_error(&log_path))?;
            file.sync_all().map_err(io_error(&log_path))?;
        }
        let persisted_copy = persisted.clone();
        Ok((
            RaftLog {
                dir,
                file,
                persisted,
            },
            persisted_copy,
        ))
    }

    /// Persists one ready's output (snapshot, entries, hard state) and fsyncs.
    pub fn persist(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), ClusterError> {
        if let Some(snapshot) = snapshot {
            self.persisted.apply(Some(snapshot), &[], None);
            self.write_snapshot(snapshot)?;
            // The rewritten log holds what the snapshot does not cover.
            self.rewrite()?;
        }
        let mut bytes = Vec::new();
        for entry in entries {
            frame(KIND_ENTRY, &encode(entry), &mut bytes);
        }
        if let Some(hard_state) = hard_state {
            frame(KIND_HARD_STATE, &encode(hard_state), &mut bytes);
        }
        self.persisted.apply(None, entries, hard_state);
        if bytes.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(LOG);
        self.file.write_all(&bytes).map_err(io_error(&path))?;
        self.file.sync_data().map_err(io_error(&path))
    }

    /// Replaces the snapshot with `snapshot` and drops the entries it covers.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<(), ClusterError> {
        self.write_snapshot(&snapshot)?;
        self.persisted.compact(snapshot);
        self.rewrite()
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), ClusterError> {
        let mut bytes = Vec::new();
        frame(KIND_SNAPSHOT, &encode(snapshot), &mut bytes);
        replace_file(&self.dir, &self.dir.join(SNAPSHOT), &bytes)
    }

    fn rewrite(&mut self) -> Result<(), ClusterError> {
        let mut bytes = Vec::new();
        for entry in &self.persisted.entries {
            frame(KIND_ENTRY, &encode(entry), &mut bytes);
        }
        frame(
            KIND_HARD_STATE,
            &encode(&self.persisted.hard_state),
            &mut bytes,
        );
        let path = self.dir.join(LOG);
        replace_file(&self.dir, &path, &bytes)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Ok(())
    }
}

/// Reads a whole file, refusing one larger than any log this module writes between snapshots.
fn read_bounded(path: &Path) -> Result<Vec<u8>, ClusterError> {
    /// Snapshots keep the log small; a larger file is not ours.
    const FILE_BYTES_MAX: u64 = 4 << 30;
    let mut file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if len > FILE_BYTES_MAX {
        return Err(corrupt(
            path,
            format!("{len} bytes is more than {FILE_BYTES_MAX}"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("[{index}]").into_bytes().into(),
            ..Entry::default()
        }
    }

    // Proves a log whose hard state commits past its last entry (only damage writes one)
    // is refused as corrupt at open instead of panicking raft-rs when the node starts.
    #[test]
    fn a_commit_index_past_the_log_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RaftLog::open(dir.path()).unwrap();
        let hs = HardState {
            term: 1,
            commit: 9,
            ..HardState::default()
        };
        log.persist(None, &[entry(1, 1), entry(2, 1)], Some(&hs))
            .unwrap();
        drop(log);
        let err = RaftLog::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("past the last entry"), "{err}");
    }

    // Proves entries, truncation by overwrite, the hard state and snapshots survive a reopen,
    // a torn tail is cut off, and garbage neither panics nor passes for entries.
    #[test]
    fn log_survives_reopen_torn_tails_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, persisted) = RaftLog::open(dir.path()).unwrap();
        assert!(persisted.entries.is_empty());
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 2,
            ..HardState::default()
        };
        log.persist(None, &[entry(1, 1), entry(2, 1), entry(3, 1)], Some(&hs))
            .unwrap();
        // A new leader overwrites index 3.
        log.persist(None, &[entry(3, 2)], None).unwrap();
        drop(log);
        let (mut log, persisted) = RaftLog::open(dir.path()).unwrap();
        let got: Vec<(u64, u64)> = persisted
            .entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (3, 2)]);
        assert_eq!(persisted.hard_state, hs);
        let snapshot =
            runnel_cluster::quorum::snapshot_of(2, 1, &[1, 2, 3], &Default::default(), &[]);
        log.compact(snapshot).unwrap();
        log.persist(None, &[entry(4, 2)], None).unwrap();
        drop(log);
        // A torn append at the end.
        let path = dir.path().join("raft").join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&[0, 0, 0, 40, 1, 2, 3, 4, 1, 9]);
        std::fs::write(&path, &bytes).unwrap();
        let (_, persisted) = RaftLog::open(dir.path()).unwrap();
        let got: Vec<u64> = persisted.entries.iter().map(|e| e.index).collect();
        assert_eq!(got, vec![3, 4]);
        assert_eq!(persisted.snapshot.unwrap().get_metadata().index, 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
        // Garbage with a valid checksum is an error, not a panic.
        let mut garbage = Vec::new();
        frame(KIND_ENTRY, &[0xff; 20], &mut garbage);
        std::fs::write(&path, &garbage).unwrap();
        assert!(RaftLog::open(dir.path()).is_err());
        let mut unknown = Vec::new();
        frame(77, b"x", &mut unknown);
        std::fs::write(&path, &unknown).unwrap();
        assert!(RaftLog::open(dir.path()).is_err());
    }
}
