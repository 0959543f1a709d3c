//! The HTTP API. Each feature module owns its routes; `service` merges them and wraps the
//! whole once in the cross-cutting layers (`layers`: body limit and read timeout, known
//! hosts, in-flight limit, request ids, JSON errors for everything, panics, tracing,
//! security headers; then CORS). What the
//! feature modules share (the `AppState` their handlers get, the header names) is in
//! `shared.rs`.

mod actions;
pub(crate) mod browser;
mod contexts;
pub mod error;
pub(crate) mod extract;
mod headers;
mod hosts;
pub(crate) mod identity;
pub mod layers;
mod legacy;
mod limiter;
mod me;
mod models;
mod ops;
pub(crate) mod polls;
pub(crate) mod quota;
mod shared;
mod state;

pub use error::REQUEST_ID_HEADER;
pub use headers::CONTENT_SECURITY_POLICY;
pub use hosts::AllowedHosts;
pub use legacy::MIGRATION_GUIDE_PATH;
pub use limiter::TurnLimiter;
pub use ops::OPENAPI;
pub use polls::LivePolls;
pub use shared::{ApiConfig, AppFields, AppState};
pub use state::MAX_WAIT_MS;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use error::ApiError;
use shared::{IDEMPOTENCY_KEY, REQUESTED_WITH};
use std::convert::Infallible;
use tower::util::BoxCloneSyncService;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};

/// The application as one service, boxed once: what tests and benchmarks call in-process
/// (`tower::ServiceExt::oneshot`).
pub type App = BoxCloneSyncService<Request, Response, Infallible>;

/// The application with every layer, as the server runs it (unboxed).
pub fn service(app: AppState) -> Result<impl layers::AppService, String> {
    service_with_layers(app, layers::STACK.len())
}

/// The application, boxed once: for calling in-process.
pub fn router(app: AppState) -> Result<App, String> {
    router_with_layers(app, layers::STACK.len())
}

/// The application with only the first `depth` layers of [`layers::STACK`], boxed once:
/// for measuring what each costs (`poll-bench --layers`); the server uses [`service`].
pub fn router_with_layers(app: AppState, depth: usize) -> Result<App, String> {
    service_with_layers(app, depth).map(BoxCloneSyncService::new)
}

fn service_with_layers(app: AppState, depth: usize) -> Result<impl layers::AppService, String> {
    let config = app.config.clone();
    // Every route a user's data is behind goes through the one authentication layer.
    let users = Router::new()
        .merge(contexts::routes())
        .merge(actions::routes())
        .merge(state::routes())
        .merge(legacy::routes(app.clone()))
        .merge(me::routes())
        .merge(models::routes())
        .route_layer(identity::RequireUserLayer::new(
            app.auth.clone(),
            browser::sent_by_script,
            app.writes.clone(),
        ));
    // The OpenAI-compatible API: the same identity and scoping, errors in OpenAI's shape
    // (authentication's included).
    let openai = crate::v1::routes()
        .route_layer(identity::RequireUserLayer::new(
            app.auth.clone(),
            crate::v1::sent_by_sdk,
            None,
        ))
        .layer(middleware::from_fn(crate::v1::error::openai_errors));
    let api = users
        .merge(openai)
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
    let cors = config.cors_allow_origin.as_deref().map(cors).transpose()?;
    Ok(layers::service(site.with_state(app), &config, cors, depth))
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
        // Cookies and credentials only for the one origin named; never for `*`.
        .allow_credentials(origin != "*")
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static(IDEMPOTENCY_KEY),
            HeaderName::from_static(REQUESTED_WITH),
            HeaderName::from_static(REQUEST_ID_HEADER),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            HeaderName::from_static(REQUEST_ID_HEADER),
        ]))
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
