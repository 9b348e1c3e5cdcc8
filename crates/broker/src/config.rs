//! Broker configuration: command-line flags over a TOML file whose keys are Kafka's config names.
//!
//! A Kafka broker key that runnel does not act on is accepted with a warning naming it (so an
//! existing `server.properties` translates without surprises); a key Kafka does not know is an
//! error naming it (a typo must not silently fall back to a default).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::context::SecurityProtocol;
use crate::listener::ListenerConfig;
use crate::tls::settings::SslConfig;

/// Broker keys runnel acts on. Topic-default keys (`log.segment.bytes`, `message.max.bytes`, …)
/// are acted on through their topic synonyms in `runnel_cluster::topic_config`.
pub(crate) const ACTED_ON: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "controller.listener.names",
    "log.dirs",
    "log.dir",
    "auto.create.topics.enable",
    "num.partitions",
    "default.replication.factor",
    "socket.request.max.bytes",
    "connections.max.idle.ms",
    "max.connections",
    "fetch.max.bytes",
    "max.incremental.fetch.session.cache.slots",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "offsets.retention.minutes",
    "offset.metadata.max.bytes",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.max.size",
    "group.consumer.assignors",
    "group.consumer.migration.policy",
    "metadata.log.max.record.bytes.between.snapshots",
    "log.retention.check.interval.ms",
    // Internal in Kafka (not in its documented catalogue), but accepted by it: the delay
    // before the first retention pass. Tests set it on both targets.
    "log.initial.task.delay.ms",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.max.bytes.per.second",
    "transaction.state.log.num.partitions",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.partition.verification.enable",
    "producer.id.expiration.ms",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "replica.fetch.max.bytes",
    "replica.fetch.response.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    // Internal in Kafka, but accepted by it: how often expired producer ids are looked for.
    "producer.id.expiration.check.interval.ms",
];

/// Runnel's own limits with no Kafka equivalent, under a `runnel.` prefix so they can never
/// collide with a future Kafka key.
pub(crate) const RUNNEL_KEYS: &[&str] = &[
    "runnel.metadata.log.records.max",
    "runnel.fetch.waiters.max",
    "runnel.fetch.zero.copy",
    "runnel.log.format",
    crate::tls::settings::HANDSHAKE_TIMEOUT_KEY,
    crate::admin::settings::LISTENER_KEY,
    crate::admin::settings::CONNECTIONS_MAX_KEY,
];

/// The transaction coordinator's settings and the broker's part in transactions.
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// The coordinator's own settings, with Kafka's names and defaults.
    pub coordinator: runnel_cluster::txn::TxnConfig,
    /// `transaction.state.log.segment.bytes` (Kafka default 100 MiB): `segment.bytes` of
    /// `__transaction_state` when it is created.
    pub state_log_segment_bytes: i32,
    /// `transaction.partition.verification.enable` (Kafka default true): a partition leader
    /// asks the coordinator whether a transaction added the partition before its first
    /// transactional batch there (KIP-890 part 1).
    pub partition_verification: bool,
}

impl Default for TxnSettings {
    fn default() -> Self {
        TxnSettings {
            coordinator: runnel_cluster::txn::TxnConfig::default(),
            state_log_segment_bytes: 104_857_600,
            partition_verification: true,
        }
    }
}

/// Reads the `transaction.*` keys, with Kafka's validators (each at least 1).
fn parse_txn_settings(t: &mut TxnSettings, get: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(key: &str, v: &str) -> Result<T> {
        let n: T = v
            .parse()
            .map_err(|_| anyhow!("config key '{key}': '{v}' is not a valid number"))?;
        if n < T::from(1) {
            bail!("config key '{key}' must be >= 1");
        }
        Ok(n)
    }
    let c = &mut t.coordinator;
    if let Some(v) = get("transaction.state.log.num.partitions") {
        c.transaction_state_partitions = at_least_one("transaction.state.log.num.partitions", &v)?;
    }
    if let Some(v) = get("transaction.state.log.segment.bytes") {
        t.state_log_segment_bytes = at_least_one("transaction.state.log.segment.bytes", &v)?;
    }
    if let Some(v) = get("transaction.max.timeout.ms") {
        c.transaction_max_timeout_ms = at_least_one("transaction.max.timeout.ms", &v)?;
    }
    if let Some(v) = get("transactional.id.expiration.ms") {
        let ms: i32 = at_least_one("transactional.id.expiration.ms", &v)?;
        c.transactional_id_expiration_ms = i64::from(ms);
    }
    if let Some(v) = get("transaction.abort.timed.out.transaction.cleanup.interval.ms") {
        let ms: i32 = at_least_one(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            &v,
        )?;
        c.abort_timed_out_interval_ms = i64::from(ms);
    }
    if let Some(v) = get("transaction.remove.expired.transaction.cleanup.interval.ms") {
        let ms: i32 = at_least_one(
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            &v,
        )?;
        c.remove_expired_interval_ms = i64::from(ms);
    }
    if let Some(v) = get("transaction.partition.verification.enable") {
        t.partition_verification = v.trim().parse().map_err(|_| {
            anyhow!(
                "config key 'transaction.partition.verification.enable': '{v}' is not true/false"
            )
        })?;
    }
    Ok(())
}

