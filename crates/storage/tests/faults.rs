//! `PartitionLog` on the fault-injecting backend: failed and torn writes, failed fsyncs and
//! crashes that drop whatever no fsync covered. Every test reopens the log from what survived
//! and checks it against the batches the log acknowledged.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::batch::{encode_uncompressed_batch, BatchHeader, BatchSpec, RecordSpec};
use runnel_storage::io::faulty::{FaultyIo, InjectedError};
use runnel_storage::io::LogIo;
use runnel_storage::{FileBudget, LogConfig, PartitionLog, StorageError};

const TOPIC: [u8; 16] = [9; 16];
const LEADER_EPOCH: i32 = 3;

/// One batch of `records` records; `seed` varies timestamps and value sizes between batches.
fn batch(records: usize, seed: usize) -> Vec<u8> {
    let value = vec![b'v'; 20 + seed % 50];
    encode_uncompressed_batch(&BatchSpec {
        base_timestamp: 1_000 + seed as i64 * 10,
        records: (0..records)
            .map(|i| RecordSpec {
                timestamp_delta: i as i64,
                key: None,
                value: Some(&value),
                headers: vec![],
            })
            .collect(),
        ..BatchSpec::default()
    })
}

/// Index entries often (every batch after the first, at these sizes), one segment unless asked.
fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

const ONE_SEGMENT: u64 = 1 << 30;

fn open(dir: &Path, io: &Arc<FaultyIo>, segment_bytes: u64) -> PartitionLog {
    try_open(dir, io, segment_bytes).unwrap()
}

fn try_open(
    dir: &Path,
    io: &Arc<FaultyIo>,
    segment_bytes: u64,
) -> Result<PartitionLog, StorageError> {
    let io: Arc<dyn LogIo> = io.clone();
    PartitionLog::open_with_io(
        dir.to_path_buf(),
        TOPIC,
        config(segment_bytes),
        FileBudget::new(16),
        io,
    )
}

/// Appends `count` single-batch produce requests; returns their `(base, last)` offsets.
fn append(log: &mut PartitionLog, count: usize, seed: usize) -> Vec<(i64, i64)> {
    (seed..seed + count)
        .map(|i| {
            let out = log
                .append_as_leader(Bytes::from(batch(1 + i % 3, i)), LEADER_EPOCH, 0)
                .unwrap();
            (out.base_offset, out.last_offset)
        })
        .collect()
}

/// `(base, last)` of every batch a reader sees, from the log start up to the log end.
fn batches(log: &PartitionLog) -> Vec<(i64, i64)> {
    let bytes = log
        .read(
            log.log_start_offset(),
            usize::MAX,
            log.log_end_offset(),
            false,
        )
        .unwrap();
    let mut out = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let header = BatchHeader::parse(&bytes[position..]).unwrap();
        position += header.size_bytes();
        out.push((header.base_offset, header.last_offset()));
    }
    assert_eq!(position, bytes.len(), "whole batches only");
    out
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(ext)))
        .collect();
    found.sort();
    found
}

/// After an append failed on an injected fault: the fault fired, the log's offsets (locked or
/// lock-free) show nothing of the failed append, and readers get nothing at all: the log is
/// poisoned and no longer trusts its page cache, so every read is refused.
fn assert_nothing_of_the_failed_append_shows(io: &FaultyIo, log: &PartitionLog, leo: i64) {
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.offsets().log_end_offset(), leo);
    assert!(matches!(
        log.reader().snapshot(),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(
        log.read(0, usize::MAX, leo, true),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(
        log.read_file_slice(0, usize::MAX, i64::MAX, true),
        Err(StorageError::Poisoned)
    ));
}

/// After an append failed on an injected write fault that the log undid: the fault fired,
/// offsets show nothing of it, the files end where the last good append ended, and readers
/// read exactly the acknowledged batches: the log is not poisoned.
fn assert_the_failed_append_was_undone(
    io: &FaultyIo,
    log: &PartitionLog,
    dir: &Path,
    before: &[(i64, i64)],
    sizes: &[u64; 3],
) {
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    let leo = before.last().map_or(0, |b| b.1 + 1);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.offsets().log_end_offset(), leo);
    assert_eq!(
        file_sizes(dir),
        *sizes,
        "files cut back to the last good append"
    );
    assert_eq!(batches(log), before);
}

