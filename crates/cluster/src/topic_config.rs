//! Topic configs: Kafka 4.1's names, types and defaults, which of them runnel acts on, and how a
//! topic's effective config is resolved (topic override > broker `log.*` setting > default).

use std::collections::BTreeMap;

use crate::error::{ClusterError, Result};

/// Kafka's `ConfigType` as reported by DescribeConfigs v3+.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Kafka's `ConfigSource` as reported by DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    DynamicTopicConfig = 1,
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
}

/// One topic config as Kafka defines it.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub config_type: ConfigType,
    /// The broker config whose value is this topic config's default (Kafka's synonym).
    pub broker_synonym: Option<&'static str>,
    /// Whether runnel behaves differently when this config changes. Others are stored and
    /// reported, so tools work, and a warning names them when set.
    pub acted_on: bool,
    /// Smallest allowed value for numeric configs (Kafka's `atLeast`).
    pub at_least: Option<i64>,
    /// Allowed values for enumerated string configs.
    pub one_of: &'static [&'static str],
}

const fn def(
    name: &'static str,
    default: &'static str,
    config_type: ConfigType,
    broker_synonym: Option<&'static str>,
    acted_on: bool,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        config_type,
        broker_synonym,
        acted_on,
        at_least: None,
        one_of: &[],
    }
}

const fn min(mut d: TopicConfigDef, at_least: i64) -> TopicConfigDef {
    d.at_least = Some(at_least);
    d
}

const fn one_of(mut d: TopicConfigDef, values: &'static [&'static str]) -> TopicConfigDef {
    d.one_of = values;
    d
}

use ConfigType::{Boolean, Double, Int, List, Long, String as Str};

/// Every topic config of Kafka 4.1 (`LogConfig`), sorted by name as Kafka reports them.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    one_of(
        def(
            "cleanup.policy",
            "delete",
            List,
            Some("log.cleanup.policy"),
            false,
        ),
        &["delete", "compact", "compact,delete", "delete,compact", ""],
    ),
    def(
        "compression.gzip.level",
        "-1",
        Int,
        Some("compression.gzip.level"),
        false,
    ),
    def(
        "compression.lz4.level",
        "9",
        Int,
        Some("compression.lz4.level"),
        false,
    ),
    one_of(
        def(
            "compression.type",
            "producer",
            Str,
            Some("compression.type"),
            false,
        ),
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
    ),
    def(
        "compression.zstd.level",
        "3",
        Int,
        Some("compression.zstd.level"),
        false,
    ),
    min(
        def(
            "delete.retention.ms",
            "86400000",
            Long,
            Some("log.cleaner.delete.retention.ms"),
            false,
        ),
        0,
    ),
    min(
        def(
            "file.delete.delay.ms",
            "60000",
            Long,
            Some("log.segment.delete.delay.ms"),
            false,
        ),
        0,
    ),
    min(
        def(
            "flush.messages",
            "9223372036854775807",
            Long,
            Some("log.flush.interval.messages"),
            true,
        ),
        1,
    ),
    min(
        def(
            "flush.ms",
            "9223372036854775807",
            Long,
            Some("log.flush.interval.ms"),
            false,
        ),
        0,
    ),
    def(
        "follower.replication.throttled.replicas",
        "",
        List,
        None,
        false,
    ),
    min(
        def(
            "index.interval.bytes",
            "4096",
            Int,
            Some("log.index.interval.bytes"),
            true,
        ),
        0,
    ),
    def(
        "leader.replication.throttled.replicas",
        "",
        List,
        None,
        false,
    ),
    min(
        def(
            "local.retention.bytes",
            "-2",
            Long,
            Some("log.local.retention.bytes"),
            false,
        ),
        -2,
    ),
    min(
        def(
            "local.retention.ms",
            "-2",
            Long,
            Some("log.local.retention.ms"),
            false,
        ),
        -2,
    ),
    min(
        def(
            "max.compaction.lag.ms",
            "9223372036854775807",
            Long,
            Some("log.cleaner.max.compaction.lag.ms"),
            false,
        ),
        1,
    ),
    min(
        def(
            "max.message.bytes",
            "1048588",
            Int,
            Some("message.max.bytes"),
            true,
        ),
        0,
    ),
    min(
        def(
            "message.timestamp.after.max.ms",
            "3600000",
            Long,
            Some("log.message.timestamp.after.max.ms"),
            false,
        ),
        0,
    ),
    min(
        def(
            "message.timestamp.before.max.ms",
            "9223372036854775807",
            Long,
            Some("log.message.timestamp.before.max.ms"),
            false,
        ),
        0,
    ),
    one_of(
        def(
            "message.timestamp.type",
            "CreateTime",
            Str,
            Some("log.message.timestamp.type"),
            true,
        ),
        &["CreateTime", "LogAppendTime"],
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        Some("log.cleaner.min.cleanable.ratio"),
        false,
    ),
    min(
        def(
            "min.compaction.lag.ms",
            "0",
            Long,
            Some("log.cleaner.min.compaction.lag.ms"),
            false,
        ),
        0,
    ),
    min(
        def(
            "min.insync.replicas",
            "1",
            Int,
            Some("min.insync.replicas"),
            true,
        ),
        1,
    ),
    def(
        "preallocate",
        "false",
        Boolean,
        Some("log.preallocate"),
        false,
    ),
    def("remote.log.copy.disable", "false", Boolean, None, false),
    def(
        "remote.log.delete.on.disable",
        "false",
        Boolean,
        None,
        false,
    ),
    def("remote.storage.enable", "false", Boolean, None, false),
    def(
        "retention.bytes",
        "-1",
        Long,
        Some("log.retention.bytes"),
        false,
    ),
    min(
        def(
            "retention.ms",
            "604800000",
            Long,
            Some("log.retention.ms"),
            false,
        ),
        -1,
    ),
    min(
        def(
            "segment.bytes",
            "1073741824",
            Int,
            Some("log.segment.bytes"),
            true,
        ),
        1_048_576,
    ),
    min(
        def(
            "segment.index.bytes",
            "10485760",
            Int,
            Some("log.index.size.max.bytes"),
            true,
        ),
        4,
    ),
    min(
        def(
            "segment.jitter.ms",
            "0",
            Long,
            Some("log.roll.jitter.ms"),
            false,
        ),
        0,
    ),
    min(
        def("segment.ms", "604800000", Long, Some("log.roll.ms"), true),
        1,
    ),
    def(
        "unclean.leader.election.enable",
        "false",
        Boolean,
        Some("unclean.leader.election.enable"),
        false,
    ),
];

pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config as CreateTopics and AlterConfigs must: known name, value of the right
/// type and range. Errors become INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<()> {
    let invalid = |reason: String| ClusterError::InvalidConfig {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    };
    let def = lookup(name).ok_or_else(|| invalid("unknown topic config".into()))?;
    match def.config_type {
        Int | Long => {
            let parsed: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer".into()))?;
            if def.config_type == Int && i32::try_from(parsed).is_err() {
                return Err(invalid("out of range for an int".into()));
            }
            if let Some(at_least) = def.at_least {
                if parsed < at_least {
                    return Err(invalid(format!("value must be at least {at_least}")));
                }
            }
        }
        Double => {
            let parsed: f64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not a number".into()))?;
            if !(0.0..=1.0).contains(&parsed) {
                return Err(invalid("value must be between 0 and 1".into()));
            }
        }
        Boolean => {
            if !value.trim().eq_ignore_ascii_case("true")
                && !value.trim().eq_ignore_ascii_case("false")
            {
                return Err(invalid("not a boolean".into()));
            }
        }
        Str | List => {
            if !def.one_of.is_empty() {
                let normalized: String = value
                    .split(',')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(",");
                if !def.one_of.contains(&normalized.as_str()) {
                    return Err(invalid(format!("value must be one of {:?}", def.one_of)));
                }
            }
        }
    }
    Ok(())
}

/// One config as a topic has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    /// For DescribeConfigs' synonyms: the broker-level value this config would fall back to.
    pub broker_value: Option<(&'static str, String)>,
}

/// Resolves every topic config: the topic's own value, else the broker's static `log.*` value,
/// else Kafka's default.
pub fn resolve(
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, String>,
) -> Vec<ResolvedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker_value = def
                .broker_synonym
                .and_then(|key| broker_configs.get(key).map(|v| (key, v.clone())));
            let (value, source) = match (topic_configs.get(def.name), &broker_value) {
                (Some(v), _) => (v.clone(), ConfigSource::DynamicTopicConfig),
                (None, Some((_, v))) => (v.clone(), ConfigSource::StaticBrokerConfig),
                (None, None) => (def.default.to_owned(), ConfigSource::DefaultConfig),
            };
            ResolvedConfig {
                name: def.name,
                value,
                source,
                config_type: def.config_type,
                broker_value,
            }
        })
        .collect()
}

/// The effective value of one config (topic > broker > default) without resolving the rest.
pub fn effective<'a>(
    name: &str,
    topic_configs: &'a BTreeMap<String, String>,
    broker_configs: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    let def = lookup(name)?;
    topic_configs
        .get(name)
        .or_else(|| def.broker_synonym.and_then(|k| broker_configs.get(k)))
        .map(String::as_str)
        .or(Some(def.default))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every default passes its own validation, so an unset config is never invalid.
    #[test]
    fn defaults_are_valid() {
        for def in TOPIC_CONFIGS {
            validate(def.name, def.default).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        }
    }

    // The table is sorted by name, as Kafka lists configs, and has no duplicates.
    #[test]
    fn table_sorted_and_unique() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    // Wrong names, types and ranges are rejected.
    #[test]
    fn invalid_values_rejected() {
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("segment.bytes", "abc").is_err());
        assert!(validate("segment.bytes", "1048575").is_err());
        assert!(validate("segment.bytes", "99999999999").is_err());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("preallocate", "yes").is_err());
        assert!(validate("cleanup.policy", "compact, delete").is_ok());
    }

    // Resolution prefers the topic's value, then the broker's, then the default, with the
    // matching source.
    #[test]
    fn resolution_order() {
        let topic: BTreeMap<_, _> = [("retention.ms".to_string(), "5".to_string())].into();
        let broker: BTreeMap<_, _> = [
            ("log.retention.ms".to_string(), "6".to_string()),
            ("log.segment.bytes".to_string(), "7000".to_string()),
        ]
        .into();
        let resolved = resolve(&topic, &broker);
        let get = |n: &str| {
            resolved
                .iter()
                .find(|c| c.name == n)
                .expect("present")
                .clone()
        };
        assert_eq!(get("retention.ms").value, "5");
        assert_eq!(get("retention.ms").source, ConfigSource::DynamicTopicConfig);
        assert_eq!(get("segment.bytes").value, "7000");
        assert_eq!(
            get("segment.bytes").source,
            ConfigSource::StaticBrokerConfig
        );
        assert_eq!(get("segment.ms").source, ConfigSource::DefaultConfig);
        assert_eq!(effective("segment.bytes", &topic, &broker), Some("7000"));
    }
}