/// The broker's settings after merging defaults, the config file and flags.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id, reported as broker and controller id.
    pub node_id: i32,
    /// The client listeners to bind (`listeners` / `--listen`), each with its security
    /// protocol and advertised address (`advertised.listeners` / `--advertised-listener`).
    /// Never empty.
    pub listeners: Vec<ListenerConfig>,
    /// `ssl.*`: the keystore, truststore and client authentication of SSL listeners.
    pub ssl: SslConfig,
    /// `log.dirs` (first entry) / `log.dir` / `--data-dir`.
    pub data_dir: PathBuf,
    /// `auto.create.topics.enable` (Kafka default true).
    pub auto_create_topics: bool,
    /// `num.partitions` (Kafka default 1).
    pub num_partitions: i32,
    /// `default.replication.factor` (Kafka default 1).
    pub default_replication_factor: i16,
    /// `socket.request.max.bytes` (Kafka default 100 MiB): larger frames close the connection.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms` (Kafka default 10 minutes).
    pub connections_max_idle_ms: u64,
    /// `max.connections`. Kafka's default is unbounded; ours is a finite number because every
    /// connection costs memory and a file descriptor.
    pub max_connections: usize,
    /// `fetch.max.bytes` (Kafka default 55 MiB): the most record bytes one fetch response
    /// carries, whatever the client asks for (one batch may exceed it, as in Kafka).
    pub fetch_max_bytes: usize,
    /// `max.incremental.fetch.session.cache.slots`: KIP-227 fetch sessions kept at once (Kafka's
    /// default 1000; 0 turns sessions off).
    pub fetch_session_slots: usize,
    /// `runnel.metadata.log.records.max`: records the metadata log may hold between snapshots.
    pub metadata_log_records_max: u64,
    /// `metadata.log.max.record.bytes.between.snapshots` (Kafka default 20 MiB): a snapshot of
    /// the metadata image is written, and the log emptied, once this much was appended.
    pub metadata_log_bytes_between_snapshots: u64,
    /// `runnel.fetch.waiters.max`: long-polling fetches parked at once, broker-wide.
    pub fetch_waiters_max: usize,
    /// `runnel.fetch.zero.copy`: send fetched records from the segment files with `sendfile`
    /// (default), or read them into memory first (kept to measure the difference; connections
    /// on SSL listeners always read them into memory, as TLS must encrypt them).
    pub fetch_zero_copy: bool,
    /// Group coordinator settings (`group.*`, `offsets.*`).
    pub groups: runnel_cluster::group::GroupConfig,
    /// Transaction coordinator settings (`transaction.*`, `transactional.id.*`).
    pub txns: TxnSettings,
    /// The metadata quorum: roles, voters, the CONTROLLER listener, timeouts.
    pub quorum: crate::metadata::quorum_config::QuorumSettings,
    /// `log.retention.check.interval.ms` (Kafka default 5 minutes): how often retention looks
    /// for segments to delete.
    pub log_retention_check_interval_ms: u64,
    /// `log.initial.task.delay.ms` (Kafka default 30 s): the wait before the first retention
    /// pass after startup.
    pub log_initial_task_delay_ms: u64,
    /// `producer.id.expiration.ms` (Kafka default 1 day): a partition forgets a producer with
    /// no transaction open whose last write is this old.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms` (Kafka default 10 minutes).
    pub producer_id_expiration_check_interval_ms: u64,
    /// `runnel.log.format` / `--log-format`: `text` (default) or `json` lines for log shippers.
    pub log_format: crate::logging::LogFormat,
    /// `runnel.admin.listener` / `--admin-listen`, `runnel.admin.connections.max`: the admin
    /// HTTP listener (`/metrics`, `/health`, `/ready`).
    pub admin: crate::admin::settings::AdminConfig,
    /// Every key given in the file (and by flags), as strings: topic defaults are read from here.
    pub raw: BTreeMap<String, String>,
    /// `broker.rack`: registered with the controller, listed to clients, used by placement.
    pub rack: Option<String>,
    /// `broker.session.timeout.ms` (Kafka default 9000): the controller fences a broker whose
    /// last heartbeat is older.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (Kafka default 2000): how often a broker heartbeats.
    pub broker_heartbeat_interval_ms: u64,
    /// The listener other brokers are reached on (`inter.broker.listener.name`, else the one
    /// named for `security.inter.broker.protocol`, PLAINTEXT): see
    /// [`BrokerConfig::inter_broker_listener_name`].
    pub inter_broker_listener: Option<String>,
    /// `replica.fetch.*`: how this broker fetches a partition moving to it.
    pub replica_fetch: crate::replica::fetcher::FetchLimits,
}

