//! The periodic log maintenance Kafka's `LogManager` schedules: a retention pass over every
//! partition every `log.retention.check.interval.ms` (the first after
//! `log.initial.task.delay.ms`), and the removal of deleted segments' `.deleted` files once
//! their `file.delete.delay.ms` has passed, and the expiry of idle producer ids every
//! `producer.id.expiration.check.interval.ms` (Kafka's `removeExpiredProducers` task).
//!
//! The file work runs on tokio's blocking pool (`spawn_blocking`), never on an async worker.
//! Each partition's log lock is held only for its own pass (checkpoint write, renames and one
//! directory fsync, as Kafka holds its log lock for them); `.deleted` files are removed after
//! the lock is released.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::now_ms;
use crate::state::Broker;

/// The longest the task sleeps between looks at due `.deleted` files when retention checks are
/// rarer: deletions queued by DeleteRecords between two retention passes still go on time
/// (within this much).
const REMOVAL_CHECK_INTERVAL_MAX_MS: u64 = 1_000;

/// Runs until `shutdown` turns true; a pass under way finishes first.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let check_interval_ms = broker.config.log_retention_check_interval_ms.max(1);
    let mut next_retention_ms = now_ms()
        .saturating_add(i64::try_from(broker.config.log_initial_task_delay_ms).unwrap_or(i64::MAX));
    let expiry_interval_ms =
        i64::try_from(broker.config.producer_id_expiration_check_interval_ms).unwrap_or(i64::MAX);
    let mut next_expiry_ms = now_ms().saturating_add(expiry_interval_ms);
    loop {
        let now = now_ms();
        let retention_due = now >= next_retention_ms;
        if retention_due {
            next_retention_ms =
                now.saturating_add(i64::try_from(check_interval_ms).unwrap_or(i64::MAX));
        }
        let expiry_due = now >= next_expiry_ms;
        if expiry_due {
            next_expiry_ms = now.saturating_add(expiry_interval_ms);
        }
        let pass_broker = Arc::clone(&broker);
        let pass =
            tokio::task::spawn_blocking(move || maintain(&pass_broker, retention_due, expiry_due));
        if let Err(e) = pass.await {
            tracing::error!(error = %e, "log maintenance pass panicked");
        }
        let wait_ms = u64::try_from(
            next_retention_ms
                .min(next_expiry_ms)
                .saturating_sub(now_ms()),
        )
        .unwrap_or(0)
        .min(REMOVAL_CHECK_INTERVAL_MAX_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass: retention and producer-id expiry (when due) and due `.deleted` files, partition
/// by partition.
fn maintain(broker: &Broker, retention_due: bool, expiry_due: bool) {
    for partition in broker.replicas.all() {
        let now = now_ms();
        let (deleted, expired) = {
            let mut log = partition.lock_log();
            let deleted = if retention_due {
                log.delete_old_segments(now)
            } else {
                Ok(0)
            };
            if expiry_due {
                let producers =
                    log.remove_expired_producers(now, broker.config.producer_id_expiration_ms);
                if producers > 0 {
                    tracing::debug!(topic = %partition.topic.name, partition = partition.index, producers, "expired idle producer ids");
                }
            }
            (deleted, log.take_expired_deletions(now))
        };
        match deleted {
            Ok(0) => {}
            Ok(count) => tracing::info!(
                topic = %partition.topic.name,
                partition = partition.index,
                segments = count,
                "retention deleted segments"
            ),
            Err(e) => tracing::warn!(
                topic = %partition.topic.name,
                partition = partition.index,
                error = %e,
                "retention pass failed"
            ),
        }
        if let Err(e) = expired.remove() {
            tracing::warn!(
                topic = %partition.topic.name,
                partition = partition.index,
                error = %e,
                "removing deleted segment files; the next start removes them"
            );
        }
    }
}
