//! Classic members inside a consumer group: the online migration between the classic and the
//! consumer protocol (KIP-848), after Kafka 4.x's `classicGroupJoinToConsumerGroup`,
//! `classicGroupSyncToConsumerGroup`, `classicGroupHeartbeatToConsumerGroup`,
//! `classicGroupLeaveToConsumerGroup` and `ConsumerGroup.fromClassicGroup`.
//!
//! A classic member keeps speaking JoinGroup / SyncGroup / Heartbeat while the coordinator
//! assigns its partitions as it does for every member: its generation is its member epoch, its
//! JoinGroup subscribes and reconciles it, its SyncGroup returns its current assignment encoded
//! with the consumer protocol, and a heartbeat answers REBALANCE_IN_PROGRESS when the member
//! must rejoin to move on. Its JoinGroup protocols and session timeout are persisted in the
//! member record (`ClassicMemberMetadata`), so the group can turn back into a classic group.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, JoinGroupRequest, SyncGroupRequest};
use uuid::Uuid;

use super::super::member::{Member, MemberState, Owned};
use super::super::records::{
    Assignment, ClassicMemberMetadata, MemberMetadataValue, MetadataValue, RecordKey, RecordValue,
};
use super::{ClientInfo, ConsumerGroup};
use crate::group::classic::ClassicGroup;
use crate::group::consumer_protocol::{self, CONSUMER_PROTOCOL_TYPE};
use crate::group::{GroupConfig, Record, TopicView};

/// A classic request refused, with Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicError {
    pub code: i16,
    pub message: String,
}

fn refuse(e: ResponseError, message: impl Into<String>) -> ClassicError {
    ClassicError {
        code: e.code(),
        message: message.into(),
    }
}

/// What a classic JoinGroup to a consumer group comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicJoin {
    /// A v4+ dynamic member without an id: it must rejoin with this one (MEMBER_ID_REQUIRED).
    MemberIdRequired(String),
    /// The member joined or rejoined; answered once its records are written.
    Joined {
        member_id: String,
        /// The member epoch, which a classic member sees as its generation.
        generation_id: i32,
        /// The first protocol the member listed.
        protocol_name: String,
    },
}

impl ConsumerGroup {
    /// Members speaking the classic protocol.
    pub fn num_classic_members(&self) -> usize {
        self.state
            .members
            .values()
            .filter(|m| m.metadata.classic.is_some())
            .count()
    }

    /// Whether every member but `leaving` speaks the classic protocol (Kafka's
    /// `allMembersUseClassicProtocolExcept`).
    pub fn all_members_use_classic_except(&self, leaving: &[String]) -> bool {
        self.state
            .members
            .values()
            .filter(|m| !leaving.contains(&m.member_id))
            .all(|m| m.metadata.classic.is_some())
    }

