//! AlterConfigs (v0-2) and IncrementalAlterConfigs (v0-1) for TOPIC and BROKER resources (and
//! BROKER_LOGGER, incremental only), as Kafka 4.4 answers them: the broker's checks of
//! `ConfigAdminManager.preprocess` first (duplicates, null values, the broker id, log levels),
//! then the controller's (`ConfigurationControlManager`: operations, validation, records).
//! Changes are committed to the metadata log and reach open partitions through the publisher.

use std::collections::{HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::controller::{ConfigOp, ConfigResource};
use runnel_cluster::ClusterError;

use super::describe_configs::{
    RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC, ROOT_LOGGER,
};
use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::cluster_error_code;
use crate::state::Broker;

/// An answer for one resource: success, or an error code with Kafka's message.
type Outcome = Result<(), (i16, Option<String>)>;

/// IncrementalAlterConfigs' operation codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Log4j's levels, which Kafka accepts for BROKER_LOGGER, in Kafka's message order.
const LOG4J_LEVELS: &[&str] = &["DEBUG", "ERROR", "FATAL", "INFO", "TRACE", "WARN"];

/// One resource of either request, reduced to what both share.
struct Resource<'a> {
    resource_type: i8,
    name: &'a str,
    /// (name, operation code, value)
    configs: Vec<(&'a str, i8, Option<&'a str>)>,
}

pub fn alter(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let resources: Vec<Resource<'_>> = request
        .resources
        .iter()
        .map(|r| Resource {
            resource_type: r.resource_type,
            name: r.resource_name.as_str(),
            configs: r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str(),
                        OP_SET,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                })
                .collect(),
        })
        .collect();
    let outcomes = apply_all(broker, ctx, &resources, request.validate_only, false);
    AlterConfigsResponse::default().with_responses(
        request
            .resources
            .iter()
            .zip(outcomes)
            .map(|(r, outcome)| {
                let (code, message) = outcome.err().unwrap_or((0, None));
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            })
            .collect(),
    )
}

pub fn incremental(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources: Vec<Resource<'_>> = request
        .resources
        .iter()
        .map(|r| Resource {
            resource_type: r.resource_type,
            name: r.resource_name.as_str(),
            configs: r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.as_str(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.as_str()),
                    )
                })
                .collect(),
        })
        .collect();
    let outcomes = apply_all(broker, ctx, &resources, request.validate_only, true);
    IncrementalAlterConfigsResponse::default().with_responses(
        request
            .resources
            .iter()
            .zip(outcomes)
            .map(|(r, outcome)| {
                let (code, message) = outcome.err().unwrap_or((0, None));
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
            })
            .collect(),
    )
}

fn invalid_request(message: impl Into<String>) -> (i16, Option<String>) {
    (ResponseError::InvalidRequest.code(), Some(message.into()))
}

fn invalid_config(message: impl Into<String>) -> (i16, Option<String>) {
    (ResponseError::InvalidConfig.code(), Some(message.into()))
}

