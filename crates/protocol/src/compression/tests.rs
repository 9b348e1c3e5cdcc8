//! Round trips of every codec at Kafka's levels, both snappy framings, and the caps.

use super::*;
use crate::batch::{
    encode_uncompressed_batch, rebuild_batch, BatchHeader, BatchRecords, BatchSpec, Rebuild,
    RecordSpec, TimestampType, BATCH_HEADER_LEN,
};

fn sample(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
        .collect()
}

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn every_codec_round_trips_at_every_kafka_level_boundary() {
    // Each codec decodes what it encodes, at its default level and Kafka's bounds.
    let input = sample(300 * 1024);
    let levels: [(Compression, &[Option<i32>]); 4] = [
        (Compression::Gzip, &[None, Some(-1), Some(1), Some(9)]),
        (Compression::Snappy, &[None]),
        (Compression::Lz4, &[None, Some(1), Some(9), Some(17)]),
        (
            Compression::Zstd,
            &[None, Some(-5), Some(1), Some(3), Some(19)],
        ),
    ];
    for (codec, levels) in levels {
        for level in levels {
            let packed = compress(codec, *level, &input).unwrap();
            assert!(
                packed.len() < input.len(),
                "{codec:?} {level:?} did not compress"
            );
            let unpacked = decompress(codec, &packed, input.len()).unwrap();
            assert_eq!(unpacked, input, "{codec:?} {level:?}");
        }
    }
}

#[test]
fn levels_change_the_output() {
    // A level reaches the codec: the fastest and the strongest level give different bytes.
    let input = sample(200 * 1024);
    for (codec, low, high) in [
        (Compression::Gzip, 1, 9),
        (Compression::Lz4, 1, 17),
        (Compression::Zstd, 1, 19),
    ] {
        let a = compress(codec, Some(low), &input).unwrap();
        let b = compress(codec, Some(high), &input).unwrap();
        assert_ne!(a, b, "{codec:?}");
    }
}

