//! Kafka 4.1's `ConsumerGroup*` records in `__consumer_offsets`, byte for byte.
//!
//! A key is `version: int16` (the record type: 3..=8, 16) followed by the key fields in the
//! non-flexible encoding (int16-length strings). A value is `version: int16` (always 0 today)
//! followed by the value fields in the flexible encoding (compact strings and arrays, unsigned
//! varint lengths, tagged fields). Decoding reads bytes from disk: every length is checked
//! against the bytes left before anything is allocated, and nothing here panics.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// A member's partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// `ConsumerGroupMetadataKey` (3).
pub const METADATA_KEY_VERSION: i16 = 3;
/// `ConsumerGroupPartitionMetadataKey` (4): no longer written since 4.1 (KIP-1101), still read.
pub const PARTITION_METADATA_KEY_VERSION: i16 = 4;
/// `ConsumerGroupMemberMetadataKey` (5).
pub const MEMBER_METADATA_KEY_VERSION: i16 = 5;
/// `ConsumerGroupTargetAssignmentMetadataKey` (6).
pub const TARGET_ASSIGNMENT_METADATA_KEY_VERSION: i16 = 6;
/// `ConsumerGroupTargetAssignmentMemberKey` (7).
pub const TARGET_ASSIGNMENT_MEMBER_KEY_VERSION: i16 = 7;
/// `ConsumerGroupCurrentMemberAssignmentKey` (8).
pub const CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION: i16 = 8;
/// `ConsumerGroupRegularExpressionKey` (16).
pub const REGULAR_EXPRESSION_KEY_VERSION: i16 = 16;

/// Value schema version written for every record type (all are at version 0 in 4.1).
const VALUE_VERSION: i16 = 0;

/// Which record a key names, with its key fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Metadata { group_id: String },
    PartitionMetadata { group_id: String },
    MemberMetadata { group_id: String, member_id: String },
    TargetAssignmentMetadata { group_id: String },
    TargetAssignmentMember { group_id: String, member_id: String },
    CurrentMemberAssignment { group_id: String, member_id: String },
    RegularExpression { group_id: String, regex: String },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            RecordKey::Metadata { group_id }
            | RecordKey::PartitionMetadata { group_id }
            | RecordKey::MemberMetadata { group_id, .. }
            | RecordKey::TargetAssignmentMetadata { group_id }
            | RecordKey::TargetAssignmentMember { group_id, .. }
            | RecordKey::CurrentMemberAssignment { group_id, .. }
            | RecordKey::RegularExpression { group_id, .. } => group_id,
        }
    }

    fn version(&self) -> i16 {
        match self {
            RecordKey::Metadata { .. } => METADATA_KEY_VERSION,
            RecordKey::PartitionMetadata { .. } => PARTITION_METADATA_KEY_VERSION,
            RecordKey::MemberMetadata { .. } => MEMBER_METADATA_KEY_VERSION,
            RecordKey::TargetAssignmentMetadata { .. } => TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
            RecordKey::TargetAssignmentMember { .. } => TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
            RecordKey::CurrentMemberAssignment { .. } => CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
            RecordKey::RegularExpression { .. } => REGULAR_EXPRESSION_KEY_VERSION,
        }
    }

    /// Key bytes: version + non-flexible fields.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(self.version());
        match self {
            RecordKey::Metadata { group_id }
            | RecordKey::PartitionMetadata { group_id }
            | RecordKey::TargetAssignmentMetadata { group_id } => {
                put_legacy_string(&mut buf, group_id)
            }
            RecordKey::MemberMetadata {
                group_id,
                member_id,
            }
            | RecordKey::TargetAssignmentMember {
                group_id,
                member_id,
            }
            | RecordKey::CurrentMemberAssignment {
                group_id,
                member_id,
            } => {
                put_legacy_string(&mut buf, group_id);
                put_legacy_string(&mut buf, member_id);
            }
            RecordKey::RegularExpression { group_id, regex } => {
                put_legacy_string(&mut buf, group_id);
                put_legacy_string(&mut buf, regex);
            }
        }
        buf.freeze()
    }

    /// Parses key bytes. `Ok(None)` when the key is some other record type (offsets, classic
    /// groups, share and streams groups); `Err` when it is one of ours but malformed.
    pub fn decode(bytes: &[u8]) -> Result<Option<RecordKey>, String> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        let key = match version {
            METADATA_KEY_VERSION => RecordKey::Metadata {
                group_id: r.legacy_string()?,
            },
            PARTITION_METADATA_KEY_VERSION => RecordKey::PartitionMetadata {
                group_id: r.legacy_string()?,
            },
            MEMBER_METADATA_KEY_VERSION => RecordKey::MemberMetadata {
                group_id: r.legacy_string()?,
                member_id: r.legacy_string()?,
            },
            TARGET_ASSIGNMENT_METADATA_KEY_VERSION => RecordKey::TargetAssignmentMetadata {
                group_id: r.legacy_string()?,
            },
            TARGET_ASSIGNMENT_MEMBER_KEY_VERSION => RecordKey::TargetAssignmentMember {
                group_id: r.legacy_string()?,
                member_id: r.legacy_string()?,
            },
            CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION => RecordKey::CurrentMemberAssignment {
                group_id: r.legacy_string()?,
                member_id: r.legacy_string()?,
            },
            REGULAR_EXPRESSION_KEY_VERSION => RecordKey::RegularExpression {
                group_id: r.legacy_string()?,
                regex: r.legacy_string()?,
            },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(key))
    }
}

