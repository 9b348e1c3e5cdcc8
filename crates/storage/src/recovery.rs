//! Loading segments at open, after Kafka's `LogLoader` and `LogSegment.recover`.
//!
//! Every segment's batch headers are scanned once (headers only, 61-byte positional reads; a
//! control batch is read whole for its marker) for the leader-epoch cache, per-segment stats
//! and each segment's aborted transactions (`.txnindex`, kept when it names the segment's ABORT
//! markers, else rewritten). Producer state (sequences, epochs, ongoing transactions) starts
//! from the latest producer snapshot (`producer_snapshot`) and replays only the batches from
//! its offset on. Kafka also skips the header scan of segments below the recovery point; we
//! still read every header for the stats, so snapshots spare the replay, not the scan.
//!
//! A segment is *recovered* (every batch read whole and CRC-checked, indexes rebuilt from
//! scratch) when it is the active segment after an unclean shutdown, or when its index files
//! are missing or fail a sanity check. Segments are fsynced when they roll, so only the active
//! segment can hold a torn tail. Recovery truncates at the first invalid batch; the caller then
//! deletes every later segment, as `LogLoader` does. Indexes rebuilt for a sealed segment are
//! fsynced here, as nothing fsyncs a sealed segment again; the active segment's wait for the
//! next flush, which fsyncs its files anyway.

use std::io;
use std::path::Path;
use std::sync::Arc;

use runnel_protocol::batch::{check_stored_batch, MAGIC_V2};

use crate::epoch_cache::EpochCache;
use crate::index::{read_time_entry, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::io::{IoFile, LogIo, OpenMode};
use crate::producer_state::ProducerStateManager;
use crate::segment::{log_path, offset_index_path, read_header_at, time_index_path, Segment};
use crate::txn::{encode_index, read_marker, txn_index_path, AbortedTxn, MARKER_BATCH_BYTES_MAX};
use crate::{LogConfig, StorageError};

/// Which segment `load_segment` loads: what it checks and what it fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentRole {
    /// Sealed by a roll, which fsynced it, and never fsynced again: indexes rebuilt for it are
    /// fsynced at once, or a crash could bring back the torn ones they replaced.
    Sealed,
    /// The active segment, whose files the next flush fsyncs (`ActiveFiles` with `sync_pending`).
    /// `recover` after an unclean shutdown: every batch is CRC-checked and the indexes rebuilt.
    Active { recover: bool },
}

/// Result of loading one segment.
pub(crate) struct Loaded {
    pub(crate) segment: Segment,
    /// Bytes cut from the end of the `.log` file because a batch was torn or corrupt.
    pub(crate) truncated_bytes: u64,
    /// The index files were rewritten, and created if they were missing: their names need a
    /// directory fsync to survive a crash.
    pub(crate) rewrote_indexes: bool,
}

/// Cheap checks that let a segment keep its index files (Kafka's `sanityCheck`): both exist,
/// whole entries only, and the last offset-index entry points inside the log.
fn indexes_look_sane(io: &dyn LogIo, dir: &Path, base_offset: i64, log_size: u64) -> bool {
    let sized = |path: std::path::PathBuf| {
        let file = io.open(&path, OpenMode::Read)?;
        let size_bytes = io.size_bytes(&file)?;
        Ok::<_, io::Error>((file, size_bytes))
    };
    let (Ok((index, index_bytes)), Ok((_, time_index_bytes))) = (
        sized(offset_index_path(dir, base_offset)),
        sized(time_index_path(dir, base_offset)),
    ) else {
        return false;
    };
    if index_bytes % OFFSET_ENTRY_BYTES != 0 || time_index_bytes % TIME_ENTRY_BYTES != 0 {
        return false;
    }
    if index_bytes == 0 {
        return true;
    }
    let mut last = [0u8; 8];
    if io
        .read_exact_at(&index, &mut last, index_bytes - OFFSET_ENTRY_BYTES)
        .is_err()
    {
        return false;
    }
    let [_, _, _, _, a, b, c, d] = last;
    u64::from(u32::from_be_bytes([a, b, c, d])) < log_size
}

