//! `delete_segments_before` and `advance_log_start_offset` against a model of the log (a `Vec`
//! of batches and its offsets and epochs), on the fault-injecting backend so that power losses
//! can be part of a run, plus targeted checks of what the model leaves out.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::io::faulty::FaultyIo;
use runnel_storage::io::LogIo;
use runnel_storage::{FileBudget, LogConfig, OffsetsSnapshot, PartitionLog, StorageError};

mod support;

use support::*;

/// Small segments and dense indexes, so that rolls and deletions of several segments happen
/// within a few hundred operations.
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
    /// Log end offset at the last flush: everything below survives a power loss (and so does
    /// every sealed segment, which its roll fsynced).
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
        50..=64 => Op::SetHw(between(rng, m.hw.max(m.log_start), m.leo)),
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
        Op::DeleteBefore(offset) => {
            let count = deletable(&bases, offset.min(m.hw));
            assert_eq!(log.delete_segments_before(offset).unwrap(), count);
            if count > 0 {
                m.drop_batches_below(bases[count]);
                m.log_start = m.log_start.max(bases[count]);
                m.epochs_from_start(m.log_start);
            }
        }
        Op::AdvanceStart(offset) => {
            let result = log.advance_log_start_offset(offset);
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
                // flush made durable.
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
    // Goal: random appends, retention, DeleteRecords, flushes, restarts and power losses leave
    // exactly the batches, offsets and epochs a Vec model predicts; every failure names its
    // seed and step.
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
    log.advance_log_start_offset(leo - 1).unwrap();
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
