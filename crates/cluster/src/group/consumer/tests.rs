//! Consumer group scenarios with a fake clock and an in-memory topic view.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    GroupId, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use uuid::Uuid;

use super::records::{Assignment, RecordKey, RecordValue};
use super::{assignor, is_consumer_group_record_key, ConsumerGroup};
use crate::group::{GroupConfig, Record, TopicView};

#[derive(Default)]
struct Topics(BTreeMap<String, (Uuid, u32)>);

impl Topics {
    fn add(&mut self, name: &str, partitions: u32) -> Uuid {
        let id = Uuid::from_u128(0x1000 + self.0.len() as u128);
        self.0.insert(name.into(), (id, partitions));
        id
    }
}

impl TopicView for Topics {
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, u32)> {
        self.0.get(name).copied()
    }
    fn topic_by_id(&self, id: &Uuid) -> Option<(String, u32)> {
        self.0
            .iter()
            .find(|(_, (i, _))| i == id)
            .map(|(n, (_, c))| (n.clone(), *c))
    }
    fn topic_names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_req(member_id: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(s(t))).collect()))
        .with_topic_partitions(Some(vec![]))
}

fn to_wire(a: &Assignment) -> Vec<TopicPartitions> {
    a.iter()
        .map(|(t, ps)| {
            TopicPartitions::default()
                .with_topic_id(*t)
                .with_partitions(ps.iter().copied().collect())
        })
        .collect()
}

/// A simulated client: what it owns and which epoch it believes it has.
#[derive(Clone)]
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

struct Harness {
    group: ConsumerGroup,
    topics: Topics,
    config: GroupConfig,
    now_ms: i64,
    records: Vec<Record>,
    clients: BTreeMap<String, Client>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            group: ConsumerGroup::new("g".into()),
            topics: Topics::default(),
            config: GroupConfig::default(),
            now_ms: 1_000,
            records: Vec::new(),
            clients: BTreeMap::new(),
        }
    }

    fn send(&mut self, req: &ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        let (resp, recs) = self
            .group
            .heartbeat(req, 1, self.now_ms, &self.topics, &self.config);
        self.records.extend(recs);
        check_invariants(&self.group);
        for v in 0..=1 {
            encode(&resp, v);
        }
        resp
    }

    fn join(&mut self, id: &str, topics: &[&str]) -> ConsumerGroupHeartbeatResponse {
        let resp = self.send(&join_req(id, topics));
        assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
        let mut c = Client {
            id: id.into(),
            epoch: 0,
            owned: Assignment::new(),
        };
        apply_response(&mut c, &resp);
        self.clients.insert(id.into(), c);
        resp
    }

    /// One heartbeat from a client that reports what it owns and applies the answer: it drops
    /// revoked partitions and takes new ones immediately.
    fn beat(&mut self, id: &str) -> ConsumerGroupHeartbeatResponse {
        let c = self.clients[id].clone();
        let req = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(id))
            .with_member_epoch(c.epoch)
            .with_topic_partitions(Some(to_wire(&c.owned)));
        let resp = self.send(&req);
        assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
        let c = self.clients.get_mut(id).unwrap();
        apply_response(c, &resp);
        // The client-side invariant: no two clients own a partition.
        let mut seen = BTreeSet::new();
        for c in self.clients.values() {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "two clients own {t}/{p}");
                }
            }
        }
        resp
    }

    /// Heartbeats every client until nothing changes.
    fn settle(&mut self) {
        for _ in 0..10 {
            let ids: Vec<String> = self.clients.keys().cloned().collect();
            for id in ids {
                self.beat(&id);
            }
            if self.group.state_name() == "Stable" {
                return;
            }
        }
        panic!("group did not settle: {}", self.group.state_name());
    }

    fn counts(&self) -> Vec<usize> {
        self.group
            .members()
            .map(|m| m.assigned.values().map(BTreeSet::len).sum())
            .collect()
    }
}

fn apply_response(c: &mut Client, resp: &ConsumerGroupHeartbeatResponse) {
    c.epoch = resp.member_epoch;
    if let Some(a) = &resp.assignment {
        c.owned = a
            .topic_partitions
            .iter()
            .map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect()))
            .collect();
    }
}

