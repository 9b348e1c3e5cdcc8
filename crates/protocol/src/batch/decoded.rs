//! The records of one batch, whatever its codec: the bounded decompressing reader every
//! record-level rule goes through (timestamps and recompression on append, ListOffsets by
//! timestamp, compaction), and the encoder that writes records again into a new batch, as
//! Kafka's `MemoryRecordsBuilder` does when `LogValidator` cannot assign offsets in place.

use std::borrow::Cow;

use super::encode::{put_header, put_nullable, put_varlong, seal};
use super::header::{
    BatchHeader, Compression, TimestampType, ATTR_COMPRESSION_MASK, ATTR_CONTROL,
    ATTR_DELETE_HORIZON, ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD,
    MAGIC_V2,
};
use super::records::{walk_raw_records, RawRecord};
use super::validate::BatchError;
use crate::compression::{self, DecompressLimits};

/// `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;

/// One record of a batch, as Kafka's `Record` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Position of the record in its batch (Kafka's `recordIndex`, `batch_index` in produce
    /// record errors).
    pub index: i32,
    pub offset_delta: i32,
    /// Absolute timestamp: `baseTimestamp + timestampDelta`, or the batch's `maxTimestamp` for
    /// a LogAppendTime batch (`DefaultRecordBatch`'s rule).
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count varint and the headers, as written.
    pub headers: &'a [u8],
}

/// One batch's header and its records section, decompressed within limits when compressed.
#[derive(Debug)]
pub struct BatchRecords<'a> {
    header: BatchHeader,
    body: Cow<'a, [u8]>,
}

