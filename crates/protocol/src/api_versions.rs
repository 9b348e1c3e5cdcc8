//! ApiVersions requests of every version Kafka 4.4 speaks (0-5), decoded and encoded here
//! because kafka-protocol 0.18 stops at v4.
//!
//! v5 (KIP-1242) adds `ClusterId` (nullable compact string) and `NodeId` (int32) after the
//! client software fields, so a client can tell a broker which broker of which cluster it means
//! to reach and learn of a misrouted connection (REBOOTSTRAP_REQUIRED). Every Kafka 4.4 Java
//! client opens with v5; without it each connection costs a KIP-511 fallback round trip.
//! The v5 response has exactly the fields of v4, so responses are encoded by kafka-protocol at
//! v4 ([`response_encoding_version`]).
//!
//! Like kafka-protocol's decoders, [`ApiVersionsRequest::decode`] expects bytes the validator
//! already walked against `schemas/kafka-4.4/ApiVersionsRequest.json`: it sizes nothing from the
//! wire, and a short buffer is an error, never a panic.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{StrBytes, VersionRange};

/// The ApiVersions request versions runnel decodes (Kafka 4.4's range).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// The first version carrying `ClusterId` and `NodeId` (KIP-1242).
pub const CLUSTER_CHECK_VERSION_MIN: i16 = 5;

/// An ApiVersions request of any version 0-5; fields absent from a version hold their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiVersionsRequest {
    /// The client's software name (v3+), checked against Kafka's pattern by the handler.
    pub client_software_name: StrBytes,
    /// The client's software version (v3+).
    pub client_software_version: StrBytes,
    /// The cluster the client means to reach (v5+); `None` when it does not know yet.
    pub cluster_id: Option<StrBytes>,
    /// The node the client means to reach (v5+); -1 when it does not know.
    pub node_id: i32,
    /// Tagged fields this version does not define, kept as kafka-protocol keeps them.
    pub unknown_tagged_fields: BTreeMap<i32, Bytes>,
}

impl Default for ApiVersionsRequest {
    fn default() -> Self {
        ApiVersionsRequest {
            client_software_name: StrBytes::default(),
            client_software_version: StrBytes::default(),
            cluster_id: None,
            node_id: -1,
            unknown_tagged_fields: BTreeMap::new(),
        }
    }
}

/// Why an ApiVersions body could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum ApiVersionsCodecError {
    #[error("ApiVersions v{0} is not a version runnel speaks")]
    UnsupportedVersion(i16),
    #[error("ApiVersions v{version}: {message}")]
    Malformed { version: i16, message: String },
}

