//! Kafka's KRaft settings: `process.roles`, `controller.quorum.voters` /
//! `controller.quorum.bootstrap.servers`, `controller.listener.names` (with its entry of
//! `listeners`) and the quorum's timeouts, with Kafka's defaults.

use anyhow::{anyhow, bail, Result};

/// Config keys read here (acted on).
pub const KEYS: &[&str] = &[
    "process.roles",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "controller.quorum.election.timeout.ms",
    "controller.quorum.fetch.timeout.ms",
    "controller.quorum.request.timeout.ms",
];

/// One voter of the static quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Voter {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    /// `process.roles` contains `broker` (default: both roles).
    pub broker: bool,
    /// `process.roles` contains `controller`.
    pub controller: bool,
    /// `controller.quorum.voters`; empty: the single-node metadata log of one process (or a
    /// dynamic quorum, with `bootstrap`).
    pub voters: Vec<Voter>,
    /// `controller.quorum.bootstrap.servers` (KIP-853's dynamic quorum): controllers to ask
    /// for the leader; the voter set then lives only in the Raft log. Empty with static voters.
    pub bootstrap: Vec<(String, u16)>,
    /// The CONTROLLER listener to bind: (name, host, port). `None` on a broker-only node,
    /// which reaches the controllers on their listener of `listener_name`.
    pub listener: Option<(String, String, u16)>,
    /// `controller.listener.names`' first entry: the listener controllers talk on.
    pub listener_name: String,
    /// `controller.quorum.election.timeout.ms` (Kafka: 1000).
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms` (Kafka: 2000): a follower that hears nothing from
    /// the leader this long starts an election (Raft's check-quorum covers the leader side).
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms` (Kafka: 2000): how long a forwarded command or a
    /// connection to a peer may take.
    pub request_timeout_ms: u64,
}

impl Default for QuorumSettings {
    fn default() -> Self {
        QuorumSettings {
            broker: true,
            controller: true,
            voters: Vec::new(),
            bootstrap: Vec::new(),
            listener: None,
            listener_name: String::new(),
            election_timeout_ms: 1000,
            fetch_timeout_ms: 2000,
            request_timeout_ms: 2000,
        }
    }
}

impl QuorumSettings {
    /// Whether metadata goes through a Raft quorum (voters or bootstrap servers configured).
    pub fn enabled(&self) -> bool {
        !self.voters.is_empty() || !self.bootstrap.is_empty()
    }

    /// Whether the voter set is dynamic (KIP-853: `controller.quorum.bootstrap.servers`), so
    /// voters can be added and removed; a static one (`controller.quorum.voters`) cannot, as
    /// Kafka's `kraft.version` 0.
    pub fn dynamic(&self) -> bool {
        self.voters.is_empty() && !self.bootstrap.is_empty()
    }

    /// Whether this node starts a dynamic quorum as its first and only voter (Kafka's
    /// `kafka-storage format --standalone`): its bootstrap servers name only its own
    /// CONTROLLER endpoint.
    pub fn standalone(&self) -> bool {
        self.dynamic()
            && self.listener.as_ref().is_some_and(|(_, host, port)| {
                self.bootstrap
                    .iter()
                    .all(|(h, p)| p == port && (h == host || is_local_alias(h, host)))
            })
    }
}

