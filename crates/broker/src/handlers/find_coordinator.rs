//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition,
//! a transactional id's the leader of its `__transaction_state` partition, as the metadata
//! image registers them; each topic is created on first use. Share groups have no
//! coordinator yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::metadata::BrokerImage;
use runnel_cluster::MetadataImage;

use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `CoordinatorType`.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

struct Answer {
    error: ResponseError,
    message: Option<&'static str>,
    node: Option<(i32, String, i32)>,
}

fn not_available() -> Answer {
    Answer {
        error: ResponseError::CoordinatorNotAvailable,
        message: Some("The coordinator is not available."),
        node: None,
    }
}

/// The leader of the partition of `internal_topic` that holds `key`, as `image` registers it,
/// and its endpoint (`endpoint`: for the listener the request came in on, Kafka's rule).
/// COORDINATOR_NOT_AVAILABLE when the topic does not exist, the partition has no leader, or
/// the leader is not a registered broker.
fn coordinator(
    image: &MetadataImage,
    internal_topic: &str,
    key: &str,
    endpoint: impl Fn(&BrokerImage) -> (String, u16),
) -> Answer {
    let Some(topic) = image.topic(internal_topic) else {
        return not_available();
    };
    let partitions = i32::try_from(topic.partitions).unwrap_or(i32::MAX);
    // Transactional ids hash as group ids do (Kafka's `partitionFor` of both).
    let partition = runnel_cluster::group::offsets_partition_for(key, partitions);
    let leader = topic.registration(partition).map_or(-1, |r| r.leader);
    match image.brokers.get(&leader) {
        // A fenced leader is not serving: the client asks again after a backoff.
        Some(b) if b.is_live() => {
            let (host, port) = endpoint(b);
            Answer {
                error: ResponseError::UnknownServerError,
                message: None,
                node: Some((b.node_id, host, i32::from(port))),
            }
        }
        _ => not_available(),
    }
}

