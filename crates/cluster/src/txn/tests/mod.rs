//! Transaction coordinator tests: a fake clock, a fake metadata view, and a shell that
//! commits (or fails, or holds) appends and writes markers when told to.

mod flows;
mod records;
mod transitions;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::coordinator::{TxnCoordinator, TxnRequest};
use super::output::{AppendId, MarkerWrite, Output};
use super::{PartitionView, TxnConfig};
use crate::group::Record;

/// Topics "a" (3 partitions, led by broker 1), "b" (1, led by 2), `__consumer_offsets` (50,
/// led by 1), and "c" (1 partition without a leader).
pub(super) struct View;

impl PartitionView for View {
    fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        match (topic, partition) {
            ("a", 0..=2) => Some(1),
            ("b", 0) => Some(2),
            ("c", 0) => Some(-1),
            ("__consumer_offsets", 0..=49) => Some(1),
            _ => None,
        }
    }
}

/// What the shell does with appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Appends {
    Commit,
    /// Fail with this Kafka error code.
    Fail(i16),
    /// Keep them for `commit_held`.
    Hold,
}

/// A shell around one coordinator.
pub(super) struct Shell {
    pub c: TxnCoordinator,
    pub config: TxnConfig,
    pub now: i64,
    pub appends: Appends,
    /// Every committed record, in order: the partition's log.
    pub log: Vec<Record>,
    pub held: Vec<(AppendId, Vec<Record>)>,
    pub markers: Vec<MarkerWrite>,
    pub responses: BTreeMap<u64, ResponseKind>,
    pub need_ids: usize,
    next_id: u64,
    next_block: i64,
}

pub(super) const START_MS: i64 = 1_700_000_000_000;

impl Shell {
    /// A loaded coordinator of partition 0 of a one-partition `__transaction_state`, with a
    /// block of producer ids.
    pub fn new() -> Shell {
        Shell::with_config(TxnConfig {
            transaction_state_partitions: 1,
            ..TxnConfig::default()
        })
    }

    pub fn with_config(config: TxnConfig) -> Shell {
        let mut shell = Shell {
            c: TxnCoordinator::new(config.clone(), 0, 7),
            config,
            now: START_MS,
            appends: Appends::Commit,
            log: Vec::new(),
            held: Vec::new(),
            markers: Vec::new(),
            responses: BTreeMap::new(),
            need_ids: 0,
            next_id: 1,
            next_block: 1000,
        };
        let out = shell.c.finish_replay(START_MS, &View);
        shell.run(out);
        shell.c.add_producer_ids(shell.next_block, 1000);
        shell.next_block += 1000;
        shell
    }

