//! DescribeQuorum (API 55): the metadata quorum's leader, epoch, high watermark and each
//! voter's replication, as Kafka's `KafkaRaftClient.handleDescribeQuorumRequest` and
//! `LeaderState.describeQuorum` answer it.
//!
//! Only the quorum's leader answers (a controller that is not answers NOT_LEADER_OR_FOLLOWER,
//! as Kafka's). On a broker listener the request is forwarded to the active controller, as
//! Kafka's `KafkaApis` forwards it: here as the same Kafka request on its CONTROLLER
//! listener, whose answer is relayed unchanged. What the fields are mapped from is in
//! `metadata::quorum`'s docs.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::context::RequestContext;
use crate::metadata::quorum::{QuorumHandle, QuorumStatus};
use crate::state::Broker;

/// Kafka's metadata log: the quorum's one topic partition.
const METADATA_TOPIC: &str = "__cluster_metadata";
const METADATA_PARTITION: i32 = 0;

/// Largest forwarded answer read back (a few voters' states; far above any honest one).
const FORWARDED_RESPONSE_BYTES_MAX: usize = 1 << 20;

/// Pause between attempts to reach the active controller.
const FORWARD_RETRY: Duration = Duration::from_millis(50);

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let Some(quorum) = broker.metadata.quorum() else {
        // Not advertised without a quorum, so never dispatched here.
        return top_level_error(ResponseError::UnknownServerError);
    };
    if !asks_for_metadata_partition(request) {
        return partition_level_error(request, ResponseError::UnknownTopicOrPartition);
    }
    let on_controller_listener =
        quorum.controller_listener() == Some(ctx.connection.listener.as_ref());
    if on_controller_listener || quorum.is_active_controller() {
        return answer(quorum, &quorum.status(), version);
    }
    crate::blocking::blocking(|| forward(quorum, request, version))
}

/// Kafka's `hasValidTopicPartition`: exactly one topic, `__cluster_metadata`, with exactly
/// partition 0.
fn asks_for_metadata_partition(request: &DescribeQuorumRequest) -> bool {
    matches!(request.topics.as_slice(), [topic]
        if topic.topic_name.as_str() == METADATA_TOPIC
            && matches!(topic.partitions.as_slice(), [p] if p.partition_index == METADATA_PARTITION))
}

/// The leader's answer from `status`, or NOT_LEADER_OR_FOLLOWER when this node does not lead.
fn answer(quorum: &QuorumHandle, status: &QuorumStatus, version: i16) -> DescribeQuorumResponse {
    if !status.leader {
        return singleton(error_partition(ResponseError::NotLeaderOrFollower));
    }
    let leader = quorum.node_id();
    // The leader's own fetch and catch-up are "now", the time of the request, as Kafka's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let replica = |r: &crate::metadata::quorum::ReplicaStatus| {
        let (fetch, caught_up) = if r.id == leader {
            (now, now)
        } else {
            (r.last_fetch_ms, r.last_caught_up_ms)
        };
        let state = ReplicaState::default()
            .with_replica_id(BrokerId(r.id))
            .with_log_end_offset(r.log_end_offset);
        // Fields the request's version has (the codec refuses a value it cannot encode):
        // the timestamps from v1, directory ids from v2. Static voters
        // (`controller.quorum.voters`) have no directory id: Kafka reports the zero UUID for
        // them; a dynamic quorum's members carry theirs.
        let state = if version >= 1 {
            state
                .with_last_fetch_timestamp(fetch)
                .with_last_caught_up_timestamp(caught_up)
        } else {
            state
        };
        if version >= 2 {
            state.with_replica_directory_id(r.directory_id)
        } else {
            state
        }
    };
    let partition = PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(0)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(status.high_watermark)
        .with_current_voters(status.voters.iter().map(replica).collect())
        .with_observers(status.observers.iter().map(replica).collect());
    let response = singleton(partition);
    if version < 2 {
        return response;
    }
    let name = quorum.controller_listener().unwrap_or_default().to_owned();
    response.with_nodes(
        quorum
            .voters()
            .iter()
            .map(|v| {
                Node::default()
                    .with_node_id(BrokerId(v.id))
                    .with_listeners(vec![Listener::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_host(StrBytes::from_string(v.host.clone()))
                        .with_port(v.port)])
            })
            .collect(),
    )
}

/// Kafka's `DescribeQuorumResponse.singletonResponse`: the metadata partition alone.
fn singleton(partition: PartitionData) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])])
}

fn error_partition(error: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(kafka_message(error))))
}

