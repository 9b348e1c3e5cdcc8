//! The admin requests: DescribeGroups, ListGroups, DeleteGroups, ConsumerGroupDescribe.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

use super::*;

impl GroupCoordinator {
    // -----------------------------------------------------------------------------------------
    // Admin APIs

    pub(super) fn describe_groups(
        &self,
        version: i16,
        r: &DescribeGroupsRequest,
        _topics: &dyn TopicView,
    ) -> DescribeGroupsResponse {
        let mut resp = DescribeGroupsResponse::default();
        for group_id in &r.groups {
            let described = match self.groups.get(group_id.as_str()) {
                Some(Group::Classic(g)) => {
                    let stable = g.state == ClassicState::Stable;
                    let protocol = g.protocol_name.clone().unwrap_or_default();
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(group_id.clone())
                        .with_group_state(sb(g.state.name()))
                        .with_protocol_type(sb(g.protocol_type.as_deref().unwrap_or("")))
                        .with_protocol_data(sb(if stable { &protocol } else { "" }))
                        .with_members(
                            g.members
                                .values()
                                .map(|m| {
                                    let member =
                                        describe_groups_response::DescribedGroupMember::default()
                                            .with_member_id(sb(&m.member_id))
                                            .with_group_instance_id(
                                                m.group_instance_id
                                                    .as_deref()
                                                    .filter(|_| version >= 4)
                                                    .map(sb),
                                            )
                                            .with_client_id(sb(&m.client_id))
                                            .with_client_host(sb(&m.client_host));
                                    if stable {
                                        let metadata = m
                                            .protocols
                                            .iter()
                                            .find(|(n, _)| *n == protocol)
                                            .map(|(_, b)| b.clone())
                                            .unwrap_or_default();
                                        member
                                            .with_member_metadata(metadata)
                                            .with_member_assignment(m.assignment.clone())
                                    } else {
                                        member
                                    }
                                })
                                .collect(),
                        )
                }
                other => {
                    let mut d = describe_groups_response::DescribedGroup::default()
                        .with_group_id(group_id.clone())
                        .with_group_state(sb("Dead"));
                    if version >= 6 {
                        let message = match other {
                            Some(_) => {
                                format!("Group {} is not a classic group.", group_id.as_str())
                            }
                            None => format!("Group {} not found.", group_id.as_str()),
                        };
                        d = d
                            .with_error_code(err(ResponseError::GroupIdNotFound))
                            .with_error_message(Some(sb(&message)));
                    }
                    d
                }
            };
            // Authorized operations are the broker's answer (its authorizer), filled in there.
            resp.groups.push(described);
        }
        resp
    }

