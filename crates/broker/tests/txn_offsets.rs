//! Transactional offsets over a real socket against the real binary: TxnOffsetCommit writes a
//! producer's offsets as pending (OffsetFetch does not return them; with `require_stable` it
//! answers UNSTABLE_OFFSET_COMMIT), a COMMIT marker written by WriteTxnMarkers to the group's
//! `__consumer_offsets` partition makes them the group's offsets, an ABORT drops them, and a
//! SIGKILL and restart in between keeps them pending until their marker. DescribeProducers
//! shows the producer's open transaction on that partition. Run in page-cache and fsync mode.

mod common;

use std::net::TcpStream;

use common::{call, create_topic, name, Runnel};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::group::offsets_partition_for;

const GROUP: &str = "txn-group";
const TOPIC: &str = "in";
const OFFSETS: &str = "__consumer_offsets";
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC: i16 = 17;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// TxnOffsetCommit v3 of `producer_id` at `epoch`: (topic, partition, offset) each; the codes
/// per partition in answer order.
fn txn_commit(
    stream: &mut TcpStream,
    producer_id: i64,
    epoch: i16,
    offsets: &[(&str, i32, i64)],
) -> Vec<(String, i32, i16)> {
    let mut topics: Vec<txn_offset_commit_request::TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(s("")));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(name(topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("tx")))
        .with_group_id(GroupId(s(GROUP)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_generation_id(-1)
        .with_member_id(s(""))
        .with_topics(topics);
    let ResponseKind::TxnOffsetCommit(r) = call(
        stream,
        ApiKey::TxnOffsetCommit,
        3,
        &RequestKind::TxnOffsetCommit(request),
    ) else {
        panic!("not a TxnOffsetCommit answer")
    };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

/// OffsetFetch v8 of partitions 0 and 1 of the topic: (offset, error) each.
fn fetch(stream: &mut TcpStream, require_stable: bool) -> Vec<(i64, i16)> {
    let request = OffsetFetchRequest::default()
        .with_require_stable(require_stable)
        .with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(name(TOPIC))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ]);
    let ResponseKind::OffsetFetch(r) = call(
        stream,
        ApiKey::OffsetFetch,
        8,
        &RequestKind::OffsetFetch(request),
    ) else {
        panic!("not an OffsetFetch answer")
    };
    assert_eq!(r.groups[0].error_code, 0);
    r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.error_code))
        .collect()
}

/// WriteTxnMarkers v1: one marker for the group's `__consumer_offsets` partition (and an
/// unknown topic); the codes per partition.
fn end_txn(
    stream: &mut TcpStream,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Vec<(String, i32, i16)> {
    let partition = offsets_partition_for(GROUP, 50);
    let request = WriteTxnMarkersRequest::default().with_markers(vec![
        write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(0)
            .with_topics(vec![
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(name(OFFSETS))
                    .with_partition_indexes(vec![partition]),
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(name("no-such-topic"))
                    .with_partition_indexes(vec![0]),
            ]),
    ]);
    let ResponseKind::WriteTxnMarkers(r) = call(
        stream,
        ApiKey::WriteTxnMarkers,
        1,
        &RequestKind::WriteTxnMarkers(request),
    ) else {
        panic!("not a WriteTxnMarkers answer")
    };
    assert_eq!(r.markers.len(), 1);
    assert_eq!(r.markers[0].producer_id.0, producer_id);
    r.markers[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

fn marker_ok() -> Vec<(String, i32, i16)> {
    vec![
        (OFFSETS.to_owned(), offsets_partition_for(GROUP, 50), 0),
        ("no-such-topic".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION),
    ]
}

/// DescribeProducers v0 of the group's `__consumer_offsets` partition: (producer id, epoch,
/// current transaction start offset) each.
fn producers(stream: &mut TcpStream) -> Vec<(i64, i32, i64)> {
    let partition = offsets_partition_for(GROUP, 50);
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name(OFFSETS))
            .with_partition_indexes(vec![partition]),
    ]);
    let ResponseKind::DescribeProducers(r) = call(
        stream,
        ApiKey::DescribeProducers,
        0,
        &RequestKind::DescribeProducers(request),
    ) else {
        panic!("not a DescribeProducers answer")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.partition_index, p.error_code), (partition, 0));
    p.active_producers
        .iter()
        .map(|a| {
            (
                a.producer_id.0,
                a.producer_epoch,
                a.current_txn_start_offset,
            )
        })
        .collect()
}

