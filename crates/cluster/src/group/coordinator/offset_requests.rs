//! The offset requests: OffsetCommit, OffsetFetch, OffsetDelete, and offsets retention
//! (Kafka's `cleanupGroupMetadata`) run by the timer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::*;

impl GroupCoordinator {
    // -----------------------------------------------------------------------------------------
    // Offsets

    pub(super) fn offset_commit(
        &mut self,
        out: &mut Vec<Output>,
        pending: Pending,
        r: &OffsetCommitRequest,
        now_ms: i64,
        topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        // Kafka's broker checks topics before the coordinator sees the request.
        let exists = |name: &str, partition: i32| {
            topics.topic_by_name(name).is_some_and(|(_, count)| {
                partition >= 0 && u32::try_from(partition).is_ok_and(|p| p < count)
            })
        };
        let mut any_known = false;
        for t in &r.topics {
            for p in &t.partitions {
                any_known |= exists(t.name.as_str(), p.partition_index);
            }
        }
        let group_error = if any_known {
            self.validate_offset_commit(pending.version, r)
        } else {
            Ok(())
        };
        let mut records = Vec::new();
        let mut response = OffsetCommitResponse::default();
        let mut failure = OffsetCommitResponse::default();
        let expire_timestamp_ms = if r.retention_time_ms == -1 {
            -1
        } else {
            now_ms + r.retention_time_ms
        };
        for t in &r.topics {
            let mut topic = offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone());
            let mut topic_failure = topic.clone();
            for p in &t.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.as_str())
                    .unwrap_or("");
                let code = if !exists(t.name.as_str(), p.partition_index) {
                    err(ResponseError::UnknownTopicOrPartition)
                } else if let Err(code) = group_error {
                    code
                } else if metadata.encode_utf16().count() > self.config.offset_metadata_max_bytes {
                    err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let value = OffsetCommitValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: metadata.to_string(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms,
                        topic_id: (!t.topic_id.is_nil()).then_some(t.topic_id),
                    };
                    records.push(records::offset_commit_record(
                        group_id,
                        t.name.as_str(),
                        p.partition_index,
                        &value,
                    ));
                    0
                };
                let partition = offset_commit_response::OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index);
                topic
                    .partitions
                    .push(partition.clone().with_error_code(code));
                let failure_code = if code == 0 { write_failure() } else { code };
                topic_failure
                    .partitions
                    .push(partition.with_error_code(failure_code));
            }
            response.topics.push(topic);
            failure.topics.push(topic_failure);
        }
        if group_error.is_ok() && any_known {
            if let Some(Group::Classic(g)) = self.groups.get_mut(group_id) {
                g.on_offset_commit(r.member_id.as_str(), now_ms);
            }
        }
        if records.is_empty() {
            out.push(Output::Respond(
                pending.id,
                ResponseKind::OffsetCommit(response),
            ));
            return;
        }
        // The offsets become visible when their records are committed (`on_committed`), so
        // a failed append leaves nothing behind that OffsetFetch could return.
        out.push(Output::Append {
            partition: self.partition_for(group_id),
            records,
            on_success: vec![(pending.id, ResponseKind::OffsetCommit(response))],
            on_failure: vec![(pending.id, ResponseKind::OffsetCommit(failure))],
        });
    }

    /// Kafka's `OffsetMetadataManager.validateOffsetCommit`; creates a simple group for a
    /// commit from outside group management.
    pub(super) fn validate_offset_commit(
        &mut self,
        version: i16,
        r: &OffsetCommitRequest,
    ) -> Result<(), i16> {
        let group_id = r.group_id.as_str();
        let generation = r.generation_id_or_member_epoch;
        match self.groups.get(group_id) {
            None if generation < 0 => {
                let p = self.partition_for(group_id);
                self.groups.insert(
                    group_id.to_string(),
                    Group::Classic(ClassicGroup::new(group_id.to_string(), p)),
                );
                Ok(())
            }
            None if version >= 9 => Err(err(ResponseError::GroupIdNotFound)),
            None => Err(err(ResponseError::IllegalGeneration)),
            Some(Group::Classic(g)) => g.validate_offset_commit(
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|s| s.as_str()),
                generation,
            ),
            Some(Group::Consumer(g)) => {
                g.validate_offset_commit(r.member_id.as_str(), generation, version)
            }
        }
    }

    pub(super) fn offset_fetch(&self, version: i16, r: &OffsetFetchRequest) -> OffsetFetchResponse {
        if version < 8 {
            let topics = r.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, group_topics) =
                self.fetch_group(r.group_id.as_str(), None, -1, topics, r.require_stable);
            let mut resp = OffsetFetchResponse::default().with_error_code(code);
            for (name, partitions) in group_topics {
                let mut topic =
                    offset_fetch_response::OffsetFetchResponseTopic::default().with_name(name);
                for (index, offset, epoch, metadata, code) in partitions {
                    topic.partitions.push(
                        offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(sb(&metadata)))
                            .with_error_code(code),
                    );
                }
                resp.topics.push(topic);
            }
            return resp;
        }
        let mut resp = OffsetFetchResponse::default();
        for g in &r.groups {
            let topics = g.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.clone(), t.partition_indexes.clone()))
                    .collect::<Vec<_>>()
            });
            let (code, group_topics) = self.fetch_group(
                g.group_id.as_str(),
                g.member_id.as_ref().map(|m| m.as_str()),
                g.member_epoch,
                topics,
                r.require_stable,
            );
            let mut group = offset_fetch_response::OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(code);
            for (name, partitions) in group_topics {
                let mut topic =
                    offset_fetch_response::OffsetFetchResponseTopics::default().with_name(name);
                for (index, offset, epoch, metadata, code) in partitions {
                    topic.partitions.push(
                        offset_fetch_response::OffsetFetchResponsePartitions::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(Some(sb(&metadata)))
                            .with_error_code(code),
                    );
                }
                group.topics.push(topic);
            }
            resp.groups.push(group);
        }
        resp
    }

    /// One group of an OffsetFetch: (group error, topics with (partition, offset, leader
    /// epoch, metadata, error)). `topics == None` asks for every committed offset. With
    /// `require_stable` a partition holding a pending transactional offset answers
    /// UNSTABLE_OFFSET_COMMIT (offset -1), as Kafka's `fetchOffsets`/`fetchAllOffsets` do;
    /// without it, pending offsets are simply not seen.
    #[allow(clippy::type_complexity)]
    pub(super) fn fetch_group(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
        topics: Option<Vec<(TopicName, Vec<i32>)>>,
        require_stable: bool,
    ) -> (i16, Vec<(TopicName, Vec<(i32, i64, i32, String, i16)>)>) {
        let unstable = |topic: &str, partition: i32| {
            require_stable && self.pending_txn.contains(group_id, topic, partition)
        };
        let unstable_entry = |p: i32| {
            (
                p,
                -1,
                -1,
                String::new(),
                err(ResponseError::UnstableOffsetCommit),
            )
        };
        let known = match self.groups.get(group_id) {
            None => false,
            Some(Group::Classic(g)) => g.state != ClassicState::Dead,
            Some(Group::Consumer(g)) => {
                if let Err(code) = g.validate_offset_fetch(member_id, member_epoch) {
                    return (code, Vec::new());
                }
                true
            }
        };
        let stored = if known {
            self.offsets.group(group_id)
        } else {
            None
        };
        match topics {
            Some(topics) => {
                let out = topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let found = partitions
                            .into_iter()
                            .map(|p| {
                                if unstable(name.as_str(), p) {
                                    return unstable_entry(p);
                                }
                                match stored
                                    .and_then(|s| s.get(name.as_str()))
                                    .and_then(|t| t.get(&p))
                                {
                                    Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone(), 0),
                                    None => (p, -1, -1, String::new(), 0),
                                }
                            })
                            .collect();
                        (name, found)
                    })
                    .collect();
                (0, out)
            }
            None => {
                let out = stored
                    .map(|s| {
                        s.iter()
                            .map(|(topic, partitions)| {
                                let found = partitions
                                    .iter()
                                    .map(|(p, v)| {
                                        if unstable(topic, *p) {
                                            return unstable_entry(*p);
                                        }
                                        (*p, v.offset, v.leader_epoch, v.metadata.clone(), 0)
                                    })
                                    .collect();
                                (TopicName(sb(topic)), found)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (0, out)
            }
        }
    }

    pub(super) fn offset_delete(
        &mut self,
        out: &mut Vec<Output>,
        id: RequestId,
        r: &OffsetDeleteRequest,
        topics: &dyn TopicView,
    ) {
        let group_id = r.group_id.as_str();
        let fail = |code: ResponseError| OffsetDeleteResponse::default().with_error_code(err(code));
        let subscribed: Box<dyn Fn(&str) -> bool + '_> = match self.groups.get(group_id) {
            None => {
                out.push(Output::Respond(
                    id,
                    ResponseKind::OffsetDelete(fail(ResponseError::GroupIdNotFound)),
                ));
                return;
            }
            Some(Group::Classic(g)) => match g.state {
                ClassicState::Dead => {
                    out.push(Output::Respond(
                        id,
                        ResponseKind::OffsetDelete(fail(ResponseError::GroupIdNotFound)),
                    ));
                    return;
                }
                ClassicState::Stable
                | ClassicState::PreparingRebalance
                | ClassicState::CompletingRebalance
                    if !g.uses_consumer_protocol() =>
                {
                    out.push(Output::Respond(
                        id,
                        ResponseKind::OffsetDelete(fail(ResponseError::NonEmptyGroup)),
                    ));
                    return;
                }
                _ => Box::new(|t: &str| g.is_subscribed_to_topic(t)),
            },
            Some(Group::Consumer(g)) => {
                let list = g.subscribed_topics();
                Box::new(move |t: &str| list.iter().any(|s| s == t))
            }
        };
        let mut resp = OffsetDeleteResponse::default();
        let mut failure = OffsetDeleteResponse::default();
        let mut tombstones = Vec::new();
        for t in &r.topics {
            let name = t.name.as_str();
            let count = topics.topic_by_name(name).map(|(_, c)| c);
            let is_subscribed = subscribed(name);
            let mut topic = offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone());
            let mut topic_failure = topic.clone();
            for p in &t.partitions {
                let known =
                    count.is_some_and(|c| u32::try_from(p.partition_index).is_ok_and(|i| i < c));
                let code = if !known {
                    err(ResponseError::UnknownTopicOrPartition)
                } else if is_subscribed {
                    err(ResponseError::GroupSubscribedToTopic)
                } else {
                    // A tombstone also drops the partition's pending transactional offsets
                    // (Kafka writes one if either exists).
                    if self
                        .offsets
                        .get(group_id, name, p.partition_index)
                        .is_some()
                        || self.pending_txn.contains(group_id, name, p.partition_index)
                    {
                        tombstones.push((name.to_string(), p.partition_index));
                    }
                    0
                };
                let partition = offset_delete_response::OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index);
                topic
                    .partitions
                    .push(partition.clone().with_error_code(code));
                topic_failure
                    .partitions
                    .push(partition.with_error_code(if code == 0 {
                        write_failure()
                    } else {
                        code
                    }));
            }
            resp.topics.push(topic);
            failure.topics.push(topic_failure);
        }
        drop(subscribed);
        if tombstones.is_empty() {
            out.push(Output::Respond(id, ResponseKind::OffsetDelete(resp)));
            return;
        }
        let records = tombstones
            .iter()
            .map(|(t, p)| records::offset_commit_tombstone(group_id, t, *p))
            .collect();
        // Removed from memory when the tombstones are committed (`on_committed`).
        out.push(Output::Append {
            partition: self.partition_for(group_id),
            records,
            on_success: vec![(id, ResponseKind::OffsetDelete(resp))],
            on_failure: vec![(id, ResponseKind::OffsetDelete(failure))],
        });
    }

    /// Kafka's `cleanupGroupMetadata`: expire offsets, then delete groups left empty with none.
    pub(super) fn cleanup_group_metadata(&mut self, out: &mut Vec<Output>, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let (base, subscribed): (Option<ExpiryBase>, TopicFilter) =
                match &self.groups[&group_id] {
                    Group::Classic(g) => {
                        let base = match &g.protocol_type {
                            None => Some(ExpiryBase::CommitTimestamp),
                            Some(_) if g.state == ClassicState::Empty => {
                                Some(ExpiryBase::EmptySince(g.state_timestamp_ms))
                            }
                            Some(_)
                                if g.uses_consumer_protocol()
                                    && g.subscribed_topics.is_some()
                                    && g.state == ClassicState::Stable =>
                            {
                                Some(ExpiryBase::CommitTimestamp)
                            }
                            Some(_) => None,
                        };
                        let topics = g.subscribed_topics.clone();
                        let consumer = g.uses_consumer_protocol();
                        (
                            base,
                            Box::new(move |t: &str| {
                                topics.as_ref().map_or(consumer, |s| s.contains(t))
                            }),
                        )
                    }
                    Group::Consumer(g) => {
                        let topics = g.subscribed_topics();
                        (
                            Some(ExpiryBase::CommitTimestamp),
                            Box::new(move |t: &str| topics.iter().any(|s| s == t)),
                        )
                    }
                };
            let mut all_expired = true;
            let mut expired = Vec::new();
            let pending = &self.pending_txn;
            if let Some(stored) = self.offsets.group(&group_id) {
                match base {
                    None => all_expired = false,
                    Some(base) => {
                        for (topic, partitions) in stored {
                            if subscribed(topic) {
                                all_expired = false;
                                continue;
                            }
                            for (p, v) in partitions {
                                // Not while a transaction may still commit an offset here
                                // (Kafka's `cleanupExpiredOffsets`).
                                if base.is_expired(v, now_ms, retention_ms)
                                    && !pending.contains(&group_id, topic, *p)
                                {
                                    expired.push((topic.clone(), *p));
                                } else {
                                    all_expired = false;
                                }
                            }
                        }
                    }
                }
            }
            let mut records: Vec<Record> = Vec::new();
            for (t, p) in &expired {
                // Removed from memory when the tombstone is committed (`on_committed`).
                records.push(records::offset_commit_tombstone(&group_id, t, *p));
            }
            // A group with pending transactional offsets stays (Kafka's
            // `cleanupExpiredOffsets` answers false while `openTransactions` holds it).
            if all_expired && !self.pending_txn.has_group(&group_id) {
                let empty = match &self.groups[&group_id] {
                    Group::Classic(g) => g.is_empty(),
                    Group::Consumer(g) => g.is_empty(),
                };
                if empty {
                    match self.groups.remove(&group_id) {
                        Some(Group::Classic(_)) => {
                            records.push(records::group_metadata_tombstone(&group_id))
                        }
                        Some(Group::Consumer(g)) => records.extend(g.tombstones()),
                        None => {}
                    }
                }
            }
            if !records.is_empty() {
                out.push(append_only(self.partition_for(&group_id), records));
            }
        }
    }
}
