//! Kafka's `LogValidator` rules on append: recompression by `compression.type` (and its
//! levels), LogAppendTime, `message.timestamp.before/after.max.ms`, the bounded reader, and
//! ListOffsets answering record offsets inside compressed batches.

mod support;

use bytes::Bytes;
use runnel_protocol::batch::{
    check_stored_batch, encode_uncompressed_batch, rebuild_batch, BatchError, BatchHeader,
    BatchRecords, BatchSpec, Compression, Rebuild, RecordSpec, TimestampType,
};
use runnel_protocol::compression::DecompressLimits;
use runnel_storage::{BrokerCompressionType, LogConfig, PartitionLog, StorageError};
use support::TOPIC;

const NOW_MS: i64 = 1_700_000_000_000;

/// A client batch (base offset 0) of `n` keyed records one ms apart from `base_ts`, compressed
/// with `codec`, from producer 9 at sequence 0.
fn client_batch(codec: Compression, n: usize, base_ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("value-{i}-{}", "x".repeat(50)).into_bytes())
        .collect();
    let plain = encode_uncompressed_batch(&BatchSpec {
        base_timestamp: base_ts,
        producer_id: 9,
        producer_epoch: 0,
        base_sequence: 0,
        records: values
            .iter()
            .enumerate()
            .map(|(i, v)| RecordSpec {
                timestamp_delta: i as i64,
                key: Some(b"key"),
                value: Some(v),
                headers: vec![(b"h".as_slice(), Some(b"hv".as_slice()))],
            })
            .collect(),
        ..BatchSpec::default()
    });
    if codec == Compression::None {
        return plain;
    }
    let records = BatchRecords::open(&plain, DecompressLimits::default()).unwrap();
    rebuild_batch(
        &records,
        &Rebuild {
            base_offset: 0,
            partition_leader_epoch: -1,
            codec,
            level: None,
            timestamp_type: TimestampType::CreateTime,
            log_append_time_ms: -1,
        },
    )
    .unwrap()
}

/// `batch` with base sequence `sequence`, CRC recomputed.
fn with_sequence(mut batch: Vec<u8>, sequence: i32) -> Vec<u8> {
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir.join("t-0"), TOPIC, config).unwrap()
}

/// A stored record: (offset, timestamp, key, value).
type Stored = (i64, i64, Vec<u8>, Vec<u8>);

/// Every stored batch, with its records.
fn stored(log: &PartitionLog) -> Vec<(BatchHeader, Vec<Stored>)> {
    let bytes = log.read(0, usize::MAX >> 1, i64::MAX, true).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = BatchHeader::parse(&bytes[pos..]).unwrap();
        let batch = &bytes[pos..pos + header.size_bytes()];
        check_stored_batch(batch).unwrap();
        let records = BatchRecords::open(batch, DecompressLimits::default()).unwrap();
        let mut seen = Vec::new();
        records
            .for_each(|r| {
                seen.push((
                    header.base_offset + i64::from(r.offset_delta),
                    r.timestamp,
                    r.key.unwrap_or_default().to_vec(),
                    r.value.unwrap_or_default().to_vec(),
                ))
            })
            .unwrap();
        out.push((header, seen));
        pos += header.size_bytes();
    }
    out
}

fn config(compression_type: BrokerCompressionType) -> LogConfig {
    LogConfig {
        compression_type,
        ..LogConfig::default()
    }
}

