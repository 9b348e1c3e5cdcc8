//! Broker lifecycle and routing over the wire against the real binary: the node is its own
//! controller, and the test plays a second broker (BrokerRegistration / BrokerHeartbeat on
//! the wire) to see placement, routing to the partition's leader, fencing after a missed
//! session, unfencing, and UnregisterBroker.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const LEADER_NOT_AVAILABLE: i16 = 5;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const STALE_BROKER_EPOCH: i16 = 77;
const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
const BROKER_ID_NOT_REGISTERED: i16 = 102;
const INVALID_REGISTRATION: i16 = 119;

fn metadata(s: &mut TcpStream, topic: &str) -> MetadataResponse {
    let req = RequestKind::Metadata(
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(topic)))]))
            .with_allow_auto_topic_creation(false),
    );
    let ResponseKind::Metadata(r) = call(s, ApiKey::Metadata, 12, &req) else {
        panic!("not a Metadata response")
    };
    r
}

fn registration(cluster_id: &str, node: i32, incarnation: u128, port: u16) -> RequestKind {
    use broker_registration_request::{Feature, Listener};
    RequestKind::BrokerRegistration(
        BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(node))
            .with_cluster_id(StrBytes::from_string(cluster_id.to_owned()))
            .with_incarnation_id(uuid::Uuid::from_u128(incarnation))
            .with_listeners(vec![Listener::default()
                .with_name(StrBytes::from_static_str("PLAINTEXT"))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(port)
                .with_security_protocol(0)])
            .with_features(vec![
                Feature::default()
                    .with_name(StrBytes::from_static_str("metadata.version"))
                    .with_min_supported_version(7)
                    .with_max_supported_version(27),
                Feature::default()
                    .with_name(StrBytes::from_static_str("group.version"))
                    .with_min_supported_version(0)
                    .with_max_supported_version(1),
                Feature::default()
                    .with_name(StrBytes::from_static_str("transaction.version"))
                    .with_min_supported_version(0)
                    .with_max_supported_version(2),
            ])
            .with_rack(Some(StrBytes::from_static_str("rack-2")))
            .with_log_dirs(vec![uuid::Uuid::from_u128(incarnation << 64 | 1000)])
            .with_previous_broker_epoch(-1),
    )
}

fn register(s: &mut TcpStream, request: &RequestKind) -> BrokerRegistrationResponse {
    let ResponseKind::BrokerRegistration(r) = call(s, ApiKey::BrokerRegistration, 4, request)
    else {
        panic!("not a BrokerRegistration response")
    };
    r
}

fn heartbeat(s: &mut TcpStream, node: i32, epoch: i64, offset: i64) -> BrokerHeartbeatResponse {
    let req = RequestKind::BrokerHeartbeat(
        BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(node))
            .with_broker_epoch(epoch)
            .with_current_metadata_offset(offset),
    );
    let ResponseKind::BrokerHeartbeat(r) = call(s, ApiKey::BrokerHeartbeat, 1, &req) else {
        panic!("not a BrokerHeartbeat response")
    };
    r
}

fn describe_cluster(s: &mut TcpStream, include_fenced: bool) -> Vec<(i32, bool, Option<String>)> {
    let req = RequestKind::DescribeCluster(
        DescribeClusterRequest::default().with_include_fenced_brokers(include_fenced),
    );
    let ResponseKind::DescribeCluster(r) = call(s, ApiKey::DescribeCluster, 2, &req) else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(r.error_code, 0);
    r.brokers
        .iter()
        .map(|b| {
            (
                b.broker_id.0,
                b.is_fenced,
                b.rack.as_ref().map(ToString::to_string),
            )
        })
        .collect()
}

fn unregister(s: &mut TcpStream, node: i32) -> i16 {
    let req = RequestKind::UnregisterBroker(
        UnregisterBrokerRequest::default().with_broker_id(BrokerId(node)),
    );
    let ResponseKind::UnregisterBroker(r) = call(s, ApiKey::UnregisterBroker, 0, &req) else {
        panic!("not an UnregisterBroker response")
    };
    r.error_code
}

/// (error, leader, leader epoch, offline replicas) of partition `p` of `topic`.
fn partition_state(s: &mut TcpStream, topic: &str, p: i32) -> (i16, i32, i32, Vec<i32>) {
    let r = metadata(s, topic);
    let part = r.topics[0]
        .partitions
        .iter()
        .find(|x| x.partition_index == p)
        .expect("partition listed");
    (
        part.error_code,
        part.leader_id.0,
        part.leader_epoch,
        part.offline_replicas.iter().map(|b| b.0).collect(),
    )
}

