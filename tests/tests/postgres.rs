//! Two server processes on one Postgres behave, to a client, like one server.
//!
//! The test command starts a throwaway Postgres and names it in `CHATSYNC_TEST_PG_URL`
//! (with its folder, port and binaries, so a test can stop and start it). Without it these
//! tests are skipped, unless `CHATSYNC_REQUIRE_PG` is set: then they fail.

use chatsync_e2e::postgres::{two_instances, two_instances_with, TestPostgres};
use chatsync_e2e::{expect_error, poll_until, sample, text, with_role, Api, Send, DEFAULT_TIMEOUT};
use chatsync_protocol::{ChatState, IfBusy, MessageStatus, Role, Status};
use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::time::Duration;

/// Long enough for a crashed instance's lease to expire and another to adopt its turn.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(40);

/// Every user message once, each followed by the reply that quotes it.
fn assert_whole_turns(state: &ChatState) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for pair in state.messages.chunks(2) {
        assert_eq!(pair.len(), 2, "a turn without its reply: {pair:?}");
        assert_eq!((pair[0].role, pair[1].role), (Role::User, Role::Assistant));
        let asked = text(&pair[0]);
        assert!(
            text(&pair[1]).contains(&asked),
            "{asked:?} answered by {:?}",
            text(&pair[1])
        );
        assert!(seen.insert(asked.clone()), "{asked:?} stored twice");
    }
    seen
}

async fn same_everywhere(a: &Api, b: &Api, context: uuid::Uuid) -> ChatState {
    poll_until(
        "both instances serve the same state and ETag",
        DEFAULT_TIMEOUT,
        || async {
            (
                a.state_with_etag(context).await,
                b.state_with_etag(context).await,
            )
        },
        |(sa, sb)| sa == sb,
    )
    .await
    .0
     .0
}

#[tokio::test]
async fn a_send_through_one_instance_is_seen_polling_the_other() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "seen").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let sent = a.send_message(ctx.id, "hello from A").await;
    assert_eq!(sent.status, Status::Idle);
    let on_b = b
        .wait_for_state(ctx.id, "B catches up with A's turn", |s: &ChatState| {
            s.version == sent.version
        })
        .await;
    assert_eq!(on_b, sent);
    // And back: B writes, A follows.
    let sent = b.send_message(ctx.id, "hello from B").await;
    let on_a = a
        .wait_for_state(ctx.id, "A catches up with B's turn", |s: &ChatState| {
            s.version >= sent.version
        })
        .await;
    assert_eq!(on_a.messages.len(), 4);
    assert_eq!(same_everywhere(&a, &b, ctx.id).await.version, sent.version);
}

#[tokio::test]
async fn an_edit_through_one_instance_moves_the_path_on_the_other() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "branches").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let sent = a.send_message(ctx.id, "first words").await;
    // B follows the linear chat first, so it holds the path the edit then moves.
    b.wait_for_state(ctx.id, "B sees A's turn", |s: &ChatState| {
        s.version == sent.version
    })
    .await;
    let edited = a
        .branch_action(
            ctx.id,
            "edit_message",
            serde_json::json!({"message_id": sent.messages[0].id, "content": "other words"}),
        )
        .await;
    assert_eq!(text(&edited.messages[0]), "other words");
    assert_eq!(edited.messages[0].sibling_count, 2);
    let on_b = same_everywhere(&a, &b, ctx.id).await;
    assert_eq!(
        on_b, edited,
        "B serves the new path with its sibling numbers"
    );
    // And a switch through B is seen on A.
    let switched = b
        .branch_action(
            ctx.id,
            "switch_branch",
            serde_json::json!({"message_id": sent.messages[0].id}),
        )
        .await;
    assert_eq!(text(&switched.messages[0]), "first words");
    assert_eq!(same_everywhere(&a, &b, ctx.id).await, switched);
}

#[tokio::test]
async fn concurrent_sends_split_across_instances_all_land_in_whole_turns() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "concurrent").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let sends = (0..20).map(|n| {
        let api = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            api.send_message_raw(ctx.id, &format!("message {n:02}"), Default::default())
                .await
                .status()
        })
    });
    for status in futures::future::join_all(sends).await {
        let status = status.expect("task");
        assert!(
            matches!(status, StatusCode::OK | StatusCode::ACCEPTED),
            "{status}"
        );
    }
    let done = b
        .wait_for_state(ctx.id, "every send has landed", |s: &ChatState| {
            s.status == Status::Idle && s.messages.len() == 40
        })
        .await;
    let asked = assert_whole_turns(&done);
    let expected: BTreeSet<String> = (0..20).map(|n| format!("message {n:02}")).collect();
    assert_eq!(asked, expected);
    assert_eq!(same_everywhere(&a, &b, ctx.id).await.messages.len(), 40);
}