/// Sizes of the active segment 0's log, offset index and time index files.
fn file_sizes(dir: &Path) -> [u64; 3] {
    ["log", "index", "timeindex"].map(|ext| {
        fs::metadata(dir.join(format!("00000000000000000000.{ext}")))
            .unwrap()
            .len()
    })
}

/// After the process died with a poisoned log (the page cache survives), the reopened log
/// still holds every batch acknowledged before the failure, with its offsets.
fn assert_acknowledged_batches_survive(
    log: PartitionLog,
    dir: &Path,
    io: &Arc<FaultyIo>,
    before: &[(i64, i64)],
) {
    drop(log);
    let log = open(dir, io, ONE_SEGMENT);
    assert_eq!(batches(&log)[..before.len()], before[..]);
}

fn is_errno(result: Result<impl std::fmt::Debug, StorageError>, errno: i32) -> bool {
    matches!(result, Err(StorageError::Io(e)) if e.raw_os_error() == Some(errno))
}

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[test]
fn a_failed_fsync_poisons_the_log_and_a_crash_keeps_only_what_was_synced() {
    // A failed flush is reported, refuses every later write, and nothing it covered is taken as durable.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    log.assign_leader_epoch(LEADER_EPOCH).unwrap();
    let synced = append(&mut log, 5, 0);
    log.flush().unwrap();
    let unsynced = append(&mut log, 3, 5);
    io.fail_sync(1, ".log", InjectedError::Eio);
    assert!(is_errno(log.flush(), EIO));
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch(1, 99)), LEADER_EPOCH, 0),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.flush(), Err(StorageError::Poisoned)));
    assert_eq!(
        log.log_end_offset(),
        unsynced.last().unwrap().1 + 1,
        "written, just not durable"
    );
    drop(log);
    io.crash().unwrap();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    assert_eq!(batches(&log), synced);
    assert_eq!(log.log_end_offset(), synced.last().unwrap().1 + 1);
    assert_eq!(log.latest_epoch(), Some(LEADER_EPOCH));
    let next = append(&mut log, 1, 50);
    assert_eq!(next[0].0, synced.last().unwrap().1 + 1);
}

#[test]
fn enospc_on_the_log_write_fails_the_append_and_the_log_takes_writes_again() {
    // A short write then ENOSPC: the append fails, its bytes are cut off, and the next append continues at the same offset.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let mut acknowledged = append(&mut log, 4, 0);
    let sizes = file_sizes(&dir);
    io.tear_write(1, ".log", 40, InjectedError::Enospc);
    let mut request = batch(2, 10);
    request.extend_from_slice(&batch(3, 11));
    assert!(is_errno(
        log.append_as_leader(Bytes::from(request), LEADER_EPOCH, 0),
        ENOSPC
    ));
    assert_the_failed_append_was_undone(&io, &log, &dir, &acknowledged, &sizes);
    acknowledged.extend(append(&mut log, 2, 12));
    assert_eq!(acknowledged[4].0, acknowledged[3].1 + 1, "offsets continue");
    assert_acknowledged_batches_survive(log, &dir, &io, &acknowledged);
}

#[test]
fn enospc_on_an_index_write_fails_the_whole_append_and_the_log_takes_writes_again() {
    // A produce of three batches whose second index entry hits ENOSPC is undone whole; appends then go on.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let mut acknowledged = append(&mut log, 4, 0);
    let sizes = file_sizes(&dir);
    // The first index entry of this request is for its first batch, the second for its second.
    io.fail_write(2, ".index", InjectedError::Enospc);
    let mut request = batch(2, 10);
    request.extend_from_slice(&batch(3, 11));
    request.extend_from_slice(&batch(1, 12));
    assert!(is_errno(
        log.append_as_leader(Bytes::from(request), LEADER_EPOCH, 0),
        ENOSPC
    ));
    assert_the_failed_append_was_undone(&io, &log, &dir, &acknowledged, &sizes);
    log.flush().unwrap();
    acknowledged.extend(append(&mut log, 3, 13));
    log.flush().unwrap();
    // Power loss after the flush: every acknowledged batch is on disk, indexes included.
    drop(log);
    io.crash().unwrap();
    let log = open(&dir, &io, ONE_SEGMENT);
    assert_eq!(batches(&log), acknowledged);
    assert!(log.offset_for_timestamp(1_100).is_ok());
}

