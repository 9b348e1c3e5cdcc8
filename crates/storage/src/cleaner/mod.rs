//! Log compaction, after Kafka's `LogCleaner`, `Cleaner`, `LogCleanerManager` and
//! `SkimpyOffsetMap`: keeps the latest record of every key in the sealed segments of a
//! `cleanup.policy=compact` log, removes tombstones once `delete.retention.ms` passed, and swaps
//! the cleaned segments in with Kafka's crash-safe `.cleaned` -> `.swap` -> rename protocol.
//!
//! The pieces:
//! - `offset_map`: the bounded key-hash -> offset map (`log.cleaner.dedupe.buffer.size`).
//! - records are read and the batches a clean keeps written by the protocol crate's
//!   `BatchRecords`, `retain_records` and `empty_batch` (Kafka's `filterTo`).
//! - `round`: one cleaning round of one log, which reads sealed segments through a snapshot of
//!   them without the log's lock and writes `.cleaned` files;
//!   `PartitionLog::replace_segments` (in `log::cleaning`) swaps each group in under the lock.
//! - `checkpoint`: `cleaner-offset-checkpoint`, where the next round's dirty section starts.
//!
//! Scheduling (which log, how often, on which thread) is the broker's: it calls
//! `PartitionLog::cleaning_candidate` on every compacted log, picks the filthiest, and runs a
//! `CleanRound` on it.

mod checkpoint;
mod offset_map;
mod round;

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use offset_map::{OffsetMap, BYTES_PER_ENTRY};
pub(crate) use round::{with_suffix, CLEANED_SUFFIX, SWAP_SUFFIX};
pub use round::{CleanRound, CleanStats, CleanedSegment};

pub(crate) use checkpoint::{
    read as read_checkpoint, write as write_checkpoint, CLEANER_CHECKPOINT_FILE,
};

/// A log's compaction settings: the topic configs of the same names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// `cleanup.policy` contains `compact`.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone stays after the clean that first kept it
    /// (its batch's delete horizon), so that consumers reading from the start see it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this stay uncompacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty records older than this make the log cleanable whatever
    /// its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty bytes / all bytes above which a log is cleaned.
    pub min_cleanable_dirty_ratio: f64,
}

// The ratio is parsed from a validated config string, never NaN, so equality is reflexive.
impl Eq for CompactionConfig {}

