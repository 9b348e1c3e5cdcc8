//! Read-only summaries of groups for the admin console: what `kafka-consumer-groups
//! --describe --members` shows, without the protocol's encoding.

use super::*;

/// One group as the admin console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    /// `classic` or `consumer` (KIP-848).
    pub kind: &'static str,
    /// The state name ListGroups reports.
    pub state: &'static str,
    /// The classic group's protocol type (`consumer`, `connect`, ...); `consumer` for KIP-848.
    pub protocol_type: String,
    /// The chosen assignment protocol (classic) or server assignor (consumer), if any.
    pub protocol: String,
    /// Members, in member-id order, at most the `members_max` asked for.
    pub members: Vec<MemberSummary>,
    /// Members in the group, `members` possibly holding fewer.
    pub member_count: usize,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
}

impl GroupCoordinator {
    /// Group ids in order, at most `limit`, and how many groups there are in all.
    pub fn group_ids(&self, limit: usize) -> (Vec<String>, usize) {
        let ids = self.groups.keys().take(limit).cloned().collect();
        (ids, self.groups.len())
    }

    /// The group `group_id` with at most `members_max` of its members; `None` if unknown here.
    pub fn group_summary(&self, group_id: &str, members_max: usize) -> Option<GroupSummary> {
        Some(match self.groups.get(group_id)? {
            Group::Classic(g) => GroupSummary {
                group_id: g.group_id.clone(),
                kind: "classic",
                state: g.state.name(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol: g.protocol_name.clone().unwrap_or_default(),
                members: g
                    .members
                    .values()
                    .take(members_max)
                    .map(|m| MemberSummary {
                        member_id: m.member_id.clone(),
                        instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                    })
                    .collect(),
                member_count: g.members.len(),
            },
            Group::Consumer(g) => {
                let persisted = g.persisted();
                GroupSummary {
                    group_id: persisted.group_id.clone(),
                    kind: "consumer",
                    state: g.state_name(),
                    protocol_type: "consumer".to_owned(),
                    protocol: persisted
                        .members
                        .values()
                        .find_map(|m| m.metadata.server_assignor.clone())
                        .unwrap_or_default(),
                    members: persisted
                        .members
                        .values()
                        .take(members_max)
                        .map(|m| MemberSummary {
                            member_id: m.member_id.clone(),
                            instance_id: m.metadata.instance_id.clone(),
                            client_id: m.metadata.client_id.clone(),
                            client_host: m.metadata.client_host.clone(),
                        })
                        .collect(),
                    member_count: persisted.members.len(),
                }
            }
        })
    }
}
