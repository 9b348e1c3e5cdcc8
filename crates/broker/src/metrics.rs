//! The broker's metrics registry: counters and latency histograms the connections and handlers
//! bump, owned by the broker and read by the admin endpoint (`admin::exposition`) on scrape.
//! Plain atomics, fixed at start and indexed by API key, version and error code: recording
//! never allocates, formats or locks on the request path. Names, labels and the Prometheus text
//! are made on scrape only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// API keys are below this (Kafka 4.1's highest is 92).
const API_KEYS_MAX: usize = 128;

/// Request versions counted apart are below this (Kafka 4.1's highest is Fetch v18); a higher
/// one, which the API table never accepts, is counted in the last slot.
pub const API_VERSIONS_MAX: usize = 32;

/// Error codes counted apart: -1 (`UNKNOWN_SERVER_ERROR`) up to this minus 2 (Kafka 4.1's
/// highest is 133); others are counted in the last slot.
pub const ERROR_CODES_MAX: usize = 160;

/// Upper bounds of the latency histograms' buckets, in microseconds (100 µs to 30 s, about
/// 2.5x apart): the range from a page-cache produce to a long-polling fetch's `max_wait_ms`.
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000, 30_000_000,
];

/// Buckets of a histogram: one per bound and the `+Inf` one.
const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// A latency histogram of atomics: `observe` is a handful of relaxed adds and no lock, so
/// many connections record into the same one without contending on anything but cache lines.
/// Buckets are kept per range (not cumulative); the encoder adds them up.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// A histogram read for exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    pub count: u64,
    /// (upper bound in seconds, observations above the previous bound and at or below this
    /// one): per bucket, as the encoder takes them (it adds them up). The last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub const fn new() -> Self {
        LatencyHistogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let index = LATENCY_BUCKETS_US.partition_point(|bound| *bound < us);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The histogram as of now. Read without a lock, so under load the sum may be a few
    /// observations ahead of or behind the buckets; the count is taken from the buckets so
    /// the exposition stays self-consistent.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(index, bucket)| {
                let bound = LATENCY_BUCKETS_US
                    .get(index)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (bound, bucket.load(Ordering::Relaxed))
            })
            .collect();
        HistogramSnapshot {
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

/// Where a request's time went, as Kafka's `RequestMetrics` splits it.
#[derive(Debug, Default)]
pub struct RequestTimes {
    /// Frame read to handler start: decoding, and waiting at the pipelining barrier for
    /// earlier produces (`RequestQueueTimeMs`).
    pub queue: LatencyHistogram,
    /// In the handler (`LocalTimeMs`).
    pub local: LatencyHistogram,
    /// Waiting for the group commit's fsync after the handler, fsync-mode produces only
    /// (`RemoteTimeMs`: Kafka's purgatory wait).
    pub remote: LatencyHistogram,
    /// Answer ready to its write starting: waiting behind earlier answers of the connection
    /// (`ResponseQueueTimeMs`).
    pub response_queue: LatencyHistogram,
    /// Writing the answer to the socket (`ResponseSendTimeMs`).
    pub send: LatencyHistogram,
    /// Frame read to answer written (`TotalTimeMs`).
    pub total: LatencyHistogram,
}

/// Per-API request counters (Kafka's `kafka.network:type=RequestMetrics,name=...,request=...`).
#[derive(Debug)]
pub struct ApiMetrics {
    /// Requests applied, by version (`RequestsPerSec` with its `version` tag).
    pub requests_by_version: [AtomicU64; API_VERSIONS_MAX],
    /// Request frame bytes received (`RequestBytes`, as a sum).
    pub bytes_in: AtomicU64,
    /// Where the time went.
    pub times: RequestTimes,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests_by_version: [const { AtomicU64::new(0) }; API_VERSIONS_MAX],
            bytes_in: AtomicU64::new(0),
            times: RequestTimes::default(),
        }
    }
}

