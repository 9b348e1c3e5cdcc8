//! Framing: the 4-byte size prefix, the request header's fixed prefix, and response encoding.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// Kafka's default `socket.request.max.bytes`: the largest request frame accepted.
pub const SOCKET_REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// The first fields of every request header, readable before choosing a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl HeaderPrefix {
    /// Reads api key, version and correlation id; `None` if the frame is shorter than 8 bytes.
    pub fn peek(frame: &[u8]) -> Option<HeaderPrefix> {
        let b = frame.get(..8)?;
        Some(HeaderPrefix {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("encoding {api:?} v{version}: {message}")]
    Encode {
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("response of {0} bytes is too large for a frame")]
    TooLarge(usize),
}

/// Encodes a whole response frame: size prefix, header (version per API), body.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, EncodeError> {
    let err = |message: String| EncodeError::Encode {
        api: api_key,
        version: api_version,
        message,
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(e.to_string()))?;
    body.encode(
        &mut buf,
        crate::api_versions::response_encoding_version(api_key, api_version),
    )
    .map_err(|e| err(e.to_string()))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| EncodeError::TooLarge(buf.len()))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}
