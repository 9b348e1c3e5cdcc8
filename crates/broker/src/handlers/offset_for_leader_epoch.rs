//! OffsetForLeaderEpoch (KIP-101/KIP-320): the end offset of a leader epoch in a partition's
//! log, from its leader-epoch cache. Consumers ask it after a leader change to detect a
//! truncated log; followers to find where to truncate. Kafka's `KafkaApis`
//! `handleOffsetForLeaderEpochRequest`, `ReplicaManager.lastOffsetForLeaderEpoch` and
//! `Partition.lastOffsetForLeaderEpoch`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::storage_error_code;
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let image = broker.image();
    // A follower holds CLUSTER_ACTION; a consumer needs DESCRIBE on the topic (KIP-320).
    let cluster_action = broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::ClusterAction,
        ResourceType::Cluster,
        "kafka-cluster",
    );
    // `replica_id` does not matter: Kafka 4 answers every caller from the leader only.
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let authorized = cluster_action
                || broker.authorizer.authorize(
                    ctx.principal(),
                    AclOperation::Describe,
                    ResourceType::Topic,
                    name,
                );
            let resolved = image.topic(name);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    if !authorized {
                        return answer
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(topic_image) = resolved else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let Some(partition) = broker.partition(&topic_image.topic_id, p.partition)
                    else {
                        // Known to the metadata but not held here.
                        let code = if topic_image.registration(p.partition).is_some() {
                            ResponseError::NotLeaderOrFollower
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        return answer.with_error_code(code.code());
                    };
                    // -1 (NO_PARTITION_LEADER_EPOCH) skips the check.
                    if let Some(code) = super::leader_error(p.current_leader_epoch, &partition) {
                        return answer.with_error_code(code);
                    }
                    match partition.reader().snapshot() {
                        Ok(log) => match log.end_offset_for_epoch(p.leader_epoch) {
                            Some((epoch, end_offset)) => {
                                answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                            }
                            // UNDEFINED_EPOCH_OFFSET: no error, epoch and offset -1.
                            None => answer,
                        },
                        Err(e) => answer.with_error_code(storage_error_code(&e)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
