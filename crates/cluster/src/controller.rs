//! The local controller: validates changes, appends them to the metadata log, applies them to
//! the image, and publishes the new image. One at a time (the broker holds it in a mutex): the
//! log is the order of changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{ClusterError, Result};
use crate::metadata::{MetadataImage, MetadataLog, MetadataRecord, TopicImage};
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

/// The brokers that can hold replicas. Single node today.
pub const BROKER_COUNT: i32 = 1;

pub struct Controller {
    log: MetadataLog,
    image: Arc<MetadataImage>,
    /// Next producer id to hand out; ids from here up to `image.next_producer_id` are reserved.
    next_producer_id: i64,
}

impl Controller {
    /// Opens the metadata log in `meta_dir`, replays it, and on first start records a new
    /// cluster id.
    pub fn open(meta_dir: &Path, records_max: u64) -> Result<Controller> {
        let (log, records) = MetadataLog::open(meta_dir, records_max)?;
        let mut image = MetadataImage::default();
        for record in &records {
            image.apply(record);
        }
        // Ids up to the last reservation may have been handed out by the previous process:
        // start after them.
        let next_producer_id = image.next_producer_id;
        let mut controller = Controller {
            log,
            image: Arc::new(image),
            next_producer_id,
        };
        if controller.image.cluster_id.is_empty() {
            let cluster_id = kafka_uuid_string(&random_kafka_uuid());
            controller.commit(vec![MetadataRecord::Cluster { cluster_id }])?;
        }
        Ok(controller)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    /// Validates a new topic as Kafka's controller does, then (unless `validate_only`) records it.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        defaults: &TopicDefaults,
        validate_only: bool,
    ) -> Result<Arc<TopicImage>> {
        validate_topic_name(name)?;
        if self.image.topic(name).is_some() {
            return Err(ClusterError::TopicAlreadyExists(name.to_owned()));
        }
        if let Some(existing) = self
            .image
            .topics
            .keys()
            .find(|existing| collides(existing, name))
        {
            return Err(ClusterError::InvalidTopic {
                name: name.to_owned(),
                reason: format!("Topic '{name}' collides with existing topic: {existing}"),
            });
        }
        let partitions = if partitions == -1 {
            defaults.partitions
        } else {
            partitions
        };
        if partitions <= 0 || partitions > PARTITIONS_PER_TOPIC_MAX {
            return Err(ClusterError::InvalidPartitions(partitions));
        }
        let replication_factor = if replication_factor == -1 {
            defaults.replication_factor
        } else {
            replication_factor
        };
        if replication_factor <= 0 || i32::from(replication_factor) > BROKER_COUNT {
            return Err(ClusterError::InvalidReplicationFactor {
                requested: i32::from(replication_factor),
                available: BROKER_COUNT,
            });
        }
        for (key, value) in &configs {
            topic_config::validate(key, value)?;
        }
        let topic = TopicImage {
            name: name.to_owned(),
            topic_id: random_kafka_uuid(),
            partitions: u32::try_from(partitions).unwrap_or(1),
            configs,
        };
        if validate_only {
            return Ok(Arc::new(topic));
        }
        self.commit(vec![MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions,
            configs: topic.configs.clone(),
        }])?;
        self.image
            .topic(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))
    }

    /// Deletes a topic by name. The broker removes its data afterwards.
    pub fn delete_topic(&mut self, name: &str) -> Result<Arc<TopicImage>> {
        let topic = self
            .image
            .topic(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownTopic(name.to_owned()))?;
        self.commit(vec![MetadataRecord::RemoveTopic {
            topic_id: topic.topic_id,
        }])?;
        Ok(topic)
    }

    /// Hands out a producer id that no earlier or later call, in this process or any restart,
    /// returns again.
    pub fn allocate_producer_id(&mut self) -> Result<i64> {
        if self.next_producer_id >= self.image.next_producer_id {
            let next =
                self.image.next_producer_id.max(self.next_producer_id) + PRODUCER_ID_BLOCK_SIZE;
            self.commit(vec![MetadataRecord::ProducerIds {
                next_producer_id: next,
            }])?;
        }
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        assert!(self.next_producer_id <= self.image.next_producer_id);
        Ok(id)
    }

    /// Appends records durably, then applies them to a new image and publishes it.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<()> {
        self.log.append(&records)?;
        let mut image = (*self.image).clone();
        for record in &records {
            image.apply(record);
        }
        self.image = Arc::new(image);
        Ok(())
    }
}

/// Kafka's `Topic.validate`: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| ClusterError::InvalidTopic {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("Topic name is illegal, it can't be empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("Topic name cannot be \".\" or \"..\""));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid(
            "Topic name is illegal, it can't be longer than 249 characters",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "Topic name contains a character other than ASCII alphanumerics, '.', '_' and '-'",
        ));
    }
    Ok(())
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

    fn defaults() -> TopicDefaults {
        TopicDefaults {
            partitions: 1,
            replication_factor: 1,
        }
    }

    // Topics, the cluster id and producer-id reservations survive a reopen, and producer ids
    // never repeat across restarts.
    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Controller::open(dir.path(), 1000).expect("open");
        let cluster_id = c.image().cluster_id.clone();
        let topic = c
            .create_topic("orders", 3, 1, BTreeMap::new(), &defaults(), false)
            .expect("create");
        let first = c.allocate_producer_id().expect("pid");
        let second = c.allocate_producer_id().expect("pid");
        assert_eq!(second, first + 1);
        drop(c);
        let mut c = Controller::open(dir.path(), 1000).expect("reopen");
        assert_eq!(c.image().cluster_id, cluster_id);
        assert_eq!(
            c.image().topic("orders").map(|t| t.topic_id),
            Some(topic.topic_id)
        );
        let third = c.allocate_producer_id().expect("pid");
        assert!(third > second, "{third} <= {second}");
    }

    // Kafka's validation answers for bad topics.
    #[test]
    fn create_topic_validation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Controller::open(dir.path(), 1000).expect("open");
        let d = defaults();
        let none = BTreeMap::new;
        assert!(matches!(
            c.create_topic("", 1, 1, none(), &d, false),
            Err(ClusterError::InvalidTopic { .. })
        ));
        assert!(matches!(
            c.create_topic("a b", 1, 1, none(), &d, false),
            Err(ClusterError::InvalidTopic { .. })
        ));
        assert!(matches!(
            c.create_topic(&"x".repeat(250), 1, 1, none(), &d, false),
            Err(ClusterError::InvalidTopic { .. })
        ));
        assert!(matches!(
            c.create_topic("t", 0, 1, none(), &d, false),
            Err(ClusterError::InvalidPartitions(0))
        ));
        assert!(matches!(
            c.create_topic("t", 1, 3, none(), &d, false),
            Err(ClusterError::InvalidReplicationFactor { .. })
        ));
        let bad: BTreeMap<_, _> = [("segment.bytes".to_string(), "x".to_string())].into();
        assert!(matches!(
            c.create_topic("t", 1, 1, bad, &d, false),
            Err(ClusterError::InvalidConfig { .. })
        ));
        assert!(c.create_topic("a.b", -1, -1, none(), &d, false).is_ok());
        assert!(matches!(
            c.create_topic("a.b", 1, 1, none(), &d, false),
            Err(ClusterError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            c.create_topic("a_b", 1, 1, none(), &d, false),
            Err(ClusterError::InvalidTopic { .. })
        ));
        // validate_only records nothing.
        assert!(c.create_topic("dry", 1, 1, none(), &d, true).is_ok());
        assert!(c.image().topic("dry").is_none());
    }
}
