//! Topic admin APIs over the wire against the real binary: CreatePartitions, DescribeTopicPartitions,
//! ListConfigResources, and CreateTopics / DeleteTopics answers as Kafka 4.4 gives them (codes,
//! messages, nulls; the messages were read off a Kafka 4.4 broker).

mod common;

use std::net::TcpStream;

use common::*;
use kafka_protocol::messages::*;

type Answer = (String, i16, Option<String>);

/// A topic to grow: name, new count, replica lists of the new partitions.
type Growth<'a> = (&'a str, i32, Option<Vec<Vec<i32>>>);

/// A DescribeTopicPartitions page: (topic, error, partition indexes) and the next cursor.
type Page = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

fn create(s: &mut TcpStream, topics: &[(&str, i32)], timeout_ms: i32) -> Vec<Answer> {
    let request = RequestKind::CreateTopics(
        CreateTopicsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, partitions)| {
                        create_topics_request::CreatableTopic::default()
                            .with_name(name(topic))
                            .with_num_partitions(*partitions)
                            .with_replication_factor(1)
                    })
                    .collect(),
            )
            .with_timeout_ms(timeout_ms),
    );
    let ResponseKind::CreateTopics(r) = call(s, ApiKey::CreateTopics, 7, &request) else {
        panic!("not a CreateTopics response")
    };
    r.topics
        .into_iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.error_code,
                t.error_message.map(|m| m.to_string()),
            )
        })
        .collect()
}

fn grow(
    s: &mut TcpStream,
    topics: &[Growth<'_>],
    timeout_ms: i32,
    validate_only: bool,
) -> Vec<Answer> {
    let request = RequestKind::CreatePartitions(
        CreatePartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, count, assignments)| {
                        create_partitions_request::CreatePartitionsTopic::default()
                            .with_name(name(topic))
                            .with_count(*count)
                            .with_assignments(assignments.as_ref().map(|list| {
                                list.iter()
                                    .map(|ids| {
                                        create_partitions_request::CreatePartitionsAssignment::default()
                                            .with_broker_ids(ids.iter().map(|id| BrokerId(*id)).collect())
                                    })
                                    .collect()
                            }))
                    })
                    .collect(),
            )
            .with_timeout_ms(timeout_ms)
            .with_validate_only(validate_only),
    );
    let ResponseKind::CreatePartitions(r) = call(s, ApiKey::CreatePartitions, 3, &request) else {
        panic!("not a CreatePartitions response")
    };
    r.results
        .into_iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.error_code,
                t.error_message.map(|m| m.to_string()),
            )
        })
        .collect()
}

fn answer(topic: &str, code: i16, message: Option<&str>) -> Answer {
    (topic.to_owned(), code, message.map(str::to_owned))
}

/// Partition count and node id of `topic` as Metadata tells a client.
fn partitions_in_metadata(s: &mut TcpStream, topic: &str) -> usize {
    let request = RequestKind::Metadata(
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(topic)))]))
            .with_allow_auto_topic_creation(false),
    );
    let ResponseKind::Metadata(r) = call(s, ApiKey::Metadata, 12, &request) else {
        panic!("not a Metadata response")
    };
    assert_eq!(r.topics[0].error_code, 0);
    r.topics[0].partitions.len()
}

fn produce_one(s: &mut TcpStream, topic: &str, partition: i32, value: &[u8]) -> (i16, i64) {
    let request = produce_request(topic, -1, 5000, &[(partition, batch(&[value]))]);
    let ResponseKind::Produce(r) = call(s, ApiKey::Produce, 11, &request) else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn describe(
    s: &mut TcpStream,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> DescribeTopicPartitionsResponse {
    let request = RequestKind::DescribeTopicPartitions(
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name(t))
                    .with_partition_index(p)
            })),
    );
    let ResponseKind::DescribeTopicPartitions(r) =
        call(s, ApiKey::DescribeTopicPartitions, 0, &request)
    else {
        panic!("not a DescribeTopicPartitions response")
    };
    r
}

/// (topic, partition indexes) of a DescribeTopicPartitions page, and its next cursor.
fn page(r: &DescribeTopicPartitionsResponse) -> Page {
    (
        r.topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                    t.error_code,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect(),
        r.next_cursor
            .as_ref()
            .map(|c| (c.topic_name.to_string(), c.partition_index)),
    )
}

