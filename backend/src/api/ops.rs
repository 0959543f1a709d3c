//! Operations: health, readiness, metrics, the OpenAPI document and the migration guide.

use super::error::ApiError;
use super::legacy::MIGRATION_GUIDE_PATH;
use super::shared::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// The OpenAPI document, kept beside the code and served as is.
pub const OPENAPI: &str = include_str!("../../openapi.json");
const MIGRATION_GUIDE: &str = include_str!("../../../MIGRATION_GUIDE.md");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(
            MIGRATION_GUIDE_PATH,
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                    MIGRATION_GUIDE,
                )
            }),
        )
}

async fn ready(State(app): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    app.engine.store().ping().await?;
    Ok(Json(json!({"status": "ready"})))
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.engine.metrics().render(),
    )
}