/// Server-side invariant: no partition is held (assigned or pending revocation) by two members.
fn check_invariants(g: &ConsumerGroup) {
    let mut seen = BTreeMap::new();
    for m in g.members() {
        for a in [&m.assigned, &m.pending_revocation] {
            for (t, ps) in a {
                for p in ps {
                    if let Some(other) = seen.insert((*t, *p), m.member_id.clone()) {
                        panic!("{t}/{p} held by {other} and {}", m.member_id);
                    }
                }
            }
        }
        assert!(m.member_epoch <= g.group_epoch());
    }
    assert!(g.assignment_epoch() <= g.group_epoch());
}

fn encode<T: Encodable>(msg: &T, version: i16) {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("encode at v{version}: {e}"));
}

fn replayed(h: &Harness) -> ConsumerGroup {
    let mut g = ConsumerGroup::new("g".into());
    for (k, v) in &h.records {
        assert!(g.replay(k, v.as_deref()).unwrap());
    }
    g
}

#[test]
fn two_members_split_six_partitions() {
    // Proves two joining members end with 3 partitions each, disjoint, at the group epoch.
    let mut h = Harness::new();
    h.topics.add("t", 6);
    let r = h.join("a", &["t"]);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(
        h.clients["a"]
            .owned
            .values()
            .map(BTreeSet::len)
            .sum::<usize>(),
        6
    );
    h.join("b", &["t"]);
    h.settle();
    assert_eq!(h.counts(), vec![3, 3]);
    assert_eq!(h.group.group_epoch(), 2);
    assert!(h.group.members().all(|m| m.member_epoch == 2));
}

#[test]
fn third_member_joins_revocation_before_assignment() {
    // Proves a third member gets partitions only after the others revoke them, epochs bump, and no partition is ever owned twice.
    let mut h = Harness::new();
    h.topics.add("t", 6);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    h.settle();
    let r = h.join("c", &["t"]);
    // c is at the new epoch but gets nothing yet: its partitions are still owned by a and b.
    assert_eq!(r.member_epoch, 3);
    assert!(h.clients["c"].owned.is_empty());
    assert_eq!(h.group.state_name(), "Reconciling");
    // a must revoke first: it stays at epoch 2 and its new assignment is smaller.
    let r = h.beat("a");
    assert_eq!(r.member_epoch, 2);
    assert_eq!(
        h.group.member("a").unwrap().state,
        super::member::MemberState::UnrevokedPartitions
    );
    // Acknowledging the revocation moves a to epoch 3.
    let r = h.beat("a");
    assert_eq!(r.member_epoch, 3);
    h.settle();
    assert_eq!(h.counts(), vec![2, 2, 2]);
    assert!(h.group.members().all(|m| m.member_epoch == 3));
}

#[test]
fn member_leave_reassigns_partitions() {
    // Proves a leaving member's partitions go to the remaining member at a bumped epoch.
    let mut h = Harness::new();
    h.topics.add("t", 6);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    h.settle();
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("b"))
        .with_member_epoch(-1);
    let r = h.send(&leave);
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    h.clients.remove("b");
    assert_eq!(h.group.state_name(), "Assigning");
    h.settle();
    assert_eq!(h.counts(), vec![6]);
    assert_eq!(h.group.group_epoch(), 3);
}

#[test]
fn session_expiry_fences_member() {
    // Proves a silent member is fenced after the session timeout and its partitions move.
    let mut h = Harness::new();
    h.topics.add("t", 4);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    h.settle();
    let deadline = h.group.next_deadline_ms().unwrap();
    h.now_ms = deadline - 1;
    h.beat("a");
    assert!(h.group.tick(h.now_ms, &h.topics, &h.config).is_empty());
    h.now_ms = deadline;
    let recs = h.group.tick(h.now_ms, &h.topics, &h.config);
    h.records.extend(recs);
    assert!(h.group.member("b").is_none());
    h.clients.remove("b");
    h.settle();
    assert_eq!(h.counts(), vec![4]);
}

