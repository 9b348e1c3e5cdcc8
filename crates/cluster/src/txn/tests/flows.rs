//! The coordinator end to end with a fake clock: each request in each state, with the codes
//! Kafka answers, fencing, timeouts, expiry, KIP-890, failed appends, and restarts.

use kafka_protocol::error::ResponseError::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{all, replay, Appends, Shell, View};
use crate::txn::coordinator::TxnRequest;
use crate::txn::output::TxnResult;
use crate::txn::state::TxnState;
use crate::txn::TxnConfig;

fn c(e: kafka_protocol::error::ResponseError) -> i16 {
    e.code()
}

/// A producer that has run InitProducerId for `txn` (TV1 requests).
fn ready(s: &mut Shell, txn: &str) -> (i64, i16) {
    let (err, pid, epoch) = s.init(4, txn, 60_000, None);
    assert_eq!(err, 0);
    (pid, epoch)
}

// Proves a new transactional id gets a producer id at epoch 0, written before it is answered,
// and a second InitProducerId (a new producer instance) bumps the epoch.
#[test]
fn init_producer_id_creates_then_bumps() {
    let mut s = Shell::new();
    let (err, pid, epoch) = s.init(4, "t", 60_000, None);
    assert_eq!((err, epoch), (0, 0));
    assert_eq!(pid, 1000);
    assert_eq!(s.log.len(), 1);
    assert_eq!(s.state("t"), Some(TxnState::Empty));
    let (err, pid2, epoch) = s.init(4, "t", 60_000, None);
    assert_eq!((err, pid2, epoch), (0, pid, 1));
    let d = s.describe("t");
    assert_eq!(
        (d.error_code, d.transaction_state.as_str(), d.producer_epoch),
        (0, "Empty", 1)
    );
    assert_eq!(d.transaction_start_time_ms, -1);
}

// Proves InitProducerId v3+ with the producer's id and epoch: the current epoch continues
// (bumped), the last epoch is a retry (same epoch), any other is fenced (INVALID_PRODUCER_EPOCH
// before v4), and a mismatched producer id is fenced.
#[test]
fn init_with_expected_epoch() {
    let mut s = Shell::new();
    let (pid, _) = ready(&mut s, "t");
    let (err, _, e1) = s.init(4, "t", 60_000, Some((pid, 0)));
    assert_eq!((err, e1), (0, 1));
    let (err, _, e_retry) = s.init(4, "t", 60_000, Some((pid, 0)));
    assert_eq!(
        (err, e_retry),
        (0, 1),
        "a retry of the call that bumped 0 -> 1"
    );
    assert_eq!(s.init(4, "t", 60_000, Some((pid, 7))).0, c(ProducerFenced));
    assert_eq!(
        s.init(3, "t", 60_000, Some((pid, 7))).0,
        c(InvalidProducerEpoch)
    );
    assert_eq!(
        s.init(4, "t", 60_000, Some((pid + 5, 1))).0,
        c(ProducerFenced)
    );
    assert_eq!(s.init(4, "t", 60_000, Some((pid, -1))).0, c(InvalidRequest));
}

// Proves InitProducerId's refusals: timeouts outside (0, transaction.max.timeout.ms], an empty
// id, 2PC (not enabled) and keepPreparedTxn (served only with 2PC).
#[test]
fn init_refusals() {
    let mut s = Shell::new();
    assert_eq!(s.init(4, "t", 0, None).0, c(InvalidTransactionTimeout));
    assert_eq!(
        s.init(4, "t", 900_001, None).0,
        c(InvalidTransactionTimeout)
    );
    assert_eq!(s.init(4, "t", 900_000, None).0, 0);
    assert_eq!(s.init(4, "", 1000, None).0, c(InvalidRequest));
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))))
        .with_transaction_timeout_ms(1000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let two_pc = req.clone().with_enable_2_pc(true);
    let ResponseKind::InitProducerId(r) = s.answer(6, TxnRequest::InitProducerId(two_pc)) else {
        panic!()
    };
    assert_eq!(r.error_code, c(TransactionalIdAuthorizationFailed));
    let keep = req.with_keep_prepared_txn(true);
    let ResponseKind::InitProducerId(r) = s.answer(6, TxnRequest::InitProducerId(keep)) else {
        panic!()
    };
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (c(UnsupportedVersion), -1, -1)
    );
}

