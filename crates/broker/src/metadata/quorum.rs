//! The metadata quorum on a broker: the driver thread that owns the Raft node
//! ([`runnel_cluster::quorum::QuorumNode`]) and its durable log ([`super::raft_log::RaftLog`]),
//! the CONTROLLER listener and the connections to the other voters, and forwarding of
//! controller commands to the active controller.
//!
//! The driver is one OS thread: it ticks Raft every `election.timeout.ms / ELECTION_TICKS`,
//! steps messages from peers, decides queued commands on the leader with the controller engine
//! (one at a time: a command is decided only once everything before it applied), and for each
//! ready persists (fsync), sends, then applies the committed batches through the publisher,
//! on leaders and followers alike, in log order.
//!
//! Wire format on the CONTROLLER listener (runnel's own, between runnel controllers only):
//! frames `length: u32 BE` then `kind: u8` and a body. Kind 1: a Raft message (protobuf), one
//! way. Kind 2: a forwarded command (JSON), answered on the same connection by kind 3 (JSON
//! [`ForwardReply`]). Kind 4: a node asks to join as a learner, answered by kind 3. Kind 5: a
//! broker-only node (an observer, with no CONTROLLER listener to be dialed at) attaches this
//! connection: the controller writes its Raft messages to that node back on it. A connection
//! whose first frame is a Kafka request (its API key's high
//! byte, where the kind byte would be, is 0) is handed to the broker's async server as a
//! connection of the CONTROLLER listener ([`ControllerConnection`]): ApiVersions,
//! DescribeQuorum, DescribeCluster and the rest are served by the ordinary handlers.
//!
//! # DescribeQuorum
//!
//! The driver publishes a [`QuorumStatus`] after every step. Offsets follow the quorum's
//! mapping (a batch's metadata offset is its Raft index), and Kafka's end offsets are
//! exclusive: the high watermark is `commit index + 1`, a voter's log end offset is
//! `matched + 1` (the leader's own: `last index + 1`). A voter's last fetch is when the leader
//! last heard an append or heartbeat response from it; its last caught-up time is the last
//! such response at which its matched index reached the leader's last index (Kafka: a fetch
//! at the leader's log end). Both are -1 until heard of in this term, and "now" for the
//! leader itself, as Kafka's `LeaderState` reports them.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use raft::prelude::Message;
use runnel_cluster::controller::kafka_uuid_string;
use runnel_cluster::metadata::{MetadataDelta, MetadataImage};
use runnel_cluster::quorum::{
    decode_message, encode_message, Committed, Endpoint, Member, MemberChange, Members, Persisted,
    QuorumConfig, QuorumError, QuorumNode, MAX_MESSAGE_BYTES,
};
use runnel_cluster::{ClusterError, Command, ControllerEngine};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::quorum_config::QuorumSettings;
use super::raft_log::RaftLog;
use super::Publish;

/// Raft ticks per election timeout (raft-rs randomises the timeout in [1, 2) of it, as Kafka
/// randomises `controller.quorum.election.timeout.ms`).
const ELECTION_TICKS: usize = 10;
/// Between the campaigns of the survivors of a leader whose connection closed, in id order:
/// long enough for a pre-vote, a vote and their fsyncs on loopback or a LAN.
const LOST_LEADER_CAMPAIGN_STAGGER: Duration = Duration::from_millis(100);
/// How much faster a node ticks before it first hears of a leader (see `Driver::run`).
const FIRST_ELECTION_SPEEDUP: u32 = 40;
/// Ticks between a leader's heartbeats.
const HEARTBEAT_TICKS: usize = 1;
/// Frames queued for one peer before new ones are dropped (Raft resends).
const PEER_QUEUE: usize = 4096;
/// Pause before reconnecting to a peer that refused.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Pause between attempts of a command while no leader is known.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How long a command handed to the active controller may take to be decided, committed and
/// applied before the submitter gives up (Kafka's `request.timeout.ms` default, which bounds a
/// forwarded request in its `ForwardingManager`). Applying opens the logs of new partitions
/// on the way, so a CreateTopics of thousands of partitions takes seconds; it must not be
/// answered NOT_CONTROLLER while it is being committed. Finding a leader keeps the shorter
/// bound of `deadline`.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

const KIND_RAFT: u8 = 1;
const KIND_FORWARD: u8 = 2;
const KIND_REPLY: u8 = 3;
/// A node of a dynamic quorum asks to replicate the log as a learner (body: JSON [`Join`]),
/// answered by kind 3.
const KIND_JOIN: u8 = 4;
/// Pause between a joining node's requests to be added as a learner.
const JOIN_BACKOFF: Duration = Duration::from_millis(500);
/// Election timeouts without a leader after which a member of a dynamic quorum asks to join
/// again anyway: it may have been removed while it was down, which its own log cannot show
/// (the members drop its messages), and the join makes it an observer of the current quorum.
const REJOIN_AFTER_ELECTIONS: u32 = 5;
/// A broker-only node (an observer: no CONTROLLER listener for the leader to dial) opens a
/// connection to a controller and asks to be sent its Raft messages on it (body: its node id,
/// `u64` BE); the controller writes kind-1 frames back on it, the observer its answers.
const KIND_ATTACH: u8 = 5;

/// What a committed command produced.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    /// Metadata offset of its batch (of the image when it changed nothing).
    pub offset: i64,
    /// The image's next producer id right after the batch.
    pub next_producer_id: i64,
}

/// The active controller's answer to a forwarded command.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Ok(Outcome),
    Err { code: i16, message: Option<String> },
}

enum Reject {
    NotLeader(Option<u64>),
    Cluster(ClusterError),
}

type Reply = SyncSender<Result<Outcome, Reject>>;

/// A request to change the voter set, decided on the leader (Kafka's AddVoterHandler and
/// RemoveVoterHandler), plus runnel's own join of a learner.
#[derive(Debug, Clone)]
pub enum VoterRequest {
    /// AddRaftVoter: promote a caught-up learner with this directory id.
    Add {
        id: i32,
        directory_id: Uuid,
        endpoints: Vec<Endpoint>,
    },
    /// RemoveRaftVoter.
    Remove { id: i32, directory_id: Uuid },
    /// A node of a dynamic quorum asks to replicate as a learner (Kafka: an observer).
    Join(Join),
    /// The leader drops an unregistered broker-only node from the learners (Kafka's
    /// observers leave no trace once gone; a live one joins again).
    Forget { id: i32 },
}

/// The body of a join frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Join {
    pub id: i32,
    pub member: Member,
}

/// The error code and message of a refused voter change.
pub type VoterError = (i16, Option<String>);

type VoterReply = SyncSender<Result<(), VoterError>>;

enum Input {
    Raft(Message),
    Submit(Command, Reply),
    /// The connection that carried Raft messages from this peer closed.
    PeerLost(u64),
    Voters(VoterRequest, VoterReply),
    /// The leader's member book, as a joining node learns it: whom to answer until its own
    /// log holds a configuration.
    Learned(Members),
    /// An observer attached a connection: its Raft messages go there (see `KIND_ATTACH`).
    Attach(u64, SyncSender<Vec<u8>>),
}

/// The answer to a join: the leader's member book, or why not.
#[derive(Debug, Serialize, Deserialize)]
enum JoinReply {
    Ok(Members),
    Err { code: i16, message: Option<String> },
}

/// Work the leader decides in order.
enum Work {
    Command(Command, Reply),
    Voters(VoterRequest, VoterReply),
}

/// The voters, learners and their endpoints as this node last applied them.
#[derive(Debug, Clone, Default)]
pub struct Book {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: Members,
}

/// What `start` needs, kept between `open` and `start`.
struct Parts {
    bytes_between_snapshots: u64,
    node: QuorumNode,
    log: RaftLog,
    engine: ControllerEngine,
    inputs: Receiver<Input>,
    image: Arc<MetadataImage>,
}

/// A Kafka connection accepted on the CONTROLLER listener, for the broker's server. It holds
/// one of the listener's `CONTROLLER_CONNECTIONS_MAX` slots until dropped.
pub struct ControllerConnection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    _slot: Slot,
}

impl ControllerConnection {
    /// The socket, its peer, and the listener slot to hold while serving it.
    pub fn into_parts(self) -> (TcpStream, SocketAddr, Slot) {
        (self.stream, self.peer, self._slot)
    }
}

/// One of the CONTROLLER listener's connection slots, given back on drop.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where Kafka connections of the CONTROLLER listener go (`None`: nobody serves them yet, so
/// they are closed).
type KafkaConnections = Arc<Mutex<Option<tokio::sync::mpsc::Sender<ControllerConnection>>>>;

/// One replica's replication state, as the leader tracks it (DescribeQuorum's `ReplicaState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub id: i32,
    /// Its metadata directory id (nil for a static voter).
    pub directory_id: Uuid,
    /// Exclusive end offset of its log; -1 when unknown.
    pub log_end_offset: i64,
    /// Unix ms; -1 when unknown.
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}

