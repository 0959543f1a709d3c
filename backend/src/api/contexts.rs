//! `/api/contexts`: create, list and search, get, rename, delete.

use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, ContextId};
use super::shared::AppState;
use crate::auth::User;
use crate::domain::{Mode, ModelId, NewContext, ParseError, SearchQuery, SystemPrompt, Title};
use crate::store::{Cursor, ListOrder};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chatsync_protocol::{
    ContextSummary, CreateContextRequest, ListContextsResponse, RenameContextRequest,
};
use serde::Deserialize;

const MAX_PAGE: u32 = 200;
const DEFAULT_PAGE: u32 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/contexts", get(list).post(create))
        .route("/api/contexts/{id}", get(show).patch(rename).delete(remove))
}

#[tracing::instrument(skip_all)]
/// `--allowed-models`: a context may name only a listed model, when there is a list.
fn allowed_model(app: &AppState, id: ModelId) -> Result<ModelId, ApiError> {
    let models = &app.config.models;
    if models.allows(id.as_str()) {
        return Ok(id);
    }
    let id = id.as_str();
    Err(ApiError::bad_request(
        "invalid_model_id",
        format!(
            "Model {id:?} is not offered here; choose one of: {}",
            models.offered().join(", ")
        ),
    ))
}

async fn create(
    State(app): State<AppState>,
    user: User,
    ApiJson(req): ApiJson<CreateContextRequest>,
) -> Result<(StatusCode, Json<ContextSummary>), ApiError> {
    let title = req.title.as_deref().map(parse_title).transpose()?;
    // Stored prompts do not exist yet: an id could only be taken for the prompt's text,
    // and the model would be told the id. Refuse it instead.
    if let Some(id) = req.system_prompt_id {
        return Err(ApiError::bad_request(
            "unknown_system_prompt",
            format!("Unknown system_prompt_id {id:?}: send the prompt text as system_prompt"),
        ));
    }
    let invalid = |code| move |e: ParseError| ApiError::bad_request(code, e.0);
    let new = NewContext {
        title,
        model_id: req
            .model_id
            .map(ModelId::parse)
            .transpose()
            .map_err(invalid("invalid_model_id"))?
            .map(|id| allowed_model(&app, id))
            .transpose()?,
        mode: req
            .mode
            .map(Mode::parse)
            .transpose()
            .map_err(invalid("invalid_mode"))?,
        system_prompt: req
            .system_prompt
            .map(SystemPrompt::parse)
            .transpose()
            .map_err(invalid("invalid_system_prompt"))?,
    };
    let snapshot = app.engine.create_context(user.owner(), new).await?;
    tracing::info!(context_id = %snapshot.record.id, "context created");
    Ok((StatusCode::CREATED, Json(snapshot.summary())))
}

fn parse_title(title: &str) -> Result<Title, ApiError> {
    Title::parse(title).map_err(|e| ApiError::bad_request("invalid_title", e.0))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Words to search for; the answer is then ranked by relevance and has no cursor.
    q: Option<String>,
    /// `created` (the default) or `updated`: newest creation or newest activity first.
    order: Option<Order>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Order {
    Created,
    Updated,
}

impl From<Order> for ListOrder {
    fn from(order: Order) -> Self {
        match order {
            Order::Created => ListOrder::Created,
            Order::Updated => ListOrder::Updated,
        }
    }
}

async fn list(
    State(app): State<AppState>,
    user: User,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListContextsResponse>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    if let Some(words) = q.q {
        if let Some(searches) = &app.searches {
            searches.take(user.as_str())?;
        }
        if q.cursor.is_some() || q.order.is_some() {
            return Err(ApiError::bad_request(
                "invalid_query",
                "a search (q) answers the best matches at once and takes no cursor or order",
            ));
        }
        let query =
            SearchQuery::parse(&words).map_err(|e| ApiError::bad_request("invalid_query", e.0))?;
        let (contexts, total) = app.engine.search(user.owner(), &query, limit).await?;
        return Ok(Json(ListContextsResponse {
            contexts,
            total,
            next_cursor: None,
        }));
    }
    let order = q.order.map_or_else(ListOrder::default, ListOrder::from);
    let after = q
        .cursor
        .map(|c| {
            Cursor::decode(&c)
                .filter(|cursor| cursor.order == order)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        format!(
                            "Invalid cursor {c:?} (a cursor pages only the order it came from)"
                        ),
                    )
                })
        })
        .transpose()?;
    let (contexts, total, next) = app.engine.list(user.owner(), limit, order, after).await?;
    Ok(Json(ListContextsResponse {
        contexts,
        total,
        next_cursor: next.map(|c| c.encode()),
    }))
}

async fn show(
    State(app): State<AppState>,
    ContextId(id): ContextId,
) -> Result<Json<ContextSummary>, ApiError> {
    Ok(Json(app.engine.snapshot(id).await?.summary()))
}

#[tracing::instrument(skip_all, fields(context_id = %id))]
async fn rename(
    State(app): State<AppState>,
    ContextId(id): ContextId,
    ApiJson(req): ApiJson<RenameContextRequest>,
) -> Result<Json<ContextSummary>, ApiError> {
    let title = parse_title(&req.title)?;
    let snapshot = app.engine.rename(id, title).await?;
    Ok(Json(snapshot.summary()))
}

#[tracing::instrument(skip(app))]
async fn remove(
    State(app): State<AppState>,
    user: User,
    ContextId(id): ContextId,
) -> Result<StatusCode, ApiError> {
    app.engine.delete(user.owner(), id).await?;
    tracing::info!(context_id = %id, "context deleted");
    Ok(StatusCode::NO_CONTENT)
}
