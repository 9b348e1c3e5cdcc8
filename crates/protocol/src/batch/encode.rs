//! Encoding v2 batches: the header, the CRC and Kafka's varints every writer of batches uses,
//! and uncompressed batches (the batches the broker writes itself, and test input).

use super::header::{
    BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_SEQUENCE, OFFSET_ATTRIBUTES,
    OFFSET_CRC,
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
    let mut body = Vec::new();
    for (index, record) in spec.records.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varlong(&mut rec, record.timestamp_delta);
        put_varlong(&mut rec, index as i64);
        put_nullable(&mut rec, record.key);
        put_nullable(&mut rec, record.value);
        put_varlong(&mut rec, record.headers.len() as i64);
        for (key, value) in &record.headers {
            put_nullable(&mut rec, Some(key));
            put_nullable(&mut rec, *value);
        }
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let count = spec.records.len() as i32;
    let max_timestamp = spec
        .records
        .iter()
        .map(|r| spec.base_timestamp + r.timestamp_delta)
        .max()
        .unwrap_or(spec.base_timestamp);
    let header = BatchHeader {
        base_offset: spec.base_offset,
        batch_length: (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
        partition_leader_epoch: spec.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes: spec.attributes,
        last_offset_delta: (count - 1).max(0),
        base_timestamp: spec.base_timestamp,
        max_timestamp,
        producer_id: spec.producer_id,
        producer_epoch: spec.producer_epoch,
        base_sequence: spec.base_sequence,
        record_count: count,
    };
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    put_header(&mut out, &header);
    out.extend_from_slice(&body);
    seal(&mut out);
    out
}

/// Appends the 61 bytes of `header` to `out`, its CRC as given (see [`seal`]).
pub(super) fn put_header(out: &mut Vec<u8>, header: &BatchHeader) {
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&header.batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(header.magic as u8);
    out.extend_from_slice(&header.crc.to_be_bytes());
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.record_count.to_be_bytes());
}

/// Computes and writes the CRC of `batch`, one whole batch.
pub(super) fn seal(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Kafka's zig-zag varlong (`ByteUtils.writeVarlong`).
pub(super) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A nullable byte field: its varint length (-1 for null) and its bytes.
pub(super) fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}
