//! `GET /v1/models`: the models a chat may use (`--allowed-models`, else the server's).

use super::not_found;
use crate::api::error::ApiError;
use crate::api::AppState;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{id}", get(show))
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "chatsync"})
}

async fn list(State(app): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = app
        .config
        .models
        .offered()
        .iter()
        .map(|m| model(m))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if app.config.models.offered().contains(&id) {
        Ok(Json(model(&id)))
    } else {
        Err(not_found("model", &id))
    }
}
