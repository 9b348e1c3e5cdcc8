//! What the group coordinator asks of its shell: responses to send and records to append.

use kafka_protocol::messages::{ResponseKind, TxnOffsetCommitResponse};

use super::Record;

/// The shell's handle on one request, echoed back with its response.
pub type RequestId = u64;

/// What the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send this response (encoded by the shell at the version the request came with).
    Respond(RequestId, ResponseKind),
    /// Append `records` durably to __consumer_offsets partition `partition`, then send
    /// `on_success`; if the append fails send `on_failure` instead.
    Append {
        partition: i32,
        records: Vec<Record>,
        on_success: Vec<(RequestId, ResponseKind)>,
        on_failure: Vec<(RequestId, ResponseKind)>,
    },
    /// Append `records` to partition `partition` as one *transactional* batch of producer
    /// `producer_id` at `producer_epoch` (a TxnOffsetCommit: the partition's producer state and
    /// last stable offset track it until the producer's marker), then answer `on_success`. If
    /// the append fails with Kafka error `code` (mapped as Kafka's coordinator runtime maps
    /// write errors), answer `txn_offset_commit_failed(on_failure, code)` instead: a fenced
    /// producer learns it from the log's INVALID_PRODUCER_EPOCH, say. The records take effect
    /// (as pending offsets of the producer) only once committed.
    AppendTransactional {
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        records: Vec<Record>,
        on_success: (RequestId, ResponseKind),
        on_failure: (RequestId, TxnOffsetCommitResponse),
    },
    /// Write the transaction marker `completion` to partition `partition` among the shard's
    /// appends and answer `id` with its code once its fate is known; once committed the engine
    /// applies it (`replay_end_txn`).
    WriteMarker {
        partition: i32,
        id: RequestId,
        completion: super::request::TxnCompletion,
    },
}
