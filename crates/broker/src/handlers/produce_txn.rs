//! Transactional produce: before a transaction's first batch on a partition is appended, the
//! partition's leader checks with the transaction coordinator that the transaction holds the
//! partition (KIP-890 part 1: AddPartitionsToTxn verify-only), or, for a client at
//! transaction version 2 (Produce v12+), adds it itself (KIP-890 part 2). Kafka's
//! `ReplicaManager.handleProduceAppend` and `AddPartitionsToTxnManager`, with the coordinator
//! called in-process when this node leads the transactional id's `__transaction_state`
//! partition, else over the network (AddPartitionsToTxn v4/v5 to that leader).
//!
//! A partition whose log already has the producer's transaction open at the batch's epoch
//! needs no check, as in Kafka. Not done: Kafka's `VerificationGuard`, which refuses the
//! append if a marker ended the transaction between the check and the append.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProduceRequest, ProducerId,
    ResponseKind, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use runnel_cluster::txn::TxnRequest;
use runnel_protocol::batch::BatchHeader;
use runnel_storage::{Verification, VerificationGuard};

use crate::state::Broker;

/// Kafka's `add.partitions.to.txn.retry.backoff.ms`: the wait before a TV2 add that met
/// CONCURRENT_TRANSACTIONS (the previous transaction's markers still being written) is tried
/// again.
const ADD_RETRY_BACKOFF_MS: u64 = 20;
/// Kafka's `add.partitions.to.txn.retry.backoff.max.ms`: how long such retries go on.
const ADD_RETRY_MAX_MS: u64 = 100;

/// Waits before a TV2 add that met CONCURRENT_TRANSACTIONS asks again: until the shard that
/// owns the transactional id commits something (the previous transaction's completion, once
/// its markers are written), or at most Kafka's fixed backoff. Kafka waits the whole backoff;
/// waking on the completion answers the same, sooner.
async fn wait_for_completion(completed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) {
    let _ = tokio::time::timeout(Duration::from_millis(ADD_RETRY_BACKOFF_MS), completed).await;
}

/// Partitions of a produce request refused before their append, by (topic position, partition
/// position) in the request: error code and message.
pub type Refused = HashMap<(usize, usize), (i16, Option<String>)>;

/// What verification decided for a produce request: the partitions to refuse, and the guards
/// the others' appends must carry (`PartitionLog::append_as_leader_verified`).
#[derive(Debug, Default)]
pub struct Verified {
    pub refused: Refused,
    /// Guards of the batches verified with the coordinator, by position.
    guards: HashMap<(usize, usize), VerificationGuard>,
    /// `transaction.partition.verification.enable`: whether the log checks the guards.
    checked: bool,
}

impl Verified {
    /// What the append of the partition at `position` carries.
    pub fn verification(&self, position: (usize, usize)) -> Verification {
        if self.checked {
            Verification::Guard(self.guards.get(&position).copied())
        } else {
            Verification::Off
        }
    }
}

/// One transactional batch of the request.
struct TxnBatch {
    position: (usize, usize),
    topic: String,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
}

