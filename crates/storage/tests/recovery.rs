//! Opening a log after a clean or an unclean shutdown (Kafka's `LogLoader` with the
//! clean-shutdown marker, the recovery point and the producer snapshot): a clean open reads no
//! batches, an unclean one recovers from the recovery point, and hostile checkpoint or snapshot
//! bytes cost a recovery, never a record.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use runnel_storage::io::faulty::FaultyIo;
use runnel_storage::io::{LogIo, StdIo};
use runnel_storage::{FileBudget, LastShutdown, LogConfig, PartitionLog};

mod support;

use support::*;

/// Many small segments with index entries every few batches.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn open_with(dir: &Path, io: Arc<dyn LogIo>, last_shutdown: LastShutdown) -> PartitionLog {
    PartitionLog::open_after(
        dir.to_path_buf(),
        TOPIC,
        config(),
        FileBudget::new(16),
        io,
        last_shutdown,
    )
    .unwrap()
}

fn open(dir: &Path, last_shutdown: LastShutdown) -> PartitionLog {
    open_with(dir, Arc::new(StdIo), last_shutdown)
}

/// Appends `count` batches of producer 42 (sequences from `first_seq`), timestamps rising.
fn fill(log: &mut PartitionLog, count: usize, first_seq: i32) {
    for i in 0..count {
        let seq = first_seq + i as i32 * 2;
        let records = batch_for(2, 10_000 + i64::from(seq), 40 + i % 30, 42, 0, seq);
        log.append_as_leader(Bytes::from(records), 0, 0).unwrap();
    }
}

fn everything(log: &PartitionLog) -> Bytes {
    log.read(
        log.log_start_offset(),
        usize::MAX,
        log.log_end_offset(),
        false,
    )
    .unwrap()
}

fn log_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn a_clean_open_reads_no_batches_and_keeps_everything() {
    // After `close`, a clean open takes every segment from its indexes and the producer state
    // from the snapshot: no segment is scanned or recovered, a few headers per segment are
    // read, and offsets, bytes, timestamps and idempotent duplicates are as before.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = open(&path, LastShutdown::Unclean);
    fill(&mut log, 300, 0);
    let before = everything(&log);
    let leo = log.log_end_offset();
    let max_timestamp = log.max_timestamp_and_offset().unwrap();
    let at_timestamp = log.offset_for_timestamp(10_300).unwrap();
    log.close().unwrap();
    assert_eq!(
        fs::read_to_string(path.join("recovery-point-offset-checkpoint")).unwrap(),
        format!("0\n{leo}\n")
    );
    assert!(path.join(format!("{leo:020}.snapshot")).exists());
    let total_bytes = log_bytes(&path);

    let mut log = open(&path, LastShutdown::Clean);
    let stats = log.open_stats();
    assert!(stats.from_snapshot, "{stats:?}");
    assert!(stats.segments > 5, "{stats:?}");
    assert_eq!((stats.segments_scanned, stats.segments_recovered), (0, 0));
    assert!(
        stats.bytes_read * 10 < total_bytes,
        "read {} of {total_bytes} bytes",
        stats.bytes_read
    );
    assert_eq!(log.recovery_point(), leo);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(everything(&log), before);
    assert_eq!(log.max_timestamp_and_offset().unwrap(), max_timestamp);
    assert_eq!(log.offset_for_timestamp(10_300).unwrap(), at_timestamp);
    // The producer's last batch is a duplicate, its next sequence is accepted.
    let last = batch_for(2, 10_000 + 598, 40 + 299 % 30, 42, 0, 598);
    let dup = log.append_as_leader(Bytes::from(last), 0, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.last_offset, leo - 1);
    fill(&mut log, 1, 600);
    assert_eq!(log.log_end_offset(), leo + 2);
}

