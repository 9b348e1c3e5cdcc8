//! Our transaction files read by Kafka's own `DumpLogSegments` (`kafka-dump-log`): segments
//! holding transactional and control batches, and `.txnindex` files. Needs a JDK and the Kafka
//! jars cached by compat-tests/run.sh (`compat-tests/.cache/kafka-libs`), so ignored by
//! default: `cargo test -p runnel-storage --test kafka_txn_files -- --ignored`.

use std::path::{Path, PathBuf};
use std::process::Command;

use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};
use runnel_storage::{LogConfig, PartitionLog, TxnMarker, TxnResult};

const TOPIC: [u8; 16] = [3; 16];

fn kafka_libs() -> PathBuf {
    let libs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../compat-tests/.cache/kafka-libs");
    assert!(
        libs.is_dir(),
        "{} missing: run compat-tests/run.sh once",
        libs.display()
    );
    libs
}

/// `kafka-dump-log --deep-iteration --print-data-log --files <files>`; its stdout.
fn dump_log(files: &[PathBuf]) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let out = Command::new("java")
        .arg("-cp")
        .arg(format!("{}/*", kafka_libs().display()))
        .arg("org.apache.kafka.tools.DumpLogSegments")
        .args(["--deep-iteration", "--print-data-log", "--files"])
        .arg(files.join(","))
        .output()
        .expect("java runs");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("Exception") && !stderr.contains("Exception"),
        "{stdout}\n{stderr}"
    );
    stdout
}

