//! Model failures: transient ones are retried, fatal ones rest in Failed until retried.

use chatsync_e2e::{expect_json, last_reply, text, TestServer};
use chatsync_protocol::{ChatState, StateName, Status};
use reqwest::StatusCode;

#[tokio::test]
async fn a_transient_failure_is_retried_and_recovers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    let state = api.send_message(ctx.id, "/fail transient").await;
    assert_eq!(state.status, Status::Idle, "{state:#?}");
    assert_eq!(state.error, None);
    assert!(text(last_reply(&state)).contains("Recovered"), "{state:#?}");
}

#[tokio::test]
async fn a_fatal_failure_rests_in_failed_and_the_context_stays_usable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    let failed = api.send_message(ctx.id, "/fail fatal").await;
    assert_eq!(failed.status, Status::Failed, "{failed:#?}");
    assert_eq!(failed.state, StateName::Failed);
    assert!(
        failed.error.as_deref().is_some_and(|e| !e.is_empty()),
        "a failed context says why: {failed:#?}"
    );

    // Retry runs the turn again; the scripted model fails the same way.
    let response = api.action_raw(ctx.id, "retry").await;
    let retried: ChatState = expect_json(response, StatusCode::OK).await;
    assert_eq!(retried.status, Status::Failed, "{retried:#?}");
    assert!(retried.error.is_some());
    assert!(
        retried.version > failed.version,
        "the retry ran: {retried:#?}"
    );

    // A new message starts a fresh turn from Failed.
    let ok = api.send_message(ctx.id, "are you there?").await;
    assert_eq!(ok.status, Status::Idle, "{ok:#?}");
    assert_eq!(ok.error, None);
    assert!(text(last_reply(&ok)).contains("are you there?"));
}
