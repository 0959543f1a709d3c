//! The OpenAI-compatible model against a fake server on 127.0.0.1, driving the real
//! engine on a temporary SQLite store, and once the whole application over HTTP.

mod common;
use common::{eventually, last_text, Answer, TestApp};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chatsync::domain::{NewContext, NewMessage, Owner, SystemPrompt};
use chatsync_protocol::{content_text, ChatState, MessageStatus, Role, Status};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const KEY: &str = "sk-test-do-not-leak-4242";
const WAIT: Duration = Duration::from_secs(20);
/// Deadline for things the tests wait on; loops poll until then and stop by themselves.
const DEADLINE: Duration = Duration::from_secs(10);

/// How a streamed answer ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// `data: [DONE]`, as every OpenAI-compatible server sends.
    Done,
    /// The body just ends: no `[DONE]`, no finish reason.
    Close,
    /// The connection breaks mid-body.
    Cut,
}

#[derive(Debug, Clone)]
enum Reply {
    /// SSE events (their `data`), `gap` apart.
    Events {
        events: Vec<String>,
        gap: Duration,
        end: End,
    },
    Status {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
}

fn events(events: Vec<Value>) -> Reply {
    Reply::Events {
        events: events.iter().map(Value::to_string).collect(),
        gap: Duration::ZERO,
        end: End::Done,
    }
}

fn text_delta(text: &str) -> Value {
    json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

fn finish(reason: &str) -> Value {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

fn text_reply(pieces: &[&str]) -> Reply {
    let mut all: Vec<Value> =
        vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})];
    all.extend(pieces.iter().map(|p| text_delta(p)));
    all.push(finish("stop"));
    events(all)
}

fn call_delta(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> Value {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": null}]})
}

type Script = dyn Fn(usize, &Value) -> Reply + Send + Sync;

#[derive(Debug)]
struct Recorded {
    body: Value,
    authorization: Option<String>,
    at: Instant,
}

#[derive(Clone)]
struct Fake {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Bodies the server stopped sending because the client went away.
    abandoned: Arc<AtomicUsize>,
}

struct FakeServer {
    base_url: String,
    fake: Fake,
}

impl FakeServer {
    async fn start(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Self {
        let fake = Fake {
            script: Arc::new(script),
            requests: Arc::default(),
            abandoned: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeServer {
            base_url: format!("http://{addr}/v1"),
            fake,
        }
    }

    fn requests(&self) -> Vec<(Value, Option<String>, Instant)> {
        self.fake
            .requests
            .lock()
            .expect("requests")
            .iter()
            .map(|r| (r.body.clone(), r.authorization.clone(), r.at))
            .collect()
    }

    fn request_count(&self) -> usize {
        self.fake.requests.lock().expect("requests").len()
    }
}

/// Counts a body the client abandoned: dropped by the server before it was all sent.
struct AbandonGuard {
    finished: AtomicBool,
    abandoned: Arc<AtomicUsize>,
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            self.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn completions(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let n = {
        let mut requests = fake.requests.lock().expect("requests");
        requests.push(Recorded {
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            at: Instant::now(),
        });
        requests.len() - 1
    };
    match (fake.script)(n, &body) {
        Reply::Status {
            status,
            headers,
            body,
        } => {
            let status = StatusCode::from_u16(status).expect("status");
            let mut response = (status, body).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().expect("header"));
            }
            response
        }
        Reply::Events { events, gap, end } => {
            // `None` is the break of a cut connection, after the frames that got through.
            let mut frames: Vec<Option<String>> = events
                .iter()
                .map(|e| Some(format!("data: {e}\n\n")))
                .collect();
            match end {
                End::Done => frames.push(Some("data: [DONE]\n\n".into())),
                End::Cut => frames.push(None),
                End::Close => {}
            }
            let guard = Arc::new(AbandonGuard {
                finished: AtomicBool::new(false),
                abandoned: fake.abandoned.clone(),
            });
            let total = frames.len();
            let body =
                futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| {
                    let guard = guard.clone();
                    async move {
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                        if i + 1 == total {
                            guard.finished.store(true, Ordering::SeqCst);
                        }
                        frame.ok_or_else(|| std::io::Error::other("connection cut"))
                    }
                });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(axum::body::Body::from_stream(body))
                .expect("response")
        }
    }
}

struct Chat {
    app: TestApp,
    server: FakeServer,
}

async fn chat_with(
    idle_timeout: Duration,
    script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
) -> Chat {
    let server = FakeServer::start(script).await;
    let idle_ms = idle_timeout.as_millis().to_string();
    let app = TestApp::spawn(&[
        "--model",
        "openai",
        "--openai-base-url",
        &server.base_url,
        "--openai-api-key",
        KEY,
        "--openai-model",
        "test-model",
        "--openai-connect-timeout-ms",
        "2000",
        "--openai-idle-timeout-ms",
        &idle_ms,
    ])
    .await;
    Chat { app, server }
}

async fn chat(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Chat {
    chat_with(Duration::from_secs(5), script).await
}

impl Chat {
    async fn context(&self, system_prompt: Option<&str>) -> Uuid {
        let new = NewContext {
            system_prompt: system_prompt.map(|p| SystemPrompt::parse(p.into()).expect("prompt")),
            ..NewContext::default()
        };
        let s = self
            .app
            .engine()
            .create_context(&Owner::local(), new)
            .await
            .expect("create");
        s.record.id
    }

    async fn send(&self, id: Uuid, text: &str) -> ChatState {
        let out = self
            .app
            .engine()
            .send_message(id, NewMessage::text(text).expect("content"), WAIT)
            .await
            .expect("send");
        assert!(out.settled, "the turn rests within the wait");
        out.snapshot.chat_state(None)
    }
}

#[tokio::test]
async fn a_streamed_reply_arrives_whole_and_the_request_is_openai_shaped() {
    let c = chat(|_, _| text_reply(&["Hel", "lo", " there", "!"])).await;
    let id = c.context(Some("Be brief.")).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Idle);
    assert_eq!(last_text(&state), "Hello there!");
    assert_eq!(
        state.messages.last().map(|m| m.status),
        Some(MessageStatus::Complete)
    );

    let requests = c.server.requests();
    assert_eq!(requests.len(), 1);
    let (body, authorization, _) = &requests[0];
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ])
    );
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(tools, ["calculator", "current_time"]);
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"],
        json!(["expression"])
    );
}

