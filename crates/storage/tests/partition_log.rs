//! End-to-end tests of `PartitionLog` on real files in temp dirs.

use std::fs;
use std::path::PathBuf;

use bytes::Bytes;
use runnel_protocol::batch::{check_stored_batch, BatchHeader};
use runnel_storage::{
    rename_for_delete, LogConfig, OffsetsSnapshot, PartitionLog, StorageError, TimestampType,
};

mod support;

use support::*;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn files(dir: &PathBuf, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext))
        .collect();
    v.sort();
    v
}

/// Appends `count` batches of varying sizes; returns the model: (base, last, bytes as stored).
fn fill(log: &mut PartitionLog, count: usize) -> Vec<(i64, i64)> {
    let mut model = Vec::new();
    for i in 0..count {
        let out = log
            .append_as_leader(
                Bytes::from(batch(1 + i % 4, 1000 + i as i64 * 10, 20 + i % 50)),
                0,
                0,
            )
            .unwrap();
        model.push((out.base_offset, out.last_offset));
    }
    model
}

#[test]
fn append_and_read_match_a_model_across_rolled_segments() {
    // Every offset reads back the batch containing it, across many small segments and index entries.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    let model = fill(&mut log, 120);
    assert!(
        files(&path, ".log").len() > 3,
        "segments should roll at 2 KiB"
    );
    let leo = log.log_end_offset();
    assert_eq!(leo, model.last().unwrap().1 + 1);
    for &(base, last) in &model {
        for offset in base..=last {
            let bytes = log.read(offset, 1, leo, true).unwrap();
            let headers = split(&bytes);
            assert_eq!(headers.len(), 1);
            assert_eq!(
                (headers[0].base_offset, headers[0].last_offset()),
                (base, last)
            );
        }
    }
    // A big read spans segments and returns the model's batches in order.
    let all = log.read(0, usize::MAX, leo, false).unwrap();
    let got: Vec<(i64, i64)> = split(&all)
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    assert_eq!(got, model);
}

