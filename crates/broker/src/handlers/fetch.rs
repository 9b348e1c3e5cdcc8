//! Fetch: stored batches up to the high watermark, long-polling until `min_bytes` or the
//! deadline.
//!
//! Records are not read here. Each partition's answer is a range of a segment file
//! (`LogSnapshot::read_file_slice`, chosen as Kafka chooses it), and the response carries a
//! placeholder of that length in its records field; the connection encodes the frame around the
//! placeholders and `sendfile`s the ranges into the socket (`runnel_protocol::splice`), so record
//! bytes never pass through user space. `materialize` reads them instead when that is off.
//!
//! KIP-227 fetch sessions (`fetch_session`) decide which partitions are read (an incremental
//! request lists only changes) and which are answered (only partitions with news).
//!
//! Partitions are read through their `LogReader`, never under the append lock, so a fetch does
//! not wait for an append or a group-commit fsync. Reading the batch headers of the active
//! segment finds them in the page cache (they were just written); a fetch that reaches below a
//! partition's active segment (a consumer catching up) may read from the disk, so it runs as a
//! blocking section (`blocking`) that does not stall the other connections on its worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use runnel_protocol::splice;
use runnel_storage::{FileSlice, StorageError};

use crate::errors::storage_error_code;
use crate::fetch_session::{PartitionOutcome, Resolved, SessionRequest, TopicKey};
use crate::replica::Partition;
use crate::state::Broker;

/// Kafka's `IsolationLevel.READ_COMMITTED`.
const READ_COMMITTED: i8 = 1;

/// Long-polling fetches parked right now, broker-wide (bounded by `runnel.fetch.waiters.max`).
static PARKED_FETCHES: AtomicUsize = AtomicUsize::new(0);

