//! A dynamic metadata quorum (KIP-853) of real `runnel` processes: one node starts standalone
//! (its `controller.quorum.bootstrap.servers` is its own CONTROLLER endpoint), two more join as
//! learners (observers) and are promoted with AddRaftVoter, the first is killed with kill -9 and
//! the other two still commit, the dead one is removed with RemoveRaftVoter, and after every
//! node restarts the voter set (ids and directory ids) is the one committed and the removed
//! node, which never saw its removal, replicates as an observer.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::{
    add_raft_voter_request, AddRaftVoterRequest, ApiKey, RemoveRaftVoterRequest, RequestKind,
    ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const REQUEST_TIMED_OUT: i16 = 7;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const DUPLICATE_VOTER: i16 = 126;
const VOTER_NOT_FOUND: i16 = 127;
const INVALID_REQUEST: i16 = 42;

struct Node {
    id: i32,
    port: u16,
    controller_port: u16,
}

fn config(node: &Node, bootstrap_port: u16) -> String {
    format!(
        "\"node.id\" = {}\n\"controller.listener.names\" = \"CONTROLLER\"\n\
         \"listener.security.protocol.map\" = \"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\"\n\
         \"controller.quorum.bootstrap.servers\" = \"127.0.0.1:{bootstrap_port}\"\n\
         \"num.partitions\" = 1\n",
        node.id
    )
}

fn start(node: &Node, bootstrap_port: u16, dir: tempfile::TempDir) -> Runnel {
    let listen = format!(
        "PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        node.port, node.controller_port
    );
    Runnel::start_with_listeners(dir, &listen, node.port, &config(node, bootstrap_port), &[])
}

fn add_voter(port: u16, node: &Node, directory_id: Uuid) -> i16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = RequestKind::AddRaftVoter(
        AddRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_timeout_ms(5000)
            .with_voter_id(node.id)
            .with_voter_directory_id(directory_id)
            .with_listeners(vec![add_raft_voter_request::Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(node.controller_port)]),
    );
    let ResponseKind::AddRaftVoter(r) = call(&mut stream, ApiKey::AddRaftVoter, 0, &request) else {
        panic!("not an AddRaftVoter response")
    };
    r.error_code
}

fn remove_voter(port: u16, id: i32, directory_id: Uuid) -> i16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = RequestKind::RemoveRaftVoter(
        RemoveRaftVoterRequest::default()
            .with_cluster_id(None)
            .with_voter_id(id)
            .with_voter_directory_id(directory_id),
    );
    let ResponseKind::RemoveRaftVoter(r) = call(&mut stream, ApiKey::RemoveRaftVoter, 0, &request)
    else {
        panic!("not a RemoveRaftVoter response")
    };
    r.error_code
}

