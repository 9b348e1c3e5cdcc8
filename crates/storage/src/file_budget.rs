//! A process-wide budget of open segment files, shared by every `PartitionLog` of a process, so
//! that many thousands of partitions do not exhaust file descriptors.
//!
//! # What is budgeted
//!
//! Only the active segment of a partition writes, so only its three files (`.log`, `.index`,
//! `.timeindex`) are worth keeping open between calls. Each is a *slot* (`BudgetedFile`): a path,
//! an `Option<File>` and a `sync_pending` flag. A slot opens its file on first use (append, read
//! or flush) and the budget may close it again at any time. Positions live in memory (`Segment`)
//! and every access is a positional read or write (`pread`/`pwrite`), so a reopened handle needs
//! no seek and closing one loses nothing. Nothing is memory-mapped: index lookups are positional
//! reads too, so there are no mappings to budget.
//!
//! Inactive segments are read through *transient* handles: opened and closed within one call,
//! never kept, and counted (`FileBudgetStats::transient_files`) but not evicted.
//!
//! # Locking
//!
//! - A slot is an `Arc<Mutex<SlotState>>`. Its segment holds one `Arc`; the budget's LRU holds
//!   another for every slot whose file is open. A user of a slot locks it for the whole I/O call,
//!   so a handle is never closed under a `pread`/`pwrite`.
//! - Opening a file first makes room: under the LRU lock the least recently used slots are
//!   closed until one more fits. The evictor only `try_lock`s a victim slot and skips it when it
//!   is busy; it never waits for a slot while it holds the LRU lock.
//! - Lock order is therefore *own slot -> LRU -> (try) other slot*. No thread ever blocks on a
//!   slot while holding the LRU lock, so there is no cycle and no deadlock, and eviction never
//!   needs the partition's mutex (the broker's per-partition lock is not involved at all).
//! - Readers of a log hold a slot only to clone its handle (`BudgetedFile::pin`) and do their
//!   I/O on the clone, so only the writer's own writes and fsyncs hold a slot across a system
//!   call, and a reader never makes the writer wait.
//! - A thread holds at most one slot at a time (segment code never nests slot uses), so at most
//!   `threads - 1` other slots are busy when one is admitted, and the LRU holds at most
//!   `max(max_open_files, threads doing log I/O at once)` slots. Busy slots that could not be
//!   closed are closed by a later admission.
//! - Victim handles are closed after the LRU lock is released, so `close(2)` does not serialise
//!   other partitions; the process's descriptors can exceed the LRU's count by the closes in
//!   flight at that instant (none with one thread).
//!
//! # Durability across a close
//!
//! Closing a handle never fsyncs. A write sets the slot's `sync_pending` flag, which survives an
//! eviction; `flush` reopens every slot that still has the flag and fsyncs it. This is the
//! cheaper of the two correct choices: fsync-on-evict would put a synchronous disk flush on the
//! append path of whichever partition happened to trigger the eviction (with more partitions
//! than budget, nearly every append), while reopen-on-flush costs one `open(2)` on a flush that
//! was going to fsync anyway. It is correct because on Linux `fsync` writes back the *inode's*
//! dirty pages whichever descriptor wrote them, and since Linux 4.16 a writeback error nobody
//! has seen yet is reported to the next `fsync` even on a descriptor opened after the error. A
//! close without fsync loses nothing on a process crash (the page cache survives); only power
//! loss can, and `flush` has fsynced everything appended when it returns. The one gap is an
//! inode evicted from the kernel's cache after a failed writeback, which takes its error with it;
//! PostgreSQL's checkpointer, which also fsyncs through descriptors it reopened, lives with the
//! same gap. (The leader-epoch checkpoint already relies on this: `EpochCache::sync` reopens.)

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use crate::io::{LogIo, OpenMode};

