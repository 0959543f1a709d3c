//! Who is calling: credentials are checked here and nowhere else.
//!
//! [`Authenticator::authenticate`] reads a request's headers (per `--auth`) and answers
//! the caller's [`User`] or an [`AuthError`]. It knows nothing of HTTP answers: the API's
//! identity layer (`api/identity.rs`) calls it for every route that holds a user's data,
//! and `api/error.rs` turns an `AuthError` into the `401` a client sees.

mod jwks;
mod jwt;
pub mod token;

pub use jwt::{JwtKey, JwtSettings, JwtVerifier};

use axum::http::{header, HeaderMap, HeaderName};
use std::sync::Arc;

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
    /// An authenticating reverse proxy names the user in this header.
    Proxy(HeaderName),
}

impl Authenticator {
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<User, AuthError> {
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
            Authenticator::Proxy(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(User::parse)
                .ok_or_else(|| unauthenticated(format!("No user in the {name} header"))),
        }
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
