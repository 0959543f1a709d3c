//! The bound on held long polls (`--max-waiters`, `--max-waiters-per-user`) and the
//! signal that answers them all at shutdown. `AppState` holds it; `state.rs` takes a place
//! in it for each poll it holds, and `v1/follow.rs` for each event stream.

use super::error::ApiError;
use crate::auth::User;
use crate::metrics::Metrics;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The held long polls of this instance: a bound on how many, and the signal that ends
/// them all at shutdown (so a drain does not wait out every client's `wait_ms`).
#[derive(Debug)]
pub struct LivePolls {
    max: u64,
    /// `--max-waiters-per-user`, and how many each user holds now (only users who hold
    /// one are in the map, so it is bounded by `max`).
    per_user: Option<(u64, Mutex<HashMap<User, u64>>)>,
    stopping: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl LivePolls {
    pub fn new(max: u64, max_per_user: Option<u64>, metrics: Arc<Metrics>) -> Self {
        LivePolls {
            max,
            per_user: max_per_user.map(|m| (m, Mutex::default())),
            stopping: watch::Sender::new(false),
            metrics,
        }
    }

    /// Answers every held poll at once (304) and refuses to hold new ones.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Turns true when the server stops: waiters answer at once.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// A waiter's place (also an OpenAI event stream's): refused past the bounds.
    pub(crate) fn hold(self: &Arc<Self>, user: &User) -> Result<Held, ApiError> {
        let counter = &self.metrics.held_polls;
        if counter.fetch_add(1, Ordering::Relaxed) >= self.max {
            counter.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_waiters",
                "Too many requests are waiting for changes on this server; poll again later",
            ));
        }
        // From here on, dropping `held` gives back what was taken.
        let mut held = Held {
            polls: self.clone(),
            user: None,
        };
        if let Some((max, holders)) = &self.per_user {
            let mut holders = lock(holders);
            let mine = holders.entry(user.clone()).or_default();
            if *mine >= *max {
                drop(holders);
                let refused = &self.metrics.user_waiter_refusals;
                refused.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_waiters",
                    format!(
                        "You already hold {max} requests waiting for changes; close a tab \
                         or poll again later"
                    ),
                ));
            }
            *mine += 1;
            held.user = Some(user.clone());
        }
        Ok(held)
    }
}

fn lock(holders: &Mutex<HashMap<User, u64>>) -> MutexGuard<'_, HashMap<User, u64>> {
    // A panic while holding this lock leaves a plain map behind; it stays usable.
    holders.lock().unwrap_or_else(|p| p.into_inner())
}

/// One held poll; leaving the counts when the request ends, however it ends (a client
/// that disconnects drops the request's future, and with it this).
#[derive(Debug)]
pub(crate) struct Held {
    polls: Arc<LivePolls>,
    /// Set once the poll counts against its user's cap.
    user: Option<User>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.polls
            .metrics
            .held_polls
            .fetch_sub(1, Ordering::Relaxed);
        if let (Some(user), Some((_, holders))) = (&self.user, &self.polls.per_user) {
            let mut holders = lock(holders);
            if let Some(mine) = holders.get_mut(user) {
                *mine -= 1;
                if *mine == 0 {
                    holders.remove(user);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_polls_are_bounded_and_counted() {
        let metrics = Arc::new(Metrics::default());
        let polls = Arc::new(LivePolls::new(2, None, metrics.clone()));
        let user = User::parse("local").expect("user");
        let a = polls.hold(&user).expect("first");
        let b = polls.hold(&user).expect("second");
        let e = polls.hold(&user).expect_err("third is refused");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "too_many_waiters")
        );
        assert_eq!(metrics.held_polls.load(Ordering::Relaxed), 2);
        drop(a);
        let _c = polls.hold(&user).expect("a freed slot is reused");
        drop(b);
        assert_eq!(metrics.held_polls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn each_user_holds_at_most_their_share() {
        let metrics = Arc::new(Metrics::default());
        let polls = Arc::new(LivePolls::new(10, Some(2), metrics.clone()));
        let (alice, bob) = (
            User::parse("alice").expect("user"),
            User::parse("bob").expect("user"),
        );
        let a1 = polls.hold(&alice).expect("first");
        let _a2 = polls.hold(&alice).expect("second");
        let e = polls.hold(&alice).expect_err("third is refused");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_waiters")
        );
        assert_eq!(
            metrics.held_polls.load(Ordering::Relaxed),
            2,
            "the refused one left"
        );
        let _b = polls.hold(&bob).expect("bob has his own share");
        drop(a1);
        let _a3 = polls.hold(&alice).expect("a freed slot is reused");
        assert_eq!(metrics.held_polls.load(Ordering::Relaxed), 3);
    }
}
