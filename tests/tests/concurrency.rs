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

/// A flood of `?wait=false` sends to one busy chat: every request gets an answer (202
/// queued, or 429 once the queue is full), the queue never passes its bound, and every
/// acknowledged message is either queued or in the history. Latency is the flood
/// benchmark's business (`bench/src/bin/flood-bench.rs`), not this test's.
#[tokio::test]
async fn a_flood_of_sends_to_a_busy_chat_is_answered_202_or_429_and_bounded() {
    const FLOOD: usize = 600;
    const MAX_QUEUED: usize = 32;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let ctx = api.create_context().await;
    let no_wait = Send {
        no_wait: true,
        ..Send::default()
    };
    let busy = api
        .send_message_raw(ctx.id, "/slow 100", no_wait.clone())
        .await;
    assert_eq!(busy.status(), StatusCode::ACCEPTED);
    let sends: Vec<_> = (0..FLOOD)
        .map(|i| {
            let api = api.clone();
            let opts = no_wait.clone();
            tokio::spawn(async move {
                let content = format!("flood {i:03}");
                let response = api.send_message_raw(ctx.id, &content, opts).await;
                let status = response.status();
                let body: serde_json::Value = response.json().await.expect("JSON body");
                (content, status, body)
            })
        })
        .collect();
    let mut accepted = BTreeSet::new();
    for send in sends {
        let (content, status, body) = send.await.expect("sender task");
        match status {
            StatusCode::ACCEPTED => {
                accepted.insert(content);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "queue_full", "{body}");
            }
            other => panic!("{content}: {other} {body}"),
        }
    }
    assert!(!accepted.is_empty(), "some sends were queued");
    let state: ChatState = api.state(ctx.id).await;
    assert!(state.queued.len() <= MAX_QUEUED, "{}", state.queued.len());
    let seen: BTreeSet<String> = state
        .queued
        .iter()
        .chain(state.messages.iter().filter(|m| m.role == Role::User))
        .map(text)
        .filter(|t| t.starts_with("flood"))
        .collect();
    assert_eq!(
        seen, accepted,
        "every acknowledged message is queued or in the history"
    );
}
