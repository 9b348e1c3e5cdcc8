//! The admin listener's web console: its JSON endpoints against a real broker (topics with
//! partitions, sizes and configs; groups with members and lag; records browsed at an offset
//! or from the end), its limits and 400s, and its static pages.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

const CONFIG: &str = "\"runnel.admin.listener\" = \"127.0.0.1:0\"\n\"offsets.topic.num.partitions\" = 1\n\"group.initial.rebalance.delay.ms\" = 0\n";

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn get_json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// A record's key, value and headers.
type Keyed<'a> = (&'a [u8], &'a [u8], &'a [(&'a [u8], Option<&'a [u8]>)]);

/// One batch of records with timestamps `base + i`.
fn keyed_batch(records: &[Keyed<'_>], base: i64) -> Bytes {
    let spec = runnel_protocol::batch::BatchSpec {
        records: records
            .iter()
            .enumerate()
            .map(
                |(i, (key, value, headers))| runnel_protocol::batch::RecordSpec {
                    timestamp_delta: i as i64,
                    key: Some(key),
                    value: Some(value),
                    headers: headers.to_vec(),
                },
            )
            .collect(),
        base_timestamp: base,
        ..Default::default()
    };
    runnel_protocol::batch::encode_uncompressed_batch(&spec).into()
}

fn produce(s: &mut TcpStream, topic: &str, partition: i32, batch: Bytes) {
    let ResponseKind::Produce(r) = call(
        s,
        ApiKey::Produce,
        9,
        &produce_request(topic, -1, 5000, &[(partition, batch)]),
    ) else {
        panic!("not a Produce response")
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// Commits `offset` for `group` on `topic`-`partition` (a simple consumer: no generation).
fn commit(s: &mut TcpStream, group: &str, topic: &str, partition: i32, offset: i64) {
    let ResponseKind::OffsetCommit(r) = call(
        s,
        ApiKey::OffsetCommit,
        8,
        &RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(self::s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name(topic))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset),
                        ]),
                ]),
        ),
    ) else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

/// Waits until the coordinator of `group` is available (it creates `__consumer_offsets`).
fn find_coordinator(s: &mut TcpStream, group: &str) {
    let request = RequestKind::FindCoordinator(
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![self::s(group)]),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ResponseKind::FindCoordinator(r) = call(s, ApiKey::FindCoordinator, 4, &request) else {
            panic!("not a FindCoordinator response")
        };
        if r.coordinators[0].error_code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no coordinator for {group}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Joins `group` as a classic consumer (two rounds: MEMBER_ID_REQUIRED first); the member id.
fn join(s: &mut TcpStream, group: &str) -> String {
    let request = |member_id: &str| {
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(self::s(group)))
                .with_session_timeout_ms(30_000)
                .with_rebalance_timeout_ms(30_000)
                .with_member_id(self::s(member_id))
                .with_protocol_type(self::s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(self::s("range"))
                .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]),
        )
    };
    let ResponseKind::JoinGroup(first) = call(s, ApiKey::JoinGroup, 9, &request("")) else {
        panic!("not a JoinGroup response")
    };
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    let ResponseKind::JoinGroup(joined) = call(s, ApiKey::JoinGroup, 9, &request(&member)) else {
        panic!("not a JoinGroup response")
    };
    assert_eq!(joined.error_code, 0, "{joined:?}");
    member
}

