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
        }
    }
}