/// Two calls whose pieces interleave, the arguments split mid-token.
fn two_calls() -> Reply {
    events(vec![
        text_delta("Let me check."),
        call_delta(0, Some("call_a"), Some("calculator"), ""),
        call_delta(0, None, None, "{\"expre"),
        call_delta(1, Some("call_b"), Some("current_time"), "{"),
        call_delta(0, None, None, "ssion\": \"6*"),
        call_delta(1, None, None, "}"),
        call_delta(0, None, None, "7\"}"),
        finish("tool_calls"),
    ])
}

#[tokio::test]
async fn streamed_tool_calls_are_assembled_wait_for_approval_and_their_results_go_back() {
    let c = chat(|n, body| match n {
        0 => two_calls(),
        _ => {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let results: Vec<String> = messages
                .iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| {
                    format!(
                        "{}={}",
                        m["tool_call_id"].as_str().unwrap_or("?"),
                        m["content"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            text_reply(&["Results: ", &results.join(", ")])
        }
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "what is 6*7, and what time is it?").await;
    assert_eq!(state.status, Status::AwaitingApproval);
    let pending: Vec<(String, String, Value)> = state
        .pending_tool_calls
        .iter()
        .map(|t| (t.id.clone(), t.name.clone(), t.arguments.clone()))
        .collect();
    assert_eq!(
        pending,
        [
            (
                "call_a".into(),
                "calculator".into(),
                json!({"expression": "6*7"})
            ),
            ("call_b".into(), "current_time".into(), json!({})),
        ]
    );
    assert_eq!(last_text(&state), "Let me check.");

    let out = c
        .app
        .engine()
        .approve_tools(id, vec!["call_a".into()], WAIT)
        .await
        .expect("approve");
    let state = out.snapshot.chat_state(None);
    assert_eq!(state.status, Status::Idle);
    assert_eq!(
        last_text(&state),
        "Results: call_b=The user denied this tool call., call_a=42"
    );
    let requests = c.server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].0["messages"][1],
        json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\":\"6*7\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "current_time", "arguments": "{}"}},
        ]})
    );
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_delay_the_server_asks_for() {
    let c = chat(|n, _| match n {
        0 => Reply::Status {
            status: 429,
            headers: vec![("retry-after", "1")],
            body: json!({"error": {"message": "Rate limit reached", "type": "requests"}})
                .to_string(),
        },
        _ => text_reply(&["after the wait"]),
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Idle);
    assert_eq!(last_text(&state), "after the wait");
    let requests = c.server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].2 - requests[0].2;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, not after Retry-After"
    );
}

