//! The admin listener's HTTP/1.1 serving and routes.
//!
//! # What a slow or hostile client can cost
//!
//! - at most `runnel.admin.connections.max` connections are open; others wait in the kernel's
//!   backlog (they never reach the Kafka listeners' `max.connections`);
//! - a request's head must arrive within `ADMIN_HEADER_READ_TIMEOUT` and fit in
//!   `ADMIN_HEADER_BYTES_MAX` bytes and `ADMIN_HEADERS_MAX` headers (hyper answers 431 or
//!   408, or closes);
//! - a request with a body is refused (413) unread: every route is a GET;
//! - one request per connection (no keep-alive), and the whole connection, answer included,
//!   within `ADMIN_CONNECTION_TIMEOUT`;
//! - at most `SCRAPES_CONCURRENT_MAX` scrapes render at once, on blocking threads, so the
//!   runtime's workers keep serving Kafka clients.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::AdminState;

/// Bytes of a request's head (request line and headers). hyper's smallest buffer; a probe's or
/// a scraper's request is a few hundred bytes.
pub const ADMIN_HEADER_BYTES_MAX: usize = 8192;

/// Headers in one request.
pub const ADMIN_HEADERS_MAX: usize = 32;

/// Time for a request's head to arrive once the connection is open.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time for a whole connection, answer written included: longer than Prometheus' default
/// scrape timeout (10 s), so a slow scrape is the scraper's to abandon.
pub const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Scrapes rendering at once.
pub const SCRAPES_CONCURRENT_MAX: usize = 2;

/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// OpenMetrics text, which Prometheus scrapes natively (what the encoder writes).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin routes on `listener` until the process ends.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, connections_max: usize) {
    assert!(connections_max >= 1, "runnel.admin.connections.max >= 1");
    let slots = Arc::new(Semaphore::new(connections_max));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT)
        .max_buf_size(ADMIN_HEADER_BYTES_MAX)
        .max_headers(ADMIN_HEADERS_MAX)
        .keep_alive(false);
    loop {
        // A slot before accepting: at the limit clients wait in the backlog.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin listener: accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(route(&state, &request).await) }
            }),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, connection).await {
                Err(_) => tracing::debug!("admin connection closed: too slow"),
                Ok(Err(e)) => tracing::debug!(error = %e, "admin connection ended"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

/// The answer to one request.
async fn route(state: &Arc<AdminState>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let has_body = request.body().size_hint().upper() != Some(0);
    if has_body {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "requests carry no body\n");
    }
    let path = request.uri().path();
    if super::console::owns(path) {
        return super::console::route(state, request).await;
    }
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /health or /ready\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        answer
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    match path {
        // The process is up and its runtime answers.
        "/health" => text(StatusCode::OK, "ok\n"),
        "/ready" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => metrics(state).await,
    }
}

async fn metrics(state: &Arc<AdminState>) -> Response<Full<Bytes>> {
    let Some(broker) = state.broker().cloned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: logs are being recovered\n",
        );
    };
    let Ok(_permit) = state.scrapes.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    // Reads partitions' files (log sizes, lag timestamps): off the runtime's workers.
    match tokio::task::spawn_blocking(move || super::render(&broker)).await {
        Ok(Ok(body)) => {
            let mut answer = Response::new(Full::new(Bytes::from(body)));
            answer
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            answer
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "encoding metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            )
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}
