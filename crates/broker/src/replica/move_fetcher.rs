//! The I/O shell of the replica fetcher (`fetcher`): one task per broker that finds the
//! partitions moving to this broker in the image and, for each, carries out the state
//! machine's steps: Fetch requests as a replica to the old replica (its first registered
//! listener, where the transaction marker channel also goes), `append_as_follower` on the
//! local copy, and the fence and complete commands through `MetadataManager::submit` (which
//! forwards to the active controller).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::reassignment::ongoing_move;
use runnel_cluster::Command;
use tokio::net::TcpStream;
use uuid::Uuid;

use super::fetcher::{FetchLimits, FetchOutcome, MoveFetcher, Step};
use crate::clock::now_ms;
use crate::state::Broker;

/// The Fetch version sent: topic names and the `ReplicaId` field (v12).
const FETCH_VERSION: i16 = 12;
/// Largest response frame accepted: the asked maximum plus room for a first batch larger
/// than it (KIP-74 returns it whole) up to a generous batch size.
const FETCH_FRAME_BYTES_MAX: usize = 128 << 20;
/// How long connecting and one fetch may take (Kafka's `replica.socket.timeout.ms` default).
const REPLICA_SOCKET_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the image is looked at for new moves when none is under way.
const IDLE_POLL: Duration = Duration::from_millis(200);
const CLIENT_ID: &str = "runnel-replica-fetcher";

