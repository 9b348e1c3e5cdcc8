//! The transaction coordinator of one `__transaction_state` partition: owns the metadata of
//! every transactional id the partition holds, answers requests, runs the timers, and moves
//! transactions through their states as its appends commit.
//!
//! Sans-IO. Inputs: [`TxnCoordinator::handle`] (requests), [`TxnCoordinator::tick`] (the
//! clock), [`TxnCoordinator::on_committed`] / [`TxnCoordinator::on_append_failed`] (the fate
//! of each [`Output::Append`]), [`TxnCoordinator::markers_written`] (markers the shell wrote),
//! [`TxnCoordinator::add_producer_ids`] (a block of producer ids from the controller), and
//! [`TxnCoordinator::replay`] / [`TxnCoordinator::finish_replay`] (loading). Outputs:
//! [`Output`]s.
//!
//! # Correctness
//!
//! - A transition is prepared (its pending state refuses concurrent ones with
//!   CONCURRENT_TRANSACTIONS) and written; the metadata changes only when the shell reports
//!   the record committed, and then from the committed record's bytes, checked by Kafka's
//!   `completeTransitionTo` rules. A failed append leaves the committed state as it was.
//! - Every request is answered exactly once, possibly after its append's fate is known.
//! - Replaying the committed records on a fresh coordinator rebuilds the same metadata (but
//!   the last epoch, which no record version stores, as in Kafka), and `finish_replay`
//!   re-sends the markers of every transaction left in PrepareCommit or PrepareAbort.
//!
//! Files by concern: `init` (InitProducerId, producer ids), `add_partitions`
//! (AddPartitionsToTxn, AddOffsetsToTxn), `end_txn` (EndTxn, fencing, markers, completion),
//! `admin` (DescribeTransactions, ListTransactions), this one (routing, appends, timers,
//! replay).

mod add_partitions;
mod admin;
mod end_txn;
mod init;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::metadata::{TxnMetadata, TxnTransit};
use super::output::{AppendId, Output, TxnResult};
use super::records::{self, TxnRecord};
use super::state::TxnState;
use super::{transaction_partition_for, PartitionView, TxnConfig, TxnError};
use crate::group::RequestId;

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

/// How long a completion whose append failed waits before it is written again.
pub const COMPLETION_RETRY_BACKOFF_MS: i64 = 100;

/// The requests the transaction coordinator answers.
#[derive(Debug, Clone)]
pub enum TxnRequest {
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
}

impl TxnRequest {
    /// The response that fails every part of this request with `code` (the coordinator
    /// cannot serve it: not loaded here, or failed).
    pub fn error_response(&self, version: i16, code: i16) -> ResponseKind {
        match self {
            TxnRequest::InitProducerId(_) => ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ),
            TxnRequest::AddPartitionsToTxn(r) => add_partitions::all_failed(r, version, code),
            TxnRequest::AddOffsetsToTxn(_) => ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ),
            TxnRequest::EndTxn(_) => ResponseKind::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(code)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ),
            TxnRequest::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
                DescribeTransactionsResponse::default().with_transaction_states(
                    r.transactional_ids
                        .iter()
                        .map(|id| {
                            describe_transactions_response::TransactionState::default()
                                .with_transactional_id(id.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                ),
            ),
            TxnRequest::ListTransactions(_) => ResponseKind::ListTransactions(
                ListTransactionsResponse::default().with_error_code(code),
            ),
        }
    }
}

/// Who waits for an EndTxn-shaped transition (a client's EndTxn, an InitProducerId fencing
/// an ongoing transaction, or the timeout sweep).
#[derive(Debug, Clone, Copy)]
enum EndReply {
    EndTxn { id: RequestId, version: i16 },
    Fence { id: RequestId, version: i16 },
    Timeout,
}

