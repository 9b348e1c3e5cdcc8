//! The transaction coordinator driven by a sequence of steps read from the fuzzer's bytes:
//! requests of every kind it answers, at every version Kafka defines, naming a few
//! transactional ids with producer ids and epochs near (and far from) the current ones; clock
//! ticks; appends that commit, fail or wait; markers written in any order; producer-id
//! blocks arriving late; and restarts that replay the committed log.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_protocol::fuzzing::{Choices, FuzzBytes};

use crate::group::Record;
use crate::txn::records::{self, TxnRecord};
use crate::txn::{
    MarkerWrite, Output, PartitionView, TxnConfig, TxnCoordinator, TxnRequest, TxnState,
};

/// Steps one input may take: enough for transactions to start, end, time out and expire.
const STEPS_MAX: usize = 96;

/// Transactional ids requests name ("" is refused by Kafka).
const TXN_IDS: [&str; 6] = ["a", "b", "a", "b", "c", ""];

/// Timeouts around the limits (transaction.max.timeout.ms is 900000).
const TIMEOUTS: [i32; 8] = [1, 15_000, 60_000, 60_000, 300_000, 900_000, 900_001, 0];

/// Partitions transactions add: mostly ones that exist (one without a leader), a few not.
const PARTITIONS: [(&str, i32); 8] = [
    ("a", 0),
    ("a", 1),
    ("a", 2),
    ("b", 0),
    ("a", 0),
    ("c", 0),
    ("b", 1),
    ("zz", 0),
];

/// Log errors an append may fail with.
const APPEND_ERRORS: [i16; 5] = [7, 19, 6, 10, 56]; // REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_LEADER_OR_FOLLOWER, MESSAGE_TOO_LARGE, KAFKA_STORAGE_ERROR

/// Topics "a" (3 partitions, broker 1), "b" (1, broker 2), "c" (1, no leader now), and
/// `__consumer_offsets` (50, broker 1); anything else does not exist.
struct FuzzView;

impl PartitionView for FuzzView {
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

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// The run: the coordinator and the shell's bookkeeping around it.
struct Run {
    config: TxnConfig,
    c: TxnCoordinator,
    now: i64,
    /// Committed records in log order.
    log: Vec<(Bytes, Option<Bytes>)>,
    /// Appends waiting for their fate, in the order they were asked for.
    held: Vec<(u64, Vec<Record>)>,
    markers: Vec<MarkerWrite>,
    /// Open requests: id -> (api name, version).
    open: BTreeMap<u64, (&'static str, i16)>,
    next_request: u64,
    need_ids: bool,
    next_block: i64,
    /// Producer id and epoch answered last per transactional id.
    learned: BTreeMap<String, (i64, i16)>,
    /// Highest committed epoch per (transactional id, producer id).
    epochs: BTreeMap<(String, i64), i16>,
    coordinator_epoch: i32,
    /// Draining: every append commits.
    draining: bool,
}

impl Run {
    fn new() -> Run {
        let config = TxnConfig {
            transaction_state_partitions: 1,
            transactional_id_expiration_ms: 1_000_000,
            remove_expired_interval_ms: 100_000,
            ..TxnConfig::default()
        };
        let mut run = Run {
            c: TxnCoordinator::new(config.clone(), 0, 0),
            config,
            now: 1_000_000,
            log: Vec::new(),
            held: Vec::new(),
            markers: Vec::new(),
            open: BTreeMap::new(),
            next_request: 1,
            need_ids: false,
            next_block: 0,
            learned: BTreeMap::new(),
            epochs: BTreeMap::new(),
            coordinator_epoch: 0,
            draining: false,
        };
        let out = run.c.finish_replay(run.now, &FuzzView);
        run.process(out, &mut FuzzBytes::new(&[]));
        run.add_block();
        run
    }

    fn add_block(&mut self) {
        self.c.add_producer_ids(self.next_block, 10);
        self.next_block += 10;
        self.need_ids = false;
    }

