//! Who is calling: credentials are checked here and nowhere else.
//!
//! [`Authenticator::authenticate`] reads a request's headers (per `--auth`) and answers
//! the caller's [`User`] or an [`AuthError`]. It knows nothing of HTTP answers: the API's
//! identity layer (`api/identity.rs`) calls it for every route that holds a user's data,
//! and `api/error.rs` turns an `AuthError` into the `401` a client sees.

mod jwks;
mod jwt;
mod proxy;
pub mod token;

pub use jwt::{JwtKey, JwtSettings, JwtVerifier};
pub use proxy::{ProxyAuth, LOOPBACK as DEFAULT_TRUSTED_PROXIES};

use crate::domain::Owner;
use axum::http::{header, HeaderMap};
use std::net::SocketAddr;

/// Why a request has no user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or ones that do not verify; the message says which, for the client.
    #[error("{0}")]
    Unauthenticated(String),
}

/// An `AuthError::Unauthenticated` with this message.
fn unauthenticated(message: impl Into<String>) -> AuthError {
    AuthError::Unauthenticated(message.into())
}

/// An authenticated caller, known by the id its contexts are owned under (an [`Owner`]:
/// 1 to 256 bytes without control characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User(Owner);

impl User {
    /// A user whose credentials named this id; `None` when it is no valid [`Owner`].
    pub fn parse(raw: &str) -> Option<User> {
        Owner::parse(raw).ok().map(User)
    }

    /// The id the engine scopes this user's contexts by.
    pub fn owner(&self) -> &Owner {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
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
    ) -> Result<User, AuthError> {
        let verifier = match self.known_or_verifier(headers, peer) {
            Ok(known) => return known,
            Err(verifier) => verifier,
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("Send Authorization: Bearer <token>"))?;
        verifier.verify(token.trim()).await
    }

    /// The caller, when it is known without waiting (`--auth none` and `proxy`: nothing to
    /// fetch); `None` when [`Authenticator::authenticate`] has to check a token.
    pub fn authenticate_now(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<Result<User, AuthError>> {
        self.known_or_verifier(headers, peer).ok()
    }

    /// The caller as far as it is known without waiting, or the verifier a token must go to.
    fn known_or_verifier(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Result<User, AuthError>, &JwtVerifier> {
        match self {
            Authenticator::None => Ok(Ok(User(Owner::local()))),
            Authenticator::Jwt(verifier) => Err(verifier),
            Authenticator::Proxy(proxy) => Ok(proxy.user(headers, peer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::MAX_OWNER_BYTES;

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert!(User::parse("alice").is_some());
        assert!(User::parse(&"a".repeat(MAX_OWNER_BYTES)).is_some());
        for bad in ["", "a\nb", "\u{7f}"] {
            assert!(User::parse(bad).is_none(), "{bad:?}");
        }
        assert!(User::parse(&"a".repeat(MAX_OWNER_BYTES + 1)).is_none());
    }

    #[tokio::test]
    async fn a_proxy_header_names_the_owner() {
        let proxy = ProxyAuth::new("x-user", &["127.0.0.0/8".into()]).expect("proxy");
        let auth = Authenticator::Proxy(proxy);
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 40000)));
        let mut headers = HeaderMap::new();
        assert!(
            auth.authenticate(&headers, peer).await.is_err(),
            "no header"
        );
        headers.insert("x-user", "carol@example.com".parse().expect("value"));
        let user = auth.authenticate(&headers, peer).await.expect("user");
        assert_eq!(
            user.owner(),
            &Owner::parse("carol@example.com").expect("owner")
        );
        let local = Authenticator::None
            .authenticate(&HeaderMap::new(), None)
            .await;
        assert_eq!(local.expect("local").owner(), &Owner::local());
    }
}
