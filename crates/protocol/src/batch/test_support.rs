//! The batches the unit tests of this module start from.

use super::encode::{encode_uncompressed_batch, BatchSpec, RecordSpec};
use super::header::{OFFSET_ATTRIBUTES, OFFSET_CRC};

/// A `max.message.bytes` (1 MiB) far above every test batch.
pub(super) const MAX: usize = 1 << 20;

/// A valid client batch: base offset 0, `n` records with small keys and values.
pub(super) fn batch_with(n: usize) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
    let records = keys
        .iter()
        .enumerate()
        .map(|(i, k)| RecordSpec {
            timestamp_delta: i as i64,
            key: Some(k),
            value: Some(b"value"),
            headers: vec![(b"h".as_slice(), Some(b"v".as_slice()))],
        })
        .collect();
    encode_uncompressed_batch(&BatchSpec {
        base_timestamp: 1_000,
        records,
        ..BatchSpec::default()
    })
}

/// Rewrites the CRC after a test edits covered bytes, so the edit reaches later checks.
pub(super) fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}
