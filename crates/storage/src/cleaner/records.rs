//! The records of a stored v2 batch, parsed strictly (every length checked against the
//! batch), and the batches the cleaner writes back: Kafka's `filterTo` output, with the original
//! base offset, last offset delta, producer fields, leader epoch and codec kept.
//!
//! Compressed batches go through the protocol crate's bounded codecs
//! (`runnel_protocol::compression`): the record count a header claims and the decompressed size
//! are both capped before anything is allocated for them (`DecompressLimits`, from the log's
//! `max.message.bytes`), so a stored bomb fails the round instead of exhausting memory.

use std::borrow::Cow;

use runnel_protocol::batch::{BatchHeader, Compression, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use runnel_protocol::compression::{self, DecompressLimits, RECORD_BYTES_MIN};

use crate::StorageError;

/// Attribute bit 6 (Kafka's `DELETE_HORIZON_FLAG_MASK`): `baseTimestamp` holds the time after
/// which the batch's tombstones and markers may be removed.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;

/// One record of a stored batch, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRecord<'a> {
    pub attributes: u8,
    /// Absolute: the batch's base timestamp plus the delta, or the batch max timestamp for a
    /// LogAppendTime batch, as Kafka's record iterator reports it.
    pub timestamp: i64,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The header count and headers, copied through unparsed.
    pub headers: &'a [u8],
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Corrupt(format!("stored record: {what}"))
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, StorageError> {
        let b = *self
            .buf
            .get(self.at)
            .ok_or_else(|| corrupt("premature end"))?;
        self.at += 1;
        Ok(b)
    }

    fn varlong(&mut self) -> Result<i64, StorageError> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(corrupt("varint too long"));
            }
        }
        // Zig-zag: reinterprets the bits.
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    fn varint(&mut self) -> Result<i32, StorageError> {
        i32::try_from(self.varlong()?).map_err(|_| corrupt("varint out of range"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StorageError> {
        let end = self
            .at
            .checked_add(len)
            .ok_or_else(|| corrupt("length overflow"))?;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| corrupt("field overruns"))?;
        self.at = end;
        Ok(bytes)
    }

    fn nullable(&mut self) -> Result<Option<&'a [u8]>, StorageError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
}

/// The records section of `batch` (exactly one whole stored batch), decompressed within
/// `max_message_bytes`'s limits when the batch is compressed, borrowed otherwise.
pub fn records_body<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
    max_message_bytes: usize,
) -> Result<Cow<'a, [u8]>, StorageError> {
    let body = batch
        .get(BATCH_HEADER_LEN..header.size_bytes().min(batch.len()))
        .ok_or_else(|| corrupt("truncated batch"))?;
    let codec = header.compression()?;
    if codec == Compression::None {
        return Ok(Cow::Borrowed(body));
    }
    let limits = DecompressLimits::for_max_message_bytes(max_message_bytes);
    let count = usize::try_from(header.record_count).map_err(|_| corrupt("negative count"))?;
    if count > limits.record_count_max {
        return Err(corrupt("record count exceeds the decompression limit"));
    }
    Ok(Cow::Owned(compression::decompress(
        codec,
        body,
        limits.output_bytes_max,
    )?))
}

/// The records of an uncompressed `batch` (exactly one whole stored batch), in order; see
/// `parse_body` for compressed ones.
pub fn parse_records<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<Vec<StoredRecord<'a>>, StorageError> {
    let body = batch
        .get(BATCH_HEADER_LEN..header.size_bytes().min(batch.len()))
        .ok_or_else(|| corrupt("truncated batch"))?;
    parse_body(header, body)
}

/// The records of a batch's (decompressed) records section `body`, in order. The count comes
/// from the header and is bounded by the bytes (each record takes at least one).
pub fn parse_body<'a>(
    header: &BatchHeader,
    body: &'a [u8],
) -> Result<Vec<StoredRecord<'a>>, StorageError> {
    let count = usize::try_from(header.record_count).map_err(|_| corrupt("negative count"))?;
    if count > body.len() / RECORD_BYTES_MIN {
        return Err(corrupt("record count exceeds the batch bytes"));
    }
    let log_append_time = header.attributes & ATTR_TIMESTAMP_TYPE != 0;
    let mut records = Vec::with_capacity(count);
    let mut cursor = Cursor { buf: body, at: 0 };
    for _ in 0..count {
        let len = cursor.varint()?;
        let len = usize::try_from(len).map_err(|_| corrupt("negative record length"))?;
        let mut record = Cursor {
            buf: cursor.take(len)?,
            at: 0,
        };
        let attributes = record.byte()?;
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        let key = record.nullable()?;
        let value = record.nullable()?;
        let headers = &record.buf[record.at..];
        records.push(StoredRecord {
            attributes,
            timestamp: if log_append_time {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(timestamp_delta)
            },
            offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
            key,
            value,
            headers,
        });
    }
    if cursor.at != body.len() {
        return Err(corrupt("bytes left after the last record"));
    }
    Ok(records)
}

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

