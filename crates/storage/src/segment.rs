//! One segment: `{base_offset:020}.log` plus its `.index` and `.timeindex`.
//!
//! A segment has two sides:
//!
//! - `Segment`, the writer's, owned by the `PartitionLog`: the stats an append changes, the
//!   index builder, the roll clock, and the active segment's budgeted handles.
//! - `SharedSegment`, the readers', reached from a `LogSnapshot` without the writer's lock: the
//!   segment's name and the stats the writer last *published*. The active segment's stats are
//!   published after each append has written its batches and index entries, so a reader never
//!   reads bytes an append is still writing; a sealed segment's stats are frozen at the roll
//!   and read without any lock.
//!
//! Only the active segment has handles that outlive a call, and those are opened lazily and
//! closed by the process's `FileBudget` when other partitions need room (see `file_budget`).
//! Inactive segments are opened for each read and closed at its end (transient handles), so
//! thousands of partitions cost at most the budget, not three descriptors each. A reader of the
//! active segment pins the budgeted handle for the length of its I/O instead of holding the
//! budget's slot, so the writer never waits behind a reader's `pread`.
//!
//! # Deleted segments
//!
//! Before the writer deletes a sealed segment (retention, DeleteRecords) it *retires* it: opens
//! read-only handles to its three files and leaves them in the `SharedSegment`. A reader whose
//! snapshot still lists the segment reads through those handles from then on, and Linux keeps
//! an unlinked file's bytes for as long as a handle is open, so it finishes with the bytes it
//! started with. The handles close when the last snapshot listing the segment is dropped.
//! Truncation is different: it changes bytes in place, so it invalidates snapshots instead
//! (see `reader`).

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use runnel_protocol::batch::{BatchHeader, BATCH_HEADER_LEN};

use crate::file_budget::{BudgetedFile, FileBudget, PinnedFile, TransientFile};
use crate::file_names::file_stem;
use crate::index::{IndexBuilder, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::io::{IoFile, LogIo, OpenMode};
use crate::StorageError;

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.log", file_stem(base_offset)))
}

pub(crate) fn offset_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.index", file_stem(base_offset)))
}

pub(crate) fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.timeindex", file_stem(base_offset)))
}

/// Every file a segment may have, for deleting it: its three files, its `.txnindex`, which
/// exists once an aborted transaction landed in it (as Kafka's `LogSegment.deleteIfExists`),
/// and the producer snapshot taken when it was rolled to (named by its base offset, deleted
/// with it as Kafka's `deleteSegmentFiles` deletes it).
pub(crate) fn deletable_paths(dir: &Path, base_offset: i64) -> [PathBuf; 5] {
    [
        log_path(dir, base_offset),
        offset_index_path(dir, base_offset),
        time_index_path(dir, base_offset),
        crate::txn::txn_index_path(dir, base_offset),
        crate::producer_snapshot::snapshot_path(dir, base_offset),
    ]
}

/// The active segment's files under the process's `FileBudget`: read-write, opened on first
/// use, possibly closed between any two calls.
#[derive(Debug)]
pub(crate) struct ActiveFiles {
    pub(crate) log: BudgetedFile,
    pub(crate) offset_index: BudgetedFile,
    pub(crate) time_index: BudgetedFile,
}

impl ActiveFiles {
    /// Names the segment's three files without opening them; they must exist already
    /// (`create_files`, or recovery). `sync_pending` marks them as possibly holding bytes that
    /// were never fsynced, so the next flush fsyncs them.
    pub(crate) fn new(
        budget: &Arc<FileBudget>,
        io: &Arc<dyn LogIo>,
        dir: &Path,
        base_offset: i64,
        sync_pending: bool,
    ) -> ActiveFiles {
        ActiveFiles {
            log: BudgetedFile::new(budget, io, log_path(dir, base_offset), sync_pending),
            offset_index: BudgetedFile::new(
                budget,
                io,
                offset_index_path(dir, base_offset),
                sync_pending,
            ),
            time_index: BudgetedFile::new(
                budget,
                io,
                time_index_path(dir, base_offset),
                sync_pending,
            ),
        }
    }
}

