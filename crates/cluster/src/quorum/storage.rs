//! The Raft log as Raft reads it: the latest snapshot, the entries after it and the hard state.
//!
//! This is the in-memory mirror of what the broker keeps on disk under `<data-dir>/meta/` (and
//! of what the simulation's "disk" keeps): the quorum core updates it as it hands out each
//! [`super::QuorumReady`], and a restarted node rebuilds it from what was persisted. Raft
//! assumes everything in here is durable, which is why the caller persists a ready's output
//! before sending a single message of it.

use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// What a node persisted, as read back at restart (or as the simulation's disk holds it).
#[derive(Debug, Clone, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest snapshot (its metadata holds the voters); `None` on a fresh node.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// Applies one ready's persistence output in Raft's order: snapshot, entries (an entry at
    /// an index already present replaces it and everything after), hard state.
    pub fn apply(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) {
        if let Some(snapshot) = snapshot {
            let index = snapshot.get_metadata().index;
            self.entries.retain(|e| e.index > index);
            if self.entries.first().is_some_and(|e| e.index != index + 1) {
                self.entries.clear();
            }
            self.snapshot = Some(snapshot.clone());
            self.hard_state.commit = self.hard_state.commit.max(index);
            self.hard_state.term = self.hard_state.term.max(snapshot.get_metadata().term);
        }
        if let Some(first) = entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state.clone();
        }
    }

    /// Drops entries up to and including `index`, which `snapshot` now covers.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        self.entries.retain(|e| e.index > index);
        self.snapshot = Some(snapshot);
    }
}

/// Raft's view of the log. Indexes: the snapshot covers `..=snapshot_index`, `entries` hold
/// `snapshot_index + 1 ..`.
#[derive(Clone)]
pub struct QuorumStorage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl QuorumStorage {
    /// Rebuilds the view from what was persisted; a fresh node starts with `voters` at index 0
    /// (every fresh voter of a static quorum starts from this same point).
    pub fn new(persisted: Persisted, voters: &[u64]) -> QuorumStorage {
        let snapshot = persisted.snapshot.unwrap_or_else(|| {
            let mut snapshot = Snapshot::default();
            let conf = ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            };
            snapshot.mut_metadata().set_conf_state(conf);
            snapshot
        });
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        // A snapshot holds only committed state: the commit index is at least its index even
        // when the hard state written before it says less.
        let mut hard_state = persisted.hard_state;
        hard_state.commit = hard_state.commit.max(snapshot.get_metadata().index);
        hard_state.term = hard_state.term.max(snapshot.get_metadata().term);
        QuorumStorage {
            hard_state,
            conf_state,
            snapshot,
            entries: persisted.entries,
        }
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta: &SnapshotMetadata = snapshot.get_metadata();
        let index = meta.index;
        self.entries.retain(|e| e.index > index);
        if self.entries.first().is_some_and(|e| e.index != index + 1) {
            self.entries.clear();
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot = snapshot;
    }

    pub fn append(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.entries.retain(|e| e.index < first.index);
            debug_assert!(
                first.index == self.last_index() + 1,
                "appends are consecutive: {} after {}",
                first.index,
                self.last_index()
            );
            self.entries.extend_from_slice(entries);
        }
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Replaces the snapshot with one at `snapshot`'s (applied) index and drops the entries it
    /// covers.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        self.entries.retain(|e| e.index > index);
        self.snapshot = snapshot;
    }

    pub fn entries_after(&self, index: u64) -> &[Entry] {
        let start = self.entries.partition_point(|e| e.index <= index);
        &self.entries[start..]
    }
}

impl Storage for QuorumStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first_index();
        let mut out: Vec<Entry> =
            self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(QuorumStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(QuorumStorage::last_index(self))
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}
