//! The partition side of transactions: transactional batches, markers, the last stable offset,
//! the aborted-transaction index (`.txnindex`) and the read_committed view, against a model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use runnel_protocol::batch::{
    encode_uncompressed_batch, BatchHeader, BatchRecords, BatchSpec, RecordSpec,
};
use runnel_protocol::compression::DecompressLimits;
use runnel_protocol::fuzzing::{Choices, Xorshift};
use runnel_storage::io::StdIo;
use runnel_storage::{
    AbortedTxn, ActiveProducer, FileBudget, LastShutdown, LogConfig, PartitionLog, StorageError,
    TxnMarker, TxnResult, ABORTED_TXN_BYTES,
};

mod support;

use support::{segment_bases, TOPIC};

const ATTR_TRANSACTIONAL: i16 = 0x10;

/// A batch of `n` records from `pid` at `epoch` starting at `seq`, transactional or not; each
/// key and value is the record's tag so reads can be matched with the model.
fn producer_batch(pid: i64, epoch: i16, seq: i32, tags: &[u64], transactional: bool) -> Vec<u8> {
    let values: Vec<Vec<u8>> = tags.iter().map(|t| t.to_be_bytes().to_vec()).collect();
    encode_uncompressed_batch(&BatchSpec {
        attributes: if transactional { ATTR_TRANSACTIONAL } else { 0 },
        base_timestamp: 1_000,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        records: values
            .iter()
            .map(|v| RecordSpec {
                // Each record its own key, so compaction removes none of them.
                key: Some(v),
                value: Some(v),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
}

fn marker(pid: i64, epoch: i16, coordinator_epoch: i32, result: TxnResult) -> TxnMarker {
    TxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch,
        result,
        transaction_version: 0,
    }
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

/// What a read_committed consumer (Kafka's `CompletedFetch`) delivers from one fetch: the
/// records of `bytes` at or past `fetch_offset`, skipping control batches and the batches of
/// transactions listed in `aborted` (a producer is aborted from the first batch at or past an
/// entry's first offset until its ABORT marker).
fn consume_committed(
    bytes: &[u8],
    fetch_offset: i64,
    aborted: &[AbortedTxn],
    out: &mut Vec<(i64, u64)>,
) {
    let mut pending: Vec<AbortedTxn> = aborted.to_vec();
    pending.sort_by_key(|a| a.first_offset);
    let mut pending = pending.into_iter().peekable();
    let mut aborted_pids = std::collections::HashSet::new();
    let mut pos = 0;
    while pos + 61 <= bytes.len() {
        let h = BatchHeader::parse(&bytes[pos..]).unwrap();
        if pos + h.size_bytes() > bytes.len() {
            break; // a trailing partial batch, as a client drops it
        }
        let batch = &bytes[pos..pos + h.size_bytes()];
        pos += h.size_bytes();
        if h.has_producer_id() {
            while let Some(a) = pending.next_if(|a| a.first_offset <= h.last_offset()) {
                aborted_pids.insert(a.producer_id);
            }
            if h.is_control() {
                let mut abort = false;
                BatchRecords::open(batch, DecompressLimits::default())
                    .unwrap()
                    .for_each(|r| abort = r.key.is_some_and(|k| k.get(2..4) == Some(&[0, 0])))
                    .unwrap();
                if abort {
                    aborted_pids.remove(&h.producer_id);
                }
            } else if h.is_transactional() && aborted_pids.contains(&h.producer_id) {
                continue;
            }
        }
        if h.is_control() {
            continue;
        }
        BatchRecords::open(batch, DecompressLimits::default())
            .unwrap()
            .for_each(|r| {
                let offset = h.base_offset + i64::from(r.offset_delta);
                if offset >= fetch_offset {
                    let tag = u64::from_be_bytes(r.value.unwrap().try_into().unwrap());
                    out.push((offset, tag));
                }
            })
            .unwrap();
    }
}

/// Fetches from the log start to the LSO as a read_committed consumer does, with the fetch
/// path's own calls (`read_file_slice` bounded by the LSO, `aborted_transactions`).
fn read_committed(log: &PartitionLog, max_bytes: usize) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    let reader = log.reader();
    let mut offset = log.log_start_offset();
    loop {
        let snapshot = reader.snapshot().unwrap();
        let lso = snapshot.last_stable_offset();
        let Some(slice) = snapshot
            .read_file_slice(offset, max_bytes, lso, true)
            .unwrap()
        else {
            break;
        };
        let bytes = slice.read_to_bytes().unwrap();
        let aborted = snapshot.aborted_transactions(offset, lso);
        let before = out.len();
        consume_committed(&bytes, offset, &aborted, &mut out);
        // Move past what this fetch covered, delivered or not.
        let mut pos = 0;
        let mut next = offset;
        while pos + 61 <= bytes.len() {
            let h = BatchHeader::parse(&bytes[pos..]).unwrap();
            if pos + h.size_bytes() > bytes.len() {
                break;
            }
            next = h.last_offset() + 1;
            pos += h.size_bytes();
        }
        assert!(
            next > offset || out.len() > before,
            "no progress at {offset}"
        );
        offset = next;
    }
    out
}

/// Every `.txnindex` entry on disk, by segment base offset; each file whole entries only.
fn txn_index_files(dir: &Path) -> BTreeMap<i64, Vec<AbortedTxn>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".txnindex") else {
            continue;
        };
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        assert_eq!(bytes.len() % ABORTED_TXN_BYTES, 0, "{name}: whole entries");
        let entries = bytes
            .chunks(ABORTED_TXN_BYTES)
            .map(|c| AbortedTxn::from_bytes(c).unwrap())
            .collect();
        out.insert(stem.parse().unwrap(), entries);
    }
    out
}