// CreatePartitions grows a topic: the new partitions take writes at once, Metadata shows them,
// they survive a restart; validate_only changes nothing; refusals carry Kafka's codes and messages.
#[test]
fn create_partitions_grows_a_topic() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    assert_eq!(
        create(&mut s, &[("grow", 1)], 5000),
        vec![answer("grow", 0, None)]
    );
    assert_eq!(
        grow(&mut s, &[("grow", 3, None)], 5000, false),
        vec![answer("grow", 0, None)]
    );
    assert_eq!(partitions_in_metadata(&mut s, "grow"), 3);
    assert_eq!(produce_one(&mut s, "grow", 2, b"new"), (0, 0));
    // Explicit assignment: the only broker.
    assert_eq!(
        grow(&mut s, &[("grow", 4, Some(vec![vec![1]]))], 5000, false),
        vec![answer("grow", 0, None)]
    );
    assert_eq!(
        grow(&mut s, &[("grow", 6, None)], 5000, true),
        vec![answer("grow", 0, None)]
    );
    assert_eq!(
        partitions_in_metadata(&mut s, "grow"),
        4,
        "validate_only changed the topic"
    );
    let refusals = [
        (grow(&mut s, &[("grow", 4, None)], 5000, false), answer("grow", 37, Some("Topic already has 4 partition(s)."))),
        (
            grow(&mut s, &[("grow", 2, None)], 5000, false),
            answer("grow", 37, Some("The topic grow currently has 4 partition(s); 2 would not be an increase.")),
        ),
        (
            grow(&mut s, &[("grow", 6, Some(vec![vec![1]]))], 5000, false),
            answer("grow", 39, Some("Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.")),
        ),
        (
            grow(&mut s, &[("grow", 5, Some(vec![vec![7]]))], 5000, false),
            answer("grow", 39, Some("The manual partition assignment includes broker 7, but no such broker is registered.")),
        ),
        (grow(&mut s, &[("nope", 5, None)], 5000, false), answer("nope", 3, None)),
        (grow(&mut s, &[("grow", 5, None)], 0, false), answer("grow", 7, None)),
        (
            grow(&mut s, &[("grow", 5, None), ("grow", 6, None)], 5000, false),
            answer("grow", 42, Some("Duplicate topic name.")),
        ),
    ];
    for (got, expected) in refusals {
        assert_eq!(got, vec![expected]);
    }
    assert_eq!(partitions_in_metadata(&mut s, "grow"), 4);
    drop(s);
    runnel.signal("TERM");
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    assert_eq!(partitions_in_metadata(&mut s, "grow"), 4);
    assert_eq!(
        produce_one(&mut s, "grow", 2, b"again"),
        (0, 1),
        "partition 2 kept its record"
    );
    assert_eq!(produce_one(&mut s, "grow", 3, b"x"), (0, 0));
}

// DescribeTopicPartitions pages by partition limit with a cursor, as Kafka's metadata cache does,
// answers named unknown topics with an error and skips them when listing all, and refuses a
// cursor outside the named topics.
#[test]
fn describe_topic_partitions_pages() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create(&mut s, &[("a", 3), ("b", 2)], 5000);
    let all = describe(&mut s, &[], 2, None);
    assert_eq!(
        page(&all),
        (vec![("a".into(), 0, vec![0, 1])], Some(("a".into(), 2)))
    );
    let p = &all.topics[0].partitions[0];
    assert_eq!((p.leader_id.0, p.leader_epoch), (1, 0));
    assert_eq!(p.eligible_leader_replicas, Some(vec![]));
    assert_eq!(p.last_known_elr, Some(vec![]));
    assert_eq!(all.topics[0].topic_authorized_operations, 3576);
    assert_eq!(
        page(&describe(&mut s, &[], 2, Some(("a", 2)))),
        (
            vec![("a".into(), 0, vec![2]), ("b".into(), 0, vec![0])],
            Some(("b".into(), 1))
        )
    );
    assert_eq!(
        page(&describe(&mut s, &[], 2, Some(("b", 1)))),
        (vec![("b".into(), 0, vec![1])], None)
    );
    // A page that ends exactly at a topic's end points at the next topic's start.
    assert_eq!(
        page(&describe(&mut s, &[], 3, None)),
        (vec![("a".into(), 0, vec![0, 1, 2])], Some(("b".into(), 0)))
    );
    assert_eq!(
        page(&describe(&mut s, &["b", "nope", "a b"], 2000, None)),
        (
            vec![
                ("a b".into(), 17, vec![]),
                ("b".into(), 0, vec![0, 1]),
                ("nope".into(), 3, vec![])
            ],
            None
        )
    );
    assert_eq!(
        page(&describe(&mut s, &["a"], 2000, Some(("b", 0)))),
        (vec![("a".into(), 42, vec![])], None)
    );
}

