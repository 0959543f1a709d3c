//! The edge under attack, against the real binary: each attack gets the contract's answer
//! while `/healthz` keeps answering other clients within a second.
//!
//! Figures are printed as the tests run (`--nocapture` shows them).

use chatsync_e2e::{binary, expect_error, header, TestServer};
use reqwest::StatusCode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long `/healthz` may take while an attack runs.
const HEALTHY: Duration = Duration::from_secs(1);
/// Bound on anything the server must do by itself (close a connection, ...).
const DEADLINE: Duration = Duration::from_secs(10);

/// `/healthz` on a fresh connection answers 200 within a second.
async fn assert_healthy(server: &TestServer) {
    let started = Instant::now();
    let client = reqwest::Client::new();
    let answer = tokio::time::timeout(
        HEALTHY,
        client
            .get(format!("{}/healthz", server.base_url()))
            .header("connection", "close")
            .send(),
    )
    .await
    .expect("/healthz answers within 1 s during the attack")
    .expect("/healthz");
    assert_eq!(answer.status(), StatusCode::OK);
    eprintln!("  healthz during the attack: {:?}", started.elapsed());
}

/// Reads until the server closes the connection; how long that took after `since`, or
/// `None` when it is still open at the deadline.
async fn closed_after(
    stream: &mut TcpStream,
    since: Instant,
    deadline: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    let ends = since + deadline;
    loop {
        let left = ends.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn proxy_identity_is_believed_only_from_trusted_peers_and_only_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Loopback is trusted by default: one header names the user, two are refused.
    let server = TestServer::start(dir.path(), &["--auth", "proxy"]).await;
    let alice = server.api_as("alice");
    assert_eq!(
        alice.get("/api/me").send().await.expect("me").status(),
        StatusCode::OK
    );
    let twice = reqwest::Client::new()
        .get(format!("{}/api/me", server.base_url()))
        .header("x-forwarded-user", "alice")
        .header("x-forwarded-user", "mallory")
        .send()
        .await
        .expect("me");
    let error = expect_error(twice, StatusCode::UNAUTHORIZED).await;
    assert_eq!(error.error.code, "unauthenticated");
    assert_healthy(&server).await;
    drop(server);

    // 127.0.0.1 outside --trusted-proxies: the header is not believed.
    let server = TestServer::start(
        dir.path(),
        &["--auth", "proxy", "--trusted-proxies", "10.0.0.0/8"],
    )
    .await;
    let alice = server.api_as("alice");
    for (method, path) in [
        ("GET", "/api/me"),
        ("GET", "/api/contexts"),
        ("POST", "/api/contexts"),
    ] {
        let request = match method {
            "GET" => alice.get(path),
            _ => alice.post(path).json(&serde_json::json!({})),
        };
        let answer = request.send().await.expect("request");
        let error = expect_error(answer, StatusCode::UNAUTHORIZED).await;
        assert_eq!(error.error.code, "unauthenticated", "{method} {path}");
        eprintln!(
            "untrusted peer, {method} {path}: 401 {}",
            error.error.message
        );
    }
    assert_healthy(&server).await;
}

#[tokio::test]
async fn proxy_mode_on_a_public_address_without_trusted_proxies_does_not_start() {
    let output = Command::new(binary())
        .args(["--auth", "proxy", "--addr", "0.0.0.0:0"])
        .args(["--database-url", "sqlite::memory:"])
        .env_remove("CHATSYNC_TRUSTED_PROXIES")
        .stdin(Stdio::null())
        .output()
        .expect("run chatsync");
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(!output.status.success(), "it started");
    assert!(stderr.contains("--trusted-proxies"), "{stderr}");
}

#[tokio::test]
async fn silent_and_preface_connections_close_at_the_header_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &["--header-read-timeout-ms", "500"]).await;
    let addr = server.addr();
    let mut conns = Vec::new();
    for i in 0..100 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        match i % 3 {
            0 => {}
            // The first byte of the HTTP/2 preface, then nothing.
            1 => stream.write_all(b"P").await.expect("write"),
            // More of the preface.
            _ => stream
                .write_all(b"PRI * HTTP/2.0\r\n")
                .await
                .expect("write"),
        }
        conns.push(stream);
    }
    let opened = Instant::now();
    assert_healthy(&server).await;
    for (i, stream) in conns.iter_mut().enumerate() {
        let after = closed_after(stream, opened, DEADLINE).await;
        let after = after.unwrap_or_else(|| panic!("connection {i} still open after {DEADLINE:?}"));
        assert!(
            after >= Duration::from_millis(400),
            "closed early: {after:?}"
        );
        if i < 3 {
            eprintln!("connection {i} closed after {after:?}");
        }
    }
    assert_healthy(&server).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_never_exhaust_descriptors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(
        dir.path(),
        &[
            "--max-connections",
            "20",
            "--header-read-timeout-ms",
            "1000",
        ],
    )
    .await;
    let addr = server.addr();
    let before = server.open_fds();
    // 100 silent connections: the kernel completes their handshakes (backlog), the
    // server takes at most 20 at a time.
    let mut conns = Vec::new();
    for _ in 0..100 {
        conns.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let opened = Instant::now();
    let peak = server.open_fds();
    eprintln!("descriptors: {before} before, {peak} with 100 silent connections (cap 20)");
    assert!(peak <= before + 20 + 2, "{peak} descriptors");
    // A well-behaved client is served once slots free up: the silent ones time out in
    // batches of 20 every second, and it waits behind the 100 in the backlog.
    let answer = tokio::time::timeout(
        DEADLINE * 4,
        reqwest::get(format!("{}/healthz", server.base_url())),
    )
    .await
    .expect("healthz answered once connections closed")
    .expect("healthz");
    assert_eq!(answer.status(), StatusCode::OK);
    eprintln!("healthz over the cap answered after {:?}", opened.elapsed());
    drop(conns);
    assert_healthy(&server).await;
}

