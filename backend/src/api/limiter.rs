//! Each user's budgets a minute, on governor's keyed limiter (a burst of the whole
//! minute's budget, then one more per share of the minute): `--turns-per-minute`,
//! `--writes-per-minute` (every POST, PATCH and DELETE) and `--searches-per-minute`.
//! `AppState` holds them; `quota.rs` (turns), `identity.rs` (writes) and `contexts.rs`
//! (searches) take from them.

use super::error::ApiError;
use axum::http::StatusCode;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Users whose budget is tracked before those back at a full budget are forgotten.
const MAX_TRACKED_USERS: usize = 100_000;

pub struct TurnLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    per_minute: NonZeroU32,
    /// What is counted, for the error message ("turns", "writes", "searches").
    what: &'static str,
}

impl std::fmt::Debug for TurnLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnLimiter")
            .field("what", &self.what)
            .field("per_minute", &self.per_minute)
            .field("tracked_users", &self.limiter.len())
            .finish()
    }
}

impl TurnLimiter {
    /// A budget of `what` ("turns", "writes", "searches").
    pub fn of(what: &'static str, per_minute: NonZeroU32) -> Self {
        TurnLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute,
            what,
        }
    }

    /// Takes one from the user's budget, or says when the next one is available.
    pub(super) fn take(&self, user: &str) -> Result<(), ApiError> {
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
                        "At most {} {} a minute; try again in {seconds} s",
                        self.per_minute, self.what
                    ),
                )
                .with_retry_after(Some(seconds.max(1)))
            })
    }
}
