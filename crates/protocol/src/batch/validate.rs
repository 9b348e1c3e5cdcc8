//! Validation of record batches: the rules a produced batch must pass before it is written
//! (`validate_batches`), the checks a stored batch must pass when it is read back
//! (`check_stored_batch`), and `BatchError`, the refusal every rule answers with.

use thiserror::Error;

use super::header::{
    check_crc, read_array, BatchHeader, Compression, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
    OFFSET_BATCH_LENGTH, OFFSET_MAGIC,
};
use super::records::walk_records;

/// Smallest `batchLength` Kafka's `ByteBufferLogInputStream` tolerates before looking at the
/// magic byte (`LegacyRecord.RECORD_OVERHEAD_V0`); smaller is reported as corrupt.
const RECORD_OVERHEAD_V0: i32 = 14;

/// Why a batch was refused. Each variant maps to exactly one Kafka error code in the broker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// `CORRUPT_MESSAGE` (2): bad CRC, truncated input, impossible lengths, unknown magic.
    #[error("corrupt record batch: {0}")]
    CorruptMessage(&'static str),
    /// `INVALID_RECORD` (87): well-framed batch whose content breaks a rule (record framing,
    /// offset deltas, counts, magic 0/1 on produce v3+, control batch from a client).
    #[error("invalid record batch: {0}")]
    InvalidRecord(&'static str),
    /// `MESSAGE_TOO_LARGE` (10): the batch is larger than `max.message.bytes`.
    #[error("record batch of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    /// `UNSUPPORTED_COMPRESSION_TYPE` (76): compression codec id 5, 6 or 7.
    #[error("unsupported compression codec id {0}")]
    UnsupportedCompression(u8),
    /// `UNKNOWN_SERVER_ERROR` (-1): re-encoding a batch for `compression.type` failed, which
    /// only a broken codec library does (Kafka's codecs throw a `KafkaException` there).
    #[error("compression failed: {0}")]
    CompressionFailed(&'static str),
}

/// One batch found by [`validate_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef {
    /// Byte offset of the batch's first byte in the input slice.
    pub position: usize,
    pub header: BatchHeader,
}

/// Splits `records` (the `records` field of one produce partition) into whole v2 batches and
/// validates each as Kafka's broker does for a CLIENT-origin append (`ProduceRequest
/// .validateRecords`, `UnifiedLog.analyzeAndValidateRecords`, `LogValidator.validateBatch`,
/// `DefaultRecord.readFrom`):
///
/// - empty input -> `InvalidRecord` (Kafka: "must have at least one record batch");
/// - `batchLength` < 14 or magic outside 0..=2 -> `CorruptMessage`; magic 0 or 1 ->
///   `InvalidRecord` (produce v3+ only takes v2); batch shorter than 61 bytes -> `CorruptMessage`;
/// - a trailing partial batch -> `CorruptMessage` (Kafka silently drops trailing partial bytes;
///   a real client never sends them, so we refuse instead of guessing);
/// - `baseOffset` != 0 -> `InvalidRecord`; size > `max_batch_bytes` -> `MessageTooLarge`;
///   CRC32C mismatch -> `CorruptMessage`; codec 5..=7 -> `UnsupportedCompression`;
/// - `lastOffsetDelta` < 0, `recordCount` <= 0, or `recordCount != lastOffsetDelta + 1`,
///   a control batch, or a producer id with a negative base sequence -> `InvalidRecord`;
/// - uncompressed batches: every record's varint framing is walked; offset deltas must be
///   0, 1, 2, ...; the count must match and nothing may overrun or be left over -> `InvalidRecord`.
///
/// Compressed batches are not decompressed (no decompression on the produce path). Several
/// batches are accepted; produce v3+ allows exactly one per partition, which the broker checks.
/// Batches read back from a segment (non-zero base offsets, compaction gaps) go through
/// [`check_stored_batch`] instead.
pub fn validate_batches(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchRef>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::InvalidRecord(
            "produce request must contain at least one record batch",
        ));
    }
    let mut batches = Vec::new();
    let mut position = 0usize;
    while position < records.len() {
        let rest = records
            .get(position..)
            .ok_or(BatchError::CorruptMessage("position past end"))?;
        let size_bytes = frame_size(rest)?;
        let batch = rest
            .get(..size_bytes)
            .ok_or(BatchError::CorruptMessage("trailing partial batch"))?;
        let header = validate_client_batch(batch, max_batch_bytes)?;
        batches.push(BatchRef { position, header });
        position = position
            .checked_add(size_bytes)
            .ok_or(BatchError::CorruptMessage("position overflow"))?;
    }
    Ok(batches)
}

