//! Offsets: commit/fetch with generation checks, delete, expiry, group deletion.

use kafka_protocol::messages::*;

use super::*;
use crate::group::{ClassicState, GroupConfig};

fn fetch_v7(h: &mut Harness, group: &str) -> OffsetFetchResponse {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let (id, out) = h.send(7, GroupRequest::OffsetFetch(req));
    match responses(&out, id).remove(0) {
        ResponseKind::OffsetFetch(r) => r,
        _ => panic!("not an offset fetch"),
    }
}

fn commit_codes(out: &[Output], id: RequestId) -> Vec<i16> {
    match responses(out, id).remove(0) {
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        _ => panic!("not an offset commit"),
    }
}

#[test]
fn commit_and_fetch_with_generation_checks() {
    // Proves commits are checked against generation and member, and fetch returns what committed.
    let mut h = Harness::new();
    let (_, leader, generation) = stable_group(&mut h, "g", 1);
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit(
            "g",
            &leader,
            generation,
            &[("t1", 0, 42), ("t1", 1, 7)],
        )),
    );
    assert_eq!(commit_codes(&out, id), vec![0, 0]);
    assert_eq!(appended(&out).len(), 2);
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", &leader, generation + 1, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![22]);
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", "ghost", generation, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![25]);
    // A group with members refuses a simple commit.
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", "", -1, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![25]);
    // Unknown topic or partition; metadata too large.
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit(
            "g",
            &leader,
            generation,
            &[("nope", 0, 1), ("t2", 5, 1)],
        )),
    );
    assert_eq!(commit_codes(&out, id), vec![3, 3]);
    let mut big = commit("g", &leader, generation, &[("t2", 0, 1)]);
    big.topics[0].partitions[0].committed_metadata = Some(s(&"x".repeat(5000)));
    let (id, out) = h.send(8, GroupRequest::OffsetCommit(big));
    assert_eq!(commit_codes(&out, id), vec![12]);
    let resp = fetch_v7(&mut h, "g");
    let got: Vec<(i32, i64)> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(got, vec![(0, 42), (1, 7)]);
    // v8 batched form: one known group, one unknown (-1 offsets, no error).
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![
                offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t1")))
                    .with_partition_indexes(vec![0, 2]),
            ])),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("other")))
            .with_topics(None),
    ]);
    let (id, out) = h.send(8, GroupRequest::OffsetFetch(req));
    let ResponseKind::OffsetFetch(resp) = responses(&out, id).remove(0) else {
        panic!()
    };
    let offsets: Vec<i64> = resp.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![42, -1]);
    assert!(resp.groups[1].topics.is_empty());
}

#[test]
fn commit_to_missing_group_by_version() {
    // Proves a generation-bearing commit to a missing group is ILLEGAL_GENERATION before v9 and
    // GROUP_ID_NOT_FOUND from v9; a simple commit (-1, "") creates a simple group.
    let mut h = Harness::new();
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("x", "m", 3, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![22]);
    let (id, out) = h.send(
        9,
        GroupRequest::OffsetCommit(commit("x", "m", 3, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![69]);
    let (id, out) = h.send(
        9,
        GroupRequest::OffsetCommit(commit("x", "", -1, &[("t1", 0, 5)])),
    );
    assert_eq!(commit_codes(&out, id), vec![0]);
    assert_eq!(
        fetch_v7(&mut h, "x").topics[0].partitions[0].committed_offset,
        5
    );
    assert_eq!(
        h.coordinator.classic_state("x"),
        Some((ClassicState::Empty, 0, 0))
    );
}

#[test]
fn commit_during_completing_rebalance_is_rebalance_in_progress() {
    // Proves a valid member committing before SyncGroup completes gets REBALANCE_IN_PROGRESS.
    let mut h = Harness::new();
    let (_, leader, generation) = stable_group(&mut h, "g", 1);
    h.send(
        5,
        GroupRequest::JoinGroup(join("g", &leader, None, &["range"])),
    );
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", &leader, generation + 1, &[("t1", 0, 1)])),
    );
    assert_eq!(commit_codes(&out, id), vec![27]);
}

#[test]
fn offset_delete_respects_subscriptions() {
    // Proves OffsetDelete refuses subscribed topics of a live consumer group and deletes others.
    let mut h = Harness::new();
    let (_, leader, generation) = stable_group(&mut h, "g", 1);
    h.send(
        8,
        GroupRequest::OffsetCommit(commit(
            "g",
            &leader,
            generation,
            &[("t1", 0, 1), ("t2", 0, 2)],
        )),
    );
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t1")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t2")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let (id, out) = h.send(0, GroupRequest::OffsetDelete(req.clone()));
    let ResponseKind::OffsetDelete(resp) = responses(&out, id).remove(0) else {
        panic!()
    };
    assert_eq!(resp.topics[0].partitions[0].error_code, 86);
    assert_eq!(resp.topics[1].partitions[0].error_code, 0);
    assert_eq!(
        appended(&out),
        vec![crate::group::records::offset_commit_tombstone("g", "t2", 0)]
    );
    let (id, out) = h.send(
        0,
        GroupRequest::OffsetDelete(req.with_group_id(GroupId(s("missing")))),
    );
    let ResponseKind::OffsetDelete(resp) = responses(&out, id).remove(0) else {
        panic!()
    };
    assert_eq!(resp.error_code, 69);
}

