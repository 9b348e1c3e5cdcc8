//! BrokerRegistration (62), BrokerHeartbeat (63) and UnregisterBroker (64) on the active
//! controller, as Kafka's `ControllerApis` answers them: CLUSTER_ACTION (ALTER for
//! UnregisterBroker) on the cluster, NOT_CONTROLLER for 62 and 63 on any node that is not the active
//! controller (64 is forwarded to it), then the controller's decision (`crate::lifecycle`) with Kafka's error codes.
//! Kafka serves 62 and 63 on the controller listener only and 64 on both listeners
//! (`runnel_protocol::api`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use runnel_cluster::broker_lifecycle::{Heartbeat, Registration};
use runnel_cluster::metadata::BrokerListener;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::RequestContext;
use crate::errors::cluster_error_code;
use crate::state::Broker;

/// Bounds on what one registration stores in the image (Kafka bounds the lists only by the
/// frame size): a registration cannot grow the image without limit. Refused as
/// INVALID_REGISTRATION.
pub const REGISTRATION_LISTENERS_MAX: usize = 1_000;
/// See `REGISTRATION_LISTENERS_MAX`.
pub const REGISTRATION_LOG_DIRS_MAX: usize = 1_000;

fn authorized(broker: &Broker, ctx: &RequestContext<'_>, operation: AclOperation) -> bool {
    broker.authorizer.authorize(
        ctx.principal(),
        operation,
        ResourceType::Cluster,
        "kafka-cluster",
    )
}

pub fn registration(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &BrokerRegistrationRequest,
) -> BrokerRegistrationResponse {
    let refuse = |code: ResponseError| {
        BrokerRegistrationResponse::default()
            .with_error_code(code.code())
            .with_broker_epoch(-1)
    };
    if !authorized(broker, ctx, AclOperation::ClusterAction) {
        return refuse(ResponseError::ClusterAuthorizationFailed);
    }
    if !broker.metadata.is_active_controller() {
        return refuse(ResponseError::NotController);
    }
    if request.listeners.len() > REGISTRATION_LISTENERS_MAX
        || request.log_dirs.len() > REGISTRATION_LOG_DIRS_MAX
    {
        return refuse(ResponseError::InvalidRegistration);
    }
    let registration = Registration {
        node_id: request.broker_id.0,
        cluster_id: request.cluster_id.to_string(),
        incarnation_id: request.incarnation_id,
        listeners: request
            .listeners
            .iter()
            .map(|l| BrokerListener {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: l.security_protocol,
            })
            .collect(),
        features: request
            .features
            .iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    f.min_supported_version,
                    f.max_supported_version,
                )
            })
            .collect(),
        rack: request.rack.as_ref().map(ToString::to_string),
        previous_broker_epoch: request.previous_broker_epoch,
        log_dirs: request.log_dirs.clone(),
        is_migrating_zk_broker: request.is_migrating_zk_broker,
        session_alive: false,
    };
    match crate::lifecycle::register(broker, registration) {
        Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
        Err(e) => {
            tracing::info!(node_id = request.broker_id.0, error = %e, "broker registration refused");
            BrokerRegistrationResponse::default()
                .with_error_code(cluster_error_code(&e))
                .with_broker_epoch(-1)
        }
    }
}

pub fn heartbeat(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &BrokerHeartbeatRequest,
) -> BrokerHeartbeatResponse {
    // Kafka's defaults on an error: fenced, not caught up, no shutdown.
    let refuse = |code: i16| {
        BrokerHeartbeatResponse::default()
            .with_error_code(code)
            .with_is_fenced(true)
    };
    if !authorized(broker, ctx, AclOperation::ClusterAction) {
        return refuse(ResponseError::ClusterAuthorizationFailed.code());
    }
    if !broker.metadata.is_active_controller() {
        return refuse(ResponseError::NotController.code());
    }
    let heartbeat = Heartbeat {
        node_id: request.broker_id.0,
        broker_epoch: request.broker_epoch,
        current_metadata_offset: request.current_metadata_offset,
        want_fence: request.want_fence,
        want_shut_down: request.want_shut_down,
    };
    match crate::lifecycle::heartbeat(broker, heartbeat) {
        Ok(reply) => BrokerHeartbeatResponse::default()
            .with_is_caught_up(reply.is_caught_up)
            .with_is_fenced(reply.is_fenced)
            .with_should_shut_down(reply.should_shut_down),
        Err(e) => refuse(cluster_error_code(&e)),
    }
}

pub fn unregister(
    broker: &Broker,
    ctx: &RequestContext<'_>,
    request: &UnregisterBrokerRequest,
) -> UnregisterBrokerResponse {
    let refuse = |code: i16| UnregisterBrokerResponse::default().with_error_code(code);
    if !authorized(broker, ctx, AclOperation::Alter) {
        return refuse(ResponseError::ClusterAuthorizationFailed.code());
    }
    // Any node takes it: the metadata driver forwards the command to the active controller
    // (Kafka's broker forwards UnregisterBroker through its ForwardingManager).
    match crate::lifecycle::unregister(broker, request.broker_id.0) {
        Ok(()) => UnregisterBrokerResponse::default(),
        // Kafka answers with the code only (`Errors.forException(e).code`).
        Err(e) => refuse(cluster_error_code(&e)),
    }
}