struct ParkedGuard;
impl Drop for ParkedGuard {
    fn drop(&mut self) {
        PARKED_FETCHES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One requested partition, resolved once per request.
struct Wanted {
    partition_index: i32,
    partition: Option<Arc<Partition>>,
    /// Error for a partition that cannot be served at all.
    error: Option<i16>,
    current_leader_epoch: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    /// A replica's fetch: read up to the log end offset (Kafka's `FetchIsolation.LOG_END`).
    to_log_end: bool,
}

/// A fetch response whose non-empty records fields are placeholders for `slices`, in encode
/// order (topics, then partitions, as in the response).
pub struct FetchAnswer {
    pub response: FetchResponse,
    pub slices: Vec<FileSlice>,
}

impl FetchAnswer {
    /// A whole-response error with no partitions (KIP-227 session errors).
    fn error(code: i16, session_id: i32) -> FetchAnswer {
        FetchAnswer {
            response: FetchResponse::default()
                .with_error_code(code)
                .with_session_id(session_id),
            slices: Vec::new(),
        }
    }
}

/// Milliseconds on a monotonic clock, for fetch-session ages (wall-clock jumps must not make
/// every session stale or immortal).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchAnswer {
    let mut session_request = SessionRequest::from_kafka(&request, version);
    // No replication yet: a fetch claiming a replica id is served as a consumer's, and must not
    // get a follower's privilege to evict consumer sessions.
    session_request.from_follower = false;
    let resolved = broker
        .fetch_sessions()
        .resolve(&session_request, version, monotonic_ms());
    drop(session_request);
    let plan = match resolved {
        Resolved::Error(e) => {
            broker.metrics.fetch_errors.record(e.code());
            return FetchAnswer::error(e.code(), 0);
        }
        Resolved::Fetch(plan) => plan,
    };
    let image = broker.image();
    // A replica names itself (ReplicaState from v15, the replica id before): only the
    // target of a move fetches as one today (`crate::replica::fetcher`).
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let from_replica = replica_id >= 0;
    let read_committed = request.isolation_level == READ_COMMITTED && !from_replica;
    let wanted: Vec<Wanted> = plan
        .partitions
        .iter()
        .map(|fp| {
            let resolved = match &fp.key.topic {
                TopicKey::Id(id) => image.topic_by_id(id),
                TopicKey::Name(name) => image.topic(name),
            };
            let partition = resolved.and_then(|t| broker.partition(&t.topic_id, fp.key.partition));
            let error = match (&resolved, &partition) {
                (None, _) if matches!(fp.key.topic, TopicKey::Id(_)) => {
                    Some(ResponseError::UnknownTopicId.code())
                }
                (None, _) => Some(ResponseError::UnknownTopicOrPartition.code()),
                (Some(t), None) => Some(crate::errors::not_held_error(t, fp.key.partition)),
                (Some(t), Some(part)) if from_replica => replica_fetch_error(
                    broker.node_id(),
                    replica_id,
                    t,
                    fp.params.current_leader_epoch,
                    part,
                ),
                (Some(_), Some(part)) => super::leader_error(fp.params.current_leader_epoch, part),
            };
            Wanted {
                partition_index: fp.key.partition,
                partition,
                error,
                current_leader_epoch: fp.params.current_leader_epoch,
                fetch_offset: fp.params.fetch_offset,
                partition_max_bytes: fp.params.partition_max_bytes,
                to_log_end: from_replica,
            }
        })
        .collect();

    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    // Kafka caps the response at the broker's `fetch.max.bytes` whatever the client asks:
    // otherwise one request could make the broker read gigabytes into memory.
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(broker.config.fetch_max_bytes);
    let mut parked: Option<ParkedGuard> = None;
    let (partitions, slices) = loop {
        // Register before reading, so an append between the read and the wait still wakes us.
        let waiter = Arc::new(Notify::new());
        for w in &wanted {
            if let Some(p) = &w.partition {
                p.register_waiter(&waiter);
            }
        }
        let (partitions, slices, bytes, any_error) =
            read_all_off_worker(&wanted, max_bytes, read_committed);
        let expired = Instant::now() >= deadline;
        // Kafka answers at once when there is nothing to wait for: no partition at all (the
        // Java consumer sends such a fetch when it closes its session), or data or an error.
        if wanted.is_empty()
            || bytes >= min_bytes
            || bytes > 0 && min_bytes == 0
            || any_error
            || expired
        {
            break (partitions, slices);
        }
        drop(slices);
        if parked.is_none() {
            if PARKED_FETCHES.fetch_add(1, Ordering::Relaxed) >= broker.config.fetch_waiters_max {
                PARKED_FETCHES.fetch_sub(1, Ordering::Relaxed);
                break (partitions, Vec::new());
            }
            parked = Some(ParkedGuard);
        }
        if tokio::time::timeout_at(deadline, waiter.notified())
            .await
            .is_err()
        {
            // Deadline: answer with whatever is there now.
            let (partitions, slices, _, _) =
                read_all_off_worker(&wanted, max_bytes, read_committed);
            break (partitions, slices);
        }
    };
    drop(parked);
    record_traffic(broker, &wanted, &partitions, &slices);

    let outcomes: Vec<PartitionOutcome> = partitions
        .iter()
        .map(PartitionOutcome::from_kafka)
        .collect();
    let completion = broker
        .fetch_sessions()
        .complete(plan, &outcomes, monotonic_ms());
    if let Some(e) = completion.error {
        broker.metrics.fetch_errors.record(e.code());
        return FetchAnswer::error(e.code(), completion.session_id);
    }
    // The response keeps the plan's order, one topic entry per run of the same topic (Kafka's
    // `FetchResponse.of`); an incremental fetch leaves out partitions without news, and with
    // them any file range they had (none: a partition with records is always news).
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut kept = Vec::with_capacity(slices.len());
    let mut slices = slices.into_iter();
    let mut current: Option<&TopicKey> = None;
    for ((fp, data), include) in completion
        .partitions
        .iter()
        .zip(partitions)
        .zip(&completion.include)
    {
        let has_slice = data
            .records
            .as_ref()
            .is_some_and(|r| splice::is_placeholder(r));
        let slice = if has_slice { slices.next() } else { None };
        if !include {
            continue;
        }
        kept.extend(slice);
        if current != Some(&fp.key.topic) {
            topics.push(match &fp.key.topic {
                TopicKey::Id(id) => FetchableTopicResponse::default().with_topic_id(*id),
                TopicKey::Name(name) => FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone()))),
            });
            current = Some(&fp.key.topic);
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(data);
        }
    }
    FetchAnswer {
        response: FetchResponse::default()
            .with_error_code(0)
            .with_session_id(completion.session_id)
            .with_responses(topics),
        slices: kept,
    }
}

/// Why a replica's fetch of a partition held here is refused, if it is. Until partition data
/// is replicated, the only replica that fetches is the target of a move of the partition away
/// from this broker (it is adding, this node removing), served whether this node still leads
/// or the partition is draining (`runnel_cluster::reassignment`); its current leader epoch is
/// checked first, so a fetch at a fenced epoch this node has not applied yet is
/// UNKNOWN_LEADER_EPOCH. Anything else is NOT_LEADER_OR_FOLLOWER.
fn replica_fetch_error(
    node_id: i32,
    replica_id: i32,
    topic: &runnel_cluster::TopicImage,
    current_leader_epoch: i32,
    partition: &Partition,
) -> Option<i16> {
    super::leader_epoch_error(current_leader_epoch, partition.leader_epoch()).or_else(|| {
        let moving_from_here = topic
            .registration(partition.index)
            .is_some_and(|r| r.adding.contains(&replica_id) && r.removing.contains(&node_id));
        (!moving_from_here).then(|| ResponseError::NotLeaderOrFollower.code())
    })
}

