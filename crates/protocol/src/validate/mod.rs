//! Pre-decode validation of request frames against Kafka's own message schemas.
//!
//! kafka-protocol 0.18 sizes vectors from counts on the wire (`Vec::with_capacity(n)`) before it
//! has read a single element, and an allocation failure aborts the process. So before a frame
//! reaches that decoder we walk it here, field by field, with the schema of its API and version:
//! every count and length is checked against the bytes actually left, nothing is allocated from a
//! wire number, and the walk returns an estimate of what the decoder will allocate so that the
//! caller can refuse requests over a memory budget.
//!
//! The walk follows the decoder's grammar exactly (same fields, same encodings, same tagged-field
//! handling), so a frame accepted here is read by the decoder along the same byte boundaries.

mod reader;
pub mod schema;
mod schemas;

use std::collections::HashMap;
use std::sync::OnceLock;

use kafka_protocol::messages::ApiKey;

use reader::Reader;
use schema::{Field, FieldType, MessageSpec, Scalar, SchemaError, StructId, Versions};

/// The result of a successful walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// Bytes of the request header at the start of the frame; the body starts here.
    pub header_len: usize,
    /// Upper estimate of the heap bytes kafka-protocol will allocate to decode this request,
    /// for the caller's per-request memory budget.
    pub decoded_bytes_estimate: usize,
}

/// Why a frame was refused. Every variant is caused by the client (or by a schema bug we refuse to
/// guess around) and maps to `INVALID_REQUEST` / closing the connection in the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    /// No schema for this API key.
    #[error("unknown api key {api_key}")]
    UnknownApi { api_key: i16 },
    /// The API exists but not in this version.
    #[error("api key {api_key} does not support version {api_version}")]
    UnsupportedVersion { api_key: i16, api_version: i16 },
    /// The frame ends before a field does.
    #[error("truncated at byte {offset}: need {needed} bytes, {remaining} left")]
    Truncated {
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    /// A string, bytes, records or tagged-field length is negative (other than the null marker),
    /// too long for what is left, or a tagged field's size does not match its content.
    #[error("bad length {length} for {field} at byte {offset}")]
    BadLength {
        field: String,
        offset: usize,
        length: i64,
    },
    /// An unsigned varint runs past 5 bytes or beyond `u32`.
    #[error("bad varint at byte {offset}")]
    BadVarint { offset: usize },
    /// An array count could not be backed by the bytes left.
    #[error("{field}: {count} elements of at least {min_element_bytes} bytes do not fit in {remaining} bytes (byte {offset})")]
    TooManyElements {
        field: String,
        offset: usize,
        count: u64,
        min_element_bytes: usize,
        remaining: usize,
    },
    /// `null` where the schema does not allow it in this version.
    #[error("{field} is null at byte {offset} but not nullable in this version")]
    UnexpectedNull { field: String, offset: usize },
    /// A nullable struct marker other than -1 (null) or 1 (present).
    #[error("{field}: bad presence marker {marker} at byte {offset}")]
    BadMarker {
        field: String,
        offset: usize,
        marker: i8,
    },
    /// A string that is not UTF-8 (the decoder would refuse it too).
    #[error("{field} at byte {offset} is not UTF-8")]
    BadUtf8 { field: String, offset: usize },
    /// A known tag sent in a version where that field is not tagged.
    #[error("tag {tag} is not valid in {name} v{version}")]
    BadTag {
        name: String,
        tag: u32,
        version: i16,
    },
    /// The header's own api key / version differ from the ones the caller dispatched on.
    #[error("header says api key {header_api_key} v{header_api_version}")]
    HeaderMismatch {
        header_api_key: i16,
        header_api_version: i16,
    },
    /// A checked-in schema failed to parse: our bug, reported rather than panicking.
    #[error("schema error: {0}")]
    Schema(String),
}

/// The longest string Kafka reads or writes, in bytes (`Short.MAX_VALUE`), for compact strings
/// as well as classic ones.
pub const STRING_BYTES_MAX: i64 = 0x7fff;

