//! AddPartitionsToTxn (v0-3 from producers; v4+ batched, from brokers, including the
//! verify-only form a partition leader uses before accepting a transactional produce) and
//! AddOffsetsToTxn, as Kafka's `KafkaApis` and `TransactionCoordinator` answer them.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::super::metadata::{TopicPartition, TxnTransit};
use super::super::output::Output;
use super::super::state::{version as tv, TxnState};
use super::super::PartitionView;
use super::{code, AddPartitionsReply, Then, TxnCoordinator};
use crate::group::RequestId;

/// One transaction of a request: id, producer id and epoch, verify-only, partitions.
struct Txn {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    partitions: BTreeSet<TopicPartition>,
}

/// The transactions of a request (`normalizeRequest` for v0-3).
fn transactions(r: &AddPartitionsToTxnRequest, version: i16) -> Vec<Txn> {
    let partitions = |topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic]| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect()
    };
    if version < 4 {
        vec![Txn {
            transactional_id: r.v3_and_below_transactional_id.0.to_string(),
            producer_id: r.v3_and_below_producer_id.0,
            producer_epoch: r.v3_and_below_producer_epoch,
            verify_only: false,
            partitions: partitions(&r.v3_and_below_topics),
        }]
    } else {
        r.transactions
            .iter()
            .map(|t| Txn {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                producer_epoch: t.producer_epoch,
                verify_only: t.verify_only,
                partitions: partitions(&t.topics),
            })
            .collect()
    }
}

/// `AddPartitionsToTxnResponse.resultForTransaction`: per-partition errors, by topic.
fn result_for(
    transactional_id: &str,
    errors: &BTreeMap<TopicPartition, i16>,
) -> AddPartitionsToTxnResult {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error) in errors {
        let entry = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(*partition)
            .with_partition_error_code(*error);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(entry),
            _ => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_results_by_partition(vec![entry]),
            ),
        }
    }
    AddPartitionsToTxnResult::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_owned(),
        )))
        .with_topic_results(topics)
}

fn same_error(partitions: &BTreeSet<TopicPartition>, error: i16) -> BTreeMap<TopicPartition, i16> {
    partitions.iter().map(|tp| (tp.clone(), error)).collect()
}

/// The response of a request whose transactions all have their results.
fn response(version: i16, results: Vec<AddPartitionsToTxnResult>) -> ResponseKind {
    let mut resp = AddPartitionsToTxnResponse::default();
    if version < 4 {
        resp.results_by_topic_v3_and_below = results
            .into_iter()
            .next()
            .map(|r| r.topic_results)
            .unwrap_or_default();
    } else {
        resp.results_by_transaction = results;
    }
    ResponseKind::AddPartitionsToTxn(resp)
}

/// Every partition of every transaction failed with `code`.
pub(super) fn all_failed(r: &AddPartitionsToTxnRequest, version: i16, code: i16) -> ResponseKind {
    let results = transactions(r, version)
        .iter()
        .map(|t| result_for(&t.transactional_id, &same_error(&t.partitions, code)))
        .collect();
    response(version, results)
}

pub(super) fn add_offsets_response(id: RequestId, version: i16, error: i16) -> Output {
    let error = if version < 2 && error == code(ResponseError::ProducerFenced) {
        code(ResponseError::InvalidProducerEpoch)
    } else {
        error
    };
    Output::Respond(
        id,
        ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(error)),
    )
}

/// What adding partitions to a transaction comes to before any append.
enum AddOutcome {
    Done(i16),
    Append(TxnTransit),
}

impl TxnCoordinator {
    pub(super) fn add_partitions_to_txn(
        &mut self,
        id: RequestId,
        version: i16,
        r: &AddPartitionsToTxnRequest,
        now_ms: i64,
        view: &dyn PartitionView,
        out: &mut Vec<Output>,
    ) {
        let txns = transactions(r, version);
        self.add_partitions.insert(
            id,
            AddPartitionsReply {
                version,
                slots: vec![None; txns.len()],
            },
        );
        // v4+ (brokers, TV2 clients through them) add under TV2; v0-3 under TV0.
        let client_version = if version > 3 { tv::TV_2 } else { tv::TV_0 };
        for (slot, txn) in txns.iter().enumerate() {
            // A set: `contains` below runs once per partition of the request.
            let missing: BTreeSet<&TopicPartition> = txn
                .partitions
                .iter()
                .filter(|(t, p)| view.leader(t, *p).is_none())
                .collect();
            if !missing.is_empty() {
                let errors = txn
                    .partitions
                    .iter()
                    .map(|tp| {
                        let error = if missing.contains(&tp) {
                            ResponseError::UnknownTopicOrPartition
                        } else {
                            ResponseError::OperationNotAttempted
                        };
                        (tp.clone(), code(error))
                    })
                    .collect();
                self.slot_done(id, slot, result_for(&txn.transactional_id, &errors), out);
                continue;
            }
            if txn.verify_only {
                let errors = self.verify_partitions(txn);
                self.slot_done(id, slot, result_for(&txn.transactional_id, &errors), out);
                continue;
            }
            match self.prepare_add(
                &txn.transactional_id,
                txn.producer_id,
                txn.producer_epoch,
                &txn.partitions,
                client_version,
                now_ms,
            ) {
                AddOutcome::Done(error) => {
                    let error = v1_error(version, error);
                    let result =
                        result_for(&txn.transactional_id, &same_error(&txn.partitions, error));
                    self.slot_done(id, slot, result, out);
                }
                AddOutcome::Append(transit) => {
                    let then = Then::AddPartitions {
                        id,
                        slot,
                        partitions: txn.partitions.clone(),
                    };
                    self.append(&txn.transactional_id, transit, then, out)
                }
            }
        }
        // A request of no transaction is answered at once (Kafka never answers it).
        self.maybe_respond(id, out);
    }

