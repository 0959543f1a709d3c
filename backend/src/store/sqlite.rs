//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`.

use super::{
    format_time, parse_time, ContextPage, ContextRecord, Cursor, LoadedContext, MessageRecord,
    SaveBatch, Store, StoreError,
};
use crate::fsm::State;
use async_trait::async_trait;
use chatsync_protocol::{ContextConfig, Message, MessageStatus, Role, StateName};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            other => StoreError::Database(other.to_string()),
        }
    }
}

const CONTEXT_COLUMNS: &str = "id, title, model_id, mode, system_prompt, state, state_error, \
     retries, version, message_count, created_at, updated_at";

const MESSAGE_COLUMNS: &str = "id, seq, role, content, tool_calls, tool_call_id, \
     client_message_id, idempotency_key, status, created_at, version";

impl SqliteStore {
    /// Opens (and creates, with its folder, when missing) the database file, then applies
    /// the embedded migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        Ok(SqliteStore { pool })
    }
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

fn context_from_row(row: &SqliteRow) -> Result<ContextRecord, StoreError> {
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
        created_at: parse_time(row.try_get("created_at")?)?,
        updated_at: parse_time(row.try_get("updated_at")?)?,
    })
}

fn message_from_row(row: &SqliteRow) -> Result<MessageRecord, StoreError> {
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
        created_at: parse_time(row.try_get("created_at")?)?,
        version: to_u64(row.try_get("version")?),
    };
    Ok(MessageRecord {
        message: Arc::new(message),
        seq: to_u64(row.try_get("seq")?),
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

fn encode_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
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

    #[tracing::instrument(skip(self))]
    async fn load_context(&self, id: Uuid) -> Result<Option<LoadedContext>, StoreError> {
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
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE context_id = $1 ORDER BY seq"
        ))
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(Some(LoadedContext { record, messages }))
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
        Ok(done.rows_affected() > 0)
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
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM contexts WHERE id = $1")
                .bind(c.id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict {
                    id: c.id,
                    expected: batch.expected_version,
                },
                None => StoreError::Gone(c.id),
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
        tx.commit().await?;
        Ok(())
    }

    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError> {
        let resting = [
            StateName::Idle,
            StateName::AwaitingToolApproval,
            StateName::Failed,
        ];
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM contexts WHERE state NOT IN ($1, $2, $3) ORDER BY updated_at",
        )
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance;

    async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        let store = SqliteStore::connect(&url).await.expect("connect");
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
}
