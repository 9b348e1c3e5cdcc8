//! One module per Kafka API. Each takes the decoded request and returns the response body;
//! framing, headers and ordering are the connection's job.
//!
//! `handle` *applies* a request: when it returns, every effect of the request is done, so the
//! connection may apply its next request. Only a produce in fsync mode may leave something to
//! wait for (`Reply::Produce`): its group-commit rounds, which the connection awaits in order
//! before answering while it goes on applying later requests.

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_protocol::request::Request;

use runnel_cluster::group::coordinator::GroupRequest;
use runnel_cluster::txn::TxnRequest;

use crate::authorizer::ResourceType;
use crate::context::RequestContext;
use crate::state::Broker;

mod alter_configs;
mod api_versions;
mod broker_lifecycle;
mod create_partitions;
mod delete_records;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod init_producer_id;
mod list_config_resources;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod partition_reassignments;
mod produce;
mod produce_txn;
mod raft_voters;
mod topics;
mod txn_auth;
mod txn_offset_commit;
mod update_features;
mod write_txn_markers;

pub use api_versions::unsupported_version_response;
pub use fetch::{materialize as materialize_fetch, FetchAnswer};
pub use produce::{PendingProduce, ProduceReply};

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
pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext<'_>, request: Request) -> Reply {
    let version = ctx.api_version();
    let request = match request {
        Request::ApiVersions(r) => {
            return Reply::Send(ResponseKind::ApiVersions(api_versions::handle(
                &r,
                version,
                &broker.image(),
                broker.node_id(),
                broker.metadata.is_quorum(),
                broker
                    .metadata
                    .quorum()
                    .and_then(|q| q.controller_listener())
                    == Some(ctx.connection.listener.as_ref()),
            )));
        }
        Request::Kafka(request) => request,
    };
    Reply::Send(match request {
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, ctx, r, version))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create(broker, r, version))
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(topics::delete(broker, r, version))
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, ctx, &r))
        }
        RequestKind::DescribeTopicPartitions(r) => ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(broker, ctx, &r),
        ),
        RequestKind::ListConfigResources(r) => ResponseKind::ListConfigResources(
            list_config_resources::handle(broker, ctx, &r, version),
        ),
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::alter(broker, ctx, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(alter_configs::incremental(broker, ctx, r))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, ctx, &r))
        }
        RequestKind::InitProducerId(r) if r.transactional_id.is_some() => {
            return txn(broker, ctx, version, TxnRequest::InitProducerId(r)).await
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, &r))
        }
        RequestKind::AddPartitionsToTxn(r) => {
            return txn(broker, ctx, version, TxnRequest::AddPartitionsToTxn(r)).await
        }
        RequestKind::AddOffsetsToTxn(r) => {
            return txn(broker, ctx, version, TxnRequest::AddOffsetsToTxn(r)).await
        }
        RequestKind::EndTxn(r) => return txn(broker, ctx, version, TxnRequest::EndTxn(r)).await,
        RequestKind::DescribeTransactions(r) => {
            return txn(broker, ctx, version, TxnRequest::DescribeTransactions(r)).await
        }
        RequestKind::ListTransactions(r) => {
            return txn(broker, ctx, version, TxnRequest::ListTransactions(r)).await
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, ctx, &r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, ctx, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, ctx, &r, version))
        }
        RequestKind::UpdateFeatures(r) => {
            ResponseKind::UpdateFeatures(update_features::handle(broker, ctx, &r, version))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, ctx, &r))
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, ctx, r, version))
        }
        RequestKind::Produce(r) => {
            let verified = produce_txn::verify(broker, ctx.principal(), &r, version).await;
            match produce::apply(broker, r, version, &verified) {
                produce::Applied::Done(ProduceReply::Respond(r)) => ResponseKind::Produce(r),
                produce::Applied::Done(ProduceReply::Silent) => return Reply::Silent,
                produce::Applied::Done(ProduceReply::Close) => return Reply::Close,
                produce::Applied::Pending(pending) => return Reply::Produce(pending),
            }
        }
        RequestKind::Fetch(r) => return Reply::Fetch(fetch::handle(broker, r, version).await),
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, ctx, r, version))
        }
        RequestKind::JoinGroup(r) => return group(broker, ctx, GroupRequest::JoinGroup(r)).await,
        RequestKind::SyncGroup(r) => return group(broker, ctx, GroupRequest::SyncGroup(r)).await,
        RequestKind::Heartbeat(r) => return group(broker, ctx, GroupRequest::Heartbeat(r)).await,
        RequestKind::LeaveGroup(r) => return group(broker, ctx, GroupRequest::LeaveGroup(r)).await,
        RequestKind::OffsetCommit(r) => {
            return group(broker, ctx, GroupRequest::OffsetCommit(r)).await
        }
        RequestKind::OffsetFetch(r) => {
            return group(broker, ctx, GroupRequest::OffsetFetch(r)).await
        }
        RequestKind::OffsetDelete(r) => {
            return group(broker, ctx, GroupRequest::OffsetDelete(r)).await
        }
        RequestKind::DescribeGroups(r) => {
            return group(broker, ctx, GroupRequest::DescribeGroups(r)).await
        }
        RequestKind::ListGroups(r) => return group(broker, ctx, GroupRequest::ListGroups(r)).await,
        RequestKind::DeleteGroups(r) => {
            return group(broker, ctx, GroupRequest::DeleteGroups(r)).await
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            return group(broker, ctx, GroupRequest::ConsumerGroupHeartbeat(r)).await
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            return group(broker, ctx, GroupRequest::ConsumerGroupDescribe(r)).await
        }
        RequestKind::TxnOffsetCommit(r) => match txn_offset_commit::handle(broker, ctx, r).await {
            Some(response) => ResponseKind::TxnOffsetCommit(response),
            None => return Reply::Close,
        },
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(write_txn_markers::handle(broker, ctx, &r).await)
        }
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, ctx, &r, version))
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(broker, ctx, &r))
        }
        RequestKind::BrokerRegistration(r) => {
            ResponseKind::BrokerRegistration(broker_lifecycle::registration(broker, ctx, &r))
        }
        RequestKind::BrokerHeartbeat(r) => {
            ResponseKind::BrokerHeartbeat(broker_lifecycle::heartbeat(broker, ctx, &r))
        }
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(broker_lifecycle::unregister(broker, ctx, &r))
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            partition_reassignments::alter(broker, ctx, &r),
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(partition_reassignments::list(broker, ctx, &r))
        }
        RequestKind::AddRaftVoter(r) => {
            ResponseKind::AddRaftVoter(raft_voters::add(broker, ctx, &r))
        }
        RequestKind::RemoveRaftVoter(r) => {
            ResponseKind::RemoveRaftVoter(raft_voters::remove(broker, ctx, &r))
        }
        other => {
            // The connection only dispatches APIs from the supported table, so this is our bug.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            return Reply::Close;
        }
    })
}

