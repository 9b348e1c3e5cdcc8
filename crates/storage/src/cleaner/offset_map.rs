//! Kafka's `SkimpyOffsetMap`: key hash -> latest offset, in a fixed memory budget.
//!
//! Each entry is a 16-byte hash of the key and an 8-byte offset (Kafka's MD5 digest plus a
//! long: 24 bytes), open-addressed with Kafka's probing. The budget is a named limit
//! (`log.cleaner.dedupe.buffer.size` / `log.cleaner.threads`), never a function of the log:
//! a round maps keys only until the map holds `slots * load_factor` entries, and cleans only up
//! to the offset the map covers; the next round continues from there.
//!
//! Unlike Kafka, the table is not allocated at its full size up front: it starts small and
//! doubles (rehashing) until it reaches the budget's slot count, so a broker whose compacted
//! logs hold few keys (`__consumer_offsets`) does not keep 128 MiB resident for nothing.
//!
//! The hash is two SipHash-1-3 halves with distinct keys (std's `DefaultHasher`, whose keys
//! are fixed), 128 bits as Kafka's MD5: two keys colliding would drop the older one's latest
//! value, so the hash must be wide, not cryptographic.

use std::hash::{Hash, Hasher};

/// Bytes one entry costs: a 16-byte key hash and an 8-byte offset, as in Kafka.
pub const BYTES_PER_ENTRY: usize = 24;
/// Slots the table starts with before growing toward its budget.
const INITIAL_SLOTS: usize = 1024;

/// A bounded map from key hash to the latest offset seen for that key.
#[derive(Debug)]
pub struct OffsetMap {
    /// `(hash, offset)`; a slot is empty when its hash is all zero (as Kafka's check).
    table: Vec<([u8; 16], i64)>,
    /// Slots the memory budget allows; the table never grows past this.
    slots_max: usize,
    /// `log.cleaner.io.buffer.load.factor`: the fill at which the map counts as full.
    load_factor: f64,
    entries: usize,
    /// The latest offset put or declared covered (`update_latest_offset`); -1 when empty.
    latest_offset: i64,
}

fn hash_key(key: &[u8]) -> [u8; 16] {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish().to_be_bytes()
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&half(0x5a));
    out[8..].copy_from_slice(&half(0xa5));
    if out == [0u8; 16] {
        // The all-zero hash marks an empty slot; a key hashing to it shares a neighbour's.
        out[15] = 1;
    }
    out
}

impl OffsetMap {
    /// A map within `memory_bytes` (at least one slot) filling up to `load_factor`.
    pub fn new(memory_bytes: usize, load_factor: f64) -> OffsetMap {
        let slots_max = (memory_bytes / BYTES_PER_ENTRY).max(1);
        OffsetMap {
            table: vec![([0u8; 16], -1); INITIAL_SLOTS.min(slots_max)],
            slots_max,
            load_factor,
            entries: 0,
            latest_offset: -1,
        }
    }

    /// Kafka's `slots()`: the budget's slot count.
    pub fn slots(&self) -> usize {
        self.slots_max
    }

