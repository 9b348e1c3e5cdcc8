//! Consumer groups: the group coordinator as a sans-IO state machine.
//!
//! Requests and clock ticks go in; responses and records to append to `__consumer_offsets` come
//! out. The broker's thin async shell owns time, timers, the log and the sockets.
//!
//! - `classic`: the classic protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup).
//! - `consumer`: the KIP-848 consumer protocol (ConsumerGroupHeartbeat/Describe).
//! - `offsets`: committed offsets for both kinds of group.
//! - `txn_offsets`: offsets committed in transactions not ended yet (TxnOffsetCommit).
//! - `request`: the requests it answers, and their all-failed answers.
//! - `output`: what it asks of its shell (responses, appends).
//! - `records`: Kafka's `__consumer_offsets` key/value schemas (bytes from disk are hostile).

pub mod classic;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
pub mod offsets;
mod output;
pub mod records;
mod request;
pub mod txn_offsets;

#[cfg(test)]
mod tests;

pub use classic::ClassicState;

/// Who sent a request, as Kafka takes it from the request context: the header's client id and
/// the peer's host (`/ip`). Classic groups build member ids from it and persist it in the group
/// record; consumer groups persist it in the member record; both show it in describe answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}
pub use coordinator::{GroupCoordinator, GroupRequest, Output, RequestId};
pub use request::{
    coordinator_write_error_code, txn_offset_commit_error, txn_offset_commit_failed,
};

/// The `__consumer_offsets` partition that holds `group_id` (Kafka's `partitionFor`:
/// `Utils.abs(groupId.hashCode()) % partitions`, with Java's `String.hashCode` over UTF-16 code
/// units). Its leader is the group's coordinator.
pub fn offsets_partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Errors of the group coordinator. Client mistakes are answered with Kafka error codes in
/// responses; these are for bytes replayed from `__consumer_offsets`.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("corrupt __consumer_offsets record: {0}")]
    CorruptRecord(String),
    #[error("consumer group record rejected: {0}")]
    ConsumerGroup(String),
}

use uuid::Uuid;

/// Group coordinator settings, with Kafka 4.1's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000)
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000)
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000)
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size` (Kafka: Int.MAX; a named bound either way)
    pub group_max_size: i32,
    /// `offsets.retention.minutes` (10080) in ms
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes` (4096)
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.num.partitions` (50)
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes` (104857600): `segment.bytes` of `__consumer_offsets` when
    /// it is created.
    pub offsets_topic_segment_bytes: i32,
    /// `group.consumer.session.timeout.ms` (45000)
    pub consumer_group_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (5000)
    pub consumer_group_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size` (Int.MAX)
    pub consumer_group_max_size: i32,
    /// `group.consumer.assignors` (["uniform", "range"]); the first is the default.
    pub consumer_group_assignors: Vec<String>,
    /// `group.consumer.migration.policy` (bidirectional): whether a live group moves between
    /// the classic and the consumer protocol as its members do.
    pub consumer_group_migration_policy: MigrationPolicy,
}

/// Kafka's `ConsumerGroupMigrationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// No online migration; classic members cannot join a consumer group.
    Disabled,
    /// A classic group becomes a consumer group when a consumer-protocol member joins.
    Upgrade,
    /// A consumer group becomes a classic group when its last consumer-protocol member leaves.
    Downgrade,
    /// Both.
    Bidirectional,
}

impl MigrationPolicy {
    /// Parses the config value as Kafka does (case-insensitive).
    pub fn parse(value: &str) -> Option<MigrationPolicy> {
        match value.to_ascii_lowercase().as_str() {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }

    pub fn is_upgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    pub fn is_downgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_max_size: i32::MAX,
            offsets_retention_ms: 10_080 * 60 * 1000,
            offset_metadata_max_bytes: 4096,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            consumer_group_session_timeout_ms: 45_000,
            consumer_group_heartbeat_interval_ms: 5_000,
            consumer_group_max_size: i32::MAX,
            consumer_group_assignors: vec!["uniform".into(), "range".into()],
            consumer_group_migration_policy: MigrationPolicy::Bidirectional,
        }
    }
}

/// What the coordinator may know of topics: a read-only view of the metadata image, passed on
/// every call so the state machines stay free of shared state.
pub trait TopicView {
    /// Topic id and partition count of a topic by name.
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, u32)>;
    /// Topic name and partition count by id.
    fn topic_by_id(&self, id: &Uuid) -> Option<(String, u32)>;
    /// Every topic name (for regex subscriptions), sorted.
    fn topic_names(&self) -> Vec<String>;
}

/// One record for `__consumer_offsets`: key bytes and value bytes (`None` is a tombstone).
pub type Record = (bytes::Bytes, Option<bytes::Bytes>);
