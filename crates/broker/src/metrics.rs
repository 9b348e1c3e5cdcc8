//! The broker's metrics registry: counters the connections and handlers bump, owned by the
//! broker and read by whoever exposes them (the admin endpoint of the operations work). Plain
//! atomics, fixed at start: recording never allocates or locks on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

/// API keys are below this (Kafka 4.1's highest is 92).
const API_KEYS_MAX: usize = 128;

/// Per-API request counters (Kafka's `kafka.network:type=RequestMetrics,name=...,request=...`).
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// Requests answered or applied (`RequestsPerSec`).
    pub requests: AtomicU64,
    /// Microseconds from decoded to applied, summed (`TotalTimeMs` as a sum, with `requests`
    /// for the mean).
    pub time_us_total: AtomicU64,
    /// Request frame bytes received.
    pub bytes_in: AtomicU64,
}

/// Every metric of the broker.
#[derive(Debug)]
pub struct Metrics {
    apis: Vec<ApiMetrics>,
    /// Connections accepted and closed (`connection-creation-total` / `connection-close-total`).
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    /// Connections closed for a protocol violation (bad frame, unsupported version, hostile
    /// body): the count an operator watches for misbehaving clients.
    pub connections_refused: AtomicU64,
    /// Connections on an SSL listener whose TLS handshake failed or timed out (Kafka's
    /// `failed-authentication-total`).
    pub authentications_failed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            apis: (0..API_KEYS_MAX).map(|_| ApiMetrics::default()).collect(),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            authentications_failed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// The counters of one API.
    pub fn api(&self, key: ApiKey) -> &ApiMetrics {
        let index = usize::try_from(key as i16).unwrap_or(0);
        assert!(index < API_KEYS_MAX, "api key {index} beyond the registry");
        &self.apis[index]
    }

    /// Records one applied request of `key` with its frame size and handling time.
    pub fn record_request(&self, key: ApiKey, frame_bytes: usize, time_us: u64) {
        let api = self.api(key);
        api.requests.fetch_add(1, Ordering::Relaxed);
        api.time_us_total.fetch_add(time_us, Ordering::Relaxed);
        api.bytes_in.fetch_add(
            u64::try_from(frame_bytes).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves each API's counters are its own and add up.
    #[test]
    fn requests_are_counted_per_api() {
        let metrics = Metrics::default();
        metrics.record_request(ApiKey::Produce, 100, 7);
        metrics.record_request(ApiKey::Produce, 50, 3);
        metrics.record_request(ApiKey::Fetch, 10, 1);
        let produce = metrics.api(ApiKey::Produce);
        assert_eq!(produce.requests.load(Ordering::Relaxed), 2);
        assert_eq!(produce.bytes_in.load(Ordering::Relaxed), 150);
        assert_eq!(produce.time_us_total.load(Ordering::Relaxed), 10);
        assert_eq!(
            metrics.api(ApiKey::Fetch).requests.load(Ordering::Relaxed),
            1
        );
        // Every API key kafka-protocol knows fits the registry.
        for key in ApiKey::iter() {
            let _ = metrics.api(key);
        }
    }
}