/// `ConsumerGroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataValue {
    /// The group epoch.
    pub epoch: i32,
    /// Tagged field 0 (4.1, KIP-1101): hash of the subscribed topics' metadata.
    pub metadata_hash: i64,
}

/// One topic of `ConsumerGroupPartitionMetadataValue` (read for compatibility, never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadataTopic {
    pub topic_id: Uuid,
    pub topic_name: String,
    pub num_partitions: i32,
}

/// `ConsumerGroupMemberMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Tagged field 0: set for a member that speaks the classic protocol (JoinGroup /
    /// SyncGroup / Heartbeat) inside a consumer group, after an online migration.
    pub classic: Option<ClassicMemberMetadata>,
}

/// `ConsumerGroupMemberMetadataValue.ClassicMemberMetadata`: what a classic member sent in its
/// JoinGroup, kept so the group can answer its SyncGroup and turn back into a classic group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    /// (name, metadata) in the member's order of preference; never empty.
    pub supported_protocols: Vec<(String, Bytes)>,
}

/// `ConsumerGroupCurrentMemberAssignmentValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    /// `MemberState` value: 0 stable, 1 unrevoked partitions, 2 unreleased partitions, 127 unknown.
    pub state: i8,
    pub assigned_partitions: Assignment,
    pub partitions_pending_revocation: Assignment,
}

/// `ConsumerGroupRegularExpressionValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegexValue {
    pub topics: Vec<String>,
    /// Kafka stores the metadata image offset the regex was resolved against.
    pub version: i64,
    pub timestamp_ms: i64,
}

/// A record value, typed by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordValue {
    Metadata(MetadataValue),
    PartitionMetadata(Vec<PartitionMetadataTopic>),
    MemberMetadata(MemberMetadataValue),
    TargetAssignmentMetadata { assignment_epoch: i32 },
    TargetAssignmentMember(Assignment),
    CurrentMemberAssignment(CurrentAssignmentValue),
    RegularExpression(RegexValue),
}

