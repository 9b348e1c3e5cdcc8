//! Transactional offsets (TxnOffsetCommit): pending until the producer's marker, committed or
//! dropped by it, ordered against plain commits by log offset, rebuilt by replay, and in step
//! with OffsetFetch's `require_stable`, OffsetDelete, DeleteGroups and expiry, as Kafka's
//! `OffsetMetadataManager` does it.

use kafka_protocol::messages::*;

use super::*;
use crate::txn::TxnResult;

const PID: i64 = 4000;
const OTHER_PID: i64 = 4001;

fn txn_commit(
    group: &str,
    producer_id: i64,
    member: &str,
    generation: i32,
    entries: &[(&str, i32, i64)],
) -> TxnOffsetCommitRequest {
    let mut topics: Vec<txn_offset_commit_request::TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in entries {
        let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(s("m")));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_group_id(GroupId(s(group)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(0)
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

fn txn_codes(out: &[Output], id: RequestId) -> Vec<i16> {
    match responses(out, id).remove(0) {
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        other => panic!("not a TxnOffsetCommit answer: {other:?}"),
    }
}

/// Sends a TxnOffsetCommit (v3) and returns its per-partition codes.
fn send_txn(h: &mut Harness, request: TxnOffsetCommitRequest) -> Vec<i16> {
    let (id, out) = h.send(3, GroupRequest::TxnOffsetCommit(request));
    txn_codes(&out, id)
}

fn plain_commit(h: &mut Harness, group: &str, entries: &[(&str, i32, i64)]) {
    let (id, out) = h.send(
        8,
        GroupRequest::OffsetCommit(commit(group, "", -1, entries)),
    );
    assert!(responses(&out, id).len() == 1);
}

/// OffsetFetch v8 for `partitions` of t1 (or every offset with `None`): (partition, offset,
/// error) each.
fn fetch(
    h: &mut Harness,
    group: &str,
    partitions: Option<Vec<i32>>,
    require_stable: bool,
) -> Vec<(i32, i64, i16)> {
    let topics = partitions.map(|ps| {
        vec![offset_fetch_request::OffsetFetchRequestTopics::default()
            .with_name(TopicName(s("t1")))
            .with_partition_indexes(ps)]
    });
    let req = OffsetFetchRequest::default()
        .with_require_stable(require_stable)
        .with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(topics),
        ]);
    let (id, out) = h.send(8, GroupRequest::OffsetFetch(req));
    let ResponseKind::OffsetFetch(resp) = responses(&out, id).remove(0) else {
        panic!("not an OffsetFetch answer")
    };
    assert_eq!(resp.groups[0].error_code, 0);
    resp.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset, p.error_code))
        })
        .collect()
}

const UNSTABLE: i16 = 88;

#[test]
fn pending_offsets_are_invisible_until_commit() {
    // Goal: a transactional offset is not the group's offset before its COMMIT marker, is after
    // it, and a require_stable fetch meanwhile answers UNSTABLE_OFFSET_COMMIT.
    let mut h = Harness::new();
    assert_eq!(
        send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 0, 5)])),
        vec![0]
    );
    assert!(h
        .coordinator
        .pending_txn_offsets()
        .get(PID, "g", "t1", 0)
        .is_some());
    assert_eq!(fetch(&mut h, "g", Some(vec![0]), false), vec![(0, -1, 0)]);
    assert_eq!(
        fetch(&mut h, "g", Some(vec![0]), true),
        vec![(0, -1, UNSTABLE)]
    );
    // Fetch-all lists committed offsets only.
    assert_eq!(fetch(&mut h, "g", None, true), vec![]);
    h.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", Some(vec![0]), true), vec![(0, 5, 0)]);
    assert_eq!(fetch(&mut h, "g", None, false), vec![(0, 5, 0)]);
    assert!(!h.coordinator.pending_txn_offsets().has_group("g"));
}

