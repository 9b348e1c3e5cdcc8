//! ListOffsets: earliest, latest, by timestamp, max timestamp (and the tiered-storage specials,
//! answered as Kafka does when remote storage is off). Kafka's `KafkaApis.handleListOffsetRequest`,
//! `ReplicaManager.fetchOffset`, `Partition.fetchOffsetForTimestamp` and
//! `UnifiedLog.fetchOffsetByTimestamp`.

use std::collections::{HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use runnel_storage::LogSnapshot;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::storage_error_code;
use crate::replica::Partition;
use crate::state::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const EARLIEST_PENDING_UPLOAD: i64 = -6;

/// `replica_id` of a consumer: its isolation level bounds what it may see.
const CONSUMER_REPLICA_ID: i32 = -1;
/// `IsolationLevel.READ_COMMITTED`.
const READ_COMMITTED: i8 = 1;

/// How far a ListOffsets caller may see: a read_committed consumer to the last stable offset,
/// a read_uncommitted one to the high watermark, a replica to the log end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visible {
    LastStableOffset,
    HighWatermark,
    LogEndOffset,
}

/// Kafka's `timestampMinSupportedVersion`: the first version that may ask each special
/// timestamp. Any other negative timestamp is UNSUPPORTED_VERSION at every version.
fn special_timestamp_min_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        EARLIEST | LATEST => Some(1),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        EARLIEST_PENDING_UPLOAD => Some(11),
        _ => None,
    }
}

/// Kafka's `isListOffsetsTimestampUnsupported`.
fn timestamp_unsupported(timestamp: i64, version: i16) -> bool {
    timestamp < 0 && special_timestamp_min_version(timestamp).is_none_or(|min| version < min)
}

