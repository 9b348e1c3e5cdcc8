//! One client connection: read a frame, check it, decode it, apply it, answer it.
//!
//! On an SSL listener a TLS handshake comes first, bounded by
//! `runnel.ssl.handshake.timeout.ms`: a client that says nothing, or something that is not
//! TLS (such as a plaintext Kafka request), is closed without an answer, as Kafka closes it.
//! The handshake runs in the connection's own task, so it holds up no other connection, and
//! what it holds (one `max.connections` slot, a socket) is released when it times out.
//!
//! # Pipelining
//!
//! A client may write several requests before reading an answer (a Java producer keeps up to 5
//! in flight by default, an idempotent producer at most 5). The connection runs two halves as
//! concurrent futures of its one task (`tokio::join!`, not spawned tasks, so neither can outlive
//! the connection, and nothing needs aborting):
//!
//! - the *reader* reads a frame, checks and decodes it, and *applies* it (`handlers::handle`):
//!   one request at a time, in arrival order, each fully applied before the next frame is read.
//!   It hands the outcome to the writer through a bounded queue: a ready response, or a produce
//!   whose fsync-mode batches wait for their group commit (`handlers::PendingProduce`).
//! - the *writer* takes the queue in order, awaits what is pending, and writes each response.
//!   A response therefore waits for every earlier one, whatever its API.
//!
//! The reader does not wait for a produce's fsync before reading and applying the next request,
//! so the batches of pipelined produces join the same group-commit round instead of costing one
//! fsync each (Kafka mutes a channel while a request is in flight and fsyncs each append).
//!
//! ## Why this is safe
//!
//! Every effect of a request happens while it is applied, in arrival order, before the next
//! request is read: validation, idempotent-producer checks and appends in page-cache mode;
//! queueing on the partition's group commit in fsync mode, whose rounds append in queue order.
//! The one effect that lands later is an fsync-mode produce becoming *visible* (the high
//! watermark moves after the round's fsync). So before applying any request other than a
//! produce, the reader waits until every earlier response has been written if a pending produce
//! was queued since it last waited (the *barrier*): a Fetch or ListOffsets after a produce sees
//! its records, as it did when requests were handled one at a time. Page-cache mode never
//! queues a pending produce, so it never waits. What a client can observe is unchanged: the
//! answers, their order, and what each request sees. (Another connection may see a later
//! page-cache produce of this connection before an earlier fsync-mode one; Kafka orders
//! records only within a partition, and each partition's appends stay in request order.)
//!
//! ## Why the bound
//!
//! A request holds one of `PIPELINED_REQUESTS_MAX` slots from before its frame is read until
//! its response is written (or it needs none). At the limit the reader stops reading, so the
//! socket's receive buffer and then TCP push back on the client. The bound caps what one
//! connection pins: request frames whose batches wait in a group-commit queue, fetched file
//! ranges and encoded responses (a fetch read into memory, with zero-copy off, can be
//! `fetch.max.bytes`). So a connection holds at most `PIPELINED_REQUESTS_MAX` times what it held
//! with one request in flight, and the group-commit queues stay bounded by connections too.
//!
//! ## Ending
//!
//! The reader stops on EOF, an error, a protocol violation, `Reply::Close`, idleness
//! (`connections.max.idle.ms` waiting for the next frame; the wait starts once the previous
//! request is applied, not once it is answered, which differs by at most an fsync) or shutdown;
//! the writer then writes every response of an applied request (awaiting its fsync) and the
//! connection closes. So on
//! shutdown every applied request is finished and answered, none is started. The writer stops
//! on a write error, a write that stalls for `connections.max.idle.ms`, or an acks=0 produce
//! that failed (Kafka closes the connection then); the reader notices at its next wait and
//! applies nothing more. A request being applied is finished first (a parked fetch waits at
//! most its `max_wait_ms`), so no handler is ever cancelled half-way.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use runnel_protocol::api;
use runnel_protocol::frame::{encode_response, HeaderPrefix};
use runnel_protocol::request::{decode_frame, Request};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore, SemaphorePermit};
use tracing::Instrument;

