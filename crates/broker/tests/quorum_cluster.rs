//! Three real `runnel` processes as one metadata quorum (contract 1 configs on loopback ports):
//! a topic created on any node is visible on all three; kill -9 of the active controller during
//! a storm of CreateTopics / DeleteTopics / AlterConfigs is followed by a new election within a
//! few election timeouts; after every node restarts, every acknowledged change is there. Every
//! ready is followed by a snapshot and log truncation, so the restarted controller catches up
//! from the leader's snapshot, not from entries.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    alter_configs_request, delete_topics_request, metadata_request, AlterConfigsRequest, ApiKey,
    DeleteTopicsRequest, DescribeClusterRequest, MetadataRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

const NOT_CONTROLLER: i16 = 41;
const REQUEST_TIMED_OUT: i16 = 7;

fn start(node: &QuorumNode, voters: &str, dir: tempfile::TempDir) -> Runnel {
    start_with(node, voters, dir, "")
}

/// Every ready is followed by a snapshot (`...between.snapshots` of 1 byte), so restarted
/// nodes catch up from one.
fn start_with(node: &QuorumNode, voters: &str, dir: tempfile::TempDir, extra: &str) -> Runnel {
    let extra = format!(
        "\"num.partitions\" = 1\n\"metadata.log.max.record.bytes.between.snapshots\" = 1\n{extra}"
    );
    node.start(voters, dir, &extra)
}

/// Brokers `port`'s DescribeCluster lists, with whether each is fenced (fenced ones included);
/// empty while the node does not answer.
fn brokers(port: u16) -> Vec<(i32, bool)> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = RequestKind::DescribeCluster(
        DescribeClusterRequest::default().with_include_fenced_brokers(true),
    );
    let ResponseKind::DescribeCluster(r) = call(&mut stream, ApiKey::DescribeCluster, 2, &request)
    else {
        panic!("not a DescribeCluster response")
    };
    let mut out: Vec<(i32, bool)> = r
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.is_fenced))
        .collect();
    out.sort();
    out
}

/// (partition, leader) of every partition of `topic` in `port`'s metadata.
fn leaders(port: u16, topic: &str) -> Vec<(i32, i32)> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let request = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
    ])));
    let ResponseKind::Metadata(r) = call(&mut stream, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    let mut out: Vec<(i32, i32)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    out.sort();
    out
}

/// The leader and term of the latest election any running node logged.
fn leader(runnels: &[Option<Runnel>]) -> Option<(i32, u64)> {
    let mut best: Option<(i32, u64)> = None;
    for runnel in runnels.iter().flatten() {
        for line in runnel.log().lines() {
            let Some(rest) = line.split("active controller elected").nth(1) else {
                continue;
            };
            let field = |name: &str| -> Option<u64> {
                let value = rest.split(&format!("{name}=")).nth(1)?;
                value
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            };
            if let (Some(leader), Some(term)) = (field("leader"), field("term")) {
                if best.is_none_or(|(_, t)| term > t) {
                    best = Some((leader as i32, term));
                }
            }
        }
    }
    best
}

fn create(stream: &mut TcpStream, topic: &str) -> i16 {
    let request = create_topics_request(topic, 1, &[]);
    let ResponseKind::CreateTopics(r) = call(stream, ApiKey::CreateTopics, 7, &request) else {
        panic!("not a CreateTopics response")
    };
    r.topics[0].error_code
}

fn delete(stream: &mut TcpStream, topic: &str) -> i16 {
    let request = RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
        delete_topics_request::DeleteTopicState::default().with_name(Some(name(topic))),
    ]));
    let ResponseKind::DeleteTopics(r) = call(stream, ApiKey::DeleteTopics, 6, &request) else {
        panic!("not a DeleteTopics response")
    };
    r.responses[0].error_code
}

fn alter(stream: &mut TcpStream, topic: &str, retention: u64) -> i16 {
    let request = RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2) // TOPIC
            .with_resource_name(StrBytes::from_string(topic.to_owned()))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_string(retention.to_string())))]),
    ]));
    let ResponseKind::AlterConfigs(r) = call(stream, ApiKey::AlterConfigs, 2, &request) else {
        panic!("not an AlterConfigs response")
    };
    r.responses[0].error_code
}

