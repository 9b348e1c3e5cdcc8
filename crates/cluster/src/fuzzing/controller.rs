//! The controller engine driven by a sequence of commands read from the fuzzer's bytes. Each
//! command is checked against Kafka's rules for whether it must be refused and what it must
//! change; its records are then applied as the broker's metadata driver applies them, and the
//! image's invariants are checked after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use runnel_protocol::fuzzing::{Choices, FuzzBytes};
use uuid::Uuid;

use crate::controller::{
    validate_topic_name, Command, ConfigOp, ConfigResource, ControllerEngine, TopicDefaults,
    PARTITIONS_PER_TOPIC_MAX, PRODUCER_ID_BLOCK_SIZE, TOPIC_NAME_BYTES_MAX,
};
use crate::metadata::{
    decode_entries, encode_entries, LogEntry, MetadataDelta, MetadataImage, MetadataRecord,
};
use crate::topic_config::{self, topic_configs, ConfigType};

/// Commands one input may submit: enough for topics to be created, collide, be reconfigured
/// and deleted, and brokers to join in between.
const STEPS_MAX: usize = 64;

/// Node ids of the brokers a run may register.
const NODE_IDS: [i32; 4] = [0, 1, 2, 3];

/// Bytes short topic names are made of: few enough that names repeat and collide on '.'
/// versus '_'.
const NAME_ALPHABET: &[u8] = b"ab._-";

/// Names Kafka refuses for what they hold rather than their length.
const INVALID_NAMES: [&str; 7] = ["", ".", "..", "a b", "a/b", "\u{e4}", "a\u{0}"];

/// Config names that are not topic configs (a broker's synonym, a wrong case, nothing).
const UNKNOWN_CONFIG_NAMES: [&str; 4] = ["no.such.config", "", "log.retention.ms", "Retention.ms"];

/// Config values that are wrong for most configs, and right for a few.
const ODD_CONFIG_VALUES: [&str; 15] = [
    "",
    "abc",
    " 5",
    "-1",
    "-2",
    "2147483648",
    "99999999999",
    "9223372036854775808",
    "1.5",
    "NaN",
    "inf",
    "yes",
    "TRUE",
    "compact, delete",
    "shred",
];

/// Fuzz entry for the controller engine.
///
/// Invariants checked after every command:
/// - the engine refuses exactly what Kafka's rules refuse (and refusing writes nothing), and an
///   accepted command does what it says: the topic it creates, deletes or reconfigures, the
///   broker it registers, the producer-id block it reserves, and nothing else;
/// - every registration a command writes places replicas on brokers registered at that time;
/// - the image is consistent: `topics` and `topic_names_by_id` mirror each other, every name is
///   valid and none collides with another on '.' versus '_', partition counts are within
///   1..=`PARTITIONS_PER_TOPIC_MAX`, every partition is registered (except topics of an older
///   log until `RegisterMissingPartitions`), every registration is below the topic's partition
///   count with distinct replicas and a leader in an ISR that is a subset of them, and every
///   stored config validates;
/// - `next_producer_id` never decreases;
/// - the `MetadataDelta` names exactly the topics created, deleted and reconfigured, the
///   partitions registered and the brokers registered, as the images before and after tell.
///
/// And at the end: the image's snapshot records rebuild the same state, and so does every
/// committed record, after a round trip through the log's encoding, replayed from nothing.
///
/// The engine itself must never panic: whatever a command holds, it answers records or an error.
pub fn controller(data: &[u8]) {
    let mut input = FuzzBytes::new(data);
    let mut run = Run::new(TopicDefaults {
        partitions: 1 + input.below(3) as i32,
        replication_factor: 1 + input.below(3) as i16,
    });
    // Most runs start as a broker does, with the cluster's id and brokers registered; the
    // others begin with no broker to place a replica on.
    let brokers_at_start = input.below(NODE_IDS.len() as u64 + 1) as usize;
    if brokers_at_start > 0 {
        run.step(&Command::InitCluster, false);
    }
    for node_id in &NODE_IDS[..brokers_at_start] {
        let register = Command::RegisterBroker {
            node_id: *node_id,
            host: "localhost".to_owned(),
            port: 9092,
            rack: None,
        };
        run.step(&register, false);
    }
    for _ in 0..STEPS_MAX {
        if input.is_empty() {
            break;
        }
        let (command, older_log) = command(&mut input, &run.image);
        run.step(&command, older_log);
    }
    check_rebuilds(&run.image, &run.committed);
}

/// The engine and what the broker's metadata driver keeps around it.
struct Run {
    defaults: TopicDefaults,
    engine: ControllerEngine,
    /// The published image: every committed record applied.
    image: MetadataImage,
    /// Every committed record, in order: the metadata log.
    committed: Vec<MetadataRecord>,
    /// Topics created as a log written before registrations existed holds them: no partition
    /// is registered until `RegisterMissingPartitions`.
    unregistered: BTreeSet<Uuid>,
}

impl Run {
    fn new(defaults: TopicDefaults) -> Run {
        // Above 1: Kafka reserves the zero id and 1 (the metadata topic's).
        let mut last_uuid = 0x100u128;
        let engine = ControllerEngine::new(defaults.clone()).with_uuid_source(move || {
            last_uuid += 1;
            Uuid::from_u128(last_uuid)
        });
        Run {
            defaults,
            engine,
            image: MetadataImage::empty(),
            committed: Vec::new(),
            unregistered: BTreeSet::new(),
        }
    }

