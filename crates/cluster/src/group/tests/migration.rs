//! Online migration between the classic and the consumer protocol
//! (`group.consumer.migration.policy`): upgrade when a consumer-protocol member joins a live
//! classic group, classic members served inside a consumer group, downgrade when the last
//! consumer-protocol member leaves.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use uuid::Uuid;

use super::*;
use crate::group::consumer_protocol::{decode_assignment, encode_assignment};
use crate::group::{ClassicState, MigrationPolicy};

const GROUP: &str = "g";

/// Two classic members of "g" (subscribed to t1), synced with a real consumer-protocol
/// assignment from the leader: the leader gets t1-0 and t1-1, the other t1-2.
/// Returns (leader, follower, generation).
fn classic_group(h: &mut Harness) -> (String, String, i32) {
    let mut ids = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (id, out) = h.send(
            5,
            GroupRequest::JoinGroup(join(GROUP, "", None, &["range"])),
        );
        let member_id = join_response(&out, id).unwrap().member_id.to_string();
        let (id, _) = h.send(
            5,
            GroupRequest::JoinGroup(join(GROUP, &member_id, None, &["range"])),
        );
        ids.push(member_id);
        pending.push(id);
    }
    let mut out = Vec::new();
    for _ in 0..5 {
        out.extend(h.advance(3_000));
        if pending.iter().all(|id| join_response(&out, *id).is_some()) {
            break;
        }
    }
    let first = join_response(&out, pending[0]).expect("join completed");
    let leader = first.leader.to_string();
    let generation = first.generation_id;
    let follower = ids.iter().find(|m| **m != leader).unwrap().clone();
    let leader_assignment = encode_assignment(0, &[("t1".into(), vec![0, 1])]);
    let follower_assignment = encode_assignment(0, &[("t1".into(), vec![2])]);
    let (id, out) = h.send(
        3,
        GroupRequest::SyncGroup(sync(
            GROUP,
            &leader,
            generation,
            &[
                (&leader, &leader_assignment[..]),
                (&follower, &follower_assignment[..]),
            ],
        )),
    );
    assert_eq!(sync_response(&out, id).unwrap().error_code, 0);
    let (id, out) = h.send(
        3,
        GroupRequest::SyncGroup(sync(GROUP, &follower, generation, &[])),
    );
    assert_eq!(sync_response(&out, id).unwrap().error_code, 0);
    (leader, follower, generation)
}

fn consumer_heartbeat(
    member: &str,
    epoch: i32,
    owned: Option<Vec<i32>>,
) -> ConsumerGroupHeartbeatRequest {
    let mut r = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    if epoch == 0 {
        r = r
            .with_subscribed_topic_names(Some(vec![TopicName(s("t1"))]))
            .with_topic_partitions(Some(vec![]));
    } else if let Some(owned) = owned {
        r = r.with_topic_partitions(Some(vec![
            consumer_group_heartbeat_request::TopicPartitions::default()
                .with_topic_id(Uuid::from_u128(1))
                .with_partitions(owned),
        ]));
    }
    r
}

fn heartbeat_response(out: &[Output], id: RequestId) -> ConsumerGroupHeartbeatResponse {
    match responses(out, id).remove(0) {
        ResponseKind::ConsumerGroupHeartbeat(r) => r,
        other => panic!("not a heartbeat response: {other:?}"),
    }
}

fn classic_heartbeat_code(h: &mut Harness, member: &str, generation: i32) -> i16 {
    let (id, out) = h.send(
        3,
        GroupRequest::Heartbeat(heartbeat(GROUP, member, generation)),
    );
    match responses(&out, id).remove(0) {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("not a heartbeat response: {other:?}"),
    }
}

fn describe(h: &mut Harness) -> consumer_group_describe_response::DescribedGroup {
    let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]);
    let (id, out) = h.send(1, GroupRequest::ConsumerGroupDescribe(request));
    match responses(&out, id).remove(0) {
        ResponseKind::ConsumerGroupDescribe(mut d) => d.groups.remove(0),
        other => panic!("not a describe response: {other:?}"),
    }
}