/// Reads the settings from the merged config (`get` returns trimmed values).
pub fn parse(get: impl Fn(&str) -> Option<String>, node_id: i32) -> Result<QuorumSettings> {
    let mut s = QuorumSettings::default();
    fn ms(key: &str, v: Option<String>, default: u64) -> Result<u64> {
        match v {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| anyhow!("config key '{key}': '{v}' is not a positive number")),
        }
    }
    s.election_timeout_ms = ms(
        "controller.quorum.election.timeout.ms",
        get("controller.quorum.election.timeout.ms"),
        1000,
    )?;
    s.fetch_timeout_ms = ms(
        "controller.quorum.fetch.timeout.ms",
        get("controller.quorum.fetch.timeout.ms"),
        2000,
    )?;
    s.request_timeout_ms = ms(
        "controller.quorum.request.timeout.ms",
        get("controller.quorum.request.timeout.ms"),
        2000,
    )?;
    if let Some(roles) = get("process.roles") {
        let roles: Vec<String> = roles
            .split(',')
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty())
            .collect();
        for role in &roles {
            if role != "broker" && role != "controller" {
                bail!("config key 'process.roles': unknown role '{role}' (broker, controller)");
            }
        }
        if roles.is_empty() {
            bail!("config key 'process.roles' names no role");
        }
        s.broker = roles.iter().any(|r| r == "broker");
        s.controller = roles.iter().any(|r| r == "controller");
    }
    let voters = get("controller.quorum.voters").filter(|v| !v.is_empty());
    let bootstrap = get("controller.quorum.bootstrap.servers").filter(|v| !v.is_empty());
    if let Some(voters) = voters {
        for entry in voters.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            s.voters.push(parse_voter(entry)?);
        }
        let mut ids: Vec<i32> = s.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != s.voters.len() {
            bail!("config key 'controller.quorum.voters' names a node id twice");
        }
    } else if let Some(bootstrap) = bootstrap {
        for entry in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            s.bootstrap
                .push(host_port("controller.quorum.bootstrap.servers", entry)?);
        }
    }
    let combined = s.broker && s.controller;
    if !s.enabled() && !combined {
        bail!(
            "config key 'process.roles': a node with only the {} role needs the quorum it \
             belongs to ('controller.quorum.voters' or 'controller.quorum.bootstrap.servers')",
            if s.broker { "broker" } else { "controller" }
        );
    }
    let voter = s.voters.iter().any(|v| v.id == node_id);
    // Kafka's KafkaConfig checks: a static voter set names the controllers, and only them.
    if s.controller && !s.voters.is_empty() && !voter {
        bail!("node.id {node_id} is not among the voters of 'controller.quorum.voters'");
    }
    if !s.controller && voter {
        bail!(
            "If process.roles contains just the 'broker' role, the node id {node_id} must not \
             be included in the set of voters controller.quorum.voters"
        );
    }
    if s.enabled() {
        let names: Vec<String> = get("controller.listener.names")
            .unwrap_or_default()
            .split(',')
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| !n.is_empty())
            .collect();
        let Some(first) = names.first() else {
            bail!("config key 'controller.listener.names' must name the CONTROLLER listener");
        };
        s.listener_name = first.clone();
        let listeners = get("listeners").unwrap_or_default();
        let mut others = Vec::new();
        for entry in listeners
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let Some((name, address)) = entry.split_once("://") else {
                continue;
            };
            let name = name.trim().to_ascii_uppercase();
            if name == *first {
                let (host, port) = host_port("listeners", address)?;
                s.listener = Some((first.clone(), host, port));
            } else if !names.contains(&name) {
                others.push(name);
            }
        }
        if !s.controller {
            if s.listener.is_some() {
                bail!(
                    "The listeners config must not contain KRaft controller listeners from \
                     controller.listener.names when process.roles contains only the 'broker' \
                     role, because that would make it a controller"
                );
            }
        } else if s.listener.is_none() {
            bail!("config key 'listeners' has no entry for controller listener {first}");
        }
        if !s.broker && !others.is_empty() {
            bail!(
                "The listeners config must only contain KRaft controller listeners from \
                 controller.listener.names when process.roles=controller (found {})",
                others.join(", ")
            );
        }
    }
    Ok(s)
}

/// Whether `a` and `b` both name this machine's loopback or wildcard address (a listener on
/// `0.0.0.0` is reached as `localhost`).
fn is_local_alias(a: &str, b: &str) -> bool {
    let local = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "::1" | "0.0.0.0" | "::" | "");
    local(a) && local(b)
}

