//! EndTxn, the aborts the coordinator starts itself (fencing a producer, timeouts), the
//! markers, and the completion written once every marker is.
//!
//! Kafka has two paths: TV0/TV1 clients (EndTxn v0-4, `endTransactionWithTV1`) keep their
//! epoch; TV2 clients (EndTxn v5+, KIP-890) get a new epoch with every commit or abort, so a
//! late write of the previous transaction carries an epoch the partition refuses, and a
//! retried EndTxn (the epoch one below the current) is recognised.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::super::metadata::{TopicPartition, TxnTransit, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use super::super::output::{MarkerWrite, Output, TxnResult};
use super::super::state::{version as tv, TxnState};
use super::super::PartitionView;
use super::{code, EndReply, Then, TxnCoordinator};
use crate::group::RequestId;

/// An EndTxn answer at `version` (PRODUCER_FENCED reads INVALID_PRODUCER_EPOCH before v2).
fn end_txn_response(
    id: RequestId,
    version: i16,
    error: i16,
    producer_id: i64,
    epoch: i16,
) -> Output {
    let error = if version < 2 && error == code(ResponseError::ProducerFenced) {
        code(ResponseError::InvalidProducerEpoch)
    } else {
        error
    };
    Output::Respond(
        id,
        ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(error)
                .with_producer_id(producer_id.into())
                .with_producer_epoch(epoch),
        ),
    )
}

/// Answers whoever waits for an end-of-transaction transition that failed with `error`.
pub(super) fn reply_error(reply: EndReply, error: i16, out: &mut Vec<Output>) {
    match reply {
        EndReply::EndTxn { id, version } => out.push(end_txn_response(
            id,
            version,
            error,
            NO_PRODUCER_ID,
            NO_PRODUCER_EPOCH,
        )),
        EndReply::Fence { id, version } => out.push(Output::Respond(
            id,
            ResponseKind::InitProducerId(super::init::init_error(error, version)),
        )),
        EndReply::Timeout => {}
    }
}

/// `logInvalidStateTransitionAndReturnError`.
fn invalid_state() -> Result<Option<TxnTransit>, i16> {
    Err(code(ResponseError::InvalidTxnState))
}

