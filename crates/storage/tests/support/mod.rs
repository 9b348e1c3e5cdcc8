//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use runnel_protocol::batch::{
    check_stored_batch, encode_uncompressed_batch, BatchHeader, BatchSpec, RecordSpec,
};

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
