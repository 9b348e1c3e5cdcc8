//! Loading segments at open, after Kafka's `LogLoader` and `LogSegment.recover`.
//!
//! After a clean shutdown (`open_from_indexes`), a segment is opened as Kafka opens it: its
//! index files pass a sanity check, its stats come from their last entries and a walk of the
//! few batch headers past the last offset-index entry (Kafka's `readNextOffset`), its aborted
//! transactions from its `.txnindex` (`open_txn_index`, a sanity check only), and its batches
//! are not otherwise read; the producer state, ongoing transactions included, comes from the
//! producer snapshot `close` wrote at the log end (`producer_snapshot`).
//!
//! Otherwise (`load_segment`) every segment's batch headers are scanned once (headers only,
//! 61-byte positional reads; a control batch is read whole for its marker) for the leader-epoch
//! cache, per-segment stats and each segment's aborted transactions (`.txnindex`, kept when it
//! names the segment's ABORT markers, else rewritten); producer state (sequences, epochs,
//! ongoing transactions) starts from the latest producer snapshot and replays only the batches
//! from its offset on. A segment is *recovered* (every batch read whole and
//! CRC-checked, indexes rebuilt from scratch) when it holds offsets at or past the recovery
//! point (the active segment always does), or when its index files are missing or fail a
//! sanity check. Recovery truncates at the first invalid batch; the caller then deletes every
//! later segment, as `LogLoader` does. Indexes rebuilt for a sealed segment are fsynced here,
//! as nothing fsyncs a sealed segment again; the active segment's wait for the next flush,
//! which fsyncs its files anyway.

use std::io;
use std::path::Path;
use std::sync::Arc;

use runnel_protocol::batch::{check_stored_batch, BatchHeader, BATCH_HEADER_LEN, MAGIC_V2};

use crate::epoch_cache::EpochCache;
use crate::index::{
    lookup_position, read_offset_entry, read_time_entry, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES,
};
use crate::io::{IoFile, LogIo, OpenMode};
use crate::producer_state::ProducerStateManager;
use crate::segment::{log_path, offset_index_path, read_header_at, time_index_path, Segment};
use crate::txn::{
    encode_index, read_marker, txn_index_path, AbortedTxn, ABORTED_TXN_BYTES,
    MARKER_BATCH_BYTES_MAX,
};
use crate::{LogConfig, StorageError};

/// Which segment `load_segment` loads: what it checks and what it fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentRole {
    /// Sealed by a roll, which fsynced it, and never fsynced again: indexes rebuilt for it are
    /// fsynced at once, or a crash could bring back the torn ones they replaced. `recover` when
    /// it holds offsets at or past the recovery point after an unclean shutdown.
    Sealed { recover: bool },
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
    /// Bytes of the `.log` file read: batch headers walked, and whole batches when recovered.
    pub(crate) read_bytes: u64,
    /// Every batch was read whole and CRC-checked.
    pub(crate) recovered: bool,
    /// The `.txnindex` must be rebuilt from a replay that starts before the segment (see
    /// `load_txn_index`); the segment's aborted transactions are empty until then.
    pub(crate) txn_index_pending: bool,
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
    let recover = matches!(
        role,
        SegmentRole::Active { recover: true } | SegmentRole::Sealed { recover: true }
    );
    let mut read_bytes = 0u64;
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
        read_bytes += BATCH_HEADER_LEN as u64;
        let size = header.size_bytes() as u64;
        if !header_fits(&header, base_offset, segment.next_offset) {
            invalid = Some(format!(
                "batch at position {position} has inconsistent offsets or magic"
            ));
            break;
        }
        if rebuild {
            // `size` was checked against the file length, so this allocation is bounded by it.
            batch_buf.resize(size as usize, 0);
            io.read_exact_at(&log, &mut batch_buf, position)?;
            read_bytes += size;
            if let Err(e) = check_stored_batch(&batch_buf) {
                invalid = Some(e.to_string());
                break;
            }
        }
        if !rebuild && header.is_control() && header.size_bytes() <= MARKER_BATCH_BYTES_MAX {
            // `replay_batch` reads a marker whole.
            read_bytes += size;
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
    let sync = matches!(role, SegmentRole::Sealed { .. });
    let txn_index = load_txn_index(&**io, dir, base_offset, aborted, sync)?;
    let txn_index_pending = txn_index.is_none();
    let (aborted, wrote_txn_index) = txn_index.unwrap_or_default();
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
        read_bytes,
        recovered: rebuild,
        txn_index_pending,
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
        replayed.unreplayed_abort |= producers.is_none();
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
    /// An ABORT marker lay before the producer snapshot the replay started from: the
    /// transaction it ended, and so its `.txnindex` entry, is not known from this replay.
    pub(crate) unreplayed_abort: bool,
}

