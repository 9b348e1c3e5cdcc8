//! Raft messages a peer's bytes can forge, stepped into a live three-node quorum: each is
//! refused with an error (raft-rs would panic on several of them), no node panics, and the
//! quorum keeps committing afterwards on every node, the one that was attacked included.

use raft::prelude::{ConfState, Entry, Message, MessageType, Snapshot};
use runnel_cluster::metadata::MetadataRecord;
use runnel_cluster::quorum::{
    decode_message, encode_message, Committed, Persisted, QuorumConfig, QuorumNode,
    MAX_ENTRIES_PER_MESSAGE,
};

fn config(id: u64) -> QuorumConfig {
    QuorumConfig {
        id,
        election_ticks: 10,
        heartbeat_ticks: 2,
        voters: vec![1, 2, 3],
        members: Default::default(),
        static_members: false,
    }
}

struct Quorum {
    nodes: Vec<QuorumNode>,
    /// The producer-id blocks each node applied, in order.
    applied: Vec<Vec<i64>>,
}

impl Quorum {
    fn new() -> Quorum {
        let nodes = (1..=3)
            .map(|id| QuorumNode::new(&config(id), Persisted::default()).unwrap())
            .collect();
        let mut quorum = Quorum {
            nodes,
            applied: vec![Vec::new(); 3],
        };
        quorum.nodes[0].campaign().unwrap();
        quorum.settle();
        assert!(quorum.nodes[0].is_leader(), "node 1 leads");
        quorum
    }

    /// Delivers every message (persisting is the in-memory storage's) until all are idle.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut messages = Vec::new();
            for (i, node) in self.nodes.iter_mut().enumerate() {
                while let Some(ready) = node.ready().unwrap() {
                    messages.extend(ready.messages);
                    for committed in ready.committed {
                        if let Committed::Batch { records, .. } = committed {
                            for record in records {
                                if let MetadataRecord::ProducerIds { next_producer_id } = record {
                                    self.applied[i].push(next_producer_id);
                                }
                            }
                        }
                    }
                }
            }
            if messages.is_empty() {
                return;
            }
            for message in messages {
                let to = message.to as usize - 1;
                self.nodes[to].step(message).unwrap();
            }
        }
        panic!("the quorum did not settle");
    }

    fn commit(&mut self, next_producer_id: i64) {
        let leader = self.nodes.iter().position(|n| n.is_leader()).unwrap();
        self.nodes[leader]
            .propose(
                next_producer_id as u64,
                &[MetadataRecord::ProducerIds { next_producer_id }],
            )
            .unwrap();
        self.settle();
        for (i, applied) in self.applied.iter().enumerate() {
            assert_eq!(
                applied.last(),
                Some(&next_producer_id),
                "node {} applied the batch",
                i + 1
            );
        }
    }
}