    /// Entries a round may put before the map counts as full (Kafka's `maxDesiredMapSize`).
    pub fn desired_entries_max(&self) -> usize {
        ((self.slots_max as f64) * self.load_factor) as usize
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn is_full(&self) -> bool {
        self.entries >= self.desired_entries_max()
    }

    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    /// Kafka's `updateLatestOffset`: offsets up to here are covered by the map.
    pub fn update_latest_offset(&mut self, offset: i64) {
        self.latest_offset = offset;
    }

    /// Empties the map and shrinks it back to its first size: unlike Kafka, which keeps its
    /// whole buffer between rounds, a thread does not hold the memory one large log needed
    /// while it cleans small ones.
    pub fn clear(&mut self) {
        self.table = vec![([0u8; 16], -1); INITIAL_SLOTS.min(self.slots_max)];
        self.entries = 0;
        self.latest_offset = -1;
    }

    /// Kafka's `positionOf`: the first four hash bytes, then the next four windows, then linear.
    fn position(hash: &[u8; 16], attempt: usize, slots: usize) -> usize {
        let window = attempt.min(12);
        let mut probe = [0u8; 4];
        probe.copy_from_slice(&hash[window..window + 4]);
        let probe = u64::from(u32::from_be_bytes(probe)) + attempt.saturating_sub(12) as u64;
        (probe % slots as u64) as usize
    }

    /// Index of `hash`'s slot, or of the empty slot where it would go; `None` when the table
    /// has no room (only possible when it is completely full).
    fn find(&self, hash: &[u8; 16]) -> Option<usize> {
        let slots = self.table.len();
        for attempt in 0..slots + 12 {
            let at = Self::position(hash, attempt, slots);
            let (h, _) = &self.table[at];
            if h == hash || *h == [0u8; 16] {
                return Some(at);
            }
        }
        None
    }

    /// Kafka's `put`: records `offset` as the latest for `key`.
    ///
    /// # Panics
    /// When the map is already full (`is_full`): callers stop putting before that, as Kafka's
    /// `buildOffsetMapForSegment` does.
    pub fn put(&mut self, key: &[u8], offset: i64) {
        assert!(
            self.entries < self.slots_max,
            "put into a full offset map ({} entries)",
            self.entries
        );
        let hash = hash_key(key);
        if self.entries + 1 > self.table.len() * 9 / 10 && self.table.len() < self.slots_max {
            self.grow();
        }
        let Some(at) = self.find(&hash) else {
            panic!("offset map has no free slot with {} entries", self.entries);
        };
        if self.table[at].0 == [0u8; 16] {
            self.entries += 1;
        }
        self.table[at] = (hash, offset);
        self.latest_offset = offset;
    }

    /// Kafka's `get`: the latest offset put for `key`, -1 when none.
    pub fn get(&self, key: &[u8]) -> i64 {
        let hash = hash_key(key);
        match self.find(&hash) {
            Some(at) if self.table[at].0 == hash => self.table[at].1,
            _ => -1,
        }
    }

    fn grow(&mut self) {
        let slots = (self.table.len() * 2).min(self.slots_max);
        let old = std::mem::replace(&mut self.table, vec![([0u8; 16], -1); slots]);
        for (hash, offset) in old {
            if hash != [0u8; 16] {
                let Some(at) = self.find(&hash) else {
                    panic!("rehash into a larger table found no slot");
                };
                self.table[at] = (hash, offset);
            }
        }
    }

    /// Fraction of the budget's slots in use (Kafka's `utilization`).
    pub fn utilization(&self) -> f64 {
        self.entries as f64 / self.slots_max as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_and_grows_within_its_budget() {
        // Later puts of a key win; the table grows past its first size but never past the
        // slots the memory budget allows.
        let mut map = OffsetMap::new(10_000 * BYTES_PER_ENTRY, 0.9);
        for i in 0..5_000i64 {
            map.put(format!("k{}", i % 3_000).as_bytes(), i);
        }
        assert_eq!(map.len(), 3_000);
        assert_eq!(map.get(b"k0"), 3_000);
        assert_eq!(map.get(b"k2999"), 2_999);
        assert_eq!(map.get(b"absent"), -1);
        assert_eq!(map.latest_offset(), 4_999);
        assert!(map.table.len() <= map.slots());
        map.clear();
        assert_eq!(
            (map.len(), map.get(b"k0"), map.latest_offset()),
            (0, -1, -1)
        );
    }

    #[test]
    fn counts_as_full_at_the_load_factor_of_its_budget() {
        // A 100-slot budget at 0.9 takes 90 distinct keys, then reports full.
        let mut map = OffsetMap::new(100 * BYTES_PER_ENTRY, 0.9);
        let mut put = 0;
        while !map.is_full() {
            map.put(format!("key-{put}").as_bytes(), put);
            put += 1;
        }
        assert_eq!(put, 90);
        for i in 0..90 {
            assert_eq!(map.get(format!("key-{i}").as_bytes()), i);
        }
    }
}