    /// Submits `command` as the broker's driver does and checks everything that must hold
    /// after it. `older_log` keeps only the topic record of a `CreateTopic`.
    fn step(&mut self, command: &Command, older_log: bool) {
        let image = &self.image;
        let refusal = refusal(&self.defaults, image, command);
        let mut records = match (self.engine.handle(image, command), refusal) {
            (Ok(_), Some(why)) => panic!("accepted {command:?}, which Kafka refuses: {why}"),
            (Err(e), None) => panic!("refused {command:?} ({e}), which Kafka accepts"),
            (Err(_), Some(_)) => return,
            (Ok(records), None) => records,
        };
        check_records(image, command, &records);
        if older_log {
            records.retain(|r| matches!(r, MetadataRecord::Topic { .. }));
        }
        if records.is_empty() {
            // As the broker's driver: nothing to commit, nothing to publish.
            check_effect(&self.defaults, image, image, command, &records);
            return;
        }
        // As the broker's driver: apply the committed records to a copy of the published image,
        // noting what changed for the publishers.
        let mut next = image.clone();
        let mut delta = MetadataDelta::default();
        for record in &records {
            next.replay(record, &mut delta);
        }
        next.offset = image.offset + records.len() as i64;
        check_effect(&self.defaults, image, &next, command, &records);
        check_delta(image, &next, &delta, command);
        match command {
            Command::CreateTopic { name, .. } if older_log => {
                self.unregistered.insert(next.topics[name].topic_id);
            }
            Command::RegisterMissingPartitions { .. } => self.unregistered.clear(),
            _ => {}
        }
        check_image(image, &next, &self.unregistered, command);
        self.committed.extend(records);
        self.image = next;
    }
}

/// The next command: one the broker could submit, with names, counts and configs drawn so they
/// often collide and sit on Kafka's limits. The flag says to keep only the topic record of a
/// `CreateTopic` (a log written before registrations existed).
fn command(input: &mut impl Choices, image: &MetadataImage) -> (Command, bool) {
    let command = match input.below(16) {
        0 => Command::InitCluster,
        1 => Command::RegisterBroker {
            node_id: NODE_IDS[input.below(NODE_IDS.len() as u64) as usize],
            host: ["localhost", "h", ""][input.below(3) as usize].to_owned(),
            port: [9092, 0, u16::MAX][input.below(3) as usize],
            rack: (input.below(2) == 0).then(|| "r".to_owned()),
        },
        // Registered brokers mostly (the broker registers itself before it asks this), and
        // sometimes one that is not, which the engine must refuse.
        2 => Command::RegisterMissingPartitions {
            node_id: if input.below(4) == 0 {
                NODE_IDS[input.below(NODE_IDS.len() as u64) as usize]
            } else {
                image
                    .brokers
                    .keys()
                    .nth(input.below(image.brokers.len() as u64) as usize)
                    .copied()
                    .unwrap_or(NODE_IDS[0])
            },
        },
        3..=9 => Command::CreateTopic {
            name: topic_name(input, image),
            partitions: partition_count(input),
            replication_factor: replication_factor(input),
            configs: (0..input.below(4))
                .map(|_| {
                    let name = config_name(input);
                    let value = config_value(input, &name);
                    (name, value)
                })
                .collect(),
            assignments: Vec::new(),
        },
        10 if input.below(2) == 0 => Command::DeleteTopic {
            name: target_name(input, image),
        },
        10 => {
            let name = target_name(input, image);
            let current = image.topic(&name).map_or(1, |t| t.partitions as i32);
            let count = match input.below(8) {
                0 => current,
                1 => current - 1,
                2 => partition_count(input),
                _ => current + 1 + input.below(3) as i32,
            };
            let assignments = (input.below(2) == 0).then(|| {
                let wanted = count.saturating_sub(current).clamp(0, 4) as u64;
                (0..wanted + u64::from(input.below(8) == 0))
                    .map(|_| {
                        (0..input.below(4))
                            .map(|_| NODE_IDS[input.below(NODE_IDS.len() as u64) as usize])
                            .collect()
                    })
                    .collect()
            });
            Command::CreatePartitions {
                name,
                count,
                assignments,
            }
        }
        11 | 12 if input.below(2) == 0 => alter_configs_command(input, image),
        11..=14 => {
            let name = target_name(input, image);
            let mut changes: Vec<(String, Option<String>)> = Vec::new();
            for _ in 0..input.below(4) {
                let key = config_name(input);
                let value = (input.below(4) != 0).then(|| config_value(input, &key));
                // Keys repeat now and then: the engine must refuse that, as Kafka does.
                changes.push((key, value));
            }
            Command::AlterTopicConfigs { name, changes }
        }
        _ => Command::ReserveProducerIds {
            handed_out: handed_out(input, image),
        },
    };
    let older_log = matches!(command, Command::CreateTopic { .. }) && input.below(8) == 0;
    (command, older_log)
}