// Proves a TV1 transaction (AddPartitionsToTxn v3, AddOffsetsToTxn, EndTxn v4) commits: the
// partitions join, EndTxn answers once PrepareCommit is written, markers go one per leader
// with the unchanged epoch, the id is busy (CONCURRENT_TRANSACTIONS) until they are written,
// and then CompleteCommit is written.
#[test]
fn tv1_commit_flow() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    let res = s.add(3, "t", pid, epoch, &[("a", 0), ("a", 1), ("b", 0)]);
    assert!(all(&res, 0) && res.len() == 3);
    assert_eq!(s.state("t"), Some(TxnState::Ongoing));
    // Adding what is already in the transaction writes nothing.
    let records = s.log.len();
    assert!(all(&s.add(3, "t", pid, epoch, &[("a", 1)]), 0));
    assert_eq!(s.log.len(), records);
    assert_eq!(s.add_offsets(3, "t", pid, epoch, "g"), 0);
    let d = s.describe("t");
    assert_eq!(
        d.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
        4
    );
    assert_eq!(s.end(4, "t", pid, epoch, true), (0, -1, -1));
    assert_eq!(s.state("t"), Some(TxnState::PrepareCommit));
    let mut leaders: Vec<(i32, usize)> = s
        .markers
        .iter()
        .map(|m| (m.leader, m.partitions.len()))
        .collect();
    leaders.sort();
    assert_eq!(leaders, vec![(1, 3), (2, 1)]);
    assert!(s.markers.iter().all(|m| m.result == TxnResult::Commit
        && m.producer_id == pid
        && m.producer_epoch == epoch
        && m.coordinator_epoch == 7
        && m.transaction_version == 0));
    assert_eq!(s.init(4, "t", 60_000, None).0, c(ConcurrentTransactions));
    assert_eq!(
        s.add(3, "t", pid, epoch, &[("a", 2)])[0].1,
        c(ConcurrentTransactions)
    );
    // A retried commit while markers are written.
    assert_eq!(s.end(4, "t", pid, epoch, true).0, c(ConcurrentTransactions));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
    let m = &s.c.transactions()["t"];
    assert_eq!((m.producer_epoch, m.partitions.len()), (epoch, 0));
    // TV1: a retried EndTxn of the same result is NONE; the other result is INVALID_TXN_STATE.
    assert_eq!(s.end(4, "t", pid, epoch, true).0, 0);
    assert_eq!(s.end(4, "t", pid, epoch, false).0, c(InvalidTxnState));
}

// Proves KIP-890: under TV2 (EndTxn v5) each commit answers a bumped epoch, markers carry it,
// a late AddPartitionsToTxn or verification with the previous epoch is fenced and cannot
// join the next transaction, and a retried EndTxn (previous epoch) is answered NONE.
#[test]
fn tv2_epoch_bump_fences_late_writes() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    assert!(all(&s.add_v4(5, "t", pid, epoch, false, &[("a", 0)]), 0));
    assert!(all(&s.add_v4(5, "t", pid, epoch, true, &[("a", 0)]), 0));
    assert!(all(
        &s.add_v4(5, "t", pid, epoch, true, &[("a", 1)]),
        c(TransactionAbortable)
    ));
    let (err, pid2, epoch2) = s.end(5, "t", pid, epoch, true);
    assert_eq!((err, pid2, epoch2), (0, pid, epoch + 1));
    assert!(s
        .markers
        .iter()
        .all(|m| m.producer_epoch == epoch + 1 && m.transaction_version == 2));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
    // The late write of the previous transaction.
    assert!(all(
        &s.add_v4(5, "t", pid, epoch, false, &[("a", 2)]),
        c(ProducerFenced)
    ));
    assert!(all(
        &s.add_v4(5, "t", pid, epoch, true, &[("a", 0)]),
        c(ProducerFenced)
    ));
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
    // A retry of the commit from the previous epoch, and a commit with nothing ongoing.
    assert_eq!(s.end(5, "t", pid, epoch, true), (0, pid, epoch + 1));
    assert_eq!(s.end(5, "t", pid, epoch + 1, true).0, c(InvalidTxnState));
    // The next transaction under the new epoch.
    assert!(all(
        &s.add_v4(5, "t", pid, epoch + 1, false, &[("a", 2)]),
        0
    ));
    let (err, _, epoch3) = s.end(5, "t", pid, epoch + 1, false);
    assert_eq!((err, epoch3), (0, epoch + 2));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
}

