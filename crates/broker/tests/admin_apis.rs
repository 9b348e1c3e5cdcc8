//! DescribeLogDirs, OffsetForLeaderEpoch and ElectLeaders over the wire, each field as Kafka
//! fills it for a single broker.

mod common;

use common::*;
use kafka_protocol::messages::*;

fn produce(topic: &str, partition: i32, records: bytes::Bytes) -> RequestKind {
    produce_request(topic, -1, 5000, &[(partition, records)])
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

/// ApiVersions v4 over the wire (kafka-protocol's client codec).
fn api_versions(s: &mut std::net::TcpStream, version: i16) -> ApiVersionsResponse {
    let ResponseKind::ApiVersions(r) = call(
        s,
        ApiKey::ApiVersions,
        version,
        &RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(kafka_protocol::protocol::StrBytes::from_static_str("t"))
                .with_client_software_version(kafka_protocol::protocol::StrBytes::from_static_str(
                    "1",
                )),
        ),
    ) else {
        panic!("not an ApiVersions response")
    };
    r
}

fn finalized(r: &ApiVersionsResponse) -> Vec<(String, i16)> {
    r.finalized_features
        .iter()
        .map(|f| (f.name.to_string(), f.max_version_level))
        .collect()
}

/// A new cluster's finalized features: group.version 1 and transaction.version 2.
fn both() -> Vec<(String, i16)> {
    vec![
        ("group.version".to_owned(), 1),
        ("transaction.version".to_owned(), 2),
    ]
}

/// transaction.version 2 alone (group.version downgraded to 0).
fn tv2() -> Vec<(String, i16)> {
    vec![("transaction.version".to_owned(), 2)]
}

fn update_features(
    s: &mut std::net::TcpStream,
    version: i16,
    validate_only: bool,
    updates: &[(&str, i16, i8)],
) -> UpdateFeaturesResponse {
    let ResponseKind::UpdateFeatures(r) = call(
        s,
        ApiKey::UpdateFeatures,
        version,
        &RequestKind::UpdateFeatures(
            UpdateFeaturesRequest::default()
                .with_validate_only(validate_only)
                .with_feature_updates(
                    updates
                        .iter()
                        .map(|(name, level, upgrade_type)| {
                            update_features_request::FeatureUpdateKey::default()
                                .with_feature(kafka_protocol::protocol::StrBytes::from_string(
                                    (*name).to_owned(),
                                ))
                                .with_max_version_level(*level)
                                .with_upgrade_type(*upgrade_type)
                        })
                        .collect(),
                ),
        ),
    ) else {
        panic!("not an UpdateFeatures response")
    };
    r
}

// Features as Kafka reports and changes them: group.version 0-1 supported and finalized at 1 (v3
// leaves out the min-0 supported feature); UpdateFeatures refuses unsupported levels with
// Kafka's messages, validate_only changes nothing, a safe downgrade to 0 takes group.version out
// of the finalized set, moves the epoch, turns KIP-848's heartbeat into UNSUPPORTED_VERSION,
// and survives a restart.
#[test]
fn features_are_reported_updated_and_persisted() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let v4 = api_versions(&mut s, 4);
    let supported: Vec<(String, i16, i16)> = v4
        .supported_features
        .iter()
        .map(|f| (f.name.to_string(), f.min_version, f.max_version))
        .collect();
    assert_eq!(
        supported,
        vec![
            ("group.version".to_owned(), 0, 1),
            ("transaction.version".to_owned(), 0, 2)
        ]
    );
    assert_eq!(finalized(&v4), both());
    assert!(v4.finalized_features_epoch >= 0);
    assert!(api_versions(&mut s, 3).supported_features.is_empty());

    let refused = update_features(&mut s, 2, false, &[("group.version", 2, 1)]);
    assert_eq!(refused.error_code, 95, "INVALID_UPDATE_VERSION");
    assert_eq!(
        refused.error_message.as_deref(),
        Some(
            "The update failed for all features since the following feature had an error: \
             Invalid update version 2 for feature group.version. Local controller 1 only \
             supports versions 0-1"
        )
    );
    let refused = update_features(&mut s, 1, false, &[("share.version", 1, 1)]);
    assert_eq!(refused.error_code, 95);
    assert!(refused.results.is_empty());
    assert!(refused
        .error_message
        .as_deref()
        .unwrap()
        .ends_with("Local controller 1 does not support this feature."));

    let dry = update_features(&mut s, 1, true, &[("group.version", 0, 2)]);
    assert_eq!((dry.error_code, dry.error_message.as_deref()), (0, None));
    assert_eq!(dry.results.len(), 1);
    assert_eq!(
        (
            dry.results[0].feature.as_str(),
            dry.results[0].error_code,
            dry.results[0].error_message.as_deref()
        ),
        ("group.version", 0, None)
    );
    assert_eq!(finalized(&api_versions(&mut s, 4)), both());

    let done = update_features(&mut s, 2, false, &[("group.version", 0, 2)]);
    assert_eq!(done.error_code, 0);
    assert!(
        done.results.is_empty(),
        "v2 answers without per-feature results"
    );
    let after = api_versions(&mut s, 4);
    assert_eq!(finalized(&after), tv2());
    assert!(after.finalized_features_epoch > v4.finalized_features_epoch);

    let ResponseKind::ConsumerGroupHeartbeat(hb) = call(
        &mut s,
        ApiKey::ConsumerGroupHeartbeat,
        0,
        &RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(
                    kafka_protocol::protocol::StrBytes::from_static_str("g"),
                ))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![name("t")]))
                .with_topic_partitions(Some(vec![])),
        ),
    ) else {
        panic!("not a ConsumerGroupHeartbeat response")
    };
    assert_eq!(
        hb.error_code, 35,
        "UNSUPPORTED_VERSION with group.version 0"
    );

    drop(s);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    assert_eq!(
        finalized(&api_versions(&mut s, 4)),
        tv2(),
        "the level survives a restart"
    );
    let back = update_features(&mut s, 1, false, &[("group.version", 1, 1)]);
    assert_eq!(back.error_code, 0);
    assert_eq!(finalized(&api_versions(&mut s, 4)), both());
}
