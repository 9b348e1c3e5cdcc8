//! Kafka's transition rules on one transactional id's metadata: which prepared transitions
//! each state allows, and what `completeTransitionTo` accepts.

use std::collections::BTreeSet;

use crate::txn::metadata::{TransitError, TxnMetadata};
use crate::txn::state::TxnState;

fn meta_in(state: TxnState) -> TxnMetadata {
    let mut m = TxnMetadata::new("t".into(), 10, 60_000, 1_000);
    m.producer_epoch = 3;
    m.state = state;
    if !matches!(state, TxnState::Empty) {
        m.start_ms = 500;
    }
    if matches!(
        state,
        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
    ) {
        m.partitions = BTreeSet::from([("a".to_string(), 0)]);
    }
    m
}

/// Kafka's `VALID_PREVIOUS_STATES`, written out from its source.
fn kafka_valid(from: TxnState, to: TxnState) -> bool {
    use TxnState::*;
    match to {
        Empty => matches!(from, Empty | CompleteCommit | CompleteAbort),
        Ongoing => matches!(from, Ongoing | Empty | CompleteCommit | CompleteAbort),
        PrepareCommit => matches!(from, Ongoing),
        PrepareAbort => matches!(
            from,
            Ongoing | PrepareEpochFence | Empty | CompleteCommit | CompleteAbort
        ),
        CompleteCommit => matches!(from, PrepareCommit),
        CompleteAbort => matches!(from, PrepareAbort),
        Dead => matches!(from, Empty | CompleteAbort | CompleteCommit),
        PrepareEpochFence => matches!(from, Ongoing),
    }
}

// Proves every prepared transition from every state is allowed exactly when Kafka's table
// allows it, and a refused one leaves nothing pending.
#[test]
fn every_transition_from_every_state_as_kafka() {
    use TxnState::*;
    let added = BTreeSet::from([("b".to_string(), 0)]);
    for from in TxnState::ALL {
        // Each prepare and the state it targets from `from` (prepareComplete targets
        // CompleteCommit from PrepareCommit and CompleteAbort otherwise).
        let complete_target = if from == PrepareCommit {
            CompleteCommit
        } else {
            CompleteAbort
        };
        type Prepare<'a> =
            Box<dyn Fn(&mut TxnMetadata) -> Result<crate::txn::TxnTransit, TransitError> + 'a>;
        let cases: [(TxnState, Prepare); 7] = [
            (
                Empty,
                Box::new(|m| m.prepare_increment_producer_epoch(1000, None, 2_000)),
            ),
            (
                Ongoing,
                Box::new(|m| m.prepare_add_partitions(&added, 2_000, 0)),
            ),
            (
                PrepareCommit,
                Box::new(|m| m.prepare_abort_or_commit(PrepareCommit, 0, -1, 2_000, false)),
            ),
            (
                PrepareAbort,
                Box::new(|m| m.prepare_abort_or_commit(PrepareAbort, 2, -1, 2_000, false)),
            ),
            (complete_target, Box::new(|m| m.prepare_complete(2_000))),
            (Dead, Box::new(|m| m.prepare_dead())),
            (
                PrepareEpochFence,
                Box::new(|m| m.prepare_fence_producer_epoch()),
            ),
        ];
        for (to, prepare) in cases.iter() {
            let mut m = meta_in(from);
            let result = prepare(&mut m);
            assert_eq!(
                result.is_ok(),
                kafka_valid(from, *to),
                "{from:?} -> {to:?}: {result:?}"
            );
            if result.is_err() {
                assert_eq!(
                    m.pending, None,
                    "{from:?} -> {to:?} refused but left a pending state"
                );
            } else {
                assert_eq!(m.pending, Some(*to));
            }
        }
    }
}

// Proves a pending transition refuses any other until it completes, as Kafka's
// `prepareTransitionTo` does.
#[test]
fn one_pending_transition_at_a_time() {
    let mut m = meta_in(TxnState::Empty);
    let t = m
        .prepare_add_partitions(&BTreeSet::from([("a".to_string(), 1)]), 2_000, 0)
        .unwrap();
    assert!(matches!(m.prepare_dead(), Err(TransitError::Illegal(_))));
    m.complete_transition(&t).unwrap();
    assert_eq!(
        (m.state, m.pending, m.start_ms),
        (TxnState::Ongoing, None, 2_000)
    );
    assert!(m
        .prepare_abort_or_commit(TxnState::PrepareCommit, 0, -1, 3_000, false)
        .is_ok());
}

