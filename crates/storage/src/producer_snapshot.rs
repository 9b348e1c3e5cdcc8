//! Producer-state snapshots: `{offset:020}.snapshot`, Kafka's `ProducerSnapshot` v1 file
//! (`ProducerStateManager.writeSnapshot`/`readSnapshot`): the producer state as of `offset`
//! (every batch below it applied), so that opening the log replays producer state only from
//! the latest snapshot instead of from the first segment, and keeps what retention removed
//! from the log (an open transaction's first offset, a producer's last sequence).
//!
//! Layout, big-endian: version (int16, 1), CRC (uint32: CRC-32C of everything after it), then
//! the entries as a count (int32) and per producer: producer id (int64), epoch (int16), last
//! sequence (int32), last offset (int64), offset delta (int32), timestamp (int64), coordinator
//! epoch (int32), current transaction's first offset (int64, -1 for none). As in Kafka, a
//! producer keeps only its last batch across a snapshot.
//!
//! Written when a segment rolls (named by the new segment's base offset, and deleted with that
//! segment) and at a clean shutdown (named by the log end offset). An open after a clean
//! shutdown takes the producer state from the one at the log end as it is, ongoing
//! transactions included, and reads no batch (see `recovery`); any other open replays the
//! batches after the latest one. A snapshot that fails its CRC or lies past the recovered log
//! end is deleted at open, and the next older one is used: a hostile file costs a replay, never
//! a wrong answer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runnel_protocol::batch::decrement_sequence;

use crate::file_names::file_stem;
use crate::io::{LogIo, OpenMode};
use crate::producer_state::{BatchMetadata, ProducerEntry};
use crate::StorageError;

/// Kafka's `ProducerSnapshot.HIGHEST_SUPPORTED_VERSION`.
const VERSION: i16 = 1;
/// Version (2) and CRC (4): the CRC covers everything after them.
const ENTRIES_POSITION: usize = 6;
/// One entry: 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8.
const ENTRY_BYTES: usize = 46;
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{}{SNAPSHOT_SUFFIX}", file_stem(offset)))
}

