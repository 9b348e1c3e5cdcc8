//! Sparse offset and time indexes in Kafka's file formats (`OffsetIndex`, `TimeIndex`).
//!
//! `.index` entries: relative offset u32 + file position u32 (big-endian, 8 bytes).
//! `.timeindex` entries: timestamp i64 + relative offset u32 (12 bytes).
//! Kafka preallocates index files to `segment.index.bytes` and trims them at roll; we do not
//! preallocate (the entry count is simply `file length / entry size`), which keeps the formats
//! identical once Kafka would have trimmed. Lookups binary-search the file with positional
//! reads, so no index is held in memory and inactive segments need no open handle.

use std::io;

use crate::io::IoFile;

pub(crate) const OFFSET_ENTRY_BYTES: u64 = 8;
pub(crate) const TIME_ENTRY_BYTES: u64 = 12;

pub(crate) fn offset_entry(relative_offset: u32, position: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&relative_offset.to_be_bytes());
    out[4..].copy_from_slice(&position.to_be_bytes());
    out
}

pub(crate) fn time_entry(timestamp: i64, relative_offset: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..].copy_from_slice(&relative_offset.to_be_bytes());
    out
}

pub(crate) fn read_offset_entry(file: IoFile<'_>, index: u64) -> io::Result<(u32, u32)> {
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf, index * OFFSET_ENTRY_BYTES)?;
    let [a, b, c, d, e, f, g, h] = buf;
    Ok((
        u32::from_be_bytes([a, b, c, d]),
        u32::from_be_bytes([e, f, g, h]),
    ))
}

pub(crate) fn read_time_entry(file: IoFile<'_>, index: u64) -> io::Result<(i64, u32)> {
    let mut buf = [0u8; 12];
    file.read_exact_at(&mut buf, index * TIME_ENTRY_BYTES)?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&buf[..8]);
    let mut rel = [0u8; 4];
    rel.copy_from_slice(&buf[8..]);
    Ok((i64::from_be_bytes(ts), u32::from_be_bytes(rel)))
}

