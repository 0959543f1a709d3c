//! A short soak (the `soak` benchmark's users and checks, `chatsync_e2e::soak`): a few
//! dozen users on two instances sharing the test command's Postgres, one instance killed
//! with SIGKILL halfway and started again. Nothing acknowledged is lost or stored twice,
//! every message is answered, every chat comes to rest and reads the same on both
//! instances, and no client sees a version go back.

use chatsync_e2e::postgres::{TestPostgres, LEASE_TTL_MS};
use chatsync_e2e::soak::{self, Config, Store};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_short_soak_with_a_kill_loses_and_duplicates_nothing() {
    let Some(pg) = TestPostgres::from_env() else {
        return;
    };
    let config = Config {
        users: 30,
        instances: 2,
        duration: Duration::from_secs(7),
        think: (Duration::from_millis(200), Duration::from_millis(800)),
        // One kill, at 4 s: every user is in its turns by then.
        kill_every: Some(Duration::from_secs(4)),
        // Lease, a sweep and the turns of a debug build under load, with room to spare.
        settle: Duration::from_secs(45),
        poll_wait: Duration::from_secs(5),
        server_flags: ["--lease-ttl-ms", LEASE_TTL_MS].map(str::to_owned).to_vec(),
    };
    let report = soak::run(&config, Store::Postgres(&pg))
        .await
        .expect("the soak starts");
    assert_eq!(report.kills.len(), 1);
    assert_eq!(report.chats, config.users, "every user got a chat");
    assert!(
        report
            .turns
            .iter()
            .any(|t| t.acked.is_some_and(|a| a > report.kills[0])),
        "turns went on after the kill"
    );
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{failures:?}\nerrors by kind: {:?}\n{}\nthe servers' logs: {:?}",
        report.errors,
        report.details.join("\n"),
        report.logs
    );
}
