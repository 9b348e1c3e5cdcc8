//! The metadata publisher: the only code that carries committed metadata changes out on this
//! broker's partitions (Kafka's `BrokerMetadataPublisher`). It runs under the metadata driver's
//! lock, once per committed batch, in log order:
//!
//! 1. partitions of created topics, and the new partitions of grown ones, are opened, before any
//!    handler can see them;
//! 2. the new image is installed for handlers;
//! 3. partitions of deleted topics are closed and their directories removed;
//! 4. changed topic configs are applied to the open partitions (segment size, max message
//!    size, timestamp type, `flush.messages`, `min.insync.replicas` take effect at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use runnel_cluster::broker_config::{ConfigLayers, CLUSTER_DEFAULT};
use runnel_cluster::metadata::{MetadataDelta, MetadataImage, TopicImage};
use runnel_cluster::topic_config;
use runnel_storage::{
    cleaner::CompactionConfig, io::StdIo, BrokerCompressionType, FileBudget, LastShutdown,
    LogConfig, PartitionLog, StorageError, TimestampType,
};

use super::MetadataManager;
use crate::groups::Groups;
use crate::replica::{Partition, PartitionSettings, ReplicaManager};

/// Threads that create the partitions of one new topic at once (see `Publisher::open_topic`).
const CREATE_THREADS: usize = 8;

/// What the publisher acts on: the replica layer, the driver (to install images), the data
/// directory, and the broker-level topic defaults.
pub struct Publisher<'a> {
    /// This broker.
    pub node_id: i32,
    pub replicas: &'a ReplicaManager,
    pub metadata: &'a MetadataManager,
    /// The group coordinator, whose shards follow the leadership of `__consumer_offsets`.
    pub groups: &'a Groups,
    /// The transaction coordinator, whose shards follow the leadership of
    /// `__transaction_state`.
    pub txns: &'a crate::txns::Txns,
    pub data_dir: &'a Path,
    /// The broker's static configs, under the dynamic ones of the image.
    pub static_configs: &'a BTreeMap<String, String>,
}

