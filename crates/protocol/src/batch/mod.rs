//! Record batch (magic v2) headers: parsing, validation and in-place patching.
//!
//! Layout of a v2 batch (all integers big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! ```
//!
//! `batchLength` counts the bytes after itself, so a batch occupies `batchLength + 12` bytes. The
//! CRC32C covers `attributes` to the end of the batch, which is why the broker can patch
//! `baseOffset` and `partitionLeaderEpoch` without recomputing it.
//!
//! Every input here is hostile: no panics, no unchecked indexing and no allocation sized from a
//! count read off the wire. The only allocation in [`validate_batches`] is the result vector,
//! which grows by one entry per batch actually present (each at least [`BATCH_HEADER_LEN`] bytes).
//!
//! One file per concern: `header` holds the fixed header (field offsets, decoding, the CRC and the
//! in-place patches), `validate` the rules a produced or stored batch must pass and `BatchError`,
//! `records` the walk over the records inside a batch, and `encode` the encoder for uncompressed
//! batches.

mod encode;
mod header;
mod records;
mod validate;

pub use encode::{encode_uncompressed_batch, BatchSpec, RecordSpec};
pub use header::{
    decrement_sequence, increment_sequence, patch_base_offset, patch_log_append_time,
    patch_partition_leader_epoch, BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN,
    LOG_OVERHEAD, MAGIC_V2, NO_SEQUENCE,
};
pub use records::{for_each_record, for_each_stored_record};
pub use validate::{check_stored_batch, validate_batches, BatchError, BatchRef};

#[cfg(test)]
mod tests {
    use super::header::{
        OFFSET_ATTRIBUTES, OFFSET_BATCH_LENGTH, OFFSET_CRC, OFFSET_LAST_OFFSET_DELTA, OFFSET_MAGIC,
        OFFSET_PRODUCER_ID, OFFSET_RECORD_COUNT,
    };
    use super::*;

    const MAX: usize = 1 << 20;

    /// A valid client batch: base offset 0, `n` records with small keys and values.
    fn batch_with(n: usize) -> Vec<u8> {
        let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
        let records = keys
            .iter()
            .enumerate()
            .map(|(i, k)| RecordSpec {
                timestamp_delta: i as i64,
                key: Some(k),
                value: Some(b"value"),
                headers: vec![(b"h".as_slice(), Some(b"v".as_slice()))],
            })
            .collect();
        encode_uncompressed_batch(&BatchSpec {
            base_timestamp: 1_000,
            records,
            ..BatchSpec::default()
        })
    }

    /// Rewrites the CRC after a test edits covered bytes, so the edit reaches later checks.
    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
        batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn valid_batch_is_accepted_and_header_decoded() {
        // A hand-built 3-record batch passes and its header fields read back as written.
        let batch = batch_with(3);
        let refs = validate_batches(&batch, MAX).unwrap();
        assert_eq!(refs.len(), 1);
        let h = refs[0].header;
        assert_eq!(refs[0].position, 0);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.size_bytes(), batch.len());
        assert_eq!(h.compression().unwrap(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional() && !h.is_control());
    }

    #[test]
    fn several_batches_are_split_at_their_positions() {
        // Two concatenated batches come back as two refs with the right byte positions.
        let mut input = batch_with(2);
        let first_len = input.len();
        input.extend_from_slice(&batch_with(4));
        let refs = validate_batches(&input, MAX).unwrap();
        assert_eq!(
            refs.iter().map(|r| r.position).collect::<Vec<_>>(),
            vec![0, first_len]
        );
        assert_eq!(refs[1].header.record_count, 4);
    }

