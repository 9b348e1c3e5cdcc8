//! A fault-injecting `LogIo` for tests: fails or tears chosen writes, fails chosen fsyncs, and
//! simulates a crash (power loss) that drops every byte and every name change no successful
//! sync covered.
//!
//! # Why it is always compiled
//!
//! It is small, needs no dependency, and nothing but tests constructs it (the linker drops it
//! from the broker binary). Its users are this crate's integration tests and, later, the
//! broker's simulation tests; behind a cargo feature, each of those would have to enable it
//! through a dev-dependency, and a feature that is off in ordinary builds is also off for
//! `cargo clippy`, so the backend could quietly stop compiling against the trait it implements.
//!
//! # The model
//!
//! Files are real files in a real directory, so handles stay `std::fs::File`s that the log can
//! keep in its `FileBudget` and pin for `sendfile`; reads hit the real file, which plays the
//! page cache. Beside it this backend keeps, in memory, what a disk would hold after a crash:
//!
//! - for each file (a *node*, which is what an inode is to the kernel): its **durable** bytes,
//!   and the **pending** changes (writes, truncations) made since its last successful sync;
//! - the current **names** of the files it knows and, apart, the **durable names**: what each
//!   directory held at its last successful `sync_dir`;
//! - the **new directories**: those created through it that no `sync_dir` of their parent
//!   covered yet.
//!
//! A successful sync applies a node's pending changes to its durable bytes. A failed sync
//! *forgets* them, as Linux does when writeback fails (the pages are marked clean, the error is
//! reported once): the bytes stay readable but no later sync makes them durable. `crash` puts
//! the durable state back on disk: every durable name gets its node's durable bytes, every name
//! created since its directory's last sync disappears, and so does every new directory with all
//! it holds. A log reopened on the same backend then sees exactly what a machine would see after
//! losing power.
//!
//! A file the backend has not seen yet (it existed before, or was written behind its back) is
//! taken as durable, name and bytes, the first time the log touches it; so is a directory it did
//! not create. Never calls `fsync(2)`: durability is the model's, which also keeps tests fast.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{LogIo, OpenMode, StdIo};

/// An error the disk may answer; `errno` values shared by Linux, macOS and the BSDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl InjectedError {
    fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            InjectedError::Eio => 5,
            InjectedError::Enospc => 28,
        })
    }
}

/// The fault-injecting backend (module docs). Share it as an `Arc` between the log and the
/// test that steers it.
#[derive(Debug, Default)]
pub struct FaultyIo {
    state: Mutex<State>,
}

type NodeId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Sync,
    SetLen,
}

