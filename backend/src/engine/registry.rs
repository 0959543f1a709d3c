//! The live contexts: which are in memory, their actors' mailboxes and snapshots, and how
//! they come and go (spawn on demand, evict past the limits, resume what was interrupted,
//! follow other instances' change notices).
//!
//! Architecture Invariant: at most one actor per context. Loads are serialized, and a
//! reload waits for the actor it replaces to finish.

use super::actor::{Actor, Footprint, Mail, Request, Signal};
use super::context::LiveContext;
use super::{Engine, EngineError, Snapshot};
use crate::domain::{NewContext, Owner, Title, TurnOptions};
use crate::fsm::State;
use crate::store::{Change, ContextRecord, LoadedContext};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Mail a context's mailbox holds before senders wait.
const MAILBOX: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Handle {
    pub(super) tx: mpsc::Sender<Mail>,
    pub(super) snapshot: watch::Receiver<Arc<Snapshot>>,
    last_used: u64,
    /// Kept up to date by the actor.
    footprint: Arc<Footprint>,
}

#[derive(Debug, Default)]
pub(super) struct Live {
    pub(super) handles: HashMap<Uuid, Handle>,
    tasks: HashMap<Uuid, JoinHandle<()>>,
    /// Evicted actors still finishing; a reload waits for them (one writer per context).
    retiring: HashMap<Uuid, JoinHandle<()>>,
    /// The context being loaded (loads are serialized) and the newest version another
    /// instance announced while it loaded: a notice that finds no actor yet is kept here,
    /// so the actor catches up with it once spawned instead of showing the loaded version
    /// for good.
    loading: Option<(Uuid, u64)>,
    tick: u64,
}

