//! The HTTP API. Each feature module owns its routes; `router` merges them and adds the
//! cross-cutting layers (body limit, JSON errors for everything, panics, CORS, tracing).

mod actions;
mod contexts;
pub mod error;
mod extract;
mod legacy;
mod me;
mod ops;
mod state;

pub use legacy::MIGRATION_GUIDE_PATH;
pub use ops::OPENAPI;
pub use state::{LivePolls, MAX_WAIT_MS};

use crate::engine::Engine;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use error::ApiError;
use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub legacy_crud: bool,
    /// How long an action waits for its turn to rest before answering 202.
    pub wait_timeout: Duration,
    pub max_body_bytes: usize,
    /// Origin allowed to call the API from another site (`*` for any).
    pub cors_allow_origin: Option<String>,
    /// The built web app, served at `/`.
    pub web_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    /// How callers are identified (see `crate::auth`).
    pub auth: Arc<crate::auth::Authenticator>,
    pub engine: Arc<Engine>,
    pub config: Arc<ApiConfig>,
    /// Held long polls: their bound, and the signal that answers them at shutdown.
    pub polls: Arc<LivePolls>,
}

pub fn router(app: AppState) -> Result<Router, String> {
    let config = app.config.clone();
    // Every route a user's data is behind goes through the one authentication layer.
    let users = Router::new()
        .merge(contexts::routes())
        .merge(actions::routes())
        .merge(state::routes())
        .merge(legacy::routes(app.clone()))
        .merge(me::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            app.auth.clone(),
            crate::auth::require_user,
        ));
    let api = users
        .merge(ops::routes())
        .route("/api", any(unknown_route))
        .route("/api/{*rest}", any(unknown_route))
        .method_not_allowed_fallback(method_not_allowed);
    let site = match &config.web_dir {
        Some(dir) if dir.join("index.html").is_file() => api
            .fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        Some(dir) => {
            tracing::warn!(web_dir = %dir.display(), "no index.html in the web folder: serving the API only");
            api.fallback(no_web_app)
        }
        None => api.fallback(no_web_app),
    };
    let mut router = site
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(app);
    if let Some(origin) = &config.cors_allow_origin {
        router = router.layer(cors(origin)?);
    }
    Ok(router)
}

fn cors(origin: &str) -> Result<CorsLayer, String> {
    let allow = if origin == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::exact(
            HeaderValue::from_str(origin)
                .map_err(|e| format!("bad CORS origin {origin:?}: {e}"))?,
        )
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::ETAG]))
}

async fn unknown_route() -> ApiError {
    ApiError::not_found("No such endpoint; see /api/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This endpoint does not accept that method",
    )
}

async fn no_web_app() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><title>chatsync</title><p>The chatsync API is running at \
             <code>/api</code>, but no web app is served: build it with <code>web/scripts/build.sh</code> \
             and start the server with <code>--web-dir web/dist</code>.</p>",
        ),
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal server error",
    )
    .into_response()
}