// Proves the voter set is dynamic and durable: learners join, are promoted only once caught
// up, the quorum survives kill -9 of its first voter, a dead voter is removed, and a restart
// of every node keeps the committed voter set with the same directory ids.
#[test]
fn standalone_node_grows_into_a_quorum_and_shrinks() {
    let nodes: Vec<Node> = (1..=3)
        .map(|id| Node {
            id,
            port: free_port(),
            controller_port: free_port(),
        })
        .collect();
    let controllers: Vec<u16> = nodes.iter().map(|n| n.controller_port).collect();
    let bootstrap = nodes[0].controller_port;
    let mut runnels: Vec<Option<Runnel>> = vec![Some(start(
        &nodes[0],
        bootstrap,
        tempfile::tempdir().unwrap(),
    ))];
    create_retrying(nodes[0].port, "before", 1);
    for node in &nodes[1..] {
        runnels.push(Some(start(node, bootstrap, tempfile::tempdir().unwrap())));
    }
    // Both join as observers (learners) with their directory ids.
    let (_, (leader, voters, observers)) =
        wait_for(Duration::from_secs(20), "both nodes observe", || {
            describe_quorum(&controllers).filter(|(_, (_, _, o))| o.len() == 2)
        });
    assert_eq!(leader, 1);
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert!(observers.values().all(|d| !d.is_nil()));
    // Refusals first: a directory id that is not the observer's never becomes a voter; a nil
    // one is not a valid voter; node 1 is already a voter.
    assert_eq!(
        add_voter(bootstrap, &nodes[1], Uuid::from_u128(7)),
        REQUEST_TIMED_OUT
    );
    assert_eq!(
        add_voter(bootstrap, &nodes[1], Uuid::nil()),
        INVALID_REQUEST
    );
    assert_eq!(add_voter(bootstrap, &nodes[0], voters[&1]), DUPLICATE_VOTER);
    // A controller that does not lead refuses.
    assert_eq!(
        add_voter(nodes[1].controller_port, &nodes[1], observers[&2]),
        NOT_LEADER_OR_FOLLOWER
    );
    for node in &nodes[1..] {
        let code = wait_for(Duration::from_secs(20), "the voter is added", || {
            let code = add_voter(bootstrap, node, observers[&node.id]);
            (code != REQUEST_TIMED_OUT).then_some(code)
        });
        assert_eq!(code, 0, "adding voter {}", node.id);
    }
    let (_, (_, voters, observers)) = describe_quorum(&controllers).expect("a leader");
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(observers.is_empty());
    // Older versions are answered too, without the directory ids they cannot carry.
    for version in 0..=1 {
        let (_, (_, old, _)) = describe_quorum_version(&controllers, version)
            .unwrap_or_else(|| panic!("DescribeQuorum v{version} answered"));
        assert_eq!(old.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(old.values().all(Uuid::is_nil), "v{version}: {old:?}");
    }
    let directory_ids = voters.clone();
    create_retrying(nodes[1].port, "three-voters", 1);
    // kill -9 of the first node: the other two are a majority of three and still commit.
    let first_dir = runnels[0].take().unwrap().into_dir().0;
    create_retrying(nodes[2].port, "after-kill", 1);
    for node in &nodes[1..] {
        wait_for(Duration::from_secs(10), "the topic is visible", || {
            topic_visible(node.port, "after-kill").then_some(())
        });
    }
    // Remove the dead voter through the new leader.
    let (leader_port, (_, _, _)) = wait_for(Duration::from_secs(20), "a new leader", || {
        describe_quorum(&controllers[1..])
    });
    assert_eq!(
        remove_voter(leader_port, 1, Uuid::from_u128(9)),
        VOTER_NOT_FOUND,
        "a voter with another directory id is not found"
    );
    assert_eq!(remove_voter(leader_port, 1, directory_ids[&1]), 0);
    let (_, (_, voters, _)) = describe_quorum(&controllers[1..]).expect("a leader");
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    create_retrying(nodes[1].port, "two-voters", 1);
    // Restart everyone (node 1 too: it is no longer a voter and must not disturb the others).
    let mut dirs = Vec::new();
    for runnel in runnels.iter_mut().skip(1) {
        dirs.push(runnel.take().unwrap().into_dir().0);
    }
    let mut restarted = vec![start(&nodes[0], bootstrap, first_dir)];
    for (node, dir) in nodes[1..].iter().zip(dirs) {
        restarted.push(start(node, bootstrap, dir));
    }
    let (_, (_, voters, _)) = wait_for(Duration::from_secs(20), "a leader after restart", || {
        describe_quorum(&controllers[1..])
    });
    let expected: BTreeMap<i32, Uuid> = directory_ids
        .iter()
        .filter(|(id, _)| **id != 1)
        .map(|(id, d)| (*id, *d))
        .collect();
    assert_eq!(
        voters, expected,
        "the committed voter set and directory ids"
    );
    // Node 1 was removed while it was down: its own log still makes it a voter, and the
    // members drop its messages. Hearing no leader, it asks to join and becomes an observer.
    wait_for(
        Duration::from_secs(30),
        "node 1 observes the quorum",
        || {
            let (_, (_, _, observers)) = describe_quorum(&controllers[1..])?;
            (observers.get(&1) == Some(&directory_ids[&1])).then_some(())
        },
    );
    create_retrying(nodes[2].port, "after-restart", 1);
    for node in &nodes[1..] {
        for topic in [
            "before",
            "three-voters",
            "after-kill",
            "two-voters",
            "after-restart",
        ] {
            wait_for(Duration::from_secs(10), "every topic is visible", || {
                topic_visible(node.port, topic).then_some(())
            });
        }
    }
    for runnel in &mut restarted {
        runnel.assert_alive();
    }
    // Node 3 comes back on another CONTROLLER port: its entry is updated in the committed
    // book (Kafka's UpdateRaftVoter), so the leader reaches it there and it still commits.
    let moved = Node {
        id: 3,
        port: nodes[2].port,
        controller_port: free_port(),
    };
    let dir = restarted.pop().unwrap().into_dir().0;
    restarted.push(start(&moved, bootstrap, dir));
    let controllers = [nodes[1].controller_port, moved.controller_port];
    wait_for(
        Duration::from_secs(20),
        "a leader with the same voters",
        || {
            let (_, (_, voters, _)) = describe_quorum(&controllers)?;
            (voters == expected).then_some(())
        },
    );
    // With voters {2, 3} a commit needs both, so the two reach each other at the book's
    // endpoints: the moved one's must be its new one.
    create_retrying(moved.port, "after-move", 1);
    wait_for(Duration::from_secs(10), "the topic is visible", || {
        topic_visible(nodes[1].port, "after-move").then_some(())
    });
}
