//! The log cleaner threads (Kafka's `LogCleaner` and the scheduling half of
//! `LogCleanerManager`): every `log.cleaner.backoff.ms` each thread picks the filthiest
//! cleanable compacted log no other thread is cleaning and runs one round on it
//! (`runnel_storage::cleaner::clean_once`), with no backoff while there is work.
//!
//! Settings come from the broker configs on every pass, so dynamic changes of
//! `log.cleaner.{backoff.ms, dedupe.buffer.size, io.buffer.size, io.buffer.load.factor,
//! io.max.bytes.per.second}` apply to the next round. A dynamic `log.cleaner.threads` change
//! applies too (Kafka restarts its cleaner; here threads past the new count stop after their
//! round and thread 0 starts the missing ones), except that 0 stops cleaning until a restart.
//! `log.cleaner.enable` is read-only, as in Kafka.
//!
//! A round that fails (an I/O error, a corrupt batch) marks the partition uncleanable until
//! the broker restarts, as Kafka's `markPartitionUncleanable` does; a failure after a swap
//! became durable has poisoned the log, which then answers KAFKA_STORAGE_ERROR.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use runnel_cluster::broker_config::ConfigLayers;
use runnel_storage::cleaner::{clean_once, CleanerSettings, OffsetMap, Throttler};

use crate::replica::Partition;
use crate::state::Broker;

/// The part of the dedupe buffer a thread may use is at most this (Kafka caps it at
/// `Int.MaxValue`, its `ByteBuffer` limit).
const DEDUPE_BYTES_PER_THREAD_MAX: usize = i32::MAX as usize;
/// How long shutdown waits for a round in progress before leaving its thread behind.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The broker-wide cleaner settings in force.
#[derive(Debug, Clone, Copy)]
struct Settings {
    threads: usize,
    backoff: Duration,
    storage: CleanerSettings,
    io_max_bytes_per_second: f64,
}

fn settings(layers: &ConfigLayers<'_>) -> Settings {
    let num = |name: &str| {
        layers
            .value(name)
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let threads = num("log.cleaner.threads").map_or(1, |t| t.max(0.0) as usize);
    let dedupe = num("log.cleaner.dedupe.buffer.size")
        .unwrap_or(134_217_728.0)
        .max(0.0);
    let per_thread = ((dedupe as usize) / threads.max(1)).min(DEDUPE_BYTES_PER_THREAD_MAX);
    Settings {
        threads,
        backoff: Duration::from_millis(
            num("log.cleaner.backoff.ms").map_or(15_000, |v| v.max(0.0) as u64),
        ),
        storage: CleanerSettings {
            dedupe_buffer_bytes_per_thread: per_thread,
            dedupe_load_factor: num("log.cleaner.io.buffer.load.factor")
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .unwrap_or(0.9),
            // Kafka splits the I/O buffers between threads and between reading and writing.
            io_buffer_bytes: (num("log.cleaner.io.buffer.size")
                .unwrap_or(524_288.0)
                .max(0.0) as usize
                / threads.max(1)
                / 2)
            .max(64 * 1024),
        },
        io_max_bytes_per_second: num("log.cleaner.io.max.bytes.per.second").unwrap_or(f64::MAX),
    }
}

/// What the cleaner threads share.
struct Shared {
    broker: Arc<Broker>,
    throttler: Throttler,
    stop: AtomicBool,
    /// Woken on stop, so a thread in its backoff sleep ends promptly.
    wake: (Mutex<()>, Condvar),
    /// Partitions a thread is cleaning (Kafka's `inProgress`), by the address of their
    /// `Partition`.
    in_progress: Mutex<HashSet<usize>>,
    /// Partitions whose last round failed (Kafka's `uncleanablePartitions`).
    uncleanable: Mutex<HashSet<usize>>,
    /// Threads with ids below this run; a thread whose id reaches the configured count stops.
    live: Mutex<usize>,
    /// Every thread started, for `shutdown` to join.
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// The first usable offset-map size and load factor, kept when a dynamic change would make
    /// the map too small to hold one key.
    first_map: (usize, f64),
}

/// The running cleaner threads; `shutdown` stops them.
pub struct LogCleaner {
    shared: Arc<Shared>,
}

/// Starts cleaner thread `id`; false when the system refused a thread.
fn spawn(shared: &Arc<Shared>, id: usize) -> bool {
    let thread_shared = Arc::clone(shared);
    match std::thread::Builder::new()
        .name(format!("log-cleaner-{id}"))
        .spawn(move || run(&thread_shared, id))
    {
        Ok(handle) => {
            lock(&shared.handles).push(handle);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "starting a log cleaner thread");
            false
        }
    }
}

