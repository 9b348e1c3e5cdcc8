//! Group commit for partitions in fsync mode (`flush.messages=1`): a produce is answered only
//! after an fsync that covers its batch, one fsync covers every batch queued before it started,
//! and the appends and the fsync run on tokio's blocking pool, never on an async worker.
//!
//! # Why the flusher appends
//!
//! `PartitionLog::flush` needs the partition's log lock for the whole fsync, so no append can
//! land while an fsync runs. (Reads do not take that lock: fetches, ListOffsets and coordinator
//! loads read through the partition's `LogReader`, bounded by the high watermark, so an fsync
//! never delays them.) If producers appended themselves, a producer arriving during an
//! fsync would either block an async worker on that lock or, woken after it, race the next
//! flusher and usually miss its round. So a producer only *queues* its batch (a short critical
//! section on this module's own mutex) and awaits the outcome; the flusher takes everything
//! queued as one round, appends it in arrival order, fsyncs once, advances the high watermark,
//! and answers the round. Batches queued while that fsync runs form the next round.
//!
//! # How it maps to Kafka
//!
//! Kafka's `UnifiedLog.append` fsyncs inside the log lock when `unflushedMessages >=
//! flush.messages`, and `Partition` raises the HW only after the append returned, so with
//! `flush.messages=1` nothing is acknowledged or readable before its fsync. A failed fsync
//! throws `KafkaStorageException` (the log dir goes offline: `LogDirFailureChannel`), which the
//! produce answers as KAFKA_STORAGE_ERROR, and every later operation on that dir fails the same
//! way. Here the log poisons itself on a failed fsync (`PartitionLog::flush`), and this module
//! remembers the failure so later produces are refused without touching the log. Kafka has no
//! group commit (each append fsyncs in turn under the lock); the rounds here are the difference.
//!
//! # Bounds
//!
//! The queue holds at most one entry per partition of each produce request in flight; a
//! connection has at most `connection::PIPELINED_REQUESTS_MAX` requests awaiting their answers
//! and connections are capped, so the queue is bounded by what the connections already hold in
//! memory (the entry's batch is the request's own bytes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use runnel_storage::{AppendOutcome, StorageError};
use tokio::sync::oneshot;

/// One batch's fate: its offsets once appended *and* fsynced, or why not.
pub type Committed = Result<AppendOutcome, StorageError>;

/// What a round did to the log.
pub struct RoundResult {
    /// One entry per batch of the round, in order: the append's outcome.
    pub appended: Vec<Committed>,
    /// The round's single fsync (`Ok` also when nothing was appended and none was needed).
    pub fsync: Result<(), StorageError>,
}

/// A log that takes a whole round of batches at once.
///
/// # Correctness
///
/// `commit_round` appends the batches in order, then, if any was appended, fsyncs once so that
/// everything appended up to then is on disk. Only after that fsync succeeded may it make the
/// new offsets visible (advance the high watermark, wake fetches). If the fsync fails, nothing
/// of the round may become visible and the log must refuse every later append (poisoned):
/// the kernel may have dropped the dirty pages, so a retried fsync could report success falsely.
/// It runs on a blocking thread and may block as long as the disk takes.
pub trait RoundLog: Send + Sync + 'static {
    fn commit_round(&self, batches: Vec<RoundAppend>) -> RoundResult;
}

/// One append of a round: a producer's (or coordinator's) batches, or a transaction marker
/// the transaction coordinator writes (`ReplicaManager::write_txn_marker`). Markers share the
/// round so they are exactly as durable as the batches they end, and keep their place in the
/// partition's append order.
#[derive(Debug, Clone)]
pub enum RoundAppend {
    /// A client's batches, with what transaction verification asks of them
    /// (`PartitionLog::append_as_leader_verified`).
    Records(Bytes, runnel_storage::Verification),
    /// A coordinator's own batch (`PartitionLog::append_as_coordinator`).
    CoordinatorRecords(Bytes),
    Marker(runnel_storage::TxnMarker),
}

impl From<Bytes> for RoundAppend {
    fn from(records: Bytes) -> Self {
        RoundAppend::Records(records, runnel_storage::Verification::Off)
    }
}

/// The sans-IO core: the batches waiting for the next round, whether a flusher is running, and
/// whether a flush failed. The caller owns the I/O: it starts a flusher when told to, and the
/// flusher takes rounds until there are none.
#[derive(Debug)]
pub struct GroupCommit<W> {
    /// Submitted and not yet taken: they go into the next round, after the running one.
    queue: Vec<W>,
    /// A flusher exists and will take `queue` before it stops, so submitters only queue.
    flusher_running: bool,
    /// A round's fsync failed. The log is poisoned, so everything after is refused at once.
    failed: bool,
}