impl Engine {
    pub(super) fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding this lock leaves plain maps behind; they stay usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `owner`'s context as `new` asks, unless it would pass their quota.
    pub async fn create_context(
        &self,
        owner: &Owner,
        new: NewContext,
    ) -> Result<Arc<Snapshot>, EngineError> {
        let (title, config) = new.into_parts();
        let now = crate::store::now();
        let record = ContextRecord {
            id: Uuid::new_v4(),
            title: title.map_or_else(
                || crate::llm::title::DEFAULT_TITLE.into(),
                Title::into_inner,
            ),
            config,
            state: State::Idle,
            version: 1,
            message_count: 0,
            created_at: now,
            updated_at: now,
            active_leaf: None,
            owner: owner.as_str().into(),
            version_ceiling: 1,
            turn: TurnOptions::default(),
        };
        let max = self.deps.settings.max_contexts_per_user;
        if !self.deps.store.insert_context(&record, max).await? {
            let refused = &self.deps.metrics.context_quota_refusals;
            refused.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::QuotaExceeded(max.unwrap_or_default()));
        }
        let handle = self.spawn(LoadedContext {
            record,
            messages: Vec::new(),
        });
        let snapshot = handle.snapshot.borrow().clone();
        Ok(snapshot)
    }

    /// Deletes an owner's context: its running turn stops and later requests answer 404.
    pub async fn delete(&self, owner: &Owner, id: Uuid) -> Result<(), EngineError> {
        self.check_owner(id, owner).await?;
        let _loading = self.loading.lock().await;
        let (task, retiring) = {
            let mut live = self.live();
            live.handles.remove(&id);
            self.count_live(&live);
            (live.tasks.remove(&id), live.retiring.remove(&id))
        };
        for task in [task, retiring].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        if self.deps.store.delete_context(owner.as_str(), id).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound(id))
        }
    }

    /// Starts the actors of contexts whose turn was interrupted by a stop or a crash (on
    /// a shared store: whose lease expired), or asks their live actor to resume.
    pub async fn resume_unfinished(&self) -> Result<usize, EngineError> {
        let ids = self.deps.store.unfinished_contexts().await?;
        for id in &ids {
            match self.touch(*id) {
                Some(h) => {
                    let _ = h.tx.try_send(Mail::Signal(Signal::Resume));
                }
                None => {
                    // One context that cannot load must not keep the others (or the
                    // server) from starting: it is logged and stays as it is.
                    if let Err(e) = self.handle(*id).await {
                        tracing::error!(context_id = %id, error = %e, "cannot resume this context");
                    }
                }
            }
        }
        Ok(ids.len())
    }

    /// On a shared store: follows other instances' changes, and adopts turns whose runner
    /// died. The tasks stop when the engine is dropped.
    pub fn start_background(self: &Arc<Self>) {
        let Some(mut changes) = self.deps.store.changes() else {
            return;
        };
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let change = changes.recv().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                match change {
                    Ok(change) => engine.on_change(change),
                    // Too many changes at once: some were dropped, recheck everything.
                    Err(broadcast::error::RecvError::Lagged(_)) => engine.on_change(Change::Resync),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let engine = Arc::downgrade(self);
        let every = self.deps.settings.sweep_interval;
        tokio::spawn(async move {
            // The first look happened at start-up (resume_unfinished in build).
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if let Err(e) = engine.resume_unfinished().await {
                    tracing::debug!(error = %e, "looking for orphaned turns failed");
                }
            }
        });
    }

    fn on_change(&self, change: Change) {
        let live = self.live();
        let send = |id: &Uuid, signal: Signal| {
            if let Some(h) = live.handles.get(id) {
                let _ = h.tx.try_send(Mail::Signal(signal));
            }
        };
        match change {
            Change::Updated { id, version } => {
                let behind = live
                    .handles
                    .get(&id)
                    .is_some_and(|h| h.snapshot.borrow().version() < version);
                if behind {
                    send(&id, Signal::Refresh);
                }
                drop(live);
                self.note_while_loading(id, version);
            }
            Change::CancelRequested(id) => send(&id, Signal::RemoteCancel),
            Change::Queued(id) => send(&id, Signal::QueueChanged),
            Change::Resync => {
                for id in live.handles.keys() {
                    send(id, Signal::Refresh);
                }
                drop(live);
                if let Some((_, newest)) = self.live().loading.as_mut() {
                    *newest = u64::MAX;
                }
            }
            Change::Deleted(id) => {
                drop(live);
                self.forget_deleted(id);
            }
        }
    }

    /// Keeps a notice of `version` for the context being loaded, if it is `id`.
    fn note_while_loading(&self, id: Uuid, version: u64) {
        let mut live = self.live();
        if let Some((loading, newest)) = live.loading.as_mut() {
            if *loading == id {
                *newest = (*newest).max(version);
            }
        }
    }

    /// Drops a context deleted by another instance: its actor stops, requests answer 404.
    fn forget_deleted(&self, id: Uuid) {
        let mut live = self.live();
        live.handles.remove(&id);
        for task in [live.tasks.remove(&id), live.retiring.remove(&id)]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        self.count_live(&live);
    }

    fn count_live(&self, live: &Live) {
        let len = live.handles.len() as u64;
        self.deps
            .metrics
            .live_contexts
            .store(len, Ordering::Relaxed);
    }

    fn spawn(&self, loaded: LoadedContext) -> Handle {
        let id = loaded.record.id;
        let (tx, rx) = mpsc::channel(MAILBOX);
        let ctx = LiveContext::from_loaded(loaded);
        let footprint = Arc::new(Footprint::default());
        footprint.bytes.store(ctx.approx_bytes(), Ordering::Relaxed);
        let (actor, snapshot) = Actor::new(
            ctx,
            (tx.downgrade(), rx),
            self.deps.clone(),
            footprint.clone(),
        );
        let task = tokio::spawn(actor.run());
        let mut live = self.live();
        live.tick += 1;
        let handle = Handle {
            tx,
            snapshot,
            last_used: live.tick,
            footprint,
        };
        live.handles.insert(id, handle.clone());
        live.tasks.insert(id, task);
        self.evict_over_capacity(&mut live);
        self.count_live(&live);
        handle
    }

    /// Sends the least recently used resting contexts with empty mailboxes and nothing
    /// unsaved out of memory while more than `--max-live-contexts` are live or their
    /// messages take more than `--max-live-bytes` (running ones count, but stay). While
    /// saves fail, more may stay: a context is never dropped with changes the store lacks.
    fn evict_over_capacity(&self, live: &mut Live) {
        let settings = &self.deps.settings;
        let bytes_of = |h: &Handle| h.footprint.bytes.load(Ordering::Relaxed);
        let mut bytes: u64 = live.handles.values().map(bytes_of).sum();
        while live.handles.len() > settings.max_live_contexts || bytes > settings.max_live_bytes {
            let victim = live
                .handles
                .iter()
                .filter(|(_, h)| {
                    h.tx.capacity() == MAILBOX
                        && !h.footprint.unsaved.load(Ordering::Relaxed)
                        && h.snapshot.borrow().record.state.is_resting()
                })
                .min_by_key(|(_, h)| h.last_used)
                .map(|(id, _)| *id);
            let Some(id) = victim else { break };
            if let Some(h) = live.handles.remove(&id) {
                bytes -= bytes_of(&h);
                let _ = h.tx.try_send(Mail::Signal(Signal::Retire));
            }
            if let Some(task) = live.tasks.remove(&id) {
                live.retiring.insert(id, task);
            }
        }
        self.deps.metrics.live_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The live context's handle; loads the context when it is not in memory.
    pub(super) async fn handle(&self, id: Uuid) -> Result<Handle, EngineError> {
        if let Some(h) = self.touch(id) {
            return Ok(h);
        }
        let _loading = self.loading.lock().await;
        if let Some(h) = self.touch(id) {
            return Ok(h);
        }
        let retiring = self.live().retiring.remove(&id);
        if let Some(task) = retiring {
            let _ = task.await;
        }
        self.live().loading = Some((id, 0));
        let loaded = match self.deps.store.load_context(id).await {
            Ok(Some(loaded)) => loaded,
            failed => {
                self.live().loading = None;
                return Err(failed.map_or_else(EngineError::from, |_| EngineError::NotFound(id)));
            }
        };
        let read = loaded.record.version;
        let handle = self.spawn(loaded);
        // Taken once the actor is live: a notice from now on reaches it directly.
        let announced = self.live().loading.take().map_or(0, |(_, newest)| newest);
        if announced > read {
            // Another instance saved past what was read before the actor could hear of it.
            let _ = handle.tx.try_send(Mail::Signal(Signal::Refresh));
        }
        Ok(handle)
    }

    fn touch(&self, id: Uuid) -> Option<Handle> {
        self.with_live(id, Handle::clone)
    }

    /// Runs `f` on a live context's handle, marking it used.
    pub(super) fn with_live<T>(&self, id: Uuid, f: impl FnOnce(&Handle) -> T) -> Option<T> {
        let mut live = self.live();
        live.tick += 1;
        let tick = live.tick;
        let h = live.handles.get_mut(&id)?;
        h.last_used = tick;
        Some(f(h))
    }

    /// Forgets a handle whose actor left memory (unless a new actor replaced it already).
    pub(super) fn forget(&self, id: Uuid, handle: &Handle) {
        let mut live = self.live();
        if live
            .handles
            .get(&id)
            .is_some_and(|h| h.tx.same_channel(&handle.tx))
        {
            live.handles.remove(&id);
        }
    }

    /// Writes every live context's unsaved changes (shutdown).
    pub async fn flush_all(&self) {
        let handles: Vec<Handle> = self.live().handles.values().cloned().collect();
        for h in handles {
            let (reply, done) = oneshot::channel();
            if h.tx
                .send(Mail::Request(Request::Flush { reply }))
                .await
                .is_ok()
            {
                let _ = done.await;
            }
        }
    }
}
