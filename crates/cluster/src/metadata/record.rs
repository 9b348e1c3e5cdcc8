//! Records of the metadata log, shaped after KRaft's (`TopicRecord`, `PartitionRecord`,
//! `RemoveTopicRecord`, `ConfigRecord`, `ProducerIdsRecord`, `RegisterBrokerRecord`) so
//! clustering can replicate the same stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker endpoint as registered (Kafka's `BrokerEndpoint` of `RegisterBrokerRecord`): the
/// listener's name, the advertised host and port, and its security protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerListener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

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
    /// A dynamic broker config was set (`Some`) or removed (`None`): Kafka's `ConfigRecord` for
    /// a BROKER resource. `resource` is a node id, or `""` for the cluster-wide default.
    BrokerConfig {
        resource: String,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` are handed out: a restart continues from here, so
    /// ids never repeat even when the previous process died mid-block.
    ProducerIds { next_producer_id: i64 },
    /// A partition's registration (Kafka's `PartitionRecord`): where its replicas live, which
    /// are in sync, who leads and at which epoch. Follows its topic's `Topic` record; a later
    /// one for the same partition replaces it whole.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        /// -1 when no replica can lead.
        leader: i32,
        /// Bumped whenever the leader changes; clients fence stale requests with it.
        leader_epoch: i32,
        /// Bumped on every change of the registration (Kafka's partition epoch).
        partition_epoch: i32,
        /// Replicas a reassignment is adding / removing (Kafka's `addingReplicas` /
        /// `removingReplicas`); absent from records written before reassignment existed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing: Vec<i32>,
        /// Eligible leader replicas (KIP-966): replicas out of an ISR that shrank below
        /// `min.insync.replicas`, still safe to elect; absent from older records.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elr: Vec<i32>,
        /// The last known leader of a leaderless partition (Kafka's `lastKnownElr`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        last_known_elr: Vec<i32>,
    },
    /// A feature's finalized level changed (Kafka's `FeatureLevelRecord`); level 0 takes the
    /// feature out of the finalized set.
    FeatureLevel { name: String, level: i16 },
    /// A broker registered (Kafka's `RegisterBrokerRecord`): its id, the incarnation that
    /// registered, and the endpoint clients reach it at.
    RegisterBroker {
        node_id: i32,
        incarnation_id: Uuid,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// A broker incarnation registered (Kafka's `RegisterBrokerRecord` of KRaft): its epoch
    /// (the offset of this record), its incarnation id, its listeners by name, rack, and
    /// whether it starts fenced. Replaces any earlier registration of the node. (The older
    /// `RegisterBroker` record, one endpoint and no epoch, is still replayed from old logs.)
    BrokerRegistration {
        node_id: i32,
        incarnation_id: Uuid,
        broker_epoch: i64,
        listeners: Vec<BrokerListener>,
        rack: Option<String>,
        fenced: bool,
        in_controlled_shutdown: bool,
        /// The broker's log directory ids (Kafka's `LogDirs`).
        #[serde(default)]
        log_dirs: Vec<Uuid>,
    },
    /// A broker was fenced (Kafka's `BrokerRegistrationChangeRecord` with FENCE, or the older
    /// `FenceBrokerRecord`): it leads nothing and is not listed to clients.
    FenceBroker { node_id: i32, broker_epoch: i64 },
    /// A fenced broker was unfenced (caught up with the metadata log and asked to be).
    UnfenceBroker { node_id: i32, broker_epoch: i64 },
    /// A broker entered controlled shutdown (Kafka's `BrokerRegistrationChangeRecord` with
    /// IN_CONTROLLED_SHUTDOWN): its leaderships move away before it stops.
    BrokerInControlledShutdown { node_id: i32, broker_epoch: i64 },
    /// A broker's registration was removed (Kafka's `UnregisterBrokerRecord`).
    UnregisterBroker { node_id: i32, broker_epoch: i64 },
    /// Part of a partition's registration changed (Kafka's `PartitionChangeRecord`): `None`
    /// leaves a field as it is. A new leader (including -1) bumps the leader epoch; every
    /// change bumps the partition epoch.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: Option<i32>,
        isr: Option<Vec<i32>>,
        replicas: Option<Vec<i32>>,
        /// A reassignment's adding / removing replicas, set or cleared (see `Partition`);
        /// absent (unchanged) in records written before reassignment existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adding: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removing: Option<Vec<i32>>,
        /// The eligible leader replicas and last known leader, set or cleared (see
        /// `Partition`); absent (unchanged) in records written before they existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elr: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_known_elr: Option<Vec<i32>>,
    },
}