/// Kafka's `Errors.message()` (its exception's default message), which it puts in every error
/// of this API.
fn kafka_message(error: ResponseError) -> &'static str {
    match error {
        ResponseError::NotLeaderOrFollower => {
            "For requests intended only for the leader, this error indicates that the broker \
             is not the current leader. For requests intended for any replica, this error \
             indicates that the broker is not a replica of the topic partition."
        }
        ResponseError::UnknownTopicOrPartition => "This server does not host this topic-partition.",
        ResponseError::RequestTimedOut => "The request timed out.",
        _ => "The server experienced an unexpected error when processing the request.",
    }
}

/// Kafka's `getPartitionLevelErrorResponse`: `error` for every partition asked for.
fn partition_level_error(
    request: &DescribeQuorumRequest,
    error: ResponseError,
) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_topics(
        request
            .topics
            .iter()
            .map(|topic| {
                TopicData::default()
                    .with_topic_name(topic.topic_name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .map(|p| error_partition(error).with_partition_index(p.partition_index))
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// Kafka's `getTopLevelErrorResponse`.
fn top_level_error(error: ResponseError) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_static_str(kafka_message(error))))
}

/// Asks the active controller, retrying (a leader not known yet, or one that just lost its
/// place) until `controller.quorum.request.timeout.ms`; then REQUEST_TIMED_OUT, as Kafka's
/// forwarding answers a request the controller did not answer in time.
fn forward(
    quorum: &QuorumHandle,
    request: &DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let timeout = quorum.request_timeout();
    let deadline = Instant::now() + timeout;
    loop {
        if quorum.is_active_controller() {
            return answer(quorum, &quorum.status(), version);
        }
        if let Some((id, address)) = quorum.active_controller() {
            match exchange(&address, request, version, timeout) {
                Ok(response) if !is_not_leader(&response) => return response,
                Ok(_) => {
                    tracing::debug!(controller = id, "DescribeQuorum: not the leader any more")
                }
                Err(e) => {
                    tracing::debug!(controller = id, error = %e, "DescribeQuorum forward failed")
                }
            }
        }
        if Instant::now() >= deadline {
            return top_level_error(ResponseError::RequestTimedOut);
        }
        std::thread::sleep(FORWARD_RETRY);
    }
}

fn is_not_leader(response: &DescribeQuorumResponse) -> bool {
    response.topics.iter().any(|t| {
        t.partitions
            .iter()
            .any(|p| p.error_code == ResponseError::NotLeaderOrFollower.code())
    })
}

/// One DescribeQuorum request to a CONTROLLER listener, on a connection of its own.
fn exchange(
    address: &str,
    request: &DescribeQuorumRequest,
    version: i16,
    timeout: Duration,
) -> anyhow::Result<DescribeQuorumResponse> {
    let socket = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("controller address does not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let call = crate::peer_request::Call {
        key: ApiKey::DescribeQuorum,
        version,
        correlation_id: 1,
        client_id: "runnel-forwarder",
        response_bytes_max: FORWARDED_RESPONSE_BYTES_MAX,
    };
    crate::peer_request::exchange_blocking(
        &mut stream,
        call,
        |body| request.encode(body, version),
        |body| DescribeQuorumResponse::decode(body, version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_quorum_request;

    fn request(topics: &[(&str, &[i32])]) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    describe_quorum_request::TopicData::default()
                        .with_topic_name(TopicName(StrBytes::from_string((*name).to_owned())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|p| {
                                    describe_quorum_request::PartitionData::default()
                                        .with_partition_index(*p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    // Proves the partition check is Kafka's `hasValidTopicPartition`: only exactly
    // `__cluster_metadata`-0 is served; anything else (another partition, another topic,
    // several) gets UNKNOWN_TOPIC_OR_PARTITION for each partition asked for.
    #[test]
    fn only_the_metadata_partition_is_described() {
        assert!(asks_for_metadata_partition(&request(&[(
            METADATA_TOPIC,
            &[0]
        )])));
        for bad in [
            request(&[(METADATA_TOPIC, &[1])]),
            request(&[("other", &[0])]),
            request(&[(METADATA_TOPIC, &[0, 1])]),
            request(&[(METADATA_TOPIC, &[0]), ("other", &[0])]),
            request(&[]),
        ] {
            assert!(!asks_for_metadata_partition(&bad));
            let response = partition_level_error(&bad, ResponseError::UnknownTopicOrPartition);
            let asked: usize = bad.topics.iter().map(|t| t.partitions.len()).sum();
            let answered: Vec<_> = response.topics.iter().flat_map(|t| &t.partitions).collect();
            assert_eq!(answered.len(), asked);
            assert!(answered
                .iter()
                .all(|p| p.error_code == ResponseError::UnknownTopicOrPartition.code()));
        }
    }
}
