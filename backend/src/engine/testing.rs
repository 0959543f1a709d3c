//! Test doubles for the engine: one store double that counts calls and fails chosen
//! operations, over a real store or over none.

use super::context::LiveContext;
use crate::domain::SearchQuery;
use crate::fsm::State;
use crate::store::{Change, Coordination};
use crate::store::{
    ContextPage, ContextRecord, Cursor, ListOrder, LoadedContext, QueuedRecord, SaveBatch,
    SearchPage, Store, StoreError,
};
use async_trait::async_trait;
use chatsync_protocol::{ContextConfig, StateName};
use sqlx::AnyConnection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use uuid::Uuid;

/// The store operations a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Save,
    Enqueue,
}

/// How long an injected failure lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next call fails, later ones pass.
    Once,
    /// Every call fails until [`FaultStore::heal`].
    Always,
}

/// A store that forwards to `inner`, counts calls, remembers the last batch saved, and
/// fails the operations a test chose (as a full disk would: `disk I/O error`). It may
/// also pose as a store shared with another instance ([`FaultStore::follower`]) and hold
/// its next load, or its next save of a state, at a gate ([`FaultStore::gate_next_load`],
/// [`FaultStore::gate_next_save_in`]).
#[derive(Debug)]
pub struct FaultStore {
    inner: Box<dyn Store>,
    faults: Mutex<HashMap<Op, Fault>>,
    calls: Mutex<HashMap<Op, usize>>,
    saves: Mutex<(usize, Option<SaveBatch>)>,
    follower: Option<Follower>,
    load_gate: Mutex<Option<Arc<Gate>>>,
    save_gate: Mutex<Option<(StateName, Arc<Gate>)>>,
}

/// Where a load waits: it tells `entered`, then waits for `open`.
#[derive(Debug, Default)]
pub struct Gate {
    pub entered: Notify,
    pub open: Notify,
}

impl FaultStore {
    pub fn over(inner: impl Store + 'static) -> Self {
        FaultStore {
            inner: Box::new(inner),
            faults: Mutex::default(),
            calls: Mutex::default(),
            saves: Mutex::default(),
            follower: None,
            load_gate: Mutex::default(),
            save_gate: Mutex::default(),
        }
    }

    /// Shared with another instance that holds every lease: this one only follows, and
    /// hears of that instance's changes through `changes`.
    pub fn follower(mut self, changes: broadcast::Sender<Change>) -> Self {
        self.follower = Some(Follower(changes));
        self
    }

    /// The next load, once it has read, waits at `gate` until the test opens it.
    pub fn gate_next_load(self, gate: Arc<Gate>) -> Self {
        *lock(&self.load_gate) = Some(gate);
        self
    }

    /// The next save of a context in `state` waits at `gate` before it writes, until the
    /// test opens it.
    pub fn gate_next_save_in(&self, state: StateName, gate: Arc<Gate>) {
        *lock(&self.save_gate) = Some((state, gate));
    }

    /// Over a store that keeps nothing: for tests of what is written, not of reading back.
    pub fn empty() -> Self {
        Self::over(NullStore)
    }

    pub fn fail(&self, op: Op, fault: Fault) {
        lock(&self.faults).insert(op, fault);
    }

    pub fn heal(&self, op: Op) {
        lock(&self.faults).remove(&op);
    }

    /// Calls of `op` so far, failed ones included.
    pub fn calls(&self, op: Op) -> usize {
        lock(&self.calls).get(&op).copied().unwrap_or(0)
    }

    /// Saves that succeeded.
    pub fn saves(&self) -> usize {
        lock(&self.saves).0
    }

    /// The last batch saved.
    pub fn last(&self) -> Option<SaveBatch> {
        lock(&self.saves).1.clone()
    }

    /// Counts a call of `op` and fails it if the test chose so.
    fn call(&self, op: Op) -> Result<(), StoreError> {
        *lock(&self.calls).entry(op).or_default() += 1;
        let mut faults = lock(&self.faults);
        match faults.get(&op) {
            None => Ok(()),
            Some(fault) => {
                if *fault == Fault::Once {
                    faults.remove(&op);
                }
                Err(StoreError::Database("disk I/O error".into()))
            }
        }
    }
}

