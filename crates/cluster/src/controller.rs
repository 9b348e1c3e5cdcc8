//! The controller as a pure engine (Kafka's `QuorumController` control managers): a command
//! and the current image in, the records that carry it out (or Kafka's refusal) back. No I/O:
//! the broker's metadata driver appends the records to the [`crate::metadata::MetadataLog`],
//! and only once they are committed applies them to the image and publishes it, so nothing a
//! command decides is visible before its records are durable.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::error::{ClusterError, Result};
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::placement::{check_manual_assignment, REPLICATION_NOT_BUILT};
use crate::topic_config;

/// Kafka's limit on topic name length (`Topic.MAX_NAME_LENGTH`).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Producer ids are reserved in blocks, so the log gets one record per block rather than one per
/// producer (Kafka's `ProducerIdsRecord` does the same with blocks of 1000).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Upper bound on partitions per topic, so one CreateTopics cannot ask for billions of
/// directories. Kafka has no such bound; 10,000 per topic is far above real use.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// What CreateTopics fills in when the request says -1.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    /// `num.partitions`
    pub partitions: i32,
    /// `default.replication.factor`
    pub replication_factor: i16,
}

/// A change asked of the controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Give a new cluster its id (the first record of every log).
    InitCluster,
    /// Register (or re-register, with a new incarnation) a broker and its endpoint.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    /// BrokerRegistration (API 62) on the active controller.
    BrokerRegistration(crate::broker_lifecycle::Registration),
    /// BrokerHeartbeat (API 63): the fencing / unfencing / controlled shutdown it asks for.
    BrokerHeartbeat(crate::broker_lifecycle::Heartbeat),
    /// The heartbeat tracker found this incarnation's session expired.
    FenceStaleBroker {
        node_id: i32,
        broker_epoch: i64,
    },
    /// UnregisterBroker (API 64).
    UnregisterBroker {
        node_id: i32,
    },
    /// Register every partition that has none (a log written before registrations existed),
    /// with this node as its only replica and leader.
    RegisterMissingPartitions {
        node_id: i32,
    },
    /// CreateTopics for one topic; -1 takes the default partitions / replication factor.
    /// `assignments` (partition index, replica broker ids), when not empty, places the
    /// partitions explicitly; `partitions` and `replication_factor` must then be -1.
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        assignments: Vec<(i32, Vec<i32>)>,
    },
    /// CreatePartitions for one topic: grow it to `count` partitions, placed by the controller
    /// or, with `assignments`, one replica list per new partition in index order.
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    },
    DeleteTopic {
        name: String,
    },
    /// Set (`Some`) or remove (`None`, back to the default) configs of a topic.
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, Option<String>)>,
    },
    /// Reserve the next block of producer ids after `handed_out` (ids below it are in use).
    ReserveProducerIds {
        handed_out: i64,
    },
    /// UpdateFeatures: change finalized feature levels, all or none (`crate::features`).
    /// `node_id` is this controller's, which Kafka's messages name.
    UpdateFeatures {
        node_id: i32,
        updates: Vec<crate::features::FeatureUpdate>,
    },
    /// AlterConfigs (`replace`: configs not named go back to their defaults) or
    /// IncrementalAlterConfigs on one topic or BROKER resource, as Kafka's
    /// `ConfigurationControlManager` carries them out.
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<(String, ConfigOp)>,
        replace: bool,
    },
    /// AlterPartitionReassignments for one partition: move it to `replicas`, or cancel its
    /// reassignment (`None`). See `crate::reassignment`.
    AlterPartitionReassignment {
        topic: String,
        partition: i32,
        replicas: Option<Vec<i32>>,
        allow_replication_factor_change: bool,
    },
    /// The replica a partition is moving to has copied the leader's log up to its end: the
    /// partition goes leaderless so the old replica's log stops growing.
    /// `partition_epoch` is the registration the copy was made against.
    FenceReassigningPartition {
        topic_id: Uuid,
        partition: i32,
        node_id: i32,
        partition_epoch: i32,
    },
    /// The replica a partition is moving to has copied the old replica's whole (fenced) log:
    /// it becomes the only replica and the leader.
    CompleteReassignment {
        topic_id: Uuid,
        partition: i32,
        node_id: i32,
        partition_epoch: i32,
    },
}

/// A resource whose configs are altered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// A node id, or `""` for the cluster-wide default.
    Broker(String),
}

/// IncrementalAlterConfigs' operations (AlterConfigs only sets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConfigOp {
    Set(String),
    Delete,
    /// Adds the comma-separated values missing from a LIST config.
    Append(String),
    /// Removes the comma-separated values from a LIST config.
    Subtract(String),
}

/// The broker config Kafka's controller keeps at the cluster level while eligible leader
/// replicas are enabled.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Kafka's limit on one stored config value (`Short.MAX_VALUE` bytes).
pub const CONFIG_VALUE_BYTES_MAX: usize = 32_767;

/// The controller engine. Holds no cluster state of its own (that is the image); only what it
/// needs to decide: the brokers a replica may go to, defaults, and a source of topic ids
/// (injected, so tests and simulations are deterministic).
pub struct ControllerEngine {
    defaults: TopicDefaults,
    new_uuid: Box<dyn FnMut() -> Uuid + Send>,
    /// The striped placer's randomness (seeded: deterministic under test).
    placement_random: crate::placement::PlacementRandom,
}

