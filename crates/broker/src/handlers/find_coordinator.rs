//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition,
//! a transactional id's the leader of its `__transaction_state` partition, as the metadata
//! image registers them; each topic is created on first use. Share groups have no
//! coordinator yet.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

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

/// The leader of the partition of `internal_topic` that holds `key` and its endpoint on
/// `listener`.
fn coordinator(broker: &Broker, listener: &str, internal_topic: &str, key: &str) -> Answer {
    let image = broker.image();
    let Some(topic) = image.topic(internal_topic) else {
        return not_available();
    };
    let partitions = i32::try_from(topic.partitions).unwrap_or(i32::MAX);
    // Transactional ids hash as group ids do (Kafka's `partitionFor` of both).
    let partition = runnel_cluster::group::offsets_partition_for(key, partitions);
    let leader = topic.registration(partition).map_or(-1, |r| r.leader);
    match image.brokers.get(&leader) {
        Some(b) => {
            let (host, port) = broker.endpoint(b, listener);
            Answer {
                error: ResponseError::UnknownServerError,
                message: None,
                node: Some((b.node_id, host, i32::from(port))),
            }
        }
        None => not_available(),
    }
}

fn answer(broker: &Broker, listener: &str, key_type: i8, key: &str) -> Answer {
    match key_type {
        KEY_TYPE_GROUP => match broker.ensure_offsets_topic() {
            Ok(()) => coordinator(broker, listener, crate::internal_topics::OFFSETS_TOPIC, key),
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
                broker,
                listener,
                crate::internal_topics::TRANSACTION_STATE_TOPIC,
                key,
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