/// Appends to `out` the batch Kafka's `buildRetainedRecordsInto` builds from `original` and its
/// `retained` records: same base offset, last offset delta, producer fields, leader epoch and
/// attributes (plus the delete-horizon bit when `delete_horizon_ms` is set, which then becomes
/// the base timestamp); otherwise the base timestamp is the first retained record's. The
/// records are compressed again with the batch's codec (at its Kafka default level, as Kafka's
/// `buildRetainedRecordsInto` does).
pub fn write_retained(
    out: &mut Vec<u8>,
    original: &BatchHeader,
    retained: &[StoredRecord<'_>],
    delete_horizon_ms: Option<i64>,
) -> Result<(), StorageError> {
    assert!(!retained.is_empty(), "a retained batch needs records");
    let log_append_time = original.attributes & ATTR_TIMESTAMP_TYPE != 0;
    let base_timestamp = delete_horizon_ms.unwrap_or(retained[0].timestamp);
    let max_timestamp = if log_append_time {
        original.max_timestamp
    } else {
        retained.iter().map(|r| r.timestamp).max().unwrap_or(-1)
    };
    let mut attributes = original.attributes;
    if delete_horizon_ms.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let start = out.len();
    out.extend_from_slice(&original.base_offset.to_be_bytes());
    out.extend_from_slice(&[0; 4]); // batch length, patched below
    out.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]); // CRC, patched below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&original.producer_id.to_be_bytes());
    out.extend_from_slice(&original.producer_epoch.to_be_bytes());
    out.extend_from_slice(&original.base_sequence.to_be_bytes());
    out.extend_from_slice(&(retained.len() as i32).to_be_bytes());
    let mut body = Vec::new();
    let mut record_bytes = Vec::new();
    for record in retained {
        record_bytes.clear();
        record_bytes.push(record.attributes);
        put_varlong(
            &mut record_bytes,
            record.timestamp.wrapping_sub(base_timestamp),
        );
        put_varlong(&mut record_bytes, record.offset - original.base_offset);
        put_nullable(&mut record_bytes, record.key);
        put_nullable(&mut record_bytes, record.value);
        record_bytes.extend_from_slice(record.headers);
        put_varlong(&mut body, record_bytes.len() as i64);
        body.extend_from_slice(&record_bytes);
    }
    let codec = original.compression()?;
    if codec == Compression::None {
        out.extend_from_slice(&body);
    } else {
        out.extend_from_slice(&compression::compress(codec, None, &body)?);
    }
    finish(out, start);
    Ok(())
}