/// Sends `GET /healthz` on `stream` and reads its answer.
async fn get_healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = [0u8; 1024];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The header and idle timeouts of the two tests below.
const HEAD_MS: u64 = 500;
const IDLE_MS: u64 = 2000;

/// A server with those timeouts and a connection to it that has had one answer; the
/// folder holds the server's database.
async fn kept_alive_after_one_answer() -> (tempfile::TempDir, TestServer, TcpStream) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (head, idle) = (HEAD_MS.to_string(), IDLE_MS.to_string());
    let server = TestServer::start(
        dir.path(),
        &[
            "--header-read-timeout-ms",
            &head,
            "--idle-timeout-ms",
            &idle,
        ],
    )
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    get_healthz(&mut stream).await;
    (dir, server, stream)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
    let (_dir, server, mut stream) = kept_alive_after_one_answer().await;
    let answered = Instant::now();
    let after = closed_after(&mut stream, answered, DEADLINE)
        .await
        .expect("the idle connection closed");
    eprintln!(
        "idle keep-alive closed {after:?} after its last answer \
         (header timeout {HEAD_MS} ms, idle timeout {IDLE_MS} ms)"
    );
    assert!(
        after >= Duration::from_millis(IDLE_MS - 100),
        "closed before the idle timeout: {after:?}"
    );
    assert_healthy(&server).await;
}