#[test]
fn commit_and_abort_move_the_lso_and_fill_the_txn_index() {
    // Two interleaved transactions: the LSO waits for the earliest, an abort lands in the
    // .txnindex with Kafka's fields, read_committed hides the aborted records only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, config(1 << 20)).unwrap();
    let append = |log: &mut PartitionLog, batch: Vec<u8>| {
        let out = log.append_as_leader(batch.into(), 0, 1_000).unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        out
    };
    append(&mut log, producer_batch(-1, -1, -1, &[1, 2], false)); // 0-1
    append(&mut log, producer_batch(7, 0, 0, &[3, 4], true)); // 2-3
    append(&mut log, producer_batch(8, 0, 0, &[5], true)); // 4
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(log.ongoing_transactions(), vec![(7, 2), (8, 4)]);
    let m = log
        .append_txn_marker(&marker(7, 0, 3, TxnResult::Abort), 0, 2_000)
        .unwrap(); // 5
    assert_eq!((m.base_offset, m.last_offset), (5, 5));
    // The HW has not passed the marker yet: the aborted transaction is still unstable.
    assert_eq!(log.last_stable_offset(), 2);
    log.set_high_watermark(6);
    assert_eq!(log.last_stable_offset(), 4);
    append(&mut log, producer_batch(8, 0, 1, &[6], true)); // 6
    log.append_txn_marker(&marker(8, 0, 3, TxnResult::Commit), 0, 2_000)
        .unwrap(); // 7
    log.set_high_watermark(8);
    assert_eq!(log.last_stable_offset(), 8);
    assert!(log.ongoing_transactions().is_empty());
    let expected = AbortedTxn {
        producer_id: 7,
        first_offset: 2,
        last_offset: 5,
        // Producer 8's transaction (from 4) was still open after the abort.
        last_stable_offset: 4,
    };
    let snapshot = log.reader().snapshot().unwrap();
    assert_eq!(snapshot.aborted_transactions(0, 8), vec![expected]);
    assert_eq!(snapshot.aborted_transactions(6, 8), vec![]);
    assert_eq!(
        read_committed(&log, 1 << 20),
        vec![(0, 1), (1, 2), (4, 5), (6, 6)]
    );
    log.flush().unwrap();
    let files = txn_index_files(&path);
    assert_eq!(files, BTreeMap::from([(0, vec![expected])]));
    let bytes = std::fs::read(path.join("00000000000000000000.txnindex")).unwrap();
    let mut want = vec![0u8, 0];
    for v in [7i64, 2, 5, 4] {
        want.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(bytes, want, "Kafka's AbortedTxn layout");
    // A crash that loses the .txnindex: reopening rebuilds it from the markers.
    drop(log);
    std::fs::remove_file(path.join("00000000000000000000.txnindex")).unwrap();
    let mut log = PartitionLog::open(path.clone(), TOPIC, config(1 << 20)).unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(
        txn_index_files(&path),
        BTreeMap::from([(0, vec![expected])])
    );
    assert_eq!(log.last_stable_offset(), 8);
    assert_eq!(
        read_committed(&log, 1 << 20),
        vec![(0, 1), (1, 2), (4, 5), (6, 6)]
    );
}

#[test]
fn coordinator_batches_skip_sequence_and_retry_checks_but_not_epochs() {
    // Goal: a group coordinator's transactional batches (base sequence 0 every time, as
    // Kafka's CoordinatorRuntime writes them) are all written and open the producer's
    // transaction; an older epoch is still refused. The same batch from a client would be a
    // retry of the first.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config(1 << 20)).unwrap();
    let first = log
        .append_as_coordinator(producer_batch(9, 1, 0, &[1], true).into(), 0, 1_000)
        .unwrap();
    let second = log
        .append_as_coordinator(producer_batch(9, 1, 0, &[2], true).into(), 0, 1_000)
        .unwrap();
    assert!(!second.duplicate);
    assert_eq!((first.base_offset, second.base_offset), (0, 1));
    assert_eq!(log.ongoing_transactions(), vec![(9, 0)]);
    let retry = log
        .append_as_leader(producer_batch(9, 1, 0, &[3], true).into(), 0, 1_000)
        .unwrap();
    assert!(
        retry.duplicate,
        "a client batch with the same sequences is a retry"
    );
    let fenced = log.append_as_coordinator(producer_batch(9, 0, 0, &[4], true).into(), 0, 1_000);
    assert!(matches!(
        fenced,
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
    // Readers see the producer as DescribeProducers reports it, without the writer's lock,
    // after a marker and after a reopen alike.
    let described = |log: &PartitionLog| log.reader().active_producers();
    let open = described(&log);
    assert_eq!(open.len(), 1);
    let expected = ActiveProducer {
        producer_id: 9,
        producer_epoch: 1,
        last_sequence: 0,
        last_timestamp: open[0].last_timestamp,
        coordinator_epoch: -1,
        current_txn_start_offset: 0,
    };
    assert_eq!(open, vec![expected]);
    log.append_txn_marker(&marker(9, 1, 4, TxnResult::Commit), 0, 2_000)
        .unwrap();
    let ended = ActiveProducer {
        coordinator_epoch: 4,
        current_txn_start_offset: -1,
        last_timestamp: 2_000,
        ..expected
    };
    assert_eq!(described(&log), vec![ended]);
    log.close().unwrap();
    let log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config(1 << 20)).unwrap();
    // The snapshot keeps the marker's timestamp, as Kafka's `lastTimestamp`.
    assert_eq!(described(&log), vec![ended]);
}

#[test]
fn epochs_and_transaction_state_are_fenced_as_kafka_does() {
    // Kafka's ProducerAppendInfo rules: old epochs, non-transactional writes inside a
    // transaction, zombie coordinators and TV2 marker epochs.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config(1 << 20)).unwrap();
    log.append_as_leader(producer_batch(7, 2, 0, &[1], true).into(), 0, 1)
        .unwrap();
    let refused = log.append_as_leader(producer_batch(7, 2, 1, &[2], false).into(), 0, 1);
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    let refused = log.append_as_leader(producer_batch(7, 1, 0, &[2], true).into(), 0, 1);
    assert!(
        matches!(refused, Err(StorageError::InvalidProducerEpoch { .. })),
        "{refused:?}"
    );
    let refused = log.append_txn_marker(&marker(7, 1, 0, TxnResult::Commit), 0, 1);
    assert!(
        matches!(refused, Err(StorageError::InvalidProducerEpoch { .. })),
        "{refused:?}"
    );
    // TV2: the marker needs an epoch above the producer's while a transaction is open...
    let tv2 = |epoch, coordinator_epoch| TxnMarker {
        transaction_version: 2,
        ..marker(7, epoch, coordinator_epoch, TxnResult::Commit)
    };
    let refused = log.append_txn_marker(&tv2(2, 5), 0, 1);
    assert!(
        matches!(refused, Err(StorageError::InvalidProducerEpoch { .. })),
        "{refused:?}"
    );
    log.append_txn_marker(&tv2(3, 5), 0, 1).unwrap();
    // ... and its retry at the same epoch, the transaction done, is written again.
    log.append_txn_marker(&tv2(3, 5), 0, 1).unwrap();
    let refused = log.append_txn_marker(&tv2(4, 4), 0, 1);
    assert!(
        matches!(
            refused,
            Err(StorageError::TransactionCoordinatorFenced { .. })
        ),
        "{refused:?}"
    );
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(leo, 3);
    assert_eq!(log.last_stable_offset(), 3);
    // Refusals leave nothing behind: every failed append was checked before writing.
    assert!(log.ongoing_transactions().is_empty());
}

/// The model: every record at or past the log start with its producer and transaction, and
/// each transaction's fate.
#[derive(Default)]
struct Model {
    /// offset -> (tag, transaction id if transactional)
    records: BTreeMap<i64, (u64, Option<u64>)>,
    /// transaction id -> aborted
    ended: HashMap<u64, bool>,
    /// transaction id -> (producer, first offset), while open
    ongoing: BTreeMap<u64, (i64, i64)>,
    /// ABORT markers that ended a non-empty transaction: (producer, first offset, marker offset)
    aborted: Vec<(i64, i64, i64)>,
    log_start: i64,
}

impl Model {
    fn lso(&self, hw: i64) -> i64 {
        self.ongoing
            .values()
            .map(|&(_, first)| first)
            .min()
            .filter(|&first| first < hw)
            .map_or(hw, |first| first.max(self.log_start))
    }

    fn committed_view(&self, lso: i64) -> Vec<(i64, u64)> {
        self.records
            .range(self.log_start..lso)
            .filter(|(_, (_, txn))| txn.is_none_or(|t| self.ended.get(&t) == Some(&false)))
            .map(|(&offset, &(tag, _))| (offset, tag))
            .collect()
    }
}

#[derive(Clone, Copy)]
struct Producer {
    pid: i64,
    epoch: i16,
    seq: i32,
    /// The transaction open on the partition, if any.
    txn: Option<u64>,
}

fn run(seed: u64, steps: usize) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let mut rng = Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let segment_bytes = [400, 700, 2_000][rng.below(3) as usize];
    // Every other seed compacts (`compact,delete`): cleaning rounds then remove aborted
    // records; every record has its own key, so nothing else goes.
    let compact = seed.is_multiple_of(2);
    // Markers whose transaction left no batch go once this passed (steps are 1 ms apart).
    let delete_retention_ms = [0, 20, 86_400_000][rng.below(3) as usize];
    let log_config = LogConfig {
        compaction: runnel_storage::cleaner::CompactionConfig {
            compact,
            delete_retention_ms,
            min_cleanable_dirty_ratio: 0.01,
            ..runnel_storage::cleaner::CompactionConfig::default()
        },
        ..config(segment_bytes)
    };
    let open = |last_shutdown| {
        let mut log = PartitionLog::open_after(
            path.clone(),
            TOPIC,
            log_config.clone(),
            FileBudget::process_default(),
            Arc::new(StdIo),
            last_shutdown,
        )
        .unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        log
    };
    let mut log = open(LastShutdown::Unclean);
    let mut m = Model::default();
    let mut producers: Vec<Producer> = (0..3)
        .map(|i| Producer {
            pid: 100 + i,
            epoch: 0,
            seq: 0,
            txn: None,
        })
        .collect();
    let mut next_tag = 0u64;
    let mut next_txn = 0u64;
    let coordinator_epoch = 1;
    let (mut aborts, mut commits) = (0, 0);
    let mut cleans = 0;
    for step in 0..steps {
        let now = 1_000 + step as i64;
        match rng.below(100) {
            // A transactional batch (opening a transaction if none is open).
            0..=39 => {
                let p = &mut producers[rng.below(3) as usize];
                let n = 1 + rng.below(3) as usize;
                let tags: Vec<u64> = (0..n as u64).map(|i| next_tag + i).collect();
                next_tag += n as u64;
                let out = log
                    .append_as_leader(
                        producer_batch(p.pid, p.epoch, p.seq, &tags, true).into(),
                        0,
                        now,
                    )
                    .unwrap();
                p.seq += n as i32;
                let txn = *p.txn.get_or_insert_with(|| {
                    next_txn += 1;
                    m.ongoing.insert(next_txn, (p.pid, out.base_offset));
                    next_txn
                });
                for (i, tag) in tags.into_iter().enumerate() {
                    m.records
                        .insert(out.base_offset + i as i64, (tag, Some(txn)));
                }
            }
            // A plain batch.
            40..=54 => {
                let tag = next_tag;
                next_tag += 1;
                let out = log
                    .append_as_leader(producer_batch(-1, -1, -1, &[tag], false).into(), 0, now)
                    .unwrap();
                m.records.insert(out.base_offset, (tag, None));
            }
            // The coordinator ends a producer's transaction (possibly an empty one), sometimes
            // fencing it with a bumped epoch as an InitProducerId of a new instance does.
            55..=79 => {
                let p = &mut producers[rng.below(3) as usize];
                let fence = rng.below(5) == 0;
                let result = if fence || rng.below(2) == 0 {
                    TxnResult::Abort
                } else {
                    TxnResult::Commit
                };
                if fence {
                    p.epoch += 1;
                    p.seq = 0;
                }
                let out = log
                    .append_txn_marker(&marker(p.pid, p.epoch, coordinator_epoch, result), 0, now)
                    .unwrap();
                if let Some(txn) = p.txn.take() {
                    let (pid, first) = m.ongoing.remove(&txn).unwrap();
                    let aborted = result == TxnResult::Abort;
                    m.ended.insert(txn, aborted);
                    if aborted {
                        m.aborted.push((pid, first, out.base_offset));
                        aborts += 1;
                    } else {
                        commits += 1;
                    }
                }
            }
            // DeleteRecords to a random offset at or below the HW.
            80..=84 => {
                let hw = log.high_watermark();
                let target = m.log_start + rng.below((hw - m.log_start + 1) as u64) as i64;
                log.advance_log_start_offset(target, now).unwrap();
                m.log_start = log.log_start_offset();
                let start = m.log_start;
                m.records.retain(|&o, _| o >= start);
            }
            // Retention of whole segments below the HW.
            85..=89 => {
                let hw = log.high_watermark();
                log.delete_segments_before(hw, now).unwrap();
                m.log_start = log.log_start_offset();
                let start = m.log_start;
                m.records.retain(|&o, _| o >= start);
            }
            // A clean shutdown, or a crash (page cache survives), then a reopen.
            90..=94 => {
                let clean = rng.below(2) == 0;
                if clean {
                    log.close().unwrap();
                } else {
                    drop(log);
                }
                // Producer snapshots (at each roll and at a clean shutdown) keep every open
                // transaction's first offset, even where retention removed its batches. After
                // a clean shutdown the log opens from its indexes, `.txnindex` files and the
                // snapshot at the log end, reading no batch; the checks below then hold as
                // after a replay.
                if clean {
                    log = open(LastShutdown::Clean);
                    let stats = log.open_stats();
                    assert!(stats.from_snapshot, "{stats:?}");
                    assert_eq!(stats.segments_scanned, 0, "{stats:?}");
                } else {
                    log = open(LastShutdown::Unclean);
                }
            }
            // A cleaning round (compacted seeds), else just the checks below.
            _ => {
                if compact {
                    let lock = std::sync::Mutex::new(log);
                    runnel_storage::cleaner::clean_once(
                        || Some(lock.lock().unwrap()),
                        &mut runnel_storage::cleaner::OffsetMap::new(1 << 14, 0.9),
                        &runnel_storage::cleaner::CleanerSettings::default(),
                        &runnel_storage::cleaner::Throttler::new(f64::MAX),
                        now,
                        true,
                    )
                    .unwrap();
                    log = lock.into_inner().unwrap();
                    cleans += 1;
                }
            }
        }
        let leo = log.log_end_offset();
        // Sometimes the HW lags behind the end for a step (a marker not yet replicated).
        let hw = if rng.below(4) == 0 {
            log.high_watermark().max(m.log_start)
        } else {
            leo
        };
        log.set_high_watermark(hw);
        let lso = log.last_stable_offset();
        let mut model_ongoing: Vec<(i64, i64)> = m.ongoing.values().copied().collect();
        model_ongoing.sort_by_key(|&(_, first)| first);
        assert_eq!(
            log.ongoing_transactions(),
            model_ongoing,
            "seed {seed} step {step}: ongoing transactions"
        );
        if hw == leo {
            assert_eq!(
                lso,
                m.lso(hw),
                "seed {seed} step {step}: LSO; log ongoing {:?}, model {:?}, start {}",
                log.ongoing_transactions(),
                m.ongoing,
                m.log_start
            );
        } else {
            assert!(lso <= m.lso(hw), "seed {seed} step {step}: LSO");
        }
        let max_bytes = [100, 300, 1 << 20][rng.below(3) as usize];
        assert_eq!(
            read_committed(&log, max_bytes),
            m.committed_view(lso),
            "seed {seed} step {step}: read_committed view"
        );
        // The .txnindex files hold exactly the aborted transactions whose marker is in a
        // segment still on disk, in the segment of the marker.
        log.flush().unwrap();
        let bases = segment_bases(&path);
        let files = txn_index_files(&path);
        let mut on_disk: Vec<(i64, i64, i64)> = Vec::new();
        for (base, entries) in &files {
            assert!(
                entries.is_empty() || bases.contains(base),
                "seed {seed} step {step}: .txnindex {base} without its segment"
            );
            for e in entries {
                let holder = bases.iter().rev().find(|&&b| b <= e.last_offset).copied();
                assert_eq!(holder, Some(*base), "entry in its marker's segment");
                // Another producer's earlier transaction may hold it below this one's start.
                assert!(e.last_stable_offset <= e.last_offset + 1, "{e:?}");
                on_disk.push((e.producer_id, e.first_offset, e.last_offset));
            }
        }
        let first_base = bases[0];
        let expected: Vec<(i64, i64, i64)> = m
            .aborted
            .iter()
            .copied()
            .filter(|&(_, _, marker)| marker >= first_base)
            .collect();
        // A clean drops the entry of an aborted transaction none of whose batches is left
        // (Kafka's cleaned transaction index): every other one stays, in order.
        let (_, headers) = support::read_all(&log);
        let has_batches = |&(pid, first, marker): &(i64, i64, i64)| {
            headers.iter().any(|h| {
                !h.is_control()
                    && h.producer_id == pid
                    && h.base_offset >= first
                    && h.base_offset < marker
            })
        };
        let mut unmatched = on_disk.iter().peekable();
        for entry in &expected {
            if unmatched.next_if_eq(&entry).is_none() {
                assert!(
                    compact && !has_batches(entry),
                    "seed {seed} step {step}: .txnindex lacks {entry:?} whose batches remain; files {files:?} bases {bases:?} start {}",
                    m.log_start
                );
            }
        }
        assert_eq!(
            unmatched.next(),
            None,
            "seed {seed} step {step}: .txnindex entries not in the model; files {files:?} bases {bases:?}"
        );
    }
    log.set_high_watermark(log.log_end_offset());
    assert!(!compact || cleans > 0, "seed {seed}: no cleaning round ran");
    (aborts, commits)
}

#[test]
fn random_transactions_agree_with_the_model() {
    // Random transactional and plain appends, commits, aborts, fencing, DeleteRecords,
    // retention, rolls, reopens and (half the seeds) cleaning rounds: the LSO is the model's,
    // read_committed never shows an aborted record or one past the LSO and never misses a
    // committed one, and the .txnindex files hold exactly the aborted transactions.
    let (mut aborts, mut commits) = (0, 0);
    for seed in 1..=16u64 {
        let (a, c) = run(seed, 300);
        aborts += a;
        commits += c;
    }
    assert!(
        aborts > 50 && commits > 50,
        "{aborts} aborts, {commits} commits"
    );
}

mod faults {
    use std::sync::Arc;

    use runnel_storage::io::faulty::{FaultyIo, InjectedError};
    use runnel_storage::io::LogIo;
    use runnel_storage::FileBudget;

    use super::*;

    fn open_faulty(path: &Path, io: &Arc<FaultyIo>) -> PartitionLog {
        let io: Arc<dyn LogIo> = io.clone();
        let mut log = PartitionLog::open_with_io(
            path.to_path_buf(),
            TOPIC,
            config(1 << 20),
            FileBudget::new(16),
            io,
        )
        .unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        log
    }

    #[test]
    fn a_crash_that_loses_an_unflushed_marker_reopens_the_transaction() {
        // The marker never reached the disk: after the crash the transaction is open again,
        // the LSO waits at its start, no .txnindex entry survives, and the coordinator's retry
        // of the marker completes it.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t-0");
        let io = FaultyIo::new();
        let mut log = open_faulty(&path, &io);
        log.append_as_leader(producer_batch(-1, -1, -1, &[1], false).into(), 0, 1)
            .unwrap();
        log.append_as_leader(producer_batch(9, 0, 0, &[2, 3], true).into(), 0, 1)
            .unwrap();
        log.flush().unwrap();
        log.append_txn_marker(&marker(9, 0, 1, TxnResult::Abort), 0, 2)
            .unwrap();
        log.set_high_watermark(4);
        assert_eq!(log.last_stable_offset(), 4);
        drop(log);
        io.crash().unwrap();
        let mut log = open_faulty(&path, &io);
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.ongoing_transactions(), vec![(9, 1)]);
        assert_eq!(log.last_stable_offset(), 1);
        assert!(txn_index_files(&path).values().all(Vec::is_empty));
        assert_eq!(read_committed(&log, 1 << 20), vec![(0, 1)]);
        log.append_txn_marker(&marker(9, 0, 1, TxnResult::Abort), 0, 3)
            .unwrap();
        log.set_high_watermark(4);
        assert_eq!(log.last_stable_offset(), 4);
        assert_eq!(read_committed(&log, 1 << 20), vec![(0, 1)]);
        log.flush().unwrap();
        assert_eq!(
            txn_index_files(&path)[&0],
            vec![AbortedTxn {
                producer_id: 9,
                first_offset: 1,
                last_offset: 3,
                last_stable_offset: 4
            }]
        );
    }

    #[test]
    fn a_failed_txn_index_write_fails_the_marker_and_is_undone() {
        // ENOSPC on the .txnindex entry fails the whole marker append: nothing of it shows, the
        // transaction stays open, and the retry once space returns writes it exactly once.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t-0");
        let io = FaultyIo::new();
        let mut log = open_faulty(&path, &io);
        log.append_as_leader(producer_batch(9, 0, 0, &[1, 2], true).into(), 0, 1)
            .unwrap();
        log.set_high_watermark(2);
        io.fail_write(1, ".txnindex", InjectedError::Enospc);
        let refused = log.append_txn_marker(&marker(9, 0, 1, TxnResult::Abort), 0, 2);
        assert!(matches!(refused, Err(StorageError::Io(_))), "{refused:?}");
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(log.ongoing_transactions(), vec![(9, 0)]);
        assert_eq!(
            log.reader().snapshot().unwrap().aborted_transactions(0, 2),
            vec![]
        );
        let out = log
            .append_txn_marker(&marker(9, 0, 1, TxnResult::Abort), 0, 3)
            .unwrap();
        assert_eq!(out.base_offset, 2);
        log.set_high_watermark(3);
        assert_eq!(read_committed(&log, 1 << 20), vec![]);
        log.flush().unwrap();
        drop(log);
        io.crash().unwrap();
        let log = open_faulty(&path, &io);
        assert_eq!(log.last_stable_offset(), 3);
        assert_eq!(txn_index_files(&path)[&0].len(), 1);
    }
}

