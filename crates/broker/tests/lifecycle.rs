//! Topic and data lifecycle across requests and restarts, over the wire against the real binary.

mod common;

use std::io::Write;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn create(topic: &str, partitions: i32) -> RequestKind {
    RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1),
    ]))
}

fn produce(topic: &str, partition: i32, records: bytes::Bytes) -> RequestKind {
    produce_request(topic, -1, 5000, &[(partition, records)])
}

fn fetch_by_id(topic_id: uuid::Uuid, offset: i64, max_wait_ms: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

fn topic_id(stream: &mut std::net::TcpStream, topic: &str) -> uuid::Uuid {
    let req = RequestKind::Metadata(
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(topic)))]))
            .with_allow_auto_topic_creation(false),
    );
    let ResponseKind::Metadata(r) = call(stream, ApiKey::Metadata, 12, &req) else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0, "metadata for {topic}");
    r.topics[0].topic_id
}

// Topics, their ids and acknowledged records survive a clean restart, and appends continue after
// the recovered log end.
#[test]
fn topics_and_records_survive_restart() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let ResponseKind::CreateTopics(r) = call(&mut s, ApiKey::CreateTopics, 7, &create("keep", 2))
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    let id_before = r.topics[0].topic_id;
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        11,
        &produce("keep", 1, batch(&[b"a", b"b", b"c"])),
    ) else {
        panic!()
    };
    let first = &r.responses[0].partition_responses[0];
    assert_eq!(first.error_code, 0);
    drop(s);
    runnel.signal("TERM");
    let (dir, port) = runnel.into_dir();

    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    assert_eq!(topic_id(&mut s, "keep"), id_before);
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        11,
        &produce("keep", 1, batch(&[b"d"])),
    ) else {
        panic!()
    };
    let second = &r.responses[0].partition_responses[0];
    assert_eq!(second.error_code, 0);
    assert_eq!(
        second.base_offset,
        first.base_offset + 3,
        "append continues after the recovered log"
    );
}

// A deleted topic's id is gone (UNKNOWN_TOPIC_ID) even after the name is re-created, and the new
// topic starts empty.
#[test]
fn delete_and_recreate_same_name() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    call(&mut s, ApiKey::CreateTopics, 7, &create("again", 1));
    let old_id = topic_id(&mut s, "again");
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        11,
        &produce("again", 0, batch(&[b"old"])),
    ) else {
        panic!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let delete = RequestKind::DeleteTopics(
        DeleteTopicsRequest::default()
            .with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_topic_id(old_id)
            ])
            .with_timeout_ms(5000),
    );
    let ResponseKind::DeleteTopics(r) = call(&mut s, ApiKey::DeleteTopics, 6, &delete) else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(
        r.responses[0].name.as_ref().map(|n| n.0.to_string()),
        Some("again".to_string())
    );
    let ResponseKind::CreateTopics(r) = call(&mut s, ApiKey::CreateTopics, 7, &create("again", 1))
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    let new_id = topic_id(&mut s, "again");
    assert_ne!(new_id, old_id);

    let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 17, &fetch_by_id(old_id, 0, 0)) else {
        panic!()
    };
    assert_eq!(
        r.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );
    let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 17, &fetch_by_id(new_id, 0, 0)) else {
        panic!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
}

// A long-polling fetch is woken by an append on another connection and returns it, well before
// its max_wait.
#[test]
fn long_poll_is_woken_by_append() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    call(&mut s, ApiKey::CreateTopics, 7, &create("poll", 1));
    let id = topic_id(&mut s, "poll");
    let started = std::time::Instant::now();
    let port = runnel.port;
    let producer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut p = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        call(
            &mut p,
            ApiKey::Produce,
            11,
            &produce("poll", 0, batch(&[b"wake"])),
        );
    });
    let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 17, &fetch_by_id(id, 0, 20_000))
    else {
        panic!()
    };
    producer.join().expect("producer thread");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.records.as_ref().is_some_and(|r| !r.is_empty()),
        "fetch returned the appended batch"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "woken, not timed out"
    );
}

