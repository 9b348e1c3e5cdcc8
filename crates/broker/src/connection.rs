//! One client connection: read a frame, check it, decode it, handle it, answer it — one request
//! at a time, as Kafka does (it mutes a channel while a request is in flight), so pipelined
//! requests are applied and answered in arrival order.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use runnel_protocol::api;
use runnel_protocol::frame::{encode_response, HeaderPrefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::handlers::{self, Reply};
use crate::send::{self, FilePart};
use crate::state::Broker;

/// A response ready to write.
enum Outgoing {
    Frame(BytesMut),
    /// A fetch response with record ranges to `sendfile` (see `send`).
    Parts(Vec<runnel_protocol::splice::Part<FilePart>>),
}

/// Budget for what one request may make the decoder allocate (the validator's estimate). Far
/// above any honest request (record bytes are not copied by the decoder), far below memory.
pub const DECODED_REQUEST_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes read from the socket at a time while a frame arrives: memory follows the bytes that
/// actually came, not the size a client claims.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    Eof,
    Idle,
    Shutdown,
    Io(std::io::Error),
    Protocol(String),
}

pub async fn serve(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let reason = run(&broker, &mut stream, peer, &mut shutdown).await;
    match reason {
        Close::Eof | Close::Shutdown => tracing::debug!(%peer, ?reason, "connection closed"),
        Close::Idle => tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)"),
        Close::Io(e) => tracing::debug!(%peer, error = %e, "connection i/o error"),
        Close::Protocol(why) => tracing::info!(%peer, %why, "closing connection"),
    }
}

async fn run(
    broker: &Arc<Broker>,
    stream: &mut TcpStream,
    peer: std::net::SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let max_frame = broker.config.socket_request_max_bytes;
    loop {
        let mut size_buf = [0u8; 4];
        tokio::select! {
            biased;
            _ = shutdown.changed() => return Close::Shutdown,
            read = tokio::time::timeout(idle, stream.read_exact(&mut size_buf)) => match read {
                Err(_) => return Close::Idle,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Close::Eof,
                Ok(Err(e)) => return Close::Io(e),
                Ok(Ok(_)) => {}
            },
        }
        let size = i32::from_be_bytes(size_buf);
        let Ok(size) = usize::try_from(size) else {
            return Close::Protocol(format!("negative frame size {size}"));
        };
        if size > max_frame {
            return Close::Protocol(format!(
                "frame of {size} bytes is larger than socket.request.max.bytes ({max_frame})"
            ));
        }
        let frame = match read_frame(stream, size, idle).await {
            Ok(frame) => frame,
            Err(close) => return close,
        };
        match process(broker, frame, peer).await {
            Ok(Some(Outgoing::Frame(response))) => {
                let written = tokio::time::timeout(idle, stream.write_all(&response)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Close::Io(e),
                    Err(_) => return Close::Idle,
                }
            }
            Ok(Some(Outgoing::Parts(parts))) => {
                if let Err(e) = send::write_parts(stream, parts, idle).await {
                    return Close::Io(e);
                }
            }
            Ok(None) => {}
            Err(close) => return close,
        }
    }
}

/// Reads exactly `size` bytes, growing the buffer as bytes arrive.
async fn read_frame(stream: &mut TcpStream, size: usize, idle: Duration) -> Result<Bytes, Close> {
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK_BYTES));
    while buf.len() < size {
        let want = (size - buf.len()).min(READ_CHUNK_BYTES);
        buf.reserve(want);
        let mut chunk = (&mut buf).limit(want);
        match tokio::time::timeout(idle, stream.read_buf(&mut chunk)).await {
            Err(_) => return Err(Close::Idle),
            Ok(Ok(0)) => return Err(Close::Eof),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Close::Io(e)),
        }
    }
    Ok(buf.freeze())
}

use bytes::BufMut;