#[test]
fn frames_are_kafkas() {
    // gzip magic with OS byte 0 (Java's), xerial's snappy magic, the LZ4 frame magic with
    // independent 64 KiB blocks, the zstd frame magic.
    let input = sample(1000);
    let gz = compress(Compression::Gzip, None, &input).unwrap();
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(gz[9], 0);
    let sn = compress(Compression::Snappy, None, &input).unwrap();
    assert_eq!(&sn[..8], &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0]);
    assert_eq!(&sn[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
    let lz = compress(Compression::Lz4, None, &input).unwrap();
    assert_eq!(&lz[..4], &[0x04, 0x22, 0x4d, 0x18]);
    assert_eq!(lz[4] & 0x20, 0x20, "block independence flag");
    assert_eq!(lz[5], 0x40, "64 KiB blocks");
    let zs = compress(Compression::Zstd, None, &input).unwrap();
    assert_eq!(&zs[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
fn plain_and_concatenated_snappy_are_read() {
    // librdkafka's plain raw snappy and two xerial streams back to back both decode.
    let input = sample(100 * 1024);
    let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
    assert_eq!(
        decompress(Compression::Snappy, &raw, input.len()).unwrap(),
        input
    );
    let mut twice = compress(Compression::Snappy, None, &input).unwrap();
    twice.extend(compress(Compression::Snappy, None, &input).unwrap());
    let out = decompress(Compression::Snappy, &twice, 2 * input.len()).unwrap();
    assert_eq!(out.len(), 2 * input.len());
}

#[test]
fn output_past_the_cap_is_corrupt_for_every_codec() {
    // A stream that inflates past the cap is CORRUPT_MESSAGE, one byte over included.
    let zeros = vec![0u8; 4 * 1024 * 1024];
    for codec in CODECS {
        let packed = compress(codec, None, &zeros).unwrap();
        assert!(
            matches!(
                decompress(codec, &packed, zeros.len() - 1),
                Err(BatchError::CorruptMessage(_))
            ),
            "{codec:?}"
        );
        assert_eq!(
            decompress(codec, &packed, zeros.len()).unwrap().len(),
            zeros.len()
        );
    }
}

#[test]
fn garbage_and_truncation_are_corrupt_never_a_panic() {
    // Undecodable bytes are CORRUPT_MESSAGE; cut streams never panic.
    let input = sample(50 * 1024);
    for codec in CODECS {
        assert!(
            matches!(
                decompress(codec, b"\x82SNAPPY\0garbage-garbage-garbage", 1 << 20),
                Err(BatchError::CorruptMessage(_))
            ),
            "{codec:?}"
        );
        let packed = compress(codec, None, &input).unwrap();
        for cut in [1, 7, 16, packed.len() / 2, packed.len() - 1] {
            let _ = decompress(codec, &packed[..cut], 1 << 20);
        }
    }
}

fn batch(records: usize, value: &[u8]) -> Vec<u8> {
    encode_uncompressed_batch(&BatchSpec {
        base_timestamp: 1_000,
        producer_id: 7,
        producer_epoch: 1,
        base_sequence: 5,
        records: (0..records)
            .map(|i| RecordSpec {
                timestamp_delta: i as i64 * 10,
                key: Some(b"k"),
                value: Some(value),
                headers: vec![(b"h".as_slice(), Some(b"v".as_slice()))],
            })
            .collect(),
        ..BatchSpec::default()
    })
}

fn rebuild(codec: Compression, timestamp_type: TimestampType) -> Rebuild {
    Rebuild {
        base_offset: 100,
        partition_leader_epoch: 3,
        codec,
        level: None,
        timestamp_type,
        log_append_time_ms: 555_000,
    }
}

#[test]
fn a_rebuilt_batch_keeps_every_record_and_kafkas_header_rules() {
    // Uncompressed -> each codec -> back: same records; header as Kafka's builder writes it.
    let source = batch(5, b"value");
    let records = BatchRecords::open(&source, DecompressLimits::default()).unwrap();
    let mut expected = Vec::new();
    records
        .for_each(|r| {
            expected.push((
                r.offset_delta,
                r.timestamp,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                r.headers.to_vec(),
            ))
        })
        .unwrap();
    for codec in CODECS.into_iter().chain([Compression::None]) {
        let out = rebuild_batch(&records, &rebuild(codec, TimestampType::CreateTime)).unwrap();
        let header = crate::batch::check_stored_batch(&out).unwrap();
        assert_eq!(header.compression().unwrap(), codec);
        assert_eq!(
            (
                header.base_offset,
                header.last_offset_delta,
                header.record_count
            ),
            (100, 4, 5)
        );
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (1_000, 1_040)
        );
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 1, 5)
        );
        assert_eq!(header.partition_leader_epoch, 3);
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        let again = BatchRecords::open(&out, DecompressLimits::default()).unwrap();
        let mut seen = Vec::new();
        again
            .for_each(|r| {
                seen.push((
                    r.offset_delta,
                    r.timestamp,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                    r.headers.to_vec(),
                ))
            })
            .unwrap();
        assert_eq!(seen, expected, "{codec:?}");
    }
    // LogAppendTime: the flag and maxTimestamp = append time; base timestamp stays the first
    // record's, and records read back carry the append time.
    let out = rebuild_batch(
        &records,
        &rebuild(Compression::Zstd, TimestampType::LogAppendTime),
    )
    .unwrap();
    let header = BatchHeader::parse(&out).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(
        (header.base_timestamp, header.max_timestamp),
        (1_000, 555_000)
    );
}

#[test]
fn a_decompression_bomb_is_corrupt_message() {
    // A small zstd batch that inflates past the cap (one 65 MiB value) is refused, not held.
    let value = vec![0u8; DECOMPRESSED_BYTES_FLOOR * 4 + 4096];
    let plain = batch(1, &value);
    let records = BatchRecords::open(
        &plain,
        DecompressLimits {
            output_bytes_max: usize::MAX,
            record_count_max: 10,
        },
    )
    .unwrap();
    let bomb = rebuild_batch(
        &records,
        &rebuild(Compression::Zstd, TimestampType::CreateTime),
    )
    .unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {}", bomb.len());
    let limits = DecompressLimits::for_max_message_bytes(1024 * 1024 + 12);
    assert_eq!(limits.output_bytes_max, 64 * 1024 * 1024 + 64 * 12);
    assert!(matches!(
        BatchRecords::open(&bomb, limits),
        Err(BatchError::CorruptMessage(_))
    ));
}

#[test]
fn a_record_count_past_the_cap_is_refused_before_decompressing() {
    // A header claiming more records than the cap allows is CORRUPT_MESSAGE, body unread.
    let mut plain = batch(2, b"v");
    plain[BATCH_HEADER_LEN - 4..BATCH_HEADER_LEN].copy_from_slice(&i32::MAX.to_be_bytes());
    let limits = DecompressLimits::default();
    assert!(limits.record_count_max < i32::MAX as usize);
    assert!(matches!(
        BatchRecords::open(&plain, limits),
        Err(BatchError::CorruptMessage(_))
    ));
    let limits = DecompressLimits::for_max_message_bytes(0);
    assert_eq!(limits.output_bytes_max, DECOMPRESSED_BYTES_FLOOR);
    assert_eq!(
        DecompressLimits::for_max_message_bytes(usize::MAX).output_bytes_max,
        DECOMPRESSED_BYTES_CEILING
    );
}

#[test]
fn corrupted_compressed_batches_never_panic() {
    // Seeded byte flips and cuts of a batch in every codec go through open, walk and rebuild
    // without a panic: every outcome is a record walk or a BatchError.
    let source = batch(40, b"a value, a value, a value");
    let records = BatchRecords::open(&source, DecompressLimits::default()).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for codec in CODECS {
        let good = rebuild_batch(&records, &rebuild(codec, TimestampType::CreateTime)).unwrap();
        for _ in 0..400 {
            let mut bad = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = BATCH_HEADER_LEN + (next() as usize) % (bad.len() - BATCH_HEADER_LEN);
                bad[at] ^= 1 << (next() % 8);
            }
            if next() % 4 == 0 {
                let cut = BATCH_HEADER_LEN + (next() as usize) % (bad.len() - BATCH_HEADER_LEN);
                bad.truncate(cut);
                let length = (bad.len() - 12) as i32;
                bad[8..12].copy_from_slice(&length.to_be_bytes());
            }
            if let Ok(opened) = BatchRecords::open(&bad, DecompressLimits::default()) {
                let _ = opened.for_each(|_| {});
                let _ = rebuild_batch(
                    &opened,
                    &rebuild(Compression::Zstd, TimestampType::CreateTime),
                );
            }
        }
    }
}