impl RecordValue {
    /// Value bytes: version + flexible fields.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(VALUE_VERSION);
        match self {
            RecordValue::Metadata(v) => {
                buf.put_i32(v.epoch);
                if v.metadata_hash == 0 {
                    put_uvarint(&mut buf, 0);
                } else {
                    put_uvarint(&mut buf, 1);
                    put_uvarint(&mut buf, 0); // tag
                    put_uvarint(&mut buf, 8); // size
                    buf.put_i64(v.metadata_hash);
                }
            }
            RecordValue::PartitionMetadata(topics) => {
                put_len(&mut buf, topics.len());
                for t in topics {
                    buf.put_slice(t.topic_id.as_bytes());
                    put_compact_string(&mut buf, &t.topic_name);
                    buf.put_i32(t.num_partitions);
                    put_len(&mut buf, 0); // PartitionMetadata: unused since 4.0
                    put_uvarint(&mut buf, 0);
                }
                put_uvarint(&mut buf, 0);
            }
            RecordValue::MemberMetadata(v) => {
                put_compact_nullable_string(&mut buf, v.instance_id.as_deref());
                put_compact_nullable_string(&mut buf, v.rack_id.as_deref());
                put_compact_string(&mut buf, &v.client_id);
                put_compact_string(&mut buf, &v.client_host);
                put_len(&mut buf, v.subscribed_topic_names.len());
                for name in &v.subscribed_topic_names {
                    put_compact_string(&mut buf, name);
                }
                put_compact_nullable_string(&mut buf, v.subscribed_topic_regex.as_deref());
                buf.put_i32(v.rebalance_timeout_ms);
                put_compact_nullable_string(&mut buf, v.server_assignor.as_deref());
                match &v.classic {
                    None => put_uvarint(&mut buf, 0),
                    Some(classic) => {
                        let mut field = BytesMut::new();
                        field.put_i32(classic.session_timeout_ms);
                        put_len(&mut field, classic.supported_protocols.len());
                        for (name, metadata) in &classic.supported_protocols {
                            put_compact_string(&mut field, name);
                            put_len(&mut field, metadata.len());
                            field.put_slice(metadata);
                            put_uvarint(&mut field, 0);
                        }
                        put_uvarint(&mut field, 0);
                        put_uvarint(&mut buf, 1);
                        put_uvarint(&mut buf, 0); // tag
                        put_len_raw(&mut buf, field.len());
                        buf.put_slice(&field);
                    }
                }
            }
            RecordValue::TargetAssignmentMetadata { assignment_epoch } => {
                buf.put_i32(*assignment_epoch);
                put_uvarint(&mut buf, 0);
            }
            RecordValue::TargetAssignmentMember(a) => {
                put_assignment(&mut buf, a);
                put_uvarint(&mut buf, 0);
            }
            RecordValue::CurrentMemberAssignment(v) => {
                buf.put_i32(v.member_epoch);
                buf.put_i32(v.previous_member_epoch);
                buf.put_i8(v.state);
                put_assignment(&mut buf, &v.assigned_partitions);
                put_assignment(&mut buf, &v.partitions_pending_revocation);
                put_uvarint(&mut buf, 0);
            }
            RecordValue::RegularExpression(v) => {
                put_len(&mut buf, v.topics.len());
                for t in &v.topics {
                    put_compact_string(&mut buf, t);
                }
                buf.put_i64(v.version);
                buf.put_i64(v.timestamp_ms);
                put_uvarint(&mut buf, 0);
            }
        }
        buf.freeze()
    }

    /// Parses the value of a record whose key is `key`.
    pub fn decode(key: &RecordKey, bytes: &[u8]) -> Result<RecordValue, String> {
        let mut r = Reader::new(bytes);
        let version = r.i16()?;
        if version != VALUE_VERSION {
            return Err(format!("unsupported value version {version} for {key:?}"));
        }
        let value = match key {
            RecordKey::Metadata { .. } => {
                let epoch = r.i32()?;
                let mut metadata_hash = 0;
                r.tagged_fields(|tag, field| {
                    if tag == 0 {
                        metadata_hash = field.i64()?;
                    }
                    Ok(())
                })?;
                RecordValue::Metadata(MetadataValue {
                    epoch,
                    metadata_hash,
                })
            }
            RecordKey::PartitionMetadata { .. } => {
                let count = r.compact_len()?;
                let mut topics = Vec::new();
                for _ in 0..count {
                    let topic_id = r.uuid()?;
                    let topic_name = r.compact_string()?;
                    let num_partitions = r.i32()?;
                    let racks = r.compact_len()?;
                    for _ in 0..racks {
                        r.i32()?;
                        let n = r.compact_len()?;
                        for _ in 0..n {
                            r.compact_string()?;
                        }
                        r.tagged_fields(|_, _| Ok(()))?;
                    }
                    r.tagged_fields(|_, _| Ok(()))?;
                    topics.push(PartitionMetadataTopic {
                        topic_id,
                        topic_name,
                        num_partitions,
                    });
                }
                r.tagged_fields(|_, _| Ok(()))?;
                RecordValue::PartitionMetadata(topics)
            }
            RecordKey::MemberMetadata { .. } => {
                let instance_id = r.compact_nullable_string()?;
                let rack_id = r.compact_nullable_string()?;
                let client_id = r.compact_string()?;
                let client_host = r.compact_string()?;
                let count = r.compact_len()?;
                let mut subscribed_topic_names = Vec::new();
                for _ in 0..count {
                    subscribed_topic_names.push(r.compact_string()?);
                }
                let subscribed_topic_regex = r.compact_nullable_string()?;
                let rebalance_timeout_ms = r.i32()?;
                let server_assignor = r.compact_nullable_string()?;
                let mut classic = None;
                r.tagged_fields(|tag, field| {
                    if tag == 0 {
                        classic = Some(field.classic_member_metadata()?);
                    }
                    Ok(())
                })?;
                RecordValue::MemberMetadata(MemberMetadataValue {
                    instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    subscribed_topic_names,
                    subscribed_topic_regex,
                    rebalance_timeout_ms,
                    server_assignor,
                    classic,
                })
            }
            RecordKey::TargetAssignmentMetadata { .. } => {
                let assignment_epoch = r.i32()?;
                r.tagged_fields(|_, _| Ok(()))?;
                RecordValue::TargetAssignmentMetadata { assignment_epoch }
            }
            RecordKey::TargetAssignmentMember { .. } => {
                let a = r.assignment()?;
                r.tagged_fields(|_, _| Ok(()))?;
                RecordValue::TargetAssignmentMember(a)
            }
            RecordKey::CurrentMemberAssignment { .. } => {
                let member_epoch = r.i32()?;
                let previous_member_epoch = r.i32()?;
                let state = r.i8()?;
                let assigned_partitions = r.assignment()?;
                let partitions_pending_revocation = r.assignment()?;
                r.tagged_fields(|_, _| Ok(()))?;
                RecordValue::CurrentMemberAssignment(CurrentAssignmentValue {
                    member_epoch,
                    previous_member_epoch,
                    state,
                    assigned_partitions,
                    partitions_pending_revocation,
                })
            }
            RecordKey::RegularExpression { .. } => {
                let count = r.compact_len()?;
                let mut topics = Vec::new();
                for _ in 0..count {
                    topics.push(r.compact_string()?);
                }
                let version = r.i64()?;
                let timestamp_ms = r.i64()?;
                r.tagged_fields(|_, _| Ok(()))?;
                RecordValue::RegularExpression(RegexValue {
                    topics,
                    version,
                    timestamp_ms,
                })
            }
        };
        r.finish()?;
        Ok(value)
    }
}