fn scenario(config: &str) {
    let runnel = Runnel::start(config);
    let mut stream = runnel.connect();
    create_topic(&mut stream, TOPIC, 2, &[]);

    // Pending: not the group's offsets yet; unknown topics and partitions answered by the
    // broker, the rest by the coordinator.
    let codes = txn_commit(
        &mut stream,
        1000,
        0,
        &[(TOPIC, 0, 5), (TOPIC, 1, 6), (TOPIC, 9, 1), ("nope", 0, 1)],
    );
    assert_eq!(
        codes,
        vec![
            (TOPIC.to_owned(), 9, UNKNOWN_TOPIC_OR_PARTITION),
            (TOPIC.to_owned(), 0, 0),
            (TOPIC.to_owned(), 1, 0),
            ("nope".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(fetch(&mut stream, false), vec![(-1, 0), (-1, 0)]);
    assert_eq!(
        fetch(&mut stream, true),
        vec![(-1, UNSTABLE_OFFSET_COMMIT), (-1, UNSTABLE_OFFSET_COMMIT)]
    );
    let open = producers(&mut stream);
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].0, open[0].1), (1000, 0));
    assert!(
        open[0].2 >= 0,
        "the transaction is open on the partition: {open:?}"
    );

    // COMMIT: the offsets are the group's.
    assert_eq!(end_txn(&mut stream, 1000, 0, true), marker_ok());
    assert_eq!(fetch(&mut stream, true), vec![(5, 0), (6, 0)]);
    assert_eq!(producers(&mut stream), vec![(1000, 0, -1)]);

    // A marker older than the producer's epoch, and a TxnOffsetCommit from a fenced epoch,
    // are refused by the partition's producer state.
    assert_eq!(txn_commit(&mut stream, 1000, 1, &[(TOPIC, 0, 7)])[0].2, 0);
    assert_eq!(
        txn_commit(&mut stream, 1000, 0, &[(TOPIC, 0, 8)])[0].2,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(
        end_txn(&mut stream, 1000, 0, true)[0].2,
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(end_txn(&mut stream, 1000, 1, false), marker_ok());
    assert_eq!(fetch(&mut stream, true), vec![(5, 0), (6, 0)]);

    // Pending across a SIGKILL and restart; then ABORT drops it.
    assert_eq!(txn_commit(&mut stream, 1001, 0, &[(TOPIC, 0, 50)])[0].2, 0);
    drop(stream);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, config);
    let mut stream = runnel.connect();
    assert_eq!(fetch(&mut stream, false), vec![(5, 0), (6, 0)]);
    assert_eq!(
        fetch(&mut stream, true),
        vec![(-1, UNSTABLE_OFFSET_COMMIT), (6, 0)]
    );
    assert!(producers(&mut stream)
        .iter()
        .any(|p| p.0 == 1001 && p.2 >= 0));
    assert_eq!(end_txn(&mut stream, 1001, 0, false), marker_ok());
    assert_eq!(fetch(&mut stream, true), vec![(5, 0), (6, 0)]);

    // Pending across a restart; then COMMIT makes it the group's, and stays so after another.
    assert_eq!(txn_commit(&mut stream, 1002, 0, &[(TOPIC, 1, 60)])[0].2, 0);
    drop(stream);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, config);
    let mut stream = runnel.connect();
    assert_eq!(
        fetch(&mut stream, true),
        vec![(5, 0), (-1, UNSTABLE_OFFSET_COMMIT)]
    );
    assert_eq!(end_txn(&mut stream, 1002, 0, true), marker_ok());
    assert_eq!(fetch(&mut stream, true), vec![(5, 0), (60, 0)]);
    drop(stream);
    let (dir, port) = runnel.into_dir();
    let runnel = Runnel::start_in(dir, port, config);
    let mut stream = runnel.connect();
    assert_eq!(fetch(&mut stream, true), vec![(5, 0), (60, 0)]);

    // DescribeProducers' errors per topic and partition.
    let request = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0, 9]),
        describe_producers_request::TopicRequest::default()
            .with_name(name("nope"))
            .with_partition_indexes(vec![0]),
        describe_producers_request::TopicRequest::default()
            .with_name(name("bad name"))
            .with_partition_indexes(vec![0]),
    ]);
    let ResponseKind::DescribeProducers(r) = call(
        &mut stream,
        ApiKey::DescribeProducers,
        0,
        &RequestKind::DescribeProducers(request),
    ) else {
        panic!("not a DescribeProducers answer")
    };
    let codes: Vec<(i32, i16)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (0, 0),
            (9, UNKNOWN_TOPIC_OR_PARTITION),
            (0, UNKNOWN_TOPIC_OR_PARTITION),
            (0, INVALID_TOPIC)
        ]
    );
    assert!(r.topics[0].partitions[0].active_producers.is_empty());
    assert!(r.topics[2].partitions[0].error_message.is_some());
}

// The group side alone: these producers have no transaction at the coordinator (the test
// writes their markers itself, as a coordinator would), so the TxnOffsetCommits (v3) go
// unverified, as Kafka's do with `transaction.partition.verification.enable=false`.
// `txn_coordinator.rs` covers verification.
const UNVERIFIED: &str = "\"transaction.partition.verification.enable\" = false\n";

#[test]
fn transactional_offsets_in_page_cache_mode() {
    scenario(UNVERIFIED);
}

#[test]
fn transactional_offsets_in_fsync_mode() {
    scenario(&format!(
        "{UNVERIFIED}\"log.flush.interval.messages\" = 1\n"
    ));
}
