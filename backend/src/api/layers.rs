//! The cross-cutting layers around the whole application, listed once from the inside
//! out ([`STACK`]), so that `poll-bench --layers` can build the stack a layer at a time
//! and show what each costs.
//!
//! They wrap the finished router once, as concrete tower services ([`service`]): no layer
//! boxes the service or its future. (`Router::layer` would wrap every route's boxed
//! service apart, and axum clones that boxed stack on every request: each layer cost an
//! allocation or two per request that way.) Wrapped once, a plain concurrency limit is one
//! semaphore for every route: the clones of the service share it.

use super::error::{self, ApiError};
use super::{browser, headers, ApiConfig};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::{self, Either, FutureExt, Map, Ready};
use std::any::Any;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tower::limit::ConcurrencyLimitLayer;
use tower::{BoxError, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
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
}

/// The application as a service: what [`service`] builds and `serve.rs` serves.
pub trait AppService:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AppService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Says, layer by layer from the outside in, whether a layer is among the first `depth`
/// of [`STACK`]; and checks that [`service`] names them in `STACK`'s order.
struct Depth {
    depth: usize,
    /// The position in `STACK` of the layer asked about last.
    last: usize,
}

impl Depth {
    fn includes(&mut self, layer: Layer) -> bool {
        let at = STACK
            .iter()
            .position(|l| *l == layer)
            .unwrap_or(STACK.len());
        assert!(
            at < self.last,
            "api::layers::service must add {} outside the layers after it in STACK",
            layer.name()
        );
        self.last = at;
        at < self.depth
    }
}

/// The application: `site` inside the first `depth` layers of [`STACK`] (all of them in
/// the server), then CORS when configured. A layer left out is an `Identity` in its place,
/// so every depth has this one type.
pub(super) fn service(
    site: Router,
    config: &ApiConfig,
    cors: Option<tower_http::cors::CorsLayer>,
    depth: usize,
) -> impl AppService {
    let mut on = Depth {
        depth,
        last: STACK.len(),
    };
    ServiceBuilder::new()
        .option_layer(cors)
        .option_layer(on.includes(Layer::SecurityHeaders).then(headers::layers))
        // The request's id: a usable id the client sent is kept (a short printable one:
        // it is echoed into logs and answers), anything else is replaced by a fresh one
        // ([`CountedIds`]). tower-http's layers put it into the request (the log span and
        // handlers read it) and onto the response; the last one makes it known to the
        // error bodies answered inside.
        .option_layer(on.includes(Layer::RequestId).then(|| {
            ServiceBuilder::new()
                .map_request(drop_unusable_request_id as fn(Request) -> Request)
                .layer(SetRequestIdLayer::x_request_id(CountedIds::new()))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(tower::layer::layer_fn(error::ScopeRequestId::new))
        }))
        // Past `--max-in-flight` requests, the next is answered 503 `overloaded` at once.
        .option_layer(on.includes(Layer::InFlightLimit).then(|| {
            ServiceBuilder::new()
                .layer(tower::layer::layer_fn(|inner| Overloaded {
                    inner,
                    refused: false,
                }))
                .load_shed()
                .layer(ConcurrencyLimitLayer::new(config.max_in_flight))
        }))
        .option_layer(on.includes(Layer::Trace).then(|| {
            ServiceBuilder::new()
                // The traced body is wrapped; every depth answers axum's `Body`.
                .map_response(axum_body)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span as fn(&Request) -> tracing::Span),
                )
        }))
        .option_layer(
            on.includes(Layer::KnownHostsOnly)
                .then(|| browser::KnownHostsLayer::new(config.allowed_hosts.clone())),
        )
        .option_layer(
            on.includes(Layer::BodyReadTimeout)
                .then(|| RequestBodyTimeoutLayer::new(config.body_read_timeout)),
        )
        .option_layer(on.includes(Layer::CatchPanic).then(|| {
            ServiceBuilder::new()
                .map_response(axum_body)
                .layer(CatchPanicLayer::custom(
                    panic_response as fn(Box<dyn Any + Send>) -> Response,
                ))
        }))
        .option_layer(
            on.includes(Layer::BodyLimit)
                .then(|| DefaultBodyLimit::max(config.max_body_bytes)),
        )
        .service(site)
}

/// A response with its body as axum's `Body`, so a layer that wraps the body has the type
/// of the identity in its place.
fn axum_body<B>(response: axum::http::Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(Body::new)
}

/// The in-flight limit's answers: tower's load shedder refuses at once (its only error)
/// when the concurrency limit has no slot free; the refusal is our JSON 503.
#[derive(Debug, Clone)]
struct Overloaded<S> {
    inner: S,
    /// The inner service failed to get ready: the next call is refused.
    refused: bool,
}

type Answer = Result<Response, Infallible>;

impl<S> Service<Request> for Overloaded<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answer>, Map<S::Future, fn(Result<Response, BoxError>) -> Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.refused = ready!(self.inner.poll_ready(cx)).is_err();
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if std::mem::take(&mut self.refused) {
            return Either::Left(future::ready(Ok(ApiError::overloaded().into_response())));
        }
        Either::Right(self.inner.call(req).map(overloaded_on_error as fn(_) -> _))
    }
}

fn overloaded_on_error(answer: Result<Response, BoxError>) -> Answer {
    Ok(answer.unwrap_or_else(|_| ApiError::overloaded().into_response()))
}

fn drop_unusable_request_id(mut req: Request) -> Request {
    let unusable = req
        .headers()
        .get(super::REQUEST_ID_HEADER)
        .is_some_and(|id| !usable_request_id(id.as_bytes()));
    if unusable {
        req.headers_mut().remove(super::REQUEST_ID_HEADER);
    }
    req
}

