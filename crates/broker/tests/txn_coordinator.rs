//! The transaction coordinator served over a socket: FindCoordinator for a transactional id,
//! InitProducerId, AddPartitionsToTxn, transactional produce (verified with the coordinator),
//! EndTxn and the markers it leads to, as a read_committed consumer sees them; fencing, the
//! transaction timeout, and a crash between PrepareCommit and the markers.

mod common;

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{call, create_topic, name, Runnel};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

const TOPIC: &str = "txn-out";

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_owned()))
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Retries `f` while it answers one of Kafka's retriable coordinator errors (a shard loading,
/// a producer-id block on its way, the previous transaction's markers still being written).
fn retrying<T>(mut f: impl FnMut() -> (i16, T)) -> (i16, T) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (error, value) = f();
        let retriable = [
            ResponseError::CoordinatorLoadInProgress,
            ResponseError::CoordinatorNotAvailable,
            ResponseError::NotCoordinator,
            ResponseError::ConcurrentTransactions,
        ]
        .iter()
        .any(|e| e.code() == error);
        if !retriable || Instant::now() > deadline {
            return (error, value);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find_coordinator(stream: &mut TcpStream, id: &str) -> i32 {
    let (error, node) = retrying(|| {
        let request = RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![StrBytes::from_string(id.to_owned())]),
        );
        let ResponseKind::FindCoordinator(r) = call(stream, ApiKey::FindCoordinator, 4, &request)
        else {
            panic!("not a FindCoordinator response")
        };
        (r.coordinators[0].error_code, r.coordinators[0].node_id.0)
    });
    assert_eq!(error, 0);
    node
}

/// InitProducerId for `id`: (error, producer id, epoch).
fn init(stream: &mut TcpStream, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
    let (error, (pid, epoch)) = retrying(|| {
        let request = RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(txn_id(id)))
                .with_transaction_timeout_ms(timeout_ms)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        let ResponseKind::InitProducerId(r) = call(stream, ApiKey::InitProducerId, 4, &request)
        else {
            panic!("not an InitProducerId response")
        };
        (r.error_code, (r.producer_id.0, r.producer_epoch))
    });
    (error, pid, epoch)
}

