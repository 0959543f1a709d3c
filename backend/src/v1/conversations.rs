//! `/v1/conversations`: contexts under OpenAI's names, with their messages as items.

use super::items::{message_items, page, PageQuery, MAX_LIMIT};
use super::{ids, invalid, owned_conversation, tables};
use crate::api::error::ApiError;
use crate::api::extract::ApiJson;
use crate::api::extract::ApiQuery;
use crate::api::AppState;
use crate::auth::User;
use crate::domain::{MessageContent, NewContext};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chatsync_protocol::{ContentPart, Role};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", axum::routing::post(create))
        .route(
            "/v1/conversations/{id}",
            get(show).post(update).delete(remove),
        )
        .route(
            "/v1/conversations/{id}/items",
            get(list_items).post(add_items),
        )
}

/// OpenAI's bounds on metadata: 16 pairs, keys up to 64 characters, values up to 512.
pub fn parse_metadata(metadata: Option<Map<String, Value>>) -> Result<Value, ApiError> {
    let metadata = metadata.unwrap_or_default();
    if metadata.len() > 16 {
        return Err(invalid("metadata holds at most 16 pairs"));
    }
    for (k, v) in &metadata {
        let ok = k.chars().count() <= 64 && v.as_str().is_some_and(|v| v.chars().count() <= 512);
        if !ok {
            return Err(invalid(
                "metadata keys are strings of up to 64 characters, values strings of up to 512",
            ));
        }
    }
    Ok(Value::Object(metadata))
}

/// A message given as an input item: its role and text. Only plain messages can be added
/// to a conversation (tool calls come from the model).
pub fn parse_message_item(item: &Value) -> Result<(Role, String), ApiError> {
    let kind = item["type"].as_str().unwrap_or("message");
    if kind != "message" {
        return Err(invalid(format!(
            "items of type {kind:?} cannot be added here; send messages"
        )));
    }
    let role = match item["role"].as_str() {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("system" | "developer") => Role::System,
        _ => {
            return Err(invalid(
                "a message item needs role user, assistant, system or developer",
            ))
        }
    };
    Ok((role, item_text(&item["content"])?))
}

/// The text of a message's `content`: a string, or text parts.
pub fn item_text(content: &Value) -> Result<String, ApiError> {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                    _ => return Err(invalid("only text content parts are supported")),
                }
            }
            text
        }
        _ => return Err(invalid("content must be a string or a list of text parts")),
    };
    MessageContent::parse(text.clone()).map_err(|e| invalid(e.0))?;
    Ok(text)
}

fn conversation(id: Uuid, created_at: i64, metadata: Value) -> Value {
    json!({
        "id": ids::make(ids::CONVERSATION, id),
        "object": "conversation",
        "created_at": created_at,
        "metadata": metadata,
    })
}

async fn metadata_of(app: &AppState, context: Uuid) -> Result<Value, ApiError> {
    let store = app.engine.store().clone();
    let stored = tables(&store)?.conversation_metadata(context).await?;
    Ok(stored
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or_else(|| json!({})))
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    #[serde(default)]
    items: Option<Vec<Value>>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Adds messages to a context, in order, without running a turn; answers their items.
async fn append(
    app: &AppState,
    context: Uuid,
    messages: Vec<(Role, String)>,
) -> Result<Vec<Value>, ApiError> {
    let mut added = Vec::with_capacity(messages.len());
    for (role, text) in messages {
        let written = app
            .engine
            .append_message(context, role, vec![ContentPart::text(text)], None)
            .await?;
        added.extend(message_items(&written.message));
    }
    Ok(added)
}

fn parse_items(items: &[Value]) -> Result<Vec<(Role, String)>, ApiError> {
    if items.len() > MAX_LIMIT {
        return Err(invalid(format!("at most {MAX_LIMIT} items at once")));
    }
    items.iter().map(parse_message_item).collect()
}

async fn create(
    State(app): State<AppState>,
    user: User,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Json<Value>, ApiError> {
    // Everything is checked before anything is stored.
    let metadata = parse_metadata(req.metadata)?;
    let messages = parse_items(req.items.as_deref().unwrap_or_default())?;
    let snapshot = app
        .engine
        .create_context(user.owner(), NewContext::default())
        .await?;
    let id = snapshot.record.id;
    let store = app.engine.store().clone();
    tables(&store)?
        .set_conversation_metadata(id, &metadata.to_string())
        .await?;
    append(&app, id, messages).await?;
    Ok(Json(conversation(
        id,
        snapshot.record.created_at.timestamp(),
        metadata,
    )))
}

async fn show(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let context = owned_conversation(&app, user.owner(), &id).await?;
    let snapshot = app.engine.snapshot(context).await?;
    let metadata = metadata_of(&app, context).await?;
    Ok(Json(conversation(
        context,
        snapshot.record.created_at.timestamp(),
        metadata,
    )))
}

#[derive(Debug, Deserialize)]
struct UpdateRequest {
    metadata: Option<Map<String, Value>>,
}

async fn update(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    let context = owned_conversation(&app, user.owner(), &id).await?;
    let metadata = parse_metadata(req.metadata)?;
    let store = app.engine.store().clone();
    tables(&store)?
        .set_conversation_metadata(context, &metadata.to_string())
        .await?;
    let snapshot = app.engine.snapshot(context).await?;
    Ok(Json(conversation(
        context,
        snapshot.record.created_at.timestamp(),
        metadata,
    )))
}

async fn remove(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let context = owned_conversation(&app, user.owner(), &id).await?;
    app.engine.delete(user.owner(), context).await?;
    Ok(Json(
        json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

async fn list_items(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let context = owned_conversation(&app, user.owner(), &id).await?;
    let (order, limit) = q.parse().map_err(invalid)?;
    let snapshot = app.engine.snapshot(context).await?;
    let items: Vec<Value> = snapshot
        .messages()
        .iter()
        .flat_map(|m| message_items(m))
        .collect();
    page(items, order, limit, q.after.as_deref())
        .map(Json)
        .map_err(invalid)
}

#[derive(Debug, Deserialize)]
struct AddItemsRequest {
    items: Vec<Value>,
}

async fn add_items(
    State(app): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddItemsRequest>,
) -> Result<Json<Value>, ApiError> {
    let context = owned_conversation(&app, user.owner(), &id).await?;
    let messages = parse_items(&req.items)?;
    let added = append(&app, context, messages).await?;
    Ok(Json(json!({
        "object": "list",
        "first_id": added.first().map(|i| i["id"].clone()),
        "last_id": added.last().map(|i| i["id"].clone()),
        "has_more": false,
        "data": added,
    })))
}
