//! The broker's shared state: the metadata driver and the image it publishes, the replica layer
//! with the open partition logs, the group coordinator and the fetch sessions. Handlers borrow
//! an `Arc<Broker>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use runnel_cluster::broker_config::ConfigLayers;
use runnel_cluster::controller::{ConfigOp, ConfigResource, TopicDefaults};
use runnel_cluster::metadata::MetadataDelta;
use runnel_cluster::topic_config;
use runnel_cluster::{ClusterError, Command, ControllerEngine, MetadataImage, TopicImage};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::publisher::Publisher;
use crate::metadata::{FileLogLimits, MetadataManager, Publish};
use crate::replica::{Partition, ReplicaManager};

/// The static layer of DescribeConfigs: the Kafka keys given in the file and flags, plus
/// `broker.id`, which Kafka copies from `node.id` into its static config at startup.
fn static_configs(config: &BrokerConfig) -> BTreeMap<String, String> {
    let mut configs: BTreeMap<String, String> = config
        .raw
        .iter()
        .filter(|(k, _)| !k.starts_with("runnel."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    configs
        .entry("broker.id".into())
        .or_insert_with(|| config.node_id.to_string());
    configs
}

/// The broker config Kafka keeps at the cluster level (see `Broker::open`).
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

pub struct Broker {
    pub config: BrokerConfig,
    /// Host and port clients are told to connect to: the first listener's, registered in the
    /// metadata image.
    pub advertised: (String, u16),
    /// Host and port the clients of each listener are told, by listener name (see `endpoint`).
    listener_endpoints: BTreeMap<String, (String, u16)>,
    /// Broker-level values of topic configs (`log.segment.bytes`, ...).
    pub topic_defaults_raw: BTreeMap<String, String>,
    /// The Kafka configs this broker started with (file and flags; runnel's own `runnel.*`
    /// keys left out): DescribeConfigs' STATIC_BROKER_CONFIG layer.
    pub static_configs: BTreeMap<String, String>,
    /// The controller engine, the metadata log and the published image.
    pub metadata: MetadataManager,
    /// Every partition this broker holds, and the one way records get into them.
    pub replicas: ReplicaManager,
    data_dir: PathBuf,
    /// The group coordinator's async shell.
    pub groups: Arc<crate::groups::Groups>,
    /// The transaction coordinator's async shell.
    pub txns: Arc<crate::txns::Txns>,
    /// Who may do what; every handler asks it (allow-all until ACLs exist).
    pub authorizer: Box<dyn crate::authorizer::Authorizer>,
    /// Counters of requests and connections, for the admin endpoint.
    pub metrics: crate::metrics::Metrics,
    /// KIP-227 incremental fetch sessions; locked briefly twice per fetch, never across an await.
    fetch_sessions: Mutex<crate::fetch_session::FetchSessionCache>,
    /// Connections to other brokers for the transaction markers of partitions they lead.
    pub marker_channel: crate::txn_marker_channel::MarkerChannel,
    /// Connections to other brokers' transaction coordinators, for the AddPartitionsToTxn a
    /// transactional produce sends (Kafka's `AddPartitionsToTxnManager`).
    pub coordinator_channel: crate::txn_marker_channel::MarkerChannel,
    /// Held for the process lifetime: a second broker on the same data dir would corrupt it.
    _lock_file: std::fs::File,
    /// Heartbeat sessions of registered brokers, kept while this node is the active controller.
    pub liveness: crate::lifecycle::Liveness,
    /// This broker's incarnation and broker epoch.
    pub lifecycle: crate::lifecycle::BrokerLifecycle,
    /// How this node reaches the active controller (`lifecycle::controller_channel`).
    pub controller_channel: std::sync::OnceLock<Arc<dyn crate::lifecycle::ControllerChannel>>,
}

impl Broker {
    /// Opens the data directory: the metadata log (snapshot and entries), registers this broker
    /// (and any partition an older log left unregistered), then opens every partition the image
    /// names. Partition directories the image does not name (deleted topics, a crash
    /// mid-delete) are removed.
    pub fn open(config: BrokerConfig, advertised: (String, u16)) -> Result<Arc<Broker>> {
        let first = config.listeners[0].name.clone();
        Self::open_with_endpoints(config, vec![(first, advertised)])
    }

    /// `open` for a broker with several listeners: `endpoints` holds each listener's name and
    /// advertised (host, port), the first one's registered in the image. Not empty.
    pub fn open_with_endpoints(
        config: BrokerConfig,
        endpoints: Vec<(String, (String, u16))>,
    ) -> Result<Arc<Broker>> {
        // A controller-only node registers no endpoint; its CONTROLLER listener stands in
        // where a handler names this node.
        let endpoints = match &config.quorum.listener {
            Some((name, host, port)) if endpoints.is_empty() && !config.quorum.broker => {
                let host = match host.as_str() {
                    "" | "0.0.0.0" | "::" => "localhost".to_owned(),
                    host => host.to_owned(),
                };
                vec![(name.clone(), (host, *port))]
            }
            _ => endpoints,
        };
        let Some((_, advertised)) = endpoints.first().cloned() else {
            panic!("a broker has at least one listener");
        };
        let listener_endpoints = endpoints.into_iter().collect();
        let data_dir = config.data_dir.clone();
        let created = !data_dir.exists();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        if created {
            // Everything under the data dir is durable only once its own entry is.
            if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)
                    .and_then(|dir| dir.sync_all())
                    .with_context(|| format!("fsync of {}", parent.display()))?;
            }
        }
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
        let engine = ControllerEngine::new(TopicDefaults {
            partitions: config.num_partitions,
            replication_factor: config.default_replication_factor,
        });
        let limits = FileLogLimits {
            records_max: config.metadata_log_records_max,
            bytes_between_snapshots: config.metadata_log_bytes_between_snapshots,
        };
        let metadata = if config.quorum.enabled() {
            let dry_run_engine = ControllerEngine::new(TopicDefaults {
                partitions: config.num_partitions,
                replication_factor: config.default_replication_factor,
            });
            MetadataManager::open_quorum(
                &data_dir.join("meta"),
                limits,
                config.node_id,
                &config.quorum,
                engine,
                dry_run_engine,
            )
            .context("opening the metadata quorum's log")?
        } else {
            MetadataManager::open(&data_dir.join("meta"), limits, engine)
                .context("opening metadata log")?
        };
        let group_config = config.groups.clone();
        let txn_settings = config.txns.clone();
        let fetch_session_slots = config.fetch_session_slots;
        let config_session_timeout_ms = config.broker_session_timeout_ms;
        let broker = Broker {
            topic_defaults_raw: config.topic_defaults(),
            static_configs: static_configs(&config),
            config,
            advertised,
            listener_endpoints,
            metadata,
            replicas: ReplicaManager::default(),
            data_dir,
            groups: Arc::new(crate::groups::Groups::new(group_config)),
            txns: Arc::new(crate::txns::Txns::new(txn_settings)),
            authorizer: Box::new(crate::authorizer::AllowAll),
            metrics: crate::metrics::Metrics::default(),
            fetch_sessions: Mutex::new(crate::fetch_session::FetchSessionCache::new(
                crate::fetch_session::SessionCacheLimits {
                    slots_max: fetch_session_slots,
                    ..Default::default()
                },
                crate::fetch_session::random_seed(),
            )),
            marker_channel: crate::txn_marker_channel::MarkerChannel::new(),
            coordinator_channel: crate::txn_marker_channel::MarkerChannel::new(),
            _lock_file: lock_file,
            liveness: crate::lifecycle::Liveness::new(config_session_timeout_ms),
            lifecycle: crate::lifecycle::BrokerLifecycle::default(),
            controller_channel: std::sync::OnceLock::new(),
        };
        let node_id = broker.node_id();
        let quorum = broker.metadata.is_quorum();
        if !quorum {
            broker
                .metadata
                .submit(&Command::InitCluster, &broker)
                .context("InitCluster")?;
            // This node is the active controller from here on: brokers the log shows
            // registered get a fresh session, and are fenced if they stay silent.
            broker.liveness.activate(&broker.image());
            // A new incarnation registers fenced (the previous one's leaderships move away)
            // and is unfenced by its first heartbeat, once everything below is open. A node
            // without voters is its own controller: in process, through the controller-side
            // functions.
            let registration = broker.lifecycle.registration(&broker);
            let epoch = crate::lifecycle::register(&broker, registration)
                .context("registering this broker")?;
            broker.lifecycle.set_broker_epoch(epoch);
            let command = Command::RegisterMissingPartitions { node_id };
            broker
                .metadata
                .submit(&command, &broker)
                .with_context(|| format!("{command:?}"))?;
        }
        // Kafka 4.4's controller keeps a cluster-level min.insync.replicas while eligible
        // leader replicas are on (the default): written at cluster creation from the static
        // value, never removable. Runnel keeps the same record.
        let cluster_defaults = broker
            .image()
            .broker_configs
            .get(runnel_cluster::broker_config::CLUSTER_DEFAULT)
            .cloned()
            .unwrap_or_default();
        if !cluster_defaults.contains_key(MIN_INSYNC_REPLICAS) && !broker.metadata.is_quorum() {
            let value = broker
                .static_configs
                .get(MIN_INSYNC_REPLICAS)
                .cloned()
                .unwrap_or_else(|| "1".into());
            let command = Command::AlterConfigs {
                resource: ConfigResource::Broker(String::new()),
                ops: vec![(MIN_INSYNC_REPLICAS.into(), ConfigOp::Set(value))],
                replace: false,
            };
            broker
                .metadata
                .submit(&command, &broker)
                .with_context(|| format!("{command:?}"))?;
        }
        broker.publisher().open_all()?;
        let image = broker.image();
        tracing::info!(
            cluster_id = %image.cluster_id,
            topics = image.topics.len(),
            metadata_offset = image.offset,
            "metadata loaded"
        );
        broker
            .groups
            .load_led(node_id, &image, &broker.replicas)
            .context("loading the group coordinator from __consumer_offsets")?;
        let broker = Arc::new(broker);
        // The coordinators finish appends through the broker, and the transaction
        // coordinator's shards may resume work at once (markers of prepared transactions).
        broker.txns.attach(&broker);
        let env: std::sync::Weak<Broker> = Arc::downgrade(&broker);
        broker.groups.attach(env);
        broker
            .txns
            .load_led(node_id, &image, &broker.replicas)
            .context("loading the transaction coordinator from __transaction_state")?;
        if quorum {
            // Committed batches publish from now on: after the coordinators are attached and
            // loaded from the image the broker opened with. The cluster id, this broker's
            // registration and its partitions are committed once a controller is elected
            // (`start_quorum_commands`); the heartbeats then unfence it.
            broker
                .metadata
                .start_quorum(Arc::clone(&broker) as Arc<dyn Publish + Send + Sync>)
                .context("starting the metadata quorum")?;
            start_quorum_commands(&broker);
        } else {
            // Caught up (the log is local): unfenced, this broker leads its partitions again.
            let channel = crate::lifecycle::InProcess(Arc::downgrade(&broker));
            let reply = broker
                .lifecycle
                .heartbeat(&broker, &channel, false)
                .context("first heartbeat")?;
            anyhow::ensure!(
                !reply.is_fenced,
                "the controller kept this broker fenced after its first heartbeat"
            );
            // The unfencing moved its leaderships to a new epoch, for which the coordinators
            // reload their shards in the background: serve once they have, so clients are not
            // told COORDINATOR_LOAD_IN_PROGRESS by a broker that says it is ready.
            let deadline = std::time::Instant::now() + COORDINATOR_LOAD_WAIT;
            while !broker.coordinators_loaded() {
                if std::time::Instant::now() >= deadline {
                    tracing::warn!("coordinator shards still loading; serving anyway");
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(broker)
    }

    /// Whether every coordinator shard of an internal-topic partition this node leads in its
    /// image is loaded.
    pub fn coordinators_loaded(&self) -> bool {
        let image = self.image();
        let node_id = self.node_id();
        let led = |topic: &str| -> Vec<i32> {
            image.topic(topic).map_or_else(Vec::new, |t| {
                t.registrations
                    .iter()
                    .filter(|(_, r)| r.leader == node_id)
                    .map(|(p, _)| *p)
                    .collect()
            })
        };
        let all_in = |led: Vec<i32>, loaded: Vec<i32>| led.iter().all(|p| loaded.contains(p));
        all_in(
            led(crate::internal_topics::OFFSETS_TOPIC),
            self.groups.loaded(),
        ) && all_in(
            led(crate::internal_topics::TRANSACTION_STATE_TOPIC),
            self.txns.loaded(),
        )
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
        self.metadata.image()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Whether this node is a broker (`process.roles` holds `broker`, as every node without a
    /// quorum): it registers, hosts partitions and serves clients. A controller-only node
    /// does none of that.
    pub fn has_broker_role(&self) -> bool {
        self.config.quorum.broker
    }

    /// The (host, port) that clients connected to `listener` are told for `broker`, as Kafka
    /// answers Metadata, FindCoordinator and DescribeCluster with the endpoints of the listener
    /// a request came in on: a client of the SSL port must be sent back to the SSL port.
    ///
    /// The image registers one endpoint per broker (the first listener's); this broker's other
    /// listeners come from its own config. Other brokers (none until replication) answer with
    /// their registered endpoint.
    pub fn endpoint(
        &self,
        broker: &runnel_cluster::metadata::BrokerImage,
        listener: &str,
    ) -> (String, u16) {
        self.endpoint_for(broker, listener)
            .unwrap_or_else(|| (broker.host.clone(), broker.port))
    }

    /// The (host, port) clients that arrived on `listener` are sent to for `broker`, or
    /// `None` when that broker has no listener of that name (Kafka then leaves it out of
    /// Metadata and DescribeCluster).
    pub fn endpoint_for(
        &self,
        broker: &runnel_cluster::metadata::BrokerImage,
        listener: &str,
    ) -> Option<(String, u16)> {
        if broker.node_id == self.node_id() {
            if let Some(endpoint) = self.listener_endpoints.get(listener) {
                return Some(endpoint.clone());
            }
        }
        broker
            .endpoint(listener)
            .map(|(host, port)| (host.to_owned(), port))
    }

    /// `host:port` of `broker`'s inter-broker listener (`inter.broker.listener.name`), where
    /// this broker connects to it; its first registered listener when it has none of that name.
    pub fn inter_broker_address(&self, broker: &runnel_cluster::metadata::BrokerImage) -> String {
        let (host, port) = broker
            .endpoint(self.config.inter_broker_listener_name())
            .map_or((broker.host.as_str(), broker.port), |(h, p)| (h, p));
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// This broker's listeners as it registers them: name, advertised endpoint, protocol.
    pub fn registered_listeners(&self) -> Vec<runnel_cluster::metadata::BrokerListener> {
        self.config
            .listeners
            .iter()
            .filter_map(|l| {
                let (host, port) = self.listener_endpoints.get(&l.name)?;
                Some(crate::lifecycle::listener(
                    &l.name,
                    host,
                    *port,
                    crate::lifecycle::security_protocol_id(l.security_protocol),
                ))
            })
            .collect()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn partition(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.replicas.partition(topic_id, index)
    }

    /// Creates a topic: the controller engine validates and places it, the metadata log commits
    /// it, and the publisher opens its partitions before the image shows it.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, ClusterError> {
        self.create_topic_placed(
            name,
            partitions,
            replication_factor,
            configs,
            Vec::new(),
            validate_only,
        )
    }

    /// `create_topic` with explicit replica assignments (partition index, broker ids), which
    /// replace `partitions` and `replication_factor` (then -1) when not empty.
    pub fn create_topic_placed(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        assignments: Vec<(i32, Vec<i32>)>,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, ClusterError> {
        let command = Command::CreateTopic {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
            assignments,
        };
        let image = if validate_only {
            self.metadata.dry_run(&command)?
        } else {
            self.metadata.submit(&command, self)?
        };
        let topic = image
            .topic(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))?;
        // Internal topics' configs are ours; only user choices deserve a warning.
        if !validate_only && !crate::internal_topics::is_internal_topic(name) {
            for key in topic.configs.keys() {
                if topic_config::lookup(key).is_some_and(|d| !d.acted_on) {
                    tracing::warn!(topic = %name, config = %key, "topic config stored and reported but not acted on by runnel yet");
                }
            }
        }
        Ok(topic)
    }

    /// Grows a topic to `count` partitions (placed by the controller, or one replica list per
    /// new partition): the metadata log commits the new partitions, and the publisher opens
    /// them before the image shows them. With `validate_only` nothing is committed.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>, ClusterError> {
        let command = Command::CreatePartitions {
            name: name.to_owned(),
            count,
            assignments,
        };
        let image = if validate_only {
            self.metadata.dry_run(&command)?
        } else {
            self.metadata.submit(&command, self)?
        };
        image
            .topic(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))
    }

    /// Deletes a topic: the metadata log commits it, then the publisher closes its partitions
    /// and removes their directories.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicImage>, ClusterError> {
        let topic = self
            .image()
            .topic(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))?;
        self.metadata.submit(
            &Command::DeleteTopic {
                name: name.to_owned(),
            },
            self,
        )?;
        Ok(topic)
    }

    /// Sets (`Some`) or removes (`None`) configs of a topic; once committed the publisher
    /// applies them to the topic's open partitions.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<Arc<MetadataImage>, ClusterError> {
        self.metadata.submit(
            &Command::AlterTopicConfigs {
                name: name.to_owned(),
                changes,
            },
            self,
        )
    }

    /// AlterConfigs / IncrementalAlterConfigs on one resource: the controller engine applies
    /// and validates the operations, the metadata log commits the records, and the publisher
    /// applies them to open partitions. `validate_only` checks without committing.
    pub fn alter_configs(
        &self,
        resource: ConfigResource,
        ops: Vec<(String, ConfigOp)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<(), ClusterError> {
        let command = Command::AlterConfigs {
            resource,
            ops,
            replace,
        };
        if validate_only {
            self.metadata.dry_run(&command)?;
        } else {
            self.metadata.submit(&command, self)?;
        }
        Ok(())
    }

    /// The layers of this broker's configs in `image` (dynamic per-broker, cluster default,
    /// static).
    pub fn config_layers<'a>(&'a self, image: &'a MetadataImage) -> ConfigLayers<'a> {
        ConfigLayers::of(image, self.node_id(), &self.static_configs)
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does when a group coordinator is
    /// first looked up.
    pub fn ensure_offsets_topic(&self) -> Result<(), ClusterError> {
        if self
            .image()
            .topic(crate::internal_topics::OFFSETS_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        match self.create_topic(
            crate::internal_topics::OFFSETS_TOPIC,
            self.config.groups.offsets_topic_num_partitions,
            self.internal_replication_factor(
                crate::internal_topics::OFFSETS_TOPIC,
                "offsets.topic.replication.factor",
            ),
            crate::internal_topics::offsets_topic_configs(
                self.config.groups.offsets_topic_segment_bytes,
            ),
            false,
        ) {
            Ok(_) => Ok(()),
            Err(e) if crate::errors::is_topic_already_exists(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates `__transaction_state` on first use, as Kafka does when a transaction
    /// coordinator is first looked up.
    pub fn ensure_transaction_topic(&self) -> Result<(), ClusterError> {
        let topic = crate::internal_topics::TRANSACTION_STATE_TOPIC;
        if self.image().topic(topic).is_some() {
            return Ok(());
        }
        match self.create_topic(
            topic,
            self.config.txns.coordinator.transaction_state_partitions,
            self.internal_replication_factor(topic, "transaction.state.log.replication.factor"),
            crate::internal_topics::transaction_topic_configs(
                self.config.txns.state_log_segment_bytes,
            ),
            false,
        ) {
            Ok(_) => Ok(()),
            Err(e) if crate::errors::is_topic_already_exists(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The replication factor `topic` (internal) is created with, from the static config `key`
    /// (see `internal_topics::replication_factor`); says why when it is below the config's.
    fn internal_replication_factor(&self, topic: &str, key: &str) -> i16 {
        let configured = self
            .static_configs
            .get(key)
            .and_then(|v| v.parse::<i16>().ok())
            .unwrap_or(crate::internal_topics::REPLICATION_FACTOR_DEFAULT);
        let factor = crate::internal_topics::replication_factor(configured);
        if factor < configured {
            tracing::info!(
                topic,
                config = key,
                configured,
                replication_factor = factor,
                "creating an internal topic with one replica per partition: partition data is not replicated yet, so more replicas would not hold the data"
            );
        }
        factor
    }

    pub fn allocate_producer_id(&self) -> Result<i64, ClusterError> {
        self.metadata.allocate_producer_id(self)
    }

    /// Flushes and closes every partition log, then, if every one closed, writes Kafka's
    /// clean-shutdown marker so the next start opens the logs without reading their batches.
    pub fn shutdown(&self) {
        let mut all_closed = true;
        for partition in self.replicas.remove_all() {
            partition.wake_waiters();
            match Arc::try_unwrap(partition) {
                Ok(p) => {
                    let log = p.log.into_inner().unwrap_or_else(|e| e.into_inner());
                    if let Err(e) = log.close() {
                        tracing::warn!(error = %e, "closing partition log");
                        all_closed = false;
                    }
                }
                Err(p) => {
                    // Still shared (a request that outlived the grace period): flushed, but
                    // not closed, so the next start recovers.
                    all_closed = false;
                    if let Err(e) = p.lock_log().flush() {
                        tracing::warn!(error = %e, "flushing partition log");
                    }
                }
            }
        }
        if all_closed {
            if let Err(e) = crate::clean_shutdown::write(&self.data_dir) {
                tracing::warn!(error = %e, "writing the clean-shutdown marker; the next start recovers the logs");
            }
        }
    }
}

/// The group coordinator shell reads the image and appends through the replica layer.
impl crate::coordinator_runtime::CoordinatorEnv for Broker {
    fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    fn replicas(&self) -> &ReplicaManager {
        &self.replicas
    }
}

impl Broker {
    /// The metadata publisher over this broker's partitions.
    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            node_id: self.node_id(),
            replicas: &self.replicas,
            metadata: &self.metadata,
            groups: &self.groups,
            txns: &self.txns,
            data_dir: &self.data_dir,
            static_configs: &self.static_configs,
        }
    }
}

/// Commands the broker submits publish through its publisher.
impl Publish for Broker {
    fn publish(&self, image: &Arc<MetadataImage>, delta: &MetadataDelta) {
        self.publisher().publish(image, delta);
    }
}

/// How long a starting broker waits for its coordinator shards before it serves anyway.
pub const COORDINATOR_LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Commits a quorum node's startup commands (the cluster id, its registration, the cluster's
/// `min.insync.replicas`) once a controller is elected, retrying while none is.
/// One step of a quorum node's startup, committed through the active controller.
enum StartupStep {
    Command(Command),
    /// This incarnation's BrokerRegistration (`lifecycle::register`).
    Register,
}

fn start_quorum_commands(broker: &Arc<Broker>) {
    let node_id = broker.node_id();
    let mut steps = vec![StartupStep::Command(Command::InitCluster)];
    // A controller-only node is no broker: it never registers.
    if broker.has_broker_role() {
        steps.push(StartupStep::Register);
        steps.push(StartupStep::Command(Command::RegisterMissingPartitions {
            node_id,
        }));
    }
    let broker = Arc::downgrade(broker);
    let spawned = std::thread::Builder::new()
        .name("quorum-startup".into())
        .spawn(move || {
            let mut steps = std::collections::VecDeque::from(steps);
            let mut min_insync_checked = false;
            loop {
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                let result = match steps.front() {
                    Some(StartupStep::Command(command)) => {
                        broker.metadata.submit(command, &*broker).map(|_| ())
                    }
                    Some(StartupStep::Register) => {
                        let channel = crate::lifecycle::controller_channel(&broker);
                        match broker.lifecycle.register(&broker, &*channel) {
                            Ok(_) => Ok(()),
                            // Kafka's lifecycle manager retries a registration until it is
                            // accepted: a refusal may be a previous incarnation's session
                            // still alive, which expires.
                            Err(e @ runnel_cluster::ClusterError::NotController(_)) => Err(e),
                            Err(e) => {
                                tracing::warn!(error = %e, "registration refused; retrying");
                                Err(runnel_cluster::ClusterError::NotController(e.to_string()))
                            }
                        }
                    }
                    None if !min_insync_checked => {
                        min_insync_checked = true;
                        let has = broker
                            .image()
                            .broker_configs
                            .get(runnel_cluster::broker_config::CLUSTER_DEFAULT)
                            .is_some_and(|c| c.contains_key(MIN_INSYNC_REPLICAS));
                        if has {
                            return;
                        }
                        let value = broker
                            .static_configs
                            .get(MIN_INSYNC_REPLICAS)
                            .cloned()
                            .unwrap_or_else(|| "1".into());
                        steps.push_back(StartupStep::Command(Command::AlterConfigs {
                            resource: ConfigResource::Broker(String::new()),
                            ops: vec![(MIN_INSYNC_REPLICAS.into(), ConfigOp::Set(value))],
                            replace: false,
                        }));
                        continue;
                    }
                    None => return,
                };
                match result {
                    Ok(()) => {
                        steps.pop_front();
                    }
                    Err(runnel_cluster::ClusterError::NotController(_)) => {
                        drop(broker);
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a startup metadata step failed");
                        steps.pop_front();
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the quorum startup commands");
    }
}