impl BrokerConfig {
    /// The listener name other brokers are reached on: `inter.broker.listener.name` (or
    /// `security.inter.broker.protocol`'s name); unset, PLAINTEXT when there is such a
    /// listener, else the first plaintext one, else the first.
    pub fn inter_broker_listener_name(&self) -> &str {
        if let Some(name) = &self.inter_broker_listener {
            return name;
        }
        self.listeners
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .or_else(|| {
                self.listeners
                    .iter()
                    .find(|l| l.security_protocol == SecurityProtocol::Plaintext)
            })
            .or(self.listeners.first())
            .map_or("PLAINTEXT", |l| l.name.as_str())
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listeners: vec![ListenerConfig {
                name: "PLAINTEXT".into(),
                security_protocol: SecurityProtocol::Plaintext,
                host: "localhost".into(),
                port: 9092,
                advertised: None,
            }],
            ssl: SslConfig::default(),
            data_dir: PathBuf::from("./data"),
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: 100 * 1024 * 1024,
            connections_max_idle_ms: 600_000,
            rack: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            inter_broker_listener: None,
            replica_fetch: crate::replica::fetcher::FetchLimits::default(),
            max_connections: 10_000,
            fetch_max_bytes: 57_671_680,
            fetch_session_slots: crate::fetch_session::SESSION_SLOTS_MAX_DEFAULT,
            metadata_log_records_max: 10_000_000,
            metadata_log_bytes_between_snapshots: 20 * 1024 * 1024,
            fetch_waiters_max: 100_000,
            fetch_zero_copy: true,
            groups: runnel_cluster::group::GroupConfig::default(),
            txns: TxnSettings::default(),
            quorum: Default::default(),
            log_retention_check_interval_ms: 300_000,
            log_initial_task_delay_ms: 30_000,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
            log_format: crate::logging::LogFormat::Text,
            admin: crate::admin::settings::AdminConfig::default(),
            raw: BTreeMap::new(),
        }
    }
}

const USAGE: &str = "\
runnel: a Kafka-compatible broker

USAGE: runnel [OPTIONS]

OPTIONS:
  --listen LISTENERS               where to accept clients (default localhost:9092): HOST:PORT, or
                                   Kafka's list, e.g. PLAINTEXT://:9092,SSL://:9093
  --advertised-listener LISTENERS  what clients are told to use (default: the listen addresses):
                                   HOST:PORT for the first listener, or NAME://HOST:PORT,...
  --data-dir DIR                   where data lives (default ./data)
  --node-id N                      this broker's node id (default 1)
  --config FILE                    TOML file of Kafka config names, e.g. \"num.partitions\" = 3
  --log-format FORMAT              text (default) or json: one JSON object per log line
  --admin-listen HOST:PORT         the admin HTTP listener: /metrics, /health, /ready
                                   (default 127.0.0.1:9644; \"\" turns it off)
  -h, --help                       print this help
  -V, --version                    print the version

Flags override the config file. Log verbosity: RUST_LOG (e.g. RUST_LOG=debug). Text logs
are coloured only when stderr is a terminal and NO_COLOR is not set.";

/// What the command line asks for.
pub enum Command {
    Run(Box<BrokerConfig>, Vec<String>),
    Help,
    Version,
}

pub fn usage() -> &'static str {
    USAGE
}

/// Parses flags (without the program name), reads `--config` if given, and returns the merged
/// config plus warnings to log once logging is up.
pub fn parse_args(args: &[String]) -> Result<Command> {
    let mut flags: BTreeMap<&str, String> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        match name {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--listen"
            | "--advertised-listener"
            | "--data-dir"
            | "--node-id"
            | "--config"
            | "--log-format"
            | "--admin-listen" => {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| anyhow!("{name} needs a value"))?,
                };
                flags.insert(name, value);
            }
            other => bail!("unknown argument '{other}'\n\n{USAGE}"),
        }
    }
    let mut raw = BTreeMap::new();
    if let Some(path) = flags.get("--config") {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading config file {path}"))?;
        raw = parse_toml(&text).with_context(|| format!("in config file {path}"))?;
    }
    if let Some(v) = flags.get("--listen") {
        raw.insert("listeners".into(), v.clone());
    }
    if let Some(v) = flags.get("--advertised-listener") {
        raw.insert("advertised.listeners".into(), v.clone());
    }
    if let Some(v) = flags.get("--data-dir") {
        raw.insert("log.dirs".into(), v.clone());
    }
    if let Some(v) = flags.get("--node-id") {
        raw.insert("node.id".into(), v.clone());
    }
    if let Some(v) = flags.get("--log-format") {
        raw.insert("runnel.log.format".into(), v.clone());
    }
    if let Some(v) = flags.get("--admin-listen") {
        raw.insert(crate::admin::settings::LISTENER_KEY.into(), v.clone());
    }
    let (config, warnings) = from_raw(raw)?;
    Ok(Command::Run(Box::new(config), warnings))
}