#[test]
fn writes_fail_with_enospc_while_the_disk_is_full_and_resume_when_space_returns() {
    // The Nth write fails with ENOSPC, then every write fails for a while; each failure is undone, and once writes succeed
    // again every acknowledged batch is intact after a reopen, at offsets with no gap.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let mut acknowledged = append(&mut log, 3, 0);
    // The second data write from now fails: one more append gets through, the next does not.
    io.fail_write(2, ".log", InjectedError::Enospc);
    acknowledged.extend(append(&mut log, 1, 3));
    for seed in 4..8 {
        let sizes = file_sizes(&dir);
        assert!(is_errno(
            log.append_as_leader(Bytes::from(batch(2, seed)), LEADER_EPOCH, 0),
            ENOSPC
        ));
        assert_the_failed_append_was_undone(&io, &log, &dir, &acknowledged, &sizes);
        // Still full for the next try, but for the last.
        if seed < 7 {
            io.fail_write(1, ".log", InjectedError::Enospc);
        }
    }
    // Space returns: appends go on at the next offset.
    acknowledged.extend(append(&mut log, 4, 9));
    assert_eq!(acknowledged[4].0, acknowledged[3].1 + 1);
    assert_acknowledged_batches_survive(log, &dir, &io, &acknowledged);
}

#[test]
fn enospc_on_the_final_time_index_entry_of_a_roll_is_undone_and_a_later_append_rolls() {
    // A roll whose final time-index entry hits ENOSPC fails the append, seals nothing, and the next append rolls.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let dyn_io: Arc<dyn LogIo> = io.clone();
    let config = LogConfig {
        segment_bytes: 1024,
        // No sparse entries: the only time-index write is the roll's final entry.
        index_interval_bytes: 1 << 30,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open_with_io(
        dir.clone(),
        TOPIC,
        config.clone(),
        FileBudget::new(16),
        dyn_io.clone(),
    )
    .unwrap();
    let mut acknowledged = Vec::new();
    let mut seed = 0;
    // Fill the first segment up to just before a roll.
    loop {
        let next = batch(1, seed);
        if fs::metadata(dir.join("00000000000000000000.log"))
            .unwrap()
            .len()
            + next.len() as u64
            > 1024
        {
            break;
        }
        acknowledged.extend(append(&mut log, 1, seed));
        seed += 1;
    }
    io.fail_write(1, ".timeindex", InjectedError::Enospc);
    let refused = log.append_as_leader(Bytes::from(batch(1, seed)), LEADER_EPOCH, 0);
    assert!(is_errno(refused, ENOSPC));
    assert_eq!(io.armed_faults(), 0);
    assert_eq!(files(&dir, ".log").len(), 1, "nothing rolled");
    assert_eq!(
        fs::metadata(dir.join("00000000000000000000.timeindex"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(batches(&log), acknowledged);
    acknowledged.extend(append(&mut log, 3, seed));
    assert_eq!(files(&dir, ".log").len(), 2, "the next append rolled");
    drop(log);
    let log = PartitionLog::open_with_io(dir.clone(), TOPIC, config, FileBudget::new(16), dyn_io)
        .unwrap();
    assert_eq!(batches(&log), acknowledged);
}

#[test]
fn a_failed_append_that_cannot_be_undone_poisons_the_log() {
    // ENOSPC, then the cut back fails too: the disk state is unknown, so the log refuses reads and writes until reopened.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let before = append(&mut log, 4, 0);
    let leo = log.log_end_offset();
    io.tear_write(1, ".log", 40, InjectedError::Enospc);
    io.fail_set_len(1, ".log", InjectedError::Eio);
    assert!(is_errno(
        log.append_as_leader(Bytes::from(batch(2, 10)), LEADER_EPOCH, 0),
        ENOSPC
    ));
    assert_nothing_of_the_failed_append_shows(&io, &log, leo);
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch(1, 12)), LEADER_EPOCH, 0),
        Err(StorageError::Poisoned)
    ));
    assert!(matches!(log.flush(), Err(StorageError::Poisoned)));
    assert_acknowledged_batches_survive(log, &dir, &io, &before);
}

