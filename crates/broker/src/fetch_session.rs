//! KIP-227 incremental fetch sessions: Kafka's broker-side `FetchSessionCache`, `FetchSession`
//! and `FetchManager.newContext`, as a sans-IO state machine. No tokio, no I/O, no clock: callers
//! pass `now_ms` and a random seed.
//!
//! Followed: `core/src/main/scala/kafka/server/FetchSession.scala` and
//! `clients/.../requests/FetchMetadata.java` at apache/kafka trunk 1eb7644 (2024-10-25, the 4.0
//! line; FetchSession.scala last changed by KAFKA-9401 in May 2024, so 3.8 and 3.9 behave alike).
//!
//! # Why sessions exist
//! A consumer or follower fetching thousands of partitions would otherwise resend all of them in
//! every request and get all of them back, even when nothing changed. With a session the broker
//! remembers the partitions and what it last told the client, so requests list only changes and
//! responses only partitions with news.
//!
//! # Use from a handler
//! One `Mutex<FetchSessionCache>`, locked twice per request and never across an await:
//! 1. [`FetchSessionCache::resolve`] turns the request into either a whole-response
//!    [`SessionError`] (answer it with no partitions and session id 0) or a [`FetchPlan`]: the
//!    partitions to read, in order, with their fetch offset and max bytes.
//! 2. The handler reads them (long-polling if it likes) without the lock.
//! 3. [`FetchSessionCache::complete`] gets one [`PartitionOutcome`] per planned partition and
//!    says which go into the response and which session id it carries, and records what was sent.
//!
//! # Rules, and why (each is Kafka's unless marked "runnel")
//! - **Request kinds** ([`FetchMetadata.isFull`]): epoch 0 or -1 is a *full* fetch, anything
//!   else an *incremental* one. A full fetch first removes the session it names, because the
//!   client is telling us it dropped it. Epoch -1 (and every pre-v7 request, whose epoch decodes
//!   as -1) is then served *sessionless*; epoch 0 asks for a new session, created at step 3 if
//!   the cache admits it, else the response carries session id 0 and the client stays on full
//!   fetches. Forgotten topics are ignored by full fetches: the request lists everything anyway.
//! - **Incremental checks**, in this order: unknown id → `FETCH_SESSION_ID_NOT_FOUND` (70), so
//!   the client starts over with a full fetch; epoch not the expected one →
//!   `INVALID_FETCH_SESSION_EPOCH` (71), which catches duplicated or reordered requests that would
//!   otherwise corrupt the shared state; a session created with topic ids (v13+) used by a
//!   request by name (< v13) or the reverse → `FETCH_SESSION_TOPIC_ID_ERROR` (106), because a
//!   partition cannot be matched across the two namings.
//! - **Incremental update**: listed partitions are added (at the end of the session order) or
//!   have their request parameters replaced; forgotten ones are removed. If nothing is left the
//!   session is removed and the request served sessionless: session id 0 tells the client the
//!   broker closed it. Otherwise the session is touched and its epoch advances, so the next
//!   request must carry the next epoch (wrapping from `i32::MAX` to 1, never to 0 or -1).
//! - **What an incremental response holds** (`CachedPartition.maybeUpdateResponseData`): a
//!   partition with records, a high watermark or log start offset different from the last one
//!   sent, a preferred read replica, a diverging epoch, or an error. An error resets the cached
//!   high watermark to -1 so the partition is sent again once the error clears. The last stable
//!   offset is not compared (Kafka never has): it only moves when a transaction marker is
//!   replicated, which also moves the high watermark, and newly readable records are sent anyway.
//!   A full fetch response holds every partition and its values become the cached state.
//! - **Round robin**: a partition that returned records moves to the end of the session order,
//!   so under `fetch.max.bytes` the partitions that got nothing this time are read first next
//!   time. Without it the first partitions of a busy session would starve the rest.
//! - **Two-step race**: between the steps another request may advance the epoch (Kafka then
//!   answers 71 with the session id, as we do), or the session may be removed or evicted. Kafka
//!   still filters against the orphaned session and returns its id, so the next request fails
//!   with 70. runnel (deviation) has no orphan to filter against: it returns every planned
//!   partition with session id 0, which the client reads as "session closed" — it keeps the
//!   data and starts a new session at once, one round trip sooner than Kafka's way.
//! - **Admission and eviction** (`FetchSessionCacheShard.maybeCreateSession`, `tryEvict`,
//!   `touch`): a new session takes a free slot, or evicts at most one session: the least
//!   recently used one if it is stale (unused for more than [`SESSION_EVICTION_MS_MIN`]),
//!   otherwise the lowest by (privileged, partition count, id) among the sessions the newcomer
//!   may evict, if the newcomer ranks at or above it. Any session created more than
//!   [`SESSION_EVICTION_MS_MIN`] before its last use is evictable by all; an unprivileged
//!   (consumer) session is also evictable by privileged (follower) ones at any age. Followers
//!   are privileged because replication stalls without their sessions; bigger sessions save more
//!   bytes per request; and a grace period keeps new sessions from being churned out before
//!   they pay off. Membership is computed at touch time, as in Kafka.
//! - **Session ids** are random in `1..i32::MAX` and unique among live sessions, so a client
//!   cannot easily stumble onto another's session (Kafka uses `ThreadLocalRandom`; ours is a
//!   seeded xorshift64*, so simulations replay).
//! - **Partition budget** (runnel; Kafka caps slots only): at most
//!   [`PARTITIONS_CACHED_MAX_DEFAULT`] cached partitions in all, because slots alone do not
//!   bound memory — a client can grow one session by a request-full of partitions per request.
//!   Stale sessions are evicted to make room; failing that, a new session is refused (id 0) and
//!   an incremental request that would overflow closes its session and is served sessionless
//!   with every partition of the session, as for a session that became empty.
//! - **Not reproduced**: Kafka's 8 cache shards (a lock-contention measure that also makes
//!   eviction per shard with 1/8 of the slots each; we have one cache and one lock), metrics
//!   objects (see [`FetchSessionCache::evictions_total`]), and the size-for-quota path.
//!
//! # Topic ids
//! Partitions are keyed by [`TopicKey`]: the name before v13, the id from v13 (KIP-516), as
//! Kafka's `CachedPartition.equals` does. Ids are not resolved here: a session keeps a
//! partition of an unknown topic id like any other, and the handler must answer it with
//! `UNKNOWN_TOPIC_ID` (100) on every read (Kafka resolves names again on every incremental
//! fetch, so a topic that appears later starts being served). As an error, it is always part of
//! the response until the client forgets it.
//!
//! [`FetchMetadata.isFull`]: https://github.com/apache/kafka/blob/trunk/clients/src/main/java/org/apache/kafka/common/requests/FetchMetadata.java

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::FetchRequest;
use uuid::Uuid;

/// Kafka's `FetchMetadata.INVALID_SESSION_ID`: "no session", in requests and responses.
pub const INVALID_SESSION_ID: i32 = 0;

/// Kafka's `FetchMetadata.INITIAL_EPOCH`: a full fetch asking for a new session.
pub const INITIAL_EPOCH: i32 = 0;

/// Kafka's `FetchMetadata.FINAL_EPOCH`: a full fetch that wants no session (and closes any).
pub const FINAL_EPOCH: i32 = -1;

/// First Fetch version naming topics by id (KIP-516); sessions remember which naming they use.
pub const TOPIC_IDS_VERSION_MIN: i16 = 13;

/// First Fetch version carrying the replica id in `ReplicaState` instead of `ReplicaId`.
pub const REPLICA_STATE_VERSION_MIN: i16 = 15;

/// Kafka's default `max.incremental.fetch.session.cache.slots`: sessions cached at once. Each
/// slot costs memory for as long as its client keeps fetching, so the count is capped.
pub const SESSION_SLOTS_MAX_DEFAULT: usize = 1000;

