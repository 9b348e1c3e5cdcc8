//! Walking the records inside a batch: a bounds-checked cursor with Kafka's varint readers, the
//! record framing rules, and the per-record callbacks over one batch or a run of stored batches.

use super::decoded::BatchRecords;
use super::header::{BatchHeader, Compression, BATCH_HEADER_LEN};
use super::validate::{check_stored_batch, BatchError};
use crate::compression::DecompressLimits;

/// Calls `f(offset_delta, timestamp_ms)` for every record of one whole batch (`batch` holds
/// exactly the batch), compressed ones decompressed within `limits`. For LogAppendTime batches
/// every record's timestamp is the batch's `maxTimestamp`, as Kafka reports it. Offset deltas
/// are not required to be dense, so compacted batches work.
pub fn for_each_record(
    batch: &[u8],
    limits: DecompressLimits,
    mut f: impl FnMut(i32, i64),
) -> Result<(), BatchError> {
    BatchRecords::open(batch, limits)?.for_each(|r| f(r.offset_delta, r.timestamp))
}

/// Calls `f(offset, key, value)` for every record of the whole stored batches in `bytes` (as
/// [`check_stored_batch`] accepts them, e.g. a log read), skipping control batches. For logs the
/// broker writes itself (`__consumer_offsets`): compressed batches are refused, since such logs
/// never hold them.
pub fn for_each_stored_record<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(i64, Option<&'a [u8]>, Option<&'a [u8]>),
) -> Result<(), BatchError> {
    let mut position = 0usize;
    while position < bytes.len() {
        let rest = bytes
            .get(position..)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?;
        let header = BatchHeader::parse(rest)?;
        let size = header.size_bytes();
        let batch = rest
            .get(..size)
            .ok_or(BatchError::CorruptMessage("truncated batch"))?;
        let header = check_stored_batch(batch)?;
        if !header.is_control() {
            if header.compression()? != Compression::None {
                // Name the batch's own codec (the mask keeps it in 0..=7).
                let codec = (header.attributes & super::header::ATTR_COMPRESSION_MASK) as u8;
                return Err(BatchError::UnsupportedCompression(codec));
            }
            let body = batch
                .get(BATCH_HEADER_LEN..)
                .ok_or(BatchError::CorruptMessage("truncated batch"))?;
            walk_records(body, header.record_count, false, |delta, _, key, value| {
                f(
                    header.base_offset.saturating_add(i64::from(delta)),
                    key,
                    value,
                );
            })?;
        }
        position += size;
    }
    Ok(())
}

/// A read-only cursor over untrusted bytes; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.position)
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        let b = *self
            .buf
            .get(self.position)
            .ok_or(BatchError::InvalidRecord("premature end of record"))?;
        self.position += 1;
        Ok(b)
    }

    /// Kafka's `ByteUtils.readVarint`: at most 5 bytes, zig-zag decoded; bits beyond 32 are
    /// dropped as Java's int shifts drop them.
    fn varint(&mut self) -> Result<i32, BatchError> {
        let mut value: u32 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u32::from(b & 0x7f).wrapping_shl(shift);
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 {
                return Err(BatchError::InvalidRecord("varint is too long"));
            }
        }
        // Zig-zag: the cast reinterprets the bits, it cannot lose any.
        Ok(((value >> 1) as i32) ^ -((value & 1) as i32))
    }

    /// Kafka's `ByteUtils.readVarlong`: at most 10 bytes, zig-zag decoded.
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(BatchError::InvalidRecord("varlong is too long"));
            }
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn skip(&mut self, len: usize) -> Result<(), BatchError> {
        if len > self.remaining() {
            return Err(BatchError::InvalidRecord(
                "record field overruns the record",
            ));
        }
        self.position += len;
        Ok(())
    }

    /// A nullable byte field: length -1 is null; other negatives are refused (Kafka treats
    /// them as null too, but no client writes them and they make framing ambiguous).
    fn skip_nullable_bytes(&mut self) -> Result<(), BatchError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(());
        }
        let len =
            usize::try_from(len).map_err(|_| BatchError::InvalidRecord("negative field length"))?;
        self.skip(len)
    }

    /// A nullable byte field, returned: length -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len =
            usize::try_from(len).map_err(|_| BatchError::InvalidRecord("negative field length"))?;
        self.take(len).map(Some)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], BatchError> {
        let end = self
            .position
            .checked_add(len)
            .ok_or(BatchError::InvalidRecord("record length overflow"))?;
        let slice = self
            .buf
            .get(self.position..end)
            .ok_or(BatchError::InvalidRecord("record size overruns the batch"))?;
        self.position = end;
        Ok(slice)
    }
}

