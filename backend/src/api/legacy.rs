//! Deprecated CRUD endpoints, kept for clients in transition (`--legacy-crud on|off`).
//! They store and edit messages without running the FSM. See MIGRATION_GUIDE.md.

use super::error::ApiError;
use super::extract::{ApiJson, ContextId, MessagePath};
use super::AppState;
use crate::domain::MessageContent;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use chatsync_protocol::{
    content_text, ContentPart, LegacyContent, LegacyCreateMessageRequest, LegacyMessagesResponse,
    LegacyPatchMessageRequest, Message,
};
use std::sync::Arc;

/// Where the deprecation headers point: the guide, served by this server.
pub const MIGRATION_GUIDE_PATH: &str = "/docs/MIGRATION_GUIDE.md";

fn link() -> HeaderValue {
    HeaderValue::from_static("</docs/MIGRATION_GUIDE.md>; rel=\"deprecation\"")
}

pub fn routes(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/contexts/{id}/messages", get(list).post(create))
        .route("/api/contexts/{id}/messages/{message_id}", patch(edit))
        .layer(middleware::from_fn_with_state(app, guard))
}

/// Adds the deprecation headers and logs each use; with the flag off, answers 410 Gone.
async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if !app.config.legacy_crud {
        let mut response = ApiError::new(
            StatusCode::GONE,
            "gone",
            format!(
                "{method} {path} was removed: use the action endpoints and state polling \
                 (see {MIGRATION_GUIDE_PATH})"
            ),
        )
        .into_response();
        response.headers_mut().insert(header::LINK, link());
        return response;
    }
    tracing::warn!(%method, %path, "Deprecated endpoint used");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static("true"));
    headers.insert(header::LINK, link());
    response
}

/// Legacy content as parts; empty or blank text is refused like in send_message.
fn parse_content(content: LegacyContent) -> Result<Vec<ContentPart>, ApiError> {
    let parts = match content {
        LegacyContent::Text(text) => vec![ContentPart::text(text)],
        LegacyContent::Parts(parts) => parts,
    };
    MessageContent::parse(content_text(&parts))
        .map_err(|e| ApiError::bad_request("invalid_content", e.0))?;
    Ok(parts)
}

fn owned(message: Arc<Message>) -> Message {
    Arc::unwrap_or_clone(message)
}

async fn list(
    State(app): State<AppState>,
    ContextId(id): ContextId,
) -> Result<Json<LegacyMessagesResponse>, ApiError> {
    let snapshot = app.engine.snapshot(id).await?;
    Ok(Json(LegacyMessagesResponse {
        total: snapshot.messages.len() as u64,
        messages: snapshot
            .messages
            .iter()
            .map(|m| Message::clone(m))
            .collect(),
    }))
}

async fn create(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    ApiJson(req): ApiJson<LegacyCreateMessageRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    if req.branch.as_deref().is_some_and(|b| b != "main") {
        return Err(ApiError::bad_request(
            "unsupported_branch",
            "Branches are not supported: omit branch or use \"main\"",
        ));
    }
    let content = parse_content(req.content)?;
    let message = app.engine.append_message(id, req.role, content).await?;
    Ok((StatusCode::CREATED, Json(owned(message))))
}

async fn edit(
    State(app): State<AppState>,
    MessagePath(id, message_id): MessagePath,
    ApiJson(req): ApiJson<LegacyPatchMessageRequest>,
) -> Result<Json<Message>, ApiError> {
    let content = parse_content(req.content)?;
    let message = app.engine.edit_message(id, message_id, content).await?;
    Ok(Json(owned(message)))
}