use crate::context::{ConnectionContext, Principal, RequestContext, SecurityProtocol};
use crate::handlers::{self, ProduceReply, Reply};
use crate::send::{self, FilePart};
use crate::state::Broker;
use crate::transport::{ReadSide, Transport, WriteSide};

/// Most requests of one connection between reading a frame and having written its response.
///
/// 5 is the default `max.in.flight.requests.per.connection` of the Java producer and the most
/// an idempotent producer (Java or librdkafka) may use, because Kafka keeps the sequence state
/// of 5 batches per producer; so it pipelines every request such clients send. A larger bound
/// would buy them nothing and would multiply what a connection may pin in memory (see "Why the
/// bound"); a smaller one would make a default producer's fifth request wait a whole fsync
/// before it is even read.
///
/// With `n` slots, one connection's pipelined produces to a partition share an fsync about
/// `n / 2` at a time when fsyncs are slow: a round's fsync covers what was read while the
/// previous round ran, and the slots of that round come back only when it is answered. So with
/// 5, two fsyncs cover five requests (the `pipelining` test sees 20 fsyncs for 50 requests).
pub const PIPELINED_REQUESTS_MAX: usize = 5;

/// Slots besides its own that the reader takes at the barrier: all of them, which it gets once
/// every earlier response is written.
const EARLIER_SLOTS: u32 = {
    assert!(PIPELINED_REQUESTS_MAX >= 1 && PIPELINED_REQUESTS_MAX <= 1 << 16);
    (PIPELINED_REQUESTS_MAX - 1) as u32
};

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
    /// The TLS handshake failed or did not finish in time; nothing was read.
    Handshake(String),
}

/// A response ready to write.
enum Outgoing {
    Frame(BytesMut),
    /// A fetch response with record ranges to `sendfile` (see `send`).
    Parts(Vec<runnel_protocol::splice::Part<FilePart>>),
}

/// What the reader hands the writer for one applied request.
enum Response {
    Ready(Outgoing),
    /// A produce waiting for its group-commit rounds; encoded once they are done.
    Produce(DeferredProduce),
}

/// A pending produce and what its answer's frame needs.
struct DeferredProduce {
    pending: handlers::PendingProduce,
    version: i16,
    correlation_id: i32,
    /// The request's span, so the wait's log lines carry the request as the apply's did.
    span: tracing::Span,
}

/// When an applied request's steps happened, for its latency histograms (the writer records
/// the rest once the answer is written).
#[derive(Clone, Copy)]
struct Timing {
    api_key: ApiKey,
    /// Its frame was read whole.
    received: Instant,
    /// Its handler returned.
    applied: Instant,
}

/// One entry of the reader-to-writer queue, in request order.
struct Queued<'s> {
    /// Boxed so the channel's slots are small: tokio allocates them 32 at a time per channel,
    /// which would cost every connection ~4 KiB with the response inline.
    response: Box<Response>,
    /// `None` for an answer given without applying anything (KIP-511's fallback).
    timing: Option<Timing>,
    /// The request's slot of `PIPELINED_REQUESTS_MAX`, released once the response is written.
    _slot: SemaphorePermit<'s>,
}

/// A frame that passed the checks, decoded.
struct Decoded {
    api_key: ApiKey,
    version: i16,
    header: RequestHeader,
    body: Request,
    /// Bytes of the frame, for the metrics.
    frame_bytes: usize,
    /// When the frame was read whole, for the metrics.
    received: Instant,
}

/// What the checks make of a frame.
#[expect(
    clippy::large_enum_variant,
    reason = "lives on the stack for one request; boxing would allocate per request"
)]
enum Checked {
    Request(Decoded),
    /// Answered without being applied (KIP-511's ApiVersions fallback).
    Answer(Outgoing),
}

