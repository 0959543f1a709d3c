//! Long polls (`GET /state?wait_ms=`): a client that holds the latest version waits for
//! the next change instead of asking again and again.

use chatsync_e2e::{
    expect_error, expect_json, header, poll_until, sample, Api, TestServer, DEFAULT_TIMEOUT,
};
use chatsync_protocol::{ChatState, Role};
use reqwest::StatusCode;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Longer than any test here takes, so a poll that answers 200 was woken by a change,
/// never by its wait running out (that answers 304).
const HOLD_MS: u64 = 25_000;

/// Waits until the server holds `n` long polls, so what follows happens while they wait.
async fn held(api: &Api, n: f64) {
    poll_until(
        &format!("the server holds {n} long polls"),
        DEFAULT_TIMEOUT,
        || api.metrics(),
        |m| sample(m, "chatsync_held_polls") == n,
    )
    .await;
}

fn hold(
    api: &Api,
    ctx: Uuid,
    query: String,
    etag: Option<String>,
) -> JoinHandle<reqwest::Response> {
    let api = api.clone();
    tokio::spawn(async move { api.state_raw(ctx, &query, etag.as_deref()).await })
}

/// A new context with one poll held on its current version.
async fn one_held_poll(api: &Api) -> (Uuid, u64, JoinHandle<reqwest::Response>) {
    let ctx = api.create_context().await.id;
    let version = api.state(ctx).await.version;
    let poll = hold(
        api,
        ctx,
        format!("?since={version}&wait_ms={HOLD_MS}"),
        None,
    );
    held(api, 1.0).await;
    (ctx, version, poll)
}

#[tokio::test]
async fn a_held_poll_answers_with_the_change_that_woke_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let (before, etag) = api.state_with_etag(ctx.id).await;

    let by_since = hold(
        &api,
        ctx.id,
        format!("?since={}&wait_ms={HOLD_MS}", before.version),
        None,
    );
    let by_etag = hold(
        &api,
        ctx.id,
        format!("?wait_ms={HOLD_MS}"),
        Some(etag.clone()),
    );
    held(&api, 2.0).await;
    api.send_message_no_wait(ctx.id, "wake up").await;

    let delta: ChatState = expect_json(by_since.await.expect("poll task"), StatusCode::OK).await;
    assert!(delta.delta && delta.version > before.version);
    assert_eq!(delta.messages[0].role, Role::User);
    let response = by_etag.await.expect("poll task");
    assert_ne!(header(&response, "etag"), Some(etag));
    let full: ChatState = expect_json(response, StatusCode::OK).await;
    assert!(!full.delta && full.version > before.version);
    held(&api, 0.0).await;
}

#[tokio::test]
async fn a_poll_answers_at_once_when_the_client_is_behind_and_304_when_the_wait_ends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let first = api.send_message(ctx.id, "one").await;

    // Behind: the answer is the delta at once, whatever the wait.
    let response = api
        .state_raw(ctx.id, &format!("?since=1&wait_ms={HOLD_MS}"), None)
        .await;
    let delta: ChatState = expect_json(response, StatusCode::OK).await;
    assert_eq!(delta.version, first.version);
    assert_eq!(delta.messages.len(), 2);

    // Up to date: held until the wait ends, then 304 with the current ETag.
    let response = api
        .state_raw(
            ctx.id,
            &format!("?since={}&wait_ms=300", first.version),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        header(&response, "etag"),
        Some(format!("\"{}\"", first.version))
    );
    // wait_ms=0 is a plain poll.
    let response = api
        .state_raw(
            ctx.id,
            "?wait_ms=0",
            Some(&format!("\"{}\"", first.version)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn wait_ms_out_of_range_is_a_clear_400() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    for query in [
        "?wait_ms=30001",
        "?wait_ms=-1",
        "?wait_ms=soon",
        "?wait_ms=1e3",
    ] {
        let error = expect_error(
            api.state_raw(ctx.id, query, None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            error.error.message.contains("wait_ms"),
            "{query}: {error:?}"
        );
    }
}

#[tokio::test]
async fn held_polls_are_bounded_per_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &["--max-waiters", "2"]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let version = api.state(ctx.id).await.version;
    let query = format!("?since={version}&wait_ms={HOLD_MS}");
    let a = hold(&api, ctx.id, query.clone(), None);
    let b = hold(&api, ctx.id, query.clone(), None);
    held(&api, 2.0).await;

    let response = api.state_raw(ctx.id, &query, None).await;
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    let error = expect_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(error.error.code, "too_many_waiters");

    // Plain polls are never refused, and the held ones still get their change.
    let response = api.state_raw(ctx.id, "", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    api.send_message_no_wait(ctx.id, "go").await;
    for poll in [a, b] {
        assert_eq!(poll.await.expect("poll task").status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn deleting_a_context_answers_its_held_polls_with_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let (ctx, _, poll) = one_held_poll(&api).await;
    let deleted = api
        .delete(&format!("/api/contexts/{ctx}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let error = expect_error(poll.await.expect("poll task"), StatusCode::NOT_FOUND).await;
    assert_eq!(error.error.code, "not_found");
}

#[tokio::test]
async fn shutdown_answers_held_polls_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A grace period longer than the test's stop timeout: only answering the held polls
    // at once lets the server exit in time.
    let mut server = TestServer::start(dir.path(), &["--shutdown-grace-ms", "60000"]).await;
    let api = server.api();
    let (_, version, poll) = one_held_poll(&api).await;
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
    let response = poll.await.expect("poll task");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, "etag"), Some(format!("\"{version}\"")));
}
