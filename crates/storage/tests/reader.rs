//! `LogReader` and `LogSnapshot`: reads without the writer's lock, racing appends, rolls,
//! retention and truncation on other threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use runnel_protocol::batch::BatchHeader;
use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::{FileBudget, LogConfig, LogReader, PartitionLog, StorageError};

mod support;

use support::*;

/// Bounds every wait of these tests, so that a read stuck behind a lock fails the test with a
/// message instead of hanging it.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// Small segments and dense indexes: rolls every few appends. Deleted segments' files go at
/// once, so the tests see reads through unlinked files.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

fn canonical_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    (dir, root)
}

/// The timestamp every single-record batch of these tests carries for its offset and
/// `generation` (bumped when a truncation makes offsets be written again), so a reader can
/// tell from the bytes alone which batch it was given.
fn timestamp_of(offset: i64, generation: i64) -> i64 {
    generation * 1_000_000_000 + 1_000 + offset * 10
}

/// Appends one single-record batch at the log end; returns its offset.
fn append_one(log: &mut PartitionLog, generation: i64) -> i64 {
    let offset = log.log_end_offset();
    let out = log
        .append_as_leader(
            Bytes::from(batch(1, timestamp_of(offset, generation), 60)),
            0,
            0,
        )
        .unwrap();
    assert_eq!(out.base_offset, offset);
    offset
}

/// Checks that `bytes` are whole, CRC-valid, contiguous single-record batches of generation 0
/// starting at `first`, and returns their headers.
fn check_batches(bytes: &[u8], first: i64) -> Vec<BatchHeader> {
    let headers = split(bytes);
    for (i, h) in headers.iter().enumerate() {
        let offset = first + i as i64;
        assert_eq!(h.base_offset, offset, "contiguous from {first}");
        assert_eq!(
            h.max_timestamp,
            timestamp_of(offset, 0),
            "the batch of {offset}"
        );
    }
    headers
}

fn open(dir: &Path, budget: Arc<FileBudget>) -> PartitionLog {
    PartitionLog::open_with_budget(dir.to_path_buf(), TOPIC, config(), budget).unwrap()
}

