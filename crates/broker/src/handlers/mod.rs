//! One module per Kafka API. Each takes the decoded request and returns the response body;
//! framing, headers and ordering are the connection's job.

use std::sync::Arc;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use crate::state::Broker;

mod api_versions;
mod describe_cluster;
mod describe_configs;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;
mod topics;

pub use api_versions::api_versions_response;

/// Kafka's "authorized operations not requested" sentinel (`Integer.MIN_VALUE`).
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// What the connection does with a handled request.
pub enum Reply {
    Send(ResponseKind),
    /// No response (produce with acks=0).
    Silent,
    /// Close the connection without a response.
    Close,
}

/// Handles one decoded request.
pub async fn handle(broker: &Arc<Broker>, header: &RequestHeader, request: RequestKind) -> Reply {
    let version = header.request_api_version;
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
        RequestKind::Produce(r) => match produce::handle(broker, r, version) {
            produce::ProduceReply::Respond(r) => ResponseKind::Produce(r),
            produce::ProduceReply::Silent => return Reply::Silent,
            produce::ProduceReply::Close => return Reply::Close,
        },
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(broker, r, version).await),
        other => {
            // The connection only dispatches APIs from the supported table, so this is our bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            return Reply::Close;
        }
    })
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
