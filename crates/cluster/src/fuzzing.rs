//! The code behind the cargo-fuzz targets in `crates/cluster/fuzz/`, kept here so the checked-in
//! corpus replays through exactly the same code in an ordinary `cargo test`.
//!
//! A target drives one sans-IO engine with a sequence of steps read from the fuzzer's bytes:
//! for the group coordinator, requests built from Kafka's schemas and then passed through the
//! broker's own door (validate, then decode: only what a client could get past it), and clock
//! ticks; for the controller (which has no clock), the commands the broker submits to it; for
//! the transaction coordinator, requests built field by field near the ids and epochs it holds,
//! ticks, append outcomes, marker writes and restarts. After every step it checks the engine's
//! invariants; a broken one panics, which the fuzzer reports.

mod controller;
mod txn;

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::fuzzing::{self as gen, Choices, FuzzBytes, GenOptions, SchemaGen};
use runnel_protocol::request::{decode_frame, Request};
use uuid::Uuid;

use crate::group::records::{self, RecordKey};
use crate::group::{ClientInfo, GroupConfig, GroupCoordinator, GroupRequest, Output, TopicView};
use crate::txn::TxnResult;

pub use controller::controller;
pub use txn::txn_coordinator;

/// Steps one input may take: enough for joins, syncs, commits and expiries to meet.
pub const STEPS_MAX: usize = 64;

/// Decoded bytes one fuzz request may cost (as the broker's per-request budget).
const DECODED_BYTES_MAX: usize = 64 << 20;

/// Every API the group coordinator answers.
const GROUP_APIS: [ApiKey; 13] = [
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::OffsetDelete,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::TxnOffsetCommit,
];

/// One entry of the fuzzed `__consumer_offsets` log.
enum Logged {
    /// A record, from a transactional batch of the producer id (-1: not transactional).
    Record(i64, crate::group::Record),
    /// A transaction marker of a producer.
    Marker(i64, TxnResult),
}

/// Topics "a" (3 partitions) and "b" (1): names the generator's alphabet produces.
struct FuzzTopics;

impl TopicView for FuzzTopics {
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, u32)> {
        match name {
            "a" => Some((Uuid::from_u128(1), 3)),
            "b" => Some((Uuid::from_u128(2), 1)),
            _ => None,
        }
    }
    fn topic_by_id(&self, id: &Uuid) -> Option<(String, u32)> {
        match id.as_u128() {
            1 => Some(("a".into(), 3)),
            2 => Some(("b".into(), 1)),
            _ => None,
        }
    }
    fn topic_names(&self) -> Vec<String> {
        vec!["a".into(), "b".into()]
    }
}

/// Turns a decoded request into the coordinator's request type.
fn group_request(body: RequestKind) -> Option<GroupRequest> {
    Some(match body {
        RequestKind::JoinGroup(r) => GroupRequest::JoinGroup(r),
        RequestKind::SyncGroup(r) => GroupRequest::SyncGroup(r),
        RequestKind::Heartbeat(r) => GroupRequest::Heartbeat(r),
        RequestKind::LeaveGroup(r) => GroupRequest::LeaveGroup(r),
        RequestKind::OffsetCommit(r) => GroupRequest::OffsetCommit(r),
        RequestKind::OffsetFetch(r) => GroupRequest::OffsetFetch(r),
        RequestKind::OffsetDelete(r) => GroupRequest::OffsetDelete(r),
        RequestKind::DescribeGroups(r) => GroupRequest::DescribeGroups(r),
        RequestKind::ListGroups(r) => GroupRequest::ListGroups(r),
        RequestKind::DeleteGroups(r) => GroupRequest::DeleteGroups(r),
        RequestKind::ConsumerGroupHeartbeat(r) => GroupRequest::ConsumerGroupHeartbeat(r),
        RequestKind::ConsumerGroupDescribe(r) => GroupRequest::ConsumerGroupDescribe(r),
        RequestKind::TxnOffsetCommit(r) => GroupRequest::TxnOffsetCommit(r),
        _ => return None,
    })
}

/// Member ids the coordinator handed out, so later requests can name real members: a
/// generated member id of "a" or "b" stands for the first or second one seen.
#[derive(Default)]
struct Members(Vec<StrBytes>);