/// Budget of the process default (`FileBudget::process_default`), before clamping to half of the
/// descriptor limit.
///
/// Why 4096: an active segment needs three files, so 4096 keeps about 1,365 partitions' active
/// segments fully open, more than the partitions that are hot at once on a typical broker (Kafka
/// guides to about 4,000 partitions per broker, most of them idle). Past that, handles cycle
/// through the LRU at the price of one `open(2)` per miss, a few microseconds next to a produce
/// round trip. It stays well under the common limits of 20,000 and 65,536 descriptors, leaving
/// the rest for client sockets, transient reads of inactive segments and checkpoints. Under a
/// lower limit (1,024 is still a common soft default) the process default takes half the limit.
pub const DEFAULT_MAX_OPEN_FILES: usize = 4096;

/// Floor of the process default when the descriptor limit is tiny: one active segment's files.
const DEFAULT_MAX_OPEN_FILES_FLOOR: usize = 3;

/// A shared cap on the active-segment files open in a process, closing the least recently used
/// ones (of any partition) to open another. See the module docs for the locking design.
pub struct FileBudget {
    /// Most slots open at once, unless more threads than that are inside slots (module docs).
    max_open_files: usize,
    /// Open slots by recency of use.
    lru: Mutex<Lru>,
    /// Source of slot ids, unique within this budget.
    next_slot_id: AtomicU64,
    /// Handles of inactive segments open right now (each lives within one call).
    transient_files: AtomicUsize,
    /// High-water marks, for tests and metrics.
    open_files_peak: AtomicUsize,
    transient_files_peak: AtomicUsize,
    /// Handles closed to make room for another.
    evictions: AtomicU64,
    /// Handles held by fetch responses on their way to a socket (`PinnedFile`).
    pinned_files: AtomicUsize,
    pinned_files_peak: AtomicUsize,
}

/// A snapshot of a budget's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBudgetStats {
    /// Budget this snapshot belongs to.
    pub max_open_files: usize,
    /// Active-segment files open (or being opened) now.
    pub open_files: usize,
    /// Most `open_files` ever seen at once.
    pub open_files_peak: usize,
    /// Transient handles of inactive segments open now.
    pub transient_files: usize,
    /// Most `transient_files` ever seen at once.
    pub transient_files_peak: usize,
    /// Handles closed by the budget to make room for another.
    pub evictions: u64,
    /// Handles pinned by fetch responses being sent now (`PinnedFile`).
    pub pinned_files: usize,
    /// Most `pinned_files` ever seen at once.
    pub pinned_files_peak: usize,
}

type Slot = Mutex<SlotState>;

#[derive(Debug)]
struct SlotState {
    /// `Some` while the file is open; then the slot is also in the budget's LRU. An `Arc` so a
    /// fetch can pin the handle past an eviction (`PinnedFile`).
    file: Option<Arc<File>>,
    /// Written since the last fsync. Survives a close, so `flush` reopens and fsyncs the file.
    sync_pending: bool,
}

#[derive(Default)]
struct Lru {
    /// Bumped on every use; the keys of `by_use`.
    clock: u64,
    /// Open slots (and slots being opened) by id: their last-use tick, and the slot itself so
    /// eviction can close the file without going through its owner.
    open: HashMap<u64, (u64, Arc<Slot>)>,
    /// Tick of last use -> slot id; the first entry is the next eviction candidate.
    by_use: BTreeMap<u64, u64>,
}

impl Lru {
    fn touch(&mut self, id: u64) {
        self.clock += 1;
        let clock = self.clock;
        if let Some((tick, _)) = self.open.get_mut(&id) {
            self.by_use.remove(tick);
            *tick = clock;
            self.by_use.insert(clock, id);
        }
    }

    fn insert(&mut self, id: u64, slot: &Arc<Slot>) {
        self.clock += 1;
        self.by_use.insert(self.clock, id);
        self.open.insert(id, (self.clock, Arc::clone(slot)));
    }

    fn remove(&mut self, id: u64) {
        if let Some((tick, _)) = self.open.remove(&id) {
            self.by_use.remove(&tick);
        }
    }
}