#[test]
fn rebalance_timeout_fences_member_that_does_not_revoke() {
    // Proves a member that keeps partitions pending revocation past its rebalance timeout is fenced, freeing them.
    let mut h = Harness::new();
    h.topics.add("t", 4);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    // a heartbeats but never drops what it is asked to revoke.
    let a = h.clients["a"].clone();
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("a"))
        .with_member_epoch(a.epoch)
        .with_topic_partitions(Some(to_wire(&a.owned)));
    let r = h.send(&req);
    assert_eq!(r.member_epoch, 1);
    assert_eq!(
        h.group.member("a").unwrap().state,
        super::member::MemberState::UnrevokedPartitions
    );
    h.now_ms += 29_999;
    h.beat("b");
    h.send(&req);
    assert!(h.group.tick(h.now_ms, &h.topics, &h.config).is_empty());
    h.now_ms += 1;
    h.beat("b");
    let recs = h.group.tick(h.now_ms, &h.topics, &h.config);
    assert!(!recs.is_empty());
    assert!(h.group.member("a").is_none());
    h.clients.remove("a");
    h.settle();
    assert_eq!(h.counts(), vec![4]);
}

#[test]
fn regex_subscription_picks_up_new_topic() {
    // Proves a regex subscription resolves at join, writes its record, and picks up a matching topic created later.
    let mut h = Harness::new();
    h.topics.add("orders-eu", 2);
    h.topics.add("payments", 2);
    let req = join_req("a", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("orders-.*")));
    let r = h.send(&req);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    h.clients.insert(
        "a".into(),
        Client {
            id: "a".into(),
            epoch: 0,
            owned: Assignment::new(),
        },
    );
    apply_response(h.clients.get_mut("a").unwrap(), &r);
    assert_eq!(h.group.subscribed_topics(), vec!["orders-eu".to_string()]);
    assert_eq!(h.clients["a"].owned.len(), 1);
    let us = h.topics.add("orders-us", 3);
    h.beat("a");
    h.settle();
    assert_eq!(h.clients["a"].owned[&us].len(), 3);
    assert_eq!(
        h.group.subscribed_topics(),
        vec!["orders-eu".to_string(), "orders-us".to_string()]
    );
    assert!(h.records.iter().any(|(k, _)| matches!(
        RecordKey::decode(k),
        Ok(Some(RecordKey::RegularExpression { .. }))
    )));
    let bad = join_req("b", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("orders-(")));
    assert_eq!(
        h.send(&bad).error_code,
        ResponseError::InvalidRegularExpression.code()
    );
    assert_eq!(h.clients["a"].id, "a");
}

#[test]
fn partition_count_change_triggers_reassignment() {
    // Proves growing a topic bumps the group epoch and assigns the new partitions.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    h.settle();
    let epoch = h.group.group_epoch();
    h.topics.0.get_mut("t").unwrap().1 = 6;
    h.settle();
    assert_eq!(h.group.group_epoch(), epoch + 1);
    assert_eq!(h.counts(), vec![3, 3]);
}

#[test]
fn unsupported_assignor_rejected() {
    // Proves an assignor outside group.consumer.assignors is refused with UNSUPPORTED_ASSIGNOR and no records.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    let r = h.send(&join_req("a", &["t"]).with_server_assignor(Some(s("sticky"))));
    assert_eq!(r.error_code, ResponseError::UnsupportedAssignor.code());
    assert!(h.records.is_empty() && h.group.is_empty());
    let r = h.send(&join_req("a", &["t"]).with_server_assignor(Some(s("range"))));
    assert_eq!(r.error_code, 0);
}

