//! Appends as a follower (Kafka's `UnifiedLog.appendAsFollower`): batches fetched from the
//! leader are written with the leader's offsets, leader epochs and timestamps, never
//! re-assigned. The only follower today is a broker copying a partition it is being moved to
//! (reassignment), but nothing here is specific to that.

use bytes::Bytes;
use runnel_protocol::batch::{check_stored_batch, BatchError, BatchHeader, BATCH_HEADER_LEN};

use super::{AppendOutcome, PartitionLog};
use crate::txn::{read_marker, AbortedTxn, MARKER_BATCH_BYTES_MAX};
use crate::StorageError;

impl PartitionLog {
    /// Appends batches the leader sent (a Fetch response's records for this partition), as
    /// Kafka's follower does:
    /// - every whole batch is checked as recovery checks a stored one (magic 2, length, CRC);
    ///   a trailing partial batch (a fetch cut at its size limit) is ignored, as Kafka's record
    ///   iterator ignores it, and `None` is answered when not even one batch is whole;
    /// - offsets are the leader's: each batch must start past the previous one's last offset
    ///   and the first at or past the log end offset (forward gaps are allowed: a compacted
    ///   leader log has them); anything else is refused with `UnexpectedAppendOffset` and
    ///   nothing is written. One exception, Kafka's (`Partition.appendRecordsToFollower...`):
    ///   an empty log whose end falls inside the first batch (the leader's log start offset
    ///   was moved into a batch by DeleteRecords) restarts at that batch's base offset;
    /// - the leader-epoch cache takes each batch's partition leader epoch at its base offset;
    /// - producer state is rebuilt from the batches without sequence checks (Kafka's
    ///   REPLICATION origin), so an idempotent retry or a transaction continues on this copy
    ///   once it leads; ABORT markers add `.txnindex` entries as on the leader.
    ///
    /// A failed data write is undone and leaves the log as it was (see `append_as_leader`);
    /// a failed index or checkpoint write after the data was written poisons the log, and a
    /// reopen recovers both from the batches. The high watermark and log start offset are the
    /// owner's to move from the leader's (`set_high_watermark`, `advance_log_start_offset`).
    pub fn append_as_follower(
        &mut self,
        records: Bytes,
        now_ms: i64,
    ) -> Result<Option<AppendOutcome>, StorageError> {
        self.check_writable()?;
        let (whole_bytes, headers) = split_whole_batches(&records)?;
        let (Some((_, first)), Some((_, last))) = (headers.first(), headers.last()) else {
            return Ok(None);
        };
        let (first, last) = (*first, *last);
        check_increasing(&headers)?;
        let log_end_offset = self.log_end_offset();
        if first.base_offset < log_end_offset {
            let empty = log_end_offset == self.log_start_offset;
            if !(empty && first.last_offset() >= log_end_offset) {
                return Err(StorageError::UnexpectedAppendOffset {
                    first_offset: first.base_offset,
                    log_end_offset,
                });
            }
            self.truncate_fully_and_start_at(first.base_offset)?;
        }
        let buf = records.slice(..whole_bytes);
        let first_offset = first.base_offset;
        let last_offset = last.last_offset();
        let max_timestamp = headers
            .iter()
            .map(|(_, h)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.write_epochs_before_append()?;
        self.maybe_roll(
            buf.len() as u64,
            first_offset,
            last_offset,
            max_timestamp,
            now_ms,
        )?;
        let before = self.active().append_state();
        let aborted_before = self.active().shared.with_aborted(<[_]>::len);
        if let Err(e) = self.write_to_active(&buf, &headers, now_ms) {
            self.active().restore_append_state(before);
            if let Err(cut) = self.active().cut_to_stats() {
                tracing::error!(dir = %self.dir.display(), error = %cut, "could not undo a failed follower append; the log refuses writes until reopened");
                self.poison();
            }
            return Err(e);
        }
        // The data is in place: producer state follows it (in memory, cannot fail), then the
        // transaction index and the epoch checkpoint, whose failure leaves memory ahead of the
        // files, so the log is poisoned and a reopen rebuilds both from the batches.
        let latest_epoch_before = self.epochs.entries().last().copied();
        let mut aborted = Vec::new();
        for (position, header) in &headers {
            if header.is_control() {
                let marker = batch_at(&buf, *position, header)
                    .filter(|b| b.len() <= MARKER_BATCH_BYTES_MAX)
                    .and_then(read_marker);
                if let Some((completed, last_stable_offset)) =
                    self.producers.replay_marker(header, marker)
                {
                    if completed.aborted {
                        aborted.push(AbortedTxn {
                            producer_id: completed.producer_id,
                            first_offset: completed.first_offset,
                            last_offset: completed.last_offset,
                            last_stable_offset,
                        });
                    }
                }
            } else {
                self.producers.replay(header);
            }
        }
        self.publish_producers(None);
        let mut written = Ok(());
        for (i, entry) in aborted.iter().enumerate() {
            written = written.and_then(|()| self.append_txn_index_entry(entry, aborted_before + i));
        }
        for (_, header) in &headers {
            if self.epochs.latest_epoch() != Some(header.partition_leader_epoch) {
                self.epochs
                    .assign(header.partition_leader_epoch, header.base_offset);
            }
        }
        if !self.epochs.is_persisted() {
            written = written.and_then(|()| self.epochs.write());
        }
        if let Err(e) = written {
            tracing::error!(dir = %self.dir.display(), error = %e, "a follower append's index or epoch checkpoint write failed; the log refuses writes until reopened");
            self.poison();
            return Err(e);
        }
        for entry in aborted {
            self.active().shared.push_aborted(entry);
        }
        self.active().publish();
        if self.epochs.entries().last().copied() != latest_epoch_before {
            self.publish_epochs();
        }
        self.validate();
        Ok(Some(AppendOutcome {
            base_offset: first_offset,
            last_offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        }))
    }
}

/// The whole batches at the front of `records`, each checked (`check_stored_batch`), with
/// their positions, and how many bytes they cover. Stops at a trailing partial batch.
fn split_whole_batches(records: &[u8]) -> Result<(usize, Vec<(usize, BatchHeader)>), StorageError> {
    let mut headers = Vec::new();
    let mut position = 0usize;
    while let Some(rest) = records.get(position..) {
        if rest.len() < BATCH_HEADER_LEN {
            break;
        }
        let header = BatchHeader::parse(rest)?;
        if header.batch_length < 0 {
            return Err(BatchError::CorruptMessage("negative batch length").into());
        }
        let Some(batch) = rest.get(..header.size_bytes()) else {
            break;
        };
        let header = check_stored_batch(batch)?;
        let offsets_valid = header.base_offset >= 0
            && header.last_offset_delta >= 0
            && header
                .base_offset
                .checked_add(i64::from(header.last_offset_delta))
                .is_some();
        if !offsets_valid {
            return Err(BatchError::CorruptMessage("batch offsets out of range").into());
        }
        headers.push((position, header));
        position += header.size_bytes();
    }
    Ok((position, headers))
}

/// Each batch starts past the previous one's last offset (Kafka's "Out of order offsets").
fn check_increasing(headers: &[(usize, BatchHeader)]) -> Result<(), StorageError> {
    for pair in headers.windows(2) {
        let (previous, next) = (pair[0].1, pair[1].1);
        if next.base_offset <= previous.last_offset() {
            return Err(StorageError::UnexpectedAppendOffset {
                first_offset: next.base_offset,
                log_end_offset: previous.last_offset() + 1,
            });
        }
    }
    Ok(())
}

/// The bytes of the batch at `position` of `buf` (`split_whole_batches` checked they are there).
fn batch_at<'a>(buf: &'a [u8], position: usize, header: &BatchHeader) -> Option<&'a [u8]> {
    buf.get(position..position.checked_add(header.size_bytes())?)
}
