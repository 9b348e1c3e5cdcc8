//! `append_as_follower`: a copy built from a leader's fetched bytes keeps the leader's offsets,
//! epochs, producer and transaction state, and refuses bytes that do not continue it.

use bytes::Bytes;
use runnel_storage::{LogConfig, PartitionLog, StorageError, TxnMarker, TxnResult};

mod support;

use support::{batch, batch_for, segment_bases, TOPIC};

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, segment_bytes: u64) -> PartitionLog {
    PartitionLog::open(dir.to_path_buf(), TOPIC, config(segment_bytes)).unwrap()
}

/// Everything the leader holds from `from`, in fetches of at most `max_bytes` each, appended
/// to the follower as a replica fetcher would (partial trailing batches are refetched).
fn copy(leader: &PartitionLog, follower: &mut PartitionLog, max_bytes: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let bytes = leader
            .read(
                follower.log_end_offset(),
                max_bytes,
                leader.log_end_offset(),
                true,
            )
            .unwrap();
        assert!(!bytes.is_empty(), "the leader answered nothing");
        let appended = follower.append_as_follower(bytes, 1_000).unwrap();
        assert!(
            appended.is_some(),
            "a fetch with min_one_batch holds a whole batch"
        );
    }
}

fn all_bytes(log: &PartitionLog) -> Bytes {
    log.read(
        log.log_start_offset(),
        usize::MAX / 2,
        log.log_end_offset(),
        true,
    )
    .unwrap()
}

fn txn_batch(pid: i64, seq: i32, n: usize) -> Bytes {
    let mut b = batch_for(n, 1_000, 10, pid, 0, seq);
    // The transactional attribute bit, then the CRC over attributes onwards.
    let attributes = i16::from_be_bytes([b[21], b[22]]) | 0x10;
    b[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn marker(pid: i64, result: TxnResult) -> TxnMarker {
    TxnMarker {
        producer_id: pid,
        producer_epoch: 0,
        coordinator_epoch: 1,
        result,
        transaction_version: 0,
    }
}

#[test]
fn the_copy_keeps_the_leaders_offsets_epochs_and_bytes() {
    // Goal: the follower's log is byte-for-byte the leader's, across several leader epochs and
    // segment rolls, fetched in small pieces (trailing partial batches ignored).
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("t-0"), 2_000);
    for epoch in [0, 3, 7] {
        leader.assign_leader_epoch(epoch).unwrap();
        for i in 0..5 {
            leader
                .append_as_leader(Bytes::from(batch(3, 1_000 + i, 100)), epoch, 1_000)
                .unwrap();
        }
    }
    let mut follower = open(&dir.path().join("f").join("t-0"), 2_000);
    copy(&leader, &mut follower, 700);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
    assert!(segment_bases(follower.dir()).len() > 1, "the copy rolled");
    // A reopen after a crash finds the same log.
    drop(follower);
    let follower = open(&dir.path().join("f").join("t-0"), 2_000);
    assert_eq!(all_bytes(&follower), all_bytes(&leader));
    assert_eq!(follower.epoch_entries(), leader.epoch_entries());
}

#[test]
fn bad_crc_overlap_and_out_of_order_batches_are_refused_and_change_nothing() {
    // Goal: bytes that are corrupt or do not continue the log are refused with an error (no
    // panic) and leave the follower as it was, still appendable.
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("t-0"), 1 << 20);
    for i in 0..4 {
        leader
            .append_as_leader(Bytes::from(batch(2, 1_000 + i, 10)), 0, 1_000)
            .unwrap();
    }
    let bytes = all_bytes(&leader);
    let first_len = support::split(&bytes)[0].size_bytes();
    let mut follower = open(&dir.path().join("f").join("t-0"), 1 << 20);

    let mut corrupt = bytes.to_vec();
    corrupt[first_len - 1] ^= 0xff;
    let e = follower.append_as_follower(Bytes::from(corrupt), 1_000);
    assert!(matches!(e, Err(StorageError::Batch(_))), "{e:?}");
    assert_eq!(follower.log_end_offset(), 0);

    // Two batches in the wrong order.
    let second = bytes.slice(first_len..2 * first_len);
    let mut swapped = second.to_vec();
    swapped.extend_from_slice(&bytes[..first_len]);
    let e = follower.append_as_follower(Bytes::from(swapped), 1_000);
    assert!(
        matches!(e, Err(StorageError::UnexpectedAppendOffset { .. })),
        "{e:?}"
    );
    assert_eq!(follower.log_end_offset(), 0);

    follower
        .append_as_follower(bytes.slice(..first_len), 1_000)
        .unwrap();
    // The same batch again overlaps the log end.
    let e = follower.append_as_follower(bytes.slice(..first_len), 1_000);
    assert!(
        matches!(
            e,
            Err(StorageError::UnexpectedAppendOffset {
                first_offset: 0,
                log_end_offset: 2
            })
        ),
        "{e:?}"
    );
    // Garbage and a lone partial batch.
    assert!(follower
        .append_as_follower(Bytes::from(vec![0xffu8; 100]), 1_000)
        .is_err());
    assert_eq!(
        follower
            .append_as_follower(bytes.slice(first_len..first_len + 30), 1_000)
            .unwrap(),
        None
    );
    follower
        .append_as_follower(bytes.slice(first_len..), 1_000)
        .unwrap();
    assert_eq!(all_bytes(&follower), bytes);
}

