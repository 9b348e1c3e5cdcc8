//! Reading a partition log without the writer's lock: `LogReader` and its `LogSnapshot`s.
//!
//! # The model
//!
//! As in Kafka, readers see an immutable list of segments and the active segment up to a
//! published size:
//!
//! - The writer keeps a `View` (the segment list, each an `Arc<SharedSegment>`, and the
//!   leader-epoch entries) behind a mutex, and replaces the whole `Arc<View>` when the list or
//!   the epochs change: a roll, a truncation, a deletion, a new leader epoch. A snapshot clones
//!   the `Arc` under that mutex, O(1) and never across I/O. Appends do not touch it.
//! - The log start offset, high watermark and log end offset come from `LogOffsets` (a seqlock
//!   the writer publishes after every change).
//! - The active segment's stats (its valid size above all) come from its own cell, which the
//!   writer publishes after an append has written its batches and index entries (`segment`).
//!
//! A snapshot takes the view, then the offsets, then checks that the view is still the
//! writer's (else it takes both again), then the active segment's stats. The writer publishes
//! offsets before a new view that drops segments (a deletion), a new view before the offsets
//! that cover a segment it adds (a roll: the new segment is in the view before anything is
//! appended to it), and segment stats before the offsets that cover them. So a snapshot has
//! offsets that go with its view: none below its first segment, none past its last one (an
//! old view with offsets read after a roll and an append would have a log end offset past its
//! active segment, and read short), and stats that cover at least its log end offset. A read never goes past the log end
//! offset or the active size its snapshot was taken with, nor past the bound the caller gives
//! (the high watermark, for a consumer).
//!
//! # Why a mutex and not `arc-swap`
//!
//! The view changes on rolls and the like, and a reader holds the mutex for one reference-count
//! increment. `arc-swap` would save one uncontended lock per read, tens of nanoseconds next to
//! the `pread`s of that read, for a dependency whose deferred-reclamation scheme we would then
//! have to reason about. The per-append publication does not go through this mutex at all.
//!
//! # What happens under a snapshot
//!
//! - **Appends and rolls**: the snapshot keeps its end; a segment it knew as active is sealed
//!   with at least the bytes the snapshot knew of.
//! - **Deleting segments** (retention, DeleteRecords): the writer retires a segment before it
//!   deletes its files (`segment`), and the snapshot keeps reading the unlinked files.
//! - **Truncation** changes bytes in place. The writer publishes the truncated state first,
//!   then bumps `truncations`, then changes the files; every read checks after its I/O that
//!   `truncations` is what its snapshot saw and otherwise fails with `SnapshotStale`
//!   (`LogReader::with_snapshot` then retries on a new snapshot). A read that passes the check
//!   ran entirely before the writer touched a file. A `FileSlice` handed out before a
//!   truncation is outside this: its bytes are sent later, as in Kafka, whose fetch path has the
//!   same window; the broker must not truncate a log it is serving to consumers.
//! - **Poisoning**: new snapshots are refused with `Poisoned`. After a failed write or fsync the
//!   page cache may no longer match the disk (Linux marks pages whose writeback failed clean
//!   and may drop them, so a later read could bring back older bytes), so the log answers no
//!   reads, as Kafka answers KAFKA_STORAGE_ERROR for an offline log directory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use runnel_protocol::batch::{for_each_record, BatchHeader, BATCH_HEADER_LEN};
use runnel_protocol::compression::DecompressLimits;

use crate::epoch_cache;
use crate::file_budget::FileBudget;
use crate::io::{IoFile, LogIo};
use crate::log::FileSlice;
use crate::offsets::{LogOffsets, OffsetsSnapshot};
use crate::segment::{read_header_at, SegmentRead, SharedSegment};
use crate::txn::{collect_aborted, AbortedTxn};
use crate::{EpochEntry, StorageError};

/// Snapshots `LogReader::with_snapshot` takes for one answer before it gives up with
/// `SnapshotStale`. Each retry follows a truncation that overlapped the previous attempt, and a
/// truncation is a rare, replication-driven event, so a second attempt all but always succeeds.
const SNAPSHOT_ATTEMPTS_MAX: u32 = 4;