#[derive(Debug)]
enum Change {
    Write { position: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Node {
    /// What survives a crash: the bytes as first seen, or as of the last successful sync.
    durable: Vec<u8>,
    /// Changes since then, in order; a successful sync applies them, a failed one forgets them.
    pending: Vec<Change>,
}

impl Node {
    fn apply_pending(&mut self) {
        for change in self.pending.drain(..) {
            match change {
                Change::Write { position, bytes } => {
                    let start = to_usize(position);
                    let end = start + bytes.len();
                    if self.durable.len() < end {
                        self.durable.resize(end, 0);
                    }
                    self.durable[start..end].copy_from_slice(&bytes);
                }
                Change::SetLen(size_bytes) => self.durable.resize(to_usize(size_bytes), 0),
            }
        }
    }
}

/// A positional offset as an index into an in-memory copy; test files are small.
fn to_usize(position: u64) -> usize {
    usize::try_from(position).unwrap_or_else(|_| panic!("position {position} beyond memory"))
}

/// One armed fault: it lets `countdown` matching operations through and fails the next one.
#[derive(Debug)]
struct Rule {
    op: Op,
    /// Matches files (or, for syncs, directories) whose path ends with this; "" matches all.
    path_suffix: String,
    countdown: u64,
    error: InjectedError,
    /// Writes only: bytes of the failing write that land in the file before the error.
    landed_bytes: usize,
}

#[derive(Debug, Default)]
struct State {
    next_node: NodeId,
    nodes: HashMap<NodeId, Node>,
    /// `(device, inode)` of every handle opened through this backend, refreshed on every open so
    /// a reused inode number never points at a dead node.
    inodes: HashMap<(u64, u64), NodeId>,
    /// Where each known file is now.
    names: HashMap<PathBuf, NodeId>,
    /// Where each known file is after a crash: the names as of each directory's last sync.
    durable_names: HashMap<PathBuf, NodeId>,
    /// Directories created through `create_dir` whose parent was not synced since: a crash
    /// removes them and everything in them.
    new_dirs: HashSet<PathBuf>,
    rules: Vec<Rule>,
    writes: u64,
    syncs: u64,
}

impl State {
    fn new_node(&mut self, durable: Vec<u8>) -> NodeId {
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(
            id,
            Node {
                durable,
                pending: Vec::new(),
            },
        );
        id
    }

    /// The node at `path`, taking a file seen for the first time as durable.
    fn known(&mut self, path: &Path) -> io::Result<Option<NodeId>> {
        if let Some(&id) = self.names.get(path) {
            return Ok(Some(id));
        }
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                let id = self.new_node(fs::read(path)?);
                self.names.insert(path.to_path_buf(), id);
                self.durable_names.insert(path.to_path_buf(), id);
                Ok(Some(id))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn bind(&mut self, file: &File, id: NodeId) -> io::Result<()> {
        let meta = file.metadata()?;
        self.inodes.insert((meta.dev(), meta.ino()), id);
        Ok(())
    }

    /// The node of a handle. Every handle a log uses must come from `open` of this backend; one
    /// that did not is a hole in the seam, our bug.
    fn node_of(&self, file: &File) -> io::Result<NodeId> {
        let meta = file.metadata()?;
        let Some(&id) = self.inodes.get(&(meta.dev(), meta.ino())) else {
            panic!("a file handle that FaultyIo did not open: the I/O seam has a hole");
        };
        Ok(id)
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.entry(id).or_default()
    }

    /// The first armed rule for `op` on a file with one of `paths` that is due now; counts the
    /// operation against every other matching rule.
    fn take_fault(&mut self, op: Op, paths: &[PathBuf]) -> Option<Rule> {
        let mut due = None;
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let matches = rule.op == op
                && (rule.path_suffix.is_empty()
                    || paths.iter().any(|p| {
                        p.as_os_str()
                            .as_encoded_bytes()
                            .ends_with(rule.path_suffix.as_bytes())
                    }));
            if !matches {
                continue;
            }
            if rule.countdown == 0 && due.is_none() {
                due = Some(i);
            } else {
                rule.countdown = rule.countdown.saturating_sub(1);
            }
        }
        due.map(|i| self.rules.remove(i))
    }

    /// The current names of a node: none once removed, one in practice.
    fn paths_of(&self, id: NodeId) -> Vec<PathBuf> {
        self.names
            .iter()
            .filter(|(_, &node)| node == id)
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn sync_node(&mut self, file: &File) -> io::Result<()> {
        let id = self.node_of(file)?;
        self.syncs += 1;
        let paths = self.paths_of(id);
        if let Some(rule) = self.take_fault(Op::Sync, &paths) {
            // Writeback failed: the kernel marks the pages clean and never writes them.
            self.node(id).pending.clear();
            return Err(rule.error.to_io());
        }
        self.node(id).apply_pending();
        Ok(())
    }
}

impl FaultyIo {
    pub fn new() -> Arc<FaultyIo> {
        Arc::new(FaultyIo::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked mid-call leaves a model that is still the best account we have.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn arm(&self, rule: Rule) {
        self.state().rules.push(rule);
    }

    /// The `nth` write (1 = the next) to a file whose path ends with `path_suffix` ("" for any)
    /// fails with `error` and writes nothing.
    ///
    /// # Panics
    /// On `nth == 0`.
    pub fn fail_write(&self, nth: u64, path_suffix: &str, error: InjectedError) {
        self.tear_write(nth, path_suffix, 0, error);
    }

    /// The `nth` matching write lands only its first `landed_bytes` bytes, then fails with
    /// `error`: a torn write (a short `pwrite` followed by `ENOSPC`, or a device error midway).
    ///
    /// # Panics
    /// On `nth == 0`.
    pub fn tear_write(
        &self,
        nth: u64,
        path_suffix: &str,
        landed_bytes: usize,
        error: InjectedError,
    ) {
        assert!(nth > 0, "the first write is number 1");
        self.arm(Rule {
            op: Op::Write,
            path_suffix: path_suffix.to_owned(),
            countdown: nth - 1,
            error,
            landed_bytes,
        });
    }

    /// The `nth` sync (1 = the next: `sync_data`, `sync_all` or `sync_dir`) of a file or
    /// directory whose path ends with `path_suffix` fails with `error`, and the changes it would
    /// have made durable never will be.
    ///
    /// # Panics
    /// On `nth == 0`.
    pub fn fail_sync(&self, nth: u64, path_suffix: &str, error: InjectedError) {
        assert!(nth > 0, "the first sync is number 1");
        self.arm(Rule {
            op: Op::Sync,
            path_suffix: path_suffix.to_owned(),
            countdown: nth - 1,
            error,
            landed_bytes: 0,
        });
    }

    /// The `nth` `set_len` (1 = the next) of a file whose path ends with `path_suffix` fails
    /// with `error` and changes nothing: a log that cannot cut back a failed append.
    ///
    /// # Panics
    /// On `nth == 0`.
    pub fn fail_set_len(&self, nth: u64, path_suffix: &str, error: InjectedError) {
        assert!(nth > 0, "the first set_len is number 1");
        self.arm(Rule {
            op: Op::SetLen,
            path_suffix: path_suffix.to_owned(),
            countdown: nth - 1,
            error,
            landed_bytes: 0,
        });
    }

    /// Faults armed that have not fired yet, so a test can check that its fault happened.
    pub fn armed_faults(&self) -> usize {
        self.state().rules.len()
    }

    /// Writes seen so far (failed ones included).
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// Syncs seen so far, of files and directories (failed ones included).
    pub fn syncs(&self) -> u64 {
        self.state().syncs
    }

    /// Power loss: puts on disk exactly what the model says survives (module docs). Drop every
    /// log using this backend first; its handles would point at the world before the crash.
    /// Armed faults stay armed.
    pub fn crash(&self) -> io::Result<()> {
        let mut guard = self.state();
        let state = &mut *guard;
        let lost_dirs: Vec<PathBuf> = state.new_dirs.drain().collect();
        let in_lost_dir = |path: &Path| lost_dirs.iter().any(|dir| path.starts_with(dir));
        state.durable_names.retain(|path, _| !in_lost_dir(path));
        for path in state.names.keys() {
            if !state.durable_names.contains_key(path) {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for (path, id) in &state.durable_names {
            let bytes = state
                .nodes
                .get(id)
                .map_or(&[][..], |n| n.durable.as_slice());
            fs::write(path, bytes)?;
        }
        for dir in &lost_dirs {
            match fs::remove_dir_all(dir) {
                Ok(()) => {}
                // Inside another lost directory, removed with it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        state.names = state.durable_names.clone();
        state.inodes.clear();
        let live: std::collections::HashSet<NodeId> =
            state.durable_names.values().copied().collect();
        state.nodes.retain(|id, _| live.contains(id));
        for node in state.nodes.values_mut() {
            node.pending.clear();
        }
        Ok(())
    }
}

impl LogIo for FaultyIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let mut state = self.state();
        let known = state.known(path)?;
        let file = StdIo.open(path, mode)?;
        let id = match (mode, known) {
            (OpenMode::Truncate, Some(id)) => {
                state.node(id).pending.push(Change::SetLen(0));
                id
            }
            (_, Some(id)) => id,
            // `Read` and `ReadWrite` of a missing file failed above; this is a new file, whose
            // name is durable once its directory is synced.
            (_, None) => {
                let id = state.new_node(Vec::new());
                state.names.insert(path.to_path_buf(), id);
                id
            }
        };
        state.bind(&file, id)?;
        Ok(file)
    }

    fn read_exact_at(&self, file: &File, buf: &mut [u8], position: u64) -> io::Result<()> {
        file.read_exact_at(buf, position)
    }

    fn write_all_at(&self, file: &File, buf: &[u8], position: u64) -> io::Result<()> {
        let mut state = self.state();
        let id = state.node_of(file)?;
        state.writes += 1;
        let paths = state.paths_of(id);
        let (landed, error) = match state.take_fault(Op::Write, &paths) {
            Some(rule) => (rule.landed_bytes.min(buf.len()), Some(rule.error)),
            None => (buf.len(), None),
        };
        let bytes = &buf[..landed];
        if !bytes.is_empty() {
            file.write_all_at(bytes, position)?;
            state.node(id).pending.push(Change::Write {
                position,
                bytes: bytes.to_vec(),
            });
        }
        match error {
            Some(error) => Err(error.to_io()),
            None => Ok(()),
        }
    }

    fn size_bytes(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }

    fn set_len(&self, file: &File, size_bytes: u64) -> io::Result<()> {
        let mut state = self.state();
        let id = state.node_of(file)?;
        let paths = state.paths_of(id);
        if let Some(rule) = state.take_fault(Op::SetLen, &paths) {
            return Err(rule.error.to_io());
        }
        file.set_len(size_bytes)?;
        state.node(id).pending.push(Change::SetLen(size_bytes));
        Ok(())
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.state().sync_node(file)
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.state().sync_node(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let from_id = state.known(from)?;
        // Seen before it is replaced, so a crash can bring the old file back.
        state.known(to)?;
        fs::rename(from, to)?;
        state.names.remove(from);
        if let Some(id) = from_id {
            state.names.insert(to.to_path_buf(), id);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.known(path)?;
        fs::remove_file(path)?;
        state.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.syncs += 1;
        if let Some(rule) = state.take_fault(Op::Sync, &[dir.to_path_buf()]) {
            return Err(rule.error.to_io());
        }
        let in_dir = |path: &Path| path.parent() == Some(dir);
        state.new_dirs.retain(|path| !in_dir(path));
        state.durable_names.retain(|path, _| !in_dir(path));
        let now: Vec<(PathBuf, NodeId)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, &id)| (path.clone(), id))
            .collect();
        state.durable_names.extend(now);
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        fs::create_dir(dir)?;
        state.new_dirs.insert(dir.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).unwrap_or_default()
    }

    #[test]
    fn crash_keeps_synced_bytes_and_names_only() {
        // Bytes survive only up to their file's last successful sync, names only up to their directory's.
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let fa = io.open(&a, OpenMode::Create).unwrap();
        io.write_all_at(&fa, b"durable", 0).unwrap();
        io.sync_data(&fa).unwrap();
        io.sync_dir(dir.path()).unwrap();
        io.write_all_at(&fa, b"-lost", 7).unwrap();
        let fb = io.open(&b, OpenMode::Create).unwrap();
        io.write_all_at(&fb, b"synced, never named", 0).unwrap();
        io.sync_data(&fb).unwrap();
        assert_eq!(read(&a), b"durable-lost");
        drop((fa, fb));
        io.crash().unwrap();
        assert_eq!(read(&a), b"durable");
        assert!(!b.exists(), "b's name was never synced");
    }

    #[test]
    fn a_failed_sync_forgets_its_writes_for_good() {
        // After a failed fsync, a later successful one does not make the earlier writes durable.
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let path = dir.path().join("f");
        let file = io.open(&path, OpenMode::Create).unwrap();
        io.sync_dir(dir.path()).unwrap();
        io.write_all_at(&file, b"first", 0).unwrap();
        io.fail_sync(1, "/f", InjectedError::Eio);
        assert_eq!(io.sync_data(&file).unwrap_err().raw_os_error(), Some(5));
        io.write_all_at(&file, b"second", 5).unwrap();
        io.sync_data(&file).unwrap();
        assert_eq!(read(&path), b"firstsecond", "the page cache still has both");
        drop(file);
        io.crash().unwrap();
        assert_eq!(read(&path), b"\0\0\0\0\0second");
    }

    #[test]
    fn writes_fail_or_tear_on_the_chosen_file_and_count() {
        // A torn write lands its prefix then errs; only matching files count towards `nth`.
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let log = io
            .open(&dir.path().join("0.log"), OpenMode::Create)
            .unwrap();
        let index = io
            .open(&dir.path().join("0.index"), OpenMode::Create)
            .unwrap();
        io.tear_write(2, ".log", 3, InjectedError::Enospc);
        io.write_all_at(&log, b"one", 0).unwrap();
        io.write_all_at(&index, b"idx", 0).unwrap();
        let err = io.write_all_at(&log, b"torn!", 3).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(read(&dir.path().join("0.log")), b"onetor");
        assert_eq!((io.writes(), io.armed_faults()), (3, 0));
    }

    #[test]
    fn a_new_directory_survives_a_crash_only_once_its_parent_is_synced() {
        // A directory never named durably in its parent is lost in a crash, synced files and all.
        let root = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let dir = root.path().join("d");
        let path = dir.join("f");
        for sync_parent in [false, true] {
            io.create_dir(&dir).unwrap();
            let file = io.open(&path, OpenMode::Create).unwrap();
            io.write_all_at(&file, b"synced", 0).unwrap();
            io.sync_data(&file).unwrap();
            io.sync_dir(&dir).unwrap();
            if sync_parent {
                io.sync_dir(root.path()).unwrap();
            }
            drop(file);
            io.crash().unwrap();
            assert_eq!(dir.exists(), sync_parent);
            assert_eq!(read(&path), if sync_parent { &b"synced"[..] } else { b"" });
        }
    }

    #[test]
    fn a_replaced_file_comes_back_when_the_rename_was_not_synced() {
        // tmp + rename without a directory fsync: a crash restores the old file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        fs::write(&path, b"old").unwrap();
        let io = FaultyIo::new();
        let tmp = dir.path().join("checkpoint.tmp");
        let file = io.open(&tmp, OpenMode::Truncate).unwrap();
        io.write_all_at(&file, b"new", 0).unwrap();
        io.sync_data(&file).unwrap();
        io.rename(&tmp, &path).unwrap();
        assert_eq!(read(&path), b"new");
        drop(file);
        io.crash().unwrap();
        assert_eq!(read(&path), b"old");
        assert!(!tmp.exists());
    }
}
