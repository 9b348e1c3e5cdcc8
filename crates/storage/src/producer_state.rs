//! Idempotent-producer state for one partition, after Kafka's `ProducerStateManager`,
//! `ProducerStateEntry` and `ProducerAppendInfo` (transactions are out of scope).
//!
//! State is rebuilt at open by scanning batch headers, or read from the snapshot a clean close
//! wrote (`producer_snapshot`).

use std::collections::{HashMap, VecDeque};

use runnel_protocol::batch::{decrement_sequence, BatchHeader, NO_SEQUENCE};

use crate::StorageError;

/// Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`: how many recent batches a retry may
/// match (the producer's `max.in.flight.requests.per.connection` cap is also 5).
pub(crate) const BATCHES_TO_RETAIN: usize = 5;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
const NO_PRODUCER_EPOCH: i16 = -1;

/// Where one recent batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    /// The batch's max timestamp, answered as `log_append_time` on a duplicate (as Kafka does).
    pub(crate) timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    /// Oldest first; at most `BATCHES_TO_RETAIN`.
    pub(crate) batches: VecDeque<BatchMetadata>,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
        }
    }
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_seq)
    }

    /// `ProducerStateEntry.addBatch`: a new epoch forgets the old epoch's batches.
    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if self.batches.len() == BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
    }
}

fn metadata_for(header: &BatchHeader) -> BatchMetadata {
    let last_seq = header.last_sequence();
    BatchMetadata {
        first_seq: decrement_sequence(last_seq, header.last_offset_delta),
        last_seq,
        first_offset: header.base_offset,
        last_offset: header.last_offset(),
        timestamp: header.max_timestamp,
    }
}

#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer's entry, in no particular order (for the snapshot).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    /// Adds a producer read from a snapshot; `false` (and nothing changed) if it is known already.
    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) -> bool {
        match self.producers.entry(producer_id) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(entry);
                true
            }
        }
    }

    /// `ProducerStateEntry.findDuplicateBatch`: same epoch and the exact sequence range of one
    /// of the retained batches.
    pub(crate) fn find_duplicate(&self, header: &BatchHeader) -> Option<BatchMetadata> {
        let entry = self.producers.get(&header.producer_id)?;
        if entry.epoch != header.producer_epoch {
            return None;
        }
        let last_seq = header.last_sequence();
        entry
            .batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
            .copied()
    }

    /// Replays a batch already in the log (recovery); no checks, as Kafka's REPLICATION origin.
    pub(crate) fn replay(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        self.producers
            .entry(header.producer_id)
            .or_default()
            .add_batch(header.producer_epoch, metadata_for(header));
    }

    /// Each producer's last data offset (the last offset of its last batch), which the log
    /// cleaner keeps a batch header for (Kafka's `lastRecordsOfActiveProducers`).
    pub(crate) fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(&id, entry)| entry.batches.back().map(|b| (id, b.last_offset)))
            .collect()
    }

    pub(crate) fn commit(&mut self, updates: HashMap<i64, ProducerEntry>) {
        self.producers.extend(updates);
    }
}

/// Checks one client batch against `updated` (the producer's entry including earlier batches of
/// the same append; `None` = unknown producer) and records it there. `header` already carries
/// the assigned offsets. Mirrors `ProducerAppendInfo.checkProducerEpoch` and `checkSequence`.
pub(crate) fn check_and_update(
    updates: &mut HashMap<i64, ProducerEntry>,
    committed: Option<&ProducerEntry>,
    header: &BatchHeader,
) -> Result<(), StorageError> {
    let producer_id = header.producer_id;
    let current_epoch = committed.map_or(NO_PRODUCER_EPOCH, |e| e.epoch);
    let entry = updates
        .entry(producer_id)
        .or_insert_with(|| committed.cloned().unwrap_or_default());
    let epoch = header.producer_epoch;
    if epoch < entry.epoch {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch: entry.epoch,
        });
    }
    let first_seq = header.base_sequence;
    if epoch != entry.epoch {
        // A bumped epoch restarts sequences at 0, unless we never knew this producer.
        if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
            return Err(StorageError::OutOfOrderSequence {
                producer_id,
                first_sequence: first_seq,
                last_sequence: entry.last_seq(),
            });
        }
    } else {
        let last_seq = entry.last_seq();
        // An unknown producer (e.g. its batches were removed by retention) may start anywhere.
        if current_epoch != NO_PRODUCER_EPOCH && !in_sequence(last_seq, first_seq) {
            return Err(StorageError::OutOfOrderSequence {
                producer_id,
                first_sequence: first_seq,
                last_sequence: last_seq,
            });
        }
    }
    entry.add_batch(epoch, metadata_for(header));
    Ok(())
}

/// `ProducerAppendInfo.inSequence`: next = last + 1, wrapping from `i32::MAX` to 0.
fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, base_seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: base_seq,
            record_count: count,
        }
    }

    fn append(m: &mut ProducerStateManager, h: &BatchHeader) -> Result<(), StorageError> {
        let mut updates = HashMap::new();
        check_and_update(&mut updates, m.get(h.producer_id), h)?;
        m.commit(updates);
        Ok(())
    }

    #[test]
    fn sequences_epochs_and_wraparound() {
        // In-order sequences pass; gaps, old epochs and non-zero starts of new epochs fail; seqs wrap.
        let mut m = ProducerStateManager::default();
        append(&mut m, &header(1, 0, 17, 3, 0)).unwrap(); // unknown producer: any start
        append(&mut m, &header(1, 0, 20, 1, 3)).unwrap();
        assert!(matches!(
            append(&mut m, &header(1, 0, 22, 1, 4)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            append(&mut m, &header(1, 1, 5, 1, 4)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        append(&mut m, &header(1, 1, 0, 1, 4)).unwrap();
        assert!(matches!(
            append(&mut m, &header(1, 0, 1, 1, 5)),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        append(&mut m, &header(2, 0, i32::MAX - 1, 2, 5)).unwrap();
        append(&mut m, &header(2, 0, 0, 1, 7)).unwrap();
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        // A retry of any of the last 5 batches is found with its offsets; the 6th-oldest is not.
        let mut m = ProducerStateManager::default();
        for i in 0..6 {
            append(&mut m, &header(9, 0, i * 2, 2, i64::from(i) * 2)).unwrap();
        }
        assert_eq!(m.find_duplicate(&header(9, 0, 0, 2, 0)), None);
        let dup = m.find_duplicate(&header(9, 0, 2, 2, 0)).unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (2, 3));
        assert_eq!(m.find_duplicate(&header(9, 1, 2, 2, 0)), None);
    }
}