#[test]
fn abort_drops_pending_offsets() {
    // Goal: an ABORT marker drops the producer's offsets and leaves the committed ones.
    let mut h = Harness::new();
    plain_commit(&mut h, "g", &[("t1", 0, 3)]);
    send_txn(
        &mut h,
        txn_commit("g", PID, "", -1, &[("t1", 0, 9), ("t1", 1, 9)]),
    );
    assert_eq!(
        fetch(&mut h, "g", Some(vec![0, 1]), true),
        vec![(0, -1, UNSTABLE), (1, -1, UNSTABLE)]
    );
    // Fetch-all with require_stable marks the committed partition unstable.
    assert_eq!(fetch(&mut h, "g", None, true), vec![(0, -1, UNSTABLE)]);
    h.end_txn(PID, TxnResult::Abort);
    assert_eq!(
        fetch(&mut h, "g", Some(vec![0, 1]), true),
        vec![(0, 3, 0), (1, -1, 0)]
    );
    // A marker for a producer with nothing pending changes nothing.
    h.end_txn(OTHER_PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", None, false), vec![(0, 3, 0)]);
}

#[test]
fn the_later_record_wins_between_plain_and_transactional_commits() {
    // Goal: Kafka's rule: a committed transaction's offset replaces the group's offset only if
    // its record is later in the log than the one that wrote the current offset.
    let mut h = Harness::new();
    // Transactional offset first, plain commit after it, then COMMIT: the plain one stays.
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 0, 10)]));
    plain_commit(&mut h, "g", &[("t1", 0, 20)]);
    assert_eq!(
        fetch(&mut h, "g", Some(vec![0]), true),
        vec![(0, -1, UNSTABLE)]
    );
    h.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", Some(vec![0]), true), vec![(0, 20, 0)]);
    // Plain commit first, transactional offset after it: COMMIT makes the transactional win.
    plain_commit(&mut h, "g", &[("t1", 1, 30)]);
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 1, 40)]));
    h.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", Some(vec![1]), false), vec![(1, 40, 0)]);
    // Two transactions: the one written later wins whichever commits last.
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 2, 50)]));
    send_txn(&mut h, txn_commit("g", OTHER_PID, "", -1, &[("t1", 2, 60)]));
    h.end_txn(OTHER_PID, TxnResult::Commit);
    // PID's offset is still pending: the partition stays unstable.
    assert_eq!(
        fetch(&mut h, "g", Some(vec![2]), true),
        vec![(2, -1, UNSTABLE)]
    );
    assert_eq!(fetch(&mut h, "g", Some(vec![2]), false), vec![(2, 60, 0)]);
    h.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", Some(vec![2]), true), vec![(2, 60, 0)]);
    // The replayed log decides the same.
    let r = h.replayed(h.entries.len());
    assert!(r.coordinator.committed_offsets() == h.coordinator.committed_offsets());
}

#[test]
fn replay_rebuilds_pending_and_committed_offsets() {
    // Goal: a restart rebuilds the state from the log: a transaction without its marker stays
    // pending (and its marker after the restart commits it), one with it is committed.
    let mut h = Harness::new();
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 0, 7)]));
    let before_marker = h.entries.len();
    h.end_txn(PID, TxnResult::Commit);
    send_txn(&mut h, txn_commit("g", OTHER_PID, "", -1, &[("t1", 1, 8)]));

    // Cut before the first marker: both pending.
    let mut cut = h.replayed(before_marker);
    assert!(cut
        .coordinator
        .pending_txn_offsets()
        .get(PID, "g", "t1", 0)
        .is_some());
    assert_eq!(
        fetch(&mut cut, "g", Some(vec![0]), true),
        vec![(0, -1, UNSTABLE)]
    );
    cut.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut cut, "g", Some(vec![0]), true), vec![(0, 7, 0)]);

    // The whole log: one committed, one pending, exactly as the live coordinator has them.
    let mut whole = h.replayed(h.entries.len());
    assert!(whole.coordinator.committed_offsets() == h.coordinator.committed_offsets());
    assert!(whole.coordinator.pending_txn_offsets() == h.coordinator.pending_txn_offsets());
    assert_eq!(
        fetch(&mut whole, "g", Some(vec![0, 1]), true),
        vec![(0, 7, 0), (1, -1, UNSTABLE)]
    );
    whole.end_txn(OTHER_PID, TxnResult::Abort);
    assert_eq!(
        fetch(&mut whole, "g", Some(vec![1]), true),
        vec![(1, -1, 0)]
    );
}

