//! Apache Kafka's own config definitions, broker and topic, as data: names, types, defaults,
//! documentation, validators, which broker configs may change at runtime (per broker or
//! cluster-wide) and the synonyms between them. `kafka_configs.json` is generated from Kafka's
//! jars by `compat-tests/tools/gen_kafka_configs.sh`, so DescribeConfigs lists and AlterConfigs
//! validates exactly what the Kafka version it names does; nothing here is copied by hand.
//!
//! Values are checked as Kafka's `ConfigDef.parseValue` checks them (parse by type, then the
//! validator), with Kafka's messages, e.g. "Invalid value abc for configuration retention.ms: Not
//! a number of type LONG".

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The generated definitions (see the module docs).
const KAFKA_CONFIGS_JSON: &str = include_str!("kafka_configs.json");

/// Kafka's `DescribeConfigsResponse.ConfigType`, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// Whether and where a broker config may change without a restart (Kafka's
/// `DynamicBrokerConfig.dynamicConfigUpdateModes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DynamicMode {
    #[serde(rename = "read-only")]
    ReadOnly,
    #[serde(rename = "per-broker")]
    PerBroker,
    #[serde(rename = "cluster-wide")]
    ClusterWide,
}

/// A Kafka `ConfigDef.Validator` runnel re-implements; `Other` names one it does not check.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Validator {
    /// `Range`: bounds as Kafka prints them (a JSON number, or a string for doubles).
    Range {
        min: Option<serde_json::Value>,
        max: Option<serde_json::Value>,
    },
    /// `ValidString` / `CaseInsensitiveValidString`.
    OneOf {
        values: Vec<String>,
        case_insensitive: bool,
    },
    /// `ValidList`: every element one of `values` (any, when empty), no duplicates.
    List {
        values: Vec<String>,
        empty_allowed: bool,
        null_allowed: bool,
    },
    /// A validator with logic of its own (lambdas, quorum voters, throttled replica lists):
    /// runnel checks the type only.
    Other { class: String, text: String },
}

/// One config as Kafka's `ConfigDef.ConfigKey` defines it.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigDef {
    pub name: String,
    #[serde(rename = "type")]
    pub config_type: ConfigType,
    /// Kafka's default as `ConfigDef.convertToString` prints it; `None` when it is null.
    pub default: Option<String>,
    pub validator: Option<Validator>,
    pub documentation: Option<String>,
}

/// A broker config (`KafkaConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct BrokerConfigDef {
    #[serde(flatten)]
    pub def: ConfigDef,
    pub dynamic: DynamicMode,
    /// Kafka's `brokerConfigSynonyms(name)`: the configs that set the same thing, highest
    /// priority first (`log.retention.ms`, `.minutes`, `.hours`), this one among them.
    pub synonyms: Vec<String>,
    /// SSL configs, which Kafka changes at runtime only under a listener prefix.
    pub listener_prefix_only: bool,
}

/// A broker config a topic config falls back to, with its unit conversion to the topic's.
#[derive(Debug, Clone, Deserialize)]
pub struct TopicSynonym {
    pub name: String,
    /// 1, or 60000 / 3600000 for `*.minutes` / `*.hours` synonyms of a milliseconds config.
    pub to_ms_factor: i64,
}

/// A topic config (`LogConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct TopicConfigDef {
    #[serde(flatten)]
    pub def: ConfigDef,
    /// Kafka's `ALL_TOPIC_CONFIG_SYNONYMS`: the broker configs whose value is this config's
    /// default, in priority order. Empty for configs with no broker-level default.
    pub broker_synonyms: Vec<TopicSynonym>,
}

/// Every definition of one Kafka version.
#[derive(Debug, Deserialize)]
pub struct KafkaConfigs {
    pub kafka_version: String,
    /// Sorted by name.
    pub broker: Vec<BrokerConfigDef>,
    /// The broker replication throttles (`QuotaConfig.brokerQuotaConfigs`): dynamic broker
    /// configs outside `KafkaConfig`.
    pub broker_quota: Vec<ConfigDef>,
    /// Sorted by name.
    pub topic: Vec<TopicConfigDef>,
    #[serde(skip)]
    broker_index: BTreeMap<String, usize>,
    #[serde(skip)]
    topic_index: BTreeMap<String, usize>,
}

impl KafkaConfigs {
    pub fn broker(&self, name: &str) -> Option<&BrokerConfigDef> {
        self.broker_index.get(name).map(|i| &self.broker[*i])
    }