/// A panic in the middle of an I/O call leaves a plain handle and a flag behind, both still
/// meaningful (the flag is set before writing), so a poisoned slot or LRU is used as is.
fn lock_slot(slot: &Slot) -> MutexGuard<'_, SlotState> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FileBudget {
    /// A budget of at most `max_open_files` active-segment files.
    ///
    /// # Panics
    /// On 0, which could never open anything: a caller's bug, not an input.
    pub fn new(max_open_files: usize) -> Arc<FileBudget> {
        assert!(max_open_files > 0, "a file budget must allow one open file");
        Arc::new(FileBudget {
            max_open_files,
            lru: Mutex::new(Lru::default()),
            next_slot_id: AtomicU64::new(0),
            transient_files: AtomicUsize::new(0),
            open_files_peak: AtomicUsize::new(0),
            transient_files_peak: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            pinned_files: AtomicUsize::new(0),
            pinned_files_peak: AtomicUsize::new(0),
        })
    }

    /// The budget `PartitionLog::open` uses, created on first use: `DEFAULT_MAX_OPEN_FILES`, or
    /// half of the process's soft descriptor limit when that is lower.
    pub fn process_default() -> Arc<FileBudget> {
        static DEFAULT: OnceLock<Arc<FileBudget>> = OnceLock::new();
        Arc::clone(DEFAULT.get_or_init(|| FileBudget::new(default_max_open_files())))
    }

    pub fn max_open_files(&self) -> usize {
        self.max_open_files
    }

    #[must_use]
    pub fn stats(&self) -> FileBudgetStats {
        FileBudgetStats {
            max_open_files: self.max_open_files,
            open_files: self.lru().open.len(),
            open_files_peak: self.open_files_peak.load(Ordering::Relaxed),
            transient_files: self.transient_files.load(Ordering::Relaxed),
            transient_files_peak: self.transient_files_peak.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            pinned_files: self.pinned_files.load(Ordering::Relaxed),
            pinned_files_peak: self.pinned_files_peak.load(Ordering::Relaxed),
        }
    }

    fn lru(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes room for one more file and enters slot `id` as most recently used. The caller
    /// holds `slot` locked and opens the file next; a busy slot is never closed, so `id` itself
    /// cannot be evicted while it is being opened.
    fn admit(&self, id: u64, slot: &Arc<Slot>) {
        let mut closed = Vec::new();
        {
            let mut lru = self.lru();
            let excess = (lru.open.len() + 1).saturating_sub(self.max_open_files);
            let mut victims = Vec::new();
            for (&tick, victim) in &lru.by_use {
                if victims.len() >= excess {
                    break;
                }
                let Some((_, other)) = lru.open.get(victim) else {
                    continue;
                };
                let mut state = match other.try_lock() {
                    Ok(state) => state,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    // In use right now: never close a file under its user.
                    Err(TryLockError::WouldBlock) => continue,
                };
                closed.extend(state.file.take());
                victims.push((tick, *victim));
            }
            for (tick, victim) in victims {
                lru.by_use.remove(&tick);
                lru.open.remove(&victim);
            }
            lru.insert(id, slot);
            self.open_files_peak
                .fetch_max(lru.open.len(), Ordering::Relaxed);
        }
        self.evictions
            .fetch_add(closed.len() as u64, Ordering::Relaxed);
        // `close(2)` of the victims happens here, outside the LRU lock.
        drop(closed);
    }

    fn touch(&self, id: u64) {
        self.lru().touch(id);
    }

    fn forget(&self, id: u64) {
        self.lru().remove(id);
    }

    /// Opens a handle through `io` that the caller drops before its call returns (inactive
    /// segments, file creation), counted in `transient_files`.
    pub(crate) fn open_transient(
        &self,
        io: &dyn LogIo,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<TransientFile<'_>> {
        let file = io.open(path, mode)?;
        let now = self.transient_files.fetch_add(1, Ordering::Relaxed) + 1;
        self.transient_files_peak.fetch_max(now, Ordering::Relaxed);
        Ok(TransientFile { file, budget: self })
    }

    /// Opens a read-only handle that outlives the call (an inactive segment's file for a fetch
    /// response), counted in `pinned_files` until dropped.
    pub(crate) fn pin_new(self: &Arc<Self>, io: &dyn LogIo, path: &Path) -> io::Result<PinnedFile> {
        let file = io.open(path, OpenMode::Read)?;
        Ok(self.pin(Arc::new(file)))
    }

    fn pin(self: &Arc<Self>, file: Arc<File>) -> PinnedFile {
        let now = self.pinned_files.fetch_add(1, Ordering::Relaxed) + 1;
        self.pinned_files_peak.fetch_max(now, Ordering::Relaxed);
        PinnedFile {
            file,
            budget: Arc::clone(self),
        }
    }
}

