//! The requests the group coordinator answers, and the answer each gets when the coordinator
//! cannot serve it at all (Kafka's `getErrorResponse` of each request type).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

/// The requests the coordinator answers.
#[derive(Debug, Clone)]
pub enum GroupRequest {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    /// Not a client request: a transaction marker for the shard's partition, from
    /// WriteTxnMarkers (Kafka's `GroupCoordinator.completeTransaction`). Answered with a
    /// WriteTxnMarkers response holding the partition's code.
    CompleteTransaction(TxnCompletion),
}

/// A transaction marker the group coordinator writes to its partition and then applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnCompletion {
    /// The `__consumer_offsets` partition (the shard's).
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: crate::txn::TxnResult,
    pub transaction_version: i16,
}

impl GroupRequest {
    /// The response that fails every part of this request with `code`, shaped as Kafka shapes
    /// it for the request's version: per partition, per group or top level, as the response
    /// carries errors. Used when the coordinator shard cannot serve requests (not loaded, or
    /// failed).
    pub fn error_response(&self, version: i16, code: i16) -> ResponseKind {
        match self {
            GroupRequest::JoinGroup(_) => {
                let mut resp = JoinGroupResponse::default()
                    .with_error_code(code)
                    .with_generation_id(-1);
                if version < 7 {
                    resp.protocol_name = Some(Default::default());
                }
                ResponseKind::JoinGroup(resp)
            }
            GroupRequest::SyncGroup(_) => {
                ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code))
            }
            GroupRequest::Heartbeat(_) => {
                ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code))
            }
            GroupRequest::LeaveGroup(_) => {
                ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
            }
            GroupRequest::OffsetCommit(r) => {
                use offset_commit_response::*;
                ResponseKind::OffsetCommit(
                    OffsetCommitResponse::default().with_topics(
                        r.topics
                            .iter()
                            .map(|t| {
                                OffsetCommitResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_topic_id(t.topic_id)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                )
            }
            GroupRequest::OffsetFetch(r) => {
                use offset_fetch_response::*;
                if version < 8 {
                    // v2+ carry a top-level error; v0-1 only per partition.
                    let topics = r.topics.iter().flatten().map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|&p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    });
                    ResponseKind::OffsetFetch(
                        OffsetFetchResponse::default()
                            .with_error_code(code)
                            .with_topics(topics.collect()),
                    )
                } else {
                    ResponseKind::OffsetFetch(
                        OffsetFetchResponse::default().with_groups(
                            r.groups
                                .iter()
                                .map(|g| {
                                    OffsetFetchResponseGroup::default()
                                        .with_group_id(g.group_id.clone())
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                    )
                }
            }
            GroupRequest::OffsetDelete(_) => {
                ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
            }
            GroupRequest::DescribeGroups(r) => ResponseKind::DescribeGroups(
                DescribeGroupsResponse::default().with_groups(
                    r.groups
                        .iter()
                        .map(|g| {
                            describe_groups_response::DescribedGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                ),
            ),
            GroupRequest::ListGroups(_) => {
                ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(code))
            }
            GroupRequest::DeleteGroups(r) => ResponseKind::DeleteGroups(
                DeleteGroupsResponse::default().with_results(
                    r.groups_names
                        .iter()
                        .map(|g| {
                            delete_groups_response::DeletableGroupResult::default()
                                .with_group_id(g.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                ),
            ),
            GroupRequest::ConsumerGroupHeartbeat(_) => ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(code),
            ),
            GroupRequest::TxnOffsetCommit(r) => {
                ResponseKind::TxnOffsetCommit(txn_offset_commit_error(r, code))
            }
            GroupRequest::CompleteTransaction(c) => marker_response(c.partition, code),
            GroupRequest::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
                ConsumerGroupDescribeResponse::default().with_groups(
                    r.group_ids
                        .iter()
                        .map(|g| {
                            consumer_group_describe_response::DescribedGroup::default()
                                .with_group_id(g.clone())
                                .with_error_code(code)
                        })
                        .collect(),
                ),
            ),
        }
    }
}

/// Kafka's `TxnOffsetCommitRequest.getErrorResponse`: every partition of the request fails
/// with `code`.
pub fn txn_offset_commit_error(r: &TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    use txn_offset_commit_response::*;
    TxnOffsetCommitResponse::default().with_topics(
        r.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The answer of a TxnOffsetCommit whose transactional append failed with Kafka error `code`:
/// the partitions it wrote fail with it, those refused before the write keep their error.
pub fn txn_offset_commit_failed(
    mut response: TxnOffsetCommitResponse,
    code: i16,
) -> TxnOffsetCommitResponse {
    for topic in &mut response.topics {
        for partition in &mut topic.partitions {
            if partition.error_code == 0 {
                partition.error_code = code;
            }
        }
    }
    response
}

/// Kafka's `CoordinatorOperationExceptionHelper.handleOperationException`: the code a
/// coordinator write answers when its append failed with `code` (TxnOffsetCommit answers
/// these; the log's own verdicts, such as INVALID_PRODUCER_EPOCH, pass through).
pub fn coordinator_write_error_code(code: i16) -> i16 {
    use kafka_protocol::error::ResponseError::*;
    let unavailable = [UnknownTopicOrPartition, NotEnoughReplicas, RequestTimedOut];
    let moved = [NotLeaderOrFollower, KafkaStorageError];
    let too_large = [MessageTooLarge, RecordListTooLarge, InvalidFetchSize];
    if code == NetworkException.code() {
        CoordinatorLoadInProgress.code()
    } else if unavailable.iter().any(|e| e.code() == code) {
        CoordinatorNotAvailable.code()
    } else if moved.iter().any(|e| e.code() == code) {
        NotCoordinator.code()
    } else if too_large.iter().any(|e| e.code() == code) {
        UnknownServerError.code()
    } else {
        code
    }
}

/// The answer to a `CompleteTransaction`: a WriteTxnMarkers response with the code of the
/// group coordinator partition's marker.
pub fn marker_response(partition: i32, code: i16) -> ResponseKind {
    use write_txn_markers_response::*;
    ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default().with_markers(vec![
        WritableTxnMarkerResult::default().with_topics(vec![
            WritableTxnMarkerTopicResult::default()
                .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                .with_partitions(vec![WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(partition)
                    .with_error_code(code)]),
        ]),
    ]))
}
