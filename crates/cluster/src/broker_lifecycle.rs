//! Broker registration, fencing and controlled shutdown as KRaft's controller decides them
//! (`ClusterControlManager.registerBroker`, `ReplicationControlManager.processBrokerHeartbeat`,
//! `BrokerHeartbeatManager.calculateNextBrokerState`, `handleBrokerFenced/Unfenced/...`): the
//! image and a request in, the records (and Kafka's refusals) out. Liveness (whether a broker's
//! heartbeat session is still valid) is not in the image: the caller asks the
//! [`crate::heartbeat::HeartbeatTracker`] and passes the answer in.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::error::{ClusterError, Result};
use crate::metadata::{BrokerListener, MetadataImage, MetadataRecord};

/// Kafka's `NO_LEADER`.
pub const NO_LEADER: i32 = -1;

/// A BrokerRegistration request (API 62) as the controller needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    pub node_id: i32,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub listeners: Vec<BrokerListener>,
    /// (name, min supported, max supported)
    pub features: Vec<(String, i16, i16)>,
    pub rack: Option<String>,
    /// The epoch of the broker's previous incarnation if it shut down cleanly, else -1.
    pub previous_broker_epoch: i64,
    /// Its log directory ids (v2+; Kafka refuses a registration without any).
    pub log_dirs: Vec<Uuid>,
    /// v1+: a ZooKeeper broker migrating (Kafka 4 refuses it).
    pub is_migrating_zk_broker: bool,
    /// Whether the node's current registration still has a valid heartbeat session (from
    /// the heartbeat tracker): a different incarnation is then a duplicate.
    pub session_alive: bool,
}

/// A BrokerHeartbeat request (API 63) as the controller needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heartbeat {
    pub node_id: i32,
    pub broker_epoch: i64,
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// What a heartbeat is answered with, read from the image after its records were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
    pub in_controlled_shutdown: bool,
}

/// Kafka's `BrokerControlState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    Fenced,
    Unfenced,
    ControlledShutdown,
    ShutdownNow,
}

/// The state of `node_id` in `image` (none when not registered).
pub fn state(image: &MetadataImage, node_id: i32) -> Option<BrokerState> {
    image.brokers.get(&node_id).map(|b| {
        if b.fenced {
            BrokerState::Fenced
        } else if b.in_controlled_shutdown {
            BrokerState::ControlledShutdown
        } else {
            BrokerState::Unfenced
        }
    })
}

/// Kafka's `processBrokerHeartbeat` reply, from the image its records produced.
pub fn heartbeat_reply(image: &MetadataImage, heartbeat: &Heartbeat) -> HeartbeatReply {
    let broker = image.brokers.get(&heartbeat.node_id);
    let is_fenced = broker.is_none_or(|b| b.fenced);
    HeartbeatReply {
        is_caught_up: broker.is_some_and(|b| heartbeat.current_metadata_offset >= b.broker_epoch),
        is_fenced,
        // SHUTDOWN_NOW is the only state that both fences and grants the shutdown.
        should_shut_down: heartbeat.want_shut_down && is_fenced,
        in_controlled_shutdown: broker.is_some_and(|b| b.in_controlled_shutdown),
    }
}