/// Checks the transactional batches of `request` with the coordinator; returns the partitions
/// to refuse and the guards the others' appends carry. Non-transactional requests return at
/// once without allocating.
pub async fn verify(
    broker: &Broker,
    principal: &crate::context::Principal,
    request: &ProduceRequest,
    version: i16,
) -> Verified {
    let mut verified = Verified {
        checked: broker.config.txns.partition_verification,
        ..Verified::default()
    };
    let refused = &mut verified.refused;
    let image = broker.image();
    let mut batches = Vec::new();
    for (t, topic_data) in request.topic_data.iter().enumerate() {
        let topic = if version >= 13 {
            image.topic_by_id(&topic_data.topic_id)
        } else {
            image.topic(topic_data.name.0.as_str())
        };
        for (p, data) in topic_data.partition_data.iter().enumerate() {
            let Some(records) = &data.records else {
                continue;
            };
            let Ok(header) = BatchHeader::parse(records) else {
                continue;
            };
            if !(header.is_transactional() && header.has_producer_id()) {
                continue;
            }
            // Partitions that do not exist are answered by the append path.
            let Some(topic) = topic else {
                continue;
            };
            batches.push(TxnBatch {
                position: (t, p),
                topic: topic.name.clone(),
                partition: data.index,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
            });
        }
    }
    if batches.is_empty() {
        return verified;
    }
    let refuse_all = |refused: &mut Refused, code: ResponseError| {
        for topic in 0..request.topic_data.len() {
            for partition in 0..request.topic_data[topic].partition_data.len() {
                refused.insert((topic, partition), (code.code(), None));
            }
        }
    };
    // Kafka answers a request with transactional records but no transactional id, or one the
    // principal may not write, as an unauthorized transactional id
    // (KafkaApis.handleProduceRequest).
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    let Some(transactional_id) = transactional_id.filter(|id| {
        broker.authorizer.authorize(
            principal,
            crate::authorizer::AclOperation::Write,
            crate::authorizer::ResourceType::TransactionalId,
            id,
        )
    }) else {
        refuse_all(refused, ResponseError::TransactionalIdAuthorizationFailed);
        return verified;
    };
    let (producer_id, producer_epoch) = (batches[0].producer_id, batches[0].producer_epoch);
    if batches
        .iter()
        .any(|b| (b.producer_id, b.producer_epoch) != (producer_id, producer_epoch))
    {
        // "Transactional records contained more than one producer ID".
        refuse_all(refused, ResponseError::InvalidProducerIdMapping);
        return verified;
    }
    let add_partition = version > 11;
    if !add_partition && !broker.config.txns.partition_verification {
        return verified;
    }
    // Only a transaction's first batch on a partition is checked; it starts a verification
    // whose guard its append carries (Kafka's `maybeStartTransactionVerification`).
    let guards = &mut verified.guards;
    batches.retain(|b| {
        let partition = image
            .topic(&b.topic)
            .and_then(|t| broker.partition(&t.topic_id, b.partition));
        let Some(partition) = partition else {
            return true;
        };
        let guard = partition.lock_log().start_transaction_verification(
            b.producer_id,
            b.producer_epoch,
            add_partition,
            crate::clock::now_ms(),
        );
        match guard {
            Some(guard) => {
                guards.insert(b.position, guard);
                true
            }
            None => false,
        }
    });
    if batches.is_empty() {
        return verified;
    }
    let started = Instant::now();
    let completion = broker.txns.completion(&transactional_id, &image);
    let errors = loop {
        // Registered before asking, so a completion between the answer and the wait is not
        // missed.
        let mut completed = std::pin::pin!(completion.notified());
        completed.as_mut().enable();
        let errors = ask_coordinator(
            broker,
            &transactional_id,
            producer_id,
            producer_epoch,
            &batches,
            add_partition,
        )
        .await;
        let concurrent = errors
            .values()
            .any(|&c| c == ResponseError::ConcurrentTransactions.code());
        if add_partition
            && concurrent
            && started.elapsed() < Duration::from_millis(ADD_RETRY_MAX_MS)
        {
            wait_for_completion(completed).await;
            continue;
        }
        break errors;
    };
    let generic_errors = version > 10;
    for batch in &batches {
        let Some(&code) = errors.get(&(batch.topic.clone(), batch.partition)) else {
            continue;
        };
        if code == 0 {
            continue;
        }
        verified.refused.insert(
            batch.position,
            produce_error(code, generic_errors, add_partition),
        );
    }
    verified
}

/// KIP-890 for TxnOffsetCommit (Kafka's `CoordinatorPartitionWriter.maybeStartTransactionVerification`
/// with `txnOffsetCommitRequestVersionToTransactionSupportedOperation`): before a transaction's
/// first offsets reach the group's `__consumer_offsets` partition, the coordinator verifies that
/// the transaction holds that partition (v0-4, AddOffsetsToTxn added it), or adds it itself
/// (v5+: a transaction-version-2 client sends no AddOffsetsToTxn). Returns the error every
/// partition of the request answers (0: go on), before the group coordinator's own mapping
/// of write errors.
pub async fn verify_offsets_partition(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    offsets_partition: i32,
    version: i16,
) -> i16 {
    let add_partition = version >= 5;
    if !add_partition && !broker.config.txns.partition_verification {
        return 0;
    }
    let topic = crate::internal_topics::OFFSETS_TOPIC;
    let image = broker.image();
    let ongoing = image
        .topic(topic)
        .and_then(|t| broker.partition(&t.topic_id, offsets_partition))
        .is_some_and(|p| {
            p.lock_log()
                .has_ongoing_transaction(producer_id, producer_epoch)
        });
    if ongoing {
        return 0;
    }
    let batch = [TxnBatch {
        position: (0, 0),
        topic: topic.to_owned(),
        partition: offsets_partition,
        producer_id,
        producer_epoch,
    }];
    let started = Instant::now();
    let completion = broker.txns.completion(transactional_id, &image);
    let code = loop {
        let mut completed = std::pin::pin!(completion.notified());
        completed.as_mut().enable();
        let errors = ask_coordinator(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            &batch,
            add_partition,
        )
        .await;
        let code = errors
            .get(&(topic.to_owned(), offsets_partition))
            .copied()
            .unwrap_or(0);
        if add_partition
            && code == ResponseError::ConcurrentTransactions.code()
            && started.elapsed() < Duration::from_millis(ADD_RETRY_MAX_MS)
        {
            wait_for_completion(completed).await;
            continue;
        }
        break code;
    };
    if code == 0 {
        return 0;
    }
    produce_error(code, version >= 4, add_partition).0
}

