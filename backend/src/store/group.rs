//! Group commit for SQLite's saves: the saves of many chats written in one transaction,
//! so one fsync makes them all durable.
//!
//! SQLite writes through one connection (`sql.rs`, `connect`), and with
//! `synchronous=FULL` every commit waits for an fsync: committed one by one, saves stop
//! at one fsync each, however many chats are waiting. Here a save joins a line. The
//! caller that finds nobody leading leads: it takes the writer connection (waiting its
//! turn with every other write), then takes whatever is in the line by then (up to
//! `Limits::per_commit`) and commits it as one transaction. Each batch is one round trip
//! to SQLite, in a savepoint of its own (`save.rs`): one that fails (a version that does
//! not match, a deleted chat, a database error halfway) writes nothing and gets its own
//! error while the others commit; one that cannot be undone alone (SQLite rolled the
//! transaction back) and a failed COMMIT fail every batch of the group. Every caller gets
//! its result only after the COMMIT that made its batch durable returned. Nothing waits on
//! a timer to gather a group: what queued while the previous commit ran is the next group.
//!
//! Uncontended, the caller commits its own batch itself, its savepoint its transaction
//! (one round trip in all): no other task. A group holding other callers' batches is committed by a task of
//! its own, which goes on with the next group while the line is not empty: a caller that
//! goes away (its chat deleted, its actor aborted) never takes other chats' saves with it.
//! Between groups the task lets go of the connection, so other writes (queued messages,
//! new chats, deletes) interleave with groups in the pool's order.
//!
//! Bounded: a group holds at most `per_commit` batches, the line at most `waiting` (past
//! it a save answers `Unavailable` at once), and a save waits at most `wait` for the
//! writer (then it leaves the line unwritten and answers `Unavailable`; one the writer
//! has taken waits for its commit).

use super::sql::SqlStore;
use super::{SaveBatch, StoreError};
use crate::metrics::Metrics;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// How large a group and the line may grow, and how long a save waits for the writer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Batches one commit carries at most.
    pub per_commit: usize,
    /// Batches that may wait at once, the group being gathered included.
    pub waiting: usize,
    /// How long a batch may wait for the writer before it leaves the line.
    pub wait: Duration,
}

type Outcome = Result<(), StoreError>;

#[derive(Debug)]
pub(super) struct GroupCommit {
    writer: AnyPool,
    metrics: Arc<Metrics>,
    limits: Limits,
    line: Mutex<Line>,
}

#[derive(Debug, Default)]
struct Line {
    waiting: VecDeque<Waiting>,
    /// Whether a caller or a task leads: it will take what waits. A new save leads only
    /// when nobody does.
    leading: bool,
    next_ticket: u64,
}

#[derive(Debug)]
struct Waiting {
    ticket: u64,
    batch: SaveBatch,
    done: oneshot::Sender<Outcome>,
}

