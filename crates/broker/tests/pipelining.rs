//! Pipelined requests on one connection against the real binary: a connection applies requests
//! in arrival order without waiting for a produce's fsync, answers strictly in request order,
//! and lets the group commit of fsync mode (`flush.messages=1`) cover several requests with one
//! fsync.

mod common;
mod traced;

use std::io::Write;
use std::net::TcpStream;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use traced::*;

const TOPIC: &str = "piped";

/// A topic of `TOPIC`'s name in fsync mode.
fn create_fsync_topic(stream: &mut TcpStream, partitions: i32) {
    create_topic(stream, TOPIC, partitions, &[("flush.messages", "1")]);
}

/// Prints the broker's log if the test fails while it is alive, so a failure shows its cause.
struct LogOnFailure<'a>(&'a Runnel);

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("runnel's log:\n{}", self.0.log());
        }
    }
}

/// A produce of one batch to each named partition of `TOPIC`.
fn produce(acks: i16, batches: &[(i32, Bytes)]) -> RequestKind {
    produce_request(TOPIC, acks, 30_000, batches)
}

/// Partition 0 of `TOPIC` from offset 0, answered at once with whatever is below the HW.
fn fetch_all() -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(TOPIC))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]),
    )
}

fn api_versions() -> RequestKind {
    RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("t"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
}

fn metadata() -> RequestKind {
    RequestKind::Metadata(
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(name(TOPIC)))]))
            .with_allow_auto_topic_creation(false),
    )
}

/// The API versions these tests speak.
fn version_of(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 11,
        ApiKey::Fetch => 12,
        ApiKey::ApiVersions => 3,
        ApiKey::Metadata => 12,
        other => panic!("no version chosen for {other:?}"),
    }
}

/// Reads the next response frame and checks it answers `correlation_id`.
fn read_response(stream: &mut TcpStream, key: ApiKey, correlation_id: i32) -> ResponseKind {
    let version = version_of(key);
    let mut frame = read_frame(stream)
        .unwrap_or_else(|| panic!("connection closed before answer {correlation_id}"));
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .expect("response header");
    assert_eq!(
        header.correlation_id, correlation_id,
        "answers out of request order (expected the {key:?} answer {correlation_id})"
    );
    ResponseKind::decode(key, &mut frame, version).expect("decode response")
}

/// Every whole record of a fetched records field, as (offset, value).
fn records_of(records: Option<Bytes>) -> Vec<(i64, String)> {
    fetched_records(records)
        .into_iter()
        .map(|(offset, value)| (offset, String::from_utf8_lossy(&value).into_owned()))
        .collect()
}

// Goal: 20 requests written at once on one connection (fsync-mode produces interleaved with
// ApiVersions, Metadata and Fetch) are answered in exactly request order, produce offsets are
// consecutive in request order, and each Fetch sees every record of the produces before it.
// Fails if a ready answer overtakes a produce still waiting for its fsync, or if a request is
// applied before the produces ahead of it are visible.
#[test]
fn pipelined_mixed_requests_answer_in_order_and_see_earlier_produces() {
    const REQUESTS: i32 = 20;
    let runnel = Runnel::start("");
    let _log = LogOnFailure(&runnel);
    let mut stream = runnel.connect();
    create_fsync_topic(&mut stream, 1);
    let kind = |i: i32| match i % 5 {
        0 | 1 | 3 => ApiKey::Produce,
        2 if i % 10 == 2 => ApiKey::ApiVersions,
        2 => ApiKey::Metadata,
        _ => ApiKey::Fetch,
    };
    let values = |i: i32| -> Vec<String> { (0..=i % 3).map(|k| format!("r{i}-{k}")).collect() };
    let mut burst = Vec::new();
    for i in 0..REQUESTS {
        let body = match kind(i) {
            ApiKey::Produce => produce(1, &[(0, batch(&values(i)))]),
            ApiKey::ApiVersions => api_versions(),
            ApiKey::Metadata => metadata(),
            _ => fetch_all(),
        };
        burst.extend(request_frame(kind(i), version_of(kind(i)), i, &body));
    }
    stream.write_all(&burst).expect("write the burst");

    // Every record produced so far, in request order: its offset is its index.
    let mut produced: Vec<String> = Vec::new();
    for i in 0..REQUESTS {
        match read_response(&mut stream, kind(i), i) {
            ResponseKind::Produce(r) => {
                let answer = &r.responses[0].partition_responses[0];
                assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
                assert_eq!(
                    answer.base_offset,
                    produced.len() as i64,
                    "produce {i} is not right after the produces before it"
                );
                produced.extend(values(i));
            }
            ResponseKind::Fetch(r) => {
                let answer = &r.responses[0].partitions[0];
                assert_eq!(answer.error_code, 0);
                let expected: Vec<(i64, String)> = produced
                    .iter()
                    .enumerate()
                    .map(|(offset, v)| (offset as i64, v.clone()))
                    .collect();
                assert_eq!(
                    records_of(answer.records.clone()),
                    expected,
                    "fetch {i} does not see exactly the records produced before it (HW {})",
                    answer.high_watermark
                );
                assert_eq!(answer.high_watermark, produced.len() as i64);
            }
            ResponseKind::ApiVersions(r) => assert_eq!(r.error_code, 0),
            ResponseKind::Metadata(r) => assert_eq!(r.topics[0].error_code, 0),
            _ => unreachable!("decoded as the requested kind"),
        }
    }
    assert_eq!(produced.len(), 22, "12 produces of 1 to 3 records");
}