impl Publisher<'_> {
    /// Carries out one committed batch (see the module docs for the order).
    pub fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        for topic_id in &delta.created_topics {
            if let Some(topic) = image.topic_by_id(topic_id) {
                // The topic is committed: a failure to create its directories is retried at
                // the next start, so report it but keep the topic.
                match self.open_topic(topic, image) {
                    Ok(()) => tracing::info!(
                        topic = %topic.name,
                        topic_id = %topic.topic_id,
                        partitions = topic.partitions,
                        replication_factor = topic.registration(0).map_or(0, |r| r.replicas.len()),
                        configs = %config_list(&topic.configs),
                        "topic created"
                    ),
                    Err(e) => {
                        tracing::error!(topic = %topic.name, error = %e, "could not open partition logs of new topic")
                    }
                }
            }
        }
        for (topic_id, index) in &delta.changed_partitions {
            if let Some(partition) = self.replicas.partition(topic_id, *index) {
                // Leadership follows the registration before the image shows it.
                self.follow_registration(&partition, image);
            }
        }
        for (topic_id, index) in &delta.changed_partitions {
            if !delta.grown_topics.contains(topic_id) || delta.created_topics.contains(topic_id) {
                continue;
            }
            let Some(topic) = image.topic_by_id(topic_id) else {
                continue;
            };
            if self.replicas.partition(topic_id, *index).is_some() || !self.hosts(topic, *index) {
                continue;
            }
            // As for a new topic: committed, so a failure is reported and retried at the next
            // start rather than undone.
            match self.open_partition(topic, *index, image, LastShutdown::Unclean) {
                Ok(_) => {
                    tracing::debug!(topic = %topic.name, partition = index, "opened new partition")
                }
                Err(e) => {
                    tracing::error!(topic = %topic.name, partition = index, error = %e, "could not open new partition log")
                }
            }
        }
        // One line per grown topic (`grown_topics` holds an entry per new partition).
        let mut grown = delta.grown_topics.clone();
        grown.sort_unstable();
        grown.dedup();
        for topic_id in &grown {
            if let Some(topic) = image
                .topic_by_id(topic_id)
                .filter(|_| !delta.created_topics.contains(topic_id))
            {
                let added = delta.grown_topics.iter().filter(|t| *t == topic_id).count();
                tracing::info!(
                    topic = %topic.name,
                    added,
                    partitions = topic.partitions,
                    "partitions added"
                );
            }
        }
        self.open_moved_here(image, delta);
        self.load_coordinator_shards(image, delta);
        if delta.changed_features {
            self.txns
                .set_transaction_version_level(crate::txns::transaction_version_level(image));
        }
        self.metadata.install(Arc::clone(image));
        for topic in &delta.deleted_topics {
            self.remove_topic(topic);
            tracing::info!(
                topic = %topic.name,
                topic_id = %topic.topic_id,
                partitions = topic.partitions,
                "topic deleted"
            );
        }
        self.remove_moved_away(image, delta);
        let layers = ConfigLayers::of(image, self.node_id, self.static_configs);
        // A changed dynamic broker config (`log.segment.bytes` as a cluster default, say) is
        // the default of every topic without its own value: all open partitions take it.
        let defaults_changed = delta
            .changed_broker_configs
            .iter()
            .any(|r| r == CLUSTER_DEFAULT || *r == self.node_id.to_string());
        let changed: Vec<_> = if defaults_changed {
            image.topics.values().map(|t| t.topic_id).collect()
        } else {
            delta.changed_configs.clone()
        };
        if defaults_changed {
            tracing::info!("dynamic broker configs changed; topic defaults re-applied");
        }
        for topic_id in &changed {
            if delta.created_topics.contains(topic_id) {
                continue;
            }
            if let Some(topic) = image.topic_by_id(topic_id) {
                let settings = settings(&topic.configs, &layers);
                for index in 0..i32::try_from(topic.partitions).unwrap_or(i32::MAX) {
                    if let Some(partition) = self.replicas.partition(&topic.topic_id, index) {
                        partition.reconfigure(&settings);
                    }
                }
                if delta.changed_configs.contains(topic_id) {
                    tracing::info!(
                        topic = %topic.name,
                        configs = %config_list(&topic.configs),
                        "topic config changed"
                    );
                } else {
                    tracing::debug!(topic = %topic.name, "topic configs applied to its partitions");
                }
            }
        }
    }

    /// Loads the coordinators' shards of `__consumer_offsets` and `__transaction_state`
    /// partitions this broker now leads and unloads those it no longer leads (the rules, with
    /// leader epochs, are the coordinator runtime's).
    fn load_coordinator_shards(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        self.groups
            .follow_leadership(image, delta, self.node_id, self.replicas);
        self.txns
            .follow_leadership(image, delta, self.node_id, self.replicas);
    }

    /// Whether this node holds a replica of the partition (contract: a node opens exactly the
    /// partitions whose replicas include it). A partition without a registration (a log from
    /// before registrations, until startup registers it here) is held.
    fn hosts(&self, topic: &TopicImage, index: i32) -> bool {
        topic
            .registration(index)
            .is_none_or(|r| r.replicas.contains(&self.node_id))
    }

    /// Makes an open partition lead (at the registration's leader epoch) or not, as its
    /// registration in `image` says.
    fn follow_registration(&self, partition: &Partition, image: &MetadataImage) {
        let Some(r) = image
            .topic_by_id(&partition.topic.topic_id)
            .and_then(|t| t.registration(partition.index))
        else {
            return;
        };
        if let Err(e) = partition.set_leadership(r.leader == self.node_id, r.leader_epoch) {
            tracing::error!(topic = %partition.topic.name, partition = partition.index, error = %e, "recording a new leader epoch");
        }
    }

    /// Opens every partition of every topic in the installed image (startup), after removing
    /// directories no topic owns.
    pub fn open_all(&self) -> Result<()> {
        let image = self.metadata.image();
        remove_stray_dirs(self.data_dir, &image)?;
        let started = std::time::Instant::now();
        let last_shutdown = crate::clean_shutdown::last_shutdown(self.data_dir);
        let mut recovered = Recovered::default();
        for topic in image.topics.values() {
            for index in 0..i32::try_from(topic.partitions).unwrap_or(i32::MAX) {
                // Already open: a move to this broker published before startup got here.
                if !self.hosts(topic, index)
                    || self.replicas.partition(&topic.topic_id, index).is_some()
                {
                    continue;
                }
                // Storage truncates torn or corrupt tails (and drops segments after a corrupt
                // one) while it opens a log; the `.log` bytes before and after say how much.
                let dir = partition_dir(self.data_dir, &topic.name, index);
                let before = log_file_bytes(&dir);
                let (replaced, stats) = self.open_partition(topic, index, &image, last_shutdown)?;
                recovered.from_snapshot += u64::from(stats.from_snapshot);
                recovered.segments_recovered += stats.segments_recovered;
                recovered.bytes_read += stats.bytes_read;
                let after = log_file_bytes(&dir);
                let truncated = before.saturating_sub(replaced).saturating_sub(after);
                if truncated > 0 {
                    tracing::warn!(
                        topic = %topic.name,
                        partition = index,
                        bytes_truncated = truncated,
                        "partition log truncated by recovery"
                    );
                    recovered.partitions_truncated += 1;
                    recovered.bytes_truncated += truncated;
                }
                recovered.partitions += 1;
                recovered.log_bytes += after;
            }
        }
        // Removed only now that every log is open, and before anything is appended, so a crash
        // from here on is seen as unclean (Kafka's LogManager.loadLogs does the same).
        crate::clean_shutdown::remove(self.data_dir).with_context(|| {
            format!(
                "removing {}",
                self.data_dir
                    .join(crate::clean_shutdown::CLEAN_SHUTDOWN_FILE)
                    .display()
            )
        })?;
        tracing::info!(
            topics = image.topics.len(),
            clean_shutdown = last_shutdown == LastShutdown::Clean,
            partitions = recovered.partitions,
            partitions_from_snapshot = recovered.from_snapshot,
            segments_recovered = recovered.segments_recovered,
            log_bytes_read = recovered.bytes_read,
            log_bytes = recovered.log_bytes,
            partitions_truncated = recovered.partitions_truncated,
            bytes_truncated = recovered.bytes_truncated,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "partition logs recovered"
        );
        Ok(())
    }

    /// Opens (creating) every partition log of `topic` and starts serving it.
    ///
    /// Creating a partition is a handful of small files and fsyncs, bound by the disk's flush
    /// latency rather than the CPU, so a topic of many partitions is created by up to
    /// [`CREATE_THREADS`] threads at once: the disk gets their flushes together instead of one
    /// after another (a CreateTopics is answered once they are all open).
    fn open_topic(&self, topic: &Arc<TopicImage>, image: &MetadataImage) -> Result<()> {
        let hosted: Vec<i32> = (0..i32::try_from(topic.partitions).unwrap_or(i32::MAX))
            .filter(|index| self.hosts(topic, *index))
            .collect();
        // The partitions' directories first, and one fsync of the data dir for all of their
        // names, instead of one per partition when each log creates its own.
        let mut created = false;
        for index in &hosted {
            match std::fs::create_dir(partition_dir(self.data_dir, &topic.name, *index)) {
                Ok(()) => created = true,
                // An older topic's directory of the same name: the open below deals with it.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("creating a partition directory of {}", topic.name)
                    })
                }
            }
        }
        if created {
            std::fs::File::open(self.data_dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync of {}", self.data_dir.display()))?;
        }
        // A new topic's directory is new: nothing was shut down, cleanly or not.
        let open = |indexes: &[i32]| -> Result<()> {
            for index in indexes {
                self.open_partition(topic, *index, image, LastShutdown::Unclean)?;
            }
            Ok(())
        };
        if hosted.len() < 2 * CREATE_THREADS {
            return open(&hosted);
        }
        let chunk = hosted.len().div_ceil(CREATE_THREADS);
        std::thread::scope(|scope| {
            let workers: Vec<_> = hosted
                .chunks(chunk)
                .map(|indexes| scope.spawn(move || open(indexes)))
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })
    }

    /// Opens (creating) partition `index` of `topic` after a run that ended as `last_shutdown`
    /// says, and starts serving it. Returns the bytes of segment files of an older topic's
    /// directory it found there and removed (0 usually), which the recovery summary must not
    /// count as truncated, and what opening the log read.
    fn open_partition(
        &self,
        topic: &Arc<TopicImage>,
        index: i32,
        image: &MetadataImage,
        last_shutdown: LastShutdown,
    ) -> Result<(u64, runnel_storage::OpenStats)> {
        let layers = ConfigLayers::of(image, self.node_id, self.static_configs);
        let settings = settings(&topic.configs, &layers);
        let mut replaced = 0;
        let stats;
        {
            let dir = partition_dir(self.data_dir, &topic.name, index);
            let log = match PartitionLog::open_after(
                dir.clone(),
                *topic.topic_id.as_bytes(),
                settings.log.clone(),
                FileBudget::process_default(),
                Arc::new(StdIo),
                last_shutdown,
            ) {
                Err(StorageError::TopicIdMismatch) => {
                    // A directory of an older topic of the same name (deleted while we were
                    // down): move it aside and start fresh.
                    tracing::info!(dir = %dir.display(), "partition directory belongs to an older topic id; removing it");
                    replaced = log_file_bytes(&dir);
                    let renamed = runnel_storage::rename_for_delete(&dir)?;
                    std::fs::remove_dir_all(&renamed).ok();
                    PartitionLog::open(
                        dir.clone(),
                        *topic.topic_id.as_bytes(),
                        settings.log.clone(),
                    )?
                }
                other => other.with_context(|| format!("opening {}", dir.display()))?,
            };
            let mut log = log;
            stats = log.open_stats();
            if settings.fsync_every_append {
                // The HW may only cover fsynced offsets in fsync mode, and recovery may have
                // kept a tail the crashed process left in the page cache unsynced.
                log.flush()
                    .with_context(|| format!("fsync of recovered {}", dir.display()))?;
            }
            // The leader epoch of the partition's registration, recorded now when this node
            // leads it; otherwise when it becomes leader (`follow_registration`).
            let registration = topic.registration(index);
            let leader_epoch = registration.map_or(0, |r| r.leader_epoch);
            if registration.is_none_or(|r| r.leader == self.node_id) {
                // An empty log's checkpoint is written by its first append: an epoch no batch
                // carries loses nothing if a crash forgets it (the registration holds it), and
                // a new topic of many partitions, most never written soon, saves a file and
                // two fsyncs per partition.
                if log.log_end_offset() == 0 {
                    log.assign_leader_epoch_deferred(leader_epoch)
                } else {
                    log.assign_leader_epoch(leader_epoch)
                }
                .with_context(|| format!("leader epoch checkpoint of {}", dir.display()))?;
            }
            let partition = Partition::new(Arc::clone(topic), index, log, leader_epoch, &settings);
            self.follow_registration(&partition, image);
            self.replicas.add(partition);
        }
        Ok((replaced, stats))
    }

    /// Stops serving a deleted topic's partitions; their directories are renamed for deletion and
    /// removed in the background.
    fn remove_topic(&self, topic: &TopicImage) {
        for partition in self
            .replicas
            .remove_topic(&topic.topic_id, topic.partitions)
        {
            self.delete_partition_dir(topic, &partition);
        }
    }

    /// Opens the partitions a reassignment is adding this node to (their registration lists
    /// it among `adding`): an empty log, not leading, that the replica fetcher fills from the
    /// old replica (see `runnel_cluster::reassignment`).
    fn open_moved_here(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        for (topic_id, index) in &delta.changed_partitions {
            if delta.created_topics.contains(topic_id) {
                continue;
            }
            let Some(topic) = image.topic_by_id(topic_id) else {
                continue;
            };
            let adding_here = topic
                .registration(*index)
                .is_some_and(|r| r.adding.contains(&self.node_id));
            if !adding_here || self.replicas.partition(topic_id, *index).is_some() {
                continue;
            }
            match self.open_partition(topic, *index, image, LastShutdown::Unclean) {
                Ok(_) => {
                    tracing::info!(topic = %topic.name, partition = index, "opened a partition reassigned to this broker")
                }
                Err(e) => {
                    tracing::error!(topic = %topic.name, partition = index, error = %e, "could not open a partition reassigned to this broker")
                }
            }
        }
    }

    /// Closes and deletes the partitions this node is no longer a replica of (a reassignment
    /// completed or was cancelled), once the image that says so is installed.
    fn remove_moved_away(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        for (topic_id, index) in &delta.changed_partitions {
            let Some(topic) = image.topic_by_id(topic_id) else {
                continue;
            };
            if self.hosts(topic, *index) {
                continue;
            }
            if let Some(partition) = self.replicas.remove(topic_id, *index) {
                tracing::info!(topic = %topic.name, partition = index, "partition reassigned away from this broker; deleting its log");
                self.delete_partition_dir(topic, &partition);
            }
        }
    }

    /// Renames a partition's directory for deletion and removes it in the background.
    fn delete_partition_dir(&self, topic: &TopicImage, partition: &Partition) {
        partition.wake_waiters();
        let dir = partition_dir(self.data_dir, &topic.name, partition.index);
        // Waiting fetches hold clones of the partition; the directory rename works even while
        // files are open, and the data is gone once they let go.
        match runnel_storage::rename_for_delete(&dir) {
            Ok(renamed) => {
                std::thread::spawn(move || {
                    if let Err(e) = std::fs::remove_dir_all(&renamed) {
                        tracing::warn!(dir = %renamed.display(), error = %e, "removing deleted partition");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "renaming deleted partition")
            }
        }
    }
}

/// The settings of a topic's partitions from its own configs over the broker's (dynamic, then
/// static) settings.
pub fn settings(
    configs: &BTreeMap<String, String>,
    layers: &ConfigLayers<'_>,
) -> PartitionSettings {
    let get = |name: &str| topic_config::effective_in(name, configs, layers);
    let num = |name: &str| get(name).and_then(|v| v.trim().parse::<i64>().ok());
    let defaults = LogConfig::default();
    PartitionSettings {
        log: LogConfig {
            segment_bytes: num("segment.bytes")
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(defaults.segment_bytes),
            segment_ms: num("segment.ms").unwrap_or(defaults.segment_ms),
            index_interval_bytes: num("index.interval.bytes")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(defaults.index_interval_bytes),
            segment_index_bytes: num("segment.index.bytes")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(defaults.segment_index_bytes),
            max_message_bytes: num("max.message.bytes")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(defaults.max_message_bytes),
            message_timestamp_type: match get("message.timestamp.type").as_deref() {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
            segment_jitter_ms: num("segment.jitter.ms").unwrap_or(defaults.segment_jitter_ms),
            retention_ms: num("retention.ms").unwrap_or(defaults.retention_ms),
            retention_bytes: num("retention.bytes").unwrap_or(defaults.retention_bytes),
            // Kafka's `LogConfig.delete`: the policy list names `delete`.
            retention_enabled: get("cleanup.policy")
                .is_none_or(|v| v.split(',').any(|p| p.trim() == "delete")),
            file_delete_delay_ms: num("file.delete.delay.ms")
                .unwrap_or(defaults.file_delete_delay_ms),
            compression_type: get("compression.type")
                .and_then(|v| BrokerCompressionType::from_name(&v))
                .unwrap_or(defaults.compression_type),
            compression_gzip_level: num("compression.gzip.level")
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(defaults.compression_gzip_level),
            compression_lz4_level: num("compression.lz4.level")
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(defaults.compression_lz4_level),
            compression_zstd_level: num("compression.zstd.level")
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(defaults.compression_zstd_level),
            message_timestamp_before_max_ms: num("message.timestamp.before.max.ms")
                .unwrap_or(defaults.message_timestamp_before_max_ms),
            message_timestamp_after_max_ms: num("message.timestamp.after.max.ms")
                .unwrap_or(defaults.message_timestamp_after_max_ms),
            compaction: compaction_config(&get),
        },
        fsync_every_append: get("flush.messages").is_some_and(|v| v.trim() == "1"),
        min_insync_replicas: num("min.insync.replicas")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(1),
        records_deletable: get("cleanup.policy").is_none_or(|v| {
            let policies: Vec<&str> = v.split(',').map(str::trim).collect();
            policies.contains(&"delete") || !policies.contains(&"compact")
        }),
    }
}

/// What opening the partition logs at startup found, for its summary line.
#[derive(Default)]
struct Recovered {
    partitions: u64,
    /// Partitions opened from their indexes and producer snapshot, reading no batches.
    from_snapshot: u64,
    /// Segments read whole and CRC-checked.
    segments_recovered: u64,
    /// Bytes of `.log` files read to open the logs.
    bytes_read: u64,
    /// Bytes of `.log` files kept.
    log_bytes: u64,
    partitions_truncated: u64,
    bytes_truncated: u64,
}

/// Total size of a partition directory's segment files (`*.log`); 0 if it does not exist yet.
fn log_file_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// A topic's own configs as `key=value,...` for a log line (topic configs hold no secrets).
fn config_list(configs: &BTreeMap<String, String>) -> String {
    configs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// Removes partition directories that no live topic owns: leftovers of deletes.
fn remove_stray_dirs(data_dir: &Path, image: &MetadataImage) -> Result<()> {
    let entries =
        std::fs::read_dir(data_dir).with_context(|| format!("listing {}", data_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let path = entry.path();
        if !path.is_dir() || name == "meta" {
            continue;
        }
        if name.ends_with("-delete") {
            remove_dir_logged(&path);
            continue;
        }
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<u32>() else {
            continue;
        };
        let owned = image.topic(topic).is_some_and(|t| index < t.partitions);
        if !owned && path.join("partition.metadata").exists() {
            tracing::info!(dir = %path.display(), "removing partition directory of a deleted topic");
            remove_dir_logged(&path);
        }
    }
    Ok(())
}

fn remove_dir_logged(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(dir = %path.display(), error = %e, "could not remove directory");
    }
}

/// A log's compaction settings from its topic's effective configs (`get` is
/// `topic_config::effective_in` over the topic's configs and the broker's layers).
pub fn compaction_config(get: &dyn Fn(&str) -> Option<String>) -> CompactionConfig {
    let defaults = CompactionConfig::default();
    let long = |name: &str, default: i64| {
        get(name)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    };
    CompactionConfig {
        compact: get("cleanup.policy").is_some_and(|v| v.split(',').any(|p| p.trim() == "compact")),
        delete_retention_ms: long("delete.retention.ms", defaults.delete_retention_ms),
        min_compaction_lag_ms: long("min.compaction.lag.ms", defaults.min_compaction_lag_ms),
        max_compaction_lag_ms: long("max.compaction.lag.ms", defaults.max_compaction_lag_ms),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite())
            .unwrap_or(defaults.min_cleanable_dirty_ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::internal_topics::OFFSETS_TOPIC;
    use crate::replica::{AppendOrigin, AppendWait};
    use crate::state::Broker;
    use runnel_protocol::batch::{encode_uncompressed_batch, BatchSpec, RecordSpec};

    #[test]
    fn compaction_configs_are_read_from_the_effective_topic_configs() {
        // `cleanup.policy` lists are split on commas (Kafka accepts spaces around them); unset
        // configs keep Kafka's defaults.
        let configs: BTreeMap<&str, &str> = [
            ("cleanup.policy", "delete, compact"),
            ("delete.retention.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]
        .into();
        let get = |name: &str| configs.get(name).map(|v| (*v).to_owned());
        let c = super::compaction_config(&get);
        assert!(c.compact);
        assert_eq!(c.delete_retention_ms, 100);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        let none = |_: &str| None;
        assert_eq!(
            super::compaction_config(&none),
            runnel_storage::cleaner::CompactionConfig::default()
        );
        let delete = |name: &str| (name == "cleanup.policy").then(|| "delete".to_owned());
        assert!(!super::compaction_config(&delete).compact);
    }

    fn batch(value_bytes: usize) -> bytes::Bytes {
        let value = vec![b'v'; value_bytes];
        encode_uncompressed_batch(&BatchSpec {
            base_timestamp: 1,
            records: vec![RecordSpec {
                timestamp_delta: 0,
                key: None,
                value: Some(&value),
                headers: vec![],
            }],
            ..Default::default()
        })
        .into()
    }

    // Proves the retention settings follow Kafka's configs: topic values over broker synonyms
    // (hours converted), retention only with `delete` in the policy, DeleteRecords refused only
    // for `compact` alone.
    #[test]
    fn retention_settings_follow_topic_and_broker_configs() {
        let none = BTreeMap::new();
        let static_configs: BTreeMap<String, String> = [
            ("log.retention.hours".to_string(), "2".to_string()),
            ("log.retention.bytes".to_string(), "5000".to_string()),
            ("log.segment.delete.delay.ms".to_string(), "10".to_string()),
        ]
        .into();
        let layers = ConfigLayers {
            dynamic_broker: &none,
            dynamic_default: &none,
            static_configs: &static_configs,
        };
        let with = |pairs: &[(&str, &str)]| {
            let configs: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            settings(&configs, &layers)
        };
        let defaults = with(&[]);
        assert_eq!(defaults.log.retention_ms, 2 * 3_600_000);
        assert_eq!(defaults.log.retention_bytes, 5000);
        assert_eq!(defaults.log.file_delete_delay_ms, 10);
        assert!(defaults.log.retention_enabled && defaults.records_deletable);
        let own = with(&[("retention.ms", "-1"), ("segment.jitter.ms", "7")]);
        assert_eq!(own.log.retention_ms, -1);
        assert_eq!(own.log.segment_jitter_ms, 7);
        for (policy, retention, deletable) in [
            ("compact", false, false),
            ("compact,delete", true, true),
            ("delete, compact", true, true),
            ("", false, true),
        ] {
            let s = with(&[("cleanup.policy", policy)]);
            assert_eq!(
                (s.log.retention_enabled, s.records_deletable),
                (retention, deletable),
                "{policy:?}"
            );
        }
    }

    // Proves a topic config change reaches the topic's open partitions without a restart:
    // `max.message.bytes` refuses a batch it allowed before, and `flush.messages=1` makes the
    // next append wait for the group commit (and removing it appends inline again). The log
    // config used to be copied once at open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_changes_reach_open_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        let topic = broker
            .create_topic("t", 1, 1, BTreeMap::new(), false)
            .unwrap();
        let partition = broker.partition(&topic.topic_id, 0).unwrap();
        let append = |bytes: usize| {
            broker
                .replicas
                .append_records(&partition, AppendOrigin::Client, -1, batch(bytes))
                .unwrap()
        };
        assert!(matches!(append(2000), AppendWait::Done(Ok(_))));
        broker
            .alter_topic_configs("t", vec![("max.message.bytes".into(), Some("1000".into()))])
            .unwrap();
        assert!(matches!(
            append(2000),
            AppendWait::Done(Err(StorageError::Batch(
                runnel_protocol::batch::BatchError::MessageTooLarge { .. }
            )))
        ));
        broker
            .alter_topic_configs("t", vec![("flush.messages".into(), Some("1".into()))])
            .unwrap();
        let wait = append(10);
        assert!(matches!(wait, AppendWait::Pending(_)));
        assert!(wait.wait().await.is_ok());
        broker
            .alter_topic_configs("t", vec![("flush.messages".into(), None)])
            .unwrap();
        assert!(matches!(append(10), AppendWait::Done(Ok(_))));
        assert_eq!(partition.lock_log().high_watermark(), 3);
    }

    // Proves a dynamic broker config reaches open partitions of topics without their own value:
    // a cluster-default message.max.bytes refuses a batch it allowed before, a topic override
    // wins over it, and removing the default restores Kafka's. The change survives a restart
    // (the BrokerConfig record is replayed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamic_broker_configs_reach_open_partitions() {
        use runnel_cluster::controller::{ConfigOp, ConfigResource};
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config.clone(), ("localhost".into(), 9092)).unwrap();
        let topic = broker
            .create_topic("t", 1, 1, BTreeMap::new(), false)
            .unwrap();
        let partition = broker.partition(&topic.topic_id, 0).unwrap();
        let append = |bytes: usize| {
            broker
                .replicas
                .append_records(&partition, AppendOrigin::Client, -1, batch(bytes))
                .unwrap()
        };
        let cluster = |ops: Vec<(String, ConfigOp)>| {
            broker
                .alter_configs(ConfigResource::Broker(String::new()), ops, false, false)
                .unwrap();
        };
        assert!(matches!(append(2000), AppendWait::Done(Ok(_))));
        cluster(vec![(
            "message.max.bytes".into(),
            ConfigOp::Set("1000".into()),
        )]);
        assert!(matches!(append(2000), AppendWait::Done(Err(_))));
        broker
            .alter_topic_configs("t", vec![("max.message.bytes".into(), Some("5000".into()))])
            .unwrap();
        assert!(matches!(append(2000), AppendWait::Done(Ok(_))));
        broker
            .alter_topic_configs("t", vec![("max.message.bytes".into(), None)])
            .unwrap();
        assert!(matches!(append(2000), AppendWait::Done(Err(_))));
        drop(partition);
        drop(broker);
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        assert_eq!(
            broker.image().broker_configs[""]
                .get("message.max.bytes")
                .map(String::as_str),
            Some("1000")
        );
        broker
            .alter_configs(
                ConfigResource::Broker(String::new()),
                vec![("message.max.bytes".into(), ConfigOp::Delete)],
                false,
                false,
            )
            .unwrap();
        let partition = broker.partition(&topic.topic_id, 0).unwrap();
        assert!(matches!(
            broker
                .replicas
                .append_records(&partition, AppendOrigin::Client, -1, batch(2000))
                .unwrap(),
            AppendWait::Done(Ok(_))
        ));
    }

    // Proves a data dir written before partition and broker registrations existed (a metadata
    // log of bare records, as runnel wrote it) opens: the broker registers itself and the
    // partitions, opens them, and loads the group coordinator's shards without errors.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_metadata_log_from_before_registrations_opens() {
        use runnel_cluster::metadata::MetadataRecord;
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        std::fs::create_dir_all(&meta).unwrap();
        let topic = |name: &str, id: u128, partitions: u32| MetadataRecord::Topic {
            name: name.into(),
            topic_id: uuid::Uuid::from_u128(id),
            partitions,
            configs: crate::internal_topics::offsets_topic_configs(104_857_600),
        };
        let mut bytes = Vec::new();
        for record in [
            MetadataRecord::Cluster {
                cluster_id: "old-cluster".into(),
            },
            topic("t", 7, 2),
            topic(OFFSETS_TOPIC, 8, 50),
        ] {
            // The frame of a bare record: length, CRC32C, JSON.
            let payload = serde_json::to_vec(&record).unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
        }
        std::fs::write(meta.join("metadata.log"), bytes).unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        let image = broker.image();
        assert_eq!(image.cluster_id, "old-cluster");
        assert!(image.brokers.contains_key(&broker.node_id()));
        let t = image.topic("t").unwrap();
        for p in 0..2 {
            assert_eq!(t.registration(p).unwrap().leader, broker.node_id());
            assert!(broker.partition(&t.topic_id, p).is_some());
        }
        let offsets = image.topic(OFFSETS_TOPIC).unwrap();
        assert_eq!(offsets.registrations.len(), 50);
    }

    // Proves the publisher follows a move's registrations on both sides: the broker a
    // partition moves to opens an empty log that does not lead until the move completes; the
    // broker it moves from keeps its log while copying and draining (leading only while
    // copying), then closes it and deletes its directory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moved_partitions_open_here_and_are_deleted_when_moved_away() {
        use runnel_cluster::Command;
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let broker = Broker::open(config, ("localhost".into(), 9092)).unwrap();
        let me = broker.node_id();
        let other = me + 1;
        let submit = |command: Command| broker.metadata.submit(&command, &*broker).unwrap();
        submit(Command::RegisterBroker {
            node_id: other,
            host: "localhost".into(),
            port: 9093,
            rack: None,
        });
        let create = |name: &str, on: i32| {
            submit(Command::CreateTopic {
                name: name.into(),
                partitions: -1,
                replication_factor: -1,
                configs: BTreeMap::new(),
                assignments: vec![(0, vec![on])],
            });
            broker.image().topic(name).unwrap().topic_id
        };
        let registration = |topic_id: uuid::Uuid| {
            broker
                .image()
                .topic_by_id(&topic_id)
                .unwrap()
                .registration(0)
                .unwrap()
                .clone()
        };
        let step = |topic_id: uuid::Uuid, node_id: i32, complete: bool| {
            let partition_epoch = registration(topic_id).partition_epoch;
            submit(if complete {
                Command::CompleteReassignment {
                    topic_id,
                    partition: 0,
                    node_id,
                    partition_epoch,
                }
            } else {
                Command::FenceReassigningPartition {
                    topic_id,
                    partition: 0,
                    node_id,
                    partition_epoch,
                }
            });
        };
        let reassign = |topic: &str, to: i32| {
            submit(Command::AlterPartitionReassignment {
                topic: topic.into(),
                partition: 0,
                replicas: Some(vec![to]),
                allow_replication_factor_change: false,
            });
        };

        let away = create("away", me);
        let partition = broker.partition(&away, 0).unwrap();
        let appended = broker
            .replicas
            .append_records(&partition, AppendOrigin::Client, -1, batch(10))
            .unwrap();
        assert!(matches!(appended, AppendWait::Done(Ok(_))));
        let away_dir = dir.path().join("away-0");
        reassign("away", other);
        assert!(
            broker.partition(&away, 0).unwrap().is_leader(),
            "copying: still leads"
        );
        step(away, other, false);
        let held = broker.partition(&away, 0).expect("draining: still held");
        assert!(!held.is_leader(), "draining: refuses produce");
        assert!(away_dir.exists());
        step(away, other, true);
        assert!(broker.partition(&away, 0).is_none());
        assert!(!away_dir.exists(), "the old copy's directory is gone");

        let here = create("here", other);
        assert!(broker.partition(&here, 0).is_none());
        reassign("here", me);
        let copy = broker
            .partition(&here, 0)
            .expect("the target opens the partition");
        assert!(!copy.is_leader());
        assert_eq!(copy.lock_log().log_end_offset(), 0);
        step(here, me, false);
        assert!(!broker.partition(&here, 0).unwrap().is_leader());
        step(here, me, true);
        let led = broker.partition(&here, 0).unwrap();
        assert!(led.is_leader());
        assert_eq!(led.leader_epoch(), registration(here).leader_epoch);
        assert_eq!(registration(here).replicas, vec![me]);
    }
}