#[test]
fn read_limits_offsets_and_bytes() {
    // max_offset stops before later batches, max_bytes keeps whole batches, min_one_batch returns one oversized batch.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, LogConfig::default()).unwrap();
    let model = fill(&mut log, 10);
    let leo = log.log_end_offset();
    let upto = model[3].1 + 1;
    let headers = split(&log.read(0, usize::MAX, upto, false).unwrap());
    assert_eq!(headers.len(), 4);
    let first_size = split(&log.read(0, usize::MAX, leo, false).unwrap())[0].size_bytes();
    assert!(log.read(0, first_size - 1, leo, false).unwrap().is_empty());
    assert_eq!(
        split(&log.read(0, first_size - 1, leo, true).unwrap()).len(),
        1
    );
    assert!(log.read(leo, 100, leo, true).unwrap().is_empty());
    assert!(matches!(
        log.read(leo + 1, 100, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 100, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn segment_and_index_files_use_kafka_names_and_entry_sizes() {
    // Files are 20-digit base offsets; index entries are whole 8/12-byte records pointing into the log.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    fill(&mut log, 60);
    log.close().unwrap();
    let logs = files(&path, ".log");
    assert_eq!(logs[0], "00000000000000000000.log");
    for name in files(&path, ".index") {
        let bytes = fs::read(path.join(&name)).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        let log_len = fs::metadata(path.join(name.replace(".index", ".log")))
            .unwrap()
            .len();
        for entry in bytes.chunks(8) {
            let position = u32::from_be_bytes(entry[4..8].try_into().unwrap());
            assert!(u64::from(position) < log_len);
        }
    }
    assert!(files(&path, ".timeindex")
        .iter()
        .all(|n| fs::metadata(path.join(n)).unwrap().len().is_multiple_of(12)));
    let meta = fs::read_to_string(path.join("partition.metadata")).unwrap();
    assert_eq!(meta, "version: 0\ntopic_id: BwcHBwcHBwcHBwcHBwcHBw\n");
}

#[test]
fn reopen_after_clean_close_keeps_everything() {
    // A clean close and reopen preserves offsets, contents and the epoch cache; the close
    // leaves the recovery point and a producer snapshot at the log end (beside the ones the
    // rolls took at each segment's base).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    let model = fill(&mut log, 50);
    let before = log
        .read(0, usize::MAX, log.log_end_offset(), false)
        .unwrap();
    let leo = log.log_end_offset();
    log.close().unwrap();
    assert_eq!(
        fs::read_to_string(path.join("recovery-point-offset-checkpoint")).unwrap(),
        format!("0\n{leo}\n")
    );
    let mut expected: Vec<String> = files(&path, ".log")
        .iter()
        .map(|n| n.replace(".log", ".snapshot"))
        .filter(|n| n != "00000000000000000000.snapshot")
        .collect();
    expected.push(format!("{leo:020}.snapshot"));
    expected.sort();
    expected.dedup();
    assert_eq!(files(&path, ".snapshot"), expected);
    let log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    assert_eq!(log.log_end_offset(), model.last().unwrap().1 + 1);
    assert_eq!(
        log.read(0, usize::MAX, log.log_end_offset(), false)
            .unwrap(),
        before
    );
    assert_eq!(log.latest_epoch(), Some(0));
}

#[test]
fn torn_tail_is_truncated_on_reopen() {
    // Cutting the active segment mid-batch (a crash) loses only that batch after reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    let model = fill(&mut log, 5);
    log.flush().unwrap();
    drop(log);
    let seg = path.join("00000000000000000000.log");
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), model[3].1 + 1);
    let headers = split(
        &log.read(0, usize::MAX, log.log_end_offset(), false)
            .unwrap(),
    );
    assert_eq!(headers.len(), 4);
    // The log keeps working after recovery.
    let out = log
        .append_as_leader(Bytes::from(batch(2, 5, 5)), 0, 0)
        .unwrap();
    assert_eq!(out.base_offset, model[3].1 + 1);
}

#[test]
fn corrupt_byte_in_last_batch_is_truncated() {
    // A flipped byte under the CRC of the last batch makes recovery drop that batch.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    let model = fill(&mut log, 4);
    drop(log);
    let seg = path.join("00000000000000000000.log");
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    assert_eq!(log.log_end_offset(), model[2].1 + 1);
}

#[test]
fn corrupt_inactive_segment_drops_later_segments() {
    // Garbage in a sealed segment whose indexes are gone truncates it and deletes every later segment.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    fill(&mut log, 60);
    log.close().unwrap();
    let logs = files(&path, ".log");
    assert!(logs.len() >= 3);
    let second = path.join(&logs[1]);
    let mut bytes = fs::read(&second).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&second, &bytes).unwrap();
    fs::remove_file(second.with_extension("index")).unwrap();
    let log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    assert_eq!(files(&path, ".log").len(), 2);
    let leo = log.log_end_offset();
    let headers = split(&log.read(0, usize::MAX, leo, false).unwrap());
    assert_eq!(headers.last().unwrap().last_offset() + 1, leo);
}

#[test]
fn deleted_index_files_are_rebuilt_identically() {
    // Removing .index/.timeindex files gives back byte-identical files after reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    fill(&mut log, 60);
    log.close().unwrap();
    let logs = files(&path, ".log");
    let first_index = path.join(logs[0].replace(".log", ".index"));
    let first_time = path.join(logs[0].replace(".log", ".timeindex"));
    let (index_before, time_before) = (
        fs::read(&first_index).unwrap(),
        fs::read(&first_time).unwrap(),
    );
    assert!(!index_before.is_empty());
    fs::remove_file(&first_index).unwrap();
    fs::remove_file(&first_time).unwrap();
    let log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    assert_eq!(fs::read(&first_index).unwrap(), index_before);
    assert_eq!(fs::read(&first_time).unwrap(), time_before);
    assert_eq!(
        split(
            &log.read(0, usize::MAX, log.log_end_offset(), false)
                .unwrap()
        )
        .len(),
        60
    );
}

#[test]
fn idempotent_duplicate_out_of_order_and_epoch() {
    // Retries of recent batches return original offsets; gaps and stale epochs are refused.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, LogConfig::default()).unwrap();
    let a = log
        .append_as_leader(Bytes::from(batch_for(3, 10, 5, 42, 0, 0)), 0, 0)
        .unwrap();
    let b = log
        .append_as_leader(Bytes::from(batch_for(2, 10, 5, 42, 0, 3)), 0, 0)
        .unwrap();
    let leo = log.log_end_offset();
    let dup = log
        .append_as_leader(Bytes::from(batch_for(3, 10, 5, 42, 0, 0)), 0, 0)
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(
        (dup.base_offset, dup.last_offset),
        (a.base_offset, a.last_offset)
    );
    assert_eq!(log.log_end_offset(), leo, "nothing written for a duplicate");
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch_for(1, 10, 5, 42, 0, 9)), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch_for(1, 10, 5, 42, 1, 7)), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    log.append_as_leader(Bytes::from(batch_for(1, 10, 5, 42, 1, 0)), 0, 0)
        .unwrap();
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch_for(1, 10, 5, 42, 0, 5)), 0, 0),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // An unknown producer may start at any sequence.
    log.append_as_leader(Bytes::from(batch_for(1, 10, 5, 77, 3, 1234)), 0, 0)
        .unwrap();
    assert_eq!(b.base_offset, 3);
    assert_eq!(log.log_end_offset(), leo + 2);
}

