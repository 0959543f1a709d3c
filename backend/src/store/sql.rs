//! The SQL store, on SQLite (the embedded default: one file in WAL mode with
//! `synchronous=FULL`) or Postgres (scale-out: several instances share it). Both run the
//! same queries through sqlx's `Any` driver; what differs between the databases is asked
//! of the `Dialect` (`dialect.rs`), and leases and change notices of the `Coordination`
//! (`coordination.rs`: one process alone, or Postgres instances).

use super::coordination::{Coordination, SingleProcess};
use super::dialect::Dialect;
use super::group::{self, GroupCommit};
use super::indexer::SearchIndexer;
use super::postgres::PgCoordination;
use super::{
    format_time, parse_time, Change, ContextPage, ContextRecord, Cursor, ListOrder, LoadedContext,
    MessageRecord, QueuedRecord, SaveBatch, SearchHit, SearchPage, Store, StoreError,
};
use crate::domain::{SearchQuery, TurnOptions};
use crate::fsm::State;
use crate::metrics::Metrics;
use async_trait::async_trait;
use chatsync_protocol::{
    ContentPart, ContextConfig, Message, MessageStatus, Role, StateName, ToolCall, ToolCallStatus,
};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use sqlx::{Executor, Row};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    /// Where every write goes: on SQLite one connection of its own (see `connect`), on
    /// Postgres the same pool.
    pub(super) writer: AnyPool,
    dialect: Dialect,
    coordination: Arc<dyn Coordination>,
    /// SQLite's search indexer (`indexer.rs`); `None` where saves index (Postgres).
    indexer: Option<Arc<SearchIndexer>>,
    /// Counts rows that could not be decoded and commits (`/metrics`).
    metrics: Arc<Metrics>,
    /// On SQLite, where saves wait in line to be committed many in one transaction
    /// (`group.rs`); Postgres commits each save on its own (it groups commits itself).
    pub(super) group: Option<Arc<GroupCommit>>,
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
     retries, version, message_count, created_at, updated_at, active_leaf, owner, \
     version_ceiling, turn_options";

pub(super) const MESSAGE_COLUMNS: &str = "id, seq, role, content, tool_calls, tool_call_id, \
     client_message_id, idempotency_key, status, created_at, version, parent_id";

/// Fail fast while the database is down: requests answer 503 instead of hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// SQLite's writers wait in line for the one writer connection, each for a commit: under
/// a burst that line is long, but each place in it is short.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite's group commit (`group.rs`): a commit carries at most 128 saves (a few
/// milliseconds of statements, so the first of a group does not wait long for the last),
/// and at most 4,096 saves wait at once (a live chat has at most one save in flight, so
/// the line is as long as the chats writing at once), each as long as for the writer.
const GROUP_LIMITS: group::Limits = group::Limits {
    per_commit: 128,
    waiting: 4096,
    wait: WRITER_ACQUIRE_TIMEOUT,
};