fn batch(pid: i64, epoch: i16, seq: i32, transactional: bool, values: &[&str]) -> Vec<u8> {
    encode_uncompressed_batch(&BatchSpec {
        attributes: if transactional { 0x10 } else { 0 },
        base_timestamp: 1_700_000_000_000,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records: values
            .iter()
            .map(|v| RecordSpec {
                key: Some(b"key"),
                value: Some(v.as_bytes()),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
}

fn marker(pid: i64, epoch: i16, coordinator_epoch: i32, result: TxnResult) -> TxnMarker {
    TxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch,
        result,
        transaction_version: 0,
    }
}

// Proves Kafka decodes our control batches (COMMIT and ABORT markers with their coordinator
// epochs), finds every batch of a segment holding them valid, and reads our `.txnindex`
// entries and producer snapshot (CRC included) field by field.
#[test]
#[ignore]
fn kafka_dump_log_reads_markers_and_txn_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("txn-0");
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.clone(), TOPIC, config).unwrap();
    let now = 1_700_000_000_000;
    let append = |log: &mut PartitionLog, b: Vec<u8>| {
        log.append_as_leader(b.into(), 5, now).unwrap();
    };
    append(&mut log, batch(-1, -1, -1, false, &["plain"])); // 0
    append(&mut log, batch(1000, 2, 0, true, &["t1", "t2"])); // 1-2
    append(&mut log, batch(2000, 0, 0, true, &["u3"])); // 3
    log.append_txn_marker(&marker(1000, 2, 17, TxnResult::Abort), 5, now)
        .unwrap(); // 4
    log.append_txn_marker(&marker(2000, 0, 17, TxnResult::Commit), 5, now)
        .unwrap(); // 5
    append(&mut log, batch(3000, 4, 9, true, &["open"])); // 6, left open
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    log.close().unwrap();

    let segment = dir.join("00000000000000000000.log");
    let txn_index = dir.join("00000000000000000000.txnindex");
    // The clean shutdown's producer snapshot, at the log end.
    let snapshot = dir.join("00000000000000000007.snapshot");
    let text = dump_log(&[segment, txn_index, snapshot]);
    eprintln!("{text}");
    assert!(!text.contains("isvalid: false"), "{text}");
    // The markers: control batches of the producers, transactional, with their records.
    assert!(
        text.contains(
            "baseOffset: 4 lastOffset: 4 count: 1 baseSequence: -1 lastSequence: -1 producerId: 1000 producerEpoch: 2 partitionLeaderEpoch: 5 isTransactional: true isControl: true"
        ),
        "{text}"
    );
    assert!(
        text.contains("| offset: 4 ") && text.contains("endTxnMarker: ABORT coordinatorEpoch: 17"),
        "{text}"
    );
    assert!(
        text.contains("endTxnMarker: COMMIT coordinatorEpoch: 17"),
        "{text}"
    );
    // The snapshot, CRC checked by Kafka's `readSnapshot`: every producer's last batch, epochs
    // and the open transaction.
    for line in [
        "producerId: 1000 producerEpoch: 2 coordinatorEpoch: 17 currentTxnFirstOffset: OptionalLong.empty lastTimestamp: 1700000000000 firstSequence: 0 lastSequence: 1 lastOffset: 2 offsetDelta: 1 timestamp: 1700000000000",
        "producerId: 2000 producerEpoch: 0 coordinatorEpoch: 17 currentTxnFirstOffset: OptionalLong.empty lastTimestamp: 1700000000000 firstSequence: 0 lastSequence: 0 lastOffset: 3 offsetDelta: 0 timestamp: 1700000000000",
        "producerId: 3000 producerEpoch: 4 coordinatorEpoch: -1 currentTxnFirstOffset: OptionalLong[6] lastTimestamp: 1700000000000 firstSequence: 9 lastSequence: 9 lastOffset: 6 offsetDelta: 0 timestamp: 1700000000000",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    // The .txnindex: one aborted transaction, its LSO held by producer 2000's open one.
    assert!(
        text.contains(
            "version: 0 producerId: 1000 firstOffset: 1 lastOffset: 4 lastStableOffset: 3"
        ),
        "{text}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// Proves our marker batch and `.txnindex` entry are byte for byte what Kafka writes
// (`MemoryRecords.withEndTransactionMarker`, `AbortedTxn`), for both marker types.
#[test]
#[ignore]
fn markers_and_txn_index_entries_are_kafkas_bytes() {
    let classes = std::env::temp_dir().join(format!("txnfiles-{}", std::process::id()));
    std::fs::create_dir_all(&classes).unwrap();
    let cp = format!("{}/*", kafka_libs().display());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka/TxnFileVectors.java");
    let status = Command::new("javac")
        .args(["-cp", &cp, "-d"])
        .arg(&classes)
        .arg(&source)
        .status()
        .expect("javac runs");
    assert!(status.success());
    for (result, name) in [(TxnResult::Abort, "ABORT"), (TxnResult::Commit, "COMMIT")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut log = PartitionLog::open(dir.clone(), TOPIC, LogConfig::default()).unwrap();
        let now = 1_700_000_000_123;
        log.append_as_leader(batch(77, 3, 0, true, &["a", "b", "c"]).into(), 9, now)
            .unwrap();
        log.append_txn_marker(&marker(77, 3, 42, result), 9, now)
            .unwrap();
        log.set_high_watermark(4);
        log.close().unwrap();
        let segment = std::fs::read(dir.join("00000000000000000000.log")).unwrap();
        let first_len = 12 + u32::from_be_bytes(segment[8..12].try_into().unwrap()) as usize;
        let ours = &segment[first_len..];
        let out = Command::new("java")
            .arg("-cp")
            .arg(format!("{cp}:{}", classes.display()))
            .arg("TxnFileVectors")
            .args(["3", &now.to_string(), "9", "77", "3", "42", name])
            .args(["77", "0", "3", "4"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        assert_eq!(lines.next().unwrap(), hex(ours), "{name} marker batch");
        let index = std::fs::read(dir.join("00000000000000000000.txnindex")).unwrap_or_default();
        let kafka_entry = lines.next().unwrap();
        if result == TxnResult::Abort {
            assert_eq!(hex(&index), kafka_entry, ".txnindex entry");
        } else {
            assert!(index.is_empty(), "a commit adds no entry");
        }
    }
}
