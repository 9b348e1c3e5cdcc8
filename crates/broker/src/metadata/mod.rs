//! The metadata driver: runs the controller engine, commits its records to the metadata log,
//! and publishes each committed batch (the new image and what changed) to the broker.
//!
//! The order is the point: the engine decides from the current image (no I/O); the log commits
//! (fsync here, a quorum in a cluster); only then are the records applied to a new image, and
//! the publisher (`publisher`) carries the change out on partitions before and after the new
//! image is installed for handlers. A change that failed to commit is never seen by anyone.
//! Commands run one at a time (the driver's lock), so images are published in log order.

mod file_log;
pub mod meta_properties;
pub mod publisher;
pub mod quorum;
pub mod quorum_config;
mod raft_log;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use runnel_cluster::metadata::{MetadataDelta, MetadataImage, MetadataLog};
use runnel_cluster::{ClusterError, Command, ControllerEngine};

pub use file_log::{FileLogLimits, FileMetadataLog};

/// The engine, the log, and the producer ids handed out of the reserved block.
struct Driver {
    engine: ControllerEngine,
    log: Box<dyn MetadataLog>,
    /// Next producer id to hand out; ids from here up to the image's reservation are free.
    next_producer_id: i64,
}

pub struct MetadataManager {
    driver: Mutex<Driver>,
    /// The published image. Handlers take an `Arc` of it per request.
    image: RwLock<Arc<MetadataImage>>,
    /// The Raft quorum when `controller.quorum.voters` is set; `None`: the single-node file
    /// log (the `driver`'s) commits alone.
    quorum: Option<quorum::QuorumHandle>,
    /// Quorum mode: the producer-id block this node hands single ids out of, `(next, end)`.
    producer_ids: Mutex<(i64, i64)>,
}

/// The log of a quorum node's `Driver`: commands go through the quorum, never here (the
/// driver keeps only its engine, for dry runs).
struct QuorumOnly;

impl MetadataLog for QuorumOnly {
    fn append(
        &mut self,
        _: &[runnel_cluster::metadata::MetadataRecord],
    ) -> Result<i64, ClusterError> {
        Err(ClusterError::NotController(
            "commits go through the metadata quorum".into(),
        ))
    }
    fn last_offset(&self) -> i64 {
        -1
    }
    fn wants_snapshot(&self) -> bool {
        false
    }
    fn snapshot(&mut self, _: &MetadataImage) -> Result<(), ClusterError> {
        Ok(())
    }
}

/// Carries a committed change out (opens and closes partitions, applies configs) and installs
/// the new image at the right moment: see [`publisher::publish`].
pub trait Publish {
    fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta);
}

impl MetadataManager {
    /// Opens the file log in `meta_dir` and rebuilds the image from its snapshot and entries.
    /// Nothing is published yet: the broker opens partitions from the returned manager's image.
    pub fn open(
        meta_dir: &Path,
        limits: FileLogLimits,
        engine: ControllerEngine,
    ) -> Result<MetadataManager, ClusterError> {
        let (log, recovered) = FileMetadataLog::open(meta_dir, limits)?;
        let mut image = MetadataImage::empty();
        if let Some((offset, records)) = recovered.snapshot {
            for record in &records {
                image.apply(record);
            }
            image.offset = offset;
        }
        for entry in &recovered.entries {
            image.apply(&entry.record);
            image.offset = entry.offset;
        }
        assert_eq!(
            image.offset,
            log.last_offset(),
            "the image covers the whole log"
        );
        // Ids up to the last reservation may have been handed out by the previous process.
        let next_producer_id = image.next_producer_id;
        Ok(MetadataManager {
            driver: Mutex::new(Driver {
                engine,
                log: Box::new(log),
                next_producer_id,
            }),
            image: RwLock::new(Arc::new(image)),
            quorum: None,
            producer_ids: Mutex::new((0, 0)),
        })
    }