    pub fn run(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Respond(id, resp) => {
                    assert!(
                        self.responses.insert(id, resp).is_none(),
                        "request {id} answered twice"
                    );
                }
                Output::Append {
                    id,
                    records,
                    partition,
                } => {
                    assert_eq!(partition, 0);
                    match self.appends {
                        Appends::Commit => {
                            self.log.extend(records);
                            let out = self.c.on_committed(id, self.now, &View);
                            self.run(out);
                        }
                        Appends::Fail(code) => {
                            let out = self.c.on_append_failed(id, code, self.now);
                            self.run(out);
                        }
                        Appends::Hold => self.held.push((id, records)),
                    }
                }
                Output::WriteMarkers(m) => self.markers.push(m),
                Output::NeedProducerIds => self.need_ids += 1,
            }
        }
        assert_eq!(
            self.c.internal_errors(),
            0,
            "a transition failed Kafka's fatal checks"
        );
    }

    /// Commits every held append, in order.
    pub fn commit_held(&mut self) {
        for (id, records) in std::mem::take(&mut self.held) {
            self.log.extend(records);
            let out = self.c.on_committed(id, self.now, &View);
            self.run(out);
        }
    }

    pub fn add_block(&mut self) {
        self.c.add_producer_ids(self.next_block, 1000);
        self.next_block += 1000;
    }

    /// Sends a request; returns its answer if it was answered by now.
    pub fn send(&mut self, version: i16, request: TxnRequest) -> (u64, Option<ResponseKind>) {
        let id = self.next_id;
        self.next_id += 1;
        let out = self.c.handle(id, version, request, self.now, &View);
        self.run(out);
        (id, self.responses.remove(&id))
    }

    pub fn answer(&mut self, version: i16, request: TxnRequest) -> ResponseKind {
        let (id, resp) = self.send(version, request);
        resp.unwrap_or_else(|| panic!("request {id} not answered"))
    }

    pub fn tick(&mut self, advance_ms: i64) {
        self.now += advance_ms;
        let out = self.c.tick(self.now, &View);
        self.run(out);
        if let Some(d) = self.c.next_deadline_ms() {
            assert!(d > self.now);
        }
    }

    /// Writes every pending marker.
    pub fn write_markers(&mut self) {
        for m in std::mem::take(&mut self.markers) {
            let out = self.c.markers_written(&m.transactional_id, &m.partitions);
            self.run(out);
        }
    }

    // Requests -------------------------------------------------------------------------------

    /// InitProducerId at `version`; returns (error, producer id, epoch).
    pub fn init(
        &mut self,
        version: i16,
        txn: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> (i16, i64, i16) {
        let (pid, epoch) = expected.unwrap_or((-1, -1));
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(txn.into()))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch);
        match self.answer(version, TxnRequest::InitProducerId(req)) {
            ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    /// AddPartitionsToTxn v0-3 for one transaction; returns each partition's error.
    pub fn add(
        &mut self,
        version: i16,
        txn: &str,
        pid: i64,
        epoch: i16,
        partitions: &[(&str, i32)],
    ) -> Vec<((String, i32), i16)> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
            .with_v3_and_below_producer_id(pid.into())
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics(partitions));
        match self.answer(version, TxnRequest::AddPartitionsToTxn(req)) {
            ResponseKind::AddPartitionsToTxn(r) => flatten(&r.results_by_topic_v3_and_below),
            other => panic!("{other:?}"),
        }
    }

    /// AddPartitionsToTxn v4+ (batched) for one transaction.
    pub fn add_v4(
        &mut self,
        version: i16,
        txn: &str,
        pid: i64,
        epoch: i16,
        verify_only: bool,
        partitions: &[(&str, i32)],
    ) -> Vec<((String, i32), i16)> {
        let t = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_verify_only(verify_only)
            .with_topics(topics(partitions));
        let req = AddPartitionsToTxnRequest::default().with_transactions(vec![t]);
        match self.answer(version, TxnRequest::AddPartitionsToTxn(req)) {
            ResponseKind::AddPartitionsToTxn(r) => {
                assert_eq!(r.results_by_transaction.len(), 1);
                flatten(&r.results_by_transaction[0].topic_results)
            }
            other => panic!("{other:?}"),
        }
    }

    pub fn add_offsets(
        &mut self,
        version: i16,
        txn: &str,
        pid: i64,
        epoch: i16,
        group: &str,
    ) -> i16 {
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
            .with_producer_id(pid.into())
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.into())));
        match self.answer(version, TxnRequest::AddOffsetsToTxn(req)) {
            ResponseKind::AddOffsetsToTxn(r) => r.error_code,
            other => panic!("{other:?}"),
        }
    }

    /// EndTxn; returns (error, producer id, epoch) of the answer.
    pub fn end(
        &mut self,
        version: i16,
        txn: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> (i16, i64, i16) {
        let req = end_txn_request(txn, pid, epoch, commit);
        match self.answer(version, TxnRequest::EndTxn(req)) {
            ResponseKind::EndTxn(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
            other => panic!("{other:?}"),
        }
    }

    pub fn describe(&mut self, txn: &str) -> describe_transactions_response::TransactionState {
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(txn.into()))]);
        match self.answer(0, TxnRequest::DescribeTransactions(req)) {
            ResponseKind::DescribeTransactions(mut r) => r.transaction_states.remove(0),
            other => panic!("{other:?}"),
        }
    }

    pub fn state(&self, txn: &str) -> Option<super::TxnState> {
        self.c.transactions().get(txn).map(|m| m.state)
    }
}

pub(super) fn end_txn_request(txn: &str, pid: i64, epoch: i16, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(txn.into())))
        .with_producer_id(pid.into())
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

fn topics(
    partitions: &[(&str, i32)],
) -> Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| {
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.into())))
                .with_partitions(ps)
        })
        .collect()
}

fn flatten(
    results: &[add_partitions_to_txn_response::AddPartitionsToTxnTopicResult],
) -> Vec<((String, i32), i16)> {
    results
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    (t.name.0.to_string(), p.partition_index),
                    p.partition_error_code,
                )
            })
        })
        .collect()
}

/// Every error in `results` is `code`.
pub(super) fn all(results: &[((String, i32), i16)], code: i16) -> bool {
    !results.is_empty() && results.iter().all(|(_, c)| *c == code)
}

/// A committed log replayed into a fresh coordinator.
pub(super) fn replay(config: &TxnConfig, log: &[(Bytes, Option<Bytes>)]) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(config.clone(), 0, 8);
    for (k, v) in log {
        c.replay(k, v.as_deref())
            .expect("a committed record replays");
    }
    c
}
