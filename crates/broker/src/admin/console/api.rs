//! The console's JSON endpoints (all GET, all read-only):
//!
//! | path | what |
//! |---|---|
//! | `/api/cluster` | cluster id, this node, brokers, counts |
//! | `/api/topics` | topics with partition count, log size and records |
//! | `/api/topics/{name}` | partitions (leader, replicas, ISR, offsets, size, segments), configs |
//! | `/api/groups` | groups with type, state, member count and total lag |
//! | `/api/groups/{id}` | members, committed offsets and lag per partition |
//! | `/api/topics/{name}/partitions/{p}/records?offset=N&limit=M` or `?from=end&limit=M` | records |
//!
//! Every list is cut at a named limit, and the answer says how many there were in all.

use runnel_cluster::topic_config::{self, ConfigSource};
use serde_json::{json, Value};

use super::query;
use super::records::{self, Start, RECORDS_DEFAULT, RECORDS_MAX};
use crate::admin::lag;
use crate::state::Broker;

/// Topics `/api/topics` lists.
pub const TOPICS_MAX: usize = 1000;

/// Partitions whose sizes `/api/topics` reads in all; topics beyond it show no size (`null`).
pub const TOPICS_PARTITIONS_READ_MAX: usize = 20_000;

/// Partitions `/api/topics/{name}` details.
pub const TOPIC_PARTITIONS_MAX: usize = 1000;

/// Groups `/api/groups` lists.
pub const GROUPS_MAX: usize = 1000;

/// Members `/api/groups/{id}` lists.
pub const GROUP_MEMBERS_MAX: usize = 500;

/// Committed offsets (with their lag) `/api/groups/{id}` lists.
pub const GROUP_OFFSETS_MAX: usize = 2000;

/// A parsed API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Cluster,
    Topics,
    Topic(String),
    Groups,
    Group(String),
    Records {
        topic: String,
        partition: i32,
        start: Start,
        limit: i64,
    },
}

/// Why a request gets no data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound(String),
    BadRequest(String),
    /// The partition's log cannot be read now (poisoned by an I/O error, or truncated while
    /// read): 503.
    Unavailable(String),
}

fn bad(why: impl Into<String>) -> Refusal {
    Refusal::BadRequest(why.into())
}

/// Parses `path` (after `/api`) and its query string.
pub fn parse(path: &str, query: &str) -> Result<Call, Refusal> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let decode = |raw: &str| query::percent_decode(raw, false).map_err(bad);
    let call = match segments.as_slice() {
        ["cluster"] => Call::Cluster,
        ["topics"] => Call::Topics,
        ["groups"] => Call::Groups,
        ["topics", name] if !name.is_empty() => Call::Topic(decode(name)?),
        ["groups", id] if !id.is_empty() => Call::Group(decode(id)?),
        ["topics", name, "partitions", partition, "records"] if !name.is_empty() => {
            let partition =
                query::integer("partition", partition, 0, i64::from(i32::MAX)).map_err(bad)?;
            let parameters = query::parameters(query, &["offset", "limit", "from"]).map_err(bad)?;
            let mut start = None;
            let mut limit = RECORDS_DEFAULT;
            for (name, value) in parameters {
                match name {
                    "offset" => {
                        if start.is_some() {
                            return Err(bad("give 'offset' or 'from', not both"));
                        }
                        start = Some(Start::Offset(
                            query::integer("offset", &value, 0, i64::MAX).map_err(bad)?,
                        ));
                    }
                    "from" => {
                        if start.is_some() {
                            return Err(bad("give 'offset' or 'from', not both"));
                        }
                        if value != "end" {
                            return Err(bad("'from' must be 'end'"));
                        }
                        start = Some(Start::End);
                    }
                    _ => limit = query::integer("limit", &value, 1, RECORDS_MAX).map_err(bad)?,
                }
            }
            Call::Records {
                topic: decode(name)?,
                partition: i32::try_from(partition).map_err(|_| bad("partition"))?,
                start: start.unwrap_or(Start::Offset(0)),
                limit,
            }
        }
        _ => return Err(Refusal::NotFound("no such API path".into())),
    };
    // Only the records endpoint takes parameters.
    if !matches!(call, Call::Records { .. }) && !query.is_empty() {
        return Err(bad("this endpoint takes no query parameters"));
    }
    Ok(call)
}

/// The answer to `call`. Reads partition files: run off the runtime's workers.
pub fn answer(broker: &Broker, call: &Call) -> Result<Value, Refusal> {
    match call {
        Call::Cluster => Ok(cluster(broker)),
        Call::Topics => Ok(topics(broker)),
        Call::Topic(name) => topic(broker, name),
        Call::Groups => Ok(groups(broker)),
        Call::Group(id) => group(broker, id),
        Call::Records {
            topic,
            partition,
            start,
            limit,
        } => browse(broker, topic, *partition, *start, *limit),
    }
}

