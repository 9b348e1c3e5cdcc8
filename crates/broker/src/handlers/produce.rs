//! Produce: validate, append, acknowledge per `acks`, wake fetches.
//!
//! Two steps, so a connection can pipeline produces (see `connection`): `apply` does everything
//! with a side effect, in request order; `PendingProduce::complete` only waits and builds the
//! answer.
//!
//! Page-cache mode (Kafka's default) appends inline in `apply`, which answers at once
//! (`Applied::Done`: no future, no channel, nothing boxed). Fsync mode (`flush.messages=1`) hands
//! each batch to its partition's group commit (`durability`) in `apply`; every partition of the
//! request is submitted before anything is awaited, so a request spanning several partitions
//! waits about one fsync, not one per partition, and the next request of the connection can be
//! applied while this one waits, so its batches join the same or the next round.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::batch::BatchHeader;

use runnel_storage::{AppendOutcome, StorageError};

use crate::errors::storage_error_code;
use crate::metrics::ErrorCounts;
use crate::replica::{AppendOrigin, AppendWait};
use crate::state::Broker;

/// What the connection does after a produce.
pub enum ProduceReply {
    Respond(ProduceResponse),
    /// acks=0 and everything was appended: the client expects no response at all.
    Silent,
    /// acks=0 and some partition failed: Kafka closes the connection, the only way an acks=0
    /// client learns of the failure (it then refreshes metadata).
    Close,
}

/// A produce after `apply`: answered, or waiting for group-commit rounds.
pub enum Applied {
    /// Nothing to wait for (page-cache mode, or every partition failed before its append).
    Done(ProduceReply),
    /// Some partition is in fsync mode: its batch is queued for its group commit.
    Pending(PendingProduce),
}

/// A produce whose side effects are done: every fsync-mode batch is queued for its partition's
/// group commit, every page-cache batch appended. What is left is waiting for the rounds.
pub struct PendingProduce {
    acks: i16,
    /// The whole answer; the entries named by `awaiting` are placeholders until completion.
    responses: Vec<TopicProduceResponse>,
    /// Never empty (otherwise `apply` answers `Applied::Done`).
    awaiting: Vec<AwaitingFsync>,
}

/// A partition answer that waits for its group-commit round.
struct AwaitingFsync {
    /// Where the answer goes: `responses[topic].partition_responses[partition]`.
    topic: usize,
    partition: usize,
    outcome: AppendWait,
}

fn appended(index: i32, outcome: &AppendOutcome) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(0)
        .with_base_offset(outcome.base_offset)
        .with_log_append_time_ms(outcome.log_append_time_ms)
        .with_log_start_offset(outcome.log_start_offset)
}

fn rejected(index: i32, e: &StorageError) -> PartitionProduceResponse {
    // Kafka's `RecordValidationException`: one entry per refused record (v8+ carries them) and
    // the log start offset; other failures answer -1 there.
    let (record_errors, log_start_offset) = match e {
        StorageError::InvalidTimestamp {
            record_errors,
            log_start_offset,
        }
        | StorageError::InvalidRecords {
            record_errors,
            log_start_offset,
            ..
        } => (
            record_errors
                .iter()
                .map(|(batch_index, message)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*batch_index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(
                            message.clone(),
                        )))
                })
                .collect(),
            *log_start_offset,
        ),
        _ => (Vec::new(), -1),
    };
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(storage_error_code(e))
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(log_start_offset)
        .with_record_errors(record_errors)
        .with_error_message(Some(StrBytes::from_string(e.to_string())))
}

