//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use bytes::Bytes;
use runnel_protocol::batch::{
    check_stored_batch, encode_uncompressed_batch, BatchHeader, BatchRecords, BatchSpec,
    Compression, RecordSpec,
};
use runnel_protocol::compression::DecompressLimits;
use runnel_storage::PartitionLog;

/// The topic id the test logs belong to.
pub const TOPIC: [u8; 16] = [7; 16];

/// `n` keyless records of `value_bytes` each, timestamps from `base_ts`, no producer id.
pub fn batch(n: usize, base_ts: i64, value_bytes: usize) -> Vec<u8> {
    batch_for(n, base_ts, value_bytes, -1, -1, -1)
}

/// Like `batch`, from producer `pid` at `epoch` starting at sequence `seq`.
pub fn batch_for(
    n: usize,
    base_ts: i64,
    value_bytes: usize,
    pid: i64,
    epoch: i16,
    seq: i32,
) -> Vec<u8> {
    let value = vec![b'v'; value_bytes];
    let records = (0..n)
        .map(|i| RecordSpec {
            timestamp_delta: i as i64,
            key: None,
            value: Some(&value),
            headers: vec![],
        })
        .collect();
    encode_uncompressed_batch(&BatchSpec {
        base_timestamp: base_ts,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records,
        ..BatchSpec::default()
    })
}

/// The batches of stored bytes, each checked as recovery checks them.
pub fn split(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        check_stored_batch(&bytes[pos..pos + h.size_bytes()]).unwrap();
        pos += h.size_bytes();
        out.push(h);
    }
    out
}

/// Base offsets of the segments in a partition directory, from the `.log` file names.
pub fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// Descriptors of this process whose target lies under `dir`, the unlinked ones included
/// (Linux shows those as `<path> (deleted)`).
pub fn descriptors_under(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// One record to append: key, value (`None` = tombstone).
pub type Rec = (Vec<u8>, Option<Vec<u8>>);

/// A batch of keyed records (tombstones where the value is `None`), timestamps from `base_ts`;
/// from producer `pid` starting at sequence `seq` when `pid >= 0`.
pub fn keyed_batch(records: &[Rec], base_ts: i64, pid: i64, seq: i32) -> Bytes {
    let specs = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| RecordSpec {
            timestamp_delta: i as i64,
            key: Some(k.as_slice()),
            value: v.as_deref(),
            headers: vec![],
        })
        .collect();
    Bytes::from(encode_uncompressed_batch(&BatchSpec {
        base_timestamp: base_ts,
        producer_id: pid,
        producer_epoch: if pid >= 0 { 0 } else { -1 },
        base_sequence: if pid >= 0 { seq } else { -1 },
        records: specs,
        ..BatchSpec::default()
    }))
}

/// A record as read back: offset, key, value.
pub type ReadRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// `batch` (uncompressed) with its records section compressed with codec number `codec` (1-4).
pub fn compress(batch: &[u8], codec: i16) -> Bytes {
    let kind = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ][(codec - 1) as usize];
    let mut out = batch[..61].to_vec();
    out.extend_from_slice(
        &runnel_protocol::compression::compress(kind, None, &batch[61..]).unwrap(),
    );
    let attributes = i16::from_be_bytes([out[21], out[22]]) | codec;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// Every record readable from the log start: (offset, key, value), plus the batch headers.
pub fn read_all(log: &PartitionLog) -> (Vec<ReadRecord>, Vec<BatchHeader>) {
    let mut records = Vec::new();
    let mut headers = Vec::new();
    let mut offset = log.log_start_offset();
    let leo = log.log_end_offset();
    while offset < leo {
        let bytes = log.read(offset, 1 << 20, leo, true).unwrap();
        if bytes.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).unwrap();
            let batch = &bytes[pos..pos + h.size_bytes()];
            check_stored_batch(batch).unwrap();
            BatchRecords::open(batch, DecompressLimits::for_max_message_bytes(1 << 20))
                .unwrap()
                .for_each(|r| {
                    let record_offset = h.base_offset + i64::from(r.offset_delta);
                    if record_offset >= offset {
                        records.push((
                            record_offset,
                            r.key.map(<[u8]>::to_vec),
                            r.value.map(<[u8]>::to_vec),
                        ));
                    }
                })
                .unwrap();
            offset = h.last_offset() + 1;
            headers.push(h);
            pos += h.size_bytes();
        }
    }
    (records, headers)
}