/// A send through the instance that does not run the chat's turn is queued at once, not
/// held until the turn on the other ends; the queue keeps its order, its repeats, its
/// refusals and its interruptions across instances.
#[tokio::test]
async fn a_send_to_a_chat_busy_on_the_other_instance_is_queued_at_once() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "queue").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    a.send_message_no_wait(ctx.id, "/slow 60").await;
    a.wait_for_streaming(ctx.id).await;
    let queued = |cid| Send {
        no_wait: true,
        client_message_id: Some(cid),
        ..Send::default()
    };
    let first = b
        .send_message_raw(ctx.id, "queued through B", queued("q-b"))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let on_a = a.state(ctx.id).await;
    assert_eq!(
        on_a.messages[1].status,
        MessageStatus::Streaming,
        "answered while the turn still ran on A, not after it"
    );
    let repeat = b
        .send_message_raw(ctx.id, "queued through B", queued("q-b"))
        .await;
    assert_eq!(
        repeat.status(),
        StatusCode::ACCEPTED,
        "a repeat is answered as the first"
    );
    let second = a
        .send_message_raw(ctx.id, "queued through A", queued("q-a"))
        .await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let reject = Send {
        if_busy: Some(IfBusy::Reject),
        ..Send::default()
    };
    let refused = b.send_message_raw(ctx.id, "never stored", reject).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    // An interrupting send stops the turn on A and runs next, ahead of the queue.
    let interrupt = Send {
        no_wait: true,
        if_busy: Some(IfBusy::Interrupt),
        ..Send::default()
    };
    let interrupted = b.send_message_raw(ctx.id, "interrupting", interrupt).await;
    assert_eq!(interrupted.status(), StatusCode::ACCEPTED);

    let done = b
        .wait_for_state(ctx.id, "every queued message ran", |s: &ChatState| {
            s.status == Status::Idle && s.messages.len() == 8 && s.queued.is_empty()
        })
        .await;
    let users: Vec<String> = with_role(&done, Role::User)
        .iter()
        .map(|m| text(m))
        .collect();
    assert_eq!(
        users,
        [
            "/slow 60",
            "interrupting",
            "queued through B",
            "queued through A"
        ]
    );
    let cut = &done.messages[1];
    assert_eq!(
        cut.status,
        MessageStatus::Cancelled,
        "the interrupted reply"
    );
    assert!(!text(cut).contains("chunk 60"), "{}", text(cut));
    assert_whole_turns(&ChatState {
        messages: done.messages[2..].to_vec(),
        ..done.clone()
    });
    assert_eq!(same_everywhere(&a, &b, ctx.id).await.messages.len(), 8);
}

/// An action that needs a resting chat, sent through the instance that does not run the
/// chat's turn, is refused at once as it would be on the instance running it: nothing
/// waits for the other instance's lease.
#[tokio::test]
async fn an_action_that_needs_a_resting_chat_is_refused_at_once_while_the_other_instance_runs_a_turn(
) {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "refuse").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let first = a.send_message(ctx.id, "first words").await;
    let user_id = first.messages[0].id;
    a.send_message_no_wait(ctx.id, "/slow 60").await;
    a.wait_for_streaming(ctx.id).await;
    let actions = [
        (
            "edit_message",
            serde_json::json!({"message_id": user_id, "content": "other words"}),
        ),
        ("regenerate", serde_json::json!({})),
        ("switch_branch", serde_json::json!({"message_id": user_id})),
        (
            "approve_tools",
            serde_json::json!({"tool_call_ids": ["call-1"]}),
        ),
        ("retry", serde_json::json!({})),
    ];
    for (action, body) in actions {
        let started = std::time::Instant::now();
        let answer = b
            .post(&format!("/api/contexts/{}/actions/{action}", ctx.id))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let error = expect_error(answer, StatusCode::BAD_REQUEST).await;
        assert_eq!(error.error.code, "invalid_state", "{action}");
        eprintln!("{action} through B answered in {:?}", started.elapsed());
    }
    // A deprecated write is busy, as on one instance.
    let legacy = b
        .patch(&format!("/api/contexts/{}/messages/{user_id}", ctx.id))
        .json(&serde_json::json!({"content": "rewritten"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(
        expect_error(legacy, StatusCode::CONFLICT).await.error.code,
        "busy"
    );
    let on_a = a.state(ctx.id).await;
    assert_eq!(
        on_a.messages[3].status,
        MessageStatus::Streaming,
        "answered while the turn still ran on A, not after it"
    );
    // A cancel through B still reaches the turn on A; then B's edit runs.
    assert_eq!(
        b.action_raw(ctx.id, "cancel").await.status(),
        StatusCode::OK
    );
    b.wait_for_state(ctx.id, "the turn rests", |s: &ChatState| {
        s.status == Status::Idle
    })
    .await;
    let edited = b
        .branch_action(
            ctx.id,
            "edit_message",
            serde_json::json!({"message_id": user_id, "content": "other words"}),
        )
        .await;
    assert_eq!(text(&edited.messages[0]), "other words");
}

#[tokio::test]
async fn a_turn_whose_instance_is_killed_is_finished_by_the_other() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, mut a_server, b_server) = two_instances(&pg, "takeover").await;
    let (a, b) = (a_server.api(), b_server.api());
    let ctx = a.create_context().await;
    let accepted = a.send_message_no_wait(ctx.id, "/slow 40").await;
    let acked = with_role(&accepted, Role::User)[0].id;
    a.wait_for_streaming(ctx.id).await;
    a_server.kill9().await;

    let done = poll_until(
        "the surviving instance finishes the turn",
        TAKEOVER_TIMEOUT,
        || b.state(ctx.id),
        |s| s.status == Status::Idle,
    )
    .await;
    assert_eq!(done.messages.len(), 2, "{:?}", done.messages);
    assert_eq!(done.messages[0].id, acked);
    let reply = &done.messages[1];
    assert_eq!(reply.status, MessageStatus::Complete);
    assert!(text(reply).ends_with("chunk 40."), "{}", text(reply));
    // The survivor keeps serving the context as usual.
    assert_eq!(b.send_message(ctx.id, "still here").await.messages.len(), 4);
}