#[test]
fn fenced_member_epoch_and_unknown_member() {
    // Proves wrong epochs get FENCED_MEMBER_EPOCH, the previous epoch with a subset is accepted, unknown ids get UNKNOWN_MEMBER_ID.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    h.join("a", &["t"]);
    let hb = |epoch: i32, id: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(id))
            .with_member_epoch(epoch)
    };
    assert_eq!(
        h.send(&hb(5, "a")).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        h.send(&hb(1, "zz")).error_code,
        ResponseError::UnknownMemberId.code()
    );
    h.join("b", &["t"]);
    h.settle();
    let m = h.group.member("a").unwrap().clone();
    assert_eq!(m.previous_member_epoch, 1);
    // The previous epoch with owned partitions a subset of the assignment: the lost-response retry.
    let retry = hb(1, "a").with_topic_partitions(Some(to_wire(&m.assigned)));
    assert_eq!(h.send(&retry).error_code, 0);
    // The previous epoch without owned partitions is fenced.
    assert_eq!(
        h.send(&hb(1, "a")).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        h.send(&hb(0, "a").with_rebalance_timeout_ms(1)).error_code,
        ResponseError::InvalidRequest.code()
    );
}

#[test]
fn invalid_requests_and_group_max_size() {
    // Proves Kafka's field-combination checks give INVALID_REQUEST and a full group gives GROUP_MAX_SIZE_REACHED.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    let cases = [
        join_req("", &["t"]),
        join_req("a", &[]),
        join_req("a", &["t"]).with_rebalance_timeout_ms(-1),
        join_req("a", &["t"]).with_topic_partitions(None),
        join_req("a", &["t"]).with_member_epoch(-3),
        join_req("a", &["t"]).with_instance_id(Some(s(""))),
        join_req("a", &["t"]).with_member_epoch(-2),
    ];
    for req in cases {
        assert_eq!(
            h.send(&req).error_code,
            ResponseError::InvalidRequest.code(),
            "{req:?}"
        );
    }
    // v0 lets the server generate the member id.
    let (r, _) = h
        .group
        .heartbeat(&join_req("", &["t"]), 0, h.now_ms, &h.topics, &h.config);
    assert_eq!(r.error_code, 0);
    assert_eq!(r.member_id.unwrap().len(), 22);
    h.config.consumer_group_max_size = 1;
    assert_eq!(
        h.send(&join_req("b", &["t"])).error_code,
        ResponseError::GroupMaxSizeReached.code()
    );
}

#[test]
fn static_member_leave_and_rejoin_keeps_assignment() {
    // Proves a static member leaving with -2 keeps its partitions and a new member id with the same instance id takes them over.
    let mut h = Harness::new();
    h.topics.add("t", 4);
    h.send(&join_req("a", &["t"]).with_instance_id(Some(s("i1"))));
    h.join("b", &["t"]);
    h.clients.insert(
        "a".into(),
        Client {
            id: "a".into(),
            epoch: 1,
            owned: Assignment::new(),
        },
    );
    h.settle();
    let before = h.group.member("a").unwrap().assigned.clone();
    let leave = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("a"))
        .with_instance_id(Some(s("i1")))
        .with_member_epoch(-2);
    assert_eq!(h.send(&leave).member_epoch, -2);
    let r = h.send(&join_req("a2", &["t"]).with_instance_id(Some(s("i1"))));
    assert_eq!(r.error_code, 0);
    assert!(h.group.member("a").is_none());
    assert_eq!(h.group.member("a2").unwrap().assigned, before);
    // A second instance with the same id while a2 is active is refused.
    let r = h.send(&join_req("a3", &["t"]).with_instance_id(Some(s("i1"))));
    assert_eq!(r.error_code, ResponseError::UnreleasedInstanceId.code());
}

