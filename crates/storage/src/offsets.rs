//! `LogOffsets`: a partition log's start offset, last stable offset, high watermark and end
//! offset, readable
//! without the log's lock (fetch sessions, metrics, ListOffsets answers that need no data).
//!
//! The log is the only writer: it publishes the three offsets together, under its own `&mut`,
//! every time one of them changes. Readers get each offset with one atomic load, or a
//! consistent triple from `snapshot`. The triple is guarded by a sequence counter (a seqlock):
//! three separate loads could mix two publications, and a mix can break
//! `log_start <= high_watermark <= log_end` once offsets also move down (truncation).

use std::hint;
use std::sync::atomic::{fence, AtomicI64, AtomicU64, Ordering};
use std::thread;

/// Spins of a `snapshot` that met a publication in progress before it yields the CPU: a
/// publication is four stores, so only a writer preempted mid-way makes a reader wait longer.
const SNAPSHOT_SPINS_MAX: u32 = 64;

/// The three offsets of one log; see the module docs.
#[derive(Debug)]
pub struct LogOffsets {
    /// Odd while a publication is in progress; bumped twice by each.
    sequence: AtomicU64,
    log_start_offset: AtomicI64,
    last_stable_offset: AtomicI64,
    high_watermark: AtomicI64,
    log_end_offset: AtomicI64,
}

/// One consistent reading of a `LogOffsets`: `log_start_offset <= last_stable_offset <=
/// high_watermark <= log_end_offset` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetsSnapshot {
    pub log_start_offset: i64,
    /// Kafka's LSO: the first offset of the earliest transaction not yet decided (or decided
    /// by a marker the high watermark has not passed), else the high watermark. A
    /// read_committed consumer reads below it.
    pub last_stable_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

impl LogOffsets {
    /// # Panics
    /// If the offsets break `log_start <= hw <= leo` (our bug: they come from the log).
    pub(crate) fn new(log_start_offset: i64, high_watermark: i64, log_end_offset: i64) -> Self {
        assert_chain(log_start_offset, high_watermark, log_end_offset);
        LogOffsets {
            sequence: AtomicU64::new(0),
            log_start_offset: AtomicI64::new(log_start_offset),
            last_stable_offset: AtomicI64::new(high_watermark),
            high_watermark: AtomicI64::new(high_watermark),
            log_end_offset: AtomicI64::new(log_end_offset),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// All three from one publication.
    pub fn snapshot(&self) -> OffsetsSnapshot {
        let mut spins = 0u32;
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before & 1 == 0 {
                let snapshot = OffsetsSnapshot {
                    log_start_offset: self.log_start_offset.load(Ordering::Relaxed),
                    last_stable_offset: self.last_stable_offset.load(Ordering::Relaxed),
                    high_watermark: self.high_watermark.load(Ordering::Relaxed),
                    log_end_offset: self.log_end_offset.load(Ordering::Relaxed),
                };
                // Orders the loads above before the re-check: if the sequence is unchanged,
                // no store of another publication was seen.
                fence(Ordering::Acquire);
                if self.sequence.load(Ordering::Relaxed) == before {
                    return snapshot;
                }
            }
            spins += 1;
            if spins < SNAPSHOT_SPINS_MAX {
                hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }

    /// `publish_all` with no transaction open (LSO = HW), for the tests of this module.
    #[cfg(test)]
    pub(crate) fn publish(&self, log_start_offset: i64, high_watermark: i64, log_end_offset: i64) {
        self.publish_all(
            log_start_offset,
            high_watermark,
            high_watermark,
            log_end_offset,
        );
    }

    /// Publishes new offsets, the last stable offset included. Only the owning log calls this,
    /// one call at a time (it holds `&mut` of itself), so publications never overlap.
    ///
    /// # Panics
    /// If the offsets break `log_start <= lso <= hw <= leo` (our bug: they come from the log).
    pub(crate) fn publish_all(
        &self,
        log_start_offset: i64,
        last_stable_offset: i64,
        high_watermark: i64,
        log_end_offset: i64,
    ) {
        assert_chain(log_start_offset, high_watermark, log_end_offset);
        assert!(
            log_start_offset <= last_stable_offset && last_stable_offset <= high_watermark,
            "log_start {log_start_offset} <= lso {last_stable_offset} <= hw {high_watermark} violated"
        );
        let sequence = self.sequence.load(Ordering::Relaxed);
        debug_assert!(sequence & 1 == 0, "overlapping publications");
        self.sequence.store(sequence + 1, Ordering::Relaxed);
        // Orders the odd sequence before the offsets, so a reader that sees a new offset also
        // sees that a publication started.
        fence(Ordering::Release);
        self.log_start_offset
            .store(log_start_offset, Ordering::Relaxed);
        self.last_stable_offset
            .store(last_stable_offset, Ordering::Relaxed);
        self.high_watermark.store(high_watermark, Ordering::Relaxed);
        self.log_end_offset.store(log_end_offset, Ordering::Relaxed);
        self.sequence.store(sequence + 2, Ordering::Release);
    }
}

fn assert_chain(log_start_offset: i64, high_watermark: i64, log_end_offset: i64) {
    assert!(
        log_start_offset <= high_watermark && high_watermark <= log_end_offset,
        "log_start {log_start_offset} <= hw {high_watermark} <= leo {log_end_offset} violated"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn loads_and_snapshots_return_the_last_publication() {
        // Each getter and the snapshot read what was published last.
        let offsets = LogOffsets::new(0, 0, 0);
        offsets.publish(5, 7, 12);
        assert_eq!(
            (
                offsets.log_start_offset(),
                offsets.high_watermark(),
                offsets.log_end_offset()
            ),
            (5, 7, 12)
        );
        assert_eq!(
            offsets.snapshot(),
            OffsetsSnapshot {
                log_start_offset: 5,
                last_stable_offset: 7,
                high_watermark: 7,
                log_end_offset: 12
            }
        );
    }

    #[test]
    #[should_panic(expected = "log_start 0 <= hw 9 <= leo 8 violated")]
    fn a_high_watermark_past_the_end_asserts() {
        // Publishing offsets that break the chain is our bug and panics.
        LogOffsets::new(0, 0, 8).publish(0, 9, 8);
    }

    #[test]
    fn snapshots_never_mix_two_publications() {
        // Under a writer flipping between two far-apart triples, every snapshot is one of them.
        const PUBLICATIONS: u32 = 200_000;
        let a = (0, 10, 10);
        let b = (20, 30, 40);
        let offsets = Arc::new(LogOffsets::new(a.0, a.1, a.2));
        let done = Arc::new(AtomicBool::new(false));
        // The writer starts once the reader reads: on a loaded machine the reader thread may
        // otherwise first run after every publication is over, and check nothing.
        let started = Arc::new(AtomicBool::new(false));
        let reader = {
            let (offsets, done, started) = (
                Arc::clone(&offsets),
                Arc::clone(&done),
                Arc::clone(&started),
            );
            thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    started.store(true, Ordering::Relaxed);
                    let s = offsets.snapshot();
                    let triple = (s.log_start_offset, s.high_watermark, s.log_end_offset);
                    assert!(triple == a || triple == b, "mixed snapshot {triple:?}");
                    reads += 1;
                }
                reads
            })
        };
        while !started.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        for i in 0..PUBLICATIONS {
            let (start, hw, leo) = if i % 2 == 0 { b } else { a };
            offsets.publish(start, hw, leo);
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
