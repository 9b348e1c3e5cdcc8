//! The group coordinator: owns every group and their committed offsets, dispatches requests,
//! replays `__consumer_offsets`, and runs the timers. Sans-IO: requests and ticks in,
//! [`Output`]s out; the broker's shell owns the clock, the log and the sockets.
//!
//! This file holds the coordinator itself: routing of requests, replay of records, timers.
//! The requests live by concern: `membership` (join, sync, heartbeat, leave, KIP-848
//! heartbeat), `offset_requests` (commit, fetch, delete, retention), `admin` (describe, list,
//! delete groups).

mod admin;
mod membership;
mod migration;
mod offset_requests;
mod summary;
mod txn_offset_commit;

pub use summary::{GroupSummary, MemberSummary};

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::classic::{err, sb, ClassicGroup, ClassicState, Ctx, Pending};
use super::consumer::{is_consumer_group_record_key, ConsumerGroup};
use super::offsets::{ExpiryBase, OffsetStore};
pub use super::output::{Output, RequestId};
use super::records::{self, GroupMetadataValue, OffsetCommitValue, RecordKey};
use super::request::{coordinator_write_error_code, txn_offset_commit_failed};
pub use super::request::{marker_response, GroupRequest, TxnCompletion};
use super::txn_offsets::{PendingOffset, PendingTxnOffsets};
use super::{ClientInfo, GroupConfig, GroupError, MigrationPolicy, Record, TopicView};
use crate::txn::TxnResult;

/// Kafka's `RecordBatch.NO_PRODUCER_ID`: a batch outside any transaction.
pub const NO_PRODUCER_ID: i64 = -1;

/// Kafka's `offsets.retention.check.interval.ms` (10 minutes).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS: i64 = 600_000;

