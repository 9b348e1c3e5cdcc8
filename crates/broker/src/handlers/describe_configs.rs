//! DescribeConfigs (v1-4) for TOPIC, BROKER and BROKER_LOGGER resources, as Kafka's
//! `ConfigHelper.describeConfigs` answers: every config with its value, source, synonyms,
//! read-only and sensitive flags, type and documentation, from Kafka's own definitions
//! (`runnel_cluster::kafka_configs`) over this broker's static and dynamic settings.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::broker_config::{self, DescribedConfig, Synonym};
use runnel_cluster::controller::validate_topic_name;
use runnel_cluster::topic_config::{self, ConfigSource};
use runnel_cluster::MetadataImage;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `ConfigResource.Type` ids.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// `ConfigResource.Type`s Kafka knows (TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP).
const KNOWN_RESOURCE_TYPES: &[i8] = &[2, 4, 8, 16, 32];

/// The most config bytes (names, values, synonyms, documentation) one response carries. One
/// request may name any number of resources, and each costs up to hundreds of configs, so the
/// answer is bounded; resources past the limit answer INVALID_REQUEST (Kafka has no limit, and
/// a describe of all topics of a large cluster stays far below this one).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Roughly the bytes one config takes in the response.
fn entry_bytes(c: &DescribeConfigsResourceResult) -> usize {
    let synonyms: usize = c
        .synonyms
        .iter()
        .map(|s| s.name.len() + s.value.as_ref().map_or(0, |v| v.len()) + 8)
        .sum();
    c.name.len()
        + c.value.as_ref().map_or(0, |v| v.len())
        + c.documentation.as_ref().map_or(0, |d| d.len())
        + synonyms
        + 16
}

/// The one logger runnel has: tracing's global filter, reported as log4j's root logger.
pub const ROOT_LOGGER: &str = "root";

/// What a request asks of every config it describes.
#[derive(Clone, Copy)]
struct Asked {
    synonyms: bool,
    documentation: bool,
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let asked = Asked {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    // A resource type Kafka does not know fails the whole request (Kafka throws before
    // describing anything): every resource answers INVALID_REQUEST with the default message.
    if request
        .resources
        .iter()
        .any(|r| !KNOWN_RESOURCE_TYPES.contains(&r.resource_type))
    {
        let error = ResponseError::InvalidRequest;
        return DescribeConfigsResponse::default().with_results(
            request
                .resources
                .into_iter()
                .map(|r| {
                    DescribeConfigsResult::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name)
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(error.to_string())))
                })
                .collect(),
        );
    }
    let mut response_bytes = 0usize;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let header = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if response_bytes > RESPONSE_BYTES_MAX {
                return header
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "The DescribeConfigs response exceeds runnel's limit of {RESPONSE_BYTES_MAX} bytes; describe fewer resources per request"
                    ))));
            }
            match describe(broker, ctx, &image, &resource, asked) {
                Ok(configs) => {
                    response_bytes = response_bytes.saturating_add(
                        configs.iter().map(entry_bytes).fold(0, usize::saturating_add),
                    );
                    header.with_configs(configs)
                }
                Err((error, message)) => header
                    .with_error_code(error.code())
                    .with_error_message(message.map(StrBytes::from_string)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Refusal = (ResponseError, Option<String>);

fn describe(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    image: &MetadataImage,
    resource: &DescribeConfigsResource,
    asked: Asked,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    let name = resource.resource_name.as_str();
    let authorized = |resource_type, resource_name: &str| {
        broker.authorizer.authorize(
            ctx.principal(),
            AclOperation::DescribeConfigs,
            resource_type,
            resource_name,
        )
    };
    let keys: Option<Vec<&str>> = resource
        .configuration_keys
        .as_ref()
        .map(|keys| keys.iter().map(|k| k.as_str()).collect());
    let wanted = |config: &str| keys.as_ref().is_none_or(|k| k.contains(&config));
    let node_id = broker.node_id();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            if !authorized(ResourceType::Topic, name) {
                return Err(refusal(ResponseError::TopicAuthorizationFailed));
            }
            validate_topic_name(name).map_err(|e| {
                (
                    ResponseError::InvalidTopicException,
                    Some(invalid_topic_message(&e)),
                )
            })?;
            // Kafka answers an unknown topic with the bare code and an empty message.
            let topic = image
                .topic(name)
                .ok_or((ResponseError::UnknownTopicOrPartition, Some(String::new())))?;
            let layers = broker.config_layers(image);
            Ok(topic_config::resolve_in(&topic.configs, &layers)
                .into_iter()
                .filter(|c| wanted(c.name))
                .map(|c| {
                    let documentation = topic_config::lookup(c.name)
                        .and_then(|d| d.kafka.def.documentation.as_deref());
                    entry(
                        &DescribedConfig {
                            name: c.name.to_owned(),
                            value: Some(c.value),
                            source: c.source,
                            read_only: false,
                            sensitive: false,
                            config_type: Some(c.config_type),
                            documentation,
                            synonyms: c.synonyms,
                        },
                        asked,
                    )
                })
                .collect())
        }
        RESOURCE_BROKER => {
            if !authorized(ResourceType::Cluster, "kafka-cluster") {
                return Err(refusal(ResponseError::ClusterAuthorizationFailed));
            }
            let layers = broker.config_layers(image);
            let configs = if name.is_empty() {
                broker_config::describe_cluster_default(&layers)
            } else if broker_id(name)? == node_id {
                broker_config::describe_broker(&layers)
            } else {
                return Err((
                    ResponseError::InvalidRequest,
                    Some(format!(
                        "Unexpected broker id, expected {node_id} or empty string, but received {name}"
                    )),
                ));
            };
            Ok(configs
                .iter()
                .filter(|c| wanted(&c.name))
                .map(|c| entry(c, asked))
                .collect())
        }
        RESOURCE_BROKER_LOGGER => {
            if !authorized(ResourceType::Cluster, "kafka-cluster") {
                return Err(refusal(ResponseError::ClusterAuthorizationFailed));
            }
            if name.is_empty() {
                return Err((
                    ResponseError::InvalidRequest,
                    Some("Broker id must not be empty".into()),
                ));
            }
            if broker_id(name)? != node_id {
                return Err((
                    ResponseError::InvalidRequest,
                    Some(format!(
                        "Unexpected broker id, expected {node_id} but received {name}"
                    )),
                ));
            }
            // Kafka lists its log4j loggers with their levels and nothing else (no type,
            // synonyms or documentation).
            let level = log4j_level(tracing::level_filters::LevelFilter::current());
            Ok([(ROOT_LOGGER, level)]
                .into_iter()
                .filter(|(logger, _)| wanted(logger))
                .map(|(logger, level)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(logger))
                        .with_value(Some(StrBytes::from_static_str(level)))
                        .with_config_source(ConfigSource::DynamicBrokerLoggerConfig as i8)
                        .with_read_only(false)
                        .with_is_sensitive(false)
                        .with_config_type(0)
                        .with_documentation(Some(StrBytes::from_static_str("")))
                })
                .collect())
        }
        other => Err((
            ResponseError::InvalidRequest,
            Some(format!(
                "Unsupported resource type: {}",
                resource_type_name(other)
            )),
        )),
    }
}

