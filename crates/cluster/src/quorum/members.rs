//! The member book of the quorum: each voter's and learner's endpoints and directory id
//! (Kafka's `VotersRecord`). Raft's own configuration holds only ids; the book travels with it
//! so that it is as durable as the configuration and every node agrees on it:
//!
//! - a membership change entry carries, in its context, the proposal id and the whole book
//!   after the change (as Kafka's `VotersRecord` holds the whole voter set);
//! - a snapshot's data holds the image's records and the book as of its index.
//!
//! Snapshots written before the book existed hold a bare JSON array of records; they still
//! decode (with no book: the node keeps the one from its configuration).

use std::collections::BTreeMap;

use raft::prelude::Snapshot;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::MetadataRecord;

/// One listener of a member (Kafka's `Endpoint`: listener name, host, port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, bracketing an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A voter or learner: its metadata directory id (nil for a static voter, as Kafka reports
/// them) and its controller endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub directory_id: Uuid,
    pub endpoints: Vec<Endpoint>,
}

impl Member {
    /// The endpoint of listener `name` (case-insensitive), else the first.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .or_else(|| self.endpoints.first())
    }
}

/// Members by node id.
pub type Members = BTreeMap<u64, Member>;

/// One membership change (see [`super::QuorumNode::propose_membership`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A node starts replicating the log without a vote (Kafka: an observer).
    AddLearner(u64, Member),
    /// A learner (or a new node) becomes a voter.
    Promote(u64, Member),
    /// A voter or learner leaves the configuration.
    Remove(u64),
}

#[derive(Serialize, Deserialize)]
struct Context {
    proposal: u64,
    members: Members,
}

pub(crate) fn encode_context(proposal: u64, members: &Members) -> Vec<u8> {
    serde_json::to_vec(&Context {
        proposal,
        members: members.clone(),
    })
    .unwrap_or_default()
}

/// The proposal id and book of a membership change entry; a context that does not decode (an
/// older entry, or one without a book) gives neither.
pub(crate) fn decode_context(context: &[u8]) -> (Option<u64>, Option<Members>) {
    match serde_json::from_slice::<Context>(context) {
        Ok(c) => (Some(c.proposal), Some(c.members)),
        Err(_) => (None, None),
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    records: Vec<MetadataRecord>,
    members: Members,
}

pub(crate) fn encode_snapshot_data(
    records: &[MetadataRecord],
    members: &Members,
) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        records: &'a [MetadataRecord],
        members: &'a Members,
    }
    serde_json::to_vec(&Borrowed { records, members })
}

/// The image records of a snapshot's data (either form).
pub(crate) fn decode_snapshot_records(data: &[u8]) -> serde_json::Result<Vec<MetadataRecord>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.first() == Some(&b'[') {
        return serde_json::from_slice(data);
    }
    serde_json::from_slice::<SnapshotData>(data).map(|d| d.records)
}

/// The book a snapshot holds; `None` for an empty or older snapshot.
pub fn decode_snapshot_members(snapshot: &Snapshot) -> Option<Members> {
    let data = &snapshot.data;
    if data.is_empty() || data.first() == Some(&b'[') {
        return None;
    }
    serde_json::from_slice::<SnapshotData>(data)
        .ok()
        .map(|d| d.members)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves snapshots of both forms decode and the book survives the round trip.
    #[test]
    fn snapshot_data_round_trips_and_old_form_decodes() {
        let mut members = Members::new();
        members.insert(
            2,
            Member {
                directory_id: Uuid::from_u128(7),
                endpoints: vec![Endpoint {
                    name: "CONTROLLER".into(),
                    host: "::1".into(),
                    port: 9093,
                }],
            },
        );
        let data = encode_snapshot_data(&[], &members).unwrap();
        assert!(decode_snapshot_records(&data).unwrap().is_empty());
        let snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        assert_eq!(decode_snapshot_members(&snapshot), Some(members.clone()));
        assert_eq!(
            members[&2].endpoint("controller").unwrap().address(),
            "[::1]:9093"
        );
        assert!(decode_snapshot_records(b"[]").unwrap().is_empty());
        let old = Snapshot {
            data: b"[]".to_vec().into(),
            ..Snapshot::default()
        };
        assert_eq!(decode_snapshot_members(&old), None);
        assert_eq!(decode_context(b"garbage"), (None, None));
        assert_eq!(
            decode_context(&encode_context(5, &members)),
            (Some(5), Some(members))
        );
    }
}
