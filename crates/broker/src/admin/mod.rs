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
pub mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::state::Broker;

pub use exposition::render;
pub use http::{
    serve, ADMIN_CONNECTION_TIMEOUT, ADMIN_HEADERS_MAX, ADMIN_HEADER_BYTES_MAX,
    ADMIN_HEADER_READ_TIMEOUT, SCRAPES_CONCURRENT_MAX,
};
pub use settings::{
    AdminConfig, CONNECTIONS_MAX_KEY, DEFAULT_CONNECTIONS_MAX, DEFAULT_LISTENER, LISTENER_KEY,
};

/// What the admin listener answers from: readiness and, once open, the broker.
pub struct AdminState {
    /// The broker serves clients: logs recovered, coordinators loaded, listeners bound, in a
    /// quorum registered and unfenced, and shutdown not begun.
    ready: AtomicBool,
    /// Shutdown began: never ready again.
    stopping: AtomicBool,
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
            stopping: AtomicBool::new(false),
            broker: OnceLock::new(),
            scrapes: tokio::sync::Semaphore::new(SCRAPES_CONCURRENT_MAX),
        })
    }

    /// The broker is open: `/metrics` answers.
    pub fn broker_open(&self, broker: &Arc<Broker>) {
        let _ = self.broker.set(Arc::clone(broker));
    }

    /// The broker serves clients: `/ready` answers 200 (unless shutdown already began).
    pub fn serving(&self) {
        if !self.stopping.load(Ordering::Acquire) {
            self.ready.store(true, Ordering::Release);
            // A shutdown that began meanwhile wins.
            if self.stopping.load(Ordering::Acquire) {
                self.ready.store(false, Ordering::Release);
            }
        }
    }

    /// Shutdown began: `/ready` answers 503 so load balancers stop sending clients.
    pub fn shutting_down(&self) {
        self.stopping.store(true, Ordering::Release);
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