/// AddPartitionsToTxn v3: the error of each partition.
fn add_partitions(
    stream: &mut TcpStream,
    id: &str,
    pid: i64,
    epoch: i16,
    partitions: &[i32],
) -> Vec<i16> {
    let (_, errors) = retrying(|| {
        let request = RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id(id))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name(TOPIC))
                        .with_partitions(partitions.to_vec()),
                ]),
        );
        let ResponseKind::AddPartitionsToTxn(r) =
            call(stream, ApiKey::AddPartitionsToTxn, 3, &request)
        else {
            panic!("not an AddPartitionsToTxn response")
        };
        let errors: Vec<i16> = r.results_by_topic_v3_and_below[0]
            .results_by_partition
            .iter()
            .map(|p| p.partition_error_code)
            .collect();
        (
            errors.iter().copied().find(|&e| e != 0).unwrap_or(0),
            errors,
        )
    });
    errors
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    encode_uncompressed_batch(&BatchSpec {
        attributes: 0x10,
        base_timestamp: 1_000,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records: vec![RecordSpec {
            value: Some(value.as_bytes()),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    })
    .into()
}

/// A transactional Produce v9 (a version-1 client's) of one batch to `partition`: its error.
fn produce(stream: &mut TcpStream, id: &str, partition: i32, batch: Bytes) -> i16 {
    produce_at(stream, 9, id, partition, batch)
}

/// A transactional Produce at `version` of one batch to `partition`: its error.
fn produce_at(stream: &mut TcpStream, version: i16, id: &str, partition: i32, batch: Bytes) -> i16 {
    let RequestKind::Produce(request) =
        common::produce_request(TOPIC, -1, 30_000, &[(partition, batch)])
    else {
        unreachable!()
    };
    let request = RequestKind::Produce(request.with_transactional_id(Some(txn_id(id))));
    let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, version, &request) else {
        panic!("not a Produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

/// EndTxn v4 (a version-1 client's): its error.
fn end_txn(stream: &mut TcpStream, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    retrying(|| {
        let request = RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(txn_id(id))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        );
        let ResponseKind::EndTxn(r) = call(stream, ApiKey::EndTxn, 4, &request) else {
            panic!("not an EndTxn response")
        };
        (r.error_code, ())
    })
    .0
}

/// One Fetch v12 of `partition` from `offset` at `isolation_level`.
fn fetch_once(
    stream: &mut TcpStream,
    partition: i32,
    offset: i64,
    isolation_level: i8,
) -> fetch_response::PartitionData {
    let RequestKind::Fetch(request) = common::fetch_request(TOPIC, partition, offset, 0, 1 << 20)
    else {
        unreachable!()
    };
    let request = RequestKind::Fetch(request.with_isolation_level(isolation_level));
    let ResponseKind::Fetch(r) = call(stream, ApiKey::Fetch, 12, &request) else {
        panic!("not a Fetch response")
    };
    let data = r.responses[0].partitions[0].clone();
    assert_eq!(data.error_code, 0);
    data
}

/// What a consumer of `partition` gets at `isolation_level` once the partition is stable
/// (LSO = HW, every marker written): values in offset order, aborted records and control
/// records dropped as the Java consumer drops them.
fn consume(stream: &mut TcpStream, partition: i32, isolation_level: i8) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let end = loop {
        let data = fetch_once(stream, partition, 0, isolation_level);
        if data.last_stable_offset == data.high_watermark {
            break data.high_watermark;
        }
        assert!(
            Instant::now() < deadline,
            "partition {partition} never became stable (LSO {} < HW {})",
            data.last_stable_offset,
            data.high_watermark
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut aborted: Vec<(i64, i64)> = Vec::new();
    let mut batches = Vec::new();
    let mut offset = 0;
    while offset < end {
        let data = fetch_once(stream, partition, offset, isolation_level);
        for a in data.aborted_transactions.unwrap_or_default() {
            if !aborted.contains(&(a.producer_id.0, a.first_offset)) {
                aborted.push((a.producer_id.0, a.first_offset));
            }
        }
        let mut bytes = data.records.unwrap_or_default();
        let before = offset;
        while let Ok(header) = runnel_protocol::batch::BatchHeader::parse(&bytes) {
            if header.size_bytes() > bytes.len() {
                break;
            }
            offset = header.last_offset() + 1;
            let mut one = bytes.split_to(header.size_bytes());
            batches.push(
                kafka_protocol::records::RecordBatchDecoder::decode(&mut one)
                    .expect("decode a fetched batch"),
            );
        }
        assert!(offset > before, "no progress at {offset}");
    }
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut values = Vec::new();
    for batch in batches {
        for record in batch.records {
            for (pid, first) in &aborted {
                if *first <= record.offset {
                    aborting.insert(*pid);
                }
            }
            if record.control {
                aborting.remove(&record.producer_id);
                aborted.retain(|(pid, first)| {
                    !(*pid == record.producer_id && *first <= record.offset)
                });
                continue;
            }
            if isolation_level == 1
                && record.transactional
                && aborting.contains(&record.producer_id)
            {
                continue;
            }
            let value = record.value.unwrap_or_default();
            values.push(String::from_utf8_lossy(&value).into_owned());
        }
    }
    values
}

/// EndTxn v5 (a version-2 client's): its error and the epoch the producer goes on with.
fn end_txn_v5(stream: &mut TcpStream, id: &str, pid: i64, epoch: i16, commit: bool) -> (i16, i16) {
    retrying(|| {
        let request = RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(txn_id(id))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        );
        let ResponseKind::EndTxn(r) = call(stream, ApiKey::EndTxn, 5, &request) else {
            panic!("not an EndTxn response")
        };
        (r.error_code, r.producer_epoch)
    })
}

/// The value of `name` among `topic`'s configs (DescribeConfigs v4).
fn topic_config(stream: &mut TcpStream, topic: &str, name: &str) -> Option<String> {
    let request =
        RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_owned()))
                .with_configuration_keys(Some(vec![StrBytes::from_string(name.to_owned())])),
        ]));
    let ResponseKind::DescribeConfigs(r) = call(stream, ApiKey::DescribeConfigs, 4, &request)
    else {
        panic!("not a DescribeConfigs response")
    };
    r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == name)
        .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
}

