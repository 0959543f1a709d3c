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
use crate::domain::{ClientTool, ModelId, Owner, Title};
use crate::engine::EngineError;
use crate::store::{ResponseStore, Store};
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
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
pub async fn sdk_posts_only(req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        next.run(req).await
    } else {
        crate::api::browser::script_posts_only(req, next).await
    }
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

/// The model the response names: the request's (checked against `--allowed-models`),
/// else the context's, else the server's.
fn choose_model(app: &AppState, asked: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(model) = asked else { return Ok(None) };
    let model = ModelId::parse(model)
        .map_err(|e| invalid(e.0))?
        .into_inner();
    let models = &app.config.models;
    if !models.allows(&model) {
        return Err(ApiError::bad_request(
            "model_not_found",
            format!(
                "The model {model:?} is not offered here; choose one of: {}",
                models.offered().join(", ")
            ),
        ));
    }
    Ok(Some(model))
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
