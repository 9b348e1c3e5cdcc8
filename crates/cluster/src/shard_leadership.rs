//! Which coordinator shards a broker holds, as the leadership of the internal topic's
//! partitions moves (Kafka's `CoordinatorRuntime.scheduleLoadOperation` /
//! `scheduleUnloadOperation` and their partition epochs).
//!
//! A shard lives on the leader of its `__consumer_offsets` / `__transaction_state` partition.
//! Each metadata delta that touches such a partition says, for this broker, either "you lead
//! it now, at leader epoch N" ([`LeadershipChange::Elected`]) or "you do not, as of epoch N"
//! ([`LeadershipChange::Resigned`]). Events may be seen out of order relative to a load in
//! progress (a load started for epoch 5 finishes after the broker learnt of epoch 6), so every
//! decision compares epochs: a shard loaded for epoch N is never unloaded by an event of an
//! epoch <= N, and a load whose slot moved on is dropped when it finishes. [`ShardSlots`]
//! holds these rules for both coordinators; the broker's runtime does the I/O they ask for.

use std::collections::BTreeMap;

use crate::metadata::{MetadataDelta, MetadataImage};

/// What one delta means for this broker's shard of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipChange {
    /// This broker leads the partition at `epoch`: load its shard (replay).
    Elected { partition: i32, epoch: i32 },
    /// This broker does not lead the partition as of `epoch` (`None`: the topic was deleted,
    /// which unloads whatever the epoch).
    Resigned { partition: i32, epoch: Option<i32> },
}

/// The leadership changes `delta` brings to `node_id` for the partitions of `topic`:
/// partitions of a deleted topic resign without an epoch; partitions whose registration
/// changed (all of them when the topic was created) are elected when `node_id` leads them and
/// resigned otherwise, with the registration's leader epoch.
pub fn leadership_changes(
    image: &MetadataImage,
    delta: &MetadataDelta,
    topic: &str,
    node_id: i32,
) -> Vec<LeadershipChange> {
    let mut changes = Vec::new();
    for deleted in delta.deleted_topics.iter().filter(|t| t.name == topic) {
        for partition in deleted.registrations.keys() {
            changes.push(LeadershipChange::Resigned {
                partition: *partition,
                epoch: None,
            });
        }
    }
    let Some(topic) = image.topic(topic) else {
        return changes;
    };
    // One pass over the delta's changed partitions (a CreateTopics of many partitions makes
    // it long), not one look-up per partition of the internal topic.
    let changed: std::collections::BTreeSet<i32> = if delta.created_topics.contains(&topic.topic_id)
    {
        topic.registrations.keys().copied().collect()
    } else {
        delta
            .changed_partitions
            .iter()
            .filter(|(id, _)| *id == topic.topic_id)
            .map(|(_, p)| *p)
            .collect()
    };
    for partition in &changed {
        let Some(registration) = topic.registration(*partition) else {
            continue;
        };
        changes.push(if registration.leader == node_id {
            LeadershipChange::Elected {
                partition: *partition,
                epoch: registration.leader_epoch,
            }
        } else {
            LeadershipChange::Resigned {
                partition: *partition,
                epoch: Some(registration.leader_epoch),
            }
        });
    }
    changes
}

/// Names one load of one shard: a load that finishes after its slot moved on (unloaded, or
/// loaded again for a newer epoch) is recognised by its id and dropped.
pub type LoadId = u64;

/// Where a partition's shard stands on this broker (Kafka's `CoordinatorState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState<T> {
    /// Replaying the partition's log; its keys answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading(LoadId),
    /// Serving.
    Active(LoadId, T),
    /// The load failed; its keys answer NOT_COORDINATOR until a newer epoch loads it again.
    Failed,
    /// Another broker leads the partition as of the slot's epoch: NOT_COORDINATOR, and an
    /// election of that epoch or an older one (stale) is ignored.
    Resigned,
}

#[derive(Debug, Clone)]
struct Slot<T> {
    /// The leader epoch the shard was (or is being) loaded for.
    epoch: i32,
    state: SlotState<T>,
}

/// How a request for a partition is met.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    Active(LoadId, &'a T),
    /// COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    /// NOT_COORDINATOR: not led here, or its load failed.
    NotHere,
}

