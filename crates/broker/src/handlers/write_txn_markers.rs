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

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
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

/// (topic, partition, error code); a topic's partitions share its name.
type PartitionCode = (Arc<str>, i32, i16);

/// Kafka's name of the cluster resource.
const CLUSTER_NAME: &str = "kafka-cluster";
/// The transaction version of a v1 marker (v2 carries it).
const V1_TRANSACTION_VERSION: i16 = 0;

/// The request's partitions of one marker, each topic's name allocated once.
fn partitions_of(marker: &WritableTxnMarker) -> impl Iterator<Item = (Arc<str>, i32)> + '_ {
    marker.topics.iter().flat_map(|t| {
        let name: Arc<str> = Arc::from(t.name.0.as_str());
        t.partition_indexes
            .iter()
            .map(move |&p| (Arc::clone(&name), p))
    })
}

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
                let partitions = partitions_of(m).map(|(t, p)| (t, p, code)).collect();
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
            partitions: partitions_of(m).collect(),
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
/// request's order. Indexed by maps: a request of many producers, topics or partitions is
/// answered in time linear in its size.
fn response(results: Vec<(i64, Vec<PartitionCode>)>) -> WriteTxnMarkersResponse {
    /// One producer's answer: topics in first-seen order, each with its partitions' codes.
    /// A topic: its partitions' codes in first-seen order, and where each partition is.
    type Topic = (Arc<str>, Vec<(i32, i16)>, HashMap<i32, usize>);
    #[derive(Default)]
    struct Producer {
        topics: Vec<Topic>,
        topic_index: HashMap<Arc<str>, usize>,
    }
    let mut producers: Vec<(i64, Producer)> = Vec::new();
    let mut producer_index: HashMap<i64, usize> = HashMap::new();
    for (producer_id, partitions) in results {
        let at = *producer_index.entry(producer_id).or_insert_with(|| {
            producers.push((producer_id, Producer::default()));
            producers.len() - 1
        });
        let producer = &mut producers[at].1;
        for (topic, partition, code) in partitions {
            let t = *producer
                .topic_index
                .entry(Arc::clone(&topic))
                .or_insert_with(|| {
                    producer.topics.push((topic, Vec::new(), HashMap::new()));
                    producer.topics.len() - 1
                });
            let (_, codes, index) = &mut producer.topics[t];
            // A partition named twice for one producer is answered once (Kafka's map), with
            // the last verdict.
            match index.get(&partition) {
                Some(&i) => codes[i].1 = code,
                None => {
                    index.insert(partition, codes.len());
                    codes.push((partition, code));
                }
            }
        }
    }
    let markers = producers
        .into_iter()
        .map(|(producer_id, producer)| {
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(producer_id))
                .with_topics(
                    producer
                        .topics
                        .into_iter()
                        .map(|(name, codes, _)| {
                            WritableTxnMarkerTopicResult::default()
                                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                                .with_partitions(
                                    codes
                                        .into_iter()
                                        .map(|(partition, code)| {
                                            WritableTxnMarkerPartitionResult::default()
                                                .with_partition_index(partition)
                                                .with_error_code(code)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}
