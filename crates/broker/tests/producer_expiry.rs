//! `producer.id.expiration.ms` against the real binary: a partition forgets an idle producer
//! (DescribeProducers stops listing it) once its last write is that old, checked every
//! `producer.id.expiration.check.interval.ms`, but never one with a transaction open there.
//! Without it every producer that ever wrote to a partition stays in memory and in its
//! snapshots for good.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{call, create_topic, name, produce_request, Runnel};
use kafka_protocol::messages::*;
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

const TOPIC: &str = "expiring";
const IDLE_PID: i64 = 4_000;
const TXN_PID: i64 = 4_001;

/// One record from `producer_id` (epoch 0, sequence 0), stamped now: expiry counts from the
/// batch's timestamp, as Kafka's does.
fn producer_batch(producer_id: i64, transactional: bool) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    encode_uncompressed_batch(&BatchSpec {
        attributes: if transactional { 0x10 } else { 0 },
        base_timestamp: now,
        producer_id,
        producer_epoch: 0,
        base_sequence: 0,
        records: vec![RecordSpec {
            value: Some(b"v"),
            ..RecordSpec::default()
        }],
        ..BatchSpec::default()
    })
    .into()
}

/// Produces `records` to partition 0; returns the base offset the broker answered.
fn produce(stream: &mut TcpStream, records: Bytes, transactional_id: Option<&str>) -> i64 {
    let mut request = produce_request(TOPIC, -1, 5_000, &[(0, records)]);
    if let (RequestKind::Produce(r), Some(id)) = (&mut request, transactional_id) {
        r.transactional_id = Some(TransactionalId(id.to_owned().into()));
    }
    let ResponseKind::Produce(r) = call(stream, ApiKey::Produce, 9, &request) else {
        panic!("not a Produce answer")
    };
    let answer = &r.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "produce refused");
    answer.base_offset
}

/// The producer ids DescribeProducers lists for partition 0.
fn producers(stream: &mut TcpStream) -> Vec<i64> {
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::DescribeProducers(r) = call(
        stream,
        ApiKey::DescribeProducers,
        0,
        &RequestKind::DescribeProducers(request),
    ) else {
        panic!("not a DescribeProducers answer")
    };
    let mut ids: Vec<i64> = r.topics[0].partitions[0]
        .active_producers
        .iter()
        .map(|p| p.producer_id.0)
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn idle_producers_expire_and_open_transactions_keep_theirs() {
    // The transactional batch is written without the coordinator (verification off), so its
    // transaction stays open: nothing will ever end it.
    let runnel = Runnel::start(
        "\"producer.id.expiration.ms\" = 1500\n\
         \"producer.id.expiration.check.interval.ms\" = 100\n\
         \"transaction.partition.verification.enable\" = false\n",
    );
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, 1, &[]);
    assert_eq!(
        produce(&mut stream, producer_batch(IDLE_PID, false), None),
        0
    );
    produce(
        &mut stream,
        producer_batch(TXN_PID, true),
        Some("expiry-txn"),
    );
    // Both are known right after their writes (well inside the expiration).
    assert_eq!(producers(&mut stream), vec![IDLE_PID, TXN_PID]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = producers(&mut stream);
        if listed == vec![TXN_PID] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle producer never expired: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Well past the expiration, the producer with an open transaction is still there.
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(producers(&mut stream), vec![TXN_PID]);
    // An expired producer that writes again starts afresh: its old sequence is forgotten, so
    // sequence 0 at epoch 0 is written again (a new offset) rather than answered as a retry of
    // the first batch (offset 0).
    assert_eq!(
        produce(&mut stream, producer_batch(IDLE_PID, false), None),
        2
    );
    assert_eq!(producers(&mut stream), vec![IDLE_PID, TXN_PID]);
}
