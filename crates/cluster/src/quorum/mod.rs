//! The metadata quorum: a sans-IO Raft node (tikv's `raft` `RawNode`) that replicates batches of
//! [`MetadataRecord`]s between the controllers.
//!
//! The caller owns every effect. It feeds the node ticks ([`QuorumNode::tick`]), messages from
//! peers ([`QuorumNode::step`]) and proposals ([`QuorumNode::propose`]), then takes a
//! [`QuorumReady`] and must, in this order: persist its snapshot, entries and hard state (fsync),
//! send its messages, apply its committed batches. Raft's safety rests on that order: a vote or
//! an append acknowledgement leaves only once what it promises is durable. A crash anywhere in
//! between loses only what was never acknowledged.
//!
//! # Offsets
//!
//! The metadata offset of a committed batch **is its Raft log index** (Raft indexes start at 1;
//! offset -1 is the empty image). All records of one batch carry that offset; the image's
//! `offset` is the index of the last batch applied, so it only grows, equals on every node for
//! the same prefix of the log, and a snapshot at index `i` is the image at offset `i`. Entries
//! without records (a new leader's empty entry, configuration changes) take an index but
//! publish nothing.
//!
//! # Proposals
//!
//! A leader proposes only when it has applied its whole log ([`QuorumNode::can_propose`]): the
//! engine decides each command from an image that includes every earlier decision, so two
//! proposals never hand out the same producer ids or create the same topic twice. A proposal
//! carries an id in the entry's context so the proposer learns when it committed, and whether
//! it committed at all (a deposed leader's entry can be replaced).

pub mod members;
pub mod storage;

use raft::prelude::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, HardState,
    Message, Snapshot,
};
use raft::{Config, RawNode, StateRole};

use crate::metadata::MetadataRecord;
pub use members::{Endpoint, Member, MemberChange, Members};
pub use storage::{Persisted, QuorumStorage};

/// Largest encoded Raft message accepted from a peer or from disk (one append carries at most
/// `MAX_MESSAGE_BYTES / 2` of entries; a snapshot of a large image fits as well).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Bytes of entries one append message carries at most.
pub const MAX_APPEND_BYTES: u64 = 1 << 20;

/// Entries one message from a peer may carry. An append holds at most [`MAX_APPEND_BYTES`] of
/// entries and every metadata entry is tens of bytes at least, so a leader never comes near;
/// the cap bounds what decoding a hostile frame allocates (an empty entry is 2 bytes on the
/// wire and about a hundred in memory).
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1 << 16;

/// Why the quorum refused something.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuorumError {
    /// This node is not the leader, or has not caught up with its own log yet.
    #[error("this controller is not the active controller")]
    NotLeader { leader: Option<u64> },
    /// A committed entry or a snapshot does not decode: applying past it would diverge from the
    /// other nodes, so the node stops applying.
    #[error("committed metadata at index {index} does not decode: {reason}")]
    Corrupt { index: u64, reason: String },
    /// A message from a peer could not be decoded or was refused by Raft.
    #[error("invalid raft message: {0}")]
    InvalidMessage(String),
    #[error("raft: {0}")]
    Raft(String),
    /// A membership change the quorum does not take (over a limit, malformed).
    #[error("{0}")]
    InvalidMember(String),
}

/// Voters and learners a quorum holds at most: each is a Raft peer of every controller (a
/// connection and a sender thread each), so joins from unknown ids cannot grow that without
/// bound. Kafka's largest clusters have a few thousand brokers.
pub const MEMBERS_MAX: usize = 4096;

/// Endpoints one member may list (Kafka's voters list one per controller listener).
pub const MEMBER_ENDPOINTS_MAX: usize = 64;

/// Bytes of a listener name or host (a DNS name is at most 253).
pub const ENDPOINT_FIELD_BYTES_MAX: usize = 255;