async fn open_pool(
    url: &str,
    dialect: Dialect,
    size: u32,
    acquire_timeout: Duration,
) -> Result<AnyPool, StoreError> {
    let pool = AnyPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(dialect.test_before_acquire())
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                for statement in dialect.session_setup() {
                    conn.execute(*statement).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

impl SqlStore {
    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Opens the database a URL names (`sqlite://PATH`, created with its folder when
    /// missing, or `postgres://...`), then applies the embedded migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, true).await
    }

    /// `connect`, with SQLite's search indexer started or not (a test stands for a process
    /// that stopped before its indexer ran).
    async fn open(url: &str, start_indexer: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let url = dialect.prepare_url(url)?;
        let pool = open_pool(&url, dialect, dialect.max_connections(), ACQUIRE_TIMEOUT).await?;
        dialect.migrate(&pool).await?;
        let coordination: Arc<dyn Coordination> = match dialect {
            Dialect::Sqlite => Arc::new(SingleProcess),
            Dialect::Postgres => Arc::new(PgCoordination::start(pool.clone(), &url).await?),
        };
        // SQLite admits one writer at a time, and its busy handler is no queue: under load
        // a waiting writer can miss every free moment until its timeout ("database is
        // locked"). So every write goes through one connection, whose pool queues callers
        // in order. A memory database is one per connection: it keeps the one pool.
        let writer = match dialect {
            Dialect::Sqlite if super::dialect::sqlite_path(&url).is_some() => {
                open_pool(&url, dialect, 1, WRITER_ACQUIRE_TIMEOUT).await?
            }
            _ => pool.clone(),
        };
        let metrics = Arc::new(Metrics::default());
        let indexer = (start_indexer && dialect.indexes_in_background())
            .then(|| Arc::new(SearchIndexer::start(writer.clone(), metrics.clone())));
        let store = SqlStore {
            pool,
            writer,
            dialect,
            coordination,
            indexer,
            metrics,
            group: None,
        };
        Ok(store.group_commit((dialect == Dialect::Sqlite).then_some(GROUP_LIMITS)))
    }

    /// Counts undecodable rows, search indexing and commits in these metrics instead of
    /// private ones.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        if let Some(indexer) = &self.indexer {
            indexer.count_in(metrics.clone());
        }
        self.metrics = metrics;
        let limits = self.group.as_ref().map(|g| g.limits());
        self.group_commit(limits)
    }

    /// Saves go through a group commit with these limits (`None`: each on its own).
    pub(super) fn group_commit(mut self, limits: Option<group::Limits>) -> Self {
        self.group = limits.map(|limits| {
            Arc::new(GroupCommit::new(
                self.writer.clone(),
                self.metrics.clone(),
                limits,
            ))
        });
        self
    }

    /// Runs one writing statement and returns the rows it wrote: after `lock` (bound to
    /// `key`) in one transaction when the dialect needs one to order concurrent writers,
    /// else on its own (one statement is its own transaction: one round trip on SQLite,
    /// against three for `BEGIN`, the statement and `COMMIT`).
    async fn write_after(
        &self,
        lock: Option<&'static str>,
        key: &str,
        statement: AnyQuery<'_>,
    ) -> Result<u64, StoreError> {
        let Some(lock) = lock else {
            return Ok(statement.execute(&self.writer).await?.rows_affected());
        };
        let mut tx = self.writer.begin().await?;
        sqlx::query(lock).bind(key).execute(&mut *tx).await?;
        let written = statement.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(written)
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
        let mut record = context_from_row(&row)?;
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE context_id = $1 AND version > $2 ORDER BY seq"
        ))
        .bind(id.to_string())
        // Message versions start at 1, so -1 selects them all.
        .bind(since.map_or(-1, to_i64))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // One row at a time: a row that cannot be decoded stands in as a marked message
        // instead of making the whole context unloadable.
        let mut unreadable = 0;
        let messages = rows
            .iter()
            .map(|row| {
                message_from_row(row).unwrap_or_else(|e| {
                    unreadable += 1;
                    unreadable_message(id, row, &e)
                })
            })
            .collect();
        if unreadable > 0 {
            self.metrics
                .unreadable_messages
                .fetch_add(unreadable, std::sync::atomic::Ordering::Relaxed);
            if !record.state.name().is_resting() {
                // The interrupted turn would run on a history with holes: stop it clearly.
                tracing::error!(context_id = %id, state = record.state.name().as_str(),
                    "a turn cannot resume: some of its messages cannot be read");
                record.state = State::Failed {
                    error: format!(
                        "The interrupted turn cannot resume: {unreadable} message(s) of \
                         this chat cannot be read from the store"
                    ),
                };
            }
        }
        Ok(Some(LoadedContext { record, messages }))
    }
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a context's title, config, state, version and message count, in
/// `CONTEXT_COLUMNS` order (the insert and the save's update both write them).
pub(super) fn bind_context_fields<'q>(query: AnyQuery<'q>, c: &'q ContextRecord) -> AnyQuery<'q> {
    query
        .bind(&c.title)
        .bind(&c.config.model_id)
        .bind(&c.config.mode)
        .bind(&c.config.system_prompt)
        .bind(c.state.name().as_str())
        .bind(c.state.error())
        .bind(i64::from(c.state.retries()))
        .bind(to_i64(c.version))
        .bind(to_i64(c.message_count))
}

pub(super) fn to_i64(v: u64) -> i64 {
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
        active_leaf: optional_uuid(row, "active_leaf")?,
        owner: row.try_get("owner")?,
        version_ceiling: to_u64(row.try_get("version_ceiling")?),
        turn: turn_options(row)?,
    })
}

fn turn_options(row: &AnyRow) -> Result<TurnOptions, StoreError> {
    let stored: Option<String> = row.try_get("turn_options")?;
    TurnOptions::decode(stored.as_deref())
        .map_err(|e| StoreError::Corrupt(format!("unreadable turn options: {e}")))
}

/// A row of a search: the context's columns, and the message that matched best
/// (`matched_id`, `matched_content`) when one did. A message whose content does not
/// decode is left out (the title stands in), as it is shown unreadable elsewhere.
fn search_hit(row: &AnyRow) -> Result<SearchHit, StoreError> {
    let content: Option<String> = row.try_get("matched_content")?;
    let parts = content.and_then(|c| serde_json::from_str::<Vec<ContentPart>>(&c).ok());
    let message = optional_uuid(row, "matched_id")?
        .zip(parts)
        .map(|(id, parts)| (id, chatsync_protocol::content_text(&parts)));
    Ok(SearchHit {
        context: context_from_row(row)?,
        message,
    })
}

fn context_page(rows: &[AnyRow], total: u64) -> Result<ContextPage, StoreError> {
    Ok(ContextPage {
        contexts: rows
            .iter()
            .map(context_from_row)
            .collect::<Result<_, _>>()?,
        total,
    })
}

/// How a tool call is stored: its arguments as their own JSON text, so reading them back
/// starts a fresh depth budget. Arguments the JSON parser accepted once (from the model
/// or from `/tool`) therefore always read back, however deep, while the row around them
/// adds no nesting. Rows written before kept `arguments` inline; they still read.
#[derive(Serialize)]
struct StoredCallOut<'a> {
    id: &'a str,
    name: &'a str,
    arguments_json: String,
    status: ToolCallStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
}

#[derive(Deserialize)]
struct StoredCallIn {
    id: String,
    name: String,
    #[serde(default)]
    arguments_json: Option<String>,
    #[serde(default)]
    arguments: Option<serde_json::Value>,
    status: ToolCallStatus,
    #[serde(default)]
    result: Option<String>,
}

