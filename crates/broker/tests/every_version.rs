//! Every supported API at every advertised version: a realistic request through the real
//! handlers (on a real broker over a temp dir) must produce a response that encodes at that
//! version. kafka-protocol refuses to encode a field its version lacks, so this catches a
//! handler that sets a newer field for an older client.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::config::BrokerConfig;
use runnel_broker::handlers::{self, Reply};
use runnel_broker::state::Broker;
use runnel_protocol::api::SUPPORTED_APIS;
use runnel_protocol::api_versions::ApiVersionsRequest as ApiVersionsRequestV5;
use runnel_protocol::request::Request;

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let mut config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    config.groups.group_initial_rebalance_delay_ms = 0;
    Broker::open(config, ("localhost".into(), 9092)).expect("open broker")
}

/// One valid v2 batch of one uncompressed record, built by hand (CRC32C over attributes..end).
fn one_record_batch() -> Bytes {
    let mut record = BytesMut::new();
    // attributes, timestampDelta(varint 0), offsetDelta(0), key len(-1 => zigzag 1), value len 1, 'x', headers 0
    record.put_u8(0);
    record.put_u8(0);
    record.put_u8(0);
    record.put_u8(1);
    record.put_u8(2);
    record.put_u8(b'x');
    record.put_u8(0);
    let mut body = BytesMut::new();
    body.put_i16(0); // attributes
    body.put_i32(0); // lastOffsetDelta
    body.put_i64(1_700_000_000_000); // baseTimestamp
    body.put_i64(1_700_000_000_000); // maxTimestamp
    body.put_i64(-1); // producerId
    body.put_i16(-1); // producerEpoch
    body.put_i32(-1); // baseSequence
    body.put_i32(1); // records count
    body.put_u8((record.len() as u8) << 1); // record length varint (zigzag)
    body.put_slice(&record);
    let crc = crc32c::crc32c(&body);
    let mut batch = BytesMut::new();
    batch.put_i64(0);
    batch.put_i32((4 + 1 + 4 + body.len()) as i32);
    batch.put_i32(0);
    batch.put_i8(2);
    batch.put_u32(crc);
    batch.put_slice(&body);
    batch.freeze()
}

fn request_for(key: ApiKey, version: i16, topic: &str, topic_id: uuid::Uuid) -> RequestKind {
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    match key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("test"))
                .with_client_software_version(StrBytes::from_static_str("1.0")),
        ),
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(name.clone()))]))
                .with_allow_auto_topic_creation(true),
        ),
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(
                vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(format!("new-{version}"))))
                .with_num_partitions(2)
                .with_replication_factor(1)],
            ))
        }
        ApiKey::DeleteTopics => {
            let victim = TopicName(StrBytes::from_static_str("does-not-exist"));
            RequestKind::DeleteTopics(
                if version >= 6 {
                    DeleteTopicsRequest::default()
                        .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(victim))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![victim])
                }
                .with_timeout_ms(5000),
            )
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_string(topic.to_owned()))
                        .with_configuration_keys(None),
                ])
                .with_include_synonyms(version >= 1),
        ),
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_owned()))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_string(format!("{}", 1000 + version))))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_owned()))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ]),
            ]),
        ),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(
            vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name.clone())
                .with_partitions(
                    [-1i64, -2, -3, 0]
                        .iter()
                        .map(|ts| {
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(*ts)
                        })
                        .collect(),
                )],
        )),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(
            DescribeLogDirsRequest::default().with_topics(if version % 2 == 0 {
                None
            } else {
                Some(vec![
                    describe_log_dirs_request::DescribableLogDirTopic::default()
                        .with_topic(name.clone())
                        .with_partitions(vec![0, 7]),
                ])
            }),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(name.clone())
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(0)
                                .with_leader_epoch(0),
                        ]),
                ]),
        ),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_timeout_ms(1000)
                .with_topic_partitions(if version == 1 {
                    None
                } else {
                    Some(vec![elect_leaders_request::TopicPartitions::default()
                        .with_topic(name.clone())
                        .with_partitions(vec![0, 9])])
                }),
        ),
        ApiKey::UpdateFeatures => RequestKind::UpdateFeatures(
            UpdateFeaturesRequest::default()
                .with_validate_only(version >= 1)
                .with_feature_updates(vec![update_features_request::FeatureUpdateKey::default()
                    .with_feature(StrBytes::from_static_str("group.version"))
                    .with_max_version_level(1)]),
        ),
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(name.clone())
                    .with_topic_id(topic_id)
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(one_record_batch())),
                    ])]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(name.clone())
                    .with_topic_id(topic_id)
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("g"))
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!("join-{version}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"\0\0"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody"))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(StrBytes::from_static_str("nobody"))]),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => {
            let group = GroupId(StrBytes::from_static_str("simple"));
            RequestKind::OffsetFetch(if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group)
                        .with_topics(None),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(if version >= 2 {
                        None
                    } else {
                        Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopic::default()
                                .with_name(name.clone())
                                .with_partition_indexes(vec![0]),
                        ])
                    })
            })
        }
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("simple"))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("none"))]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!("cg-{version}"))))
                .with_member_id(StrBytes::from_string(
                    uuid::Uuid::new_v4().simple().to_string(),
                ))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(10_000)
                .with_subscribed_topic_names(Some(vec![name.clone()]))
                .with_topic_partitions(Some(vec![])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_static_str("cg-1"))]),
        ),
        // Grows the topic by one partition per version.
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_count(i32::from(version) + 2),
                ])
                .with_timeout_ms(5000),
        ),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_owned()))),
                ])
                .with_response_partition_limit(1),
        ),
        ApiKey::ListConfigResources => {
            RequestKind::ListConfigResources(ListConfigResourcesRequest::default())
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(1_000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-1),
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(9)
                            .with_offset(0),
                    ])]),
        ),
        ApiKey::AddPartitionsToTxn if version < 4 => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "every-version-txn",
                )))
                .with_v3_and_below_producer_id(ProducerId(7))
                .with_v3_and_below_producer_epoch(0)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![0]),
                ]),
        ),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_static_str(
                        "every-version-txn",
                    )))
                    .with_producer_id(ProducerId(7))
                    .with_producer_epoch(0)
                    .with_verify_only(true)
                    .with_topics(vec![
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name.clone())
                            .with_partitions(vec![0]),
                    ]),
            ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "every-version-txn",
                )))
                .with_producer_id(ProducerId(7))
                .with_group_id(GroupId(StrBytes::from_static_str("g"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "every-version-txn",
                )))
                .with_producer_id(ProducerId(7))
                .with_committed(true),
        ),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_static_str("every-version-txn"),
            )]),
        ),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default()
                .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]),
        ),
        // A simple group's transactional offset (producer id per version), one known partition
        // and one unknown.
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_producer_id(ProducerId(7000 + i64::from(version)))
                .with_producer_epoch(0)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(9)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        // Aborts the TxnOffsetCommit's transaction of the same version, on every
        // `__consumer_offsets` partition (one holds it) and the topic.
        ApiKey::WriteTxnMarkers => {
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(7000 + i64::from(version)))
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                            .with_partition_indexes((0..50).collect()),
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partition_indexes(vec![0, 9]),
                    ]),
            ]))
        }
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_indexes(vec![0, 9]),
            ]))
        }
        // A node never registered: BROKER_ID_NOT_REGISTERED (unregistering this node would
        // take its partitions' leadership for the requests after it).
        ApiKey::UnregisterBroker => RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(99)),
        ),
        // A target that is not a registered broker: INVALID_REPLICA_ASSIGNMENT, nothing moves.
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    kafka_protocol::messages::alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(name.clone())
                        .with_partitions(vec![
                            kafka_protocol::messages::alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(99)])),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(30_000),
        ),
        other => panic!("no test request for {other:?}: add one when adding an API"),
    }
}

