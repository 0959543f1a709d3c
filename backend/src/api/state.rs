//! `GET /api/contexts/{id}/state`: what clients poll. Answers from the published snapshot,
//! never waiting for a running turn.

use super::error::ApiError;
use super::extract::{ApiQuery, ContextId};
use super::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::atomic::Ordering;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/contexts/{id}/state", get(state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    since: Option<u64>,
}

/// True when an `If-None-Match` list names this ETag (or `*`); weak tags match too.
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

async fn state(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    ApiQuery(q): ApiQuery<StateQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snapshot = app.engine.snapshot(id).await?;
    let metrics = app.engine.metrics();
    metrics.polls.fetch_add(1, Ordering::Relaxed);
    let etag = format!("\"{}\"", snapshot.version());
    let etag_value = HeaderValue::from_str(&etag)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if matches_etag(&headers, &etag) {
        metrics.polls_not_modified.fetch_add(1, Ordering::Relaxed);
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let body = Json(snapshot.chat_state_ref(q.since));
    Ok(([(header::ETAG, etag_value)], body).into_response())
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
        assert!(matches_etag(&with(&["\"5\""]), "\"5\""));
        assert!(matches_etag(&with(&["W/\"5\""]), "\"5\""));
        assert!(matches_etag(&with(&["\"3\", \"5\""]), "\"5\""));
        assert!(matches_etag(&with(&["\"3\"", "\"5\""]), "\"5\""));
        assert!(matches_etag(&with(&["*"]), "\"5\""));
        assert!(!matches_etag(&with(&["\"4\""]), "\"5\""));
        assert!(!matches_etag(&with(&["5"]), "\"5\""));
        assert!(!matches_etag(&HeaderMap::new(), "\"5\""));
    }
}
