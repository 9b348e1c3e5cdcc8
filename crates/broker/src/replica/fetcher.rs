//! The replica fetcher's decisions for one partition being moved to this broker (see
//! `runnel_cluster::reassignment` and docs/design.md, "Reassignment"), as a sans-IO state
//! machine: the registration and each fetch's outcome in, the next step out. The I/O shell
//! (a connection to the old replica's inter-broker listener, `PartitionLog::append_as_follower`,
//! `MetadataManager::submit`) carries the steps out.
//!
//! The rule that makes the move lose no acknowledged record: the old replica's log stops
//! growing before the copy's last fetch. While copying, the old replica leads; once a fetch
//! brings the copy to the old replica's high watermark or comes back empty (caught up), the
//! target asks for the fence. Fetches then
//! carry the fenced leader epoch, which the old replica refuses (UNKNOWN_LEADER_EPOCH, retried)
//! until it applied the fence, after which it takes no more produce; a fetch at the copy's log
//! end that comes back empty then proves the copy holds every record the old replica ever
//! wrote, and the target asks to complete.

use runnel_cluster::metadata::PartitionImage;
use runnel_cluster::reassignment::{ongoing_move, MovePhase};

/// Kafka's `replica.fetch.max.bytes` default: bytes asked per partition per fetch (the first
/// batch comes whole even when larger).
pub const REPLICA_FETCH_MAX_BYTES: i32 = 1_048_576;
/// Kafka's `replica.fetch.response.max.bytes` default: bytes asked per fetch response.
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES: i32 = 10_485_760;
/// Kafka's `replica.fetch.wait.max.ms` default: how long the old replica may hold a fetch
/// that has nothing new.
pub const REPLICA_FETCH_WAIT_MAX_MS: i32 = 500;
/// Kafka's `replica.fetch.min.bytes` default.
pub const REPLICA_FETCH_MIN_BYTES: i32 = 1;
/// Kafka's `replica.fetch.backoff.ms` default: the pause after a fetch failed.
pub const REPLICA_FETCH_BACKOFF_MS: u64 = 1_000;

/// The replica fetcher's settings (Kafka's names; the defaults are Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub max_bytes: i32,
    pub response_max_bytes: i32,
    pub wait_max_ms: i32,
    pub min_bytes: i32,
    pub backoff_ms: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: REPLICA_FETCH_MAX_BYTES,
            response_max_bytes: REPLICA_FETCH_RESPONSE_MAX_BYTES,
            wait_max_ms: REPLICA_FETCH_WAIT_MAX_MS,
            min_bytes: REPLICA_FETCH_MIN_BYTES,
            backoff_ms: REPLICA_FETCH_BACKOFF_MS,
        }
    }
}

/// What the shell does next for the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetch from `from` (its inter-broker listener) at the copy's log end, as replica
    /// `replica_id`, with `current_leader_epoch` (Kafka's field: the old replica refuses an
    /// epoch it does not know yet).
    Fetch {
        from: i32,
        offset: i64,
        current_leader_epoch: i32,
    },
    /// Restart the (empty) copy at the old replica's log start offset
    /// (`PartitionLog::truncate_fully_and_start_at`), then fetch again.
    StartAt(i64),
    /// Submit `Command::FenceReassigningPartition` against this partition epoch.
    Fence { partition_epoch: i32 },
    /// Submit `Command::CompleteReassignment` against this partition epoch.
    Complete { partition_epoch: i32 },
    /// Wait `replica.fetch.backoff.ms` (or for a new registration), then ask again.
    Backoff,
    /// This broker is not (or no longer) the target of a move of the partition: stop.
    Stop,
}