#[test]
fn range_vs_uniform() {
    // Proves range gives co-partitioned contiguous ranges and uniform gives balanced, sticky counts.
    let t1 = Uuid::from_u128(1);
    let t2 = Uuid::from_u128(2);
    let counts = BTreeMap::from([(t1, 3), (t2, 3)]);
    let spec = |current: Assignment| assignor::MemberSpec {
        instance_id: None,
        subscribed_topic_ids: BTreeSet::from([t1, t2]),
        current,
    };
    let members = BTreeMap::from([
        ("m0".to_string(), spec(Assignment::new())),
        ("m1".to_string(), spec(Assignment::new())),
    ]);
    let range = assignor::range(&members, &counts);
    assert_eq!(
        range["m0"],
        Assignment::from([(t1, BTreeSet::from([0, 1])), (t2, BTreeSet::from([0, 1]))])
    );
    assert_eq!(
        range["m1"],
        Assignment::from([(t1, BTreeSet::from([2])), (t2, BTreeSet::from([2]))])
    );
    let uniform = assignor::uniform(&members, &counts);
    let n = |a: &Assignment| a.values().map(BTreeSet::len).sum::<usize>();
    assert_eq!((n(&uniform["m0"]), n(&uniform["m1"])), (3, 3));
    // Stickiness: a third member takes one partition from each and nothing else moves.
    let mut members3: BTreeMap<String, assignor::MemberSpec> = uniform
        .iter()
        .map(|(k, v)| (k.clone(), spec(v.clone())))
        .collect();
    members3.insert("m2".into(), spec(Assignment::new()));
    let next = assignor::uniform(&members3, &counts);
    assert_eq!([n(&next["m0"]), n(&next["m1"]), n(&next["m2"])], [2, 2, 2]);
    for m in ["m0", "m1"] {
        for (t, ps) in &next[m] {
            assert!(
                ps.is_subset(&uniform[m][t]),
                "{m} kept only its own partitions"
            );
        }
    }
    // Heterogeneous: m1 alone subscribes to t2.
    let hetero = BTreeMap::from([
        (
            "m0".to_string(),
            assignor::MemberSpec {
                instance_id: None,
                subscribed_topic_ids: BTreeSet::from([t1]),
                current: Assignment::new(),
            },
        ),
        ("m1".to_string(), spec(Assignment::new())),
    ]);
    let u = assignor::uniform(&hetero, &counts);
    assert_eq!(n(&u["m0"]), 3);
    assert_eq!(u["m1"].get(&t2).map(BTreeSet::len), Some(3));
    // Static members come first in range order.
    let mut stat = members.clone();
    stat.get_mut("m1").unwrap().instance_id = Some("a".into());
    assert_eq!(
        assignor::range(&stat, &counts)["m1"][&t1],
        BTreeSet::from([0, 1])
    );
}

#[test]
fn replay_of_emitted_records_rebuilds_equal_group() {
    // Proves replaying every emitted record (including leaves, fencing and regexes) rebuilds the same persisted state, and tombstones empty it.
    let mut h = Harness::new();
    h.topics.add("t", 6);
    h.topics.add("orders-1", 2);
    h.join("a", &["t"]);
    h.join("b", &["t"]);
    let r = h.send(
        &join_req("c", &[])
            .with_subscribed_topic_names(None)
            .with_subscribed_topic_regex(Some(s("orders-.*"))),
    );
    h.clients.insert(
        "c".into(),
        Client {
            id: "c".into(),
            epoch: 0,
            owned: Assignment::new(),
        },
    );
    apply_response(h.clients.get_mut("c").unwrap(), &r);
    h.beat("a");
    assert_eq!(&replayed(&h).persisted().clone(), h.group.persisted());
    h.settle();
    let g = replayed(&h);
    assert_eq!(g.persisted(), h.group.persisted());
    assert_eq!(g.state_name(), "Stable");
    assert_eq!(g.next_deadline_ms(), Some(0));
    for (k, _) in &h.records {
        assert_eq!(is_consumer_group_record_key(k).as_deref(), Some("g"));
    }
    let mut g = g;
    for (k, v) in h.group.tombstones() {
        assert!(v.is_none());
        assert!(g.replay(&k, None).unwrap());
    }
    assert!(g.is_empty() && g.is_deleted());
    assert_eq!(g.state_name(), "Dead");
    assert!(g.persisted().regexes.is_empty() && g.persisted().target.is_empty());
    // Keys of other groups and other record types are not ours.
    let other = RecordKey::Metadata {
        group_id: "h".into(),
    }
    .encode();
    assert!(!g.replay(&other, None).unwrap());
    assert!(!g.replay(&[0, 1, 0, 1, b'g'], None).unwrap());
}

