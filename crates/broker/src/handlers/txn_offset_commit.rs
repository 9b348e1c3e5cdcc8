//! TxnOffsetCommit (v0-5): offsets a transactional producer commits for a consumer group
//! (Kafka's `KafkaApis.handleTxnOffsetCommitRequest`). The broker checks authorization and
//! the topics, the group coordinator shard of the group does the rest
//! (`GroupCoordinator::txn_offset_commit`): the offsets are written as a transactional batch
//! of the producer and stay pending until its transaction's marker.
//!
//! In Kafka's order: without WRITE on the transactional id every partition answers
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, without READ on the group GROUP_AUTHORIZATION_FAILED;
//! a topic without READ answers TOPIC_AUTHORIZATION_FAILED, an unknown topic or partition
//! UNKNOWN_TOPIC_OR_PARTITION; the coordinator answers the rest, merged in by topic
//! (`TxnOffsetCommitResponse.Builder.merge`).
//!
//! Before the transaction's first write to the group's partition, the transaction coordinator
//! verifies that the transaction holds it (`transaction.partition.verification.enable`), or,
//! for v5 (a transaction-version-2 client, which sends no AddOffsetsToTxn), adds it
//! (`produce_txn::verify_offsets_partition`); a refusal fails every partition, mapped as the
//! coordinator maps write errors.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use runnel_cluster::group::coordinator::GroupRequest;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;

/// Answers a TxnOffsetCommit; `None` when the coordinator vanished without answering (the
/// connection then closes).
pub async fn handle(
    broker: &std::sync::Arc<Broker>,
    ctx: &RequestContext<'_>,
    request: TxnOffsetCommitRequest,
) -> Option<TxnOffsetCommitResponse> {
    let version = ctx.api_version();
    let authorize = |op, resource, name: &str| {
        broker
            .authorizer
            .authorize(ctx.principal(), op, resource, name)
    };
    if !authorize(
        AclOperation::Write,
        ResourceType::TransactionalId,
        request.transactional_id.as_str(),
    ) {
        return Some(all_failed(
            &request,
            ResponseError::TransactionalIdAuthorizationFailed,
            version,
        ));
    }
    if !authorize(
        AclOperation::Read,
        ResourceType::Group,
        request.group_id.as_str(),
    ) {
        return Some(all_failed(
            &request,
            ResponseError::GroupAuthorizationFailed,
            version,
        ));
    }
    let image = broker.image();
    let mut refused = Builder::default();
    let mut valid = request.clone();
    valid.topics.clear();
    for topic in &request.topics {
        let name = topic.name.as_str();
        let code = if !authorize(AclOperation::Read, ResourceType::Topic, name) {
            Some(ResponseError::TopicAuthorizationFailed.code())
        } else if image.topic(name).is_none() {
            Some(ResponseError::UnknownTopicOrPartition.code())
        } else {
            None
        };
        if let Some(code) = code {
            for p in &topic.partitions {
                refused.add(topic.name.clone(), p.partition_index, code);
            }
            continue;
        }
        let count = image.topic(name).map_or(0, |t| t.partitions);
        let mut kept = topic.clone();
        kept.partitions.clear();
        for p in &topic.partitions {
            let exists = u32::try_from(p.partition_index).is_ok_and(|i| i < count);
            if exists {
                kept.partitions.push(p.clone());
            } else {
                refused.add(
                    topic.name.clone(),
                    p.partition_index,
                    ResponseError::UnknownTopicOrPartition.code(),
                );
            }
        }
        if !kept.partitions.is_empty() {
            valid.topics.push(kept);
        }
    }
    if valid.topics.is_empty() {
        return Some(finish(refused.response, version));
    }
    if let Err(e) = broker.ensure_offsets_topic() {
        tracing::error!(error = %e, "creating __consumer_offsets");
    }
    if let Some(partitions) = broker
        .image()
        .topic(crate::internal_topics::OFFSETS_TOPIC)
        .and_then(|t| i32::try_from(t.partitions).ok())
    {
        let code = super::produce_txn::verify_offsets_partition(
            broker,
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            runnel_cluster::group::offsets_partition_for(request.group_id.as_str(), partitions),
            version,
        )
        .await;
        if code != 0 {
            let code = runnel_cluster::group::coordinator_write_error_code(code);
            let failed = runnel_cluster::group::txn_offset_commit_error(&valid, code);
            return Some(finish(refused.merge(failed), version));
        }
    }
    let answer = broker
        .groups
        .call(
            &**broker,
            version,
            &ctx.client_info(),
            GroupRequest::TxnOffsetCommit(valid),
        )
        .await?;
    let ResponseKind::TxnOffsetCommit(answer) = answer else {
        tracing::error!("the group coordinator answered a TxnOffsetCommit with another API");
        return None;
    };
    Some(finish(refused.merge(answer), version))
}

/// Every partition of the request fails with `error`.
fn all_failed(
    request: &TxnOffsetCommitRequest,
    error: ResponseError,
    version: i16,
) -> TxnOffsetCommitResponse {
    finish(
        runnel_cluster::group::txn_offset_commit_error(request, error.code()),
        version,
    )
}

/// Kafka's `sendResponse`: clients before 2.0 (v0-1) crash on COORDINATOR_LOAD_IN_PROGRESS,
/// so they get COORDINATOR_NOT_AVAILABLE instead.
fn finish(mut response: TxnOffsetCommitResponse, version: i16) -> TxnOffsetCommitResponse {
    if version < 2 {
        for topic in &mut response.topics {
            for p in &mut topic.partitions {
                if p.error_code == ResponseError::CoordinatorLoadInProgress.code() {
                    p.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
    }
    response
}

/// Kafka's `TxnOffsetCommitResponse.Builder`: partitions by topic, topics in first-seen order.
#[derive(Default)]
struct Builder {
    response: TxnOffsetCommitResponse,
    by_name: HashMap<kafka_protocol::messages::TopicName, usize>,
}

impl Builder {
    fn topic(
        &mut self,
        name: kafka_protocol::messages::TopicName,
    ) -> &mut TxnOffsetCommitResponseTopic {
        let next = self.response.topics.len();
        let index = *self.by_name.entry(name.clone()).or_insert(next);
        if index == next {
            self.response
                .topics
                .push(TxnOffsetCommitResponseTopic::default().with_name(name));
        }
        &mut self.response.topics[index]
    }

    fn add(&mut self, name: kafka_protocol::messages::TopicName, partition: i32, code: i16) {
        self.topic(name).partitions.push(
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code),
        );
    }

    /// `Builder.merge`: the coordinator's topics join the refused ones of the same name.
    fn merge(mut self, answer: TxnOffsetCommitResponse) -> TxnOffsetCommitResponse {
        if self.response.topics.is_empty() {
            return answer;
        }
        self.response.throttle_time_ms = answer.throttle_time_ms;
        for topic in answer.topics {
            let partitions = topic.partitions;
            self.topic(topic.name).partitions.extend(partitions);
        }
        self.response
    }
}