/// What a submitter must do after `GroupCommit::submit`.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<W> {
    /// Queued, and no flusher was running: the submitter starts one.
    StartFlusher,
    /// Queued behind a running flusher, which will take it in its next round.
    Queued,
    /// The partition failed earlier; the work is handed back to be answered with an error.
    Failed(W),
}

impl<W> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit {
            queue: Vec::new(),
            flusher_running: false,
            failed: false,
        }
    }
}

impl<W> GroupCommit<W> {
    pub fn submit(&mut self, work: W) -> Submitted<W> {
        if self.failed {
            return Submitted::Failed(work);
        }
        self.queue.push(work);
        if self.flusher_running {
            Submitted::Queued
        } else {
            self.flusher_running = true;
            Submitted::StartFlusher
        }
    }

    /// The flusher takes everything queued as its next round. `None`: nothing is queued and
    /// the flusher stops (the next submitter starts a new one).
    pub fn next_round(&mut self) -> Option<Vec<W>> {
        assert!(self.flusher_running, "only the flusher takes rounds");
        if self.queue.is_empty() {
            self.flusher_running = false;
            return None;
        }
        Some(std::mem::take(&mut self.queue))
    }

    /// The flusher's round failed its fsync: from now on every submission fails. Returns the
    /// work queued behind the failed round, which the flusher fails too.
    pub fn round_failed(&mut self) -> Vec<W> {
        assert!(self.flusher_running, "only the flusher reports a round");
        self.fail()
    }

    /// Fails the partition for good without checking who asks: `round_failed` for a flusher
    /// that is unwinding, where a second panic would abort the process.
    fn fail(&mut self) -> Vec<W> {
        self.failed = true;
        std::mem::take(&mut self.queue)
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }
}

/// A batch waiting for its round and the producer waiting for its outcome.
struct Pending {
    records: RoundAppend,
    reply: oneshot::Sender<Committed>,
}

/// The async shell around `GroupCommit` for one partition in fsync mode.
#[derive(Default)]
pub struct GroupCommitter {
    /// Held only to queue or take a round, never across I/O or an `.await`.
    core: Mutex<GroupCommit<Pending>>,
    /// A flusher is running (or about to): mirrors the core under its lock, so an append that
    /// would bypass group commit can see without locking that batches are still queued ahead
    /// of it (a partition leaving fsync mode drains its queue before appending inline).
    busy: AtomicBool,
}

impl GroupCommitter {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupCommit<Pending>> {
        // The core's methods keep it consistent at every return; a panic elsewhere while it
        // was held cannot leave it half-updated.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `records` for the next round of `log` and returns where its outcome will arrive.
    /// Starts a flusher on the blocking pool if none is running. Must be called within a tokio
    /// runtime. The receiver yields an error only if the flusher died (our bug); treat that
    /// like a failed fsync.
    pub fn submit<L: RoundLog>(
        self: &Arc<Self>,
        log: &Arc<L>,
        records: impl Into<RoundAppend>,
    ) -> oneshot::Receiver<Committed> {
        let records = records.into();
        let (reply, outcome) = oneshot::channel();
        let submitted = {
            let mut core = self.lock();
            let submitted = core.submit(Pending { records, reply });
            if matches!(submitted, Submitted::StartFlusher) {
                self.busy.store(true, Ordering::Release);
            }
            submitted
        };
        match submitted {
            Submitted::Queued => {}
            Submitted::Failed(pending) => {
                let _ = pending.reply.send(Err(StorageError::Poisoned));
            }
            Submitted::StartFlusher => {
                let committer = Arc::clone(self);
                let log = Arc::clone(log);
                // The flusher owns everything it needs: a producer that goes away (its
                // connection closed) cancels only its own wait, never a round.
                drop(tokio::task::spawn_blocking(move || {
                    committer.run_flusher(&*log)
                }));
            }
        }
        outcome
    }