/// How one fetch of the partition ended, as the shell saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Records were appended; the copy's log end moved, up to the old replica's high watermark
    /// of that answer or not. While copying, reaching it counts as caught up (Kafka's rule for
    /// a follower joining the ISR: a producer that never pauses would otherwise keep the copy
    /// from ever seeing an empty fetch). While draining only an empty fetch does: the records
    /// of an fsync-mode append above the high watermark are acknowledged later.
    Appended { reached_high_watermark: bool },
    /// The fetch at the copy's log end had no records: caught up with the old replica.
    Empty,
    /// OFFSET_OUT_OF_RANGE, with the old replica's log start offset from the response.
    OutOfRange { log_start_offset: i64 },
    /// Any other error (a stale or unknown leader epoch while the fence travels, a refused
    /// connection, an append refused): retried after the backoff.
    Failed,
}

/// The move of one partition to this broker, from the target's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveFetcher {
    node_id: i32,
    /// The registration last seen.
    registration: Option<PartitionImage>,
    /// The last fetch found the copy caught up, against `registration`.
    caught_up: bool,
    /// A command was asked for `registration`; not again until the registration changes
    /// or a retry is due.
    asked: bool,
    /// The next step is a backoff.
    failed: bool,
    /// The old replica's log start, when an out-of-range fetch said the copy must restart.
    start_at: Option<i64>,
}

impl MoveFetcher {
    pub fn new(node_id: i32) -> MoveFetcher {
        MoveFetcher {
            node_id,
            registration: None,
            caught_up: false,
            asked: false,
            failed: false,
            start_at: None,
        }
    }

    /// A new registration of the partition was published. What was learnt against the old
    /// one no longer holds.
    pub fn on_registration(&mut self, registration: &PartitionImage) {
        if self.registration.as_ref() == Some(registration) {
            return;
        }
        self.registration = Some(registration.clone());
        self.caught_up = false;
        self.asked = false;
        self.failed = false;
    }

    /// The outcome of the last `Step::Fetch` (or of the `StartAt` / command it led to).
    pub fn on_fetch(&mut self, outcome: FetchOutcome, log_end_offset: i64) {
        self.failed = false;
        self.caught_up = false;
        match outcome {
            FetchOutcome::Appended {
                reached_high_watermark,
            } => {
                let copying = self
                    .registration
                    .as_ref()
                    .and_then(ongoing_move)
                    .is_some_and(|m| m.phase == MovePhase::Copying);
                self.caught_up = reached_high_watermark && copying;
            }
            FetchOutcome::Empty => self.caught_up = true,
            // The copy is behind the old replica's start: it restarts there. An offset past the
            // old replica's end cannot happen to a copy that only appended what it fetched.
            FetchOutcome::OutOfRange { log_start_offset } if log_start_offset > log_end_offset => {
                self.start_at = Some(log_start_offset)
            }
            FetchOutcome::OutOfRange { .. } | FetchOutcome::Failed => self.failed = true,
        }
    }

    /// The restart at `start_at` was carried out.
    pub fn on_started(&mut self) {
        self.start_at = None;
    }

    /// A submitted command failed (not the controller, a stale partition epoch): retried after
    /// the backoff, or at once once a new registration arrives.
    pub fn on_command_failed(&mut self) {
        self.asked = false;
        self.caught_up = false;
        self.failed = true;
    }