/// Runs for the life of the process.
pub async fn run(broker: Arc<Broker>, limits: FetchLimits) {
    let me = broker.node_id();
    let mut moves: HashMap<(Uuid, i32), MoveFetcher> = HashMap::new();
    let mut connections: HashMap<i32, (String, TcpStream)> = HashMap::new();
    let mut correlation_id = 0i32;
    tracing::debug!(node_id = me, "replica fetcher started");
    loop {
        let image = broker.image();
        let mut wanted = Vec::new();
        for topic in image.topics.values() {
            for (index, registration) in &topic.registrations {
                if ongoing_move(registration).is_some_and(|m| m.to == me) {
                    wanted.push((Arc::clone(topic), *index, registration.clone()));
                }
            }
        }
        moves.retain(|key, _| wanted.iter().any(|(t, i, _)| (t.topic_id, *i) == *key));
        let mut progressed = false;
        for (topic, index, registration) in wanted {
            let Some(partition) = broker.partition(&topic.topic_id, index) else {
                continue;
            };
            let fetcher = moves.entry((topic.topic_id, index)).or_insert_with(|| {
                tracing::info!(topic = %topic.name, partition = index, "copying a partition moving to this broker");
                MoveFetcher::new(me)
            });
            fetcher.on_registration(&registration);
            let log_end_offset = partition.lock_log().log_end_offset();
            match fetcher.next(log_end_offset) {
                Step::Fetch {
                    from,
                    offset,
                    current_leader_epoch,
                } => {
                    let Some(address) = image
                        .brokers
                        .get(&from)
                        .map(|b| broker.inter_broker_address(b))
                    else {
                        fetcher.on_fetch(FetchOutcome::Failed, log_end_offset);
                        continue;
                    };
                    correlation_id = correlation_id.wrapping_add(1) & i32::MAX;
                    let request = fetch_request(
                        me,
                        &limits,
                        &topic.name,
                        index,
                        offset,
                        current_leader_epoch,
                    );
                    let answer =
                        exchange(&mut connections, from, &address, correlation_id, &request).await;
                    let outcome = match answer {
                        Ok(response) => apply(&partition, &response),
                        Err(e) => {
                            tracing::info!(topic = %topic.name, partition = index, from, error = %e, "replica fetch failed");
                            connections.remove(&from);
                            FetchOutcome::Failed
                        }
                    };
                    progressed |= matches!(outcome, FetchOutcome::Appended { .. });
                    let log_end_offset = partition.lock_log().log_end_offset();
                    fetcher.on_fetch(outcome, log_end_offset);
                }
                Step::StartAt(offset) => {
                    let started = partition.lock_log().truncate_fully_and_start_at(offset);
                    match started {
                        Ok(()) => fetcher.on_started(),
                        Err(e) => {
                            tracing::warn!(topic = %topic.name, partition = index, error = %e, "could not restart the copy at the old replica's log start");
                        }
                    }
                    progressed = true;
                }
                Step::Fence { partition_epoch } => {
                    let command = Command::FenceReassigningPartition {
                        topic_id: topic.topic_id,
                        partition: index,
                        node_id: me,
                        partition_epoch,
                    };
                    progressed |= submit(&broker, command, fetcher, &topic.name, index).await;
                }
                Step::Complete { partition_epoch } => {
                    // The copy becomes the only replica: it is made durable first (the old
                    // copy goes once the move completes), and everything in it is committed,
                    // so its high watermark is its log end (records the old replica appended
                    // above its high watermark were acknowledged after its fsync).
                    let ready = {
                        let mut log = partition.lock_log();
                        log.flush()
                            .map(|()| partition.advance_high_watermark(&mut log))
                    };
                    if let Err(e) = ready {
                        tracing::warn!(topic = %topic.name, partition = index, error = %e, "could not flush the copy before completing the move; retrying");
                        fetcher.on_command_failed();
                        continue;
                    }
                    let command = Command::CompleteReassignment {
                        topic_id: topic.topic_id,
                        partition: index,
                        node_id: me,
                        partition_epoch,
                    };
                    progressed |= submit(&broker, command, fetcher, &topic.name, index).await;
                }
                Step::Backoff | Step::Stop => {}
            }
        }
        if !progressed {
            let pause = if moves.is_empty() {
                IDLE_POLL
            } else {
                Duration::from_millis(limits.backoff_ms.min(IDLE_POLL.as_millis() as u64))
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// Submits a step of the move (off the async workers: it may wait for the quorum); whether it
/// was carried out.
async fn submit(
    broker: &Arc<Broker>,
    command: Command,
    fetcher: &mut MoveFetcher,
    topic: &str,
    index: i32,
) -> bool {
    let submitter = Arc::clone(broker);
    let step = format!("{command:?}");
    let submitted = tokio::task::spawn_blocking(move || {
        submitter.metadata.submit(&command, &*submitter).map(|_| ())
    })
    .await;
    match submitted {
        Ok(Ok(())) => {
            tracing::info!(topic, partition = index, %step, "partition move stepped on");
            true
        }
        Ok(Err(e)) => {
            tracing::info!(topic, partition = index, error = %e, "partition move step refused; retrying");
            fetcher.on_command_failed();
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "partition move step panicked");
            fetcher.on_command_failed();
            false
        }
    }
}

/// Appends a response's records for the one partition asked about, and says how it went.
fn apply(partition: &super::Partition, response: &FetchResponse) -> FetchOutcome {
    let Some(data) = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
    else {
        tracing::info!(topic = %partition.topic.name, partition = partition.index, "replica fetch answered no partition; retrying");
        return FetchOutcome::Failed;
    };
    if response.error_code != 0 {
        tracing::info!(topic = %partition.topic.name, partition = partition.index, error_code = response.error_code, "replica fetch refused; retrying");
        return FetchOutcome::Failed;
    }
    if data.error_code == ResponseError::OffsetOutOfRange.code() {
        return FetchOutcome::OutOfRange {
            log_start_offset: data.log_start_offset,
        };
    }
    if data.error_code != 0 {
        tracing::info!(topic = %partition.topic.name, partition = partition.index, error_code = data.error_code, "replica fetch refused; retrying");
        return FetchOutcome::Failed;
    }
    let records = data.records.clone().unwrap_or_default();
    if records.is_empty() {
        return FetchOutcome::Empty;
    }
    let mut log = partition.lock_log();
    match log.append_as_follower(records, now_ms()) {
        Ok(Some(_)) => {
            // The copy's high watermark follows the old replica's, within the copy.
            let hw = data
                .high_watermark
                .clamp(log.log_start_offset(), log.log_end_offset());
            let hw = hw.max(log.high_watermark());
            log.set_high_watermark(hw);
            let reached_high_watermark = log.log_end_offset() >= data.high_watermark;
            drop(log);
            partition.wake_waiters();
            FetchOutcome::Appended {
                reached_high_watermark,
            }
        }
        Ok(None) => {
            tracing::info!(topic = %partition.topic.name, partition = partition.index, bytes = data.records.as_ref().map_or(0, |r| r.len()), "replica fetch answered no whole batch; retrying");
            FetchOutcome::Failed
        }
        Err(e) => {
            tracing::warn!(topic = %partition.topic.name, partition = partition.index, error = %e, "appending fetched batches to the copy failed");
            FetchOutcome::Failed
        }
    }
}

fn fetch_request(
    me: i32,
    limits: &FetchLimits,
    topic: &str,
    index: i32,
    offset: i64,
    current_leader_epoch: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(limits.wait_max_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(limits.response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(StrBytes::from_string(topic.to_owned()).into())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(index)
                .with_current_leader_epoch(current_leader_epoch)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(limits.max_bytes)])])
}

/// Sends one Fetch on the kept connection to `node` (connecting first if needed).
async fn exchange(
    connections: &mut HashMap<i32, (String, TcpStream)>,
    node: i32,
    address: &str,
    correlation_id: i32,
    request: &FetchRequest,
) -> anyhow::Result<FetchResponse> {
    if connections.get(&node).is_some_and(|(a, _)| a != address) {
        connections.remove(&node);
    }
    let exchange = async {
        let (_, stream) = match connections.entry(node) {
            std::collections::hash_map::Entry::Occupied(kept) => kept.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                slot.insert((address.to_owned(), stream))
            }
        };
        fetch_on(stream, correlation_id, request).await
    };
    tokio::time::timeout(REPLICA_SOCKET_TIMEOUT, exchange)
        .await
        .context("replica fetch timed out")?
}

async fn fetch_on(
    stream: &mut TcpStream,
    correlation_id: i32,
    request: &FetchRequest,
) -> anyhow::Result<FetchResponse> {
    let call = crate::peer_request::Call {
        key: ApiKey::Fetch,
        version: FETCH_VERSION,
        correlation_id,
        client_id: CLIENT_ID,
        response_bytes_max: FETCH_FRAME_BYTES_MAX,
    };
    crate::peer_request::exchange(stream, call, request).await
}