// Requests written back to back on one connection are answered in arrival order.
#[test]
fn pipelined_requests_answer_in_order() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    call(&mut s, ApiKey::CreateTopics, 7, &create("pipe", 1));
    let mut burst = Vec::new();
    for correlation_id in 0..20 {
        burst.extend(request_frame(
            ApiKey::Produce,
            11,
            correlation_id,
            &produce("pipe", 0, batch(&[b"x"])),
        ));
    }
    s.write_all(&burst).expect("write burst");
    for expected in 0..20 {
        let mut frame = read_frame(&mut s).expect("response");
        use kafka_protocol::protocol::Decodable;
        let header =
            ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(11))
                .expect("header");
        assert_eq!(header.correlation_id, expected);
        let body = ProduceResponse::decode(&mut frame, 11).expect("body");
        assert_eq!(
            body.responses[0].partition_responses[0].base_offset,
            i64::from(expected)
        );
    }
}

// The broker's fetch.max.bytes caps a response whatever max_bytes the client asks for, so one
// request cannot make the broker read the whole log into memory.
#[test]
fn fetch_max_bytes_caps_responses() {
    let runnel = Runnel::start("\"fetch.max.bytes\" = 1048576\n");
    let mut s = runnel.connect();
    call(&mut s, ApiKey::CreateTopics, 7, &create("big", 1));
    let id = topic_id(&mut s, "big");
    static VALUE: [u8; 600 * 1024] = [7u8; 600 * 1024];
    for _ in 0..3 {
        let ResponseKind::Produce(r) = call(
            &mut s,
            ApiKey::Produce,
            11,
            &produce("big", 0, batch(&[&VALUE])),
        ) else {
            panic!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let request = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(i32::MAX)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(i32::MAX)])]),
    );
    let ResponseKind::Fetch(r) = call(&mut s, ApiKey::Fetch, 17, &request) else {
        panic!()
    };
    let records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(!records.is_empty(), "at least one batch");
    assert!(
        records.len() <= 1_048_576,
        "{} bytes returned past fetch.max.bytes",
        records.len()
    );
}

/// Fetch over the wire by topic name (v < 13), three partitions, small per-partition limits.
fn fetch_three(topic: &str, offsets: [i64; 3], partition_max_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(256 * 1024)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .enumerate()
                        .map(|(p, &offset)| {
                            fetch_request::FetchPartition::default()
                                .with_partition(p as i32)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(partition_max_bytes)
                        })
                        .collect(),
                )]),
    )
}

// Goal: zero-copy fetch (sendfile around spliced frames) sends exactly the bytes of a fetch read
// into memory and encoded whole, at old, flexible and new versions, including cut-short last
// batches and a partition with nothing to return; and a consumer reading through it sees every
// record once. Two brokers get the same produce; their raw fetch responses must be identical.
#[test]
fn zero_copy_fetch_sends_the_same_bytes_as_a_copying_fetch() {
    static VALUE: [u8; 3000] = [b'z'; 3000];
    let brokers = [
        Runnel::start(""),
        Runnel::start("\"runnel.fetch.zero.copy\" = false\n"),
    ];
    let mut streams: Vec<_> = brokers.iter().map(|b| b.connect()).collect();
    for s in &mut streams {
        call(s, ApiKey::CreateTopics, 7, &create("zc", 3));
        for i in 0..40 {
            // Partitions 0 and 1 get data (varying batch sizes); partition 2 stays empty.
            let values: Vec<&'static [u8]> = (0..1 + i % 5).map(|_| &VALUE[..]).collect();
            let ResponseKind::Produce(r) = call(
                s,
                ApiKey::Produce,
                11,
                &produce("zc", i % 2, batch(&values)),
            ) else {
                panic!()
            };
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    for version in [4i16, 11, 12] {
        for max_bytes in [1000, 20_000, 1 << 20] {
            // Walk both partitions to their ends as a consumer would, comparing every response.
            let mut offsets = [0i64, 0, 0];
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 500, "consumer made no progress");
                let request = fetch_three("zc", offsets, max_bytes);
                let frames: Vec<_> = streams
                    .iter_mut()
                    .map(|s| {
                        s.write_all(&request_frame(ApiKey::Fetch, version, 9, &request))
                            .unwrap();
                        read_frame(s).expect("fetch response")
                    })
                    .collect();
                assert_eq!(
                    frames[0], frames[1],
                    "v{version} max {max_bytes} offsets {offsets:?}: zero-copy differs"
                );
                let mut frame = frames[0].clone();
                <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
                    &mut frame,
                    ApiKey::Fetch.response_header_version(version),
                )
                .unwrap();
                let ResponseKind::Fetch(r) =
                    ResponseKind::decode(ApiKey::Fetch, &mut frame, version).unwrap()
                else {
                    panic!()
                };
                let mut progressed = false;
                for p in &r.responses[0].partitions {
                    assert_eq!(p.error_code, 0);
                    let records = p.records.clone().unwrap_or_default();
                    // Advance past whole batches only, as clients do with a cut-short tail.
                    let mut pos = 0;
                    while let Ok(h) = runnel_protocol::batch::BatchHeader::parse(&records[pos..]) {
                        if pos + h.size_bytes() > records.len() {
                            break;
                        }
                        let i = p.partition_index as usize;
                        assert_eq!(h.base_offset, offsets[i], "no gap and no repeat");
                        offsets[i] = h.last_offset() + 1;
                        pos += h.size_bytes();
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
            assert_eq!(offsets[2], 0, "partition 2 is empty");
            assert!(offsets[0] > 0 && offsets[1] > 0);
        }
    }
}

/// A v12 fetch of partitions 0..n of `topic` in a session (id, epoch), all from `offset`.
fn session_fetch(
    topic: &str,
    session_id: i32,
    epoch: i32,
    partitions: &[(i32, i64)],
    forgotten: &[i32],
) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(50)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(if partitions.is_empty() {
                vec![]
            } else {
                vec![fetch_request::FetchTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&(p, offset)| {
                                fetch_request::FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(offset)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    )]
            })
            .with_forgotten_topics_data(if forgotten.is_empty() {
                vec![]
            } else {
                vec![fetch_request::ForgottenTopic::default()
                    .with_topic(name(topic))
                    .with_partitions(forgotten.to_vec())]
            }),
    )
}

