//! Broker configs as Kafka layers them (`DynamicBrokerConfig`): dynamic per-broker values over
//! dynamic cluster-wide defaults over the static config file over Kafka's defaults. What
//! DescribeConfigs reports for a BROKER resource, and which changes AlterConfigs may make to
//! one, with Kafka's messages.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{ClusterError, Result};
use crate::kafka_configs::{kafka_configs, parse_value, ConfigType, DynamicMode};
use crate::metadata::MetadataImage;
use crate::topic_config::ConfigSource;

/// The resource name of the cluster-wide dynamic broker defaults (`--entity-default`).
pub const CLUSTER_DEFAULT: &str = "";

/// One synonym of a described config: a setting that gives it its value, with where it comes
/// from. `value` is `None` for sensitive configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// The broker's settings, highest priority first.
#[derive(Debug, Clone, Copy)]
pub struct ConfigLayers<'a> {
    /// Set at runtime for this broker.
    pub dynamic_broker: &'a BTreeMap<String, String>,
    /// Set at runtime for every broker.
    pub dynamic_default: &'a BTreeMap<String, String>,
    /// The config file (and flags) the broker started with.
    pub static_configs: &'a BTreeMap<String, String>,
}

/// No dynamic configs.
static NO_CONFIGS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> ConfigLayers<'a> {
    /// The layers of broker `node_id` in `image` over its static configs.
    pub fn of(
        image: &'a MetadataImage,
        node_id: i32,
        static_configs: &'a BTreeMap<String, String>,
    ) -> ConfigLayers<'a> {
        ConfigLayers {
            dynamic_broker: image
                .broker_configs
                .get(node_id.to_string().as_str())
                .unwrap_or(&NO_CONFIGS),
            dynamic_default: image
                .broker_configs
                .get(CLUSTER_DEFAULT)
                .unwrap_or(&NO_CONFIGS),
            static_configs,
        }
    }
}

impl ConfigLayers<'_> {
    /// The current value of broker config `name` as a string, `None` when it is null (unset
    /// with no default). As Kafka's `DynamicBrokerConfig.overrideProps` builds it: the static
    /// configs, then each dynamic layer (cluster default, then per broker), where a layer that
    /// sets any config of `name`'s synonym group first removes the whole group, so a dynamic
    /// `log.retention.ms` hides a static `log.retention.hours` (which reads as its default).
    pub fn value(&self, name: &str) -> Option<&str> {
        let def = kafka_configs().broker(name);
        let in_group = |map: &BTreeMap<String, String>| match def {
            Some(d) => d.synonyms.iter().any(|s| map.contains_key(s)),
            None => map.contains_key(name),
        };
        let mut value = self.static_configs.get(name);
        for layer in [self.dynamic_default, self.dynamic_broker] {
            if in_group(layer) {
                value = layer.get(name);
            }
        }
        value
            .map(String::as_str)
            .or_else(|| def.and_then(|d| d.def.default.as_deref()))
    }

    /// Kafka's `ConfigHelper.configSynonyms`: every layer's setting of `name` and the configs
    /// that set the same thing (`log.retention.{ms,minutes,hours}`), layer by layer, then the
    /// ones ranked before `name` dropped.
    pub fn synonyms(&self, name: &str) -> Vec<Synonym> {
        let def = kafka_configs().broker(name);
        let group: Vec<&str> = def.map_or_else(
            || vec![name],
            |d| d.synonyms.iter().map(String::as_str).collect(),
        );
        let sensitive = is_sensitive(def.map(|d| d.def.config_type));
        let defaults: BTreeMap<String, String> = group
            .iter()
            .filter_map(|n| {
                kafka_configs()
                    .broker(n)
                    .and_then(|d| d.def.default.clone())
                    .map(|v| ((*n).to_owned(), v))
            })
            .collect();
        let layers = [
            (self.dynamic_broker, ConfigSource::DynamicBrokerConfig),
            (
                self.dynamic_default,
                ConfigSource::DynamicDefaultBrokerConfig,
            ),
            (self.static_configs, ConfigSource::StaticBrokerConfig),
            (&defaults, ConfigSource::DefaultConfig),
        ];
        let mut all = Vec::new();
        for (map, source) in layers {
            for n in &group {
                if let Some(v) = map.get(*n) {
                    all.push(Synonym {
                        name: (*n).to_owned(),
                        value: (!sensitive).then(|| v.clone()),
                        source,
                    });
                }
            }
        }
        let first = all.iter().position(|s| s.name == name).unwrap_or(all.len());
        all.split_off(first)
    }
}

