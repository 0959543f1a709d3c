//! `--turns-per-minute`: each user's budget of turns, on governor's keyed limiter (a
//! burst of the whole minute's budget, then one turn per share of the minute).

use super::error::ApiError;
use super::shared::AppState;
use crate::auth::User;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Users whose budget is tracked before those back at a full budget are forgotten.
const MAX_TRACKED_USERS: usize = 100_000;

pub struct TurnLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    per_minute: NonZeroU32,
}

impl std::fmt::Debug for TurnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnLimiter")
            .field("per_minute", &self.per_minute)
            .field("tracked_users", &self.limiter.len())
            .finish()
    }
}

impl TurnLimiter {
    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        TurnLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute,
        }
    }

    /// Takes one turn from the user's budget, or says when the next one is available.
    fn take(&self, user: &str) -> Result<(), ApiError> {
        if self.limiter.len() > MAX_TRACKED_USERS {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&user.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                // Whole seconds, rounded up: retrying after Retry-After always succeeds.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "At most {} turns a minute; try again in {seconds} s",
                        self.per_minute
                    ),
                )
                .with_retry_after(Some(seconds.max(1)))
            })
    }
}

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