#[test]
fn a_failed_append_leaves_nothing_pending() {
    // Goal: pending offsets exist only once their transactional batch is committed.
    let mut h = Harness::new();
    let (id, out) = h.send_failing(
        3,
        GroupRequest::TxnOffsetCommit(txn_commit("g", PID, "", -1, &[("t1", 0, 1)])),
    );
    let Some(Output::AppendTransactional {
        on_failure: (failed, failure),
        producer_id,
        ..
    }) = out.last()
    else {
        panic!("no transactional append: {out:?}")
    };
    assert_eq!((*failed, *producer_id), (id, PID));
    // INVALID_PRODUCER_EPOCH from the log reaches the partitions written.
    let failed = crate::group::txn_offset_commit_failed(failure.clone(), 47);
    assert_eq!(failed.topics[0].partitions[0].error_code, 47);
    assert!(!h.coordinator.pending_txn_offsets().has_group("g"));
}

#[test]
fn tombstones_clear_pending_offsets() {
    // Goal: OffsetDelete writes a tombstone for a partition with only a pending offset, and a
    // tombstone drops every producer's pending offset there; DeleteGroups covers them too.
    let mut h = Harness::new();
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t2", 0, 4)]));
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t2")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let (_, out) = h.send(0, GroupRequest::OffsetDelete(req));
    assert_eq!(appended(&out).len(), 1, "one tombstone");
    assert!(!h.coordinator.pending_txn_offsets().has_group("g"));
    h.end_txn(PID, TxnResult::Commit);
    assert!(h.coordinator.committed_offsets().group("g").is_none());

    // DeleteGroups: committed t1-0, pending t1-0 and t1-1: one tombstone each partition.
    plain_commit(&mut h, "d", &[("t1", 0, 1)]);
    send_txn(
        &mut h,
        txn_commit("d", PID, "", -1, &[("t1", 0, 2), ("t1", 1, 2)]),
    );
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("d"))]);
    let (id, out) = h.send(2, GroupRequest::DeleteGroups(req));
    let ResponseKind::DeleteGroups(resp) = responses(&out, id).remove(0) else {
        panic!()
    };
    assert_eq!(resp.results[0].error_code, 0);
    let keys: Vec<_> = appended(&out)
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| crate::group::records::decode_key(k).unwrap())
        .collect();
    assert_eq!(
        keys.len(),
        3,
        "two offset tombstones and the group's: {keys:?}"
    );
    assert!(!h.coordinator.pending_txn_offsets().has_group("d"));
    h.end_txn(PID, TxnResult::Commit);
    assert!(h.coordinator.committed_offsets().group("d").is_none());
}

#[test]
fn expiry_waits_for_pending_offsets() {
    // Goal: an expired offset with a pending transactional offset on its partition stays, and
    // a group with pending offsets is not deleted (Kafka's `cleanupExpiredOffsets`).
    let mut h = Harness::new();
    plain_commit(&mut h, "g", &[("t1", 0, 1), ("t1", 1, 1)]);
    send_txn(&mut h, txn_commit("g", PID, "", -1, &[("t1", 0, 2)]));
    let retention = GroupConfig::default().offsets_retention_ms;
    let out = h.advance(retention + super::super::coordinator::OFFSETS_RETENTION_CHECK_INTERVAL_MS);
    let tombstones: Vec<_> = appended(&out)
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| crate::group::records::decode_key(k).unwrap())
        .collect();
    assert_eq!(
        tombstones,
        vec![crate::group::records::RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t1".into(),
            partition: 1
        }],
        "only the partition without a pending offset expires; the group stays"
    );
    assert!(h.coordinator.classic_state("g").is_some());
    h.end_txn(PID, TxnResult::Commit);
    assert_eq!(fetch(&mut h, "g", Some(vec![0]), true), vec![(0, 2, 0)]);
}

#[test]
fn validation_follows_kafka() {
    // Goal: Kafka's checks: empty group id, unknown group with a generation, member and
    // generation of a live group (v3+), metadata size; group state is not enforced.
    let mut h = Harness::new();
    assert_eq!(
        send_txn(&mut h, txn_commit("", PID, "", -1, &[("t1", 0, 1)])),
        vec![24]
    );
    assert_eq!(
        send_txn(&mut h, txn_commit("new", PID, "", 3, &[("t1", 0, 1)])),
        vec![22]
    );
    let (_, leader, generation) = stable_group(&mut h, "live", 1);
    // No member id and generation -1: accepted in any state (old TxnOffsetCommit versions).
    assert_eq!(
        send_txn(&mut h, txn_commit("live", PID, "", -1, &[("t1", 0, 1)])),
        vec![0]
    );
    assert_eq!(
        send_txn(
            &mut h,
            txn_commit("live", PID, &leader, generation, &[("t1", 0, 1)])
        ),
        vec![0]
    );
    assert_eq!(
        send_txn(
            &mut h,
            txn_commit("live", PID, &leader, generation + 1, &[("t1", 0, 1)])
        ),
        vec![22]
    );
    assert_eq!(
        send_txn(
            &mut h,
            txn_commit("live", PID, "ghost", generation, &[("t1", 0, 1)])
        ),
        vec![25]
    );
    let mut big = txn_commit(
        "live",
        PID,
        &leader,
        generation,
        &[("t1", 0, 1), ("t1", 1, 1)],
    );
    big.topics[0].partitions[1].committed_metadata = Some(s(&"x".repeat(5000)));
    assert_eq!(send_txn(&mut h, big), vec![0, 12]);
}

