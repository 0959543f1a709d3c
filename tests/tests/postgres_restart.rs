//! A Postgres restart while the service is idle: requests answer 503 while it is down,
//! then everything is back with nothing lost. Its own test binary, because it stops the
//! Postgres server the other tests share.

use chatsync_e2e::postgres::{two_instances, TestPostgres};
use chatsync_e2e::{expect_error, poll_until, text, with_role, DEFAULT_TIMEOUT};
use chatsync_protocol::{ChatState, Role};
use reqwest::StatusCode;

#[tokio::test]
async fn a_postgres_restart_while_idle_is_survived() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let (_dir, a, b) = two_instances(&pg, "restart").await;
    let (a, b) = (a.api(), b.api());
    let ctx = a.create_context().await;
    let before = a.send_message(ctx.id, "before the restart").await;

    pg.stop();
    let refused = a
        .send_message_raw(ctx.id, "while down", Default::default())
        .await;
    let error = expect_error(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(error.error.code, "store_unavailable");
    let ready = a.get("/readyz").send().await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    pg.start();

    poll_until(
        "the instance is ready again",
        DEFAULT_TIMEOUT,
        || async { a.get("/readyz").send().await.map(|r| r.status()).ok() },
        |s| *s == Some(StatusCode::OK),
    )
    .await;
    let after = a.send_message(ctx.id, "after the restart").await;
    let users: Vec<String> = with_role(&after, Role::User)
        .into_iter()
        .map(text)
        .collect();
    assert_eq!(
        users,
        ["before the restart", "after the restart"],
        "nothing lost, nothing added"
    );
    assert!(after.version > before.version);
    // The other instance heard about it (its change listener reconnected).
    let on_b = b
        .wait_for_state(ctx.id, "B hears of the new turn", |s: &ChatState| {
            s.version == after.version
        })
        .await;
    assert_eq!(on_b, after);
}
