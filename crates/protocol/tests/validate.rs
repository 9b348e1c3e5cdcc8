//! The request validator against kafka-protocol 0.18: every API and version, populated requests,
//! schema-generated requests, and hostile inputs.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use runnel_protocol::fuzzing::{Choices, GenOptions, SchemaGen, Xorshift};
use runnel_protocol::request::{decode_frame, decode_request, Request};
use runnel_protocol::validate::schema::MessageSpec;
use runnel_protocol::validate::{
    request_header_version, request_schema, response_schema, validate_request, validate_response,
    ValidateError,
};

/// A default body for every API key, built from each `*Request::default()`.
macro_rules! default_request {
    ($key:expr; $(($variant:ident, $ty:ident),)*) => {
        match $key {
            $(ApiKey::$variant => RequestKind::$variant($ty::default()),)*
        }
    };
}

fn default_body(key: ApiKey) -> Request {
    if key == ApiKey::ApiVersions {
        // kafka-protocol has no v5; runnel's own codec has every version.
        return Request::ApiVersions(Default::default());
    }
    Request::Kafka(default_request!(key;
        (Produce, ProduceRequest),
        (Fetch, FetchRequest),
        (ListOffsets, ListOffsetsRequest),
        (Metadata, MetadataRequest),
        (OffsetCommit, OffsetCommitRequest),
        (OffsetFetch, OffsetFetchRequest),
        (FindCoordinator, FindCoordinatorRequest),
        (JoinGroup, JoinGroupRequest),
        (Heartbeat, HeartbeatRequest),
        (LeaveGroup, LeaveGroupRequest),
        (SyncGroup, SyncGroupRequest),
        (DescribeGroups, DescribeGroupsRequest),
        (ListGroups, ListGroupsRequest),
        (SaslHandshake, SaslHandshakeRequest),
        (ApiVersions, ApiVersionsRequest),
        (CreateTopics, CreateTopicsRequest),
        (DeleteTopics, DeleteTopicsRequest),
        (DeleteRecords, DeleteRecordsRequest),
        (InitProducerId, InitProducerIdRequest),
        (OffsetForLeaderEpoch, OffsetForLeaderEpochRequest),
        (AddPartitionsToTxn, AddPartitionsToTxnRequest),
        (AddOffsetsToTxn, AddOffsetsToTxnRequest),
        (EndTxn, EndTxnRequest),
        (WriteTxnMarkers, WriteTxnMarkersRequest),
        (TxnOffsetCommit, TxnOffsetCommitRequest),
        (DescribeAcls, DescribeAclsRequest),
        (CreateAcls, CreateAclsRequest),
        (DeleteAcls, DeleteAclsRequest),
        (DescribeConfigs, DescribeConfigsRequest),
        (AlterConfigs, AlterConfigsRequest),
        (AlterReplicaLogDirs, AlterReplicaLogDirsRequest),
        (DescribeLogDirs, DescribeLogDirsRequest),
        (SaslAuthenticate, SaslAuthenticateRequest),
        (CreatePartitions, CreatePartitionsRequest),
        (CreateDelegationToken, CreateDelegationTokenRequest),
        (RenewDelegationToken, RenewDelegationTokenRequest),
        (ExpireDelegationToken, ExpireDelegationTokenRequest),
        (DescribeDelegationToken, DescribeDelegationTokenRequest),
        (DeleteGroups, DeleteGroupsRequest),
        (ElectLeaders, ElectLeadersRequest),
        (IncrementalAlterConfigs, IncrementalAlterConfigsRequest),
        (AlterPartitionReassignments, AlterPartitionReassignmentsRequest),
        (ListPartitionReassignments, ListPartitionReassignmentsRequest),
        (OffsetDelete, OffsetDeleteRequest),
        (DescribeClientQuotas, DescribeClientQuotasRequest),
        (AlterClientQuotas, AlterClientQuotasRequest),
        (DescribeUserScramCredentials, DescribeUserScramCredentialsRequest),
        (AlterUserScramCredentials, AlterUserScramCredentialsRequest),
        (Vote, VoteRequest),
        (BeginQuorumEpoch, BeginQuorumEpochRequest),
        (EndQuorumEpoch, EndQuorumEpochRequest),
        (DescribeQuorum, DescribeQuorumRequest),
        (AlterPartition, AlterPartitionRequest),
        (UpdateFeatures, UpdateFeaturesRequest),
        (Envelope, EnvelopeRequest),
        (FetchSnapshot, FetchSnapshotRequest),
        (DescribeCluster, DescribeClusterRequest),
        (DescribeProducers, DescribeProducersRequest),
        (BrokerRegistration, BrokerRegistrationRequest),
        (BrokerHeartbeat, BrokerHeartbeatRequest),
        (UnregisterBroker, UnregisterBrokerRequest),
        (DescribeTransactions, DescribeTransactionsRequest),
        (ListTransactions, ListTransactionsRequest),
        (AllocateProducerIds, AllocateProducerIdsRequest),
        (ConsumerGroupHeartbeat, ConsumerGroupHeartbeatRequest),
        (ConsumerGroupDescribe, ConsumerGroupDescribeRequest),
        (ControllerRegistration, ControllerRegistrationRequest),
        (GetTelemetrySubscriptions, GetTelemetrySubscriptionsRequest),
        (PushTelemetry, PushTelemetryRequest),
        (AssignReplicasToDirs, AssignReplicasToDirsRequest),
        (ListConfigResources, ListConfigResourcesRequest),
        (DescribeTopicPartitions, DescribeTopicPartitionsRequest),
        (ShareGroupHeartbeat, ShareGroupHeartbeatRequest),
        (ShareGroupDescribe, ShareGroupDescribeRequest),
        (ShareFetch, ShareFetchRequest),
        (ShareAcknowledge, ShareAcknowledgeRequest),
        (AddRaftVoter, AddRaftVoterRequest),
        (RemoveRaftVoter, RemoveRaftVoterRequest),
        (UpdateRaftVoter, UpdateRaftVoterRequest),
        (InitializeShareGroupState, InitializeShareGroupStateRequest),
        (ReadShareGroupState, ReadShareGroupStateRequest),
        (WriteShareGroupState, WriteShareGroupStateRequest),
        (DeleteShareGroupState, DeleteShareGroupStateRequest),
        (ReadShareGroupStateSummary, ReadShareGroupStateSummaryRequest),
        (DescribeShareGroupOffsets, DescribeShareGroupOffsetsRequest),
        (AlterShareGroupOffsets, AlterShareGroupOffsetsRequest),
        (DeleteShareGroupOffsets, DeleteShareGroupOffsetsRequest),
    ))
}

