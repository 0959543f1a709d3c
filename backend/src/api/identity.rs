//! Where identity enters the API: [`RequireUserLayer`] is the one layer that authenticates
//! a request (asking `crate::auth`, per `--auth`) and puts the caller's [`User`] into it;
//! handlers take `User` as an extractor, which only reads what the layer put there.
//! Routes outside the layer (health, metrics, the OpenAPI document, the web app) need no
//! credentials.

use super::browser;
use super::error::ApiError;
use super::limiter::TurnLimiter;
use crate::auth::{AuthError, Authenticator, User};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{self, BoxFuture, Either};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The layer where identity enters, and the checks that need the caller: authenticates
/// (a request without a user is answered `401 unauthenticated` with
/// `WWW-Authenticate: Bearer`) and hands the `User` to the handler; then refuses a `POST`
/// another site's form could have sent (`browser.rs`), and takes a write from the user's
/// budget (`limiter.rs`). A typed service in one step, not three `middleware::from_fn`
/// layers: each of those boxed the service, its future and the rest of the chain on
/// every request, the polling hot path included.
#[derive(Clone)]
pub struct RequireUserLayer {
    gate: Arc<Gate>,
}

struct Gate {
    auth: Arc<Authenticator>,
    /// Whether a `POST` shows it was not sent by another site's form.
    post_allowed: fn(&Request) -> bool,
    /// Each user's budget of writes (`--writes-per-minute`: every POST, PATCH and DELETE,
    /// the legacy writes included), when there is one; checked before the handler reads
    /// the body.
    writes: Option<Arc<TurnLimiter>>,
}

impl std::fmt::Debug for RequireUserLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireUserLayer")
            .field("auth", &self.gate.auth)
            .field("writes", &self.gate.writes)
            .finish_non_exhaustive()
    }
}

impl RequireUserLayer {
    pub fn new(
        auth: Arc<Authenticator>,
        post_allowed: fn(&Request) -> bool,
        writes: Option<Arc<TurnLimiter>>,
    ) -> Self {
        RequireUserLayer {
            gate: Arc::new(Gate {
                auth,
                post_allowed,
                writes,
            }),
        }
    }
}

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUser<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireUser {
            gate: self.gate.clone(),
            inner,
        }
    }
}

/// See [`RequireUserLayer`].
#[derive(Clone)]
pub struct RequireUser<S> {
    gate: Arc<Gate>,
    inner: S,
}

impl<S> std::fmt::Debug for RequireUser<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireUser").finish_non_exhaustive()
    }
}

impl<S> Service<Request> for RequireUser<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    /// The inner service's own future when the caller is known at once (`--auth none` and
    /// `proxy`: nothing boxed on the polling hot path), a boxed one when a token has to be
    /// checked first or the request is refused.
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let gate = self.gate.clone();
        if let Some(user) = gate.auth.authenticate_now(req.headers(), peer(&req)) {
            return match gate.refuse(user, &mut req) {
                None => Either::Left(self.inner.call(req)),
                Some(refused) => Either::Right(Box::pin(future::ready(Ok(refused)))),
            };
        }
        // The clone left behind; the one made ready goes with the request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            let user = gate.auth.authenticate(req.headers(), peer(&req)).await;
            match gate.refuse(user, &mut req) {
                None => inner.call(req).await,
                Some(refused) => Ok(refused),
            }
        }))
    }
}

/// The connection's peer, as `serve.rs` tags each request (none in-process).
fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

impl Gate {
    /// Puts the user into the request, or answers the request (`Some`) when it is refused.
    fn refuse(&self, user: Result<User, AuthError>, req: &mut Request) -> Option<Response> {
        let user = match user {
            Ok(user) => user,
            Err(e) => {
                let mut response = ApiError::from(e).into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Some(response);
            }
        };
        if req.method() == Method::POST && !(self.post_allowed)(req) {
            return Some(browser::cross_site_post().into_response());
        }
        let write = matches!(*req.method(), Method::POST | Method::PATCH | Method::DELETE);
        if let (true, Some(writes)) = (write, &self.writes) {
            if let Err(e) = writes.take(user.as_str()) {
                return Some(e.into_response());
            }
        }
        req.extensions_mut().insert(user);
        None
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only a route outside `RequireUserLayer` can miss it: a wiring bug, not a client error.
        parts.extensions.get::<User>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "This route is not behind authentication",
            )
        })
    }
}
