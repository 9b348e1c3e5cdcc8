//! One classic group's state machine (JoinGroup / SyncGroup / Heartbeat / LeaveGroup), after
//! Kafka 4.1's `GroupMetadataManager` and `ClassicGroup`.
//!
//! Kafka parks JoinGroup and SyncGroup requests as futures; here a parked request is a
//! [`Pending`] (request id + version) stored on its member, answered later by pushing an
//! [`Output`]. Kafka's timer keys become deadline fields that [`ClassicGroup::tick`] fires.
//!
//! Kafka applies a group's state only after its record is written and reverts it if the write
//! fails. This state machine applies it at once and answers the parked requests through
//! `Output::Append` (`on_success` / `on_failure`): after a failed write the clients see an error
//! and rejoin, which starts a new rebalance from the optimistic state.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{
    JoinGroupRequest, JoinGroupResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::output::{Output, RequestId};
use super::records::{self, GroupMetadataValue, MemberMetadata};
use super::GroupConfig;

/// Kafka's `group.classic.new.member.join.timeout.ms` (internal, 5 minutes): a new member's
/// parked JoinGroup is dropped after this, since it cannot heartbeat yet.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;
/// Timer firings one `tick` may run for one group: a bound against a zero timeout loop.
const TIMER_FIRINGS_PER_TICK_MAX: usize = 10_000;

pub(crate) fn err(e: ResponseError) -> i16 {
    e.code()
}

pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Classic group states with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
            ClassicState::Dead => "Dead",
        }
    }
}

/// A request parked until the group moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub id: RequestId,
    /// The response must encode at this version.
    pub version: i16,
}

/// One classic member.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Its JoinGroup, parked while the group prepares a rebalance.
    pub awaiting_join: Option<Pending>,
    /// Its SyncGroup, parked until the leader's assignment arrives.
    pub awaiting_sync: Option<Pending>,
    /// Joined in the current rebalance: its session is not yet being kept by heartbeats.
    pub is_new: bool,
    /// When the member is considered dead without a heartbeat (Kafka's heartbeat timer key).
    pub heartbeat_deadline_ms: Option<i64>,
}

impl Member {
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: members parked in a rebalance keep their session.
    fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// The join-phase timer: the initial delay for a new group, or the rebalance timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    Initial {
        deadline_ms: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    Rebalance {
        deadline_ms: i64,
    },
}

impl JoinTimer {
    fn deadline_ms(self) -> i64 {
        match self {
            JoinTimer::Initial { deadline_ms, .. } | JoinTimer::Rebalance { deadline_ms } => {
                deadline_ms
            }
        }
    }
}

pub use super::ClientInfo;

/// Kafka's generated member id, `prefix-UUID`, where the prefix is the group instance id or the
/// client id. Both may be up to 0x7fff bytes long, and Kafka then fails to write the group
/// record; we shorten the prefix (at a character boundary) so the id fits a record string.
/// Member ids are opaque to clients, so nothing else changes.
pub(crate) fn generated_member_id(prefix: &str, uuid: uuid::Uuid) -> String {
    const SUFFIX_BYTES: usize = 1 + 36;
    let room = super::records::STRING_BYTES_MAX - SUFFIX_BYTES;
    let mut end = prefix.len().min(room);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{uuid}", &prefix[..end])
}

/// Shared per-call context.
pub(crate) struct Ctx<'a> {
    pub now_ms: i64,
    pub config: &'a GroupConfig,
    pub out: &'a mut Vec<Output>,
    pub new_uuid: &'a mut dyn FnMut() -> uuid::Uuid,
}

/// One classic group.
#[derive(Debug)]
pub struct ClassicGroup {
    pub group_id: String,
    /// The `__consumer_offsets` partition its records go to.
    pub partition: i32,
    pub state: ClassicState,
    previous_state: ClassicState,
    /// When the state last changed (drives offset expiry of Empty groups).
    pub state_timestamp_ms: Option<i64>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: BTreeMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with their session deadline.
    pending_members: BTreeMap<String, i64>,
    /// Members that have not sent SyncGroup since the join phase completed.
    pending_sync: BTreeSet<String>,
    /// Topics the members subscribe to, when the protocol is `consumer` and parses.
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// A member joined during the initial delay: extend it once more.
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    /// (deadline, generation) for members to send SyncGroup.
    sync_deadline: Option<(i64, i32)>,
}

impl ClassicGroup {
    pub fn new(group_id: String, partition: i32) -> Self {
        ClassicGroup {
            group_id,
            partition,
            state: ClassicState::Empty,
            previous_state: ClassicState::Empty,
            state_timestamp_ms: None,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            subscribed_topics: None,
            new_member_added: false,
            join_timer: None,
            sync_deadline: None,
        }
    }

