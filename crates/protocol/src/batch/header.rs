//! The fixed 61-byte header of a v2 batch: its field offsets and attribute bits, decoding, the
//! CRC check, and the in-place patches the broker applies on append (base offset, leader epoch,
//! LogAppendTime). The layout is drawn in the `batch` module documentation.

use super::validate::BatchError;

/// Bytes from `baseOffset` through `recordCount`: the fixed part of every v2 batch.
pub const BATCH_HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the bytes not counted by `batchLength` (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format produce v3+ accepts.
pub const MAGIC_V2: i8 = 2;
/// `RecordBatch.NO_SEQUENCE`.
pub const NO_SEQUENCE: i32 = -1;

pub(super) const OFFSET_BASE_OFFSET: usize = 0;
pub(super) const OFFSET_BATCH_LENGTH: usize = 8;
pub(super) const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
pub(super) const OFFSET_MAGIC: usize = 16;
pub(super) const OFFSET_CRC: usize = 17;
pub(super) const OFFSET_ATTRIBUTES: usize = 21;
pub(super) const OFFSET_LAST_OFFSET_DELTA: usize = 23;
pub(super) const OFFSET_BASE_TIMESTAMP: usize = 27;
pub(super) const OFFSET_MAX_TIMESTAMP: usize = 35;
pub(super) const OFFSET_PRODUCER_ID: usize = 43;
pub(super) const OFFSET_PRODUCER_EPOCH: usize = 51;
pub(super) const OFFSET_BASE_SEQUENCE: usize = 53;
pub(super) const OFFSET_RECORD_COUNT: usize = 57;

pub(super) const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub(super) const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub(super) const ATTR_TRANSACTIONAL: i16 = 0x10;
pub(super) const ATTR_CONTROL: i16 = 0x20;
/// Kafka's `DefaultRecordBatch.DELETE_HORIZON_FLAG_MASK` (KIP-534): `baseTimestamp` holds the
/// time after which the log cleaner may remove the batch's tombstones.
pub(super) const ATTR_DELETE_HORIZON: i16 = 0x40;

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

pub(super) fn read_array<const N: usize>(buf: &[u8], offset: usize) -> Result<[u8; N], BatchError> {
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
    /// are there; [`validate_batches`](super::validate_batches) and
    /// [`check_stored_batch`](super::check_stored_batch) apply the rules.
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

    /// Kafka's `RecordBatch.deleteHorizonMs`: the base timestamp when the delete-horizon bit is
    /// set.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
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
///
/// Java's `int` arithmetic wraps, and the operands come from batch headers (hostile on the
/// wire and on disk: a negative `lastOffsetDelta` passes a CRC check), so every step here
/// wraps as Java's does: same answers, never an overflow panic.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX.wrapping_sub(increment) {
        increment
            .wrapping_sub(i32::MAX.wrapping_sub(sequence))
            .wrapping_sub(1)
    } else {
        sequence.wrapping_add(increment)
    }
}

/// Kafka's `DefaultRecordBatch.decrementSequence`: the inverse of [`increment_sequence`].
/// Wraps as Java's `int` arithmetic does (see [`increment_sequence`]).
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX
            .wrapping_sub(decrement.wrapping_sub(sequence))
            .wrapping_add(1)
    } else {
        sequence.wrapping_sub(decrement)
    }
}

pub(super) fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
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

/// Kafka's `DefaultRecordBatch.setMaxTimestamp`: sets the timestamp-type bit to
/// `timestamp_type` and `maxTimestamp` to `max_timestamp`, recomputing the CRC, unless both
/// already hold those values (then nothing changes, as in Kafka). `batch` must hold exactly
/// one batch.
pub fn patch_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> Result<(), BatchError> {
    let header = require_header(batch)?;
    if header.timestamp_type() == timestamp_type && header.max_timestamp == max_timestamp {
        return Ok(());
    }
    if header.batch_length < 0 || header.size_bytes() != batch.len() {
        return Err(BatchError::CorruptMessage("batch length does not match"));
    }
    let attributes = match timestamp_type {
        TimestampType::LogAppendTime => header.attributes | ATTR_TIMESTAMP_TYPE,
        TimestampType::CreateTime => header.attributes & !ATTR_TIMESTAMP_TYPE,
    };
    write_bytes(batch, OFFSET_ATTRIBUTES, &attributes.to_be_bytes())?;
    write_bytes(batch, OFFSET_MAX_TIMESTAMP, &max_timestamp.to_be_bytes())?;
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
    use crate::batch::records::for_each_record;
    use crate::batch::test_support::batch_with;
    use crate::batch::validate::check_stored_batch;

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
        for_each_record(
            &batch,
            crate::compression::DecompressLimits::default(),
            |delta, ts| timestamps.push((delta, ts)),
        )
        .unwrap();
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

    // Proves hostile header values (a negative or extreme lastOffsetDelta, as a batch with a
    // valid CRC may carry from disk) wrap as Java's int arithmetic does instead of panicking
    // (tests build with overflow checks, which the old arithmetic tripped).
    #[test]
    fn hostile_sequence_arithmetic_wraps() {
        for (sequence, delta) in [
            (0, -5),
            (10, i32::MIN),
            (i32::MAX, i32::MAX),
            (i32::MIN, -1),
            (-7, i32::MAX),
        ] {
            let up = increment_sequence(sequence, delta);
            let _ = decrement_sequence(up, delta);
            let _ = decrement_sequence(sequence, delta);
        }
        // Java: MAX - (-5) wraps to MIN + 4, 0 > MIN + 4, so -5 - (MAX - 0) - 1, which wraps to
        // MAX - 4.
        assert_eq!(increment_sequence(0, -5), i32::MAX - 4);
    }
}
