//! `--turns-per-minute`: the routes that start a turn take one from the caller's budget
//! (`limiter.rs`) first.

use super::error::ApiError;
use super::shared::AppState;
use crate::auth::User;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// An extractor for the routes that start a turn: it succeeds only while the caller's
/// budget (if there is one) has a turn left, and takes that turn. List it after the
/// context id, so a request for an unknown chat costs nothing.
#[derive(Debug)]
pub struct TurnAllowed;

impl FromRequestParts<AppState> for TurnAllowed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        if let Some(limiter) = &app.turns {
            let user = User::from_request_parts(parts, app).await?;
            limiter.take(user.as_str()).inspect_err(|_| {
                let limited = &app.engine.metrics().turns_rate_limited;
                limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })?;
        }
        Ok(TurnAllowed)
    }
}