/// What this node knows of the quorum (see the module docs for the mapping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node leads the quorum; the fields below are filled only then.
    pub leader: bool,
    /// The Raft term (Kafka's leader epoch).
    pub term: u64,
    pub high_watermark: i64,
    /// The voters, by id.
    pub voters: Vec<ReplicaStatus>,
    /// The learners (Kafka's observers), by id.
    pub observers: Vec<ReplicaStatus>,
}

/// The broker's handle on its quorum.
pub struct QuorumHandle {
    kafka: KafkaConnections,
    status: Arc<Mutex<QuorumStatus>>,
    node_id: i32,
    settings: QuorumSettings,
    inputs: SyncSender<Input>,
    /// The leader this node knows (-1: none).
    leader: Arc<AtomicI64>,
    /// The offset of the last published image, with a condvar for waiters.
    published: Arc<(Mutex<i64>, Condvar)>,
    parts: Mutex<Option<Parts>>,
    /// The committed voter set and endpoints, as the driver last applied them.
    book: Arc<Mutex<Book>>,
    /// This node's metadata directory id (`directory.id` in `<data-dir>/meta.properties`).
    directory_id: Uuid,
}

/// Opens the Raft log in `meta_dir` (migrating a single-node metadata log into it on first
/// use) and rebuilds the image from it. Nothing runs until [`QuorumHandle::start`].
pub fn open(
    meta_dir: &Path,
    node_id: i32,
    settings: &QuorumSettings,
    engine: ControllerEngine,
    bytes_between_snapshots: u64,
    legacy: impl FnOnce() -> Result<Option<MetadataImage>, ClusterError>,
) -> Result<(QuorumHandle, Arc<MetadataImage>), ClusterError> {
    let listener_name = settings.listener_name.clone();
    let directory_id =
        super::meta_properties::load_or_create(meta_dir.parent().unwrap_or(meta_dir), node_id)?;
    let own_member = Member {
        directory_id,
        endpoints: settings
            .listener
            .iter()
            .map(|(name, host, port)| Endpoint {
                name: name.clone(),
                host: advertised_host(host),
                port: *port,
            })
            .collect(),
    };
    // Static voters from the config; a dynamic quorum's voters live only in the Raft log (a
    // fresh node of one starts with none and joins as a learner).
    let mut voters: Vec<u64> = settings.voters.iter().map(|v| v.id as u64).collect();
    let mut members: Members = settings
        .voters
        .iter()
        .map(|v| {
            (
                v.id as u64,
                Member {
                    directory_id: Uuid::nil(),
                    endpoints: vec![Endpoint {
                        name: listener_name.clone(),
                        host: v.host.clone(),
                        port: v.port,
                    }],
                },
            )
        })
        .collect();
    let fresh = !RaftLog::exists(meta_dir);
    // Decided before anything is created, so a refused start leaves the dir as it was.
    let legacy = if fresh { legacy()? } else { None };
    if settings.dynamic() && (legacy.is_some() || (fresh && settings.standalone())) {
        // The first controller of a dynamic quorum (Kafka's `format --standalone`): a
        // single-node data dir, or a fresh node whose bootstrap servers are itself.
        voters = vec![node_id as u64];
        members = Members::from([(node_id as u64, own_member.clone())]);
    }
    if legacy.is_some() && voters != [node_id as u64] {
        return Err(ClusterError::InvalidConfig {
            name: "controller.quorum.voters".into(),
            value: format!("{voters:?}"),
            reason: "this data dir holds a single-node metadata log; it can join a quorum \
                     only as its sole voter (controller.quorum.voters = this node alone, or \
                     controller.quorum.bootstrap.servers = its own CONTROLLER endpoint, then \
                     add the others with kafka-metadata-quorum add-controller)"
                .into(),
        });
    }
    let (mut log, mut persisted) = RaftLog::open(meta_dir)?;
    {
        if let Some(image) = legacy {
            // A single-node data dir becomes the start of the Raft log: its image is the first
            // snapshot, after its last offset. Only as the sole voter (checked above): fresh
            // voters beside it could elect a leader from an empty log and overwrite it.
            let index = (image.offset.max(0) + 1) as u64;
            let snapshot = runnel_cluster::quorum::snapshot_of(
                index,
                1,
                &voters,
                &members,
                &image.to_records(),
            );
            log.persist(Some(&snapshot), &[], None)?;
            persisted = Persisted::default();
            persisted.apply(Some(&snapshot), &[], None);
            tracing::info!(
                offset = image.offset,
                "single-node metadata log moved into the raft log"
            );
        } else if fresh && settings.dynamic() && voters == [node_id as u64] {
            // The standalone first controller: its voter set is the first snapshot, as
            // Kafka's bootstrap checkpoint holds the first VotersRecord.
            let snapshot = runnel_cluster::quorum::snapshot_of(1, 1, &voters, &members, &[]);
            log.persist(Some(&snapshot), &[], None)?;
            persisted = Persisted::default();
            persisted.apply(Some(&snapshot), &[], None);
            tracing::info!("a standalone dynamic quorum starts with this node as its voter");
        }
    }
    let config = QuorumConfig {
        id: node_id as u64,
        election_ticks: ELECTION_TICKS,
        heartbeat_ticks: HEARTBEAT_TICKS,
        voters,
        members,
        static_members: !settings.dynamic(),
    };
    let mut node = QuorumNode::new(&config, persisted).map_err(|e| ClusterError::CorruptLog {
        path: meta_dir.join("raft"),
        position: 0,
        reason: e.to_string(),
    })?;
    // Replay what is committed into the image (the first readies after a restart).
    let mut image = MetadataImage::empty();
    loop {
        let ready = node.ready().map_err(|e| ClusterError::CorruptLog {
            path: meta_dir.join("raft"),
            position: 0,
            reason: e.to_string(),
        })?;
        let Some(ready) = ready else { break };
        log.persist(
            ready.snapshot.as_ref(),
            &ready.entries,
            ready.hard_state.as_ref(),
        )?;
        for committed in ready.committed {
            let (next, _) = apply(&image, committed);
            image = next;
        }
    }
    let image = Arc::new(image);
    let book = Book {
        voters: node.voters(),
        learners: node.learners(),
        members: node.members().clone(),
    };
    let (tx, rx) = mpsc::sync_channel(QUORUM_INPUTS_MAX);
    let handle = QuorumHandle {
        kafka: Arc::new(Mutex::new(None)),
        status: Arc::new(Mutex::new(QuorumStatus::default())),
        node_id,
        settings: settings.clone(),
        inputs: tx,
        leader: Arc::new(AtomicI64::new(-1)),
        published: Arc::new((Mutex::new(image.offset), Condvar::new())),
        parts: Mutex::new(Some(Parts {
            bytes_between_snapshots,
            node,
            log,
            engine,
            inputs: rx,
            image: Arc::clone(&image),
        })),
        book: Arc::new(Mutex::new(book)),
        directory_id,
    };
    Ok((handle, image))
}

/// Applies one committed item to `image`: the new image and what changed.
fn apply(image: &MetadataImage, committed: Committed) -> (MetadataImage, MetadataDelta) {
    match committed {
        Committed::Batch {
            offset, records, ..
        } => {
            let mut next = image.clone();
            let mut delta = MetadataDelta::default();
            for record in &records {
                next.replay(record, &mut delta);
            }
            next.offset = offset;
            (next, delta)
        }
        Committed::Membership { offset, .. } => {
            // A membership change publishes no records; the image's offset stays that of the
            // last batch.
            let _ = offset;
            (image.clone(), MetadataDelta::default())
        }
        Committed::Snapshot { offset, records } => {
            let mut next = MetadataImage::empty();
            for record in &records {
                next.apply(record);
            }
            next.offset = offset;
            let delta = snapshot_delta(image, &next);
            (next, delta)
        }
    }
}

/// What installing `new` in place of `old` changes, for the publisher.
fn snapshot_delta(old: &MetadataImage, new: &MetadataImage) -> MetadataDelta {
    let mut delta = MetadataDelta::default();
    for topic in old.topics.values() {
        if new.topic_by_id(&topic.topic_id).is_none() {
            delta.deleted_topics.push(Arc::clone(topic));
        }
    }
    for topic in new.topics.values() {
        match old.topic_by_id(&topic.topic_id) {
            None => {
                delta.created_topics.push(topic.topic_id);
                for partition in topic.registrations.keys() {
                    delta.changed_partitions.push((topic.topic_id, *partition));
                }
            }
            Some(before) => {
                if before.configs != topic.configs {
                    delta.changed_configs.push(topic.topic_id);
                }
                for _ in before.partitions..topic.partitions {
                    delta.grown_topics.push(topic.topic_id);
                }
                for (partition, registration) in &topic.registrations {
                    if before.registration(*partition) != Some(registration) {
                        delta.changed_partitions.push((topic.topic_id, *partition));
                    }
                }
            }
        }
    }
    for (id, broker) in &new.brokers {
        if old.brokers.get(id) != Some(broker) {
            delta.changed_brokers.push(*id);
        }
    }
    delta.changed_features = old.features != new.features;
    for resource in old.broker_configs.keys().chain(new.broker_configs.keys()) {
        if old.broker_configs.get(resource) != new.broker_configs.get(resource)
            && !delta.changed_broker_configs.contains(resource)
        {
            delta.changed_broker_configs.push(resource.clone());
        }
    }
    delta
}