/// Serves one connection accepted on `listener`; `tls` is the SSL listener's acceptor, `None`
/// on a PLAINTEXT one.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    listener: Arc<str>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    broker
        .metrics
        .connections_opened
        .fetch_add(1, Ordering::Relaxed);
    let opened = match tls {
        None => Ok((
            Transport::Plain(stream),
            ConnectionContext::new(
                peer,
                listener,
                SecurityProtocol::Plaintext,
                Principal::anonymous(),
            ),
        )),
        Some(acceptor) => {
            handshake(&broker, &acceptor, stream, peer, listener, &mut shutdown).await
        }
    };
    let reason = match opened {
        Ok((mut transport, connection)) => {
            let reason = run(&broker, &mut transport, &connection, &mut shutdown).await;
            transport.close().await;
            reason
        }
        Err(reason) => reason,
    };
    broker
        .metrics
        .connections_closed
        .fetch_add(1, Ordering::Relaxed);
    if matches!(reason, Close::Protocol(_)) {
        broker
            .metrics
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }
    if matches!(reason, Close::Handshake(_)) {
        broker
            .metrics
            .authentications_failed
            .fetch_add(1, Ordering::Relaxed);
    }
    match reason {
        Close::Eof | Close::Shutdown => tracing::debug!(%peer, ?reason, "connection closed"),
        Close::Idle => tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)"),
        Close::Io(e) => tracing::debug!(%peer, error = %e, "connection i/o error"),
        Close::Protocol(why) => tracing::info!(%peer, %why, "closing connection"),
        Close::Handshake(why) => tracing::info!(%peer, %why, "TLS handshake failed"),
    }
}