// Proves Kafka's TV2 table for Empty/CompleteAbort/CompleteCommit: an abort with nothing
// ongoing is allowed (epoch bump, no markers), a commit is INVALID_TXN_STATE, and a retry
// from an older epoch is fenced.
#[test]
fn tv2_end_with_nothing_ongoing() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    assert_eq!(s.end(5, "t", pid, epoch, true).0, c(InvalidTxnState));
    let (err, _, e1) = s.end(5, "t", pid, epoch, false);
    assert_eq!((err, e1), (0, epoch + 1));
    assert!(s.markers.is_empty());
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    // Retry (previous epoch) of the abort: NONE; a commit retry: INVALID_TXN_STATE.
    assert_eq!(s.end(5, "t", pid, epoch, false).0, 0);
    assert_eq!(s.end(5, "t", pid, epoch, true).0, c(InvalidTxnState));
    assert_eq!(s.end(5, "t", pid, e1, false).1, pid);
    assert_eq!(s.c.transactions()["t"].producer_epoch, e1 + 1);
    assert_eq!(s.end(5, "t", pid, 0, false).0, c(ProducerFenced));
}

// Proves EndTxn's refusals with Kafka's codes: unknown id and wrong producer id
// (INVALID_PRODUCER_ID_MAPPING), wrong epoch (INVALID_PRODUCER_EPOCH before v2,
// PRODUCER_FENCED after), Empty (INVALID_TXN_STATE under TV1), the other result while
// prepared (INVALID_TXN_STATE), an empty id (INVALID_REQUEST).
#[test]
fn end_txn_refusals() {
    let mut s = Shell::new();
    assert_eq!(
        s.end(4, "nobody", 1, 0, true).0,
        c(InvalidProducerIdMapping)
    );
    let (pid, epoch) = ready(&mut s, "t");
    assert_eq!(
        s.end(4, "t", pid + 1, epoch, true).0,
        c(InvalidProducerIdMapping)
    );
    assert_eq!(
        s.end(1, "t", pid, epoch + 1, true).0,
        c(InvalidProducerEpoch)
    );
    assert_eq!(s.end(2, "t", pid, epoch + 1, true).0, c(ProducerFenced));
    assert_eq!(s.end(4, "t", pid, epoch, true).0, c(InvalidTxnState));
    assert_eq!(s.end(4, "t", pid, epoch, false).0, c(InvalidTxnState));
    assert_eq!(s.end(4, "", pid, epoch, false).0, c(InvalidRequest));
    s.add(3, "t", pid, epoch, &[("a", 0)]);
    s.appends = Appends::Commit;
    assert_eq!(s.end(4, "t", pid, epoch, true).0, 0);
    // The completion is pending while markers are written: busy before the state is read.
    assert_eq!(
        s.end(4, "t", pid, epoch, false).0,
        c(ConcurrentTransactions)
    );
    s.write_markers();
    assert_eq!(s.end(4, "t", pid, epoch, false).0, c(InvalidTxnState));
}

// Proves AddPartitionsToTxn's refusals: unknown id or producer id (INVALID_PRODUCER_ID_MAPPING),
// stale epoch (INVALID_PRODUCER_EPOCH before v2), a partition that does not exist
// (UNKNOWN_TOPIC_OR_PARTITION, the others OPERATION_NOT_ATTEMPTED), and an empty id.
#[test]
fn add_partitions_refusals() {
    let mut s = Shell::new();
    assert!(all(
        &s.add(3, "nobody", 1, 0, &[("a", 0)]),
        c(InvalidProducerIdMapping)
    ));
    let (pid, epoch) = ready(&mut s, "t");
    assert!(all(
        &s.add(3, "t", pid + 1, epoch, &[("a", 0)]),
        c(InvalidProducerIdMapping)
    ));
    assert!(all(
        &s.add(1, "t", pid, epoch + 1, &[("a", 0)]),
        c(InvalidProducerEpoch)
    ));
    assert!(all(
        &s.add(2, "t", pid, epoch + 1, &[("a", 0)]),
        c(ProducerFenced)
    ));
    let res = s.add(3, "t", pid, epoch, &[("a", 0), ("a", 9), ("zz", 0)]);
    for ((topic, p), code) in &res {
        let expected = if topic == "a" && *p == 0 {
            c(OperationNotAttempted)
        } else {
            c(UnknownTopicOrPartition)
        };
        assert_eq!(*code, expected, "{topic}-{p}");
    }
    assert_eq!(s.state("t"), Some(TxnState::Empty));
    assert!(all(
        &s.add(3, "", pid, epoch, &[("a", 0)]),
        c(InvalidRequest)
    ));
    assert_eq!(
        s.add_offsets(1, "t", pid, epoch + 1, "g"),
        c(InvalidProducerEpoch)
    );
    assert_eq!(
        s.add_offsets(2, "t", pid, epoch + 1, "g"),
        c(ProducerFenced)
    );
}

