//! `truncate_to`, `delete_segments_before` and `advance_log_start_offset` against a model of
//! the log (a `Vec` of batches and its offsets and epochs), on the fault-injecting backend so
//! that power losses can be part of a run, plus targeted checks of what the model leaves out.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::io::faulty::FaultyIo;
use runnel_storage::io::LogIo;
use runnel_storage::{FileBudget, LogConfig, OffsetsSnapshot, PartitionLog, StorageError};

mod support;

use support::*;

/// Small segments and dense indexes, so that rolls, cuts inside indexed segments and deletions
/// of several segments happen within a few hundred operations.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, io: &Arc<FaultyIo>) -> PartitionLog {
    let io: Arc<dyn LogIo> = io.clone();
    PartitionLog::open_with_io(dir.to_path_buf(), TOPIC, config(), FileBudget::new(16), io).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    base: i64,
    last: i64,
    /// Timestamp of the first record; record `k` has `base_ts + k`, and timestamps grow with
    /// offsets across the whole run.
    base_ts: i64,
    epoch: i32,
}

/// What the log should hold: every batch still in a segment file (below the log start too),
/// the three offsets, the leader epochs, and how far a power loss would keep the log.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<Batch>,
    log_start: i64,
    hw: i64,
    leo: i64,
    epochs: Vec<(i32, i64)>,
    /// Log end offset at the last flush or truncation: everything below survives a power loss
    /// (and so does every sealed segment, which its roll fsynced).
    durable_leo: i64,
}

impl Model {
    /// Kafka's `truncateFromStart`, which the log applies when its start moves.
    fn epochs_from_start(&mut self, start: i64) {
        let removed = self.epochs.iter().take_while(|e| e.1 <= start).count();
        if removed > 0 {
            let epoch = self.epochs[removed - 1].0;
            self.epochs.drain(..removed);
            self.epochs.insert(0, (epoch, start));
        }
    }

    fn drop_batches_below(&mut self, base: i64) {
        self.batches.retain(|b| b.base >= base);
    }
}

#[derive(Debug)]
enum Op {
    Append { batches: usize },
    SetHw(i64),
    Truncate(i64),
    DeleteBefore(i64),
    AdvanceStart(i64),
    Flush,
    ProcessCrash,
    CleanRestart,
    PowerLoss,
}

fn between(rng: &mut Xorshift, low: i64, high: i64) -> i64 {
    low + rng.below((high - low + 1).max(1) as u64) as i64
}

fn pick(rng: &mut Xorshift, m: &Model) -> Op {
    match rng.below(100) {
        0..=49 => Op::Append {
            batches: 1 + rng.below(3) as usize,
        },
        50..=59 => Op::SetHw(between(rng, m.hw.max(m.log_start), m.leo)),
        // Mostly near the end, as replication truncates; sometimes anywhere, below the first
        // segment included.
        60..=62 => Op::Truncate(between(rng, m.leo / 2, m.leo + 1)),
        63..=64 => Op::Truncate(between(rng, 0, m.leo + 1)),
        65..=72 => Op::DeleteBefore(between(rng, m.log_start, m.leo + 1)),
        73..=80 => Op::AdvanceStart(between(rng, m.log_start.saturating_sub(1), m.hw + 1)),
        81..=88 => Op::Flush,
        89..=92 => Op::ProcessCrash,
        93..=95 => Op::CleanRestart,
        _ => Op::PowerLoss,
    }
}

/// Segments `i` from the first whose successor starts at or below `limit`: what a deletion
/// before `limit` removes.
fn deletable(bases: &[i64], limit: i64) -> usize {
    bases.windows(2).take_while(|w| w[1] <= limit).count()
}

struct Run {
    rng: Xorshift,
    next_ts: i64,
    epoch: i32,
}

