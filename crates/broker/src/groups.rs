//! The group coordinator on the coordinator runtime: one `GroupCoordinator` shard per
//! `__consumer_offsets` partition this broker leads, and the routing of group requests to
//! them. A request about one group goes to the shard of the group's partition (Kafka's
//! `partitionFor`); one about several groups is split by shard and the answers merged in the
//! request's order; ListGroups asks every loaded shard.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use runnel_cluster::group::coordinator::{GroupCoordinator, GroupRequest, TxnCompletion};
use runnel_cluster::group::{offsets_partition_for, ClientInfo, GroupConfig};
use runnel_cluster::MetadataImage;

use crate::coordinator_runtime::{CoordinatorEnv, CoordinatorRuntime};
use crate::internal_topics::OFFSETS_TOPIC;
use crate::replica::ReplicaManager;

pub use crate::coordinator_runtime::CoordinatorEnv as GroupsEnv;

pub struct Groups {
    runtime: Arc<CoordinatorRuntime<GroupCoordinator>>,
    pub config: GroupConfig,
}

/// Where a request goes.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one request; boxing would allocate per request"
)]
enum Route {
    /// One group: the shard of its partition.
    One(i32, GroupRequest),
    /// Several groups: one sub-request per shard, with the positions of its groups in the
    /// original request.
    Split(Vec<(i32, GroupRequest, Vec<usize>)>),
    /// Every loaded shard (ListGroups).
    All(ListGroupsRequest),
}

impl Groups {
    pub fn new(config: GroupConfig) -> Groups {
        let shard_config = config.clone();
        Groups {
            runtime: Arc::new(
                CoordinatorRuntime::new(
                    "group coordinator",
                    OFFSETS_TOPIC,
                    move |_partition, image: &MetadataImage| {
                        // Groups hash over the partitions the topic has, whatever the config says
                        // now (Kafka reads the count from the existing topic too).
                        let partitions = image
                            .topic(OFFSETS_TOPIC)
                            .and_then(|t| i32::try_from(t.partitions).ok())
                            .unwrap_or(shard_config.offsets_topic_num_partitions);
                        GroupCoordinator::new(GroupConfig {
                            offsets_topic_num_partitions: partitions,
                            ..shard_config.clone()
                        })
                    },
                )
                .with_commit_observer(Box::new(crate::group_events::log_committed)),
            ),
            config,
        }
    }

    /// Gives the runtime the broker it serves (see `CoordinatorRuntime::attach`).
    pub fn attach(&self, env: std::sync::Weak<dyn CoordinatorEnv>) {
        self.runtime.attach(env);
    }

    /// Test hook: see `CoordinatorRuntime::start_loading`.
    #[cfg(test)]
    pub(crate) fn start_loading(&self, partition: i32, epoch: i32) {
        self.runtime.start_loading(partition, epoch);
    }

    /// The partitions whose shards are loaded and serving.
    pub fn loaded(&self) -> Vec<i32> {
        self.runtime.loaded()
    }

    /// Runs `f` on every loaded group coordinator shard in turn (see
    /// `CoordinatorRuntime::inspect`).
    pub fn inspect(&self, f: impl FnMut(&GroupCoordinator)) {
        self.runtime.inspect(f);
    }

    /// Loads the shard of every `__consumer_offsets` partition `node_id` leads (startup).
    pub fn load_led(
        &self,
        node_id: i32,
        image: &Arc<MetadataImage>,
        replicas: &ReplicaManager,
    ) -> anyhow::Result<()> {
        self.runtime.load_led(node_id, image, replicas)
    }

    /// Loads and unloads shards as a committed metadata delta moves the leadership of
    /// `__consumer_offsets` partitions (see `CoordinatorRuntime::follow_leadership`).
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

