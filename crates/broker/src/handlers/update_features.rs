//! UpdateFeatures (KIP-584): change finalized feature levels through the metadata log, as
//! Kafka's controller does (`QuorumController.updateFeatures`, `FeatureControlManager`). The
//! rules and messages are `runnel_cluster::features`'; this shapes the answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::features::{FeatureUpdate, UpgradeType};
use runnel_cluster::{ClusterError, Command};

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::cluster_error_code;
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &UpdateFeaturesRequest,
    version: i16,
) -> UpdateFeaturesResponse {
    if !broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::Alter,
        ResourceType::Cluster,
        "kafka-cluster",
    ) {
        return UpdateFeaturesResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "Cluster authorization failed.",
            )));
    }
    let command = Command::UpdateFeatures {
        node_id: broker.node_id(),
        updates: request
            .feature_updates
            .iter()
            .map(|u| FeatureUpdate {
                name: u.feature.to_string(),
                level: u.max_version_level,
                // v0 requests decode with the default, 1 (upgrade); Kafka's controller reads
                // that field too, not v0's AllowDowngrade.
                upgrade_type: UpgradeType::from_code(u.upgrade_type),
            })
            .collect(),
    };
    let outcome = if request.validate_only {
        broker.metadata.dry_run(&command).map(|_| ())
    } else {
        broker.metadata.submit(&command, broker).map(|_| ())
    };
    match outcome {
        Ok(()) => {
            // Kafka's success: error code 0 and null messages, top-level and per feature.
            let response = UpdateFeaturesResponse::default().with_error_message(None);
            // Per-feature results only up to v1 (v2 answers with the top-level error alone).
            if version <= 1 {
                response.with_results(
                    request
                        .feature_updates
                        .iter()
                        .map(|u| {
                            UpdatableFeatureResult::default()
                                .with_feature(u.feature.clone())
                                .with_error_message(None)
                        })
                        .collect(),
                )
            } else {
                response
            }
        }
        Err(e) => {
            let message = match &e {
                ClusterError::InvalidUpdateVersion(message) => message.clone(),
                other => other.to_string(),
            };
            UpdateFeaturesResponse::default()
                .with_error_code(cluster_error_code(&e))
                .with_error_message(Some(StrBytes::from_string(format!(
                    "The update failed for all features since the following feature had an \
                     error: {message}"
                ))))
        }
    }
}