    /// Takes and commits rounds until none is queued.
    fn run_flusher(&self, log: &dyn RoundLog) {
        let _guard = FlusherGuard { committer: self };
        loop {
            let round = {
                let mut core = self.lock();
                let round = core.next_round();
                if round.is_none() {
                    self.busy.store(false, Ordering::Release);
                }
                round
            };
            let Some(round) = round else {
                return;
            };
            let (batches, replies): (Vec<RoundAppend>, Vec<_>) =
                round.into_iter().map(|p| (p.records, p.reply)).unzip();
            let result = log.commit_round(batches);
            assert_eq!(
                result.appended.len(),
                replies.len(),
                "commit_round answers every batch of its round"
            );
            match result.fsync {
                Ok(()) => {
                    for (reply, appended) in replies.into_iter().zip(result.appended) {
                        let _ = reply.send(appended);
                    }
                }
                Err(e) => {
                    let behind = self.lock().round_failed();
                    for (reply, appended) in replies.into_iter().zip(result.appended) {
                        // Appended but not durable: the producer must not count it as written.
                        let _ = reply.send(appended.and(Err(copy_error(&e))));
                    }
                    for pending in behind {
                        let _ = pending.reply.send(Err(StorageError::Poisoned));
                    }
                }
            }
        }
    }

    /// The partition failed an fsync: nothing more will be written to it.
    pub fn is_failed(&self) -> bool {
        self.lock().is_failed()
    }

    /// Whether batches are queued or a round is running: an append must then queue behind
    /// them, even if the partition no longer asks for fsyncs, to keep append order.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

/// If the flusher unwinds (a bug in the log code), the log's state is unknown: fail the
/// partition like a failed fsync, and drop the queued replies so their producers get an error
/// instead of waiting forever.
struct FlusherGuard<'a> {
    committer: &'a GroupCommitter,
}

impl Drop for FlusherGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("group-commit flusher panicked; failing the partition");
            drop(self.committer.lock().fail());
        }
    }
}

