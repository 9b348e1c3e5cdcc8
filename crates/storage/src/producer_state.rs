//! Idempotent and transactional producer state for one partition, after Kafka's
//! `ProducerStateManager`, `ProducerStateEntry` and `ProducerAppendInfo`: each producer's epoch,
//! recent batches, coordinator epoch and ongoing transaction, plus the partition's ongoing
//! transactions (which bound the last stable offset) and the completed ones whose marker the
//! high watermark has not passed yet (Kafka's `unreplicatedTxns`, which bound it too).
//!
//! At open, state comes from the latest producer snapshot (`producer_snapshot`): after a clean
//! shutdown the one at the log end, as it is; otherwise with the batches after it replayed.
//! Truncation rebuilds it from every batch left.

use std::collections::{BTreeMap, HashMap, VecDeque};

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
    /// The epoch of the coordinator that wrote this producer's last marker (-1: none yet).
    pub(crate) coordinator_epoch: i32,
    /// First offset of the producer's ongoing transaction, if one is open here.
    pub(crate) current_txn_first_offset: Option<i64>,
    /// Timestamp of the producer's last batch or marker (-1: none), kept in snapshots as
    /// Kafka's `lastTimestamp`.
    pub(crate) last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }
}

/// A producer's last record, as the log cleaner keeps it (Kafka's `LastRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastRecord {
    pub(crate) last_data_offset: Option<i64>,
    pub(crate) epoch: i16,
}

/// A transaction a marker ended (Kafka's `CompletedTxn`); only non-empty transactions complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    /// The marker's offset.
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
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
        self.last_timestamp = batch.timestamp;
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
    /// Ongoing transactions by first offset -> producer id (Kafka's `ongoingTxns`).
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker is not yet below the high watermark, by first
    /// offset -> marker offset (Kafka's `unreplicatedTxns`): their records stay unstable until
    /// the marker is committed, so a read_committed consumer never sees a transaction whose
    /// outcome could still be lost.
    unreplicated: BTreeMap<i64, i64>,
}

impl ProducerStateManager {
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
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