impl std::fmt::Debug for ControllerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerEngine")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl ControllerEngine {
    pub fn new(defaults: TopicDefaults) -> ControllerEngine {
        let seed = random_kafka_uuid().as_u64_pair().0;
        ControllerEngine {
            defaults,
            new_uuid: Box::new(random_kafka_uuid),
            placement_random: crate::placement::PlacementRandom::new(seed),
        }
    }

    /// Replaces the source of topic and cluster ids (deterministic tests and simulation).
    pub fn with_uuid_source(mut self, source: impl FnMut() -> Uuid + Send + 'static) -> Self {
        self.new_uuid = Box::new(source);
        self.placement_random = crate::placement::PlacementRandom::new(0);
        self
    }

    /// The records that carry out `command` on `image`, or why it is refused. Empty when
    /// there is nothing to change.
    pub fn handle(
        &mut self,
        image: &MetadataImage,
        command: &Command,
    ) -> Result<Vec<MetadataRecord>> {
        match command {
            Command::InitCluster => Ok(if image.cluster_id.is_empty() {
                let mut records = vec![MetadataRecord::Cluster {
                    cluster_id: kafka_uuid_string(&(self.new_uuid)()),
                }];
                records.extend(crate::features::new_cluster_records());
                records
            } else {
                Vec::new()
            }),
            Command::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => Ok(vec![MetadataRecord::RegisterBroker {
                node_id: *node_id,
                incarnation_id: (self.new_uuid)(),
                host: host.clone(),
                port: *port,
                rack: rack.clone(),
            }]),
            Command::BrokerRegistration(request) => {
                crate::broker_lifecycle::register(image, request)
            }
            Command::BrokerHeartbeat(heartbeat) => {
                crate::broker_lifecycle::heartbeat(image, heartbeat)
            }
            Command::FenceStaleBroker {
                node_id,
                broker_epoch,
            } => Ok(crate::broker_lifecycle::fence_stale(
                image,
                *node_id,
                *broker_epoch,
            )),
            Command::UnregisterBroker { node_id } => {
                crate::broker_lifecycle::unregister(image, *node_id)
            }
            Command::RegisterMissingPartitions { node_id }
                if !image.brokers.contains_key(node_id) =>
            {
                Err(ClusterError::BrokerNotRegistered(*node_id))
            }
            Command::RegisterMissingPartitions { node_id } => Ok(image
                .topics
                .values()
                .flat_map(|topic| {
                    (0..i32::try_from(topic.partitions).unwrap_or(i32::MAX))
                        .filter(|p| topic.registration(*p).is_none())
                        .map(|p| sole_replica(topic.topic_id, p, *node_id))
                })
                .collect()),
            Command::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                assignments,
            } => self.create_topic(
                image,
                name,
                *partitions,
                *replication_factor,
                configs,
                assignments,
            ),
            Command::CreatePartitions {
                name,
                count,
                assignments,
            } => create_partitions(
                &mut self.placement_random,
                image,
                name,
                *count,
                assignments.as_deref(),
            ),
            Command::DeleteTopic { name } => {
                let topic = image
                    .topic(name)
                    .ok_or_else(|| ClusterError::UnknownTopic(name.clone()))?;
                Ok(vec![MetadataRecord::RemoveTopic {
                    topic_id: topic.topic_id,
                }])
            }
            Command::AlterTopicConfigs { name, changes } => {
                let topic = image
                    .topic(name)
                    .ok_or_else(|| ClusterError::UnknownTopic(name.clone()))?;
                let mut records = Vec::with_capacity(changes.len());
                // A set: a request naming millions of keys must not take quadratic time.
                let mut seen = std::collections::HashSet::with_capacity(changes.len());
                for (key, _) in changes {
                    if !seen.insert(key.as_str()) {
                        return Err(ClusterError::DuplicateConfig(key.clone()));
                    }
                }
                for (key, value) in changes {
                    match value {
                        Some(value) => topic_config::validate(key, value)?,
                        None if topic_config::lookup(key).is_none() => {
                            return Err(ClusterError::ConfigRejected(format!(
                                "Unknown topic config name: {key}"
                            )))
                        }
                        None => {}
                    }
                    // Unchanged values write nothing.
                    if topic.configs.get(key) != value.as_ref() {
                        records.push(MetadataRecord::TopicConfig {
                            topic_id: topic.topic_id,
                            name: key.clone(),
                            value: value.clone(),
                        });
                    }
                }
                Ok(records)
            }
            Command::UpdateFeatures { node_id, updates } => {
                crate::features::update(image, *node_id, updates)
                    .map_err(ClusterError::InvalidUpdateVersion)
            }
            Command::AlterConfigs {
                resource,
                ops,
                replace,
            } => alter_configs(image, resource, ops, *replace),
            Command::AlterPartitionReassignment {
                topic,
                partition,
                replicas,
                allow_replication_factor_change,
            } => crate::reassignment::alter(
                image,
                topic,
                *partition,
                replicas.as_deref(),
                *allow_replication_factor_change,
            ),
            Command::FenceReassigningPartition {
                topic_id,
                partition,
                node_id,
                partition_epoch,
            } => crate::reassignment::fence_for_drain(
                image,
                *topic_id,
                *partition,
                *node_id,
                *partition_epoch,
            ),
            Command::CompleteReassignment {
                topic_id,
                partition,
                node_id,
                partition_epoch,
            } => crate::reassignment::complete(
                image,
                *topic_id,
                *partition,
                *node_id,
                *partition_epoch,
            ),
            Command::ReserveProducerIds { handed_out } => {
                let first_free = image.next_producer_id.max(*handed_out);
                let next_producer_id = first_free
                    .checked_add(PRODUCER_ID_BLOCK_SIZE)
                    .ok_or(ClusterError::ProducerIdsExhausted(first_free))?;
                Ok(vec![MetadataRecord::ProducerIds { next_producer_id }])
            }
        }
    }

    /// Validates a new topic as Kafka's controller does (`ReplicationControlManager
    /// .createTopics`, in its order and with its messages) and places its replicas.
    fn create_topic(
        &mut self,
        image: &MetadataImage,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
        assignments: &[(i32, Vec<i32>)],
    ) -> Result<Vec<MetadataRecord>> {
        validate_topic_name(name)?;
        if let Some(existing) = image
            .topics
            .keys()
            .find(|existing| collides(existing, name))
        {
            return Err(ClusterError::InvalidTopic {
                name: name.to_owned(),
                reason: format!("Topic '{name}' collides with existing topic: {existing}"),
            });
        }
        if image.topic(name).is_some() {
            return Err(ClusterError::TopicAlreadyExists(name.to_owned()));
        }
        for (key, value) in configs {
            topic_config::validate(key, value)?;
        }
        topic_config::validate_combination(configs)?;
        let placement = if assignments.is_empty() {
            if replication_factor < -1 || replication_factor == 0 {
                return Err(ClusterError::InvalidReplicationFactor(
                    "Replication factor must be larger than 0, or -1 to use the default value."
                        .into(),
                ));
            }
            if partitions < -1 || partitions == 0 {
                return Err(ClusterError::InvalidPartitions(
                    "Number of partitions was set to an invalid non-positive value.".into(),
                ));
            }
            let partitions = if partitions == -1 {
                self.defaults.partitions
            } else {
                partitions
            };
            if partitions > PARTITIONS_PER_TOPIC_MAX {
                return Err(too_many_partitions(partitions));
            }
            let replication_factor = if replication_factor == -1 {
                self.defaults.replication_factor
            } else {
                replication_factor
            };
            place(
                &mut self.placement_random,
                image,
                partitions,
                replication_factor,
            )
            .map_err(|reason| {
                ClusterError::InvalidReplicationFactor(format!(
                    "Unable to replicate the partition {replication_factor} time(s): {reason}"
                ))
            })?
        } else {
            if replication_factor != -1 {
                return Err(ClusterError::InvalidRequest(
                    "A manual partition assignment was specified, but replication factor was not set to -1.".into(),
                ));
            }
            if partitions != -1 {
                return Err(ClusterError::InvalidRequest(
                    "A manual partition assignment was specified, but numPartitions was not set to -1.".into(),
                ));
            }
            let mut placed: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut replication_factor = None;
            for (index, replicas) in assignments {
                if placed.contains_key(index) {
                    return Err(ClusterError::InvalidReplicaAssignment(format!(
                        "Found multiple manual partition assignments for partition {index}"
                    )));
                }
                validate_manual_assignment(image, replicas, replication_factor)?;
                require_active_replica(image, replicas, *index)?;
                replication_factor = Some(replicas.len());
                placed.insert(*index, replicas.clone());
            }
            let count = placed.len();
            if placed
                .keys()
                .copied()
                .ne(0..i32::try_from(count).unwrap_or(i32::MAX))
            {
                return Err(ClusterError::InvalidReplicaAssignment(
                    "partitions should be a consecutive 0-based integer sequence".into(),
                ));
            }
            if count > PARTITIONS_PER_TOPIC_MAX as usize {
                return Err(too_many_partitions(
                    i32::try_from(count).unwrap_or(i32::MAX),
                ));
            }
            placed.into_values().collect()
        };
        let topic_id = (self.new_uuid)();
        let mut records = vec![MetadataRecord::Topic {
            name: name.to_owned(),
            topic_id,
            partitions: u32::try_from(placement.len()).unwrap_or(1),
            configs: configs.clone(),
        }];
        records.extend(placement.into_iter().enumerate().map(|(p, replicas)| {
            new_partition(topic_id, i32::try_from(p).unwrap_or(i32::MAX), replicas)
        }));
        Ok(records)
    }
}