impl QuorumHandle {
    /// Binds the CONTROLLER listener, connects to the other voters and starts the driver,
    /// which publishes every committed batch through `publisher` from now on.
    pub fn start(&self, publisher: Arc<dyn Publish + Send + Sync>) -> std::io::Result<()> {
        let Some(parts) = self.parts.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let listener = match self.settings.listener.clone() {
            Some((_, host, port)) => {
                let bind = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else if host.is_empty() {
                    format!("0.0.0.0:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let listener = TcpListener::bind(&bind)?;
                tracing::info!(address = %bind, "controller listener bound");
                Some(listener)
            }
            None => {
                tracing::info!(
                    "broker-only node: replicating the metadata log as an observer of the \
                     controllers"
                );
                None
            }
        };
        let mut peers = Peers {
            senders: HashMap::new(),
            attached: HashMap::new(),
            listener_name: self.settings.listener_name.clone(),
            timeout: Duration::from_millis(self.settings.request_timeout_ms),
            me: self.node_id as u64,
            observer: listener.is_none().then(|| self.inputs.clone()),
        };
        peers.follow(&self.book.lock().unwrap_or_else(|e| e.into_inner()).members);
        // A dynamic quorum's nodes join as learners until promoted; a broker-only node of any
        // quorum replicates as a learner for good (Kafka: an observer).
        if self.settings.dynamic() || !self.settings.controller {
            let join = Join {
                id: self.node_id,
                member: self.own_member(),
            };
            let bootstrap: Vec<String> = self
                .settings
                .bootstrap
                .iter()
                .map(|(host, port)| {
                    Endpoint {
                        name: String::new(),
                        host: host.clone(),
                        port: *port,
                    }
                    .address()
                })
                .collect();
            let book = Arc::clone(&self.book);
            let leader = Arc::clone(&self.leader);
            let name = peers.listener_name.clone();
            let timeout = peers.timeout;
            let inputs = self.inputs.clone();
            let rejoin_after =
                Duration::from_millis(self.settings.election_timeout_ms) * REJOIN_AFTER_ELECTIONS;
            std::thread::Builder::new()
                .name("quorum-join".into())
                .spawn(move || {
                    join_loop(
                        join,
                        bootstrap,
                        book,
                        leader,
                        name,
                        (timeout, rejoin_after),
                        inputs,
                    )
                })?;
        }
        if let Some(listener) = listener {
            let inputs = self.inputs.clone();
            let forward_inputs = self.inputs.clone();
            let request_timeout = Duration::from_millis(self.settings.request_timeout_ms);
            let kafka = Arc::clone(&self.kafka);
            let book = Arc::clone(&self.book);
            std::thread::Builder::new()
                .name("controller-listener".into())
                .spawn(move || {
                    accept_loop(
                        listener,
                        inputs,
                        forward_inputs,
                        request_timeout,
                        kafka,
                        book,
                    )
                })?;
        }
        let driver = Driver {
            node: parts.node,
            log: parts.log,
            engine: parts.engine,
            image: parts.image,
            inputs: parts.inputs,
            peers,
            publisher,
            leader: Arc::clone(&self.leader),
            status: Arc::clone(&self.status),
            replicas: HashMap::new(),
            replicas_term: 0,
            published: Arc::clone(&self.published),
            queue: VecDeque::new(),
            in_flight: None,
            book: Arc::clone(&self.book),
            dynamic: self.settings.dynamic(),
            membership_changed: false,
            next_proposal: 1,
            bytes_between_snapshots: parts.bytes_between_snapshots,
            bytes_since_snapshot: 0,
            tick: Duration::from_millis(
                (self.settings.election_timeout_ms / ELECTION_TICKS as u64).max(1),
            ),
            campaign_at: None,
        };
        std::thread::Builder::new()
            .name("metadata-quorum".into())
            .spawn(move || driver.run())?;
        Ok(())
    }

    /// The Kafka connections of the CONTROLLER listener from now on, with the listener's name
    /// (`controller.listener.names`' first). A second call takes them over from the first.
    pub fn controller_connections(
        &self,
    ) -> (String, tokio::sync::mpsc::Receiver<ControllerConnection>) {
        let (tx, rx) = tokio::sync::mpsc::channel(CONTROLLER_CONNECTIONS_MAX);
        *self.kafka.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        (self.settings.listener_name.clone(), rx)
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The CONTROLLER listener's name (`controller.listener.names`' first).
    pub fn controller_listener(&self) -> Option<&str> {
        Some(self.settings.listener_name.as_str()).filter(|n| !n.is_empty())
    }

    /// Whether this node is a voter-capable controller (`process.roles` has `controller`); a
    /// broker-only node observes the quorum.
    pub fn is_controller(&self) -> bool {
        self.settings.controller
    }

    /// The committed voters with their CONTROLLER endpoint (the static ones of
    /// `controller.quorum.voters` until a membership change commits).
    pub fn voters(&self) -> Vec<super::quorum_config::Voter> {
        let book = self.book();
        let name = self.controller_listener().unwrap_or_default();
        book.voters
            .iter()
            .filter_map(|id| {
                let endpoint = book.members.get(id)?.endpoint(name)?;
                Some(super::quorum_config::Voter {
                    id: *id as i32,
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                })
            })
            .collect()
    }

    /// `controller.quorum.bootstrap.servers` as `host:port` (empty with static voters).
    pub fn bootstrap_addresses(&self) -> Vec<String> {
        self.settings
            .bootstrap
            .iter()
            .map(|(host, port)| {
                Endpoint {
                    name: String::new(),
                    host: host.clone(),
                    port: *port,
                }
                .address()
            })
            .collect()
    }

    /// The committed voter set, learners and their endpoints.
    pub fn book(&self) -> Book {
        self.book.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node's metadata directory id.
    pub fn directory_id(&self) -> Uuid {
        self.directory_id
    }

    /// Whether the voter set can change (a dynamic quorum).
    pub fn dynamic(&self) -> bool {
        self.settings.dynamic()
    }

    /// This node as a member: its directory id and CONTROLLER endpoint.
    fn own_member(&self) -> Member {
        Member {
            directory_id: self.directory_id,
            endpoints: self
                .settings
                .listener
                .iter()
                .map(|(name, host, port)| Endpoint {
                    name: name.clone(),
                    host: advertised_host(host),
                    port: *port,
                })
                .collect(),
        }
    }

    /// Decides a voter change on the active controller (this node must lead: Kafka answers
    /// NOT_LEADER_OR_FOLLOWER elsewhere) and waits until it commits or `timeout` passes.
    pub fn change_voters(
        &self,
        request: VoterRequest,
        timeout: Duration,
    ) -> Result<(), VoterError> {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.inputs.send(Input::Voters(request, tx)).is_err() {
            return Err((NOT_LEADER_OR_FOLLOWER, None));
        }
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err((
                REQUEST_TIMED_OUT,
                Some("Request timed out waiting for the voter change to commit".into()),
            )),
        }
    }

    /// What this node knows of the quorum now.
    pub fn status(&self) -> QuorumStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `controller.quorum.request.timeout.ms`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    pub fn is_active_controller(&self) -> bool {
        self.leader.load(Ordering::Acquire) == i64::from(self.node_id)
    }

    /// The active controller: its node id and CONTROLLER listener address.
    pub fn active_controller(&self) -> Option<(i32, String)> {
        let leader = self.leader.load(Ordering::Acquire);
        let address = self.member_address(u64::try_from(leader).ok()?)?;
        Some((leader as i32, address))
    }

    /// The CONTROLLER address of member `id`, from the committed book.
    fn member_address(&self, id: u64) -> Option<String> {
        let book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let name = self.controller_listener().unwrap_or_default();
        Some(book.members.get(&id)?.endpoint(name)?.address())
    }

    fn deadline(&self) -> Instant {
        let ms = self
            .settings
            .request_timeout_ms
            .max(2 * self.settings.election_timeout_ms)
            + 1000;
        Instant::now() + Duration::from_millis(ms)
    }

    /// Decides and commits `command` on the active controller (this node or, forwarded, the
    /// leader), and returns once this node's published image holds the result.
    pub fn submit(&self, command: &Command) -> Result<Outcome, ClusterError> {
        let deadline = self.deadline();
        loop {
            // Once a leader holds the command, it may take longer than finding one: see
            // `COMMIT_WAIT`. A node that is not the leader answers at once, so only a command
            // really being committed waits this long.
            let commit_deadline = Instant::now() + COMMIT_WAIT;
            let attempt = match submit_local(&self.inputs, command.clone(), commit_deadline) {
                Ok(outcome) => return Ok(outcome),
                Err(Reject::Cluster(e)) => return Err(e),
                Err(Reject::NotLeader(Some(leader))) if leader != self.node_id as u64 => {
                    self.forward(leader, command, commit_deadline)
                }
                Err(Reject::NotLeader(_)) => None,
            };
            match attempt {
                Some(Ok(outcome)) => {
                    self.wait_published(outcome.offset, commit_deadline);
                    return Ok(outcome);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NotController(
                    "no active controller could commit the request in time".into(),
                ));
            }
            std::thread::sleep(RETRY_BACKOFF);
        }
    }

    /// Sends `command` to `leader`; `None` when it should be retried (not reachable, no
    /// longer the leader).
    fn forward(
        &self,
        leader: u64,
        command: &Command,
        deadline: Instant,
    ) -> Option<Result<Outcome, ClusterError>> {
        let leader_address = self.member_address(leader)?;
        let body = serde_json::to_vec(command).ok()?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let reply = (|| -> std::io::Result<ForwardReply> {
            let address = leader_address
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let mut stream =
                TcpStream::connect_timeout(&address, timeout.max(Duration::from_millis(1)))?;
            stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            write_frame(&mut stream, KIND_FORWARD, &body)?;
            let (kind, body) = read_frame(&mut stream)?;
            if kind != KIND_REPLY {
                return Err(std::io::Error::other("unexpected reply kind"));
            }
            serde_json::from_slice(&body).map_err(std::io::Error::other)
        })();
        match reply {
            Ok(ForwardReply::Ok(outcome)) => Some(Ok(outcome)),
            Ok(ForwardReply::Err { code, .. }) if code == NOT_CONTROLLER => None,
            Ok(ForwardReply::Err { code, message }) => {
                Some(Err(ClusterError::Forwarded { code, message }))
            }
            Err(e) => {
                tracing::debug!(leader, error = %e, "forwarding to the active controller failed");
                None
            }
        }
    }

    /// Waits until the published image reached `offset` (or the deadline passed).
    fn wait_published(&self, offset: i64, deadline: Instant) {
        let (lock, condvar) = &*self.published;
        let mut published = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *published < offset {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    offset,
                    published = *published,
                    "the image has not caught up"
                );
                return;
            }
            published = condvar
                .wait_timeout(published, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

const NOT_CONTROLLER: i16 = 41;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const UNSUPPORTED_VERSION: i16 = 35;
const DUPLICATE_VOTER: i16 = 126;
const VOTER_NOT_FOUND: i16 = 127;
const INVALID_REQUEST: i16 = 42;

/// The host others reach a listener bound on `host` at (a wildcard bind is reached on
/// loopback, as Kafka advertises the canonical host name).
fn advertised_host(host: &str) -> String {
    match host {
        "" | "0.0.0.0" => "localhost".into(),
        "::" => "::1".into(),
        h => h.to_owned(),
    }
}

/// The connections to the other members, following the committed book: a member added
/// later is connected to, a removed one dropped (its sender thread ends).
struct Peers {
    senders: HashMap<u64, (String, SyncSender<Vec<u8>>)>,
    /// Observers without a CONTROLLER endpoint, reached on the connection they attached.
    attached: HashMap<u64, SyncSender<Vec<u8>>>,
    listener_name: String,
    timeout: Duration,
    me: u64,
    /// On a broker-only node: where the Raft messages read from its own connections go (it
    /// attaches each one, as it has no listener to be dialed at).
    observer: Option<SyncSender<Input>>,
}

impl Peers {
    fn follow(&mut self, members: &Members) {
        self.attached.retain(|id, tx| {
            // A member that gained an endpoint is dialed; a removed one is dropped.
            members
                .get(id)
                .is_some_and(|m| m.endpoint(&self.listener_name).is_none())
                && !is_disconnected(tx)
        });
        self.senders.retain(|id, (address, _)| {
            members
                .get(id)
                .and_then(|m| m.endpoint(&self.listener_name))
                .is_some_and(|e| e.address() == *address)
        });
        for (id, member) in members {
            if *id == self.me || self.senders.contains_key(id) {
                continue;
            }
            let Some(endpoint) = member.endpoint(&self.listener_name) else {
                continue;
            };
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PEER_QUEUE);
            let address = endpoint.address();
            let timeout = self.timeout;
            let attach = self.observer.clone().map(|inputs| Attach {
                me: self.me,
                inputs,
            });
            let spawned = {
                let address = address.clone();
                std::thread::Builder::new()
                    .name(format!("raft-peer-{id}"))
                    .spawn(move || peer_sender(address, timeout, rx, attach))
            };
            match spawned {
                Ok(_) => {
                    self.senders.insert(*id, (address, tx));
                }
                Err(e) => tracing::warn!(error = %e, "cannot start a raft peer sender"),
            }
        }
    }

    /// Sends to `id` at `member`'s endpoint from now on (its update is on its way to commit;
    /// until then the leader must reach it there to commit the update at all).
    fn redirect(&mut self, id: u64, member: &Member) {
        self.senders.remove(&id);
        let mut one = Members::new();
        one.insert(id, member.clone());
        let others = std::mem::take(&mut self.senders);
        self.follow(&one);
        self.senders.extend(others);
    }

    fn get(&self, id: &u64) -> Option<&SyncSender<Vec<u8>>> {
        self.senders
            .get(id)
            .map(|(_, tx)| tx)
            .or_else(|| self.attached.get(id))
    }

    /// Reaches observer `id` on the connection it attached (replacing an older one). A member
    /// with a CONTROLLER endpoint is dialed there instead.
    fn attach(&mut self, id: u64, tx: SyncSender<Vec<u8>>) {
        if id != self.me && !self.senders.contains_key(&id) {
            self.attached.insert(id, tx);
        }
    }
}

/// Whether the thread behind `tx` has gone (its connection closed).
fn is_disconnected(tx: &SyncSender<Vec<u8>>) -> bool {
    // An empty frame is never written (see `attached_writer`): a probe.
    matches!(
        tx.try_send(Vec::new()),
        Err(mpsc::TrySendError::Disconnected(_))
    )
}

/// A broker-only node's side of an attached connection: who it is, and where the Raft
/// messages the controller sends back on it go.
struct Attach {
    me: u64,
    inputs: SyncSender<Input>,
}

/// A node of a dynamic quorum asks a bootstrap server (or the leader or members it knows) to
/// add it as a learner whenever the committed book does not hold it as it is (not a member yet,
/// removed, or at other endpoints). Runs for the life of the process.
fn join_loop(
    join: Join,
    bootstrap: Vec<String>,
    book: Arc<Mutex<Book>>,
    leader: Arc<AtomicI64>,
    listener_name: String,
    (timeout, rejoin_after): (Duration, Duration),
    inputs: SyncSender<Input>,
) {
    let me = join.id as u64;
    let Ok(body) = serde_json::to_vec(&join) else {
        return;
    };
    let mut next = 0usize;
    let mut leaderless_since: Option<Instant> = None;
    loop {
        let targets: Vec<String> = {
            let book = book.lock().unwrap_or_else(|e| e.into_inner());
            let leader = leader.load(Ordering::Acquire);
            if leader >= 0 {
                leaderless_since = None;
            } else {
                leaderless_since.get_or_insert_with(Instant::now);
            }
            // A member whose endpoints changed (a restart on another port) asks again: the
            // leader updates its entry (Kafka's UpdateRaftVoter). A member that applied its
            // own removal asks again too, and goes on replicating as an observer (as a removed
            // Kafka controller does); so does one that hears no leader for long (removed
            // while it was down: the leader adds it back as an observer; a member the leader
            // still holds as it is gets a plain yes).
            let stranded = leaderless_since.is_some_and(|since| since.elapsed() >= rejoin_after);
            if book.members.get(&me) == Some(&join.member) && !stranded {
                drop(book);
                std::thread::sleep(JOIN_BACKOFF);
                continue;
            }
            if leader == i64::from(join.id) {
                // This node leads (a member back at other endpoints can win an election before
                // its entry is updated): its own book's address for itself may be the old one,
                // so it updates its entry through its own driver.
                drop(book);
                let (tx, rx) = mpsc::sync_channel(1);
                if inputs
                    .send(Input::Voters(VoterRequest::Join(join.clone()), tx))
                    .is_err()
                {
                    return;
                }
                if let Ok(Err((code, message))) = rx.recv_timeout(timeout) {
                    tracing::debug!(code, ?message, "updating this leader's own entry refused");
                }
                std::thread::sleep(JOIN_BACKOFF);
                continue;
            }
            let known = u64::try_from(leader)
                .ok()
                .and_then(|l| book.members.get(&l))
                .and_then(|m| m.endpoint(&listener_name))
                .map(Endpoint::address);
            // The leader if known, then every other member (a non-leader answers
            // NOT_CONTROLLER), then the bootstrap servers.
            let others = book
                .members
                .iter()
                .filter(|(id, _)| **id != me)
                .filter_map(|(_, m)| m.endpoint(&listener_name).map(Endpoint::address));
            known
                .into_iter()
                .chain(others)
                .chain(bootstrap.iter().cloned())
                .collect()
        };
        if !targets.is_empty() {
            let target = &targets[next % targets.len()];
            next = next.wrapping_add(1);
            let result = (|| -> std::io::Result<JoinReply> {
                let address = target
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let mut stream = TcpStream::connect_timeout(&address, timeout)?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                write_frame(&mut stream, KIND_JOIN, &body)?;
                let (kind, body) = read_frame(&mut stream)?;
                if kind != KIND_REPLY {
                    return Err(std::io::Error::other("unexpected reply kind"));
                }
                serde_json::from_slice(&body).map_err(std::io::Error::other)
            })();
            match result {
                Ok(JoinReply::Ok(members)) => {
                    tracing::debug!(target = %target, "the leader holds this node as a learner");
                    if inputs.send(Input::Learned(members)).is_err() {
                        return;
                    }
                }
                Ok(JoinReply::Err { code, message }) => {
                    tracing::debug!(target = %target, code, ?message, "join refused")
                }
                Err(e) => tracing::debug!(target = %target, error = %e, "join failed"),
            }
        }
        std::thread::sleep(JOIN_BACKOFF);
    }
}

fn submit_local(
    inputs: &SyncSender<Input>,
    command: Command,
    deadline: Instant,
) -> Result<Outcome, Reject> {
    let (tx, rx) = mpsc::sync_channel(1);
    if inputs.send(Input::Submit(command, tx)).is_err() {
        return Err(Reject::Cluster(ClusterError::NotController(
            "the metadata quorum is not running".into(),
        )));
    }
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(result) => result,
        Err(_) => Err(Reject::Cluster(ClusterError::NotController(
            "the active controller did not commit the request in time".into(),
        ))),
    }
}

struct InFlight {
    id: u64,
    term: u64,
    reply: InFlightReply,
}

enum InFlightReply {
    Command(Reply),
    Voters(VoterReply),
}

impl InFlightReply {
    /// Tells the waiter the leader changed before its entry committed.
    fn deposed(self) {
        match self {
            InFlightReply::Command(reply) => {
                let _ = reply.try_send(Err(Reject::Cluster(ClusterError::NotController(
                    "the active controller changed while the request was being committed".into(),
                ))));
            }
            InFlightReply::Voters(reply) => {
                let _ = reply.try_send(Err((
                    NOT_LEADER_OR_FOLLOWER,
                    Some("the leader changed while the voter change was being committed".into()),
                )));
            }
        }
    }
}

struct Driver {
    node: QuorumNode,
    log: RaftLog,
    engine: ControllerEngine,
    image: Arc<MetadataImage>,
    inputs: Receiver<Input>,
    peers: Peers,
    publisher: Arc<dyn Publish + Send + Sync>,
    leader: Arc<AtomicI64>,
    status: Arc<Mutex<QuorumStatus>>,
    /// Per voter, while leading in `replicas_term`: (last fetch, last caught up), unix ms.
    replicas: HashMap<u64, (i64, i64)>,
    replicas_term: u64,
    published: Arc<(Mutex<i64>, Condvar)>,
    queue: VecDeque<Work>,
    in_flight: Option<InFlight>,
    /// The committed book, shared with the handle.
    book: Arc<Mutex<Book>>,
    /// A dynamic quorum (voters can be added and removed).
    dynamic: bool,
    /// A membership change was applied: snapshot after this ready.
    membership_changed: bool,
    next_proposal: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: entry bytes appended before the
    /// image is snapshotted and the log truncated (counted from this process's start).
    bytes_between_snapshots: u64,
    bytes_since_snapshot: u64,
    tick: Duration,
    /// When to campaign after the leader's connection closed (`Input::PeerLost`).
    campaign_at: Option<Instant>,
}

impl Driver {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick / FIRST_ELECTION_SPEEDUP;
        // Until this node first hears of a leader it ticks FIRST_ELECTION_SPEEDUP times
        // faster: a cluster that starts elects in a fraction of the election timeout instead
        // of one to two of them. Pre-vote keeps this from disturbing a running quorum: a node
        // restarting into one asks for votes that voters in a leader's lease refuse, and it
        // hears the leader within one heartbeat.
        let mut seen_leader = false;
        loop {
            let wake = self.campaign_at.map_or(next_tick, |at| at.min(next_tick));
            let wait = wake.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(wait) {
                Ok(input) => self.input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(input) = self.inputs.try_recv() {
                self.input(input);
            }
            if self.campaign_at.is_some_and(|at| Instant::now() >= at) {
                self.campaign_at = None;
                if self.node.leader().is_none() && !self.node.is_leader() {
                    if let Err(e) = self.node.campaign() {
                        tracing::warn!(error = %e, "campaign after losing the leader");
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                seen_leader = seen_leader || self.node.leader().is_some();
                next_tick = Instant::now()
                    + if seen_leader {
                        self.tick
                    } else {
                        self.tick / FIRST_ELECTION_SPEEDUP
                    };
            }
            self.drain();
            self.propose();
            self.node.hand_over_if_removed();
            self.drain();
            let leader = self.node.leader().map_or(-1, |l| l as i64);
            if self.leader.swap(leader, Ordering::AcqRel) != leader && leader >= 0 {
                tracing::info!(leader, term = self.node.term(), "active controller elected");
            }
            self.publish_status();
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Raft(message) => {
                use raft::prelude::MessageType;
                let from = message.from;
                let fetch = !message.reject
                    && matches!(
                        message.get_msg_type(),
                        MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
                    );
                if let Err(e) = self.node.step(message) {
                    tracing::debug!(error = %e, "raft message refused");
                    return;
                }
                if fetch && self.node.is_leader() {
                    self.heard_from(from);
                }
            }
            Input::Submit(command, reply) => self.queue.push_back(Work::Command(command, reply)),
            Input::Voters(request, reply) => {
                // A member back at other endpoints is reached there at once, on every node:
                // with it unreachable a two-voter quorum could elect no leader to commit its
                // update (same directory id only: another one is another replica).
                if let VoterRequest::Join(join) = &request {
                    let id = join.id as u64;
                    let moved = self.node.members().get(&id).is_some_and(|m| {
                        m.directory_id == join.member.directory_id && *m != join.member
                    });
                    if moved {
                        self.peers.redirect(id, &join.member);
                    }
                }
                self.queue.push_back(Work::Voters(request, reply))
            }
            Input::Learned(members) => {
                let mut merged = self.node.members().clone();
                if !merged.contains_key(&self.node.id()) {
                    for (id, member) in members {
                        merged.entry(id).or_insert(member);
                    }
                    self.peers.follow(&merged);
                }
            }
            Input::Attach(id, tx) => self.peers.attach(id, tx),
            Input::PeerLost(peer) => {
                if self.node.leader_connection_lost(peer) {
                    // The survivors campaign one after another in id order, so the first
                    // is elected before the next one starts and no votes are split.
                    let mut others: Vec<u64> = self
                        .node
                        .voters()
                        .into_iter()
                        .filter(|v| *v != peer)
                        .collect();
                    others.sort_unstable();
                    let rank = others
                        .iter()
                        .position(|v| *v == self.node.id())
                        .unwrap_or(others.len());
                    let delay =
                        LOST_LEADER_CAMPAIGN_STAGGER * u32::try_from(rank).unwrap_or(u32::MAX);
                    tracing::info!(
                        leader = peer,
                        campaign_in_ms = delay.as_millis() as u64,
                        "the active controller's connection closed"
                    );
                    self.campaign_at = Some(Instant::now() + delay);
                }
            }
        }
    }

    /// Records a response of voter `from` to the leader's appends or heartbeats.
    fn heard_from(&mut self, from: u64) {
        self.reset_replicas_on_new_term();
        let now = unix_ms();
        let last = self.node.last_index() as i64;
        let caught_up = self.node.matched(from).is_some_and(|m| m as i64 >= last);
        let entry = self.replicas.entry(from).or_insert((-1, -1));
        entry.0 = now;
        if caught_up {
            entry.1 = now;
        }
    }

    /// A new term starts the leader's replica state afresh, as Kafka's `LeaderState`.
    fn reset_replicas_on_new_term(&mut self) {
        if self.replicas_term != self.node.term() {
            self.replicas.clear();
            self.replicas_term = self.node.term();
        }
    }

    /// Publishes what DescribeQuorum answers (see the module docs).
    fn publish_status(&mut self) {
        let status = if self.node.is_leader() {
            self.reset_replicas_on_new_term();
            let now = unix_ms();
            let me = self.node.id();
            let members = self.node.members().clone();
            let directory = |id: u64| members.get(&id).map_or(Uuid::nil(), |m| m.directory_id);
            let replica = |id: u64, matched: i64| {
                if id == me {
                    ReplicaStatus {
                        id: id as i32,
                        directory_id: directory(id),
                        log_end_offset: self.node.last_index() as i64 + 1,
                        last_fetch_ms: now,
                        last_caught_up_ms: now,
                    }
                } else {
                    let (fetch, caught_up) = self.replicas.get(&id).copied().unwrap_or((-1, -1));
                    ReplicaStatus {
                        id: id as i32,
                        directory_id: directory(id),
                        // raft-rs starts a new leader's matched at 0: not known yet.
                        log_end_offset: if matched > 0 { matched + 1 } else { -1 },
                        last_fetch_ms: fetch,
                        last_caught_up_ms: caught_up,
                    }
                }
            };
            QuorumStatus {
                leader: true,
                term: self.node.term(),
                high_watermark: self.node.commit_index() as i64 + 1,
                voters: self
                    .node
                    .progress()
                    .into_iter()
                    .map(|p| replica(p.id, p.matched))
                    .collect(),
                observers: self
                    .node
                    .learners()
                    .into_iter()
                    .map(|id| replica(id, self.node.matched(id).map_or(-1, |m| m as i64)))
                    .collect(),
            }
        } else {
            QuorumStatus {
                term: self.node.term(),
                ..QuorumStatus::default()
            }
        };
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// Decides queued commands on the leader, one batch in flight at a time.
    fn propose(&mut self) {
        if let Some(in_flight) = &self.in_flight {
            if self.node.is_leader() && self.node.term() == in_flight.term {
                return;
            }
            let in_flight = self.in_flight.take().expect("checked");
            in_flight.reply.deposed();
        }
        if !self.node.is_leader() {
            let leader = self.node.leader();
            for work in self.queue.drain(..) {
                match work {
                    Work::Command(_, reply) => {
                        let _ = reply.try_send(Err(Reject::NotLeader(leader)));
                    }
                    Work::Voters(_, reply) => {
                        let _ = reply.try_send(Err((NOT_LEADER_OR_FOLLOWER, None)));
                    }
                }
            }
            return;
        }
        while self.node.can_propose() {
            let Some(work) = self.queue.pop_front() else {
                return;
            };
            let (command, reply) = match work {
                Work::Command(command, reply) => (command, reply),
                Work::Voters(request, reply) => {
                    if self.propose_voters(request, reply) {
                        return;
                    }
                    continue;
                }
            };
            let records = match self.engine.handle(&self.image, &command) {
                Ok(records) => records,
                Err(e) => {
                    let _ = reply.try_send(Err(Reject::Cluster(e)));
                    continue;
                }
            };
            if records.is_empty() {
                let _ = reply.try_send(Ok(Outcome {
                    offset: self.image.offset,
                    next_producer_id: self.image.next_producer_id,
                }));
                continue;
            }
            let id = self.next_proposal;
            self.next_proposal += 1;
            match self.node.propose(id, &records) {
                Ok(()) => {
                    self.in_flight = Some(InFlight {
                        id,
                        term: self.node.term(),
                        reply: InFlightReply::Command(reply),
                    });
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "proposal refused");
                    let _ = reply.try_send(Err(Reject::NotLeader(self.node.leader())));
                }
            }
        }
    }

    /// Decides one voter change (Kafka's `AddVoterHandler` / `RemoveVoterHandler` checks, in
    /// their order) and proposes it; true when it is now in flight.
    fn propose_voters(&mut self, request: VoterRequest, reply: VoterReply) -> bool {
        let refuse = |code: i16, message: String| {
            let _ = reply.try_send(Err((code, Some(message))));
        };
        let voters = self.node.voters();
        let learners = self.node.learners();
        let members = self.node.members().clone();
        let change = match request {
            VoterRequest::Join(join) => {
                let id = join.id as u64;
                let known = members.get(&id);
                let is_voter = voters.contains(&id);
                if (is_voter || learners.contains(&id)) && known == Some(&join.member) {
                    let _ = reply.try_send(Ok(()));
                    return false;
                }
                if is_voter && known.is_some_and(|m| m.directory_id != join.member.directory_id) {
                    // A voter that lost its disk must not vote with an empty log.
                    refuse(
                        INVALID_REQUEST,
                        format!(
                            "voter {id} came back with another directory id; remove it and add \
                             it again"
                        ),
                    );
                    return false;
                }
                if self.node.has_pending_membership_change() {
                    refuse(REQUEST_TIMED_OUT, "a voter change is in progress".into());
                    return false;
                }
                // A member's new endpoints are the same change again with the new book.
                if is_voter {
                    MemberChange::Promote(id, join.member)
                } else {
                    MemberChange::AddLearner(id, join.member)
                }
            }
            VoterRequest::Forget { id } => {
                let key = id as u64;
                let observer = learners.contains(&key)
                    && members
                        .get(&key)
                        .is_some_and(|m| m.endpoint(&self.peers.listener_name).is_none());
                if !observer {
                    let _ = reply.try_send(Ok(()));
                    return false;
                }
                if self.node.has_pending_membership_change() {
                    refuse(REQUEST_TIMED_OUT, "a voter change is in progress".into());
                    return false;
                }
                MemberChange::Remove(key)
            }
            VoterRequest::Add { .. } | VoterRequest::Remove { .. } if !self.dynamic => {
                refuse(
                    UNSUPPORTED_VERSION,
                    "Cluster doesn't support changing voters because the kraft.version feature \
                     is 0 (static controller.quorum.voters)"
                        .into(),
                );
                return false;
            }
            _ if self.node.has_pending_membership_change() => {
                refuse(
                    REQUEST_TIMED_OUT,
                    "Request timed out waiting for leader to handle previous voter change request"
                        .into(),
                );
                return false;
            }
            VoterRequest::Add {
                id,
                directory_id,
                endpoints,
            } => {
                let key = id as u64;
                if voters.contains(&key) {
                    refuse(
                        DUPLICATE_VOTER,
                        format!(
                            "The voter id for ReplicaKey(id={id}, directoryId={}) \
                             is already part of the set of voters {voters:?}.",
                            kafka_uuid_string(&directory_id)
                        ),
                    );
                    return false;
                }
                // The new voter must already replicate as a learner with this directory id
                // and hold the leader's whole log (Kafka: caught up to the log end offset).
                let caught_up = learners.contains(&key)
                    && members
                        .get(&key)
                        .is_some_and(|m| m.directory_id == directory_id)
                    && self
                        .node
                        .matched(key)
                        .is_some_and(|m| m >= self.node.last_index());
                if !caught_up {
                    refuse(
                        REQUEST_TIMED_OUT,
                        format!(
                            "Aborted add voter operation for ReplicaKey(id={id}, \
                             directoryId={}) since it is lagging behind (it must \
                             run with controller.quorum.bootstrap.servers and replicate as an \
                             observer first)",
                            kafka_uuid_string(&directory_id)
                        ),
                    );
                    return false;
                }
                MemberChange::Promote(
                    key,
                    Member {
                        directory_id,
                        endpoints,
                    },
                )
            }
            VoterRequest::Remove { id, directory_id } => {
                let key = id as u64;
                let found = voters.contains(&key)
                    && members
                        .get(&key)
                        .is_some_and(|m| m.directory_id == directory_id);
                // Kafka's VoterSet refuses to remove the last voter.
                if !found || voters.len() == 1 {
                    refuse(
                        VOTER_NOT_FOUND,
                        format!(
                            "Cannot remove voter ReplicaKey(id={id}, directoryId={}) \
                             from the set of voters {voters:?}",
                            kafka_uuid_string(&directory_id)
                        ),
                    );
                    return false;
                }
                MemberChange::Remove(key)
            }
        };
        let id = self.next_proposal;
        self.next_proposal += 1;
        match self.node.propose_membership(id, change) {
            Ok(()) => {
                self.in_flight = Some(InFlight {
                    id,
                    term: self.node.term(),
                    reply: InFlightReply::Voters(reply),
                });
                true
            }
            Err(e @ QuorumError::InvalidMember(_)) => {
                refuse(INVALID_REQUEST, e.to_string());
                false
            }
            Err(e) => {
                refuse(REQUEST_TIMED_OUT, e.to_string());
                false
            }
        }
    }

    /// Persists, sends and applies every ready.
    fn drain(&mut self) {
        loop {
            let ready = match self.node.ready() {
                Ok(Some(ready)) => ready,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "the metadata quorum stopped applying");
                    return;
                }
            };
            if let Err(e) = self.log.persist(
                ready.snapshot.as_ref(),
                &ready.entries,
                ready.hard_state.as_ref(),
            ) {
                // Raft already counts these as durable: going on could break its promises.
                tracing::error!(error = %e, "persisting the raft log failed; exiting");
                eprintln!("persisting the raft log failed: {e}");
                std::process::exit(1);
            }
            for message in ready.messages {
                let Some(peer) = self.peers.get(&message.to) else {
                    continue;
                };
                let mut frame = Vec::new();
                frame.extend_from_slice(&encode_message(&message));
                match peer.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(_)) => self.node.report_unreachable(message.to),
                    Err(mpsc::TrySendError::Disconnected(_)) => {
                        // An observer's attached connection closed: it attaches another.
                        self.peers.attached.remove(&message.to);
                        self.node.report_unreachable(message.to);
                    }
                }
            }
            for committed in ready.committed {
                self.apply(committed);
            }
            self.bytes_since_snapshot += ready
                .entries
                .iter()
                .map(|e| e.data.len() as u64)
                .sum::<u64>();
            if (self.bytes_since_snapshot >= self.bytes_between_snapshots
                || self.membership_changed)
                && self.node.applied() > self.node.snapshot_index()
            {
                self.bytes_since_snapshot = 0;
                self.membership_changed = false;
                match self.node.compact(&self.image.to_records()) {
                    Ok(snapshot) => {
                        if let Err(e) = self.log.compact(snapshot) {
                            tracing::error!(error = %e, "writing a metadata snapshot failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "taking a metadata snapshot failed"),
                }
            }
        }
    }

    fn apply(&mut self, committed: Committed) {
        if let Committed::Membership {
            offset,
            proposal,
            voters,
            learners,
            members,
        } = committed
        {
            tracing::info!(
                offset,
                ?voters,
                ?learners,
                "the metadata quorum's members changed"
            );
            // Raft refuses a snapshot whose configuration does not hold the receiver: the
            // snapshot a new learner may be sent must be one taken after it was added.
            self.membership_changed = true;
            self.peers.follow(&members);
            *self.book.lock().unwrap_or_else(|e| e.into_inner()) = Book {
                voters,
                learners,
                members,
            };
            // DescribeQuorum shows the change before its requester hears it committed.
            self.publish_status();
            if let Some(id) = proposal {
                if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
                    if let InFlightReply::Voters(reply) =
                        self.in_flight.take().expect("checked").reply
                    {
                        let _ = reply.try_send(Ok(()));
                    }
                }
            }
            return;
        }
        let proposal = match &committed {
            Committed::Membership { .. } => None,
            Committed::Batch { proposal, .. } => *proposal,
            Committed::Snapshot { offset, .. } if *offset <= self.image.offset => return,
            Committed::Snapshot { offset, .. } => {
                tracing::info!(
                    offset,
                    "installing a metadata snapshot from the active controller"
                );
                // The snapshot carries the member book as of its index.
                let members = self.node.members().clone();
                self.peers.follow(&members);
                *self.book.lock().unwrap_or_else(|e| e.into_inner()) = Book {
                    voters: self.node.voters(),
                    learners: self.node.learners(),
                    members,
                };
                None
            }
        };
        let (image, delta) = apply(&self.image, committed);
        let image = Arc::new(image);
        if self.node.is_leader() {
            // An unregistered broker-only node leaves the learners too.
            for id in &delta.changed_brokers {
                if !image.brokers.contains_key(id) && self.node.learners().contains(&(*id as u64)) {
                    let (reply, _) = mpsc::sync_channel(1);
                    self.queue
                        .push_back(Work::Voters(VoterRequest::Forget { id: *id }, reply));
                }
            }
        }
        self.publisher.publish(&image, &delta);
        self.image = image;
        {
            let (lock, condvar) = &*self.published;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = self.image.offset;
            condvar.notify_all();
        }
        if let Some(id) = proposal {
            if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
                if let InFlightReply::Command(reply) = self.in_flight.take().expect("checked").reply
                {
                    let _ = reply.try_send(Ok(Outcome {
                        offset: self.image.offset,
                        next_producer_id: self.image.next_producer_id,
                    }));
                }
            }
        }
    }
}

/// Writes one frame.
fn write_frame(stream: &mut impl Write, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(body.len() + 5);
    bytes.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)
}