/// Flattens a TOML table of Kafka keys into strings. Kafka keys contain dots, so they must be
/// quoted; an unquoted dotted key becomes a nested table, which we join back with dots.
pub fn parse_toml(text: &str) -> Result<BTreeMap<String, String>> {
    let table: toml::Table = text.parse()?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<()> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            toml::Value::Table(inner) => {
                flatten(&name, inner, out)?;
                continue;
            }
            toml::Value::Datetime(d) => d.to_string(),
        };
        out.insert(name, text);
    }
    Ok(())
}

/// Builds the config from Kafka-named keys; returns warnings for keys runnel ignores.
pub fn from_raw(raw: BTreeMap<String, String>) -> Result<(BrokerConfig, Vec<String>)> {
    // Every broker config of the Kafka version runnel follows (generated from Kafka's jars).
    let kafka_configs = runnel_cluster::kafka_configs::kafka_configs();
    let mut warnings = Vec::new();
    for (key, value) in &raw {
        if ACTED_ON.contains(&key.as_str())
            || RUNNEL_KEYS.contains(&key.as_str())
            || crate::tls::settings::KEYS.contains(&key.as_str())
            || crate::metadata::quorum_config::KEYS.contains(&key.as_str())
        {
            continue;
        }
        let topic_default = runnel_cluster::topic_config::topic_configs()
            .iter()
            .find(|d| d.broker_synonym == Some(key.as_str()));
        if let Some(def) = topic_default {
            runnel_cluster::topic_config::validate(def.name, value)
                .with_context(|| format!("config key '{key}'"))?;
            if !def.acted_on {
                warnings.push(format!(
                    "config key '{key}' is a Kafka setting runnel does not act on yet; it is reported as the default of topic config '{}'",
                    def.name
                ));
            }
            continue;
        }
        if kafka_configs.broker(key).is_some() {
            warnings.push(format!(
                "config key '{key}' is a Kafka broker setting runnel does not act on; ignored"
            ));
            continue;
        }
        bail!("unknown config key '{key}' (neither a Kafka broker config nor a runnel one)");
    }

    let mut c = BrokerConfig::default();
    let get = |k: &str| raw.get(k).map(|v| v.trim().to_owned());
    fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
        v.parse()
            .map_err(|_| anyhow!("config key '{key}': '{v}' is not a valid number"))
    }
    if let Some(v) = get("node.id").or_else(|| get("broker.id")) {
        c.node_id = num("node.id", &v)?;
        if c.node_id < 0 {
            bail!("config key 'node.id' must be >= 0");
        }
    }
    c.quorum = crate::metadata::quorum_config::parse(get, c.node_id)?;
    if !c.quorum.broker {
        // A controller-only node serves no clients: its one listener is the CONTROLLER one
        // the quorum binds (checked by the quorum's parse).
        c.listeners = Vec::new();
    } else if let Some(v) = get("listeners") {
        let (listeners, listener_warnings) = crate::listener::parse(
            &v,
            get("advertised.listeners").as_deref(),
            get("listener.security.protocol.map").as_deref(),
            get("controller.listener.names").as_deref(),
        )?;
        c.listeners = listeners;
        warnings.extend(listener_warnings);
    } else if let Some(v) = get("advertised.listeners") {
        // The default listener, advertised elsewhere.
        let (listeners, _) = crate::listener::parse("localhost:9092", Some(&v), None, None)?;
        c.listeners = listeners;
    }
    c.ssl = crate::tls::settings::parse(get)?;
    if let Some(ssl) = c
        .listeners
        .iter()
        .find(|l| l.security_protocol == SecurityProtocol::Ssl)
    {
        if c.ssl.keystore.is_none() {
            bail!(
                "listener {} is SSL and needs the broker's certificate and key: set \
                 ssl.keystore.type=PEM and ssl.keystore.location (a PEM file with the private \
                 key and certificate chain), or ssl.keystore.certificate.chain and \
                 ssl.keystore.key",
                ssl.name
            );
        }
    }
    if let Some(v) = get("log.dirs").or_else(|| get("log.dir")) {
        let first = v.split(',').next().unwrap_or_default().trim().to_owned();
        if v.contains(',') {
            warnings.push(format!(
                "log.dirs lists several directories; runnel uses only the first, {first}"
            ));
        }
        c.data_dir = PathBuf::from(first);
    }
    if let Some(v) = get("auto.create.topics.enable") {
        c.auto_create_topics = v.parse().map_err(|_| {
            anyhow!("config key 'auto.create.topics.enable': '{v}' is not true/false")
        })?;
    }
    if let Some(v) = get("num.partitions") {
        c.num_partitions = num("num.partitions", &v)?;
        if c.num_partitions < 1 {
            bail!("config key 'num.partitions' must be >= 1");
        }
    }
    if let Some(v) = get("default.replication.factor") {
        c.default_replication_factor = num("default.replication.factor", &v)?;
    }
    if let Some(v) = get("socket.request.max.bytes") {
        c.socket_request_max_bytes = num("socket.request.max.bytes", &v)?;
        if c.socket_request_max_bytes < 1024 || c.socket_request_max_bytes > i32::MAX as usize {
            bail!("config key 'socket.request.max.bytes' must be between 1024 and 2147483647");
        }
    }
    if let Some(v) = get("broker.rack") {
        c.rack = Some(v);
    }
    if let Some(v) = get("broker.session.timeout.ms") {
        c.broker_session_timeout_ms = num("broker.session.timeout.ms", &v)?;
    }
    if let Some(v) = get("broker.heartbeat.interval.ms") {
        c.broker_heartbeat_interval_ms = num("broker.heartbeat.interval.ms", &v)?;
        if c.broker_heartbeat_interval_ms == 0 {
            bail!("config key 'broker.heartbeat.interval.ms' must be > 0");
        }
    }
    // Kafka's inter-broker listener: named, or the listener named after the security
    // protocol (default PLAINTEXT). Runnel's broker-to-broker connections (partition moves,
    // transaction markers, AddPartitionsToTxn) are plaintext, so it must be a PLAINTEXT one.
    let inter_broker = match (
        get("inter.broker.listener.name"),
        get("security.inter.broker.protocol"),
    ) {
        (Some(_), Some(_)) => bail!(
            "Only one of inter.broker.listener.name and security.inter.broker.protocol should \
             be set."
        ),
        (Some(name), None) => Some(name.to_ascii_uppercase()),
        (None, Some(protocol)) => Some(protocol.to_ascii_uppercase()),
        (None, None) => None,
    };
    if let Some(name) = &inter_broker {
        if c.quorum.broker {
            let Some(listener) = c.listeners.iter().find(|l| l.name == *name) else {
                bail!(
                    "inter.broker.listener.name must be a listener name defined in \
                     advertised.listeners. The valid options based on currently configured \
                     listeners are {}",
                    c.listeners
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            };
            if listener.security_protocol != SecurityProtocol::Plaintext && c.quorum.enabled() {
                bail!(
                    "inter-broker listener {name} is not PLAINTEXT: runnel's broker-to-broker \
                     connections are plaintext only (name a PLAINTEXT listener in \
                     inter.broker.listener.name)"
                );
            }
        }
    }
    c.inter_broker_listener = inter_broker;
    let fetch_num = |key: &str, min: i64| -> Result<Option<i64>> {
        let Some(v) = get(key) else { return Ok(None) };
        let n: i64 = num(key, &v)?;
        if n < min || n > i64::from(i32::MAX) {
            bail!("config key '{key}' must be between {min} and {}", i32::MAX);
        }
        Ok(Some(n))
    };
    if let Some(n) = fetch_num("replica.fetch.max.bytes", 0)? {
        c.replica_fetch.max_bytes = n as i32;
    }
    if let Some(n) = fetch_num("replica.fetch.response.max.bytes", 0)? {
        c.replica_fetch.response_max_bytes = n as i32;
    }
    if let Some(n) = fetch_num("replica.fetch.wait.max.ms", 0)? {
        c.replica_fetch.wait_max_ms = n as i32;
    }
    if let Some(n) = fetch_num("replica.fetch.min.bytes", 1)? {
        c.replica_fetch.min_bytes = n as i32;
    }
    if let Some(n) = fetch_num("replica.fetch.backoff.ms", 0)? {
        c.replica_fetch.backoff_ms = n as u64;
    }
    if let Some(v) = get("connections.max.idle.ms") {
        c.connections_max_idle_ms = num("connections.max.idle.ms", &v)?;
    }
    if let Some(v) = get("max.connections") {
        c.max_connections = num("max.connections", &v)?;
        if c.max_connections == 0 {
            bail!("config key 'max.connections' must be >= 1");
        }
    }
    if let Some(v) = get("fetch.max.bytes") {
        c.fetch_max_bytes = num("fetch.max.bytes", &v)?;
        if c.fetch_max_bytes < 1024 {
            bail!("config key 'fetch.max.bytes' must be at least 1024");
        }
    }
    if let Some(v) = get("max.incremental.fetch.session.cache.slots") {
        c.fetch_session_slots = num("max.incremental.fetch.session.cache.slots", &v)?;
    }
    if let Some(v) = get("runnel.metadata.log.records.max") {
        c.metadata_log_records_max = num("runnel.metadata.log.records.max", &v)?;
    }
    if let Some(v) = get("metadata.log.max.record.bytes.between.snapshots") {
        c.metadata_log_bytes_between_snapshots =
            num("metadata.log.max.record.bytes.between.snapshots", &v)?;
        if c.metadata_log_bytes_between_snapshots == 0 {
            bail!("config key 'metadata.log.max.record.bytes.between.snapshots' must be >= 1");
        }
    }
    if let Some(v) = get("runnel.fetch.waiters.max") {
        c.fetch_waiters_max = num("runnel.fetch.waiters.max", &v)?;
    }
    if let Some(v) = get("runnel.fetch.zero.copy") {
        c.fetch_zero_copy = v
            .parse()
            .map_err(|_| anyhow!("config key 'runnel.fetch.zero.copy': '{v}' is not true/false"))?;
    }
    let g = &mut c.groups;
    if let Some(v) = get("group.initial.rebalance.delay.ms") {
        g.group_initial_rebalance_delay_ms = num("group.initial.rebalance.delay.ms", &v)?;
    }
    if let Some(v) = get("group.min.session.timeout.ms") {
        g.group_min_session_timeout_ms = num("group.min.session.timeout.ms", &v)?;
    }
    if let Some(v) = get("group.max.session.timeout.ms") {
        g.group_max_session_timeout_ms = num("group.max.session.timeout.ms", &v)?;
    }
    if let Some(v) = get("group.max.size") {
        g.group_max_size = num("group.max.size", &v)?;
    }
    if let Some(v) = get("offsets.retention.minutes") {
        let minutes: i64 = num("offsets.retention.minutes", &v)?;
        g.offsets_retention_ms = minutes.saturating_mul(60_000);
    }
    if let Some(v) = get("offset.metadata.max.bytes") {
        g.offset_metadata_max_bytes = num("offset.metadata.max.bytes", &v)?;
    }
    if let Some(v) = get("offsets.topic.num.partitions") {
        g.offsets_topic_num_partitions = num("offsets.topic.num.partitions", &v)?;
        if g.offsets_topic_num_partitions < 1 {
            bail!("config key 'offsets.topic.num.partitions' must be >= 1");
        }
    }
    if let Some(v) = get("offsets.topic.segment.bytes") {
        g.offsets_topic_segment_bytes = num("offsets.topic.segment.bytes", &v)?;
        if g.offsets_topic_segment_bytes < 1 {
            bail!("config key 'offsets.topic.segment.bytes' must be >= 1");
        }
    }
    parse_txn_settings(&mut c.txns, &get)?;
    // AddOffsetsToTxn adds the group's `__consumer_offsets` partition, hashed as groups are.
    c.txns.coordinator.offsets_topic_partitions = g.offsets_topic_num_partitions;
    if let Some(v) = get("group.consumer.session.timeout.ms") {
        g.consumer_group_session_timeout_ms = num("group.consumer.session.timeout.ms", &v)?;
    }
    if let Some(v) = get("group.consumer.heartbeat.interval.ms") {
        g.consumer_group_heartbeat_interval_ms = num("group.consumer.heartbeat.interval.ms", &v)?;
    }
    if let Some(v) = get("group.consumer.max.size") {
        g.consumer_group_max_size = num("group.consumer.max.size", &v)?;
    }
    if let Some(v) = get("group.consumer.assignors") {
        let assignors: Vec<String> = v
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if assignors.is_empty() || assignors.iter().any(|a| a != "uniform" && a != "range") {
            bail!("config key 'group.consumer.assignors': runnel offers the assignors 'uniform' and 'range'");
        }
        g.consumer_group_assignors = assignors;
    }
    if let Some(v) = get("group.consumer.migration.policy") {
        g.consumer_group_migration_policy = runnel_cluster::group::MigrationPolicy::parse(&v)
            .ok_or_else(|| {
                anyhow!("config key 'group.consumer.migration.policy': '{v}' is not one of disabled, upgrade, downgrade, bidirectional")
            })?;
    }
    if let Some(v) = get("log.retention.check.interval.ms") {
        c.log_retention_check_interval_ms = num("log.retention.check.interval.ms", &v)?;
        if c.log_retention_check_interval_ms < 1 {
            bail!("config key 'log.retention.check.interval.ms' must be >= 1");
        }
    }
    if let Some(v) = get("log.initial.task.delay.ms") {
        c.log_initial_task_delay_ms = num("log.initial.task.delay.ms", &v)?;
    }
    if let Some(v) = get("producer.id.expiration.ms") {
        c.producer_id_expiration_ms = num("producer.id.expiration.ms", &v)?;
        if c.producer_id_expiration_ms < 1 {
            bail!("config key 'producer.id.expiration.ms' must be >= 1");
        }
    }
    if let Some(v) = get("producer.id.expiration.check.interval.ms") {
        c.producer_id_expiration_check_interval_ms =
            num("producer.id.expiration.check.interval.ms", &v)?;
        if c.producer_id_expiration_check_interval_ms < 1 {
            bail!("config key 'producer.id.expiration.check.interval.ms' must be >= 1");
        }
    }
    c.admin = crate::admin::settings::AdminConfig::parse(get)?;
    if let Some(v) = get("runnel.log.format") {
        c.log_format = crate::logging::LogFormat::parse(&v).ok_or_else(|| {
            anyhow!("config key 'runnel.log.format': '{v}' is not one of text, json")
        })?;
    }
    c.raw = raw;
    Ok((c, warnings))
}