/// A group of either protocol.
#[derive(Debug)]
enum Group {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// Owns all groups and their offsets.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// Every group by id.
    groups: BTreeMap<String, Group>,
    /// Committed offsets of every group.
    offsets: OffsetStore,
    /// Offsets of transactions not ended yet, by producer.
    pending_txn: PendingTxnOffsets,
    /// The log offset the next record is taken to have when the caller gives none (`replay`
    /// and `on_committed` without offsets, as tests and the fuzzer drive the engine): one past
    /// the last record seen, so records stay in log order either way.
    next_record_offset: i64,
    /// When offsets retention runs next; `None` until replay finished.
    offsets_cleanup_deadline_ms: Option<i64>,
    /// Source of member-id UUIDs: injected so simulations are deterministic.
    new_uuid: Box<dyn FnMut() -> Uuid + Send>,
    /// Appends in flight whose fate the engine must learn by token (transactional batches of
    /// offsets, transaction markers); bounded by the requests in flight.
    token_waits: std::collections::HashMap<crate::shard::AppendToken, TokenWait>,
    /// The last append token handed out.
    last_token: crate::shard::AppendToken,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// The error every write gets when its append fails (Kafka maps most append failures to it).
fn write_failure() -> i16 {
    err(ResponseError::CoordinatorNotAvailable)
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            offsets: OffsetStore::default(),
            pending_txn: PendingTxnOffsets::default(),
            next_record_offset: 0,
            offsets_cleanup_deadline_ms: None,
            new_uuid: Box::new(Uuid::new_v4),
            token_waits: std::collections::HashMap::new(),
            last_token: 0,
        }
    }

    /// Replaces the UUID source used for generated member ids (deterministic tests and
    /// simulation).
    pub fn with_uuid_source(mut self, source: impl FnMut() -> Uuid + Send + 'static) -> Self {
        self.new_uuid = Box::new(source);
        self
    }

    /// Kafka's partitionFor: `Utils.abs(groupId.hashCode()) % offsets_topic_num_partitions`,
    /// with Java's `String.hashCode` over UTF-16 code units.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        self_partition(&self.config, group_id)
    }

    /// Every committed offset, for checks that compare coordinators.
    pub fn committed_offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Offsets of transactions that have not ended, for checks and tests.
    pub fn pending_txn_offsets(&self) -> &PendingTxnOffsets {
        &self.pending_txn
    }

    /// Every group's protocol type (`classic` or `consumer`) and state name as ListGroups
    /// reports them, for the admin endpoint's group counts.
    pub fn group_states(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.groups.values().map(|group| match group {
            Group::Classic(g) => ("classic", g.state.name()),
            Group::Consumer(g) => ("consumer", g.state_name()),
        })
    }

    /// Describes the classic group's state, for tests and the admin surface.
    pub fn classic_state(&self, group_id: &str) -> Option<(ClassicState, i32, usize)> {
        match self.groups.get(group_id)? {
            Group::Classic(g) => Some((g.state, g.generation_id, g.members.len())),
            Group::Consumer(_) => None,
        }
    }

    /// Startup: every record of __consumer_offsets in log order (tombstone = None), numbered
    /// one past the last record seen (see [`GroupCoordinator::replay_at`]).
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), GroupError> {
        self.replay_at(self.next_record_offset, NO_PRODUCER_ID, key, value)
    }

    /// Startup: one record of __consumer_offsets in log order, at log offset `offset`, from a
    /// batch of `producer_id` if that batch is transactional (`NO_PRODUCER_ID` otherwise).
    /// Kafka's `GroupCoordinatorShard.replay`: an offset record of a transactional batch is
    /// pending until its producer's marker (`replay_end_txn`).
    pub fn replay_at(
        &mut self,
        offset: i64,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), GroupError> {
        self.next_record_offset = offset.saturating_add(1);
        match records::decode_key(key)? {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let decoded = records::decode_offset_commit_value(v)?;
                    self.apply_offset_commit(
                        offset,
                        producer_id,
                        &group,
                        &topic,
                        partition,
                        decoded,
                    );
                }
                None => self.apply_offset_tombstone(&group, &topic, partition),
            },
            RecordKey::GroupMetadata { group } => match value {
                Some(v) => {
                    let decoded = records::decode_group_metadata_value(v)?;
                    let p = self.partition_for(&group);
                    self.groups.insert(
                        group.clone(),
                        Group::Classic(ClassicGroup::from_record(group, p, decoded)),
                    );
                }
                None => {
                    if matches!(self.groups.get(&group), Some(Group::Classic(_))) {
                        self.groups.remove(&group);
                    }
                }
            },
            RecordKey::Other(_) => {
                let Some(group_id) = is_consumer_group_record_key(key) else {
                    // Share and streams groups are not ours; skip them like an unknown type.
                    return Ok(());
                };
                let entry = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::Consumer(ConsumerGroup::new(group_id.clone())));
                if let Group::Classic(_) = entry {
                    *entry = Group::Consumer(ConsumerGroup::new(group_id));
                }
                if let Group::Consumer(g) = entry {
                    g.replay(key, value).map_err(GroupError::ConsumerGroup)?;
                }
            }
        }
        Ok(())
    }

    /// The shell appended `records` (from one [`Output::Append`]) and they are committed: the
    /// committed offsets they carry become visible now, never before. Group and member state
    /// is the state machines' own and already applied; only offset records are replayed here.
    ///
    /// The records are numbered one past the last record seen; the runtime, which knows where
    /// they landed, calls [`GroupCoordinator::on_committed_at`].
    pub fn on_committed(&mut self, records: &[Record]) {
        self.on_committed_at(self.next_record_offset, NO_PRODUCER_ID, records);
    }

    /// [`GroupCoordinator::on_committed`] for records written from log offset `base_offset`
    /// on, in a batch of `producer_id` if it is transactional (`NO_PRODUCER_ID` otherwise):
    /// a transactional batch's offsets become the producer's pending offsets.
    pub fn on_committed_at(&mut self, base_offset: i64, producer_id: i64, records: &[Record]) {
        for (i, (key, value)) in records.iter().enumerate() {
            let offset = base_offset.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            self.next_record_offset = offset.saturating_add(1);
            let Ok(RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            }) = records::decode_key(key)
            else {
                continue;
            };
            match value {
                Some(value) => match records::decode_offset_commit_value(value) {
                    Ok(decoded) => {
                        self.apply_offset_commit(
                            offset,
                            producer_id,
                            &group,
                            &topic,
                            partition,
                            decoded,
                        );
                    }
                    // We encoded it a moment ago: failing to read it back is our bug.
                    Err(e) => panic!("an offset record we wrote does not decode: {e}"),
                },
                None => self.apply_offset_tombstone(&group, &topic, partition),
            }
        }
    }

    /// A committed offset record (Kafka's `OffsetMetadataManager.replay`): a plain one is the
    /// group's offset at once; a transactional one is pending until its producer's marker.
    fn apply_offset_commit(
        &mut self,
        record_offset: i64,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
        value: OffsetCommitValue,
    ) {
        if !self.groups.contains_key(group) {
            // Offsets without a group record belong to a simple group (Kafka creates one on
            // replay too).
            let p = self.partition_for(group);
            self.groups.insert(
                group.to_owned(),
                Group::Classic(ClassicGroup::new(group.to_owned(), p)),
            );
        }
        if producer_id == NO_PRODUCER_ID {
            self.offsets
                .put(group, topic, partition, value, record_offset);
        } else {
            self.pending_txn.put(
                producer_id,
                group,
                topic,
                partition,
                PendingOffset {
                    value,
                    record_offset,
                },
            );
        }
    }

    /// A committed offset tombstone: the committed offset goes, and every pending
    /// transactional offset of the partition with it (Kafka's replay of a tombstone).
    fn apply_offset_tombstone(&mut self, group: &str, topic: &str, partition: i32) {
        self.offsets.remove(group, topic, partition);
        self.pending_txn.clear_partition(group, topic, partition);
    }

    /// A transaction marker for `producer_id` is committed in this partition's log (written
    /// for a `CompleteTransaction` request, or read while loading): Kafka's
    /// `replayEndTransactionMarker`. On COMMIT each of the producer's pending offsets becomes
    /// the committed one unless the committed one was written later in the log (a plain
    /// OffsetCommit, or another transaction's offset, after this record): Kafka keeps the most
    /// recent by record offset, so compaction cannot resurrect an older one. On ABORT they go.
    pub fn replay_end_txn(&mut self, producer_id: i64, result: TxnResult) {
        let pending = self.pending_txn.end(producer_id);
        if result == TxnResult::Abort {
            return;
        }
        for ((group, topic, partition), offset) in pending {
            let newer = self
                .offsets
                .record_offset(&group, &topic, partition)
                .is_some_and(|existing| existing >= offset.record_offset);
            if !newer {
                self.offsets.put(
                    &group,
                    &topic,
                    partition,
                    offset.value,
                    offset.record_offset,
                );
            }
        }
    }

    /// End of replay: start every loaded member's session and the retention timer.
    pub fn finish_replay(&mut self, now_ms: i64) {
        let mut out = Vec::new();
        let config = self.config.clone();
        let mut ctx = Ctx {
            now_ms,
            config: &config,
            out: &mut out,
            new_uuid: &mut *self.new_uuid,
        };
        for group in self.groups.values_mut() {
            if let Group::Classic(g) = group {
                g.on_loaded(&mut ctx);
            }
        }
        self.offsets_cleanup_deadline_ms = Some(now_ms + OFFSETS_RETENTION_CHECK_INTERVAL_MS);
    }

    /// [`GroupCoordinator::handle_from`] for a client whose id and host are unknown.
    pub fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        request: GroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Vec<Output> {
        self.handle_from(id, version, &ClientInfo::default(), request, now_ms, topics)
    }

    /// Handles one request. `client` feeds generated member ids (`clientId-UUID`) and
    /// DescribeGroups' client id/host, as Kafka takes them from the request context.
    pub fn handle_from(
        &mut self,
        id: RequestId,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if self.offsets_cleanup_deadline_ms.is_none() {
            self.offsets_cleanup_deadline_ms = Some(now_ms + OFFSETS_RETENTION_CHECK_INTERVAL_MS);
        }
        let pending = Pending { id, version };
        match request {
            GroupRequest::JoinGroup(r) => {
                self.join_group(&mut out, pending, client, &r, now_ms, topics);
            }
            GroupRequest::SyncGroup(r) => self.sync_group(&mut out, pending, &r, now_ms, topics),
            GroupRequest::Heartbeat(r) => {
                let code = self.heartbeat(&r, now_ms);
                let resp = HeartbeatResponse::default().with_error_code(code);
                out.push(Output::Respond(id, ResponseKind::Heartbeat(resp)));
            }
            GroupRequest::LeaveGroup(r) => {
                self.leave_group(&mut out, pending, &r, now_ms, topics);
            }
            GroupRequest::OffsetCommit(r) => {
                self.offset_commit(&mut out, pending, &r, now_ms, topics)
            }
            GroupRequest::OffsetFetch(r) => {
                let resp = self.offset_fetch(version, &r);
                out.push(Output::Respond(id, ResponseKind::OffsetFetch(resp)));
            }
            GroupRequest::OffsetDelete(r) => self.offset_delete(&mut out, id, &r, topics),
            GroupRequest::DescribeGroups(r) => {
                let resp = self.describe_groups(version, &r, topics);
                out.push(Output::Respond(id, ResponseKind::DescribeGroups(resp)));
            }
            GroupRequest::ListGroups(r) => {
                let resp = self.list_groups(version, &r);
                out.push(Output::Respond(id, ResponseKind::ListGroups(resp)));
            }
            GroupRequest::DeleteGroups(r) => self.delete_groups(&mut out, id, &r),
            GroupRequest::ConsumerGroupHeartbeat(r) => {
                self.consumer_heartbeat(&mut out, pending, client, &r, now_ms, topics);
            }
            GroupRequest::TxnOffsetCommit(r) => {
                self.txn_offset_commit(&mut out, pending, &r, now_ms, topics);
            }
            GroupRequest::CompleteTransaction(completion) => {
                // Kafka's `completeTransaction`: the marker is written among the shard's
                // appends and applied (`replay_end_txn`) once committed.
                out.push(Output::WriteMarker {
                    partition: completion.partition,
                    id,
                    completion,
                });
            }
            GroupRequest::ConsumerGroupDescribe(r) => {
                let resp = self.consumer_describe(version, &r, topics);
                out.push(Output::Respond(
                    id,
                    ResponseKind::ConsumerGroupDescribe(resp),
                ));
            }
        }
        out
    }

    /// Timers: session expiry, rebalance timeouts, initial rebalance delay, offsets retention.
    pub fn tick(&mut self, now_ms: i64, topics: &dyn TopicView) -> Vec<Output> {
        let mut out = Vec::new();
        let config = self.config.clone();
        let mut expired: Vec<(String, Vec<String>)> = Vec::new();
        for (group_id, group) in &mut self.groups {
            match group {
                Group::Classic(g) => {
                    let mut ctx = Ctx {
                        now_ms,
                        config: &config,
                        out: &mut out,
                        new_uuid: &mut *self.new_uuid,
                    };
                    g.tick(&mut ctx);
                }
                Group::Consumer(g) => {
                    if g.next_deadline_ms().is_some_and(|d| d <= now_ms) {
                        let members = g.expired_members(now_ms, &config);
                        if !members.is_empty() {
                            expired.push((group_id.clone(), members));
                        }
                    }
                }
            }
        }
        for (group_id, members) in expired {
            let records = self.fence_or_downgrade(&group_id, &members, now_ms, topics, &mut out);
            if !records.is_empty() {
                out.push(append_only(self_partition(&config, &group_id), records));
            }
        }
        if self
            .offsets_cleanup_deadline_ms
            .is_some_and(|d| d <= now_ms)
        {
            self.offsets_cleanup_deadline_ms = Some(now_ms + OFFSETS_RETENTION_CHECK_INTERVAL_MS);
            self.cleanup_group_metadata(&mut out, now_ms);
        }
        out
    }

    /// The earliest time `tick` has work to do.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .filter_map(|g| match g {
                Group::Classic(c) => c.next_deadline_ms(),
                Group::Consumer(c) => c.next_deadline_ms(),
            })
            .chain(self.offsets_cleanup_deadline_ms)
            .min()
    }
}