    fn process(&mut self, outputs: Vec<Output>, input: &mut FuzzBytes) {
        let mut queue: std::collections::VecDeque<Output> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::Respond(id, response) => self.answer(id, &response),
                Output::Append {
                    id,
                    partition,
                    records,
                } => {
                    assert_eq!(partition, 0, "an append to another partition");
                    for (key, value) in &records {
                        match records::decode(key, value.as_deref()) {
                            Ok(TxnRecord::Value(_, t)) => {
                                assert!(t.producer_epoch >= 0, "a record with a negative epoch");
                                assert!(
                                    !matches!(
                                        t.state,
                                        TxnState::Dead | TxnState::PrepareEpochFence
                                    ),
                                    "{:?} written",
                                    t.state
                                );
                                assert!(t.state != TxnState::Empty || t.partitions.is_empty());
                            }
                            Ok(TxnRecord::Tombstone(_)) => {}
                            other => panic!("appended a record that does not read back: {other:?}"),
                        }
                    }
                    let choice = if self.draining { 19 } else { input.below(20) };
                    match choice {
                        0 => {
                            let error =
                                APPEND_ERRORS[input.below(APPEND_ERRORS.len() as u64) as usize];
                            queue.extend(self.c.on_append_failed(id, error, self.now));
                        }
                        1 | 2 => self.held.push((id, records)),
                        3 if !self.held.is_empty() => self.held.push((id, records)),
                        _ => {
                            self.log.extend(records);
                            queue.extend(self.c.on_committed(id, self.now, &FuzzView));
                        }
                    }
                }
                Output::WriteMarkers(m) => {
                    assert!(!m.partitions.is_empty());
                    assert!(m
                        .partitions
                        .iter()
                        .all(|(t, p)| FuzzView.leader(t, *p) == Some(m.leader)));
                    assert_eq!(m.coordinator_epoch, self.coordinator_epoch);
                    let meta = &self.c.transactions()[&m.transactional_id];
                    assert!(matches!(
                        meta.state,
                        TxnState::PrepareCommit | TxnState::PrepareAbort
                    ));
                    assert_eq!(
                        (m.producer_id, m.producer_epoch),
                        (meta.producer_id, meta.producer_epoch)
                    );
                    self.markers.push(m);
                }
                Output::NeedProducerIds => {
                    assert!(!self.need_ids, "producer ids asked for twice");
                    self.need_ids = true;
                }
            }
        }
        self.check();
    }

    /// An answer: to an open request, once, encodable at its version.
    fn answer(&mut self, id: u64, response: &ResponseKind) {
        let Some((api, version)) = self.open.remove(&id) else {
            panic!("request {id} answered twice or never asked");
        };
        let mut buf = BytesMut::new();
        if let Err(e) = response.encode(&mut buf, version) {
            panic!("{api} v{version} answer does not encode: {e:#}\n{response:?}");
        }
        match response {
            ResponseKind::InitProducerId(r) if r.error_code == 0 => {
                assert!(r.producer_epoch >= 0 && r.producer_id.0 >= 0);
            }
            _ => {}
        }
    }