/// A topic name: mostly short ones from a small alphabet, else an existing topic's name (or it
/// with '.' and '_' swapped), an invalid one, or one at or just over the length limit.
fn topic_name(input: &mut impl Choices, image: &MetadataImage) -> String {
    match input.below(16) {
        0..=6 => (0..=input.below(3))
            .map(|_| char::from(NAME_ALPHABET[input.below(NAME_ALPHABET.len() as u64) as usize]))
            .collect(),
        7 | 8 => existing_name(input, image),
        9 => existing_name(input, image)
            .chars()
            .map(|c| match c {
                '.' => '_',
                '_' => '.',
                c => c,
            })
            .collect(),
        10 => INVALID_NAMES[input.below(INVALID_NAMES.len() as u64) as usize].to_owned(),
        11 | 12 => {
            // 249 or 250 characters, ending in a byte that may collide.
            let len = TOPIC_NAME_BYTES_MAX + input.below(2) as usize;
            let last = char::from(b"a._"[input.below(3) as usize]);
            let mut name = "a".repeat(len - 1);
            name.push(last);
            name
        }
        _ => ["a.b", "a_b", "__consumer_offsets"][input.below(3) as usize].to_owned(),
    }
}

/// The name of the topic a command acts on: mostly an existing one.
fn target_name(input: &mut impl Choices, image: &MetadataImage) -> String {
    if input.below(4) == 0 {
        topic_name(input, image)
    } else {
        existing_name(input, image)
    }
}

/// The name of one of the image's topics ("a" when it has none).
fn existing_name(input: &mut impl Choices, image: &MetadataImage) -> String {
    let index = input.below(image.topics.len() as u64) as usize;
    image
        .topics
        .keys()
        .nth(index)
        .map_or_else(|| "a".to_owned(), Clone::clone)
}

/// A partition count: -1 (the default), small counts, and counts at and past every limit. The
/// largest allowed count is rare (1 in 4096), since creating it writes 10,000 registrations; a
/// corpus seed creates it.
fn partition_count(input: &mut impl Choices) -> i32 {
    match input.below(16) {
        0 | 1 => -1,
        2 => 0,
        3..=10 => 1 + input.below(8) as i32,
        11 => PARTITIONS_PER_TOPIC_MAX + 1,
        12 => i32::MAX,
        13 => i32::MIN,
        14 => -2,
        _ if input.below(256) == 0 => PARTITIONS_PER_TOPIC_MAX,
        _ => 1,
    }
}

/// A replication factor: -1 (the default), 0 to 4 (more than the brokers a run registers), and
/// the extremes.
fn replication_factor(input: &mut impl Choices) -> i16 {
    match input.below(16) {
        0..=2 => -1,
        3 => 0,
        4..=7 => 1,
        8..=10 => 2,
        11 | 12 => 3,
        13 => 4,
        14 => i16::MAX,
        _ => i16::MIN,
    }
}

/// BROKER resource names: the cluster default, node ids, and names Kafka refuses.
const BROKER_RESOURCES: [&str; 6] = ["", "1", "0", "-1", "x", "99999999999"];

/// Broker config names: dynamic cluster-wide and per-broker ones, read-only ones, a list, the
/// ELR-guarded min.insync.replicas, a listener-prefix-only SSL key, a throttle and an unknown.
const BROKER_CONFIG_NAMES: [&str; 10] = [
    "log.retention.ms",
    "log.cleaner.threads",
    "log.dirs",
    "min.insync.replicas",
    "listeners",
    "log.cleanup.policy",
    "metric.reporters",
    "custom.key",
    "ssl.keystore.location",
    "leader.replication.throttled.rate",
];

/// Values for broker configs: right for some, wrong for others.
const BROKER_CONFIG_VALUES: [&str; 9] = [
    "1000",
    "2",
    "abc",
    "",
    "compact",
    "delete,compact",
    "-1",
    "PLAINTEXT://:9",
    "1,1",
];

/// AlterConfigs / IncrementalAlterConfigs on a topic (mostly) or a BROKER resource.
fn alter_configs_command(input: &mut impl Choices, image: &MetadataImage) -> Command {
    let broker = input.below(4) == 0;
    let resource = if broker {
        ConfigResource::Broker(
            BROKER_RESOURCES[input.below(BROKER_RESOURCES.len() as u64) as usize].to_owned(),
        )
    } else {
        ConfigResource::Topic(target_name(input, image))
    };
    let mut ops = Vec::new();
    for _ in 0..input.below(4) {
        let (key, value) = if broker {
            (
                BROKER_CONFIG_NAMES[input.below(BROKER_CONFIG_NAMES.len() as u64) as usize]
                    .to_owned(),
                BROKER_CONFIG_VALUES[input.below(BROKER_CONFIG_VALUES.len() as u64) as usize]
                    .to_owned(),
            )
        } else {
            let key = config_name(input);
            let value = config_value(input, &key);
            (key, value)
        };
        let op = match input.below(6) {
            0 => ConfigOp::Delete,
            1 => ConfigOp::Append(value),
            2 => ConfigOp::Subtract(value),
            _ => ConfigOp::Set(value),
        };
        // Keys repeat now and then: refused, as Kafka does.
        ops.push((key, op));
    }
    Command::AlterConfigs {
        resource,
        ops,
        replace: input.below(4) == 0,
    }
}

