//! Transaction markers for partitions another broker leads (Kafka's
//! `TransactionMarkerChannelManager`): the markers go to the partition's leader as a
//! WriteTxnMarkers request (v1, the version runnel serves and Kafka 4.4 accepts) over a
//! connection this broker keeps to that leader, and the leader's per-partition answers come
//! back in the shape `txn_markers::write_txn_markers` gives for local partitions, so the
//! coordinator shell treats both alike (retrying NOT_LEADER_OR_FOLLOWER and the other
//! retriable codes after re-reading the image).
//!
//! A connection that fails (refused, reset, timed out, or an answer that does not decode) is
//! dropped and every partition of the request answers NETWORK_EXCEPTION, which the shell
//! retries with backoff, as Kafka re-enqueues the markers of a disconnected request.
//!
//! v1 carries no transaction version: the leader reads each marker as transaction version 0
//! (Kafka's reading of v1), which only loosens its producer-epoch check of a TV2 marker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::net::TcpStream;

use crate::txns::{MarkerRequest, MarkerResult};

/// The WriteTxnMarkers version sent (the one runnel serves).
pub const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// Largest response frame accepted from a leader: one error code per partition asked about
/// fits many times over.
const RESPONSE_BYTES_MAX: usize = 16 << 20;
/// How long connecting and one request/response may take (Kafka's `request.timeout.ms`
/// default for its inter-broker channels).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The client id the leader sees (Kafka's channel uses the broker's id in it too).
const CLIENT_ID: &str = "runnel-txn-marker-sender";

/// The WriteTxnMarkers request carrying `markers` (partitions grouped by topic, in order).
pub fn request(markers: &[MarkerRequest]) -> WriteTxnMarkersRequest {
    let markers = markers
        .iter()
        .map(|m| {
            let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
            let mut index: HashMap<&str, usize> = HashMap::new();
            for (topic, partition) in &m.partitions {
                let at = *index.entry(&**topic).or_insert_with(|| {
                    topics.push(
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string()))),
                    );
                    topics.len() - 1
                });
                topics[at].partition_indexes.push(*partition);
            }
            WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.marker.producer_id))
                .with_producer_epoch(m.marker.producer_epoch)
                .with_transaction_result(m.marker.result == runnel_storage::TxnResult::Commit)
                .with_coordinator_epoch(m.marker.coordinator_epoch)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersRequest::default().with_markers(markers)
}

/// Each marker's partitions with the leader's code for them; a partition the answer does not
/// mention gets UNKNOWN_SERVER_ERROR (retried).
pub fn results(markers: &[MarkerRequest], response: &WriteTxnMarkersResponse) -> Vec<MarkerResult> {
    // The answer indexed once (the first entry wins, as a search would find it).
    let mut codes: HashMap<(i64, &str, i32), i16> = HashMap::new();
    for r in &response.markers {
        for t in &r.topics {
            for p in &t.partitions {
                codes
                    .entry((r.producer_id.0, t.name.0.as_str(), p.partition_index))
                    .or_insert(p.error_code);
            }
        }
    }
    markers
        .iter()
        .map(|m| {
            let partitions = m
                .partitions
                .iter()
                .map(|(topic, partition)| {
                    let code = codes
                        .get(&(m.marker.producer_id, &**topic, *partition))
                        .copied()
                        .unwrap_or(ResponseError::UnknownServerError.code());
                    (topic.clone(), *partition, code)
                })
                .collect();
            MarkerResult {
                producer_id: m.marker.producer_id,
                partitions,
            }
        })
        .collect()
}

/// Every partition of `markers` answered `code`.
pub fn all_failed(markers: &[MarkerRequest], code: i16) -> Vec<MarkerResult> {
    markers
        .iter()
        .map(|m| MarkerResult {
            producer_id: m.marker.producer_id,
            partitions: m
                .partitions
                .iter()
                .map(|(t, p)| (t.clone(), *p, code))
                .collect(),
        })
        .collect()
}

/// Sends `markers` as one WriteTxnMarkers request on `stream` and reads the answer.
pub async fn write_txn_markers_on(
    stream: &mut TcpStream,
    correlation_id: i32,
    markers: &[MarkerRequest],
) -> anyhow::Result<WriteTxnMarkersResponse> {
    exchange(
        stream,
        correlation_id,
        ApiKey::WriteTxnMarkers,
        WRITE_TXN_MARKERS_VERSION,
        &request(markers),
    )
    .await
}

/// Sends `request` (API `key` at `version`) on `stream` and reads and decodes its answer.
pub async fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> anyhow::Result<Resp> {
    let call = crate::peer_request::Call {
        key,
        version,
        correlation_id,
        client_id: CLIENT_ID,
        response_bytes_max: RESPONSE_BYTES_MAX,
    };
    crate::peer_request::exchange(stream, call, request).await
}

