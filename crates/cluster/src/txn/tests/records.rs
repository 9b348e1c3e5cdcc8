//! `__transaction_state` records: round trips, hostile bytes, and byte-for-byte agreement
//! with Kafka's own encoder.

use std::collections::BTreeSet;

use crate::txn::metadata::TxnTransit;
use crate::txn::records::{self, TxnRecord};
use crate::txn::state::TxnState;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn transit(state: TxnState, partitions: &[(&str, i32)], client_version: i16) -> TxnTransit {
    TxnTransit {
        producer_id: 4242,
        prev_producer_id: 4241,
        next_producer_id: -1,
        producer_epoch: 5,
        last_producer_epoch: -1,
        timeout_ms: 60_000,
        state,
        partitions: partitions
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect(),
        start_ms: if state == TxnState::Empty {
            -1
        } else {
            1_700_000_000_100
        },
        last_update_ms: 1_700_000_000_200,
        client_version,
    }
}

// Proves every state Kafka writes round-trips through both value versions.
#[test]
fn values_round_trip_in_both_versions() {
    let written = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];
    for state in written {
        let partitions: &[(&str, i32)] = match state {
            TxnState::Empty | TxnState::CompleteAbort | TxnState::CompleteCommit => &[],
            _ => &[("a", 2), ("a", 0), ("b", 0), ("__consumer_offsets", 17)],
        };
        for (version, client) in [(0, 0), (1, 0), (1, 2)] {
            let t = transit(state, partitions, client);
            let bytes = records::value(&t, version);
            let key = records::key("txn");
            let decoded = records::decode(&key, Some(&bytes)).unwrap();
            let mut expected = t.clone();
            if version == 0 {
                // v0 has no tagged fields: previous/next producer id and client version are
                // Kafka's defaults when read back.
                expected.prev_producer_id = -1;
                expected.client_version = 0;
            }
            assert_eq!(
                decoded,
                TxnRecord::Value("txn".into(), expected),
                "{state:?} v{version}"
            );
        }
    }
}

// Proves our encoder writes exactly the bytes Kafka 4.4's `TransactionLog` writes (vectors
// printed by TxnLogVectors.java against the Kafka jars), and reads every one of Kafka's
// back to the same metadata. Where Kafka's hash-ordered partition list differs from our
// sorted one, the records must read back equal instead.
#[test]
fn txn_log_matches_kafka() {
    let vectors = include_str!("../../../tests/kafka_vectors/txn_log_vectors.txt");
    let mut exact = 0;
    for line in vectors.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, level, key_hex, value_hex] = fields[..] else {
            panic!("bad vector line {line}");
        };
        let level: i16 = level.parse().unwrap();
        let key = unhex(key_hex);
        let value = unhex(value_hex);
        let TxnRecord::Value(txn_id, t) = records::decode(&key, Some(&value)).unwrap() else {
            panic!("{name}: not a value");
        };
        assert_eq!(records::key(&txn_id).as_ref(), &key[..], "{name}: key");
        let ours = records::value(&t, crate::txn::state::version::log_value_version(level));
        if ours.as_ref() == &value[..] {
            exact += 1;
        } else {
            assert!(
                t.partitions.len() > 1,
                "{name}: bytes differ\nkafka {value_hex}\nours  {}",
                hex(&ours)
            );
            assert_eq!(
                records::decode(&key, Some(&ours)).unwrap(),
                TxnRecord::Value(txn_id, t),
                "{name}"
            );
        }
    }
    assert!(exact >= 7, "only {exact} vectors byte-exact");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// Proves the Kafka vectors hold what the Java program put in them (so the comparison above
// compares the fields it should).
#[test]
fn kafka_vectors_decode_to_their_inputs() {
    let vectors = include_str!("../../../tests/kafka_vectors/txn_log_vectors.txt");
    let line = vectors
        .lines()
        .find(|l| l.starts_with("prepare-abort-overflow "))
        .unwrap();
    let f: Vec<&str> = line.split(' ').collect();
    let TxnRecord::Value(id, t) = records::decode(&unhex(f[2]), Some(&unhex(f[3]))).unwrap() else {
        panic!()
    };
    assert_eq!(id, "txn-3");
    assert_eq!(
        (t.producer_id, t.prev_producer_id, t.next_producer_id),
        (12, 12, 13)
    );
    assert_eq!(
        (t.producer_epoch, t.state, t.client_version),
        (i16::MAX, TxnState::PrepareAbort, 2)
    );
    assert_eq!(
        t.partitions,
        BTreeSet::from([("__consumer_offsets".to_string(), 3)])
    );
    let line = vectors
        .lines()
        .find(|l| l.starts_with("ongoing-tv2 "))
        .unwrap();
    let f: Vec<&str> = line.split(' ').collect();
    let TxnRecord::Value(id, _) = records::decode(&unhex(f[2]), Some(&unhex(f[3]))).unwrap() else {
        panic!()
    };
    assert_eq!(id, "txn-\u{e9}");
}

// Proves a tombstone, another record type and an unknown value version are told apart, as
// Kafka's loader tells them apart (the last two are skipped).
#[test]
fn tombstones_and_unknown_versions() {
    let key = records::key("x");
    assert_eq!(
        records::decode(&key, None).unwrap(),
        TxnRecord::Tombstone("x".into())
    );
    assert_eq!(
        records::decode(&[0, 3, 0, 0], None).unwrap(),
        TxnRecord::UnknownKeyVersion(3)
    );
    assert_eq!(
        records::decode(&key, Some(&[0, 2, 1, 2])).unwrap(),
        TxnRecord::UnknownValueVersion(2)
    );
}

// Proves hostile bytes are errors, never panics or huge allocations: every truncation of a
// valid value, an unknown state id, and element counts larger than the bytes left.
#[test]
fn hostile_values_are_errors() {
    let key = records::key("x");
    for version in [0, 1] {
        let t = transit(TxnState::Ongoing, &[("a", 0), ("b", 1)], 2);
        let bytes = records::value(&t, version);
        for cut in 2..bytes.len() {
            assert!(
                records::decode(&key, Some(&bytes[..cut])).is_err(),
                "v{version} cut at {cut}"
            );
        }
        let mut bad_state = bytes.to_vec();
        bad_state[2 + 8 + 2 + 4] = 9;
        assert!(records::decode(&key, Some(&bad_state)).is_err());
    }
    // v0 with 2^31-1 topics, v1 with a huge compact count.
    let mut huge = vec![0, 0];
    huge.extend_from_slice(&[0; 8 + 2 + 4]);
    huge.push(1);
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(records::decode(&key, Some(&huge)).is_err());
    let mut huge = vec![0, 1];
    huge.extend_from_slice(&[0; 8 + 2 + 4]);
    huge.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(records::decode(&key, Some(&huge)).is_err());
    assert!(records::decode(&[0], None).is_err());
    assert!(records::decode(&[0, 0, 0, 5, b'a'], None).is_err());
}