/// The configs a resource must hold after AlterConfigs, or why Kafka refuses it. From Kafka's
/// rules (`ConfigurationControlManager`, `ControllerConfigurationValidator`,
/// `DynamicBrokerConfig.validateConfigs`), with value checks from the config definitions.
fn altered_configs(
    image: &MetadataImage,
    resource: &ConfigResource,
    ops: &[(String, ConfigOp)],
    replace: bool,
) -> Result<BTreeMap<String, String>, String> {
    let keys: BTreeSet<&String> = ops.iter().map(|(k, _)| k).collect();
    if keys.len() != ops.len() {
        return Err("a config named twice".into());
    }
    let current = match resource {
        ConfigResource::Topic(name) => {
            if name.is_empty() {
                return Err("default topic resource".into());
            }
            validate_topic_name(name).map_err(|e| e.to_string())?;
            image
                .topics
                .get(name)
                .map(|t| t.configs.clone())
                .unwrap_or_default()
        }
        ConfigResource::Broker(name) => {
            if !name.is_empty() && name.parse::<i32>().map_or(true, |id| id < 0) {
                return Err(format!("broker name {name:?}"));
            }
            image.broker_configs.get(name).cloned().unwrap_or_default()
        }
    };
    let mut next = current.clone();
    if replace {
        next.retain(|k, _| keys.contains(k));
    }
    for (key, op) in ops {
        match op {
            ConfigOp::Set(v) => {
                next.insert(key.clone(), v.clone());
            }
            ConfigOp::Delete => {
                next.remove(key);
            }
            ConfigOp::Append(v) | ConfigOp::Subtract(v) => {
                let (list, default) = match resource {
                    ConfigResource::Topic(_) => topic_config::lookup(key)
                        .filter(|d| d.config_type == ConfigType::List)
                        .map(|d| d.default.to_owned())
                        .map_or((false, String::new()), |d| (true, d)),
                    ConfigResource::Broker(_) => {
                        let def = crate::kafka_configs::kafka_configs().broker(key);
                        let quota = crate::kafka_configs::kafka_configs().broker_quota(key);
                        if def.is_none() && quota.is_none() {
                            return Err(format!("unknown config {key}"));
                        }
                        match def.filter(|d| d.def.config_type == ConfigType::List) {
                            Some(d) => (true, d.def.default.clone().unwrap_or_default()),
                            None => return Err(format!("{key} is no list")),
                        }
                    }
                };
                if !list {
                    return Err(format!("{key} is no list"));
                }
                let mut parts: Vec<String> = next
                    .get(key)
                    .cloned()
                    .unwrap_or(default)
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                for item in v.split(',') {
                    if matches!(op, ConfigOp::Append(_)) {
                        if !parts.iter().any(|p| p == item) {
                            parts.push(item.to_owned());
                        }
                    } else if let Some(at) = parts.iter().position(|p| p == item) {
                        parts.remove(at);
                    }
                }
                next.insert(key.clone(), parts.join(","));
            }
        }
    }
    match resource {
        ConfigResource::Topic(name) => {
            for (key, value) in &next {
                topic_config::validate(key, value).map_err(|e| e.to_string())?;
            }
            topic_config::validate_combination(&next).map_err(|e| e.to_string())?;
            if !image.topics.contains_key(name) {
                return Err("no such topic".into());
            }
        }
        ConfigResource::Broker(name) => {
            if !name.is_empty() && keys.iter().any(|k| *k == "min.insync.replicas") {
                return Err("broker-level min.insync.replicas with ELR".into());
            }
            if name.is_empty()
                && current.contains_key("min.insync.replicas")
                && !next.contains_key("min.insync.replicas")
            {
                return Err("cluster-level min.insync.replicas removed with ELR".into());
            }
            crate::broker_config::validate_dynamic(&next, !name.is_empty())
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(next)
}

/// A topic config name: mostly Kafka's, sometimes none of them.
fn config_name(input: &mut impl Choices) -> String {
    if input.below(8) == 0 {
        UNKNOWN_CONFIG_NAMES[input.below(UNKNOWN_CONFIG_NAMES.len() as u64) as usize].to_owned()
    } else {
        topic_configs()[input.below(topic_configs().len() as u64) as usize]
            .name
            .to_owned()
    }
}

/// A value for config `name`: its default, its lower bound and one below it, an allowed value
/// of its type, or one of a few odd values.
fn config_value(input: &mut impl Choices, name: &str) -> String {
    let Some(def) = topic_config::lookup(name) else {
        return "1".to_owned();
    };
    match input.below(6) {
        0 => def.default.to_owned(),
        1 => def
            .at_least
            .map_or_else(|| def.default.to_owned(), |min| min.to_string()),
        2 => def
            .at_least
            .map_or_else(|| "-1".to_owned(), |min| min.saturating_sub(1).to_string()),
        3 => {
            let allowed: &[&str] = match def.config_type {
                _ if !def.one_of.is_empty() => &def.one_of,
                ConfigType::Boolean => &["true", "FALSE", " true "],
                ConfigType::Double => &["0", "1", "0.25", "-0.0"],
                ConfigType::Int => &["2147483647", "-2147483648"],
                ConfigType::Long => &["9223372036854775807", "-9223372036854775808"],
                ConfigType::String
                | ConfigType::List
                | ConfigType::Class
                | ConfigType::Password => &["", "x", "1:2,3:4"],
                ConfigType::Short => &["32767", "-32768"],
            };
            allowed[input.below(allowed.len() as u64) as usize].to_owned()
        }
        _ => ODD_CONFIG_VALUES[input.below(ODD_CONFIG_VALUES.len() as u64) as usize].to_owned(),
    }
}

/// Ids handed out so far, as the broker's driver would say: behind, at and ahead of the image's
/// reservation, and near the largest this run reaches.
fn handed_out(input: &mut impl Choices, image: &MetadataImage) -> i64 {
    let reserved = image.next_producer_id;
    match input.below(8) {
        0 => -1,
        1 => 0,
        2 => reserved.saturating_sub(1),
        3 => reserved,
        4 => reserved.saturating_add(input.below(3 * PRODUCER_ID_BLOCK_SIZE as u64) as i64),
        5 => input.below(10) as i64 * PRODUCER_ID_BLOCK_SIZE,
        // The last block, and past it, where Kafka refuses ("Exhausted all producerIds").
        6 => i64::MAX - PRODUCER_ID_BLOCK_SIZE,
        _ => i64::MAX,
    }
}

/// Why Kafka refuses `command` on `image`, or `None` when it must be accepted. Written from
/// Kafka's rules, not from the engine's code.
fn refusal(defaults: &TopicDefaults, image: &MetadataImage, command: &Command) -> Option<String> {
    match command {
        // Not generated: `crate::features`' own tests check Kafka's rules for it.
        Command::UpdateFeatures { .. } => unreachable!("the fuzzer generates no feature updates"),
        // Broker lifecycle commands have their own state-machine tests (`broker_lifecycle`).
        Command::BrokerRegistration(_)
        | Command::BrokerHeartbeat(_)
        | Command::FenceStaleBroker { .. }
        | Command::UnregisterBroker { .. } => {
            unreachable!("the fuzzer generates no lifecycle commands")
        }
        // Reassignment has its own state-machine tests (`reassignment`).
        Command::AlterPartitionReassignment { .. }
        | Command::FenceReassigningPartition { .. }
        | Command::CompleteReassignment { .. } => {
            unreachable!("the fuzzer generates no reassignment commands")
        }
        Command::InitCluster | Command::RegisterBroker { .. } => None,
        Command::AlterConfigs {
            resource,
            ops,
            replace,
        } => altered_configs(image, resource, ops, *replace).err(),
        Command::RegisterMissingPartitions { node_id } => (!image.brokers.contains_key(node_id))
            .then(|| format!("broker {node_id} is not registered")),
        Command::ReserveProducerIds { handed_out } => {
            let first_free = image.next_producer_id.max(*handed_out);
            (first_free > i64::MAX - PRODUCER_ID_BLOCK_SIZE)
                .then(|| format!("no block of producer ids is left after {first_free}"))
        }
        Command::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            ..
        } => {
            if let Err(e) = validate_topic_name(name) {
                return Some(e.to_string());
            }
            if image.topics.contains_key(name) {
                return Some("the topic exists".into());
            }
            let normalized = name.replace('.', "_");
            if image
                .topics
                .keys()
                .any(|t| t.replace('.', "_") == normalized)
            {
                return Some("the name collides with a topic's on '.' versus '_'".into());
            }
            let partitions = if *partitions == -1 {
                defaults.partitions
            } else {
                *partitions
            };
            if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
                return Some(format!("{partitions} partitions"));
            }
            let replication_factor = if *replication_factor == -1 {
                defaults.replication_factor
            } else {
                *replication_factor
            };
            if replication_factor < 1 || replication_factor as usize > image.brokers.len() {
                return Some(format!(
                    "replication factor {replication_factor} with {} brokers",
                    image.brokers.len()
                ));
            }
            if replication_factor > 1 {
                // Runnel's one deliberate difference until partition data is replicated.
                return Some("runnel does not replicate partitions yet".into());
            }
            configs
                .iter()
                .find_map(|(key, value)| topic_config::validate(key, value).err())
                .or_else(|| topic_config::validate_combination(configs).err())
                .map(|e| e.to_string())
        }
        Command::DeleteTopic { name } => {
            (!image.topics.contains_key(name)).then(|| "no such topic".into())
        }
        Command::CreatePartitions {
            name,
            count,
            assignments,
        } => {
            let Some(topic) = image.topics.get(name) else {
                return Some("no such topic".into());
            };
            if i64::from(*count) <= i64::from(topic.partitions) {
                return Some(format!("{count} is not more than {}", topic.partitions));
            }
            let additional = (i64::from(*count) - i64::from(topic.partitions)) as usize;
            if assignments.as_ref().is_some_and(|a| a.len() != additional) {
                return Some("not one assignment per new partition".into());
            }
            if *count > PARTITIONS_PER_TOPIC_MAX {
                return Some(format!("{count} partitions"));
            }
            if name == "__consumer_offsets" {
                return Some(
                    "runnel maps groups to the offsets topic by its partition count".into(),
                );
            }
            let Some(first) = topic.registration(0) else {
                return Some("the topic's partitions are not registered".into());
            };
            let replicas = first.replicas.len();
            match assignments {
                None => (replicas > image.brokers.len()).then(|| {
                    format!(
                        "replication factor {replicas} with {} brokers",
                        image.brokers.len()
                    )
                }),
                Some(assignments) => assignments.iter().find_map(|a| {
                    let distinct: BTreeSet<&i32> = a.iter().collect();
                    if a.is_empty() || distinct.len() != a.len() {
                        Some(format!("assignment {a:?} is empty or repeats a broker"))
                    } else if a.iter().any(|n| !image.brokers.contains_key(n)) {
                        Some(format!("assignment {a:?} names an unregistered broker"))
                    } else {
                        (a.len() != replicas)
                            .then(|| format!("assignment {a:?} is not {replicas} replicas"))
                    }
                }),
            }
        }
        Command::AlterTopicConfigs { name, changes } => {
            if !image.topics.contains_key(name) {
                return Some("no such topic".into());
            }
            for (i, (key, _)) in changes.iter().enumerate() {
                if changes[..i].iter().any(|(earlier, _)| earlier == key) {
                    return Some(format!("config {key:?} named twice"));
                }
            }
            changes.iter().find_map(|(key, value)| match value {
                Some(value) => topic_config::validate(key, value)
                    .err()
                    .map(|e| e.to_string()),
                None => topic_config::lookup(key)
                    .is_none()
                    .then(|| format!("removing unknown config {key:?}")),
            })
        }
    }
}