/// Kafka's `registerBroker`: refusals in its order, then the records that retire the previous
/// incarnation (its leaderships) and register the new one fenced, at epoch = the offset the
/// registration record gets. Re-sending the same incarnation amends the registration and keeps
/// its epoch and state.
pub fn register(image: &MetadataImage, request: &Registration) -> Result<Vec<MetadataRecord>> {
    if image.cluster_id != request.cluster_id {
        return Err(ClusterError::InconsistentClusterId(format!(
            "Expected cluster ID {}, but got cluster ID {}",
            image.cluster_id, request.cluster_id
        )));
    }
    let existing = image.brokers.get(&request.node_id);
    if let Some(existing) = existing {
        if request.session_alive && existing.incarnation_id != request.incarnation_id {
            return Err(ClusterError::DuplicateBrokerRegistration(
                "Another broker is registered with that broker id. If the broker was recently restarted this should self-resolve once the heartbeat manager expires the broker's session.".into(),
            ));
        }
    }
    if request.is_migrating_zk_broker {
        return Err(ClusterError::BrokerIdNotRegistered(
            "Controller does not support registering ZK brokers.".into(),
        ));
    }
    // Kafka's checks with directory assignment (every metadata version Kafka 4 runs).
    if request.log_dirs.is_empty() {
        return Err(ClusterError::InvalidRegistration(
            "No directories specified in request".into(),
        ));
    }
    if request.log_dirs.iter().any(is_reserved_directory) {
        return Err(ClusterError::InvalidRegistration(
            "Reserved directory ID in request".into(),
        ));
    }
    let distinct: std::collections::BTreeSet<&Uuid> = request.log_dirs.iter().collect();
    if distinct.len() != request.log_dirs.len() {
        return Err(ClusterError::InvalidRegistration(
            "Duplicate directory ID in request".into(),
        ));
    }
    for directory in &request.log_dirs {
        if let Some(other) = image
            .brokers
            .values()
            .find(|b| b.node_id != request.node_id && b.log_dirs.contains(directory))
        {
            return Err(ClusterError::InvalidRegistration(format!(
                "Broker {} is already registered with directory {}",
                other.node_id,
                runnel_protocol::kafka_uuid::to_text(directory.as_bytes())
            )));
        }
    }
    let finalized = crate::features::finalized(image);
    for (name, min, max) in &request.features {
        if name == METADATA_VERSION {
            // Runnel finalizes no metadata.version (its records are its own, not Kafka's
            // levels): the broker must name the feature, any range is accepted.
            continue;
        }
        let level = finalized.get(name.as_str()).copied().unwrap_or(0);
        if !(*min..=*max).contains(&level) {
            return Err(ClusterError::UnsupportedVersion(format!(
                "Unable to register because the broker does not support finalized version {level} of {name}. The broker wants a version between {min} and {max}, inclusive."
            )));
        }
    }
    if !request
        .features
        .iter()
        .any(|(name, _, _)| name == METADATA_VERSION)
    {
        return Err(ClusterError::InvalidRegistration(format!(
            "Request features do not contain '{METADATA_VERSION}'"
        )));
    }
    for (name, level) in &finalized {
        if *level != 0 && !request.features.iter().any(|(n, _, _)| n == name) {
            return Err(ClusterError::UnsupportedVersion(format!(
                "Unable to register because the broker does not support finalized version {level} of {name}. The broker wants a version between 0 and 0, inclusive."
            )));
        }
    }
    let mut records = Vec::new();
    let (broker_epoch, fenced, in_controlled_shutdown) = match existing {
        Some(existing) if existing.incarnation_id == request.incarnation_id => (
            existing.broker_epoch,
            existing.fenced,
            existing.in_controlled_shutdown,
        ),
        _ => {
            if existing.is_some() {
                // The previous incarnation is gone: its leaderships move (Kafka's
                // addRecordsForShutdown, handled as a fencing without ELR).
                move_leaderships_away(image, request.node_id, &mut records);
            }
            // The offset of the batch that carries the registration: its first record's on a
            // single node (Kafka takes the record's own), its Raft index in a quorum, where
            // every record of a batch has the batch's offset. Either way a later registration
            // gets a larger epoch, and the broker is caught up once its image has the batch.
            let offset = image.offset + 1;
            (offset, true, false)
        }
    };
    records.push(MetadataRecord::BrokerRegistration {
        node_id: request.node_id,
        incarnation_id: request.incarnation_id,
        broker_epoch,
        listeners: request.listeners.clone(),
        rack: request.rack.clone(),
        fenced,
        in_controlled_shutdown,
        log_dirs: request.log_dirs.clone(),
    });
    Ok(records)
}

/// Kafka's `DirectoryId.reserved`: the first 100 ids with no high bits (UNASSIGNED, LOST,
/// MIGRATING and room for more).
pub fn is_reserved_directory(id: &Uuid) -> bool {
    let (high, low) = id.as_u64_pair();
    high == 0 && low < 100
}

/// The feature every registration must name (Kafka's `MetadataVersion.FEATURE_NAME`).
pub const METADATA_VERSION: &str = "metadata.version";