/// Kafka's `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS` (not configurable there either): a
/// session unused this long is stale and evicted first; a session younger than this is only
/// evictable by followers (and only if it is a consumer's), so new sessions get time to pay off.
pub const SESSION_EVICTION_MS_MIN: u64 = 120_000;

/// runnel's cap on partitions cached over all sessions (Kafka has none). Slots alone do not
/// bound memory, since a session grows by every partition a request adds. About 200 bytes each,
/// so the default is about 200 MiB at worst, and allows 1000 sessions of 1000 partitions.
pub const PARTITIONS_CACHED_MAX_DEFAULT: usize = 1_000_000;

/// Kafka's `FetchResponse.INVALID_PREFERRED_REPLICA_ID`.
const NO_PREFERRED_READ_REPLICA: i32 = -1;

/// High watermark or log start offset not yet sent: Kafka's -1 in a new `CachedPartition`.
const OFFSET_UNKNOWN: i64 = -1;

/// Kafka's `FetchMetadata.nextEpoch`: the epoch after `epoch`. Wraps to 1, since 0 and -1 mean
/// full fetches; after -1 comes -1.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// A random seed for [`FetchSessionCache::new`], from std's per-process random hasher keys, so
/// session ids differ between runs without a `rand` dependency. Simulations pass their own.
pub fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5EED);
    hasher.finish()
}

/// A whole-response session error: the response carries it, session id 0 and no partitions
/// (Kafka's `SessionErrorContext`), except [`Completion::error`], which keeps the session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// `FETCH_SESSION_ID_NOT_FOUND` (70): no such session; the client does a full fetch next.
    IdNotFound,
    /// `INVALID_FETCH_SESSION_EPOCH` (71): a duplicated, reordered or overtaken request.
    InvalidEpoch,
    /// `FETCH_SESSION_TOPIC_ID_ERROR` (106): the request names topics differently from the
    /// session (by id from v13, by name before).
    TopicIdError,
}

impl SessionError {
    /// The Kafka error code of this error.
    pub fn code(self) -> i16 {
        match self {
            SessionError::IdNotFound => ResponseError::FetchSessionIdNotFound,
            SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
            SessionError::TopicIdError => ResponseError::FetchSessionTopicIdError,
        }
        .code()
    }
}

/// How a request names a topic: by name before Fetch v13, by id from v13.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Name(String),
    Id(Uuid),
}

/// One partition of a topic, as the request names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub topic: TopicKey,
    pub partition: i32,
}

/// What a client asks of one partition (Kafka's `FetchRequest.PartitionData`). A session keeps
/// these, because an incremental request omits partitions whose parameters did not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionParams {
    /// Where to read from.
    pub fetch_offset: i64,
    /// The fetcher's own log start offset (followers; -1 from consumers).
    pub log_start_offset: i64,
    /// The most record bytes for this partition.
    pub partition_max_bytes: i32,
    /// The leader epoch the client believes in, for fencing (-1: unknown).
    pub current_leader_epoch: i32,
    /// Epoch of the last fetched batch, for divergence detection (-1: unknown).
    pub last_fetched_epoch: i32,
}

/// A partition with its request parameters: in a request, and in a [`FetchPlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPartition {
    pub key: PartitionKey,
    pub params: PartitionParams,
}

/// The session-relevant part of a Fetch request, free of kafka-protocol types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRequest {
    /// 0 for none.
    pub session_id: i32,
    /// 0 creates a session, -1 wants none, anything else is an incremental fetch.
    pub session_epoch: i32,
    /// Replica id >= 0: a follower, whose session is privileged at eviction. The handler must
    /// only pass followers it accepts as such.
    pub from_follower: bool,
    /// Partitions in request order. For an incremental fetch, only added or changed ones.
    pub partitions: Vec<FetchPartition>,
    /// Partitions to drop from the session (incremental fetches only).
    pub forgotten: Vec<PartitionKey>,
}

impl SessionRequest {
    /// The session view of a decoded Fetch request of `version`: topics by name before v13,
    /// by id from v13; follower if the replica id is >= 0 (`FetchRequest.isFromFollower`).
    pub fn from_kafka(request: &FetchRequest, version: i16) -> Self {
        let by_id = version >= TOPIC_IDS_VERSION_MIN;
        let topic_key = |name: &str, id: Uuid| {
            if by_id {
                TopicKey::Id(id)
            } else {
                TopicKey::Name(name.to_owned())
            }
        };
        let replica_id = if version >= REPLICA_STATE_VERSION_MIN {
            request.replica_state.replica_id.0
        } else {
            request.replica_id.0
        };
        let mut partitions = Vec::new();
        for topic in &request.topics {
            let key = topic_key(topic.topic.0.as_str(), topic.topic_id);
            for p in &topic.partitions {
                partitions.push(FetchPartition {
                    key: PartitionKey {
                        topic: key.clone(),
                        partition: p.partition,
                    },
                    params: PartitionParams {
                        fetch_offset: p.fetch_offset,
                        log_start_offset: p.log_start_offset,
                        partition_max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                        last_fetched_epoch: p.last_fetched_epoch,
                    },
                });
            }
        }
        let mut forgotten = Vec::new();
        for topic in &request.forgotten_topics_data {
            let key = topic_key(topic.topic.0.as_str(), topic.topic_id);
            for &partition in &topic.partitions {
                forgotten.push(PartitionKey {
                    topic: key.clone(),
                    partition,
                });
            }
        }
        SessionRequest {
            session_id: request.session_id,
            session_epoch: request.session_epoch,
            from_follower: replica_id >= 0,
            partitions,
            forgotten,
        }
    }
}

/// What the handler read for one planned partition: the parts of Kafka's
/// `FetchResponseData.PartitionData` that decide whether an incremental response includes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// 0, or the partition's error (`UNKNOWN_TOPIC_ID` for an id the broker does not know).
    pub error_code: i16,
    /// The high watermark in the response (-1 with an error).
    pub high_watermark: i64,
    /// This broker's log start offset in the response.
    pub log_start_offset: i64,
    /// Record bytes in the response.
    pub records_bytes: usize,
    /// -1, or the replica the client should read from.
    pub preferred_read_replica: i32,
    /// -1, or the epoch of a diverging epoch the follower must truncate to.
    pub diverging_epoch: i32,
}

impl PartitionOutcome {
    /// The outcome of a built kafka-protocol partition response.
    pub fn from_kafka(data: &PartitionData) -> Self {
        PartitionOutcome {
            error_code: data.error_code,
            high_watermark: data.high_watermark,
            log_start_offset: data.log_start_offset,
            records_bytes: data.records.as_ref().map_or(0, bytes::Bytes::len),
            preferred_read_replica: data.preferred_read_replica.0,
            diverging_epoch: data.diverging_epoch.epoch,
        }
    }
}

/// The result of [`FetchSessionCache::resolve`].
#[derive(Debug)]
pub enum Resolved {
    /// Answer the whole request with this error, session id 0 and no partitions.
    Error(SessionError),
    /// Read these partitions, then call [`FetchSessionCache::complete`].
    Fetch(FetchPlan),
}

/// What kind of fetch a plan is, for the handler's logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchKind {
    /// No session: the response has session id 0 and every partition.
    Sessionless,
    /// Every partition in the response; a new session may be created at completion.
    Full,
    /// Only partitions with news in the response.
    Incremental { session_id: i32 },
}

