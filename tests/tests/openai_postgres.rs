//! The OpenAI-compatible API across instances: a response's event stream survives the
//! kill -9 of the instance running it. A client that read part of it resumes on another
//! instance with `starting_after`: the events it had are the same there, the rest follow,
//! and the response completes once.
//!
//! Needs the test command's Postgres (`CHATSYNC_TEST_PG_URL`); skipped without it.

use chatsync_e2e::postgres::{two_instances, TestPostgres};
use chatsync_e2e::{poll_until, Api};
use serde_json::{json, Value};
use std::time::Duration;

/// A crashed instance's lease expires (2 s here), another adopts the turn and replays it.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Events of a server-sent event stream, read as they come until `enough` says stop.
async fn read_events(
    mut response: reqwest::Response,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut events = Vec::new();
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.expect("read the stream") {
        pending.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str(data).expect("a JSON event"));
            }
        }
        if enough(&events) {
            break;
        }
    }
    events
}

async fn stream(api: &Api, path: &str) -> reqwest::Response {
    let response = api.get(path).send().await.expect("GET the stream");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response
}

fn deltas(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .count()
}

#[tokio::test]
async fn a_response_stream_resumes_on_another_instance_after_a_kill_9() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, mut a, b) = two_instances(&pg, "openai_kill9").await;
    let (on_a, on_b) = (a.api(), b.api());
    let created: Value = on_a
        .post("/v1/responses")
        .json(&json!({"input": "/slow 40", "background": true}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("JSON");
    assert!(matches!(
        created["status"].as_str(),
        Some("queued" | "in_progress")
    ));
    let id = created["id"].as_str().expect("id").to_owned();
    // Read A's stream until a few pieces of the reply arrived, then A dies.
    let seen = tokio::time::timeout(
        TAKEOVER_TIMEOUT,
        read_events(
            stream(&on_a, &format!("/v1/responses/{id}?stream=true")).await,
            |e| deltas(e) >= 3,
        ),
    )
    .await
    .expect("A streams");
    assert_eq!(deltas(&seen), 3, "{seen:?}");
    a.kill9().await;
    let last = seen.len() - 1;
    let rest = tokio::time::timeout(
        TAKEOVER_TIMEOUT,
        read_events(
            stream(
                &on_b,
                &format!("/v1/responses/{id}?stream=true&starting_after={last}"),
            )
            .await,
            |_| false,
        ),
    )
    .await
    .expect("B finishes the stream");
    assert_eq!(
        rest.first().map(|e| e["sequence_number"].clone()),
        Some(json!(last + 1))
    );
    let whole: Vec<Value> = seen.iter().chain(&rest).cloned().collect();
    for (n, e) in whole.iter().enumerate() {
        assert_eq!(e["sequence_number"], n, "gap-free across the takeover");
    }
    let ends: Vec<&Value> = whole
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("response.completed" | "response.failed" | "response.incomplete")
            )
        })
        .collect();
    assert_eq!(ends.len(), 1, "one end: {ends:?}");
    assert_eq!(ends[0]["type"], "response.completed");
    let expected: String = (1..=40)
        .map(|i| format!("chunk {i}{}", if i < 40 { " " } else { "." }))
        .collect();
    let text: String = whole
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, expected);
    // The whole stream replayed on B from 0 is what A's client saw, then what followed.
    let replay = read_events(
        stream(&on_b, &format!("/v1/responses/{id}?stream=true")).await,
        |_| false,
    )
    .await;
    assert_eq!(replay, whole);
    // One turn: one user message and one reply.
    let response: Value = on_b
        .get(&format!("/v1/responses/{id}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(response["status"], "completed");
    let conversations = poll_until(
        "B lists the chat",
        Duration::from_secs(10),
        || async { on_b.context_ids().await },
        |ids| ids.len() == 1,
    )
    .await;
    let state = on_b.state(conversations[0]).await;
    assert_eq!(state.messages.len(), 2, "one turn, answered once");
}
