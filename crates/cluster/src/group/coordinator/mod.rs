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
pub use super::request::GroupRequest;
use super::{ClientInfo, GroupConfig, GroupError, MigrationPolicy, Record, TopicView};

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
    /// When offsets retention runs next; `None` until replay finished.
    offsets_cleanup_deadline_ms: Option<i64>,
    /// Source of member-id UUIDs: injected so simulations are deterministic.
    new_uuid: Box<dyn FnMut() -> Uuid + Send>,
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
            offsets_cleanup_deadline_ms: None,
            new_uuid: Box::new(Uuid::new_v4),
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

    /// Startup: every record of __consumer_offsets in log order (tombstone = None).
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), GroupError> {
        match records::decode_key(key)? {
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let decoded = records::decode_offset_commit_value(v)?;
                    if !self.groups.contains_key(&group) {
                        // Offsets without a group record belong to a simple group (Kafka
                        // creates one on replay too).
                        let p = self.partition_for(&group);
                        self.groups.insert(
                            group.clone(),
                            Group::Classic(ClassicGroup::new(group.clone(), p)),
                        );
                    }
                    self.offsets.put(&group, &topic, partition, decoded);
                }
                None => self.offsets.remove(&group, &topic, partition),
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
    pub fn on_committed(&mut self, records: &[Record]) {
        for (key, value) in records {
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
                    Ok(decoded) => self.offsets.put(&group, &topic, partition, decoded),
                    // We encoded it a moment ago: failing to read it back is our bug.
                    Err(e) => panic!("an offset record we wrote does not decode: {e}"),
                },
                None => self.offsets.remove(&group, &topic, partition),
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

/// The runtime's form of the group coordinator's outputs: appends are plain batches whose
/// fate the group coordinator learns from its `on_success` / `on_failure` lists (no token).
fn shard_outputs(outputs: Vec<Output>) -> Vec<crate::shard::ShardOutput<Never>> {
    outputs
        .into_iter()
        .map(|output| match output {
            Output::Respond(id, response) => crate::shard::ShardOutput::Respond(id, response),
            Output::Append {
                partition,
                records,
                on_success,
                on_failure,
            } => crate::shard::ShardOutput::Append(crate::shard::AppendRequest {
                partition,
                token: 0,
                records,
                batch: crate::shard::AppendBatch::Plain,
                on_success,
                on_failure,
            }),
        })
        .collect()
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
        shard_outputs(self.handle_from(id, version, client, request, now_ms, image))
    }

    fn tick(
        &mut self,
        now_ms: i64,
        image: &crate::MetadataImage,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        shard_outputs(GroupCoordinator::tick(self, now_ms, image))
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        GroupCoordinator::next_deadline_ms(self)
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        GroupCoordinator::replay(self, key, value).map_err(|e| e.to_string())
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

    fn on_append_failed(
        &mut self,
        _token: crate::shard::AppendToken,
        _error: i16,
        _now_ms: i64,
    ) -> Vec<crate::shard::ShardOutput<Never>> {
        Vec::new()
    }

    fn error_response(request: &GroupRequest, version: i16, code: i16) -> ResponseKind {
        request.error_response(version, code)
    }
}