/// `StorageError` is not `Clone`; every producer of a failed round gets its own copy.
fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Io(io) => StorageError::Io(std::io::Error::new(io.kind(), io.to_string())),
        StorageError::Poisoned => StorageError::Poisoned,
        other => StorageError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn outcome(base_offset: i64) -> AppendOutcome {
        AppendOutcome {
            base_offset,
            last_offset: base_offset,
            log_append_time_ms: -1,
            log_start_offset: 0,
            duplicate: false,
        }
    }

    // ---- the sans-IO core ----

    /// Many submissions queued behind a running round all go into the one next round, so one
    /// fsync covers all of them; then the flusher stops and the next submitter starts one.
    #[test]
    fn one_round_covers_everything_queued_before_it() {
        let mut core = GroupCommit::default();
        assert_eq!(core.submit(0), Submitted::StartFlusher);
        assert_eq!(core.next_round(), Some(vec![0]));
        // Round [0] is fsyncing; these queue behind it.
        for w in 1..=9 {
            assert_eq!(core.submit(w), Submitted::Queued);
        }
        assert_eq!(core.next_round(), Some((1..=9).collect()));
        assert_eq!(core.next_round(), None);
        assert_eq!(core.submit(10), Submitted::StartFlusher);
    }

    /// Work submitted after a round was taken is not in that round: it waits for the next one.
    #[test]
    fn submitted_after_a_round_started_waits_for_the_next() {
        let mut core = GroupCommit::default();
        assert_eq!(core.submit("a"), Submitted::StartFlusher);
        let first = core.next_round();
        assert_eq!(core.submit("b"), Submitted::Queued);
        assert_eq!(first, Some(vec!["a"]));
        assert_eq!(core.next_round(), Some(vec!["b"]));
    }

    /// A failed round fails what it covered (the caller answers those), hands back what was
    /// queued behind it, and every later submission fails at once.
    #[test]
    fn failed_round_fails_queued_and_later_work() {
        let mut core = GroupCommit::default();
        assert_eq!(core.submit(1), Submitted::StartFlusher);
        assert_eq!(core.next_round(), Some(vec![1]));
        assert_eq!(core.submit(2), Submitted::Queued);
        assert_eq!(core.round_failed(), vec![2]);
        assert!(core.is_failed());
        assert_eq!(core.submit(3), Submitted::Failed(3));
        assert_eq!(core.next_round(), None);
        assert_eq!(core.submit(4), Submitted::Failed(4));
    }

    // ---- the async shell with a fake log ----

    /// A log whose fsync waits for the test's permission and fails when told to.
    struct FakeLog {
        /// Size of every round, in order: one round is one fsync.
        rounds: Mutex<Vec<usize>>,
        next_offset: Mutex<i64>,
        /// The round announces it is fsyncing, then waits for `true` (succeed) or `false`.
        fsyncing: Mutex<mpsc::Sender<()>>,
        permit: Mutex<mpsc::Receiver<bool>>,
    }

    impl RoundLog for FakeLog {
        fn commit_round(&self, batches: Vec<RoundAppend>) -> RoundResult {
            let mut next = self.next_offset.lock().unwrap();
            let appended = batches
                .iter()
                .map(|_| {
                    *next += 1;
                    Ok(outcome(*next - 1))
                })
                .collect();
            self.rounds.lock().unwrap().push(batches.len());
            self.fsyncing.lock().unwrap().send(()).unwrap();
            let ok = self
                .permit
                .lock()
                .unwrap()
                .recv_timeout(WAIT_MAX)
                .expect("the test allowed this fsync");
            RoundResult {
                appended,
                fsync: if ok {
                    Ok(())
                } else {
                    Err(StorageError::Io(std::io::Error::other("injected EIO")))
                },
            }
        }
    }

    fn fake() -> (Arc<FakeLog>, mpsc::Receiver<()>, mpsc::Sender<bool>) {
        let (fsyncing_tx, fsyncing) = mpsc::channel();
        let (permit, permit_rx) = mpsc::channel();
        let log = FakeLog {
            rounds: Mutex::new(Vec::new()),
            next_offset: Mutex::new(0),
            fsyncing: Mutex::new(fsyncing_tx),
            permit: Mutex::new(permit_rx),
        };
        (Arc::new(log), fsyncing, permit)
    }

    /// Bounds every wait of these tests, so a broken committer fails them instead of hanging.
    const WAIT_MAX: Duration = Duration::from_secs(10);

    fn wait_fsyncing(fsyncing: &mpsc::Receiver<()>) {
        fsyncing
            .recv_timeout(WAIT_MAX)
            .expect("a round reached its fsync");
    }

    async fn answer(outcome: oneshot::Receiver<Committed>) -> Committed {
        tokio::time::timeout(WAIT_MAX, outcome)
            .await
            .expect("answered in time")
            .expect("the flusher answered")
    }

    /// Nine producers queued during one fsync are all answered by the next single fsync, and
    /// none is answered before the fsync covering it succeeded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn producers_queued_during_an_fsync_share_the_next_one() {
        let (log, fsyncing, permit) = fake();
        let committer = Arc::new(GroupCommitter::default());
        let mut first = committer.submit(&log, Bytes::from_static(b"0"));
        wait_fsyncing(&fsyncing);
        let mut later: Vec<_> = (1..=9)
            .map(|_| committer.submit(&log, Bytes::from_static(b"n")))
            .collect();
        // Round 1 is still fsyncing: nobody may have an answer yet.
        assert!(first.try_recv().is_err());
        permit.send(true).unwrap();
        assert_eq!(answer(first).await.unwrap().base_offset, 0);
        // Round 2 holds all nine and waits for its fsync; still no answers.
        wait_fsyncing(&fsyncing);
        for rx in &mut later {
            assert!(rx.try_recv().is_err(), "answered before its fsync");
        }
        permit.send(true).unwrap();
        for (i, rx) in later.into_iter().enumerate() {
            assert_eq!(answer(rx).await.unwrap().base_offset, i as i64 + 1);
        }
        assert_eq!(*log.rounds.lock().unwrap(), vec![1, 9]);
    }

    /// A failed fsync fails every producer of its round and those queued behind it, and later
    /// producers fail without the log being touched again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_fsync_fails_its_round_and_everything_after() {
        let (log, fsyncing, permit) = fake();
        let committer = Arc::new(GroupCommitter::default());
        let first = committer.submit(&log, Bytes::from_static(b"0"));
        wait_fsyncing(&fsyncing);
        let covered: Vec<_> = (0..3)
            .map(|_| committer.submit(&log, Bytes::from_static(b"c")))
            .collect();
        permit.send(true).unwrap();
        assert!(answer(first).await.is_ok());
        // Round 2 is the three `covered`; `behind` queues while its fsync runs.
        wait_fsyncing(&fsyncing);
        let behind = committer.submit(&log, Bytes::from_static(b"b"));
        permit.send(false).unwrap();
        for rx in covered {
            assert!(matches!(answer(rx).await, Err(StorageError::Io(_))));
        }
        assert!(matches!(answer(behind).await, Err(StorageError::Poisoned)));
        assert!(committer.is_failed());
        let after = committer.submit(&log, Bytes::from_static(b"a"));
        assert!(matches!(answer(after).await, Err(StorageError::Poisoned)));
        // Only the two rounds reached the log.
        assert_eq!(*log.rounds.lock().unwrap(), vec![1, 3]);
    }
}
