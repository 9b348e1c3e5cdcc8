//! The coordinator runtime (Kafka's `CoordinatorRuntime`): runs the shards of a coordinator,
//! one per partition of its internal topic that this broker leads.
//!
//! For each shard it loads state by replaying the partition's log, feeds it requests and clock
//! ticks under the shard's own lock (shards never wait for each other), appends the records
//! the shard asks for through the replica layer (so fsync mode and group commit apply to
//! them), and only once an append is committed applies it to the shard (`on_committed`) and
//! sends the responses that waited for it, in log order. Nothing is visible before its append
//! succeeded.
//!
//! What a shard asks besides responses and appends (transaction markers, producer-id blocks)
//! is handed to the shell's effect hook, which does it off the shard's lock and reports back
//! through `drive`; an append's fate goes back to the shard with its token, and whatever the
//! shard then asks for is carried out the same way.
//!
//! Loading and unloading are the hooks leadership moves use: a request for a partition whose
//! shard is not loaded here is answered NOT_COORDINATOR (the client looks the coordinator up
//! again), and a shard that panicked is failed for good (COORDINATOR_NOT_AVAILABLE) rather
//! than served half-changed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ResponseKind;
use runnel_cluster::group::{ClientInfo, Record, RequestId};
use runnel_cluster::metadata::MetadataDelta;
use runnel_cluster::shard::{
    AppendBatch, AppendRequest, AppendToken, CoordinatorShard, ReplayBatch, ShardOutput,
};
use runnel_cluster::shard_leadership::{
    leadership_changes, Elect, LeadershipChange, LoadId, Lookup, ShardSlots, SlotState,
};
use runnel_cluster::MetadataImage;
use runnel_protocol::batch::{encode_uncompressed_batch, BatchHeader, BatchSpec, RecordSpec};
use tokio::sync::{oneshot, Notify};

use crate::clock::now_ms;
use crate::replica::{AppendOrigin, AppendWait, Partition, ReplicaManager};

/// The transactional bit of a batch's attributes (Kafka's `TRANSACTIONAL_FLAG_MASK`).
const ATTR_TRANSACTIONAL: i16 = 0x10;

/// Bytes read per step while replaying a partition.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// What the runtime needs of the broker: the metadata image (topics and their registrations)
/// and the replica layer (appends, and reads while loading).
pub trait CoordinatorEnv: Send + Sync {
    fn image(&self) -> Arc<MetadataImage>;
    fn replicas(&self) -> &ReplicaManager;
}

/// The fate of an append: committed at this base offset, or failed with a Kafka error code.
type Fate = Result<i64, i16>;

/// An append whose outcome is not applied yet.
struct InFlightAppend {
    /// Set once the append's fate is known.
    committed: Arc<OnceLock<Fate>>,
    token: AppendToken,
    records: Vec<Record>,
    on_success: Vec<(RequestId, ResponseKind)>,
    on_failure: Vec<(RequestId, ResponseKind)>,
}

/// A caller waiting for its response.
struct Waiting {
    sender: oneshot::Sender<ResponseKind>,
    /// Its answer if the shard goes away first, built when the request came in (the request
    /// itself went to the engine).
    not_coordinator: ResponseKind,
}

/// One loaded shard.
struct Shard<S> {
    partition: i32,
    /// Which load of the partition this is: work the shard started (marker delivery, say)
    /// stops once another load, or none, serves the partition.
    load: LoadId,
    /// The engine. A panic while it is held leaves its state half-changed, so a poisoned lock
    /// fails the shard for good rather than serving that state.
    engine: Mutex<S>,
    /// Appends waiting for their group-commit round (fsync mode), in the order they went into
    /// the log. Their records are applied and their responses sent strictly in that order,
    /// whatever order the rounds' waiters wake in. Bounded like the partitions' own
    /// group-commit queues: one entry per request or timer decision in flight.
    appending: Mutex<VecDeque<InFlightAppend>>,
    /// Callers waiting for their response, by request id. When the shard fails or is
    /// unloaded, each gets its NOT_COORDINATOR answer (Kafka fails a departing shard's
    /// deferred operations with NOT_COORDINATOR; the client looks the coordinator up again).
    pending: Mutex<HashMap<RequestId, Waiting>>,
    /// The engine's next deadline (`i64::MAX`: none), refreshed whenever the engine ran, so the
    /// timer finds the next due shard without locking every shard.
    deadline_ms: AtomicI64,
}