/// A segment file held open past the budget's control: by a fetch response until its bytes are
/// on the socket (the broker sends them with `sendfile`), by a reader for the length of one
/// read of the active segment, or by a deleted segment for the snapshots that still list it
/// (`segment`). It shares the handle of an open active segment; an eviction meanwhile drops only
/// the budget's reference, so the descriptor closes when the pin is dropped. Pins are counted
/// apart from the budget (`FileBudgetStats::pinned_files`): there is at most one response in
/// flight per connection and one read per thread, so they are bounded by the connections and
/// threads, and retired segments by the snapshots alive when they were deleted.
pub struct PinnedFile {
    file: Arc<File>,
    budget: Arc<FileBudget>,
}

impl PinnedFile {
    /// Another pin of the same handle, counted on its own.
    pub(crate) fn share(&self) -> PinnedFile {
        self.budget.pin(Arc::clone(&self.file))
    }
}

impl Deref for PinnedFile {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

impl Drop for PinnedFile {
    fn drop(&mut self) {
        self.budget.pinned_files.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for PinnedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PinnedFile").field(&self.file).finish()
    }
}

impl fmt::Debug for FileBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FileBudget").field(&self.stats()).finish()
    }
}

/// `DEFAULT_MAX_OPEN_FILES`, clamped to half the soft `RLIMIT_NOFILE` when that is known.
fn default_max_open_files() -> usize {
    let soft_limit = fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| soft_open_files_limit(&limits));
    match soft_limit {
        Some(limit) => DEFAULT_MAX_OPEN_FILES
            .min(limit / 2)
            .max(DEFAULT_MAX_OPEN_FILES_FLOOR),
        None => DEFAULT_MAX_OPEN_FILES,
    }
}

/// The soft limit from Linux's `/proc/self/limits` line `Max open files  <soft>  <hard>  files`;
/// `None` for "unlimited" or an unexpected format.
fn soft_open_files_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A handle open only within one call, counted by its budget until dropped.
pub(crate) struct TransientFile<'a> {
    file: File,
    budget: &'a FileBudget,
}

impl Deref for TransientFile<'_> {
    type Target = File;

    fn deref(&self) -> &File {
        &self.file
    }
}

