//! Shared support for the end-to-end tests: start the real `chatsync` binary on a free
//! port with its own database, and talk to it over HTTP with the wire types of
//! `chatsync-protocol`.
//!
//! Every wait is bounded: a test that hangs is worse than a test that fails, because it
//! hides which promise broke. On failure the server's log tail is printed.

use chatsync_protocol::{
    content_text, ApproveToolsRequest, ChatState, ContextSummary, CreateContextRequest, ErrorBody,
    IfBusy, Message, Role, SendMessageRequest, Status,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a server gets to print its address (a debug build opening SQLite).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server gets to drain and flush after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Default bound for "eventually" checks; turns of the scripted model take well under it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Between two looks at something we wait for: short, so tests stay fast.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Chunk delay of the scripted model: small, so plain turns take milliseconds, but not
/// zero, so streaming still interleaves with polls. `/slow` ignores it (100 ms a chunk).
const CHUNK_DELAY_MS: &str = "2";
/// Lines of the server log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// Distinguishes the log files of successive servers on one database directory.
static SERVER_SEQ: AtomicU32 = AtomicU32::new(0);

/// The server binary: `CHATSYNC_BIN`, or the workspace's debug build.
pub fn binary() -> PathBuf {
    let path = std::env::var_os("CHATSYNC_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/chatsync"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the chatsync binary is missing at {}: run `cargo build -p chatsync` first \
         (or set CHATSYNC_BIN to its path)",
        path.display()
    );
    path
}

/// A running `chatsync` process. Dropping it kills the process, so a failing test never
/// leaves a server behind.
#[derive(Debug)]
pub struct TestServer {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl TestServer {
    /// Starts the server on `dir/db.sqlite` with the scripted model and `extra` flags, and
    /// waits until it prints the address it bound.
    pub async fn start(dir: &Path, extra: &[&str]) -> TestServer {
        let database_url = format!("sqlite://{}", dir.join("db.sqlite").display());
        Self::start_with_database(dir, &database_url, extra).await
    }

    /// Like `start`, on the database `database_url` names (its log still goes to `dir`).
    pub async fn start_with_database(dir: &Path, database_url: &str, extra: &[&str]) -> TestServer {
        let seq = SERVER_SEQ.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(format!("server-{seq}.log"));
        let stderr = File::create(&log).expect("create the server log file");
        let mut command = Command::new(binary());
        command.args(["--addr", "127.0.0.1:0", "--database-url", database_url]);
        // The tests' chunk delay, unless the caller names its own (a flag given twice is
        // refused).
        if !extra.contains(&"--scripted-chunk-delay-ms") {
            command.args(["--scripted-chunk-delay-ms", CHUNK_DELAY_MS]);
        }
        command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // The environment must not change what is tested; logs are opt-in for debugging.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHATSYNC_") {
                command.env_remove(&name);
            }
        }
        // Plain text: the log tail is printed on failure and read by tests.
        command.env("NO_COLOR", "1");
        match std::env::var_os("TEST_LOG") {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command.spawn().expect("start the chatsync binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread: it reads the address line, then keeps draining stdout so the
        // server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut tx = Some(tx);
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("chatsync listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut server = TestServer {
            child,
            base_url: String::new(),
            log,
        };
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(url)) => server.base_url = url,
            // The sender is dropped when stdout closes: the process exited.
            Ok(Err(_)) => panic!(
                "chatsync exited before printing its address ({:?})\n{}",
                server.child.try_wait(),
                server.log_tail()
            ),
            Err(_) => panic!(
                "chatsync printed no address within {START_TIMEOUT:?}\n{}",
                server.log_tail()
            ),
        }
        server
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The address the server listens on, for raw TCP clients.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base_url
            .trim_start_matches("http://")
            .parse()
            .expect("the server printed an address")
    }

    /// File descriptors the server process holds now (Linux).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(Iterator::count)
            .unwrap_or(0)
    }

    /// The server's resident memory now and at its peak (`VmRSS`, `VmHWM` of
    /// `/proc/<pid>/status`), in KiB; `None` once the process is gone.
    pub fn memory_kib(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib = |key: &str| -> Option<u64> {
            let value = status.lines().find_map(|l| l.strip_prefix(key))?;
            value.trim().trim_end_matches("kB").trim().parse().ok()
        };
        Some(Memory {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }

    /// A client for this server.
    pub fn api(&self) -> Api {
        self.api_with(reqwest::header::HeaderMap::new())
    }

    /// Calls as `user`, named the way an authenticating proxy does (`--auth proxy`).
    pub fn api_as(&self, user: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let name = reqwest::header::HeaderValue::from_str(user).expect("a header value");
        headers.insert("x-forwarded-user", name);
        self.api_with(headers)
    }

    fn api_with(&self, headers: reqwest::header::HeaderMap) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                // Below the server's idle close (--idle-timeout-ms, 75 s by default; reqwest's
                // own default is 90 s), as a client should be: a request sent on a connection
                // the server is closing at that moment gets no answer.
                .pool_idle_timeout(Duration::from_secs(60))
                .default_headers(headers)
                .build()
                .expect("build the HTTP client"),
            base_url: self.base_url().to_owned(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    /// SIGKILL: the process gets no chance to flush anything, like a power cut.
    pub async fn kill9(&mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("send SIGKILL");
        self.wait_exit(STOP_TIMEOUT).await;
    }

    /// SIGTERM, then waits for the process to drain, flush and exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).expect("send SIGTERM");
        self.wait_exit(STOP_TIMEOUT).await
    }

    /// Waits for the process to exit; at the deadline the panic prints the log's tail
    /// (`Drop`).
    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let exited = poll_until(
            "chatsync exits",
            timeout,
            || std::future::ready(child.try_wait().expect("check the server process")),
            Option::is_some,
        )
        .await;
        exited.expect("poll_until returns only once it exited")
    }

    /// Everything the server logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log.display())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        // Ignored errors: the process may have exited already, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process's memory (`TestServer::memory_kib`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// Typed calls to the HTTP API. Methods named after an action check the status the
/// contract promises and panic with the response body otherwise; `*_raw` methods return
/// the response for tests that look at statuses and headers themselves.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base_url: String,
}

