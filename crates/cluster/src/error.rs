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
    /// Kafka's message: "Topic 'x' already exists."
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// `reason` is Kafka's whole message (`Topic.validate`, the collision check).
    #[error("{reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    /// A partition count refused, with Kafka's message (CreateTopics, CreatePartitions).
    #[error("{0}")]
    InvalidPartitions(String),
    /// Explicit replica assignments refused, with Kafka's message.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A request Kafka answers with INVALID_REQUEST, with its message.
    #[error("{0}")]
    InvalidRequest(String),
    /// A replication factor refused, with Kafka's message.
    #[error("{0}")]
    InvalidReplicationFactor(String),
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
    /// UpdateFeatures asked for a level Kafka's rules refuse (INVALID_UPDATE_VERSION); the
    /// message is Kafka's.
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// A config value or name Kafka refuses with INVALID_CONFIG; the text is Kafka's message
    /// ("Invalid value abc for configuration retention.ms: Not a number of type LONG").
    #[error("{0}")]
    ConfigRejected(String),
    /// A config change Kafka refuses with INVALID_REQUEST (dynamic broker configs it cannot
    /// change, bad operations); the text is Kafka's message.
    #[error("{0}")]
    ConfigRequestRejected(String),
    /// BrokerRegistration from a broker of another cluster (INCONSISTENT_CLUSTER_ID).
    #[error("{0}")]
    InconsistentClusterId(String),
    /// Another incarnation of the node id still has a valid session
    /// (DUPLICATE_BROKER_REGISTRATION).
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// A registration Kafka refuses as INVALID_REGISTRATION.
    #[error("{0}")]
    InvalidRegistration(String),
    /// A registering broker does not support a finalized feature level (UNSUPPORTED_VERSION).
    #[error("{0}")]
    UnsupportedVersion(String),
    /// A heartbeat of an epoch that is not the broker's registration (STALE_BROKER_EPOCH).
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// UnregisterBroker of an unknown broker (BROKER_ID_NOT_REGISTERED).
    #[error("{0}")]
    BrokerIdNotRegistered(String),
    /// UNKNOWN_TOPIC_OR_PARTITION with Kafka's message ("Unable to find partition t:3.").
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// A reassignment cancelled where none is under way (NO_REASSIGNMENT_IN_PROGRESS).
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// A partition's reassignment cannot be changed now (REASSIGNMENT_IN_PROGRESS): its data
    /// is being drained to the new replica.
    #[error("{0}")]
    ReassignmentInProgress(String),
    /// A replica was to be placed on a broker that is not registered.
    #[error("broker {0} is not registered")]
    BrokerNotRegistered(i32),
    /// No active controller is known (an election is under way) or it could not be reached:
    /// Kafka's NOT_CONTROLLER, which clients retry.
    #[error("{0}")]
    NotController(String),
    /// The active controller refused a forwarded command with this Kafka error code and
    /// message.
    #[error("{}", message.as_deref().unwrap_or("the active controller refused the request"))]
    Forwarded { code: i16, message: Option<String> },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