/// A poisoned lock in a test double only means another test thread panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Store for FaultStore {
    async fn insert_context(
        &self,
        r: &ContextRecord,
        max: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.inner.insert_context(r, max).await
    }
    async fn load_context(&self, id: Uuid) -> Result<Option<LoadedContext>, StoreError> {
        let loaded = self.inner.load_context(id).await;
        let gate = lock(&self.load_gate).take();
        if let Some(gate) = gate {
            gate.entered.notify_one();
            gate.open.notified().await;
        }
        loaded
    }
    async fn list_contexts(
        &self,
        owner: &str,
        limit: u32,
        order: ListOrder,
        after: Option<Cursor>,
    ) -> Result<ContextPage, StoreError> {
        self.inner.list_contexts(owner, limit, order, after).await
    }
    fn coordination(&self) -> &dyn Coordination {
        match &self.follower {
            Some(follower) => follower,
            None => self.inner.coordination(),
        }
    }
    async fn search_contexts(
        &self,
        owner: &str,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<SearchPage, StoreError> {
        self.inner.search_contexts(owner, query, limit).await
    }
    async fn delete_context(&self, owner: &str, id: Uuid) -> Result<bool, StoreError> {
        self.inner.delete_context(owner, id).await
    }
    async fn save(&self, batch: &SaveBatch) -> Result<(), StoreError> {
        let gate = {
            let mut gate = lock(&self.save_gate);
            match &*gate {
                Some((state, _)) if *state == batch.context.state.name() => gate.take(),
                _ => None,
            }
        };
        if let Some((_, gate)) = gate {
            gate.entered.notify_one();
            gate.open.notified().await;
        }
        self.call(Op::Save)?;
        self.inner.save(batch).await?;
        let mut saves = lock(&self.saves);
        saves.0 += 1;
        saves.1 = Some(batch.clone());
        Ok(())
    }
    async fn enqueue(&self, id: Uuid, q: &QueuedRecord, max: usize) -> Result<bool, StoreError> {
        self.call(Op::Enqueue)?;
        self.inner.enqueue(id, q, max).await
    }
    async fn drop_queued(&self, id: Uuid, message: Uuid) -> Result<bool, StoreError> {
        self.inner.drop_queued(id, message).await
    }
    async fn queued_messages(&self, id: Uuid) -> Result<Vec<QueuedRecord>, StoreError> {
        self.inner.queued_messages(id).await
    }
    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError> {
        self.inner.unfinished_contexts().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn stored_version(&self, id: Uuid) -> Result<Option<u64>, StoreError> {
        self.inner.stored_version(id).await
    }
    async fn reserve_versions(&self, id: Uuid, ceiling: u64) -> Result<(), StoreError> {
        self.inner.reserve_versions(id, ceiling).await
    }
}

/// The coordination of [`FaultStore::follower`].
#[derive(Debug)]
struct Follower(broadcast::Sender<Change>);

#[async_trait]
impl Coordination for Follower {
    fn is_shared(&self) -> bool {
        true
    }
    async fn take_lease(&self, _id: Uuid, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn release_lease(&self, _id: Uuid) -> Result<(), StoreError> {
        Ok(())
    }
    async fn notify(&self, _change: Change) -> Result<(), StoreError> {
        Ok(())
    }
    async fn notify_on_commit(
        &self,
        _conn: &mut AnyConnection,
        _change: Change,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        Some(self.0.subscribe())
    }
    fn not_leased_elsewhere(&self) -> &'static str {
        ""
    }
}

/// A store that keeps nothing and accepts every write.
#[derive(Debug)]
struct NullStore;

#[async_trait]
impl Store for NullStore {
    async fn insert_context(&self, _: &ContextRecord, _: Option<u64>) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn load_context(&self, _id: Uuid) -> Result<Option<LoadedContext>, StoreError> {
        Ok(None)
    }
    async fn list_contexts(
        &self,
        _: &str,
        _: u32,
        _: ListOrder,
        _: Option<Cursor>,
    ) -> Result<ContextPage, StoreError> {
        Ok(ContextPage {
            contexts: vec![],
            total: 0,
        })
    }
    async fn search_contexts(
        &self,
        _: &str,
        _: &SearchQuery,
        _: u32,
    ) -> Result<SearchPage, StoreError> {
        Ok(SearchPage {
            hits: vec![],
            total: 0,
        })
    }
    async fn delete_context(&self, _: &str, _id: Uuid) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn save(&self, _: &SaveBatch) -> Result<(), StoreError> {
        Ok(())
    }
    async fn enqueue(&self, _: Uuid, _: &QueuedRecord, _: usize) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn drop_queued(&self, _: Uuid, _: Uuid) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn queued_messages(&self, _: Uuid) -> Result<Vec<QueuedRecord>, StoreError> {
        Ok(vec![])
    }
    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(vec![])
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn stored_version(&self, _id: Uuid) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    async fn reserve_versions(&self, _id: Uuid, _ceiling: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A clean, saved context in the given state.
pub fn context_in(name: StateName) -> LiveContext {
    let now = chrono::Utc::now();
    let state = State::from_parts(name, Some("earlier error".into()), 1).expect("state");
    LiveContext::from_loaded(LoadedContext {
        record: ContextRecord {
            id: Uuid::new_v4(),
            title: "test".into(),
            config: ContextConfig::default(),
            state,
            version: 7,
            message_count: 0,
            created_at: now,
            updated_at: now,
            active_leaf: None,
            owner: "local".into(),
            version_ceiling: 7,
            turn: Default::default(),
        },
        messages: vec![],
    })
}
