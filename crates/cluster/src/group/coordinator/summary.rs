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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::*;

    use crate::group::tests::{responses, s, stable_group, Harness};
    use crate::group::{ClientInfo, GroupRequest};

    // Proves the console's summaries of a classic and a KIP-848 group: type, state, protocol,
    // members with their client id and host, the member cap, and the group count.
    #[test]
    fn summaries_of_both_protocols() {
        let mut h = Harness::new();
        let (members, _, _) = stable_group(&mut h, "classic", 2);
        let client = ClientInfo {
            client_id: "billing".into(),
            client_host: "/10.1.2.3".into(),
        };
        let join = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("modern")))
            .with_member_id(s("m1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("t1"))]))
            .with_topic_partitions(Some(vec![]));
        let (id, out) = h.send_from(1, &client, GroupRequest::ConsumerGroupHeartbeat(join));
        let ResponseKind::ConsumerGroupHeartbeat(r) = responses(&out, id).remove(0) else {
            panic!("not a heartbeat response");
        };
        assert_eq!(r.error_code, 0);

        let c = &h.coordinator;
        assert_eq!(
            c.group_ids(10),
            (vec!["classic".to_owned(), "modern".to_owned()], 2)
        );
        assert_eq!(c.group_ids(1), (vec!["classic".to_owned()], 2));
        let classic = c.group_summary("classic", 10).expect("classic");
        assert_eq!(
            (classic.kind, classic.state, classic.protocol.as_str()),
            ("classic", "Stable", "range")
        );
        assert_eq!(classic.member_count, 2);
        let mut ids: Vec<String> = classic
            .members
            .iter()
            .map(|m| m.member_id.clone())
            .collect();
        ids.sort();
        let mut expected = members.clone();
        expected.sort();
        assert_eq!(ids, expected);
        assert_eq!(c.group_summary("classic", 1).unwrap().members.len(), 1);
        let modern = c.group_summary("modern", 10).expect("modern");
        assert_eq!(
            (modern.kind, modern.protocol_type.as_str()),
            ("consumer", "consumer")
        );
        assert_eq!(modern.member_count, 1);
        assert_eq!(modern.members[0].member_id, "m1");
        assert_eq!(modern.members[0].client_id, "billing");
        assert_eq!(modern.members[0].client_host, "/10.1.2.3");
        assert!(c.group_summary("nope", 10).is_none());
    }
}
