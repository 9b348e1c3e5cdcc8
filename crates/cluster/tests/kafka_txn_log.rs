//! Our `__transaction_state` records against Kafka's own code, run through the cached Kafka
//! jars (`compat-tests/.cache/kafka-libs`, made by compat-tests/run.sh) and a JDK, so ignored
//! by default: `cargo test -p runnel-cluster --test kafka_txn_log -- --ignored`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use runnel_cluster::txn::metadata::TxnTransit;
use runnel_cluster::txn::records;
use runnel_cluster::txn::TxnState;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compiles TxnLogVectors.java against the cached Kafka jars; returns the classpath.
fn compile() -> String {
    let libs = root().join("compat-tests/.cache/kafka-libs");
    assert!(
        libs.is_dir(),
        "{} missing: run compat-tests/run.sh once",
        libs.display()
    );
    let out = std::env::temp_dir().join(format!("txnvec-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let cp = format!("{}/*", libs.display());
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_vectors/TxnLogVectors.java");
    let status = Command::new("javac")
        .args(["-cp", &cp, "-d"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("javac runs");
    assert!(status.success());
    format!("{cp}:{}", out.display())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// Proves the checked-in vectors are still exactly what Kafka's `TransactionLog` writes.
#[test]
#[ignore]
fn checked_in_vectors_are_kafkas() {
    let cp = compile();
    let out = Command::new("java")
        .args(["-cp", &cp, "TxnLogVectors"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_vectors/txn_log_vectors.txt"),
    )
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

// Proves Kafka's `TransactionLog.read` reads every record we write (each state we write, both
// value versions, several topics and partitions, every tagged field) back to the same
// metadata.
#[test]
#[ignore]
fn kafka_reads_our_txn_log() {
    let cp = compile();
    let mut cases = Vec::new();
    let states = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    for (i, state) in states.into_iter().enumerate() {
        for version in [0i16, 1] {
            let partitions: BTreeSet<(String, i32)> = match state {
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort => [
                    ("orders", 0),
                    ("orders", 7),
                    ("__consumer_offsets", 3),
                    ("b", 2),
                ]
                .iter()
                .map(|(t, p)| (t.to_string(), *p))
                .collect(),
                _ => BTreeSet::new(),
            };
            let t = TxnTransit {
                producer_id: 1000 + i as i64,
                prev_producer_id: if i % 2 == 0 { 999 } else { -1 },
                next_producer_id: if state == TxnState::PrepareAbort {
                    2000
                } else {
                    -1
                },
                producer_epoch: [0, 5, i16::MAX, 300, 1, 0][i],
                last_producer_epoch: -1,
                timeout_ms: 60_000 + i as i32,
                state,
                partitions,
                start_ms: if state == TxnState::Empty {
                    -1
                } else {
                    1_700_000_000_000 + i as i64
                },
                last_update_ms: 1_700_000_001_000 + i as i64,
                client_version: if version == 1 && i % 2 == 1 { 2 } else { 0 },
            };
            cases.push((format!("txn-{i}-\u{e9}"), version, t));
        }
    }
    let input: String = cases
        .iter()
        .map(|(id, version, t)| {
            format!(
                "{} {}\n",
                hex(&records::key(id)),
                hex(&records::value(t, *version))
            )
        })
        .collect();
    let mut child = Command::new("java")
        .args(["-cp", &cp, "TxnLogVectors", "read"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), cases.len());
    for ((id, version, t), line) in cases.iter().zip(&lines) {
        // v0 carries no previous/next producer id or client version: Kafka reads its defaults.
        let (prev, next, client) = if *version == 0 {
            (-1, -1, 0)
        } else {
            (t.prev_producer_id, t.next_producer_id, t.client_version)
        };
        let partitions: Vec<String> = {
            let mut v: Vec<String> = t
                .partitions
                .iter()
                .map(|(topic, p)| format!("{topic}-{p}"))
                .collect();
            v.sort();
            v
        };
        let expected = format!(
            "{id} {} {prev} {next} {} {} {} {} {} {client} {}",
            t.producer_id,
            t.producer_epoch,
            t.timeout_ms,
            t.state.id(),
            t.start_ms,
            t.last_update_ms,
            partitions.join(",")
        );
        assert_eq!(line.trim_end(), expected.trim_end(), "v{version}");
    }
}