/// Routes a transaction request to the transaction coordinator (which creates
/// `__transaction_state` first if needed, as Kafka's does on first use) and waits for its
/// answer.
async fn txn(
    broker: &Arc<Broker>,
    ctx: &RequestContext<'_>,
    version: i16,
    mut request: TxnRequest,
) -> Reply {
    let authorizer = &*broker.authorizer;
    if let Some(refused) = txn_auth::denied(authorizer, ctx.principal(), version, &request) {
        return Reply::Send(refused);
    }
    let mut describe_refused = Vec::new();
    if let TxnRequest::DescribeTransactions(r) = &mut request {
        describe_refused = txn_auth::describe_denied(authorizer, ctx.principal(), r);
    }
    if matches!(request, TxnRequest::InitProducerId(_)) {
        if let Err(e) = broker.ensure_transaction_topic() {
            tracing::error!(error = %e, "creating __transaction_state");
        }
    }
    let Some(mut response) = broker.txns.call(&**broker, version, request).await else {
        return Reply::Close;
    };
    match &mut response {
        ResponseKind::ListTransactions(r) => {
            txn_auth::filter_listed(authorizer, ctx.principal(), r);
        }
        ResponseKind::DescribeTransactions(r) if !describe_refused.is_empty() => {
            // Back in the request's order: the refused ids at their positions.
            let mut answered = std::mem::take(&mut r.transaction_states).into_iter();
            let total = answered.len() + describe_refused.len();
            let mut refused = describe_refused.into_iter().peekable();
            for i in 0..total {
                match refused.next_if(|(at, _)| *at == i) {
                    Some((_, state)) => r.transaction_states.push(state),
                    None => r.transaction_states.extend(answered.next()),
                }
            }
        }
        _ => {}
    }
    Reply::Send(response)
}