impl GroupCommit {
    pub(super) fn new(writer: AnyPool, metrics: Arc<Metrics>, limits: Limits) -> Self {
        GroupCommit {
            writer,
            metrics,
            limits,
            line: Mutex::default(),
        }
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        // Nothing panics while holding the lock; a poisoned one still holds a valid line.
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the batch in the next group; returns once its group committed (or failed).
    pub(super) async fn save(self: &Arc<Self>, batch: &SaveBatch) -> Outcome {
        let (done, result) = oneshot::channel();
        let (ticket, lead) = {
            let mut line = self.line();
            if line.waiting.len() >= self.limits.waiting {
                return Err(StoreError::Unavailable(format!(
                    "{} saves are waiting for the database writer already",
                    line.waiting.len()
                )));
            }
            let ticket = line.next_ticket;
            line.next_ticket += 1;
            line.waiting.push_back(Waiting {
                ticket,
                batch: batch.clone(),
                done,
            });
            let lead = !line.leading;
            line.leading = true;
            (ticket, lead)
        };
        if lead {
            self.lead().await;
        }
        self.result(ticket, result).await
    }

    /// As the leader: takes the writer and what waits by then. Its own batch alone is
    /// committed here; a group with others' batches goes to a task.
    async fn lead(self: &Arc<Self>) {
        let mut leadership = Leadership(Some(self.clone()));
        let Some((conn, group)) = self.gather().await else {
            return;
        };
        if group.len() > 1 {
            leadership.hand_over(Some((conn, group)));
            return;
        }
        self.commit(conn, group).await;
    }

    /// As a task: commits groups while any batch waits.
    async fn drain(self: Arc<Self>, first: Option<(PoolConnection<Any>, Vec<Waiting>)>) {
        let _leadership = Leadership(Some(self.clone()));
        let mut next = match first {
            Some(first) => Some(first),
            None => self.gather().await,
        };
        loop {
            let Some((conn, group)) = next.take() else {
                return;
            };
            self.commit(conn, group).await;
            if self.line().waiting.is_empty() {
                return;
            }
            next = self.gather().await;
        }
    }

    /// Waits for the writer connection, then takes what waits by then (`None`: nothing,
    /// or the writer cannot be had and everything waiting got the error).
    async fn gather(&self) -> Option<(PoolConnection<Any>, Vec<Waiting>)> {
        let conn = match self.writer.acquire().await {
            Ok(conn) => conn,
            Err(e) => {
                let error = StoreError::from(e);
                for w in self.line().waiting.drain(..) {
                    let _ = w.done.send(Err(error.clone()));
                }
                return None;
            }
        };
        let group = self.take_group();
        (!group.is_empty()).then_some((conn, group))
    }

    /// Up to `per_commit` waiting batches, first come first; a batch whose caller went
    /// away is dropped unwritten.
    fn take_group(&self) -> Vec<Waiting> {
        let mut line = self.line();
        let mut group = Vec::with_capacity(line.waiting.len().min(self.limits.per_commit));
        while group.len() < self.limits.per_commit {
            let Some(w) = line.waiting.pop_front() else {
                break;
            };
            if !w.done.is_closed() {
                group.push(w);
            }
        }
        group
    }

    /// Commits a group and tells each caller its outcome, once the COMMIT returned.
    async fn commit(&self, mut conn: PoolConnection<Any>, group: Vec<Waiting>) {
        let mut outcomes = Vec::with_capacity(group.len());
        match Self::write_group(&mut conn, &group, &mut outcomes).await {
            Ok(()) => {
                let written = outcomes.iter().filter(|o| o.is_ok()).count();
                self.metrics.record_commit(written as u64);
            }
            Err(error) => {
                tracing::error!(%error, batches = group.len(), "a group of saves failed to commit");
                // The transaction is gone, and so may be sqlx's idea of its depth: a fresh
                // connection replaces this one.
                conn.close_on_drop();
                // A batch with its own error keeps it; the others were not written either.
                outcomes.resize_with(group.len(), || Ok(()));
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(error.clone());
                }
            }
        }
        drop(conn);
        for (w, outcome) in group.into_iter().zip(outcomes) {
            let _ = w.done.send(outcome);
        }
    }

    /// Writes the group, each batch's outcome pushed to `outcomes`. Each batch is one
    /// round trip in a savepoint of its own (`SqlStore::write_script`), so one that fails
    /// writes nothing and the others go on. A batch alone is its own transaction; a group
    /// of several is one transaction. `Err`: nothing of the group was written.
    ///
    /// A group is SQLite's, with one process on the database: nobody to tell about the
    /// changes (`SingleProcess`).
    async fn write_group(
        conn: &mut AnyConnection,
        group: &[Waiting],
        outcomes: &mut Vec<Outcome>,
    ) -> Result<(), StoreError> {
        if let [alone] = group {
            outcomes.push(SqlStore::write_script(conn, &alone.batch).await?);
            return Ok(());
        }
        let mut tx = conn.begin().await?;
        for w in group {
            outcomes.push(SqlStore::write_script(&mut tx, &w.batch).await?);
        }
        tx.commit().await?;
        Ok(())
    }

    /// The outcome of the batch with this ticket: once its group committed, or an error
    /// when it waited `wait` in line without the writer taking it.
    async fn result(&self, ticket: u64, mut result: oneshot::Receiver<Outcome>) -> Outcome {
        let interrupted = |_| {
            Err(StoreError::Unavailable(
                "the save was interrupted: whether it was stored is unknown".into(),
            ))
        };
        match tokio::time::timeout(self.limits.wait, &mut result).await {
            Ok(outcome) => outcome.unwrap_or_else(interrupted),
            Err(_) if self.leave(ticket) => Err(StoreError::Unavailable(format!(
                "the save waited {} s for the database writer",
                self.limits.wait.as_secs()
            ))),
            // The writer took it: its commit decides.
            Err(_) => result.await.unwrap_or_else(interrupted),
        }
    }