    pub(super) fn list_groups(&self, version: i16, r: &ListGroupsRequest) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            r.states_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            r.types_filter
                .iter()
                .map(|s| s.as_str().trim().to_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let mut resp = ListGroupsResponse::default();
        for (group_id, group) in &self.groups {
            let (protocol_type, state, kind) = match group {
                Group::Classic(g) => (
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                    "classic",
                ),
                Group::Consumer(g) => ("consumer".to_string(), g.state_name(), "consumer"),
            };
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == kind) {
                continue;
            }
            let mut listed = list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(sb(group_id)))
                .with_protocol_type(sb(&protocol_type));
            if version >= 4 {
                listed.group_state = sb(state);
            }
            if version >= 5 {
                listed.group_type = sb(kind);
            }
            resp.groups.push(listed);
        }
        resp
    }

    pub(super) fn delete_groups(
        &mut self,
        out: &mut Vec<Output>,
        id: RequestId,
        r: &DeleteGroupsRequest,
    ) {
        let mut records = Vec::new();
        let mut results = Vec::new();
        let mut failures = Vec::new();
        let mut partition = None;
        for group_id in &r.groups_names {
            let gid = group_id.as_str();
            let code = match self.groups.get(gid) {
                None => err(ResponseError::GroupIdNotFound),
                Some(Group::Classic(g)) if g.state == ClassicState::Dead => {
                    err(ResponseError::GroupIdNotFound)
                }
                Some(Group::Classic(g)) if !g.is_empty() => err(ResponseError::NonEmptyGroup),
                Some(Group::Consumer(g)) if !g.is_empty() => err(ResponseError::NonEmptyGroup),
                Some(_) => {
                    // The offsets go when their tombstones are committed (`on_committed`).
                    for (topic, p) in self.offsets.partitions_of(gid) {
                        records.push(records::offset_commit_tombstone(gid, &topic, p));
                    }
                    // Pending transactional offsets go too: one tombstone per partition that
                    // has no committed offset (which got one above), as Kafka's
                    // `deleteAllOffsets` writes them.
                    for (topic, p) in self.pending_txn.partitions_of(gid) {
                        if self.offsets.get(gid, &topic, p).is_none() {
                            records.push(records::offset_commit_tombstone(gid, &topic, p));
                        }
                    }
                    match self.groups.remove(gid) {
                        Some(Group::Classic(_)) => {
                            records.push(records::group_metadata_tombstone(gid))
                        }
                        Some(Group::Consumer(g)) => records.extend(g.tombstones()),
                        None => {}
                    }
                    partition.get_or_insert(self.partition_for(gid));
                    0
                }
            };
            let result = delete_groups_response::DeletableGroupResult::default()
                .with_group_id(group_id.clone());
            failures.push(result.clone().with_error_code(if code == 0 {
                write_failure()
            } else {
                code
            }));
            results.push(result.with_error_code(code));
        }
        let resp = DeleteGroupsResponse::default().with_results(results);
        match partition {
            None => out.push(Output::Respond(id, ResponseKind::DeleteGroups(resp))),
            // One request may name groups of several partitions; the shell appends per
            // partition, so the records go where each group lives.
            Some(_) => {
                let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
                for record in records {
                    let p = match records::decode_key(&record.0) {
                        Ok(
                            RecordKey::OffsetCommit { group, .. }
                            | RecordKey::GroupMetadata { group },
                        ) => self.partition_for(&group),
                        _ => partition.unwrap_or(0),
                    };
                    by_partition.entry(p).or_default().push(record);
                }
                let count = by_partition.len();
                for (i, (p, recs)) in by_partition.into_iter().enumerate() {
                    // The response waits for the last append; earlier ones carry no response.
                    let last = i + 1 == count;
                    out.push(Output::Append {
                        partition: p,
                        records: recs,
                        on_success: if last {
                            vec![(id, ResponseKind::DeleteGroups(resp.clone()))]
                        } else {
                            Vec::new()
                        },
                        on_failure: if last {
                            vec![(
                                id,
                                ResponseKind::DeleteGroups(
                                    DeleteGroupsResponse::default().with_results(failures.clone()),
                                ),
                            )]
                        } else {
                            Vec::new()
                        },
                    });
                }
            }
        }
    }
    pub(super) fn consumer_describe(
        &self,
        version: i16,
        r: &ConsumerGroupDescribeRequest,
        topics: &dyn TopicView,
    ) -> ConsumerGroupDescribeResponse {
        let mut resp = ConsumerGroupDescribeResponse::default();
        for group_id in &r.group_ids {
            let gid = group_id.as_str();
            let error = |code: ResponseError, message: Option<String>| {
                consumer_group_describe_response::DescribedGroup::default()
                    .with_group_id(group_id.clone())
                    .with_error_code(err(code))
                    .with_error_message(message.map(|m| sb(&m)))
            };
            let described = if gid.is_empty() {
                error(ResponseError::InvalidGroupId, None)
            } else {
                match self.groups.get(gid) {
                    Some(Group::Consumer(g)) => g.describe(version, topics),
                    Some(Group::Classic(_)) => error(
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {gid} is not a consumer group.")),
                    ),
                    None => error(
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {gid} not found.")),
                    ),
                }
            };
            // Authorized operations are the broker's answer (its authorizer), filled in there.
            resp.groups.push(described);
        }
        resp
    }
}
