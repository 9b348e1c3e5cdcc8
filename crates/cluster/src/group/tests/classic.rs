//! Classic protocol: joins, syncs, heartbeats, leaves, timers.

use kafka_protocol::messages::*;

use super::*;
use crate::group::{ClassicState, GroupConfig};

#[test]
fn member_id_required_then_join_with_the_given_id() {
    // Proves a v4+ JoinGroup without member id gets MEMBER_ID_REQUIRED and a `clientId-UUID` id.
    let mut h = Harness::new();
    let (id, out) = h.send(4, GroupRequest::JoinGroup(join("g", "", None, &["range"])));
    let resp = join_response(&out, id).unwrap();
    assert_eq!(resp.error_code, 79);
    assert_eq!(
        resp.member_id.as_str(),
        format!("-{}", uuid::Uuid::from_u128(1))
    );
    // The new group is persisted at once.
    assert_eq!(appended(&out).len(), 1);
    let (id, out) = h.send(
        4,
        GroupRequest::JoinGroup(join("g", resp.member_id.as_str(), None, &["range"])),
    );
    assert!(join_response(&out, id).is_none());
    let out = h.advance(3_000);
    let resp = join_response(&out, id).unwrap();
    assert_eq!((resp.error_code, resp.generation_id), (0, 1));
    assert_eq!(resp.members.len(), 1, "the leader gets the member list");
}

#[test]
fn join_storm_within_the_delay_yields_one_generation() {
    // Proves 10 members joining within group.initial.rebalance.delay.ms end in one generation.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 10);
    assert_eq!(generation, 1);
    assert!(ids.contains(&leader));
    assert_eq!(
        h.coordinator.classic_state("g"),
        Some((ClassicState::Stable, 1, 10))
    );
}

#[test]
fn invalid_group_id_and_session_timeout() {
    // Proves empty group ids and out-of-bounds session timeouts are refused before any state.
    let mut h = Harness::new();
    let (id, out) = h.send(5, GroupRequest::JoinGroup(join("", "", None, &["range"])));
    assert_eq!(join_response(&out, id).unwrap().error_code, 24);
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", "", None, &["range"]).with_session_timeout_ms(10)),
    );
    assert_eq!(join_response(&out, id).unwrap().error_code, 26);
    let (id, out) = h.send(1, GroupRequest::Heartbeat(heartbeat("", "m", 1)));
    assert!(matches!(&responses(&out, id)[0], ResponseKind::Heartbeat(r) if r.error_code == 24));
}

#[test]
fn inconsistent_protocol_is_refused() {
    // Proves a member with a different protocol type or no common protocol is refused.
    let mut h = Harness::new();
    stable_group(&mut h, "g", 1);
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", "", None, &["roundrobin"])),
    );
    assert_eq!(join_response(&out, id).unwrap().error_code, 23);
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", "", None, &["range"]).with_protocol_type(s("connect"))),
    );
    assert_eq!(join_response(&out, id).unwrap().error_code, 23);
}

#[test]
fn heartbeat_errors() {
    // Proves Heartbeat answers ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and REBALANCE_IN_PROGRESS.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    let code = |out: &[Output], id| match &responses(out, id)[0] {
        ResponseKind::Heartbeat(r) => r.error_code,
        _ => panic!("not a heartbeat"),
    };
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", &leader, generation)),
    );
    assert_eq!(code(&out, id), 0);
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", &leader, generation + 1)),
    );
    assert_eq!(code(&out, id), 22);
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", "nobody", generation)),
    );
    assert_eq!(code(&out, id), 25);
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("missing", "nobody", generation)),
    );
    assert_eq!(code(&out, id), 25);
    // The leader rejoins: a rebalance starts and the follower hears about it.
    let (_, _) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", &leader, None, &["range"])),
    );
    let follower = ids.iter().find(|m| **m != leader).unwrap();
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", follower, generation)),
    );
    assert_eq!(code(&out, id), 27);
}

#[test]
fn several_consecutive_rebalances() {
    // Proves repeated rejoin/sync cycles (as cooperative clients do) move the generation on.
    let mut h = Harness::new();
    let (ids, leader, mut generation) = stable_group(&mut h, "g", 2);
    // The leader first: a follower rejoining a Stable group unchanged just gets the generation.
    let ordered: Vec<String> = std::iter::once(leader.clone())
        .chain(ids.iter().filter(|m| **m != leader).cloned())
        .collect();
    for round in 0..3 {
        let mut pending = Vec::new();
        for m in &ordered {
            let (id, _) = h.send(5, GroupRequest::JoinGroup(join("g", m, None, &["range"])));
            pending.push(id);
        }
        // The last rejoin completed the join phase in the same call; collect from a tick too.
        let out = h.advance(0);
        let _ = out;
        let (state, gen, _) = h.coordinator.classic_state("g").unwrap();
        assert_eq!(state, ClassicState::CompletingRebalance, "round {round}");
        assert_eq!(gen, generation + 1);
        generation = gen;
        for m in &ids {
            h.send(
                3,
                GroupRequest::SyncGroup(sync("g", m, generation, &[(m, b"a")])),
            );
        }
        assert_eq!(
            h.coordinator.classic_state("g").unwrap().0,
            ClassicState::Stable
        );
    }
}