/// Kafka's `checkBrokerEpoch`.
pub fn check_broker_epoch(image: &MetadataImage, node_id: i32, broker_epoch: i64) -> Result<()> {
    match image.brokers.get(&node_id) {
        None => Err(ClusterError::StaleBrokerEpoch(format!(
            "No broker registration found for broker id {node_id}"
        ))),
        Some(b) if b.broker_epoch != broker_epoch => Err(ClusterError::StaleBrokerEpoch(format!(
            "Expected broker epoch {}, but got broker epoch {broker_epoch}",
            b.broker_epoch
        ))),
        Some(_) => Ok(()),
    }
}

/// Kafka's `calculateNextBrokerState`: where a heartbeat takes the broker. Controlled shutdown
/// completes once the broker leads nothing (Kafka also waits until every active broker's
/// metadata passed the shutdown offset; one controller-side node needs no such wait).
pub fn next_state(
    image: &MetadataImage,
    heartbeat: &Heartbeat,
) -> Result<(BrokerState, BrokerState)> {
    check_broker_epoch(image, heartbeat.node_id, heartbeat.broker_epoch)?;
    // ok: check_broker_epoch refused an unregistered broker above.
    let current = state(image, heartbeat.node_id).expect("checked registered");
    let broker = &image.brokers[&heartbeat.node_id];
    let next = match current {
        BrokerState::Fenced if heartbeat.want_shut_down => BrokerState::ShutdownNow,
        BrokerState::Fenced
            if !heartbeat.want_fence
                && heartbeat.current_metadata_offset >= broker.broker_epoch =>
        {
            BrokerState::Unfenced
        }
        BrokerState::Fenced => BrokerState::Fenced,
        BrokerState::Unfenced if heartbeat.want_fence && heartbeat.want_shut_down => {
            BrokerState::ShutdownNow
        }
        BrokerState::Unfenced if heartbeat.want_fence => BrokerState::Fenced,
        BrokerState::Unfenced if heartbeat.want_shut_down => {
            if has_leaderships(image, heartbeat.node_id) {
                BrokerState::ControlledShutdown
            } else {
                BrokerState::ShutdownNow
            }
        }
        BrokerState::Unfenced => BrokerState::Unfenced,
        BrokerState::ControlledShutdown if has_leaderships(image, heartbeat.node_id) => {
            BrokerState::ControlledShutdown
        }
        BrokerState::ControlledShutdown | BrokerState::ShutdownNow => BrokerState::ShutdownNow,
    };
    Ok((current, next))
}

/// Kafka's `processBrokerHeartbeat`: the records of the state change a heartbeat causes.
pub fn heartbeat(image: &MetadataImage, heartbeat: &Heartbeat) -> Result<Vec<MetadataRecord>> {
    let (current, next) = next_state(image, heartbeat)?;
    let mut records = Vec::new();
    if current != next {
        match next {
            BrokerState::Fenced | BrokerState::ShutdownNow => {
                fence(image, heartbeat.node_id, &mut records);
            }
            BrokerState::Unfenced => unfence(image, heartbeat.node_id, &mut records),
            BrokerState::ControlledShutdown => {
                records.push(MetadataRecord::BrokerInControlledShutdown {
                    node_id: heartbeat.node_id,
                    broker_epoch: heartbeat.broker_epoch,
                });
                move_leaderships_away(image, heartbeat.node_id, &mut records);
            }
        }
    }
    Ok(records)
}

/// Fences a broker whose session expired (Kafka's `maybeFenceOneStaleBroker`): nothing when
/// that incarnation is gone or already fenced.
pub fn fence_stale(image: &MetadataImage, node_id: i32, broker_epoch: i64) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if image
        .brokers
        .get(&node_id)
        .is_some_and(|b| b.broker_epoch == broker_epoch && !b.fenced)
    {
        fence(image, node_id, &mut records);
    }
    records
}

/// Kafka's `unregisterBroker`: leaderships move away, then the registration goes.
pub fn unregister(image: &MetadataImage, node_id: i32) -> Result<Vec<MetadataRecord>> {
    let Some(broker) = image.brokers.get(&node_id) else {
        return Err(ClusterError::BrokerIdNotRegistered(format!(
            "Broker ID {node_id} is not currently registered"
        )));
    };
    let mut records = Vec::new();
    move_leaderships_away(image, node_id, &mut records);
    records.push(MetadataRecord::UnregisterBroker {
        node_id,
        broker_epoch: broker.broker_epoch,
    });
    Ok(records)
}

