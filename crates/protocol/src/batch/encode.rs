//! Encoding uncompressed v2 batches: the batches the broker writes itself, and test input.

use super::header::{
    BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_SEQUENCE, OFFSET_ATTRIBUTES, OFFSET_CRC,
};

/// One record for [`encode_uncompressed_batch`].
#[derive(Debug, Clone, Default)]
pub struct RecordSpec<'a> {
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Header fields for [`encode_uncompressed_batch`]; the rest are derived from the records.
#[derive(Debug, Clone)]
pub struct BatchSpec<'a> {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<RecordSpec<'a>>,
}

impl Default for BatchSpec<'_> {
    fn default() -> Self {
        BatchSpec {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            base_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            records: Vec::new(),
        }
    }
}

/// Encodes a valid uncompressed v2 batch, CRC included. For tests (here, in storage and in
/// the broker) and for broker-written batches; trusted input, sizes come from real slices.
pub fn encode_uncompressed_batch(spec: &BatchSpec<'_>) -> Vec<u8> {
    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }
    let mut body = Vec::new();
    for (index, record) in spec.records.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varint(&mut rec, record.timestamp_delta);
        put_varint(&mut rec, index as i64);
        put_bytes(&mut rec, record.key);
        put_bytes(&mut rec, record.value);
        put_varint(&mut rec, record.headers.len() as i64);
        for (key, value) in &record.headers {
            put_bytes(&mut rec, Some(key));
            put_bytes(&mut rec, *value);
        }
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let count = spec.records.len() as i32;
    let max_timestamp = spec
        .records
        .iter()
        .map(|r| spec.base_timestamp + r.timestamp_delta)
        .max()
        .unwrap_or(spec.base_timestamp);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&spec.base_offset.to_be_bytes());
    out.extend_from_slice(&((BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&spec.attributes.to_be_bytes());
    out.extend_from_slice(&(count - 1).max(0).to_be_bytes());
    out.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&spec.producer_id.to_be_bytes());
    out.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    out.extend_from_slice(&spec.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}
