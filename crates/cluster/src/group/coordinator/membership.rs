//! The membership requests: classic JoinGroup / SyncGroup / Heartbeat / LeaveGroup and the
//! KIP-848 ConsumerGroupHeartbeat, routed to the group they name.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::*;
use crate::group::consumer::LEAVE_GROUP_MEMBER_EPOCH;

impl GroupCoordinator {
    // -----------------------------------------------------------------------------------------
    // Classic protocol

    pub(super) fn ctx<'a>(
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

    pub(super) fn join_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        client: &ClientInfo,
        r: &JoinGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
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
                // A classic member joining a live consumer group (online migration).
                return self.classic_join_to_consumer(out, pending, client, r, now_ms, topics);
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

    pub(super) fn classic_mut(&mut self, group_id: &str) -> Option<&mut ClassicGroup> {
        match self.groups.get_mut(group_id) {
            Some(Group::Classic(g)) => Some(g),
            _ => None,
        }
    }

    pub(super) fn sync_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &SyncGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
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
        match self.groups.get_mut(r.group_id.as_str()) {
            Some(Group::Classic(g)) if !g.is_empty() => {
                let mut ctx = Self::ctx(&config, out, &mut uuid, now_ms);
                g.sync(&mut ctx, pending, r);
            }
            Some(Group::Consumer(g)) if !g.is_empty() => {
                self.classic_sync_to_consumer(out, pending, r, now_ms, topics);
            }
            // Missing or empty.
            _ => reply(out, ResponseError::UnknownMemberId),
        }
    }

    pub(super) fn heartbeat(&mut self, r: &HeartbeatRequest, now_ms: i64) -> i16 {
        if r.group_id.is_empty() {
            return err(ResponseError::InvalidGroupId);
        }
        match self.groups.get_mut(r.group_id.as_str()) {
            Some(Group::Classic(g)) => g.heartbeat(
                now_ms,
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                r.generation_id,
            ),
            Some(Group::Consumer(g)) => match g.classic_heartbeat(r, now_ms) {
                Ok(()) => 0,
                Err(e) => e.code,
            },
            None => err(ResponseError::UnknownMemberId),
        }
    }

    pub(super) fn leave_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &LeaveGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
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
        let leave_response = |codes: &[i16]| {
            if pending.version < 3 {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
            } else {
                LeaveGroupResponse::default().with_members(
                    members
                        .iter()
                        .zip(codes)
                        .map(|((member_id, instance), code)| {
                            leave_group_response::MemberResponse::default()
                                .with_member_id(sb(member_id))
                                .with_group_instance_id(instance.as_deref().map(sb))
                                .with_error_code(*code)
                        })
                        .collect(),
                )
            }
        };
        if let Some(Group::Consumer(_)) = self.groups.get(r.group_id.as_str()) {
            let group_id = r.group_id.as_str();
            let mut responses = Vec::new();
            let (codes, records) =
                self.classic_leave_to_consumer(group_id, &members, now_ms, topics, &mut responses);
            let resp = leave_response(&codes);
            if records.is_empty() {
                respond(out, resp);
            } else {
                let failure = LeaveGroupResponse::default().with_error_code(write_failure());
                out.push(Output::Append {
                    partition: self.partition_for(group_id),
                    records,
                    on_success: vec![(pending.id, ResponseKind::LeaveGroup(resp))],
                    on_failure: vec![(pending.id, ResponseKind::LeaveGroup(failure))],
                });
            }
            out.extend(responses);
            return;
        }
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
        let resp = leave_response(&codes);
        respond(out, resp);
        out.extend(responses);
    }
    // -----------------------------------------------------------------------------------------
    // KIP-848

    /// The rest of a ConsumerGroupHeartbeat that upgraded a classic group: the heartbeat runs
    /// on the converted group, which replaces the classic one only if the heartbeat succeeds
    /// (Kafka discards the conversion's records with a failed heartbeat's).
    #[allow(clippy::too_many_arguments)]
    fn join_upgraded_group(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        client: &ClientInfo,
        r: &ConsumerGroupHeartbeatRequest,
        now_ms: i64,
        topics: &dyn TopicView,
        upgraded: Result<(ConsumerGroup, Vec<Record>), String>,
    ) {
        let group_id = r.group_id.as_str();
        let (mut group, mut records) = match upgraded {
            Ok(upgraded) => upgraded,
            Err(message) => {
                let resp = ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(err(ResponseError::GroupIdNotFound))
                    .with_error_message(Some(sb(&message)));
                out.push(Output::Respond(
                    pending.id,
                    ResponseKind::ConsumerGroupHeartbeat(resp),
                ));
                return;
            }
        };
        let (resp, new_records) =
            group.heartbeat_from(r, pending.version, client, now_ms, topics, &self.config);
        if resp.error_code != 0 {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::ConsumerGroupHeartbeat(resp),
            ));
            return;
        }
        records.extend(new_records);
        // Classic members parked in a rebalance rejoin the consumer group (Kafka completes
        // their futures with REBALANCE_IN_PROGRESS).
        let config = self.config.clone();
        let mut uuid = Uuid::nil;
        if let Some(Group::Classic(classic)) = self.groups.get_mut(group_id) {
            let mut ctx = Self::ctx(&config, out, &mut uuid, now_ms);
            classic.abort_pending(&mut ctx, err(ResponseError::RebalanceInProgress));
        }
        tracing::info!(group_id, "converted the classic group to a consumer group");
        self.groups
            .insert(group_id.to_string(), Group::Consumer(group));
        let failure = ConsumerGroupHeartbeatResponse::default().with_error_code(write_failure());
        out.push(Output::Append {
            partition: self.partition_for(group_id),
            records,
            on_success: vec![(pending.id, ResponseKind::ConsumerGroupHeartbeat(resp))],
            on_failure: vec![(pending.id, ResponseKind::ConsumerGroupHeartbeat(failure))],
        });
    }

    pub(super) fn consumer_heartbeat(
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
            Some(Group::Classic(g)) if !g.is_empty() && r.member_epoch == 0 => {
                // A consumer-protocol member joins a live classic group: online upgrade.
                let upgraded = self.upgrade(g, now_ms, topics);
                return self.join_upgraded_group(out, pending, client, r, now_ms, topics, upgraded);
            }
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
            Some(Group::Consumer(g)) if r.member_epoch == LEAVE_GROUP_MEMBER_EPOCH => {
                // The last consumer-protocol member leaving a group of classic members turns
                // it back into a classic group (online downgrade).
                if let Ok(member_id) =
                    g.classic_leaving_member(r.member_id.as_str(), r.instance_id.as_deref())
                {
                    let mut responses = Vec::new();
                    let leaving = [member_id];
                    if self.may_downgrade(group_id, &leaving) {
                        let records = self.fence_or_downgrade(
                            group_id,
                            &leaving,
                            now_ms,
                            topics,
                            &mut responses,
                        );
                        let resp = ConsumerGroupHeartbeatResponse::default()
                            .with_member_id(Some(r.member_id.clone()))
                            .with_member_epoch(LEAVE_GROUP_MEMBER_EPOCH);
                        let failure = ConsumerGroupHeartbeatResponse::default()
                            .with_error_code(write_failure());
                        out.push(Output::Append {
                            partition,
                            records,
                            on_success: vec![(
                                pending.id,
                                ResponseKind::ConsumerGroupHeartbeat(resp),
                            )],
                            on_failure: vec![(
                                pending.id,
                                ResponseKind::ConsumerGroupHeartbeat(failure),
                            )],
                        });
                        out.extend(responses);
                        return;
                    }
                }
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
}
