//! Writing transaction markers to the partitions this broker leads: the single-node form of
//! Kafka's WriteTxnMarkers (`KafkaApis.handleWriteTxnMarkersRequest`).
//!
//! The transaction coordinator ends a transaction by writing a COMMIT or ABORT marker to every
//! partition it touched (the engine's `Output::WriteMarkers`). The coordinator shell calls
//! [`route_txn_markers`]: the partitions this node leads go to [`write_txn_markers`] directly,
//! the others as a WriteTxnMarkers request to their leader (`txn_marker_channel`), whose
//! handler calls the same function there. The answer has Kafka's shape
//! and codes: per producer, per partition, an error code (NONE once the marker is as durable as
//! the partition's policy asks, which a retry can rely on).
//!
//! A marker for a `__consumer_offsets` partition goes through the group coordinator (Kafka's
//! `groupCoordinator.completeTransaction`): written under its shard, so it keeps its place
//! among the shard's appends, and applied to the shard once committed, which makes the
//! producer's pending transactional offsets the group's (COMMIT) or drops them (ABORT).

use kafka_protocol::error::ResponseError;
use runnel_storage::TxnMarker;

use crate::internal_topics::OFFSETS_TOPIC;
use crate::replica::AppendWait;
use crate::state::Broker;
pub use crate::txns::{MarkerRequest, MarkerResult};

/// One partition's marker write in flight.
enum Write {
    /// The topic or partition is not known.
    Unknown,
    /// Known but not led here: Kafka's code for it.
    Refused(i16),
    /// Through the replica layer.
    Log(AppendWait),
    /// Through the group coordinator (`__consumer_offsets`), started when its turn comes in
    /// the second pass, in request order.
    Group(TxnMarker),
}

/// Writes each marker to each of its partitions and waits until every write is durable (or
/// failed). A partition this broker does not hold answers UNKNOWN_TOPIC_OR_PARTITION, as
/// Kafka's `replicaManager.onlinePartition` check does; a write the log refuses answers its
/// error (INVALID_PRODUCER_EPOCH for an older producer epoch, TRANSACTION_COORDINATOR_FENCED
/// for an older coordinator epoch, KAFKA_STORAGE_ERROR for a failed write). Writes start in
/// request order, so two markers for one partition land in that order.
pub async fn write_txn_markers(broker: &Broker, markers: Vec<MarkerRequest>) -> Vec<MarkerResult> {
    let image = broker.image();
    let mut pending = Vec::with_capacity(markers.len());
    for request in markers {
        let mut writes = Vec::with_capacity(request.partitions.len());
        for (topic, index) in request.partitions {
            let known = image.topic(&topic);
            let partition = known.and_then(|t| broker.partition(&t.topic_id, index));
            let write = match partition {
                None => match known {
                    Some(t) => Write::Refused(crate::errors::not_held_error(t, index)),
                    None => Write::Unknown,
                },
                Some(p) if !p.is_leader() => {
                    Write::Refused(ResponseError::NotLeaderOrFollower.code())
                }
                Some(_) if &*topic == OFFSETS_TOPIC => Write::Group(request.marker),
                Some(p) => Write::Log(broker.replicas.write_txn_marker(&p, request.marker)),
            };
            writes.push((topic, index, write));
        }
        pending.push((request.marker.producer_id, writes));
    }
    let mut results = Vec::with_capacity(pending.len());
    for (producer_id, writes) in pending {
        let mut partitions = Vec::with_capacity(writes.len());
        for (topic, index, write) in writes {
            let code = match write {
                Write::Unknown => ResponseError::UnknownTopicOrPartition.code(),
                Write::Refused(code) => code,
                Write::Log(wait) => match wait.wait().await {
                    Ok(_) => 0,
                    Err(e) => crate::errors::storage_error_code(&e),
                },
                Write::Group(marker) => match broker
                    .groups
                    .complete_transaction(broker, index, marker)
                    .await
                {
                    0 => 0,
                    // The transaction coordinator does not expect these: NOT_LEADER_OR_FOLLOWER
                    // tells it the group coordinator is not ready yet (Kafka's translation in
                    // `handleWriteTxnMarkersRequest`).
                    code if code == ResponseError::CoordinatorNotAvailable.code()
                        || code == ResponseError::CoordinatorLoadInProgress.code()
                        || code == ResponseError::NotCoordinator.code() =>
                    {
                        ResponseError::NotLeaderOrFollower.code()
                    }
                    code => code,
                },
            };
            partitions.push((topic, index, code));
        }
        results.push(MarkerResult {
            producer_id,
            partitions,
        });
    }
    results
}

/// Delivers markers as the transaction coordinator asks: the partitions this broker leads
/// (and those without a leader, which answer their error and are retried) through
/// [`write_txn_markers`], the partitions another broker leads as a WriteTxnMarkers request to
/// that broker (`txn_marker_channel`), each leader's in turn. The answer holds every
/// partition asked about, local ones first.
pub async fn route_txn_markers(broker: &Broker, markers: Vec<MarkerRequest>) -> Vec<MarkerResult> {
    use std::collections::BTreeMap;
    let image = broker.image();
    let me = broker.node_id();
    let mut local = Vec::new();
    let mut remote: BTreeMap<i32, Vec<MarkerRequest>> = BTreeMap::new();
    for request in markers {
        let mut here = Vec::new();
        let mut by_leader: BTreeMap<i32, Vec<(std::sync::Arc<str>, i32)>> = BTreeMap::new();
        for (topic, index) in request.partitions {
            let leader = image
                .topic(&topic)
                .and_then(|t| t.registration(index))
                .map_or(-1, |r| r.leader);
            if leader >= 0 && leader != me {
                by_leader.entry(leader).or_default().push((topic, index));
            } else {
                here.push((topic, index));
            }
        }
        if !here.is_empty() {
            local.push(MarkerRequest {
                marker: request.marker,
                partitions: here,
            });
        }
        for (leader, partitions) in by_leader {
            remote.entry(leader).or_default().push(MarkerRequest {
                marker: request.marker,
                partitions,
            });
        }
    }
    let mut results = if local.is_empty() {
        Vec::new()
    } else {
        write_txn_markers(broker, local).await
    };
    for (leader, requests) in remote {
        match image.brokers.get(&leader) {
            Some(b) => {
                let address = broker.inter_broker_address(b);
                results.extend(
                    broker
                        .marker_channel
                        .send(leader, &address, &requests)
                        .await,
                );
            }
            // A leader that is not a registered broker: wait for the image to say more.
            None => results.extend(crate::txn_marker_channel::all_failed(
                &requests,
                ResponseError::NotLeaderOrFollower.code(),
            )),
        }
    }
    results
}

/// The broker as the transaction coordinator's shell sees it.
impl crate::txns::TxnEnv for Broker {
    fn node_id(&self) -> i32 {
        Broker::node_id(self)
    }

    fn write_markers(
        &self,
        markers: Vec<MarkerRequest>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<MarkerResult>> + Send + '_>> {
        Box::pin(route_txn_markers(self, markers))
    }

    fn allocate_producer_id_block(&self) -> anyhow::Result<(i64, i64)> {
        Ok(self.metadata.allocate_producer_id_block(self)?)
    }
}