/// A classic member rejoins and syncs; returns its new generation and assigned partitions.
fn classic_rejoin(h: &mut Harness, member: &str) -> (i32, BTreeSet<i32>) {
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, member, None, &["range"])),
    );
    let resp = join_response(&out, id).expect("a classic member's join is answered at once");
    assert_eq!(resp.error_code, 0, "rejoin of {member}");
    assert_eq!(resp.protocol_name.as_deref(), Some("range"));
    assert_eq!(resp.protocol_type.as_deref(), Some("consumer"));
    let generation = resp.generation_id;
    let mut request = sync(GROUP, member, generation, &[]);
    request.protocol_type = Some(s("consumer"));
    request.protocol_name = Some(s("range"));
    let (id, out) = h.send(5, GroupRequest::SyncGroup(request));
    let resp = sync_response(&out, id).unwrap();
    assert_eq!(resp.error_code, 0, "sync of {member}");
    let assignment = decode_assignment(&resp.assignment).unwrap();
    let partitions = assignment
        .partitions
        .iter()
        .filter(|(t, _)| t == "t1")
        .flat_map(|(_, ps)| ps.iter().copied())
        .collect();
    (generation, partitions)
}

fn replayed(h: &Harness) -> GroupCoordinator {
    let mut c = GroupCoordinator::new(GroupConfig::default());
    for (key, value) in &h.log {
        c.replay(key, value.as_deref()).unwrap();
    }
    c
}

#[test]
fn a_consumer_member_joining_a_live_classic_group_upgrades_it_and_classic_members_follow() {
    // Goal: Kafka's online upgrade. The group keeps its members and their partitions, the
    // classic members go on with JoinGroup/SyncGroup/Heartbeat and get their partitions from
    // the coordinator, and in the end every partition has exactly one owner.
    let mut h = Harness::new();
    let (leader, follower, generation) = classic_group(&mut h);

    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    let resp = heartbeat_response(&out, id);
    assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
    let records = appended(&out);
    assert_eq!(
        records[0],
        crate::group::records::group_metadata_tombstone(GROUP),
        "the classic group is tombstoned first"
    );
    assert_eq!(
        h.coordinator.classic_state(GROUP),
        None,
        "now a consumer group"
    );

    let described = describe(&mut h);
    assert_eq!(described.members.len(), 3);
    let classic_members: BTreeSet<String> = described
        .members
        .iter()
        .filter(|m| m.member_type == 0)
        .map(|m| m.member_id.to_string())
        .collect();
    assert_eq!(
        classic_members,
        BTreeSet::from([leader.clone(), follower.clone()])
    );
    assert!(
        described.group_epoch > generation,
        "the new member bumped the epoch"
    );

    // The classic members are told to rejoin, and do.
    assert_eq!(
        classic_heartbeat_code(&mut h, &leader, generation),
        ResponseError::RebalanceInProgress.code()
    );
    let (leader_generation, leader_parts) = classic_rejoin(&mut h, &leader);
    assert_eq!(
        classic_heartbeat_code(&mut h, &follower, generation),
        ResponseError::RebalanceInProgress.code()
    );
    let (follower_generation, follower_parts) = classic_rejoin(&mut h, &follower);
    assert_eq!(
        classic_heartbeat_code(&mut h, &leader, leader_generation),
        0
    );
    assert_eq!(
        classic_heartbeat_code(&mut h, &follower, follower_generation),
        0
    );

    // The consumer member gets what the others released.
    let epoch = resp.member_epoch;
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", epoch, Some(vec![]))),
    );
    let resp = heartbeat_response(&out, id);
    assert_eq!(resp.error_code, 0);
    let consumer_parts: BTreeSet<i32> = resp
        .assignment
        .map(|a| {
            a.topic_partitions
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect()
        })
        .unwrap_or_default();
    for (a, b) in [
        (&leader_parts, &follower_parts),
        (&leader_parts, &consumer_parts),
        (&follower_parts, &consumer_parts),
    ] {
        assert!(a.is_disjoint(b), "{a:?} and {b:?} overlap");
    }
    let all: BTreeSet<i32> = leader_parts
        .iter()
        .chain(&follower_parts)
        .chain(&consumer_parts)
        .copied()
        .collect();
    assert_eq!(all, BTreeSet::from([0, 1, 2]));
    assert!(
        !consumer_parts.is_empty(),
        "the uniform assignor gives each member one"
    );

    // A classic member commits offsets with its generation (the member epoch).
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit(GROUP, &leader, leader_generation, &[("t1", 0, 5)])),
    );
    let ResponseKind::OffsetCommit(c) = responses(&out, id).remove(0) else {
        panic!("not a commit response");
    };
    assert_eq!(c.topics[0].partitions[0].error_code, 0);
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit(
            GROUP,
            &leader,
            leader_generation - 1,
            &[("t1", 0, 5)],
        )),
    );
    let ResponseKind::OffsetCommit(c) = responses(&out, id).remove(0) else {
        panic!("not a commit response");
    };
    assert_eq!(
        c.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code(),
        "a classic member sees ILLEGAL_GENERATION, not STALE_MEMBER_EPOCH"
    );

    // Replaying the log rebuilds the same consumer group, classic members included.
    let mut again = Harness::new();
    again.coordinator = replayed(&h);
    let a = describe(&mut again);
    let b = describe(&mut h);
    assert_eq!(a, b);
}