    /// Replays a data batch already in the log (recovery, truncation); no checks, as Kafka's
    /// REPLICATION origin. Control batches go through `replay_marker`.
    pub(crate) fn replay(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        entry.add_batch(header.producer_epoch, metadata_for(header));
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing.insert(header.base_offset, header.producer_id);
        }
    }

    /// Replays a marker already in the log (`marker` is `None` for a control batch that is no
    /// transaction marker, which changes nothing). Returns the transaction it completed, with
    /// the last stable offset to record for it, as `complete` does.
    pub(crate) fn replay_marker(
        &mut self,
        header: &BatchHeader,
        marker: Option<crate::txn::StoredMarker>,
    ) -> Option<(CompletedTxn, i64)> {
        let marker = marker?;
        let mut updates = HashMap::new();
        let stored = crate::txn::TxnMarker {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            result: marker.result,
            // Replay checks nothing, so the version does not matter (Kafka's TV_UNKNOWN).
            transaction_version: 0,
        };
        let completed = end_txn(
            &mut updates,
            self.producers.get(&header.producer_id),
            &stored,
            header.base_offset,
            header.max_timestamp,
        );
        self.commit(updates);
        completed.map(|c| (c, self.complete(c)))
    }

    /// Ends `completed` (after `commit` recorded the marker): it leaves the ongoing
    /// transactions and waits among the unreplicated ones until the high watermark passes its
    /// marker. Returns Kafka's `lastStableOffset(completedTxn)`, the `.txnindex` entry's last
    /// stable offset: the first offset of the earliest ongoing transaction of another producer,
    /// else the offset after the marker.
    pub(crate) fn complete(&mut self, completed: CompletedTxn) -> i64 {
        let last_stable_offset = self.stable_offset_after(&completed);
        self.ongoing.remove(&completed.first_offset);
        self.unreplicated
            .insert(completed.first_offset, completed.last_offset);
        last_stable_offset
    }

    /// Kafka's `lastStableOffset(completedTxn)` (see `complete`), without changing anything.
    pub(crate) fn stable_offset_after(&self, completed: &CompletedTxn) -> i64 {
        self.ongoing
            .iter()
            .find(|(_, &pid)| pid != completed.producer_id)
            .map_or(completed.last_offset + 1, |(&first, _)| first)
    }

    /// Kafka's `onHighWatermarkUpdated`: completed transactions whose marker is below `hw` are
    /// stable.
    pub(crate) fn on_high_watermark(&mut self, hw: i64) {
        self.unreplicated.retain(|_, &mut marker| marker >= hw);
    }

    /// Kafka's `firstUnstableOffset`: the first offset of the earliest transaction that is
    /// ongoing or whose marker the high watermark has not passed.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// State loaded from a snapshot (`producer_snapshot`): its producers, and their open
    /// transactions as the ongoing ones (Kafka's `loadProducerEntry`).
    pub(crate) fn from_snapshot(producers: HashMap<i64, ProducerEntry>) -> Self {
        let ongoing = producers
            .iter()
            .filter_map(|(&pid, e)| e.current_txn_first_offset.map(|first| (first, pid)))
            .collect();
        ProducerStateManager {
            producers,
            ongoing,
            unreplicated: BTreeMap::new(),
        }
    }

    /// Kafka's `removeExpiredProducers`: forgets producers with no transaction open here whose
    /// last write is `expiration_ms` or more before `now_ms`. Returns how many went.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Every producer's entry, for a snapshot.
    pub(crate) fn producers(&self) -> &HashMap<i64, ProducerEntry> {
        &self.producers
    }

    /// Whether `producer_id` has a transaction open here at `producer_epoch` (Kafka's
    /// `hasOngoingTransaction`).
    pub(crate) fn has_ongoing_txn(&self, producer_id: i64, producer_epoch: i16) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.current_txn_first_offset.is_some() && e.epoch == producer_epoch)
    }

    /// The ongoing transactions as (producer id, first offset), earliest first.
    pub(crate) fn ongoing_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&first, &pid)| (pid, first))
    }

    /// Each producer's last record (Kafka's `lastRecordsOfActiveProducers`): the last offset
    /// of its last data batch, if it has one at its current epoch, and that epoch. The log
    /// cleaner keeps a header of that batch, or of the producer's marker at that epoch when it
    /// has no data batch (a marker bumped its epoch), so fencing survives compaction.
    pub(crate) fn last_records(&self) -> HashMap<i64, LastRecord> {
        self.producers
            .iter()
            .map(|(&id, entry)| {
                let last = LastRecord {
                    last_data_offset: entry.batches.back().map(|b| b.last_offset),
                    epoch: entry.epoch,
                };
                (id, last)
            })
            .collect()
    }

    /// What DescribeProducers reports of `producer_id`, if known.
    pub(crate) fn describe(&self, producer_id: i64) -> Option<crate::reader::ActiveProducer> {
        let entry = self.producers.get(&producer_id)?;
        Some(crate::reader::ActiveProducer {
            producer_id,
            producer_epoch: entry.epoch,
            last_sequence: entry.last_seq(),
            last_timestamp: entry.last_timestamp,
            coordinator_epoch: entry.coordinator_epoch,
            current_txn_start_offset: entry.current_txn_first_offset.unwrap_or(-1),
        })
    }

    /// Applies an append's checked updates, keeping the ongoing transactions in step.
    pub(crate) fn commit(&mut self, updates: HashMap<i64, ProducerEntry>) {
        for (pid, entry) in updates {
            let before = self
                .producers
                .get(&pid)
                .and_then(|e| e.current_txn_first_offset);
            if before != entry.current_txn_first_offset {
                if let Some(first) = before {
                    self.ongoing.remove(&first);
                }
                if let Some(first) = entry.current_txn_first_offset {
                    self.ongoing.insert(first, pid);
                }
            }
            self.producers.insert(pid, entry);
        }
    }
}