    /// Rebuilds a group from its record (Kafka's `ClassicGroup.fromRecord`).
    pub fn from_record(group_id: String, partition: i32, value: GroupMetadataValue) -> Self {
        let mut group = ClassicGroup::new(group_id, partition);
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.generation_id = value.generation;
        group.protocol_name = value.protocol;
        group.leader_id = value.leader;
        group.state_timestamp_ms =
            (value.current_state_timestamp_ms >= 0).then_some(value.current_state_timestamp_ms);
        for m in value.members {
            let protocol = group.protocol_name.clone().unwrap_or_default();
            if let Some(id) = &m.group_instance_id {
                group.static_members.insert(id.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: if m.rebalance_timeout_ms < 0 {
                        m.session_timeout_ms
                    } else {
                        m.rebalance_timeout_ms
                    },
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    heartbeat_deadline_ms: None,
                },
            );
        }
        group.state = if group.members.is_empty() {
            ClassicState::Empty
        } else {
            ClassicState::Stable
        };
        group.subscribed_topics = group.compute_subscribed_topics();
        group
    }

    /// A consumer group turned back into a classic group (Kafka's
    /// `ClassicGroup.fromConsumerGroup`): Stable at `generation_id` with the consumer protocol,
    /// the protocol its members vote for, and each member's assignment from
    /// `assignment(member_id, metadata of the chosen protocol)`. Every member gets a fresh
    /// session. The caller prepares the rebalance that makes them rejoin.
    pub(crate) fn from_migrated(
        group_id: String,
        partition: i32,
        generation_id: i32,
        members: Vec<Member>,
        now_ms: i64,
        assignment: impl Fn(&str, &Bytes) -> Bytes,
    ) -> ClassicGroup {
        let mut group = ClassicGroup::new(group_id, partition);
        group.state = ClassicState::Stable;
        group.state_timestamp_ms = Some(now_ms);
        group.generation_id = generation_id;
        group.protocol_type = Some(super::consumer_protocol::CONSUMER_PROTOCOL_TYPE.to_string());
        for mut m in members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            m.heartbeat_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
            // Kafka's `add` makes the first member added the leader.
            if group.leader_id.is_none() {
                group.leader_id = Some(m.member_id.clone());
            }
            group.members.insert(m.member_id.clone(), m);
        }
        group.protocol_name = group.select_protocol();
        group.subscribed_topics = group.compute_subscribed_topics();
        let protocol = group.protocol_name.clone().unwrap_or_default();
        for m in group.members.values_mut() {
            m.assignment = assignment(&m.member_id, &m.metadata(&protocol));
        }
        group
    }

    /// Answers every parked JoinGroup and SyncGroup with `error` (Kafka's
    /// `completeAllJoinFutures` / `completeAllSyncFutures`), when the group is about to become
    /// a consumer group.
    pub(crate) fn abort_pending(&mut self, ctx: &mut Ctx<'_>, error: i16) {
        for m in self.members.values_mut() {
            if let Some(p) = m.awaiting_join.take() {
                let mut resp = JoinGroupResponse::default()
                    .with_error_code(error)
                    .with_generation_id(-1)
                    .with_member_id(sb(&m.member_id));
                resp.protocol_name = protocol_name_for(p.version, None);
                Self::respond_join(ctx, p, resp);
            }
            if let Some(p) = m.awaiting_sync.take() {
                Self::respond_sync(ctx, p, SyncGroupResponse::default().with_error_code(error));
            }
        }
    }

    /// The record that stores this group now (Kafka's `newGroupMetadataRecord`, v3).
    pub fn to_record(&self) -> crate::group::Record {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let value = GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberMetadata {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        records::group_metadata_record(&self.group_id, &value)
    }

    /// After replay: every loaded member must heartbeat within its session (Kafka's `onLoaded`).
    pub(crate) fn on_loaded(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now_ms;
        for m in self.members.values_mut() {
            m.heartbeat_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
        }
        if self.members.len() > usize::try_from(ctx.config.group_max_size).unwrap_or(usize::MAX) {
            self.prepare_rebalance(ctx);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.state == ClassicState::Empty
    }

    pub fn uses_consumer_protocol(&self) -> bool {
        self.protocol_type.as_deref() == Some("consumer")
    }

    /// Kafka's `isSubscribedToTopic`.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.uses_consumer_protocol(),
        }
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.uses_consumer_protocol() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut all = BTreeSet::new();
        for m in self.members.values() {
            all.extend(records::consumer_subscription_topics(
                &m.metadata(protocol),
            )?);
        }
        Some(all)
    }

    fn transition(&mut self, to: ClassicState, now_ms: i64) {
        self.previous_state = self.state;
        self.state = to;
        self.state_timestamp_ms = Some(now_ms);
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            ClassicState::Stable | ClassicState::CompletingRebalance | ClassicState::Empty
        )
    }

    fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_members.is_empty()
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka's `supportsProtocols`.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == ClassicState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Kafka's `selectProtocol`: each member votes for its first choice among the protocols all
    /// members support; most votes wins (ties: the smallest name, to stay deterministic).
    fn select_protocol(&self) -> Option<String> {
        let candidates: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.protocols.iter().map(|(n, _)| n))
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| &n == name))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(n, _)| n.clone())
    }

    /// Kafka's `validateMember`.
    pub fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), i16> {
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                None => return Err(err(ResponseError::UnknownMemberId)),
                Some(existing) if existing != member_id => {
                    return Err(err(ResponseError::FencedInstanceId))
                }
                Some(_) => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(err(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit` (non-transactional).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if self.state == ClassicState::Dead {
            return Err(err(ResponseError::CoordinatorNotAvailable));
        }
        if generation_id < 0 && self.state == ClassicState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(err(ResponseError::IllegalGeneration));
            }
        } else if self.state != ClassicState::Empty {
            return Err(err(ResponseError::UnknownMemberId));
        }
        if self.state == ClassicState::CompletingRebalance {
            return Err(err(ResponseError::RebalanceInProgress));
        }
        Ok(())
    }

    /// Kafka's `ClassicGroup.validateOffsetCommit` for a TxnOffsetCommit (`isTransactional`):
    /// old versions carry no member id or generation, so an empty id with generation -1 is
    /// accepted in any state, and the group's state is not enforced.
    pub fn validate_txn_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if self.state == ClassicState::Dead {
            return Err(err(ResponseError::CoordinatorNotAvailable));
        }
        if generation_id < 0 && self.state == ClassicState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(err(ResponseError::IllegalGeneration));
            }
        }
        Ok(())
    }

    /// An offset commit keeps a member's session in Stable and PreparingRebalance.
    pub fn on_offset_commit(&mut self, member_id: &str, now_ms: i64) {
        if matches!(
            self.state,
            ClassicState::Stable | ClassicState::PreparingRebalance
        ) {
            if let Some(m) = self.members.get_mut(member_id) {
                m.heartbeat_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Responses

    fn join_response(
        &self,
        version: i16,
        member_id: &str,
        error: i16,
        with_members: bool,
        skip_assignment: bool,
    ) -> JoinGroupResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(&m.member_id))
                        .with_group_instance_id(
                            m.group_instance_id
                                .as_deref()
                                .filter(|_| version >= 5)
                                .map(sb),
                        )
                        .with_metadata(m.metadata(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_error_code(error)
            .with_generation_id(self.generation_id)
            .with_protocol_type(self.protocol_type.as_deref().map(sb))
            .with_protocol_name(protocol_name_for(version, self.protocol_name.as_deref()))
            .with_leader(sb(self.leader_id.as_deref().unwrap_or("")))
            .with_skip_assignment(skip_assignment && version >= 9)
            .with_member_id(sb(member_id))
            .with_members(members)
    }

    fn respond_join(ctx: &mut Ctx<'_>, pending: Pending, response: JoinGroupResponse) {
        ctx.out.push(Output::Respond(
            pending.id,
            ResponseKind::JoinGroup(response),
        ));
    }

    fn respond_sync(ctx: &mut Ctx<'_>, pending: Pending, response: SyncGroupResponse) {
        ctx.out.push(Output::Respond(
            pending.id,
            ResponseKind::SyncGroup(response),
        ));
    }

    // -----------------------------------------------------------------------------------------
    // JoinGroup

    /// JoinGroup to this (existing or just created) classic group.
    pub(crate) fn join(
        &mut self,
        ctx: &mut Ctx<'_>,
        pending: Pending,
        client: &ClientInfo,
        request: &JoinGroupRequest,
    ) {
        let member_id = request.member_id.as_str();
        if !self.accept_joining_member(member_id, ctx.config) {
            self.remove_member(ctx, member_id);
            let mut resp = JoinGroupResponse::default()
                .with_error_code(err(ResponseError::GroupMaxSizeReached));
            resp.protocol_name = protocol_name_for(pending.version, None);
            Self::respond_join(ctx, pending, resp);
            return;
        }
        let protocols: Vec<(String, Bytes)> = request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        let protocol_type = request.protocol_type.as_str();
        let simple_error = |error: ResponseError, member: &str| {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(err(error))
                .with_member_id(sb(member));
            resp.protocol_name = protocol_name_for(pending.version, None);
            resp
        };
        if self.state == ClassicState::Dead {
            Self::respond_join(
                ctx,
                pending,
                simple_error(ResponseError::CoordinatorNotAvailable, member_id),
            );
            return;
        }
        if !self.supports_protocols(protocol_type, &protocols) {
            let reply_id = if member_id.is_empty() { "" } else { member_id };
            Self::respond_join(
                ctx,
                pending,
                simple_error(ResponseError::InconsistentGroupProtocol, reply_id),
            );
            return;
        }
        let rebalance_timeout_ms = if pending.version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        };
        let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
        if member_id.is_empty() {
            let uuid = (ctx.new_uuid)();
            let new_member_id =
                generated_member_id(instance_id.as_deref().unwrap_or(&client.client_id), uuid);
            if let Some(instance) = &instance_id {
                if let Some(existing) = self.static_members.get(instance).cloned() {
                    self.update_static_member_then_rebalance_or_complete_join(
                        ctx,
                        pending,
                        request,
                        protocols,
                        rebalance_timeout_ms,
                        &existing,
                        &new_member_id,
                    );
                } else {
                    self.add_member_then_rebalance_or_complete_join(
                        ctx,
                        pending,
                        client,
                        request,
                        protocols,
                        rebalance_timeout_ms,
                        new_member_id,
                    );
                }
            } else if pending.version >= 4 {
                // KIP-394: the member must come back with the id we hand out, so a client that
                // times out and retries does not leave a ghost member behind.
                self.pending_members.insert(
                    new_member_id.clone(),
                    ctx.now_ms + i64::from(request.session_timeout_ms),
                );
                Self::respond_join(
                    ctx,
                    pending,
                    simple_error(ResponseError::MemberIdRequired, &new_member_id),
                );
            } else {
                self.add_member_then_rebalance_or_complete_join(
                    ctx,
                    pending,
                    client,
                    request,
                    protocols,
                    rebalance_timeout_ms,
                    new_member_id,
                );
            }
            return;
        }
        if self.pending_members.contains_key(member_id) {
            self.add_member_then_rebalance_or_complete_join(
                ctx,
                pending,
                client,
                request,
                protocols,
                rebalance_timeout_ms,
                member_id.to_string(),
            );
            return;
        }
        if let Err(code) = self.validate_member(member_id, instance_id.as_deref()) {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(code)
                .with_member_id(sb(member_id));
            resp.protocol_name = protocol_name_for(pending.version, None);
            Self::respond_join(ctx, pending, resp);
            return;
        }
        let matches = self.members[member_id].matches(&protocols);
        match self.state {
            ClassicState::PreparingRebalance => {
                self.update_member(
                    ctx,
                    member_id,
                    protocols,
                    rebalance_timeout_ms,
                    request.session_timeout_ms,
                    Some(pending),
                );
                self.maybe_prepare_rebalance_or_complete_join(ctx);
            }
            ClassicState::CompletingRebalance if matches => {
                let leader = self.is_leader(member_id);
                let resp = self.join_response(pending.version, member_id, 0, leader, false);
                Self::respond_join(ctx, pending, resp);
            }
            ClassicState::Stable if matches && !self.is_leader(member_id) => {
                let resp = self.join_response(pending.version, member_id, 0, false, false);
                Self::respond_join(ctx, pending, resp);
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.update_member(
                    ctx,
                    member_id,
                    protocols,
                    rebalance_timeout_ms,
                    request.session_timeout_ms,
                    Some(pending),
                );
                self.maybe_prepare_rebalance_or_complete_join(ctx);
            }
            ClassicState::Empty | ClassicState::Dead => {
                let mut resp = JoinGroupResponse::default()
                    .with_error_code(err(ResponseError::UnknownMemberId))
                    .with_member_id(sb(member_id));
                resp.protocol_name = protocol_name_for(pending.version, None);
                Self::respond_join(ctx, pending, resp);
            }
        }
    }

    /// Kafka's `acceptJoiningMember`.
    fn accept_joining_member(&self, member_id: &str, config: &GroupConfig) -> bool {
        let max = usize::try_from(config.group_max_size).unwrap_or(0);
        match self.state {
            ClassicState::Empty | ClassicState::Dead => true,
            ClassicState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self.num_awaiting_join() < max
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max
            }
        }
    }

    fn update_member(
        &mut self,
        ctx: &mut Ctx<'_>,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        pending: Option<Pending>,
    ) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        m.protocols = protocols;
        m.rebalance_timeout_ms = rebalance_timeout_ms;
        m.session_timeout_ms = session_timeout_ms;
        // A duplicate JoinGroup replaces the parked one; the older request must still be
        // answered so the connection does not wait forever.
        if let (Some(old), Some(_)) = (m.awaiting_join, pending) {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(err(ResponseError::UnknownMemberId))
                .with_member_id(sb(""));
            resp.protocol_name = protocol_name_for(old.version, None);
            Self::respond_join(ctx, old, resp);
        }
        m.awaiting_join = pending;
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &mut Ctx<'_>,
        pending: Pending,
        client: &ClientInfo,
        request: &JoinGroupRequest,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        member_id: String,
    ) {
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: client.client_id.clone(),
            client_host: client.client_host.clone(),
            rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type.to_string(),
            protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(pending),
            awaiting_sync: None,
            is_new: true,
            heartbeat_deadline_ms: Some(ctx.now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS),
        };
        if self.state == ClassicState::PreparingRebalance
            && self.previous_state == ClassicState::Empty
        {
            self.new_member_added = true;
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        self.pending_members.remove(&member_id);
        self.members.insert(member_id, member);
        self.maybe_prepare_rebalance_or_complete_join(ctx);
    }

    #[allow(clippy::too_many_arguments)]
    fn update_static_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &mut Ctx<'_>,
        pending: Pending,
        request: &JoinGroupRequest,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        old_member_id: &str,
        new_member_id: &str,
    ) {
        let current_leader = self.leader_id.clone();
        let Some(mut member) = self.members.remove(old_member_id) else {
            return;
        };
        // Fence whoever still holds the old id and is parked.
        if let Some(old) = member.awaiting_join.take() {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(err(ResponseError::FencedInstanceId))
                .with_member_id(sb(old_member_id));
            resp.protocol_name = protocol_name_for(old.version, None);
            Self::respond_join(ctx, old, resp);
        }
        if let Some(old) = member.awaiting_sync.take() {
            Self::respond_sync(
                ctx,
                old,
                SyncGroupResponse::default().with_error_code(err(ResponseError::FencedInstanceId)),
            );
        }
        member.member_id = new_member_id.to_string();
        member.protocols = protocols;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.awaiting_join = Some(pending);
        member.heartbeat_deadline_ms = Some(ctx.now_ms + i64::from(request.session_timeout_ms));
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), new_member_id.to_string());
        }
        if self.is_leader(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_string());
        }
        self.members.insert(new_member_id.to_string(), member);

        match self.state {
            ClassicState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    // Same protocols: persist the new member id, no rebalance (KIP-345).
                    let is_leader = self.is_leader(new_member_id);
                    let response = if pending.version >= 9 {
                        self.join_response(pending.version, new_member_id, 0, is_leader, is_leader)
                    } else {
                        let mut r =
                            self.join_response(pending.version, new_member_id, 0, false, false);
                        r.leader = sb(current_leader.as_deref().unwrap_or(""));
                        r
                    };
                    let mut failure = JoinGroupResponse::default()
                        .with_error_code(err(ResponseError::CoordinatorNotAvailable))
                        .with_generation_id(self.generation_id);
                    failure.protocol_name = protocol_name_for(pending.version, None);
                    if let Some(m) = self.members.get_mut(new_member_id) {
                        m.awaiting_join = None;
                    }
                    ctx.out.push(Output::Append {
                        partition: self.partition,
                        records: vec![self.to_record()],
                        on_success: vec![(pending.id, ResponseKind::JoinGroup(response))],
                        on_failure: vec![(pending.id, ResponseKind::JoinGroup(failure))],
                    });
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(ctx);
                }
            }
            ClassicState::CompletingRebalance => self.prepare_rebalance(ctx),
            _ => self.maybe_complete_join_phase(ctx),
        }
    }

    fn maybe_prepare_rebalance_or_complete_join(&mut self, ctx: &mut Ctx<'_>) {
        if self.can_rebalance() {
            self.prepare_rebalance(ctx);
        } else {
            self.maybe_complete_join_phase(ctx);
        }
    }

    fn maybe_complete_join_phase(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == ClassicState::PreparingRebalance
            && self.previous_state != ClassicState::Empty
            && self.has_all_members_joined()
        {
            self.complete_join(ctx);
        }
    }

    /// Kafka's `prepareRebalance`.
    pub(crate) fn prepare_rebalance(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == ClassicState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ctx, err(ResponseError::RebalanceInProgress));
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let initial = self.state == ClassicState::Empty;
        if initial {
            let delay_ms = i64::from(ctx.config.group_initial_rebalance_delay_ms);
            self.join_timer = Some(JoinTimer::Initial {
                deadline_ms: ctx.now_ms + delay_ms,
                delay_ms,
                remaining_ms: (self.rebalance_timeout_ms() - delay_ms).max(0),
            });
        }
        self.transition(ClassicState::PreparingRebalance, ctx.now_ms);
        if !initial {
            if self.has_all_members_joined() {
                self.complete_join(ctx);
            } else {
                self.join_timer = Some(JoinTimer::Rebalance {
                    deadline_ms: ctx.now_ms + self.rebalance_timeout_ms(),
                });
            }
        }
    }

    fn reset_and_propagate_assignment_error(&mut self, ctx: &mut Ctx<'_>, error: i16) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(p) = m.awaiting_sync.take() {
                m.heartbeat_deadline_ms = Some(ctx.now_ms + i64::from(m.session_timeout_ms));
                ctx.out.push(Output::Respond(
                    p.id,
                    ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(error)),
                ));
            }
        }
    }

    /// Kafka's `completeClassicGroupJoin`.
    fn complete_join(&mut self, ctx: &mut Ctx<'_>) {
        self.join_timer = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(ctx, &id);
        }
        if self.state == ClassicState::Dead {
            return;
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            self.join_timer = Some(JoinTimer::Rebalance {
                deadline_ms: ctx.now_ms + self.rebalance_timeout_ms(),
            });
            return;
        }
        self.init_next_generation(ctx.now_ms);
        if self.state == ClassicState::Empty {
            ctx.out.push(Output::Append {
                partition: self.partition,
                records: vec![self.to_record()],
                on_success: Vec::new(),
                on_failure: Vec::new(),
            });
            return;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let leader = self.is_leader(&id);
            let pending = self.members[&id].awaiting_join;
            if let Some(p) = pending {
                let resp = self.join_response(p.version, &id, 0, leader, false);
                Self::respond_join(ctx, p, resp);
            }
            let m = self.members.get_mut(&id).expect("member listed above"); // ok: listed above under the same borrow
            m.awaiting_join = None;
            m.heartbeat_deadline_ms = Some(ctx.now_ms + i64::from(m.session_timeout_ms));
            m.is_new = false;
            self.pending_sync.insert(id);
        }
        self.sync_deadline = Some((ctx.now_ms + self.rebalance_timeout_ms(), self.generation_id));
    }

    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: i64) {
        // Java int arithmetic, as Kafka's: a generation replayed at i32::MAX wraps.
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(ClassicState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition(ClassicState::CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
    }

    /// Removes a member, answering its parked requests with UNKNOWN_MEMBER_ID so no
    /// connection waits forever (Kafka answers the JoinGroup the same way).
    pub(crate) fn remove_member(&mut self, ctx: &mut Ctx<'_>, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(p) = m.awaiting_join {
                let mut resp = JoinGroupResponse::default()
                    .with_error_code(err(ResponseError::UnknownMemberId))
                    .with_member_id(sb(""));
                resp.protocol_name = protocol_name_for(p.version, None);
                Self::respond_join(ctx, p, resp);
            }
            if let Some(p) = m.awaiting_sync {
                Self::respond_sync(
                    ctx,
                    p,
                    SyncGroupResponse::default()
                        .with_error_code(err(ResponseError::UnknownMemberId)),
                );
            }
            if let Some(instance) = &m.group_instance_id {
                self.static_members.remove(instance);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
    }

    /// A member is gone (session expired or it left): rebalance the rest.
    fn remove_member_and_update(&mut self, ctx: &mut Ctx<'_>, member_id: &str) {
        self.remove_member(ctx, member_id);
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.maybe_prepare_rebalance_or_complete_join(ctx)
            }
            ClassicState::PreparingRebalance if self.has_all_members_joined() => {
                self.complete_join(ctx)
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // SyncGroup

    pub(crate) fn sync(&mut self, ctx: &mut Ctx<'_>, pending: Pending, request: &SyncGroupRequest) {
        let member_id = request.member_id.as_str();
        if let Err(code) = self.validate_sync(request) {
            Self::respond_sync(
                ctx,
                pending,
                SyncGroupResponse::default().with_error_code(code),
            );
            return;
        }
        match self.state {
            ClassicState::PreparingRebalance => Self::respond_sync(
                ctx,
                pending,
                SyncGroupResponse::default()
                    .with_error_code(err(ResponseError::RebalanceInProgress)),
            ),
            ClassicState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(old) = m.awaiting_sync.replace(pending) {
                        Self::respond_sync(
                            ctx,
                            old,
                            SyncGroupResponse::default()
                                .with_error_code(err(ResponseError::UnknownMemberId)),
                        );
                    }
                }
                self.remove_pending_sync(member_id);
                if self.is_leader(member_id) {
                    self.complete_sync(ctx, request);
                }
            }
            ClassicState::Stable => {
                self.remove_pending_sync(member_id);
                let assignment = self.members[member_id].assignment.clone();
                let resp = self.sync_response(pending.version, 0, assignment);
                Self::respond_sync(ctx, pending, resp);
            }
            ClassicState::Empty | ClassicState::Dead => {
                // validate_sync rejects these: an Empty group has no members.
                Self::respond_sync(
                    ctx,
                    pending,
                    SyncGroupResponse::default()
                        .with_error_code(err(ResponseError::UnknownMemberId)),
                );
            }
        }
    }

    fn sync_response(&self, version: i16, error: i16, assignment: Bytes) -> SyncGroupResponse {
        let mut r = SyncGroupResponse::default()
            .with_error_code(error)
            .with_assignment(assignment);
        if error == 0 && version >= 5 {
            r.protocol_type = self.protocol_type.as_deref().map(sb);
            r.protocol_name = self.protocol_name.as_deref().map(sb);
        }
        r
    }

    fn validate_sync(&self, request: &SyncGroupRequest) -> Result<(), i16> {
        if self.state == ClassicState::Dead {
            return Err(err(ResponseError::CoordinatorNotAvailable));
        }
        self.validate_member(
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|s| s.as_str()),
        )?;
        if request.generation_id != self.generation_id {
            return Err(err(ResponseError::IllegalGeneration));
        }
        let inconsistent = |req: Option<&StrBytes>, ours: Option<&String>| match (req, ours) {
            (Some(r), Some(o)) => r.as_str() != o,
            _ => false,
        };
        if inconsistent(request.protocol_type.as_ref(), self.protocol_type.as_ref())
            || inconsistent(request.protocol_name.as_ref(), self.protocol_name.as_ref())
        {
            return Err(err(ResponseError::InconsistentGroupProtocol));
        }
        Ok(())
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    /// The leader's assignment arrived: store it, go Stable, answer every parked SyncGroup
    /// once the group record is durable.
    fn complete_sync(&mut self, ctx: &mut Ctx<'_>, request: &SyncGroupRequest) {
        let assignments: BTreeMap<&str, &Bytes> = request
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str(), &a.assignment))
            .collect();
        for m in self.members.values_mut() {
            m.assignment = assignments
                .get(m.member_id.as_str())
                .map(|b| (*b).clone())
                .unwrap_or_default();
        }
        self.transition(ClassicState::Stable, ctx.now_ms);
        let mut on_success = Vec::new();
        let mut on_failure = Vec::new();
        let now = ctx.now_ms;
        let parked: Vec<(String, Pending)> = self
            .members
            .values()
            .filter_map(|m| m.awaiting_sync.map(|p| (m.member_id.clone(), p)))
            .collect();
        for (id, p) in parked {
            let assignment = self.members[&id].assignment.clone();
            on_success.push((
                p.id,
                ResponseKind::SyncGroup(self.sync_response(p.version, 0, assignment)),
            ));
            on_failure.push((
                p.id,
                ResponseKind::SyncGroup(
                    SyncGroupResponse::default()
                        .with_error_code(err(ResponseError::CoordinatorNotAvailable)),
                ),
            ));
            let m = self.members.get_mut(&id).expect("member listed above"); // ok: listed above under the same borrow
            m.awaiting_sync = None;
            m.heartbeat_deadline_ms = Some(now + i64::from(m.session_timeout_ms));
        }
        ctx.out.push(Output::Append {
            partition: self.partition,
            records: vec![self.to_record()],
            on_success,
            on_failure,
        });
    }

    // -----------------------------------------------------------------------------------------
    // Heartbeat and LeaveGroup

    /// Returns the Heartbeat error code.
    pub fn heartbeat(
        &mut self,
        now_ms: i64,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if self.state == ClassicState::Dead {
            return err(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(code) = self.validate_member(member_id, group_instance_id) {
            return code;
        }
        if generation_id != self.generation_id {
            return err(ResponseError::IllegalGeneration);
        }
        let m = self.members.get_mut(member_id).expect("validated above"); // ok: validated above
        match self.state {
            ClassicState::Empty => err(ResponseError::UnknownMemberId),
            ClassicState::PreparingRebalance => {
                m.heartbeat_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
                err(ResponseError::RebalanceInProgress)
            }
            _ => {
                m.heartbeat_deadline_ms = Some(now_ms + i64::from(m.session_timeout_ms));
                0
            }
        }
    }

    /// Removes the given (member id, instance id) pairs; returns per-member error codes.
    pub(crate) fn leave(
        &mut self,
        ctx: &mut Ctx<'_>,
        members: &[(String, Option<String>)],
    ) -> Vec<i16> {
        let mut codes = Vec::with_capacity(members.len());
        let mut removed_any = false;
        for (member_id, instance_id) in members {
            let code = if member_id.is_empty() {
                match instance_id
                    .as_ref()
                    .and_then(|i| self.static_members.get(i))
                    .cloned()
                {
                    Some(existing) => {
                        self.remove_member(ctx, &existing);
                        0
                    }
                    None => err(ResponseError::UnknownMemberId),
                }
            } else if self.pending_members.contains_key(member_id) {
                self.pending_members.remove(member_id);
                0
            } else {
                match self.validate_member(member_id, instance_id.as_deref()) {
                    Ok(()) => {
                        self.remove_member(ctx, member_id);
                        0
                    }
                    Err(code) => code,
                }
            };
            removed_any |= code == 0;
            codes.push(code);
        }
        if removed_any {
            match self.state {
                ClassicState::Stable | ClassicState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(ctx)
                }
                ClassicState::PreparingRebalance => self.maybe_complete_join_phase(ctx),
                _ => {}
            }
        }
        codes
    }

    // -----------------------------------------------------------------------------------------
    // Timers

    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter_map(|m| m.heartbeat_deadline_ms);
        let pending = self.pending_members.values().copied();
        let join = self.join_timer.map(JoinTimer::deadline_ms);
        let sync = self.sync_deadline.map(|(d, _)| d);
        members.chain(pending).chain(join).chain(sync).min()
    }

    /// Fires every timer due at `ctx.now_ms`, earliest first.
    pub(crate) fn tick(&mut self, ctx: &mut Ctx<'_>) {
        for _ in 0..TIMER_FIRINGS_PER_TICK_MAX {
            let Some(deadline) = self.next_deadline_ms().filter(|d| *d <= ctx.now_ms) else {
                return;
            };
            if let Some(timer) = self.join_timer.filter(|t| t.deadline_ms() == deadline) {
                self.join_timer = None;
                self.fire_join_timer(ctx, timer);
            } else if let Some((_, generation)) = self.sync_deadline.filter(|(d, _)| *d == deadline)
            {
                self.sync_deadline = None;
                self.expire_pending_sync(ctx, generation);
            } else if let Some(id) = self
                .pending_members
                .iter()
                .find(|(_, d)| **d == deadline)
                .map(|(id, _)| id.clone())
            {
                self.pending_members.remove(&id);
                if self.state == ClassicState::PreparingRebalance && self.has_all_members_joined() {
                    self.complete_join(ctx);
                }
            } else if let Some(id) = self
                .members
                .values()
                .find(|m| m.heartbeat_deadline_ms == Some(deadline))
                .map(|m| m.member_id.clone())
            {
                self.expire_member_heartbeat(ctx, &id);
            }
        }
    }

    fn fire_join_timer(&mut self, ctx: &mut Ctx<'_>, timer: JoinTimer) {
        match timer {
            JoinTimer::Initial {
                delay_ms,
                remaining_ms,
                ..
            } if self.new_member_added && remaining_ms != 0 => {
                // Members are still arriving: wait one more delay, within the rebalance timeout.
                self.new_member_added = false;
                let new_delay_ms =
                    i64::from(ctx.config.group_initial_rebalance_delay_ms).min(remaining_ms);
                self.join_timer = Some(JoinTimer::Initial {
                    deadline_ms: ctx.now_ms + new_delay_ms,
                    delay_ms: new_delay_ms,
                    remaining_ms: (remaining_ms - delay_ms).max(0),
                });
            }
            _ => self.complete_join(ctx),
        }
    }

    fn expire_member_heartbeat(&mut self, ctx: &mut Ctx<'_>, member_id: &str) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if m.has_satisfied_heartbeat() {
            // Parked in a rebalance: the session restarts when the rebalance answers it.
            m.heartbeat_deadline_ms = None;
        } else {
            self.remove_member_and_update(ctx, member_id);
        }
    }

    fn expire_pending_sync(&mut self, ctx: &mut Ctx<'_>, generation: i32) {
        if generation != self.generation_id
            || !matches!(
                self.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            )
            || self.pending_sync.is_empty()
        {
            return;
        }
        let laggards: Vec<String> = self.pending_sync.iter().cloned().collect();
        for id in laggards {
            self.remove_member(ctx, &id);
        }
        self.prepare_rebalance(ctx);
    }
}

/// JoinGroup's protocol name is nullable only from v7; older versions need a string.
fn protocol_name_for(version: i16, name: Option<&str>) -> Option<StrBytes> {
    match name {
        Some(n) => Some(sb(n)),
        None if version < 7 => Some(sb("")),
        None => None,
    }
}