impl BrokerConfig {
    /// Broker-level values of topic configs (`log.segment.bytes`, ...), keyed by broker name.
    pub fn topic_defaults(&self) -> BTreeMap<String, String> {
        runnel_cluster::topic_config::topic_configs()
            .iter()
            .filter_map(|d| d.broker_synonym)
            .filter_map(|k| self.raw.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    // With no arguments runnel is a single node on localhost:9092 with data in ./data.
    #[test]
    fn defaults_without_arguments() {
        let Command::Run(c, warnings) = parse_args(&[]).expect("parse") else {
            panic!("expected run")
        };
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listeners[0].bind_address(), "localhost:9092");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.node_id, 1);
        assert!(warnings.is_empty());
    }

    // Flags override the file; quoted Kafka keys work; an ignored Kafka key warns by name; an
    // unknown key is an error naming it.
    #[test]
    fn file_flags_warnings_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runnel.toml");
        std::fs::write(
            &file,
            "\"num.partitions\" = 3\n\"node.id\" = 5\n\"log.retention.hours\" = 1\n\"group.initial.rebalance.delay.ms\" = 0\n\"transaction.state.log.replication.factor\" = 1\nlisteners = \"PLAINTEXT://127.0.0.1:1234\"\n",
        )
        .expect("write");
        let path = file.to_string_lossy().to_string();
        let Command::Run(c, warnings) =
            parse_args(&args(&["--config", &path, "--node-id", "7"])).expect("parse")
        else {
            panic!("expected run")
        };
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.node_id, 7);
        assert_eq!(c.listeners[0].bind_address(), "127.0.0.1:1234");
        assert_eq!(c.groups.group_initial_rebalance_delay_ms, 0);
        assert!(warnings
            .iter()
            .any(|w| w.contains("transaction.state.log.replication.factor")));
        assert!(!warnings
            .iter()
            .any(|w| w.contains("group.initial.rebalance.delay.ms")));
        assert!(warnings.iter().any(|w| w.contains("log.retention.hours")));

        std::fs::write(&file, "\"num.partitons\" = 3\n").expect("write");
        let err = parse_args(&args(&["--config", &path]))
            .err()
            .expect("error");
        assert!(format!("{err:#}").contains("num.partitons"), "{err:#}");
    }

    // `--listen` takes Kafka's listener list; an SSL listener needs a PEM keystore, and the
    // ssl keys it reads warn about nothing.
    #[test]
    fn ssl_listener_needs_a_keystore() {
        let listen = "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093";
        let err = parse_args(&args(&["--listen", listen]))
            .err()
            .expect("error");
        assert!(
            format!("{err:#}").contains("ssl.keystore.location"),
            "{err:#}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runnel.toml");
        std::fs::write(
            &file,
            "\"ssl.keystore.type\" = \"PEM\"\n\"ssl.keystore.location\" = \"/k.pem\"\n\"ssl.client.auth\" = \"none\"\n",
        )
        .expect("write");
        let path = file.to_string_lossy().to_string();
        let Command::Run(c, warnings) =
            parse_args(&args(&["--listen", listen, "--config", &path])).expect("parse")
        else {
            panic!("expected run")
        };
        let protocols: Vec<_> = c.listeners.iter().map(|l| l.security_protocol).collect();
        assert_eq!(
            protocols,
            [SecurityProtocol::Plaintext, SecurityProtocol::Ssl]
        );
        assert!(c.ssl.keystore.is_some());
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    // The log format comes from the file key or the flag (the flag wins); anything but text
    // or json is refused, naming the key.
    #[test]
    fn log_format_from_file_and_flag() {
        use crate::logging::LogFormat;
        let Command::Run(c, _) = parse_args(&[]).expect("parse") else {
            panic!("expected run")
        };
        assert_eq!(c.log_format, LogFormat::Text);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("runnel.toml");
        std::fs::write(&file, "\"runnel.log.format\" = \"json\"\n").expect("write");
        let path = file.to_string_lossy().to_string();
        let Command::Run(c, warnings) = parse_args(&args(&["--config", &path])).expect("parse")
        else {
            panic!("expected run")
        };
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(warnings.is_empty(), "{warnings:?}");
        let Command::Run(c, _) =
            parse_args(&args(&["--config", &path, "--log-format=text"])).expect("parse")
        else {
            panic!("expected run")
        };
        assert_eq!(c.log_format, LogFormat::Text);
        let err = parse_args(&args(&["--log-format", "xml"]))
            .err()
            .expect("error");
        assert!(format!("{err:#}").contains("runnel.log.format"), "{err:#}");
    }

    // `offsets.topic.segment.bytes` is acted on (no "not acted on" warning): it sets the
    // segment size `__consumer_offsets` is created with; Kafka's minimum of 1 is enforced.
    #[test]
    fn offsets_topic_segment_bytes_is_read() {
        let raw = |v: &str| BTreeMap::from([("offsets.topic.segment.bytes".into(), v.into())]);
        let (c, warnings) = from_raw(raw("2097152")).expect("parse");
        assert_eq!(c.groups.offsets_topic_segment_bytes, 2_097_152);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            crate::internal_topics::offsets_topic_configs(c.groups.offsets_topic_segment_bytes)
                .get("segment.bytes")
                .map(String::as_str),
            Some("2097152")
        );
        let (c, _) = from_raw(BTreeMap::new()).expect("parse");
        assert_eq!(c.groups.offsets_topic_segment_bytes, 104_857_600);
        for bad in ["0", "-5", "x", "3000000000"] {
            assert!(from_raw(raw(bad)).is_err(), "{bad}");
        }
    }

    // Proves the inter-broker listener is Kafka's: named, or after the security protocol,
    // refused when it is no listener or both keys are set; unset it falls back to PLAINTEXT.
    #[test]
    fn inter_broker_listener_is_chosen_as_kafka_does() {
        let raw = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let two = (
            "listeners",
            "EXTERNAL://127.0.0.1:19092,INTERNAL://127.0.0.1:19094",
        );
        let map = (
            "listener.security.protocol.map",
            "EXTERNAL:PLAINTEXT,INTERNAL:PLAINTEXT",
        );
        let (c, warnings) =
            from_raw(raw(&[two, map, ("inter.broker.listener.name", "internal")])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.inter_broker_listener_name(), "INTERNAL");
        let (c, _) = from_raw(raw(&[two, map])).unwrap();
        assert_eq!(c.inter_broker_listener_name(), "EXTERNAL");
        let (c, _) = from_raw(BTreeMap::new()).unwrap();
        assert_eq!(c.inter_broker_listener_name(), "PLAINTEXT");
        let e = from_raw(raw(&[two, map, ("inter.broker.listener.name", "OTHER")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("EXTERNAL,INTERNAL"), "{e}");
        assert!(from_raw(raw(&[
            two,
            map,
            ("security.inter.broker.protocol", "PLAINTEXT")
        ]))
        .is_err());
        assert!(from_raw(raw(&[
            two,
            map,
            ("inter.broker.listener.name", "INTERNAL"),
            ("security.inter.broker.protocol", "PLAINTEXT"),
        ]))
        .is_err());
    }

    // Proves replica.fetch.* reach the move fetcher's limits, with Kafka's defaults.
    #[test]
    fn replica_fetch_settings_are_read() {
        let (c, _) = from_raw(BTreeMap::new()).unwrap();
        assert_eq!(
            c.replica_fetch,
            crate::replica::fetcher::FetchLimits::default()
        );
        assert_eq!(c.replica_fetch.max_bytes, 1_048_576);
        let raw = BTreeMap::from([
            ("replica.fetch.max.bytes".to_string(), "65536".to_string()),
            ("replica.fetch.wait.max.ms".to_string(), "100".to_string()),
            ("replica.fetch.backoff.ms".to_string(), "50".to_string()),
        ]);
        let (c, warnings) = from_raw(raw).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.replica_fetch.max_bytes, 65_536);
        assert_eq!(c.replica_fetch.wait_max_ms, 100);
        assert_eq!(c.replica_fetch.backoff_ms, 50);
        let bad = BTreeMap::from([("replica.fetch.min.bytes".to_string(), "0".to_string())]);
        assert!(from_raw(bad).is_err());
    }

    // Unquoted dotted keys become nested tables in TOML; they are joined back.
    #[test]
    fn dotted_keys_flatten() {
        let raw = parse_toml("auto.create.topics.enable = false\n").expect("toml");
        assert_eq!(
            raw.get("auto.create.topics.enable").map(String::as_str),
            Some("false")
        );
    }
}