/// Kafka's `partitionFor` (see [`GroupCoordinator::partition_for`]).
fn self_partition(config: &GroupConfig, group_id: &str) -> i32 {
    super::offsets_partition_for(group_id, config.offsets_topic_num_partitions)
}

/// Whether a group consumes a topic (its offsets then never expire or get deleted).
type TopicFilter = Box<dyn Fn(&str) -> bool>;

/// Records with no response waiting on them.
fn append_only(partition: i32, records: Vec<Record>) -> Output {
    Output::Append {
        partition,
        records,
        on_success: Vec::new(),
        on_failure: Vec::new(),
    }
}

/// What an append of the group coordinator waits for, by its token: the answer a TxnOffsetCommit
/// gets when its transactional batch fails (with the append's error), or what a transaction
/// marker written for `CompleteTransaction` does once its fate is known.
#[derive(Debug)]
enum TokenWait {
    /// A TxnOffsetCommit's transactional batch of `producer_id`.
    TxnOffsets {
        producer_id: i64,
        id: RequestId,
        failure: TxnOffsetCommitResponse,
    },
    /// A transaction marker of `producer_id`.
    Marker {
        producer_id: i64,
        result: TxnResult,
        id: RequestId,
        partition: i32,
    },
}

impl GroupCoordinator {
    /// The runtime's form of the group coordinator's outputs: plain appends learn their fate
    /// from their `on_success` / `on_failure` lists (token 0); transactional batches and
    /// markers get a token, so their fate reaches `on_committed_at` / `on_append_failed`.
    fn shard_outputs(&mut self, outputs: Vec<Output>) -> Vec<crate::shard::ShardOutput<Never>> {
        use crate::shard::{AppendBatch, AppendRequest, ShardOutput};
        outputs
            .into_iter()
            .map(|output| match output {
                Output::Respond(id, response) => ShardOutput::Respond(id, response),
                Output::Append {
                    partition,
                    records,
                    on_success,
                    on_failure,
                } => ShardOutput::Append(AppendRequest {
                    partition,
                    token: 0,
                    records,
                    batch: AppendBatch::Plain,
                    on_success,
                    on_failure,
                }),
                Output::AppendTransactional {
                    partition,
                    producer_id,
                    producer_epoch,
                    records,
                    on_success,
                    on_failure: (id, failure),
                } => {
                    let token = self.next_token();
                    self.token_waits.insert(
                        token,
                        TokenWait::TxnOffsets {
                            producer_id,
                            id,
                            failure,
                        },
                    );
                    ShardOutput::Append(AppendRequest {
                        partition,
                        token,
                        records,
                        batch: AppendBatch::Transactional {
                            producer_id,
                            producer_epoch,
                        },
                        on_success: vec![on_success],
                        on_failure: Vec::new(),
                    })
                }
                Output::WriteMarker {
                    partition,
                    id,
                    completion,
                } => {
                    let token = self.next_token();
                    self.token_waits.insert(
                        token,
                        TokenWait::Marker {
                            producer_id: completion.producer_id,
                            result: completion.result,
                            id,
                            partition,
                        },
                    );
                    ShardOutput::Append(AppendRequest {
                        partition,
                        token,
                        records: Vec::new(),
                        batch: AppendBatch::Marker {
                            producer_id: completion.producer_id,
                            producer_epoch: completion.producer_epoch,
                            coordinator_epoch: completion.coordinator_epoch,
                            result: completion.result,
                            transaction_version: completion.transaction_version,
                        },
                        on_success: vec![(id, marker_response(partition, 0))],
                        on_failure: Vec::new(),
                    })
                }
            })
            .collect()
    }