    /// Kafka's `supportsClassicProtocols`: the consumer protocol type, and a protocol every
    /// classic member supports.
    pub fn supports_classic_protocols(&self, protocol_type: &str, names: &[&str]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE {
            return false;
        }
        if self.state.members.is_empty() {
            return !names.is_empty();
        }
        names.iter().any(|name| {
            self.state
                .members
                .values()
                .filter_map(|m| m.metadata.classic.as_ref())
                .all(|c| c.supported_protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// A classic member's JoinGroup (Kafka's `classicGroupJoinToConsumerGroup`): subscribes the
    /// member with the subscription embedded in its first protocol, then reconciles it as a
    /// heartbeat would, with the partitions the subscription says it owns. On error no state
    /// changes and no records.
    #[allow(clippy::too_many_arguments)]
    pub fn classic_join(
        &mut self,
        req: &JoinGroupRequest,
        version: i16,
        client: &ClientInfo,
        now_ms: i64,
        topics: &dyn TopicView,
        config: &GroupConfig,
        records: &mut Vec<Record>,
    ) -> Result<ClassicJoin, ClassicError> {
        let instance_id = req.group_instance_id.as_deref();
        let is_unknown_member = req.member_id.is_empty();
        let member_id = if is_unknown_member {
            crate::controller::kafka_uuid_string(&Uuid::new_v4())
        } else {
            req.member_id.to_string()
        };
        let size_max = usize::try_from(config.consumer_group_max_size).unwrap_or(0);
        if self.state.members.len() >= size_max && !self.state.members.contains_key(&member_id) {
            return Err(refuse(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {size_max} members."
                ),
            ));
        }
        let names: Vec<&str> = req.protocols.iter().map(|p| p.name.as_str()).collect();
        if !self.supports_classic_protocols(req.protocol_type.as_str(), &names) {
            return Err(refuse(
                ResponseError::InconsistentGroupProtocol,
                format!("Member {member_id}'s protocols are not supported."),
            ));
        }
        // Kafka's `JoinGroupRequest.requiresKnownMemberId`.
        if version >= 4 && is_unknown_member && instance_id.is_none() {
            return Ok(ClassicJoin::MemberIdRequired(member_id));
        }
        let Some(first) = req.protocols.first() else {
            unreachable!("supports_classic_protocols refuses an empty protocol list");
        };
        // Kafka fails this with an IllegalStateException, which reaches the client as
        // UNKNOWN_SERVER_ERROR.
        let subscription =
            consumer_protocol::decode_subscription(&first.metadata).map_err(|e| {
                refuse(
                    ResponseError::UnknownServerError,
                    format!(
                        "Malformed embedded consumer protocol in subscription deserialization: {e}"
                    ),
                )
            })?;

        // The member: found, created, or a static member's copy under the new id.
        let mut replaced: Option<String> = None;
        let member = match instance_id {
            None => self
                .state
                .members
                .get(&member_id)
                .cloned()
                .unwrap_or_else(|| Member::new(member_id.clone())),
            Some(instance_id) => match self.static_member(instance_id).cloned() {
                Some(old) if is_unknown_member => {
                    let mut m = old.clone();
                    m.member_id.clone_from(&member_id);
                    m.member_epoch = 0;
                    m.previous_member_epoch = 0;
                    replaced = Some(old.member_id);
                    m
                }
                None if is_unknown_member => Member::new(member_id.clone()),
                None => {
                    return Err(refuse(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance_id} is unknown."),
                    ))
                }
                Some(old) => {
                    if old.member_id != member_id {
                        return Err(refuse(
                            ResponseError::FencedInstanceId,
                            format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", old.member_id),
                        ));
                    }
                    old
                }
            },
        };
        let is_new = replaced.is_none() && !self.state.members.contains_key(&member_id);
        if let Some(old_id) = &replaced {
            self.replace_member(old_id, &member, records);
        }

        let mut meta = member.metadata.clone();
        if let Some(i) = instance_id {
            meta.instance_id = Some(i.to_string());
        }
        if let Some(rack) = &subscription.rack_id {
            meta.rack_id = Some(rack.clone());
        }
        if req.rebalance_timeout_ms != -1 {
            meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        meta.subscribed_topic_names.clone_from(&subscription.topics);
        // A classic member cannot subscribe by regex.
        meta.subscribed_topic_regex = None;
        meta.client_id.clone_from(&client.client_id);
        meta.client_host.clone_from(&client.client_host);
        meta.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: req.session_timeout_ms,
            supported_protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
        });
        let owned: Owned = Some(topic_ids(&subscription.owned_partitions, topics));
        self.subscribe_and_reconcile(
            &member, meta, is_new, &owned, now_ms, topics, config, records,
        );

        let updated = &self.state.members[&member_id];
        self.join_deadline_ms.remove(&member_id);
        self.session_deadline_ms.insert(
            member_id.clone(),
            now_ms + i64::from(req.session_timeout_ms),
        );
        self.sync_deadline_ms.insert(
            member_id.clone(),
            now_ms + i64::from(req.rebalance_timeout_ms.max(0)),
        );
        Ok(ClassicJoin::Joined {
            member_id: member_id.clone(),
            generation_id: updated.member_epoch,
            protocol_name: first.name.to_string(),
        })
    }

    /// A classic member's SyncGroup (Kafka's `classicGroupSyncToConsumerGroup`): its current
    /// assignment, encoded with the consumer protocol version of its subscription.
    pub fn classic_sync(
        &mut self,
        req: &SyncGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Result<Bytes, ClassicError> {
        let member = self
            .classic_member(req.member_id.as_str(), req.group_instance_id.as_deref())?
            .clone();
        check_generation(&member, req.generation_id)?;
        let protocol = first_protocol(&member);
        if let Some(t) = req.protocol_type.as_deref() {
            if t != CONSUMER_PROTOCOL_TYPE {
                return Err(refuse(
                    ResponseError::InconsistentGroupProtocol,
                    format!("The protocol type {t} from member {} request is not equal to the group protocol type {CONSUMER_PROTOCOL_TYPE}.", member.member_id),
                ));
            }
        }
        if let Some(n) = req.protocol_name.as_deref() {
            if n != protocol.0 {
                return Err(refuse(
                    ResponseError::InconsistentGroupProtocol,
                    format!("The protocol name {n} from member {} request is not equal to the protocol name {} returned in the join response.", member.member_id, protocol.0),
                ));
            }
        }
        // Kafka's `throwIfRebalanceInProgress`: a member in UNREVOKED_PARTITIONS has rejoined
        // already and first finishes revoking.
        if self.state.assignment_epoch > member.member_epoch
            && member.state != MemberState::UnrevokedPartitions
        {
            self.schedule_join_timeout(&member, now_ms);
            return Err(refuse(
                ResponseError::RebalanceInProgress,
                format!("A new rebalance is triggered in group {} and member {} should rejoin to catch up.", self.state.group_id, member.member_id),
            ));
        }
        self.sync_deadline_ms.remove(&member.member_id);
        self.session_deadline_ms.insert(
            member.member_id.clone(),
            now_ms + i64::from(classic_session_timeout_ms(&member)),
        );
        let version = consumer_protocol::version(&protocol.1).unwrap_or(0);
        Ok(consumer_protocol::encode_assignment(
            version,
            &topic_names(&member.assigned, topics),
        ))
    }

    /// A classic member's Heartbeat (Kafka's `classicGroupHeartbeatToConsumerGroup`): keeps its
    /// session, and answers REBALANCE_IN_PROGRESS when it must rejoin: its epoch is behind the
    /// target assignment, it has partitions to revoke, or partitions it waits for were released.
    pub fn classic_heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        now_ms: i64,
    ) -> Result<(), ClassicError> {
        let member = self
            .classic_member(req.member_id.as_str(), req.group_instance_id.as_deref())?
            .clone();
        check_generation(&member, req.generation_id)?;
        self.session_deadline_ms.insert(
            member.member_id.clone(),
            now_ms + i64::from(classic_session_timeout_ms(&member)),
        );
        if member.member_epoch < self.state.assignment_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions
                && !self.waiting_on_unreleased_partition(&member))
        {
            self.schedule_join_timeout(&member, now_ms);
            return Err(refuse(ResponseError::RebalanceInProgress, ""));
        }
        Ok(())
    }