// Goal: acks=0 produces pipelined on an fsync-mode topic get no answer at all (the first answer
// on the connection is the ApiVersions written after them), and their records are stored.
// Fails if an acks=0 produce is answered, or if its completion blocks later requests.
#[test]
fn pipelined_acks0_produces_get_no_answer_and_are_stored() {
    const PRODUCES: i32 = 10;
    let runnel = Runnel::start("");
    let _log = LogOnFailure(&runnel);
    let mut stream = runnel.connect();
    create_fsync_topic(&mut stream, 1);
    let mut burst = Vec::new();
    for i in 0..PRODUCES {
        let records = batch(&[format!("silent-{i}")]);
        burst.extend(request_frame(
            ApiKey::Produce,
            11,
            i,
            &produce(0, &[(0, records)]),
        ));
    }
    burst.extend(request_frame(ApiKey::ApiVersions, 3, 100, &api_versions()));
    burst.extend(request_frame(ApiKey::Fetch, 12, 101, &fetch_all()));
    stream.write_all(&burst).expect("write the burst");
    let ResponseKind::ApiVersions(r) = read_response(&mut stream, ApiKey::ApiVersions, 100) else {
        unreachable!()
    };
    assert_eq!(r.error_code, 0);
    let ResponseKind::Fetch(r) = read_response(&mut stream, ApiKey::Fetch, 101) else {
        unreachable!()
    };
    let expected: Vec<(i64, String)> = (0..PRODUCES)
        .map(|i| (i64::from(i), format!("silent-{i}")))
        .collect();
    assert_eq!(
        records_of(r.responses[0].partitions[0].records.clone()),
        expected
    );
}

// Goal: an acks=0 produce that fails in fsync mode closes the connection (Kafka's only way to
// tell an acks=0 client), but only after the answers of the requests before it, and a request
// after it is not answered. Fails if the close overtakes earlier answers or is lost.
#[test]
fn failed_acks0_produce_closes_after_earlier_answers() {
    let runnel = Runnel::start("");
    let _log = LogOnFailure(&runnel);
    let mut stream = runnel.connect();
    create_fsync_topic(&mut stream, 1);
    let mut burst = Vec::new();
    burst.extend(request_frame(
        ApiKey::Produce,
        11,
        1,
        &produce(1, &[(0, batch(&["before"]))]),
    ));
    // Partition 0 goes to the group commit; partition 7 does not exist.
    let half_bad = produce(0, &[(0, batch(&["ok"])), (7, batch(&["nowhere"]))]);
    burst.extend(request_frame(ApiKey::Produce, 11, 2, &half_bad));
    burst.extend(request_frame(ApiKey::ApiVersions, 3, 3, &api_versions()));
    stream.write_all(&burst).expect("write the burst");
    let ResponseKind::Produce(r) = read_response(&mut stream, ApiKey::Produce, 1) else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(
        read_frame(&mut stream).is_none(),
        "the connection stayed open after a failed acks=0 produce"
    );
}

// ---- under strace: group commit across pipelined requests ----

// Goal: group commit covers pipelined requests. 50 acks=1 produces to one fsync-mode partition,
// written at once on one connection, cost at most half as many fsyncs of the `.log` as
// requests, and (under strace) no answer is written before an fsync that started after its
// batch was written. Every fsync takes 10 ms more (`FSYNC_DELAY_US`), so the count does not
// depend on this machine's disk; with `PIPELINED_REQUESTS_MAX` = 5 it is 20 (rounds of 1 and 4
// alternate). Fails if the connection waits for each produce's fsync before reading the next
// request (one fsync per request), or if an answer overtakes its fsync.
#[test]
fn pipelined_produces_share_fsyncs_and_are_answered_after_them() {
    const REQUESTS: i32 = 50;
    let Some(traced) = start_traced(Some(FSYNC_DELAY_US)) else {
        require_strace("the group-commit check");
        return;
    };
    let mut stream = traced.connect();
    create_fsync_topic(&mut stream, 1);
    let mut burst = Vec::new();
    for i in 0..REQUESTS {
        let records = batch(&[format!("r{i}")]);
        burst.extend(request_frame(
            ApiKey::Produce,
            11,
            i,
            &produce(1, &[(0, records)]),
        ));
    }
    stream.write_all(&burst).expect("write the burst");
    for i in 0..REQUESTS {
        let ResponseKind::Produce(r) = read_response(&mut stream, ApiKey::Produce, i) else {
            unreachable!()
        };
        let answer = &r.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        assert_eq!(answer.base_offset, i64::from(i));
    }
    drop(stream);
    let trace = traced.stop();
    let log_file = format!("/{TOPIC}-0/00000000000000000000.log>");
    let mut audit = Audit::default();
    for line in trace.lines() {
        audit.line(line, &log_file);
    }
    eprintln!("{} fsyncs for {REQUESTS} pipelined produces", audit.fsyncs);
    assert_eq!(
        audit.log_writes, REQUESTS as u64,
        "one write of {log_file} per batch"
    );
    assert_eq!(
        audit.answers, REQUESTS as u64,
        "one socket write per answer"
    );
    assert!(
        audit.early_answers.is_empty(),
        "answers sent before their batch was fsynced:\n{}",
        audit.early_answers.join("\n")
    );
    assert!(
        (1..=REQUESTS as u64 / 2).contains(&audit.fsyncs),
        "{} fsyncs of {log_file} for {REQUESTS} pipelined produces",
        audit.fsyncs
    );
}
