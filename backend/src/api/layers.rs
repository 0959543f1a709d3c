//! The cross-cutting layers around every route, listed once from the inside out, so that
//! `poll-bench --layers` can build the stack a layer at a time and show what each costs.

use super::error::{self, ApiError};
use super::{browser, headers, ApiConfig, AppState, REQUEST_ID_HEADER};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::any::Any;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use uuid::Uuid;

/// Longest client-chosen request id that is echoed; longer ones are replaced.
const MAX_REQUEST_ID_CHARS: usize = 128;
/// Longest request path written into a log line, in bytes.
const MAX_LOGGED_PATH_CHARS: usize = 256;

/// One layer of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    BodyLimit,
    CatchPanic,
    BodyReadTimeout,
    KnownHostsOnly,
    Trace,
    InFlightLimit,
    RequestId,
    SecurityHeaders,
}

/// The stack, from the inside out: the last one sees a request first.
pub const STACK: [Layer; 8] = [
    Layer::BodyLimit,
    Layer::CatchPanic,
    Layer::BodyReadTimeout,
    Layer::KnownHostsOnly,
    Layer::Trace,
    Layer::InFlightLimit,
    Layer::RequestId,
    Layer::SecurityHeaders,
];

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::BodyLimit => "body_limit",
            Layer::CatchPanic => "catch_panic",
            Layer::BodyReadTimeout => "body_read_timeout",
            Layer::KnownHostsOnly => "known_hosts_only",
            Layer::Trace => "trace",
            Layer::InFlightLimit => "in_flight_limit",
            Layer::RequestId => "request_id",
            Layer::SecurityHeaders => "security_headers",
        }
    }

    fn wrap(self, router: Router<AppState>, config: &ApiConfig) -> Router<AppState> {
        match self {
            Layer::BodyLimit => router.layer(DefaultBodyLimit::max(config.max_body_bytes)),
            Layer::CatchPanic => router.layer(CatchPanicLayer::custom(panic_response)),
            Layer::BodyReadTimeout => {
                router.layer(RequestBodyTimeoutLayer::new(config.body_read_timeout))
            }
            Layer::KnownHostsOnly => router.layer(middleware::from_fn_with_state(
                config.allowed_hosts.clone(),
                browser::known_hosts_only,
            )),
            Layer::Trace => router.layer(TraceLayer::new_for_http().make_span_with(request_span)),
            Layer::InFlightLimit => router.layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                        ApiError::overloaded()
                    }))
                    .load_shed()
                    // Global: `Router::layer` wraps each route apart, so a plain
                    // concurrency limit would count per route; this one shares one
                    // semaphore.
                    .layer(GlobalConcurrencyLimitLayer::new(config.max_in_flight)),
            ),
            Layer::RequestId => router.layer(middleware::from_fn(request_id)),
            Layer::SecurityHeaders => router.layer(headers::layers()),
        }
    }
}

/// Wraps `site` in the first `depth` layers of [`STACK`] (all of them in the server).
pub(super) fn wrap(site: Router<AppState>, config: &ApiConfig, depth: usize) -> Router<AppState> {
    STACK
        .iter()
        .take(depth)
        .fold(site, |router, layer| layer.wrap(router, config))
}

/// The request's id, in one layer: a usable id the client sent is kept (a short printable
/// one: it is echoed into logs and answers), anything else is replaced by a fresh UUID. It
/// goes into the request (the log span and handlers read it), into the task-local error
/// bodies quote, and onto the response. One middleware instead of four (tower-http's set
/// and propagate layers, a filter before them and the task-local scope after): each layer
/// `Router::layer` adds boxes the service once more, and `poll-bench --layers` showed the
/// four costing more than the one.
async fn request_id(mut req: Request, next: Next) -> Response {
    let sent = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|v| usable_request_id(v.as_bytes()));
    let id = match sent {
        Some(id) => id.clone(),
        None => {
            let mut buffer = Uuid::encode_buffer();
            let fresh = Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
            // Hex digits and hyphens: always a valid header value.
            let id = HeaderValue::from_str(fresh).unwrap_or(HeaderValue::from_static("-"));
            req.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
            id
        }
    };
    let text = id.to_str().unwrap_or_default().to_owned();
    let mut response = error::scope_request_id(text, next.run(req)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}

fn usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_CHARS && id.iter().all(u8::is_ascii_graphic)
}

/// Every log line of a request carries its id, so an error's cause can be found from
/// the id the client was shown.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // A slice, not a copy: it is taken on every request, logged or not.
    let path = req.uri().path();
    let end = (0..=MAX_LOGGED_PATH_CHARS.min(path.len()))
        .rev()
        .find(|&i| path.is_char_boundary(i))
        .unwrap_or(0);
    let path = &path[..end];
    tracing::info_span!("request", method = %req.method(), path, request_id = id)
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