    #[test]
    fn empty_input_is_invalid_record() {
        // Kafka answers INVALID_RECORD when a produce partition has no batch at all.
        assert!(matches!(
            validate_batches(&[], MAX),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn flipped_crc_byte_is_corrupt() {
        // Any flipped byte under the CRC makes the batch CORRUPT_MESSAGE.
        let mut batch = batch_with(2);
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::CorruptMessage(_))
        ));
        let mut batch = batch_with(2);
        batch[OFFSET_CRC] ^= 0x80;
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::CorruptMessage(_))
        ));
    }

    #[test]
    fn truncated_input_is_corrupt_at_every_length() {
        // Every strict prefix of a valid input (a torn tail) is refused without panicking.
        let mut input = batch_with(3);
        let first_len = input.len();
        input.extend_from_slice(&batch_with(1));
        for len in (1..input.len()).filter(|&len| len != first_len) {
            let result = validate_batches(&input[..len], MAX);
            assert!(result.is_err(), "prefix of {len} bytes accepted");
        }
    }

    #[test]
    fn count_mismatch_is_invalid_record() {
        // recordCount disagreeing with lastOffsetDelta + 1, or with the records present, is refused.
        let mut batch = batch_with(3);
        batch[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
        // Both count and delta say 4 but only 3 records are there.
        batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
            .copy_from_slice(&3i32.to_be_bytes());
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
        // Both say 2 but 3 records are there: bytes left over.
        for (off, v) in [(OFFSET_RECORD_COUNT, 2i32), (OFFSET_LAST_OFFSET_DELTA, 1)] {
            batch[off..off + 4].copy_from_slice(&v.to_be_bytes());
        }
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn huge_and_negative_record_counts_are_refused_without_allocating() {
        // A lying count (i32::MAX, or negative) fails on the bytes, not on memory.
        for count in [i32::MAX, -1, 0, i32::MIN] {
            let mut batch = batch_with(1);
            batch[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4]
                .copy_from_slice(&count.to_be_bytes());
            batch[OFFSET_LAST_OFFSET_DELTA..OFFSET_LAST_OFFSET_DELTA + 4]
                .copy_from_slice(&count.wrapping_sub(1).to_be_bytes());
            fix_crc(&mut batch);
            assert!(matches!(
                validate_batches(&batch, MAX),
                Err(BatchError::InvalidRecord(_))
            ));
        }
    }

    #[test]
    fn negative_and_tiny_batch_lengths_are_corrupt() {
        // batchLength below the minimum overhead, negative, or past the input is CORRUPT_MESSAGE.
        for length in [-1i32, i32::MIN, 0, 13, 20, i32::MAX] {
            let mut batch = batch_with(1);
            batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
                .copy_from_slice(&length.to_be_bytes());
            assert!(
                matches!(
                    validate_batches(&batch, MAX),
                    Err(BatchError::CorruptMessage(_))
                ),
                "length {length}"
            );
        }
    }

    #[test]
    fn negative_record_length_and_field_lengths_are_invalid() {
        // A record whose varint length is negative, or whose key length is -2, is INVALID_RECORD.
        let mut batch = batch_with(1);
        batch[BATCH_HEADER_LEN] = 0x01; // zig-zag -1
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
        // Layout of record 0: len, attributes, tsDelta(0), offsetDelta(0), key len...
        let mut batch = batch_with(1);
        batch[BATCH_HEADER_LEN + 4] = 0x03; // zig-zag -2
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn header_count_of_two_to_the_31_is_invalid() {
        // A header count varint of 2^31 (wraps negative, as in Java) or a huge positive count is refused.
        let key = b"k";
        for count in [i64::from(i32::MIN), i64::from(i32::MAX)] {
            // Build a one-record batch by hand with the given header count varint.
            let mut rec = vec![0u8, 0, 0];
            rec.push(2); // key length 1
            rec.extend_from_slice(key);
            rec.push(1); // null value
            let zz = ((count << 1) ^ (count >> 63)) as u64 & 0xffff_ffff;
            let mut v = zz;
            while v >= 0x80 {
                rec.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            rec.push(v as u8);
            let mut batch = batch_with(1);
            batch.truncate(BATCH_HEADER_LEN);
            batch.push((rec.len() as u8) << 1);
            batch.extend_from_slice(&rec);
            let length = (batch.len() - LOG_OVERHEAD) as i32;
            batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
                .copy_from_slice(&length.to_be_bytes());
            fix_crc(&mut batch);
            assert!(matches!(
                validate_batches(&batch, MAX),
                Err(BatchError::InvalidRecord(_))
            ));
        }
    }

    #[test]
    fn out_of_order_offset_delta_is_invalid() {
        // The second record claiming offset delta 0 again is INVALID_RECORD.
        let mut batch = batch_with(2);
        let first_len = usize::from(batch[BATCH_HEADER_LEN] >> 1) + 1;
        // record 1: len byte, attributes, tsDelta (1 -> 0x02), offsetDelta (1 -> 0x02)
        let at = BATCH_HEADER_LEN + first_len + 3;
        assert_eq!(batch[at], 0x02);
        batch[at] = 0x00;
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn wrong_magic_answers_like_kafka() {
        // Magic 0/1 is INVALID_RECORD (produce v3+ rule); magic 3 or -1 is CORRUPT_MESSAGE.
        for (magic, invalid) in [(0i8, true), (1, true), (3, false), (-1, false)] {
            let mut batch = batch_with(1);
            batch[OFFSET_MAGIC] = magic as u8;
            let result = validate_batches(&batch, MAX);
            if invalid {
                assert!(
                    matches!(result, Err(BatchError::InvalidRecord(_))),
                    "magic {magic}"
                );
            } else {
                assert!(
                    matches!(result, Err(BatchError::CorruptMessage(_))),
                    "magic {magic}"
                );
            }
        }
    }

    #[test]
    fn oversized_batch_is_message_too_large() {
        // A batch bigger than max.message.bytes is MESSAGE_TOO_LARGE.
        let batch = batch_with(3);
        assert_eq!(
            validate_batches(&batch, batch.len() - 1),
            Err(BatchError::MessageTooLarge {
                size_bytes: batch.len(),
                max_bytes: batch.len() - 1
            })
        );
        assert!(validate_batches(&batch, batch.len()).is_ok());
    }

    #[test]
    fn unknown_codec_is_unsupported_and_compressed_is_not_walked() {
        // Codec 5..=7 is refused; a gzip-flagged batch is accepted without decompression.
        let mut batch = batch_with(1);
        batch[OFFSET_ATTRIBUTES + 1] |= 5;
        fix_crc(&mut batch);
        assert_eq!(
            validate_batches(&batch, MAX),
            Err(BatchError::UnsupportedCompression(5))
        );
        let mut batch = batch_with(1);
        batch[OFFSET_ATTRIBUTES + 1] |= 1;
        batch.truncate(BATCH_HEADER_LEN + 3); // garbage "compressed" payload
        let length = (batch.len() - LOG_OVERHEAD) as i32;
        batch[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        fix_crc(&mut batch);
        let refs = validate_batches(&batch, MAX).unwrap();
        assert_eq!(refs[0].header.compression().unwrap(), Compression::Gzip);
    }

    #[test]
    fn client_rules_nonzero_base_offset_control_and_sequence() {
        // Non-zero base offset, control batches and idempotent batches without a sequence are refused.
        let mut batch = batch_with(1);
        patch_base_offset(&mut batch, 7).unwrap();
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
        let mut batch = batch_with(1);
        batch[OFFSET_ATTRIBUTES + 1] |= 0x20;
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
        let mut batch = batch_with(1);
        batch[OFFSET_PRODUCER_ID..OFFSET_PRODUCER_ID + 8].copy_from_slice(&5i64.to_be_bytes());
        fix_crc(&mut batch);
        assert!(matches!(
            validate_batches(&batch, MAX),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn patches_keep_the_batch_valid() {
        // Offset and epoch patches leave the CRC valid; LogAppendTime rewrites it correctly.
        let mut batch = batch_with(2);
        patch_base_offset(&mut batch, 42).unwrap();
        patch_partition_leader_epoch(&mut batch, 9).unwrap();
        patch_log_append_time(&mut batch, 123_456).unwrap();
        let h = check_stored_batch(&batch).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.max_timestamp, 123_456);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        let mut timestamps = Vec::new();
        for_each_record(&batch, |delta, ts| timestamps.push((delta, ts))).unwrap();
        assert_eq!(timestamps, vec![(0, 123_456), (1, 123_456)]);
        assert!(patch_base_offset(&mut [0u8; 10], 1).is_err());
        assert!(patch_log_append_time(&mut batch[..60], 1).is_err());
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        // incrementSequence wraps past i32::MAX to 0; NO_SEQUENCE stays NO_SEQUENCE.
        let mut h = BatchHeader::parse(&batch_with(3)).unwrap();
        h.base_sequence = i32::MAX - 1;
        assert_eq!(h.last_sequence(), 0);
        h.base_sequence = NO_SEQUENCE;
        assert_eq!(h.last_sequence(), NO_SEQUENCE);
        assert_eq!(decrement_sequence(0, 2), i32::MAX - 1);
        assert_eq!(increment_sequence(5, 3), 8);
    }

    #[test]
    fn pseudo_random_garbage_never_panics() {
        // Mutated and random inputs only ever produce errors, never panics (a cheap fuzz smoke test).
        let base = batch_with(3);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut input = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % input.len();
                input[i] = next() as u8;
            }
            let cut = (next() as usize) % (input.len() + 1);
            let _ = validate_batches(&input[..cut], MAX);
            let _ = check_stored_batch(&input[..cut]);
            let _ = for_each_record(&input[..cut], |_, _| {});
        }
    }

    // Stored batches are walked record by record with absolute offsets, keys and values (how the
    // group coordinator replays __consumer_offsets), and truncated input is an error, never a panic.
    #[test]
    fn stored_records_are_walked_with_offsets_keys_and_values() {
        let spec = |values: &[&'static [u8]]| BatchSpec {
            records: values
                .iter()
                .map(|v| RecordSpec {
                    timestamp_delta: 0,
                    key: Some(b"k"),
                    value: if v.is_empty() { None } else { Some(v) },
                    headers: vec![],
                })
                .collect(),
            ..Default::default()
        };
        let mut first = encode_uncompressed_batch(&spec(&[b"a", b"b"]));
        let mut second = encode_uncompressed_batch(&spec(&[b""]));
        patch_base_offset(&mut first, 5).expect("patch");
        patch_base_offset(&mut second, 7).expect("patch");
        let mut log = first.clone();
        log.extend_from_slice(&second);
        let mut seen = Vec::new();
        for_each_stored_record(&log, |offset, key, value| {
            seen.push((offset, key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec)));
        })
        .expect("walk");
        assert_eq!(
            seen,
            vec![
                (5, Some(b"k".to_vec()), Some(b"a".to_vec())),
                (6, Some(b"k".to_vec()), Some(b"b".to_vec())),
                (7, Some(b"k".to_vec()), None),
            ]
        );
        for cut in 1..log.len() {
            let _ = for_each_stored_record(&log[..cut], |_, _, _| {});
        }
        assert!(for_each_stored_record(&log[..log.len() - 1], |_, _, _| {}).is_err());
    }
}
