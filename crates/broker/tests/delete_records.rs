//! DeleteRecords and retention against the real binary: Kafka's per-partition errors and low
//! watermarks, ListOffsets earliest and Fetch OFFSET_OUT_OF_RANGE following the log start, and the
//! log start surviving a restart.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;

/// Produces `count` one-record batches to `topic`/`partition`, each with `timestamp`.
fn produce(stream: &mut TcpStream, topic: &str, partition: i32, count: usize, timestamp: i64) {
    for i in 0..count {
        let value = format!("v{i}");
        let spec = runnel_protocol::batch::BatchSpec {
            records: vec![runnel_protocol::batch::RecordSpec {
                timestamp_delta: 0,
                key: None,
                value: Some(value.as_bytes()),
                headers: vec![],
            }],
            base_timestamp: timestamp,
            ..Default::default()
        };
        let records: bytes::Bytes = runnel_protocol::batch::encode_uncompressed_batch(&spec).into();
        let request = produce_request(topic, -1, 10_000, &[(partition, records)]);
        let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, 9, &request) else {
            panic!("not a Produce response")
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

/// DeleteRecords v2 for `(topic, partition, offset)` triples; answers `(topic, partition, low
/// watermark, error)` in response order.
fn delete_records(
    stream: &mut TcpStream,
    targets: &[(&str, i32, i64)],
) -> Vec<(String, i32, i64, i16)> {
    let topics = targets
        .iter()
        .map(|(topic, partition, offset)| {
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(*partition)
                        .with_offset(*offset),
                ])
        })
        .collect();
    let request = RequestKind::DeleteRecords(
        DeleteRecordsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(topics),
    );
    let ResponseKind::DeleteRecords(r) = call(stream, ApiKey::DeleteRecords, 2, &request) else {
        panic!("not a DeleteRecords response")
    };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.low_watermark,
                    p.error_code,
                )
            })
        })
        .collect()
}

/// ListOffsets earliest (-2) of partition 0.
fn earliest(stream: &mut TcpStream, topic: &str) -> i64 {
    let request = RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)]),
    ]));
    let ResponseKind::ListOffsets(r) = call(stream, ApiKey::ListOffsets, 7, &request) else {
        panic!("not a ListOffsets response")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// The error and log start offset a Fetch at `offset` of partition 0 gets.
fn fetch_error(stream: &mut TcpStream, topic: &str, offset: i64) -> (i16, i64) {
    let request = fetch_request(topic, 0, offset, 0, 1 << 20);
    let ResponseKind::Fetch(r) = call(stream, ApiKey::Fetch, 12, &request) else {
        panic!("not a Fetch response")
    };
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.log_start_offset)
}

const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const POLICY_VIOLATION: i16 = 44;

#[test]
fn delete_records_answers_as_kafka_and_the_start_survives_a_restart() {
    // Goal: each partition gets Kafka's error or the new low watermark; earliest and fetches follow
    // the start; -1 means the high watermark; and the start is durable across a restart.
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "dr", 1, &[]);
    create_topic(&mut s, "dr-compact", 1, &[("cleanup.policy", "compact")]);
    produce(&mut s, "dr", 0, 10, 1_700_000_000_000);
    let answers = delete_records(
        &mut s,
        &[
            ("dr", 0, 4),
            ("dr", 7, 1),
            ("nope", 0, 1),
            ("dr-compact", 0, 0),
        ],
    );
    assert_eq!(
        answers,
        vec![
            ("dr".into(), 0, 4, 0),
            ("dr".into(), 7, -1, UNKNOWN_TOPIC_OR_PARTITION),
            ("nope".into(), 0, -1, UNKNOWN_TOPIC_OR_PARTITION),
            ("dr-compact".into(), 0, -1, POLICY_VIOLATION),
        ]
    );
    assert_eq!(earliest(&mut s, "dr"), 4);
    assert_eq!(fetch_error(&mut s, "dr", 2), (OFFSET_OUT_OF_RANGE, 4));
    assert_eq!(fetch_error(&mut s, "dr", 4), (0, 4));
    // Below the start: no change, the current start; past the HW or below -1: out of range.
    assert_eq!(
        delete_records(&mut s, &[("dr", 0, 1)]),
        vec![("dr".into(), 0, 4, 0)]
    );
    assert_eq!(
        delete_records(&mut s, &[("dr", 0, 11)]),
        vec![("dr".into(), 0, -1, OFFSET_OUT_OF_RANGE)]
    );
    assert_eq!(
        delete_records(&mut s, &[("dr", 0, -2)]),
        vec![("dr".into(), 0, -1, OFFSET_OUT_OF_RANGE)]
    );
    assert_eq!(
        delete_records(&mut s, &[("dr", 0, 7)]),
        vec![("dr".into(), 0, 7, 0)]
    );

    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    assert_eq!(earliest(&mut s, "dr"), 7, "the start survives a restart");
    assert_eq!(
        delete_records(&mut s, &[("dr", 0, -1)]),
        vec![("dr".into(), 0, 10, 0)]
    );
    assert_eq!(earliest(&mut s, "dr"), 10);
}

#[test]
fn internal_topics_refuse_delete_records() {
    // Goal: __consumer_offsets answers INVALID_TOPIC_EXCEPTION, as Kafka's replica manager does.
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    let request = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![kafka_protocol::protocol::StrBytes::from_static_str(
                "g",
            )]),
    );
    // Creates __consumer_offsets (as Kafka does on first use); retried until it exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = call(&mut s, ApiKey::FindCoordinator, 4, &request);
        let answer = delete_records(&mut s, &[("__consumer_offsets", 0, 0)]);
        if answer[0].3 != UNKNOWN_TOPIC_OR_PARTITION || Instant::now() > deadline {
            assert_eq!(
                answer,
                vec![("__consumer_offsets".into(), 0, -1, INVALID_TOPIC_EXCEPTION)]
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retention_moves_earliest_and_fetches_out_of_range() {
    // Goal: the periodic retention check deletes expired segments; earliest and a fetch below the
    // new start show it.
    let runnel = Runnel::start(
        "\"log.retention.check.interval.ms\" = 200\n\"log.initial.task.delay.ms\" = 0\n",
    );
    let mut s = runnel.connect();
    create_topic(
        &mut s,
        "ret",
        1,
        &[("segment.ms", "100"), ("retention.ms", "60000")],
    );
    let now = runnel_broker::clock::now_ms();
    // Two old batches, each its own segment (their timestamps are 1 s apart), then a fresh one.
    produce(&mut s, "ret", 0, 1, now - 600_000);
    produce(&mut s, "ret", 0, 1, now - 599_000);
    produce(&mut s, "ret", 0, 1, now);
    let deadline = Instant::now() + Duration::from_secs(20);
    while earliest(&mut s, "ret") != 2 {
        assert!(
            Instant::now() < deadline,
            "retention never ran:\n{}",
            runnel.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fetch_error(&mut s, "ret", 0), (OFFSET_OUT_OF_RANGE, 2));
}