// Proves a batched AddPartitionsToTxn (v4+) answers every transaction, each on its own, once
// all their appends are decided.
#[test]
fn batched_add_partitions_answers_each_transaction() {
    let mut s = Shell::new();
    let (p1, e1) = ready(&mut s, "t1");
    let (p2, e2) = ready(&mut s, "t2");
    let txn = |id: &str, pid: i64, epoch: i16, verify: bool| {
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_verify_only(verify)
            .with_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("a")))
                    .with_partitions(vec![0]),
            ])
    };
    s.appends = Appends::Hold;
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        txn("t1", p1, e1, false),
        txn("t2", p2, e2 + 3, false),
        txn("t2", p2, e2, true),
    ]);
    let (id, resp) = s.send(4, TxnRequest::AddPartitionsToTxn(req));
    assert!(resp.is_none(), "answered before t1's append is decided");
    s.commit_held();
    let Some(ResponseKind::AddPartitionsToTxn(r)) = s.responses.remove(&id) else {
        panic!()
    };
    let codes: Vec<(String, i16)> = r
        .results_by_transaction
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.topic_results[0].results_by_partition[0].partition_error_code,
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("t1".into(), 0),
            ("t2".into(), c(ProducerFenced)),
            ("t2".into(), c(TransactionAbortable))
        ]
    );
    // No transactions at all: answered at once.
    let (_, resp) = s.send(
        4,
        TxnRequest::AddPartitionsToTxn(AddPartitionsToTxnRequest::default()),
    );
    assert!(resp.is_some());
}

// Proves zombie fencing: InitProducerId while a transaction is ongoing aborts it under a
// bumped epoch and answers CONCURRENT_TRANSACTIONS; the old producer is then fenced; once
// the abort completes the new producer gets the epoch after the fenced one.
#[test]
fn init_fences_an_ongoing_transaction() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    s.add(3, "t", pid, epoch, &[("a", 0), ("b", 0)]);
    assert_eq!(s.init(4, "t", 60_000, None).0, c(ConcurrentTransactions));
    assert_eq!(s.state("t"), Some(TxnState::PrepareAbort));
    assert_eq!(s.c.transactions()["t"].producer_epoch, epoch + 1);
    assert!(s
        .markers
        .iter()
        .all(|m| m.result == TxnResult::Abort && m.producer_epoch == epoch + 1));
    assert_eq!(s.end(4, "t", pid, epoch, true).0, c(ProducerFenced));
    assert_eq!(s.init(4, "t", 60_000, None).0, c(ConcurrentTransactions));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    let (err, _, new_epoch) = s.init(4, "t", 60_000, None);
    assert_eq!((err, new_epoch), (0, epoch + 2));
    assert!(all(
        &s.add(3, "t", pid, epoch, &[("a", 0)]),
        c(ProducerFenced)
    ));
}

