//! Writing transaction markers to the partitions this broker leads: the single-node form of
//! Kafka's WriteTxnMarkers (`KafkaApis.handleWriteTxnMarkersRequest`).
//!
//! The transaction coordinator ends a transaction by writing a COMMIT or ABORT marker to every
//! partition it touched (the engine's `Output::WriteMarkers`, one per partition leader). Here,
//! where this node leads every partition, the coordinator shell calls [`write_txn_markers`]
//! with the markers for this node; in a cluster it sends the same markers as a WriteTxnMarkers
//! request to each leader, whose handler calls the same function. The answer has Kafka's shape
//! and codes: per producer, per partition, an error code (NONE once the marker is as durable as
//! the partition's policy asks, which a retry can rely on).
//!
//! Not advertised: WriteTxnMarkers (API 27) stays out of ApiVersions until its handler exists
//! and `__consumer_offsets` partitions complete the group coordinator's pending transactional
//! offsets (Kafka's `groupCoordinator.completeTransaction`), which is the coordinator shell's
//! part.

use kafka_protocol::error::ResponseError;
use runnel_storage::TxnMarker;

use crate::state::Broker;

/// One marker for partitions led here (Kafka's `WritableTxnMarker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    pub marker: TxnMarker,
    /// (topic name, partition index).
    pub partitions: Vec<(String, i32)>,
}

/// What happened to one marker's partitions (Kafka's `WritableTxnMarkerResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerResult {
    pub producer_id: i64,
    /// (topic name, partition index, error code).
    pub partitions: Vec<(String, i32, i16)>,
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
            let partition = image
                .topic(&topic)
                .and_then(|t| broker.partition(&t.topic_id, index));
            let wait = partition.map(|p| broker.replicas.write_txn_marker(&p, request.marker));
            writes.push((topic, index, wait));
        }
        pending.push((request.marker.producer_id, writes));
    }
    let mut results = Vec::with_capacity(pending.len());
    for (producer_id, writes) in pending {
        let mut partitions = Vec::with_capacity(writes.len());
        for (topic, index, wait) in writes {
            let code = match wait {
                None => ResponseError::UnknownTopicOrPartition.code(),
                Some(wait) => match wait.wait().await {
                    Ok(_) => 0,
                    Err(e) => crate::errors::storage_error_code(&e),
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
