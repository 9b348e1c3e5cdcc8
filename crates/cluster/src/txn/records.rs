//! Kafka's `__transaction_state` record schemas (`TransactionLogKey.json`,
//! `TransactionLogValue.json`).
//!
//! The key is the record type (0) then `TransactionalId` as an int16-length string. The value
//! is an int16 version, then: v0 (`transaction.version` 0) fixed fields; v1 (`transaction.version`
//! 1 and 2, what a Kafka 4.4 cluster writes) the same fields in the flexible encoding (compact
//! strings and arrays, tagged fields) with `PreviousProducerId` (tag 0), `NextProducerId` (tag
//! 1), `ClientTransactionVersion` (tag 2) and `NextProducerEpoch` (tag 3, never written by
//! Kafka's `valueToBytes`), each written only when it differs from its default.
//!
//! Decoding reads bytes from disk, which are hostile: every read is bounds-checked, no count
//! read from the input sizes an allocation up front, and errors are values.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::metadata::{TxnTransit, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use super::state::TxnState;
use super::TxnError;

/// The record type of every `__transaction_state` key (`CoordinatorRecordType.TRANSACTION_LOG`).
pub const TRANSACTION_LOG_KEY_TYPE: i16 = 0;
/// The newest value version Kafka reads; later ones are skipped on load, as Kafka does.
pub const VALUE_VERSION_MAX: i16 = 1;

/// What one `__transaction_state` record holds, as Kafka's `TransactionLog.read` sorts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRecord {
    /// The metadata of a transactional id (its last epoch is unknown: no version stores it).
    Value(String, TxnTransit),
    /// The transactional id expired.
    Tombstone(String),
    /// A key of another record type: skipped (Kafka warns and ignores it).
    UnknownKeyVersion(i16),
    /// A value of a version Kafka does not read: skipped.
    UnknownValueVersion(i16),
}

/// `TransactionLog.keyToBytes`.
pub fn key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(TRANSACTION_LOG_KEY_TYPE);
    // Transactional ids are request strings, at most i16::MAX bytes (the validator).
    let len = i16::try_from(transactional_id.len()).expect("transactional id over i16::MAX bytes"); // ok: bounded by the request validator
    buf.put_i16(len);
    buf.put_slice(transactional_id.as_bytes());
    buf.freeze()
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Partitions grouped by topic, as the value stores them.
fn by_topic(partitions: &BTreeSet<(String, i32)>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*p),
            _ => out.push((topic.as_str(), vec![*p])),
        }
    }
    out
}

/// `TransactionLog.valueToBytes` at `value_version` (0, or 1 from `transaction.version` 1).
///
/// Partitions are written grouped by topic in name order (Kafka groups them through a hash
/// map, so its order varies; readers treat them as a set). An Empty transaction writes a null
/// partition list.
pub fn value(t: &TxnTransit, value_version: i16) -> Bytes {
    debug_assert!(
        t.state != TxnState::Empty || t.partitions.is_empty(),
        "an Empty transaction has no partitions"
    );
    let flexible = value_version >= 1;
    let mut buf = BytesMut::with_capacity(64 + t.partitions.len() * 8);
    buf.put_i16(value_version);
    buf.put_i64(t.producer_id);
    buf.put_i16(t.producer_epoch);
    buf.put_i32(t.timeout_ms);
    buf.put_i8(t.state.id());
    let groups = (t.state != TxnState::Empty).then(|| by_topic(&t.partitions));
    match (&groups, flexible) {
        (None, false) => buf.put_i32(-1),
        (None, true) => put_uvarint(&mut buf, 0),
        (Some(groups), false) => {
            buf.put_i32(groups.len() as i32);
            for (topic, ps) in groups {
                buf.put_i16(topic.len() as i16);
                buf.put_slice(topic.as_bytes());
                buf.put_i32(ps.len() as i32);
                ps.iter().for_each(|p| buf.put_i32(*p));
            }
        }
        (Some(groups), true) => {
            put_uvarint(&mut buf, groups.len() as u64 + 1);
            for (topic, ps) in groups {
                put_uvarint(&mut buf, topic.len() as u64 + 1);
                buf.put_slice(topic.as_bytes());
                put_uvarint(&mut buf, ps.len() as u64 + 1);
                ps.iter().for_each(|p| buf.put_i32(*p));
                put_uvarint(&mut buf, 0); // no tagged fields
            }
        }
    }
    buf.put_i64(t.last_update_ms);
    buf.put_i64(t.start_ms);
    if flexible {
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if t.prev_producer_id != NO_PRODUCER_ID {
            tags.push((0, t.prev_producer_id.to_be_bytes().to_vec()));
        }
        if t.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, t.next_producer_id.to_be_bytes().to_vec()));
        }
        if t.client_version != 0 {
            tags.push((2, t.client_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut buf, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, data.len() as u64);
            buf.put_slice(&data);
        }
    }
    buf.freeze()
}

