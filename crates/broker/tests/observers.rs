//! A broker-only node (`process.roles = "broker"`, no CONTROLLER listener) beside a quorum of
//! three combined nodes: it replicates the metadata log as an observer (DescribeQuorum lists
//! it among the observers, never the voters), registers and is unfenced, is given partitions
//! and serves them, forwards admin requests, follows a new active controller after kill -9 of
//! the old one, after its own kill -9 catches up with what committed while it was down, and
//! once unregistered leaves the observers.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::{
    metadata_request, ApiKey, BrokerId, DescribeClusterRequest, MetadataRequest, RequestKind,
    ResponseKind, UnregisterBrokerRequest,
};

const OBSERVER_ID: i32 = 4;

/// The broker-only node's config: the same voters, no CONTROLLER listener of its own.
fn observer_config(voters: &str) -> String {
    format!(
        "\"node.id\" = {OBSERVER_ID}\n\"process.roles\" = \"broker\"\n\
         \"controller.listener.names\" = \"CONTROLLER\"\n\
         \"listener.security.protocol.map\" = \"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
         \"controller.quorum.voters\" = \"{voters}\"\n\"num.partitions\" = 1\n"
    )
}

fn start_observer(port: u16, voters: &str, dir: tempfile::TempDir) -> Runnel {
    Runnel::start_with_listeners(
        dir,
        &format!("PLAINTEXT://127.0.0.1:{port}"),
        port,
        &observer_config(voters),
        &[],
    )
}

/// Unfenced brokers `port`'s DescribeCluster lists (none while any listed broker is fenced).
fn unfenced_brokers(port: u16) -> Vec<i32> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = RequestKind::DescribeCluster(
        DescribeClusterRequest::default().with_include_fenced_brokers(true),
    );
    let ResponseKind::DescribeCluster(r) = call(&mut stream, ApiKey::DescribeCluster, 2, &request)
    else {
        panic!("not a DescribeCluster response")
    };
    if r.brokers.iter().any(|b| b.is_fenced) {
        return Vec::new();
    }
    let mut ids: Vec<i32> = r.brokers.iter().map(|b| b.broker_id.0).collect();
    ids.sort();
    ids
}

/// (partition, leader) of every partition of `topic` in `port`'s metadata.
fn leaders(port: u16, topic: &str) -> Vec<(i32, i32)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ])));
    let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect()
}

fn produce(port: u16, topic: &str, partition: i32, values: &[&str]) -> i16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = produce_request(topic, -1, 10_000, &[(partition, batch(values))]);
    let ResponseKind::Produce(r) = call(&mut stream, ApiKey::Produce, 9, &request) else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