/// The records of an accepted command: registrations place replicas on brokers registered when
/// the command was decided.
fn check_records(image: &MetadataImage, command: &Command, records: &[MetadataRecord]) {
    for record in records {
        if let MetadataRecord::Partition { replicas, .. } = record {
            if let Some(node) = replicas.iter().find(|n| !image.brokers.contains_key(n)) {
                panic!("{command:?} placed a replica on broker {node}, which is not registered");
            }
        }
    }
}

/// What an accepted command must have changed between `before` and `after` (topics created with
/// the defaults for -1), and that it left every other topic as it was.
fn check_effect(
    defaults: &TopicDefaults,
    before: &MetadataImage,
    after: &MetadataImage,
    command: &Command,
    records: &[MetadataRecord],
) {
    assert!(
        after.next_producer_id >= before.next_producer_id,
        "{command:?} moved next_producer_id back from {} to {}",
        before.next_producer_id,
        after.next_producer_id
    );
    let touched: BTreeSet<&String> = before
        .topics
        .iter()
        .filter(|(name, topic)| after.topics.get(*name) != Some(topic))
        .map(|(name, _)| name)
        .chain(
            after
                .topics
                .keys()
                .filter(|name| !before.topics.contains_key(*name)),
        )
        .collect();
    let may_touch = |name: &String| match command {
        Command::RegisterMissingPartitions { .. } => true,
        Command::CreateTopic { name: target, .. }
        | Command::DeleteTopic { name: target }
        | Command::CreatePartitions { name: target, .. }
        | Command::AlterTopicConfigs { name: target, .. }
        | Command::AlterConfigs {
            resource: ConfigResource::Topic(target),
            ..
        } => name == target,
        _ => false,
    };
    if let Some(name) = touched.iter().find(|name| !may_touch(name)) {
        panic!("{command:?} changed topic {name:?}");
    }
    match command {
        Command::UpdateFeatures { .. } => unreachable!("the fuzzer generates no feature updates"),
        Command::BrokerRegistration(_)
        | Command::BrokerHeartbeat(_)
        | Command::FenceStaleBroker { .. }
        | Command::UnregisterBroker { .. } => {
            unreachable!("the fuzzer generates no lifecycle commands")
        }
        // Reassignment has its own state-machine tests (`reassignment`).
        Command::AlterPartitionReassignment { .. }
        | Command::FenceReassigningPartition { .. }
        | Command::CompleteReassignment { .. } => {
            unreachable!("the fuzzer generates no reassignment commands")
        }
        Command::InitCluster => {
            assert!(
                !after.cluster_id.is_empty(),
                "the cluster has no id after {command:?}"
            );
            if !before.cluster_id.is_empty() {
                assert!(
                    records.is_empty() && after.cluster_id == before.cluster_id,
                    "InitCluster changed the cluster id {:?}",
                    before.cluster_id
                );
            }
        }
        Command::RegisterBroker {
            node_id,
            host,
            port,
            rack,
        } => {
            let broker = after
                .brokers
                .get(node_id)
                .unwrap_or_else(|| panic!("{command:?} left the broker unregistered"));
            assert!(
                broker.host == *host && broker.port == *port && broker.rack == *rack,
                "{command:?} registered {broker:?}"
            );
            if let Some(old) = before.brokers.get(node_id) {
                assert_ne!(
                    old.incarnation_id, broker.incarnation_id,
                    "{command:?} kept the previous incarnation"
                );
            }
        }
        Command::RegisterMissingPartitions { node_id } => {
            for (name, topic) in &after.topics {
                for partition in 0..topic.partitions as i32 {
                    let registration = topic.registration(partition).unwrap_or_else(|| {
                        panic!("{command:?} left {name}/{partition} unregistered")
                    });
                    match before.topics[name].registration(partition) {
                        Some(old) => assert_eq!(
                            old, registration,
                            "{command:?} changed the registration of {name}/{partition}"
                        ),
                        None => assert!(
                            registration.replicas == [*node_id]
                                && registration.isr == [*node_id]
                                && registration.leader == *node_id,
                            "{command:?} registered {name}/{partition} as {registration:?}"
                        ),
                    }
                }
            }
        }
        Command::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
            ..
        } => {
            let topic = after
                .topics
                .get(name)
                .unwrap_or_else(|| panic!("{command:?} created no topic"));
            assert!(
                !before.topic_names_by_id.contains_key(&topic.topic_id),
                "{command:?} reused the topic id {}",
                topic.topic_id
            );
            let partitions = if *partitions == -1 {
                defaults.partitions
            } else {
                *partitions
            };
            assert!(
                i64::from(topic.partitions) == i64::from(partitions),
                "{command:?} created {} partitions, not {partitions}",
                topic.partitions
            );
            let replicas = if *replication_factor == -1 {
                defaults.replication_factor
            } else {
                *replication_factor
            };
            for (partition, r) in &topic.registrations {
                assert!(
                    r.replicas.len() == replicas as usize,
                    "{command:?} placed {name}/{partition} on {:?}, not {replicas} replicas",
                    r.replicas
                );
            }
            assert_eq!(topic.configs, *configs, "{command:?} stored other configs");
        }
        Command::CreatePartitions {
            name,
            count,
            assignments,
        } => {
            let (old, new) = (&before.topics[name], &after.topics[name]);
            assert!(
                new.topic_id == old.topic_id && new.configs == old.configs,
                "{command:?} changed the topic's id or configs"
            );
            assert_eq!(
                new.partitions as i32, *count,
                "{command:?} grew to {}",
                new.partitions
            );
            let replicas = old.registration(0).map(|r| r.replicas.len());
            for (partition, r) in &new.registrations {
                match old.registration(*partition) {
                    Some(was) => assert_eq!(was, r, "{command:?} changed {name}/{partition}"),
                    None => {
                        let i = (*partition as u32 - old.partitions) as usize;
                        if let Some(assigned) = assignments.as_ref().map(|a| &a[i]) {
                            assert_eq!(
                                &r.replicas, assigned,
                                "{command:?} misplaced {name}/{partition}"
                            );
                        }
                        assert_eq!(
                            Some(r.replicas.len()),
                            replicas,
                            "{command:?} placed {name}/{partition} as {r:?}"
                        );
                        assert!(
                            r.isr == r.replicas && r.leader == r.replicas[0] && r.leader_epoch == 0,
                            "{command:?} registered {name}/{partition} as {r:?}"
                        );
                    }
                }
            }
        }
        Command::DeleteTopic { name } => {
            let old = &before.topics[name];
            assert!(
                !after.topics.contains_key(name)
                    && !after.topic_names_by_id.contains_key(&old.topic_id),
                "{command:?} left the topic in the image"
            );
        }
        Command::AlterTopicConfigs { name, changes } => {
            let mut expected = before.topics[name].configs.clone();
            for (key, value) in changes {
                match value {
                    Some(value) => expected.insert(key.clone(), value.clone()),
                    None => expected.remove(key),
                };
            }
            assert_eq!(
                after.topics[name].configs, expected,
                "{command:?} did not apply its changes in order"
            );
        }
        Command::AlterConfigs {
            resource,
            ops,
            replace,
        } => {
            let expected = altered_configs(before, resource, ops, *replace)
                .unwrap_or_else(|e| panic!("{command:?} accepted yet refused by the model: {e}"));
            let stored = match resource {
                ConfigResource::Topic(name) => after.topics[name].configs.clone(),
                ConfigResource::Broker(name) => {
                    after.broker_configs.get(name).cloned().unwrap_or_default()
                }
            };
            assert_eq!(stored, expected, "{command:?} stored other configs");
            if let ConfigResource::Broker(_) = resource {
                assert!(
                    after.broker_configs.values().all(|c| !c.is_empty()),
                    "{command:?} left an empty broker config resource"
                );
            }
        }
        Command::ReserveProducerIds { handed_out } => {
            let [MetadataRecord::ProducerIds { next_producer_id }] = records else {
                panic!("{command:?} wrote {records:?}, not one ProducerIds record");
            };
            let first_free = before.next_producer_id.max(*handed_out);
            assert!(
                next_producer_id.checked_sub(PRODUCER_ID_BLOCK_SIZE) >= Some(first_free),
                "{command:?} reserved up to {next_producer_id}, not a block past {first_free}"
            );
            assert!(
                after.next_producer_id == *next_producer_id
                    && *next_producer_id > before.next_producer_id,
                "{command:?} moved next_producer_id from {} to {}, not forward to {next_producer_id}",
                before.next_producer_id,
                after.next_producer_id
            );
        }
    }
}

