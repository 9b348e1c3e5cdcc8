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
    let header = BatchHeader::parse(batch)?;
    if header.base_offset != 0 {
        return Err(BatchError::InvalidRecord(
            "the base offset of a produced batch must be 0",
        ));
    }
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