/// Kafka's `KafkaConfig.maybeSensitive`: passwords, and configs of unknown type to be safe.
pub fn is_sensitive(config_type: Option<ConfigType>) -> bool {
    matches!(config_type, None | Some(ConfigType::Password))
}

/// One config of a BROKER resource as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    pub name: String,
    /// `None` for sensitive configs and configs with no value.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    /// `None` when Kafka does not know the config (type UNKNOWN).
    pub config_type: Option<ConfigType>,
    pub documentation: Option<&'static str>,
    pub synonyms: Vec<Synonym>,
}

/// The type Kafka reports for broker config `name` (`KafkaConfig.configType`), replication
/// throttles included.
fn broker_type(name: &str) -> Option<ConfigType> {
    let configs = kafka_configs();
    configs
        .broker(name)
        .map(|d| d.def.config_type)
        .or_else(|| configs.broker_quota(name).map(|d| d.config_type))
}

/// The configs of this broker's BROKER resource (named by its node id): every Kafka broker
/// config, plus any other key set in a layer, with the current value. Sorted by name.
pub fn describe_broker(layers: &ConfigLayers<'_>) -> Vec<DescribedConfig> {
    let configs = kafka_configs();
    let mut names: BTreeSet<&str> = configs.broker.iter().map(|d| d.def.name.as_str()).collect();
    for map in [
        layers.dynamic_broker,
        layers.dynamic_default,
        layers.static_configs,
    ] {
        names.extend(map.keys().map(String::as_str));
    }
    names
        .into_iter()
        .map(|name| {
            let def = configs.broker(name);
            let config_type = broker_type(name);
            let sensitive = is_sensitive(config_type);
            let synonyms = layers.synonyms(name);
            let value = if sensitive {
                None
            } else {
                // Kafka prints the parsed value of a known config, the string of any other.
                layers.value(name).map(|raw| {
                    def.and_then(|d| parse_value(&d.def, raw).ok())
                        .map_or_else(|| raw.to_owned(), |p| p.to_kafka_string())
                })
            };
            DescribedConfig {
                name: name.to_owned(),
                value,
                source: synonyms
                    .first()
                    .map_or(ConfigSource::DefaultConfig, |s| s.source),
                read_only: def.is_none_or(|d| d.dynamic == DynamicMode::ReadOnly),
                sensitive,
                config_type,
                documentation: def.and_then(|d| d.def.documentation.as_deref()),
                synonyms,
            }
        })
        .collect()
}

/// The configs of the cluster-default BROKER resource (`""`): only those set as dynamic
/// defaults, each with its dynamic-default synonyms (Kafka filters out the other layers).
pub fn describe_cluster_default(layers: &ConfigLayers<'_>) -> Vec<DescribedConfig> {
    let configs = kafka_configs();
    layers
        .dynamic_default
        .iter()
        .map(|(name, value)| {
            let def = configs.broker(name);
            let config_type = broker_type(name);
            let sensitive = is_sensitive(config_type);
            let synonyms: Vec<Synonym> = layers
                .synonyms(name)
                .into_iter()
                .filter(|s| s.source == ConfigSource::DynamicDefaultBrokerConfig)
                .collect();
            DescribedConfig {
                name: name.clone(),
                value: (!sensitive).then(|| value.clone()),
                source: synonyms
                    .first()
                    .map_or(ConfigSource::DefaultConfig, |s| s.source),
                read_only: def.is_none_or(|d| d.dynamic == DynamicMode::ReadOnly),
                sensitive,
                config_type,
                documentation: def.and_then(|d| d.def.documentation.as_deref()),
                synonyms,
            }
        })
        .collect()
}