/// Options of `send_message` beyond its content.
#[derive(Debug, Clone, Default)]
pub struct Send<'a> {
    pub client_message_id: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// `?wait=false`: answer as soon as the user message is durable.
    pub no_wait: bool,
    /// What to do while a turn runs (the server's default: enqueue).
    pub if_busy: Option<IfBusy>,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// A `POST` as a script sends it: marked with `X-Requested-With`, so the server's
    /// cross-site guard lets it through with or without a JSON body.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("x-requested-with", "chatsync-e2e")
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(self.url(path))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path))
    }

    /// The ids of the caller's chats, newest first (one page of up to 100).
    pub async fn context_ids(&self) -> Vec<Uuid> {
        let response = self
            .get("/api/contexts?limit=100")
            .send()
            .await
            .expect("list the contexts");
        let page: chatsync_protocol::ListContextsResponse =
            expect_json(response, StatusCode::OK).await;
        page.contexts.into_iter().map(|c| c.id).collect()
    }

    pub async fn create_context(&self) -> ContextSummary {
        let response = self
            .post("/api/contexts")
            .json(&CreateContextRequest::default())
            .send()
            .await
            .expect("POST /api/contexts");
        expect_json(response, StatusCode::CREATED).await
    }

    pub async fn send_message_raw(&self, context: Uuid, content: &str, opts: Send<'_>) -> Response {
        let wait = if opts.no_wait { "?wait=false" } else { "" };
        let mut request = self
            .post(&format!(
                "/api/contexts/{context}/actions/send_message{wait}"
            ))
            .json(&SendMessageRequest {
                content: content.to_owned(),
                client_message_id: opts.client_message_id.map(str::to_owned),
                if_busy: opts.if_busy,
            });
        if let Some(key) = opts.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST send_message")
    }

    /// Sends and waits for the turn to rest: 200 and the state it rested in.
    pub async fn send_message(&self, context: Uuid, content: &str) -> ChatState {
        let response = self
            .send_message_raw(context, content, Send::default())
            .await;
        expect_json(response, StatusCode::OK).await
    }

    /// Sends with `?wait=false`: 202 once the user message is durable.
    pub async fn send_message_no_wait(&self, context: Uuid, content: &str) -> ChatState {
        let opts = Send {
            no_wait: true,
            ..Send::default()
        };
        let response = self.send_message_raw(context, content, opts).await;
        expect_json(response, StatusCode::ACCEPTED).await
    }

    /// Approves these calls (denying the other pending ones) and waits: 200.
    pub async fn approve_tools(&self, context: Uuid, ids: &[&str]) -> ChatState {
        let response = self
            .post(&format!("/api/contexts/{context}/actions/approve_tools"))
            .json(&ApproveToolsRequest {
                tool_call_ids: ids.iter().map(|&id| id.to_owned()).collect(),
            })
            .send()
            .await
            .expect("POST approve_tools");
        expect_json(response, StatusCode::OK).await
    }

    /// A branch action (`edit_message`, `regenerate`, `switch_branch`) with a JSON body,
    /// expected to answer 200 with the rested state.
    pub async fn branch_action(
        &self,
        context: Uuid,
        action: &str,
        body: serde_json::Value,
    ) -> ChatState {
        let response = self
            .post(&format!("/api/contexts/{context}/actions/{action}"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {action}: {e}"));
        expect_json(response, StatusCode::OK).await
    }

    /// A body-less action (`cancel`, `retry`).
    pub async fn action_raw(&self, context: Uuid, action: &str) -> Response {
        self.post(&format!("/api/contexts/{context}/actions/{action}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {action}: {e}"))
    }

    pub async fn state_raw(&self, context: Uuid, query: &str, etag: Option<&str>) -> Response {
        let mut request = self.get(&format!("/api/contexts/{context}/state{query}"));
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        request.send().await.expect("GET state")
    }

    /// The whole state (200) and its ETag.
    pub async fn state_with_etag(&self, context: Uuid) -> (ChatState, String) {
        let response = self.state_raw(context, "", None).await;
        let etag = header(&response, "etag").expect("GET /state answers with an ETag");
        (expect_json(response, StatusCode::OK).await, etag)
    }

    pub async fn state(&self, context: Uuid) -> ChatState {
        self.state_with_etag(context).await.0
    }

    /// Polls the state until `done` holds; panics with the last state at the deadline.
    pub async fn wait_for_state(
        &self,
        context: Uuid,
        what: &str,
        done: impl Fn(&ChatState) -> bool,
    ) -> ChatState {
        poll_until(what, DEFAULT_TIMEOUT, || self.state(context), done).await
    }

    /// Polls until the running turn's reply has streamed its first chunks (of a `/slow`
    /// reply: "chunk 1 chunk 2 ...").
    pub async fn wait_for_streaming(&self, context: Uuid) -> ChatState {
        self.wait_for_state(context, "the reply has its first chunks", |s| {
            s.status == Status::Running
                && s.messages
                    .iter()
                    .any(|m| m.role == Role::Assistant && text(m).contains("chunk 2"))
        })
        .await
    }

    /// Polls until the turn rests in `status`.
    pub async fn wait_for_status(&self, context: Uuid, status: Status) -> ChatState {
        self.wait_for_state(context, &format!("the context is {status:?}"), |s| {
            s.status == status
        })
        .await
    }

    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").send().await.expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("read /metrics")
    }
}

