//! Deterministic simulation of the metadata quorum: 3 and 5 controllers driven by a seeded
//! scheduler through crashes (losing whatever was not persisted, including mid-ready), restarts,
//! message loss, delay, reordering and network partitions, with snapshots and log compaction.
//!
//! Invariants checked after every step:
//! - at most one leader per term;
//! - every batch a node applies is committed (on a majority of disks) and equal to what every
//!   other node applied at that index, and each node's image at an applied index equals every
//!   other node's image there (applied metadata is a prefix of the one committed log);
//! - producer-id blocks granted to proposers never overlap;
//! - an acknowledged topic creation is never lost: after healing and restarting everyone, every
//!   node's image holds it.
//!
//! A failing seed is printed; `RUNNEL_SIM_SEED=<seed> cargo test -p runnel-cluster --test
//! quorum_sim` replays just it (`RUNNEL_SIM_SEEDS=<n>` runs more seeds).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;

use raft::prelude::Message;
use runnel_cluster::metadata::{MetadataImage, MetadataRecord};
use runnel_cluster::quorum::{
    decode_message, encode_message, Committed, Member, MemberChange, Persisted, QuorumConfig,
    QuorumNode,
};
use uuid::Uuid;

const BLOCK: i64 = 1000;

/// splitmix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// What a proposal was for, so its commit can be acknowledged.
enum Proposal {
    Topic(String),
    /// A producer-id block starting at the image's next id when proposed.
    ProducerIds,
    Delete,
    /// A membership change (acknowledged by its commit alone).
    Membership,
}

struct SimNode {
    id: u64,
    node: Option<QuorumNode>,
    /// What survived on disk.
    disk: Persisted,
    image: MetadataImage,
    /// Proposals this incarnation made and is waiting on.
    pending: HashMap<u64, Proposal>,
    /// Time until which a crashed node stays down.
    down_until: u64,
    /// The voters it starts with when its disk holds nothing (none: it joins later).
    initial_voters: Vec<u64>,
    /// It applied a membership change: snapshot after this ready (a new learner must be sent
    /// a snapshot whose configuration holds it).
    compact_now: bool,
}

struct Sim {
    seed: u64,
    rng: Rng,
    nodes: Vec<SimNode>,
    /// Voters by the index of the membership change that set them (0: the initial ones).
    configs: BTreeMap<u64, Vec<u64>>,
    /// Whether the leader changes the membership now and then.
    membership: bool,
    membership_changes: usize,
    now: u64,
    /// In flight: (deliver at, message).
    network: Vec<(u64, Message)>,
    /// Group of each node while partitioned; messages between groups are lost.
    partition: Option<(Vec<u64>, u64)>,
    drop_per_mille: u64,
    max_delay: u64,
    leaders: BTreeMap<u64, u64>,
    /// The one committed log: index -> (term, encoded records).
    committed: BTreeMap<u64, (u64, String)>,
    /// The image every node must have at an applied index.
    images: BTreeMap<u64, String>,
    granted_blocks: Vec<(i64, i64)>,
    acked_topics: BTreeSet<String>,
    next_proposal: u64,
    next_topic: u64,
    /// Snapshots installed over a non-empty image (sent by a leader to a lagging node).
    snapshot_installs: usize,
}

fn config(id: u64, voters: &[u64]) -> QuorumConfig {
    QuorumConfig {
        id,
        election_ticks: 10,
        heartbeat_ticks: 2,
        voters: voters.to_vec(),
        members: Default::default(),
        static_members: false,
    }
}

fn fingerprint(image: &MetadataImage) -> String {
    serde_json::to_string(&image.to_records()).unwrap()
}

impl Sim {
    fn new(seed: u64, voters: usize) -> Sim {
        Sim::with_joiners(seed, voters, 0)
    }

