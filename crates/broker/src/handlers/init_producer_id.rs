//! InitProducerId for idempotent (non-transactional) producers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::errors::cluster_error_code;
use crate::state::Broker;

pub fn handle(broker: &Broker, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_ongoing_txn_producer_id(ProducerId(-1))
        .with_ongoing_txn_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // Transactions need a transaction coordinator, which FindCoordinator does not offer yet;
        // clients never get this far, but a hand-made request gets a retriable answer.
        return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    // Without a transactional id Kafka always hands out a fresh id with epoch 0, also when the
    // client asks to bump an existing one (KIP-360): the old id's state simply ages out.
    match broker.allocate_producer_id() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "allocating a producer id");
            response.with_error_code(cluster_error_code(&e))
        }
    }
}
