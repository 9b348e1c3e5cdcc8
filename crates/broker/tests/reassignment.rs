//! Three real `runnel` processes: a replication-factor-1 partition moved to another broker
//! with AlterPartitionReassignments while a producer writes to it with acks=1 and acks=all;
//! every acknowledged record is readable from the new leader at its offset, the idempotent
//! producer's state moved with the data, and the old broker deletes its copy.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    alter_partition_reassignments_request as alter, metadata_request,
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, MetadataRequest, RequestKind,
    ResponseKind,
};

fn start(node: &QuorumNode, voters: &str) -> Runnel {
    node.start(
        voters,
        tempfile::tempdir().unwrap(),
        "\"num.partitions\" = 1\n",
    )
}

/// Partition 0 of `topic` as `port` reports it: (leader, replicas, isr), if known.
fn partition_state(port: u16, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ])));
    let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    let p = r.topics.first()?.partitions.first()?;
    Some((
        p.leader_id.0,
        p.replica_nodes.iter().map(|b| b.0).collect(),
        p.isr_nodes.iter().map(|b| b.0).collect(),
    ))
}

/// Waits until every node reports a leader for partition 0 of `topic` (each has applied the
/// topic: a leader that has not answers a produce UNKNOWN_TOPIC_OR_PARTITION); that leader,
/// as node 1 reports it.
fn leader_known_everywhere(nodes: &[QuorumNode], topic: &str) -> i32 {
    wait_until(
        Duration::from_secs(10),
        "every node knows the topic",
        || {
            nodes
                .iter()
                .all(|n| partition_state(n.port, topic).is_some_and(|(l, _, _)| l > 0))
        },
    );
    partition_state(nodes[0].port, topic).map_or(-1, |(leader, _, _)| leader)
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One idempotent batch of one record.
fn idempotent_batch(producer: (i64, i16), sequence: i32, value: &[u8]) -> bytes::Bytes {
    runnel_protocol::batch::encode_uncompressed_batch(&runnel_protocol::batch::BatchSpec {
        producer_id: producer.0,
        producer_epoch: producer.1,
        base_sequence: sequence,
        base_timestamp: 1_700_000_000_000,
        records: vec![runnel_protocol::batch::RecordSpec {
            timestamp_delta: 0,
            key: None,
            value: Some(value),
            headers: vec![],
        }],
        ..Default::default()
    })
    .into()
}

fn reassign(port: u16, topic: &str, target: i32) -> i16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = RequestKind::AlterPartitionReassignments(
        AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![alter::ReassignableTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![alter::ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(target)]))])]),
    );
    let ResponseKind::AlterPartitionReassignments(r) = call(
        &mut stream,
        ApiKey::AlterPartitionReassignments,
        0,
        &request,
    ) else {
        panic!("not an AlterPartitionReassignments response")
    };
    assert_eq!(r.error_code, 0);
    r.responses[0].partitions[0].error_code
}

// Proves the move loses no acknowledged record: a producer alternating acks=1 and acks=all
// keeps writing through the copy, the fence and the switch-over (retrying on
// NOT_LEADER_OR_FOLLOWER at the leader Metadata names); afterwards the new leader holds every
// acknowledged record at the offset it was acknowledged with, and the old broker's directory
// is gone.
#[test]
fn a_partition_moves_to_another_broker_without_losing_acknowledged_records() {
    let (nodes, voters) = quorum_nodes(3);
    let runnels: Vec<Runnel> = nodes.iter().map(|n| start(n, &voters)).collect();
    let port_of = |id: i32| nodes.iter().find(|n| n.id == id).unwrap().port;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", nodes[0].port)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let request = create_topics_request("moving", 1, &[("retention.ms", "-1")]);
        if let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        {
            if r.topics[0].error_code == 0 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the topic could not be created");
        std::thread::sleep(Duration::from_millis(200));
    }
    let old = leader_known_everywhere(&nodes, "moving");
    let target = nodes.iter().map(|n| n.id).find(|id| *id != old).unwrap();
    let ports: Vec<(i32, u16)> = nodes.iter().map(|n| (n.id, n.port)).collect();
    // An idempotent producer's batches (the partition checks sequences per producer id; the
    // id is not allocated here: InitProducerId is not what this test is about).
    let producer_id = (4242i64, 0i16);

    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let port_of = |id: i32| ports.iter().find(|(n, _)| *n == id).unwrap().1;
            let mut acked: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
            let mut leader = old;
            let mut stream = TcpStream::connect(("127.0.0.1", port_of(leader))).unwrap();
            let mut i = 0i32;
            let mut last = None;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("record-{i}").into_bytes();
                let acks = if i % 2 == 0 { 1 } else { -1 };
                let records = idempotent_batch(producer_id, i, &value);
                let request = produce_request("moving", acks, 10_000, &[(0, records.clone())]);
                let ResponseKind::Produce(r) = call(&mut stream, ApiKey::Produce, 9, &request)
                else {
                    panic!("not a Produce response")
                };
                let p = &r.responses[0].partition_responses[0];
                if p.error_code == 0 {
                    assert!(
                        acked.insert(p.base_offset, value).is_none(),
                        "offset reused"
                    );
                    last = Some((records, p.base_offset));
                    i += 1;
                } else {
                    // NOT_LEADER_OR_FOLLOWER while the partition moves: find the leader again.
                    std::thread::sleep(Duration::from_millis(20));
                    if let Some((l, _, _)) = partition_state(port_of(leader), "moving") {
                        if l > 0 && l != leader {
                            leader = l;
                            stream = TcpStream::connect(("127.0.0.1", port_of(leader))).unwrap();
                        }
                    }
                }
            }
            (acked, leader, last)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reassign(port_of(target), "moving", target), 0);
    let moved_by = Instant::now() + Duration::from_secs(60);
    while !partition_state(port_of(target), "moving")
        .is_some_and(|(l, r, _)| l == target && r == vec![target])
    {
        if Instant::now() > moved_by {
            for r in &runnels {
                eprintln!("----\n{}", r.log());
            }
            panic!(
                "the move did not complete: {:?}",
                partition_state(port_of(target), "moving")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (acked, last_leader, last) = producer.join().unwrap();
    assert_eq!(last_leader, target, "the producer followed the move");
    assert!(
        acked.len() > 20,
        "the producer wrote through the move ({})",
        acked.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(target))).unwrap();
    let stored = read_partition(&mut stream, "moving", 0);
    for (offset, value) in &acked {
        assert_eq!(
            stored.get(offset).map(|v| v.as_ref()),
            Some(value.as_slice()),
            "acknowledged record at offset {offset} is missing or different on the new leader"
        );
    }
    // The new leader rebuilt the producer's state from the copied batches: a retry of the last
    // acknowledged batch is a duplicate answered with its original offset.
    let (records, offset) = last.unwrap();
    let request = produce_request("moving", -1, 10_000, &[(0, records)]);
    let ResponseKind::Produce(r) = call(&mut stream, ApiKey::Produce, 9, &request) else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, offset),
        "the retry is a duplicate"
    );
    assert_eq!(
        read_partition(&mut stream, "moving", 0).len(),
        stored.len(),
        "the retry wrote nothing"
    );
    let old_runnel = &runnels[(old - 1) as usize];
    wait_until(
        Duration::from_secs(10),
        "the old broker deletes its copy",
        || !old_runnel.data_dir().join("moving-0").exists(),
    );
}

