//! Per-partition log settings (Kafka topic configs of the same names).

use runnel_protocol::batch::{Compression, TimestampType};

/// Kafka's `BrokerCompressionType`: the values of `compression.type` on a topic or broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerCompressionType {
    /// Keep the producer's codec (Kafka's default).
    #[default]
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl BrokerCompressionType {
    /// `BrokerCompressionType.forName`: case-insensitive; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<BrokerCompressionType> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "producer" => BrokerCompressionType::Producer,
            "uncompressed" => BrokerCompressionType::Uncompressed,
            "gzip" => BrokerCompressionType::Gzip,
            "snappy" => BrokerCompressionType::Snappy,
            "lz4" => BrokerCompressionType::Lz4,
            "zstd" => BrokerCompressionType::Zstd,
            _ => return None,
        })
    }
}

/// Settings that shape one partition's log. `Default` gives Kafka 4.1's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty segment whose first batch is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: cap on each index file; a full index rolls the segment.
    pub segment_index_bytes: u32,
    /// `max.message.bytes`: largest batch (after the 12-byte log overhead) accepted on append.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`: keep producer timestamps or stamp the broker clock.
    pub message_timestamp_type: TimestampType,
    /// `segment.jitter.ms`: each segment rolls up to this much (a random amount below
    /// `min(segment.jitter.ms, segment.ms)`) before `segment.ms`, so logs created together do
    /// not all roll at once.
    pub segment_jitter_ms: i64,
    /// `retention.ms`: a segment whose largest timestamp is older than this is deleted; -1
    /// keeps segments forever.
    pub retention_ms: i64,
    /// `retention.bytes`: the oldest segments go while the log minus them stays at or above
    /// this size; -1 for no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `delete`: only then do `retention.ms` and `retention.bytes`
    /// delete segments (DeleteRecords' log start applies whatever the policy).
    pub retention_enabled: bool,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay renamed `.deleted`
    /// before they are removed.
    pub file_delete_delay_ms: i64,
    /// `compression.type`: the codec appended batches are stored with.
    pub compression_type: BrokerCompressionType,
    /// `compression.gzip.level` (-1 is zlib's default, 6).
    pub compression_gzip_level: i32,
    /// `compression.lz4.level`.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`.
    pub compression_zstd_level: i32,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record may be.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record may be.
    pub message_timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`, and the settings the log cleaner follows.
    pub compaction: crate::cleaner::CompactionConfig,
}

impl LogConfig {
    /// Kafka's `BrokerCompressionType.targetCompression`: the codec and level a batch written
    /// with `source` is stored with. `producer` keeps the producer's codec at its default level
    /// (used only if the batch must be rebuilt anyway); the others name codec and level.
    pub fn target_compression(&self, source: Compression) -> (Compression, Option<i32>) {
        match self.compression_type {
            BrokerCompressionType::Producer => (source, None),
            BrokerCompressionType::Uncompressed => (Compression::None, None),
            BrokerCompressionType::Gzip => (Compression::Gzip, Some(self.compression_gzip_level)),
            BrokerCompressionType::Snappy => (Compression::Snappy, None),
            BrokerCompressionType::Lz4 => (Compression::Lz4, Some(self.compression_lz4_level)),
            BrokerCompressionType::Zstd => (Compression::Zstd, Some(self.compression_zstd_level)),
        }
    }

    /// Kafka's `LogConfig.maxSegmentMs`: a compacted log also rolls by `max.compaction.lag.ms`,
    /// since the active segment is never cleaned and its records must become cleanable within
    /// that lag.
    pub fn max_segment_ms(&self) -> i64 {
        if self.compaction.compact && self.compaction.max_compaction_lag_ms > 0 {
            self.compaction.max_compaction_lag_ms.min(self.segment_ms)
        } else {
            self.segment_ms
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            message_timestamp_type: TimestampType::CreateTime,
            segment_jitter_ms: 0,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            retention_enabled: true,
            file_delete_delay_ms: 60_000,
            compression_type: BrokerCompressionType::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            compaction: crate::cleaner::CompactionConfig::default(),
        }
    }
}
