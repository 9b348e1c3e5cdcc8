//! Committed offsets of every group this coordinator owns, as replayed from
//! `__consumer_offsets` or applied by OffsetCommit.

use std::collections::BTreeMap;

use super::records::OffsetCommitValue;

/// How a group's offsets may expire (Kafka's `OffsetExpirationCondition`): the timestamp the
/// retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryBase {
    /// Count from each offset's commit timestamp.
    CommitTimestamp,
    /// Count from when the group became Empty (falling back to the commit timestamp when the
    /// group record carried no state timestamp).
    EmptySince(Option<i64>),
}

impl ExpiryBase {
    /// Kafka's `OffsetExpirationConditionImpl.isOffsetExpired`.
    pub fn is_expired(self, offset: &OffsetCommitValue, now_ms: i64, retention_ms: i64) -> bool {
        if offset.expire_timestamp_ms >= 0 {
            return now_ms >= offset.expire_timestamp_ms;
        }
        let base = match self {
            ExpiryBase::CommitTimestamp => offset.commit_timestamp_ms,
            ExpiryBase::EmptySince(since) => since.unwrap_or(offset.commit_timestamp_ms),
        };
        now_ms.saturating_sub(base) >= retention_ms
    }
}

/// topic -> partition -> offset, for one group.
pub type GroupOffsets = BTreeMap<String, BTreeMap<i32, OffsetCommitValue>>;

/// Offsets by group. Sorted maps so responses and tombstones come out in a stable order.
#[derive(Debug, Default)]
pub struct OffsetStore {
    /// group -> topic -> partition -> offset.
    by_group: BTreeMap<String, GroupOffsets>,
    /// group -> topic -> partition -> log offset of the record that committed it (Kafka's
    /// `OffsetAndMetadata.recordOffset`): a transactional offset replaces a committed one only
    /// if its record is later in the log, which a compacted log must still decide right.
    record_offsets: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>,
}

/// Two stores hold the same offsets; where their records sit in the log is not compared
/// (a coordinator driven without a log numbers records itself).
impl PartialEq for OffsetStore {
    fn eq(&self, other: &Self) -> bool {
        self.by_group == other.by_group
    }
}

impl Eq for OffsetStore {}

impl OffsetStore {
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.by_group.get(group)?.get(topic)?.get(&partition)
    }

    pub fn group(&self, group: &str) -> Option<&GroupOffsets> {
        self.by_group.get(group)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.by_group.contains_key(group)
    }

    /// The log offset of the record that committed the partition's offset.
    pub fn record_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.record_offsets
            .get(group)?
            .get(topic)?
            .get(&partition)
            .copied()
    }

    /// Commits `value`, written by the record at `record_offset` of the log.
    pub fn put(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        value: OffsetCommitValue,
        record_offset: i64,
    ) {
        self.put_value(group, topic, partition, value);
        // Names are copied only when new, as in `put_value` (replay calls this per record).
        if !self.record_offsets.contains_key(group) {
            self.record_offsets
                .insert(group.to_owned(), BTreeMap::new());
        }
        let Some(topics) = self.record_offsets.get_mut(group) else {
            unreachable!("group {group} was inserted just above");
        };
        if !topics.contains_key(topic) {
            topics.insert(topic.to_owned(), BTreeMap::new());
        }
        let Some(partitions) = topics.get_mut(topic) else {
            unreachable!("topic {topic} was inserted just above");
        };
        partitions.insert(partition, record_offset);
    }

    fn put_value(&mut self, group: &str, topic: &str, partition: i32, value: OffsetCommitValue) {
        // Called once per offset record replayed from `__consumer_offsets` at load, mostly for
        // a group and topic already held: their names are copied only when new.
        if !self.by_group.contains_key(group) {
            self.by_group.insert(group.to_owned(), GroupOffsets::new());
        }
        let Some(topics) = self.by_group.get_mut(group) else {
            unreachable!("group {group} was inserted just above");
        };
        if !topics.contains_key(topic) {
            topics.insert(topic.to_owned(), BTreeMap::new());
        }
        let Some(partitions) = topics.get_mut(topic) else {
            unreachable!("topic {topic} was inserted just above");
        };
        partitions.insert(partition, value);
    }

    pub fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        if let Some(topics) = self.record_offsets.get_mut(group) {
            if let Some(partitions) = topics.get_mut(topic) {
                partitions.remove(&partition);
                if partitions.is_empty() {
                    topics.remove(topic);
                }
            }
            if topics.is_empty() {
                self.record_offsets.remove(group);
            }
        }
        let Some(topics) = self.by_group.get_mut(group) else {
            return;
        };
        if let Some(partitions) = topics.get_mut(topic) {
            partitions.remove(&partition);
            if partitions.is_empty() {
                topics.remove(topic);
            }
        }
        if topics.is_empty() {
            self.by_group.remove(group);
        }
    }

    /// Every (topic, partition) `group` holds an offset for.
    pub fn partitions_of(&self, group: &str) -> Vec<(String, i32)> {
        let Some(topics) = self.by_group.get(group) else {
            return Vec::new();
        };
        topics
            .iter()
            .flat_map(|(topic, partitions)| partitions.keys().map(move |p| (topic.clone(), *p)))
            .collect()
    }

    /// Group ids that hold offsets.
    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.by_group.keys()
    }
}
