//! The OpenAI-compatible API: `/v1` routes beside `/api`, over the same engine, store,
//! authentication and owner scoping, for the official OpenAI SDKs.
//!
//! Conversations are contexts (the web app shows them live); responses are turns of a
//! context, one row each (`store::ResponseStore`), with their output and events derived
//! from the stored messages by the pure `events` module, so a response reads and replays
//! the same on every instance, after any restart. Chat completions run a turn too when
//! `store: true`, or call the model directly, storing nothing, otherwise.

mod chat_completions;
mod conversations;
mod direct;
pub mod error;
pub mod events;
mod follow;
mod ids;
mod items;
mod models;
mod responses;
mod unstored;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::User;
use crate::domain::{ClientTool, ModelId, NewContext, Owner, SystemPrompt, Title};
use crate::engine::EngineError;
use crate::store::{ResponseRow, ResponseStore, Store};
use axum::extract::Request;
use axum::http::header;
use axum::routing::any;
use axum::Router;
use std::sync::Arc;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(models::routes())
        .merge(conversations::routes())
        .merge(responses::routes())
        .merge(chat_completions::routes())
        .route("/v1", any(unknown_route))
        .route("/v1/{*rest}", any(unknown_route))
}

/// The SDKs send some POSTs with no body and no content type (`cancel`), always with
/// `Authorization`, which a cross-site form cannot send; any other POST passes the same
/// check as `/api`.
pub fn sent_by_sdk(req: &Request) -> bool {
    req.headers().contains_key(header::AUTHORIZATION) || crate::api::browser::sent_by_script(req)
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("No such endpoint; see /api/openapi.json")
}

/// The store's `/v1` tables (every SQL store keeps them; a test double may not).
fn tables(store: &Arc<dyn Store>) -> Result<&dyn ResponseStore, ApiError> {
    store
        .responses()
        .ok_or_else(|| ApiError::internal("internal", &"this store keeps no OpenAI responses"))
}

/// An unknown id and another user's answer the same.
fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("No {what} found with id '{id}'"))
}

/// The context behind a conversation id, if it is the user's.
async fn owned_conversation(app: &AppState, owner: &Owner, id: &str) -> Result<Uuid, ApiError> {
    let context = ids::parse(ids::CONVERSATION, id).ok_or_else(|| not_found("conversation", id))?;
    match app.engine.check_owner(context, owner).await {
        Ok(()) => Ok(context),
        Err(EngineError::NotFound(_)) => Err(not_found("conversation", id)),
        Err(e) => Err(e.into()),
    }
}

/// The model a request names, checked against `--allowed-models`; `None` when it names
/// none (the chat's, else the server's, applies).
fn choose_model(app: &AppState, asked: Option<String>) -> Result<Option<ModelId>, ApiError> {
    let Some(model) = asked else { return Ok(None) };
    let model = ModelId::parse(model).map_err(|e| invalid(e.0))?;
    let models = &app.config.models;
    if !models.allows(model.as_str()) {
        return Err(ApiError::bad_request(
            "model_not_found",
            format!(
                "The model {:?} is not offered here; choose one of: {}",
                model.as_str(),
                models.offered().join(", ")
            ),
        ));
    }
    Ok(Some(model))
}

/// The name of the model that answers: the one asked for, else the server's default.
fn model_name(app: &AppState, model: Option<&ModelId>) -> String {
    model.map_or_else(
        || app.config.models.default_model().to_owned(),
        |m| m.as_str().to_owned(),
    )
}

/// A new chat for a response or completion that names none, titled after its first
/// message.
async fn new_chat(
    app: &AppState,
    user: &User,
    first: &str,
    model_id: Option<ModelId>,
    system_prompt: Option<SystemPrompt>,
) -> Result<Uuid, ApiError> {
    let new = NewContext {
        title: chat_title(first),
        model_id,
        system_prompt,
        ..NewContext::default()
    };
    Ok(app
        .engine
        .create_context(user.owner(), new)
        .await?
        .record
        .id)
}

/// The response stored earlier under this `Idempotency-Key`, if any.
async fn earlier_response(
    app: &AppState,
    user: &User,
    key: Option<&str>,
) -> Result<Option<follow::Response>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let store = app.engine.store().clone();
    let row = tables(&store)?.response_by_key(user.as_str(), key).await?;
    row.map(follow::Response::parse).transpose()
}

/// How storing a new response's row went.
enum Recorded {
    /// Stored: this request's response.
    New(follow::Response),
    /// The same key raced this request and won: its response is the answer, and the chat
    /// made for this request (if any) is gone.
    Earlier(follow::Response),
}

/// Stores the row of a new response of `user` in chat `context` (made for it when
/// `made_chat`), unless the same `Idempotency-Key` raced it.
async fn record_response(
    app: &AppState,
    user: &User,
    (id, context, key): (String, Uuid, Option<String>),
    spec: events::Spec,
    made_chat: bool,
) -> Result<Recorded, ApiError> {
    let store = app.engine.store().clone();
    let row = ResponseRow {
        id,
        owner: user.as_str().to_owned(),
        context_id: context,
        idempotency_key: key,
        request: serde_json::to_string(&spec).map_err(|e| ApiError::internal("internal", &e))?,
        outcome: None,
        created_at: chrono::Utc::now().timestamp(),
    };
    if tables(&store)?.insert_response(&row).await? {
        return Ok(Recorded::New(follow::Response { row, spec }));
    }
    if made_chat {
        let _ = app.engine.delete(user.owner(), context).await;
    }
    earlier_response(app, user, row.idempotency_key.as_deref())
        .await?
        .map(Recorded::Earlier)
        .ok_or_else(|| ApiError::internal("internal", &"response id collision"))
}

/// The function tools among the tools a request declared (OpenAI's Responses format:
/// `{"type": "function", "name", "description"?, "parameters"?}`): the client runs them.
fn client_tools(declared: &[serde_json::Value]) -> Vec<ClientTool> {
    declared
        .iter()
        .filter(|t| t["type"] == "function")
        .filter_map(|t| {
            Some(ClientTool {
                name: t["name"].as_str()?.to_owned(),
                description: t["description"].as_str().map(str::to_owned),
                parameters: t.get("parameters").filter(|p| !p.is_null()).cloned(),
            })
        })
        .collect()
}

/// Characters of the first message that name a chat the API created.
const TITLE_CHARS: usize = 60;

/// The title of a chat the API creates: the start of its first message, on one line
/// (`None`, the default title, when that is no valid title).
fn chat_title(text: &str) -> Option<Title> {
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let title = match words.char_indices().nth(TITLE_CHARS) {
        Some((at, _)) => format!("{}\u{2026}", &words[..at]),
        None => words,
    };
    Title::parse(&title).ok()
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| invalid("Idempotency-Key must be ASCII"))?;
    crate::domain::ClientKey::parse("Idempotency-Key", text.to_owned())
        .map(|k| Some(k.into_inner()))
        .map_err(|e| invalid(e.0))
}

/// A 400 in OpenAI's terms: the message says what to fix.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request_error", message)
}