    pub fn topic(&self, name: &str) -> Option<&TopicConfigDef> {
        self.topic_index.get(name).map(|i| &self.topic[*i])
    }

    pub fn broker_quota(&self, name: &str) -> Option<&ConfigDef> {
        self.broker_quota.iter().find(|d| d.name == name)
    }
}

/// The definitions of the Kafka version runnel follows, parsed once.
pub fn kafka_configs() -> &'static KafkaConfigs {
    static CONFIGS: OnceLock<KafkaConfigs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        // ok: the file is compiled in and checked by the tests below; no client or disk byte
        // reaches this parse, so failing it is our bug.
        let mut configs: KafkaConfigs =
            serde_json::from_str(KAFKA_CONFIGS_JSON).expect("kafka_configs.json is valid");
        configs.broker_index = configs
            .broker
            .iter()
            .enumerate()
            .map(|(i, d)| (d.def.name.clone(), i))
            .collect();
        configs.topic_index = configs
            .topic
            .iter()
            .enumerate()
            .map(|(i, d)| (d.def.name.clone(), i))
            .collect();
        configs
    })
}

/// A value parsed as Kafka parses it, kept to check and to print it back.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Boolean(bool),
    String(String),
    Int(i64),
    Double(f64),
    List(Vec<String>),
}

impl Parsed {
    /// Kafka's `ConfigDef.convertToString` of the parsed value: what DescribeConfigs shows.
    pub fn to_kafka_string(&self) -> String {
        match self {
            Parsed::Boolean(b) => b.to_string(),
            Parsed::String(s) => s.clone(),
            Parsed::Int(n) => n.to_string(),
            Parsed::Double(d) => java_double(*d),
            Parsed::List(items) => items.join(","),
        }
    }
}

/// Java's `Double.toString` for the values configs hold (plain decimals; exponents outside
/// 10^-3..10^7 as Java writes them).
fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = d.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let s = format!("{d}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{d:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exponent}")
    }
}

/// Kafka's `ConfigException(name, value, message)` text.
fn invalid(name: &str, value: &str, message: &str) -> String {
    format!("Invalid value {value} for configuration {name}: {message}")
}

/// Parses and validates `value` as Kafka's `ConfigDef.parseValue` would for `def`, returning the
/// parsed value or Kafka's message.
pub fn parse_value(def: &ConfigDef, value: &str) -> Result<Parsed, String> {
    let name = def.name.as_str();
    let trimmed = value.trim();
    let not_a_number = || {
        invalid(
            name,
            value,
            &format!("Not a number of type {}", type_name(def.config_type)),
        )
    };
    let parsed = match def.config_type {
        ConfigType::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") {
                Parsed::Boolean(true)
            } else if trimmed.eq_ignore_ascii_case("false") {
                Parsed::Boolean(false)
            } else {
                return Err(invalid(
                    name,
                    value,
                    "Expected value to be either true or false",
                ));
            }
        }
        ConfigType::String | ConfigType::Password => Parsed::String(trimmed.to_owned()),
        ConfigType::Int => Parsed::Int(i64::from(
            java_integer(trimmed)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(not_a_number)?,
        )),
        ConfigType::Short => Parsed::Int(i64::from(
            java_integer(trimmed)
                .and_then(|n| i16::try_from(n).ok())
                .ok_or_else(not_a_number)?,
        )),
        ConfigType::Long => Parsed::Int(java_integer(trimmed).ok_or_else(not_a_number)?),
        ConfigType::Double => Parsed::Double(trimmed.parse::<f64>().map_err(|_| not_a_number())?),
        ConfigType::List => {
            if trimmed.is_empty() {
                Parsed::List(Vec::new())
            } else {
                Parsed::List(trimmed.split(',').map(|s| s.trim().to_owned()).collect())
            }
        }
        ConfigType::Class => {
            // Runnel loads no Java classes: any class name is one it cannot find, as Kafka
            // answers for a class missing from its classpath.
            if trimmed.is_empty() {
                Parsed::String(String::new())
            } else {
                return Err(invalid(
                    name,
                    value,
                    &format!("Class {value} could not be found."),
                ));
            }
        }
    };
    if let Some(validator) = &def.validator {
        validate(name, validator, &parsed)?;
    }
    Ok(parsed)
}

/// Java's `Long.parseLong`: optional sign, decimal digits only.
fn java_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::Boolean => "BOOLEAN",
        ConfigType::String => "STRING",
        ConfigType::Int => "INT",
        ConfigType::Short => "SHORT",
        ConfigType::Long => "LONG",
        ConfigType::Double => "DOUBLE",
        ConfigType::List => "LIST",
        ConfigType::Class => "CLASS",
        ConfigType::Password => "PASSWORD",
    }
}