// Proves process.roles=broker: a node with no CONTROLLER listener learns the metadata log
// from the controllers, is a full broker of the cluster, and is an observer, not a voter.
#[test]
fn broker_only_node_observes_the_quorum_and_serves_partitions() {
    let (nodes, voters) = quorum_nodes(3);
    let mut controllers: Vec<Option<Runnel>> = nodes
        .iter()
        .map(|n| {
            Some(n.start(
                &voters,
                tempfile::tempdir().unwrap(),
                "\"num.partitions\" = 1\n",
            ))
        })
        .collect();
    let port = free_port();
    // Ready only once it caught up with the log and its controller unfenced it.
    let observer = start_observer(port, &voters, tempfile::tempdir().unwrap());
    assert!(!observer.log().contains("controller listener bound"));
    wait_for(
        Duration::from_secs(20),
        "every node sees four brokers",
        || {
            nodes
                .iter()
                .map(|n| n.port)
                .chain([port])
                .all(|p| unfenced_brokers(p) == [1, 2, 3, 4])
                .then_some(())
        },
    );
    // Asked on the broker-only node, DescribeQuorum is forwarded to the active controller.
    let (_, (leader, voter_ids, observer_ids)) =
        wait_for(Duration::from_secs(10), "the quorum is described", || {
            describe_quorum(&[port])
        });
    assert_eq!(voter_ids.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        observer_ids.contains_key(&OBSERVER_ID),
        "observers: {observer_ids:?}"
    );
    assert_ne!(leader, OBSERVER_ID);

    // Created through the broker-only node (forwarded); partitions spread over all four.
    create_retrying(port, "spread", 8);
    let placed = wait_for(
        Duration::from_secs(10),
        "the observer sees the topic",
        || {
            let placed = leaders(port, "spread");
            (placed.len() == 8).then_some(placed)
        },
    );
    let own: Vec<i32> = placed
        .iter()
        .filter(|(_, l)| *l == OBSERVER_ID)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        !own.is_empty(),
        "no partition placed on the observer: {placed:?}"
    );
    assert_eq!(produce(port, "spread", own[0], &["a", "b"]), 0);
    // A partition it does not lead is refused with NOT_LEADER_OR_FOLLOWER.
    let other = placed.iter().find(|(_, l)| *l != OBSERVER_ID).unwrap().0;
    assert_eq!(produce(port, "spread", other, &["x"]), 6);

    // kill -9 of the active controller: the observer follows the next one.
    let index = (leader - 1) as usize;
    drop(controllers[index].take());
    let survivors: Vec<u16> = nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| n.port)
        .collect();
    create_retrying(port, "after-failover", 1);
    wait_for(Duration::from_secs(10), "the survivors see it", || {
        survivors
            .iter()
            .all(|p| topic_visible(*p, "after-failover"))
            .then_some(())
    });

    // kill -9 of the observer; what commits meanwhile is there once it is back.
    let (dir, _) = observer.into_dir();
    create_retrying(survivors[0], "while-down", 1);
    let observer = start_observer(port, &voters, dir);
    assert!(topic_visible(port, "while-down"), "{}", observer.log());
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let records = read_partition(&mut stream, "spread", own[0]);
    assert_eq!(
        records.values().map(|v| v.as_ref()).collect::<Vec<_>>(),
        [b"a".as_ref(), b"b".as_ref()]
    );

    // Gone for good (`kafka-cluster unregister`): it leaves the observers too.
    drop(observer);
    let mut stream = TcpStream::connect(("127.0.0.1", survivors[0])).unwrap();
    let request = RequestKind::UnregisterBroker(
        UnregisterBrokerRequest::default().with_broker_id(BrokerId(OBSERVER_ID)),
    );
    let ResponseKind::UnregisterBroker(r) =
        call(&mut stream, ApiKey::UnregisterBroker, 0, &request)
    else {
        panic!("not an UnregisterBroker response")
    };
    assert_eq!(r.error_code, 0);
    let ports: Vec<u16> = nodes.iter().map(|n| n.controller_port).collect();
    wait_for(Duration::from_secs(10), "the observer is dropped", || {
        let (_, (_, _, observers)) = describe_quorum(&ports)?;
        (!observers.contains_key(&OBSERVER_ID)).then_some(())
    });
    drop(controllers);
}

/// A controller-only node's config and `listeners` (its CONTROLLER listener alone).
fn start_controller_only(node: &QuorumNode, voters: &str) -> Runnel {
    Runnel::start_with_listeners(
        tempfile::tempdir().unwrap(),
        &format!("CONTROLLER://127.0.0.1:{}", node.controller_port),
        node.controller_port,
        &node.config(voters, "\"process.roles\" = \"controller\"\n"),
        &[],
    )
}

