//! Kafka's internal topics: the coordinators' logs, which clients may not produce to.

use std::collections::BTreeMap;

/// Kafka's `GROUP_METADATA_TOPIC_NAME`.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topic configs of `__consumer_offsets`, as Kafka creates it (`offsets.topic.segment.bytes`,
/// compaction).
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact"),
        ("compression.type", "producer"),
        ("segment.bytes", "104857600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == "__transaction_state"
}
