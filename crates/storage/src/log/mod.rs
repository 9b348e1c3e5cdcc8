//! `PartitionLog`: the writer of one partition's log: its segments, offsets, producer state and
//! epoch cache. Appends, rolls, flushes and (in `truncate`) truncation and deletion go through
//! it, behind whatever lock its owner keeps; reads go through a `LogReader` (see `reader`),
//! which needs no lock at all.

mod cleaning;
mod follower;
mod producer_snapshots;
mod retention;
mod truncate;
mod validator;

use crate::verification::Verification;

pub use retention::ExpiredFiles;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use runnel_protocol::batch::{validate_batches, BatchHeader, BatchRecords, TimestampType};
use runnel_protocol::compression::DecompressLimits;

use crate::epoch_cache::{EpochCache, CHECKPOINT_FILE};
use crate::file_budget::{FileBudget, PinnedFile};
use crate::io::{create_dir_all, remove_if_present, temp_path, LogIo, OpenMode, StdIo};
use crate::log_start::{self, LOG_START_FILE};
use crate::metadata::{self, PARTITION_METADATA_FILE};
use crate::offsets::LogOffsets;
use crate::producer_snapshot;
use crate::producer_snapshot::parse_snapshot_name;
use crate::producer_state::{check_and_update, check_marker, ProducerStateManager};
use crate::reader::{LogReader, LogShared};
use crate::recovery::{
    load_segment, load_txn_index, open_from_indexes, open_txn_index, replay_segment, SegmentRole,
};
use crate::recovery_point::{self, RECOVERY_POINT_FILE};
use crate::segment::{create_files, deletable_paths, log_path, ActiveFiles, Segment};
use crate::txn::{self, AbortedTxn, TxnMarker};
use crate::{LogConfig, StorageError};

/// The per-partition clean-shutdown marker earlier versions wrote at `close`. A log directory
/// that holds one was closed cleanly by such a version, which fsynced every segment but the
/// active one at its roll: `open` takes the active segment's base as its recovery point, and
/// removes the marker (the broker now keeps Kafka's one marker per log directory).
const LEGACY_CLEAN_SHUTDOWN_FILE: &str = ".runnel-clean-shutdown";

/// How the previous run of the process that owned a log ended, as its owner knows it (Kafka's
/// `.kafka_cleanshutdown` marker in the log directory, which the broker keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastShutdown {
    /// Every log was `close`d: the log is opened from its index files, recovery-point
    /// checkpoint and producer snapshot, without reading its batches, if they all agree.
    Clean,
    /// Anything else (a crash, kill -9, power loss, or not known): segments at or past the
    /// recovery point are recovered and producer state is rebuilt from the batch headers.
    Unclean,
}

/// What opening a log read (for tests and the broker's startup summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Segments in the log once opened.
    pub segments: u64,
    /// Segments whose every batch header was walked (producer state, stats).
    pub segments_scanned: u64,
    /// Segments read whole and CRC-checked (recovery).
    pub segments_recovered: u64,
    /// Bytes of `.log` files read: headers walked plus whole batches recovered.
    pub bytes_read: u64,
    /// The log was opened from its indexes and producer snapshot (a clean shutdown all of
    /// whose files agreed).
    pub from_snapshot: bool,
}
/// Kafka keeps `segment.bytes` an int and index positions are u32; never grow past this.
const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Appended to the names of a deleted segment's files before they are removed, as Kafka does, so
/// that a crash part-way through leaves names `open` recognises and removes.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Broker time stamped into the batches when `LogAppendTime` is configured, else -1. For a
    /// duplicate this is the original batch's max timestamp, exactly as Kafka answers.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// An idempotent retry: nothing was written; offsets are those of the original batch.
    pub duplicate: bool,
}

/// Stored bytes of one partition for a fetch: a range of a segment file, sent as is. The
/// handle stays open until the slice is dropped, so a segment deleted meanwhile still sends
/// the bytes that were chosen.
#[derive(Debug)]
pub struct FileSlice {
    pub file: PinnedFile,
    pub position: u64,
    pub len: usize,
}

impl FileSlice {
    /// The bytes, read into memory (for senders that cannot use `sendfile`, and tests). Read
    /// straight from the pinned handle, not through the log's `LogIo`: like `sendfile`, this
    /// happens after the log answered and only reads.
    pub fn read_to_bytes(&self) -> Result<Bytes, StorageError> {
        use std::os::unix::fs::FileExt;
        let mut buf = BytesMut::zeroed(self.len);
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf.freeze())
    }
}

/// The writer of one partition's log on disk. See the crate docs for the formats.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    /// The first offset readers may read: the first segment's base, or past it once
    /// DeleteRecords moved it (`truncate`); persisted in `log-start-offset-checkpoint`.
    log_start_offset: i64,
    /// Set by the partition owner; `log_start <= hw <= leo` always.
    high_watermark: i64,
    producers: ProducerStateManager,
    /// Transaction verifications in progress (KIP-890): in memory only, as in Kafka; a restart
    /// makes producers verify again.
    verifications: crate::verification::Verifications,
    epochs: EpochCache,
    /// What this log's readers share with it: the published offsets, segment list and epochs,
    /// the poisoned flag (set after a failed write or fsync: the disk state is unknown, so the
    /// log refuses writes and reads), the process's `FileBudget` (which caps the active-segment
    /// handles kept open and closes ours when others need room) and the `LogIo` every file
    /// operation goes through (`StdIo`, or a fault-injecting backend in tests).
    shared: Arc<LogShared>,
    /// Segments deleted by retention or DeleteRecords whose files, renamed `.deleted`, wait
    /// for `file.delete.delay.ms` before they are removed (`remove_expired_deletions`).
    pending_deletions: Vec<retention::PendingDeletion>,
    /// Kafka's recovery point: every offset below it is on disk (fsynced). A flush moves it to
    /// the log end, a roll to the new segment's base, a truncation down with the log end;
    /// `recovery-point-offset-checkpoint` holds its value as of the last roll or `close`.
    recovery_point: i64,
    /// What `open` read.
    open_stats: OpenStats,
}

/// Segments, producer state and read counts, as one of the two ways of opening loads them.
struct LoadedSegments {
    segments: Vec<Segment>,
    producers: ProducerStateManager,
    stats: OpenStats,
    /// Files were created, rewritten or removed: the directory needs an fsync.
    names_changed: bool,
}

fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn sync_dir(io: &dyn LogIo, dir: &Path) -> Result<(), StorageError> {
    io.sync_dir(dir)?;
    Ok(())
}

