//! Who is calling: identity enters the service here and nowhere else.
//!
//! [`require_user`] is the one layer that authenticates a request (per `--auth`) and puts
//! the caller's [`User`] into the request; handlers take `User` as an extractor, which
//! only reads what the layer put there. Routes outside the layer (health, metrics, the
//! OpenAPI document, the web app) need no credentials.

mod jwks;
mod jwt;
mod proxy;
pub mod token;

pub use jwt::{JwtKey, JwtSettings, JwtVerifier};
pub use proxy::{ProxyAuth, LOOPBACK as DEFAULT_TRUSTED_PROXIES};

use crate::api::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// The one user of `--auth none`.
pub const LOCAL_USER: &str = "local";

/// An authenticated caller: a non-empty id of bounded length without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(Arc<str>);

impl User {
    pub fn parse(raw: &str) -> Option<User> {
        let ok =
            !raw.is_empty() && raw.len() <= MAX_USER_ID_BYTES && !raw.chars().any(char::is_control);
        ok.then(|| User(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How callers prove who they are.
#[derive(Debug)]
pub enum Authenticator {
    /// Everyone is the user `local`.
    None,
    /// `Authorization: Bearer <JWT>`; the user is the `sub` claim.
    Jwt(Box<JwtVerifier>),
    /// An authenticating reverse proxy names the user in a header.
    Proxy(ProxyAuth),
}

impl Authenticator {
    /// The caller of a request with these headers from `peer` (the connection's address;
    /// `None` for an in-process call).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<User, ApiError> {
        match self {
            Authenticator::None => Ok(User(LOCAL_USER.into())),
            Authenticator::Jwt(verifier) => {
                let token = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| unauthenticated("Send Authorization: Bearer <token>"))?;
                verifier.verify(token.trim()).await
            }
            Authenticator::Proxy(proxy) => proxy.user(headers, peer),
        }
    }
}

/// `401 unauthenticated` with `WWW-Authenticate: Bearer`.
pub fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

/// The layer where identity enters: authenticates, then hands the `User` to the handler.
pub async fn require_user(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    match auth.authenticate(req.headers(), peer).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => {
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only a route outside `require_user` can miss it: a wiring bug, not a client error.
        parts.extensions.get::<User>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "This route is not behind authentication",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(User::parse("alice").is_some());
        assert!(User::parse(&"a".repeat(MAX_USER_ID_BYTES)).is_some());
        for bad in ["", "a\nb", "\u{7f}"] {
            assert!(User::parse(bad).is_none(), "{bad:?}");
        }
        assert!(User::parse(&"a".repeat(MAX_USER_ID_BYTES + 1)).is_none());
    }
}