    pub(super) fn add_offsets_to_txn(
        &mut self,
        id: RequestId,
        version: i16,
        r: &AddOffsetsToTxnRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let partition = crate::group::offsets_partition_for(
            &r.group_id.0,
            self.config.offsets_topic_partitions,
        );
        let partitions = BTreeSet::from([("__consumer_offsets".to_owned(), partition)]);
        // AddOffsetsToTxn only comes from clients not using TV2.
        match self.prepare_add(
            &r.transactional_id.0,
            r.producer_id.0,
            r.producer_epoch,
            &partitions,
            tv::TV_0,
            now_ms,
        ) {
            AddOutcome::Done(error) => out.push(add_offsets_response(id, version, error)),
            AddOutcome::Append(transit) => {
                let txn_id = r.transactional_id.0.to_string();
                self.append(&txn_id, transit, Then::AddOffsets { id, version }, out)
            }
        }
    }

    /// `handleAddPartitionsToTransaction` up to the append.
    fn prepare_add(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<TopicPartition>,
        client_version: i16,
        now_ms: i64,
    ) -> AddOutcome {
        use ResponseError::*;
        if txn_id.is_empty() {
            return AddOutcome::Done(code(InvalidRequest));
        }
        let meta = match self.lookup(txn_id) {
            Err(error) => return AddOutcome::Done(error),
            Ok(None) => return AddOutcome::Done(code(InvalidProducerIdMapping)),
            Ok(Some(meta)) => meta,
        };
        let error = if meta.pending.is_some() {
            ConcurrentTransactions
        } else if meta.producer_id != producer_id {
            InvalidProducerIdMapping
        } else if meta.producer_epoch != producer_epoch {
            ProducerFenced
        } else if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            ConcurrentTransactions
        } else if meta.state == TxnState::Ongoing && meta.partitions.is_superset(partitions) {
            return AddOutcome::Done(0);
        } else {
            let Some(meta) = self.txns.get_mut(txn_id) else {
                return AddOutcome::Done(code(UnknownServerError));
            };
            return match meta.prepare_add_partitions(partitions, now_ms, client_version) {
                Ok(transit) => AddOutcome::Append(transit),
                Err(e) => {
                    tracing::error!("transaction coordinator: {e:?}");
                    AddOutcome::Done(code(UnknownServerError))
                }
            };
        };
        AddOutcome::Done(code(error))
    }

    /// `handleVerifyPartitionsInTransaction`: whether each partition is in the ongoing
    /// transaction (TRANSACTION_ABORTABLE when not), changing nothing.
    fn verify_partitions(&self, txn: &Txn) -> BTreeMap<TopicPartition, i16> {
        use ResponseError::*;
        if txn.transactional_id.is_empty() {
            return same_error(&txn.partitions, code(InvalidRequest));
        }
        let meta = match self.lookup(&txn.transactional_id) {
            Err(error) => return same_error(&txn.partitions, error),
            Ok(None) => return same_error(&txn.partitions, code(InvalidProducerIdMapping)),
            Ok(Some(meta)) => meta,
        };
        let error = if meta.producer_id != txn.producer_id {
            InvalidProducerIdMapping
        } else if meta.producer_epoch != txn.producer_epoch {
            ProducerFenced
        } else if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            ConcurrentTransactions
        } else {
            return txn
                .partitions
                .iter()
                .map(|tp| {
                    let error = if meta.partitions.contains(tp) {
                        0
                    } else {
                        code(TransactionAbortable)
                    };
                    (tp.clone(), error)
                })
                .collect();
        };
        same_error(&txn.partitions, code(error))
    }

    /// An append of AddPartitionsToTxn request `id`'s transaction `slot` is decided.
    pub(super) fn add_partitions_done(
        &mut self,
        id: RequestId,
        slot: usize,
        txn_id: &str,
        partitions: &BTreeSet<TopicPartition>,
        error: i16,
        out: &mut Vec<Output>,
    ) {
        let Some(version) = self.add_partitions.get(&id).map(|r| r.version) else {
            return;
        };
        let result = result_for(txn_id, &same_error(partitions, v1_error(version, error)));
        self.slot_done(id, slot, result, out);
    }

    fn slot_done(
        &mut self,
        id: RequestId,
        slot: usize,
        result: AddPartitionsToTxnResult,
        out: &mut Vec<Output>,
    ) {
        if let Some(reply) = self.add_partitions.get_mut(&id) {
            if let Some(s) = reply.slots.get_mut(slot) {
                *s = Some(result);
            }
        }
        self.maybe_respond(id, out);
    }

    fn maybe_respond(&mut self, id: RequestId, out: &mut Vec<Output>) {
        let ready = self
            .add_partitions
            .get(&id)
            .is_some_and(|r| r.slots.iter().all(Option::is_some));
        if !ready {
            return;
        }
        if let Some(reply) = self.add_partitions.remove(&id) {
            let results = reply.slots.into_iter().flatten().collect();
            out.push(Output::Respond(id, response(reply.version, results)));
        }
    }
}

/// PRODUCER_FENCED reads INVALID_PRODUCER_EPOCH before v2.
fn v1_error(version: i16, error: i16) -> i16 {
    if version < 2 && error == code(ResponseError::ProducerFenced) {
        code(ResponseError::InvalidProducerEpoch)
    } else {
        error
    }
}