/// The segment's aborted transactions at open, from what replaying its batches found and its
/// `.txnindex`. The file is kept when it is whole, every entry names an ABORT marker of the
/// segment (producer and offset), in order, and it lists at least the transactions the replay
/// found ended: its entries were computed when the markers were written, and a replay that
/// starts after a deleted segment cannot know a transaction that began there, nor its first
/// offset. Otherwise (missing, torn, stale after a torn tail) it is rewritten from the replay,
/// as Kafka's `LogSegment.recover` rebuilds it. Returns the entries and whether the file was
/// created or rewritten; `None`, with nothing written, when it would be rewritten but an ABORT
/// marker lay before the replay's snapshot (`unreplayed_abort`): the caller then replays the
/// segment from an older snapshot (`replay_segment`) and asks again.
pub(crate) fn load_txn_index(
    io: &dyn LogIo,
    dir: &Path,
    base_offset: i64,
    replayed: ReplayedTxns,
    sync: bool,
) -> Result<Option<(Vec<AbortedTxn>, bool)>, StorageError> {
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
        Err(e) if e.kind() == io::ErrorKind::NotFound && replayed.unreplayed_abort => {
            return Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && replayed.aborted.is_empty() => {
            return Ok(Some((replayed.aborted, false)))
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
            return Ok(Some((entries, false)));
        }
    }
    if replayed.unreplayed_abort {
        return Ok(None);
    }
    write_index_file(io, &path, &encode_index(&replayed.aborted), sync)?;
    Ok(Some((replayed.aborted, true)))
}