    /// The member a classic LeaveGroup names (Kafka's `classicGroupLeaveToConsumerGroup`):
    /// by member id, or by instance id (then an empty member id is an admin removal).
    pub fn classic_leaving_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<String, ClassicError> {
        match instance_id {
            None => self
                .state
                .members
                .get(member_id)
                .map(|m| m.member_id.clone())
                .ok_or_else(|| {
                    refuse(
                        ResponseError::UnknownMemberId,
                        format!("Member {member_id} is not a member of the group."),
                    )
                }),
            Some(instance_id) => {
                let member = self.static_member(instance_id).ok_or_else(|| {
                    refuse(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance_id} is unknown."),
                    )
                })?;
                if !member_id.is_empty() && member.member_id != member_id {
                    return Err(refuse(
                        ResponseError::FencedInstanceId,
                        format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", member.member_id),
                    ));
                }
                Ok(member.member_id.clone())
            }
        }
    }

    /// Kafka's `ConsumerGroup.fromClassicGroup` + `createConsumerGroupRecords`: the consumer
    /// group a live classic group becomes when a consumer-protocol member joins it. Every
    /// member keeps its assignment at the classic generation, which becomes the group and
    /// assignment epoch; members that were mid-rebalance rejoin when told to.
    ///
    /// `Err` carries Kafka's message for a group that cannot be converted.
    pub fn from_classic(
        classic: &ClassicGroup,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Result<(ConsumerGroup, Vec<Record>), String> {
        let group_id = classic.group_id.clone();
        let generation = classic.generation_id;
        let protocol = classic.protocol_name.clone().unwrap_or_default();
        let malformed = || {
            format!("Cannot upgrade classic group {group_id} to consumer group because the embedded consumer protocol is malformed.")
        };
        let mut members = Vec::new();
        for m in classic.members.values() {
            let assigned = if m.assignment.is_empty() {
                // A member that joined and never synced has no assignment yet.
                Assignment::new()
            } else {
                let a =
                    consumer_protocol::decode_assignment(&m.assignment).map_err(|_| malformed())?;
                if a.user_data.as_ref().is_some_and(|d| !d.is_empty()) {
                    return Err(format!("Cannot upgrade classic group {group_id} to consumer group because an unsupported custom assignor is in use. Please refer to the documentation or switch to a default assignor before re-attempting the upgrade."));
                }
                topic_ids(&a.partitions, topics)
                    .into_iter()
                    .collect_assignment()
            };
            let metadata = m
                .protocols
                .iter()
                .find(|(name, _)| *name == protocol)
                .map(|(_, metadata)| metadata.clone())
                .unwrap_or_default();
            let subscription =
                consumer_protocol::decode_subscription(&metadata).map_err(|_| malformed())?;
            let mut member = Member::new(m.member_id.clone());
            member.member_epoch = generation;
            member.previous_member_epoch = generation;
            member.state = MemberState::Stable;
            member.assigned = assigned;
            member.metadata = MemberMetadataValue {
                instance_id: m.group_instance_id.clone(),
                rack_id: subscription.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: subscription.topics.clone(),
                subscribed_topic_regex: None,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: None,
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: m.session_timeout_ms,
                    supported_protocols: m.protocols.clone(),
                }),
            };
            members.push(member);
        }

        let mut group = ConsumerGroup::new(group_id.clone());
        let mut records = Vec::new();
        for m in &members {
            group.emit(
                &mut records,
                RecordKey::MemberMetadata {
                    group_id: group_id.clone(),
                    member_id: m.member_id.clone(),
                },
                Some(RecordValue::MemberMetadata(m.metadata.clone())),
            );
        }
        let metadata_hash = group.compute_metadata_hash(topics);
        group.emit(
            &mut records,
            RecordKey::Metadata {
                group_id: group_id.clone(),
            },
            Some(RecordValue::Metadata(MetadataValue {
                epoch: generation,
                metadata_hash,
            })),
        );
        for m in &members {
            group.emit(
                &mut records,
                RecordKey::TargetAssignmentMember {
                    group_id: group_id.clone(),
                    member_id: m.member_id.clone(),
                },
                Some(RecordValue::TargetAssignmentMember(m.assigned.clone())),
            );
        }
        group.emit(
            &mut records,
            RecordKey::TargetAssignmentMetadata {
                group_id: group_id.clone(),
            },
            Some(RecordValue::TargetAssignmentMetadata {
                assignment_epoch: generation,
            }),
        );
        for m in &members {
            group.emit(
                &mut records,
                RecordKey::CurrentMemberAssignment {
                    group_id: group_id.clone(),
                    member_id: m.member_id.clone(),
                },
                Some(RecordValue::CurrentMemberAssignment(m.current_value())),
            );
            group.session_deadline_ms.insert(
                m.member_id.clone(),
                now_ms + i64::from(classic_session_timeout_ms(m)),
            );
        }
        Ok((group, records))
    }

    /// The classic member `member_id` (or the static member `instance_id`), as Kafka's
    /// `validateConsumerGroupMember` + `throwIfMemberDoesNotUseClassicProtocol` find it.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&Member, ClassicError> {
        let member = match instance_id {
            None => self.state.members.get(member_id).ok_or_else(|| {
                refuse(
                    ResponseError::UnknownMemberId,
                    format!("Member {member_id} is not a member of the group."),
                )
            })?,
            Some(instance_id) => {
                let member = self.static_member(instance_id).ok_or_else(|| {
                    refuse(
                        ResponseError::UnknownMemberId,
                        format!(
                            "Member with instance id {instance_id} is not a member of group {}.",
                            self.state.group_id
                        ),
                    )
                })?;
                if member.member_id != member_id {
                    return Err(refuse(
                        ResponseError::FencedInstanceId,
                        format!("Static member {member_id} with instance id {instance_id} was fenced by member {}.", member.member_id),
                    ));
                }
                member
            }
        };
        if member.metadata.classic.is_none() {
            return Err(refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} does not use the classic protocol.",
                    member.member_id
                ),
            ));
        }
        Ok(member)
    }

    /// Kafka's `scheduleConsumerGroupJoinTimeoutIfAbsent`.
    fn schedule_join_timeout(&mut self, member: &Member, now_ms: i64) {
        self.join_deadline_ms
            .entry(member.member_id.clone())
            .or_insert(now_ms + i64::from(member.metadata.rebalance_timeout_ms.max(0)));
    }

    /// Kafka's `waitingOnUnreleasedPartition`: a target partition the member does not have yet
    /// is still owned by another member.
    fn waiting_on_unreleased_partition(&self, member: &Member) -> bool {
        if member.state != MemberState::UnreleasedPartitions {
            return false;
        }
        let held = self.held_partitions();
        let Some(target) = self.state.target.get(&member.member_id) else {
            return false;
        };
        target.iter().any(|(topic_id, partitions)| {
            partitions.iter().any(|p| {
                !member
                    .assigned
                    .get(topic_id)
                    .is_some_and(|own| own.contains(p))
                    && held.contains(&(*topic_id, *p))
            })
        })
    }
}

