//! The in-memory image of cluster state: what handlers read, rebuilt by replaying the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::record::BrokerListener;
use super::MetadataRecord;

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: u32,
    /// Only the configs set explicitly on the topic; defaults come from [`crate::topic_config`].
    pub configs: BTreeMap<String, String>,
    /// Each partition's registration, by index. A log written before registrations existed
    /// lacks them until the controller registers them at startup.
    pub registrations: BTreeMap<i32, PartitionImage>,
}

impl TopicImage {
    pub fn registration(&self, partition: i32) -> Option<&PartitionImage> {
        self.registrations.get(&partition)
    }
}

/// One partition's registration: replicas, in-sync replicas, leader and epochs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds (Kafka's `addingReplicas`); with `removing`,
    /// empty unless a reassignment is under way. `replicas` then holds the target replicas
    /// followed by the removing ones, as Kafka shows them (see `crate::reassignment`).
    pub adding: Vec<i32>,
    /// Replicas an ongoing reassignment removes (Kafka's `removingReplicas`).
    pub removing: Vec<i32>,
    /// Eligible leader replicas (KIP-966, on in a new Kafka 4.4 cluster): replicas that left
    /// an ISR which shrank below `min.insync.replicas`; one may be elected while the ISR is
    /// empty.
    pub elr: Vec<i32>,
    /// The last leader of a partition that became leaderless (Kafka's `lastKnownElr` as its
    /// balanced recovery uses it); empty while it has a leader.
    pub last_known_elr: Vec<i32>,
}

impl PartitionImage {
    /// Kafka's `isReassignmentInProgress`.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }
}

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerImage {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    /// The endpoint of its first listener (the only one a legacy `RegisterBroker` record
    /// carries): what clients are told when no listener of the request's name is registered.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Kafka's broker epoch: the offset of the record that registered this incarnation
    /// (-1 for a registration replayed from a legacy `RegisterBroker` record).
    pub broker_epoch: i64,
    /// Listeners by name, as registered (empty for a legacy registration).
    pub listeners: Vec<BrokerListener>,
    /// A fenced broker leads nothing and is not listed to clients.
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
    /// Its log directory ids, as registered.
    pub log_dirs: Vec<Uuid>,
}

impl BrokerImage {
    /// Registered and not fenced: Kafka's "alive" broker, listed in Metadata and eligible to lead.
    pub fn is_live(&self) -> bool {
        !self.fenced
    }

    /// The (host, port) clients that arrived on `listener` are sent to (Kafka answers with
    /// the endpoint of the request's listener name). `None` when the broker registered
    /// listeners but none of that name; a legacy registration answers its one endpoint.
    pub fn endpoint(&self, listener: &str) -> Option<(&str, u16)> {
        if self.listeners.is_empty() {
            return Some((&self.host, self.port));
        }
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| (l.host.as_str(), l.port))
    }
}

/// What a batch of records changed, for the publishers that act on it (open or close
/// partitions, apply configs). Ids, not copies: publishers read the new image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataDelta {
    /// Topics that did not exist before.
    pub created_topics: Vec<Uuid>,
    /// Topics removed, as they were (the new image no longer has them).
    pub deleted_topics: Vec<Arc<TopicImage>>,
    /// Topics whose configs changed.
    pub changed_configs: Vec<Uuid>,
    /// Partitions whose registration changed (new partitions included).
    pub changed_partitions: Vec<(Uuid, i32)>,
    /// Existing topics that gained partitions (one entry per new partition); their new
    /// partitions are in `changed_partitions`.
    pub grown_topics: Vec<Uuid>,
    /// Brokers that registered, changed their endpoint, were fenced or unfenced, entered
    /// controlled shutdown or unregistered.
    pub changed_brokers: Vec<i32>,
    /// A feature level changed.
    pub changed_features: bool,
    /// BROKER config resources whose dynamic configs changed (node ids, `""` for the
    /// cluster default).
    pub changed_broker_configs: Vec<String>,
}

impl MetadataDelta {
    pub fn is_empty(&self) -> bool {
        *self == MetadataDelta::default()
    }
}

