//! The consumer protocol embedded in classic JoinGroup and SyncGroup (Kafka's
//! `ConsumerProtocolSubscription` and `ConsumerProtocolAssignment`, versions 0-3, non-flexible,
//! each prefixed by its version). The coordinator reads it only when a group moves between the
//! classic and the consumer protocol: a classic member inside a consumer group gets its
//! assignment from the coordinator, encoded here, instead of from a group leader.
//!
//! The bytes come from clients: every length is checked before use.

use bytes::{BufMut, Bytes, BytesMut};

use super::records::Reader;

/// Highest version of both schemas; a member announcing a newer one is answered in this one,
/// as Kafka's `ConsumerProtocol.checkAssignmentVersion` does.
pub const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// The protocol type of every group that speaks the consumer protocol.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A member's subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// Partitions the member owns (v1+; cooperative members report them when rejoining).
    pub owned_partitions: Vec<(String, Vec<i32>)>,
    /// v2+; -1 when absent.
    pub generation_id: i32,
    /// v3+.
    pub rack_id: Option<String>,
}

/// An assignment as the consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub partitions: Vec<(String, Vec<i32>)>,
    pub user_data: Option<Bytes>,
}

/// The version prefix alone (Kafka's `ConsumerProtocol.deserializeVersion`).
pub fn version(bytes: &[u8]) -> Result<i16, String> {
    Reader::new(bytes).i16().map_err(|e| e.to_string())
}

fn checked_version(version: i16) -> Result<i16, String> {
    if version < 0 {
        return Err(format!("unsupported consumer protocol version: {version}"));
    }
    Ok(version.min(CONSUMER_PROTOCOL_VERSION_MAX))
}

fn topic_partitions(r: &mut Reader<'_>) -> Result<Vec<(String, Vec<i32>)>, String> {
    let e = |e: super::GroupError| e.to_string();
    // A topic takes at least a 2-byte name length and a 4-byte array length.
    let count = r.array_len(false, 6).map_err(e)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let topic = r.string(false).map_err(e)?;
        let n = r.array_len(false, 4).map_err(e)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(r.i32().map_err(e)?);
        }
        out.push((topic, partitions));
    }
    Ok(out)
}

/// Parses a subscription (Kafka's `deserializeConsumerProtocolSubscription`). Fields of
/// versions newer than the bytes keep their defaults; bytes after the known fields (a newer
/// version's) are ignored, as Kafka's readers do.
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, String> {
    let e = |e: super::GroupError| e.to_string();
    let mut r = Reader::new(bytes);
    let version = checked_version(r.i16().map_err(e)?)?;
    let count = r.array_len(false, 2).map_err(e)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(r.string(false).map_err(e)?);
    }
    let user_data = r.raw(false, true).map_err(e)?.map(Bytes::copy_from_slice);
    let mut subscription = Subscription {
        version,
        topics,
        user_data,
        generation_id: -1,
        ..Subscription::default()
    };
    if version >= 1 {
        subscription.owned_partitions = topic_partitions(&mut r)?;
    }
    if version >= 2 {
        subscription.generation_id = r.i32().map_err(e)?;
    }
    if version >= 3 {
        subscription.rack_id = r.nullable_string(false).map_err(e)?;
    }
    Ok(subscription)
}

/// Parses an assignment (Kafka's `deserializeConsumerProtocolAssignment`).
pub fn decode_assignment(bytes: &[u8]) -> Result<Assignment, String> {
    let e = |e: super::GroupError| e.to_string();
    let mut r = Reader::new(bytes);
    checked_version(r.i16().map_err(e)?)?;
    let partitions = topic_partitions(&mut r)?;
    let user_data = r.raw(false, true).map_err(e)?.map(Bytes::copy_from_slice);
    Ok(Assignment {
        partitions,
        user_data,
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Topic names are at most 249 bytes (and every string here came from a checked request).
    let len = i16::try_from(s.len()).expect("a topic name longer than i16::MAX"); // ok: topic names are bounded
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_array_len(buf: &mut BytesMut, len: usize) {
    let len = i32::try_from(len).expect("an array longer than i32::MAX"); // ok: partition counts are i32
    buf.put_i32(len);
}

/// Encodes an assignment at `version` (clamped to what we speak), with no user data: the
/// coordinator assigns, no client assignor left any.
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Bytes {
    let version = version.clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    put_array_len(&mut buf, partitions.len());
    for (topic, ps) in partitions {
        put_string(&mut buf, topic);
        put_array_len(&mut buf, ps.len());
        for p in ps {
            buf.put_i32(*p);
        }
    }
    buf.put_i32(-1); // user data: null
    buf.freeze()
}

/// Encodes a subscription (what a classic client sends; used by tests and simulations).
pub fn encode_subscription(subscription: &Subscription) -> Bytes {
    let version = subscription.version.clamp(0, CONSUMER_PROTOCOL_VERSION_MAX);
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    put_array_len(&mut buf, subscription.topics.len());
    for topic in &subscription.topics {
        put_string(&mut buf, topic);
    }
    match &subscription.user_data {
        None => buf.put_i32(-1),
        Some(data) => {
            put_array_len(&mut buf, data.len());
            buf.put_slice(data);
        }
    }
    if version >= 1 {
        put_array_len(&mut buf, subscription.owned_partitions.len());
        for (topic, ps) in &subscription.owned_partitions {
            put_string(&mut buf, topic);
            put_array_len(&mut buf, ps.len());
            for p in ps {
                buf.put_i32(*p);
            }
        }
    }
    if version >= 2 {
        buf.put_i32(subscription.generation_id);
    }
    if version >= 3 {
        match &subscription.rack_id {
            None => buf.put_i16(-1),
            Some(rack) => put_string(&mut buf, rack),
        }
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: every version of a subscription reads back what was written.
    #[test]
    fn subscriptions_round_trip_at_every_version() {
        for version in 0..=CONSUMER_PROTOCOL_VERSION_MAX {
            let mut s = Subscription {
                version,
                topics: vec!["a".into(), "b".into()],
                user_data: Some(Bytes::from_static(b"xy")),
                owned_partitions: vec![("a".into(), vec![0, 2])],
                generation_id: 7,
                rack_id: Some("r1".into()),
            };
            let decoded = decode_subscription(&encode_subscription(&s)).unwrap();
            if version < 1 {
                s.owned_partitions.clear();
            }
            if version < 2 {
                s.generation_id = -1;
            }
            if version < 3 {
                s.rack_id = None;
            }
            assert_eq!(decoded, s, "version {version}");
        }
    }

    /// Goal: an assignment reads back, and a newer version is answered in ours.
    #[test]
    fn assignments_round_trip_and_newer_versions_are_clamped() {
        let partitions = vec![("t".to_string(), vec![1, 3])];
        let bytes = encode_assignment(9, &partitions);
        assert_eq!(version(&bytes).unwrap(), CONSUMER_PROTOCOL_VERSION_MAX);
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(decoded.partitions, partitions);
        assert_eq!(decoded.user_data, None);
    }

    /// Goal: hostile bytes fail cleanly, never panic or allocate by a claimed count.
    #[test]
    fn lying_lengths_and_negative_versions_are_refused() {
        assert!(decode_subscription(&[]).is_err());
        assert!(decode_subscription(&[0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_err());
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = decode_subscription(&bytes);
            let _ = decode_assignment(&bytes);
        }
    }
}
