//! Log compaction: the cleaner against a model of the log (random appends, rolls, cleans and
//! reopens; the latest value of every key and every offset's order must agree), crashes in the
//! middle of a clean on the fault-injecting backend, and targeted checks of Kafka's rules
//! (tombstones and `delete.retention.ms`, producer state, the active segment, keyless records).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use runnel_storage::cleaner::{
    clean_once, CleanerSettings, CompactionConfig, OffsetMap, Throttler,
};
use runnel_storage::io::faulty::{FaultyIo, InjectedError};
use runnel_storage::io::LogIo;
use runnel_storage::{FileBudget, LogConfig, PartitionLog, StorageError};

mod support;

use support::{compress, keyed_batch, read_all, Rec, TOPIC};

fn config(delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        compaction: CompactionConfig {
            compact: true,
            delete_retention_ms,
            min_cleanable_dirty_ratio: 0.01,
            ..CompactionConfig::default()
        },
        ..LogConfig::default()
    }
}

/// The model: every record ever appended, by offset.
#[derive(Default)]
struct Model {
    records: BTreeMap<i64, Rec>,
}

impl Model {
    fn latest(&self) -> BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> {
        let mut latest = BTreeMap::new();
        for (&offset, (k, v)) in &self.records {
            latest.insert(k.clone(), (offset, v.clone()));
        }
        latest
    }

