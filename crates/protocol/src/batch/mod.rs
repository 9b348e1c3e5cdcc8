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

mod encode;
mod records;
mod validate;

pub use encode::{encode_uncompressed_batch, BatchSpec, RecordSpec};
pub use records::{for_each_record, for_each_stored_record};
pub use validate::{check_stored_batch, validate_batches, BatchError, BatchRef};

/// Bytes from `baseOffset` through `recordCount`: the fixed part of every v2 batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength` (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format produce v3+ accepts.
pub const MAGIC_V2: i8 = 2;
/// `RecordBatch.NO_SEQUENCE`.
pub const NO_SEQUENCE: i32 = -1;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Attribute bit 3: who set the timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamps are kept (Kafka's default `message.timestamp.type`).
    #[default]
    CreateTime,
    /// The broker stamps `maxTimestamp` with its clock at append.
    LogAppendTime,
}

/// The 61 fixed bytes of a v2 batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn read_array<const N: usize>(buf: &[u8], offset: usize) -> Result<[u8; N], BatchError> {
    let end = offset
        .checked_add(N)
        .ok_or(BatchError::CorruptMessage("offset overflow"))?;
    buf.get(offset..end)
        .and_then(|slice| slice.try_into().ok())
        .ok_or(BatchError::CorruptMessage("truncated batch header"))
}

fn write_bytes(buf: &mut [u8], offset: usize, bytes: &[u8]) -> Result<(), BatchError> {
    let end = offset
        .checked_add(bytes.len())
        .ok_or(BatchError::CorruptMessage("offset overflow"))?;
    buf.get_mut(offset..end)
        .ok_or(BatchError::CorruptMessage("truncated batch header"))?
        .copy_from_slice(bytes);
    Ok(())
}

impl BatchHeader {
    /// Decodes the fixed header from the first 61 bytes of `buf`. Checks only that the bytes
    /// are there; [`validate_batches`] and [`check_stored_batch`] apply the rules.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::CorruptMessage("truncated batch header"));
        }
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(read_array(buf, OFFSET_BASE_OFFSET)?),
            batch_length: i32::from_be_bytes(read_array(buf, OFFSET_BATCH_LENGTH)?),
            partition_leader_epoch: i32::from_be_bytes(read_array(
                buf,
                OFFSET_PARTITION_LEADER_EPOCH,
            )?),
            magic: i8::from_be_bytes(read_array(buf, OFFSET_MAGIC)?),
            crc: u32::from_be_bytes(read_array(buf, OFFSET_CRC)?),
            attributes: i16::from_be_bytes(read_array(buf, OFFSET_ATTRIBUTES)?),
            last_offset_delta: i32::from_be_bytes(read_array(buf, OFFSET_LAST_OFFSET_DELTA)?),
            base_timestamp: i64::from_be_bytes(read_array(buf, OFFSET_BASE_TIMESTAMP)?),
            max_timestamp: i64::from_be_bytes(read_array(buf, OFFSET_MAX_TIMESTAMP)?),
            producer_id: i64::from_be_bytes(read_array(buf, OFFSET_PRODUCER_ID)?),
            producer_epoch: i16::from_be_bytes(read_array(buf, OFFSET_PRODUCER_EPOCH)?),
            base_sequence: i32::from_be_bytes(read_array(buf, OFFSET_BASE_SEQUENCE)?),
            record_count: i32::from_be_bytes(read_array(buf, OFFSET_RECORD_COUNT)?),
        })
    }

    /// Codec id 0..=4; 5..=7 are unassigned and refused like Kafka refuses unknown codecs.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        // The mask keeps the value in 0..=7, so the cast cannot truncate.
        let id = (self.attributes & ATTR_COMPRESSION_MASK) as u8;
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::UnsupportedCompression(other)),
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Offset of the last record; wraps rather than panics on a hostile header (validation
    /// rejects such batches anyway).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence of the last record, wrapping past `i32::MAX` to 0 like Kafka's
    /// `DefaultRecordBatch.incrementSequence`; `NO_SEQUENCE` stays `NO_SEQUENCE`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Total bytes of the batch on the wire and on disk (`batchLength + 12`). A negative
    /// `batch_length` yields a size below the header length, which validation refuses.
    pub fn size_bytes(&self) -> usize {
        usize::try_from(self.batch_length)
            .unwrap_or(0)
            .saturating_add(LOG_OVERHEAD)
    }

    /// True when the batch carries an idempotent/transactional producer id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX - increment {
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence.wrapping_add(increment)
    }
}

/// Kafka's `DefaultRecordBatch.decrementSequence`: the inverse of [`increment_sequence`].
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX - (decrement - sequence) + 1
    } else {
        sequence - decrement
    }
}

fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let covered = batch
        .get(OFFSET_ATTRIBUTES..)
        .ok_or(BatchError::CorruptMessage("truncated batch"))?;
    if crc32c::crc32c(covered) != header.crc {
        return Err(BatchError::CorruptMessage("record batch CRC mismatch"));
    }
    Ok(())
}

/// Assigns the batch's offsets. `baseOffset` is outside the CRC, so no recomputation.
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    require_header(batch)?;
    write_bytes(batch, OFFSET_BASE_OFFSET, &base_offset.to_be_bytes())
}

/// Stamps the leader epoch the batch was appended under (outside the CRC).
pub fn patch_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    require_header(batch)?;
    write_bytes(batch, OFFSET_PARTITION_LEADER_EPOCH, &epoch.to_be_bytes())
}

/// LogAppendTime: set the timestamp-type bit, `maxTimestamp = now_ms`, recompute the CRC, as
/// Kafka's `DefaultRecordBatch.setMaxTimestamp` does. `batch` must hold exactly one batch.
pub fn patch_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), BatchError> {
    let header = require_header(batch)?;
    if header.batch_length < 0 || header.size_bytes() != batch.len() {
        return Err(BatchError::CorruptMessage("batch length does not match"));
    }
    let attributes = header.attributes | ATTR_TIMESTAMP_TYPE;
    write_bytes(batch, OFFSET_ATTRIBUTES, &attributes.to_be_bytes())?;
    write_bytes(batch, OFFSET_MAX_TIMESTAMP, &now_ms.to_be_bytes())?;
    let crc = crc32c::crc32c(
        batch
            .get(OFFSET_ATTRIBUTES..)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?,
    );
    write_bytes(batch, OFFSET_CRC, &crc.to_be_bytes())
}

fn require_header(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    BatchHeader::parse(batch)
}

#[cfg(test)]
mod tests {
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
