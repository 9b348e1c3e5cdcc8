//! The real backend: `std::fs` with positional I/O, exactly the calls the log made before the
//! seam existed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{LogIo, OpenMode};

/// `std::fs` and `FileExt` (`pread`/`pwrite`), one system call per operation and no allocation
/// of its own, so the append and fetch paths cost what they cost without the seam.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdIo;

impl LogIo for StdIo {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::Create => options.read(true).write(true).create(true).truncate(false),
            OpenMode::Truncate => options.read(true).write(true).create(true).truncate(true),
        };
        options.open(path)
    }

    #[inline]
    fn read_exact_at(&self, file: &File, buf: &mut [u8], position: u64) -> io::Result<()> {
        file.read_exact_at(buf, position)
    }

    #[inline]
    fn write_all_at(&self, file: &File, buf: &[u8], position: u64) -> io::Result<()> {
        file.write_all_at(buf, position)
    }

    fn size_bytes(&self, file: &File) -> io::Result<u64> {
        Ok(file.metadata()?.len())
    }

    fn set_len(&self, file: &File, size_bytes: u64) -> io::Result<()> {
        file.set_len(size_bytes)
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)
    }
}
