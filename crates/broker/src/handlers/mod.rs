//! One module per Kafka API. Each takes the decoded request and returns the response body;
//! framing, headers and ordering are the connection's job.
//!
//! `handle` *applies* a request: when it returns, every effect of the request is done, so the
//! connection may apply its next request. Only a produce in fsync mode may leave something to
//! wait for (`Reply::Produce`): its group-commit rounds, which the connection awaits in order
//! before answering while it goes on applying later requests.

use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use runnel_cluster::group::coordinator::GroupRequest;
use runnel_cluster::group::ClientInfo;

use crate::state::Broker;

mod api_versions;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod find_coordinator;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;
mod topics;

pub use api_versions::api_versions_response;
pub use fetch::{materialize as materialize_fetch, FetchAnswer};
pub use produce::{PendingProduce, ProduceReply};

/// Operations the cluster resource supports (`AclEntry.supportedOperations(CLUSTER)`): CREATE,
/// ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE,
/// CREATE_TOKENS, DESCRIBE_TOKENS. With no authorizer every client may do all of them.
pub const CLUSTER_OPERATIONS: i32 = (1 << 5)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14);

/// Kafka's "authorized operations not requested" sentinel (`Integer.MIN_VALUE`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// What the connection does with an applied request.
pub enum Reply {
    Send(ResponseKind),
    /// A fetch response whose records are file ranges (see `fetch`).
    Fetch(FetchAnswer),
    /// A produce whose fsync-mode batches are queued for their group commit: applied, not yet
    /// answered. `PendingProduce::complete` yields what to do.
    Produce(PendingProduce),
    /// No response (produce with acks=0).
    Silent,
    /// Close the connection without a response, after the responses of earlier requests.
    Close,
}

/// Applies one decoded request (see the module docs).
pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    peer: std::net::SocketAddr,
    request: RequestKind,
) -> Reply {
    let version = header.request_api_version;
    // Kafka reports a member's host as the client address with a leading '/'.
    let client = || ClientInfo {
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    };
    Reply::Send(match request {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(api_versions::handle(&r, version)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, r, version)),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create(broker, r, version))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete(broker, r, version))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, r, version))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, &r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, &r))
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version))
        }
        RequestKind::Produce(r) => match produce::apply(broker, r, version) {
            produce::Applied::Done(ProduceReply::Respond(r)) => ResponseKind::Produce(r),
            produce::Applied::Done(ProduceReply::Silent) => return Reply::Silent,
            produce::Applied::Done(ProduceReply::Close) => return Reply::Close,
            produce::Applied::Pending(pending) => return Reply::Produce(pending),
        },
        RequestKind::Fetch(r) => return Reply::Fetch(fetch::handle(broker, r, version).await),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, r, version))
        }
        RequestKind::JoinGroup(r) => {
            return group(broker, version, client(), GroupRequest::JoinGroup(r)).await
        }
        RequestKind::SyncGroup(r) => {
            return group(broker, version, client(), GroupRequest::SyncGroup(r)).await
        }
        RequestKind::Heartbeat(r) => {
            return group(broker, version, client(), GroupRequest::Heartbeat(r)).await
        }
        RequestKind::LeaveGroup(r) => {
            return group(broker, version, client(), GroupRequest::LeaveGroup(r)).await
        }
        RequestKind::OffsetCommit(r) => {
            return group(broker, version, client(), GroupRequest::OffsetCommit(r)).await
        }
        RequestKind::OffsetFetch(r) => {
            return group(broker, version, client(), GroupRequest::OffsetFetch(r)).await
        }
        RequestKind::OffsetDelete(r) => {
            return group(broker, version, client(), GroupRequest::OffsetDelete(r)).await
        }
        RequestKind::DescribeGroups(r) => {
            return group(broker, version, client(), GroupRequest::DescribeGroups(r)).await
        }
        RequestKind::ListGroups(r) => {
            return group(broker, version, client(), GroupRequest::ListGroups(r)).await
        }
        RequestKind::DeleteGroups(r) => {
            return group(broker, version, client(), GroupRequest::DeleteGroups(r)).await
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            return group(
                broker,
                version,
                client(),
                GroupRequest::ConsumerGroupHeartbeat(r),
            )
            .await
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            return group(
                broker,
                version,
                client(),
                GroupRequest::ConsumerGroupDescribe(r),
            )
            .await
        }
        other => {
            // The connection only dispatches APIs from the supported table, so this is our bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            return Reply::Close;
        }
    })
}

/// Routes a group request to the coordinator (which creates `__consumer_offsets` first if
/// needed) and waits for its answer.
async fn group(
    broker: &Arc<Broker>,
    version: i16,
    client: ClientInfo,
    request: GroupRequest,
) -> Reply {
    if let Err(e) = broker.ensure_offsets_topic() {
        tracing::error!(error = %e, "creating __consumer_offsets");
    }
    match broker.groups.call(broker, version, &client, request).await {
        Some(response) => Reply::Send(response),
        None => Reply::Close,
    }
}

/// Checks a client's `current_leader_epoch` against ours (-1 means "don't check").
pub fn leader_epoch_error(requested: i32, ours: i32) -> Option<i16> {
    use kafka_protocol::error::ResponseError;
    if requested == -1 || requested == ours {
        None
    } else if requested < ours {
        Some(ResponseError::FencedLeaderEpoch.code())
    } else {
        Some(ResponseError::UnknownLeaderEpoch.code())
    }
}