/// The delta names exactly what changed from `before` to `after`: topics created, deleted and
/// reconfigured, partitions registered, brokers registered.
fn check_delta(
    before: &MetadataImage,
    after: &MetadataImage,
    delta: &MetadataDelta,
    command: &Command,
) {
    let ids = |image: &MetadataImage| -> BTreeSet<Uuid> {
        image.topic_names_by_id.keys().copied().collect()
    };
    let (ids_before, ids_after) = (ids(before), ids(after));
    let named = |list: &[Uuid]| -> BTreeSet<Uuid> { list.iter().copied().collect() };
    let created: BTreeSet<Uuid> = ids_after.difference(&ids_before).copied().collect();
    let deleted: BTreeSet<Uuid> = ids_before.difference(&ids_after).copied().collect();
    let reconfigured: BTreeSet<Uuid> = ids_before
        .intersection(&ids_after)
        .filter(|id| {
            before.topic_by_id(id).map(|t| &t.configs) != after.topic_by_id(id).map(|t| &t.configs)
        })
        .copied()
        .collect();
    let registered: BTreeSet<(Uuid, i32)> = after
        .topics
        .values()
        .filter(|topic| {
            !before
                .topics
                .get(&topic.name)
                .is_some_and(|old| Arc::ptr_eq(old, topic))
        })
        .flat_map(|topic| {
            let old = before.topic_by_id(&topic.topic_id);
            topic
                .registrations
                .iter()
                .filter(move |(p, r)| old.and_then(|t| t.registration(**p)) != Some(*r))
                .map(|(p, _)| (topic.topic_id, *p))
        })
        .collect();
    let grown: BTreeSet<Uuid> = ids_before
        .intersection(&ids_after)
        .filter(|id| {
            before.topic_by_id(id).map(|t| t.partitions)
                != after.topic_by_id(id).map(|t| t.partitions)
        })
        .copied()
        .collect();
    assert_eq!(
        named(&delta.grown_topics),
        grown,
        "the delta of {command:?} names other grown topics"
    );
    let brokers: BTreeSet<i32> = after
        .brokers
        .iter()
        .filter(|(id, broker)| before.brokers.get(*id) != Some(*broker))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        named(&delta.created_topics),
        created,
        "the delta of {command:?} names other created topics"
    );
    assert_eq!(
        delta
            .deleted_topics
            .iter()
            .map(|t| t.topic_id)
            .collect::<BTreeSet<_>>(),
        deleted,
        "the delta of {command:?} names other deleted topics"
    );
    for topic in &delta.deleted_topics {
        assert!(
            before.topic_by_id(&topic.topic_id) == Some(topic),
            "the delta of {command:?} holds {} not as it was",
            topic.name
        );
    }
    assert_eq!(
        named(&delta.changed_configs),
        reconfigured,
        "the delta of {command:?} names other reconfigured topics"
    );
    assert_eq!(
        delta
            .changed_partitions
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        registered,
        "the delta of {command:?} names other registered partitions"
    );
    assert_eq!(
        delta
            .changed_brokers
            .iter()
            .copied()
            .collect::<BTreeSet<_>>(),
        brokers,
        "the delta of {command:?} names other registered brokers"
    );
}

