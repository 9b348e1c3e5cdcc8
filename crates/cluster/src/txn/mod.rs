//! Transactions: the transaction coordinator as a sans-IO state machine (KIP-98, KIP-447,
//! KIP-890), built as the group coordinator is.
//!
//! Requests, clock ticks, committed appends, written markers and producer-id blocks go in;
//! responses, `__transaction_state` records to append, marker writes and producer-id block
//! requests come out. State changes only when the shell reports an append committed, so
//! nothing a request did is visible before its record is durable, and replaying the
//! partition's log rebuilds the same state (then re-sends the markers of every transaction
//! left in PrepareCommit/PrepareAbort).
//!
//! - `state`: Kafka's `TransactionState` and the transaction versions.
//! - `metadata`: one transactional id's metadata and its prepared/completed transitions.
//! - `records`: Kafka's `__transaction_state` key/value schemas.
//! - `coordinator`: the engine: requests, timers, appends, markers, replay.
//! - `output`: what it asks of its shell.

pub mod coordinator;
pub mod metadata;
mod output;
pub mod records;
pub mod shard;
pub mod state;

#[cfg(test)]
mod tests;

pub use coordinator::{TxnCoordinator, TxnRequest};
pub use metadata::{TopicPartition, TxnMetadata, TxnTransit};
pub use output::{AppendId, MarkerWrite, Output, TxnResult};
pub use shard::TxnEffect;
pub use state::TxnState;

/// The `__transaction_state` partition that holds `transactional_id` (Kafka's `partitionFor`:
/// `Utils.abs(transactionalId.hashCode) % partitions`); its leader is the id's coordinator.
pub fn transaction_partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::offsets_partition_for(transactional_id, partitions)
}

/// Errors of the transaction coordinator. Client mistakes are answered with Kafka error codes
/// in responses; these are for bytes replayed from `__transaction_state`.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("corrupt __transaction_state record: {0}")]
    CorruptRecord(String),
}

/// What the coordinator may know of partitions: a read-only view of the metadata image.
pub trait PartitionView {
    /// The leader of `topic`-`partition`: `None` when the partition does not exist,
    /// `Some(-1)` when it exists without a leader right now.
    fn leader(&self, topic: &str, partition: i32) -> Option<i32>;
}

/// Transaction coordinator settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transactional.id.expiration.ms` (604800000, 7 days)
    pub transactional_id_expiration_ms: i64,
    /// `transaction.max.timeout.ms` (900000)
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000)
    pub abort_timed_out_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (3600000)
    pub remove_expired_interval_ms: i64,
    /// `transaction.state.log.num.partitions` (50)
    pub transaction_state_partitions: i32,
    /// `offsets.topic.num.partitions` (50): AddOffsetsToTxn adds the group's partition.
    pub offsets_topic_partitions: i32,
    /// The cluster's finalized `transaction.version`: the value version written and the
    /// version of aborts the coordinator starts itself (timeouts, fencing).
    pub transaction_version_level: i16,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transactional_id_expiration_ms: 604_800_000,
            transaction_max_timeout_ms: 900_000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            transaction_state_partitions: 50,
            offsets_topic_partitions: 50,
            transaction_version_level: state::version::TV_2,
        }
    }
}