/// Appends Kafka's `writeEmptyHeader` for `original`: no records, the same offsets and producer
/// fields, no base timestamp, no compression, kept so that producer state (the last sequence
/// and epoch) survives the batch's records.
pub fn write_empty(out: &mut Vec<u8>, original: &BatchHeader) {
    let start = out.len();
    // Only the codec bits and the delete-horizon bit go; timestamp type, transactional and
    // control stay.
    let attributes = original.attributes & !(0x07 | ATTR_DELETE_HORIZON);
    out.extend_from_slice(&original.base_offset.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&original.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&original.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&original.max_timestamp.to_be_bytes());
    out.extend_from_slice(&original.producer_id.to_be_bytes());
    out.extend_from_slice(&original.producer_epoch.to_be_bytes());
    out.extend_from_slice(&original.base_sequence.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    finish(out, start);
}

/// Patches the batch length and CRC of the batch written at `out[start..]`.
fn finish(out: &mut [u8], start: usize) {
    let batch = &mut out[start..];
    let length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Whether the batch carries the delete horizon, and the horizon (its base timestamp).
pub fn delete_horizon_ms(header: &BatchHeader) -> Option<i64> {
    (header.attributes & ATTR_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_protocol::batch::{
        check_stored_batch, encode_uncompressed_batch, BatchSpec, RecordSpec,
    };

    #[test]
    fn rewritten_batches_keep_offsets_and_pass_the_stored_batch_check() {
        // Dropping the middle record keeps the batch's base and last offsets and every kept
        // record's offset, key, value and timestamp; the CRC is valid.
        let spec = BatchSpec {
            base_offset: 100,
            base_timestamp: 1_000,
            records: (0..3)
                .map(|i| RecordSpec {
                    timestamp_delta: i,
                    key: Some(b"k"),
                    value: Some(b"v"),
                    headers: vec![(b"h", Some(b"x"))],
                })
                .collect(),
            ..BatchSpec::default()
        };
        let batch = encode_uncompressed_batch(&spec);
        let header = check_stored_batch(&batch).unwrap();
        let records = parse_records(&header, &batch).unwrap();
        assert_eq!(records.len(), 3);
        let kept = [records[0], records[2]];
        let mut out = Vec::new();
        write_retained(&mut out, &header, &kept, None).unwrap();
        let new_header = check_stored_batch(&out).unwrap();
        assert_eq!(new_header.base_offset, 100);
        assert_eq!(new_header.last_offset(), 102);
        assert_eq!(new_header.record_count, 2);
        assert_eq!(new_header.max_timestamp, 1_002);
        assert_eq!(parse_records(&new_header, &out).unwrap(), kept.to_vec());
        let mut with_horizon = Vec::new();
        write_retained(&mut with_horizon, &header, &kept, Some(5_000)).unwrap();
        let h = check_stored_batch(&with_horizon).unwrap();
        assert_eq!(delete_horizon_ms(&h), Some(5_000));
        assert_eq!(
            parse_records(&h, &with_horizon).unwrap()[1].timestamp,
            1_002
        );
        let mut empty = Vec::new();
        write_empty(&mut empty, &header);
        assert_eq!(empty.len(), BATCH_HEADER_LEN);
        let h = check_stored_batch(&empty).unwrap();
        assert_eq!((h.record_count, h.last_offset()), (0, 102));
    }

    /// `batch` (uncompressed) with its records section compressed with `codec`.
    fn compressed(batch: &[u8], codec: Compression, bits: i16) -> Vec<u8> {
        let mut out = batch[..BATCH_HEADER_LEN].to_vec();
        out.extend_from_slice(
            &compression::compress(codec, None, &batch[BATCH_HEADER_LEN..]).unwrap(),
        );
        let attributes = i16::from_be_bytes([out[21], out[22]]) | bits;
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
        finish(&mut out, 0);
        out
    }

    #[test]
    fn compressed_batches_are_read_boundedly_and_rewritten_with_their_codec() {
        // Every codec: the records read back from the compressed batch, a rewrite keeping some
        // of them stays compressed with the same codec, and reads back to the kept records.
        let spec = BatchSpec {
            base_offset: 7,
            base_timestamp: 50,
            records: (0..20)
                .map(|i| RecordSpec {
                    timestamp_delta: i,
                    key: Some(b"key"),
                    value: Some(b"a value that compresses well, well, well"),
                    headers: vec![],
                })
                .collect(),
            ..BatchSpec::default()
        };
        let plain = encode_uncompressed_batch(&spec);
        let codecs = [
            (Compression::Gzip, 1),
            (Compression::Snappy, 2),
            (Compression::Lz4, 3),
            (Compression::Zstd, 4),
        ];
        for (codec, bits) in codecs {
            let batch = compressed(&plain, codec, bits);
            let header = check_stored_batch(&batch).unwrap();
            let body = records_body(&header, &batch, 1 << 20).unwrap();
            let records = parse_body(&header, &body).unwrap();
            assert_eq!(records.len(), 20, "{codec:?}");
            let kept = [records[3], records[19]];
            let mut out = Vec::new();
            write_retained(&mut out, &header, &kept, None).unwrap();
            let new_header = check_stored_batch(&out).unwrap();
            assert_eq!(new_header.compression().unwrap(), codec);
            assert_eq!((new_header.base_offset, new_header.last_offset()), (7, 26));
            let new_body = records_body(&new_header, &out, 1 << 20).unwrap();
            assert_eq!(parse_body(&new_header, &new_body).unwrap(), kept.to_vec());
        }
    }

    #[test]
    fn a_record_count_past_the_decompression_limit_fails_before_decompressing() {
        // A stored compressed batch claiming more records than the limit allows is refused
        // without being decompressed.
        let spec = BatchSpec {
            records: vec![RecordSpec {
                key: Some(b"k"),
                ..RecordSpec::default()
            }],
            ..BatchSpec::default()
        };
        let mut batch = compressed(&encode_uncompressed_batch(&spec), Compression::Gzip, 1);
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        finish(&mut batch, 0);
        let header = check_stored_batch(&batch).unwrap();
        assert!(matches!(
            records_body(&header, &batch, 1 << 20),
            Err(StorageError::Corrupt(_))
        ));
    }
}
