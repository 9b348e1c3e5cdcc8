//! Coordinator sharding on a single node, against the real binary: batched FindCoordinator
//! (v4+) for groups and transactional ids answers this broker and the port the request came
//! in on for every key (it leads every partition of both internal topics), and the shards
//! loaded at startup after a kill -9 serve what was committed before it.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// Batched FindCoordinator of `keys` of `key_type` at `version`: (key, error, node, port).
fn find(
    stream: &mut TcpStream,
    version: i16,
    key_type: i8,
    keys: &[String],
) -> Vec<(String, i16, i32, i32)> {
    let request = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(key_type)
            .with_coordinator_keys(
                keys.iter()
                    .map(|k| StrBytes::from_string(k.clone()))
                    .collect(),
            ),
    );
    let ResponseKind::FindCoordinator(r) = call(stream, ApiKey::FindCoordinator, version, &request)
    else {
        panic!("not a FindCoordinator response")
    };
    r.coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code, c.node_id.0, c.port))
        .collect()
}

/// OffsetCommit v8 of `offset` for `group` on `topic`-0; retried while the coordinator loads.
fn commit(stream: &mut TcpStream, group: &str, topic: &str, offset: i64) -> i16 {
    let request = RequestKind::OffsetCommit(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_committed_offset(offset),
                    ]),
            ]),
    );
    let ResponseKind::OffsetCommit(r) = call(stream, ApiKey::OffsetCommit, 8, &request) else {
        panic!("not an OffsetCommit response")
    };
    r.topics[0].partitions[0].error_code
}

/// OffsetFetch v7 of `group`'s offset of `topic`-0, retried while the coordinator loads.
fn fetch(stream: &mut TcpStream, group: &str, topic: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name(topic))
                        .with_partition_indexes(vec![0]),
                ])),
        );
        let ResponseKind::OffsetFetch(r) = call(stream, ApiKey::OffsetFetch, 7, &request) else {
            panic!("not an OffsetFetch response")
        };
        let retriable = [
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::NotCoordinator.code(),
        ];
        if !retriable.contains(&r.error_code) || Instant::now() > deadline {
            assert_eq!(r.error_code, 0);
            return r.topics[0].partitions[0].committed_offset;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Proves every key of a batched lookup, of both key types and every batched version, is
// answered with this node and the port the request came in on (the leader of every internal
// partition), after the lookup created the internal topics.
#[test]
fn batched_lookups_answer_this_node_for_every_key() {
    let runnel = Runnel::start("");
    let mut stream = runnel.connect();
    let keys: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    for key_type in [0i8, 1] {
        for version in 4..=6 {
            let answers = find(&mut stream, version, key_type, &keys);
            assert_eq!(answers.len(), keys.len());
            for ((key, error, node, port), asked) in answers.into_iter().zip(&keys) {
                assert_eq!(&key, asked);
                assert_eq!(error, 0, "key {key} type {key_type} v{version}");
                assert_eq!(node, 1, "the default node.id leads everything");
                assert_eq!(port, i32::from(runnel.port));
            }
        }
    }
}

// Proves the shards loaded at startup after a kill -9 serve the offsets committed before it,
// for groups on many different shards.
#[test]
fn shards_loaded_at_startup_serve_what_was_committed() {
    let runnel = Runnel::start("");
    let mut stream = runnel.connect();
    create_topic(&mut stream, "t", 1, &[]);
    let groups: Vec<String> = (0..20).map(|i| format!("group-{i}")).collect();
    let answers = find(&mut stream, 4, 0, &groups);
    assert!(answers.iter().all(|a| a.1 == 0));
    for (i, group) in groups.iter().enumerate() {
        assert_eq!(commit(&mut stream, group, "t", 100 + i as i64), 0);
    }
    drop(stream);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut stream = runnel.connect();
    for (i, group) in groups.iter().enumerate() {
        assert_eq!(fetch(&mut stream, group, "t"), 100 + i as i64, "{group}");
    }
}
