//! The engine: a bounded set of live contexts, each run by its own actor task.
//!
//! Architecture Invariant: one writer per context. Every change to a context goes through
//! its actor's mailbox; readers only look at the snapshot the actor publishes, so a read
//! never waits for a running turn.

mod actor;
mod autosave;
mod context;
mod log;
mod stream_text;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod tree;

pub use context::{new_message, summary, Snapshot};

/// The ids on the active path of a context as loaded, for store tests.
#[cfg(test)]
pub(crate) fn active_path(loaded: LoadedContext) -> Vec<Uuid> {
    LiveContext::from_loaded(loaded)
        .messages()
        .iter()
        .map(|m| m.id)
        .collect()
}
pub use log::MessageLog;

use crate::domain::{NewMessage, SearchQuery};
use crate::fsm::{InvalidTransition, State};
use crate::llm::Model;
use crate::metrics::Metrics;
use crate::store::{Change, ContextRecord, Cursor, LoadedContext, Store, StoreError};
use crate::tools::ToolRegistry;
pub use actor::Written;
use actor::{Actor, Command, Footprint, Reply, SendAck};
use chatsync_protocol::{
    ContentPart, ContextConfig, ContextSummary, Role, StateName, SwitchBranchRequest,
};
use context::LiveContext;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Commands a context's mailbox holds before senders wait.
const MAILBOX: usize = 256;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// While streaming, the store is written at most this often.
    pub stream_flush: Duration,
    /// While streaming, the published snapshot is replaced at most this often.
    pub stream_publish: Duration,
    /// Contexts kept in memory; idle ones beyond this leave (and reload on demand).
    pub max_live_contexts: usize,
    /// Bytes the live contexts' messages may take (about) before idle ones are evicted.
    pub max_live_bytes: u64,
    /// First delay before retrying a transient model failure; doubles each retry.
    pub retry_base: Duration,
    /// On a shared store: how long a turn's lease lasts without renewal, so how soon
    /// another instance resumes the turn of a crashed one.
    pub lease_ttl: Duration,
    /// On a shared store: how often each instance looks for turns nobody runs.
    pub sweep_interval: Duration,
    /// Messages a busy context may hold in its queue; more are refused at once.
    pub max_queued_messages: usize,
    /// Characters one streamed reply may reach before its turn fails.
    pub max_reply_chars: usize,
    /// How long one turn may run (model calls, retries, tools) before it fails.
    pub max_turn: Duration,
    /// Contexts one user may own; `None`: no limit.
    pub max_contexts_per_user: Option<u64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            stream_flush: Duration::from_millis(250),
            stream_publish: Duration::from_millis(50),
            max_live_contexts: 1000,
            max_live_bytes: 512 << 20,
            retry_base: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(1),
            max_queued_messages: 32,
            max_reply_chars: 200_000,
            max_turn: Duration::from_secs(600),
            max_contexts_per_user: None,
        }
    }
}

#[derive(Debug)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub model: Arc<dyn Model>,
    pub tools: Arc<ToolRegistry>,
    pub metrics: Arc<Metrics>,
    pub settings: EngineSettings,
}

/// Why an action was refused or failed: one variant per failure, so the HTTP layer alone
/// decides how each is answered.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action does not fit the context's state.
    #[error("This action does not fit the context's state ({})", .0.as_str())]
    InvalidState(StateName),
    #[error("Nothing to cancel: no turn is running")]
    NothingToCancel,
    #[error("No pending tool approvals")]
    NoPendingApprovals,
    /// `if_busy: reject` while a turn runs.
    #[error("A turn is running; the message was not stored (if_busy: reject)")]
    Busy,
    /// The context's queue holds as many messages as allowed.
    #[error("The chat already has {0} queued messages; try again when one has run")]
    QueueFull(usize),
    #[error("message {0} is not queued")]
    QueuedMessageNotFound(Uuid),
    #[error("Unknown tool call id(s): {}", .0.join(", "))]
    UnknownToolCalls(Vec<String>),
    #[error("message {0} not found")]
    MessageNotFound(Uuid),
    /// The message exists but does not fit the action (wrong role, off the active path).
    #[error("{0}")]
    InvalidMessage(String),
    /// A save failed: the context is Failed and the error says why.
    #[error("{0}")]
    SaveFailed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The context was deleted.
    #[error("context deleted")]
    Gone,
    /// The actor left memory before handling the command; sending again reaches a fresh one.
    #[error("context left memory")]
    Retired,
}

