//! Postgres-only pieces: the listener that carries changes between instances, and the
//! throwaway databases the tests use.

use super::{Change, StoreError};
use sqlx::postgres::PgListener;
use sqlx::Executor;
use std::time::Duration;
use tokio::sync::broadcast;

/// Listens on `channel` and forwards every change; after a lost connection it reconnects
/// and sends `Change::Resync`, since notifications sent meanwhile are gone.
pub(super) async fn listen(
    url: &str,
    channel: &'static str,
) -> Result<broadcast::Sender<Change>, StoreError> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    let (sender, _) = broadcast::channel(4096);
    let forward = sender.clone();
    tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match Change::decode(n.payload()) {
                    Some(change) => {
                        let _ = forward.send(change);
                    }
                    None => {
                        tracing::warn!(payload = n.payload(), "ignoring an unknown notification")
                    }
                },
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the change listener's connection; reconnecting");
                    while (&mut listener).execute("SELECT 1").await.is_err() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    tracing::info!("change listener reconnected");
                    let _ = forward.send(Change::Resync);
                }
            }
        }
    });
    Ok(sender)
}

/// A fresh, empty database on the server `CHATSYNC_TEST_PG_URL` names, for one test.
/// `None` (the test is skipped, and says so) when no server is given, unless
/// `CHATSYNC_REQUIRE_PG` is set: then a missing server fails the test.
#[cfg(test)]
pub(crate) async fn test_database(label: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(server) = std::env::var("CHATSYNC_TEST_PG_URL") else {
        assert!(
            std::env::var_os("CHATSYNC_REQUIRE_PG").is_none(),
            "CHATSYNC_REQUIRE_PG is set but CHATSYNC_TEST_PG_URL is not"
        );
        eprintln!("skipping the Postgres part of {label}: CHATSYNC_TEST_PG_URL is not set");
        return None;
    };
    let name = format!("t_{label}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(&server)
        .await
        .expect("connect to the test Postgres server");
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .expect("create a test database");
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}
