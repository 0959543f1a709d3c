//! `GET /api/contexts/{id}/state`: what clients poll. Answers from the published snapshot,
//! never waiting for a running turn.
//!
//! With `wait_ms` it is a long poll: when nothing changed since what the client holds, the
//! request waits on the context's snapshot channel until the next published change (or the
//! wait ends: 304). A held request is a `watch` receiver inside the request's own future:
//! no task, no timer thread and no copy of the state per waiter.

use super::error::ApiError;
use super::extract::{ApiQuery, ContextId};
use super::shared::AppState;
use crate::auth::User;
use crate::engine::Snapshot;
use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The longest a poll may be held, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/contexts/{id}/state", get(state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    since: Option<u64>,
    wait_ms: Option<u64>,
}

/// True when an `If-None-Match` list names this ETag (or `*`); weak tags match too.
fn matches_etag(headers: &HeaderMap, etag: &ETag) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| {
            let t = t.trim_ascii();
            t.strip_prefix(b"W/").unwrap_or(t)
        })
        .any(|t| t == etag || t == b"*")
}

/// A version's ETag (`"42"`), written on the stack: comparing it costs no allocation.
struct ETag {
    buf: [u8; 22],
    len: usize,
}

impl ETag {
    fn of(version: u64) -> ETag {
        use std::io::Write;
        let mut buf = [0; 22];
        let buf_len = buf.len();
        let mut rest = &mut buf[..];
        // A u64 has at most 20 digits: the quotes and digits always fit.
        let _ = write!(rest, "\"{version}\"");
        let len = buf_len - rest.len();
        ETag { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Whether the client already holds this version: it named it (or a later one another
/// instance showed it) in `since`, or (without `since`) in `If-None-Match`.
fn holds_current(snapshot: &Snapshot, since: Option<u64>, headers: &HeaderMap) -> bool {
    match since {
        Some(since) => since >= snapshot.version(),
        None => matches_etag(headers, &ETag::of(snapshot.version())),
    }
}

/// The version a held poll waits to pass: the client's, when it holds a later one than
/// this instance knows (another instance showed it versions it had not stored yet).
/// Reads are monotonic: nothing below it is ever answered.
fn held_version(snapshot: &Snapshot, since: Option<u64>) -> u64 {
    since.map_or(snapshot.version(), |since| since.max(snapshot.version()))
}

fn with_etag(mut response: Response, version: u64) -> Response {
    // Quotes and digits: always a valid header value.
    if let Ok(v) = HeaderValue::from_bytes(ETag::of(version).as_bytes()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn not_modified(version: u64, metrics: &Metrics) -> Response {
    metrics.polls_not_modified.fetch_add(1, Ordering::Relaxed);
    with_etag(StatusCode::NOT_MODIFIED.into_response(), version)
}

/// The plain answer: 304 when `If-None-Match` names the current version or `since` is
/// past it (the client saw a later version elsewhere: it must not step back), else the
/// state (only what changed after `since`, when given).
fn answer(
    snapshot: &Snapshot,
    since: Option<u64>,
    headers: &HeaderMap,
    metrics: &Metrics,
) -> Response {
    let version = snapshot.version();
    if since.is_some_and(|since| since > version) {
        return not_modified(held_version(snapshot, since), metrics);
    }
    if matches_etag(headers, &ETag::of(version)) {
        return not_modified(version, metrics);
    }
    with_etag(
        Json(snapshot.chat_state_ref(since)).into_response(),
        version,
    )
}

fn wait_of(wait_ms: Option<u64>) -> Result<Duration, ApiError> {
    match wait_ms {
        None => Ok(Duration::ZERO),
        Some(ms) if ms <= MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(ApiError::bad_request(
            "invalid_wait_ms",
            format!("wait_ms must be between 0 and {MAX_WAIT_MS} (got {ms})"),
        )),
    }
}

async fn state(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    user: User,
    ApiQuery(q): ApiQuery<StateQuery>,
    // The request itself, to read `If-None-Match` in place: `HeaderMap` would copy every
    // header on every poll.
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    let wait = wait_of(q.wait_ms)?;
    let metrics = app.engine.metrics();
    metrics.polls.fetch_add(1, Ordering::Relaxed);
    if wait.is_zero() {
        // The plain-polling hot path: no channel handle is cloned.
        let snapshot = app.engine.snapshot(id).await?;
        return Ok(answer(&snapshot, q.since, headers, metrics));
    }
    let mut rx = app.engine.subscribe(id).await?;
    let current = rx.borrow_and_update().clone();
    if !holds_current(&current, q.since, headers) {
        return Ok(answer(&current, q.since, headers, metrics));
    }
    let held = held_version(&current, q.since);
    drop(current);
    let polls = &app.polls;
    let _slot = polls.hold(&user)?;
    let mut stopping = polls.stopping();
    let changed = tokio::select! {
        changed = tokio::time::timeout(wait, rx.wait_for(|s| s.version() > held)) => {
            changed.map(|r| r.map(|s| s.clone()))
        }
        _ = stopping.wait_for(|stop| *stop) => return Ok(not_modified(held, metrics)),
    };
    match changed {
        Ok(Ok(snapshot)) => Ok(answer(&snapshot, q.since, headers, metrics)),
        // The wait ran out: nothing newer than what the client holds.
        Err(_) => Ok(not_modified(held, metrics)),
        // The context left memory (evicted or deleted) while we waited: ask again, which
        // reloads it or answers 404.
        Ok(Err(_)) => {
            let snapshot = app.engine.snapshot(id).await?;
            if holds_current(&snapshot, q.since, headers) {
                Ok(not_modified(held_version(&snapshot, q.since), metrics))
            } else {
                Ok(answer(&snapshot, q.since, headers, metrics))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(v).expect("header"),
            );
        }
        h
    }

    #[test]
    fn if_none_match_forms() {
        let five = ETag::of(5);
        assert!(matches_etag(&with(&["\"5\""]), &five));
        assert!(matches_etag(&with(&["W/\"5\""]), &five));
        assert!(matches_etag(&with(&["\"3\", \"5\""]), &five));
        assert!(matches_etag(&with(&["\"3\",\"5\" "]), &five));
        assert!(matches_etag(&with(&["\"3\"", "\"5\""]), &five));
        assert!(matches_etag(&with(&["*"]), &five));
        assert!(!matches_etag(&with(&["\"4\""]), &five));
        assert!(!matches_etag(&with(&["\"05\""]), &five));
        assert!(!matches_etag(&with(&["5"]), &five));
        assert!(!matches_etag(&HeaderMap::new(), &five));
    }

    #[test]
    fn etags_quote_every_version() {
        assert_eq!(ETag::of(0).as_bytes(), b"\"0\"");
        assert_eq!(ETag::of(u64::MAX).as_bytes(), b"\"18446744073709551615\"");
    }

    #[test]
    fn wait_ms_is_bounded() {
        assert_eq!(wait_of(None).expect("absent"), Duration::ZERO);
        assert_eq!(wait_of(Some(0)).expect("zero"), Duration::ZERO);
        assert_eq!(
            wait_of(Some(MAX_WAIT_MS)).expect("max"),
            Duration::from_millis(MAX_WAIT_MS)
        );
        let e = wait_of(Some(MAX_WAIT_MS + 1)).expect_err("over");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "invalid_wait_ms")
        );
    }
}