/// One record as written inside a batch body, its fields borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count varint and every header, exactly as written (copied as is when the
    /// record is written again).
    pub headers: &'a [u8],
}

/// Walks `count` records in `body` (the bytes after the batch header), calling
/// `f(offset_delta, timestamp_delta, key, value)` for each. With `dense_offsets` the i-th record must have
/// offset delta i (a client batch); otherwise deltas must only increase (a compacted batch).
/// The loop is bounded by the bytes: each record consumes at least one byte.
pub(super) fn walk_records<'a>(
    body: &'a [u8],
    count: i32,
    dense_offsets: bool,
    mut f: impl FnMut(i32, i64, Option<&'a [u8]>, Option<&'a [u8]>),
) -> Result<(), BatchError> {
    walk_raw_records(body, count, dense_offsets, |r| {
        f(r.offset_delta, r.timestamp_delta, r.key, r.value);
    })
}

/// [`walk_records`], handing each record whole.
pub(super) fn walk_raw_records<'a>(
    body: &'a [u8],
    count: i32,
    dense_offsets: bool,
    mut f: impl FnMut(RawRecord<'a>),
) -> Result<(), BatchError> {
    if count < 0 {
        return Err(BatchError::InvalidRecord("negative record count"));
    }
    let mut cursor = Cursor {
        buf: body,
        position: 0,
    };
    let mut previous_delta: Option<i32> = None;
    for index in 0..count {
        if cursor.remaining() == 0 {
            return Err(BatchError::InvalidRecord(
                "incorrect declared batch size, premature end of batch",
            ));
        }
        let length = cursor.varint()?;
        let length = usize::try_from(length)
            .map_err(|_| BatchError::InvalidRecord("negative record length"))?;
        let mut record = Cursor {
            buf: cursor.take(length)?,
            position: 0,
        };
        let _attributes = record.byte()?;
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        let in_order = if dense_offsets {
            offset_delta == index
        } else {
            offset_delta >= 0 && previous_delta.is_none_or(|p| offset_delta > p)
        };
        if !in_order {
            return Err(BatchError::InvalidRecord(
                "record offset deltas out of order",
            ));
        }
        previous_delta = Some(offset_delta);
        let key = record.nullable_bytes()?;
        let value = record.nullable_bytes()?;
        let headers_start = record.position;
        let header_count = record.varint()?;
        let header_count = usize::try_from(header_count)
            .map_err(|_| BatchError::InvalidRecord("invalid number of record headers"))?;
        if header_count > record.remaining() {
            return Err(BatchError::InvalidRecord(
                "number of record headers larger than the record",
            ));
        }
        for _ in 0..header_count {
            let key_len = record.varint()?;
            let key_len = usize::try_from(key_len)
                .map_err(|_| BatchError::InvalidRecord("negative header key size"))?;
            record.skip(key_len)?;
            record.skip_nullable_bytes()?; // header value
        }
        if record.remaining() != 0 {
            return Err(BatchError::InvalidRecord(
                "record size does not match its fields",
            ));
        }
        let headers = record
            .buf
            .get(headers_start..)
            .ok_or(BatchError::InvalidRecord("premature end of record"))?;
        f(RawRecord {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        });
    }
    if cursor.remaining() != 0 {
        return Err(BatchError::InvalidRecord(
            "incorrect declared batch size, records still remaining",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::encode::{encode_uncompressed_batch, BatchSpec, RecordSpec};
    use crate::batch::header::{patch_base_offset, LOG_OVERHEAD, OFFSET_BATCH_LENGTH};
    use crate::batch::test_support::{batch_with, fix_crc, MAX};
    use crate::batch::validate::validate_batches;

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

    // A compressed batch in a log the broker writes itself is refused naming its own codec (it
    // reported codec 0, "none", for every one).
    #[test]
    fn a_compressed_stored_batch_is_refused_with_its_codec() {
        let mut batch = encode_uncompressed_batch(&BatchSpec {
            records: vec![RecordSpec {
                timestamp_delta: 0,
                key: Some(b"k"),
                value: Some(b"v"),
                headers: vec![],
            }],
            ..Default::default()
        });
        // Mark it snappy (codec 2); the walk refuses before reading the records.
        batch[crate::batch::header::OFFSET_ATTRIBUTES + 1] |= 2;
        fix_crc(&mut batch);
        assert!(matches!(
            for_each_stored_record(&batch, |_, _, _| {}),
            Err(BatchError::UnsupportedCompression(2))
        ));
    }
}