    /// The log agrees with the model: offsets strictly increase, every record is one that was
    /// appended at that offset, every key's latest record with a value is there, and a key
    /// whose latest record is a tombstone shows no older value.
    fn check(&self, log: &PartitionLog) {
        let (records, headers) = read_all(log);
        for pair in headers.windows(2) {
            assert!(
                pair[0].last_offset() < pair[1].base_offset,
                "batches out of order"
            );
        }
        for pair in records.windows(2) {
            assert!(pair[0].0 < pair[1].0, "offsets out of order: {pair:?}");
        }
        for (offset, key, value) in &records {
            let (k, v) = self
                .records
                .get(offset)
                .expect("a record that was never appended");
            assert_eq!(
                (Some(k), v),
                (key.as_ref(), value),
                "record at {offset} changed"
            );
        }
        let mut last_in_log: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
        for (offset, key, value) in &records {
            last_in_log.insert(key.clone().expect("keyed"), (*offset, value.clone()));
        }
        for (key, (offset, value)) in self.latest() {
            match last_in_log.get(&key) {
                Some(found) => assert_eq!(found, &(offset, value), "latest of {key:?}"),
                None => assert!(value.is_none(), "latest value of {key:?} at {offset} lost"),
            }
        }
        assert_eq!(
            log.log_end_offset(),
            self.records.keys().last().map_or(0, |o| o + 1)
        );
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open_with(dir: &Path, io: Arc<dyn LogIo>, config: LogConfig) -> PartitionLog {
    PartitionLog::open_with_io(dir.to_path_buf(), TOPIC, config, FileBudget::new(16), io).unwrap()
}

fn clean(log: &Mutex<PartitionLog>, map_bytes: usize, now_ms: i64) -> Result<(), StorageError> {
    let mut map = OffsetMap::new(map_bytes, 0.9);
    let settings = CleanerSettings {
        io_buffer_bytes: 256,
        ..CleanerSettings::default()
    };
    let throttler = Throttler::new(f64::MAX);
    {
        let mut l = log.lock().unwrap();
        let leo = l.log_end_offset();
        l.set_high_watermark(leo);
    }
    clean_once(
        || Some(log.lock().unwrap()),
        &mut map,
        &settings,
        &throttler,
        now_ms,
        true,
    )?;
    Ok(())
}

fn append_random(rng: &mut Rng, log: &mut PartitionLog, model: &mut Model, now: i64, keys: u64) {
    let n = 1 + rng.below(4) as usize;
    let records: Vec<Rec> = (0..n)
        .map(|_| {
            let key = format!("k{}", rng.below(keys)).into_bytes();
            let value = (rng.below(5) != 0).then(|| format!("v{}", rng.next() % 1000).into_bytes());
            (key, value)
        })
        .collect();
    let mut batch = keyed_batch(&records, now, -1, -1);
    let codec = rng.below(6) as i16;
    if (1..=4).contains(&codec) {
        batch = compress(&batch, codec);
    }
    let out = log.append_as_leader(batch, 0, now).unwrap();
    for (i, r) in records.into_iter().enumerate() {
        model.records.insert(out.base_offset + i as i64, r);
    }
}

#[test]
fn random_appends_cleans_and_reopens_agree_with_the_model() {
    // Whatever the sequence of appends, rolls, cleans (with a map too small for one round to
    // cover the log), time passing tombstone horizons and reopens, the log shows every key's
    // latest value and only records that were appended, in offset order.
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut model = Model::default();
        let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
        let mut log = Mutex::new(open_with(dir.path(), io.clone(), config(50)));
        let mut now = 1_000i64;
        for _ in 0..300 {
            now += rng.below(20) as i64;
            match rng.below(10) {
                0..=5 => append_random(&mut rng, log.get_mut().unwrap(), &mut model, now, 12),
                6 | 7 => {
                    let map_bytes = 24 * (2 + rng.below(40) as usize);
                    clean(&log, map_bytes, now).unwrap();
                    model.check(&log.lock().unwrap());
                }
                8 => {
                    let reopened = {
                        let l = log.into_inner().unwrap();
                        if rng.below(2) == 0 {
                            l.close().unwrap();
                        } else {
                            drop(l);
                        }
                        open_with(dir.path(), io.clone(), config(50))
                    };
                    log = Mutex::new(reopened);
                    model.check(&log.lock().unwrap());
                }
                _ => now += 100,
            }
        }
        model.check(&log.lock().unwrap());
    }
}

#[test]
fn latest_values_stay_and_tombstones_go_after_delete_retention() {
    // Uncompressed, and each codec (compressed batches are rewritten with their own codec).
    for codec in 0..=4 {
        tombstone_case(codec);
    }
}

fn tombstone_case(codec: i16) {
    // Kafka's rules end to end: the first clean keeps a tombstone (stamping its batch's delete
    // horizon), a clean after delete.retention.ms removes it, and the active segment is never
    // touched.
    let dir = tempfile::tempdir().unwrap();
    let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
    let log = Mutex::new(open_with(dir.path(), io, config(1_000)));
    {
        let mut l = log.lock().unwrap();
        for round in 0..20 {
            let recs: Vec<Rec> = (0..3)
                .map(|k| {
                    (
                        format!("k{k}").into_bytes(),
                        Some(format!("v{round}").into_bytes()),
                    )
                })
                .collect();
            l.append_as_leader(
                maybe_compress(keyed_batch(&recs, 100 + round, -1, -1), codec),
                0,
                100,
            )
            .unwrap();
        }
        l.append_as_leader(
            maybe_compress(keyed_batch(&[(b"k0".to_vec(), None)], 200, -1, -1), codec),
            0,
            100,
        )
        .unwrap();
        // Enough to roll the tombstone into a sealed segment.
        for round in 0..10 {
            let recs = vec![(b"other".to_vec(), Some(format!("x{round}").into_bytes()))];
            l.append_as_leader(keyed_batch(&recs, 300, -1, -1), 0, 100)
                .unwrap();
        }
    }
    clean(&log, 1 << 20, 10_000).unwrap();
    let (records, headers) = read_all(&log.lock().unwrap());
    assert!(records
        .iter()
        .any(|r| r.1.as_deref() == Some(b"k0") && r.2.is_none()));
    assert!(
        headers.iter().any(|h| h.attributes & 0x40 != 0),
        "delete horizon stamped"
    );
    let codecs: std::collections::BTreeSet<i16> =
        headers.iter().map(|h| h.attributes & 7).collect();
    assert!(
        codecs.contains(&codec),
        "rewritten batches keep codec {codec}: {codecs:?}"
    );
    let k1: Vec<_> = records
        .iter()
        .filter(|r| r.1.as_deref() == Some(b"k1"))
        .collect();
    assert_eq!(k1.len(), 1, "one k1 left: {k1:?}");
    assert_eq!(k1[0].2.as_deref(), Some(&b"v19"[..]));
    // Before the horizon the tombstone stays; after it, it goes (each round needs new dirty
    // data, as in Kafka).
    let more = |log: &Mutex<PartitionLog>| {
        let mut l = log.lock().unwrap();
        for round in 0..10 {
            let recs = vec![(b"more".to_vec(), Some(format!("m{round}").into_bytes()))];
            l.append_as_leader(keyed_batch(&recs, 400, -1, -1), 0, 100)
                .unwrap();
        }
    };
    more(&log);
    clean(&log, 1 << 20, 10_500).unwrap();
    let (records, _) = read_all(&log.lock().unwrap());
    assert!(records.iter().any(|r| r.1.as_deref() == Some(b"k0")));
    more(&log);
    clean(&log, 1 << 20, 11_001).unwrap();
    let (records, _) = read_all(&log.lock().unwrap());
    assert!(
        !records.iter().any(|r| r.1.as_deref() == Some(b"k0")),
        "{records:?}"
    );
    let l = log.lock().unwrap();
    let (_, headers) = read_all(&l);
    assert_eq!(
        headers.last().unwrap().last_offset(),
        l.log_end_offset() - 1
    );
}

fn maybe_compress(batch: Bytes, codec: i16) -> Bytes {
    if codec == 0 {
        batch
    } else {
        compress(&batch, codec)
    }
}

#[test]
fn an_active_producers_last_batch_keeps_its_header_and_state_survives_reopen() {
    // Kafka's retainLastBatchSequence: an idempotent producer whose last batch's records were
    // all superseded keeps that batch's header, so after a clean and a reopen its next
    // sequence is accepted and a retry of the last batch is still recognised as a duplicate.
    let dir = tempfile::tempdir().unwrap();
    let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
    let log = Mutex::new(open_with(dir.path(), io.clone(), config(0)));
    let producer_batch = keyed_batch(&[(b"a".to_vec(), Some(b"1".to_vec()))], 10, 42, 0);
    {
        let mut l = log.lock().unwrap();
        l.append_as_leader(producer_batch.clone(), 0, 10).unwrap();
        for i in 0..30 {
            let recs = vec![(b"a".to_vec(), Some(format!("{i}").into_bytes()))];
            l.append_as_leader(keyed_batch(&recs, 20, -1, -1), 0, 20)
                .unwrap();
        }
    }
    clean(&log, 1 << 20, 1_000).unwrap();
    let (records, headers) = read_all(&log.lock().unwrap());
    let kept = headers
        .iter()
        .find(|h| h.producer_id == 42)
        .expect("producer's header kept");
    assert_eq!((kept.base_offset, kept.record_count), (0, 0));
    assert!(!records.iter().any(|r| r.0 == 0));
    let log = log.into_inner().unwrap();
    log.close().unwrap();
    let mut log = open_with(dir.path(), io, config(0));
    let retry = log.append_as_leader(producer_batch, 0, 2_000).unwrap();
    assert!(retry.duplicate);
    let next = keyed_batch(&[(b"a".to_vec(), Some(b"2".to_vec()))], 10, 42, 1);
    assert!(!log.append_as_leader(next, 0, 2_000).unwrap().duplicate);
}

#[test]
fn keyless_records_are_refused_by_a_compacted_log() {
    // LogValidator.validateKey: INVALID_RECORD naming each keyless record, Kafka's message.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config(0)).unwrap();
    let err = log
        .append_as_leader(Bytes::from(support::batch(2, 0, 3)), 0, 0)
        .unwrap_err();
    let StorageError::InvalidRecords {
        message,
        record_errors,
        ..
    } = err
    else {
        panic!("{err:?}");
    };
    let one = "Compacted topic cannot accept message without key in topic partition t-0";
    assert_eq!(
        record_errors,
        vec![(0, one.to_owned()), (1, one.to_owned())]
    );
    assert_eq!(
        message,
        format!("One or more records have been rejected due to 2 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=0, message='{one}'), RecordError(batchIndex=1, message='{one}')]")
    );
    assert_eq!(log.log_end_offset(), 0);
    // Records of a compressed batch are read too.
    let zstd = compress(&support::batch(1, 0, 3), 4);
    assert!(matches!(
        log.append_as_leader(zstd, 0, 0),
        Err(StorageError::InvalidRecords { .. })
    ));
    let mut plain = config(0);
    plain.compaction.compact = false;
    log.set_config(plain);
    log.append_as_leader(Bytes::from(support::batch(2, 0, 3)), 0, 0)
        .unwrap();
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".deleted"))
        .collect()
}