/// What follows when an append commits or fails.
#[derive(Debug, Clone)]
enum Then {
    InitProducerId {
        id: RequestId,
        version: i16,
    },
    AddPartitions {
        id: RequestId,
        slot: usize,
        /// The partitions the request's transaction named (its answer lists them).
        partitions: BTreeSet<super::metadata::TopicPartition>,
    },
    AddOffsets {
        id: RequestId,
        version: i16,
    },
    /// PrepareCommit/PrepareAbort written: answer, then send the markers. `fenced_epoch` is
    /// the epoch a TV1 fence moved to (Kafka sets it in memory before the write; we set it
    /// when the write commits).
    Prepared {
        reply: EndReply,
        result: TxnResult,
        epoch_bump: bool,
        fenced_epoch: Option<i16>,
    },
    /// CompleteCommit/CompleteAbort written.
    Completed,
    /// The tombstone of an expired transactional id written.
    Expired,
}

/// An append the shell has not reported on yet.
#[derive(Debug, Clone)]
struct PendingAppend {
    transactional_id: String,
    /// The transition the record carries (`Dead` for a tombstone).
    transit: TxnTransit,
    record: crate::group::Record,
    then: Then,
}

/// A batched AddPartitionsToTxn waiting for the appends of some of its transactions.
#[derive(Debug)]
struct AddPartitionsReply {
    version: i16,
    slots: Vec<Option<add_partitions_to_txn_response::AddPartitionsToTxnResult>>,
}

/// The producer ids this coordinator hands out: the current block and the next one, asked
/// for when 90% of the current one is used (Kafka's `RPCProducerIdManager`).
#[derive(Debug, Default)]
struct ProducerIds {
    /// Next id and end (exclusive) of the current block.
    next: i64,
    end: i64,
    /// Where the next block is asked for.
    prefetch_at: i64,
    prefetched: Option<(i64, i64)>,
    requested: bool,
}

/// The transaction coordinator of one `__transaction_state` partition.
#[derive(Debug)]
pub struct TxnCoordinator {
    config: TxnConfig,
    /// The `__transaction_state` partition this coordinator owns.
    partition: i32,
    /// Its leader epoch, sent with markers so leaders refuse a deposed coordinator's.
    coordinator_epoch: i32,
    txns: BTreeMap<String, TxnMetadata>,
    /// Whether loading finished; before, requests get COORDINATOR_LOAD_IN_PROGRESS.
    loaded: bool,
    ids: ProducerIds,
    appends: BTreeMap<AppendId, PendingAppend>,
    next_append_id: AppendId,
    add_partitions: BTreeMap<RequestId, AddPartitionsReply>,
    /// Transactions whose markers are being written, with the completion transition written
    /// once every partition has its marker.
    markers: BTreeMap<String, TxnTransit>,
    /// Completions whose append failed with a retriable error, written again at `retry_at_ms`.
    retry_completions: BTreeSet<String>,
    retry_at_ms: Option<i64>,
    next_abort_check_ms: Option<i64>,
    next_expiry_check_ms: Option<i64>,
    /// Internal errors (transitions Kafka treats as fatal): zero unless there is a bug.
    internal_errors: u64,
}

impl TxnCoordinator {
    /// The coordinator of `partition` at leader epoch `coordinator_epoch`, not yet loaded.
    pub fn new(config: TxnConfig, partition: i32, coordinator_epoch: i32) -> Self {
        TxnCoordinator {
            config,
            partition,
            coordinator_epoch,
            txns: BTreeMap::new(),
            loaded: false,
            ids: ProducerIds::default(),
            appends: BTreeMap::new(),
            next_append_id: 1,
            add_partitions: BTreeMap::new(),
            markers: BTreeMap::new(),
            retry_completions: BTreeSet::new(),
            retry_at_ms: None,
            next_abort_check_ms: None,
            next_expiry_check_ms: None,
            internal_errors: 0,
        }
    }

    /// The cluster's finalized `transaction.version` changed (UpdateFeatures): the records
    /// written and the aborts the coordinator starts itself follow it from now on, as Kafka
    /// reads the level per request.
    pub fn set_transaction_version_level(&mut self, level: i16) {
        self.config.transaction_version_level = level;
    }

    /// The metadata of every transactional id (committed state; pending transitions are
    /// not in it).
    pub fn transactions(&self) -> &BTreeMap<String, TxnMetadata> {
        &self.txns
    }

    /// Transitions that failed Kafka's fatal checks; always zero unless there is a bug.
    pub fn internal_errors(&self) -> u64 {
        self.internal_errors
    }