    /// Writes a transaction marker to `__consumer_offsets` partition `partition` through its
    /// shard, among the shard's appends, and applies it there once committed (Kafka's
    /// `GroupCoordinator.completeTransaction`: a COMMIT makes the producer's pending offsets
    /// the group's). Answers the partition's Kafka error code: NOT_COORDINATOR when the shard
    /// is not loaded here, COORDINATOR_NOT_AVAILABLE when it failed, the log's verdict
    /// (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, KAFKA_STORAGE_ERROR) otherwise.
    pub async fn complete_transaction<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        partition: i32,
        marker: runnel_storage::TxnMarker,
    ) -> i16 {
        let completion = TxnCompletion {
            partition,
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            result: match marker.result {
                runnel_storage::TxnResult::Commit => runnel_cluster::txn::TxnResult::Commit,
                runnel_storage::TxnResult::Abort => runnel_cluster::txn::TxnResult::Abort,
            },
            transaction_version: marker.transaction_version,
        };
        let answer = self
            .runtime
            .call(
                env,
                partition,
                0,
                &ClientInfo::default(),
                GroupRequest::CompleteTransaction(completion),
            )
            .await;
        let code = match answer {
            Some(ResponseKind::WriteTxnMarkers(r)) => r
                .markers
                .first()
                .and_then(|m| m.topics.first())
                .and_then(|t| t.partitions.first())
                .map(|p| p.error_code),
            _ => None,
        };
        // A shard that vanished without answering (never, by the runtime's contract).
        code.unwrap_or(ResponseError::CoordinatorNotAvailable.code())
    }

    /// Runs the shards' timers (session expiry, rebalance and join delays, offsets retention).
    pub async fn run_timers<E: CoordinatorEnv + 'static>(self: Arc<Self>, env: Arc<E>) {
        Arc::clone(&self.runtime).run_timers(env).await;
    }

    /// Answers a group request (NOT_COORDINATOR if its shard fails or is unloaded while it
    /// waits). `None` only if a shard vanished without answering; the connection then closes.
    pub async fn call<E: CoordinatorEnv + ?Sized>(
        self: &Arc<Self>,
        env: &E,
        version: i16,
        client: &ClientInfo,
        request: GroupRequest,
    ) -> Option<ResponseKind> {
        let partitions = env
            .image()
            .topic(OFFSETS_TOPIC)
            .and_then(|t| i32::try_from(t.partitions).ok());
        let Some(partitions) = partitions else {
            return Some(
                request.error_response(version, ResponseError::CoordinatorNotAvailable.code()),
            );
        };
        match route(request, version, partitions) {
            Route::One(partition, request) => {
                self.runtime
                    .call(env, partition, version, client, request)
                    .await
            }
            Route::Split(parts) => {
                let mut answers = Vec::with_capacity(parts.len());
                for (partition, request, positions) in parts {
                    let answer = self
                        .runtime
                        .call(env, partition, version, client, request)
                        .await?;
                    answers.push((answer, positions));
                }
                Some(merge(answers))
            }
            Route::All(request) => {
                let mut merged = ListGroupsResponse::default();
                for partition in self.runtime.loaded() {
                    let answer = self
                        .runtime
                        .call(
                            env,
                            partition,
                            version,
                            client,
                            GroupRequest::ListGroups(request.clone()),
                        )
                        .await?;
                    let ResponseKind::ListGroups(r) = answer else {
                        continue;
                    };
                    // A shard unloaded meanwhile answers NOT_COORDINATOR: its groups are
                    // another broker's now (Kafka skips them too).
                    if r.error_code == ResponseError::NotCoordinator.code() {
                        continue;
                    }
                    if merged.error_code == 0 {
                        merged.error_code = r.error_code;
                    }
                    merged.groups.extend(r.groups);
                }
                Some(ResponseKind::ListGroups(merged))
            }
        }
    }
}

/// Splits a multi-group list by shard, keeping each group's position.
fn by_partition<T>(
    items: &[T],
    partitions: i32,
    id: impl Fn(&T) -> &str,
) -> BTreeMap<i32, Vec<usize>> {
    let mut split: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        split
            .entry(offsets_partition_for(id(item), partitions))
            .or_default()
            .push(i);
    }
    split
}

/// A multi-group request split by shard: one sub-request per partition, each a copy of the
/// request holding the groups of that partition (`$field`, group id by `$id`).
macro_rules! split {
    ($request:ident, $partitions:expr, $variant:ident, $field:ident, |$g:ident| $id:expr) => {{
        if $request.$field.is_empty() {
            // Nothing to split: any shard answers an empty list with an empty answer.
            return Route::One(0, GroupRequest::$variant($request));
        }
        Route::Split(
            by_partition(&$request.$field, $partitions, |$g| $id.as_str())
                .into_iter()
                .map(|(p, positions)| {
                    let mut sub = $request.clone();
                    sub.$field = positions
                        .iter()
                        .map(|&i| $request.$field[i].clone())
                        .collect();
                    (p, GroupRequest::$variant(sub), positions)
                })
                .collect(),
        )
    }};
}

