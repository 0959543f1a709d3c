//! One writer per context: concurrent sends queue as whole turns, nothing lost or doubled.

use chatsync_e2e::{text, Send, TestServer};
use chatsync_protocol::{ChatState, MessageStatus, Role, Status};
use reqwest::StatusCode;
use std::collections::BTreeSet;

const SENDERS: usize = 20;

#[tokio::test]
async fn twenty_concurrent_sends_become_twenty_whole_turns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;

    // All requests go out at once, each on its own task (and connection).
    let sends: Vec<_> = (0..SENDERS)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                let content = format!("msg {i:02}");
                let response = api
                    .send_message_raw(ctx.id, &content, Send::default())
                    .await;
                let status = response.status();
                let body = response.text().await.expect("read the body");
                assert!(
                    status == StatusCode::OK || status == StatusCode::ACCEPTED,
                    "{content}: {status} {body}"
                );
                let state: ChatState = serde_json::from_str(&body).expect("a ChatState");
                (content, status, state)
            })
        })
        .collect();
    let answers: Vec<(String, StatusCode, ChatState)> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|joined| joined.expect("a sender task panicked"))
        .collect();

    let expected = 2 * SENDERS as u64;
    let done = api
        .wait_for_state(ctx.id, "every turn has run", |s| {
            s.status == Status::Idle && s.message_count == expected
        })
        .await;
    assert_eq!(done.messages.len() as u64, expected, "{done:#?}");

    // Whole turns in a row: each user message is followed by the reply that quotes it.
    for pair in done.messages.chunks(2) {
        let (user, reply) = (&pair[0], &pair[1]);
        assert_eq!(user.role, Role::User, "{done:#?}");
        assert_eq!(reply.role, Role::Assistant, "{done:#?}");
        assert_eq!(reply.status, MessageStatus::Complete);
        assert!(
            text(reply).contains(&format!("\u{201c}{}\u{201d}", text(user))),
            "turns interleaved: {:?} answered by {:?}",
            text(user),
            text(reply)
        );
    }
    let sent: BTreeSet<String> = answers.iter().map(|(c, _, _)| c.clone()).collect();
    let stored: Vec<String> = done.messages.iter().step_by(2).map(text).collect();
    assert_eq!(
        stored.iter().cloned().collect::<BTreeSet<_>>(),
        sent,
        "each message stored once: {stored:?}"
    );
    // Accepted order: user messages keep their arrival times in order (a queued message
    // arrived while the turn before it ran, so before that turn's reply), each reply comes
    // after its own message, and user messages carry increasing versions.
    let users: Vec<_> = done.messages.iter().step_by(2).collect();
    for pair in users.windows(2) {
        assert!(pair[0].created_at <= pair[1].created_at, "{done:#?}");
    }
    for pair in done.messages.chunks(2) {
        assert!(pair[0].created_at <= pair[1].created_at, "{done:#?}");
    }
    let versions: Vec<u64> = done.messages.iter().step_by(2).map(|m| m.version).collect();
    assert!(
        versions.windows(2).all(|v| v[0] < v[1]),
        "user message versions out of order: {versions:?}"
    );

    // A 200 means the sender's own turn had rested when it answered.
    for (content, status, state) in &answers {
        if *status != StatusCode::OK {
            continue;
        }
        let i = state
            .messages
            .iter()
            .position(|m| m.role == Role::User && text(m) == *content)
            .unwrap_or_else(|| panic!("the answer to {content} lacks its message"));
        let reply = state.messages.get(i + 1).expect("a reply after it");
        assert_eq!(reply.status, MessageStatus::Complete, "{content}");
    }
}