/// The image's own invariants. Topics `before` holds unchanged (the same `Arc`) were checked in
/// an earlier step and are not walked again.
fn check_image(
    before: &MetadataImage,
    image: &MetadataImage,
    unregistered: &BTreeSet<Uuid>,
    command: &Command,
) {
    assert_eq!(
        image.topics.len(),
        image.topic_names_by_id.len(),
        "after {command:?}: topics and topic_names_by_id differ in size"
    );
    for (id, name) in &image.topic_names_by_id {
        assert!(
            image.topics.get(name).map(|t| t.topic_id) == Some(*id),
            "after {command:?}: topic id {id} names {name:?}, which has another id"
        );
    }
    let mut normalized: BTreeMap<String, &String> = BTreeMap::new();
    for (name, topic) in &image.topics {
        if let Some(other) = normalized.insert(name.replace('.', "_"), name) {
            panic!("after {command:?}: topics {other:?} and {name:?} collide");
        }
        if before
            .topics
            .get(name)
            .is_some_and(|old| Arc::ptr_eq(old, topic))
        {
            continue;
        }
        assert!(
            topic.name == *name && image.topic_names_by_id.get(&topic.topic_id) == Some(name),
            "after {command:?}: topic {name:?} is filed as {:?} with id {}",
            topic.name,
            topic.topic_id
        );
        if let Err(e) = validate_topic_name(name) {
            panic!("after {command:?}: {e}");
        }
        assert!(
            (1..=PARTITIONS_PER_TOPIC_MAX as u32).contains(&topic.partitions),
            "after {command:?}: topic {name:?} has {} partitions",
            topic.partitions
        );
        if !unregistered.contains(&topic.topic_id) {
            assert_eq!(
                topic.registrations.len(),
                topic.partitions as usize,
                "after {command:?}: topic {name:?} has partitions without registrations"
            );
        }
        for (partition, r) in &topic.registrations {
            let replicas: BTreeSet<i32> = r.replicas.iter().copied().collect();
            let broken = if u32::try_from(*partition).map_or(true, |p| p >= topic.partitions) {
                "is beyond the topic's partitions"
            } else if r.replicas.is_empty() || replicas.len() != r.replicas.len() {
                "has no replicas or repeats one"
            } else if !r.isr.iter().all(|n| replicas.contains(n)) {
                "has an ISR not within its replicas"
            } else if !replicas.contains(&r.leader) || !r.isr.contains(&r.leader) {
                "has a leader that is not an in-sync replica"
            } else {
                continue;
            };
            panic!("after {command:?}: {name}/{partition} {r:?} {broken}");
        }
        for (key, value) in &topic.configs {
            if let Err(e) = topic_config::validate(key, value) {
                panic!("after {command:?}: topic {name:?} stores {e}");
            }
        }
    }
}