/// The partitions one request must read, and what completion needs to remember.
#[derive(Debug)]
pub struct FetchPlan {
    /// Partitions to read, in this order (it is the response's order too): the request's, first
    /// occurrence first and last parameters winning, as Kafka's `LinkedHashMap`; for an
    /// incremental fetch, every partition of the session in session order.
    pub partitions: Vec<FetchPartition>,
    /// How completion treats the outcomes.
    context: Context,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    Sessionless,
    Full {
        privileged: bool,
        uses_topic_ids: bool,
    },
    Incremental {
        session_id: i32,
        /// Tells the resolved session from a later one that got the same id.
        generation: u64,
        /// The session's epoch right after resolve; anything else means another request won.
        epoch: i32,
    },
}

impl FetchPlan {
    /// What kind of fetch this is.
    pub fn kind(&self) -> FetchKind {
        match self.context {
            Context::Sessionless => FetchKind::Sessionless,
            Context::Full { .. } => FetchKind::Full,
            Context::Incremental { session_id, .. } => FetchKind::Incremental { session_id },
        }
    }
}

/// The result of [`FetchSessionCache::complete`].
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    /// The session id for the response: 0 when sessionless or no session was created.
    pub session_id: i32,
    /// A whole-response error (only [`SessionError::InvalidEpoch`]: a later request on the same
    /// session overtook this one); then the response carries no partitions.
    pub error: Option<SessionError>,
    /// One per planned partition, in plan order: whether it goes into the response.
    pub include: Vec<bool>,
    /// The plan's partitions, handed back for building the response.
    pub partitions: Vec<FetchPartition>,
}

/// Admission limits of a [`FetchSessionCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCacheLimits {
    /// `max.incremental.fetch.session.cache.slots`; 0 disables sessions.
    pub slots_max: usize,
    /// Unused for longer than this a session is stale; see [`SESSION_EVICTION_MS_MIN`].
    pub eviction_ms_min: u64,
    /// Partitions cached over all sessions; see [`PARTITIONS_CACHED_MAX_DEFAULT`].
    pub partitions_cached_max: usize,
}

impl Default for SessionCacheLimits {
    fn default() -> Self {
        SessionCacheLimits {
            slots_max: SESSION_SLOTS_MAX_DEFAULT,
            eviction_ms_min: SESSION_EVICTION_MS_MIN,
            partitions_cached_max: PARTITIONS_CACHED_MAX_DEFAULT,
        }
    }
}

/// A partition in a session: the request parameters to reuse and what was last sent.
#[derive(Debug)]
struct CachedPartition {
    key: PartitionKey,
    params: PartitionParams,
    /// The high watermark last sent; -1 after an error so the partition is sent when it clears.
    high_watermark: i64,
    /// This broker's log start offset last sent.
    local_log_start_offset: i64,
}

impl CachedPartition {
    /// Kafka's `maybeUpdateResponseData(respData, updateResponseData = true)`: whether the
    /// partition must be in an incremental response, recording what is sent.
    fn must_respond(&mut self, outcome: &PartitionOutcome) -> bool {
        let mut must = outcome.records_bytes > 0;
        if self.high_watermark != outcome.high_watermark {
            must = true;
            self.high_watermark = outcome.high_watermark;
        }
        if self.local_log_start_offset != outcome.log_start_offset {
            must = true;
            self.local_log_start_offset = outcome.log_start_offset;
        }
        if outcome.preferred_read_replica != NO_PREFERRED_READ_REPLICA {
            must = true;
        }
        if outcome.error_code != 0 {
            self.high_watermark = OFFSET_UNKNOWN;
            must = true;
        }
        if outcome.diverging_epoch >= 0 {
            must = true;
        }
        must
    }
}

/// A session's partitions in round-robin order, found by key (Kafka's
/// `ImplicitLinkedHashCollection`): the order is by a sequence number that moving to the end
/// replaces.
#[derive(Debug, Default)]
struct SessionPartitions {
    by_seq: BTreeMap<u64, CachedPartition>,
    seq_by_key: HashMap<PartitionKey, u64>,
    /// The next sequence number; u64 never wraps in practice.
    seq_next: u64,
}

impl SessionPartitions {
    fn len(&self) -> usize {
        self.by_seq.len()
    }

    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    fn push(&mut self, cached: CachedPartition) {
        let seq = self.seq_next;
        self.seq_next += 1;
        let previous = self.seq_by_key.insert(cached.key.clone(), seq);
        assert!(previous.is_none(), "partition pushed twice into a session");
        self.by_seq.insert(seq, cached);
    }

    /// Kafka's `FetchSession.update` for one listed partition: replace its parameters, or add
    /// it at the end with nothing sent yet.
    fn upsert(&mut self, partition: &FetchPartition) {
        match self.seq_by_key.get(&partition.key) {
            Some(seq) => {
                if let Some(cached) = self.by_seq.get_mut(seq) {
                    cached.params = partition.params;
                }
            }
            None => self.push(CachedPartition {
                key: partition.key.clone(),
                params: partition.params,
                high_watermark: OFFSET_UNKNOWN,
                local_log_start_offset: OFFSET_UNKNOWN,
            }),
        }
    }

    fn remove(&mut self, key: &PartitionKey) {
        if let Some(seq) = self.seq_by_key.remove(key) {
            self.by_seq.remove(&seq);
        }
    }

    fn get_mut(&mut self, key: &PartitionKey) -> Option<&mut CachedPartition> {
        let seq = self.seq_by_key.get(key)?;
        self.by_seq.get_mut(seq)
    }

    fn move_to_end(&mut self, key: &PartitionKey) {
        let Some(seq) = self.seq_by_key.remove(key) else {
            return;
        };
        if let Some(cached) = self.by_seq.remove(&seq) {
            self.push(cached);
        }
    }

    fn plan(&self) -> Vec<FetchPartition> {
        self.by_seq
            .values()
            .map(|c| FetchPartition {
                key: c.key.clone(),
                params: c.params,
            })
            .collect()
    }
}

/// Orders sessions for eviction as Kafka's `EvictableKey`: unprivileged before privileged,
/// then fewer partitions first, then lower id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EvictableKey {
    privileged: bool,
    size: usize,
    id: i32,
}

#[derive(Debug)]
struct Session {
    id: i32,
    /// Unique per created session, unlike `id`, which a later session may reuse.
    generation: u64,
    /// Created by a follower.
    privileged: bool,
    /// Created by a v13+ request: partitions are keyed by topic id.
    uses_topic_ids: bool,
    creation_ms: u64,
    /// Only changed by `touch`, which keeps `last_used` in step.
    last_used_ms: u64,
    /// The epoch the next request must carry.
    epoch: i32,
    /// Partition count at the last `touch`: the size in the evictable sets and in
    /// `partitions_cached`.
    cached_size: usize,
    partitions: SessionPartitions,
}

impl Session {
    fn evictable_key(&self) -> EvictableKey {
        EvictableKey {
            privileged: self.privileged,
            size: self.cached_size,
            id: self.id,
        }
    }
}

/// All fetch sessions of a broker. See the module docs for the rules.
#[derive(Debug)]
pub struct FetchSessionCache {
    limits: SessionCacheLimits,
    sessions: HashMap<i32, Session>,
    /// (last used, id) of every session: the first is the least recently used.
    last_used: BTreeSet<(u64, i32)>,
    /// Sessions any newcomer may evict: created more than `eviction_ms_min` before last use.
    evictable_by_all: BTreeSet<EvictableKey>,
    /// Sessions a privileged newcomer may evict: the above, plus every unprivileged session.
    evictable_by_privileged: BTreeSet<EvictableKey>,
    /// Sum of `cached_size` over sessions.
    partitions_cached: usize,
    /// Sessions evicted to make room, ever (Kafka's `IncrementalFetchSessionEvictionsPerSec`).
    evictions_total: u64,
    /// xorshift64* state for session ids; never 0.
    random_state: u64,
    generation_next: u64,
}