/// Encodes a body at `version`, as a client sends it.
fn encode_body(body: &Request, buf: &mut BytesMut, version: i16) {
    match body {
        Request::Kafka(body) => body.encode(buf, version).unwrap(),
        Request::ApiVersions(body) => body.encode(buf, version).unwrap(),
    }
}

/// Encodes header + body of one request, returning the frame and the header length.
fn frame_of(key: ApiKey, version: i16, body: &Request) -> (Vec<u8>, usize) {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("runnel-test")));
    let mut buf = BytesMut::new();
    header
        .encode(
            &mut buf,
            request_header_version(key as i16, version).unwrap(),
        )
        .unwrap();
    let header_len = buf.len();
    encode_body(body, &mut buf, version);
    (buf.to_vec(), header_len)
}

/// The versions the validator accepts: kafka-protocol's range minus unstable latest versions.
fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let spec = request_schema(key as i16).unwrap();
    spec.valid.lo..=spec.valid.hi
}

/// Validates, then decodes the body and checks kafka-protocol consumed exactly what we walked.
fn accept_and_decode(key: ApiKey, version: i16, frame: &[u8], header_len: usize) -> Request {
    let validated = validate_request(key as i16, version, frame)
        .unwrap_or_else(|e| panic!("{key:?} v{version} refused: {e}"));
    assert_eq!(validated.header_len, header_len, "{key:?} v{version}");
    let mut body = Bytes::copy_from_slice(&frame[header_len..]);
    let decoded = decode_request(key as i16, version, &mut body)
        .unwrap_or_else(|e| panic!("{key:?} v{version} decode: {e}"));
    assert_eq!(
        body.len(),
        0,
        "{key:?} v{version}: decoder left bytes the walker consumed"
    );
    decoded
}

