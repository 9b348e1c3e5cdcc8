//! The one table of APIs runnel implements and the versions it advertises in ApiVersions.
//!
//! Advertising an API or version tells clients they may rely on every field of it, so an entry
//! goes here only when its handler gives every field of every listed version Kafka's meaning.
//! Versions top out at Kafka 4.1's (what kafka-protocol 0.18's `ApiKey::valid_versions` gives).

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

/// Every API runnel serves. Ranges equal Kafka 4.1's; a unit test pins them to kafka-protocol's.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    full(ApiKey::Produce, 3, 13),
    full(ApiKey::Fetch, 4, 18),
    full(ApiKey::ListOffsets, 1, 10),
    full(ApiKey::Metadata, 0, 13),
    full(ApiKey::ApiVersions, 0, 4),
    full(ApiKey::CreateTopics, 2, 7),
    full(ApiKey::DeleteTopics, 1, 6),
    full(ApiKey::InitProducerId, 0, 6),
    full(ApiKey::DescribeConfigs, 1, 4),
    full(ApiKey::DescribeCluster, 0, 2),
];

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

    // Every advertised range lies within what kafka-protocol can decode and encode; the maxima
    // equal Kafka 4.1's so clients get the newest behaviour.
    #[test]
    fn ranges_match_kafka_protocol() {
        for api in SUPPORTED_APIS {
            let valid = api.key.valid_versions();
            assert_eq!(api.min_version, valid.min, "{:?} min", api.key);
            assert_eq!(api.max_version, valid.max, "{:?} max", api.key);
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
