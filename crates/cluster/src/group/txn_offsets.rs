//! Offsets committed inside transactions that have not ended yet (Kafka's
//! `OffsetMetadataManager.pendingTransactionalOffsets` and `openTransactions`).
//!
//! A TxnOffsetCommit writes ordinary `OffsetCommit` records, but in a transactional batch of
//! the producer's id: until a COMMIT marker for that producer reaches the partition they are
//! not the group's offsets (OffsetFetch does not see them; with `require_stable` it answers
//! UNSTABLE_OFFSET_COMMIT for their partitions). A COMMIT moves them to the committed offsets,
//! an ABORT drops them. Each keeps the log offset of its record, because Kafka materializes a
//! transactional offset only if it is newer in the log than the committed one it would replace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::records::OffsetCommitValue;

/// (group, topic, partition).
type OffsetKey = (String, String, i32);

/// A pending offset and the log offset of its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffset {
    pub value: OffsetCommitValue,
    pub record_offset: i64,
}

/// Pending transactional offsets by producer, and by partition the producers holding one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PendingTxnOffsets {
    /// producer id -> (group, topic, partition) -> offset.
    by_producer: HashMap<i64, BTreeMap<OffsetKey, PendingOffset>>,
    /// group -> topic -> partition -> producer ids with a pending offset there (Kafka's
    /// `openTransactions`).
    open: BTreeMap<String, BTreeMap<String, BTreeMap<i32, BTreeSet<i64>>>>,
}

impl PendingTxnOffsets {
    /// A transactional offset record of `producer_id` (a later one of the same producer for the
    /// same partition replaces it, as in Kafka).
    pub fn put(
        &mut self,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
        offset: PendingOffset,
    ) {
        self.by_producer
            .entry(producer_id)
            .or_default()
            .insert((group.to_owned(), topic.to_owned(), partition), offset);
        self.open
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default()
            .entry(partition)
            .or_default()
            .insert(producer_id);
    }

    /// A tombstone for the partition: every producer's pending offset there goes (Kafka's
    /// replay of an `OffsetCommit` tombstone).
    pub fn clear_partition(&mut self, group: &str, topic: &str, partition: i32) {
        let Some(topics) = self.open.get_mut(group) else {
            return;
        };
        let Some(partitions) = topics.get_mut(topic) else {
            return;
        };
        let Some(producers) = partitions.remove(&partition) else {
            return;
        };
        if partitions.is_empty() {
            topics.remove(topic);
            if topics.is_empty() {
                self.open.remove(group);
            }
        }
        let key = (group.to_owned(), topic.to_owned(), partition);
        for producer_id in producers {
            if let Some(offsets) = self.by_producer.get_mut(&producer_id) {
                offsets.remove(&key);
                // Kafka keeps the producer's (now empty) entry until its marker; nothing reads
                // an empty one, so it goes here.
                if offsets.is_empty() {
                    self.by_producer.remove(&producer_id);
                }
            }
        }
    }

    /// The producer's transaction ended: its pending offsets, no longer pending (Kafka's
    /// `replayEndTransactionMarker` before it applies the result).
    pub fn end(&mut self, producer_id: i64) -> BTreeMap<OffsetKey, PendingOffset> {
        let Some(offsets) = self.by_producer.remove(&producer_id) else {
            return BTreeMap::new();
        };
        for (group, topic, partition) in offsets.keys() {
            let Some(topics) = self.open.get_mut(group) else {
                continue;
            };
            let Some(partitions) = topics.get_mut(topic) else {
                continue;
            };
            if let Some(producers) = partitions.get_mut(partition) {
                producers.remove(&producer_id);
                if producers.is_empty() {
                    partitions.remove(partition);
                }
            }
            if partitions.is_empty() {
                topics.remove(topic);
                if topics.is_empty() {
                    self.open.remove(group);
                }
            }
        }
        offsets
    }

    /// Whether `group` has a pending offset anywhere.
    pub fn has_group(&self, group: &str) -> bool {
        self.open.contains_key(group)
    }

    /// Whether `group` has a pending offset for the partition.
    pub fn contains(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.open
            .get(group)
            .and_then(|t| t.get(topic))
            .is_some_and(|p| p.contains_key(&partition))
    }

    /// Every (topic, partition) `group` has a pending offset for.
    pub fn partitions_of(&self, group: &str) -> Vec<(String, i32)> {
        let Some(topics) = self.open.get(group) else {
            return Vec::new();
        };
        topics
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(move |p| (topic.clone(), *p)))
            .collect()
    }

    /// The pending offset of `producer_id` for the partition, if any.
    pub fn get(
        &self,
        producer_id: i64,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&PendingOffset> {
        self.by_producer
            .get(&producer_id)?
            .get(&(group.to_owned(), topic.to_owned(), partition))
    }

    /// Producers with pending offsets.
    pub fn producers(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_producer.keys().copied()
    }
}
