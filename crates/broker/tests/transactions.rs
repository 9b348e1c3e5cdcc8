//! The partition side of transactions through the broker: transactional batches appended
//! through the replica layer (the produce handler refuses them until the coordinator is wired),
//! markers written by `txn_markers::write_txn_markers` (the single-node WriteTxnMarkers), and
//! then Fetch and ListOffsets over a real socket: read_committed stops at the last stable
//! offset and gets the aborted transactions, read_uncommitted sees everything below the high
//! watermark. Run in page-cache mode and in fsync mode (markers through the group commit).

mod common;

use std::net::TcpStream;
use std::sync::Arc;

use bytes::Bytes;
use common::{call, call_handler, fetched_records};
use kafka_protocol::messages::*;
use runnel_broker::config::BrokerConfig;
use runnel_broker::replica::AppendOrigin;
use runnel_broker::server::{self, Listener};
use runnel_broker::state::Broker;
use runnel_broker::txn_markers::{write_txn_markers, MarkerRequest, MarkerResult};
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};
use runnel_storage::{TxnMarker, TxnResult};

const TOPIC: &str = "txn";

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    batch(pid, epoch, seq, values, 0x10)
}

fn batch(pid: i64, epoch: i16, seq: i32, values: &[&str], attributes: i16) -> Bytes {
    encode_uncompressed_batch(&BatchSpec {
        attributes,
        base_timestamp: 1_000,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records: values
            .iter()
            .map(|v| RecordSpec {
                value: Some(v.as_bytes()),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
    .into()
}

async fn append(broker: &Arc<Broker>, records: Bytes) -> i64 {
    let image = broker.image();
    let topic = image.topic(TOPIC).expect("topic");
    let partition = broker.partition(&topic.topic_id, 0).expect("partition");
    let wait = broker
        .replicas
        .append_records(&partition, AppendOrigin::Client, -1, records)
        .expect("accepted");
    wait.wait().await.expect("appended").base_offset
}

async fn end_txn(
    broker: &Arc<Broker>,
    pid: i64,
    epoch: i16,
    result: TxnResult,
) -> Vec<MarkerResult> {
    write_txn_markers(
        broker,
        vec![MarkerRequest {
            marker: TxnMarker {
                producer_id: pid,
                producer_epoch: epoch,
                coordinator_epoch: 0,
                result,
                transaction_version: 0,
            },
            partitions: vec![(TOPIC.into(), 0), ("no-such-topic".into(), 0)],
        }],
    )
    .await
}

/// One Fetch v12 of the partition from `offset`.
fn fetch_once(
    stream: &mut TcpStream,
    offset: i64,
    isolation_level: i8,
) -> fetch_response::PartitionData {
    let RequestKind::Fetch(request) = common::fetch_request(TOPIC, 0, offset, 0, 1 << 20) else {
        unreachable!()
    };
    let request = RequestKind::Fetch(request.with_isolation_level(isolation_level));
    let ResponseKind::Fetch(r) = call(stream, ApiKey::Fetch, 12, &request) else {
        panic!("not a Fetch response")
    };
    r.responses[0].partitions[0].clone()
}

/// What a consumer fetches from offset 0 until it reaches what it may read (the LSO or the
/// HW): every fetch's records (a fetch reads within one segment) and aborted transactions,
/// with the last answer's offsets.
struct Fetched {
    records: Vec<(i64, String)>,
    aborted: Option<Vec<(i64, i64)>>,
    high_watermark: i64,
    last_stable_offset: i64,
}

fn fetch(stream: &mut TcpStream, isolation_level: i8) -> Fetched {
    let mut out = Fetched {
        records: Vec::new(),
        aborted: None,
        high_watermark: -1,
        last_stable_offset: -1,
    };
    let mut offset = 0;
    loop {
        let data = fetch_once(stream, offset, isolation_level);
        assert_eq!(data.error_code, 0);
        out.high_watermark = data.high_watermark;
        out.last_stable_offset = data.last_stable_offset;
        if let Some(list) = aborted(&data) {
            let all = out.aborted.get_or_insert_with(Vec::new);
            for entry in list {
                if !all.contains(&entry) {
                    all.push(entry);
                }
            }
        }
        let end = if isolation_level == 1 {
            data.last_stable_offset
        } else {
            data.high_watermark
        };
        let bytes = data.records.clone().unwrap_or_default();
        let mut pos = 0;
        let before = offset;
        let mut markers = Vec::new();
        while pos + 61 <= bytes.len() {
            let h = runnel_protocol::batch::BatchHeader::parse(&bytes[pos..]).expect("header");
            assert!(
                h.base_offset < end,
                "a batch at or past what the consumer may read"
            );
            if h.is_control() {
                markers.push(h.base_offset);
            }
            offset = h.last_offset() + 1;
            pos += h.size_bytes();
        }
        // Consumers never deliver control records.
        out.records.extend(
            values(&data)
                .into_iter()
                .filter(|(o, _)| !markers.contains(o)),
        );
        if offset >= end {
            return out;
        }
        assert!(offset > before, "no progress at {offset}");
    }
}

fn list_latest(stream: &mut TcpStream, isolation_level: i8) -> i64 {
    let request = RequestKind::ListOffsets(
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(common::name(TOPIC))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]),
    );
    let ResponseKind::ListOffsets(r) = call(stream, ApiKey::ListOffsets, 7, &request) else {
        panic!("not a ListOffsets response")
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn values(data: &fetch_response::PartitionData) -> Vec<(i64, String)> {
    fetched_records(data.records.clone())
        .into_iter()
        .map(|(o, v)| (o, String::from_utf8(v.to_vec()).expect("utf8")))
        .collect()
}

fn aborted(data: &fetch_response::PartitionData) -> Option<Vec<(i64, i64)>> {
    data.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect()
    })
}

async fn scenario(topic_configs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(config, ("localhost".into(), 9092)).expect("open broker");
    let request = common::create_topics_request(TOPIC, 1, topic_configs);
    let ResponseKind::CreateTopics(r) =
        call_handler(&broker, ApiKey::CreateTopics, 7, request).await
    else {
        panic!("wrong response")
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(
        Arc::clone(&broker),
        vec![Listener {
            name: "PLAINTEXT".into(),
            socket,
            tls: None,
        }],
        async {
            let _ = stop_rx.await;
        },
    ));

    // 0: plain; 1-2: producer 7 (aborted); 3: producer 8 (committed); 4: plain;
    // 5: ABORT of 7; 6: producer 8; 7: COMMIT of 8; 8-9: producer 9 (left open); 10: plain.
    assert_eq!(append(&broker, batch(-1, -1, -1, &["p0"], 0)).await, 0);
    assert_eq!(append(&broker, txn_batch(7, 0, 0, &["a1", "a2"])).await, 1);
    assert_eq!(append(&broker, txn_batch(8, 0, 0, &["c3"])).await, 3);
    assert_eq!(append(&broker, batch(-1, -1, -1, &["p4"], 0)).await, 4);
    let results = end_txn(&broker, 7, 0, TxnResult::Abort).await;
    assert_eq!(
        results,
        vec![MarkerResult {
            producer_id: 7,
            partitions: vec![
                (TOPIC.into(), 0, 0),
                ("no-such-topic".into(), 0, 3), // UNKNOWN_TOPIC_OR_PARTITION
            ],
        }]
    );
    assert_eq!(append(&broker, txn_batch(8, 0, 1, &["c6"])).await, 6);
    end_txn(&broker, 8, 0, TxnResult::Commit).await;
    assert_eq!(append(&broker, txn_batch(9, 0, 0, &["o8", "o9"])).await, 8);
    assert_eq!(append(&broker, batch(-1, -1, -1, &["p10"], 0)).await, 10);
    // A marker of an older producer epoch is fenced by the partition and writes nothing.
    let fenced = end_txn(&broker, 9, -1, TxnResult::Commit).await;
    assert_eq!(fenced[0].partitions[0].2, 47, "INVALID_PRODUCER_EPOCH");
    let image = broker.image();
    let partition = broker
        .partition(&image.topic(TOPIC).expect("topic").topic_id, 0)
        .expect("partition");
    assert_eq!(partition.last_stable_offset(), 8);

    let client = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let committed = fetch(&mut stream, 1);
        let uncommitted = fetch(&mut stream, 0);
        let latest_committed = list_latest(&mut stream, 1);
        let latest_uncommitted = list_latest(&mut stream, 0);
        (committed, uncommitted, latest_committed, latest_uncommitted)
    });
    let (committed, uncommitted, latest_committed, latest_uncommitted) =
        client.await.expect("client");
    let hw = 11;
    assert_eq!(
        (committed.high_watermark, committed.last_stable_offset),
        (hw, 8)
    );
    // read_committed: every batch below the LSO (the consumer drops the aborted ones using the
    // list), nothing of the open transaction.
    assert_eq!(
        committed.records,
        [
            (0, "p0"),
            (1, "a1"),
            (2, "a2"),
            (3, "c3"),
            (4, "p4"),
            (6, "c6")
        ]
        .map(|(o, v)| (o, v.to_owned()))
        .to_vec()
    );
    assert_eq!(committed.aborted, Some(vec![(7, 1)]));
    assert_eq!(
        (uncommitted.high_watermark, uncommitted.last_stable_offset),
        (hw, 8)
    );
    assert_eq!(uncommitted.records.len(), 9, "{:?}", uncommitted.records);
    assert_eq!(uncommitted.aborted, None);
    assert_eq!((latest_committed, latest_uncommitted), (8, hw));

    // Producer 9 aborts: the LSO reaches the HW, and read_committed lists both aborts.
    end_txn(&broker, 9, 0, TxnResult::Abort).await;
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        (fetch(&mut stream, 1), list_latest(&mut stream, 1))
    });
    let (committed, latest_committed) = client.await.expect("client");
    assert_eq!(committed.last_stable_offset, 12);
    assert_eq!(latest_committed, 12);
    assert_eq!(committed.aborted, Some(vec![(7, 1), (9, 8)]));
    assert_eq!(committed.records.last().map(|(o, _)| *o), Some(10));

    let _ = stop_tx.send(());
    server.await.expect("server");
    broker.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_stops_at_the_lso_and_lists_aborted_transactions() {
    // Page-cache mode: markers append inline and move the HW and LSO at once.
    scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_go_through_the_group_commit_in_fsync_mode() {
    // fsync mode: markers queue with the batches and are answered after the fsync.
    scenario(&[("flush.messages", "1")]).await;
}