fn bound_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bound_value(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Kafka's validators on a parsed value, with their messages.
fn validate(name: &str, validator: &Validator, parsed: &Parsed) -> Result<(), String> {
    match validator {
        Validator::Range { min, max } => {
            let (number, shown) = match parsed {
                Parsed::Int(n) => {
                    // Compared exactly: an i64 near the bounds does not survive f64.
                    let below = min
                        .as_ref()
                        .and_then(serde_json::Value::as_i64)
                        .map(|m| *n < m);
                    let above = max
                        .as_ref()
                        .and_then(serde_json::Value::as_i64)
                        .map(|m| *n > m);
                    if let (Some(true), Some(min)) = (below, min) {
                        return Err(invalid(
                            name,
                            &n.to_string(),
                            &format!("Value must be at least {}", bound_text(min)),
                        ));
                    }
                    if let (Some(true), Some(max)) = (above, max) {
                        return Err(invalid(
                            name,
                            &n.to_string(),
                            &format!("Value must be no more than {}", bound_text(max)),
                        ));
                    }
                    if below.is_some() || above.is_some() {
                        return Ok(());
                    }
                    #[expect(
                        clippy::cast_precision_loss,
                        reason = "only reached for double bounds"
                    )]
                    let as_double = *n as f64;
                    (as_double, n.to_string())
                }
                Parsed::Double(d) => (*d, java_double(*d)),
                _ => return Ok(()),
            };
            if let Some(min) = min {
                if bound_value(min).is_some_and(|m| number < m) {
                    return Err(invalid(
                        name,
                        &shown,
                        &format!("Value must be at least {}", bound_text(min)),
                    ));
                }
            }
            if let Some(max) = max {
                if bound_value(max).is_some_and(|m| number > m) {
                    return Err(invalid(
                        name,
                        &shown,
                        &format!("Value must be no more than {}", bound_text(max)),
                    ));
                }
            }
            Ok(())
        }
        Validator::OneOf {
            values,
            case_insensitive,
        } => {
            let Parsed::String(s) = parsed else {
                return Ok(());
            };
            let ok = if *case_insensitive {
                values.iter().any(|v| v.eq_ignore_ascii_case(s))
            } else {
                values.iter().any(|v| v == s)
            };
            if ok {
                Ok(())
            } else if *case_insensitive {
                Err(invalid(
                    name,
                    s,
                    &format!(
                        "String must be one of (case insensitive): {}",
                        values.join(", ")
                    ),
                ))
            } else {
                Err(invalid(
                    name,
                    s,
                    &format!("String must be one of: {}", values.join(", ")),
                ))
            }
        }
        Validator::List {
            values,
            empty_allowed,
            null_allowed: _,
        } => {
            let Parsed::List(items) = parsed else {
                return Ok(());
            };
            if !empty_allowed && items.is_empty() {
                let valid = if values.is_empty() {
                    "any non-empty value".to_owned()
                } else {
                    format!("[{}]", values.join(", "))
                };
                return Err(format!(
                    "Configuration '{name}' must not be empty. Valid values include: {valid}"
                ));
            }
            let distinct: std::collections::HashSet<&String> = items.iter().collect();
            if distinct.len() != items.len() {
                return Err(format!(
                    "Configuration '{name}' values must not be duplicated."
                ));
            }
            for item in items {
                if item.is_empty() {
                    return Err(format!("Configuration '{name}' values must not be empty."));
                }
                if !values.is_empty() && !values.contains(item) {
                    return Err(invalid(
                        name,
                        item,
                        &format!("String must be one of: {}", values.join(", ")),
                    ));
                }
            }
            Ok(())
        }
        Validator::Other { class, text } => validate_other(name, class, text, parsed),
    }
}

