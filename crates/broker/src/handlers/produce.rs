//! Produce: validate, append, acknowledge per `acks`, wake fetches.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::BatchHeader;

use crate::errors::storage_error_code;
use crate::state::{now_ms, Broker};

/// What the connection does after a produce.
pub enum ProduceReply {
    Respond(ProduceResponse),
    /// acks=0 and everything was appended: the client expects no response at all.
    Silent,
    /// acks=0 and some partition failed: Kafka closes the connection, the only way an acks=0
    /// client learns of the failure (it then refreshes metadata).
    Close,
}

pub fn handle(broker: &Broker, request: ProduceRequest, version: i16) -> ProduceReply {
    let acks = request.acks;
    let image = broker.image();
    let acks_valid = matches!(acks, -1..=1);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        // v13 names topics by id; earlier versions by name.
        let topic = if version >= 13 {
            image.topic_by_id(&topic_data.topic_id)
        } else {
            image.topic(topic_data.name.0.as_str())
        };
        let missing_topic = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let failed = |code: i16, message: Option<String>| {
                PartitionProduceResponse::default()
                    .with_index(data.index)
                    .with_error_code(code)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
                    .with_error_message(message.map(StrBytes::from_string))
            };
            if !acks_valid {
                partition_responses.push(failed(ResponseError::InvalidRequiredAcks.code(), None));
                continue;
            }
            if topic.is_some_and(|t| crate::groups::is_internal_topic(&t.name)) {
                // Kafka: "Cannot append to internal topic" (internal topics are the
                // coordinators' logs).
                partition_responses.push(failed(ResponseError::InvalidTopicException.code(), None));
                continue;
            }
            let partition = topic.and_then(|t| broker.partition(&t.topic_id, data.index));
            let Some(partition) = partition else {
                let code = if topic.is_some() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    missing_topic
                };
                partition_responses.push(failed(code.code(), None));
                continue;
            };
            let records = data.records.clone().unwrap_or_default();
            // Produce v3+ carries exactly one v2 batch per partition (Kafka's
            // ProduceRequest.validateRecords); the log validates the batch itself.
            match BatchHeader::parse(&records) {
                Ok(h) if h.size_bytes() == records.len() => {
                    if h.is_transactional() || request.transactional_id.is_some() {
                        partition_responses.push(failed(
                            ResponseError::InvalidTxnState.code(),
                            Some("transactions are not supported by this broker yet".into()),
                        ));
                        continue;
                    }
                }
                Ok(_) => {
                    partition_responses.push(failed(
                        ResponseError::InvalidRecord.code(),
                        Some("Produce requests with version 3+ must have exactly one record batch per partition".into()),
                    ));
                    continue;
                }
                Err(e) => {
                    partition_responses.push(failed(
                        crate::errors::batch_error_code(&e),
                        Some(e.to_string()),
                    ));
                    continue;
                }
            }
            if acks == -1 && partition.min_insync_replicas > 1 {
                partition_responses.push(failed(
                    ResponseError::NotEnoughReplicas.code(),
                    Some(format!(
                        "The size of the current ISR 1 is insufficient to satisfy the min.isr requirement of {}",
                        partition.min_insync_replicas
                    )),
                ));
                continue;
            }
            let outcome = {
                let mut log = partition.lock_log();
                let result = log.append_as_leader(records, partition.leader_epoch, now_ms());
                if let Ok(outcome) = &result {
                    if !outcome.duplicate {
                        // Single node: the only replica has it, so it is committed.
                        let leo = log.log_end_offset();
                        log.set_high_watermark(leo);
                        if partition.flush_every_append {
                            // Durability: flush.messages=1 asks for an fsync per append.
                            if let Err(e) = log.flush() {
                                tracing::error!(error = %e, "fsync after append failed");
                            }
                        }
                    }
                }
                result
            };
            match outcome {
                Ok(outcome) => {
                    partition.wake_waiters();
                    partition_responses.push(
                        PartitionProduceResponse::default()
                            .with_index(data.index)
                            .with_error_code(0)
                            .with_base_offset(outcome.base_offset)
                            .with_log_append_time_ms(outcome.log_append_time_ms)
                            .with_log_start_offset(outcome.log_start_offset),
                    );
                }
                Err(e) => {
                    tracing::debug!(topic = %partition.topic.name, partition = data.index, error = %e, "produce rejected");
                    partition_responses.push(failed(storage_error_code(&e), Some(e.to_string())));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partition_responses),
        );
    }
    if acks == 0 {
        let failed = responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0);
        return if failed {
            ProduceReply::Close
        } else {
            ProduceReply::Silent
        };
    }
    ProduceReply::Respond(ProduceResponse::default().with_responses(responses))
}
