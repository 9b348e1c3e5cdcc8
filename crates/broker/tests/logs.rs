//! The broker's log output as an operator sees it: stderr redirected to a file (never a
//! terminal here), in the default text format and in `json`; one line per notable event.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

const JSON: &str = "\"runnel.log.format\" = \"json\"\n\"group.initial.rebalance.delay.ms\" = 0\n";

/// Every stderr line as JSON; panics naming the first line that is not one object.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => panic!("stderr line is not a JSON object: {line:?}\nlog:\n{log}"),
        })
        .collect()
}

/// The lines whose message is `message`.
fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// Waits (the log is written asynchronously to the request's answer) until `pred` holds for
/// the broker's JSON lines, and returns them.
fn wait_for_json(runnel: &Runnel, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = json_lines(&runnel.log());
        if pred(&lines) {
            return lines;
        }
        if Instant::now() > deadline {
            panic!("no {what} in the log:\n{}", runnel.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// A runnel started directly (not through `Runnel`) with `args`, stderr to a file and
/// `NO_COLOR` removed from its environment, so the colour decision is runnel's own.
struct Direct {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Direct {
    fn start(args: &[&str]) -> Direct {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("stderr")).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
            .env_remove("NO_COLOR")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn runnel");
        let mut direct = Direct { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !direct.log().contains("runnel is ready") {
            assert!(Instant::now() < deadline, "not ready:\n{}", direct.log());
            assert!(
                direct.child.try_wait().expect("try_wait").is_none(),
                "exited:\n{}",
                direct.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        direct
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn connect(&self) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Redirected to a file, the default text log carries no ANSI escapes even without NO_COLOR
// (it used to colour everything), and still says what happened.
#[test]
fn text_log_to_a_file_has_no_colour() {
    let runnel = Direct::start(&[]);
    let mut s = runnel.connect();
    create_topic(&mut s, "plain", 2, &[]);
    let log = runnel.log();
    assert!(log.contains("starting runnel"), "{log}");
    assert!(log.contains("topic created"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escape in a redirected log:\n{log:?}"
    );
}

// With `runnel.log.format = "json"`, every line is one JSON object with the fixed keys; the
// startup summary names the node, data dir and listeners; topic changes each get a line.
#[test]
fn json_log_lines_and_topic_events() {
    // Secrets in the config file (an inline private key, a JAAS password): accepted, but never
    // logged, whatever the summary or the warnings about unused keys say.
    let secrets = format!(
        "{JSON}\"ssl.keystore.type\" = \"PEM\"\n\"ssl.keystore.key\" = \"-----BEGIN PRIVATE KEY-----\\nSECRETKEYBYTES\\n-----END PRIVATE KEY-----\"\n\"ssl.keystore.certificate.chain\" = \"-----BEGIN CERTIFICATE-----\\nCERTBYTES\\n-----END CERTIFICATE-----\"\n\"sasl.jaas.config\" = \"x required password=\\\"hunter2secret\\\";\"\n"
    );
    let runnel = Runnel::start(&secrets);
    let mut s = runnel.connect();
    create_topic(&mut s, "events", 3, &[("retention.ms", "60000")]);
    let lines = wait_for_json(&runnel, "topic created", |l| {
        !with_message(l, "topic created").is_empty()
    });
    assert!(!runnel.log().contains("\x1b["));
    // The keys were read (the unused one is warned about by name).
    assert!(
        runnel.log().contains("sasl.jaas.config"),
        "{}",
        runnel.log()
    );
    for secret in ["SECRETKEYBYTES", "hunter2secret"] {
        assert!(
            !runnel.log().contains(secret),
            "{secret} logged:\n{}",
            runnel.log()
        );
    }
    for line in &lines {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line[key].is_string(), "{key} missing in {line}");
        }
        assert!(line["fields"].is_object(), "fields missing in {line}");
    }

    let summary = with_message(&lines, "starting runnel");
    assert_eq!(summary.len(), 1, "{lines:?}");
    let fields = &summary[0]["fields"];
    assert_eq!(fields["node_id"], 1);
    assert_eq!(
        fields["data_dir"],
        runnel.data_dir().display().to_string().as_str()
    );
    let listeners = fields["listeners"].as_str().expect("listeners");
    assert!(
        listeners.contains(&format!("127.0.0.1:{}", runnel.port)),
        "{listeners}"
    );
    assert_eq!(summary[0]["level"], "INFO");

    let recovered = with_message(&lines, "partition logs recovered");
    assert_eq!(recovered.len(), 1, "{lines:?}");
    assert_eq!(recovered[0]["fields"]["partitions"], 0);

    let created = with_message(&lines, "topic created");
    assert_eq!(created.len(), 1, "{lines:?}");
    assert_eq!(created[0]["fields"]["topic"], "events");
    assert_eq!(created[0]["fields"]["partitions"], 3);
    assert_eq!(created[0]["fields"]["configs"], "retention.ms=60000");

    // More partitions, a config change, a delete: one line each.
    let ResponseKind::CreatePartitions(r) = call(
        &mut s,
        ApiKey::CreatePartitions,
        3,
        &RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name("events"))
                        .with_count(5)
                        .with_assignments(None),
                ])
                .with_timeout_ms(5000),
        ),
    ) else {
        panic!("not a CreatePartitions response")
    };
    assert_eq!(r.results[0].error_code, 0);
    let ResponseKind::IncrementalAlterConfigs(r) = call(
        &mut s,
        ApiKey::IncrementalAlterConfigs,
        1,
        &RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes("events"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(str_bytes("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(str_bytes("120000"))),
                    ]),
            ]),
        ),
    ) else {
        panic!("not an IncrementalAlterConfigs response")
    };
    assert_eq!(r.responses[0].error_code, 0);
    let ResponseKind::DeleteTopics(r) = call(
        &mut s,
        ApiKey::DeleteTopics,
        6,
        &RequestKind::DeleteTopics(
            DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name("events")))])
                .with_timeout_ms(5000),
        ),
    ) else {
        panic!("not a DeleteTopics response")
    };
    assert_eq!(r.responses[0].error_code, 0);
    let lines = wait_for_json(&runnel, "topic deleted", |l| {
        !with_message(l, "topic deleted").is_empty()
    });
    let added = with_message(&lines, "partitions added");
    assert_eq!(added.len(), 1, "{lines:?}");
    assert_eq!(added[0]["fields"]["added"], 2);
    assert_eq!(added[0]["fields"]["partitions"], 5);
    let changed = with_message(&lines, "topic config changed");
    assert_eq!(changed.len(), 1, "{lines:?}");
    assert_eq!(changed[0]["fields"]["configs"], "retention.ms=120000");
    let deleted = with_message(&lines, "topic deleted");
    assert_eq!(deleted.len(), 1, "{lines:?}");
    assert_eq!(deleted[0]["fields"]["topic"], "events");
}