/// The TLS handshake of a connection on an SSL listener, bounded by
/// `runnel.ssl.handshake.timeout.ms` and given up on shutdown; then the principal of the
/// client's certificate, if it sent one.
async fn handshake(
    broker: &Broker,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    listener: Arc<str>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(Transport, ConnectionContext), Close> {
    let timeout_ms = broker.config.ssl.handshake_timeout_ms;
    let stream = tokio::select! {
        biased;
        _ = shutdown.changed() => return Err(Close::Shutdown),
        done = tokio::time::timeout(Duration::from_millis(timeout_ms), acceptor.accept(stream)) => {
            match done {
                Err(_) => {
                    return Err(Close::Handshake(format!(
                        "not completed within {timeout_ms} ms ({})",
                        crate::tls::settings::HANDSHAKE_TIMEOUT_KEY
                    )))
                }
                Ok(Err(e)) => return Err(Close::Handshake(e.to_string())),
                Ok(Ok(stream)) => stream,
            }
        }
    };
    let principal = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
    {
        None => Principal::anonymous(),
        // rustls verified the chain; a subject we cannot read is refused all the same.
        Some(certificate) => crate::tls::principal(certificate)
            .map_err(|e| Close::Handshake(format!("client certificate: {e}")))?,
    };
    let (_, session) = stream.get_ref();
    tracing::debug!(
        %peer,
        %listener,
        %principal,
        version = ?session.protocol_version(),
        cipher_suite = ?session.negotiated_cipher_suite().map(|s| s.suite()),
        "TLS connection established"
    );
    let connection = ConnectionContext::new(peer, listener, SecurityProtocol::Ssl, principal);
    Ok((Transport::Tls(Box::new(stream)), connection))
}

/// Runs the reader and the writer (see the module docs) until both have stopped.
async fn run(
    broker: &Arc<Broker>,
    transport: &mut Transport,
    connection: &ConnectionContext,
    shutdown: &mut watch::Receiver<bool>,
) -> Close {
    let peer = connection.peer;
    // Zero-copy fetch where the transport takes sendfile and the config does not turn it off.
    let zero_copy = broker.config.fetch_zero_copy && transport.supports_sendfile();
    let (read_half, write_half) = transport.split();
    let slots = Semaphore::new(PIPELINED_REQUESTS_MAX);
    // Never full: an entry holds a slot, and there are as many slots as places.
    let (queue, queued) = mpsc::channel(PIPELINED_REQUESTS_MAX);
    let (read_end, write_end) = tokio::join!(
        read_requests(broker, read_half, connection, zero_copy, shutdown, &slots, queue),
        write_responses(broker, write_half, queued),
    );
    match (read_end, write_end) {
        (Some(reason), Ok(())) => reason,
        (Some(reason), Err(after)) => {
            tracing::debug!(%peer, ?after, "writing stopped after reading did");
            reason
        }
        (None, Err(reason)) => reason,
        // The writer stops cleanly only after the reader, which stops silently only after the
        // writer: not both.
        (None, Ok(())) => Close::Eof,
    }
}

/// The reader: reads, checks and applies requests in arrival order and queues their responses.
/// `None`: it stopped because the writer had stopped (the writer's reason is the connection's).
async fn read_requests<'s>(
    broker: &Arc<Broker>,
    mut stream: ReadSide<'_>,
    connection: &ConnectionContext,
    zero_copy: bool,
    shutdown: &mut watch::Receiver<bool>,
    slots: &'s Semaphore,
    queue: mpsc::Sender<Queued<'s>>,
) -> Option<Close> {
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms);
    let max_frame = broker.config.socket_request_max_bytes;
    let controller = broker
        .metadata
        .quorum()
        .and_then(|q| q.controller_listener())
        == Some(connection.listener.as_ref());
    // A pending produce was queued since the last barrier: the next request other than a
    // produce waits for it (see "Why this is safe").
    let mut produce_pending = false;
    loop {
        // Back-pressure: the next request's slot before its frame, so at the limit nothing
        // more is read until the oldest response is written.
        let slot = tokio::select! {
            biased;
            () = queue.closed() => return None,
            _ = shutdown.changed() => return Some(Close::Shutdown),
            slot = slots.acquire() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => return None,
            },
        };
        let mut size_buf = [0u8; 4];
        tokio::select! {
            biased;
            () = queue.closed() => return None,
            _ = shutdown.changed() => return Some(Close::Shutdown),
            read = tokio::time::timeout(idle, stream.read_exact(&mut size_buf)) => match read {
                Err(_) => return Some(Close::Idle),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Some(Close::Eof)
                }
                Ok(Err(e)) => return Some(Close::Io(e)),
                Ok(Ok(_)) => {}
            },
        }
        let size = i32::from_be_bytes(size_buf);
        let Ok(size) = usize::try_from(size) else {
            return Some(Close::Protocol(format!("negative frame size {size}")));
        };
        if size > max_frame {
            return Some(Close::Protocol(format!(
                "frame of {size} bytes is larger than socket.request.max.bytes ({max_frame})"
            )));
        }
        let frame = tokio::select! {
            biased;
            () = queue.closed() => return None,
            frame = read_frame(&mut stream, size, idle) => match frame {
                Ok(frame) => frame,
                Err(close) => return Some(close),
            },
        };
        let request = match check(
            frame,
            Instant::now(),
            broker.metadata.is_quorum(),
            controller,
        ) {
            Ok(Checked::Request(request)) => request,
            Ok(Checked::Answer(outgoing)) => {
                let response = Response::Ready(outgoing);
                if queue
                    .send(Queued {
                        response: Box::new(response),
                        timing: None,
                        _slot: slot,
                    })
                    .await
                    .is_err()
                {
                    return None;
                }
                continue;
            }
            Err(close) => return Some(close),
        };
        if produce_pending && request.api_key != ApiKey::Produce {
            // The barrier: every earlier response written, so every earlier produce visible.
            tokio::select! {
                biased;
                () = queue.closed() => return None,
                earlier = slots.acquire_many(EARLIER_SLOTS) => drop(earlier),
            }
            produce_pending = false;
        }
        if queue.is_closed() {
            // Its answer could not be written: do not apply it.
            return None;
        }
        let (api_key, received) = (request.api_key, request.received);
        // Boxed: the request, its handler's future and its response are large, and inline they
        // would size every idle connection's task for the largest of them.
        let applied = Box::pin(apply(broker, request, connection, zero_copy)).await;
        let timing = Timing {
            api_key,
            received,
            applied: Instant::now(),
        };
        let response = match applied {
            Ok(Some(response)) => response,
            // No response: the slot is free again, and the request is done.
            Ok(None) => {
                broker
                    .metrics
                    .api(api_key)
                    .times
                    .total
                    .observe(timing.applied - received);
                continue;
            }
            Err(close) => return Some(close),
        };
        produce_pending |= matches!(response, Response::Produce(_));
        if queue
            .send(Queued {
                response: Box::new(response),
                timing: Some(timing),
                _slot: slot,
            })
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// The writer: awaits and writes the queued responses in order until the reader has stopped
/// and the queue is empty, or until it cannot go on (`Err`: why the connection ends).
async fn write_responses(
    broker: &Broker,
    mut stream: WriteSide<'_>,
    mut queued: mpsc::Receiver<Queued<'_>>,
) -> Result<(), Close> {
    let stalled = Duration::from_millis(broker.config.connections_max_idle_ms);
    while let Some(entry) = queued.recv().await {
        let times = entry
            .timing
            .map(|t| (t, &broker.metrics.api(t.api_key).times));
        let (outgoing, ready) = match *entry.response {
            Response::Ready(outgoing) => (outgoing, times.map(|(t, _)| t.applied)),
            // Boxed, like the handlers in `apply`: only connections using them pay their size.
            Response::Produce(deferred) => {
                let completed = Box::pin(complete(broker, deferred)).await;
                // The fsync wait ran since the handler returned, overlapping any wait behind
                // earlier answers: what is left after `applied` is the remote time.
                let ready = Instant::now();
                if let Some((t, times)) = times {
                    times.remote.observe(ready - t.applied);
                }
                match completed? {
                    Some(outgoing) => (outgoing, Some(ready)),
                    None => {
                        if let Some((t, times)) = times {
                            times.total.observe(ready - t.received);
                        }
                        continue;
                    }
                }
            }
        };
        let send_started = Instant::now();
        let written = match outgoing {
            Outgoing::Frame(frame) => send::write_bytes(&mut stream, &frame, stalled).await,
            Outgoing::Parts(parts) => {
                Box::pin(send::write_parts(&mut stream, parts, stalled)).await
            }
        };
        written.map_err(Close::Io)?;
        if let (Some((t, times)), Some(ready)) = (times, ready) {
            let written = Instant::now();
            times
                .response_queue
                .observe(send_started.saturating_duration_since(ready));
            times.send.observe(written - send_started);
            times.total.observe(written - t.received);
        }
        // `entry`'s slot is released here, once its response is written.
    }
    Ok(())
}

