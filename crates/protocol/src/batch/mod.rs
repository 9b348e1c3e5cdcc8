//! Record batch (magic v2) headers: parsing, validation and in-place patching.
//!
//! Layout of a v2 batch (all integers big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//! attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! ```
//!
//! `batchLength` counts the bytes after itself, so a batch occupies `batchLength + 12` bytes. The
//! CRC32C covers `attributes` to the end of the batch, which is why the broker can patch
//! `baseOffset` and `partitionLeaderEpoch` without recomputing it.
//!
//! Every input here is hostile: no panics, no unchecked indexing and no allocation sized from a
//! count read off the wire. The only allocation in [`validate_batches`] is the result vector,
//! which grows by one entry per batch actually present (each at least [`BATCH_HEADER_LEN`] bytes).
//!
//! One file per concern: `header` holds the fixed header (field offsets, decoding, the CRC and the
//! in-place patches), `validate` the rules a produced or stored batch must pass and `BatchError`,
//! `records` the walk over the records inside a batch, `encode` the writing primitives (header,
//! CRC, varints) and the encoder for uncompressed batches, and `decoded` the records of any batch
//! through the bounded decompressing reader (`crate::compression`) and the encoders that write
//! them into a new batch (`rebuild_batch`, `retain_records`, `empty_batch`).

mod decoded;
mod encode;
mod header;
mod records;
#[cfg(test)]
mod test_support;
mod validate;

pub use decoded::{
    empty_batch, rebuild_batch, retain_records, BatchRecords, Rebuild, RecordView, NO_TIMESTAMP,
};
pub use encode::{encode_uncompressed_batch, BatchSpec, RecordSpec};
pub use header::{
    decrement_sequence, increment_sequence, patch_base_offset, patch_log_append_time,
    patch_max_timestamp, patch_partition_leader_epoch, BatchHeader, Compression, TimestampType,
    BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, NO_SEQUENCE,
};
pub use records::{for_each_record, for_each_stored_record};
pub use validate::{check_stored_batch, validate_batches, BatchError, BatchRef};
