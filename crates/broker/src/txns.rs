//! The transaction coordinator on the coordinator runtime: one `TxnCoordinator` shard per
//! `__transaction_state` partition this broker leads, the routing of transaction requests to
//! them (Kafka's `partitionFor` of the transactional id), and the shell's effects: writing the
//! markers a shard asks for, and fetching the producer-id blocks it hands out.
//!
//! Markers: each `WriteMarkers` of a shard becomes `txn_markers::write_txn_markers` for the
//! partitions this broker leads and a WriteTxnMarkers request to the leader of each other
//! partition (`txn_markers::route_txn_markers`, Kafka's `TransactionMarkerChannelManager`),
//! then `markers_written` back into the shard, which writes the transaction's completion once
//! every partition has its marker. Retriable failures (NOT_LEADER_OR_FOLLOWER after
//! leadership moved, a lost connection) are tried again with backoff after re-reading the
//! image, deleted partitions are given up as Kafka gives them up, partitions without a leader
//! wait for one, and a fenced coordinator stops (its successor finishes the transaction).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use runnel_cluster::group::ClientInfo;
use runnel_cluster::shard_leadership::LoadId;
use runnel_cluster::txn::shard::shard_outputs;
use runnel_cluster::txn::{
    transaction_partition_for, MarkerWrite, PartitionView, TxnConfig, TxnCoordinator, TxnEffect,
    TxnRequest, TxnResult,
};
use runnel_cluster::MetadataImage;

use crate::config::TxnSettings;
use crate::coordinator_runtime::{CoordinatorEnv, CoordinatorRuntime};
use crate::failpoint::{failpoint, is_armed};
use crate::internal_topics::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::replica::ReplicaManager;
use std::future::Future;
use std::pin::Pin;

use runnel_storage::TxnMarker;

type Runtime = CoordinatorRuntime<TxnCoordinator>;

/// One marker for partitions led here (Kafka's `WritableTxnMarker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    pub marker: TxnMarker,
    /// (topic name, partition index); a topic's partitions share its name (a request may
    /// name millions of partitions of one topic).
    pub partitions: Vec<(Arc<str>, i32)>,
}

/// What happened to one marker's partitions (Kafka's `WritableTxnMarkerResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerResult {
    pub producer_id: i64,
    /// (topic name, partition index, error code).
    pub partitions: Vec<(Arc<str>, i32, i16)>,
}

/// What the transaction coordinator's shell needs of the broker besides the runtime's view:
/// its node id, markers written to the partitions it leads (`txn_markers`), and blocks of
/// producer ids from the controller. A trait, so the shell does not depend on the broker that
/// owns it.
pub trait TxnEnv: CoordinatorEnv {
    fn node_id(&self) -> i32;
    /// Writes the markers (as WriteTxnMarkers does) and answers per partition.
    fn write_markers(
        &self,
        markers: Vec<MarkerRequest>,
    ) -> Pin<Box<dyn Future<Output = Vec<MarkerResult>> + Send + '_>>;
    /// A block of producer ids `(first, count)` no one else gets.
    fn allocate_producer_id_block(&self) -> anyhow::Result<(i64, i64)>;
}

/// First wait before a marker write is tried again.
const MARKER_RETRY_BACKOFF_MS_MIN: u64 = 100;
/// Longest wait between tries of a marker write.
const MARKER_RETRY_BACKOFF_MS_MAX: u64 = 2_000;
/// Wait before asking again for producer ids after the controller failed to hand a block out.
const PRODUCER_IDS_RETRY_BACKOFF_MS: u64 = 1_000;

pub struct Txns {
    runtime: Arc<Runtime>,
    /// Woken whenever a shard commits a batch (see [`Txns::completion`]), one per slot of
    /// `__transaction_state` partitions.
    completions: Arc<Vec<Notify>>,
    /// The broker the effects work on, set once it is built (it owns this shell).
    broker: Arc<OnceLock<Weak<dyn TxnEnv>>>,
    pub settings: TxnSettings,
}

