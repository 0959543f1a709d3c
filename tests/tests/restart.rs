//! Durability across restarts: a clean stop (SIGTERM) and a crash (SIGKILL) mid-stream.

use chatsync_e2e::{
    expect_json, last_reply, poll_until, text, with_role, Api, Send, TestServer, DEFAULT_TIMEOUT,
};
use chatsync_protocol::{
    ChatState, ContextSummary, ListContextsResponse, MessageStatus, Role, Status,
};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every context with its state and ETag, as a client would see them.
async fn everything(api: &Api) -> BTreeMap<Uuid, (ContextSummary, ChatState, String)> {
    let response = api
        .get("/api/contexts?limit=100")
        .send()
        .await
        .expect("GET /api/contexts");
    let list: ListContextsResponse = expect_json(response, StatusCode::OK).await;
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

/// A client whose response was lost resends with the same key; the server may have been
/// restarted meanwhile, so the keys must outlive the process.
#[tokio::test]
async fn a_resend_after_a_restart_adds_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let ctx = api.create_context().await;
    let by_client_id = Send {
        client_message_id: Some("client-1"),
        ..Send::default()
    };
    let by_header = Send {
        idempotency_key: Some("key-1"),
        ..Send::default()
    };
    let sends = [("first", by_client_id), ("second", by_header)];
    for (content, opts) in sends.clone() {
        let response = api.send_message_raw(ctx.id, content, opts).await;
        let _: ChatState = expect_json(response, StatusCode::OK).await;
    }
    let before = api.state(ctx.id).await;
    assert!(first.terminate().await.success());

    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    for (content, opts) in sends {
        let response = api.send_message_raw(ctx.id, content, opts).await;
        let answer: ChatState = expect_json(response, StatusCode::OK).await;
        assert_eq!(
            answer, before,
            "the resend of {content:?} changed the context"
        );
    }
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

/// Clients trust versions: the sync module ignores a state older than the last one it
/// applied, and an ETag names one content. So a version a client saw before a crash must
/// not come back after the restart, older or with other content.
#[tokio::test]
async fn versions_seen_before_a_crash_never_go_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A long flush interval keeps the streamed chunks in memory only (as between two
    // flushes with the default interval), so the crash always loses some of them.
    let mut first = TestServer::start(dir.path(), &["--stream-flush-ms", "60000"]).await;
    let api = first.api();
    let ctx = api.create_context().await;
    api.send_message_no_wait(ctx.id, "/slow 40").await;
    let (seen, etag) = poll_until(
        "a client has seen a few chunks",
        DEFAULT_TIMEOUT,
        || api.state_with_etag(ctx.id),
        |(s, _)| s.messages.iter().any(|m| text(m).contains("chunk 3")),
    )
    .await;
    first.kill9().await;

    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let (after, _) = api.state_with_etag(ctx.id).await;
    // The same version is fine only when it names the very same state.
    assert!(
        after.version > seen.version || after == seen,
        "after the restart the state is at version {} (reply: {:?}), but a client already \
         saw version {} (reply: {:?}): it ignores the older state, and its ETag {etag} \
         names two different contents",
        after.version,
        after.messages.get(1).map(text),
        seen.version,
        seen.messages.get(1).map(text),
    );
    api.wait_for_status(ctx.id, Status::Idle).await;
}

/// A queued message is durable once acknowledged: a crash while the turn before it runs
/// loses nothing, and after the restart it runs as its own turn.
#[tokio::test]
async fn a_queued_message_survives_a_crash_and_runs_after_the_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let ctx = api.create_context().await;
    api.send_message_no_wait(ctx.id, "/slow 40").await;
    let queued = api.send_message_no_wait(ctx.id, "after the crash").await;
    let queued_id = queued
        .queued
        .first()
        .map(|m| m.id)
        .expect("the 202 answer shows the queued message");
    assert_eq!(queued.queued[0].status, MessageStatus::Queued);
    first.kill9().await;

    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let done = api
        .wait_for_state(ctx.id, "the queued message ran", |s| {
            s.status == Status::Idle && s.queued.is_empty() && s.messages.len() == 4
        })
        .await;
    let users: Vec<String> = with_role(&done, Role::User).into_iter().map(text).collect();
    assert_eq!(users, ["/slow 40", "after the crash"], "{done:#?}");
    assert_eq!(done.messages[2].id, queued_id);
    assert_eq!(done.messages[3].role, Role::Assistant);
}
