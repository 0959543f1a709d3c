//! Helpers shared by the backend's integration tests: one harness that builds the real
//! application, so the tests exercise the same wiring `main` starts. A `TestApp` is called
//! in-process (`call`, `get`, `post_json`); `serve` puts it on its real socket on
//! 127.0.0.1 for tests of the connection itself. `eventually` is the one way to wait.

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
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Between two looks at something a test waits for.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A route's whole answer; a body that is not JSON is kept as a string.
#[allow(dead_code)] // Only the HTTP tests call routes.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// The real application on port 0 with its own SQLite file, called in-process.
pub struct TestApp {
    app: Application,
    db: PathBuf,
    dir: tempfile::TempDir,
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
        let db = dir.path().join("db.sqlite");
        let database_url = format!("sqlite://{}", db.display());
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
        TestApp { app, db, dir }
    }

    /// The SQLite file of this application (unless the flags named another database).
    #[allow(dead_code)] // Only some tests reach into the database.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// Serves the application on its socket (127.0.0.1, a free port) until the returned
    /// server is stopped or dropped.
    #[allow(dead_code)] // Only the tests of the connection itself need a socket.
    pub fn serve(self) -> Served {
        let addr = self.app.local_addr().expect("addr");
        let engine = self.app.engine().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(self.app.run_until(async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            engine,
            db: self.db,
            stop: Some(stop),
            running: Some(running),
            _dir: self.dir,
        }
    }

    #[allow(dead_code)] // Not every test file reaches into the engine.
    pub fn engine(&self) -> &Arc<Engine> {
        self.app.engine()
    }

    #[allow(dead_code)] // Only the HTTP tests call routes.
    pub fn router(&self) -> chatsync::api::App {
        self.app.router()
    }

    /// `GET uri`, in-process.
    #[allow(dead_code)] // Only the HTTP tests call routes.
    pub async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, &[], None).await
    }

    /// `POST uri` with a JSON body, in-process.
    #[allow(dead_code)] // Only the HTTP tests call routes.
    pub async fn post_json(&self, uri: &str, body: Value) -> Answer {
        self.call(
            Method::POST,
            uri,
            &[("content-type", "application/json")],
            Some(&body.to_string()),
        )
        .await
    }

    /// Everything the store holds for these owners (their contexts, each with its
    /// messages), to prove a request changed nothing.
    #[allow(dead_code)] // Only the tests of refused requests compare stores.
    pub async fn dump(&self, owners: &[&str]) -> String {
        let store = self.engine().store();
        let mut out = String::new();
        for owner in owners {
            let page = store
                .list_contexts(owner, 200, Default::default(), None)
                .await
                .expect("list");
            out.push_str(&format!("{owner}: {page:?}\n"));
            for c in &page.contexts {
                let loaded = store.load_context(c.id).await.expect("load");
                out.push_str(&format!("{loaded:?}\n"));
            }
        }
        out
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
        Answer {
            status,
            headers,
            body: json_or_text(&bytes),
        }
    }
}

/// The application served on a real socket on 127.0.0.1 (`TestApp::serve`).
#[allow(dead_code)] // Only the tests of the connection itself need a socket.
pub struct Served {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
    engine: Arc<Engine>,
    db: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)] // Only the tests of the connection itself need a socket.
impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The SQLite file of this application.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// `GET path` over HTTP.
    pub async fn get(&self, path: &str) -> Answer {
        read(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// `POST path` with a JSON body over HTTP.
    pub async fn post_json(&self, path: &str, body: Value) -> Answer {
        let sent = self.http.post(self.url(path)).json(&body).send().await;
        read(sent.expect("POST")).await
    }

    /// Creates a context with the defaults and answers its id.
    pub async fn new_context(&self) -> String {
        let created = self.post_json("/api/contexts", serde_json::json!({})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        created.body["id"].as_str().expect("id").to_owned()
    }

    /// Stops serving (as at SIGTERM) and waits until every change is written.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.expect("task").expect("server");
        }
    }
}

/// Reads a whole HTTP answer; a body that is not JSON is kept as a string.
async fn read(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body: json_or_text(&bytes),
    }
}

fn json_or_text(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
    }
}

/// Looks every few milliseconds until `check` answers `Some`, and returns that; panics
/// naming `what` if it has not by the time `within` has passed.
#[allow(dead_code)] // Not every test file waits for something.
pub async fn eventually<T, Fut>(within: Duration, what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
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