fn produce_code(s: &mut TcpStream, topic: &str, p: i32) -> i16 {
    let ResponseKind::Produce(r) = call(
        s,
        ApiKey::Produce,
        9,
        &produce_request(topic, -1, 5000, &[(p, batch(&["v"]))]),
    ) else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

fn fetch_code(s: &mut TcpStream, topic: &str, p: i32) -> i16 {
    let ResponseKind::Fetch(r) = call(
        s,
        ApiKey::Fetch,
        12,
        &fetch_request(topic, p, 0, 0, 1 << 20),
    ) else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].error_code
}

fn list_offsets_code(s: &mut TcpStream, topic: &str, p: i32) -> i16 {
    let req = RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(p)
                .with_timestamp(-1)]),
    ]));
    let ResponseKind::ListOffsets(r) = call(s, ApiKey::ListOffsets, 7, &req) else {
        panic!("not a ListOffsets response")
    };
    r.topics[0].partitions[0].error_code
}

fn create_placed(s: &mut TcpStream, topic: &str, assignments: &[(i32, Vec<i32>)]) -> i16 {
    let req = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                assignments
                    .iter()
                    .map(|(p, replicas)| {
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(*p)
                            .with_broker_ids(replicas.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            ),
    ]));
    let ResponseKind::CreateTopics(r) = call(s, ApiKey::CreateTopics, 7, &req) else {
        panic!("not a CreateTopics response")
    };
    r.topics[0].error_code
}

/// Polls `f` until it holds or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

