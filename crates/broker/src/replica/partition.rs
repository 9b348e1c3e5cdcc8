//! One partition this broker holds a replica of: its log, its leader state and the fetches
//! waiting for it to grow. Every high-watermark move happens in [`Partition::advance_high_watermark`].

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use runnel_cluster::TopicImage;
use runnel_storage::{LogConfig, LogReader, PartitionLog, StorageError};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::durability::{GroupCommitter, RoundAppend, RoundLog, RoundResult};

/// DeleteRecords' offset -1: delete up to the high watermark (Kafka's
/// `DeleteRecordsRequest.HIGH_WATERMARK`).
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;

/// One partition this broker leads: its log and the fetches waiting for it to grow.
pub struct Partition {
    pub topic: Arc<TopicImage>,
    pub index: i32,
    /// The log's writer: appends, the group commit's rounds, config changes and high-watermark
    /// moves take it. A std mutex: appends are short, synchronous page-cache I/O, and no
    /// `.await` ever happens while it is held. In fsync mode a group-commit round also holds
    /// it for its fsync, on a blocking thread (`durability`). Reads never take it (`reader`).
    pub log: Mutex<PartitionLog>,
    /// Reads the log without its writer's lock: fetches, ListOffsets and coordinator loads
    /// answer from a snapshot while an append or an fsync holds `log`.
    reader: LogReader,
    /// Fetch requests parked until this partition grows; each is woken once and re-registers.
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Leader epoch of the partition's registration, which batches appended here carry;
    /// follows the metadata image (`set_leadership`).
    leader_epoch: AtomicI32,
    /// Whether this node leads the partition (the registration's leader is its node id):
    /// only then does it serve produce, fetch and the other leader-only requests.
    leader: AtomicBool,
    /// The partition's group commit: in fsync mode (`flush.messages=1`) every append goes
    /// through it, is answered only after an fsync covering it, and the HW only ever covers
    /// fsynced offsets. In page-cache mode (Kafka's default) appends bypass it (no lock, task or
    /// allocation for durability) unless batches are still queued in it.
    pub group_commit: Arc<GroupCommitter>,
    /// `flush.messages` is 1: fsync mode. Changes with the topic's config.
    fsync_every_append: AtomicBool,
    /// `min.insync.replicas`, checked for acks=all. Changes with the topic's config.
    min_insync_replicas: AtomicI32,
    /// DeleteRecords may move the log start: `cleanup.policy` is not `compact` alone. Changes
    /// with the topic's config.
    records_deletable: AtomicBool,
    /// Bytes and records in and out, for the per-topic metrics.
    pub traffic: crate::metrics::PartitionTraffic,
}

/// The settings of a partition that follow its topic's configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSettings {
    pub log: LogConfig,
    /// `flush.messages` == 1.
    pub fsync_every_append: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `cleanup.policy` is not `compact` alone (Kafka's `!compact || delete`).
    pub records_deletable: bool,
}

impl Partition {
    /// A partition serving `log` with `settings` (its log must have been opened with
    /// `settings.log`).
    pub fn new(
        topic: Arc<TopicImage>,
        index: i32,
        log: PartitionLog,
        leader_epoch: i32,
        settings: &PartitionSettings,
    ) -> Partition {
        let partition = Partition {
            topic,
            index,
            reader: log.reader(),
            log: Mutex::new(log),
            waiters: Mutex::new(Vec::new()),
            leader_epoch: AtomicI32::new(leader_epoch),
            leader: AtomicBool::new(true),
            group_commit: Arc::new(GroupCommitter::default()),
            fsync_every_append: AtomicBool::new(settings.fsync_every_append),
            min_insync_replicas: AtomicI32::new(settings.min_insync_replicas),
            records_deletable: AtomicBool::new(settings.records_deletable),
            traffic: crate::metrics::PartitionTraffic::default(),
        };
        // Single node: every batch in the local log was acknowledged or lost with the client's
        // connection, so after recovery all of it is committed (in fsync mode the caller has
        // fsynced the recovered tail first).
        partition.advance_high_watermark(&mut partition.lock_log());
        partition
    }

    /// The leader epoch appended batches carry.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Whether this node leads the partition.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Follows a committed registration change: whether this node leads, at which epoch. On
    /// leading, the epoch enters the log's epoch cache at once (OffsetForLeaderEpoch answers
    /// it); its checkpoint is written by the first append (see
    /// `PartitionLog::assign_leader_epoch_deferred`).
    pub fn set_leadership(&self, leader: bool, leader_epoch: i32) -> Result<(), StorageError> {
        let mut log = self.lock_log();
        if leader {
            log.assign_leader_epoch_deferred(leader_epoch)?;
        }
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
        Ok(())
    }

    /// Applies changed topic configs to the open partition (Kafka applies them to the live
    /// log): the next append follows them. Leaving fsync mode keeps append order: batches
    /// still queued for the group commit are appended before any inline one.
    pub fn reconfigure(&self, settings: &PartitionSettings) {
        self.lock_log().set_config(settings.log.clone());
        self.fsync_every_append
            .store(settings.fsync_every_append, Ordering::Release);
        self.min_insync_replicas
            .store(settings.min_insync_replicas, Ordering::Release);
        self.records_deletable
            .store(settings.records_deletable, Ordering::Release);
    }

    /// Whether appends must go through the group commit now.
    pub fn appends_through_group_commit(&self) -> bool {
        self.fsync_every_append.load(Ordering::Acquire) || self.group_commit.is_busy()
    }