fn answer(broker: &Broker, listener: &str, key_type: i8, key: &str) -> Answer {
    match key_type {
        KEY_TYPE_GROUP => match broker.ensure_offsets_topic() {
            Ok(()) => coordinator(
                &broker.image(),
                crate::internal_topics::OFFSETS_TOPIC,
                key,
                |b| broker.endpoint(b, listener),
            ),
            Err(e) => {
                tracing::error!(error = %e, "creating __consumer_offsets");
                Answer {
                    error: ResponseError::CoordinatorNotAvailable,
                    message: Some("The coordinator is not available."),
                    node: None,
                }
            }
        },
        KEY_TYPE_TRANSACTION => match broker.ensure_transaction_topic() {
            Ok(()) => coordinator(
                &broker.image(),
                crate::internal_topics::TRANSACTION_STATE_TOPIC,
                key,
                |b| broker.endpoint(b, listener),
            ),
            Err(e) => {
                tracing::error!(error = %e, "creating __transaction_state");
                not_available()
            }
        },
        // Share groups (KIP-932) and unknown types: Kafka answers INVALID_REQUEST without a
        // share coordinator.
        _ => Answer {
            error: ResponseError::InvalidRequest,
            message: Some("This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details."),
            node: None,
        },
    }
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let fill = |a: &Answer| -> (i16, Option<StrBytes>, BrokerId, StrBytes, i32) {
        match &a.node {
            Some((id, host, port)) => (
                0,
                None,
                BrokerId(*id),
                StrBytes::from_string(host.clone()),
                *port,
            ),
            None => (
                a.error.code(),
                a.message.map(StrBytes::from_static_str),
                BrokerId(-1),
                StrBytes::from_static_str(""),
                -1,
            ),
        }
    };
    let listener = &*ctx.connection.listener;
    if version < 4 {
        let a = answer(broker, listener, request.key_type, request.key.as_str());
        let (error_code, message, node_id, host, port) = fill(&a);
        return FindCoordinatorResponse::default()
            .with_error_code(error_code)
            .with_error_message(if version >= 1 { message } else { None })
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port);
    }
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let a = answer(broker, listener, request.key_type, key.as_str());
            let (error_code, message, node_id, host, port) = fill(&a);
            Coordinator::default()
                .with_key(key)
                .with_error_code(error_code)
                .with_error_message(message)
                .with_node_id(node_id)
                .with_host(host)
                .with_port(port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal_topics::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
    use runnel_cluster::metadata::{PartitionImage, TopicImage};
    use std::sync::Arc;

    /// An image of brokers 1 and 2 where partition i of `topic` is led by `leaders[i]`.
    fn image(topic: &str, leaders: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::empty();
        for (id, host, port) in [(1, "one", 9001u16), (2, "two", 9002)] {
            image.brokers.insert(
                id,
                BrokerImage {
                    node_id: id,
                    incarnation_id: uuid::Uuid::nil(),
                    host: host.into(),
                    port,
                    rack: None,
                    broker_epoch: 0,
                    listeners: Vec::new(),
                    fenced: false,
                    in_controlled_shutdown: false,
                    log_dirs: Vec::new(),
                },
            );
        }
        let topic_id = uuid::Uuid::from_u128(42);
        image.topics.insert(
            topic.into(),
            Arc::new(TopicImage {
                name: topic.into(),
                topic_id,
                partitions: leaders.len() as u32,
                configs: Default::default(),
                registrations: leaders
                    .iter()
                    .enumerate()
                    .map(|(i, &leader)| {
                        (
                            i as i32,
                            PartitionImage {
                                replicas: vec![leader],
                                isr: vec![leader],
                                leader,
                                leader_epoch: 0,
                                partition_epoch: 0,
                                adding: vec![],
                                removing: vec![],
                                elr: Vec::new(),
                                last_known_elr: Vec::new(),
                            },
                        )
                    })
                    .collect(),
            }),
        );
        image
    }

    /// A key whose partition (of `partitions`) is `partition`.
    fn key_on(partition: i32, partitions: i32) -> String {
        (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| runnel_cluster::group::offsets_partition_for(k, partitions) == partition)
            .unwrap()
    }

    /// The endpoint each broker has on the listener "EXTERNAL" (port + 100), as a listener
    /// map would give it.
    fn external(b: &BrokerImage) -> (String, u16) {
        (format!("{}-external", b.host), b.port + 100)
    }

    // Proves the coordinator of a key is the registered leader of its partition, answered
    // with that broker's endpoint for the request's listener, for both key types, whichever
    // node asks.
    #[test]
    fn the_coordinator_is_the_leader_of_the_keys_partition() {
        for topic in [OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC] {
            let image = image(topic, &[1, 2, 1, 2]);
            let on_two = key_on(1, 4);
            let a = coordinator(&image, topic, &on_two, external);
            assert_eq!(a.node, Some((2, "two-external".to_string(), 9102)));
            let on_one = key_on(2, 4);
            let a = coordinator(&image, topic, &on_one, external);
            assert_eq!(a.node, Some((1, "one-external".to_string(), 9101)));
        }
    }

    // Proves COORDINATOR_NOT_AVAILABLE when the topic does not exist yet, the key's partition
    // has no leader, or its leader is not a registered broker.
    #[test]
    fn no_leader_no_coordinator() {
        let image = image(OFFSETS_TOPIC, &[-1, 3]);
        for key in [key_on(0, 2), key_on(1, 2)] {
            let a = coordinator(&image, OFFSETS_TOPIC, &key, external);
            assert_eq!(a.node, None);
            assert_eq!(a.error, ResponseError::CoordinatorNotAvailable);
        }
        let a = coordinator(&image, TRANSACTION_STATE_TOPIC, "t", external);
        assert_eq!(a.error, ResponseError::CoordinatorNotAvailable);
    }
}
