//! CreateTopics and DeleteTopics.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::topic_config;
use uuid::Uuid;

use crate::errors::cluster_error_code;
use crate::state::Broker;

pub fn create(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut name_counts: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *name_counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let failed = |code: ResponseError, message: String| {
            CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_configs(None)
        };
        if name_counts.get(&name).copied().unwrap_or(0) > 1 {
            results.push(failed(
                ResponseError::InvalidRequest,
                format!(
                    "Create topics request from client contains duplicate topic name '{name}'."
                ),
            ));
            continue;
        }
        let mut partitions = topic.num_partitions;
        let mut replication_factor = topic.replication_factor;
        if !topic.assignments.is_empty() {
            if partitions != -1 || replication_factor != -1 {
                results.push(failed(
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
                ));
                continue;
            }
            // Manual assignment: partitions 0..n, each on this node only.
            let mut indexes: Vec<i32> = topic
                .assignments
                .iter()
                .map(|a| a.partition_index)
                .collect();
            indexes.sort_unstable();
            let contiguous = indexes.iter().enumerate().all(|(i, p)| *p == i as i32);
            let on_this_node = topic
                .assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == broker.node_id());
            if !contiguous || !on_this_node {
                results.push(failed(
                    ResponseError::InvalidReplicaAssignment,
                    "Replica assignments must name partitions 0..n, each on this broker only."
                        .into(),
                ));
                continue;
            }
            partitions = i32::try_from(indexes.len()).unwrap_or(i32::MAX);
            replication_factor = 1;
        }
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &topic.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    config_error = Some(format!(
                        "Null value not supported for topic config '{}'",
                        c.name
                    ))
                }
            }
        }
        if let Some(message) = config_error {
            results.push(failed(ResponseError::InvalidConfig, message));
            continue;
        }
        match broker.create_topic(
            &name,
            partitions,
            replication_factor,
            configs,
            request.validate_only,
        ) {
            Ok(created) => {
                let mut result = CreatableTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(if request.validate_only {
                        Uuid::nil()
                    } else {
                        created.topic_id
                    })
                    .with_num_partitions(created.partitions as i32)
                    .with_replication_factor(1)
                    .with_configs(None);
                if version >= 5 {
                    result = result.with_configs(Some(
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
            Err(e) => {
                results.push(
                    failed(ResponseError::UnknownServerError, e.to_string())
                        .with_error_code(cluster_error_code(&e)),
                );
            }
        }
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
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
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
                    Some("Topic name and topic id cannot both be set.".into()),
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
                    Some("Neither topic name nor topic id was set.".into()),
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
            Err(e) => responses.push(result(
                Some(resolved),
                id,
                cluster_error_code(&e),
                Some(e.to_string()),
            )),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