    /// The coordinator's invariants.
    fn check(&mut self) {
        assert_eq!(
            self.c.internal_errors(),
            0,
            "a transition failed Kafka's fatal checks"
        );
        for (id, m) in self.c.transactions() {
            match m.state {
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    assert!(
                        m.partitions.is_empty(),
                        "{id}: {:?} with partitions",
                        m.state
                    )
                }
                TxnState::Dead | TxnState::PrepareEpochFence => panic!("{id}: in {:?}", m.state),
                _ => {}
            }
            if m.state != TxnState::Empty {
                assert!(m.start_ms >= 0, "{id}: {:?} without a start time", m.state);
            }
            if m.producer_epoch >= 0 {
                // A producer's epoch never goes back (what fences zombies).
                let seen = self
                    .epochs
                    .entry((id.clone(), m.producer_id))
                    .or_insert(m.producer_epoch);
                assert!(
                    m.producer_epoch >= *seen,
                    "{id}: epoch went back from {seen} to {}",
                    m.producer_epoch
                );
                *seen = m.producer_epoch;
            }
        }
        // The committed log replays to the committed state.
        let replayed = replay(&self.config, &self.log);
        for (id, r) in replayed.transactions() {
            let m = self
                .c
                .transactions()
                .get(id)
                .unwrap_or_else(|| panic!("{id} replays but is not known"));
            assert_eq!(
                (
                    r.producer_id,
                    r.producer_epoch,
                    r.state,
                    r.timeout_ms,
                    r.start_ms,
                    r.last_update_ms
                ),
                (
                    m.producer_id,
                    m.producer_epoch,
                    m.state,
                    m.timeout_ms,
                    m.start_ms,
                    m.last_update_ms
                ),
                "{id}: replayed state differs"
            );
            if !matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
                // (Prepared transactions lose partitions in memory as markers are written.)
                assert_eq!(
                    r.partitions, m.partitions,
                    "{id}: replayed partitions differ"
                );
            }
        }
        for (id, m) in self.c.transactions() {
            // Only ids whose first record is still in flight (or failed) are not in the log.
            if !replayed.transactions().contains_key(id) {
                assert_eq!(
                    (m.state, m.producer_epoch),
                    (TxnState::Empty, -1),
                    "{id} known but not in the log"
                );
            }
        }
    }

    fn send(
        &mut self,
        version: i16,
        name: &'static str,
        request: TxnRequest,
        input: &mut FuzzBytes,
    ) {
        let id = self.next_request;
        self.next_request += 1;
        self.open.insert(id, (name, version));
        let out = self.c.handle(id, version, request, self.now, &FuzzView);
        self.process(out, input);
    }

    /// A producer id and epoch for `txn`: mostly the current ones, sometimes near or wrong.
    fn producer(&self, txn: &str, input: &mut FuzzBytes) -> (i64, i16) {
        let (pid, epoch) = self
            .c
            .transactions()
            .get(txn)
            .map(|m| (m.producer_id, m.producer_epoch))
            .or_else(|| self.learned.get(txn).copied())
            .unwrap_or((0, 0));
        match input.below(8) {
            0 => (pid, epoch.wrapping_sub(1)),
            1 => (pid, epoch.wrapping_add(1)),
            2 => (pid + 1, epoch),
            3 => self.learned.get(txn).copied().unwrap_or((pid, epoch)),
            4 => (input.below(40) as i64, input.below(4) as i16),
            _ => (pid, epoch),
        }
    }

    fn partitions(input: &mut FuzzBytes) -> Vec<(String, i32)> {
        let n = input.below(4);
        (0..n)
            .map(|_| {
                // The last two do not exist: chosen one time in sixteen.
                let i = if input.below(8) == 0 {
                    6 + input.below(2)
                } else {
                    input.below(6)
                };
                let (topic, p) = PARTITIONS[i as usize];
                (topic.to_owned(), p)
            })
            .collect()
    }

    fn step(&mut self, input: &mut FuzzBytes) {
        let txn = TXN_IDS[input.below(TXN_IDS.len() as u64) as usize];
        match input.below(20) {
            0 | 1 => {
                self.now += input.below(20_000) as i64;
                let out = self.c.tick(self.now, &FuzzView);
                self.process(out, input);
                if let Some(deadline) = self.c.next_deadline_ms() {
                    assert!(
                        deadline > self.now,
                        "deadline {deadline} left at tick {}",
                        self.now
                    );
                }
            }
            2 => {
                self.now += 1_000 * input.below(200) as i64;
                let out = self.c.tick(self.now, &FuzzView);
                self.process(out, input);
            }
            3 => {
                // Held appends are decided, in order.
                let fail = input.below(4) == 0;
                for (id, records) in std::mem::take(&mut self.held) {
                    let out = if fail {
                        self.c.on_append_failed(id, 19, self.now)
                    } else {
                        self.log.extend(records);
                        self.c.on_committed(id, self.now, &FuzzView)
                    };
                    self.process(out, input);
                }
            }
            4..=6 if !self.markers.is_empty() => {
                // Some marker writes finish, in any order.
                let i = input.below(self.markers.len() as u64) as usize;
                let m = self.markers.remove(i);
                let out = self.c.markers_written(&m.transactional_id, &m.partitions);
                self.process(out, input);
            }
            7 if self.need_ids => self.add_block(),
            7 if input.below(3) == 0 => self.restart(input),
            8 | 9 | 19 => {
                let (pid, epoch) = self.producer(txn, input);
                let version = input.below(7) as i16;
                let expected = if version >= 3 && input.below(2) == 0 {
                    (pid, epoch)
                } else {
                    (-1, -1)
                };
                let req = InitProducerIdRequest::default()
                    .with_transactional_id((input.below(8) != 0).then(|| TransactionalId(s(txn))))
                    .with_transaction_timeout_ms(
                        TIMEOUTS[input.below(TIMEOUTS.len() as u64) as usize],
                    )
                    .with_producer_id(expected.0.into())
                    .with_producer_epoch(expected.1)
                    .with_enable_2_pc(version >= 6 && input.below(8) == 0)
                    .with_keep_prepared_txn(version >= 6 && input.below(8) == 0);
                self.send(
                    version,
                    "InitProducerId",
                    TxnRequest::InitProducerId(req),
                    input,
                );
            }
            10..=12 => {
                let version = input.below(6) as i16;
                let mut req = AddPartitionsToTxnRequest::default();
                let topics = |ps: Vec<(String, i32)>| {
                    ps.into_iter()
                        .map(|(t, p)| {
                            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                                .with_name(TopicName(s(&t)))
                                .with_partitions(vec![p])
                        })
                        .collect::<Vec<_>>()
                };
                if version < 4 {
                    let (pid, epoch) = self.producer(txn, input);
                    req.v3_and_below_transactional_id = TransactionalId(s(txn));
                    req.v3_and_below_producer_id = pid.into();
                    req.v3_and_below_producer_epoch = epoch;
                    req.v3_and_below_topics = topics(Self::partitions(input));
                } else {
                    for _ in 0..input.below(3) {
                        let txn = TXN_IDS[input.below(TXN_IDS.len() as u64) as usize];
                        let (pid, epoch) = self.producer(txn, input);
                        req.transactions.push(
                            add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                                .with_transactional_id(TransactionalId(s(txn)))
                                .with_producer_id(pid.into())
                                .with_producer_epoch(epoch)
                                .with_verify_only(input.below(3) == 0)
                                .with_topics(topics(Self::partitions(input))),
                        );
                    }
                }
                self.send(
                    version,
                    "AddPartitionsToTxn",
                    TxnRequest::AddPartitionsToTxn(req),
                    input,
                );
            }
            13 => {
                let (pid, epoch) = self.producer(txn, input);
                let version = input.below(5) as i16;
                let req = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(txn)))
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(s(["g", "h"][input.below(2) as usize])));
                self.send(
                    version,
                    "AddOffsetsToTxn",
                    TxnRequest::AddOffsetsToTxn(req),
                    input,
                );
            }
            14..=16 => {
                let (pid, epoch) = self.producer(txn, input);
                let version = input.below(6) as i16;
                let req = EndTxnRequest::default()
                    .with_transactional_id(TransactionalId(s(txn)))
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_committed(input.below(2) == 0);
                self.send(version, "EndTxn", TxnRequest::EndTxn(req), input);
            }
            17 => {
                let req = DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    TransactionalId(s(txn)),
                    TransactionalId(s("zz")),
                ]);
                self.send(
                    0,
                    "DescribeTransactions",
                    TxnRequest::DescribeTransactions(req),
                    input,
                );
            }
            18 => {
                let version = input.below(3) as i16;
                let mut req = ListTransactionsRequest::default();
                if input.below(2) == 0 {
                    req.state_filters = vec![s(
                        ["Ongoing", "Empty", "PrepareCommit", "Nope"][input.below(4) as usize]
                    )];
                }
                if version >= 1 && input.below(2) == 0 {
                    req.duration_filter = input.below(30_000) as i64;
                }
                if version >= 2 && input.below(2) == 0 {
                    req.transactional_id_pattern =
                        Some(s(["a|b", "(", "", ".*"][input.below(4) as usize]));
                }
                self.send(
                    version,
                    "ListTransactions",
                    TxnRequest::ListTransactions(req),
                    input,
                );
            }
            _ => {}
        }
        for (txn, m) in self.c.transactions() {
            if m.producer_epoch >= 0 {
                self.learned
                    .insert(txn.clone(), (m.producer_id, m.producer_epoch));
            }
        }
    }

    /// The broker dies: held appends either made it to the log or not; open requests are
    /// failed by the shell; a new coordinator replays the log and takes over.
    fn restart(&mut self, input: &mut FuzzBytes) {
        let reached_log = input.below(2) == 0;
        for (_, records) in std::mem::take(&mut self.held) {
            if reached_log {
                self.log.extend(records);
            }
        }
        self.open.clear();
        self.markers.clear();
        self.coordinator_epoch += 1;
        self.c = {
            let mut c = TxnCoordinator::new(self.config.clone(), 0, self.coordinator_epoch);
            for (k, v) in &self.log {
                c.replay(k, v.as_deref())
                    .expect("a committed record replays");
            }
            c
        };
        self.need_ids = false;
        let out = self.c.finish_replay(self.now, &FuzzView);
        self.process(out, input);
        self.add_block();
    }

    /// Everything in flight finishes: appends commit, blocks arrive, markers are written,
    /// retries run. Then no transaction may be left prepared or pending.
    fn drain(&mut self) {
        let mut quiet = FuzzBytes::new(&[]);
        self.draining = true;
        for _ in 0..32 {
            for (id, records) in std::mem::take(&mut self.held) {
                self.log.extend(records);
                let out = self.c.on_committed(id, self.now, &FuzzView);
                self.process(out, &mut quiet);
            }
            if self.need_ids {
                self.add_block();
            }
            for m in std::mem::take(&mut self.markers) {
                let out = self.c.markers_written(&m.transactional_id, &m.partitions);
                self.process(out, &mut quiet);
            }
            self.now += 1_000;
            let out = self.c.tick(self.now, &FuzzView);
            self.process(out, &mut quiet);
        }
        assert_eq!(self.c.appends_in_flight(), 0, "appends never reported");
        for (id, m) in self.c.transactions() {
            assert!(
                m.pending.is_none()
                    && !matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort),
                "{id} stuck in {:?} (pending {:?})\n{:#?}",
                m.state,
                m.pending,
                self.c
            );
        }
    }
}