/// Largest entry whose relative offset is <= `relative_target`: the file position to start
/// scanning from (0 when no entry qualifies). Entries are increasing by construction; a
/// position from a damaged index is re-checked by the caller against the segment size.
pub(crate) fn lookup_position(
    file: IoFile<'_>,
    entry_count: u64,
    relative_target: i64,
) -> io::Result<u64> {
    let (mut low, mut high) = (0u64, entry_count);
    let mut found = 0u64;
    while low < high {
        let mid = low + (high - low) / 2;
        let (relative, position) = read_offset_entry(file, mid)?;
        if i64::from(relative) <= relative_target {
            found = u64::from(position);
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(found)
}

/// Relative offset of the largest time-index entry whose timestamp is < `timestamp`: every
/// batch up to that offset is older than `timestamp`, so a search may start there.
pub(crate) fn lookup_time(
    file: IoFile<'_>,
    entry_count: u64,
    timestamp: i64,
) -> io::Result<Option<u32>> {
    let (mut low, mut high) = (0u64, entry_count);
    let mut found = None;
    while low < high {
        let mid = low + (high - low) / 2;
        let (entry_ts, relative) = read_time_entry(file, mid)?;
        if entry_ts < timestamp {
            found = Some(relative);
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(found)
}

/// How many of the first `entry_count` offset-index entries index batches that end before
/// `relative_target` (entries are the batches' last offsets, increasing): the entries a
/// truncation at `relative_target` keeps, as Kafka's `OffsetIndex.truncateTo`.
pub(crate) fn offset_entries_below(
    file: IoFile<'_>,
    entry_count: u64,
    relative_target: i64,
) -> io::Result<u64> {
    first_entry_at_or_past(entry_count, relative_target, |index| {
        Ok(read_offset_entry(file, index)?.0)
    })
}

/// Like `offset_entries_below`, for the time index, whose entries' offsets never decrease
/// (Kafka's `TimeIndex.truncateTo`).
pub(crate) fn time_entries_below(
    file: IoFile<'_>,
    entry_count: u64,
    relative_target: i64,
) -> io::Result<u64> {
    first_entry_at_or_past(entry_count, relative_target, |index| {
        Ok(read_time_entry(file, index)?.1)
    })
}

/// The first of `entry_count` entries whose relative offset (`offset_of`, nondecreasing) is at
/// or past `relative_target`; `entry_count` when none is.
fn first_entry_at_or_past(
    entry_count: u64,
    relative_target: i64,
    offset_of: impl Fn(u64) -> io::Result<u32>,
) -> io::Result<u64> {
    let (mut low, mut high) = (0u64, entry_count);
    while low < high {
        let mid = low + (high - low) / 2;
        if i64::from(offset_of(mid)?) < relative_target {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// Accumulates index entries while batches go by, with Kafka's rule from `LogSegment.append`
/// and `LogSegment.recover`: an entry for a batch once more than `index.interval.bytes` were
/// written since the last entry (so the first batch of a segment is never indexed).
#[derive(Debug, Default, Clone)]
pub(crate) struct IndexBuilder {
    pub(crate) bytes_since_last_entry: u64,
    /// Highest timestamp already in the time index (entries must increase).
    pub(crate) last_time_entry_timestamp: i64,
}

/// What to write for one batch; `None` fields mean no entry.
pub(crate) struct IndexUpdate {
    pub(crate) offset_entry: Option<[u8; 8]>,
    pub(crate) time_entry: Option<[u8; 12]>,
}

impl IndexUpdate {
    /// Appends the update's entries to index files being built in memory.
    pub(crate) fn append_to(&self, offset_entries: &mut Vec<u8>, time_entries: &mut Vec<u8>) {
        if let Some(entry) = self.offset_entry {
            offset_entries.extend_from_slice(&entry);
        }
        if let Some(entry) = self.time_entry {
            time_entries.extend_from_slice(&entry);
        }
    }
}

impl IndexBuilder {
    pub(crate) fn new() -> IndexBuilder {
        IndexBuilder {
            bytes_since_last_entry: 0,
            last_time_entry_timestamp: -1,
        }
    }

    /// Called per batch, after the segment's max timestamp was updated with it.
    pub(crate) fn on_batch(
        &mut self,
        interval_bytes: u32,
        relative_last_offset: u32,
        position: u32,
        batch_size_bytes: u64,
        max_timestamp: i64,
        relative_offset_of_max_timestamp: u32,
    ) -> IndexUpdate {
        let mut update = IndexUpdate {
            offset_entry: None,
            time_entry: None,
        };
        if self.bytes_since_last_entry > u64::from(interval_bytes) {
            update.offset_entry = Some(offset_entry(relative_last_offset, position));
            update.time_entry = self.time_entry(max_timestamp, relative_offset_of_max_timestamp);
            self.bytes_since_last_entry = 0;
        }
        self.bytes_since_last_entry += batch_size_bytes;
        update
    }

    /// Kafka's `TimeIndex.maybeAppend`: only a strictly larger timestamp makes an entry.
    pub(crate) fn time_entry(
        &mut self,
        max_timestamp: i64,
        relative_offset: u32,
    ) -> Option<[u8; 12]> {
        if max_timestamp > self.last_time_entry_timestamp {
            self.last_time_entry_timestamp = max_timestamp;
            Some(time_entry(max_timestamp, relative_offset))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn lookups_find_the_largest_lower_entry() {
        // Binary search over real files returns the floor entry, and 0 / None below the first.
        let dir = tempfile::tempdir().unwrap();
        let mut idx = File::create(dir.path().join("i")).unwrap();
        let mut tix = File::create(dir.path().join("t")).unwrap();
        for i in 0..100u32 {
            idx.write_all(&offset_entry(i * 10 + 5, i * 1000 + 7))
                .unwrap();
            tix.write_all(&time_entry(i64::from(i) * 100 + 50, i * 10 + 5))
                .unwrap();
        }
        let idx = File::open(dir.path().join("i")).unwrap();
        let tix = File::open(dir.path().join("t")).unwrap();
        let (idx, tix) = (IoFile::new(&StdIo, &idx), IoFile::new(&StdIo, &tix));
        assert_eq!(lookup_position(idx, 100, 4).unwrap(), 0);
        assert_eq!(lookup_position(idx, 100, 5).unwrap(), 7);
        assert_eq!(lookup_position(idx, 100, 14).unwrap(), 7);
        assert_eq!(lookup_position(idx, 100, 15).unwrap(), 1007);
        assert_eq!(lookup_position(idx, 100, 10_000).unwrap(), 99_007);
        assert_eq!(lookup_time(tix, 100, 50).unwrap(), None);
        assert_eq!(lookup_time(tix, 100, 51).unwrap(), Some(5));
        assert_eq!(lookup_time(tix, 100, 150).unwrap(), Some(5));
        assert_eq!(lookup_time(tix, 100, i64::MAX).unwrap(), Some(995));
        // Truncation counts: entries whose offset lies below the target.
        assert_eq!(offset_entries_below(idx, 100, 5).unwrap(), 0);
        assert_eq!(offset_entries_below(idx, 100, 6).unwrap(), 1);
        assert_eq!(offset_entries_below(idx, 100, 15).unwrap(), 1);
        assert_eq!(offset_entries_below(idx, 100, 10_000).unwrap(), 100);
        assert_eq!(time_entries_below(tix, 100, 16).unwrap(), 2);
        assert_eq!(time_entries_below(tix, 0, 16).unwrap(), 0);
    }
}