impl FetchSessionCache {
    /// An empty cache. `seed` makes session ids reproducible; use [`random_seed`] in production.
    pub fn new(limits: SessionCacheLimits, seed: u64) -> Self {
        FetchSessionCache {
            limits,
            sessions: HashMap::new(),
            last_used: BTreeSet::new(),
            evictable_by_all: BTreeSet::new(),
            evictable_by_privileged: BTreeSet::new(),
            partitions_cached: 0,
            evictions_total: 0,
            // xorshift stays at 0 forever from 0.
            random_state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
            generation_next: 0,
        }
    }

    /// Sessions cached (Kafka's `NumIncrementalFetchSessions`).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session cached.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Partitions cached over all sessions (`NumIncrementalFetchPartitionsCached`).
    pub fn partitions_cached(&self) -> usize {
        self.partitions_cached
    }

    /// Sessions evicted to make room for new ones, since creation.
    pub fn evictions_total(&self) -> u64 {
        self.evictions_total
    }

    /// Step 1 (Kafka's `FetchManager.newContext`): check the request against its session and
    /// update the session. `version` is the Fetch version; `request` must name topics as it
    /// implies ([`SessionRequest::from_kafka`] does).
    pub fn resolve(&mut self, request: &SessionRequest, version: i16, now_ms: u64) -> Resolved {
        let uses_topic_ids = version >= TOPIC_IDS_VERSION_MIN;
        debug_assert!(
            request
                .partitions
                .iter()
                .map(|p| &p.key)
                .chain(&request.forgotten)
                .all(|k| matches!(k.topic, TopicKey::Id(_)) == uses_topic_ids),
            "topic keys do not match fetch version {version}"
        );
        if request.session_epoch == INITIAL_EPOCH || request.session_epoch == FINAL_EPOCH {
            if request.session_id != INVALID_SESSION_ID {
                // A full fetch naming a session means the client dropped it.
                self.remove(request.session_id);
            }
            let context = if request.session_epoch == FINAL_EPOCH {
                Context::Sessionless
            } else {
                Context::Full {
                    privileged: request.from_follower,
                    uses_topic_ids,
                }
            };
            return Resolved::Fetch(FetchPlan {
                partitions: dedup(&request.partitions),
                context,
            });
        }

        let id = request.session_id;
        let Some(session) = self.sessions.get_mut(&id) else {
            return Resolved::Error(SessionError::IdNotFound);
        };
        if session.epoch != request.session_epoch {
            return Resolved::Error(SessionError::InvalidEpoch);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Resolved::Error(SessionError::TopicIdError);
        }
        for partition in &request.partitions {
            session.partitions.upsert(partition);
        }
        for key in &request.forgotten {
            session.partitions.remove(key);
        }
        if session.partitions.is_empty() {
            // Nothing left to remember: close it; session id 0 tells the client.
            self.remove(id);
            return Resolved::Fetch(FetchPlan {
                partitions: dedup(&request.partitions),
                context: Context::Sessionless,
            });
        }
        self.touch(id, now_ms);
        if !self.fit_partitions(0, now_ms) {
            // Over the partition budget (runnel): serve everything once without a session.
            let partitions = self.remove(id).map(|s| s.partitions.plan());
            return Resolved::Fetch(FetchPlan {
                partitions: partitions.unwrap_or_default(),
                context: Context::Sessionless,
            });
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            unreachable!("session {id} vanished while resolving");
        };
        session.epoch = next_epoch(session.epoch);
        Resolved::Fetch(FetchPlan {
            partitions: session.partitions.plan(),
            context: Context::Incremental {
                session_id: id,
                generation: session.generation,
                epoch: session.epoch,
            },
        })
    }

    /// Step 2 (Kafka's `updateAndGenerateResponseData`): `outcomes` holds one entry per
    /// `plan.partitions`, in order. Creates the session of a full fetch, or filters an
    /// incremental response and records what it sends. A plan may also be dropped (the
    /// connection closed): an incremental session then expects the next epoch as in Kafka, so
    /// the client's retry gets `INVALID_FETCH_SESSION_EPOCH` and starts over.
    ///
    /// # Panics
    /// If `outcomes` and `plan.partitions` differ in length: a handler bug.
    pub fn complete(
        &mut self,
        plan: FetchPlan,
        outcomes: &[PartitionOutcome],
        now_ms: u64,
    ) -> Completion {
        assert_eq!(
            plan.partitions.len(),
            outcomes.len(),
            "one outcome per planned partition"
        );
        let all = |session_id: i32, partitions: Vec<FetchPartition>| Completion {
            session_id,
            error: None,
            include: vec![true; partitions.len()],
            partitions,
        };
        match plan.context {
            Context::Sessionless => all(INVALID_SESSION_ID, plan.partitions),
            Context::Full {
                privileged,
                uses_topic_ids,
            } => {
                let id = self.maybe_create_session(
                    privileged,
                    uses_topic_ids,
                    &plan.partitions,
                    outcomes,
                    now_ms,
                );
                all(id, plan.partitions)
            }
            Context::Incremental {
                session_id,
                generation,
                epoch,
            } => {
                let session = match self.sessions.get_mut(&session_id) {
                    Some(s) if s.generation == generation => s,
                    // Removed or evicted meanwhile: everything, and "closed" (see module docs).
                    _ => return all(INVALID_SESSION_ID, plan.partitions),
                };
                if session.epoch != epoch {
                    return Completion {
                        session_id,
                        error: Some(SessionError::InvalidEpoch),
                        include: vec![false; plan.partitions.len()],
                        partitions: plan.partitions,
                    };
                }
                let mut include = Vec::with_capacity(outcomes.len());
                for (partition, outcome) in plan.partitions.iter().zip(outcomes) {
                    // Only this request changed the session since resolve (the epoch says so),
                    // so every planned partition is still there.
                    let cached = session.partitions.get_mut(&partition.key);
                    debug_assert!(cached.is_some(), "planned partition missing from session");
                    let Some(cached) = cached else {
                        include.push(true);
                        continue;
                    };
                    let must = cached.must_respond(outcome);
                    if outcome.records_bytes > 0 {
                        session.partitions.move_to_end(&partition.key);
                    }
                    include.push(must);
                }
                Completion {
                    session_id,
                    error: None,
                    include,
                    partitions: plan.partitions,
                }
            }
        }
    }

    /// Asserts the cache's invariants; for tests and simulations.
    ///
    /// # Panics
    /// On a broken invariant.
    pub fn validate(&self) {
        assert_eq!(self.last_used.len(), self.sessions.len());
        assert!(self.sessions.len() <= self.limits.slots_max);
        assert!(self.partitions_cached <= self.limits.partitions_cached_max);
        let mut partitions = 0;
        for (&id, s) in &self.sessions {
            assert_eq!(id, s.id);
            assert_ne!(id, INVALID_SESSION_ID);
            assert!(s.epoch > 0, "a live session expects an incremental epoch");
            assert!(self.last_used.contains(&(s.last_used_ms, id)));
            assert_eq!(s.cached_size, s.partitions.len(), "touched after update");
            assert_eq!(s.partitions.by_seq.len(), s.partitions.seq_by_key.len());
            for (seq, cached) in &s.partitions.by_seq {
                assert_eq!(s.partitions.seq_by_key.get(&cached.key), Some(seq));
                assert_eq!(
                    matches!(cached.key.topic, TopicKey::Id(_)),
                    s.uses_topic_ids
                );
            }
            partitions += s.cached_size;
        }
        assert_eq!(partitions, self.partitions_cached);
        for key in self
            .evictable_by_all
            .iter()
            .chain(&self.evictable_by_privileged)
        {
            let s = self
                .sessions
                .get(&key.id)
                .expect("evictable session is live");
            assert_eq!(*key, s.evictable_key());
        }
        assert!(self
            .evictable_by_all
            .is_subset(&self.evictable_by_privileged));
    }

