//! The send-message flow over HTTP: plain replies, tool approval and denial, idempotency.

use chatsync_e2e::{expect_error, expect_json, last_reply, text, with_role, Send, TestServer};
use chatsync_protocol::{ChatState, MessageStatus, Role, StateName, Status, ToolCallStatus};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_plain_message_gets_a_streamed_reply_that_quotes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    let state = api.send_message(ctx.id, "hello from the e2e suite").await;

    assert_eq!(state.status, Status::Idle);
    assert_eq!(state.state, StateName::Idle);
    assert_eq!(state.error, None);
    assert!(state.version > ctx.version, "a turn must bump the version");
    let roles: Vec<Role> = state.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant]);
    assert_eq!(state.message_count, 2);
    assert_eq!(text(&state.messages[0]), "hello from the e2e suite");
    let reply = &state.messages[1];
    assert_eq!(reply.status, MessageStatus::Complete);
    assert!(
        text(reply).contains("hello from the e2e suite"),
        "the scripted reply quotes the message: {}",
        text(reply)
    );
    // The action answers with what a poll would show next.
    assert_eq!(api.state(ctx.id).await, state);
}

/// The one call a turn asked for, as the approval state lists it.
fn single_pending_call(state: &ChatState, name: &str) -> String {
    assert_eq!(state.status, Status::AwaitingApproval, "{state:#?}");
    assert_eq!(state.state, StateName::AwaitingToolApproval);
    assert_eq!(state.pending_tool_calls.len(), 1, "{state:#?}");
    let call = &state.pending_tool_calls[0];
    assert_eq!(call.name, name);
    assert_eq!(call.status, ToolCallStatus::Pending);
    call.id.clone()
}

/// The call with this id, as recorded on the assistant message that requested it.
fn recorded_call(state: &ChatState, id: &str) -> chatsync_protocol::ToolCall {
    state
        .messages
        .iter()
        .filter_map(|m| m.tool_calls.as_ref())
        .flatten()
        .find(|c| c.id == id)
        .cloned()
        .unwrap_or_else(|| panic!("tool call {id} is not recorded: {state:#?}"))
}

#[tokio::test]
async fn tool_calls_wait_for_approval_and_run_or_are_denied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    // Approved: the calculator runs and the final reply quotes its result.
    let asked = api
        .send_message(ctx.id, r#"/tool calculator {"expression":"2+3"}"#)
        .await;
    let id = single_pending_call(&asked, "calculator");
    assert_eq!(
        asked.pending_tool_calls[0].arguments,
        json!({"expression": "2+3"})
    );
    let done = api.approve_tools(ctx.id, &[id.as_str()]).await;
    assert_eq!(done.status, Status::Idle, "{done:#?}");
    assert!(done.pending_tool_calls.is_empty());
    assert!(text(last_reply(&done)).contains('5'), "{done:#?}");
    let call = recorded_call(&done, &id);
    assert_eq!(call.status, ToolCallStatus::Completed);
    assert_eq!(call.result.as_deref(), Some("5"));
    let tool_result = done
        .messages
        .iter()
        .find(|m| m.role == Role::Tool && m.tool_call_id.as_deref() == Some(id.as_str()))
        .expect("the tool result is a message of its own");
    assert_eq!(text(tool_result), "5");

    // Denied (approve nothing): the tool does not run and the reply says so.
    let asked = api.send_message(ctx.id, "/tool current_time {}").await;
    let id = single_pending_call(&asked, "current_time");
    let done = api.approve_tools(ctx.id, &[]).await;
    assert_eq!(done.status, Status::Idle, "{done:#?}");
    assert!(text(last_reply(&done)).contains("denied"), "{done:#?}");
    assert_eq!(recorded_call(&done, &id).status, ToolCallStatus::Denied);

    // Nothing waits for approval any more: refused, state unchanged.
    let response = api
        .post(&format!("/api/contexts/{}/actions/approve_tools", ctx.id))
        .json(&json!({"tool_call_ids": [id]}))
        .send()
        .await
        .expect("POST approve_tools");
    let error = expect_error(response, StatusCode::BAD_REQUEST).await;
    assert!(
        error.error.message.contains("No pending tool approvals"),
        "{error:?}"
    );
    assert_eq!(api.state(ctx.id).await, done);
}

#[tokio::test]
async fn repeated_sends_with_the_same_key_add_one_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    let by_client_id = Send {
        client_message_id: Some("client-1"),
        ..Send::default()
    };
    let by_header = Send {
        idempotency_key: Some("key-1"),
        ..Send::default()
    };
    // A client retries after a lost response: the same request twice.
    for (content, opts) in [("first", by_client_id), ("second", by_header)] {
        for _ in 0..2 {
            let response = api.send_message_raw(ctx.id, content, opts.clone()).await;
            let _: ChatState = expect_json(response, StatusCode::OK).await;
        }
    }

    let state = api.state(ctx.id).await;
    let users: Vec<String> = with_role(&state, Role::User)
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(users, ["first", "second"], "{state:#?}");
    assert_eq!(with_role(&state, Role::Assistant).len(), 2, "one turn each");
    assert_eq!(
        state.messages[0].client_message_id.as_deref(),
        Some("client-1")
    );
}

/// A client that gives up on its request (closed tab, timeout) never stops the turn: the
/// message it sent is kept and the reply is finished for the next poll.
#[tokio::test]
async fn a_client_that_disconnects_does_not_stop_its_turn() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .expect("client");
    let gave_up = impatient
        .post(api.url(&format!("/api/contexts/{}/actions/send_message", ctx.id)))
        .json(&json!({"content": "/slow 10"}))
        .send()
        .await
        .expect_err("the turn takes longer than the client waits");
    assert!(gave_up.is_timeout(), "{gave_up}");
    let done = api
        .wait_for_state(ctx.id, "the turn finishes anyway", |s: &ChatState| {
            s.status == Status::Idle && s.messages.len() == 2
        })
        .await;
    assert_eq!(text(&done.messages[0]), "/slow 10");
    assert_eq!(done.messages[1].status, MessageStatus::Complete);
    assert!(text(&done.messages[1]).ends_with("chunk 10."));
}