/// The parsed schemas, built once on first use.
struct Schemas {
    /// The request header schema.
    header: MessageSpec,
    /// Request schemas by API key.
    requests: HashMap<i16, MessageSpec>,
    /// The response header schema.
    response_header: MessageSpec,
    /// Response schemas by API key (answers from other nodes are walked like requests).
    responses: HashMap<i16, MessageSpec>,
}

fn build_schemas() -> Result<Schemas, SchemaError> {
    let by_key = |texts: &[&str]| -> Result<HashMap<i16, MessageSpec>, SchemaError> {
        let mut specs = HashMap::new();
        for text in texts {
            let spec = MessageSpec::parse(text)?;
            let key = spec
                .api_key
                .ok_or_else(|| SchemaError(format!("{} has no apiKey", spec.name)))?;
            if specs.insert(key, spec).is_some() {
                return Err(SchemaError(format!("api key {key} defined twice")));
            }
        }
        Ok(specs)
    };
    Ok(Schemas {
        header: MessageSpec::parse(schemas::REQUEST_HEADER)?,
        requests: by_key(schemas::REQUESTS)?,
        response_header: MessageSpec::parse(schemas::RESPONSE_HEADER)?,
        responses: by_key(schemas::RESPONSES)?,
    })
}

fn schemas() -> Result<&'static Schemas, ValidateError> {
    static SCHEMAS: OnceLock<Result<Schemas, SchemaError>> = OnceLock::new();
    SCHEMAS
        .get_or_init(build_schemas)
        .as_ref()
        .map_err(|e| ValidateError::Schema(e.0.clone()))
}

/// The schema of one request API, for tests and tools.
pub fn request_schema(api_key: i16) -> Result<&'static MessageSpec, ValidateError> {
    schemas()?
        .requests
        .get(&api_key)
        .ok_or(ValidateError::UnknownApi { api_key })
}

/// The schema of one response API, for tests and tools.
pub fn response_schema(api_key: i16) -> Result<&'static MessageSpec, ValidateError> {
    schemas()?
        .responses
        .get(&api_key)
        .ok_or(ValidateError::UnknownApi { api_key })
}

/// The request header schema, for tests and tools.
pub fn header_schema() -> Result<&'static MessageSpec, ValidateError> {
    Ok(&schemas()?.header)
}

/// The versions of `key` that `crate::request` can decode: kafka-protocol's range, except
/// ApiVersions, which runnel decodes itself up to Kafka 4.4's v5 (`crate::api_versions`).
pub fn decodable_versions(key: ApiKey) -> kafka_protocol::protocol::VersionRange {
    if key == ApiKey::ApiVersions {
        crate::api_versions::VERSIONS
    } else {
        key.valid_versions()
    }
}

/// Header version for a request: Kafka uses v2 for flexible request versions and v1 otherwise
/// (v0 only for ControlledShutdown v0, which Kafka 4 and kafka-protocol 0.18 no longer have).
/// We take kafka-protocol's own answer so that we walk exactly what its decoder will read; a test
/// checks it agrees with the schemas' flexible versions for every API and version.
pub fn request_header_version(api_key: i16, api_version: i16) -> Result<i16, ValidateError> {
    let key = ApiKey::try_from(api_key).map_err(|()| ValidateError::UnknownApi { api_key })?;
    Ok(key.request_header_version(api_version))
}