/// Builds the `(key, value)` pair the coordinator appends.
pub fn record(key: &RecordKey, value: Option<&RecordValue>) -> super::super::Record {
    (key.encode(), value.map(RecordValue::encode))
}

fn put_legacy_string(buf: &mut BytesMut, s: &str) {
    // Group ids, member ids and regexes are bounded by the request validator (0x7fff bytes,
    // compact strings included), so a longer string here is our bug.
    let len = i16::try_from(s.len()).expect("key string longer than i16::MAX"); // ok: bounded above
    buf.put_i16(len);
    buf.put_slice(s.as_bytes());
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_len(buf: &mut BytesMut, len: usize) {
    let len = u32::try_from(len).expect("array longer than u32::MAX - 1"); // ok: arrays come from frames of at most 100 MiB
    put_uvarint(buf, len + 1);
}

/// A tagged field's size: a plain varint, unlike compact lengths.
fn put_len_raw(buf: &mut BytesMut, len: usize) {
    let len = u32::try_from(len).expect("tagged field longer than u32::MAX"); // ok: built from bounded request fields
    put_uvarint(buf, len);
}

fn put_compact_string(buf: &mut BytesMut, s: &str) {
    put_len(buf, s.len());
    buf.put_slice(s.as_bytes());
}

fn put_compact_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(buf, 0),
        Some(s) => put_compact_string(buf, s),
    }
}