#[tokio::test]
async fn a_slow_head_on_a_kept_alive_connection_is_cut_at_the_header_timeout() {
    let (_dir, server, mut stream) = kept_alive_after_one_answer().await;
    // Idle for longer than the header timeout: that alone closes nothing.
    tokio::time::sleep(Duration::from_millis(HEAD_MS + 300)).await;
    // Then a request head, one byte every 100 ms, never finished.
    let head = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let began = Instant::now();
    let mut buf = [0u8; 1024];
    let mut after = None;
    for byte in head.iter().take_while(|_| began.elapsed() < DEADLINE) {
        if stream.write_all(&[*byte]).await.is_err() {
            after = Some(began.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                after = Some(began.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered a head never finished: {:?}", &buf[..n]),
        }
    }
    let after = after.expect("the slow head was cut");
    eprintln!("a slow head after an idle pause was cut {after:?} after its first byte");
    // Cut at the header timeout from its first byte, well before the idle timeout
    // (which would come IDLE_MS - HEAD_MS - 300 ms after the first byte).
    assert!(
        after >= Duration::from_millis(HEAD_MS - 100)
            && after < Duration::from_millis(HEAD_MS + 500),
        "{after:?}"
    );
    assert_healthy(&server).await;
}

#[tokio::test]
async fn a_response_the_client_does_not_read_is_dropped_at_the_write_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).expect("web dir");
    std::fs::write(web.join("index.html"), "<!doctype html><title>t</title>").expect("index");
    let size = 64 << 20;
    std::fs::write(web.join("big.bin"), vec![b'x'; size]).expect("big file");
    let web_dir = web.to_string_lossy().into_owned();
    let server = TestServer::start(
        dir.path(),
        &["--web-dir", &web_dir, "--write-timeout-ms", "500"],
    )
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /big.bin HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    // Read nothing for a while: the server's writes stall, then time out.
    let asked = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_healthy(&server).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(n)) => got += n,
        }
    };
    eprintln!(
        "stalled reader got {got} of {size} bytes; connection ended: {ended} ({:?})",
        asked.elapsed()
    );
    assert!(ended, "the connection is still open");
    assert!(got < size, "the whole response arrived: it was not dropped");
}

#[tokio::test]
async fn web_responses_carry_the_security_headers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).expect("web dir");
    std::fs::write(web.join("index.html"), "<!doctype html><title>t</title>").expect("index");
    let web_dir = web.to_string_lossy().into_owned();
    let server = TestServer::start(dir.path(), &["--web-dir", &web_dir]).await;
    for path in [
        "/",
        "/index.html",
        "/some/app/route",
        "/api/contexts",
        "/healthz",
    ] {
        let answer = reqwest::get(format!("{}{path}", server.base_url()))
            .await
            .expect("get");
        let csp = header(&answer, "content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "img-src 'self' data:",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "script-src 'self' 'wasm-unsafe-eval'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing in {csp:?}"
            );
        }
        assert_eq!(
            header(&answer, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&answer, "referrer-policy").as_deref(),
            Some("no-referrer"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn help_never_prints_a_secret() {
    let output = Command::new(binary())
        .arg("--help")
        .env(
            "CHATSYNC_DATABASE_URL",
            "postgres://u:secretpw@db.internal:5432/chats",
        )
        .env(
            "CHATSYNC_JWT_SECRET",
            "jwt-secret-value-of-at-least-32-bytes!",
        )
        .env("OPENAI_API_KEY", "sk-secret-key-value")
        .env(
            "CHATSYNC_OPENAI_BASE_URL",
            "https://user:basepw@llm.internal/v1",
        )
        .stdin(Stdio::null())
        .output()
        .expect("run chatsync --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--database-url"), "{help}");
    for secret in ["secretpw", "jwt-secret-value", "sk-secret-key", "basepw"] {
        assert!(!help.contains(secret), "--help shows {secret}:\n{help}");
    }
}

#[tokio::test]
async fn an_unreachable_model_server_is_named_without_host_port_or_credentials() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let base = format!("http://modeluser:modelpw@127.0.0.1:{port}/v1");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(
        dir.path(),
        &["--model", "openai", "--openai-base-url", &base],
    )
    .await;
    let api = server.api();
    let chat = api.create_context().await;
    let state = api.send_message(chat.id, "hello?").await;
    let shown = serde_json::to_string(&state).expect("json");
    let error = state.error.clone().unwrap_or_default();
    eprintln!("the chat shows: {error:?}");
    assert!(
        error.contains("the model server could not be reached"),
        "{shown}"
    );
    let port = port.to_string();
    for secret in [port.as_str(), "127.0.0.1", "modelpw", "modeluser", "http"] {
        assert!(!shown.contains(secret), "the chat shows {secret}: {shown}");
    }
    let log = server.log();
    assert!(log.contains(&port), "the detail is in the log");
    assert!(!log.contains("modelpw"), "the log holds no password");
    assert_healthy(&server).await;
}

