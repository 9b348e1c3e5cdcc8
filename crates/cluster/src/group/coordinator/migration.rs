//! Online migration between the classic and the consumer protocol
//! (`group.consumer.migration.policy`, Kafka 4.x's default `bidirectional`):
//!
//! - **Upgrade**: a ConsumerGroupHeartbeat joining a live classic group turns it into a consumer
//!   group whose members keep their assignments (`ConsumerGroup::from_classic`); the classic
//!   members go on with JoinGroup / SyncGroup / Heartbeat inside it.
//! - **Classic members in a consumer group**: their requests are served by the consumer group
//!   (`consumer::group::classic_members`).
//! - **Downgrade**: when the last consumer-protocol member leaves or is fenced and only classic
//!   members remain, the group turns back into a classic group and rebalances
//!   (`ClassicGroup::from_migrated`).
//!
//! Each conversion writes the old group's tombstones and the new group's records in one
//! append, so a replay rebuilds whichever group was last written.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::*;
use crate::group::classic::Member as ClassicMember;
use crate::group::consumer::ClassicJoin;
use crate::group::consumer_protocol::{self, CONSUMER_PROTOCOL_TYPE};

impl GroupCoordinator {
    /// A classic member's JoinGroup to a consumer group with members (Kafka's
    /// `classicGroupJoinToConsumerGroup`).
    pub(super) fn classic_join_to_consumer(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        client: &ClientInfo,
        r: &JoinGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        let respond = |out: &mut Vec<Output>, resp: JoinGroupResponse| {
            out.push(Output::Respond(pending.id, ResponseKind::JoinGroup(resp)));
        };
        let error = |code: i16, member_id: &str| {
            let mut resp = JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(sb(member_id));
            if pending.version < 7 {
                resp.protocol_name = Some(sb(""));
            }
            resp
        };
        let group_id = r.group_id.as_str();
        if self.config.consumer_group_migration_policy == MigrationPolicy::Disabled {
            tracing::info!(
                group_id,
                "cannot join the consumer group with the classic protocol: migration is disabled"
            );
            return respond(
                out,
                error(
                    err(ResponseError::InconsistentGroupProtocol),
                    r.member_id.as_str(),
                ),
            );
        }
        let partition = self.partition_for(group_id);
        // A classic static member replacing the group's last consumer-protocol member (by
        // instance id, as a restarted client does) turns the group back into a classic group
        // (Kafka's validateOnlineDowngradeWithReplacedMember).
        let downgrade = self.may_downgrade_with_replaced(group_id, r);
        let Some(Group::Consumer(group)) = self.groups.get_mut(group_id) else {
            unreachable!("the caller found a consumer group");
        };
        let mut records = Vec::new();
        let joined = group.classic_join(
            r,
            pending.version,
            client,
            now_ms,
            topics,
            &self.config,
            &mut records,
        );
        match joined {
            Err(e) => {
                debug_assert!(records.is_empty(), "a refused join writes nothing");
                respond(out, error(e.code, r.member_id.as_str()));
            }
            Ok(ClassicJoin::MemberIdRequired(member_id)) => {
                respond(out, error(err(ResponseError::MemberIdRequired), &member_id))
            }
            Ok(ClassicJoin::Joined {
                member_id,
                generation_id,
                protocol_name,
            }) => {
                let resp = JoinGroupResponse::default()
                    .with_member_id(sb(&member_id))
                    .with_generation_id(generation_id)
                    .with_protocol_type(Some(sb(CONSUMER_PROTOCOL_TYPE)))
                    .with_protocol_name(Some(sb(&protocol_name)));
                if downgrade {
                    let mut responses = Vec::new();
                    records.extend(self.downgrade(group_id, &[], now_ms, topics, &mut responses));
                    out.extend(responses);
                }
                if records.is_empty() {
                    return respond(out, resp);
                }
                out.push(Output::Append {
                    partition,
                    records,
                    on_success: vec![(pending.id, ResponseKind::JoinGroup(resp))],
                    on_failure: vec![(
                        pending.id,
                        ResponseKind::JoinGroup(error(write_failure(), &member_id)),
                    )],
                });
            }
        }
    }