/// Sets the root logger level through IncrementalAlterConfigs on BROKER_LOGGER `1`.
fn set_root_level(s: &mut std::net::TcpStream, level: &str) {
    let ResponseKind::IncrementalAlterConfigs(r) = call(
        s,
        ApiKey::IncrementalAlterConfigs,
        1,
        &RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(8)
                    .with_resource_name(str_bytes("1"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(str_bytes("root"))
                            .with_config_operation(0)
                            .with_value(Some(str_bytes(level))),
                    ]),
            ]),
        ),
    ) else {
        panic!("not an IncrementalAlterConfigs response")
    };
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0]);
}

// The BROKER_LOGGER level change still works with JSON output: at WARN the INFO "topic
// created" line is filtered out, back at INFO it appears again. (The publisher logs before
// CreateTopics answers, so the absence is checked after the answer.)
#[test]
fn runtime_level_change_applies_to_json() {
    let runnel = Runnel::start(JSON);
    let mut s = runnel.connect();
    let created = |runnel: &Runnel, topic: &str| {
        json_lines(&runnel.log())
            .iter()
            .filter(|l| l["message"] == "topic created" && l["fields"]["topic"] == topic)
            .count()
    };
    set_root_level(&mut s, "WARN");
    create_topic(&mut s, "quiet", 1, &[]);
    assert_eq!(created(&runnel, "quiet"), 0, "{}", runnel.log());
    set_root_level(&mut s, "INFO");
    create_topic(&mut s, "loud", 1, &[]);
    assert_eq!(created(&runnel, "loud"), 1, "{}", runnel.log());
}

