//! Branches against the real binary: edit, regenerate and switch survive a restart, and
//! pollers get the whole state after the path moves.

use chatsync_e2e::{expect_json, text, TestServer};
use chatsync_protocol::{ChatState, LegacyMessagesResponse, Role};
use reqwest::StatusCode;
use serde_json::json;

fn path(state: &ChatState) -> Vec<(Role, String, u32, u32)> {
    state
        .messages
        .iter()
        .map(|m| (m.role, text(m), m.sibling_index, m.sibling_count))
        .collect()
}

#[tokio::test]
async fn the_tree_and_the_active_leaf_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let chat = api.create_context().await;
    api.send_message(chat.id, "one").await;
    let two = api.send_message(chat.id, "two").await;
    let original = two.messages[2].id;

    let edited = api
        .branch_action(
            chat.id,
            "edit_message",
            json!({"message_id": original, "content": "two, edited"}),
        )
        .await;
    assert_eq!(edited.messages.len(), 4);
    assert_eq!(text(&edited.messages[2]), "two, edited");
    assert_eq!(edited.messages[2].parent_id, Some(two.messages[1].id));
    assert_eq!(
        (
            edited.messages[2].sibling_index,
            edited.messages[2].sibling_count
        ),
        (1, 2)
    );
    assert!(text(&edited.messages[3]).contains("two, edited"));
    let regenerated = api.branch_action(chat.id, "regenerate", json!({})).await;
    assert_eq!(regenerated.messages[3].sibling_count, 2);
    assert!(regenerated.version > edited.version);

    // A poll from before a switch gets the whole new path, not a delta.
    let before_switch = regenerated.version;
    let switched = api
        .branch_action(chat.id, "switch_branch", json!({"message_id": original}))
        .await;
    assert_eq!(text(&switched.messages[2]), "two");
    assert!(switched.version > before_switch, "versions only grow");
    let response = api
        .state_raw(chat.id, &format!("?since={before_switch}"), None)
        .await;
    let polled: ChatState = expect_json(response, StatusCode::OK).await;
    assert!(!polled.delta);
    assert_eq!(path(&polled), path(&switched));
    let (now, etag) = api.state_with_etag(chat.id).await;
    assert_eq!(etag, format!("\"{}\"", switched.version));
    assert_eq!(path(&now), path(&switched));

    // Refused while it does not fit: an assistant message cannot be edited.
    let response = api
        .post(&format!("/api/contexts/{}/actions/edit_message", chat.id))
        .json(&json!({"message_id": now.messages[1].id, "content": "x"}))
        .send()
        .await
        .expect("POST edit_message");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    assert!(first.terminate().await.success());
    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let (after, after_etag) = api.state_with_etag(chat.id).await;
    assert_eq!(after_etag, etag, "the restart keeps the version");
    assert_eq!(path(&after), path(&switched), "and the active path");
    // The legacy list is the active path too.
    let response = api
        .get(&format!("/api/contexts/{}/messages", chat.id))
        .send()
        .await
        .expect("GET messages");
    let legacy: LegacyMessagesResponse = expect_json(response, StatusCode::OK).await;
    assert_eq!(legacy.total, 4);
    assert_eq!(legacy.messages, after.messages);
    // The other branches are still there: the root's newest leaf is the regenerated reply.
    let back = api
        .branch_action(
            chat.id,
            "switch_branch",
            json!({"message_id": after.messages[0].id}),
        )
        .await;
    assert_eq!(path(&back), path(&regenerated));
}