impl ApiMetrics {
    /// Requests of every version.
    pub fn requests(&self) -> u64 {
        self.requests_by_version
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counts by Kafka error code.
#[derive(Debug)]
pub struct ErrorCounts {
    counts: [AtomicU64; ERROR_CODES_MAX],
}

impl Default for ErrorCounts {
    fn default() -> Self {
        ErrorCounts {
            counts: [const { AtomicU64::new(0) }; ERROR_CODES_MAX],
        }
    }
}

impl ErrorCounts {
    /// Counts one `code`; 0 (no error) is not counted.
    pub fn record(&self, code: i16) {
        if code == 0 {
            return;
        }
        let slot = usize::try_from(i32::from(code) + 1)
            .unwrap_or(ERROR_CODES_MAX - 1)
            .min(ERROR_CODES_MAX - 1);
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// (code, count) of every code seen; codes beyond the table are summed under the last one.
    pub fn nonzero(&self) -> Vec<(i16, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter_map(|(slot, count)| {
                let count = count.load(Ordering::Relaxed);
                let code = i16::try_from(slot).ok()? - 1;
                (count > 0).then_some((code, count))
            })
            .collect()
    }
}

/// Every broker-wide metric.
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
    /// Partition-level error codes of produce answers (`ErrorsPerSec,request=Produce`).
    pub produce_errors: ErrorCounts,
    /// Error codes of fetch answers, top-level and per partition (`ErrorsPerSec,request=Fetch`).
    pub fetch_errors: ErrorCounts,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            apis: (0..API_KEYS_MAX).map(|_| ApiMetrics::default()).collect(),
            connections_opened: AtomicU64::new(0),
            connections_closed: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            authentications_failed: AtomicU64::new(0),
            produce_errors: ErrorCounts::default(),
            fetch_errors: ErrorCounts::default(),
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

    /// Records one applied request of `key` and `version` with its frame size.
    pub fn record_request(&self, key: ApiKey, version: i16, frame_bytes: usize) {
        let api = self.api(key);
        let slot = usize::try_from(version)
            .unwrap_or(0)
            .min(API_VERSIONS_MAX - 1);
        api.requests_by_version[slot].fetch_add(1, Ordering::Relaxed);
        api.bytes_in.fetch_add(
            u64::try_from(frame_bytes).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        // Closed is bumped after opened for the same connection, so this never underflows
        // for long; saturate for the instant it might.
        self.connections_opened
            .load(Ordering::Relaxed)
            .saturating_sub(self.connections_closed.load(Ordering::Relaxed))
    }
}

/// Flush (fsync) latency of partition logs, process-wide (`kafka.log:type=LogFlushStats,
/// name=LogFlushRateAndTimeMs`). A static because a group-commit round, which fsyncs, runs on
/// a blocking thread with only its partition at hand.
pub static LOG_FLUSH: LatencyHistogram = LatencyHistogram::new();

/// Per-partition traffic, bumped where the partition's bytes come and go and summed per topic
/// on scrape (`kafka.server:type=BrokerTopicMetrics,...,topic=...`).
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    /// Bytes of batches appended for clients (`BytesInPerSec`).
    pub bytes_in: AtomicU64,
    /// Records (offsets) appended for clients (`MessagesInPerSec`).
    pub messages_in: AtomicU64,
    /// Record bytes sent to consumers (`BytesOutPerSec`).
    pub bytes_out: AtomicU64,
}

impl PartitionTraffic {
    /// Counts one appended client batch of `bytes` holding offsets `base..=last`.
    pub fn record_in(&self, bytes: usize, base_offset: i64, last_offset: i64) {
        self.bytes_in
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
        let messages = u64::try_from(last_offset - base_offset + 1).unwrap_or(0);
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves each API's counters are its own and add up, by version.
    #[test]
    fn requests_are_counted_per_api_and_version() {
        let metrics = Metrics::default();
        metrics.record_request(ApiKey::Produce, 9, 100);
        metrics.record_request(ApiKey::Produce, 11, 50);
        metrics.record_request(ApiKey::Fetch, 12, 10);
        let produce = metrics.api(ApiKey::Produce);
        assert_eq!(produce.requests(), 2);
        assert_eq!(produce.requests_by_version[9].load(Ordering::Relaxed), 1);
        assert_eq!(produce.requests_by_version[11].load(Ordering::Relaxed), 1);
        assert_eq!(produce.bytes_in.load(Ordering::Relaxed), 150);
        assert_eq!(metrics.api(ApiKey::Fetch).requests(), 1);
        // Every API key and version kafka-protocol knows fits the registry.
        for key in ApiKey::iter() {
            let _ = metrics.api(key);
            assert!(usize::try_from(key.valid_versions().max).unwrap() < API_VERSIONS_MAX);
        }
    }

    // Proves observations land in the first bucket whose bound holds them.
    #[test]
    fn histogram_buckets_hold_their_range() {
        let h = LatencyHistogram::new();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 1));
        assert_eq!(s.buckets[BUCKETS - 2].1, 0);
        assert_eq!(s.buckets[BUCKETS - 1], (f64::INFINITY, 1));
        assert!((s.sum_seconds - 60.000201).abs() < 1e-9);
    }

    // Proves error codes are counted apart, -1 included, and 0 is not an error.
    #[test]
    fn error_codes_are_counted_by_code() {
        let e = ErrorCounts::default();
        e.record(0);
        e.record(-1);
        e.record(6);
        e.record(6);
        e.record(i16::MAX);
        assert_eq!(
            e.nonzero(),
            vec![
                (-1, 1),
                (6, 2),
                (i16::try_from(ERROR_CODES_MAX).unwrap() - 2, 1)
            ]
        );
    }
}
