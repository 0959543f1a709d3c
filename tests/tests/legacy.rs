//! The deprecated CRUD endpoints: served with deprecation headers by default, 410 when off.

use chatsync_e2e::{expect_error, expect_json, header, poll_until, text, TestServer};
use chatsync_protocol::{LegacyMessagesResponse, Message, Role, Status};
use reqwest::{Response, StatusCode};
use serde_json::json;
use std::time::Duration;

const LINK: &str = "</docs/MIGRATION_GUIDE.md>; rel=\"deprecation\"";

fn assert_deprecated(response: &Response) {
    assert!(
        header(response, "deprecation").is_some(),
        "{} lacks the Deprecation header",
        response.url()
    );
    assert_eq!(header(response, "link").as_deref(), Some(LINK));
}

#[tokio::test]
async fn legacy_crud_works_and_says_it_is_deprecated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let messages = format!("/api/contexts/{}/messages", ctx.id);

    let response = api
        .post(&messages)
        .json(&json!({"role": "user", "content": "written the old way"}))
        .send()
        .await
        .expect("POST messages");
    assert_deprecated(&response);
    let created: Message = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(created.role, Role::User);
    assert_eq!(text(&created), "written the old way");

    let response = api
        .patch(&format!("{messages}/{}", created.id))
        .json(&json!({"content": [{"type": "text", "text": "edited the old way"}]}))
        .send()
        .await
        .expect("PATCH message");
    assert_deprecated(&response);
    let edited: Message = expect_json(response, StatusCode::OK).await;
    assert_eq!(edited.id, created.id);
    assert_eq!(text(&edited), "edited the old way");

    let response = api.get(&messages).send().await.expect("GET messages");
    assert_deprecated(&response);
    let listed: LegacyMessagesResponse = expect_json(response, StatusCode::OK).await;
    assert_eq!(listed.total, 1);
    assert_eq!(listed.messages, std::slice::from_ref(&edited));

    // Stored without running a turn, and visible to clients that poll.
    let state = api.state(ctx.id).await;
    assert_eq!(state.status, Status::Idle);
    assert_eq!(state.messages, [edited]);

    // Operators can find the clients still on the old API in the log.
    poll_until(
        "the server logs the deprecated use",
        Duration::from_secs(5),
        || async { server.log() },
        |log| log.contains("Deprecated endpoint used"),
    )
    .await;

    let response = api
        .get("/docs/MIGRATION_GUIDE.md")
        .send()
        .await
        .expect("GET the guide");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.text().await.expect("guide text").trim().is_empty());
}

#[tokio::test]
async fn with_legacy_crud_off_the_old_endpoints_are_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &["--legacy-crud", "off"]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let messages = format!("/api/contexts/{}/messages", ctx.id);
    let body = json!({"role": "user", "content": "too late"});

    for request in [
        api.get(&messages),
        api.post(&messages).json(&body),
        api.patch(&format!("{messages}/{}", uuid::Uuid::nil()))
            .json(&json!({"content": "too late"})),
    ] {
        let response = request.send().await.expect("legacy request");
        assert_eq!(header(&response, "link").as_deref(), Some(LINK));
        expect_error(response, StatusCode::GONE).await;
    }
    assert!(api.state(ctx.id).await.messages.is_empty());
}
