//! `GET /api/models`: the models a new chat may name, and the one it gets without one.

use super::shared::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/models", get(models))
}

async fn models(State(app): State<AppState>) -> Json<Value> {
    let catalog = &app.config.models;
    Json(json!({ "models": catalog.offered(), "default": catalog.default_model() }))
}
