//! Metadata: brokers, controller, topics and partitions; auto-creates topics when allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::{MetadataImage, TopicImage};
use uuid::Uuid;

use crate::authorizer::{ResourceType, AUTHORIZED_OPERATIONS_OMITTED};
use crate::context::RequestContext;
use crate::errors::cluster_error_code;
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let node = broker.node_id();
    // No topic authorizes differently yet (allow-all); asked per topic once ACLs exist.
    let topic_ops = if request.include_topic_authorized_operations {
        broker
            .authorizer
            .authorized_operations(ctx.principal(), ResourceType::Topic, "")
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    // v0 and v1..3 always allowed auto-creation; v4 made it a request field.
    let allow_auto_create =
        broker.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);

    let mut topics = Vec::new();
    match request.topics {
        // v1+: null means every topic. v0: an empty list means every topic.
        None => topics.extend(all_topics(broker, &ctx.connection.listener, topic_ops)),
        Some(requested) if requested.is_empty() && version == 0 => {
            topics.extend(all_topics(broker, &ctx.connection.listener, topic_ops))
        }
        Some(requested) => {
            for wanted in requested {
                let mut entry = describe_one(
                    broker,
                    &ctx.connection.listener,
                    wanted.name.map(|n| n.0.to_string()),
                    wanted.topic_id,
                    allow_auto_create,
                    topic_ops,
                );
                // Topic names are nullable only from v12; before that an unknown id gets "".
                if version < 12 && entry.name.is_none() {
                    entry.name = Some(TopicName(StrBytes::from_static_str("")));
                }
                topics.push(entry);
            }
        }
    }

    let image = broker.image();
    MetadataResponse::default()
        .with_brokers(
            // Kafka's `getAliveBrokerNodes`: unfenced brokers with an endpoint on the
            // request's listener.
            image
                .brokers
                .values()
                .filter(|b| b.is_live())
                .filter_map(|b| {
                    let (host, port) = broker.endpoint_for(b, &ctx.connection.listener)?;
                    Some(
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(b.node_id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(i32::from(port))
                            .with_rack(b.rack.clone().map(StrBytes::from_string)),
                    )
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(image.cluster_id.clone())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            broker.authorizer.authorized_operations(
                ctx.principal(),
                ResourceType::Cluster,
                "kafka-cluster",
            )
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
}

fn all_topics(broker: &Broker, listener: &str, topic_ops: i32) -> Vec<MetadataResponseTopic> {
    let image = broker.image();
    image
        .topics
        .values()
        .map(|t| topic_entry(&image, listener, t, topic_ops))
        .collect()
}

fn describe_one(
    broker: &Broker,
    listener: &str,
    name: Option<String>,
    topic_id: Uuid,
    allow_auto_create: bool,
    topic_ops: i32,
) -> MetadataResponseTopic {
    let image = broker.image();
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_error_code(code.code())
            .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(topic_id)
            .with_topic_authorized_operations(topic_ops)
    };
    let Some(name) = name.clone() else {
        // Lookup by id (v10+).
        return match image.topic_by_id(&topic_id) {
            Some(t) => topic_entry(&image, listener, t, topic_ops),
            None => error(ResponseError::UnknownTopicId),
        };
    };
    if let Some(topic) = image.topic(&name) {
        return topic_entry(&image, listener, topic, topic_ops);
    }
    if !allow_auto_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    match broker.create_topic(&name, -1, -1, BTreeMap::new(), false) {
        Ok(topic) => {
            tracing::info!(topic = %name, partitions = topic.partitions, "auto-created topic");
            topic_entry(&broker.image(), listener, &topic, topic_ops)
        }
        // Another request created it meanwhile.
        Err(e) if crate::errors::is_topic_already_exists(&e) => match broker.image().topic(&name) {
            Some(topic) => topic_entry(&broker.image(), listener, topic, topic_ops),
            None => error(ResponseError::LeaderNotAvailable),
        },
        Err(e) => MetadataResponseTopic::default()
            .with_error_code(cluster_error_code(&e))
            .with_name(Some(TopicName(StrBytes::from_string(name))))
            .with_topic_authorized_operations(topic_ops),
    }
}

/// A topic's partitions as their registrations in the image say: leader, epoch, replicas and
/// in-sync replicas. A replica on a broker the image does not know is offline; a partition with
/// no registration (never so after startup) has no leader yet.
fn topic_entry(
    image: &MetadataImage,
    listener: &str,
    topic: &Arc<TopicImage>,
    topic_ops: i32,
) -> MetadataResponseTopic {
    let ids = |nodes: &[i32]| nodes.iter().map(|n| BrokerId(*n)).collect::<Vec<_>>();
    let partitions = (0..i32::try_from(topic.partitions).unwrap_or(i32::MAX))
        .map(|index| {
            let entry = MetadataResponsePartition::default().with_partition_index(index);
            match topic.registration(index) {
                Some(r) => {
                    // Kafka's `partitionMetadata`: a leader without an endpoint on this
                    // listener (none, or not registered) is reported as -1 with
                    // LEADER_NOT_AVAILABLE; replicas and ISR are listed as registered.
                    let offline = image.offline_replicas(&r.replicas, listener);
                    let entry = entry
                        .with_leader_epoch(r.leader_epoch)
                        .with_replica_nodes(ids(&r.replicas))
                        .with_isr_nodes(ids(&r.isr))
                        .with_offline_replicas(ids(&offline));
                    if image.leader_reachable(r.leader, listener) {
                        entry.with_leader_id(BrokerId(r.leader))
                    } else {
                        entry
                            .with_error_code(ResponseError::LeaderNotAvailable.code())
                            .with_leader_id(BrokerId(-1))
                    }
                }
                None => entry
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(crate::internal_topics::is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_ops)
}