pub(super) fn encode_tool_calls(calls: &[ToolCall]) -> Result<String, StoreError> {
    let stored: Vec<StoredCallOut<'_>> = calls
        .iter()
        .map(|c| {
            Ok(StoredCallOut {
                id: &c.id,
                name: &c.name,
                arguments_json: encode_json(&c.arguments)?,
                status: c.status,
                result: c.result.as_deref(),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    encode_json(&stored)
}

fn decode_tool_calls(text: &str) -> Result<Vec<ToolCall>, serde_json::Error> {
    let stored: Vec<StoredCallIn> = serde_json::from_str(text)?;
    stored
        .into_iter()
        .map(|c| {
            let arguments = match (c.arguments_json, c.arguments) {
                (Some(json), _) => serde_json::from_str(&json)?,
                (None, inline) => inline.unwrap_or_default(),
            };
            Ok(ToolCall {
                id: c.id,
                name: c.name,
                arguments,
                status: c.status,
                result: c.result,
            })
        })
        .collect()
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
            .map(|t| decode_tool_calls(&t))
            .transpose()
            .map_err(json_err)?,
        tool_call_id: row.try_get("tool_call_id")?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
        version: to_u64(row.try_get("version")?),
        parent_id: optional_uuid(row, "parent_id")?,
        // Derived from the whole tree when the context is loaded.
        sibling_index: 0,
        sibling_count: 1,
    };
    Ok(MessageRecord {
        message: Arc::new(message),
        seq: to_u64(row.try_get("seq")?),
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

/// The text that stands in for a message whose row cannot be decoded.
pub const UNREADABLE_MESSAGE: &str =
    "[unreadable message] This message could not be read from the store; \
     the rest of the chat is intact.";

/// A stand-in for a row that cannot be decoded: its place, id and version where those
/// still read, the marker as text. The row itself stays in the database untouched (the
/// stand-in is never dirty, so it is never written back).
fn unreadable_message(context_id: Uuid, row: &AnyRow, error: &StoreError) -> MessageRecord {
    let id = row.try_get::<String, _>("id").ok();
    tracing::error!(%context_id, message_id = id.as_deref().unwrap_or("?"), %error,
        "a stored message cannot be decoded; it is shown as unreadable");
    let role = row
        .try_get::<String, _>("role")
        .ok()
        .and_then(|r| Role::parse(&r))
        .unwrap_or(Role::Assistant);
    let message = Message {
        id: id
            .and_then(|id| Uuid::try_parse(&id).ok())
            .unwrap_or_else(Uuid::new_v4),
        client_message_id: None,
        role,
        content: vec![ContentPart::text(UNREADABLE_MESSAGE)],
        tool_calls: None,
        tool_call_id: row.try_get("tool_call_id").ok().flatten(),
        status: MessageStatus::Complete,
        created_at: row
            .try_get::<String, _>("created_at")
            .ok()
            .and_then(|t| parse_time(&t).ok())
            .unwrap_or_else(super::now),
        version: row.try_get("version").map(to_u64).unwrap_or(0),
        // Its place in the tree still reads when only the content is damaged.
        parent_id: optional_uuid(row, "parent_id").ok().flatten(),
        sibling_index: 0,
        sibling_count: 1,
    };
    MessageRecord {
        message: Arc::new(message),
        seq: row.try_get("seq").map(to_u64).unwrap_or(0),
        idempotency_key: None,
    }
}

fn optional_uuid(row: &AnyRow, column: &str) -> Result<Option<Uuid>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| Uuid::try_parse(&t).map_err(|_| corrupt(column, &t)))
        .transpose()
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
        // A queued message joins the tree when its turn starts, under the leaf of then.
        parent_id: None,
        sibling_index: 0,
        sibling_count: 1,
    };
    Ok(QueuedRecord {
        message: Arc::new(message),
        idempotency_key: row.try_get("idempotency_key")?,
        ahead: row.try_get::<i64, _>("ahead")? != 0,
        turn: turn_options(row)?,
    })
}

pub(super) fn encode_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.to_string()))
}

#[async_trait]
impl Store for SqlStore {
    fn responses(&self) -> Option<&dyn super::ResponseStore> {
        Some(self)
    }

    #[tracing::instrument(skip_all, fields(context_id = %record.id))]
    async fn insert_context(
        &self,
        record: &ContextRecord,
        max_per_owner: Option<u64>,
    ) -> Result<bool, StoreError> {
        // One statement counts and inserts, so concurrent creates never pass the limit.
        let sql = format!(
            "INSERT INTO contexts ({CONTEXT_COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 \
             WHERE (SELECT COUNT(*) FROM contexts WHERE owner = $17) < $18"
        );
        let insert = sqlx::query(&sql).bind(record.id.to_string());
        let insert = bind_context_fields(insert, record)
            .bind(format_time(&record.created_at))
            .bind(format_time(&record.updated_at))
            .bind(record.active_leaf.map(|l| l.to_string()))
            .bind(&record.owner)
            .bind(to_i64(record.version_ceiling))
            .bind(record.turn.encode())
            .bind(&record.owner)
            .bind(max_per_owner.map_or(i64::MAX, to_i64));
        // Concurrent creates for one owner (on any instance) count one after another.
        let owner_lock = max_per_owner.and(self.dialect.owner_lock());
        let inserted = self.write_after(owner_lock, &record.owner, insert).await?;
        Ok(inserted > 0)
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
        owner: &str,
        limit: u32,
        order: ListOrder,
        after: Option<Cursor>,
    ) -> Result<ContextPage, StoreError> {
        let by = order.column();
        let rows = match after {
            Some(c) => {
                sqlx::query(&format!(
                    "SELECT {CONTEXT_COLUMNS} FROM contexts WHERE owner = $1 \
                     AND ({by} < $2 OR ({by} = $2 AND id < $3)) \
                     ORDER BY {by} DESC, id DESC LIMIT $4"
                ))
                .bind(owner)
                .bind(format_time(&c.at))
                .bind(c.id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {CONTEXT_COLUMNS} FROM contexts WHERE owner = $1 \
                     ORDER BY {by} DESC, id DESC LIMIT $2"
                ))
                .bind(owner)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
        };
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contexts WHERE owner = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        context_page(&rows, to_u64(total))
    }