fn cluster(broker: &Broker) -> Value {
    let image = broker.image();
    let brokers: Vec<Value> = image
        .brokers
        .values()
        .map(|b| {
            json!({
                "node_id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
            })
        })
        .collect();
    let mut groups = 0usize;
    broker
        .groups
        .inspect(|shard| groups += shard.group_ids(0).1);
    json!({
        "cluster_id": image.cluster_id,
        "node_id": broker.node_id(),
        // One node is the controller of its own metadata log.
        "controller_id": broker.node_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "brokers": brokers,
        "topic_count": image.topics.len(),
        "partition_count": image.topics.values().map(|t| u64::from(t.partitions)).sum::<u64>(),
        "group_count": groups,
    })
}

/// (size in bytes, records: high watermark - log start) of one held partition, if readable.
fn partition_totals(broker: &Broker, topic_id: &uuid::Uuid, index: i32) -> Option<(u64, i64)> {
    let partition = broker.partition(topic_id, index)?;
    let snapshot = partition.reader().snapshot().ok()?;
    Some((
        snapshot.size_bytes(),
        (snapshot.high_watermark() - snapshot.log_start_offset()).max(0),
    ))
}

fn topics(broker: &Broker) -> Value {
    let image = broker.image();
    let mut read_budget = TOPICS_PARTITIONS_READ_MAX;
    let listed: Vec<Value> = image
        .topics
        .values()
        .take(TOPICS_MAX)
        .map(|t| {
            let count = usize::try_from(t.partitions).unwrap_or(usize::MAX);
            let totals = (count <= read_budget).then(|| {
                read_budget -= count;
                let mut size = 0u64;
                let mut records = 0i64;
                for index in 0..i32::try_from(t.partitions).unwrap_or(i32::MAX) {
                    if let Some((bytes, n)) = partition_totals(broker, &t.topic_id, index) {
                        size = size.saturating_add(bytes);
                        records = records.saturating_add(n);
                    }
                }
                (size, records)
            });
            json!({
                "name": t.name,
                "topic_id": t.topic_id.to_string(),
                "internal": crate::internal_topics::is_internal_topic(&t.name),
                "partitions": t.partitions,
                "size_bytes": totals.map(|(size, _)| size),
                "records": totals.map(|(_, records)| records),
            })
        })
        .collect();
    json!({
        "topics": listed,
        "total": image.topics.len(),
        "truncated": image.topics.len() > TOPICS_MAX,
        "limit": TOPICS_MAX,
    })
}

fn source_name(source: ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopicConfig => "topic",
        ConfigSource::DynamicBrokerConfig => "broker (dynamic)",
        ConfigSource::DynamicDefaultBrokerConfig => "cluster default (dynamic)",
        ConfigSource::StaticBrokerConfig => "broker (static)",
        ConfigSource::DefaultConfig => "default",
        ConfigSource::DynamicBrokerLoggerConfig => "logger",
    }
}

fn topic(broker: &Broker, name: &str) -> Result<Value, Refusal> {
    let image = broker.image();
    let t = image
        .topic(name)
        .ok_or_else(|| Refusal::NotFound(format!("no topic named '{name}'")))?;
    let count = usize::try_from(t.partitions).unwrap_or(usize::MAX);
    let partitions: Vec<Value> = (0..i32::try_from(t.partitions).unwrap_or(i32::MAX))
        .take(TOPIC_PARTITIONS_MAX)
        .map(|index| {
            let registration = t.registration(index);
            let held = broker
                .partition(&t.topic_id, index)
                .and_then(|p| p.reader().snapshot().ok());
            json!({
                "partition": index,
                "leader": registration.map(|r| r.leader),
                "leader_epoch": registration.map(|r| r.leader_epoch),
                "replicas": registration.map(|r| r.replicas.clone()),
                "isr": registration.map(|r| r.isr.clone()),
                "log_start_offset": held.as_ref().map(|s| s.log_start_offset()),
                "high_watermark": held.as_ref().map(|s| s.high_watermark()),
                "log_end_offset": held.as_ref().map(|s| s.log_end_offset()),
                "size_bytes": held.as_ref().map(|s| s.size_bytes()),
                "segments": held.as_ref().map(|s| s.segment_count()),
            })
        })
        .collect();
    let layers = broker.config_layers(&image);
    let configs: Vec<Value> = topic_config::resolve_in(&t.configs, &layers)
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "value": c.value,
                "source": source_name(c.source),
            })
        })
        .collect();
    Ok(json!({
        "name": t.name,
        "topic_id": t.topic_id.to_string(),
        "internal": crate::internal_topics::is_internal_topic(&t.name),
        "partition_count": t.partitions,
        "partitions": partitions,
        "partitions_truncated": count > TOPIC_PARTITIONS_MAX,
        "configs": configs,
    }))
}

