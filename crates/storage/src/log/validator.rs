//! Kafka's `LogValidator` for v2 batches from clients: the record-level rules (timestamps),
//! offset assignment, LogAppendTime, and recompression to the topic's `compression.type`.
//!
//! As in Kafka, an uncompressed batch stored uncompressed is patched in place, and so is a
//! compressed batch whose codec is the target's and whose records carry offsets 0, 1, ...;
//! anything else (another codec, gaps in offset deltas) is rebuilt by
//! `runnel_protocol::batch::rebuild_batch`. Compressed batches are always decompressed, through
//! the bounded reader (`DecompressLimits` from `max.message.bytes`): Kafka validates every
//! record of every batch and sets `maxTimestamp` from the records, and so do we.

use bytes::BytesMut;
use runnel_protocol::batch::{
    patch_base_offset, patch_max_timestamp, patch_partition_leader_epoch, rebuild_batch,
    BatchError, BatchHeader, BatchRecords, BatchRef, Compression, Rebuild, RecordView,
    TimestampType, NO_TIMESTAMP,
};
use runnel_protocol::compression::DecompressLimits;

use crate::{LogConfig, StorageError};

/// Most record errors one refused batch reports. Kafka lists every refused record; a batch of
/// millions of tiny records (within the decompression caps) would make that list, one message
/// each, cost far more memory than the batch, so past this many the rest go unlisted (the batch
/// is refused all the same).
pub(crate) const RECORD_ERRORS_MAX: usize = 10_000;

/// The batches to write, offsets assigned, with their headers and positions in `bytes`.
pub(super) struct Validated {
    pub(super) bytes: BytesMut,
    pub(super) headers: Vec<(usize, BatchHeader)>,
    /// Largest `maxTimestamp` of the batches written.
    pub(super) max_timestamp: i64,
}

