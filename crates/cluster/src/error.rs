//! The cluster crate's one error type. The broker maps it to Kafka error codes in one place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("metadata log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata log {path} is corrupt at byte {position}: {reason}")]
    CorruptLog {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    #[error("invalid number of partitions {0}")]
    InvalidPartitions(i32),
    #[error("replication factor {requested} is larger than the {available} available broker(s)")]
    InvalidReplicationFactor { requested: i32, available: i32 },
    #[error("invalid config {name}={value}: {reason}")]
    InvalidConfig {
        name: String,
        value: String,
        reason: String,
    },
    #[error("the metadata log already holds {0} records; raise metadata.log.records.max")]
    MetadataLogFull(u64),
    /// Kafka's "Exhausted all producerIds": no block of ids is left below `i64::MAX`.
    #[error("exhausted all producer ids: the next block would pass {0}")]
    ProducerIdsExhausted(i64),
    /// A request names the same config key twice (Kafka: INVALID_REQUEST, "Error due to
    /// duplicate config keys").
    #[error("duplicate config key '{0}'")]
    DuplicateConfig(String),
    /// A config value or name Kafka refuses with INVALID_CONFIG; the text is Kafka's message
    /// ("Invalid value abc for configuration retention.ms: Not a number of type LONG").
    #[error("{0}")]
    ConfigRejected(String),
    /// A config change Kafka refuses with INVALID_REQUEST (dynamic broker configs it cannot
    /// change, bad operations); the text is Kafka's message.
    #[error("{0}")]
    ConfigRequestRejected(String),
    /// A replica was to be placed on a broker that is not registered.
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(i32),
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