/// Connections to other brokers, one per broker, each used by one request at a time: to
/// partition leaders for markers, and (a second channel) to transaction coordinators for
/// AddPartitionsToTxn.
#[derive(Default)]
pub struct MarkerChannel {
    /// By node id: the address connected to and the connection (`None` until connected, or
    /// after it failed).
    connections: std::sync::Mutex<HashMap<i32, Arc<tokio::sync::Mutex<Connection>>>>,
    next_correlation: AtomicI32,
}

#[derive(Default)]
struct Connection {
    address: String,
    stream: Option<TcpStream>,
}

impl MarkerChannel {
    pub fn new() -> MarkerChannel {
        MarkerChannel::default()
    }

    /// Sends `markers` to broker `node` at `address` (host:port) and answers per partition:
    /// the leader's codes, or NETWORK_EXCEPTION for all when the exchange failed.
    pub async fn send(
        &self,
        node: i32,
        address: &str,
        markers: &[MarkerRequest],
    ) -> Vec<MarkerResult> {
        let request = request(markers);
        let answer: anyhow::Result<WriteTxnMarkersResponse> = self
            .call(
                node,
                address,
                ApiKey::WriteTxnMarkers,
                WRITE_TXN_MARKERS_VERSION,
                &request,
            )
            .await;
        match answer {
            Ok(response) => results(markers, &response),
            Err(e) => {
                tracing::warn!(node, address, error = %e, "sending transaction markers to the partition leader failed; retrying");
                all_failed(markers, ResponseError::NetworkException.code())
            }
        }
    }

    /// Sends `request` (API `key` at `version`) to broker `node` at `address` on this
    /// channel's connection to it and decodes the answer. A failed or timed-out exchange
    /// drops the connection (the next call reconnects).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        node: i32,
        address: &str,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        let slot = Arc::clone(
            self.connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(node)
                .or_default(),
        );
        let mut connection = slot.lock().await;
        if connection.address != address {
            // The broker moved (re-registered elsewhere): reconnect.
            connection.address = address.to_owned();
            connection.stream = None;
        }
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let attempt = async {
            if connection.stream.is_none() {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                connection.stream = Some(stream);
            }
            let Some(stream) = connection.stream.as_mut() else {
                unreachable!("connected above");
            };
            exchange(stream, correlation_id, key, version, request).await
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(anyhow::anyhow!("timed out after {REQUEST_TIMEOUT:?}")),
        };
        if answer.is_err() {
            connection.stream = None;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    use runnel_storage::{TxnMarker, TxnResult};

    fn marker(producer_id: i64, partitions: &[(&str, i32)]) -> MarkerRequest {
        MarkerRequest {
            marker: TxnMarker {
                producer_id,
                producer_epoch: 3,
                coordinator_epoch: 7,
                result: TxnResult::Commit,
                transaction_version: 0,
            },
            partitions: partitions
                .iter()
                .map(|(t, p)| (std::sync::Arc::from(*t), *p))
                .collect(),
        }
    }

    // Proves the request groups each marker's partitions by topic and carries its producer,
    // epochs and result.
    #[test]
    fn the_request_groups_partitions_by_topic() {
        let r = request(&[marker(5, &[("a", 0), ("b", 1), ("a", 2)])]);
        assert_eq!(r.markers.len(), 1);
        let m = &r.markers[0];
        assert_eq!(
            (m.producer_id.0, m.producer_epoch, m.coordinator_epoch),
            (5, 3, 7)
        );
        assert!(m.transaction_result);
        let topics: Vec<(&str, Vec<i32>)> = m
            .topics
            .iter()
            .map(|t| (t.name.0.as_str(), t.partition_indexes.clone()))
            .collect();
        assert_eq!(topics, vec![("a", vec![0, 2]), ("b", vec![1])]);
    }

    // Proves each partition gets the leader's code, and one the answer leaves out a retriable
    // error rather than success.
    #[test]
    fn results_take_the_leaders_codes() {
        let markers = [marker(5, &[("a", 0), ("a", 1)])];
        let response = WriteTxnMarkersResponse::default().with_markers(vec![
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(5))
                .with_topics(vec![WritableTxnMarkerTopicResult::default()
                    .with_name(TopicName(StrBytes::from_static_str("a")))
                    .with_partitions(vec![WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(0)
                        .with_error_code(6)])]),
        ]);
        let r = results(&markers, &response);
        assert_eq!(
            r[0].partitions,
            vec![
                ("a".into(), 0, 6),
                ("a".into(), 1, ResponseError::UnknownServerError.code())
            ]
        );
    }
}