/// Waits for a pending produce's rounds and encodes its answer. `Ok(None)`: acks=0, nothing
/// to send.
async fn complete(broker: &Broker, deferred: DeferredProduce) -> Result<Option<Outgoing>, Close> {
    let DeferredProduce {
        pending,
        version,
        correlation_id,
        span,
    } = deferred;
    match pending
        .complete(&broker.metrics.produce_errors)
        .instrument(span)
        .await
    {
        ProduceReply::Respond(body) => encode(
            ApiKey::Produce,
            version,
            ApiKey::Produce.response_header_version(version),
            correlation_id,
            &ResponseKind::Produce(body),
        )
        .map(|frame| Some(Outgoing::Frame(frame))),
        ProduceReply::Silent => Ok(None),
        ProduceReply::Close => Err(Close::Protocol(
            "an acks=0 produce failed; closing the connection as Kafka does".into(),
        )),
    }
}

/// Reads exactly `size` bytes, growing the buffer as bytes arrive.
async fn read_frame<R>(stream: &mut R, size: usize, idle: Duration) -> Result<Bytes, Close>
where
    R: AsyncRead + Unpin,
{
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

/// Checks and decodes one frame; nothing is applied yet. `quorum`: this node runs a metadata
/// quorum, so it serves the quorum's APIs too; `controller`: the frame came on the CONTROLLER
/// listener, which serves only the controller's APIs.
fn check(
    frame: Bytes,
    received: Instant,
    quorum: bool,
    controller: bool,
) -> Result<Checked, Close> {
    let Some(prefix) = HeaderPrefix::peek(&frame) else {
        return Err(Close::Protocol(format!(
            "frame of {} bytes is too short for a request header",
            frame.len()
        )));
    };
    // A node without a quorum is its own controller and has no CONTROLLER listener: it
    // accepts the controller-only APIs on its client listeners, unadvertised.
    let accepted = api::supported_on_listener(prefix.api_key, quorum, controller)
        .or_else(|| (!quorum).then(|| api::accepted(prefix.api_key)).flatten());
    let Some(supported) = accepted else {
        return Err(Close::Protocol(format!(
            "unsupported api key {}",
            prefix.api_key
        )));
    };
    let in_range = (supported.min_version..=supported.max_version).contains(&prefix.api_version);
    if !in_range {
        if supported.key == ApiKey::ApiVersions && prefix.api_version > supported.max_version {
            // KIP-511: a client newer than us learns our ApiVersions range from a v0 answer it
            // can read.
            let body = ResponseKind::ApiVersions(handlers::unsupported_version_response());
            return encode(ApiKey::ApiVersions, 0, 0, prefix.correlation_id, &body)
                .map(|frame| Checked::Answer(Outgoing::Frame(frame)));
        }
        return Err(Close::Protocol(format!(
            "unsupported version {} of {:?} (we serve {}..={})",
            prefix.api_version, supported.key, supported.min_version, supported.max_version
        )));
    }
    // The one decode path (the fuzz targets run it too): validate against the schema, check
    // the decoder's memory budget, then decode header and body.
    let frame_bytes = frame.len();
    let decoded = decode_frame(frame, DECODED_REQUEST_BYTES_MAX).map_err(|e| {
        Close::Protocol(format!(
            "malformed {:?} v{}: {e}",
            supported.key, prefix.api_version
        ))
    })?;
    Ok(Checked::Request(Decoded {
        api_key: supported.key,
        version: prefix.api_version,
        header: decoded.header,
        body: decoded.body,
        frame_bytes,
        received,
    }))
}

/// Applies one decoded request (`handlers::handle`) and prepares its response. `Ok(None)`:
/// nothing to send.
async fn apply(
    broker: &Arc<Broker>,
    request: Decoded,
    connection: &ConnectionContext,
    zero_copy: bool,
) -> Result<Option<Response>, Close> {
    let Decoded {
        api_key,
        version,
        header,
        body,
        frame_bytes,
        received,
    } = request;
    let started = Instant::now();
    let times = &broker.metrics.api(api_key).times;
    times.queue.observe(started - received);
    let span = tracing::debug_span!(
        "request",
        api = ?api_key,
        version,
        correlation_id = header.correlation_id,
        client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or(""),
    );
    let header_version = api_key.response_header_version(version);
    // `instrument`, not `span.enter()`: a guard held across an await would tag other tasks'
    // log lines on this worker with this request while it waits (fetch, group requests).
    // Pinned here rather than awaited by value so that a pending produce can take the span
    // along without a clone on every other request.
    let context = RequestContext {
        connection,
        header: &header,
    };
    let mut handling = std::pin::pin!(handlers::handle(broker, &context, body).instrument(span));
    let reply = handling.as_mut().await;
    times.local.observe(started.elapsed());
    broker.metrics.record_request(api_key, version, frame_bytes);
    match reply {
        Reply::Send(body) => encode(
            api_key,
            version,
            header_version,
            header.correlation_id,
            &body,
        )
        .map(|frame| Some(Response::Ready(Outgoing::Frame(frame)))),
        Reply::Fetch(answer) => encode_fetch(
            zero_copy,
            answer,
            version,
            header_version,
            header.correlation_id,
        )
        .map(|outgoing| Some(Response::Ready(outgoing))),
        Reply::Produce(pending) => Ok(Some(Response::Produce(DeferredProduce {
            pending,
            version,
            correlation_id: header.correlation_id,
            span: handling.span().clone(),
        }))),
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
    zero_copy: bool,
    answer: handlers::FetchAnswer,
    version: i16,
    header_version: i16,
    correlation_id: i32,
) -> Result<Outgoing, Close> {
    let answer = if zero_copy && !answer.slices.is_empty() {
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
