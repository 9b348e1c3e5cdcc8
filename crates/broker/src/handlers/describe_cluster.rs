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
    if request.endpoint_type != ENDPOINT_TYPE_BROKER {
        // Clients that bootstrap to controllers (KIP-919) must use a controller endpoint; runnel
        // has no separate controller listener yet, and a Kafka broker answers the same way.
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "this endpoint serves brokers, not controllers",
            )))
            .with_controller_id(BrokerId(-1));
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