#[test]
fn a_failed_leader_epoch_checkpoint_fails_the_append_and_is_undone() {
    // The first append of a new leader epoch whose checkpoint write fails is undone like a failed data write; the epoch starts on the next append.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let mut acknowledged = append(&mut log, 4, 0);
    let sizes = file_sizes(&dir);
    io.fail_write(1, "leader-epoch-checkpoint.tmp", InjectedError::Enospc);
    assert!(is_errno(
        log.append_as_leader(Bytes::from(batch(2, 10)), LEADER_EPOCH + 1, 0),
        ENOSPC
    ));
    assert_the_failed_append_was_undone(&io, &log, &dir, &acknowledged, &sizes);
    assert_eq!(log.latest_epoch(), Some(LEADER_EPOCH));
    let out = log
        .append_as_leader(Bytes::from(batch(1, 11)), LEADER_EPOCH + 1, 0)
        .unwrap();
    acknowledged.push((out.base_offset, out.last_offset));
    assert_eq!(log.latest_epoch(), Some(LEADER_EPOCH + 1));
    assert_eq!(
        log.epoch_for_offset(out.base_offset),
        Some(LEADER_EPOCH + 1)
    );
    assert_acknowledged_batches_survive(log, &dir, &io, &acknowledged);
}

#[test]
fn a_leader_epoch_checkpoint_is_durable_once_written() {
    // The checkpoint a new leader epoch writes survives a crash with no flush, its rename included.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    log.assign_leader_epoch(LEADER_EPOCH).unwrap();
    let synced = append(&mut log, 3, 0);
    log.flush().unwrap();
    let leo = log.log_end_offset();
    log.assign_leader_epoch(LEADER_EPOCH + 1).unwrap();
    drop(log);
    io.crash().unwrap();
    let checkpoint = dir.join("leader-epoch-checkpoint");
    assert_eq!(
        fs::read_to_string(&checkpoint).unwrap_or_default(),
        format!("0\n2\n{LEADER_EPOCH} 0\n{} {leo}\n", LEADER_EPOCH + 1)
    );
    let log = open(&dir, &io, ONE_SEGMENT);
    assert_eq!(batches(&log), synced);
}

#[test]
fn a_failed_checkpoint_fsync_poisons_the_log_and_open_removes_stale_temp_files() {
    // A new epoch whose checkpoint cannot be fsynced is refused for good; the temporary files left behind go at open.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let appended = append(&mut log, 3, 0);
    io.fail_sync(1, "leader-epoch-checkpoint.tmp", InjectedError::Eio);
    assert!(is_errno(log.assign_leader_epoch(LEADER_EPOCH + 1), EIO));
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    assert_eq!(log.latest_epoch(), Some(LEADER_EPOCH));
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch(1, 9)), LEADER_EPOCH + 1, 0),
        Err(StorageError::Poisoned)
    ));
    let stale = [
        dir.join("leader-epoch-checkpoint.tmp"),
        dir.join("partition.metadata.tmp"),
    ];
    assert!(stale[0].exists());
    // As a crash between writing partition.metadata's temporary file and its rename leaves it.
    fs::write(&stale[1], b"version: 0\n").unwrap();
    // The process dies; the page cache survives.
    drop(log);
    let log = open(&dir, &io, ONE_SEGMENT);
    for path in &stale {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert_eq!(batches(&log), appended);
    assert_eq!(log.latest_epoch(), Some(LEADER_EPOCH));
}

#[test]
fn a_rewritten_partition_metadata_survives_a_crash_during_the_rest_of_open() {
    // partition.metadata written again at open is durable at once, not only after open's own directory fsync.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir, &FaultyIo::new(), ONE_SEGMENT);
    append(&mut log, 4, 0);
    log.flush().unwrap();
    // No close: the next open recovers the active segment and rewrites its index.
    drop(log);
    let metadata = dir.join("partition.metadata");
    let expected = fs::read(&metadata).unwrap();
    fs::remove_file(&metadata).unwrap();
    // A backend that takes what is on disk now as durable.
    let io = FaultyIo::new();
    io.fail_write(1, ".index", InjectedError::Eio);
    assert!(is_errno(try_open(&dir, &io, ONE_SEGMENT), EIO));
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    io.crash().unwrap();
    assert_eq!(fs::read(&metadata).unwrap_or_default(), expected);
}