impl Drop for TransientFile<'_> {
    fn drop(&mut self) {
        self.budget.transient_files.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One file of an active segment under a `FileBudget`: opened on first use, closable by the
/// budget at any time between uses (module docs).
pub(crate) struct BudgetedFile {
    budget: Arc<FileBudget>,
    /// Opens, writes and fsyncs the file (the log's backend, see `io`).
    io: Arc<dyn LogIo>,
    /// Key of this slot in the budget's LRU.
    id: u64,
    path: PathBuf,
    slot: Arc<Slot>,
}

impl BudgetedFile {
    /// Names a file without opening it. `sync_pending` says whether it may hold data that was
    /// never fsynced (for instance written by recovery or by a process that crashed).
    pub(crate) fn new(
        budget: &Arc<FileBudget>,
        io: &Arc<dyn LogIo>,
        path: PathBuf,
        sync_pending: bool,
    ) -> BudgetedFile {
        BudgetedFile {
            budget: Arc::clone(budget),
            io: Arc::clone(io),
            id: budget.next_slot_id.fetch_add(1, Ordering::Relaxed),
            path,
            slot: Arc::new(Mutex::new(SlotState {
                file: None,
                sync_pending,
            })),
        }
    }

    /// Runs `f` on the open file (opening it if needed) with the slot locked throughout.
    /// Opens read-write without `create`: the file was created with its segment, and a file
    /// deleted under us must fail rather than come back empty with a hole at our position.
    fn use_file<R, E: From<io::Error>>(
        &self,
        f: impl FnOnce(&Arc<File>, &mut bool) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut state = lock_slot(&self.slot);
        if state.file.is_none() {
            self.budget.admit(self.id, &self.slot);
            match self.io.open(&self.path, OpenMode::ReadWrite) {
                Ok(file) => state.file = Some(Arc::new(file)),
                Err(e) => {
                    self.budget.forget(self.id);
                    return Err(e.into());
                }
            }
        } else {
            self.budget.touch(self.id);
        }
        let SlotState {
            file: Some(file),
            sync_pending,
        } = &mut *state
        else {
            unreachable!("the slot was opened above and is locked");
        };
        f(file, sync_pending)
    }

    /// Runs `f` with the file for positional reads, the slot held throughout. Readers of a
    /// log pin the handle instead (`pin`), so the writer never waits for their I/O.
    #[cfg(test)]
    pub(crate) fn read_with<R>(
        &self,
        f: impl FnOnce(crate::io::IoFile<'_>) -> Result<R, crate::StorageError>,
    ) -> Result<R, crate::StorageError> {
        self.use_file(|file, _| f(crate::io::IoFile::new(&*self.io, file)))
    }

    /// The open handle, pinned past any later eviction (see `PinnedFile`).
    pub(crate) fn pin(&self) -> io::Result<PinnedFile> {
        self.use_file(|file, _| Ok(self.budget.pin(Arc::clone(file))))
    }

    /// Positional write; marks the file as needing fsync before any byte is written.
    pub(crate) fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.use_file(|file, sync_pending| {
            *sync_pending = true;
            self.io.write_all_at(file, buf, position)
        })
    }

    /// Cuts (or extends) the file to `size_bytes`; marks it as needing fsync first.
    pub(crate) fn set_len(&self, size_bytes: u64) -> io::Result<()> {
        self.use_file(|file, sync_pending| {
            *sync_pending = true;
            self.io.set_len(file, size_bytes)
        })
    }

    /// The file's length, durable or not.
    pub(crate) fn size_bytes(&self) -> io::Result<u64> {
        self.use_file(|file, _| self.io.size_bytes(file))
    }

    /// fsyncs the file if anything was written since the last fsync, reopening it when the
    /// budget closed it meanwhile. The flag stays set when the fsync fails.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        if !lock_slot(&self.slot).sync_pending {
            // Only the owner sets the flag and the owner is here, so it cannot change now.
            return Ok(());
        }
        self.use_file(|file, sync_pending| {
            self.io.sync_data(file)?;
            *sync_pending = false;
            Ok(())
        })
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        lock_slot(&self.slot).file.is_some()
    }

    #[cfg(test)]
    fn is_sync_pending(&self) -> bool {
        lock_slot(&self.slot).sync_pending
    }
}

impl Drop for BudgetedFile {
    fn drop(&mut self) {
        // Dropping the LRU's `Arc` here and ours right after closes the file.
        self.budget.forget(self.id);
    }
}

