//! Kafka's producer-state snapshot, `<offset:020>.snapshot`: the idempotent-producer state as of
//! `offset`, so that a log opened after a clean shutdown does not rebuild it by scanning every
//! batch header (Kafka's `ProducerStateManager.writeSnapshot`/`readSnapshot`, format version 1).
//!
//! Layout (big-endian): version `i16` = 1, CRC32C `u32` of everything after it, entry count
//! `i32`, then per producer: id `i64`, epoch `i16`, last sequence `i32`, last offset `i64`,
//! offset delta `i32`, timestamp `i64`, coordinator epoch `i32`, first offset of the ongoing
//! transaction `i64` (-1: none; runnel's producer state has no transactions yet).
//!
//! As in Kafka, a snapshot keeps only each producer's last batch, so after a clean restart a
//! retry matches the last batch only (the header scan of an unclean open keeps five).
//!
//! The log writes one snapshot at `close`, at its log end offset, and trusts it only when the
//! next open is clean and finds the log ending exactly there; anything else (missing, another
//! offset, a bad CRC, an impossible entry) is ignored and the state rebuilt from the batch
//! headers, so a hostile file costs a scan, never a wrong answer.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use runnel_protocol::batch::decrement_sequence;

use crate::io::{read_whole_file, replace_file_unsynced_name, LogIo, WholeFile};
use crate::producer_state::{BatchMetadata, ProducerEntry, ProducerStateManager};
use crate::segment::file_stem;
use crate::StorageError;

pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// `ProducerSnapshot.json`'s only version.
const VERSION: i16 = 1;
/// Version, CRC and entry count.
const HEADER_BYTES: usize = 2 + 4 + 4;
/// Where the CRC-covered bytes start (Kafka's `PRODUCER_ENTRIES_OFFSET`).
const CRC_COVERED_FROM: usize = 2 + 4;
const ENTRY_BYTES: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;
/// Largest snapshot read: about 1.4 million producers. A bigger file is not ours; the state is
/// then rebuilt from the batch headers instead of sizing a buffer from the disk.
pub(crate) const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{}{SNAPSHOT_SUFFIX}", file_stem(offset)))
}