impl Default for CompactionConfig {
    /// Kafka's defaults (`cleanup.policy=delete`).
    fn default() -> Self {
        CompactionConfig {
            compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

/// Broker-wide cleaner settings (`log.cleaner.*`), shared by every round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerSettings {
    /// `log.cleaner.dedupe.buffer.size` / `log.cleaner.threads`: each thread's offset map.
    pub dedupe_buffer_bytes_per_thread: usize,
    /// `log.cleaner.io.buffer.load.factor`.
    pub dedupe_load_factor: f64,
    /// `log.cleaner.io.buffer.size`: bytes read from a segment at a time (a larger batch is
    /// read whole, bounded by the segment's size).
    pub io_buffer_bytes: usize,
}

impl Default for CleanerSettings {
    fn default() -> Self {
        CleanerSettings {
            dedupe_buffer_bytes_per_thread: 128 * 1024 * 1024,
            dedupe_load_factor: 0.9,
            io_buffer_bytes: 512 * 1024,
        }
    }
}

/// Kafka's `Throttler` for `log.cleaner.io.max.bytes.per.second`, shared by all cleaner
/// threads: after each chunk of I/O, sleeps as long as the rate since the last check exceeds
/// the limit.
#[derive(Debug)]
pub struct Throttler {
    bytes_per_second_max: Mutex<f64>,
    state: Mutex<(Instant, u64)>,
}

/// How often the throttler compares the observed rate with the limit (Kafka checks every 300ms).
const THROTTLE_CHECK_INTERVAL: Duration = Duration::from_millis(300);

impl Throttler {
    pub fn new(bytes_per_second_max: f64) -> Throttler {
        Throttler {
            bytes_per_second_max: Mutex::new(bytes_per_second_max),
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// A dynamic config change.
    pub fn set_rate(&self, bytes_per_second_max: f64) {
        *self
            .bytes_per_second_max
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = bytes_per_second_max;
    }

    /// Accounts `bytes` of cleaner I/O and sleeps if the rate is over the limit.
    pub fn maybe_throttle(&self, bytes: u64) {
        let rate_max = *self
            .bytes_per_second_max
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !(rate_max.is_finite() && rate_max > 0.0) || rate_max >= f64::MAX / 2.0 {
            return;
        }
        let sleep = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.1 += bytes;
            let elapsed = state.0.elapsed();
            if elapsed < THROTTLE_CHECK_INTERVAL {
                return;
            }
            let rate = state.1 as f64 / elapsed.as_secs_f64();
            let sleep = if rate > rate_max {
                Duration::from_secs_f64(state.1 as f64 / rate_max) - elapsed
            } else {
                Duration::ZERO
            };
            *state = (Instant::now() + sleep, 0);
            sleep
        };
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
    }
}

/// What `PartitionLog::cleaning_candidate` found: Kafka's `LogToClean`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleaningCandidate {
    /// Where the dirty section starts (the checkpoint, clamped to the log).
    pub first_dirty_offset: i64,
    /// Base of the first segment the round may not clean (the active segment, the high
    /// watermark's segment, or the first segment younger than `min.compaction.lag.ms`).
    pub first_uncleanable_offset: i64,
    /// Bytes of the segments below the dirty section and in it.
    pub clean_bytes: u64,
    pub cleanable_bytes: u64,
    /// Dirty records are older than `max.compaction.lag.ms`.
    pub needs_compaction_now: bool,
    /// The checkpoint was outside the log and must be rewritten.
    pub reset_checkpoint: bool,
}

impl CleaningCandidate {
    pub fn total_bytes(&self) -> u64 {
        self.clean_bytes + self.cleanable_bytes
    }

    pub fn cleanable_ratio(&self) -> f64 {
        if self.total_bytes() == 0 {
            return 0.0;
        }
        self.cleanable_bytes as f64 / self.total_bytes() as f64
    }

    /// `grabFilthiestCompactedLog`'s filter.
    pub fn is_cleanable(&self, min_cleanable_dirty_ratio: f64) -> bool {
        self.total_bytes() > 0
            && ((self.needs_compaction_now && self.cleanable_bytes > 0)
                || self.cleanable_ratio() > min_cleanable_dirty_ratio)
    }
}

/// Runs one cleaning round on the log behind `lock` (a closure taking its lock) if it is
/// compacted and, unless `force`, cleanable by its dirty ratio or compaction lag. The lock is
/// held only to plan the round, to swap each cleaned group in and to checkpoint; the reading
/// and writing happen without it. `lock` answers `None` once the log is no longer its
/// partition's (the topic was deleted meanwhile): the round then stops and removes its files.
/// `None` when there was nothing to do.
pub fn clean_once<G: std::ops::DerefMut<Target = crate::PartitionLog>>(
    lock: impl Fn() -> Option<G>,
    map: &mut OffsetMap,
    settings: &CleanerSettings,
    throttler: &Throttler,
    now_ms: i64,
    force: bool,
) -> Result<Option<CleanStats>, crate::StorageError> {
    let round = {
        let Some(log) = lock() else {
            return Ok(None);
        };
        let Some(candidate) = log.cleaning_candidate(now_ms) else {
            return Ok(None);
        };
        if candidate.reset_checkpoint {
            log.checkpoint_cleaned(candidate.first_dirty_offset)?;
        }
        let ratio = log.config().compaction.min_cleanable_dirty_ratio;
        if candidate.cleanable_bytes == 0 || !(force || candidate.is_cleanable(ratio)) {
            return Ok(None);
        }
        log.begin_cleaning(&candidate, now_ms)
    };
    let stats = round.run(
        map,
        settings.io_buffer_bytes,
        throttler,
        |cleaned| match lock() {
            Some(mut log) => log.replace_segments(cleaned),
            None => {
                cleaned.discard();
                Ok(false)
            }
        },
    )?;
    if !stats.aborted {
        if let Some(log) = lock() {
            log.checkpoint_cleaned(stats.end_offset)?;
        }
    }
    Ok(Some(stats))
}