#[tokio::test]
async fn the_queue_bound_holds_exactly_under_concurrent_sends_from_two_instances() {
    use chatsync_e2e::postgres::{two_instances_with, TestPostgres};
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) =
        two_instances_with(&pg, "queue_bound", &["--max-queued-messages", "32"]).await;
    let (api_a, api_b) = (a.api(), b.api());
    let chat = api_a.create_context().await;
    api_a.send_message_no_wait(chat.id, "/slow 100").await;
    api_a.wait_for_streaming(chat.id).await;
    let sends = (0..60).map(|i| {
        let api = if i % 2 == 0 { &api_a } else { &api_b };
        async move {
            let id = format!("flood-{i}");
            let opts = chatsync_e2e::Send {
                no_wait: true,
                client_message_id: Some(&id),
                ..chatsync_e2e::Send::default()
            };
            let answer = api.send_message_raw(chat.id, &format!("m{i}"), opts).await;
            let status = answer.status();
            let code = answer
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            (status, code)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let queued = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let full = answers
        .iter()
        .filter(|(s, c)| *s == StatusCode::TOO_MANY_REQUESTS && c.as_deref() == Some("queue_full"))
        .count();
    eprintln!("60 concurrent sends through two instances: {queued} queued, {full} queue_full");
    assert_eq!((queued, full), (32, 28), "{answers:?}");
    assert_healthy(&a).await;
    assert_healthy(&b).await;
}

#[tokio::test]
async fn writes_and_searches_are_rate_limited_per_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(
        dir.path(),
        &[
            "--auth",
            "proxy",
            "--writes-per-minute",
            "5",
            "--searches-per-minute",
            "3",
        ],
    )
    .await;
    let carol = server.api_as("carol");
    let chat = carol.create_context().await;
    // Writes of every kind count: a rename, a delete of a made-up chat, an approval
    // with nothing to approve, a legacy write; the create above was the first.
    let writes = [
        carol
            .patch(&format!("/api/contexts/{}", chat.id))
            .json(&serde_json::json!({"title": "renamed"})),
        carol.delete(&format!("/api/contexts/{}", uuid::Uuid::new_v4())),
        carol
            .post(&format!("/api/contexts/{}/actions/approve_tools", chat.id))
            .json(&serde_json::json!({"tool_call_ids": []})),
        carol
            .post(&format!("/api/contexts/{}/messages", chat.id))
            .json(&serde_json::json!({"role": "user", "content": "legacy"})),
    ];
    for write in writes {
        let status = write.send().await.expect("write").status();
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let limited = carol
        .post("/api/contexts")
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("create");
    let retry_after = header(&limited, "retry-after").expect("Retry-After");
    let error = expect_error(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(error.error.code, "rate_limited");
    eprintln!(
        "sixth write: 429 {} (Retry-After {retry_after})",
        error.error.message
    );
    assert!(retry_after.parse::<u64>().expect("seconds") >= 1);
    // Reads are not writes; another user has a budget of their own.
    assert_eq!(carol.context_ids().await.len(), 1);
    server.api_as("dave").create_context().await;

    for _ in 0..3 {
        let r = carol
            .get("/api/contexts?q=renamed")
            .send()
            .await
            .expect("search");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let limited = carol
        .get("/api/contexts?q=renamed")
        .send()
        .await
        .expect("search");
    assert!(header(&limited, "retry-after").is_some());
    let error = expect_error(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(error.error.code, "rate_limited");
    eprintln!("fourth search: 429 {}", error.error.message);
    assert_healthy(&server).await;
}
