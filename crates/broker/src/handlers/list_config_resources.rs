//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): the resources that can
//! hold configs, by type, as Kafka's `KafkaApis.handleListConfigResources` lists them. Runnel
//! has no client-metrics subscriptions and no group configs, so those types list nothing.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `ConfigResource.Type` ids.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    let response = ListConfigResourcesResponse::default();
    if !broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::DescribeConfigs,
        ResourceType::Cluster,
        "kafka-cluster",
    ) {
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // v0 (ListClientMetricsResources) lists client-metrics resources only.
    let supported: &[i8] = if version == 0 {
        &[CLIENT_METRICS]
    } else {
        &[TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP]
    };
    let wanted: &[i8] = if request.resource_types.is_empty() {
        supported
    } else {
        &request.resource_types
    };
    if wanted.iter().any(|t| !supported.contains(t)) {
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let image = broker.image();
    let resource = |name: String, resource_type: i8| {
        ConfigResource::default()
            .with_resource_name(StrBytes::from_string(name))
            .with_resource_type(resource_type)
    };
    let mut resources = Vec::new();
    // Kafka's order: groups with configs (none here), client-metrics subscriptions (none
    // here), broker loggers, brokers, topics.
    for resource_type in [BROKER_LOGGER, BROKER] {
        if wanted.contains(&resource_type) {
            resources.extend(
                image
                    .brokers
                    .keys()
                    .map(|id| resource(id.to_string(), resource_type)),
            );
        }
    }
    if wanted.contains(&TOPIC) {
        resources.extend(
            image
                .topics
                .keys()
                .map(|name| resource(name.clone(), TOPIC)),
        );
    }
    response.with_config_resources(resources)
}
