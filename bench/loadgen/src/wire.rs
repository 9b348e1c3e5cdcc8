//! Framing and a plain request/response client over one TCP connection.
//!
//! The load paths pre-encode their frames and patch only the correlation id, so the client's own CPU
//! stays small next to the broker's on a shared 2-core machine.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// API versions this client speaks; both runnel and Kafka 4.1 to 4.4 support all of them, and each one
/// still names topics by name (Fetch 13+ switches to topic ids).
pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
pub const LIST_OFFSETS_VERSION: i16 = 7;
pub const METADATA_VERSION: i16 = 12;
pub const CREATE_TOPICS_VERSION: i16 = 7;
pub const API_VERSIONS_VERSION: i16 = 3;

/// A response larger than this is a broker bug or a desynchronised stream, not data.
pub const FRAME_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "runnel-loadgen";
/// Byte range of the correlation id in a request frame: size(4) api_key(2) api_version(2).
const CORRELATION_ID_RANGE: std::ops::Range<usize> = 8..12;

/// A whole request frame, size prefix included.
pub fn encode_frame<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    header.encode(&mut buf, R::header_version(version))?;
    request.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4).context("request frame too large")?;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Reuses a pre-encoded frame for another request on the same connection.
pub fn set_correlation_id(frame: &mut [u8], correlation_id: i32) {
    frame[CORRELATION_ID_RANGE].copy_from_slice(&correlation_id.to_be_bytes());
}

pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Bytes> {
    let size = reader.read_i32().await.context("reading response size")?;
    let size = usize::try_from(size).context("negative response size")?;
    if size > FRAME_BYTES_MAX {
        bail!("response frame of {size} bytes exceeds {FRAME_BYTES_MAX}");
    }
    let mut buf = vec![0u8; size];
    reader
        .read_exact(&mut buf)
        .await
        .context("reading response body")?;
    Ok(Bytes::from(buf))
}

/// Decodes a response body, checking that it answers `correlation_id`.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!(
            "correlation id {} answers request {correlation_id}",
            header.correlation_id
        );
    }
    R::Response::decode(&mut frame, version)
}

/// One connection, one request at a time: for setup, probes and the latency-sensitive calls.
pub struct Client {
    stream: TcpStream,
    correlation_id_next: i32,
}

impl Client {
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        let stream = TcpStream::connect(bootstrap)
            .await
            .with_context(|| format!("connecting to {bootstrap}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation_id_next: 1,
        })
    }

    pub async fn connect_retrying(bootstrap: &str, timeout: Duration) -> Result<Client> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match Client::connect(bootstrap).await {
                Ok(client) => return Ok(client),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let correlation_id = self.correlation_id_next;
        self.correlation_id_next = self.correlation_id_next.wrapping_add(1);
        let frame = encode_frame(request, version, correlation_id)?;
        self.stream.write_all(&frame).await?;
        let body = read_frame(&mut self.stream).await?;
        decode_response::<R>(body, version, correlation_id)
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}
