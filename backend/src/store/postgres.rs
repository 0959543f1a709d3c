//! Postgres-only pieces: the coordination of instances (leases in a table, changes over
//! `LISTEN`/`NOTIFY`), and the throwaway databases the tests use.

use super::coordination::Coordination;
use super::{Change, StoreError};
use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{AnyConnection, AnyPool, Executor};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The Postgres channel that carries `Change`s between instances.
const CHANGES_CHANNEL: &str = "chatsync_changes";

/// Several instances on one Postgres database.
#[derive(Debug)]
pub(super) struct PgCoordination {
    pool: AnyPool,
    /// This process's name in the leases table.
    holder: String,
    changes: broadcast::Sender<Change>,
}

impl PgCoordination {
    /// Starts listening for the other instances' changes.
    pub(super) async fn start(pool: AnyPool, url: &str) -> Result<Self, StoreError> {
        Ok(PgCoordination {
            pool,
            holder: Uuid::new_v4().to_string(),
            changes: listen(url).await?,
        })
    }
}

fn notify_query(change: Change) -> super::sql::AnyQuery<'static> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(change.encode())
}

#[async_trait]
impl Coordination for PgCoordination {
    fn is_shared(&self) -> bool {
        true
    }

    async fn take_lease(&self, id: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO leases (context_id, owner, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (context_id) DO UPDATE \
             SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at < now()",
        )
        .bind(id.to_string())
        .bind(&self.holder)
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE context_id = $1 AND owner = $2")
            .bind(id.to_string())
            .bind(&self.holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn notify(&self, change: Change) -> Result<(), StoreError> {
        notify_query(change).execute(&self.pool).await?;
        Ok(())
    }

    async fn notify_on_commit(
        &self,
        conn: &mut AnyConnection,
        change: Change,
    ) -> Result<(), StoreError> {
        // NOTIFY inside a transaction is delivered at its commit, and dropped on rollback.
        notify_query(change).execute(conn).await?;
        Ok(())
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.changes.subscribe())
    }

    fn not_leased_elsewhere(&self) -> &'static str {
        " AND NOT EXISTS (SELECT 1 FROM leases l \
           WHERE l.context_id = contexts.id AND l.expires_at > now())"
    }
}

/// Listens on the changes channel and forwards every change; after a lost connection it
/// reconnects and sends `Change::Resync`, since notifications sent meanwhile are gone.
async fn listen(url: &str) -> Result<broadcast::Sender<Change>, StoreError> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANGES_CHANNEL).await?;
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
