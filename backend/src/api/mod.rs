//! The HTTP API. Each feature module owns its routes; `router` merges them and adds the
//! cross-cutting layers (body limit and read timeout, in-flight limit, request ids, JSON
//! errors for everything, panics, CORS, tracing). What the feature modules share (the
//! `AppState` their handlers get, the header names) is in `shared.rs`, not here.

mod actions;
mod browser;
mod contexts;
pub mod error;
mod extract;
mod hosts;
mod identity;
mod legacy;
mod limiter;
mod me;
mod ops;
mod polls;
mod quota;
mod shared;
mod state;

pub use error::REQUEST_ID_HEADER;
pub use hosts::AllowedHosts;
pub use legacy::MIGRATION_GUIDE_PATH;
pub use limiter::TurnLimiter;
pub use ops::OPENAPI;
pub use polls::LivePolls;
pub use shared::{ApiConfig, AppState};
pub use state::MAX_WAIT_MS;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use error::ApiError;
use shared::{IDEMPOTENCY_KEY, REQUESTED_WITH};
use std::any::Any;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

/// Longest client-chosen request id that is echoed; longer ones are replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest request path written into a log line.
const MAX_LOGGED_PATH_CHARS: usize = 256;

pub fn router(app: AppState) -> Result<Router, String> {
    let config = app.config.clone();
    // Every route a user's data is behind goes through the one authentication layer.
    let users = Router::new()
        .merge(contexts::routes())
        .merge(actions::routes())
        .merge(state::routes())
        .merge(legacy::routes(app.clone()))
        .merge(me::routes())
        .route_layer(middleware::from_fn(browser::script_posts_only))
        .route_layer(middleware::from_fn_with_state(
            app.auth.clone(),
            identity::require_user,
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
    // Listed from the inside out: the last layer sees a request first.
    let mut router = site
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(RequestBodyTimeoutLayer::new(config.body_read_timeout))
        .layer(middleware::from_fn_with_state(
            config.allowed_hosts.clone(),
            browser::known_hosts_only,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::overloaded()
                }))
                .load_shed()
                // Global: `Router::layer` wraps each route apart, so a plain concurrency
                // limit would count per route; this one shares one semaphore.
                .layer(GlobalConcurrencyLimitLayer::new(config.max_in_flight)),
        )
        .layer(middleware::from_fn(error::scope_request_id))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            REQUEST_ID_HEADER,
        )))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(REQUEST_ID_HEADER),
            MakeRequestUuid,
        ))
        .layer(middleware::map_request(drop_unusable_request_id))
        .with_state(app);
    if let Some(origin) = &config.cors_allow_origin {
        router = router.layer(cors(origin)?);
    }
    Ok(router)
}

/// A client's request id is echoed into logs and answers, so only a short printable one
/// is kept; anything else is dropped and a fresh one generated.
async fn drop_unusable_request_id(mut req: Request) -> Request {
    let usable = req.headers().get(REQUEST_ID_HEADER).is_none_or(|v| {
        let id = v.as_bytes();
        !id.is_empty() && id.len() <= MAX_REQUEST_ID_CHARS && id.iter().all(u8::is_ascii_graphic)
    });
    if !usable {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

/// Every log line of a request carries its id, so an error's cause can be found from
/// the id the client was shown.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let path: String = req
        .uri()
        .path()
        .chars()
        .take(MAX_LOGGED_PATH_CHARS)
        .collect();
    tracing::info_span!("request", method = %req.method(), path, request_id = id)
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

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(
        "internal",
        &format_args!("a request handler panicked: {detail}"),
    )
    .into_response()
}
