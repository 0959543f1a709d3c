//! Polling the state: ETags, 304s, deltas, and the metrics that count them.

use chatsync_e2e::{header, sample, text, TestServer};
use chatsync_protocol::{ChatState, Role};
use reqwest::StatusCode;

#[tokio::test]
async fn etags_and_deltas_let_clients_poll_cheaply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    api.send_message(ctx.id, "first").await;

    let (old, etag) = api.state_with_etag(ctx.id).await;
    assert_eq!(etag, format!("\"{}\"", old.version));
    assert!(!old.delta);

    // Unchanged: 304 with the same ETag and no body.
    let response = api.state_raw(ctx.id, "", Some(&etag)).await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, "etag").as_deref(), Some(etag.as_str()));
    assert!(response.bytes().await.expect("body").is_empty());

    // Changed: the old ETag no longer matches.
    api.send_message(ctx.id, "second").await;
    let response = api.state_raw(ctx.id, "", Some(&etag)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let new: ChatState = response.json().await.expect("a ChatState");
    assert!(new.version > old.version);
    assert_eq!(new.messages.len(), 4);

    // A delta holds only what changed since the old version: the second turn.
    let response = api
        .state_raw(ctx.id, &format!("?since={}", old.version), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let delta: ChatState = response.json().await.expect("a ChatState");
    assert!(delta.delta);
    assert_eq!(delta.version, new.version);
    assert_eq!(delta.message_count, 4);
    assert_eq!(delta.messages, new.messages[2..]);
    assert!(delta.messages.iter().all(|m| m.version > old.version));
    assert_eq!(delta.messages[0].role, Role::User);
    assert_eq!(text(&delta.messages[0]), "second");

    let metrics = api.metrics().await;
    assert!(sample(&metrics, "chatsync_polls_not_modified_total") >= 1.0);
    assert!(sample(&metrics, "chatsync_saves_total") > 0.0);
}
