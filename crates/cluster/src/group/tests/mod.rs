//! Tests of the group coordinator: a fake clock (plain `now_ms` values), a fake topic view, and
//! helpers that speak kafka-protocol requests and pick responses out of the outputs.

mod classic;
mod every_version;
mod migration;
mod offsets;
mod records;
mod txn_offsets;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{GroupConfig, GroupCoordinator, GroupRequest, Output, RequestId, TopicView};

/// Topics "t1" (3 partitions) and "t2" (1 partition).
pub(crate) struct Topics;

impl TopicView for Topics {
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, u32)> {
        match name {
            "t1" => Some((Uuid::from_u128(1), 3)),
            "t2" => Some((Uuid::from_u128(2), 1)),
            _ => None,
        }
    }
    fn topic_by_id(&self, id: &Uuid) -> Option<(String, u32)> {
        match id.as_u128() {
            1 => Some(("t1".into(), 3)),
            2 => Some(("t2".into(), 1)),
            _ => None,
        }
    }
    fn topic_names(&self) -> Vec<String> {
        vec!["t1".into(), "t2".into()]
    }
}

pub(crate) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A coordinator with deterministic member ids and a short initial delay.
pub(crate) struct Harness {
    pub coordinator: GroupCoordinator,
    pub next_id: RequestId,
    pub now_ms: i64,
    /// Every record appended so far, in order: what `__consumer_offsets` would hold.
    pub log: Vec<super::Record>,
    /// The same log with each record's producer id (-1 outside transactions) and the
    /// transaction markers: entry `i` sits at log offset `i`.
    pub entries: Vec<LogEntry>,
}

/// One entry of the harness's `__consumer_offsets` log.
#[derive(Debug, Clone)]
pub(crate) enum LogEntry {
    Record(i64, super::Record),
    Marker(i64, crate::txn::TxnResult),
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(GroupConfig::default())
    }

    pub fn with_config(config: GroupConfig) -> Self {
        let mut counter = 0u128;
        let coordinator = GroupCoordinator::new(config).with_uuid_source(move || {
            counter += 1;
            Uuid::from_u128(counter)
        });
        Harness {
            coordinator,
            next_id: 1,
            now_ms: 1_000_000,
            log: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Sends a request; returns its id and every output.
    pub fn send(&mut self, version: i16, request: GroupRequest) -> (RequestId, Vec<Output>) {
        let id = self.next_id;
        self.next_id += 1;
        let out = self
            .coordinator
            .handle(id, version, request, self.now_ms, &Topics);
        self.commit(&out);
        (id, out)
    }

    /// Like `send`, from a client with this id and host.
    pub fn send_from(
        &mut self,
        version: i16,
        client: &super::ClientInfo,
        request: GroupRequest,
    ) -> (RequestId, Vec<Output>) {
        let id = self.next_id;
        self.next_id += 1;
        let out = self
            .coordinator
            .handle_from(id, version, client, request, self.now_ms, &Topics);
        self.commit(&out);
        (id, out)
    }

    /// Like `send`, but every append of the request fails: nothing is committed.
    pub fn send_failing(
        &mut self,
        version: i16,
        request: GroupRequest,
    ) -> (RequestId, Vec<Output>) {
        let id = self.next_id;
        self.next_id += 1;
        let out = self
            .coordinator
            .handle(id, version, request, self.now_ms, &Topics);
        (id, out)
    }

    pub fn advance(&mut self, ms: i64) -> Vec<Output> {
        self.now_ms += ms;
        let out = self.coordinator.tick(self.now_ms, &Topics);
        self.commit(&out);
        out
    }

    /// Every append in `out` succeeds, in order, as the shell reports it.
    fn commit(&mut self, out: &[Output]) {
        for o in out {
            let (producer_id, records) = match o {
                Output::Append { records, .. } => (-1, records),
                Output::AppendTransactional {
                    producer_id,
                    records,
                    ..
                } => (*producer_id, records),
                Output::WriteMarker { completion, .. } => {
                    self.end_txn(completion.producer_id, completion.result);
                    continue;
                }
                Output::Respond(..) => continue,
            };
            let base = self.entries.len() as i64;
            self.log.extend(records.iter().cloned());
            self.entries.extend(
                records
                    .iter()
                    .map(|r| LogEntry::Record(producer_id, r.clone())),
            );
            self.coordinator.on_committed_at(base, producer_id, records);
        }
    }

    /// A transaction marker of `producer_id` is written and committed.
    pub fn end_txn(&mut self, producer_id: i64, result: crate::txn::TxnResult) {
        self.entries.push(LogEntry::Marker(producer_id, result));
        self.coordinator.replay_end_txn(producer_id, result);
    }

    /// A fresh coordinator loaded from the first `len` entries of the log (a restart that
    /// finds the log cut there), serving at the harness's clock.
    pub fn replayed(&self, len: usize) -> Harness {
        let mut h = Harness::new();
        h.now_ms = self.now_ms;
        for (offset, entry) in self.entries.iter().take(len).enumerate() {
            match entry {
                LogEntry::Record(producer_id, (key, value)) => h
                    .coordinator
                    .replay_at(offset as i64, *producer_id, key, value.as_deref())
                    .expect("replays"),
                LogEntry::Marker(producer_id, result) => {
                    h.coordinator.replay_end_txn(*producer_id, *result)
                }
            }
            h.entries.push(entry.clone());
        }
        h.coordinator.finish_replay(self.now_ms);
        h
    }
}

/// Every response in `out` for `id`, treating appends as successful.
pub(crate) fn responses(out: &[Output], id: RequestId) -> Vec<ResponseKind> {
    let mut found = Vec::new();
    for o in out {
        match o {
            Output::Respond(rid, r) if *rid == id => found.push(r.clone()),
            Output::Append { on_success, .. } => {
                found.extend(
                    on_success
                        .iter()
                        .filter(|(rid, _)| *rid == id)
                        .map(|(_, r)| r.clone()),
                );
            }
            Output::AppendTransactional {
                on_success: (rid, r),
                ..
            } if *rid == id => found.push(r.clone()),
            _ => {}
        }
    }
    found
}

pub(crate) fn join_response(out: &[Output], id: RequestId) -> Option<JoinGroupResponse> {
    responses(out, id).into_iter().find_map(|r| match r {
        ResponseKind::JoinGroup(j) => Some(j),
        _ => None,
    })
}

pub(crate) fn sync_response(out: &[Output], id: RequestId) -> Option<SyncGroupResponse> {
    responses(out, id).into_iter().find_map(|r| match r {
        ResponseKind::SyncGroup(j) => Some(j),
        _ => None,
    })
}

/// All records appended in `out`.
pub(crate) fn appended(out: &[Output]) -> Vec<super::Record> {
    out.iter()
        .flat_map(|o| match o {
            Output::Append { records, .. } | Output::AppendTransactional { records, .. } => {
                records.clone()
            }
            Output::WriteMarker { .. } => Vec::new(),
            Output::Respond(..) => Vec::new(),
        })
        .collect()
}

/// A consumer-protocol subscription (v0) to `topics`.
pub(crate) fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    Bytes::from(b)
}

