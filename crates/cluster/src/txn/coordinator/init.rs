//! InitProducerId (Kafka's `handleInitProducerId` and `prepareInitProducerIdTransit`), and the
//! producer ids the coordinator hands out.
//!
//! Only `keepPreparedTxn=false` is served: KIP-939 two-phase commit is not enabled
//! (`transaction.two.phase.commit.enable=false`, Kafka's default), so `enable2Pc` is refused
//! with TRANSACTIONAL_ID_AUTHORIZATION_FAILED and `keepPreparedTxn` with UNSUPPORTED_VERSION,
//! as Kafka answers them with 2PC disabled.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::super::metadata::{
    is_epoch_exhausted, TransitError, TxnMetadata, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use super::super::output::{Output, TxnResult};
use super::super::state::TxnState;
use super::{code, EndReply, Then, TxnCoordinator};
use crate::group::RequestId;

/// Kafka's `PID_PREFETCH_THRESHOLD`: the next block is asked for when 90% of one is used.
const PREFETCH_THRESHOLD: f64 = 0.9;

/// An InitProducerId error answer at `version` (PRODUCER_FENCED reads INVALID_PRODUCER_EPOCH
/// before v4).
pub(super) fn init_error(error: i16, version: i16) -> InitProducerIdResponse {
    let error = if version < 4 && error == code(ResponseError::ProducerFenced) {
        code(ResponseError::InvalidProducerEpoch)
    } else {
        error
    };
    InitProducerIdResponse::default()
        .with_error_code(error)
        .with_producer_id(NO_PRODUCER_ID.into())
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}

fn illegal(e: TransitError) -> i16 {
    match e {
        TransitError::Fenced => code(ResponseError::ProducerFenced),
        TransitError::Illegal(message) => {
            tracing::error!("transaction coordinator: {message}");
            code(ResponseError::UnknownServerError)
        }
    }
}

impl TxnCoordinator {
    /// A block of producer ids `[first, first + count)` from the controller.
    pub fn add_producer_ids(&mut self, first: i64, count: i64) {
        if count <= 0 || first < 0 {
            return;
        }
        let end = first.saturating_add(count);
        if self.ids.next >= self.ids.end {
            self.start_block(first, end);
        } else {
            self.ids.prefetched = Some((first, end));
        }
        self.ids.requested = false;
    }

    fn start_block(&mut self, first: i64, end: i64) {
        self.ids.next = first;
        self.ids.end = end;
        self.ids.prefetch_at = first + ((end - first) as f64 * PREFETCH_THRESHOLD) as i64;
    }

    fn request_block(&mut self, out: &mut Vec<Output>) {
        if self.ids.prefetched.is_none() && !self.ids.requested {
            self.ids.requested = true;
            out.push(Output::NeedProducerIds);
        }
    }

    /// `generateProducerId`: COORDINATOR_LOAD_IN_PROGRESS while no block is at hand.
    pub(super) fn generate_producer_id(&mut self, out: &mut Vec<Output>) -> Result<i64, i16> {
        if self.ids.next >= self.ids.end {
            match self.ids.prefetched.take() {
                Some((first, end)) => self.start_block(first, end),
                None => {
                    self.request_block(out);
                    return Err(code(ResponseError::CoordinatorLoadInProgress));
                }
            }
        }
        let id = self.ids.next;
        self.ids.next += 1;
        if id >= self.ids.prefetch_at {
            self.request_block(out);
        }
        Ok(id)
    }