fn usable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_CHARS && id.iter().all(u8::is_ascii_graphic)
}

/// Fresh request ids without a system call each: a random prefix drawn once per server
/// and a counter, written as a UUID (version 8, "custom"). Unique within the server and
/// across servers (the prefix), and not guessable across restarts; ids are for finding
/// log lines, never a secret.
#[derive(Debug, Clone)]
struct CountedIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl CountedIds {
    fn new() -> Self {
        CountedIds {
            prefix: Uuid::new_v4().as_u64_pair().0,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next_id(&self) -> Uuid {
        let count = self.next.fetch_add(1, Ordering::Relaxed);
        let bytes = Uuid::from_u64_pair(self.prefix, count).into_bytes();
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

impl MakeRequestId for CountedIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut buffer = Uuid::encode_buffer();
        let id = self.next_id().hyphenated().encode_lower(&mut buffer);
        // Hex digits and hyphens: always a valid header value.
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// Every log line of a request carries its id, so an error's cause can be found from
/// the id the client was shown.
fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(super::REQUEST_ID_HEADER)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AllowedHosts;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    fn config() -> ApiConfig {
        ApiConfig {
            legacy_crud: false,
            wait_timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            cors_allow_origin: None,
            web_dir: None,
            max_in_flight: 8,
            body_read_timeout: Duration::from_secs(1),
            models: Arc::new(crate::llm::ModelCatalog::new(&[], "m")),
            allowed_hosts: Arc::new(AllowedHosts::from_flag(&[])),
        }
    }

    fn site() -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("boom at the handler");
                    }
                    "never"
                }),
            )
            .fallback(|| async { ApiError::not_found("nothing here") })
    }

    fn app(depth: usize) -> impl AppService {
        service(site(), &config(), None, depth)
    }

    /// Status, headers and JSON body (`null` if none) of a `GET path` with this `Host`.
    async fn call(
        app: impl AppService,
        path: &str,
        host: &str,
        request_id: Option<&str>,
    ) -> (
        axum::http::StatusCode,
        axum::http::HeaderMap,
        serde_json::Value,
    ) {
        let mut request = axum::http::Request::get(path).header("host", host);
        if let Some(id) = request_id {
            request = request.header(super::super::REQUEST_ID_HEADER, id);
        }
        let response = app
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn every_depth_of_the_stack_builds_in_its_order_and_answers() {
        for depth in 0..=STACK.len() {
            let (status, ..) = call(app(depth), "/ok", "localhost", None).await;
            assert_eq!(status, 200, "depth {depth}");
        }
    }

    /// Answers made inside the stack (a panic, the fallback's 404, the known-hosts refusal
    /// made before the router is called) all carry the request id, in the header and in the
    /// JSON body, and the security headers.
    #[tokio::test]
    async fn errors_from_every_layer_carry_the_request_id_and_the_security_headers() {
        for (path, host, status, code) in [
            ("/boom", "localhost", 500, "internal"),
            ("/nowhere", "localhost", 404, "not_found"),
            ("/ok", "evil.example", 421, "unknown_host"),
        ] {
            let (got, headers, body) = call(app(STACK.len()), path, host, Some("trace-7")).await;
            assert_eq!(got, status, "{path} {body}");
            assert_eq!(body["error"]["code"], code, "{path}");
            assert_eq!(body["error"]["request_id"], "trace-7", "{path}");
            assert_eq!(
                headers[super::super::REQUEST_ID_HEADER],
                "trace-7",
                "{path}"
            );
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert!(headers.contains_key("content-security-policy"), "{path}");
        }
        let (_, _, body) = call(app(STACK.len()), "/boom", "localhost", Some("trace-7")).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("(request id trace-7)"), "{message}");
        assert!(!message.contains("boom at the handler"), "{message}");
    }

    #[tokio::test]
    async fn an_unusable_request_id_is_replaced_by_a_fresh_one_each_time() {
        let app = app(STACK.len());
        let mut seen = Vec::new();
        for sent in [None, Some("a b"), Some(""), None] {
            let (_, headers, body) = call(app.clone(), "/nowhere", "localhost", sent).await;
            let id = headers[super::super::REQUEST_ID_HEADER]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert!(Uuid::try_parse(&id).is_ok(), "{sent:?}: {id}");
            assert_eq!(body["error"]["request_id"], id.as_str());
            seen.push(id);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    /// A slot of the in-flight limit is given back when its response is made: one slot
    /// serves request after request.
    #[tokio::test]
    async fn one_in_flight_slot_serves_requests_one_after_another() {
        let app = service(
            site(),
            &ApiConfig {
                max_in_flight: 1,
                ..config()
            },
            None,
            STACK.len(),
        );
        for _ in 0..3 {
            let (status, ..) = call(app.clone(), "/ok", "localhost", None).await;
            assert_eq!(status, 200);
        }
    }

    #[test]
    fn fresh_ids_are_distinct_uuids_with_one_prefix() {
        let ids = CountedIds::new();
        let (a, b) = (ids.next_id(), ids.next_id());
        assert_ne!(a, b);
        assert_eq!(a.get_version(), Some(uuid::Version::Custom));
        assert_eq!(a.as_bytes()[..6], b.as_bytes()[..6]);
        assert_ne!(
            CountedIds::new().next_id().as_bytes()[..6],
            a.as_bytes()[..6],
            "another server draws another prefix"
        );
    }

    #[test]
    fn only_short_printable_ids_are_kept() {
        assert!(usable_request_id(b"trace-42"));
        assert!(usable_request_id(&[b'x'; MAX_REQUEST_ID_CHARS]));
        assert!(!usable_request_id(&[b'x'; MAX_REQUEST_ID_CHARS + 1]));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id(b"a b"));
        assert!(!usable_request_id(b"id\x01"));
    }
}
