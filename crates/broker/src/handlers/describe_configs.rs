//! DescribeConfigs for topics: every topic config with its value, source and type.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::topic_config::{self, ConfigSource};

use crate::state::Broker;

/// Kafka's `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if resource.resource_type != RESOURCE_TOPIC {
                // Broker and logger configs come with the admin-configs work.
                return result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "runnel describes topic configs only so far",
                    )));
            }
            let name = resource.resource_name.as_str();
            let Some(topic) = image.topic(name) else {
                return result
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "Topic '{name}' does not exist."
                    ))));
            };
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .map(|keys| keys.iter().map(|k| k.to_string()).collect());
            let configs = topic_config::resolve(&topic.configs, &broker.topic_defaults_raw)
                .into_iter()
                .filter(|c| keys.as_ref().is_none_or(|k| k.iter().any(|k| k == c.name)))
                .map(|c| {
                    let mut synonyms = Vec::new();
                    if request.include_synonyms {
                        if c.source == ConfigSource::DynamicTopicConfig {
                            synonyms.push(synonym(
                                c.name,
                                &c.value,
                                ConfigSource::DynamicTopicConfig,
                            ));
                        }
                        let def = topic_config::lookup(c.name);
                        if let Some((broker_key, value)) = &c.broker_value {
                            synonyms.push(synonym(
                                broker_key,
                                value,
                                ConfigSource::StaticBrokerConfig,
                            ));
                        }
                        if let Some(def) = def {
                            synonyms.push(synonym(
                                def.broker_synonym.unwrap_or(def.name),
                                def.default,
                                ConfigSource::DefaultConfig,
                            ));
                        }
                    }
                    let mut entry = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(c.name))
                        .with_value(Some(StrBytes::from_string(c.value)))
                        .with_read_only(false)
                        .with_config_source(c.source as i8)
                        .with_is_sensitive(false)
                        .with_synonyms(synonyms)
                        .with_documentation(None);
                    if version >= 3 {
                        entry = entry.with_config_type(c.config_type as i8);
                    }
                    entry
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_owned()))
        .with_value(Some(StrBytes::from_string(value.to_owned())))
        .with_source(source as i8)
}