// Proves Kafka's isolated mode: three controller-only nodes (no client listener, never
// registered as brokers) and two broker-only nodes form one cluster; partitions land on the
// brokers only, and the brokers go on after kill -9 of the active controller.
#[test]
fn controller_only_quorum_serves_broker_only_nodes() {
    let (controllers, voters) = quorum_nodes(3);
    let mut running: Vec<Option<Runnel>> = controllers
        .iter()
        .map(|n| Some(start_controller_only(n, &voters)))
        .collect();
    for n in &controllers {
        // No client listener was bound.
        assert!(TcpStream::connect(("127.0.0.1", n.port)).is_err());
    }
    let brokers: Vec<(i32, u16)> = (4..=5).map(|id| (id, free_port())).collect();
    let _brokers: Vec<Runnel> = brokers
        .iter()
        .map(|(id, port)| {
            Runnel::start_with_listeners(
                tempfile::tempdir().unwrap(),
                &format!("PLAINTEXT://127.0.0.1:{port}"),
                *port,
                &observer_config(&voters).replace(
                    &format!("\"node.id\" = {OBSERVER_ID}"),
                    &format!("\"node.id\" = {id}"),
                ),
                &[],
            )
        })
        .collect();
    let ports: Vec<u16> = brokers.iter().map(|(_, p)| *p).collect();
    wait_for(Duration::from_secs(20), "both brokers see both", || {
        ports
            .iter()
            .all(|p| unfenced_brokers(*p) == [4, 5])
            .then_some(())
    });
    // DescribeQuorum on a controller's CONTROLLER listener (as kafka-metadata-quorum
    // --bootstrap-controller asks it).
    let controller_ports: Vec<u16> = controllers.iter().map(|n| n.controller_port).collect();
    let (_, (leader, voter_ids, observer_ids)) =
        wait_for(Duration::from_secs(10), "the quorum is described", || {
            describe_quorum(&controller_ports)
        });
    assert_eq!(voter_ids.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(observer_ids.keys().copied().collect::<Vec<_>>(), [4, 5]);

    create_retrying(ports[0], "isolated", 6);
    let placed = wait_for(Duration::from_secs(10), "the topic is placed", || {
        let placed = leaders(ports[1], "isolated");
        (placed.len() == 6).then_some(placed)
    });
    let mut hosts: Vec<i32> = placed.iter().map(|(_, l)| *l).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts, [4, 5], "placed: {placed:?}");
    for (partition, leader) in &placed {
        let port = brokers.iter().find(|(id, _)| id == leader).unwrap().1;
        assert_eq!(produce(port, "isolated", *partition, &["v"]), 0);
    }

    drop(running[(leader - 1) as usize].take());
    create_retrying(ports[1], "after-failover", 1);
    assert!(topic_visible(ports[1], "after-failover"));
    wait_for(Duration::from_secs(10), "the other broker sees it", || {
        topic_visible(ports[0], "after-failover").then_some(())
    });
}

// Proves a broker-only node of a dynamic quorum (KIP-853: `controller.quorum.bootstrap.servers`,
// no static voters) finds the leader through the bootstrap servers, replicates as an observer
// and serves: here beside one standalone controller-only node.
#[test]
fn broker_only_node_joins_a_dynamic_quorum_through_bootstrap_servers() {
    let controller_port = free_port();
    let bootstrap =
        format!("\"controller.quorum.bootstrap.servers\" = \"127.0.0.1:{controller_port}\"\n");
    let common = "\"controller.listener.names\" = \"CONTROLLER\"\n\
                  \"listener.security.protocol.map\" = \"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
                  \"num.partitions\" = 1\n";
    let _controller = Runnel::start_with_listeners(
        tempfile::tempdir().unwrap(),
        &format!("CONTROLLER://127.0.0.1:{controller_port}"),
        controller_port,
        &format!("\"node.id\" = 1\n\"process.roles\" = \"controller\"\n{common}{bootstrap}"),
        &[],
    );
    let port = free_port();
    let _broker = Runnel::start_with_listeners(
        tempfile::tempdir().unwrap(),
        &format!("PLAINTEXT://127.0.0.1:{port}"),
        port,
        &format!("\"node.id\" = 2\n\"process.roles\" = \"broker\"\n{common}{bootstrap}"),
        &[],
    );
    wait_for(Duration::from_secs(20), "the broker is unfenced", || {
        (unfenced_brokers(port) == [2]).then_some(())
    });
    let (_, (leader, voters, observers)) =
        wait_for(Duration::from_secs(10), "the quorum is described", || {
            describe_quorum(&[controller_port])
        });
    assert_eq!(leader, 1);
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(observers.keys().copied().collect::<Vec<_>>(), [2]);
    create_retrying(port, "dynamic", 2);
    assert_eq!(produce(port, "dynamic", 1, &["v"]), 0);
}

/// One runnel frame of the CONTROLLER listener: length (u32 BE, kind included), kind, body.
fn runnel_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

