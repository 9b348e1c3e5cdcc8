//! DeleteRecords (v0-2): moves partitions' log start offsets forward. Kafka's
//! `KafkaApis.handleDeleteRecordsRequest`, `ReplicaManager.deleteRecords` and
//! `Partition.deleteRecordsOnLeader`.
//!
//! Per partition, in Kafka's order: TOPIC_AUTHORIZATION_FAILED without DELETE on the topic,
//! UNKNOWN_TOPIC_OR_PARTITION for a partition the metadata does not know, INVALID_TOPIC_EXCEPTION
//! for an internal topic, POLICY_VIOLATION for a `compact`-only topic, OFFSET_OUT_OF_RANGE for an
//! offset below -1 or past the high watermark; otherwise the log start moves (durably, see
//! `storage::log_start`) and the answer carries the low watermark. Every error answers low
//! watermark -1.
//!
//! `timeout_ms` bounds how long Kafka waits for followers' log starts to reach the offset
//! (`DelayedDeleteRecords`). On one node the leader is every replica, and its log start is at or
//! past the offset once the call returns, so there is never anything to wait for (Kafka's
//! `delayedDeleteRecordsRequired` is false) and the timeout, like Kafka's, is not checked.
//!
//! A partition named twice is answered once, with the last offset given for it, as Kafka's
//! map of requested offsets keeps the last.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, TopicName};

use crate::authorizer::{AclOperation, ResourceType};
use crate::clock::now_ms;
use crate::context::RequestContext;
use crate::internal_topics::is_internal_topic;
use crate::state::Broker;

/// Kafka's `DeleteRecordsResponse.INVALID_LOW_WATERMARK`.
const INVALID_LOW_WATERMARK: i64 = -1;

/// A topic named in the request: its partitions in first-named order with their last offset,
/// and where each partition is in that list.
type NamedPartitions = (TopicName, Vec<(i32, i64)>, HashMap<i32, usize>);

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    // Topics and partitions in the order first named, each partition with its last offset.
    // Indexed by maps: a request of millions of partitions is grouped in linear time.
    let mut topics: Vec<NamedPartitions> = Vec::new();
    let mut topic_positions: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        let position = *topic_positions.entry(&topic.name.0).or_insert_with(|| {
            topics.push((topic.name.clone(), Vec::new(), HashMap::new()));
            topics.len() - 1
        });
        let (_, partitions, positions) = &mut topics[position];
        for p in &topic.partitions {
            match positions.get(&p.partition_index) {
                Some(&at) => partitions[at].1 = p.offset,
                None => {
                    positions.insert(p.partition_index, partitions.len());
                    partitions.push((p.partition_index, p.offset));
                }
            }
        }
    }
    let image = broker.image();
    let results = topics
        .into_iter()
        .map(|(name, partitions, _)| {
            let authorized = broker.authorizer.authorize(
                ctx.principal(),
                AclOperation::Delete,
                ResourceType::Topic,
                &name.0,
            );
            let topic = image.topic(&name.0);
            let results = partitions
                .into_iter()
                .map(|(index, offset)| {
                    let answer = if !authorized {
                        Err(ResponseError::TopicAuthorizationFailed.code())
                    } else if !topic
                        .is_some_and(|t| u32::try_from(index).is_ok_and(|i| i < t.partitions))
                    {
                        Err(ResponseError::UnknownTopicOrPartition.code())
                    } else if is_internal_topic(&name.0) {
                        // Kafka: "Cannot delete records of internal topic ...".
                        Err(ResponseError::InvalidTopicException.code())
                    } else {
                        match topic.and_then(|t| broker.partition(&t.topic_id, index)) {
                            // A checkpoint fsync and renames: off the async worker.
                            Some(partition) if !partition.is_leader() => {
                                Err(ResponseError::NotLeaderOrFollower.code())
                            }
                            Some(partition) => crate::blocking::blocking(|| {
                                partition.delete_records_on_leader(offset, now_ms())
                            }),
                            // Known to the metadata but not held here (Kafka's replica manager:
                            // NOT_LEADER_OR_FOLLOWER); on one node only while a partition opens.
                            None => Err(ResponseError::NotLeaderOrFollower.code()),
                        }
                    };
                    let (low_watermark, error_code) = match answer {
                        Ok(low_watermark) => (low_watermark, 0),
                        Err(code) => (INVALID_LOW_WATERMARK, code),
                    };
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(low_watermark)
                        .with_error_code(error_code)
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(results)
        })
        .collect();
    DeleteRecordsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(results)
}
