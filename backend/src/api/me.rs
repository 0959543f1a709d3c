//! `GET /api/me`: who the server takes the caller for.

use super::shared::AppState;
use crate::auth::User;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/me", get(me))
}

async fn me(user: User) -> Json<Value> {
    Json(json!({ "user_id": user.as_str() }))
}
