//! The one error type every handler returns: a stable code and message in JSON.

use crate::engine::{ActionError, EngineError};
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatsync_protocol::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
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
                    e.to_string(),
                )
            }
            StoreError::Gone(id) => ApiError::not_found(format!("Context {id} not found")),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    other.to_string(),
                )
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => ApiError::not_found(format!("Context {id} not found")),
            EngineError::Store(s) => s.into(),
            EngineError::Action(a) => match a {
                ActionError::InvalidState(_) => {
                    ApiError::bad_request("invalid_state", a.to_string())
                }
                ActionError::Busy => ApiError::new(StatusCode::CONFLICT, "busy", a.to_string()),
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
                ActionError::UnknownToolCalls(_) => {
                    ApiError::bad_request("unknown_tool_call", a.to_string())
                }
                ActionError::MessageNotFound(id) => {
                    ApiError::not_found(format!("Message {id} not found"))
                }
                ActionError::SaveFailed(message) => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "save_failed", message)
                }
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