    /// Kafka's `maybeCreateSession`, plus runnel's partition budget. Returns the new id, or 0.
    fn maybe_create_session(
        &mut self,
        privileged: bool,
        uses_topic_ids: bool,
        planned: &[FetchPartition],
        outcomes: &[PartitionOutcome],
        now_ms: u64,
    ) -> i32 {
        let size = planned.len();
        // The budget first, by stale sessions only: a live session is never evicted for a
        // newcomer that would not fit anyway.
        if !self.fit_partitions(size, now_ms) {
            return INVALID_SESSION_ID;
        }
        if self.sessions.len() >= self.limits.slots_max && !self.try_evict(privileged, size, now_ms)
        {
            return INVALID_SESSION_ID;
        }
        let mut partitions = SessionPartitions::default();
        for (p, outcome) in planned.iter().zip(outcomes) {
            partitions.push(CachedPartition {
                key: p.key.clone(),
                params: p.params,
                // Kafka keeps the response's value, which is -1 with an error; -1 makes sure.
                high_watermark: if outcome.error_code == 0 {
                    outcome.high_watermark
                } else {
                    OFFSET_UNKNOWN
                },
                local_log_start_offset: outcome.log_start_offset,
            });
        }
        let id = self.new_session_id();
        let generation = self.generation_next;
        self.generation_next += 1;
        self.sessions.insert(
            id,
            Session {
                id,
                generation,
                privileged,
                uses_topic_ids,
                creation_ms: now_ms,
                last_used_ms: now_ms,
                epoch: next_epoch(INITIAL_EPOCH),
                cached_size: 0,
                partitions,
            },
        );
        self.touch(id, now_ms);
        id
    }

    /// Kafka's `tryEvict`: evicts at most one session to free a slot for a newcomer.
    fn try_evict(&mut self, privileged: bool, size: usize, now_ms: u64) -> bool {
        if self.evict_stale(now_ms) {
            return true;
        }
        let candidates = if privileged {
            &self.evictable_by_privileged
        } else {
            &self.evictable_by_all
        };
        let Some(&victim) = candidates.first() else {
            return false;
        };
        // Id 0 ranks the newcomer below an equal session: a tie does not evict.
        let newcomer = EvictableKey {
            privileged,
            size,
            id: 0,
        };
        if newcomer < victim {
            return false;
        }
        self.remove(victim.id);
        self.evictions_total += 1;
        true
    }

    /// Evicts the least recently used session if it is stale.
    fn evict_stale(&mut self, now_ms: u64) -> bool {
        let Some(&(last_used_ms, id)) = self.last_used.first() else {
            return false;
        };
        if now_ms.saturating_sub(last_used_ms) <= self.limits.eviction_ms_min {
            return false;
        }
        self.remove(id);
        self.evictions_total += 1;
        true
    }

    /// Whether `extra` more partitions fit the budget, evicting stale sessions to make room.
    fn fit_partitions(&mut self, extra: usize, now_ms: u64) -> bool {
        loop {
            let wanted = self.partitions_cached.saturating_add(extra);
            if wanted <= self.limits.partitions_cached_max {
                return true;
            }
            if !self.evict_stale(now_ms) {
                return false;
            }
        }
    }

    /// Kafka's `touch`: records a use and re-files the session by size and age.
    fn touch(&mut self, id: i32, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(&id) else {
            unreachable!("touch of unknown session {id}");
        };
        self.last_used.remove(&(session.last_used_ms, id));
        session.last_used_ms = now_ms;
        self.last_used.insert((now_ms, id));

        let old_key = session.evictable_key();
        self.evictable_by_all.remove(&old_key);
        self.evictable_by_privileged.remove(&old_key);
        self.partitions_cached -= session.cached_size;
        session.cached_size = session.partitions.len();
        self.partitions_cached += session.cached_size;

        let key = session.evictable_key();
        let old_enough = now_ms.saturating_sub(session.creation_ms) > self.limits.eviction_ms_min;
        if !session.privileged || old_enough {
            self.evictable_by_privileged.insert(key);
        }
        if old_enough {
            self.evictable_by_all.insert(key);
        }
    }

    fn remove(&mut self, id: i32) -> Option<Session> {
        let session = self.sessions.remove(&id)?;
        self.last_used.remove(&(session.last_used_ms, id));
        let key = session.evictable_key();
        self.evictable_by_all.remove(&key);
        self.evictable_by_privileged.remove(&key);
        self.partitions_cached -= session.cached_size;
        Some(session)
    }

