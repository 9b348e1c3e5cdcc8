//! The one place where errors of the lower crates become Kafka error codes. Every match is
//! exhaustive, with no catch-all arm: a new error variant must be given its code here before
//! the broker compiles. Broken invariants of our own code are assertions, never codes.

use kafka_protocol::error::ResponseError;
use runnel_cluster::ClusterError;
use runnel_protocol::batch::BatchError;
use runnel_storage::StorageError;

pub fn cluster_error_code(e: &ClusterError) -> i16 {
    match e {
        ClusterError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ClusterError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        ClusterError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        ClusterError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        ClusterError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        ClusterError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        ClusterError::ReassignmentInProgress(_) => ResponseError::ReassignmentInProgress,
        ClusterError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ClusterError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ClusterError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ClusterError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ClusterError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        ClusterError::DuplicateConfig(_) => ResponseError::InvalidRequest,
        ClusterError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        ClusterError::ConfigRejected(_) => ResponseError::InvalidConfig,
        ClusterError::ConfigRequestRejected(_) => ResponseError::InvalidRequest,
        ClusterError::InconsistentClusterId(_) => ResponseError::InconsistentClusterId,
        ClusterError::DuplicateBrokerRegistration(_) => ResponseError::DuplicateBrokerRegistration,
        ClusterError::InvalidRegistration(_) => ResponseError::InvalidRegistration,
        ClusterError::UnsupportedVersion(_) => ResponseError::UnsupportedVersion,
        ClusterError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
        ClusterError::BrokerIdNotRegistered(_) => ResponseError::BrokerIdNotRegistered,
        // Kafka answers both as an unexpected server error.
        ClusterError::ProducerIdsExhausted(_) | ClusterError::BrokerNotRegistered(_) => {
            ResponseError::UnknownServerError
        }
        ClusterError::Io { .. }
        | ClusterError::CorruptLog { .. }
        | ClusterError::MetadataLogFull(_) => ResponseError::UnknownServerError,
        ClusterError::NotController(_) => ResponseError::NotController,
        // The active controller already chose the code.
        ClusterError::Forwarded { code, .. } => return *code,
    }
    .code()
}

/// Whether `e` says the topic exists already: this node's own refusal, or the active
/// controller's when the command was forwarded (which carries only the code). Creating an
/// internal topic on first use treats both as done: another broker created it meanwhile.
pub fn is_topic_already_exists(e: &ClusterError) -> bool {
    cluster_error_code(e) == ResponseError::TopicAlreadyExists.code()
}

/// The error message Kafka sends with `cluster_error_code(e)` in admin responses: none where
/// Kafka's exception carries only its code's default text (an unknown topic) or where it keeps
/// details to itself (UNKNOWN_SERVER_ERROR, `ApiError.fromThrowable`); else the error's text,
/// which for these variants is Kafka's message.
pub fn cluster_error_message(e: &ClusterError) -> Option<String> {
    match e {
        ClusterError::UnknownTopic(_) | ClusterError::UnknownTopicId(_) => None,
        ClusterError::ProducerIdsExhausted(_)
        | ClusterError::BrokerNotRegistered(_)
        | ClusterError::Io { .. }
        | ClusterError::CorruptLog { .. }
        | ClusterError::MetadataLogFull(_)
        | ClusterError::NotController(_) => None,
        ClusterError::Forwarded { message, .. } => message.clone(),
        ClusterError::TopicAlreadyExists(_)
        | ClusterError::InvalidTopic { .. }
        | ClusterError::InvalidPartitions(_)
        | ClusterError::UnknownTopicOrPartition(_)
        | ClusterError::NoReassignmentInProgress(_)
        | ClusterError::ReassignmentInProgress(_)
        | ClusterError::InvalidReplicaAssignment(_)
        | ClusterError::InvalidRequest(_)
        | ClusterError::InvalidUpdateVersion(_)
        | ClusterError::ConfigRejected(_)
        | ClusterError::ConfigRequestRejected(_)
        | ClusterError::InvalidReplicationFactor(_)
        | ClusterError::InvalidConfig { .. }
        | ClusterError::DuplicateConfig(_)
        | ClusterError::InconsistentClusterId(_)
        | ClusterError::DuplicateBrokerRegistration(_)
        | ClusterError::InvalidRegistration(_)
        | ClusterError::UnsupportedVersion(_)
        | ClusterError::StaleBrokerEpoch(_)
        | ClusterError::BrokerIdNotRegistered(_) => Some(e.to_string()),
    }
}

pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::CorruptMessage(_) => ResponseError::CorruptMessage,
        BatchError::InvalidRecord(_) => ResponseError::InvalidRecord,
        BatchError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
        BatchError::CompressionFailed(_) => ResponseError::UnknownServerError,
    }
    .code()
}

pub fn storage_error_code(e: &StorageError) -> i16 {
    match e {
        StorageError::Batch(b) => return batch_error_code(b),
        StorageError::InvalidRecords { .. } => ResponseError::InvalidRecord,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        StorageError::TransactionCoordinatorFenced { .. } => {
            ResponseError::TransactionCoordinatorFenced
        }
        // The disk failed or holds bytes we cannot trust: KAFKA_STORAGE_ERROR makes clients
        // refresh metadata and retry, as with a failed log dir in Kafka.
        StorageError::Io(_)
        | StorageError::Poisoned
        | StorageError::Corrupt(_)
        | StorageError::TopicIdMismatch => ResponseError::KafkaStorageError,
        // A read that kept losing to truncations (replication): retriable, and the retry reads
        // the truncated log.
        StorageError::SnapshotStale => ResponseError::KafkaStorageError,
        // Only a follower append raises it, and no client sees it; Kafka's exception has no
        // error code of its own either.
        StorageError::UnexpectedAppendOffset { .. } => ResponseError::UnknownServerError,
        StorageError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
    }
    .code()
}

pub const NONE: i16 = 0;

/// Kafka's `getPartitionOrError` for a partition this node does not hold: one the metadata
/// knows (placed on another broker) answers NOT_LEADER_OR_FOLLOWER, so the client refreshes
/// its metadata and goes to the leader; any other UNKNOWN_TOPIC_OR_PARTITION.
pub fn not_held_error(topic: &runnel_cluster::TopicImage, index: i32) -> i16 {
    use kafka_protocol::error::ResponseError;
    if u32::try_from(index).is_ok_and(|i| i < topic.partitions) {
        ResponseError::NotLeaderOrFollower.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the refusal of a create forwarded to the active controller, which arrives as a
    // bare code, counts as "exists" like this node's own refusal, and nothing else does.
    #[test]
    fn a_forwarded_topic_already_exists_is_recognised() {
        assert!(is_topic_already_exists(&ClusterError::TopicAlreadyExists(
            "__consumer_offsets".into()
        )));
        assert!(is_topic_already_exists(&ClusterError::Forwarded {
            code: ResponseError::TopicAlreadyExists.code(),
            message: Some("Topic '__consumer_offsets' already exists.".into()),
        }));
        assert!(!is_topic_already_exists(&ClusterError::Forwarded {
            code: ResponseError::NotController.code(),
            message: None,
        }));
        assert!(!is_topic_already_exists(&ClusterError::NotController(
            "no leader".into()
        )));
    }
}
