//! The metadata log as the controller sees it: a trait any log (a local file, a Raft quorum)
//! implements, the entries it holds, and their byte encoding. No I/O here: the broker owns the
//! files (and later the network) behind the trait.
//!
//! Encoding: a sequence of frames `length: u32 BE` (payload bytes), `crc32c: u32 BE` (of the
//! payload), payload: one JSON entry `{"offset", "epoch", "record"}`. Metadata changes are rare
//! and small, and a readable log is worth more here than a compact one. Logs written before
//! entries carried offsets hold bare records; they read as consecutive offsets from 0, epoch 0.

use serde::{Deserialize, Serialize};

use super::{MetadataImage, MetadataRecord};
use crate::error::{ClusterError, Result};

/// Largest payload of one metadata frame. A topic with thousands of configs is still far below;
/// anything larger read from disk is corruption, not a record.
pub const METADATA_RECORD_BYTES_MAX: u32 = 1 << 20;

/// Bytes of a frame's length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;

/// One committed record with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log, from 0, one per record, never reused (snapshots keep counting).
    pub offset: i64,
    /// The controller epoch (Raft term) the record was written in: 0 for the single-node
    /// file log, which has no elections.
    pub epoch: i32,
    pub record: MetadataRecord,
}

/// A log of metadata records.
///
/// # Correctness
///
/// `append` returns only once the records are committed: durable on this node (fsynced), and
/// in a replicated log also on a quorum. It returns the offset of the last record, and offsets
/// are consecutive across calls. On error nothing may be assumed committed and the caller must
/// not apply the records; the log may then refuse further appends until reopened (it cannot
/// tell what reached the disk). A committed record is never lost or reordered: reopening
/// yields the latest snapshot and then every record committed after it, in order.
pub trait MetadataLog: Send {
    /// Appends `records` in order and waits until they are committed (see the trait docs).
    fn append(&mut self, records: &[MetadataRecord]) -> Result<i64>;

    /// Offset of the last committed record, -1 when none.
    fn last_offset(&self) -> i64;

    /// Whether enough was appended since the last snapshot that one should be taken.
    fn wants_snapshot(&self) -> bool;

    /// Records `image` (which must include every committed record, `image.offset` being
    /// `last_offset()`) as the new starting point, after which the records it covers may be
    /// dropped.
    fn snapshot(&mut self, image: &MetadataImage) -> Result<()>;
}

/// Appends the frames of `entries` to `out`.
pub fn encode_entries(entries: &[LogEntry], out: &mut Vec<u8>) -> Result<()> {
    for entry in entries {
        let payload = serde_json::to_vec(entry).map_err(|e| ClusterError::InvalidConfig {
            name: "metadata record".into(),
            value: format!("{:?}", entry.record),
            reason: format!("cannot serialize: {e}"),
        })?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= METADATA_RECORD_BYTES_MAX)
            .ok_or_else(|| ClusterError::InvalidConfig {
                name: "metadata record".into(),
                value: format!("{} bytes", payload.len()),
                reason: format!("larger than {METADATA_RECORD_BYTES_MAX} bytes"),
            })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    Ok(())
}

/// What [`decode_entries`] read.
#[derive(Debug, Default)]
pub struct Decoded {
    pub entries: Vec<LogEntry>,
    /// Bytes of the intact prefix: everything after is a torn or corrupt tail.
    pub valid_bytes: usize,
}

/// Reads frames until the end or the first torn or corrupt one (a crash mid-append: the caller
/// truncates it away, since appends are acknowledged only after fsync). A frame whose checksum
/// holds but whose entry does not parse was written by a newer version: that is an error, as
/// truncating it would destroy committed state. Bare records (older logs) get the offset after
/// the previous entry's, starting at `first_offset`.
pub fn decode_entries(bytes: &[u8], first_offset: i64) -> Result<Decoded, String> {
    let mut decoded = Decoded::default();
    let mut next_offset = first_offset;
    let mut position = 0usize;
    while let Some(header) = bytes.get(position..position + FRAME_HEADER_BYTES) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > METADATA_RECORD_BYTES_MAX {
            break;
        }
        let start = position + FRAME_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + len as usize) else {
            break;
        };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let entry = match serde_json::from_slice::<LogEntry>(payload) {
            Ok(entry) => entry,
            Err(_) => match serde_json::from_slice::<MetadataRecord>(payload) {
                Ok(record) => LogEntry {
                    offset: next_offset,
                    epoch: 0,
                    record,
                },
                Err(e) => {
                    return Err(format!(
                        "record at byte {position} has a valid checksum but does not parse \
                         (written by a newer version?): {e}"
                    ))
                }
            },
        };
        next_offset = entry.offset + 1;
        decoded.entries.push(entry);
        position = start + len as usize;
        decoded.valid_bytes = position;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: i64) -> LogEntry {
        LogEntry {
            offset,
            epoch: 0,
            record: MetadataRecord::ProducerIds {
                next_producer_id: offset * 1000,
            },
        }
    }

    // Proves entries round-trip, and a torn, corrupt or hostile-length tail ends the intact
    // prefix without allocating from the length.
    #[test]
    fn frames_round_trip_and_stop_at_a_bad_tail() {
        let mut bytes = Vec::new();
        encode_entries(&[entry(0), entry(1)], &mut bytes).unwrap();
        let whole = bytes.len();
        let decoded = decode_entries(&bytes, 0).unwrap();
        assert_eq!(decoded.entries, vec![entry(0), entry(1)]);
        assert_eq!(decoded.valid_bytes, whole);
        let torn = decode_entries(&bytes[..whole - 3], 0).unwrap();
        assert_eq!(torn.entries, vec![entry(0)]);
        let mut corrupt = bytes.clone();
        corrupt[whole - 2] ^= 0x55;
        assert_eq!(decode_entries(&corrupt, 0).unwrap().entries, vec![entry(0)]);
        let hostile = [0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 1, 2, 3];
        assert_eq!(decode_entries(&hostile, 0).unwrap().valid_bytes, 0);
    }

    // Proves a log written before entries carried offsets (bare records) reads as consecutive
    // offsets, and entries after them continue from there.
    #[test]
    fn bare_records_of_older_logs_get_consecutive_offsets() {
        let mut bytes = Vec::new();
        for n in [1, 2] {
            let payload = serde_json::to_vec(&MetadataRecord::ProducerIds {
                next_producer_id: n,
            })
            .unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        encode_entries(&[entry(2)], &mut bytes).unwrap();
        let offsets: Vec<i64> = decode_entries(&bytes, 0)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.offset)
            .collect();
        assert_eq!(offsets, vec![0, 1, 2]);
    }

    // Proves a frame with a valid checksum that does not parse is an error, not a torn tail.
    #[test]
    fn unparseable_checked_frame_is_an_error() {
        let payload = br#"{"type":"FromTheFuture"}"#;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        bytes.extend_from_slice(payload);
        assert!(decode_entries(&bytes, 0).is_err());
    }
}