#[test]
fn session_expiry_during_preparing_rebalance_completes_without_the_dead_member() {
    // Proves a member that stops during PreparingRebalance is dropped and the rest go on.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    let other = ids.iter().find(|m| **m != leader).unwrap().clone();
    // Leader rejoins; the other never does.
    let (id, _) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", &leader, None, &["range"])),
    );
    // Session timeout 10 s < rebalance timeout 30 s: the silent member expires first.
    let out = h.advance(10_001);
    let resp = join_response(&out, id).expect("join completes after the expiry");
    assert_eq!(resp.generation_id, generation + 1);
    assert_eq!(resp.members.len(), 1);
    let (id, out) = h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", &other, generation)),
    );
    assert!(matches!(&responses(&out, id)[0], ResponseKind::Heartbeat(r) if r.error_code == 25));
}

#[test]
fn session_expiry_during_completing_rebalance_rebalances_again() {
    // Proves a member lost after the join phase (no SyncGroup, no heartbeat) triggers a new
    // rebalance and the waiting leader's SyncGroup gets REBALANCE_IN_PROGRESS.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    let other = ids.iter().find(|m| **m != leader).unwrap().clone();
    let (a, _) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", &leader, None, &["range"])),
    );
    let (b, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", &other, None, &["range"])),
    );
    assert!(join_response(&out, a).is_some() && join_response(&out, b).is_some());
    assert_eq!(
        h.coordinator.classic_state("g").unwrap().0,
        ClassicState::CompletingRebalance
    );
    // A follower's SyncGroup parks until the leader's arrives.
    let (parked, out) = h.send(
        3,
        GroupRequest::SyncGroup(sync("g", &other, generation + 1, &[])),
    );
    assert!(sync_response(&out, parked).is_none());
    // The leader goes silent: its session expires, the group rebalances, the parked sync fails.
    let out = h.advance(10_001);
    assert_eq!(sync_response(&out, parked).unwrap().error_code, 27);
    assert_eq!(
        h.coordinator.classic_state("g").unwrap().0,
        ClassicState::PreparingRebalance
    );
}

#[test]
fn static_member_rejoins_without_rebalance() {
    // Proves a static member rejoining with an unknown member id and the same protocols
    // replaces its old id without a rebalance, and the old id is fenced.
    let mut h = Harness::new();
    let (id, _) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", "", Some("i1"), &["range"])),
    );
    let out = h.advance(3_000);
    let resp = join_response(&out, id).unwrap();
    let old = resp.member_id.to_string();
    assert!(old.starts_with("i1-"));
    h.send(
        3,
        GroupRequest::SyncGroup(sync("g", &old, 1, &[(&old, b"x")])),
    );
    assert_eq!(
        h.coordinator.classic_state("g"),
        Some((ClassicState::Stable, 1, 1))
    );
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", "", Some("i1"), &["range"])),
    );
    let resp = join_response(&out, id).unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.generation_id, 1, "no new generation");
    assert_ne!(resp.member_id.to_string(), old);
    assert_eq!(appended(&out).len(), 1, "the new member id is persisted");
    assert_eq!(
        h.coordinator.classic_state("g"),
        Some((ClassicState::Stable, 1, 1))
    );
    let hb = heartbeat("g", &old, 1).with_group_instance_id(Some(s("i1")));
    let (id, out) = h.send(3, GroupRequest::Heartbeat(hb));
    assert!(matches!(&responses(&out, id)[0], ResponseKind::Heartbeat(r) if r.error_code == 82));
}

#[test]
fn leader_leaving_moves_leadership() {
    // Proves LeaveGroup by the leader rebalances the rest with a new leader; v3+ answers per member.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    let other = ids.iter().find(|m| **m != leader).unwrap().clone();
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&leader)),
            leave_group_request::MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let (id, out) = h.send(3, GroupRequest::LeaveGroup(leave));
    let ResponseKind::LeaveGroup(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    assert_eq!(
        resp.members
            .iter()
            .map(|m| m.error_code)
            .collect::<Vec<_>>(),
        vec![0, 25]
    );
    let (id, out) = h.send(
        5,
        GroupRequest::JoinGroup(join("g", &other, None, &["range"])),
    );
    let resp = join_response(&out, id).unwrap();
    assert_eq!(resp.leader.as_str(), other);
    assert_eq!(resp.generation_id, generation + 1);
}

#[test]
fn group_max_size_is_enforced() {
    // Proves joins beyond group.max.size get GROUP_MAX_SIZE_REACHED.
    let mut h = Harness::with_config(GroupConfig {
        group_max_size: 2,
        ..GroupConfig::default()
    });
    stable_group(&mut h, "g", 2);
    // Kafka checks the size before handing out a member id.
    let (id, out) = h.send(5, GroupRequest::JoinGroup(join("g", "", None, &["range"])));
    assert_eq!(join_response(&out, id).unwrap().error_code, 81);
}