/// Validates growing a topic as Kafka's controller does (`ReplicationControlManager
/// .createPartitions`, in its order and with its messages) and places the new partitions.
fn create_partitions(
    random: &mut crate::placement::PlacementRandom,
    image: &MetadataImage,
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<MetadataRecord>> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))?;
    let current = i64::from(topic.partitions);
    let wanted = i64::from(count);
    if wanted == current {
        return Err(ClusterError::InvalidPartitions(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    if wanted < current {
        return Err(ClusterError::InvalidPartitions(format!(
            "The topic {name} currently has {current} partition(s); {count} would not be an increase."
        )));
    }
    let additional = usize::try_from(wanted - current).unwrap_or(usize::MAX);
    if let Some(assignments) = assignments {
        if assignments.len() != additional {
            return Err(ClusterError::InvalidReplicaAssignment(format!(
                "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                assignments.len()
            )));
        }
    }
    if count > PARTITIONS_PER_TOPIC_MAX {
        return Err(too_many_partitions(count));
    }
    if name == GROUP_METADATA_TOPIC {
        // Kafka lets this through (its coordinator maps groups by the configured count, so
        // new partitions stay unused); runnel maps groups by the topic's partition count, so
        // growing it would move every group to a different shard.
        return Err(ClusterError::InvalidRequest(format!(
            "Adding partitions to {GROUP_METADATA_TOPIC} is not supported: groups are mapped to its partitions by their count."
        )));
    }
    let Some(first) = topic.registration(0) else {
        return Err(ClusterError::InvalidPartitions(format!(
            "Invalid state: topic {name} appears to have no partitions."
        )));
    };
    let replication_factor = first.replicas.len();
    let start = i32::try_from(current).unwrap_or(i32::MAX);
    let placement = match assignments {
        Some(assignments) => {
            for (replicas, index) in assignments.iter().zip(start..) {
                validate_manual_assignment(image, replicas, Some(replication_factor))?;
                require_active_replica(image, replicas, index)?;
            }
            assignments.to_vec()
        }
        None => place(
            random,
            image,
            count - start,
            i16::try_from(replication_factor).unwrap_or(i16::MAX),
        )
        .map_err(ClusterError::InvalidReplicationFactor)?,
    };
    Ok(placement
        .into_iter()
        .zip(start..)
        .map(|(replicas, p)| new_partition(topic.topic_id, p, replicas))
        .collect())
}

/// The name of the group coordinator's topic (Kafka's `Topic.GROUP_METADATA_TOPIC_NAME`).
const GROUP_METADATA_TOPIC: &str = "__consumer_offsets";

fn too_many_partitions(count: i32) -> ClusterError {
    ClusterError::InvalidPartitions(format!(
        "A topic may have at most {PARTITIONS_PER_TOPIC_MAX} partitions; {count} were asked for."
    ))
}

/// Places partitions with Kafka's striped, rack-aware placer ([`crate::placement`]) over the
/// registered brokers (leaders only on unfenced ones), then refuses more than one replica:
/// partition data is not replicated yet, and a replica that does not hold the data must never
/// be reported. Kafka's own refusals (too few brokers, all fenced) come first, as in Kafka.
fn place(
    random: &mut crate::placement::PlacementRandom,
    image: &MetadataImage,
    partitions: i32,
    replication_factor: i16,
) -> std::result::Result<Vec<Vec<i32>>, String> {
    let brokers = crate::placement::usable_brokers(image);
    let count = usize::try_from(partitions.max(0)).unwrap_or(0);
    // Kafka's checks on a zero-partition probe, so a refusal costs no placement work.
    crate::placement::place(random, &brokers, 0, i32::from(replication_factor))?;
    if replication_factor > 1 {
        return Err(REPLICATION_NOT_BUILT.into());
    }
    crate::placement::place(random, &brokers, count, i32::from(replication_factor))
}

/// Kafka refuses a manual assignment whose replicas are all fenced or shutting down: the
/// partition would start without a leader.
fn require_active_replica(image: &MetadataImage, replicas: &[i32], partition: i32) -> Result<()> {
    let active = |id: &i32| {
        image
            .brokers
            .get(id)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    };
    if replicas.iter().any(active) {
        Ok(())
    } else {
        Err(ClusterError::InvalidReplicaAssignment(format!(
            "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
        )))
    }
}

/// Kafka's `validateManualPartitionAssignment`: a non-empty list of distinct registered
/// brokers, as many as `replication_factor` when that is known.
fn validate_manual_assignment(
    image: &MetadataImage,
    replicas: &[i32],
    replication_factor: Option<usize>,
) -> Result<()> {
    check_manual_assignment(image, replicas, replication_factor)?;
    if replicas.len() > 1 {
        return Err(ClusterError::InvalidReplicationFactor(
            REPLICATION_NOT_BUILT.into(),
        ));
    }
    Ok(())
}

/// The registration of a new partition: every replica in sync, the first one leading, epochs
/// at 0 (the placer puts the first replica on an unfenced broker).
fn new_partition(topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
    assert!(!replicas.is_empty(), "a placed partition has replicas");
    MetadataRecord::Partition {
        topic_id,
        partition,
        leader: replicas[0],
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    }
}

/// Carries out AlterConfigs / IncrementalAlterConfigs on one resource: applies the operations
/// to the stored configs, validates the result as Kafka does, and writes one record per
/// changed config (per named config for BROKER resources, as Kafka does so brokers reload).
fn alter_configs(
    image: &MetadataImage,
    resource: &ConfigResource,
    ops: &[(String, ConfigOp)],
    replace: bool,
) -> Result<Vec<MetadataRecord>> {
    // Sets, not pairwise comparisons: a request may carry a very large number of configs.
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for (key, _) in ops {
        if !seen.insert(key.as_str()) {
            return Err(ClusterError::DuplicateConfig(key.clone()));
        }
    }
    let empty = BTreeMap::new();
    let (current, topic) = match resource {
        ConfigResource::Topic(name) => {
            if name.is_empty() {
                return Err(ClusterError::ConfigRequestRejected(
                    "Default topic resources are not allowed.".into(),
                ));
            }
            validate_topic_name(name)?;
            let topic = image.topic(name);
            (topic.map_or(&empty, |t| &t.configs), topic)
        }
        ConfigResource::Broker(name) => {
            if !name.is_empty() {
                let id: i32 = name.parse().map_err(|_| {
                    ClusterError::ConfigRequestRejected(
                        "Unable to parse broker name as a base 10 number.".into(),
                    )
                })?;
                if id < 0 {
                    return Err(ClusterError::ConfigRequestRejected(
                        "Invalid negative broker ID.".into(),
                    ));
                }
            }
            (image.broker_configs.get(name).unwrap_or(&empty), None)
        }
    };
    let mut next = current.clone();
    if replace {
        next.retain(|k, _| ops.iter().any(|(name, _)| name == k));
    }
    for (key, op) in ops {
        let value = match op {
            ConfigOp::Set(v) => Some(v.clone()),
            ConfigOp::Delete => None,
            ConfigOp::Append(values) | ConfigOp::Subtract(values) => {
                let appending = matches!(op, ConfigOp::Append(_));
                let (is_list, default) = match resource {
                    ConfigResource::Topic(_) => match topic_config::lookup(key) {
                        Some(d) => (d.config_type == topic_config::ConfigType::List, d.default),
                        None => (false, ""),
                    },
                    ConfigResource::Broker(_) => {
                        let verb = if appending { "append" } else { "subtract" };
                        match crate::broker_config::is_list(key) {
                            None => {
                                return Err(ClusterError::ConfigRejected(format!(
                                    "Unknown config name: {key}"
                                )))
                            }
                            Some(false) => {
                                return Err(ClusterError::ConfigRejected(format!(
                                    "Config value {verb} is not allowed for config key: {key}"
                                )))
                            }
                            Some(true) => (
                                true,
                                crate::kafka_configs::kafka_configs()
                                    .broker(key)
                                    .and_then(|d| d.def.default.as_deref())
                                    .unwrap_or(""),
                            ),
                        }
                    }
                };
                if !is_list {
                    let verb = if appending { "APPEND" } else { "SUBTRACT" };
                    return Err(ClusterError::ConfigRejected(format!(
                        "Can't {verb} to key {key} because its type is not LIST."
                    )));
                }
                let mut parts: Vec<String> = next
                    .get(key)
                    .map_or(default, String::as_str)
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                // Kafka's list semantics in linear time (values may hold thousands of items):
                // APPEND adds each value not yet present; SUBTRACT removes, per value given,
                // its first occurrence.
                if appending {
                    let mut present: std::collections::HashSet<String> =
                        parts.iter().cloned().collect();
                    for value in values.split(',') {
                        if present.insert(value.to_owned()) {
                            parts.push(value.to_owned());
                        }
                    }
                } else {
                    let mut to_remove: std::collections::HashMap<&str, usize> =
                        std::collections::HashMap::new();
                    for value in values.split(',') {
                        *to_remove.entry(value).or_default() += 1;
                    }
                    parts.retain(|p| match to_remove.get_mut(p.as_str()) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            false
                        }
                        _ => true,
                    });
                }
                Some(parts.join(","))
            }
        };
        if let Some(v) = &value {
            if v.len() > CONFIG_VALUE_BYTES_MAX {
                return Err(ClusterError::ConfigRejected(format!(
                    "The configuration value cannot be added because it exceeds the maximum value size of {CONFIG_VALUE_BYTES_MAX} bytes."
                )));
            }
        }
        match value {
            Some(v) => next.insert(key.clone(), v),
            None => next.remove(key),
        };
    }
    match resource {
        ConfigResource::Topic(name) => {
            for (key, value) in &next {
                topic_config::validate(key, value)?;
            }
            topic_config::validate_combination(&next)?;
            let topic = topic.ok_or_else(|| ClusterError::UnknownTopic(name.clone()))?;
            let mut keys: Vec<&String> = current.keys().chain(next.keys()).collect();
            keys.sort();
            keys.dedup();
            Ok(keys
                .into_iter()
                .filter(|k| current.get(*k) != next.get(*k))
                .map(|k| MetadataRecord::TopicConfig {
                    topic_id: topic.topic_id,
                    name: k.clone(),
                    value: next.get(k).cloned(),
                })
                .collect())
        }
        ConfigResource::Broker(name) => {
            // Eligible leader replicas are on, as in a new Kafka 4.4 cluster: the controller
            // then owns min.insync.replicas at the cluster level only.
            if !name.is_empty() && ops.iter().any(|(k, _)| k == MIN_INSYNC_REPLICAS) {
                return Err(ClusterError::ConfigRejected(format!(
                    "Broker-level {MIN_INSYNC_REPLICAS} cannot be altered while ELR is enabled."
                )));
            }
            if name.is_empty()
                && current.contains_key(MIN_INSYNC_REPLICAS)
                && !next.contains_key(MIN_INSYNC_REPLICAS)
            {
                return Err(ClusterError::ConfigRejected(format!(
                    "Cluster-level {MIN_INSYNC_REPLICAS} cannot be removed while ELR is enabled."
                )));
            }
            crate::broker_config::validate_dynamic(&next, !name.is_empty())?;
            let mut keys: Vec<&String> = ops.iter().map(|(k, _)| k).collect();
            keys.extend(current.keys().filter(|k| !next.contains_key(*k)));
            keys.sort();
            keys.dedup();
            Ok(keys
                .into_iter()
                .filter(|k| next.contains_key(*k) || current.contains_key(*k))
                .map(|k| MetadataRecord::BrokerConfig {
                    resource: name.clone(),
                    name: k.clone(),
                    value: next.get(k).cloned(),
                })
                .collect())
        }
    }
}

