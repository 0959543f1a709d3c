//! The statements that write a save's batch: its context row (if the stored version is
//! the one expected), its changed messages and the queued messages its turn starts.
//!
//! Postgres runs them one by one in the caller's transaction (`SqlStore::write_batch`).
//! SQLite runs them as one script (`SqlStore::write_script`): sqlx hands every statement
//! to SQLite's worker thread and waits for its answer (two thread switches), so four
//! statements a save (BEGIN, the context, the message, COMMIT) were four round trips;
//! the script is one. It is its own SAVEPOINT: outside a transaction that is the save's
//! transaction (its RELEASE commits), inside a group's (`group.rs`) it undoes one batch
//! alone. The script relies on SQLite's driver in sqlx preparing every statement of a
//! query string with one set of bound parameters (numbered, so each statement takes the
//! ones it names); sqlx calls that behaviour deprecated (launchbadge/sqlx#3108) without a
//! replacement that binds parameters. Should a later sqlx run only the first statement,
//! the save would store the context row without its messages: the store's conformance
//! suite fails then.

use super::sql::{
    bind_context_fields, encode_json, encode_tool_calls, to_i64, AnyQuery, MESSAGE_COLUMNS,
};
use super::{format_time, Change, SaveBatch, SqlStore, StoreError};
use crate::store::coordination::Coordination;
use sqlx::{AnyConnection, Executor};

/// A save's update of its context row, with parameters `$1` to `$15` (`bind_update`):
/// `$11` is the context's id and `$12` the version the save expects in the store. It
/// returns a row when it wrote one.
const UPDATE_CONTEXT: &str = "UPDATE contexts SET title = $1, model_id = $2, mode = $3, \
     system_prompt = $4, state = $5, state_error = $6, retries = $7, version = $8, \
     message_count = $9, updated_at = $10, active_leaf = $13, version_ceiling = $14, \
     turn_options = $15 WHERE id = $11 AND version = $12 RETURNING version";
/// The parameter of `UPDATE_CONTEXT` holding the context's id.
const CONTEXT_ID: usize = 11;
/// Parameters `UPDATE_CONTEXT` takes.
const UPDATE_PARAMS: usize = 15;
/// Parameters each message takes (`MESSAGE_COLUMNS`, as `bind_messages` binds them). A
/// statement takes at most 32,766 on SQLite and 65,535 on Postgres, so a batch holds at
/// most about 2,700 messages: far more than any save writes (the most is a
/// `/v1/chat/completions` request's history, at most 1,000 messages).
const MESSAGE_PARAMS: usize = 12;
/// In SQLite's script: the statement before this one wrote (the context row, or the
/// messages, which the script writes only after the context row). `changes()` counts the
/// rows the last statement that finished wrote itself (not its triggers'), so a batch
/// refused for its version, or whose context is gone, writes nothing at all.
const WROTE_BEFORE: &str = "changes() > 0";

/// `$first, $first + 1, ...`: `n` numbered parameters.
fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|p| format!("${p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An upsert of `n` messages into the context whose id is parameter `$context`, their
/// values from parameter `$first` on; only `when` it holds, if given.
fn upsert_messages(n: usize, context: usize, first: usize, when: Option<&str>) -> String {
    let rows = (0..n)
        .map(|i| {
            let values = params(first + i * MESSAGE_PARAMS, MESSAGE_PARAMS);
            format!("(${context}, {values})")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let source = match when {
        // (An upsert's SELECT needs its WHERE: it keeps `ON CONFLICT` from reading as a
        // join's `ON`.)
        Some(condition) => format!("SELECT * FROM (VALUES {rows}) WHERE {condition}"),
        None => format!("VALUES {rows}"),
    };
    format!(
        "INSERT INTO messages (context_id, {MESSAGE_COLUMNS}) {source} \
         ON CONFLICT (id) DO UPDATE SET content = excluded.content, \
         tool_calls = excluded.tool_calls, status = excluded.status, \
         version = excluded.version"
    )
}

/// Deletes `n` queued messages of the context whose id is parameter `$context`, their ids
/// from parameter `$first` on; only `when` it holds, if given.
fn delete_dequeued(n: usize, context: usize, first: usize, when: Option<&str>) -> String {
    let condition = when.map(|c| format!(" AND {c}")).unwrap_or_default();
    format!(
        "DELETE FROM queued_messages WHERE context_id = ${context} AND id IN ({}){condition}",
        params(first, n)
    )
}

/// Binds `UPDATE_CONTEXT`'s parameters.
fn bind_update<'q>(query: AnyQuery<'q>, batch: &'q SaveBatch) -> AnyQuery<'q> {
    let c = &batch.context;
    bind_context_fields(query, c)
        .bind(format_time(&c.updated_at))
        .bind(c.id.to_string())
        .bind(to_i64(batch.expected_version))
        .bind(c.active_leaf.map(|l| l.to_string()))
        .bind(to_i64(c.version_ceiling))
        .bind(c.turn.encode())
}

/// Binds the batch's messages, `MESSAGE_PARAMS` each, in `MESSAGE_COLUMNS` order.
fn bind_messages<'q>(
    mut query: AnyQuery<'q>,
    batch: &'q SaveBatch,
) -> Result<AnyQuery<'q>, StoreError> {
    for m in &batch.messages {
        let msg = &m.message;
        let tool_calls = msg.tool_calls.as_deref().map(encode_tool_calls);
        query = query
            .bind(msg.id.to_string())
            .bind(to_i64(m.seq))
            .bind(msg.role.as_str())
            .bind(encode_json(&msg.content)?)
            .bind(tool_calls.transpose()?)
            .bind(&msg.tool_call_id)
            .bind(&msg.client_message_id)
            .bind(&m.idempotency_key)
            .bind(msg.status.as_str())
            .bind(format_time(&msg.created_at))
            .bind(to_i64(msg.version))
            .bind(msg.parent_id.map(|p| p.to_string()));
    }
    Ok(query)
}

fn bind_dequeued<'q>(mut query: AnyQuery<'q>, batch: &SaveBatch) -> AnyQuery<'q> {
    for id in &batch.dequeued {
        query = query.bind(id.to_string());
    }
    query
}

