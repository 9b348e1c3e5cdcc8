//! The partition side of transactions: transaction markers (Kafka's control batches holding one
//! `EndTransactionMarker` record) and the aborted-transaction index (`.txnindex`, Kafka's
//! `TransactionIndex` of `AbortedTxn` entries).
//!
//! A marker is written by the transaction coordinator (through `PartitionLog::append_txn_marker`),
//! never by a client; `validate_batches` refuses client control batches as Kafka's `LogValidator`
//! does. An ABORT marker that ends a non-empty transaction adds one entry to the `.txnindex` of
//! the segment it lands in; read_committed fetches answer those entries for the range they read.

use std::path::{Path, PathBuf};

use runnel_protocol::batch::{encode_uncompressed_batch, BatchRecords, BatchSpec, RecordSpec};
use runnel_protocol::compression::DecompressLimits;

use crate::file_names::file_stem;

/// `RecordBatch` attribute bits a marker batch carries: transactional and control.
const ATTR_TRANSACTIONAL_CONTROL: i16 = 0x10 | 0x20;
/// `RecordBatch` attribute bit of LogAppendTime.
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// `ControlRecordTypeSchema` and `EndTxnMarker` are version 0 (the only version).
const CONTROL_SCHEMA_VERSION: i16 = 0;
/// Kafka's `AbortedTxn.CURRENT_VERSION`.
const ABORTED_TXN_VERSION: i16 = 0;
/// Kafka's `AbortedTxn.TOTAL_SIZE`: version (2), producer id (8), first offset (8), last offset
/// (8), last stable offset (8).
pub const ABORTED_TXN_BYTES: usize = 34;
/// A marker batch's records are tiny; reading one never needs more than this (its header is
/// 61 bytes, the record about 20).
pub(crate) const MARKER_BATCH_BYTES_MAX: usize = 4096;

/// Which way a transaction ended (Kafka's `ControlRecordType` ABORT = 0, COMMIT = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Abort,
    Commit,
}

impl TxnResult {
    fn control_type(self) -> i16 {
        match self {
            TxnResult::Abort => 0,
            TxnResult::Commit => 1,
        }
    }
}

/// One transaction marker to write to a partition: what the coordinator's WriteTxnMarkers entry
/// for this partition carries (Kafka's `WritableTxnMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The coordinator's epoch (its `__transaction_state` partition's leader epoch): a marker
    /// from an older coordinator than one seen before for this producer is refused
    /// (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    pub result: TxnResult,
    /// The transaction version the coordinator ran the transaction at: from 2 (KIP-890) a marker
    /// needs an epoch above the producer's current one, except a retry of a marker already
    /// written.
    pub transaction_version: i16,
}

/// A marker read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredMarker {
    pub(crate) result: TxnResult,
    pub(crate) coordinator_epoch: i32,
}

/// One entry of a `.txnindex` (Kafka's `AbortedTxn`): an aborted transaction's producer, its
/// first and last (the ABORT marker's) offsets, and the last stable offset right after the
/// marker, which lets a lookup stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// The 34 bytes Kafka's `AbortedTxn` writes: big-endian version 0, producer id, first
    /// offset, last offset, last stable offset.
    pub fn to_bytes(&self) -> [u8; ABORTED_TXN_BYTES] {
        let mut out = [0u8; ABORTED_TXN_BYTES];
        out[0..2].copy_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// Parses one entry; `None` for a wrong length or an unknown version (Kafka refuses a
    /// version other than 0 with `KafkaException`).
    pub fn from_bytes(bytes: &[u8]) -> Option<AbortedTxn> {
        let bytes: &[u8; ABORTED_TXN_BYTES] = bytes.try_into().ok()?;
        let i64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(b)
        };
        if i16::from_be_bytes([bytes[0], bytes[1]]) != ABORTED_TXN_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// Encodes a list of entries as a `.txnindex` file holds them.
pub(crate) fn encode_index(entries: &[AbortedTxn]) -> Vec<u8> {
    entries.iter().flat_map(AbortedTxn::to_bytes).collect()
}

/// `{base_offset:020}.txnindex`.
pub(crate) fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{}.txnindex", file_stem(base_offset)))
}

/// Kafka's `MemoryRecords.withEndTransactionMarker` for one partition: an uncompressed,
/// transactional control batch of one record whose key is `ControlRecordTypeSchema` v0 (version,
/// type) and value `EndTxnMarker` v0 (version, coordinator epoch), with no sequence. The
/// timestamp is `now_ms`; a LogAppendTime topic gets the attribute bit as Kafka's validator sets
/// it (its max timestamp is `now_ms` either way).
pub(crate) fn marker_batch(
    marker: &TxnMarker,
    base_offset: i64,
    leader_epoch: i32,
    now_ms: i64,
    log_append_time: bool,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_SCHEMA_VERSION.to_be_bytes());
    key.extend_from_slice(&marker.result.control_type().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_SCHEMA_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let attributes = ATTR_TRANSACTIONAL_CONTROL
        | if log_append_time {
            ATTR_LOG_APPEND_TIME
        } else {
            0
        };
    encode_uncompressed_batch(&BatchSpec {
        base_offset,
        partition_leader_epoch: leader_epoch,
        attributes,
        base_timestamp: now_ms,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        base_sequence: runnel_protocol::batch::NO_SEQUENCE,
        records: vec![RecordSpec {
            timestamp_delta: 0,
            key: Some(&key),
            value: Some(&value),
            headers: Vec::new(),
        }],
    })
}