// `--log-format json` on the command line gives the same JSON lines.
#[test]
fn log_format_flag() {
    let runnel = Direct::start(&["--log-format", "json"]);
    let lines = json_lines(&runnel.log());
    assert_eq!(with_message(&lines, "starting runnel").len(), 1);
    assert_eq!(with_message(&lines, "runnel is ready").len(), 1);
}

// A startup failure (the port is taken) is still JSON lines only, with the error at ERROR.
#[test]
fn json_startup_failure_stays_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-format=json")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run runnel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = json_lines(&stderr);
    assert!(
        lines.iter().any(|l| l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("binding listener"))),
        "{stderr}"
    );
}

fn join(s: &mut std::net::TcpStream, member_id: &str) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str_bytes(member_id))
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(str_bytes("range"))
        .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]);
    let ResponseKind::JoinGroup(r) =
        call(s, ApiKey::JoinGroup, 9, &RequestKind::JoinGroup(request))
    else {
        panic!("not a JoinGroup response")
    };
    r
}

// A classic group forming (join, then the leader's sync) logs one "group rebalanced" line
// with its generation and members; a KIP-848 consumer group joining logs its epochs.
#[test]
fn group_rebalances_are_logged() {
    let runnel = Runnel::start(JSON);
    let mut s = runnel.connect();
    create_topic(&mut s, "t", 2, &[]);
    // FindCoordinator creates __consumer_offsets; retry until the coordinator is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ResponseKind::FindCoordinator(r) = call(
            &mut s,
            ApiKey::FindCoordinator,
            4,
            &RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes("g")]),
            ),
        ) else {
            panic!("not a FindCoordinator response")
        };
        if r.coordinators[0].error_code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no coordinator: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = join(&mut s, "");
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let joined = join(&mut s, &first.member_id);
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(joined.leader, joined.member_id);
    let ResponseKind::SyncGroup(r) = call(
        &mut s,
        ApiKey::SyncGroup,
        5,
        &RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_protocol_type(Some(str_bytes("consumer")))
                .with_protocol_name(Some(str_bytes("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(joined.member_id.clone())
                        .with_assignment(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0])),
                ]),
        ),
    ) else {
        panic!("not a SyncGroup response")
    };
    assert_eq!(r.error_code, 0);
    let lines = wait_for_json(&runnel, "classic rebalance", |l| {
        with_message(l, "group rebalanced")
            .iter()
            .any(|l| l["fields"]["group_type"] == "classic")
    });
    let classic: Vec<_> = with_message(&lines, "group rebalanced")
        .into_iter()
        .filter(|l| l["fields"]["group_type"] == "classic")
        .collect();
    assert_eq!(classic.len(), 1, "{classic:?}");
    let fields = &classic[0]["fields"];
    assert_eq!(fields["group"], "g");
    assert_eq!(fields["generation"], joined.generation_id);
    assert_eq!(fields["members"], 1);
    assert_eq!(fields["protocol"], "range");
    assert_eq!(fields["leader"], joined.member_id.as_str());

    let ResponseKind::ConsumerGroupHeartbeat(hb) = call(
        &mut s,
        ApiKey::ConsumerGroupHeartbeat,
        0,
        &RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes("cg")))
                .with_member_id(str_bytes("m-1"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![name("t")]))
                .with_topic_partitions(Some(vec![])),
        ),
    ) else {
        panic!("not a ConsumerGroupHeartbeat response")
    };
    assert_eq!(hb.error_code, 0, "{hb:?}");
    let lines = wait_for_json(&runnel, "consumer group rebalance", |l| {
        with_message(l, "group rebalanced")
            .iter()
            .any(|l| l["fields"]["group_type"] == "consumer")
    });
    let consumer: Vec<_> = with_message(&lines, "group rebalanced")
        .into_iter()
        .filter(|l| l["fields"]["group_type"] == "consumer")
        .collect();
    let fields = &consumer[0]["fields"];
    assert_eq!(fields["group"], "cg");
    assert_eq!(fields["group_epoch"], hb.member_epoch);
    assert_eq!(fields["assignment_epoch"], hb.member_epoch);
    assert_eq!(fields["members_assigned"], 1);
}

