//! Topic configs: Kafka's names, types and defaults (from [`crate::kafka_configs`], generated
//! from Kafka's jars), which of them runnel acts on, and how a topic's effective config is
//! resolved (topic override > broker setting > Kafka's default).

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use crate::broker_config::{ConfigLayers, Synonym};
use crate::error::{ClusterError, Result};
pub use crate::kafka_configs::ConfigType;
use crate::kafka_configs::{kafka_configs, parse_value, Validator};

/// Kafka's `DescribeConfigsResponse.ConfigSource`, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    /// Kafka's `TOPIC_CONFIG`: set on the topic.
    DynamicTopicConfig = 1,
    /// Set at runtime for this broker (`--entity-name <id>`).
    DynamicBrokerConfig = 2,
    /// Set at runtime as the cluster-wide default (`--entity-default`).
    DynamicDefaultBrokerConfig = 3,
    /// Set in the broker's config file.
    StaticBrokerConfig = 4,
    DefaultConfig = 5,
    DynamicBrokerLoggerConfig = 6,
}

/// Topic configs runnel behaves differently for when they change. Others are stored and
/// reported, so tools work, and a warning names them when set (see docs/configuration.md).
const ACTED_ON: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "flush.messages",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
];

/// One topic config as Kafka defines it, with runnel's view of it.
#[derive(Debug, Clone)]
pub struct TopicConfigDef {
    pub name: &'static str,
    /// Kafka's `LogConfig` default (the broker synonym's default usually wins; see
    /// [`resolve`]).
    pub default: &'static str,
    pub config_type: ConfigType,
    /// The broker config whose value is this topic config's default (Kafka's synonym).
    pub broker_synonym: Option<&'static str>,
    /// Whether runnel behaves differently when this config changes.
    pub acted_on: bool,
    /// Smallest allowed value for numeric configs (Kafka's `atLeast`).
    pub at_least: Option<i64>,
    /// Allowed values for enumerated string and list configs.
    pub one_of: Vec<&'static str>,
    /// Kafka's full definition.
    pub kafka: &'static crate::kafka_configs::TopicConfigDef,
}

/// Every topic config of the Kafka version runnel follows, sorted by name as Kafka reports
/// them.
pub fn topic_configs() -> &'static [TopicConfigDef] {
    static DEFS: OnceLock<Vec<TopicConfigDef>> = OnceLock::new();
    DEFS.get_or_init(|| {
        kafka_configs()
            .topic
            .iter()
            .map(|kafka| TopicConfigDef {
                name: kafka.def.name.as_str(),
                default: kafka.def.default.as_deref().unwrap_or(""),
                config_type: kafka.def.config_type,
                broker_synonym: kafka.broker_synonyms.first().map(|s| s.name.as_str()),
                acted_on: ACTED_ON.contains(&kafka.def.name.as_str()),
                at_least: match &kafka.def.validator {
                    Some(Validator::Range { min, .. }) => {
                        min.as_ref().and_then(serde_json::Value::as_i64)
                    }
                    _ => None,
                },
                one_of: match &kafka.def.validator {
                    Some(Validator::OneOf { values, .. } | Validator::List { values, .. }) => {
                        values.iter().map(String::as_str).collect()
                    }
                    _ => Vec::new(),
                },
                kafka,
            })
            .collect()
    })
}

pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    let defs = topic_configs();
    defs.binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &defs[i])
}

/// Checks one topic config as CreateTopics and AlterConfigs must: known name, value of the right
/// type and range, with Kafka's messages. Errors become INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<()> {
    let def = lookup(name).ok_or_else(|| {
        ClusterError::ConfigRejected(format!("Unknown topic config name: {name}"))
    })?;
    parse_value(&def.kafka.def, value).map_err(ClusterError::ConfigRejected)?;
    Ok(())
}