impl Txns {
    pub fn new(settings: TxnSettings) -> Txns {
        let shard_config = settings.coordinator.clone();
        let broker: Arc<OnceLock<Weak<dyn TxnEnv>>> = Arc::new(OnceLock::new());
        let hook_broker = Arc::clone(&broker);
        let slots = usize::try_from(settings.coordinator.transaction_state_partitions)
            .unwrap_or(1)
            .clamp(1, COMPLETION_SLOTS_MAX);
        let completions: Arc<Vec<Notify>> = Arc::new((0..slots).map(|_| Notify::new()).collect());
        let observed = Arc::clone(&completions);
        let runtime = CoordinatorRuntime::new(
            "transaction coordinator",
            TRANSACTION_STATE_TOPIC,
            move |partition, image: &MetadataImage| {
                // Transactional ids hash over the partitions the topic has, whatever the
                // config says now (Kafka reads the count from the existing topic too); the
                // same for the groups AddOffsetsToTxn names.
                let count = |topic: &str, configured: i32| {
                    image
                        .topic(topic)
                        .and_then(|t| i32::try_from(t.partitions).ok())
                        .unwrap_or(configured)
                };
                let config = TxnConfig {
                    transaction_state_partitions: count(
                        TRANSACTION_STATE_TOPIC,
                        shard_config.transaction_state_partitions,
                    ),
                    offsets_topic_partitions: count(
                        OFFSETS_TOPIC,
                        shard_config.offsets_topic_partitions,
                    ),
                    transaction_version_level: transaction_version_level(image),
                    ..shard_config.clone()
                };
                let coordinator_epoch = image
                    .topic(TRANSACTION_STATE_TOPIC)
                    .and_then(|t| t.registration(partition))
                    .map_or(0, |r| r.leader_epoch);
                TxnCoordinator::new(config, partition, coordinator_epoch)
            },
        )
        .with_effect_hook(Box::new(move |runtime, partition, load, effect| {
            on_effect(&hook_broker, runtime, partition, load, effect)
        }))
        .with_commit_observer(Box::new(move |partition, _records| {
            completion_slot(&observed, partition).notify_waiters();
        }));
        Txns {
            runtime: Arc::new(runtime),
            completions,
            broker,
            settings,
        }
    }