/// The offset a snapshot file name stands for.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The file's bytes for `producers`, entries ordered by producer id.
pub(crate) fn encode(producers: &HashMap<i64, ProducerEntry>) -> Vec<u8> {
    let mut ids: Vec<&i64> = producers.keys().collect();
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ENTRIES_POSITION + 4 + ids.len() * ENTRY_BYTES);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    // A partition's producers are bounded by its batches; the count is an int32 in Kafka's
    // schema, which no real partition approaches.
    let count = i32::try_from(ids.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for &id in ids.iter().take(usize::try_from(count).unwrap_or(0)) {
        let entry = &producers[id];
        let last = entry.batches.back();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_seq).to_be_bytes());
        out.extend_from_slice(&last.map_or(-1, |b| b.last_offset).to_be_bytes());
        let delta = last.map_or(0, |b| {
            i32::try_from(b.last_offset - b.first_offset).unwrap_or(i32::MAX)
        });
        out.extend_from_slice(&delta.to_be_bytes());
        // Kafka's `entry.lastTimestamp()`: the last batch's, or a later marker's.
        out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
        out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[ENTRIES_POSITION..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Parses a snapshot file (Kafka's `readSnapshot`); `Corrupt` for a wrong version, a bad CRC or
/// a length that does not match its count.
pub(crate) fn decode(bytes: &[u8]) -> Result<HashMap<i64, ProducerEntry>, StorageError> {
    let corrupt = |why: &str| StorageError::Corrupt(format!("producer snapshot: {why}"));
    let header: &[u8; ENTRIES_POSITION + 4] = bytes
        .get(..ENTRIES_POSITION + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("shorter than its header"))?;
    let [v0, v1, c0, c1, c2, c3, n0, n1, n2, n3] = *header;
    if i16::from_be_bytes([v0, v1]) != VERSION {
        return Err(corrupt("unknown version"));
    }
    if crc32c::crc32c(&bytes[ENTRIES_POSITION..]) != u32::from_be_bytes([c0, c1, c2, c3]) {
        return Err(corrupt("CRC mismatch"));
    }
    let count = usize::try_from(i32::from_be_bytes([n0, n1, n2, n3]))
        .map_err(|_| corrupt("negative count"))?;
    let body = &bytes[ENTRIES_POSITION + 4..];
    if count.checked_mul(ENTRY_BYTES) != Some(body.len()) {
        return Err(corrupt("length does not match the entry count"));
    }
    let mut producers = HashMap::with_capacity(count);
    for chunk in body.chunks_exact(ENTRY_BYTES) {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let field = &chunk[at..at + n];
            at += n;
            field
        };
        let i64_of = |b: &[u8]| b.try_into().map(i64::from_be_bytes).unwrap_or(-1);
        let i32_of = |b: &[u8]| b.try_into().map(i32::from_be_bytes).unwrap_or(-1);
        let producer_id = i64_of(take(8));
        let epoch = take(2).try_into().map(i16::from_be_bytes).unwrap_or(-1);
        let last_seq = i32_of(take(4));
        let last_offset = i64_of(take(8));
        let offset_delta = i32_of(take(4));
        let timestamp = i64_of(take(8));
        let coordinator_epoch = i32_of(take(4));
        let current_txn_first_offset = i64_of(take(8));
        let mut entry = ProducerEntry {
            epoch,
            coordinator_epoch,
            current_txn_first_offset: (current_txn_first_offset >= 0)
                .then_some(current_txn_first_offset),
            last_timestamp: timestamp,
            ..ProducerEntry::default()
        };
        if last_offset >= 0 {
            // Kafka's `addBatch(epoch, lastSeq, lastOffset, offsetDelta, timestamp)`.
            entry.batches.push_back(BatchMetadata {
                first_seq: decrement_sequence(last_seq, offset_delta.max(0)),
                last_seq,
                first_offset: last_offset - i64::from(offset_delta.max(0)),
                last_offset,
                timestamp,
            });
        }
        producers.insert(producer_id, entry);
    }
    Ok(producers)
}

/// Writes the snapshot of `producers` at `offset`, fsynced. The name's durability comes with
/// the caller's next directory fsync; a snapshot lost to a crash only means a longer replay.
pub(crate) fn write(
    io: &dyn LogIo,
    dir: &Path,
    offset: i64,
    producers: &HashMap<i64, ProducerEntry>,
) -> Result<(), StorageError> {
    let file = io.open(&snapshot_path(dir, offset), OpenMode::Truncate)?;
    io.write_all_at(&file, &encode(producers), 0)?;
    io.sync_data(&file)?;
    Ok(())
}

/// The snapshot offsets found in a directory listing, ascending.
pub(crate) fn offsets_in(names: &[String]) -> Vec<i64> {
    let mut offsets: Vec<i64> = names
        .iter()
        .filter_map(|n| parse_snapshot_name(n))
        .collect();
    offsets.sort_unstable();
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_refuse_corruption() {
        // Kafka's layout: 10-byte header, 46-byte entries; a flipped byte fails the CRC.
        let mut producers = HashMap::new();
        let mut entry = ProducerEntry {
            epoch: 3,
            coordinator_epoch: 7,
            current_txn_first_offset: Some(40),
            last_timestamp: 99,
            ..ProducerEntry::default()
        };
        entry.batches.push_back(BatchMetadata {
            first_seq: 10,
            last_seq: 14,
            first_offset: 40,
            last_offset: 44,
            timestamp: 99,
        });
        producers.insert(5, entry);
        producers.insert(
            6,
            ProducerEntry {
                epoch: 1,
                coordinator_epoch: 2,
                last_timestamp: 5,
                ..ProducerEntry::default()
            },
        );
        let bytes = encode(&producers);
        assert_eq!(bytes.len(), 10 + 2 * ENTRY_BYTES);
        assert_eq!(&bytes[0..2], &[0, 1]);
        assert_eq!(decode(&bytes).unwrap(), producers);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(decode(&bad).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(
            parse_snapshot_name("00000000000000000042.snapshot"),
            Some(42)
        );
        assert_eq!(parse_snapshot_name("42.snapshot"), None);
    }

    #[test]
    fn refuses_anything_it_did_not_write_whole() {
        // Every truncation, every flipped byte, an extra entry and garbage read as no snapshot
        // at all (the log then replays from an older one, or from the start).
        let mut producers = HashMap::new();
        let mut entry = ProducerEntry {
            epoch: 0,
            last_timestamp: 1_700_000_000_000,
            ..ProducerEntry::default()
        };
        entry.batches.push_back(BatchMetadata {
            first_seq: i32::MAX - 1,
            last_seq: 1,
            first_offset: 30,
            last_offset: 33,
            timestamp: 1_700_000_000_000,
        });
        producers.insert(2, entry);
        let bytes = encode(&producers);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            assert!(decode(&flipped).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; ENTRY_BYTES]);
        assert!(decode(&longer).is_err());
        assert!(decode(b"garbage that is not a snapshot at all").is_err());
    }
}