#[test]
fn a_torn_marker_is_cut_and_its_txn_index_entry_rebuilt_away() {
    // Power lost midway through the marker's bytes: recovery cuts the torn batch, the stale
    // .txnindex entry naming it is rewritten away, and the transaction is open again.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let mut log = PartitionLog::open(path.clone(), TOPIC, config(1 << 20)).unwrap();
    log.append_as_leader(producer_batch(9, 0, 0, &[1, 2], true).into(), 0, 1)
        .unwrap();
    log.append_txn_marker(&marker(9, 0, 1, TxnResult::Abort), 0, 2)
        .unwrap();
    log.flush().unwrap();
    drop(log); // no clean shutdown
    assert_eq!(txn_index_files(&path)[&0].len(), 1);
    let segment = path.join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    let mut log = PartitionLog::open(path.clone(), TOPIC, config(1 << 20)).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    log.set_high_watermark(2);
    assert_eq!(log.ongoing_transactions(), vec![(9, 0)]);
    assert_eq!(log.last_stable_offset(), 0);
    assert!(txn_index_files(&path).values().all(Vec::is_empty));
}

#[test]
fn a_clean_open_restores_transactions_and_txn_indexes_without_reading_batches() {
    // After `close`, an open told the shutdown was clean takes the ongoing transactions (and so
    // the LSO) from the producer snapshot at the log end and each segment's aborted
    // transactions from its `.txnindex`, reading no batch: read_committed answers as before,
    // the files are left as they were, and the open transaction goes on. A `.txnindex` that
    // fails its check makes that open recover the log instead.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let open = |last_shutdown| {
        let mut log = PartitionLog::open_after(
            path.clone(),
            TOPIC,
            config(300),
            FileBudget::process_default(),
            Arc::new(StdIo),
            last_shutdown,
        )
        .unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        log
    };
    let mut log = open(LastShutdown::Unclean);
    log.append_as_leader(producer_batch(1, 0, 0, &[1, 2], true).into(), 0, 1)
        .unwrap(); // 0-1
    log.append_as_leader(producer_batch(2, 0, 0, &[3], true).into(), 0, 1)
        .unwrap(); // 2
    for i in 0..4 {
        // Plain batches that roll the 300-byte segments.
        log.append_as_leader(producer_batch(-1, -1, -1, &[10 + i], false).into(), 0, 1)
            .unwrap();
    }
    log.append_txn_marker(&marker(1, 0, 0, TxnResult::Abort), 0, 1)
        .unwrap();
    log.append_as_leader(producer_batch(2, 0, 1, &[4], true).into(), 0, 1)
        .unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(log.ongoing_transactions(), vec![(2, 2)]);
    assert_eq!(log.last_stable_offset(), 2);
    let aborted = log
        .reader()
        .snapshot()
        .unwrap()
        .aborted_transactions(0, leo);
    assert_eq!(aborted.len(), 1, "{aborted:?}");
    let uncommitted = read_uncommitted(&log);
    log.close().unwrap();
    let files = txn_index_files(&path);
    assert!(
        segment_bases(&path).len() >= 3,
        "{:?}",
        segment_bases(&path)
    );

    let mut log = open(LastShutdown::Clean);
    let stats = log.open_stats();
    assert!(stats.from_snapshot, "{stats:?}");
    assert_eq!((stats.segments_scanned, stats.segments_recovered), (0, 0));
    assert_eq!(log.ongoing_transactions(), vec![(2, 2)]);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(
        log.reader()
            .snapshot()
            .unwrap()
            .aborted_transactions(0, leo),
        aborted
    );
    assert_eq!(read_uncommitted(&log), uncommitted);
    assert_eq!(txn_index_files(&path), files);
    // Producer 2's transaction goes on from its sequence, and its commit frees the LSO.
    log.append_as_leader(producer_batch(2, 0, 2, &[5], true).into(), 0, 1)
        .unwrap();
    log.append_txn_marker(&marker(2, 0, 0, TxnResult::Commit), 0, 1)
        .unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(log.last_stable_offset(), leo);
    assert!(log.ongoing_transactions().is_empty());
    let uncommitted = read_uncommitted(&log);
    let committed = read_committed(&log, 1 << 20);
    log.close().unwrap();

    // A `.txnindex` entry that names no marker of its segment: not trusted.
    let (&base, entries) = files.iter().find(|(_, e)| !e.is_empty()).unwrap();
    let mut bogus = entries.clone();
    bogus[0].last_offset = base - 1;
    let bytes: Vec<u8> = bogus.iter().flat_map(AbortedTxn::to_bytes).collect();
    std::fs::write(path.join(format!("{base:020}.txnindex")), bytes).unwrap();
    let log = open(LastShutdown::Clean);
    assert!(!log.open_stats().from_snapshot);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.last_stable_offset(), leo);
    assert_eq!(read_uncommitted(&log), uncommitted);
    // The file was rebuilt from a replay that starts at or before its segment, so the aborted
    // records stay hidden.
    assert_eq!(read_committed(&log, 1 << 20), committed);
    assert_eq!(txn_index_files(&path)[&base], *entries);
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".snapshot"))
        .collect();
    names.sort();
    names
}

