//! Helpers shared by the backend's integration tests: one harness that builds the real
//! application, so the tests exercise the same wiring `main` starts.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chatsync::config::Config;
use chatsync::engine::Engine;
use chatsync::llm::Model;
use chatsync::Application;
use chatsync_protocol::{content_text, ChatState};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// A route's whole answer; a body that is not JSON is kept as a string.
#[allow(dead_code)] // Only the HTTP tests call routes.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// The real application on port 0 with its own SQLite file, called in-process.
pub struct TestApp {
    app: Application,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Builds the application from command-line `flags`, as `main` would. Unless the flags
    /// say otherwise, the database is a fresh file, the port is free and the scripted model
    /// streams without delay.
    pub async fn spawn(flags: &[&str]) -> Self {
        Self::build(flags, None).await
    }

    /// Like [`TestApp::spawn`], with `model` in place of the model the flags name.
    #[allow(dead_code)] // Not every test file brings its own model.
    pub async fn spawn_with_model(flags: &[&str], model: Arc<dyn Model>) -> Self {
        Self::build(flags, Some(model)).await
    }

    async fn build(flags: &[&str], model: Option<Arc<dyn Model>>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = format!("sqlite://{}/db.sqlite", dir.path().display());
        let mut args = vec!["chatsync".to_owned()];
        for (flag, default) in [
            ("--database-url", database_url.as_str()),
            ("--addr", "127.0.0.1:0"),
            ("--scripted-chunk-delay-ms", "0"),
        ] {
            if !flags.contains(&flag) {
                args.extend([flag.to_owned(), default.to_owned()]);
            }
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        let config = Config::try_parse_from(&args).expect("flags");
        let app = match model {
            Some(model) => Application::build_with_model(config, model).await,
            None => Application::build(config).await,
        }
        .expect("application");
        TestApp { app, _dir: dir }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        self.app.engine()
    }

    #[allow(dead_code)] // Only the HTTP tests call routes.
    pub fn router(&self) -> axum::Router {
        self.app.router()
    }

    /// Calls one route in-process and reads the whole answer.
    #[allow(dead_code)] // Only the HTTP tests call routes.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        // As if from a client on this host, the way the server's connections tag requests.
        let req = req
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40_000,
            ))))
            .body(
                body.map(|b| Body::from(b.to_owned()))
                    .unwrap_or_else(Body::empty),
            )
            .expect("request");
        let response = self.router().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// The text of the last message of a state ("" when there is none).
#[allow(dead_code)] // Not every test file reads replies this way.
pub fn last_text(state: &ChatState) -> String {
    state
        .messages
        .last()
        .map(|m| content_text(&m.content))
        .unwrap_or_default()
}