impl<S> Shard<S> {
    fn lock(&self, name: &str) -> Option<MutexGuard<'_, S>> {
        match self.engine.lock() {
            Ok(guard) => Some(guard),
            Err(_) => {
                tracing::error!(coordinator = name, partition = self.partition, "coordinator shard failed (a panic while it was held); refusing its requests until restart");
                self.abandon_pending();
                None
            }
        }
    }

    /// Records the engine's next deadline after it ran (the caller holds its lock).
    fn note_deadline(&self, engine: &S)
    where
        S: CoordinatorShard,
    {
        self.deadline_ms.store(
            engine.next_deadline_ms().unwrap_or(i64::MAX),
            Ordering::Release,
        );
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<RequestId, Waiting>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers every waiting caller NOT_COORDINATOR: nothing this shard decided for them can
    /// be trusted any more (it failed), or it is another broker's to decide (unloaded).
    fn abandon_pending(&self) {
        for (_, waiting) in self.pending().drain() {
            // The client may have gone away; its response is simply dropped.
            let _ = waiting.sender.send(waiting.not_coordinator);
        }
    }

    fn send(&self, id: RequestId, response: ResponseKind) {
        if let Some(waiting) = self.pending().remove(&id) {
            // The client may have gone away; its response is simply dropped.
            let _ = waiting.sender.send(response);
        }
    }
}

/// Makes an empty shard of a partition.
type ShardFactory<S> = Box<dyn Fn(i32, &MetadataImage) -> S + Send + Sync>;

/// Does what a shard asked of its shell (`ShardOutput::Effect`), for the shard of a
/// partition (and which load of it). Called under the shard's lock: it must not call back
/// into the runtime before returning (it spawns the work, which reports back through
/// `CoordinatorRuntime::drive_load`).
pub type EffectHook<S> = Box<
    dyn Fn(&Arc<CoordinatorRuntime<S>>, i32, LoadId, <S as CoordinatorShard>::Effect) + Send + Sync,
>;

/// Where a request for a partition goes.
enum Found<S> {
    Active(Arc<Shard<S>>),
    /// COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    /// NOT_COORDINATOR.
    NotHere,
}

/// How a load replays its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadMode {
    /// On the caller's thread (startup, before the broker serves; and a partition with
    /// nothing to replay, so a just-created topic serves its first request).
    Inline,
    /// On the blocking pool, the shard answering COORDINATOR_LOAD_IN_PROGRESS meanwhile, so
    /// the metadata publisher that asked is not held up by a long log.
    Background,
}

/// A view of the broker for work that outlives the call that started it (an append whose
/// group-commit round ends later may make the shard ask for more).
struct LoadEnv<'a> {
    image: Arc<MetadataImage>,
    replicas: &'a ReplicaManager,
}

impl CoordinatorEnv for LoadEnv<'_> {
    fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    fn replicas(&self) -> &ReplicaManager {
        self.replicas
    }
}

/// Told of every batch of records a shard committed (partition, records), after the shard
/// applied it: how the shell logs what the engine decided (rebalances, say) without the
/// engine doing I/O.
pub type CommitObserver = Box<dyn Fn(i32, &[Record]) + Send + Sync>;