/// Validates the request and appends (page-cache mode) or queues (fsync mode) every batch. The
/// caller must apply a connection's requests one at a time in arrival order: queueing order is
/// append order, which idempotent producers' sequence checks rely on.
/// `verified` holds the partitions (by topic and partition position in the request) refused
/// before any append, with their error: transactional batches the coordinator did not verify
/// (`produce_txn::verify`); and the verification guards the others' appends carry.
pub fn apply(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
    verified: &super::produce_txn::Verified,
) -> Applied {
    let acks = request.acks;
    let image = broker.image();
    let acks_valid = matches!(acks, -1..=1);
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // Empty (no allocation) unless some partition is in fsync mode.
    let mut awaiting: Vec<AwaitingFsync> = Vec::new();
    for (topic_position, topic_data) in request.topic_data.into_iter().enumerate() {
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
        for (partition_position, data) in topic_data.partition_data.into_iter().enumerate() {
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
            let position = (topic_position, partition_position);
            if let Some((code, message)) = verified.refused.get(&position) {
                partition_responses.push(failed(*code, message.clone()));
                continue;
            }
            let partition = topic.and_then(|t| broker.partition(&t.topic_id, data.index));
            let Some(partition) = partition else {
                let code = match topic {
                    Some(t) => crate::errors::not_held_error(t, data.index),
                    None => missing_topic.code(),
                };
                partition_responses.push(failed(code, None));
                continue;
            };
            if let Some(code) = super::leader_error(-1, &partition) {
                partition_responses.push(failed(code, None));
                continue;
            }
            let records = data.records.clone().unwrap_or_default();
            // Produce v3+ carries exactly one v2 batch per partition (Kafka's
            // ProduceRequest.validateRecords); the log validates the batch itself.
            match BatchHeader::parse(&records) {
                // Transactional batches were checked with the coordinator (`verified`).
                Ok(h) if h.size_bytes() == records.len() => {}
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
            match broker.replicas.append_records_verified(
                &partition,
                AppendOrigin::Client,
                acks,
                records,
                verified.verification(position),
            ) {
                Err(refused) => partition_responses.push(failed(refused.code, refused.message)),
                Ok(AppendWait::Done(Ok(outcome))) => {
                    partition_responses.push(appended(data.index, &outcome));
                }
                Ok(AppendWait::Done(Err(e))) => {
                    tracing::debug!(topic = %partition.topic.name, partition = data.index, error = %e, "produce rejected");
                    partition_responses.push(rejected(data.index, &e));
                }
                Ok(wait @ AppendWait::Pending(_)) => {
                    // Fsync mode: answered by `complete` once the round's fsync succeeded.
                    awaiting.push(AwaitingFsync {
                        topic: responses.len(),
                        partition: partition_responses.len(),
                        outcome: wait,
                    });
                    // Overwritten with the round's outcome before anything is sent.
                    partition_responses
                        .push(PartitionProduceResponse::default().with_index(data.index));
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
    if awaiting.is_empty() {
        return Applied::Done(reply(acks, responses, &broker.metrics.produce_errors));
    }
    Applied::Pending(PendingProduce {
        acks,
        responses,
        awaiting,
    })
}

impl PendingProduce {
    /// Waits for the group-commit rounds of the queued batches and builds the answer, counting
    /// its errors in `errors`. Has no other side effect: dropping it (the connection closed)
    /// leaves the rounds to run without it.
    pub async fn complete(self, errors: &ErrorCounts) -> ProduceReply {
        let PendingProduce {
            acks,
            mut responses,
            awaiting,
        } = self;
        // Every fsync-mode batch is already queued, so these waits overlap: the request costs
        // about one round, however many partitions it names. acks=0 waits too: its success
        // (silence) or failure (closing the connection) is known only after the round.
        for wait in awaiting {
            let answer = &mut responses[wait.topic].partition_responses[wait.partition];
            let index = answer.index;
            *answer = match wait.outcome.wait().await {
                Ok(outcome) => appended(index, &outcome),
                Err(e) => rejected(index, &e),
            };
        }
        reply(acks, responses, errors)
    }
}

/// The reply once every partition has its answer; its error codes are counted in `errors`.
fn reply(acks: i16, responses: Vec<TopicProduceResponse>, errors: &ErrorCounts) -> ProduceReply {
    for partition in responses.iter().flat_map(|t| &t.partition_responses) {
        errors.record(partition.error_code);
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