/// The first protocol a classic member listed: the one it was told in its JoinGroup answer.
fn first_protocol(member: &Member) -> (String, Bytes) {
    member
        .metadata
        .classic
        .as_ref()
        .and_then(|c| c.supported_protocols.first().cloned())
        .unwrap_or_default()
}

fn classic_session_timeout_ms(member: &Member) -> i32 {
    member
        .metadata
        .classic
        .as_ref()
        .map_or(0, |c| c.session_timeout_ms)
}

/// Kafka's `throwIfGenerationIdUnmatched`.
fn check_generation(member: &Member, generation_id: i32) -> Result<(), ClassicError> {
    if member.member_epoch != generation_id {
        return Err(refuse(
            ResponseError::IllegalGeneration,
            format!(
                "The request generation id {generation_id} is not equal to the member epoch {} of member {}.",
                member.member_epoch, member.member_id
            ),
        ));
    }
    Ok(())
}

/// Partitions by topic name to partitions by topic id; topics that do not exist are dropped.
fn topic_ids(partitions: &[(String, Vec<i32>)], topics: &dyn TopicView) -> Vec<(Uuid, Vec<i32>)> {
    partitions
        .iter()
        .filter_map(|(name, ps)| Some((topics.topic_by_name(name)?.0, ps.clone())))
        .collect()
}

/// Partitions by topic id to partitions by topic name, for the consumer protocol.
pub(crate) fn topic_names(
    assignment: &Assignment,
    topics: &dyn TopicView,
) -> Vec<(String, Vec<i32>)> {
    assignment
        .iter()
        .filter_map(|(id, ps)| Some((topics.topic_by_id(id)?.0, ps.iter().copied().collect())))
        .collect()
}

/// Collects `(topic id, partitions)` pairs into an [`Assignment`], merging repeats.
trait CollectAssignment {
    fn collect_assignment(self) -> Assignment;
}

impl<I: Iterator<Item = (Uuid, Vec<i32>)>> CollectAssignment for I {
    fn collect_assignment(self) -> Assignment {
        let mut out = Assignment::new();
        for (topic_id, partitions) in self {
            if !partitions.is_empty() {
                out.entry(topic_id).or_default().extend(partitions);
            }
        }
        out
    }
}