/// A log of 60 random batches on `faulty`, flushed, and its model.
fn crash_test_log(dir: &Path, faulty: &Arc<FaultyIo>) -> (PartitionLog, Model) {
    let io: Arc<dyn LogIo> = faulty.clone();
    let mut model = Model::default();
    let mut rng = Rng(77);
    let mut log = open_with(dir, io, config(0));
    for _ in 0..60 {
        append_random(&mut rng, &mut log, &mut model, 1_000, 8);
    }
    log.flush().unwrap();
    (log, model)
}

#[test]
fn a_crash_at_any_point_of_a_clean_recovers_to_a_log_that_agrees_with_the_model() {
    // For every fsync and every write of a cleaning round in turn: that one fails, the
    // machine loses power, and the reopened log (having completed or discarded the swap)
    // still agrees with the model, holds no temporary files, and cleans again.
    let (syncs, writes) = {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultyIo::new();
        let (log, _) = crash_test_log(dir.path(), &faulty);
        let (s, w) = (faulty.syncs(), faulty.writes());
        clean(&Mutex::new(log), 1 << 20, 5_000).unwrap();
        (faulty.syncs() - s, faulty.writes() - w)
    };
    assert!(
        syncs > 3 && writes > 3,
        "a round syncs and writes: {syncs} {writes}"
    );
    let faults = (1..=syncs)
        .map(|n| (true, n))
        .chain((1..=writes).map(|n| (false, n)));
    let (mut completed, mut discarded) = (0, 0);
    for (sync, nth) in faults {
        let dir = tempfile::tempdir().unwrap();
        let faulty = FaultyIo::new();
        let (log, model) = crash_test_log(dir.path(), &faulty);
        let size_before = log.reader().snapshot().unwrap().size_bytes();
        if sync {
            faulty.fail_sync(nth, "", InjectedError::Eio);
        } else {
            faulty.fail_write(nth, "", InjectedError::Eio);
        }
        let log = Mutex::new(log);
        assert!(
            clean(&log, 1 << 20, 5_000).is_err(),
            "fault {sync} {nth} did not fail the round"
        );
        assert_eq!(faulty.armed_faults(), 0);
        drop(log);
        faulty.crash().unwrap();
        let io: Arc<dyn LogIo> = faulty.clone();
        let log = Mutex::new(open_with(dir.path(), io, config(0)));
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        model.check(&log.lock().unwrap());
        let size_after = log
            .lock()
            .unwrap()
            .reader()
            .snapshot()
            .unwrap()
            .size_bytes();
        if size_after < size_before {
            completed += 1;
        } else {
            discarded += 1;
        }
        // The next round (the checkpoint did not move, so the same dirty section) succeeds.
        clean(&log, 1 << 20, 6_000).unwrap();
        model.check(&log.lock().unwrap());
    }
    // Both outcomes happened: swaps recovery completed and swaps it discarded.
    assert!(
        completed > 0 && discarded > 0,
        "{completed} completed, {discarded} discarded"
    );
}