// Proves the timeout sweep: an ongoing transaction older than its timeout is aborted under a
// bumped epoch at the next check (transaction.abort.timed.out.transaction.cleanup.interval.ms),
// not before; at transaction.version 2 the abort bumps once (TV2), at 0 through the fence.
#[test]
fn timed_out_transactions_abort() {
    for level in [0, 2] {
        let mut s = Shell::with_config(TxnConfig {
            transaction_state_partitions: 1,
            transaction_version_level: level,
            ..TxnConfig::default()
        });
        let (err, pid, epoch) = s.init(4, "t", 15_000, None);
        assert_eq!(err, 0);
        s.add(3, "t", pid, epoch, &[("a", 0)]);
        s.tick(10_000);
        assert_eq!(
            s.state("t"),
            Some(TxnState::Ongoing),
            "checked at 10s, times out after 15s"
        );
        s.tick(10_000);
        assert_eq!(s.state("t"), Some(TxnState::PrepareAbort), "level {level}");
        let m = &s.c.transactions()["t"];
        assert_eq!(m.producer_epoch, epoch + 1);
        assert_eq!(m.client_version, level);
        assert_eq!(s.end(4, "t", pid, epoch, true).0, c(ProducerFenced));
        s.write_markers();
        assert_eq!(s.state("t"), Some(TxnState::CompleteAbort));
    }
}

// Proves transactional.id.expiration.ms: an idle id expires (a tombstone) at the first check
// after it is old enough; an ongoing one does not.
#[test]
fn idle_transactional_ids_expire() {
    let mut s = Shell::with_config(TxnConfig {
        transaction_state_partitions: 1,
        transactional_id_expiration_ms: 5_000_000,
        ..TxnConfig::default()
    });
    ready(&mut s, "idle");
    let (pid, epoch) = ready(&mut s, "busy");
    s.add(3, "busy", pid, epoch, &[("a", 0)]);
    s.tick(3_600_000);
    assert!(s.state("idle").is_some());
    s.tick(3_600_000);
    assert!(s.state("idle").is_none());
    assert!(s.log.last().unwrap().1.is_none(), "a tombstone");
    assert_eq!(s.describe("idle").error_code, c(TransactionalIdNotFound));
    // "busy" timed out and was aborted; it expires only later, from its last update.
    assert!(s.state("busy").is_some());
}

// Proves nothing is visible before its append commits: while the record is held the old
// state is described and the id is busy; a failed append leaves the old state and answers
// Kafka's mapped error.
#[test]
fn state_changes_only_when_appends_commit() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    s.appends = Appends::Hold;
    let (id, resp) = s.send(
        3,
        TxnRequest::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str("t")))
                .with_v3_and_below_producer_id(pid.into())
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("a")))
                        .with_partitions(vec![0]),
                ]),
        ),
    );
    assert!(resp.is_none());
    assert_eq!(s.describe("t").transaction_state.as_str(), "Empty");
    assert_eq!(s.init(4, "t", 60_000, None).0, c(ConcurrentTransactions));
    s.commit_held();
    assert!(s.responses.remove(&id).is_some());
    assert_eq!(s.describe("t").transaction_state.as_str(), "Ongoing");
    // Failures, mapped as Kafka maps them.
    for (log_error, answered) in [
        (c(NotEnoughReplicas), c(CoordinatorNotAvailable)),
        (c(NotLeaderOrFollower), c(NotCoordinator)),
        (c(MessageTooLarge), c(UnknownServerError)),
    ] {
        s.appends = Appends::Fail(log_error);
        assert_eq!(s.end(4, "t", pid, epoch, true).0, answered);
        assert_eq!(s.state("t"), Some(TxnState::Ongoing));
        assert_eq!(s.c.transactions()["t"].pending, None);
    }
    s.appends = Appends::Commit;
    assert_eq!(s.end(4, "t", pid, epoch, true).0, 0);
}

// Proves a completion whose append fails with a retriable error is written again after the
// backoff, and the transaction completes.
#[test]
fn failed_completion_is_retried() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    s.add(3, "t", pid, epoch, &[("a", 0)]);
    s.end(4, "t", pid, epoch, true);
    s.appends = Appends::Fail(c(RequestTimedOut));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::PrepareCommit));
    s.appends = Appends::Commit;
    s.tick(200);
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
}

