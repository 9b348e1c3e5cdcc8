//! Per-partition log settings (Kafka topic configs of the same names).

use runnel_protocol::batch::TimestampType;

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
    /// `cleanup.policy` contains `compact`, and the settings the log cleaner follows.
    pub compaction: crate::cleaner::CompactionConfig,
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
            compaction: crate::cleaner::CompactionConfig::default(),
        }
    }
}

impl LogConfig {
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