/// Fetches until `done` accepts the value; panics with the last value at the deadline.
pub async fn poll_until<T: Debug, Fut: Future<Output = T>>(
    what: &str,
    timeout: Duration,
    mut fetch: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = fetch().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}; last seen: {value:#?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Checks the status and decodes the JSON body; on a mismatch panics with the body.
pub async fn expect_json<T: DeserializeOwned>(response: Response, status: StatusCode) -> T {
    let actual = response.status();
    let url = response.url().clone();
    let body = response.text().await.expect("read the response body");
    assert_eq!(actual, status, "{url} answered {actual}: {body}");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{url} answered a body that does not decode ({e}): {body}"))
}

/// Checks that the response is the contract's JSON error with this status.
pub async fn expect_error(response: Response, status: StatusCode) -> ErrorBody {
    let error: ErrorBody = expect_json(response, status).await;
    assert!(!error.error.code.is_empty(), "error without a code");
    assert!(!error.error.message.is_empty(), "error without a message");
    error
}

/// A response header as text.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("header is ASCII").to_owned())
}

/// The value of an unlabelled Prometheus sample in `/metrics` text.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} is not a number ({e}):\n{metrics}"))
}

/// The text of a message.
pub fn text(message: &Message) -> String {
    content_text(&message.content)
}

/// The messages with this role, in order.
pub fn with_role(state: &ChatState, role: Role) -> Vec<&Message> {
    state.messages.iter().filter(|m| m.role == role).collect()
}

/// The last assistant message; panics when there is none.
pub fn last_reply(state: &ChatState) -> &Message {
    state
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .unwrap_or_else(|| panic!("no assistant message in {state:#?}"))
}

pub mod soak;

/// The throwaway Postgres the test command starts (see `scripts/postgres.sh`).
pub mod postgres {
    use super::TestServer;
    use std::process::Command;

