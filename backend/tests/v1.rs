//! The OpenAI-compatible API over HTTP, in-process on the real application: objects,
//! paging, owner scoping, errors in OpenAI's shape, event streams that replay the same.

mod common;

use axum::http::{Method, StatusCode};
use chatsync::auth::token::mint;
use common::{Answer, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

struct User {
    auth: String,
}

impl User {
    fn new(name: &str) -> Self {
        let token = mint(name, SECRET, Duration::from_secs(600)).expect("mint");
        User {
            auth: format!("Bearer {token}"),
        }
    }

    async fn call(&self, app: &TestApp, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("authorization", self.auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        app.call(method, uri, &headers, body.as_deref()).await
    }

    async fn post(&self, app: &TestApp, uri: &str, body: Value) -> Answer {
        self.call(app, Method::POST, uri, Some(body)).await
    }

    /// A POST with an `Idempotency-Key`.
    async fn post_keyed(&self, app: &TestApp, uri: &str, key: &str, body: &Value) -> Answer {
        let headers = [
            ("authorization", self.auth.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        let body = body.to_string();
        app.call(Method::POST, uri, &headers, Some(&body)).await
    }

    async fn get(&self, app: &TestApp, uri: &str) -> Answer {
        self.call(app, Method::GET, uri, None).await
    }
}

async fn spawn() -> TestApp {
    TestApp::spawn(&["--auth", "jwt", "--jwt-secret", SECRET]).await
}

/// The events of a server-sent event stream body.
fn events(body: &Value) -> Vec<Value> {
    body.as_str()
        .expect("an event stream")
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON event"))
        .collect()
}

/// The chunks of a streamed chat completion, which must end with `[DONE]`.
fn completion_chunks(body: &Value) -> Vec<Value> {
    let text = body.as_str().expect("a stream");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("JSON chunk"))
        .collect()
}

fn assert_openai_error(answer: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["type"], kind, "{}", answer.body);
    assert!(error["message"].is_string());
    assert!(error.get("param").is_some() && error.get("code").is_some());
}

#[tokio::test]
async fn conversations_page_their_items_and_stay_their_owners() {
    let app = spawn().await;
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let models = alice.get(&app, "/v1/models").await;
    assert_eq!(models.body["data"][0]["id"], "scripted");
    let items: Vec<Value> = (0..5)
        .map(|i| json!({"type": "message", "role": "user", "content": format!("m{i}")}))
        .collect();
    let conv = alice
        .post(
            &app,
            "/v1/conversations",
            json!({"items": items, "metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(conv.status, StatusCode::OK, "{}", conv.body);
    let id = conv.body["id"].as_str().expect("id").to_owned();
    assert_eq!(conv.body["object"], "conversation");
    let texts = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|i| {
                i["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let newest = alice
        .get(&app, &format!("/v1/conversations/{id}/items?limit=2"))
        .await;
    assert_eq!(texts(&newest.body), ["m4", "m3"], "newest first by default");
    assert_eq!(newest.body["has_more"], true);
    let last_id = newest.body["last_id"].as_str().expect("last_id").to_owned();
    let next = alice
        .get(
            &app,
            &format!("/v1/conversations/{id}/items?limit=2&after={last_id}"),
        )
        .await;
    assert_eq!(texts(&next.body), ["m2", "m1"]);
    // The same chat through /api: the web app shows it.
    let context = id.trim_start_matches("conv_");
    let uuid = uuid::Uuid::parse_str(context).expect("uuid");
    let state = alice
        .get(&app, &format!("/api/contexts/{uuid}/state"))
        .await;
    assert_eq!(state.body["messages"].as_array().map(Vec::len), Some(5));
    // Another user's conversation is an unknown one.
    for uri in [
        format!("/v1/conversations/{id}"),
        format!("/v1/conversations/{id}/items"),
    ] {
        assert_openai_error(
            &bob.get(&app, &uri).await,
            StatusCode::NOT_FOUND,
            "invalid_request_error",
        );
    }
    let theirs = bob
        .post(
            &app,
            "/v1/responses",
            json!({"input": "hi", "conversation": id}),
        )
        .await;
    assert_openai_error(&theirs, StatusCode::NOT_FOUND, "invalid_request_error");
    let updated = alice
        .post(
            &app,
            &format!("/v1/conversations/{id}"),
            json!({"metadata": {"k": "w"}}),
        )
        .await;
    assert_eq!(updated.body["metadata"], json!({"k": "w"}));
    let deleted = alice
        .call(
            &app,
            Method::DELETE,
            &format!("/v1/conversations/{id}"),
            None,
        )
        .await;
    assert_eq!(deleted.body["deleted"], true);
    assert_eq!(
        alice
            .get(&app, &format!("/v1/conversations/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn errors_are_in_openais_shape_and_bad_input_stores_nothing() {
    let app = spawn().await;
    let alice = User::new("alice");
    let unauthenticated = app.call(Method::GET, "/v1/models", &[], None).await;
    assert_openai_error(
        &unauthenticated,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
    );
    for body in [
        json!({"input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"}),
        json!({"input": []}),
        json!({"input": [{"type": "message", "role": "system", "content": "x"}]}),
        json!({"input": "x", "tools": [{"type": "web_search"}]}),
        json!({"input": "x", "metadata": {"k": 1}}),
    ] {
        let answer = alice.post(&app, "/v1/responses", body.clone()).await;
        assert_openai_error(&answer, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    let missing = alice.get(&app, "/v1/responses/resp_0").await;
    assert_openai_error(&missing, StatusCode::NOT_FOUND, "invalid_request_error");
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(
        chats.body["contexts"].as_array().map(Vec::len),
        Some(0),
        "{}",
        chats.body
    );
}

#[tokio::test]
async fn a_response_streams_and_replays_the_same_events_from_any_point() {
    let app = spawn().await;
    let alice = User::new("alice");
    let streamed = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "hello stream", "stream": true}),
        )
        .await;
    assert_eq!(streamed.status, StatusCode::OK);
    let all = events(&streamed.body);
    assert_eq!(all[0]["type"], "response.created");
    assert_eq!(all.last().expect("events")["type"], "response.completed");
    for (n, e) in all.iter().enumerate() {
        assert_eq!(e["sequence_number"], n);
    }
    let id = all[0]["response"]["id"].as_str().expect("id").to_owned();
    let replay = alice
        .get(&app, &format!("/v1/responses/{id}?stream=true"))
        .await;
    assert_eq!(events(&replay.body), all, "a replay is the same stream");
    let rest = alice
        .get(
            &app,
            &format!("/v1/responses/{id}?stream=true&starting_after=3"),
        )
        .await;
    assert_eq!(events(&rest.body), all[4..]);
    let response = alice.get(&app, &format!("/v1/responses/{id}")).await;
    assert_eq!(response.body["status"], "completed");
    assert_eq!(response.body, all.last().expect("events")["response"]);
    let text = response.body["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("hello stream"), "{text}");
    let inputs = alice
        .get(&app, &format!("/v1/responses/{id}/input_items"))
        .await;
    assert_eq!(inputs.body["data"][0]["content"][0]["text"], "hello stream");
    assert_eq!(
        User::new("bob")
            .get(&app, &format!("/v1/responses/{id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let deleted = alice
        .call(&app, Method::DELETE, &format!("/v1/responses/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(
        alice.get(&app, &format!("/v1/responses/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_idempotency_key_answers_the_same_response_and_runs_one_turn() {
    let app = spawn().await;
    let alice = User::new("alice");
    let conv = alice.post(&app, "/v1/conversations", json!({})).await;
    let id = conv.body["id"].as_str().expect("id").to_owned();
    let body = json!({"input": "just once", "conversation": id}).to_string();
    let headers = [
        ("authorization", alice.auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "key-1"),
    ];
    let first = app
        .call(Method::POST, "/v1/responses", &headers, Some(&body))
        .await;
    let again = app
        .call(Method::POST, "/v1/responses", &headers, Some(&body))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["id"], again.body["id"]);
    let items = alice
        .get(&app, &format!("/v1/conversations/{id}/items"))
        .await;
    let users = items.body["data"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["role"] == "user")
        .count();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn a_function_call_ends_the_response_and_its_output_continues_the_turn() {
    let app = spawn().await;
    let alice = User::new("alice");
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let first = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "/tool lookup {\"q\": 1}", "tools": tools}),
        )
        .await;
    assert_eq!(first.body["status"], "completed", "{}", first.body);
    let call = first.body["output"]
        .as_array()
        .expect("output")
        .iter()
        .find(|o| o["type"] == "function_call")
        .cloned()
        .expect("a function call");
    assert_eq!(call["arguments"], "{\"q\":1}");
    // The chat rests waiting for the client's output: `/api` clients see it so, with the
    // call, and nothing a person could approve.
    let chats = alice.get(&app, "/api/contexts").await;
    let chat = chats.body["contexts"][0]["id"]
        .as_str()
        .expect("chat")
        .to_owned();
    let state = alice
        .get(&app, &format!("/api/contexts/{chat}/state"))
        .await;
    assert_eq!(state.body["state"], "AwaitingToolOutput", "{}", state.body);
    assert_eq!(state.body["status"], "awaiting_tool_output");
    assert_eq!(state.body["pending_tool_calls"][0]["id"], call["call_id"]);
    let approve = alice
        .post(
            &app,
            &format!("/api/contexts/{chat}/actions/approve_tools"),
            json!({"tool_call_ids": [call["call_id"]]}),
        )
        .await;
    assert_eq!(approve.status, StatusCode::BAD_REQUEST, "{}", approve.body);
    let output =
        json!([{"type": "function_call_output", "call_id": call["call_id"], "output": "found it"}]);
    let second = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": output, "previous_response_id": first.body["id"], "tools": tools}),
        )
        .await;
    assert_eq!(second.body["status"], "completed", "{}", second.body);
    let text = second.body["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("found it"), "{text}");
    // An output for a call that does not wait is refused, and stores nothing.
    let again = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": output, "previous_response_id": first.body["id"]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
}

#[tokio::test]
async fn chat_completions_answer_and_stream_without_storing() {
    let app = spawn().await;
    let alice = User::new("alice");
    let plain = alice
        .post(
            &app,
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hey"}]}),
        )
        .await;
    assert_eq!(plain.body["object"], "chat.completion", "{}", plain.body);
    assert!(plain.body["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .contains("hey"));
    let streamed = alice
        .post(
            &app,
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "/tool f {}"}], "stream": true,
                "stream_options": {"include_usage": true},
                "tools": [{"type": "function", "function": {"name": "f"}}]}),
        )
        .await;
    let chunks = completion_chunks(&streamed.body);
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "f"));
    assert!(chunks.last().expect("chunks")["usage"]["total_tokens"].as_u64() > Some(0));
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(
        chats.body["contexts"].as_array().map(Vec::len),
        Some(0),
        "nothing stored"
    );
    let stored = alice
        .post(
            &app,
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "keep me"}], "store": true}),
        )
        .await;
    assert!(stored.body["choices"][0]["message"]["content"]
        .as_str()
        .expect("text")
        .contains("keep me"));
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(
        chats.body["contexts"].as_array().map(Vec::len),
        Some(1),
        "kept as a chat"
    );
}

#[tokio::test]
async fn a_stored_chat_completion_answers_a_retry_with_the_same_completion() {
    let app = spawn().await;
    let alice = User::new("alice");
    let body =
        json!({"messages": [{"role": "user", "content": "once"}], "store": true}).to_string();
    let headers = [
        ("authorization", alice.auth.as_str()),
        ("content-type", "application/json"),
        ("idempotency-key", "chat-1"),
    ];
    let first = app
        .call(Method::POST, "/v1/chat/completions", &headers, Some(&body))
        .await;
    let again = app
        .call(Method::POST, "/v1/chat/completions", &headers, Some(&body))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["id"], again.body["id"]);
    assert_eq!(first.body["choices"], again.body["choices"]);
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(
        chats.body["contexts"].as_array().map(Vec::len),
        Some(1),
        "one chat, one turn"
    );
    let unstored = json!({"messages": [{"role": "user", "content": "x"}]}).to_string();
    let refused = app
        .call(
            Method::POST,
            "/v1/chat/completions",
            &headers,
            Some(&unstored),
        )
        .await;
    assert_openai_error(&refused, StatusCode::BAD_REQUEST, "invalid_request_error");

    // Streamed, a stored completion's reply comes in pieces as the turn stores it (a
    // retry under the same key replays the same pieces), then the finish, the usage and
    // [DONE].
    let long = "a reply long enough to stream in more than one piece of text";
    let body = json!({"messages": [{"role": "user", "content": long}], "store": true,
        "stream": true, "stream_options": {"include_usage": true}});
    let streamed = alice
        .post_keyed(&app, "/v1/chat/completions", "chat-2", &body)
        .await;
    let chunks = completion_chunks(&streamed.body);
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(pieces.len() > 2, "{pieces:?}");
    assert!(
        pieces.concat().contains("a reply long enough"),
        "{pieces:?}"
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(chunks.last().expect("usage")["usage"]["total_tokens"].as_u64() > Some(0));
    let replayed = alice
        .post_keyed(&app, "/v1/chat/completions", "chat-2", &body)
        .await;
    assert_eq!(replayed.body, streamed.body, "the same pieces again");
}

/// `instructions` belong to one response: the chat keeps no system prompt from them, and
/// the next response in the same conversation has none unless it gives its own.
#[tokio::test]
async fn instructions_apply_to_their_response_only() {
    let app = spawn().await;
    let alice = User::new("alice");
    let first = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "hello there", "instructions": "Answer in French."}),
        )
        .await;
    assert_eq!(first.body["status"], "completed", "{}", first.body);
    assert_eq!(first.body["instructions"], "Answer in French.");
    let chats = alice.get(&app, "/api/contexts").await;
    let chat = &chats.body["contexts"][0];
    assert_eq!(chat["config"]["system_prompt"], Value::Null, "{chat}");
    let second = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "and again", "previous_response_id": first.body["id"]}),
        )
        .await;
    assert_eq!(second.body["status"], "completed", "{}", second.body);
    assert_eq!(second.body["instructions"], Value::Null);
}

