//! Extractors that parse input into domain types at the boundary and turn every
//! rejection into the API's JSON error.

use super::error::ApiError;
use super::shared::AppState;
use crate::auth::User;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A JSON body; malformed, mistyped, oversized or non-JSON bodies get a clear error.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(json_rejection)?;
        ApiJson::from_value(value)
    }
}

impl<T: DeserializeOwned> ApiJson<T> {
    fn from_value(value: serde_json::Value) -> Result<Self, ApiError> {
        // serde would also read a struct from an array of its fields; bodies are objects.
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "Invalid request body: expected a JSON object",
            ));
        }
        serde_json::from_value(value).map(ApiJson).map_err(|e| {
            ApiError::bad_request("invalid_body", format!("Invalid request body: {e}"))
        })
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
pub fn has_json_type(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        })
}

/// Whether a body error is the read timeout (`RequestBodyTimeoutLayer`) somewhere down.
fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// An optional JSON body: a request without a `Content-Type` or with an empty body has
/// none; any other must carry a valid body like [`ApiJson`].
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return Ok(None);
        }
        if !has_json_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(e.into()))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let axum::Json(value) = axum::Json::from_bytes(&bytes).map_err(json_rejection)?;
        ApiJson::from_value(value).map(Some)
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    if is_body_timeout(&rejection) {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "The request body arrived too slowly",
        );
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Expected a JSON body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("malformed_json", format!("Malformed JSON: {detail}"))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is larger than the server accepts",
        ),
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

/// Query parameters; unknown values and bad numbers are a 400 that says which.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request("invalid_query", format!("Invalid query: {}", e.body_text()))
            })
    }
}

/// `{id}` of a context route, parsed as a UUID, of a context the caller owns: the one
/// door every single-context route goes through, so another user's context answers
/// exactly what an unknown id answers.
#[derive(Debug, Clone, Copy)]
pub struct ContextId(pub Uuid);

/// `{id}` (a context the caller owns, as for [`ContextId`]) and `{message_id}` of a
/// message route.
#[derive(Debug, Clone, Copy)]
pub struct MessagePath(pub Uuid, pub Uuid);

/// Longest piece of a bad id quoted back in an error.
const MAX_QUOTED_ID_CHARS: usize = 64;

fn parse_uuid(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| {
        let quoted: String = raw.chars().take(MAX_QUOTED_ID_CHARS).collect();
        let more = if quoted.len() < raw.len() { "..." } else { "" };
        ApiError::bad_request(
            "invalid_id",
            format!("Invalid {what} {quoted:?}{more}: expected a UUID"),
        )
    })
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", e.body_text())
}

/// Passes a context id on only if the authenticated caller owns that context.
async fn owned(parts: &mut Parts, app: &AppState, id: Uuid) -> Result<Uuid, ApiError> {
    let user = User::from_request_parts(parts, app).await?;
    app.engine.check_owner(id, user.owner()).await?;
    Ok(id)
}

impl FromRequestParts<AppState> for ContextId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, app)
            .await
            .map_err(path_error)?;
        let id = parse_uuid("context id", &raw)?;
        owned(parts, app, id).await.map(ContextId)
    }
}

impl FromRequestParts<AppState> for MessagePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Path((id, message_id)) = Path::<(String, String)>::from_request_parts(parts, app)
            .await
            .map_err(path_error)?;
        let id = parse_uuid("context id", &id)?;
        let message_id = parse_uuid("message id", &message_id)?;
        Ok(MessagePath(owned(parts, app, id).await?, message_id))
    }
}
