//! The admin HTTP listener against the real binary (and, for readiness, in process): what
//! `/metrics` reports after real produce, fetch and commit requests, the consumer lag, the
//! docs table of metric names, `/health` and `/ready`, and the limits on hostile HTTP clients.
//!
//! Kafka has no such endpoint (it exposes JMX), so there is no compat test against it.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::{
    offset_commit_request, ApiKey, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
    RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Commits `offset` for group `g` on `topic`-0 (a simple consumer: no generation).
fn commit(s: &mut TcpStream, topic: &str, offset: i64) {
    let ResponseKind::OffsetCommit(r) = call(
        s,
        ApiKey::OffsetCommit,
        8,
        &RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(offset),
                        ]),
                ]),
        ),
    ) else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

/// Waits until the group coordinator of `g` is available (it creates `__consumer_offsets`).
fn find_coordinator(s: &mut TcpStream) {
    let request = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ResponseKind::FindCoordinator(r) = call(s, ApiKey::FindCoordinator, 4, &request) else {
            panic!("not a FindCoordinator response")
        };
        if r.coordinators[0].error_code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no coordinator for g");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_traffic_errors_and_lag() {
    // Goal: after real requests, /metrics shows the topic's bytes and records in and out, the
    // requests by API and version with their latencies, a produce error by code, the log's
    // size, the group and its lag in offsets and seconds (old records: > 0; caught up: 0).
    let runnel = Runnel::start(&format!(
        "{ADMIN_ON_ANY_PORT}\"offsets.topic.num.partitions\" = 1\n"
    ));
    let admin = runnel.admin_port();
    let mut s = runnel.connect();
    create_topic(&mut s, "m", 1, &[]);

    let before = scrape(admin);
    assert_eq!(
        sample(&before, "runnel_topic_bytes_in_total", "topic=\"m\""),
        Some(0.0)
    );

    // Three records with 2023 timestamps: old, so their lag age is large.
    let records = batch(&["a", "b", "c"]);
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("m", 1, 5000, &[(0, records.clone())]),
    ) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // One produce to a partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3).
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce_request("m", 1, 5000, &[(7, records.clone())]),
    ) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);
    let fetched = read_partition(&mut s, "m", 0);
    assert_eq!(fetched.len(), 3);

    let m = scrape(admin);
    let batch_bytes = records.len() as f64;
    assert_eq!(
        sample(&m, "runnel_topic_bytes_in_total", "topic=\"m\""),
        Some(batch_bytes)
    );
    assert_eq!(
        sample(&m, "runnel_topic_messages_in_total", "topic=\"m\""),
        Some(3.0)
    );
    // read_partition fetched the batch once, then once more at the high watermark (nothing).
    assert_eq!(
        sample(&m, "runnel_topic_bytes_out_total", "topic=\"m\""),
        Some(batch_bytes)
    );
    assert_eq!(
        sample(&m, "runnel_requests_total", "api=\"Produce\",version=\"9\""),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "runnel_requests_total", "api=\"Fetch\",version=\"12\""),
        Some(2.0)
    );
    assert_eq!(
        sample(&m, "runnel_request_total_seconds_count", "api=\"Produce\""),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "runnel_request_local_seconds_bucket",
            "le=\"+Inf\",api=\"Fetch\""
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "runnel_request_errors_total",
            "api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\",code=\"3\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "runnel_log_size_bytes", "topic=\"m\",partition=\"0\""),
        Some(batch_bytes)
    );
    assert_eq!(
        sample(&m, "runnel_log_segments", "topic=\"m\",partition=\"0\""),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "runnel_log_end_offset", "topic=\"m\",partition=\"0\""),
        Some(3.0)
    );
    assert!(sample(&m, "runnel_connections", "").unwrap() >= 1.0);
    assert!(sample(&m, "runnel_partitions_led", "").unwrap() >= 1.0);

    // A group that consumed one of three records: lag 2, and the oldest unconsumed record
    // (timestamped 2023) is years old.
    find_coordinator(&mut s);
    commit(&mut s, "m", 1);
    let m = scrape(admin);
    let labels = "group=\"g\",topic=\"m\",partition=\"0\"";
    assert_eq!(
        sample(&m, "runnel_consumer_group_committed_offset", labels),
        Some(1.0)
    );
    assert_eq!(sample(&m, "runnel_consumer_group_lag", labels), Some(2.0));
    let age = sample(&m, "runnel_consumer_group_lag_seconds", labels).unwrap();
    let since_2023 = (runnel_broker::clock::now_ms() - 1_700_000_000_000) as f64 / 1000.0;
    assert!(
        age > since_2023 - 60.0 && age <= since_2023 + 60.0,
        "lag age {age} s, records are {since_2023} s old"
    );
    assert_eq!(
        sample(
            &m,
            "runnel_consumer_groups",
            "type=\"classic\",state=\"Empty\""
        ),
        Some(1.0)
    );

    // Caught up: no lag in either unit.
    commit(&mut s, "m", 3);
    let m = scrape(admin);
    assert_eq!(sample(&m, "runnel_consumer_group_lag", labels), Some(0.0));
    assert_eq!(
        sample(&m, "runnel_consumer_group_lag_seconds", labels),
        Some(0.0)
    );
}