/// Walks one request frame (everything after the 4-byte length: header + body) using the schema
/// for `api_key`/`api_version`.
///
/// Checks every string, bytes, records and tagged-field length and every array count against the
/// bytes actually left, nullable markers, compact vs classic encodings, varints and UTF-8. Bytes
/// after the body are accepted, as Kafka (`AbstractRequest.parseRequest`) and kafka-protocol do.
/// Returns the header length and an estimate of what the decoder will allocate.
pub fn validate_request(
    api_key: i16,
    api_version: i16,
    frame: &[u8],
) -> Result<Validated, ValidateError> {
    let all = schemas()?;
    let body_spec = all
        .requests
        .get(&api_key)
        .ok_or(ValidateError::UnknownApi { api_key })?;
    let supported = ApiKey::try_from(api_key)
        .map(decodable_versions)
        .map_err(|()| ValidateError::UnknownApi { api_key })?;
    if !body_spec.valid.contains(api_version)
        || api_version < supported.min
        || api_version > supported.max
    {
        return Err(ValidateError::UnsupportedVersion {
            api_key,
            api_version,
        });
    }
    let header_version = request_header_version(api_key, api_version)?;
    let mut reader = Reader::new(frame);
    let mut header_walk = Walk::new(&all.header, header_version);
    header_walk.walk_struct(&mut reader, 0, 0)?;
    let header_len = reader.position();
    let mut head = Reader::new(frame);
    let (header_api_key, header_api_version) = (head.i16()?, head.i16()?);
    if header_api_key != api_key || header_api_version != api_version {
        return Err(ValidateError::HeaderMismatch {
            header_api_key,
            header_api_version,
        });
    }
    let mut body_walk = Walk::new(body_spec, api_version);
    body_walk.walk_struct(&mut reader, 0, 0)?;
    Ok(Validated {
        header_len,
        decoded_bytes_estimate: header_walk.estimate.saturating_add(body_walk.estimate),
    })
}

/// Walks one response frame from another node (everything after the 4-byte length: header +
/// body) with the schema of `api_key`/`api_version`, as [`validate_request`] walks requests:
/// a peer's answer reaches kafka-protocol's decoder only once every count and length in it is
/// backed by bytes. Bytes after the body are the caller's to refuse.
pub fn validate_response(
    api_key: i16,
    api_version: i16,
    frame: &[u8],
) -> Result<Validated, ValidateError> {
    let all = schemas()?;
    let key = ApiKey::try_from(api_key).map_err(|()| ValidateError::UnknownApi { api_key })?;
    let body_spec = all
        .responses
        .get(&api_key)
        .ok_or(ValidateError::UnknownApi { api_key })?;
    if !body_spec.valid.contains(api_version) {
        return Err(ValidateError::UnsupportedVersion {
            api_key,
            api_version,
        });
    }
    let mut reader = Reader::new(frame);
    let mut header_walk = Walk::new(
        &all.response_header,
        key.response_header_version(api_version),
    );
    header_walk.walk_struct(&mut reader, 0, 0)?;
    let header_len = reader.position();
    let mut body_walk = Walk::new(body_spec, api_version);
    body_walk.walk_struct(&mut reader, 0, 0)?;
    Ok(Validated {
        header_len,
        decoded_bytes_estimate: header_walk.estimate.saturating_add(body_walk.estimate),
    })
}

/// Size we charge for one scalar in a decoded struct. Real fields are 1 to 8 bytes; 8 covers
/// alignment padding too.
const SCALAR_DECODED_BYTES: usize = 8;
/// `Bytes` / `StrBytes` (and their `Option`): four words.
const BYTES_DECODED_BYTES: usize = 32;
/// A `Vec` header (pointer, capacity, length).
const VEC_DECODED_BYTES: usize = 24;
/// The `BTreeMap` of unknown tagged fields that every decoded struct carries.
const TAG_MAP_DECODED_BYTES: usize = 24;
/// One unknown tagged field kept by the decoder: a `BTreeMap` entry (key + `Bytes` value) plus its
/// share of a node. The value itself is a zero-copy slice of the frame.
const TAG_ENTRY_DECODED_BYTES: usize = 64;

/// One walk of one message at one version, accumulating the allocation estimate.
struct Walk<'s> {
    /// The schema being followed.
    spec: &'s MessageSpec,
    /// The message version.
    version: i16,
    /// Whether this version uses compact encodings and tagged fields.
    flexible: bool,
    /// Estimated heap bytes the decoder allocates (saturating).
    estimate: usize,
}

