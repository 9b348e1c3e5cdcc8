//! Hostile bytes on the wire: each gets Kafka's answer or that connection is closed, and the
//! broker keeps serving everyone else without panicking or aborting.

mod common;

use std::io::Write;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn api_versions_works(runnel: &mut Runnel) {
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
        panic!("wrong response kind")
    };
    assert_eq!(r.error_code, 0);
    runnel.assert_alive();
}

/// Sends `bytes` on a fresh connection and asserts the broker closes it.
fn closes(runnel: &mut Runnel, bytes: &[u8]) {
    let mut s = runnel.connect();
    write_raw(&mut s, bytes);
    assert!(
        is_closed(&mut s),
        "connection stayed open after {:02x?}",
        &bytes[..bytes.len().min(32)]
    );
    api_versions_works(runnel);
}

// Negative and oversized frame sizes close the connection before anything is allocated.
#[test]
fn bad_frame_sizes_close_the_connection() {
    let mut runnel = Runnel::start("");
    closes(&mut runnel, &(-1i32).to_be_bytes());
    closes(&mut runnel, &i32::MIN.to_be_bytes());
    closes(&mut runnel, &(100 * 1024 * 1024 + 1i32).to_be_bytes());
    closes(&mut runnel, &i32::MAX.to_be_bytes());
    // A frame too short to hold a request header.
    closes(&mut runnel, &put_frame(&[0, 18, 0]));
}

// A frame that claims more bytes than are sent, then the client goes away: nothing breaks.
#[test]
fn truncated_frame_then_disconnect() {
    let mut runnel = Runnel::start("");
    {
        let mut s = runnel.connect();
        let mut bytes = 1000i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 1]);
        s.write_all(&bytes).expect("write");
    }
    api_versions_works(&mut runnel);
}

// Unknown API keys and unsupported versions close the connection, as Kafka does.
#[test]
fn unknown_api_and_unsupported_versions() {
    let mut runnel = Runnel::start("");
    closes(
        &mut runnel,
        &put_frame(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]),
    );
    closes(
        &mut runnel,
        &put_frame(&[0, 3, 0, 99, 0, 0, 0, 1, 0xff, 0xff]),
    );
    // Produce v2 was removed in Kafka 4.
    closes(
        &mut runnel,
        &put_frame(&[0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff]),
    );
}

// ApiVersions newer than ours is answered in v0 with UNSUPPORTED_VERSION and our ApiVersions
// range (KIP-511), so the client can retry at a version we speak.
#[test]
fn api_versions_from_the_future_gets_v0_answer() {
    let mut runnel = Runnel::start("");
    let mut s = runnel.connect();
    write_raw(
        &mut s,
        &put_frame(&[0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff, 0, 0, 0]),
    );
    let mut frame = read_frame(&mut s).expect("a response");
    use kafka_protocol::protocol::Decodable;
    let header = ResponseHeader::decode(&mut frame, 0).expect("header v0");
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut frame, 0).expect("v0 body");
    assert_eq!(body.error_code, 35);
    // As Kafka: only ApiVersions' own range, which the client retries within.
    let keys: Vec<(i16, i16, i16)> = body
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(keys, vec![(ApiKey::ApiVersions as i16, 0, 5)]);
    runnel.assert_alive();
}

/// An ApiVersions v5 request as a Kafka 4.4 Java client writes it (header v2, null client id;
/// ClusterId and NodeId after the software fields, KIP-1242).
fn api_versions_v5(correlation_id: i32, cluster_id: Option<&str>, node_id: i32) -> Vec<u8> {
    let mut request = vec![0, 18, 0, 5];
    request.extend_from_slice(&correlation_id.to_be_bytes());
    request.extend_from_slice(&[0xff, 0xff, 0]); // null client id, no header tags
    request.push(18); // ClientSoftwareName, compact string of 17 bytes
    request.extend_from_slice(b"apache-kafka-java");
    request.push(6); // ClientSoftwareVersion
    request.extend_from_slice(b"4.4.0");
    match cluster_id {
        None => request.push(0),
        Some(id) => {
            request.push(u8::try_from(id.len() + 1).expect("short id"));
            request.extend_from_slice(id.as_bytes());
        }
    }
    request.extend_from_slice(&node_id.to_be_bytes());
    request.push(0); // no tagged fields
    put_frame(&request)
}