/// Size in bytes of the batch at the front of `rest`, after Kafka's framing checks
/// (`ByteBufferLogInputStream.nextBatchSize` and the produce magic rule).
fn frame_size(rest: &[u8]) -> Result<usize, BatchError> {
    let length = i32::from_be_bytes(
        read_array(rest, OFFSET_BATCH_LENGTH)
            .map_err(|_| BatchError::CorruptMessage("trailing partial batch"))?,
    );
    if length < RECORD_OVERHEAD_V0 {
        return Err(BatchError::CorruptMessage(
            "batch length below the minimum record overhead",
        ));
    }
    let magic = i8::from_be_bytes(
        read_array(rest, OFFSET_MAGIC)
            .map_err(|_| BatchError::CorruptMessage("trailing partial batch"))?,
    );
    if !(0..=MAGIC_V2).contains(&magic) {
        return Err(BatchError::CorruptMessage("invalid magic byte"));
    }
    if magic != MAGIC_V2 {
        return Err(BatchError::InvalidRecord(
            "produce requests v3+ only accept record batches with magic 2",
        ));
    }
    let size_bytes = usize::try_from(length)
        .map_err(|_| BatchError::CorruptMessage("negative batch length"))?
        .checked_add(LOG_OVERHEAD)
        .ok_or(BatchError::CorruptMessage("batch length overflow"))?;
    if size_bytes > rest.len() {
        return Err(BatchError::CorruptMessage("trailing partial batch"));
    }
    if size_bytes < BATCH_HEADER_LEN {
        return Err(BatchError::CorruptMessage(
            "batch smaller than the v2 batch header",
        ));
    }
    Ok(size_bytes)
}

fn validate_client_batch(batch: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    // The base offset a client writes is not checked, as Kafka's `LogValidator` does not: the
    // broker assigns offsets on append and overwrites it.
    let header = BatchHeader::parse(batch)?;
    if batch.len() > max_batch_bytes {
        return Err(BatchError::MessageTooLarge {
            size_bytes: batch.len(),
            max_bytes: max_batch_bytes,
        });
    }
    check_crc(batch, &header)?;
    let compression = header.compression()?;
    if header.last_offset_delta < 0 {
        return Err(BatchError::InvalidRecord(
            "batch has an invalid offset range",
        ));
    }
    if header.record_count <= 0 {
        return Err(BatchError::InvalidRecord("invalid reported record count"));
    }
    if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(BatchError::InvalidRecord(
            "record count does not match the batch offset range",
        ));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "clients are not allowed to write control records",
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(BatchError::InvalidRecord(
            "idempotent batch with a negative base sequence",
        ));
    }
    if compression == Compression::None {
        let body = batch
            .get(BATCH_HEADER_LEN..)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?;
        walk_records(body, header.record_count, true, |_, _, _, _| {})?;
    }
    Ok(header)
}

/// Checks one batch read back from a segment, as Kafka's `LogSegment.recover` does with
/// `batch.ensureValid()`: magic 2, `batchLength` consistent with `buf` (`buf` must hold exactly
/// the batch), at least a full header, and the CRC. Record framing is not walked: stored
/// batches may be compressed or have compaction gaps in their offset deltas.
pub fn check_stored_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::CorruptMessage("invalid magic byte"));
    }
    if header.batch_length < 0 || header.size_bytes() != buf.len() {
        return Err(BatchError::CorruptMessage("batch length does not match"));
    }
    check_crc(buf, &header)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::header::{
        patch_base_offset, TimestampType, OFFSET_ATTRIBUTES, OFFSET_CRC, OFFSET_LAST_OFFSET_DELTA,
        OFFSET_PRODUCER_ID, OFFSET_RECORD_COUNT,
    };
    use crate::batch::records::for_each_record;
    use crate::batch::test_support::{batch_with, fix_crc, MAX};

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
    fn client_rules_base_offset_control_and_sequence() {
        // Any base offset is accepted (the broker assigns offsets); control batches and
        // idempotent batches without a sequence are refused.
        let mut batch = batch_with(1);
        patch_base_offset(&mut batch, 7).unwrap();
        assert_eq!(
            validate_batches(&batch, MAX).unwrap()[0].header.base_offset,
            7
        );
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
            let _ = for_each_record(
                &input[..cut],
                crate::compression::DecompressLimits::default(),
                |_, _| {},
            );
        }
    }
}