#[test]
fn a_round_whose_log_goes_away_removes_its_files_and_changes_nothing() {
    // The broker's lock closure answers None once the topic was deleted: the cleaned group is
    // not swapped in, its files are removed, and no checkpoint is written.
    let dir = tempfile::tempdir().unwrap();
    let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
    let mut model = Model::default();
    let mut rng = Rng(5);
    let log = Mutex::new(open_with(dir.path(), io, config(0)));
    for _ in 0..40 {
        append_random(&mut rng, &mut log.lock().unwrap(), &mut model, 1_000, 4);
    }
    let (before, _) = read_all(&log.lock().unwrap());
    {
        let mut l = log.lock().unwrap();
        let leo = l.log_end_offset();
        l.set_high_watermark(leo);
    }
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let mut map = OffsetMap::new(1 << 20, 0.9);
    let stats = clean_once(
        || {
            (calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0)
                .then(|| log.lock().unwrap())
        },
        &mut map,
        &CleanerSettings::default(),
        &Throttler::new(f64::MAX),
        5_000,
        true,
    )
    .unwrap()
    .expect("a round ran");
    assert!(stats.aborted);
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert!(!dir.path().join("cleaner-offset-checkpoint").exists());
    assert_eq!(read_all(&log.lock().unwrap()).0, before);
}

