//! The broker's shared state: the controller and the metadata image it publishes, and the open
//! partition logs. Handlers borrow an `Arc<Broker>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use runnel_cluster::controller::TopicDefaults;
use runnel_cluster::topic_config;
use runnel_cluster::{ClusterError, Controller, MetadataImage, TopicImage};
use runnel_storage::{LogConfig, PartitionLog, StorageError, TimestampType};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::replica::{Partition, ReplicaManager};

pub struct Broker {
    pub config: BrokerConfig,
    /// Host and port clients are told to connect to.
    pub advertised: (String, u16),
    /// Broker-level values of topic configs (`log.segment.bytes`, ...).
    pub topic_defaults_raw: BTreeMap<String, String>,
    controller: Mutex<Controller>,
    image: RwLock<Arc<MetadataImage>>,
    /// Every partition this broker holds, and the one way records get into them.
    pub replicas: ReplicaManager,
    data_dir: PathBuf,
    /// The group coordinator's async shell.
    pub groups: Arc<crate::groups::Groups>,
    /// KIP-227 incremental fetch sessions; locked briefly twice per fetch, never across an await.
    fetch_sessions: Mutex<crate::fetch_session::FetchSessionCache>,
    /// Held for the process lifetime: a second broker on the same data dir would corrupt it.
    _lock_file: std::fs::File,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Broker {
    /// Opens the data directory: metadata log, then every partition the image names. Partition
    /// directories the image does not name (deleted topics, a crash mid-delete) are removed.
    pub fn open(config: BrokerConfig, advertised: (String, u16)) -> Result<Arc<Broker>> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let lock_path = data_dir.join(".lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock_file.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "data dir {} is in use by another process (lock {})",
                data_dir.display(),
                lock_path.display()
            )
        })?;
        let controller = Controller::open(&data_dir.join("meta"), config.metadata_log_records_max)
            .context("opening metadata log")?;
        let image = controller.image();
        let group_config = config.groups.clone();
        let fetch_session_slots = config.fetch_session_slots;
        let broker = Broker {
            topic_defaults_raw: config.topic_defaults(),
            config,
            advertised,
            controller: Mutex::new(controller),
            image: RwLock::new(Arc::clone(&image)),
            replicas: ReplicaManager::default(),
            data_dir,
            groups: Arc::new(crate::groups::Groups::new(group_config)),
            fetch_sessions: Mutex::new(crate::fetch_session::FetchSessionCache::new(
                crate::fetch_session::SessionCacheLimits {
                    slots_max: fetch_session_slots,
                    ..Default::default()
                },
                crate::fetch_session::random_seed(),
            )),
            _lock_file: lock_file,
        };
        broker.remove_stray_dirs(&image)?;
        for topic in image.topics.values() {
            broker.open_topic(topic)?;
        }
        tracing::info!(
            cluster_id = %image.cluster_id,
            topics = image.topics.len(),
            "metadata loaded"
        );
        broker
            .groups
            .replay(&broker)
            .context("replaying __consumer_offsets")?;
        Ok(Arc::new(broker))
    }

    /// The fetch session cache (a panic under the lock leaves sessions that at worst answer
    /// one wrong epoch, after which clients start over, so a poisoned lock is used as is).
    pub fn fetch_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::fetch_session::FetchSessionCache> {
        self.fetch_sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn partition(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.replicas.partition(topic_id, index)
    }

    fn lock_controller(&self) -> std::sync::MutexGuard<'_, Controller> {
        self.controller.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, image: Arc<MetadataImage>) {
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = image;
    }

    pub fn topic_defaults(&self) -> TopicDefaults {
        TopicDefaults {
            partitions: self.config.num_partitions,
            replication_factor: self.config.default_replication_factor,
        }
    }

    /// Creates a topic (metadata first, then its partition directories) and publishes it.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, ClusterError> {
        let mut controller = self.lock_controller();
        let topic = controller.create_topic(
            name,
            partitions,
            replication_factor,
            configs,
            &self.topic_defaults(),
            validate_only,
        )?;
        if !validate_only {
            // Internal topics' configs are ours; only user choices deserve a warning.
            let user_topic = !crate::groups::is_internal_topic(name);
            for (key, _) in topic.configs.iter().filter(|_| user_topic) {
                if topic_config::lookup(key).is_some_and(|d| !d.acted_on) {
                    tracing::warn!(topic = %name, config = %key, "topic config stored and reported but not acted on by runnel yet");
                }
            }
            // The topic is committed: a failure to create its directories is retried at the
            // next start, so report it but keep the topic.
            if let Err(e) = self.open_topic(&topic) {
                tracing::error!(topic = %name, error = %e, "could not open partition logs of new topic");
            }
            self.publish(controller.image());
        }
        Ok(topic)
    }

    /// Deletes a topic: metadata first, then its logs are closed and their directories renamed
    /// for deletion and removed in the background.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, ClusterError> {
        let mut controller = self.lock_controller();
        let topic = controller.delete_topic(name)?;
        self.publish(controller.image());
        drop(controller);
        for partition in self
            .replicas
            .remove_topic(&topic.topic_id, topic.partitions)
        {
            partition.wake_waiters();
            let dir = self.partition_dir(&topic.name, partition.index);
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
        Ok(topic)
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does when a group coordinator is
    /// first looked up.
    pub fn ensure_offsets_topic(&self) -> Result<(), ClusterError> {
        if self.image().topic(crate::groups::OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        match self.create_topic(
            crate::groups::OFFSETS_TOPIC,
            self.config.groups.offsets_topic_num_partitions,
            1,
            crate::groups::offsets_topic_configs(),
            false,
        ) {
            Ok(_) | Err(ClusterError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn allocate_producer_id(&self) -> Result<i64, ClusterError> {
        let mut controller = self.lock_controller();
        let id = controller.allocate_producer_id()?;
        self.publish(controller.image());
        Ok(id)
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// Opens (creating) every partition log of `topic`.
    fn open_topic(&self, topic: &Arc<TopicImage>) -> Result<()> {
        let log_config = self.log_config(&topic.configs);
        let get = |name: &str| {
            topic_config::effective(name, &topic.configs, &self.topic_defaults_raw)
                .unwrap_or_default()
                .to_owned()
        };
        let flush_every_append = get("flush.messages").trim() == "1";
        let min_insync_replicas = get("min.insync.replicas").trim().parse().unwrap_or(1);
        for index in 0..topic.partitions as i32 {
            let dir = self.partition_dir(&topic.name, index);
            let log = match PartitionLog::open(
                dir.clone(),
                *topic.topic_id.as_bytes(),
                log_config.clone(),
            ) {
                Err(StorageError::TopicIdMismatch) => {
                    // A directory of an older topic of the same name (deleted while we were
                    // down): move it aside and start fresh.
                    tracing::info!(dir = %dir.display(), "partition directory belongs to an older topic id; removing it");
                    let renamed = runnel_storage::rename_for_delete(&dir)?;
                    std::fs::remove_dir_all(&renamed).ok();
                    PartitionLog::open(dir.clone(), *topic.topic_id.as_bytes(), log_config.clone())?
                }
                other => other.with_context(|| format!("opening {}", dir.display()))?,
            };
            let mut log = log;
            if flush_every_append {
                // The HW may only cover fsynced offsets in fsync mode, and recovery may have
                // kept a tail the crashed process left in the page cache unsynced.
                log.flush()
                    .with_context(|| format!("fsync of recovered {}", dir.display()))?;
            }
            // The only replica is the leader, at epoch 0 until replication elects others.
            let leader_epoch = 0;
            log.assign_leader_epoch(leader_epoch)
                .with_context(|| format!("leader epoch checkpoint of {}", dir.display()))?;
            self.replicas.add(Partition::new(
                Arc::clone(topic),
                index,
                log,
                leader_epoch,
                flush_every_append,
                min_insync_replicas,
            ));
        }
        Ok(())
    }

    /// The storage settings of a topic from its effective configs.
    fn log_config(&self, configs: &BTreeMap<String, String>) -> LogConfig {
        let defaults = LogConfig::default();
        let get = |name: &str| topic_config::effective(name, configs, &self.topic_defaults_raw);
        let num = |name: &str| get(name).and_then(|v| v.trim().parse::<i64>().ok());
        LogConfig {
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
            message_timestamp_type: match get("message.timestamp.type") {
                Some("LogAppendTime") => TimestampType::LogAppendTime,
                _ => TimestampType::CreateTime,
            },
        }
    }

    /// Removes partition directories that no live topic owns: leftovers of deletes.
    fn remove_stray_dirs(&self, image: &MetadataImage) -> Result<()> {
        let entries = std::fs::read_dir(&self.data_dir)
            .with_context(|| format!("listing {}", self.data_dir.display()))?;
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

    /// Flushes and closes every partition log (clean shutdown: the next start skips recovery).
    pub fn shutdown(&self) {
        for partition in self.replicas.remove_all() {
            partition.wake_waiters();
            match Arc::try_unwrap(partition) {
                Ok(p) => {
                    let log = p.log.into_inner().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = log.close() {
                        tracing::warn!(error = %e, "closing partition log");
                    }
                }
                Err(p) => {
                    if let Err(e) = p.lock_log().flush() {
                        tracing::warn!(error = %e, "flushing partition log");
                    }
                }
            }
        }
    }
}

fn remove_dir_logged(path: &Path) {
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!(dir = %path.display(), error = %e, "could not remove directory");
    }
}