/// `store: false` runs the model on the input alone and keeps nothing: the answer (whole or
/// streamed, as a stored one's) and then a 404 for its id, no chat, no response row.
#[tokio::test]
async fn a_response_with_store_false_answers_and_keeps_nothing() {
    let app = spawn().await;
    let alice = User::new("alice");
    let plain = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "nothing to keep here", "store": false, "instructions": "Be brief."}),
        )
        .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert_eq!(plain.body["status"], "completed", "{}", plain.body);
    assert_eq!(plain.body["store"], false);
    assert_eq!(plain.body["instructions"], "Be brief.");
    let text = plain.body["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("nothing to keep here"), "{text}");
    let id = plain.body["id"].as_str().expect("id");
    let later = alice.get(&app, &format!("/v1/responses/{id}")).await;
    assert_openai_error(&later, StatusCode::NOT_FOUND, "invalid_request_error");

    let streamed = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": "/tool lookup {\"q\": 2}", "store": false, "stream": true,
                "tools": [{"type": "function", "name": "lookup"}]}),
        )
        .await;
    let all = events(&streamed.body);
    assert_eq!(all[0]["type"], "response.created");
    let last = all.last().expect("events");
    assert_eq!(last["type"], "response.completed", "{all:?}");
    assert_eq!(last["response"]["output"][1]["type"], "function_call");
    for (n, e) in all.iter().enumerate() {
        assert_eq!(e["sequence_number"], n);
    }
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(chats.body["total"], 0, "{}", chats.body);

    // What needs something kept is refused, and stores nothing either.
    for refused in [
        json!({"input": "x", "store": false, "background": true}),
        json!({"input": "x", "store": false, "previous_response_id": "resp_1"}),
        json!({"input": [{"type": "function_call_output", "call_id": "c", "output": "o"}],
            "store": false}),
    ] {
        let answer = alice.post(&app, "/v1/responses", refused).await;
        assert_openai_error(&answer, StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    let keyed = alice
        .post_keyed(
            &app,
            "/v1/responses",
            "k1",
            &json!({"input": "x", "store": false}),
        )
        .await;
    assert_openai_error(&keyed, StatusCode::BAD_REQUEST, "invalid_request_error");
    let chats = alice.get(&app, "/api/contexts").await;
    assert_eq!(chats.body["total"], 0, "{}", chats.body);
}

/// Several user messages in one request are stored each as its own message, in order;
/// the reply follows the last.
#[tokio::test]
async fn several_input_messages_are_stored_one_by_one() {
    let app = spawn().await;
    let alice = User::new("alice");
    let conv = alice.post(&app, "/v1/conversations", json!({})).await;
    let id = conv.body["id"].as_str().expect("id").to_owned();
    let input = json!([
        {"type": "message", "role": "user", "content": "first thought"},
        {"role": "user", "content": [{"type": "input_text", "text": "second thought"}]},
    ]);
    let answer = alice
        .post(
            &app,
            "/v1/responses",
            json!({"input": input, "conversation": id}),
        )
        .await;
    assert_eq!(answer.body["status"], "completed", "{}", answer.body);
    let text = answer.body["output"][0]["content"][0]["text"]
        .as_str()
        .expect("text");
    assert!(text.contains("second thought"), "{text}");
    let items = alice
        .get(&app, &format!("/v1/conversations/{id}/items?order=asc"))
        .await;
    let said: Vec<(String, String)> = items.body["data"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["role"].as_str().unwrap_or_default().to_owned(),
                i["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(said.len(), 3, "{said:?}");
    assert_eq!(said[0], ("user".into(), "first thought".into()));
    assert_eq!(said[1], ("user".into(), "second thought".into()));
    assert_eq!(said[2].0, "assistant");
    let listed = alice
        .get(
            &app,
            &format!(
                "/v1/responses/{}/input_items",
                answer.body["id"].as_str().unwrap_or("")
            ),
        )
        .await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(2));
}