/// Answers every resource in request order; a resource named twice fails both times, as in
/// Kafka, and each other resource succeeds or fails on its own.
fn apply_all(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    resources: &[Resource<'_>],
    validate_only: bool,
    incremental: bool,
) -> Vec<Outcome> {
    let mut count: HashMap<(i8, &str), usize> = HashMap::with_capacity(resources.len());
    for r in resources {
        *count.entry((r.resource_type, r.name)).or_default() += 1;
    }
    resources
        .iter()
        .map(|r| {
            if count[&(r.resource_type, r.name)] > 1 {
                return Err(invalid_request("Each resource must appear at most once."));
            }
            apply(broker, ctx, r, validate_only, incremental)
        })
        .collect()
}

fn apply(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    resource: &Resource<'_>,
    validate_only: bool,
    incremental: bool,
) -> Outcome {
    let authorized = |resource_type, name: &str| {
        broker.authorizer.authorize(
            ctx.principal(),
            AclOperation::AlterConfigs,
            resource_type,
            name,
        )
    };
    match resource.resource_type {
        RESOURCE_TOPIC if !authorized(ResourceType::Topic, resource.name) => {
            return Err(refused(ResponseError::TopicAuthorizationFailed));
        }
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER
            if !authorized(ResourceType::Cluster, "kafka-cluster") =>
        {
            return Err(refused(ResponseError::ClusterAuthorizationFailed));
        }
        _ => {}
    }
    // A set, not pairwise comparisons: a request may carry a very large number of configs.
    let mut seen = HashSet::with_capacity(resource.configs.len());
    if !resource
        .configs
        .iter()
        .all(|(name, _, _)| seen.insert(*name))
    {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    let nulls: Vec<&str> = resource
        .configs
        .iter()
        .filter(|(_, op, value)| *op != OP_DELETE && value.is_none())
        .map(|(name, _, _)| *name)
        .collect();
    if !nulls.is_empty() {
        return Err(invalid_request(format!(
            "Null value not supported for : {}",
            nulls.join(", ")
        )));
    }
    let node_id = broker.node_id();
    let target = match resource.resource_type {
        RESOURCE_TOPIC => ConfigResource::Topic(resource.name.to_owned()),
        RESOURCE_BROKER => {
            if !resource.name.is_empty() {
                let id: i32 = resource.name.parse().map_err(|_| {
                    invalid_request(format!(
                        "Node id must be an integer, but it is: {}",
                        resource.name
                    ))
                })?;
                if id != node_id {
                    return Err(invalid_request(format!(
                        "Unexpected broker id, expected {node_id}, but received {}",
                        resource.name
                    )));
                }
            }
            ConfigResource::Broker(resource.name.to_owned())
        }
        RESOURCE_BROKER_LOGGER if incremental => {
            return alter_log_levels(resource, node_id, validate_only);
        }
        other => {
            return Err(invalid_request(format!("Unknown resource type {other}")));
        }
    };
    let mut ops = Vec::with_capacity(resource.configs.len());
    for (name, op, value) in &resource.configs {
        let value = value.unwrap_or_default().to_owned();
        let op = match *op {
            OP_SET => ConfigOp::Set(value),
            OP_DELETE => ConfigOp::Delete,
            OP_APPEND => ConfigOp::Append(value),
            OP_SUBTRACT => ConfigOp::Subtract(value),
            other => return Err(invalid_request(format!("Unknown operations type {other}"))),
        };
        ops.push(((*name).to_owned(), op));
    }
    broker
        .alter_configs(target, ops, !incremental, validate_only)
        .map_err(|e| (cluster_error_code(&e), Some(message(&e))))
}

/// Kafka's message for a refused change.
fn message(e: &ClusterError) -> String {
    match e {
        ClusterError::UnknownTopic(name) => format!("The topic '{name}' does not exist."),
        ClusterError::DuplicateConfig(_) => "Error due to duplicate config keys".into(),
        ClusterError::InvalidTopic { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

fn refused(error: ResponseError) -> (i16, Option<String>) {
    (error.code(), Some(error.to_string()))
}

/// BROKER_LOGGER changes, checked as Kafka's `RuntimeLoggerManager` checks them. Runnel has one
/// logger, `root` (tracing's global filter); setting its level takes effect at once.
fn alter_log_levels(resource: &Resource<'_>, node_id: i32, validate_only: bool) -> Outcome {
    let id: i32 = resource.name.parse().map_err(|_| {
        invalid_request(format!(
            "Node id must be an integer, but it is: {}",
            resource.name
        ))
    })?;
    if id != node_id {
        return Err(invalid_request(format!(
            "Unexpected node id. Expected {node_id}, but received {id}"
        )));
    }
    let mut level_to_set = None;
    for (logger, op, value) in &resource.configs {
        match *op {
            OP_SET | OP_DELETE if *logger != ROOT_LOGGER => {
                return Err(invalid_config(format!("Logger {logger} does not exist!")));
            }
            OP_SET => {
                let level = value.unwrap_or_default();
                if !LOG4J_LEVELS.contains(&level) {
                    return Err(invalid_config(format!(
                        "Cannot set the log level of {logger} to {level} as it is not a supported log level. Valid log levels are {}",
                        LOG4J_LEVELS.join(", ")
                    )));
                }
                level_to_set = Some(level);
            }
            OP_DELETE => {
                return Err(invalid_request(format!(
                    "Removing the log level of the {ROOT_LOGGER} logger is not allowed"
                )));
            }
            OP_APPEND => {
                return Err(invalid_request(
                    "APPEND operation is not allowed for the BROKER_LOGGER resource",
                ));
            }
            OP_SUBTRACT => {
                return Err(invalid_request(
                    "SUBTRACT operation is not allowed for the BROKER_LOGGER resource",
                ));
            }
            other => {
                return Err(invalid_request(format!(
                    "Unknown operation type {other} is not allowed for the BROKER_LOGGER resource"
                )));
            }
        }
    }
    if let (Some(level), false) = (level_to_set, validate_only) {
        crate::log_level::set(level).map_err(invalid_request)?;
    }
    Ok(())
}
