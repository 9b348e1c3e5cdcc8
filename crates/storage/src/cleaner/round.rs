//! One cleaning round of one log: Kafka's `Cleaner.doClean`.
//!
//! 1. Build the offset map over the dirty section `[first_dirty, first_uncleanable)`, as far
//!    as the map's budget reaches (`end_offset`).
//! 2. Group the segments below `end_offset` (`groupSegmentsBySize`) and, for each group,
//!    write one cleaned segment to `.cleaned` files, fsynced; the caller's `install` swaps it
//!    in (`PartitionLog::replace_segments`) under the log's lock.
//! 3. The caller checkpoints `end_offset` as the next round's first dirty offset.
//!
//! Steps 1 and 2 read sealed segments through the snapshot taken when the round began, with no
//! lock: sealed segments never change, and one deleted meanwhile (retention) is still readable
//! through its retired handles; `replace_segments` then finds it gone and the round stops.
//!
//! # What a clean keeps (Kafka's `cleanInto` filter)
//!
//! A record is kept if it lies past the map's latest offset, or if it is the latest for its key
//! and either has a value or is a tombstone whose batch's delete horizon has not passed. A
//! batch whose records all stay is copied as is, unless it keeps a tombstone and has no delete
//! horizon yet: then it is rewritten with horizon = now + `delete.retention.ms` (so a tombstone
//! survives at least one full `delete.retention.ms` after the clean that first saw it, and the
//! next round after that removes it). A batch that keeps nothing still leaves its header
//! (`RETAIN_EMPTY`) when it is the last batch of an active producer (its sequence and epoch are
//! that producer's state) or the last batch below the round's upper bound.
//!
//! # Transactions (Kafka's `CleanedTransactionMetadata`)
//!
//! The batches of aborted transactions (told by the `.txnindex` entries) put no keys in the map
//! and lose all their records (the header stays under the `RETAIN_EMPTY` rule). Committed
//! transactional data is compacted like any other. A transaction marker is kept until the
//! clean finds none of its transaction's batches left: an ABORT marker whose batches are all
//! gone, or a COMMIT marker whose transaction left no batch, may go. Such a marker is first
//! rewritten with a delete horizon (now + `delete.retention.ms`, as tombstones are) and removed
//! by the first clean after it, unless it is its producer's last record (its epoch fences
//! zombies) or the last batch of the round. The cleaned segment's `.txnindex` keeps the entries
//! of ABORT markers kept with some of their batches; one whose batches are gone is dropped,
//! as Kafka drops it, since no read_committed reader can meet its data any more.
//!
//! Batches are read through the protocol crate's bounded reader (`BatchRecords`: compressed
//! ones decompressed within the log's `max.message.bytes` limits) and, when a record goes,
//! written again by its `retain_records` (Kafka's `buildRetainedRecordsInto`, with their own
//! codec) or `empty_batch` (Kafka's `writeEmptyHeader`).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runnel_protocol::batch::{
    check_stored_batch, empty_batch, retain_records, BatchHeader, BatchRecords, RecordView,
    BATCH_HEADER_LEN,
};
use runnel_protocol::compression::DecompressLimits;

use super::offset_map::OffsetMap;
use super::Throttler;
use crate::file_budget::FileBudget;
use crate::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::io::{IoFile, LogIo, OpenMode};
use crate::producer_state::LastRecord;
use crate::segment::{Segment, SegmentFile, SegmentRead, SharedSegment};
use crate::txn::AbortedTxn;
use crate::{LogConfig, StorageError};

/// Suffix of a cleaned segment's files before the swap (Kafka's `CleanedFileSuffix`).
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment's files while it replaces the old ones (`SwapFileSuffix`).
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Output bytes buffered before a write to the cleaned file.
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// What a round did (Kafka's `CleanerStats`, the parts we report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// The next round's first dirty offset (the map covered everything below it).
    pub end_offset: i64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_written: u64,
    /// Groups swapped in.
    pub segments_written: u64,
    /// `replace_segments` found the old segments gone (deleted or truncated meanwhile).
    pub aborted: bool,
}

/// A cleaned segment ready to be swapped in: its files carry `CLEANED_SUFFIX`.
#[derive(Debug)]
pub struct CleanedSegment {
    /// The new segment's writer state, named by its final file names.
    pub(crate) segment: Segment,
    /// The segments it replaces, as the round saw them.
    pub(crate) replaces: Vec<Arc<SharedSegment>>,
    /// Its `.txnindex` entries: the aborted transactions whose marker it keeps with data.
    pub(crate) aborted: Vec<AbortedTxn>,
}