/// The answer to an election.
#[derive(Debug, PartialEq, Eq)]
pub enum Elect<T> {
    /// Replay the partition's log and report with [`ShardSlots::loaded`] under this id. The
    /// shard this one replaces (an active one of an older epoch) must stop serving.
    Load { load: LoadId, replaced: Option<T> },
    /// The slot is already at this epoch or a newer one: a stale or repeated event.
    Ignored { current_epoch: i32 },
}

/// The shards of one coordinator on one broker, by partition, with the epochs they were
/// loaded for.
#[derive(Debug, Clone)]
pub struct ShardSlots<T> {
    slots: BTreeMap<i32, Slot<T>>,
    next_load: LoadId,
}

impl<T> Default for ShardSlots<T> {
    fn default() -> Self {
        ShardSlots {
            slots: BTreeMap::new(),
            next_load: 1,
        }
    }
}

impl<T> ShardSlots<T> {
    pub fn new() -> ShardSlots<T> {
        ShardSlots::default()
    }

    fn next_load(&mut self) -> LoadId {
        let id = self.next_load;
        self.next_load += 1;
        id
    }

    /// This broker leads `partition` at `epoch`. A newer epoch than the slot's starts a load
    /// (replacing a loaded shard: the transaction coordinator writes its epoch into markers,
    /// so a shard of an older epoch must not go on, as Kafka's `TransactionCoordinator.
    /// onElection` reloads); the same or an older one is ignored.
    pub fn elect(&mut self, partition: i32, epoch: i32) -> Elect<T> {
        if let Some(slot) = self.slots.get(&partition) {
            if slot.epoch >= epoch {
                return Elect::Ignored {
                    current_epoch: slot.epoch,
                };
            }
        }
        let load = self.next_load();
        let previous = self.slots.insert(
            partition,
            Slot {
                epoch,
                state: SlotState::Loading(load),
            },
        );
        let replaced = match previous.map(|s| s.state) {
            Some(SlotState::Active(_, shard)) => Some(shard),
            _ => None,
        };
        Elect::Load { load, replaced }
    }

    /// This broker no longer leads `partition` as of `epoch` (`None`: the topic is gone, which
    /// forgets the slot). Unless the slot is at this epoch or a newer one (a stale event,
    /// ignored: `None`), its previous state is returned (the caller stops it) and the slot
    /// remembers the epoch, so a stale election of an older epoch, seen later, loads nothing
    /// (stricter than Kafka's runtime, which forgets unloaded partitions).
    pub fn resign(&mut self, partition: i32, epoch: Option<i32>) -> Option<SlotState<T>> {
        let Some(epoch) = epoch else {
            return self.slots.remove(&partition).map(|s| s.state);
        };
        match self.slots.get_mut(&partition) {
            Some(slot) if slot.epoch >= epoch => None,
            Some(slot) => {
                slot.epoch = epoch;
                Some(std::mem::replace(&mut slot.state, SlotState::Resigned))
            }
            None => {
                self.slots.insert(
                    partition,
                    Slot {
                        epoch,
                        state: SlotState::Resigned,
                    },
                );
                None
            }
        }
    }

    /// The load `load` of `partition` finished with `shard`: it serves if its slot still waits
    /// for it; otherwise (unloaded or superseded meanwhile) the shard is handed back, unused.
    pub fn loaded(&mut self, partition: i32, load: LoadId, shard: T) -> Result<(), T> {
        match self.slots.get_mut(&partition) {
            Some(slot) if matches!(slot.state, SlotState::Loading(l) if l == load) => {
                slot.state = SlotState::Active(load, shard);
                Ok(())
            }
            _ => Err(shard),
        }
    }

    /// The load `load` of `partition` failed: its keys answer NOT_COORDINATOR until a newer
    /// epoch loads it again. Ignored if the slot moved on.
    pub fn load_failed(&mut self, partition: i32, load: LoadId) {
        if let Some(slot) = self.slots.get_mut(&partition) {
            if matches!(slot.state, SlotState::Loading(l) if l == load) {
                slot.state = SlotState::Failed;
            }
        }
    }

