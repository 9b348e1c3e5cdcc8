//! The async shell around the sans-IO group coordinator: it owns the clock, the timer, the
//! `__consumer_offsets` logs and the reply channels; the coordinator owns every decision.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ResponseKind;
use runnel_cluster::group::coordinator::{GroupCoordinator, GroupRequest, Output, RequestId};
use runnel_cluster::group::ClientInfo;
use runnel_cluster::group::{GroupConfig, Record};
use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};
use tokio::sync::{oneshot, Notify};

use crate::replica::{AppendOrigin, AppendWait};
use runnel_cluster::MetadataImage;

use crate::clock::now_ms;
use crate::internal_topics::OFFSETS_TOPIC;
use crate::replica::ReplicaManager;

/// What the coordinator shell needs of the broker: the metadata image (topics and their
/// registrations) and the replica layer (appends, and reads when replaying).
pub trait GroupsEnv: Send + Sync + 'static {
    fn image(&self) -> Arc<MetadataImage>;
    fn replicas(&self) -> &ReplicaManager;
}

/// Bytes read per step while replaying `__consumer_offsets` at startup.
const REPLAY_READ_BYTES: usize = 1 << 20;

pub struct Groups {
    /// The coordinator. A panic while it is held leaves its state half-changed, so a poisoned
    /// lock fails the coordinator for good (every request answered COORDINATOR_NOT_AVAILABLE)
    /// rather than serving that state.
    coordinator: Mutex<GroupCoordinator>,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<ResponseKind>>>,
    /// Appends waiting for their group-commit round (fsync mode), in the order they went into
    /// the log. Their records are applied to the coordinator (`on_committed`) and their
    /// responses sent strictly in that order, whatever order the rounds' waiters wake in.
    /// Bounded like the partitions' own group-commit queues: one entry per request or timer
    /// decision in flight.
    appending: Mutex<VecDeque<InFlightAppend>>,
    next_id: AtomicU64,
    /// Wakes the timer task when a request may have moved the next deadline.
    timer: Notify,
    pub config: GroupConfig,
}