impl From<InvalidTransition> for ActionError {
    fn from(e: InvalidTransition) -> Self {
        ActionError::InvalidState(e.state)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("context {0} not found")]
    NotFound(Uuid),
    /// The user owns as many contexts as allowed.
    #[error("You have {0} chats, as many as allowed; delete one to start another")]
    QuotaExceeded(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Action(#[from] ActionError),
}

#[derive(Debug, Clone)]
struct Handle {
    tx: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    last_used: u64,
    /// Kept up to date by the actor.
    footprint: Arc<Footprint>,
}

#[derive(Debug, Default)]
struct Live {
    handles: HashMap<Uuid, Handle>,
    tasks: HashMap<Uuid, JoinHandle<()>>,
    /// Evicted actors still finishing; a reload waits for them (one writer per context).
    retiring: HashMap<Uuid, JoinHandle<()>>,
    tick: u64,
}

#[derive(Debug)]
pub struct Engine {
    deps: Arc<Deps>,
    live: Mutex<Live>,
    /// Serializes loads so one context never gets two actors.
    loading: tokio::sync::Mutex<()>,
}

/// What an action answers once its turn rested or the wait ran out.
#[derive(Debug)]
pub struct TurnOutcome {
    pub snapshot: Arc<Snapshot>,
    /// The turn reached a resting state within the wait.
    pub settled: bool,
}

impl Engine {
    pub fn new(deps: Deps) -> Self {
        Engine {
            deps: Arc::new(deps),
            live: Mutex::new(Live::default()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.deps.metrics
    }

    /// The model turns call (the OpenAI API calls it directly for runs that store nothing).
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.deps.model
    }

    pub fn tools(&self) -> &Arc<ToolRegistry> {
        &self.deps.tools
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.deps.settings
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding this lock leaves plain maps behind; they stay usable.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn create_context(
        &self,
        owner: &str,
        title: Option<String>,
        config: ContextConfig,
    ) -> Result<Arc<Snapshot>, EngineError> {
        let now = crate::store::now();
        let record = ContextRecord {
            id: Uuid::new_v4(),
            title: title.unwrap_or_else(|| "New chat".into()),
            config,
            state: State::Idle,
            version: 1,
            message_count: 0,
            created_at: now,
            updated_at: now,
            active_leaf: None,
            owner: owner.into(),
            version_ceiling: 1,
        };
        let max = self.deps.settings.max_contexts_per_user;
        if !self.deps.store.insert_context(&record, max).await? {
            let refused = &self.deps.metrics.context_quota_refusals;
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(EngineError::QuotaExceeded(max.unwrap_or_default()));
        }
        let handle = self.spawn(LoadedContext {
            record,
            messages: Vec::new(),
        });
        let snapshot = handle.snapshot.borrow().clone();
        Ok(snapshot)
    }

    /// Starts the actors of contexts whose turn was interrupted by a stop or a crash (on
    /// a shared store: whose lease expired), or asks their live actor to resume.
    pub async fn resume_unfinished(&self) -> Result<usize, EngineError> {
        let ids = self.deps.store.unfinished_contexts().await?;
        for id in &ids {
            match self.touch(*id) {
                Some(h) => {
                    let _ = h.tx.try_send(Command::Resume);
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
        let send = |id: &Uuid, cmd: Command| {
            if let Some(h) = live.handles.get(id) {
                let _ = h.tx.try_send(cmd);
            }
        };
        match change {
            Change::Updated { id, version } => {
                let behind = live
                    .handles
                    .get(&id)
                    .is_some_and(|h| h.snapshot.borrow().version() < version);
                if behind {
                    send(&id, Command::Refresh);
                }
            }
            Change::CancelRequested(id) => send(&id, Command::RemoteCancel),
            Change::Queued(id) => send(&id, Command::QueueChanged),
            Change::Resync => {
                for id in live.handles.keys() {
                    send(id, Command::Refresh);
                }
            }
            Change::Deleted(id) => {
                drop(live);
                self.forget_deleted(id);
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
        let (actor, snapshot) = Actor::new(ctx, rx, self.deps.clone(), footprint.clone());
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
        self.deps
            .metrics
            .live_contexts
            .store(live.handles.len() as u64, Ordering::Relaxed);
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
                let _ = h.tx.try_send(Command::Retire);
            }
            if let Some(task) = live.tasks.remove(&id) {
                live.retiring.insert(id, task);
            }
        }
        self.deps.metrics.live_bytes.store(bytes, Ordering::Relaxed);
    }

    async fn handle(&self, id: Uuid) -> Result<Handle, EngineError> {
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
        let loaded = self
            .deps
            .store
            .load_context(id)
            .await?
            .ok_or(EngineError::NotFound(id))?;
        Ok(self.spawn(loaded))
    }

    fn touch(&self, id: Uuid) -> Option<Handle> {
        self.with_live(id, Handle::clone)
    }

    /// Runs `f` on a live context's handle, marking it used.
    fn with_live<T>(&self, id: Uuid, f: impl FnOnce(&Handle) -> T) -> Option<T> {
        let mut live = self.live();
        live.tick += 1;
        let tick = live.tick;
        let h = live.handles.get_mut(&id)?;
        h.last_used = tick;
        Some(f(h))
    }

    /// The latest published snapshot; loads the context when it is not in memory.
    pub async fn snapshot(&self, id: Uuid) -> Result<Arc<Snapshot>, EngineError> {
        // The polling hot path: no channel handles are cloned for a live context.
        if let Some(snapshot) = self.with_live(id, |h| h.snapshot.borrow().clone()) {
            return Ok(snapshot);
        }
        let handle = self.handle(id).await?;
        let snapshot = handle.snapshot.borrow().clone();
        Ok(snapshot)
    }

    /// A receiver of the context's published snapshots, for requests that wait for the
    /// next change (long polls): it costs the caller no task and no copy of the state.
    pub async fn subscribe(&self, id: Uuid) -> Result<watch::Receiver<Arc<Snapshot>>, EngineError> {
        if let Some(rx) = self.with_live(id, |h| h.snapshot.clone()) {
            return Ok(rx);
        }
        Ok(self.handle(id).await?.snapshot)
    }

    /// Answers `NotFound` unless the context exists and belongs to `owner`: another user's
    /// context is indistinguishable from an unknown one. A context not in memory is loaded
    /// (the request that asked is about to use it).
    pub async fn check_owner(&self, id: Uuid, owner: &str) -> Result<(), EngineError> {
        let owned = |h: &Handle| h.snapshot.borrow().record.owner == owner;
        let ok = match self.with_live(id, owned) {
            Some(ok) => ok,
            None => owned(&self.handle(id).await?),
        };
        if ok {
            Ok(())
        } else {
            Err(EngineError::NotFound(id))
        }
    }

    pub async fn list(
        &self,
        owner: &str,
        limit: u32,
        after: Option<Cursor>,
    ) -> Result<(Vec<ContextSummary>, u64, Option<Cursor>), EngineError> {
        let page = self.deps.store.list_contexts(owner, limit, after).await?;
        let next = match page.contexts.last() {
            Some(last) if page.contexts.len() == limit as usize => Some(Cursor {
                created_at: last.created_at,
                id: last.id,
            }),
            _ => None,
        };
        Ok((self.summaries(&page.contexts), page.total, next))
    }

    /// Live contexts may be ahead of the store (a stream between flushes).
    fn summaries(&self, records: &[ContextRecord]) -> Vec<ContextSummary> {
        let live = self.live();
        records
            .iter()
            .map(|r| match live.handles.get(&r.id) {
                Some(h) => h.snapshot.borrow().summary(),
                None => summary(r),
            })
            .collect()
    }

    /// Gives a context a new title: a new version, saved at once.
    pub async fn rename(&self, id: Uuid, title: String) -> Result<Arc<Snapshot>, EngineError> {
        let ((), rx) = self
            .command(id, |reply| Command::Rename {
                title: title.clone(),
                reply,
            })
            .await?;
        let snapshot = rx.borrow().clone();
        Ok(snapshot)
    }

    /// Contexts matching a search, best first; live contexts show their latest summary.
    pub async fn search(
        &self,
        owner: &str,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<(Vec<ContextSummary>, u64), EngineError> {
        let page = self.deps.store.search_contexts(owner, query, limit).await?;
        Ok((self.summaries(&page.contexts), page.total))
    }

    /// Deletes an owner's context: its running turn stops and later requests answer 404.
    pub async fn delete(&self, owner: &str, id: Uuid) -> Result<(), EngineError> {
        self.check_owner(id, owner).await?;
        let _loading = self.loading.lock().await;
        let (task, retiring) = {
            let mut live = self.live();
            live.handles.remove(&id);
            let len = live.handles.len() as u64;
            self.deps
                .metrics
                .live_contexts
                .store(len, Ordering::Relaxed);
            (live.tasks.remove(&id), live.retiring.remove(&id))
        };
        for task in [task, retiring].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        if self.deps.store.delete_context(owner, id).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound(id))
        }
    }

    /// Sends a command built around a reply channel and awaits the actor's answer.
    async fn command<T>(
        &self,
        id: Uuid,
        make: impl Fn(Reply<T>) -> Command,
    ) -> Result<(T, watch::Receiver<Arc<Snapshot>>), EngineError> {
        // An actor may leave memory between our lookup and its mailbox: then try again.
        for _ in 0..3 {
            let handle = self.handle(id).await?;
            let (reply, answer) = oneshot::channel();
            if handle.tx.send(make(reply)).await.is_err() {
                self.forget(id, &handle);
                continue;
            }
            match answer.await {
                Ok(Ok(value)) => return Ok((value, handle.snapshot)),
                Ok(Err(ActionError::Retired)) => continue,
                Ok(Err(e)) => return Err(e.into()),
                // The actor was stopped: the context was deleted meanwhile.
                Err(_) => return Err(EngineError::NotFound(id)),
            }
        }
        Err(EngineError::Store(StoreError::Unavailable(
            "the context is busy moving in or out of memory; try again".into(),
        )))
    }

    fn forget(&self, id: Uuid, handle: &Handle) {
        let mut live = self.live();
        if live
            .handles
            .get(&id)
            .is_some_and(|h| h.tx.same_channel(&handle.tx))
        {
            live.handles.remove(&id);
        }
    }

    /// Waits until turn `turn` rests, at most `wait`.
    async fn wait_turn(
        &self,
        id: Uuid,
        mut rx: watch::Receiver<Arc<Snapshot>>,
        turn: u64,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let waited = tokio::time::timeout(wait, rx.wait_for(|s| s.turns.settled >= turn))
            .await
            .map(|r| r.map(|s| s.clone()));
        let snapshot = match waited {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(EngineError::NotFound(id)),
            Err(_) => rx.borrow().clone(),
        };
        let settled = snapshot.turns.settled >= turn;
        if settled && snapshot.turns.save_failed == Some(turn) {
            let error = snapshot
                .record
                .state
                .error()
                .unwrap_or("save failed")
                .to_owned();
            return Err(ActionError::SaveFailed(error).into());
        }
        Ok(TurnOutcome { snapshot, settled })
    }

    /// Sends a user message. On a busy context it is queued and acknowledged at once; the
    /// wait (counted from this call) then covers its own turn.
    pub async fn send_message(
        &self,
        id: Uuid,
        message: NewMessage,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let deadline = tokio::time::Instant::now() + wait;
        let (ack, rx) = self
            .command(id, |reply| Command::Send {
                message: message.clone(),
                reply,
            })
            .await?;
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ack {
            SendAck::Turn(turn) => self.wait_turn(id, rx, turn, wait).await,
            SendAck::Queued(message_id) => self.wait_queued(id, rx, message_id, true, wait).await,
            SendAck::QueuedElsewhere(message_id) => {
                self.wait_queued(id, rx, message_id, false, wait).await
            }
        }
    }

    /// Waits until the turn of queued message `message_id` is over, at most `wait`. A
    /// message queued for another instance (`seen` false) must show here first: until then
    /// its turn has not even started.
    async fn wait_queued(
        &self,
        id: Uuid,
        mut rx: watch::Receiver<Arc<Snapshot>>,
        message_id: Uuid,
        mut seen: bool,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let mut done = |s: &Arc<Snapshot>| {
            seen |= s.knows_message(message_id);
            seen && s.message_turn_done(message_id)
        };
        let waited = tokio::time::timeout(wait, rx.wait_for(&mut done))
            .await
            .map(|r| r.map(|s| s.clone()));
        let snapshot = match waited {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => return Err(EngineError::NotFound(id)),
            Err(_) => rx.borrow().clone(),
        };
        let settled = done(&snapshot);
        Ok(TurnOutcome { snapshot, settled })
    }

    /// Drops a queued message before its turn; answers the state without it.
    pub async fn cancel_queued(
        &self,
        id: Uuid,
        message_id: Uuid,
    ) -> Result<Arc<Snapshot>, EngineError> {
        let ((), rx) = self
            .command(id, |reply| Command::CancelQueued { message_id, reply })
            .await?;
        let snapshot = rx.borrow().clone();
        Ok(snapshot)
    }

    pub async fn approve_tools(
        &self,
        id: Uuid,
        tool_call_ids: Vec<String>,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self
            .command(id, |reply| Command::Approve {
                tool_call_ids: tool_call_ids.clone(),
                reply,
            })
            .await?;
        self.wait_turn(id, rx, turn, wait).await
    }

    /// The client's outputs for the calls of its own tools that the turn waits on; the
    /// turn goes on with them.
    pub async fn submit_tool_outputs(
        &self,
        id: Uuid,
        outputs: Vec<(String, String)>,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self
            .command(id, |reply| Command::SubmitToolOutputs {
                outputs: outputs.clone(),
                reply,
            })
            .await?;
        self.wait_turn(id, rx, turn, wait).await
    }

    pub async fn retry(&self, id: Uuid, wait: Duration) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self.command(id, |reply| Command::Retry { reply }).await?;
        self.wait_turn(id, rx, turn, wait).await
    }

    /// `edit_message`: a sibling of a user message on the path; its turn runs.
    pub async fn edit_user_message(
        &self,
        id: Uuid,
        message_id: Uuid,
        message: NewMessage,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self
            .command(id, |reply| Command::EditUserMessage {
                message_id,
                message: message.clone(),
                reply,
            })
            .await?;
        self.wait_turn(id, rx, turn, wait).await
    }

    /// `regenerate`: a new reply beside an assistant message on the path.
    pub async fn regenerate(
        &self,
        id: Uuid,
        message_id: Option<Uuid>,
        wait: Duration,
    ) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self
            .command(id, |reply| Command::Regenerate { message_id, reply })
            .await?;
        self.wait_turn(id, rx, turn, wait).await
    }

    /// `switch_branch`: the active leaf becomes the newest leaf under a message (or under
    /// the sibling of it that `sibling_index` names).
    pub async fn switch_branch(
        &self,
        id: Uuid,
        target: SwitchBranchRequest,
    ) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self
            .command(id, |reply| Command::SwitchBranch { target, reply })
            .await?;
        self.wait_turn(id, rx, turn, Duration::ZERO).await
    }

    pub async fn cancel(&self, id: Uuid) -> Result<TurnOutcome, EngineError> {
        let (turn, rx) = self.command(id, |reply| Command::Cancel { reply }).await?;
        self.wait_turn(id, rx, turn, Duration::from_secs(30)).await
    }

    pub async fn append_message(
        &self,
        id: Uuid,
        role: Role,
        content: Vec<ContentPart>,
        tool_call_id: Option<String>,
    ) -> Result<Written, EngineError> {
        let (written, _) = self
            .command(id, |reply| Command::Append {
                role,
                content: content.clone(),
                tool_call_id: tool_call_id.clone(),
                reply,
            })
            .await?;
        Ok(written)
    }

    pub async fn edit_message(
        &self,
        id: Uuid,
        message_id: Uuid,
        content: Vec<ContentPart>,
    ) -> Result<Written, EngineError> {
        let (written, _) = self
            .command(id, |reply| Command::Edit {
                message_id,
                content: content.clone(),
                reply,
            })
            .await?;
        Ok(written)
    }

    /// Writes every live context's unsaved changes (shutdown).
    pub async fn flush_all(&self) {
        let handles: Vec<Handle> = self.live().handles.values().cloned().collect();
        for h in handles {
            let (reply, done) = oneshot::channel();
            if h.tx.send(Command::Flush { reply }).await.is_ok() {
                let _ = done.await;
            }
        }
    }
}
