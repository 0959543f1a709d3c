//! A model call that stores nothing (a chat completion without `store: true`, a response
//! with `store: false`): the engine's model layer called directly, with no turn and no
//! chat, bounded like a turn is: it ends after [`MAX_RUN`] and past `--max-reply-chars`.

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::llm::{ModelChunk, ModelError, ModelRequest, ModelStream};
use axum::http::StatusCode;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::Instant;

/// How long a run that stores nothing may take (it has no turn, so no `--max-turn-ms`).
pub const MAX_RUN: Duration = Duration::from_secs(10 * 60);

/// Why a run stopped before its model finished.
#[derive(Debug)]
pub enum Stop {
    /// [`MAX_RUN`] passed.
    Timeout,
    /// The model failed.
    Model(ModelError),
    /// The reply passed this many characters.
    TooLong(usize),
}

impl Stop {
    /// A short, stable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Stop::Timeout => "timeout",
            Stop::Model(_) => "model_error",
            Stop::TooLong(_) => "reply_too_long",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Stop::Timeout => "The model did not finish in time".into(),
            Stop::Model(e) => format!("The model failed: {e}"),
            Stop::TooLong(limit) => {
                format!("The reply passed {limit} characters and was stopped")
            }
        }
    }
}

impl From<Stop> for ApiError {
    fn from(stop: Stop) -> Self {
        let status = match &stop {
            Stop::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Stop::Model(e) => {
                tracing::warn!(error = %e, "model call failed");
                StatusCode::BAD_GATEWAY
            }
            Stop::TooLong(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, stop.code(), stop.message())
    }
}

/// A running model call, read chunk by chunk.
pub struct DirectRun {
    stream: ModelStream,
    deadline: Instant,
    max_chars: usize,
    chars: usize,
    done: bool,
}

impl DirectRun {
    /// Starts the call; a model that fails or does not answer in time is an error here.
    pub async fn open(app: &AppState, request: ModelRequest) -> Result<DirectRun, ApiError> {
        let deadline = Instant::now() + MAX_RUN;
        let model = app.engine.model().clone();
        let stream = match tokio::time::timeout_at(deadline, model.stream(request)).await {
            Err(_) => return Err(Stop::Timeout.into()),
            Ok(Err(e)) => return Err(Stop::Model(e).into()),
            Ok(Ok(stream)) => stream,
        };
        Ok(DirectRun {
            stream,
            deadline,
            max_chars: app.engine.settings().max_reply_chars,
            chars: 0,
            done: false,
        })
    }

    /// The next chunk; `None` once the model ended (or after a stop, which comes once).
    pub async fn next(&mut self) -> Option<Result<ModelChunk, Stop>> {
        if self.done {
            return None;
        }
        let next = match tokio::time::timeout_at(self.deadline, self.stream.next()).await {
            Err(_) => Some(Err(Stop::Timeout)),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some(Err(Stop::Model(e))),
            Ok(Some(Ok(chunk))) => {
                if let ModelChunk::Text(t) = &chunk {
                    self.chars += t.chars().count();
                }
                if self.chars > self.max_chars {
                    // Dropping the stream closes the upstream call.
                    Some(Err(Stop::TooLong(self.max_chars)))
                } else {
                    Some(Ok(chunk))
                }
            }
        };
        self.done = !matches!(next, Some(Ok(_)));
        next
    }
}