    pub fn fsync_every_append(&self) -> bool {
        self.fsync_every_append.load(Ordering::Acquire)
    }

    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas.load(Ordering::Acquire)
    }

    /// Kafka's `Partition.deleteRecordsOnLeader`: moves the log start offset to `offset` (-1:
    /// the high watermark) and answers the low watermark, the log start after the move (one
    /// replica: the leader's). Errors carry Kafka's codes.
    pub fn delete_records_on_leader(&self, offset: i64, now_ms: i64) -> Result<i64, i16> {
        use kafka_protocol::error::ResponseError;
        if !self.records_deletable.load(Ordering::Acquire) {
            // Kafka: PolicyViolationException("Records of partition ... can not be deleted due
            // to the configured policy").
            return Err(ResponseError::PolicyViolation.code());
        }
        let mut log = self.lock_log();
        let offset = if offset == DELETE_TO_HIGH_WATERMARK {
            log.high_watermark()
        } else {
            offset
        };
        if offset < 0 {
            return Err(ResponseError::OffsetOutOfRange.code());
        }
        match log.advance_log_start_offset(offset, now_ms) {
            Ok(()) => Ok(log.log_start_offset()),
            Err(e) => Err(crate::errors::storage_error_code(&e)),
        }
    }

    /// Registers a waiter to be notified on the next append. Dead waiters are pruned here, so the
    /// list never holds more than the live waiters plus those registered since the last append.
    pub fn register_waiter(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.retain(|w| w.strong_count() > 0);
        waiters.push(Arc::downgrade(waiter));
    }

    /// Wakes every parked fetch of this partition.
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }

    /// Counts an appended batch of `bytes` in the traffic metrics (an idempotent duplicate
    /// wrote nothing and is not counted).
    pub fn record_appended(&self, bytes: usize, outcome: &runnel_storage::AppendOutcome) {
        if !outcome.duplicate {
            self.traffic
                .record_in(bytes, outcome.base_offset, outcome.last_offset);
        }
    }

    /// The log's reader (see `reader`).
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// The last stable offset (Kafka's LSO): the first offset of the earliest transaction
    /// still open here, or ended by a marker the high watermark has not passed, else the high
    /// watermark. Read without the log's lock, from the offsets the log publishes with the
    /// high watermark (`advance_high_watermark`).
    pub fn last_stable_offset(&self) -> i64 {
        self.reader.offsets().last_stable_offset()
    }

    /// The log's writer, locked.
    pub fn lock_log(&self) -> std::sync::MutexGuard<'_, PartitionLog> {
        // A panic while holding the lock is our bug; the log's own invariants are re-checked on
        // every operation, so continuing with the inner value is safe.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one place the high watermark moves: to the smallest log end offset of the in-sync
    /// replicas. On one node the leader is the whole ISR, so that is its own log end. The
    /// caller must only call this once what it appended is as durable as the partition's
    /// policy requires (after the fsync in fsync mode), since the HW makes it readable and
    /// acknowledges acks=all. The last stable offset moves with it: the log recomputes it from
    /// its producer state whenever the HW, the log start or a transaction changes, and
    /// publishes both together (`PartitionLog::last_stable_offset`).
    pub fn advance_high_watermark(&self, log: &mut PartitionLog) {
        let leo = log.log_end_offset();
        assert!(
            leo >= log.high_watermark(),
            "the high watermark never moves backwards"
        );
        log.set_high_watermark(leo);
    }
}

impl RoundLog for Partition {
    /// Appends the round and fsyncs once, all under the log lock (as Kafka fsyncs inside
    /// `UnifiedLog.append`'s lock), so a fetch sees either none of the round or all of it
    /// durable: the HW moves to the LEO only after the fsync succeeded. Fetches read through
    /// the reader meanwhile, bounded by the HW, and do not wait for the fsync.
    fn commit_round(&self, batches: Vec<RoundAppend>) -> RoundResult {
        let mut log = self.lock_log();
        let appended: Vec<_> = batches
            .into_iter()
            .map(|append| match append {
                // As for inline appends (`replica::append_durably`): a batch queued before a
                // leadership change applied is refused, not appended after it.
                _ if !self.is_leader() => Err(StorageError::NotLeaderOrFollower),
                RoundAppend::Records(records, verification) => {
                    let bytes = records.len();
                    let appended = log.append_as_leader_verified(
                        records,
                        self.leader_epoch(),
                        now_ms(),
                        verification,
                    );
                    if let Ok(outcome) = &appended {
                        self.record_appended(bytes, outcome);
                    }
                    appended
                }
                RoundAppend::CoordinatorRecords(records) => {
                    let bytes = records.len();
                    let appended =
                        log.append_as_coordinator(records, self.leader_epoch(), now_ms());
                    if let Ok(outcome) = &appended {
                        self.record_appended(bytes, outcome);
                    }
                    appended
                }
                RoundAppend::Marker(marker) => {
                    log.append_txn_marker(&marker, self.leader_epoch(), now_ms())
                }
            })
            .collect();
        // Only a round whose every batch was rejected wrote nothing. An idempotent duplicate
        // counts as appended: its original is in this round or below an earlier fsync, and
        // an fsync with nothing dirty is cheap.
        let fsync = if appended.iter().any(Result::is_ok) {
            let started = std::time::Instant::now();
            let flushed = log.flush();
            crate::metrics::LOG_FLUSH.observe(started.elapsed());
            flushed
        } else {
            Ok(())
        };
        match &fsync {
            Ok(()) => {
                self.advance_high_watermark(&mut log);
                drop(log);
                self.wake_waiters();
            }
            Err(e) => {
                // Kafka marks the log dir offline; the poisoned log refuses writes until the
                // broker restarts and recovery decides what is on disk.
                tracing::error!(topic = %self.topic.name, partition = self.index, error = %e, "fsync failed; the partition refuses writes until restart");
            }
        }
        RoundResult { appended, fsync }
    }
}