/// Sends one ApiVersions v5 request and decodes its answer (response header v0; the v5 body is
/// v4's).
fn api_versions_v5_answer(
    s: &mut std::net::TcpStream,
    correlation_id: i32,
    cluster_id: Option<&str>,
    node_id: i32,
) -> ApiVersionsResponse {
    use kafka_protocol::protocol::Decodable;
    write_raw(s, &api_versions_v5(correlation_id, cluster_id, node_id));
    let mut frame = read_frame(s).expect("a response");
    let header = ResponseHeader::decode(&mut frame, 0).expect("header v0");
    assert_eq!(header.correlation_id, correlation_id);
    let body = ApiVersionsResponse::decode(&mut frame, 4).expect("v5 body");
    assert!(frame.is_empty(), "bytes after the body");
    body
}

// A Kafka 4.4 Java client opens with ApiVersions v5 (KIP-1242) and is answered in v5, with no
// KIP-511 fallback round trip: ApiVersions is advertised up to v5.
#[test]
fn api_versions_v5_of_kafka_4_4_clients_is_answered_in_v5() {
    let mut runnel = Runnel::start("");
    let mut s = runnel.connect();
    let body = api_versions_v5_answer(&mut s, 7, None, -1);
    assert_eq!(body.error_code, 0);
    let api_versions = body
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions listed");
    assert_eq!(api_versions.max_version, 5);
    assert!(body.api_keys.len() > 1);
    runnel.assert_alive();
}

// KIP-1242 as Kafka 4.4 checks it: naming this broker's cluster and node is served; another
// cluster or another node answers REBOOTSTRAP_REQUIRED, and half a target (a node without a
// cluster, or a cluster without a node) INVALID_REQUEST, each with no API keys.
#[test]
fn api_versions_v5_checks_the_cluster_and_node() {
    let mut runnel = Runnel::start("");
    let mut s = runnel.connect();
    let ResponseKind::Metadata(metadata) = call(
        &mut s,
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
    ) else {
        panic!("wrong response kind")
    };
    let cluster_id = metadata.cluster_id.expect("cluster id").to_string();
    let node_id = metadata.brokers[0].node_id.0;
    assert!(node_id >= 0);

    let ours = api_versions_v5_answer(&mut s, 1, Some(&cluster_id), node_id);
    assert_eq!(ours.error_code, 0);
    assert!(!ours.api_keys.is_empty());

    for (correlation_id, cluster, node, error_code) in [
        (2, Some("q1Sh-9_ISia_zwGINzRvyQ"), node_id, 129), // another cluster
        (3, Some(cluster_id.as_str()), node_id + 1, 129),  // another node
        (4, None, node_id, 42),                            // a node of no cluster
        (5, Some(cluster_id.as_str()), -1, 42),            // a cluster without a node
    ] {
        let mut s = runnel.connect();
        let answer = api_versions_v5_answer(&mut s, correlation_id, cluster, node);
        assert_eq!(answer.error_code, error_code, "{cluster:?} {node}");
        assert!(answer.api_keys.is_empty(), "{cluster:?} {node}");
    }
    runnel.assert_alive();
}

// Lying counts and lengths in request bodies (kafka-protocol would size a Vec from them and
// abort the process) are rejected by the validator; garbage after a header likewise.
#[test]
fn hostile_bodies_do_not_abort() {
    let mut runnel = Runnel::start("");
    // Metadata v1, header v1 (client id null), body: topics array count 0x7fffffff.
    closes(
        &mut runnel,
        &put_frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]),
    );
    // Metadata v12 (flexible): compact array count u32::MAX as varint, plus empty tags.
    closes(
        &mut runnel,
        &put_frame(&[
            0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0,
        ]),
    );
    // Produce v9 with a huge tagged-field size.
    closes(
        &mut runnel,
        &put_frame(&[
            0, 0, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ]),
    );
    // ApiVersions v3 with garbage where the strings should be.
    closes(
        &mut runnel,
        &put_frame(&[
            0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0, 0xde, 0xad, 0xbe, 0xef,
        ]),
    );
    // CreateTopics v2 with a string length beyond the frame.
    closes(
        &mut runnel,
        &put_frame(&[
            0, 19, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 1, 0x7f, 0xff, b'a',
        ]),
    );
}