impl Members {
    fn learn(&mut self, response: &ResponseKind) {
        let id = match response {
            ResponseKind::JoinGroup(r) => &r.member_id,
            ResponseKind::ConsumerGroupHeartbeat(r) => match &r.member_id {
                Some(id) => id,
                None => return,
            },
            _ => return,
        };
        if !id.is_empty() && !self.0.contains(id) && self.0.len() < 2 {
            self.0.push(id.clone());
        }
    }

    fn substitute(&self, id: &mut StrBytes) {
        let index = match id.as_str() {
            "a" => 0,
            "b" => 1,
            _ => return,
        };
        if let Some(real) = self.0.get(index) {
            *id = real.clone();
        }
    }

    fn patch(&self, request: &mut GroupRequest) {
        match request {
            GroupRequest::JoinGroup(r) => self.substitute(&mut r.member_id),
            GroupRequest::SyncGroup(r) => self.substitute(&mut r.member_id),
            GroupRequest::Heartbeat(r) => self.substitute(&mut r.member_id),
            GroupRequest::LeaveGroup(r) => {
                self.substitute(&mut r.member_id);
                for m in &mut r.members {
                    self.substitute(&mut m.member_id);
                }
            }
            GroupRequest::OffsetCommit(r) => self.substitute(&mut r.member_id),
            GroupRequest::ConsumerGroupHeartbeat(r) => self.substitute(&mut r.member_id),
            _ => {}
        }
    }
}

/// Makes requests meet often enough for groups to migrate between protocols: a group id of
/// even length is cut to its first character (so classic and consumer requests name the same
/// few groups); a protocol type that does not start with "b" becomes "consumer" with a
/// well-formed subscription to topic "a" (owning the partition its metadata's first byte
/// names, with a session timeout the coordinator accepts and often as a new member); a leader's assignment that starts with an even byte becomes a well-formed one; and
/// a ConsumerGroupHeartbeat joining (epoch 0) gets the fields a join must carry.
fn speak_consumer_protocol(request: &mut GroupRequest) {
    use crate::group::consumer_protocol::{encode_assignment, encode_subscription, Subscription};
    let group_id = match request {
        GroupRequest::JoinGroup(r) => Some(&mut r.group_id.0),
        GroupRequest::SyncGroup(r) => Some(&mut r.group_id.0),
        GroupRequest::Heartbeat(r) => Some(&mut r.group_id.0),
        GroupRequest::LeaveGroup(r) => Some(&mut r.group_id.0),
        GroupRequest::OffsetCommit(r) => Some(&mut r.group_id.0),
        GroupRequest::ConsumerGroupHeartbeat(r) => Some(&mut r.group_id.0),
        _ => None,
    };
    if let Some(id) = group_id {
        if id.len() % 2 == 0 && !id.is_empty() {
            *id = StrBytes::from_string(id[..1].to_string());
        }
    }
    match request {
        GroupRequest::ConsumerGroupHeartbeat(r) if r.member_epoch == 0 => {
            if r.rebalance_timeout_ms == -1 {
                r.rebalance_timeout_ms = 30_000;
            }
            r.topic_partitions = Some(Vec::new());
            if r.subscribed_topic_regex.is_none() {
                r.subscribed_topic_names = Some(vec![kafka_protocol::messages::TopicName(
                    StrBytes::from_static_str("a"),
                )]);
            }
        }
        GroupRequest::JoinGroup(r) if !r.protocol_type.starts_with('b') => {
            r.protocol_type = StrBytes::from_static_str("consumer");
            if !(1..=1_800_000).contains(&r.session_timeout_ms) {
                r.session_timeout_ms = 10_000;
            }
            // An unknown member id of odd length becomes a new member's empty id.
            if r.member_id.len() % 2 == 1 && r.member_id.len() < 8 {
                r.member_id = StrBytes::default();
            }
            for p in &mut r.protocols {
                let owned = p.metadata.first().map_or(Vec::new(), |b| {
                    vec![("a".to_string(), vec![i32::from(b % 3)])]
                });
                p.metadata = encode_subscription(&Subscription {
                    version: 1,
                    topics: vec!["a".into()],
                    owned_partitions: owned,
                    generation_id: -1,
                    ..Subscription::default()
                });
            }
        }
        GroupRequest::SyncGroup(r) => {
            for a in &mut r.assignments {
                if let Some(b) = a.assignment.first().filter(|b| *b % 2 == 0) {
                    a.assignment = encode_assignment(0, &[("a".into(), vec![i32::from(b % 3)])]);
                }
            }
        }
        _ => {}
    }
}