#[test]
fn the_shard_learns_transactional_fates_by_token() {
    // Goal: through the runtime's contract, a transactional batch's failure answers the
    // TxnOffsetCommit with the append's error mapped as Kafka maps coordinator write errors,
    // and a CompleteTransaction becomes a marker append that commits the producer's offsets
    // once the runtime reports it committed (or answers its error if it failed).
    use crate::shard::{AppendBatch, CoordinatorShard, ShardOutput};
    let image = crate::MetadataImage::default();
    let client = crate::group::ClientInfo::default();
    let mut c = GroupCoordinator::new(GroupConfig::default());
    let append_of = |out: Vec<ShardOutput<_>>| match out.into_iter().next() {
        Some(ShardOutput::Append(a)) => a,
        other => panic!("not an append: {other:?}"),
    };
    let commit = |pid| GroupRequest::TxnOffsetCommit(txn_commit("g", pid, "", -1, &[("t1", 0, 9)]));

    // Failed with NOT_LEADER_OR_FOLLOWER: the client is told NOT_COORDINATOR.
    let a = append_of(CoordinatorShard::handle(
        &mut c,
        1,
        3,
        &client,
        commit(PID),
        0,
        &image,
    ));
    assert!(matches!(
        a.batch,
        AppendBatch::Transactional {
            producer_id: PID,
            ..
        }
    ));
    assert!(a.on_failure.is_empty());
    let out = CoordinatorShard::on_append_failed(&mut c, a.token, 6, 0);
    let Some(ShardOutput::Respond(1, ResponseKind::TxnOffsetCommit(r))) = out.first() else {
        panic!("no failure answer: {out:?}")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 16);

    // Committed at log offset 10: pending; then the marker commits it.
    let a = append_of(CoordinatorShard::handle(
        &mut c,
        2,
        3,
        &client,
        commit(PID),
        0,
        &image,
    ));
    CoordinatorShard::on_committed_at(&mut c, a.token, 10, &a.records, 0, &image);
    assert!(c.pending_txn_offsets().get(PID, "g", "t1", 0).is_some());
    let completion = |result| {
        GroupRequest::CompleteTransaction(crate::group::coordinator::TxnCompletion {
            partition: 7,
            producer_id: PID,
            producer_epoch: 0,
            coordinator_epoch: 0,
            result,
            transaction_version: 0,
        })
    };
    let m = append_of(CoordinatorShard::handle(
        &mut c,
        3,
        0,
        &client,
        completion(TxnResult::Commit),
        0,
        &image,
    ));
    assert!(m.records.is_empty());
    assert!(matches!(
        m.batch,
        AppendBatch::Marker {
            producer_id: PID,
            result: TxnResult::Commit,
            ..
        }
    ));
    // A failed marker changes nothing and answers its error.
    let out = CoordinatorShard::on_append_failed(&mut c, m.token, 47, 0);
    assert!(matches!(
        out.first(),
        Some(ShardOutput::Respond(3, ResponseKind::WriteTxnMarkers(_)))
    ));
    assert!(c.pending_txn_offsets().get(PID, "g", "t1", 0).is_some());
    let m = append_of(CoordinatorShard::handle(
        &mut c,
        4,
        0,
        &client,
        completion(TxnResult::Commit),
        0,
        &image,
    ));
    CoordinatorShard::on_committed_at(&mut c, m.token, 11, &[], 0, &image);
    assert!(!c.pending_txn_offsets().has_group("g"));
    assert_eq!(
        c.committed_offsets().get("g", "t1", 0).map(|v| v.offset),
        Some(9)
    );
}