/// Creates the (empty) files of a new segment and closes them again; handles come lazily.
/// The caller fsyncs the directory to make the names durable.
pub(crate) fn create_files(
    budget: &FileBudget,
    io: &dyn LogIo,
    dir: &Path,
    base_offset: i64,
) -> io::Result<()> {
    for path in [
        log_path(dir, base_offset),
        offset_index_path(dir, base_offset),
        time_index_path(dir, base_offset),
    ] {
        budget.open_transient(io, &path, OpenMode::Create)?;
    }
    Ok(())
}

/// What an append changes in a `Segment`, saved so a failed append can be undone.
#[derive(Debug, Clone)]
pub(crate) struct AppendState {
    size_bytes: u64,
    next_offset: i64,
    max_timestamp: i64,
    base_offset_of_max_timestamp: i64,
    last_offset_of_max_timestamp: i64,
    first_batch_timestamp: Option<i64>,
    offset_index_entries: u64,
    time_index_entries: u64,
    index: IndexBuilder,
}

/// What a reader needs to know of a segment to read it: how far its valid bytes and each index
/// reach, and its largest timestamp. A copy, taken from the writer's last publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStats {
    /// Bytes of whole, valid batches; nothing past them is ever read.
    pub(crate) size_bytes: u64,
    /// Last offset + 1 of the last batch, the base offset when empty.
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp (-1 when none) and the base offset of that batch.
    pub(crate) max_timestamp: i64,
    pub(crate) base_offset_of_max_timestamp: i64,
    /// Whole entries written to each index file; lookups search no further.
    pub(crate) offset_index_entries: u64,
    pub(crate) time_index_entries: u64,
}

/// One of a segment's three files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentFile {
    Log,
    OffsetIndex,
    TimeIndex,
}

impl SegmentFile {
    pub(crate) const ALL: [SegmentFile; 3] = [
        SegmentFile::Log,
        SegmentFile::OffsetIndex,
        SegmentFile::TimeIndex,
    ];

    pub(crate) fn path(self, dir: &Path, base_offset: i64) -> PathBuf {
        match self {
            SegmentFile::Log => log_path(dir, base_offset),
            SegmentFile::OffsetIndex => offset_index_path(dir, base_offset),
            SegmentFile::TimeIndex => time_index_path(dir, base_offset),
        }
    }
}

impl ActiveFiles {
    fn file(&self, which: SegmentFile) -> &BudgetedFile {
        match which {
            SegmentFile::Log => &self.log,
            SegmentFile::OffsetIndex => &self.offset_index,
            SegmentFile::TimeIndex => &self.time_index,
        }
    }
}

/// The readers' side of one segment (module docs): reachable from a `LogSnapshot` without the
/// writer's lock, and kept alive by every snapshot that lists it, even after the writer dropped
/// the segment.
#[derive(Debug)]
pub(crate) struct SharedSegment {
    dir: PathBuf,
    /// The log's file backend, for the transient handles of a sealed segment.
    io: Arc<dyn LogIo>,
    base_offset: i64,
    /// The active segment's stats and handles as of the writer's last publication. Locked only
    /// to copy them out or in, never across I/O.
    published: Mutex<Published>,
    /// The final stats, set once when the segment is sealed, so that readers of the (many)
    /// sealed segments take their stats without a lock.
    sealed: OnceLock<SegmentStats>,
    /// Read-only handles opened just before the writer deleted the segment's files (module
    /// docs); set at most once.
    retired: OnceLock<RetiredFiles>,
    /// The segment's aborted transactions, as its `.txnindex` holds them, oldest first. Kept in
    /// memory (34 bytes an entry, each standing for an ABORT marker batch of at least 78 bytes
    /// in this segment, so bounded by the segment's size) because recovery rebuilds them from
    /// the log anyway; the file is for Kafka's tools and a downgrade. Appended to by the writer
    /// only; readers copy out the entries they need.
    aborted: Mutex<Vec<crate::txn::AbortedTxn>>,
}