    /// Notified after the shard that owns `transactional_id` committed a batch (a transaction
    /// completed, say), so a TV2 add that met CONCURRENT_TRANSACTIONS can ask again as soon as
    /// the previous transaction's markers are written instead of after a fixed backoff. Wakes
    /// may be spurious (other ids of the shard, or of another shard sharing the slot): a woken
    /// waiter asks the coordinator again, bounded by its own deadline.
    pub fn completion(&self, transactional_id: &str, image: &MetadataImage) -> &Notify {
        let partitions = image
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| i32::try_from(t.partitions).ok())
            .unwrap_or(1)
            .max(1);
        completion_slot(
            &self.completions,
            transaction_partition_for(transactional_id, partitions),
        )
    }

    /// Gives the shell the broker it works for (once, right after the broker is built).
    pub fn attach<E: TxnEnv + 'static>(&self, broker: &Arc<E>) {
        let env: Arc<dyn TxnEnv> = Arc::clone(broker) as Arc<dyn TxnEnv>;
        let _ = self.broker.set(Arc::downgrade(&env));
        let coordinator_env: Arc<dyn CoordinatorEnv> = env;
        self.runtime.attach(Arc::downgrade(&coordinator_env));
    }

    /// Tells every loaded shard the cluster's `transaction.version` (after UpdateFeatures).
    pub fn set_transaction_version_level(&self, level: i16) {
        let Some(broker) = self.broker.get().and_then(Weak::upgrade) else {
            return;
        };
        for partition in self.runtime.loaded() {
            self.runtime.drive(&*broker, partition, |engine, _, _| {
                engine.set_transaction_version_level(level);
                Vec::new()
            });
        }
    }

    /// Runs `f` on every loaded shard in turn (see `CoordinatorRuntime::inspect`).
    pub fn inspect(&self, f: impl FnMut(&TxnCoordinator)) {
        self.runtime.inspect(f);
    }

    /// Test hook: see `CoordinatorRuntime::start_loading`.
    #[cfg(test)]
    pub(crate) fn start_loading(&self, partition: i32, epoch: i32) {
        self.runtime.start_loading(partition, epoch);
    }

    /// The partitions whose shards are loaded.
    pub fn loaded(&self) -> Vec<i32> {
        self.runtime.loaded()
    }

    /// Loads the shard of every `__transaction_state` partition `node_id` leads (startup).
    pub fn load_led(
        &self,
        node_id: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
    ) -> anyhow::Result<()> {
        self.runtime.load_led(node_id, image, replicas)
    }

    /// Loads and unloads shards as a committed metadata delta moves the leadership of
    /// `__transaction_state` partitions (see `CoordinatorRuntime::follow_leadership`).
    pub fn follow_leadership(
        &self,
        image: &Arc<MetadataImage>,
        delta: &runnel_cluster::metadata::MetadataDelta,
        node_id: i32,
        replicas: &ReplicaManager,
    ) {
        self.runtime
            .follow_leadership(image, delta, node_id, replicas);
    }

    /// Loads (or reloads) the shard of `partition` from its log.
    pub fn load(
        &self,
        partition: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
    ) -> anyhow::Result<()> {
        self.runtime.load(partition, image, replicas)
    }

    /// Stops serving the shard of `partition` (leadership moved away).
    pub fn unload(&self, partition: i32) {
        self.runtime.unload(partition);
    }

    /// Runs the shards' timers (transaction timeouts, transactional id expiry, retries).
    pub async fn run_timers<E: CoordinatorEnv + 'static>(self: Arc<Self>, env: Arc<E>) {
        Arc::clone(&self.runtime).run_timers(env).await;
    }

    /// Answers a transaction request: routed to the shard of its transactional id, split by
    /// shard when it names several (merged back in the request's order), or asked of every
    /// loaded shard (ListTransactions). `None` only if a shard vanished without answering.
    pub async fn call<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        version: i16,
        request: TxnRequest,
    ) -> Option<ResponseKind> {
        let client = ClientInfo::default();
        if let TxnRequest::AddPartitionsToTxn(r) = &request {
            if version < 4 {
                if let Some(answer) = unknown_partitions_answer(&env.image(), r) {
                    return Some(answer);
                }
            }
        }
        let partitions = env
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| i32::try_from(t.partitions).ok());
        let Some(partitions) = partitions else {
            if let TxnRequest::ListTransactions(r) = &request {
                // No shard anywhere, so no transaction: Kafka lists the (no) partitions it owns,
                // still naming the state filters it does not know.
                let unknown = r
                    .state_filters
                    .iter()
                    .filter(|f| runnel_cluster::txn::TxnState::from_name(f.as_str()).is_none())
                    .cloned()
                    .collect();
                return Some(ResponseKind::ListTransactions(
                    ListTransactionsResponse::default().with_unknown_state_filters(unknown),
                ));
            }
            // No coordinator anywhere yet: the client looks one up (which creates the topic).
            return Some(request.error_response(version, ResponseError::NotCoordinator.code()));
        };
        let one = |id: &str| transaction_partition_for(id, partitions);
        match request {
            TxnRequest::InitProducerId(ref r) => {
                let id = r
                    .transactional_id
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                self.runtime
                    .call(env, one(&id), version, &client, request)
                    .await
            }
            TxnRequest::AddOffsetsToTxn(ref r) => {
                let p = one(&r.transactional_id);
                self.runtime.call(env, p, version, &client, request).await
            }
            TxnRequest::EndTxn(ref r) => {
                let p = one(&r.transactional_id);
                self.runtime.call(env, p, version, &client, request).await
            }
            TxnRequest::AddPartitionsToTxn(r) if version < 4 => {
                let p = one(&r.v3_and_below_transactional_id);
                self.runtime
                    .call(env, p, version, &client, TxnRequest::AddPartitionsToTxn(r))
                    .await
            }
            TxnRequest::AddPartitionsToTxn(r) => {
                let mut merged = AddPartitionsToTxnResponse::default();
                for (p, positions) in
                    by_partition(&r.transactions, |t| t.transactional_id.0.as_str(), &one)
                {
                    let mut sub = r.clone();
                    sub.transactions = positions
                        .iter()
                        .map(|&i| r.transactions[i].clone())
                        .collect();
                    let answer = self
                        .runtime
                        .call(
                            env,
                            p,
                            version,
                            &client,
                            TxnRequest::AddPartitionsToTxn(sub),
                        )
                        .await?;
                    if let ResponseKind::AddPartitionsToTxn(a) = answer {
                        if merged.error_code == 0 {
                            merged.error_code = a.error_code;
                        }
                        merged
                            .results_by_transaction
                            .extend(a.results_by_transaction);
                    }
                }
                Some(ResponseKind::AddPartitionsToTxn(merged))
            }
            TxnRequest::DescribeTransactions(r) => {
                let mut placed = Vec::with_capacity(r.transactional_ids.len());
                for (p, positions) in by_partition(&r.transactional_ids, |t| t.0.as_str(), &one) {
                    let mut sub = r.clone();
                    sub.transactional_ids = positions
                        .iter()
                        .map(|&i| r.transactional_ids[i].clone())
                        .collect();
                    let answer = self
                        .runtime
                        .call(
                            env,
                            p,
                            version,
                            &client,
                            TxnRequest::DescribeTransactions(sub),
                        )
                        .await?;
                    if let ResponseKind::DescribeTransactions(a) = answer {
                        placed.extend(positions.into_iter().zip(a.transaction_states));
                    }
                }
                placed.sort_by_key(|(i, _)| *i);
                Some(ResponseKind::DescribeTransactions(
                    DescribeTransactionsResponse::default()
                        .with_transaction_states(placed.into_iter().map(|(_, s)| s).collect()),
                ))
            }
            TxnRequest::ListTransactions(r) => {
                let mut merged = ListTransactionsResponse::default();
                for p in self.runtime.loaded() {
                    let answer = self
                        .runtime
                        .call(
                            env,
                            p,
                            version,
                            &client,
                            TxnRequest::ListTransactions(r.clone()),
                        )
                        .await?;
                    let ResponseKind::ListTransactions(a) = answer else {
                        continue;
                    };
                    // A shard unloaded meanwhile: its transactions are another broker's now.
                    if a.error_code == ResponseError::NotCoordinator.code() {
                        continue;
                    }
                    if merged.error_code == 0 {
                        merged.error_code = a.error_code;
                    }
                    merged.unknown_state_filters = a.unknown_state_filters;
                    merged.transaction_states.extend(a.transaction_states);
                }
                Some(ResponseKind::ListTransactions(merged))
            }
        }
    }
}