    #[tracing::instrument(skip(self))]
    async fn search_contexts(
        &self,
        owner: &str,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<SearchPage, StoreError> {
        let hits = |owner| self.dialect.search_hits(owner);
        let expression = self.dialect.search_expression(query);
        if let Some(indexer) = &self.indexer {
            // Read-your-writes: every message saved before this search is indexed.
            indexer.caught_up().await?;
        }
        let mut tx = self.pool.begin().await?;
        // Ranked by the best hit (a title's included); the snippet comes from the best
        // message hit.
        let rows = sqlx::query(&format!(
            "WITH hits AS ({}), \
             best AS (SELECT id, MIN(score) AS score FROM hits GROUP BY id), \
             shown AS (SELECT id, message_id FROM (SELECT id, message_id, \
                 ROW_NUMBER() OVER (PARTITION BY id ORDER BY score, message_id) AS n \
                 FROM hits WHERE message_id IS NOT NULL) ranked WHERE n = 1) \
             SELECT {CONTEXT_COLUMNS}, shown.message_id AS matched_id, \
                 (SELECT content FROM messages WHERE messages.id = shown.message_id) \
                 AS matched_content \
             FROM contexts JOIN best USING (id) LEFT JOIN shown USING (id) WHERE owner = $3 \
             ORDER BY best.score, updated_at DESC, id DESC LIMIT $2",
            hits("$3")
        ))
        .bind(&expression)
        .bind(i64::from(limit))
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!(
            "WITH hits AS ({}) SELECT COUNT(DISTINCT id) FROM hits \
             JOIN contexts USING (id) WHERE owner = $2",
            hits("$2")
        ))
        .bind(&expression)
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SearchPage {
            hits: rows.iter().map(search_hit).collect::<Result<_, _>>()?,
            total: to_u64(total),
        })
    }

    #[tracing::instrument(skip(self))]
    async fn delete_context(&self, owner: &str, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM contexts WHERE id = $1 AND owner = $2")
            .bind(id.to_string())
            .bind(owner)
            .execute(&self.writer)
            .await?;
        let deleted = done.rows_affected() > 0;
        if deleted {
            self.coordination.notify(Change::Deleted(id)).await?;
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, fields(
        context_id = %batch.context.id,
        version = batch.context.version,
        messages = batch.messages.len()
    ))]
    async fn save(&self, batch: &SaveBatch) -> Result<(), StoreError> {
        if let Some(group) = &self.group {
            group.save(batch).await?;
        } else {
            let mut tx = self.writer.begin().await?;
            Self::write_batch(&mut tx, self.coordination.as_ref(), batch).await?;
            tx.commit().await?;
            self.metrics.record_commit(1);
        }
        if let Some(indexer) = self.indexer.as_ref().filter(|_| !batch.messages.is_empty()) {
            indexer.saved();
        }
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
        // One statement counts and inserts, so concurrent senders never push the queue
        // past its bound.
        let insert = sqlx::query(
            "INSERT INTO queued_messages \
             (id, context_id, content, client_message_id, idempotency_key, created_at, version, \
             ahead, turn_options) SELECT $1, $2, $3, $4, $5, $6, $7, $10, $11 \
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
        .bind(i64::from(queued.ahead))
        .bind(queued.turn.encode());
        // Two senders (on two instances) could both count the queue below its bound and
        // both insert: the lock makes them count one after the other.
        let key = context_id.to_string();
        let stored = self
            .write_after(self.dialect.queue_lock(), &key, insert)
            .await?
            > 0;
        if stored {
            // The instance running the turn picks the message up when this arrives.
            self.coordination.notify(Change::Queued(context_id)).await?;
        }
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(context_id = %context_id))]
    async fn drop_queued(&self, context_id: Uuid, message_id: Uuid) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM queued_messages WHERE id = $1 AND context_id = $2")
            .bind(message_id.to_string())
            .bind(context_id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(deleted.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all, fields(context_id = %context_id))]
    async fn queued_messages(&self, context_id: Uuid) -> Result<Vec<QueuedRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, content, client_message_id, idempotency_key, created_at, version, ahead, \
             turn_options FROM queued_messages WHERE context_id = $1 ORDER BY ahead DESC, created_at, id",
        )
        .bind(context_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(queued_from_row).collect()
    }

    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError> {
        // Every resting state as a parameter; `StateName::ALL` starts with `Idle`: `$1`.
        let resting: Vec<StateName> = StateName::ALL
            .into_iter()
            .filter(|s| s.is_resting())
            .collect();
        let params: Vec<String> = (1..=resting.len()).map(|n| format!("${n}")).collect();
        // A context another live instance is running is not unfinished.
        let unleased = self.coordination.not_leased_elsewhere();
        // An idle context with a stored queue is unfinished too: its queued messages were
        // acknowledged, and the instance that queued them may not hold the lease.
        let sql = format!(
            "SELECT id FROM contexts WHERE (state NOT IN ({}) \
             OR (state = $1 AND id IN (SELECT context_id FROM queued_messages))){unleased} \
             ORDER BY updated_at",
            params.join(", ")
        );
        let ids: Vec<String> = resting
            .iter()
            .fold(sqlx::query_scalar(&sql), |q, s| q.bind(s.as_str()))
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

    fn coordination(&self) -> &dyn Coordination {
        self.coordination.as_ref()
    }

    async fn stored_version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM contexts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(version.map(to_u64))
    }

    #[tracing::instrument(skip_all, fields(context_id = %id, ceiling))]
    async fn reserve_versions(&self, id: Uuid, ceiling: u64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE contexts SET version_ceiling = $1 WHERE id = $2 AND version_ceiling < $3",
        )
        .bind(to_i64(ceiling))
        .bind(id.to_string())
        .bind(to_i64(ceiling))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::conformance;

    pub(crate) async fn temp_store() -> (tempfile::TempDir, SqlStore) {
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

    /// Chats stored before the search and owner migrations are found once they ran, as
    /// the chats of `local`.
    #[tokio::test]
    async fn sqlite_search_migration_indexes_existing_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().connect(&url).await.expect("pool");
        let mut first = sqlx::migrate!("./migrations/sqlite");
        first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
        first.run(&pool).await.expect("first migration");
        let old = conformance::stored_before_search(&pool).await;
        pool.close().await;

        let store = SqlStore::connect(&url)
            .await
            .expect("connect runs the rest");
        for q in ["archived", "walrus"] {
            let query = crate::domain::SearchQuery::parse(q).expect("words");
            let page = store
                .search_contexts("local", &query, 10)
                .await
                .expect("search");
            let ids: Vec<_> = page.hits.iter().map(|h| h.context.id).collect();
            assert_eq!(ids, [old], "{q}");
        }
        moved_chats_are_found_by_their_new_owner(&store, "local", "walrus").await;
    }

    /// The guide's move of a single user's chats to their user (`UPDATE contexts SET owner`)
    /// takes their index entries along: the new owner finds them, the old one no longer.
    async fn moved_chats_are_found_by_their_new_owner(store: &SqlStore, from: &str, q: &str) {
        let query = crate::domain::SearchQuery::parse(q).expect("words");
        let found = |owner: &str| {
            let owner = owner.to_owned();
            let query = query.clone();
            async move {
                let page = store.search_contexts(&owner, &query, 10).await;
                let page = page.expect("search");
                page.hits.iter().map(|h| h.context.id).collect::<Vec<_>>()
            }
        };
        let before = found(from).await;
        assert_eq!(before.len(), 1, "{q}");
        sqlx::query("UPDATE contexts SET owner = 'erin' WHERE owner = $1")
            .bind(from)
            .execute(&store.pool)
            .await
            .expect("move");
        assert_eq!(found("erin").await, before);
        assert!(found(from).await.is_empty());
    }

    /// The ids of `owner`'s chats a search for `q` finds, best first.
    async fn found(store: &SqlStore, owner: &str, q: &str) -> Vec<Uuid> {
        let query = crate::domain::SearchQuery::parse(q).expect("words");
        let page = store.search_contexts(owner, &query, 10).await;
        page.expect("search")
            .hits
            .iter()
            .map(|h| h.context.id)
            .collect()
    }

    /// Saves one more message into a chat `chat_of` stored (at version 2).
    async fn save_message(store: &SqlStore, c: &mut ContextRecord, m: MessageRecord) {
        c.version += 1;
        let batch = SaveBatch {
            context: c.clone(),
            messages: vec![m],
            expected_version: c.version - 1,
            dequeued: Vec::new(),
        };
        store.save(&batch).await.expect("save");
    }

    /// Read-your-writes: the indexer gathers saves' messages for a while before it writes
    /// their entries, but a search right after a save finds what it saved, and a reply
    /// that turned final is found with its final text at once.
    #[tokio::test]
    async fn a_message_is_found_by_a_search_right_after_its_save() {
        let (_dir, store) = temp_store().await;
        for n in 0..3 {
            let word = ["aardvark", "bison", "caracal"][n];
            let c = conformance::chat_of(&store, "alice", n as i64, "chat", &[word]).await;
            assert_eq!(found(&store, "alice", word).await, [c.id], "{word}");
        }
        let mut c = conformance::chat_of(&store, "alice", 9, "chat", &[]).await;
        let mut reply = conformance::message(0, 3, "a dingo");
        let streaming = Message {
            status: MessageStatus::Streaming,
            ..(*reply.message).clone()
        };
        let id = streaming.id;
        reply.message = Arc::new(streaming);
        save_message(&store, &mut c, reply).await;
        assert!(found(&store, "alice", "dingo").await.is_empty());
        let mut fin = conformance::message(0, 4, "a dingo howls");
        fin.message = Arc::new(Message {
            id,
            ..(*fin.message).clone()
        });
        save_message(&store, &mut c, fin).await;
        assert_eq!(found(&store, "alice", "howls").await, [c.id]);
    }

    /// The newest messages deleted after the indexer saw them, the next message takes
    /// one of their rowids, below the indexer's mark (migration 0014): it is noted and
    /// found, and the deleted ones are not.
    #[tokio::test]
    async fn a_message_on_a_reused_rowid_is_found() {
        let (_dir, store) = temp_store().await;
        let kept = conformance::chat_of(&store, "alice", 1, "chat", &["an emu"]).await;
        let gone = conformance::chat_of(&store, "alice", 2, "chat", &["a wombat", "a dingo"]).await;
        assert_eq!(found(&store, "alice", "wombat").await, [gone.id]);
        assert!(store
            .delete_context("alice", gone.id)
            .await
            .expect("delete"));
        let new = conformance::chat_of(&store, "alice", 3, "chat", &["a koala"]).await;
        let reused: i64 = sqlx::query_scalar(
            "SELECT m.rowid <= (SELECT upto FROM search_watermark) FROM messages m \
             WHERE m.context_id = $1",
        )
        .bind(new.id.to_string())
        .fetch_one(&store.pool)
        .await
        .expect("rowid");
        assert_eq!(
            reused, 1,
            "the new message took a rowid the indexer has seen"
        );
        assert_eq!(found(&store, "alice", "koala").await, [new.id]);
        assert_eq!(found(&store, "alice", "emu").await, [kept.id]);
        assert!(found(&store, "alice", "wombat").await.is_empty());
        assert!(found(&store, "alice", "dingo").await.is_empty());
    }

    /// What a process noted for indexing and did not index before it stopped is indexed
    /// by the next start's first pass, with no search asking: new messages, an edit of
    /// an indexed one, a chat moved to another owner meanwhile; a chat deleted meanwhile
    /// leaves nothing behind.
    #[tokio::test]
    async fn messages_left_unindexed_at_a_stop_are_indexed_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/db.sqlite", dir.path().display());
        let store = SqlStore::connect(&url).await.expect("connect");
        let mut edited = conformance::chat_of(&store, "alice", 1, "chat", &["a walrus"]).await;
        assert_eq!(found(&store, "alice", "walrus").await, [edited.id]);
        let walrus = store.load_context(edited.id).await.expect("load");
        let walrus = walrus.expect("stored").messages[0].message.id;
        drop(store);

        // A process whose indexer never ran.
        let stopped = SqlStore::open(&url, false).await.expect("connect");
        let mut narwhal = conformance::message(0, 3, "a narwhal");
        narwhal.message = Arc::new(Message {
            id: walrus,
            ..(*narwhal.message).clone()
        });
        save_message(&stopped, &mut edited, narwhal).await;
        let new = conformance::chat_of(&stopped, "alice", 2, "chat", &["an ocelot"]).await;
        let moved = conformance::chat_of(&stopped, "alice", 3, "chat", &["a quokka"]).await;
        let deleted = conformance::chat_of(&stopped, "alice", 4, "chat", &["a quokka"]).await;
        sqlx::query("UPDATE contexts SET owner = 'erin' WHERE id = $1")
            .bind(moved.id.to_string())
            .execute(&stopped.pool)
            .await
            .expect("move");
        assert!(stopped
            .delete_context("alice", deleted.id)
            .await
            .expect("delete"));
        assert_eq!(super::super::indexer::pending(&stopped.pool).await, 3);
        // Only the edit of a message the indexer had seen is noted: the new ones are
        // above its mark (migration 0014), and their saves wrote no note.
        let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_pending")
            .fetch_one(&stopped.pool)
            .await
            .expect("notes");
        assert_eq!(notes, 1);
        drop(stopped);

        let started = SqlStore::connect(&url).await.expect("connect");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while super::super::indexer::pending(&started.pool).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not indexed at start"
            );
            tokio::task::yield_now().await;
        }
        assert!(found(&started, "alice", "walrus").await.is_empty());
        assert_eq!(found(&started, "alice", "narwhal").await, [edited.id]);
        assert_eq!(found(&started, "alice", "ocelot").await, [new.id]);
        assert_eq!(found(&started, "erin", "quokka").await, [moved.id]);
        assert!(found(&started, "alice", "quokka").await.is_empty());

        // A message damaged while the server was stopped (its content no JSON) is noted
        // like any change, and indexing it at start stops no search.
        sqlx::query("UPDATE messages SET content = 'not json' WHERE id = $1")
            .bind(walrus.to_string())
            .execute(&started.pool)
            .await
            .expect("damage");
        drop(started);
        let started = SqlStore::connect(&url).await.expect("connect");
        assert!(found(&started, "alice", "narwhal").await.is_empty());
        assert_eq!(found(&started, "alice", "ocelot").await, [new.id]);
    }

    /// Another user's 120 messages and a title match `a`, the owner's one message and no
    /// title: the plan of the owner's search for `a`, one line per row, as `explain` (the
    /// dialect's EXPLAIN) words it.
    async fn plan_of_a_crowded_search(store: &SqlStore, explain: &str) -> Vec<String> {
        let many: Vec<String> = (0..120).map(|n| format!("apple {n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        conformance::chat_of(store, "mallory", 1, "Apples", &many).await;
        conformance::chat_of(store, "dave", 2, "chat", &["an apricot"]).await;
        search_plan(store, explain).await
    }

    /// The plan of dave's search for `a`, which finds his one chat about apricots.
    async fn search_plan(store: &SqlStore, explain: &str) -> Vec<String> {
        let query = crate::domain::SearchQuery::parse("a").expect("words");
        let found = store
            .search_contexts("dave", &query, 10)
            .await
            .expect("search");
        assert_eq!(found.hits.len(), 1, "{found:?}");
        let mut tx = store.pool.begin().await.expect("begin");
        if store.dialect == Dialect::Postgres {
            // A test's tables are small enough for a sequential scan to be cheapest; without
            // it the planner chooses among the indexes, as it does at sizes where they matter.
            tx.execute("SET LOCAL enable_seqscan = off")
                .await
                .expect("set");
        }
        let rows = sqlx::query(&format!("{explain} {}", store.dialect.search_hits("$2")))
            .bind(store.dialect.search_expression(&query))
            .bind("dave")
            .fetch_all(&mut *tx)
            .await
            .expect("explain");
        rows.iter()
            .map(|r| r.try_get::<String, _>(r.len() - 1).expect("plan text"))
            .collect()
    }

    /// FTS5 is asked for the owner's rowid range: the constraint is taken by the index
    /// (`>` and `<` in its plan), not checked on the rows it yields, so another user's
    /// entries are never read, however many match.
    #[tokio::test]
    async fn sqlite_search_reads_only_the_owners_index_entries() {
        let (_dir, store) = temp_store().await;
        let plan = plan_of_a_crowded_search(&store, "EXPLAIN QUERY PLAN").await;
        let scans: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN f VIRTUAL TABLE"))
            .collect();
        assert_eq!(scans.len(), 2, "{plan:#?}");
        for scan in scans {
            let index = scan.rsplit(':').next().expect("index string");
            assert!(
                index.contains('M') && index.contains('<') && index.contains('>'),
                "{plan:#?}"
            );
        }
    }

    /// Saves one assistant message calling a tool with these arguments, then reads the
    /// context back from the store (as after eviction or a restart).
    async fn save_and_reload(
        store: &SqlStore,
        arguments: serde_json::Value,
    ) -> (MessageRecord, LoadedContext) {
        let mut c = conformance::context(0);
        store.insert_context(&c, None).await.expect("insert");
        let mut m = conformance::message(0, 2, "calling");
        let mut message = (*m.message).clone();
        message.role = Role::Assistant;
        message.tool_calls = Some(vec![ToolCall {
            id: "call_1".into(),
            name: "calculator".into(),
            arguments,
            status: ToolCallStatus::Pending,
            result: None,
        }]);
        m.message = Arc::new(message);
        c.version = 2;
        c.message_count = 1;
        c.state = State::ExecutingTools;
        store
            .save(&SaveBatch {
                context: c.clone(),
                messages: vec![m.clone()],
                dequeued: Vec::new(),
                expected_version: 1,
            })
            .await
            .expect("save");
        let loaded = store
            .load_context(c.id)
            .await
            .expect("load")
            .expect("exists");
        (m, loaded)
    }

    /// JSON nested as deep as the parser accepts: `depth` arrays or objects around a leaf.
    fn nested(depth: usize, objects: &[bool], leaf: serde_json::Value) -> serde_json::Value {
        (0..depth).fold(leaf, |inner, level| {
            if objects[level % objects.len()] {
                serde_json::json!({ "k": inner })
            } else {
                serde_json::json!([inner])
            }
        })
    }

    fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            // Binary fractions: exact in decimal, so equality after a round trip is fair.
            (-1_000_000i64..1_000_000).prop_map(|n| serde_json::Value::from(n as f64 / 8.0)),
            any::<String>().prop_map(serde_json::Value::from),
        ]
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        json_leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the JSON parser accepted as tool arguments, at any depth it allows,
        /// is saved and loaded back equal.
        #[test]
        fn any_tool_arguments_the_parser_accepts_read_back_equal(
            depth in 0usize..200,
            objects in proptest::collection::vec(any::<bool>(), 1..8),
            leaf in any_json(),
        ) {
            let arguments = nested(depth, &objects, leaf);
            // Only what the parser accepts can arrive (from `/tool` or a model).
            prop_assume!(serde_json::from_str::<serde_json::Value>(&arguments.to_string()).is_ok());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let (sent, loaded) = runtime.block_on(async {
                let (_dir, store) = temp_store().await;
                save_and_reload(&store, arguments).await
            });
            prop_assert_eq!(loaded.messages, vec![sent]);
            prop_assert_eq!(loaded.record.state, State::ExecutingTools);
        }
    }

    #[tokio::test]
    async fn the_deepest_arguments_the_parser_accepts_read_back() {
        let (_dir, store) = temp_store().await;
        let text = format!("{}{}", "[".repeat(127), "]".repeat(127));
        let arguments: serde_json::Value =
            serde_json::from_str(&text).expect("the parser accepts 127 levels");
        let (sent, loaded) = save_and_reload(&store, arguments).await;
        assert_eq!(loaded.messages, vec![sent]);
    }

    /// A row that cannot be decoded (here: written by an older version with the arguments
    /// inline, too deep to read) shows as a marked message; the context still loads, its
    /// interrupted turn goes to Failed with a clear error, and the row is counted.
    #[tokio::test]
    async fn an_undecodable_row_shows_as_unreadable_and_fails_the_interrupted_turn() {
        let (_dir, store) = temp_store().await;
        let metrics = Arc::new(Metrics::default());
        let store = store.with_metrics(metrics.clone());
        let (sent, _) = save_and_reload(&store, serde_json::json!({"expression": "1"})).await;
        let deep = format!("{}{}", "[".repeat(127), "]".repeat(127));
        sqlx::query("UPDATE messages SET tool_calls = $1 WHERE id = $2")
            .bind(format!(
                r#"[{{"id":"call_1","name":"calculator","arguments":{deep},"status":"pending"}}]"#
            ))
            .bind(sent.message.id.to_string())
            .execute(&store.pool)
            .await
            .expect("write an old-format row");
        let context_id: String =
            sqlx::query_scalar("SELECT context_id FROM messages WHERE id = $1")
                .bind(sent.message.id.to_string())
                .fetch_one(&store.pool)
                .await
                .expect("context id");
        let id = Uuid::try_parse(&context_id).expect("uuid");
        let loaded = store
            .load_context(id)
            .await
            .expect("loads")
            .expect("exists");
        assert_eq!(loaded.messages.len(), 1);
        let shown = &loaded.messages[0].message;
        assert_eq!(shown.id, sent.message.id, "the stand-in keeps the row's id");
        assert_eq!(shown.role, Role::Assistant);
        assert_eq!(
            chatsync_protocol::content_text(&shown.content),
            UNREADABLE_MESSAGE
        );
        assert!(
            matches!(&loaded.record.state, State::Failed { error } if error.contains("cannot resume")),
            "{:?}",
            loaded.record.state
        );
        assert_eq!(Metrics::get(&metrics.unreadable_messages), 1);
        assert!(metrics
            .render()
            .contains("chatsync_unreadable_messages_total 1"));
    }

    /// A state this binary does not know (one a newer binary wrote) fails the load with
    /// an error that names it, never as another state; a chat resting in
    /// `AwaitingToolOutput` reads back as it was saved.
    #[tokio::test]
    async fn an_unknown_state_fails_the_load_clearly() {
        let (_dir, store) = temp_store().await;
        let waiting = ContextRecord {
            state: State::AwaitingToolOutput,
            ..conformance::context(1)
        };
        store.insert_context(&waiting, None).await.expect("insert");
        let loaded = store.load_context(waiting.id).await.expect("load");
        assert_eq!(
            loaded.map(|l| l.record.state),
            Some(State::AwaitingToolOutput)
        );
        sqlx::query("UPDATE contexts SET state = 'AwaitingSomethingNew' WHERE id = $1")
            .bind(waiting.id.to_string())
            .execute(&store.writer)
            .await
            .expect("update");
        let error = store.load_context(waiting.id).await.expect_err("unknown");
        assert!(
            matches!(&error, StoreError::Corrupt(m) if m.contains("unknown state \"AwaitingSomethingNew\"")),
            "{error:?}"
        );
    }

    /// A database written before branches existed opens as single-branch chats: each
    /// message follows the one before it, and the path ends at the newest.
    #[tokio::test]
    async fn an_old_database_migrates_to_one_branch_per_chat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/old.sqlite?mode=rwc", dir.path().display());
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().connect(&url).await.expect("open");
        // The schema as the first release left it: only migration 0001, recorded.
        let all = sqlx::migrate!("./migrations/sqlite");
        let first = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(all.migrations[..1].to_vec()),
            ..sqlx::migrate!("./migrations/sqlite")
        };
        first.run(&pool).await.expect("0001");
        let id = Uuid::new_v4();
        let at = "2026-01-01T00:00:00.000000Z";
        sqlx::query(&format!(
            "INSERT INTO contexts (id, title, state, version, message_count, created_at, \
             updated_at) VALUES ('{id}', 'old', 'Idle', 4, 3, '{at}', '{at}')"
        ))
        .execute(&pool)
        .await
        .expect("context");
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (seq, m) in ids.iter().enumerate() {
            let role = if seq % 2 == 0 { "user" } else { "assistant" };
            sqlx::query(&format!(
                "INSERT INTO messages (id, context_id, seq, role, content, status, created_at, \
                 version) VALUES ('{m}', '{id}', {seq}, '{role}', \
                 '[{{\"type\":\"text\",\"text\":\"m{seq}\"}}]', 'complete', '{at}', 2)"
            ))
            .execute(&pool)
            .await
            .expect("message");
        }
        pool.close().await;

        let store = SqlStore::connect(&url).await.expect("migrate");
        let loaded = store.load_context(id).await.expect("load").expect("kept");
        let parents: Vec<Option<Uuid>> = loaded
            .messages
            .iter()
            .map(|m| m.message.parent_id)
            .collect();
        assert_eq!(parents, [None, Some(ids[0]), Some(ids[1])]);
        assert_eq!(loaded.record.active_leaf, None, "null: the newest message");
        assert_eq!(crate::engine::active_path(loaded), ids);
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

    /// The owner's search visits the owner's matching rows only: no step of the plan reads
    /// (or filters out) another user's 120 matching messages, nor, once the owner has many
    /// messages that do not match, those (the owner-tagged index finds the matching ones).
    #[tokio::test]
    async fn postgres_search_visits_only_the_owners_rows() {
        let Some(url) = crate::store::postgres::test_database("search_plan").await else {
            return;
        };
        let store = SqlStore::connect(&url).await.expect("connect");
        let explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)";
        let visits_few = |plan: &[String]| {
            for line in plan
                .iter()
                .filter(|l| l.contains("rows=") || l.contains("Removed"))
            {
                let rows = line
                    .split("rows=")
                    .nth(1)
                    .or_else(|| line.split(": ").nth(1));
                let n: u64 = rows
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .expect("a count");
                assert!(n < 10, "{line}\n{}", plan.join("\n"));
            }
        };
        visits_few(&plan_of_a_crowded_search(&store, explain).await);

        let own: Vec<String> = (0..300).map(|n| format!("zebra {n}")).collect();
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        conformance::chat_of(&store, "dave", 3, "chat", &own).await;
        sqlx::query("ANALYZE")
            .execute(&store.pool)
            .await
            .expect("analyze");
        let plan = search_plan(&store, explain).await;
        visits_few(&plan);
        assert!(
            plan.iter().any(|l| l.contains("messages_owned_search")),
            "{}",
            plan.join("\n")
        );
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
