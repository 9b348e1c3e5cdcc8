//! The one table of APIs runnel implements and the versions it advertises in ApiVersions.
//!
//! Advertising an API or version tells clients they may rely on every field of it, so an entry
//! goes here only when its handler gives every field of every listed version Kafka's meaning.
//! Versions top out at Kafka 4.1's (what kafka-protocol 0.18's `ApiKey::valid_versions` gives),
//! except ApiVersions, decoded by runnel itself up to Kafka 4.4's v5.

use kafka_protocol::messages::ApiKey;

/// One supported API and its version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn full(key: ApiKey, min_version: i16, max_version: i16) -> SupportedApi {
    SupportedApi {
        key,
        min_version,
        max_version,
    }
}

/// Every API runnel serves. Ranges equal what a Kafka 4.1.2 broker advertises (checked with
/// `kafka-broker-api-versions`), except Produce: Kafka 4.1 still advertises v0-2 so that old
/// librdkafka feature probes pass, but rejects their message formats; kafka-protocol cannot
/// decode them, so we advertise from v3, which every current client uses.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    full(ApiKey::Produce, 3, 13),
    full(ApiKey::Fetch, 4, 18),
    full(ApiKey::ListOffsets, 1, 10),
    full(ApiKey::Metadata, 0, 13),
    // v5 (KIP-1242, Kafka 4.4) through runnel's own codec (`crate::api_versions`).
    full(ApiKey::ApiVersions, 0, 5),
    full(ApiKey::CreateTopics, 2, 7),
    full(ApiKey::DeleteTopics, 1, 6),
    // v6 (KIP-939 two-phase commit) is unstable in Kafka 4.1: Kafka does not advertise it and
    // kafka-protocol 0.18's decoder refuses it.
    full(ApiKey::InitProducerId, 0, 5),
    full(ApiKey::DescribeConfigs, 1, 4),
    full(ApiKey::AlterConfigs, 0, 2),
    full(ApiKey::IncrementalAlterConfigs, 0, 1),
    full(ApiKey::DescribeCluster, 0, 2),
    full(ApiKey::FindCoordinator, 0, 6),
    full(ApiKey::JoinGroup, 0, 9),
    full(ApiKey::SyncGroup, 0, 5),
    full(ApiKey::Heartbeat, 0, 4),
    full(ApiKey::LeaveGroup, 0, 5),
    // v10 (topic ids) is unstable in Kafka 4.1 and refused by kafka-protocol 0.18's decoders.
    full(ApiKey::OffsetCommit, 2, 9),
    full(ApiKey::OffsetFetch, 1, 9),
    full(ApiKey::OffsetDelete, 0, 0),
    full(ApiKey::DescribeGroups, 0, 6),
    full(ApiKey::ListGroups, 0, 5),
    full(ApiKey::DeleteGroups, 0, 2),
    full(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    full(ApiKey::ConsumerGroupDescribe, 0, 1),
    full(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Kafka 4.3+ has v5 (IsCordoned); kafka-protocol 0.18 stops at v4.
    full(ApiKey::DescribeLogDirs, 1, 4),
    full(ApiKey::ElectLeaders, 0, 2),
    full(ApiKey::UpdateFeatures, 0, 2),
    full(ApiKey::CreatePartitions, 0, 3),
    full(ApiKey::AlterPartitionReassignments, 0, 1),
    full(ApiKey::ListPartitionReassignments, 0, 0),
    full(ApiKey::DescribeTopicPartitions, 0, 0),
    full(ApiKey::ListConfigResources, 0, 1),
    full(ApiKey::DeleteRecords, 0, 2),
    full(ApiKey::AddPartitionsToTxn, 0, 5),
    full(ApiKey::AddOffsetsToTxn, 0, 4),
    full(ApiKey::EndTxn, 0, 5),
    full(ApiKey::DescribeTransactions, 0, 0),
    full(ApiKey::ListTransactions, 0, 2),
    full(ApiKey::TxnOffsetCommit, 0, 5),
    // Kafka 4.4 has v2 (a TransactionVersion per marker); kafka-protocol 0.18 stops at v1.
    full(ApiKey::WriteTxnMarkers, 1, 1),
    full(ApiKey::DescribeProducers, 0, 0),
    // Kafka serves it on the broker and the controller listeners ("listeners": ["broker",
    // "controller"]).
    full(ApiKey::UnregisterBroker, 0, 0),
];

/// APIs Kafka serves on the controller listener only (`"listeners": ["controller"]`): brokers
/// register and heartbeat with the active controller. Advertised in ApiVersions only on a
/// controller listener. Until runnel binds one, a node accepts them on its client listeners
/// too (unadvertised), so a node that is its own controller can be registered with.
pub const CONTROLLER_ONLY_APIS: &[SupportedApi] = &[
    full(ApiKey::BrokerRegistration, 0, 4),
    full(ApiKey::BrokerHeartbeat, 0, 1),
];

/// KIP-853's voter changes (`kafka-metadata-quorum add-controller / remove-controller`),
/// served and advertised by a quorum node on its CONTROLLER listener only. Kafka 4.1+ has
/// AddRaftVoter v1 (AckWhenCommitted); kafka-protocol 0.18 stops at v0, whose answer comes
/// once the change committed.
pub const QUORUM_CONTROLLER_APIS: &[SupportedApi] = &[
    full(ApiKey::AddRaftVoter, 0, 0),
    full(ApiKey::RemoveRaftVoter, 0, 0),
];

/// The range of an API runnel accepts on some listener: the client listeners' table, or
/// the controller listener's.
pub fn accepted(api_key: i16) -> Option<&'static SupportedApi> {
    supported(api_key).or_else(|| {
        CONTROLLER_ONLY_APIS
            .iter()
            .find(|api| api.key as i16 == api_key)
    })
}

