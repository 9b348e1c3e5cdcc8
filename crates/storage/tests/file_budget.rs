//! Many partitions under one small `FileBudget`: descriptors stay capped, evicted handles lose
//! nothing, flush reaches files the budget closed, and a crash with closed handles recovers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use runnel_storage::{FileBudget, LogConfig, PartitionLog};

mod support;

use support::*;

/// `(base_offset, last_offset, max_timestamp)` of every batch appended to one partition. The
/// timestamp encodes partition and sequence, so a batch written to the wrong file shows up.
type Model = Vec<(i64, i64, i64)>;

/// Small segments and dense indexes, so rolls, index entries and sealed-segment reads happen.
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// Descriptors of this process that point into `dir`.
fn fds_under(dir: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn log_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

fn append(log: &mut PartitionLog, model: &mut Model, partition: usize, seq: usize) {
    let n = 1 + seq % 3;
    let base_ts = (partition as i64) * 1_000_000 + (seq as i64) * 10;
    let out = log
        .append_as_leader(Bytes::from(batch(n, base_ts, 40 + seq % 60)), 0, 0)
        .unwrap();
    model.push((out.base_offset, out.last_offset, base_ts + n as i64 - 1));
}

fn read_all(log: &PartitionLog) -> Model {
    split(
        &log.read(0, usize::MAX, log.log_end_offset(), false)
            .unwrap(),
    )
    .iter()
    .map(|h| (h.base_offset, h.last_offset(), h.max_timestamp))
    .collect()
}

/// The batch holding `offset`, read alone, is the model's batch holding it.
fn check_point_read(log: &PartitionLog, model: &Model, offset: i64) {
    let got = split(&log.read(offset, 1, log.log_end_offset(), true).unwrap());
    let want = model
        .iter()
        .find(|(base, last, _)| (*base..=*last).contains(&offset))
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (
            got[0].base_offset,
            got[0].last_offset(),
            got[0].max_timestamp
        ),
        *want
    );
}

fn open_all(root: &Path, count: usize, budget: &Arc<FileBudget>) -> Vec<PartitionLog> {
    (0..count)
        .map(|p| {
            PartitionLog::open_with_budget(
                root.join(format!("t-{p}")),
                TOPIC,
                small_config(),
                Arc::clone(budget),
            )
            .unwrap()
        })
        .collect()
}

fn canonical_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    (dir, root)
}

#[test]
fn three_hundred_partitions_stay_within_a_budget_of_sixteen_files() {
    // Round-robin appends, reads and flushes over 300 logs match the model while at most 16 descriptors (+ transient ones) ever point into their directory.
    const PARTITIONS: usize = 300;
    const BUDGET: usize = 16;
    let (_guard, root) = canonical_tempdir();
    let budget = FileBudget::new(BUDGET);
    let mut logs = open_all(&root, PARTITIONS, &budget);
    let mut models = vec![Model::new(); PARTITIONS];
    let check_fds = |budget: &FileBudget| {
        let stats = budget.stats();
        let fds = fds_under(&root);
        assert!(
            fds <= BUDGET + stats.transient_files,
            "{fds} descriptors open, {stats:?}"
        );
    };
    check_fds(&budget);
    assert_eq!(
        budget.stats().open_files,
        0,
        "open_with_budget opens lazily"
    );
    for round in 0..6 {
        for (p, log) in logs.iter_mut().enumerate() {
            for k in 0..3 {
                append(log, &mut models[p], p, round * 3 + k);
            }
            check_fds(&budget);
        }
        for (p, log) in logs.iter().enumerate() {
            let leo = log.log_end_offset();
            // Alternates between sealed segments (transient handles) and the active one.
            let offset = if (p + round) % 2 == 0 { 0 } else { leo - 1 };
            check_point_read(log, &models[p], offset);
            check_point_read(log, &models[p], (p as i64 * 7 + round as i64) % leo);
            assert_eq!(read_all(log), models[p], "partition {p} round {round}");
            assert!(log.offset_for_timestamp(0).unwrap().is_some());
            check_fds(&budget);
        }
        if round % 2 == 1 {
            for log in &mut logs {
                log.flush().unwrap();
                check_fds(&budget);
            }
        }
    }
    let stats = budget.stats();
    assert_eq!(
        stats.open_files_peak, BUDGET,
        "reached, never passed: {stats:?}"
    );
    assert!(stats.transient_files_peak <= 1, "{stats:?}");
    assert!(
        stats.evictions > 1000,
        "the budget was exercised: {stats:?}"
    );
    assert!(
        logs.iter().all(|log| log_files(log.dir()) > 3),
        "every partition rolled segments"
    );
    for log in logs {
        log.close().unwrap();
    }
    assert_eq!(budget.stats().open_files, 0);
    assert_eq!(fds_under(&root), 0);
}