    /// A random id in `1..i32::MAX` no live session has (Kafka's `newSessionId`).
    fn new_session_id(&mut self) -> i32 {
        // Slots are far fewer than ids, so this ends after a draw or two.
        loop {
            // xorshift64*.
            let mut x = self.random_state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.random_state = x;
            let draw = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
            let id = i32::try_from(draw).unwrap_or(INVALID_SESSION_ID);
            if id != INVALID_SESSION_ID && id != i32::MAX && !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }
}

/// The request's partitions once each, first position and last parameters, as Kafka's
/// `LinkedHashMap.put` keeps them.
fn dedup(partitions: &[FetchPartition]) -> Vec<FetchPartition> {
    let mut position: HashMap<&PartitionKey, usize> = HashMap::with_capacity(partitions.len());
    let mut out: Vec<FetchPartition> = Vec::with_capacity(partitions.len());
    for p in partitions {
        match position.get(&p.key) {
            Some(&i) => out[i].params = p.params,
            None => {
                position.insert(&p.key, out.len());
                out.push(p.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V_NAMES: i16 = 12;
    const V_IDS: i16 = 13;

    fn key(topic: &str, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Name(topic.to_owned()),
            partition,
        }
    }

    fn id_key(id: u128, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: TopicKey::Id(Uuid::from_u128(id)),
            partition,
        }
    }

    fn part(key: PartitionKey, fetch_offset: i64) -> FetchPartition {
        FetchPartition {
            key,
            params: PartitionParams {
                fetch_offset,
                log_start_offset: -1,
                partition_max_bytes: 1 << 20,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
            },
        }
    }

    fn request(id: i32, epoch: i32, partitions: Vec<FetchPartition>) -> SessionRequest {
        SessionRequest {
            session_id: id,
            session_epoch: epoch,
            partitions,
            ..SessionRequest::default()
        }
    }

    /// A partition response with no records and no error.
    fn quiet(high_watermark: i64) -> PartitionOutcome {
        PartitionOutcome {
            error_code: 0,
            high_watermark,
            log_start_offset: 0,
            records_bytes: 0,
            preferred_read_replica: -1,
            diverging_epoch: -1,
        }
    }

    fn with_records(high_watermark: i64) -> PartitionOutcome {
        PartitionOutcome {
            records_bytes: 100,
            ..quiet(high_watermark)
        }
    }

    fn limits(slots_max: usize) -> SessionCacheLimits {
        SessionCacheLimits {
            slots_max,
            ..SessionCacheLimits::default()
        }
    }

    fn ok(resolved: Resolved) -> FetchPlan {
        match resolved {
            Resolved::Fetch(plan) => plan,
            Resolved::Error(e) => panic!("unexpected session error {e:?}"),
        }
    }

    fn err(resolved: Resolved) -> SessionError {
        match resolved {
            Resolved::Error(e) => e,
            Resolved::Fetch(plan) => panic!("expected an error, got {:?}", plan.kind()),
        }
    }

    fn keys(plan: &FetchPlan) -> Vec<PartitionKey> {
        plan.partitions.iter().map(|p| p.key.clone()).collect()
    }

    /// Resolves and completes with the same outcome for every partition.
    fn fetch(
        cache: &mut FetchSessionCache,
        req: &SessionRequest,
        version: i16,
        outcome: PartitionOutcome,
        now_ms: u64,
    ) -> Completion {
        let plan = ok(cache.resolve(req, version, now_ms));
        let outcomes = vec![outcome; plan.partitions.len()];
        let done = cache.complete(plan, &outcomes, now_ms);
        cache.validate();
        done
    }

    /// Full fetch of `partitions` of topic "t", all at high watermark 10; returns the session id.
    fn open(cache: &mut FetchSessionCache, partitions: i32, follower: bool, now_ms: u64) -> i32 {
        let mut req = request(
            0,
            INITIAL_EPOCH,
            (0..partitions).map(|p| part(key("t", p), 0)).collect(),
        );
        req.from_follower = follower;
        fetch(cache, &req, V_NAMES, quiet(10), now_ms).session_id
    }

    fn included(done: &Completion) -> Vec<PartitionKey> {
        done.partitions
            .iter()
            .zip(&done.include)
            .filter(|(_, &inc)| inc)
            .map(|(p, _)| p.key.clone())
            .collect()
    }

    #[test]
    fn sessionless_fetch_answers_everything_and_caches_nothing() {
        // Goal: epoch -1 with id 0 is served like a pre-KIP-227 fetch: all partitions, id 0.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let req = request(
            0,
            FINAL_EPOCH,
            vec![part(key("t", 0), 5), part(key("t", 1), 7)],
        );
        let plan = ok(cache.resolve(&req, V_NAMES, 0));
        assert_eq!(plan.kind(), FetchKind::Sessionless);
        assert_eq!(plan.partitions, req.partitions);
        let done = cache.complete(plan, &[quiet(10), quiet(10)], 0);
        assert_eq!((done.session_id, done.error), (INVALID_SESSION_ID, None));
        assert_eq!(done.include, vec![true, true]);
        assert!(cache.is_empty());
        cache.validate();
    }

    #[test]
    fn duplicate_partitions_keep_first_position_and_last_params() {
        // Goal: a partition listed twice is read once, where it first appeared, with the last
        // parameters (Kafka's LinkedHashMap), so the session cannot hold it twice.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let req = request(
            0,
            INITIAL_EPOCH,
            vec![
                part(key("t", 0), 1),
                part(key("t", 1), 2),
                part(key("t", 0), 3),
            ],
        );
        let plan = ok(cache.resolve(&req, V_NAMES, 0));
        assert_eq!(
            plan.partitions,
            vec![part(key("t", 0), 3), part(key("t", 1), 2)]
        );
    }

    #[test]
    fn full_fetch_creates_a_session_and_answers_with_its_id() {
        // Goal: epoch 0 creates a session at completion; the response carries its id, holds
        // every partition, and the next request must use epoch 1.
        let mut cache = FetchSessionCache::new(limits(10), 7);
        let req = request(
            0,
            INITIAL_EPOCH,
            vec![part(key("t", 0), 0), part(key("t", 1), 0)],
        );
        let plan = ok(cache.resolve(&req, V_NAMES, 0));
        assert_eq!(plan.kind(), FetchKind::Full);
        let done = cache.complete(plan, &[quiet(10), quiet(10)], 0);
        assert_ne!(done.session_id, INVALID_SESSION_ID);
        assert!(done.session_id > 0);
        assert_eq!(done.include, vec![true, true]);
        assert_eq!((cache.len(), cache.partitions_cached()), (1, 2));
        cache.validate();
        let next = ok(cache.resolve(&request(done.session_id, 1, vec![]), V_NAMES, 1));
        assert_eq!(
            next.kind(),
            FetchKind::Incremental {
                session_id: done.session_id
            }
        );
        assert_eq!(keys(&next), vec![key("t", 0), key("t", 1)]);
    }

    #[test]
    fn incremental_fetch_of_unchanged_partitions_returns_none() {
        // Goal: with no records and the same HW and log start, no partition is sent, yet all
        // are read with the cached fetch offsets, and the epoch advances.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 3, false, 0);
        for epoch in 1..=3 {
            let plan = ok(cache.resolve(&request(id, epoch, vec![]), V_NAMES, 1));
            assert_eq!(plan.partitions.len(), 3);
            assert!(plan.partitions.iter().all(|p| p.params.fetch_offset == 0));
            let done = cache.complete(plan, &[quiet(10); 3], 1);
            assert_eq!((done.session_id, done.error), (id, None));
            assert_eq!(done.include, vec![false; 3]);
            cache.validate();
        }
    }

    #[test]
    fn incremental_fetch_returns_partitions_with_news() {
        // Goal: records, a HW change, a log start change, a preferred replica, a diverging
        // epoch and an error each put a partition in the response; the rest stay out.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 7, false, 0);
        let plan = ok(cache.resolve(&request(id, 1, vec![]), V_NAMES, 1));
        let outcomes = [
            quiet(10),
            with_records(10),
            quiet(11),
            PartitionOutcome {
                log_start_offset: 4,
                ..quiet(10)
            },
            PartitionOutcome {
                preferred_read_replica: 2,
                ..quiet(10)
            },
            PartitionOutcome {
                diverging_epoch: 3,
                ..quiet(10)
            },
            PartitionOutcome {
                error_code: 6,
                ..quiet(10)
            },
        ];
        let done = cache.complete(plan, &outcomes, 1);
        assert_eq!(
            done.include,
            vec![false, true, true, true, true, true, true]
        );
        cache.validate();
        // The new HW and log start were recorded: unchanged now, so not sent again.
        let plan = ok(cache.resolve(&request(id, 2, vec![]), V_NAMES, 2));
        let order = keys(&plan);
        let outcome_of = |k: &PartitionKey| match k.partition {
            2 => quiet(11),
            3 => PartitionOutcome {
                log_start_offset: 4,
                ..quiet(10)
            },
            _ => quiet(10),
        };
        let outcomes: Vec<_> = order.iter().map(outcome_of).collect();
        let done = cache.complete(plan, &outcomes, 2);
        // Partition 6 had an error, so its cached HW is -1 and it is sent once it clears.
        assert_eq!(included(&done), vec![key("t", 6)]);
    }

    #[test]
    fn partition_with_an_error_is_sent_every_time() {
        // Goal: an unknown topic id stays in the session and, answered UNKNOWN_TOPIC_ID by the
        // handler, is in every incremental response until forgotten.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let known = id_key(1, 0);
        let unknown = id_key(2, 0);
        let req = request(
            0,
            INITIAL_EPOCH,
            vec![part(known.clone(), 0), part(unknown.clone(), 0)],
        );
        let unknown_topic_id = PartitionOutcome {
            error_code: ResponseError::UnknownTopicId.code(),
            ..quiet(-1)
        };
        let plan = ok(cache.resolve(&req, V_IDS, 0));
        let id = cache
            .complete(plan, &[quiet(10), unknown_topic_id], 0)
            .session_id;
        for epoch in 1..=2 {
            let plan = ok(cache.resolve(&request(id, epoch, vec![]), V_IDS, 1));
            let done = cache.complete(plan, &[quiet(10), unknown_topic_id], 1);
            assert_eq!(included(&done), vec![unknown.clone()]);
        }
        let mut forget = request(id, 3, vec![]);
        forget.forgotten = vec![unknown];
        let plan = ok(cache.resolve(&forget, V_IDS, 2));
        assert_eq!(keys(&plan), vec![known]);
    }

    #[test]
    fn incremental_request_adds_updates_and_forgets_partitions() {
        // Goal: listed partitions are added at the end or get new parameters; forgotten ones
        // leave the session; a new partition is sent the first time whatever its state.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 3, false, 0);
        let mut req = request(id, 1, vec![part(key("t", 1), 42), part(key("u", 0), 0)]);
        req.forgotten = vec![key("t", 0), key("nope", 9)];
        let plan = ok(cache.resolve(&req, V_NAMES, 1));
        assert_eq!(keys(&plan), vec![key("t", 1), key("t", 2), key("u", 0)]);
        assert_eq!(plan.partitions[0].params.fetch_offset, 42);
        let done = cache.complete(plan, &[quiet(10); 3], 1);
        assert_eq!(included(&done), vec![key("u", 0)]);
        assert_eq!(cache.partitions_cached(), 3);
        cache.validate();
    }

    #[test]
    fn full_fetch_ignores_forgotten_topics() {
        // Goal: forgotten topics only apply to incremental fetches.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let mut req = request(0, INITIAL_EPOCH, vec![part(key("t", 0), 0)]);
        req.forgotten = vec![key("t", 0)];
        let plan = ok(cache.resolve(&req, V_NAMES, 0));
        assert_eq!(keys(&plan), vec![key("t", 0)]);
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        // Goal: an incremental request leaving the session empty removes it and is answered
        // sessionless (id 0), which tells the client to start over.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 1, false, 0);
        let mut req = request(id, 1, vec![]);
        req.forgotten = vec![key("t", 0)];
        let done = fetch(&mut cache, &req, V_NAMES, quiet(10), 1);
        assert_eq!(done.session_id, INVALID_SESSION_ID);
        assert!(cache.is_empty());
    }

    #[test]
    fn wrong_epoch_is_invalid_fetch_session_epoch() {
        // Goal: a stale, repeated or future epoch gets 71 and leaves the session as it was.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 1, false, 0);
        fetch(&mut cache, &request(id, 1, vec![]), V_NAMES, quiet(10), 1);
        for epoch in [1, 3, -2] {
            let e = err(cache.resolve(&request(id, epoch, vec![]), V_NAMES, 2));
            assert_eq!(e, SessionError::InvalidEpoch);
            assert_eq!(e.code(), 71);
        }
        assert!(matches!(
            cache.resolve(&request(id, 2, vec![]), V_NAMES, 3),
            Resolved::Fetch(_)
        ));
    }

    #[test]
    fn unknown_session_id_is_fetch_session_id_not_found() {
        // Goal: an incremental request for a session we do not have gets 70.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 1, false, 0);
        let other = if id == 1 { 2 } else { 1 };
        let e = err(cache.resolve(&request(other, 1, vec![]), V_NAMES, 1));
        assert_eq!((e, e.code()), (SessionError::IdNotFound, 70));
        let e = err(cache.resolve(&request(0, 1, vec![]), V_NAMES, 1));
        assert_eq!(e, SessionError::IdNotFound);
    }

    #[test]
    fn final_epoch_closes_the_session_and_fetches_sessionless() {
        // Goal: id != 0 with epoch -1 removes the session and serves the request without one.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 2, false, 0);
        let req = request(id, FINAL_EPOCH, vec![part(key("t", 0), 3)]);
        let plan = ok(cache.resolve(&req, V_NAMES, 1));
        assert_eq!(plan.kind(), FetchKind::Sessionless);
        assert!(cache.is_empty());
        cache.validate();
        assert_eq!(cache.complete(plan, &[quiet(10)], 1).session_id, 0);
        let e = err(cache.resolve(&request(id, 1, vec![]), V_NAMES, 2));
        assert_eq!(e, SessionError::IdNotFound);
    }

    #[test]
    fn initial_epoch_with_an_id_replaces_the_session() {
        // Goal: id != 0 with epoch 0 removes the old session before creating a new one.
        let mut cache = FetchSessionCache::new(limits(1), 1);
        let old = open(&mut cache, 2, false, 0);
        let req = request(old, INITIAL_EPOCH, vec![part(key("t", 0), 0)]);
        let new = fetch(&mut cache, &req, V_NAMES, quiet(10), 1).session_id;
        assert_ne!(new, INVALID_SESSION_ID);
        assert_ne!(new, old);
        assert_eq!((cache.len(), cache.partitions_cached()), (1, 1));
    }

    #[test]
    fn topic_naming_must_match_the_session() {
        // Goal: a session created by ids used by name, or the reverse, gets 106.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let by_name = open(&mut cache, 1, false, 0);
        let e = err(cache.resolve(&request(by_name, 1, vec![]), V_IDS, 1));
        assert_eq!((e, e.code()), (SessionError::TopicIdError, 106));
        let req = request(0, INITIAL_EPOCH, vec![part(id_key(1, 0), 0)]);
        let by_id = fetch(&mut cache, &req, V_IDS, quiet(10), 0).session_id;
        let e = err(cache.resolve(&request(by_id, 1, vec![]), V_NAMES, 1));
        assert_eq!(e, SessionError::TopicIdError);
        assert!(matches!(
            cache.resolve(&request(by_id, 1, vec![]), V_IDS, 1),
            Resolved::Fetch(_)
        ));
    }

    #[test]
    fn partitions_with_records_move_to_the_end() {
        // Goal: round robin — a partition that returned records is read last next time.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 3, false, 0);
        let plan = ok(cache.resolve(&request(id, 1, vec![]), V_NAMES, 1));
        assert_eq!(keys(&plan), vec![key("t", 0), key("t", 1), key("t", 2)]);
        cache.complete(plan, &[with_records(10), quiet(10), quiet(10)], 1);
        let plan = ok(cache.resolve(&request(id, 2, vec![]), V_NAMES, 2));
        assert_eq!(keys(&plan), vec![key("t", 1), key("t", 2), key("t", 0)]);
        cache.complete(plan, &[with_records(10), quiet(10), quiet(10)], 2);
        let plan = ok(cache.resolve(&request(id, 3, vec![]), V_NAMES, 3));
        assert_eq!(keys(&plan), vec![key("t", 2), key("t", 0), key("t", 1)]);
        cache.validate();
    }

    #[test]
    fn full_cache_evicts_a_stale_session() {
        // Goal: with no free slot, a session unused for longer than the eviction time goes.
        let mut cache = FetchSessionCache::new(limits(1), 1);
        let old = open(&mut cache, 5, true, 0);
        let new = open(&mut cache, 1, false, SESSION_EVICTION_MS_MIN + 1);
        assert_ne!(new, INVALID_SESSION_ID);
        assert_eq!(cache.evictions_total(), 1);
        let e = err(cache.resolve(
            &request(old, 1, vec![]),
            V_NAMES,
            SESSION_EVICTION_MS_MIN + 2,
        ));
        assert_eq!(e, SessionError::IdNotFound);
    }

    #[test]
    fn full_cache_with_nothing_evictable_creates_no_session() {
        // Goal: a young, used session is kept; the newcomer is served with session id 0.
        let mut cache = FetchSessionCache::new(limits(1), 1);
        let kept = open(&mut cache, 1, false, 0);
        let refused = open(&mut cache, 10, false, SESSION_EVICTION_MS_MIN);
        assert_eq!(refused, INVALID_SESSION_ID);
        assert_eq!(cache.evictions_total(), 0);
        let plan = ok(cache.resolve(&request(kept, 1, vec![]), V_NAMES, SESSION_EVICTION_MS_MIN));
        assert_eq!(plan.partitions.len(), 1);
        // Slots 0 disables sessions.
        let mut none = FetchSessionCache::new(limits(0), 1);
        assert_eq!(open(&mut none, 1, true, 0), INVALID_SESSION_ID);
    }

    #[test]
    fn bigger_session_evicts_a_smaller_one_only_after_the_grace_period() {
        // Goal: once older than the eviction time at its last use, a session is evictable by a
        // newcomer with more partitions, but not by one of equal size.
        let mut cache = FetchSessionCache::new(limits(1), 1);
        let small = open(&mut cache, 2, false, 0);
        let t = SESSION_EVICTION_MS_MIN + 1;
        fetch(
            &mut cache,
            &request(small, 1, vec![]),
            V_NAMES,
            quiet(10),
            t,
        );
        assert_eq!(open(&mut cache, 2, false, t + 1), INVALID_SESSION_ID);
        assert_ne!(open(&mut cache, 3, false, t + 1), INVALID_SESSION_ID);
        assert_eq!(cache.evictions_total(), 1);
    }

    #[test]
    fn follower_evicts_a_young_consumer_session_but_not_the_reverse() {
        // Goal: follower sessions are privileged: they evict consumer sessions at any age,
        // and a consumer, even a bigger one, cannot evict a young follower session.
        let mut cache = FetchSessionCache::new(limits(1), 1);
        open(&mut cache, 5, false, 0);
        let follower = open(&mut cache, 1, true, 1);
        assert_ne!(follower, INVALID_SESSION_ID);
        assert_eq!(open(&mut cache, 50, false, 2), INVALID_SESSION_ID);
        assert_eq!(cache.len(), 1);
        assert!(cache.sessions.contains_key(&follower));
    }

    #[test]
    fn partition_budget_limits_sessions() {
        // Goal (runnel): a session that does not fit the partition budget is not created, and
        // one that outgrows it is closed and served sessionless with all its partitions.
        let mut cache = FetchSessionCache::new(
            SessionCacheLimits {
                partitions_cached_max: 3,
                ..limits(10)
            },
            1,
        );
        assert_eq!(open(&mut cache, 4, false, 0), INVALID_SESSION_ID);
        let id = open(&mut cache, 2, false, 0);
        assert_ne!(id, INVALID_SESSION_ID);
        let req = request(id, 1, vec![part(key("u", 0), 0), part(key("u", 1), 0)]);
        let plan = ok(cache.resolve(&req, V_NAMES, 1));
        assert_eq!(plan.kind(), FetchKind::Sessionless);
        assert_eq!(plan.partitions.len(), 4);
        assert!(cache.is_empty());
        cache.validate();
        // A stale session makes room for a new one.
        open(&mut cache, 2, false, 2);
        let t = SESSION_EVICTION_MS_MIN + 3;
        assert_ne!(open(&mut cache, 3, false, t), INVALID_SESSION_ID);
        assert_eq!(cache.partitions_cached(), 3);
    }

    #[test]
    fn overtaken_request_gets_invalid_epoch_at_completion() {
        // Goal: a duplicate of a request in flight gets 71 at resolve; a request overtaken by
        // the next epoch gets 71 with the session id at completion, and changes nothing.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 1, false, 0);
        let first = ok(cache.resolve(&request(id, 1, vec![]), V_NAMES, 1));
        let e = err(cache.resolve(&request(id, 1, vec![]), V_NAMES, 1));
        assert_eq!(e, SessionError::InvalidEpoch);
        let second = ok(cache.resolve(&request(id, 2, vec![]), V_NAMES, 1));
        let done = cache.complete(first, &[quiet(99)], 2);
        assert_eq!(done.session_id, id);
        assert_eq!(done.error, Some(SessionError::InvalidEpoch));
        assert_eq!(done.include, vec![false]);
        // The overtaken request recorded nothing: HW 99 is still news.
        let done = cache.complete(second, &[quiet(99)], 2);
        assert_eq!((done.error, done.include), (None, vec![true]));
        cache.validate();
    }

    #[test]
    fn session_removed_between_steps_answers_everything_without_a_session() {
        // Goal: if the session went away after resolve, the response holds every planned
        // partition with session id 0, even when a new session reuses the id.
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 2, false, 0);
        let plan = ok(cache.resolve(&request(id, 1, vec![]), V_NAMES, 1));
        let close = request(id, INITIAL_EPOCH, vec![part(key("t", 0), 0)]);
        let close_plan = super::tests::ok(cache.resolve(&close, V_NAMES, 1));
        // Rewind the generator so the replacement draws the same id, as chance could.
        cache.random_state = 1;
        let reused = cache.complete(close_plan, &[quiet(10)], 1).session_id;
        assert_eq!(reused, id);
        let done = cache.complete(plan, &[quiet(10), quiet(10)], 1);
        assert_eq!((done.session_id, done.error), (INVALID_SESSION_ID, None));
        assert_eq!(done.include, vec![true, true]);
        cache.validate();
    }