/// Timing and identity of one node. Ticks are the caller's clock: the broker ticks every
/// `controller.quorum.election.timeout.ms / election_ticks` ms.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub id: u64,
    /// Ticks without a leader before a campaign (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// The voters a fresh node starts with (a node with a persisted snapshot uses its own).
    pub voters: Vec<u64>,
    /// Their endpoints and directory ids, until the log or a snapshot says otherwise (static
    /// voters from the config; may be empty).
    pub members: Members,
    /// Static voters: `members` (the config) wins over a snapshot's book, so a changed
    /// `controller.quorum.voters` takes effect at restart.
    pub static_members: bool,
}

/// One committed change to apply, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Replace the whole image with these records (a snapshot from the leader, or the node's
    /// own at restart); the image's offset becomes `offset`.
    Snapshot {
        offset: i64,
        records: Vec<MetadataRecord>,
    },
    /// Apply these records at `offset` (the entry's index).
    Batch {
        offset: i64,
        term: u64,
        /// The id given to [`QuorumNode::propose`], when this node proposed it.
        proposal: Option<u64>,
        records: Vec<MetadataRecord>,
    },
    /// A membership change committed at `offset` (it publishes no records): the voters and
    /// learners after it, with their endpoints.
    Membership {
        offset: i64,
        proposal: Option<u64>,
        voters: Vec<u64>,
        learners: Vec<u64>,
        members: Members,
    },
}

/// What the caller must do, in field order: persist (`snapshot`, `entries`, `hard_state`,
/// fsync), then send `messages`, then apply `committed`.
#[derive(Debug, Default)]
pub struct QuorumReady {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub messages: Vec<Message>,
    pub committed: Vec<Committed>,
}

impl QuorumReady {
    pub fn must_persist(&self) -> bool {
        self.snapshot.is_some() || !self.entries.is_empty() || self.hard_state.is_some()
    }
}

/// One voter's replication progress, as the leader tracks it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterProgress {
    pub id: u64,
    /// Highest index known to be on that voter; -1 when unknown.
    pub matched: i64,
}

/// A sans-IO Raft node carrying metadata batches.
pub struct QuorumNode {
    raw: RawNode<QuorumStorage>,
    /// Index of the last entry handed out as committed.
    applied: u64,
    /// Set when a committed entry failed to decode: nothing is applied after it.
    halted: Option<QuorumError>,
    /// The snapshot to hand out first after a restart (the image starts from it).
    pending_restart_snapshot: Option<Committed>,
    /// Endpoints and directory ids of the voters and learners as of the applied index (the
    /// latest snapshot's, then each committed membership change's).
    members: Members,
    /// What the Raft node was built with, to rebuild it after raft-rs refused a message by
    /// panicking (see [`QuorumNode::guarded`]).
    raft_config: Config,
    logger: slog::Logger,
    /// How many times that happened (a metric and a test hook).
    raft_restarts: u64,
}