fn groups(broker: &Broker) -> Value {
    let mut summaries = Vec::new();
    let mut total = 0usize;
    broker.groups.inspect(|shard| {
        let room = GROUPS_MAX.saturating_sub(summaries.len());
        let (ids, all) = shard.group_ids(room);
        total += all;
        summaries.extend(ids.iter().filter_map(|id| shard.group_summary(id, 0)));
    });
    summaries.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    // Lag summed per group, from the same bounded computation `/metrics` uses.
    let report = lag::compute(broker, crate::clock::now_ms(), lag::LAG_PARTITIONS_MAX);
    let mut lag_by_group: std::collections::BTreeMap<&str, (i64, usize)> = Default::default();
    for p in &report.partitions {
        let entry = lag_by_group.entry(p.group.as_str()).or_default();
        entry.0 = entry.0.saturating_add(p.lag_offsets);
        entry.1 += 1;
    }
    let listed: Vec<Value> = summaries
        .iter()
        .map(|g| {
            let (lag, partitions) = lag_by_group
                .get(g.group_id.as_str())
                .copied()
                .unwrap_or_default();
            json!({
                "group_id": g.group_id,
                "type": g.kind,
                "state": g.state,
                "protocol_type": g.protocol_type,
                "members": g.member_count,
                "lag": lag,
                "partitions": partitions,
            })
        })
        .collect();
    json!({
        "groups": listed,
        "total": total,
        "truncated": total > GROUPS_MAX,
        "limit": GROUPS_MAX,
        "lag_partitions_skipped": report.skipped,
    })
}

fn group(broker: &Broker, id: &str) -> Result<Value, Refusal> {
    let mut found = None;
    broker.groups.inspect(|shard| {
        if found.is_none() {
            found = shard.group_summary(id, GROUP_MEMBERS_MAX);
        }
    });
    let g = found.ok_or_else(|| Refusal::NotFound(format!("no group '{id}'")))?;
    let report = lag::compute_group(broker, id, crate::clock::now_ms(), GROUP_OFFSETS_MAX);
    let mut offsets = report.partitions;
    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
            })
        })
        .collect();
    let offsets: Vec<Value> = offsets
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic,
                "partition": p.partition,
                "committed_offset": p.committed_offset,
                "high_watermark": p.high_watermark,
                "lag": p.lag_offsets,
                "lag_seconds": p.lag_seconds,
            })
        })
        .collect();
    Ok(json!({
        "group_id": g.group_id,
        "type": g.kind,
        "state": g.state,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "member_count": g.member_count,
        "members": members,
        "members_truncated": g.member_count > g.members.len(),
        "offsets": offsets,
        "offsets_skipped": report.skipped,
        "lag": offsets.iter().map(|o| o["lag"].as_i64().unwrap_or(0)).sum::<i64>(),
    }))
}

fn browse(
    broker: &Broker,
    topic: &str,
    partition: i32,
    start: Start,
    limit: i64,
) -> Result<Value, Refusal> {
    let image = broker.image();
    let t = image
        .topic(topic)
        .ok_or_else(|| Refusal::NotFound(format!("no topic named '{topic}'")))?;
    let held = broker.partition(&t.topic_id, partition).ok_or_else(|| {
        Refusal::NotFound(format!(
            "partition {partition} of '{topic}' is not held here"
        ))
    })?;
    let mut answer = held
        .reader()
        .with_snapshot(|log| records::browse(log, start, limit))
        .map_err(|e| Refusal::Unavailable(format!("partition {partition} of '{topic}': {e}")))?;
    answer["topic"] = json!(topic);
    answer["partition"] = json!(partition);
    answer["limit"] = json!(limit);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paths and queries parse strictly: known shapes only, hostile input refused.
    #[test]
    fn parse_accepts_the_api_and_refuses_the_rest() {
        assert_eq!(parse("/cluster", ""), Ok(Call::Cluster));
        assert_eq!(parse("/topics/a%2Eb", ""), Ok(Call::Topic("a.b".into())));
        assert_eq!(parse("/groups/g%20x", ""), Ok(Call::Group("g x".into())));
        assert_eq!(
            parse("/topics/t/partitions/2/records", "offset=5&limit=3"),
            Ok(Call::Records {
                topic: "t".into(),
                partition: 2,
                start: Start::Offset(5),
                limit: 3
            })
        );
        assert_eq!(
            parse("/topics/t/partitions/0/records", "from=end"),
            Ok(Call::Records {
                topic: "t".into(),
                partition: 0,
                start: Start::End,
                limit: RECORDS_DEFAULT
            })
        );
        for (path, query) in [
            ("/topics/t/partitions/-1/records", ""),
            ("/topics/t/partitions/x/records", ""),
            ("/topics/t/partitions/99999999999/records", ""),
            ("/topics/t/partitions/0/records", "limit=0"),
            ("/topics/t/partitions/0/records", "limit=100000"),
            ("/topics/t/partitions/0/records", "offset=-5"),
            ("/topics/t/partitions/0/records", "offset=1&from=end"),
            ("/topics/t/partitions/0/records", "from=start"),
            ("/topics/t/partitions/0/records", "evil=1"),
            ("/topics/%zz", ""),
            ("/topics/%ff", ""),
            ("/cluster", "x=1"),
        ] {
            assert!(
                matches!(parse(path, query), Err(Refusal::BadRequest(_))),
                "{path}?{query}"
            );
        }
        for path in [
            "",
            "/",
            "/nope",
            "/topics/",
            "/topics/t/partitions",
            "/groups/a/b",
        ] {
            assert!(
                matches!(parse(path, ""), Err(Refusal::NotFound(_))),
                "{path}"
            );
        }
    }
}