#[test]
fn flush_reopens_and_fsyncs_files_the_budget_closed() {
    // A flush after eviction reopens exactly the files written since the last flush, and the flushed data survives a crash-style reopen.
    let (_guard, root) = canonical_tempdir();
    let budget = FileBudget::new(3);
    let mut logs = open_all(&root, 2, &budget);
    let (a_dir, b_dir) = (logs[0].dir().to_path_buf(), logs[1].dir().to_path_buf());
    let mut model = Model::new();
    let mut b_model = Model::new();
    // Opening flushes once so that only what follows is pending.
    logs[0].flush().unwrap();
    // Four batches cross the index interval but stay within one 1 KiB segment.
    for seq in 0..4 {
        append(&mut logs[0], &mut model, 0, seq);
    }
    assert!(a_dir.join("00000000000000000000.log").exists());
    assert_eq!(log_files(&a_dir), 1, "no roll");
    assert_eq!(fds_under(&a_dir), 3, "log and both indexes were written");
    // As many batches on b: its log and both indexes are written too (a new log's files
    // start with nothing to fsync, so only written files are reopened).
    for seq in 0..4 {
        append(&mut logs[1], &mut b_model, 1, seq);
    }
    logs[1].flush().unwrap();
    assert_eq!(fds_under(&a_dir), 0, "b's three files evicted a's");
    assert_eq!(fds_under(&b_dir), 3);

    logs[0].flush().unwrap();
    assert_eq!(fds_under(&a_dir), 3, "all three had unsynced writes");
    assert!(fds_under(&b_dir) == 0 && budget.stats().open_files == 3);

    // Nothing written since: a flush after another eviction opens nothing.
    logs[1].read(0, usize::MAX, 1, false).unwrap();
    assert_eq!(
        fds_under(&a_dir),
        1,
        "b's read needed its log and offset index"
    );
    logs[1].flush().unwrap();
    logs[0].flush().unwrap();
    assert_eq!(fds_under(&a_dir), 1);

    drop(logs);
    assert_eq!(fds_under(&root), 0);
    let log = PartitionLog::open_with_budget(a_dir, TOPIC, small_config(), budget).unwrap();
    assert_eq!(read_all(&log), model);
}

#[test]
fn crash_with_evicted_handles_recovers_everything_appended() {
    // Dropping logs without close while most handles were evicted (some never flushed) loses nothing on reopen, and appends continue.
    const PARTITIONS: usize = 40;
    let (_guard, root) = canonical_tempdir();
    let budget = FileBudget::new(5);
    let mut logs = open_all(&root, PARTITIONS, &budget);
    let mut models = vec![Model::new(); PARTITIONS];
    for seq in 0..20 {
        for (p, log) in logs.iter_mut().enumerate() {
            append(log, &mut models[p], p, seq);
            if p % 3 == 0 && seq == 10 {
                log.flush().unwrap();
            }
        }
    }
    assert!(budget.stats().evictions > 0);
    drop(logs);
    assert_eq!(fds_under(&root), 0);
    let budget = FileBudget::new(5);
    let mut logs = open_all(&root, PARTITIONS, &budget);
    for (p, log) in logs.iter_mut().enumerate() {
        assert_eq!(read_all(log), models[p], "partition {p}");
        assert_eq!(log.log_end_offset(), models[p].last().unwrap().1 + 1);
        append(log, &mut models[p], p, 99);
    }
    for (p, log) in logs.iter().enumerate() {
        assert_eq!(read_all(log), models[p], "partition {p} after new appends");
    }
}

#[test]
fn threads_sharing_a_budget_neither_deadlock_nor_lose_data() {
    // Four threads appending, reading and flushing 64 mutex-guarded logs under a budget of 8 finish, match the model and keep the LRU within the budget.
    const PARTITIONS: usize = 64;
    const THREADS: usize = 4;
    const BUDGET: usize = 8;
    let (_guard, root) = canonical_tempdir();
    let budget = FileBudget::new(BUDGET);
    let partitions: Vec<Mutex<(PartitionLog, Model)>> = open_all(&root, PARTITIONS, &budget)
        .into_iter()
        .map(|log| Mutex::new((log, Model::new())))
        .collect();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let partitions = &partitions;
            scope.spawn(move || {
                // A per-thread LCG: deterministic, but the threads interleave differently.
                let mut state = 0x9E37_79B9_u64.wrapping_mul(t as u64 + 1);
                for step in 0..600 {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let p = (state >> 33) as usize % PARTITIONS;
                    let mut guard = partitions[p].lock().unwrap();
                    let (log, model) = &mut *guard;
                    match (state >> 20) % 4 {
                        0 | 1 => append(log, model, p, t * 10_000 + step),
                        2 if !model.is_empty() => {
                            let offset = (state >> 40) as i64 % log.log_end_offset();
                            check_point_read(log, model, offset);
                        }
                        _ => log.flush().unwrap(),
                    }
                }
            });
        }
    });
    for (p, partition) in partitions.iter().enumerate() {
        let (log, model) = &*partition.lock().unwrap();
        assert_eq!(read_all(log), *model, "partition {p}");
    }
    let stats = budget.stats();
    assert!(stats.open_files_peak <= BUDGET.max(THREADS), "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
}