fn put_assignment(buf: &mut BytesMut, a: &Assignment) {
    put_len(buf, a.len());
    for (topic_id, partitions) in a {
        buf.put_slice(topic_id.as_bytes());
        put_len(buf, partitions.len());
        for p in partitions {
            buf.put_i32(*p);
        }
        put_uvarint(buf, 0);
    }
}

/// A bounds-checked cursor over record bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "truncated: need {n} bytes, {} left",
                self.bytes.len()
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i8(&mut self) -> Result<i8, String> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn uuid(&mut self) -> Result<Uuid, String> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn uvarint(&mut self) -> Result<u32, String> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.array::<1>()?[0];
            let bits = u32::from(b & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err("varint overflows u32".into());
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 5 bytes".into())
    }

    /// A compact length: `None` for null (0), else the count, refused when it exceeds the
    /// bytes left (every element takes at least one byte), so no count can force an allocation.
    fn compact_nullable_len(&mut self) -> Result<Option<usize>, String> {
        let raw = self.uvarint()?;
        if raw == 0 {
            return Ok(None);
        }
        let len = (raw - 1) as usize;
        if len > self.bytes.len() {
            return Err(format!(
                "length {len} exceeds the {} bytes left",
                self.bytes.len()
            ));
        }
        Ok(Some(len))
    }

    fn compact_len(&mut self) -> Result<usize, String> {
        self.compact_nullable_len()?
            .ok_or_else(|| "null where a non-nullable array or string was expected".to_string())
    }

    fn compact_nullable_string(&mut self) -> Result<Option<String>, String> {
        match self.compact_nullable_len()? {
            None => Ok(None),
            Some(len) => {
                let raw = self.take(len)?;
                String::from_utf8(raw.to_vec())
                    .map(Some)
                    .map_err(|_| "string is not UTF-8".to_string())
            }
        }
    }

    fn compact_string(&mut self) -> Result<String, String> {
        self.compact_nullable_string()?
            .ok_or_else(|| "null where a non-nullable string was expected".to_string())
    }

    fn legacy_string(&mut self) -> Result<String, String> {
        let len = self.i16()?;
        let len = usize::try_from(len).map_err(|_| "null or negative key string".to_string())?;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| "key string is not UTF-8".to_string())
    }

    fn assignment(&mut self) -> Result<Assignment, String> {
        let topics = self.compact_len()?;
        let mut out = Assignment::new();
        for _ in 0..topics {
            let topic_id = self.uuid()?;
            let count = self.compact_len()?;
            let mut partitions = BTreeSet::new();
            for _ in 0..count {
                partitions.insert(self.i32()?);
            }
            self.tagged_fields(|_, _| Ok(()))?;
            out.entry(topic_id).or_default().extend(partitions);
        }
        Ok(out)
    }

    fn compact_bytes(&mut self) -> Result<Bytes, String> {
        let len = self.compact_len()?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    /// `ClassicMemberMetadata` (tagged field 0 of the member metadata value).
    fn classic_member_metadata(&mut self) -> Result<ClassicMemberMetadata, String> {
        let session_timeout_ms = self.i32()?;
        let count = self.compact_len()?;
        let mut supported_protocols = Vec::new();
        for _ in 0..count {
            let name = self.compact_string()?;
            let metadata = self.compact_bytes()?;
            self.tagged_fields(|_, _| Ok(()))?;
            supported_protocols.push((name, metadata));
        }
        self.tagged_fields(|_, _| Ok(()))?;
        if supported_protocols.is_empty() {
            return Err("a classic member without protocols".into());
        }
        Ok(ClassicMemberMetadata {
            session_timeout_ms,
            supported_protocols,
        })
    }

    /// Reads a tagged-field section, handing each field's bytes to `on_field`.
    fn tagged_fields(
        &mut self,
        mut on_field: impl FnMut(u32, &mut Reader<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        let count = self.uvarint()?;
        if count as usize > self.bytes.len() {
            return Err("tagged field count exceeds the bytes left".into());
        }
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let mut field = Reader::new(self.take(size)?);
            on_field(tag, &mut field)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.bytes.len()))
        }
    }
}
