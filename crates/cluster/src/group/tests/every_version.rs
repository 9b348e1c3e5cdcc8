//! Every response the coordinator builds encodes at every version its request may come with.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Message;

use super::*;

fn all(out: &[Output]) -> Vec<ResponseKind> {
    out.iter()
        .flat_map(|o| match o {
            Output::Respond(_, r) => vec![r.clone()],
            Output::Append {
                on_success,
                on_failure,
                ..
            } => on_success
                .iter()
                .chain(on_failure)
                .map(|(_, r)| r.clone())
                .collect(),
            Output::AppendTransactional {
                on_success,
                on_failure,
                ..
            } => vec![
                on_success.1.clone(),
                ResponseKind::TxnOffsetCommit(crate::group::txn_offset_commit_failed(
                    on_failure.1.clone(),
                    7,
                )),
            ],
            Output::WriteMarker { completion, .. } => {
                vec![crate::group::coordinator::marker_response(
                    completion.partition,
                    0,
                )]
            }
        })
        .collect()
}

fn encode_all(out: &[Output], version: i16, what: &str) {
    for r in all(out) {
        let mut buf = BytesMut::new();
        r.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("{what} v{version}: {e}: {r:?}"));
    }
}

#[test]
fn every_response_encodes_at_every_version() {
    // Proves no handler sets a field the request's version lacks, over success and error paths.
    for v in JoinGroupRequest::VERSIONS.min..=JoinGroupRequest::VERSIONS.max {
        let mut h = Harness::new();
        let (_, out) = h.send(v, GroupRequest::JoinGroup(join("g", "", None, &["range"])));
        encode_all(&out, v, "JoinGroup");
        let mid = match all(&out).first() {
            Some(ResponseKind::JoinGroup(r)) => r.member_id.to_string(),
            _ => String::new(),
        };
        let mut out = Vec::new();
        if !mid.is_empty() {
            out = h
                .send(
                    v,
                    GroupRequest::JoinGroup(join("g", &mid, None, &["range"])),
                )
                .1;
        }
        out.extend(h.advance(3_000));
        out.extend(
            h.send(v, GroupRequest::JoinGroup(join("", "", None, &["range"])))
                .1,
        );
        out.extend(
            h.send(v, GroupRequest::JoinGroup(join("g", "", None, &["other"])))
                .1,
        );
        out.extend(
            h.send(
                v,
                GroupRequest::JoinGroup(join("g", "ghost", None, &["range"])),
            )
            .1,
        );
        if v >= 5 {
            out.extend(
                h.send(
                    v,
                    GroupRequest::JoinGroup(join("s", "", Some("i"), &["range"])),
                )
                .1,
            );
        }
        encode_all(&out, v, "JoinGroup");
    }
    let mut h = Harness::new();
    let (ids, leader, generation) = stable_group(&mut h, "g", 2);
    for v in SyncGroupRequest::VERSIONS.min..=SyncGroupRequest::VERSIONS.max {
        let mut out = h
            .send(
                v,
                GroupRequest::SyncGroup(sync("g", &leader, generation, &[])),
            )
            .1;
        out.extend(
            h.send(
                v,
                GroupRequest::SyncGroup(sync("g", &leader, generation + 5, &[])),
            )
            .1,
        );
        out.extend(
            h.send(v, GroupRequest::SyncGroup(sync("nope", "x", 1, &[])))
                .1,
        );
        encode_all(&out, v, "SyncGroup");
    }
    for v in HeartbeatRequest::VERSIONS.min..=HeartbeatRequest::VERSIONS.max {
        let out = h
            .send(
                v,
                GroupRequest::Heartbeat(heartbeat("g", &leader, generation)),
            )
            .1;
        encode_all(&out, v, "Heartbeat");
    }
    for v in OffsetCommitRequest::VERSIONS.min..=OffsetCommitRequest::VERSIONS.max {
        let mut out = h
            .send(
                v,
                GroupRequest::OffsetCommit(commit(
                    "g",
                    &leader,
                    generation,
                    &[("t1", 0, 1), ("zz", 0, 1)],
                )),
            )
            .1;
        out.extend(
            h.send(
                v,
                GroupRequest::OffsetCommit(commit("g", "x", 9, &[("t1", 0, 1)])),
            )
            .1,
        );
        encode_all(&out, v, "OffsetCommit");
    }
    for v in OffsetFetchRequest::VERSIONS.min..=OffsetFetchRequest::VERSIONS.max {
        let req = if v < 8 {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t1")))
                        .with_partition_indexes(vec![0, 1]),
                ]))
        } else {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None),
            ])
        };
        let out = h.send(v, GroupRequest::OffsetFetch(req)).1;
        encode_all(&out, v, "OffsetFetch");
    }
    for v in DescribeGroupsRequest::VERSIONS.min..=DescribeGroupsRequest::VERSIONS.max {
        let req =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("nope"))]);
        let out = h.send(v, GroupRequest::DescribeGroups(req)).1;
        encode_all(&out, v, "DescribeGroups");
    }
    for v in ListGroupsRequest::VERSIONS.min..=ListGroupsRequest::VERSIONS.max {
        let out = h
            .send(v, GroupRequest::ListGroups(ListGroupsRequest::default()))
            .1;
        encode_all(&out, v, "ListGroups");
    }
    for v in OffsetDeleteRequest::VERSIONS.min..=OffsetDeleteRequest::VERSIONS.max {
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(s("t1")))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default(),
                    ]),
            ]);
        let out = h.send(v, GroupRequest::OffsetDelete(req)).1;
        encode_all(&out, v, "OffsetDelete");
    }
    for v in
        ConsumerGroupHeartbeatRequest::VERSIONS.min..=ConsumerGroupHeartbeatRequest::VERSIONS.max
    {
        let mut out = h
            .send(
                v,
                GroupRequest::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest::default().with_group_id(GroupId(s("g"))),
                ),
            )
            .1;
        out.extend(
            h.send(
                v,
                GroupRequest::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default()),
            )
            .1,
        );
        encode_all(&out, v, "ConsumerGroupHeartbeat");
    }
    for v in ConsumerGroupDescribeRequest::VERSIONS.min..=ConsumerGroupDescribeRequest::VERSIONS.max
    {
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![
            GroupId(s("g")),
            GroupId(s("nope")),
            GroupId(s("")),
        ]);
        let out = h.send(v, GroupRequest::ConsumerGroupDescribe(req)).1;
        encode_all(&out, v, "ConsumerGroupDescribe");
    }
    for v in LeaveGroupRequest::VERSIONS.min..=LeaveGroupRequest::VERSIONS.max {
        let other = ids.iter().find(|m| **m != leader).unwrap();
        let req = LeaveGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(if v < 3 { other } else { "" }))
            .with_members(if v >= 3 {
                vec![leave_group_request::MemberIdentity::default().with_member_id(s("ghost"))]
            } else {
                Vec::new()
            });
        let out = h.send(v, GroupRequest::LeaveGroup(req)).1;
        encode_all(&out, v, "LeaveGroup");
    }
    for v in DeleteGroupsRequest::VERSIONS.min..=DeleteGroupsRequest::VERSIONS.max {
        h.send(
            9,
            GroupRequest::OffsetCommit(commit("simple", "", -1, &[("t1", 0, 1)])),
        );
        let req = DeleteGroupsRequest::default().with_groups_names(vec![
            GroupId(s("g")),
            GroupId(s("simple")),
            GroupId(s("none")),
        ]);
        let out = h.send(v, GroupRequest::DeleteGroups(req)).1;
        encode_all(&out, v, "DeleteGroups");
    }
}
