//! Log compaction over the wire: a compacted topic refuses keyless records with Kafka's record
//! errors, and `__consumer_offsets` is cleaned by the cleaner threads, after which a restart
//! still loads the latest committed offsets from the compacted log.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn produce(topic: &str, records: bytes::Bytes) -> RequestKind {
    produce_request(topic, -1, 5000, &[(0, records)])
}

#[test]
fn keyless_records_to_a_compacted_topic_get_invalid_record_with_record_errors() {
    // Kafka's LogValidator: INVALID_RECORD (87), one record error per keyless record, and the
    // summary message; nothing is appended.
    let runnel = Runnel::start("");
    let mut s = runnel.connect();
    create_topic(&mut s, "compacted", 1, &[("cleanup.policy", "compact")]);
    let ResponseKind::Produce(r) = call(
        &mut s,
        ApiKey::Produce,
        9,
        &produce("compacted", batch(&["a", "b"])),
    ) else {
        panic!("not a Produce response")
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87);
    let one = "Compacted topic cannot accept message without key in topic partition compacted-0";
    let errors: Vec<(i32, String)> = p
        .record_errors
        .iter()
        .map(|e| {
            let message = e.batch_index_error_message.as_ref().map(|m| m.to_string());
            (e.batch_index, message.unwrap_or_default())
        })
        .collect();
    assert_eq!(errors, vec![(0, one.to_owned()), (1, one.to_owned())]);
    assert_eq!(
        p.error_message.as_ref().map(|m| m.to_string()),
        Some(format!("One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=0, message='{one}'), RecordError(batchIndex=1, message='{one}')]"))
    );
    assert_eq!(p.base_offset, -1);
}

fn commit(s: &mut std::net::TcpStream, group: &str, offset: i64) {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) = call(
        s,
        ApiKey::OffsetCommit,
        8,
        &RequestKind::OffsetCommit(request),
    ) else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

fn fetch(s: &mut std::net::TcpStream, group: &str) -> i64 {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::OffsetFetch(r) = call(
        s,
        ApiKey::OffsetFetch,
        7,
        &RequestKind::OffsetFetch(request),
    ) else {
        panic!("not an OffsetFetch response")
    };
    r.topics[0].partitions[0].committed_offset
}

/// Total bytes of the `.log` files of every `__consumer_offsets` partition.
fn offsets_log_bytes(data: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(data).unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("__consumer_offsets-")
        {
            continue;
        }
        // The cleaner swaps segments while this runs: a file (or the whole listing) may be gone
        // by the time it is looked at, and then counts for nothing.
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in files.flatten() {
            if file.file_name().to_string_lossy().ends_with(".log") {
                total += file.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

#[test]
fn consumer_offsets_are_compacted_and_reload_after_a_restart() {
    // `__consumer_offsets` is compact: with segments rolling every 50 ms, the cleaner keeps only
    // each group's latest commit, the log shrinks, and after a restart the coordinator replays
    // the compacted log (offset gaps, empty batches) to the latest committed offsets.
    // The cleaner runs once a second: each pass then shrinks ~20 dirty segments at once, far
    // more than the commits add between two samples, so the log is seen shrinking. (Passes
    // every 50 ms cleaned one small segment each, which steady commits could outgrow.)
    let configs = "\"log.roll.ms\" = 50\n\"log.cleaner.backoff.ms\" = 1000\n\"log.cleaner.min.cleanable.ratio\" = 0.01\n";
    let runnel = Runnel::start(configs);
    let mut s = runnel.connect();
    create_topic(&mut s, "t", 1, &[]);
    let groups = ["g-a", "g-b", "g-c"];
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peak = 0;
    loop {
        for _ in 0..20 {
            last += 1;
            for group in groups {
                commit(&mut s, group, last);
            }
        }
        std::thread::sleep(Duration::from_millis(60));
        let bytes = offsets_log_bytes(&runnel.data_dir());
        peak = peak.max(bytes);
        if runnel.log().contains("cleaned log") && last >= 200 && bytes < peak {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never compacted; log:\n{}",
            runnel.log()
        );
    }
    for group in groups {
        assert_eq!(fetch(&mut s, group), last);
    }
    drop(s);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, configs);
    let mut s = runnel.connect();
    for group in groups {
        assert_eq!(fetch(&mut s, group), last, "after restart");
    }
}

/// Names of the broker process's log cleaner threads, from /proc.
fn cleaner_threads(runnel: &Runnel) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", runnel.child.id()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("log-cleaner"))
        .collect();
    names.sort();
    names
}

#[test]
fn log_cleaner_threads_follow_a_dynamic_config_change() {
    // log.cleaner.threads set cluster-wide at runtime starts or stops cleaner threads, as
    // Kafka's cleaner reconfiguration does.
    let runnel = Runnel::start("\"log.cleaner.backoff.ms\" = 50\n");
    // The broker accepts connections (its listeners are bound) before its cleaner thread has
    // started and named itself, so even the first check waits.
    let wait_for = |want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while cleaner_threads(&runnel) != want {
            assert!(
                Instant::now() < deadline,
                "threads {:?}",
                cleaner_threads(&runnel)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(&["log-cleaner-0"]);
    let mut s = runnel.connect();
    let set_threads = |s: &mut std::net::TcpStream, n: &str| {
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("log.cleaner.threads"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(n.to_owned()))),
                ]),
        ]);
        let ResponseKind::IncrementalAlterConfigs(r) = call(
            s,
            ApiKey::IncrementalAlterConfigs,
            1,
            &RequestKind::IncrementalAlterConfigs(request),
        ) else {
            panic!("not an IncrementalAlterConfigs response")
        };
        assert_eq!(
            r.responses[0].error_code, 0,
            "{:?}",
            r.responses[0].error_message
        );
    };
    set_threads(&mut s, "2");
    wait_for(&["log-cleaner-0", "log-cleaner-1"]);
    set_threads(&mut s, "1");
    wait_for(&["log-cleaner-0"]);
}