/// Kafka's `ConfigResource.Type` names, as its messages print them.
pub fn resource_type_name(id: i8) -> String {
    match id {
        2 => "TOPIC".into(),
        4 => "BROKER".into(),
        8 => "BROKER_LOGGER".into(),
        16 => "CLIENT_METRICS".into(),
        32 => "GROUP".into(),
        _ => "UNKNOWN".into(),
    }
}

/// The level log4j names for tracing's global level.
pub fn log4j_level(filter: tracing::level_filters::LevelFilter) -> &'static str {
    use tracing::level_filters::LevelFilter;
    match filter {
        LevelFilter::OFF => "OFF",
        LevelFilter::ERROR => "ERROR",
        LevelFilter::WARN => "WARN",
        LevelFilter::INFO => "INFO",
        LevelFilter::DEBUG => "DEBUG",
        _ => "TRACE",
    }
}

/// Kafka's `resourceNameToBrokerId`.
fn broker_id(name: &str) -> Result<i32, Refusal> {
    name.parse().map_err(|_| {
        (
            ResponseError::InvalidRequest,
            Some(format!("Broker id must be an integer, but it is: {name}")),
        )
    })
}

fn refusal(error: ResponseError) -> Refusal {
    (error, Some(error.to_string()))
}

fn invalid_topic_message(e: &runnel_cluster::ClusterError) -> String {
    match e {
        runnel_cluster::ClusterError::InvalidTopic { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// One config as the wire carries it: synonyms and documentation only when asked for.
fn entry(c: &DescribedConfig, asked: Asked) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(c.name.clone()))
        .with_value(c.value.clone().map(StrBytes::from_string))
        .with_read_only(c.read_only)
        .with_config_source(c.source as i8)
        .with_is_sensitive(c.sensitive)
        .with_synonyms(if asked.synonyms {
            c.synonyms.iter().map(synonym).collect()
        } else {
            Vec::new()
        })
        .with_config_type(c.config_type.map_or(0, |t| t as i8))
        .with_documentation(if asked.documentation {
            c.documentation.map(|d| StrBytes::from_string(d.to_owned()))
        } else {
            None
        })
}

fn synonym(s: &Synonym) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(s.name.clone()))
        .with_value(s.value.clone().map(StrBytes::from_string))
        .with_source(s.source as i8)
}