#[tokio::test]
async fn a_cancel_through_one_instance_stops_the_turn_running_on_the_other() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "cancel").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    a.send_message_no_wait(ctx.id, "/slow 100").await;
    a.wait_for_streaming(ctx.id).await;
    let cancelled = b.action_raw(ctx.id, "cancel").await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let on_a = a
        .wait_for_state(ctx.id, "A stopped the turn", |s: &ChatState| {
            s.status == Status::Idle
        })
        .await;
    let reply = &on_a.messages[1];
    assert_eq!(reply.status, MessageStatus::Cancelled);
    assert!(
        !text(reply).contains("chunk 100"),
        "the turn was stopped early"
    );
    assert_eq!(same_everywhere(&a, &b, ctx.id).await.status, Status::Idle);
}

#[tokio::test]
async fn a_long_poll_on_one_instance_wakes_for_a_send_through_the_other() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "long_poll").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let version = same_everywhere(&a, &b, ctx.id).await.version;
    let poll = {
        let b = b.clone();
        tokio::spawn(async move {
            b.state_raw(ctx.id, &format!("?since={version}&wait_ms=25000"), None)
                .await
        })
    };
    poll_until(
        "B holds the long poll",
        DEFAULT_TIMEOUT,
        || b.metrics(),
        |m| sample(m, "chatsync_held_polls") == 1.0,
    )
    .await;
    a.send_message_no_wait(ctx.id, "from A").await;
    let response = poll.await.expect("poll task");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "woken by the change, not the wait"
    );
    let delta: ChatState = response.json().await.expect("a ChatState");
    assert!(delta.delta && delta.version > version);
    assert_eq!(text(&delta.messages[0]), "from A");
}

#[tokio::test]
async fn two_users_on_two_instances_each_see_only_their_own_chats() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances_with(&pg, "users", &["--auth", "proxy"]).await;
    let (carol_a, carol_b, dave_b) = (a.api_as("carol"), b.api_as("carol"), b.api_as("dave"));
    let ctx = carol_a.create_context().await;
    let sent = carol_a.send_message(ctx.id, "carol's plan").await;
    carol_b
        .wait_for_state(
            ctx.id,
            "carol's chat on the other instance",
            |s: &ChatState| s.version == sent.version,
        )
        .await;
    let daves = dave_b.create_context().await;

    // Dave, on the instance that has carol's chat loaded, gets an unknown id's answer.
    let path = format!("/api/contexts/{}", ctx.id);
    for response in [
        dave_b.get(&format!("{path}/state")).send().await,
        dave_b.get(&path).send().await,
        dave_b
            .post(&format!("{path}/actions/send_message"))
            .json(&serde_json::json!({"content": "dave was here"}))
            .send()
            .await,
        dave_b.delete(&path).send().await,
    ] {
        let response = response.expect("answer");
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{}",
            response.url()
        );
    }
    assert_eq!(dave_b.context_ids().await, [daves.id]);
    assert_eq!(a.api_as("carol").context_ids().await, [ctx.id]);
    let after = same_everywhere(&carol_a, &carol_b, ctx.id).await;
    assert_eq!(after.version, sent.version, "dave changed nothing");
}
