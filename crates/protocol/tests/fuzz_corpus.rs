//! Replays the checked-in fuzz corpora through the exact code the fuzz targets run, so every seed
//! and every past finding stays covered by an ordinary `cargo test`.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    runnel_protocol::fuzzing::corpus_files(Path::new(env!("CARGO_MANIFEST_DIR")), target)
}

// Proves every request_frame corpus file runs through validate-then-decode without panicking.
#[test]
fn request_frame_corpus() {
    let files = corpus("request_frame");
    assert!(!files.is_empty());
    for file in files {
        runnel_protocol::fuzzing::request_frame(&std::fs::read(&file).unwrap());
    }
}

// Proves every record_batch corpus file runs through the batch validator without panicking.
#[test]
fn record_batch_corpus() {
    let files = corpus("record_batch");
    assert!(!files.is_empty());
    for file in files {
        runnel_protocol::fuzzing::record_batch(&std::fs::read(&file).unwrap());
    }
}

// Regenerates the record_batch seeds (run with --ignored): valid uncompressed batches made by
// kafka-protocol's encoder.
#[test]
#[ignore]
fn write_record_batch_seeds() {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/record_batch");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, count, producer_id) in [
        ("one-record", 1, -1),
        ("three-records", 3, -1),
        ("idempotent", 2, 7),
    ] {
        let records: Vec<Record> = (0..count)
            .map(|i| {
                let mut headers = kafka_protocol::indexmap::IndexMap::new();
                headers.insert(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"v")),
                );
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id,
                    producer_epoch: if producer_id < 0 { -1 } else { 0 },
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: if producer_id < 0 { -1 } else { i as i32 },
                    timestamp: 1_700_000_000_000 + i,
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(format!("value {i}"))),
                    headers,
                }
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        std::fs::write(dir.join(name), &buf).unwrap();
    }
}

// Regenerates the compressed record_batch seeds (run with --ignored): the `three-records` seed
// rebuilt in every codec by `rebuild_batch`, so the fuzzer starts inside each decompressor.
#[test]
#[ignore]
fn write_compressed_record_batch_seeds() {
    use runnel_protocol::batch::{
        rebuild_batch, BatchRecords, Compression, Rebuild, TimestampType,
    };
    use runnel_protocol::compression::DecompressLimits;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/record_batch");
    let plain = std::fs::read(dir.join("three-records")).unwrap();
    let records = BatchRecords::open(&plain, DecompressLimits::default()).unwrap();
    for (name, codec) in [
        ("three-records-gzip", Compression::Gzip),
        ("three-records-snappy", Compression::Snappy),
        ("three-records-lz4", Compression::Lz4),
        ("three-records-zstd", Compression::Zstd),
    ] {
        let batch = rebuild_batch(
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
        .unwrap();
        std::fs::write(dir.join(name), batch).unwrap();
    }
}
