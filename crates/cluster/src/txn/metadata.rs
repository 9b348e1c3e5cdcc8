//! One transactional id's metadata and its transitions, as Kafka's `TransactionMetadata`:
//! a transition is first *prepared* (a [`TxnTransit`], the state to write, and a pending
//! state that refuses concurrent transitions), then *completed* once its record committed,
//! after the same checks Kafka's `completeTransitionTo` makes.

use std::collections::BTreeSet;

use super::state::{version, TxnState};

/// `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A topic partition of a transaction, ordered by topic then partition.
pub type TopicPartition = (String, i32);

/// Kafka's `isEpochExhausted`: the epoch cannot be bumped again (one value is kept for the
/// bump of a TV2 commit or abort).
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What a transition writes (Kafka's `TxnTransitMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransit {
    pub producer_id: i64,
    pub prev_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// Kept in memory only: no record version carries it.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub client_version: i16,
}

/// Why a transition cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitError {
    /// The producer's epoch is neither the current nor the last one (PRODUCER_FENCED).
    Fenced,
    /// A transition Kafka refuses with an `IllegalStateException` or
    /// `IllegalArgumentException` (the client sees UNKNOWN_SERVER_ERROR).
    Illegal(String),
}

/// The metadata of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (an exhausted epoch): a retry from it is not
    /// a zombie.
    pub prev_producer_id: i64,
    /// The producer id a TV2 completion moves to when the epoch is exhausted.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried InitProducerId or EndTxn is recognised.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transaction version the client speaks (0 until it adds partitions).
    pub client_version: i16,
    /// The state a prepared transition moves to once its record commits.
    pub pending: Option<TxnState>,
}

/// The fields a transition changes, defaulted from the current metadata (Kafka's
/// `TransitionData`).
struct Data {
    state: TxnState,
    producer_id: i64,
    next_producer_id: i64,
    producer_epoch: i16,
    last_producer_epoch: i16,
    timeout_ms: i32,
    partitions: BTreeSet<TopicPartition>,
    start_ms: i64,
    last_update_ms: i64,
    client_version: i16,
}