impl fmt::Debug for BudgetedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetedFile")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("slot", &*lock_slot(&self.slot))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    fn std_io() -> Arc<dyn LogIo> {
        Arc::new(StdIo)
    }

    fn files(budget: &Arc<FileBudget>, dir: &Path, count: usize) -> Vec<BudgetedFile> {
        (0..count)
            .map(|i| {
                let path = dir.join(format!("f{i}"));
                File::create(&path).unwrap();
                BudgetedFile::new(budget, &std_io(), path, false)
            })
            .collect()
    }

    #[test]
    fn least_recently_used_files_are_closed_and_reopened_with_their_bytes() {
        // Opening past the budget closes the least recently used slot; a closed slot reopens on use and keeps its data.
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(2);
        let f = files(&budget, dir.path(), 3);
        f[0].write_all_at(b"zero", 0).unwrap();
        f[1].write_all_at(b"one", 0).unwrap();
        f[0].write_all_at(b"!", 4).unwrap(); // f[0] is now the most recent
        f[2].write_all_at(b"two", 0).unwrap();
        assert!(f[0].is_open() && !f[1].is_open() && f[2].is_open());
        assert_eq!(budget.stats().open_files, 2);
        let mut buf = [0u8; 3];
        f[1].read_with(|file| Ok(file.read_exact_at(&mut buf, 0)?))
            .unwrap();
        assert_eq!(&buf, b"one");
        assert!(!f[0].is_open(), "f[0] was least recent when f[1] reopened");
        assert_eq!(budget.stats().open_files_peak, 2);
        assert_eq!(budget.stats().evictions, 2);
    }

    #[test]
    fn sync_pending_survives_eviction_and_flush_reopens_to_fsync() {
        // A write marks the slot; eviction keeps the mark; sync_data reopens, fsyncs and clears it; a clean slot is not reopened.
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(1);
        let f = files(&budget, dir.path(), 2);
        f[0].write_all_at(b"data", 0).unwrap();
        f[1].read_with(|_| Ok(())).unwrap();
        assert!(!f[0].is_open() && f[0].is_sync_pending());
        f[0].sync_data().unwrap();
        assert!(f[0].is_open() && !f[0].is_sync_pending());
        f[1].read_with(|_| Ok(())).unwrap();
        f[0].sync_data().unwrap();
        assert!(!f[0].is_open(), "nothing to fsync, so no reopen");
    }

    #[test]
    fn a_file_in_use_is_never_closed_under_its_user() {
        // Eviction skips a busy slot (overshooting the budget) instead of closing it or waiting for it.
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(1);
        let f = files(&budget, dir.path(), 3);
        f[0].read_with(|outer| {
            f[1].write_all_at(b"x", 0)?;
            assert_eq!(budget.stats().open_files, 2);
            outer.io.write_all_at(outer.file, b"y", 0)?;
            Ok(())
        })
        .unwrap();
        assert!(f[0].is_open() && f[1].is_open());
        f[2].read_with(|_| Ok(())).unwrap();
        assert!(
            !f[0].is_open() && !f[1].is_open(),
            "the next open pays the overshoot back"
        );
        assert_eq!(budget.stats().open_files, 1);
    }

    #[test]
    fn dropping_a_slot_gives_its_place_back_and_missing_files_are_not_recreated() {
        // A dropped slot leaves the LRU; a deleted file fails to open instead of being recreated.
        let dir = tempfile::tempdir().unwrap();
        let budget = FileBudget::new(4);
        let mut f = files(&budget, dir.path(), 2);
        f[0].read_with(|_| Ok(())).unwrap();
        f[1].read_with(|_| Ok(())).unwrap();
        f.pop();
        assert_eq!(budget.stats().open_files, 1);
        let ghost = BudgetedFile::new(&budget, &std_io(), dir.path().join("missing"), false);
        assert!(ghost.write_all_at(b"x", 0).is_err());
        assert!(!dir.path().join("missing").exists());
        assert_eq!(budget.stats().open_files, 1);
    }

    #[test]
    fn soft_limit_is_parsed_from_proc_limits() {
        // The process default reads the soft descriptor limit and ignores "unlimited".
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1024));
        assert_eq!(
            soft_open_files_limit("Max open files  unlimited  unlimited  files\n"),
            None
        );
        assert_eq!(soft_open_files_limit(""), None);
        assert!(default_max_open_files() <= DEFAULT_MAX_OPEN_FILES);
    }
}