/// Times `LogReader::snapshot` takes the offsets again because the writer replaced the view
/// while it read them. The view changes on rolls, deletions and new leader epochs, never per
/// append, so a second attempt all but always holds; past this, the snapshot fails with
/// `SnapshotStale` (`with_snapshot` retries) rather than spin.
const SNAPSHOT_VIEW_ATTEMPTS_MAX: u32 = 64;

/// What a snapshot reads: the segments, oldest first (the last one active), and the leader
/// epochs. Replaced whole by the writer, never changed in place.
#[derive(Debug)]
pub(crate) struct View {
    /// Never empty.
    pub(crate) segments: Arc<[Arc<SharedSegment>]>,
    pub(crate) epochs: Arc<[EpochEntry]>,
}

/// The state a log's writer and its readers share.
#[derive(Debug)]
pub(crate) struct LogShared {
    pub(crate) budget: Arc<FileBudget>,
    pub(crate) io: Arc<dyn LogIo>,
    pub(crate) offsets: Arc<LogOffsets>,
    view: Mutex<Arc<View>>,
    /// Bumped by the writer between publishing a truncated state and changing the files
    /// (module docs); a read whose snapshot saw another value is discarded.
    truncations: AtomicU64,
    /// Set once a write or fsync failed; never cleared (a reopen recovers).
    poisoned: AtomicBool,
    /// Base offset of the active segment, for callers deciding whether a read will reach the
    /// (likely cold) sealed segments.
    active_base_offset: AtomicI64,
    /// What DescribeProducers reports of each producer, copied by the writer after every
    /// change of producer state: readers take this small lock (never held across I/O)
    /// rather than the writer's, which an fsync may hold.
    producers: Mutex<HashMap<i64, ActiveProducer>>,
}

/// One producer of a partition as DescribeProducers reports it (Kafka's
/// `DescribeProducersResponseData.ProducerState` from `UnifiedLog.activeProducers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1 when no batch of the producer is retained.
    pub last_sequence: i32,
    /// -1 when unknown.
    pub last_timestamp: i64,
    /// -1 before the producer's first marker here.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction here, -1 if none.
    pub current_txn_start_offset: i64,
}

