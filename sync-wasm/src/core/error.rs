//! The errors JavaScript sees, in `lastError` and in rejected promises. A leaf module: it
//! depends on the wire types only, so every other part of the core may use it.

use chatsync_protocol::ErrorBody;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Network,
    /// 401 or 403: the credentials are missing, expired or not enough. Polling stops until
    /// `start()` is called again (with a new token).
    Auth,
    Http,
    Deleted,
    Invalid,
}

/// An error as JavaScript receives it, in `lastError` and in rejected promises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncError {
    pub kind: ErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
    /// How long the server asked to wait (`Retry-After`) before the next request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
}

impl SyncError {
    pub fn network(message: impl Into<String>) -> Self {
        SyncError {
            kind: ErrorKind::Network,
            status: None,
            code: None,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        SyncError {
            kind: ErrorKind::Invalid,
            status: None,
            code: None,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// An HTTP error answer. The body is the API's `{"error": {code, message}}` when the
    /// server wrote it; a proxy may answer anything, so other bodies still give an error.
    pub fn from_http(status: u16, body: Option<ErrorBody>) -> Self {
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::Deleted,
            _ => ErrorKind::Http,
        };
        match body {
            Some(ErrorBody { error }) => SyncError {
                kind,
                status: Some(status),
                code: Some(error.code),
                message: error.message,
                retry_after_ms: None,
            },
            None => SyncError {
                kind,
                status: Some(status),
                code: None,
                message: format!("HTTP {status}"),
                retry_after_ms: None,
            },
        }
    }
}

impl SyncError {
    /// Whether trying the same request again later may succeed: network errors, 408, 429
    /// and 5xx. Other answers (4xx) will not change by themselves.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            ErrorKind::Network => true,
            ErrorKind::Http => self
                .status
                .is_some_and(|s| s == 408 || s == 429 || s >= 500),
            ErrorKind::Auth | ErrorKind::Deleted | ErrorKind::Invalid => false,
        }
    }
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SyncError {}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn api_error_bodies_keep_their_code_and_message() {
        let e = SyncError::from_http(
            400,
            serde_json::from_str(
                r#"{"error":{"code":"invalid_state","message":"No pending tool approvals"}}"#,
            )
            .ok(),
        );
        assert_eq!(e.kind, ErrorKind::Http);
        assert_eq!(e.status, Some(400));
        assert_eq!(e.code.as_deref(), Some("invalid_state"));
        assert_eq!(e.message, "No pending tool approvals");
    }

    #[test]
    fn a_404_is_a_deleted_error_and_foreign_bodies_still_give_a_message() {
        let e = SyncError::from_http(404, None);
        assert_eq!(e.kind, ErrorKind::Deleted);
        assert_eq!(e.message, "HTTP 404");
        assert_eq!(e.code, None);
    }

    #[test]
    fn auth_answers_are_auth_and_only_some_errors_are_worth_retrying() {
        for status in [401, 403] {
            let e = SyncError::from_http(status, None);
            assert_eq!(e.kind, ErrorKind::Auth);
            assert!(!e.is_transient());
        }
        for status in [400, 409, 410, 413, 422] {
            assert!(
                !SyncError::from_http(status, None).is_transient(),
                "{status}"
            );
        }
        for status in [408, 429, 500, 502, 503] {
            assert!(
                SyncError::from_http(status, None).is_transient(),
                "{status}"
            );
        }
        assert!(SyncError::network("down").is_transient());
        assert!(!SyncError::from_http(404, None).is_transient());
    }
}
