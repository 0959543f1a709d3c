//! SQLite's search indexer: writes the full-text entries of new messages and of the
//! changed ones that saves noted in `search_pending` (migrations 0013 and 0014), many
//! messages in one transaction, off the save's path. Writing their FTS5 entries in the
//! save was about half the pages it wrote and 0.3 ms of its commit; a note, one page more
//! (12 us): so a new message is not noted at all. Messages get rising rowids, and the
//! indexer keeps a mark (`search_watermark`): each pass indexes the final messages above
//! it and moves it past every message it saw. Only a change to a message at or below the
//! mark is noted (a reply that still streamed when a pass went by, an edit).
//!
//! Read-your-writes: each save that may have noted a message counts itself after its
//! commit (`noted`); a search reads that count first and waits until the indexer has
//! drained the notes of at least as many saves (`caught_up`), asking it to run at once,
//! for at most `SEARCH_WAIT`. Crash safety: the notes are committed with their messages,
//! and the mark moves in the pass's transaction, so what a stopped process left unindexed
//! is indexed by the first pass after the next start, which runs at once.
//!
//! Postgres has no indexer: its search vectors are columns of the rows, set by the save.

use super::dialect::OWNER_SHIFT;
use super::StoreError;
use crate::metrics::Metrics;
use sqlx::AnyPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How long the notes of saves gather before a pass indexes them together (unless a
/// search asks first): one transaction and one new index segment for all of them. In
/// `persist-bench` on a shared 2-core machine, 100 ms made passes of 30 to 140 messages
/// holding the writer 0.04 to 0.36 ms a turn; 500 ms, passes of 160 to 520 messages,
/// 0.02 to 0.12.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// Most messages one indexing transaction takes; a longer backlog takes several.
const BATCH_MESSAGES: i64 = 512;
/// How long a search waits for the index to catch up before it fails.
const SEARCH_WAIT: Duration = Duration::from_secs(5);
/// How long the indexer waits before it tries again after a failed pass.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// The indexer of one store: its task runs until the last clone of the store is dropped.
#[derive(Debug)]
pub(super) struct SearchIndexer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// Saves that may have noted messages, counted after their commit. Starts at 1: the
    /// notes an earlier process left count as one.
    noted: AtomicU64,
    /// The count of `noted` the index has caught up with.
    caught_up: watch::Sender<u64>,
    /// A save noted messages: index them within `BATCH_DELAY`.
    saved: Notify,
    /// A search waits: index now.
    asked: Notify,
    /// Where passes are counted (the store's metrics, once it is given them).
    metrics: Mutex<Arc<Metrics>>,
}

impl SearchIndexer {
    /// Starts the indexer on `writer` (where every write of the store goes); its first
    /// pass runs at once.
    pub(super) fn start(writer: AnyPool, metrics: Arc<Metrics>) -> SearchIndexer {
        let shared = Arc::new(Shared {
            noted: AtomicU64::new(1),
            caught_up: watch::Sender::new(0),
            saved: Notify::new(),
            asked: Notify::new(),
            metrics: Mutex::new(metrics),
        });
        let task = tokio::spawn(run(writer, shared.clone()));
        SearchIndexer { shared, task }
    }

    /// Counts the passes in these metrics from now on.
    pub(super) fn count_in(&self, metrics: Arc<Metrics>) {
        if let Ok(mut m) = self.shared.metrics.lock() {
            *m = metrics;
        }
    }

    /// After a save that may have noted messages committed.
    pub(super) fn saved(&self) {
        self.shared.noted.fetch_add(1, Ordering::AcqRel);
        self.shared.saved.notify_one();
    }

    /// Waits until every save that committed before this call is indexed.
    pub(super) async fn caught_up(&self) -> Result<(), StoreError> {
        let target = self.shared.noted.load(Ordering::Acquire);
        let mut indexed = self.shared.caught_up.subscribe();
        if *indexed.borrow() >= target {
            return Ok(());
        }
        self.shared.asked.notify_one();
        let wait = async { indexed.wait_for(|n| *n >= target).await.is_ok() };
        if tokio::time::timeout(SEARCH_WAIT, wait).await == Ok(true) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "the search index did not catch up with the latest saves within {SEARCH_WAIT:?}"
            )))
        }
    }
}