/// The registration of a partition whose only replica is `node_id`.
fn sole_replica(topic_id: Uuid, partition: i32, node_id: i32) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: vec![node_id],
        isr: vec![node_id],
        leader: node_id,
        leader_epoch: 0,
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
    }
}

/// Kafka's `Topic.validate`: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`, with
/// its messages.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the empty string is not allowed".to_owned()
    } else if name == "." {
        "'.' is not allowed".to_owned()
    } else if name == ".." {
        "'..' is not allowed".to_owned()
    } else if name.encode_utf16().count() > TOPIC_NAME_BYTES_MAX {
        // Java counts UTF-16 units; any longer name is refused here before its characters.
        format!(
            "the length of '{name}' is longer than the max allowed length {TOPIC_NAME_BYTES_MAX}"
        )
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        format!("'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'")
    } else {
        return Ok(());
    };
    Err(ClusterError::InvalidTopic {
        name: name.to_owned(),
        reason: format!("Topic name is invalid: {reason}"),
    })
}

/// Kafka forbids topics whose names differ only in '.' versus '_' (metric names would collide).
fn collides(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

/// A random UUID as Kafka makes them: never the zero or sentinel ids, and never one whose
/// base64 form starts with '-', which would read as a command-line flag.
pub fn random_kafka_uuid() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if id.as_u128() > 1 && !kafka_uuid_string(&id).starts_with('-') {
            return id;
        }
    }
}

