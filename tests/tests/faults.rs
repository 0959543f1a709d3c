//! Under load and faults: an acknowledged message runs after its lease owner dies, a
//! client's reads never step back when the instance it followed dies or a slow writer is
//! overtaken mid-turn, and SQLite's writers wait their turn under a burst instead of
//! failing a send.
//!
//! The Postgres tests need the throwaway cluster of the test command (see `postgres.rs`).

use chatsync_e2e::postgres::{two_instances_on, two_instances_with, TestPostgres, LEASE_TTL_MS};
use chatsync_e2e::{
    header, last_reply, poll_until, text, with_role, Send, TestServer, DEFAULT_TIMEOUT,
};
use chatsync_protocol::{ChatState, Role, Status};
use reqwest::StatusCode;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn lease_ttl() -> Duration {
    Duration::from_millis(LEASE_TTL_MS.parse().expect("a number"))
}

#[tokio::test]
async fn a_message_queued_under_a_dead_instances_lease_runs_once_the_lease_expires() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, url, a_server, _b_server) = two_instances_on(&pg, "orphanq", &[]).await;
    let a = a_server.api();
    let ctx = a.create_context().await;
    // An instance took the lease to run a send and died before it wrote anything: its
    // lease row stays until it expires.
    pg.psql(
        &url,
        &format!(
            "INSERT INTO leases (context_id, owner, expires_at) VALUES \
             ('{}', 'a-dead-instance', now() + interval '{LEASE_TTL_MS} milliseconds')",
            ctx.id
        ),
    );
    let died = Instant::now();
    // The client retries on A (as a load balancer would): queued for the lease holder.
    let acked = a
        .send_message_raw(
            ctx.id,
            "are you there?",
            Send {
                no_wait: true,
                client_message_id: Some("only-once"),
                ..Send::default()
            },
        )
        .await;
    assert_eq!(acked.status(), StatusCode::ACCEPTED);
    // No other traffic: reads of A run nothing themselves (its actor is live already).
    let bound = lease_ttl() + Duration::from_secs(2);
    let answered = poll_until(
        "the queued message has run",
        bound.saturating_sub(died.elapsed()),
        || a.state(ctx.id),
        |s: &ChatState| s.status == Status::Idle && !with_role(s, Role::Assistant).is_empty(),
    )
    .await;
    assert!(
        died.elapsed() <= bound,
        "ran {:?} after the owner died",
        died.elapsed()
    );
    let users = with_role(&answered, Role::User);
    assert_eq!(users.len(), 1, "stored once: {answered:#?}");
    assert_eq!(text(users[0]), "are you there?");
    assert!(text(last_reply(&answered)).contains("are you there?"));
    assert!(answered.queued.is_empty());
}

#[tokio::test]
async fn a_client_never_sees_versions_go_back_when_the_streaming_instance_dies() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    // Streamed chunks are stored rarely, so A (which learns of B's saves) stays well
    // behind the versions B shows its clients.
    let (_dir, a_server, mut b_server) =
        two_instances_with(&pg, "monotonic", &["--stream-flush-ms", "60000"]).await;
    let (a, b) = (a_server.api(), b_server.api());
    let ctx = a.create_context().await;
    b.send_message_no_wait(ctx.id, "/slow 30").await;
    b.wait_for_streaming(ctx.id).await;
    let known_to_a = a.state(ctx.id).await.version;
    let seen = b
        .wait_for_state(ctx.id, "B shows versions A has not seen", |s| {
            s.status == Status::Running && s.version > known_to_a + 3
        })
        .await
        .version;
    b_server.kill9().await;

    // The client moves to A holding `seen`. A plain poll never answers below it.
    let since = format!("?since={seen}");
    let plain = a.state_raw(ctx.id, &since, None).await;
    if plain.status() == StatusCode::OK {
        let state: ChatState = plain.json().await.expect("a state");
        assert!(
            state.version >= seen,
            "stepped back to {} from {seen}",
            state.version
        );
    } else {
        assert_eq!(plain.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&plain, "etag"), Some(format!("\"{seen}\"")));
    }
    // A long poll is held until A knows more: it takes the turn over once B's lease
    // expires, above every version B may have shown.
    let mut held = seen;
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let rested = loop {
        assert!(Instant::now() < deadline, "the turn did not rest on A");
        let response = a
            .state_raw(ctx.id, &format!("?since={held}&wait_ms=10000"), None)
            .await;
        if response.status() == StatusCode::NOT_MODIFIED {
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let state: ChatState = response.json().await.expect("a state");
        assert!(
            state.version > held,
            "a long poll from {held} answered {}",
            state.version
        );
        held = state.version;
        if state.status == Status::Idle {
            break state;
        }
    };
    assert!(rested.version > seen);
    let full = a.state(ctx.id).await;
    assert!(text(last_reply(&full)).contains("chunk 30"), "{full:#?}");
}