impl<'a> BatchRecords<'a> {
    /// Reads the batch at the front of `batch` (which must hold all of it). The record count
    /// the header claims is checked against `limits.record_count_max`, and the decompressed
    /// body against `limits.output_bytes_max`, before anything is allocated for them: both
    /// over the limit are `CORRUPT_MESSAGE`. Uncompressed bodies are borrowed.
    pub fn open(batch: &'a [u8], limits: DecompressLimits) -> Result<BatchRecords<'a>, BatchError> {
        let header = BatchHeader::parse(batch)?;
        if header.magic != MAGIC_V2 {
            return Err(BatchError::CorruptMessage("invalid magic byte"));
        }
        if header.record_count < 0 {
            return Err(BatchError::InvalidRecord("negative record count"));
        }
        if usize::try_from(header.record_count).unwrap_or(usize::MAX) > limits.record_count_max {
            return Err(BatchError::CorruptMessage(
                "record count exceeds the broker's decompression limit",
            ));
        }
        let size = header.size_bytes();
        if size < BATCH_HEADER_LEN {
            return Err(BatchError::CorruptMessage(
                "batch smaller than the v2 batch header",
            ));
        }
        let raw = batch
            .get(BATCH_HEADER_LEN..size)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?;
        let codec = header.compression()?;
        let body = match codec {
            Compression::None => Cow::Borrowed(raw),
            codec => Cow::Owned(compression::decompress(
                codec,
                raw,
                limits.output_bytes_max,
            )?),
        };
        Ok(BatchRecords { header, body })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Bytes of the records section once decompressed.
    pub fn uncompressed_len(&self) -> usize {
        self.body.len()
    }

    /// Calls `f` for every record in order, checking Kafka's framing rules: exactly the
    /// declared count, nothing left over, offset deltas increasing (dense or not: compacted
    /// batches have gaps). Bounded by the bytes: each record consumes at least one.
    pub fn for_each(&self, mut f: impl FnMut(RecordView<'_>)) -> Result<(), BatchError> {
        let header = &self.header;
        let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
        let mut index = 0i32;
        walk_raw_records(
            &self.body,
            header.record_count,
            false,
            |r: RawRecord<'_>| {
                let timestamp = if log_append {
                    header.max_timestamp
                } else {
                    header.base_timestamp.wrapping_add(r.timestamp_delta)
                };
                f(RecordView {
                    index,
                    offset_delta: r.offset_delta,
                    timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
                index = index.wrapping_add(1);
            },
        )
    }
}

/// How [`rebuild_batch`] writes a batch again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuild {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub codec: Compression,
    /// `compression.<codec>.level`; `None` is the codec's Kafka default.
    pub level: Option<i32>,
    pub timestamp_type: TimestampType,
    /// The broker's clock, the batch's `maxTimestamp` under LogAppendTime.
    pub log_append_time_ms: i64,
}

/// Writes the records of `source` into one new v2 batch, as Kafka's `LogValidator
/// .buildRecordsAndAssignOffsets` does through `MemoryRecordsBuilder`: offsets `base_offset`,
/// `base_offset + 1`, ... (offset deltas 0, 1, ...); `baseTimestamp` the first record's
/// timestamp and each record's delta from it; record attributes 0; keys, values and headers
/// as they were; `maxTimestamp` the largest record timestamp (`NO_TIMESTAMP` if none), or the
/// log append time under LogAppendTime; attributes the target codec, the timestamp type and
/// the source's transactional and control bits; producer id, epoch and base sequence kept; CRC
/// computed.
pub fn rebuild_batch(source: &BatchRecords<'_>, rebuild: &Rebuild) -> Result<Vec<u8>, BatchError> {
    let plan = Plan {
        base_offset: rebuild.base_offset,
        partition_leader_epoch: rebuild.partition_leader_epoch,
        codec: rebuild.codec,
        level: rebuild.level,
        timestamp_type: rebuild.timestamp_type,
        log_append_time_ms: rebuild.log_append_time_ms,
        keep_offset_deltas: false,
        last_offset_delta: None,
        delete_horizon_ms: None,
    };
    Ok(write_batch(source, |_| true, &plan)?.unwrap_or_default())
}

/// The records of `source` that `keep` accepts, written into one new batch as Kafka's
/// `MemoryRecords.filterTo` writes a batch the log cleaner keeps part of
/// (`buildRetainedRecordsInto`): same codec (at its default level), timestamp type, producer
/// id, epoch, base sequence, leader epoch, transactional and control bits, base offset and
/// `lastOffsetDelta` (so producer state still sees the whole batch); each kept record keeps its
/// offset delta; `baseTimestamp` is `delete_horizon_ms` when given (and the delete-horizon
/// attribute bit is set, KIP-534), else the first kept record's timestamp; `maxTimestamp` the
/// largest kept record's (LogAppendTime: the source's). `None` when no record is kept.
pub fn retain_records(
    source: &BatchRecords<'_>,
    keep: impl FnMut(&RecordView<'_>) -> bool,
    delete_horizon_ms: Option<i64>,
) -> Result<Option<Vec<u8>>, BatchError> {
    let header = source.header();
    let plan = Plan {
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        codec: header.compression()?,
        level: None,
        timestamp_type: header.timestamp_type(),
        log_append_time_ms: header.max_timestamp,
        keep_offset_deltas: true,
        last_offset_delta: Some(header.last_offset_delta),
        delete_horizon_ms,
    };
    write_batch(source, keep, &plan)
}

/// Everything [`write_batch`] needs besides the records.
struct Plan {
    base_offset: i64,
    partition_leader_epoch: i32,
    codec: Compression,
    level: Option<i32>,
    timestamp_type: TimestampType,
    /// `maxTimestamp` under LogAppendTime.
    log_append_time_ms: i64,
    /// Records keep their offset deltas (cleaning) instead of 0, 1, ... (validation).
    keep_offset_deltas: bool,
    /// Written instead of the last kept record's delta.
    last_offset_delta: Option<i32>,
    /// Becomes `baseTimestamp`, with the delete-horizon attribute bit.
    delete_horizon_ms: Option<i64>,
}

/// One new batch of the records of `source` that `keep` accepts, laid out by `plan`; `None`
/// when none is kept.
fn write_batch(
    source: &BatchRecords<'_>,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
    plan: &Plan,
) -> Result<Option<Vec<u8>>, BatchError> {
    let mut body = Vec::with_capacity(source.uncompressed_len() + 16);
    let mut base_timestamp: Option<i64> = plan.delete_horizon_ms;
    let mut max_timestamp = NO_TIMESTAMP;
    let mut count = 0i32;
    let mut last_delta = 0i32;
    // One scratch buffer for every record: its length prefix needs its size first.
    let mut record = Vec::new();
    source.for_each(|r| {
        if !keep(&r) {
            return;
        }
        let base = *base_timestamp.get_or_insert(r.timestamp);
        max_timestamp = max_timestamp.max(r.timestamp);
        let delta = if plan.keep_offset_deltas {
            r.offset_delta
        } else {
            count
        };
        record.clear();
        record.push(0u8);
        put_varlong(&mut record, r.timestamp.wrapping_sub(base));
        put_varlong(&mut record, i64::from(delta));
        put_nullable(&mut record, r.key);
        put_nullable(&mut record, r.value);
        record.extend_from_slice(r.headers);
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
        count += 1;
        last_delta = delta;
    })?;
    if count == 0 && plan.keep_offset_deltas {
        return Ok(None);
    }
    if plan.timestamp_type == TimestampType::LogAppendTime {
        max_timestamp = plan.log_append_time_ms;
    }
    let records = compression::compress(plan.codec, plan.level, &body)?;
    let source_header = source.header();
    let codec_bits: i16 = match plan.codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let mut attributes = codec_bits & ATTR_COMPRESSION_MASK;
    if plan.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTR_TIMESTAMP_TYPE;
    }
    if source_header.is_transactional() {
        attributes |= ATTR_TRANSACTIONAL;
    }
    if source_header.is_control() {
        attributes |= ATTR_CONTROL;
    }
    if plan.delete_horizon_ms.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + records.len())
        .map_err(|_| BatchError::CorruptMessage("rebuilt batch exceeds 2 GiB"))?;
    let header = BatchHeader {
        base_offset: plan.base_offset,
        batch_length,
        partition_leader_epoch: plan.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta: plan.last_offset_delta.unwrap_or(last_delta),
        base_timestamp: base_timestamp.unwrap_or(NO_TIMESTAMP),
        max_timestamp,
        producer_id: source_header.producer_id,
        producer_epoch: source_header.producer_epoch,
        base_sequence: source_header.base_sequence,
        record_count: count,
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    put_header(&mut out, &header);
    out.extend_from_slice(&records);
    seal(&mut out);
    Ok(Some(out))
}

/// Kafka's `DefaultRecordBatch.writeEmptyHeader` as `MemoryRecords.filterTo` calls it for a
/// batch the log cleaner keeps no record of but must not lose (the last batch of an active
/// producer, whose sequence and epoch are that producer's state, or the last batch below the
/// cleaned range's end): the header of `original` with no records. Base offset, last offset
/// delta, leader epoch, producer id, epoch, base sequence and `maxTimestamp` are kept;
/// `baseTimestamp` is `NO_TIMESTAMP`; the attributes keep only the timestamp type,
/// transactional and control bits (no codec, no delete horizon).
pub fn empty_batch(original: &BatchHeader) -> Vec<u8> {
    let header = BatchHeader {
        batch_length: (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32,
        magic: MAGIC_V2,
        crc: 0,
        attributes: original.attributes & (ATTR_TIMESTAMP_TYPE | ATTR_TRANSACTIONAL | ATTR_CONTROL),
        base_timestamp: NO_TIMESTAMP,
        record_count: 0,
        ..*original
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN);
    put_header(&mut out, &header);
    seal(&mut out);
    out
}
