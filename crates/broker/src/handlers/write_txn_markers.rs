//! WriteTxnMarkers (v1): writes COMMIT/ABORT markers to partitions this broker leads (Kafka's
//! `KafkaApis.handleWriteTxnMarkersRequest`). Transaction coordinators send it to partition
//! leaders; `Admin.abortTransaction` (`kafka-transactions abort`) sends it to end a hanging
//! transaction. The writes are `txn_markers::write_txn_markers`: per partition
//! UNKNOWN_TOPIC_OR_PARTITION when not held here, the log's verdict otherwise, and for
//! `__consumer_offsets` the group coordinator's (`completeTransaction`).
//!
//! Authorization as Kafka's: ALTER on the cluster, or else CLUSTER_ACTION; without either every
//! partition answers CLUSTER_AUTHORIZATION_FAILED.
//!
//! Only v1 is served: Kafka 4.4 also has v2, whose `TransactionVersion` per marker
//! kafka-protocol 0.18 cannot decode. A v1 marker is a transaction version 0 marker, as Kafka
//! reads v1.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::{TxnMarker, TxnResult};

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::state::Broker;
use crate::txn_markers::{write_txn_markers, MarkerRequest};

/// (topic, partition, error code).
type PartitionCode = (String, i32, i16);

/// Kafka's name of the cluster resource.
const CLUSTER_NAME: &str = "kafka-cluster";
/// The transaction version of a v1 marker (v2 carries it).
const V1_TRANSACTION_VERSION: i16 = 0;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let authorize = |op| {
        broker
            .authorizer
            .authorize(ctx.principal(), op, ResourceType::Cluster, CLUSTER_NAME)
    };
    if !authorize(AclOperation::Alter) && !authorize(AclOperation::ClusterAction) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let results = request
            .markers
            .iter()
            .map(|m| {
                let partitions = m
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partition_indexes
                            .iter()
                            .map(move |&p| (t.name.0.to_string(), p, code))
                    })
                    .collect();
                (m.producer_id.0, partitions)
            })
            .collect();
        return response(results);
    }
    let markers = request
        .markers
        .iter()
        .map(|m| MarkerRequest {
            marker: TxnMarker {
                producer_id: m.producer_id.0,
                producer_epoch: m.producer_epoch,
                coordinator_epoch: m.coordinator_epoch,
                result: if m.transaction_result {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                },
                transaction_version: V1_TRANSACTION_VERSION,
            },
            partitions: m
                .topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(move |&p| (t.name.0.to_string(), p))
                })
                .collect(),
        })
        .collect();
    let results = write_txn_markers(broker, markers)
        .await
        .into_iter()
        .map(|r| (r.producer_id, r.partitions))
        .collect();
    response(results)
}

/// Kafka's `WriteTxnMarkersResponse(Map<producerId, Map<partition, error>>)`: one entry per
/// producer id (markers of one producer merged), partitions grouped by topic; here in the
/// request's order.
fn response(results: Vec<(i64, Vec<PartitionCode>)>) -> WriteTxnMarkersResponse {
    let mut markers: Vec<WritableTxnMarkerResult> = Vec::new();
    for (producer_id, partitions) in results {
        let index = match markers.iter().position(|m| m.producer_id.0 == producer_id) {
            Some(i) => i,
            None => {
                markers.push(
                    WritableTxnMarkerResult::default().with_producer_id(ProducerId(producer_id)),
                );
                markers.len() - 1
            }
        };
        let marker = &mut markers[index];
        for (topic, partition, code) in partitions {
            let result = WritableTxnMarkerPartitionResult::default()
                .with_partition_index(partition)
                .with_error_code(code);
            match marker
                .topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == topic)
            {
                // A partition named twice for one producer is answered once (Kafka's map).
                Some(t) => match t
                    .partitions
                    .iter_mut()
                    .find(|p| p.partition_index == partition)
                {
                    Some(existing) => *existing = result,
                    None => t.partitions.push(result),
                },
                None => marker.topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