// Proves the copy goes to the old leader's inter-broker listener (`inter.broker.listener.name`),
// not its first one: each node's client listener is advertised at a port nothing listens on,
// so the move completes only when the new leader fetches from the INTERNAL listener.
#[test]
fn a_moving_partition_is_copied_over_the_inter_broker_listener() {
    let (nodes, voters) = quorum_nodes(2);
    let internal: Vec<u16> = nodes.iter().map(|_| free_port()).collect();
    let runnels: Vec<Runnel> = nodes
        .iter()
        .zip(&internal)
        .map(|(node, internal)| {
            let listeners = format!(
                "CLIENT://127.0.0.1:{},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{}",
                node.port, node.controller_port
            );
            let config = format!(
                "\"node.id\" = {}\n\"controller.listener.names\" = \"CONTROLLER\"\n\
                 \"listener.security.protocol.map\" = \
                 \"CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
                 \"advertised.listeners\" = \"CLIENT://127.0.0.1:1,INTERNAL://127.0.0.1:{internal}\"\n\
                 \"inter.broker.listener.name\" = \"INTERNAL\"\n\
                 \"controller.quorum.voters\" = \"{voters}\"\n\"num.partitions\" = 1\n",
                node.id
            );
            Runnel::start_with_listeners(
                tempfile::tempdir().unwrap(),
                &listeners,
                node.port,
                &config,
                &[],
            )
        })
        .collect();
    create_retrying(nodes[0].port, "inner", 1);
    // Every node must have applied the topic: the leader answers UNKNOWN_TOPIC_OR_PARTITION
    // to a produce that reaches it before its own metadata image has the topic.
    let leader = leader_known_everywhere(&nodes, "inner");
    let port_of = |id: i32| nodes.iter().find(|n| n.id == id).unwrap().port;
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(leader))).unwrap();
    let request = produce_request("inner", -1, 10_000, &[(0, batch(&["a", "b", "c"]))]);
    let ResponseKind::Produce(r) = call(&mut stream, ApiKey::Produce, 9, &request) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let target = nodes.iter().find(|n| n.id != leader).unwrap().id;
    // The target may not have registered yet (INVALID_REPLICA_ASSIGNMENT until it has).
    wait_for(Duration::from_secs(20), "the move is accepted", || {
        (reassign(nodes[0].port, "inner", target) == 0).then_some(())
    });
    wait_until(Duration::from_secs(20), "the partition moved", || {
        partition_state(port_of(target), "inner")
            .is_some_and(|(l, r, _)| l == target && r == [target])
    });
    let mut stream = TcpStream::connect(("127.0.0.1", port_of(target))).unwrap();
    let records = read_partition(&mut stream, "inner", 0);
    assert_eq!(
        records.values().map(|v| v.as_ref()).collect::<Vec<_>>(),
        [b"a".as_ref(), b"b".as_ref(), b"c".as_ref()]
    );
    drop(runnels);
}