impl LogCleaner {
    /// Starts `log.cleaner.threads` threads unless `log.cleaner.enable` is false; `None` then.
    pub fn start(broker: Arc<Broker>) -> Option<LogCleaner> {
        let image = broker.image();
        let layers = broker.config_layers(&image);
        let enabled = layers
            .value("log.cleaner.enable")
            .is_none_or(|v| v.trim() != "false");
        let first = settings(&layers);
        if !enabled || first.threads == 0 {
            tracing::info!("log cleaner disabled");
            return None;
        }
        // Kafka's `Cleaner` assertion: a map that cannot hold one key never makes progress.
        let map = OffsetMap::new(
            first.storage.dedupe_buffer_bytes_per_thread,
            first.storage.dedupe_load_factor,
        );
        if map.desired_entries_max() < 1 {
            tracing::error!(
                "log cleaner disabled: the offset map is too small to fit even a single message; \
                 increase log.cleaner.dedupe.buffer.size or decrease log.cleaner.threads"
            );
            return None;
        }
        let shared = Arc::new(Shared {
            broker: Arc::clone(&broker),
            throttler: Throttler::new(first.io_max_bytes_per_second),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            in_progress: Mutex::new(HashSet::new()),
            uncleanable: Mutex::new(HashSet::new()),
            live: Mutex::new(first.threads),
            handles: Mutex::new(Vec::new()),
            first_map: (
                first.storage.dedupe_buffer_bytes_per_thread,
                first.storage.dedupe_load_factor,
            ),
        });
        for id in 0..first.threads {
            spawn(&shared, id);
        }
        Some(LogCleaner { shared })
    }

    /// Stops the threads after their current round, waiting up to `SHUTDOWN_WAIT`.
    pub fn shutdown(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.1.notify_all();
        let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
        let handles = std::mem::take(&mut *lock(&self.shared.handles));
        for thread in handles {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("a log cleaner round is still running at shutdown; leaving it");
            }
        }
    }
}

