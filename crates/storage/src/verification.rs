//! Transaction verification guards for one partition (KIP-890 part 1, Kafka's
//! `VerificationGuard` and `VerificationStateEntry`).
//!
//! Before a producer's first transactional batch on a partition is appended, the broker asks the
//! transaction coordinator whether the partition is part of the producer's ongoing transaction.
//! Between that question and the append the transaction may end: it times out, the coordinator
//! aborts it and writes an ABORT marker here, and the producer's next transaction starts without
//! this partition. A stale "yes" would then open a transaction the coordinator knows nothing of,
//! which no marker ever ends (a hanging transaction that pins the last stable offset). So the
//! partition hands out a unique guard when verification starts; a marker or the transaction's
//! first batch clears it; the append is refused unless the guard it carries is still the one the
//! partition holds (the ABA case: a new guard after the marker does not match the old one).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many producers may be mid-verification on one partition. A guard is created per producer
/// that starts a transaction here and normally lives one coordinator round trip; one that was
/// never used (the producer died, or the coordinator refused) is dropped, oldest first, when the
/// map is full. A dropped guard's producer gets INVALID_TXN_STATE and retries with a new one.
pub const VERIFICATION_ENTRIES_MAX: usize = 10_000;

/// Unique across the process, so a guard from one verification never matches another's.
static NEXT_GUARD: AtomicU64 = AtomicU64::new(1);

/// A verification in progress, identified by a number no other verification gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerificationGuard(u64);

impl VerificationGuard {
    fn new() -> VerificationGuard {
        VerificationGuard(NEXT_GUARD.fetch_add(1, Ordering::Relaxed))
    }
}

/// What an append carries about verification (Kafka's `requestVerificationGuard`, plus whether
/// `transaction.partition.verification.enable` asks for the check at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// No check: verification is disabled, or the append's origin is not checked.
    Off,
    /// Checked: the guard verification handed out (`None`: Kafka's sentinel, no verification
    /// was started, which passes only for a transaction already ongoing here).
    Guard(Option<VerificationGuard>),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    guard: VerificationGuard,
    /// When verification started, for expiry.
    started_ms: i64,
    /// The epoch verification started at (raised by a later start at a newer epoch).
    epoch: i16,
    /// Whether the producer bumps its epoch per transaction (transaction version 2).
    supports_epoch_bump: bool,
}

/// The partition's verifications in progress, by producer id.
#[derive(Debug, Default)]
pub(crate) struct Verifications {
    entries: HashMap<i64, Entry>,
    /// Guard -> producer, oldest guard first: the eviction order.
    by_age: BTreeMap<VerificationGuard, i64>,
}