#[test]
fn every_target_codec_rebuilds_every_source_codec_and_keeps_the_records() {
    // For each compression.type and each producer codec, the stored batch has the target
    // codec (producer: the source's), the same records, dense offsets and a valid CRC.
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let targets = [
        (BrokerCompressionType::Producer, None),
        (BrokerCompressionType::Uncompressed, Some(Compression::None)),
        (BrokerCompressionType::Gzip, Some(Compression::Gzip)),
        (BrokerCompressionType::Snappy, Some(Compression::Snappy)),
        (BrokerCompressionType::Lz4, Some(Compression::Lz4)),
        (BrokerCompressionType::Zstd, Some(Compression::Zstd)),
    ];
    let reference = stored_of(BrokerCompressionType::Producer, Compression::None);
    for (target, expected) in targets {
        for source in codecs {
            let batches = stored_of(target, source);
            let (header, records) = &batches[1];
            assert_eq!(
                header.compression().unwrap(),
                expected.unwrap_or(source),
                "{target:?} {source:?}"
            );
            assert_eq!(header.base_offset, 5);
            assert_eq!(header.last_offset_delta, 4);
            assert_eq!(header.partition_leader_epoch, 3);
            assert_eq!((header.producer_id, header.base_sequence), (9, 5));
            assert_eq!(header.base_timestamp, NOW_MS - 10);
            assert_eq!(header.max_timestamp, NOW_MS - 6);
            assert_eq!(records, &reference[1].1, "{target:?} {source:?}");
        }
    }
}

/// Appends two batches of five records from producer 9 (the second with codec `source`) to a
/// log with `target`, returning what was stored.
fn stored_of(
    target: BrokerCompressionType,
    source: Compression,
) -> Vec<(BatchHeader, Vec<Stored>)> {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), config(target));
    log.append_as_leader(
        Bytes::from(client_batch(Compression::None, 5, NOW_MS - 10)),
        3,
        NOW_MS,
    )
    .unwrap();
    // Sequence 5 follows the first batch's 0..=4.
    let second = with_sequence(client_batch(source, 5, NOW_MS - 10), 5);
    let outcome = log
        .append_as_leader(Bytes::from(second), 3, NOW_MS)
        .unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (5, 9));
    stored(&log)
}

#[test]
fn producer_keeps_a_compressed_batch_byte_for_byte_apart_from_offset_and_epoch() {
    // compression.type=producer writes the client's compressed bytes unchanged (in place).
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), config(BrokerCompressionType::Producer));
    let sent = client_batch(Compression::Zstd, 20, NOW_MS);
    log.append_as_leader(Bytes::from(sent.clone()), 0, NOW_MS)
        .unwrap();
    let bytes = log.read(0, 1 << 20, i64::MAX, true).unwrap();
    assert_eq!(bytes.len(), sent.len());
    assert_eq!(
        &bytes[17..],
        &sent[17..],
        "CRC, attributes and records unchanged"
    );
}

#[test]
fn config_changes_reach_the_next_append_and_levels_reach_the_codec() {
    // set_config switches the codec for the next batch, and a zstd level changes the bytes.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), config(BrokerCompressionType::Producer));
    let batch = |sequence| {
        Bytes::from(with_sequence(
            client_batch(Compression::Gzip, 200, NOW_MS),
            sequence,
        ))
    };
    log.append_as_leader(batch(0), 0, NOW_MS).unwrap();
    for (level, sequence) in [(1, 200), (19, 400)] {
        log.set_config(LogConfig {
            compression_zstd_level: level,
            ..config(BrokerCompressionType::Zstd)
        });
        log.append_as_leader(batch(sequence), 0, NOW_MS).unwrap();
    }
    let batches = stored(&log);
    let codecs: Vec<_> = batches
        .iter()
        .map(|(h, _)| h.compression().unwrap())
        .collect();
    assert_eq!(
        codecs,
        [Compression::Gzip, Compression::Zstd, Compression::Zstd]
    );
    assert_ne!(
        batches[1].0.batch_length, batches[2].0.batch_length,
        "level 1 vs 19"
    );
    assert_eq!(batches[1].1.len(), 200);
    for level in [1, 9] {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(
            tmp.path(),
            LogConfig {
                compression_gzip_level: level,
                ..config(BrokerCompressionType::Gzip)
            },
        );
        log.append_as_leader(
            Bytes::from(client_batch(Compression::None, 300, NOW_MS)),
            0,
            NOW_MS,
        )
        .unwrap();
        assert_eq!(stored(&log)[0].0.compression().unwrap(), Compression::Gzip);
    }
}