/// Reads one frame, refusing a length above [`MAX_MESSAGE_BYTES`] before allocating.
fn read_frame(stream: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE_BYTES {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut kind = [0u8; 1];
    stream.read_exact(&mut kind)?;
    let mut body = Vec::new();
    stream.take((len - 1) as u64).read_to_end(&mut body)?;
    if body.len() != len - 1 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok((kind[0], body))
}

/// Kafka's default `connections.max.idle.ms`: a CONTROLLER-listener connection that sent
/// nothing for this long is closed, so idle connections cannot hold the listener's
/// [`CONTROLLER_CONNECTIONS_MAX`] slots for ever.
const CONTROLLER_IDLE_MAX: Duration = Duration::from_secs(600);

/// Reads one frame of a served connection: its first byte may take up to `idle`, the rest
/// must follow within `within` of it (a peer trickling a frame byte by byte cannot hold the
/// connection's thread and slot longer than that).
fn read_served_frame(
    stream: &mut TcpStream,
    idle: Duration,
    within: Duration,
) -> std::io::Result<(u8, Vec<u8>)> {
    /// Reads with whatever is left of a deadline as the socket's read timeout.
    struct Within<'a> {
        stream: &'a mut TcpStream,
        deadline: Instant,
    }
    impl Read for Within<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            self.stream.read(buf)
        }
    }
    stream.set_read_timeout(Some(idle.max(Duration::from_millis(1))))?;
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    let deadline = Instant::now() + within;
    read_frame(&mut (&first[..]).chain(Within { stream, deadline }))
}

