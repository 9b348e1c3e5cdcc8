//! Who may use the transaction APIs, as Kafka's `KafkaApis` asks its authorizer before the
//! transaction coordinator sees a request: WRITE on the transactional id (InitProducerId,
//! AddPartitionsToTxn up to v3, AddOffsetsToTxn, EndTxn), WRITE on each topic added, READ on
//! the group of AddOffsetsToTxn, CLUSTER_ACTION for the broker-to-broker AddPartitionsToTxn v4+,
//! DESCRIBE on each transactional id described or listed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use runnel_cluster::txn::TxnRequest;

use crate::authorizer::{AclOperation, Authorizer, ResourceType};
use crate::context::Principal;

/// The answer to `request` if the principal may not make it (all of it); `None` lets it through
/// to the coordinator. DescribeTransactions is answered in part by `describe_denied`, and
/// ListTransactions filtered by `filter_listed`.
pub fn denied(
    authorizer: &dyn Authorizer,
    principal: &Principal,
    version: i16,
    request: &TxnRequest,
) -> Option<ResponseKind> {
    let may = |op: AclOperation, resource: ResourceType, name: &str| {
        authorizer.authorize(principal, op, resource, name)
    };
    let txn_write = |id: &str| may(AclOperation::Write, ResourceType::TransactionalId, id);
    let refused = ResponseError::TransactionalIdAuthorizationFailed.code();
    match request {
        TxnRequest::InitProducerId(r) => {
            let id = r.transactional_id.as_ref()?;
            (!txn_write(id)).then(|| request.error_response(version, refused))
        }
        TxnRequest::EndTxn(r) => {
            (!txn_write(&r.transactional_id)).then(|| request.error_response(version, refused))
        }
        TxnRequest::AddOffsetsToTxn(r) => {
            if !txn_write(&r.transactional_id) {
                return Some(request.error_response(version, refused));
            }
            (!may(AclOperation::Read, ResourceType::Group, &r.group_id)).then(|| {
                request.error_response(version, ResponseError::GroupAuthorizationFailed.code())
            })
        }
        TxnRequest::AddPartitionsToTxn(_) if version >= 4 => (!may(
            AclOperation::ClusterAction,
            ResourceType::Cluster,
            "kafka-cluster",
        ))
        .then(|| {
            ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default()
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
            )
        }),
        TxnRequest::AddPartitionsToTxn(r) => {
            if !txn_write(&r.v3_and_below_transactional_id) {
                return Some(request.error_response(version, refused));
            }
            let unauthorized = |topic: &str| !may(AclOperation::Write, ResourceType::Topic, topic);
            if !r
                .v3_and_below_topics
                .iter()
                .any(|t| unauthorized(t.name.as_str()))
            {
                return None;
            }
            // TOPIC_AUTHORIZATION_FAILED for the topics refused, OPERATION_NOT_ATTEMPTED for
            // the rest (Kafka's `handleAddPartitionsToTxnRequest`).
            let results = r
                .v3_and_below_topics
                .iter()
                .map(|t| {
                    let code = if unauthorized(t.name.as_str()) {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        ResponseError::OperationNotAttempted.code()
                    };
                    add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                        .with_name(t.name.clone())
                        .with_results_by_partition(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_partition_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect();
            Some(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        TxnRequest::DescribeTransactions(_) | TxnRequest::ListTransactions(_) => None,
    }
}

/// DescribeTransactions: the positions of the ids the principal may not describe, with their
/// answers; the request keeps only the others.
pub fn describe_denied(
    authorizer: &dyn Authorizer,
    principal: &Principal,
    request: &mut DescribeTransactionsRequest,
) -> Vec<(usize, describe_transactions_response::TransactionState)> {
    let mut denied = Vec::new();
    let mut kept = Vec::with_capacity(request.transactional_ids.len());
    for (i, id) in std::mem::take(&mut request.transactional_ids)
        .into_iter()
        .enumerate()
    {
        if authorizer.authorize(
            principal,
            AclOperation::Describe,
            ResourceType::TransactionalId,
            id.as_str(),
        ) {
            kept.push(id);
        } else {
            denied.push((
                i,
                describe_transactions_response::TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
            ));
        }
    }
    request.transactional_ids = kept;
    denied
}

/// ListTransactions: only the transactions the principal may describe.
pub fn filter_listed(
    authorizer: &dyn Authorizer,
    principal: &Principal,
    response: &mut ListTransactionsResponse,
) {
    response.transaction_states.retain(|s| {
        authorizer.authorize(
            principal,
            AclOperation::Describe,
            ResourceType::TransactionalId,
            s.transactional_id.as_str(),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    /// Allows only what `allowed` says.
    struct Rules(fn(AclOperation, ResourceType, &str) -> bool);

    impl Authorizer for Rules {
        fn authorize(&self, _: &Principal, op: AclOperation, r: ResourceType, n: &str) -> bool {
            (self.0)(op, r, n)
        }
    }

    fn id(s: &'static str) -> TransactionalId {
        TransactionalId(StrBytes::from_static_str(s))
    }

    // Proves each API is refused with Kafka's code when its ACL is missing and let through
    // when it is there.
    #[test]
    fn refusals_carry_kafkas_codes() {
        let p = Principal::anonymous();
        let none = Rules(|_, _, _| false);
        let all = Rules(|_, _, _| true);
        let init = TxnRequest::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(Some(id("t"))),
        );
        let Some(ResponseKind::InitProducerId(r)) = denied(&none, &p, 4, &init) else {
            panic!("refused")
        };
        assert_eq!(r.error_code, 53);
        assert!(denied(&all, &p, 4, &init).is_none());
        let idempotent = TxnRequest::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(None),
        );
        assert!(denied(&none, &p, 4, &idempotent).is_none());

        let offsets = TxnRequest::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(id("t"))
                .with_group_id(GroupId(StrBytes::from_static_str("g"))),
        );
        let no_group = Rules(|_, r, _| r != ResourceType::Group);
        let Some(ResponseKind::AddOffsetsToTxn(r)) = denied(&no_group, &p, 3, &offsets) else {
            panic!("refused")
        };
        assert_eq!(r.error_code, ResponseError::GroupAuthorizationFailed.code());

        let add = TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id("t"))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("secret")))
                        .with_partitions(vec![0]),
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("open")))
                        .with_partitions(vec![1]),
                ]),
        );
        let no_secret = Rules(|_, r, n| !(r == ResourceType::Topic && n == "secret"));
        let Some(ResponseKind::AddPartitionsToTxn(r)) = denied(&no_secret, &p, 3, &add) else {
            panic!("refused")
        };
        let codes: Vec<i16> = r
            .results_by_topic_v3_and_below
            .iter()
            .map(|t| t.results_by_partition[0].partition_error_code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::TopicAuthorizationFailed.code(),
                ResponseError::OperationNotAttempted.code()
            ]
        );
        let Some(ResponseKind::AddPartitionsToTxn(r)) = denied(&none, &p, 4, &add) else {
            panic!("refused")
        };
        assert_eq!(
            r.error_code,
            ResponseError::ClusterAuthorizationFailed.code()
        );

        let mut describe = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![id("hidden"), id("shown")]);
        let only_shown = Rules(|_, _, n| n == "shown");
        let denied = describe_denied(&only_shown, &p, &mut describe);
        assert_eq!(denied.len(), 1);
        assert_eq!(denied[0].0, 0);
        assert_eq!(denied[0].1.error_code, 53);
        assert_eq!(describe.transactional_ids, vec![id("shown")]);
    }
}