// Every advertised (api, version) pair gets a response that encodes at that version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_version_encodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    let topic = broker
        .create_topic("every-version", 1, 1, Default::default(), false)
        .expect("create topic");
    // Group requests may wait for timers (join delays).
    tokio::spawn(Arc::clone(&broker.groups).run_timers(Arc::clone(&broker)));
    tokio::spawn(Arc::clone(&broker.txns).run_timers(Arc::clone(&broker)));
    // Transaction requests reach loaded coordinator shards, not NOT_COORDINATOR answers.
    broker
        .ensure_transaction_topic()
        .expect("create __transaction_state");
    for api in SUPPORTED_APIS {
        for version in api.min_version..=api.max_version {
            let request = match request_for(api.key, version, "every-version", topic.topic_id) {
                // The broker decodes ApiVersions (v0-5) with runnel's own codec.
                RequestKind::ApiVersions(r) => Request::ApiVersions(ApiVersionsRequestV5 {
                    client_software_name: r.client_software_name,
                    client_software_version: r.client_software_version,
                    ..ApiVersionsRequestV5::default()
                }),
                other => Request::Kafka(other),
            };
            let header = RequestHeader::default()
                .with_request_api_key(api.key as i16)
                .with_request_api_version(version)
                .with_correlation_id(7);
            let connection = runnel_broker::context::ConnectionContext::plaintext(
                "127.0.0.1:1".parse().expect("addr"),
            );
            let ctx = runnel_broker::context::RequestContext {
                connection: &connection,
                header: &header,
            };
            let reply = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                handlers::handle(&broker, &ctx, request),
            )
            .await
            .unwrap_or_else(|_| panic!("{:?} v{version}: no answer within 20 s", api.key));
            let body = match reply {
                Reply::Send(body) => body,
                Reply::Fetch(answer) => kafka_protocol::messages::ResponseKind::Fetch(
                    handlers::materialize_fetch(answer).expect("read fetched records"),
                ),
                _ => panic!("{:?} v{version}: no response", api.key),
            };
            runnel_protocol::frame::encode_response(
                api.key,
                version,
                api.key.response_header_version(version),
                7,
                &body,
            )
            .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", api.key));
        }
    }
}