    /// Takes the batch with this ticket out of the line, unwritten; `false` when the
    /// writer took it already.
    fn leave(&self, ticket: u64) -> bool {
        let mut line = self.line();
        let at = line.waiting.iter().position(|w| w.ticket == ticket);
        at.and_then(|at| line.waiting.remove(at)).is_some()
    }

    /// Batches waiting right now, the group being gathered included.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.line().waiting.len()
    }
}

/// The lead of the line, held by one caller or task at a time. When it ends (done, or the
/// holder went away), the line is passed on: to a new task when batches wait, else to
/// whichever save comes next.
struct Leadership(Option<Arc<GroupCommit>>);

impl Leadership {
    /// Passes the lead to a task that commits `first` and what follows. It runs on a
    /// thread of its own: SQLite's worker thread answers each statement from outside the
    /// runtime, and such a wake-up waits in the runtime's global queue, which busy workers
    /// look at only every few hundred microseconds; a group makes a few statements a save,
    /// one after another, so under load most of its time went to those waits.
    fn hand_over(&mut self, first: Option<(PoolConnection<Any>, Vec<Waiting>)>) {
        if let Some(group) = self.0.take() {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(group.drain(first)));
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        let Some(group) = &self.0 else {
            return;
        };
        let mut line = group.line();
        if line.waiting.is_empty() || tokio::runtime::Handle::try_current().is_err() {
            line.leading = false;
            return;
        }
        drop(line);
        self.hand_over(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{context, message};
    use crate::store::sql::tests::temp_store;
    use crate::store::{ContextRecord, Store};
    use tokio::task::JoinHandle;
    use uuid::Uuid;

    /// A store on a temporary SQLite file with these group limits, counting in `metrics`.
    async fn store_with(limits: Limits) -> (tempfile::TempDir, SqlStore, Arc<Metrics>) {
        let (dir, store) = temp_store().await;
        let metrics = Arc::new(Metrics::default());
        let store = store
            .with_metrics(metrics.clone())
            .group_commit(Some(limits));
        (dir, store, metrics)
    }

    const LIMITS: Limits = Limits {
        per_commit: 128,
        waiting: 4096,
        wait: Duration::from_secs(30),
    };

    /// A store with these limits and `n` stored chats, with the batch that saves one
    /// message into each (version 1 to 2).
    async fn chats(
        limits: Limits,
        n: i64,
    ) -> (tempfile::TempDir, SqlStore, Arc<Metrics>, Vec<SaveBatch>) {
        let (dir, store, metrics) = store_with(limits).await;
        let mut batches = Vec::new();
        for n in 0..n {
            let c = context(n);
            store.insert_context(&c, None).await.expect("insert");
            batches.push(batch_for(c));
        }
        (dir, store, metrics, batches)
    }

    fn batch_for(c: ContextRecord) -> SaveBatch {
        SaveBatch {
            context: ContextRecord {
                version: 2,
                message_count: 1,
                ..c
            },
            messages: vec![message(0, 2, "hello")],
            expected_version: 1,
            dequeued: Vec::new(),
        }
    }

    fn spawn_save(store: &SqlStore, batch: &SaveBatch) -> JoinHandle<Outcome> {
        let (store, batch) = (store.clone(), batch.clone());
        tokio::spawn(async move { store.save(&batch).await })
    }

    /// Runs the spawned saves until `n` batches wait in the line (the writer connection
    /// held by the test, none can be taken).
    async fn until_waiting(store: &SqlStore, n: usize) {
        let group = store.group.as_ref().expect("SQLite groups its saves");
        for _ in 0..100_000 {
            if group.waiting() == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} saves wait, not {n}", group.waiting());
    }

    async fn stored_version(store: &SqlStore, id: Uuid) -> Option<u64> {
        store.stored_version(id).await.expect("version")
    }

    /// Runs the saves of these batches as one group: queued while the test holds the
    /// writer, then let go. Their outcomes, and how many commits that took.
    async fn in_one_group(
        store: &SqlStore,
        metrics: &Metrics,
        batches: &[SaveBatch],
    ) -> (Vec<Outcome>, u64) {
        let held = store.writer.acquire().await.expect("the writer");
        let saves: Vec<_> = batches.iter().map(|b| spawn_save(store, b)).collect();
        until_waiting(store, batches.len()).await;
        let commits = Metrics::get(&metrics.store_commits);
        drop(held);
        let mut outcomes = Vec::new();
        for save in saves {
            outcomes.push(save.await.expect("task"));
        }
        (outcomes, Metrics::get(&metrics.store_commits) - commits)
    }

    /// Checks that the batches whose outcome is `Ok` are stored as saved and the others
    /// are untouched (still at version 1 without messages, or never stored).
    async fn stored_as_their_outcomes_say(
        store: &SqlStore,
        batches: &[SaveBatch],
        outcomes: &[Outcome],
    ) {
        for (batch, outcome) in batches.iter().zip(outcomes) {
            let stored = store.load_context(batch.context.id).await.expect("load");
            match (outcome, stored) {
                (Ok(()), Some(stored)) => {
                    assert_eq!(stored.record.version, 2);
                    assert_eq!(stored.messages, batch.messages);
                }
                (Err(StoreError::Gone(_)), None) => {}
                (Err(_), Some(stored)) => {
                    assert_eq!(stored.record.version, 1, "nothing of it written");
                    assert!(stored.messages.is_empty());
                }
                (outcome, stored) => panic!("{outcome:?} but stored {stored:?}"),
            }
        }
    }

    /// Saves that queue while the writer is busy are committed together, one COMMIT for
    /// all; the one whose version does not match and the one whose chat is gone fail
    /// alone, with their own errors, and write nothing, while the others commit.
    #[tokio::test]
    async fn saves_waiting_for_the_writer_commit_together_and_a_conflict_fails_alone() {
        let (_dir, store, metrics, mut batches) = chats(LIMITS, 8).await;
        batches[3].expected_version = 5;
        // Never stored: its save finds it gone.
        batches[5] = batch_for(context(5));
        let (outcomes, commits) = in_one_group(&store, &metrics, &batches).await;

        assert_eq!(commits, 1);
        assert_eq!(Metrics::get(&metrics.store_committed_saves), 6);
        let (conflict, gone) = (batches[3].context.id, batches[5].context.id);
        for (n, outcome) in outcomes.iter().enumerate() {
            match n {
                3 => assert!(
                    matches!(outcome, Err(StoreError::Conflict { id, expected: 5 }) if *id == conflict),
                    "{outcome:?}"
                ),
                5 => assert!(
                    matches!(outcome, Err(StoreError::Gone(id)) if *id == gone),
                    "{outcome:?}"
                ),
                _ => assert!(outcome.is_ok(), "{n}: {outcome:?}"),
            }
        }
        stored_as_their_outcomes_say(&store, &batches, &outcomes).await;
    }

    /// A batch the database refuses halfway (its context row and first message written,
    /// then two messages in one place) is rolled back alone: the others of its group,
    /// before and after it, commit in one COMMIT, and a conflict among them still fails
    /// alone.
    #[tokio::test]
    async fn a_batch_that_fails_halfway_is_rolled_back_alone() {
        let (_dir, store, metrics, mut batches) = chats(LIMITS, 6).await;
        batches[1].expected_version = 7;
        batches[3].messages.push(message(0, 2, "the same place"));
        let (outcomes, commits) = in_one_group(&store, &metrics, &batches).await;

        assert_eq!(commits, 1);
        assert!(
            matches!(outcomes[1], Err(StoreError::Conflict { .. })),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[3], Err(StoreError::Database(_))),
            "{outcomes:?}"
        );
        for n in [0, 2, 4, 5] {
            assert!(outcomes[n].is_ok(), "{n}: {:?}", outcomes[n]);
        }
        stored_as_their_outcomes_say(&store, &batches, &outcomes).await;
    }

    /// A save alone that the database refuses halfway (its context row and first message
    /// written, then two messages in one place) writes nothing, and the writer goes on:
    /// the same chat's next save is stored.
    #[tokio::test]
    async fn a_save_alone_that_fails_halfway_writes_nothing() {
        let (_dir, store, metrics, batches) = chats(LIMITS, 1).await;
        let mut broken = batches[0].clone();
        broken.messages.push(message(0, 2, "the same place"));
        let outcome = store.save(&broken).await;
        assert!(
            matches!(outcome, Err(StoreError::Database(_))),
            "{outcome:?}"
        );
        assert_eq!(Metrics::get(&metrics.store_commits), 0);
        stored_as_their_outcomes_say(&store, &[broken], &[outcome]).await;

        store.save(&batches[0]).await.expect("the next save");
        stored_as_their_outcomes_say(&store, &batches, &[Ok(())]).await;
        assert_eq!(Metrics::get(&metrics.store_commits), 1);
    }

    const THREE_A_COMMIT: Limits = Limits {
        per_commit: 3,
        ..LIMITS
    };
    const FOUR_IN_LINE: Limits = Limits {
        waiting: 4,
        ..LIMITS
    };
    const A_SHORT_WAIT: Limits = Limits {
        wait: Duration::from_millis(50),
        ..LIMITS
    };

    /// However many wait, a commit carries at most `per_commit` saves: seven waiting, three
    /// a commit, make three commits, and every save is written.
    #[tokio::test]
    async fn a_commit_carries_at_most_per_commit_saves() {
        let (_dir, store, metrics, batches) = chats(THREE_A_COMMIT, 7).await;
        let (outcomes, commits) = in_one_group(&store, &metrics, &batches).await;
        assert_eq!(commits, 3);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        stored_as_their_outcomes_say(&store, &batches, &outcomes).await;
    }

    /// Past the bound of the line a save is refused at once, unwritten; those in the line
    /// are written.
    #[tokio::test]
    async fn past_the_bound_of_the_line_a_save_is_refused_at_once() {
        let (_dir, store, _metrics, batches) = chats(FOUR_IN_LINE, 5).await;
        let held = store.writer.acquire().await.expect("the writer");
        let saves: Vec<_> = batches[..4].iter().map(|b| spawn_save(&store, b)).collect();
        until_waiting(&store, 4).await;
        let refused = store.save(&batches[4]).await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("waiting")),
            "{refused:?}"
        );
        drop(held);
        for save in saves {
            save.await.expect("task").expect("saved");
        }
        assert_eq!(stored_version(&store, batches[4].context.id).await, Some(1));
    }

    /// A save the writer did not take within `wait` leaves the line and answers
    /// `Unavailable`; it is never written, even when the writer comes free afterwards.
    #[tokio::test]
    async fn a_save_that_waits_too_long_leaves_the_line_unwritten() {
        let (_dir, store, _metrics, batches) = chats(A_SHORT_WAIT, 2).await;
        let (first, late) = (&batches[0], &batches[1]);
        let held = store.writer.acquire().await.expect("the writer");
        let leader = spawn_save(&store, first);
        until_waiting(&store, 1).await;
        let outcome = store.save(late).await;
        assert!(
            matches!(&outcome, Err(StoreError::Unavailable(m)) if m.contains("waited")),
            "{outcome:?}"
        );
        drop(held);
        leader.await.expect("task").expect("saved");
        assert_eq!(stored_version(&store, first.context.id).await, Some(2));
        assert_eq!(stored_version(&store, late.context.id).await, Some(1));
    }

    /// The caller leading the line goes away (its chat's actor aborted) while it waits for
    /// the writer: the saves queued behind it are still committed.
    #[tokio::test]
    async fn a_leader_that_goes_away_leaves_the_others_saves_committed() {
        let (_dir, store, _metrics, batches) = chats(LIMITS, 4).await;
        let held = store.writer.acquire().await.expect("the writer");
        let leader = spawn_save(&store, &batches[0]);
        until_waiting(&store, 1).await;
        let others: Vec<_> = batches[1..].iter().map(|b| spawn_save(&store, b)).collect();
        until_waiting(&store, batches.len()).await;
        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        drop(held);
        for save in others {
            save.await.expect("task").expect("saved");
        }
        for b in &batches[1..] {
            assert_eq!(stored_version(&store, b.context.id).await, Some(2));
        }
        assert_eq!(stored_version(&store, batches[0].context.id).await, Some(1));
    }
}
