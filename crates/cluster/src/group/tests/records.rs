//! records.rs: encodings match Kafka's layouts, decoding survives hostile bytes.

use bytes::Bytes;

use crate::group::records::*;

fn offset_value(expire: i64, topic_id: Option<uuid::Uuid>) -> OffsetCommitValue {
    OffsetCommitValue {
        offset: 42,
        leader_epoch: 7,
        metadata: "meta".into(),
        commit_timestamp_ms: 1_700_000_000_000,
        expire_timestamp_ms: expire,
        topic_id,
    }
}

fn group_value() -> GroupMetadataValue {
    GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation: 3,
        protocol: Some("range".into()),
        leader: Some("m1".into()),
        current_state_timestamp_ms: 123,
        members: vec![MemberMetadata {
            member_id: "m1".into(),
            group_instance_id: Some("i1".into()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            subscription: Bytes::from_static(b"sub"),
            assignment: Bytes::from_static(b"asg"),
        }],
    }
}

fn valid_records() -> Vec<(Bytes, Bytes)> {
    vec![
        (
            offset_commit_key("g", "t", 1),
            encode_offset_commit_value(&offset_value(-1, None)),
        ),
        (
            offset_commit_key("g", "t", 1),
            encode_offset_commit_value(&offset_value(-1, Some(uuid::Uuid::from_u128(9)))),
        ),
        (
            offset_commit_key("g", "t", 1),
            encode_offset_commit_value(&offset_value(99, None)),
        ),
        (
            group_metadata_key("g"),
            encode_group_metadata_value(&group_value()),
        ),
    ]
}

#[test]
fn round_trips() {
    // Proves every value we write decodes back to itself, keys included.
    for v in [
        offset_value(-1, None),
        offset_value(-1, Some(uuid::Uuid::from_u128(9))),
    ] {
        assert_eq!(
            decode_offset_commit_value(&encode_offset_commit_value(&v)).unwrap(),
            v
        );
    }
    // v1 keeps the expire timestamp but has no leader epoch.
    let v1 =
        decode_offset_commit_value(&encode_offset_commit_value(&offset_value(99, None))).unwrap();
    assert_eq!((v1.expire_timestamp_ms, v1.leader_epoch), (99, -1));
    assert_eq!(
        decode_group_metadata_value(&encode_group_metadata_value(&group_value())).unwrap(),
        group_value()
    );
    assert_eq!(
        decode_key(&offset_commit_key("g", "t", 1)).unwrap(),
        RecordKey::OffsetCommit {
            group: "g".into(),
            topic: "t".into(),
            partition: 1
        }
    );
    assert_eq!(
        decode_key(&group_metadata_key("g")).unwrap(),
        RecordKey::GroupMetadata { group: "g".into() }
    );
}

#[test]
fn layouts_match_kafka() {
    // Proves the exact bytes of a key and a v4 value, as Kafka 4.1 writes them.
    assert_eq!(
        offset_commit_key("g", "t", 1).as_ref(),
        &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]
    );
    let v = encode_offset_commit_value(&OffsetCommitValue {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
        expire_timestamp_ms: -1,
        topic_id: None,
    });
    let mut want = vec![0, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 1];
    want.extend_from_slice(&[0; 8]);
    want.push(0);
    assert_eq!(v.as_ref(), want.as_slice());
    // Kafka reads a legacy key type 0 as the same offset commit key.
    let mut legacy = offset_commit_key("g", "t", 1).to_vec();
    legacy[1] = 0;
    assert!(matches!(
        decode_key(&legacy).unwrap(),
        RecordKey::OffsetCommit { .. }
    ));
}

#[test]
fn truncated_and_garbage_input_never_panics() {
    // Proves every truncation of valid records and random bytes decode to errors, not panics.
    for (key, value) in valid_records() {
        for cut in 0..key.len() {
            assert!(decode_key(&key[..cut]).is_err());
        }
        for cut in 0..value.len() {
            let _ = decode_offset_commit_value(&value[..cut]);
            let _ = decode_group_metadata_value(&value[..cut]);
        }
    }
    // A small deterministic PRNG (xorshift) keeps failures reproducible.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= 2 && next() % 2 == 0 {
            bytes[0] = 0;
            bytes[1] = (next() % 5) as u8; // a plausible version to get past the first check
        }
        let _ = decode_key(&bytes);
        let _ = decode_offset_commit_value(&bytes);
        let _ = decode_group_metadata_value(&bytes);
        let _ = consumer_subscription_topics(&bytes);
    }
    // A lying member count must fail without allocating for it.
    let mut lying = vec![0u8, 3, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    lying.extend_from_slice(&0i64.to_be_bytes());
    lying.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_group_metadata_value(&lying).is_err());
}