    /// The next step, given the copy's log end offset.
    pub fn next(&mut self, log_end_offset: i64) -> Step {
        let Some(registration) = &self.registration else {
            return Step::Backoff;
        };
        let Some(m) = ongoing_move(registration).filter(|m| m.to == self.node_id) else {
            return Step::Stop;
        };
        if let Some(offset) = self.start_at {
            return Step::StartAt(offset);
        }
        if self.failed {
            self.failed = false;
            return Step::Backoff;
        }
        if self.asked {
            // Waiting for the registration the command makes.
            return Step::Backoff;
        }
        if self.caught_up {
            self.asked = true;
            let partition_epoch = registration.partition_epoch;
            return match m.phase {
                MovePhase::Copying => Step::Fence { partition_epoch },
                MovePhase::Draining => Step::Complete { partition_epoch },
            };
        }
        Step::Fetch {
            from: m.from,
            offset: log_end_offset,
            current_leader_epoch: registration.leader_epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(phase: MovePhase, partition_epoch: i32) -> PartitionImage {
        let draining = phase == MovePhase::Draining;
        PartitionImage {
            replicas: vec![2, 1],
            isr: if draining { vec![] } else { vec![1] },
            leader: if draining { -1 } else { 1 },
            leader_epoch: if draining { 1 } else { 0 },
            partition_epoch,
            adding: vec![2],
            removing: vec![1],
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        }
    }

    #[test]
    fn the_target_copies_fences_drains_and_completes() {
        // Goal: the steps of a whole move, in order, each command asked once per registration
        // and against its partition epoch, drain fetches carrying the fenced epoch.
        let mut f = MoveFetcher::new(2);
        f.on_registration(&registration(MovePhase::Copying, 1));
        let fetch = |offset, current_leader_epoch| Step::Fetch {
            from: 1,
            offset,
            current_leader_epoch,
        };
        assert_eq!(f.next(0), fetch(0, 0));
        f.on_fetch(
            FetchOutcome::Appended {
                reached_high_watermark: false,
            },
            10,
        );
        assert_eq!(f.next(10), fetch(10, 0));
        f.on_fetch(
            FetchOutcome::Appended {
                reached_high_watermark: true,
            },
            10,
        );
        assert_eq!(f.next(10), Step::Fence { partition_epoch: 1 });
        assert_eq!(f.next(10), Step::Backoff, "asked once");
        f.on_registration(&registration(MovePhase::Draining, 2));
        assert_eq!(f.next(10), fetch(10, 1));
        // The old replica has not applied the fence yet.
        f.on_fetch(FetchOutcome::Failed, 10);
        assert_eq!(f.next(10), Step::Backoff);
        assert_eq!(f.next(10), fetch(10, 1));
        // Records acknowledged before the fence are still copied; reaching the high watermark
        // is not enough while draining.
        f.on_fetch(
            FetchOutcome::Appended {
                reached_high_watermark: true,
            },
            12,
        );
        assert_eq!(f.next(12), fetch(12, 1));
        f.on_fetch(FetchOutcome::Empty, 12);
        assert_eq!(f.next(12), Step::Complete { partition_epoch: 2 });
        let mut done = registration(MovePhase::Draining, 3);
        done.replicas = vec![2];
        done.isr = vec![2];
        done.leader = 2;
        done.adding.clear();
        done.removing.clear();
        f.on_registration(&done);
        assert_eq!(f.next(12), Step::Stop);
    }

    #[test]
    fn a_copy_behind_the_old_log_start_restarts_there_and_failures_back_off() {
        // Goal: OFFSET_OUT_OF_RANGE below the old replica's start restarts the copy at it; a
        // refused command is asked again after a backoff; a move to another broker stops.
        let mut f = MoveFetcher::new(2);
        assert_eq!(f.next(0), Step::Backoff, "no registration yet");
        f.on_registration(&registration(MovePhase::Copying, 1));
        f.on_fetch(
            FetchOutcome::OutOfRange {
                log_start_offset: 500,
            },
            0,
        );
        assert_eq!(f.next(0), Step::StartAt(500));
        f.on_started();
        assert!(matches!(f.next(500), Step::Fetch { offset: 500, .. }));
        f.on_fetch(FetchOutcome::Empty, 500);
        assert_eq!(f.next(500), Step::Fence { partition_epoch: 1 });
        f.on_command_failed();
        assert_eq!(f.next(500), Step::Backoff);
        assert!(matches!(f.next(500), Step::Fetch { .. }));
        let mut elsewhere = registration(MovePhase::Copying, 2);
        elsewhere.replicas = vec![3, 1];
        elsewhere.adding = vec![3];
        f.on_registration(&elsewhere);
        assert_eq!(f.next(500), Step::Stop);
        let defaults = FetchLimits::default();
        assert_eq!((defaults.max_bytes, defaults.wait_max_ms), (1_048_576, 500));
    }
}
