//! The built-in web console on the admin listener: cluster and brokers, topics (partitions,
//! sizes, configs), consumer groups (members, lag) and a read-only record browser.
//!
//! - `/` and `/ui/...`: static files embedded in the binary (`static/`: plain HTML, CSS and
//!   one JavaScript module; no build step);
//! - `/api/...`: JSON the pages read (see `api`), computed from the broker's state: the
//!   metadata image, the replica manager's partitions, the group coordinator and the lag
//!   computation of `super::lag`.
//!
//! Nothing here changes anything: every route is a GET. Every list and every record read has
//! a named limit (see `api` and `records`); a malformed path or query string is a 400, never a
//! panic. JSON work that reads partition files runs on blocking threads, at most
//! `SCRAPES_CONCURRENT_MAX` at once (the scrapes' semaphore), so the runtime keeps serving
//! Kafka clients.

mod api;
mod assets;
mod query;
mod records;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::AdminState;

/// What the console answers to: `/`, `/ui/...` and `/api/...`.
pub fn owns(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/") || path == "/api" || path.starts_with("/api/")
}

/// The answer to a request whose path [`owns`] accepts.
pub async fn route<B>(state: &Arc<AdminState>, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        answer
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    let path = request.uri().path();
    if let Some(api_path) = path.strip_prefix("/api") {
        let query = request.uri().query().unwrap_or("");
        return api(state, api_path, query).await;
    }
    match assets::find(path) {
        Some((content_type, body)) => {
            let mut answer = Response::new(Full::new(Bytes::from_static(body)));
            let headers = answer.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            secure(answer)
        }
        None => plain(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// One `/api/...` answer: parsed here (cheap, on the runtime), computed on a blocking thread.
async fn api(state: &Arc<AdminState>, path: &str, query: &str) -> Response<Full<Bytes>> {
    let call = match api::parse(path, query) {
        Ok(call) => call,
        Err(api::Refusal::NotFound(why)) => return json_error(StatusCode::NOT_FOUND, &why),
        Err(api::Refusal::BadRequest(why)) => return json_error(StatusCode::BAD_REQUEST, &why),
        Err(api::Refusal::Unavailable(why)) => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, &why)
        }
    };
    let Some(broker) = state.broker().cloned() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: logs are being recovered",
        );
    };
    let Ok(_permit) = state.scrapes.acquire().await else {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    match tokio::task::spawn_blocking(move || api::answer(&broker, &call)).await {
        Ok(Ok(value)) => {
            let body = serde_json::to_vec(&value).unwrap_or_default();
            let mut answer = Response::new(Full::new(Bytes::from(body)));
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            answer
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            secure(answer)
        }
        Ok(Err(api::Refusal::NotFound(why))) => json_error(StatusCode::NOT_FOUND, &why),
        Ok(Err(api::Refusal::BadRequest(why))) => json_error(StatusCode::BAD_REQUEST, &why),
        Ok(Err(api::Refusal::Unavailable(why))) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &why)
        }
        Err(e) => {
            tracing::error!(error = %e, "console: answering {path} failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Headers every console answer carries: scripts and styles only from here, no framing, no
/// content sniffing (data is shown as text by the pages, never as markup).
fn secure(mut answer: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = answer.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    answer
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    secure(answer)
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(answer)
}