// A flexible-version request carrying a compact string over 0x7fff bytes is refused at the door
// and its connection closed, as Kafka's readers refuse it; before the validator enforced that, a
// 40,000-byte group id reached the group coordinator and panicked in its record encoder.
#[test]
fn strings_longer_than_i16_max_close_the_connection() {
    let mut runnel = Runnel::start("");
    let group = StrBytes::from_string("g".repeat(40_000));
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(group.clone()))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(1),
                ]),
        ]);
    closes(
        &mut runnel,
        &request_frame(
            ApiKey::OffsetCommit,
            8,
            1,
            &RequestKind::OffsetCommit(commit),
        ),
    );
    let heartbeat = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(group))
        .with_member_id(StrBytes::from_static_str("m"))
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("t"))]));
    closes(
        &mut runnel,
        &request_frame(
            ApiKey::ConsumerGroupHeartbeat,
            0,
            1,
            &RequestKind::ConsumerGroupHeartbeat(heartbeat),
        ),
    );
    // A group id of exactly 0x7fff bytes is legal and served.
    let mut s = runnel.connect();
    let ResponseKind::OffsetCommit(r) = call(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        &RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string("g".repeat(0x7fff))))
                .with_generation_id_or_member_epoch(-1),
        ),
    ) else {
        panic!("wrong response kind")
    };
    assert!(r.topics.is_empty());
    runnel.assert_alive();
}

// A produce batch with a wrong CRC gets CORRUPT_MESSAGE for that partition; the connection and
// the broker go on, and nothing was appended.
#[test]
fn produce_with_bad_crc_is_corrupt_message() {
    let mut runnel = Runnel::start("");
    let mut s = runnel.connect();
    let create = RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("crc")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]));
    let ResponseKind::CreateTopics(r) = call(&mut s, ApiKey::CreateTopics, 7, &create) else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);

    let spec = runnel_protocol::batch::BatchSpec {
        records: vec![runnel_protocol::batch::RecordSpec {
            timestamp_delta: 0,
            key: Some(b"k"),
            value: Some(b"v"),
            headers: vec![],
        }],
        ..Default::default()
    };
    let mut batch = runnel_protocol::batch::encode_uncompressed_batch(&spec);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let produce = |records: Vec<u8>| {
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("crc")))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records.into())),
                    ])]),
        )
    };
    let ResponseKind::Produce(r) = call(&mut s, ApiKey::Produce, 9, &produce(batch)) else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 2, "CORRUPT_MESSAGE");
    assert_eq!(p.base_offset, -1);

    // Same connection still works, and the good batch lands at offset 0.
    let good = runnel_protocol::batch::encode_uncompressed_batch(&spec);
    let ResponseKind::Produce(r) = call(&mut s, ApiKey::Produce, 9, &produce(good)) else {
        panic!()
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    runnel.assert_alive();
}

// Idle connections are closed after connections.max.idle.ms.
#[test]
fn idle_connections_are_closed() {
    let mut runnel = Runnel::start("\"connections.max.idle.ms\" = 300\n");
    let mut s = runnel.connect();
    let started = std::time::Instant::now();
    assert!(is_closed(&mut s));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    api_versions_works(&mut runnel);
}

// SIGTERM stops the broker cleanly with exit code 0.
#[test]
fn sigterm_exits_zero() {
    let mut runnel = Runnel::start("");
    api_versions_works(&mut runnel);
    runnel.signal("TERM");
    let status = runnel.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "log:\n{}", runnel.log());
}