    fn next_token(&mut self) -> crate::shard::AppendToken {
        self.last_token += 1;
        self.last_token
    }
}

/// The group coordinator asks its shell for nothing besides responses and appends.
#[derive(Debug, Clone, Copy)]
pub enum Never {}

/// The group coordinator is the shard engine of `__consumer_offsets`: one instance per
/// partition, holding the groups that hash to it.
impl crate::shard::CoordinatorShard for GroupCoordinator {
    type Request = GroupRequest;
    type Effect = Never;

    fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
        now_ms: i64,
        image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        let outputs = self.handle_from(id, version, client, request, now_ms, image);
        self.shard_outputs(outputs)
    }

    fn tick(
        &mut self,
        now_ms: i64,
        image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        let outputs = GroupCoordinator::tick(self, now_ms, image);
        self.shard_outputs(outputs)
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        GroupCoordinator::next_deadline_ms(self)
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        GroupCoordinator::replay(self, key, value).map_err(|e| e.to_string())
    }

    fn replay_at(
        &mut self,
        offset: i64,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        GroupCoordinator::replay_at(self, offset, producer_id, key, value)
            .map_err(|e| e.to_string())
    }

    /// Transaction markers, in log order with the records (Kafka's loader hands each
    /// control batch to `replayEndTransactionMarker`).
    fn replay_batch(&mut self, batch: &crate::shard::ReplayBatch<'_>) {
        if !batch.header.is_control() {
            return;
        }
        if let Some(result) = read_marker_result(batch.bytes) {
            GroupCoordinator::replay_end_txn(self, batch.header.producer_id, result);
        }
    }

    fn finish_replay(
        &mut self,
        now_ms: i64,
        _image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        GroupCoordinator::finish_replay(self, now_ms);
        Vec::new()
    }

    fn on_committed(
        &mut self,
        _token: crate::shard::AppendToken,
        records: &[Record],
        _now_ms: i64,
        _image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        GroupCoordinator::on_committed(self, records);
        Vec::new()
    }

    fn on_committed_at(
        &mut self,
        token: crate::shard::AppendToken,
        base_offset: i64,
        records: &[Record],
        _now_ms: i64,
        _image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        match self.token_waits.remove(&token) {
            None => GroupCoordinator::on_committed_at(self, base_offset, NO_PRODUCER_ID, records),
            Some(TokenWait::TxnOffsets { producer_id, .. }) => {
                GroupCoordinator::on_committed_at(self, base_offset, producer_id, records)
            }
            Some(TokenWait::Marker {
                producer_id,
                result,
                ..
            }) => GroupCoordinator::replay_end_txn(self, producer_id, result),
        }
        Vec::new()
    }

    fn on_append_failed(
        &mut self,
        token: crate::shard::AppendToken,
        error: i16,
        _now_ms: i64,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        use crate::shard::ShardOutput;
        match self.token_waits.remove(&token) {
            None => Vec::new(),
            Some(TokenWait::TxnOffsets { id, failure, .. }) => vec![ShardOutput::Respond(
                id,
                ResponseKind::TxnOffsetCommit(txn_offset_commit_failed(
                    failure,
                    coordinator_write_error_code(error),
                )),
            )],
            Some(TokenWait::Marker { id, partition, .. }) => {
                vec![ShardOutput::Respond(id, marker_response(partition, error))]
            }
        }
    }

    fn error_response(request: &GroupRequest, version: i16, code: i16) -> ResponseKind {
        request.error_response(version, code)
    }
}