/// Validates `records` (split into `refs` by `validate_batches`) against `config` at `now_ms`
/// and assigns offsets from `first_offset`, as Kafka's `validateMessagesAndAssignOffsets`.
pub(super) fn validate_and_assign(
    records: BytesMut,
    refs: &[BatchRef],
    config: &LogConfig,
    first_offset: i64,
    leader_epoch: i32,
    now_ms: i64,
) -> Result<Validated, StorageError> {
    let limits = DecompressLimits::for_max_message_bytes(config.max_message_bytes as usize);
    let timestamp_type = config.message_timestamp_type;
    let mut next_offset = first_offset;
    let mut max_timestamp = NO_TIMESTAMP;
    // `records` is patched in place and written as is unless some batch is rebuilt (produce
    // v3+ sends one batch per partition): from the first rebuilt batch on, the batches go to a
    // new buffer.
    let mut rebuilt: Option<BytesMut> = None;
    let mut headers = Vec::with_capacity(refs.len());
    let mut records = records;
    for r in refs {
        let size = r.header.size_bytes();
        let source = r.header.compression()?;
        let (target, level) = config.target_compression(source);
        let batch = records
            .get(r.position..r.position + size)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?;
        let decoded = BatchRecords::open(batch, limits)?;
        let mut errors: Vec<(i32, String)> = Vec::new();
        let mut batch_max_timestamp = NO_TIMESTAMP;
        let mut dense = true;
        decoded.for_each(|record| {
            // Past the cap the batch is refused already; the rest go unlisted.
            if errors.len() < RECORD_ERRORS_MAX {
                if let Some(message) = timestamp_error(decoded.header(), &record, config, now_ms) {
                    errors.push((record.index, message));
                }
            }
            batch_max_timestamp = batch_max_timestamp.max(record.timestamp);
            dense &= record.offset_delta == record.index;
        })?;
        if !errors.is_empty() {
            return Err(StorageError::InvalidTimestamp {
                record_errors: errors,
                // The caller knows the log start; `append_as_leader` fills it in.
                log_start_offset: -1,
            });
        }
        // Kafka: "Do not compress control records unless they are written compressed".
        let in_place = (source == target && (source == Compression::None || dense))
            || (source == Compression::None && decoded.header().is_control());
        let bytes = if in_place {
            None
        } else {
            let bytes = rebuild_batch(
                &decoded,
                &Rebuild {
                    base_offset: next_offset,
                    partition_leader_epoch: leader_epoch,
                    codec: target,
                    level,
                    timestamp_type,
                    log_append_time_ms: now_ms,
                },
            )?;
            // Kafka's `UnifiedLog.append` checks the size again when the batch may have
            // changed: RecordTooLargeException, MESSAGE_TOO_LARGE.
            if bytes.len() > config.max_message_bytes as usize {
                return Err(BatchError::MessageTooLarge {
                    size_bytes: bytes.len(),
                    max_bytes: config.max_message_bytes as usize,
                }
                .into());
            }
            Some(bytes)
        };
        drop(decoded);
        if bytes.is_some() && rebuilt.is_none() {
            // The batches before this one were patched in place in `records`: keep them.
            let mut out = BytesMut::with_capacity(records.len() + size);
            out.extend_from_slice(&records[..r.position]);
            rebuilt = Some(out);
        }
        let position = match (&bytes, &mut rebuilt) {
            (Some(bytes), Some(out)) => {
                let position = out.len();
                out.extend_from_slice(bytes);
                position
            }
            (None, out) => {
                let batch = records
                    .get_mut(r.position..r.position + size)
                    .ok_or(BatchError::CorruptMessage("truncated batch"))?;
                patch_base_offset(batch, next_offset)?;
                patch_partition_leader_epoch(batch, leader_epoch)?;
                let max = match timestamp_type {
                    TimestampType::LogAppendTime => now_ms,
                    TimestampType::CreateTime => batch_max_timestamp,
                };
                patch_max_timestamp(batch, timestamp_type, max)?;
                match out {
                    Some(out) => {
                        let position = out.len();
                        out.extend_from_slice(batch);
                        position
                    }
                    None => r.position,
                }
            }
            (Some(_), None) => unreachable!("a rebuilt batch always has its buffer"),
        };
        let out: &[u8] = rebuilt.as_deref().unwrap_or(&records);
        let header = BatchHeader::parse(&out[position..])?;
        max_timestamp = max_timestamp.max(header.max_timestamp);
        next_offset = header.last_offset() + 1;
        headers.push((position, header));
    }
    Ok(Validated {
        bytes: rebuilt.unwrap_or(records),
        headers,
        max_timestamp,
    })
}

/// Kafka's `LogValidator.validateTimestamp` for one record.
fn timestamp_error(
    batch: &BatchHeader,
    record: &RecordView<'_>,
    config: &LogConfig,
    now_ms: i64,
) -> Option<String> {
    if config.message_timestamp_type == TimestampType::CreateTime
        && record.timestamp != NO_TIMESTAMP
    {
        // Java's long arithmetic wraps; so does this, with the same answers.
        let difference = now_ms.wrapping_sub(record.timestamp);
        if difference > config.message_timestamp_before_max_ms
            || difference.wrapping_neg() > config.message_timestamp_after_max_ms
        {
            return Some(format!(
                "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{}, {}]",
                record.timestamp,
                batch
                    .base_offset
                    .wrapping_add(i64::from(record.offset_delta)),
                now_ms.wrapping_sub(config.message_timestamp_before_max_ms),
                now_ms.wrapping_add(config.message_timestamp_after_max_ms),
            ));
        }
    } else if batch.timestamp_type() == TimestampType::LogAppendTime {
        return Some(format!(
            "Invalid timestamp type in message DefaultRecord(offset={}, timestamp={}, key={} bytes, value={} bytes). Producer should not set timestamp type to LogAppendTime.",
            batch.base_offset.wrapping_add(i64::from(record.offset_delta)),
            record.timestamp,
            record.key.map_or(0, <[u8]>::len),
            record.value.map_or(0, <[u8]>::len),
        ));
    }
    None
}