impl TxnCoordinator {
    pub(super) fn end_txn(
        &mut self,
        id: RequestId,
        version: i16,
        r: &EndTxnRequest,
        now_ms: i64,
        view: &dyn PartitionView,
        out: &mut Vec<Output>,
    ) {
        let _ = view;
        let result = if r.committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        };
        // EndTxn v5+ comes from TV2 clients (`transactionVersionForEndTxn`).
        let client_version = if version > 4 { tv::TV_2 } else { tv::TV_0 };
        self.end_transaction(
            &r.transactional_id.0,
            r.producer_id.0,
            r.producer_epoch,
            result,
            true,
            client_version,
            EndReply::EndTxn { id, version },
            now_ms,
            out,
        );
    }

    /// Kafka's `endTransaction`: prepares and writes PrepareCommit/PrepareAbort, or answers.
    /// For a fence (`from_client` false) the metadata's pending state is PrepareEpochFence
    /// and `producer_epoch` the fenced epoch.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end_transaction(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        from_client: bool,
        client_version: i16,
        reply: EndReply,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let epoch_bump = tv::supports_epoch_bump(client_version);
        let mut fenced_epoch = None;
        let mut current = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH);
        let prepared = if txn_id.is_empty() {
            Err(code(ResponseError::InvalidRequest))
        } else if epoch_bump {
            self.prepare_end_v2(
                txn_id,
                producer_id,
                producer_epoch,
                result,
                from_client,
                client_version,
                now_ms,
                &mut current,
                out,
            )
        } else {
            self.prepare_end_v1(
                txn_id,
                producer_id,
                producer_epoch,
                result,
                from_client,
                now_ms,
                &mut fenced_epoch,
            )
        };
        match prepared {
            Ok(Some(transit)) => {
                let then = Then::Prepared {
                    reply,
                    result,
                    epoch_bump,
                    fenced_epoch,
                };
                self.append(txn_id, transit, then, out);
            }
            Ok(None) => {
                // Already complete with this result: a retry, answered at once.
                let (pid, epoch) = if epoch_bump {
                    current
                } else {
                    (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                };
                match reply {
                    EndReply::EndTxn { id, version } => {
                        out.push(end_txn_response(id, version, 0, pid, epoch))
                    }
                    other => reply_error(other, code(ResponseError::ConcurrentTransactions), out),
                }
            }
            Err(error) => {
                // A fence that cannot go on leaves nothing pending behind it.
                if !from_client {
                    if let Some(meta) = self.txns.get_mut(txn_id) {
                        if meta.pending == Some(TxnState::PrepareEpochFence) {
                            meta.pending = None;
                        }
                    }
                }
                reply_error(reply, error, out);
            }
        }
    }

    /// `endTransactionWithTV1` up to the append: `Ok(None)` is a retry answered with NONE.
    #[allow(clippy::too_many_arguments)]
    fn prepare_end_v1(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        from_client: bool,
        now_ms: i64,
        fenced_epoch: &mut Option<i16>,
    ) -> Result<Option<TxnTransit>, i16> {
        use ResponseError::*;
        let meta = match self.lookup(txn_id)? {
            None => return Err(code(InvalidProducerIdMapping)),
            Some(meta) => meta,
        };
        if meta.producer_id != producer_id {
            return Err(code(InvalidProducerIdMapping));
        }
        if (from_client && producer_epoch != meta.producer_epoch)
            || producer_epoch < meta.producer_epoch
        {
            return Err(code(ProducerFenced));
        }
        let fencing = meta.pending == Some(TxnState::PrepareEpochFence);
        if meta.pending.is_some() && !fencing {
            return Err(code(ConcurrentTransactions));
        }
        let commit = result == TxnResult::Commit;
        match meta.state {
            TxnState::Ongoing => {
                let next = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                let Some(meta) = self.txns.get_mut(txn_id) else {
                    return Err(code(UnknownServerError));
                };
                let transit = if next == TxnState::PrepareAbort && fencing {
                    // Kafka moves the in-memory epoch to the fenced one before writing; we
                    // prepare from it and move the epoch when the write commits.
                    meta.pending = None;
                    let mut fenced = meta.clone();
                    fenced.producer_epoch = producer_epoch;
                    fenced.last_producer_epoch = NO_PRODUCER_EPOCH;
                    let transit = fenced.prepare_abort_or_commit(
                        next,
                        tv::TV_0,
                        NO_PRODUCER_ID,
                        now_ms,
                        false,
                    );
                    meta.pending = fenced.pending;
                    *fenced_epoch = Some(producer_epoch);
                    transit
                } else {
                    meta.prepare_abort_or_commit(next, tv::TV_0, NO_PRODUCER_ID, now_ms, false)
                };
                transit.map(Some).map_err(|e| {
                    tracing::error!("transaction coordinator: {e:?}");
                    code(UnknownServerError)
                })
            }
            TxnState::CompleteCommit if commit => Ok(None),
            TxnState::CompleteAbort if !commit => Ok(None),
            TxnState::PrepareCommit if commit => Err(code(ConcurrentTransactions)),
            TxnState::PrepareAbort if !commit => Err(code(ConcurrentTransactions)),
            TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Empty => invalid_state(),
            TxnState::Dead | TxnState::PrepareEpochFence => {
                self.internal_errors += 1;
                Err(code(UnknownServerError))
            }
        }
    }

    /// `endTransaction` (TV2) up to the append: `Ok(None)` is a retry answered with NONE and
    /// the current producer id and epoch (left in `current`).
    #[allow(clippy::too_many_arguments)]
    fn prepare_end_v2(
        &mut self,
        txn_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        result: TxnResult,
        from_client: bool,
        client_version: i16,
        now_ms: i64,
        current: &mut (i64, i16),
        out: &mut Vec<Output>,
    ) -> Result<Option<TxnTransit>, i16> {
        use ResponseError::*;
        let meta = match self.lookup(txn_id)? {
            None => return Err(code(InvalidProducerIdMapping)),
            Some(meta) => meta,
        };
        *current = (meta.producer_id, meta.producer_epoch);
        let fencing = meta.pending == Some(TxnState::PrepareEpochFence);
        let retry_on_overflow = !fencing
            && meta.prev_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && meta.producer_epoch == 0;
        let retry_on_epoch_bump =
            !fencing && i32::from(meta.producer_epoch) == i32::from(producer_epoch) + 1;
        let valid_epoch = if fencing {
            (!from_client || producer_epoch == meta.producer_epoch)
                && producer_epoch >= meta.producer_epoch
        } else {
            match meta.state {
                TxnState::Ongoing
                | TxnState::Empty
                | TxnState::Dead
                | TxnState::PrepareEpochFence => producer_epoch == meta.producer_epoch,
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_epoch_bump,
                TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    retry_on_epoch_bump
                        || retry_on_overflow
                        || producer_epoch == meta.producer_epoch
                }
            }
        };
        let is_retry = retry_on_epoch_bump || retry_on_overflow;
        if meta.pending.is_some() && !fencing {
            return Err(code(ConcurrentTransactions));
        }
        if meta.producer_id != producer_id && !retry_on_overflow {
            return Err(code(InvalidProducerIdMapping));
        }
        if !valid_epoch {
            return Err(code(ProducerFenced));
        }
        let commit = result == TxnResult::Commit;
        let state = meta.state;
        let next = match state {
            TxnState::Ongoing => {
                let next = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                (next, false)
            }
            TxnState::CompleteCommit if commit && is_retry => return Ok(None),
            TxnState::CompleteCommit if !commit && !is_retry => (TxnState::PrepareAbort, true),
            TxnState::CompleteAbort if !commit && is_retry => return Ok(None),
            TxnState::CompleteAbort if !commit => (TxnState::PrepareAbort, true),
            TxnState::PrepareCommit if commit => return Err(code(ConcurrentTransactions)),
            TxnState::PrepareAbort if !commit => return Err(code(ConcurrentTransactions)),
            TxnState::Empty if !commit => (TxnState::PrepareAbort, true),
            TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::Empty => return invalid_state(),
            TxnState::Dead | TxnState::PrepareEpochFence => {
                self.internal_errors += 1;
                return Err(code(UnknownServerError));
            }
        };
        let (next, no_partition_added) = next;
        let next_producer_id = if meta.is_epoch_exhausted() {
            self.generate_producer_id(out)?
        } else {
            NO_PRODUCER_ID
        };
        let Some(meta) = self.txns.get_mut(txn_id) else {
            return Err(code(UnknownServerError));
        };
        if next == TxnState::PrepareAbort && fencing {
            meta.pending = None;
        }
        meta.prepare_abort_or_commit(
            next,
            client_version,
            next_producer_id,
            now_ms,
            no_partition_added,
        )
        .map(Some)
        .map_err(|e| {
            tracing::error!("transaction coordinator: {e:?}");
            code(UnknownServerError)
        })
    }

    /// PrepareCommit/PrepareAbort committed: answer, prepare the completion, send markers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_prepared(
        &mut self,
        txn_id: &str,
        reply: EndReply,
        result: TxnResult,
        epoch_bump: bool,
        now_ms: i64,
        view: &dyn PartitionView,
        out: &mut Vec<Output>,
    ) {
        match self.send_markers(txn_id, result, now_ms, view, out) {
            Some(completion) => match reply {
                EndReply::EndTxn { id, version } => {
                    let (pid, epoch) = if epoch_bump {
                        (completion.producer_id, completion.producer_epoch)
                    } else {
                        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                    };
                    out.push(end_txn_response(id, version, 0, pid, epoch));
                }
                // The fenced producer's successor retries until the abort completes.
                EndReply::Fence { id, version } => out.push(Output::Respond(
                    id,
                    ResponseKind::InitProducerId(super::init::init_error(
                        code(ResponseError::ConcurrentTransactions),
                        version,
                    )),
                )),
                EndReply::Timeout => {}
            },
            None => reply_error(reply, code(ResponseError::UnknownServerError), out),
        }
    }

    /// `prepareComplete` then `addTxnMarkersToSend`: one marker write per partition leader;
    /// partitions that no longer exist need none. Returns the completion transition.
    pub(super) fn send_markers(
        &mut self,
        txn_id: &str,
        result: TxnResult,
        now_ms: i64,
        view: &dyn PartitionView,
        out: &mut Vec<Output>,
    ) -> Option<TxnTransit> {
        let coordinator_epoch = self.coordinator_epoch;
        let meta = self.txns.get_mut(txn_id)?;
        let completion = match meta.prepare_complete(now_ms) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("transaction coordinator: {e:?}");
                self.internal_errors += 1;
                return None;
            }
        };
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut gone = Vec::new();
        for tp in &meta.partitions {
            match view.leader(&tp.0, tp.1) {
                Some(leader) => by_leader.entry(leader).or_default().push(tp.clone()),
                None => gone.push(tp.clone()),
            }
        }
        for tp in gone {
            meta.partitions.remove(&tp);
        }
        for (leader, partitions) in by_leader {
            out.push(Output::WriteMarkers(MarkerWrite {
                leader,
                transactional_id: txn_id.to_owned(),
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
                coordinator_epoch,
                result,
                transaction_version: meta.client_version,
                partitions,
            }));
        }
        self.markers.insert(txn_id.to_owned(), completion.clone());
        self.maybe_write_completion(txn_id, out);
        Some(completion)
    }

    /// The shell wrote the markers of `partitions` for `transactional_id` (or gave up on
    /// partitions as Kafka does: deleted, or refusing the marker). Once every partition has
    /// its marker the completion is written.
    pub fn markers_written(
        &mut self,
        transactional_id: &str,
        partitions: &[TopicPartition],
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.markers.contains_key(transactional_id) {
            return out;
        }
        let Some(meta) = self.txns.get_mut(transactional_id) else {
            return out;
        };
        if !matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return out;
        }
        for tp in partitions {
            meta.partitions.remove(tp);
        }
        self.maybe_write_completion(transactional_id, &mut out);
        out
    }

    /// `maybeWriteTxnCompletion`.
    fn maybe_write_completion(&mut self, txn_id: &str, out: &mut Vec<Output>) {
        let done = self
            .txns
            .get(txn_id)
            .is_some_and(|m| m.partitions.is_empty());
        if done {
            self.write_completion(txn_id, out);
        }
    }

    /// Appends the completion of `txn_id`'s transaction.
    pub(super) fn write_completion(&mut self, txn_id: &str, out: &mut Vec<Output>) {
        if let Some(completion) = self.markers.remove(txn_id) {
            self.append(txn_id, completion, Then::Completed, out);
        }
    }

    /// `abortTimedOutTransactions`: every ongoing transaction past its timeout is fenced and
    /// aborted at the cluster's transaction version.
    pub(super) fn abort_timed_out(
        &mut self,
        now_ms: i64,
        _view: &dyn PartitionView,
        out: &mut Vec<Output>,
    ) {
        let timed_out: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                m.pending.is_none()
                    && m.state == TxnState::Ongoing
                    && m.timeout_ms != i32::MAX
                    && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for txn_id in timed_out {
            let Some(meta) = self.txns.get_mut(&txn_id) else {
                continue;
            };
            let fence = match meta.prepare_fence_producer_epoch() {
                Ok(t) => t,
                Err(_) => {
                    self.internal_errors += 1;
                    continue;
                }
            };
            let level = self.config.transaction_version_level;
            self.end_transaction(
                &txn_id,
                fence.producer_id,
                fence.producer_epoch,
                TxnResult::Abort,
                false,
                level,
                EndReply::Timeout,
                now_ms,
                out,
            );
        }
    }
}