fn answered(r: &FetchResponse) -> Vec<(i32, usize)> {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.records.as_ref().map_or(0, |b| b.len())))
        .collect()
}

// Goal: KIP-227 sessions over the wire. A full fetch with epoch 0 opens a session; an
// incremental fetch that lists nothing is answered with only the partitions that have news
// (none, then the one that got a record); forgotten partitions stop being answered; a stale
// epoch gets INVALID_FETCH_SESSION_EPOCH, an unknown id FETCH_SESSION_ID_NOT_FOUND, and epoch -1
// closes the session (its id is then unknown).
#[test]
fn fetch_sessions_answer_only_partitions_with_news() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    call(&mut s, ApiKey::CreateTopics, 7, &create("sess", 3));
    let fetch = |s: &mut std::net::TcpStream, req: &RequestKind| {
        let ResponseKind::Fetch(r) = call(s, ApiKey::Fetch, 12, req) else {
            panic!()
        };
        r
    };
    let all = [(0, 0i64), (1, 0), (2, 0)];
    let full = fetch(&mut s, &session_fetch("sess", 0, 0, &all, &[]));
    assert_eq!(full.error_code, 0);
    assert_ne!(full.session_id, 0, "epoch 0 opens a session");
    assert_eq!(
        answered(&full).len(),
        3,
        "a full fetch answers every partition"
    );
    let id = full.session_id;

    let quiet = fetch(&mut s, &session_fetch("sess", id, 1, &[], &[]));
    assert_eq!((quiet.error_code, quiet.session_id), (0, id));
    assert!(
        answered(&quiet).is_empty(),
        "nothing changed: {:?}",
        answered(&quiet)
    );

    let ResponseKind::Produce(p) = call(
        &mut s,
        ApiKey::Produce,
        11,
        &produce("sess", 1, batch(&[b"news"])),
    ) else {
        panic!()
    };
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    let news = fetch(&mut s, &session_fetch("sess", id, 2, &[], &[]));
    let got = answered(&news);
    assert_eq!(got.len(), 1, "only partition 1 has news: {got:?}");
    assert_eq!(got[0].0, 1);
    assert!(got[0].1 > 0, "with its record");

    // The client moves partition 1 past the record and forgets partition 0.
    let moved = fetch(&mut s, &session_fetch("sess", id, 3, &[(1, 1)], &[0]));
    assert!(answered(&moved).is_empty(), "{:?}", answered(&moved));
    call(
        &mut s,
        ApiKey::Produce,
        11,
        &produce("sess", 0, batch(&[b"unwatched"])),
    );
    let forgotten = fetch(&mut s, &session_fetch("sess", id, 4, &[], &[]));
    assert!(
        answered(&forgotten).is_empty(),
        "partition 0 was forgotten: {:?}",
        answered(&forgotten)
    );

    let stale = fetch(&mut s, &session_fetch("sess", id, 4, &[], &[]));
    assert_eq!(stale.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let unknown = fetch(
        &mut s,
        &session_fetch("sess", id.wrapping_add(1), 1, &[], &[]),
    );
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    let closing = fetch(&mut s, &session_fetch("sess", id, -1, &all, &[]));
    assert_eq!((closing.error_code, closing.session_id), (0, 0));
    let closed = fetch(&mut s, &session_fetch("sess", id, 6, &[], &[]));
    assert_eq!(closed.error_code, 70, "epoch -1 closed the session");
}

