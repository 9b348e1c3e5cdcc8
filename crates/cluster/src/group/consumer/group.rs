//! One KIP-848 consumer group (Kafka's `ConsumerGroup` plus the consumer-group half of
//! `GroupMetadataManager`), sans-IO.
//!
//! Every state change is a record: the group builds Kafka's record, applies it to itself with
//! the same code [`ConsumerGroup::replay`] uses, and returns it for `__consumer_offsets`. So a
//! replay of the returned records rebuilds the same group, by construction. Timers (session and
//! rebalance deadlines) are not persisted, as in Kafka; members replayed from disk get a fresh
//! session timer on the next tick.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_response as hb;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::assignor::{self, MemberSpec};
use super::member::{owned_is_subset, reconcile, Member, MemberState, Owned};
use super::records::{
    record, Assignment, MemberMetadataValue, MetadataValue, RecordKey, RecordValue, RegexValue,
};
use super::regex::Regex;
use crate::group::{GroupConfig, Record, TopicView};

mod classic_members;
pub use classic_members::{ClassicError, ClassicJoin};

/// Member epoch of a leaving member.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch of a static member leaving temporarily.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;
/// First ConsumerGroupHeartbeat version whose clients generate their member id (KIP-1082).
const CLIENT_GENERATED_MEMBER_ID_VERSION: i16 = 1;
/// `authorized_operations` value meaning "not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// Longest id or regex that fits Kafka's int16-length record keys.
const KEY_STRING_BYTES_MAX: usize = i16::MAX as usize;

pub use crate::group::ClientInfo;

/// What the records persist; equal after a replay of the emitted records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistedGroup {
    pub group_id: String,
    /// Bumped on membership, subscription and subscribed-topic metadata changes.
    pub group_epoch: i32,
    /// Hash of the subscribed topics' ids, names and partition counts (KIP-1101).
    pub metadata_hash: i64,
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// Target assignment per member.
    pub target: BTreeMap<String, Assignment>,
    /// Resolved regular expressions, by regex.
    pub regexes: BTreeMap<String, RegexValue>,
    /// A pre-4.1 `ConsumerGroupPartitionMetadata` record was replayed: deleted with the group.
    pub has_partition_metadata: bool,
    /// The last group metadata record replayed was a tombstone.
    pub deleted: bool,
}

/// An error for the heartbeat response.
struct HbError {
    code: i16,
    message: String,
}

fn err(e: ResponseError, message: impl Into<String>) -> HbError {
    HbError {
        code: e.code(),
        message: message.into(),
    }
}

/// A KIP-848 consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    state: PersistedGroup,
    /// Member id -> session deadline. Absent for members replayed from disk until a tick.
    session_deadline_ms: BTreeMap<String, i64>,
    /// Member id -> (deadline, the member epoch it guards): set while partitions are pending
    /// revocation; the member is fenced if still at that epoch when it passes.
    rebalance_deadline_ms: BTreeMap<String, (i64, i32)>,
    /// Classic members told to rejoin (REBALANCE_IN_PROGRESS): member id -> the deadline of
    /// their JoinGroup; fenced when it passes (Kafka's consumer group join timeout).
    join_deadline_ms: BTreeMap<String, i64>,
    /// Classic members that joined: member id -> the deadline of their SyncGroup (Kafka's
    /// consumer group sync timeout).
    sync_deadline_ms: BTreeMap<String, i64>,
}

impl ConsumerGroup {
    pub fn new(group_id: String) -> Self {
        ConsumerGroup {
            state: PersistedGroup {
                group_id,
                ..PersistedGroup::default()
            },
            session_deadline_ms: BTreeMap::new(),
            rebalance_deadline_ms: BTreeMap::new(),
            join_deadline_ms: BTreeMap::new(),
            sync_deadline_ms: BTreeMap::new(),
        }
    }

    /// The persisted state, for tests and diagnostics.
    pub fn persisted(&self) -> &PersistedGroup {
        &self.state
    }

    pub fn group_id(&self) -> &str {
        &self.state.group_id
    }

    pub fn group_epoch(&self) -> i32 {
        self.state.group_epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.state.assignment_epoch
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.state.members.get(member_id)
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.state.members.values()
    }

    /// The target assignment of a member.
    pub fn target_assignment(&self, member_id: &str) -> Option<&Assignment> {
        self.state.target.get(member_id)
    }

    /// A member's target assignment by topic name (for the consumer protocol's encoding);
    /// topics deleted since are left out.
    pub fn target_assignment_by_name(
        &self,
        member_id: &str,
        topics: &dyn TopicView,
    ) -> Vec<(String, Vec<i32>)> {
        self.state
            .target
            .get(member_id)
            .map(|a| classic_members::topic_names(a, topics))
            .unwrap_or_default()
    }

    /// Whether replayed records deleted the group (its metadata record is a tombstone and no
    /// member is left): the coordinator drops it.
    pub fn is_deleted(&self) -> bool {
        self.state.deleted && self.state.members.is_empty()
    }