/// Checks a topic's whole set of configs (each already valid on its own) as Kafka's
/// `LogConfig.validateTopicLogConfigValues` does with the values a topic would have: compaction
/// lags in order, and no remote storage (runnel, like a Kafka broker without
/// `remote.log.storage.system.enable`, has none). Errors become INVALID_CONFIG.
pub fn validate_combination(configs: &BTreeMap<String, String>) -> Result<()> {
    let value = |name: &str| {
        configs
            .get(name)
            .map(String::as_str)
            .or_else(|| lookup(name).map(|d| d.default))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let min_lag = value("min.compaction.lag.ms").parse::<i64>().unwrap_or(0);
    let max_lag = value("max.compaction.lag.ms")
        .parse::<i64>()
        .unwrap_or(i64::MAX);
    if min_lag > max_lag {
        return Err(ClusterError::ConfigRejected(format!(
            "conflict topic config setting min.compaction.lag.ms ({min_lag}) > max.compaction.lag.ms ({max_lag})"
        )));
    }
    if value("remote.storage.enable").eq_ignore_ascii_case("true") {
        return Err(ClusterError::ConfigRejected(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage."
                .into(),
        ));
    }
    Ok(())
}

/// The value DescribeConfigs shows for a stored topic config: Kafka's parsed-and-printed form
/// (`compact, delete` reads back as `compact,delete`).
pub fn canonical(name: &str, value: &str) -> String {
    lookup(name)
        .and_then(|def| parse_value(&def.kafka.def, value).ok())
        .map_or_else(|| value.to_owned(), |p| p.to_kafka_string())
}

/// One config as a topic has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    /// Kafka's synonyms for DescribeConfigs: the topic's own value, then the broker settings
    /// it falls back to, highest priority first.
    pub synonyms: Vec<Synonym>,
}

/// Resolves every topic config over the broker's static settings only (no dynamic broker
/// configs): the topic's own value, else the broker's, else Kafka's default.
pub fn resolve(
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, String>,
) -> Vec<ResolvedConfig> {
    let empty = BTreeMap::new();
    resolve_in(
        topic_configs,
        &ConfigLayers {
            dynamic_broker: &empty,
            dynamic_default: &empty,
            static_configs: broker_configs,
        },
    )
}

/// Resolves every topic config as Kafka's `ConfigHelper.createTopicConfigEntry` does: the
/// value is the topic's own, else the first broker synonym with a value (dynamic per-broker,
/// dynamic cluster default, static, Kafka's broker default), else `LogConfig`'s default; the
/// source is that of the first synonym of the topic's *primary* broker synonym, so a
/// `retention.ms` that falls back to `log.retention.hours` reports DEFAULT_CONFIG with no
/// synonyms, as Kafka does.
pub fn resolve_in(
    topic_configs: &BTreeMap<String, String>,
    layers: &ConfigLayers<'_>,
) -> Vec<ResolvedConfig> {
    topic_configs_resolved(topic_configs, layers).collect()
}

fn topic_configs_resolved<'a>(
    overrides: &'a BTreeMap<String, String>,
    layers: &'a ConfigLayers<'a>,
) -> impl Iterator<Item = ResolvedConfig> + 'a {
    self::topic_configs().iter().map(move |def| {
        let own = overrides.get(def.name).map(|v| canonical(def.name, v));
        let mut synonyms = Vec::new();
        if let Some(v) = &own {
            synonyms.push(Synonym {
                name: def.name.to_owned(),
                value: Some(v.clone()),
                source: ConfigSource::DynamicTopicConfig,
            });
        }
        if let Some(primary) = def.broker_synonym {
            synonyms.extend(layers.synonyms(primary));
        }
        let value = own.unwrap_or_else(|| broker_fallback(def, layers));
        ResolvedConfig {
            name: def.name,
            value,
            source: synonyms
                .first()
                .map_or(ConfigSource::DefaultConfig, |s| s.source),
            config_type: def.config_type,
            synonyms,
        }
    })
}