/// The image as a snapshot, and the committed records through the log's encoding, each
/// replayed from nothing, give the same state.
fn check_rebuilds(image: &MetadataImage, committed: &[MetadataRecord]) {
    let mut from_snapshot = MetadataImage::empty();
    for record in image.to_records() {
        from_snapshot.apply(&record);
    }
    assert!(
        from_snapshot.same_state(image),
        "the snapshot rebuilds another image:\n{from_snapshot:?}\nnot\n{image:?}"
    );
    let entries: Vec<LogEntry> = committed
        .iter()
        .zip(0..)
        .map(|(record, offset)| LogEntry {
            offset,
            epoch: 0,
            record: record.clone(),
        })
        .collect();
    assert_eq!(
        entries.last().map_or(-1, |e| e.offset),
        image.offset,
        "the image does not stand at the last committed record"
    );
    let mut bytes = Vec::new();
    if let Err(e) = encode_entries(&entries, &mut bytes) {
        panic!("committed records do not encode: {e}");
    }
    let decoded = decode_entries(&bytes, 0)
        .unwrap_or_else(|e| panic!("committed records do not decode: {e}"));
    assert!(
        decoded.entries == entries && decoded.valid_bytes == bytes.len(),
        "the log's encoding does not round-trip the committed records"
    );
    let mut replayed = MetadataImage::empty();
    for entry in &decoded.entries {
        replayed.apply(&entry.record);
    }
    assert!(
        replayed.same_state(image),
        "replaying the committed records gives another image:\n{replayed:?}\nnot\n{image:?}"
    );
}
