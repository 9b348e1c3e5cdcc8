//! The group coordinator: owns every group and their committed offsets, dispatches requests,
//! replays `__consumer_offsets`, and runs the timers. Sans-IO: requests and ticks in,
//! [`Output`]s out; the broker's shell owns the clock, the log and the sockets.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::classic::{err, sb, ClassicGroup, ClassicState, Ctx, Pending};
use super::modern::{is_consumer_group_record_key, ConsumerGroup};
use super::offsets::{ExpiryBase, OffsetStore};
pub use super::output::{Output, RequestId};
use super::records::{self, GroupMetadataValue, OffsetCommitValue, RecordKey};
pub use super::request::GroupRequest;
use super::{ClientInfo, GroupConfig, GroupError, Record, TopicView};

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
            GroupRequest::JoinGroup(r) => self.join_group(&mut out, pending, client, &r, now_ms),
            GroupRequest::SyncGroup(r) => self.sync_group(&mut out, pending, &r, now_ms),
            GroupRequest::Heartbeat(r) => {
                let code = self.heartbeat(&r, now_ms);
                let resp = HeartbeatResponse::default().with_error_code(code);
                out.push(Output::Respond(id, ResponseKind::Heartbeat(resp)));
            }
            GroupRequest::LeaveGroup(r) => self.leave_group(&mut out, pending, &r, now_ms),
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
                        let records = g.tick(now_ms, topics, &config);
                        if !records.is_empty() {
                            out.push(append_only(self_partition(&config, group_id), records));
                        }
                    }
                }
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

    // -----------------------------------------------------------------------------------------
    // Classic protocol

    fn ctx<'a>(
        config: &'a GroupConfig,
        out: &'a mut Vec<Output>,
        new_uuid: &'a mut (dyn FnMut() -> Uuid + Send),
        now_ms: i64,
    ) -> Ctx<'a> {
        Ctx {
            now_ms,
            config,
            out,
            new_uuid,
        }
    }

    fn join_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        client: &ClientInfo,
        r: &JoinGroupRequest,
        now_ms: i64,
    ) {
        let reply = |out: &mut Vec<Output>, code: ResponseError, member_id: &str| {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(err(code))
                .with_member_id(sb(member_id));
            if pending.version < 7 {
                resp.protocol_name = Some(sb(""));
            }
            out.push(Output::Respond(pending.id, ResponseKind::JoinGroup(resp)));
        };
        let group_id = r.group_id.as_str();
        if group_id.is_empty() {
            return reply(out, ResponseError::InvalidGroupId, r.member_id.as_str());
        }
        if r.session_timeout_ms < self.config.group_min_session_timeout_ms
            || r.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            return reply(
                out,
                ResponseError::InvalidSessionTimeout,
                r.member_id.as_str(),
            );
        }
        let partition = self.partition_for(group_id);
        match self.groups.get(group_id) {
            Some(Group::Consumer(g)) if !g.is_empty() => {
                // Kafka 4.1 lets classic members join a consumer group (online migration);
                // that path is not implemented here, so the join is refused as Kafka does
                // for a protocol it cannot serve.
                return reply(out, ResponseError::InconsistentGroupProtocol, "");
            }
            Some(Group::Consumer(g)) => {
                // An empty consumer group gives way to the classic group (Kafka's
                // maybeDeleteEmptyConsumerGroup).
                let tombstones = g.tombstones();
                self.groups.remove(group_id);
                if !tombstones.is_empty() {
                    out.push(append_only(partition, tombstones));
                }
            }
            _ => {}
        }
        let is_new = !self.groups.contains_key(group_id);
        if is_new && !r.member_id.is_empty() {
            return reply(out, ResponseError::UnknownMemberId, r.member_id.as_str());
        }
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::Classic(ClassicGroup::new(group_id.to_string(), partition)));
        let Group::Classic(group) = group else {
            unreachable!("consumer groups were handled above");
        };
        let before = out.len();
        let mut ctx = Self::ctx(&self.config, out, &mut *self.new_uuid, now_ms);
        group.join(&mut ctx, pending, client, r);
        let appended = out[before..]
            .iter()
            .any(|o| matches!(o, Output::Append { .. }));
        if is_new && !appended {
            // Kafka persists a newly created group at once (newEmptyGroupMetadataRecord).
            let value = GroupMetadataValue {
                protocol_type: String::new(),
                generation: 0,
                protocol: None,
                leader: None,
                current_state_timestamp_ms: group.state_timestamp_ms.unwrap_or(-1),
                members: Vec::new(),
            };
            out.push(append_only(
                partition,
                vec![records::group_metadata_record(group_id, &value)],
            ));
        }
    }

    fn classic_mut(&mut self, group_id: &str) -> Option<&mut ClassicGroup> {
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(g)) => Some(g),
            _ => None,
        }
    }

    fn sync_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &SyncGroupRequest,
        now_ms: i64,
    ) {
        let reply = |out: &mut Vec<Output>, code: ResponseError| {
            let resp = SyncGroupResponse::default().with_error_code(err(code));
            out.push(Output::Respond(pending.id, ResponseKind::SyncGroup(resp)));
        };
        if r.group_id.is_empty() {
            return reply(out, ResponseError::InvalidGroupId);
        }
        let config = self.config.clone();
        let mut uuid = Uuid::nil;
        match self.classic_mut(r.group_id.as_str()) {
            Some(g) if !g.is_empty() => {
                let mut ctx = Self::ctx(&config, out, &mut uuid, now_ms);
                g.sync(&mut ctx, pending, r);
            }
            // Missing, empty, or a consumer group (classic members in consumer groups are
            // not supported here).
            _ => reply(out, ResponseError::UnknownMemberId),
        }
    }

    fn heartbeat(&mut self, r: &HeartbeatRequest, now_ms: i64) -> i16 {
        if r.group_id.is_empty() {
            return err(ResponseError::InvalidGroupId);
        }
        match self.classic_mut(r.group_id.as_str()) {
            Some(g) => g.heartbeat(
                now_ms,
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                r.generation_id,
            ),
            None => err(ResponseError::UnknownMemberId),
        }
    }

    fn leave_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &LeaveGroupRequest,
        now_ms: i64,
    ) {
        let respond = |out: &mut Vec<Output>, resp: LeaveGroupResponse| {
            out.push(Output::Respond(pending.id, ResponseKind::LeaveGroup(resp)));
        };
        if r.group_id.is_empty() {
            return respond(
                out,
                LeaveGroupResponse::default().with_error_code(err(ResponseError::InvalidGroupId)),
            );
        }
        // v0-2 name one member in the top-level member id; v3+ send a batch.
        let members: Vec<(String, Option<String>)> = if pending.version < 3 {
            vec![(r.member_id.to_string(), None)]
        } else {
            r.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        };
        let config = self.config.clone();
        let mut uuid = Uuid::nil;
        let Some(g) = self.classic_mut(r.group_id.as_str()) else {
            return respond(
                out,
                LeaveGroupResponse::default().with_error_code(err(ResponseError::UnknownMemberId)),
            );
        };
        if g.state == ClassicState::Dead {
            return respond(
                out,
                LeaveGroupResponse::default()
                    .with_error_code(err(ResponseError::CoordinatorNotAvailable)),
            );
        }
        let mut responses = Vec::new();
        let codes = {
            let mut ctx = Self::ctx(&config, &mut responses, &mut uuid, now_ms);
            g.leave(&mut ctx, &members)
        };
        let resp = if pending.version < 3 {
            LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
        } else {
            LeaveGroupResponse::default().with_members(
                members
                    .iter()
                    .zip(&codes)
                    .map(|((member_id, instance), code)| {
                        leave_group_response::MemberResponse::default()
                            .with_member_id(sb(member_id))
                            .with_group_instance_id(instance.as_deref().map(sb))
                            .with_error_code(*code)
                    })
                    .collect(),
            )
        };
        respond(out, resp);
        out.extend(responses);
    }

    // -----------------------------------------------------------------------------------------
    // Offsets

    fn offset_commit(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &OffsetCommitRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        // Kafka's broker checks topics before the coordinator sees the request.
        let exists = |name: &str, partition: i32| {
            topics.topic_by_name(name).is_some_and(|(_, count)| {
                partition >= 0 && u32::try_from(partition).is_ok_and(|p| p < count)
            })
        };
        let mut any_known = false;
        for t in &r.topics {
            for p in &t.partitions {
                any_known |= exists(t.name.as_str(), p.partition_index);
            }
        }
        let group_error = if any_known {
            self.validate_offset_commit(pending.version, r)
        } else {
            Ok(())
        };
        let mut records = Vec::new();
        let mut response = OffsetCommitResponse::default();
        let mut failure = OffsetCommitResponse::default();
        let expire_timestamp_ms = if r.retention_time_ms == -1 {
            -1
        } else {
            now_ms + r.retention_time_ms
        };
        for t in &r.topics {
            let mut topic = offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone());
            let mut topic_failure = topic.clone();
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.as_str())
                    .unwrap_or("");
                let code = if !exists(t.name.as_str(), p.partition_index) {
                    err(ResponseError::UnknownTopicOrPartition)
                } else if let Err(code) = group_error {
                    code
                } else if metadata.encode_utf16().count() > self.config.offset_metadata_max_bytes {
                    err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let value = OffsetCommitValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_string(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms,
                        topic_id: (!t.topic_id.is_nil()).then_some(t.topic_id),
                    };
                    records.push(records::offset_commit_record(
                        group_id,
                        t.name.as_str(),
                        p.partition_index,
                        &value,
                    ));
                    0
                };
                let partition = offset_commit_response::OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index);
                topic
                    .partitions
                    .push(partition.clone().with_error_code(code));
                let failure_code = if code == 0 { write_failure() } else { code };
                topic_failure
                    .partitions
                    .push(partition.with_error_code(failure_code));
            }
            response.topics.push(topic);
            failure.topics.push(topic_failure);
        }
        if group_error.is_ok() && any_known {
            if let Some(Group::Classic(g)) = self.groups.get_mut(group_id) {
                g.on_offset_commit(r.member_id.as_str(), now_ms);
            }
        }
        if records.is_empty() {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::OffsetCommit(response),
            ));
            return;
        }
        // The offsets become visible when their records are committed (`on_committed`), so
        // a failed append leaves nothing behind that OffsetFetch could return.
        out.push(Output::Append {
            partition: self.partition_for(group_id),
            records,
            on_success: vec![(pending.id, ResponseKind::OffsetCommit(response))],
            on_failure: vec![(pending.id, ResponseKind::OffsetCommit(failure))],
        });
    }

    /// Kafka's `OffsetMetadataManager.validateOffsetCommit`; creates a simple group for a
    /// commit from outside group management.
    fn validate_offset_commit(&mut self, version: i16, r: &OffsetCommitRequest) -> Result<(), i16> {
        let group_id = r.group_id.as_str();
        let generation = r.generation_id_or_member_epoch;
        match self.groups.get(group_id) {
            None if generation < 0 => {
                let p = self.partition_for(group_id);
                self.groups.insert(
                    group_id.to_string(),
                    Group::Classic(ClassicGroup::new(group_id.to_string(), p)),
                );
                Ok(())
            }
            None if version >= 9 => Err(err(ResponseError::GroupIdNotFound)),
            None => Err(err(ResponseError::IllegalGeneration)),
            Some(Group::Classic(g)) => g.validate_offset_commit(
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                generation,
            ),
            Some(Group::Consumer(g)) => g.validate_offset_commit(r.member_id.as_str(), generation),
        }
    }

    fn offset_fetch(&self, version: i16, r: &OffsetFetchRequest) -> OffsetFetchResponse {
        if version < 8 {
            let topics = r.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, group_topics) = self.fetch_group(r.group_id.as_str(), None, -1, topics);
            let mut resp = OffsetFetchResponse::default().with_error_code(code);
            for (name, partitions) in group_topics {
                let mut topic =
                    offset_fetch_response::OffsetFetchResponseTopic::default().with_name(name);
                for (index, offset, epoch, metadata) in partitions {
                    topic.partitions.push(
                        offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(sb(&metadata))),
                    );
                }
                resp.topics.push(topic);
            }
            return resp;
        }
        let mut resp = OffsetFetchResponse::default();
        for g in &r.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, group_topics) = self.fetch_group(
                g.group_id.as_str(),
                g.member_id.as_ref().map(|m| m.as_str()),
                g.member_epoch,
                topics,
            );
            let mut group = offset_fetch_response::OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(code);
            for (name, partitions) in group_topics {
                let mut topic =
                    offset_fetch_response::OffsetFetchResponseTopics::default().with_name(name);
                for (index, offset, epoch, metadata) in partitions {
                    topic.partitions.push(
                        offset_fetch_response::OffsetFetchResponsePartitions::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(sb(&metadata))),
                    );
                }
                group.topics.push(topic);
            }
            resp.groups.push(group);
        }
        resp
    }

    /// One group of an OffsetFetch: (group error, topics with (partition, offset, leader
    /// epoch, metadata)). `topics == None` asks for every committed offset.
    #[allow(clippy::type_complexity)]
    fn fetch_group(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
        topics: Option<Vec<(TopicName, Vec<i32>)>>,
    ) -> (i16, Vec<(TopicName, Vec<(i32, i64, i32, String)>)>) {
        let known = match self.groups.get(group_id) {
            None => false,
            Some(Group::Classic(g)) => g.state != ClassicState::Dead,
            Some(Group::Consumer(g)) => {
                if let Err(code) = g.validate_offset_fetch(member_id, member_epoch) {
                    return (code, Vec::new());
                }
                true
            }
        };
        let stored = if known {
            self.offsets.group(group_id)
        } else {
            None
        };
        match topics {
            Some(topics) => {
                let out = topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let found = partitions
                            .into_iter()
                            .map(|p| {
                                match stored
                                    .and_then(|s| s.get(name.as_str()))
                                    .and_then(|t| t.get(&p))
                                {
                                    Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone()),
                                    None => (p, -1, -1, String::new()),
                                }
                            })
                            .collect();
                        (name, found)
                    })
                    .collect();
                (0, out)
            }
            None => {
                let out = stored
                    .map(|s| {
                        s.iter()
                            .map(|(topic, partitions)| {
                                let found = partitions
                                    .iter()
                                    .map(|(p, v)| {
                                        (*p, v.offset, v.leader_epoch, v.metadata.clone())
                                    })
                                    .collect();
                                (TopicName(sb(topic)), found)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (0, out)
            }
        }
    }

    fn offset_delete(
        &mut self,
        out: &mut Vec<Output>,
        id: RequestId,
        r: &OffsetDeleteRequest,
        topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        let fail = |code: ResponseError| OffsetDeleteResponse::default().with_error_code(err(code));
        let subscribed: Box<dyn Fn(&str) -> bool + '_> = match self.groups.get(group_id) {
            None => {
                out.push(Output::Respond(
                    id,
                    ResponseKind::OffsetDelete(fail(ResponseError::GroupIdNotFound)),
                ));
                return;
            }
            Some(Group::Classic(g)) => match g.state {
                ClassicState::Dead => {
                    out.push(Output::Respond(
                        id,
                        ResponseKind::OffsetDelete(fail(ResponseError::GroupIdNotFound)),
                    ));
                    return;
                }
                ClassicState::Stable
                | ClassicState::PreparingRebalance
                | ClassicState::CompletingRebalance
                    if !g.uses_consumer_protocol() =>
                {
                    out.push(Output::Respond(
                        id,
                        ResponseKind::OffsetDelete(fail(ResponseError::NonEmptyGroup)),
                    ));
                    return;
                }
                _ => Box::new(|t: &str| g.is_subscribed_to_topic(t)),
            },
            Some(Group::Consumer(g)) => {
                let list = g.subscribed_topics();
                Box::new(move |t: &str| list.iter().any(|s| s == t))
            }
        };
        let mut resp = OffsetDeleteResponse::default();
        let mut failure = OffsetDeleteResponse::default();
        let mut tombstones = Vec::new();
        for t in &r.topics {
            let name = t.name.as_str();
            let count = topics.topic_by_name(name).map(|(_, c)| c);
            let is_subscribed = subscribed(name);
            let mut topic = offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone());
            let mut topic_failure = topic.clone();
            for p in &t.partitions {
                let known =
                    count.is_some_and(|c| u32::try_from(p.partition_index).is_ok_and(|i| i < c));
                let code = if !known {
                    err(ResponseError::UnknownTopicOrPartition)
                } else if is_subscribed {
                    err(ResponseError::GroupSubscribedToTopic)
                } else {
                    if self
                        .offsets
                        .get(group_id, name, p.partition_index)
                        .is_some()
                    {
                        tombstones.push((name.to_string(), p.partition_index));
                    }
                    0
                };
                let partition = offset_delete_response::OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index);
                topic
                    .partitions
                    .push(partition.clone().with_error_code(code));
                topic_failure
                    .partitions
                    .push(partition.with_error_code(if code == 0 {
                        write_failure()
                    } else {
                        code
                    }));
            }
            resp.topics.push(topic);
            failure.topics.push(topic_failure);
        }
        drop(subscribed);
        if tombstones.is_empty() {
            out.push(Output::Respond(id, ResponseKind::OffsetDelete(resp)));
            return;
        }
        let records = tombstones
            .iter()
            .map(|(t, p)| records::offset_commit_tombstone(group_id, t, *p))
            .collect();
        // Removed from memory when the tombstones are committed (`on_committed`).
        out.push(Output::Append {
            partition: self.partition_for(group_id),
            records,
            on_success: vec![(id, ResponseKind::OffsetDelete(resp))],
            on_failure: vec![(id, ResponseKind::OffsetDelete(failure))],
        });
    }

    /// Kafka's `cleanupGroupMetadata`: expire offsets, then delete groups left empty with none.
    fn cleanup_group_metadata(&mut self, out: &mut Vec<Output>, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let (base, subscribed): (Option<ExpiryBase>, TopicFilter) =
                match &self.groups[&group_id] {
                    Group::Classic(g) => {
                        let base = match &g.protocol_type {
                            None => Some(ExpiryBase::CommitTimestamp),
                            Some(_) if g.state == ClassicState::Empty => {
                                Some(ExpiryBase::EmptySince(g.state_timestamp_ms))
                            }
                            Some(_)
                                if g.uses_consumer_protocol()
                                    && g.subscribed_topics.is_some()
                                    && g.state == ClassicState::Stable =>
                            {
                                Some(ExpiryBase::CommitTimestamp)
                            }
                            Some(_) => None,
                        };
                        let topics = g.subscribed_topics.clone();
                        let consumer = g.uses_consumer_protocol();
                        (
                            base,
                            Box::new(move |t: &str| {
                                topics.as_ref().map_or(consumer, |s| s.contains(t))
                            }),
                        )
                    }
                    Group::Consumer(g) => {
                        let topics = g.subscribed_topics();
                        (
                            Some(ExpiryBase::CommitTimestamp),
                            Box::new(move |t: &str| topics.iter().any(|s| s == t)),
                        )
                    }
                };
            let mut all_expired = true;
            let mut expired = Vec::new();
            if let Some(stored) = self.offsets.group(&group_id) {
                match base {
                    None => all_expired = false,
                    Some(base) => {
                        for (topic, partitions) in stored {
                            if subscribed(topic) {
                                all_expired = false;
                                continue;
                            }
                            for (p, v) in partitions {
                                if base.is_expired(v, now_ms, retention_ms) {
                                    expired.push((topic.clone(), *p));
                                } else {
                                    all_expired = false;
                                }
                            }
                        }
                    }
                }
            }
            let mut records: Vec<Record> = Vec::new();
            for (t, p) in &expired {
                // Removed from memory when the tombstone is committed (`on_committed`).
                records.push(records::offset_commit_tombstone(&group_id, t, *p));
            }
            if all_expired {
                let empty = match &self.groups[&group_id] {
                    Group::Classic(g) => g.is_empty(),
                    Group::Consumer(g) => g.is_empty(),
                };
                if empty {
                    match self.groups.remove(&group_id) {
                        Some(Group::Classic(_)) => {
                            records.push(records::group_metadata_tombstone(&group_id))
                        }
                        Some(Group::Consumer(g)) => records.extend(g.tombstones()),
                        None => {}
                    }
                }
            }
            if !records.is_empty() {
                out.push(append_only(self.partition_for(&group_id), records));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Admin APIs

    fn describe_groups(
        &self,
        version: i16,
        r: &DescribeGroupsRequest,
        _topics: &dyn TopicView,
    ) -> DescribeGroupsResponse {
        let mut resp = DescribeGroupsResponse::default();
        for group_id in &r.groups {
            let described = match self.groups.get(group_id.as_str()) {
                Some(Group::Classic(g)) => {
                    let stable = g.state == ClassicState::Stable;
                    let protocol = g.protocol_name.clone().unwrap_or_default();
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(group_id.clone())
                        .with_group_state(sb(g.state.name()))
                        .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("")))
                        .with_protocol_data(sb(if stable { &protocol } else { "" }))
                        .with_members(
                            g.members
                                .values()
                                .map(|m| {
                                    let member =
                                        describe_groups_response::DescribedGroupMember::default()
                                            .with_member_id(sb(&m.member_id))
                                            .with_group_instance_id(
                                                m.group_instance_id
                                                    .as_deref()
                                                    .filter(|_| version >= 4)
                                                    .map(sb),
                                            )
                                            .with_client_id(sb(&m.client_id))
                                            .with_client_host(sb(&m.client_host));
                                    if stable {
                                        let metadata = m
                                            .protocols
                                            .iter()
                                            .find(|(n, _)| *n == protocol)
                                            .map(|(_, b)| b.clone())
                                            .unwrap_or_default();
                                        member
                                            .with_member_metadata(metadata)
                                            .with_member_assignment(m.assignment.clone())
                                    } else {
                                        member
                                    }
                                })
                                .collect(),
                        )
                }
                other => {
                    let mut d = describe_groups_response::DescribedGroup::default()
                        .with_group_id(group_id.clone())
                        .with_group_state(sb("Dead"));
                    if version >= 6 {
                        let message = match other {
                            Some(_) => {
                                format!("Group {} is not a classic group.", group_id.as_str())
                            }
                            None => format!("Group {} not found.", group_id.as_str()),
                        };
                        d = d
                            .with_error_code(err(ResponseError::GroupIdNotFound))
                            .with_error_message(Some(sb(&message)));
                    }
                    d
                }
            };
            // Authorized operations are the broker's answer (its authorizer), filled in there.
            resp.groups.push(described);
        }
        resp
    }

    fn list_groups(&self, version: i16, r: &ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            r.states_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            r.types_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let mut resp = ListGroupsResponse::default();
        for (group_id, group) in &self.groups {
            let (protocol_type, state, kind) = match group {
                Group::Classic(g) => (
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                    "classic",
                ),
                Group::Consumer(g) => ("consumer".to_string(), g.state_name(), "consumer"),
            };
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == kind) {
                continue;
            }
            let mut listed = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(sb(group_id)))
                .with_protocol_type(sb(&protocol_type));
            if version >= 4 {
                listed.group_state = sb(state);
            }
            if version >= 5 {
                listed.group_type = sb(kind);
            }
            resp.groups.push(listed);
        }
        resp
    }

    fn delete_groups(&mut self, out: &mut Vec<Output>, id: RequestId, r: &DeleteGroupsRequest) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        let mut failures = Vec::new();
        let mut partition = None;
        for group_id in &r.groups_names {
            let gid = group_id.as_str();
            let code = match self.groups.get(gid) {
                None => err(ResponseError::GroupIdNotFound),
                Some(Group::Classic(g)) if g.state == ClassicState::Dead => {
                    err(ResponseError::GroupIdNotFound)
                }
                Some(Group::Classic(g)) if !g.is_empty() => err(ResponseError::NonEmptyGroup),
                Some(Group::Consumer(g)) if !g.is_empty() => err(ResponseError::NonEmptyGroup),
                Some(_) => {
                    // The offsets go when their tombstones are committed (`on_committed`).
                    for (topic, p) in self.offsets.partitions_of(gid) {
                        records.push(records::offset_commit_tombstone(gid, &topic, p));
                    }
                    match self.groups.remove(gid) {
                        Some(Group::Classic(_)) => {
                            records.push(records::group_metadata_tombstone(gid))
                        }
                        Some(Group::Consumer(g)) => records.extend(g.tombstones()),
                        None => {}
                    }
                    partition.get_or_insert(self.partition_for(gid));
                    0
                }
            };
            let result = delete_groups_response::DeletableGroupResult::default()
                .with_group_id(group_id.clone());
            failures.push(result.clone().with_error_code(if code == 0 {
                write_failure()
            } else {
                code
            }));
            results.push(result.with_error_code(code));
        }
        let resp = DeleteGroupsResponse::default().with_results(results);
        match partition {
            None => out.push(Output::Respond(id, ResponseKind::DeleteGroups(resp))),
            // One request may name groups of several partitions; the shell appends per
            // partition, so the records go where each group lives.
            Some(_) => {
                let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
                for record in records {
                    let p = match records::decode_key(&record.0) {
                        Ok(
                            RecordKey::OffsetCommit { group, .. }
                            | RecordKey::GroupMetadata { group },
                        ) => self.partition_for(&group),
                        _ => partition.unwrap_or(0),
                    };
                    by_partition.entry(p).or_default().push(record);
                }
                let count = by_partition.len();
                for (i, (p, recs)) in by_partition.into_iter().enumerate() {
                    // The response waits for the last append; earlier ones carry no response.
                    let last = i + 1 == count;
                    out.push(Output::Append {
                        partition: p,
                        records: recs,
                        on_success: if last {
                            vec![(id, ResponseKind::DeleteGroups(resp.clone()))]
                        } else {
                            Vec::new()
                        },
                        on_failure: if last {
                            vec![(
                                id,
                                ResponseKind::DeleteGroups(
                                    DeleteGroupsResponse::default().with_results(failures.clone()),
                                ),
                            )]
                        } else {
                            Vec::new()
                        },
                    });
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // KIP-848

    fn consumer_heartbeat(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        client: &ClientInfo,
        r: &ConsumerGroupHeartbeatRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        let error = |code: ResponseError, message: String| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(err(code))
                .with_error_message(Some(sb(&message)))
        };
        if group_id.is_empty() {
            let resp = error(
                ResponseError::InvalidRequest,
                "GroupId can't be empty.".into(),
            );
            out.push(Output::Respond(
                pending.id,
                ResponseKind::ConsumerGroupHeartbeat(resp),
            ));
            return;
        }
        let partition = self.partition_for(group_id);
        let mut records = Vec::new();
        match self.groups.get(group_id) {
            Some(Group::Classic(g)) if !g.is_empty() => {
                let resp = error(
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                );
                out.push(Output::Respond(
                    pending.id,
                    ResponseKind::ConsumerGroupHeartbeat(resp),
                ));
                return;
            }
            Some(Group::Classic(_)) => {
                // An empty classic group gives way (Kafka's maybeDeleteEmptyClassicGroup).
                self.groups.remove(group_id);
                records.push(records::group_metadata_tombstone(group_id));
            }
            _ => {}
        }
        let is_new = !self.groups.contains_key(group_id);
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::Consumer(ConsumerGroup::new(group_id.to_string())));
        let Group::Consumer(group) = group else {
            unreachable!("classic groups were handled above");
        };
        let (resp, new_records) =
            group.heartbeat_from(r, pending.version, client, now_ms, topics, &self.config);
        records.extend(new_records);
        if is_new && group.is_empty() && records.is_empty() {
            // A heartbeat that created nothing durable leaves no group behind.
            self.groups.remove(group_id);
        }
        if records.is_empty() {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::ConsumerGroupHeartbeat(resp),
            ));
        } else {
            let failure =
                ConsumerGroupHeartbeatResponse::default().with_error_code(write_failure());
            out.push(Output::Append {
                partition,
                records,
                on_success: vec![(pending.id, ResponseKind::ConsumerGroupHeartbeat(resp))],
                on_failure: vec![(pending.id, ResponseKind::ConsumerGroupHeartbeat(failure))],
            });
        }
    }

    fn consumer_describe(
        &self,
        version: i16,
        r: &ConsumerGroupDescribeRequest,
        topics: &dyn TopicView,
    ) -> ConsumerGroupDescribeResponse {
        let mut resp = ConsumerGroupDescribeResponse::default();
        for group_id in &r.group_ids {
            let gid = group_id.as_str();
            let error = |code: ResponseError, message: Option<String>| {
                consumer_group_describe_response::DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(err(code))
                    .with_error_message(message.map(|m| sb(&m)))
            };
            let described = if gid.is_empty() {
                error(ResponseError::InvalidGroupId, None)
            } else {
                match self.groups.get(gid) {
                    Some(Group::Consumer(g)) => g.describe(version, topics),
                    Some(Group::Classic(_)) => error(
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {gid} is not a consumer group.")),
                    ),
                    None => error(
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {gid} not found.")),
                    ),
                }
            };
            // Authorized operations are the broker's answer (its authorizer), filled in there.
            resp.groups.push(described);
        }
        resp
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

/// The group coordinator is the shard engine of `__consumer_offsets`: one instance per
/// partition, holding the groups that hash to it.
impl crate::shard::CoordinatorShard for GroupCoordinator {
    type Request = GroupRequest;

    fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Vec<Output> {
        self.handle_from(id, version, client, request, now_ms, topics)
    }

    fn tick(&mut self, now_ms: i64, topics: &dyn TopicView) -> Vec<Output> {
        GroupCoordinator::tick(self, now_ms, topics)
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        GroupCoordinator::next_deadline_ms(self)
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        GroupCoordinator::replay(self, key, value).map_err(|e| e.to_string())
    }

    fn finish_replay(&mut self, now_ms: i64) {
        GroupCoordinator::finish_replay(self, now_ms);
    }

    fn on_committed(&mut self, records: &[Record]) {
        GroupCoordinator::on_committed(self, records);
    }

    fn error_response(request: &GroupRequest, version: i16, code: i16) -> ResponseKind {
        request.error_response(version, code)
    }
}
