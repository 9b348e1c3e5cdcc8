//! `/metrics`: the broker's metrics in OpenMetrics text (which Prometheus scrapes natively),
//! read on scrape from the request path's atomics and from the broker's state.
//!
//! Every family is written on every scrape, samples or not, so the set of names is fixed: the
//! table in `docs/metrics.md` maps each to its Kafka JMX name, and a test fails when the two
//! drift. Counters are exposed as `<name>_total`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::lag::{self, LAG_PARTITIONS_MAX};
use crate::metrics::{ErrorCounts, HistogramSnapshot, RequestTimes};
use crate::state::Broker;

/// Partitions whose log metrics (size, segments, offsets) one scrape writes; beyond it they
/// are left out (and counted in `runnel_log_partitions_skipped`), bounding a scrape's size.
pub const LOG_PARTITIONS_MAX: usize = 10_000;

/// The text of one scrape.
pub fn render(broker: &Arc<Broker>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        broker: Arc::clone(broker),
    }));
    let mut out = String::with_capacity(64 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Reads the broker when the registry is encoded.
struct Scrape {
    broker: Arc<Broker>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let broker = &*self.broker;
        let e = &mut encoder;
        topics(e, broker)?;
        requests(e, broker)?;
        connections(e, broker)?;
        logs(e, broker)?;
        groups(e, broker)?;
        fetch_sessions(e, broker)?;
        cluster(e, broker)?;
        consumer_lag(e, broker)
    }
}