    /// `voters` initial voters and `joiners` nodes that start in no configuration (the
    /// leader adds them as learners and promotes them when `membership` is on).
    fn with_joiners(seed: u64, voters: usize, joiners: usize) -> Sim {
        let mut rng = Rng(seed);
        let ids: Vec<u64> = (1..=voters as u64).collect();
        let nodes = (1..=(voters + joiners) as u64)
            .map(|id| {
                let initial_voters = if ids.contains(&id) {
                    ids.clone()
                } else {
                    Vec::new()
                };
                SimNode {
                    id,
                    node: Some(
                        QuorumNode::new(&config(id, &initial_voters), Persisted::default())
                            .unwrap(),
                    ),
                    disk: Persisted::default(),
                    image: MetadataImage::empty(),
                    pending: HashMap::new(),
                    down_until: 0,
                    initial_voters,
                    compact_now: false,
                }
            })
            .collect();
        let drop_per_mille = rng.below(200);
        let max_delay = 1 + rng.below(4);
        Sim {
            seed,
            rng,
            nodes,
            configs: BTreeMap::from([(0, ids)]),
            membership: false,
            membership_changes: 0,
            now: 0,
            network: Vec::new(),
            partition: None,
            drop_per_mille,
            max_delay,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            images: BTreeMap::new(),
            granted_blocks: Vec::new(),
            acked_topics: BTreeSet::new(),
            next_proposal: 1,
            next_topic: 0,
            snapshot_installs: 0,
        }
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        match &self.partition {
            Some((group, _)) => group.contains(&a) == group.contains(&b),
            None => true,
        }
    }

    fn send(&mut self, message: Message, faults: bool) {
        if faults && self.rng.chance(self.drop_per_mille) {
            return;
        }
        // Every message crosses the wire encoding, as on the CONTROLLER listener.
        let message = decode_message(&encode_message(&message)).unwrap();
        let delay = if faults {
            self.rng.below(self.max_delay + 1)
        } else {
            0
        };
        self.network.push((self.now + delay, message));
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.node = None;
        node.pending.clear();
        node.down_until = self.now + 5 + self.rng.below(60);
        // Its connections close: followers of a crashed leader may forget it and campaign at
        // once (not all of them, and not all hear of it).
        let crashed = self.nodes[i].id;
        self.connection_lost(crashed);
    }

    /// The peers of `peer` see its connection close (after a crash, or spuriously while it
    /// lives); some that forgot it as their leader campaign right away.
    fn connection_lost(&mut self, peer: u64) {
        for j in 0..self.nodes.len() {
            let heard = self.rng.chance(700);
            let campaign = self.rng.chance(500);
            if let Some(node) = self.nodes[j].node.as_mut() {
                if heard && node.leader_connection_lost(peer) && campaign {
                    let _ = node.campaign();
                }
            }
        }
    }

    fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.node = Some(
            QuorumNode::new(&config(node.id, &node.initial_voters), node.disk.clone())
                .unwrap_or_else(|e| panic!("seed {}: node {} restart: {e}", self.seed, node.id)),
        );
        node.image = MetadataImage::empty();
    }

    /// Processes every ready of node `i`; `faults` allows a crash before persisting.
    fn drain(&mut self, i: usize, faults: bool) {
        for _ in 0..16 {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            let ready = match node.ready() {
                Ok(Some(ready)) => ready,
                Ok(None) => return,
                Err(e) => panic!("seed {}: node {}: {e}", self.seed, self.nodes[i].id),
            };
            if faults && ready.must_persist() && self.rng.chance(5) {
                // Power loss before the fsync: the ready never happened anywhere else.
                self.crash(i);
                return;
            }
            self.nodes[i].disk.apply(
                ready.snapshot.as_ref(),
                &ready.entries,
                ready.hard_state.as_ref(),
            );
            for message in ready.messages {
                self.send(message, faults);
            }
            for committed in ready.committed {
                self.apply(i, committed);
            }
            let node = self.nodes[i].node.as_ref().unwrap();
            let applied = node.applied();
            if applied > 0 {
                let fp = fingerprint(&self.nodes[i].image);
                let expected = self.images.entry(applied).or_insert_with(|| fp.clone());
                assert_eq!(
                    *expected, fp,
                    "seed {}: node {} image at applied index {applied} differs",
                    self.seed, self.nodes[i].id
                );
            }
            self.maybe_compact(i);
        }
    }

    fn maybe_compact(&mut self, i: usize) {
        let records = self.nodes[i].image.to_records();
        let compact_now = std::mem::take(&mut self.nodes[i].compact_now);
        let node = self.nodes[i].node.as_mut().unwrap();
        if (node.entries_since_snapshot() > 15 || compact_now)
            && node.applied() > node.snapshot_index()
        {
            let snapshot = node.compact(&records).unwrap();
            self.nodes[i].disk.compact(snapshot);
        }
    }

    /// Whether `index` (of `term`) is on a majority of the disks of the configuration in
    /// effect when it was appended, or of the one before it (a change takes effect when
    /// applied, so a leader may still count with the previous one; one change at a time
    /// keeps the two majorities overlapping).
    fn on_majority(&self, index: u64, term: u64) -> bool {
        let on_disk = |n: &SimNode| {
            n.disk
                .snapshot
                .as_ref()
                .is_some_and(|s| s.get_metadata().index >= index)
                || n.disk
                    .entries
                    .iter()
                    .any(|e| e.index == index && e.term == term)
        };
        self.configs
            .range(..index)
            .rev()
            .take(2)
            .any(|(_, voters)| {
                let held = self
                    .nodes
                    .iter()
                    .filter(|n| voters.contains(&n.id) && on_disk(n))
                    .count();
                held > voters.len() / 2
            })
    }

    /// Ids of every node in the latest committed configuration (voters and learners, as
    /// the leader knows them).
    fn members(&self) -> Option<Vec<u64>> {
        let leader = self
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .find(|n| n.is_leader())?;
        let mut ids = leader.voters();
        ids.extend(leader.learners());
        Some(ids)
    }

    fn apply(&mut self, i: usize, committed: Committed) {
        let seed = self.seed;
        let id = self.nodes[i].id;
        match committed {
            Committed::Snapshot { offset, records } => {
                let mut image = MetadataImage::empty();
                for record in &records {
                    image.apply(record);
                }
                image.offset = offset;
                if offset > 0 {
                    if let Some(expected) = self.images.get(&(offset as u64)) {
                        assert_eq!(
                            *expected,
                            fingerprint(&image),
                            "seed {seed}: node {id} installed a snapshot at {offset} that differs"
                        );
                    }
                }
                assert!(
                    offset >= self.nodes[i].image.offset,
                    "seed {seed}: node {id} went back from {} to snapshot {offset}",
                    self.nodes[i].image.offset
                );
                if self.nodes[i].image.offset >= 0 && offset > self.nodes[i].image.offset {
                    self.snapshot_installs += 1;
                }
                self.nodes[i].image = image;
            }
            Committed::Membership {
                offset,
                proposal,
                voters,
                ..
            } => {
                let index = offset as u64;
                let mut voters = voters;
                voters.sort_unstable();
                let expected = self.configs.entry(index).or_insert_with(|| voters.clone());
                assert_eq!(
                    *expected, voters,
                    "seed {seed}: node {id} applied a different configuration at {index}"
                );
                assert!(
                    offset > self.nodes[i].image.offset,
                    "seed {seed}: node {id} applied {offset} after {}",
                    self.nodes[i].image.offset
                );
                self.nodes[i].compact_now = true;
                if let Some(Proposal::Membership) =
                    proposal.and_then(|p| self.nodes[i].pending.remove(&p))
                {
                    self.membership_changes += 1;
                }
            }
            Committed::Batch {
                offset,
                term,
                proposal,
                records,
            } => {
                let index = offset as u64;
                assert!(
                    offset > self.nodes[i].image.offset,
                    "seed {seed}: node {id} applied {offset} after {}",
                    self.nodes[i].image.offset
                );
                // Committed means on a majority of disks (a snapshot covering it counts).
                assert!(
                    self.on_majority(index, term),
                    "seed {seed}: node {id} applied index {index} not on a majority of disks"
                );
                let encoded = serde_json::to_string(&records).unwrap();
                let expected = self
                    .committed
                    .entry(index)
                    .or_insert_with(|| (term, encoded.clone()));
                assert_eq!(
                    *expected,
                    (term, encoded),
                    "seed {seed}: node {id} applied a different batch at {index}"
                );
                let before = self.nodes[i].image.next_producer_id;
                for record in &records {
                    self.nodes[i].image.apply(record);
                }
                self.nodes[i].image.offset = offset;
                let after = self.nodes[i].image.next_producer_id;
                if let Some(proposal) = proposal.and_then(|p| self.nodes[i].pending.remove(&p)) {
                    match proposal {
                        Proposal::Topic(name) => {
                            self.acked_topics.insert(name);
                        }
                        Proposal::ProducerIds => {
                            assert!(after > before, "seed {seed}: an empty reservation");
                            for &(start, end) in &self.granted_blocks {
                                assert!(
                                    after <= start || before >= end,
                                    "seed {seed}: block {before}..{after} overlaps {start}..{end}"
                                );
                            }
                            self.granted_blocks.push((before, after));
                        }
                        Proposal::Delete | Proposal::Membership => {}
                    }
                }
            }
        }
    }

    fn propose(&mut self) {
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.node.as_ref().is_some_and(|n| n.can_propose()))
        else {
            return;
        };
        let id = self.next_proposal;
        self.next_proposal += 1;
        if self.membership && self.rng.chance(150) {
            self.propose_membership(i, id);
            return;
        }
        let image = &self.nodes[i].image;
        let (records, proposal) = match self.rng.below(3) {
            0 => (
                vec![MetadataRecord::ProducerIds {
                    next_producer_id: image.next_producer_id + BLOCK,
                }],
                Proposal::ProducerIds,
            ),
            1 if !image.topics.is_empty() => {
                let victim = image
                    .topics
                    .values()
                    .find(|t| t.name.starts_with("tmp"))
                    .map(|t| t.topic_id);
                match victim {
                    Some(topic_id) => (
                        vec![MetadataRecord::RemoveTopic { topic_id }],
                        Proposal::Delete,
                    ),
                    None => return,
                }
            }
            _ => {
                self.next_topic += 1;
                let name = if self.rng.chance(300) {
                    format!("tmp-{}", self.next_topic)
                } else {
                    format!("t-{}", self.next_topic)
                };
                if image.topic(&name).is_some() {
                    return;
                }
                (
                    vec![MetadataRecord::Topic {
                        name: name.clone(),
                        topic_id: Uuid::from_u64_pair(self.seed, self.next_topic),
                        partitions: 1,
                        configs: BTreeMap::new(),
                    }],
                    if name.starts_with("tmp") {
                        Proposal::Delete
                    } else {
                        Proposal::Topic(name)
                    },
                )
            }
        };
        let node = self.nodes[i].node.as_mut().unwrap();
        node.propose(id, &records).unwrap();
        self.nodes[i].pending.insert(id, proposal);
    }

    /// One membership change on leader `i`: a stranger joins as a learner, a caught-up
    /// learner becomes a voter, or (above three voters) a voter leaves, perhaps the leader.
    fn propose_membership(&mut self, i: usize, id: u64) {
        let node = self.nodes[i].node.as_ref().unwrap();
        if node.has_pending_membership_change() {
            return;
        }
        let voters = node.voters();
        let learners = node.learners();
        let strangers: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .collect();
        let caught_up: Vec<u64> = learners
            .iter()
            .copied()
            .filter(|l| node.matched(*l).is_some_and(|m| m >= node.last_index()))
            .collect();
        let member = Member {
            directory_id: Uuid::from_u64_pair(self.seed, id),
            endpoints: Vec::new(),
        };
        let change = match self.rng.below(3) {
            0 if !strangers.is_empty() => {
                let k = self.rng.below(strangers.len() as u64) as usize;
                MemberChange::AddLearner(strangers[k], member)
            }
            1 if !caught_up.is_empty() => {
                let k = self.rng.below(caught_up.len() as u64) as usize;
                MemberChange::Promote(caught_up[k], member)
            }
            2 if voters.len() > 3 => {
                let k = self.rng.below(voters.len() as u64) as usize;
                MemberChange::Remove(voters[k])
            }
            _ => return,
        };
        let node = self.nodes[i].node.as_mut().unwrap();
        node.propose_membership(id, change)
            .unwrap_or_else(|e| panic!("seed {}: membership change refused: {e}", self.seed));
        self.nodes[i].pending.insert(id, Proposal::Membership);
    }

    fn check_leaders(&mut self) {
        for node in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
            if node.is_leader() {
                let leader = *self.leaders.entry(node.term()).or_insert(node.id());
                assert_eq!(
                    leader,
                    node.id(),
                    "seed {}: two leaders in term {}",
                    self.seed,
                    node.term()
                );
            }
        }
    }

    /// One unit of time: faults, ticks, a proposal, deliveries, readies.
    fn step(&mut self, faults: bool) {
        self.now += 1;
        let n = self.nodes.len();
        if faults {
            if self.rng.chance(8) {
                let i = self.rng.below(n as u64) as usize;
                if self.nodes[i].node.is_some() {
                    self.crash(i);
                }
            }
            if self.rng.chance(8) {
                // A connection drops while both ends live.
                let peer = self.nodes[self.rng.below(n as u64) as usize].id;
                self.connection_lost(peer);
            }
            if self.partition.is_none() && self.rng.chance(6) {
                let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
                let group: Vec<u64> = ids.into_iter().filter(|_| self.rng.chance(500)).collect();
                let until = self.now + 10 + self.rng.below(80);
                self.partition = Some((group, until));
            }
        }
        if self
            .partition
            .as_ref()
            .is_some_and(|(_, until)| *until <= self.now)
            || !faults
        {
            self.partition = None;
        }
        for i in 0..n {
            if self.nodes[i].node.is_none() && (self.nodes[i].down_until <= self.now || !faults) {
                self.restart(i);
            }
        }
        for i in 0..n {
            // Clocks drift: a tick is sometimes skipped.
            if let Some(node) = self.nodes[i].node.as_mut() {
                if !faults || self.rng.chance(900) {
                    node.tick();
                }
                node.hand_over_if_removed();
            }
        }
        if self.rng.chance(400) {
            self.propose();
        }
        let mut due = Vec::new();
        let mut later = Vec::new();
        for (at, message) in self.network.drain(..) {
            if at <= self.now {
                due.push(message);
            } else {
                later.push((at, message));
            }
        }
        self.network = later;
        // Reordering: deliver the due messages in random order.
        while !due.is_empty() {
            let k = self.rng.below(due.len() as u64) as usize;
            let message = due.swap_remove(k);
            if !self.connected(message.from, message.to) {
                continue;
            }
            let to = self.nodes.iter().position(|n| n.id == message.to).unwrap();
            if let Some(node) = self.nodes[to].node.as_mut() {
                let _ = node.step(message);
            }
            self.drain(to, faults);
        }
        for i in 0..n {
            self.drain(i, faults);
        }
        self.check_leaders();
    }

    fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step(true);
        }
        // Heal: everyone up, no faults, until all nodes applied the same whole log.
        let mut converged = false;
        for _ in 0..400 {
            self.step(false);
            let leader_commit = self
                .nodes
                .iter()
                .filter_map(|n| n.node.as_ref())
                .find(|n| n.is_leader())
                .map(|n| n.commit_index());
            if let (Some(commit), Some(members)) = (leader_commit, self.members()) {
                // Nodes outside the configuration (removed, or never added) hear nothing.
                if self
                    .nodes
                    .iter()
                    .filter(|n| members.contains(&n.id))
                    .all(|n| n.node.as_ref().is_some_and(|n| n.applied() == commit))
                {
                    converged = true;
                    break;
                }
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.node {
                Some(q) => format!(
                    "{}: {:?} term {} commit {} applied {} last {}",
                    n.id,
                    q.role(),
                    q.term(),
                    q.commit_index(),
                    q.applied(),
                    q.last_index()
                ),
                None => format!("{}: down", n.id),
            })
            .collect();
        assert!(
            converged,
            "seed {}: the healed cluster did not converge: {states:?}",
            self.seed
        );
        let members = self.members().unwrap_or_default();
        for node in self.nodes.iter().filter(|n| members.contains(&n.id)) {
            for topic in &self.acked_topics {
                assert!(
                    node.image.topic(topic).is_some(),
                    "seed {}: node {} lost acknowledged topic {topic}",
                    self.seed,
                    node.id
                );
            }
        }
    }
}