    /// How a request for `partition` is met.
    pub fn lookup(&self, partition: i32) -> Lookup<'_, T> {
        match self.slots.get(&partition).map(|s| &s.state) {
            Some(SlotState::Active(load, shard)) => Lookup::Active(*load, shard),
            Some(SlotState::Loading(_)) => Lookup::Loading,
            Some(SlotState::Failed | SlotState::Resigned) | None => Lookup::NotHere,
        }
    }

    /// The epoch `partition`'s slot is at, if it has one.
    pub fn epoch(&self, partition: i32) -> Option<i32> {
        self.slots.get(&partition).map(|s| s.epoch)
    }

    /// The serving shards, by partition.
    pub fn active(&self) -> impl Iterator<Item = (i32, &T)> + '_ {
        self.slots.iter().filter_map(|(p, s)| match &s.state {
            SlotState::Active(_, shard) => Some((*p, shard)),
            _ => None,
        })
    }

    /// Whether `load` is the serving shard of `partition` (work a shard started, such as
    /// marker delivery, stops when it is not).
    pub fn is_active_load(&self, partition: i32, load: LoadId) -> bool {
        matches!(self.lookup(partition), Lookup::Active(l, _) if l == load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionImage, TopicImage};
    use std::sync::Arc;
    use uuid::Uuid;

    const TOPIC: &str = "__consumer_offsets";

    /// An image where `leaders[i]` (leader, epoch) leads partition i of the offsets topic.
    fn image(leaders: &[(i32, i32)]) -> (MetadataImage, Uuid) {
        let topic_id = Uuid::from_u128(7);
        let registrations = leaders
            .iter()
            .enumerate()
            .map(|(i, &(leader, epoch))| {
                (
                    i as i32,
                    PartitionImage {
                        replicas: vec![leader],
                        isr: vec![leader],
                        leader,
                        leader_epoch: epoch,
                        partition_epoch: epoch,
                        adding: vec![],
                        removing: vec![],
                        elr: Vec::new(),
                        last_known_elr: Vec::new(),
                    },
                )
            })
            .collect();
        let mut image = MetadataImage::empty();
        image.topics.insert(
            TOPIC.into(),
            Arc::new(TopicImage {
                name: TOPIC.into(),
                topic_id,
                partitions: leaders.len() as u32,
                configs: Default::default(),
                registrations,
            }),
        );
        image.topic_names_by_id.insert(topic_id, TOPIC.into());
        (image, topic_id)
    }

    // Proves a created topic elects this node for exactly the partitions it leads and resigns
    // it, with the leader's epoch, from those node 2 leads.
    #[test]
    fn a_created_topic_elects_this_node_only_where_it_leads() {
        let (image, id) = image(&[(1, 0), (2, 0), (1, 0), (2, 0)]);
        let delta = MetadataDelta {
            created_topics: vec![id],
            ..Default::default()
        };
        let changes = leadership_changes(&image, &delta, TOPIC, 1);
        assert_eq!(
            changes,
            vec![
                LeadershipChange::Elected {
                    partition: 0,
                    epoch: 0
                },
                LeadershipChange::Resigned {
                    partition: 1,
                    epoch: Some(0)
                },
                LeadershipChange::Elected {
                    partition: 2,
                    epoch: 0
                },
                LeadershipChange::Resigned {
                    partition: 3,
                    epoch: Some(0)
                },
            ]
        );
        // Another topic's delta says nothing about these shards.
        assert!(leadership_changes(&image, &delta, "__transaction_state", 1).is_empty());
    }

    // Proves only the partitions a delta changed are reported, and a deleted topic resigns
    // every partition without an epoch.
    #[test]
    fn only_changed_partitions_move_and_deletion_resigns_all() {
        let (image, id) = image(&[(1, 0), (2, 3), (1, 0)]);
        let delta = MetadataDelta {
            changed_partitions: vec![(id, 1)],
            ..Default::default()
        };
        assert_eq!(
            leadership_changes(&image, &delta, TOPIC, 1),
            vec![LeadershipChange::Resigned {
                partition: 1,
                epoch: Some(3)
            }]
        );
        let deleted = Arc::clone(image.topic(TOPIC).unwrap());
        let delta = MetadataDelta {
            deleted_topics: vec![deleted],
            ..Default::default()
        };
        let changes = leadership_changes(&MetadataImage::empty(), &delta, TOPIC, 1);
        assert_eq!(changes.len(), 3);
        assert!(changes
            .iter()
            .all(|c| matches!(c, LeadershipChange::Resigned { epoch: None, .. })));
    }

    // Proves the life of a slot: loading answers load-in-progress, a finished load serves,
    // a move to node 2 (newer epoch) unloads, and coming back loads again.
    #[test]
    fn a_slot_loads_serves_and_unloads_on_a_newer_epoch() {
        let mut slots: ShardSlots<&str> = ShardSlots::new();
        assert_eq!(slots.lookup(0), Lookup::NotHere);
        let Elect::Load { load, replaced } = slots.elect(0, 4) else {
            panic!("a first election loads");
        };
        assert_eq!(replaced, None);
        assert_eq!(slots.lookup(0), Lookup::Loading);
        slots.loaded(0, load, "shard").unwrap();
        assert_eq!(slots.lookup(0), Lookup::Active(load, &"shard"));
        assert!(slots.is_active_load(0, load));
        assert_eq!(
            slots.resign(0, Some(5)),
            Some(SlotState::Active(load, "shard"))
        );
        assert_eq!(slots.lookup(0), Lookup::NotHere);
        assert!(matches!(slots.elect(0, 6), Elect::Load { .. }));
    }

    // Proves stale events are ignored: an election or resignation of the loaded epoch or an
    // older one changes nothing, and a resignation of a never-loaded partition is a no-op.
    #[test]
    fn stale_epochs_are_ignored() {
        let mut slots: ShardSlots<&str> = ShardSlots::new();
        let Elect::Load { load, .. } = slots.elect(2, 7) else {
            panic!("loads");
        };
        slots.loaded(2, load, "s").unwrap();
        assert_eq!(slots.elect(2, 7), Elect::Ignored { current_epoch: 7 });
        assert_eq!(slots.elect(2, 3), Elect::Ignored { current_epoch: 7 });
        assert_eq!(slots.resign(2, Some(7)), None);
        assert_eq!(slots.resign(2, Some(6)), None);
        assert_eq!(slots.lookup(2), Lookup::Active(load, &"s"));
        assert_eq!(slots.resign(9, Some(100)), None);
        // A partition resigned before it was ever loaded remembers the epoch too.
        assert_eq!(slots.elect(9, 50), Elect::Ignored { current_epoch: 100 });
        assert!(matches!(slots.elect(9, 101), Elect::Load { .. }));
        // Deletion (no epoch) unloads whatever the epoch.
        assert!(slots.resign(2, None).is_some());
    }

    // Proves a load that finishes after its slot moved on (unloaded, or superseded by a newer
    // epoch) is handed back unused, and a newer epoch replaces an active shard.
    #[test]
    fn a_load_overtaken_by_events_is_dropped() {
        let mut slots: ShardSlots<&str> = ShardSlots::new();
        let Elect::Load { load: first, .. } = slots.elect(1, 1) else {
            panic!("loads");
        };
        slots.resign(1, Some(2));
        assert_eq!(slots.loaded(1, first, "old"), Err("old"));
        let Elect::Load { load: second, .. } = slots.elect(1, 3) else {
            panic!("loads");
        };
        let Elect::Load {
            load: third,
            replaced,
        } = slots.elect(1, 4)
        else {
            panic!("a newer epoch reloads");
        };
        assert_eq!(replaced, None);
        assert_eq!(slots.loaded(1, second, "superseded"), Err("superseded"));
        slots.loaded(1, third, "current").unwrap();
        let Elect::Load { replaced, .. } = slots.elect(1, 5) else {
            panic!("a newer epoch reloads");
        };
        assert_eq!(replaced, Some("current"));
        assert_eq!(slots.epoch(1), Some(5));
    }

    // Proves a failed load answers NOT_COORDINATOR and a newer epoch tries again.
    #[test]
    fn a_failed_load_is_not_here_until_a_newer_epoch() {
        let mut slots: ShardSlots<&str> = ShardSlots::new();
        let Elect::Load { load, .. } = slots.elect(0, 1) else {
            panic!("loads");
        };
        slots.load_failed(0, load);
        assert_eq!(slots.lookup(0), Lookup::NotHere);
        assert_eq!(slots.elect(0, 1), Elect::Ignored { current_epoch: 1 });
        assert!(matches!(slots.elect(0, 2), Elect::Load { .. }));
        assert_eq!(slots.active().count(), 0);
    }
}