/// Sends frames to one peer over one connection, reconnecting after failures. Frames that
/// cannot be sent are dropped: Raft retransmits.
///
/// With `attach` (a broker-only node) the connection is opened at once, not on the first frame
/// (the controllers cannot dial an observer, so it must reach them before they have anything
/// to say), starts with a [`KIND_ATTACH`] frame, and carries the controller's Raft messages
/// back, read by a thread of their own.
fn peer_sender(
    address: String,
    timeout: Duration,
    frames: Receiver<Vec<u8>>,
    attach: Option<Attach>,
) {
    // A connection, with (when attached) the flag its reader clears once the controller
    // closed it: each connection has its own, so an old reader cannot mark a new one closed.
    let connect = || -> Option<(TcpStream, Arc<AtomicBool>)> {
        let socket = address.to_socket_addrs().ok()?.next()?;
        let mut s = TcpStream::connect_timeout(&socket, timeout).ok()?;
        let _ = s.set_nodelay(true);
        let _ = s.set_write_timeout(Some(timeout));
        let open = Arc::new(AtomicBool::new(true));
        if let Some(attach) = &attach {
            write_frame(&mut s, KIND_ATTACH, &attach.me.to_be_bytes()).ok()?;
            let reader = s.try_clone().ok()?;
            let inputs = attach.inputs.clone();
            let open = Arc::clone(&open);
            std::thread::Builder::new()
                .name("raft-observer-read".into())
                .spawn(move || {
                    read_attached(reader, inputs);
                    open.store(false, Ordering::Release);
                })
                .ok()?;
        }
        Some((s, open))
    };
    let mut stream: Option<(TcpStream, Arc<AtomicBool>)> = None;
    let mut retry_at = Instant::now();
    loop {
        // An attached connection the controller closed is replaced at once (the controller
        // has no other way to reach this node).
        if stream
            .as_ref()
            .is_some_and(|(_, open)| !open.load(Ordering::Acquire))
        {
            stream = None;
        }
        let body = if attach.is_some() {
            if stream.is_none() && Instant::now() >= retry_at {
                stream = connect();
                if stream.is_none() {
                    retry_at = Instant::now() + RECONNECT_BACKOFF;
                }
            }
            match frames.recv_timeout(RECONNECT_BACKOFF) {
                Ok(body) => body,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match frames.recv() {
                Ok(body) => body,
                Err(_) => break,
            }
        };
        if body.is_empty() {
            continue;
        }
        // A connection the peer closed (it restarted since: followers write to each other
        // only during elections, so this one may be from its previous life) would swallow the
        // next frames before the write fails: a vote lost that way costs an election timeout.
        // (An attached connection carries the peer's frames too: its reader notices instead.)
        if attach.is_none() && stream.as_ref().is_some_and(|(s, _)| peer_closed(s)) {
            stream = None;
            retry_at = Instant::now();
        }
        // One fresh connection per frame at most: a write that fails is retried once on it.
        for _ in 0..2 {
            if stream.is_none() {
                if Instant::now() < retry_at {
                    break;
                }
                stream = connect();
                if stream.is_none() {
                    retry_at = Instant::now() + RECONNECT_BACKOFF;
                    break;
                }
            }
            let (s, _) = stream.as_mut().expect("connected above");
            if write_frame(s, KIND_RAFT, &body).is_ok() {
                break;
            }
            let _ = s.shutdown(std::net::Shutdown::Both);
            stream = None;
        }
    }
    if let Some((s, _)) = stream {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads the Raft messages a controller sends back on an attached connection, until it
/// closes; then shuts it down so the writing side reconnects.
fn read_attached(mut stream: TcpStream, inputs: SyncSender<Input>) {
    loop {
        let message = match read_frame(&mut stream) {
            Ok((KIND_RAFT, body)) => decode_message(&body).ok(),
            _ => None,
        };
        let Some(message) = message else { break };
        if inputs.send(Input::Raft(message)).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Whether the peer closed this connection (it only ever reads from it, so anything readable
/// is its end of stream or an error).
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    closed || stream.set_nonblocking(false).is_err()
}

/// Inputs (peers' Raft messages, commands, membership requests) queued for the metadata
/// thread at most: a sender waits while it is full, so a stalled driver holds back the
/// connections feeding it (TCP pushes back on the peers) instead of queueing without bound.
const QUORUM_INPUTS_MAX: usize = 4096;

/// Connections served at once on the CONTROLLER listener (a thread each): the other voters'
/// Raft streams and forwarded commands need a handful; more are refused.
const CONTROLLER_CONNECTIONS_MAX: usize = 256;

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn accept_loop(
    listener: TcpListener,
    inputs: SyncSender<Input>,
    forward_inputs: SyncSender<Input>,
    request_timeout: Duration,
    kafka: KafkaConnections,
    book: Arc<Mutex<Book>>,
) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            std::thread::sleep(RECONNECT_BACKOFF);
            continue;
        };
        if open.fetch_add(1, Ordering::AcqRel) >= CONTROLLER_CONNECTIONS_MAX {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("too many controller connections; refusing one");
            continue;
        }
        let inputs = inputs.clone();
        let forward_inputs = forward_inputs.clone();
        let slot = Slot(Arc::clone(&open));
        let kafka = Arc::clone(&kafka);
        let book = Arc::clone(&book);
        let spawned = std::thread::Builder::new()
            .name("controller-connection".into())
            .spawn(move || {
                serve(
                    stream,
                    slot,
                    inputs,
                    forward_inputs,
                    request_timeout,
                    &kafka,
                    &book,
                )
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot serve a controller connection");
        }
    }
}

/// Serves one connection on the CONTROLLER listener until it closes or sends garbage; a
/// Kafka connection is handed to the broker's server with its `slot`.
fn serve(
    mut stream: TcpStream,
    slot: Slot,
    inputs: SyncSender<Input>,
    forward_inputs: SyncSender<Input>,
    request_timeout: Duration,
    kafka: &KafkaConnections,
    book: &Mutex<Book>,
) {
    let _ = stream.set_nodelay(true);
    // A Kafka request's API key (i16, every key below 256) puts 0 where runnel's kind byte
    // is; runnel's kinds are 1-5. Peeked, so the server reads the whole first frame.
    let mut head = [0u8; 5];
    let _ = stream.set_read_timeout(Some(request_timeout));
    let deadline = Instant::now() + request_timeout;
    let peeked = loop {
        match stream.peek(&mut head) {
            Ok(n) if n >= head.len() || n == 0 => break Ok(n),
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            other => break other,
        }
    };
    let _ = stream.set_read_timeout(None);
    match peeked {
        Ok(5) if head[4] == 0 => {
            let Ok(peer) = stream.peer_addr() else { return };
            let sender = kafka.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(sender) = sender else {
                tracing::debug!(
                    "a Kafka request on the controller listener before the server runs; closing"
                );
                return;
            };
            let connection = ControllerConnection {
                stream,
                peer,
                _slot: slot,
            };
            if sender.try_send(connection).is_err() {
                tracing::warn!("the server takes no more controller connections; closing one");
            }
            return;
        }
        Ok(_) => {}
        Err(_) => return,
    }
    let _slot = slot;
    // The peer whose Raft messages this connection carried: the driver hears it closed.
    let mut peer = None;
    serve_frames(
        &mut stream,
        &inputs,
        &forward_inputs,
        request_timeout,
        &mut peer,
        book,
    );
    // An attached observer's writer holds a clone: it stops on its next write.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    if let Some(peer) = peer {
        let _ = inputs.send(Input::PeerLost(peer));
    }
}

/// Writes the Raft messages for an observer on the connection it attached, until a write
/// fails or the driver drops the observer; then shuts the connection down.
fn attached_writer(mut stream: TcpStream, timeout: Duration, frames: Receiver<Vec<u8>>) {
    let _ = stream.set_write_timeout(Some(timeout));
    while let Ok(body) = frames.recv() {
        if body.is_empty() {
            continue;
        }
        if write_frame(&mut stream, KIND_RAFT, &body).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Serves runnel frames until the connection closes or sends garbage; `peer` is the sender
/// of the Raft messages it carried.
fn serve_frames(
    stream: &mut TcpStream,
    inputs: &SyncSender<Input>,
    forward_inputs: &SyncSender<Input>,
    request_timeout: Duration,
    peer: &mut Option<u64>,
    book: &Mutex<Book>,
) {
    // One attach per connection: each holds a writer thread, so a connection attaching again
    // (under any id) is not one we know, and the listener's connection cap bounds them.
    let mut attached = false;
    // Until a first frame was served the connection is nobody's: it gets a request timeout to
    // send one, as it had to start it. Then it may idle as Kafka lets a connection idle
    // (`connections.max.idle.ms`); the Raft and observer senders notice the close and
    // reconnect before their next frame.
    let mut idle = request_timeout;
    loop {
        let Ok((kind, body)) = read_served_frame(stream, idle, request_timeout) else {
            return;
        };
        idle = CONTROLLER_IDLE_MAX;
        match kind {
            KIND_RAFT => match decode_message(&body) {
                // A connection carries one peer's messages: frames claiming another sender
                // are not a peer's (and would make its close look like another node's).
                Ok(message) if peer.is_some_and(|p| p != message.from) => {
                    tracing::debug!(
                        from = message.from,
                        "raft messages from two senders on one connection; closing"
                    );
                    return;
                }
                Ok(message) => {
                    *peer = Some(message.from);
                    if inputs.send(Input::Raft(message)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bad raft message; closing");
                    return;
                }
            },
            KIND_FORWARD => {
                let reply = match serde_json::from_slice::<Command>(&body) {
                    Err(e) => ForwardReply::Err {
                        code: kafka_protocol::error::ResponseError::InvalidRequest.code(),
                        message: Some(format!("forwarded command does not parse: {e}")),
                    },
                    Ok(command) => {
                        let deadline = Instant::now() + request_timeout.max(COMMIT_WAIT);
                        match submit_local(forward_inputs, command, deadline) {
                            Ok(outcome) => ForwardReply::Ok(outcome),
                            Err(Reject::NotLeader(_)) => ForwardReply::Err {
                                code: NOT_CONTROLLER,
                                message: None,
                            },
                            Err(Reject::Cluster(e)) => ForwardReply::Err {
                                code: crate::errors::cluster_error_code(&e),
                                message: crate::errors::cluster_error_message(&e),
                            },
                        }
                    }
                };
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if write_frame(stream, KIND_REPLY, &body).is_err() {
                    return;
                }
            }
            KIND_JOIN => {
                let reply = match serde_json::from_slice::<Join>(&body) {
                    Err(e) => JoinReply::Err {
                        code: kafka_protocol::error::ResponseError::InvalidRequest.code(),
                        message: Some(format!("join does not parse: {e}")),
                    },
                    Ok(join) => {
                        let (tx, rx) = mpsc::sync_channel(1);
                        let result = if forward_inputs
                            .send(Input::Voters(VoterRequest::Join(join), tx))
                            .is_err()
                        {
                            Err((NOT_CONTROLLER, None))
                        } else {
                            rx.recv_timeout(request_timeout)
                                .unwrap_or(Err((REQUEST_TIMED_OUT, None)))
                        };
                        // Once the learner is in, it needs the leader's endpoint to answer it.
                        let result = result.map(|()| {
                            book.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .members
                                .clone()
                        });
                        match result {
                            Ok(members) => JoinReply::Ok(members),
                            Err((code, message)) => JoinReply::Err { code, message },
                        }
                    }
                };
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if write_frame(stream, KIND_REPLY, &body).is_err() {
                    return;
                }
            }
            KIND_ATTACH => {
                let Ok(id) = <[u8; 8]>::try_from(body.as_slice()).map(u64::from_be_bytes) else {
                    return;
                };
                if std::mem::replace(&mut attached, true) {
                    tracing::debug!(id, "a second attach on one connection; closing");
                    return;
                }
                let Ok(writer) = stream.try_clone() else {
                    return;
                };
                let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PEER_QUEUE);
                let spawned = std::thread::Builder::new()
                    .name(format!("raft-observer-{id}"))
                    .spawn(move || attached_writer(writer, request_timeout, rx));
                if spawned.is_err() || inputs.send(Input::Attach(id, tx)).is_err() {
                    return;
                }
            }
            // A Kafka request after runnel frames, or an unknown kind: not a peer we know.
            _ => return,
        }
    }
}