fn lock_view(view: &Mutex<Arc<View>>) -> MutexGuard<'_, Arc<View>> {
    // Only ever holds a whole `Arc`, replaced in one assignment.
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogShared {
    pub(crate) fn new(
        budget: Arc<FileBudget>,
        io: Arc<dyn LogIo>,
        offsets: Arc<LogOffsets>,
        segments: Arc<[Arc<SharedSegment>]>,
        epochs: Arc<[EpochEntry]>,
    ) -> LogShared {
        let active_base_offset = active_of(&segments).base_offset();
        LogShared {
            budget,
            io,
            offsets,
            view: Mutex::new(Arc::new(View { segments, epochs })),
            truncations: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            active_base_offset: AtomicI64::new(active_base_offset),
            producers: Mutex::new(HashMap::new()),
        }
    }

    fn published_producers(&self) -> MutexGuard<'_, HashMap<i64, ActiveProducer>> {
        // Holds whole entries, each replaced in one assignment.
        self.producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer changed these producers; with `replace_all` they are every producer known.
    pub(crate) fn publish_producers(
        &self,
        producers: impl Iterator<Item = ActiveProducer>,
        replace_all: bool,
    ) {
        let mut published = self.published_producers();
        if replace_all {
            published.clear();
        }
        for p in producers {
            published.insert(p.producer_id, p);
        }
    }

    fn view(&self) -> Arc<View> {
        Arc::clone(&lock_view(&self.view))
    }

    /// Replaces the segment list, the epochs, or both. Callers publish new offsets first when
    /// those change too (module docs).
    pub(crate) fn publish_view(
        &self,
        segments: Option<Arc<[Arc<SharedSegment>]>>,
        epochs: Option<Arc<[EpochEntry]>>,
    ) {
        let mut view = lock_view(&self.view);
        let segments = segments.unwrap_or_else(|| Arc::clone(&view.segments));
        let epochs = epochs.unwrap_or_else(|| Arc::clone(&view.epochs));
        self.active_base_offset
            .store(active_of(&segments).base_offset(), Ordering::Release);
        let old = std::mem::replace(&mut *view, Arc::new(View { segments, epochs }));
        drop(view);
        // The old view (and any segment only it held) is dropped outside the lock.
        drop(old);
    }

    /// Invalidates every snapshot taken so far; called after the truncated state is published
    /// and before any file changes (module docs).
    pub(crate) fn begin_truncation(&self) {
        self.truncations.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

/// The last segment of a view: the active one.
fn active_of(segments: &[Arc<SharedSegment>]) -> &Arc<SharedSegment> {
    // The writer never publishes an empty list: a log always has an active segment.
    let Some(active) = segments.last() else {
        panic!("a log view without segments");
    };
    active
}

/// A handle for reading one partition log from any thread, without its writer's lock. Cheap to
/// clone; every read goes through a `LogSnapshot`.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<LogShared>,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<LogShared>) -> LogReader {
        LogReader { shared }
    }

    /// A consistent view of the log as of now (module docs). Refused once the log is poisoned.
    pub fn snapshot(&self) -> Result<LogSnapshot, StorageError> {
        if self.shared.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        let truncations = self.shared.truncations.load(Ordering::SeqCst);
        let mut view = self.shared.view();
        // The offsets must be those of this view (module docs): if the writer replaced the
        // view meanwhile (a roll, deletion or new epoch), the offsets read may cover a segment
        // this view lacks, so both are taken again.
        let mut attempts = 0;
        let offsets = loop {
            let offsets = self.shared.offsets.snapshot();
            let now = self.shared.view();
            if Arc::ptr_eq(&view, &now) {
                break offsets;
            }
            attempts += 1;
            if attempts == SNAPSHOT_VIEW_ATTEMPTS_MAX {
                return Err(StorageError::SnapshotStale);
            }
            view = now;
        };
        let active = active_of(&view.segments).read();
        Ok(LogSnapshot {
            shared: Arc::clone(&self.shared),
            view,
            offsets,
            active,
            truncations,
        })
    }

    /// Runs `read` on a snapshot, and again on a new one when a truncation overlapped it
    /// (`SnapshotStale`), at most `SNAPSHOT_ATTEMPTS_MAX` times.
    pub fn with_snapshot<R>(
        &self,
        mut read: impl FnMut(&LogSnapshot) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match read(&self.snapshot()?) {
                Err(StorageError::SnapshotStale) if attempts < SNAPSHOT_ATTEMPTS_MAX => {}
                result => return result,
            }
        }
    }

    /// `LogSnapshot::read` on a fresh snapshot, retried as `with_snapshot` does.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        self.with_snapshot(|s| s.read(fetch_offset, max_bytes, max_offset, min_one_batch))
    }

    /// The log start offset, high watermark and log end offset, lock-free.
    pub fn offsets(&self) -> &LogOffsets {
        &self.shared.offsets
    }

    /// Every producer with state in the partition, by producer id, as of the writer's last
    /// change (DescribeProducers). Does not wait for the writer.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut producers: Vec<ActiveProducer> = self
            .shared
            .published_producers()
            .values()
            .copied()
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    /// Base offset of the active segment: a read from below it reaches sealed segments, whose
    /// pages are less likely to be cached.
    pub fn active_base_offset(&self) -> i64 {
        self.shared.active_base_offset.load(Ordering::Acquire)
    }
}

/// One consistent view of a log (module docs): answers every read from the same segments,
/// offsets and active size, whatever the writer does meanwhile.
#[derive(Debug)]
pub struct LogSnapshot {
    shared: Arc<LogShared>,
    view: Arc<View>,
    offsets: OffsetsSnapshot,
    /// The last segment of `view`, with the stats published when the snapshot was taken.
    active: SegmentRead,
    /// `LogShared::truncations` when the snapshot was taken.
    truncations: u64,
}

impl LogSnapshot {
    pub fn offsets(&self) -> OffsetsSnapshot {
        self.offsets
    }

    pub fn log_start_offset(&self) -> i64 {
        self.offsets.log_start_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.offsets.high_watermark
    }

