//! ElectLeaders (KIP-460), answered as Kafka's controller answers it
//! (`ReplicationControlManager.electLeaders` / `electLeader`).
//!
//! A preferred election is needed only where the leader is not the first replica, an unclean
//! one only where a partition has no leader. A single node leads every partition and is every
//! partition's only replica, so every existing partition answers ELECTION_NOT_NEEDED and no
//! record is ever written. When replication arrives this moves into the controller engine,
//! which will produce the leader changes.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::MetadataImage;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `ElectionType`: 0 preferred, 1 unclean (v0 requests carry no type: preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElectionType {
    Preferred,
    Unclean,
}

/// The error and message of one partition's election.
type Outcome = (ResponseError, Option<String>);

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    if !broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::Alter,
        ResourceType::Cluster,
        "kafka-cluster",
    ) {
        return error_response(
            request,
            version,
            ResponseError::ClusterAuthorizationFailed,
            None,
        );
    }
    let election_type = match (version, request.election_type) {
        (0, _) | (_, 0) => ElectionType::Preferred,
        (_, 1) => ElectionType::Unclean,
        (_, other) => {
            return error_response(
                request,
                version,
                ResponseError::InvalidRequest,
                Some(format!("Unknown election type {other}")),
            )
        }
    };
    let image = broker.image();
    let results = match &request.topic_partitions {
        // Every partition; those that already have the desired leader are left out, but every
        // topic is listed.
        None => image
            .topics
            .values()
            .map(|topic| {
                let partitions = (0..i32::try_from(topic.partitions).unwrap_or(i32::MAX))
                    .filter_map(|p| {
                        let outcome = elect_leader(&image, &topic.name, p, election_type);
                        (outcome.0 != ResponseError::ElectionNotNeeded)
                            .then(|| partition_result(p, outcome))
                    })
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_partition_result(partitions)
            })
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        partition_result(
                            *p,
                            elect_leader(&image, topic.topic.0.as_str(), *p, election_type),
                        )
                    })
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partition_result(partitions)
            })
            .collect(),
    };
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// Kafka's `electLeader` for one partition, with its messages.
fn elect_leader(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election_type: ElectionType,
) -> Outcome {
    let Some(topic_image) = image.topic(topic) else {
        return (
            ResponseError::UnknownTopicOrPartition,
            Some(format!("No such topic as {topic}")),
        );
    };
    let in_range = u32::try_from(partition).is_ok_and(|p| p < topic_image.partitions);
    if !in_range {
        return (
            ResponseError::UnknownTopicOrPartition,
            Some(format!("No such partition as {topic}-{partition}")),
        );
    }
    let registration = topic_image.registration(partition);
    let not_needed = match election_type {
        ElectionType::Preferred => {
            registration.is_some_and(|r| r.leader >= 0 && r.replicas.first() == Some(&r.leader))
        }
        ElectionType::Unclean => registration.is_some_and(|r| r.leader >= 0),
    };
    if not_needed {
        return (ResponseError::ElectionNotNeeded, None);
    }
    // Nothing here can move a leader yet: Kafka's answer when no replica can take over.
    match election_type {
        ElectionType::Preferred => (ResponseError::PreferredLeaderNotAvailable, None),
        ElectionType::Unclean => (ResponseError::EligibleLeadersNotAvailable, None),
    }
}

/// One partition's result; an error without a message carries Kafka's default message for
/// its code (`new ApiError(error)`). No election succeeds here, so there is no success result.
fn partition_result(partition: i32, (error, message): Outcome) -> PartitionResult {
    let message = message.unwrap_or_else(|| kafka_message(error).to_owned());
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// Kafka's `Errors` message for the codes answered here without a message of their own.
fn kafka_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::ElectionNotNeeded => "Leader election not needed for topic partition.",
        ResponseError::PreferredLeaderNotAvailable => "The preferred leader was not available.",
        ResponseError::EligibleLeadersNotAvailable => {
            "Eligible topic partition leaders are not available."
        }
        ResponseError::ClusterAuthorizationFailed => "Cluster authorization failed.",
        // Every call site passes a message for any other code.
        _ => "",
    }
}

/// Kafka's `ElectLeadersRequest.getErrorResponse`: the error at the top (v1+; v0 has no
/// top-level error) and on every named partition.
fn error_response(
    request: &ElectLeadersRequest,
    version: i16,
    error: ResponseError,
    message: Option<String>,
) -> ElectLeadersResponse {
    let message = message.or_else(|| Some(kafka_message(error).to_owned()));
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|topic| {
            ReplicaElectionResult::default()
                .with_topic(topic.topic.clone())
                .with_partition_result(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(error.code())
                                .with_error_message(message.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(if version >= 1 { error.code() } else { 0 })
        .with_replica_election_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::protocol::Encodable;

    // An error answer encodes at every version: v0 has no top-level error code, so it carries
    // the error on the partitions only.
    #[test]
    fn error_answers_encode_at_every_version() {
        let request = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0]),
        ]));
        for version in 0..=2 {
            let response = error_response(
                &request,
                version,
                ResponseError::ClusterAuthorizationFailed,
                None,
            );
            let mut buf = bytes::BytesMut::new();
            response.encode(&mut buf, version).expect("encodes");
            let partition = &response.replica_election_results[0].partition_result[0];
            assert_eq!(partition.error_code, 31);
            assert_eq!(
                partition.error_message.as_deref(),
                Some("Cluster authorization failed.")
            );
            assert_eq!(response.error_code, if version == 0 { 0 } else { 31 });
        }
    }
}