/// A message from the leader (node 1) to node 2 in the leader's term.
fn from_leader(quorum: &Quorum, kind: MessageType) -> Message {
    let mut m = Message::default();
    m.set_msg_type(kind);
    m.from = 1;
    m.to = 2;
    m.term = quorum.nodes[0].term();
    m
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

#[test]
fn forged_raft_messages_are_refused_and_the_quorum_goes_on() {
    let mut quorum = Quorum::new();
    quorum.commit(1000);
    let term = quorum.nodes[0].term();
    let last = quorum.nodes[1].last_index();

    let mut forged = Vec::new();
    // raft-rs: "to_commit is out of range [last_index]".
    let mut m = from_leader(&quorum, MessageType::MsgHeartbeat);
    m.commit = u64::MAX;
    forged.push(("heartbeat past the log", m));
    // Entries that do not follow the append's index: one would conflict with a committed one.
    let mut m = from_leader(&quorum, MessageType::MsgAppend);
    m.index = last;
    m.log_term = term;
    m.set_entries(vec![entry(last + 1, term), entry(1, term + 7)].into());
    m.commit = last;
    forged.push(("append with out-of-order entries", m));
    let mut m = from_leader(&quorum, MessageType::MsgAppend);
    m.index = u64::MAX;
    m.log_term = term;
    m.set_entries(vec![entry(0, term)].into());
    forged.push(("append whose index overflows", m));
    let mut m = from_leader(&quorum, MessageType::MsgHeartbeat);
    m.set_entries(vec![entry(last + 1, term)].into());
    forged.push(("heartbeat with entries", m));
    // A snapshot whose configuration cannot be restored (a voter that is also a learner):
    // nothing checks this before raft-rs, which panics; the node is rebuilt instead.
    let mut m = from_leader(&quorum, MessageType::MsgSnapshot);
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = last + 10;
    snapshot.mut_metadata().term = term;
    snapshot.mut_metadata().set_conf_state(ConfState {
        voters: vec![1, 2, 3],
        learners: vec![2],
        ..ConfState::default()
    });
    m.set_snapshot(snapshot);
    forged.push(("snapshot with a broken configuration", m));

    for (what, message) in forged {
        // Through the wire codec, as the listener hands it over.
        let decoded = decode_message(&encode_message(&message)).unwrap();
        let refused = quorum.nodes[1].step(decoded);
        assert!(refused.is_err(), "{what}: refused, not accepted");
        assert!(!quorum.nodes[0].is_leader() || quorum.nodes[0].term() >= term);
        quorum.settle();
    }
    assert_eq!(
        quorum.nodes[1].raft_restarts(),
        1,
        "only the snapshot got past the checks into raft-rs"
    );

    // A forged acknowledgement to the leader of an index it never had.
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppendResponse);
    m.from = 3;
    m.to = 1;
    m.term = quorum.nodes[0].term();
    m.index = u64::MAX / 2;
    assert!(quorum.nodes[0].step(m).is_err());

    // Elections settle after the rebuilt node's restart, then every node keeps applying.
    for _ in 0..50 {
        for node in &mut quorum.nodes {
            node.tick();
        }
        quorum.settle();
    }
    quorum.commit(2000);
    quorum.commit(3000);
    assert_eq!(
        quorum.applied[1], quorum.applied[0],
        "node 2 applied what node 1 did"
    );
}

#[test]
fn a_frame_of_too_many_entries_is_refused_before_decoding() {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.set_entries(vec![Entry::default(); MAX_ENTRIES_PER_MESSAGE + 1].into());
    let bytes = encode_message(&m);
    assert!(decode_message(&bytes).is_err());
    m.set_entries(vec![Entry::default(); MAX_ENTRIES_PER_MESSAGE].into());
    let bytes = encode_message(&m);
    assert_eq!(
        decode_message(&bytes).unwrap().get_entries().len(),
        MAX_ENTRIES_PER_MESSAGE
    );
    // Truncated and nonsense frames are errors, not panics.
    for cut in 0..bytes.len().min(64) {
        let _ = decode_message(&bytes[..cut]);
    }
    assert!(decode_message(&[0x0b, 0x01]).is_err(), "a group");
    assert!(
        decode_message(&[0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
        "length past the end"
    );
}

#[test]
fn a_member_over_the_limits_is_refused_before_it_reaches_the_log() {
    use runnel_cluster::quorum::{
        Endpoint, Member, MemberChange, QuorumError, ENDPOINT_FIELD_BYTES_MAX, MEMBER_ENDPOINTS_MAX,
    };
    let mut quorum = Quorum::new();
    let endpoint = |host: String| Endpoint {
        name: "CONTROLLER".into(),
        host,
        port: 9093,
    };
    let member = |endpoints: Vec<Endpoint>| Member {
        directory_id: uuid::Uuid::new_v4(),
        endpoints,
    };
    let too_many = member(vec![endpoint("h".into()); MEMBER_ENDPOINTS_MAX + 1]);
    let too_long = member(vec![endpoint("h".repeat(ENDPOINT_FIELD_BYTES_MAX + 1))]);
    for bad in [too_many, too_long] {
        let refused = quorum.nodes[0].propose_membership(1, MemberChange::AddLearner(9, bad));
        assert!(
            matches!(refused, Err(QuorumError::InvalidMember(_))),
            "{refused:?}"
        );
        assert!(!quorum.nodes[0].has_pending_membership_change());
    }
    // At the limits it is taken.
    let fits = member(vec![
        endpoint("h".repeat(ENDPOINT_FIELD_BYTES_MAX));
        MEMBER_ENDPOINTS_MAX
    ]);
    quorum.nodes[0]
        .propose_membership(1, MemberChange::AddLearner(9, fits))
        .unwrap();
    assert!(quorum.nodes[0].has_pending_membership_change());
}
