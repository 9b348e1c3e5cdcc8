//! Decoding a request frame into kafka-protocol's typed request, only after
//! [`crate::validate::validate_request`] has walked it.
//!
//! kafka-protocol sizes vectors from wire counts, so calling its decoder on unchecked bytes can
//! abort the process. This module is the one place that pairs the two steps, so the broker, the
//! fuzz targets and the corpus test all decode the same way.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::api_versions::ApiVersionsRequest;
use crate::validate::{request_header_version, validate_request, ValidateError, Validated};

/// A decoded request body: kafka-protocol's type, or runnel's own where kafka-protocol 0.18
/// lacks a version Kafka 4.4 clients send.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Decoded by kafka-protocol.
    Kafka(RequestKind),
    /// ApiVersions of any version 0-5, decoded by [`crate::api_versions`] (kafka-protocol has
    /// no v5).
    ApiVersions(ApiVersionsRequest),
}

/// Why a frame could not be turned into a typed request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Refused before decoding.
    #[error(transparent)]
    Invalid(#[from] ValidateError),
    /// The frame is too short to say which API it is.
    #[error("frame shorter than api key and version")]
    NoApiKey,
    /// kafka-protocol refused a frame the validator accepted (e.g. a semantic check of its own).
    #[error("decode failed: {0}")]
    Decode(String),
}

/// A decoded request with what the validator learnt about it.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The request header.
    pub header: RequestHeader,
    /// The typed body.
    pub body: Request,
    /// Header length and the decoder's estimated allocation.
    pub validated: Validated,
}

/// Reads the api key and version from the first four bytes of a frame.
pub fn peek_api(frame: &[u8]) -> Option<(i16, i16)> {
    let key = frame.get(0..2)?;
    let version = frame.get(2..4)?;
    Some((
        i16::from_be_bytes([key[0], key[1]]),
        i16::from_be_bytes([version[0], version[1]]),
    ))
}

/// Decodes the body of a frame for `api_key`/`version` (ApiVersions with our own decoder, the
/// rest with kafka-protocol). The caller must have validated the frame (use [`decode_frame`]
/// unless you already did) and advanced `body` past the header.
pub fn decode_request(
    api_key: i16,
    version: i16,
    body: &mut Bytes,
) -> Result<Request, DecodeError> {
    let key = ApiKey::try_from(api_key).map_err(|()| ValidateError::UnknownApi { api_key })?;
    if key == ApiKey::ApiVersions {
        return ApiVersionsRequest::decode(body, version)
            .map(Request::ApiVersions)
            .map_err(|e| DecodeError::Decode(e.to_string()));
    }
    RequestKind::decode(key, body, version)
        .map(Request::Kafka)
        .map_err(|e| DecodeError::Decode(format!("{e:#}")))
}

/// Validates a whole frame (header + body, after the 4-byte length), checks it against
/// `decoded_bytes_max`, then decodes header and body. Nothing is decoded unless the walk passed.
pub fn decode_frame(frame: Bytes, decoded_bytes_max: usize) -> Result<DecodedRequest, DecodeError> {
    let (api_key, version) = peek_api(&frame).ok_or(DecodeError::NoApiKey)?;
    let validated = validate_request(api_key, version, &frame)?;
    if validated.decoded_bytes_estimate > decoded_bytes_max {
        return Err(DecodeError::Decode(format!(
            "decoded size estimate {} over budget {decoded_bytes_max}",
            validated.decoded_bytes_estimate
        )));
    }
    let frame_len = frame.len();
    let mut bytes = frame;
    let header_version = request_header_version(api_key, version)?;
    let header = RequestHeader::decode(&mut bytes, header_version)
        .map_err(|e| DecodeError::Decode(format!("{e:#}")))?;
    if frame_len - bytes.remaining() != validated.header_len {
        // The walker and kafka-protocol disagree on where the header ends: a schema bug. Refuse
        // rather than decode the body from the wrong offset.
        return Err(DecodeError::Decode("header length mismatch".to_owned()));
    }
    let body = decode_request(api_key, version, &mut bytes)?;
    Ok(DecodedRequest {
        header,
        body,
        validated,
    })
}
