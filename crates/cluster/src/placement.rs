//! Replica placement: Kafka's `StripedReplicaPlacer`, rack-aware. Brokers are grouped by rack;
//! each partition's first replica (its preferred leader) comes from the next rack in turn that
//! has an unfenced broker, the others from the following racks, so replicas spread over racks
//! and leaders over brokers. A seeded random offset (as Kafka's) keeps topics created one after
//! another from all starting on the same broker; the seed is the caller's, so tests and
//! simulations are deterministic.

use std::collections::BTreeMap;

use crate::metadata::MetadataImage;

/// A broker that may hold replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsableBroker {
    pub id: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// The registered brokers of `image`, fenced ones included (Kafka places later replicas on
/// them when it must, never a leader). A broker in controlled shutdown counts as fenced: a
/// partition placed on it would start without a leader.
pub fn usable_brokers(image: &MetadataImage) -> Vec<UsableBroker> {
    image
        .brokers
        .values()
        .map(|b| UsableBroker {
            id: b.node_id,
            rack: b.rack.clone(),
            fenced: b.fenced || b.in_controlled_shutdown,
        })
        .collect()
}

/// A small deterministic generator (splitmix64): placement needs spread, not secrecy.
#[derive(Debug, Clone)]
pub struct PlacementRandom(u64);