/// A coordinator's answer for a partition as the produce answers it
/// (`AddPartitionsToTxnManager`, then `handleProduceAppend`'s translation).
fn produce_error(code: i16, generic_errors: bool, add_partition: bool) -> (i16, Option<String>) {
    use ResponseError::*;
    let error = ResponseError::try_from_code(code);
    let code = match error {
        Some(ProducerFenced) => InvalidProducerEpoch.code(),
        Some(TransactionAbortable) if !generic_errors => InvalidTxnState.code(),
        _ => code,
    };
    let unverified = |underlying: ResponseError| {
        (
            NotEnoughReplicas.code(),
            Some(format!(
                "Unable to verify the partition has been added to the transaction. Underlying error: {}",
                error_name(underlying)
            )),
        )
    };
    match ResponseError::try_from_code(code) {
        Some(InvalidTxnState) => (
            code,
            Some("Partition was not added to the transaction".to_owned()),
        ),
        Some(
            e @ (NetworkException
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator),
        ) => unverified(e),
        Some(e @ ConcurrentTransactions) if !add_partition => unverified(e),
        _ => (code, None),
    }
}

/// Kafka's `Errors` name of an error (what its messages print).
fn error_name(error: ResponseError) -> &'static str {
    use ResponseError::*;
    match error {
        NetworkException => "NETWORK_EXCEPTION",
        CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
        CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        NotCoordinator => "NOT_COORDINATOR",
        ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
        _ => "UNKNOWN_SERVER_ERROR",
    }
}

/// The transaction coordinator of `transactional_id` when another broker is it: the live
/// leader of the id's `__transaction_state` partition and its client endpoint. `None` when this
/// node leads that partition, or no live broker does (the in-process coordinator then
/// answers NOT_COORDINATOR, which the produce turns into a retriable error).
fn remote_coordinator(broker: &Broker, transactional_id: &str) -> Option<(i32, String)> {
    let image = broker.image();
    let topic = image.topic(crate::internal_topics::TRANSACTION_STATE_TOPIC)?;
    let partitions = i32::try_from(topic.partitions).ok()?;
    let partition = runnel_cluster::txn::transaction_partition_for(transactional_id, partitions);
    let leader = topic.registration(partition)?.leader;
    if leader == broker.node_id() {
        return None;
    }
    let b = image.brokers.get(&leader).filter(|b| b.is_live())?;
    Some((leader, broker.inter_broker_address(b)))
}

/// Asks the coordinator (in-process, or over the network when another broker is it) to verify
/// or add the partitions; per-partition error codes by (topic, partition).
async fn ask_coordinator(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    batches: &[TxnBatch],
    add_partition: bool,
) -> HashMap<(String, i32), i16> {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for b in batches {
        match topics.iter_mut().find(|t| t.name.0.as_str() == b.topic) {
            Some(t) => t.partitions.push(b.partition),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(b.topic.clone())))
                    .with_partitions(vec![b.partition]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_owned(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(!add_partition)
            .with_topics(topics),
    ]);
    // v5 for adds (TV2), v4 for verification, as Kafka's AddPartitionsToTxnManager sends them.
    let version = if add_partition { 5 } else { 4 };
    let all = |code: i16| -> HashMap<(String, i32), i16> {
        batches
            .iter()
            .map(|b| ((b.topic.clone(), b.partition), code))
            .collect()
    };
    let response = match remote_coordinator(broker, transactional_id) {
        // Another broker leads the transactional id's `__transaction_state` partition: ask it
        // over the network, as Kafka's AddPartitionsToTxnManager does.
        Some((node, address)) => {
            let answer: anyhow::Result<AddPartitionsToTxnResponse> = broker
                .coordinator_channel
                .call(
                    node,
                    &address,
                    ApiKey::AddPartitionsToTxn,
                    version,
                    &request,
                )
                .await;
            match answer {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(node, address, error = %e, "asking the transaction coordinator to verify partitions failed");
                    return all(ResponseError::NetworkException.code());
                }
            }
        }
        None => {
            let answer = broker
                .txns
                .call(broker, version, TxnRequest::AddPartitionsToTxn(request))
                .await;
            let Some(ResponseKind::AddPartitionsToTxn(response)) = answer else {
                return all(ResponseError::CoordinatorNotAvailable.code());
            };
            response
        }
    };
    if response.error_code != 0 {
        let code = if response.error_code == ResponseError::ClusterAuthorizationFailed.code() {
            ResponseError::InvalidTxnState.code()
        } else {
            response.error_code
        };
        return all(code);
    }
    let mut errors = HashMap::new();
    for result in response.results_by_transaction {
        for topic in result.topic_results {
            for p in topic.results_by_partition {
                errors.insert(
                    (topic.name.0.to_string(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
    }
    errors
}