/// An append to `__consumer_offsets` whose outcome is not applied yet.
struct InFlightAppend {
    /// Set once the append's fate is known: committed (`true`) or failed.
    committed: Arc<OnceLock<bool>>,
    records: Vec<Record>,
    on_success: Vec<(RequestId, ResponseKind)>,
    on_failure: Vec<(RequestId, ResponseKind)>,
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        Groups {
            coordinator: Mutex::new(GroupCoordinator::new(config.clone())),
            pending: Mutex::new(HashMap::new()),
            appending: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            timer: Notify::new(),
            config,
        }
    }

    /// The coordinator, or `None` once a panic poisoned it (see the field).
    fn lock(&self) -> Option<MutexGuard<'_, GroupCoordinator>> {
        match self.coordinator.lock() {
            Ok(guard) => Some(guard),
            Err(_) => {
                tracing::error!("the group coordinator failed (a panic while it was held); refusing group requests until restart");
                None
            }
        }
    }

    /// Hands a request to the coordinator and waits for its response, which may come later
    /// (a JoinGroup waits for the rebalance; a write waits for its append).
    pub async fn call<E: GroupsEnv + ?Sized>(
        self: &Arc<Self>,
        broker: &E,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
    ) -> Option<ResponseKind> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let image = broker.image();
            let Some(mut coordinator) = self.lock() else {
                return Some(
                    request.error_response(version, ResponseError::CoordinatorNotAvailable.code()),
                );
            };
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, tx);
            let outputs = coordinator.handle_from(id, version, client, request, now_ms(), &*image);
            // Outputs are applied under the coordinator lock so the log holds records in the
            // order the coordinator decided them.
            self.apply(broker, &mut coordinator, outputs);
        }
        self.timer.notify_one();
        rx.await.ok()
    }

    /// Runs timers (session expiry, rebalance and join delays, offsets retention) until the
    /// coordinator fails.
    pub async fn run_timers<E: GroupsEnv>(self: Arc<Self>, broker: Arc<E>) {
        loop {
            let Some(next) = self.lock().map(|c| c.next_deadline_ms()) else {
                return;
            };
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
            let Some(mut coordinator) = self.lock() else {
                return;
            };
            let outputs = coordinator.tick(now_ms(), &*image);
            self.apply(&*broker, &mut coordinator, outputs);
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

    /// Carries out the coordinator's outputs: responses go out, records go to the log through
    /// the replica layer, and each append's responses wait for it to be committed.
    fn apply<E: GroupsEnv + ?Sized>(
        self: &Arc<Self>,
        broker: &E,
        coordinator: &mut GroupCoordinator,
        outputs: Vec<Output>,
    ) {
        for output in outputs {
            match output {
                Output::Respond(id, response) => self.send(id, response),
                Output::Append {
                    partition,
                    records,
                    on_success,
                    on_failure,
                } => {
                    let committed = Arc::new(OnceLock::new());
                    match append_records(broker, partition, &records) {
                        Ok(AppendWait::Done(outcome)) => {
                            let ok = outcome
                                .inspect_err(|e| tracing::error!(partition, error = %e, "appending to __consumer_offsets failed"))
                                .is_ok();
                            let _ = committed.set(ok);
                        }
                        Ok(wait @ AppendWait::Pending(_)) => {
                            let groups = Arc::clone(self);
                            let slot = Arc::clone(&committed);
                            tokio::spawn(async move {
                                let ok = wait
                                    .wait()
                                    .await
                                    .inspect_err(|e| tracing::error!(partition, error = %e, "appending to __consumer_offsets failed"))
                                    .is_ok();
                                let _ = slot.set(ok);
                                groups.finish_appends(None);
                            });
                        }
                        Err(e) => {
                            tracing::error!(partition, error = %e, "appending to __consumer_offsets failed");
                            let _ = committed.set(false);
                        }
                    }
                    self.appending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(InFlightAppend {
                            committed,
                            records,
                            on_success,
                            on_failure,
                        });
                    self.finish_appends(Some(coordinator));
                }
            }
        }
    }

    /// Applies, in log order, every append at the head of the queue whose fate is known:
    /// committed records reach the coordinator (`on_committed`) and then their responses go
    /// out; failed ones answer with their failure responses. `coordinator` is the caller's
    /// guard when it holds one (lock order: coordinator, then the queue).
    fn finish_appends(&self, coordinator: Option<&mut GroupCoordinator>) {
        let mut guard;
        let mut coordinator = match coordinator {
            Some(c) => Some(c),
            None => {
                guard = self.lock();
                guard.as_deref_mut()
            }
        };
        let mut appending = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&ok) = appending.front().and_then(|a| a.committed.get()) {
            let Some(done) = appending.pop_front() else {
                break;
            };
            let responses = match (&mut coordinator, ok) {
                (Some(coordinator), true) => {
                    coordinator.on_committed(&done.records);
                    done.on_success
                }
                // Failed, or committed while the coordinator has failed: nothing it decided
                // can be trusted to have taken effect.
                _ => done.on_failure,
            };
            for (id, response) in responses {
                self.send(id, response);
            }
        }
    }

    /// Rebuilds group state from `__consumer_offsets` (all partitions, in log order).
    pub fn replay<E: GroupsEnv + ?Sized>(&self, broker: &E) -> anyhow::Result<()> {
        let image = broker.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let mut coordinator = self
            .lock()
            .ok_or_else(|| anyhow::anyhow!("the group coordinator failed"))?;
        let mut records = 0u64;
        for index in 0..topic.partitions as i32 {
            let Some(partition) = broker.replicas().partition(&topic.topic_id, index) else {
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

/// Appends one uncompressed batch of records to a `__consumer_offsets` partition through the
/// replica layer, as the group coordinator's write (durable as the partition's policy says).
fn append_records<E: GroupsEnv + ?Sized>(
    broker: &E,
    partition: i32,
    records: &[Record],
) -> anyhow::Result<AppendWait> {
    assert!(
        !records.is_empty(),
        "the coordinator appends no empty batches"
    );
    let image = broker.image();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or_else(|| anyhow::anyhow!("{OFFSETS_TOPIC} does not exist"))?;
    let partition = broker
        .replicas()
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
    broker
        .replicas()
        .append_records(&partition, AppendOrigin::Coordinator, -1, batch)
        .map_err(|refused| anyhow::anyhow!("append refused with error {}", refused.code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Broker;
    use kafka_protocol::messages::{GroupId, ListGroupsRequest, OffsetFetchRequest};
    use kafka_protocol::protocol::StrBytes;

    // Proves a coordinator poisoned by a panic is never served again: requests are answered
    // COORDINATOR_NOT_AVAILABLE (the poisoned state used to be taken and served as is).
    #[tokio::test]
    async fn a_poisoned_coordinator_answers_coordinator_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        let groups = Arc::clone(&broker.groups);
        let list = || GroupRequest::ListGroups(ListGroupsRequest::default());
        let Some(ResponseKind::ListGroups(r)) = groups
            .call(&*broker, 4, &ClientInfo::default(), list())
            .await
        else {
            panic!("no ListGroups answer");
        };
        assert_eq!(r.error_code, 0);
        let poisoner = Arc::clone(&groups);
        std::thread::spawn(move || {
            let _held = poisoner.coordinator.lock();
            panic!("a bug while the coordinator is held");
        })
        .join()
        .unwrap_err();
        let Some(ResponseKind::ListGroups(r)) = groups
            .call(&*broker, 4, &ClientInfo::default(), list())
            .await
        else {
            panic!("no ListGroups answer");
        };
        assert_eq!(r.error_code, ResponseError::CoordinatorNotAvailable.code());
        let fetch = GroupRequest::OffsetFetch(
            OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))),
        );
        let Some(ResponseKind::OffsetFetch(r)) = groups
            .call(&*broker, 7, &ClientInfo::default(), fetch)
            .await
        else {
            panic!("no OffsetFetch answer");
        };
        assert_eq!(r.error_code, ResponseError::CoordinatorNotAvailable.code());
    }
}