#[test]
fn an_unclean_open_recovers_only_from_the_recovery_point() {
    // Without close, the recovery point checkpointed at the last roll limits recovery to the
    // active segment; other segments' headers are walked for producer state. With no
    // checkpoint at all, every segment is recovered (Kafka's recovery point 0).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = open(&path, LastShutdown::Unclean);
    fill(&mut log, 300, 0);
    log.flush().unwrap();
    let before = everything(&log);
    let active_base = *segment_bases(&path).last().unwrap();
    drop(log);

    let log = open(&path, LastShutdown::Unclean);
    let stats = log.open_stats();
    assert!(!stats.from_snapshot);
    assert_eq!(stats.segments_recovered, 1, "{stats:?}");
    assert_eq!(stats.segments_scanned, stats.segments);
    assert_eq!(log.recovery_point(), active_base);
    assert_eq!(everything(&log), before);
    drop(log);

    fs::remove_file(path.join("recovery-point-offset-checkpoint")).unwrap();
    let log = open(&path, LastShutdown::Unclean);
    let stats = log.open_stats();
    assert_eq!(stats.segments_recovered, stats.segments, "{stats:?}");
    assert_eq!(everything(&log), before);
}

#[test]
fn a_crash_after_a_clean_open_is_recovered_even_if_called_clean() {
    // A clean open, more appends, a power cut: what was fsynced survives and the torn,
    // unsynced tail goes, whether the owner says the shutdown was unclean (it was) or wrongly
    // says clean (a stale marker): the checkpoint no longer matches the log end, so the log
    // is recovered either way. The one exception is a crash that lost everything after a
    // roll: the log then ends exactly at the recovery point the roll checkpointed, where the
    // roll's producer snapshot stands, everything below was fsynced by the roll, and opening
    // it from its indexes is right.
    for claimed in [LastShutdown::Unclean, LastShutdown::Clean] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let io = FaultyIo::new();
        let mut log = open_with(&path, io.clone(), LastShutdown::Unclean);
        fill(&mut log, 100, 0);
        log.close().unwrap();
        let mut log = open_with(&path, io.clone(), LastShutdown::Clean);
        assert!(log.open_stats().from_snapshot);
        fill(&mut log, 50, 200);
        log.flush().unwrap();
        let synced = everything(&log);
        let synced_leo = log.log_end_offset();
        fill(&mut log, 20, 300);
        drop(log);
        io.crash().unwrap();

        let mut log = open_with(&path, io.clone(), claimed);
        if log.open_stats().from_snapshot {
            assert_eq!(claimed, LastShutdown::Clean);
            assert_eq!(log.log_end_offset(), *segment_bases(&path).last().unwrap());
            assert_eq!(log.recovery_point(), log.log_end_offset());
        } else {
            assert!(log.open_stats().segments_recovered >= 1);
        }
        // A roll among the unsynced appends fsyncs what it seals, so more may survive.
        assert!(log.log_end_offset() >= synced_leo, "{claimed:?}");
        assert!(everything(&log).starts_with(&synced), "{claimed:?}");
        // The producer state was rebuilt from the headers: the next sequence continues.
        let next_seq = 300 + 2 * ((log.log_end_offset() - synced_leo) / 2) as i32;
        fill(&mut log, 1, next_seq);
    }
}

#[test]
fn an_unclean_shutdown_truncates_a_torn_tail() {
    // Bytes of a batch that never reached the disk whole are cut at the first invalid batch;
    // every batch before them stays.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = open(&path, LastShutdown::Unclean);
    fill(&mut log, 40, 0);
    log.flush().unwrap();
    let before = everything(&log);
    let leo = log.log_end_offset();
    drop(log);
    let active = path.join(format!("{:020}.log", segment_bases(&path).last().unwrap()));
    let mut bytes = fs::read(&active).unwrap();
    bytes.extend_from_slice(&before[before.len() - 30..]);
    fs::write(&active, bytes).unwrap();
    let log = open(&path, LastShutdown::Unclean);
    assert!(log.open_stats().segments_recovered >= 1);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(everything(&log), before);
}