/// `id@host:port`.
fn parse_voter(entry: &str) -> Result<Voter> {
    let (id, address) = entry.split_once('@').ok_or_else(|| {
        anyhow!("config key 'controller.quorum.voters': '{entry}' is not id@host:port")
    })?;
    let id: i32 = id
        .trim()
        .parse()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            anyhow!("config key 'controller.quorum.voters': bad node id in '{entry}'")
        })?;
    let (host, port) = host_port("controller.quorum.voters", address)?;
    Ok(Voter { id, host, port })
}

fn host_port(key: &str, address: &str) -> Result<(String, u16)> {
    let (host, port) = address
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("config key '{key}': '{address}' has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("config key '{key}': bad port in '{address}'"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(pairs: &[(&str, &str)], node_id: i32) -> Result<QuorumSettings> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(|k| map.get(k).cloned(), node_id)
    }

    // Proves contract 1's config parses, with Kafka's defaults, and bad ones are refused.
    #[test]
    fn contract_config_parses() {
        let s = settings(
            &[
                ("process.roles", "broker,controller"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
                ),
                ("controller.listener.names", "CONTROLLER"),
                (
                    "controller.quorum.voters",
                    "1@127.0.0.1:19093,2@127.0.0.1:29093,3@127.0.0.1:39093",
                ),
            ],
            1,
        )
        .unwrap();
        assert_eq!(s.voters.len(), 3);
        assert_eq!(s.voters[1].address(), "127.0.0.1:29093");
        assert_eq!(
            s.listener,
            Some(("CONTROLLER".into(), "127.0.0.1".into(), 19093))
        );
        assert_eq!(s.election_timeout_ms, 1000);
        assert!(settings(&[], 1).unwrap() == QuorumSettings::default());
        assert!(settings(&[("controller.quorum.voters", "1@h:1")], 2).is_err());
        assert!(settings(&[("controller.quorum.voters", "x@h:1")], 1).is_err());
        assert!(settings(&[("process.roles", "observer")], 1).is_err());
    }

    // Proves Kafka's role checks: a broker-only node is not a voter and binds no CONTROLLER
    // listener, a controller-only node binds nothing else, and either needs a quorum.
    #[test]
    fn roles_are_checked_as_kafka_checks_them() {
        let voters = ("controller.quorum.voters", "1@127.0.0.1:19093");
        let names = ("controller.listener.names", "CONTROLLER");
        let broker = settings(
            &[
                ("process.roles", "broker"),
                ("listeners", "PLAINTEXT://127.0.0.1:49092"),
                names,
                voters,
            ],
            4,
        )
        .unwrap();
        assert!(broker.broker && !broker.controller);
        assert_eq!(broker.listener, None);
        assert_eq!(broker.listener_name, "CONTROLLER");
        let refused = |pairs: &[(&str, &str)], id: i32, says: &str| {
            let e = settings(pairs, id).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        };
        refused(
            &[
                ("process.roles", "broker"),
                ("listeners", "PLAINTEXT://127.0.0.1:19092"),
                names,
                voters,
            ],
            1,
            "must not be included in the set of voters",
        );
        refused(
            &[
                ("process.roles", "broker"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:49092,CONTROLLER://127.0.0.1:49093",
                ),
                names,
                voters,
            ],
            4,
            "must not contain KRaft controller listeners",
        );
        refused(
            &[
                ("process.roles", "controller"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
                ),
                names,
                voters,
            ],
            1,
            "must only contain KRaft controller listeners",
        );
        refused(&[("process.roles", "broker")], 1, "needs the quorum");
        let controller = settings(
            &[
                ("process.roles", "controller"),
                ("listeners", "CONTROLLER://127.0.0.1:19093"),
                names,
                voters,
            ],
            1,
        )
        .unwrap();
        assert!(controller.controller && !controller.broker);
    }
}
