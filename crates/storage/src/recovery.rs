//! Loading segments at open, after Kafka's `LogLoader` and `LogSegment.recover`.
//!
//! After a clean shutdown (`open_from_indexes`), a segment is opened as Kafka opens it: its
//! index files pass a sanity check, its stats come from their last entries and a walk of the
//! few batch headers past the last offset-index entry (Kafka's `readNextOffset`), and its
//! batches are not otherwise read; the producer state comes from the snapshot `close` wrote.
//!
//! Otherwise (`load_segment`) every segment's batch headers are scanned once (headers only,
//! 61-byte positional reads) to rebuild the idempotent-producer state, the leader-epoch cache
//! and per-segment stats, and a segment is *recovered* (every batch read whole and
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
pub(crate) fn load_segment(
    io: &Arc<dyn LogIo>,
    dir: &Path,
    base_offset: i64,
    role: SegmentRole,
    config: &LogConfig,
    producers: &mut ProducerStateManager,
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
        producers.replay(&header);
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
    let rewrote_indexes = rebuild || invalid.is_some();
    if rewrote_indexes {
        // Kafka's recover also appends the segment's max timestamp as a final time entry.
        if segment.max_timestamp >= 0 {
            let relative = segment.relative(segment.last_offset_of_max_timestamp);
            if let Some(entry) = segment.index.time_entry(segment.max_timestamp, relative) {
                time_entries.extend_from_slice(&entry);
            }
        }
        let sync = matches!(role, SegmentRole::Sealed { .. });
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
    })
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
