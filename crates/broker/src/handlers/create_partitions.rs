//! CreatePartitions: grows topics through the controller (Kafka's `ControllerApis
//! .createPartitions`). New partitions are committed to the metadata log and opened by the
//! publisher before the image shows them, so a client that sees the new count may use them.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::{cluster_error_code, cluster_error_message};
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let result = |name: &TopicName, code: i16, message: Option<String>| {
        CreatePartitionsTopicResult::default()
            .with_name(name.clone())
            .with_error_code(code)
            .with_error_message(message.map(StrBytes::from_string))
    };
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    for topic in &request.topics {
        if !seen.insert(topic.name.as_str()) {
            duplicates.insert(topic.name.as_str());
        }
    }
    // Kafka answers duplicates first (once per name), then topics not authorized, then the
    // controller's results.
    let mut reported = BTreeSet::new();
    let mut results: Vec<CreatePartitionsTopicResult> = request
        .topics
        .iter()
        .filter(|t| duplicates.contains(t.name.as_str()) && reported.insert(t.name.as_str()))
        .map(|t| {
            result(
                &t.name,
                ResponseError::InvalidRequest.code(),
                Some("Duplicate topic name.".into()),
            )
        })
        .collect();
    let mut allowed = Vec::new();
    for topic in request
        .topics
        .iter()
        .filter(|t| !duplicates.contains(t.name.as_str()))
    {
        if broker.authorizer.authorize(
            ctx.principal(),
            AclOperation::Alter,
            ResourceType::Topic,
            topic.name.as_str(),
        ) {
            allowed.push(topic);
        } else {
            results.push(result(
                &topic.name,
                ResponseError::TopicAuthorizationFailed.code(),
                None,
            ));
        }
    }
    if allowed.is_empty() {
        return CreatePartitionsResponse::default().with_results(results);
    }
    if request.timeout_ms <= 0 {
        // Kafka's controller queues the change with a deadline of now plus the timeout; one
        // already passed fails the whole request with REQUEST_TIMED_OUT before anything is
        // decided, and the error response names every topic of the request.
        return CreatePartitionsResponse::default().with_results(
            request
                .topics
                .iter()
                .map(|t| result(&t.name, ResponseError::RequestTimedOut.code(), None))
                .collect(),
        );
    }
    for topic in allowed {
        let assignments = topic.assignments.as_ref().map(|list| {
            list.iter()
                .map(|a| a.broker_ids.iter().map(|id| id.0).collect())
                .collect()
        });
        let name = topic.name.as_str();
        match broker.create_partitions(name, topic.count, assignments, request.validate_only) {
            Ok(grown) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions = grown.partitions, "added partitions");
                }
                results.push(result(&topic.name, 0, None));
            }
            Err(e) => results.push(result(
                &topic.name,
                cluster_error_code(&e),
                cluster_error_message(&e),
            )),
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
