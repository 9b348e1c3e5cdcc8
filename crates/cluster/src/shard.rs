//! The contract between a coordinator's sans-IO engine and the broker's coordinator runtime.
//!
//! A coordinator (groups today, transactions next) is split into shards, one per partition of
//! its internal topic (`__consumer_offsets`, `__transaction_state`); the leader of that
//! partition runs the shard. The runtime loads a shard by replaying the partition's log, feeds
//! it requests and clock ticks, appends the records it asks for through the replica layer, and
//! reports back which appends committed.

use kafka_protocol::messages::ResponseKind;

use crate::group::{ClientInfo, Output, Record, RequestId, TopicView};

/// One shard of a coordinator.
///
/// # Correctness
///
/// - `handle` and `tick` change nothing that a later request could observe as committed
///   before the records carrying it are reported through `on_committed`: state read by
///   requests (committed offsets, say) is applied only there, so a failed append leaves
///   nothing behind.
/// - Every request id passed to `handle` is answered exactly once: by an `Output::Respond`, or
///   by one of an `Output::Append`'s `on_success` / `on_failure` lists (the runtime sends the
///   list that matches the append's fate), possibly in a later call (a JoinGroup that waits
///   for its rebalance).
/// - Records appended by the shard replay, on a fresh shard, into the same committed state
///   (`replay` is how a shard is loaded, on this broker after a restart or on another one
///   after leadership moved).
/// - After `tick(now_ms)`, `next_deadline_ms` is later than `now_ms` (or `None`): the runtime's
///   timer would otherwise spin.
pub trait CoordinatorShard: Send + 'static {
    /// The requests the shard answers.
    type Request: Send + 'static;

    /// Handles one request from `client` at `version`.
    fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        client: &ClientInfo,
        request: Self::Request,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Vec<Output>;

    /// Runs every timer due at `now_ms`.
    fn tick(&mut self, now_ms: i64, topics: &dyn TopicView) -> Vec<Output>;

    /// When `tick` next has work, if ever.
    fn next_deadline_ms(&self) -> Option<i64>;

    /// Loading: one record of the shard's partition, in log order (`value` `None` for a
    /// tombstone). An error names a record this shard cannot read; the runtime logs and skips it.
    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String>;

    /// Loading is done: start sessions and timers from `now_ms`.
    fn finish_replay(&mut self, now_ms: i64);

    /// The records of one `Output::Append` are committed, in log order.
    fn on_committed(&mut self, records: &[Record]);

    /// The answer every part of `request` gets when the shard cannot serve it (not loaded
    /// here, or failed), with Kafka error `code`.
    fn error_response(request: &Self::Request, version: i16, code: i16) -> ResponseKind;
}
