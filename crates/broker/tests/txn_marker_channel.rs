//! The transaction coordinator's channel to partition leaders (Kafka's
//! `TransactionMarkerChannelManager`) against a real runnel process acting as the remote
//! leader: WriteTxnMarkers v1 over real sockets, the leader's per-partition verdicts carried
//! back, a lost connection answered NETWORK_EXCEPTION (retried by the coordinator) and
//! re-established on the next send.

mod common;

use std::net::TcpStream;

use common::*;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use runnel_broker::txn_marker_channel::MarkerChannel;
use runnel_broker::txns::MarkerRequest;
use runnel_storage::{TxnMarker, TxnResult};

/// ListOffsets latest (-1) of `topic`'s partition 0: its high watermark.
fn latest(stream: &mut TcpStream, topic: &str) -> i64 {
    let request = RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)]),
    ]));
    let ResponseKind::ListOffsets(r) = call(stream, ApiKey::ListOffsets, 7, &request) else {
        panic!("not a ListOffsets response")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn commit(coordinator_epoch: i32, partitions: &[(&str, i32)]) -> MarkerRequest {
    MarkerRequest {
        marker: TxnMarker {
            producer_id: 4242,
            producer_epoch: 0,
            coordinator_epoch,
            result: TxnResult::Commit,
            transaction_version: 0,
        },
        partitions: partitions.iter().map(|(t, p)| ((*t).into(), *p)).collect(),
    }
}

/// The codes of every partition, in order.
fn codes(results: &[runnel_broker::txns::MarkerResult]) -> Vec<(String, i32, i16)> {
    results
        .iter()
        .flat_map(|r| r.partitions.iter().map(|(t, p, c)| (t.to_string(), *p, *c)))
        .collect()
}

// Proves markers sent through the channel are written by the remote leader (its high
// watermark moves past the control batch, and the marker's coordinator epoch is recorded: an
// older one is then refused TRANSACTION_COORDINATOR_FENCED), a partition it does not hold
// answers UNKNOWN_TOPIC_OR_PARTITION, and after the leader restarts the dead connection gives
// NETWORK_EXCEPTION at most once before the channel reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_reach_a_remote_leader_over_the_wire() {
    let leader = Runnel::start("");
    let mut admin = leader.connect();
    create_topic(&mut admin, "t", 1, &[]);
    let address = format!("127.0.0.1:{}", leader.port);
    assert_eq!(latest(&mut admin, "t"), 0);

    let channel = MarkerChannel::new();
    let results = channel
        .send(2, &address, &[commit(5, &[("t", 0), ("missing", 0)])])
        .await;
    assert_eq!(
        codes(&results),
        vec![
            ("t".to_string(), 0, 0),
            (
                "missing".to_string(),
                0,
                ResponseError::UnknownTopicOrPartition.code()
            ),
        ]
    );
    assert_eq!(
        latest(&mut admin, "t"),
        1,
        "the control batch is in the log"
    );

    let results = channel.send(2, &address, &[commit(4, &[("t", 0)])]).await;
    assert_eq!(
        codes(&results),
        vec![(
            "t".to_string(),
            0,
            ResponseError::TransactionCoordinatorFenced.code()
        )]
    );

    // The leader restarts on the same port: the kept connection is dead.
    drop(admin);
    let (dir, port) = leader.into_dir();
    let down = channel.send(2, &address, &[commit(5, &[("t", 0)])]).await;
    assert_eq!(
        codes(&down),
        vec![("t".to_string(), 0, ResponseError::NetworkException.code())]
    );
    let leader = Runnel::start_in(dir, port, "");
    let mut admin = leader.connect();
    let mut results = channel.send(2, &address, &[commit(5, &[("t", 0)])]).await;
    if codes(&results)[0].2 == ResponseError::NetworkException.code() {
        // The first send after the restart may still find the old connection's socket.
        results = channel.send(2, &address, &[commit(5, &[("t", 0)])]).await;
    }
    assert_eq!(codes(&results), vec![("t".to_string(), 0, 0)]);
    assert_eq!(latest(&mut admin, "t"), 2);
}

// Proves the transaction coordinator's shell routes each marker by the partition's leader in
// the image: a partition led here is written locally, one led by broker 2 (a real runnel
// process registered in this broker's image at its address) goes to that broker over the
// wire and lands in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_sends_markers_of_remote_partitions_to_their_leader() {
    use runnel_broker::state::Broker;
    use runnel_cluster::Command;

    let remote = Runnel::start("");
    let mut admin = remote.connect();
    create_topic(&mut admin, "t", 1, &[]);

    let dir = tempfile::tempdir().unwrap();
    let config = runnel_broker::config::BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let broker = Broker::open(config, ("127.0.0.1".into(), free_port())).unwrap();
    let me = broker.node_id();
    let other = me + 1;
    broker
        .metadata
        .submit(
            &Command::RegisterBroker {
                node_id: other,
                host: "127.0.0.1".into(),
                port: remote.port,
                rack: None,
            },
            &*broker,
        )
        .unwrap();
    broker
        .create_topic_placed(
            "t",
            -1,
            -1,
            Default::default(),
            vec![(0, vec![other])],
            false,
        )
        .unwrap();
    broker
        .create_topic_placed(
            "local",
            -1,
            -1,
            Default::default(),
            vec![(0, vec![me])],
            false,
        )
        .unwrap();
    assert_eq!(
        broker
            .image()
            .topic("t")
            .unwrap()
            .registration(0)
            .unwrap()
            .leader,
        other
    );

    let results = runnel_broker::txn_markers::route_txn_markers(
        &broker,
        vec![commit(5, &[("t", 0), ("local", 0)])],
    )
    .await;
    let mut got = codes(&results);
    got.sort();
    assert_eq!(
        got,
        vec![("local".to_string(), 0, 0), ("t".to_string(), 0, 0)]
    );
    assert_eq!(
        latest(&mut admin, "t"),
        1,
        "the remote leader wrote the marker"
    );
    let local = broker.image().topic("local").unwrap().topic_id;
    let written = broker
        .partition(&local, 0)
        .unwrap()
        .reader()
        .offsets()
        .snapshot()
        .high_watermark;
    assert_eq!(written, 1, "the local partition got its marker directly");
}
