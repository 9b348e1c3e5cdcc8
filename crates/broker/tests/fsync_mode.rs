//! Fsync mode (`flush.messages=1`) against the real binary: acknowledged produces survive a
//! SIGKILL at the offsets they were acknowledged at, and no produce is answered before an fsync
//! of its partition's log that started after its batch was written.

mod common;
mod traced;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use traced::*;

const TOPIC: &str = "fsynced";

/// A topic of `TOPIC`'s name in fsync mode.
fn create_fsync_topic(stream: &mut TcpStream, partitions: i32) {
    create_topic(stream, TOPIC, partitions, &[("flush.messages", "1")]);
}

/// One acks=all produce naming several partitions of `TOPIC`.
fn produce(batches: &[(i32, Bytes)]) -> RequestKind {
    produce_request(TOPIC, -1, 30_000, batches)
}

// Concurrent acks=all producers on an fsync-mode topic, several partitions per request: every
// acknowledged record is back at its acknowledged offset after a SIGKILL and restart, and
// nothing else is. Fails if a group-commit round hands one producer another's offsets, or if an
// answer is sent before its batch is in the log.
#[test]
fn acknowledged_records_survive_sigkill_at_their_offsets() {
    const PARTITIONS: i32 = 4;
    const CONNECTIONS: i32 = 8;
    const REQUESTS: i32 = 40;
    let runnel = Runnel::start("");
    create_fsync_topic(&mut runnel.connect(), PARTITIONS);
    let producers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let mut stream = runnel.connect();
            std::thread::spawn(move || {
                // (partition, offset) -> value, for every acknowledged record.
                let mut acked = Vec::new();
                for r in 0..REQUESTS {
                    // Two partitions per request; each partition is shared by four
                    // connections, so rounds hold several producers' batches.
                    let batches: Vec<(i32, Vec<String>)> = [c % PARTITIONS, (c + 1) % PARTITIONS]
                        .into_iter()
                        .map(|p| {
                            let count = 1 + (r % 3);
                            (
                                p,
                                (0..count).map(|k| format!("c{c}-r{r}-p{p}-{k}")).collect(),
                            )
                        })
                        .collect();
                    let encoded: Vec<(i32, Bytes)> =
                        batches.iter().map(|(p, v)| (*p, batch(v))).collect();
                    let ResponseKind::Produce(response) =
                        call(&mut stream, ApiKey::Produce, 11, &produce(&encoded))
                    else {
                        panic!("not a Produce response")
                    };
                    let answers = &response.responses[0].partition_responses;
                    assert_eq!(answers.len(), batches.len());
                    for ((p, values), answer) in batches.iter().zip(answers) {
                        assert_eq!(answer.index, *p);
                        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
                        for (k, v) in values.iter().enumerate() {
                            acked.push((*p, answer.base_offset + k as i64, v.clone()));
                        }
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<(i32, i64, String)> = producers
        .into_iter()
        .flat_map(|t| t.join().expect("producer thread"))
        .collect();
    // The moment the last answer arrived: no clean shutdown, no flush on the way out.
    runnel.signal("KILL");
    let (dir, port) = runnel.into_dir();

    let runnel = Runnel::start_in(dir, port, "");
    let mut stream = runnel.connect();
    let mut stored: HashMap<i32, BTreeMap<i64, Bytes>> = HashMap::new();
    for p in 0..PARTITIONS {
        stored.insert(p, read_partition(&mut stream, TOPIC, p));
    }
    for (p, offset, value) in &acked {
        let found = stored[p].get(offset);
        assert_eq!(
            found.map(|b| String::from_utf8_lossy(b).into_owned()),
            Some(value.clone()),
            "partition {p} offset {offset}: acknowledged {value}"
        );
    }
    let total: usize = stored.values().map(BTreeMap::len).sum();
    assert_eq!(
        total,
        acked.len(),
        "the log holds exactly the acknowledged records"
    );
}

// Under strace: every produce answer is written to the socket only after an fsync of the
// partition's log that started after the answered batch was written. One producer, one
// partition, sequential requests, so every socket write after the first append is a produce
// answer. Fails if the answer is sent before the fsync, or if the fsync is skipped.
#[test]
fn produce_is_answered_only_after_an_fsync_covering_its_batch() {
    const REQUESTS: usize = 20;
    let Some(traced) = start_traced(None) else {
        require_strace("the fsync-ordering check");
        return;
    };
    let mut stream = traced.connect();
    create_fsync_topic(&mut stream, 1);
    for r in 0..REQUESTS {
        let ResponseKind::Produce(response) = call(
            &mut stream,
            ApiKey::Produce,
            11,
            &produce(&[(0, batch(&[format!("r{r}")]))]),
        ) else {
            panic!("not a Produce response")
        };
        let answer = &response.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        assert_eq!(answer.base_offset, r as i64);
    }
    drop(stream);
    let trace = traced.stop();
    let log_file = format!("/{TOPIC}-0/00000000000000000000.log>");
    assert_every_answer_follows_its_fsync(&trace, &log_file, REQUESTS as u64);
}

// Under strace, with the broker-wide `log.flush.interval.messages=1`: every OffsetCommit answer
// is written to the socket only after an fsync of its `__consumer_offsets` partition that
// started after the commit's record was written. Offset commits used to bypass the partition's
// group commit and were answered from the page cache.
#[test]
fn offset_commit_is_answered_only_after_an_fsync_covering_its_record() {
    const REQUESTS: usize = 20;
    const GROUP: &str = "fsynced-group";
    let Some(traced) = start_traced_with_config("\"log.flush.interval.messages\" = 1\n", None)
    else {
        require_strace("the offset-commit fsync-ordering check");
        return;
    };
    let mut stream = traced.connect();
    create_fsync_topic(&mut stream, 1);
    for r in 0..REQUESTS {
        // A simple group (generation -1): one record per commit, no group metadata.
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name(TOPIC))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(r as i64),
                    ]),
            ]);
        let ResponseKind::OffsetCommit(response) = call(
            &mut stream,
            ApiKey::OffsetCommit,
            8,
            &RequestKind::OffsetCommit(commit),
        ) else {
            panic!("not an OffsetCommit response")
        };
        assert_eq!(response.topics[0].partitions[0].error_code, 0);
    }
    drop(stream);
    let trace = traced.stop();
    let partition =
        runnel_cluster::group::GroupCoordinator::new(Default::default()).partition_for(GROUP);
    let log_file = format!("/__consumer_offsets-{partition}/00000000000000000000.log>");
    assert_every_answer_follows_its_fsync(&trace, &log_file, REQUESTS as u64);
}
