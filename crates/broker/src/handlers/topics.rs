//! CreateTopics and DeleteTopics.

use std::collections::{BTreeMap, HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::controller::validate_topic_name;
use runnel_cluster::{topic_config, ClusterError};
use uuid::Uuid;

use crate::errors::{cluster_error_code, cluster_error_message};
use crate::state::Broker;

/// The most partitions one CreateTopics may create in all (Kafka's controller's
/// `MAX_PARTITIONS_PER_BATCH`).
const PARTITIONS_PER_REQUEST_MAX: i64 = 10_000;

/// The metadata log's topic in Kafka, which no client may create.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// CreateTopics as Kafka's `ControllerApis.createTopics` and `ReplicationControlManager
/// .createTopics` answer it: duplicates and `__cluster_metadata` refused up front, the rest
/// validated and created one by one, each result with Kafka's error code and message.
pub fn create(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let failed = |name: &TopicName, code: i16, message: Option<String>| {
        // Kafka's error results leave the v5+ fields at their defaults: -1, -1 and no configs
        // (an empty list, not null).
        CreatableTopicResult::default()
            .with_name(name.clone())
            .with_error_code(code)
            .with_error_message(message.map(StrBytes::from_string))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_configs(Some(Vec::new()))
    };
    let mut seen = HashSet::new();
    let mut duplicates: Vec<&TopicName> = Vec::new();
    for t in &request.topics {
        if !seen.insert(t.name.as_str()) && !duplicates.contains(&&t.name) {
            duplicates.push(&t.name);
        }
    }
    let is_duplicate = |name: &TopicName| duplicates.contains(&name);
    let creatable: Vec<_> = request
        .topics
        .iter()
        .filter(|t| !is_duplicate(&t.name) && t.name.as_str() != CLUSTER_METADATA_TOPIC)
        .collect();
    if !creatable.is_empty() {
        // Whole-request refusals of Kafka's controller: the error response names every topic.
        let refuse_all = |code: ResponseError, message: Option<&str>| {
            CreateTopicsResponse::default().with_topics(
                request
                    .topics
                    .iter()
                    .map(|t| failed(&t.name, code.code(), message.map(str::to_owned)))
                    .collect(),
            )
        };
        let partitions_total: i64 = creatable
            .iter()
            .map(|t| match (t.assignments.is_empty(), t.num_partitions) {
                (false, _) => t.assignments.len() as i64,
                (true, -1) => i64::from(broker.config.num_partitions),
                (true, n) => i64::from(n.max(0)),
            })
            .sum();
        if partitions_total > PARTITIONS_PER_REQUEST_MAX {
            return refuse_all(
                ResponseError::PolicyViolation,
                Some("Excessively large number of partitions per request."),
            );
        }
        if request.timeout_ms <= 0 {
            // The controller queues the request with a deadline of now plus the timeout; one
            // already passed fails it whole with REQUEST_TIMED_OUT before anything is created.
            return refuse_all(ResponseError::RequestTimedOut, None);
        }
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &creatable {
        let name = topic.name.as_str();
        let null_configs: Vec<&str> = topic
            .configs
            .iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.name.as_str())
            .collect();
        // Kafka checks names and existence before configs.
        let prior = validate_topic_name(name).err().or_else(|| {
            broker
                .image()
                .topic(name)
                .map(|_| ClusterError::TopicAlreadyExists(name.to_owned()))
        });
        if prior.is_none() && !null_configs.is_empty() {
            results.push(failed(
                &topic.name,
                ResponseError::InvalidConfig.code(),
                Some(format!(
                    "Null value not supported for topic configs: {}",
                    null_configs.join(",")
                )),
            ));
            continue;
        }
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let assignments = topic
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        match broker.create_topic_placed(
            name,
            topic.num_partitions,
            topic.replication_factor,
            configs,
            assignments,
            request.validate_only,
        ) {
            Ok(created) => {
                let mut result = CreatableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_error_message(None)
                    // With validate_only too: Kafka answers the id it would have given.
                    .with_topic_id(created.topic_id)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(Some(Vec::new()));
                if version >= 5 {
                    let replicas = created.registration(0).map_or(1, |r| r.replicas.len());
                    result = result
                        .with_num_partitions(i32::try_from(created.partitions).unwrap_or(i32::MAX))
                        .with_replication_factor(i16::try_from(replicas).unwrap_or(i16::MAX))
                        .with_configs(Some(
                            topic_config::created_topic_configs(
                                &created.configs,
                                &broker.config_layers(&broker.image()),
                            )
                            .into_iter()
                            .map(|(name, value, source)| {
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(name))
                                    .with_value(Some(StrBytes::from_string(value)))
                                    .with_read_only(false)
                                    .with_config_source(source as i8)
                                    .with_is_sensitive(false)
                            })
                            .collect(),
                        ));
                }
                results.push(result);
            }
            Err(e) => results.push(failed(
                &topic.name,
                cluster_error_code(&e),
                cluster_error_message(&e),
            )),
        }
    }
    // Kafka appends these after the controller's results.
    for name in &duplicates {
        results.push(failed(
            name,
            ResponseError::InvalidRequest.code(),
            Some("Duplicate topic name.".into()),
        ));
    }
    if seen.contains(CLUSTER_METADATA_TOPIC)
        && !duplicates
            .iter()
            .any(|d| d.as_str() == CLUSTER_METADATA_TOPIC)
    {
        results.push(failed(
            &TopicName(StrBytes::from_static_str(CLUSTER_METADATA_TOPIC)),
            ResponseError::InvalidRequest.code(),
            Some(format!(
                "Creation of internal topic {CLUSTER_METADATA_TOPIC} is prohibited."
            )),
        ));
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub fn delete(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 in `topics`, by name or by id.
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    // Kafka answers a name or id given twice once, as INVALID_REQUEST, and acts on neither.
    let mut counts: HashMap<(Option<&str>, Uuid), usize> = HashMap::new();
    for (name, id) in &wanted {
        if name.is_some() != id.is_nil() {
            continue;
        }
        *counts.entry((name.as_deref(), *id)).or_default() += 1;
    }
    let duplicated: HashSet<(Option<String>, Uuid)> = counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((name, id), _)| (name.map(str::to_owned), id))
        .collect();
    let actionable = wanted.iter().any(|(name, id)| {
        name.is_some() == id.is_nil() && !duplicated.contains(&(name.clone(), *id))
    });
    if actionable && request.timeout_ms <= 0 {
        // Kafka's controller looks topics up with a deadline of now plus the timeout; one
        // already passed fails the whole request with REQUEST_TIMED_OUT (and no message).
        return DeleteTopicsResponse::default().with_responses(
            wanted
                .into_iter()
                .map(|(name, id)| {
                    DeletableTopicResult::default()
                        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                        .with_topic_id(id)
                        .with_error_code(ResponseError::RequestTimedOut.code())
                })
                .collect(),
        );
    }
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in &duplicated {
        let message = if name.is_some() {
            "Duplicate topic name."
        } else {
            "Duplicate topic id."
        };
        responses.push(
            DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(*id)
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_static_str(message))),
        );
    }
    for (name, id) in wanted {
        if duplicated.contains(&(name.clone(), id)) {
            continue;
        }
        let result = |name: Option<String>, id: Uuid, code: i16, message: Option<String>| {
            DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id)
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
        };
        let resolved = match (&name, id.is_nil()) {
            (Some(_), false) => {
                responses.push(result(
                    name.clone(),
                    id,
                    ResponseError::InvalidRequest.code(),
                    Some("You may not specify both topic name and topic id.".into()),
                ));
                continue;
            }
            (Some(n), true) => n.clone(),
            (None, false) => match broker.image().topic_by_id(&id) {
                Some(t) => t.name.clone(),
                None => {
                    responses.push(result(
                        None,
                        id,
                        ResponseError::UnknownTopicId.code(),
                        Some("This server does not host this topic ID.".into()),
                    ));
                    continue;
                }
            },
            (None, true) => {
                responses.push(result(
                    None,
                    id,
                    ResponseError::InvalidRequest.code(),
                    Some("Neither topic name nor id were specified.".into()),
                ));
                continue;
            }
        };
        if crate::internal_topics::is_internal_topic(&resolved) {
            responses.push(result(
                Some(resolved),
                id,
                ResponseError::TopicDeletionDisabled.code(),
                Some("Internal topics are the coordinators' logs and cannot be deleted.".into()),
            ));
            continue;
        }
        match broker.delete_topic(&resolved) {
            Ok(topic) => {
                tracing::info!(topic = %topic.name, "deleted topic");
                responses.push(result(Some(topic.name.clone()), topic.topic_id, 0, None));
            }
            Err(e) => {
                // Kafka's `new ApiError(code)` here carries the code's default message.
                let message = cluster_error_message(&e).or_else(|| {
                    matches!(e, ClusterError::UnknownTopic(_))
                        .then(|| "This server does not host this topic-partition.".to_owned())
                });
                responses.push(result(Some(resolved), id, cluster_error_code(&e), message))
            }
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
