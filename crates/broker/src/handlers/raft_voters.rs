//! AddRaftVoter (80) and RemoveRaftVoter (81): KIP-853's changes of the metadata quorum's
//! voter set, as Kafka's `ControllerApis` and `KafkaRaftClient` answer them (`kafka-metadata-quorum
//! add-controller` / `remove-controller`). ALTER on the cluster; INCONSISTENT_CLUSTER_ID for a
//! cluster id other than this cluster's; NOT_LEADER_OR_FOLLOWER on a controller that does not
//! lead; INVALID_REQUEST without a directory id (or, for an add, without an endpoint of the
//! CONTROLLER listener); then the leader's checks in `metadata::quorum` (UNSUPPORTED_VERSION on
//! a static quorum, REQUEST_TIMED_OUT while another change is pending or while the new voter
//! is not a caught-up learner, DUPLICATE_VOTER, VOTER_NOT_FOUND). The answer waits until the
//! change committed (v0's semantics: acknowledged when committed).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::quorum::Endpoint;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::metadata::quorum::{QuorumHandle, VoterRequest};
use crate::state::Broker;

/// Endpoints one AddRaftVoter may carry (Kafka bounds them by the frame size only; a voter
/// has a listener or two).
pub const VOTER_ENDPOINTS_MAX: usize = 64;

type Answer = (i16, Option<String>);

fn authorized(broker: &Broker, ctx: &RequestContext<'_>) -> bool {
    broker.authorizer.authorize(
        ctx.principal(),
        AclOperation::Alter,
        ResourceType::Cluster,
        "kafka-cluster",
    )
}

/// The checks both requests share, in Kafka's order; `Ok` with the quorum to ask.
fn common<'a>(
    broker: &'a Broker,
    ctx: &RequestContext<'_>,
    cluster_id: Option<&StrBytes>,
) -> Result<&'a QuorumHandle, Answer> {
    if !authorized(broker, ctx) {
        return Err((ResponseError::ClusterAuthorizationFailed.code(), None));
    }
    let quorum = broker
        .metadata
        .quorum()
        .ok_or((ResponseError::UnsupportedVersion.code(), None))?;
    let ours = broker.metadata.image().cluster_id.clone();
    if let Some(given) = cluster_id {
        if given.as_str() != ours {
            return Err((
                ResponseError::InconsistentClusterId.code(),
                Some(format!(
                    "The given id \"{}\" doesn't match the cluster id \"{ours}\"",
                    given.as_str()
                )),
            ));
        }
    }
    if !quorum.is_active_controller() {
        return Err((ResponseError::NotLeaderOrFollower.code(), None));
    }
    Ok(quorum)
}

fn wait(quorum: &QuorumHandle, request: VoterRequest, timeout_ms: Option<i32>) -> Answer {
    let timeout = timeout_ms
        .filter(|ms| *ms > 0)
        .map_or(quorum.request_timeout(), |ms| {
            Duration::from_millis(ms as u64)
        });
    match crate::blocking::blocking(|| quorum.change_voters(request, timeout)) {
        Ok(()) => (0, None),
        Err(e) => e,
    }
}

pub fn add(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &AddRaftVoterRequest,
) -> AddRaftVoterResponse {
    let (code, message) = (|| {
        let quorum = common(broker, ctx, request.cluster_id.as_ref())?;
        if request.voter_id < 0 || request.voter_directory_id.is_nil() {
            return Err((
                ResponseError::InvalidRequest.code(),
                Some("Add voter request didn't include a valid voter".into()),
            ));
        }
        let listener = quorum.controller_listener().unwrap_or_default().to_owned();
        let endpoints: Vec<Endpoint> = request
            .listeners
            .iter()
            .take(VOTER_ENDPOINTS_MAX)
            .map(|l| Endpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
            })
            .collect();
        if request.listeners.len() > VOTER_ENDPOINTS_MAX
            || !endpoints
                .iter()
                .any(|e| e.name.eq_ignore_ascii_case(&listener))
        {
            return Err((
                ResponseError::InvalidRequest.code(),
                Some(format!(
                    "Add voter request didn't include the endpoint ({}) for the default listener \
                     {listener}",
                    endpoints
                        .iter()
                        .map(|e| format!("{}://{}", e.name, e.address()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
        Ok(wait(
            quorum,
            VoterRequest::Add {
                id: request.voter_id,
                directory_id: request.voter_directory_id,
                endpoints,
            },
            Some(request.timeout_ms),
        ))
    })()
    .unwrap_or_else(|e| e);
    AddRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
}

pub fn remove(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &RemoveRaftVoterRequest,
) -> RemoveRaftVoterResponse {
    let (code, message) = (|| {
        let quorum = common(broker, ctx, request.cluster_id.as_ref())?;
        if request.voter_id < 0 || request.voter_directory_id.is_nil() {
            return Err((
                ResponseError::InvalidRequest.code(),
                Some("Remove voter request didn't include a valid voter".into()),
            ));
        }
        Ok(wait(
            quorum,
            VoterRequest::Remove {
                id: request.voter_id,
                directory_id: request.voter_directory_id,
            },
            None,
        ))
    })()
    .unwrap_or_else(|e| e);
    RemoveRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(StrBytes::from_string))
}
