//! Durability across restarts: a clean stop (SIGTERM) and a crash (SIGKILL) mid-stream.

use chatsync_e2e::{last_reply, text, with_role, TestServer};
use chatsync_protocol::{
    ChatState, ContextSummary, ListContextsResponse, MessageStatus, Role, Status,
};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every context with its state and ETag, as a client would see them.
async fn everything(
    api: &chatsync_e2e::Api,
) -> BTreeMap<Uuid, (ContextSummary, ChatState, String)> {
    let response = api
        .get("/api/contexts?limit=100")
        .send()
        .await
        .expect("GET /api/contexts");
    let list: ListContextsResponse = chatsync_e2e::expect_json(response, StatusCode::OK).await;
    let mut all = BTreeMap::new();
    for summary in list.contexts {
        let (state, etag) = api.state_with_etag(summary.id).await;
        all.insert(summary.id, (summary, state, etag));
    }
    all
}

#[tokio::test]
async fn a_clean_stop_keeps_every_context_message_version_and_etag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let chat = api.create_context().await;
    for content in ["one", "two", "three"] {
        api.send_message(chat.id, content).await;
    }
    // A second context left waiting for a person: resting states are durable too.
    let waiting = api.create_context().await;
    let asked = api
        .send_message(waiting.id, r#"/tool calculator {"expression":"6*7"}"#)
        .await;
    assert_eq!(asked.status, Status::AwaitingApproval);
    let before = everything(&api).await;
    assert_eq!(before.len(), 2);

    let exit = first.terminate().await;
    assert!(
        exit.success(),
        "SIGTERM must stop the server cleanly: {exit}"
    );

    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let after = everything(&api).await;
    assert_eq!(after, before, "the restarted server serves the same data");
    for (id, (_, state, etag)) in &before {
        // A client polling across the restart sees no change, so it downloads nothing.
        let response = api.state_raw(*id, "", Some(etag)).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "context {id}");
        assert_eq!(state.messages.len() as u64, state.message_count);
    }
    assert_eq!(before[&chat.id].1.messages.len(), 6);

    // The interrupted conversation carries on where it rested.
    let call = asked.pending_tool_calls[0].id.as_str();
    let done = api.approve_tools(waiting.id, &[call]).await;
    assert_eq!(done.status, Status::Idle);
    assert!(text(last_reply(&done)).contains("42"), "{done:#?}");
}

#[tokio::test]
async fn a_turn_killed_mid_stream_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let ctx = api.create_context().await;

    // 40 chunks at 100 ms: about 4 s of streaming to interrupt.
    let ack = api.send_message_no_wait(ctx.id, "/slow 40").await;
    let acked = with_role(&ack, Role::User)
        .first()
        .map(|m| m.id)
        .expect("the 202 answer holds the acknowledged user message");
    api.wait_for_state(ctx.id, "the reply is streaming", |s| {
        s.status == Status::Running
            && s.messages
                .iter()
                .any(|m| m.role == Role::Assistant && !text(m).is_empty())
    })
    .await;
    first.kill9().await;

    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let resumed = api.state(ctx.id).await;
    assert!(
        resumed.messages.iter().any(|m| m.id == acked),
        "an acknowledged message survives a crash: {resumed:#?}"
    );
    // Resumed, not abandoned: the turn is running again on the new server.
    assert_eq!(resumed.status, Status::Running, "{resumed:#?}");
    assert_eq!(resumed.error, None);
    let done = api.wait_for_status(ctx.id, Status::Idle).await;
    assert_eq!(done.error, None);
    let roles: Vec<Role> = done.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant],
        "the reply is redone in place, not duplicated: {done:#?}"
    );
    assert_eq!(done.messages[0].id, acked);
    let reply = &done.messages[1];
    assert_eq!(reply.status, MessageStatus::Complete);
    assert!(text(reply).starts_with("chunk 1 "), "{}", text(reply));
    assert!(text(reply).ends_with("chunk 40."), "{}", text(reply));
}