impl CleanedSegment {
    pub fn base_offset(&self) -> i64 {
        self.segment.base_offset
    }

    /// Removes the cleaned files, for a round whose log went away before the swap.
    pub fn discard(self) {
        let io = self.segment.shared_io();
        for file in SegmentFile::ALL {
            let path = file.path(self.segment.shared_dir(), self.segment.base_offset);
            let _ = crate::io::remove_if_present(&*io, &with_suffix(&path, CLEANED_SUFFIX));
        }
    }
}

/// Everything a round needs, taken under the log's lock by `PartitionLog::begin_cleaning`.
#[derive(Debug)]
pub struct CleanRound {
    pub(crate) dir: PathBuf,
    pub(crate) io: Arc<dyn LogIo>,
    pub(crate) budget: Arc<FileBudget>,
    pub(crate) config: LogConfig,
    /// Every segment below `first_uncleanable`, oldest first: all sealed.
    pub(crate) segments: Vec<SegmentRead>,
    pub(crate) first_dirty: i64,
    pub(crate) first_uncleanable: i64,
    /// Each producer's last record in the producer state (Kafka's
    /// `lastRecordsOfActiveProducers`).
    pub(crate) producer_last: HashMap<i64, LastRecord>,
    /// Every aborted transaction that began below `first_uncleanable`, by first offset, from
    /// every segment's `.txnindex` entries (a marker may lie past the round's segments).
    pub(crate) aborted_txns: Vec<AbortedTxn>,
    pub(crate) now_ms: i64,
}

/// Kafka's `CleanedTransactionMetadata`, the part that tells aborted transactional batches:
/// fed every batch of a group in order, a producer's transactional batches are aborted from
/// the first offset of one of its aborted transactions until its ABORT marker. Nothing below
/// the round's bound (at most the last stable offset) is undecided, so every aborted
/// transaction there has its entry.
struct AbortedBatches<'a> {
    /// Entries not yet reached, by first offset.
    pending: std::iter::Peekable<std::slice::Iter<'a, AbortedTxn>>,
    /// Producers inside an aborted transaction.
    aborting: std::collections::HashSet<i64>,
}

impl<'a> AbortedBatches<'a> {
    /// For a pass from `start`: transactions whose marker lies below it are over.
    fn new(entries: &'a [AbortedTxn], start: i64) -> Self {
        let mut pending = entries.iter().peekable();
        let mut aborting = std::collections::HashSet::new();
        // Transactions that began before the group and end in or after it.
        while let Some(e) = pending.next_if(|e| e.first_offset < start) {
            if e.last_offset >= start {
                aborting.insert(e.producer_id);
            }
        }
        AbortedBatches { pending, aborting }
    }

    /// Whether `header`'s batch holds aborted transactional data (`batch`: its bytes, read for
    /// a control batch's marker).
    fn is_aborted(&mut self, header: &BatchHeader, batch: &[u8]) -> bool {
        while let Some(e) = self
            .pending
            .next_if(|e| e.first_offset <= header.last_offset())
        {
            self.aborting.insert(e.producer_id);
        }
        if header.is_control() {
            let abort = crate::txn::read_marker(batch)
                .is_some_and(|m| m.result == crate::txn::TxnResult::Abort);
            if abort {
                self.aborting.remove(&header.producer_id);
            }
            return false;
        }
        header.is_transactional() && self.aborting.contains(&header.producer_id)
    }
}

/// Kafka's `CleanedTransactionMetadata` for the write pass: one per round, fed every batch
/// of every group in log order from the first segment, so a transaction that spans groups is
/// seen whole. Tells aborted data, which markers may go, and the `.txnindex` entries of each
/// cleaned segment.
struct TxnCleaning<'a> {
    /// Entries not yet reached, by first offset.
    pending: std::iter::Peekable<std::slice::Iter<'a, AbortedTxn>>,
    /// Producers inside an aborted transaction: its entry, and whether any of its batches was
    /// read (Kafka's `lastObservedBatchOffset`).
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers with a batch of a committed transaction read since its last marker.
    committed: std::collections::HashSet<i64>,
    /// Entries of the current group's kept ABORT markers.
    index: Vec<AbortedTxn>,
}