/// A broker with topic `orders` (3 partitions, `retention.ms` set): partition 0 holds 5
/// records, partition 1 holds 4 with keys, headers and a binary and a long value, partition 2
/// none. Group `billing` committed 2 on partition 0 and 1 on partition 1, and has one member.
fn populated() -> (Runnel, TcpStream, u16, String) {
    let runnel = Runnel::start(CONFIG);
    let admin = runnel.admin_port();
    let mut s = runnel.connect();
    create_topic(&mut s, "orders", 3, &[("retention.ms", "123456789")]);
    produce(&mut s, "orders", 0, batch(&["a", "b", "c"]));
    produce(&mut s, "orders", 0, batch(&["d", "e"]));
    let long = vec![b'x'; 10_000];
    produce(
        &mut s,
        "orders",
        1,
        keyed_batch(
            &[
                (
                    b"k0",
                    b"hello",
                    &[(b"trace", Some(b"t-0")), (b"empty", None)],
                ),
                (b"k1", &[0xff, 0x00, 0x7f], &[]),
            ],
            1_700_000_000_000,
        ),
    );
    produce(
        &mut s,
        "orders",
        1,
        keyed_batch(
            &[
                (b"k2", &long, &[]),
                (b"k3", b"<b>bold</b>", &[(b"h", Some(b"v"))]),
            ],
            1_700_000_001_000,
        ),
    );
    find_coordinator(&mut s, "billing");
    commit(&mut s, "billing", "orders", 0, 2);
    commit(&mut s, "billing", "orders", 1, 1);
    let member = join(&mut s, "billing");
    (runnel, s, admin, member)
}

