//! Restarts of the real binary and Kafka's clean-shutdown marker: a SIGTERM stop closes every
//! log and leaves `.kafka_cleanshutdown`, so the next start opens every log from its indexes
//! and producer snapshot (reading no batches) and keeps every record; that start removes the
//! marker, so a SIGKILL later is recovered as unclean, and fsync-mode records acknowledged
//! before it are all back at their offsets.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;

const TOPIC: &str = "restarted";
const PARTITIONS: i32 = 3;
const MARKER: &str = ".kafka_cleanshutdown";

/// Produces `rounds` acks=all requests of two records to every partition; returns every
/// acknowledged record as (partition, offset, value).
fn produce_rounds(
    stream: &mut std::net::TcpStream,
    rounds: usize,
    tag: &str,
) -> Vec<(i32, i64, String)> {
    let mut acked = Vec::new();
    for r in 0..rounds {
        let values: Vec<Vec<String>> = (0..PARTITIONS)
            .map(|p| (0..2).map(|k| format!("{tag}-r{r}-p{p}-{k}")).collect())
            .collect();
        let batches: Vec<(i32, Bytes)> = values
            .iter()
            .enumerate()
            .map(|(p, v)| (p as i32, batch(v)))
            .collect();
        let request = produce_request(TOPIC, -1, 30_000, &batches);
        let ResponseKind::Produce(response) = call(stream, ApiKey::Produce, 11, &request) else {
            panic!("not a Produce response")
        };
        for answer in &response.responses[0].partition_responses {
            assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
            for (k, v) in values[answer.index as usize].iter().enumerate() {
                acked.push((answer.index, answer.base_offset + k as i64, v.clone()));
            }
        }
    }
    acked
}

/// Every partition's records must be exactly the acknowledged ones, at their offsets.
fn assert_holds_exactly(stream: &mut std::net::TcpStream, acked: &[(i32, i64, String)]) {
    let mut expected: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    for (p, offset, value) in acked {
        expected
            .entry(*p)
            .or_default()
            .insert(*offset, value.clone());
    }
    for p in 0..PARTITIONS {
        let stored: BTreeMap<i64, String> = read_partition(stream, TOPIC, p)
            .into_iter()
            .map(|(o, v)| (o, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        assert_eq!(
            stored,
            expected.remove(&p).unwrap_or_default(),
            "partition {p}"
        );
    }
}

/// SIGTERM, and wait for the clean exit.
fn stop_cleanly(mut runnel: Runnel) -> (tempfile::TempDir, u16) {
    runnel.signal("TERM");
    let status = runnel.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "log:\n{}", runnel.log());
    runnel.into_dir()
}

fn startup_summary(runnel: &Runnel) -> String {
    runnel
        .log()
        .lines()
        .rfind(|l| l.contains("partition logs recovered"))
        .unwrap_or_default()
        .to_string()
}

fn marker(data_dir: &Path) -> bool {
    data_dir.join(MARKER).exists()
}

// A clean stop writes the marker, recovery points and producer snapshots; the next start opens
// every partition from them, keeps every record and removes the marker, and a SIGKILL after
// more produces is then recovered as unclean with nothing acknowledged lost.
#[test]
fn a_clean_restart_reads_no_batches_and_a_later_sigkill_is_recovered() {
    let runnel = Runnel::start("");
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, PARTITIONS, &[("flush.messages", "1")]);
    let mut acked = produce_rounds(&mut stream, 20, "first");
    drop(stream);
    let (dir, port) = stop_cleanly(runnel);
    let data_dir = dir.path().join("data");
    assert!(marker(&data_dir), "a clean stop leaves the marker");
    for p in 0..PARTITIONS {
        let partition_dir = data_dir.join(format!("{TOPIC}-{p}"));
        let recovery_point =
            std::fs::read_to_string(partition_dir.join("recovery-point-offset-checkpoint"))
                .expect("recovery point checkpoint");
        assert_eq!(recovery_point, "0\n40\n", "partition {p}");
        assert!(partition_dir.join("00000000000000000040.snapshot").exists());
    }

    let runnel = Runnel::start_in(dir, port, "");
    let summary = startup_summary(&runnel);
    assert!(summary.contains("clean_shutdown=true"), "{summary}");
    assert!(
        summary.contains(&format!("partitions_from_snapshot={PARTITIONS}")),
        "{summary}"
    );
    assert!(summary.contains("segments_recovered=0"), "{summary}");
    assert!(!marker(&runnel.data_dir()), "the start removes the marker");
    let mut stream = runnel.connect();
    assert_holds_exactly(&mut stream, &acked);
    acked.extend(produce_rounds(&mut stream, 20, "second"));
    // The moment the last answer arrived: no clean shutdown, no flush on the way out.
    runnel.signal("KILL");
    let (dir, port) = runnel.into_dir();

    let runnel = Runnel::start_in(dir, port, "");
    let summary = startup_summary(&runnel);
    assert!(summary.contains("clean_shutdown=false"), "{summary}");
    assert!(summary.contains("partitions_from_snapshot=0"), "{summary}");
    let mut stream = runnel.connect();
    assert_holds_exactly(&mut stream, &acked);
}

// A marker left where the logs do not match it (the files changed after the clean stop) does
// not make the broker trust them: the disagreeing log is recovered, and nothing is lost.
#[test]
fn a_stale_marker_does_not_skip_recovery_of_a_log_that_changed() {
    let runnel = Runnel::start("");
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, PARTITIONS, &[("flush.messages", "1")]);
    let acked = produce_rounds(&mut stream, 10, "first");
    drop(stream);
    let (dir, port) = stop_cleanly(runnel);
    // Garbage appended to one log after the clean stop, as a torn write would leave it.
    let log = dir
        .path()
        .join("data")
        .join(format!("{TOPIC}-1"))
        .join("00000000000000000000.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0x5a; 37]);
    std::fs::write(&log, bytes).unwrap();

    let runnel = Runnel::start_in(dir, port, "");
    let summary = startup_summary(&runnel);
    assert!(
        summary.contains(&format!("partitions_from_snapshot={}", PARTITIONS - 1)),
        "{summary}"
    );
    let mut stream = runnel.connect();
    assert_holds_exactly(&mut stream, &acked);
}