#[test]
fn open_completes_swaps_and_discards_cleaned_files_whatever_a_crash_left() {
    // The file states a crash can leave at each step of the swap, made by hand: `.cleaned`
    // files go; a complete `.swap` segment replaces the segments it covers; an index `.swap`
    // whose log already took its final name takes its own; the log reads the same each time.
    let dir = tempfile::tempdir().unwrap();
    let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
    let mut model = Model::default();
    let mut rng = Rng(9);
    let mut log = open_with(dir.path(), io.clone(), config(0));
    for _ in 0..40 {
        append_random(&mut rng, &mut log, &mut model, 1_000, 6);
    }
    let expected = read_all(&log).0;
    log.close().unwrap();
    let bases = support::segment_bases(dir.path());
    assert!(bases.len() >= 3, "{bases:?}");
    let path = |base: i64, ext: &str| dir.path().join(format!("{base:020}.{ext}"));
    let copy = |from: &Path, to: &Path| {
        std::fs::copy(from, to).unwrap();
    };
    // 1. Cleaned files of an unfinished round.
    for ext in ["log", "index", "timeindex"] {
        copy(
            &path(bases[0], ext),
            &path(bases[0], &format!("{ext}.cleaned")),
        );
    }
    // 2. A complete swap of the second segment alongside the old files it replaces.
    for ext in ["log", "index", "timeindex"] {
        copy(
            &path(bases[1], ext),
            &path(bases[1], &format!("{ext}.swap")),
        );
    }
    let check = |what: &str| {
        let log = open_with(dir.path(), io.clone(), config(0));
        assert_eq!(read_all(&log).0, expected, "{what}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{what}: {:?}",
            leftovers(dir.path())
        );
        log.close().unwrap();
    };
    check("cleaned files and a complete swap");
    // 3. The log took its final name; its indexes are still `.swap` (old ones already gone).
    for ext in ["index", "timeindex"] {
        std::fs::rename(path(bases[1], ext), path(bases[1], &format!("{ext}.swap"))).unwrap();
    }
    check("index swaps of a renamed log");
    // 4. A swap whose group still has cleaned files is discarded.
    copy(&path(bases[0], "log"), &path(bases[0], "log.swap"));
    copy(&path(bases[0], "index"), &path(bases[0], "index.cleaned"));
    check("an incomplete swap");
}

#[test]
fn truncation_below_the_cleaner_checkpoint_brings_it_down() {
    // Kafka's maybeTruncateCheckpoint: after a truncation below the checkpoint, records written
    // again from the truncation point are dirty, and the next round dedupes them.
    let dir = tempfile::tempdir().unwrap();
    let io: Arc<dyn LogIo> = Arc::new(runnel_storage::io::StdIo);
    let mut model = Model::default();
    let mut rng = Rng(21);
    let log = Mutex::new(open_with(dir.path(), io, config(0)));
    for _ in 0..40 {
        append_random(&mut rng, &mut log.lock().unwrap(), &mut model, 1_000, 4);
    }
    clean(&log, 1 << 20, 2_000).unwrap();
    let checkpoint = || {
        std::fs::read_to_string(dir.path().join("cleaner-offset-checkpoint"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let cleaned_to = checkpoint();
    assert!(cleaned_to > 10, "{cleaned_to}");
    log.lock().unwrap().truncate_to(10).unwrap();
    assert_eq!(checkpoint(), 10);
    model.records.retain(|&offset, _| offset < 10);
    let mut l = log.lock().unwrap();
    // A truncation may leave the log shorter than asked (a batch holding the target goes whole).
    let leo = l.log_end_offset();
    model.records.retain(|&offset, _| offset < leo);
    model.check(&l);
    for _ in 0..40 {
        append_random(&mut rng, &mut l, &mut model, 3_000, 4);
    }
    drop(l);
    clean(&log, 1 << 20, 4_000).unwrap();
    model.check(&log.lock().unwrap());
}