#[test]
fn describe_and_list_groups() {
    // Proves DescribeGroups reports Kafka's state names and members, and ListGroups filters.
    let mut h = Harness::new();
    let (_, leader, _) = stable_group(&mut h, "g", 1);
    let (id, out) = h.send(
        5,
        GroupRequest::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("nope"))]),
        ),
    );
    let ResponseKind::DescribeGroups(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    assert_eq!(resp.groups[0].group_state.as_str(), "Stable");
    assert_eq!(resp.groups[0].protocol_data.as_str(), "range");
    assert_eq!(resp.groups[0].members[0].member_id.as_str(), leader);
    assert_eq!(
        resp.groups[0].members[0].member_assignment.as_ref(),
        b"leader-assignment"
    );
    assert_eq!(
        (
            resp.groups[1].group_state.as_str(),
            resp.groups[1].error_code
        ),
        ("Dead", 0)
    );
    let (id, out) = h.send(
        6,
        GroupRequest::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("nope"))]),
        ),
    );
    let ResponseKind::DescribeGroups(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    assert_eq!(resp.groups[0].error_code, 69);
    assert_eq!(
        resp.groups[0].authorized_operations,
        i32::MIN,
        "not requested"
    );
    let (id, out) = h.send(
        5,
        GroupRequest::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("g"))])
                .with_include_authorized_operations(true),
        ),
    );
    let ResponseKind::DescribeGroups(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    // The broker's authorizer answers authorized operations; the coordinator leaves them out.
    assert_eq!(resp.groups[0].authorized_operations, i32::MIN);
    let list = |states: &[&str], types: &[&str]| {
        ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|x| s(x)).collect())
            .with_types_filter(types.iter().map(|x| s(x)).collect())
    };
    let (id, out) = h.send(5, GroupRequest::ListGroups(list(&["stable"], &["classic"])));
    let ResponseKind::ListGroups(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    assert_eq!(resp.groups.len(), 1);
    assert_eq!(resp.groups[0].group_type.as_str(), "classic");
    let (id, out) = h.send(5, GroupRequest::ListGroups(list(&["Empty"], &[])));
    let ResponseKind::ListGroups(resp) = &responses(&out, id)[0] else {
        panic!()
    };
    assert!(resp.groups.is_empty());
}

#[test]
fn pending_member_that_never_returns_expires() {
    // Proves a MEMBER_ID_REQUIRED member that never rejoins is forgotten after its session.
    let mut h = Harness::new();
    let (_, leader, generation) = stable_group(&mut h, "g", 1);
    h.send(5, GroupRequest::JoinGroup(join("g", "", None, &["range"])));
    // Keep the real member alive while the pending one expires.
    h.advance(5_000);
    h.send(
        4,
        GroupRequest::Heartbeat(heartbeat("g", &leader, generation)),
    );
    h.advance(6_000);
    assert_eq!(
        h.coordinator.classic_state("g"),
        Some((ClassicState::Stable, 1, 1))
    );
}

#[test]
fn longest_client_and_instance_ids_make_member_ids_a_record_can_hold() {
    // Proves a client id or group instance id of 0x7fff bytes (the longest the wire carries)
    // yields a member id that fits a record string: the group record is written, no panic.
    let mut h = Harness::new();
    let long = "c".repeat(0x7fff);
    let client = crate::group::ClientInfo {
        client_id: long.clone(),
        client_host: "/127.0.0.1".into(),
    };
    for (group, instance) in [("g", None), ("s", Some(long.as_str()))] {
        // v3: no MEMBER_ID_REQUIRED round trip, the member joins at once.
        let (id, _) = h.send_from(
            3,
            &client,
            GroupRequest::JoinGroup(join(group, "", instance, &["range"])),
        );
        let mut out = Vec::new();
        for _ in 0..3 {
            out.extend(h.advance(3_000));
        }
        let joined = join_response(&out, id).expect("join completed");
        assert_eq!(joined.error_code, 0);
        assert!(joined.member_id.len() <= 0x7fff);
        let (id, out) = h.send_from(
            3,
            &client,
            GroupRequest::SyncGroup(sync(
                group,
                joined.member_id.as_str(),
                joined.generation_id,
                &[(joined.member_id.as_str(), b"a")],
            )),
        );
        assert_eq!(sync_response(&out, id).expect("synced").error_code, 0);
    }
    let mut replayed = GroupCoordinator::new(GroupConfig::default());
    for (key, value) in &h.log {
        replayed.replay(key, value.as_deref()).unwrap();
    }
    for group in ["g", "s"] {
        let (_, generation, members) = replayed.classic_state(group).expect("group replayed");
        assert_eq!((generation, members), (1, 1), "{group}");
    }
}
