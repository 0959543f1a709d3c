//! Where identity enters the API: [`require_user`] is the one layer that authenticates a
//! request (asking `crate::auth`, per `--auth`) and puts the caller's [`User`] into it;
//! handlers take `User` as an extractor, which only reads what the layer put there.
//! Routes outside the layer (health, metrics, the OpenAPI document, the web app) need no
//! credentials.

use super::error::ApiError;
use crate::auth::{Authenticator, User};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The layer where identity enters: authenticates, then hands the `User` to the handler.
/// A request without one is answered `401 unauthenticated` with `WWW-Authenticate: Bearer`.
pub async fn require_user(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    match auth.authenticate(req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(e) => {
            let mut response = ApiError::from(e).into_response();
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
