//! Kafka's `__consumer_offsets` record schemas for classic groups and committed offsets.
//!
//! Every record key starts with an `int16` that names its type (Kafka 4.x calls it the key
//! version): 0 and 1 are `OffsetCommitKey` (0 is the legacy name of the same layout), 2 is
//! `GroupMetadataKey`, 3 and up belong to KIP-848 consumer groups (and share/streams groups).
//! Every value starts with an `int16` schema version.
//!
//! We write what Kafka 4.1.2 writes (checked against `GroupCoordinatorRecordHelpers` in the
//! 4.1.2 jar): `OffsetCommitValue` v4 (v1 when the commit carries an explicit expire
//! timestamp) and `GroupMetadataValue` v3. We read every version Kafka defines, so a
//! `__consumer_offsets` log written by Kafka can be replayed here and the other way round.
//!
//! Decoding reads bytes from disk, which are hostile: every read is bounds-checked, no count
//! read from the input sizes an allocation, and errors are values, never panics.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{GroupError, Record};

/// Key type of an offset commit (Kafka 4.1 writes 1; 0 is the legacy layout, identical).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key type of a classic group's metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// `OffsetCommitValue` version Kafka 4.1 writes when no expire timestamp is set.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 4;
/// `OffsetCommitValue` version Kafka 4.1 writes when the commit carries an expire timestamp.
pub const OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
/// `GroupMetadataValue` version Kafka 4.1 writes.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// The longest string a record holds, in bytes (an int16 length, as on the wire).
pub const STRING_BYTES_MAX: usize = 0x7fff;

/// A decoded record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A committed offset of `group` for `topic`-`partition`.
    OffsetCommit {
        group: String,
        topic: String,
        partition: i32,
    },
    /// A classic group's metadata.
    GroupMetadata { group: String },
    /// A key type this module does not own (KIP-848, share and streams groups).
    Other(i16),
}

/// A committed offset as stored (`OffsetCommitValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// -1 when the client did not send one.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only v1 carries it (OffsetCommit v2-v4 with an explicit retention time); -1 otherwise.
    pub expire_timestamp_ms: i64,
    /// v4+ tagged field; `None` when absent or zero.
    pub topic_id: Option<Uuid>,
}

/// One member of a classic group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// -1 in v0 records (Kafka then uses the session timeout).
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The metadata of the group's selected protocol only.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A classic group as stored (`GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown (v0/v1 records).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_string(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes: request strings are bounded by the validator
    // (`runnel_protocol::validate::STRING_BYTES_MAX`, compact ones included) and generated
    // member ids by `classic::generated_member_id`, so a longer string here is our own bug.
    let len = i16::try_from(s.len()).expect("string longer than i16::MAX bytes"); // ok: bounded above
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    let len = i32::try_from(b.len()).expect("bytes longer than i32::MAX"); // ok: bytes come from frames of at most 100 MiB
    buf.put_i32(len);
    buf.put_slice(b);
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_compact_string(buf: &mut BytesMut, s: &str) {
    put_uvarint(buf, u32::try_from(s.len() + 1).expect("string too long")); // ok: strings are at most 0x7fff bytes (validator)
    buf.put_slice(s.as_bytes());
}

/// `OffsetCommitKey` bytes.
pub fn offset_commit_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut buf, group);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// `GroupMetadataKey` bytes.
pub fn group_metadata_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

/// `OffsetCommitValue` bytes, at the version Kafka 4.1 picks for this value.
pub fn encode_offset_commit_value(value: &OffsetCommitValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + value.metadata.len());
    if value.expire_timestamp_ms >= 0 {
        buf.put_i16(OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY);
        buf.put_i64(value.offset);
        put_string(&mut buf, &value.metadata);
        buf.put_i64(value.commit_timestamp_ms);
        buf.put_i64(value.expire_timestamp_ms);
    } else {
        buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        buf.put_i64(value.offset);
        buf.put_i32(value.leader_epoch);
        put_compact_string(&mut buf, &value.metadata);
        buf.put_i64(value.commit_timestamp_ms);
        match value.topic_id.filter(|id| !id.is_nil()) {
            Some(id) => {
                put_uvarint(&mut buf, 1); // one tagged field
                put_uvarint(&mut buf, 0); // tag 0: topicId
                put_uvarint(&mut buf, 16);
                buf.put_slice(id.as_bytes());
            }
            None => put_uvarint(&mut buf, 0),
        }
    }
    buf.freeze()
}

/// `GroupMetadataValue` v3 bytes.
pub fn encode_group_metadata_value(value: &GroupMetadataValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.current_state_timestamp_ms);
    buf.put_i32(i32::try_from(value.members.len()).expect("too many members")); // ok: members are bounded by group.max.size (an i32)
    for m in &value.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// A full offset commit record.
pub fn offset_commit_record(
    group: &str,
    topic: &str,
    partition: i32,
    value: &OffsetCommitValue,
) -> Record {
    (
        offset_commit_key(group, topic, partition),
        Some(encode_offset_commit_value(value)),
    )
}

/// A tombstone for one committed offset.
pub fn offset_commit_tombstone(group: &str, topic: &str, partition: i32) -> Record {
    (offset_commit_key(group, topic, partition), None)
}

/// A full group metadata record.
pub fn group_metadata_record(group: &str, value: &GroupMetadataValue) -> Record {
    (
        group_metadata_key(group),
        Some(encode_group_metadata_value(value)),
    )
}

/// A tombstone for a classic group.
pub fn group_metadata_tombstone(group: &str) -> Record {
    (group_metadata_key(group), None)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    position: usize,
}