#[test]
fn record_decoders_never_panic_on_garbage() {
    // Proves key and value decoders reject truncated and garbage bytes without panicking or over-allocating.
    let mut h = Harness::new();
    h.topics.add("t", 3);
    h.join("a", &["t"]);
    h.send(
        &join_req("c", &[])
            .with_subscribed_topic_names(None)
            .with_subscribed_topic_regex(Some(s("t.*"))),
    );
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for (k, v) in &h.records {
        let key = RecordKey::decode(k).unwrap().unwrap();
        let Some(v) = v else { continue };
        assert_eq!(
            RecordValue::decode(&key, v).unwrap().encode(),
            *v,
            "round trip"
        );
        for cut in 0..v.len() {
            let _ = RecordValue::decode(&key, &v[..cut]);
        }
        for cut in 0..k.len() {
            let _ = RecordKey::decode(&k[..cut]);
        }
        for _ in 0..200 {
            let mut bad = v.to_vec();
            let i = (next() as usize) % bad.len();
            bad[i] = next() as u8;
            let _ = RecordValue::decode(&key, &bad);
            let mut g = ConsumerGroup::new("g".into());
            let _ = g.replay(k, Some(&bad));
        }
    }
    // A huge array count in a tiny buffer is refused before allocating.
    let key = RecordKey::TargetAssignmentMember {
        group_id: "g".into(),
        member_id: "m".into(),
    };
    assert!(RecordValue::decode(&key, &[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = RecordKey::decode(&junk);
        let _ = is_consumer_group_record_key(&junk);
    }
}

#[test]
fn describe_output_and_encoding() {
    // Proves describe reports state, epochs, assignor, members with named assignments, and encodes at v0 and v1.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    h.send(
        &join_req("a", &["t"])
            .with_server_assignor(Some(s("range")))
            .with_rack_id(Some(s("r1"))),
    );
    let d = h.group.describe(1, &h.topics);
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!((d.group_epoch, d.assignment_epoch), (1, 1));
    assert_eq!(d.assignor_name.as_str(), "range");
    // The broker's authorizer answers authorized operations.
    assert_eq!(d.authorized_operations, i32::MIN);
    let m = &d.members[0];
    assert_eq!(m.member_id.as_str(), "a");
    assert_eq!(m.rack_id.as_deref(), Some("r1"));
    assert_eq!(m.member_type, 1);
    assert_eq!(m.assignment.topic_partitions[0].topic_name.0.as_str(), "t");
    assert_eq!(
        m.target_assignment.topic_partitions[0].partitions,
        vec![0, 1]
    );
    for v in 0..=1 {
        let d = h.group.describe(v, &h.topics);
        encode(
            &ConsumerGroupDescribeResponse::default().with_groups(vec![d]),
            v,
        );
    }
    assert_eq!(
        h.group.describe(0, &h.topics).authorized_operations,
        i32::MIN
    );
    assert_eq!(ConsumerGroup::new("x".into()).state_name(), "Empty");
}

#[test]
fn offset_commit_and_fetch_validation() {
    // Proves OffsetCommit/OffsetFetch member checks: STALE_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, admin commits only when empty.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    assert_eq!(h.group.validate_offset_commit("", -1, 9), Ok(()));
    h.join("a", &["t"]);
    assert_eq!(h.group.validate_offset_commit("a", 1, 9), Ok(()));
    assert_eq!(
        h.group.validate_offset_commit("a", 0, 9),
        Err(ResponseError::StaleMemberEpoch.code())
    );
    assert_eq!(
        h.group.validate_offset_commit("", -1, 9),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(h.group.validate_offset_fetch(Some("a"), 1), Ok(()));
    assert_eq!(
        h.group.validate_offset_fetch(Some("b"), 1),
        Err(ResponseError::UnknownMemberId.code())
    );
    assert_eq!(h.group.subscribed_topics(), vec!["t".to_string()]);
}

#[test]
fn error_responses_encode_at_every_version() {
    // Proves error, leave and full heartbeat responses encode at v0 and v1.
    let mut h = Harness::new();
    h.topics.add("t", 2);
    let ok = h.send(&join_req("a", &["t"]));
    let e = h.send(&join_req("a", &["t"]).with_server_assignor(Some(s("nope"))));
    for v in 0..=1 {
        encode(&ok, v);
        encode(&e, v);
    }
    assert!(e.member_id.is_none());
}
