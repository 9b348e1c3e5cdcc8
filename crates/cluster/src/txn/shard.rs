//! The transaction coordinator as a shard of the coordinator runtime: one per
//! `__transaction_state` partition its broker leads.

use kafka_protocol::messages::ResponseKind;

use super::coordinator::{TxnCoordinator, TxnRequest};
use super::output::{MarkerWrite, Output};
use super::PartitionView;
use crate::group::{ClientInfo, Record, RequestId};
use crate::shard::{AppendBatch, AppendRequest, AppendToken, CoordinatorShard, ShardOutput};
use crate::MetadataImage;

/// What the transaction coordinator asks of its shell besides responses and appends.
#[derive(Debug, Clone)]
pub enum TxnEffect {
    /// Write these markers, then report them through `TxnCoordinator::markers_written`.
    WriteMarkers(MarkerWrite),
    /// Fetch a block of producer ids and hand it over with `TxnCoordinator::add_producer_ids`.
    NeedProducerIds,
}

/// Partition leaders as the metadata image registers them.
impl PartitionView for MetadataImage {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let topic = self.topic(topic)?;
        if partition < 0 || i64::from(partition) >= i64::from(topic.partitions) {
            return None;
        }
        Some(topic.registration(partition).map_or(-1, |r| r.leader))
    }
}

/// The runtime's form of the engine's outputs. Appends carry the engine's append id as their
/// token; the engine answers its requests itself once told an append's fate, so no responses
/// ride on the append.
pub fn shard_outputs(outputs: Vec<Output>) -> Vec<ShardOutput<TxnEffect>> {
    outputs
        .into_iter()
        .map(|output| match output {
            Output::Respond(id, response) => ShardOutput::Respond(id, response),
            Output::Append {
                id,
                partition,
                records,
            } => ShardOutput::Append(AppendRequest {
                partition,
                token: id,
                records,
                batch: AppendBatch::Plain,
                on_success: Vec::new(),
                on_failure: Vec::new(),
            }),
            Output::WriteMarkers(write) => ShardOutput::Effect(TxnEffect::WriteMarkers(write)),
            Output::NeedProducerIds => ShardOutput::Effect(TxnEffect::NeedProducerIds),
        })
        .collect()
}

impl CoordinatorShard for TxnCoordinator {
    type Request = TxnRequest;
    type Effect = TxnEffect;

    fn handle(
        &mut self,
        id: RequestId,
        version: i16,
        _client: &ClientInfo,
        request: TxnRequest,
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<TxnEffect>> {
        shard_outputs(TxnCoordinator::handle(
            self, id, version, request, now_ms, image,
        ))
    }

    fn tick(&mut self, now_ms: i64, image: &MetadataImage) -> Vec<ShardOutput<TxnEffect>> {
        shard_outputs(TxnCoordinator::tick(self, now_ms, image))
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        TxnCoordinator::next_deadline_ms(self)
    }

    fn replay(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        TxnCoordinator::replay(self, key, value).map_err(|e| e.to_string())
    }

    fn finish_replay(&mut self, now_ms: i64, image: &MetadataImage) -> Vec<ShardOutput<TxnEffect>> {
        shard_outputs(TxnCoordinator::finish_replay(self, now_ms, image))
    }

    fn on_committed(
        &mut self,
        token: AppendToken,
        _records: &[Record],
        now_ms: i64,
        image: &MetadataImage,
    ) -> Vec<ShardOutput<TxnEffect>> {
        shard_outputs(TxnCoordinator::on_committed(self, token, now_ms, image))
    }

    fn on_append_failed(
        &mut self,
        token: AppendToken,
        error: i16,
        now_ms: i64,
    ) -> Vec<ShardOutput<TxnEffect>> {
        shard_outputs(TxnCoordinator::on_append_failed(self, token, error, now_ms))
    }

    fn error_response(request: &TxnRequest, version: i16, code: i16) -> ResponseKind {
        request.error_response(version, code)
    }
}
