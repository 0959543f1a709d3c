//! A running turn holds no action back: what needs a resting chat answers at once, and an
//! approval names a bounded number of calls.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

/// A chat whose turn streams for seconds (the scripted model's `/slow`), and the id of its
/// user message.
async fn busy_chat(app: &TestApp) -> (String, String) {
    let created = app.post_json("/api/contexts", json!({})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let uri = format!("/api/contexts/{id}/actions/send_message?wait=false");
    let sent = app.post_json(&uri, json!({"content": "/slow 100"})).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let user = sent.body["messages"][0]["id"].as_str().expect("message id");
    (id, user.to_owned())
}

#[tokio::test]
async fn during_a_turn_an_edit_answers_invalid_state_and_a_legacy_write_busy_at_once() {
    let app = TestApp::spawn(&[]).await;
    let (id, user) = busy_chat(&app).await;
    let state = format!("/api/contexts/{id}/state");
    let before = app.get(&state).await.body;

    let uri = format!("/api/contexts/{id}/actions/edit_message");
    let edit = app
        .post_json(&uri, json!({"message_id": user, "content": "edited"}))
        .await;
    assert_eq!(edit.status, StatusCode::BAD_REQUEST, "{:?}", edit.body);
    assert_eq!(edit.body["error"]["code"], "invalid_state");

    let uri = format!("/api/contexts/{id}/messages");
    let legacy = app
        .post_json(&uri, json!({"role": "user", "content": "hello"}))
        .await;
    assert_eq!(legacy.status, StatusCode::CONFLICT, "{:?}", legacy.body);
    assert_eq!(legacy.body["error"]["code"], "busy");

    // Answered while the turn still runs, and nothing changed but the streaming reply.
    let uuid: uuid::Uuid = id.parse().expect("uuid");
    let live = app.engine().snapshot(uuid).await.expect("snapshot");
    assert!(!live.record.state.is_resting(), "answered during the turn");
    let after = app.get(&state).await.body;
    assert_eq!(after["messages"][0], before["messages"][0]);
    assert_eq!(after["messages"][0]["sibling_count"], 1);
    let messages = after["messages"].as_array().expect("messages");
    let users = messages.iter().filter(|m| m["role"] == "user").count();
    assert_eq!(users, 1, "{after}");
    let gone = app
        .call(Method::DELETE, &format!("/api/contexts/{id}"), &[], None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_approval_of_more_than_128_calls_is_refused() {
    let app = TestApp::spawn(&[]).await;
    let created = app.post_json("/api/contexts", json!({})).await;
    let id = created.body["id"].as_str().expect("id");
    let ids: Vec<String> = (0..129).map(|n| format!("call_{n}")).collect();
    let uri = format!("/api/contexts/{id}/actions/approve_tools");
    let answer = app.post_json(&uri, json!({ "tool_call_ids": ids })).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);
    assert_eq!(answer.body["error"]["code"], "too_many_tool_call_ids");
    // 128 is within the bound: refused only because nothing awaits approval.
    let answer = app
        .post_json(&uri, json!({ "tool_call_ids": &ids[..128] }))
        .await;
    assert_eq!(answer.body["error"]["code"], "no_pending_approvals");
}