/// APIs served only by a node of a metadata quorum (`controller.quorum.voters` set); a
/// single-node broker has no quorum to describe. Advertised in addition to [`SUPPORTED_APIS`].
pub const QUORUM_APIS: &[SupportedApi] = &[full(ApiKey::DescribeQuorum, 0, 2)];

/// The supported range for `api_key` on a node that runs a quorum (`quorum`) or not.
pub fn supported_on(api_key: i16, quorum: bool) -> Option<&'static SupportedApi> {
    supported(api_key).or_else(|| {
        quorum
            .then(|| QUORUM_APIS.iter().find(|api| api.key as i16 == api_key))
            .flatten()
    })
}

/// The APIs a CONTROLLER listener serves, of those runnel implements: Kafka's controller
/// APIs (`"listeners": ["controller"]` in its request schemas) less Raft's replication ones
/// (Vote, BeginQuorumEpoch, EndQuorumEpoch, FetchSnapshot), which runnel's controllers speak
/// in their own frames, and Fetch, which on a Kafka controller reads only the metadata log.
/// The membership APIs are served on a quorum node's listener only.
pub const CONTROLLER_LISTENER_KEYS: &[ApiKey] = &[
    ApiKey::ApiVersions,
    ApiKey::DescribeQuorum,
    ApiKey::DescribeCluster,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::ElectLeaders,
    ApiKey::UpdateFeatures,
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::UnregisterBroker,
    ApiKey::AlterPartitionReassignments,
    ApiKey::ListPartitionReassignments,
    ApiKey::AddRaftVoter,
    ApiKey::RemoveRaftVoter,
];

/// The supported range for `api_key` on a node running a quorum or not (`quorum`), for a
/// request on its CONTROLLER listener or another (`controller_listener`).
pub fn supported_on_listener(
    api_key: i16,
    quorum: bool,
    controller_listener: bool,
) -> Option<&'static SupportedApi> {
    let api = supported_on(api_key, quorum)
        .or_else(|| {
            CONTROLLER_ONLY_APIS
                .iter()
                .find(|api| api.key as i16 == api_key)
                .filter(|_| controller_listener)
        })
        .or_else(|| {
            QUORUM_CONTROLLER_APIS
                .iter()
                .find(|api| api.key as i16 == api_key)
                .filter(|_| quorum && controller_listener)
        })?;
    (!controller_listener || CONTROLLER_LISTENER_KEYS.contains(&api.key)).then_some(api)
}

/// The supported range for `api_key`, if runnel serves it.
pub fn supported(api_key: i16) -> Option<&'static SupportedApi> {
    SUPPORTED_APIS.iter().find(|api| api.key as i16 == api_key)
}

/// Whether runnel serves `api_key` at `version`.
pub fn is_supported(api_key: i16, version: i16) -> bool {
    supported(api_key).is_some_and(|api| (api.min_version..=api.max_version).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every advertised range lies within what we can decode and encode (kafka-protocol's range,
    // or our own codec's), and equals it except where Kafka itself advertises less (unstable
    // versions).
    #[test]
    fn ranges_match_kafka_protocol() {
        const BELOW_KAFKA_PROTOCOL_MAX: &[(ApiKey, i16)] = &[
            (ApiKey::InitProducerId, 5),
            (ApiKey::OffsetCommit, 9),
            (ApiKey::OffsetFetch, 9),
        ];
        for api in SUPPORTED_APIS
            .iter()
            .chain(QUORUM_APIS)
            .chain(CONTROLLER_ONLY_APIS)
            .chain(QUORUM_CONTROLLER_APIS)
        {
            let valid = crate::validate::decodable_versions(api.key);
            assert_eq!(api.min_version, valid.min, "{:?} min", api.key);
            let expected_max = BELOW_KAFKA_PROTOCOL_MAX
                .iter()
                .find(|(key, _)| *key == api.key)
                .map_or(valid.max, |(_, max)| *max);
            assert_eq!(api.max_version, expected_max, "{:?} max", api.key);
        }
    }

    // Every advertised version passes the validator's schema (which knows Kafka's unstable
    // versions), so no advertised version is one we would refuse.
    #[test]
    fn advertised_versions_are_decodable() {
        for api in SUPPORTED_APIS
            .iter()
            .chain(QUORUM_APIS)
            .chain(CONTROLLER_ONLY_APIS)
            .chain(QUORUM_CONTROLLER_APIS)
        {
            for version in api.min_version..=api.max_version {
                let schema = crate::validate::request_schema(api.key as i16).expect("schema");
                assert!(schema.valid.contains(version), "{:?} v{version}", api.key);
            }
        }
    }

    // No API is listed twice.
    #[test]
    fn unique_keys() {
        for (i, a) in SUPPORTED_APIS.iter().enumerate() {
            assert!(SUPPORTED_APIS[i + 1..].iter().all(|b| b.key != a.key));
        }
    }
}