/// `ProducerAppendInfo.appendEndTxnMarker` without the checks (those are `check_marker`'s):
/// records the marker in the producer's entry and returns the transaction it ends, if the
/// producer had one open here (an empty transaction completes nothing).
fn end_txn(
    updates: &mut HashMap<i64, ProducerEntry>,
    committed: Option<&ProducerEntry>,
    marker: &crate::txn::TxnMarker,
    offset: i64,
    timestamp: i64,
) -> Option<CompletedTxn> {
    let crate::txn::TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch,
        result,
        ..
    } = *marker;
    let entry = updates
        .entry(producer_id)
        .or_insert_with(|| committed.cloned().unwrap_or_default());
    let completed = entry.current_txn_first_offset.map(|first| CompletedTxn {
        producer_id,
        first_offset: first,
        last_offset: offset,
        aborted: result == crate::txn::TxnResult::Abort,
    });
    // `ProducerStateEntry.update(epoch, coordinatorEpoch, timestamp)`: a new epoch forgets the
    // old epoch's batches.
    if entry.epoch != producer_epoch {
        entry.epoch = producer_epoch;
        entry.batches.clear();
    }
    entry.coordinator_epoch = coordinator_epoch;
    entry.current_txn_first_offset = None;
    entry.last_timestamp = timestamp;
    completed
}

/// Checks a marker the coordinator writes at `offset` (Kafka's `appendEndTxnMarker` for the
/// COORDINATOR origin) and records it in `updates`: an epoch older than the producer's
/// (from transaction version 2: not newer, unless it retries a marker already written) is
/// INVALID_PRODUCER_EPOCH, an older coordinator epoch TRANSACTION_COORDINATOR_FENCED.
pub(crate) fn check_marker(
    updates: &mut HashMap<i64, ProducerEntry>,
    committed: Option<&ProducerEntry>,
    marker: &crate::txn::TxnMarker,
    offset: i64,
    timestamp: i64,
) -> Result<Option<CompletedTxn>, StorageError> {
    let current = committed.cloned().unwrap_or_default();
    let epoch = marker.producer_epoch;
    let invalid = if marker.transaction_version >= 2 {
        epoch <= current.epoch
    } else {
        epoch < current.epoch
    };
    // KAFKA-19999: at TV2 a marker at the current epoch with no transaction open is a retry of
    // one already written, and is written again.
    let retry = marker.transaction_version >= 2
        && epoch == current.epoch
        && (current.current_txn_first_offset.is_none() || epoch == i16::MAX);
    if invalid && !retry {
        return Err(StorageError::InvalidProducerEpoch {
            producer_id: marker.producer_id,
            epoch,
            current_epoch: current.epoch,
        });
    }
    if current.coordinator_epoch > marker.coordinator_epoch {
        return Err(StorageError::TransactionCoordinatorFenced {
            producer_id: marker.producer_id,
            coordinator_epoch: marker.coordinator_epoch,
            current_coordinator_epoch: current.coordinator_epoch,
        });
    }
    Ok(end_txn(updates, committed, marker, offset, timestamp))
}

/// Checks one client batch against `updated` (the producer's entry including earlier batches of
/// the same append; `None` = unknown producer) and records it there. `header` already carries
/// the assigned offsets. Mirrors `ProducerAppendInfo.checkProducerEpoch` and `checkSequence`
/// (the latter only when `check_sequence`: a client's batch, not a coordinator's).
pub(crate) fn check_and_update(
    updates: &mut HashMap<i64, ProducerEntry>,
    committed: Option<&ProducerEntry>,
    header: &BatchHeader,
    check_sequence: bool,
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
    if !check_sequence {
        // A coordinator's batch: its sequence means nothing (always 0).
    } else if epoch != entry.epoch {
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
    // `ProducerAppendInfo.appendDataBatch`: a producer with a transaction open here may only
    // write transactional batches until its marker; a transactional batch opens one.
    match (entry.current_txn_first_offset, header.is_transactional()) {
        (Some(_), false) => {
            return Err(StorageError::InvalidTxnState(format!(
                "Expected transactional write from producer {producer_id} at offset {}",
                header.base_offset
            )))
        }
        (None, true) => entry.current_txn_first_offset = Some(header.base_offset),
        _ => {}
    }
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
        check_and_update(&mut updates, m.get(h.producer_id), h, true)?;
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
