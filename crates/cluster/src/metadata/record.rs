//! Records of the metadata log, shaped after KRaft's (`TopicRecord`, `RemoveTopicRecord`,
//! `ConfigRecord`, `ProducerIdsRecord`) so clustering can later replicate the same stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to cluster state. Serialized as JSON inside a CRC-checked frame: metadata changes
/// are rare and small, and a readable log is worth more here than a compact one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The first record of every log: who this cluster is.
    Cluster { cluster_id: String },
    /// A topic was created with these partitions and explicitly set configs.
    Topic {
        name: String,
        topic_id: Uuid,
        partitions: u32,
        configs: BTreeMap<String, String>,
    },
    /// A topic was deleted. Its partition directories are removed asynchronously by the broker.
    RemoveTopic { topic_id: Uuid },
    /// A topic config was set (`Some`) or removed back to its default (`None`).
    TopicConfig {
        topic_id: Uuid,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` are handed out: a restart continues from here, so
    /// ids never repeat even when the previous process died mid-block.
    ProducerIds { next_producer_id: i64 },
}
