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

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == "__transaction_state"
}
