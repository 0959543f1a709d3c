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
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{ready, Either, Ready};
use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Longest host name quoted back in an error.
const MAX_QUOTED_HOST_CHARS: usize = 100;

/// Whether a request shows it was sent by a script allowed to call this origin (a JSON
/// body type or `X-Requested-With`), as every `POST` must (`identity.rs` refuses the
/// others with [`cross_site_post`]).
pub fn sent_by_script(req: &Request) -> bool {
    has_json_type(req.headers()) || req.headers().contains_key(REQUESTED_WITH)
}

/// The answer to a `POST` a cross-site form could have sent.
pub fn cross_site_post() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "A POST needs Content-Type: application/json (the body may be empty) or an \
         X-Requested-With header, so that another site's form cannot send it",
    )
}

/// The layer that refuses a request whose `Host` is not one this server answers for.
/// A typed service, not `middleware::from_fn`: it runs on every request, the polling hot
/// path included, and so boxes nothing.
#[derive(Debug, Clone)]
pub struct KnownHostsLayer(Arc<AllowedHosts>);

impl KnownHostsLayer {
    pub fn new(hosts: Arc<AllowedHosts>) -> Self {
        KnownHostsLayer(hosts)
    }
}

impl<S> Layer<S> for KnownHostsLayer {
    type Service = KnownHostsOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KnownHostsOnly {
            hosts: self.0.clone(),
            inner,
        }
    }
}

/// See [`KnownHostsLayer`].
#[derive(Debug, Clone)]
pub struct KnownHostsOnly<S> {
    hosts: Arc<AllowedHosts>,
    inner: S,
}

impl<S, B> Service<Request<B>> for KnownHostsOnly<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match unknown_host(&self.hosts, &req) {
            Some(error) => Either::Left(ready(Ok(error.into_response()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

fn unknown_host<B>(hosts: &AllowedHosts, req: &Request<B>) -> Option<ApiError> {
    // Borrowed, not copied: this runs on every request.
    let host = req
        .uri()
        .authority()
        .map(|a| Cow::Borrowed(a.as_str()))
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
        });
    host.filter(|host| !hosts.allows(host)).map(|host| {
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
    })
}