#[test]
fn producer_snapshots_keep_state_that_retention_removed_and_torn_ones_are_skipped() {
    // A transaction whose first batches retention deleted keeps its first offset across a
    // reopen (from the roll's snapshot), a clean shutdown snapshots at the log end, and a
    // torn latest snapshot is removed and the one before it used.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let open = || {
        let mut log = PartitionLog::open(path.clone(), TOPIC, config(200)).unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
        log
    };
    let mut log = open();
    log.append_as_leader(producer_batch(5, 0, 0, &[1, 2, 3], true).into(), 0, 1)
        .unwrap(); // 0-2
    for i in 0..4 {
        // Plain batches that roll the 200-byte segments.
        log.append_as_leader(producer_batch(-1, -1, -1, &[10 + i], false).into(), 0, 1)
            .unwrap();
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert!(
        segment_bases(&path).len() >= 3,
        "{:?}",
        segment_bases(&path)
    );
    log.delete_segments_before(leo, 2).unwrap();
    assert!(
        segment_bases(&path)[0] > 2,
        "the transaction's batches are gone"
    );
    assert_eq!(log.ongoing_transactions(), vec![(5, 0)]);
    let start = log.log_start_offset();
    assert_eq!(log.last_stable_offset(), start);
    drop(log); // a crash: the roll's snapshots are all there is
    let log = open();
    assert_eq!(log.ongoing_transactions(), vec![(5, 0)]);
    assert_eq!(log.last_stable_offset(), start);
    // The producer's sequence survived too: its next batch must follow on.
    let mut log = log;
    let refused = log.append_as_leader(producer_batch(5, 0, 7, &[4], true).into(), 0, 1);
    assert!(
        matches!(refused, Err(StorageError::OutOfOrderSequence { .. })),
        "{refused:?}"
    );
    log.append_as_leader(producer_batch(5, 0, 3, &[4], true).into(), 0, 1)
        .unwrap();
    let leo = log.log_end_offset();
    log.close().unwrap();
    let leo_snapshot = format!("{leo:020}.snapshot");
    assert!(
        snapshot_files(&path).contains(&leo_snapshot),
        "{:?}",
        snapshot_files(&path)
    );
    // Tear the clean shutdown's snapshot: the roll's one before it is used, the log replayed
    // from there, and the state is the same.
    let torn = path.join(&leo_snapshot);
    let len = std::fs::metadata(&torn).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let mut log = open();
    assert!(!snapshot_files(&path).contains(&leo_snapshot));
    assert_eq!(log.ongoing_transactions(), vec![(5, 0)]);
    log.append_as_leader(producer_batch(5, 0, 4, &[5], true).into(), 0, 1)
        .unwrap();
    log.append_txn_marker(&marker(5, 0, 0, TxnResult::Commit), 0, 1)
        .unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(log.last_stable_offset(), leo);
}