#[derive(Debug, Clone)]
struct Published {
    stats: SegmentStats,
    /// `Some` while the segment is active: readers read through the budgeted handles the writer
    /// writes through, so a reader never opens a second descriptor for a hot file.
    files: Option<Arc<ActiveFiles>>,
}

/// A deleted segment's three files, held open for the snapshots that still list it.
#[derive(Debug)]
struct RetiredFiles {
    log: PinnedFile,
    offset_index: PinnedFile,
    time_index: PinnedFile,
}

impl RetiredFiles {
    fn share(&self, which: SegmentFile) -> PinnedFile {
        match which {
            SegmentFile::Log => self.log.share(),
            SegmentFile::OffsetIndex => self.offset_index.share(),
            SegmentFile::TimeIndex => self.time_index.share(),
        }
    }
}

fn lock_published(published: &Mutex<Published>) -> MutexGuard<'_, Published> {
    // Writers replace the whole value in one assignment; a panic cannot leave half of one.
    published.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedSegment {
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    fn lock_aborted(&self) -> MutexGuard<'_, Vec<crate::txn::AbortedTxn>> {
        // Only pushes and whole replacements happen under it.
        self.aborted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the segment's aborted transactions.
    pub(crate) fn with_aborted<R>(&self, f: impl FnOnce(&[crate::txn::AbortedTxn]) -> R) -> R {
        f(&self.lock_aborted())
    }

    pub(crate) fn push_aborted(&self, entry: crate::txn::AbortedTxn) {
        self.lock_aborted().push(entry);
    }

    pub(crate) fn set_aborted(&self, entries: Vec<crate::txn::AbortedTxn>) {
        *self.lock_aborted() = entries;
    }

    /// What a reader reads this segment by: the sealed stats, or the active segment's last
    /// publication.
    pub(crate) fn read(self: &Arc<Self>) -> SegmentRead {
        if let Some(stats) = self.sealed.get() {
            return SegmentRead {
                segment: Arc::clone(self),
                stats: *stats,
                files: None,
            };
        }
        let published = lock_published(&self.published).clone();
        SegmentRead {
            segment: Arc::clone(self),
            stats: published.stats,
            files: published.files,
        }
    }

    fn publish(&self, stats: SegmentStats, files: Option<Arc<ActiveFiles>>) {
        assert!(
            self.sealed.get().is_none(),
            "segment {} published after it was sealed",
            self.base_offset
        );
        *lock_published(&self.published) = Published { stats, files };
    }

    /// Freezes the stats; from now on readers read the files by name (or retired handles).
    fn seal(&self, stats: SegmentStats) {
        *lock_published(&self.published) = Published { stats, files: None };
        assert!(
            self.sealed.set(stats).is_ok(),
            "segment {} sealed twice",
            self.base_offset
        );
    }

    /// Opens read-only handles to the three files so that snapshots still listing this segment
    /// keep reading it after the writer deletes the files (module docs). The writer calls this
    /// before it renames anything. A second call keeps the first handles.
    pub(crate) fn retire(&self, budget: &Arc<FileBudget>) -> io::Result<()> {
        if self.retired.get().is_some() {
            return Ok(());
        }
        let open = |which: SegmentFile| {
            budget.pin_new(&*self.io, &which.path(&self.dir, self.base_offset))
        };
        let retired = RetiredFiles {
            log: open(SegmentFile::Log)?,
            offset_index: open(SegmentFile::OffsetIndex)?,
            time_index: open(SegmentFile::TimeIndex)?,
        };
        // Only the writer retires, one call at a time, so the cell is still empty.
        let _ = self.retired.set(retired);
        Ok(())
    }
}