#[tokio::test]
async fn a_retried_send_queued_by_an_instance_behind_the_writer_never_runs_twice() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, url, a_server, b_server) = two_instances_on(&pg, "repeat", &[]).await;
    let a = a_server.api();
    let ctx = a.create_context().await;
    let sent = Send {
        client_message_id: Some("retried"),
        ..Send::default()
    };
    // The first attempt ran; its answer was lost with the instance that ran it.
    let first = a.send_message_raw(ctx.id, "only once", sent).await;
    assert_eq!(first.status(), StatusCode::OK);
    // The retry reached an instance that had not heard of it yet while the dead one's
    // lease held, so it stored it in the queue (what the soak found under chaos).
    pg.psql(
        &url,
        &format!(
            "INSERT INTO queued_messages \
             (id, context_id, content, client_message_id, created_at, version) VALUES \
             ('{}', '{}', 'only once', 'retried', '2026-01-01T00:00:00.000000Z', 0)",
            uuid::Uuid::new_v4(),
            ctx.id
        ),
    );
    // The look for abandoned work finds the stored queue and the writer takes it.
    let stored = format!(
        "SELECT count(*) FROM queued_messages WHERE context_id = '{}'",
        ctx.id
    );
    poll_until(
        "the stored queue is taken",
        DEFAULT_TIMEOUT,
        || std::future::ready(pg.query(&url, &stored)),
        |n| n == "0",
    )
    .await;
    // Whichever instance took it, both come to show the same resting state (dropping it
    // is saved, so the other one hears of it).
    let b = b_server.api();
    let (rested, _) = poll_until(
        "both instances show the same resting state",
        DEFAULT_TIMEOUT,
        || async { (a.state(ctx.id).await, b.state(ctx.id).await) },
        |(on_a, on_b)| on_a == on_b && on_a.status == Status::Idle,
    )
    .await;
    let users = with_role(&rested, Role::User);
    assert_eq!(users.len(), 1, "the repeat never ran: {rested:#?}");
    assert!(rested.queued.is_empty());
}

#[tokio::test]
async fn a_writer_whose_lease_expired_mid_turn_never_rests_below_what_the_taker_showed() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    // A long lease: the writer renews it seldom, so it lets it expire in the middle of a
    // turn only when the test says so (as when it is slow under load).
    let dir = tempfile::tempdir().expect("temp dir");
    let url = pg.database("overtaken");
    let flags = ["--lease-ttl-ms", "10000"];
    let a_server = TestServer::start_with_database(dir.path(), &url, &flags).await;
    let b_server = TestServer::start_with_database(dir.path(), &url, &flags).await;
    let (a, b) = (a_server.api(), b_server.api());
    let ctx = a.create_context().await;
    b.send_message_no_wait(ctx.id, "/slow 30").await;
    b.wait_for_streaming(ctx.id).await;
    pg.psql(
        &url,
        &format!(
            "UPDATE leases SET expires_at = now() - interval '1 second' \
             WHERE context_id = '{}'",
            ctx.id
        ),
    );
    // A send on A takes the expired lease (starting above what B may have shown), finds
    // the turn running, and lets go; B, still streaming, goes on.
    let _ = a
        .send_message_raw(
            ctx.id,
            "are you done?",
            Send {
                no_wait: true,
                ..Send::default()
            },
        )
        .await;
    // Each instance's versions only go up, and both come to the same rest above every
    // version either showed.
    let (last_a, last_b) = (Cell::new(0), Cell::new(0));
    let (rested, _) = poll_until(
        "both instances show the same resting state",
        DEFAULT_TIMEOUT,
        || async { (a.state(ctx.id).await, b.state(ctx.id).await) },
        |(on_a, on_b)| {
            assert!(
                on_a.version >= last_a.replace(on_a.version),
                "A went back: {on_a:#?}"
            );
            assert!(
                on_b.version >= last_b.replace(on_b.version),
                "B went back: {on_b:#?}"
            );
            on_a == on_b && on_a.status == Status::Idle && on_a.queued.is_empty()
        },
    )
    .await;
    assert!(
        text(last_reply(&rested)).contains("chunk 30"),
        "{rested:#?}"
    );
}

#[tokio::test]
async fn hundreds_of_chats_saving_at_once_on_sqlite_never_fail_a_send() {
    const CHATS: usize = 120;
    const SENDS: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start(dir.path(), &[]).await;
    let api = server.api();
    let mut ids = Vec::new();
    for _ in 0..CHATS {
        ids.push(api.create_context().await.id);
    }
    // Every chat at once, each sending one message after another (waiting for its turn).
    let failures = futures::future::join_all(ids.iter().map(|&id| {
        let api = api.clone();
        async move {
            let mut failures = Vec::new();
            for n in 0..SENDS {
                let key = format!("{id}-{n}");
                let opts = Send {
                    client_message_id: Some(&key),
                    ..Send::default()
                };
                let response = api
                    .send_message_raw(id, &format!("message {n}"), opts)
                    .await;
                if response.status() != StatusCode::OK {
                    let status = response.status();
                    failures.push(format!(
                        "{status}: {}",
                        response.text().await.unwrap_or_default()
                    ));
                }
            }
            failures
        }
    }))
    .await;
    let failures: Vec<String> = failures.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} sends failed: {failures:#?}",
        failures.len()
    );
    for id in ids {
        let state = api.state(id).await;
        assert_eq!(state.status, Status::Idle);
        let sent: Vec<String> = with_role(&state, Role::User)
            .iter()
            .map(|m| text(m))
            .collect();
        let expected: Vec<String> = (0..SENDS).map(|n| format!("message {n}")).collect();
        assert_eq!(sent, expected, "each message stored exactly once, in order");
        assert_eq!(with_role(&state, Role::Assistant).len(), SENDS);
        let distinct: BTreeSet<_> = state.messages.iter().map(|m| m.id).collect();
        assert_eq!(distinct.len(), 2 * SENDS);
    }
}
