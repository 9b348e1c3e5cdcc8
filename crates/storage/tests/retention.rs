//! Retention (`delete_old_segments`) and DeleteRecords (`advance_log_start_offset`) against a
//! simple model of the log: a list of segments, each a list of batches with their sizes and
//! timestamps. Random appends, high-watermark moves, retention passes at random clocks and
//! settings, DeleteRecords and reopens; after every step the log's offsets, its segment files
//! and every readable batch agree with the model.

use std::path::Path;

use bytes::Bytes;
use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::io::faulty::{FaultyIo, InjectedError};
use runnel_storage::io::LogIo;
use runnel_storage::{FileBudget, LogConfig, PartitionLog, StorageError};

mod support;

use support::*;

const SEGMENT_BYTES: u64 = 600;

fn config(retention_ms: i64, retention_bytes: i64, retention_enabled: bool) -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        index_interval_bytes: 100,
        retention_ms,
        retention_bytes,
        retention_enabled,
        file_delete_delay_ms: 1_000,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone, Copy)]
struct Batch {
    base: i64,
    last: i64,
    max_ts: i64,
    size: i64,
}

#[derive(Debug, Clone)]
struct Seg {
    base: i64,
    batches: Vec<Batch>,
}

impl Seg {
    fn size(&self) -> i64 {
        self.batches.iter().map(|b| b.size).sum()
    }
    fn max_ts(&self) -> i64 {
        self.batches.iter().map(|b| b.max_ts).max().unwrap_or(-1)
    }
}

#[derive(Debug)]
struct Model {
    segs: Vec<Seg>,
    log_start: i64,
    hw: i64,
    leo: i64,
}

impl Model {
    fn append(&mut self, b: Batch) {
        let active = self.segs.last().unwrap();
        if active.size() > 0 && active.size() as u64 + b.size as u64 > SEGMENT_BYTES {
            self.segs.push(Seg {
                base: b.base,
                batches: vec![],
            });
        }
        self.segs.last_mut().unwrap().batches.push(b);
        self.leo = b.last + 1;
    }

    /// Kafka's rule, written plainly: the longest prefix of segments each below the HW, not
    /// an empty last segment, and satisfying `keep_going`.
    fn delete_prefix(&mut self, mut keep_going: impl FnMut(&Seg, Option<&Seg>) -> bool) -> usize {
        let mut count = 0;
        while count < self.segs.len() {
            let seg = &self.segs[count];
            let next = self.segs.get(count + 1);
            let upper = next.map_or(self.leo, |n| n.base);
            if self.hw < upper || (next.is_none() && seg.size() == 0) || !keep_going(seg, next) {
                break;
            }
            count += 1;
        }
        if count == self.segs.len() {
            self.segs.push(Seg {
                base: self.leo,
                batches: vec![],
            });
        }
        if count > 0 {
            self.segs.drain(..count);
            self.log_start = self.log_start.max(self.segs[0].base);
        }
        count
    }

    fn retention(
        &mut self,
        now: i64,
        retention_ms: i64,
        retention_bytes: i64,
        enabled: bool,
    ) -> usize {
        let start = self.log_start;
        let mut deleted = self.delete_prefix(|_, next| next.is_some_and(|n| n.base <= start));
        if enabled {
            let size: i64 = self.segs.iter().map(Seg::size).sum();
            if retention_bytes >= 0 && size >= retention_bytes {
                let mut excess = size - retention_bytes;
                deleted += self.delete_prefix(|seg, _| {
                    let ok = excess - seg.size() >= 0;
                    if ok {
                        excess -= seg.size();
                    }
                    ok
                });
            }
            if retention_ms >= 0 {
                deleted += self.delete_prefix(|seg, _| now - seg.max_ts() > retention_ms);
            }
        }
        deleted
    }

    fn delete_records(&mut self, offset: i64) {
        if offset <= self.log_start || offset > self.hw {
            return;
        }
        let count = self
            .segs
            .windows(2)
            .take_while(|w| w[1].base <= offset)
            .count();
        self.segs.drain(..count);
        self.log_start = offset;
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir.to_path_buf(), TOPIC, config).unwrap()
}