/// Retries `op` while there is no controller (NOT_CONTROLLER, timeouts), up to `limit`.
fn retry(limit: Duration, mut op: impl FnMut() -> i16) -> i16 {
    let deadline = Instant::now() + limit;
    loop {
        let code = op();
        if (code != NOT_CONTROLLER && code != REQUEST_TIMED_OUT) || Instant::now() > deadline {
            return code;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Proves the quorum end to end across processes: forwarding from a follower, visibility on
// every node, failover after kill -9 of the active controller within a few election timeouts,
// and durability of every acknowledged change across a restart of the whole cluster.
#[test]
fn three_node_quorum_survives_kill_of_the_active_controller() {
    let (nodes, voters) = quorum_nodes(3);
    let mut runnels: Vec<Option<Runnel>> = nodes
        .iter()
        .map(|n| Some(start(n, &voters, tempfile::tempdir().unwrap())))
        .collect();
    wait_until(Duration::from_secs(20), "a controller is elected", || {
        leader(&runnels).is_some()
    });
    let (first_leader, _) = leader(&runnels).unwrap();
    // Created on a follower: forwarded, then visible on all three.
    let follower = nodes.iter().find(|n| n.id != first_leader).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", follower.port)).unwrap();
    // Until the nodes registered themselves (right after the election) no broker can hold a
    // replica: INVALID_REPLICATION_FACTOR, retried here.
    let created = retry(Duration::from_secs(15), || {
        match create(&mut stream, "base") {
            38 => NOT_CONTROLLER,
            code => code,
        }
    });
    assert_eq!(created, 0);
    // The node that answered has the topic in its image; the others apply the batch soon.
    for node in &nodes {
        wait_until(
            Duration::from_secs(10),
            &format!("node {} sees the topic", node.id),
            || topic_visible(node.port, "base"),
        );
    }

    // The storm, one request at a time across the nodes; the active controller dies midway.
    let mut acked: BTreeMap<String, bool> = BTreeMap::new();
    let mut retention_acked = 0;
    let mut killed_at = None;
    let mut failover = None;
    let storm_end = Instant::now() + Duration::from_secs(8);
    let mut n = 0u64;
    while Instant::now() < storm_end {
        n += 1;
        if killed_at.is_none() && n == 20 {
            let (leader_id, _) = leader(&runnels).unwrap();
            let index = (leader_id - 1) as usize;
            let mut runnel = runnels[index].take().unwrap();
            runnel.child.kill().unwrap();
            runnel.child.wait().unwrap();
            let (dir, _) = runnel.into_dir();
            killed_at = Some((Instant::now(), index, dir, leader_id));
        }
        if let Some((killed, _, _, old_leader)) = &killed_at {
            if failover.is_none() && leader(&runnels).is_some_and(|(l, _)| l != *old_leader) {
                failover = Some(killed.elapsed());
            }
        }
        let alive: Vec<&QuorumNode> = nodes
            .iter()
            .filter(|node| runnels[(node.id - 1) as usize].is_some())
            .collect();
        let node = alive[(n as usize) % alive.len()];
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", node.port)) else {
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        match n % 4 {
            0 => {
                if alter(&mut stream, "base", n) == 0 {
                    retention_acked = n;
                }
            }
            1 if acked.values().any(|live| *live) => {
                let victim = acked.iter().find(|(_, live)| **live).unwrap().0.clone();
                if delete(&mut stream, &victim) == 0 {
                    acked.insert(victim, false);
                } else {
                    // Not acknowledged: it may or may not have committed.
                    acked.remove(&victim);
                }
            }
            _ => {
                let topic = format!("storm-{n}");
                if create(&mut stream, &topic) == 0 {
                    acked.insert(topic, true);
                }
            }
        }
    }
    let (killed, index, dir, old_leader) = killed_at.expect("the active controller was killed");
    wait_until(
        Duration::from_secs(10),
        "a new controller is elected",
        || leader(&runnels).is_some_and(|(l, _)| l != old_leader),
    );
    let failover = failover.unwrap_or_else(|| killed.elapsed());
    // controller.quorum.election.timeout.ms is 1 s (randomised up to 2 s): a few of them.
    assert!(
        failover < Duration::from_secs(6),
        "failover took {failover:?}"
    );
    eprintln!("failover after kill -9 of the active controller: {failover:?}");
    assert!(
        acked.len() > 5,
        "the storm acknowledged too little: {acked:?}"
    );
    assert!(retention_acked > 0, "no AlterConfigs was acknowledged");

    // Restart everything, the killed node included.
    let mut dirs: Vec<Option<tempfile::TempDir>> = Vec::new();
    for (i, runnel) in runnels.iter_mut().enumerate() {
        if i == index {
            dirs.push(None);
            continue;
        }
        let (dir, _) = runnel.take().unwrap().into_dir();
        dirs.push(Some(dir));
    }
    dirs[index] = Some(dir);
    let runnels: Vec<Option<Runnel>> = nodes
        .iter()
        .zip(dirs)
        .map(|(node, dir)| Some(start(node, &voters, dir.unwrap())))
        .collect();
    wait_until(
        Duration::from_secs(20),
        "a controller is elected again",
        || leader(&runnels).is_some(),
    );
    for node in &nodes {
        for (topic, live) in &acked {
            wait_until(
                Duration::from_secs(10),
                &format!("node {} shows {topic} as {live}", node.id),
                || topic_visible(node.port, topic) == *live,
            );
        }
        assert!(topic_visible(node.port, "base"));
    }
    // The killed controller was behind the others' snapshots: it caught up from one.
    let caught_up = runnels[index].as_ref().unwrap().log();
    assert!(
        caught_up.contains("installing a metadata snapshot from the active controller"),
        "{caught_up}"
    );
}

// Proves that in a quorum the active controller keeps every broker's heartbeat session, not
// only its own node's: a broker that stops heartbeating (SIGSTOP) is fenced and its partition
// loses its leader; it is unfenced and leads again once it heartbeats; and a controller
// elected after kill -9 of the previous one fences that dead node a session later, sessions
// carried over from the image it activated with.
#[test]
fn the_active_controller_fences_a_silent_broker_of_the_quorum() {
    let (nodes, voters) = quorum_nodes(3);
    let extra = format!(
        "\"broker.session.timeout.ms\" = 3000\n\"broker.heartbeat.interval.ms\" = 300\n{ADMIN_ON_ANY_PORT}"
    );
    let mut runnels: Vec<Option<Runnel>> = nodes
        .iter()
        .map(|n| Some(start_with(n, &voters, tempfile::tempdir().unwrap(), &extra)))
        .collect();
    let all_live = vec![(1, false), (2, false), (3, false)];
    wait_until(
        Duration::from_secs(20),
        "all three brokers are live",
        || nodes.iter().all(|n| brokers(n.port) == all_live),
    );
    // Registered and unfenced: every node serves, and says it is ready.
    for runnel in runnels.iter().flatten() {
        wait_until(Duration::from_secs(5), "the node is ready", || {
            http_get(runnel.admin_port(), "/ready").0 == 200
        });
    }
    let (controller, _) = leader(&runnels).expect("a controller was elected");
    let observer = nodes.iter().find(|n| n.id == controller).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", observer.port)).unwrap();
    let created = retry(Duration::from_secs(15), || {
        let request = create_topics_request("spread", 3, &[]);
        let ResponseKind::CreateTopics(r) = call(&mut stream, ApiKey::CreateTopics, 7, &request)
        else {
            panic!("not a CreateTopics response")
        };
        r.topics[0].error_code
    });
    assert_eq!(created, 0);
    wait_until(
        Duration::from_secs(10),
        "every partition has a leader",
        || {
            let l = leaders(observer.port, "spread");
            l.len() == 3 && l.iter().all(|(_, leader)| *leader > 0)
        },
    );
    let victim = nodes.iter().find(|n| n.id != controller).unwrap();
    let led: Vec<i32> = leaders(observer.port, "spread")
        .into_iter()
        .filter(|(_, l)| *l == victim.id)
        .map(|(p, _)| p)
        .collect();
    assert!(
        !led.is_empty(),
        "striping gave node {} no partition",
        victim.id
    );

    // Silent: fenced by the controller (another process) a session later.
    runnels[(victim.id - 1) as usize]
        .as_ref()
        .unwrap()
        .signal("STOP");
    wait_until(
        Duration::from_secs(15),
        "the silent broker is fenced",
        || brokers(observer.port).contains(&(victim.id, true)),
    );
    let after = leaders(observer.port, "spread");
    for p in &led {
        assert!(
            after.contains(&(*p, -1)),
            "partition {p} of the fenced broker still has a leader: {after:?}"
        );
    }
    // The controller's gauges say the same (Kafka's ActiveControllerCount, FencedBrokerCount,
    // OfflinePartitionsCount, raft-metrics current-leader).
    let controller_node = runnels[(controller - 1) as usize].as_ref().unwrap();
    let (status, scrape) = http_get(controller_node.admin_port(), "/metrics");
    assert_eq!(status, 200);
    let value = |name: &str, labels: &str| sample(&scrape, name, labels);
    assert_eq!(value("runnel_active_controller", ""), Some(1.0), "{scrape}");
    assert_eq!(value("runnel_brokers", "state=\"fenced\""), Some(1.0));
    assert_eq!(value("runnel_brokers", "state=\"unfenced\""), Some(2.0));
    assert!(value("runnel_offline_partitions", "").unwrap() >= led.len() as f64);
    assert_eq!(
        value("runnel_metadata_quorum_leader", ""),
        Some(f64::from(controller))
    );
    assert!(value("runnel_metadata_quorum_epoch", "").unwrap() >= 1.0);

    // Heard again: unfenced, and it leads its partitions again.
    runnels[(victim.id - 1) as usize]
        .as_ref()
        .unwrap()
        .signal("CONT");
    wait_until(
        Duration::from_secs(15),
        "the broker is unfenced and leads again",
        || {
            brokers(observer.port).contains(&(victim.id, false)) && {
                let l = leaders(observer.port, "spread");
                led.iter().all(|p| l.contains(&(*p, victim.id)))
            }
        },
    );

    // The controller dies: its successor fences it, from sessions it activated with.
    let mut dead = runnels[(controller - 1) as usize].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let survivor = victim;
    wait_until(
        Duration::from_secs(30),
        "the next controller fences the killed one",
        || {
            leader(&runnels).is_some_and(|(l, _)| l != controller)
                && brokers(survivor.port).contains(&(controller, true))
        },
    );
    let live: Vec<i32> = brokers(survivor.port)
        .into_iter()
        .filter(|(_, fenced)| !fenced)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(!live.contains(&controller));
}