impl QuorumNode {
    /// Starts a node on what it persisted (`Persisted::default()` on a fresh one). The first
    /// [`QuorumNode::ready`] hands out the persisted snapshot's image and then every committed
    /// entry after it, so the caller rebuilds its image by applying readies like any others.
    pub fn new(config: &QuorumConfig, persisted: Persisted) -> Result<QuorumNode, QuorumError> {
        let storage = QuorumStorage::new(persisted, &config.voters);
        let snapshot_index = storage.latest_snapshot().get_metadata().index;
        let pending_restart_snapshot = if snapshot_index > 0 {
            Some(decode_snapshot(storage.latest_snapshot())?)
        } else {
            None
        };
        let members = match members::decode_snapshot_members(storage.latest_snapshot()) {
            Some(members) if !config.static_members => members,
            // Static voters keep the config's endpoints; the observers (broker-only nodes,
            // learners of a static quorum too) are known only from the log.
            Some(logged) => {
                let mut members = config.members.clone();
                for (id, member) in logged {
                    members.entry(id).or_insert(member);
                }
                members
            }
            None => config.members.clone(),
        };
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: snapshot_index,
            max_size_per_msg: MAX_APPEND_BYTES,
            max_inflight_msgs: 256,
            // A leader that cannot reach a majority steps down; a partitioned node does not
            // disrupt the quorum when it comes back (pre-vote).
            check_quorum: true,
            pre_vote: true,
            ..Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => config.id));
        let raw = RawNode::new(&raft_config, storage, &logger)
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        Ok(QuorumNode {
            raw,
            applied: snapshot_index,
            halted: None,
            pending_restart_snapshot,
            members,
            raft_config,
            logger,
            raft_restarts: 0,
        })
    }

    /// Runs `f` on the Raft node. raft-rs treats a message that breaks its invariants (a
    /// commit index past the log, an entry conflicting with a committed one, a snapshot whose
    /// configuration does not restore) as a bug of its caller and panics. Bytes from a peer
    /// must not take the controller down, so a panic here discards the in-memory Raft state
    /// and rebuilds it from the storage, which holds exactly what earlier readies handed out
    /// for persisting: the node continues as a process restarted on its disk would (a follower
    /// of its term, with its vote), and the message is refused.
    fn guarded<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut RawNode<QuorumStorage>) -> T,
    ) -> Result<T, QuorumError> {
        let raw = &mut self.raw;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(raw))) {
            Ok(value) => Ok(value),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic")
                    .to_owned();
                self.restart_raft()?;
                Err(QuorumError::InvalidMessage(format!(
                    "raft refused {what} ({reason}); it restarted from its persisted state"
                )))
            }
        }
    }

    /// Rebuilds the Raft node from its storage (see [`QuorumNode::guarded`]).
    fn restart_raft(&mut self) -> Result<(), QuorumError> {
        let storage = self.raw.store().clone();
        let commit = storage.initial_state_hard_state().commit;
        let mut config = self.raft_config.clone();
        // Entries up to `applied` were handed out already; raft-rs refuses an applied index
        // past the commit index, and `apply_entries` skips what comes again.
        config.applied = self.applied.min(commit);
        let raw = RawNode::new(&config, storage, &self.logger).map_err(|e| {
            let e = QuorumError::Raft(format!("cannot rebuild the raft node: {e}"));
            self.halted = Some(e.clone());
            e
        })?;
        self.raw = raw;
        self.raft_restarts += 1;
        tracing::warn!(
            restarts = self.raft_restarts,
            "raft node rebuilt from its persisted state after refusing a message"
        );
        Ok(())
    }

    /// Times the Raft node was rebuilt after raft-rs refused a message by panicking.
    pub fn raft_restarts(&self) -> u64 {
        self.raft_restarts
    }

    /// Refuses, before raft-rs sees it, a message whose fields contradict each other or this
    /// node's log in ways raft-rs would panic on rather than reject. A leader never sends
    /// these: a heartbeat's commit index is at most what the follower acknowledged holding,
    /// an append's entries follow its index one by one, and a follower acknowledges only
    /// indexes the leader sent it.
    fn check_message(&self, message: &Message) -> Result<(), QuorumError> {
        use raft::prelude::MessageType;
        let invalid = |why: String| Err(QuorumError::InvalidMessage(why));
        let entries = message.get_entries();
        if entries.len() > MAX_ENTRIES_PER_MESSAGE {
            return invalid(format!(
                "{} entries in one message, more than {MAX_ENTRIES_PER_MESSAGE}",
                entries.len()
            ));
        }
        let last_index = self.last_index();
        match message.get_msg_type() {
            MessageType::MsgAppend => {
                for (i, entry) in entries.iter().enumerate() {
                    let expected = message.index.checked_add(i as u64 + 1);
                    if expected != Some(entry.index) {
                        return invalid(format!(
                            "append at index {} carries entry {} at position {i}",
                            message.index, entry.index
                        ));
                    }
                }
            }
            _ if !entries.is_empty() => {
                return invalid(format!("{:?} carries entries", message.get_msg_type()));
            }
            MessageType::MsgHeartbeat if message.commit > last_index => {
                return invalid(format!(
                    "heartbeat commits index {} past this node's last index {last_index}",
                    message.commit
                ));
            }
            MessageType::MsgAppendResponse
                if !message.reject && self.is_leader() && message.index > last_index =>
            {
                return invalid(format!(
                    "append acknowledged up to index {} past the leader's last index {last_index}",
                    message.index
                ));
            }
            _ => {}
        }
        Ok(())
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// Advances the logical clock one tick.
    pub fn tick(&mut self) {
        // A panic here (state a refused message left behind) has already rebuilt the node.
        let _ = self.guarded("a tick", |raw| raw.tick());
    }

    /// Hands a message from a peer to Raft.
    pub fn step(&mut self, message: Message) -> Result<(), QuorumError> {
        if message.to != self.id() {
            return Err(QuorumError::InvalidMessage(format!(
                "message for node {} reached node {}",
                message.to,
                self.id()
            )));
        }
        if raft::raw_node::is_local_msg(message.get_msg_type()) {
            return Err(QuorumError::InvalidMessage(
                "local message type from the network".into(),
            ));
        }
        // Raft only knows the voters and learners of its configuration; messages from
        // strangers are dropped. A node in no configuration yet (joining as a learner) takes
        // the leader's first append or snapshot from whoever sends it.
        let conf = self.raw.raft.prs().conf();
        let joining = !conf.voters().contains(self.id()) && !conf.learners().contains(&self.id());
        if !joining
            && !conf.voters().contains(message.from)
            && !conf.learners().contains(&message.from)
        {
            return Err(QuorumError::InvalidMessage(format!(
                "message from node {} which is not a voter",
                message.from
            )));
        }
        self.check_message(&message)?;
        let kind = message.get_msg_type();
        self.guarded(&format!("a {kind:?} from node {}", message.from), |raw| {
            raw.step(message)
        })?
        .map_err(|e| QuorumError::InvalidMessage(e.to_string()))
    }

    /// Starts a campaign now (tests; a fresh single voter also elects itself this way).
    /// A node that is not a voter (a learner, a removed voter, a node not yet in any
    /// configuration) does nothing: raft-rs checks that only on its own election timer, and
    /// a campaign of a node outside the voters would "win" an empty vote.
    pub fn campaign(&mut self) -> Result<(), QuorumError> {
        if !self.raw.raft.promotable() {
            return Ok(());
        }
        self.raw
            .campaign()
            .map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// The connection from `peer` closed. When `peer` is this follower's leader, its process
    /// has most likely died (a crash or kill -9 closes its sockets): this node forgets the
    /// leader, which ends its leader lease, so it grants a pre-vote at once instead of an
    /// election timeout later. Returns whether it did (the caller then campaigns soon, staggered
    /// so the survivors do not split their votes). Safety is untouched: votes and terms follow
    /// Raft's rules, and a live leader's next heartbeat or append restores it as the leader.
    pub fn leader_connection_lost(&mut self, peer: u64) -> bool {
        let raft = &mut self.raw.raft;
        if raft.state != StateRole::Follower || raft.leader_id != peer {
            return false;
        }
        raft.leader_id = raft::INVALID_ID;
        true
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    /// The leader this node knows of in its current term.
    pub fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(id),
        }
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Who this node voted for in its current term (0 for none).
    pub fn voted_for(&self) -> u64 {
        self.raw.raft.vote
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn voters(&self) -> Vec<u64> {
        let mut voters: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        voters
    }

    /// The learners (Kafka's observers that replicate the log), by id.
    pub fn learners(&self) -> Vec<u64> {
        let mut learners: Vec<u64> = self
            .raw
            .raft
            .prs()
            .conf()
            .learners()
            .iter()
            .copied()
            .collect();
        learners.sort_unstable();
        learners
    }

    /// Endpoints and directory ids of the voters and learners, as of the applied index.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// Whether a membership change is proposed and not yet applied (one at a time).
    pub fn has_pending_membership_change(&self) -> bool {
        self.raw.raft.has_pending_conf()
    }

    /// The highest index known to be on `id` (voter or learner), while this node leads.
    pub fn matched(&self, id: u64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        self.raw.raft.prs().get(id).map(|p| p.matched)
    }

    /// Each voter's replicated index, as this node (when leader) tracks it.
    pub fn progress(&self) -> Vec<VoterProgress> {
        let mut out: Vec<VoterProgress> = self
            .voters()
            .into_iter()
            .map(|id| VoterProgress {
                id,
                matched: match self.raw.raft.prs().get(id) {
                    Some(p) if self.is_leader() => p.matched as i64,
                    _ => -1,
                },
            })
            .collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// Whether a proposal now would be decided from an image holding every earlier decision:
    /// this node leads and has applied its whole log (including its own term's first entry).
    /// A leader handing over (it removed itself) takes no more proposals: Raft drops them.
    pub fn can_propose(&self) -> bool {
        self.is_leader()
            && self.halted.is_none()
            && self.applied == self.last_index()
            && self.raw.raft.lead_transferee.is_none()
            && self.raw.raft.prs().conf().voters().contains(self.id())
    }

    /// Proposes `records` as one batch. `proposal` comes back in [`Committed::Batch`] if and
    /// when the batch commits.
    pub fn propose(
        &mut self,
        proposal: u64,
        records: &[MetadataRecord],
    ) -> Result<(), QuorumError> {
        if !self.can_propose() {
            return Err(QuorumError::NotLeader {
                leader: self.leader(),
            });
        }
        let data = serde_json::to_vec(records).map_err(|e| QuorumError::Raft(e.to_string()))?;
        if data.len() as u64 > MAX_APPEND_BYTES {
            return Err(QuorumError::Raft(format!(
                "a metadata batch of {} bytes is larger than {MAX_APPEND_BYTES}",
                data.len()
            )));
        }
        self.raw
            .propose(proposal.to_be_bytes().to_vec(), data)
            .map_err(|e| match e {
                raft::Error::ProposalDropped => QuorumError::NotLeader {
                    leader: self.leader(),
                },
                e => QuorumError::Raft(e.to_string()),
            })
    }

    /// Proposes one membership change: `id` joins as a learner, a learner becomes a voter, or
    /// a voter or learner leaves. The entry carries the whole member book after the change
    /// (Kafka's `VotersRecord` holds the whole voter set), so a node that applies it knows
    /// every endpoint. Refused while another change is pending: one change at a time keeps
    /// every two consecutive configurations' majorities overlapping.
    pub fn propose_membership(
        &mut self,
        proposal: u64,
        change: MemberChange,
    ) -> Result<(), QuorumError> {
        if !self.can_propose() {
            return Err(QuorumError::NotLeader {
                leader: self.leader(),
            });
        }
        if self.has_pending_membership_change() {
            return Err(QuorumError::Raft(
                "a membership change is already in progress".into(),
            ));
        }
        if let MemberChange::AddLearner(id, member) | MemberChange::Promote(id, member) = &change {
            check_member(*id, member)?;
            if !self.members.contains_key(id) && self.members.len() >= MEMBERS_MAX {
                return Err(QuorumError::InvalidMember(format!(
                    "the quorum already holds {MEMBERS_MAX} voters and observers"
                )));
            }
        }
        let mut members = self.members.clone();
        let (id, change_type) = match change {
            MemberChange::AddLearner(id, member) => {
                members.insert(id, member);
                (id, ConfChangeType::AddLearnerNode)
            }
            MemberChange::Promote(id, member) => {
                members.insert(id, member);
                (id, ConfChangeType::AddNode)
            }
            MemberChange::Remove(id) => {
                members.remove(&id);
                (id, ConfChangeType::RemoveNode)
            }
        };
        let mut single = ConfChangeSingle {
            node_id: id,
            ..ConfChangeSingle::default()
        };
        single.set_change_type(change_type);
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        let context = members::encode_context(proposal, &members);
        if context.len() as u64 > MAX_APPEND_BYTES {
            // An entry no append can carry would wedge replication for good.
            return Err(QuorumError::InvalidMember(format!(
                "the member book would take {} bytes, more than one append carries",
                context.len()
            )));
        }
        self.raw
            .propose_conf_change(context, cc)
            .map_err(|e| match e {
                raft::Error::ProposalDropped => QuorumError::NotLeader {
                    leader: self.leader(),
                },
                e => QuorumError::Raft(e.to_string()),
            })
    }

    /// Asks `to` (a caught-up voter) to take over leadership: a leader removed from the voters
    /// hands over rather than going on leading a quorum it is not part of.
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    /// A leader that is no longer a voter (it removed itself) hands leadership to the most
    /// caught-up voter, as Kafka's leader resigns once its removal commits. Called by the
    /// caller's loop; does nothing otherwise.
    pub fn hand_over_if_removed(&mut self) {
        if !self.is_leader()
            || self.voters().contains(&self.id())
            || self.raw.raft.lead_transferee.is_some()
        {
            return;
        }
        let best = self
            .voters()
            .into_iter()
            .max_by_key(|id| self.raw.raft.prs().get(*id).map_or(0, |p| p.matched));
        if let Some(to) = best {
            self.raw.transfer_leader(to);
        }
    }

    /// Takes what Raft has to persist, send and apply (see [`QuorumReady`]); `None` when idle.
    /// The in-memory log already reflects the returned entries: the caller must persist them
    /// before doing anything else with this node or the ready.
    pub fn ready(&mut self) -> Result<Option<QuorumReady>, QuorumError> {
        let mut out = QuorumReady::default();
        if let Some(snapshot) = self.pending_restart_snapshot.take() {
            out.committed.push(snapshot);
        }
        if !self.raw.has_ready() {
            return Ok((!out.committed.is_empty()).then_some(out));
        }
        // Taking a ready touches nothing persisted, so a panic in it is survived as in `step`.
        let Ok(mut ready) = self.guarded("a ready", |raw| raw.ready()) else {
            return Ok((!out.committed.is_empty()).then_some(out));
        };
        out.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            // Raft has taken the snapshot: its storage must follow, whatever its content. One
            // that does not decode stops applying (as a corrupt entry does), never half-way.
            if let Some(members) = members::decode_snapshot_members(&snapshot) {
                self.members = members;
            }
            match decode_snapshot(&snapshot) {
                Ok(installed) if self.halted.is_none() => out.committed.push(installed),
                Ok(_) => {}
                Err(e) => self.halted = Some(e),
            }
            self.raw.mut_store().apply_snapshot(snapshot.clone());
            self.applied = snapshot.get_metadata().index;
            out.snapshot = Some(snapshot);
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed, &mut out.committed);
        let entries = ready.take_entries();
        self.raw.mut_store().append(&entries);
        out.entries = entries;
        if let Some(hard_state) = ready.hs() {
            self.raw.mut_store().set_hard_state(hard_state.clone());
            out.hard_state = Some(hard_state.clone());
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.raw.store().initial_state_hard_state();
            hard_state.commit = commit;
            self.raw.mut_store().set_hard_state(hard_state.clone());
            out.hard_state = Some(hard_state);
        }
        out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed, &mut out.committed);
        self.raw.advance_apply();
        // A snapshot travels as one message on our transport: once handed out it counts as
        // sent. If it is lost, the follower refuses the appends after it and the leader sends
        // another (Raft waits in its snapshot state until told).
        for message in &out.messages {
            if message.get_msg_type() == raft::prelude::MessageType::MsgSnapshot {
                self.raw
                    .report_snapshot(message.to, raft::SnapshotStatus::Finish);
            }
        }
        match &self.halted {
            Some(e) => Err(e.clone()),
            None => Ok(Some(out)),
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Vec<Committed>) {
        for entry in entries {
            if self.halted.is_some() || entry.index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        match decode_entry(&entry) {
                            Ok(batch) => out.push(batch),
                            Err(e) => {
                                self.halted = Some(e);
                                return;
                            }
                        }
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let result = if entry.get_entry_type() == EntryType::EntryConfChange {
                        protobuf::Message::parse_from_bytes(&entry.data)
                            .map_err(|e| e.to_string())
                            .and_then(|cc: raft::prelude::ConfChange| {
                                self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())
                            })
                    } else {
                        protobuf::Message::parse_from_bytes(&entry.data)
                            .map_err(|e| e.to_string())
                            .and_then(|cc: raft::prelude::ConfChangeV2| {
                                self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())
                            })
                    };
                    match result {
                        Ok(conf) => {
                            let (proposal, members) = members::decode_context(&entry.context);
                            let mut members = members.unwrap_or_else(|| self.members.clone());
                            // The book follows Raft's configuration, whatever the context says.
                            members.retain(|id, _| {
                                conf.voters.contains(id) || conf.learners.contains(id)
                            });
                            self.members = members;
                            self.raw.mut_store().set_conf_state(conf.clone());
                            out.push(Committed::Membership {
                                offset: entry.index as i64,
                                proposal,
                                voters: conf.voters.clone(),
                                learners: conf.learners.clone(),
                                members: self.members.clone(),
                            });
                        }
                        Err(reason) => {
                            self.halted = Some(QuorumError::Corrupt {
                                index: entry.index,
                                reason,
                            });
                            return;
                        }
                    }
                }
            }
            self.applied = entry.index;
        }
    }

    /// Makes a snapshot of the image at the applied index (`records` being that image) and
    /// drops the entries it covers from memory. The caller persists the returned snapshot and
    /// may then drop those entries from disk.
    pub fn compact(&mut self, records: &[MetadataRecord]) -> Result<Snapshot, QuorumError> {
        let index = self.applied;
        let term = self
            .raw
            .raft
            .raft_log
            .term(index)
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let mut snapshot = Snapshot {
            data: members::encode_snapshot_data(records, &self.members)
                .map_err(|e| QuorumError::Raft(e.to_string()))?
                .into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.raw.store().conf_state().clone());
        self.raw.mut_store().compact(snapshot.clone());
        Ok(snapshot)
    }

    /// Index of the latest snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.raw.store().latest_snapshot().get_metadata().index
    }

    /// Entries held after the latest snapshot (for deciding when to compact).
    pub fn entries_since_snapshot(&self) -> u64 {
        self.raw.store().last_index() - self.snapshot_index()
    }

    /// Tells Raft a peer could not be reached (its messages were dropped).
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }
}