#[test]
fn an_idempotent_retry_to_the_copy_is_a_duplicate_and_the_producer_continues() {
    // Goal: producer state is rebuilt from the copied batches, so once the copy leads, a retry
    // of an acknowledged batch is answered as a duplicate at its original offsets and the next
    // sequence is accepted.
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("t-0"), 1 << 20);
    leader
        .append_as_leader(Bytes::from(batch(1, 1_000, 10)), 0, 1_000)
        .unwrap();
    let acked = Bytes::from(batch_for(3, 1_000, 10, 42, 0, 0));
    let original = leader.append_as_leader(acked.clone(), 0, 1_000).unwrap();
    let mut follower = open(&dir.path().join("f").join("t-0"), 1 << 20);
    copy(&leader, &mut follower, 1 << 20);
    follower.assign_leader_epoch(1).unwrap();
    let retry = follower.append_as_leader(acked, 1, 2_000).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (original.base_offset, original.last_offset)
    );
    let next = follower
        .append_as_leader(Bytes::from(batch_for(1, 1_000, 10, 42, 0, 3)), 1, 2_000)
        .unwrap();
    assert!(!next.duplicate);
    assert_eq!(next.base_offset, original.last_offset + 1);
    // A sequence gap is still refused on the copy.
    let gap = follower.append_as_leader(Bytes::from(batch_for(1, 1_000, 10, 42, 0, 9)), 1, 2_000);
    assert!(
        matches!(gap, Err(StorageError::OutOfOrderSequence { .. })),
        "{gap:?}"
    );
}

#[test]
fn transactions_and_the_txn_index_follow_the_leader() {
    // Goal: an aborted transaction gets the same `.txnindex` entry on the copy, an open one
    // holds the copy's last stable offset as on the leader, and its marker ends it there.
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("t-0"), 1 << 20);
    leader
        .append_as_leader(txn_batch(7, 0, 2), 0, 1_000)
        .unwrap();
    leader
        .append_txn_marker(&marker(7, TxnResult::Abort), 0, 1_000)
        .unwrap();
    leader
        .append_as_leader(txn_batch(8, 0, 2), 0, 1_000)
        .unwrap();
    let mut follower = open(&dir.path().join("f").join("t-0"), 1 << 20);
    copy(&leader, &mut follower, 1 << 20);
    for log in [&mut leader, &mut follower] {
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
    }
    let aborted = |log: &PartitionLog| {
        log.reader()
            .snapshot()
            .unwrap()
            .aborted_transactions(0, log.log_end_offset())
    };
    assert_eq!(aborted(&follower), aborted(&leader));
    assert_eq!(aborted(&follower).len(), 1);
    assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
    assert_eq!(
        follower.last_stable_offset(),
        3,
        "producer 8's transaction is open"
    );
    assert_eq!(follower.ongoing_transactions(), vec![(8, 3)]);
    // The copy leads: the coordinator's COMMIT ends the transaction there.
    follower.assign_leader_epoch(1).unwrap();
    follower
        .append_txn_marker(&marker(8, TxnResult::Commit), 1, 2_000)
        .unwrap();
    let leo = follower.log_end_offset();
    follower.set_high_watermark(leo);
    assert_eq!(follower.last_stable_offset(), leo);
}

#[test]
fn a_copy_starts_at_the_leaders_log_start_even_inside_a_batch() {
    // Goal: a follower started at the leader's log start offset copies from there; when that
    // offset lies inside a batch (DeleteRecords), the copy restarts at the batch's base, as
    // Kafka's follower does, instead of refusing forever.
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("t-0"), 1 << 20);
    for i in 0..3 {
        leader
            .append_as_leader(Bytes::from(batch(4, 1_000 + i, 10)), 0, 1_000)
            .unwrap();
    }
    let leo = leader.log_end_offset();
    leader.set_high_watermark(leo);
    leader.advance_log_start_offset(6, 1_000).unwrap();
    let mut follower = open(&dir.path().join("f").join("t-0"), 1 << 20);
    follower
        .truncate_fully_and_start_at(leader.log_start_offset())
        .unwrap();
    assert_eq!(follower.log_end_offset(), 6);
    let bytes = leader.read(6, 1 << 20, leo, true).unwrap();
    let outcome = follower.append_as_follower(bytes, 1_000).unwrap().unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (4, 11));
    assert_eq!(follower.log_end_offset(), leo);
    assert_eq!(follower.log_start_offset(), 4);
    // Copying it on, the owner moves its start up to the leader's.
    follower.set_high_watermark(leo);
    follower.advance_log_start_offset(6, 1_000).unwrap();
    assert_eq!(follower.log_start_offset(), 6);
}