/// Kafka's text form of a UUID: URL-safe base64 without padding (22 characters).
pub fn kafka_uuid_string(id: &Uuid) -> String {
    runnel_protocol::kafka_uuid::to_text(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> ControllerEngine {
        let mut n = 100u128;
        ControllerEngine::new(TopicDefaults {
            partitions: 1,
            replication_factor: 1,
        })
        .with_uuid_source(move || {
            n += 1;
            Uuid::from_u128(n)
        })
    }

    /// An image with a cluster id and brokers 1..=`brokers` registered.
    fn image(engine: &mut ControllerEngine, brokers: i32) -> MetadataImage {
        let mut image = MetadataImage::empty();
        let mut commands = vec![Command::InitCluster];
        commands.extend((1..=brokers).map(|node_id| Command::RegisterBroker {
            node_id,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        }));
        for command in commands {
            for record in engine.handle(&image, &command).unwrap() {
                image.apply(&record);
            }
        }
        image
    }

    fn create(name: &str, partitions: i32, replication_factor: i16) -> Command {
        Command::CreateTopic {
            name: name.into(),
            partitions,
            replication_factor,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    /// Runs an accepted command and applies its records.
    fn run(e: &mut ControllerEngine, img: &mut MetadataImage, command: &Command) {
        for record in e.handle(img, command).unwrap() {
            img.apply(&record);
        }
    }

    /// Kafka's message for a refused command.
    fn refusal(e: &mut ControllerEngine, img: &MetadataImage, command: &Command) -> String {
        e.handle(img, command).unwrap_err().to_string()
    }

    // Proves the engine answers Kafka's validation errors for bad topics, and touches nothing
    // (it has no state: the records are the whole effect).
    #[test]
    fn create_topic_validation() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        let err = |e: &mut ControllerEngine, img: &MetadataImage, c: Command| {
            e.handle(img, &c).unwrap_err()
        };
        assert!(matches!(
            err(&mut e, &img, create("", 1, 1)),
            ClusterError::InvalidTopic { .. }
        ));
        assert!(matches!(
            err(&mut e, &img, create("a b", 1, 1)),
            ClusterError::InvalidTopic { .. }
        ));
        assert!(matches!(
            err(&mut e, &img, create(&"x".repeat(250), 1, 1)),
            ClusterError::InvalidTopic { .. }
        ));
        assert!(matches!(
            err(&mut e, &img, create("t", 0, 1)),
            ClusterError::InvalidPartitions(_)
        ));
        assert!(matches!(
            err(&mut e, &img, create("t", 1, 3)),
            ClusterError::InvalidReplicationFactor(_)
        ));
        let bad = Command::CreateTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: [("segment.bytes".to_string(), "x".to_string())].into(),
            assignments: Vec::new(),
        };
        assert!(matches!(
            err(&mut e, &img, bad),
            ClusterError::ConfigRejected(_)
        ));
        for record in e.handle(&img, &create("a.b", -1, -1)).unwrap() {
            img.apply(&record);
        }
        assert!(matches!(
            err(&mut e, &img, create("a.b", 1, 1)),
            ClusterError::TopicAlreadyExists(_)
        ));
        assert!(matches!(
            err(&mut e, &img, create("a_b", 1, 1)),
            ClusterError::InvalidTopic { .. }
        ));
    }

    // Proves a new topic's partitions are registered on registered brokers, striped evenly,
    // leader first, epochs at 0; and a topic left without registrations by
    // an older log gets them.
    #[test]
    fn partitions_are_registered_and_striped_across_brokers() {
        let mut e = engine();
        let mut img = image(&mut e, 3);
        for record in e.handle(&img, &create("t", 6, 1)).unwrap() {
            img.apply(&record);
        }
        let topic = img.topic("t").unwrap();
        let mut leaders: Vec<i32> = (0..6)
            .map(|p| {
                let r = topic.registration(p).unwrap();
                assert_eq!(r.isr, r.replicas);
                assert_eq!(r.replicas, [r.leader]);
                assert_eq!((r.leader_epoch, r.partition_epoch), (0, 0));
                r.leader
            })
            .collect();
        leaders.sort_unstable();
        assert_eq!(leaders, [1, 1, 2, 2, 3, 3], "leaders striped evenly");
        // An older log: a topic record without partition records.
        img.apply(&MetadataRecord::Topic {
            name: "old".into(),
            topic_id: Uuid::from_u128(7),
            partitions: 2,
            configs: BTreeMap::new(),
        });
        let records = e
            .handle(&img, &Command::RegisterMissingPartitions { node_id: 1 })
            .unwrap();
        assert_eq!(records.len(), 2);
        for record in records {
            img.apply(&record);
        }
        assert_eq!(img.topic("old").unwrap().registration(1).unwrap().leader, 1);
        assert!(e
            .handle(&img, &Command::RegisterMissingPartitions { node_id: 1 })
            .unwrap()
            .is_empty());
    }

    // Proves CreateTopics answers Kafka's exact messages (ReplicationControlManager and
    // Topic.validate), which clients and operators read.
    #[test]
    fn create_topic_messages_match_kafka() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        let long = "x".repeat(250);
        let cases = [
            (create("", 1, 1), "Topic name is invalid: the empty string is not allowed".to_owned()),
            (create(".", 1, 1), "Topic name is invalid: '.' is not allowed".to_owned()),
            (create("..", 1, 1), "Topic name is invalid: '..' is not allowed".to_owned()),
            (
                create("a b", 1, 1),
                "Topic name is invalid: 'a b' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'".to_owned(),
            ),
            (
                create(&long, 1, 1),
                format!("Topic name is invalid: the length of '{long}' is longer than the max allowed length 249"),
            ),
            (create("t", 0, 1), "Number of partitions was set to an invalid non-positive value.".to_owned()),
            (create("t", -2, 1), "Number of partitions was set to an invalid non-positive value.".to_owned()),
            (create("t", 1, 0), "Replication factor must be larger than 0, or -1 to use the default value.".to_owned()),
            (
                create("t", 1, 2),
                "Unable to replicate the partition 2 time(s): The target replication factor of 2 cannot be reached because only 1 broker(s) are registered or some brokers have all their log directories cordoned.".to_owned(),
            ),
        ];
        for (command, message) in &cases {
            assert_eq!(refusal(&mut e, &img, command), *message, "{command:?}");
        }
        assert!(e.handle(&img, &create(&"x".repeat(249), 1, 1)).is_ok());
        run(&mut e, &mut img, &create("a.b", 1, 1));
        assert_eq!(
            refusal(&mut e, &img, &create("a.b", 1, 1)),
            "Topic 'a.b' already exists."
        );
        assert_eq!(
            refusal(&mut e, &img, &create("a_b", 1, 1)),
            "Topic 'a_b' collides with existing topic: a.b"
        );
        let manual =
            |partitions: i32, rf: i16, assignments: &[(i32, &[i32])]| Command::CreateTopic {
                name: "m".into(),
                partitions,
                replication_factor: rf,
                configs: BTreeMap::new(),
                assignments: assignments.iter().map(|(p, r)| (*p, r.to_vec())).collect(),
            };
        let cases = [
            (manual(-1, 1, &[(0, &[1])]), "A manual partition assignment was specified, but replication factor was not set to -1."),
            (manual(1, -1, &[(0, &[1])]), "A manual partition assignment was specified, but numPartitions was not set to -1."),
            (manual(-1, -1, &[(0, &[1]), (0, &[1])]), "Found multiple manual partition assignments for partition 0"),
            (manual(-1, -1, &[(0, &[])]), "The manual partition assignment includes an empty replica list."),
            (manual(-1, -1, &[(0, &[7])]), "The manual partition assignment includes broker 7, but no such broker is registered."),
            (manual(-1, -1, &[(0, &[1, 1])]), "The manual partition assignment includes the broker 1 more than once."),
            (manual(-1, -1, &[(1, &[1])]), "partitions should be a consecutive 0-based integer sequence"),
        ];
        for (command, message) in &cases {
            assert_eq!(refusal(&mut e, &img, command), *message, "{command:?}");
        }
        run(&mut e, &mut img, &manual(-1, -1, &[(1, &[1]), (0, &[1])]));
        let topic = img.topic("m").unwrap();
        assert_eq!(topic.partitions, 2);
        assert_eq!(topic.registration(1).unwrap().replicas, vec![1]);
    }

    // Proves CreatePartitions grows a topic with registrations placed like its first
    // partition's (or as assigned), refuses what Kafka refuses with Kafka's messages, and that
    // the image replays the new partitions whether they come from records or a snapshot.
    #[test]
    fn create_partitions() {
        let mut e = engine();
        let mut img = image(&mut e, 3);
        run(&mut e, &mut img, &create("t", 2, 1));
        let grow = |count: i32, assignments: Option<Vec<Vec<i32>>>| Command::CreatePartitions {
            name: "t".into(),
            count,
            assignments,
        };
        let cases = [
            (grow(2, None), "Topic already has 2 partition(s)."),
            (grow(1, None), "The topic t currently has 2 partition(s); 1 would not be an increase."),
            (grow(i32::MIN, None), "The topic t currently has 2 partition(s); -2147483648 would not be an increase."),
            (
                grow(4, Some(vec![vec![1]])),
                "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.",
            ),
            (
                grow(3, Some(vec![vec![1, 2]])),
                "The manual partition assignment includes a partition with 2 replica(s), but this is not consistent with previous partitions, which have 1 replica(s).",
            ),
            (
                grow(3, Some(vec![vec![9]])),
                "The manual partition assignment includes broker 9, but no such broker is registered.",
            ),
            (
                grow(3, Some(vec![vec![2, 2]])),
                "The manual partition assignment includes the broker 2 more than once.",
            ),
        ];
        for (command, message) in &cases {
            assert_eq!(refusal(&mut e, &img, command), *message, "{command:?}");
        }
        assert!(matches!(
            e.handle(&img, &grow(PARTITIONS_PER_TOPIC_MAX + 1, None)),
            Err(ClusterError::InvalidPartitions(_))
        ));
        assert!(matches!(
            e.handle(
                &img,
                &Command::CreatePartitions {
                    name: "nope".into(),
                    count: 3,
                    assignments: None
                }
            ),
            Err(ClusterError::UnknownTopic(_))
        ));
        let before = img.topic("t").unwrap().clone();
        let mut delta = crate::metadata::MetadataDelta::default();
        for record in e.handle(&img, &grow(5, None)).unwrap() {
            img.replay(&record, &mut delta);
        }
        assert_eq!(delta.grown_topics, vec![before.topic_id; 3]);
        assert_eq!(
            delta.changed_partitions,
            vec![
                (before.topic_id, 2),
                (before.topic_id, 3),
                (before.topic_id, 4)
            ]
        );
        let topic = img.topic("t").unwrap().clone();
        assert_eq!(topic.partitions, 5);
        assert_eq!(topic.registration(0), before.registration(0));
        // Striped: three new partitions land on three different brokers.
        let mut leaders: Vec<i32> = (2..5)
            .map(|p| topic.registration(p).unwrap().leader)
            .collect();
        leaders.sort_unstable();
        assert_eq!(leaders, [1, 2, 3]);
        run(&mut e, &mut img, &grow(6, Some(vec![vec![3]])));
        let r = img.topic("t").unwrap().registration(5).unwrap().clone();
        assert_eq!((r.replicas, r.isr, r.leader), (vec![3], vec![3], 3));
        let mut rebuilt = MetadataImage::empty();
        for record in img.to_records() {
            rebuilt.apply(&record);
        }
        assert!(rebuilt.same_state(&img));
    }

    // Proves the group coordinator's topic is not grown: runnel maps groups to its partitions
    // by their count, so new partitions would move every group.
    #[test]
    fn offsets_topic_is_not_grown() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        run(&mut e, &mut img, &create("__consumer_offsets", 1, 1));
        let grow = Command::CreatePartitions {
            name: "__consumer_offsets".into(),
            count: 2,
            assignments: None,
        };
        assert!(matches!(
            e.handle(&img, &grow),
            Err(ClusterError::InvalidRequest(_))
        ));
    }

    // Proves producer-id blocks move past both the image's reservation and the ids handed out.
    #[test]
    fn producer_id_blocks_only_move_forward() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        img.apply(&MetadataRecord::ProducerIds {
            next_producer_id: 5000,
        });
        let reserve = |e: &mut ControllerEngine, img: &MetadataImage, handed_out| match e
            .handle(img, &Command::ReserveProducerIds { handed_out })
            .unwrap()[..]
        {
            [MetadataRecord::ProducerIds { next_producer_id }] => next_producer_id,
            ref other => panic!("{other:?}"),
        };
        assert_eq!(reserve(&mut e, &img, 0), 5000 + PRODUCER_ID_BLOCK_SIZE);
        assert_eq!(reserve(&mut e, &img, 7000), 7000 + PRODUCER_ID_BLOCK_SIZE);
    }

    // Proves AlterConfigs on a topic as Kafka's controller: SET/APPEND/SUBTRACT/DELETE applied in
    // order (APPEND starts from the default list), legacy replace drops unnamed configs, APPEND to
    // a non-list and bad values are refused with Kafka's messages, an unknown topic is refused
    // after validation.
    #[test]
    fn alter_configs_on_topics() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        for record in e.handle(&img, &create("t", 1, 1)).unwrap() {
            img.apply(&record);
        }
        let alter = |ops: Vec<(&str, ConfigOp)>, replace: bool| Command::AlterConfigs {
            resource: ConfigResource::Topic("t".into()),
            ops: ops.into_iter().map(|(k, op)| (k.to_owned(), op)).collect(),
            replace,
        };
        let apply = |e: &mut ControllerEngine, img: &mut MetadataImage, c: Command| {
            for record in e.handle(img, &c).unwrap() {
                img.apply(&record);
            }
        };
        apply(
            &mut e,
            &mut img,
            alter(
                vec![
                    ("cleanup.policy", ConfigOp::Append("compact".into())),
                    ("retention.ms", ConfigOp::Set("5".into())),
                ],
                false,
            ),
        );
        let configs = img.topic("t").unwrap().configs.clone();
        assert_eq!(configs["cleanup.policy"], "delete,compact");
        assert_eq!(configs["retention.ms"], "5");
        apply(
            &mut e,
            &mut img,
            alter(
                vec![("cleanup.policy", ConfigOp::Subtract("delete".into()))],
                false,
            ),
        );
        assert_eq!(img.topic("t").unwrap().configs["cleanup.policy"], "compact");
        apply(
            &mut e,
            &mut img,
            alter(vec![("segment.ms", ConfigOp::Set("100".into()))], true),
        );
        let configs = &img.topic("t").unwrap().configs;
        assert_eq!(configs.keys().collect::<Vec<_>>(), vec!["segment.ms"]);
        let err = |e: &mut ControllerEngine, img: &MetadataImage, c: Command| {
            e.handle(img, &c).unwrap_err().to_string()
        };
        assert_eq!(
            err(
                &mut e,
                &img,
                alter(vec![("retention.ms", ConfigOp::Append("1".into()))], false)
            ),
            "Can't APPEND to key retention.ms because its type is not LIST."
        );
        assert_eq!(
            err(
                &mut e,
                &img,
                alter(vec![("retention.ms", ConfigOp::Set("x".into()))], false)
            ),
            "Invalid value x for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            err(
                &mut e,
                &img,
                alter(vec![("nope", ConfigOp::Set("1".into()))], false)
            ),
            "Unknown topic config name: nope"
        );
        let lags = vec![
            ("min.compaction.lag.ms", ConfigOp::Set("10".into())),
            ("max.compaction.lag.ms", ConfigOp::Set("5".into())),
        ];
        assert_eq!(
            err(&mut e, &img, alter(lags, false)),
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)"
        );
        let remote = vec![("remote.storage.enable", ConfigOp::Set("true".into()))];
        assert!(err(&mut e, &img, alter(remote, false))
            .starts_with("Tiered Storage functionality is disabled"));
        // Deleting a config that is not set changes nothing, as in Kafka.
        assert!(e
            .handle(
                &img,
                &alter(vec![("retention.ms", ConfigOp::Delete)], false)
            )
            .unwrap()
            .is_empty());
        assert!(matches!(
            e.handle(
                &img,
                &Command::AlterConfigs {
                    resource: ConfigResource::Topic("missing".into()),
                    ops: vec![],
                    replace: false
                }
            ),
            Err(ClusterError::UnknownTopic(_))
        ));
    }

    // Proves AlterConfigs on BROKER resources: values kept per resource, read-only configs and
    // per-broker configs at the cluster level refused, min.insync.replicas kept at the cluster
    // level only (eligible leader replicas), bad broker names refused.
    #[test]
    fn alter_configs_on_brokers() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        let alter = |name: &str, ops: Vec<(&str, ConfigOp)>| Command::AlterConfigs {
            resource: ConfigResource::Broker(name.into()),
            ops: ops.into_iter().map(|(k, op)| (k.to_owned(), op)).collect(),
            replace: false,
        };
        for record in e
            .handle(
                &img,
                &alter(
                    "",
                    vec![
                        ("log.retention.ms", ConfigOp::Set("1000".into())),
                        ("min.insync.replicas", ConfigOp::Set("1".into())),
                    ],
                ),
            )
            .unwrap()
        {
            img.apply(&record);
        }
        for record in e
            .handle(
                &img,
                &alter(
                    "1",
                    vec![("log.cleaner.threads", ConfigOp::Set("3".into()))],
                ),
            )
            .unwrap()
        {
            img.apply(&record);
        }
        assert_eq!(img.broker_configs[""]["log.retention.ms"], "1000");
        assert_eq!(img.broker_configs["1"]["log.cleaner.threads"], "3");
        let snapshot = {
            let mut rebuilt = MetadataImage::empty();
            for record in img.to_records() {
                rebuilt.apply(&record);
            }
            rebuilt
        };
        assert!(snapshot.same_state(&img));
        let mut err = |c: Command| e.handle(&img, &c).unwrap_err().to_string();
        assert_eq!(
            err(alter("1", vec![("log.dirs", ConfigOp::Set("/x".into()))])),
            "Cannot update these configs dynamically: [log.dirs]"
        );
        assert_eq!(
            err(alter(
                "1",
                vec![("min.insync.replicas", ConfigOp::Set("2".into()))]
            )),
            "Broker-level min.insync.replicas cannot be altered while ELR is enabled."
        );
        assert_eq!(
            err(alter("", vec![("min.insync.replicas", ConfigOp::Delete)])),
            "Cluster-level min.insync.replicas cannot be removed while ELR is enabled."
        );
        assert_eq!(
            err(alter("x", vec![])),
            "Unable to parse broker name as a base 10 number."
        );
        assert_eq!(
            err(alter(
                "1",
                vec![("log.retention.ms", ConfigOp::Append("1".into()))]
            )),
            "Config value append is not allowed for config key: log.retention.ms"
        );
    }

    // Proves config changes are validated as a whole (one bad value refuses all), unknown
    // topics and names are refused, and only real changes become records.
    #[test]
    fn alter_topic_configs() {
        let mut e = engine();
        let mut img = image(&mut e, 1);
        for record in e.handle(&img, &create("t", 1, 1)).unwrap() {
            img.apply(&record);
        }
        let alter = |changes: &[(&str, Option<&str>)]| Command::AlterTopicConfigs {
            name: "t".into(),
            changes: changes
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        };
        assert!(matches!(
            e.handle(
                &img,
                &alter(&[
                    ("max.message.bytes", Some("10")),
                    ("segment.bytes", Some("x"))
                ])
            ),
            Err(ClusterError::ConfigRejected(_))
        ));
        assert!(matches!(
            e.handle(&img, &alter(&[("no.such.config", None)])),
            Err(ClusterError::ConfigRejected(_))
        ));
        let records = e
            .handle(&img, &alter(&[("max.message.bytes", Some("10"))]))
            .unwrap();
        assert_eq!(records.len(), 1);
        for record in records {
            img.apply(&record);
        }
        assert!(e
            .handle(&img, &alter(&[("max.message.bytes", Some("10"))]))
            .unwrap()
            .is_empty());
        let records = e
            .handle(&img, &alter(&[("max.message.bytes", None)]))
            .unwrap();
        for record in records {
            img.apply(&record);
        }
        assert!(img.topic("t").unwrap().configs.is_empty());
        assert!(matches!(
            e.handle(
                &img,
                &Command::AlterTopicConfigs {
                    name: "nope".into(),
                    changes: vec![]
                }
            ),
            Err(ClusterError::UnknownTopic(_))
        ));
    }
}
