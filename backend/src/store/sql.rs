//! The SQL store, on SQLite (the embedded default: one file in WAL mode with
//! `synchronous=FULL`) or Postgres (scale-out: several instances share it). Both run the
//! same queries through sqlx's `Any` driver; what differs is set-up, and that only
//! Postgres coordinates instances (leases and change notifications).

use super::{
    format_time, parse_time, Change, ContextPage, ContextRecord, Cursor, LoadedContext,
    MessageRecord, QueuedRecord, SaveBatch, Store, StoreError,
};
use crate::fsm::State;
use async_trait::async_trait;
use chatsync_protocol::{ContextConfig, Message, MessageStatus, Role, StateName};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use sqlx::{Executor, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The Postgres channel that carries `Change`s between instances.
const CHANGES_CHANNEL: &str = "chatsync_changes";

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// This process's name in the leases table.
    owner: String,
    changes: Option<broadcast::Sender<Change>>,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) =>
            {
                // Postgres shutting down (57P01..03) or connection exceptions (08xxx).
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

const CONTEXT_COLUMNS: &str = "id, title, model_id, mode, system_prompt, state, state_error, \
     retries, version, message_count, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "id, seq, role, content, tool_calls, tool_call_id, \
     client_message_id, idempotency_key, status, created_at, version";

/// The file a `sqlite:` URL names, when it names one.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

impl SqlStore {
    /// Opens the database a URL names (`sqlite://PATH`, created with its folder when
    /// missing, or `postgres://...`), then applies the embedded migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unavailable(format!(
                "unsupported database URL {url:?}: expected sqlite://PATH or postgres://..."
            )));
        };
        let mut url = url.to_owned();
        if backend == Backend::Sqlite {
            if let Some(dir) = sqlite_path(&url).and_then(|p| std::path::Path::new(p).parent()) {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            if !url.contains("mode=") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            // Fail fast while the database is down: requests answer 503 instead of hanging.
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            conn.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        migrated.map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let changes = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(super::postgres::listen(&url, CHANGES_CHANNEL).await?),
        };
        Ok(SqlStore {
            pool,
            backend,
            owner: Uuid::new_v4().to_string(),
            changes,
        })
    }

    /// The context and its messages: all of them, or (with `since`) those changed after
    /// that version. One read transaction, so both parts agree.
    #[tracing::instrument(skip(self))]
    async fn load(
        &self,
        id: Uuid,
        since: Option<u64>,
    ) -> Result<Option<LoadedContext>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {CONTEXT_COLUMNS} FROM contexts WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let record = context_from_row(&row)?;
        let messages = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE context_id = $1 AND version > $2 ORDER BY seq"
        ))
        .bind(id.to_string())
        // Message versions start at 1, so -1 selects them all.
        .bind(since.map_or(-1, to_i64))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(Some(LoadedContext { record, messages }))
    }

    /// Tells every instance (on Postgres) about a change.
    async fn notify(&self, change: Change) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            notify_query(change).execute(&self.pool).await?;
        }
        Ok(())
    }
}

fn notify_query(
    change: Change,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(change.encode())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {value:?}"))
}

fn context_from_row(row: &AnyRow) -> Result<ContextRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let state_name: String = row.try_get("state")?;
    let name = StateName::parse(&state_name).ok_or_else(|| corrupt("state", &state_name))?;
    let retries: i64 = row.try_get("retries")?;
    let state = State::from_parts(
        name,
        row.try_get("state_error")?,
        u32::try_from(retries).unwrap_or(0),
    )
    .ok_or_else(|| StoreError::Corrupt(format!("state {state_name} without its error")))?;
    Ok(ContextRecord {
        id: Uuid::try_parse(&id).map_err(|_| corrupt("context id", &id))?,
        title: row.try_get("title")?,
        config: ContextConfig {
            model_id: row.try_get("model_id")?,
            mode: row.try_get("mode")?,
            system_prompt: row.try_get("system_prompt")?,
        },
        state,
        version: to_u64(row.try_get("version")?),
        message_count: to_u64(row.try_get("message_count")?),
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_time(&row.try_get::<String, _>("updated_at")?)?,
    })
}