    /// [`ConsumerGroup::heartbeat_from`] without client id and host (stored as empty strings).
    pub fn heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
    ) -> (ConsumerGroupHeartbeatResponse, Vec<Record>) {
        self.heartbeat_from(req, version, &ClientInfo::default(), now_ms, topics, config)
    }

    /// Handles one ConsumerGroupHeartbeat. On error no state changes and no records.
    pub fn heartbeat_from(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
    ) -> (ConsumerGroupHeartbeatResponse, Vec<Record>) {
        let mut records = Vec::new();
        let result = validate(req, version, config).and_then(|()| {
            if req.member_epoch < 0 {
                self.leave(req, topics, &mut records)
            } else {
                self.join_or_heartbeat(req, version, client, now_ms, topics, config, &mut records)
            }
        });
        match result {
            Ok(resp) => (resp, records),
            Err(e) => {
                assert!(
                    records.is_empty(),
                    "heartbeat errors come before any record"
                );
                let resp = ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(e.code)
                    .with_error_message(Some(StrBytes::from_string(e.message)));
                (resp, records)
            }
        }
    }

    /// Leave (-1) or static temporary leave (-2).
    fn leave(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        topics: &dyn TopicView,
        records: &mut Vec<Record>,
    ) -> Result<ConsumerGroupHeartbeatResponse, HbError> {
        let member_id = req.member_id.as_str().to_string();
        let member = match req.instance_id.as_deref() {
            None => self
                .state
                .members
                .get(&member_id)
                .ok_or_else(|| unknown_member(&member_id))?
                .clone(),
            Some(instance_id) => {
                let member = self
                    .static_member(instance_id)
                    .ok_or_else(|| {
                        err(
                            ResponseError::UnknownMemberId,
                            format!("Instance id {instance_id} is unknown."),
                        )
                    })?
                    .clone();
                if member.member_id != member_id {
                    return Err(err(
                        ResponseError::FencedInstanceId,
                        format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", member.member_id),
                    ));
                }
                member
            }
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            // The static member keeps its assignment for its session timeout, to come back.
            let mut away = member.clone();
            away.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            away.pending_revocation = Assignment::new();
            self.emit(
                records,
                RecordKey::CurrentMemberAssignment {
                    group_id: self.state.group_id.clone(),
                    member_id: member.member_id.clone(),
                },
                Some(RecordValue::CurrentMemberAssignment(away.current_value())),
            );
            self.rebalance_deadline_ms.remove(&member.member_id);
            let resp = ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(member.member_id)))
                .with_member_epoch(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
            return Ok(resp);
        }
        self.fence_member(&member.member_id, topics, records);
        let resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(req.member_epoch);
        Ok(resp)
    }

    #[allow(clippy::too_many_arguments, clippy::too_many_lines)]
    fn join_or_heartbeat(
        &mut self,
        req: &ConsumerGroupHeartbeatRequest,
        version: i16,
        client: &ClientInfo,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
        records: &mut Vec<Record>,
    ) -> Result<ConsumerGroupHeartbeatResponse, HbError> {
        let epoch = req.member_epoch;
        let is_join = epoch == 0;
        let requested_id = req.member_id.as_str();
        let group_size_max = usize::try_from(config.consumer_group_max_size).unwrap_or(0);
        if self.state.members.len() >= group_size_max
            && (requested_id.is_empty() || !self.state.members.contains_key(requested_id))
        {
            return Err(err(
                ResponseError::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {group_size_max} members."),
            ));
        }
        let member_id = if requested_id.is_empty() {
            debug_assert!(version < CLIENT_GENERATED_MEMBER_ID_VERSION);
            crate::controller::kafka_uuid_string(&Uuid::new_v4())
        } else {
            requested_id.to_string()
        };
        let owned: Owned = req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|tp| (tp.topic_id, tp.partitions.clone()))
                .collect()
        });

        // 1. Find or create the member; every check happens before any record.
        let mut replaced: Option<String> = None;
        let member: Member = match req.instance_id.as_deref() {
            None => match self.state.members.get(&member_id) {
                None if !is_join => return Err(unknown_member(&member_id)),
                None => Member::new(member_id.clone()),
                Some(m) => {
                    if !is_join {
                        check_member_epoch(m, epoch, &owned)?;
                    }
                    m.clone()
                }
            },
            Some(instance_id) => match (self.static_member(instance_id).cloned(), is_join) {
                (None, true) => self
                    .state
                    .members
                    .get(&member_id)
                    .cloned()
                    .unwrap_or_else(|| Member::new(member_id.clone())),
                (Some(old), true) => {
                    if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                        return Err(err(
                            ResponseError::UnreleasedInstanceId,
                            format!("Static member {member_id} with instance id {instance_id} cannot join the group because the instance id is owned by {} member.", old.member_id),
                        ));
                    }
                    let mut m = old.clone();
                    m.member_id.clone_from(&member_id);
                    m.member_epoch = 0;
                    m.previous_member_epoch = 0;
                    replaced = Some(old.member_id);
                    m
                }
                (None, false) => {
                    return Err(err(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance_id} is unknown."),
                    ))
                }
                (Some(old), false) => {
                    if old.member_id != member_id {
                        return Err(err(
                            ResponseError::FencedInstanceId,
                            format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", old.member_id),
                        ));
                    }
                    check_member_epoch(&old, epoch, &owned)?;
                    old
                }
            },
        };
        if member.state == MemberState::Unknown && !matches!(&owned, Some(o) if o.is_empty()) {
            return Err(err(
                ResponseError::FencedMemberEpoch,
                "The consumer group member is in a unknown state. The member must abandon all its partitions and rejoin.",
            ));
        }
        let is_new = replaced.is_none() && !self.state.members.contains_key(&member_id);

        // 2. Static member replacement: the new member id takes over the old one's place.
        if let Some(old_id) = &replaced {
            self.replace_member(old_id, &member, records);
        }

        // 3. The subscription, with unset fields unchanged.
        let mut meta = member.metadata.clone();
        if let Some(i) = &req.instance_id {
            meta.instance_id = Some(i.to_string());
        }
        if let Some(r) = &req.rack_id {
            meta.rack_id = Some(r.to_string());
        }
        if req.rebalance_timeout_ms != -1 {
            meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            meta.server_assignor = Some(a.to_string());
        }
        if let Some(names) = &req.subscribed_topic_names {
            meta.subscribed_topic_names = names.iter().map(|n| n.0.to_string()).collect();
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            // An empty regex clears the regex subscription.
            meta.subscribed_topic_regex = (!regex.is_empty()).then(|| regex.to_string());
        }
        meta.client_id.clone_from(&client.client_id);
        meta.client_host.clone_from(&client.client_host);
        // A member speaking the consumer protocol is no classic member (any more).
        meta.classic = None;
        let before = self.subscribe_and_reconcile(
            &member, meta, is_new, &owned, now_ms, topics, config, records,
        );
        self.session_deadline_ms.insert(
            member_id.clone(),
            now_ms + i64::from(config.consumer_group_session_timeout_ms),
        );
        // Classic timers end when the member speaks the consumer protocol.
        self.join_deadline_ms.remove(&member_id);
        self.sync_deadline_ms.remove(&member_id);

        let updated = &self.state.members[&member_id];
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id.clone())))
            .with_member_epoch(updated.member_epoch)
            .with_heartbeat_interval_ms(config.consumer_group_heartbeat_interval_ms);
        let is_full = is_join
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.topic_partitions.is_some());
        if is_full || updated.assigned != before.assigned || is_new {
            resp.assignment = Some(
                hb::Assignment::default().with_topic_partitions(
                    updated
                        .assigned
                        .iter()
                        .map(|(topic_id, ps)| {
                            hb::TopicPartitions::default()
                                .with_topic_id(*topic_id)
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                ),
            );
        }
        Ok(resp)
    }

    /// Steps 3-7 of a join or heartbeat, shared by ConsumerGroupHeartbeat and a classic
    /// member's JoinGroup (Kafka's `consumerGroupHeartbeat` and
    /// `classicGroupJoinToConsumerGroup`): persists the member's subscription `meta`, bumps the
    /// group epoch when the subscription or the subscribed topics' metadata changed, computes
    /// the target assignment, and moves the member one step towards it. Returns the member as
    /// it was before reconciliation (to tell whether its assignment changed).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_and_reconcile(
        &mut self,
        member: &Member,
        meta: MemberMetadataValue,
        is_new: bool,
        owned: &Owned,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
        records: &mut Vec<Record>,
    ) -> Member {
        let member_id = member.member_id.clone();
        let mut bump = false;
        if is_new || meta != member.metadata {
            bump = is_new
                || meta.subscribed_topic_names != member.metadata.subscribed_topic_names
                || meta.subscribed_topic_regex != member.metadata.subscribed_topic_regex;
            self.emit(
                records,
                RecordKey::MemberMetadata {
                    group_id: self.state.group_id.clone(),
                    member_id: member_id.clone(),
                },
                Some(RecordValue::MemberMetadata(meta)),
            );
        }

        // 4. Regexes: resolve new ones, refresh the others, drop unused ones.
        self.refresh_regexes(now_ms, topics, records);

        // 5. Group epoch: bumped by a subscription change or a subscribed-topic metadata change.
        let hash = self.compute_metadata_hash(topics);
        if bump || hash != self.state.metadata_hash {
            self.emit(
                records,
                RecordKey::Metadata {
                    group_id: self.state.group_id.clone(),
                },
                Some(RecordValue::Metadata(MetadataValue {
                    epoch: self.state.group_epoch.wrapping_add(1),
                    metadata_hash: hash,
                })),
            );
        }

        // 6. Target assignment at the new group epoch.
        if self.state.group_epoch > self.state.assignment_epoch {
            self.compute_target_assignment(topics, config, records);
        }

        // 7. Reconcile this member towards its target.
        let before = self
            .state
            .members
            .get(&member_id)
            .cloned()
            .unwrap_or_else(|| member.clone());
        self.reconcile_member(&member_id, owned, now_ms, records);
        before
    }

    fn reconcile_member(
        &mut self,
        member_id: &str,
        owned: &Owned,
        now_ms: i64,
        records: &mut Vec<Record>,
    ) {
        let member = self.state.members[member_id].clone();
        let target_epoch = self.state.assignment_epoch;
        if member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
            || member.is_reconciled_to(target_epoch)
        {
            return;
        }
        let empty = Assignment::new();
        let target = self.state.target.get(member_id).unwrap_or(&empty);
        let held = self.held_partitions();
        let updated = reconcile(&member, target_epoch, target, owned, &|t, p| {
            held.contains(&(*t, p))
        })
        .expect("an unknown member state was refused before any record"); // ok: validated before any record
        if updated == member {
            return;
        }
        if updated.state == MemberState::UnrevokedPartitions {
            self.rebalance_deadline_ms.insert(
                member_id.to_string(),
                (
                    now_ms + i64::from(updated.metadata.rebalance_timeout_ms.max(0)),
                    updated.member_epoch,
                ),
            );
        } else {
            self.rebalance_deadline_ms.remove(member_id);
        }
        self.emit(
            records,
            RecordKey::CurrentMemberAssignment {
                group_id: self.state.group_id.clone(),
                member_id: member_id.to_string(),
            },
            Some(RecordValue::CurrentMemberAssignment(
                updated.current_value(),
            )),
        );
    }

    /// Partitions some member owns: assigned or pending revocation (Kafka's partition epochs).
    fn held_partitions(&self) -> BTreeSet<(Uuid, i32)> {
        let mut held = BTreeSet::new();
        for m in self.state.members.values() {
            for a in [&m.assigned, &m.pending_revocation] {
                for (t, ps) in a {
                    held.extend(ps.iter().map(|p| (*t, *p)));
                }
            }
        }
        held
    }

    fn compute_target_assignment(
        &mut self,
        topics: &dyn TopicView,
        config: &GroupConfig,
        records: &mut Vec<Record>,
    ) {
        let mut counts = BTreeMap::new();
        let mut specs = BTreeMap::new();
        for (id, m) in &self.state.members {
            let mut ids = BTreeSet::new();
            for name in self.member_topic_names(m) {
                if let Some((topic_id, n)) = topics.topic_by_name(&name) {
                    ids.insert(topic_id);
                    counts.insert(topic_id, n);
                }
            }
            specs.insert(
                id.clone(),
                MemberSpec {
                    instance_id: m.metadata.instance_id.clone(),
                    subscribed_topic_ids: ids,
                    current: self.state.target.get(id).cloned().unwrap_or_default(),
                },
            );
        }
        let name = self.assignor_name(config);
        let new = assignor::assign(&name, &specs, &counts);
        let group_id = self.state.group_id.clone();
        for (member_id, a) in new {
            if self.state.target.get(&member_id) != Some(&a) {
                self.emit(
                    records,
                    RecordKey::TargetAssignmentMember {
                        group_id: group_id.clone(),
                        member_id,
                    },
                    Some(RecordValue::TargetAssignmentMember(a)),
                );
            }
        }
        self.emit(
            records,
            RecordKey::TargetAssignmentMetadata { group_id },
            Some(RecordValue::TargetAssignmentMetadata {
                assignment_epoch: self.state.group_epoch,
            }),
        );
    }

    /// The most used server assignor among members, else the configured default.
    fn assignor_name(&self, config: &GroupConfig) -> String {
        self.preferred_assignor().unwrap_or_else(|| {
            config
                .consumer_group_assignors
                .first()
                .cloned()
                .unwrap_or_else(|| assignor::UNIFORM.to_string())
        })
    }

    fn preferred_assignor(&self) -> Option<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.state.members.values() {
            if let Some(a) = &m.metadata.server_assignor {
                *counts.entry(a).or_default() += 1;
            }
        }
        // Highest count; ties go to the smallest name (Kafka's tie-break is hash order).
        counts
            .into_iter()
            .max_by(|(an, ac), (bn, bc)| ac.cmp(bc).then(bn.cmp(an)))
            .map(|(n, _)| n.to_string())
    }

    /// Topic names a member subscribes to: its names plus its regex's resolution.
    fn member_topic_names(&self, m: &Member) -> BTreeSet<String> {
        let mut names: BTreeSet<String> =
            m.metadata.subscribed_topic_names.iter().cloned().collect();
        if let Some(r) = &m.metadata.subscribed_topic_regex {
            if let Some(v) = self.state.regexes.get(r) {
                names.extend(v.topics.iter().cloned());
            }
        }
        names
    }

    fn refresh_regexes(&mut self, now_ms: i64, topics: &dyn TopicView, records: &mut Vec<Record>) {
        let in_use: BTreeSet<String> = self
            .state
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.clone())
            .collect();
        let group_id = self.state.group_id.clone();
        let stale: Vec<String> = self
            .state
            .regexes
            .keys()
            .filter(|r| !in_use.contains(*r))
            .cloned()
            .collect();
        for regex in stale {
            self.emit(
                records,
                RecordKey::RegularExpression {
                    group_id: group_id.clone(),
                    regex,
                },
                None,
            );
        }
        if in_use.is_empty() {
            return;
        }
        let names = topics.topic_names();
        for regex in in_use {
            // Validated when the member sent it; a pattern replayed from disk that no longer
            // compiles matches nothing.
            let matched: Vec<String> = match Regex::new(&regex) {
                Ok(re) => names
                    .iter()
                    // Kafka 4.1 resolves regexes against every topic, internal ones included
                    // (franz-go's Test848RegexBrokerResolves subscribes to __consumer_offsets).
                    .filter(|n| re.full_match(n))
                    .cloned()
                    .collect(),
                Err(_) => Vec::new(),
            };
            if self.state.regexes.get(&regex).map(|v| &v.topics) != Some(&matched) {
                self.emit(
                    records,
                    RecordKey::RegularExpression {
                        group_id: group_id.clone(),
                        regex,
                    },
                    Some(RecordValue::RegularExpression(RegexValue {
                        topics: matched,
                        version: 0,
                        timestamp_ms: now_ms,
                    })),
                );
            }
        }
    }

    /// FNV-1a over (name, id, partition count) of every existing subscribed topic, in name
    /// order; 0 when there is none. Kafka hashes more (racks) with XXH3; only equality matters.
    fn compute_metadata_hash(&self, topics: &dyn TopicView) -> i64 {
        let names: BTreeSet<String> = self.subscribed_topics().into_iter().collect();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut any = false;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for name in names {
            if let Some((id, n)) = topics.topic_by_name(&name) {
                any = true;
                feed(name.as_bytes());
                feed(&[0]);
                feed(id.as_bytes());
                feed(&n.to_be_bytes());
            }
        }
        if any {
            hash as i64
        } else {
            0
        }
    }

    /// Removes a member (leave, session or rebalance timeout) and bumps the group epoch.
    fn fence_member(&mut self, member_id: &str, topics: &dyn TopicView, records: &mut Vec<Record>) {
        self.remove_member_records(member_id, records);
        self.session_deadline_ms.remove(member_id);
        self.rebalance_deadline_ms.remove(member_id);
        self.join_deadline_ms.remove(member_id);
        self.sync_deadline_ms.remove(member_id);
        let group_id = self.state.group_id.clone();
        let in_use: BTreeSet<String> = self
            .state
            .members
            .values()
            .filter_map(|m| m.metadata.subscribed_topic_regex.clone())
            .collect();
        let stale: Vec<String> = self
            .state
            .regexes
            .keys()
            .filter(|r| !in_use.contains(*r))
            .cloned()
            .collect();
        for regex in stale {
            self.emit(
                records,
                RecordKey::RegularExpression {
                    group_id: group_id.clone(),
                    regex,
                },
                None,
            );
        }
        self.emit(
            records,
            RecordKey::Metadata { group_id },
            Some(RecordValue::Metadata(MetadataValue {
                epoch: self.state.group_epoch.wrapping_add(1),
                metadata_hash: self.compute_metadata_hash(topics),
            })),
        );
    }

    fn remove_member_records(&mut self, member_id: &str, records: &mut Vec<Record>) {
        let group_id = self.state.group_id.clone();
        let member_id = member_id.to_string();
        self.emit(
            records,
            RecordKey::CurrentMemberAssignment {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
            },
            None,
        );
        self.emit(
            records,
            RecordKey::TargetAssignmentMember {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
            },
            None,
        );
        self.emit(
            records,
            RecordKey::MemberMetadata {
                group_id,
                member_id,
            },
            None,
        );
    }

    /// Records replacing static member `old_id` by `member` (its copy under a new member id),
    /// which keeps the old one's target and current assignment (Kafka's `replaceMember`).
    fn replace_member(&mut self, old_id: &str, member: &Member, records: &mut Vec<Record>) {
        let member_id = member.member_id.clone();
        let old_target = self.state.target.get(old_id).cloned().unwrap_or_default();
        self.remove_member_records(old_id, records);
        self.move_timers(old_id, &member_id);
        let group_id = self.state.group_id.clone();
        self.emit(
            records,
            RecordKey::MemberMetadata {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
            },
            Some(RecordValue::MemberMetadata(member.metadata.clone())),
        );
        self.emit(
            records,
            RecordKey::TargetAssignmentMember {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
            },
            Some(RecordValue::TargetAssignmentMember(old_target)),
        );
        self.emit(
            records,
            RecordKey::CurrentMemberAssignment {
                group_id,
                member_id,
            },
            Some(RecordValue::CurrentMemberAssignment(member.current_value())),
        );
    }

    fn move_timers(&mut self, from: &str, to: &str) {
        if let Some(d) = self.session_deadline_ms.remove(from) {
            self.session_deadline_ms.insert(to.to_string(), d);
        }
        self.rebalance_deadline_ms.remove(from);
        self.join_deadline_ms.remove(from);
        self.sync_deadline_ms.remove(from);
    }

    fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.state
            .members
            .values()
            .find(|m| m.metadata.instance_id.as_deref() == Some(instance_id))
    }

    /// Applies a record to the state and appends its bytes.
    fn emit(&mut self, records: &mut Vec<Record>, key: RecordKey, value: Option<RecordValue>) {
        records.push(record(&key, value.as_ref()));
        self.apply(&key, value.as_ref())
            .expect("records we build match their keys"); // ok: our own records
    }

    /// The one place state changes: shared by live requests and replay.
    fn apply(&mut self, key: &RecordKey, value: Option<&RecordValue>) -> Result<(), String> {
        let s = &mut self.state;
        match (key, value) {
            (RecordKey::Metadata { .. }, Some(RecordValue::Metadata(v))) => {
                s.group_epoch = v.epoch;
                s.metadata_hash = v.metadata_hash;
                s.deleted = false;
            }
            (RecordKey::Metadata { .. }, None) => {
                s.group_epoch = 0;
                s.metadata_hash = 0;
                s.deleted = true;
            }
            (RecordKey::PartitionMetadata { .. }, Some(RecordValue::PartitionMetadata(_))) => {
                s.has_partition_metadata = true;
            }
            (RecordKey::PartitionMetadata { .. }, None) => s.has_partition_metadata = false,
            (RecordKey::MemberMetadata { member_id, .. }, Some(RecordValue::MemberMetadata(v))) => {
                s.members
                    .entry(member_id.clone())
                    .or_insert_with(|| Member::new(member_id.clone()))
                    .metadata = v.clone();
            }
            (RecordKey::MemberMetadata { member_id, .. }, None) => {
                s.members.remove(member_id);
            }
            (
                RecordKey::TargetAssignmentMetadata { .. },
                Some(RecordValue::TargetAssignmentMetadata { assignment_epoch }),
            ) => {
                s.assignment_epoch = *assignment_epoch;
            }
            (RecordKey::TargetAssignmentMetadata { .. }, None) => s.assignment_epoch = 0,
            (
                RecordKey::TargetAssignmentMember { member_id, .. },
                Some(RecordValue::TargetAssignmentMember(a)),
            ) => {
                s.target.insert(member_id.clone(), a.clone());
            }
            (RecordKey::TargetAssignmentMember { member_id, .. }, None) => {
                s.target.remove(member_id);
            }
            (
                RecordKey::CurrentMemberAssignment { member_id, .. },
                Some(RecordValue::CurrentMemberAssignment(v)),
            ) => {
                s.members
                    .entry(member_id.clone())
                    .or_insert_with(|| Member::new(member_id.clone()))
                    .apply_current(v);
            }
            (RecordKey::CurrentMemberAssignment { member_id, .. }, None) => {
                if let Some(m) = s.members.get_mut(member_id) {
                    m.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    m.previous_member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                    m.state = MemberState::Stable;
                    m.assigned.clear();
                    m.pending_revocation.clear();
                }
            }
            (
                RecordKey::RegularExpression { regex, .. },
                Some(RecordValue::RegularExpression(v)),
            ) => {
                s.regexes.insert(regex.clone(), v.clone());
            }
            (RecordKey::RegularExpression { regex, .. }, None) => {
                s.regexes.remove(regex);
            }
            (k, Some(v)) => return Err(format!("value {v:?} does not belong to key {k:?}")),
        }
        Ok(())
    }

    /// Session expiry and rebalance timeouts: fences members whose deadline passed.
    pub fn tick(
        &mut self,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
    ) -> Vec<Record> {
        let expired = self.expired_members(now_ms, config);
        self.fence_members(&expired, topics)
    }

    /// The members whose session, rebalance, join or sync deadline passed, to be fenced (the
    /// coordinator may turn the group back into a classic group instead). Members replayed
    /// from disk start their timers here (Kafka's `onLoaded`).
    pub fn expired_members(&mut self, now_ms: i64, config: &GroupConfig) -> Vec<String> {
        let ids: Vec<String> = self.state.members.keys().cloned().collect();
        for id in &ids {
            let m = &self.state.members[id];
            let session_ms = session_timeout_ms(m, config);
            self.session_deadline_ms
                .entry(id.clone())
                .or_insert(now_ms + session_ms);
            if m.state == MemberState::UnrevokedPartitions
                && !self.rebalance_deadline_ms.contains_key(id)
            {
                self.rebalance_deadline_ms.insert(
                    id.clone(),
                    (
                        now_ms + i64::from(m.metadata.rebalance_timeout_ms.max(0)),
                        m.member_epoch,
                    ),
                );
            }
        }
        let mut expired = Vec::new();
        for id in ids {
            let m = &self.state.members[&id];
            let passed = |deadline: Option<&i64>| deadline.is_some_and(|d| *d <= now_ms);
            let reason = if passed(self.session_deadline_ms.get(&id)) {
                Some("session timeout")
            } else if self
                .rebalance_deadline_ms
                .get(&id)
                .is_some_and(|(d, epoch)| *d <= now_ms && *epoch == m.member_epoch)
            {
                Some("rebalance timeout")
            } else if passed(self.join_deadline_ms.get(&id)) {
                Some("the classic member failed to join within the rebalance timeout")
            } else if passed(self.sync_deadline_ms.get(&id)) {
                Some("the member failed to sync within timeout")
            } else {
                None
            };
            if let Some(reason) = reason {
                tracing::info!(
                    group_id = %self.state.group_id,
                    member_id = %id,
                    reason,
                    "fencing consumer group member"
                );
                expired.push(id);
            } else if self
                .rebalance_deadline_ms
                .get(&id)
                .is_some_and(|(_, epoch)| *epoch != m.member_epoch)
            {
                self.rebalance_deadline_ms.remove(&id);
            }
        }
        expired
    }

    /// Removes members (leave or a passed deadline) and bumps the group epoch once per member.
    pub fn fence_members(&mut self, member_ids: &[String], topics: &dyn TopicView) -> Vec<Record> {
        let mut records = Vec::new();
        for id in member_ids {
            if self.state.members.contains_key(id) {
                self.fence_member(id, topics, &mut records);
            }
        }
        records
    }

    /// The earliest timer; 0 (due now) while a replayed member has no session timer yet.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        if self
            .state
            .members
            .keys()
            .any(|id| !self.session_deadline_ms.contains_key(id))
        {
            return Some(0);
        }
        self.session_deadline_ms
            .values()
            .copied()
            .chain(self.rebalance_deadline_ms.values().map(|(d, _)| *d))
            .chain(self.join_deadline_ms.values().copied())
            .chain(self.sync_deadline_ms.values().copied())
            .min()
    }

    pub fn describe(&self, version: i16, topics: &dyn TopicView) -> describe::DescribedGroup {
        let to_assignment = |a: &Assignment| {
            describe::Assignment::default().with_topic_partitions(
                a.iter()
                    .filter_map(|(id, ps)| {
                        let (name, _) = topics.topic_by_id(id)?;
                        Some(
                            describe::TopicPartitions::default()
                                .with_topic_id(*id)
                                .with_topic_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(ps.iter().copied().collect()),
                        )
                    })
                    .collect(),
            )
        };
        let empty = Assignment::new();
        let members = self
            .state
            .members
            .values()
            .map(|m| {
                let md = &m.metadata;
                describe::Member::default()
                    .with_member_id(StrBytes::from_string(m.member_id.clone()))
                    .with_instance_id(md.instance_id.clone().map(StrBytes::from_string))
                    .with_rack_id(md.rack_id.clone().map(StrBytes::from_string))
                    .with_member_epoch(m.member_epoch)
                    .with_client_id(StrBytes::from_string(md.client_id.clone()))
                    .with_client_host(StrBytes::from_string(md.client_host.clone()))
                    .with_subscribed_topic_names(
                        md.subscribed_topic_names
                            .iter()
                            .map(|n| TopicName(StrBytes::from_string(n.clone())))
                            .collect(),
                    )
                    .with_subscribed_topic_regex(
                        md.subscribed_topic_regex.clone().map(StrBytes::from_string),
                    )
                    .with_assignment(to_assignment(&m.assigned))
                    .with_target_assignment(to_assignment(
                        self.state.target.get(&m.member_id).unwrap_or(&empty),
                    ))
                    // 0 = classic, 1 = consumer protocol; the field exists from v1.
                    .with_member_type(match (version >= 1, md.classic.is_some()) {
                        (false, _) => -1,
                        (true, true) => 0,
                        (true, false) => 1,
                    })
            })
            .collect();
        describe::DescribedGroup::default()
            .with_group_id(kafka_protocol::messages::GroupId(StrBytes::from_string(
                self.state.group_id.clone(),
            )))
            .with_group_state(StrBytes::from_static_str(self.state_name()))
            .with_group_epoch(self.state.group_epoch)
            .with_assignment_epoch(self.state.assignment_epoch)
            .with_assignor_name(StrBytes::from_string(
                self.preferred_assignor()
                    .unwrap_or_else(|| assignor::UNIFORM.to_string()),
            ))
            .with_members(members)
            // The broker's authorizer fills this in when asked.
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    }

    pub fn state_name(&self) -> &'static str {
        if self.is_deleted() {
            "Dead"
        } else if self.state.members.is_empty() {
            "Empty"
        } else if self.state.group_epoch > self.state.assignment_epoch {
            "Assigning"
        } else if self
            .state
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.state.assignment_epoch))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` for a non-transactional commit: a member
    /// of the consumer protocol must commit with OffsetCommit v9+, and a stale epoch is
    /// STALE_MEMBER_EPOCH (ILLEGAL_GENERATION for a classic member, which knows generations).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        api_version: i16,
    ) -> Result<(), i16> {
        if member_epoch < 0 && self.state.members.is_empty() {
            return Ok(());
        }
        let member = self
            .state
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        let classic = member.metadata.classic.is_some();
        if !classic && api_version < 9 {
            return Err(ResponseError::UnsupportedVersion.code());
        }
        if member.member_epoch != member_epoch {
            return Err(if classic {
                ResponseError::IllegalGeneration.code()
            } else {
                ResponseError::StaleMemberEpoch.code()
            });
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` for a TxnOffsetCommit (`isTransactional`):
    /// member id, epoch and instance id are checked only if one is given, any protocol may
    /// commit, and a stale epoch is ILLEGAL_GENERATION (Kafka's `validateTransactionalOffsetCommit`
    /// maps STALE_MEMBER_EPOCH to it).
    pub fn validate_txn_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), i16> {
        if member_epoch < 0 && self.state.members.is_empty() {
            return Ok(());
        }
        if member_epoch == -1 && member_id.is_empty() && group_instance_id.is_none() {
            return Ok(());
        }
        let member = self
            .state
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::IllegalGeneration.code());
        }
        Ok(())
    }

    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), i16> {
        let Some(member_id) = member_id else {
            if member_epoch < 0 {
                return Ok(());
            }
            return Err(ResponseError::UnknownMemberId.code());
        };
        let member = self
            .state
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        if member.member_epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.state.members.is_empty()
    }

    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut all = BTreeSet::new();
        for m in self.state.members.values() {
            all.extend(self.member_topic_names(m));
        }
        all.into_iter().collect()
    }

    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<bool, String> {
        let Some(key) = RecordKey::decode(key)? else {
            return Ok(false);
        };
        if key.group_id() != self.state.group_id {
            return Ok(false);
        }
        let value = value.map(|v| RecordValue::decode(&key, v)).transpose()?;
        self.apply(&key, value.as_ref())?;
        Ok(true)
    }

    /// Kafka's `createGroupTombstoneRecords` order, plus regexes and any old partition metadata.
    pub fn tombstones(&self) -> Vec<Record> {
        let g = || self.state.group_id.clone();
        let mut keys = Vec::new();
        for id in self.state.members.keys() {
            keys.push(RecordKey::CurrentMemberAssignment {
                group_id: g(),
                member_id: id.clone(),
            });
        }
        let target_ids: BTreeSet<&String> = self
            .state
            .members
            .keys()
            .chain(self.state.target.keys())
            .collect();
        for id in target_ids {
            keys.push(RecordKey::TargetAssignmentMember {
                group_id: g(),
                member_id: id.clone(),
            });
        }
        keys.push(RecordKey::TargetAssignmentMetadata { group_id: g() });
        for id in self.state.members.keys() {
            keys.push(RecordKey::MemberMetadata {
                group_id: g(),
                member_id: id.clone(),
            });
        }
        for regex in self.state.regexes.keys() {
            keys.push(RecordKey::RegularExpression {
                group_id: g(),
                regex: regex.clone(),
            });
        }
        if self.state.has_partition_metadata {
            keys.push(RecordKey::PartitionMetadata { group_id: g() });
        }
        keys.push(RecordKey::Metadata { group_id: g() });
        keys.iter().map(|k| record(k, None)).collect()
    }
}

