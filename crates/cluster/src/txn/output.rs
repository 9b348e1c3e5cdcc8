//! What the transaction coordinator asks of its shell.

use kafka_protocol::messages::ResponseKind;

use crate::group::{Record, RequestId};

use super::metadata::TopicPartition;

/// The shell's handle on one append, reported back through `on_committed` or
/// `on_append_failed`.
pub type AppendId = u64;

/// The outcome a transaction's markers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// Control records to write to partitions led by one broker: on the coordinator's own node
/// the shell appends COMMIT/ABORT control batches; elsewhere it becomes one `WriteTxnMarkers`
/// entry. The shell reports each partition done through `markers_written` (also when Kafka
/// gives up on it: the partition no longer exists, or its log refuses the marker format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    /// The partitions' leader (`-1`: the partitions exist but have no leader now; the shell
    /// retries when one is elected).
    pub leader: i32,
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The leader epoch of the coordinator's `__transaction_state` partition.
    pub coordinator_epoch: i32,
    pub result: TxnResult,
    /// The transaction version of the client (WriteTxnMarkers v2's `TransactionVersion`).
    pub transaction_version: i16,
    pub partitions: Vec<TopicPartition>,
}

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this response (encoded at the version the request came with).
    Respond(RequestId, ResponseKind),
    /// Append `records` to `__transaction_state` partition `partition` with acks=all, then
    /// report its fate by `id`.
    Append {
        id: AppendId,
        partition: i32,
        records: Vec<Record>,
    },
    /// Write transaction markers.
    WriteMarkers(MarkerWrite),
    /// The coordinator needs a block of producer ids (from the controller's `ProducerIds`
    /// record); the shell answers with `add_producer_ids`. Asked once until answered.
    NeedProducerIds,
}