/// Where `request` goes.
fn route(request: GroupRequest, version: i16, partitions: i32) -> Route {
    let one = |group: &str| offsets_partition_for(group, partitions);
    match request {
        GroupRequest::JoinGroup(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::SyncGroup(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::Heartbeat(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::LeaveGroup(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::OffsetCommit(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::TxnOffsetCommit(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::CompleteTransaction(ref c) => Route::One(c.partition, request),
        GroupRequest::OffsetDelete(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::ConsumerGroupHeartbeat(ref r) => Route::One(one(&r.group_id), request),
        GroupRequest::OffsetFetch(ref r) if version < 8 => Route::One(one(&r.group_id), request),
        GroupRequest::OffsetFetch(r) => split!(r, partitions, OffsetFetch, groups, |g| g.group_id),
        GroupRequest::DescribeGroups(r) => split!(r, partitions, DescribeGroups, groups, |g| g),
        GroupRequest::DeleteGroups(r) => split!(r, partitions, DeleteGroups, groups_names, |g| g),
        GroupRequest::ConsumerGroupDescribe(r) => {
            split!(r, partitions, ConsumerGroupDescribe, group_ids, |g| g)
        }
        GroupRequest::ListGroups(r) => Route::All(r),
    }
}

/// Puts the per-group entries of split answers back in the request's order.
fn in_order<T>(parts: Vec<(Vec<T>, Vec<usize>)>) -> Vec<T> {
    let mut placed: Vec<(usize, T)> = parts
        .into_iter()
        .flat_map(|(entries, positions)| {
            assert_eq!(
                entries.len(),
                positions.len(),
                "a shard answers every group it was asked about"
            );
            positions.into_iter().zip(entries)
        })
        .collect();
    placed.sort_by_key(|(i, _)| *i);
    placed.into_iter().map(|(_, entry)| entry).collect()
}

/// The answers of a split request as one: their per-group entries (`$field`) in the
/// request's order.
macro_rules! merged {
    ($answers:ident, $variant:ident, $response:ident, $field:ident) => {{
        let parts = $answers
            .into_iter()
            .filter_map(|(answer, positions)| match answer {
                ResponseKind::$variant(r) => Some((r.$field, positions)),
                _ => None,
            })
            .collect();
        let mut response = $response::default();
        response.$field = in_order(parts);
        ResponseKind::$variant(response)
    }};
}

/// Merges the answers of a split request (all of one API).
fn merge(answers: Vec<(ResponseKind, Vec<usize>)>) -> ResponseKind {
    let Some((first, _)) = answers.first() else {
        unreachable!("an empty group list is routed to one shard, not split");
    };
    match first {
        ResponseKind::OffsetFetch(_) => merged!(answers, OffsetFetch, OffsetFetchResponse, groups),
        ResponseKind::DescribeGroups(_) => {
            merged!(answers, DescribeGroups, DescribeGroupsResponse, groups)
        }
        ResponseKind::DeleteGroups(_) => {
            merged!(answers, DeleteGroups, DeleteGroupsResponse, results)
        }
        ResponseKind::ConsumerGroupDescribe(_) => merged!(
            answers,
            ConsumerGroupDescribe,
            ConsumerGroupDescribeResponse,
            groups
        ),
        other => unreachable!("only multi-group APIs are split, not {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Broker;
    use kafka_protocol::protocol::StrBytes;

    fn gid(s: &str) -> GroupId {
        GroupId(StrBytes::from_string(s.to_owned()))
    }

    async fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = crate::config::BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        broker.ensure_offsets_topic().unwrap();
        broker
    }

    /// Two group ids whose `__consumer_offsets` partitions differ.
    fn groups_on_two_shards() -> (String, String, i32, i32) {
        let a = "group-a".to_string();
        let pa = offsets_partition_for(&a, 50);
        let b = (0..)
            .map(|i| format!("group-{i}"))
            .find(|g| offsets_partition_for(g, 50) != pa)
            .unwrap();
        let pb = offsets_partition_for(&b, 50);
        (a, b, pa, pb)
    }

    async fn commit(broker: &Arc<Broker>, group: &str) -> i16 {
        let topic = broker.image().topic("t").unwrap().name.clone();
        let request = GroupRequest::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(gid(group))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(3),
                        ]),
                ]),
        );
        let Some(ResponseKind::OffsetCommit(r)) = broker
            .groups
            .call(&**broker, 8, &ClientInfo::default(), request)
            .await
        else {
            panic!("no OffsetCommit answer");
        };
        r.topics[0].partitions[0].error_code
    }

    async fn describe(broker: &Arc<Broker>, groups: &[&str]) -> Vec<(String, i16)> {
        let request = GroupRequest::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect()),
        );
        let Some(ResponseKind::DescribeGroups(r)) = broker
            .groups
            .call(&**broker, 5, &ClientInfo::default(), request)
            .await
        else {
            panic!("no DescribeGroups answer");
        };
        r.groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.error_code))
            .collect()
    }

    // Proves requests about groups on different shards are split and answered in the
    // request's order, and ListGroups gathers every shard's groups.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multi_group_requests_span_shards_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        broker
            .create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        let (a, b, pa, pb) = groups_on_two_shards();
        assert_ne!(pa, pb);
        assert_eq!(commit(&broker, &a).await, 0);
        assert_eq!(commit(&broker, &b).await, 0);
        let described = describe(&broker, &[&b, "missing", &a]).await;
        let names: Vec<&str> = described.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(names, vec![b.as_str(), "missing", a.as_str()]);
        let Some(ResponseKind::ListGroups(listed)) = broker
            .groups
            .call(
                &*broker,
                4,
                &ClientInfo::default(),
                GroupRequest::ListGroups(ListGroupsRequest::default()),
            )
            .await
        else {
            panic!("no ListGroups answer");
        };
        let mut ids: Vec<String> = listed
            .groups
            .iter()
            .map(|g| g.group_id.to_string())
            .collect();
        ids.sort();
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort();
        assert_eq!(ids, expected);
    }

    // Proves a shard poisoned by a panic is never served again (COORDINATOR_NOT_AVAILABLE, the
    // poisoned state used to be served as is) while the other shards go on, and an unloaded
    // shard answers NOT_COORDINATOR.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_shard_is_refused_alone_and_an_unloaded_one_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        broker
            .create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        let (a, b, pa, pb) = groups_on_two_shards();
        let runtime = Arc::clone(&broker.groups.runtime);
        let poisoned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.with_engine(pa, |_| panic!("a bug while the shard is held"));
        }));
        assert!(poisoned.is_err());
        assert_eq!(
            commit(&broker, &a).await,
            ResponseError::CoordinatorNotAvailable.code()
        );
        assert_eq!(commit(&broker, &b).await, 0);
        broker.groups.unload(pb);
        assert_eq!(
            commit(&broker, &b).await,
            ResponseError::NotCoordinator.code()
        );
        let image = broker.image();
        broker.groups.load(pb, &image, &broker.replicas).unwrap();
        assert_eq!(commit(&broker, &b).await, 0);
        // The reloaded shard replayed the earlier commit.
        let fetch = GroupRequest::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(&b))
                .with_topics(None),
        );
        let Some(ResponseKind::OffsetFetch(r)) = broker
            .groups
            .call(&*broker, 7, &ClientInfo::default(), fetch)
            .await
        else {
            panic!("no OffsetFetch answer");
        };
        assert_eq!(r.topics[0].partitions[0].committed_offset, 3);
    }

    // Proves a caller parked in a shard (a JoinGroup waiting out the initial rebalance delay)
    // is answered NOT_COORDINATOR when the shard is unloaded, as Kafka fails a departing
    // shard's deferred operations; it used to get its connection closed instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parked_caller_of_an_unloaded_shard_is_told_not_coordinator() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        let (a, _, pa, _) = groups_on_two_shards();
        let join = JoinGroupRequest::default()
            .with_group_id(gid(&a))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\0\xff\xff\xff\xff"))]);
        let parked = {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                broker
                    .groups
                    .call(
                        &*broker,
                        3,
                        &ClientInfo::default(),
                        GroupRequest::JoinGroup(join),
                    )
                    .await
            })
        };
        // The default initial rebalance delay (3 s) keeps the join parked meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !parked.is_finished(),
            "the join should wait for the rebalance"
        );
        broker.groups.unload(pa);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), parked)
            .await
            .expect("answered after the unload")
            .unwrap();
        let Some(ResponseKind::JoinGroup(r)) = answer else {
            panic!("no JoinGroup answer: {answer:?}");
        };
        assert_eq!(r.error_code, ResponseError::NotCoordinator.code());
    }

    // Proves a multi-group request naming no group gets the empty answer of its own API (a
    // split of nothing must not answer with another API's response).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_group_lists_get_their_own_empty_answer() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        let call = |request| {
            let broker = Arc::clone(&broker);
            async move {
                broker
                    .groups
                    .call(&*broker, 2, &ClientInfo::default(), request)
                    .await
                    .expect("an answer")
            }
        };
        assert!(matches!(
            call(GroupRequest::DeleteGroups(DeleteGroupsRequest::default())).await,
            ResponseKind::DeleteGroups(r) if r.results.is_empty()
        ));
        assert!(matches!(
            call(GroupRequest::DescribeGroups(DescribeGroupsRequest::default())).await,
            ResponseKind::DescribeGroups(r) if r.groups.is_empty()
        ));
    }

    /// `image` with partition `partition` of `__consumer_offsets` led by `leader` at
    /// `epoch`, and the delta that says so.
    fn moved(
        image: &MetadataImage,
        partition: i32,
        leader: i32,
        epoch: i32,
    ) -> (Arc<MetadataImage>, runnel_cluster::metadata::MetadataDelta) {
        let mut image = image.clone();
        let mut topic = (**image.topic(OFFSETS_TOPIC).unwrap()).clone();
        let registration = topic.registrations.get_mut(&partition).unwrap();
        registration.leader = leader;
        registration.replicas = vec![leader];
        registration.isr = vec![leader];
        registration.leader_epoch = epoch;
        let delta = runnel_cluster::metadata::MetadataDelta {
            changed_partitions: vec![(topic.topic_id, partition)],
            ..Default::default()
        };
        image.topics.insert(OFFSETS_TOPIC.into(), Arc::new(topic));
        (Arc::new(image), delta)
    }

    // Proves shards follow leadership deltas with epochs: a partition moved to node 2 is
    // unloaded (its groups answer NOT_COORDINATOR, others are unaffected), a stale event of an
    // older epoch changes nothing, and leadership coming back at a newer epoch reloads the
    // shard from its log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shards_follow_leadership_deltas_by_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        broker
            .create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        let me = broker.node_id();
        let (a, b, pa, _) = groups_on_two_shards();
        assert_eq!(commit(&broker, &a).await, 0);
        assert_eq!(commit(&broker, &b).await, 0);
        let base = broker.image();
        let epoch = base
            .topic(OFFSETS_TOPIC)
            .unwrap()
            .registration(pa)
            .unwrap()
            .leader_epoch;

        let (away, delta) = moved(&base, pa, me + 1, epoch + 1);
        broker
            .groups
            .follow_leadership(&away, &delta, me, &broker.replicas);
        assert!(!broker.groups.loaded().contains(&pa));
        assert_eq!(
            commit(&broker, &a).await,
            ResponseError::NotCoordinator.code()
        );
        assert_eq!(commit(&broker, &b).await, 0);

        // A stale election (the epoch the shard had before it moved) is ignored.
        let (_, stale_delta) = moved(&base, pa, me, epoch);
        broker
            .groups
            .follow_leadership(&base, &stale_delta, me, &broker.replicas);
        // Background loads finish on the blocking pool; give one time to (wrongly) happen.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!broker.groups.loaded().contains(&pa));

        let (back, delta) = moved(&base, pa, me, epoch + 2);
        broker
            .groups
            .follow_leadership(&back, &delta, me, &broker.replicas);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !broker.groups.loaded().contains(&pa) {
            assert!(std::time::Instant::now() < deadline, "shard never reloaded");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A stale resignation (older than the epoch it was loaded for) leaves it loaded.
        let (_, stale_away) = moved(&base, pa, me + 1, epoch + 1);
        broker
            .groups
            .follow_leadership(&away, &stale_away, me, &broker.replicas);
        assert!(broker.groups.loaded().contains(&pa));
        // The reloaded shard replayed the commit made before the move.
        let fetch = GroupRequest::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(&a))
                .with_topics(None),
        );
        let Some(ResponseKind::OffsetFetch(r)) = broker
            .groups
            .call(&*broker, 7, &ClientInfo::default(), fetch)
            .await
        else {
            panic!("no OffsetFetch answer");
        };
        assert_eq!(r.topics[0].partitions[0].committed_offset, 3);
    }

    // Proves a shard still replaying answers COORDINATOR_LOAD_IN_PROGRESS (the client retries
    // the same coordinator), not NOT_COORDINATOR.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loading_shard_answers_load_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path()).await;
        broker
            .create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        let (a, _, pa, _) = groups_on_two_shards();
        broker.groups.unload(pa);
        broker.groups.start_loading(pa, 10);
        assert_eq!(
            commit(&broker, &a).await,
            ResponseError::CoordinatorLoadInProgress.code()
        );
    }
}
