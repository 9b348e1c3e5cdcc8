//! ListOffsets: earliest, latest, by timestamp, max timestamp (and the tiered-storage specials,
//! answered as Kafka does when remote storage is off).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::errors::storage_error_code;
use crate::state::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let image = broker.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let resolved = image.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let Some(partition) =
                        resolved.and_then(|t| broker.partition(&t.topic_id, p.partition_index))
                    else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Some(code) =
                        super::leader_epoch_error(p.current_leader_epoch, partition.leader_epoch)
                    {
                        return response.with_error_code(code);
                    }
                    // A snapshot, not the append lock: the answer waits for no append or fsync.
                    let log = match partition.reader().snapshot() {
                        Ok(log) => log,
                        Err(e) => return response.with_error_code(storage_error_code(&e)),
                    };
                    // Leader epochs are reported from v4; earlier versions must keep -1.
                    let epoch = if version >= 4 {
                        log.latest_epoch().unwrap_or(partition.leader_epoch)
                    } else {
                        -1
                    };
                    match p.timestamp {
                        // No transactions yet, so the last stable offset is the high watermark
                        // for both isolation levels.
                        LATEST => response
                            .with_offset(log.high_watermark())
                            .with_leader_epoch(epoch),
                        EARLIEST | EARLIEST_LOCAL => response
                            .with_offset(log.log_start_offset())
                            .with_leader_epoch(epoch),
                        MAX_TIMESTAMP => match log.max_timestamp_and_offset() {
                            Ok(Some((offset, timestamp, batch_epoch))) => response
                                .with_timestamp(timestamp)
                                .with_offset(offset)
                                .with_leader_epoch(if version >= 4 { batch_epoch } else { -1 }),
                            Ok(None) => response,
                            Err(e) => response.with_error_code(storage_error_code(&e)),
                        },
                        // Remote storage is off: nothing is tiered or pending upload.
                        LATEST_TIERED | EARLIEST_PENDING_UPLOAD => response,
                        ts if ts < 0 => {
                            response.with_error_code(ResponseError::InvalidRequest.code())
                        }
                        ts => match log.offset_for_timestamp(ts) {
                            Ok(Some((offset, timestamp, batch_epoch)))
                                if offset < log.high_watermark() =>
                            {
                                response
                                    .with_offset(offset)
                                    .with_timestamp(timestamp)
                                    .with_leader_epoch(if version >= 4 { batch_epoch } else { -1 })
                            }
                            Ok(_) => response,
                            Err(e) => response.with_error_code(storage_error_code(&e)),
                        },
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::mpsc;
    use std::time::Duration;

    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

    use crate::replica::{AppendOrigin, AppendWait};

    /// Bounds the wait below, so an answer stuck behind a lock fails the test with a message.
    const WAIT_MAX: Duration = Duration::from_secs(10);

    // Proves ListOffsets answers (latest, earliest, max timestamp, by timestamp) while another
    // thread holds the partition's append lock: it reads a snapshot. Before the reader split it
    // waited for the lock, and the bounded wait below failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_offsets_answers_while_another_thread_holds_the_append_lock() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        let topic = broker
            .create_topic("t", 1, 1, BTreeMap::new(), false)
            .unwrap();
        let partition = broker.partition(&topic.topic_id, 0).unwrap();
        for ts in [100, 300, 200] {
            let batch = encode_uncompressed_batch(&BatchSpec {
                base_timestamp: ts,
                records: vec![RecordSpec {
                    timestamp_delta: 0,
                    key: None,
                    value: Some(b"value"),
                    headers: vec![],
                }],
                ..Default::default()
            });
            let appended = broker
                .replicas
                .append_records(&partition, AppendOrigin::Client, 1, batch.into())
                .unwrap();
            assert!(matches!(appended, AppendWait::Done(Ok(_))));
        }
        let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(
                [LATEST, EARLIEST, MAX_TIMESTAMP, 250]
                    .into_iter()
                    .map(|ts| {
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts)
                    })
                    .collect(),
            )]);
        let (held, held_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let (answer, answer_rx) = mpsc::channel();
        let response = std::thread::scope(|scope| {
            scope.spawn(move || {
                let _writer = partition.lock_log();
                held.send(()).unwrap();
                release_rx.recv_timeout(WAIT_MAX).ok();
            });
            held_rx.recv_timeout(WAIT_MAX).unwrap();
            let broker = &broker;
            scope.spawn(move || answer.send(handle(broker, request, 7)).unwrap());
            let response = answer_rx.recv_timeout(WAIT_MAX);
            release.send(()).unwrap();
            response.expect("ListOffsets waited for the append lock")
        });
        let answers: Vec<(i16, i64, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.timestamp))
            .collect();
        assert_eq!(
            answers,
            vec![(0, 3, -1), (0, 0, -1), (0, 1, 300), (0, 1, 300)],
            "latest, earliest, max timestamp, first at or after 250"
        );
    }
}