#[test]
fn the_last_consumer_member_leaving_turns_the_group_back_into_a_classic_group() {
    // Goal: Kafka's online downgrade. When only classic members remain, the group becomes a
    // classic group with their assignments, and rebalances so they rejoin as classic members.
    let mut h = Harness::new();
    let (leader, follower, generation) = classic_group(&mut h);
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    let epoch = heartbeat_response(&out, id).member_epoch;

    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", -1, None)),
    );
    let resp = heartbeat_response(&out, id);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, -1);
    let (state, group_generation, members) = h
        .coordinator
        .classic_state(GROUP)
        .expect("a classic group again");
    assert_eq!(state, ClassicState::PreparingRebalance);
    assert_eq!(members, 2);
    assert!(group_generation >= epoch);
    assert!(group_generation > generation);

    // Replay sees the classic group (its record comes after the consumer group's tombstones).
    let again = replayed(&h);
    assert_eq!(again.classic_state(GROUP).map(|(_, _, n)| n), Some(2));

    // The classic members are told to rejoin, and the group stabilises as a classic group.
    let (id, out) = h.send(
        3,
        GroupRequest::Heartbeat(heartbeat(GROUP, &leader, group_generation)),
    );
    let ResponseKind::Heartbeat(hb) = responses(&out, id).remove(0) else {
        panic!("not a heartbeat response");
    };
    assert_eq!(hb.error_code, ResponseError::RebalanceInProgress.code());
    let (l, _) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, &leader, None, &["range"])),
    );
    let (f, out) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, &follower, None, &["range"])),
    );
    let joined = join_response(&out, l).expect("the join phase completes");
    assert_eq!(joined.error_code, 0);
    assert_eq!(join_response(&out, f).unwrap().error_code, 0);
    assert_eq!(
        h.coordinator.classic_state(GROUP).map(|(s, _, _)| s),
        Some(ClassicState::CompletingRebalance)
    );
}

#[test]
fn a_classic_member_that_does_not_rejoin_is_fenced_after_its_rebalance_timeout() {
    // Goal: Kafka's consumer-group join timeout for classic members: told to rejoin, a member
    // that stays away past its rebalance timeout loses its partitions to the others.
    let mut h = Harness::new();
    let (leader, follower, generation) = classic_group(&mut h);
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    assert_eq!(heartbeat_response(&out, id).error_code, 0);
    assert_eq!(
        classic_heartbeat_code(&mut h, &follower, generation),
        ResponseError::RebalanceInProgress.code()
    );
    // The leader rejoins; the follower keeps heartbeating (so its session lives) but never
    // rejoins, so its join deadline (its 30 s rebalance timeout) passes.
    let (leader_generation, _) = classic_rejoin(&mut h, &leader);
    let mut follower_code = 0;
    for _ in 0..5 {
        h.advance(8_000);
        classic_heartbeat_code(&mut h, &leader, leader_generation);
        follower_code = classic_heartbeat_code(&mut h, &follower, generation);
        let epoch = describe_epoch(&mut h, "c1");
        let (id, out) = h.send(
            1,
            GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", epoch, Some(vec![]))),
        );
        assert_eq!(heartbeat_response(&out, id).error_code, 0);
    }
    assert_eq!(follower_code, ResponseError::UnknownMemberId.code());
    let described = describe(&mut h);
    let ids: BTreeSet<String> = described
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    assert!(!ids.contains(&follower), "the follower was fenced: {ids:?}");
    assert!(ids.contains(&leader));
}