/// A handle one read goes through: a transient one of a sealed segment, or a shared one (the
/// active segment's, or a retired segment's).
enum ReadHandle<'a> {
    Transient(TransientFile<'a>),
    Pinned(PinnedFile),
}

impl Deref for ReadHandle<'_> {
    type Target = File;

    fn deref(&self) -> &File {
        match self {
            ReadHandle::Transient(file) => file,
            ReadHandle::Pinned(file) => file,
        }
    }
}

/// One segment as a reader sees it: its stats as of the moment it was taken, and the means to
/// open its files. Reads never go past `stats`, whatever the writer appended since.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRead {
    segment: Arc<SharedSegment>,
    pub(crate) stats: SegmentStats,
    files: Option<Arc<ActiveFiles>>,
}

impl SegmentRead {
    pub(crate) fn base_offset(&self) -> i64 {
        self.segment.base_offset
    }

    /// The segment this read is of (the cleaner checks it is still in the log at the swap).
    pub(crate) fn shared(&self) -> Arc<SharedSegment> {
        Arc::clone(&self.segment)
    }

    /// Opens `which` for this read, preferring retired handles. The writer retires a segment
    /// before it renames its files, so a file opened by name while `retired` was still empty is
    /// this segment's file (and stays readable once unlinked); if `retired` is set by the time
    /// the open returned, the name may already be gone or name another file, so the retired
    /// handle is used instead. The system calls of the open and of the writer's rename order
    /// the two checks as a fence would.
    fn open<H>(
        &self,
        which: SegmentFile,
        by_name: impl FnOnce() -> io::Result<H>,
        retired: impl Fn(PinnedFile) -> H,
    ) -> Result<H, StorageError> {
        if let Some(files) = self.segment.retired.get() {
            return Ok(retired(files.share(which)));
        }
        let opened = by_name();
        if let Some(files) = self.segment.retired.get() {
            return Ok(retired(files.share(which)));
        }
        Ok(opened?)
    }