impl<'a> TxnCleaning<'a> {
    fn new(entries: &'a [AbortedTxn]) -> Self {
        TxnCleaning {
            pending: entries.iter().peekable(),
            aborted: HashMap::new(),
            committed: std::collections::HashSet::new(),
            index: Vec::new(),
        }
    }

    /// Kafka's `consumeAbortedTxnsUpTo`.
    fn reach(&mut self, offset: i64) {
        while let Some(e) = self.pending.next_if(|e| e.first_offset <= offset) {
            self.aborted.entry(e.producer_id).or_insert((*e, false));
        }
    }

    /// Kafka's `onBatchRead`: whether a data batch belongs to an aborted transaction.
    fn on_batch(&mut self, header: &BatchHeader) -> bool {
        self.reach(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&header.producer_id) {
            Some((_, observed)) => {
                *observed = true;
                true
            }
            None => {
                self.committed.insert(header.producer_id);
                false
            }
        }
    }

    /// Kafka's `onControlBatchRead`: whether a control batch may be discarded (once its delete
    /// horizon passed). An ABORT marker kept for its batches keeps its `.txnindex` entry.
    fn on_control(&mut self, header: &BatchHeader, batch: &[u8]) -> bool {
        self.reach(header.last_offset());
        if header.record_count == 0 {
            // Emptied by an earlier clean.
            return true;
        }
        match crate::txn::read_marker(batch).map(|m| m.result) {
            Some(crate::txn::TxnResult::Abort) => match self.aborted.remove(&header.producer_id) {
                Some((entry, true)) => {
                    self.index.push(entry);
                    false
                }
                _ => true,
            },
            Some(crate::txn::TxnResult::Commit) => !self.committed.remove(&header.producer_id),
            // A control record of another kind: kept, as Kafka keeps it.
            None => false,
        }
    }
}