fn check(log: &PartitionLog, m: &Model, dir: &Path, step: usize) {
    assert_eq!(
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset()
        ),
        (m.log_start, m.hw, m.leo),
        "step {step}: offsets"
    );
    let bases: Vec<i64> = m.segs.iter().map(|s| s.base).collect();
    assert_eq!(segment_bases(dir), bases, "step {step}: segments");
    assert_eq!(
        log.size_bytes(),
        m.segs.iter().map(Seg::size).sum::<i64>(),
        "step {step}: size"
    );
    let read: Vec<(i64, i64)> = split(&log.read(m.log_start, usize::MAX, m.hw, false).unwrap())
        .iter()
        .map(|h| (h.base_offset, h.last_offset()))
        .collect();
    let expected: Vec<(i64, i64)> = m
        .segs
        .iter()
        .flat_map(|s| s.batches.iter())
        .filter(|b| m.log_start < m.hw && b.last >= m.log_start && b.base < m.hw)
        .map(|b| (b.base, b.last))
        .collect();
    assert_eq!(read, expected, "step {step}: readable batches");
}

#[test]
fn retention_and_delete_records_agree_with_a_model() {
    // Goal: every retention pass deletes exactly the segments Kafka's rules name, the log start
    // follows (and survives reopens), and what stays readable is what the model keeps.
    let mut deleted_total = 0;
    for seed in 1..=6u64 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        let mut rng = Xorshift(seed);
        let (mut retention_ms, mut retention_bytes, mut enabled) = (-1, -1, true);
        let mut log = open(&dir, config(retention_ms, retention_bytes, enabled));
        let mut m = Model {
            segs: vec![Seg {
                base: 0,
                batches: vec![],
            }],
            log_start: 0,
            hw: 0,
            leo: 0,
        };
        let mut next_ts = 1_000i64;
        let mut now = 1_000i64;
        for step in 0..300 {
            match rng.below(100) {
                0..=54 => {
                    let records = 1 + rng.below(4) as usize;
                    let bytes = batch(records, next_ts, 20 + rng.below(100) as usize);
                    let size = bytes.len() as i64;
                    let out = log.append_as_leader(Bytes::from(bytes), 0, now).unwrap();
                    m.append(Batch {
                        base: out.base_offset,
                        last: out.last_offset,
                        max_ts: next_ts + records as i64 - 1,
                        size,
                    });
                    next_ts += rng.below(50) as i64;
                    now = now.max(next_ts);
                }
                55..=69 => {
                    let hw = m.hw + rng.below((m.leo - m.hw + 1) as u64) as i64;
                    log.set_high_watermark(hw);
                    m.hw = hw;
                }
                70..=84 => {
                    now += rng.below(200) as i64;
                    retention_ms = [-1, 0, 100, 500, 2_000][rng.below(5) as usize];
                    retention_bytes = [-1, 0, 500, 1_500, 4_000][rng.below(5) as usize];
                    enabled = rng.below(5) != 0;
                    log.set_config(config(retention_ms, retention_bytes, enabled));
                    let expected = m.retention(now, retention_ms, retention_bytes, enabled);
                    assert_eq!(
                        log.delete_old_segments(now).unwrap(),
                        expected,
                        "step {step}"
                    );
                    deleted_total += expected;
                }
                85..=92 => {
                    let offset =
                        m.log_start - 1 + rng.below((m.hw - m.log_start + 3) as u64) as i64;
                    let result = log.advance_log_start_offset(offset, now);
                    assert_eq!(result.is_err(), offset > m.hw, "step {step}: {result:?}");
                    m.delete_records(offset);
                }
                _ => {
                    log.close().unwrap();
                    log = open(&dir, config(retention_ms, retention_bytes, enabled));
                    // The broker raises the HW again after open; the model starts it at the start.
                    m.hw = m.log_start;
                }
            }
            check(&log, &m, &dir, step);
        }
    }
    // The runs did exercise retention.
    assert!(deleted_total > 20, "only {deleted_total} segments deleted");
}