impl QuorumStorage {
    fn initial_state_hard_state(&self) -> HardState {
        raft::Storage::initial_state(self)
            .map(|s| s.hard_state)
            .unwrap_or_default()
    }
}

/// Refuses a member the quorum would have to carry for good with more than the limits allow.
fn check_member(id: u64, member: &Member) -> Result<(), QuorumError> {
    if member.endpoints.len() > MEMBER_ENDPOINTS_MAX {
        return Err(QuorumError::InvalidMember(format!(
            "node {id} lists {} endpoints, more than {MEMBER_ENDPOINTS_MAX}",
            member.endpoints.len()
        )));
    }
    if let Some(e) = member.endpoints.iter().find(|e| {
        e.name.len() > ENDPOINT_FIELD_BYTES_MAX || e.host.len() > ENDPOINT_FIELD_BYTES_MAX
    }) {
        return Err(QuorumError::InvalidMember(format!(
            "node {id}'s endpoint names or host is longer than {ENDPOINT_FIELD_BYTES_MAX} bytes: {:.40}...",
            if e.name.len() > ENDPOINT_FIELD_BYTES_MAX { &e.name } else { &e.host }
        )));
    }
    Ok(())
}

/// The conf state a node with `voters` starts from.
pub fn conf_state(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..ConfState::default()
    }
}