impl Run {
    fn append(&mut self, log: &mut PartitionLog, m: &mut Model, batches: usize) {
        for _ in 0..batches {
            if self.rng.below(20) == 0 {
                self.epoch += 1;
            }
            let records = 1 + self.rng.below(4) as usize;
            let value_bytes = 20 + self.rng.below(100) as usize;
            let base_ts = self.next_ts;
            self.next_ts += 10;
            let out = log
                .append_as_leader(
                    Bytes::from(batch(records, base_ts, value_bytes)),
                    self.epoch,
                    0,
                )
                .unwrap();
            assert_eq!(out.base_offset, m.leo, "appends continue at the log end");
            let b = Batch {
                base: out.base_offset,
                last: out.last_offset,
                base_ts,
                epoch: self.epoch,
            };
            if m.epochs.last().map(|e| e.0) != Some(self.epoch) {
                m.epochs.push((self.epoch, b.base));
            }
            m.batches.push(b);
            m.leo = b.last + 1;
        }
    }
}

/// Applies `op` to the log and the model; returns the log, reopened by the restarts.
fn apply(
    run: &mut Run,
    mut log: PartitionLog,
    m: &mut Model,
    op: &Op,
    dir: &Path,
    io: &Arc<FaultyIo>,
) -> PartitionLog {
    let bases = segment_bases(dir);
    match *op {
        Op::Append { batches } => run.append(&mut log, m, batches),
        Op::SetHw(hw) => {
            log.set_high_watermark(hw);
            m.hw = hw;
        }
        Op::Truncate(target) => {
            log.truncate_to(target).unwrap();
            if target >= m.leo {
                return log;
            }
            if target < bases[0] {
                m.batches.clear();
                m.epochs.clear();
                m.log_start = target;
                m.leo = target;
            } else {
                m.batches.retain(|b| b.last < target);
                m.leo = m.batches.last().map_or(bases[0], |b| b.last + 1);
                m.epochs.retain(|e| e.1 < m.leo);
            }
            m.log_start = m.log_start.min(m.leo);
            m.hw = m.hw.min(m.leo);
            m.durable_leo = m.leo;
        }
        Op::DeleteBefore(offset) => {
            let count = deletable(&bases, offset.min(m.hw));
            assert_eq!(log.delete_segments_before(offset, 0).unwrap(), count);
            if count > 0 {
                m.drop_batches_below(bases[count]);
                m.log_start = m.log_start.max(bases[count]);
                m.epochs_from_start(m.log_start);
            }
        }
        Op::AdvanceStart(offset) => {
            let result = log.advance_log_start_offset(offset, 0);
            if offset <= m.log_start {
                result.unwrap();
            } else if offset > m.hw {
                assert!(
                    matches!(result, Err(StorageError::OffsetOutOfRange { .. })),
                    "{result:?}"
                );
            } else {
                result.unwrap();
                m.drop_batches_below(bases[deletable(&bases, offset)]);
                m.log_start = offset;
                m.epochs_from_start(offset);
            }
        }
        Op::Flush => {
            log.flush().unwrap();
            m.durable_leo = m.leo;
        }
        Op::ProcessCrash | Op::CleanRestart | Op::PowerLoss => {
            if matches!(op, Op::CleanRestart) {
                log.close().unwrap();
                m.durable_leo = m.leo;
            } else {
                drop(log);
            }
            if matches!(op, Op::PowerLoss) {
                io.crash().unwrap();
                // Sealed segments were fsynced by their roll; the active one keeps what a
                // flush or a truncation made durable.
                let survives = m.durable_leo.max(bases[bases.len() - 1]);
                m.batches.retain(|b| b.last < survives);
                if survives < m.log_start {
                    // The log restarts empty at its checkpointed start.
                    m.batches.clear();
                    m.epochs.clear();
                    m.leo = m.log_start;
                } else {
                    m.leo = survives;
                    m.epochs.retain(|e| e.1 < survives);
                }
                m.durable_leo = m.leo;
            }
            log = open(dir, io);
            m.hw = m.log_start;
        }
    }
    log
}