/// An immutable view of cluster state. Handlers hold an `Arc` of one image for a whole request,
/// so a request never sees half of a change.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Topics by name. `Arc` so a new image after one change copies pointers, not configs.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerImage>,
    /// Producer ids below this are handed out or reserved.
    pub next_producer_id: i64,
    /// Feature levels set by `FeatureLevel` records (0 included); a feature without one is at
    /// its bootstrap level (`crate::features::level`).
    pub features: BTreeMap<String, i16>,
    /// Dynamic broker configs by resource: a node id, or `""` for the cluster-wide default.
    /// Resources with no config left are removed.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Offset of the last record applied (-1 for none): where a snapshot of this image stands.
    pub offset: i64,
}

impl MetadataImage {
    /// An image with no records applied.
    pub fn empty() -> MetadataImage {
        MetadataImage {
            offset: -1,
            ..MetadataImage::default()
        }
    }

    /// Applies one record, forgetting what changed (replay at startup).
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.replay(record, &mut MetadataDelta::default());
    }

    /// Applies one record and notes what it changed in `delta`. Records come from our own log,
    /// written only after validation, so a record that does not fit the image means our bug or
    /// a log from elsewhere: it is ignored with a warning rather than taking the broker down.
    pub fn replay(&mut self, record: &MetadataRecord, delta: &mut MetadataDelta) {
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id.clone_from(cluster_id),
            MetadataRecord::Topic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                if let Some(old) = self.topics.get(name).cloned() {
                    tracing::warn!(topic = %name, old_id = %old.topic_id, "metadata log re-creates a live topic; replacing it");
                    self.topic_names_by_id.remove(&old.topic_id);
                    delta.deleted_topics.push(old);
                }
                self.topic_names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: *partitions,
                        configs: configs.clone(),
                        registrations: BTreeMap::new(),
                    }),
                );
                delta.created_topics.push(*topic_id);
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names_by_id.remove(topic_id) {
                    if let Some(old) = self.topics.remove(&name) {
                        // Created in this same batch: no publisher opened it, none closes it.
                        let created_here = delta.created_topics.contains(topic_id);
                        delta.created_topics.retain(|id| id != topic_id);
                        delta.changed_configs.retain(|id| id != topic_id);
                        delta.changed_partitions.retain(|(id, _)| id != topic_id);
                        delta.grown_topics.retain(|id| id != topic_id);
                        if !created_here {
                            delta.deleted_topics.push(old);
                        }
                    }
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                name,
                value,
            } => {
                let Some(topic) = self.topic_mut(topic_id) else {
                    tracing::warn!(%topic_id, "config record for an unknown topic; ignored");
                    return;
                };
                match value {
                    Some(v) => topic.configs.insert(name.clone(), v.clone()),
                    None => topic.configs.remove(name),
                };
                if !delta.changed_configs.contains(topic_id) {
                    delta.changed_configs.push(*topic_id);
                }
            }
            MetadataRecord::BrokerConfig {
                resource,
                name,
                value,
            } => {
                let configs = self.broker_configs.entry(resource.clone()).or_default();
                match value {
                    Some(v) => configs.insert(name.clone(), v.clone()),
                    None => configs.remove(name),
                };
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                }
                if !delta.changed_broker_configs.contains(resource) {
                    delta.changed_broker_configs.push(resource.clone());
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
                elr,
                last_known_elr,
            } => {
                let Some(topic) = self.topic_mut(topic_id) else {
                    tracing::warn!(%topic_id, partition, "partition record for an unknown topic; ignored");
                    return;
                };
                match u32::try_from(*partition) {
                    Ok(p) if p < topic.partitions => {}
                    // The next index grows the topic (CreatePartitions), as a PartitionRecord
                    // for a new partition id does in Kafka.
                    Ok(p) if p == topic.partitions => {
                        topic.partitions += 1;
                        delta.grown_topics.push(*topic_id);
                    }
                    _ => {
                        tracing::warn!(%topic_id, partition, "partition record beyond the topic's next partition; ignored");
                        return;
                    }
                }
                topic.registrations.insert(
                    *partition,
                    PartitionImage {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        adding: adding.clone(),
                        removing: removing.clone(),
                        elr: elr.clone(),
                        last_known_elr: last_known_elr.clone(),
                    },
                );
                delta.changed_partitions.push((*topic_id, *partition));
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
                delta.changed_features = true;
            }
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        broker_epoch: -1,
                        listeners: Vec::new(),
                        fenced: false,
                        in_controlled_shutdown: false,
                        log_dirs: Vec::new(),
                    },
                );
                delta.changed_brokers.push(*node_id);
            }
            MetadataRecord::BrokerRegistration {
                node_id,
                incarnation_id,
                broker_epoch,
                listeners,
                rack,
                fenced,
                in_controlled_shutdown,
                log_dirs,
            } => {
                let (host, port) = listeners
                    .first()
                    .map_or((String::new(), 0), |l| (l.host.clone(), l.port));
                self.brokers.insert(
                    *node_id,
                    BrokerImage {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        host,
                        port,
                        rack: rack.clone(),
                        broker_epoch: *broker_epoch,
                        listeners: listeners.clone(),
                        fenced: *fenced,
                        in_controlled_shutdown: *in_controlled_shutdown,
                        log_dirs: log_dirs.clone(),
                    },
                );
                delta.changed_brokers.push(*node_id);
            }
            MetadataRecord::FenceBroker {
                node_id,
                broker_epoch,
            }
            | MetadataRecord::UnfenceBroker {
                node_id,
                broker_epoch,
            }
            | MetadataRecord::BrokerInControlledShutdown {
                node_id,
                broker_epoch,
            } => {
                let Some(broker) = self
                    .brokers
                    .get_mut(node_id)
                    .filter(|b| b.broker_epoch == *broker_epoch)
                else {
                    tracing::warn!(
                        node_id,
                        broker_epoch,
                        "registration change for an unknown broker epoch; ignored"
                    );
                    return;
                };
                match record {
                    MetadataRecord::FenceBroker { .. } => {
                        broker.fenced = true;
                        // Kafka's fencing ends a controlled shutdown (SHUTDOWN_NOW).
                        broker.in_controlled_shutdown = false;
                    }
                    MetadataRecord::UnfenceBroker { .. } => broker.fenced = false,
                    _ => broker.in_controlled_shutdown = true,
                }
                delta.changed_brokers.push(*node_id);
            }
            MetadataRecord::UnregisterBroker {
                node_id,
                broker_epoch,
            } => {
                if self
                    .brokers
                    .get(node_id)
                    .is_some_and(|b| b.broker_epoch == *broker_epoch)
                {
                    self.brokers.remove(node_id);
                    delta.changed_brokers.push(*node_id);
                } else {
                    tracing::warn!(
                        node_id,
                        broker_epoch,
                        "unregistration of an unknown broker epoch; ignored"
                    );
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                adding,
                removing,
                elr,
                last_known_elr,
            } => {
                let Some(registration) = self
                    .topic_mut(topic_id)
                    .and_then(|t| t.registrations.get_mut(partition))
                else {
                    tracing::warn!(%topic_id, partition, "partition change for an unknown partition; ignored");
                    return;
                };
                if let Some(leader) = leader {
                    registration.leader = *leader;
                    registration.leader_epoch += 1;
                }
                if let Some(isr) = isr {
                    registration.isr.clone_from(isr);
                }
                if let Some(replicas) = replicas {
                    registration.replicas.clone_from(replicas);
                }
                if let Some(adding) = adding {
                    registration.adding.clone_from(adding);
                }
                if let Some(removing) = removing {
                    registration.removing.clone_from(removing);
                }
                if let Some(elr) = elr {
                    registration.elr.clone_from(elr);
                }
                if let Some(last_known_elr) = last_known_elr {
                    registration.last_known_elr.clone_from(last_known_elr);
                }
                registration.partition_epoch += 1;
                delta.changed_partitions.push((*topic_id, *partition));
            }
        }
    }

    fn topic_mut(&mut self, topic_id: &Uuid) -> Option<&mut TopicImage> {
        let name = self.topic_names_by_id.get(topic_id)?;
        self.topics.get_mut(name).map(Arc::make_mut)
    }

    /// Records that rebuild this image from nothing: a snapshot's content. Replaying them into
    /// an empty image yields an equal image (producer-id reservations and all).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if !self.cluster_id.is_empty() {
            records.push(MetadataRecord::Cluster {
                cluster_id: self.cluster_id.clone(),
            });
        }
        for broker in self.brokers.values() {
            if broker.listeners.is_empty() && broker.broker_epoch == -1 && !broker.fenced {
                // A legacy registration stays one, so it replays to the same image.
                records.push(MetadataRecord::RegisterBroker {
                    node_id: broker.node_id,
                    incarnation_id: broker.incarnation_id,
                    host: broker.host.clone(),
                    port: broker.port,
                    rack: broker.rack.clone(),
                });
                continue;
            }
            records.push(MetadataRecord::BrokerRegistration {
                node_id: broker.node_id,
                incarnation_id: broker.incarnation_id,
                broker_epoch: broker.broker_epoch,
                listeners: broker.listeners.clone(),
                rack: broker.rack.clone(),
                fenced: broker.fenced,
                in_controlled_shutdown: broker.in_controlled_shutdown,
                log_dirs: broker.log_dirs.clone(),
            });
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord::Topic {
                name: topic.name.clone(),
                topic_id: topic.topic_id,
                partitions: topic.partitions,
                configs: topic.configs.clone(),
            });
            for (partition, p) in &topic.registrations {
                records.push(MetadataRecord::Partition {
                    topic_id: topic.topic_id,
                    partition: *partition,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    adding: p.adding.clone(),
                    removing: p.removing.clone(),
                    elr: p.elr.clone(),
                    last_known_elr: p.last_known_elr.clone(),
                });
            }
        }
        for (name, level) in &self.features {
            records.push(MetadataRecord::FeatureLevel {
                name: name.clone(),
                level: *level,
            });
        }
        for (resource, configs) in &self.broker_configs {
            for (name, value) in configs {
                records.push(MetadataRecord::BrokerConfig {
                    resource: resource.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        if self.next_producer_id > 0 {
            records.push(MetadataRecord::ProducerIds {
                next_producer_id: self.next_producer_id,
            });
        }
        records
    }

    /// Whether two images hold the same cluster state (the offset they stand at aside).
    pub fn same_state(&self, other: &MetadataImage) -> bool {
        self.cluster_id == other.cluster_id
            && self.topics == other.topics
            && self.topic_names_by_id == other.topic_names_by_id
            && self.brokers == other.brokers
            && self.next_producer_id == other.next_producer_id
            && self.features == other.features
            && self.broker_configs == other.broker_configs
    }

    /// Kafka's `getOfflineReplicas`: replicas on a broker that is not registered, is fenced,
    /// or has no listener of the request's name.
    pub fn offline_replicas(&self, replicas: &[i32], listener: &str) -> Vec<i32> {
        replicas
            .iter()
            .copied()
            .filter(|id| {
                self.brokers
                    .get(id)
                    .is_none_or(|b| b.fenced || b.endpoint(listener).is_none())
            })
            .collect()
    }

    /// Kafka's `getAliveEndpoint` for a partition leader: the leader is registered and has a
    /// listener of the request's name (else clients are told -1, LEADER_NOT_AVAILABLE).
    pub fn leader_reachable(&self, leader: i32, listener: &str) -> bool {
        self.brokers
            .get(&leader)
            .is_some_and(|b| b.endpoint(listener).is_some())
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names_by_id
            .get(id)
            .and_then(|name| self.topics.get(name))
    }
}

/// The group coordinator reads topics through this view of the image.
impl crate::group::TopicView for MetadataImage {
    fn topic_by_name(&self, name: &str) -> Option<(Uuid, u32)> {
        self.topic(name).map(|t| (t.topic_id, t.partitions))
    }

    fn topic_by_id(&self, id: &Uuid) -> Option<(String, u32)> {
        MetadataImage::topic_by_id(self, id).map(|t| (t.name.clone(), t.partitions))
    }

    fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: u128, partitions: u32) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
            partitions,
            configs: BTreeMap::new(),
        }
    }

    // Deleting a topic and re-creating it under the same name leaves only the new id resolvable.
    #[test]
    fn recreate_after_delete_retires_old_id() {
        let mut image = MetadataImage::default();
        image.apply(&topic("orders", 1, 3));
        image.apply(&MetadataRecord::RemoveTopic {
            topic_id: Uuid::from_u128(1),
        });
        image.apply(&topic("orders", 2, 1));
        assert!(image.topic_by_id(&Uuid::from_u128(1)).is_none());
        assert_eq!(image.topic("orders").map(|t| t.partitions), Some(1));
        assert_eq!(
            image
                .topic_by_id(&Uuid::from_u128(2))
                .map(|t| t.name.as_str()),
            Some("orders")
        );
    }

    // Producer id reservations only move forward, whatever order records are replayed in.
    #[test]
    fn producer_ids_never_go_back() {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::ProducerIds {
            next_producer_id: 2000,
        });
        image.apply(&MetadataRecord::ProducerIds {
            next_producer_id: 1000,
        });
        assert_eq!(image.next_producer_id, 2000);
    }

    // A config record sets and then removes a topic config.
    #[test]
    fn topic_config_set_and_remove() {
        let mut image = MetadataImage::default();
        image.apply(&topic("t", 7, 1));
        let set = MetadataRecord::TopicConfig {
            topic_id: Uuid::from_u128(7),
            name: "retention.ms".into(),
            value: Some("1000".into()),
        };
        image.apply(&set);
        assert_eq!(
            image
                .topic("t")
                .and_then(|t| t.configs.get("retention.ms"))
                .map(String::as_str),
            Some("1000")
        );
        image.apply(&MetadataRecord::TopicConfig {
            topic_id: Uuid::from_u128(7),
            name: "retention.ms".into(),
            value: None,
        });
        assert!(image.topic("t").is_some_and(|t| t.configs.is_empty()));
    }

    // Proves a snapshot (the image as records) rebuilds an equal image: topics with their
    // configs and partition registrations, brokers, producer-id reservations.
    #[test]
    fn snapshot_records_rebuild_the_image() {
        let mut image = MetadataImage::empty();
        image.apply(&MetadataRecord::Cluster {
            cluster_id: "c".into(),
        });
        image.apply(&MetadataRecord::RegisterBroker {
            node_id: 1,
            incarnation_id: Uuid::from_u128(9),
            host: "h".into(),
            port: 9092,
            rack: None,
        });
        image.apply(&topic("t", 7, 2));
        for partition in 0..2 {
            image.apply(&MetadataRecord::Partition {
                topic_id: Uuid::from_u128(7),
                partition,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: partition,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
                elr: Vec::new(),
                last_known_elr: Vec::new(),
            });
        }
        image.apply(&MetadataRecord::TopicConfig {
            topic_id: Uuid::from_u128(7),
            name: "retention.ms".into(),
            value: Some("5".into()),
        });
        image.apply(&MetadataRecord::ProducerIds {
            next_producer_id: 3000,
        });
        let mut rebuilt = MetadataImage::empty();
        for record in image.to_records() {
            rebuilt.apply(&record);
        }
        assert!(rebuilt.same_state(&image), "{rebuilt:?}\n{image:?}");
    }

    // Proves a delta names what a batch changed, and a topic created and deleted in the same
    // batch is neither opened nor closed by publishers.
    #[test]
    fn delta_names_created_deleted_and_reconfigured_topics() {
        let mut image = MetadataImage::empty();
        let mut delta = MetadataDelta::default();
        image.replay(&topic("a", 1, 1), &mut delta);
        image.replay(&topic("b", 2, 1), &mut delta);
        image.replay(
            &MetadataRecord::RemoveTopic {
                topic_id: Uuid::from_u128(2),
            },
            &mut delta,
        );
        assert_eq!(delta.created_topics, vec![Uuid::from_u128(1)]);
        assert!(delta.deleted_topics.is_empty());
        let mut delta = MetadataDelta::default();
        image.replay(
            &MetadataRecord::TopicConfig {
                topic_id: Uuid::from_u128(1),
                name: "max.message.bytes".into(),
                value: Some("10".into()),
            },
            &mut delta,
        );
        assert_eq!(delta.changed_configs, vec![Uuid::from_u128(1)]);
        assert!(delta.created_topics.is_empty() && delta.deleted_topics.is_empty());
    }

    // Proves a log written before broker registrations had epochs replays unchanged: the
    // records below are byte for byte what the previous release wrote, and the legacy broker
    // comes back live (never fenced) with its one endpoint, its partition led by it.
    #[test]
    fn legacy_log_replays_unchanged() {
        let lines = [
            r#"{"type":"Cluster","cluster_id":"AAAAAAAAAAAAAAAAAAAAAQ"}"#,
            r#"{"type":"FeatureLevel","name":"group.version","level":1}"#,
            r#"{"type":"RegisterBroker","node_id":1,"incarnation_id":"00000000-0000-0000-0000-000000000009","host":"localhost","port":9092,"rack":null}"#,
            r#"{"type":"Topic","name":"t","topic_id":"00000000-0000-0000-0000-000000000007","partitions":1,"configs":{}}"#,
            r#"{"type":"Partition","topic_id":"00000000-0000-0000-0000-000000000007","partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}"#,
            r#"{"type":"ProducerIds","next_producer_id":1000}"#,
        ];
        let mut image = MetadataImage::empty();
        for (offset, line) in lines.iter().enumerate() {
            let record: MetadataRecord = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_string(&record).unwrap(),
                *line,
                "old JSON unchanged"
            );
            image.apply(&record);
            image.offset = offset as i64;
        }
        let broker = &image.brokers[&1];
        assert!(broker.is_live() && !broker.in_controlled_shutdown);
        assert_eq!(broker.endpoint("ANY"), Some(("localhost", 9092)));
        assert_eq!(broker.broker_epoch, -1);
        assert_eq!(image.topic("t").unwrap().registration(0).unwrap().leader, 1);
        // A snapshot of it rebuilds the same image, still legacy.
        let mut rebuilt = MetadataImage::empty();
        for record in image.to_records() {
            rebuilt.apply(&record);
        }
        assert!(rebuilt.same_state(&image));
    }

    // Proves the new broker records round-trip through a snapshot and a partition change bumps
    // the leader epoch only when it names a leader.
    #[test]
    fn registration_changes_and_partition_changes() {
        let mut image = MetadataImage::empty();
        image.apply(&MetadataRecord::BrokerRegistration {
            node_id: 2,
            incarnation_id: Uuid::from_u128(3),
            broker_epoch: 0,
            listeners: vec![BrokerListener {
                name: "EXTERNAL".into(),
                host: "h".into(),
                port: 1,
                security_protocol: 0,
            }],
            rack: Some("r".into()),
            fenced: true,
            in_controlled_shutdown: false,
            log_dirs: vec![Uuid::from_u128(1 << 70)],
        });
        assert_eq!(image.brokers[&2].endpoint("EXTERNAL"), Some(("h", 1)));
        assert_eq!(image.brokers[&2].endpoint("OTHER"), None);
        // A change for another epoch is ignored.
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            broker_epoch: 5,
        });
        assert!(image.brokers[&2].fenced);
        image.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            broker_epoch: 0,
        });
        assert!(image.brokers[&2].is_live());
        image.apply(&topic("t", 7, 1));
        image.apply(&MetadataRecord::Partition {
            topic_id: Uuid::from_u128(7),
            partition: 0,
            replicas: vec![2],
            isr: vec![2],
            leader: 2,
            leader_epoch: 4,
            partition_epoch: 4,
            adding: vec![],
            removing: vec![],
            elr: Vec::new(),
            last_known_elr: Vec::new(),
        });
        image.apply(&MetadataRecord::PartitionChange {
            topic_id: Uuid::from_u128(7),
            partition: 0,
            leader: None,
            isr: Some(vec![2]),
            replicas: None,
            adding: None,
            removing: None,
            elr: None,
            last_known_elr: None,
        });
        let p = image.topic("t").unwrap().registration(0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 4, 5));
        image.apply(&MetadataRecord::PartitionChange {
            topic_id: Uuid::from_u128(7),
            partition: 0,
            leader: Some(-1),
            isr: None,
            replicas: None,
            adding: None,
            removing: None,
            elr: None,
            last_known_elr: None,
        });
        let p = image.topic("t").unwrap().registration(0).unwrap().clone();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (-1, 5, 6));
        image.apply(&MetadataRecord::BrokerInControlledShutdown {
            node_id: 2,
            broker_epoch: 0,
        });
        let mut rebuilt = MetadataImage::empty();
        for record in image.to_records() {
            rebuilt.apply(&record);
        }
        assert!(rebuilt.same_state(&image), "{rebuilt:?}\n{image:?}");
        image.apply(&MetadataRecord::UnregisterBroker {
            node_id: 2,
            broker_epoch: 0,
        });
        assert!(image.brokers.is_empty());
    }
}