/// Checks new dynamic broker configs as Kafka's `DynamicBrokerConfig.validateConfigs` does,
/// for one broker (`per_broker`) or the cluster default. Kafka answers every failure here
/// INVALID_REQUEST with these messages. Names Kafka does not know are accepted and stored, as
/// Kafka does (custom and listener-prefixed configs).
pub fn validate_dynamic(changes: &BTreeMap<String, String>, per_broker: bool) -> Result<()> {
    let configs = kafka_configs();
    let refuse = |message: &str, names: Vec<&str>| {
        ClusterError::ConfigRequestRejected(format!("{message}: [{}]", names.join(", ")))
    };
    let read_only: Vec<&str> = changes
        .keys()
        .map(String::as_str)
        .filter(|n| {
            configs
                .broker(n)
                .is_some_and(|d| d.dynamic == DynamicMode::ReadOnly)
        })
        .collect();
    if !read_only.is_empty() {
        return Err(refuse("Cannot update these configs dynamically", read_only));
    }
    let listener_only: Vec<&str> = changes
        .keys()
        .map(String::as_str)
        .filter(|n| configs.broker(n).is_some_and(|d| d.listener_prefix_only))
        .collect();
    if !listener_only.is_empty() {
        return Err(refuse(
            "These security configs can be dynamically updated only per-listener using the listener prefix",
            listener_only,
        ));
    }
    for (name, value) in changes {
        let def = configs
            .broker(name)
            .map(|d| &d.def)
            .or_else(|| configs.broker_quota(name));
        if let Some(def) = def {
            parse_value(def, value).map_err(ClusterError::ConfigRequestRejected)?;
        }
    }
    if !per_broker {
        let per_broker_only: Vec<&str> = changes
            .keys()
            .map(String::as_str)
            .filter(|n| {
                configs
                    .broker(n)
                    .is_some_and(|d| d.dynamic == DynamicMode::PerBroker)
                    || n.starts_with("listener.name.")
            })
            .collect();
        if !per_broker_only.is_empty() {
            return Err(refuse(
                "Cannot update these configs at default cluster level, broker id must be specified",
                per_broker_only,
            ));
        }
    }
    Ok(())
}

/// Whether broker config `name` is LIST-typed (APPEND and SUBTRACT apply only to those).
pub fn is_list(name: &str) -> Option<bool> {
    broker_type(name).map(|t| t == ConfigType::List)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // Proves sources and synonyms follow Kafka's layering: a per-broker value beats the
    // cluster default, which beats the file, and synonyms ranked above the described name are
    // dropped (log.retention.hours set in the file is no synonym of log.retention.ms).
    #[test]
    fn layers_sources_and_synonyms() {
        let dynamic_broker = map(&[("log.cleaner.threads", "3")]);
        let dynamic_default = map(&[("log.cleaner.threads", "2"), ("log.retention.ms", "1000")]);
        let static_configs = map(&[("log.retention.hours", "5"), ("node.id", "1")]);
        let layers = ConfigLayers {
            dynamic_broker: &dynamic_broker,
            dynamic_default: &dynamic_default,
            static_configs: &static_configs,
        };
        let described = describe_broker(&layers);
        let get = |n: &str| described.iter().find(|c| c.name == n).unwrap().clone();
        let threads = get("log.cleaner.threads");
        assert_eq!(threads.value.as_deref(), Some("3"));
        assert_eq!(threads.source, ConfigSource::DynamicBrokerConfig);
        assert_eq!(threads.synonyms.len(), 3);
        assert!(!threads.read_only);
        let hours = get("log.retention.hours");
        assert_eq!(hours.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            hours.synonyms.iter().map(|s| s.source).collect::<Vec<_>>(),
            vec![
                ConfigSource::StaticBrokerConfig,
                ConfigSource::DefaultConfig
            ]
        );
        assert!(hours.read_only);
        assert_eq!(
            get("log.retention.ms").source,
            ConfigSource::DynamicDefaultBrokerConfig
        );
        let password = get("ssl.key.password");
        assert!(password.sensitive && password.value.is_none());
        let default = describe_cluster_default(&layers);
        assert_eq!(default.len(), 2);
        assert!(default.iter().all(|c| c
            .synonyms
            .iter()
            .all(|s| s.source == ConfigSource::DynamicDefaultBrokerConfig)));
    }

    // Proves dynamic changes are refused with Kafka's messages: read-only configs, per-broker
    // configs at the cluster level, and bad values.
    #[test]
    fn dynamic_validation_messages() {
        let err = |pairs: &[(&str, &str)], per_broker| {
            validate_dynamic(&map(pairs), per_broker)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[("log.dirs", "/x")], true),
            "Cannot update these configs dynamically: [log.dirs]"
        );
        assert_eq!(
            err(&[("log.retention.ms", "abc")], false),
            "Invalid value abc for configuration log.retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            err(&[("listeners", "PLAINTEXT://:1")], false),
            "Cannot update these configs at default cluster level, broker id must be specified: [listeners]"
        );
        assert!(validate_dynamic(
            &map(&[("log.retention.ms", "1000"), ("custom.x", "1")]),
            false
        )
        .is_ok());
    }
}
