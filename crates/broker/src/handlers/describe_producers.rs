//! DescribeProducers (v0): the active producers of partitions (Kafka's
//! `KafkaApis.handleDescribeProducersRequest`, `ReplicaManager.activeProducerState`,
//! `UnifiedLog.activeProducers`): producer id, epoch, last sequence, last timestamp,
//! coordinator epoch and the first offset of its open transaction. `kafka-transactions
//! describe-producers` and `find-hanging` read it, and `Admin.abortTransaction` learns the
//! coordinator epoch of a hanging transaction from it.
//!
//! Per topic, in Kafka's order: an invalid name answers INVALID_TOPIC_EXCEPTION (with Kafka's
//! message), no READ on the topic TOPIC_AUTHORIZATION_FAILED, an unknown topic
//! UNKNOWN_TOPIC_OR_PARTITION; per partition, one the topic does not have
//! UNKNOWN_TOPIC_OR_PARTITION, one it has but this broker does not hold NOT_LEADER_OR_FOLLOWER.
//!
//! The producers come from the partition's reader (`LogReader::active_producers`), a copy
//! the writer keeps current, so a describe never waits for an append or its fsync.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::controller::validate_topic_name;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = broker.image();
    let mut response = DescribeProducersResponse::default();
    for topic in &request.topics {
        let name = topic.name.as_str();
        let topic_error: Option<(i16, Option<String>)> = if let Err(e) = validate_topic_name(name) {
            Some((
                crate::errors::cluster_error_code(&e),
                crate::errors::cluster_error_message(&e),
            ))
        } else if !broker.authorizer.authorize(
            ctx.principal(),
            AclOperation::Read,
            ResourceType::Topic,
            name,
        ) {
            Some((ResponseError::TopicAuthorizationFailed.code(), None))
        } else if image.topic(name).is_none() {
            Some((ResponseError::UnknownTopicOrPartition.code(), None))
        } else {
            None
        };
        let mut answer = TopicResponse::default().with_name(topic.name.clone());
        for &index in &topic.partition_indexes {
            let partition = PartitionResponse::default().with_partition_index(index);
            let partition = match (&topic_error, image.topic(name)) {
                (Some((code, message)), _) => partition
                    .with_error_code(*code)
                    .with_error_message(message.clone().map(StrBytes::from_string)),
                (None, None) => {
                    partition.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                }
                (None, Some(t)) => match broker.partition(&t.topic_id, index) {
                    Some(p) if !p.is_leader() => {
                        partition.with_error_code(ResponseError::NotLeaderOrFollower.code())
                    }
                    Some(p) => partition.with_active_producers(
                        p.reader()
                            .active_producers()
                            .into_iter()
                            .map(|a| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_producer_epoch(i32::from(a.producer_epoch))
                                    .with_last_sequence(a.last_sequence)
                                    .with_last_timestamp(a.last_timestamp)
                                    .with_coordinator_epoch(a.coordinator_epoch)
                                    .with_current_txn_start_offset(a.current_txn_start_offset)
                            })
                            .collect(),
                    ),
                    // Kafka's `getPartitionOrError`: a partition the metadata knows but this
                    // broker does not host answers NOT_LEADER_OR_FOLLOWER.
                    None if u32::try_from(index).is_ok_and(|i| i < t.partitions) => {
                        partition.with_error_code(ResponseError::NotLeaderOrFollower.code())
                    }
                    None => {
                        partition.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                },
            };
            answer.partitions.push(partition);
        }
        response.topics.push(answer);
    }
    response
}