/// The clean way of opening (see `recovery`): every segment from its index files (its
/// `.txnindex` included), the producer state from the latest snapshot, which must be at the
/// recovery point, which must be the log end. `None` when any of that is missing or disagrees;
/// nothing was written then.
fn load_from_indexes(
    io: &Arc<dyn LogIo>,
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    recovery_point: i64,
    snapshot_offset: i64,
) -> Result<Option<(Vec<Segment>, OpenStats)>, StorageError> {
    let mut stats = OpenStats::default();
    let mut segments = Vec::with_capacity(bases.len());
    for &base in bases {
        let Some(opened) = open_from_indexes(io, dir, base, config)? else {
            tracing::warn!(dir = %dir.display(), base_offset = base, "segment indexes disagree with the log");
            return Ok(None);
        };
        stats.bytes_read += opened.read_bytes;
        if let Some(previous) = segments.last() {
            let previous: &Segment = previous;
            if opened.segment.base_offset < previous.next_offset {
                return Ok(None);
            }
        }
        let Some(aborted) = open_txn_index(&**io, dir, &opened.segment)? else {
            tracing::warn!(dir = %dir.display(), base_offset = base, "transaction index disagrees with the log");
            return Ok(None);
        };
        opened.segment.shared.set_aborted(aborted);
        segments.push(opened.segment);
    }
    let leo = segments.last().map_or(0, |s| s.next_offset);
    if leo != recovery_point {
        tracing::warn!(dir = %dir.display(), log_end_offset = leo, recovery_point, "recovery point is not the log end after a clean shutdown");
        return Ok(None);
    }
    if snapshot_offset != leo {
        tracing::warn!(dir = %dir.display(), log_end_offset = leo, "no producer snapshot at the log end after a clean shutdown");
        return Ok(None);
    }
    Ok(Some((segments, stats)))
}

/// The unclean way of opening (see `recovery`): segments holding offsets at or past
/// `recovery_point`, and the active one always, are recovered; the others' headers are walked;
/// producer state is replayed onto the snapshot's from its offset `replay_from`, and epochs and
/// `.txnindex` files rebuilt from the batches. After the first segment recovery cut, every
/// later segment is deleted, as Kafka's `LogLoader` does. A `.txnindex` to rebuild in a segment
/// whose ABORT markers lie before `replay_from` is rebuilt by replaying from the latest snapshot
/// at or below that segment's base (from the log start without one), as Kafka's
/// `recoverSegment` rebuilds producer state before recovering a segment.
#[expect(
    clippy::too_many_arguments,
    reason = "the log's open passes each piece of state it builds; a struct would only rename them"
)]
fn load_scanning(
    io: &Arc<dyn LogIo>,
    dir: &Path,
    names: &[String],
    bases: &[i64],
    config: &LogConfig,
    recovery_point: i64,
    mut producers: ProducerStateManager,
    replay_from: i64,
    epochs: &mut EpochCache,
) -> Result<LoadedSegments, StorageError> {
    let mut stats = OpenStats::default();
    let mut names_changed = false;
    let mut segments = Vec::with_capacity(bases.len());
    let mut txn_index_pending = Vec::new();
    let last_index = bases.len() - 1;
    for (i, &base) in bases.iter().enumerate() {
        let role = if i == last_index {
            SegmentRole::Active { recover: true }
        } else {
            // The segment ends where the next begins; it holds offsets at or past the recovery
            // point unless that next base is at or below it.
            SegmentRole::Sealed {
                recover: bases[i + 1] > recovery_point,
            }
        };
        let loaded = load_segment(
            io,
            dir,
            base,
            role,
            config,
            &mut producers,
            replay_from,
            epochs,
        )?;
        stats.bytes_read += loaded.read_bytes;
        stats.segments_scanned += 1;
        stats.segments_recovered += u64::from(loaded.recovered);
        names_changed |= loaded.rewrote_indexes;
        if loaded.txn_index_pending {
            txn_index_pending.push(i);
        }
        segments.push(loaded.segment);
        if loaded.truncated_bytes > 0 && i < last_index {
            // LogLoader: everything after the first invalid batch goes.
            for &later in &bases[i + 1..] {
                tracing::warn!(base_offset = later, "deleting segment after a corrupt one");
                for path in deletable_paths(dir, later) {
                    remove_if_present(&**io, &path)?;
                }
            }
            names_changed = true;
            break;
        }
    }
    if let (Some(&first), Some(&last)) = (txn_index_pending.first(), txn_index_pending.last()) {
        let base = segments[first].base_offset;
        let older: Vec<String> = names
            .iter()
            .filter(|n| parse_snapshot_name(n).is_some_and(|offset| offset <= base))
            .cloned()
            .collect();
        let (mut replayed_producers, from) =
            producer_snapshots::load_latest(&**io, dir, &older, &mut names_changed)?;
        let active = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate().take(last + 1) {
            if segment.next_offset <= from {
                continue;
            }
            let replayed = replay_segment(&**io, dir, segment, &mut replayed_producers, from)?;
            if txn_index_pending.contains(&i) {
                let sync = i < active;
                let loaded = load_txn_index(&**io, dir, segment.base_offset, replayed, sync)?;
                let (aborted, rewrote) = loaded.unwrap_or_default();
                segment.shared.set_aborted(aborted);
                names_changed |= rewrote;
            }
        }
    }
    Ok(LoadedSegments {
        segments,
        producers,
        stats,
        names_changed,
    })
}

impl PartitionLog {
    /// Opens or creates the partition directory and recovers it (see `recovery`), under the
    /// process's default file budget (`FileBudget::process_default`).
    pub fn open(
        dir: PathBuf,
        topic_id: [u8; 16],
        config: LogConfig,
    ) -> Result<PartitionLog, StorageError> {
        Self::open_with_budget(dir, topic_id, config, FileBudget::process_default())
    }

    /// Like `open`, with the active segment's handles counted against `budget`, which all logs
    /// of a process should share. No handle stays open after this returns; they open on first
    /// append, read or flush.
    pub fn open_with_budget(
        dir: PathBuf,
        topic_id: [u8; 16],
        config: LogConfig,
        budget: Arc<FileBudget>,
    ) -> Result<PartitionLog, StorageError> {
        Self::open_with_io(dir, topic_id, config, budget, Arc::new(StdIo))
    }

    /// Like `open_with_budget`, with every file operation of the log going through `io`: the
    /// seam where tests put a fault-injecting backend (`io::faulty::FaultyIo`). Assumes nothing
    /// about how the last run ended (`LastShutdown::Unclean`).
    pub fn open_with_io(
        dir: PathBuf,
        topic_id: [u8; 16],
        config: LogConfig,
        budget: Arc<FileBudget>,
        io: Arc<dyn LogIo>,
    ) -> Result<PartitionLog, StorageError> {
        Self::open_after(dir, topic_id, config, budget, io, LastShutdown::Unclean)
    }