    /// Whether every append this coordinator asked for has been reported on.
    pub fn appends_in_flight(&self) -> usize {
        self.appends.len()
    }

    /// Handles one request at `version`.
    pub fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        request: TxnRequest,
        now_ms: i64,
        view: &dyn PartitionView,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        match request {
            TxnRequest::InitProducerId(r) => {
                self.init_producer_id(id, version, &r, now_ms, &mut out)
            }
            TxnRequest::AddPartitionsToTxn(r) => {
                self.add_partitions_to_txn(id, version, &r, now_ms, view, &mut out)
            }
            TxnRequest::AddOffsetsToTxn(r) => {
                self.add_offsets_to_txn(id, version, &r, now_ms, &mut out)
            }
            TxnRequest::EndTxn(r) => self.end_txn(id, version, &r, now_ms, view, &mut out),
            TxnRequest::DescribeTransactions(r) => {
                let resp = self.describe_transactions(&r);
                out.push(Output::Respond(
                    id,
                    ResponseKind::DescribeTransactions(resp),
                ));
            }
            TxnRequest::ListTransactions(r) => {
                let resp = self.list_transactions(&r, now_ms);
                out.push(Output::Respond(id, ResponseKind::ListTransactions(resp)));
            }
        }
        out
    }

    /// Kafka's `getTransactionState`: the metadata of `transactional_id` if this coordinator
    /// owns it and is loaded.
    fn lookup(&self, transactional_id: &str) -> Result<Option<&TxnMetadata>, i16> {
        if transaction_partition_for(transactional_id, self.config.transaction_state_partitions)
            != self.partition
        {
            return Err(code(ResponseError::NotCoordinator));
        }
        if !self.loaded {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
        }
        Ok(self.txns.get(transactional_id))
    }

    /// Asks the shell to append the record of `transit` for `transactional_id`.
    fn append(
        &mut self,
        transactional_id: &str,
        transit: TxnTransit,
        then: Then,
        out: &mut Vec<Output>,
    ) {
        let key = records::key(transactional_id);
        let value = (transit.state != TxnState::Dead).then(|| {
            records::value(
                &transit,
                super::state::version::log_value_version(self.config.transaction_version_level),
            )
        });
        let record = (key, value);
        let id = self.next_append_id;
        self.next_append_id += 1;
        self.appends.insert(
            id,
            PendingAppend {
                transactional_id: transactional_id.to_owned(),
                transit,
                record: record.clone(),
                then,
            },
        );
        out.push(Output::Append {
            id,
            partition: self.partition,
            records: vec![record],
        });
    }

    /// The append `id` committed: apply its record, then answer and go on.
    pub fn on_committed(
        &mut self,
        id: AppendId,
        now_ms: i64,
        view: &dyn PartitionView,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(append) = self.appends.remove(&id) else {
            return out;
        };
        let txn_id = append.transactional_id.clone();
        let applied = self.apply_committed(&append);
        match append.then {
            Then::InitProducerId { id, version } => {
                let resp = match applied {
                    Ok(()) => InitProducerIdResponse::default()
                        .with_producer_id(append.transit.producer_id.into())
                        .with_producer_epoch(append.transit.producer_epoch),
                    Err(code) => init::init_error(code, version),
                };
                out.push(Output::Respond(id, ResponseKind::InitProducerId(resp)));
            }
            Then::AddPartitions {
                id,
                slot,
                ref partitions,
            } => {
                let code = applied.err().unwrap_or(0);
                self.add_partitions_done(id, slot, &txn_id, partitions, code, &mut out);
            }
            Then::AddOffsets { id, version } => {
                let code = applied.err().unwrap_or(0);
                out.push(add_partitions::add_offsets_response(id, version, code));
            }
            Then::Prepared {
                reply,
                result,
                epoch_bump,
                ..
            } => match applied {
                Ok(()) => {
                    self.after_prepared(&txn_id, reply, result, epoch_bump, now_ms, view, &mut out)
                }
                Err(code) => end_txn::reply_error(reply, code, &mut out),
            },
            Then::Completed | Then::Expired => {}
        }
        out
    }

    /// Applies a committed record: decodes it and completes the pending transition with it.
    fn apply_committed(&mut self, append: &PendingAppend) -> Result<(), i16> {
        let (key, value) = &append.record;
        let decoded = records::decode(key, value.as_deref());
        let Some(meta) = self.txns.get_mut(&append.transactional_id) else {
            self.internal_errors += 1;
            return Err(code(ResponseError::UnknownServerError));
        };
        let result = match decoded {
            Ok(TxnRecord::Value(_, mut t)) => {
                // No record version stores the last epoch, and v0 (transaction.version 0) not
                // the previous and next producer ids or the client's version either: Kafka
                // keeps the prepared values in memory, and so do we.
                t.last_producer_epoch = append.transit.last_producer_epoch;
                if value_version(&append.record) == Some(0) {
                    t.prev_producer_id = append.transit.prev_producer_id;
                    t.next_producer_id = append.transit.next_producer_id;
                    t.client_version = append.transit.client_version;
                }
                if t != append.transit {
                    Err(format!(
                        "committed record {t:?} is not the prepared {:?}",
                        append.transit
                    ))
                } else {
                    if let Then::Prepared {
                        fenced_epoch: Some(epoch),
                        ..
                    } = append.then
                    {
                        meta.producer_epoch = epoch;
                        meta.last_producer_epoch = super::metadata::NO_PRODUCER_EPOCH;
                    }
                    meta.complete_transition(&t)
                }
            }
            Ok(TxnRecord::Tombstone(_)) if meta.pending == Some(TxnState::Dead) => {
                self.txns.remove(&append.transactional_id);
                return Ok(());
            }
            other => Err(format!("unexpected committed record {other:?}")),
        };
        result.map_err(|e| {
            tracing::error!("transaction coordinator: {e}");
            self.internal_errors += 1;
            if let Some(meta) = self.txns.get_mut(&append.transactional_id) {
                meta.pending = None;
            }
            code(ResponseError::UnknownServerError)
        })
    }

    /// The append `id` failed with Kafka error `error` (as the log answered it): the prepared
    /// transition is dropped and its requester answered, as Kafka's `appendTransactionToLog`
    /// maps the error; a completion is written again after `COMPLETION_RETRY_BACKOFF_MS`.
    pub fn on_append_failed(&mut self, id: AppendId, error: i16, now_ms: i64) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(append) = self.appends.remove(&id) else {
            return out;
        };
        let error = append_error(error);
        let txn_id = append.transactional_id.clone();
        // A completion is retried whatever the error. (Kafka retries COORDINATOR_NOT_AVAILABLE,
        // drops NOT_COORDINATOR since the partition's new leader completes the transaction,
        // and treats anything else as fatal; a shard that lost its partition is discarded by
        // the runtime, so retrying is harmless there and completes the transaction otherwise.)
        if matches!(append.then, Then::Completed) {
            self.markers.insert(txn_id.clone(), append.transit);
            self.retry_completions.insert(txn_id);
            self.retry_at_ms = Some(now_ms + COMPLETION_RETRY_BACKOFF_MS);
            return out;
        }
        if let Some(meta) = self.txns.get_mut(&txn_id) {
            meta.pending = None;
        }
        match append.then {
            Then::InitProducerId { id, version } => out.push(Output::Respond(
                id,
                ResponseKind::InitProducerId(init::init_error(error, version)),
            )),
            Then::AddPartitions {
                id,
                slot,
                ref partitions,
            } => self.add_partitions_done(id, slot, &txn_id, partitions, error, &mut out),
            Then::AddOffsets { id, version } => {
                out.push(add_partitions::add_offsets_response(id, version, error))
            }
            Then::Prepared { reply, .. } => end_txn::reply_error(reply, error, &mut out),
            Then::Completed | Then::Expired => {}
        }
        out
    }

    /// Runs the timers due at `now_ms`: aborts timed-out transactions, expires idle
    /// transactional ids, and writes again completions whose append failed.
    pub fn tick(&mut self, now_ms: i64, view: &dyn PartitionView) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.loaded {
            return out;
        }
        if self.next_abort_check_ms.is_some_and(|d| d <= now_ms) {
            self.abort_timed_out(now_ms, view, &mut out);
            self.next_abort_check_ms =
                Some(now_ms + self.config.abort_timed_out_interval_ms.max(1));
        }
        if self.next_expiry_check_ms.is_some_and(|d| d <= now_ms) {
            self.expire_transactional_ids(now_ms, &mut out);
            self.next_expiry_check_ms =
                Some(now_ms + self.config.remove_expired_interval_ms.max(1));
        }
        if self.retry_at_ms.is_some_and(|d| d <= now_ms) {
            self.retry_at_ms = None;
            for txn_id in std::mem::take(&mut self.retry_completions) {
                self.write_completion(&txn_id, &mut out);
            }
        }
        out
    }

    /// When `tick` next has work.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        [
            self.next_abort_check_ms,
            self.next_expiry_check_ms,
            self.retry_at_ms,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// `removeExpiredTransactionalIds`: a tombstone for every idle transactional id whose
    /// last update is `transactional.id.expiration.ms` old.
    fn expire_transactional_ids(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let expired: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                m.pending.is_none()
                    && m.state.expiration_allowed()
                    && m.last_update_ms <= now_ms - self.config.transactional_id_expiration_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for txn_id in expired {
            let Some(meta) = self.txns.get_mut(&txn_id) else {
                continue;
            };
            match meta.prepare_dead() {
                Ok(transit) => self.append(&txn_id, transit, Then::Expired, out),
                Err(_) => self.internal_errors += 1,
            }
        }
    }

    /// Loading: one record of the partition, in log order (`value` `None` for a tombstone).
    /// Records of other types and value versions Kafka does not read are skipped, as Kafka
    /// skips them.
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), TxnError> {
        match records::decode(key, value)? {
            TxnRecord::Value(txn_id, t) => {
                let meta = TxnMetadata::from_transit(txn_id.clone(), &t);
                self.txns.insert(txn_id, meta);
            }
            TxnRecord::Tombstone(txn_id) => {
                self.txns.remove(&txn_id);
            }
            TxnRecord::UnknownKeyVersion(_) | TxnRecord::UnknownValueVersion(_) => {}
        }
        Ok(())
    }

    /// Loading is done: serve requests, start the timers, and finish every transaction left
    /// in PrepareCommit or PrepareAbort (its markers are sent again).
    pub fn finish_replay(&mut self, now_ms: i64, view: &dyn PartitionView) -> Vec<Output> {
        let mut out = Vec::new();
        self.loaded = true;
        self.next_abort_check_ms = Some(now_ms + self.config.abort_timed_out_interval_ms.max(1));
        self.next_expiry_check_ms = Some(now_ms + self.config.remove_expired_interval_ms.max(1));
        let prepared: Vec<(String, TxnResult)> = self
            .txns
            .values()
            .filter_map(|m| match m.state {
                TxnState::PrepareCommit => Some((m.transactional_id.clone(), TxnResult::Commit)),
                TxnState::PrepareAbort => Some((m.transactional_id.clone(), TxnResult::Abort)),
                _ => None,
            })
            .collect();
        for (txn_id, result) in prepared {
            self.send_markers(&txn_id, result, now_ms, view, &mut out);
        }
        out
    }
}

/// The version of a record's value, if it has one.
fn value_version(record: &crate::group::Record) -> Option<i16> {
    let value = record.1.as_ref()?;
    Some(i16::from_be_bytes([*value.first()?, *value.get(1)?]))
}

/// Kafka's mapping of an append's error to what the coordinator answers
/// (`TransactionStateManager.appendTransactionToLog`).
fn append_error(error: i16) -> i16 {
    use ResponseError::*;
    match ResponseError::try_from_code(error) {
        Some(
            UnknownTopicOrPartition
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | RequestTimedOut,
        ) => code(CoordinatorNotAvailable),
        Some(NotLeaderOrFollower | KafkaStorageError) => code(NotCoordinator),
        Some(MessageTooLarge | RecordListTooLarge) => code(UnknownServerError),
        _ if error == 0 => code(UnknownServerError),
        _ => error,
    }
}