    /// Runs `f` on a handle of `which`. Holds no slot of the budget while `f` runs: the active
    /// segment's handle is pinned, so the writer never waits for a reader's I/O.
    pub(crate) fn with_file<R>(
        &self,
        budget: &Arc<FileBudget>,
        which: SegmentFile,
        f: impl FnOnce(IoFile<'_>) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let io = &*self.segment.io;
        let handle = self.open(
            which,
            || match &self.files {
                Some(files) => files.file(which).pin().map(ReadHandle::Pinned),
                None => budget
                    .open_transient(
                        io,
                        &which.path(&self.segment.dir, self.base_offset()),
                        OpenMode::Read,
                    )
                    .map(ReadHandle::Transient),
            },
            ReadHandle::Pinned,
        )?;
        f(IoFile::new(io, &handle))
    }

    pub(crate) fn with_log<R>(
        &self,
        budget: &Arc<FileBudget>,
        f: impl FnOnce(IoFile<'_>) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.with_file(budget, SegmentFile::Log, f)
    }

    pub(crate) fn with_time_index<R>(
        &self,
        budget: &Arc<FileBudget>,
        f: impl FnOnce(IoFile<'_>) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.with_file(budget, SegmentFile::TimeIndex, f)
    }

    /// The `.log` handle, held past this call for a fetch response (`PinnedFile`).
    pub(crate) fn pin_log(&self, budget: &Arc<FileBudget>) -> Result<PinnedFile, StorageError> {
        self.open(
            SegmentFile::Log,
            || match &self.files {
                Some(files) => files.log.pin(),
                None => budget.pin_new(
                    &*self.segment.io,
                    &log_path(&self.segment.dir, self.base_offset()),
                ),
            },
            |pinned| pinned,
        )
    }

    /// The backend to read a handle of this segment through.
    pub(crate) fn io(&self) -> &dyn LogIo {
        &*self.segment.io
    }

    /// File position to start scanning for `offset`, from the sparse offset index. A position
    /// past the valid size (stale index) falls back to 0.
    pub(crate) fn position_for(
        &self,
        budget: &Arc<FileBudget>,
        offset: i64,
    ) -> Result<u64, StorageError> {
        if self.stats.offset_index_entries == 0 {
            return Ok(0);
        }
        let relative = offset.saturating_sub(self.base_offset());
        let position = self.with_file(budget, SegmentFile::OffsetIndex, |file| {
            Ok(crate::index::lookup_position(
                file,
                self.stats.offset_index_entries,
                relative,
            )?)
        })?;
        Ok(if position < self.stats.size_bytes {
            position
        } else {
            0
        })
    }
}

/// The writer's side of one segment (module docs).
#[derive(Debug)]
pub(crate) struct Segment {
    /// What readers see of this segment; the writer publishes to it.
    pub(crate) shared: Arc<SharedSegment>,
    pub(crate) base_offset: i64,
    /// Bytes of whole, valid batches; the file is never longer after recovery.
    pub(crate) size_bytes: u64,
    /// Last offset + 1 of the last batch, `base_offset` when empty.
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp (-1 when none) and the base offset of that batch.
    pub(crate) max_timestamp: i64,
    pub(crate) base_offset_of_max_timestamp: i64,
    /// Last offset of the batch holding the max timestamp (Kafka's shallow offset, used in the time index).
    pub(crate) last_offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch, Kafka's `rollingBasedTimestamp` for `segment.ms`.
    pub(crate) first_batch_timestamp: Option<i64>,
    /// Clock at creation (or first append after open), the fallback for `segment.ms`.
    pub(crate) created_ms: Option<i64>,
    /// Kafka's `rollJitterMs`: this segment rolls this much before `segment.ms` (drawn once,
    /// when the segment is created or loaded; see `LogConfig::segment_jitter_ms`).
    pub(crate) roll_jitter_ms: i64,
    pub(crate) offset_index_entries: u64,
    pub(crate) time_index_entries: u64,
    pub(crate) index: IndexBuilder,
    /// `Some` only for the active segment; shared with the readers of its publications.
    pub(crate) files: Option<Arc<ActiveFiles>>,
}

impl Segment {
    pub(crate) fn empty(dir: &Path, base_offset: i64, io: &Arc<dyn LogIo>) -> Segment {
        Segment {
            shared: Arc::new(SharedSegment {
                dir: dir.to_path_buf(),
                io: Arc::clone(io),
                base_offset,
                published: Mutex::new(Published {
                    stats: SegmentStats {
                        size_bytes: 0,
                        next_offset: base_offset,
                        max_timestamp: -1,
                        base_offset_of_max_timestamp: base_offset,
                        offset_index_entries: 0,
                        time_index_entries: 0,
                    },
                    files: None,
                }),
                sealed: OnceLock::new(),
                retired: OnceLock::new(),
                aborted: Mutex::new(Vec::new()),
            }),
            base_offset,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            base_offset_of_max_timestamp: base_offset,
            last_offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: None,
            roll_jitter_ms: 0,
            offset_index_entries: 0,
            time_index_entries: 0,
            index: IndexBuilder::new(),
            files: None,
        }
    }

    /// The directory and backend this segment's files live in.
    pub(crate) fn shared_dir(&self) -> &Path {
        &self.shared.dir
    }

    pub(crate) fn shared_io(&self) -> Arc<dyn LogIo> {
        Arc::clone(&self.shared.io)
    }

    pub(crate) fn stats(&self) -> SegmentStats {
        SegmentStats {
            size_bytes: self.size_bytes,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            base_offset_of_max_timestamp: self.base_offset_of_max_timestamp,
            offset_index_entries: self.offset_index_entries,
            time_index_entries: self.time_index_entries,
        }
    }

    /// Makes everything written to the active segment so far readable: called after an append
    /// wrote its batches and index entries, never before.
    pub(crate) fn publish(&self) {
        self.shared.publish(self.stats(), self.files.clone());
    }

    /// Seals the segment for readers (final stats, no more budgeted handles) and gives the
    /// writer's handles back to the budget; sealed segments are read through transient handles.
    pub(crate) fn seal(&mut self) {
        self.files = None;
        self.shared.seal(self.stats());
    }

    /// The segment as the writer itself reads it: with its current stats, published or not.
    pub(crate) fn read(&self) -> SegmentRead {
        SegmentRead {
            segment: Arc::clone(&self.shared),
            stats: self.stats(),
            files: self.files.clone(),
        }
    }

    pub(crate) fn append_state(&self) -> AppendState {
        AppendState {
            size_bytes: self.size_bytes,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            base_offset_of_max_timestamp: self.base_offset_of_max_timestamp,
            last_offset_of_max_timestamp: self.last_offset_of_max_timestamp,
            first_batch_timestamp: self.first_batch_timestamp,
            offset_index_entries: self.offset_index_entries,
            time_index_entries: self.time_index_entries,
            index: self.index.clone(),
        }
    }

    pub(crate) fn restore_append_state(&mut self, saved: AppendState) {
        self.size_bytes = saved.size_bytes;
        self.next_offset = saved.next_offset;
        self.max_timestamp = saved.max_timestamp;
        self.base_offset_of_max_timestamp = saved.base_offset_of_max_timestamp;
        self.last_offset_of_max_timestamp = saved.last_offset_of_max_timestamp;
        self.first_batch_timestamp = saved.first_batch_timestamp;
        self.offset_index_entries = saved.offset_index_entries;
        self.time_index_entries = saved.time_index_entries;
        self.index = saved.index;
    }

    /// Updates in-memory stats for a batch appended or found at `position`.
    pub(crate) fn note_batch(&mut self, header: &BatchHeader) {
        if self.size_bytes == 0 && self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.base_offset_of_max_timestamp = header.base_offset;
            self.last_offset_of_max_timestamp = header.last_offset();
        }
        self.next_offset = header.last_offset().saturating_add(1);
    }

    /// Accounts for one batch written (appended, recovered or cleaned) at `position` of the
    /// segment's log file: its stats (`note_batch`), the index entries it brings (Kafka's
    /// `index.interval.bytes` rule), returned for the caller to write, and the segment's size,
    /// which then ends after the batch.
    pub(crate) fn account_batch(
        &mut self,
        interval_bytes: u32,
        position: u64,
        header: &BatchHeader,
    ) -> crate::index::IndexUpdate {
        self.note_batch(header);
        let update = self.index.on_batch(
            interval_bytes,
            self.relative(header.last_offset()),
            u32::try_from(position).unwrap_or(u32::MAX),
            header.size_bytes() as u64,
            self.max_timestamp,
            self.relative(self.last_offset_of_max_timestamp),
        );
        self.size_bytes = position + header.size_bytes() as u64;
        update
    }

    /// Offset relative to the base, which the roll rule keeps within `u32`.
    pub(crate) fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX)
    }