/// A member's session timeout: its JoinGroup's for a classic member, else the group config's.
fn session_timeout_ms(member: &Member, config: &GroupConfig) -> i64 {
    match &member.metadata.classic {
        Some(classic) => i64::from(classic.session_timeout_ms),
        None => i64::from(config.consumer_group_session_timeout_ms),
    }
}

fn unknown_member(member_id: &str) -> HbError {
    err(
        ResponseError::UnknownMemberId,
        format!("Member {member_id} is not a member of the group."),
    )
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`.
fn check_member_epoch(member: &Member, received: i32, owned: &Owned) -> Result<(), HbError> {
    if received > member.member_epoch {
        return Err(err(
            ResponseError::FencedMemberEpoch,
            format!("The consumer group member has a greater member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", member.member_epoch),
        ));
    }
    if received < member.member_epoch
        && (received != member.previous_member_epoch || !owned_is_subset(owned, &member.assigned))
    {
        return Err(err(
            ResponseError::FencedMemberEpoch,
            format!("The consumer group member has a smaller member epoch ({received}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", member.member_epoch),
        ));
    }
    Ok(())
}

/// Kafka 4.1's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
    config: &GroupConfig,
) -> Result<(), HbError> {
    let invalid = |m: &str| err(ResponseError::InvalidRequest, m);
    let epoch = req.member_epoch;
    if (version >= CLIENT_GENERATED_MEMBER_ID_VERSION || epoch > 0 || epoch < 0)
        && req.member_id.is_empty()
    {
        return Err(invalid("MemberId can't be empty."));
    }
    if req.group_id.0.is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if req.instance_id.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(invalid("InstanceId can't be empty."));
    }
    if req.rack_id.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(invalid("RackId can't be empty."));
    }
    // Record keys carry int16-length strings; the request's compact strings can be longer.
    let too_long = [
        Some(req.group_id.0.len()),
        Some(req.member_id.len()),
        req.subscribed_topic_regex.as_ref().map(|s| s.len()),
    ];
    if too_long
        .iter()
        .flatten()
        .any(|len| *len > KEY_STRING_BYTES_MAX)
    {
        return Err(invalid(
            "GroupId, MemberId or SubscribedTopicRegex is too long.",
        ));
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return Err(invalid(
                "RebalanceTimeoutMs must be provided in first request.",
            ));
        }
        if !matches!(&req.topic_partitions, Some(tp) if tp.is_empty()) {
            return Err(invalid("TopicPartitions must be empty when (re-)joining."));
        }
        let has_names = req
            .subscribed_topic_names
            .as_ref()
            .is_some_and(|n| !n.is_empty());
        let has_regex = req
            .subscribed_topic_regex
            .as_ref()
            .is_some_and(|r| !r.is_empty());
        if !has_names && !has_regex {
            return Err(invalid(
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            ));
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if req.instance_id.is_none() {
            return Err(invalid("InstanceId can't be null."));
        }
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return Err(invalid("MemberEpoch is invalid."));
    }
    if let Some(regex) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = Regex::new(regex) {
            return Err(err(
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}."),
            ));
        }
    }
    if let Some(a) = req.server_assignor.as_deref() {
        if !config.consumer_group_assignors.iter().any(|c| c == a) {
            return Err(err(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {a} is not supported. Supported assignors: {}.",
                    config.consumer_group_assignors.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
