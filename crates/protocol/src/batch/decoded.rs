//! The records of one batch, whatever its codec: the bounded decompressing reader every
//! record-level rule goes through (timestamps and recompression on append, ListOffsets by
//! timestamp, compaction), and the encoder that writes records again into a new batch, as
//! Kafka's `MemoryRecordsBuilder` does when `LogValidator` cannot assign offsets in place.

use std::borrow::Cow;

use super::header::{
    BatchHeader, Compression, TimestampType, ATTR_COMPRESSION_MASK, ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, OFFSET_ATTRIBUTES, OFFSET_CRC,
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
/// the source's transactional bit; producer id, epoch and base sequence kept; CRC computed.
pub fn rebuild_batch(source: &BatchRecords<'_>, rebuild: &Rebuild) -> Result<Vec<u8>, BatchError> {
    let mut body = Vec::with_capacity(source.uncompressed_len() + 16);
    let mut base_timestamp: Option<i64> = None;
    let mut max_timestamp = NO_TIMESTAMP;
    let mut count = 0i32;
    source.for_each(|r| {
        let base = *base_timestamp.get_or_insert(r.timestamp);
        max_timestamp = max_timestamp.max(r.timestamp);
        let mut record = Vec::with_capacity(
            24 + r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len) + r.headers.len(),
        );
        record.push(0u8);
        put_varlong(&mut record, r.timestamp.wrapping_sub(base));
        put_varlong(&mut record, i64::from(count));
        put_nullable(&mut record, r.key);
        put_nullable(&mut record, r.value);
        record.extend_from_slice(r.headers);
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
        count += 1;
    })?;
    if rebuild.timestamp_type == TimestampType::LogAppendTime {
        max_timestamp = rebuild.log_append_time_ms;
    }
    let records = compression::compress(rebuild.codec, rebuild.level, &body)?;
    let source_header = source.header();
    let codec_bits: i16 = match rebuild.codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    let mut attributes = codec_bits & ATTR_COMPRESSION_MASK;
    if rebuild.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTR_TIMESTAMP_TYPE;
    }
    if source_header.is_transactional() {
        attributes |= ATTR_TRANSACTIONAL;
    }
    let batch_length = i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + records.len())
        .map_err(|_| BatchError::CorruptMessage("rebuilt batch exceeds 2 GiB"))?;
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    out.extend_from_slice(&rebuild.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&rebuild.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    out.extend_from_slice(&base_timestamp.unwrap_or(NO_TIMESTAMP).to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&source_header.producer_id.to_be_bytes());
    out.extend_from_slice(&source_header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&source_header.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&records);
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Kafka's zig-zag varlong (`ByteUtils.writeVarlong`).
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}
