//! A three-node cluster at the scale of the cluster benchmark: one CreateTopics of thousands
//! of partitions, sent to a node that is not the active controller, is acknowledged once
//! committed and applied on that node, however long opening the new logs takes, rather than
//! answered NOT_CONTROLLER while the leader is still applying it (the submitter used to give up
//! after `controller.quorum.request.timeout.ms`, and the client then saw the topic exist).

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;

const PARTITIONS: i32 = 2_000;

// Proves a CreateTopics of 2,000 partitions through every node answers success on the first
// try and every node then lists all partitions with a leader.
#[test]
fn a_create_of_thousands_of_partitions_is_acknowledged() {
    let nodes: Vec<(i32, u16, u16)> = (1..=3).map(|id| (id, free_port(), free_port())).collect();
    let voters = nodes
        .iter()
        .map(|(id, _, c)| format!("{id}@127.0.0.1:{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let _runnels: Vec<Runnel> = nodes
        .iter()
        .map(|(id, port, controller)| {
            let config = format!(
                "\"node.id\" = {id}\n\"controller.listener.names\" = \"CONTROLLER\"\n\
                 \"listener.security.protocol.map\" = \"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
                 \"controller.quorum.voters\" = \"{voters}\"\n"
            );
            Runnel::start_with_listeners(
                tempfile::tempdir().unwrap(),
                &format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
                *port,
                &config,
                &[],
            )
        })
        .collect();

    // Until a controller is elected and the brokers registered, a small create is refused
    // with a retriable error (NOT_CONTROLLER, INVALID_REPLICATION_FACTOR).
    let mut stream = TcpStream::connect(("127.0.0.1", nodes[0].1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = create_topics_request("warm-up", 3, &[]);
        let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        else {
            panic!("not a CreateTopics response")
        };
        if r.topics[0].error_code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never accepted a topic"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    for (i, (_, port, _)) in nodes.iter().enumerate() {
        let topic = format!("big-{i}");
        let mut stream = TcpStream::connect(("127.0.0.1", *port)).unwrap();
        let request = create_topics_request(&topic, PARTITIONS, &[]);
        let RequestKind::CreateTopics(request) = request else {
            unreachable!()
        };
        let request = RequestKind::CreateTopics(request.with_timeout_ms(120_000));
        let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        else {
            panic!("not a CreateTopics response")
        };
        assert_eq!(
            r.topics[0].error_code,
            0,
            "{topic} through node {}: {:?}",
            i + 1,
            r.topics[0].error_message
        );
        // Acknowledged only once this node applied it: its Metadata lists every partition led.
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name(&topic))),
        ])));
        let ResponseKind::Metadata(m) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
            panic!("not a Metadata response")
        };
        let t = &m.topics[0];
        assert_eq!(t.error_code, 0);
        assert_eq!(t.partitions.len(), PARTITIONS as usize);
        assert!(t.partitions.iter().all(|p| p.leader_id.0 > 0));
    }
}