/// Every record readable from the log start as (offset, tag), control records left out
/// (a read_uncommitted consumer's view).
fn read_uncommitted(log: &PartitionLog) -> Vec<(i64, u64)> {
    let (records, headers) = support::read_all(log);
    let controls: Vec<i64> = headers
        .iter()
        .filter(|h| h.is_control())
        .map(|h| h.base_offset)
        .collect();
    records
        .into_iter()
        .filter(|(offset, _, _)| !controls.contains(offset))
        .map(|(offset, _, value)| {
            (
                offset,
                u64::from_be_bytes(value.unwrap().try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn cleaning_removes_aborted_data_and_keeps_markers_and_committed_data() {
    // A compacted log with interleaved committed and aborted transactions: a cleaning round
    // removes the aborted records only, the read_committed view is unchanged, every marker and
    // .txnindex entry stays, and a reopen agrees.
    use runnel_storage::cleaner::{
        clean_once, CleanerSettings, CompactionConfig, OffsetMap, Throttler,
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let config = LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        compaction: CompactionConfig {
            compact: true,
            min_cleanable_dirty_ratio: 0.01,
            ..CompactionConfig::default()
        },
        ..LogConfig::default()
    };
    let log =
        std::sync::Mutex::new(PartitionLog::open(path.clone(), TOPIC, config.clone()).unwrap());
    {
        let mut log = log.lock().unwrap();
        let append = |log: &mut PartitionLog, b: Vec<u8>| {
            log.append_as_leader(b.into(), 0, 1).unwrap();
        };
        append(&mut log, producer_batch(7, 0, 0, &[1, 2], true)); // aborted
        append(&mut log, producer_batch(8, 0, 0, &[3], true)); // committed
        append(&mut log, producer_batch(-1, -1, -1, &[4], false));
        append(&mut log, producer_batch(7, 0, 2, &[5], true)); // aborted
        log.append_txn_marker(&marker(7, 0, 0, TxnResult::Abort), 0, 1)
            .unwrap();
        log.append_txn_marker(&marker(8, 0, 0, TxnResult::Commit), 0, 1)
            .unwrap();
        append(&mut log, producer_batch(9, 0, 0, &[6], true)); // aborted, after the others
        log.append_txn_marker(&marker(9, 0, 0, TxnResult::Abort), 0, 1)
            .unwrap();
        for i in 0..6 {
            append(&mut log, producer_batch(-1, -1, -1, &[100 + i], false));
        }
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
    }
    let before_committed = read_committed(&log.lock().unwrap(), 1 << 20);
    let before_all = read_uncommitted(&log.lock().unwrap());
    assert!(before_all.iter().any(|&(_, tag)| tag == 1));
    let entries_before: Vec<AbortedTxn> = txn_index_files(&path).into_values().flatten().collect();
    assert_eq!(entries_before.len(), 2);
    let mut map = OffsetMap::new(1 << 16, 0.9);
    let stats = clean_once(
        || Some(log.lock().unwrap()),
        &mut map,
        &CleanerSettings::default(),
        &Throttler::new(f64::MAX),
        10_000,
        true,
    )
    .unwrap()
    .expect("a round ran");
    assert!(stats.segments_written > 0);
    let log = log.into_inner().unwrap();
    let after_all = read_uncommitted(&log);
    let aborted_tags = [1u64, 2, 5, 6];
    assert!(
        after_all.iter().all(|(_, tag)| !aborted_tags.contains(tag)),
        "aborted records left: {after_all:?}"
    );
    let expected: Vec<(i64, u64)> = before_all
        .iter()
        .copied()
        .filter(|(_, tag)| !aborted_tags.contains(tag))
        .collect();
    assert_eq!(after_all, expected, "only the aborted records went");
    assert_eq!(read_committed(&log, 1 << 20), before_committed);
    let (_, headers) = support::read_all(&log);
    assert_eq!(
        headers.iter().filter(|h| h.is_control()).count(),
        3,
        "markers stay"
    );
    let entries_after: Vec<AbortedTxn> = txn_index_files(&path).into_values().flatten().collect();
    assert_eq!(entries_after, entries_before);
    drop(log);
    let log = PartitionLog::open(path.clone(), TOPIC, config).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    assert_eq!(read_uncommitted(&log), expected);
    assert_eq!(
        txn_index_files(&path)
            .into_values()
            .flatten()
            .collect::<Vec<_>>(),
        entries_before
    );
}

/// A batch of (key, tag) records from `pid` (transactional or not), tags as values.
fn keyed(pid: i64, seq: i32, records: &[(&str, u64)], transactional: bool) -> Vec<u8> {
    let values: Vec<[u8; 8]> = records.iter().map(|(_, t)| t.to_be_bytes()).collect();
    encode_uncompressed_batch(&BatchSpec {
        attributes: if transactional { ATTR_TRANSACTIONAL } else { 0 },
        base_timestamp: 1_000,
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { 0 },
        base_sequence: if pid < 0 { -1 } else { seq },
        records: records
            .iter()
            .zip(&values)
            .map(|((k, _), v)| RecordSpec {
                key: Some(k.as_bytes()),
                value: Some(v),
                ..RecordSpec::default()
            })
            .collect(),
        ..BatchSpec::default()
    })
}

#[test]
fn cleaning_compacts_committed_transactional_data_and_ignores_aborted_keys() {
    // Committed transactional records are compacted like any other (a later value of the key
    // removes them, and they remove earlier ones), while an aborted record neither survives
    // nor displaces the committed value of its key.
    use runnel_storage::cleaner::{
        clean_once, CleanerSettings, CompactionConfig, OffsetMap, Throttler,
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let config = LogConfig {
        segment_bytes: 250,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        compaction: CompactionConfig {
            compact: true,
            min_cleanable_dirty_ratio: 0.01,
            ..CompactionConfig::default()
        },
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(path.clone(), TOPIC, config).unwrap();
    let append = |log: &mut PartitionLog, b: Vec<u8>| {
        log.append_as_leader(b.into(), 0, 1).unwrap();
    };
    append(&mut log, keyed(-1, 0, &[("a", 1), ("b", 2)], false));
    append(&mut log, keyed(7, 0, &[("a", 3), ("c", 4)], true)); // committed: a=3 replaces a=1
    log.append_txn_marker(&marker(7, 0, 0, TxnResult::Commit), 0, 1)
        .unwrap();
    append(&mut log, keyed(8, 0, &[("b", 5), ("c", 6)], true)); // aborted: b=2, c=4 stay
    log.append_txn_marker(&marker(8, 0, 0, TxnResult::Abort), 0, 1)
        .unwrap();
    append(&mut log, keyed(7, 2, &[("c", 7)], true)); // committed: c=7 replaces c=4
    log.append_txn_marker(&marker(7, 0, 0, TxnResult::Commit), 0, 1)
        .unwrap();
    for i in 0..6 {
        append(
            &mut log,
            keyed(-1, 0, &[(&format!("filler{i}"), 100 + i)], false),
        );
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let lock = std::sync::Mutex::new(log);
    let stats = clean_once(
        || Some(lock.lock().unwrap()),
        &mut OffsetMap::new(1 << 16, 0.9),
        &CleanerSettings::default(),
        &Throttler::new(f64::MAX),
        10_000,
        true,
    )
    .unwrap()
    .expect("a round ran");
    assert!(
        stats.end_offset > 9,
        "the transactions were in the cleaned range"
    );
    let log = lock.into_inner().unwrap();
    let tags: Vec<u64> = read_uncommitted(&log).into_iter().map(|(_, t)| t).collect();
    let data: Vec<u64> = tags.into_iter().filter(|&t| t < 100).collect();
    assert_eq!(
        data,
        vec![2, 3, 7],
        "b=2 (the aborted b=5 ignored), a=3, c=7"
    );
    assert_eq!(
        read_committed(&log, 1 << 20)
            .into_iter()
            .map(|(_, t)| t)
            .filter(|&t| t < 100)
            .collect::<Vec<_>>(),
        vec![2, 3, 7]
    );
    let (_, headers) = support::read_all(&log);
    assert_eq!(
        headers.iter().filter(|h| h.is_control()).count(),
        3,
        "markers stay"
    );
}

/// Base offsets of the whole batches in `bytes`.
fn batch_bases(bytes: &[u8]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&bytes[pos..]) {
        if pos + h.size_bytes() > bytes.len() {
            break;
        }
        out.push(h.base_offset);
        pos += h.size_bytes();
    }
    out
}

#[test]
fn a_fetch_slice_reads_past_markers_up_to_its_bound() {
    // The fetch path's slice from offset 0 holds every batch below the high watermark
    // (read_uncommitted) or the LSO (read_committed), COMMIT and ABORT markers included,
    // whether the high watermark followed each append or lagged behind the markers and caught
    // up in one step, with a sparse or a dense offset index. Markers never end a slice.
    for index_interval_bytes in [4096, 100] {
        for hw_lags in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let log_config = LogConfig {
                index_interval_bytes,
                ..config(1 << 20)
            };
            let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, log_config).unwrap();
            let follow = |log: &mut PartitionLog| {
                if !hw_lags {
                    let leo = log.log_end_offset();
                    log.set_high_watermark(leo);
                }
            };
            for seq in 0..4 {
                let batch = producer_batch(7, 0, seq, &[seq as u64], true);
                log.append_as_leader(batch.into(), 0, 1_000).unwrap(); // 0-3
                follow(&mut log);
            }
            log.append_txn_marker(&marker(7, 0, 0, TxnResult::Commit), 0, 2_000)
                .unwrap(); // 4
            follow(&mut log);
            let batch = producer_batch(7, 0, 4, &[4], true);
            log.append_as_leader(batch.into(), 0, 3_000).unwrap(); // 5
            follow(&mut log);
            log.append_txn_marker(&marker(7, 0, 0, TxnResult::Abort), 0, 4_000)
                .unwrap(); // 6
            follow(&mut log);
            if hw_lags {
                assert_eq!(
                    log.last_stable_offset(),
                    0,
                    "nothing stable before the HW moves"
                );
                log.set_high_watermark(7);
            }
            assert_eq!((log.high_watermark(), log.last_stable_offset()), (7, 7));
            let snapshot = log.reader().snapshot().unwrap();
            for bound in [snapshot.high_watermark(), snapshot.last_stable_offset()] {
                let slice = snapshot
                    .read_file_slice(0, 1 << 20, bound, true)
                    .unwrap()
                    .expect("records below the bound");
                assert_eq!(slice.len as u64, snapshot.size_bytes(), "the whole log");
                let bytes = slice.read_to_bytes().unwrap();
                assert_eq!(
                    batch_bases(&bytes),
                    vec![0, 1, 2, 3, 4, 5, 6],
                    "interval {index_interval_bytes}, HW lagging {hw_lags}"
                );
            }
        }
    }
}

#[test]
fn a_marker_stamped_a_segment_ms_after_the_first_batch_rolls_and_ends_a_slice() {
    // The suspected "fetch stops before marker batches": records stamped long before their
    // marker (test batches stamped 1970, the marker stamped now) make the marker roll, as
    // Kafka's `LogSegment.shouldRoll` does (`timeWaitedForRoll` is the appended batch's max
    // timestamp minus the segment's first batch timestamp, against `segment.ms`), and a slice,
    // like Kafka's `LocalLog.read`, comes from one segment: it ends at the marker, and the
    // next one starts there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let log_config = config(1 << 20);
    let segment_ms = log_config.segment_ms;
    let mut log = PartitionLog::open(path.clone(), TOPIC, log_config).unwrap();
    for seq in 0..4 {
        let batch = producer_batch(7, 0, seq, &[seq as u64], true);
        log.append_as_leader(batch.into(), 0, 1_000).unwrap(); // 0-3, stamped 1_000
    }
    // Exactly segment.ms after the first batch: not yet past it, no roll.
    log.append_txn_marker(&marker(7, 0, 0, TxnResult::Commit), 0, 1_000 + segment_ms)
        .unwrap(); // 4
    assert_eq!(segment_bases(&path), vec![0]);
    let batch = producer_batch(7, 0, 4, &[4], true);
    log.append_as_leader(batch.into(), 0, 1_000).unwrap(); // 5
                                                           // One ms more: the marker rolls a new segment.
    log.append_txn_marker(&marker(7, 0, 0, TxnResult::Abort), 0, 1_001 + segment_ms)
        .unwrap(); // 6
    assert_eq!(segment_bases(&path), vec![0, 6]);
    log.set_high_watermark(7);
    let snapshot = log.reader().snapshot().unwrap();
    let read = |from: i64| {
        let slice = snapshot.read_file_slice(from, 1 << 20, 7, true).unwrap();
        batch_bases(&slice.unwrap().read_to_bytes().unwrap())
    };
    assert_eq!(read(0), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(read(6), vec![6]);
}

#[test]
fn a_stale_verification_cannot_open_a_transaction_the_coordinator_does_not_know() {
    // Goal (KIP-890 part 1, Kafka's VerificationGuard): the guard handed out when verification
    // starts must come back with the append; an ABORT marker landing between the coordinator's
    // answer and the append (a transaction timeout) makes the old guard stale, so the late
    // batch is refused instead of opening a transaction no marker will ever end.
    use runnel_storage::Verification;
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path().join("t-0"), TOPIC, config(1 << 20)).unwrap();
    let append = |log: &mut PartitionLog, seq: i32, tag: u64, v: Verification| {
        log.append_as_leader_verified(producer_batch(5, 1, seq, &[tag], true).into(), 0, 1, v)
    };
    // The sentinel (no verification started) does not open a transaction.
    let refused = append(&mut log, 0, 1, Verification::Guard(None));
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    let stale = log.start_transaction_verification(5, 1, false, 1).unwrap();
    // The transaction times out: the coordinator aborts it and writes the marker here.
    log.append_txn_marker(&marker(5, 1, 0, TxnResult::Abort), 0, 1)
        .unwrap();
    let fresh = log.start_transaction_verification(5, 1, false, 1).unwrap();
    assert_ne!(stale, fresh);
    let refused = append(&mut log, 0, 1, Verification::Guard(Some(stale)));
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    assert!(log.ongoing_transactions().is_empty());
    // The current guard opens it; later batches of the same transaction need none.
    append(&mut log, 0, 1, Verification::Guard(Some(fresh))).unwrap();
    assert_eq!(log.start_transaction_verification(5, 1, false, 1), None);
    append(&mut log, 1, 2, Verification::Guard(None)).unwrap();
    assert_eq!(log.ongoing_transactions().len(), 1);
    // The used guard does not open another transaction after this one ends.
    log.append_txn_marker(&marker(5, 1, 0, TxnResult::Commit), 0, 1)
        .unwrap();
    let refused = append(&mut log, 2, 3, Verification::Guard(Some(fresh)));
    assert!(
        matches!(refused, Err(StorageError::InvalidTxnState(_))),
        "{refused:?}"
    );
    // An older epoch is told so first, as Kafka does.
    let refused = log.append_as_leader_verified(
        producer_batch(5, 0, 0, &[4], true).into(),
        0,
        1,
        Verification::Guard(None),
    );
    assert!(
        matches!(refused, Err(StorageError::InvalidProducerEpoch { .. })),
        "{refused:?}"
    );
    // With verification off (the broker config), nothing is checked.
    append(&mut log, 2, 3, Verification::Off).unwrap();
}

#[test]
fn markers_go_once_their_transactions_data_is_gone_and_their_horizon_passed() {
    // Goal (Kafka's CleanedTransactionMetadata and the marker delete horizon): a marker stays
    // while any batch of its transaction does; the first clean that finds none stamps it with
    // a delete horizon (now + delete.retention.ms) and drops an ABORT's .txnindex entry; the
    // first clean after the horizon removes it. Markers of transactions whose data remains stay,
    // and read_committed sees the same records throughout, also after a reopen.
    use runnel_storage::cleaner::{
        clean_once, CleanerSettings, CompactionConfig, OffsetMap, Throttler,
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t-0");
    let config = LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        compaction: CompactionConfig {
            compact: true,
            min_cleanable_dirty_ratio: 0.01,
            delete_retention_ms: 1_000,
            ..CompactionConfig::default()
        },
        ..LogConfig::default()
    };
    let log =
        std::sync::Mutex::new(PartitionLog::open(path.clone(), TOPIC, config.clone()).unwrap());
    let append = |b: Vec<u8>| {
        let mut log = log.lock().unwrap();
        log.append_as_leader(b.into(), 0, 1).unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
    };
    let end = |pid: i64, result: TxnResult| {
        let mut log = log.lock().unwrap();
        log.append_txn_marker(&marker(pid, 0, 0, result), 0, 1)
            .unwrap();
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
    };
    let mut filler = 0u64;
    let mut fill = |n: u64| {
        for _ in 0..n {
            filler += 1;
            let key = format!("f{filler}");
            append(keyed(-1, -1, &[(key.as_str(), 1000 + filler)], false));
        }
    };
    // Producer 7: an aborted transaction, then a committed one (its last data).
    append(keyed(7, 0, &[("a", 1)], true));
    end(7, TxnResult::Abort);
    // Producer 8: a committed transaction whose record a later plain write of its key
    // supersedes, then another committed one (its last data).
    append(keyed(8, 0, &[("k", 2)], true));
    end(8, TxnResult::Commit);
    append(keyed(-1, -1, &[("k", 3)], false));
    append(keyed(7, 1, &[("b", 4)], true));
    end(7, TxnResult::Commit);
    append(keyed(8, 1, &[("z", 5)], true));
    end(8, TxnResult::Commit);
    fill(8);
    let committed = read_committed(&log.lock().unwrap(), 1 << 20);
    let markers = |log: &PartitionLog| -> Vec<(i64, Option<i64>)> {
        let (_, headers) = support::read_all(log);
        headers
            .iter()
            .filter(|h| h.is_control())
            .map(|h| (h.producer_id, h.delete_horizon_ms()))
            .collect()
    };
    let entries =
        || -> Vec<AbortedTxn> { txn_index_files(&path).into_values().flatten().collect() };
    assert_eq!(markers(&log.lock().unwrap()).len(), 4);
    assert_eq!(entries().len(), 1);
    let mut map = OffsetMap::new(1 << 16, 0.9);
    // Each round keeps read_committed as it was but for the superseded record (tag 2): the
    // filler keys are unique, so the rounds after the first only move markers.
    let mut clean = |now: i64| {
        let before = read_committed(&log.lock().unwrap(), 1 << 20);
        let stats = clean_once(
            || Some(log.lock().unwrap()),
            &mut map,
            &CleanerSettings::default(),
            &Throttler::new(f64::MAX),
            now,
            true,
        )
        .unwrap()
        .expect("a round ran");
        let expected: Vec<(i64, u64)> = before.into_iter().filter(|&(_, tag)| tag != 2).collect();
        assert_eq!(read_committed(&log.lock().unwrap(), 1 << 20), expected);
        stats
    };
    // Round 1 removes the aborted and superseded data; it saw their batches, so every marker
    // stays as it was, and so does the ABORT's entry.
    clean(10_000);
    assert_eq!(
        markers(&log.lock().unwrap()),
        vec![(7, None), (8, None), (7, None), (8, None)]
    );
    assert_eq!(entries().len(), 1);
    // Round 2 finds no batch of the first two transactions: their markers get a horizon, the
    // ABORT's entry goes. The markers of transactions with data left are untouched.
    fill(4);
    clean(10_000);
    assert_eq!(
        markers(&log.lock().unwrap()),
        vec![(7, Some(11_000)), (8, Some(11_000)), (7, None), (8, None)]
    );
    assert_eq!(entries(), vec![]);
    // Before the horizon nothing more goes; after it, those two markers do.
    fill(4);
    clean(10_999);
    assert_eq!(markers(&log.lock().unwrap()).len(), 4);
    fill(4);
    clean(11_000);
    assert_eq!(markers(&log.lock().unwrap()), vec![(7, None), (8, None)]);
    let log = log.into_inner().unwrap();
    let committed_now = read_committed(&log, 1 << 20);
    assert!(committed
        .iter()
        .filter(|&&(_, tag)| tag != 2)
        .all(|r| committed_now.contains(r)));
    drop(log);
    let mut log = PartitionLog::open(path.clone(), TOPIC, config).unwrap();
    assert!(log.ongoing_transactions().is_empty());
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(read_committed(&log, 1 << 20), committed_now);
    assert_eq!(entries(), vec![]);
}
