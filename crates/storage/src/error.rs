//! The storage crate's one error enum; the broker maps it to Kafka error codes in one place.

use runnel_protocol::batch::BatchError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk said no. After a failed write the log is poisoned (see `Poisoned`).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The appended bytes broke a batch rule (CORRUPT_MESSAGE, INVALID_RECORD, ...).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// INVALID_RECORD for particular records of a batch (Kafka's `RecordValidationException`):
    /// the whole append is refused, and the response lists each record's index and reason, with
    /// the log start offset (as for `InvalidTimestamp`).
    #[error("{message}")]
    InvalidRecords {
        message: String,
        record_errors: Vec<(i32, String)>,
        log_start_offset: i64,
    },
    /// OFFSET_OUT_OF_RANGE: the fetch offset is outside `[log_start, leo]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// INVALID_TIMESTAMP: records outside `message.timestamp.before/after.max.ms`, or a
    /// LogAppendTime batch from a producer; each entry is Kafka's `RecordError` (the record's
    /// index in its batch and why), returned in the produce response's `record_errors`, with
    /// the log start offset (Kafka answers it for record errors, -1 for other failures).
    #[error("One or more records have been rejected due to invalid timestamp")]
    InvalidTimestamp {
        record_errors: Vec<(i32, String)>,
        log_start_offset: i64,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: an idempotent batch skipped or repeated sequences.
    #[error("out of order sequence for producer {producer_id}: got {first_sequence}, last was {last_sequence}")]
    OutOfOrderSequence {
        producer_id: i64,
        first_sequence: i32,
        last_sequence: i32,
    },
    /// INVALID_PRODUCER_EPOCH: the batch's producer epoch is older than the one we know.
    #[error(
        "producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// INVALID_TXN_STATE: a producer with a transaction open on this partition wrote a
    /// non-transactional batch (Kafka's `ProducerAppendInfo.appendDataBatch`).
    #[error("{0}")]
    InvalidTxnState(String),
    /// TRANSACTION_COORDINATOR_FENCED: a marker from a coordinator older than the one that
    /// wrote this producer's last marker.
    #[error("Invalid coordinator epoch for producerId {producer_id}: {coordinator_epoch} (zombie), {current_coordinator_epoch} (current)")]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
    /// `partition.metadata` names another topic id: this directory belongs to a deleted or
    /// different topic of the same name.
    #[error("partition.metadata holds a different topic id")]
    TopicIdMismatch,
    /// On-disk bytes that cannot be recovered automatically.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// A follower append whose batches do not continue the log (Kafka's
    /// `UnexpectedAppendOffsetException` / "Out of order offsets"): a batch starts at or below
    /// the offset before it. Nothing was written.
    #[error("batch at offset {first_offset} does not continue the log at {log_end_offset}")]
    UnexpectedAppendOffset {
        first_offset: i64,
        log_end_offset: i64,
    },
    /// NOT_LEADER_OR_FOLLOWER: the log's owner no longer leads the partition. Raised by the
    /// owner, which checks leadership under the log lock before each append, so nothing lands
    /// after a leadership change was applied (a reassignment's fence relies on it).
    #[error("this broker is not the leader of the partition")]
    NotLeaderOrFollower,
    /// A write or fsync failed earlier; the on-disk state is unknown, so the log refuses further
    /// writes and reads instead of guessing (reopen to recover).
    #[error("log is poisoned by an earlier i/o failure")]
    Poisoned,
    /// A read overlapped a truncation of the log, so what it read may come from files the
    /// truncation was changing; it must be repeated on a new snapshot
    /// (`LogReader::with_snapshot` does).
    #[error("the log was truncated during the read")]
    SnapshotStale,
}