fn replay(config: &TxnConfig, log: &[(Bytes, Option<Bytes>)]) -> TxnCoordinator {
    let mut c = TxnCoordinator::new(config.clone(), 0, 0);
    for (k, v) in log {
        c.replay(k, v.as_deref())
            .expect("a committed record replays");
    }
    c
}

/// Fuzz entry for the transaction coordinator.
///
/// Invariants checked after every step:
/// - every answer goes to an open request, once, and encodes at that request's version;
///   a successful InitProducerId answers a real producer id and epoch;
/// - no transition fails Kafka's fatal checks (`internal_errors` stays 0);
/// - every record appended reads back with Kafka's schema, never Dead or PrepareEpochFence,
///   never an Empty transaction with partitions or a negative epoch;
/// - markers go to the partitions' leader, with the coordinator's epoch and the prepared
///   transaction's producer id and epoch;
/// - Empty and Complete* transactions hold no partitions, only Empty lacks a start time, and a
///   producer's epoch never goes back;
/// - the committed log replays to the committed state.
///
/// And at the end, once everything in flight finished: no transaction is left prepared or
/// with a pending transition.
pub fn txn_coordinator(data: &[u8]) {
    let mut input = FuzzBytes::new(data);
    let mut run = Run::new();
    // Two producers are ready from the start, so the first steps have transactions to work on.
    run.draining = true;
    for txn in ["a", "b"] {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(txn))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        run.send(
            4,
            "InitProducerId",
            TxnRequest::InitProducerId(req),
            &mut input,
        );
    }
    run.draining = false;
    for _ in 0..STEPS_MAX {
        if input.is_empty() {
            break;
        }
        run.step(&mut input);
    }
    run.drain();
}