/// Scans the segment at `base_offset`, feeding producer state and the epoch cache, recovering
/// it when `role` asks for it or its indexes look wrong.
#[expect(
    clippy::too_many_arguments,
    reason = "the log's open passes each piece of state it builds; a struct would only rename them"
)]
pub(crate) fn load_segment(
    io: &Arc<dyn LogIo>,
    dir: &Path,
    base_offset: i64,
    role: SegmentRole,
    config: &LogConfig,
    producers: &mut ProducerStateManager,
    replay_from: i64,
    epochs: &mut EpochCache,
) -> Result<Loaded, StorageError> {
    let log = io.open(&log_path(dir, base_offset), OpenMode::ReadWrite)?;
    let file_size = io.size_bytes(&log)?;
    let recover = role == SegmentRole::Active { recover: true };
    let rebuild = recover || !indexes_look_sane(&**io, dir, base_offset, file_size);
    let mut segment = Segment::empty(dir, base_offset, io);
    let mut offset_entries = Vec::new();
    let mut time_entries = Vec::new();
    let mut batch_buf = Vec::new();
    let mut position = 0u64;
    let mut invalid = None;
    let mut aborted = ReplayedTxns::default();
    while position < file_size {
        let header = match read_header_at(IoFile::new(&**io, &log), position, file_size) {
            Ok(h) => h,
            Err(StorageError::Io(e)) => return Err(StorageError::Io(e)),
            Err(e) => {
                invalid = Some(e.to_string());
                break;
            }
        };
        let size = header.size_bytes() as u64;
        let in_range = header
            .last_offset()
            .checked_sub(base_offset)
            .is_some_and(|r| (0..=i64::from(i32::MAX)).contains(&r));
        if header.magic != MAGIC_V2
            || header.base_offset < segment.next_offset
            || header.last_offset_delta < 0
            || !in_range
        {
            invalid = Some(format!(
                "batch at position {position} has inconsistent offsets or magic"
            ));
            break;
        }
        if rebuild {
            // `size` was checked against the file length, so this allocation is bounded by it.
            batch_buf.resize(size as usize, 0);
            io.read_exact_at(&log, &mut batch_buf, position)?;
            if let Err(e) = check_stored_batch(&batch_buf) {
                invalid = Some(e.to_string());
                break;
            }
        }
        replay_batch(
            IoFile::new(&**io, &log),
            position,
            &header,
            (header.base_offset >= replay_from).then_some(&mut *producers),
            &mut aborted,
        )?;
        if header.partition_leader_epoch >= 0
            && epochs
                .latest_epoch()
                .is_none_or(|latest| header.partition_leader_epoch > latest)
        {
            epochs.assign(header.partition_leader_epoch, header.base_offset);
        }
        segment
            .account_batch(config.index_interval_bytes, position, &header)
            .append_to(&mut offset_entries, &mut time_entries);
        position += size;
    }
    let truncated_bytes = file_size - position;
    if let Some(reason) = &invalid {
        tracing::warn!(
            segment = %log_path(dir, base_offset).display(),
            position, truncated_bytes, reason = %reason,
            "truncating invalid tail of log segment"
        );
        io.set_len(&log, position)?;
        io.sync_all(&log)?;
    }
    let sync = role == SegmentRole::Sealed;
    let (aborted, wrote_txn_index) = load_txn_index(&**io, dir, base_offset, aborted, sync)?;
    segment.shared.set_aborted(aborted);
    let rewrote_indexes = rebuild || invalid.is_some() || wrote_txn_index;
    if rewrote_indexes {
        // Kafka's recover also appends the segment's max timestamp as a final time entry.
        if segment.max_timestamp >= 0 {
            let relative = segment.relative(segment.last_offset_of_max_timestamp);
            if let Some(entry) = segment.index.time_entry(segment.max_timestamp, relative) {
                time_entries.extend_from_slice(&entry);
            }
        }
        write_index_file(
            &**io,
            &offset_index_path(dir, base_offset),
            &offset_entries,
            sync,
        )?;
        write_index_file(
            &**io,
            &time_index_path(dir, base_offset),
            &time_entries,
            sync,
        )?;
        segment.offset_index_entries = offset_entries.len() as u64 / OFFSET_ENTRY_BYTES;
        segment.time_index_entries = time_entries.len() as u64 / TIME_ENTRY_BYTES;
    } else {
        let index = io.open(&offset_index_path(dir, base_offset), OpenMode::Read)?;
        segment.offset_index_entries = io.size_bytes(&index)? / OFFSET_ENTRY_BYTES;
        let time_index = io.open(&time_index_path(dir, base_offset), OpenMode::Read)?;
        segment.time_index_entries = io.size_bytes(&time_index)? / TIME_ENTRY_BYTES;
        segment.index.last_time_entry_timestamp = if segment.time_index_entries > 0 {
            read_time_entry(
                IoFile::new(&**io, &time_index),
                segment.time_index_entries - 1,
            )?
            .0
        } else {
            -1
        };
    }
    Ok(Loaded {
        segment,
        truncated_bytes,
        rewrote_indexes,
    })
}