impl ApiVersionsRequest {
    /// Decodes a body of `version` from `buf` (after the header).
    pub fn decode(buf: &mut Bytes, version: i16) -> Result<Self, ApiVersionsCodecError> {
        if !(VERSIONS.min..=VERSIONS.max).contains(&version) {
            return Err(ApiVersionsCodecError::UnsupportedVersion(version));
        }
        let malformed = |message: &str| ApiVersionsCodecError::Malformed {
            version,
            message: message.to_owned(),
        };
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request.client_software_name = read_compact_string(buf)
                .ok_or_else(|| malformed("bad ClientSoftwareName"))?
                .ok_or_else(|| malformed("null ClientSoftwareName"))?;
            request.client_software_version = read_compact_string(buf)
                .ok_or_else(|| malformed("bad ClientSoftwareVersion"))?
                .ok_or_else(|| malformed("null ClientSoftwareVersion"))?;
        }
        if version >= CLUSTER_CHECK_VERSION_MIN {
            request.cluster_id =
                read_compact_string(buf).ok_or_else(|| malformed("bad ClusterId"))?;
            if buf.remaining() < 4 {
                return Err(malformed("short NodeId"));
            }
            request.node_id = buf.get_i32();
        }
        if version >= 3 {
            let count = read_uvarint(buf).ok_or_else(|| malformed("bad tagged field count"))?;
            for _ in 0..count {
                let tag = read_uvarint(buf).ok_or_else(|| malformed("bad tag"))?;
                let size = read_uvarint(buf).ok_or_else(|| malformed("bad tag size"))?;
                let size = usize::try_from(size).map_err(|_| malformed("bad tag size"))?;
                if buf.remaining() < size {
                    return Err(malformed("short tagged field"));
                }
                let tag = i32::try_from(tag).map_err(|_| malformed("tag out of range"))?;
                request
                    .unknown_tagged_fields
                    .insert(tag, buf.split_to(size));
            }
        }
        Ok(request)
    }

    /// Encodes the body at `version` (as a client sends it; used by tests and tools).
    pub fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), ApiVersionsCodecError> {
        if !(VERSIONS.min..=VERSIONS.max).contains(&version) {
            return Err(ApiVersionsCodecError::UnsupportedVersion(version));
        }
        let too_long = || ApiVersionsCodecError::Malformed {
            version,
            message: "field too long".to_owned(),
        };
        if version >= 3 {
            put_compact_string(buf, Some(&self.client_software_name)).ok_or_else(too_long)?;
            put_compact_string(buf, Some(&self.client_software_version)).ok_or_else(too_long)?;
        }
        if version >= CLUSTER_CHECK_VERSION_MIN {
            put_compact_string(buf, self.cluster_id.as_ref()).ok_or_else(too_long)?;
            buf.put_i32(self.node_id);
        }
        if version >= 3 {
            put_uvarint(
                buf,
                u32::try_from(self.unknown_tagged_fields.len()).map_err(|_| too_long())?,
            );
            for (tag, value) in &self.unknown_tagged_fields {
                put_uvarint(buf, u32::try_from(*tag).map_err(|_| too_long())?);
                put_uvarint(buf, u32::try_from(value.len()).map_err(|_| too_long())?);
                buf.put_slice(value);
            }
        }
        Ok(())
    }

    /// Kafka's `ApiVersionsRequest.isValid` for the KIP-1242 fields: v5 names both the cluster
    /// and the node, or neither (a node of no cluster, or a cluster without a node, is
    /// INVALID_REQUEST).
    pub fn cluster_target_is_valid(&self, version: i16) -> bool {
        version < CLUSTER_CHECK_VERSION_MIN || (self.cluster_id.is_some() == (self.node_id != -1))
    }

    /// Kafka's `clusterIdOrNodeIdIsInvalid`: a v5 request naming a cluster must name this
    /// broker's cluster and node, else the client was routed to the wrong broker and must
    /// rebootstrap (REBOOTSTRAP_REQUIRED).
    pub fn targets_another_broker(&self, version: i16, cluster_id: &str, node_id: i32) -> bool {
        version >= CLUSTER_CHECK_VERSION_MIN
            && self
                .cluster_id
                .as_ref()
                .is_some_and(|wanted| wanted.as_str() != cluster_id || self.node_id != node_id)
    }
}

/// The version a response to an ApiVersions request of `version` is encoded at by
/// kafka-protocol: v5's response is v4's byte for byte (only the request changed).
pub fn response_encoding_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions && version == CLUSTER_CHECK_VERSION_MIN {
        CLUSTER_CHECK_VERSION_MIN - 1
    } else {
        version
    }
}

/// An unsigned varint of at most 5 bytes; `None` if cut short or too long.
fn read_uvarint(buf: &mut Bytes) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// A compact nullable string: `Some(None)` for null, `None` if cut short or not UTF-8.
fn read_compact_string(buf: &mut Bytes) -> Option<Option<StrBytes>> {
    let len_plus_one = read_uvarint(buf)?;
    let Some(len) = len_plus_one.checked_sub(1) else {
        return Some(None);
    };
    let len = usize::try_from(len).ok()?;
    if buf.remaining() < len {
        return None;
    }
    StrBytes::try_from(buf.split_to(len)).ok().map(Some)
}

