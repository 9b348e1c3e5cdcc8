//! The replica layer (Kafka's `ReplicaManager`): owns every [`Partition`] this broker holds and
//! is the one way records get into a partition log, for clients and coordinators alike.
//!
//! An append either completes at once (page-cache mode: appended, high watermark moved) or
//! waits for its partition's group commit (fsync mode: answered only after an fsync covers it).
//! [`AppendWait`] is that delayed operation; produce handlers and the coordinator shells both
//! await it, so an offset commit is exactly as durable as a produce to the same partition.

pub mod fetcher;
pub mod move_fetcher;
mod partition;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use runnel_storage::{AppendOutcome, StorageError, TxnMarker, Verification};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use partition::{Partition, PartitionSettings};

use crate::clock::now_ms;
use crate::durability::{Committed, RoundAppend};

/// Who is appending: decides which checks an append goes through (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer: refused on internal topics, held to `min.insync.replicas` for acks=all.
    Client,
    /// A coordinator writing its own internal topic (`__consumer_offsets`), with batches it
    /// encoded itself.
    Coordinator,
    /// A follower copying the leader's batches (offsets already assigned). Not produced yet:
    /// replication arrives with the cluster.
    Replication,
}

/// Why an append was refused before reaching the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRefused {
    pub code: i16,
    pub message: Option<String>,
}

/// An append in flight: done, or waiting for the group-commit round that will make it durable.
pub enum AppendWait {
    Done(Committed),
    Pending(oneshot::Receiver<Committed>),
}

impl AppendWait {
    /// The append's outcome once it is as durable as the partition's policy asks.
    pub async fn wait(self) -> Committed {
        match self {
            AppendWait::Done(outcome) => outcome,
            AppendWait::Pending(outcome) => outcome
                .await
                // The flusher died (our bug, logged there); the batch may or may not be on disk.
                .unwrap_or(Err(StorageError::Poisoned)),
        }
    }
}

type PartitionKey = (Uuid, i32);

/// Every partition this broker holds, by topic id and index.
#[derive(Default)]
pub struct ReplicaManager {
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
}

