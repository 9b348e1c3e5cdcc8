//! The seam between a partition log and the file system: every open, read, write, truncate,
//! fsync, rename and removal of a segment, index, checkpoint or marker file goes through a
//! `LogIo`, so tests can put a fault-injecting backend (`faulty::FaultyIo`) under a real
//! `PartitionLog`.
//!
//! Handles stay plain `std::fs::File`s: a fetch response sends a segment's bytes with
//! `sendfile(2)`, which needs a real descriptor, and the `FileBudget` keeps handles open across
//! calls. A backend therefore decides what a handle's operations do, not what a handle is.
//!
//! Creating the partition directory goes through it too: a new directory's name is lost in a
//! crash like a new file's, until its parent is fsynced.
//!
//! The helpers below (`replace_file`, `create_dir_all`, `read_whole_file`) are public so that the
//! broker's own small durable files (the metadata log and its snapshots) go through the same
//! seam and the same fault tests.
//!
//! Not behind the seam, because none of them changes a file's bytes or its name: listing the
//! partition directory, asking whether the clean-shutdown marker or a directory exists, and
//! `FileSlice::read_to_bytes` on a handle already pinned for a response. Renaming a whole
//! partition directory for deletion (`rename_for_delete`) is a broker-level operation on a
//! directory no log owns any more, and stays on `std::fs` too.

pub mod faulty;
mod std_io;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub use std_io::StdIo;

/// How `LogIo::open` opens a file. Every mode but `Read` opens for reading and writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// The file must exist: a segment file deleted under us must fail rather than come back
    /// empty with a hole at our write position.
    ReadWrite,
    /// Created empty when missing, kept as it is when present.
    Create,
    /// Created when missing, emptied when present.
    Truncate,
}

/// File operations of one partition log.
///
/// # Correctness
///
/// An implementor guarantees, for the files and directories a log hands it:
///
/// - **Reads see writes.** `read_exact_at` returns the bytes of the latest successful
///   `write_all_at`/`set_len` on the same file through any handle, durable or not (it reads the
///   page cache, as `pread` does). A read past the end fails with `UnexpectedEof`.
/// - **Failures are reported.** An operation that returns `Ok` did all of its work. One that
///   returns `Err` may have done part of it: a failed `write_all_at` may have left any prefix of
///   its bytes in the file (a torn write). The log never assumes more than the `Ok`s told it.
/// - **`sync_data` and `sync_all` are barriers.** After `Ok`, every byte written to the file and
///   its length as of the call survive a crash (power loss included). After `Err`, nothing
///   written since the last successful sync is known to survive, and a later `Ok` does *not*
///   make it so: Linux may have dropped those dirty pages and forgotten the error, which is why
///   the log poisons itself on a failed sync instead of retrying.
/// - **Names become durable with their directory.** A file or directory created, renamed or
///   removed in a directory survives a crash under its new name (or stays removed) only once
///   `sync_dir` of that directory returned `Ok`; before that a crash may undo it, and a
///   directory lost so takes everything in it along. A file's bytes and its name are made
///   durable separately: a log that creates a file and fsyncs its data must also fsync the
///   directory.
/// - **Positions are absolute.** Writes are positional (`pwrite`): no handle has a cursor, so a
///   handle closed and reopened between two calls behaves as the same handle.
///
/// Implementations are shared by every thread of a log (`Send + Sync`). A log holds its backend
/// as an `Arc<dyn LogIo>`: one indirect call per system call, and no type parameter threaded
/// through every storage type and the broker.
pub trait LogIo: fmt::Debug + Send + Sync {
    /// Opens `path` in `mode`. Creating a file does not make its name durable (`sync_dir`).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File>;

    /// Fills `buf` from `position` (`pread`), or fails.
    fn read_exact_at(&self, file: &File, buf: &mut [u8], position: u64) -> io::Result<()>;

    /// Writes all of `buf` at `position` (`pwrite`), or fails having written any prefix of it.
    fn write_all_at(&self, file: &File, buf: &[u8], position: u64) -> io::Result<()>;

    /// The file's length in bytes, durable or not.
    fn size_bytes(&self, file: &File) -> io::Result<u64>;

    /// Cuts or extends (with zeros) the file to `size_bytes`; durable after the next sync.
    fn set_len(&self, file: &File, size_bytes: u64) -> io::Result<()>;

