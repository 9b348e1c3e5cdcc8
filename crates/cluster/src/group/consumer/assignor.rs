//! Server-side assignors: `uniform` (balanced and sticky) and `range` (co-partitioned ranges).
//!
//! Both see the same input as Kafka's `ConsumerGroupPartitionAssignor`: every member's
//! subscribed topic ids and its current *target* assignment (for stickiness), and the partition
//! count of each subscribed topic. They return a new target assignment for every member.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::records::Assignment;

/// Name of the uniform assignor, Kafka's default.
pub const UNIFORM: &str = "uniform";
/// Name of the range assignor.
pub const RANGE: &str = "range";

/// What an assignor knows of one member.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    /// `group.instance.id`: the range assignor orders static members by it.
    pub instance_id: Option<String>,
    /// Topics the member subscribes to that exist (unknown names are already dropped).
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's current target assignment; the uniform assignor keeps what it can of it.
    pub current: Assignment,
}

/// Runs the named assignor. Unknown names are a bug: the heartbeat validates them first.
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, u32>,
) -> BTreeMap<String, Assignment> {
    match name {
        RANGE => range(members, partition_counts),
        _ => uniform(members, partition_counts),
    }
}

/// Balanced and sticky. Every member keeps the partitions of its current target that still
/// exist and that it still subscribes to (a partition claimed twice goes to the first member);
/// unassigned partitions go to the least loaded subscriber; then partitions move, one at a
/// time, from a member to a less loaded subscriber while that lowers the spread below 2. With
/// one subscription for all (Kafka's homogeneous case) every member ends with `floor(P/N)` or
/// `ceil(P/N)` partitions, as Kafka's `OptimizedUniformAssignmentBuilder`; with different
/// subscriptions the result is balanced as far as subscriptions allow, as the general builder.
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, u32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut counts: BTreeMap<&str, usize> = members.keys().map(|m| (m.as_str(), 0)).collect();
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();

    // 1. Stickiness: keep what is still valid.
    for (member_id, spec) in members {
        for (topic_id, partitions) in &spec.current {
            let Some(&count) = partition_counts.get(topic_id) else {
                continue;
            };
            if !spec.subscribed_topic_ids.contains(topic_id) {
                continue;
            }
            for &p in partitions {
                if p < 0 || p as u32 >= count || owner.contains_key(&(*topic_id, p)) {
                    continue;
                }
                owner.insert((*topic_id, p), member_id);
                *counts.get_mut(member_id.as_str()).expect("member counted") += 1;
                // ok: every member is counted first
            }
        }
    }

    // Subscribers per topic, in member id order.
    let mut subscribers: BTreeMap<Uuid, Vec<&str>> = BTreeMap::new();
    for (member_id, spec) in members {
        for topic_id in &spec.subscribed_topic_ids {
            if partition_counts.contains_key(topic_id) {
                subscribers.entry(*topic_id).or_default().push(member_id);
            }
        }
    }

    // 2. Unassigned partitions, topics with the fewest subscribers first (they have the
    // least choice), each to its least loaded subscriber.
    let mut topics: Vec<(&Uuid, &Vec<&str>)> = subscribers.iter().collect();
    topics.sort_by_key(|(id, subs)| (subs.len(), **id));
    for (topic_id, subs) in &topics {
        let count = partition_counts[*topic_id];
        for p in 0..count as i32 {
            if owner.contains_key(&(**topic_id, p)) {
                continue;
            }
            let target = least_loaded(subs, &counts);
            owner.insert((**topic_id, p), target);
            *counts.get_mut(target).expect("member counted") += 1; // ok: every member is counted first
        }
    }

    // 3. Balance: move a partition from a member to a subscriber holding at least two fewer.
    // Each move lowers the sum of squared counts, so this ends.
    loop {
        let mut moved = false;
        let mut by_load: Vec<&str> = counts.keys().copied().collect();
        by_load.sort_by_key(|m| (std::cmp::Reverse(counts[m]), *m));
        'members: for from in by_load {
            let owned: Vec<(Uuid, i32)> = owner
                .iter()
                .rev()
                .filter(|(_, o)| **o == from)
                .map(|(tp, _)| *tp)
                .collect();
            for (topic_id, p) in owned {
                let to = least_loaded(&subscribers[&topic_id], &counts);
                if counts[to] + 1 < counts[from] {
                    owner.insert((topic_id, p), to);
                    *counts.get_mut(from).expect("member counted") -= 1; // ok: every member is counted first
                    *counts.get_mut(to).expect("member counted") += 1; // ok: every member is counted first
                    moved = true;
                    break 'members;
                }
            }
        }
        if !moved {
            break;
        }
    }

    for ((topic_id, p), member_id) in owner {
        out.get_mut(member_id)
            .expect("owner is a member") // ok: owners are members
            .entry(topic_id)
            .or_default()
            .insert(p);
    }
    out
}

fn least_loaded<'a>(candidates: &[&'a str], counts: &BTreeMap<&str, usize>) -> &'a str {
    candidates
        .iter()
        .copied()
        .min_by_key(|m| (counts[m], *m))
        .expect("a topic in the subscriber map has a subscriber") // ok: built just above
}

/// Kafka's server-side `RangeAssignor`: per topic, its subscribers ordered static members first
/// (by instance id) then by member id; each gets a contiguous range of `P / N` partitions and
/// the first `P % N` one more. Members subscribed to the same co-partitioned topics get the
/// same partition numbers of each. Not sticky, as Kafka's.
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, u32>,
) -> BTreeMap<String, Assignment> {
    let mut ordered: Vec<(&String, &MemberSpec)> = members.iter().collect();
    ordered.sort_by(
        |(a_id, a), (b_id, b)| match (&a.instance_id, &b.instance_id) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a_id.cmp(b_id),
        },
    );
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (topic_id, &count) in partition_counts {
        let subs: Vec<&String> = ordered
            .iter()
            .filter(|(_, spec)| spec.subscribed_topic_ids.contains(topic_id))
            .map(|(id, _)| *id)
            .collect();
        if subs.is_empty() {
            continue;
        }
        let n = subs.len() as u32;
        let (quota, extra) = (count / n, count % n);
        let mut next = 0u32;
        for (i, member_id) in subs.iter().enumerate() {
            let take = quota + u32::from((i as u32) < extra);
            if take > 0 {
                let partitions: BTreeSet<i32> = (next..next + take).map(|p| p as i32).collect();
                out.get_mut(*member_id)
                    .expect("subscriber is a member") // ok: subscribers are members
                    .insert(*topic_id, partitions);
            }
            next += take;
        }
    }
    out
}