impl TxnMetadata {
    /// A transactional id seen for the first time: Empty, no epoch yet.
    pub fn new(transactional_id: String, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id,
            prev_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: version::TV_0,
            pending: None,
        }
    }

    /// The metadata a committed record holds (Kafka's loader leaves the last epoch unknown).
    pub fn from_transit(transactional_id: String, t: &TxnTransit) -> Self {
        TxnMetadata {
            transactional_id,
            producer_id: t.producer_id,
            prev_producer_id: t.prev_producer_id,
            next_producer_id: t.next_producer_id,
            producer_epoch: t.producer_epoch,
            last_producer_epoch: t.last_producer_epoch,
            timeout_ms: t.timeout_ms,
            state: t.state,
            partitions: t.partitions.clone(),
            start_ms: t.start_ms,
            last_update_ms: t.last_update_ms,
            client_version: t.client_version,
            pending: None,
        }
    }

    fn data(&self, state: TxnState) -> Data {
        Data {
            state,
            producer_id: self.producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            partitions: self.partitions.clone(),
            start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
            client_version: self.client_version,
        }
    }

    pub fn is_epoch_exhausted(&self) -> bool {
        is_epoch_exhausted(self.producer_epoch)
    }

    /// Ongoing or being prepared: a producer id rotation must wait.
    fn has_pending_transaction(&self) -> bool {
        matches!(
            self.state,
            TxnState::Ongoing | TxnState::PrepareAbort | TxnState::PrepareCommit
        )
    }

    /// `prepareFenceProducerEpoch`: an ongoing transaction is to be aborted under a bumped
    /// epoch (InitProducerId from a new producer, or the transaction timed out).
    pub fn prepare_fence_producer_epoch(&mut self) -> Result<TxnTransit, TransitError> {
        let mut data = self.data(TxnState::PrepareEpochFence);
        if self.producer_epoch != i16::MAX {
            data.producer_epoch = self.producer_epoch + 1;
        }
        self.prepare(data)
    }

    /// `prepareIncrementProducerEpoch`: InitProducerId of an idle transactional id.
    pub fn prepare_increment_producer_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<TxnTransit, TransitError> {
        if self.is_epoch_exhausted() {
            return Err(TransitError::Illegal(format!(
                "Cannot allocate any more producer epochs for producerId {}",
                self.producer_id
            )));
        }
        let mut data = self.data(TxnState::Empty);
        let bumped = self.producer_epoch + 1;
        match expected_epoch {
            None => {
                data.producer_epoch = bumped;
                data.last_producer_epoch = NO_PRODUCER_EPOCH;
            }
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                data.producer_epoch = bumped;
                data.last_producer_epoch = self.producer_epoch;
            }
            Some(e) if e == self.last_producer_epoch => {
                // A retry of a call that succeeded: the same epoch again.
            }
            Some(_) => return Err(TransitError::Fenced),
        }
        data.timeout_ms = timeout_ms;
        data.partitions = BTreeSet::new();
        data.start_ms = -1;
        data.last_update_ms = now_ms;
        self.prepare(data)
    }

    /// `prepareProducerIdRotation`: the epoch is exhausted; continue under a new producer id.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Result<TxnTransit, TransitError> {
        if self.has_pending_transaction() {
            return Err(TransitError::Illegal(
                "Cannot rotate producer ids while a transaction is still pending".into(),
            ));
        }
        let mut data = self.data(TxnState::Empty);
        data.producer_id = new_producer_id;
        data.producer_epoch = 0;
        data.last_producer_epoch = if record_last_epoch {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        data.timeout_ms = timeout_ms;
        data.partitions = BTreeSet::new();
        data.start_ms = -1;
        data.last_update_ms = now_ms;
        self.prepare(data)
    }

    /// `prepareAddPartitions`: the transaction (re)starts or grows.
    pub fn prepare_add_partitions(
        &mut self,
        added: &BTreeSet<TopicPartition>,
        now_ms: i64,
        client_version: i16,
    ) -> Result<TxnTransit, TransitError> {
        let mut data = self.data(TxnState::Ongoing);
        if matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit
        ) {
            data.start_ms = now_ms;
        }
        data.partitions.extend(added.iter().cloned());
        data.last_update_ms = now_ms;
        data.client_version = client_version;
        self.prepare(data)
    }

    /// `prepareAbortOrCommit`: EndTxn (or a fence's abort) writes PrepareCommit/PrepareAbort;
    /// under TV2 with the per-transaction epoch bump (KIP-890).
    pub fn prepare_abort_or_commit(
        &mut self,
        state: TxnState,
        client_version: i16,
        next_producer_id: i64,
        now_ms: i64,
        no_partition_added: bool,
    ) -> Result<TxnTransit, TransitError> {
        let mut data = self.data(state);
        if version::supports_epoch_bump(client_version) {
            // At i16::MAX only an abort goes through, without a bump, so a broken state can
            // recover.
            if !(self.producer_epoch == i16::MAX && state == TxnState::PrepareAbort) {
                data.producer_epoch = self.producer_epoch.wrapping_add(1);
            }
            data.last_producer_epoch = self.producer_epoch;
        }
        data.start_ms = if no_partition_added {
            now_ms
        } else {
            self.start_ms
        };
        data.next_producer_id = next_producer_id;
        data.last_update_ms = now_ms;
        data.client_version = client_version;
        self.prepare(data)
    }

    /// `prepareComplete`: every marker is written; CompleteCommit/CompleteAbort (under TV2
    /// with an exhausted epoch, moving to the next producer id at epoch 0).
    pub fn prepare_complete(&mut self, now_ms: i64) -> Result<TxnTransit, TransitError> {
        let state = if self.state == TxnState::PrepareCommit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        let mut data = self.data(state);
        if version::supports_epoch_bump(self.client_version)
            && self.next_producer_id != NO_PRODUCER_ID
        {
            data.producer_id = self.next_producer_id;
            data.producer_epoch = 0;
        }
        data.next_producer_id = NO_PRODUCER_ID;
        data.partitions = BTreeSet::new();
        data.last_update_ms = now_ms;
        self.prepare(data)
    }

    /// `prepareDead`: the transactional id expires.
    pub fn prepare_dead(&mut self) -> Result<TxnTransit, TransitError> {
        let mut data = self.data(TxnState::Dead);
        data.partitions = BTreeSet::new();
        self.prepare(data)
    }

    /// `prepareTransitionTo`.
    fn prepare(&mut self, data: Data) -> Result<TxnTransit, TransitError> {
        if let Some(pending) = self.pending {
            return Err(TransitError::Illegal(format!(
                "Preparing transaction state transition to {} while it already a pending state {}",
                data.state.name(),
                pending.name()
            )));
        }
        if data.producer_id < 0 {
            return Err(TransitError::Illegal(format!(
                "Illegal new producer id {}",
                data.producer_id
            )));
        }
        if data.state != TxnState::Dead && data.producer_epoch < 0 {
            return Err(TransitError::Illegal(format!(
                "Illegal new producer epoch {}",
                data.producer_epoch
            )));
        }
        if !data.state.valid_previous().contains(&self.state) {
            return Err(TransitError::Illegal(format!(
                "Preparing transaction state transition to {} failed since the target state {} is not a valid previous state of the current state {}",
                data.state.name(),
                data.state.name(),
                self.state.name()
            )));
        }
        self.pending = Some(data.state);
        Ok(TxnTransit {
            producer_id: data.producer_id,
            prev_producer_id: self.producer_id,
            next_producer_id: data.next_producer_id,
            producer_epoch: data.producer_epoch,
            last_producer_epoch: data.last_producer_epoch,
            timeout_ms: data.timeout_ms,
            state: data.state,
            partitions: data.partitions,
            start_ms: data.start_ms,
            last_update_ms: data.last_update_ms,
            client_version: data.client_version,
        })
    }

    /// `completeTransitionTo`: the record of `t` committed; check it is the transition that
    /// was prepared and apply it. An error here is a coordinator bug (Kafka logs it as fatal).
    pub fn complete_transition(&mut self, t: &TxnTransit) -> Result<(), String> {
        let to = self.pending.ok_or_else(|| {
            format!(
                "TransactionalId {} completing transaction state transition while it does not have a pending state",
                self.transactional_id
            )
        })?;
        let failure = || {
            format!(
                "TransactionalId {} failed transition to state {t:?} due to unexpected metadata",
                self.transactional_id
            )
        };
        if to != t.state {
            return Err(failure());
        }
        let valid = match to {
            TxnState::Empty => {
                (self.producer_epoch == t.producer_epoch || self.valid_epoch_bump(t))
                    && t.partitions.is_empty()
                    && t.start_ms == -1
            }
            TxnState::Ongoing => {
                self.valid_producer_epoch(t)
                    && t.partitions.is_superset(&self.partitions)
                    && self.timeout_ms == t.timeout_ms
            }
            TxnState::PrepareAbort | TxnState::PrepareCommit => {
                let allowed_empty_abort = to == TxnState::PrepareAbort
                    && version::supports_epoch_bump(t.client_version)
                    && matches!(
                        self.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    );
                self.valid_producer_epoch(t)
                    && self.partitions == t.partitions
                    && self.timeout_ms == t.timeout_ms
                    && (self.start_ms == t.start_ms || allowed_empty_abort)
            }
            TxnState::CompleteAbort | TxnState::CompleteCommit => {
                self.valid_producer_epoch(t) && self.timeout_ms == t.timeout_ms && t.start_ms != -1
            }
            TxnState::PrepareEpochFence => false,
            TxnState::Dead => {
                return Err(format!(
                    "TransactionalId {} is trying to complete a transition to Dead",
                    self.transactional_id
                ))
            }
        };
        if !valid {
            return Err(failure());
        }
        self.producer_id = t.producer_id;
        self.prev_producer_id = t.prev_producer_id;
        self.next_producer_id = t.next_producer_id;
        self.producer_epoch = t.producer_epoch;
        self.last_producer_epoch = t.last_producer_epoch;
        self.timeout_ms = t.timeout_ms;
        self.partitions = t.partitions.clone();
        self.start_ms = t.start_ms;
        self.last_update_ms = t.last_update_ms;
        self.client_version = t.client_version;
        self.pending = None;
        self.state = to;
        Ok(())
    }

    fn valid_producer_epoch(&self, t: &TxnTransit) -> bool {
        let v2 = version::supports_epoch_bump(t.client_version);
        if v2
            && matches!(t.state, TxnState::CompleteCommit | TxnState::CompleteAbort)
            && t.producer_epoch == 0
        {
            return t.last_producer_epoch == self.last_producer_epoch
                && t.prev_producer_id == self.producer_id;
        }
        if v2 && matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return t.last_producer_epoch == self.producer_epoch
                && t.producer_id == self.producer_id;
        }
        t.producer_epoch == self.producer_epoch && t.producer_id == self.producer_id
    }

    fn valid_epoch_bump(&self, t: &TxnTransit) -> bool {
        t.producer_epoch == self.producer_epoch.wrapping_add(1)
            || (t.producer_epoch == 0 && t.producer_id != self.producer_id)
    }
}
