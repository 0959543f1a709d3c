//! Cancelling a running turn keeps the partial reply, marked cancelled.

use chatsync_e2e::{expect_error, expect_json, last_reply, text, TestServer};
use chatsync_protocol::{ChatState, MessageStatus, Status};
use reqwest::StatusCode;

#[tokio::test]
async fn cancel_stops_a_streaming_turn_and_keeps_the_partial_reply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    // 50 chunks at 100 ms: the stream is still running when the cancel arrives.
    api.send_message_no_wait(ctx.id, "/slow 50").await;
    api.wait_for_streaming(ctx.id).await;

    let response = api.action_raw(ctx.id, "cancel").await;
    let cancelled: ChatState = expect_json(response, StatusCode::OK).await;
    assert_eq!(cancelled.status, Status::Idle, "{cancelled:#?}");
    assert_eq!(cancelled.error, None);
    let partial = last_reply(&cancelled);
    assert_eq!(partial.status, MessageStatus::Cancelled);
    assert!(text(partial).starts_with("chunk 1 "), "{}", text(partial));
    assert!(!text(partial).contains("chunk 50"), "{}", text(partial));

    // Nothing runs any more, so there is nothing to cancel.
    let response = api.action_raw(ctx.id, "cancel").await;
    expect_error(response, StatusCode::BAD_REQUEST).await;
    let now = api.state(ctx.id).await;
    assert_eq!(now, cancelled, "a refused cancel changes nothing");

    // The context takes the next message as usual.
    let next = api.send_message(ctx.id, "after the cancel").await;
    assert_eq!(next.status, Status::Idle);
    assert_eq!(next.messages.len(), 4);
    assert_eq!(next.messages[1].status, MessageStatus::Cancelled);
    assert!(text(last_reply(&next)).contains("after the cancel"));
}