pub(crate) fn join(
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocols: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(subscription(&["t1"]))
                })
                .collect(),
        )
}

pub(crate) fn sync(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        )
}

pub(crate) fn heartbeat(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
}

pub(crate) fn commit(
    group: &str,
    member: &str,
    generation: i32,
    entries: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<offset_commit_request::OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in entries {
        let p = offset_commit_request::OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(s("meta")));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

/// Joins `n` dynamic members (v5: MEMBER_ID_REQUIRED first), runs the delay, and syncs with
/// the leader's trivial assignment. Returns (member ids, leader, generation).
pub(crate) fn stable_group(h: &mut Harness, group: &str, n: usize) -> (Vec<String>, String, i32) {
    let mut ids = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..n {
        let (id, out) = h.send(
            5,
            GroupRequest::JoinGroup(join(group, "", None, &["range"])),
        );
        let resp = join_response(&out, id).expect("member id required");
        assert_eq!(resp.error_code, 79);
        let member_id = resp.member_id.to_string();
        let (id, out) = h.send(
            5,
            GroupRequest::JoinGroup(join(group, &member_id, None, &["range"])),
        );
        assert!(join_response(&out, id).is_none(), "join is parked");
        ids.push(member_id);
        pending.push(id);
    }
    let mut out = Vec::new();
    // Each joiner during the initial delay extends it once; stop as soon as the joins answer.
    for _ in 0..5 {
        out.extend(h.advance(3_000));
        if pending.iter().all(|id| join_response(&out, *id).is_some()) {
            break;
        }
    }
    let mut leader = String::new();
    let mut generation = 0;
    for id in &pending {
        let resp = join_response(&out, *id).expect("join completed");
        assert_eq!(resp.error_code, 0);
        leader = resp.leader.to_string();
        generation = resp.generation_id;
    }
    let (id, out) = h.send(
        3,
        GroupRequest::SyncGroup(sync(
            group,
            &leader,
            generation,
            &[(&leader, b"leader-assignment")],
        )),
    );
    assert_eq!(sync_response(&out, id).expect("leader sync").error_code, 0);
    for m in ids.iter().filter(|m| **m != leader) {
        let (id, out) = h.send(3, GroupRequest::SyncGroup(sync(group, m, generation, &[])));
        assert_eq!(
            sync_response(&out, id).expect("follower sync").error_code,
            0
        );
    }
    (ids, leader, generation)
}

#[test]
fn consumer_group_members_keep_their_client_id_and_host() {
    // Proves a KIP-848 member is described with the client id and host of its heartbeat (they
    // were empty: the coordinator passed no client to the consumer group).
    let mut h = Harness::new();
    let client = super::ClientInfo {
        client_id: "billing".into(),
        client_host: "/10.1.2.3".into(),
    };
    let join = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("m1"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t1"))]))
        .with_topic_partitions(Some(vec![]));
    let (id, out) = h.send_from(1, &client, GroupRequest::ConsumerGroupHeartbeat(join));
    let ResponseKind::ConsumerGroupHeartbeat(r) = responses(&out, id).remove(0) else {
        panic!("not a heartbeat response");
    };
    assert_eq!(r.error_code, 0);
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g"))]);
    let (id, out) = h.send(0, GroupRequest::ConsumerGroupDescribe(describe));
    let ResponseKind::ConsumerGroupDescribe(d) = responses(&out, id).remove(0) else {
        panic!("not a describe response");
    };
    let member = &d.groups[0].members[0];
    assert_eq!(member.client_id.as_str(), "billing");
    assert_eq!(member.client_host.as_str(), "/10.1.2.3");
    // And the member record carries them, so a replay describes the same.
    let mut replayed = GroupCoordinator::new(GroupConfig::default());
    for (key, value) in &h.log {
        replayed.replay(key, value.as_deref()).unwrap();
    }
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("g"))]);
    let out = replayed.handle(
        99,
        0,
        GroupRequest::ConsumerGroupDescribe(describe),
        h.now_ms,
        &Topics,
    );
    let ResponseKind::ConsumerGroupDescribe(d) = responses(&out, 99).remove(0) else {
        panic!("not a describe response");
    };
    assert_eq!(d.groups[0].members[0].client_host.as_str(), "/10.1.2.3");
}