/// The offset in a snapshot file's name, if `name` is one.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The snapshot bytes of `producers`, entries in producer-id order (deterministic files).
pub(crate) fn encode(producers: &ProducerStateManager) -> Vec<u8> {
    let mut entries: Vec<(&i64, &ProducerEntry)> = producers.iter().collect();
    entries.sort_unstable_by_key(|(id, _)| **id);
    let mut out = Vec::with_capacity(HEADER_BYTES + entries.len() * ENTRY_BYTES);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let count = i32::try_from(entries.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (&producer_id, entry) in entries.into_iter().take(count as usize) {
        let last = entry.batches.back();
        out.extend_from_slice(&producer_id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_seq).to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_offset).to_be_bytes());
        let offset_delta = last.map_or(0, |b| {
            i32::try_from(b.last_offset - b.first_offset).unwrap_or(i32::MAX)
        });
        out.extend_from_slice(&offset_delta.to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.timestamp).to_be_bytes());
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.extend_from_slice(&(-1i64).to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[CRC_COVERED_FROM..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads big-endian integers off the front of a slice; `None` once it runs out.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// The producer state in `bytes`; `None` unless they are a whole, CRC-correct version-1
/// snapshot whose every entry is possible.
pub(crate) fn decode(bytes: &[u8]) -> Option<ProducerStateManager> {
    let mut cursor = Cursor(bytes);
    if cursor.i16()? != VERSION {
        return None;
    }
    let crc = u32::from_be_bytes(cursor.take()?);
    if crc32c::crc32c(bytes.get(CRC_COVERED_FROM..)?) != crc {
        return None;
    }
    let count = usize::try_from(cursor.i32()?).ok()?;
    // The length is checked before anything is sized by the count.
    if cursor.0.len() != count.checked_mul(ENTRY_BYTES)? {
        return None;
    }
    let mut producers = ProducerStateManager::default();
    for _ in 0..count {
        let producer_id = cursor.i64()?;
        let epoch = cursor.i16()?;
        let last_seq = cursor.i32()?;
        let last_offset = cursor.i64()?;
        let offset_delta = cursor.i32()?;
        let timestamp = cursor.i64()?;
        let _coordinator_epoch = cursor.i32()?;
        let txn_first_offset = cursor.i64()?;
        if producer_id < 0 || txn_first_offset >= 0 || offset_delta < 0 {
            return None;
        }
        let mut batches = VecDeque::new();
        if last_offset >= 0 {
            let first_offset = last_offset.checked_sub(i64::from(offset_delta))?;
            if first_offset < 0 || last_seq < 0 {
                return None;
            }
            batches.push_back(BatchMetadata {
                first_seq: decrement_sequence(last_seq, offset_delta),
                last_seq,
                first_offset,
                last_offset,
                timestamp,
            });
        }
        if !producers.insert(producer_id, ProducerEntry { epoch, batches }) {
            return None;
        }
    }
    Some(producers)
}

/// The snapshot at `offset`, if there is a valid one; a warning for one that is there but bad.
pub(crate) fn read(io: &dyn LogIo, dir: &Path, offset: i64) -> Option<ProducerStateManager> {
    let path = snapshot_path(dir, offset);
    let bytes = match read_whole_file(io, &path, SNAPSHOT_BYTES_MAX) {
        Ok(WholeFile::Bytes(bytes)) => bytes,
        Ok(WholeFile::Missing) => return None,
        Ok(WholeFile::TooLarge) => {
            tracing::warn!(path = %path.display(), "ignoring an oversized producer snapshot");
            return None;
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable producer snapshot");
            return None;
        }
    };
    let decoded = decode(&bytes);
    if decoded.is_none() {
        tracing::warn!(path = %path.display(), "ignoring a corrupt producer snapshot");
    }
    decoded
}

/// Writes the snapshot at `offset` atomically; its name is durable once the caller fsyncs
/// the directory (`replace_file_unsynced_name`).
pub(crate) fn write(
    io: &dyn LogIo,
    dir: &Path,
    offset: i64,
    producers: &ProducerStateManager,
) -> Result<(), StorageError> {
    replace_file_unsynced_name(io, &snapshot_path(dir, offset), &encode(producers))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ProducerStateManager {
        let mut producers = ProducerStateManager::default();
        let batch = |first_seq, last_seq, first_offset, last_offset| BatchMetadata {
            first_seq,
            last_seq,
            first_offset,
            last_offset,
            timestamp: 1_700_000_000_000,
        };
        assert!(producers.insert(
            7,
            ProducerEntry {
                epoch: 3,
                batches: [batch(0, 4, 10, 14), batch(5, 9, 20, 24)].into(),
            },
        ));
        assert!(producers.insert(
            2,
            ProducerEntry {
                epoch: 0,
                batches: [batch(i32::MAX - 1, 1, 30, 33)].into(),
            },
        ));
        producers
    }

    #[test]
    fn round_trips_the_last_batch_of_every_producer_in_kafka_layout() {
        // Encoding keeps each producer's epoch and last batch (as Kafka's snapshot does), in
        // Kafka's byte layout, and decoding gives that state back.
        let bytes = encode(&state());
        assert_eq!(bytes.len(), HEADER_BYTES + 2 * ENTRY_BYTES);
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(&bytes[6..10], &[0, 0, 0, 2]);
        // First entry is producer 2 (sorted): id, epoch 0, last seq 1, last offset 33, delta 3.
        assert_eq!(&bytes[10..18], &2i64.to_be_bytes());
        assert_eq!(&bytes[20..24], &1i32.to_be_bytes());
        assert_eq!(&bytes[24..32], &33i64.to_be_bytes());
        assert_eq!(&bytes[32..36], &3i32.to_be_bytes());
        let decoded = decode(&bytes).unwrap();
        let seven = decoded.get(7).unwrap();
        assert_eq!(seven.epoch, 3);
        assert_eq!(
            seven.batches.iter().copied().collect::<Vec<_>>(),
            vec![state().get(7).unwrap().batches[1]]
        );
        assert_eq!(decoded.get(2), state().get(2));
    }

    #[test]
    fn refuses_anything_it_did_not_write_whole() {
        // Every truncation, every flipped byte, a wrong version and a lying count read as no
        // snapshot at all (the log then rebuilds the state from the batch headers).
        let bytes = encode(&state());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_none(), "prefix of {len} bytes");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode(&flipped).is_none(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; ENTRY_BYTES]);
        assert!(decode(&longer).is_none());
        assert!(decode(b"garbage that is not a snapshot at all").is_none());
    }

    #[test]
    fn snapshot_names_are_twenty_digit_offsets() {
        // Only Kafka's `<offset:020>.snapshot` names parse.
        let name = snapshot_path(Path::new("/d"), 42);
        assert!(name.ends_with("00000000000000000042.snapshot"));
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot"),
            Some(42)
        );
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot.tmp"),
            None
        );
    }
}
