//! The whole log against a simple model, on a `compact,delete` log: random sequences of keyed
//! appends (tombstones, compressed batches), high-watermark moves, rolls (small and changing
//! `segment.bytes`), time and size retention passes on a fake clock, DeleteRecords, cleaning
//! rounds (sometimes with an offset map too small to cover the dirty section) and closes,
//! crashes-without-close and reopens.
//!
//! The model is every record appended at or above the log start, with its key, value and
//! timestamp, and for each whether a cleaning round was allowed to remove it. After every step
//! the log and the model agree: the offsets, every readable batch is whole and CRC-valid, offsets
//! strictly increase, every record read is the one appended at that offset, and every record
//! no round was allowed to remove is there. Each retention pass and DeleteRecords is checked
//! against the segments on disk before and after it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::cleaner::{
    clean_once, CleanerSettings, CompactionConfig, OffsetMap, Throttler,
};
use runnel_storage::io::StdIo;
use runnel_storage::{FileBudget, LastShutdown, LogConfig, PartitionLog};

mod support;

use support::{compress, keyed_batch, read_all, segment_bases, Rec, TOPIC};

/// The settings a step may change; the rest are fixed.
#[derive(Debug, Clone, Copy)]
struct Settings {
    segment_bytes: u64,
    retention_ms: i64,
    retention_bytes: i64,
    retention_enabled: bool,
    delete_retention_ms: i64,
}

impl Settings {
    fn config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            index_interval_bytes: 100,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            retention_enabled: self.retention_enabled,
            file_delete_delay_ms: 0,
            compaction: CompactionConfig {
                compact: true,
                delete_retention_ms: self.delete_retention_ms,
                min_cleanable_dirty_ratio: 0.01,
                ..CompactionConfig::default()
            },
            ..LogConfig::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    ts: i64,
    /// A cleaning round was allowed to remove it.
    removable: bool,
    /// The clock of the first cleaning round that ran after it was appended: no round can have
    /// stamped its batch's delete horizon earlier.
    first_clean_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Model {
    /// Every record at or above the log start, by offset.
    records: BTreeMap<i64, Record>,
    log_start: i64,
    hw: i64,
    leo: i64,
}

impl Model {
    /// The log start moved to `offset`: the records below it are gone.
    fn advance_start(&mut self, offset: i64) {
        assert!(
            offset >= self.log_start,
            "log start moved back: {} -> {offset}",
            self.log_start
        );
        assert!(
            offset <= self.hw,
            "log start {offset} past the high watermark {}",
            self.hw
        );
        self.log_start = offset;
        self.records = self.records.split_off(&offset);
    }