// Proves `completeTransitionTo` refuses a record that is not the prepared transition: another
// target state, a lost partition, a changed timeout, an unexpected epoch.
#[test]
fn completion_checks_as_kafka() {
    let mut m = meta_in(TxnState::Ongoing);
    let t = m
        .prepare_abort_or_commit(TxnState::PrepareCommit, 0, -1, 2_000, false)
        .unwrap();
    let mut other = t.clone();
    other.state = TxnState::PrepareAbort;
    assert!(m.clone().complete_transition(&other).is_err());
    let mut lost = t.clone();
    lost.partitions.clear();
    assert!(m.clone().complete_transition(&lost).is_err());
    let mut timeout = t.clone();
    timeout.timeout_ms += 1;
    assert!(m.clone().complete_transition(&timeout).is_err());
    let mut epoch = t.clone();
    epoch.producer_epoch += 1;
    assert!(m.clone().complete_transition(&epoch).is_err());
    m.complete_transition(&t).unwrap();
    // Nothing pending: completing again is refused.
    assert!(m.complete_transition(&t).is_err());
}

// Proves InitProducerId's epoch rules: a new producer bumps and forgets the last epoch; the
// same producer continuing bumps and remembers it; a retry of a success gets the same epoch;
// any other epoch is fenced.
#[test]
fn increment_producer_epoch_rules() {
    let mut m = meta_in(TxnState::CompleteCommit);
    m.last_producer_epoch = 2;
    let t = m
        .clone()
        .prepare_increment_producer_epoch(1, None, 9)
        .unwrap();
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (4, -1));
    let t = m
        .clone()
        .prepare_increment_producer_epoch(1, Some(3), 9)
        .unwrap();
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (4, 3));
    let t = m
        .clone()
        .prepare_increment_producer_epoch(1, Some(2), 9)
        .unwrap();
    assert_eq!((t.producer_epoch, t.last_producer_epoch), (3, 2));
    assert_eq!(
        m.clone().prepare_increment_producer_epoch(1, Some(1), 9),
        Err(TransitError::Fenced)
    );
    m.producer_epoch = i16::MAX - 1;
    assert!(matches!(
        m.prepare_increment_producer_epoch(1, None, 9),
        Err(TransitError::Illegal(_))
    ));
}

// Proves KIP-890's bump: a TV2 commit writes epoch + 1 and remembers the old one; at
// i16::MAX an abort goes through unbumped; TV0 keeps the epoch.
#[test]
fn tv2_end_bumps_the_epoch() {
    let m = meta_in(TxnState::Ongoing);
    let t = m
        .clone()
        .prepare_abort_or_commit(TxnState::PrepareCommit, 2, -1, 9, false)
        .unwrap();
    assert_eq!(
        (t.producer_epoch, t.last_producer_epoch, t.client_version),
        (4, 3, 2)
    );
    let t = m
        .clone()
        .prepare_abort_or_commit(TxnState::PrepareCommit, 0, -1, 9, false)
        .unwrap();
    assert_eq!(t.producer_epoch, 3);
    let mut max = m.clone();
    max.producer_epoch = i16::MAX;
    let t = max
        .prepare_abort_or_commit(TxnState::PrepareAbort, 2, 77, 9, false)
        .unwrap();
    assert_eq!((t.producer_epoch, t.next_producer_id), (i16::MAX, 77));
    // The completion then moves to the next producer id at epoch 0.
    let mut prepared = meta_in(TxnState::PrepareAbort);
    prepared.client_version = 2;
    prepared.next_producer_id = 77;
    let c = prepared.prepare_complete(10).unwrap();
    assert_eq!(
        (
            c.producer_id,
            c.producer_epoch,
            c.prev_producer_id,
            c.next_producer_id
        ),
        (77, 0, 10, -1)
    );
}