/// The cluster as this node's metadata image shows it, and its part in the quorum.
fn cluster(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let image = broker.image();
    let registrations = || image.topics.values().flat_map(|t| t.registrations.values());
    let offline = registrations().filter(|p| p.leader < 0).count();
    let (unfenced, fenced) =
        image.brokers.values().fold(
            (0u64, 0u64),
            |(u, f), b| if b.fenced { (u, f + 1) } else { (u + 1, f) },
        );
    for (name, help, value) in [
        (
            "runnel_active_controller",
            "1 while this node is the active controller, else 0.",
            i64::from(broker.metadata.is_active_controller()),
        ),
        (
            "runnel_global_topics",
            "Topics in the cluster.",
            i64::try_from(image.topics.len()).unwrap_or(i64::MAX),
        ),
        (
            "runnel_global_partitions",
            "Partitions in the cluster.",
            image.topics.values().map(|t| i64::from(t.partitions)).sum(),
        ),
        (
            "runnel_offline_partitions",
            "Partitions without a leader.",
            i64::try_from(offline).unwrap_or(i64::MAX),
        ),
        (
            "runnel_metadata_offset",
            "Offset of the last metadata batch this node applied.",
            image.offset,
        ),
    ] {
        family(e, name, help, MetricType::Gauge)?.encode_gauge(&value)?;
    }
    {
        let mut m = family(
            e,
            "runnel_brokers",
            "Registered brokers, by whether they are fenced.",
            MetricType::Gauge,
        )?;
        gauge(&mut m, &[("state", "unfenced")], unfenced)?;
        gauge(&mut m, &[("state", "fenced")], fenced)?;
    }
    if let Some(quorum) = broker.metadata.quorum() {
        let status = quorum.status();
        let leader = quorum
            .active_controller()
            .map_or(-1, |(id, _)| i64::from(id));
        for (name, help, value) in [
            (
                "runnel_metadata_quorum_leader",
                "The node id of the active controller this node knows of, -1 when none.",
                leader,
            ),
            (
                "runnel_metadata_quorum_epoch",
                "The metadata quorum's current epoch (Raft term) on this node.",
                i64::try_from(status.term).unwrap_or(i64::MAX),
            ),
        ] {
            family(e, name, help, MetricType::Gauge)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

fn family<'e>(
    encoder: &'e mut DescriptorEncoder,
    name: &'e str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'e>, fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

fn counter(metric: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> fmt::Result {
    metric
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    metric: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: V,
) -> fmt::Result {
    metric.encode_family(labels)?.encode_gauge(&value)
}

fn histogram(
    metric: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    h: &HistogramSnapshot,
) -> fmt::Result {
    metric
        .encode_family(labels)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
}

/// Per-topic traffic, summed over the topic's partitions held here.
fn topics(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let mut by_topic: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    for partition in broker.replicas.all() {
        let t = &partition.traffic;
        let sums = by_topic.entry(partition.topic.name.clone()).or_default();
        sums[0] += t.bytes_in.load(Ordering::Relaxed);
        sums[1] += t.messages_in.load(Ordering::Relaxed);
        sums[2] += t.bytes_out.load(Ordering::Relaxed);
    }
    for (index, name, help) in [
        (
            0,
            "runnel_topic_bytes_in",
            "Bytes of record batches appended to the topic.",
        ),
        (
            1,
            "runnel_topic_messages_in",
            "Records (offsets) appended to the topic.",
        ),
        (
            2,
            "runnel_topic_bytes_out",
            "Record bytes sent to consumers from the topic.",
        ),
    ] {
        let mut m = family(e, name, help, MetricType::Counter)?;
        for (topic, sums) in &by_topic {
            counter(&mut m, &[("topic", topic.as_str())], sums[index])?;
        }
    }
    Ok(())
}

/// Kafka's name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`).
fn error_name(code: i16) -> String {
    let Some(error) = ResponseError::try_from_code(code) else {
        return "UNKNOWN".to_owned();
    };
    let camel = format!("{error:?}");
    if !camel.chars().all(|c| c.is_ascii_alphanumeric()) {
        // kafka-protocol's `Unknown(code)`.
        return "UNKNOWN".to_owned();
    }
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn requests(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let metrics = &broker.metrics;
    // Only APIs that saw a request: ninety silent APIs would be noise.
    let used: Vec<(ApiKey, String)> = ApiKey::iter()
        .filter(|key| metrics.api(*key).requests() > 0)
        .map(|key| (key, format!("{key:?}")))
        .collect();
    {
        let mut m = family(
            e,
            "runnel_requests",
            "Requests applied, by API and version.",
            MetricType::Counter,
        )?;
        for (key, name) in &used {
            for (version, count) in metrics.api(*key).requests_by_version.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let version = version.to_string();
                    counter(
                        &mut m,
                        &[("api", name.as_str()), ("version", version.as_str())],
                        count,
                    )?;
                }
            }
        }
    }
    {
        let mut m = family(
            e,
            "runnel_request_bytes",
            "Bytes of request frames received, by API.",
            MetricType::Counter,
        )?;
        for (key, name) in &used {
            let bytes = metrics.api(*key).bytes_in.load(Ordering::Relaxed);
            counter(&mut m, &[("api", name.as_str())], bytes)?;
        }
    }
    type Pick = fn(&RequestTimes) -> &crate::metrics::LatencyHistogram;
    let stages: [(&str, &str, Pick); 6] = [
        (
            "runnel_request_queue_seconds",
            "Time from a request's frame read to its handler starting (decoding, pipelining barrier).",
            |t| &t.queue,
        ),
        (
            "runnel_request_local_seconds",
            "Time in the request's handler.",
            |t| &t.local,
        ),
        (
            "runnel_request_remote_seconds",
            "Time a produce waited for its group-commit fsync after its handler (fsync mode).",
            |t| &t.remote,
        ),
        (
            "runnel_response_queue_seconds",
            "Time from an answer being ready to its write starting (behind earlier answers).",
            |t| &t.response_queue,
        ),
        (
            "runnel_response_send_seconds",
            "Time writing an answer to the socket.",
            |t| &t.send,
        ),
        (
            "runnel_request_total_seconds",
            "Time from a request's frame read to its answer written.",
            |t| &t.total,
        ),
    ];
    for (name, help, pick) in stages {
        let mut m = family(e, name, help, MetricType::Histogram)?;
        for (key, api) in &used {
            let h = pick(&metrics.api(*key).times).snapshot();
            if h.count > 0 {
                histogram(&mut m, &[("api", api.as_str())], &h)?;
            }
        }
    }
    let mut m = family(
        e,
        "runnel_request_errors",
        "Error codes in produce and fetch answers (per partition, and fetch's top level).",
        MetricType::Counter,
    )?;
    for (api, errors) in [
        ("Produce", &metrics.produce_errors),
        ("Fetch", &metrics.fetch_errors),
    ] {
        errors_by_code(&mut m, api, errors)?;
    }
    Ok(())
}

fn errors_by_code(m: &mut MetricEncoder, api: &str, errors: &ErrorCounts) -> fmt::Result {
    for (code, count) in errors.nonzero() {
        let name = error_name(code);
        let code = code.to_string();
        counter(
            m,
            &[
                ("api", api),
                ("error", name.as_str()),
                ("code", code.as_str()),
            ],
            count,
        )?;
    }
    Ok(())
}

fn connections(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let metrics = &broker.metrics;
    family(
        e,
        "runnel_connections",
        "Client connections open on the Kafka listeners.",
        MetricType::Gauge,
    )?
    .encode_gauge(&metrics.connections_open())?;
    for (name, help, value) in [
        (
            "runnel_connections_opened",
            "Client connections accepted.",
            &metrics.connections_opened,
        ),
        (
            "runnel_connections_closed",
            "Client connections closed.",
            &metrics.connections_closed,
        ),
        (
            "runnel_connections_refused",
            "Client connections closed for a protocol violation (bad frame, unsupported version, malformed request).",
            &metrics.connections_refused,
        ),
        (
            "runnel_authentications_failed",
            "Connections on SSL listeners whose TLS handshake failed or timed out.",
            &metrics.authentications_failed,
        ),
    ] {
        family(e, name, help, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value.load(Ordering::Relaxed), None)?;
    }
    Ok(())
}

fn logs(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let mut partitions = broker.replicas.all();
    partitions.sort_by(|a, b| (&a.topic.name, a.index).cmp(&(&b.topic.name, b.index)));
    let held = partitions.len();
    let image = broker.image();
    let node_id = broker.node_id();
    let led = image
        .topics
        .values()
        .flat_map(|t| t.registrations.values())
        .filter(|p| p.leader == node_id)
        .count();
    for (name, help, value) in [
        (
            "runnel_partitions",
            "Partitions this broker holds a replica of.",
            held,
        ),
        (
            "runnel_partitions_led",
            "Partitions this broker leads.",
            led,
        ),
    ] {
        family(e, name, help, MetricType::Gauge)?.encode_gauge(&value)?;
    }
    let skipped = held.saturating_sub(LOG_PARTITIONS_MAX);
    partitions.truncate(LOG_PARTITIONS_MAX);
    // (size, segments, log start, log end) per partition; an unreadable (poisoned) log is
    // left out.
    let read: Vec<_> = partitions
        .iter()
        .filter_map(|p| {
            let snapshot = p.reader().snapshot().ok()?;
            let index = p.index.to_string();
            Some((
                p.topic.name.as_str(),
                index,
                [
                    i64::try_from(snapshot.size_bytes()).unwrap_or(i64::MAX),
                    i64::try_from(snapshot.segment_count()).unwrap_or(i64::MAX),
                    snapshot.log_start_offset(),
                    snapshot.log_end_offset(),
                ],
            ))
        })
        .collect();
    for (column, name, help) in [
        (
            0,
            "runnel_log_size_bytes",
            "Bytes of the partition's log segments.",
        ),
        (1, "runnel_log_segments", "Segments of the partition's log."),
        (
            2,
            "runnel_log_start_offset",
            "The partition's log start offset.",
        ),
        (
            3,
            "runnel_log_end_offset",
            "The partition's log end offset.",
        ),
    ] {
        let mut m = family(e, name, help, MetricType::Gauge)?;
        for (topic, index, values) in &read {
            gauge(
                &mut m,
                &[("topic", *topic), ("partition", index.as_str())],
                values[column],
            )?;
        }
    }
    family(
        e,
        "runnel_log_partitions_skipped",
        "Partitions left out of the per-partition log metrics (beyond the scrape's limit).",
        MetricType::Gauge,
    )?
    .encode_gauge(&skipped)?;
    let flush = crate::metrics::LOG_FLUSH.snapshot();
    family(
        e,
        "runnel_log_flush_seconds",
        "Time of each fsync of a partition log by the group commit (fsync mode).",
        MetricType::Histogram,
    )?
    .encode_histogram::<NoLabelSet>(flush.sum_seconds, flush.count, &flush.buckets, None)
}

fn groups(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let mut counts: std::collections::BTreeMap<(&'static str, &'static str), u64> =
        Default::default();
    broker.groups.inspect(|shard| {
        for state in shard.group_states() {
            *counts.entry(state).or_default() += 1;
        }
    });
    {
        let mut m = family(
            e,
            "runnel_consumer_groups",
            "Groups by protocol type (classic, consumer) and state.",
            MetricType::Gauge,
        )?;
        for ((kind, state), count) in &counts {
            gauge(&mut m, &[("type", *kind), ("state", *state)], *count)?;
        }
    }
    let mut m = family(
        e,
        "runnel_group_rebalances",
        "Group rebalances committed, by protocol type.",
        MetricType::Counter,
    )?;
    for (kind, count) in [
        ("classic", &crate::group_events::CLASSIC_REBALANCES),
        ("consumer", &crate::group_events::CONSUMER_REBALANCES),
    ] {
        counter(&mut m, &[("type", kind)], count.load(Ordering::Relaxed))?;
    }
    Ok(())
}

fn fetch_sessions(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let (sessions, partitions, evictions) = {
        let cache = broker.fetch_sessions();
        (
            cache.len(),
            cache.partitions_cached(),
            cache.evictions_total(),
        )
    };
    family(
        e,
        "runnel_fetch_sessions",
        "Incremental fetch sessions cached (KIP-227).",
        MetricType::Gauge,
    )?
    .encode_gauge(&sessions)?;
    family(
        e,
        "runnel_fetch_session_partitions",
        "Partitions cached across all incremental fetch sessions.",
        MetricType::Gauge,
    )?
    .encode_gauge(&partitions)?;
    family(
        e,
        "runnel_fetch_session_evictions",
        "Incremental fetch sessions evicted to make room.",
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, _, u64>(&evictions, None)
}

fn consumer_lag(e: &mut DescriptorEncoder, broker: &Broker) -> fmt::Result {
    let report = lag::compute(broker, crate::clock::now_ms(), LAG_PARTITIONS_MAX);
    let labelled: Vec<_> = report
        .partitions
        .iter()
        .map(|p| (p, p.partition.to_string()))
        .collect();
    let labels = |(p, index): &(&lag::PartitionLag, String)| {
        [
            ("group", p.group.clone()),
            ("topic", p.topic.clone()),
            ("partition", index.clone()),
        ]
    };
    {
        let mut m = family(
            e,
            "runnel_consumer_group_committed_offset",
            "The group's committed offset on the partition.",
            MetricType::Gauge,
        )?;
        for entry in &labelled {
            gauge(&mut m, &labels(entry), entry.0.committed_offset)?;
        }
    }
    {
        let mut m = family(
            e,
            "runnel_consumer_group_lag",
            "Offsets between the group's committed offset and the partition's high watermark.",
            MetricType::Gauge,
        )?;
        for entry in &labelled {
            gauge(&mut m, &labels(entry), entry.0.lag_offsets)?;
        }
    }
    {
        let mut m = family(
            e,
            "runnel_consumer_group_lag_seconds",
            "Age of the oldest record the group has not consumed on the partition (0 when caught up).",
            MetricType::Gauge,
        )?;
        for entry in &labelled {
            gauge(&mut m, &labels(entry), entry.0.lag_seconds)?;
        }
    }
    family(
        e,
        "runnel_consumer_group_lag_partitions_skipped",
        "Committed offsets whose lag was not computed (beyond the scrape's limit, or partition not held).",
        MetricType::Gauge,
    )?
    .encode_gauge(&report.skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves error codes get Kafka's enum names.
    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
    }
}
