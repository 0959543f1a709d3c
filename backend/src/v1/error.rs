//! Errors in OpenAI's shape. Handlers return the API's one error type; this layer, around
//! every `/v1` route (authentication included), rewrites its body
//! `{"error": {"code", "message", "request_id"}}` into
//! `{"error": {"message", "type", "param", "code", "request_id"}}`, the shape the SDKs
//! read, with `type` from the status as OpenAI's.

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// Error bodies are small; anything larger is passed on as it is.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        409 => "conflict_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The body OpenAI's clients expect for an error answered with `status`.
pub fn reshape(status: StatusCode, body: &mut Value) {
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.insert("type".into(), error_type(status).into());
        let param = error.get("param").cloned().unwrap_or(Value::Null);
        error.insert("param".into(), param);
    }
}

pub async fn openai_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    reshape(status, &mut value);
    let body = value.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_get_type_and_param() {
        let mut body =
            json!({"error": {"code": "not_found", "message": "nope", "request_id": "r"}});
        reshape(StatusCode::NOT_FOUND, &mut body);
        assert_eq!(
            body,
            json!({"error": {"code": "not_found", "message": "nope", "request_id": "r",
                "type": "invalid_request_error", "param": null}})
        );
        let mut body = json!({"error": {"code": "invalid_body", "message": "m"}});
        reshape(StatusCode::BAD_REQUEST, &mut body);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(error_type(StatusCode::UNAUTHORIZED), "authentication_error");
        assert_eq!(
            error_type(StatusCode::TOO_MANY_REQUESTS),
            "rate_limit_error"
        );
        assert_eq!(
            error_type(StatusCode::INTERNAL_SERVER_ERROR),
            "server_error"
        );
    }
}