// Proves a restart replays __transaction_state into the same metadata, and a transaction left
// in PrepareCommit gets its markers again and completes.
#[test]
fn restart_finishes_prepared_transactions() {
    let mut s = Shell::new();
    let (pid, epoch) = ready(&mut s, "t");
    s.add(3, "t", pid, epoch, &[("a", 0), ("b", 0)]);
    let (p2, e2) = ready(&mut s, "u");
    s.add(3, "u", p2, e2, &[("a", 1)]);
    assert_eq!(s.end(4, "t", pid, epoch, true).0, 0);
    assert_eq!(s.state("t"), Some(TxnState::PrepareCommit));
    // The broker dies before the markers: a new coordinator loads the log.
    let config = s.config.clone();
    let mut c2 = replay(&config, &s.log);
    for (id, m) in s.c.transactions() {
        let r = &c2.transactions()[id];
        assert_eq!(
            (r.producer_id, r.producer_epoch, r.state, &r.partitions),
            (m.producer_id, m.producer_epoch, m.state, &m.partitions)
        );
    }
    let out = c2.finish_replay(s.now, &View);
    s.c = c2;
    s.markers.clear();
    s.run(out);
    assert_eq!(s.markers.len(), 2, "one marker write per leader");
    assert_eq!(s.end(4, "t", pid, epoch, true).0, c(ConcurrentTransactions));
    s.write_markers();
    assert_eq!(s.state("t"), Some(TxnState::CompleteCommit));
    assert_eq!(s.state("u"), Some(TxnState::Ongoing));
    // And the log replays again to the same state.
    let again = replay(&config, &s.log);
    assert_eq!(again.transactions()["t"].state, TxnState::CompleteCommit);
}

// Proves requests before loading finished get COORDINATOR_LOAD_IN_PROGRESS, and ids of
// another partition NOT_COORDINATOR.
#[test]
fn loading_and_not_coordinator() {
    let config = TxnConfig::default();
    let mut loading = crate::txn::TxnCoordinator::new(config.clone(), 0, 1);
    let out = loading.handle(
        1,
        0,
        TxnRequest::ListTransactions(ListTransactionsRequest::default()),
        0,
        &View,
    );
    let [crate::txn::Output::Respond(_, ResponseKind::ListTransactions(r))] = &out[..] else {
        panic!()
    };
    assert_eq!(r.error_code, c(CoordinatorLoadInProgress));
    // 50 partitions: find an id this partition-0 coordinator owns and one it does not.
    let mut s = Shell::with_config(config);
    let owned = (0..1000)
        .map(|i| format!("id{i}"))
        .find(|id| crate::txn::transaction_partition_for(id, 50) == 0)
        .unwrap();
    let other = (0..1000)
        .map(|i| format!("id{i}"))
        .find(|id| crate::txn::transaction_partition_for(id, 50) != 0)
        .unwrap();
    assert_eq!(s.init(4, &owned, 1000, None).0, 0);
    assert_eq!(s.init(4, &other, 1000, None).0, c(NotCoordinator));
    assert_eq!(s.describe(&other).error_code, c(NotCoordinator));
}

// Proves producer ids come from blocks the shell supplies: without one InitProducerId answers
// COORDINATOR_LOAD_IN_PROGRESS and asks once; the next block is asked for at 90% of the
// current one, and used when it runs out.
#[test]
fn producer_id_blocks() {
    let mut s = Shell::with_config(TxnConfig {
        transaction_state_partitions: 1,
        ..TxnConfig::default()
    });
    // Use up the first block (1000 ids): idempotent producers take one each.
    let idempotent = |s: &mut Shell| {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(1000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        match s.answer(4, TxnRequest::InitProducerId(req)) {
            ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0),
            _ => panic!(),
        }
    };
    for i in 0..900 {
        assert_eq!(idempotent(&mut s), (0, 1000 + i));
    }
    assert_eq!(s.need_ids, 0);
    assert_eq!(idempotent(&mut s), (0, 1900));
    assert_eq!(s.need_ids, 1, "asked at 90%");
    for _ in 0..99 {
        idempotent(&mut s);
    }
    assert_eq!(idempotent(&mut s).0, c(CoordinatorLoadInProgress));
    assert_eq!(s.init(4, "t", 1000, None).0, c(CoordinatorLoadInProgress));
    assert_eq!(s.need_ids, 1, "asked once until answered");
    s.add_block();
    assert_eq!(idempotent(&mut s), (0, 2000));
}