/// Whether the peer closed `stream` within a few seconds (reads EOF or an error).
fn closed_soon(stream: &mut TcpStream) -> bool {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // The controller may write Raft messages to an attached connection first.
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

// Proves hostile attach frames on the CONTROLLER listener close that one connection and
// nothing else: a second attach on one connection, an attach whose body is not a node id, an
// oversized frame; the quorum goes on committing.
#[test]
fn bad_attach_frames_close_only_their_connection() {
    use std::io::Write;
    let (nodes, voters) = quorum_nodes(1);
    let _node = nodes[0].start(&voters, tempfile::tempdir().unwrap(), "");
    let controller = nodes[0].controller_port;
    let attach = |id: u64| runnel_frame(5, &id.to_be_bytes());
    let hostile: [Vec<u8>; 3] = [
        [attach(77), attach(78)].concat(),
        runnel_frame(5, b"short"),
        (u32::MAX).to_be_bytes().to_vec(),
    ];
    for bytes in hostile {
        let mut stream = TcpStream::connect(("127.0.0.1", controller)).unwrap();
        stream.write_all(&bytes).unwrap();
        assert!(
            closed_soon(&mut stream),
            "{:?} was not refused",
            &bytes[..8]
        );
    }
    // One attach alone stays open (the controller would send that observer its messages).
    let mut one = TcpStream::connect(("127.0.0.1", controller)).unwrap();
    one.write_all(&attach(79)).unwrap();
    one.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(matches!(
        std::io::Read::read(&mut one, &mut buf),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    ));
    create_retrying(nodes[0].port, "still-serving", 1);
}

/// The CONTROLLER listener's other hostile peers: connections that start a frame and never
/// finish it (as many as the listener has slots), Raft frames forged to break raft-rs's
/// invariants (a heartbeat committing past the log, an append whose entries do not follow its
/// index) and a frame of more entries than any append carries. Each stalled connection is
/// closed within the request timeout, the frames are refused, and the controller keeps
/// committing: before, the heartbeat panicked the metadata thread (no change committed ever
/// again) and the stalled connections held every slot for good.
#[test]
fn stalled_connections_and_forged_raft_frames_do_not_stop_the_controller() {
    use raft::prelude::{Entry, Message, MessageType};
    use std::io::Write;
    let (nodes, voters) = quorum_nodes(1);
    let _node = nodes[0].start(
        &voters,
        tempfile::tempdir().unwrap(),
        "\"controller.quorum.request.timeout.ms\" = 1000\n",
    );
    let controller = nodes[0].controller_port;
    create_retrying(nodes[0].port, "before", 1);

    let mut stalled: Vec<TcpStream> = (0..256)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", controller)).ok()?;
            s.write_all(&[0, 0, 1]).ok()?;
            Some(s)
        })
        .collect();
    assert!(stalled.len() > 200, "the listener took the connections");
    for s in &mut stalled {
        assert!(closed_soon(s), "a stalled connection was closed");
    }

    let raft_frame =
        |message: &Message| runnel_frame(1, &runnel_cluster::quorum::encode_message(message));
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 1;
    heartbeat.to = 1;
    heartbeat.term = 1_000;
    heartbeat.commit = u64::MAX;
    let mut append = heartbeat.clone();
    append.set_msg_type(MessageType::MsgAppend);
    append.commit = 0;
    append.index = 1;
    append.set_entries(
        [5, 1]
            .map(|index| Entry {
                index,
                term: 1_000,
                ..Entry::default()
            })
            .to_vec()
            .into(),
    );
    let mut forged = TcpStream::connect(("127.0.0.1", controller)).unwrap();
    forged.write_all(&raft_frame(&heartbeat)).unwrap();
    forged.write_all(&raft_frame(&append)).unwrap();
    let mut flood = heartbeat.clone();
    flood.set_msg_type(MessageType::MsgAppend);
    flood.set_entries(vec![Entry::default(); (1 << 16) + 1].into());
    let mut flooding = TcpStream::connect(("127.0.0.1", controller)).unwrap();
    flooding.write_all(&raft_frame(&flood)).unwrap();
    assert!(closed_soon(&mut flooding), "too many entries: closed");
    // One connection carries one sender's messages.
    let mut other = heartbeat.clone();
    other.from = 2;
    let mut two_senders = TcpStream::connect(("127.0.0.1", controller)).unwrap();
    two_senders.write_all(&raft_frame(&heartbeat)).unwrap();
    two_senders.write_all(&raft_frame(&other)).unwrap();
    assert!(
        closed_soon(&mut two_senders),
        "two senders on one connection: closed"
    );

    create_retrying(nodes[0].port, "after", 1);
}
