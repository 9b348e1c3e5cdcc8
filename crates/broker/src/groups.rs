//! The async shell around the sans-IO group coordinator: it owns the clock, the timer, the
//! `__consumer_offsets` logs and the reply channels; the coordinator owns every decision.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ResponseKind;
use runnel_cluster::group::coordinator::{GroupCoordinator, GroupRequest, Output, RequestId};
use runnel_cluster::group::ClientInfo;
use runnel_cluster::group::{GroupConfig, Record};
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};
use tokio::sync::{oneshot, Notify};

use crate::state::{now_ms, Broker};

/// Kafka's `GROUP_METADATA_TOPIC_NAME`.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Bytes read per step while replaying `__consumer_offsets` at startup.
const REPLAY_READ_BYTES: usize = 1 << 20;

pub struct Groups {
    coordinator: Mutex<GroupCoordinator>,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<ResponseKind>>>,
    next_id: AtomicU64,
    /// Wakes the timer task when a request may have moved the next deadline.
    timer: Notify,
    pub config: GroupConfig,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            coordinator: Mutex::new(GroupCoordinator::new(config.clone())),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            timer: Notify::new(),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupCoordinator> {
        self.coordinator.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn partition_for(&self, group_id: &str) -> i32 {
        self.lock().partition_for(group_id)
    }

    /// Hands a request to the coordinator and waits for its response, which may come later
    /// (a JoinGroup waits for the rebalance).
    pub async fn call(
        &self,
        broker: &Broker,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
    ) -> Option<ResponseKind> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        {
            let image = broker.image();
            let mut coordinator = self.lock();
            let outputs = coordinator.handle_from(id, version, client, request, now_ms(), &*image);
            // Outputs are applied under the coordinator lock so the log holds records in the
            // order the coordinator decided them.
            self.apply(broker, outputs);
        }
        self.timer.notify_one();
        rx.await.ok()
    }

    /// Runs timers (session expiry, rebalance and join delays, offsets retention) forever.
    pub async fn run_timers(self: Arc<Self>, broker: Arc<Broker>) {
        loop {
            let next = self.lock().next_deadline_ms();
            let wait = match next {
                Some(deadline) => {
                    Duration::from_millis(u64::try_from(deadline - now_ms()).unwrap_or(0))
                }
                None => Duration::from_secs(3600),
            };
            let notified = self.timer.notified();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = notified => continue,
            }
            let image = broker.image();
            let mut coordinator = self.lock();
            let outputs = coordinator.tick(now_ms(), &*image);
            self.apply(&broker, outputs);
        }
    }

    fn send(&self, id: RequestId, response: ResponseKind) {
        let sender = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(sender) = sender {
            // The client may have gone away; its response is simply dropped.
            let _ = sender.send(response);
        }
    }

    fn apply(&self, broker: &Broker, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Respond(id, response) => self.send(id, response),
                Output::Append {
                    partition,
                    records,
                    on_success,
                    on_failure,
                } => {
                    let outcome = append_records(broker, partition, &records);
                    let responses = match outcome {
                        Ok(()) => on_success,
                        Err(e) => {
                            tracing::error!(partition, error = %e, "appending to __consumer_offsets failed");
                            on_failure
                        }
                    };
                    for (id, response) in responses {
                        self.send(id, response);
                    }
                }
            }
        }
    }

    /// Rebuilds group state from `__consumer_offsets` (all partitions, in log order).
    pub fn replay(&self, broker: &Broker) -> anyhow::Result<()> {
        let image = broker.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let mut coordinator = self.lock();
        let mut records = 0u64;
        for index in 0..topic.partitions as i32 {
            let Some(partition) = broker.partition(&topic.topic_id, index) else {
                continue;
            };
            let log = partition.lock_log();
            let mut offset = log.log_start_offset();
            let end = log.high_watermark();
            while offset < end {
                let bytes = log.read(offset, REPLAY_READ_BYTES, end, true)?;
                if bytes.is_empty() {
                    break;
                }
                let mut next = offset;
                runnel_protocol::batch::for_each_stored_record(
                    &bytes,
                    |record_offset, key, value| {
                        next = record_offset + 1;
                        if let Some(key) = key {
                            if let Err(e) = coordinator.replay(key, value) {
                                tracing::warn!(partition = index, offset = record_offset, error = %e, "skipping unreadable __consumer_offsets record");
                            }
                            records += 1;
                        }
                    },
                )?;
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
        coordinator.finish_replay(now_ms());
        tracing::info!(records, "group state replayed from __consumer_offsets");
        Ok(())
    }
}

/// Appends one uncompressed batch of records to a `__consumer_offsets` partition and commits
/// it (single node: HW = LEO).
fn append_records(broker: &Broker, partition: i32, records: &[Record]) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let image = broker.image();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC} does not exist"))?;
    let partition = broker
        .partition(&topic.topic_id, partition)
        .ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC}-{partition} is not open"))?;
    let spec = BatchSpec {
        base_timestamp: now_ms(),
        records: records
            .iter()
            .map(|(key, value)| RecordSpec {
                timestamp_delta: 0,
                key: Some(key.as_ref()),
                value: value.as_ref().map(Bytes::as_ref),
                headers: vec![],
            })
            .collect(),
        ..Default::default()
    };
    let batch = Bytes::from(encode_uncompressed_batch(&spec));
    let mut log = partition.lock_log();
    log.append_as_leader(batch, partition.leader_epoch, now_ms())?;
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    drop(log);
    partition.wake_waiters();
    Ok(())
}

/// Topic configs of `__consumer_offsets`, as Kafka creates it (`offsets.topic.segment.bytes`,
/// compaction).
pub fn offsets_topic_configs() -> BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact"),
        ("compression.type", "producer"),
        ("segment.bytes", "104857600"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == "__transaction_state"
}