fn message_from_row(row: &AnyRow) -> Result<MessageRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let role: String = row.try_get("role")?;
    let status: String = row.try_get("status")?;
    let content: String = row.try_get("content")?;
    let tool_calls: Option<String> = row.try_get("tool_calls")?;
    let json_err = |e: serde_json::Error| StoreError::Corrupt(format!("message {id}: {e}"));
    let message = Message {
        id: Uuid::try_parse(&id).map_err(|_| corrupt("message id", &id))?,
        client_message_id: row.try_get("client_message_id")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        content: serde_json::from_str(&content).map_err(json_err)?,
        tool_calls: tool_calls
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(json_err)?,
        tool_call_id: row.try_get("tool_call_id")?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        version: to_u64(row.try_get("version")?),
    };
    Ok(MessageRecord {
        message: Arc::new(message),
        seq: to_u64(row.try_get("seq")?),
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

fn queued_from_row(row: &AnyRow) -> Result<QueuedRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let content: String = row.try_get("content")?;
    let message = Message {
        id: Uuid::try_parse(&id).map_err(|_| corrupt("queued message id", &id))?,
        client_message_id: row.try_get("client_message_id")?,
        role: Role::User,
        content: vec![chatsync_protocol::ContentPart::text(content)],
        tool_calls: None,
        tool_call_id: None,
        status: MessageStatus::Queued,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        version: to_u64(row.try_get("version")?),
    };
    Ok(QueuedRecord {
        message: Arc::new(message),
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

fn encode_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.to_string()))
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(skip_all, fields(context_id = %record.id))]
    async fn insert_context(&self, record: &ContextRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO contexts ({CONTEXT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(record.id.to_string())
        .bind(&record.title)
        .bind(&record.config.model_id)
        .bind(&record.config.mode)
        .bind(&record.config.system_prompt)
        .bind(record.state.name().as_str())
        .bind(record.state.error())
        .bind(i64::from(record.state.retries()))
        .bind(to_i64(record.version))
        .bind(to_i64(record.message_count))
        .bind(format_time(&record.created_at))
        .bind(format_time(&record.updated_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_context(&self, id: Uuid) -> Result<Option<LoadedContext>, StoreError> {
        self.load(id, None).await
    }

    async fn load_changes(
        &self,
        id: Uuid,
        since: u64,
    ) -> Result<Option<LoadedContext>, StoreError> {
        self.load(id, Some(since)).await
    }

    #[tracing::instrument(skip(self))]
    async fn list_contexts(
        &self,
        limit: u32,
        after: Option<Cursor>,
    ) -> Result<ContextPage, StoreError> {
        let rows = match after {
            Some(c) => {
                sqlx::query(&format!(
                    "SELECT {CONTEXT_COLUMNS} FROM contexts \
                     WHERE created_at < $1 OR (created_at = $1 AND id < $2) \
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ))
                .bind(format_time(&c.created_at))
                .bind(c.id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {CONTEXT_COLUMNS} FROM contexts \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contexts")
            .fetch_one(&self.pool)
            .await?;
        Ok(ContextPage {
            contexts: rows
                .iter()
                .map(context_from_row)
                .collect::<Result<_, _>>()?,
            total: to_u64(total),
        })
    }

    #[tracing::instrument(skip(self))]
    async fn delete_context(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM contexts WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.notify(Change::Deleted(id)).await?;
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, fields(
        context_id = %batch.context.id,
        version = batch.context.version,
        messages = batch.messages.len()
    ))]
    async fn save(&self, batch: &SaveBatch) -> Result<(), StoreError> {
        let c = &batch.context;
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction takes the write lock at once and
        // waits for it (busy timeout) instead of failing on a stale read snapshot.
        let updated = sqlx::query(
            "UPDATE contexts SET title = $1, model_id = $2, mode = $3, system_prompt = $4, \
             state = $5, state_error = $6, retries = $7, version = $8, message_count = $9, \
             updated_at = $10 WHERE id = $11 AND version = $12",
        )
        .bind(&c.title)
        .bind(&c.config.model_id)
        .bind(&c.config.mode)
        .bind(&c.config.system_prompt)
        .bind(c.state.name().as_str())
        .bind(c.state.error())
        .bind(i64::from(c.state.retries()))
        .bind(to_i64(c.version))
        .bind(to_i64(c.message_count))
        .bind(format_time(&c.updated_at))
        .bind(c.id.to_string())
        .bind(to_i64(batch.expected_version))
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contexts WHERE id = $1")
                .bind(c.id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            return Err(if exists > 0 {
                StoreError::Conflict {
                    id: c.id,
                    expected: batch.expected_version,
                }
            } else {
                StoreError::Gone(c.id)
            });
        }
        for m in &batch.messages {
            let msg = &m.message;
            sqlx::query(&format!(
                "INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (id) DO UPDATE SET content = excluded.content, \
                 tool_calls = excluded.tool_calls, status = excluded.status, \
                 version = excluded.version"
            ))
            .bind(c.id.to_string())
            .bind(msg.id.to_string())
            .bind(to_i64(m.seq))
            .bind(msg.role.as_str())
            .bind(encode_json(&msg.content)?)
            .bind(msg.tool_calls.as_ref().map(encode_json).transpose()?)
            .bind(&msg.tool_call_id)
            .bind(&msg.client_message_id)
            .bind(&m.idempotency_key)
            .bind(msg.status.as_str())
            .bind(format_time(&msg.created_at))
            .bind(to_i64(msg.version))
            .execute(&mut *tx)
            .await?;
        }
        for id in &batch.dequeued {
            sqlx::query("DELETE FROM queued_messages WHERE id = $1 AND context_id = $2")
                .bind(id.to_string())
                .bind(c.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if self.backend == Backend::Postgres {
            // Delivered to every instance when (and only if) the transaction commits.
            notify_query(Change::Updated {
                id: c.id,
                version: c.version,
            })
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(context_id = %context_id))]
    async fn enqueue(
        &self,
        context_id: Uuid,
        queued: &QueuedRecord,
        max: usize,
    ) -> Result<bool, StoreError> {
        let m = &queued.message;
        // One statement counts and inserts, so concurrent senders (on any instance) never
        // push the queue past its bound.
        let inserted = sqlx::query(
            "INSERT INTO queued_messages \
             (id, context_id, content, client_message_id, idempotency_key, created_at, version) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM queued_messages WHERE context_id = $8) < $9",
        )
        .bind(m.id.to_string())
        .bind(context_id.to_string())
        .bind(chatsync_protocol::content_text(&m.content))
        .bind(&m.client_message_id)
        .bind(&queued.idempotency_key)
        .bind(format_time(&m.created_at))
        .bind(to_i64(m.version))
        .bind(context_id.to_string())
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        let stored = inserted.rows_affected() > 0;
        if stored && self.backend == Backend::Postgres {
            // The instance running the turn picks the message up when this arrives.
            notify_query(Change::Queued(context_id))
                .execute(&self.pool)
                .await?;
        }
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(context_id = %context_id))]
    async fn drop_queued(&self, context_id: Uuid, message_id: Uuid) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM queued_messages WHERE id = $1 AND context_id = $2")
            .bind(message_id.to_string())
            .bind(context_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all, fields(context_id = %context_id))]
    async fn queued_messages(&self, context_id: Uuid) -> Result<Vec<QueuedRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, content, client_message_id, idempotency_key, created_at, version \
             FROM queued_messages WHERE context_id = $1 ORDER BY created_at, id",
        )
        .bind(context_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(queued_from_row).collect()
    }

    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError> {
        let resting = [
            StateName::Idle,
            StateName::AwaitingToolApproval,
            StateName::Failed,
        ];
        // On Postgres, a context another live instance is running is not unfinished.
        let unleased = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => {
                " AND NOT EXISTS (SELECT 1 FROM leases l \
                   WHERE l.context_id = contexts.id AND l.expires_at > now())"
            }
        };
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM contexts WHERE state NOT IN ($1, $2, $3){unleased} ORDER BY updated_at"
        ))
        .bind(resting[0].as_str())
        .bind(resting[1].as_str())
        .bind(resting[2].as_str())
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|id| Uuid::try_parse(id).map_err(|_| corrupt("context id", id)))
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    async fn acquire_lease(&self, id: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(true);
        }
        let taken = sqlx::query(
            "INSERT INTO leases (context_id, owner, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (context_id) DO UPDATE \
             SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at < now()",
        )
        .bind(id.to_string())
        .bind(&self.owner)
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self, id: Uuid) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("DELETE FROM leases WHERE context_id = $1 AND owner = $2")
                .bind(id.to_string())
                .bind(&self.owner)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn stored_version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM contexts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(version.map(to_u64))
    }

    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        self.changes.as_ref().map(broadcast::Sender::subscribe)
    }

    async fn request_cancel(&self, id: Uuid) -> Result<(), StoreError> {
        self.notify(Change::CancelRequested(id)).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance;

    async fn temp_store() -> (tempfile::TempDir, SqlStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        let store = SqlStore::connect(&url).await.expect("connect");
        (dir, store)
    }

    #[tokio::test]
    async fn sqlite_passes_the_store_conformance_suite() {
        let (_dir, store) = temp_store().await;
        conformance::run(&store).await;
    }

    #[tokio::test]
    async fn sqlite_uses_wal_and_full_sync() {
        let (_dir, store) = temp_store().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
    }

    #[test]
    fn sqlite_paths_come_out_of_urls() {
        assert_eq!(sqlite_path("sqlite://./data/x.db"), Some("./data/x.db"));
        assert_eq!(sqlite_path("sqlite:x.db?mode=rwc"), Some("x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    /// The suite on Postgres, when the test command provides one (`CHATSYNC_TEST_PG_URL`
    /// names a server; each run gets a fresh database). `CHATSYNC_REQUIRE_PG=1` turns a
    /// missing server into a failure, so CI cannot skip it silently.
    #[tokio::test]
    async fn postgres_passes_the_store_conformance_suite() {
        let Some(url) = crate::store::postgres::test_database("conformance").await else {
            return;
        };
        let store = SqlStore::connect(&url).await.expect("connect");
        assert!(store.is_shared());
        conformance::run(&store).await;
        let id = Uuid::new_v4();
        let other = SqlStore::connect(&url).await.expect("second instance");
        assert!(store
            .acquire_lease(id, Duration::from_secs(5))
            .await
            .expect("lease"));
        assert!(store
            .acquire_lease(id, Duration::from_secs(5))
            .await
            .expect("renew"));
        assert!(!other
            .acquire_lease(id, Duration::from_secs(5))
            .await
            .expect("held"));
        store.release_lease(id).await.expect("release");
        assert!(other
            .acquire_lease(id, Duration::from_millis(1))
            .await
            .expect("free"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(store
            .acquire_lease(id, Duration::from_secs(5))
            .await
            .expect("expired"));
    }
}