    /// Opens or creates the partition directory after a run that ended as `last_shutdown`
    /// says, and recovers it (see `recovery`): after a clean one from the index files, the
    /// recovery point and the producer snapshot without reading batches, falling back to the
    /// unclean way when any of them is missing or disagrees; after an unclean one by recovering
    /// the segments at or past the recovery point and scanning the headers of the others.
    pub fn open_after(
        dir: PathBuf,
        topic_id: [u8; 16],
        config: LogConfig,
        budget: Arc<FileBudget>,
        io: Arc<dyn LogIo>,
        last_shutdown: LastShutdown,
    ) -> Result<PartitionLog, StorageError> {
        create_dir_all(&*io, &dir)?;
        // Files created or removed below; their names are durable only once the directory is
        // fsynced, and a flush fsyncs file data, never the directory.
        let mut names_changed = false;
        let names: Vec<String> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        // Temporary files a crash or a failure in `replace_file` left behind. Nothing reads them
        // (the file they were to replace holds its old or its new contents), so they go; so do
        // files of segments a deletion renamed but did not get to remove (Kafka's LogLoader
        // removes them the same way).
        let temp_of = |name: &str| temp_path(Path::new(name)).to_string_lossy().into_owned();
        let temps: Vec<String> = [
            CHECKPOINT_FILE,
            PARTITION_METADATA_FILE,
            LOG_START_FILE,
            RECOVERY_POINT_FILE,
            crate::cleaner::CLEANER_CHECKPOINT_FILE,
        ]
        .iter()
        .map(|name| temp_of(name))
        .collect();
        for name in names
            .iter()
            .filter(|n| temps.contains(n) || n.ends_with(DELETED_SUFFIX))
        {
            names_changed |= remove_if_present(&*io, &dir.join(name))?;
        }
        let legacy_clean = names.iter().any(|n| n == LEGACY_CLEAN_SHUTDOWN_FILE)
            && remove_if_present(&*io, &dir.join(LEGACY_CLEAN_SHUTDOWN_FILE))?;
        names_changed |= legacy_clean;
        // A directory with nothing in it: this open creates the log.
        let fresh = names.is_empty();
        names_changed |= metadata::check_or_write(&*io, &dir, &topic_id, fresh)?;
        // A cleaning round's segment swap a crash interrupted (see `cleaning`).
        names_changed |= cleaning::recover_swaps(&*io, &dir, &names)?;
        let names: Vec<String> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| parse_log_file_name(name))
            .collect();
        bases.sort_unstable();
        if bases.is_empty() {
            io.open(&log_path(&dir, 0), OpenMode::Create)?;
            bases.push(0);
            names_changed = true;
        }
        let checkpointed_recovery_point = recovery_point::read(&*io, &dir);
        // The latest readable producer snapshot (torn or corrupt ones are removed): a clean
        // open takes the producer state from it, an unclean one replays the batches from its
        // offset on.
        let (snapshot_producers, replay_from) =
            producer_snapshots::load_latest(&*io, &dir, &names, &mut names_changed)?;
        let mut epochs = EpochCache::load(&io, &dir);
        let clean = match (last_shutdown, checkpointed_recovery_point) {
            (LastShutdown::Clean, Some(recovery_point)) => {
                load_from_indexes(&io, &dir, &bases, &config, recovery_point, replay_from)?
            }
            _ => None,
        };
        if last_shutdown == LastShutdown::Clean && clean.is_none() {
            tracing::warn!(dir = %dir.display(), "log files disagree after a clean shutdown; recovering the log");
        }
        let from_snapshot = clean.is_some();
        let loaded = match clean {
            Some((segments, stats)) => LoadedSegments {
                segments,
                producers: snapshot_producers,
                stats,
                names_changed: false,
            },
            None => {
                // Without a checkpoint, everything is recovered, as Kafka does (recovery point
                // 0); a legacy marker vouches for every segment but the active one.
                let recovery_point = checkpointed_recovery_point
                    .or(legacy_clean.then(|| bases.last().copied().unwrap_or(0)))
                    .unwrap_or(i64::MIN);
                load_scanning(
                    &io,
                    &dir,
                    &names,
                    &bases,
                    &config,
                    recovery_point,
                    snapshot_producers,
                    replay_from,
                    &mut epochs,
                )?
            }
        };
        let LoadedSegments {
            mut segments,
            mut producers,
            mut stats,
            names_changed: loaded_names_changed,
        } = loaded;
        names_changed |= loaded_names_changed;
        // Kafka's LogLoader: the log starts at the checkpointed start offset or the first
        // segment's base, whichever is later.
        let first_base = segments.first().map_or(0, |s| s.base_offset);
        let log_start_offset =
            log_start::read(&*io, &dir).map_or(first_base, |c| c.max(first_base));
        let leo = segments.last().map_or(0, |s| s.next_offset);
        if log_start_offset > leo {
            // Records up to the start were deleted, and the batches after them did not survive
            // (a crash lost unflushed appends): as Kafka's LogLoader does, the log restarts
            // empty at its start offset rather than reuse offsets below it.
            tracing::warn!(
                log_start_offset,
                log_end_offset = leo,
                "log ends before its start offset; starting it empty at the start offset"
            );
            for segment in &segments {
                for path in deletable_paths(&dir, segment.base_offset) {
                    remove_if_present(&*io, &path)?;
                }
            }
            create_files(&budget, &*io, &dir, log_start_offset)?;
            segments = vec![Segment::empty(&dir, log_start_offset, &io)];
            producers = ProducerStateManager::default();
            epochs.clear();
            names_changed = true;
        }
        let leo = segments.last().map_or(0, |s| s.next_offset);
        // Snapshots past the recovered end describe batches a crash took (Kafka's
        // `truncateAndReload` deletes them); if the one used was among them, producer state is
        // rebuilt from every segment instead.
        // The others kept: one per segment (deleted with it), and the one loaded (a clean
        // shutdown's, at the log end, replaced by the next one).
        let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
        names_changed |= producer_snapshots::remove_where(&*io, &dir, |offset| {
            offset > leo || (offset != replay_from && bases.binary_search(&offset).is_err())
        })?;
        if replay_from > leo {
            producers = ProducerStateManager::default();
            for segment in &segments {
                truncate::replay_batches(&segment.read(), &budget, &mut producers)?;
            }
        }
        if names_changed {
            sync_dir(&*io, &dir)?;
        }
        // The checkpoint is not rewritten here: until something is appended, a checkpoint
        // holding entries past the log end (or before its start) is cut the same way by the
        // next open, and the leader epoch the owner assigns next often puts back exactly what
        // was cut (an empty log's epoch 0 at offset 0). The first append writes it if it
        // still differs (`write_epochs_before_append`).
        epochs.truncate_from_end(leo);
        epochs.truncate_from_start(log_start_offset);
        let last_index = segments.len() - 1;
        for segment in &mut segments[..last_index] {
            segment.seal();
        }
        let active = &mut segments[last_index];
        active.roll_jitter_ms = retention::random_roll_jitter_ms(&config);
        // Recovery left all three files in place (it rebuilds missing indexes). After anything
        // but a clean shutdown they may hold bytes nobody fsynced: index files rewritten by
        // recovery, or the tail a crashed process left in the page cache. So the first flush
        // fsyncs all three. Files this open created are empty: nothing to fsync in them (a
        // new topic of thousands of partitions would otherwise cost three fsyncs each).
        active.files = Some(Arc::new(ActiveFiles::new(
            &budget,
            &io,
            &dir,
            active.base_offset,
            !from_snapshot && !fresh,
        )));
        active.publish();
        // Everything below the active segment was fsynced at its roll (or by recovery); after a
        // clean shutdown, everything.
        let recovery_point = if from_snapshot {
            leo
        } else {
            active.base_offset
        };
        stats.segments = segments.len() as u64;
        stats.from_snapshot = from_snapshot;
        let offsets = Arc::new(LogOffsets::new(log_start_offset, log_start_offset, leo));
        let shared = Arc::new(LogShared::new(
            budget,
            io,
            offsets,
            segments.iter().map(|s| Arc::clone(&s.shared)).collect(),
            epochs.entries().into(),
        ));
        let log = PartitionLog {
            dir,
            config,
            segments,
            log_start_offset,
            high_watermark: log_start_offset,
            producers,
            verifications: Default::default(),
            epochs,
            shared,
            pending_deletions: Vec::new(),
            recovery_point,
            open_stats: stats,
        };
        log.validate();
        log.publish_producers(None);
        Ok(log)
    }

    /// Copies producer state for readers (`LogReader::active_producers`): of `changed`, or of
    /// every producer (`None`) after the state was replaced.
    pub(crate) fn publish_producers(&self, changed: Option<&[i64]>) {
        match changed {
            Some(ids) => self.shared.publish_producers(
                ids.iter().filter_map(|&id| self.producers.describe(id)),
                false,
            ),
            None => self.shared.publish_producers(
                self.producers
                    .producers()
                    .keys()
                    .filter_map(|&id| self.producers.describe(id)),
                true,
            ),
        }
    }

    /// What `open` read: how many segments it scanned or recovered and how many bytes.
    pub fn open_stats(&self) -> OpenStats {
        self.open_stats
    }

    /// Kafka's recovery point: every offset below it is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Asserts the invariant chain `log_start <= hw <= leo` (only our own bug can break it)
    /// and publishes the offsets to the readers. Called after every change of one of them.
    fn validate(&self) {
        self.shared.offsets.publish_all(
            self.log_start_offset,
            self.last_stable_offset(),
            self.high_watermark,
            self.log_end_offset(),
        );
    }

    /// Kafka's `UnifiedLog.lastStableOffset`: the first unstable offset (earliest transaction
    /// ongoing, or completed by a marker the high watermark has not passed), moved up to the log
    /// start if DeleteRecords or retention went past it, when it is below the high watermark;
    /// else the high watermark. Computed here, from the producer state and the offsets, so
    /// every move of any of them moves it (`validate` publishes it after each).
    pub fn last_stable_offset(&self) -> i64 {
        match self.producers.first_unstable_offset() {
            Some(first) if first < self.high_watermark => first.max(self.log_start_offset),
            _ => self.high_watermark,
        }
    }

    /// Whether the producer has a transaction open on this partition at this epoch: its next
    /// transactional batch here needs no verification with the coordinator (KIP-890).
    pub fn has_ongoing_transaction(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producers.has_ongoing_txn(producer_id, producer_epoch)
    }

    /// Kafka's `maybeStartTransactionVerification`: before a transactional batch of a producer
    /// with no transaction open here (at this epoch) is appended, the broker asks the
    /// coordinator; the guard returned here must come back with the append
    /// ([`Verification::Guard`]), which is refused if a marker or another verification came
    /// in between. `None` (Kafka's sentinel): the transaction is already ongoing here and needs
    /// no verification.
    ///
    /// [`Verification::Guard`]: crate::Verification::Guard
    pub fn start_transaction_verification(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        supports_epoch_bump: bool,
        now_ms: i64,
    ) -> Option<crate::VerificationGuard> {
        if self.has_ongoing_transaction(producer_id, producer_epoch) {
            return None;
        }
        Some(
            self.verifications
                .start(producer_id, producer_epoch, supports_epoch_bump, now_ms),
        )
    }

    /// Kafka's `removeExpiredProducers` (`producer.id.expiration.ms`): forgets producers with no
    /// transaction open here whose last write is that old, and verifications started that long
    /// ago, so producer state does not grow with every producer that ever wrote here. A
    /// forgotten producer that writes again is a new one (any sequence starts it). Returns how
    /// many producers went.
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.verifications.remove_expired(now_ms, expiration_ms);
        let removed = self.producers.remove_expired(now_ms, expiration_ms);
        if removed > 0 {
            self.publish_producers(None);
        }
        removed
    }

    /// The transactions open on this partition as (producer id, first offset), earliest
    /// first (for DescribeProducers and the coordinator's checks).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.producers.ongoing_txns().collect()
    }

    /// Gives readers the current segment list (after a roll, truncation or deletion).
    fn publish_segments(&self) {
        let segments = self
            .segments
            .iter()
            .map(|s| Arc::clone(&s.shared))
            .collect();
        self.shared.publish_view(Some(segments), None);
    }

    /// Gives readers the current leader epochs.
    fn publish_epochs(&self) {
        self.shared
            .publish_view(None, Some(self.epochs.entries().into()));
    }

    /// Refuses writes once a write or fsync failed.
    fn check_writable(&self) -> Result<(), StorageError> {
        if self.shared.is_poisoned() {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Marks the log poisoned: the disk state is unknown, so it refuses writes and reads until
    /// a reopen recovers it.
    fn poison(&self) {
        self.shared.poison();
    }

    fn budget(&self) -> &Arc<FileBudget> {
        &self.shared.budget
    }

    fn io(&self) -> &Arc<dyn LogIo> {
        &self.shared.io
    }

    /// A handle for reading this log from any thread without its writer (see `reader`).
    pub fn reader(&self) -> LogReader {
        LogReader::new(Arc::clone(&self.shared))
    }

    fn active(&mut self) -> &mut Segment {
        // `segments` is never empty (open creates segment 0).
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// The log start offset, high watermark and log end offset, kept in step with this log and
    /// readable without its lock.
    pub fn offsets(&self) -> Arc<LogOffsets> {
        Arc::clone(&self.shared.offsets)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.segments
            .last()
            .map_or(self.log_start_offset, |s| s.next_offset)
    }

    /// Starts at the log start offset after open; the partition owner advances it (Kafka reads
    /// it from `replication-offset-checkpoint`, which is the broker's concern).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Panics if `hw` is outside `[log_start, leo]`: callers compute it from our own offsets.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw;
        self.producers.on_high_watermark(hw);
        self.validate();
    }

    /// The settings appends, rolls and indexes follow.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (a topic config or its broker default changed): the next append,
    /// roll and index entry follow them, as Kafka's `UnifiedLog.updateConfig` does. Segments
    /// already written stay as they are.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader-epoch cache entries, as in `leader-epoch-checkpoint`.
    pub fn epoch_entries(&self) -> &[crate::EpochEntry] {
        self.epochs.entries()
    }

    /// Leader epoch in force at `offset` (for OffsetForLeaderEpoch and ListOffsets).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epochs.epoch_for_offset(offset)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a produce request's records as leader. See the crate docs; in order:
    /// validate batches, detect idempotent duplicates, check producer epochs/sequences, assign
    /// offsets, stamp the leader epoch (and LogAppendTime), roll if needed, write, index.
    /// Writes go to the page cache; durability comes from `flush`.
    pub fn append_as_leader(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, StorageError> {
        self.append_as(records, leader_epoch, now_ms, true, Verification::Off)
    }

    /// `append_as_leader` with transaction verification (KIP-890, Kafka's
    /// `analyzeAndValidateProducerState`): with [`Verification::Guard`], a transactional batch
    /// of a producer with no transaction open here at its epoch is refused with
    /// INVALID_PRODUCER_EPOCH if the epoch is older than the producer's, and with
    /// INVALID_TXN_STATE unless the guard is the one `start_transaction_verification` handed
    /// out and still holds.
    pub fn append_as_leader_verified(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
        verification: Verification,
    ) -> Result<AppendOutcome, StorageError> {
        self.append_as(records, leader_epoch, now_ms, true, verification)
    }

    /// Appends a coordinator's own batches as leader (Kafka's COORDINATOR append origin): as
    /// `append_as_leader`, except that producer batches are neither matched against recent
    /// ones as retries nor checked for sequence (Kafka's `ProducerAppendInfo` checks sequences
    /// and `analyzeAndValidateProducerState` finds duplicates for CLIENT appends only). A
    /// group coordinator's transactional batch of offsets carries the producer's id and epoch
    /// with base sequence 0 every time, as Kafka's `CoordinatorRuntime` writes it; the epoch
    /// and transaction rules still apply.
    pub fn append_as_coordinator(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, StorageError> {
        self.append_as(records, leader_epoch, now_ms, false, Verification::Off)
    }

    /// `append_as_leader` (`client`: sequence and duplicate checks) or `append_as_coordinator`.
    fn append_as(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
        now_ms: i64,
        client: bool,
        verification: Verification,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_writable()?;
        let refs = validate_batches(&records, self.config.max_message_bytes as usize)?;
        if self.config.compaction.compact {
            self.check_keys(&records, &refs)?;
        }
        // Kafka checks a retry against the committed producer state before anything else and
        // answers the original offsets for the whole append.
        for r in refs.iter().filter(|_| client) {
            if r.header.has_producer_id() {
                if let Some(dup) = self.producers.find_duplicate(&r.header) {
                    return Ok(AppendOutcome {
                        base_offset: dup.first_offset,
                        last_offset: dup.last_offset,
                        log_append_time_ms: dup.timestamp,
                        log_start_offset: self.log_start_offset,
                        duplicate: true,
                    });
                }
            }
        }
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let first_offset = self.log_end_offset();
        let validated = validator::validate_and_assign(
            BytesMut::from(records),
            &refs,
            &self.config,
            first_offset,
            leader_epoch,
            now_ms,
        )
        .map_err(|e| match e {
            StorageError::InvalidTimestamp { record_errors, .. } => {
                StorageError::InvalidTimestamp {
                    record_errors,
                    log_start_offset: self.log_start_offset,
                }
            }
            other => other,
        })?;
        let buf = validated.bytes;
        let headers = validated.headers;
        let max_timestamp = validated.max_timestamp;
        let mut updates = HashMap::new();
        let mut next_offset = first_offset;
        for (_, header) in &headers {
            if let Verification::Guard(guard) = verification {
                self.check_verified(header, guard)?;
            }
            if header.has_producer_id() {
                check_and_update(
                    &mut updates,
                    self.producers.get(header.producer_id),
                    header,
                    client,
                )?;
            }
            next_offset = header.last_offset() + 1;
        }
        let last_offset = next_offset - 1;
        self.write_epochs_before_append()?;
        self.maybe_roll(
            buf.len() as u64,
            first_offset,
            last_offset,
            max_timestamp,
            now_ms,
        )?;
        let before = self.active().append_state();
        let latest_epoch_before = self.epochs.entries().last().copied();
        let written = self
            .write_to_active(&buf, &headers, now_ms)
            .and_then(|()| self.epochs.start_epoch(leader_epoch, first_offset));
        if let Err(e) = written {
            // Nothing of a failed append becomes visible, whichever write failed (the data, an
            // index entry or the epoch checkpoint) and whatever reached the files: readers and
            // offsets stay where they were. The files are cut back to where the append began
            // (a failed write may have left a prefix of its bytes; ENOSPC on a full disk is the
            // common case) and checked, so the log keeps taking writes and the next append,
            // once there is space again, continues exactly where the last good one ended.
            // Only if that fails is the disk's state unknown: then the log refuses further
            // writes and reads until a reopen recovers it (Kafka takes the whole log directory
            // offline on any IOException; docs/design.md says why runnel does not).
            self.active().restore_append_state(before);
            if let Err(cut) = self.active().cut_to_stats() {
                tracing::error!(dir = %self.dir.display(), error = %cut, "could not undo a failed append; the log refuses writes until reopened");
                self.poison();
            }
            return Err(e);
        }
        let changed: Vec<i64> = updates.keys().copied().collect();
        self.producers.commit(updates);
        self.publish_producers(Some(&changed));
        for (_, header) in headers.iter().filter(|(_, h)| h.is_transactional()) {
            self.verifications.on_transactional_append(
                header.producer_id,
                false,
                header.producer_epoch,
            );
        }
        // Readers get the new bytes first, then an epoch that starts in them, then the log end
        // offset that covers them (see `reader`).
        self.active().publish();
        if self.epochs.entries().last().copied() != latest_epoch_before {
            self.publish_epochs();
        }
        self.validate();
        Ok(AppendOutcome {
            base_offset: first_offset,
            last_offset,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// The verification check of one batch (see `append_as_leader_verified`).
    fn check_verified(
        &self,
        header: &BatchHeader,
        guard: Option<crate::VerificationGuard>,
    ) -> Result<(), StorageError> {
        let producer_id = header.producer_id;
        if !header.is_transactional()
            || header.is_control()
            || self
                .producers
                .has_ongoing_txn(producer_id, header.producer_epoch)
        {
            return Ok(());
        }
        // A stale epoch first: the producer can recover from that one.
        if let Some(entry) = self.producers.get(producer_id) {
            if header.producer_epoch < entry.epoch {
                return Err(StorageError::InvalidProducerEpoch {
                    producer_id,
                    epoch: header.producer_epoch,
                    current_epoch: entry.epoch,
                });
            }
        }
        if !self.verifications.verifies(producer_id, guard) {
            return Err(StorageError::InvalidTxnState(
                "Record was not part of an ongoing transaction".into(),
            ));
        }
        Ok(())
    }

    /// Writes a transaction marker (Kafka's `appendAsLeader` with the COORDINATOR origin, as
    /// `ReplicaManager` does for each partition of a WriteTxnMarkers request): a control batch
    /// at the log end, checked against the producer's state first (`check_marker`: an older
    /// producer epoch is INVALID_PRODUCER_EPOCH, an older coordinator epoch
    /// TRANSACTION_COORDINATOR_FENCED). It ends the producer's transaction here, if it had one
    /// open (an empty transaction ends nothing, but the marker is written all the same, as
    /// Kafka writes it); an ABORT that ends one adds a `.txnindex` entry to the active segment.
    /// The last stable offset moves once the high watermark passes the marker
    /// (`set_high_watermark`). Like `append_as_leader`, a failed write is undone and leaves the
    /// log as it was, and durability comes from `flush`.
    pub fn append_txn_marker(
        &mut self,
        marker: &TxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendOutcome, StorageError> {
        self.check_writable()?;
        let offset = self.log_end_offset();
        let mut updates = HashMap::new();
        let completed = check_marker(
            &mut updates,
            self.producers.get(marker.producer_id),
            marker,
            offset,
            now_ms,
        )?;
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let buf = txn::marker_batch(marker, offset, leader_epoch, now_ms, log_append_time);
        // Our own encoding: parsing it cannot fail.
        let header = match BatchHeader::parse(&buf) {
            Ok(header) => header,
            Err(e) => panic!("a marker batch we encoded does not parse: {e}"),
        };
        let aborted = completed.filter(|c| c.aborted).map(|c| AbortedTxn {
            producer_id: c.producer_id,
            first_offset: c.first_offset,
            last_offset: c.last_offset,
            last_stable_offset: self.producers.stable_offset_after(&c),
        });
        self.write_epochs_before_append()?;
        self.maybe_roll(
            buf.len() as u64,
            offset,
            offset,
            header.max_timestamp,
            now_ms,
        )?;
        let before = self.active().append_state();
        let aborted_before = self.active().shared.with_aborted(<[_]>::len);
        let latest_epoch_before = self.epochs.entries().last().copied();
        let written = self
            .write_to_active(&buf, &[(0, header)], now_ms)
            .and_then(|()| match &aborted {
                Some(entry) => self.append_txn_index_entry(entry, aborted_before),
                None => Ok(()),
            })
            .and_then(|()| self.epochs.start_epoch(leader_epoch, offset));
        if let Err(e) = written {
            // Undone as a failed append is (see `append_as_leader`), the `.txnindex` too.
            self.active().restore_append_state(before);
            let cut = self
                .active()
                .cut_to_stats()
                .and_then(|()| self.cut_txn_index(aborted_before));
            if let Err(cut) = cut {
                tracing::error!(dir = %self.dir.display(), error = %cut, "could not undo a failed marker append; the log refuses writes until reopened");
                self.poison();
            }
            return Err(e);
        }
        let changed: Vec<i64> = updates.keys().copied().collect();
        self.producers.commit(updates);
        self.publish_producers(Some(&changed));
        self.verifications
            .on_transactional_append(marker.producer_id, true, marker.producer_epoch);
        if let Some(completed) = completed {
            self.producers.complete(completed);
        }
        if let Some(entry) = aborted {
            self.active().shared.push_aborted(entry);
        }
        self.active().publish();
        if self.epochs.entries().last().copied() != latest_epoch_before {
            self.publish_epochs();
        }
        self.validate();
        Ok(AppendOutcome {
            base_offset: offset,
            last_offset: offset,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Writes `entry` as entry number `index` of the active segment's `.txnindex` (created on
    /// its first entry, as Kafka creates it). Not fsynced here: `flush` and the roll fsync it,
    /// and recovery rebuilds it from the log whatever a crash left.
    fn append_txn_index_entry(
        &mut self,
        entry: &AbortedTxn,
        index: usize,
    ) -> Result<(), StorageError> {
        let path = txn::txn_index_path(&self.dir, self.active_base_offset());
        let file = self
            .budget()
            .open_transient(&**self.io(), &path, OpenMode::Create)?;
        let position = (index * txn::ABORTED_TXN_BYTES) as u64;
        self.io().write_all_at(&file, &entry.to_bytes(), position)?;
        Ok(())
    }

    /// Cuts the active segment's `.txnindex` back to `entries` entries (undoing a failed
    /// marker append), if the file exists.
    fn cut_txn_index(&mut self, entries: usize) -> Result<(), StorageError> {
        let path = txn::txn_index_path(&self.dir, self.active_base_offset());
        let file = match self
            .budget()
            .open_transient(&**self.io(), &path, OpenMode::ReadWrite)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let size_bytes = (entries * txn::ABORTED_TXN_BYTES) as u64;
        self.io().set_len(&file, size_bytes)?;
        if self.io().size_bytes(&file)? != size_bytes {
            return Err(StorageError::Corrupt(format!(
                "{} is not {size_bytes} bytes after being cut",
                path.display()
            )));
        }
        Ok(())
    }

    /// fsyncs the active segment's `.txnindex` if it has entries (a roll seals it, and an open
    /// after a clean shutdown takes it as it stands; an unclean one rebuilds it if needed).
    fn sync_txn_index(&mut self) -> Result<(), StorageError> {
        if self.active().shared.with_aborted(<[_]>::is_empty) {
            return Ok(());
        }
        let path = txn::txn_index_path(&self.dir, self.active_base_offset());
        let file = self
            .budget()
            .open_transient(&**self.io(), &path, OpenMode::ReadWrite)?;
        self.io().sync_data(&file)?;
        Ok(())
    }

    /// Kafka's `LogValidator.validateKey`: a compacted log refuses records without a key,
    /// answering INVALID_RECORD with one record error per keyless record.
    /// Compressed batches are decompressed within the limits of `max.message.bytes`
    /// (`BatchRecords`) to read their keys.
    fn check_keys(
        &self,
        records: &[u8],
        refs: &[runnel_protocol::batch::BatchRef],
    ) -> Result<(), StorageError> {
        let topic_partition = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let limits =
            DecompressLimits::for_max_message_bytes(self.config.max_message_bytes as usize);
        let mut record_errors = Vec::new();
        for r in refs {
            if r.header.is_control() {
                continue;
            }
            let Some(batch) = records.get(r.position..r.position + r.header.size_bytes()) else {
                panic!("validated batch at {} runs past the buffer", r.position);
            };
            BatchRecords::open(batch, limits)?.for_each(|record| {
                if record.key.is_none() {
                    record_errors.push((
                        record.index,
                        format!(
                            "Compacted topic cannot accept message without key in topic partition {topic_partition}"
                        ),
                    ));
                }
            })?;
        }
        if record_errors.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = record_errors
            .iter()
            .take(3)
            .map(|(index, message)| format!("RecordError(batchIndex={index}, message='{message}')"))
            .collect();
        Err(StorageError::InvalidRecords {
            message: format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                record_errors.len(),
                shown.join(", ")
            ),
            record_errors,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Kafka's `LogSegment.shouldRoll`: size, age (`segment.ms`), full indexes, or offsets that
    /// no longer fit a relative u32.
    fn maybe_roll(
        &mut self,
        append_bytes: u64,
        first_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let config = self.config.clone();
        let active = self.active();
        if active.size_bytes == 0 {
            return Ok(());
        }
        let segment_bytes = config.segment_bytes.min(SEGMENT_BYTES_MAX);
        let waited_ms = match active.first_batch_timestamp {
            Some(ts) if ts >= 0 => max_timestamp.saturating_sub(ts),
            _ => now_ms.saturating_sub(active.created_ms.unwrap_or(now_ms)),
        };
        let index_full = active.offset_index_entries >= u64::from(config.segment_index_bytes) / 8
            || active.time_index_entries >= u64::from(config.segment_index_bytes) / 12;
        let offsets_overflow = last_offset - active.base_offset > i64::from(i32::MAX);
        if active.size_bytes + append_bytes > segment_bytes
            || waited_ms
                > config
                    .max_segment_ms()
                    .saturating_sub(active.roll_jitter_ms)
            || index_full
            || offsets_overflow
        {
            self.roll(first_offset, now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment (final time-index entry, fsync, close handles) and starts a
    /// new one at `base_offset`. Sealed segments are durable, so recovery only ever needs to
    /// look at the active segment. Readers get the new segment list before anything is
    /// appended to the new segment.
    fn roll(&mut self, base_offset: i64, now_ms: i64) -> Result<(), StorageError> {
        // The final time-index entry is a write like an append's: if it fails (a full disk),
        // nothing is sealed yet, so it is undone as a failed append is and the active segment
        // stays active; the append that wanted the roll fails and a later one rolls.
        let before = self.active().append_state();
        if let Err(e) = self.active().append_final_time_entry() {
            self.active().restore_append_state(before);
            if self.active().cut_to_stats().is_err() {
                self.poison();
            }
            return Err(e);
        }
        let result = (|| {
            self.sync_txn_index()?;
            let active = self.active();
            active.sync()?;
            // Gives the handles back to the budget; sealed segments are read transiently.
            active.seal();
            // The files are created now, not on first write, so the directory fsync below
            // makes the new segment's names durable before anything is appended to it.
            create_files(self.budget(), &**self.io(), &self.dir, base_offset)?;
            let mut segment = Segment::empty(&self.dir, base_offset, self.io());
            // Empty files whose names the directory fsync covers: nothing to fsync yet.
            segment.files = Some(Arc::new(ActiveFiles::new(
                self.budget(),
                self.io(),
                &self.dir,
                base_offset,
                false,
            )));
            segment.created_ms = Some(now_ms);
            segment.roll_jitter_ms = retention::random_roll_jitter_ms(&self.config);
            segment.publish();
            self.segments.push(segment);
            self.publish_segments();
            // Kafka's roll takes a producer snapshot at the new segment's base offset, so a
            // reopen replays producer state from here; the directory fsync below covers it.
            self.write_producer_snapshot(base_offset);
            // The sealed segment is fsynced: the recovery point jumps to the new segment. Its
            // checkpoint's name is made durable by the same directory fsync.
            self.recovery_point = self.recovery_point.max(base_offset);
            self.checkpoint_recovery_point();
            sync_dir(&**self.io(), &self.dir)
        })();
        if result.is_err() {
            self.poison();
        }
        result
    }

    fn write_to_active(
        &mut self,
        buf: &[u8],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let interval = self.config.index_interval_bytes;
        let active = self.active();
        if active.created_ms.is_none() {
            active.created_ms = Some(now_ms);
        }
        // On failure the caller restores the segment's append state.
        append_batches(active, interval, buf, headers)
    }

    /// Brings the epoch checkpoint in line with the cache before the log end moves (`open` cuts
    /// the cache without writing it): past this point, an entry the file still held beyond the
    /// old end could cover records of another epoch. Nothing is appended if this fails, and
    /// the file then holds the old or the new entries, both cut alike by the next open, so the
    /// log stays writable.
    fn write_epochs_before_append(&mut self) -> Result<(), StorageError> {
        if self.epochs.is_persisted() {
            return Ok(());
        }
        self.epochs.write()
    }

    /// `assign_leader_epoch` with the checkpoint written by the first append (or the next
    /// `assign_leader_epoch`) instead of now: for leadership that moves for many partitions at
    /// once (a broker unfenced at startup), where a checkpoint fsync per partition would
    /// dominate. An epoch no batch carries yet loses nothing if a crash forgets it: the
    /// controller's registration holds it. Nothing if the latest epoch is already
    /// `leader_epoch`.
    pub fn assign_leader_epoch_deferred(&mut self, leader_epoch: i32) -> Result<(), StorageError> {
        self.check_writable()?;
        if leader_epoch < 0 || self.epochs.latest_epoch() == Some(leader_epoch) {
            return Ok(());
        }
        let leo = self.log_end_offset();
        if self.epochs.assign(leader_epoch, leo) {
            self.publish_epochs();
        }
        Ok(())
    }

    /// Kafka's `maybeAssignEpochStartOffset` on becoming leader: the new epoch starts at the log
    /// end offset, and the checkpoint is written now (at creation or election) rather than on
    /// the first append, so that append does not create and rename a file. Nothing if the
    /// latest epoch is already `leader_epoch`. A failed checkpoint write poisons the log, as it
    /// does in `append_as_leader`.
    pub fn assign_leader_epoch(&mut self, leader_epoch: i32) -> Result<(), StorageError> {
        self.check_writable()?;
        let leo = self.log_end_offset();
        let before = self.epochs.entries().last().copied();
        // The checkpoint `open` left behind (see `write_epochs_before_append`) is brought in
        // line here too, where it costs the owner's startup nothing when it already is.
        let result = self
            .epochs
            .start_epoch(leader_epoch, leo)
            .and_then(|()| self.epochs.write());
        if result.is_err() {
            self.poison();
        } else if self.epochs.entries().last().copied() != before {
            self.publish_epochs();
        }
        result
    }

    /// `LogSnapshot::read` on a snapshot taken now: for callers that own the writer anyway
    /// (tests, tools). Others read through `reader`.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        self.reader()
            .read(fetch_offset, max_bytes, max_offset, min_one_batch)
    }

    /// `LogSnapshot::read_file_slice` on a snapshot taken now (see `read`).
    pub fn read_file_slice(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, StorageError> {
        self.reader().with_snapshot(|s| {
            s.read_file_slice(fetch_offset, max_bytes, max_offset, min_one_batch)
        })
    }

    /// `LogSnapshot::offset_for_timestamp` on a snapshot taken now (see `read`).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64, i32)>, StorageError> {
        self.reader().with_snapshot(|s| s.offset_for_timestamp(ts))
    }

    /// `LogSnapshot::max_timestamp_and_offset` on a snapshot taken now (see `read`).
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64, i32)>, StorageError> {
        self.reader()
            .with_snapshot(crate::LogSnapshot::max_timestamp_and_offset)
    }

    /// fsyncs the active segment's log and indexes; the epoch checkpoint needs none, being
    /// durable once written (`EpochCache::write`). A failed fsync poisons the log: the kernel
    /// may have dropped the dirty pages, so retrying could lie.
    /// Files the budget closed since they were written are reopened and fsynced, so on return
    /// everything appended so far is on disk (see `file_budget` for why that is sound).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        let result = self.sync_txn_index().and_then(|()| self.active().sync());
        if result.is_err() {
            self.poison();
        } else {
            self.recovery_point = self.log_end_offset();
        }
        result
    }

    /// Appends the final time-index entry, flushes, and writes what lets the next clean open
    /// skip reading batches: the producer snapshot at the log end and the recovery point
    /// (the log end), both durably, and removes older snapshots. Whether the next open may
    /// trust them is the owner's to say (`LastShutdown`, the broker's marker), written after
    /// this returns.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.check_writable()?;
        self.active().append_final_time_entry()?;
        self.flush()?;
        let leo = self.log_end_offset();
        // The snapshot first: a checkpoint naming the log end is only trusted with a snapshot
        // there (Kafka's `UnifiedLog.close` snapshots producer state at the log end too). One
        // directory fsync makes both names (and the removals) durable.
        producer_snapshot::write(&**self.io(), &self.dir, leo, self.producers.producers())?;
        recovery_point::write_unsynced_name(&**self.io(), &self.dir, self.recovery_point)?;
        // An earlier clean shutdown's snapshot, neither at the log end nor at a segment's
        // base, is replaced by this one.
        let bases: Vec<i64> = self.segments.iter().map(|s| s.base_offset).collect();
        producer_snapshots::remove_where(&**self.io(), &self.dir, |offset| {
            offset != leo && bases.binary_search(&offset).is_err()
        })?;
        sync_dir(&**self.io(), &self.dir)
    }

    /// Writes the recovery point to its checkpoint, whose name the caller's directory fsync
    /// makes durable; a failure only leaves the checkpoint behind, which costs a longer
    /// recovery, so it is logged, not returned.
    fn checkpoint_recovery_point(&self) {
        if let Err(e) =
            recovery_point::write_unsynced_name(&**self.io(), &self.dir, self.recovery_point)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not checkpoint the recovery point");
        }
    }
}

/// Writes `buf` (whole, checked batches described by `headers`) at the end of the active
/// segment, then its index entries, updating the segment's stats as it goes.
fn append_batches(
    active: &mut Segment,
    interval_bytes: u32,
    buf: &[u8],
    headers: &[(usize, BatchHeader)],
) -> Result<(), StorageError> {
    let start = active.size_bytes;
    // The active segment is created with its files and keeps them until rolled.
    let Some(files) = active.files.as_ref() else {
        panic!("active segment {} has no open files", active.base_offset);
    };
    files.log.write_all_at(buf, start)?;
    for (position, header) in headers {
        // A failed index write leaves the size past the batch; the caller restores the
        // segment's append state then.
        let update = active.account_batch(interval_bytes, start + *position as u64, header);
        active.write_index(update)?;
    }
    Ok(())
}

/// Kafka's `LocalLog.logDeleteDirName`: `<topic>-<partition>.<uuid without dashes>-delete`,
/// shortening the topic so the name stays within 255 bytes. The caller deletes it later.
pub fn rename_for_delete(dir: &Path) -> Result<PathBuf, StorageError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StorageError::Corrupt(format!("bad partition dir {}", dir.display())))?;
    let (topic, partition) = name
        .rsplit_once('-')
        .ok_or_else(|| StorageError::Corrupt(format!("not a partition dir: {name}")))?;
    let suffix = format!("-{partition}.{}-delete", uuid::Uuid::new_v4().simple());
    let mut topic_len = topic.len().min(255usize.saturating_sub(suffix.len()));
    while !topic.is_char_boundary(topic_len) {
        topic_len -= 1;
    }
    let new_name = format!("{}{}", &topic[..topic_len], suffix);
    let target = dir.with_file_name(new_name);
    fs::rename(dir, &target)?;
    if let Some(parent) = target.parent() {
        StdIo.sync_dir(parent)?;
    }
    Ok(target)
}