impl Drop for SearchIndexer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(writer: AnyPool, shared: Arc<Shared>) {
    let mut at_once = true;
    loop {
        if !at_once {
            tokio::select! {
                () = shared.saved.notified() => {
                    // Let more saves' notes gather, unless a search waits for them.
                    tokio::select! {
                        () = tokio::time::sleep(BATCH_DELAY) => {}
                        () = shared.asked.notified() => {}
                    }
                }
                () = shared.asked.notified() => {}
            }
        }
        let target = shared.noted.load(Ordering::Acquire);
        match index_pending(&writer).await {
            Ok((messages, took)) => {
                if messages > 0 {
                    let metrics = shared.metrics.lock().map(|m| m.clone());
                    if let Ok(metrics) = metrics {
                        metrics.record_index_pass(messages, took);
                    }
                }
                shared.caught_up.send_modify(|n| *n = (*n).max(target));
                at_once = false;
            }
            Err(e) => {
                // Searches wait (bounded) meanwhile; the notes stay until a pass succeeds.
                tracing::error!(error = %e, "indexing messages for search failed");
                tokio::time::sleep(RETRY_DELAY).await;
                at_once = true;
            }
        }
    }
}

/// Indexes every noted message and every new one (above the mark of migration 0014),
/// up to `BATCH_MESSAGES` of each to a transaction, and returns how many it took and how
/// long it held the writer. An entry's rowid is the owner's number shifted left, or-ed
/// with the message's rowid (migration 0011); a note's `indexed` says whether the message
/// has an entry to remove first (migration 0013's invariant), so none is removed that is
/// not there and none is added twice.
async fn index_pending(writer: &AnyPool) -> Result<(u64, Duration), StoreError> {
    let owned = "FROM messages m JOIN contexts c ON c.id = m.context_id \
                 JOIN search_owners o ON o.owner = c.owner";
    let noted = |what: &str| {
        format!(
            "{what} {owned} JOIN search_pending p ON p.message_rowid = m.rowid \
             WHERE p.message_rowid <= $1"
        )
    };
    let key = format!("(o.id << {OWNER_SHIFT}) | m.rowid");
    // A row whose content is not JSON (damaged outside the server) gets an empty entry:
    // failing on it would fail every pass, and every search after it.
    let text = "(SELECT group_concat(json_extract(value, '$.text'), ' ') \
                FROM json_each(CASE WHEN json_valid(m.content) THEN m.content END))";
    let mark = "(SELECT upto FROM search_watermark)";
    let mut total = 0;
    let mut held = Duration::ZERO;
    loop {
        let mut tx = writer.begin().await?;
        let started = Instant::now();
        let (count, last): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MAX(message_rowid) FROM \
             (SELECT message_rowid FROM search_pending ORDER BY message_rowid LIMIT $1)",
        )
        .bind(BATCH_MESSAGES)
        .fetch_one(&mut *tx)
        .await?;
        let (new, newest): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT COUNT(*), MAX(rowid) FROM \
             (SELECT rowid FROM messages WHERE rowid > {mark} ORDER BY rowid LIMIT $1)"
        ))
        .bind(BATCH_MESSAGES)
        .fetch_one(&mut *tx)
        .await?;
        if last.is_none() && newest.is_none() {
            // Nothing to index: the transaction wrote nothing, so its end costs no sync.
            tx.commit().await?;
            return Ok((total, held));
        }
        if let Some(last) = last {
            let stale = noted(&format!("SELECT {key}"));
            let fresh = noted(&format!("SELECT {key}, {text}"));
            // The entries that exist leave, then the final messages' come.
            for sql in [
                format!("DELETE FROM messages_fts WHERE rowid IN ({stale} AND p.indexed = 1)"),
                format!(
                    "INSERT INTO messages_fts (rowid, body) {fresh} AND m.status != 'streaming'"
                ),
                "DELETE FROM search_pending WHERE message_rowid <= $1".to_owned(),
            ] {
                sqlx::query(&sql).bind(last).execute(&mut *tx).await?;
            }
        }
        if let Some(newest) = newest {
            // New messages have no entry yet: the final ones get theirs, and the mark
            // passes them all (one still streaming is noted when it ends).
            for sql in [
                format!(
                    "INSERT INTO messages_fts (rowid, body) SELECT {key}, {text} {owned} \
                     WHERE m.rowid > {mark} AND m.rowid <= $1 AND m.status != 'streaming'"
                ),
                "UPDATE search_watermark SET upto = $1".to_owned(),
            ] {
                sqlx::query(&sql).bind(newest).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        held += started.elapsed();
        total += u64::try_from(count + new).unwrap_or(0);
        if count < BATCH_MESSAGES && new < BATCH_MESSAGES {
            return Ok((total, held));
        }
    }
}

/// How many messages are noted or new and not indexed yet (tests poll it).
#[cfg(test)]
pub(super) async fn pending(pool: &AnyPool) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM search_pending) + (SELECT COUNT(*) FROM messages \
         WHERE rowid > (SELECT upto FROM search_watermark))",
    )
    .fetch_one(pool)
    .await
    .expect("count the notes");
    n
}
