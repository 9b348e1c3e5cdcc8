//! DescribeLogDirs, OffsetForLeaderEpoch and ElectLeaders over the wire, each field as Kafka
//! fills it for a single broker.

mod common;

use common::*;
use kafka_protocol::messages::*;

fn produce(topic: &str, partition: i32, records: bytes::Bytes) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ])]),
    )
}

fn produce_ok(s: &mut std::net::TcpStream, topic: &str, partition: i32, values: &[&str]) {
    let ResponseKind::Produce(r) = call(
        s,
        ApiKey::Produce,
        9,
        &produce(topic, partition, batch(values)),
    ) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

fn describe_log_dirs(
    s: &mut std::net::TcpStream,
    version: i16,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> DescribeLogDirsResponse {
    let topics = topics.map(|topics| {
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(partitions)
            })
            .collect()
    });
    let ResponseKind::DescribeLogDirs(r) = call(
        s,
        ApiKey::DescribeLogDirs,
        version,
        &RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(topics)),
    ) else {
        panic!("not a DescribeLogDirs response")
    };
    r
}

// DescribeLogDirs lists the data dir (absolute) with every partition's size and a zero lag for
// a leader, the file system's space at v4; a topic filter keeps only the named partitions that
// exist here.
#[test]
fn describe_log_dirs_reports_sizes_lags_and_space() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "dirs", 2, &[]);
    produce_ok(&mut s, "dirs", 0, &["a", "bb", "ccc"]);

    let all = describe_log_dirs(&mut s, 4, None);
    assert_eq!(all.error_code, 0);
    assert_eq!(all.results.len(), 1);
    let dir = &all.results[0];
    assert_eq!(dir.error_code, 0);
    let data_dir = std::path::absolute(runnel.data_dir()).unwrap();
    assert_eq!(dir.log_dir.as_str(), data_dir.to_str().unwrap());
    assert!(dir.total_bytes > 0, "{}", dir.total_bytes);
    assert!((0..=dir.total_bytes).contains(&dir.usable_bytes));
    let topic = dir
        .topics
        .iter()
        .find(|t| t.name.0.as_str() == "dirs")
        .expect("topic listed");
    let sizes: Vec<(i32, i64, i64, bool)> = topic
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.partition_size,
                p.offset_lag,
                p.is_future_key,
            )
        })
        .collect();
    let on_disk = std::fs::metadata(runnel.data_dir().join("dirs-0/00000000000000000000.log"))
        .unwrap()
        .len();
    assert_eq!(
        sizes,
        vec![
            (0, i64::try_from(on_disk).unwrap(), 0, false),
            (1, 0, 0, false)
        ]
    );
    assert!(on_disk > 0);

    let filtered = describe_log_dirs(
        &mut s,
        1,
        Some(vec![("dirs", vec![1, 5]), ("nope", vec![0])]),
    );
    let topics: Vec<(String, Vec<i32>)> = filtered.results[0]
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    assert_eq!(topics, vec![("dirs".to_owned(), vec![1])]);
    // v1 has no space fields: they decode as Kafka's default.
    assert_eq!(filtered.results[0].total_bytes, -1);
}

fn offset_for_epoch(
    s: &mut std::net::TcpStream,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> (i16, i32, i64) {
    let ResponseKind::OffsetForLeaderEpoch(r) = call(
        s,
        ApiKey::OffsetForLeaderEpoch,
        4,
        &RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(partition)
                                .with_current_leader_epoch(current_leader_epoch)
                                .with_leader_epoch(leader_epoch),
                        ]),
                ]),
        ),
    ) else {
        panic!("not an OffsetForLeaderEpoch response")
    };
    assert_eq!(r.topics[0].topic.0.as_str(), topic);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.partition, partition);
    (p.error_code, p.leader_epoch, p.end_offset)
}

// OffsetForLeaderEpoch answers from the epoch cache as Kafka's endOffsetForEpoch: the current
// epoch ends at the LEO; -1 and unknown larger epochs are undefined (-1/-1, no error); the
// client's current_leader_epoch is checked (FENCED / UNKNOWN_LEADER_EPOCH); unknown topics and
// partitions are UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "epochs", 1, &[]);
    // A fresh leader's epoch starts at its LEO, as in Kafka (an empty log: 0).
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, -1, 0), (0, 0, 0));
    produce_ok(&mut s, "epochs", 0, &["a", "b", "c"]);
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, 0, 0), (0, 0, 3));
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, -1, 0), (0, 0, 3));
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, 0, -1), (0, -1, -1));
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, 0, 7), (0, -1, -1));
    assert_eq!(offset_for_epoch(&mut s, "epochs", 0, 1, 0).0, 75); // UNKNOWN_LEADER_EPOCH
    assert_eq!(offset_for_epoch(&mut s, "nope", 0, -1, 0).0, 3);
    assert_eq!(offset_for_epoch(&mut s, "epochs", 4, -1, 0).0, 3);
}

fn elect(
    s: &mut std::net::TcpStream,
    version: i16,
    election_type: i8,
    topics: Option<Vec<(&str, Vec<i32>)>>,
) -> ElectLeadersResponse {
    let topics = topics.map(|topics| {
        topics
            .into_iter()
            .map(|(topic, partitions)| {
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(name(topic))
                    .with_partitions(partitions)
            })
            .collect()
    });
    let ResponseKind::ElectLeaders(r) = call(
        s,
        ApiKey::ElectLeaders,
        version,
        &RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_election_type(election_type)
                .with_timeout_ms(1000)
                .with_topic_partitions(topics),
        ),
    ) else {
        panic!("not an ElectLeaders response")
    };
    r
}

fn results(r: &ElectLeadersResponse) -> Vec<(String, i32, i16, Option<String>)> {
    r.replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect()
}

// ElectLeaders on one node: every existing partition already has its preferred (and only)
// leader, so ELECTION_NOT_NEEDED with Kafka's message, and for "all partitions" nothing is
// listed but the topics; unknown ones get the controller's messages; an unknown election type
// is INVALID_REQUEST everywhere.
#[test]
fn elect_leaders_is_never_needed_on_one_node() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "lead", 2, &[]);
    let not_needed = Some("Leader election not needed for topic partition.".to_owned());
    for (version, election_type) in [(0, 0), (1, 0), (2, 0), (2, 1)] {
        let r = elect(
            &mut s,
            version,
            election_type,
            Some(vec![("lead", vec![0, 1, 5]), ("nope", vec![0])]),
        );
        assert_eq!(r.error_code, 0);
        assert_eq!(
            results(&r),
            vec![
                ("lead".to_owned(), 0, 84, not_needed.clone()),
                ("lead".to_owned(), 1, 84, not_needed.clone()),
                (
                    "lead".to_owned(),
                    5,
                    3,
                    Some("No such partition as lead-5".to_owned())
                ),
                (
                    "nope".to_owned(),
                    0,
                    3,
                    Some("No such topic as nope".to_owned())
                ),
            ],
            "v{version} type {election_type}"
        );
    }

    let all = elect(&mut s, 2, 0, None);
    assert_eq!(all.error_code, 0);
    assert!(results(&all).is_empty(), "{:?}", results(&all));
    assert!(all
        .replica_election_results
        .iter()
        .any(|t| t.topic.0.as_str() == "lead"));

    let bad = elect(&mut s, 1, 2, Some(vec![("lead", vec![0])]));
    assert_eq!(bad.error_code, 42);
    assert_eq!(
        results(&bad),
        vec![(
            "lead".to_owned(),
            0,
            42,
            Some("Unknown election type 2".to_owned())
        )]
    );
}
