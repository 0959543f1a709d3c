//! Reading a response as the store holds it: once (`current`), or following its events as
//! the turn goes on (`Follow`), on whichever instance the request reached.

use super::events::{derive, Derived, Outcome, Spec, Stored};
use super::tables;
use crate::api::error::ApiError;
use crate::api::polls::Held;
use crate::api::AppState;
use crate::auth::User;
use crate::engine::Snapshot;
use crate::store::ResponseRow;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long one request follows a response before it ends its answer (a client resumes
/// with `starting_after`).
pub const STREAM_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Pause before reading again after the store failed.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A response row with its request parsed.
#[derive(Debug, Clone)]
pub struct Response {
    pub row: ResponseRow,
    pub spec: Spec,
}

impl Response {
    pub fn parse(row: ResponseRow) -> Result<Self, ApiError> {
        let spec = serde_json::from_str(&row.request).map_err(|e| {
            ApiError::internal("internal", &format_args!("unreadable response row: {e}"))
        })?;
        Ok(Response { row, spec })
    }

    fn outcome(&self) -> Option<Outcome> {
        self.row
            .outcome
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok())
    }

    /// The response as `snapshot` shows it durably. An end seen for the first time is
    /// recorded first (the first writer's stays), so the terminal event never differs.
    pub async fn current(
        &mut self,
        app: &AppState,
        snapshot: &Snapshot,
    ) -> Result<Derived, ApiError> {
        let messages = snapshot.durable_messages();
        let state = snapshot.is_durable().then(|| {
            let state = &snapshot.record.state;
            (state.name(), state.error().map(str::to_owned))
        });
        let tools = app.engine.tools().clone();
        let auto = |name: &str| tools.is_auto_approved(name);
        for _ in 0..2 {
            let outcome = self.outcome();
            let derived = derive(
                &Stored {
                    id: &self.row.id,
                    created_at: self.row.created_at,
                    spec: &self.spec,
                    messages: &messages,
                    state: state.clone(),
                    outcome: outcome.as_ref(),
                },
                &auto,
            );
            let Some(ended) = &derived.unrecorded else {
                return Ok(derived);
            };
            let store = app.engine.store().clone();
            let text =
                serde_json::to_string(ended).map_err(|e| ApiError::internal("internal", &e))?;
            self.row.outcome = Some(tables(&store)?.settle_response(&self.row.id, &text).await?);
        }
        Err(ApiError::internal(
            "internal",
            &"a response's outcome did not settle",
        ))
    }
}

/// Follows a response's events from a sequence number until its terminal event (or the
/// limit): each published change of the context is derived again and what is new is
/// handed out, so events reach the client as the store takes them.
#[derive(Debug)]
pub struct Follow {
    app: AppState,
    response: Response,
    rx: Option<watch::Receiver<Arc<Snapshot>>>,
    /// The sequence number of the next event to hand out.
    next: usize,
    buf: VecDeque<Value>,
    done: bool,
    deadline: Instant,
    /// The response object as last derived.
    pub last: Option<Value>,
    /// A follower counts as a held poll (`--max-waiters`), and ends when the server stops
    /// (the client resumes elsewhere with `starting_after`).
    _slot: Held,
    stopping: watch::Receiver<bool>,
}

impl Follow {
    pub fn new(
        app: AppState,
        user: &User,
        response: Response,
        starting_after: Option<u64>,
        limit: Duration,
    ) -> Result<Self, ApiError> {
        let next = starting_after.map_or(0, |n| {
            usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1)
        });
        let slot = app.polls.hold(user)?;
        let stopping = app.polls.stopping();
        Ok(Follow {
            app,
            response,
            rx: None,
            next,
            buf: VecDeque::new(),
            done: false,
            deadline: Instant::now() + limit,
            last: None,
            _slot: slot,
            stopping,
        })
    }

    /// The next event; `None` once the response ended (or the limit passed).
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            if let Some(event) = self.buf.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if Instant::now() >= self.deadline {
                self.done = true;
                continue;
            }
            let context = self.response.row.context_id;
            let rx = match &mut self.rx {
                Some(rx) => rx,
                None => match self.app.engine.subscribe(context).await {
                    Ok(rx) => self.rx.insert(rx),
                    Err(e) => {
                        tracing::warn!(%context, error = %e, "cannot follow the response's context");
                        self.done = true;
                        continue;
                    }
                },
            };
            let snapshot = rx.borrow_and_update().clone();
            match self.response.current(&self.app, &snapshot).await {
                Ok(derived) => {
                    if derived.events.len() > self.next {
                        self.buf.extend(derived.events[self.next..].iter().cloned());
                        self.next = derived.events.len();
                    }
                    self.last = Some(derived.response);
                    if derived.ended {
                        self.done = true;
                    }
                    if !self.buf.is_empty() || self.done {
                        continue;
                    }
                }
                Err(_) => {
                    // Logged where it happened; the store may be back in a moment.
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
            let Some(rx) = &mut self.rx else { continue };
            tokio::select! {
                changed = tokio::time::timeout_at(self.deadline, rx.changed()) => match changed {
                    Ok(Ok(())) => {}
                    // The actor left memory: follow the one that loads the context next.
                    Ok(Err(_)) => self.rx = None,
                    Err(_) => self.done = true,
                },
                _ = self.stopping.wait_for(|stop| *stop) => self.done = true,
            }
        }
    }

    /// Follows to the end (or the limit) and answers the response object then.
    pub async fn until_end(mut self) -> Option<Value> {
        while self.next_event().await.is_some() {}
        self.last
    }
}