    #[test]
    fn session_ids_are_random_positive_and_unique() {
        // Goal: ids are never 0, negative or repeated among live sessions, and a seed replays.
        let mut cache = FetchSessionCache::new(limits(1000), 3);
        let ids: Vec<i32> = (0..1000).map(|_| open(&mut cache, 1, false, 0)).collect();
        assert!(ids.iter().all(|&id| id > 0 && id < i32::MAX));
        let unique: BTreeSet<i32> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        let mut again = FetchSessionCache::new(limits(1000), 3);
        assert_eq!(open(&mut again, 1, false, 0), ids[0]);
        // Rewound, the generator draws live ids again; they must be skipped.
        let mut full = FetchSessionCache::new(limits(1001), 3);
        let live: BTreeSet<i32> = (0..1000).map(|_| open(&mut full, 1, false, 0)).collect();
        full.random_state = 3;
        let next = open(&mut full, 1, false, 0);
        assert!(!live.contains(&next));
        assert_eq!(full.len(), 1001);
    }

    #[test]
    fn epochs_wrap_to_one() {
        // Goal: Kafka's nextEpoch: after i32::MAX comes 1, and -1 stays -1.
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
        let mut cache = FetchSessionCache::new(limits(10), 1);
        let id = open(&mut cache, 1, false, 0);
        if let Some(s) = cache.sessions.get_mut(&id) {
            s.epoch = i32::MAX;
        }
        fetch(
            &mut cache,
            &request(id, i32::MAX, vec![]),
            V_NAMES,
            quiet(10),
            1,
        );
        assert!(matches!(
            cache.resolve(&request(id, 1, vec![]), V_NAMES, 2),
            Resolved::Fetch(_)
        ));
    }