/// A snapshot holding `records` (an image) at `index`/`term` with `voters` (and their
/// `members` entries): how a single-node data dir's image, or a standalone first controller,
/// becomes the start of a Raft log.
pub fn snapshot_of(
    index: u64,
    term: u64,
    voters: &[u64],
    members: &Members,
    records: &[MetadataRecord],
) -> Snapshot {
    let mut snapshot = Snapshot {
        data: members::encode_snapshot_data(records, members)
            .unwrap_or_default()
            .into(),
        ..Snapshot::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state(voters));
    snapshot
}

fn decode_entry(entry: &Entry) -> Result<Committed, QuorumError> {
    let records: Vec<MetadataRecord> =
        serde_json::from_slice(&entry.data).map_err(|e| QuorumError::Corrupt {
            index: entry.index,
            reason: e.to_string(),
        })?;
    let proposal = <[u8; 8]>::try_from(&entry.context[..])
        .ok()
        .map(u64::from_be_bytes);
    Ok(Committed::Batch {
        offset: entry.index as i64,
        term: entry.term,
        proposal,
        records,
    })
}

/// The image a snapshot holds.
pub fn decode_snapshot(snapshot: &Snapshot) -> Result<Committed, QuorumError> {
    let index = snapshot.get_metadata().index;
    let records =
        members::decode_snapshot_records(&snapshot.data).map_err(|e| QuorumError::Corrupt {
            index,
            reason: format!("snapshot: {e}"),
        })?;
    Ok(Committed::Snapshot {
        offset: index as i64,
        records,
    })
}