    /// Opens the Raft log of a quorum node in `meta_dir/raft` (a single-node log found in
    /// `meta_dir` moves into it on first use) and rebuilds the image. Nothing is published and
    /// nothing runs until [`MetadataManager::start_quorum`].
    pub fn open_quorum(
        meta_dir: &Path,
        limits: FileLogLimits,
        node_id: i32,
        settings: &quorum_config::QuorumSettings,
        engine: ControllerEngine,
        dry_run_engine: ControllerEngine,
    ) -> Result<MetadataManager, ClusterError> {
        let legacy = || {
            let has_legacy = std::fs::read_dir(meta_dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name == "metadata.log" || name.ends_with(".checkpoint")
                })
            });
            if !has_legacy {
                return Ok(None);
            }
            let (_, recovered) = FileMetadataLog::open(meta_dir, limits)?;
            let mut image = MetadataImage::empty();
            if let Some((offset, records)) = recovered.snapshot {
                for record in &records {
                    image.apply(record);
                }
                image.offset = offset;
            }
            for entry in &recovered.entries {
                image.apply(&entry.record);
                image.offset = entry.offset;
            }
            Ok((image.offset >= 0).then_some(image))
        };
        let (handle, image) = quorum::open(
            meta_dir,
            node_id,
            settings,
            engine,
            limits.bytes_between_snapshots,
            legacy,
        )?;
        Ok(MetadataManager {
            driver: Mutex::new(Driver {
                engine: dry_run_engine,
                log: Box::new(QuorumOnly),
                next_producer_id: 0,
            }),
            image: RwLock::new(image),
            quorum: Some(handle),
            producer_ids: Mutex::new((0, 0)),
        })
    }

    /// Starts the quorum (listener, peers, driver); committed batches are published through
    /// `publisher` from now on. Does nothing on a single node.
    pub fn start_quorum(&self, publisher: Arc<dyn Publish + Send + Sync>) -> std::io::Result<()> {
        match &self.quorum {
            Some(quorum) => quorum.start(publisher),
            None => Ok(()),
        }
    }

    /// The quorum's handle, on a node that runs one.
    pub fn quorum(&self) -> Option<&quorum::QuorumHandle> {
        self.quorum.as_ref()
    }

    /// Whether metadata goes through a Raft quorum.
    pub fn is_quorum(&self) -> bool {
        self.quorum.is_some()
    }

    /// Whether this node is the active controller (always, on a single node).
    pub fn is_active_controller(&self) -> bool {
        self.quorum
            .as_ref()
            .is_none_or(quorum::QuorumHandle::is_active_controller)
    }

    /// The active controller's node id and CONTROLLER listener address, when known (`None`
    /// on a single node, which has no controller listener).
    pub fn active_controller(&self) -> Option<(i32, String)> {
        self.quorum.as_ref()?.active_controller()
    }

    /// The published image.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Installs `image` for handlers; only the publisher calls this, during a publish.
    pub fn install(&self, image: Arc<MetadataImage>) {
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = image;
    }

    fn driver(&self) -> MutexGuard<'_, Driver> {
        // A panic mid-command leaves the log and the image as they were committed (the image
        // is replaced whole), so the driver stays usable.
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `command`: decide, commit, publish. Returns the image it produced (the current one
    /// when the command changed nothing).
    pub fn submit(
        &self,
        command: &Command,
        publisher: &dyn Publish,
    ) -> Result<Arc<MetadataImage>, ClusterError> {
        if let Some(quorum) = &self.quorum {
            // Waits for a quorum (and maybe a forward): off the async worker.
            crate::blocking::blocking(|| quorum.submit(command))?;
            return Ok(self.image());
        }
        // The commit fsyncs and the publisher may create many files: off the async worker.
        crate::blocking::blocking(|| self.submit_blocking(command, publisher))
    }

    fn submit_blocking(
        &self,
        command: &Command,
        publisher: &dyn Publish,
    ) -> Result<Arc<MetadataImage>, ClusterError> {
        let mut driver = self.driver();
        let current = self.image();
        let records = driver.engine.handle(&current, command)?;
        if records.is_empty() {
            return Ok(current);
        }
        self.commit(&mut driver, &current, &records, publisher)
    }

    /// What `command` would produce, without committing anything (`validate_only`).
    pub fn dry_run(&self, command: &Command) -> Result<Arc<MetadataImage>, ClusterError> {
        let mut driver = self.driver();
        let mut image = (*self.image()).clone();
        for record in driver.engine.handle(&image.clone(), command)? {
            image.apply(&record);
        }
        Ok(Arc::new(image))
    }

    /// Hands out a producer id that no earlier or later call, in this process or any restart,
    /// returns again, reserving a new block through the log when the current one is used up.
    pub fn allocate_producer_id(&self, publisher: &dyn Publish) -> Result<i64, ClusterError> {
        if let Some(quorum) = &self.quorum {
            // Blocks come from the active controller: each committed reservation moves the
            // cluster's next id past the block it grants, so blocks never repeat cluster-wide.
            let mut ids = self.producer_ids.lock().unwrap_or_else(|e| e.into_inner());
            if ids.0 >= ids.1 {
                let command = Command::ReserveProducerIds { handed_out: 0 };
                let outcome = crate::blocking::blocking(|| quorum.submit(&command))?;
                *ids = (
                    outcome.next_producer_id - runnel_cluster::controller::PRODUCER_ID_BLOCK_SIZE,
                    outcome.next_producer_id,
                );
            }
            let id = ids.0;
            ids.0 += 1;
            return Ok(id);
        }
        crate::blocking::blocking(|| self.allocate_producer_id_blocking(publisher))
    }

    fn allocate_producer_id_blocking(&self, publisher: &dyn Publish) -> Result<i64, ClusterError> {
        let mut driver = self.driver();
        let mut current = self.image();
        if driver.next_producer_id >= current.next_producer_id {
            let command = Command::ReserveProducerIds {
                handed_out: driver.next_producer_id,
            };
            let records = driver.engine.handle(&current, &command)?;
            current = self.commit(&mut driver, &current, &records, publisher)?;
            driver.next_producer_id = driver
                .next_producer_id
                .max(current.next_producer_id - runnel_cluster::controller::PRODUCER_ID_BLOCK_SIZE);
        }
        let id = driver.next_producer_id;
        driver.next_producer_id += 1;
        assert!(
            driver.next_producer_id <= current.next_producer_id,
            "producer ids are handed out only within a committed reservation"
        );
        Ok(id)
    }

    /// Hands out a whole block of producer ids `(first, count)` that no other call, in this
    /// process or any restart, hands out again: a new reservation through the log (Kafka's
    /// `AllocateProducerIds`, which a transaction coordinator asks of the controller).
    pub fn allocate_producer_id_block(
        &self,
        publisher: &dyn Publish,
    ) -> Result<(i64, i64), ClusterError> {
        if let Some(quorum) = &self.quorum {
            let command = Command::ReserveProducerIds { handed_out: 0 };
            let outcome = crate::blocking::blocking(|| quorum.submit(&command))?;
            let size = runnel_cluster::controller::PRODUCER_ID_BLOCK_SIZE;
            return Ok((outcome.next_producer_id - size, size));
        }
        crate::blocking::blocking(|| self.allocate_producer_id_block_blocking(publisher))
    }

    fn allocate_producer_id_block_blocking(
        &self,
        publisher: &dyn Publish,
    ) -> Result<(i64, i64), ClusterError> {
        let mut driver = self.driver();
        let current = self.image();
        let first = current.next_producer_id.max(driver.next_producer_id);
        let command = Command::ReserveProducerIds {
            handed_out: driver.next_producer_id,
        };
        let records = driver.engine.handle(&current, &command)?;
        let reserved = self.commit(&mut driver, &current, &records, publisher)?;
        let end = reserved.next_producer_id;
        assert!(end > first, "a reservation moves the next producer id on");
        // The whole block is the caller's: single ids come from the next reservation.
        driver.next_producer_id = end;
        Ok((first, end - first))
    }

    /// Appends `records`, then applies them to a new image and publishes it; on an append
    /// failure nothing is applied. Takes a snapshot when the log asks for one.
    fn commit(
        &self,
        driver: &mut Driver,
        current: &MetadataImage,
        records: &[runnel_cluster::metadata::MetadataRecord],
        publisher: &dyn Publish,
    ) -> Result<Arc<MetadataImage>, ClusterError> {
        let offset = driver.log.append(records)?;
        let mut image = current.clone();
        let mut delta = MetadataDelta::default();
        for record in records {
            image.replay(record, &mut delta);
        }
        image.offset = offset;
        let image = Arc::new(image);
        publisher.publish(&image, &delta);
        if driver.log.wants_snapshot() {
            if let Err(e) = driver.log.snapshot(&image) {
                // The log keeps growing until a snapshot succeeds; nothing is lost.
                tracing::error!(error = %e, "writing a metadata snapshot failed");
            }
        }
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_cluster::controller::TopicDefaults;

    /// Installs every image and remembers the deltas.
    struct Recorder<'a> {
        manager: &'a MetadataManager,
        deltas: Mutex<Vec<MetadataDelta>>,
    }

    impl Publish for Recorder<'_> {
        fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
            self.manager.install(Arc::clone(image));
            self.deltas.lock().unwrap().push(delta.clone());
        }
    }

    fn open(dir: &Path, bytes_between_snapshots: u64) -> MetadataManager {
        let engine = ControllerEngine::new(TopicDefaults {
            partitions: 2,
            replication_factor: 1,
        });
        MetadataManager::open(
            dir,
            FileLogLimits {
                records_max: 1000,
                bytes_between_snapshots,
            },
            engine,
        )
        .unwrap()
    }

    fn setup(manager: &MetadataManager) {
        let recorder = Recorder {
            manager,
            deltas: Mutex::new(Vec::new()),
        };
        for command in [
            Command::InitCluster,
            Command::RegisterBroker {
                node_id: 1,
                host: "localhost".into(),
                port: 9092,
                rack: None,
            },
        ] {
            manager.submit(&command, &recorder).unwrap();
        }
    }

    // Proves topics, registrations, the cluster id and producer-id reservations survive a
    // reopen, with and without snapshots, and producer ids never repeat across restarts.
    #[test]
    fn state_survives_reopen_through_snapshots() {
        for bytes_between_snapshots in [1 << 20, 1] {
            let dir = tempfile::tempdir().unwrap();
            let manager = open(dir.path(), bytes_between_snapshots);
            setup(&manager);
            let recorder = Recorder {
                manager: &manager,
                deltas: Mutex::new(Vec::new()),
            };
            let create = Command::CreateTopic {
                name: "orders".into(),
                partitions: -1,
                replication_factor: -1,
                configs: Default::default(),
                assignments: Vec::new(),
            };
            manager.submit(&create, &recorder).unwrap();
            // Grown partitions are replayed from the log and from snapshots alike.
            let grow = Command::CreatePartitions {
                name: "orders".into(),
                count: 3,
                assignments: None,
            };
            manager.submit(&grow, &recorder).unwrap();
            assert_eq!(manager.image().topic("orders").unwrap().partitions, 3);
            let first = manager.allocate_producer_id(&recorder).unwrap();
            let second = manager.allocate_producer_id(&recorder).unwrap();
            assert_eq!(second, first + 1);
            let before = manager.image();
            drop(manager);
            let manager = open(dir.path(), bytes_between_snapshots);
            let after = manager.image();
            assert!(after.same_state(&before), "{after:?}\n{before:?}");
            assert_eq!(after.offset, before.offset);
            let recorder = Recorder {
                manager: &manager,
                deltas: Mutex::new(Vec::new()),
            };
            let third = manager.allocate_producer_id(&recorder).unwrap();
            assert!(third > second, "{third} <= {second}");
            let snapshots = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".checkpoint"))
                })
                .count();
            assert_eq!(snapshots, usize::from(bytes_between_snapshots == 1));
        }
    }

    // Proves a refused command commits and publishes nothing, and a dry run changes nothing.
    #[test]
    fn refused_and_dry_run_commands_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let manager = open(dir.path(), 1 << 20);
        setup(&manager);
        let recorder = Recorder {
            manager: &manager,
            deltas: Mutex::new(Vec::new()),
        };
        let before = manager.image();
        let bad = Command::CreateTopic {
            name: "bad name".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        assert!(manager.submit(&bad, &recorder).is_err());
        let dry = Command::CreateTopic {
            name: "dry".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        assert!(manager.dry_run(&dry).unwrap().topic("dry").is_some());
        assert!(recorder.deltas.lock().unwrap().is_empty());
        assert!(manager.image().same_state(&before));
        assert_eq!(manager.image().offset, before.offset);
    }

    fn quorum_settings(voters: &[i32]) -> quorum_config::QuorumSettings {
        quorum_config::QuorumSettings {
            voters: voters
                .iter()
                .map(|&id| quorum_config::Voter {
                    id,
                    host: "127.0.0.1".into(),
                    port: 1,
                })
                .collect(),
            listener: Some(("CONTROLLER".into(), "127.0.0.1".into(), 0)),
            ..Default::default()
        }
    }

    // Proves a single-node data dir becomes the start of a Raft log as its sole voter (same
    // image, offsets going on after its last one, again after a reopen), and is refused as
    // one voter among fresh others, which could elect a leader from an empty log.
    #[test]
    fn single_node_dir_moves_into_the_raft_log() {
        let dir = tempfile::tempdir().unwrap();
        let manager = open(dir.path(), 1 << 20);
        setup(&manager);
        let recorder = Recorder {
            manager: &manager,
            deltas: Mutex::new(Vec::new()),
        };
        let create = Command::CreateTopic {
            name: "orders".into(),
            partitions: 2,
            replication_factor: 1,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        manager.submit(&create, &recorder).unwrap();
        let before = manager.image();
        drop(manager);
        let engine = || {
            ControllerEngine::new(TopicDefaults {
                partitions: 1,
                replication_factor: 1,
            })
        };
        let limits = FileLogLimits {
            records_max: 1000,
            bytes_between_snapshots: 1 << 20,
        };
        let refused = MetadataManager::open_quorum(
            dir.path(),
            limits,
            1,
            &quorum_settings(&[1, 2, 3]),
            engine(),
            engine(),
        );
        assert!(refused.is_err());
        assert!(!dir.path().join("raft").join("raft.snapshot").exists());
        for _ in 0..2 {
            let manager = MetadataManager::open_quorum(
                dir.path(),
                limits,
                1,
                &quorum_settings(&[1]),
                engine(),
                engine(),
            )
            .unwrap();
            let after = manager.image();
            assert!(after.same_state(&before), "{after:?}\n{before:?}");
            assert!(after.offset > before.offset);
            assert!(manager.is_quorum());
        }
    }
}
