//! The in-memory image of cluster state: what handlers read, rebuilt by replaying the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::MetadataRecord;

/// One topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: u32,
    /// Only the configs set explicitly on the topic; defaults come from [`crate::topic_config`].
    pub configs: BTreeMap<String, String>,
}

/// An immutable view of cluster state. Handlers hold an `Arc` of one image for a whole request,
/// so a request never sees half of a change.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Topics by name. `Arc` so a new image after one change copies pointers, not configs.
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// Producer ids below this are handed out or reserved.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Applies one record. Records come from our own log, written only after validation, so a
    /// record that does not fit the image means our bug or a log from elsewhere: it is ignored
    /// with a warning rather than taking the broker down.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id.clone_from(cluster_id),
            MetadataRecord::Topic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                if let Some(old) = self.topics.get(name) {
                    tracing::warn!(topic = %name, old_id = %old.topic_id, "metadata log re-creates a live topic; replacing it");
                    self.topic_names_by_id.remove(&old.topic_id);
                }
                self.topic_names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: *partitions,
                        configs: configs.clone(),
                    }),
                );
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names_by_id.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::TopicConfig {
                topic_id,
                name,
                value,
            } => {
                let Some(topic_name) = self.topic_names_by_id.get(topic_id) else {
                    tracing::warn!(%topic_id, "config record for an unknown topic; ignored");
                    return;
                };
                if let Some(topic) = self.topics.get_mut(topic_name) {
                    let topic = Arc::make_mut(topic);
                    match value {
                        Some(v) => topic.configs.insert(name.clone(), v.clone()),
                        None => topic.configs.remove(name),
                    };
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
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
}
