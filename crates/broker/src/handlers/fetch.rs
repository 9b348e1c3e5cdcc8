//! Fetch: stored batches up to the high watermark, long-polling until `min_bytes` or the
//! deadline.
//!
//! Records are not read here. Each partition's answer is a range of a segment file
//! (`PartitionLog::read_file_slice`, chosen as Kafka chooses it), and the response carries a
//! placeholder of that length in its records field; the connection encodes the frame around the
//! placeholders and `sendfile`s the ranges into the socket (`runnel_protocol::splice`), so record
//! bytes never pass through user space. `materialize` reads them instead when that is off.
//!
//! Sessionless only (KIP-227 fetch sessions come later): session id 0 in every response, and
//! every requested partition present in it, empty if need be. Clients fall back to full fetches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::Notify;
use tokio::time::Instant;

use runnel_protocol::splice;
use runnel_storage::FileSlice;

use crate::errors::storage_error_code;
use crate::state::{Broker, Partition};

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
    topic_index: usize,
    partition_index: i32,
    partition: Option<Arc<Partition>>,
    /// Error for a partition that cannot be served at all.
    error: Option<i16>,
    current_leader_epoch: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
}

/// A fetch response whose non-empty records fields are placeholders for `slices`, in encode
/// order (topics, then partitions, as in the response).
pub struct FetchAnswer {
    pub response: FetchResponse,
    pub slices: Vec<FileSlice>,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchAnswer {
    if request.session_id != 0 {
        // We never hand out sessions, so any id is one we do not know.
        return FetchAnswer {
            response: FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code())
                .with_session_id(0),
            slices: Vec::new(),
        };
    }
    let image = broker.image();
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut topics: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
    let mut wanted: Vec<Wanted> = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let resolved = if version >= 13 {
            image.topic_by_id(&topic.topic_id)
        } else {
            image.topic(topic.topic.0.as_str())
        };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id),
        );
        for p in &topic.partitions {
            let partition = resolved.and_then(|t| broker.partition(&t.topic_id, p.partition));
            let error = match (&resolved, &partition) {
                (None, _) if version >= 13 => Some(ResponseError::UnknownTopicId.code()),
                (None, _) | (Some(_), None) => Some(ResponseError::UnknownTopicOrPartition.code()),
                (Some(_), Some(part)) => {
                    super::leader_epoch_error(p.current_leader_epoch, part.leader_epoch)
                }
            };
            wanted.push(Wanted {
                topic_index,
                partition_index: p.partition,
                partition,
                error,
                current_leader_epoch: p.current_leader_epoch,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
            });
        }
    }

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
        let (partitions, slices, bytes, any_error) = read_all(&wanted, max_bytes, read_committed);
        let expired = Instant::now() >= deadline;
        if bytes >= min_bytes || bytes > 0 && min_bytes == 0 || any_error || expired {
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
            let (partitions, slices, _, _) = read_all(&wanted, max_bytes, read_committed);
            break (partitions, slices);
        }
    };
    drop(parked);

    for (w, data) in wanted.iter().zip(partitions) {
        if let Some(topic) = topics.get_mut(w.topic_index) {
            topic.partitions.push(data);
        }
    }
    FetchAnswer {
        response: FetchResponse::default()
            .with_error_code(0)
            .with_session_id(0)
            .with_responses(topics),
        slices,
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
                let slice = slices.next().ok_or_else(|| {
                    runnel_storage::StorageError::Corrupt("fewer slices than placeholders".into())
                })?;
                partition.records = Some(slice.read_to_bytes()?);
            }
        }
    }
    Ok(response)
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
        let log = partition.lock_log();
        let hw = log.high_watermark();
        let base = base
            .with_high_watermark(hw)
            // No transactions yet: everything below the HW is stable.
            .with_last_stable_offset(hw)
            .with_log_start_offset(log.log_start_offset());
        // KIP-74: the first partition that has data returns at least one whole batch, even one
        // larger than the limits, so a consumer can always make progress.
        let partition_limit = usize::try_from(w.partition_max_bytes).unwrap_or(0);
        let limit = partition_limit.min(max_bytes.saturating_sub(total));
        let read = log
            .read_file_slice(w.fetch_offset, limit, hw, total == 0)
            .and_then(|slice| {
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
        drop(log);
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