/// `Retry-After` values no server should send: each is survived, and a value that means
/// nothing usable (garbage, negative, a date in the past) gives a prompt retry.
#[tokio::test]
async fn odd_retry_after_values_neither_crash_nor_pin_the_turn() {
    for value in [
        "soon",
        "-5",
        "-1e20",
        "NaN",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        let c = chat(move |n, _| match n {
            0 => Reply::Status {
                status: 429,
                headers: vec![("retry-after", value)],
                body: json!({"error": {"message": "slow down"}}).to_string(),
            },
            _ => text_reply(&["after the wait"]),
        })
        .await;
        let id = c.context(None).await;
        let started = Instant::now();
        let state = c.send(id, "hi").await;
        assert_eq!(last_text(&state), "after the wait", "Retry-After: {value}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Retry-After: {value} held the turn for {:?}",
            started.elapsed()
        );
    }
}

/// A huge `Retry-After` is capped (a minute): the turn waits in `TransientFailure`, the
/// process does not panic on the conversion, and `cancel` ends the wait at once.
#[tokio::test]
async fn a_huge_retry_after_is_capped_and_the_wait_can_be_cancelled() {
    let c = chat(|_, _| Reply::Status {
        status: 429,
        headers: vec![("retry-after", "1e20")],
        body: json!({"error": {"message": "slow down"}}).to_string(),
    })
    .await;
    let id = c.context(None).await;
    let engine = c.app.engine();
    let out = engine
        .send_message(
            id,
            NewMessage::text("hi").expect("content"),
            Duration::from_millis(300),
        )
        .await
        .expect("send");
    assert!(!out.settled, "the turn waits for the capped delay");
    let state = engine.snapshot(id).await.expect("state").chat_state(None);
    assert_eq!(state.status, Status::Running, "{state:?}");
    assert_eq!(c.server.requests().len(), 1);
    let cancelled = engine.cancel(id).await.expect("cancel");
    assert!(cancelled.settled);
    let state = engine.snapshot(id).await.expect("state").chat_state(None);
    assert_eq!(state.status, Status::Idle, "{state:?}");
}

#[tokio::test]
async fn server_errors_are_retried_three_times_then_the_turn_fails_with_their_message() {
    let c = chat(|_, _| Reply::Status {
        status: 500,
        headers: vec![],
        body: json!({"error": {"message": "upstream exploded", "type": "server_error"}})
            .to_string(),
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Failed);
    let error = state.error.expect("error");
    assert!(
        error.contains("500") && error.contains("upstream exploded"),
        "{error}"
    );
    assert_eq!(
        c.server.request_count(),
        4,
        "the first call and three retries"
    );
}

#[tokio::test]
async fn a_refused_key_fails_at_once_with_the_servers_message_and_never_the_key() {
    let c = chat(|_, _| Reply::Status {
        status: 401,
        headers: vec![],
        body: json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "type": "invalid_request_error"}})
            .to_string(),
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Failed);
    let error = state.error.expect("error");
    assert!(
        error.contains("401") && error.contains("Incorrect API key provided"),
        "{error}"
    );
    assert!(!error.contains(KEY), "{error}");
    assert_eq!(c.server.request_count(), 1, "a client error is not retried");
}