#[test]
fn producer_state_is_rebuilt_after_reopen() {
    // After a crash-style reopen, a retry is still a duplicate and the next sequence still follows.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    for i in 0..10 {
        log.append_as_leader(Bytes::from(batch_for(2, 10, 100, 5, 2, i * 2)), 0, 0)
            .unwrap();
    }
    drop(log);
    let mut log = PartitionLog::open(path, TOPIC, small_config()).unwrap();
    let dup = log
        .append_as_leader(Bytes::from(batch_for(2, 10, 100, 5, 2, 18)), 0, 0)
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (18, 19));
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch_for(2, 10, 100, 5, 2, 30)), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    let next = log
        .append_as_leader(Bytes::from(batch_for(2, 10, 100, 5, 2, 20)), 0, 0)
        .unwrap();
    assert_eq!(next.base_offset, 20);
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    // Timestamp search finds the first record at or after ts (record precision), across segments and after reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    // Batch i holds 4 records with timestamps 1000+10i .. 1000+10i+3.
    for i in 0..80 {
        log.append_as_leader(Bytes::from(batch(4, 1000 + i * 10, 10)), 0, 0)
            .unwrap();
    }
    let check = |log: &PartitionLog| {
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000, 0)));
        assert_eq!(
            log.offset_for_timestamp(1502).unwrap(),
            Some((50 * 4 + 2, 1502, 0))
        );
        assert_eq!(
            log.offset_for_timestamp(1505).unwrap(),
            Some((51 * 4, 1510, 0))
        );
        assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
        assert_eq!(
            log.max_timestamp_and_offset().unwrap(),
            Some((79 * 4 + 3, 1793, 0))
        );
    };
    check(&log);
    log.close().unwrap();
    let log = PartitionLog::open(path, TOPIC, small_config()).unwrap();
    check(&log);
}

#[test]
fn log_append_time_stamps_batches() {
    // With LogAppendTime the stored batch carries the broker time and a valid CRC.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config).unwrap();
    let out = log
        .append_as_leader(Bytes::from(batch(3, 5, 5)), 4, 99_000)
        .unwrap();
    assert_eq!(out.log_append_time_ms, 99_000);
    let h = split(&log.read(0, usize::MAX, 3, false).unwrap())[0];
    assert_eq!(
        (
            h.max_timestamp,
            h.timestamp_type(),
            h.partition_leader_epoch
        ),
        (99_000, TimestampType::LogAppendTime, 4)
    );
}

#[test]
fn leader_epoch_checkpoint_content() {
    // New epochs are checkpointed in Kafka's text format with their start offsets.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    log.append_as_leader(Bytes::from(batch(3, 5, 5)), 0, 0)
        .unwrap();
    log.append_as_leader(Bytes::from(batch(2, 5, 5)), 0, 0)
        .unwrap();
    log.append_as_leader(Bytes::from(batch(1, 5, 5)), 5, 0)
        .unwrap();
    assert_eq!(
        fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap(),
        "0\n2\n0 0\n5 5\n"
    );
    assert_eq!(log.latest_epoch(), Some(5));
    // A lost checkpoint is rebuilt from batch headers, and written again when the owner
    // assigns the leader epoch after open (or by the first append).
    drop(log);
    fs::remove_file(path.join("leader-epoch-checkpoint")).unwrap();
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    assert_eq!(log.latest_epoch(), Some(5));
    log.assign_leader_epoch(5).unwrap();
    assert_eq!(
        fs::read_to_string(path.join("leader-epoch-checkpoint")).unwrap(),
        "0\n2\n0 0\n5 5\n"
    );
}

#[test]
fn topic_id_mismatch_and_rename_for_delete() {
    // Another topic id in partition.metadata is refused; rename_for_delete frees the name at once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders-3");
    PartitionLog::open(path.clone(), TOPIC, LogConfig::default())
        .unwrap()
        .close()
        .unwrap();
    assert!(matches!(
        PartitionLog::open(path.clone(), [9; 16], LogConfig::default()),
        Err(StorageError::TopicIdMismatch)
    ));
    let renamed = rename_for_delete(&path).unwrap();
    let name = renamed.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("orders-3.")
            && name.ends_with("-delete")
            && name.len() == "orders-3.".len() + 32 + 7,
        "{name}"
    );
    assert!(!path.exists());
    PartitionLog::open(path, [9; 16], LogConfig::default()).unwrap();
}