// ListConfigResources lists brokers, broker loggers and every topic (v1), client-metrics
// resources only at v0 (none here), and refuses a type the version does not list.
#[test]
fn list_config_resources() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create(&mut s, &[("t1", 1)], 5000);
    let list = |s: &mut TcpStream, version: i16, types: Vec<i8>| {
        let request = RequestKind::ListConfigResources(
            ListConfigResourcesRequest::default().with_resource_types(types),
        );
        let ResponseKind::ListConfigResources(r) =
            call(s, ApiKey::ListConfigResources, version, &request)
        else {
            panic!("not a ListConfigResources response")
        };
        (
            r.error_code,
            r.config_resources
                .iter()
                .map(|c| (c.resource_type, c.resource_name.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        list(&mut s, 1, vec![]),
        (0, vec![(8, "1".into()), (4, "1".into()), (2, "t1".into())])
    );
    assert_eq!(list(&mut s, 1, vec![2]), (0, vec![(2, "t1".into())]));
    assert_eq!(list(&mut s, 1, vec![1]), (35, vec![]));
    assert_eq!(list(&mut s, 0, vec![]), (0, vec![]));
}

// CreateTopics and DeleteTopics answer as Kafka 4.4: a null message on success, duplicates once
// as INVALID_REQUEST, REQUEST_TIMED_OUT for a timeout that has already passed, Kafka's messages.
#[test]
fn create_and_delete_topics_answers() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    assert_eq!(create(&mut s, &[("c", 1)], 0), vec![answer("c", 7, None)]);
    assert_eq!(create(&mut s, &[("c", 1)], -1), vec![answer("c", 7, None)]);
    assert_eq!(
        create(&mut s, &[("d", 1), ("d", 1), ("e", 1)], 5000),
        vec![
            answer("e", 0, None),
            answer("d", 42, Some("Duplicate topic name."))
        ]
    );
    assert_eq!(
        create(&mut s, &[("f", 1), ("f", 1)], 0),
        vec![answer("f", 42, Some("Duplicate topic name."))]
    );
    assert_eq!(
        create(
            &mut s,
            &[
                ("", 1),
                (".", 1),
                ("__cluster_metadata", 1),
                ("e", 1),
                ("g", 0)
            ],
            5000
        ),
        vec![
            answer(
                "",
                17,
                Some("Topic name is invalid: the empty string is not allowed")
            ),
            answer(".", 17, Some("Topic name is invalid: '.' is not allowed")),
            answer("e", 36, Some("Topic 'e' already exists.")),
            answer(
                "g",
                37,
                Some("Number of partitions was set to an invalid non-positive value.")
            ),
            answer(
                "__cluster_metadata",
                42,
                Some("Creation of internal topic __cluster_metadata is prohibited.")
            ),
        ]
    );
    let delete = |s: &mut TcpStream, names: &[&str], timeout_ms: i32| {
        let request = RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topic_names(names.iter().map(|n| name(n)).collect())
                .with_timeout_ms(timeout_ms),
        );
        let ResponseKind::DeleteTopics(r) = call(s, ApiKey::DeleteTopics, 5, &request) else {
            panic!("not a DeleteTopics response")
        };
        r.responses
            .into_iter()
            .map(|t| {
                (
                    t.name.map(|n| n.to_string()).unwrap_or_default(),
                    t.error_code,
                    t.error_message.map(|m| m.to_string()),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(delete(&mut s, &["e"], 0), vec![answer("e", 7, None)]);
    assert_eq!(
        delete(&mut s, &["nope"], 5000),
        vec![answer(
            "nope",
            3,
            Some("This server does not host this topic-partition.")
        )]
    );
    assert_eq!(
        delete(&mut s, &["e", "e"], 5000),
        vec![answer("e", 42, Some("Duplicate topic name."))]
    );
    assert_eq!(delete(&mut s, &["e"], 5000), vec![answer("e", 0, None)]);
}