    /// `fdatasync`: the file's bytes and length, not its other metadata.
    fn sync_data(&self, file: &File) -> io::Result<()>;

    /// `fsync`: as `sync_data`, plus the rest of the inode's metadata.
    fn sync_all(&self, file: &File) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` if it exists; durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`; durable after `sync_dir`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// fsyncs the directory `dir`, making the names created, renamed or removed in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Creates the directory `dir`, whose parent must exist; durable after `sync_dir` of the
    /// parent. Fails with `AlreadyExists` if something is there already.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;

    /// When the file at `path` was last written, in milliseconds since the epoch: Kafka's
    /// `lastModified`, which time retention falls back to for a segment without timestamps.
    /// Reads metadata only, so the default serves every backend.
    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        let modified = std::fs::metadata(path)?.modified()?;
        let since_epoch = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A handle together with the backend that opened it, so the read paths call `read_exact_at`
/// on it as they would on `FileExt`. Two references, copied freely.
#[derive(Clone, Copy)]
pub(crate) struct IoFile<'a> {
    pub(crate) io: &'a dyn LogIo,
    pub(crate) file: &'a File,
}

impl<'a> IoFile<'a> {
    pub(crate) fn new(io: &'a dyn LogIo, file: &'a File) -> IoFile<'a> {
        IoFile { io, file }
    }

    pub(crate) fn read_exact_at(&self, buf: &mut [u8], position: u64) -> io::Result<()> {
        self.io.read_exact_at(self.file, buf, position)
    }
}

/// What `read_whole_file` found.
pub enum WholeFile {
    Missing,
    /// Longer than the caller's limit; nothing was read.
    TooLarge,
    Bytes(Vec<u8>),
}

/// Reads a small file (a checkpoint or `partition.metadata`) whole, refusing to size a buffer
/// from a length above `size_bytes_max`.
pub fn read_whole_file(io: &dyn LogIo, path: &Path, size_bytes_max: u64) -> io::Result<WholeFile> {
    let file = match io.open(path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(WholeFile::Missing),
        Err(e) => return Err(e),
    };
    let size_bytes = io.size_bytes(&file)?;
    if size_bytes > size_bytes_max {
        return Ok(WholeFile::TooLarge);
    }
    // Bounded by `size_bytes_max` just above.
    let mut bytes = vec![0u8; usize::try_from(size_bytes).unwrap_or(0)];
    io.read_exact_at(&file, &mut bytes, 0)?;
    Ok(WholeFile::Bytes(bytes))
}

/// Removes `path` if it exists; returns whether it did.
pub fn remove_if_present(io: &dyn LogIo, path: &Path) -> io::Result<bool> {
    match io.remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Where `replace_file` writes the new contents of `path` before renaming them into place:
/// `<name>.tmp`, as Kafka's checkpoint and `partition.metadata` files do.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Replaces the file at `path` with one holding `bytes`, atomically and durably: written to
/// `temp_path(path)` and fsynced, renamed into place, and the directory fsynced. The bytes are
/// on disk before the name points at them, so a crash leaves the old file or the new one under
/// `path`, never an empty or torn one; the name is on disk before this returns `Ok`, so the new
/// one survives a crash from then on. A crash may leave the temporary file behind, and so does
/// a failure; the log removes it at open.
pub fn replace_file(io: &dyn LogIo, path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace_file_unsynced_name(io, path, bytes)?;
    io.sync_dir(parent_dir(path))
}

/// `replace_file` without the directory fsync, for a caller that replaces several files of
/// one directory and fsyncs it once after the last: until then a crash may leave any of them
/// old, never torn.
pub fn replace_file_unsynced_name(io: &dyn LogIo, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let file = io.open(&tmp, OpenMode::Truncate)?;
    io.write_all_at(&file, bytes, 0)?;
    io.sync_all(&file)?;
    drop(file);
    io.rename(&tmp, path)
}

/// Creates `dir` and its missing ancestors through `io`, fsyncing the parent of each directory
/// created, so that a log's files, fsynced later, are not lost in a crash along with a
/// directory whose name never reached the disk.
pub fn create_dir_all(io: &dyn LogIo, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_dir(dir);
    create_dir_all(io, parent)?;
    match io.create_dir(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else, who may not have fsynced the parent yet.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    io.sync_dir(parent)
}

/// The directory holding `path`: "." for a bare name, "/" for the root.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        Some(_) => Path::new("."),
        None => Path::new("/"),
    }
}