impl PlacementRandom {
    pub fn new(seed: u64) -> PlacementRandom {
        PlacementRandom(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "a bound of at least one");
        usize::try_from(self.next_u64() % bound as u64).unwrap_or(0)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Kafka's `BrokerList`: brokers of one rack and fencing state, walked from a rotating offset.
#[derive(Debug, Default)]
struct BrokerList {
    brokers: Vec<i32>,
    index: usize,
    offset: usize,
    epoch: usize,
}

impl BrokerList {
    fn initialize(&mut self, random: &mut PlacementRandom) {
        if !self.brokers.is_empty() {
            self.brokers.sort_unstable();
            self.offset = random.below(self.brokers.len());
        }
    }

    fn next(&mut self, epoch: usize) -> Option<i32> {
        if self.brokers.is_empty() {
            return None;
        }
        if self.epoch != epoch {
            self.epoch = epoch;
            self.index = 0;
            self.offset = (self.offset + 1) % self.brokers.len();
        }
        if self.index >= self.brokers.len() {
            return None;
        }
        let broker = self.brokers[(self.index + self.offset) % self.brokers.len()];
        self.index += 1;
        Some(broker)
    }
}

#[derive(Debug, Default)]
struct Rack {
    fenced: BrokerList,
    unfenced: BrokerList,
}

impl Rack {
    fn next(&mut self, epoch: usize) -> Option<i32> {
        self.unfenced
            .next(epoch)
            .or_else(|| self.fenced.next(epoch))
    }
}

/// Kafka's `RackList`: the racks in name order (no rack first), walked from a rotating offset.
struct RackList<'r> {
    random: &'r mut PlacementRandom,
    racks: BTreeMap<Option<String>, Rack>,
    names: Vec<Option<String>>,
    total: usize,
    unfenced: usize,
    epoch: usize,
    offset: usize,
}

impl<'r> RackList<'r> {
    fn new(random: &'r mut PlacementRandom, brokers: &[UsableBroker]) -> RackList<'r> {
        let mut racks: BTreeMap<Option<String>, Rack> = BTreeMap::new();
        let mut unfenced = 0;
        for broker in brokers {
            let rack = racks.entry(broker.rack.clone()).or_default();
            if broker.fenced {
                rack.fenced.brokers.push(broker.id);
            } else {
                unfenced += 1;
                rack.unfenced.brokers.push(broker.id);
            }
        }
        for rack in racks.values_mut() {
            rack.fenced.initialize(random);
            rack.unfenced.initialize(random);
        }
        // BTreeMap order: None first, then names ascending (Kafka's OptionalStringComparator).
        let names: Vec<Option<String>> = racks.keys().cloned().collect();
        let offset = if names.is_empty() {
            0
        } else {
            random.below(names.len())
        };
        RackList {
            random,
            racks,
            names,
            total: brokers.len(),
            unfenced,
            epoch: 0,
            offset,
        }
    }

    fn shuffle(&mut self) {
        self.random.shuffle(&mut self.names);
        for rack in self.racks.values_mut() {
            self.random.shuffle(&mut rack.fenced.brokers);
            self.random.shuffle(&mut rack.unfenced.brokers);
        }
    }

    fn rack(&mut self, index: usize) -> &mut Rack {
        let name = &self.names[index];
        // ok: `names` is built from the keys of `racks` and neither changes after.
        self.racks
            .get_mut(name)
            .expect("every rack name has a rack")
    }

    /// One partition's replicas; the checks of `place` have passed.
    fn place(&mut self, replication_factor: usize) -> Vec<i32> {
        if self.epoch == self.unfenced && self.unfenced > 1 {
            self.shuffle();
            self.epoch = 0;
        }
        if self.offset == self.names.len() {
            self.offset = 0;
        }
        let mut brokers = Vec::with_capacity(replication_factor);
        let mut first_rack;
        let epoch = self.epoch;
        // An unfenced broker exists (checked), so some rack yields one.
        let mut index = self.offset;
        loop {
            if let Some(broker) = self.rack(index).unfenced.next(epoch) {
                brokers.push(broker);
                first_rack = Some(index);
                break;
            }
            index = (index + 1) % self.names.len();
        }
        let mut rack_index = self.offset;
        for _ in 1..replication_factor {
            loop {
                let result = if first_rack == Some(rack_index) {
                    first_rack = None;
                    None
                } else {
                    self.rack(rack_index).next(epoch)
                };
                rack_index = (rack_index + 1) % self.names.len();
                if let Some(broker) = result {
                    brokers.push(broker);
                    break;
                }
            }
        }
        self.epoch += 1;
        self.offset += 1;
        brokers
    }
}

/// Places `partitions` partitions of `replication_factor` replicas each, or answers Kafka's
/// INVALID_REPLICATION_FACTOR message (in Kafka's order of checks).
pub fn place(
    random: &mut PlacementRandom,
    brokers: &[UsableBroker],
    partitions: usize,
    replication_factor: i32,
) -> Result<Vec<Vec<i32>>, String> {
    if replication_factor <= 0 {
        return Err(format!(
            "Invalid replication factor {replication_factor}: the replication factor must be positive."
        ));
    }
    if brokers.iter().all(|b| b.fenced) {
        return Err(
            "All brokers are currently fenced, or have all their log directories cordoned.".into(),
        );
    }
    let replicas = usize::try_from(replication_factor).unwrap_or(usize::MAX);
    if replicas > brokers.len() {
        return Err(format!(
            "The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered or some brokers have all their log directories cordoned.",
            brokers.len()
        ));
    }
    let mut racks = RackList::new(random, brokers);
    debug_assert_eq!(racks.total, brokers.len());
    Ok((0..partitions).map(|_| racks.place(replicas)).collect())
}

/// Why a replication factor above 1 is refused (issue "Cluster I"; "Cluster II" replicates).
pub const REPLICATION_NOT_BUILT: &str =
    "partition replication is not built yet in runnel: a replication factor above 1 cannot be served.";

/// `validate_manual_assignment` without the refusal of more than one replica.
pub(crate) fn check_manual_assignment(
    image: &MetadataImage,
    replicas: &[i32],
    replication_factor: Option<usize>,
) -> crate::error::Result<()> {
    let refuse = |message: String| {
        Err(crate::error::ClusterError::InvalidReplicaAssignment(
            message,
        ))
    };
    if replicas.is_empty() {
        return refuse("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    let mut previous = None;
    for broker in sorted {
        if !image.brokers.contains_key(&broker) {
            return refuse(format!(
                "The manual partition assignment includes broker {broker}, but no such broker is registered."
            ));
        }
        if previous == Some(broker) {
            return refuse(format!(
                "The manual partition assignment includes the broker {broker} more than once."
            ));
        }
        previous = Some(broker);
    }
    match replication_factor {
        Some(expected) if expected != replicas.len() => refuse(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {expected} replica(s).",
            replicas.len()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32, rack: Option<&str>, fenced: bool) -> UsableBroker {
        UsableBroker {
            id,
            rack: rack.map(str::to_owned),
            fenced,
        }
    }

    // Proves leaders spread evenly over unfenced brokers and never land on a fenced one.
    #[test]
    fn leaders_spread_over_unfenced_brokers_only() {
        let brokers = [
            broker(1, None, false),
            broker(2, None, true),
            broker(3, None, false),
            broker(4, None, false),
        ];
        for seed in 0..20 {
            let placed = place(&mut PlacementRandom::new(seed), &brokers, 30, 1).unwrap();
            let mut counts = BTreeMap::new();
            for replicas in &placed {
                assert_eq!(replicas.len(), 1);
                *counts.entry(replicas[0]).or_insert(0) += 1;
            }
            assert!(!counts.contains_key(&2), "fenced broker led: {placed:?}");
            assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
        }
    }

    // Proves replicas of one partition are distinct and, with racks, spread over racks first.
    #[test]
    fn replicas_spread_over_racks() {
        let brokers = [
            broker(1, Some("a"), false),
            broker(2, Some("a"), false),
            broker(3, Some("b"), false),
            broker(4, Some("b"), false),
            broker(5, Some("c"), false),
            broker(6, Some("c"), false),
        ];
        let rack_of = |id: i32| brokers.iter().find(|b| b.id == id).unwrap().rack.clone();
        for seed in 0..20 {
            for replicas in place(&mut PlacementRandom::new(seed), &brokers, 12, 3).unwrap() {
                let mut racks: Vec<_> = replicas.iter().map(|id| rack_of(*id)).collect();
                racks.sort();
                racks.dedup();
                assert_eq!(racks.len(), 3, "{replicas:?}");
            }
        }
    }

    // Kafka's messages, in Kafka's order of checks.
    #[test]
    fn refusals_match_kafka() {
        let one = [broker(1, None, false)];
        let mut random = PlacementRandom::new(1);
        assert_eq!(
            place(&mut random, &one, 1, 0).unwrap_err(),
            "Invalid replication factor 0: the replication factor must be positive."
        );
        assert_eq!(
            place(&mut random, &one, 1, 3).unwrap_err(),
            "The target replication factor of 3 cannot be reached because only 1 broker(s) are registered or some brokers have all their log directories cordoned."
        );
        assert_eq!(
            place(&mut random, &[broker(1, None, true)], 1, 1).unwrap_err(),
            "All brokers are currently fenced, or have all their log directories cordoned."
        );
        assert_eq!(
            place(&mut random, &[], 1, 1).unwrap_err(),
            "All brokers are currently fenced, or have all their log directories cordoned."
        );
    }
}