/// Replays the batches of a segment `load_segment` loaded (so checked) into `producers`, those
/// from `replay_from` on, and answers what its markers ended, for `load_txn_index`.
pub(crate) fn replay_segment(
    io: &dyn LogIo,
    dir: &Path,
    segment: &Segment,
    producers: &mut ProducerStateManager,
    replay_from: i64,
) -> Result<ReplayedTxns, StorageError> {
    let log = io.open(&log_path(dir, segment.base_offset), OpenMode::Read)?;
    let log = IoFile::new(io, &log);
    let mut replayed = ReplayedTxns::default();
    let mut position = 0u64;
    while position < segment.size_bytes {
        let header = read_header_at(log, position, segment.size_bytes)?;
        replay_batch(
            log,
            position,
            &header,
            (header.base_offset >= replay_from).then_some(&mut *producers),
            &mut replayed,
        )?;
        position += header.size_bytes() as u64;
    }
    Ok(replayed)
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

/// The checks every batch header of a segment passes before the loader believes it: magic v2,
/// offsets at or past `next_offset` (increasing through the segment) and within the `u32`
/// reach of the segment's base.
fn header_fits(header: &BatchHeader, base_offset: i64, next_offset: i64) -> bool {
    let in_range = header
        .last_offset()
        .checked_sub(base_offset)
        .is_some_and(|r| (0..=i64::from(i32::MAX)).contains(&r));
    header.magic == MAGIC_V2
        && header.base_offset >= next_offset
        && header.last_offset_delta >= 0
        && in_range
}

/// A segment opened from its index files (module docs), and the `.log` bytes that took.
pub(crate) struct OpenedFromIndexes {
    pub(crate) segment: Segment,
    pub(crate) read_bytes: u64,
}

/// Opens the segment at `base_offset` after a clean shutdown without reading its batches
/// (Kafka's `LogSegment` open plus `readNextOffset`): the indexes pass `indexes_look_sane`; the
/// size is the file's; the largest timestamp and its batch come from the last time-index entry;
/// the next offset and the index builder's position from walking the batch headers after the
/// last offset-index entry (at most `index.interval.bytes` and one batch); the first batch's
/// timestamp (`segment.ms`) from one header. `Ok(None)` when anything on disk disagrees with
/// itself (an index entry the walk would have written but the file lacks, a header that does
/// not fit, an index pointing at no batch): the caller then opens the log by scanning and
/// recovering, so a damaged file costs time, never records.
pub(crate) fn open_from_indexes(
    io: &Arc<dyn LogIo>,
    dir: &Path,
    base_offset: i64,
    config: &LogConfig,
) -> Result<Option<OpenedFromIndexes>, StorageError> {
    let log = io.open(&log_path(dir, base_offset), OpenMode::Read)?;
    let file_size = io.size_bytes(&log)?;
    if !indexes_look_sane(&**io, dir, base_offset, file_size) {
        return Ok(None);
    }
    let index = io.open(&offset_index_path(dir, base_offset), OpenMode::Read)?;
    let time_index = io.open(&time_index_path(dir, base_offset), OpenMode::Read)?;
    let (index, time_index) = (IoFile::new(&**io, &index), IoFile::new(&**io, &time_index));
    let mut segment = Segment::empty(dir, base_offset, io);
    segment.offset_index_entries = io.size_bytes(index.file)? / OFFSET_ENTRY_BYTES;
    segment.time_index_entries = io.size_bytes(time_index.file)? / TIME_ENTRY_BYTES;
    let mut read_bytes = 0u64;
    let log = IoFile::new(&**io, &log);
    let header_at = |position: u64| match read_header_at(log, position, file_size) {
        Ok(header) => Ok(Some(header)),
        Err(StorageError::Io(e)) => Err(StorageError::Io(e)),
        Err(_) => Ok(None),
    };
    if file_size == 0 {
        let empty = segment.offset_index_entries == 0 && segment.time_index_entries == 0;
        return Ok(empty.then_some(OpenedFromIndexes {
            segment,
            read_bytes,
        }));
    }
    let Some(first) = header_at(0)? else {
        return Ok(None);
    };
    read_bytes += BATCH_HEADER_LEN as u64;
    if !header_fits(&first, base_offset, base_offset) {
        return Ok(None);
    }
    segment.first_batch_timestamp = Some(first.max_timestamp);
    // The batch the last time-index entry names: its last offset, until its base is found.
    let mut max_timestamp_batch_last_offset = None;
    if segment.time_index_entries > 0 {
        let (timestamp, relative) = read_time_entry(time_index, segment.time_index_entries - 1)?;
        segment.max_timestamp = timestamp;
        segment.last_offset_of_max_timestamp = base_offset + i64::from(relative);
        segment.index.last_time_entry_timestamp = timestamp;
        max_timestamp_batch_last_offset = Some(segment.last_offset_of_max_timestamp);
    }
    // Walk from the last indexed batch: the builder's state after it is that of an empty
    // builder after it (`IndexBuilder::on_batch` zeroes its count at an entry).
    let (mut position, mut indexed_last_offset) = (0u64, None);
    if segment.offset_index_entries > 0 {
        let (relative, indexed_position) =
            read_offset_entry(index, segment.offset_index_entries - 1)?;
        position = u64::from(indexed_position);
        indexed_last_offset = Some(base_offset + i64::from(relative));
        // Offsets before the indexed batch: the walk only checks that they increase from here.
        segment.next_offset = base_offset;
    }
    while position < file_size {
        let Some(header) = header_at(position)? else {
            return Ok(None);
        };
        read_bytes += BATCH_HEADER_LEN as u64;
        if !header_fits(&header, base_offset, segment.next_offset) {
            return Ok(None);
        }
        if let Some(last_offset) = indexed_last_offset.take() {
            if header.last_offset() != last_offset {
                return Ok(None);
            }
        }
        if max_timestamp_batch_last_offset == Some(header.last_offset()) {
            segment.base_offset_of_max_timestamp = header.base_offset;
            max_timestamp_batch_last_offset = None;
        }
        let update = segment.account_batch(config.index_interval_bytes, position, &header);
        if update.offset_entry.is_some() {
            // The last entry is not the last one appending these batches wrote.
            return Ok(None);
        }
        position += header.size_bytes() as u64;
    }
    if first.max_timestamp > segment.max_timestamp {
        // The time index's last entry is not the segment's largest timestamp.
        return Ok(None);
    }
    if let Some(last_offset) = max_timestamp_batch_last_offset {
        // The batch with the largest timestamp lies before the walk: find its base offset from
        // the offset index (at most `index.interval.bytes` of headers).
        let relative = last_offset - base_offset;
        let mut position = lookup_position(index, segment.offset_index_entries, relative)?;
        let mut previous_next = base_offset;
        loop {
            if position >= file_size {
                return Ok(None);
            }
            let Some(header) = header_at(position)? else {
                return Ok(None);
            };
            read_bytes += BATCH_HEADER_LEN as u64;
            if !header_fits(&header, base_offset, previous_next)
                || header.last_offset() > last_offset
            {
                return Ok(None);
            }
            if header.last_offset() == last_offset {
                segment.base_offset_of_max_timestamp = header.base_offset;
                break;
            }
            previous_next = header.last_offset() + 1;
            position += header.size_bytes() as u64;
        }
    }
    Ok(Some(OpenedFromIndexes {
        segment,
        read_bytes,
    }))
}

/// The aborted transactions of a segment opened from its indexes after a clean shutdown, from
/// its `.txnindex` as it stands, unread batches being what a clean open is for (Kafka's
/// `TransactionIndex.sanityCheck`, a little stricter): whole version-0 entries, each naming a
/// marker offset inside the segment, in increasing order, for a transaction that began at or
/// before its marker. `None` when the file fails that: the caller then opens the log by
/// recovering it, which rewrites the file from the markers. A missing file is a segment
/// without aborted transactions (Kafka creates it on the first).
pub(crate) fn open_txn_index(
    io: &dyn LogIo,
    dir: &Path,
    segment: &Segment,
) -> Result<Option<Vec<AbortedTxn>>, StorageError> {
    let file = match io.open(&txn_index_path(dir, segment.base_offset), OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        Err(e) => return Err(e.into()),
    };
    let size_bytes = io.size_bytes(&file)?;
    // One entry per ABORT marker, and a marker is a batch of at least a header: a larger file
    // is not ours, and nothing is sized from it.
    let size_bytes_max = segment.size_bytes / BATCH_HEADER_LEN as u64 * ABORTED_TXN_BYTES as u64;
    if size_bytes > size_bytes_max || size_bytes % ABORTED_TXN_BYTES as u64 != 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; size_bytes as usize];
    io.read_exact_at(&file, &mut buf, 0)?;
    let Some(entries) = buf
        .chunks(ABORTED_TXN_BYTES)
        .map(AbortedTxn::from_bytes)
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let mut previous_marker = None;
    for entry in &entries {
        let fits = entry.producer_id >= 0
            && (0..=entry.last_offset).contains(&entry.first_offset)
            && (segment.base_offset..segment.next_offset).contains(&entry.last_offset)
            && previous_marker.is_none_or(|previous| previous < entry.last_offset);
        if !fits {
            return Ok(None);
        }
        previous_marker = Some(entry.last_offset);
    }
    Ok(Some(entries))
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