/// Kafka's `handleBrokerFenced`: leaderships and ISR memberships go, then the fence record.
fn fence(image: &MetadataImage, node_id: i32, records: &mut Vec<MetadataRecord>) {
    move_leaderships_away(image, node_id, records);
    records.push(MetadataRecord::FenceBroker {
        node_id,
        broker_epoch: image.brokers[&node_id].broker_epoch,
    });
}

/// Kafka's `handleBrokerUnfenced`: the unfence record, then every leaderless partition this
/// broker may lead gets it as leader: from the ISR, or, while the ISR is empty, from the
/// eligible leader replicas (the leader joins the ISR and leaves the ELR), or as the last
/// known leader (Kafka's balanced recovery; the ISR is then just the leader).
fn unfence(image: &MetadataImage, node_id: i32, records: &mut Vec<MetadataRecord>) {
    records.push(MetadataRecord::UnfenceBroker {
        node_id,
        broker_epoch: image.brokers[&node_id].broker_epoch,
    });
    let acceptable = |r: i32| r == node_id || is_active(image, r);
    for topic in image.topics.values() {
        for (partition, registration) in &topic.registrations {
            if registration.leader != NO_LEADER {
                continue;
            }
            // A new leader: the last known leader is cleared; one elected out of the ELR
            // becomes the ISR and leaves the ELR.
            let change = |leader: i32, from_elr: bool| MetadataRecord::PartitionChange {
                topic_id: topic.topic_id,
                partition: *partition,
                leader: Some(leader),
                isr: from_elr.then(|| vec![leader]),
                replicas: None,
                adding: None,
                removing: None,
                elr: (from_elr && !registration.elr.is_empty()).then(|| {
                    registration
                        .elr
                        .iter()
                        .copied()
                        .filter(|r| *r != leader)
                        .collect()
                }),
                last_known_elr: (!registration.last_known_elr.is_empty()).then(Vec::new),
            };
            if registration.isr.contains(&node_id) {
                if let Some(leader) = registration.isr.iter().copied().find(|r| acceptable(*r)) {
                    records.push(change(leader, false));
                }
            } else if registration.isr.is_empty()
                && !registration.is_reassigning()
                && (registration.elr.contains(&node_id)
                    || (registration.elr.is_empty() && registration.last_known_elr == [node_id]))
            {
                records.push(change(node_id, true));
            }
        }
    }
}