/// A bounds-checked reader over hostile bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TxnError> {
        if self.buf.len() < n {
            return Err(TxnError::CorruptRecord(format!(
                "needs {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn i8(&mut self) -> Result<i8, TxnError> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16, TxnError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }
    fn i32(&mut self) -> Result<i32, TxnError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }
    fn i64(&mut self) -> Result<i64, TxnError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }
    fn uvarint(&mut self) -> Result<u64, TxnError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TxnError::CorruptRecord("varint longer than 5 bytes".into()))
    }
    fn str_of(&mut self, len: usize) -> Result<String, TxnError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| TxnError::CorruptRecord("string is not UTF-8".into()))
    }
    fn string(&mut self) -> Result<String, TxnError> {
        let len = self.i16()?;
        if len < 0 {
            return Err(TxnError::CorruptRecord("null string".into()));
        }
        self.str_of(len as usize)
    }
    fn compact_string(&mut self) -> Result<String, TxnError> {
        match self.uvarint()? {
            0 => Err(TxnError::CorruptRecord("null compact string".into())),
            n => self.str_of(n as usize - 1),
        }
    }
    /// A count of elements of at least `min_size` bytes each, checked against what is left.
    fn check_count(&self, count: u64, min_size: usize) -> Result<usize, TxnError> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count.saturating_mul(min_size) > self.buf.len() {
            return Err(TxnError::CorruptRecord(format!(
                "{count} elements cannot fit in {} bytes",
                self.buf.len()
            )));
        }
        Ok(count)
    }
    fn skip_tags(&mut self) -> Result<(), TxnError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(usize::try_from(size).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }
}

/// `TransactionLog.read`: one record of `__transaction_state` (`value` `None` for a
/// tombstone). Unknown key and value versions are results, as Kafka skips them.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, TxnError> {
    let mut k = Reader { buf: key };
    let key_type = k.i16()?;
    if key_type != TRANSACTION_LOG_KEY_TYPE {
        return Ok(TxnRecord::UnknownKeyVersion(key_type));
    }
    let transactional_id = k.string()?;
    let Some(value) = value else {
        return Ok(TxnRecord::Tombstone(transactional_id));
    };
    let mut r = Reader { buf: value };
    let version = r.i16()?;
    if !(0..=VALUE_VERSION_MAX).contains(&version) {
        return Ok(TxnRecord::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = r.i8()?;
    let state = TxnState::from_id(status).ok_or_else(|| {
        TxnError::CorruptRecord(format!(
            "Unknown transaction state id {status} from the transaction status message"
        ))
    })?;
    let mut partitions = BTreeSet::new();
    let topics = if flexible {
        r.uvarint()?.checked_sub(1)
    } else {
        u64::try_from(r.i32()?).ok()
    };
    if let Some(topics) = topics {
        let topics = r.check_count(topics, if flexible { 3 } else { 6 })?;
        for _ in 0..topics {
            let topic = if flexible {
                r.compact_string()?
            } else {
                r.string()?
            };
            let count = if flexible {
                r.uvarint()?
                    .checked_sub(1)
                    .ok_or_else(|| TxnError::CorruptRecord("null partition ids".into()))?
            } else {
                u64::try_from(r.i32()?)
                    .map_err(|_| TxnError::CorruptRecord("null partition ids".into()))?
            };
            let count = r.check_count(count, 4)?;
            for _ in 0..count {
                let p = r.i32()?;
                partitions.insert((topic.clone(), p));
            }
            if flexible {
                r.skip_tags()?;
            }
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut prev_producer_id = NO_PRODUCER_ID;
    let mut next_producer_id = NO_PRODUCER_ID;
    let mut client_version = 0i16;
    if flexible {
        let n = r.uvarint()?;
        for _ in 0..n {
            let tag = r.uvarint()?;
            let size = usize::try_from(r.uvarint()?).unwrap_or(usize::MAX);
            let data = r.take(size)?;
            let mut d = Reader { buf: data };
            match tag {
                0 => prev_producer_id = d.i64()?,
                1 => next_producer_id = d.i64()?,
                2 => client_version = d.i16()?,
                // NextProducerEpoch (3) and later tags: not kept (Kafka's loader ignores 3).
                _ => {}
            }
        }
    }
    // Kafka's reader keeps no partitions for an Empty transaction.
    if state == TxnState::Empty {
        partitions.clear();
    }
    Ok(TxnRecord::Value(
        transactional_id,
        TxnTransit {
            producer_id,
            prev_producer_id,
            next_producer_id,
            producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state,
            partitions,
            start_ms,
            last_update_ms,
            client_version,
        },
    ))
}