/// SQLite's script for a batch: one savepoint around the statements, the messages and
/// the dequeued written only after the context row was.
fn script(batch: &SaveBatch) -> String {
    let (messages, dequeued) = (batch.messages.len(), batch.dequeued.len());
    let mut sql = format!("SAVEPOINT save; {UPDATE_CONTEXT}");
    let first = UPDATE_PARAMS + 1;
    if messages > 0 {
        let upsert = upsert_messages(messages, CONTEXT_ID, first, Some(WROTE_BEFORE));
        sql = format!("{sql}; {upsert}");
    }
    if dequeued > 0 {
        let first = first + messages * MESSAGE_PARAMS;
        let delete = delete_dequeued(dequeued, CONTEXT_ID, first, Some(WROTE_BEFORE));
        sql = format!("{sql}; {delete}");
    }
    format!("{sql}; RELEASE save")
}

impl SqlStore {
    /// Writes a batch statement by statement in the transaction `tx` is in (Postgres:
    /// the caller commits). `Conflict` and `Gone` are found before anything is written.
    pub(super) async fn write_batch(
        tx: &mut AnyConnection,
        coordination: &dyn Coordination,
        batch: &SaveBatch,
    ) -> Result<(), StoreError> {
        let c = &batch.context;
        // The first statement writes, so the transaction takes the write lock at once.
        let updated = bind_update(sqlx::query(UPDATE_CONTEXT), batch)
            .fetch_optional(&mut *tx)
            .await?;
        if updated.is_none() {
            return Err(Self::refused(tx, batch).await);
        }
        if !batch.messages.is_empty() {
            let sql = upsert_messages(batch.messages.len(), 1, 2, None);
            bind_messages(sqlx::query(&sql).bind(c.id.to_string()), batch)?
                .execute(&mut *tx)
                .await?;
        }
        if !batch.dequeued.is_empty() {
            let sql = delete_dequeued(batch.dequeued.len(), 1, 2, None);
            bind_dequeued(sqlx::query(&sql).bind(c.id.to_string()), batch)
                .execute(&mut *tx)
                .await?;
        }
        let saved = Change::Updated {
            id: c.id,
            version: c.version,
        };
        coordination.notify_on_commit(tx, saved).await?;
        Ok(())
    }

    /// Writes a batch on SQLite in one round trip (the module's comment), in a savepoint
    /// of its own: outside a transaction, the save's own transaction, committed when this
    /// returns `Ok(Ok(()))`; inside one, part of it. `Ok(Err(_))`: the batch failed and
    /// wrote nothing; the connection is as it was. `Err(_)`: the batch failed and could
    /// not be undone alone (SQLite rolled the whole transaction back, or its commit
    /// failed): what the connection holds is unknown, and nothing of the transaction may
    /// be committed.
    pub(super) async fn write_script(
        conn: &mut AnyConnection,
        batch: &SaveBatch,
    ) -> Result<Result<(), StoreError>, StoreError> {
        let sql = script(batch);
        let query = bind_update(sqlx::query(&sql), batch);
        let query = match bind_messages(query, batch) {
            Ok(query) => bind_dequeued(query, batch),
            Err(e) => return Ok(Err(e)),
        };
        match query.fetch_all(&mut *conn).await {
            // The context row's update returned itself: the rest ran after it.
            Ok(rows) if !rows.is_empty() => Ok(Ok(())),
            // Nothing was written, and the savepoint was released.
            Ok(_) => Ok(Err(Self::refused(conn, batch).await)),
            Err(e) => {
                // The script stopped at the failing statement, inside its savepoint.
                conn.execute("ROLLBACK TO save; RELEASE save").await?;
                Ok(Err(e.into()))
            }
        }
    }

    /// Why the context row of a batch was not updated: another version is stored
    /// (`Conflict`), or the context is gone.
    async fn refused(conn: &mut AnyConnection, batch: &SaveBatch) -> StoreError {
        let id = batch.context.id;
        let exists = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM contexts WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await;
        match exists {
            Ok(0) => StoreError::Gone(id),
            Ok(_) => StoreError::Conflict {
                id,
                expected: batch.expected_version,
            },
            Err(e) => e.into(),
        }
    }
}