impl CleanRound {
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty
    }

    pub fn first_uncleanable_offset(&self) -> i64 {
        self.first_uncleanable
    }

    /// Base offset of the segment after `index` (or the round's bound for the last one).
    fn next_base(&self, index: usize) -> i64 {
        self.segments
            .get(index + 1)
            .map_or(self.first_uncleanable, SegmentRead::base_offset)
    }

    /// Calls `f(header, batch bytes)` for every batch of `segment` from `position`, reading
    /// `io_buffer_bytes` at a time (a batch larger than that is read alone; its length was
    /// checked against the segment's size first).
    fn for_each_batch(
        &self,
        segment: &SegmentRead,
        position: u64,
        io_buffer_bytes: usize,
        throttler: &Throttler,
        mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<ControlFlow<()>, StorageError>,
    ) -> Result<u64, StorageError> {
        let size_bytes = segment.stats.size_bytes;
        segment.with_log(&self.budget, |file: IoFile<'_>| {
            let mut position = position;
            let mut read = 0u64;
            let mut buf = Vec::new();
            while position < size_bytes {
                let want = (io_buffer_bytes as u64).min(size_bytes - position) as usize;
                buf.resize(want, 0);
                file.read_exact_at(&mut buf, position)?;
                read += want as u64;
                throttler.maybe_throttle(want as u64);
                let mut at = 0usize;
                while at + BATCH_HEADER_LEN <= buf.len() {
                    let header = BatchHeader::parse(&buf[at..])?;
                    let size = header.size_bytes();
                    if header.batch_length < 0
                        || size < BATCH_HEADER_LEN
                        || position + (at + size) as u64 > size_bytes
                    {
                        return Err(StorageError::Corrupt(format!(
                            "batch at position {} has an impossible length {}",
                            position + at as u64,
                            header.batch_length
                        )));
                    }
                    if at + size > buf.len() {
                        if at == 0 {
                            // Larger than the I/O buffer: read it whole (bounded above).
                            buf.resize(size, 0);
                            file.read_exact_at(&mut buf, position)?;
                            read += size as u64;
                            continue;
                        }
                        break;
                    }
                    if f(&header, &buf[at..at + size])?.is_break() {
                        return Ok(read);
                    }
                    at += size;
                }
                if at == 0 {
                    return Err(StorageError::Corrupt(format!(
                        "no whole batch at position {position}"
                    )));
                }
                position += at as u64;
            }
            Ok(read)
        })
    }

    /// Kafka's `buildOffsetMap`: maps the keys of the dirty section until the map is full.
    /// Returns the offset the map covers up to (exclusive): the round's end offset.
    pub fn build_offset_map(
        &self,
        map: &mut OffsetMap,
        io_buffer_bytes: usize,
        throttler: &Throttler,
        stats: &mut CleanStats,
    ) -> Result<i64, StorageError> {
        map.clear();
        let limits =
            DecompressLimits::for_max_message_bytes(self.config.max_message_bytes as usize);
        let start = self.first_dirty;
        let end = self.first_uncleanable;
        let mut full = false;
        // Kafka's `buildOffsetMap`: aborted transactional batches put no keys in the map (they
        // are removed, and must not displace an older committed value of their key).
        let mut aborted = AbortedBatches::new(&self.aborted_txns, start);
        for (index, segment) in self.segments.iter().enumerate() {
            let next_base = self.next_base(index);
            if next_base <= start || segment.base_offset() >= end || full {
                continue;
            }
            let position = segment.position_for(&self.budget, start)?;
            stats.bytes_read += self.for_each_batch(
                segment,
                position,
                io_buffer_bytes,
                throttler,
                |header, batch| {
                    let is_aborted = aborted.is_aborted(header, batch);
                    // Markers hold no keyed data: they put nothing in the map.
                    if !header.is_control() && !is_aborted && header.last_offset() >= start {
                        check_stored_batch(batch)?;
                        BatchRecords::open(batch, limits)?.for_each(|record| {
                            if full {
                                return;
                            }
                            stats.records_read += 1;
                            let Some(key) = record.key else { return };
                            let offset = header
                                .base_offset
                                .wrapping_add(i64::from(record.offset_delta));
                            if offset < start {
                                return;
                            }
                            if map.is_full() {
                                full = true;
                                return;
                            }
                            map.put(key, offset);
                        })?;
                        if full {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    if header.last_offset() >= start {
                        map.update_latest_offset(header.last_offset());
                    }
                    Ok(ControlFlow::Continue(()))
                },
            )?;
            if !full {
                // Gaps between segments are covered too.
                map.update_latest_offset(next_base - 1);
            }
        }
        Ok(map.latest_offset() + 1)
    }

    /// Kafka's `groupSegmentsBySize` over the segments below `end_offset`: consecutive
    /// segments whose log and index bytes fit `segment.bytes` / `segment.index.bytes` and
    /// whose offsets fit one segment's relative range. Returns index ranges into the round's
    /// segments.
    pub fn group_segments(&self, end_offset: i64) -> Vec<std::ops::Range<usize>> {
        let count = self
            .segments
            .iter()
            .take_while(|s| s.base_offset() < end_offset)
            .count();
        let log_max = self.config.segment_bytes.min(i32::MAX as u64);
        let index_max = u64::from(self.config.segment_index_bytes);
        let mut groups = Vec::new();
        let mut first = 0;
        while first < count {
            let s = &self.segments[first];
            let mut log_bytes = s.stats.size_bytes;
            let mut index_bytes = s.stats.offset_index_entries * OFFSET_ENTRY_BYTES;
            let mut time_bytes = s.stats.time_index_entries * TIME_ENTRY_BYTES;
            let mut last = first + 1;
            while last < count {
                let next = &self.segments[last];
                // The next segment's last offset, bounded by its successor's base.
                let next_last_offset = if last + 1 < self.segments.len() {
                    self.segments[last + 1].base_offset() - 1
                } else {
                    self.first_uncleanable - 1
                };
                let fits = log_bytes + next.stats.size_bytes <= log_max
                    && index_bytes + next.stats.offset_index_entries * OFFSET_ENTRY_BYTES
                        <= index_max
                    && time_bytes + next.stats.time_index_entries * TIME_ENTRY_BYTES <= index_max
                    && (next.stats.size_bytes == 0
                        || next_last_offset - s.base_offset() <= i64::from(i32::MAX));
                if !fits {
                    break;
                }
                log_bytes += next.stats.size_bytes;
                index_bytes += next.stats.offset_index_entries * OFFSET_ENTRY_BYTES;
                time_bytes += next.stats.time_index_entries * TIME_ENTRY_BYTES;
                last += 1;
            }
            groups.push(first..last);
            first = last;
        }
        groups
    }

    /// Kafka's `cleanSegments`: writes the group's kept batches to one segment's `.cleaned`
    /// files (fsynced), named by the group's first base offset.
    #[allow(clippy::too_many_arguments)]
    fn clean_group(
        &self,
        group: std::ops::Range<usize>,
        map: &OffsetMap,
        io_buffer_bytes: usize,
        throttler: &Throttler,
        txns: &mut TxnCleaning<'_>,
        stats: &mut CleanStats,
    ) -> Result<CleanedSegment, StorageError> {
        let base = self.segments[group.start].base_offset();
        let final_paths = SegmentFile::ALL.map(|f| f.path(&self.dir, base));
        let cleaned_paths = final_paths.clone().map(|p| with_suffix(&p, CLEANED_SUFFIX));
        let result = self.write_cleaned(
            group.clone(),
            base,
            &cleaned_paths,
            map,
            io_buffer_bytes,
            throttler,
            txns,
            stats,
        );
        let aborted = std::mem::take(&mut txns.index);
        match result {
            Ok(segment) => Ok(CleanedSegment {
                segment,
                replaces: self.segments[group]
                    .iter()
                    .map(SegmentRead::shared)
                    .collect(),
                aborted,
            }),
            Err(e) => {
                for path in &cleaned_paths {
                    let _ = crate::io::remove_if_present(&*self.io, path);
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_cleaned(
        &self,
        group: std::ops::Range<usize>,
        base: i64,
        paths: &[PathBuf; 3],
        map: &OffsetMap,
        io_buffer_bytes: usize,
        throttler: &Throttler,
        txns: &mut TxnCleaning<'_>,
        stats: &mut CleanStats,
    ) -> Result<Segment, StorageError> {
        let io = &*self.io;
        let log = io.open(&paths[0], OpenMode::Truncate)?;
        let mut segment = Segment::empty(&self.dir, base, &self.io);
        let mut offset_entries = Vec::new();
        let mut time_entries = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        // Per batch: whether each record stays, by index.
        let mut keep: Vec<bool> = Vec::new();
        let mut written = 0u64;
        let latest = map.latest_offset();
        let now = self.now_ms;
        let horizon_for_new = now.saturating_add(self.config.compaction.delete_retention_ms);
        let interval = self.config.index_interval_bytes;
        let limits =
            DecompressLimits::for_max_message_bytes(self.config.max_message_bytes as usize);
        for index in group {
            let source = &self.segments[index];
            stats.bytes_read +=
                self.for_each_batch(source, 0, io_buffer_bytes, throttler, |header, batch| {
                    let kept_from = out.len();
                    let producer_last = header.has_producer_id()
                        && self.producer_last.get(&header.producer_id).is_some_and(
                            |last| match last.last_data_offset {
                                Some(offset) => offset == header.last_offset(),
                                None => header.is_control() && header.producer_epoch == last.epoch,
                            },
                        );
                    let retain_empty =
                        producer_last || header.last_offset() + 1 == self.first_uncleanable;
                    if header.is_control() {
                        let discardable = txns.on_control(header, batch);
                        let existing_horizon = header.delete_horizon_ms();
                        stats.records_read += u64::try_from(header.record_count).unwrap_or(0);
                        if discardable && existing_horizon.is_some_and(|horizon| horizon <= now) {
                            // Its horizon passed: the marker goes (its header stays if it is
                            // its producer's last record or the round's last batch).
                            if retain_empty {
                                out.extend_from_slice(&empty_batch(header));
                            }
                        } else if discardable && existing_horizon.is_none() {
                            // First seen removable: stamped with its delete horizon.
                            check_stored_batch(batch)?;
                            let records = BatchRecords::open(batch, limits)?;
                            match retain_records(&records, |_| true, Some(horizon_for_new))? {
                                Some(rewritten) => out.extend_from_slice(&rewritten),
                                None if retain_empty => out.extend_from_slice(&empty_batch(header)),
                                None => {}
                            }
                        } else {
                            out.extend_from_slice(batch);
                        }
                    } else if txns.on_batch(header) {
                        // Kafka's cleaner removes aborted transactional data (its marker and
                        // `.txnindex` entry stay while any header of it does).
                        stats.records_read += u64::try_from(header.record_count).unwrap_or(0);
                        if retain_empty {
                            out.extend_from_slice(&empty_batch(header));
                        }
                    } else {
                        check_stored_batch(batch)?;
                        let records = BatchRecords::open(batch, limits)?;
                        let existing_horizon = header.delete_horizon_ms();
                        let retain_deletes = existing_horizon.is_none_or(|horizon| now < horizon);
                        // Which records stay, by index: the rewrite below needs to know first
                        // whether any kept one is a tombstone.
                        keep.clear();
                        let mut tombstones = false;
                        records.for_each(|record| {
                            stats.records_read += 1;
                            let offset = header
                                .base_offset
                                .wrapping_add(i64::from(record.offset_delta));
                            let stays = if offset > latest {
                                true
                            } else if let Some(key) = record.key {
                                offset >= map.get(key) && (record.value.is_some() || retain_deletes)
                            } else {
                                false
                            };
                            tombstones |= stays && record.value.is_none();
                            keep.push(stays);
                        })?;
                        let kept = keep.iter().filter(|&&stays| stays).count();
                        let set_horizon = tombstones && existing_horizon.is_none();
                        if kept > 0 && kept == keep.len() && !set_horizon {
                            out.extend_from_slice(batch);
                        } else if kept > 0 {
                            let horizon = if set_horizon {
                                Some(horizon_for_new)
                            } else {
                                existing_horizon
                            };
                            let stays = |r: &RecordView<'_>| {
                                usize::try_from(r.index)
                                    .ok()
                                    .and_then(|i| keep.get(i))
                                    .copied()
                                    .unwrap_or(false)
                            };
                            if let Some(rewritten) = retain_records(&records, stays, horizon)? {
                                out.extend_from_slice(&rewritten);
                            }
                        } else if retain_empty {
                            out.extend_from_slice(&empty_batch(header));
                        }
                    }
                    if out.len() > kept_from {
                        let new_header = BatchHeader::parse(&out[kept_from..])?;
                        stats.records_written +=
                            u64::try_from(new_header.record_count).unwrap_or(0);
                        let position = written + kept_from as u64;
                        segment
                            .account_batch(interval, position, &new_header)
                            .append_to(&mut offset_entries, &mut time_entries);
                    }
                    if out.len() >= WRITE_CHUNK_BYTES {
                        io.write_all_at(&log, &out, written)?;
                        throttler.maybe_throttle(out.len() as u64);
                        written += out.len() as u64;
                        out.clear();
                    }
                    Ok(ControlFlow::Continue(()))
                })?;
        }
        if !out.is_empty() {
            io.write_all_at(&log, &out, written)?;
            throttler.maybe_throttle(out.len() as u64);
            written += out.len() as u64;
        }
        stats.bytes_written += written;
        assert_eq!(
            written, segment.size_bytes,
            "cleaned segment size bookkeeping"
        );
        // Kafka's `onBecomeInactiveSegment`: the final time-index entry.
        if segment.max_timestamp >= 0 {
            let relative = segment.relative(segment.last_offset_of_max_timestamp);
            if let Some(entry) = segment.index.time_entry(segment.max_timestamp, relative) {
                time_entries.extend_from_slice(&entry);
            }
        }
        io.sync_data(&log)?;
        for (path, entries) in [(&paths[1], &offset_entries), (&paths[2], &time_entries)] {
            let file = io.open(path, OpenMode::Truncate)?;
            if !entries.is_empty() {
                io.write_all_at(&file, entries, 0)?;
            }
            io.sync_data(&file)?;
        }
        segment.offset_index_entries = offset_entries.len() as u64 / OFFSET_ENTRY_BYTES;
        segment.time_index_entries = time_entries.len() as u64 / TIME_ENTRY_BYTES;
        Ok(segment)
    }

    /// Runs the whole round: map, groups, and `install` for each cleaned group (which swaps
    /// it in and answers false when the log changed under the round, which then stops).
    pub fn run(
        &self,
        map: &mut OffsetMap,
        io_buffer_bytes: usize,
        throttler: &Throttler,
        mut install: impl FnMut(CleanedSegment) -> Result<bool, StorageError>,
    ) -> Result<CleanStats, StorageError> {
        let mut stats = CleanStats::default();
        let end_offset = self.build_offset_map(map, io_buffer_bytes, throttler, &mut stats)?;
        stats.end_offset = end_offset;
        let mut txns = TxnCleaning::new(&self.aborted_txns);
        for group in self.group_segments(end_offset) {
            let cleaned = self.clean_group(
                group,
                map,
                io_buffer_bytes,
                throttler,
                &mut txns,
                &mut stats,
            )?;
            if !install(cleaned)? {
                stats.aborted = true;
                return Ok(stats);
            }
            stats.segments_written += 1;
        }
        Ok(stats)
    }
}