/// Writes a compact nullable string; `None` if longer than Kafka allows (0x7fff bytes).
fn put_compact_string(buf: &mut BytesMut, value: Option<&StrBytes>) -> Option<()> {
    match value {
        None => put_uvarint(buf, 0),
        Some(s) => {
            if s.len() > usize::from(i16::MAX.unsigned_abs()) {
                return None;
            }
            put_uvarint(buf, u32::try_from(s.len() + 1).ok()?);
            buf.put_slice(s.as_bytes());
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(request: &ApiVersionsRequest, version: i16) -> ApiVersionsRequest {
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).expect("encode");
        let mut bytes = buf.freeze();
        let decoded = ApiVersionsRequest::decode(&mut bytes, version).expect("decode");
        assert!(!bytes.has_remaining(), "v{version} left bytes");
        decoded
    }

    // Every version keeps exactly the fields it defines.
    #[test]
    fn round_trips_each_version() {
        let full = ApiVersionsRequest {
            client_software_name: StrBytes::from_static_str("apache-kafka-java"),
            client_software_version: StrBytes::from_static_str("4.4.0"),
            cluster_id: Some(StrBytes::from_static_str("q1Sh-9_ISia_zwGINzRvyQ")),
            node_id: 1,
            unknown_tagged_fields: BTreeMap::from([(7, Bytes::from_static(b"x"))]),
        };
        for version in 0..=2 {
            assert_eq!(round_trip(&full, version), ApiVersionsRequest::default());
        }
        for version in 3..=4 {
            let got = round_trip(&full, version);
            assert_eq!(got.client_software_name, full.client_software_name);
            assert_eq!(got.unknown_tagged_fields, full.unknown_tagged_fields);
            assert_eq!((got.cluster_id, got.node_id), (None, -1));
        }
        assert_eq!(round_trip(&full, 5), full);
    }

    // The bytes a Kafka 4.4 Java client sends (hand-written from the 4.4 schema) decode.
    #[test]
    fn decodes_a_java_4_4_body() {
        let mut body = vec![18];
        body.extend_from_slice(b"apache-kafka-java");
        body.push(6);
        body.extend_from_slice(b"4.4.0");
        body.push(0); // null ClusterId
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.push(0);
        let decoded = ApiVersionsRequest::decode(&mut Bytes::from(body), 5).expect("decode");
        assert_eq!(decoded.client_software_version.as_str(), "4.4.0");
        assert_eq!((decoded.cluster_id, decoded.node_id), (None, -1));
    }

    // Short bodies are errors, never panics; versions outside 0-5 are refused.
    #[test]
    fn short_bodies_and_unknown_versions_are_errors() {
        let mut body = vec![18];
        body.extend_from_slice(b"apache-kafka-java");
        body.push(6);
        body.extend_from_slice(b"4.4.0");
        body.push(3);
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&1i32.to_be_bytes());
        body.push(0);
        for cut in 0..body.len() {
            assert!(
                ApiVersionsRequest::decode(&mut Bytes::copy_from_slice(&body[..cut]), 5).is_err()
            );
        }
        assert!(ApiVersionsRequest::decode(&mut Bytes::new(), 6).is_err());
        assert!(ApiVersionsRequest::decode(&mut Bytes::new(), -1).is_err());
    }

    // Kafka's rules: both or neither of ClusterId/NodeId; a named cluster must be ours, and
    // then the node too.
    #[test]
    fn cluster_target_rules() {
        let named = |cluster: Option<&'static str>, node_id: i32| ApiVersionsRequest {
            cluster_id: cluster.map(StrBytes::from_static_str),
            node_id,
            ..ApiVersionsRequest::default()
        };
        assert!(named(None, -1).cluster_target_is_valid(5));
        assert!(named(Some("c"), 1).cluster_target_is_valid(5));
        assert!(!named(None, 0).cluster_target_is_valid(5));
        assert!(!named(Some("c"), -1).cluster_target_is_valid(5));
        assert!(named(None, 0).cluster_target_is_valid(4));

        assert!(!named(None, -1).targets_another_broker(5, "c", 1));
        assert!(!named(Some("c"), 1).targets_another_broker(5, "c", 1));
        assert!(named(Some("c"), 2).targets_another_broker(5, "c", 1));
        assert!(named(Some("d"), 1).targets_another_broker(5, "c", 1));
        assert!(!named(Some("d"), 1).targets_another_broker(4, "c", 1));
    }
}