#[test]
fn garbage_checkpoints_and_snapshots_cost_a_recovery_never_a_record() {
    // Whatever stands in the recovery-point checkpoint or the producer snapshot after a clean
    // close (garbage, a lie, an empty or oversized file), a clean open neither panics nor loses
    // a record: it notices the disagreement and recovers the log instead.
    let garbage: [(&str, Vec<u8>); 7] = [
        ("recovery-point-offset-checkpoint", b"".to_vec()),
        ("recovery-point-offset-checkpoint", b"0\n-7\n".to_vec()),
        (
            "recovery-point-offset-checkpoint",
            b"0\n99999999999\n".to_vec(),
        ),
        ("recovery-point-offset-checkpoint", b"0\n3\n".to_vec()),
        ("recovery-point-offset-checkpoint", vec![0xff; 1 << 16]),
        ("snapshot", b"\x00\x01garbage".to_vec()),
        ("snapshot", vec![0; 10]),
    ];
    for (file, bytes) in garbage {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let mut log = open(&path, LastShutdown::Unclean);
        fill(&mut log, 120, 0);
        let before = everything(&log);
        let leo = log.log_end_offset();
        log.close().unwrap();
        let target = if file == "snapshot" {
            path.join(format!("{leo:020}.snapshot"))
        } else {
            path.join(file)
        };
        fs::write(&target, &bytes).unwrap();
        let mut log = open(&path, LastShutdown::Clean);
        assert!(!log.open_stats().from_snapshot, "{file}: {bytes:?}");
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(everything(&log), before);
        fill(&mut log, 1, 240);
        log.close().unwrap();
        // The next close wrote good files again.
        assert!(open(&path, LastShutdown::Clean).open_stats().from_snapshot);
    }
}

#[test]
fn a_damaged_index_after_a_clean_close_is_rebuilt() {
    // An index that fails the sanity check or disagrees with the log makes the clean open fall
    // back to recovering; the rebuilt index serves the same reads.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = open(&path, LastShutdown::Unclean);
    fill(&mut log, 200, 0);
    let before = everything(&log);
    log.close().unwrap();
    let first = path.join(format!("{:020}.index", segment_bases(&path)[0]));
    let mut index = fs::read(&first).unwrap();
    index.truncate(index.len() - 3);
    fs::write(&first, &index).unwrap();
    let log = open(&path, LastShutdown::Clean);
    assert_eq!(everything(&log), before);
    drop(log);
    // Entries that point somewhere else than a batch boundary of the right offset.
    let log = open(&path, LastShutdown::Unclean);
    log.close().unwrap();
    let last_index = path.join(format!("{:020}.index", segment_bases(&path)[1]));
    let mut index = fs::read(&last_index).unwrap();
    let n = index.len();
    index[n - 1] ^= 0x01;
    fs::write(&last_index, &index).unwrap();
    let log = open(&path, LastShutdown::Clean);
    assert!(!log.open_stats().from_snapshot);
    assert_eq!(everything(&log), before);
}

#[test]
fn an_epoch_cut_at_open_is_checkpointed_before_the_log_grows_past_it() {
    // Open cuts epochs that start at or past the log end without rewriting the checkpoint (an
    // empty log's epoch comes straight back when its leader epoch is assigned); the first
    // append writes it before any record, so records appended under the older epoch are never
    // claimed by the cut one after a reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = open(&path, LastShutdown::Unclean);
    fill(&mut log, 10, 0);
    let leo = log.log_end_offset();
    log.flush().unwrap();
    drop(log);
    let checkpoint = path.join("leader-epoch-checkpoint");
    let stale = format!("0\n2\n0 0\n3 {}\n", leo + 4);
    fs::write(&checkpoint, &stale).unwrap();
    let mut log = open(&path, LastShutdown::Unclean);
    assert_eq!(log.epoch_entries().len(), 1);
    assert_eq!(
        fs::read_to_string(&checkpoint).unwrap(),
        stale,
        "no write at open"
    );
    fill(&mut log, 10, 20);
    assert!(log.log_end_offset() > leo + 4);
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    log.flush().unwrap();
    drop(log);
    let log = open(&path, LastShutdown::Unclean);
    assert_eq!(log.epoch_entries().len(), 1);
    assert_eq!(log.epoch_for_offset(leo + 5), Some(0));
}