    /// Writes one index update (active segment only).
    /// Cuts the active segment's three files back to the segment's stats (restored by
    /// `restore_append_state` after a failed append), then checks that each has exactly that
    /// length. A failed write may have left any prefix of its bytes past the old end; cutting
    /// needs no free space, so it works on a full disk, and what lies before the old end was
    /// never touched by the failed append. `Err` means the files could not be brought back.
    pub(crate) fn cut_to_stats(&self) -> Result<(), StorageError> {
        let Some(files) = self.files.as_ref() else {
            panic!("cut of inactive segment {}", self.base_offset);
        };
        let wanted = [
            (&files.log, self.size_bytes),
            (
                &files.offset_index,
                self.offset_index_entries * OFFSET_ENTRY_BYTES,
            ),
            (
                &files.time_index,
                self.time_index_entries * TIME_ENTRY_BYTES,
            ),
        ];
        for (file, size_bytes) in wanted {
            file.set_len(size_bytes)?;
            let now = file.size_bytes()?;
            if now != size_bytes {
                return Err(StorageError::Corrupt(format!(
                    "a file of segment {} is {now} bytes after being cut to {size_bytes}",
                    self.base_offset
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn write_index(
        &mut self,
        update: crate::index::IndexUpdate,
    ) -> Result<(), StorageError> {
        // Only the active segment has files; writing another's index is our bug, not the disk's.
        let Some(files) = self.files.as_ref() else {
            panic!("index write on inactive segment {}", self.base_offset);
        };
        if let Some(entry) = update.offset_entry {
            files
                .offset_index
                .write_all_at(&entry, self.offset_index_entries * OFFSET_ENTRY_BYTES)?;
            self.offset_index_entries += 1;
        }
        if let Some(entry) = update.time_entry {
            files
                .time_index
                .write_all_at(&entry, self.time_index_entries * TIME_ENTRY_BYTES)?;
            self.time_index_entries += 1;
        }
        Ok(())
    }

    /// Kafka's `onBecomeInactiveSegment`/`close`: append the segment's max timestamp to the
    /// time index so a later open finds it without scanning.
    pub(crate) fn append_final_time_entry(&mut self) -> Result<(), StorageError> {
        if self.max_timestamp < 0 {
            return Ok(());
        }
        let relative = self.relative(self.last_offset_of_max_timestamp);
        let entry = self.index.time_entry(self.max_timestamp, relative);
        self.write_index(crate::index::IndexUpdate {
            offset_entry: None,
            time_entry: entry,
        })
    }

    /// fsyncs data then indexes, each only if written since its last fsync, reopening a file
    /// the budget closed meanwhile. The caller poisons the log if this fails.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        if let Some(files) = &self.files {
            files.log.sync_data()?;
            files.offset_index.sync_data()?;
            files.time_index.sync_data()?;
        }
        Ok(())
    }
}

/// Reads and checks the header of the batch at `position` of a segment whose valid size is
/// `size_bytes`: the declared length must cover a header and stay inside the segment, so
/// nothing is ever sized from an unchecked disk length.
pub(crate) fn read_header_at(
    file: IoFile<'_>,
    position: u64,
    size_bytes: u64,
) -> Result<BatchHeader, StorageError> {
    let mut buf = [0u8; BATCH_HEADER_LEN];
    if position + BATCH_HEADER_LEN as u64 > size_bytes {
        return Err(StorageError::Corrupt(format!(
            "batch header at position {position} runs past the segment end {size_bytes}"
        )));
    }
    file.read_exact_at(&mut buf, position)?;
    let header = BatchHeader::parse(&buf)?;
    let size = header.size_bytes() as u64;
    if header.batch_length < 0 || size < BATCH_HEADER_LEN as u64 || position + size > size_bytes {
        return Err(StorageError::Corrupt(format!(
            "batch at position {position} has an impossible length {}",
            header.batch_length
        )));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves writing the index of an inactive segment (no files) is treated as our bug and
    // asserts, rather than being reported to clients as a storage error.
    #[test]
    #[should_panic(expected = "index write on inactive segment 42")]
    fn index_write_on_an_inactive_segment_asserts() {
        let dir = tempfile::tempdir().unwrap();
        let io: Arc<dyn LogIo> = Arc::new(crate::io::StdIo);
        let mut segment = Segment::empty(dir.path(), 42, &io);
        let _ = segment.write_index(crate::index::IndexUpdate {
            offset_entry: Some([0; OFFSET_ENTRY_BYTES as usize]),
            time_entry: None,
        });
    }
}
