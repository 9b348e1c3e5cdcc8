//! Log lines for group changes, read from the records the group coordinator committed (the
//! engine is sans-IO and logs nothing; the runtime hands every committed batch here).
//!
//! - a classic group's `GroupMetadata` record is written when a generation completes (and when
//!   the group empties or is created): one "group rebalanced" line with its generation;
//! - a consumer group (KIP-848) writes `ConsumerGroupMetadata` when its group epoch moves and
//!   `ConsumerGroupTargetAssignmentMetadata` when a new target assignment is computed: one
//!   "group rebalanced" line per group and batch with the epochs it carried;
//! - a tombstone of either metadata record: "group deleted".
//!
//! Replays at load are not reported: they are history, not events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use runnel_cluster::group::consumer::records::{
    RecordKey as ConsumerKey, RecordValue as ConsumerValue,
};
use runnel_cluster::group::records::{decode_group_metadata_value, decode_key, RecordKey};
use runnel_cluster::group::Record;

/// Rebalances of classic groups (a generation completed) since the process started, as
/// logged here (Kafka's `group-coordinator-metrics` `classic-group-rebalance-count`).
/// Process-wide: the commit observer is a plain function, and there is one coordinator.
pub static CLASSIC_REBALANCES: AtomicU64 = AtomicU64::new(0);

/// Rebalances of consumer (KIP-848) groups, one per group epoch or target assignment move
/// committed (Kafka's `consumer-group-rebalance-count`).
pub static CONSUMER_REBALANCES: AtomicU64 = AtomicU64::new(0);

/// What one batch said about one consumer group.
#[derive(Default)]
struct ConsumerGroupChange {
    group_epoch: Option<i32>,
    assignment_epoch: Option<i32>,
    /// Members given a target assignment in this batch.
    members_assigned: usize,
    deleted: bool,
}

/// Logs the group changes in one committed batch of `__consumer_offsets` `partition`.
pub fn log_committed(partition: i32, records: &[Record]) {
    let mut consumer: BTreeMap<String, ConsumerGroupChange> = BTreeMap::new();
    for (key, value) in records {
        match decode_key(key) {
            Ok(RecordKey::GroupMetadata { group }) => {
                log_classic(partition, &group, value.as_deref());
                continue;
            }
            Ok(RecordKey::OffsetCommit { .. }) => continue,
            // A consumer group's (or share/streams) record, read below; a malformed key is
            // the engine's own bug and not worth a log line of its own here.
            Ok(RecordKey::Other(_)) | Err(_) => {}
        }
        let Ok(Some(key)) = ConsumerKey::decode(key) else {
            continue;
        };
        let change = consumer.entry(key.group_id().to_owned()).or_default();
        let decoded = value
            .as_deref()
            .map(|bytes| ConsumerValue::decode(&key, bytes));
        match (&key, decoded) {
            (ConsumerKey::Metadata { .. }, None) => change.deleted = true,
            (ConsumerKey::Metadata { .. }, Some(Ok(ConsumerValue::Metadata(v)))) => {
                change.group_epoch = Some(v.epoch);
            }
            (
                ConsumerKey::TargetAssignmentMetadata { .. },
                Some(Ok(ConsumerValue::TargetAssignmentMetadata { assignment_epoch })),
            ) => change.assignment_epoch = Some(assignment_epoch),
            (ConsumerKey::TargetAssignmentMember { .. }, Some(Ok(_))) => {
                change.members_assigned += 1;
            }
            _ => {}
        }
    }
    for (group, change) in consumer {
        if change.deleted {
            tracing::info!(group = %group, group_type = "consumer", partition, "group deleted");
        } else if change.group_epoch.is_some() || change.assignment_epoch.is_some() {
            CONSUMER_REBALANCES.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                group = %group,
                group_type = "consumer",
                partition,
                group_epoch = change.group_epoch.map_or(-1, i64::from),
                assignment_epoch = change.assignment_epoch.map_or(-1, i64::from),
                members_assigned = change.members_assigned,
                "group rebalanced"
            );
        }
    }
}

fn log_classic(partition: i32, group: &str, value: Option<&[u8]>) {
    let Some(value) = value else {
        tracing::info!(group = %group, group_type = "classic", partition, "group deleted");
        return;
    };
    let Ok(v) = decode_group_metadata_value(value) else {
        return;
    };
    if v.generation == 0 && v.members.is_empty() {
        tracing::info!(group = %group, group_type = "classic", partition, "group created");
        return;
    }
    CLASSIC_REBALANCES.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        group = %group,
        group_type = "classic",
        partition,
        generation = v.generation,
        protocol_type = %v.protocol_type,
        protocol = v.protocol.as_deref().unwrap_or(""),
        leader = v.leader.as_deref().unwrap_or(""),
        members = v.members.len(),
        "group rebalanced"
    );
}