// Goal: running out of file descriptors does not make the accept loop spin or the broker die.
// With RLIMIT_NOFILE at 64, 100 clients connect and stay; accept(2) fails with EMFILE while the
// kernel keeps the rest queued. The broker must back off (a spinning loop would burn a whole
// core: about 1 CPU second per second), keep serving the connections it has, and accept again
// once clients leave.
#[test]
fn out_of_file_descriptors_backs_off_and_recovers() {
    let mut runnel = Runnel::start_with_fd_limit("", 64);
    let first = runnel.connect();
    let mut held = Vec::new();
    for _ in 0..100 {
        // The kernel completes handshakes for the backlog even when the broker cannot accept.
        held.push(std::net::TcpStream::connect(("127.0.0.1", runnel.port)).expect("connect"));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = runnel.cpu_seconds();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = runnel.cpu_seconds() - before;
    assert!(
        used < 0.5,
        "broker used {used:.2} CPU s in 2 s while out of descriptors: the accept loop spins"
    );
    assert!(
        runnel.log().contains("accept failed"),
        "descriptors never ran out (the test proves nothing); log:\n{}",
        runnel.log()
    );
    // A connection accepted before the shortage is still served.
    let mut first = first;
    let ResponseKind::ApiVersions(r) = call(
        &mut first,
        ApiKey::ApiVersions,
        3,
        &RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("t"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        ),
    ) else {
        panic!("wrong response kind")
    };
    assert_eq!(r.error_code, 0);
    drop(held);
    // Once clients leave, descriptors free up and new connections are accepted and served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut s = runnel.connect();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        s.write_all(&request_frame(
            ApiKey::ApiVersions,
            3,
            1,
            &RequestKind::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("t"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
        ))
        .expect("write");
        if read_frame(&mut s).is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection accepted after clients left"
        );
    }
    runnel.assert_alive();
}

// Requests naming a million partitions of one topic with a 32,000-byte name (12 MB on the
// wire, well within socket.request.max.bytes and the decode budget) are answered, one error
// per partition, and the broker goes on. Before, ListOffsets, WriteTxnMarkers and
// AddPartitionsToTxn copied the name once per partition (32 GB: the allocation aborted the
// process), and DeleteRecords, WriteTxnMarkers' answer and AddPartitionsToTxn's unknown
// partitions searched a list per partition (quadratic: hours of one worker).
#[test]
fn a_million_partitions_of_a_long_named_topic_are_answered() {
    let mut runnel = Runnel::start("");
    let mut stream = runnel.connect();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let name = || TopicName(StrBytes::from_string("t".repeat(32_000)));
    const N: i32 = 1_000_000;
    let unknown = kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code();

    let request = RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name())
                .with_partitions(
                    (0..N)
                        .map(|p| {
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(-1)
                        })
                        .collect(),
                )]),
    );
    let ResponseKind::ListOffsets(r) = call(&mut stream, ApiKey::ListOffsets, 1, &request) else {
        panic!("not a ListOffsets response")
    };
    let partitions = &r.topics[0].partitions;
    assert_eq!(partitions.len(), N as usize);
    assert!(partitions.iter().all(|p| p.error_code == unknown));

    let request = RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(
        vec![write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(7))
            .with_topics(vec![
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(name())
                    .with_partition_indexes((0..N).collect()),
            ])],
    ));
    let ResponseKind::WriteTxnMarkers(r) = call(&mut stream, ApiKey::WriteTxnMarkers, 1, &request)
    else {
        panic!("not a WriteTxnMarkers response")
    };
    let partitions = &r.markers[0].topics[0].partitions;
    assert_eq!(partitions.len(), N as usize);
    assert!(partitions.iter().all(|p| p.error_code == unknown));

    let request = RequestKind::DeleteRecords(
        DeleteRecordsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(name())
                .with_partitions(
                    (0..N)
                        .map(|p| {
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(p)
                                .with_offset(0)
                        })
                        .collect(),
                )]),
    );
    let ResponseKind::DeleteRecords(r) = call(&mut stream, ApiKey::DeleteRecords, 2, &request)
    else {
        panic!("not a DeleteRecords response")
    };
    let partitions = &r.topics[0].partitions;
    assert_eq!(partitions.len(), N as usize);
    assert!(partitions.iter().all(|p| p.error_code == unknown));

    // v3: refused before the transaction coordinator, as Kafka's KafkaApis does.
    let request = RequestKind::AddPartitionsToTxn(
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("t")))
            .with_v3_and_below_producer_id(ProducerId(7))
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(name())
                    .with_partitions((0..N).collect()),
            ]),
    );
    let ResponseKind::AddPartitionsToTxn(r) =
        call(&mut stream, ApiKey::AddPartitionsToTxn, 3, &request)
    else {
        panic!("not an AddPartitionsToTxn response")
    };
    let partitions = &r.results_by_topic_v3_and_below[0].results_by_partition;
    assert_eq!(partitions.len(), N as usize);
    assert!(partitions.iter().all(|p| p.partition_error_code == unknown));
    api_versions_works(&mut runnel);
}
