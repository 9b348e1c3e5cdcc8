//! The contract between a coordinator's sans-IO engine and the broker's coordinator runtime.
//!
//! A coordinator (groups, transactions) is split into shards, one per partition of its
//! internal topic (`__consumer_offsets`, `__transaction_state`); the leader of that partition
//! runs the shard. The runtime loads a shard by replaying the partition's log, feeds it
//! requests and clock ticks, appends the records it asks for through the replica layer, and
//! reports back which appends committed or failed. Work that is neither a response nor an
//! append of the shard's own partition (transaction markers, producer-id blocks) leaves the
//! shard as an `Effect`, which the runtime hands to its shell.

use kafka_protocol::messages::ResponseKind;
use runnel_protocol::batch::BatchHeader;

use crate::group::{ClientInfo, Record, RequestId};
use crate::MetadataImage;

/// The runtime's handle on one append, handed back with its fate (`on_committed`,
/// `on_append_failed`); the shard picks it (`0` when it does not care).
pub type AppendToken = u64;

/// How the records of an append are framed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppendBatch {
    /// One plain (non-transactional) batch of the records.
    #[default]
    Plain,
    /// One transactional batch of the records, of this producer: its records stay pending
    /// (not visible to read_committed, not applied by a coordinator replaying them) until a
    /// COMMIT or ABORT marker of the producer follows.
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// No records: a transaction marker (COMMIT or ABORT control batch) of this producer,
    /// written to the shard's partition among its appends (Kafka's `completeTransaction` on a
    /// group coordinator partition). Its records list is empty.
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        result: crate::txn::TxnResult,
        transaction_version: i16,
    },
}

/// An append a shard asks for.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The shard's own partition.
    pub partition: i32,
    /// Handed back with the append's fate.
    pub token: AppendToken,
    /// Not empty.
    pub records: Vec<Record>,
    pub batch: AppendBatch,
    /// Sent once the append committed (after `on_committed`).
    pub on_success: Vec<(RequestId, ResponseKind)>,
    /// Sent if the append failed (before `on_append_failed`).
    pub on_failure: Vec<(RequestId, ResponseKind)>,
}

/// What a shard asks of the runtime.
#[derive(Debug, Clone)]
pub enum ShardOutput<E> {
    /// Send this response (encoded by the shell at the version the request came with).
    Respond(RequestId, ResponseKind),
    /// Append records durably to the shard's partition.
    Append(AppendRequest),
    /// Something only the shell can do; the runtime hands it to the shell's effect hook.
    Effect(E),
}

/// One stored batch met while loading, before its records are replayed (control batches,
/// which have no records to replay, included).
#[derive(Debug, Clone, Copy)]
pub struct ReplayBatch<'a> {
    pub header: &'a BatchHeader,
    /// The whole stored batch, header included (checked: its CRC matched).
    pub bytes: &'a [u8],
}

/// One shard of a coordinator.
///
/// # Correctness
///
/// - `handle` and `tick` change nothing that a later request could observe as committed
///   before the records carrying it are reported through `on_committed`: state read by
///   requests (committed offsets, say) is applied only there, so a failed append leaves
///   nothing behind.
/// - Every request id passed to `handle` is answered exactly once: by a `Respond`, or by one
///   of an `Append`'s `on_success` / `on_failure` lists (the runtime sends the list that
///   matches the append's fate), possibly in a later call (a JoinGroup that waits for its
///   rebalance, an EndTxn that waits for its append).
/// - Records appended by the shard replay, on a fresh shard, into the same committed state
///   (`replay` is how a shard is loaded, on this broker after a restart or on another one
///   after leadership moved).
/// - After `tick(now_ms)`, `next_deadline_ms` is later than `now_ms` (or `None`): the runtime's
///   timer would otherwise spin.
pub trait CoordinatorShard: Send + 'static {
    /// The requests the shard answers.
    type Request: Send + 'static;
    /// What the shard asks of its shell besides responses and appends.
    type Effect: Send + 'static;

    /// Handles one request from `client` at `version`.
    fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        client: &ClientInfo,
        request: Self::Request,
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<Self::Effect>>;

    /// Runs every timer due at `now_ms`.
    fn tick(&mut self, now_ms: i64, image: &MetadataImage) -> Vec<ShardOutput<Self::Effect>>;

    /// When `tick` next has work, if ever.
    fn next_deadline_ms(&self) -> Option<i64>;

    /// Loading: a stored batch, before its records are replayed (`replay`). Shards whose
    /// state depends on transactional batches and markers read them here.
    fn replay_batch(&mut self, _batch: &ReplayBatch<'_>) {}

    /// Loading: one record of the shard's partition, in log order (`value` `None` for a
    /// tombstone). An error names a record this shard cannot read; the runtime logs and skips it.
    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String>;

    /// [`CoordinatorShard::replay`] with where the record sits: its log offset, and the
    /// producer id of its batch if that batch is transactional (-1 otherwise). What the runtime
    /// calls; shards that need neither keep the default.
    fn replay_at(
        &mut self,
        offset: i64,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let _ = (offset, producer_id);
        self.replay(key, value)
    }

    /// Loading is done: start sessions and timers from `now_ms`, and resume whatever the log
    /// left half done.
    fn finish_replay(
        &mut self,
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<Self::Effect>>;

    /// The records of the append `token` are committed, in log order.
    fn on_committed(
        &mut self,
        token: AppendToken,
        records: &[Record],
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<Self::Effect>>;

    /// [`CoordinatorShard::on_committed`] with the log offset of the append's first record
    /// (a marker's offset for `AppendBatch::Marker`). What the runtime calls; shards that do
    /// not track record offsets keep the default.
    fn on_committed_at(
        &mut self,
        token: AppendToken,
        base_offset: i64,
        records: &[Record],
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<Self::Effect>> {
        let _ = base_offset;
        self.on_committed(token, records, now_ms, image)
    }

    /// The append `token` failed with Kafka error `error` (its `on_failure` responses are
    /// already sent).
    fn on_append_failed(
        &mut self,
        token: AppendToken,
        error: i16,
        now_ms: i64,
    ) -> Vec<ShardOutput<Self::Effect>>;

    /// The answer every part of `request` gets when the shard cannot serve it (not loaded
    /// here, or failed), with Kafka error `code`.
    fn error_response(request: &Self::Request, version: i16, code: i16) -> ResponseKind;
}