#[test]
fn log_append_time_sets_max_timestamp_and_the_flag_and_keeps_record_deltas() {
    // LogAppendTime: maxTimestamp = now and the type bit, in place or rebuilt; the base
    // timestamp stays the producer's first record time, as Kafka writes v2.
    for (target, source) in [
        (BrokerCompressionType::Producer, Compression::None),
        (BrokerCompressionType::Producer, Compression::Lz4),
        (BrokerCompressionType::Zstd, Compression::Gzip),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(
            tmp.path(),
            LogConfig {
                message_timestamp_type: TimestampType::LogAppendTime,
                ..config(target)
            },
        );
        let outcome = log
            .append_as_leader(Bytes::from(client_batch(source, 3, 1_000)), 0, NOW_MS)
            .unwrap();
        assert_eq!(outcome.log_append_time_ms, NOW_MS);
        let (header, records) = &stored(&log)[0];
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, NOW_MS);
        assert_eq!(header.base_timestamp, 1_000);
        assert!(records.iter().all(|r| r.1 == NOW_MS));
        assert_eq!(
            log.max_timestamp_and_offset().unwrap().map(|t| (t.0, t.1)),
            Some((0, NOW_MS))
        );
    }
}

#[test]
fn create_time_max_timestamp_comes_from_the_records() {
    // A producer's wrong maxTimestamp is corrected from the records, as Kafka's setMaxTimestamp.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    let mut batch = client_batch(Compression::None, 3, 5_000);
    batch[35..43].copy_from_slice(&99_999i64.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    log.append_as_leader(Bytes::from(batch), 0, NOW_MS).unwrap();
    assert_eq!(stored(&log)[0].0.max_timestamp, 5_002);
}

#[test]
fn out_of_range_timestamps_are_invalid_timestamp_with_record_errors() {
    // before.max.ms and after.max.ms refuse the records outside them, each named by index;
    // nothing is written.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(
        tmp.path(),
        LogConfig {
            message_timestamp_before_max_ms: 3_600_000,
            message_timestamp_after_max_ms: 1_000,
            ..LogConfig::default()
        },
    );
    let old = client_batch(Compression::Snappy, 2, NOW_MS - 3_600_001);
    match log.append_as_leader(Bytes::from(old), 0, NOW_MS) {
        Err(StorageError::InvalidTimestamp {
            record_errors,
            log_start_offset,
        }) => {
            assert_eq!(record_errors.len(), 1, "only the first record is too old");
            assert_eq!(log_start_offset, 0);
            assert_eq!(record_errors[0].0, 0);
            assert!(record_errors[0].1.starts_with(&format!(
                "Timestamp {} of message with offset 0 is out of range. The timestamp should be within [{}, {}]",
                NOW_MS - 3_600_001,
                NOW_MS - 3_600_000,
                NOW_MS + 1_000
            )));
        }
        other => panic!("{other:?}"),
    }
    let future = client_batch(Compression::None, 3, NOW_MS + 999);
    match log.append_as_leader(Bytes::from(future), 0, NOW_MS) {
        Err(StorageError::InvalidTimestamp { record_errors, .. }) => {
            assert_eq!(record_errors.iter().map(|e| e.0).collect::<Vec<_>>(), [2]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), 0);
    log.append_as_leader(
        Bytes::from(client_batch(Compression::None, 2, NOW_MS - 3_600_000)),
        0,
        NOW_MS,
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn a_log_append_time_batch_from_a_producer_is_invalid_timestamp() {
    // Kafka refuses a producer batch flagged LogAppendTime on a LogAppendTime topic.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(
        tmp.path(),
        LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    let mut batch = client_batch(Compression::None, 1, NOW_MS);
    batch[22] |= 0x08;
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(Bytes::from(batch), 0, NOW_MS),
        Err(StorageError::InvalidTimestamp { .. })
    ));
}

#[test]
fn a_decompression_bomb_is_corrupt_message_and_writes_nothing() {
    // A 40 KiB zstd batch inflating to 80 MiB (past 64 x max.message.bytes) is CORRUPT_MESSAGE.
    let value = vec![0u8; 80 << 20];
    let plain = encode_uncompressed_batch(&BatchSpec {
        records: vec![RecordSpec {
            value: Some(&value),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    });
    let records = BatchRecords::open(
        &plain,
        DecompressLimits {
            output_bytes_max: usize::MAX,
            record_count_max: 1,
        },
    )
    .unwrap();
    let bomb = rebuild_batch(
        &records,
        &Rebuild {
            base_offset: 0,
            partition_leader_epoch: -1,
            codec: Compression::Zstd,
            level: None,
            timestamp_type: TimestampType::CreateTime,
            log_append_time_ms: -1,
        },
    )
    .unwrap();
    drop(plain);
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    assert!(matches!(
        log.append_as_leader(Bytes::from(bomb), 0, NOW_MS),
        Err(StorageError::Batch(BatchError::CorruptMessage(_)))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn list_offsets_answers_record_offsets_inside_compressed_batches() {
    // By timestamp and max-timestamp, the answer is the record's own offset, as Kafka's
    // searchForTimestamp and offsetOfMaxTimestamp give, not the batch's base offset.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(tmp.path(), LogConfig::default());
    log.append_as_leader(
        Bytes::from(client_batch(Compression::Zstd, 10, 10_000)),
        0,
        NOW_MS,
    )
    .unwrap();
    let found = log.offset_for_timestamp(10_004).unwrap().unwrap();
    assert_eq!((found.0, found.1), (4, 10_004));
    let max = log.max_timestamp_and_offset().unwrap().unwrap();
    assert_eq!((max.0, max.1), (9, 10_009));
}

#[test]
fn record_errors_are_listed_up_to_a_named_cap() {
    // A batch of 12,000 too-old records is refused listing the first 10,000 (RECORD_ERRORS_MAX), not one message each.
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open(
        tmp.path(),
        LogConfig {
            message_timestamp_before_max_ms: 1_000,
            ..LogConfig::default()
        },
    );
    let batch = encode_uncompressed_batch(&BatchSpec {
        base_timestamp: NOW_MS - 10_000,
        records: (0..12_000).map(|_| RecordSpec::default()).collect(),
        ..BatchSpec::default()
    });
    match log.append_as_leader(Bytes::from(batch), 0, NOW_MS) {
        Err(StorageError::InvalidTimestamp { record_errors, .. }) => {
            assert_eq!(record_errors.len(), 10_000);
            assert_eq!(record_errors.last().map(|e| e.0), Some(9_999));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_base_offset_other_than_zero_is_overwritten_by_the_assigned_offset() {
    // Kafka's LogValidator does not check the base offset a client writes: the log assigns
    // offsets, in place and when recompressing.
    for target in [BrokerCompressionType::Producer, BrokerCompressionType::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = open(tmp.path(), config(target));
        for (i, claimed) in [(0u8, 1_000i64), (1, -5), (2, i64::MAX - 10)] {
            let mut batch =
                with_sequence(client_batch(Compression::None, 3, NOW_MS), i32::from(i) * 3);
            runnel_protocol::batch::patch_base_offset(&mut batch, claimed).unwrap();
            log.append_as_leader(Bytes::from(batch), 0, NOW_MS).unwrap();
        }
        let stored = support::split(&log.read(0, 1 << 20, i64::MAX, true).unwrap());
        let bases: Vec<i64> = stored.iter().map(|h| h.base_offset).collect();
        assert_eq!(bases, vec![0, 3, 6], "{target:?}");
        assert_eq!(log.log_end_offset(), 9, "{target:?}");
    }
}