    /// A cleaning round at `now` whose offset map covered everything below `end`: a record
    /// below `end` may go if a later record of its key lies below `end`, or if it is a
    /// tombstone whose batch's delete horizon has passed.
    fn cleaned(&mut self, end: i64, now: i64, delete_retention_ms: i64) {
        let mut later_below_end: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (&offset, r) in self.records.range(..end) {
            later_below_end.insert(r.key.clone(), offset);
        }
        for (&offset, r) in self.records.range_mut(..end) {
            let superseded = later_below_end[&r.key] > offset;
            let horizon_passed = r.value.is_none()
                && r.first_clean_ms
                    .is_some_and(|t| now >= t.saturating_add(delete_retention_ms));
            if superseded || horizon_passed {
                r.removable = true;
            }
        }
        for r in self.records.values_mut() {
            r.first_clean_ms.get_or_insert(now);
        }
    }
}

/// Lengths of the `.log` files by base offset.
fn segment_sizes(dir: &Path) -> BTreeMap<i64, i64> {
    segment_bases(dir)
        .into_iter()
        .map(|base| {
            let path = dir.join(format!("{base:020}.log"));
            (base, std::fs::metadata(path).unwrap().len() as i64)
        })
        .collect()
}

fn check(log: &PartitionLog, m: &Model, dir: &Path, step: usize) {
    assert_eq!(
        (
            log.log_start_offset(),
            log.high_watermark(),
            log.log_end_offset()
        ),
        (m.log_start, m.hw, m.leo),
        "step {step}: log start, high watermark, log end"
    );
    let sizes = segment_sizes(dir);
    assert_eq!(
        sizes.values().sum::<i64>(),
        log.size_bytes(),
        "step {step}: size"
    );
    let first_base = *sizes.keys().next().unwrap();
    assert!(
        first_base <= m.log_start,
        "step {step}: first segment {first_base} above the log start {}",
        m.log_start
    );
    // `read_all` checks every batch's CRC and that it parses whole.
    let (records, headers) = read_all(log);
    for pair in headers.windows(2) {
        assert!(
            pair[0].last_offset() < pair[1].base_offset,
            "step {step}: batches out of order: {pair:?}"
        );
    }
    for pair in records.windows(2) {
        assert!(pair[0].0 < pair[1].0, "step {step}: offsets out of order");
    }
    for (offset, key, value) in &records {
        assert!(
            *offset >= m.log_start,
            "step {step}: {offset} below the start"
        );
        let r = m
            .records
            .get(offset)
            .unwrap_or_else(|| panic!("step {step}: record at {offset} was never appended"));
        assert_eq!(
            (key.as_deref(), value.as_deref()),
            (Some(r.key.as_slice()), r.value.as_deref()),
            "step {step}: record at {offset} changed"
        );
    }
    let read: std::collections::BTreeSet<i64> = records.iter().map(|r| r.0).collect();
    for (offset, r) in &m.records {
        assert!(
            r.removable || read.contains(offset),
            "step {step}: record at {offset} ({r:?}) lost"
        );
    }
}

/// The largest timestamp among `records` in `[from, to)`.
fn max_ts_in(records: &BTreeMap<i64, Record>, from: i64, to: i64) -> Option<i64> {
    records.range(from..to).map(|(_, r)| r.ts).max()
}

/// A retention pass: the log deletes a prefix of its segments, each for a reason Kafka's rules
/// give, none reaching the high watermark, and the log start follows.
fn retention(
    log: &mut PartitionLog,
    m: &mut Model,
    dir: &Path,
    s: &Settings,
    now: i64,
    step: usize,
) -> usize {
    let before = segment_sizes(dir);
    let bases: Vec<i64> = before.keys().copied().collect();
    let size_before: i64 = before.values().sum();
    // The records the log holds now (the model's, minus those actually cleaned away).
    let (present, _) = read_all(log);
    let present: BTreeMap<i64, Record> = present
        .into_iter()
        .map(|(o, _, _)| (o, m.records[&o].clone()))
        .collect();
    let deleted = log.delete_old_segments(now).unwrap();
    log.remove_expired_deletions(now).unwrap();
    let after: Vec<i64> = segment_bases(dir);
    let first_kept = after[0];
    assert_eq!(
        bases.iter().filter(|&&b| b < first_kept).count(),
        deleted,
        "step {step}: deleted count {bases:?} -> {after:?}"
    );
    assert_eq!(
        &bases[deleted..],
        if deleted == bases.len() {
            &[][..]
        } else {
            &after[..]
        },
        "step {step}: the segments kept are a suffix"
    );
    if deleted == bases.len() {
        assert_eq!(after, vec![m.leo], "step {step}: rolled at the end");
    }
    let new_start = log.log_start_offset();
    if deleted > 0 {
        assert_eq!(new_start, m.log_start.max(first_kept), "step {step}");
    } else {
        assert_eq!(new_start, m.log_start, "step {step}");
    }
    // Why each deleted segment went.
    let upper = |i: usize| bases.get(i + 1).copied().unwrap_or(m.leo);
    let mut last_for_size = None;
    for (i, &base) in bases.iter().enumerate().take(deleted) {
        assert!(
            upper(i) <= m.hw,
            "step {step}: segment {base} reaching the high watermark {} deleted",
            m.hw
        );
        let start_breached = upper(i) <= m.log_start;
        let expired = s.retention_enabled
            && s.retention_ms >= 0
            && max_ts_in(&present, base, upper(i))
                .is_none_or(|ts| now.saturating_sub(ts) > s.retention_ms);
        if !start_breached && !expired {
            last_for_size = Some(i);
        }
    }
    if let Some(j) = last_for_size {
        let gone: i64 = bases[..=j].iter().map(|b| before[b]).sum();
        let by_size = s.retention_enabled && s.retention_bytes >= 0;
        assert!(
            by_size && size_before - gone >= s.retention_bytes,
            "step {step}: segment {} deleted for no reason ({s:?}, {size_before} B, {gone} B gone)",
            bases[j]
        );
    }
    // The log-start rule leaves no segment wholly below the start.
    if after.len() >= 2 {
        assert!(
            after[1] > new_start,
            "step {step}: {after:?} start {new_start}"
        );
    }
    m.advance_start(new_start);
    deleted
}

fn clean(log: &Mutex<PartitionLog>, map_bytes: usize, now: i64) -> Option<i64> {
    let mut map = OffsetMap::new(map_bytes, 0.9);
    let settings = CleanerSettings {
        io_buffer_bytes: 256,
        ..CleanerSettings::default()
    };
    let stats = clean_once(
        || Some(log.lock().unwrap()),
        &mut map,
        &settings,
        &Throttler::new(f64::MAX),
        now,
        true,
    )
    .unwrap()?;
    assert!(!stats.aborted);
    Some(stats.end_offset)
}

fn run(seed: u64, steps: usize) -> (usize, usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut rng = Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut s = Settings {
        segment_bytes: 600,
        retention_ms: -1,
        retention_bytes: -1,
        retention_enabled: true,
        delete_retention_ms: [0, 50, 300][rng.below(3) as usize],
    };
    // After a close the log opens as the broker opens it after a clean shutdown (from its
    // indexes and producer snapshot), after a drop as after a crash.
    let open_after = |s: &Settings, last_shutdown| {
        PartitionLog::open_after(
            dir.clone(),
            TOPIC,
            s.config(),
            FileBudget::process_default(),
            Arc::new(StdIo),
            last_shutdown,
        )
        .unwrap()
    };
    let open = |s: &Settings| open_after(s, LastShutdown::Unclean);
    let mut log = Mutex::new(open(&s));
    let mut m = Model::default();
    let mut now = 1_000i64;
    let (mut segments_deleted, mut cleans, mut removed) = (0, 0, 0);
    for step in 0..steps {
        now += rng.below(20) as i64;
        match rng.below(100) {
            0..=44 => {
                let n = 1 + rng.below(4) as usize;
                let records: Vec<Rec> = (0..n)
                    .map(|_| {
                        let key = format!("k{}", rng.below(10)).into_bytes();
                        let value = (rng.below(5) != 0)
                            .then(|| format!("v{}-{step}", rng.below(1000)).into_bytes());
                        (key, value)
                    })
                    .collect();
                let base_ts = now - rng.below(100) as i64;
                let mut batch = keyed_batch(&records, base_ts, -1, -1);
                let codec = rng.below(6) as i16;
                if (1..=4).contains(&codec) {
                    batch = compress(&batch, codec);
                }
                let out = log
                    .get_mut()
                    .unwrap()
                    .append_as_leader(batch, 0, now)
                    .unwrap();
                assert_eq!(out.base_offset, m.leo, "step {step}");
                for (i, (key, value)) in records.into_iter().enumerate() {
                    let record = Record {
                        key,
                        value,
                        ts: base_ts + i as i64,
                        removable: false,
                        first_clean_ms: None,
                    };
                    m.records.insert(out.base_offset + i as i64, record);
                }
                m.leo = out.last_offset + 1;
            }
            45..=56 => {
                m.hw += rng.below((m.leo - m.hw + 1) as u64) as i64;
                if rng.below(3) == 0 {
                    m.hw = m.leo;
                }
                log.get_mut().unwrap().set_high_watermark(m.hw);
            }
            57..=61 => {
                s.segment_bytes = [300, 600, 1_500][rng.below(3) as usize];
                log.get_mut().unwrap().set_config(s.config());
            }
            62..=71 => {
                now += rng.below(300) as i64;
                s.retention_ms = [-1, 0, 100, 500, 2_000][rng.below(5) as usize];
                s.retention_bytes = [-1, 0, 500, 1_500, 4_000][rng.below(5) as usize];
                s.retention_enabled = rng.below(4) != 0;
                let l = log.get_mut().unwrap();
                l.set_config(s.config());
                segments_deleted += retention(l, &mut m, &dir, &s, now, step);
            }
            72..=78 => {
                let offset = m.log_start - 1 + rng.below((m.hw - m.log_start + 3) as u64) as i64;
                let l = log.get_mut().unwrap();
                let bases = segment_bases(&dir);
                let result = l.advance_log_start_offset(offset, now);
                l.remove_expired_deletions(now).unwrap();
                assert_eq!(
                    result.is_err(),
                    offset > m.hw && offset > m.log_start,
                    "step {step}: {result:?}"
                );
                if result.is_ok() && offset > m.log_start {
                    // The segments wholly below the new start go, the active one never.
                    let gone = bases.windows(2).take_while(|w| w[1] <= offset).count();
                    assert_eq!(segment_bases(&dir), bases[gone..], "step {step}");
                    m.advance_start(offset);
                } else {
                    assert_eq!(segment_bases(&dir), bases, "step {step}");
                }
            }
            79..=90 => {
                let map_bytes = if rng.below(2) == 0 {
                    24 * (2 + rng.below(20) as usize)
                } else {
                    1 << 16
                };
                if let Some(end) = clean(&log, map_bytes, now) {
                    assert!(
                        end <= m.leo,
                        "step {step}: cleaned to {end} past the end {}",
                        m.leo
                    );
                    m.cleaned(end, now, s.delete_retention_ms);
                    cleans += 1;
                    let (present, _) = read_all(&log.lock().unwrap());
                    removed += m.records.len() - present.len();
                }
            }
            _ => {
                let l = log.into_inner().unwrap();
                let last_shutdown = if rng.below(3) == 0 {
                    drop(l);
                    LastShutdown::Unclean
                } else {
                    l.close().unwrap();
                    LastShutdown::Clean
                };
                log = Mutex::new(open_after(&s, last_shutdown));
                assert_eq!(
                    log.lock().unwrap().open_stats().from_snapshot,
                    last_shutdown == LastShutdown::Clean,
                    "step {step}: a clean close opens from the snapshot"
                );
                // The broker raises the high watermark again after open.
                m.hw = m.log_start;
            }
        }
        check(&log.lock().unwrap(), &m, &dir, step);
    }
    (segments_deleted, cleans, removed)
}

#[test]
fn random_log_operations_agree_with_the_model() {
    // Goal: whatever the mix of appends, rolls, retention, DeleteRecords, cleaning and
    // reopens, the log keeps every record the model says must stay, shows nothing else, and
    // moves its start only forward, never past the high watermark.
    let (mut deleted, mut cleans, mut removed) = (0, 0, 0);
    for seed in 1..=12u64 {
        let (d, c, r) = run(seed, 500);
        deleted += d;
        cleans += c;
        removed += r;
    }
    // The runs exercised what they claim to.
    assert!(deleted > 20, "only {deleted} segments deleted by retention");
    assert!(cleans > 50, "only {cleans} cleaning rounds");
    assert!(removed > 100, "only {removed} records cleaned away");
}