    /// The test server: `CHATSYNC_TEST_PG_URL` names it, with its folder, port and
    /// binaries so a test can stop and start it. Without it the Postgres tests are
    /// skipped, unless `CHATSYNC_REQUIRE_PG` is set: then they fail.
    #[derive(Debug)]
    pub struct TestPostgres {
        server_url: String,
        dir: String,
        port: String,
        bin: String,
    }

    impl TestPostgres {
        pub fn from_env() -> Option<TestPostgres> {
            let var = |name: &str| std::env::var(name).ok();
            let Some(server_url) = var("CHATSYNC_TEST_PG_URL") else {
                assert!(
                    var("CHATSYNC_REQUIRE_PG").is_none(),
                    "CHATSYNC_REQUIRE_PG is set but CHATSYNC_TEST_PG_URL is not"
                );
                eprintln!("skipping: no test Postgres (CHATSYNC_TEST_PG_URL is not set)");
                return None;
            };
            Some(TestPostgres {
                server_url,
                dir: var("CHATSYNC_TEST_PG_DIR").expect("CHATSYNC_TEST_PG_DIR"),
                port: var("CHATSYNC_TEST_PG_PORT").expect("CHATSYNC_TEST_PG_PORT"),
                bin: var("CHATSYNC_TEST_PG_BIN").expect("CHATSYNC_TEST_PG_BIN"),
            })
        }

        /// A fresh database for one test.
        pub fn database(&self, label: &str) -> String {
            let name = format!("e2e_{label}_{}", uuid::Uuid::new_v4().simple());
            self.psql(&self.server_url, &format!("CREATE DATABASE {name}"));
            let base = self.server_url.rsplit_once('/').map_or("", |(b, _)| b);
            format!("{base}/{name}")
        }

        /// Runs one SQL command on the database `url` names, as another process would.
        pub fn psql(&self, url: &str, sql: &str) {
            let status = Command::new(format!("{}/psql", self.bin))
                .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
                .status()
                .expect("run psql");
            assert!(status.success(), "psql failed: {sql}");
        }

        /// The first column of one SQL query's rows on the database `url` names, as text.
        pub fn query(&self, url: &str, sql: &str) -> String {
            let output = Command::new(format!("{}/psql", self.bin))
                .args(["-qtA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
                .output()
                .expect("run psql");
            assert!(output.status.success(), "psql failed: {sql}");
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }

        /// Runs pg_ctl as the postgres user (Postgres refuses root).
        fn pg_ctl(&self, args: &str) {
            let cmd = format!("{}/pg_ctl -D '{}/data' -w {args}", self.bin, self.dir);
            let status = Command::new("su")
                .args(["postgres", "-c", &cmd])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run pg_ctl");
            assert!(status.success(), "pg_ctl {args} failed");
        }

        pub fn stop(&self) {
            self.pg_ctl("-m fast stop");
        }

        pub fn start(&self) {
            self.pg_ctl(&format!(
                "-l '{dir}/server.log' -o '-c listen_addresses=127.0.0.1 -p {port} -k {dir}' start",
                dir = self.dir,
                port = self.port
            ));
        }
    }

    /// Two servers on one fresh database, with a short lease so a takeover is quick.
    pub async fn two_instances(
        pg: &TestPostgres,
        label: &str,
    ) -> (tempfile::TempDir, TestServer, TestServer) {
        two_instances_with(pg, label, &[]).await
    }

    /// [`two_instances`] with more flags for both.
    pub async fn two_instances_with(
        pg: &TestPostgres,
        label: &str,
        extra: &[&str],
    ) -> (tempfile::TempDir, TestServer, TestServer) {
        let (dir, _url, a, b) = two_instances_on(pg, label, extra).await;
        (dir, a, b)
    }

    /// [`two_instances_with`], also naming their database (for a test that writes to it
    /// as another process would).
    pub async fn two_instances_on(
        pg: &TestPostgres,
        label: &str,
        extra: &[&str],
    ) -> (tempfile::TempDir, String, TestServer, TestServer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = pg.database(label);
        let flags: Vec<&str> = ["--lease-ttl-ms", LEASE_TTL_MS]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let a = TestServer::start_with_database(dir.path(), &url, &flags).await;
        let b = TestServer::start_with_database(dir.path(), &url, &flags).await;
        (dir, url, a, b)
    }

    /// The lease the two-instance helpers give their servers, in milliseconds.
    pub const LEASE_TTL_MS: &str = "2000";
}