/// Counts the answer's record bytes per partition and its partition errors. `partitions`
/// answers `wanted` in order; a placeholder's bytes are its file slice's, in order.
fn record_traffic(
    broker: &Broker,
    wanted: &[Wanted],
    partitions: &[PartitionData],
    slices: &[FileSlice],
) {
    let mut slices = slices.iter();
    for (w, data) in wanted.iter().zip(partitions) {
        broker.metrics.fetch_errors.record(data.error_code);
        let bytes = match &data.records {
            Some(records) if splice::is_placeholder(records) => {
                slices.next().map_or(0, |slice| slice.len)
            }
            Some(records) => records.len(),
            None => 0,
        };
        if let (Some(partition), true) = (&w.partition, bytes > 0) {
            partition
                .traffic
                .bytes_out
                .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// Replaces every placeholder with the bytes it stands for, read from the files: for when
/// zero-copy is off, or a frame could not be spliced.
pub fn materialize(answer: FetchAnswer) -> Result<FetchResponse, runnel_storage::StorageError> {
    let FetchAnswer {
        mut response,
        slices,
    } = answer;
    let mut slices = slices.into_iter();
    for topic in &mut response.responses {
        for partition in &mut topic.partitions {
            if partition
                .records
                .as_ref()
                .is_some_and(|r| splice::is_placeholder(r))
            {
                // `handle` pushes one slice per placeholder it makes, in encode order.
                let Some(slice) = slices.next() else {
                    panic!("a fetch answer has fewer file slices than placeholders");
                };
                partition.records = Some(slice.read_to_bytes()?);
            }
        }
    }
    Ok(response)
}

/// `read_all`, as a blocking section when it reads below some partition's active segment: the
/// sealed segments' index and header reads are the ones likely to miss the page cache (module
/// docs).
fn read_all_off_worker(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, Vec<FileSlice>, usize, bool) {
    let reads_sealed = wanted.iter().any(|w| {
        w.partition
            .as_ref()
            .is_some_and(|p| w.fetch_offset < p.reader().active_base_offset())
    });
    if reads_sealed {
        crate::blocking::blocking(|| read_all(wanted, max_bytes, read_committed))
    } else {
        read_all(wanted, max_bytes, read_committed)
    }
}

/// Reads every partition once. Returns the partition responses (in request order), the file
/// ranges their placeholders stand for (same order), the record bytes gathered, and whether any
/// partition has an error (which answers the fetch at once).
fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, Vec<FileSlice>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    let mut slices = Vec::new();
    for w in wanted {
        let base = PartitionData::default()
            .with_partition_index(w.partition_index)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1))
            .with_aborted_transactions(if read_committed { Some(vec![]) } else { None })
            .with_records(Some(Bytes::new()));
        if let Some(code) = w.error {
            any_error = true;
            out.push(base.with_error_code(code));
            continue;
        }
        let Some(partition) = &w.partition else {
            any_error = true;
            out.push(base.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
            continue;
        };
        let _ = w.current_leader_epoch;
        // KIP-74: the first partition that has data returns at least one whole batch, even one
        // larger than the limits, so a consumer can always make progress.
        let partition_limit = usize::try_from(w.partition_max_bytes).unwrap_or(0);
        let limit = partition_limit.min(max_bytes.saturating_sub(total));
        // One snapshot answers the offsets and the records alike, without the append lock. A
        // refused read still reports the offsets it was refused against.
        // read_committed reads up to the last stable offset (Kafka's `FetchIsolation.TXN_COMMITTED`)
        // and gets the aborted transactions of the range it read, so the consumer can drop
        // their records; read_uncommitted reads up to the high watermark.
        let read = partition.reader().with_snapshot(|log| {
            let hw = log.high_watermark();
            let lso = log.last_stable_offset();
            let max_offset = if w.to_log_end {
                log.log_end_offset()
            } else if read_committed {
                lso
            } else {
                hw
            };
            match log.read_file_slice(w.fetch_offset, limit, max_offset, total == 0) {
                Err(StorageError::SnapshotStale) => Err(StorageError::SnapshotStale),
                slice => {
                    let aborted = match &slice {
                        Ok(Some(_)) if read_committed => {
                            log.aborted_transactions(w.fetch_offset, lso)
                        }
                        _ => Vec::new(),
                    };
                    Ok((hw, lso, log.log_start_offset(), slice, aborted))
                }
            }
        });
        let (base, slice) = match read {
            Ok((hw, lso, log_start_offset, slice, aborted)) => {
                let base = base
                    .with_high_watermark(hw)
                    .with_last_stable_offset(lso)
                    .with_log_start_offset(log_start_offset);
                let base = if read_committed {
                    base.with_aborted_transactions(Some(
                        aborted
                            .iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect(),
                    ))
                } else {
                    base
                };
                (base, slice)
            }
            Err(e) => (base, Err(e)),
        };
        let read = slice.and_then(|slice| {
            let Some(slice) = slice else {
                return Ok(Bytes::new());
            };
            total += slice.len;
            match splice::placeholder(slice.len) {
                Some(placeholder) => {
                    slices.push(slice);
                    Ok(placeholder)
                }
                // Larger than any hole: read it (never for answers within fetch.max.bytes).
                None => slice.read_to_bytes(),
            }
        });
        match read {
            Ok(records) => {
                out.push(base.with_error_code(0).with_records(Some(records)));
            }
            Err(e) => {
                any_error = true;
                out.push(base.with_error_code(storage_error_code(&e)));
            }
        }
    }
    (out, slices, total, any_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::mpsc;

    use crate::replica::{AppendOrigin, AppendWait};
    use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

    /// Bounds the waits below, so a fetch stuck behind a lock fails the test with a message
    /// instead of hanging it.
    const WAIT_MAX: Duration = Duration::from_secs(10);

    fn batch() -> Bytes {
        encode_uncompressed_batch(&BatchSpec {
            base_timestamp: 1,
            records: vec![RecordSpec {
                timestamp_delta: 0,
                key: None,
                value: Some(b"value"),
                headers: vec![],
            }],
            ..Default::default()
        })
        .into()
    }

    // Proves a fetch reads a partition while another thread holds its append lock (as an
    // append does, or a group-commit round for its fsync): it answers from the partition's
    // reader. Before the reader split the fetch waited for that lock, and the bounded wait
    // below failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fetch_reads_while_another_thread_holds_the_append_lock() {
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
        for _ in 0..3 {
            let appended = broker
                .replicas
                .append_records(&partition, AppendOrigin::Client, 1, batch())
                .unwrap();
            assert!(matches!(appended, AppendWait::Done(Ok(_))));
        }
        let (held, held_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let holder = {
            let partition = Arc::clone(&partition);
            std::thread::spawn(move || {
                let _writer = partition.lock_log();
                held.send(()).unwrap();
                release_rx.recv_timeout(WAIT_MAX).ok();
            })
        };
        held_rx.recv_timeout(WAIT_MAX).unwrap();
        let wanted = vec![Wanted {
            partition_index: 0,
            partition: Some(Arc::clone(&partition)),
            error: None,
            current_leader_epoch: -1,
            fetch_offset: 1,
            partition_max_bytes: 1 << 20,
            to_log_end: false,
        }];
        let (answer, answer_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (data, slices, bytes, any_error) = read_all(&wanted, 1 << 20, false);
            answer.send((data, slices, bytes, any_error)).unwrap();
        });
        let answered = answer_rx.recv_timeout(WAIT_MAX);
        release.send(()).unwrap();
        holder.join().unwrap();
        let (data, slices, bytes, any_error) =
            answered.expect("the fetch waited for the append lock");
        assert!(!any_error, "{data:?}");
        assert_eq!((data[0].high_watermark, data[0].log_start_offset), (3, 0));
        assert_eq!(slices.len(), 1);
        let records = slices[0].read_to_bytes().unwrap();
        assert_eq!(records.len(), bytes);
        let header = runnel_protocol::batch::BatchHeader::parse(&records).unwrap();
        assert_eq!(header.base_offset, 1, "from the fetch offset");
    }

    // Proves a fetch answer whose placeholders outnumber its file slices (our bug: `handle`
    // makes one slice per placeholder) asserts instead of being answered as a storage error.
    #[test]
    #[should_panic(expected = "fewer file slices than placeholders")]
    fn materialize_asserts_one_slice_per_placeholder() {
        let placeholder = splice::placeholder(10).expect("a 10-byte placeholder");
        let response =
            FetchResponse::default()
                .with_responses(vec![FetchableTopicResponse::default().with_partitions(
                    vec![PartitionData::default().with_records(Some(placeholder))],
                )]);
        let _ = materialize(FetchAnswer {
            response,
            slices: Vec::new(),
        });
    }
}