#[test]
fn a_new_logs_files_are_durable_once_open_returns() {
    // A new log's partition.metadata and segment files get one directory fsync between them
    // (not one each): once open returns, a crash keeps them all.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("t-0");
    let io = FaultyIo::new();
    let log = open(&dir, &io, ONE_SEGMENT);
    drop(log);
    io.crash().unwrap();
    for name in ["partition.metadata", "00000000000000000000.log"] {
        assert!(dir.join(name).exists(), "{name} was lost");
    }
    assert!(fs::read_to_string(dir.join("partition.metadata"))
        .unwrap()
        .starts_with("version: 0\ntopic_id: "));
}

#[test]
fn a_new_partition_directory_survives_a_crash_with_its_flushed_batches() {
    // Creating a partition's directory (and a missing parent) fsyncs their parents, so flushed batches are not lost with them.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data").join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let synced = append(&mut log, 5, 0);
    log.flush().unwrap();
    drop(log);
    io.crash().unwrap();
    assert!(dir.is_dir());
    let log = open(&dir, &io, ONE_SEGMENT);
    assert_eq!(batches(&log), synced);
}

#[test]
fn a_torn_batch_is_truncated_on_reopen_and_every_synced_batch_keeps_its_offset() {
    // A torn write left in the page cache by a process crash is cut off by recovery; synced batches stay.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let synced = append(&mut log, 6, 0);
    log.flush().unwrap();
    let segment = dir.join("00000000000000000000.log");
    let synced_bytes = fs::metadata(&segment).unwrap().len();
    io.tear_write(1, ".log", 30, InjectedError::Eio);
    // The log cannot cut the torn prefix off either (the device is failing), so the prefix
    // stays for recovery to handle.
    io.fail_set_len(1, ".log", InjectedError::Eio);
    assert!(is_errno(
        log.append_as_leader(Bytes::from(batch(3, 6)), LEADER_EPOCH, 0),
        EIO
    ));
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        synced_bytes + 30,
        "the torn prefix is in the file"
    );
    // The process dies: no flush, no close, the page cache (and the torn prefix) survives.
    drop(log);
    let mut log = open(&dir, &io, ONE_SEGMENT);
    assert_eq!(fs::metadata(&segment).unwrap().len(), synced_bytes);
    assert_eq!(batches(&log), synced);
    let next = append(&mut log, 1, 7);
    assert_eq!(next[0].0, synced.last().unwrap().1 + 1);
    log.flush().unwrap();
    // What the recovered log acknowledged survives a power loss.
    drop(log);
    io.crash().unwrap();
    let log = open(&dir, &io, ONE_SEGMENT);
    let mut expected = synced.clone();
    expected.extend(next);
    assert_eq!(batches(&log), expected);
}

#[test]
fn a_crash_drops_appends_after_the_last_flush_and_offsets_continue() {
    // Power loss keeps every batch flushed (across rolled segments) and none after; new appends follow them.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, 1024);
    log.assign_leader_epoch(LEADER_EPOCH).unwrap();
    let synced = append(&mut log, 20, 0);
    assert!(files(&dir, ".log").len() >= 3, "segments rolled");
    log.flush().unwrap();
    let segments = files(&dir, ".log").len();
    let lost = append(&mut log, 2, 20);
    assert_eq!(
        files(&dir, ".log").len(),
        segments,
        "no roll: all in the active segment"
    );
    assert!(!lost.is_empty());
    drop(log);
    io.crash().unwrap();
    let mut log = open(&dir, &io, 1024);
    assert_eq!(batches(&log), synced);
    let leo = synced.last().unwrap().1 + 1;
    assert_eq!(log.log_end_offset(), leo);
    let next = append(&mut log, 1, 30);
    assert_eq!(next[0].0, leo);
    for &(base, last) in &synced {
        let bytes = log.read(last, 1, leo, true).unwrap();
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!((header.base_offset, header.last_offset()), (base, last));
    }
}