/// The shards of one coordinator.
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    /// For logs ("group coordinator").
    name: &'static str,
    /// The internal topic whose partitions are the shards.
    topic: &'static str,
    /// Makes an empty shard for a partition, given the image (partition counts, say).
    new_shard: ShardFactory<S>,
    /// The shards by partition, with the leader epochs they were loaded for (the epoch
    /// rules are `ShardSlots`').
    shards: RwLock<ShardSlots<Arc<Shard<S>>>>,
    next_id: AtomicU64,
    /// Wakes the timer task when a request may have moved a deadline.
    timer: Notify,
    /// See `CommitObserver`; `None`: nobody listens.
    on_commit: Option<CommitObserver>,
    /// See `EffectHook`; `None`: effects are dropped (a shard without effects).
    on_effect: Option<EffectHook<S>>,
    /// The broker, for appends whose fate is known only after the call that made them
    /// returned (their shard may then ask for more). Weak: the broker owns the runtime.
    env: OnceLock<Weak<dyn CoordinatorEnv>>,
}

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    pub fn new(
        name: &'static str,
        topic: &'static str,
        new_shard: impl Fn(i32, &MetadataImage) -> S + Send + Sync + 'static,
    ) -> CoordinatorRuntime<S> {
        CoordinatorRuntime {
            name,
            topic,
            new_shard: Box::new(new_shard),
            shards: RwLock::new(ShardSlots::new()),
            next_id: AtomicU64::new(1),
            timer: Notify::new(),
            on_commit: None,
            on_effect: None,
            env: OnceLock::new(),
        }
    }

    /// Sets the hook that does what shards ask of their shell.
    pub fn with_effect_hook(mut self, hook: EffectHook<S>) -> CoordinatorRuntime<S> {
        self.on_effect = Some(hook);
        self
    }

    /// Gives the runtime the broker it serves (once, when the broker is built): appends whose
    /// fate is known later apply what the shard then asks for through it.
    pub fn attach(&self, env: Weak<dyn CoordinatorEnv>) {
        let _ = self.env.set(env);
    }

    /// Sets the observer of committed batches (replays while loading are not reported).
    pub fn with_commit_observer(mut self, observer: CommitObserver) -> CoordinatorRuntime<S> {
        self.on_commit = Some(observer);
        self
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, ShardSlots<Arc<Shard<S>>>> {
        self.shards.read().unwrap_or_else(|e| e.into_inner())
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, ShardSlots<Arc<Shard<S>>>> {
        self.shards.write().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, partition: i32) -> Found<S> {
        match self.slots().lookup(partition) {
            Lookup::Active(_, shard) => Found::Active(Arc::clone(shard)),
            Lookup::Loading => Found::Loading,
            Lookup::NotHere => Found::NotHere,
        }
    }

    fn shard(&self, partition: i32) -> Option<Arc<Shard<S>>> {
        match self.find(partition) {
            Found::Active(shard) => Some(shard),
            Found::Loading | Found::NotHere => None,
        }
    }

    fn active_shards(&self) -> Vec<Arc<Shard<S>>> {
        self.slots().active().map(|(_, s)| Arc::clone(s)).collect()
    }

    /// The partitions whose shards are loaded and serving.
    pub fn loaded(&self) -> Vec<i32> {
        self.slots().active().map(|(p, _)| p).collect()
    }

    /// Whether load `load` of `partition` is the one serving it.
    pub fn is_active_load(&self, partition: i32, load: LoadId) -> bool {
        self.slots().is_active_load(partition, load)
    }

    /// Runs `f` on every loaded shard's engine in turn, each under its lock (held only for
    /// that call), for read-only views such as the admin endpoint's. A failed shard is
    /// skipped.
    pub fn inspect(&self, mut f: impl FnMut(&S)) {
        for shard in self.active_shards() {
            if let Some(engine) = shard.lock(self.name) {
                f(&engine);
            }
        }
    }

    /// Loads, on the caller's thread, the shard of every partition of the internal topic that
    /// `node_id` leads in `image` (startup, before the broker serves).
    pub fn load_led(
        self: &Arc<Self>,
        node_id: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
    ) -> anyhow::Result<()> {
        let Some(topic) = image.topic(self.topic) else {
            return Ok(());
        };
        for (partition, registration) in &topic.registrations {
            if registration.leader == node_id {
                self.schedule_load(
                    *partition,
                    registration.leader_epoch,
                    image,
                    replicas,
                    LoadMode::Inline,
                )?;
            }
        }
        tracing::info!(
            coordinator = self.name,
            topic = self.topic,
            shards = self.loaded().len(),
            "coordinator shards loaded"
        );
        Ok(())
    }

    /// Follows the leadership changes one committed metadata delta brings (the publisher
    /// calls it for every delta): loads the shards of partitions `node_id` now leads, in the
    /// background, and unloads those it stopped leading, by the epoch rules of `ShardSlots`.
    pub fn follow_leadership(
        self: &Arc<Self>,
        image: &Arc<MetadataImage>,
        delta: &MetadataDelta,
        node_id: i32,
        replicas: &ReplicaManager,
    ) {
        for change in leadership_changes(image, delta, self.topic, node_id) {
            match change {
                LeadershipChange::Elected { partition, epoch } => {
                    let open = image
                        .topic(self.topic)
                        .and_then(|t| replicas.partition(&t.topic_id, partition))
                        .is_some();
                    if !open {
                        // Not open yet (startup registers partitions before it opens them):
                        // `load_led` loads it once it is.
                        continue;
                    }
                    if let Err(e) =
                        self.schedule_load(partition, epoch, image, replicas, LoadMode::Background)
                    {
                        tracing::error!(coordinator = self.name, topic = self.topic, partition, error = %e, "loading a coordinator shard");
                    }
                }
                LeadershipChange::Resigned { partition, epoch } => {
                    self.schedule_unload(partition, epoch);
                }
            }
        }
    }

    /// Loads (or reloads) the shard of `partition` on the caller's thread, for the leader
    /// epoch `image` registers, whatever epoch it was loaded for before.
    pub fn load(
        self: &Arc<Self>,
        partition: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
    ) -> anyhow::Result<()> {
        let epoch = image
            .topic(self.topic)
            .and_then(|t| t.registration(partition))
            .map_or(0, |r| r.leader_epoch);
        self.schedule_unload(partition, None);
        self.schedule_load(partition, epoch, image, replicas, LoadMode::Inline)
    }

    /// This broker leads `partition` at `epoch`: unless the shard is already loaded (or
    /// loading) for this epoch or a newer one, replays the partition's log up to its high
    /// watermark and then serves it; its keys answer COORDINATOR_LOAD_IN_PROGRESS meanwhile.
    /// A shard of an older epoch stops serving first (its waiting callers are told
    /// NOT_COORDINATOR).
    fn schedule_load(
        self: &Arc<Self>,
        partition: i32,
        epoch: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
        mode: LoadMode,
    ) -> anyhow::Result<()> {
        let log_partition = image
            .topic(self.topic)
            .and_then(|t| replicas.partition(&t.topic_id, partition));
        let load = match self.slots_mut().elect(partition, epoch) {
            Elect::Ignored { current_epoch } => {
                tracing::debug!(
                    coordinator = self.name,
                    partition,
                    epoch,
                    current_epoch,
                    "load ignored: the shard is at this epoch or a newer one"
                );
                return Ok(());
            }
            Elect::Load { load, replaced } => {
                if let Some(old) = replaced {
                    old.abandon_pending();
                }
                load
            }
        };
        let Some(log_partition) = log_partition else {
            self.slots_mut().load_failed(partition, load);
            anyhow::bail!("{}-{partition} is not open", self.topic);
        };
        tracing::info!(
            coordinator = self.name,
            topic = self.topic,
            partition,
            epoch,
            "loading coordinator shard"
        );
        let nothing_to_replay = {
            let offsets = log_partition.reader().offsets().snapshot();
            offsets.log_start_offset >= offsets.high_watermark
        };
        let handle = tokio::runtime::Handle::try_current().ok();
        match handle {
            Some(handle) if mode == LoadMode::Background && !nothing_to_replay => {
                let runtime = Arc::clone(self);
                let image = Arc::clone(image);
                handle.spawn_blocking(move || {
                    let replayed = runtime.replay(partition, &log_partition, &image);
                    let env = runtime.env.get().and_then(Weak::upgrade);
                    match (replayed, env) {
                        (Ok(engine), Some(env)) => {
                            runtime.install(&*env, partition, load, engine, image);
                        }
                        (Ok(_), None) => {
                            // The broker is going away.
                            runtime.slots_mut().load_failed(partition, load);
                        }
                        (Err(e), _) => {
                            tracing::error!(coordinator = runtime.name, topic = runtime.topic, partition, error = %e, "loading a coordinator shard failed");
                            runtime.slots_mut().load_failed(partition, load);
                        }
                    }
                });
                Ok(())
            }
            _ => match self.replay(partition, &log_partition, image) {
                Ok(engine) => {
                    let env = LoadEnv {
                        image: Arc::clone(image),
                        replicas,
                    };
                    self.install(&env, partition, load, engine, Arc::clone(image));
                    Ok(())
                }
                Err(e) => {
                    self.slots_mut().load_failed(partition, load);
                    Err(e)
                }
            },
        }
    }

    /// This broker no longer leads `partition` as of `epoch` (`None`: the topic is gone, or
    /// the caller says so): unless the shard was loaded for this epoch or a newer one (a stale
    /// event), it stops serving. Its requests are then answered NOT_COORDINATOR, callers
    /// waiting in it at once; its timers stop; appends in flight still complete or fail on
    /// their own, but nothing they decide is served; a load in progress is dropped when it
    /// finishes.
    pub fn schedule_unload(&self, partition: i32, epoch: Option<i32>) {
        let removed = self.slots_mut().resign(partition, epoch);
        match removed {
            Some(SlotState::Active(_, shard)) => {
                shard.abandon_pending();
                tracing::info!(
                    coordinator = self.name,
                    topic = self.topic,
                    partition,
                    ?epoch,
                    "coordinator shard unloaded"
                );
            }
            Some(SlotState::Loading(_)) => {
                tracing::info!(
                    coordinator = self.name,
                    topic = self.topic,
                    partition,
                    ?epoch,
                    "coordinator shard load cancelled"
                );
            }
            Some(SlotState::Failed | SlotState::Resigned) => {}
            None => {
                tracing::debug!(
                    coordinator = self.name,
                    partition,
                    ?epoch,
                    "unload ignored: not loaded here, or loaded for a newer epoch"
                );
            }
        }
    }

    /// Replays `partition`'s log up to the high watermark (when the replay began) into a new
    /// engine.
    fn replay(
        &self,
        partition: i32,
        log_partition: &Partition,
        image: &MetadataImage,
    ) -> anyhow::Result<S> {
        let mut engine = (self.new_shard)(partition, image);
        let mut records = 0u64;
        // Through the reader: appends to the partition (of shards already loaded) go on
        // while this one replays. The end is the high watermark when the load began.
        let log = log_partition.reader();
        let offsets = log.offsets().snapshot();
        let mut offset = offsets.log_start_offset;
        let end = offsets.high_watermark;
        while offset < end {
            let bytes = log.read(offset, REPLAY_READ_BYTES, end, true)?;
            if bytes.is_empty() {
                break;
            }
            // The next read starts after the last *batch*, not the last record: a
            // compacted log has batches whose last records were cleaned away, and empty
            // batches the cleaner kept for their offsets.
            let next = next_offset_after(&bytes).unwrap_or(offset);
            for batch in whole_batches(&bytes) {
                let header = BatchHeader::parse(batch)?;
                // A transactional batch's records are its producer's until its marker.
                let txn_producer = if header.is_transactional() {
                    header.producer_id
                } else {
                    -1
                };
                runnel_protocol::batch::for_each_stored_record(
                    batch,
                    |record_offset, key, value| {
                        if let Some(key) = key {
                            if let Err(e) =
                                engine.replay_at(record_offset, txn_producer, key, value)
                            {
                                tracing::warn!(topic = self.topic, partition, offset = record_offset, error = %e, "skipping unreadable record");
                            }
                            records += 1;
                        }
                    },
                )?;
                // After the checks of `for_each_stored_record` (CRC included).
                engine.replay_batch(&ReplayBatch {
                    header: &header,
                    bytes: batch,
                });
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
        tracing::debug!(
            coordinator = self.name,
            partition,
            records,
            "shard replayed"
        );
        Ok(engine)
    }

    /// Serves a replayed engine as load `load` of `partition`, if its slot still waits for
    /// that load (otherwise it is dropped unused), and resumes what the log left half done.
    fn install<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        partition: i32,
        load: LoadId,
        mut engine: S,
        image: Arc<MetadataImage>,
    ) {
        let outputs = engine.finish_replay(now_ms(), &image);
        let deadline_ms = AtomicI64::new(engine.next_deadline_ms().unwrap_or(i64::MAX));
        let shard = Arc::new(Shard {
            partition,
            load,
            engine: Mutex::new(engine),
            appending: Mutex::new(VecDeque::new()),
            pending: Mutex::new(HashMap::new()),
            deadline_ms,
        });
        // The shard's lock is taken before it is visible, so no request reaches it before the
        // outputs of its replay are carried out.
        let Some(mut engine) = shard.lock(self.name) else {
            return;
        };
        if self
            .slots_mut()
            .loaded(partition, load, Arc::clone(&shard))
            .is_err()
        {
            tracing::info!(
                coordinator = self.name,
                topic = self.topic,
                partition,
                "a finished load was overtaken by a leadership change; dropped"
            );
            return;
        }
        tracing::info!(
            coordinator = self.name,
            topic = self.topic,
            partition,
            "coordinator shard loaded"
        );
        // What the log left half done (markers of prepared transactions, say) resumes now.
        if !outputs.is_empty() {
            self.apply(env, &shard, &mut engine, outputs);
        }
        shard.note_deadline(&engine);
        drop(engine);
        self.timer.notify_one();
    }

    /// Runs `f` on the engine of `partition` under its lock and carries out what it returns
    /// (how the shell reports the effects it did: markers written, producer ids granted).
    /// `false` if the shard is not loaded here (or failed).
    pub fn drive<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        partition: i32,
        f: impl FnOnce(&mut S, i64, &MetadataImage) -> Vec<ShardOutput<S::Effect>>,
    ) -> bool {
        let Some(shard) = self.shard(partition) else {
            return false;
        };
        self.drive_shard(env, &shard, f)
    }

    /// `drive`, only if load `load` is the one serving `partition`: what a shard started
    /// (markers it asked for) must not reach a later load of the partition, which starts its
    /// own.
    pub fn drive_load<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        partition: i32,
        load: LoadId,
        f: impl FnOnce(&mut S, i64, &MetadataImage) -> Vec<ShardOutput<S::Effect>>,
    ) -> bool {
        match self.shard(partition) {
            Some(shard) if shard.load == load => self.drive_shard(env, &shard, f),
            _ => false,
        }
    }

    fn drive_shard<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        shard: &Arc<Shard<S>>,
        f: impl FnOnce(&mut S, i64, &MetadataImage) -> Vec<ShardOutput<S::Effect>>,
    ) -> bool {
        {
            let image = env.image();
            let Some(mut engine) = shard.lock(self.name) else {
                return false;
            };
            let outputs = f(&mut engine, now_ms(), &image);
            self.apply(env, shard, &mut engine, outputs);
            shard.note_deadline(&engine);
        }
        self.timer.notify_one();
        true
    }

    /// Stops serving the shard of `partition`, whatever epoch it was loaded for.
    pub fn unload(&self, partition: i32) {
        self.schedule_unload(partition, None);
    }

    /// Hands a request to the shard of `partition` and waits for its response, which may come
    /// later (a JoinGroup waits for its rebalance; a write waits for its append). A shard that
    /// fails or is unloaded while the request waits answers it NOT_COORDINATOR. `None` only if
    /// the shard vanished without answering, which the runtime never does; the caller then
    /// closes the connection.
    pub async fn call<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        partition: i32,
        version: i16,
        client: &ClientInfo,
        request: S::Request,
    ) -> Option<ResponseKind> {
        let shard = match self.find(partition) {
            Found::Active(shard) => shard,
            Found::Loading => {
                return Some(S::error_response(
                    &request,
                    version,
                    ResponseError::CoordinatorLoadInProgress.code(),
                ))
            }
            Found::NotHere => {
                return Some(S::error_response(
                    &request,
                    version,
                    ResponseError::NotCoordinator.code(),
                ))
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let image = env.image();
            let Some(mut engine) = shard.lock(self.name) else {
                return Some(S::error_response(
                    &request,
                    version,
                    ResponseError::CoordinatorNotAvailable.code(),
                ));
            };
            let not_coordinator =
                S::error_response(&request, version, ResponseError::NotCoordinator.code());
            shard.pending().insert(
                id,
                Waiting {
                    sender: tx,
                    not_coordinator,
                },
            );
            let outputs = engine.handle(id, version, client, request, now_ms(), &image);
            // Applied under the shard lock so the log holds records in the order the shard
            // decided them.
            self.apply(env, &shard, &mut engine, outputs);
            shard.note_deadline(&engine);
        }
        self.timer.notify_one();
        rx.await.ok()
    }

    /// Runs every loaded shard's timers forever.
    pub async fn run_timers<E: CoordinatorEnv + 'static>(self: Arc<Self>, env: Arc<E>) {
        let weak: Weak<E> = Arc::downgrade(&env);
        self.attach(weak);
        loop {
            let shards = self.active_shards();
            let next = shards
                .iter()
                .map(|s| s.deadline_ms.load(Ordering::Acquire))
                .min()
                .filter(|d| *d != i64::MAX);
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
            let image = env.image();
            let now = now_ms();
            for shard in shards {
                if shard.deadline_ms.load(Ordering::Acquire) > now {
                    continue;
                }
                // One task runs every shard's timers: a panic in one shard's tick fails that
                // shard (its lock is poisoned on the way out), never the timers of the others.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let Some(mut engine) = shard.lock(self.name) else {
                        // Failed: never due again.
                        shard.deadline_ms.store(i64::MAX, Ordering::Release);
                        return;
                    };
                    if engine.next_deadline_ms().is_some_and(|d| d <= now) {
                        let outputs = engine.tick(now, &image);
                        self.apply(&*env, &shard, &mut engine, outputs);
                    }
                    shard.note_deadline(&engine);
                }));
                if ran.is_err() {
                    shard.deadline_ms.store(i64::MAX, Ordering::Release);
                    // Logs the failure and answers its waiting callers NOT_COORDINATOR.
                    let _ = shard.lock(self.name);
                }
            }
        }
    }

    /// Carries out a shard's outputs: responses go out, records go to the log through the
    /// replica layer (each append's responses wait for it to be committed), effects go to the
    /// shell's hook.
    fn apply<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        shard: &Arc<Shard<S>>,
        engine: &mut S,
        outputs: Vec<ShardOutput<S::Effect>>,
    ) {
        // Outputs of appends that completed while these were carried out come back here, so
        // a long chain (append, commit, next append...) is a loop, not a recursion.
        let mut queue: VecDeque<ShardOutput<S::Effect>> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                ShardOutput::Respond(id, response) => shard.send(id, response),
                ShardOutput::Effect(effect) => match &self.on_effect {
                    Some(hook) => hook(self, shard.partition, shard.load, effect),
                    None => tracing::error!(
                        coordinator = self.name,
                        "a shard asked for an effect no hook carries out"
                    ),
                },
                ShardOutput::Append(request) => {
                    let AppendRequest {
                        partition,
                        token,
                        records,
                        batch,
                        on_success,
                        on_failure,
                    } = request;
                    assert_eq!(
                        partition, shard.partition,
                        "a shard appends to its own partition"
                    );
                    let committed = Arc::new(OnceLock::new());
                    match self.append(env, partition, &records, batch) {
                        Ok(AppendWait::Done(outcome)) => {
                            let fate = outcome.map(|o| o.base_offset).map_err(|e| {
                                tracing::error!(topic = self.topic, partition, error = %e, "coordinator append failed");
                                crate::errors::storage_error_code(&e)
                            });
                            let _ = committed.set(fate);
                        }
                        Ok(wait @ AppendWait::Pending(_)) => {
                            let runtime = Arc::clone(self);
                            let waiting_shard = Arc::clone(shard);
                            let slot = Arc::clone(&committed);
                            let topic = self.topic;
                            tokio::spawn(async move {
                                let fate = wait.wait().await.map(|o| o.base_offset).map_err(|e| {
                                    tracing::error!(topic, partition, error = %e, "coordinator append failed");
                                    crate::errors::storage_error_code(&e)
                                });
                                let _ = slot.set(fate);
                                runtime.finish_appends_later(&waiting_shard);
                            });
                        }
                        Err((code, e)) => {
                            tracing::error!(topic = self.topic, partition, error = %e, "coordinator append failed");
                            let _ = committed.set(Err(code));
                        }
                    }
                    shard
                        .appending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(InFlightAppend {
                            committed,
                            token,
                            records,
                            on_success,
                            on_failure,
                        });
                    let image = env.image();
                    queue.extend(self.finish_appends(shard, Some(&mut *engine), &image));
                }
            }
        }
    }

    /// `finish_appends` from an append's waiter, which holds no lock: what the shard then asks
    /// for is carried out through the attached broker.
    fn finish_appends_later(self: &Arc<Self>, shard: &Arc<Shard<S>>) {
        let Some(env) = self.env.get().and_then(Weak::upgrade) else {
            // Not attached (a bug; the broker attaches every runtime when it is built) or the
            // broker is going away: the queue stays, and the next call on the shard finishes it.
            tracing::error!(
                coordinator = self.name,
                "no broker attached to finish a coordinator append"
            );
            return;
        };
        let Some(mut engine) = shard.lock(self.name) else {
            return;
        };
        let image = env.image();
        let outputs = self.finish_appends(shard, Some(&mut engine), &image);
        if !outputs.is_empty() {
            self.apply(&*env, shard, &mut engine, outputs);
        }
        shard.note_deadline(&engine);
        drop(engine);
        self.timer.notify_one();
    }

    /// Applies, in log order, every append at the head of the shard's queue whose fate is
    /// known: committed records reach the engine (`on_committed`) and then their responses go
    /// out; failed ones answer with their failure responses and then tell the engine
    /// (`on_append_failed`). Returns what the engine asked for meanwhile. `engine` is the
    /// caller's guard when it holds one (lock order: engine, then the queue).
    fn finish_appends(
        &self,
        shard: &Shard<S>,
        engine: Option<&mut S>,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<S::Effect>> {
        let mut outputs = Vec::new();
        let mut guard;
        let mut engine = match engine {
            Some(e) => Some(e),
            None => {
                guard = shard.lock(self.name);
                guard.as_deref_mut()
            }
        };
        let mut appending = shard.appending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&fate) = appending.front().and_then(|a| a.committed.get()) {
            let Some(done) = appending.pop_front() else {
                break;
            };
            match (&mut engine, fate) {
                (Some(engine), Ok(base_offset)) => {
                    outputs.extend(engine.on_committed_at(
                        done.token,
                        base_offset,
                        &done.records,
                        now_ms(),
                        image,
                    ));
                    if let Some(observer) = &self.on_commit {
                        observer(shard.partition, &done.records);
                    }
                    for (id, response) in done.on_success {
                        shard.send(id, response);
                    }
                }
                (Some(engine), Err(code)) => {
                    for (id, response) in done.on_failure {
                        shard.send(id, response);
                    }
                    outputs.extend(engine.on_append_failed(done.token, code, now_ms()));
                }
                // Committed or not while the shard has failed: nothing it decided can be
                // trusted to have taken effect.
                (None, _) => {
                    for (id, response) in done.on_failure {
                        shard.send(id, response);
                    }
                }
            }
        }
        outputs
    }

    /// Appends one uncompressed batch of records to the shard's partition through the replica
    /// layer, as the coordinator's write (durable as the partition's policy says).
    fn append<E: CoordinatorEnv + ?Sized>(
        &self,
        env: &E,
        partition: i32,
        records: &[Record],
        batch: AppendBatch,
    ) -> Result<AppendWait, (i16, anyhow::Error)> {
        let marker = matches!(batch, AppendBatch::Marker { .. });
        assert!(
            records.is_empty() == marker,
            "coordinators append records, or a marker alone"
        );
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let image = env.image();
        let topic = image
            .topic(self.topic)
            .ok_or_else(|| (unknown, anyhow::anyhow!("{} does not exist", self.topic)))?;
        let partition = env
            .replicas()
            .partition(&topic.topic_id, partition)
            .ok_or_else(|| {
                (
                    ResponseError::NotLeaderOrFollower.code(),
                    anyhow::anyhow!("{}-{partition} is not open", self.topic),
                )
            })?;
        // Base sequence 0 for a transactional batch, as Kafka's `CoordinatorRuntime` builds
        // it (the COORDINATOR origin checks no sequence).
        let (producer_id, producer_epoch, attributes, base_sequence) = match batch {
            AppendBatch::Plain => (-1, -1, 0, runnel_protocol::batch::NO_SEQUENCE),
            AppendBatch::Transactional {
                producer_id,
                producer_epoch,
            } => (producer_id, producer_epoch, ATTR_TRANSACTIONAL, 0),
            AppendBatch::Marker {
                producer_id,
                producer_epoch,
                coordinator_epoch,
                result,
                transaction_version,
            } => {
                let marker = runnel_storage::TxnMarker {
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    result: match result {
                        runnel_cluster::txn::TxnResult::Commit => runnel_storage::TxnResult::Commit,
                        runnel_cluster::txn::TxnResult::Abort => runnel_storage::TxnResult::Abort,
                    },
                    transaction_version,
                };
                return Ok(env.replicas().write_txn_marker(&partition, marker));
            }
        };
        let spec = BatchSpec {
            producer_id,
            producer_epoch,
            attributes,
            base_sequence,
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
        env.replicas()
            .append_records(&partition, AppendOrigin::Coordinator, -1, batch)
            .map_err(|refused| {
                (
                    refused.code,
                    anyhow::anyhow!("append refused with error {}", refused.code),
                )
            })
    }

    /// Test hook: marks `partition` as loading for `epoch` without replaying anything, as a
    /// long replay would leave it.
    #[cfg(test)]
    pub(crate) fn start_loading(&self, partition: i32, epoch: i32) {
        let _ = self.slots_mut().elect(partition, epoch);
    }

    /// Test hook: runs `f` with the shard's engine locked (to poison it, say).
    #[cfg(test)]
    pub(crate) fn with_engine(&self, partition: i32, f: impl FnOnce(&mut S)) {
        if let Some(shard) = self.shard(partition) {
            if let Ok(mut engine) = shard.engine.lock() {
                f(&mut engine);
            }
        }
    }
}

/// The whole batches in `bytes` (stored batches from a log read), each as its own slice.
fn whole_batches(bytes: &[u8]) -> Vec<&[u8]> {
    let mut batches = Vec::new();
    let mut position = 0usize;
    while let Some(rest) = bytes.get(position..) {
        let Ok(header) = BatchHeader::parse(rest) else {
            break;
        };
        if header.batch_length < 0 {
            break;
        }
        let Some(batch) = rest.get(..header.size_bytes()) else {
            break;
        };
        batches.push(batch);
        position += header.size_bytes();
    }
    batches
}

/// Last offset + 1 of the last whole batch in `bytes` (stored batches from a log read).
fn next_offset_after(bytes: &[u8]) -> Option<i64> {
    let mut position = 0usize;
    let mut next = None;
    while let Some(rest) = bytes.get(position..) {
        if rest.is_empty() {
            break;
        }
        let header = runnel_protocol::batch::BatchHeader::parse(rest).ok()?;
        if header.batch_length < 0 || header.size_bytes() > rest.len() {
            break;
        }
        next = Some(header.last_offset() + 1);
        position += header.size_bytes();
    }
    next
}
