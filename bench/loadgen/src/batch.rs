//! Uncompressed v2 record batches, the format every Kafka client sends.

use bytes::{BufMut, Bytes, BytesMut};

/// Fixed part of a v2 batch before the first record.
pub const BATCH_HEADER_BYTES: usize = 61;
const CRC_POSITION: usize = 17;
const ATTRIBUTES_POSITION: usize = 21;
const LAST_OFFSET_DELTA_POSITION: usize = 23;
const RECORD_COUNT_POSITION: usize = 57;
/// Bytes a record costs on the wire beyond its value, for sizing batches (length, attributes,
/// deltas, null key, value length, header count).
pub const RECORD_OVERHEAD_BYTES: usize = 10;

fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// A batch of records with null keys, no producer id (so the broker checks no sequence) and
/// CreateTime `timestamp_ms` for every record.
pub fn encode_batch<'a>(values: impl IntoIterator<Item = &'a [u8]>, timestamp_ms: i64) -> Bytes {
    let mut records = BytesMut::new();
    let mut count: i32 = 0;
    let mut record = BytesMut::new();
    for value in values {
        record.clear();
        record.put_i8(0); // attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, i64::from(count)); // offset delta
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, value.len() as i64);
        record.put_slice(value);
        put_varint(&mut record, 0); // headers
        put_varint(&mut records, record.len() as i64);
        records.put_slice(&record);
        count += 1;
    }
    assert!(count > 0, "a batch holds at least one record");
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len());
    buf.put_i64(0); // base offset: the broker assigns
    buf.put_i32((BATCH_HEADER_BYTES - 12 + records.len()) as i32);
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(2); // magic
    buf.put_u32(0); // crc, patched below
    buf.put_i16(0); // attributes: no compression, CreateTime
    buf.put_i32(count - 1);
    buf.put_i64(timestamp_ms);
    buf.put_i64(timestamp_ms);
    buf.put_i64(-1); // producer id
    buf.put_i16(-1); // producer epoch
    buf.put_i32(-1); // base sequence
    buf.put_i32(count);
    buf.put_slice(&records);
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_POSITION..]);
    buf[CRC_POSITION..CRC_POSITION + 4].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

/// What a fetched `records` field holds, read from batch headers only (no record decoding).
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchesSummary {
    pub record_count: u64,
    /// Bytes of complete batches.
    pub batch_bytes: u64,
    /// Offset after the last complete batch, if there was one.
    pub next_offset: Option<i64>,
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks complete batches; a partial batch at the end (the broker may cut at max bytes) is ignored.
pub fn summarize(records: &[u8]) -> BatchesSummary {
    let mut summary = BatchesSummary::default();
    let mut position = 0usize;
    while let (Some(base_offset), Some(batch_length)) =
        (be_i64(records, position), be_i32(records, position + 8))
    {
        let Ok(batch_length) = usize::try_from(batch_length) else {
            break;
        };
        let end = position + 12 + batch_length;
        if end > records.len() || batch_length < BATCH_HEADER_BYTES - 12 {
            break;
        }
        let batch = &records[position..end];
        let (Some(last_delta), Some(count)) = (
            be_i32(batch, LAST_OFFSET_DELTA_POSITION),
            be_i32(batch, RECORD_COUNT_POSITION),
        ) else {
            break;
        };
        summary.record_count += u64::try_from(count).unwrap_or(0);
        summary.batch_bytes += (end - position) as u64;
        summary.next_offset = Some(base_offset + i64::from(last_delta) + 1);
        position = end;
    }
    summary
}

/// Calls `f` with each record value of complete, uncompressed batches (for end-to-end latency).
pub fn for_each_value(records: &[u8], mut f: impl FnMut(&[u8])) {
    let mut position = 0usize;
    while let Some(batch_length) = be_i32(records, position + 8) {
        let Ok(batch_length) = usize::try_from(batch_length) else {
            return;
        };
        let end = position + 12 + batch_length;
        if end > records.len() || batch_length < BATCH_HEADER_BYTES - 12 {
            return;
        }
        let mut at = position + BATCH_HEADER_BYTES;
        while at < end {
            let Some((length, n)) = get_varint(&records[at..end]) else {
                return;
            };
            let record_end = at + n + length as usize;
            if record_end > end {
                return;
            }
            let mut r = at + n + 1; // skip attributes
            for _ in 0..2 {
                let Some((_, n)) = get_varint(&records[r..record_end]) else {
                    return;
                };
                r += n;
            }
            let Some((key_length, n)) = get_varint(&records[r..record_end]) else {
                return;
            };
            r += n + usize::try_from(key_length.max(0)).unwrap_or(0);
            let Some((value_length, n)) = get_varint(&records[r.min(record_end)..record_end])
            else {
                return;
            };
            r += n;
            if value_length >= 0 && r + value_length as usize <= record_end {
                f(&records[r..r + value_length as usize]);
            }
            at = record_end;
        }
        position = end;
    }
}

/// Zigzag varint -> (value, bytes read).
fn get_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_batch_round_trips_through_the_readers() {
        // Proves the encoder and both readers agree on the layout.
        let values: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let batch = encode_batch(values.iter().map(Vec::as_slice), 1);
        let summary = summarize(&batch);
        assert_eq!(summary.record_count, 5);
        assert_eq!(summary.next_offset, Some(5));
        assert_eq!(summary.batch_bytes, batch.len() as u64);
        let mut seen = Vec::new();
        for_each_value(&batch, |v| seen.push(v.to_vec()));
        assert_eq!(seen, values);
    }
}