// Proves ListTransactions' filters (v0 states and producer ids with unknown states reported,
// v1 duration, v2 id pattern matched whole, an invalid pattern refused) and DescribeTransactions'
// answer for an unknown id.
#[test]
fn list_and_describe() {
    let mut s = Shell::new();
    let (p1, e1) = ready(&mut s, "orders-1");
    ready(&mut s, "orders-2");
    ready(&mut s, "payments");
    s.add(3, "orders-1", p1, e1, &[("a", 0)]);
    s.now += 10_000;
    let list = |s: &mut Shell, version: i16, req: ListTransactionsRequest| match s
        .answer(version, TxnRequest::ListTransactions(req))
    {
        ResponseKind::ListTransactions(r) => r,
        _ => panic!(),
    };
    let names = |r: &ListTransactionsResponse| {
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect::<Vec<_>>()
    };
    let r = list(&mut s, 0, ListTransactionsRequest::default());
    assert_eq!(names(&r), vec!["orders-1", "orders-2", "payments"]);
    let r = list(
        &mut s,
        0,
        ListTransactionsRequest::default().with_state_filters(vec![
            StrBytes::from_static_str("Ongoing"),
            StrBytes::from_static_str("Bogus"),
        ]),
    );
    assert_eq!(names(&r), vec!["orders-1"]);
    assert_eq!(
        r.unknown_state_filters,
        vec![StrBytes::from_static_str("Bogus")]
    );
    let r = list(
        &mut s,
        0,
        ListTransactionsRequest::default().with_producer_id_filters(vec![p1.into()]),
    );
    assert_eq!(names(&r), vec!["orders-1"]);
    // Running longer than 5s: only the ongoing one has a start time that old.
    let r = list(
        &mut s,
        1,
        ListTransactionsRequest::default()
            .with_duration_filter(5_000)
            .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]),
    );
    assert_eq!(names(&r), vec!["orders-1"]);
    let r = list(
        &mut s,
        1,
        ListTransactionsRequest::default()
            .with_duration_filter(20_000)
            .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]),
    );
    assert!(names(&r).is_empty());
    let r = list(
        &mut s,
        2,
        ListTransactionsRequest::default()
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("orders-.*"))),
    );
    assert_eq!(names(&r), vec!["orders-1", "orders-2"]);
    let r = list(
        &mut s,
        2,
        ListTransactionsRequest::default()
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("orders"))),
    );
    assert!(names(&r).is_empty(), "the pattern matches whole ids");
    let r = list(
        &mut s,
        2,
        ListTransactionsRequest::default()
            .with_transactional_id_pattern(Some(StrBytes::from_static_str("(("))),
    );
    assert_eq!(r.error_code, c(InvalidRegularExpression));
    let d = s.describe("nobody");
    assert_eq!(
        (d.error_code, d.producer_id.0),
        (c(TransactionalIdNotFound), 0)
    );
    let d = s.describe("orders-1");
    assert_eq!(
        (
            d.transaction_state.as_str(),
            d.transaction_timeout_ms,
            d.topics.len()
        ),
        ("Ongoing", 60_000, 1)
    );
    assert_eq!(s.describe("").error_code, c(InvalidRequest));
}

/// A shell whose coordinator loaded `txn` at `epoch` in `state` (partitions "a"-0 when
/// ongoing), as a log written long ago would hold it.
fn loaded_at(txn: &str, epoch: i16, state: TxnState, client_version: i16) -> Shell {
    let mut s = Shell::new();
    let transit = crate::txn::TxnTransit {
        producer_id: 500,
        prev_producer_id: 500,
        next_producer_id: -1,
        producer_epoch: epoch,
        last_producer_epoch: -1,
        timeout_ms: 60_000,
        state,
        partitions: if state == TxnState::Ongoing {
            std::collections::BTreeSet::from([("a".to_string(), 0)])
        } else {
            Default::default()
        },
        start_ms: if state == TxnState::Empty { -1 } else { s.now },
        last_update_ms: s.now,
        client_version,
    };
    let record = (
        crate::txn::records::key(txn),
        Some(crate::txn::records::value(&transit, 1)),
    );
    let mut c = crate::txn::TxnCoordinator::new(s.config.clone(), 0, 7);
    c.replay(&record.0, record.1.as_deref()).unwrap();
    let out = c.finish_replay(s.now, &View);
    s.c = c;
    s.run(out);
    s.add_block();
    s.log.push(record);
    s
}