    /// Kafka's LSO (see `OffsetsSnapshot::last_stable_offset`).
    pub fn last_stable_offset(&self) -> i64 {
        self.offsets.last_stable_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.offsets.log_end_offset
    }

    /// The aborted transactions a read_committed fetch from `fetch_offset`, bounded by
    /// `max_offset` (its LSO), answers (Kafka's `LocalLog.addAbortedTransactions` and
    /// `UnifiedLog.collectAbortedTransactions`): every `.txnindex` entry, from the segment
    /// holding `fetch_offset` on, whose transaction overlaps `[fetch_offset, upper bound)`,
    /// stopping at the first entry whose last stable offset reaches the upper bound. The upper
    /// bound is the end of the segment the read lands in, capped at `max_offset`: Kafka uses
    /// the offset-index entry past the bytes read when there is one, so this may list a few
    /// more transactions than Kafka would, never fewer; consumers ignore entries beyond the
    /// records they got. Memory only: entries are kept with their segments.
    pub fn aborted_transactions(&self, fetch_offset: i64, max_offset: i64) -> Vec<AbortedTxn> {
        let first = self.segment_index_for(fetch_offset);
        let segments = &self.view.segments;
        let landing_end = (first..segments.len())
            .map(|index| self.segment(index).stats.next_offset)
            .find(|&next| next > fetch_offset)
            .unwrap_or(self.offsets.log_end_offset);
        let upper_bound_offset = landing_end.min(max_offset);
        let mut out = Vec::new();
        for segment in &segments[first..] {
            let complete = segment.with_aborted(|entries| {
                collect_aborted(entries, fetch_offset, upper_bound_offset, &mut out)
            });
            // A transaction that began in the range may end in any later segment.
            if complete {
                break;
            }
        }
        out
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.view.epochs.last().map(|e| e.epoch)
    }

