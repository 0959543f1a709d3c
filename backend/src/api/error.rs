//! The one error type every handler returns: a stable code and message in JSON, with the
//! request id. A 500 shows a generic message; its cause is logged under that id.

use crate::auth::AuthError;
use crate::engine::{ActionError, EngineError};
use crate::store::StoreError;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatsync_protocol::{ErrorBody, ErrorDetail};
use std::fmt::Display;
use std::task::{Context, Poll};
use tokio::task::futures::TaskLocalFuture;
use tower::Service;

/// The header that carries a request's id: echoed when the client sent a usable one,
/// generated otherwise, answered on every response and quoted in error bodies. Defined
/// here, with the error bodies that quote it, so that this module imports nothing from
/// the rest of the API.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The `x-request-id` of the request being answered, for error bodies.
    static REQUEST_ID: HeaderValue;
}

/// The service that runs a request's handling with its id (see `layers`) known to every
/// error answered inside, while the inner service is called and while its answer is
/// awaited.
#[derive(Debug, Clone)]
pub(super) struct ScopeRequestId<S>(S);

impl<S> ScopeRequestId<S> {
    pub(super) fn new(inner: S) -> Self {
        ScopeRequestId(inner)
    }
}

impl<S, B> Service<Request<B>> for ScopeRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<HeaderValue, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        let handling = REQUEST_ID.sync_scope(id.clone(), || self.0.call(req));
        REQUEST_ID.scope(id, handling)
    }
}

fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| id.to_str().map(str::to_owned))
        .ok()
        .and_then(Result::ok)
        .filter(|id| !id.is_empty())
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After`; by default 1 on a 429 or 503, none otherwise.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let retry_after = matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        )
        .then_some(1);
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after,
        }
    }

    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 500: the cause is logged (in the request's span, so with its id) and never shown.
    pub fn internal(code: &'static str, cause: &dyn Display) -> Self {
        tracing::error!(code, error = %cause, "internal error");
        let message = match code {
            "save_failed" => "The change could not be saved",
            _ => "Internal error",
        };
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
    }

    /// The server is at its in-flight limit: try again shortly.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "The server is handling as many requests as it can; try again shortly",
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(message) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The database is unavailable; try again shortly",
                )
            }
            StoreError::Gone(id) => ApiError::not_found(format!("Context {id} not found")),
            other => ApiError::internal("internal", &other),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => ApiError::not_found(format!("Context {id} not found")),
            // Waiting does not help: a chat has to go first.
            EngineError::QuotaExceeded(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                e.to_string(),
            )
            .with_retry_after(None),
            EngineError::Store(s) => s.into(),
            EngineError::Action(a) => match a {
                ActionError::InvalidState(_) => {
                    ApiError::bad_request("invalid_state", a.to_string())
                }
                ActionError::Busy | ActionError::TurnRunning => {
                    ApiError::new(StatusCode::CONFLICT, "busy", a.to_string())
                }
                ActionError::TooManyToolCallIds(_) => {
                    ApiError::bad_request("too_many_tool_call_ids", a.to_string())
                }
                ActionError::QueueFull(_) => {
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", a.to_string())
                }
                ActionError::QueuedMessageNotFound(_) => ApiError::not_found(a.to_string()),
                ActionError::NothingToCancel => {
                    ApiError::bad_request("nothing_to_cancel", a.to_string())
                }
                ActionError::NoPendingApprovals => {
                    ApiError::bad_request("no_pending_approvals", a.to_string())
                }
                ActionError::NoPendingToolOutputs => {
                    ApiError::bad_request("no_pending_tool_outputs", a.to_string())
                }
                ActionError::UnknownToolCalls(_) => {
                    ApiError::bad_request("unknown_tool_call", a.to_string())
                }
                ActionError::InvalidMessage(_) => {
                    ApiError::bad_request("invalid_message", a.to_string())
                }
                ActionError::MessageNotFound(id) => {
                    ApiError::not_found(format!("Message {id} not found"))
                }
                ActionError::SaveFailed(message) => ApiError::internal("save_failed", &message),
                ActionError::Store(s) => s.into(),
                ActionError::Gone | ActionError::Retired => {
                    ApiError::not_found("Context not found")
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let message = match &request_id {
            Some(id) if self.status.is_server_error() => {
                format!("{} (request id {id})", self.message)
            }
            _ => self.message,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message,
                request_id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
