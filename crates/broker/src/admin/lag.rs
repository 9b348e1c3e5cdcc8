//! Consumer-group lag, computed on scrape (what Kafka users run Burrow or kafka-lag-exporter
//! for): per committed (group, topic, partition), the offsets between the committed offset and
//! the high watermark, and the age of the oldest unconsumed record, i.e. now minus the
//! timestamp of the first record at or past the committed offset (0 when caught up).
//!
//! The work is bounded: at most `LAG_PARTITIONS_MAX` committed offsets are looked at per
//! scrape (the rest are counted as skipped), each costing one offset-index lookup and one
//! batch read. Nothing here touches the produce or fetch path; the coordinator shards are
//! locked only to copy their committed offsets.

use runnel_storage::StorageError;

use crate::state::Broker;

/// Committed offsets whose lag one scrape computes. Beyond it the rest are skipped (and
/// counted), so a broker with millions of group partitions answers scrapes in bounded time.
pub const LAG_PARTITIONS_MAX: usize = 10_000;

/// The lag of one group on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset.
    pub committed_offset: i64,
    /// The partition's high watermark when looked at.
    pub high_watermark: i64,
    /// `high_watermark - committed_offset`, 0 when the commit is at or past it.
    pub lag_offsets: i64,
    /// Age of the oldest unconsumed record in seconds; 0 when caught up.
    pub lag_seconds: f64,
}

/// The lag of every committed offset looked at, and how many were left out.
#[derive(Debug, Default)]
pub struct LagReport {
    pub partitions: Vec<PartitionLag>,
    /// Committed offsets beyond `LAG_PARTITIONS_MAX` (or of partitions not held here).
    pub skipped: usize,
}

/// The lag of the groups' committed offsets as of `now_ms`. Reads partition files.
pub fn compute(broker: &Broker, now_ms: i64, limit: usize) -> LagReport {
    let mut report = LagReport::default();
    let mut committed: Vec<(String, String, i32, i64)> = Vec::new();
    broker.groups.inspect(|shard| {
        let offsets = shard.committed_offsets();
        for group in offsets.groups() {
            let Some(topics) = offsets.group(group) else {
                continue;
            };
            for (topic, partitions) in topics {
                if committed.len() >= limit {
                    // Counted, not walked: the shard's lock is held while this runs.
                    report.skipped += partitions.len();
                    continue;
                }
                for (partition, value) in partitions {
                    if committed.len() < limit {
                        committed.push((group.clone(), topic.clone(), *partition, value.offset));
                    } else {
                        report.skipped += 1;
                    }
                }
            }
        }
    });
    measure(broker, committed, now_ms, &mut report);
    report
}

/// The lag of `group`'s committed offsets as of `now_ms`, at most `limit` of them (the rest
/// counted as skipped), for the console's group page. Reads partition files.
pub fn compute_group(broker: &Broker, group: &str, now_ms: i64, limit: usize) -> LagReport {
    let mut report = LagReport::default();
    let mut committed: Vec<(String, String, i32, i64)> = Vec::new();
    broker.groups.inspect(|shard| {
        let Some(topics) = shard.committed_offsets().group(group) else {
            return;
        };
        for (topic, partitions) in topics {
            for (partition, value) in partitions {
                if committed.len() < limit {
                    committed.push((group.to_owned(), topic.clone(), *partition, value.offset));
                } else {
                    report.skipped += 1;
                }
            }
        }
    });
    measure(broker, committed, now_ms, &mut report);
    report
}

/// Adds the lag of each (group, topic, partition, committed offset) to `report`.
fn measure(
    broker: &Broker,
    committed: Vec<(String, String, i32, i64)>,
    now_ms: i64,
    report: &mut LagReport,
) {
    let image = broker.image();
    for (group, topic, partition, committed_offset) in committed {
        let held = image
            .topic(&topic)
            .and_then(|t| broker.partition(&t.topic_id, partition));
        let Some(held) = held else {
            report.skipped += 1;
            continue;
        };
        match partition_lag(held.reader(), committed_offset, now_ms) {
            Ok((high_watermark, lag_offsets, lag_seconds)) => {
                report.partitions.push(PartitionLag {
                    group,
                    topic,
                    partition,
                    committed_offset,
                    high_watermark,
                    lag_offsets,
                    lag_seconds,
                })
            }
            Err(e) => {
                tracing::debug!(%group, %topic, partition, error = %e, "consumer lag not computed");
                report.skipped += 1;
            }
        }
    }
}

/// (high watermark, lag in offsets, lag in seconds) of a consumer at `committed_offset`.
fn partition_lag(
    reader: &runnel_storage::LogReader,
    committed_offset: i64,
    now_ms: i64,
) -> Result<(i64, i64, f64), StorageError> {
    reader.with_snapshot(|log| {
        let high_watermark = log.high_watermark();
        let lag_offsets = (high_watermark - committed_offset.max(0)).max(0);
        if lag_offsets == 0 {
            return Ok((high_watermark, 0, 0.0));
        }
        let age_ms = log
            .first_record_timestamp_from(committed_offset)?
            .map_or(0, |timestamp| (now_ms - timestamp).max(0));
        Ok((high_watermark, lag_offsets, age_ms as f64 / 1000.0))
    })
}