/// Encodes a Raft message for the wire.
pub fn encode_message(message: &Message) -> Vec<u8> {
    protobuf::Message::write_to_bytes(message).unwrap_or_default()
}

/// Decodes a Raft message from the wire; hostile bytes give an error, never a panic.
pub fn decode_message(bytes: &[u8]) -> Result<Message, QuorumError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(QuorumError::InvalidMessage(format!(
            "{} bytes is more than {MAX_MESSAGE_BYTES}",
            bytes.len()
        )));
    }
    // Decoding allocates about a hundred bytes per entry however short it is on the wire:
    // count them first.
    let entries = count_entries(bytes)?;
    if entries > MAX_ENTRIES_PER_MESSAGE {
        return Err(QuorumError::InvalidMessage(format!(
            "{entries} entries in one message, more than {MAX_ENTRIES_PER_MESSAGE}"
        )));
    }
    protobuf::Message::parse_from_bytes(bytes)
        .map_err(|e| QuorumError::InvalidMessage(e.to_string()))
}

/// The `entries` field (7) of raft's `Message`, as numbered in eraftpb.proto.
const MESSAGE_ENTRIES_FIELD: u64 = 7;

/// Counts the top-level `entries` fields of an encoded `Message` by walking the protobuf wire
/// format without decoding (and without allocating).
fn count_entries(bytes: &[u8]) -> Result<usize, QuorumError> {
    fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, QuorumError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = bytes.get(*at) else {
                return Err(QuorumError::InvalidMessage("truncated varint".into()));
            };
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(QuorumError::InvalidMessage(
            "varint longer than 10 bytes".into(),
        ))
    }
    let skip = |at: &mut usize, n: u64| -> Result<(), QuorumError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| QuorumError::InvalidMessage("field past the end".into()))?;
        *at = end;
        Ok(())
    };
    let mut at = 0;
    let mut entries = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
            }
            1 => skip(&mut at, 8)?,
            2 => {
                let len = varint(bytes, &mut at)?;
                skip(&mut at, len)?;
                if key >> 3 == MESSAGE_ENTRIES_FIELD {
                    entries += 1;
                }
            }
            5 => skip(&mut at, 4)?,
            wire => {
                return Err(QuorumError::InvalidMessage(format!(
                    "protobuf wire type {wire} has no place in a raft message"
                )))
            }
        }
    }
    Ok(entries)
}

/// Raft logs through slog; this forwards its records to tracing (debug and below stay quiet
/// unless asked for).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "runnel::raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "runnel::raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "runnel::raft", "{}", record.msg()),
            _ => tracing::trace!(target: "runnel::raft", "{}", record.msg()),
        }
        Ok(())
    }
}