#[tokio::test]
async fn a_cut_or_unfinished_stream_is_retried_and_the_partial_text_kept_apart() {
    let c = chat(|n, _| {
        let partial = || vec![text_delta("partial ").to_string()];
        match n {
            0 => Reply::Events {
                events: partial(),
                gap: Duration::ZERO,
                end: End::Cut,
            },
            1 => Reply::Events {
                events: partial(),
                gap: Duration::ZERO,
                end: End::Close,
            },
            _ => text_reply(&["complete reply"]),
        }
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Idle);
    assert_eq!(last_text(&state), "complete reply");
    assert_eq!(c.server.request_count(), 3);
    // A real model may say something else when asked again: what it said before stays as
    // it was shown (cancelled), so a reader's events are never rewritten; the retries do
    // not show the abandoned parts to the model.
    let assistants: Vec<(String, MessageStatus)> = state
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .map(|m| (content_text(&m.content), m.status))
        .collect();
    let (last, partials) = assistants.split_last().expect("a reply");
    assert_eq!(
        last,
        &("complete reply".to_owned(), MessageStatus::Complete)
    );
    assert!(!partials.is_empty(), "{assistants:?}");
    assert!(
        partials
            .iter()
            .all(|p| *p == ("partial ".to_owned(), MessageStatus::Cancelled)),
        "{assistants:?}"
    );
    for (request, _, _) in c.server.requests() {
        let sent = request["messages"].as_array().cloned().unwrap_or_default();
        assert!(sent.iter().all(|m| m["role"] != "assistant"), "{request}");
    }
}

#[tokio::test]
async fn a_malformed_stream_event_fails_the_turn_clearly_without_retries() {
    let c = chat(|_, _| Reply::Events {
        events: vec![
            text_delta("ok so far").to_string(),
            "{\"choices\": [oops".into(),
        ],
        gap: Duration::ZERO,
        end: End::Done,
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Failed);
    let error = state.error.expect("error");
    assert!(error.contains("malformed stream event"), "{error}");
    assert_eq!(c.server.request_count(), 1);
}

#[tokio::test]
async fn a_silent_server_times_out_and_fails_after_the_retries() {
    let c = chat_with(Duration::from_millis(200), |_, _| Reply::Events {
        events: vec![text_delta("slow").to_string()],
        gap: Duration::from_secs(30),
        end: End::Done,
    })
    .await;
    let id = c.context(None).await;
    let state = c.send(id, "hi").await;
    assert_eq!(state.status, Status::Failed);
    let error = state.error.expect("error");
    assert!(error.contains("sent nothing for 200 ms"), "{error}");
    assert_eq!(c.server.request_count(), 4);
}

#[tokio::test]
async fn cancel_closes_the_upstream_connection_and_keeps_the_partial_reply() {
    let c = chat(|_, _| Reply::Events {
        events: (0..200)
            .map(|i| text_delta(&format!("w{i} ")).to_string())
            .collect(),
        gap: Duration::from_millis(50),
        end: End::Done,
    })
    .await;
    let id = c.context(None).await;
    let out = c
        .app
        .engine()
        .send_message(
            id,
            NewMessage::text("talk slowly").expect("content"),
            Duration::ZERO,
        )
        .await
        .expect("send");
    assert!(!out.settled);
    let engine = c.app.engine();
    eventually(DEADLINE, "the stream shows up", || async move {
        let s = engine.snapshot(id).await.expect("snapshot");
        s.messages()
            .iter()
            .any(|m| m.role == Role::Assistant && content_text(&m.content).contains("w2"))
            .then_some(())
    })
    .await;
    let state = c
        .app
        .engine()
        .cancel(id)
        .await
        .expect("cancel")
        .snapshot
        .chat_state(None);
    assert_eq!(state.status, Status::Idle);
    let reply = state.messages.last().expect("reply");
    assert_eq!(reply.status, MessageStatus::Cancelled);
    assert!(content_text(&reply.content).starts_with("w0 w1 w2"));
    let abandoned = &c.server.fake.abandoned;
    eventually(
        DEADLINE,
        "the server sees the connection close",
        || async move { (abandoned.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await;
    assert_eq!(c.server.request_count(), 1);
}

/// The whole application with `--model openai`: a chat streams, asks for a tool, runs it
/// after approval and answers with the result, all visible through GET /state.
#[tokio::test]
async fn done_when_a_chat_uses_a_tool_through_the_real_server() {
    let server = FakeServer::start(|n, body| match n {
        0 => events(vec![
            text_delta("I will "),
            text_delta("calculate."),
            call_delta(0, Some("call_1"), Some("calculator"), "{\"expression\":"),
            call_delta(0, None, None, " \"6*7\"}"),
            finish("tool_calls"),
        ]),
        _ => {
            let result = body["messages"]
                .as_array()
                .and_then(|m| m.iter().rev().find(|m| m["role"] == "tool"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or("nothing")
                .to_owned();
            text_reply(&["The answer is ", &result, "."])
        }
    })
    .await;
    let app = TestApp::spawn(&[
        "--model",
        "openai",
        "--openai-base-url",
        &server.base_url,
        "--openai-api-key",
        KEY,
        "--openai-model",
        "test-model",
    ])
    .await
    .serve();
    let ok = |answer: Answer| {
        assert!(answer.status.is_success(), "{:?}", answer);
        answer.body
    };
    let id = app.new_context().await;
    let state = ok(app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "What is 6*7?"}),
        )
        .await);
    assert_eq!(state["status"], "awaiting_approval");
    let state_path = format!("/api/contexts/{id}/state");
    let state = ok(app.get(&state_path).await);
    assert_eq!(
        state["messages"][1]["content"][0]["text"],
        "I will calculate."
    );
    assert_eq!(state["pending_tool_calls"][0]["name"], "calculator");
    assert_eq!(
        state["pending_tool_calls"][0]["arguments"],
        json!({"expression": "6*7"})
    );
    ok(app
        .post_json(
            &format!("/api/contexts/{id}/actions/approve_tools"),
            json!({"tool_call_ids": ["call_1"]}),
        )
        .await);
    let state = ok(app.get(&state_path).await);
    assert_eq!(state["status"], "idle");
    let messages = state["messages"].as_array().expect("messages");
    let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(messages[1]["tool_calls"][0]["status"], "completed");
    assert_eq!(messages[2]["content"][0]["text"], "42");
    assert_eq!(messages[3]["content"][0]["text"], "The answer is 42.");
    app.stop().await;
}