#[test]
fn a_roll_makes_the_sealed_segment_durable_without_a_flush() {
    // Rolling fsyncs the sealed segment and the new name, so a crash loses only the active segment's unflushed batches.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, 1024);
    let mut appended = append(&mut log, 3, 0);
    log.flush().unwrap();
    let mut seed = 3;
    while files(&dir, ".log").len() < 3 {
        appended.extend(append(&mut log, 1, seed));
        seed += 1;
    }
    let active = files(&dir, ".log").pop().unwrap();
    let active_base: i64 = active
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap()
        .parse()
        .unwrap();
    appended.extend(append(&mut log, 2, seed));
    drop(log);
    io.crash().unwrap();
    let log = open(&dir, &io, 1024);
    let sealed: Vec<(i64, i64)> = appended
        .iter()
        .copied()
        .filter(|&(base, _)| base < active_base)
        .collect();
    assert!(sealed.len() > 3, "unflushed batches were sealed by rolls");
    assert_eq!(batches(&log), sealed);
    assert_eq!(
        files(&dir, ".log").len(),
        3,
        "the empty active segment kept its name"
    );
}

#[test]
fn a_torn_index_write_is_rebuilt_on_recovery() {
    // A partial index entry left by a crash is replaced by an index identical to one written without faults.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io, ONE_SEGMENT);
    let synced = append(&mut log, 8, 0);
    log.flush().unwrap();
    let index = dir.join("00000000000000000000.index");
    let whole = fs::metadata(&index).unwrap().len();
    assert!(whole > 0 && whole.is_multiple_of(8));
    io.tear_write(1, ".index", 3, InjectedError::Eio);
    // Cutting back the log file works, the index's does not: the torn entry stays.
    io.fail_set_len(1, ".index", InjectedError::Eio);
    assert!(is_errno(
        log.append_as_leader(Bytes::from(batch(2, 8)), LEADER_EPOCH, 0),
        EIO
    ));
    assert_eq!(
        fs::metadata(&index).unwrap().len(),
        whole + 3,
        "a torn entry"
    );
    drop(log);
    let log = open(&dir, &io, ONE_SEGMENT);
    // The failed append's batch reached the log file whole before its index entry tore, so
    // recovery may keep it; every acknowledged batch must be there with its offsets.
    let recovered = batches(&log);
    assert_eq!(recovered[..synced.len()], synced[..]);
    log.close().unwrap();

    // The same batches appended without faults and closed: the indexes recovery must rebuild.
    let reference_dir = tmp.path().join("reference-0");
    let mut reference = open(&reference_dir, &FaultyIo::new(), ONE_SEGMENT);
    let mut replayed = append(&mut reference, synced.len(), 0);
    if recovered.len() > synced.len() {
        let out = reference
            .append_as_leader(Bytes::from(batch(2, 8)), LEADER_EPOCH, 0)
            .unwrap();
        replayed.push((out.base_offset, out.last_offset));
    }
    assert_eq!(replayed, recovered);
    reference.close().unwrap();
    for ext in ["index", "timeindex"] {
        let name = format!("00000000000000000000.{ext}");
        assert_eq!(
            fs::read(dir.join(&name)).unwrap(),
            fs::read(reference_dir.join(&name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn indexes_rebuilt_for_a_sealed_segment_survive_a_crash() {
    // Recovery fsyncs the indexes it rebuilds for an inactive segment: a crash after it finds them whole, not torn again.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir, &FaultyIo::new(), 1024);
    let appended = append(&mut log, 20, 0);
    assert!(files(&dir, ".log").len() >= 3, "segments rolled");
    log.close().unwrap();
    let index = dir.join("00000000000000000000.index");
    let time_index = dir.join("00000000000000000000.timeindex");
    let whole = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
    assert!(whole.0.len() > 8);
    // The sealed segment's last index entry torn, on disk.
    fs::write(&index, &whole.0[..whole.0.len() - 3]).unwrap();
    // A backend that takes the torn index as durable.
    let io = FaultyIo::new();
    let log = open(&dir, &io, 1024);
    let rebuilt = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
    assert_eq!(rebuilt, whole, "recovery rebuilt the indexes");
    assert_eq!(batches(&log), appended);
    drop(log);
    io.crash().unwrap();
    let after_crash = (fs::read(&index).unwrap(), fs::read(&time_index).unwrap());
    assert_eq!(after_crash, whole, "the rebuilt indexes survived the crash");
}
