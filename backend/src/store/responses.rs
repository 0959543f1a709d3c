//! What the OpenAI-compatible API (`/v1`) stores beside the contexts: one row per
//! response (a turn of a context) and each conversation's metadata. Everything else a
//! response shows is derived from the context's messages (`crate::v1::events`).

use super::{SqlStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

/// A stored response: who asked, in which context, and the request as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRow {
    /// `resp_...`
    pub id: String,
    pub owner: String,
    pub context_id: Uuid,
    pub idempotency_key: Option<String>,
    /// The request as the API parsed it (JSON; the API owns its shape).
    pub request: String,
    /// How it ended (JSON), once a reader saw it end; never rewritten.
    pub outcome: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

#[async_trait]
pub trait ResponseStore: Send + Sync {
    /// Stores a new response; `false` when the owner already has one under its idempotency
    /// key (or its id), in which case nothing is written.
    async fn insert_response(&self, row: &ResponseRow) -> Result<bool, StoreError>;
    /// An owner's response by id: another owner's answers `None`, as an unknown id does.
    async fn response(&self, owner: &str, id: &str) -> Result<Option<ResponseRow>, StoreError>;
    async fn response_by_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<ResponseRow>, StoreError>;
    /// Records how a response ended unless that is recorded already; answers the outcome
    /// stored now (the first writer's).
    async fn settle_response(&self, id: &str, outcome: &str) -> Result<String, StoreError>;
    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool, StoreError>;
    async fn set_conversation_metadata(
        &self,
        context_id: Uuid,
        metadata: &str,
    ) -> Result<(), StoreError>;
    async fn conversation_metadata(&self, context_id: Uuid) -> Result<Option<String>, StoreError>;
}

const COLUMNS: &str = "id, owner, context_id, idempotency_key, request, outcome, created_at";

fn row(r: &sqlx::any::AnyRow) -> Result<ResponseRow, StoreError> {
    let context_id: String = r.try_get("context_id")?;
    Ok(ResponseRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        context_id: Uuid::parse_str(&context_id)
            .map_err(|e| StoreError::Database(format!("bad context id in responses: {e}")))?,
        idempotency_key: r.try_get("idempotency_key")?,
        request: r.try_get("request")?,
        outcome: r.try_get("outcome")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl ResponseStore for SqlStore {
    async fn insert_response(&self, r: &ResponseRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO responses (id, owner, context_id, idempotency_key, request, outcome, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.owner)
        .bind(r.context_id.to_string())
        .bind(&r.idempotency_key)
        .bind(&r.request)
        .bind(&r.outcome)
        .bind(r.created_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn response(&self, owner: &str, id: &str) -> Result<Option<ResponseRow>, StoreError> {
        let found = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM responses WHERE id = $1 AND owner = $2"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(self.pool())
        .await?;
        found.as_ref().map(row).transpose()
    }

    async fn response_by_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<ResponseRow>, StoreError> {
        let found = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM responses WHERE owner = $1 AND idempotency_key = $2"
        ))
        .bind(owner)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        found.as_ref().map(row).transpose()
    }

    async fn settle_response(&self, id: &str, outcome: &str) -> Result<String, StoreError> {
        sqlx::query("UPDATE responses SET outcome = $1 WHERE id = $2 AND outcome IS NULL")
            .bind(outcome)
            .bind(id)
            .execute(self.pool())
            .await?;
        let stored: Option<String> = sqlx::query("SELECT outcome FROM responses WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.try_get("outcome"))
            .transpose()?
            .flatten();
        stored.ok_or_else(|| StoreError::Database(format!("response {id} is gone")))
    }

    async fn delete_response(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_conversation_metadata(
        &self,
        context_id: Uuid,
        metadata: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversation_metadata (context_id, metadata) VALUES ($1, $2) \
             ON CONFLICT (context_id) DO UPDATE SET metadata = excluded.metadata",
        )
        .bind(context_id.to_string())
        .bind(metadata)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn conversation_metadata(&self, context_id: Uuid) -> Result<Option<String>, StoreError> {
        let found = sqlx::query("SELECT metadata FROM conversation_metadata WHERE context_id = $1")
            .bind(context_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        Ok(found.map(|r| r.try_get("metadata")).transpose()?)
    }
}