#[test]
fn high_watermark_invariant() {
    // HW moves within [log_start, leo]; outside is a programmer error that panics.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, LogConfig::default()).unwrap();
    fill(&mut log, 3);
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(log.high_watermark(), leo);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log.set_high_watermark(leo + 1)
    }));
    assert!(result.is_err());
}

#[test]
fn invalid_batches_are_refused_without_writing() {
    // A bad CRC or oversized batch is a Batch error and the LEO does not move.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config).unwrap();
    let mut bad = batch(1, 0, 5);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        log.append_as_leader(Bytes::from(bad), 0, 0),
        Err(StorageError::Batch(_))
    ));
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch(1, 0, 300)), 0, 0),
        Err(StorageError::Batch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

/// The whole batches of a slice's bytes, and the length of the cut-short tail after them.
fn whole_batches(bytes: &[u8]) -> (Vec<BatchHeader>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&bytes[pos..]) {
        if pos + h.size_bytes() > bytes.len() {
            break;
        }
        check_stored_batch(&bytes[pos..pos + h.size_bytes()]).unwrap();
        pos += h.size_bytes();
        out.push(h);
    }
    (out, bytes.len() - pos)
}

#[test]
fn file_slices_choose_bytes_as_kafka_does() {
    // Goal: the zero-copy fetch read (`read_file_slice`) picks Kafka's bytes for every offset
    // and several limits, across rolled segments and a high watermark below the log end: it
    // starts at the batch holding the offset, stays in that segment, stops at the high
    // watermark, keeps within max_bytes apart from a whole first batch under min_one_batch, and
    // only its last batch may be cut short. Checked against the whole-batch `read`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slices-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    let model = fill(&mut log, 120);
    assert!(files(&path, ".log").len() > 3, "segments roll at 2 KiB");
    let leo = log.log_end_offset();
    let hw = model[100].0; // a batch boundary below the log end
    let segment_bases: Vec<i64> = files(&path, ".log")
        .iter()
        .map(|n| n.trim_end_matches(".log").parse().unwrap())
        .collect();
    let segment_end = |offset: i64| {
        segment_bases
            .iter()
            .copied()
            .find(|&b| b > offset)
            .unwrap_or(i64::MAX)
    };
    for max_bytes in [1usize, 60, 200, 700, usize::MAX] {
        for &(base, last) in &model {
            for offset in [base, last] {
                for min_one in [false, true] {
                    let slice = log.read_file_slice(offset, max_bytes, hw, min_one).unwrap();
                    let bytes = slice.as_ref().map(|s| s.read_to_bytes().unwrap());
                    let expected = log.read(offset, max_bytes, hw, min_one).unwrap();
                    let (expected_headers, _) = whole_batches(&expected);
                    let Some(bytes) = bytes else {
                        // Nothing only when the whole-batch read also finds nothing in reach.
                        assert!(
                            expected_headers.is_empty() || offset >= hw,
                            "offset {offset} max {max_bytes}: slice empty, read had batches"
                        );
                        continue;
                    };
                    assert!(offset < hw);
                    let (headers, tail) = whole_batches(&bytes);
                    assert!(!headers.is_empty(), "the first batch is whole");
                    assert_eq!(
                        (headers[0].base_offset, headers[0].last_offset()),
                        (base, last),
                        "starts at the batch holding {offset}"
                    );
                    if max_bytes == usize::MAX || !min_one || bytes.len() > headers[0].size_bytes()
                    {
                        assert!(bytes.len() <= max_bytes.max(headers[0].size_bytes()));
                    }
                    let last_whole = headers.last().unwrap().last_offset();
                    assert!(last_whole < hw, "nothing at or past the high watermark");
                    assert!(last_whole < segment_end(offset), "one segment per slice");
                    // Whole batches match the whole-batch read where both have them.
                    for (a, b) in headers.iter().zip(&expected_headers) {
                        assert_eq!(a.base_offset, b.base_offset);
                    }
                    if tail > 0 {
                        // A cut tail happens only where max_bytes, not the data, ended the slice.
                        assert_eq!(bytes.len(), max_bytes);
                    }
                }
            }
        }
    }
    assert!(log.read_file_slice(hw, 100, hw, true).unwrap().is_none());
    assert!(log.read_file_slice(leo, 100, leo, true).unwrap().is_none());
    assert!(matches!(
        log.read_file_slice(leo + 1, 100, leo, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // With the high watermark at the log end, a slice of an active segment reaches its end.
    let last_base = *segment_bases.last().unwrap();
    let s = log
        .read_file_slice(last_base, usize::MAX, leo, true)
        .unwrap()
        .unwrap();
    let (headers, tail) = whole_batches(&s.read_to_bytes().unwrap());
    assert_eq!((headers.last().unwrap().last_offset() + 1, tail), (leo, 0));
}

#[test]
fn leader_epoch_is_checkpointed_when_assigned_not_on_first_append() {
    // Goal: as Kafka on becoming leader, assigning an epoch writes the checkpoint at once with
    // the log end offset as its start, so the first append has no file to create; a later
    // epoch starts where the log then ends.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epochs-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    let checkpoint = path.join("leader-epoch-checkpoint");
    assert!(!checkpoint.exists());
    log.assign_leader_epoch(0).unwrap();
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    let before = fs::metadata(&checkpoint).unwrap().modified().unwrap();
    log.append_as_leader(Bytes::from(batch(3, 1000, 10)), 0, 0)
        .unwrap();
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    assert_eq!(
        fs::metadata(&checkpoint).unwrap().modified().unwrap(),
        before
    );
    log.assign_leader_epoch(4).unwrap();
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n2\n0 0\n4 3\n");
}

#[test]
fn deferred_leader_epoch_is_known_at_once_and_checkpointed_by_the_first_append() {
    // Goal: an epoch assigned without its checkpoint (many partitions changing leader at once)
    // is in the cache at once, starting at the log end, and reaches the checkpoint with the
    // first append; a crash before that append forgets only it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deferred-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, LogConfig::default()).unwrap();
    let checkpoint = path.join("leader-epoch-checkpoint");
    log.assign_leader_epoch(0).unwrap();
    log.append_as_leader(Bytes::from(batch(3, 1000, 10)), 0, 0)
        .unwrap();
    log.assign_leader_epoch_deferred(2).unwrap();
    assert_eq!(log.latest_epoch(), Some(2));
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
    log.append_as_leader(Bytes::from(batch(1, 2000, 10)), 2, 0)
        .unwrap();
    assert_eq!(fs::read_to_string(&checkpoint).unwrap(), "0\n2\n0 0\n2 3\n");
}

#[test]
fn offsets_handle_follows_the_log() {
    // The lock-free offsets handle reads what the log's getters read after open, appends, HW moves, refused appends and a reopen.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, small_config()).unwrap();
    let offsets = log.offsets();
    let snapshot = |start, hw, leo| OffsetsSnapshot {
        log_start_offset: start,
        last_stable_offset: hw,
        high_watermark: hw,
        log_end_offset: leo,
    };
    assert_eq!(offsets.snapshot(), snapshot(0, 0, 0));
    let model = fill(&mut log, 30);
    let leo = model.last().unwrap().1 + 1;
    assert_eq!(offsets.log_end_offset(), leo);
    assert_eq!(offsets.snapshot(), snapshot(0, 0, leo));
    log.set_high_watermark(model[10].0);
    assert_eq!(offsets.high_watermark(), model[10].0);
    let mut corrupt = batch(1, 0, 10);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(log.append_as_leader(Bytes::from(corrupt), 0, 0).is_err());
    assert_eq!(offsets.snapshot(), snapshot(0, model[10].0, leo));
    assert_eq!(offsets.log_start_offset(), log.log_start_offset());
    log.close().unwrap();
    let log = PartitionLog::open(path, TOPIC, small_config()).unwrap();
    assert_eq!(log.offsets().snapshot(), snapshot(0, 0, leo));
}

#[test]
fn first_record_timestamp_from_an_offset() {
    // The consumer-lag lookup: the timestamp of the first record at or past an offset below
    // the high watermark, record-precise, across segments; none at or past the high watermark.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, small_config()).unwrap();
    // Batch i holds 4 records with timestamps 1000+10i .. 1000+10i+3.
    for i in 0..80 {
        log.append_as_leader(Bytes::from(batch(4, 1000 + i * 10, 10)), 0, 0)
            .unwrap();
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let at = |log: &PartitionLog, offset: i64| {
        log.reader()
            .with_snapshot(|s| s.first_record_timestamp_from(offset))
            .unwrap()
    };
    assert!(log.reader().snapshot().unwrap().segment_count() > 1);
    assert_eq!(at(&log, 0), Some(1000));
    assert_eq!(at(&log, -5), Some(1000));
    assert_eq!(at(&log, 50 * 4 + 2), Some(1502));
    assert_eq!(at(&log, leo - 1), Some(1793));
    assert_eq!(at(&log, leo), None);
    log.set_high_watermark(200);
    assert_eq!(at(&log, 199), Some(1493));
    assert_eq!(at(&log, 200), None);
}
