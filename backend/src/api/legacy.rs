//! Deprecated CRUD endpoints, kept for clients in transition (`--legacy-crud on|off`).
//! They store and edit messages without running the FSM. See MIGRATION_GUIDE.md.

use super::error::ApiError;
use super::extract::{ApiJson, ContextId, MessagePath};
use super::shared::AppState;
use crate::domain::MessageContent;
use crate::engine::Written;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use chatsync_protocol::{
    content_text, ContentPart, LegacyContent, LegacyCreateMessageRequest, LegacyMessagesResponse,
    LegacyPatchMessageRequest, Message, Role,
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

/// 201 (or 200 for an edit) once on disk; 202 when the save failed: the change is kept
/// and written by the next successful save, so the answer is not an error.
fn answer(written: Written, stored: StatusCode) -> (StatusCode, Json<Message>) {
    let status = if written.saved {
        stored
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(Arc::unwrap_or_clone(written.message)))
}

async fn list(
    State(app): State<AppState>,
    ContextId(id): ContextId,
) -> Result<Json<LegacyMessagesResponse>, ApiError> {
    let snapshot = app.engine.snapshot(id).await?;
    Ok(Json(LegacyMessagesResponse {
        total: snapshot.message_count() as u64,
        messages: snapshot
            .messages()
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
    let tool_call_id = match (req.role, req.tool_call_id) {
        (Role::User | Role::Assistant, None) => None,
        (Role::User | Role::Assistant, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_role",
                "tool_call_id belongs only to messages with role \"tool\"",
            ))
        }
        (Role::System, _) => {
            return Err(ApiError::bad_request(
                "invalid_role",
                "role \"system\" is not a message: set the context's system_prompt instead",
            ))
        }
        (Role::Tool, call) => Some(known_tool_call(&app, id, call).await?),
    };
    let written = app
        .engine
        .append_message(id, req.role, content, tool_call_id)
        .await?;
    Ok(answer(written, StatusCode::CREATED))
}

/// A tool message must answer a tool call the context really made.
async fn known_tool_call(
    app: &AppState,
    id: uuid::Uuid,
    call: Option<String>,
) -> Result<String, ApiError> {
    let Some(call) = call else {
        return Err(ApiError::bad_request(
            "invalid_role",
            "role \"tool\" needs the tool_call_id of one of this context's tool calls",
        ));
    };
    let snapshot = app.engine.snapshot(id).await?;
    let known = snapshot
        .messages()
        .iter()
        .flat_map(|m| m.tool_calls.iter().flatten())
        .any(|c| c.id == call);
    if known {
        Ok(call)
    } else {
        Err(ApiError::bad_request(
            "unknown_tool_call",
            "tool_call_id names no tool call of this context",
        ))
    }
}

async fn edit(
    State(app): State<AppState>,
    MessagePath(id, message_id): MessagePath,
    ApiJson(req): ApiJson<LegacyPatchMessageRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let content = parse_content(req.content)?;
    let written = app.engine.edit_message(id, message_id, content).await?;
    Ok(answer(written, StatusCode::OK))
}