// A Fetch naming no partitions is answered at once, not after max_wait_ms, as Kafka answers it
// (the Java consumer sends one when it closes, so every close used to wait the whole max wait).
// max_wait is 10 s; the bound of 5 s leaves room for any machine yet fails a broker that waits.
#[test]
fn fetch_naming_no_partitions_is_answered_at_once() {
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    for version in [4, 12, 18] {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(10_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1);
        let started = std::time::Instant::now();
        let ResponseKind::Fetch(r) =
            call(&mut s, ApiKey::Fetch, version, &RequestKind::Fetch(request))
        else {
            panic!("not a Fetch response")
        };
        let waited = started.elapsed();
        assert_eq!(r.error_code, 0);
        assert!(r.responses.is_empty());
        assert!(
            waited < std::time::Duration::from_secs(5),
            "v{version} waited {waited:?}"
        );
    }
}

// Authorized operations come from the broker's authorizer (allow-all, as Kafka without one):
// Metadata's topic and cluster fields, DescribeCluster, and DescribeGroups /
// ConsumerGroupDescribe, with Kafka's bitfields, and the "not requested" sentinel otherwise.
#[test]
fn authorized_operations_come_from_the_authorizer() {
    const TOPIC: i32 = 3576;
    const GROUP: i32 = 3400;
    const CLUSTER: i32 = 32672;
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let ResponseKind::Metadata(m) = call(
        &mut s,
        ApiKey::Metadata,
        10,
        &RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(StrBytes::from_static_str("ops"))))]))
                .with_allow_auto_topic_creation(true)
                .with_include_topic_authorized_operations(true)
                .with_include_cluster_authorized_operations(true),
        ),
    ) else {
        panic!("not a Metadata response")
    };
    assert_eq!(m.topics[0].topic_authorized_operations, TOPIC);
    assert_eq!(m.cluster_authorized_operations, CLUSTER);
    let ResponseKind::DescribeCluster(c) = call(
        &mut s,
        ApiKey::DescribeCluster,
        1,
        &RequestKind::DescribeCluster(
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        ),
    ) else {
        panic!("not a DescribeCluster response")
    };
    assert_eq!(c.cluster_authorized_operations, CLUSTER);
    // A simple group exists once it committed an offset.
    let ResponseKind::OffsetCommit(_) = call(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        &RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("ops")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(0),
                        ]),
                ]),
        ),
    ) else {
        panic!("not an OffsetCommit response")
    };
    for include in [true, false] {
        let ResponseKind::DescribeGroups(d) = call(
            &mut s,
            ApiKey::DescribeGroups,
            5,
            &RequestKind::DescribeGroups(
                DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(StrBytes::from_static_str("g"))])
                    .with_include_authorized_operations(include),
            ),
        ) else {
            panic!("not a DescribeGroups response")
        };
        assert_eq!(
            d.groups[0].authorized_operations,
            if include { GROUP } else { i32::MIN }
        );
    }
    let ResponseKind::ConsumerGroupDescribe(d) = call(
        &mut s,
        ApiKey::ConsumerGroupDescribe,
        0,
        &RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_static_str("nope"))])
                .with_include_authorized_operations(true),
        ),
    ) else {
        panic!("not a ConsumerGroupDescribe response")
    };
    assert_eq!(d.groups[0].authorized_operations, GROUP);
}