fn key(partition: &Arc<Partition>) -> usize {
    Arc::as_ptr(partition) as usize
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Kafka's `grabFilthiestCompactedLog`: the cleanable compacted log with the highest dirty
/// ratio that no thread is cleaning, now marked in progress.
fn grab_filthiest(shared: &Shared, now_ms: i64) -> Option<Arc<Partition>> {
    let mut best: Option<(Arc<Partition>, f64)> = None;
    let busy: HashSet<usize> = lock(&shared.in_progress)
        .union(&lock(&shared.uncleanable))
        .copied()
        .collect();
    for partition in shared.broker.replicas.all() {
        if busy.contains(&key(&partition)) {
            continue;
        }
        let log = partition.lock_log();
        let Some(candidate) = log.cleaning_candidate(now_ms) else {
            continue;
        };
        if candidate.reset_checkpoint {
            if let Err(e) = log.checkpoint_cleaned(candidate.first_dirty_offset) {
                tracing::warn!(error = %e, "resetting a cleaner checkpoint");
            }
        }
        let ratio_min = log.config().compaction.min_cleanable_dirty_ratio;
        drop(log);
        let ratio = candidate.cleanable_ratio();
        if candidate.is_cleanable(ratio_min) && best.as_ref().is_none_or(|(_, r)| ratio > *r) {
            best = Some((partition, ratio));
        }
    }
    let (partition, _) = best?;
    lock(&shared.in_progress).insert(key(&partition));
    Some(partition)
}

fn run(shared: &Arc<Shared>, id: usize) {
    let (first_budget, first_load_factor) = shared.first_map;
    let mut map: Option<OffsetMap> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let current = {
            let image = shared.broker.image();
            settings(&shared.broker.config_layers(&image))
        };
        if id >= current.threads {
            let mut live = lock(&shared.live);
            *live = (*live).min(id);
            tracing::info!(
                thread = id,
                "log cleaner thread stopping (log.cleaner.threads lowered)"
            );
            return;
        }
        if id == 0 {
            let mut live = lock(&shared.live);
            while *live < current.threads && spawn(shared, *live) {
                *live += 1;
            }
        }
        shared.throttler.set_rate(current.io_max_bytes_per_second);
        let now_ms = crate::clock::now_ms();
        let Some(partition) = grab_filthiest(shared, now_ms) else {
            let guard = lock(&shared.wake.0);
            if !shared.stop.load(Ordering::SeqCst) {
                let _ = shared.wake.1.wait_timeout(guard, current.backoff);
            }
            continue;
        };
        // A dynamic change too small to hold one key keeps the first usable size.
        let usable = OffsetMap::new(
            current.storage.dedupe_buffer_bytes_per_thread,
            current.storage.dedupe_load_factor,
        )
        .desired_entries_max()
            >= 1;
        let (budget, load_factor) = if usable {
            (
                current.storage.dedupe_buffer_bytes_per_thread,
                current.storage.dedupe_load_factor,
            )
        } else {
            (first_budget, first_load_factor)
        };
        let map = match &mut map {
            Some(m) if m.slots() == (budget / runnel_storage::cleaner::BYTES_PER_ENTRY).max(1) => m,
            slot => slot.insert(OffsetMap::new(budget, load_factor)),
        };
        let name = format!("{}-{}", partition.topic.name, partition.index);
        // The partition must still be the broker's: a topic deleted (and maybe created again
        // under its name) meanwhile must not see this round's files.
        let registered = || {
            shared
                .broker
                .replicas
                .partition(&partition.topic.topic_id, partition.index)
                .is_some_and(|p| Arc::ptr_eq(&p, &partition))
        };
        let result = clean_once(
            || registered().then(|| partition.lock_log()),
            map,
            &current.storage,
            &shared.throttler,
            now_ms,
            false,
        );
        lock(&shared.in_progress).remove(&key(&partition));
        match result {
            Ok(Some(stats)) => tracing::info!(
                partition = %name,
                end_offset = stats.end_offset,
                bytes_read = stats.bytes_read,
                bytes_written = stats.bytes_written,
                records_read = stats.records_read,
                records_written = stats.records_written,
                aborted = stats.aborted,
                "cleaned log"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(partition = %name, error = %e, "log cleaning failed; partition marked uncleanable");
                lock(&shared.uncleanable).insert(key(&partition));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn broker_settings_split_the_dedupe_buffer_between_threads() {
        // Kafka gives each thread dedupe.buffer.size / threads and half its share of the I/O
        // buffer size; the defaults are Kafka's.
        let empty = BTreeMap::new();
        let statics: BTreeMap<String, String> = [
            ("log.cleaner.threads".to_owned(), "2".to_owned()),
            (
                "log.cleaner.dedupe.buffer.size".to_owned(),
                "1000000".to_owned(),
            ),
        ]
        .into();
        let layers = |s| ConfigLayers {
            dynamic_broker: &empty,
            dynamic_default: &empty,
            static_configs: s,
        };
        let s = settings(&layers(&statics));
        assert_eq!(
            (s.threads, s.storage.dedupe_buffer_bytes_per_thread),
            (2, 500_000)
        );
        let d = settings(&layers(&empty));
        assert_eq!(d.threads, 1);
        assert_eq!(d.backoff, Duration::from_millis(15_000));
        assert_eq!(d.storage.dedupe_buffer_bytes_per_thread, 134_217_728);
        assert_eq!(d.io_max_bytes_per_second, f64::MAX);
    }
}