impl<'s> Walk<'s> {
    fn new(spec: &'s MessageSpec, version: i16) -> Walk<'s> {
        Walk {
            spec,
            version,
            flexible: spec.flexible.contains(version),
            estimate: 0,
        }
    }

    fn struct_fields(&self, id: StructId) -> Result<&'s [Field], ValidateError> {
        self.spec
            .struct_spec(id)
            .map(|s| s.fields.as_slice())
            .ok_or_else(|| {
                ValidateError::Schema(format!("{}: missing struct {id}", self.spec.name))
            })
    }

    /// Whether `field` is sent in the tagged section (not inline) in this version.
    fn is_tagged(&self, field: &Field) -> bool {
        self.flexible && field.tag.is_some() && field.tagged.contains(self.version)
    }

    /// Whether strings/bytes/arrays of `field` use the compact encoding in this version.
    fn compact(&self, field: &Field) -> bool {
        match field.flexible {
            Some(over) => over.contains(self.version),
            None => self.flexible,
        }
    }

    /// Walks one struct: its inline fields in order, then (flexible versions) its tagged section.
    /// `depth` is bounded by the schema (checked at parse time), never by the input.
    fn walk_struct(
        &mut self,
        r: &mut Reader<'_>,
        id: StructId,
        depth: usize,
    ) -> Result<(), ValidateError> {
        if depth > schema::STRUCT_DEPTH_MAX {
            return Err(ValidateError::Schema(format!(
                "{}: nesting beyond schema depth",
                self.spec.name
            )));
        }
        let fields = self.struct_fields(id)?;
        for field in fields {
            if field.versions.contains(self.version) && !self.is_tagged(field) {
                self.walk_field(r, field, depth)?;
            }
        }
        if self.flexible {
            self.walk_tagged(r, fields, depth)?;
        }
        Ok(())
    }

