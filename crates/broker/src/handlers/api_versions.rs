//! ApiVersions: the supported API table, KIP-511 client software validation, and KIP-1242's
//! check that a v5 client reached the broker it meant to (Kafka's `KafkaApis`
//! `handleApiVersionsRequest`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::{features, MetadataImage};
use runnel_protocol::api::{
    CONTROLLER_LISTENER_KEYS, QUORUM_APIS, QUORUM_CONTROLLER_APIS, SUPPORTED_APIS,
};
use runnel_protocol::api_versions::ApiVersionsRequest;

/// The successful answer: every supported API and its range (with the quorum's on a node
/// that runs one).
fn supported_apis_response(quorum: bool, controller_listener: bool) -> ApiVersionsResponse {
    let quorum_apis = if quorum { QUORUM_APIS } else { &[] };
    let voter_apis = if quorum && controller_listener {
        QUORUM_CONTROLLER_APIS
    } else {
        &[]
    };
    let api_keys = SUPPORTED_APIS
        .iter()
        .chain(quorum_apis)
        .filter(|api| !controller_listener || CONTROLLER_LISTENER_KEYS.contains(&api.key))
        .chain(voter_apis)
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(-1)
}

/// Adds the features (`runnel_cluster::features`) to an answer of `version`, finalized as
/// `image` has them. As Kafka (KAFKA-17492), v3 answers leave out supported features whose
/// minimum is 0, which older clients cannot parse; finalized features at level 0 are never
/// listed. The epoch is the image's metadata offset, as Kafka's is its image's highest offset.
fn with_features(
    response: ApiVersionsResponse,
    version: i16,
    image: &MetadataImage,
) -> ApiVersionsResponse {
    response
        .with_supported_features(
            features::SUPPORTED_FEATURES
                .iter()
                .filter(|f| version >= 4 || f.min_level != 0)
                .map(|f| {
                    SupportedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(f.name))
                        .with_min_version(f.min_level)
                        .with_max_version(f.max_level)
                })
                .collect(),
        )
        .with_finalized_features(
            features::finalized(image)
                .into_iter()
                .map(|(name, level)| {
                    FinalizedFeatureKey::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_min_version_level(level)
                        .with_max_version_level(level)
                })
                .collect(),
        )
        .with_finalized_features_epoch(image.offset)
}

/// The KIP-511 answer to an ApiVersions request newer than ours, sent as v0: UNSUPPORTED_VERSION
/// and, as Kafka's `getErrorResponse` does, only ApiVersions' own range, so the client retries
/// at a version we speak.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    let own = runnel_protocol::api::supported(kafka_protocol::messages::ApiKey::ApiVersions as i16)
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        });
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(own.into_iter().collect())
}

/// Kafka's `ApiVersionsRequest.getErrorResponse` for INVALID_REQUEST and REBOOTSTRAP_REQUIRED:
/// the error alone, no API keys and no features.
fn error_response(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(error_code)
}

/// Answers one ApiVersions request to the broker `node_id` of the cluster of `image`;
/// `quorum`: the node runs a metadata quorum; `controller_listener`: the request came on its
/// CONTROLLER listener, which serves the controller's APIs only (as Kafka's).
pub fn handle(
    request: &ApiVersionsRequest,
    version: i16,
    image: &MetadataImage,
    node_id: i32,
    quorum: bool,
    controller_listener: bool,
) -> ApiVersionsResponse {
    let software_valid = version < 3
        || (valid_software_field(request.client_software_name.as_str())
            && valid_software_field(request.client_software_version.as_str()));
    if !request.cluster_target_is_valid(version) || !software_valid {
        return error_response(ResponseError::InvalidRequest.code());
    }
    if request.targets_another_broker(version, &image.cluster_id, node_id) {
        tracing::debug!(
            wanted_cluster = ?request.cluster_id,
            wanted_node = request.node_id,
            "ApiVersions for another broker: REBOOTSTRAP_REQUIRED"
        );
        return error_response(ResponseError::RebootstrapRequired.code());
    }
    let response = supported_apis_response(quorum, controller_listener);
    if version >= 3 {
        with_features(response, version, image)
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
