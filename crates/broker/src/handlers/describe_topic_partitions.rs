//! DescribeTopicPartitions (KIP-966): topics and their partitions, paged by a partition limit
//! and a cursor, as Kafka's `DescribeTopicPartitionsRequestHandler` and
//! `KRaftMetadataCache.describeTopicResponse` answer it. `kafka-topics --describe` uses it.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::controller::validate_topic_name;
use runnel_cluster::{MetadataImage, TopicImage};
use uuid::Uuid;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::internal_topics::is_internal_topic;
use crate::state::Broker;

/// Kafka's `max.request.partition.size.limit` default: the most partitions one response holds,
/// whatever the request's `response_partition_limit`.
pub const RESPONSE_PARTITIONS_MAX: i32 = 2000;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let image = broker.image();
    let all_topics = request.topics.is_empty();
    let cursor_topic = request
        .cursor
        .as_ref()
        .map_or("", |c| c.topic_name.as_str());
    // Names at or after the cursor's topic, sorted (Kafka sorts the names it describes).
    let names: BTreeSet<&str> = if all_topics {
        image
            .topics
            .keys()
            .map(String::as_str)
            .filter(|name| *name >= cursor_topic)
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.as_str())
            .filter(|name| *name >= cursor_topic)
            .collect()
    };
    if let Some(cursor) = &request.cursor {
        if !all_topics && !names.contains(cursor.topic_name.as_str()) {
            return refused(request);
        }
        if cursor.partition_index < 0 {
            return refused(request);
        }
    }
    let mut unauthorized = Vec::new();
    // Every name is checked before any is described (Kafka sorts the stream, which runs the
    // whole filter), so each unauthorized name is answered even past the partition limit.
    let authorized: Vec<&str> = names
        .into_iter()
        .filter(|name| {
            let allowed = broker.authorizer.authorize(
                ctx.principal(),
                AclOperation::Describe,
                ResourceType::Topic,
                name,
            );
            // Listing every topic hides the unauthorized ones; named ones are answered without an id.
            if !all_topics && !allowed {
                unauthorized.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_name(Some(topic_name(name)))
                        .with_topic_id(Uuid::nil())
                        .with_is_internal(false),
                );
            }
            allowed
        })
        .collect();
    let limit = request
        .response_partition_limit
        .clamp(1, RESPONSE_PARTITIONS_MAX);
    let start = |name: &str| match &request.cursor {
        Some(c) if c.topic_name.as_str() == name => c.partition_index,
        _ => 0,
    };
    let mut response = describe(
        &image,
        &ctx.connection.listener,
        authorized.into_iter(),
        start,
        limit,
        all_topics,
    );
    for topic in &mut response.topics {
        let name = topic.name.as_ref().map_or("", |n| n.as_str());
        topic.topic_authorized_operations =
            broker
                .authorizer
                .authorized_operations(ctx.principal(), ResourceType::Topic, name);
    }
    response.topics.extend(unauthorized);
    response
}

/// Kafka's `describeTopicResponse`: topics in order until `limit` partitions are described;
/// the cursor then names the next partition (mid-topic) or the next topic. With `all_topics`
/// unknown names are skipped, else answered with an error.
fn describe<'a>(
    image: &MetadataImage,
    listener: &str,
    names: impl Iterator<Item = &'a str>,
    start: impl Fn(&str) -> i32,
    limit: i32,
    all_topics: bool,
) -> DescribeTopicPartitionsResponse {
    let mut response = DescribeTopicPartitionsResponse::default();
    let mut remaining = limit;
    for name in names {
        if remaining == 0 {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(0),
            );
            break;
        }
        let Some(topic) = image.topic(name) else {
            if !all_topics {
                let code = if validate_topic_name(name).is_ok() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::InvalidTopicException
                };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(code.code())
                        .with_name(Some(topic_name(name)))
                        .with_topic_id(Uuid::nil())
                        .with_is_internal(is_internal_topic(name)),
                );
            }
            continue;
        };
        let (partitions, next) = partitions(image, listener, topic, start(name), remaining);
        let described = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(topic.topic_id)
                .with_is_internal(is_internal_topic(name))
                .with_partitions(partitions),
        );
        if let Some(next) = next {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(name))
                    .with_partition_index(next),
            );
            break;
        }
        remaining -= described;
    }
    response
}

/// Partitions `first..` of `topic`, at most `count`, and the index of the first one left out.
fn partitions(
    image: &MetadataImage,
    listener: &str,
    topic: &TopicImage,
    first: i32,
    count: i32,
) -> (Vec<DescribeTopicPartitionsResponsePartition>, Option<i32>) {
    let total = i32::try_from(topic.partitions).unwrap_or(i32::MAX);
    let end = total.min(first.saturating_add(count));
    let ids = |nodes: &[i32]| nodes.iter().map(|n| BrokerId(*n)).collect::<Vec<_>>();
    let described = (first..end)
        .filter_map(|index| {
            // Kafka skips a partition the image lacks (with a warning); after startup every
            // partition here is registered.
            let r = topic.registration(index)?;
            let offline = image.offline_replicas(&r.replicas, listener);
            let leader = if image.leader_reachable(r.leader, listener) {
                r.leader
            } else {
                -1
            };
            Some(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(index)
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(r.leader_epoch)
                    .with_replica_nodes(ids(&r.replicas))
                    .with_isr_nodes(ids(&r.isr))
                    // KIP-966's eligible leader replicas and last known leader, as the
                    // registration holds them (empty lists, never null, as Kafka's).
                    .with_eligible_leader_replicas(Some(ids(&r.elr)))
                    .with_last_known_elr(Some(ids(&r.last_known_elr)))
                    .with_offline_replicas(ids(&offline)),
            )
        })
        .collect();
    (described, (end < total).then_some(end))
}

/// Kafka's answer to a request it refuses as invalid (a cursor outside the named topics, a
/// negative cursor partition): INVALID_REQUEST for every named topic.
fn refused(request: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    DescribeTopicPartitionsResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(t.name.clone()))
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_is_internal(false)
            })
            .collect(),
    )
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}