/// Kafka's `buildErrorResponse`: the error with unknown timestamp, offset and epoch.
fn error_response(partition_index: i32, error_code: i16) -> ListOffsetsPartitionResponse {
    ListOffsetsPartitionResponse::default()
        .with_partition_index(partition_index)
        .with_error_code(error_code)
        .with_timestamp(-1)
        .with_offset(-1)
        .with_leader_epoch(-1)
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let image = broker.image();
    // A partition named twice is INVALID_REQUEST, answered once (Kafka keys its answers by
    // partition).
    // Keyed by topic, then partition: a request of millions of partitions of one long-named
    // topic hashes and copies the name once per topic entry, not once per partition.
    let mut named: HashMap<&str, (HashSet<i32>, HashSet<i32>)> = HashMap::new();
    for t in &request.topics {
        let (seen, twice) = named.entry(t.name.as_str()).or_default();
        for p in &t.partitions {
            if !seen.insert(p.partition_index) {
                twice.insert(p.partition_index);
            }
        }
    }
    let duplicates: HashMap<String, HashSet<i32>> = named
        .into_iter()
        .filter(|(_, (_, twice))| !twice.is_empty())
        .map(|(name, (_, twice))| (name.to_owned(), twice))
        .collect();
    let mut answered: HashMap<String, HashSet<i32>> = HashMap::new();
    let is_consumer = request.replica_id.0 == CONSUMER_REPLICA_ID;
    // v2+ carry the isolation level (0 before): read_committed consumers see up to the LSO.
    let read_committed = request.isolation_level == READ_COMMITTED;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let authorized = broker.authorizer.authorize(
                ctx.principal(),
                AclOperation::Describe,
                ResourceType::Topic,
                &name,
            );
            let resolved = image.topic(&name);
            let twice = duplicates.get(&name);
            let answered = answered.entry(name.clone()).or_default();
            let partitions = topic
                .partitions
                .iter()
                .filter(|p| answered.insert(p.partition_index))
                .map(|p| {
                    let index = p.partition_index;
                    if !authorized {
                        return error_response(
                            index,
                            ResponseError::TopicAuthorizationFailed.code(),
                        );
                    }
                    if twice.is_some_and(|t| t.contains(&index)) {
                        return error_response(index, ResponseError::InvalidRequest.code());
                    }
                    if timestamp_unsupported(p.timestamp, version) {
                        return error_response(index, ResponseError::UnsupportedVersion.code());
                    }
                    let Some(partition) =
                        resolved.and_then(|t| broker.partition(&t.topic_id, index))
                    else {
                        let code = match resolved {
                            Some(t) => crate::errors::not_held_error(t, index),
                            None => ResponseError::UnknownTopicOrPartition.code(),
                        };
                        return error_response(index, code);
                    };
                    if let Some(code) = super::leader_error(p.current_leader_epoch, &partition) {
                        return error_response(index, code);
                    }
                    // A snapshot, not the append lock: the answer waits for no append or fsync.
                    match partition.reader().snapshot() {
                        Ok(log) => {
                            let bound = match (is_consumer, read_committed) {
                                (true, true) => Visible::LastStableOffset,
                                (true, false) => Visible::HighWatermark,
                                (false, _) => Visible::LogEndOffset,
                            };
                            answer(&partition, &log, p, bound, version)
                        }
                        Err(e) => error_response(index, storage_error_code(&e)),
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

/// One partition's answer from a snapshot of its log.
fn answer(
    partition: &Partition,
    log: &LogSnapshot,
    request: &ListOffsetsPartition,
    visible: Visible,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let none = error_response(request.partition_index, 0);
    // Leader epochs are reported from v4; earlier versions keep -1.
    let epoch = |epoch: Option<i32>| {
        if version >= 4 {
            epoch.filter(|e| *e >= 0).unwrap_or(-1)
        } else {
            -1
        }
    };
    // What this caller may see (Kafka's `Partition.fetchOffsetForTimestamp`).
    let last_fetchable_offset = match visible {
        Visible::LastStableOffset => log.last_stable_offset(),
        Visible::HighWatermark => log.high_watermark(),
        Visible::LogEndOffset => log.log_end_offset(),
    };
    // A found offset at or past what the caller may see answers "no offset", without error.
    let bounded = |found: Result<Option<(i64, i64, i32)>, _>| match found {
        Ok(Some((offset, timestamp, batch_epoch))) if offset < last_fetchable_offset => none
            .clone()
            .with_offset(offset)
            .with_timestamp(timestamp)
            .with_leader_epoch(epoch(Some(batch_epoch))),
        Ok(_) => none.clone(),
        Err(e) => error_response(request.partition_index, storage_error_code(&e)),
    };
    match request.timestamp {
        LATEST => none
            .clone()
            .with_offset(last_fetchable_offset)
            .with_leader_epoch(epoch(Some(partition.leader_epoch()))),
        // No remote storage: the earliest local offset is the log start. Its epoch is the first
        // cached epoch's, if that epoch starts at or below the log start.
        EARLIEST | EARLIEST_LOCAL => {
            let first = log
                .epoch_entries()
                .first()
                .filter(|e| e.start_offset <= log.log_start_offset());
            none.clone()
                .with_offset(log.log_start_offset())
                .with_leader_epoch(epoch(first.map(|e| e.epoch)))
        }
        MAX_TIMESTAMP => bounded(log.max_timestamp_and_offset()),
        // Remote storage is off: nothing is tiered (offset -1, epoch -1).
        LATEST_TIERED => none,
        timestamp => bounded(log.offset_for_timestamp(timestamp)),
    }
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

    use crate::context::RequestContext;
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
        // One partition per request: Kafka answers a partition named twice INVALID_REQUEST.
        let requests: Vec<ListOffsetsRequest> = [LATEST, EARLIEST, MAX_TIMESTAMP, 250]
            .into_iter()
            .map(|ts| request(&[(0, ts)]))
            .collect();
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
            scope.spawn(move || {
                let connection =
                    crate::context::ConnectionContext::plaintext("127.0.0.1:1".parse().unwrap());
                let header = kafka_protocol::messages::RequestHeader::default();
                let ctx = RequestContext {
                    connection: &connection,
                    header: &header,
                };
                let answers: Vec<ListOffsetsResponse> = requests
                    .into_iter()
                    .map(|request| handle(broker, &ctx, request, 7))
                    .collect();
                answer.send(answers).unwrap()
            });
            let response = answer_rx.recv_timeout(WAIT_MAX);
            release.send(()).unwrap();
            response.expect("ListOffsets waited for the append lock")
        });
        let answers: Vec<(i16, i64, i64)> = response
            .iter()
            .map(|r| {
                let p = &r.topics[0].partitions[0];
                (p.error_code, p.offset, p.timestamp)
            })
            .collect();
        assert_eq!(
            answers,
            vec![(0, 3, -1), (0, 0, -1), (0, 1, 300), (0, 1, 300)],
            "latest, earliest, max timestamp, first at or after 250"
        );
    }

    /// A ListOffsets request for topic "t" naming these (partition, timestamp) pairs.
    fn request(partitions: &[(i32, i64)]) -> ListOffsetsRequest {
        ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|(p, ts)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(*ts)
                        })
                        .collect(),
                )])
    }

    // Kafka's request checks: a special timestamp older than the version that introduced it,
    // or an unknown negative one, is UNSUPPORTED_VERSION; a partition named twice is answered
    // once, INVALID_REQUEST; the tiered specials answer -1 without remote storage.
    #[test]
    fn unsupported_timestamps_and_duplicates_as_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        broker
            .create_topic("t", 3, 1, BTreeMap::new(), false)
            .unwrap();
        let connection =
            crate::context::ConnectionContext::plaintext("127.0.0.1:1".parse().unwrap());
        let header = kafka_protocol::messages::RequestHeader::default();
        let ctx = RequestContext {
            connection: &connection,
            header: &header,
        };
        let answers = |version: i16, partitions: &[(i32, i64)]| -> Vec<(i32, i16, i64, i32)> {
            handle(&broker, &ctx, request(partitions), version).topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code, p.offset, p.leader_epoch))
                .collect()
        };
        let unsupported = ResponseError::UnsupportedVersion.code();
        assert_eq!(
            answers(6, &[(0, MAX_TIMESTAMP), (1, EARLIEST_LOCAL), (2, -7)]),
            vec![
                (0, unsupported, -1, -1),
                (1, unsupported, -1, -1),
                (2, unsupported, -1, -1)
            ]
        );
        assert_eq!(
            answers(
                10,
                &[
                    (0, LATEST_TIERED),
                    (1, EARLIEST_PENDING_UPLOAD),
                    (2, EARLIEST_LOCAL)
                ]
            ),
            vec![(0, 0, -1, -1), (1, unsupported, -1, -1), (2, 0, 0, 0)]
        );
        assert_eq!(
            answers(10, &[(0, LATEST), (1, LATEST), (0, EARLIEST)]),
            vec![
                (0, ResponseError::InvalidRequest.code(), -1, -1),
                (1, 0, 0, 0)
            ]
        );
        assert_eq!(answers(3, &[(0, LATEST)]), vec![(0, 0, 0, -1)]);
    }
}
