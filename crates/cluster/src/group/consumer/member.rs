//! One member of a consumer group and its reconciliation (Kafka's `ConsumerGroupMember` and
//! `CurrentAssignmentBuilder`).

use std::collections::BTreeSet;

use uuid::Uuid;

use super::records::{Assignment, CurrentAssignmentValue, MemberMetadataValue};

/// Kafka's `MemberState`, with its persisted byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Reconciled to its member epoch.
    Stable,
    /// Waiting for the member to give up `pending_revocation` before moving on.
    UnrevokedPartitions,
    /// Some target partitions are still held by other members.
    UnreleasedPartitions,
    /// A state written by a newer coordinator; the member is fenced into rejoining.
    Unknown,
}

impl MemberState {
    pub fn to_byte(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
            MemberState::Unknown => 127,
        }
    }

    pub fn from_byte(b: i8) -> MemberState {
        match b {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Unknown,
        }
    }
}

/// A member: its subscription (`ConsumerGroupMemberMetadata`) and its current assignment
/// (`ConsumerGroupCurrentMemberAssignment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// The subscription, as persisted.
    pub metadata: MemberMetadataValue,
    /// Epoch the member must present; -2 while a static member is away.
    pub member_epoch: i32,
    /// The epoch before the last bump: accepted once in case the bump's response was lost.
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// Partitions the member owns or is being given.
    pub assigned: Assignment,
    /// Partitions the member must give up before it gets anything new.
    pub pending_revocation: Assignment,
}

impl Member {
    /// A member as Kafka's `ConsumerGroupMember.Builder(memberId)` creates it.
    pub fn new(member_id: String) -> Member {
        Member {
            member_id,
            metadata: MemberMetadataValue {
                rebalance_timeout_ms: -1,
                ..MemberMetadataValue::default()
            },
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    pub fn is_reconciled_to(&self, target_epoch: i32) -> bool {
        self.state == MemberState::Stable && self.member_epoch == target_epoch
    }

    pub fn current_value(&self) -> CurrentAssignmentValue {
        CurrentAssignmentValue {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state.to_byte(),
            assigned_partitions: self.assigned.clone(),
            partitions_pending_revocation: self.pending_revocation.clone(),
        }
    }

    pub fn apply_current(&mut self, v: &CurrentAssignmentValue) {
        self.member_epoch = v.member_epoch;
        self.previous_member_epoch = v.previous_member_epoch;
        self.state = MemberState::from_byte(v.state);
        self.assigned.clone_from(&v.assigned_partitions);
        self.pending_revocation
            .clone_from(&v.partitions_pending_revocation);
    }

    fn update_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }
}

/// The partitions a heartbeat says the member owns: `None` when the field was omitted.
pub type Owned = Option<Vec<(Uuid, Vec<i32>)>>;

/// Whether every owned partition is in `assignment` (Kafka's `isSubset`); false when unknown.
pub fn owned_is_subset(owned: &Owned, assignment: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned.iter().all(|(topic_id, partitions)| {
        assignment
            .get(topic_id)
            .is_some_and(|set| partitions.iter().all(|p| set.contains(p)))
    })
}

/// Whether the member still reports any of `revoking`; true when it did not report (Kafka's
/// `ownsRevokedPartitions`: absence of the field means "unchanged").
fn owns_any(owned: &Owned, revoking: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(topic_id, partitions)| {
        revoking
            .get(topic_id)
            .is_some_and(|set| partitions.iter().any(|p| set.contains(p)))
    })
}

/// A member persisted in a state this coordinator does not know (written by a newer one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMemberState;

/// Moves `member` one step towards `target` (Kafka's `CurrentAssignmentBuilder.build`).
/// `held_by_other(topic, partition)` says whether another member still owns the partition
/// (its "partition epoch" is not -1): such a partition is not given yet (unreleased).
///
/// `Err` means the member is in a state we do not know and must be fenced.
pub fn reconcile(
    member: &Member,
    target_epoch: i32,
    target: &Assignment,
    owned: &Owned,
    held_by_other: &dyn Fn(&Uuid, i32) -> bool,
) -> Result<Member, UnknownMemberState> {
    match member.state {
        MemberState::Stable => {
            if member.member_epoch == target_epoch {
                Ok(member.clone())
            } else {
                Ok(next_assignment(
                    member,
                    member.member_epoch,
                    target_epoch,
                    target,
                    owned,
                    held_by_other,
                ))
            }
        }
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &member.pending_revocation) {
                Ok(member.clone())
            } else {
                Ok(next_assignment(
                    member,
                    member.member_epoch + 1,
                    target_epoch,
                    target,
                    owned,
                    held_by_other,
                ))
            }
        }
        MemberState::UnreleasedPartitions => Ok(next_assignment(
            member,
            member.member_epoch,
            target_epoch,
            target,
            owned,
            held_by_other,
        )),
        MemberState::Unknown => {
            if !matches!(owned, Some(o) if o.is_empty()) {
                return Err(UnknownMemberState);
            }
            Ok(next_assignment(
                member,
                target_epoch,
                target_epoch,
                target,
                owned,
                held_by_other,
            ))
        }
    }
}

fn next_assignment(
    member: &Member,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owned: &Owned,
    held_by_other: &dyn Fn(&Uuid, i32) -> bool,
) -> Member {
    let mut has_unreleased = false;
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut pending_assignment = Assignment::new();
    let topics: BTreeSet<Uuid> = target
        .keys()
        .chain(member.assigned.keys())
        .copied()
        .collect();
    let empty = BTreeSet::new();
    for topic_id in topics {
        let want = target.get(&topic_id).unwrap_or(&empty);
        let have = member.assigned.get(&topic_id).unwrap_or(&empty);
        let keep: BTreeSet<i32> = have.intersection(want).copied().collect();
        let revoke: BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut add: BTreeSet<i32> = want.difference(&keep).copied().collect();
        let before = add.len();
        add.retain(|p| !held_by_other(&topic_id, *p));
        has_unreleased |= add.len() != before;
        if !keep.is_empty() {
            assigned.insert(topic_id, keep);
        }
        if !revoke.is_empty() {
            revoking.insert(topic_id, revoke);
        }
        if !add.is_empty() {
            pending_assignment.insert(topic_id, add);
        }
    }

    let mut next = member.clone();
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        // Revoke first: the member stays in its epoch until it acknowledges.
        next.state = MemberState::UnrevokedPartitions;
        next.update_epoch(member_epoch);
        next.assigned = assigned;
        next.pending_revocation = revoking;
        return next;
    }
    for (topic_id, partitions) in pending_assignment.iter() {
        assigned.entry(*topic_id).or_default().extend(partitions);
    }
    next.state = if has_unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    next.update_epoch(target_epoch);
    next.assigned = assigned;
    next.pending_revocation = Assignment::new();
    next
}