    /// A classic member's SyncGroup to a consumer group (Kafka's
    /// `classicGroupSyncToConsumerGroup`): its assignment comes from the coordinator.
    pub(super) fn classic_sync_to_consumer(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &SyncGroupRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        let Some(Group::Consumer(group)) = self.groups.get_mut(r.group_id.as_str()) else {
            unreachable!("the caller found a consumer group");
        };
        let resp = match group.classic_sync(r, now_ms, topics) {
            Ok(assignment) => SyncGroupResponse::default()
                .with_protocol_type(r.protocol_type.clone())
                .with_protocol_name(r.protocol_name.clone())
                .with_assignment(assignment),
            Err(e) => SyncGroupResponse::default().with_error_code(e.code),
        };
        out.push(Output::Respond(pending.id, ResponseKind::SyncGroup(resp)));
    }

    /// A classic LeaveGroup to a consumer group (Kafka's `classicGroupLeaveToConsumerGroup`):
    /// each named member is looked up alone; the valid ones are fenced together.
    pub(super) fn classic_leave_to_consumer(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
        topics: &dyn TopicView,
        out: &mut Vec<Output>,
    ) -> (Vec<i16>, Vec<Record>) {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            unreachable!("the caller found a consumer group");
        };
        let mut codes = Vec::with_capacity(members.len());
        let mut leaving: Vec<String> = Vec::new();
        for (member_id, instance_id) in members {
            match group.classic_leaving_member(member_id, instance_id.as_deref()) {
                Ok(id) => {
                    codes.push(0);
                    if !leaving.contains(&id) {
                        leaving.push(id);
                    }
                }
                Err(e) => codes.push(e.code),
            }
        }
        let records = self.fence_or_downgrade(group_id, &leaving, now_ms, topics, out);
        (codes, records)
    }

    /// Removes `member_ids` from consumer group `group_id`, or turns the group back into a
    /// classic group when only classic members would remain and the policy allows it (Kafka's
    /// `consumerGroupFenceMembers`). Returns the records to append; responses of the classic
    /// group, if any, go to `out`.
    pub(super) fn fence_or_downgrade(
        &mut self,
        group_id: &str,
        member_ids: &[String],
        now_ms: i64,
        topics: &dyn TopicView,
        out: &mut Vec<Output>,
    ) -> Vec<Record> {
        if member_ids.is_empty() || !matches!(self.groups.get(group_id), Some(Group::Consumer(_))) {
            return Vec::new();
        }
        if self.may_downgrade(group_id, member_ids) {
            return self.downgrade(group_id, member_ids, now_ms, topics, out);
        }
        let Some(Group::Consumer(group)) = self.groups.get_mut(group_id) else {
            unreachable!("checked above");
        };
        group.fence_members(member_ids, topics)
    }

    /// Kafka's `validateOnlineDowngradeWithReplacedMember`: a JoinGroup with an instance id
    /// and no member id replaces that static member; if it is the only member not speaking
    /// the classic protocol, only classic members remain.
    fn may_downgrade_with_replaced(&self, group_id: &str, r: &JoinGroupRequest) -> bool {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            return false;
        };
        let Some(instance_id) = r.group_instance_id.as_deref() else {
            return false;
        };
        if !r.member_id.is_empty() {
            return false;
        }
        let Some(replaced) = group
            .members()
            .find(|m| m.metadata.instance_id.as_deref() == Some(instance_id))
        else {
            return false;
        };
        replaced.metadata.classic.is_none()
            && group.all_members_use_classic_except(std::slice::from_ref(&replaced.member_id))
            && self
                .config
                .consumer_group_migration_policy
                .is_downgrade_enabled()
            && group.members().count()
                <= usize::try_from(self.config.group_max_size).unwrap_or(usize::MAX)
    }

    /// Kafka's `validateOnlineDowngradeWithFencedMembers`.
    pub(super) fn may_downgrade(&self, group_id: &str, leaving: &[String]) -> bool {
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            return false;
        };
        let remaining = group
            .members()
            .filter(|m| !leaving.contains(&m.member_id))
            .count();
        if !group.all_members_use_classic_except(leaving) || remaining == 0 {
            return false;
        }
        if !self
            .config
            .consumer_group_migration_policy
            .is_downgrade_enabled()
        {
            tracing::info!(
                group_id,
                "cannot downgrade the consumer group to a classic group: online downgrade is disabled"
            );
            return false;
        }
        if remaining > usize::try_from(self.config.group_max_size).unwrap_or(usize::MAX) {
            tracing::info!(
                group_id,
                "cannot downgrade the consumer group to a classic group: it is larger than the classic group max size"
            );
            return false;
        }
        true
    }

    /// Kafka's `convertToClassicGroup` for leaving members: the consumer group's tombstones and
    /// the classic group's record, then a rebalance that makes the members rejoin.
    fn downgrade(
        &mut self,
        group_id: &str,
        leaving: &[String],
        now_ms: i64,
        topics: &dyn TopicView,
        out: &mut Vec<Output>,
    ) -> Vec<Record> {
        let partition = self.partition_for(group_id);
        let Some(Group::Consumer(group)) = self.groups.get(group_id) else {
            unreachable!("may_downgrade found a consumer group");
        };
        let members: Vec<ClassicMember> = group
            .members()
            .filter(|m| !leaving.contains(&m.member_id))
            .map(|m| {
                let classic = m
                    .metadata
                    .classic
                    .clone()
                    .expect("may_downgrade checked that every remaining member is classic"); // ok: checked by may_downgrade
                ClassicMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.metadata.instance_id.clone(),
                    client_id: m.metadata.client_id.clone(),
                    client_host: m.metadata.client_host.clone(),
                    rebalance_timeout_ms: m.metadata.rebalance_timeout_ms,
                    session_timeout_ms: classic.session_timeout_ms,
                    protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
                    protocols: classic.supported_protocols,
                    assignment: bytes::Bytes::new(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    heartbeat_deadline_ms: None,
                }
            })
            .collect();
        let mut records = group.tombstones();
        let mut classic = ClassicGroup::from_migrated(
            group_id.to_string(),
            partition,
            group.group_epoch(),
            members,
            now_ms,
            |member_id, metadata| {
                let version = consumer_protocol::version(metadata).unwrap_or(0);
                consumer_protocol::encode_assignment(
                    version,
                    &group.target_assignment_by_name(member_id, topics),
                )
            },
        );
        records.push(classic.to_record());
        let config = self.config.clone();
        let mut uuid = uuid::Uuid::nil;
        let mut ctx = Self::ctx(&config, out, &mut uuid, now_ms);
        classic.prepare_rebalance(&mut ctx);
        tracing::info!(group_id, "converted the consumer group to a classic group");
        self.groups
            .insert(group_id.to_string(), Group::Classic(classic));
        records
    }

    /// Kafka's `validateOnlineUpgrade` + `convertToConsumerGroup`: the consumer group a live
    /// classic group becomes, with the records that write it; `Err` is the
    /// GROUP_ID_NOT_FOUND message the joining member gets.
    pub(super) fn upgrade(
        &self,
        group: &ClassicGroup,
        now_ms: i64,
        topics: &dyn TopicView,
    ) -> Result<(ConsumerGroup, Vec<Record>), String> {
        let group_id = &group.group_id;
        let reason = if !self
            .config
            .consumer_group_migration_policy
            .is_upgrade_enabled()
        {
            Some("online upgrade is disabled")
        } else if !group.uses_consumer_protocol() {
            Some("the group does not use the consumer embedded protocol")
        } else if group.members.len()
            > usize::try_from(self.config.consumer_group_max_size).unwrap_or(usize::MAX)
        {
            Some("the group size exceeds the consumer group maximum size")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::info!(group_id, reason, "cannot upgrade the classic group");
            return Err(format!(
                "Cannot upgrade classic group {group_id} to consumer group because {reason}."
            ));
        }
        let (consumer, records) = ConsumerGroup::from_classic(group, now_ms, topics)?;
        let mut all = vec![records::group_metadata_tombstone(group_id)];
        all.extend(records);
        Ok((consumer, all))
    }
}
