//! ApiVersions: the supported API table, and KIP-511 client software validation.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::api::SUPPORTED_APIS;

/// The response listing every supported API; `error_code` lets the connection reuse it for the
/// UNSUPPORTED_VERSION answer (sent as v0 with our ranges, per KIP-511).
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(-1)
}

/// Feature levels runnel implements (reported from v3): `group.version` 1 is the KIP-848
/// consumer protocol. Not `transaction.version` (no transactions yet), and not
/// `metadata.version`, which describes KRaft record formats runnel does not share.
const FEATURES: &[(&str, i16, i16, i16)] = &[("group.version", 0, 1, 1)];

fn with_features(response: ApiVersionsResponse) -> ApiVersionsResponse {
    response
        .with_supported_features(
            FEATURES
                .iter()
                .map(|(name, min, max, _)| {
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        )
        .with_finalized_features(
            FEATURES
                .iter()
                .map(|(name, _, _, level)| {
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version_level(*level)
                        .with_max_version_level(*level)
                })
                .collect(),
        )
        // Features never change at run time yet, so one epoch serves.
        .with_finalized_features_epoch(1)
}

pub fn handle(request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    if version >= 3
        && (!valid_software_field(request.client_software_name.as_str())
            || !valid_software_field(request.client_software_version.as_str()))
    {
        return api_versions_response(ResponseError::InvalidRequest.code());
    }
    let response = api_versions_response(0);
    if version >= 3 {
        with_features(response)
    } else {
        response
    }
}

/// Kafka's rule for client software name and version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::valid_software_field;

    // Kafka's KIP-511 pattern: alphanumerics with inner dots and dashes.
    #[test]
    fn software_field_pattern() {
        assert!(valid_software_field("apache-kafka-java"));
        assert!(valid_software_field("3.9.0"));
        assert!(valid_software_field("a"));
        assert!(!valid_software_field(""));
        assert!(!valid_software_field("-x"));
        assert!(!valid_software_field("x."));
        assert!(!valid_software_field("a b"));
    }
}
