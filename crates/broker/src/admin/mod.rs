//! The admin HTTP listener: `/metrics` (Prometheus/OpenMetrics text, consumer lag included),
//! `/health` and `/ready`, on its own port (`runnel.admin.listener`, default
//! `127.0.0.1:9644`), never on a Kafka listener.
//!
//! It starts before the logs are recovered, so an orchestrator sees the process alive
//! (`/health`) while `/ready` answers 503 until the broker serves clients, and again once
//! shutdown has begun. `/metrics` answers 503 until the broker is open.
//!
//! Metrics are read on scrape from the atomics the request path bumps (`crate::metrics`) and
//! from the broker's state (partitions, groups, fetch sessions); nothing here runs on the
//! produce or fetch path. See `http` for what a slow or hostile HTTP client can cost.

mod console;
mod exposition;
mod http;
pub mod lag;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::state::Broker;

pub use exposition::render;
pub use http::{
    serve, ADMIN_CONNECTION_TIMEOUT, ADMIN_HEADERS_MAX, ADMIN_HEADER_BYTES_MAX,
    ADMIN_HEADER_READ_TIMEOUT, SCRAPES_CONCURRENT_MAX,
};

/// The config key naming the admin listener's address.
pub const LISTENER_KEY: &str = "runnel.admin.listener";

/// The config key capping the admin listener's open connections.
pub const CONNECTIONS_MAX_KEY: &str = "runnel.admin.connections.max";

/// Where the admin listener binds unless told otherwise: loopback only, so metrics (which
/// name topics and groups) are not exposed to the network by default.
pub const DEFAULT_LISTENER: &str = "127.0.0.1:9644";

/// `runnel.admin.connections.max`'s default: a few scrapers and probes at once.
pub const DEFAULT_CONNECTIONS_MAX: usize = 16;

/// The admin listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `HOST:PORT` to bind; `None`: no admin listener (`runnel.admin.listener = ""`).
    pub listener: Option<String>,
    /// Whether `listener` was configured (not the default): a configured address that cannot
    /// be bound stops startup; the default one only logs a warning, so a second broker on the
    /// same machine (tests, a laptop) still starts.
    pub explicit: bool,
    /// `runnel.admin.connections.max`: open admin connections at once; further clients wait in
    /// the kernel's backlog.
    pub connections_max: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listener: Some(DEFAULT_LISTENER.to_owned()),
            explicit: false,
            connections_max: DEFAULT_CONNECTIONS_MAX,
        }
    }
}

impl AdminConfig {
    /// Reads the admin keys from `get` (trimmed values by key).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<AdminConfig> {
        let mut config = AdminConfig::default();
        if let Some(v) = get(LISTENER_KEY) {
            config.explicit = true;
            config.listener = match v.as_str() {
                "" | "none" | "off" => None,
                address => {
                    if address
                        .rsplit_once(':')
                        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
                    {
                        anyhow::bail!(
                            "config key '{LISTENER_KEY}': '{address}' is not HOST:PORT (or \"\" to turn the admin listener off)"
                        );
                    }
                    Some(address.to_owned())
                }
            };
        }
        if let Some(v) = get(CONNECTIONS_MAX_KEY) {
            config.connections_max = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                anyhow::anyhow!("config key '{CONNECTIONS_MAX_KEY}': '{v}' is not a number >= 1")
            })?;
        }
        Ok(config)
    }
}

/// What the admin listener answers from: readiness and, once open, the broker.
pub struct AdminState {
    /// The broker serves clients: logs recovered, coordinators loaded, listeners bound, and
    /// shutdown not begun. (In a cluster this will also require being unfenced.)
    ready: AtomicBool,
    /// The broker, once open.
    broker: OnceLock<Arc<Broker>>,
    /// Scrapes rendering at once (`SCRAPES_CONCURRENT_MAX`): each walks every partition and
    /// group, so many parallel clients must not multiply that work.
    scrapes: tokio::sync::Semaphore,
}

impl AdminState {
    pub fn new() -> Arc<AdminState> {
        Arc::new(AdminState {
            ready: AtomicBool::new(false),
            broker: OnceLock::new(),
            scrapes: tokio::sync::Semaphore::new(SCRAPES_CONCURRENT_MAX),
        })
    }

    /// The broker is open and serves clients: `/metrics` and `/ready` answer.
    pub fn broker_ready(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::clone(broker));
        self.ready.store(true, Ordering::Release);
    }

    /// Shutdown began: `/ready` answers 503 so load balancers stop sending clients.
    pub fn shutting_down(&self) {
        self.ready.store(false, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> anyhow::Result<AdminConfig> {
        AdminConfig::parse(|key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    // Proves the defaults, turning the listener off, and the refusal of malformed values.
    #[test]
    fn admin_config_parses_and_refuses() {
        assert_eq!(parse(&[]).unwrap(), AdminConfig::default());
        assert_eq!(
            parse(&[(LISTENER_KEY, "0.0.0.0:9000")]).unwrap(),
            AdminConfig {
                listener: Some("0.0.0.0:9000".into()),
                explicit: true,
                connections_max: DEFAULT_CONNECTIONS_MAX,
            }
        );
        assert_eq!(parse(&[(LISTENER_KEY, "")]).unwrap().listener, None);
        assert!(parse(&[(LISTENER_KEY, "localhost")]).is_err());
        assert!(parse(&[(LISTENER_KEY, "localhost:99999")]).is_err());
        assert!(parse(&[(CONNECTIONS_MAX_KEY, "0")]).is_err());
        assert_eq!(
            parse(&[(CONNECTIONS_MAX_KEY, "3")])
                .unwrap()
                .connections_max,
            3
        );
    }
}