    /// Leader epoch in force at `offset` (for OffsetForLeaderEpoch and ListOffsets).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        epoch_cache::epoch_for_offset(&self.view.epochs, offset)
    }

    /// The leader-epoch entries, as in `leader-epoch-checkpoint`.
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        &self.view.epochs
    }

    /// Kafka's `UnifiedLog.endOffsetForEpoch` (OffsetForLeaderEpoch): the end offset of
    /// `leader_epoch` in this log and the epoch it belongs to, `None` when undefined.
    pub fn end_offset_for_epoch(&self, leader_epoch: i32) -> Option<(i32, i64)> {
        epoch_cache::end_offset_for_epoch(
            &self.view.epochs,
            leader_epoch,
            self.offsets.log_end_offset,
        )
    }

    /// Bytes of every segment's `.log` file in this snapshot (Kafka's `UnifiedLog.size`, which
    /// DescribeLogDirs reports).
    pub fn size_bytes(&self) -> u64 {
        (0..self.view.segments.len())
            .map(|index| self.segment(index).stats.size_bytes)
            .sum()
    }

    fn budget(&self) -> &Arc<FileBudget> {
        &self.shared.budget
    }

    /// The `index`th segment as this snapshot knows it.
    fn segment(&self, index: usize) -> SegmentRead {
        if index + 1 == self.view.segments.len() {
            return self.active.clone();
        }
        self.view.segments[index].read()
    }

    /// Index of the segment holding `offset` (the last one whose base is at or below it).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.view
            .segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// Runs one read and discards its result if a truncation began meanwhile (module docs):
    /// whatever it read, or failed to read, may then come from files the writer was changing.
    fn checked<R>(
        &self,
        read: impl FnOnce() -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let result = read();
        if self.shared.truncations.load(Ordering::SeqCst) != self.truncations {
            return Err(StorageError::SnapshotStale);
        }
        result
    }

    fn check_range(&self, fetch_offset: i64) -> Result<(), StorageError> {
        let OffsetsSnapshot {
            log_start_offset,
            log_end_offset,
            ..
        } = self.offsets;
        if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        Ok(())
    }

    /// Whole batches from the one containing `fetch_offset`, stopping before a batch whose base
    /// offset is >= `max_offset` (or the snapshot's log end offset), within `max_bytes` unless
    /// `min_one_batch` and nothing fit (then exactly one batch). Reads may span segments. Batch
    /// lengths read from disk are checked against the segment's valid size before any buffer is
    /// sized from them.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        self.check_range(fetch_offset)?;
        let max_offset = max_offset.min(self.offsets.log_end_offset);
        let mut out = BytesMut::new();
        if fetch_offset >= max_offset {
            return Ok(out.freeze());
        }
        self.checked(|| {
            for index in self.segment_index_for(fetch_offset)..self.view.segments.len() {
                let segment = self.segment(index);
                if segment.stats.size_bytes == 0 {
                    continue;
                }
                let done = read_segment(
                    self.budget(),
                    &segment,
                    &mut out,
                    fetch_offset,
                    max_bytes,
                    max_offset,
                    min_one_batch,
                )?;
                if done {
                    break;
                }
            }
            Ok(out.freeze())
        })
    }

    /// The stored bytes a Fetch returns, chosen as Kafka's `LogSegment.read` chooses them so the
    /// broker can `sendfile` them without reading them: from the start of the batch holding
    /// `fetch_offset`, within that one segment, up to `max_bytes` or the position of the first
    /// batch at or past `max_offset` (the high watermark; never past the snapshot's log end).
    /// The first batch is always whole; it is returned even when larger than `max_bytes` if
    /// `min_one_batch` (KIP-74), and otherwise nothing is. The last batch may be cut short,
    /// exactly as Kafka cuts it: every client drops an incomplete trailing batch and fetches it
    /// again from its offset.
    ///
    /// Only batch headers near the two ends are read (from the sparse index entry before each
    /// end), so the cost does not grow with the bytes returned.
    pub fn read_file_slice(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, StorageError> {
        self.check_range(fetch_offset)?;
        let max_offset = max_offset.min(self.offsets.log_end_offset);
        if fetch_offset >= max_offset {
            return Ok(None);
        }
        self.checked(|| {
            for index in self.segment_index_for(fetch_offset)..self.view.segments.len() {
                let segment = self.segment(index);
                if segment.base_offset() >= max_offset {
                    return Ok(None);
                }
                if segment.stats.size_bytes == 0 {
                    continue;
                }
                if let Some(found) = slice_segment(
                    self.budget(),
                    &segment,
                    fetch_offset,
                    max_bytes,
                    max_offset,
                    min_one_batch,
                )? {
                    return Ok(found);
                }
            }
            Ok(None)
        })
    }

    /// ListOffsets by timestamp: the first record at or past the log start offset with
    /// timestamp >= `ts`, as `(offset, timestamp, batch leader epoch)`, record-precise for
    /// compressed batches too (read through the bounded decompressing reader).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64, i32)>, StorageError> {
        let log_start_offset = self.offsets.log_start_offset;
        self.checked(|| {
            for index in self.segment_index_for(log_start_offset)..self.view.segments.len() {
                let segment = self.segment(index);
                if segment.stats.max_timestamp < ts {
                    continue;
                }
                let found = timestamp_in_segment(self.budget(), &segment, ts, log_start_offset)?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            Ok(None)
        })
    }

    /// ListOffsets MAX_TIMESTAMP: the record with the largest timestamp (the first such
    /// record, compressed batches included), with its batch's leader epoch. A
    /// batch that cannot be read answers the segment's batch-level record of it.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64, i32)>, StorageError> {
        self.checked(|| {
            let mut best: Option<SegmentRead> = None;
            for index in 0..self.view.segments.len() {
                let s = self.segment(index);
                if s.stats.max_timestamp >= 0
                    && best
                        .as_ref()
                        .is_none_or(|b| s.stats.max_timestamp > b.stats.max_timestamp)
                {
                    best = Some(s);
                }
            }
            let Some(segment) = best else {
                return Ok(None);
            };
            Ok(Some(max_timestamp_in_segment(self.budget(), &segment)))
        })
    }

    /// Segments in this snapshot, the active one included (Kafka's `NumLogSegments`).
    pub fn segment_count(&self) -> usize {
        self.view.segments.len()
    }

    /// The timestamp of the first data record at or past `offset` and below the high
    /// watermark (control batches skipped), or `None` when there is none: what a consumer
    /// whose position is `offset` reads next, for the consumer-lag age. The offset index finds
    /// the batch, its header the batch-level answer, and the records (read through the bounded
    /// decompressing reader) the record-precise one. Reads at most the batch headers between
    /// one index entry and the batch, and that one batch.
    pub fn first_record_timestamp_from(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        let offset = offset.max(self.offsets.log_start_offset);
        let end = self.offsets.high_watermark;
        if offset >= end {
            return Ok(None);
        }
        self.checked(|| {
            for index in self.segment_index_for(offset)..self.view.segments.len() {
                let segment = self.segment(index);
                if segment.base_offset() >= end {
                    return Ok(None);
                }
                let size_bytes = segment.stats.size_bytes;
                if size_bytes == 0 {
                    continue;
                }
                let position =
                    segment.position_for(self.budget(), offset.max(segment.base_offset()))?;
                let found = segment.with_log(self.budget(), |file| {
                    let Some((position, header)) =
                        scan_batches(file, position, size_bytes, |header| {
                            header.base_offset >= end
                                || (header.last_offset() >= offset && !header.is_control())
                        })?
                    else {
                        return Ok(None);
                    };
                    if header.base_offset >= end {
                        // Past the high watermark: nothing unconsumed is visible yet.
                        return Ok(Some(None));
                    }
                    // The batch-level answer if the records cannot be read: its first
                    // timestamp, unless that field holds something else (the delete horizon of
                    // a cleaned batch) or the broker stamped the batch (LogAppendTime).
                    let first_timestamp = if header.timestamp_type()
                        == runnel_protocol::batch::TimestampType::LogAppendTime
                        || header.delete_horizon_ms().is_some()
                    {
                        header.max_timestamp
                    } else {
                        header.base_timestamp
                    };
                    let batch_level = (header.base_offset, first_timestamp, 0);
                    let (_, timestamp, _) =
                        refine_in_batch(file, position, &header, batch_level, |o, _| o >= offset);
                    Ok(Some(Some(timestamp)))
                })?;
                if let Some(found) = found {
                    return Ok(found);
                }
            }
            Ok(None)
        })
    }
}