/// The validators with logic of their own that runnel knows, by class and description; any
/// other passes (see `Validator::Other`).
fn validate_other(name: &str, class: &str, text: &str, parsed: &Parsed) -> Result<(), String> {
    match parsed {
        // `CompressionType.levelValidator`: "[MIN,...,MAX] or DEFAULT".
        Parsed::Int(level) if class.ends_with("LambdaValidator") => {
            let Some((range, default)) = text.split_once("] or ") else {
                return Ok(());
            };
            let Some((min, max)) = range.trim_start_matches('[').split_once(",...,") else {
                return Ok(());
            };
            let (Ok(min), Ok(max), Ok(default)) = (
                min.parse::<i64>(),
                max.parse::<i64>(),
                default.parse::<i64>(),
            ) else {
                return Ok(());
            };
            if *level > max || (*level < min && *level != default) {
                return Err(invalid(
                    name,
                    &level.to_string(),
                    &format!("Value must be between {min} and {max} or equal to {default}"),
                ));
            }
            Ok(())
        }
        Parsed::List(items) if class.ends_with("ThrottledReplicaListValidator") => {
            let replica = |s: &str| {
                s.is_empty()
                    || s.split_once(':').is_some_and(|(p, b)| {
                        !p.is_empty()
                            && !b.is_empty()
                            && p.bytes().all(|c| c.is_ascii_digit())
                            && b.bytes().all(|c| c.is_ascii_digit())
                    })
            };
            if items.iter().all(|s| replica(s.trim())) || items.concat() == "*" {
                return Ok(());
            }
            Err(invalid(
                name,
                &format!("[{}]", items.join(", ")),
                &format!("{name} must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."),
            ))
        }
        Parsed::String(s) if class.ends_with("NonEmptyString") && s.is_empty() => {
            Err(invalid(name, s, "String must be non-empty"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the embedded definitions parse, are sorted and unique, and every default passes
    // its own validation (an unset config is never invalid).
    #[test]
    fn definitions_load_and_defaults_are_valid() {
        let c = kafka_configs();
        assert!(c.broker.len() > 300, "{}", c.broker.len());
        assert!(c.topic.len() > 30);
        for pair in c.broker.windows(2) {
            assert!(pair[0].def.name < pair[1].def.name);
        }
        for pair in c.topic.windows(2) {
            assert!(pair[0].def.name < pair[1].def.name);
        }
        let all = c
            .broker
            .iter()
            .map(|d| &d.def)
            .chain(c.topic.iter().map(|d| &d.def))
            .chain(c.broker_quota.iter());
        for def in all {
            if let Some(default) = &def.default {
                if def.config_type == ConfigType::Class {
                    continue;
                }
                parse_value(def, default).unwrap_or_else(|e| panic!("{}: {e}", def.name));
            }
        }
        assert_eq!(
            c.broker("log.retention.ms").unwrap().dynamic,
            DynamicMode::ClusterWide
        );
        assert_eq!(c.broker("log.dirs").unwrap().dynamic, DynamicMode::ReadOnly);
    }

    // Proves values are checked with Kafka's messages: type, range, enumerations and lists.
    #[test]
    fn kafka_messages_for_bad_values() {
        let c = kafka_configs();
        let topic = |name: &str, value: &str| parse_value(&c.topic(name).unwrap().def, value);
        assert_eq!(
            topic("retention.ms", "abc").unwrap_err(),
            "Invalid value abc for configuration retention.ms: Not a number of type LONG"
        );
        assert_eq!(
            topic("segment.bytes", "10").unwrap_err(),
            "Invalid value 10 for configuration segment.bytes: Value must be at least 1048576"
        );
        assert!(topic("segment.bytes", "99999999999").is_err());
        assert_eq!(
            topic("preallocate", "yes").unwrap_err(),
            "Invalid value yes for configuration preallocate: Expected value to be either true or false"
        );
        assert_eq!(
            topic("cleanup.policy", "shred").unwrap_err(),
            "Invalid value shred for configuration cleanup.policy: String must be one of: compact, delete"
        );
        assert_eq!(
            topic("cleanup.policy", "compact, delete")
                .unwrap()
                .to_kafka_string(),
            "compact,delete"
        );
        assert_eq!(topic("retention.ms", " 5 ").unwrap().to_kafka_string(), "5");
        assert_eq!(
            topic("min.cleanable.dirty.ratio", "0.50")
                .unwrap()
                .to_kafka_string(),
            "0.5"
        );
        assert!(topic("min.cleanable.dirty.ratio", "2").is_err());
        assert_eq!(
            topic("compression.gzip.level", "0").unwrap_err(),
            "Invalid value 0 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"
        );
        assert!(topic("compression.gzip.level", "-1").is_ok());
        assert!(topic("leader.replication.throttled.replicas", "0:1, 1:1").is_ok());
        assert!(topic("leader.replication.throttled.replicas", "*").is_ok());
        assert_eq!(
            topic("leader.replication.throttled.replicas", "x").unwrap_err(),
            "Invalid value [x] for configuration leader.replication.throttled.replicas: leader.replication.throttled.replicas must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
        );
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(1e10), "1.0E10");
    }
}