/// Feeds one stored batch to `producers`, as Kafka's `ProducerStateManager` replays the log
/// (REPLICATION origin: no checks); `None` when a producer snapshot already covers it. A
/// control batch is read whole to learn its marker: an ABORT marker is noted in `replayed`,
/// with its `.txnindex` entry when it ends a transaction the replay knows.
pub(crate) fn replay_batch(
    log: IoFile<'_>,
    position: u64,
    header: &runnel_protocol::batch::BatchHeader,
    producers: Option<&mut ProducerStateManager>,
    replayed: &mut ReplayedTxns,
) -> Result<(), StorageError> {
    if !header.is_control() {
        if let Some(producers) = producers {
            producers.replay(header);
        }
        return Ok(());
    }
    let size = header.size_bytes();
    let marker = if size <= MARKER_BATCH_BYTES_MAX {
        let mut buf = vec![0u8; size];
        log.read_exact_at(&mut buf, position)?;
        read_marker(&buf)
    } else {
        None
    };
    if marker.is_some_and(|m| m.result == crate::txn::TxnResult::Abort) {
        replayed
            .abort_markers
            .push((header.producer_id, header.base_offset));
    }
    let Some(producers) = producers else {
        return Ok(());
    };
    if let Some((completed, last_stable_offset)) = producers.replay_marker(header, marker) {
        if completed.aborted {
            replayed.aborted.push(AbortedTxn {
                producer_id: completed.producer_id,
                first_offset: completed.first_offset,
                last_offset: completed.last_offset,
                last_stable_offset,
            });
        }
    }
    Ok(())
}

/// What replaying a segment's markers found.
#[derive(Debug, Default)]
pub(crate) struct ReplayedTxns {
    /// The `.txnindex` entries of the transactions its ABORT markers ended.
    pub(crate) aborted: Vec<AbortedTxn>,
    /// Every ABORT marker in it, as (producer id, offset), whether or not it ended a
    /// transaction the replay knew of.
    pub(crate) abort_markers: Vec<(i64, i64)>,
}