fn describe_epoch(h: &mut Harness, member: &str) -> i32 {
    describe(h)
        .members
        .iter()
        .find(|m| m.member_id.as_str() == member)
        .map(|m| m.member_epoch)
        .expect("member present")
}

#[test]
fn with_migration_disabled_the_protocols_stay_apart() {
    // Goal: `group.consumer.migration.policy=disabled` refuses both crossings as Kafka does.
    let config = GroupConfig {
        consumer_group_migration_policy: MigrationPolicy::Disabled,
        ..GroupConfig::default()
    };
    let mut h = Harness::with_config(config.clone());
    classic_group(&mut h);
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    let resp = heartbeat_response(&out, id);
    assert_eq!(resp.error_code, ResponseError::GroupIdNotFound.code());
    assert_eq!(
        resp.error_message.as_deref(),
        Some(
            "Cannot upgrade classic group g to consumer group because online upgrade is disabled."
        )
    );
    assert!(appended(&out).is_empty());
    assert!(
        h.coordinator.classic_state(GROUP).is_some(),
        "still classic"
    );

    let mut h = Harness::with_config(config);
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    assert_eq!(heartbeat_response(&out, id).error_code, 0);
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, "m", None, &["range"])),
    );
    assert_eq!(
        join_response(&out, id).unwrap().error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

#[test]
fn a_classic_group_with_custom_assignor_user_data_is_not_upgraded() {
    // Goal: user data from a client-side assignor would be lost, so Kafka refuses the upgrade
    // (GROUP_ID_NOT_FOUND with its message) and the classic group goes on untouched.
    let mut h = Harness::new();
    let mut ids = Vec::new();
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, "", None, &["range"])),
    );
    let member = join_response(&out, id).unwrap().member_id.to_string();
    let (id, _) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, &member, None, &["range"])),
    );
    ids.push(id);
    let mut out = Vec::new();
    for _ in 0..3 {
        out.extend(h.advance(3_000));
    }
    let generation = join_response(&out, ids[0]).unwrap().generation_id;
    // Assignment v0 with user data "x".
    let mut with_user_data = encode_assignment(0, &[("t1".into(), vec![0])]).to_vec();
    with_user_data.truncate(with_user_data.len() - 4);
    with_user_data.extend_from_slice(&1i32.to_be_bytes());
    with_user_data.push(b'x');
    let (id, out) = h.send(
        3,
        GroupRequest::SyncGroup(sync(
            GROUP,
            &member,
            generation,
            &[(&member, &with_user_data)],
        )),
    );
    assert_eq!(sync_response(&out, id).unwrap().error_code, 0);
    let (id, out) = h.send(
        1,
        GroupRequest::ConsumerGroupHeartbeat(consumer_heartbeat("c1", 0, None)),
    );
    let resp = heartbeat_response(&out, id);
    assert_eq!(resp.error_code, ResponseError::GroupIdNotFound.code());
    assert!(resp
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("unsupported custom assignor")));
    assert_eq!(
        h.coordinator.classic_state(GROUP).map(|(s, _, _)| s),
        Some(ClassicState::Stable)
    );
}

#[test]
fn a_classic_member_replacing_the_last_static_consumer_member_downgrades_the_group() {
    // Goal: Kafka's downgrade on static replacement: a restarted client that comes back with
    // the classic protocol under the instance id of the group's only consumer-protocol member
    // leaves only classic members, so the group is written back as a classic group.
    let mut h = Harness::new();
    classic_group(&mut h);
    let join_static = consumer_heartbeat("c1", 0, None).with_instance_id(Some(s("i1")));
    let (id, out) = h.send(1, GroupRequest::ConsumerGroupHeartbeat(join_static));
    assert_eq!(heartbeat_response(&out, id).error_code, 0);
    assert_eq!(h.coordinator.classic_state(GROUP), None);

    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join(GROUP, "", Some("i1"), &["range"])),
    );
    let resp = join_response(&out, id).expect("answered");
    assert_eq!(resp.error_code, 0);
    let (state, _, members) = h.coordinator.classic_state(GROUP).expect("classic again");
    assert_eq!(members, 3);
    assert_eq!(state, ClassicState::PreparingRebalance);
    assert_eq!(
        replayed(&h).classic_state(GROUP).map(|(_, _, n)| n),
        Some(3)
    );
}