#[test]
fn a_rebuilt_batch_keeps_the_transactional_and_control_bits() {
    // The attributes Kafka's builder carries over (transactional, control) survive a rebuild.
    let mut source = batch(2, b"v");
    source[22] |= 0x30;
    let crc = crc32c::crc32c(&source[21..]);
    source[17..21].copy_from_slice(&crc.to_be_bytes());
    let records = BatchRecords::open(&source, DecompressLimits::default()).unwrap();
    let out = rebuild_batch(
        &records,
        &rebuild(Compression::Lz4, TimestampType::CreateTime),
    )
    .unwrap();
    let header = BatchHeader::parse(&out).unwrap();
    assert!(header.is_transactional() && header.is_control());
    assert_eq!(header.compression().unwrap(), Compression::Lz4);
}

#[test]
fn retained_records_keep_their_offsets_and_the_batch_its_range() {
    // A cleaner's partial batch: same codec, base offset and lastOffsetDelta, kept records at their
    // own offsets, base timestamp the first kept record's, or the delete horizon with its bit.
    let plain = batch(5, b"v");
    let records = BatchRecords::open(&plain, DecompressLimits::default()).unwrap();
    let zstd = rebuild_batch(
        &records,
        &rebuild(Compression::Zstd, TimestampType::CreateTime),
    )
    .unwrap();
    let source = BatchRecords::open(&zstd, DecompressLimits::default()).unwrap();
    let kept = crate::batch::retain_records(&source, |r| r.offset_delta % 2 == 1, None)
        .unwrap()
        .unwrap();
    let header = crate::batch::check_stored_batch(&kept).unwrap();
    assert_eq!(header.compression().unwrap(), Compression::Zstd);
    assert_eq!(
        (
            header.base_offset,
            header.last_offset_delta,
            header.record_count
        ),
        (100, 4, 2)
    );
    assert_eq!(
        (header.base_timestamp, header.max_timestamp),
        (1_010, 1_030)
    );
    assert_eq!(header.attributes & 0x40, 0);
    let mut seen = Vec::new();
    BatchRecords::open(&kept, DecompressLimits::default())
        .unwrap()
        .for_each(|r| seen.push((r.offset_delta, r.timestamp)))
        .unwrap();
    assert_eq!(seen, [(1, 1_010), (3, 1_030)]);
    let horizon = crate::batch::retain_records(&source, |r| r.offset_delta == 4, Some(9_000))
        .unwrap()
        .unwrap();
    let header = BatchHeader::parse(&horizon).unwrap();
    assert_eq!(
        (header.base_timestamp, header.attributes & 0x40),
        (9_000, 0x40)
    );
    assert!(crate::batch::retain_records(&source, |_| false, None)
        .unwrap()
        .is_none());
}