/// Routes a group request to the coordinator (which creates `__consumer_offsets` first if
/// needed) and waits for its answer; fills in authorized operations where asked.
async fn group(broker: &Arc<Broker>, ctx: &RequestContext<'_>, request: GroupRequest) -> Reply {
    // KIP-848's APIs need group.version 1 (Kafka's `isConsumerGroupProtocolEnabled`); below it
    // they answer UNSUPPORTED_VERSION, as their `getErrorResponse` shapes it.
    let consumer_protocol_off = || {
        runnel_cluster::features::level(&broker.image(), runnel_cluster::features::GROUP_VERSION)
            < 1
    };
    match &request {
        GroupRequest::ConsumerGroupHeartbeat(_) if consumer_protocol_off() => {
            return Reply::Send(ResponseKind::ConsumerGroupHeartbeat(
                kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(
                        kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
                    )
                    .with_error_message(None),
            ));
        }
        GroupRequest::ConsumerGroupDescribe(r) if consumer_protocol_off() => {
            use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
            return Reply::Send(ResponseKind::ConsumerGroupDescribe(
                kafka_protocol::messages::ConsumerGroupDescribeResponse::default().with_groups(
                    r.group_ids
                        .iter()
                        .map(|id| {
                            DescribedGroup::default()
                                .with_group_id(id.clone())
                                .with_error_code(
                                    kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
                                )
                        })
                        .collect(),
                ),
            ));
        }
        _ => {}
    }
    if let Err(e) = broker.ensure_offsets_topic() {
        tracing::error!(error = %e, "creating __consumer_offsets");
    }
    let include_authorized_operations = match &request {
        GroupRequest::DescribeGroups(r) => r.include_authorized_operations,
        GroupRequest::ConsumerGroupDescribe(r) => r.include_authorized_operations,
        _ => false,
    };
    let answer = broker
        .groups
        .call(&**broker, ctx.api_version(), &ctx.client_info(), request)
        .await;
    let Some(mut response) = answer else {
        return Reply::Close;
    };
    if include_authorized_operations {
        let ops = |group: &str| {
            broker
                .authorizer
                .authorized_operations(ctx.principal(), ResourceType::Group, group)
        };
        match &mut response {
            ResponseKind::DescribeGroups(r) => {
                for g in &mut r.groups {
                    g.authorized_operations = ops(g.group_id.as_str());
                }
            }
            ResponseKind::ConsumerGroupDescribe(r) => {
                for g in &mut r.groups {
                    g.authorized_operations = ops(g.group_id.as_str());
                }
            }
            _ => {}
        }
    }
    Reply::Send(response)
}

/// Kafka's `localLogWithEpochOrThrow` for requests only the leader serves: the client's
/// `current_leader_epoch` first (`leader_epoch_error`), then NOT_LEADER_OR_FOLLOWER when this
/// node holds the partition but does not lead it (another broker leads, or none does).
pub fn leader_error(requested_epoch: i32, partition: &crate::replica::Partition) -> Option<i16> {
    leader_epoch_error(requested_epoch, partition.leader_epoch()).or_else(|| {
        (!partition.is_leader())
            .then(|| kafka_protocol::error::ResponseError::NotLeaderOrFollower.code())
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