fn corrupt(reason: &str) -> GroupError {
    GroupError::CorruptRecord(reason.to_string())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, position: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], GroupError> {
        if n > self.remaining() {
            return Err(corrupt("truncated"));
        }
        let out = &self.buf[self.position..self.position + n];
        self.position += n;
        Ok(out)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, GroupError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, GroupError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, GroupError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn uvarint(&mut self) -> Result<u32, GroupError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint longer than 5 bytes"))
    }

    /// A length-prefixed byte slice; `None` for a null. `flexible` selects the compact form.
    pub(crate) fn raw(
        &mut self,
        flexible: bool,
        wide: bool,
    ) -> Result<Option<&'a [u8]>, GroupError> {
        let len: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| corrupt("length"))?;
        self.take(len).map(Some)
    }

    pub(crate) fn nullable_string(&mut self, flexible: bool) -> Result<Option<String>, GroupError> {
        match self.raw(flexible, false)? {
            None => Ok(None),
            Some(b) => std::str::from_utf8(b)
                .map(|s| Some(s.to_string()))
                .map_err(|_| corrupt("string is not UTF-8")),
        }
    }

    pub(crate) fn string(&mut self, flexible: bool) -> Result<String, GroupError> {
        self.nullable_string(flexible)?
            .ok_or_else(|| corrupt("null in a non-nullable string"))
    }

    pub(crate) fn bytes(&mut self, flexible: bool) -> Result<Bytes, GroupError> {
        match self.raw(flexible, true)? {
            Some(b) => Ok(Bytes::copy_from_slice(b)),
            None => Err(corrupt("null in non-nullable bytes")),
        }
    }

    /// An array length, checked against the bytes left so a lying count fails here and never
    /// reaches an allocation: each element takes at least `element_bytes_min` bytes.
    pub(crate) fn array_len(
        &mut self,
        flexible: bool,
        element_bytes_min: usize,
    ) -> Result<usize, GroupError> {
        let len: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        let len = usize::try_from(len).map_err(|_| corrupt("null or negative array length"))?;
        if len.saturating_mul(element_bytes_min) > self.remaining() {
            return Err(corrupt("array length larger than the record"));
        }
        Ok(len)
    }

    /// Tagged fields of a flexible struct; calls `on_tag` for each with its payload.
    fn tagged_fields(
        &mut self,
        mut on_tag: impl FnMut(u32, &'a [u8]) -> Result<(), GroupError>,
    ) -> Result<(), GroupError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).map_err(|_| corrupt("tag size"))?;
            let data = self.take(size)?;
            on_tag(tag, data)?;
        }
        Ok(())
    }
}

/// Decodes a record key.
pub fn decode_key(key: &[u8]) -> Result<RecordKey, GroupError> {
    let mut r = Reader::new(key);
    let version = r.i16()?;
    let decoded = match version {
        0 | 1 => RecordKey::OffsetCommit {
            group: r.string(false)?,
            topic: r.string(false)?,
            partition: r.i32()?,
        },
        2 => RecordKey::GroupMetadata {
            group: r.string(false)?,
        },
        v if v >= 3 => return Ok(RecordKey::Other(v)),
        _ => return Err(corrupt("negative key version")),
    };
    if r.remaining() != 0 {
        return Err(corrupt("trailing bytes after the key"));
    }
    Ok(decoded)
}

/// Decodes an `OffsetCommitValue` of any version 0..=4 (newer versions: their known prefix).
pub fn decode_offset_commit_value(value: &[u8]) -> Result<OffsetCommitValue, GroupError> {
    let mut r = Reader::new(value);
    let version = r.i16()?;
    if version < 0 {
        return Err(corrupt("negative value version"));
    }
    let flexible = version >= 4;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string(flexible)?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 { r.i64()? } else { -1 };
    let mut topic_id = None;
    if flexible {
        r.tagged_fields(|tag, data| {
            if tag == 0 {
                let id: [u8; 16] = data.try_into().map_err(|_| corrupt("topic id size"))?;
                let id = Uuid::from_bytes(id);
                topic_id = (!id.is_nil()).then_some(id);
            }
            Ok(())
        })?;
    }
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
        topic_id,
    })
}

/// Decodes a `GroupMetadataValue` of any version 0..=4.
pub fn decode_group_metadata_value(value: &[u8]) -> Result<GroupMetadataValue, GroupError> {
    let mut r = Reader::new(value);
    let version = r.i16()?;
    if version < 0 {
        return Err(corrupt("negative value version"));
    }
    let flexible = version >= 4;
    let protocol_type = r.string(flexible)?;
    let generation = r.i32()?;
    let protocol = r.nullable_string(flexible)?;
    let leader = r.nullable_string(flexible)?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    // Smallest member: four empty strings, two ints, two empty byte arrays.
    let count = r.array_len(flexible, 8)?;
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.string(flexible)?;
        let group_instance_id = if version >= 3 {
            r.nullable_string(flexible)?
        } else {
            None
        };
        let client_id = r.string(flexible)?;
        let client_host = r.string(flexible)?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes(flexible)?;
        let assignment = r.bytes(flexible)?;
        if flexible {
            r.tagged_fields(|_, _| Ok(()))?;
        }
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    if flexible {
        r.tagged_fields(|_, _| Ok(()))?;
    }
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics of an embedded consumer protocol subscription (`ConsumerProtocolSubscription`),
/// read with the v0 prefix every version shares, as Kafka's `computeSubscribedTopics` does.
/// `None` when the bytes do not parse: the group then does not know its topics.
pub fn consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader::new(metadata);
    let version = r.i16().ok()?;
    if version < 0 {
        return None;
    }
    let count = r.array_len(false, 2).ok()?;
    let mut topics = Vec::new();
    for _ in 0..count {
        topics.push(r.string(false).ok()?);
    }
    Some(topics)
}