fn describe(stream: &mut TcpStream, id: &str) -> (i16, String) {
    let request = RequestKind::DescribeTransactions(
        DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]),
    );
    let ResponseKind::DescribeTransactions(r) =
        call(stream, ApiKey::DescribeTransactions, 0, &request)
    else {
        panic!("not a DescribeTransactions response")
    };
    let s = &r.transaction_states[0];
    (s.error_code, s.transaction_state.to_string())
}

fn setup(runnel: &Runnel) -> TcpStream {
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, 2, &[]);
    stream
}

// Proves the whole flow of a version-1 client: a committed transaction's records reach
// read_committed consumers on every partition it wrote, an aborted one's never do (while
// read_uncommitted sees both), and the coordinator reports the outcome.
#[test]
fn committed_records_are_read_and_aborted_ones_are_not() {
    commit_then_abort("");
}

// The same in fsync mode for every partition, `__transaction_state` included: the
// coordinator's appends wait for their group-commit round, then carry on from the waiter.
#[test]
fn committed_records_are_read_and_aborted_ones_are_not_in_fsync_mode() {
    commit_then_abort("\"log.flush.interval.messages\" = 1\n");
}

fn commit_then_abort(config: &str) {
    let runnel = Runnel::start(config);
    let mut s = setup(&runnel);
    assert_eq!(find_coordinator(&mut s, "t1"), 1);
    if !config.is_empty() {
        assert_eq!(
            topic_config(&mut s, "__transaction_state", "flush.messages").as_deref(),
            Some("1"),
            "the coordinator's log is in fsync mode"
        );
    }
    let (error, pid, epoch) = init(&mut s, "t1", 60_000);
    assert_eq!(error, 0);
    assert!(pid >= 0);
    assert_eq!(
        add_partitions(&mut s, "t1", pid, epoch, &[0, 1]),
        vec![0, 0]
    );
    assert_eq!(produce(&mut s, "t1", 0, txn_batch(pid, epoch, 0, "a0")), 0);
    assert_eq!(produce(&mut s, "t1", 1, txn_batch(pid, epoch, 0, "a1")), 0);
    assert_eq!(end_txn(&mut s, "t1", pid, epoch, true), 0);

    assert_eq!(add_partitions(&mut s, "t1", pid, epoch, &[0]), vec![0]);
    assert_eq!(produce(&mut s, "t1", 0, txn_batch(pid, epoch, 1, "b0")), 0);
    assert_eq!(end_txn(&mut s, "t1", pid, epoch, false), 0);

    assert_eq!(consume(&mut s, 0, 1), vec!["a0"]);
    assert_eq!(consume(&mut s, 1, 1), vec!["a1"]);
    assert_eq!(consume(&mut s, 0, 0), vec!["a0", "b0"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while describe(&mut s, "t1").1 != "CompleteAbort" {
        assert!(Instant::now() < deadline, "{:?}", describe(&mut s, "t1"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

// Proves a zombie is fenced: once a new instance initialises the transactional id, the old
// epoch can neither add partitions, produce transactionally nor end a transaction.
#[test]
fn an_older_epoch_is_fenced() {
    let runnel = Runnel::start("");
    let mut s = setup(&runnel);
    find_coordinator(&mut s, "z");
    let (_, pid, old) = init(&mut s, "z", 60_000);
    assert_eq!(add_partitions(&mut s, "z", pid, old, &[0]), vec![0]);
    assert_eq!(produce(&mut s, "z", 0, txn_batch(pid, old, 0, "zombie")), 0);
    let (error, pid2, new) = init(&mut s, "z", 60_000);
    assert_eq!(error, 0);
    assert_eq!(pid2, pid);
    assert!(new > old, "epoch {new} after {old}");
    let fenced = [
        code(ResponseError::ProducerFenced),
        code(ResponseError::InvalidProducerEpoch),
    ];
    let add = add_partitions(&mut s, "z", pid, old, &[1]);
    assert!(fenced.contains(&add[0]), "{add:?}");
    let produced = produce(&mut s, "z", 1, txn_batch(pid, old, 0, "late"));
    assert!(fenced.contains(&produced), "{produced}");
    let ended = end_txn(&mut s, "z", pid, old, true);
    assert!(fenced.contains(&ended), "{ended}");
    // The zombie's open transaction was aborted by the new instance's InitProducerId.
    assert_eq!(consume(&mut s, 0, 1), Vec::<String>::new());
    assert_eq!(consume(&mut s, 0, 0), vec!["zombie"]);
}

// Proves partition verification (KIP-890 part 1): a transactional batch to a partition the
// transaction never added is refused with INVALID_TXN_STATE and not written.
#[test]
fn a_batch_to_a_partition_not_added_is_refused() {
    let runnel = Runnel::start("");
    let mut s = setup(&runnel);
    find_coordinator(&mut s, "v");
    let (_, pid, epoch) = init(&mut s, "v", 60_000);
    assert_eq!(add_partitions(&mut s, "v", pid, epoch, &[0]), vec![0]);
    assert_eq!(
        produce(&mut s, "v", 1, txn_batch(pid, epoch, 0, "stray")),
        code(ResponseError::InvalidTxnState)
    );
    assert_eq!(produce(&mut s, "v", 0, txn_batch(pid, epoch, 0, "ok")), 0);
    assert_eq!(end_txn(&mut s, "v", pid, epoch, true), 0);
    assert_eq!(consume(&mut s, 0, 1), vec!["ok"]);
    assert_eq!(consume(&mut s, 1, 0), Vec::<String>::new());
}

// Proves a transaction left open past its timeout is aborted by the coordinator: its records
// never reach read_committed, the partition becomes stable, and the producer is fenced.
#[test]
fn a_timed_out_transaction_is_aborted() {
    let runnel =
        Runnel::start("\"transaction.abort.timed.out.transaction.cleanup.interval.ms\" = 100\n");
    let mut s = setup(&runnel);
    find_coordinator(&mut s, "slow");
    let (_, pid, epoch) = init(&mut s, "slow", 500);
    assert_eq!(add_partitions(&mut s, "slow", pid, epoch, &[0]), vec![0]);
    assert_eq!(
        produce(&mut s, "slow", 0, txn_batch(pid, epoch, 0, "late")),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while describe(&mut s, "slow").1 != "CompleteAbort" {
        assert!(Instant::now() < deadline, "{:?}", describe(&mut s, "slow"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(consume(&mut s, 0, 1), Vec::<String>::new());
    let ended = end_txn(&mut s, "slow", pid, epoch, true);
    assert!(
        [
            code(ResponseError::ProducerFenced),
            code(ResponseError::InvalidProducerEpoch)
        ]
        .contains(&ended),
        "{ended}"
    );
}

// Proves a transaction whose PrepareCommit was durable when the broker was killed (before any
// marker) is committed after the restart: the coordinator reloads it and writes its markers.
#[test]
fn a_prepared_commit_completes_after_a_crash() {
    commit_across_a_crash_at("txn.after_prepare");
}

// Proves a commit killed after the first partition's marker and before the second's completes
// after the restart: both partitions' records are read, the transaction is CompleteCommit.
#[test]
fn a_commit_killed_between_markers_completes_after_a_restart() {
    commit_across_a_crash_at("txn.between_markers");
}

// Proves a commit killed with every marker written but no CompleteCommit record completes
// after the restart (the markers are written again, harmlessly).
#[test]
fn a_commit_killed_before_its_completion_completes_after_a_restart() {
    commit_across_a_crash_at("txn.before_complete");
}

/// A two-partition transaction committed with the broker killed at `failpoint`; after a
/// restart read_committed consumers see both records and the coordinator says CompleteCommit.
fn commit_across_a_crash_at(failpoint: &str) {
    let port = common::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{port}");
    let runnel =
        Runnel::start_with_listeners(dir, &listen, port, "", &[("RUNNEL_FAILPOINTS", failpoint)]);
    let mut s = setup(&runnel);
    find_coordinator(&mut s, "crash");
    let (_, pid, epoch) = init(&mut s, "crash", 60_000);
    assert_eq!(
        add_partitions(&mut s, "crash", pid, epoch, &[0, 1]),
        vec![0, 0]
    );
    assert_eq!(
        produce(&mut s, "crash", 0, txn_batch(pid, epoch, 0, "c0")),
        0
    );
    assert_eq!(
        produce(&mut s, "crash", 1, txn_batch(pid, epoch, 0, "c1")),
        0
    );
    // The broker dies at the fail point; the EndTxn answer may or may not have left.
    let request = RequestKind::EndTxn(
        EndTxnRequest::default()
            .with_transactional_id(txn_id("crash"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(true),
    );
    s.write_all_frame(&common::request_frame(ApiKey::EndTxn, 4, 7, &request));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut runnel = runnel;
    while runnel.is_running() {
        assert!(
            Instant::now() < deadline,
            "the fail point {failpoint} did not fire"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(runnel
        .log()
        .contains(&format!("fail point {failpoint} reached")));
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, "");
    let mut s = runnel.connect();
    assert_eq!(consume(&mut s, 0, 1), vec!["c0"]);
    assert_eq!(consume(&mut s, 1, 1), vec!["c1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while describe(&mut s, "crash").1 != "CompleteCommit" {
        assert!(Instant::now() < deadline, "{:?}", describe(&mut s, "crash"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

trait WriteFrame {
    fn write_all_frame(&mut self, frame: &[u8]);
}

impl WriteFrame for TcpStream {
    fn write_all_frame(&mut self, frame: &[u8]) {
        use std::io::Write;
        self.write_all(frame).expect("write request");
    }
}

// Proves KIP-890 part 2 (transaction version 2, which a new cluster finalizes): Produce v12 adds
// its partition to the transaction without AddPartitionsToTxn, every EndTxn bumps the epoch, and
// a late write at the previous epoch cannot join the next transaction.
#[test]
fn a_version_2_client_adds_partitions_by_producing_and_bumps_the_epoch() {
    let runnel = Runnel::start("");
    let mut s = setup(&runnel);
    find_coordinator(&mut s, "tv2");
    let (error, pid, e0) = init(&mut s, "tv2", 60_000);
    assert_eq!(error, 0);
    assert_eq!(
        produce_at(&mut s, 12, "tv2", 0, txn_batch(pid, e0, 0, "one")),
        0
    );
    assert_eq!(
        produce_at(&mut s, 12, "tv2", 1, txn_batch(pid, e0, 0, "one-b")),
        0
    );
    let (error, e1) = end_txn_v5(&mut s, "tv2", pid, e0, true);
    assert_eq!(error, 0);
    assert_eq!(e1, e0 + 1, "EndTxn v5 answers the bumped epoch");
    assert_eq!(
        produce_at(&mut s, 12, "tv2", 0, txn_batch(pid, e1, 0, "two")),
        0
    );
    let (error, e2) = end_txn_v5(&mut s, "tv2", pid, e1, false);
    assert_eq!(error, 0);
    assert_eq!(e2, e1 + 1);
    let late = produce_at(&mut s, 12, "tv2", 0, txn_batch(pid, e0, 1, "late"));
    assert!(
        [
            code(ResponseError::InvalidProducerEpoch),
            code(ResponseError::ProducerFenced)
        ]
        .contains(&late),
        "{late}"
    );
    assert_eq!(consume(&mut s, 0, 1), vec!["one"]);
    assert_eq!(consume(&mut s, 1, 1), vec!["one-b"]);
    assert_eq!(consume(&mut s, 0, 0), vec!["one", "two"]);
}

/// `txn_batch` with the record timestamp `timestamp`.
fn txn_batch_at(pid: i64, epoch: i16, seq: i32, value: &str, timestamp: i64) -> Bytes {
    encode_uncompressed_batch(&BatchSpec {
        attributes: 0x10,
        base_timestamp: timestamp,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records: vec![RecordSpec {
            value: Some(value.as_bytes()),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    })
    .into()
}

/// The whole batches of a fetched records field as (base offset, last offset, control).
fn fetched_batches(records: Option<Bytes>) -> Vec<(i64, i64, bool)> {
    let bytes = records.unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(header) = runnel_protocol::batch::BatchHeader::parse(&bytes[at..]) {
        if at + header.size_bytes() > bytes.len() {
            break;
        }
        out.push((
            header.base_offset,
            header.last_offset(),
            header.is_control(),
        ));
        at += header.size_bytes();
    }
    out
}

/// Now, in ms since the epoch.
fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A committed transaction on both partitions (four batches on partition 0, one on 1), then
/// an aborted one (one batch on each), every record stamped `timestamp`; waits until both
/// partitions are stable. Partition 0 ends up as offsets 0-3 data, 4 COMMIT, 5 data, 6 ABORT.
fn commit_then_abort_on_two_partitions(runnel: &Runnel, timestamp: i64) -> TcpStream {
    let mut s = setup(runnel);
    find_coordinator(&mut s, "tm");
    let (error, pid, epoch) = init(&mut s, "tm", 60_000);
    assert_eq!(error, 0);
    assert_eq!(
        add_partitions(&mut s, "tm", pid, epoch, &[0, 1]),
        vec![0, 0]
    );
    for seq in 0..4 {
        let batch = txn_batch_at(pid, epoch, seq, &format!("a0-{seq}"), timestamp);
        assert_eq!(produce(&mut s, "tm", 0, batch), 0);
    }
    let batch = txn_batch_at(pid, epoch, 0, "a1", timestamp);
    assert_eq!(produce(&mut s, "tm", 1, batch), 0);
    assert_eq!(end_txn(&mut s, "tm", pid, epoch, true), 0);
    assert_eq!(
        add_partitions(&mut s, "tm", pid, epoch, &[0, 1]),
        vec![0, 0]
    );
    let batch = txn_batch_at(pid, epoch, 4, "b0", timestamp);
    assert_eq!(produce(&mut s, "tm", 0, batch), 0);
    let batch = txn_batch_at(pid, epoch, 1, "b1", timestamp);
    assert_eq!(produce(&mut s, "tm", 1, batch), 0);
    assert_eq!(end_txn(&mut s, "tm", pid, epoch, false), 0);
    for (partition, hw) in [(0, 7), (1, 4)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let data = fetch_once(&mut s, partition, 0, 1);
            if data.high_watermark == hw && data.last_stable_offset == hw {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partition {partition}: HW {} LSO {}, want both {hw}",
                data.high_watermark,
                data.last_stable_offset
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    s
}

// Proves a fetch from offset 0 returns every batch up to the high watermark (read_uncommitted)
// or the last stable offset (read_committed), the COMMIT and ABORT markers included, on both
// partitions of a topic two transactions wrote, in page-cache and in fsync mode: markers do
// not end a fetch (the suspected bug), only the size limits and the segment end do.
#[test]
fn a_fetch_reads_past_markers_up_to_the_high_watermark() {
    for config in ["", "\"log.flush.interval.messages\" = 1\n"] {
        let runnel = Runnel::start(config);
        let mut s = commit_then_abort_on_two_partitions(&runnel, now_ms());
        for (partition, hw) in [(0i32, 7i64), (1, 4)] {
            for isolation in [0, 1] {
                let data = fetch_once(&mut s, partition, 0, isolation);
                assert_eq!((data.high_watermark, data.last_stable_offset), (hw, hw));
                let batches = fetched_batches(data.records);
                let offsets: Vec<i64> = batches.iter().map(|b| b.0).collect();
                assert_eq!(
                    offsets,
                    (0..hw).collect::<Vec<_>>(),
                    "config {config:?} partition {partition} isolation {isolation}: {batches:?}"
                );
                assert_eq!(batches.iter().filter(|b| b.2).count(), 2, "both markers");
            }
        }
    }
}

// Proves what the suspected bug was: records stamped long before the marker (here 1970, as
// test batches often are) make the marker roll a new segment, because the segment's age is
// measured from its first batch's timestamp to the appended batch's (Kafka's
// `LogSegment.timeWaitedForRoll`, `segment.ms`), and a fetch, like Kafka's
// (`LocalLog.read` reads one segment), ends at the segment's end. The next fetch, from the
// marker's offset, returns the rest. With current timestamps (the test above) nothing rolls.
#[test]
fn a_marker_long_after_its_records_rolls_a_segment_where_a_fetch_ends() {
    let runnel = Runnel::start("");
    let mut s = commit_then_abort_on_two_partitions(&runnel, 1_000);
    let mut logs: Vec<String> = std::fs::read_dir(runnel.data_dir().join(format!("{TOPIC}-0")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        vec!["00000000000000000000.log", "00000000000000000004.log"],
        "the COMMIT marker (offset 4) rolled a segment"
    );
    for isolation in [0, 1] {
        let first = fetched_batches(fetch_once(&mut s, 0, 0, isolation).records);
        let offsets: Vec<i64> = first.iter().map(|b| b.0).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3], "the first segment");
        let rest = fetched_batches(fetch_once(&mut s, 0, 4, isolation).records);
        let offsets: Vec<i64> = rest.iter().map(|b| b.0).collect();
        assert_eq!(
            offsets,
            vec![4, 5, 6],
            "the second segment, from the marker"
        );
    }
}

/// TxnOffsetCommit of one offset of `group` at `version`: the partition's error.
fn txn_offset_commit(
    stream: &mut TcpStream,
    version: i16,
    id: &str,
    group: &str,
    pid: i64,
    epoch: i16,
) -> i16 {
    let request = RequestKind::TxnOffsetCommit(
        TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id(id))
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(7),
                    ]),
            ]),
    );
    let ResponseKind::TxnOffsetCommit(r) = call(stream, ApiKey::TxnOffsetCommit, version, &request)
    else {
        panic!("not a TxnOffsetCommit response")
    };
    r.topics[0].partitions[0].error_code
}

/// The `__consumer_offsets` partitions the coordinator holds in `id`'s transaction.
fn offsets_partitions_in_txn(stream: &mut TcpStream, id: &str) -> Vec<i32> {
    let request = RequestKind::DescribeTransactions(
        DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]),
    );
    let ResponseKind::DescribeTransactions(r) =
        call(stream, ApiKey::DescribeTransactions, 0, &request)
    else {
        panic!("not a DescribeTransactions response")
    };
    r.transaction_states[0]
        .topics
        .iter()
        .filter(|t| t.topic.as_str() == "__consumer_offsets")
        .flat_map(|t| t.partitions.clone())
        .collect()
}

// Proves KIP-890 for TxnOffsetCommit: with verification on (the default), a v3 commit whose
// transaction never added the group's partition (no AddOffsetsToTxn) is refused
// INVALID_TXN_STATE and joins no transaction; after AddOffsetsToTxn it is accepted; a v5 commit
// (a transaction-version-2 client, which sends no AddOffsetsToTxn) adds the partition itself.
#[test]
fn txn_offset_commit_is_verified_or_adds_the_group_partition() {
    let runnel = Runnel::start("");
    let mut stream = setup(&runnel);
    find_coordinator(&mut stream, "offsets-v3");
    let (error, pid, epoch) = init(&mut stream, "offsets-v3", 60_000);
    assert_eq!(error, 0);
    let (error, ()) = retrying(|| {
        (
            txn_offset_commit(&mut stream, 3, "offsets-v3", "verified-group", pid, epoch),
            (),
        )
    });
    assert_eq!(error, code(ResponseError::InvalidTxnState));
    assert!(offsets_partitions_in_txn(&mut stream, "offsets-v3").is_empty());

    let request = RequestKind::AddOffsetsToTxn(
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id("offsets-v3"))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_static_str("verified-group"))),
    );
    let ResponseKind::AddOffsetsToTxn(r) = call(&mut stream, ApiKey::AddOffsetsToTxn, 3, &request)
    else {
        panic!("not an AddOffsetsToTxn response")
    };
    assert_eq!(r.error_code, 0);
    let (error, ()) = retrying(|| {
        (
            txn_offset_commit(&mut stream, 3, "offsets-v3", "verified-group", pid, epoch),
            (),
        )
    });
    assert_eq!(error, 0);

    find_coordinator(&mut stream, "offsets-v5");
    let (error, pid, epoch) = init(&mut stream, "offsets-v5", 60_000);
    assert_eq!(error, 0);
    assert!(offsets_partitions_in_txn(&mut stream, "offsets-v5").is_empty());
    let (error, ()) = retrying(|| {
        (
            txn_offset_commit(&mut stream, 5, "offsets-v5", "added-group", pid, epoch),
            (),
        )
    });
    assert_eq!(error, 0);
    let partitions = offsets_partitions_in_txn(&mut stream, "offsets-v5");
    assert_eq!(
        partitions,
        vec![runnel_cluster::group::offsets_partition_for(
            "added-group",
            50
        )]
    );
}