#[test]
fn a_reader_answers_while_another_thread_holds_the_writer() {
    // Goal: reads take no lock of the writer's: with the writer's mutex held by another thread
    // (as an append or a group-commit fsync holds it), a read still answers. Bounded wait, no
    // timing claim: before the split, this read waited for the mutex and the test failed.
    let (_guard, root) = canonical_tempdir();
    let log = Arc::new(Mutex::new(open(&root.join("t-0"), FileBudget::new(8))));
    let reader = {
        let mut log = log.lock().unwrap();
        for _ in 0..20 {
            append_one(&mut log, 0);
        }
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        log.reader()
    };
    let (held, held_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let holder = {
        let log = Arc::clone(&log);
        thread::spawn(move || {
            let _writer = log.lock().unwrap();
            held.send(()).unwrap();
            release_rx.recv_timeout(WAIT_MAX).ok();
        })
    };
    held_rx.recv_timeout(WAIT_MAX).unwrap();
    let (answer, answer_rx) = mpsc::channel();
    thread::spawn(move || {
        let read = reader.with_snapshot(|s| {
            let slice = s.read_file_slice(0, usize::MAX, s.high_watermark(), true)?;
            Ok((s.read(5, 1, s.high_watermark(), true)?, slice))
        });
        answer.send(read).unwrap();
    });
    let read = answer_rx
        .recv_timeout(WAIT_MAX)
        .expect("the read waited for the writer's lock");
    release.send(()).unwrap();
    holder.join().unwrap();
    let (bytes, slice) = read.unwrap();
    check_batches(&bytes, 5);
    check_batches(&slice.unwrap().read_to_bytes().unwrap(), 0);
}

#[test]
fn a_snapshot_keeps_reading_its_segments_after_a_roll_and_their_deletion() {
    // Goal: a snapshot taken before rolls and a retention pass answers from exactly the bytes
    // it saw, through the deleted segments' retired handles (its then-active segment included),
    // and those descriptors close when the snapshot and its slices are gone.
    let (_guard, root) = canonical_tempdir();
    let dir = root.join("t-0");
    // Three files: the snapshot's active segment is evicted by the next ones.
    let mut log = open(&dir, FileBudget::new(3));
    for _ in 0..30 {
        append_one(&mut log, 0);
    }
    let reader = log.reader();
    let before = reader.snapshot().unwrap();
    let end = before.log_end_offset();
    let seen = before.read(0, usize::MAX, end, false).unwrap();
    check_batches(&seen, 0);
    let bases = segment_bases(&dir);
    assert!(bases.len() >= 4, "{bases:?}");
    while segment_bases(&dir).len() < bases.len() + 2 {
        append_one(&mut log, 0);
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let deleted = log.delete_segments_before(leo, 0).unwrap();
    assert!(
        deleted > bases.len(),
        "every segment the snapshot knew went"
    );
    for base in &bases {
        assert!(!dir.join(format!("{base:020}.log")).exists());
    }
    // Same bytes: all at once, batch by batch, as a file slice, and by timestamp.
    assert_eq!(before.read(0, usize::MAX, end, false).unwrap(), seen);
    for offset in 0..end {
        check_batches(&before.read(offset, 1, end, true).unwrap(), offset);
    }
    let slice = before
        .read_file_slice(0, usize::MAX, end, true)
        .unwrap()
        .unwrap();
    assert_eq!(
        slice.read_to_bytes().unwrap(),
        seen.slice(..slice.len),
        "the slice of the first segment"
    );
    assert_eq!(
        before
            .offset_for_timestamp(timestamp_of(end - 1, 0))
            .unwrap()
            .map(|t| t.0),
        Some(end - 1)
    );
    // A snapshot taken now starts past them.
    assert!(matches!(
        reader.snapshot().unwrap().read(0, 1, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let unlinked = || {
        descriptors_under(&dir)
            .into_iter()
            .filter(|d| d.ends_with("(deleted)"))
            .count()
    };
    assert!(unlinked() > 0, "the snapshot reads unlinked files");
    drop(before);
    assert!(unlinked() > 0, "the slice still holds its file");
    drop(slice);
    assert_eq!(unlinked(), 0, "{:?}", descriptors_under(&dir));
}

#[test]
fn snapshots_racing_appends_and_retention_read_whole_batches_up_to_their_end() {
    // Goal: while one thread appends (rolling segments) and deletes old segments, every
    // snapshot of two reader threads reads whole, CRC-valid batches of exactly the records it
    // was taken with, from any offset it knows up to its log end offset: nothing torn, nothing
    // missing, nothing past its end, and nothing lost to a deletion that came after it.
    const APPENDS: usize = 1_500;
    let (_guard, root) = canonical_tempdir();
    let mut log = open(&root.join("t-0"), FileBudget::new(6));
    let reader = log.reader();
    let done = AtomicBool::new(false);
    let reads = thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (reader, done) = (reader.clone(), &done);
                scope.spawn(move || reader_loop(&reader, done, t))
            })
            .collect();
        for i in 0..APPENDS {
            append_one(&mut log, 0);
            if i % 7 == 0 {
                let leo = log.log_end_offset();
                log.set_high_watermark(leo);
            }
            if i % 40 == 39 {
                let hw = log.high_watermark();
                log.delete_segments_before(hw - 30, 0).unwrap();
            }
            if i % 97 == 96 {
                let start = log.log_start_offset() + 3;
                log.advance_log_start_offset(start.min(log.high_watermark()), 0)
                    .unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
        readers.into_iter().map(|r| r.join().unwrap()).sum::<u64>()
    });
    assert!(reads > 100, "the readers ran alongside: {reads} reads");
    assert!(log.log_start_offset() > 0, "retention ran");
}

/// Reads random ranges of fresh snapshots until `done`; returns how many it checked.
fn reader_loop(reader: &LogReader, done: &AtomicBool, seed: u64) -> u64 {
    let mut rng = Xorshift(seed + 1);
    let mut reads = 0;
    while !done.load(Ordering::Relaxed) {
        let snapshot = reader.snapshot().unwrap();
        let (start, end) = (snapshot.log_start_offset(), snapshot.log_end_offset());
        if end == start {
            continue;
        }
        let from = start + rng.below((end - start) as u64) as i64;
        // Give the writer time to roll and delete under the snapshot.
        thread::yield_now();
        let bytes = snapshot.read(from, usize::MAX, end, false).unwrap();
        let headers = check_batches(&bytes, from);
        assert_eq!(
            headers.last().map(|h| h.last_offset() + 1),
            Some(end),
            "everything up to the snapshot's end, nothing past it"
        );
        let slice = snapshot
            .read_file_slice(from, usize::MAX, end, true)
            .unwrap()
            .expect("a slice below the end");
        thread::yield_now();
        check_batches(&slice.read_to_bytes().unwrap(), from);
        reads += 1;
    }
    reads
}

#[test]
fn a_truncation_invalidates_older_snapshots_and_readers_retry_on_new_ones() {
    // Goal: a snapshot taken before a truncation refuses to read (SnapshotStale) rather than
    // mix old offsets with new bytes, and `LogReader::read` answers from the truncated log.
    let (_guard, root) = canonical_tempdir();
    let mut log = open(&root.join("t-0"), FileBudget::new(8));
    for _ in 0..30 {
        append_one(&mut log, 0);
    }
    let reader = log.reader();
    let before = reader.snapshot().unwrap();
    log.truncate_to(12).unwrap();
    for _ in 0..5 {
        append_one(&mut log, 1);
    }
    assert!(matches!(
        before.read(0, usize::MAX, 30, false),
        Err(StorageError::SnapshotStale)
    ));
    assert!(matches!(
        before.read_file_slice(0, usize::MAX, 30, true),
        Err(StorageError::SnapshotStale)
    ));
    assert!(matches!(
        before.offset_for_timestamp(0),
        Err(StorageError::SnapshotStale)
    ));
    let headers = split(&reader.read(0, usize::MAX, 17, false).unwrap());
    let timestamps: Vec<i64> = headers.iter().map(|h| h.max_timestamp).collect();
    let expected: Vec<i64> = (0..17)
        .map(|o| timestamp_of(o, if o < 12 { 0 } else { 1 }))
        .collect();
    assert_eq!(timestamps, expected);
}

#[test]
fn reads_racing_truncations_return_whole_batches_or_a_clean_error() {
    // Goal: while one thread truncates and appends again (other bytes at the same offsets),
    // readers get whole, CRC-valid, contiguous batches of one generation each up to their
    // snapshot's end, or SnapshotStale; never torn or mixed bytes.
    const ROUNDS: i64 = 150;
    let (_guard, root) = canonical_tempdir();
    let mut log = open(&root.join("t-0"), FileBudget::new(6));
    let reader = log.reader();
    let done = AtomicBool::new(false);
    let (reads, stale) = thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (reader, done) = (reader.clone(), &done);
                scope.spawn(move || {
                    let (mut reads, mut stale) = (0u64, 0u64);
                    while !done.load(Ordering::Relaxed) {
                        let read = reader.with_snapshot(|s| {
                            let bytes = s.read(
                                s.log_start_offset(),
                                usize::MAX,
                                s.log_end_offset(),
                                false,
                            )?;
                            Ok((bytes, s.log_start_offset(), s.log_end_offset()))
                        });
                        match read {
                            Ok((bytes, start, end)) => {
                                let headers = split(&bytes);
                                for (i, h) in headers.iter().enumerate() {
                                    let offset = start + i as i64;
                                    assert_eq!(h.base_offset, offset);
                                    let generation =
                                        (h.max_timestamp - 1_000 - offset * 10) / 1_000_000_000;
                                    assert_eq!(h.max_timestamp, timestamp_of(offset, generation));
                                }
                                assert_eq!(start + headers.len() as i64, end);
                                reads += 1;
                            }
                            Err(StorageError::SnapshotStale) => stale += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (reads, stale)
                })
            })
            .collect();
        for generation in 0..ROUNDS {
            for _ in 0..8 {
                append_one(&mut log, generation);
            }
            let leo = log.log_end_offset();
            log.set_high_watermark(leo);
            log.truncate_to(leo - 5).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert!(
        reads > 50,
        "the readers ran alongside: {reads} reads, {stale} stale"
    );
}