/// Which way the transaction marker in a stored control batch ended its transaction; `None`
/// for a control batch that is no readable marker (Kafka's `EndTransactionMarker.deserialize`
/// on its first record: key version >= 0 and type 0 ABORT or 1 COMMIT, value at least 6 bytes
/// with a version >= 0).
fn read_marker_result(batch: &[u8]) -> Option<TxnResult> {
    let records = runnel_protocol::batch::BatchRecords::open(
        batch,
        runnel_protocol::compression::DecompressLimits::for_max_message_bytes(MARKER_BYTES_MAX),
    )
    .ok()?;
    let mut first: Option<(Vec<u8>, Vec<u8>)> = None;
    records
        .for_each(|r| {
            if first.is_none() {
                if let (Some(k), Some(v)) = (r.key, r.value) {
                    first = Some((k.to_vec(), v.to_vec()));
                }
            }
        })
        .ok()?;
    let (key, value) = first?;
    let [kv0, kv1, t0, t1, ..] = key[..] else {
        return None;
    };
    let [vv0, vv1, _, _, _, _, ..] = value[..] else {
        return None;
    };
    if i16::from_be_bytes([kv0, kv1]) < 0 || i16::from_be_bytes([vv0, vv1]) < 0 {
        return None;
    }
    match i16::from_be_bytes([t0, t1]) {
        0 => Some(TxnResult::Abort),
        1 => Some(TxnResult::Commit),
        _ => None,
    }
}

/// A marker batch is tiny; reading one never needs more than this.
const MARKER_BYTES_MAX: usize = 4096;
