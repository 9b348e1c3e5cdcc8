//! Kafka's internal topics: the coordinators' logs, which clients may not produce to.

use std::collections::BTreeMap;

/// Kafka's `GROUP_METADATA_TOPIC_NAME`.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topic configs of `__consumer_offsets`, as Kafka's `groupMetadataTopicConfigs` creates it:
/// compacted, the producer's compression, and `segment.bytes` from the broker's
/// `offsets.topic.segment.bytes`. Like Kafka, the value is not checked here: one below the
/// topic minimum of `segment.bytes` (1 MiB) makes the topic's creation fail, as it does there.
pub fn offsets_topic_configs(segment_bytes: i32) -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("compression.type", "producer".to_owned()),
        ("segment.bytes", segment_bytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Kafka's `TRANSACTION_STATE_TOPIC_NAME`.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Topic configs of `__transaction_state`, as Kafka's `transactionTopicConfigs` creates it:
/// compacted, uncompressed, no unclean leader election, and `segment.bytes` from the broker's
/// `transaction.state.log.segment.bytes`. Kafka also sets `min.insync.replicas` from
/// `transaction.state.log.min.isr` (default 2); runnel creates the topic with one replica (as
/// it does `__consumer_offsets`, whatever the replication factor key says), so the cluster's
/// `min.insync.replicas` applies, as it must for the coordinator's acks=all writes to succeed.
pub fn transaction_topic_configs(segment_bytes: i32) -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("compression.type", "uncompressed".to_owned()),
        ("segment.bytes", segment_bytes.to_string()),
        ("unclean.leader.election.enable", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The replication factor an internal topic is created with: Kafka's
/// `offsets.topic.replication.factor` / `transaction.state.log.replication.factor` (`configured`,
/// default 3) capped at 1, because partition data is not replicated yet and a topic must never
/// report replicas that do not hold its data (the controller refuses RF > 1 for that reason).
/// The partitions still go through the controller's CreateTopic, so its placer spreads their
/// leaders (and so the coordinators' shards) across the live brokers.
pub fn replication_factor(configured: i16) -> i16 {
    configured.min(1)
}

/// Kafka's default for both internal topics' replication factor keys.
pub const REPLICATION_FACTOR_DEFAULT: i16 = 3;

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}
