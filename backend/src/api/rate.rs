//! `--writes-per-minute`: every POST, PATCH and DELETE a user sends (actions, approvals
//! and the legacy writes included) counts against one budget, checked once the caller is
//! known and before the handler reads the body.

use super::shared::AppState;
use crate::auth::User;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// A route layer inside the authentication layer.
pub async fn limit_writes(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let writes = matches!(*req.method(), Method::POST | Method::PATCH | Method::DELETE);
    if let (true, Some(limiter), Some(user)) = (writes, &app.writes, req.extensions().get::<User>())
    {
        if let Err(e) = limiter.take(user.as_str()) {
            return e.into_response();
        }
    }
    next.run(req).await
}