/// The `min.insync.replicas` in force for `topic`: its own, else the cluster-level one the
/// controller keeps (see `ConfigResource::Broker`), else Kafka's default 1.
fn min_isr(image: &MetadataImage, topic: &crate::metadata::TopicImage) -> usize {
    const KEY: &str = "min.insync.replicas";
    topic
        .configs
        .get(KEY)
        .or_else(|| {
            image
                .broker_configs
                .get(crate::broker_config::CLUSTER_DEFAULT)
                .and_then(|c| c.get(KEY))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Kafka's `generateLeaderAndIsrUpdates` with a broker to remove, as a Kafka 4.4 cluster runs
/// it with eligible leader replicas on (KIP-966): the broker leaves every ISR, even the last
/// member of one; each partition it led gets the first other active in-sync replica as leader,
/// or none (-1, the leader epoch bumped). Where the ISR falls below `min.insync.replicas`, the
/// replicas that left it become eligible leader replicas, and a partition left leaderless
/// records its last leader (`last_known_elr`, Kafka's balanced recovery), so the broker leads
/// it again when it comes back. A partition being reassigned keeps its last ISR member (the
/// move's phases are told apart by an empty ISR).
fn move_leaderships_away(image: &MetadataImage, node_id: i32, records: &mut Vec<MetadataRecord>) {
    for topic in image.topics.values() {
        for (partition, registration) in &topic.registrations {
            if !registration.isr.contains(&node_id) && registration.leader != node_id {
                continue;
            }
            let mut isr: Vec<i32> = registration
                .isr
                .iter()
                .copied()
                .filter(|r| *r != node_id)
                .collect();
            if isr.is_empty() && registration.is_reassigning() {
                isr.clone_from(&registration.isr);
            }
            let leader = if registration.leader == node_id {
                Some(
                    isr.iter()
                        .copied()
                        .find(|r| *r != node_id && is_active(image, *r))
                        .unwrap_or(NO_LEADER),
                )
            } else {
                None
            };
            let (elr, last_known_elr) = if registration.is_reassigning() {
                (None, None)
            } else {
                let elr: Vec<i32> = if isr.len() >= min_isr(image, topic) {
                    Vec::new()
                } else {
                    let mut elr = registration.elr.clone();
                    for r in &registration.isr {
                        if !elr.contains(r) {
                            elr.push(*r);
                        }
                    }
                    elr.retain(|r| !isr.contains(r));
                    elr
                };
                let last_known_elr = match leader {
                    Some(NO_LEADER) if registration.last_known_elr.is_empty() => {
                        Some(vec![registration.leader])
                    }
                    Some(l) if l >= 0 && !registration.last_known_elr.is_empty() => {
                        Some(Vec::new())
                    }
                    _ => None,
                };
                ((elr != registration.elr).then_some(elr), last_known_elr)
            };
            let isr = (isr != registration.isr).then_some(isr);
            if leader.is_some() || isr.is_some() || elr.is_some() || last_known_elr.is_some() {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.topic_id,
                    partition: *partition,
                    leader,
                    isr,
                    replicas: None,
                    adding: None,
                    removing: None,
                    elr,
                    last_known_elr,
                });
            }
        }
    }
}

/// Kafka's `ClusterControlManager.isActive`: registered, unfenced, not shutting down.
fn is_active(image: &MetadataImage, node_id: i32) -> bool {
    image
        .brokers
        .get(&node_id)
        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// Whether `node_id` leads any partition.
pub fn has_leaderships(image: &MetadataImage, node_id: i32) -> bool {
    image
        .topics
        .values()
        .any(|t| t.registrations.values().any(|r| r.leader == node_id))
}

/// Node ids of registered, unfenced brokers (Kafka's live brokers), in id order.
pub fn live_brokers(image: &MetadataImage) -> BTreeMap<i32, &crate::metadata::BrokerImage> {
    image
        .brokers
        .iter()
        .filter(|(_, b)| b.is_live())
        .map(|(id, b)| (*id, b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{Command, ControllerEngine, TopicDefaults};
    use crate::heartbeat::{Fencing, HeartbeatTracker};

    struct Cluster {
        engine: ControllerEngine,
        image: MetadataImage,
    }

    impl Cluster {
        fn new() -> Cluster {
            let mut n = 1000u128;
            let engine = ControllerEngine::new(TopicDefaults {
                partitions: 1,
                replication_factor: 1,
            })
            .with_uuid_source(move || {
                n += 1;
                Uuid::from_u128(n)
            });
            let mut c = Cluster {
                engine,
                image: MetadataImage::empty(),
            };
            c.run(&Command::InitCluster).unwrap();
            c
        }

        /// Commits the command's records as the driver does (offset = one per record).
        fn run(&mut self, command: &Command) -> Result<Vec<MetadataRecord>> {
            let records = self.engine.handle(&self.image, command)?;
            for record in &records {
                self.image.apply(record);
                self.image.offset += 1;
            }
            Ok(records)
        }

        fn register(
            &mut self,
            node_id: i32,
            incarnation: u128,
            session_alive: bool,
        ) -> Result<i64> {
            self.run(&Command::BrokerRegistration(registration(
                &self.image.cluster_id,
                node_id,
                incarnation,
                session_alive,
            )))?;
            Ok(self.image.brokers[&node_id].broker_epoch)
        }

        fn heartbeat(
            &mut self,
            node_id: i32,
            want_fence: bool,
            want_shut_down: bool,
        ) -> Result<HeartbeatReply> {
            let hb = Heartbeat {
                node_id,
                broker_epoch: self.image.brokers[&node_id].broker_epoch,
                current_metadata_offset: self.image.offset,
                want_fence,
                want_shut_down,
            };
            self.run(&Command::BrokerHeartbeat(hb))?;
            Ok(heartbeat_reply(&self.image, &hb))
        }

        fn partition(&self, topic: &str) -> crate::metadata::PartitionImage {
            self.image
                .topic(topic)
                .unwrap()
                .registration(0)
                .unwrap()
                .clone()
        }
    }

    fn registration(
        cluster_id: &str,
        node_id: i32,
        incarnation: u128,
        session_alive: bool,
    ) -> Registration {
        Registration {
            node_id,
            cluster_id: cluster_id.into(),
            incarnation_id: Uuid::from_u128(incarnation),
            listeners: vec![BrokerListener {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9000 + u16::try_from(node_id).unwrap(),
                security_protocol: 0,
            }],
            features: vec![
                (METADATA_VERSION.into(), 1, 30),
                ("group.version".into(), 0, 1),
                ("transaction.version".into(), 0, 2),
            ],
            rack: None,
            previous_broker_epoch: -1,
            log_dirs: vec![Uuid::from_u128(
                (u128::from(node_id.unsigned_abs()) << 64) | 7,
            )],
            is_migrating_zk_broker: false,
            session_alive,
        }
    }

    fn create_on(c: &mut Cluster, topic: &str, broker: i32) {
        c.run(&Command::CreateTopic {
            name: topic.into(),
            partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
            assignments: vec![(0, vec![broker])],
        })
        .unwrap();
    }

    // Proves a new incarnation registers fenced at the offset of its record, is unfenced only
    // once its heartbeat shows it caught up to that offset, and then lists as live.
    #[test]
    fn registration_fenced_until_caught_up() {
        let mut c = Cluster::new();
        let epoch = c.register(1, 1, false).unwrap();
        assert_eq!(
            epoch, c.image.offset,
            "epoch is the registration record's offset"
        );
        assert!(c.image.brokers[&1].fenced);
        assert!(live_brokers(&c.image).is_empty());
        let behind = Heartbeat {
            node_id: 1,
            broker_epoch: epoch,
            current_metadata_offset: epoch - 1,
            want_fence: false,
            want_shut_down: false,
        };
        assert!(c.run(&Command::BrokerHeartbeat(behind)).unwrap().is_empty());
        let reply = heartbeat_reply(&c.image, &behind);
        assert!(reply.is_fenced && !reply.is_caught_up);
        let reply = c.heartbeat(1, false, false).unwrap();
        assert!(!reply.is_fenced && reply.is_caught_up && !reply.should_shut_down);
        assert_eq!(
            live_brokers(&c.image).keys().copied().collect::<Vec<_>>(),
            [1]
        );
        // Heartbeats of a live broker change nothing.
        let before = c.image.offset;
        c.heartbeat(1, false, false).unwrap();
        assert_eq!(c.image.offset, before);
    }

    // Kafka's refusals: another incarnation while the session lives, a stale epoch, another
    // cluster, a missing metadata.version, an unregistered broker leaving.
    #[test]
    fn illegal_transitions_are_refused() {
        let mut c = Cluster::new();
        let epoch = c.register(1, 1, false).unwrap();
        assert!(matches!(
            c.register(1, 2, true),
            Err(ClusterError::DuplicateBrokerRegistration(_))
        ));
        // The same incarnation amends and keeps epoch and state.
        assert_eq!(c.register(1, 1, true).unwrap(), epoch);
        let stale = Heartbeat {
            node_id: 1,
            broker_epoch: epoch - 1,
            current_metadata_offset: 100,
            want_fence: false,
            want_shut_down: false,
        };
        let err = c.run(&Command::BrokerHeartbeat(stale)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Expected broker epoch {epoch}, but got broker epoch {}",
                epoch - 1
            )
        );
        let unknown = Heartbeat {
            node_id: 7,
            ..stale
        };
        assert_eq!(
            c.run(&Command::BrokerHeartbeat(unknown))
                .unwrap_err()
                .to_string(),
            "No broker registration found for broker id 7"
        );
        let mut other = registration("other", 2, 5, false);
        assert!(matches!(
            c.run(&Command::BrokerRegistration(other.clone())),
            Err(ClusterError::InconsistentClusterId(_))
        ));
        other.cluster_id.clone_from(&c.image.cluster_id);
        other.features.retain(|(n, _, _)| n != METADATA_VERSION);
        assert!(matches!(
            c.run(&Command::BrokerRegistration(other.clone())),
            Err(ClusterError::InvalidRegistration(_))
        ));
        other.features.push((METADATA_VERSION.into(), 1, 30));
        other.features.retain(|(n, _, _)| n != "group.version");
        assert!(matches!(
            c.run(&Command::BrokerRegistration(other)),
            Err(ClusterError::UnsupportedVersion(_))
        ));
        assert_eq!(
            c.run(&Command::UnregisterBroker { node_id: 9 })
                .unwrap_err()
                .to_string(),
            "Broker ID 9 is not currently registered"
        );
    }

    // Proves the sole replica going silent leaves its partition leaderless with a bumped leader
    // epoch (ISR kept, as Kafka never empties one), and leading again once it is unfenced.
    #[test]
    fn session_expiry_fences_and_unfencing_restores_leadership() {
        let mut c = Cluster::new();
        let mut tracker = HeartbeatTracker::new(9_000);
        for node in [1, 2] {
            let epoch = c
                .register(node, u128::try_from(node).unwrap(), false)
                .unwrap();
            tracker.register(node, epoch, true, 0);
            c.heartbeat(node, false, false).unwrap();
            tracker.touch(node, epoch, false, c.image.offset, 0);
        }
        create_on(&mut c, "on2", 2);
        assert_eq!(c.partition("on2").leader, 2);
        // Broker 1 heartbeats; broker 2 falls silent.
        for now in (2_000..=8_000).step_by(2_000) {
            c.heartbeat(1, false, false).unwrap();
            tracker.touch(
                1,
                c.image.brokers[&1].broker_epoch,
                false,
                c.image.offset,
                now,
            );
            assert!(tracker.tick(now).is_empty());
        }
        let fencings = tracker.tick(9_000);
        let epoch2 = c.image.brokers[&2].broker_epoch;
        assert_eq!(
            fencings,
            [Fencing::Fence {
                node_id: 2,
                broker_epoch: epoch2
            }]
        );
        c.run(&Command::FenceStaleBroker {
            node_id: 2,
            broker_epoch: epoch2,
        })
        .unwrap();
        // As Kafka 4.4 with eligible leader replicas on: the ISR empties, the replica becomes
        // an eligible leader and the last known leader.
        let p = c.partition("on2");
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (-1, 1, vec![]));
        assert_eq!(
            (p.elr.clone(), p.last_known_elr.clone()),
            (vec![2], vec![2])
        );
        assert!(c.image.brokers[&2].fenced);
        // A second expiry of the same epoch writes nothing.
        assert!(c
            .run(&Command::FenceStaleBroker {
                node_id: 2,
                broker_epoch: epoch2
            })
            .unwrap()
            .is_empty());
        // New topics go to the live broker only.
        for i in 0..5 {
            c.run(&Command::CreateTopic {
                name: format!("t{i}"),
                partitions: 4,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignments: Vec::new(),
            })
            .unwrap();
            assert!(c
                .image
                .topic(&format!("t{i}"))
                .unwrap()
                .registrations
                .values()
                .all(|r| r.replicas == [1]));
        }
        // Manual assignment to the fenced broker alone is refused.
        let err = c
            .run(&Command::CreateTopic {
                name: "manual".into(),
                partitions: -1,
                replication_factor: -1,
                configs: BTreeMap::new(),
                assignments: vec![(0, vec![2])],
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "All brokers specified in the manual partition assignment for partition 0 are fenced or in controlled shutdown.");
        // It comes back: unfenced on a caught-up heartbeat, and leads again.
        let reply = c.heartbeat(2, false, false).unwrap();
        assert!(!reply.is_fenced);
        let p = c.partition("on2");
        assert_eq!((p.leader, p.leader_epoch), (2, 2));
        assert_eq!(
            (p.isr.clone(), p.elr.clone(), p.last_known_elr.clone()),
            (vec![2], vec![], vec![])
        );
    }

    // Proves controlled shutdown moves leaderships away, then grants the shutdown; a fenced
    // broker asking to shut down is granted at once.
    #[test]
    fn controlled_shutdown_then_shutdown_now() {
        let mut c = Cluster::new();
        c.register(1, 1, false).unwrap();
        c.heartbeat(1, false, false).unwrap();
        create_on(&mut c, "t", 1);
        let reply = c.heartbeat(1, false, true).unwrap();
        assert!(reply.in_controlled_shutdown && !reply.is_fenced && !reply.should_shut_down);
        assert_eq!(c.partition("t").leader, -1);
        assert!(!has_leaderships(&c.image, 1));
        let reply = c.heartbeat(1, false, true).unwrap();
        assert!(reply.should_shut_down && reply.is_fenced && !reply.in_controlled_shutdown);
        // A restart with a new incarnation (its session gone) registers fenced at a new epoch.
        let old = c.image.brokers[&1].broker_epoch;
        let new = c.register(1, 2, false).unwrap();
        assert!(new > old);
        let reply = c.heartbeat(1, false, true).unwrap();
        assert!(reply.should_shut_down && reply.is_fenced);
        // want_fence on an unfenced broker fences it without shutting down.
        c.register(3, 3, false).unwrap();
        c.heartbeat(3, false, false).unwrap();
        let reply = c.heartbeat(3, true, false).unwrap();
        assert!(reply.is_fenced && !reply.should_shut_down);
    }

    // Proves an unclean restart (new incarnation, old one still leading) moves the old
    // incarnation's leaderships away before registering the new one.
    #[test]
    fn new_incarnation_retires_the_old_ones_leaderships() {
        let mut c = Cluster::new();
        c.register(1, 1, false).unwrap();
        c.heartbeat(1, false, false).unwrap();
        create_on(&mut c, "t", 1);
        let records = c
            .run(&Command::BrokerRegistration(registration(
                &c.image.cluster_id.clone(),
                1,
                2,
                false,
            )))
            .unwrap();
        assert!(matches!(
            records.last(),
            Some(MetadataRecord::BrokerRegistration { .. })
        ));
        // The epoch is the batch's offset (its first record's): above every earlier one, and
        // within the batch that carried it.
        let batch_start = c.image.offset + 1 - records.len() as i64;
        assert_eq!(c.image.brokers[&1].broker_epoch, batch_start);
        assert_eq!(c.partition("t").leader, -1);
        c.heartbeat(1, false, false).unwrap();
        assert_eq!(c.partition("t").leader, 1);
    }

    // Proves unregistering takes the broker out of the image and its partitions leaderless.
    #[test]
    fn unregister_removes_the_broker() {
        let mut c = Cluster::new();
        c.register(1, 1, false).unwrap();
        c.heartbeat(1, false, false).unwrap();
        create_on(&mut c, "t", 1);
        c.run(&Command::UnregisterBroker { node_id: 1 }).unwrap();
        assert!(!c.image.brokers.contains_key(&1));
        assert_eq!(c.partition("t").leader, -1);
    }

    // Proves RF above 1 is refused with the not-built message once Kafka's own checks pass.
    #[test]
    fn replication_factor_above_one_is_refused() {
        let mut c = Cluster::new();
        for node in 1..=3 {
            c.register(node, u128::try_from(node).unwrap(), false)
                .unwrap();
            c.heartbeat(node, false, false).unwrap();
        }
        let create = |rf: i16, assignments: Vec<(i32, Vec<i32>)>| Command::CreateTopic {
            name: "r".into(),
            partitions: if assignments.is_empty() { 1 } else { -1 },
            replication_factor: if assignments.is_empty() { rf } else { -1 },
            configs: BTreeMap::new(),
            assignments,
        };
        let err = c.run(&create(2, Vec::new())).unwrap_err();
        assert!(matches!(err, ClusterError::InvalidReplicationFactor(_)));
        assert!(
            err.to_string().contains("replication is not built yet"),
            "{err}"
        );
        let err = c.run(&create(4, Vec::new())).unwrap_err();
        assert!(
            err.to_string().contains("only 3 broker(s) are registered"),
            "{err}"
        );
        let err = c.run(&create(-1, vec![(0, vec![1, 2])])).unwrap_err();
        assert!(
            err.to_string().contains("replication is not built yet"),
            "{err}"
        );
    }
}