#[test]
fn offsets_expire_for_empty_groups() {
    // Proves offsets of an Empty group expire after offsets.retention and the group goes too.
    let mut h = Harness::with_config(GroupConfig {
        offsets_retention_ms: 60_000,
        ..GroupConfig::default()
    });
    h.send(
        9,
        GroupRequest::OffsetCommit(commit("simple", "", -1, &[("t1", 0, 5)])),
    );
    let (_, leader, generation) = stable_group(&mut h, "live", 1);
    h.send(
        9,
        GroupRequest::OffsetCommit(commit("live", &leader, generation, &[("t1", 0, 9)])),
    );
    // Keep the live member alive across the retention check.
    let mut out = Vec::new();
    for _ in 0..70 {
        out.extend(h.advance(9_000));
        h.send(
            4,
            GroupRequest::Heartbeat(heartbeat("live", &leader, generation)),
        );
    }
    let records = appended(&out);
    assert!(
        records.contains(&crate::group::records::offset_commit_tombstone(
            "simple", "t1", 0
        ))
    );
    assert!(records.contains(&crate::group::records::group_metadata_tombstone("simple")));
    assert!(fetch_v7(&mut h, "simple").topics.is_empty());
    assert_eq!(
        fetch_v7(&mut h, "live").topics[0].partitions[0].committed_offset,
        9,
        "subscribed offsets stay"
    );
}

#[test]
fn delete_groups_writes_tombstones() {
    // Proves DeleteGroups refuses live groups and tombstones an empty group and its offsets.
    let mut h = Harness::new();
    stable_group(&mut h, "live", 1);
    h.send(
        9,
        GroupRequest::OffsetCommit(commit("dead", "", -1, &[("t1", 0, 1), ("t1", 1, 2)])),
    );
    let req = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(s("live")),
        GroupId(s("dead")),
        GroupId(s("nope")),
    ]);
    let (id, out) = h.send(2, GroupRequest::DeleteGroups(req));
    let ResponseKind::DeleteGroups(resp) = responses(&out, id).remove(0) else {
        panic!()
    };
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![68, 0, 69]);
    let records = appended(&out);
    use crate::group::records::{group_metadata_tombstone, offset_commit_tombstone};
    assert_eq!(
        records,
        vec![
            offset_commit_tombstone("dead", "t1", 0),
            offset_commit_tombstone("dead", "t1", 1),
            group_metadata_tombstone("dead")
        ]
    );
    assert!(h.coordinator.classic_state("dead").is_none());
}

#[test]
fn replay_restores_offsets_and_groups() {
    // Proves the records a coordinator wrote, replayed into a new one, restore offsets and
    // group metadata (members, generation, assignment): a round trip through records.rs.
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", &leader, generation, &[("t1", 0, 42)])),
    );
    h.send(
        9,
        GroupRequest::OffsetCommit(commit("simple", "", -1, &[("t2", 0, 3)])),
    );
    let mut fresh = GroupCoordinator::new(GroupConfig::default());
    for (k, v) in &h.log {
        fresh.replay(k, v.as_deref()).unwrap();
    }
    fresh.finish_replay(h.now_ms);
    assert_eq!(
        fresh.classic_state("g"),
        Some((ClassicState::Stable, generation, ids.len()))
    );
    assert_eq!(
        fresh.classic_state("simple"),
        Some((ClassicState::Empty, 0, 0))
    );
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(None);
    let out = fresh.handle(1, 7, GroupRequest::OffsetFetch(req), h.now_ms, &Topics);
    let ResponseKind::OffsetFetch(resp) = responses(&out, 1).remove(0) else {
        panic!()
    };
    assert_eq!(resp.topics[0].partitions[0].committed_offset, 42);
    assert_eq!(
        resp.topics[0].partitions[0]
            .metadata
            .as_ref()
            .unwrap()
            .as_str(),
        "meta"
    );
    // The restored members keep their ids, generation and assignment.
    let out = fresh.handle(
        2,
        4,
        GroupRequest::Heartbeat(heartbeat("g", &leader, generation)),
        h.now_ms,
        &Topics,
    );
    assert!(matches!(&responses(&out, 2)[0], ResponseKind::Heartbeat(r) if r.error_code == 0));
    let out = fresh.handle(
        3,
        3,
        GroupRequest::SyncGroup(sync("g", &leader, generation, &[])),
        h.now_ms,
        &Topics,
    );
    assert_eq!(
        sync_response(&out, 3).unwrap().assignment.as_ref(),
        b"leader-assignment"
    );
    // Without heartbeats the loaded members expire and the group empties.
    fresh.tick(h.now_ms + 60_000, &Topics);
    assert_eq!(fresh.classic_state("g").unwrap().2, 0);
}

#[test]
fn offsets_become_visible_only_when_committed() {
    // Proves a commit or delete whose append failed changes nothing OffsetFetch can see: the
    // coordinator applies offsets by replaying committed records, not when it decides them.
    let mut h = Harness::new();
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit("g", "", -1, &[("t1", 0, 5)])),
    );
    assert_eq!(commit_codes(&out, id), vec![0]);
    let (id, out) = h.send_failing(
        8,
        GroupRequest::OffsetCommit(commit("g", "", -1, &[("t1", 0, 9), ("t2", 0, 3)])),
    );
    assert_eq!(
        commit_codes(&out, id),
        vec![0, 0],
        "the answer waits on the append"
    );
    let offsets = |h: &mut Harness| -> Vec<(String, i32, i64)> {
        fetch_v7(h, "g")
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.committed_offset))
            })
            .collect()
    };
    assert_eq!(offsets(&mut h), vec![("t1".to_string(), 0, 5)]);
    // A delete whose tombstones fail to append leaves the offset in place too.
    let delete = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t1")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    h.send_failing(0, GroupRequest::OffsetDelete(delete.clone()));
    assert_eq!(offsets(&mut h), vec![("t1".to_string(), 0, 5)]);
    h.send(0, GroupRequest::OffsetDelete(delete));
    assert_eq!(offsets(&mut h), vec![]);
}