impl Verifications {
    /// Kafka's `maybeCreateVerificationStateEntry`: the producer's guard, created if it has
    /// none; a start at a newer epoch moves the entry to that epoch.
    pub(crate) fn start(
        &mut self,
        producer_id: i64,
        epoch: i16,
        supports_epoch_bump: bool,
        now_ms: i64,
    ) -> VerificationGuard {
        if let Some(entry) = self.entries.get_mut(&producer_id) {
            entry.epoch = entry.epoch.max(epoch);
            return entry.guard;
        }
        while self.entries.len() >= VERIFICATION_ENTRIES_MAX {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let guard = VerificationGuard::new();
        self.entries.insert(
            producer_id,
            Entry {
                guard,
                started_ms: now_ms,
                epoch,
                supports_epoch_bump,
            },
        );
        self.by_age.insert(guard, producer_id);
        debug_assert_eq!(self.entries.len(), self.by_age.len());
        guard
    }

    /// Kafka's `VerificationGuard.verify`: the request's guard is the producer's current one.
    /// The sentinel never verifies.
    pub(crate) fn verifies(&self, producer_id: i64, request: Option<VerificationGuard>) -> bool {
        match (self.entries.get(&producer_id), request) {
            (Some(entry), Some(guard)) => entry.guard == guard,
            _ => false,
        }
    }

    /// After a transactional batch or marker of the producer was appended
    /// (`UnifiedLog.updateProducers`): the transaction either has its first offset now or is
    /// complete, so the guard has served. Kept only for a transaction-version-2 marker at the
    /// entry's epoch: the producer has already started verifying its next transaction.
    pub(crate) fn on_transactional_append(&mut self, producer_id: i64, control: bool, epoch: i16) {
        let Some(entry) = self.entries.get(&producer_id) else {
            return;
        };
        let next_started = entry.supports_epoch_bump && control && epoch == entry.epoch;
        if !next_started {
            self.by_age.remove(&entry.guard);
            self.entries.remove(&producer_id);
        }
    }

    /// Kafka's expiry of lingering verification entries: those started `expiration_ms` or
    /// more before `now_ms` (a producer that never came back) go.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        let by_age = &mut self.by_age;
        self.entries.retain(|_, e| {
            let keep = now_ms.saturating_sub(e.started_ms) < expiration_ms;
            if !keep {
                by_age.remove(&e.guard);
            }
            keep
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_verifies_until_its_transaction_starts_or_ends() {
        let mut v = Verifications::default();
        let guard = v.start(7, 3, false, 0);
        assert!(v.verifies(7, Some(guard)));
        assert_eq!(v.start(7, 3, false, 0), guard, "one guard per producer");
        assert!(!v.verifies(7, None), "the sentinel never verifies");
        assert!(!v.verifies(8, Some(guard)), "another producer's guard");
        // The ABA case: a marker ends the transaction, verification starts again, and the
        // stale guard no longer matches.
        v.on_transactional_append(7, true, 3);
        assert!(!v.verifies(7, Some(guard)));
        let again = v.start(7, 3, false, 0);
        assert_ne!(again, guard);
        assert!(!v.verifies(7, Some(guard)));
        assert!(v.verifies(7, Some(again)));
    }

    #[test]
    fn a_tv2_marker_at_the_entry_epoch_keeps_the_next_transactions_guard() {
        let mut v = Verifications::default();
        // Epoch 5 began verifying its next transaction before the previous one's marker, which
        // TV2 writes at the bumped epoch 5, landed.
        let guard = v.start(1, 5, true, 0);
        v.on_transactional_append(1, true, 5);
        assert!(v.verifies(1, Some(guard)));
        // Its first data batch uses it up.
        v.on_transactional_append(1, false, 5);
        assert!(!v.verifies(1, Some(guard)));
        // A marker at another epoch clears it too.
        let guard = v.start(1, 6, true, 0);
        v.on_transactional_append(1, true, 5);
        assert!(!v.verifies(1, Some(guard)));
    }

    #[test]
    fn lingering_guards_expire() {
        let mut v = Verifications::default();
        let old = v.start(1, 0, false, 1_000);
        let young = v.start(2, 0, false, 5_000);
        v.remove_expired(6_000, 5_000);
        assert!(!v.verifies(1, Some(old)));
        assert!(v.verifies(2, Some(young)));
        assert_eq!(v.len(), 1);
        // The eviction order forgot it too: filling up drops the young one first.
        assert_eq!(v.by_age.len(), 1);
    }

    #[test]
    fn the_map_is_bounded_and_drops_the_oldest_guard() {
        let mut v = Verifications::default();
        let first = v.start(0, 0, false, 0);
        for pid in 1..=VERIFICATION_ENTRIES_MAX as i64 {
            v.start(pid, 0, false, 0);
        }
        assert_eq!(v.len(), VERIFICATION_ENTRIES_MAX);
        assert!(!v.verifies(0, Some(first)), "the oldest was dropped");
        let newest = VERIFICATION_ENTRIES_MAX as i64;
        let guard = v.start(newest, 0, false, 0);
        assert!(v.verifies(newest, Some(guard)));
    }
}