// Proves an exhausted epoch moves the transactional id to a new producer id at epoch 0
// (InitProducerId's rotation), as Kafka's `prepareProducerIdRotation`.
#[test]
fn exhausted_epoch_rotates_the_producer_id() {
    let mut s = loaded_at("t", i16::MAX - 1, TxnState::CompleteCommit, 0);
    let (err, pid, epoch) = s.init(4, "t", 60_000, None);
    assert_eq!((err, epoch), (0, 0));
    assert_ne!(pid, 500);
    let m = &s.c.transactions()["t"];
    assert_eq!((m.prev_producer_id, m.last_producer_epoch), (500, -1));
}

// Proves KIP-890's overflow: a TV2 commit at the last epoch moves the producer to a new
// producer id at epoch 0 once complete (answered at once), and a retry of that commit from
// the old producer id and epoch is recognised and answered with the new ones.
#[test]
fn tv2_commit_at_the_last_epoch_moves_to_a_new_producer_id() {
    let mut s = loaded_at("t", i16::MAX - 1, TxnState::Ongoing, 2);
    let (err, new_pid, new_epoch) = s.end(5, "t", 500, i16::MAX - 1, true);
    assert_eq!((err, new_epoch), (0, 0));
    assert_ne!(new_pid, 500);
    // Markers carry the bumped, last epoch of the old producer id.
    assert!(s
        .markers
        .iter()
        .all(|m| m.producer_id == 500 && m.producer_epoch == i16::MAX));
    s.write_markers();
    let m = &s.c.transactions()["t"];
    assert_eq!(
        (m.state, m.producer_id, m.producer_epoch, m.prev_producer_id),
        (TxnState::CompleteCommit, new_pid, 0, 500)
    );
    assert_eq!(s.end(5, "t", 500, i16::MAX - 1, true), (0, new_pid, 0));
    // The old producer id cannot start anything.
    assert!(all(
        &s.add_v4(5, "t", 500, i16::MAX - 1, false, &[("a", 1)]),
        c(InvalidProducerIdMapping)
    ));
    assert!(all(&s.add_v4(5, "t", new_pid, 0, false, &[("a", 1)]), 0));
}

// Proves a transaction the log holds as Ongoing still times out after a restart, from its
// start time.
#[test]
fn loaded_ongoing_transaction_times_out() {
    let mut s = loaded_at("t", 3, TxnState::Ongoing, 0);
    s.tick(70_000);
    assert_eq!(s.state("t"), Some(TxnState::PrepareAbort));
    s.write_markers();
    let m = &s.c.transactions()["t"];
    assert_eq!((m.state, m.producer_epoch), (TxnState::CompleteAbort, 4));
}

// Proves verify-only AddPartitionsToTxn (a partition leader checking a TV2 produce) answers
// as Kafka's `handleVerifyPartitionsInTransaction`: unknown id or producer id
// (INVALID_PRODUCER_ID_MAPPING), another epoch (PRODUCER_FENCED), a transaction being ended
// (CONCURRENT_TRANSACTIONS), a partition outside it (TRANSACTION_ABORTABLE), and writes nothing.
#[test]
fn verify_only_answers_as_kafka() {
    let mut s = Shell::new();
    assert!(all(
        &s.add_v4(5, "nobody", 1, 0, true, &[("a", 0)]),
        c(InvalidProducerIdMapping)
    ));
    let (pid, epoch) = ready(&mut s, "t");
    let records = s.log.len();
    assert!(all(
        &s.add_v4(5, "t", pid, epoch, true, &[("a", 0)]),
        c(TransactionAbortable)
    ));
    assert!(all(
        &s.add_v4(5, "t", pid + 1, epoch, true, &[("a", 0)]),
        c(InvalidProducerIdMapping)
    ));
    assert!(all(
        &s.add_v4(5, "t", pid, epoch + 1, true, &[("a", 0)]),
        c(ProducerFenced)
    ));
    assert_eq!(s.log.len(), records, "verification writes nothing");
    assert!(all(&s.add_v4(5, "t", pid, epoch, false, &[("a", 0)]), 0));
    let (_, _, bumped) = s.end(5, "t", pid, epoch, true);
    assert_eq!(s.state("t"), Some(TxnState::PrepareCommit));
    assert!(all(
        &s.add_v4(5, "t", pid, bumped, true, &[("a", 0)]),
        c(ConcurrentTransactions)
    ));
    assert!(all(
        &s.add_v4(5, "", pid, bumped, true, &[("a", 0)]),
        c(InvalidRequest)
    ));
}