impl ReplicaManager {
    pub fn partition(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(*topic_id, index))
            .cloned()
    }

    /// Every partition held here, in no particular order (DescribeLogDirs, ElectLeaders).
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Starts serving `partition` (opened by the caller).
    pub fn add(&self, partition: Partition) {
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (partition.topic.topic_id, partition.index),
                Arc::new(partition),
            );
    }

    /// Stops serving one partition (this node is no longer one of its replicas); returns it
    /// if it was held.
    pub fn remove(&self, topic_id: &Uuid, index: i32) -> Option<Arc<Partition>> {
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(*topic_id, index))
    }

    /// Stops serving the first `count` partitions of a topic; returns those it held.
    pub fn remove_topic(&self, topic_id: &Uuid, count: u32) -> Vec<Arc<Partition>> {
        let mut partitions = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        (0..i32::try_from(count).unwrap_or(i32::MAX))
            .filter_map(|p| partitions.remove(&(*topic_id, p)))
            .collect()
    }

    /// Stops serving every partition; returns them (shutdown).
    pub fn remove_all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect()
    }

    /// Appends one batch as the partition's leader, with the checks `origin` calls for.
    ///
    /// In page-cache mode the batch is appended and committed before this returns; in fsync
    /// mode it is queued for the partition's group commit and the returned wait completes
    /// after the fsync. Either way the append's place in the log is fixed by the order of
    /// calls, which idempotent producers' sequence checks and coordinators' replay order
    /// rely on.
    pub fn append_records(
        &self,
        partition: &Arc<Partition>,
        origin: AppendOrigin,
        acks: i16,
        records: Bytes,
    ) -> Result<AppendWait, AppendRefused> {
        self.append_records_verified(partition, origin, acks, records, Verification::Off)
    }

    /// `append_records` carrying what transaction verification asks of a client's batches
    /// (`PartitionLog::append_as_leader_verified`; coordinators' batches are not checked).
    pub fn append_records_verified(
        &self,
        partition: &Arc<Partition>,
        origin: AppendOrigin,
        acks: i16,
        records: Bytes,
        verification: Verification,
    ) -> Result<AppendWait, AppendRefused> {
        if origin == AppendOrigin::Client {
            if crate::internal_topics::is_internal_topic(&partition.topic.name) {
                // Kafka: "Cannot append to internal topic" (internal topics are the
                // coordinators' logs).
                return Err(AppendRefused {
                    code: ResponseError::InvalidTopicException.code(),
                    message: None,
                });
            }
            let min_insync_replicas = partition.min_insync_replicas();
            if acks == -1 && min_insync_replicas > 1 {
                return Err(AppendRefused {
                    code: ResponseError::NotEnoughReplicas.code(),
                    message: Some(format!(
                        "The size of the current ISR 1 is insufficient to satisfy the min.isr requirement of {min_insync_replicas}",
                    )),
                });
            }
        }
        let append = match origin {
            AppendOrigin::Coordinator => RoundAppend::CoordinatorRecords(records),
            AppendOrigin::Client | AppendOrigin::Replication => {
                RoundAppend::Records(records, verification)
            }
        };
        Ok(append_durably(partition, append))
    }

    /// Writes a transaction marker to `partition` as its leader: the per-partition step of
    /// Kafka's WriteTxnMarkers (`KafkaApis.handleWriteTxnMarkersRequest` appends one control
    /// batch per partition through `ReplicaManager.appendRecords` with the COORDINATOR origin,
    /// acks=all). The marker takes its place in the partition's append order and is exactly as
    /// durable as a produce to it (queued for the group commit in fsync mode); the high
    /// watermark, and with it the last stable offset, moves past it when it is. The log checks
    /// it against the producer's state (`PartitionLog::append_txn_marker`): its errors map to
    /// INVALID_PRODUCER_EPOCH or TRANSACTION_COORDINATOR_FENCED through
    /// `errors::storage_error_code`. Callers on other brokers reach this through the
    /// WriteTxnMarkers request to this partition's leader (`crate::txn_markers`).
    pub fn write_txn_marker(&self, partition: &Arc<Partition>, marker: TxnMarker) -> AppendWait {
        append_durably(partition, RoundAppend::Marker(marker))
    }
}

/// Appends `append` as durably as `partition`'s policy asks: through its group commit in fsync
/// mode, inline (page cache, HW moved at once) otherwise.
fn append_durably(partition: &Arc<Partition>, append: RoundAppend) -> AppendWait {
    if partition.appends_through_group_commit() {
        // Durability: fsync mode (or batches still queued from it). Appended, fsynced and
        // made visible by the group commit's flusher.
        return AppendWait::Pending(partition.group_commit.submit(partition, append));
    }
    // Durability: page cache only (no `flush.messages`), like Kafka's default. An
    // acknowledged write survives a process crash, not a power loss.
    let outcome = {
        let mut log = partition.lock_log();
        let result = match append {
            // Leadership is checked again under the lock: a change applied since the caller's
            // check (`Partition::set_leadership` takes the same lock) refuses the append.
            _ if !partition.is_leader() => Err(StorageError::NotLeaderOrFollower),
            RoundAppend::Records(records, verification) => {
                let bytes = records.len();
                let result = log.append_as_leader_verified(
                    records,
                    partition.leader_epoch(),
                    now_ms(),
                    verification,
                );
                if let Ok(outcome) = &result {
                    partition.record_appended(bytes, outcome);
                }
                result
            }
            RoundAppend::CoordinatorRecords(records) => {
                let bytes = records.len();
                let result = log.append_as_coordinator(records, partition.leader_epoch(), now_ms());
                if let Ok(outcome) = &result {
                    partition.record_appended(bytes, outcome);
                }
                result
            }
            RoundAppend::Marker(marker) => {
                log.append_txn_marker(&marker, partition.leader_epoch(), now_ms())
            }
        };
        if matches!(
            &result,
            Ok(AppendOutcome {
                duplicate: false,
                ..
            })
        ) {
            partition.advance_high_watermark(&mut log);
        }
        result
    };
    if outcome.is_ok() {
        partition.wake_waiters();
    }
    AppendWait::Done(outcome)
}
