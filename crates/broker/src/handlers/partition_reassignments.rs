//! AlterPartitionReassignments (API 45) and ListPartitionReassignments (API 46), as Kafka's
//! `ControllerApis` answers them: authorized on the cluster (ALTER / DESCRIBE), decided by the
//! active controller (`MetadataManager::submit` forwards from any broker), one command per
//! partition (`runnel_cluster::reassignment` has the rules). The data move itself is the
//! replica fetcher's; see docs/design.md, "Reassignment".

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::Command;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::{cluster_error_code, cluster_error_message};
use crate::state::Broker;

fn authorized(broker: &Broker, ctx: &RequestContext<'_>, operation: AclOperation) -> bool {
    broker.authorizer.authorize(
        ctx.principal(),
        operation,
        ResourceType::Cluster,
        "kafka-cluster",
    )
}

/// Kafka's `AlterPartitionReassignmentsRequest.getErrorResponse`: the error at the top and on
/// every partition of the request.
fn alter_refused(
    request: &AlterPartitionReassignmentsRequest,
    error: ResponseError,
) -> AlterPartitionReassignmentsResponse {
    let message = Some(StrBytes::from_static_str(default_message(error)));
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_error_code(error.code())
        .with_error_message(message.clone())
        .with_responses(
            request
                .topics
                .iter()
                .map(|topic| {
                    ReassignableTopicResponse::default()
                        .with_name(topic.name.clone())
                        .with_partitions(
                            topic
                                .partitions
                                .iter()
                                .map(|p| {
                                    ReassignablePartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(error.code())
                                        .with_error_message(message.clone())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// Kafka's `Errors` default messages for the whole-request refusals used here.
fn default_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::ClusterAuthorizationFailed => "Cluster authorization failed.",
        _ => "The request timed out.",
    }
}

pub fn alter(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !authorized(broker, ctx, AclOperation::Alter) {
        return alter_refused(request, ResponseError::ClusterAuthorizationFailed);
    }
    if request.timeout_ms <= 0 {
        // Kafka's controller queues the request with a deadline of now plus the timeout; one
        // already passed fails it whole before anything is decided.
        return alter_refused(request, ResponseError::RequestTimedOut);
    }
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let command = Command::AlterPartitionReassignment {
                        topic: topic.name.to_string(),
                        partition: p.partition_index,
                        replicas: p
                            .replicas
                            .as_ref()
                            .map(|r| r.iter().map(|id| id.0).collect()),
                        allow_replication_factor_change: request.allow_replication_factor_change,
                    };
                    let (code, message) = match broker.metadata.submit(&command, broker) {
                        Ok(_) => (0, None),
                        Err(e) => {
                            tracing::info!(topic = %topic.name.as_str(), partition = p.partition_index, error = %e, "partition reassignment refused");
                            (cluster_error_code(&e), cluster_error_message(&e))
                        }
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(message.map(StrBytes::from_string))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

pub fn list(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !authorized(broker, ctx, AclOperation::Describe) {
        // Kafka's `ListPartitionReassignmentsRequest.getErrorResponse`: the named partitions
        // echoed with nothing filled in.
        let error = ResponseError::ClusterAuthorizationFailed;
        let topics = request.topics.iter().flatten().map(|topic| {
            OngoingTopicReassignment::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partition_indexes
                        .iter()
                        .map(|p| OngoingPartitionReassignment::default().with_partition_index(*p))
                        .collect(),
                )
        });
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_static_str(default_message(error))))
            .with_topics(topics.collect());
    }
    let named: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let ids = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect();
    let topics = runnel_cluster::reassignment::list(&broker.image(), named.as_deref())
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(StrBytes::from_string(name).into())
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            OngoingPartitionReassignment::default()
                                .with_partition_index(p.partition)
                                .with_replicas(ids(p.replicas))
                                .with_adding_replicas(ids(p.adding))
                                .with_removing_replicas(ids(p.removing))
                        })
                        .collect(),
                )
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