/// The segment's aborted transactions at open, from what replaying its batches found and its
/// `.txnindex`. The file is kept when it is whole, every entry names an ABORT marker of the
/// segment (producer and offset), in order, and it lists at least the transactions the replay
/// found ended: its entries were computed when the markers were written, and a replay that
/// starts after a deleted segment cannot know a transaction that began there, nor its first
/// offset. Otherwise (missing, torn, stale after a torn tail) it is rewritten from the replay,
/// as Kafka's `LogSegment.recover` rebuilds it. Returns the entries and whether the file was
/// created or rewritten.
pub(crate) fn load_txn_index(
    io: &dyn LogIo,
    dir: &Path,
    base_offset: i64,
    replayed: ReplayedTxns,
    sync: bool,
) -> Result<(Vec<AbortedTxn>, bool), StorageError> {
    let path = txn_index_path(dir, base_offset);
    let entry_bytes = crate::txn::ABORTED_TXN_BYTES;
    // Each entry stands for one ABORT marker of the segment, so a file that is not larger than
    // their count allows is read; a larger one is stale anyway.
    let size_bytes_max = (replayed.abort_markers.len() * entry_bytes) as u64;
    let found = match io.open(&path, OpenMode::Read) {
        Ok(file) => {
            let size_bytes = io.size_bytes(&file)?;
            if size_bytes <= size_bytes_max && size_bytes % entry_bytes as u64 == 0 {
                let mut buf = vec![0u8; size_bytes as usize];
                io.read_exact_at(&file, &mut buf, 0)?;
                buf.chunks(entry_bytes)
                    .map(AbortedTxn::from_bytes)
                    .collect::<Option<Vec<_>>>()
            } else {
                None
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && replayed.aborted.is_empty() => {
            return Ok((replayed.aborted, false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(entries) = found {
        let names_markers = {
            let mut markers = replayed.abort_markers.iter();
            entries.iter().all(|e| {
                markers
                    .by_ref()
                    .any(|&(pid, offset)| pid == e.producer_id && offset == e.last_offset)
            })
        };
        let covers_replay = replayed.aborted.iter().all(|r| {
            entries.iter().any(|e| {
                e.producer_id == r.producer_id
                    && e.last_offset == r.last_offset
                    && e.first_offset <= r.first_offset
            })
        });
        if names_markers && covers_replay {
            return Ok((entries, false));
        }
    }
    write_index_file(io, &path, &encode_index(&replayed.aborted), sync)?;
    Ok((replayed.aborted, true))
}

/// Makes the segment's `.txnindex` hold exactly `aborted`, rewriting it only when it differs.
/// Creates the file only when there is an entry, as Kafka creates it on the first. Returns
/// whether it created or rewrote the file.
pub(crate) fn sync_txn_index(
    io: &dyn LogIo,
    dir: &Path,
    base_offset: i64,
    aborted: &[AbortedTxn],
    sync: bool,
) -> Result<bool, StorageError> {
    let path = txn_index_path(dir, base_offset);
    let wanted = encode_index(aborted);
    let found = match io.open(&path, OpenMode::Read) {
        Ok(file) => {
            let size_bytes = io.size_bytes(&file)?;
            if size_bytes == wanted.len() as u64 {
                let mut buf = vec![0u8; wanted.len()];
                io.read_exact_at(&file, &mut buf, 0)?;
                Some(buf)
            } else {
                Some(Vec::new())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    match found {
        None if wanted.is_empty() => Ok(false),
        Some(bytes) if bytes == wanted => Ok(false),
        _ => {
            write_index_file(io, &path, &wanted, sync)?;
            Ok(true)
        }
    }
}

/// Replaces an index file's contents with `entries`, fsynced when `sync` (see `SegmentRole`).
/// Its name, when created, is made durable by the caller's directory fsync.
fn write_index_file(io: &dyn LogIo, path: &Path, entries: &[u8], sync: bool) -> io::Result<()> {
    let file = io.open(path, OpenMode::Truncate)?;
    if !entries.is_empty() {
        io.write_all_at(&file, entries, 0)?;
    }
    if sync {
        // The truncation too: an empty rebuilt index must not come back as the old bytes.
        io.sync_data(&file)?;
    }
    Ok(())
}
