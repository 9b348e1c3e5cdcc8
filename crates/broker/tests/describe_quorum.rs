//! The CONTROLLER listener speaks Kafka, and DescribeQuorum (API 55) describes the metadata
//! quorum, on three real `runnel` processes; a single-node broker does not advertise it.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    describe_quorum_request, ApiKey, ApiVersionsRequest, DescribeQuorumRequest,
    DescribeQuorumResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

fn start(node: &QuorumNode, voters: &str) -> Runnel {
    node.start(
        voters,
        tempfile::tempdir().unwrap(),
        "\"num.partitions\" = 1\n",
    )
}

fn cluster() -> (Vec<QuorumNode>, Vec<Runnel>) {
    let (nodes, voters) = quorum_nodes(3);
    let runnels = nodes.iter().map(|n| start(n, &voters)).collect();
    (nodes, runnels)
}

fn api_versions(port: u16) -> Vec<(i16, i16, i16)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("runnel-test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    );
    let ResponseKind::ApiVersions(r) = call(&mut stream, ApiKey::ApiVersions, 3, &request) else {
        panic!("not an ApiVersions response")
    };
    assert_eq!(r.error_code, 0);
    r.api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect()
}

fn describe_request(topic: &str, partition: i32) -> RequestKind {
    RequestKind::DescribeQuorum(DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(name(topic))
            .with_partitions(vec![describe_quorum_request::PartitionData::default()
                .with_partition_index(partition)]),
    ]))
}

fn describe(port: u16, version: i16, topic: &str, partition: i32) -> DescribeQuorumResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ResponseKind::DescribeQuorum(r) = call(
        &mut stream,
        ApiKey::DescribeQuorum,
        version,
        &describe_request(topic, partition),
    ) else {
        panic!("not a DescribeQuorum response")
    };
    r
}

/// The leader's answer, asked on each controller listener until one leads.
fn leader_answer(nodes: &[QuorumNode], version: i16) -> (i32, DescribeQuorumResponse) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for node in nodes {
            let r = describe(node.controller_port, version, "__cluster_metadata", 0);
            assert_eq!(r.error_code, 0);
            let p = &r.topics[0].partitions[0];
            if p.error_code == 0 {
                return (node.id, r);
            }
            assert_eq!(p.error_code, NOT_LEADER_OR_FOLLOWER);
        }
        assert!(Instant::now() < deadline, "no controller leads");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// Proves the CONTROLLER listener serves Kafka requests beside the Raft traffic (ApiVersions on
// every node's controller port, advertising DescribeQuorum and only controller APIs), that
// DescribeQuorum is answered only by the leader on a controller listener and through any
// broker listener (forwarded),
// with consistent fields: the leader among exactly three voters, epoch >= 1, the high
// watermark at the leader's log end, followers caught up after a CreateTopics, v2's nodes with
// the CONTROLLER endpoints, and Kafka's partition errors.
#[test]
fn three_nodes_describe_their_quorum() {
    let (nodes, _runnels) = cluster();
    for node in &nodes {
        let apis = api_versions(node.controller_port);
        assert!(
            apis.contains(&(ApiKey::DescribeQuorum as i16, 0, 2)),
            "{apis:?}"
        );
        // Only the controller's APIs there, as on a Kafka controller.
        for key in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::JoinGroup,
        ] {
            assert!(!apis.iter().any(|(k, _, _)| *k == key as i16), "{key:?}");
        }
        assert!(apis
            .iter()
            .any(|(k, _, _)| *k == ApiKey::CreateTopics as i16));
        assert!(api_versions(node.port).contains(&(ApiKey::DescribeQuorum as i16, 0, 2)));
    }
    let (leader, _) = leader_answer(&nodes, 2);

    // A change, so the log moves; created through a follower (forwarded).
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", follower.port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = create_topics_request("quorum-topic", 1, &[]);
        let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        else {
            panic!("not a CreateTopics response")
        };
        if r.topics[0].error_code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "create: {}",
            r.topics[0].error_code
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Followers catch up within a few heartbeats.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (leader, r) = loop {
        let (leader, r) = leader_answer(&nodes, 2);
        let p = &r.topics[0].partitions[0];
        if p.current_voters
            .iter()
            .all(|v| v.log_end_offset == p.high_watermark)
        {
            break (leader, r);
        }
        assert!(
            Instant::now() < deadline,
            "followers did not catch up: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].topic_name.as_str(), "__cluster_metadata");
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.partition_index, 0);
    assert_eq!(p.leader_id.0, leader);
    assert!(p.leader_epoch >= 1, "{p:?}");
    assert!(p.high_watermark >= 2, "{p:?}");
    let mut voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
    voters.sort_unstable();
    assert_eq!(voters, [1, 2, 3]);
    assert!(p.observers.is_empty());
    let me = p
        .current_voters
        .iter()
        .find(|v| v.replica_id.0 == leader)
        .unwrap();
    assert_eq!(me.log_end_offset, p.high_watermark);
    for v in &p.current_voters {
        assert!(v.replica_directory_id.is_nil());
        assert!(
            v.last_fetch_timestamp > 0 && v.last_caught_up_timestamp > 0,
            "{v:?}"
        );
    }
    let mut listed: Vec<(i32, String, u16)> = r
        .nodes
        .iter()
        .map(|n| {
            assert_eq!(n.listeners.len(), 1);
            assert_eq!(n.listeners[0].name.as_str(), "CONTROLLER");
            (
                n.node_id.0,
                n.listeners[0].host.to_string(),
                n.listeners[0].port,
            )
        })
        .collect();
    listed.sort();
    let expected: Vec<(i32, String, u16)> = nodes
        .iter()
        .map(|n| (n.id, "127.0.0.1".to_owned(), n.controller_port))
        .collect();
    assert_eq!(listed, expected);

    for node in &nodes {
        // A controller that does not lead says so; a broker listener forwards to the leader.
        let on_controller = describe(node.controller_port, 0, "__cluster_metadata", 0);
        let code = on_controller.topics[0].partitions[0].error_code;
        assert_eq!(
            code,
            if node.id == leader {
                0
            } else {
                NOT_LEADER_OR_FOLLOWER
            }
        );
        for version in 0..=2 {
            let forwarded = describe(node.port, version, "__cluster_metadata", 0);
            let fp = &forwarded.topics[0].partitions[0];
            assert_eq!((fp.error_code, fp.leader_id.0), (0, leader), "v{version}");
            assert_eq!(forwarded.nodes.is_empty(), version < 2);
        }
        let other = describe(node.port, 2, "__cluster_metadata", 1);
        assert_eq!(
            other.topics[0].partitions[0].error_code,
            UNKNOWN_TOPIC_OR_PARTITION
        );
        let other = describe(node.controller_port, 1, "other", 0);
        assert_eq!(
            other.topics[0].partitions[0].error_code,
            UNKNOWN_TOPIC_OR_PARTITION
        );
    }
}

// Proves a single-node broker (no quorum) does not advertise DescribeQuorum.
#[test]
fn a_single_node_does_not_advertise_describe_quorum() {
    let runnel = Runnel::start("");
    let apis = api_versions(runnel.port);
    assert!(!apis
        .iter()
        .any(|(k, _, _)| *k == ApiKey::DescribeQuorum as i16));
}
