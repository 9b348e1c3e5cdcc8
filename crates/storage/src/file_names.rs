//! The offset part of every per-segment file name (`00000000000000000042.log`, `.index`,
//! `.timeindex`, `.txnindex`, `.snapshot`): Kafka's 20-digit, zero-padded base offset. Its own
//! module so the segment and the files named after it (transaction index, producer snapshots)
//! share it without depending on each other.

/// Kafka's `LogFileUtils.filenamePrefixFromOffset`: the offset padded to 20 digits.
pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}