fn run_seed(seed: u64, voters: usize, joiners: usize, steps: u64) -> (usize, usize, usize, usize) {
    let mut sim = if joiners == 0 {
        Sim::new(seed, voters)
    } else {
        Sim::with_joiners(seed, voters, joiners)
    };
    sim.membership = joiners > 0;
    sim.run(steps);
    (
        sim.acked_topics.len(),
        sim.granted_blocks.len(),
        sim.snapshot_installs,
        sim.membership_changes,
    )
}

fn run_seeds(voters: usize, default_seeds: u64, steps: u64) {
    run_seeds_with(voters, 0, default_seeds, steps);
}

fn run_seeds_with(voters: usize, joiners: usize, default_seeds: u64, steps: u64) {
    let seeds: Vec<u64> = match std::env::var("RUNNEL_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("RUNNEL_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("RUNNEL_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_seeds);
            (0..count).map(|s| s * 7919 + voters as u64).collect()
        }
    };
    let (mut topics, mut blocks, mut installs, mut changes) = (0, 0, 0, 0);
    for seed in seeds {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run_seed(seed, voters, joiners, steps)))
        {
            Ok((t, b, i, c)) => {
                topics += t;
                blocks += b;
                installs += i;
                changes += c;
            }
            Err(panic) => {
                eprintln!(
                    "quorum simulation failed with {voters} voters and {joiners} joiners; \
                     replay with RUNNEL_SIM_SEED={seed} cargo test -p runnel-cluster --test \
                     quorum_sim"
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    // The workload did happen: a simulation that commits nothing proves nothing.
    assert!(
        topics > 0 && blocks > 0,
        "nothing committed: {topics} topics, {blocks} blocks"
    );
    eprintln!(
        "{voters} voters, {joiners} joiners: {topics} topics, {blocks} producer-id blocks, \
         {installs} snapshot installs, {changes} membership changes"
    );
    assert!(
        joiners == 0 || changes > 0,
        "no membership change ever committed"
    );
    if std::env::var("RUNNEL_SIM_SEED").is_err() {
        assert!(
            installs > 0,
            "no lagging node ever caught up from a snapshot"
        );
    }
}

// Proves the invariants above hold for 3 controllers over many seeded fault schedules.
#[test]
fn three_controllers_survive_faults() {
    run_seeds(3, 60, 600);
}

// Proves the same for 5 controllers (two may be down at once).
#[test]
fn five_controllers_survive_faults() {
    run_seeds(5, 25, 600);
}

// Proves the invariants hold while the leader changes the membership under the same faults:
// two nodes start in no configuration, join as learners, are promoted once caught up, and
// voters (the leader too) are removed and may join again, one change at a time. Committed
// entries stay on a majority of the configuration that committed them, and every member
// converges after the heal.
#[test]
fn membership_changes_survive_faults() {
    run_seeds_with(3, 2, 30, 800);
}