/// The cluster's finalized `transaction.version`.
pub fn transaction_version_level(image: &MetadataImage) -> i16 {
    runnel_cluster::features::level(image, runnel_cluster::features::TRANSACTION_VERSION)
}

/// Positions of `items` by the `__transaction_state` partition of their transactional id.
fn by_partition<T>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    partition_for: &dyn Fn(&str) -> i32,
) -> BTreeMap<i32, Vec<usize>> {
    let mut split: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        split.entry(partition_for(id(item))).or_default().push(i);
    }
    split
}

/// Upper bound on the completion notifiers (`Txns::completion`); partitions beyond share slots.
const COMPLETION_SLOTS_MAX: usize = 1024;

fn completion_slot(slots: &[Notify], partition: i32) -> &Notify {
    let index = usize::try_from(partition).unwrap_or(0) % slots.len();
    &slots[index]
}

/// Carries out what a shard asked of its shell, off the shard's lock.
fn on_effect(
    broker: &Arc<OnceLock<Weak<dyn TxnEnv>>>,
    runtime: &Arc<Runtime>,
    partition: i32,
    load: LoadId,
    effect: TxnEffect,
) {
    let Some(broker) = broker.get().cloned() else {
        tracing::error!("transaction coordinator effect before the broker was attached");
        return;
    };
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::error!("transaction coordinator effect outside the async runtime");
        return;
    };
    let runtime = Arc::clone(runtime);
    match effect {
        TxnEffect::WriteMarkers(write) => {
            failpoint("txn.after_prepare");
            handle.spawn(deliver_markers(broker, runtime, partition, load, write));
        }
        TxnEffect::NeedProducerIds => {
            handle.spawn(fetch_producer_ids(broker, runtime, partition, load));
        }
    }
}

