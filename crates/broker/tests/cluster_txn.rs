//! Transactions across a three-node cluster: a transactional produce to a partition whose
//! leader is not the transaction coordinator of the producer's transactional id. The leader
//! must ask the coordinator on the other node (AddPartitionsToTxn v5, KIP-890 part 2, as
//! Kafka's `AddPartitionsToTxnManager` does) instead of its own in-process coordinator, which
//! does not hold the id and would answer NOT_COORDINATOR (turned into NOT_ENOUGH_REPLICAS
//! "Unable to verify the partition has been added to the transaction", retried for ever by
//! clients: franz-go's TestTxnEtl hung on it).

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

const TOPIC: &str = "spread";

fn start(node: &QuorumNode, voters: &str) -> Runnel {
    node.start(
        voters,
        tempfile::tempdir().unwrap(),
        "\"transaction.state.log.num.partitions\" = 3\n",
    )
}

/// Runs `f` until it answers something other than one of these retriable codes (no
/// controller yet, brokers not registered, a coordinator shard loading), up to 30 s.
fn retrying<T>(mut f: impl FnMut() -> (i16, T)) -> (i16, T) {
    let retriable = [
        ResponseError::NotController,
        ResponseError::RequestTimedOut,
        ResponseError::InvalidReplicationFactor,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::NotCoordinator,
        ResponseError::ConcurrentTransactions,
        ResponseError::LeaderNotAvailable,
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, value) = f();
        if !retriable.iter().any(|e| e.code() == code) || Instant::now() > deadline {
            return (code, value);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

fn txn_batch(pid: i64, epoch: i16) -> bytes::Bytes {
    encode_uncompressed_batch(&BatchSpec {
        attributes: 0x10,
        base_timestamp: 1_000,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: 0,
        records: vec![RecordSpec {
            value: Some(b"v"),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    })
    .into()
}

// Proves a transactional produce (v12, transaction version 2) to a leader that is not the
// transactional id's coordinator is added to the transaction by that remote coordinator and
// appended, as on Kafka.
#[test]
fn transactional_produce_to_a_leader_that_is_not_the_coordinator() {
    let (nodes, voters) = quorum_nodes(3);
    let _runnels: Vec<Runnel> = nodes.iter().map(|n| start(n, &voters)).collect();
    let port_of = |id: i32| nodes.iter().find(|n| n.id == id).unwrap().port;

    // Three partitions striped over the three brokers: placement takes the unfenced ones, so
    // all three must have registered and been unfenced first (a cluster that elects fast
    // serves clients before the last broker is unfenced).
    let mut stream = connect(nodes[0].port);
    let (live, ()) = retrying(|| {
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])));
        let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
            panic!("not a Metadata response")
        };
        let all = r.brokers.len() == nodes.len();
        (
            if all {
                0
            } else {
                ResponseError::LeaderNotAvailable.code()
            },
            (),
        )
    });
    assert_eq!(live, 0, "every broker is unfenced");
    let (created, ()) = retrying(|| {
        let request = create_topics_request(TOPIC, 3, &[]);
        let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        else {
            panic!("not a CreateTopics response")
        };
        (r.topics[0].error_code, ())
    });
    assert_eq!(created, 0);

    // The coordinator of the transactional id (creates __transaction_state).
    let id = "remote-verify";
    let (found, coordinator) = retrying(|| {
        let request = RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![StrBytes::from_static_str(id)]),
        );
        let ResponseKind::FindCoordinator(r) =
            call(&mut stream, ApiKey::FindCoordinator, 4, &request)
        else {
            panic!("not a FindCoordinator response")
        };
        (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
    });
    assert_eq!(found, 0);

    let mut at_coordinator = connect(port_of(coordinator));
    let (init, (pid, epoch)) = retrying(|| {
        let request = RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        let ResponseKind::InitProducerId(r) =
            call(&mut at_coordinator, ApiKey::InitProducerId, 5, &request)
        else {
            panic!("not an InitProducerId response")
        };
        (r.error_code, (r.producer_id.0, r.producer_epoch))
    });
    assert_eq!(init, 0);

    // A partition led by another broker than the coordinator (striping puts one on each).
    let (metadata, remote) = retrying(|| {
        let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
        ])));
        let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
            panic!("not a Metadata response")
        };
        let topic = &r.topics[0];
        let remote = topic
            .partitions
            .iter()
            .find(|p| p.leader_id.0 >= 0 && p.leader_id.0 != coordinator)
            .map(|p| (p.partition_index, p.leader_id.0));
        match (topic.error_code, remote) {
            (0, Some(remote)) => (0, remote),
            (0, None) => (ResponseError::LeaderNotAvailable.code(), (-1, -1)),
            (code, _) => (code, (-1, -1)),
        }
    });
    assert_eq!(metadata, 0, "no partition led away from the coordinator");
    let (partition, leader) = remote;
    assert_ne!(leader, coordinator);

    let mut at_leader = connect(port_of(leader));
    let (produced, ()) = retrying(|| {
        let RequestKind::Produce(request) =
            produce_request(TOPIC, -1, 30_000, &[(partition, txn_batch(pid, epoch))])
        else {
            unreachable!()
        };
        let request = RequestKind::Produce(
            request.with_transactional_id(Some(TransactionalId(StrBytes::from_static_str(id)))),
        );
        let ResponseKind::Produce(r) = call(&mut at_leader, ApiKey::Produce, 12, &request) else {
            panic!("not a Produce response")
        };
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, ())
    });
    assert_eq!(
        produced, 0,
        "the leader (node {leader}) could not have the coordinator (node {coordinator}) add the partition"
    );
}