/// Reads the marker of a stored control batch (Kafka's `EndTransactionMarker.deserialize` on
/// its first record). `None` for a control batch that is not a transaction marker (another
/// control type, or no records left after cleaning) or that cannot be read; such a batch ends
/// no transaction, as in Kafka.
pub(crate) fn read_marker(batch: &[u8]) -> Option<StoredMarker> {
    let limits = DecompressLimits::for_max_message_bytes(MARKER_BATCH_BYTES_MAX);
    let records = BatchRecords::open(batch, limits).ok()?;
    let mut first = None;
    records
        .for_each(|record| {
            if first.is_none() {
                first = Some((
                    record.key.map(<[u8]>::to_vec),
                    record.value.map(<[u8]>::to_vec),
                ));
            }
        })
        .ok()?;
    let (Some(key), Some(value)) = first? else {
        return None;
    };
    // Kafka reads the type from a key of at least 4 bytes with a version >= 0, and the value
    // (at least 6 bytes, version >= 0) as version 0 whatever its version.
    let [kv0, kv1, t0, t1, ..] = key[..] else {
        return None;
    };
    let [vv0, vv1, e0, e1, e2, e3, ..] = value[..] else {
        return None;
    };
    if i16::from_be_bytes([kv0, kv1]) < 0 || i16::from_be_bytes([vv0, vv1]) < 0 {
        return None;
    }
    let result = match i16::from_be_bytes([t0, t1]) {
        0 => TxnResult::Abort,
        1 => TxnResult::Commit,
        _ => return None,
    };
    Some(StoredMarker {
        result,
        coordinator_epoch: i32::from_be_bytes([e0, e1, e2, e3]),
    })
}

/// Kafka's `TransactionIndex.collectAbortedTxns` over one segment's entries: those that
/// overlap `[fetch_offset, upper_bound_offset)`, stopping after the first whose last stable
/// offset reaches the upper bound. Returns whether that stop happened (the search is complete
/// and later segments need not be looked at).
pub(crate) fn collect_aborted(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound_offset: i64,
    out: &mut Vec<AbortedTxn>,
) -> bool {
    for entry in entries {
        if entry.last_offset >= fetch_offset && entry.first_offset < upper_bound_offset {
            out.push(*entry);
        }
        if entry.last_stable_offset >= upper_bound_offset {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_txn_round_trips_in_34_bytes() {
        // The entry format is Kafka's: version 0 then four big-endian longs.
        let entry = AbortedTxn {
            producer_id: 0x0102_0304_0506_0708,
            first_offset: 5,
            last_offset: 9,
            last_stable_offset: 10,
        };
        let bytes = entry.to_bytes();
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[26..34], &10i64.to_be_bytes());
        assert_eq!(AbortedTxn::from_bytes(&bytes), Some(entry));
        let mut bad = bytes;
        bad[1] = 1;
        assert_eq!(AbortedTxn::from_bytes(&bad), None);
        assert_eq!(AbortedTxn::from_bytes(&bytes[..33]), None);
    }

    #[test]
    fn marker_batch_reads_back() {
        // A marker batch is a valid stored batch whose record decodes to its type and epoch.
        for result in [TxnResult::Abort, TxnResult::Commit] {
            let marker = TxnMarker {
                producer_id: 7,
                producer_epoch: 3,
                coordinator_epoch: 11,
                result,
                transaction_version: 0,
            };
            let batch = marker_batch(&marker, 42, 2, 1000, false);
            let header = runnel_protocol::batch::check_stored_batch(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(
                (
                    header.base_offset,
                    header.producer_id,
                    header.producer_epoch
                ),
                (42, 7, 3)
            );
            assert_eq!(header.base_sequence, -1);
            assert_eq!(
                read_marker(&batch),
                Some(StoredMarker {
                    result,
                    coordinator_epoch: 11
                })
            );
        }
    }

    #[test]
    fn collect_stops_at_a_complete_entry() {
        // Entries outside the range are skipped; one whose LSO reaches the bound ends the search.
        let e = |first, last, lso| AbortedTxn {
            producer_id: 1,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        };
        let entries = [e(0, 2, 3), e(4, 8, 5), e(6, 10, 20), e(30, 31, 32)];
        let mut out = Vec::new();
        assert!(collect_aborted(&entries, 5, 15, &mut out));
        assert_eq!(out, vec![entries[1], entries[2]]);
    }
}
