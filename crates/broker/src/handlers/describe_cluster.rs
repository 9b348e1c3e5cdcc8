//! DescribeCluster: the registered brokers of the metadata image, this node as the controller.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{ResourceType, AUTHORIZED_OPERATIONS_OMITTED};
use crate::context::RequestContext;
use crate::state::Broker;

/// Kafka's `EndpointType.BROKER`.
const ENDPOINT_TYPE_BROKER: i8 = 1;
/// Kafka's `EndpointType.CONTROLLER`.
const ENDPOINT_TYPE_CONTROLLER: i8 = 2;

/// Kafka's `computeDescribeClusterResponse` to a client that asked the other kind of endpoint
/// than `served` (INVALID_REQUEST at v0, which cannot ask; MISMATCHED_ENDPOINT_TYPE from v1):
/// the error alone, every other field at its default.
fn mismatched_endpoint(
    request: &DescribeClusterRequest,
    version: i16,
    served: &str,
) -> DescribeClusterResponse {
    let error = if version == 0 {
        ResponseError::InvalidRequest
    } else {
        ResponseError::MismatchedEndpointType
    };
    let wanted = match request.endpoint_type {
        ENDPOINT_TYPE_BROKER => "BROKER",
        ENDPOINT_TYPE_CONTROLLER => "CONTROLLER",
        _ => "UNKNOWN",
    };
    DescribeClusterResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(format!(
            "The request was sent to an endpoint of type {served}, but we wanted an endpoint \
             of type {wanted}"
        ))))
}

/// The answer on the CONTROLLER listener, as Kafka's `ControllerApis`: only to clients that
/// bootstrap to controllers (KIP-919), listing the controllers (the voters, at their
/// CONTROLLER endpoints) and the active one as `controller_id` (-1 while none is known).
fn controllers(
    quorum: &crate::metadata::quorum::QuorumHandle,
    request: &DescribeClusterRequest,
    version: i16,
    response: DescribeClusterResponse,
) -> DescribeClusterResponse {
    if request.endpoint_type != ENDPOINT_TYPE_CONTROLLER {
        return mismatched_endpoint(request, version, "CONTROLLER");
    }
    response
        .with_endpoint_type(ENDPOINT_TYPE_CONTROLLER)
        .with_controller_id(BrokerId(
            quorum.active_controller().map_or(-1, |(id, _)| id),
        ))
        .with_brokers(
            quorum
                .voters()
                .iter()
                .map(|v| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(v.id))
                        .with_host(StrBytes::from_string(v.host.clone()))
                        .with_port(i32::from(v.port))
                        .with_rack(None)
                        .with_is_fenced(false)
                })
                .collect(),
        )
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            broker.authorizer.authorized_operations(
                ctx.principal(),
                ResourceType::Cluster,
                "kafka-cluster",
            )
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        });
    if let Some(quorum) = broker.metadata.quorum() {
        if quorum.controller_listener() == Some(ctx.connection.listener.as_ref()) {
            return controllers(quorum, request, ctx.api_version(), response);
        }
    }
    if request.endpoint_type != ENDPOINT_TYPE_BROKER {
        // Clients that bootstrap to controllers (KIP-919) must use a controller endpoint.
        return mismatched_endpoint(request, ctx.api_version(), "BROKER");
    }
    response
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(
            // Kafka's `handleDescribeCluster`: live brokers, or every registered one (with its
            // fencing) when v2's IncludeFencedBrokers asks; only those with an endpoint on the
            // request's listener.
            image
                .brokers
                .values()
                .filter(|b| request.include_fenced_brokers || b.is_live())
                .filter_map(|b| {
                    let (host, port) = broker.endpoint_for(b, &ctx.connection.listener)?;
                    Some(
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(b.node_id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(i32::from(port))
                            .with_rack(b.rack.clone().map(StrBytes::from_string))
                            .with_is_fenced(b.fenced),
                    )
                })
                .collect(),
        )
}