// Restarting after a crash that left garbage at the end of a segment: the recovery summary
// counts the partitions and the bytes cut, and the truncated partition gets its own line. A
// directory of an older topic found under a partition's name is replaced, not "truncated".
#[test]
fn recovery_results_are_summarised() {
    let runnel = Runnel::start(JSON);
    let mut s = runnel.connect();
    create_topic(&mut s, "r", 2, &[]);
    create_topic(&mut s, "other", 1, &[]);
    let ResponseKind::Produce(p) = call(
        &mut s,
        ApiKey::Produce,
        9,
        &RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name("r"))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batch(&["a", "b", "c"]))),
                    ])]),
        ),
    ) else {
        panic!("not a Produce response")
    };
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    drop(s);
    // Killed (no clean shutdown), then a torn write's worth of garbage after the batch.
    let (dir, port) = runnel.into_dir();
    let segment = dir.path().join("data/r-1/00000000000000000000.log");
    let kept = std::fs::metadata(&segment).expect("segment").len();
    assert!(kept > 0);
    // other-0 now holds r-1's files, topic id included: an older topic's directory.
    for entry in std::fs::read_dir(dir.path().join("data/r-1")).expect("r-1") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            dir.path().join("data/other-0").join(entry.file_name()),
        )
        .expect("copy");
    }
    let garbage = [0x5au8; 37];
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .expect("open segment")
        .write_all(&garbage)
        .expect("append garbage");
    std::fs::remove_file(dir.path().join("runnel.log")).expect("old log");

    let runnel = Runnel::start_in(dir, port, JSON);
    let lines = json_lines(&runnel.log());
    let truncated = with_message(&lines, "partition log truncated by recovery");
    assert_eq!(truncated.len(), 1, "{lines:?}");
    assert_eq!(truncated[0]["level"], "WARN");
    assert_eq!(truncated[0]["fields"]["topic"], "r");
    assert_eq!(truncated[0]["fields"]["partition"], 1);
    assert_eq!(truncated[0]["fields"]["bytes_truncated"], garbage.len());
    assert_eq!(
        with_message(
            &lines,
            "partition directory belongs to an older topic id; removing it"
        )
        .len(),
        1,
        "{lines:?}"
    );
    let summary = with_message(&lines, "partition logs recovered");
    assert_eq!(summary.len(), 1, "{lines:?}");
    let fields = &summary[0]["fields"];
    assert_eq!(fields["partitions"], 3);
    assert_eq!(fields["partitions_truncated"], 1);
    assert_eq!(fields["bytes_truncated"], garbage.len());
    assert_eq!(fields["log_bytes"], kept);
    assert!(fields["elapsed_ms"].is_u64());
}

/// Starts runnel with stderr on a pseudo-terminal (util-linux `script`), with `env`, and
/// returns what the terminal showed up to "runnel is ready"; `None` without `script`.
fn terminal_output(env: &[(&str, &str)]) -> Option<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let typescript = dir.path().join("typescript");
    let command = format!(
        "exec {} --listen 127.0.0.1:{port} --data-dir {}",
        env!("CARGO_BIN_EXE_runnel"),
        dir.path().join("data").display()
    );
    let mut script = std::process::Command::new("script");
    script.env_remove("NO_COLOR");
    let mut child = script
        .args(["-q", "-f", "-c", &command])
        .arg(&typescript)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let read = || std::fs::read_to_string(&typescript).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !read().contains("runnel is ready") {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("runnel under script did not get ready:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Killing `script` hangs up the terminal, which ends runnel.
    let _ = child.kill();
    let _ = child.wait();
    Some(read())
}

// On a terminal text logs are coloured (the check above is not vacuous), unless NO_COLOR is
// set.
#[test]
fn colour_on_a_terminal_unless_no_color() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let coloured = terminal_output(&[]).expect("script");
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal:\n{coloured:?}"
    );
    let plain = terminal_output(&[("NO_COLOR", "1")]).expect("script");
    assert!(
        plain.contains("starting runnel") && !plain.contains("\x1b["),
        "colour despite NO_COLOR:\n{plain:?}"
    );
}