// Proves every default request of every API and version is accepted with the exact header length.
#[test]
fn every_default_request_is_accepted() {
    for key in ApiKey::iter() {
        for version in versions(key) {
            let (frame, header_len) = frame_of(key, version, &default_body(key));
            accept_and_decode(key, version, &frame, header_len);
        }
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A random but schema-valid body (the generator follows the schema independently of the
/// validator's code, so that kafka-protocol's decoder can check the schema).
fn generated_body(spec: &MessageSpec, version: i16, seed: u64) -> Vec<u8> {
    SchemaGen::new(spec, version, Xorshift(seed), GenOptions::default()).body()
}

// Proves the checked-in schemas describe exactly what kafka-protocol decodes: random
// schema-generated bodies of every API and version are accepted, decode consuming every byte, and
// survive a re-encode/decode round trip unchanged.
#[test]
fn schema_generated_requests_round_trip() {
    let mut failures = Vec::new();
    for key in ApiKey::iter() {
        let spec = request_schema(key as i16).unwrap();
        for version in versions(key) {
            for seed in 1..=40u64 {
                let body = generated_body(spec, version, seed * 7919 + version as u64);
                let (mut frame, header_len) = frame_of(key, version, &default_body(key));
                frame.truncate(header_len);
                frame.extend_from_slice(&body);
                if let Err(e) = validate_request(key as i16, version, &frame) {
                    failures.push(format!("{key:?} v{version} seed {seed}: validator: {e}"));
                    break;
                }
                let mut bytes = Bytes::from(body.clone());
                let decoded = match decode_request(key as i16, version, &mut bytes) {
                    Ok(d) => d,
                    Err(e) => {
                        failures.push(format!("{key:?} v{version} seed {seed}: decode: {e}"));
                        break;
                    }
                };
                if !bytes.is_empty() {
                    failures.push(format!(
                        "{key:?} v{version} seed {seed}: {} bytes left",
                        bytes.len()
                    ));
                    break;
                }
                let mut again = BytesMut::new();
                encode_body(&decoded, &mut again, version);
                let mut again = again.freeze();
                let redecoded = decode_request(key as i16, version, &mut again).unwrap();
                assert_eq!(decoded, redecoded, "{key:?} v{version} seed {seed}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A header for `key`/`version` followed by `body`.
fn with_body(key: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let (mut frame, header_len) = frame_of(key, version, &default_body(key));
    frame.truncate(header_len);
    frame.extend_from_slice(body);
    frame
}

// Proves the 4-byte Metadata v1 body `7f ff ff ff` (2^31-1 topics) is refused before decoding.
#[test]
fn metadata_v1_huge_topic_count() {
    let err = validate_request(
        3,
        1,
        &with_body(ApiKey::Metadata, 1, &[0x7f, 0xff, 0xff, 0xff]),
    )
    .unwrap_err();
    assert!(
        matches!(err, ValidateError::TooManyElements { .. }),
        "{err}"
    );
}

// Proves a compact array count of u32::MAX (varint ff ff ff ff 0f) is refused.
#[test]
fn compact_count_u32_max() {
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
    let err = validate_request(3, 12, &with_body(ApiKey::Metadata, 12, &body)).unwrap_err();
    assert!(
        matches!(err, ValidateError::TooManyElements { .. }),
        "{err}"
    );
}

// Proves a string claiming 0x7fff bytes with 3 left is refused (SaslHandshake v1: one string).
#[test]
fn string_longer_than_frame() {
    let err = validate_request(
        17,
        1,
        &with_body(ApiKey::SaslHandshake, 1, &[0x7f, 0xff, b'a', b'b', b'c']),
    )
    .unwrap_err();
    assert!(matches!(err, ValidateError::BadLength { .. }), "{err}");
}

// Proves a tagged field whose size exceeds the frame is refused (ApiVersions v3 body).
#[test]
fn tagged_field_huge_size() {
    // client software name "", version "", then 1 tagged field, tag 9, size 2^32-1.
    let body = [1, 1, 1, 9, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = validate_request(18, 3, &with_body(ApiKey::ApiVersions, 3, &body)).unwrap_err();
    assert!(matches!(err, ValidateError::BadLength { .. }), "{err}");
    // And a tagged-field count far beyond the bytes left.
    let body = [1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = validate_request(18, 3, &with_body(ApiKey::ApiVersions, 3, &body)).unwrap_err();
    assert!(
        matches!(err, ValidateError::TooManyElements { .. }),
        "{err}"
    );
}

// Proves negative lengths other than -1 are refused, and -1 only where nullable.
#[test]
fn negative_lengths() {
    // Metadata v1 topics array of -2.
    let err = validate_request(
        3,
        1,
        &with_body(ApiKey::Metadata, 1, &[0xff, 0xff, 0xff, 0xfe]),
    )
    .unwrap_err();
    assert!(matches!(err, ValidateError::BadLength { .. }), "{err}");
    // Metadata v1 topics null is allowed (nullable from v1: "all topics").
    assert!(validate_request(
        3,
        1,
        &with_body(ApiKey::Metadata, 1, &[0xff, 0xff, 0xff, 0xff])
    )
    .is_ok());
    // SaslHandshake mechanism null is not allowed; -2 is a bad length.
    let err =
        validate_request(17, 1, &with_body(ApiKey::SaslHandshake, 1, &[0xff, 0xff])).unwrap_err();
    assert!(matches!(err, ValidateError::UnexpectedNull { .. }), "{err}");
    let err =
        validate_request(17, 1, &with_body(ApiKey::SaslHandshake, 1, &[0xff, 0xfe])).unwrap_err();
    assert!(matches!(err, ValidateError::BadLength { .. }), "{err}");
}

// Proves unknown keys, unsupported and unstable versions, and a lying header are refused.
#[test]
fn unknown_api_and_versions() {
    assert!(matches!(
        validate_request(999, 0, &[]),
        Err(ValidateError::UnknownApi { .. })
    ));
    assert!(matches!(
        validate_request(0, 2, &[]),
        Err(ValidateError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        validate_request(8, 10, &[]),
        Err(ValidateError::UnsupportedVersion { .. })
    ));
    let frame = with_body(ApiKey::Metadata, 1, &[0, 0, 0, 0]);
    assert!(matches!(
        validate_request(3, 2, &frame),
        Err(ValidateError::HeaderMismatch { .. })
    ));
}

// Proves the latest version of every schema marked `latestVersionUnstable` is refused, and pins
// which schemas those are in Kafka 4.1.2 (the verbatim files): a schema update that changes the set
// must be looked at, since kafka-protocol 0.18's `ApiKey::valid_versions()` lists those versions
// although its message types refuse them.
#[test]
fn unstable_latest_versions_are_refused() {
    let mut unstable = Vec::new();
    for key in ApiKey::iter() {
        let spec = request_schema(key as i16).unwrap();
        if !spec.latest_unstable {
            continue;
        }
        let latest = spec.valid.hi + 1;
        unstable.push((key, latest));
        let (frame, _) = frame_of(key, spec.valid.hi, &default_body(key));
        assert!(
            matches!(
                validate_request(key as i16, latest, &frame),
                Err(ValidateError::UnsupportedVersion { .. })
            ),
            "{key:?} v{latest}"
        );
    }
    assert_eq!(
        unstable,
        [
            (ApiKey::OffsetCommit, 10),
            (ApiKey::OffsetFetch, 10),
            (ApiKey::InitProducerId, 6),
        ]
    );
}

/// Populated requests: schema-generated bodies of the APIs strangers use most.
fn populated_frames() -> Vec<(ApiKey, i16, Vec<u8>, usize)> {
    let keys = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::ApiVersions,
        ApiKey::ListOffsets,
        ApiKey::InitProducerId,
        ApiKey::DescribeConfigs,
        ApiKey::DeleteTopics,
    ];
    let mut out = Vec::new();
    for key in keys {
        let spec = request_schema(key as i16).unwrap();
        for version in versions(key) {
            let body = generated_body(spec, version, 0x5eed + version as u64);
            let (mut frame, header_len) = frame_of(key, version, &default_body(key));
            frame.truncate(header_len);
            frame.extend_from_slice(&body);
            out.push((key, version, frame, header_len));
        }
    }
    out
}

// Proves populated requests are accepted, decode, and give a non-zero estimate when they hold arrays.
#[test]
fn populated_requests_are_accepted() {
    for (key, version, frame, header_len) in populated_frames() {
        accept_and_decode(key, version, &frame, header_len);
        let decoded = decode_frame(Bytes::from(frame), usize::MAX).unwrap();
        assert_eq!(decoded.header.request_api_key, key as i16);
    }
}

// Proves every strict prefix of a valid request is refused (no field may be cut short).
#[test]
fn every_truncation_is_refused() {
    for (key, version, frame, _) in populated_frames() {
        for cut in 0..frame.len() {
            assert!(
                validate_request(key as i16, version, &frame[..cut]).is_err(),
                "{key:?} v{version} cut at {cut}"
            );
        }
    }
}

// Proves flipped bytes never panic the validator and that whatever it accepts kafka-protocol
// decodes without error, within the estimate's order of magnitude.
#[test]
fn flipped_bytes_never_escape() {
    let mut rng = Xorshift(42);
    for (_, _, frame, _) in populated_frames() {
        for _ in 0..300 {
            let mut bad = frame.clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(bad.len() as u64) as usize;
                bad[at] = rng.next_u64() as u8;
            }
            runnel_protocol::fuzzing::request_frame(&bad);
        }
    }
}

// Regenerates the request_frame seed corpus (run with --ignored): one default frame per API at
// its newest version, the populated frames at their newest version, and the regression inputs.
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_frame");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: String, bytes: &[u8]| {
        assert!(bytes.len() < 4096, "{name}");
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    for key in ApiKey::iter() {
        let version = *versions(key).end();
        write(
            format!("default-{key:?}-v{version}"),
            &frame_of(key, version, &default_body(key)).0,
        );
    }
    for (key, version, frame, _) in populated_frames() {
        if version == *versions(key).end() || version == *versions(key).start() {
            write(format!("populated-{key:?}-v{version}"), &frame);
        }
    }
    write(
        "regress-metadata-v1-huge-count".into(),
        &with_body(ApiKey::Metadata, 1, &[0x7f, 0xff, 0xff, 0xff]),
    );
    write(
        "regress-compact-u32-max".into(),
        &with_body(
            ApiKey::Metadata,
            12,
            &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0],
        ),
    );
    write(
        "regress-tag-huge-size".into(),
        &with_body(
            ApiKey::ApiVersions,
            3,
            &[1, 1, 1, 9, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
    );
}

// Proves a compact string longer than 0x7fff bytes is refused, as Kafka's readers refuse it,
// while one of exactly 0x7fff bytes passes (OffsetCommit v8: the group id is the first field).
#[test]
fn compact_string_longer_than_i16_max() {
    let body = |len: usize| {
        let mut body = Vec::new();
        put_uvarint(&mut body, u32::try_from(len + 1).unwrap());
        body.resize(body.len() + len, b'g');
        // generation, member id "", group instance id null, topics [], no tags
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0]);
        body
    };
    let err =
        validate_request(8, 8, &with_body(ApiKey::OffsetCommit, 8, &body(40_000))).unwrap_err();
    assert!(
        matches!(err, ValidateError::BadLength { length: 40_000, .. }),
        "{err}"
    );
    let err =
        validate_request(8, 8, &with_body(ApiKey::OffsetCommit, 8, &body(0x8000))).unwrap_err();
    assert!(matches!(err, ValidateError::BadLength { .. }), "{err}");
    validate_request(8, 8, &with_body(ApiKey::OffsetCommit, 8, &body(0x7fff))).unwrap();
}

// Proves the response schemas describe exactly what kafka-protocol decodes, as the request
// schemas do: random schema-generated answers of every API and version (the broker reads its
// peers' Fetch, DescribeQuorum, WriteTxnMarkers and registration answers) are accepted by
// `validate_response` and decode consuming every byte; each cut short is refused.
#[test]
fn schema_generated_responses_are_accepted_and_decode_whole() {
    let mut failures = Vec::new();
    for key in ApiKey::iter().filter(|k| *k != ApiKey::ApiVersions) {
        let spec = response_schema(key as i16).unwrap();
        for version in spec.valid.lo..=spec.valid.hi {
            for seed in 1..=20u64 {
                let body = generated_body(spec, version, seed * 7919 + version as u64);
                let mut frame = BytesMut::new();
                ResponseHeader::default()
                    .with_correlation_id(7)
                    .encode(&mut frame, key.response_header_version(version))
                    .unwrap();
                let header_len = frame.len();
                frame.extend_from_slice(&body);
                match validate_response(key as i16, version, &frame) {
                    Ok(v) if v.header_len == header_len => {}
                    Ok(v) => failures.push(format!(
                        "{key:?} v{version} seed {seed}: header of {} bytes, not {header_len}",
                        v.header_len
                    )),
                    Err(e) => {
                        failures.push(format!("{key:?} v{version} seed {seed}: validator: {e}"));
                        break;
                    }
                }
                if seed == 1 && !body.is_empty() {
                    let cut = &frame[..frame.len() - 1];
                    if validate_response(key as i16, version, cut).is_ok() {
                        failures.push(format!("{key:?} v{version}: a cut answer was accepted"));
                    }
                }
                let mut bytes = Bytes::from(body);
                match ResponseKind::decode(key, &mut bytes, version) {
                    Err(e) => failures.push(format!("{key:?} v{version} seed {seed}: decode: {e}")),
                    Ok(_) if !bytes.is_empty() => failures.push(format!(
                        "{key:?} v{version} seed {seed}: decoder left {} bytes",
                        bytes.len()
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