    #[test]
    fn adapter_reads_kafka_fetch_requests() {
        // Goal: topics by name before v13 and by id from v13, forgotten topics, and the
        // follower flag from ReplicaId (< v15) or ReplicaState (v15+).
        use kafka_protocol::messages::fetch_request::{
            FetchPartition as KPartition, FetchTopic, ForgottenTopic, ReplicaState,
        };
        use kafka_protocol::messages::{BrokerId, TopicName};
        use kafka_protocol::protocol::StrBytes;

        let topic_id = Uuid::from_u128(9);
        let request = FetchRequest::default()
            .with_session_id(5)
            .with_session_epoch(2)
            .with_replica_id(BrokerId(1))
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_topic_id(topic_id)
                .with_partitions(vec![KPartition::default()
                    .with_partition(3)
                    .with_fetch_offset(40)
                    .with_partition_max_bytes(1000)])])
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_topic_id(topic_id)
                .with_partitions(vec![1])]);
        let old = SessionRequest::from_kafka(&request, 12);
        assert_eq!(
            (old.session_id, old.session_epoch, old.from_follower),
            (5, 2, true)
        );
        assert_eq!(old.partitions[0].key, key("t", 3));
        assert_eq!(old.partitions[0].params.fetch_offset, 40);
        assert_eq!(old.partitions[0].params.partition_max_bytes, 1000);
        assert_eq!(old.forgotten, vec![key("t", 1)]);

        let new = SessionRequest::from_kafka(&request, 15);
        assert_eq!(new.partitions[0].key, id_key(9, 3));
        assert_eq!(new.forgotten, vec![id_key(9, 1)]);
        assert!(
            !new.from_follower,
            "v15 reads ReplicaState, which defaults to -1"
        );
        let follower =
            request.with_replica_state(ReplicaState::default().with_replica_id(BrokerId(2)));
        assert!(SessionRequest::from_kafka(&follower, 15).from_follower);
    }
}