    /// The tagged-field section: a count, then (tag, size, value) triples. A tag the schema knows
    /// is walked as its field and must fill its size exactly (kafka-protocol reads known tags
    /// without looking at the size, so a mismatch would desynchronise it). An unknown tag is
    /// skipped by its size and kept by the decoder as a map entry, which we charge for.
    fn walk_tagged(
        &mut self,
        r: &mut Reader<'_>,
        fields: &'s [Field],
        depth: usize,
    ) -> Result<(), ValidateError> {
        let offset = r.position();
        let count = r.uvarint()?;
        // Each tagged field takes at least two bytes (tag and size varints).
        let remaining = r.remaining();
        if u64::from(count).saturating_mul(2) > remaining as u64 {
            return Err(ValidateError::TooManyElements {
                field: "tagged fields".to_owned(),
                offset,
                count: u64::from(count),
                min_element_bytes: 2,
                remaining,
            });
        }
        for _ in 0..count {
            let tag = r.uvarint()?;
            let size_offset = r.position();
            let size = r.uvarint()?;
            let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
            let value = r.take(size_usize).map_err(|_| ValidateError::BadLength {
                field: format!("tag {tag}"),
                offset: size_offset,
                length: i64::from(size),
            })?;
            match fields.iter().find(|f| f.tag == Some(tag)) {
                None => {
                    self.estimate = self.estimate.saturating_add(TAG_ENTRY_DECODED_BYTES);
                }
                Some(field) if field.versions.contains(self.version) && self.is_tagged(field) => {
                    let mut inner = Reader::new(value);
                    self.walk_field(&mut inner, field, depth)?;
                    if inner.remaining() != 0 {
                        return Err(ValidateError::BadLength {
                            field: field.name.clone(),
                            offset: size_offset,
                            length: i64::from(size),
                        });
                    }
                }
                Some(_) => {
                    return Err(ValidateError::BadTag {
                        name: self.spec.name.clone(),
                        tag,
                        version: self.version,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads a length or count prefix. Returns `None` for null, else the non-negative value.
    /// Classic encodings use a signed int where -1 is null; compact ones an unsigned varint of
    /// value + 1 where 0 is null. `is_string`: a string's length (an int16 in the classic
    /// encoding, at most [`STRING_BYTES_MAX`] in both).
    fn length(
        &self,
        r: &mut Reader<'_>,
        field: &Field,
        is_string: bool,
        nullable: bool,
    ) -> Result<Option<u64>, ValidateError> {
        let offset = r.position();
        let raw: i64 = if self.compact(field) {
            i64::from(r.uvarint()?) - 1
        } else if is_string {
            i64::from(r.i16()?)
        } else {
            i64::from(r.i32()?)
        };
        match raw {
            -1 if nullable => Ok(None),
            -1 => Err(ValidateError::UnexpectedNull {
                field: field.name.clone(),
                offset,
            }),
            n if n < 0 => Err(ValidateError::BadLength {
                field: field.name.clone(),
                offset,
                length: n,
            }),
            // Kafka's generated readers refuse a compact string longer than 0x7fff bytes
            // ("string field had invalid length"): every string on the wire fits an int16
            // length, whichever encoding carried it, and code behind the decoder (the
            // `__consumer_offsets` record encoders, for one) relies on that bound.
            n if is_string && n > STRING_BYTES_MAX => Err(ValidateError::BadLength {
                field: field.name.clone(),
                offset,
                length: n,
            }),
            n => Ok(u64::try_from(n).ok()),
        }
    }

    fn walk_field(
        &mut self,
        r: &mut Reader<'_>,
        field: &'s Field,
        depth: usize,
    ) -> Result<(), ValidateError> {
        match field.ty {
            FieldType::One(scalar) => self.walk_scalar(r, field, scalar, depth),
            FieldType::Array(elem) => {
                let offset = r.position();
                let nullable = field.nullable.contains(self.version);
                let Some(count) = self.length(r, field, false, nullable)? else {
                    return Ok(());
                };
                // Kafka's own rule (count <= remaining) plus the stricter one that every element
                // needs its minimum encoded size; the max(1) keeps empty structs from passing.
                let min = self.min_scalar_size(field, elem, depth)?.max(1);
                let remaining = r.remaining();
                if count.saturating_mul(min as u64) > remaining as u64 {
                    return Err(ValidateError::TooManyElements {
                        field: field.name.clone(),
                        offset,
                        count,
                        min_element_bytes: min,
                        remaining,
                    });
                }
                let per_element = self.decoded_scalar_size(elem, field.nullable, 0)?;
                // count <= remaining, so this is bounded by frame size times a schema constant.
                let count_usize = usize::try_from(count).unwrap_or(usize::MAX);
                self.estimate = self
                    .estimate
                    .saturating_add(count_usize.saturating_mul(per_element));
                for _ in 0..count {
                    self.walk_scalar_element(r, field, elem, depth)?;
                }
                Ok(())
            }
        }
    }

    /// An array element: like a scalar, except that struct elements have no presence marker and
    /// elements are never null (`nullableVersions` is about the array itself; kafka-protocol
    /// refuses a null element, as Kafka does).
    fn walk_scalar_element(
        &mut self,
        r: &mut Reader<'_>,
        field: &'s Field,
        elem: Scalar,
        depth: usize,
    ) -> Result<(), ValidateError> {
        match elem {
            Scalar::Struct(id) => self.walk_struct(r, id, depth + 1),
            other => self.walk_value(r, field, other, depth, false),
        }
    }

    fn walk_scalar(
        &mut self,
        r: &mut Reader<'_>,
        field: &'s Field,
        scalar: Scalar,
        depth: usize,
    ) -> Result<(), ValidateError> {
        let nullable = field.nullable.contains(self.version);
        self.walk_value(r, field, scalar, depth, nullable)
    }

    /// One value of `scalar`; `nullable` says whether the null marker is allowed here.
    fn walk_value(
        &mut self,
        r: &mut Reader<'_>,
        field: &'s Field,
        scalar: Scalar,
        depth: usize,
        nullable: bool,
    ) -> Result<(), ValidateError> {
        match scalar {
            Scalar::Int8 | Scalar::Bool => r.take(1).map(drop),
            Scalar::Int16 | Scalar::Uint16 => r.take(2).map(drop),
            Scalar::Int32 | Scalar::Uint32 => r.take(4).map(drop),
            Scalar::Int64 | Scalar::Float64 => r.take(8).map(drop),
            Scalar::Uuid => r.take(16).map(drop),
            Scalar::String => {
                let offset = r.position();
                let Some(len) = self.length(r, field, true, nullable)? else {
                    return Ok(());
                };
                let bytes = self.take_len(r, field, offset, len)?;
                if std::str::from_utf8(bytes).is_err() {
                    return Err(ValidateError::BadUtf8 {
                        field: field.name.clone(),
                        offset,
                    });
                }
                // Some decoders copy strings into a `String`; charge the bytes.
                self.estimate = self.estimate.saturating_add(bytes.len());
                Ok(())
            }
            Scalar::Bytes | Scalar::Records => {
                let offset = r.position();
                let Some(len) = self.length(r, field, false, nullable)? else {
                    return Ok(());
                };
                // Bytes and records decode to zero-copy slices of the frame: no charge.
                self.take_len(r, field, offset, len).map(drop)
            }
            Scalar::Struct(id) => {
                if nullable {
                    let offset = r.position();
                    match r.i8()? {
                        -1 => return Ok(()),
                        1 => {}
                        marker => {
                            return Err(ValidateError::BadMarker {
                                field: field.name.clone(),
                                offset,
                                marker,
                            });
                        }
                    }
                }
                self.walk_struct(r, id, depth + 1)
            }
        }
    }

    fn take_len<'a>(
        &self,
        r: &mut Reader<'a>,
        field: &Field,
        offset: usize,
        len: u64,
    ) -> Result<&'a [u8], ValidateError> {
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        r.take(len_usize).map_err(|_| ValidateError::BadLength {
            field: field.name.clone(),
            offset,
            length: i64::try_from(len).unwrap_or(i64::MAX),
        })
    }

    /// Minimum encoded size of one value of `scalar` in this version (an array element when
    /// called from an array; struct elements carry no presence marker).
    fn min_scalar_size(
        &self,
        field: &Field,
        scalar: Scalar,
        depth: usize,
    ) -> Result<usize, ValidateError> {
        Ok(match scalar {
            Scalar::Int8 | Scalar::Bool => 1,
            Scalar::Int16 | Scalar::Uint16 => 2,
            Scalar::Int32 | Scalar::Uint32 => 4,
            Scalar::Int64 | Scalar::Float64 => 8,
            Scalar::Uuid => 16,
            Scalar::String => {
                if self.compact(field) {
                    1
                } else {
                    2
                }
            }
            Scalar::Bytes | Scalar::Records => {
                if self.compact(field) {
                    1
                } else {
                    4
                }
            }
            Scalar::Struct(id) => self.min_struct_size(id, depth + 1)?,
        })
    }

    fn min_struct_size(&self, id: StructId, depth: usize) -> Result<usize, ValidateError> {
        if depth > schema::STRUCT_DEPTH_MAX {
            return Err(ValidateError::Schema(format!(
                "{}: nesting beyond schema depth",
                self.spec.name
            )));
        }
        let mut size = usize::from(self.flexible);
        for field in self.struct_fields(id)? {
            if !field.versions.contains(self.version) || self.is_tagged(field) {
                continue;
            }
            let nullable = field.nullable.contains(self.version);
            size += match field.ty {
                FieldType::Array(_) => {
                    if self.compact(field) {
                        1
                    } else {
                        4
                    }
                }
                FieldType::One(Scalar::Struct(_)) if nullable => 1,
                FieldType::One(scalar) => self.min_scalar_size(field, scalar, depth)?,
            };
        }
        Ok(size)
    }

    /// Heap/inline bytes one decoded value of `scalar` takes in kafka-protocol's structs. Decoded
    /// structs hold every field of every version, so all fields count, whatever the version.
    fn decoded_scalar_size(
        &self,
        scalar: Scalar,
        nullable: Versions,
        depth: usize,
    ) -> Result<usize, ValidateError> {
        Ok(match scalar {
            Scalar::Uuid => 16,
            Scalar::String | Scalar::Bytes | Scalar::Records => BYTES_DECODED_BYTES,
            Scalar::Struct(id) => {
                if depth > schema::STRUCT_DEPTH_MAX {
                    return Err(ValidateError::Schema(format!(
                        "{}: nesting beyond schema depth",
                        self.spec.name
                    )));
                }
                let mut size = TAG_MAP_DECODED_BYTES
                    + if nullable == Versions::NONE {
                        0
                    } else {
                        SCALAR_DECODED_BYTES
                    };
                for field in self.struct_fields(id)? {
                    size += match field.ty {
                        FieldType::Array(_) => VEC_DECODED_BYTES,
                        FieldType::One(inner) => {
                            self.decoded_scalar_size(inner, field.nullable, depth + 1)?
                        }
                    };
                }
                size
            }
            _ => SCALAR_DECODED_BYTES,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves every checked-in schema parses and each ApiKey of kafka-protocol has exactly its
    // version range, so the validator and the decoder agree on what exists.
    #[test]
    fn schemas_match_kafka_protocol_versions() {
        let all = schemas().unwrap();
        for key in ApiKey::iter() {
            let spec = all
                .requests
                .get(&(key as i16))
                .unwrap_or_else(|| panic!("no schema for {key:?}"));
            let range = decodable_versions(key);
            let hi = spec.valid.hi + i16::from(spec.latest_unstable);
            assert_eq!((spec.valid.lo, hi), (range.min, range.max), "{}", spec.name);
        }
        assert_eq!(all.requests.len(), ApiKey::iter().count());
    }

    // Proves the header version kafka-protocol uses is Kafka's rule: flexible => v2, else v1.
    #[test]
    fn header_version_follows_flexible_versions() {
        for key in ApiKey::iter() {
            let spec = request_schema(key as i16).unwrap();
            for v in spec.valid.lo..=spec.valid.hi {
                let expected = if spec.flexible.contains(v) { 2 } else { 1 };
                assert_eq!(
                    request_header_version(key as i16, v).unwrap(),
                    expected,
                    "{key:?} v{v}"
                );
            }
        }
    }

    // Proves every response schema parses and has kafka-protocol's version range (ApiVersions
    // aside: runnel answers it itself and never asks a peer for it).
    #[test]
    fn response_schemas_match_kafka_protocol_versions() {
        let all = schemas().unwrap();
        assert_eq!(all.responses.len(), ApiKey::iter().count());
        for key in ApiKey::iter().filter(|k| *k != ApiKey::ApiVersions) {
            let spec = all
                .responses
                .get(&(key as i16))
                .unwrap_or_else(|| panic!("no response schema for {key:?}"));
            let range = key.valid_versions();
            let hi = spec.valid.hi + i16::from(spec.latest_unstable);
            assert_eq!((spec.valid.lo, hi), (range.min, range.max), "{}", spec.name);
        }
    }

    // Proves a DescribeQuorum v2 answer claiming 2^31-1 topics in 4 bytes is refused before
    // kafka-protocol would size a vector from it.
    #[test]
    fn response_with_a_huge_count_is_refused() {
        // correlation id, empty tagged fields (v1 header), error code 0, null error message
        // (compact: 0), then the topics count as a varint of 2^31.
        let mut frame = vec![0, 0, 0, 7, 0, 0, 0, 0];
        frame.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]);
        let err = validate_response(ApiKey::DescribeQuorum as i16, 2, &frame).unwrap_err();
        assert!(
            matches!(
                err,
                ValidateError::TooManyElements { .. } | ValidateError::BadVarint { .. }
            ),
            "{err}"
        );
    }

    // Proves the Metadata v1 body `7f ff ff ff` (2^31-1 topics in 4 bytes) is refused.
    #[test]
    fn metadata_huge_count() {
        let mut frame = vec![0, 3, 0, 1, 0, 0, 0, 7, 0, 0];
        frame.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
        let err = validate_request(3, 1, &frame).unwrap_err();
        assert!(
            matches!(err, ValidateError::TooManyElements { .. }),
            "{err}"
        );
    }
}
