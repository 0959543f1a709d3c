//! `/api/contexts/{id}/actions/*`: the only way clients change a context.

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, ContextId};
use super::quota::TurnAllowed;
use super::shared::{AppState, IDEMPOTENCY_KEY};
use crate::domain::{ClientKey, MessageContent, NewMessage};
use crate::engine::TurnOutcome;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatsync_protocol::{
    ApproveToolsRequest, CancelRequest, EditMessageRequest, RegenerateRequest, SendMessageRequest,
    SwitchBranchRequest,
};
use serde::Deserialize;
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/contexts/{id}/actions/send_message",
            post(send_message),
        )
        .route(
            "/api/contexts/{id}/actions/approve_tools",
            post(approve_tools),
        )
        .route("/api/contexts/{id}/actions/cancel", post(cancel))
        .route("/api/contexts/{id}/actions/retry", post(retry))
        .route(
            "/api/contexts/{id}/actions/edit_message",
            post(edit_message),
        )
        .route("/api/contexts/{id}/actions/regenerate", post(regenerate))
        .route(
            "/api/contexts/{id}/actions/switch_branch",
            post(switch_branch),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<bool>,
}

impl WaitQuery {
    fn limit(&self, app: &AppState) -> Duration {
        if self.wait == Some(false) {
            Duration::ZERO
        } else {
            app.config.wait_timeout
        }
    }
}

/// 200 once the turn rests, 202 while it still runs.
fn answer(outcome: TurnOutcome) -> Response {
    let status = if outcome.settled {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(outcome.snapshot.chat_state_ref(None))).into_response()
}

fn invalid(code: &'static str) -> impl Fn(crate::domain::ParseError) -> ApiError {
    move |e| ApiError::bad_request(code, e.0)
}

/// The text and client id of a message to add, checked.
fn parse_message(
    content: String,
    client_message_id: Option<String>,
) -> Result<(MessageContent, Option<ClientKey>), ApiError> {
    let content = MessageContent::parse(content).map_err(invalid("invalid_content"))?;
    let client_message_id = client_message_id
        .map(|k| ClientKey::parse("client_message_id", k))
        .transpose()
        .map_err(invalid("invalid_client_message_id"))?;
    Ok((content, client_message_id))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn send_message(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    _: TurnAllowed,
    ApiQuery(q): ApiQuery<WaitQuery>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let (content, client_message_id) = parse_message(req.content, req.client_message_id)?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be ASCII")
            })?;
            Some(
                ClientKey::parse("Idempotency-Key", text.to_owned())
                    .map_err(invalid("invalid_idempotency_key"))?,
            )
        }
    };
    let outcome = app
        .engine
        .send_message(
            id,
            NewMessage {
                content,
                client_message_id,
                idempotency_key,
                if_busy: req.if_busy.unwrap_or_default(),
                turn: Default::default(),
                preceding: Vec::new(),
            },
            q.limit(&app),
        )
        .await?;
    Ok(answer(outcome))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn approve_tools(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<ApproveToolsRequest>,
) -> Result<Response, ApiError> {
    let outcome = app
        .engine
        .approve_tools(id, req.tool_call_ids, q.limit(&app))
        .await?;
    Ok(answer(outcome))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn cancel(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    body: Option<ApiJson<CancelRequest>>,
) -> Result<Response, ApiError> {
    match body.and_then(|ApiJson(req)| req.message_id) {
        Some(message_id) => {
            let snapshot = app.engine.cancel_queued(id, message_id).await?;
            Ok(Json(snapshot.chat_state_ref(None)).into_response())
        }
        None => Ok(answer(app.engine.cancel(id).await?)),
    }
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn retry(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    _: TurnAllowed,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    Ok(answer(app.engine.retry(id, q.limit(&app)).await?))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn edit_message(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    _: TurnAllowed,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<EditMessageRequest>,
) -> Result<Response, ApiError> {
    let (content, client_message_id) = parse_message(req.content, req.client_message_id)?;
    let message = NewMessage {
        content,
        client_message_id,
        idempotency_key: None,
        // Edits run only at rest, so nothing is running to queue behind.
        if_busy: Default::default(),
        turn: Default::default(),
        preceding: Vec::new(),
    };
    let outcome = app
        .engine
        .edit_user_message(id, req.message_id, message, q.limit(&app))
        .await?;
    Ok(answer(outcome))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn regenerate(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    _: TurnAllowed,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<RegenerateRequest>,
) -> Result<Response, ApiError> {
    let outcome = app
        .engine
        .regenerate(id, req.message_id, q.limit(&app))
        .await?;
    Ok(answer(outcome))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn switch_branch(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    ApiJson(req): ApiJson<SwitchBranchRequest>,
) -> Result<Response, ApiError> {
    Ok(answer(app.engine.switch_branch(id, req).await?))
}