/// Fetches a block of producer ids from the controller for the shard of `partition`.
async fn fetch_producer_ids(
    broker: Weak<dyn TxnEnv>,
    runtime: Arc<Runtime>,
    partition: i32,
    load: LoadId,
) {
    loop {
        let Some(b) = broker.upgrade() else {
            return;
        };
        if !runtime.is_active_load(partition, load) {
            // Unloaded: a later load asks for its own block.
            return;
        }
        match b.allocate_producer_id_block() {
            Ok((first, count)) => {
                runtime.drive_load(&*b, partition, load, |engine, _, _| {
                    engine.add_producer_ids(first, count);
                    Vec::new()
                });
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "allocating a producer id block for the transaction coordinator");
            }
        }
        drop(b);
        tokio::time::sleep(Duration::from_millis(PRODUCER_IDS_RETRY_BACKOFF_MS)).await;
    }
}

/// What to do about a partition after a marker write answered `code`
/// (Kafka's `TransactionMarkerRequestCompletionHandler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerFate {
    /// Written, or given up as Kafka gives it up.
    Done,
    /// Try again later.
    Retry,
    /// The coordinator is stale: stop, its successor finishes the transaction.
    Fenced,
}

fn marker_fate(code: i16) -> MarkerFate {
    use ResponseError::*;
    if code == 0 {
        return MarkerFate::Done;
    }
    match ResponseError::try_from_code(code) {
        // "This message format is no longer supported": Kafka drops the partition.
        Some(UnsupportedForMessageFormat) => MarkerFate::Done,
        Some(InvalidProducerEpoch | TransactionCoordinatorFenced) => MarkerFate::Fenced,
        // Retriable in Kafka (unknown partition, not leader, replicas, timeouts, storage), and
        // whatever Kafka treats as a bug: retried, logged.
        _ => MarkerFate::Retry,
    }
}