    pub(super) fn init_producer_id(
        &mut self,
        id: RequestId,
        version: i16,
        r: &InitProducerIdRequest,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) {
        let respond = |out: &mut Vec<Output>, resp: InitProducerIdResponse| {
            out.push(Output::Respond(id, ResponseKind::InitProducerId(resp)))
        };
        let fail = |out: &mut Vec<Output>, error: ResponseError| {
            respond(out, init_error(code(error), version))
        };
        // KafkaApis: a producer id and epoch come together or not at all.
        let expected = match (r.producer_id.0, r.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return fail(out, ResponseError::InvalidRequest)
            }
            (pid, epoch) => Some((pid, epoch)),
        };
        let Some(txn_id) = r.transactional_id.as_ref().map(|t| t.0.to_string()) else {
            // An idempotent producer: a fresh producer id at epoch 0.
            match self.generate_producer_id(out) {
                Ok(pid) => respond(
                    out,
                    InitProducerIdResponse::default()
                        .with_producer_id(pid.into())
                        .with_producer_epoch(0),
                ),
                Err(error) => respond(out, init_error(error, version)),
            }
            return;
        };
        if txn_id.is_empty() {
            return fail(out, ResponseError::InvalidRequest);
        }
        if r.enable_2_pc {
            return fail(out, ResponseError::TransactionalIdAuthorizationFailed);
        }
        if r.keep_prepared_txn {
            return fail(out, ResponseError::UnsupportedVersion);
        }
        let timeout_ms = r.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return fail(out, ResponseError::InvalidTransactionTimeout);
        }
        match self.lookup(&txn_id) {
            Err(error) => return respond(out, init_error(error, version)),
            Ok(Some(_)) => {}
            Ok(None) => match self.generate_producer_id(out) {
                Ok(pid) => {
                    // As Kafka, the new id's metadata is cached before its first record
                    // commits: Empty, no epoch.
                    let meta = TxnMetadata::new(txn_id.clone(), pid, timeout_ms, now_ms);
                    self.txns.insert(txn_id.clone(), meta);
                }
                Err(error) => return respond(out, init_error(error, version)),
            },
        }
        match self.prepare_init_transit(&txn_id, timeout_ms, expected, now_ms, out) {
            Err(error) => respond(out, init_error(error, version)),
            Ok(transit) if transit.state == TxnState::PrepareEpochFence => {
                // An ongoing transaction: abort it under the bumped epoch; the producer
                // retries (CONCURRENT_TRANSACTIONS) until the abort completes.
                let level = self.config.transaction_version_level;
                self.end_transaction(
                    &txn_id,
                    transit.producer_id,
                    transit.producer_epoch,
                    TxnResult::Abort,
                    false,
                    level,
                    EndReply::Fence { id, version },
                    now_ms,
                    out,
                );
            }
            Ok(transit) => self.append(&txn_id, transit, Then::InitProducerId { id, version }, out),
        }
    }

    /// `prepareInitProducerIdTransit`.
    fn prepare_init_transit(
        &mut self,
        txn_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        out: &mut Vec<Output>,
    ) -> Result<super::super::metadata::TxnTransit, i16> {
        let Some(meta) = self.txns.get(txn_id) else {
            return Err(code(ResponseError::UnknownServerError));
        };
        if meta.pending.is_some() {
            return Err(code(ResponseError::ConcurrentTransactions));
        }
        let valid_producer_id = |(pid, epoch): (i64, i16)| {
            meta.producer_epoch == NO_PRODUCER_EPOCH
                || pid == meta.producer_id
                || (pid == meta.prev_producer_id && is_epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid_producer_id) {
            return Err(code(ResponseError::ProducerFenced));
        }
        match meta.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                Err(code(ResponseError::ConcurrentTransactions))
            }
            TxnState::CompleteAbort | TxnState::CompleteCommit | TxnState::Empty => {
                let rotate = meta.is_epoch_exhausted()
                    && expected.is_none_or(|(_, epoch)| epoch == meta.producer_epoch);
                if rotate {
                    let new_pid = self.generate_producer_id(out)?;
                    let meta = self
                        .txns
                        .get_mut(txn_id)
                        .ok_or(code(ResponseError::UnknownServerError))?;
                    meta.prepare_producer_id_rotation(
                        new_pid,
                        timeout_ms,
                        now_ms,
                        expected.is_some(),
                    )
                    .map_err(illegal)
                } else {
                    let meta = self
                        .txns
                        .get_mut(txn_id)
                        .ok_or(code(ResponseError::UnknownServerError))?;
                    meta.prepare_increment_producer_epoch(
                        timeout_ms,
                        expected.map(|(_, e)| e),
                        now_ms,
                    )
                    .map_err(illegal)
                }
            }
            TxnState::Ongoing => {
                let meta = self
                    .txns
                    .get_mut(txn_id)
                    .ok_or(code(ResponseError::UnknownServerError))?;
                meta.prepare_fence_producer_epoch().map_err(illegal)
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                self.internal_errors += 1;
                tracing::error!(
                    "Found transactionalId {txn_id} with state {}. This is illegal as we should never have transitioned to this state.",
                    meta.state.name()
                );
                Err(code(ResponseError::UnknownServerError))
            }
        }
    }
}
