//! What keeps other sites out: a `POST` must show it was sent by a script allowed to call
//! this origin, and a request must name a host this server answers for.
//!
//! A browser sends a cross-site `POST` without asking (a form, or `fetch` in `no-cors`
//! mode) only with a "simple" content type (form data or plain text) and no custom
//! header. Requiring `Content-Type: application/json` or an `X-Requested-With` header on
//! every `POST` therefore makes the browser ask first (a CORS preflight), which only
//! `--cors-allow-origin` answers. `PATCH` and `DELETE` always ask first.
//!
//! DNS rebinding points a name the attacker owns at this server's address: the page's
//! requests are then same-origin for the browser, but carry the attacker's name as
//! `Host`. The server answers only hosts it was told it is reached by.

use super::error::ApiError;
use super::extract::has_json_type;
use super::hosts::{host_name, AllowedHosts};
use super::shared::REQUESTED_WITH;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;
use std::sync::Arc;

/// Longest host name quoted back in an error.
const MAX_QUOTED_HOST_CHARS: usize = 100;

/// Refuses a `POST` a cross-site form could have sent.
pub async fn script_posts_only(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !sent_by_script(&req) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "A POST needs Content-Type: application/json (the body may be empty) or an \
             X-Requested-With header, so that another site's form cannot send it",
        )
        .into_response();
    }
    next.run(req).await
}

fn sent_by_script(req: &Request) -> bool {
    has_json_type(req.headers()) || req.headers().contains_key(REQUESTED_WITH)
}

/// Refuses a request whose `Host` is not one this server answers for.
pub async fn known_hosts_only(
    State(hosts): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    // Borrowed, not copied: this runs on every request, the polling hot path included.
    let host = req
        .uri()
        .authority()
        .map(|a| Cow::Borrowed(a.as_str()))
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
        });
    let refused = host.filter(|host| !hosts.allows(host)).map(|host| {
        let quoted: String = host_name(&host)
            .chars()
            .take(MAX_QUOTED_HOST_CHARS)
            .collect();
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            format!(
                "This server does not answer for host {quoted:?}; if that is its public \
                 name, start it with --allowed-hosts {quoted}"
            ),
        )
    });
    match refused {
        Some(error) => error.into_response(),
        None => next.run(req).await,
    }
}