/// The run's bookkeeping of requests and answers, checked as outputs arrive.
#[derive(Default)]
struct Ledger {
    /// Request id -> (api, version) of every request not yet answered.
    open: BTreeMap<u64, (ApiKey, i16)>,
    answered: BTreeSet<u64>,
}

impl Ledger {
    /// An answer: to an open request, exactly once, and encodable at the request's version.
    fn answer(&mut self, id: u64, response: &ResponseKind) {
        let Some((api, version)) = self.open.remove(&id) else {
            panic!(
                "request {id} answered twice or never asked (answered before: {})",
                self.answered.contains(&id)
            );
        };
        self.answered.insert(id);
        let mut buf = BytesMut::new();
        if let Err(e) = response.encode(&mut buf, version) {
            panic!("{api:?} v{version} answer does not encode: {e:#}\n{response:?}");
        }
    }
}

/// Fuzz entry for the group coordinator.
///
/// Invariants checked:
/// - every answer goes to an open request, once, and encodes at that request's version;
/// - every record appended has a key Kafka's schemas read, and every committed record replays;
/// - after a tick at `now`, no deadline is left at or before `now` (the timer would spin);
/// - the committed offsets equal those a fresh coordinator rebuilds from the committed log.
pub fn group_coordinator(data: &[u8]) {
    let mut input = FuzzBytes::new(data);
    let config = GroupConfig {
        group_min_session_timeout_ms: 1,
        group_initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let mut counter = 0u128;
    let mut coordinator = GroupCoordinator::new(config.clone()).with_uuid_source(move || {
        counter += 1;
        Uuid::from_u128(counter)
    });
    let options = GenOptions {
        alphabet: b"ab",
        long_strings: true,
        small_ints: true,
        unknown_tags: false,
    };
    let mut now_ms: i64 = 1_000_000;
    // What reached the log, in order: records with the producer id of their batch (-1: not
    // transactional), and transaction markers.
    let mut committed_log: Vec<Logged> = Vec::new();
    let mut members = Members::default();
    let mut ledger = Ledger::default();
    let mut next_id = 1u64;
    for _ in 0..STEPS_MAX {
        if input.is_empty() {
            break;
        }
        let outputs = match input.below(8) {
            0 if input.below(2) == 0 => {
                // A transaction ends: a marker for a producer with pending offsets (or any
                // other producer, which changes nothing).
                let producers: Vec<i64> = coordinator.pending_txn_offsets().producers().collect();
                let producer_id = match producers.len() {
                    0 => input.below(3) as i64,
                    n => producers[input.below(n as u64) as usize],
                };
                let result = if input.below(2) == 0 {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                };
                coordinator.replay_end_txn(producer_id, result);
                committed_log.push(Logged::Marker(producer_id, result));
                Vec::new()
            }
            0 => {
                now_ms += input.below(5_000) as i64;
                let out = coordinator.tick(now_ms, &FuzzTopics);
                if let Some(deadline) = coordinator.next_deadline_ms() {
                    assert!(
                        deadline > now_ms,
                        "deadline {deadline} left at tick {now_ms}"
                    );
                }
                out
            }
            1 => {
                now_ms += 1_000 * input.below(100_000) as i64;
                coordinator.tick(now_ms, &FuzzTopics)
            }
            _ => {
                let api = GROUP_APIS[input.below(GROUP_APIS.len() as u64) as usize];
                let Some(range) = runnel_protocol::api::supported(api as i16) else {
                    continue;
                };
                let span = (range.max_version - range.min_version + 1) as u64;
                let version = range.min_version + input.below(span) as i16;
                let Ok(spec) = runnel_protocol::validate::request_schema(api as i16) else {
                    continue;
                };
                let mut body_gen = SchemaGen::new(spec, version, input, options);
                let body = body_gen.body();
                input = body_gen.choices;
                let client_id = ["a", "b"][input.below(2) as usize];
                let Ok(frame) = gen::frame(api as i16, version, 7, client_id, &body) else {
                    continue;
                };
                // The broker's door: only what passes it reaches the coordinator.
                let Ok(decoded) = decode_frame(Bytes::from(frame), DECODED_BYTES_MAX) else {
                    continue;
                };
                let Request::Kafka(body) = decoded.body else {
                    continue;
                };
                let Some(mut request) = group_request(body) else {
                    continue;
                };
                members.patch(&mut request);
                speak_consumer_protocol(&mut request);
                let id = next_id;
                next_id += 1;
                ledger.open.insert(id, (api, version));
                let client = ClientInfo {
                    client_id: client_id.to_owned(),
                    client_host: "/127.0.0.1".to_owned(),
                };
                coordinator.handle_from(id, version, &client, request, now_ms, &FuzzTopics)
            }
        };
        for output in outputs {
            match output {
                Output::Respond(id, response) => {
                    members.learn(&response);
                    ledger.answer(id, &response);
                }
                Output::Append {
                    records,
                    on_success,
                    on_failure,
                    ..
                } => {
                    for (key, _) in &records {
                        if let Err(e) = records::decode_key(key) {
                            panic!("appended a record whose key does not decode: {e}");
                        }
                    }
                    // One choice per append: it fails (nothing committed) or commits.
                    let responses = if input.below(8) == 0 {
                        on_failure
                    } else {
                        coordinator.on_committed_at(committed_log.len() as i64, -1, &records);
                        committed_log.extend(records.into_iter().map(|r| Logged::Record(-1, r)));
                        on_success
                    };
                    for (id, response) in responses {
                        members.learn(&response);
                        ledger.answer(id, &response);
                    }
                }
                // The fuzzer sends no CompleteTransaction (not a client request); markers
                // come from its own steps above.
                Output::WriteMarker { id, completion, .. } => {
                    coordinator.replay_end_txn(completion.producer_id, completion.result);
                    committed_log.push(Logged::Marker(completion.producer_id, completion.result));
                    let response =
                        crate::group::coordinator::marker_response(completion.partition, 0);
                    ledger.answer(id, &response);
                }
                Output::AppendTransactional {
                    producer_id,
                    records,
                    on_success: (id, response),
                    on_failure: (failed_id, failure),
                    ..
                } => {
                    // A transactional append fails (a fenced producer, say) or commits.
                    let (id, response) = if input.below(8) == 0 {
                        let code = input.below(100) as i16;
                        (
                            failed_id,
                            ResponseKind::TxnOffsetCommit(crate::group::txn_offset_commit_failed(
                                failure, code,
                            )),
                        )
                    } else {
                        coordinator.on_committed_at(
                            committed_log.len() as i64,
                            producer_id,
                            &records,
                        );
                        committed_log
                            .extend(records.into_iter().map(|r| Logged::Record(producer_id, r)));
                        (id, response)
                    };
                    members.learn(&response);
                    ledger.answer(id, &response);
                }
            }
        }
    }
    let mut replayed = GroupCoordinator::new(config);
    for (offset, logged) in committed_log.iter().enumerate() {
        match logged {
            Logged::Record(producer_id, (key, value)) => {
                if let Err(e) =
                    replayed.replay_at(offset as i64, *producer_id, key, value.as_deref())
                {
                    let kind = records::decode_key(key).unwrap_or(RecordKey::Other(-1));
                    panic!("a committed record does not replay ({kind:?}): {e}");
                }
            }
            Logged::Marker(producer_id, result) => replayed.replay_end_txn(*producer_id, *result),
        }
    }
    assert!(
        replayed.committed_offsets() == coordinator.committed_offsets(),
        "committed offsets differ from those replayed from the log"
    );
    assert!(
        replayed.pending_txn_offsets() == coordinator.pending_txn_offsets(),
        "pending transactional offsets differ from those replayed from the log"
    );
}
