//! What every feature module of the API shares: the state its handlers get and the names
//! of the headers more than one of them reads. The feature modules depend on it, not on
//! `api/mod.rs`, which only assembles them. It imports no feature module: the state it
//! holds is defined in modules of its own (`hosts.rs`, `limiter.rs`, `polls.rs`) that
//! import only `error.rs`, which imports nothing from the API, so no import leads from
//! here back to a route.

use super::hosts::AllowedHosts;
use super::limiter::TurnLimiter;
use super::polls::LivePolls;
use crate::engine::Engine;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The header a script's `POST` may carry instead of a JSON body type (`browser.rs`).
pub const REQUESTED_WITH: &str = "x-requested-with";
/// The header that makes a retried send a no-op (`actions.rs`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub legacy_crud: bool,
    /// How long an action waits for its turn to rest before answering 202.
    pub wait_timeout: Duration,
    pub max_body_bytes: usize,
    /// Origin allowed to call the API from another site (`*` for any).
    pub cors_allow_origin: Option<String>,
    /// The built web app, served at `/`.
    pub web_dir: Option<PathBuf>,
    /// Requests handled at once; more are answered 503 with `Retry-After` at once.
    pub max_in_flight: usize,
    /// Longest silence while a request body is read (then 408).
    pub body_read_timeout: Duration,
    /// The models a context may name, and the default (`--allowed-models`, `--model`).
    pub models: Arc<crate::llm::ModelCatalog>,
    /// Host names requests may carry (`--allowed-hosts`).
    pub allowed_hosts: Arc<AllowedHosts>,
}

/// What every handler gets. axum clones it on every request (and `State` once more), so it
/// is one `Arc`: one count to change instead of one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppFields>);

impl AppState {
    pub fn new(fields: AppFields) -> Self {
        AppState(Arc::new(fields))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppFields;

    fn deref(&self) -> &AppFields {
        &self.0
    }
}

#[derive(Debug)]
pub struct AppFields {
    /// How callers are identified (see `crate::auth`).
    pub auth: Arc<crate::auth::Authenticator>,
    pub engine: Arc<Engine>,
    pub config: Arc<ApiConfig>,
    /// Held long polls: their bound, and the signal that answers them at shutdown.
    pub polls: Arc<LivePolls>,
    /// Each user's budget of turns a minute (`--turns-per-minute`); `None`: no limit.
    pub turns: Option<Arc<TurnLimiter>>,
    /// Each user's budget of writes a minute (`--writes-per-minute`); `None`: no limit.
    pub writes: Option<Arc<TurnLimiter>>,
    /// Each user's budget of searches a minute (`--searches-per-minute`); `None`: no limit.
    pub searches: Option<Arc<TurnLimiter>>,
}