#[test]
fn deleted_files_wait_for_the_file_delete_delay() {
    // Goal: a segment deleted by retention is renamed `.deleted` at once and its files are
    // removed only once `file.delete.delay.ms` has passed.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir, config(-1, -1, true));
    for i in 0..20 {
        log.append_as_leader(Bytes::from(batch(2, 1_000 + i, 100)), 0, 1_000)
            .unwrap();
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let before = segment_bases(&dir);
    assert!(before.len() > 2);
    log.set_config(config(10, -1, true));
    let deleted = log.delete_old_segments(5_000).unwrap();
    // Everything was older than 10 ms: all segments go, after a roll at the log end.
    assert_eq!(deleted, before.len());
    assert_eq!(segment_bases(&dir), vec![leo]);
    assert_eq!(log.log_start_offset(), leo);
    let deleted_files = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".deleted")
            })
            .count()
    };
    // Three files a segment, and the producer snapshot of each segment a roll started.
    let files = before.len() * 3 + before.len() - 1;
    assert_eq!(deleted_files(&dir), files);
    assert_eq!(log.next_removal_due_ms(), Some(6_000));
    log.remove_expired_deletions(5_999).unwrap();
    assert_eq!(deleted_files(&dir), files);
    log.remove_expired_deletions(6_000).unwrap();
    assert_eq!(deleted_files(&dir), 0);
    assert_eq!(log.next_removal_due_ms(), None);
    // The new empty active segment takes appends at the old end, and the start survives a reopen.
    log.close().unwrap();
    let log = open(&dir, config(10, -1, true));
    assert_eq!(log.log_start_offset(), leo);
    assert_eq!(log.log_end_offset(), leo);
}

#[test]
fn nothing_at_or_above_the_high_watermark_goes() {
    // Goal: expired segments holding offsets at or past the high watermark stay, so the log
    // start never passes the high watermark.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir, config(10, -1, true));
    for i in 0..20 {
        log.append_as_leader(Bytes::from(batch(2, 1_000 + i, 100)), 0, 1_000)
            .unwrap();
    }
    let bases = segment_bases(&dir);
    log.set_high_watermark(bases[1]);
    assert_eq!(log.delete_old_segments(100_000).unwrap(), 1);
    assert_eq!(log.log_start_offset(), bases[1]);
    assert_eq!(log.delete_old_segments(100_000).unwrap(), 0);
}

fn open_faulty(dir: &Path, io: &std::sync::Arc<FaultyIo>, config: LogConfig) -> PartitionLog {
    let io: std::sync::Arc<dyn LogIo> = io.clone();
    PartitionLog::open_with_io(dir.to_path_buf(), TOPIC, config, FileBudget::new(16), io).unwrap()
}

#[test]
fn retention_survives_a_power_loss_and_a_failed_checkpoint_deletes_nothing() {
    // Goal: segments deleted by retention stay deleted and the log start holds after a power loss
    // that finds their `.deleted` files still there; a log-start checkpoint that cannot be fsynced
    // poisons the log before anything is deleted, and a reopen finds every segment.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let io = FaultyIo::new();
    let mut log = open_faulty(&dir, &io, config(-1, -1, true));
    for i in 0..20 {
        log.append_as_leader(Bytes::from(batch(2, 1_000 + i, 100)), 0, 1_000)
            .unwrap();
    }
    log.flush().unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let bases = segment_bases(&dir);
    assert!(bases.len() > 3);

    // The checkpoint's fsync fails: poisoned, nothing deleted.
    io.fail_sync(1, "log-start-offset-checkpoint.tmp", InjectedError::Eio);
    log.set_config(config(-1, 1, true));
    assert!(log.delete_old_segments(5_000).is_err());
    assert_eq!(io.armed_faults(), 0, "the fault fired");
    assert!(matches!(
        log.delete_old_segments(5_000),
        Err(StorageError::Poisoned)
    ));
    drop(log);
    io.crash().unwrap();
    let mut log = open_faulty(&dir, &io, config(-1, 1, true));
    assert_eq!(segment_bases(&dir), bases);
    assert_eq!(log.log_start_offset(), 0);

    // Size retention keeps only the active segment; a power loss before the `.deleted` files go.
    log.set_high_watermark(leo);
    let last = *bases.last().unwrap();
    assert_eq!(log.delete_old_segments(5_000).unwrap(), bases.len() - 1);
    assert_eq!(log.log_start_offset(), last);
    drop(log);
    io.crash().unwrap();
    let log = open_faulty(&dir, &io, config(-1, 1, true));
    assert_eq!(segment_bases(&dir), vec![last]);
    assert_eq!(log.log_start_offset(), last);
    assert_eq!(log.log_end_offset(), leo);
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".deleted")
        })
        .count();
    assert_eq!(leftovers, 0, "open removes what retention left");
}