/// The metric names of docs/metrics.md's table (first column, in backticks) that a single
/// node exposes (rows marked "quorum nodes only" are checked by the quorum tests).
fn documented_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md");
    text.lines()
        .filter(|line| !line.contains("(quorum nodes only)"))
        .filter_map(|line| line.strip_prefix("| `runnel_"))
        .map(|rest| format!("runnel_{}", rest.split('`').next().unwrap_or_default()))
        .collect()
}

#[test]
fn docs_table_lists_exactly_the_exposed_metrics() {
    // Goal: every family a real broker exposes is in docs/metrics.md's table (under the name
    // a query uses: counters with `_total`), and every documented name is exposed.
    let runnel = Runnel::start(ADMIN_ON_ANY_PORT);
    let m = scrape(runnel.admin_port());
    let exposed: BTreeSet<String> = m
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let name = words.next().expect("name");
            match words.next() {
                Some("counter") => format!("{name}_total"),
                _ => name.to_owned(),
            }
        })
        .collect();
    assert!(exposed.len() > 20, "{m}");
    let documented = documented_names();
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exposed).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "exposed but not in docs/metrics.md: {undocumented:?}; documented but not exposed: {missing:?}"
    );
}

#[test]
fn routes_and_hostile_requests() {
    // Goal: /health and /ready answer, unknown paths are 404, other methods 405, a request
    // with a body or an oversized head is refused, a client that never finishes its head is
    // cut off, and the connection limit holds further clients until a slot frees — while the
    // Kafka listener keeps serving.
    let runnel = Runnel::start(&format!(
        "{ADMIN_ON_ANY_PORT}\"runnel.admin.connections.max\" = 2\n"
    ));
    let admin = runnel.admin_port();
    assert_eq!(http_get(admin, "/health"), (200, "ok\n".into()));
    assert_eq!(http_get(admin, "/ready"), (200, "ready\n".into()));
    assert_eq!(http_get(admin, "/nope").0, 404);
    assert_eq!(http_get(admin, "/metrics/x").0, 404);
    let post = http_raw(
        admin,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(http_status_and_body(&post).0, 405, "{post}");
    let with_body = http_raw(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
    );
    assert_eq!(http_status_and_body(&with_body).0, 413, "{with_body}");
    // A head larger than the 8 KiB cap: refused (431) without the server buffering it. The
    // server may close with the client's excess unread, which resets the connection and can
    // lose the 431 on its way: then no answer at all, and never a served request.
    let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = http_raw(admin, &huge);
    assert!(
        matches!(http_status_and_body(&answer).0, 431 | 0),
        "{answer}"
    );
    assert_eq!(http_get(admin, "/health").0, 200);

    // A client that sends half a head is cut off after the header read timeout (5 s).
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", admin)).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(b"GET /health HTTP/1.1\r\n").expect("write");
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "cut off after {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&rest).contains("ok\n"));

    // Two idle connections hold both slots: a third client is not answered until one goes.
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", admin)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(("127.0.0.1", admin)).expect("connect (backlog)");
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    third
        .set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert!(
        third.read(&mut buf).is_err(),
        "answered beyond runnel.admin.connections.max"
    );
    // Meanwhile the Kafka listener serves.
    let mut s = runnel.connect();
    create_topic(&mut s, "still-serving", 1, &[]);
    drop(idle);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert_eq!(
        http_status_and_body(&String::from_utf8_lossy(&answer)),
        (200, "ok\n".into())
    );
}

#[test]
fn admin_listener_can_be_turned_off_and_a_taken_address_stops_startup() {
    // Goal: `runnel.admin.listener = ""` runs without it; the default address in use only
    // warns; a configured address in use is a startup error naming the key, not a silent
    // broker without metrics.
    let runnel = Runnel::start("\"runnel.admin.listener\" = \"\"\n");
    assert!(
        runnel.log().contains("admin listener off"),
        "{}",
        runnel.log()
    );
    drop(runnel);

    // The default address taken (by us, or by another broker if we could not take it): the
    // broker starts anyway, saying why it has no admin listener.
    let hold = std::net::TcpListener::bind(runnel_broker::admin::DEFAULT_LISTENER);
    let runnel = Runnel::start("");
    if hold.is_ok() {
        assert!(
            runnel
                .log()
                .contains("cannot bind the default admin listener"),
            "{}",
            runnel.log()
        );
    }
    drop(runnel);
    drop(hold);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("run runnel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("runnel.admin.listener"), "{stderr}");
}

#[test]
fn ready_follows_the_broker_and_shutdown() {
    // Goal: before the broker is open /health is 200 while /ready and /metrics are 503; once
    // it is open both answer 200; once shutdown begins /ready is 503 again.
    use runnel_broker::admin::{serve, AdminState};
    use runnel_broker::config::BrokerConfig;
    use runnel_broker::state::Broker;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = AdminState::new();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    runtime.spawn(serve(listener, std::sync::Arc::clone(&state), 4));

    assert_eq!(http_get(port, "/health").0, 200);
    assert_eq!(http_get(port, "/ready").0, 503);
    assert_eq!(http_get(port, "/metrics").0, 503);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(config, ("localhost".into(), 9092)).expect("open broker");
    state.broker_open(&broker);
    // Open but not yet serving clients (a quorum node waiting to be unfenced): metrics
    // answer, readiness does not.
    assert_eq!(http_get(port, "/ready").0, 503);
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    state.serving();
    assert_eq!(http_get(port, "/ready").0, 200);

    state.shutting_down();
    assert_eq!(http_get(port, "/ready").0, 503);
    // Serving again after shutdown began (a late unfencing) does not make it ready.
    state.serving();
    assert_eq!(http_get(port, "/ready").0, 503);
    assert_eq!(http_get(port, "/health").0, 200);
    broker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_work_is_capped_per_scrape() {
    // Goal: a scrape computes the lag of at most its limit of committed offsets and counts
    // the rest as skipped.
    use runnel_broker::admin::lag;
    use runnel_broker::config::BrokerConfig;
    use runnel_broker::state::Broker;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    config.groups.offsets_topic_num_partitions = 1;
    let broker = Broker::open(config, ("localhost".into(), 9092)).expect("open broker");
    call_handler(
        &broker,
        ApiKey::CreateTopics,
        7,
        create_topics_request("c", 3, &[]),
    )
    .await;
    let find = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ResponseKind::FindCoordinator(r) =
            call_handler(&broker, ApiKey::FindCoordinator, 4, find.clone()).await
        else {
            panic!("not a FindCoordinator response")
        };
        if r.coordinators[0].error_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no coordinator for g");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let commit = |topic: &str, partitions: &[i32]| {
        RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|p| {
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(0)
                                })
                                .collect(),
                        ),
                ]),
        )
    };
    let ResponseKind::OffsetCommit(r) =
        call_handler(&broker, ApiKey::OffsetCommit, 8, commit("c", &[0, 1, 2])).await
    else {
        panic!("not an OffsetCommit response")
    };
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    let now = runnel_broker::clock::now_ms();
    let all = tokio::task::block_in_place(|| lag::compute(&broker, now, 10));
    assert_eq!(all.partitions.len(), 3, "{all:?}");
    assert_eq!(all.skipped, 0);
    assert!(all
        .partitions
        .iter()
        .all(|p| p.topic == "c" && p.lag_offsets == 0 && p.lag_seconds == 0.0));
    let capped = tokio::task::block_in_place(|| lag::compute(&broker, now, 2));
    assert_eq!(capped.partitions.len(), 2, "{capped:?}");
    assert_eq!(capped.skipped, 1);
    broker.shutdown();
}