#[test]
fn topics_show_partitions_sizes_and_configs() {
    // Goal: /api/topics and /api/topics/{name} show each topic's partition count, records
    // and log sizes (the topic's size is the sum of its partitions'), and its configs with
    // where each value comes from; /api/cluster counts them.
    let (runnel, _s, admin, _) = populated();
    let topics = get_json(admin, "/api/topics");
    let orders = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap_or_else(|| panic!("no orders in {topics}"));
    assert_eq!(orders["partitions"], 3);
    assert_eq!(orders["records"], 9);
    assert_eq!(orders["internal"], false);
    let detail = get_json(admin, "/api/topics/orders");
    let partitions = detail["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 3);
    let high_watermarks: Vec<i64> = partitions
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .collect();
    assert_eq!(high_watermarks, [5, 4, 0]);
    let sizes: Vec<u64> = partitions
        .iter()
        .map(|p| p["size_bytes"].as_u64().unwrap())
        .collect();
    assert!(
        sizes[0] > 0 && sizes[1] > 10_000 && sizes[2] == 0,
        "{sizes:?}"
    );
    assert_eq!(
        orders["size_bytes"].as_u64().unwrap(),
        sizes.iter().sum::<u64>()
    );
    // The on-disk size is what the log says too.
    let dir = runnel.data_dir();
    let on_disk: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy() == "orders-1")
        .flat_map(|e| std::fs::read_dir(e.path()).unwrap().filter_map(Result::ok))
        .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert_eq!(sizes[1], on_disk);
    assert_eq!(partitions[0]["leader"], partitions[0]["replicas"][0]);
    let config = |name: &str| {
        detail["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in configs"))
            .clone()
    };
    assert_eq!(config("retention.ms")["value"], "123456789");
    assert_eq!(config("retention.ms")["source"], "topic");
    assert_eq!(config("cleanup.policy")["value"], "delete");
    assert_eq!(config("cleanup.policy")["source"], "default");
    let cluster = get_json(admin, "/api/cluster");
    assert_eq!(cluster["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["brokers"][0]["port"], runnel.port);
    assert_eq!(cluster["topic_count"], topics["total"]);
    assert!(cluster["group_count"].as_u64().unwrap() >= 1);
    let (status, body) = http_get(admin, "/api/topics/nope");
    assert_eq!(status, 404, "{body}");
}

#[test]
fn groups_show_members_and_lag() {
    // Goal: a group's lag per partition is the high watermark minus its committed offset
    // (5-2 and 4-1), its total their sum, and its member is listed with its client id.
    let (runnel, _s, admin, member) = populated();
    let groups = get_json(admin, "/api/groups");
    let billing = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == "billing")
        .unwrap_or_else(|| panic!("no billing in {groups}"))
        .clone();
    assert_eq!(billing["lag"], 3 + 3);
    assert_eq!(billing["members"], 1);
    assert_eq!(billing["partitions"], 2);
    let detail = get_json(admin, "/api/groups/billing");
    assert_eq!(detail["member_count"], 1);
    assert_eq!(detail["members"][0]["member_id"], member);
    assert_eq!(detail["members"][0]["client_id"], "runnel-test");
    assert_eq!(detail["protocol_type"], "consumer");
    let offsets = detail["offsets"].as_array().unwrap();
    let rows: Vec<(i64, i64, i64, i64)> = offsets
        .iter()
        .map(|o| {
            (
                o["partition"].as_i64().unwrap(),
                o["committed_offset"].as_i64().unwrap(),
                o["high_watermark"].as_i64().unwrap(),
                o["lag"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(0, 2, 5, 3), (1, 1, 4, 3)]);
    assert_eq!(detail["lag"], 6);
    let (status, body) = http_get(admin, "/api/groups/nobody");
    assert_eq!(status, 404, "{body}");
    // Ids are percent-decoded: an id with a space and a slash.
    let mut s = runnel.connect();
    find_coordinator(&mut s, "a b/c");
    commit(&mut s, "a b/c", "orders", 0, 5);
    let odd = get_json(admin, "/api/groups/a%20b%2Fc");
    assert_eq!(odd["group_id"], "a b/c");
    assert_eq!(odd["lag"], 0);
}

#[test]
fn records_are_browsed_at_an_offset_and_from_the_end() {
    // Goal: browsing at an offset returns exactly the records from there (keys, values,
    // headers, timestamps), binary values as hex, long values cut and marked, a tail returns
    // the last ones, and compressed batches are read through.
    let (runnel, _s, admin, _) = populated();
    let page = get_json(
        admin,
        "/api/topics/orders/partitions/1/records?offset=1&limit=2",
    );
    let records = page["records"].as_array().unwrap();
    let offsets: Vec<i64> = records
        .iter()
        .map(|r| r["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2]);
    assert_eq!(page["next_offset"], 3);
    assert_eq!(page["high_watermark"], 4);
    assert_eq!(records[0]["key"]["data"], "k1");
    assert_eq!(records[0]["value"]["encoding"], "hex");
    assert_eq!(records[0]["value"]["data"], "ff007f");
    assert_eq!(records[0]["timestamp"], 1_700_000_000_001i64);
    assert_eq!(records[0]["timestamp_type"], "CreateTime");
    assert_eq!(records[1]["value"]["truncated"], true);
    assert_eq!(records[1]["value"]["size"], 10_000);
    assert_eq!(records[1]["value"]["data"].as_str().unwrap().len(), 4096);
    assert_eq!(records[1]["timestamp"], 1_700_000_001_000i64);

    let first = get_json(
        admin,
        "/api/topics/orders/partitions/1/records?offset=0&limit=1",
    );
    let r = &first["records"][0];
    assert_eq!(first["records"].as_array().unwrap().len(), 1);
    assert_eq!(r["offset"], 0);
    assert_eq!(r["key"]["data"], "k0");
    assert_eq!(r["value"]["encoding"], "utf8");
    assert_eq!(r["value"]["data"], "hello");
    assert_eq!(r["headers"][0]["key"], "trace");
    assert_eq!(r["headers"][0]["value"]["data"], "t-0");
    assert_eq!(r["headers"][1]["key"], "empty");
    assert_eq!(r["headers"][1]["value"]["encoding"], "null");
    assert_eq!(r["timestamp"], 1_700_000_000_000i64);

    let tail = get_json(
        admin,
        "/api/topics/orders/partitions/0/records?from=end&limit=2",
    );
    let values: Vec<&str> = tail["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["d", "e"]);
    // Past the end: nothing; an empty partition: nothing; the default limit covers a page.
    let past = get_json(admin, "/api/topics/orders/partitions/0/records?offset=99");
    assert_eq!(past["records"].as_array().unwrap().len(), 0);
    let empty = get_json(admin, "/api/topics/orders/partitions/2/records?from=end");
    assert_eq!(empty["records"].as_array().unwrap().len(), 0);
    let all = get_json(admin, "/api/topics/orders/partitions/0/records");
    assert_eq!(all["records"].as_array().unwrap().len(), 5);

    // A gzip batch is decompressed for the browser; a seek into its middle starts there.
    let mut s = runnel.connect();
    create_topic(&mut s, "zipped", 1, &[]);
    let plain = keyed_batch(
        &[
            (b"z0", b"one", &[]),
            (b"z1", b"two", &[]),
            (b"z2", b"three", &[]),
        ],
        1_700_000_000_000,
    );
    let limits = runnel_protocol::compression::DecompressLimits::for_max_message_bytes(1 << 20);
    let source = runnel_protocol::batch::BatchRecords::open(&plain, limits).unwrap();
    let gzip = runnel_protocol::batch::rebuild_batch(
        &source,
        &runnel_protocol::batch::Rebuild {
            base_offset: 0,
            partition_leader_epoch: -1,
            codec: runnel_protocol::batch::Compression::Gzip,
            level: None,
            timestamp_type: runnel_protocol::batch::TimestampType::CreateTime,
            log_append_time_ms: 0,
        },
    )
    .unwrap();
    produce(&mut s, "zipped", 0, Bytes::from(gzip));
    let zipped = get_json(admin, "/api/topics/zipped/partitions/0/records?offset=1");
    let values: Vec<(i64, &str)> = zipped["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset"].as_i64().unwrap(),
                r["value"]["data"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(values, [(1, "two"), (2, "three")]);
    assert_eq!(zipped["problem"], Value::Null);
}

#[test]
fn hostile_requests_get_400_and_pages_are_served() {
    // Goal: malformed paths and query strings are refused with 400 (unknown ones 404, other
    // methods 405) and the broker keeps serving; the static pages come with a CSP.
    let (mut runnel, _s, admin, _) = populated();
    for path in [
        "/api/topics/orders/partitions/1/records?limit=0",
        "/api/topics/orders/partitions/1/records?limit=501",
        "/api/topics/orders/partitions/1/records?limit=abc",
        "/api/topics/orders/partitions/1/records?offset=-1",
        "/api/topics/orders/partitions/1/records?offset=99999999999999999999999",
        "/api/topics/orders/partitions/1/records?offset=1&offset=2",
        "/api/topics/orders/partitions/1/records?offset=1&from=end",
        "/api/topics/orders/partitions/1/records?from=begin",
        "/api/topics/orders/partitions/1/records?x=%",
        "/api/topics/orders/partitions/-1/records",
        "/api/topics/orders/partitions/2147483648/records",
        "/api/topics/%ff%fe",
        "/api/topics/%",
        "/api/groups/%zz",
        "/api/cluster?debug=1",
    ] {
        let (status, body) = http_get(admin, path);
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(error["error"].is_string(), "{path}: {body}");
    }
    let long = format!("/api/groups/{}", "x".repeat(5000));
    assert_eq!(http_get(admin, &long).0, 400);
    for path in [
        "/api/nope",
        "/api/topics/nope/partitions/0/records",
        "/api/topics/orders/partitions/7/records",
    ] {
        assert_eq!(http_get(admin, path).0, 404, "{path}");
    }
    let post = http_raw(
        admin,
        b"DELETE /api/topics/orders HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(http_status_and_body(&post).0, 405, "{post}");
    let page = http_raw(admin, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page
        .to_lowercase()
        .contains("content-security-policy: default-src 'none'"));
    assert!(page.contains("/ui/app.js"));
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let answer = http_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}");
        assert!(answer.contains(kind), "{path}");
    }
    assert_eq!(http_get(admin, "/ui/../Cargo.toml").0, 404);
    // Still serving Kafka clients and the console.
    runnel.assert_alive();
    assert!(get_json(admin, "/api/topics")["total"].as_u64().unwrap() >= 1);
}