// Proves the whole lifecycle of a second broker as the controller sees it: registered fenced
// and unlisted until its heartbeat shows it caught up; then listed with its rack, placed on,
// and the partitions it leads refused here with NOT_LEADER_OR_FOLLOWER; fenced once its session
// runs out (its partition leaderless, LEADER_NOT_AVAILABLE); leading again once it heartbeats;
// refused as a duplicate or with a stale epoch; gone after UnregisterBroker.
#[test]
fn second_broker_lifecycle_placement_and_routing() {
    let runnel = Runnel::start(
        "\"broker.session.timeout.ms\" = 1500\n\"broker.heartbeat.interval.ms\" = 300\n",
    );
    let mut s = runnel.connect();
    let cluster_id = metadata(&mut s, "none").cluster_id.unwrap().to_string();
    assert_eq!(
        describe_cluster(&mut s, false).len(),
        1,
        "only this node at first"
    );

    // Registration: fenced until caught up, so not listed to clients.
    let other_port = free_port();
    let r = register(&mut s, &registration(&cluster_id, 2, 7, other_port));
    assert_eq!(r.error_code, 0);
    let epoch = r.broker_epoch;
    assert!(epoch > 0);
    assert_eq!(describe_cluster(&mut s, false).len(), 1);
    assert!(describe_cluster(&mut s, true).contains(&(2, true, Some("rack-2".into()))));
    // Behind its registration: stays fenced.
    let hb = heartbeat(&mut s, 2, epoch, epoch - 1);
    assert!(hb.is_fenced && !hb.is_caught_up, "{hb:?}");
    let hb = heartbeat(&mut s, 2, epoch, epoch);
    assert_eq!(hb.error_code, 0);
    assert!(
        !hb.is_fenced && hb.is_caught_up && !hb.should_shut_down,
        "{hb:?}"
    );
    assert!(describe_cluster(&mut s, false).contains(&(2, false, Some("rack-2".into()))));
    let brokers = metadata(&mut s, "none").brokers;
    let listed = brokers
        .iter()
        .find(|b| b.node_id.0 == 2)
        .expect("broker 2 listed");
    assert_eq!(
        (listed.host.as_str(), listed.port),
        ("127.0.0.1", i32::from(other_port))
    );
    assert_eq!(listed.rack.as_deref(), Some("rack-2"));

    // Another incarnation while this one's session lives; a stale epoch; no log dirs.
    assert_eq!(
        register(&mut s, &registration(&cluster_id, 2, 8, other_port)).error_code,
        DUPLICATE_BROKER_REGISTRATION
    );
    assert_eq!(
        heartbeat(&mut s, 2, epoch - 1, epoch).error_code,
        STALE_BROKER_EPOCH
    );
    let RequestKind::BrokerRegistration(no_dirs) = registration(&cluster_id, 3, 9, other_port)
    else {
        unreachable!()
    };
    let no_dirs = RequestKind::BrokerRegistration(no_dirs.with_log_dirs(vec![]));
    assert_eq!(register(&mut s, &no_dirs).error_code, INVALID_REGISTRATION);

    // Replication is not built: RF 2 is refused even with two live brokers.
    let ResponseKind::CreateTopics(r) = call(
        &mut s,
        ApiKey::CreateTopics,
        7,
        &RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name("rf2"))
                .with_num_partitions(1)
                .with_replication_factor(2),
        ])),
    ) else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, INVALID_REPLICATION_FACTOR);
    let message = r.topics[0].error_message.as_ref().unwrap().to_string();
    assert!(message.contains("not built yet"), "{message}");

    // Partition 0 on the other broker, 1 here: routing follows the leader.
    assert_eq!(
        create_placed(&mut s, "split", &[(0, vec![2]), (1, vec![1])]),
        0
    );
    let (error, leader, _, offline) = partition_state(&mut s, "split", 0);
    assert_eq!((error, leader, offline), (0, 2, vec![]));
    assert_eq!(produce_code(&mut s, "split", 0), NOT_LEADER_OR_FOLLOWER);
    assert_eq!(fetch_code(&mut s, "split", 0), NOT_LEADER_OR_FOLLOWER);
    assert_eq!(
        list_offsets_code(&mut s, "split", 0),
        NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(produce_code(&mut s, "split", 1), 0);
    assert_eq!(fetch_code(&mut s, "split", 1), 0);
    // The other broker's partition has no directory here.
    assert!(!runnel.data_dir().join("split-0").exists());
    assert!(runnel.data_dir().join("split-1").exists());

    // Silence: fenced after its session, its partition leaderless with a bumped epoch.
    assert!(
        eventually(Duration::from_secs(10), || partition_state(
            &mut s, "split", 0
        )
        .1 == -1),
        "broker 2 was not fenced; log:\n{}",
        runnel.log()
    );
    let (error, leader, leader_epoch, offline) = partition_state(&mut s, "split", 0);
    assert_eq!(
        (error, leader, leader_epoch, offline),
        (LEADER_NOT_AVAILABLE, -1, 1, vec![2])
    );
    assert_eq!(describe_cluster(&mut s, false).len(), 1);
    assert_eq!(produce_code(&mut s, "split", 0), NOT_LEADER_OR_FOLLOWER);
    // This node kept heartbeating to itself: still live and leading.
    assert_eq!(partition_state(&mut s, "split", 1).1, 1);
    assert_eq!(produce_code(&mut s, "split", 1), 0);

    // Back: unfenced by a caught-up heartbeat, it leads again at the next epoch.
    let current = epoch + 1_000_000;
    let hb = heartbeat(&mut s, 2, epoch, current);
    assert!(!hb.is_fenced, "{hb:?}");
    assert_eq!(partition_state(&mut s, "split", 0), (0, 2, 2, vec![]));

    // Unregistered: gone from the cluster, its partition leaderless.
    assert_eq!(unregister(&mut s, 2), 0);
    assert!(describe_cluster(&mut s, true).iter().all(|b| b.0 != 2));
    assert_eq!(partition_state(&mut s, "split", 0).1, -1);
    assert_eq!(unregister(&mut s, 2), BROKER_ID_NOT_REGISTERED);
}

// Proves ApiVersions on the client listener advertises UnregisterBroker (Kafka serves it on
// both listeners) but not BrokerRegistration or BrokerHeartbeat (controller listener only).
#[test]
fn client_listener_advertises_only_unregister_broker() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let ResponseKind::ApiVersions(r) = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
    ) else {
        panic!()
    };
    let keys: Vec<i16> = r.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::UnregisterBroker as i16)));
    assert!(!keys.contains(&(ApiKey::BrokerRegistration as i16)));
    assert!(!keys.contains(&(ApiKey::BrokerHeartbeat as i16)));
}

// Proves a clean stop moves this node's leaderships away (controlled shutdown) and a restart
// leads again with its data: produce before, restart, read back and produce again.
#[test]
fn controlled_shutdown_and_restart_lead_again() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "keep", 1, &[]);
    assert_eq!(produce_code(&mut s, "keep", 0), 0);
    let epoch_before = partition_state(&mut s, "keep", 0).2;
    drop(s);
    runnel.signal("TERM");
    let mut runnel = runnel;
    assert!(eventually(Duration::from_secs(20), || !runnel.is_running()));
    let log = runnel.log();
    assert!(log.contains("controlled shutdown granted"), "{log}");
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    let (error, leader, epoch_after, _) = partition_state(&mut s, "keep", 0);
    assert_eq!((error, leader), (0, 1));
    assert!(
        epoch_after > epoch_before,
        "{epoch_after} <= {epoch_before}"
    );
    assert_eq!(read_partition(&mut s, "keep", 0).len(), 1);
    assert_eq!(produce_code(&mut s, "keep", 0), 0);
}