#[test]
fn every_codec_keeps_its_codec_when_records_are_retained() {
    // A cleaner rewriting part of a compressed batch writes it with the batch's own codec, and
    // the kept records read back with their offsets, timestamps, keys, values and headers.
    let plain = batch(20, b"a value that compresses well, well, well");
    let records = BatchRecords::open(&plain, DecompressLimits::default()).unwrap();
    let keep = |r: &crate::batch::RecordView<'_>| r.offset_delta == 3 || r.offset_delta == 19;
    let fields = |r: crate::batch::RecordView<'_>| {
        (
            r.offset_delta,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
            r.headers.to_vec(),
        )
    };
    for codec in CODECS {
        let compressed =
            rebuild_batch(&records, &rebuild(codec, TimestampType::CreateTime)).unwrap();
        let source = BatchRecords::open(&compressed, DecompressLimits::default()).unwrap();
        let mut expected = Vec::new();
        source
            .for_each(|r| {
                if keep(&r) {
                    expected.push(fields(r));
                }
            })
            .unwrap();
        assert_eq!(expected.len(), 2);
        let kept = crate::batch::retain_records(&source, keep, None)
            .unwrap()
            .unwrap();
        let header = crate::batch::check_stored_batch(&kept).unwrap();
        assert_eq!(header.compression().unwrap(), codec);
        assert_eq!((header.base_offset, header.last_offset()), (100, 119));
        let mut seen = Vec::new();
        BatchRecords::open(&kept, DecompressLimits::default())
            .unwrap()
            .for_each(|r| seen.push(fields(r)))
            .unwrap();
        assert_eq!(seen, expected, "{codec:?}");
    }
}

#[test]
fn an_empty_batch_keeps_the_producer_state_and_offsets_of_its_source() {
    // Kafka's writeEmptyHeader: no records, no codec, no delete horizon, no base timestamp; the
    // offsets, producer fields, leader epoch, max timestamp and the transactional bit remain.
    let plain = batch(3, b"v");
    let records = BatchRecords::open(&plain, DecompressLimits::default()).unwrap();
    let gzip = rebuild_batch(
        &records,
        &rebuild(Compression::Gzip, TimestampType::CreateTime),
    )
    .unwrap();
    let source = BatchRecords::open(&gzip, DecompressLimits::default()).unwrap();
    let with_horizon = crate::batch::retain_records(&source, |_| true, Some(9_000))
        .unwrap()
        .unwrap();
    let mut original = BatchHeader::parse(&with_horizon).unwrap();
    assert_eq!(original.delete_horizon_ms(), Some(9_000));
    original.attributes |= 0x10;
    let empty = crate::batch::empty_batch(&original);
    assert_eq!(empty.len(), BATCH_HEADER_LEN);
    let header = crate::batch::check_stored_batch(&empty).unwrap();
    assert_eq!(header.compression().unwrap(), Compression::None);
    assert_eq!(header.delete_horizon_ms(), None);
    assert!(header.is_transactional());
    assert_eq!(
        (
            header.base_offset,
            header.last_offset(),
            header.record_count,
            header.base_timestamp,
            header.max_timestamp,
        ),
        (100, 102, 0, -1, 1_020)
    );
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            header.partition_leader_epoch
        ),
        (7, 1, 5, 3)
    );
}