/// `read`'s work in one segment: appends to `out` what it contributes. Returns whether the read
/// is complete (a limit was reached) rather than continuing in the next segment.
fn read_segment(
    budget: &Arc<FileBudget>,
    segment: &SegmentRead,
    out: &mut BytesMut,
    fetch_offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> Result<bool, StorageError> {
    let size_bytes = segment.stats.size_bytes;
    // Looked up before taking the log handle: a thread uses one file at a time.
    let mut position = segment.position_for(budget, fetch_offset)?;
    segment.with_log(budget, |file| {
        // One positional read of everything this segment may contribute (bounded by what is
        // left of max_bytes and by the segment's valid size), then the batch headers are
        // walked in memory instead of one pread per header.
        let left =
            (max_bytes.saturating_sub(out.len()) as u64).min(size_bytes.saturating_sub(position));
        let mut window = BytesMut::zeroed(usize::try_from(left).unwrap_or(0));
        file.read_exact_at(&mut window, position)?;
        let window_start = position;
        let mut range: Option<(u64, u64)> = None;
        let mut done = false;
        while position < size_bytes {
            let header = match header_in(&window, window_start, position, size_bytes) {
                Some(parsed) => parsed?,
                None => read_header_at(file, position, size_bytes)?,
            };
            let size = header.size_bytes() as u64;
            if header.last_offset() < fetch_offset {
                position += size;
                continue;
            }
            if header.base_offset >= max_offset {
                done = true;
                break;
            }
            let taken = out.len() as u64 + range.map_or(0, |(s, e)| e - s);
            let nothing_yet = taken == 0;
            if taken + size > max_bytes as u64 && !(min_one_batch && nothing_yet) {
                done = true;
                break;
            }
            let start = range.map_or(position, |(s, _)| s);
            range = Some((start, position + size));
            position += size;
            if taken + size > max_bytes as u64 {
                done = true;
                break;
            }
        }
        if let Some((start, end)) = range {
            let window_end = window_start + window.len() as u64;
            if start >= window_start && end <= window_end {
                // The usual case: the answer is a slice of the window, no copy.
                let mut taken = window;
                let _ = taken.split_to((start - window_start) as usize);
                taken.truncate((end - start) as usize);
                out.unsplit(taken);
            } else {
                // One batch larger than max_bytes (min_one_batch): read it whole. Its
                // length was checked against the segment's valid size above.
                let old = out.len();
                out.resize(old + (end - start) as usize, 0);
                file.read_exact_at(&mut out[old..], start)?;
            }
        }
        Ok(done)
    })
}

/// `read_file_slice`'s work in one segment: `Some(answer)` once the segment decided the answer,
/// `None` when no batch of it reaches `fetch_offset` (the next segment decides).
fn slice_segment(
    budget: &Arc<FileBudget>,
    segment: &SegmentRead,
    fetch_offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> Result<Option<Option<FileSlice>>, StorageError> {
    let size_bytes = segment.stats.size_bytes;
    let file = segment.pin_log(budget)?;
    let start = segment.position_for(budget, fetch_offset)?;
    // The batch holding fetch_offset (offsets may have gaps, so "the first batch ending at or
    // after it").
    let handle = IoFile::new(segment.io(), &file);
    let Some((start, header)) = scan_batches(handle, start, size_bytes, |h| {
        h.last_offset() >= fetch_offset
    })?
    else {
        return Ok(None);
    };
    if header.base_offset >= max_offset {
        return Ok(Some(None));
    }
    let end = if max_offset >= segment.stats.next_offset {
        size_bytes
    } else {
        let from = segment.position_for(budget, max_offset)?.max(start);
        scan_batches(handle, from, size_bytes, |h| h.base_offset >= max_offset)?
            .map_or(size_bytes, |(position, _)| position)
    };
    let first_batch = header.size_bytes() as u64;
    if first_batch > max_bytes as u64 && !min_one_batch {
        return Ok(Some(None));
    }
    let limit = (max_bytes as u64).max(first_batch);
    let len = (end.saturating_sub(start)).min(limit);
    debug_assert!(len >= first_batch, "the first batch lies below the end");
    Ok(Some(Some(FileSlice {
        file,
        position: start,
        // At most `max(max_bytes, first_batch)`, and a batch's size is an i32.
        len: usize::try_from(len).unwrap_or_else(|_| {
            panic!("a slice of {len} bytes, beyond its bounds");
        }),
    })))
}

/// `offset_for_timestamp` in one segment whose max timestamp reaches `ts`, ignoring records
/// below `log_start_offset` (Kafka's `findOffsetByTimestamp` with its starting offset).
fn timestamp_in_segment(
    budget: &Arc<FileBudget>,
    segment: &SegmentRead,
    ts: i64,
    log_start_offset: i64,
) -> Result<Option<(i64, i64, i32)>, StorageError> {
    let size_bytes = segment.stats.size_bytes;
    let start_offset = if segment.stats.time_index_entries > 0 {
        segment
            .with_time_index(budget, |file| {
                Ok(crate::index::lookup_time(
                    file,
                    segment.stats.time_index_entries,
                    ts,
                )?)
            })?
            .map_or(segment.base_offset(), |rel| {
                segment.base_offset() + i64::from(rel)
            })
    } else {
        segment.base_offset()
    }
    .max(log_start_offset);
    let mut position = segment.position_for(budget, start_offset)?;
    segment.with_log(budget, |file| {
        while position < size_bytes {
            let header = read_header_at(file, position, size_bytes)?;
            let size = header.size_bytes() as u64;
            if header.max_timestamp >= ts && header.last_offset() >= log_start_offset {
                let fallback = (
                    header.base_offset.max(log_start_offset),
                    header.max_timestamp,
                    header.partition_leader_epoch,
                );
                return Ok(Some(refine_in_batch(
                    file,
                    position,
                    &header,
                    fallback,
                    |offset, t| t >= ts && offset >= log_start_offset,
                )));
            }
            position += size;
        }
        Ok(None)
    })
}

/// `max_timestamp_and_offset` in the segment holding the largest timestamp.
fn max_timestamp_in_segment(budget: &Arc<FileBudget>, segment: &SegmentRead) -> (i64, i64, i32) {
    let stats = segment.stats;
    let max = stats.max_timestamp;
    let fallback = (stats.base_offset_of_max_timestamp, max, -1);
    let Ok(mut position) = segment.position_for(budget, stats.base_offset_of_max_timestamp) else {
        return fallback;
    };
    segment
        .with_log(budget, |file| {
            while position < stats.size_bytes {
                let header = read_header_at(file, position, stats.size_bytes)?;
                if header.max_timestamp == max {
                    let batch_level = (
                        header.base_offset,
                        header.max_timestamp,
                        header.partition_leader_epoch,
                    );
                    return Ok(Some(refine_in_batch(
                        file,
                        position,
                        &header,
                        batch_level,
                        |_, t| t == max,
                    )));
                }
                position += header.size_bytes() as u64;
            }
            Ok(None)
        })
        .ok()
        .flatten()
        .unwrap_or(fallback)
}

/// Reads the batch at `position` and returns its first record `wanted(offset, timestamp)`
/// accepts, decompressing it if needed (Kafka's `FileRecords.searchForTimestamp` and
/// `RecordBatch.offsetOfMaxTimestamp` iterate the records of compressed batches too);
/// `batch_level` when the batch is unreadable or no record is accepted.
fn refine_in_batch(
    file: IoFile<'_>,
    position: u64,
    header: &BatchHeader,
    batch_level: (i64, i64, i32),
    wanted: impl Fn(i64, i64) -> bool,
) -> (i64, i64, i32) {
    // The header's length was validated against the segment size by `read_header_at`.
    let mut buf = vec![0u8; header.size_bytes().max(BATCH_HEADER_LEN)];
    if file.read_exact_at(&mut buf, position).is_err() {
        return batch_level;
    }
    let mut hit = None;
    // Compressed batches are decompressed within the default caps (a stored batch passed the
    // topic's caps when it was appended; a bigger `max.message.bytes` since then is rare, and
    // such a batch answers at batch level, as before).
    let walked = for_each_record(&buf, DecompressLimits::default(), |delta, ts| {
        let offset = header.base_offset + i64::from(delta);
        if hit.is_none() && wanted(offset, ts) {
            hit = Some((offset, ts));
        }
    });
    match (walked, hit) {
        (Ok(()), Some((offset, ts))) => (offset, ts, header.partition_leader_epoch),
        _ => batch_level,
    }
}

/// Walks batch headers from `position` (a batch start) and returns the first batch `stop`
/// accepts with its position, or `None` at the end of the segment's valid bytes.
pub(crate) fn scan_batches(
    file: IoFile<'_>,
    mut position: u64,
    size_bytes: u64,
    mut stop: impl FnMut(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>, StorageError> {
    while position < size_bytes {
        let header = read_header_at(file, position, size_bytes)?;
        if stop(&header) {
            return Ok(Some((position, header)));
        }
        position += header.size_bytes() as u64;
    }
    Ok(None)
}

/// The batch header at `position` if the read-ahead `window` (which starts at `window_start`)
/// holds all of it, checked as `read_header_at` checks headers read from the file. `None` when
/// the header lies beyond the window, so the caller reads it from the file.
fn header_in(
    window: &[u8],
    window_start: u64,
    position: u64,
    segment_size_bytes: u64,
) -> Option<Result<BatchHeader, StorageError>> {
    let at = usize::try_from(position.checked_sub(window_start)?).ok()?;
    let bytes = window.get(at..at.checked_add(BATCH_HEADER_LEN)?)?;
    let header = match BatchHeader::parse(bytes) {
        Ok(h) => h,
        Err(e) => return Some(Err(e.into())),
    };
    let size = header.size_bytes() as u64;
    if header.batch_length < 0
        || size < BATCH_HEADER_LEN as u64
        || position + size > segment_size_bytes
    {
        return Some(Err(StorageError::Corrupt(format!(
            "batch at position {position} has an impossible length {}",
            header.batch_length
        ))));
    }
    Some(Ok(header))
}