// Proves the broker side's wire channel registers and heartbeats with a controller over the
// Kafka protocol, skipping an address that refuses connections, and that the broker it
// registered is then listed; a stale epoch comes back as the controller's refusal.
#[test]
fn wire_channel_registers_and_heartbeats_with_the_controller() {
    use runnel_broker::lifecycle::{ControllerChannel, WireChannel};
    use runnel_cluster::broker_lifecycle::{Heartbeat, Registration};
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let cluster_id = metadata(&mut s, "none").cluster_id.unwrap().to_string();
    let dead = format!("127.0.0.1:{}", free_port());
    let channel = WireChannel::new(
        vec![dead, format!("127.0.0.1:{}", runnel.port)],
        Duration::from_secs(5),
    );
    let other_port = free_port();
    let epoch = channel
        .register(Registration {
            node_id: 5,
            cluster_id,
            incarnation_id: uuid::Uuid::from_u128(55),
            listeners: vec![runnel_broker::lifecycle::listener(
                "PLAINTEXT",
                "127.0.0.1",
                other_port,
                0,
            )],
            features: vec![
                ("metadata.version".into(), 7, 27),
                ("group.version".into(), 0, 1),
                ("transaction.version".into(), 0, 2),
            ],
            rack: None,
            previous_broker_epoch: -1,
            log_dirs: vec![uuid::Uuid::from_u128(5 << 64)],
            is_migrating_zk_broker: false,
            session_alive: false,
        })
        .expect("registered");
    let beat = |epoch: i64| Heartbeat {
        node_id: 5,
        broker_epoch: epoch,
        current_metadata_offset: epoch,
        want_fence: false,
        want_shut_down: false,
    };
    let reply = channel.heartbeat(beat(epoch)).expect("heartbeat");
    assert!(!reply.is_fenced && reply.is_caught_up, "{reply:?}");
    assert!(metadata(&mut s, "none")
        .brokers
        .iter()
        .any(|b| b.node_id.0 == 5 && b.port == i32::from(other_port)));
    assert!(matches!(
        channel.heartbeat(beat(epoch - 1)),
        Err(runnel_cluster::ClusterError::StaleBrokerEpoch(_))
    ));
}

// Proves a broker the log shows registered and unfenced is fenced a session after this node
// restarts if it stays silent (the restarted controller starts every session fresh).
#[test]
fn silent_broker_from_before_a_restart_is_fenced() {
    let config = "\"broker.session.timeout.ms\" = 1500\n";
    let runnel = Runnel::start(config);
    let mut s = runnel.connect();
    let cluster_id = metadata(&mut s, "none").cluster_id.unwrap().to_string();
    let epoch = register(&mut s, &registration(&cluster_id, 2, 7, free_port())).broker_epoch;
    assert!(!heartbeat(&mut s, 2, epoch, epoch).is_fenced);
    assert_eq!(create_placed(&mut s, "away", &[(0, vec![2])]), 0);
    drop(s);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, config);
    let mut s = runnel.connect();
    assert!(
        eventually(Duration::from_secs(10), || partition_state(
            &mut s, "away", 0
        )
        .1 == -1),
        "broker 2 was not fenced after the restart; log:\n{}",
        runnel.log()
    );
    assert!(describe_cluster(&mut s, true).contains(&(2, true, Some("rack-2".into()))));
}

// Proves a controller busy with one long command does not fence a broker whose heartbeat
// waits behind it: the node's own heartbeat is stuck behind a CreateTopics that opens
// thousands of logs for longer than the session, and the node is still unfenced afterwards
// (the next CreateTopics is placed on it rather than refused with every broker fenced).
#[test]
fn a_long_create_does_not_fence_the_broker_waiting_on_it() {
    let runnel = Runnel::start(
        "\"broker.session.timeout.ms\" = 300\n\"broker.heartbeat.interval.ms\" = 50\n",
    );
    let mut stream = runnel.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let started = Instant::now();
    create_topic(&mut stream, "wide", 3000, &[]);
    let took = started.elapsed();
    // Only meaningful when the create outlasted the session (it does on any disk: 3,000 logs).
    assert!(took > Duration::from_millis(300), "create took {took:?}");
    create_topic(&mut stream, "after", 1, &[]);
    let log = runnel.log();
    assert!(
        !log.contains("missed its heartbeat session"),
        "the node fenced itself while its heartbeat waited:\n{log}"
    );
}