/// The value a topic without its own setting gets: Kafka's `KafkaConfig.extractLogConfigMap`,
/// the first broker synonym that has a value (converted from hours or minutes), else
/// `LogConfig`'s default.
fn broker_fallback(def: &TopicConfigDef, layers: &ConfigLayers<'_>) -> String {
    for synonym in &def.kafka.broker_synonyms {
        let Some(raw) = layers.value(&synonym.name) else {
            continue;
        };
        if synonym.to_ms_factor != 1 {
            if let Ok(n) = raw.trim().parse::<i64>() {
                return n.saturating_mul(synonym.to_ms_factor).to_string();
            }
        }
        return canonical(def.name, raw);
    }
    def.default.to_owned()
}

/// A new topic's configs as Kafka's controller reports them in the CreateTopics response
/// (`KafkaConfigSchema.resolveEffectiveTopicConfigs`): unlike DescribeConfigs, every broker
/// synonym counts at each layer (per-broker, cluster default, static, in that order), values are
/// the strings as stored (converted from hours or minutes), and the fallback is `LogConfig`'s
/// own default. `(name, value, source)`.
pub fn created_topic_configs(
    topic_configs: &BTreeMap<String, String>,
    layers: &ConfigLayers<'_>,
) -> Vec<(&'static str, String, ConfigSource)> {
    self::topic_configs()
        .iter()
        .map(|def| {
            if let Some(v) = topic_configs.get(def.name) {
                return (def.name, v.clone(), ConfigSource::DynamicTopicConfig);
            }
            let layered = [
                (layers.dynamic_broker, ConfigSource::DynamicBrokerConfig),
                (
                    layers.dynamic_default,
                    ConfigSource::DynamicDefaultBrokerConfig,
                ),
                (layers.static_configs, ConfigSource::StaticBrokerConfig),
            ];
            for (map, source) in layered {
                for synonym in &def.kafka.broker_synonyms {
                    if let Some(raw) = map.get(&synonym.name) {
                        let value = if synonym.to_ms_factor == 1 {
                            raw.clone()
                        } else {
                            raw.trim().parse::<i64>().map_or_else(
                                |_| raw.clone(),
                                |n| n.saturating_mul(synonym.to_ms_factor).to_string(),
                            )
                        };
                        return (def.name, value, source);
                    }
                }
            }
            (
                def.name,
                def.default.to_owned(),
                ConfigSource::DefaultConfig,
            )
        })
        .collect()
}

/// The effective value of one topic config (topic > broker static > default).
pub fn effective(
    name: &str,
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, String>,
) -> Option<String> {
    let empty = BTreeMap::new();
    effective_in(
        name,
        topic_configs,
        &ConfigLayers {
            dynamic_broker: &empty,
            dynamic_default: &empty,
            static_configs: broker_configs,
        },
    )
}

/// The effective value of one topic config over all broker layers, dynamic ones included.
pub fn effective_in(
    name: &str,
    topic_configs: &BTreeMap<String, String>,
    layers: &ConfigLayers<'_>,
) -> Option<String> {
    let def = lookup(name)?;
    Some(
        topic_configs
            .get(name)
            .cloned()
            .unwrap_or_else(|| broker_fallback(def, layers)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every default passes its own validation, so an unset config is never invalid.
    #[test]
    fn defaults_are_valid() {
        for def in topic_configs() {
            validate(def.name, def.default).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        }
    }

    // The table is sorted by name, as Kafka lists configs, and has no duplicates.
    #[test]
    fn table_sorted_and_unique() {
        for pair in topic_configs().windows(2) {
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
        assert_eq!(
            effective("segment.bytes", &topic, &broker).as_deref(),
            Some("7000")
        );
        // Kafka lists no synonym for a retention.ms that falls back to log.retention.hours.
        assert!(get("segment.ms").synonyms.is_empty());
        assert_eq!(get("retention.ms").synonyms.len(), 3);
    }
}