/// Writes the markers of one `WriteMarkers` to the partitions this broker leads and reports
/// them to the shard, retrying what failed until every partition is done.
async fn deliver_markers(
    broker: Weak<dyn TxnEnv>,
    runtime: Arc<Runtime>,
    partition: i32,
    load: LoadId,
    write: MarkerWrite,
) {
    let marker = runnel_storage::TxnMarker {
        producer_id: write.producer_id,
        producer_epoch: write.producer_epoch,
        coordinator_epoch: write.coordinator_epoch,
        result: match write.result {
            TxnResult::Commit => runnel_storage::TxnResult::Commit,
            TxnResult::Abort => runnel_storage::TxnResult::Abort,
        },
        transaction_version: write.transaction_version,
    };
    let one_at_a_time = is_armed("txn.between_markers");
    let mut remaining = write.partitions.clone();
    let mut backoff_ms = MARKER_RETRY_BACKOFF_MS_MIN;
    let mut first_written = false;
    loop {
        let Some(b) = broker.upgrade() else {
            return;
        };
        if !runtime.is_active_load(partition, load) {
            // Unloaded: the partition's next coordinator (here or elsewhere) sends the
            // markers again.
            return;
        }
        let image = b.image();
        let mut done = Vec::new();
        let mut here = Vec::new();
        let mut waiting = Vec::new();
        for tp in remaining.drain(..) {
            match image.leader(&tp.0, tp.1) {
                // Deleted: Kafka skips partitions whose topic no longer exists.
                None => done.push(tp),
                // Leaderless now: wait for a leader.
                Some(leader) if leader < 0 => waiting.push(tp),
                // Led here (written directly) or by another broker (a WriteTxnMarkers
                // request to it): the shell's `write_markers` routes each.
                Some(_) => here.push(tp),
            }
        }
        let batches: Vec<Vec<(String, i32)>> = if one_at_a_time {
            here.iter().map(|tp| vec![tp.clone()]).collect()
        } else if here.is_empty() {
            Vec::new()
        } else {
            vec![here.clone()]
        };
        let mut fenced = false;
        for partitions in batches {
            if fenced {
                waiting.extend(partitions);
                continue;
            }
            if first_written && one_at_a_time {
                failpoint("txn.between_markers");
            }
            let results = b
                .write_markers(vec![MarkerRequest {
                    marker,
                    partitions: partitions
                        .iter()
                        .map(|(topic, index)| (Arc::from(topic.as_str()), *index))
                        .collect(),
                }])
                .await;
            for (topic, index, code) in results.into_iter().flat_map(|r| r.partitions) {
                match marker_fate(code) {
                    MarkerFate::Done => {
                        first_written = true;
                        done.push((topic.to_string(), index));
                    }
                    MarkerFate::Retry => {
                        tracing::warn!(topic = %topic, partition = index, error = code, transactional_id = %write.transactional_id, "writing a transaction marker failed; retrying");
                        waiting.push((topic.to_string(), index));
                    }
                    MarkerFate::Fenced => {
                        tracing::warn!(topic = %topic, partition = index, error = code, transactional_id = %write.transactional_id, "transaction marker refused: this coordinator is stale; leaving the transaction to its successor");
                        fenced = true;
                    }
                }
            }
        }
        if fenced {
            return;
        }
        remaining = waiting;
        if !done.is_empty() {
            if remaining.is_empty() {
                failpoint("txn.before_complete");
            }
            let txn_id = write.transactional_id.clone();
            runtime.drive_load(&*b, partition, load, |engine, _, _| {
                shard_outputs(engine.markers_written(&txn_id, &done))
            });
        }
        if remaining.is_empty() {
            return;
        }
        drop(b);
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(MARKER_RETRY_BACKOFF_MS_MAX);
    }
}