/// Checks, decodes and handles one frame. `Ok(None)`: nothing to send.
async fn process(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: std::net::SocketAddr,
) -> Result<Option<Outgoing>, Close> {
    let Some(prefix) = HeaderPrefix::peek(&frame) else {
        return Err(Close::Protocol(format!(
            "frame of {} bytes is too short for a request header",
            frame.len()
        )));
    };
    let Some(supported) = api::supported(prefix.api_key) else {
        return Err(Close::Protocol(format!(
            "unsupported api key {}",
            prefix.api_key
        )));
    };
    let in_range = (supported.min_version..=supported.max_version).contains(&prefix.api_version);
    if !in_range {
        if supported.key == ApiKey::ApiVersions && prefix.api_version > supported.max_version {
            // KIP-511: a client newer than us learns our ranges from a v0 answer it can read.
            let body = ResponseKind::ApiVersions(handlers::api_versions_response(
                ResponseError::UnsupportedVersion.code(),
            ));
            return encode(ApiKey::ApiVersions, 0, 0, prefix.correlation_id, &body)
                .map(|frame| Some(Outgoing::Frame(frame)));
        }
        return Err(Close::Protocol(format!(
            "unsupported version {} of {:?} (we serve {}..={})",
            prefix.api_version, supported.key, supported.min_version, supported.max_version
        )));
    }
    let validated =
        runnel_protocol::validate::validate_request(prefix.api_key, prefix.api_version, &frame)
            .map_err(|e| {
                Close::Protocol(format!(
                    "malformed {:?} v{}: {e}",
                    supported.key, prefix.api_version
                ))
            })?;
    if validated.decoded_bytes_estimate > DECODED_REQUEST_BYTES_MAX {
        return Err(Close::Protocol(format!(
            "{:?} request would decode to ~{} bytes, over the {} byte budget",
            supported.key, validated.decoded_bytes_estimate, DECODED_REQUEST_BYTES_MAX
        )));
    }
    let api_key = supported.key;
    let version = prefix.api_version;
    let header_version = api_key.request_header_version(version);
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| Close::Protocol(format!("bad {api_key:?} header: {e}")))?;
    let request = RequestKind::decode(api_key, &mut buf, version)
        .map_err(|e| Close::Protocol(format!("bad {api_key:?} v{version} body: {e}")))?;
    let span = tracing::debug_span!(
        "request",
        api = ?api_key,
        version,
        correlation_id = header.correlation_id,
        client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or(""),
    );
    let header_version = api_key.response_header_version(version);
    // `instrument`, not `span.enter()`: a guard held across an await would tag other tasks'
    // log lines on this worker with this request while it waits (fetch, fsync-mode produce).
    let reply = handlers::handle(broker, &header, peer, request)
        .instrument(span)
        .await;
    match reply {
        Reply::Send(body) => encode(
            api_key,
            version,
            header_version,
            header.correlation_id,
            &body,
        )
        .map(|frame| Some(Outgoing::Frame(frame))),
        Reply::Fetch(answer) => encode_fetch(
            broker,
            answer,
            version,
            header_version,
            header.correlation_id,
        )
        .map(Some),
        Reply::Silent => Ok(None),
        Reply::Close => Err(Close::Protocol(format!(
            "{api_key:?} asked to close the connection"
        ))),
    }
}

/// Encodes a fetch answer around its file ranges, or, with zero-copy off, with the records read
/// into the frame. A frame that cannot be spliced (the splice tests rule it out) closes the
/// connection rather than send wrong lengths.
fn encode_fetch(
    broker: &Broker,
    answer: handlers::FetchAnswer,
    version: i16,
    header_version: i16,
    correlation_id: i32,
) -> Result<Outgoing, Close> {
    let answer = if broker.config.fetch_zero_copy && !answer.slices.is_empty() {
        let handlers::FetchAnswer { response, slices } = answer;
        let externals = slices.into_iter().map(FilePart).collect();
        match runnel_protocol::splice::encode_response_with_holes(
            ApiKey::Fetch,
            version,
            header_version,
            correlation_id,
            &response,
            externals,
        ) {
            Ok(parts) => return Ok(Outgoing::Parts(parts)),
            Err(e) => {
                tracing::error!(error = %e, "could not splice a fetch response");
                return Err(Close::Protocol(format!("could not encode response: {e}")));
            }
        }
    } else {
        answer
    };
    let response = handlers::materialize_fetch(answer)
        .map_err(|e| Close::Protocol(format!("reading fetched records: {e}")))?;
    encode(
        ApiKey::Fetch,
        version,
        header_version,
        correlation_id,
        &ResponseKind::Fetch(response),
    )
    .map(Outgoing::Frame)
}

fn encode(
    api_key: ApiKey,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<BytesMut, Close> {
    encode_response(api_key, version, header_version, correlation_id, body).map_err(|e| {
        tracing::error!(error = %e, "encoding a response failed");
        Close::Protocol(format!("could not encode response: {e}"))
    })
}