/// Everything a reader can ask agrees with the model.
fn check(log: &PartitionLog, m: &Model, rng: &mut Xorshift, context: &str) {
    assert_eq!(
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset()
        ),
        (m.log_start, m.hw, m.leo),
        "{context}: offsets"
    );
    let snapshot = log.reader().snapshot().unwrap();
    assert_eq!(
        snapshot.offsets(),
        OffsetsSnapshot {
            log_start_offset: m.log_start,
            last_stable_offset: m.hw,
            high_watermark: m.hw,
            log_end_offset: m.leo,
        },
        "{context}: snapshot offsets"
    );
    let epochs: Vec<(i32, i64)> = snapshot
        .epoch_entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect();
    assert_eq!(epochs, m.epochs, "{context}: epochs");
    assert_eq!(
        log.epoch_entries(),
        snapshot.epoch_entries(),
        "{context}: writer and reader epochs"
    );
    let visible: Vec<Batch> = m
        .batches
        .iter()
        .copied()
        .filter(|b| b.last >= m.log_start)
        .collect();
    let as_model = |h: &runnel_protocol::batch::BatchHeader| Batch {
        base: h.base_offset,
        last: h.last_offset(),
        base_ts: h.base_timestamp,
        epoch: h.partition_leader_epoch,
    };
    let all = snapshot
        .read(m.log_start, usize::MAX, m.leo, false)
        .unwrap();
    let read: Vec<Batch> = split(&all).iter().map(as_model).collect();
    assert_eq!(read, visible, "{context}: every batch from the log start");
    if m.log_start > 0 {
        assert!(
            matches!(
                snapshot.read(m.log_start - 1, 1, m.leo, true),
                Err(StorageError::OffsetOutOfRange { .. })
            ),
            "{context}: below the start"
        );
    }
    assert!(matches!(
        snapshot.read(m.leo + 1, 1, m.leo + 1, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let Some(first) = visible.first() else {
        assert!(snapshot
            .read_file_slice(m.log_start, usize::MAX, m.leo, true)
            .unwrap()
            .is_none());
        return;
    };
    let slice = snapshot
        .read_file_slice(m.log_start, usize::MAX, m.leo, true)
        .unwrap()
        .expect("a slice from the log start");
    let bytes = slice.read_to_bytes().unwrap();
    assert_eq!(
        as_model(&runnel_protocol::batch::BatchHeader::parse(&bytes).unwrap()),
        *first,
        "{context}: slice from the log start"
    );
    for _ in 0..3 {
        let offset = between(rng, m.log_start, m.leo - 1);
        let holding = visible
            .iter()
            .find(|b| (b.base..=b.last).contains(&offset))
            .expect("offsets are contiguous");
        let got = split(&snapshot.read(offset, 1, m.leo, true).unwrap());
        assert_eq!(
            got.iter().map(as_model).collect::<Vec<_>>(),
            vec![*holding],
            "{context}: the batch holding {offset}"
        );
        // Timestamps grow with offsets, so a record's own timestamp finds that record.
        let ts = holding.base_ts + (offset - holding.base);
        assert_eq!(
            snapshot
                .offset_for_timestamp(ts)
                .unwrap()
                .map(|t| (t.0, t.1)),
            Some((offset, ts)),
            "{context}: timestamp of {offset}"
        );
    }
    // A timestamp below the log start's record finds the log start, never a deleted record.
    assert_eq!(
        snapshot.offset_for_timestamp(0).unwrap().map(|t| t.0),
        Some(m.log_start),
        "{context}: earliest timestamp"
    );
}

#[test]
fn removing_records_matches_a_model_across_restarts_and_power_loss() {
    // Goal: random appends, truncations (inside segments, at their bases, below the first one),
    // retention, DeleteRecords, flushes, restarts and power losses leave exactly the batches,
    // offsets and epochs a Vec model predicts; every failure names its seed and step.
    const SEEDS: u64 = 12;
    const STEPS: usize = 250;
    for seed in 1..=SEEDS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let io = FaultyIo::new();
        let mut log = open(&dir, &io);
        let mut m = Model::default();
        let mut run = Run {
            rng: Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            next_ts: 1_000,
            epoch: 0,
        };
        let mut check_rng = Xorshift(seed);
        for step in 0..STEPS {
            let op = pick(&mut run.rng, &m);
            let context = format!("seed {seed} step {step} {op:?}");
            log = apply(&mut run, log, &mut m, &op, &dir, &io);
            check(&log, &m, &mut check_rng, &context);
        }
        assert!(
            segment_bases(&dir).len() > 1 || m.leo < 50,
            "seed {seed}: the run rolled segments"
        );
    }
}

#[test]
fn truncation_rebuilds_idempotent_producer_state() {
    // Goal: after a truncation, a retry of a batch that stayed is still a duplicate with its
    // offsets, the sequence continues after the last batch that stayed (a batch cut away may be
    // sent again as new), and one past it is out of order.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io);
    let producer = |seq: i32| Bytes::from(batch_for(2, 1_000 + i64::from(seq), 100, 7, 0, seq));
    let mut offsets = Vec::new();
    for seq in (0..20).step_by(2) {
        let out = log.append_as_leader(producer(seq), 0, 0).unwrap();
        offsets.push((out.base_offset, out.last_offset));
    }
    assert!(segment_bases(&dir).len() > 2, "segments rolled");
    // Keep the batches of sequences 0..=9 (offsets 0..=9).
    log.truncate_to(offsets[5].0).unwrap();
    assert_eq!(log.log_end_offset(), 10);
    let dup = log.append_as_leader(producer(6), 0, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), offsets[3]);
    assert!(matches!(
        log.append_as_leader(producer(12), 0, 0),
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    let again = log.append_as_leader(producer(10), 0, 0).unwrap();
    assert!(!again.duplicate);
    assert_eq!((again.base_offset, again.last_offset), (10, 11));
}

#[test]
fn a_truncation_is_durable_without_a_flush_and_deleted_files_leave_no_trace() {
    // Goal: batches cut away by a truncation never come back after a power loss, later segments
    // stay deleted, and neither `.deleted` files nor stale indexes survive a reopen.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io);
    let mut m = Model::default();
    let mut run = Run {
        rng: Xorshift(99),
        next_ts: 1_000,
        epoch: 0,
    };
    run.append(&mut log, &mut m, 60);
    log.flush().unwrap();
    let bases = segment_bases(&dir);
    assert!(bases.len() >= 4);
    // A batch boundary inside a segment (past its first batch) that is not the first one.
    let (cut, target) = (1..bases.len() - 1)
        .find_map(|i| {
            let inside = m
                .batches
                .iter()
                .find(|b| b.base > bases[i] && b.base < bases[i + 1])?;
            Some((i, inside.base))
        })
        .expect("a sealed segment of two batches or more");
    log.truncate_to(target).unwrap();
    assert_eq!(segment_bases(&dir), bases[..=cut].to_vec());
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".deleted"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(log);
    io.crash().unwrap();
    let log = open(&dir, &io);
    assert_eq!(log.log_end_offset(), target);
    assert_eq!(segment_bases(&dir), bases[..=cut].to_vec());
    let read: Vec<(i64, i64)> = split(&log.read(0, usize::MAX, target, false).unwrap())
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    let kept: Vec<(i64, i64)> = m
        .batches
        .iter()
        .filter(|b| b.last < target)
        .map(|b| (b.base, b.last))
        .collect();
    assert_eq!(read, kept);
}

#[test]
fn a_log_start_past_every_surviving_batch_restarts_the_log_empty_there() {
    // Goal: as Kafka's LogLoader, when a power loss took the batches after a DeleteRecords
    // start offset, the log reopens empty at that start instead of reusing offsets below it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open(&dir, &io);
    // Small batches, all in the first segment.
    for i in 0..3 {
        log.append_as_leader(Bytes::from(batch(1, 1_000 + i, 10)), 0, 0)
            .unwrap();
    }
    log.flush().unwrap();
    let flushed = log.log_end_offset();
    for i in 3..5 {
        log.append_as_leader(Bytes::from(batch(1, 1_000 + i, 10)), 0, 0)
            .unwrap();
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    log.advance_log_start_offset(leo - 1, 0).unwrap();
    assert_eq!(segment_bases(&dir), vec![0], "one segment: nothing deleted");
    drop(log);
    io.crash().unwrap();
    let mut log = open(&dir, &io);
    assert!(flushed < leo - 1);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (leo - 1, leo - 1)
    );
    assert_eq!(segment_bases(&dir), vec![leo - 1]);
    let next = log
        .append_as_leader(Bytes::from(batch(1, 5_000, 10)), 0, 0)
        .unwrap();
    assert_eq!(next.base_offset, leo - 1);
}