/// Kafka's `handleAddPartitionsToTxnRequest` for v0-3: a partition the cluster does not have
/// fails the request before the coordinator sees it (wherever the coordinator is), with
/// UNKNOWN_TOPIC_OR_PARTITION for it and OPERATION_NOT_ATTEMPTED for the others; `None` when
/// every partition exists. Decided per topic, borrowing the request's names: a request of
/// millions of partitions of one long-named topic copies the name once, not per partition.
fn unknown_partitions_answer(
    image: &MetadataImage,
    r: &AddPartitionsToTxnRequest,
) -> Option<ResponseKind> {
    let mut by_topic: BTreeMap<&str, BTreeMap<i32, i16>> = BTreeMap::new();
    let mut unknown = false;
    for t in &r.v3_and_below_topics {
        let count = image.topic(t.name.as_str()).map(|topic| topic.partitions);
        let codes = by_topic.entry(t.name.as_str()).or_default();
        for &p in &t.partitions {
            let known = count.is_some_and(|n| u32::try_from(p).is_ok_and(|p| p < n));
            unknown |= !known;
            let code = if known {
                ResponseError::OperationNotAttempted
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            codes.insert(p, code.code());
        }
    }
    if !unknown {
        return None;
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, codes)| {
            add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default()
                .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                    name.to_owned(),
                )))
                .with_results_by_partition(
                    codes
                        .into_iter()
                        .map(|(partition, code)| {
                            add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(partition)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Broker;
    use kafka_protocol::protocol::StrBytes;

    async fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = crate::config::BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        broker.ensure_transaction_topic().unwrap();
        broker
    }

    /// InitProducerId v4 for `transactional_id`: (error, producer id, epoch).
    async fn init(broker: &Arc<Broker>, transactional_id: &str) -> (i16, i64, i16) {
        let request = TxnRequest::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                    transactional_id.to_owned(),
                ))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        let Some(ResponseKind::InitProducerId(r)) = broker.txns.call(&**broker, 4, request).await
        else {
            panic!("no InitProducerId answer");
        };
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// `init`, retried while the shard waits for its first block of producer ids
    /// (COORDINATOR_LOAD_IN_PROGRESS, which clients retry too).
    async fn init_retrying(broker: &Arc<Broker>, transactional_id: &str) -> (i16, i64, i16) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = init(broker, transactional_id).await;
            if answer.0 != ResponseError::CoordinatorLoadInProgress.code()
                || std::time::Instant::now() > deadline
            {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `image` with partition `partition` of `__transaction_state` led by `leader` at `epoch`,
    /// and the delta that says so.
    fn moved(
        image: &MetadataImage,
        partition: i32,
        leader: i32,
        epoch: i32,
    ) -> (Arc<MetadataImage>, runnel_cluster::metadata::MetadataDelta) {
        let mut image = image.clone();
        let mut topic = (**image.topic(TRANSACTION_STATE_TOPIC).unwrap()).clone();
        let registration = topic.registrations.get_mut(&partition).unwrap();
        registration.leader = leader;
        registration.replicas = vec![leader];
        registration.isr = vec![leader];
        registration.leader_epoch = epoch;
        let delta = runnel_cluster::metadata::MetadataDelta {
            changed_partitions: vec![(topic.topic_id, partition)],
            ..Default::default()
        };
        image
            .topics
            .insert(TRANSACTION_STATE_TOPIC.into(), Arc::new(topic));
        (Arc::new(image), delta)
    }

    // Proves the transaction coordinator's shards follow leadership: a transactional id whose
    // partition moved to node 2 answers NOT_COORDINATOR, one being loaded answers
    // COORDINATOR_LOAD_IN_PROGRESS, and leadership coming back at a newer epoch reloads the
    // shard with the producer id it had handed out (the next InitProducerId bumps its epoch).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn txn_shards_follow_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        let me = broker.node_id();
        let id = "tx-moving";
        let base = broker.image();
        let partitions =
            i32::try_from(base.topic(TRANSACTION_STATE_TOPIC).unwrap().partitions).unwrap();
        let partition = transaction_partition_for(id, partitions);
        let epoch = base
            .topic(TRANSACTION_STATE_TOPIC)
            .unwrap()
            .registration(partition)
            .unwrap()
            .leader_epoch;
        let (code, producer_id, producer_epoch) = init_retrying(&broker, id).await;
        assert_eq!(code, 0);

        let (away, delta) = moved(&base, partition, me + 1, epoch + 1);
        broker
            .txns
            .follow_leadership(&away, &delta, me, &broker.replicas);
        assert_eq!(
            init(&broker, id).await.0,
            ResponseError::NotCoordinator.code()
        );

        let (back, delta) = moved(&base, partition, me, epoch + 2);
        broker
            .txns
            .follow_leadership(&back, &delta, me, &broker.replicas);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !broker.txns.loaded().contains(&partition) {
            assert!(std::time::Instant::now() < deadline, "shard never reloaded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (code, again, bumped) = init_retrying(&broker, id).await;
        assert_eq!(code, 0);
        assert_eq!(again, producer_id);
        assert!(bumped > producer_epoch);

        broker.txns.unload(partition);
        broker.txns.start_loading(partition, epoch + 3);
        assert_eq!(
            init(&broker, id).await.0,
            ResponseError::CoordinatorLoadInProgress.code()
        );
    }
}
