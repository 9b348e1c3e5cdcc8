//! TxnOffsetCommit: offsets a transactional producer commits for a group (Kafka's
//! `OffsetMetadataManager.commitTransactionalOffset`). They are written as ordinary offset
//! records in a transactional batch of the producer, stay pending (invisible to OffsetFetch)
//! until the producer's marker reaches the partition, and become the group's offsets on
//! COMMIT (`replay_end_txn`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::*;
use kafka_protocol::messages::*;

use super::*;
use crate::group::txn_offset_commit_error;

impl GroupCoordinator {
    /// Handles one TxnOffsetCommit. The broker has already answered the partitions of unknown
    /// topics (UNKNOWN_TOPIC_OR_PARTITION, as `KafkaApis.handleTxnOffsetCommitRequest` does)
    /// and passes the rest; an empty group id is INVALID_GROUP_ID for every partition (the
    /// coordinator service's check).
    pub(super) fn txn_offset_commit(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &TxnOffsetCommitRequest,
        now_ms: i64,
        _topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        if group_id.is_empty() {
            let resp = txn_offset_commit_error(r, err(ResponseError::InvalidGroupId));
            out.push(Output::Respond(
                pending.id,
                ResponseKind::TxnOffsetCommit(resp),
            ));
            return;
        }
        if let Err(code) = self.validate_txn_offset_commit(r) {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::TxnOffsetCommit(txn_offset_commit_error(r, code)),
            ));
            return;
        }
        let mut records = Vec::new();
        let mut response = TxnOffsetCommitResponse::default();
        for t in &r.topics {
            let mut topic = TxnOffsetCommitResponseTopic::default().with_name(t.name.clone());
            // Kafka resolves the topic id only to check a member's assignment, which its
            // validator skips (`NO_OP`) for every commit our groups accept. The record
            // carries no topic id (`OffsetAndMetadata.fromRequest` of a TxnOffsetCommit).
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.as_str())
                    .unwrap_or("");
                let code =
                    if metadata.encode_utf16().count() > self.config.offset_metadata_max_bytes {
                        err(ResponseError::OffsetMetadataTooLarge)
                    } else {
                        let value = OffsetCommitValue {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: metadata.to_string(),
                            commit_timestamp_ms: now_ms,
                            expire_timestamp_ms: -1,
                            topic_id: None,
                        };
                        records.push(records::offset_commit_record(
                            group_id,
                            t.name.as_str(),
                            p.partition_index,
                            &value,
                        ));
                        0
                    };
                topic.partitions.push(
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            response.topics.push(topic);
        }
        if records.is_empty() {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::TxnOffsetCommit(response),
            ));
            return;
        }
        // Pending offsets of the producer once the batch is committed (`on_committed_at`);
        // the group's offsets only after its COMMIT marker (`replay_end_txn`).
        out.push(Output::AppendTransactional {
            partition: self.partition_for(group_id),
            producer_id: r.producer_id.0,
            producer_epoch: r.producer_epoch,
            records,
            on_success: (pending.id, ResponseKind::TxnOffsetCommit(response.clone())),
            on_failure: (pending.id, response),
        });
    }

    /// Kafka's `OffsetMetadataManager.validateTransactionalOffsetCommit`: a commit for a
    /// group that does not exist creates a simple group when it carries no generation
    /// (ILLEGAL_GENERATION otherwise); an existing group checks member, instance and
    /// generation only if the request gives any (v3+), and never its state.
    fn validate_txn_offset_commit(&mut self, r: &TxnOffsetCommitRequest) -> Result<(), i16> {
        let group_id = r.group_id.as_str();
        let member_id = r.member_id.as_str();
        let instance = r.group_instance_id.as_ref().map(|s| s.as_str());
        match self.groups.get(group_id) {
            None if r.generation_id < 0 => {
                let p = self.partition_for(group_id);
                self.groups.insert(
                    group_id.to_string(),
                    Group::Classic(ClassicGroup::new(group_id.to_string(), p)),
                );
                Ok(())
            }
            None => Err(err(ResponseError::IllegalGeneration)),
            Some(Group::Classic(g)) => {
                g.validate_txn_offset_commit(member_id, instance, r.generation_id)
            }
            Some(Group::Consumer(g)) => {
                g.validate_txn_offset_commit(member_id, instance, r.generation_id)
            }
        }
    }
}
