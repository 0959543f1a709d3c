//! The engine: a bounded set of live contexts, each run by its own actor task.
//!
//! Architecture Invariant: one writer per context. Every change to a context goes through
//! its actor's mailbox; readers only look at the snapshot the actor publishes, so a read
//! never waits for a running turn.
//!
//! Layout: `settings.rs` what the engine is built from; `error.rs` how its calls fail;
//! `registry.rs` which contexts are live and how they come and go; `actions.rs` the
//! actions (a command, then a wait); `legacy.rs` the deprecated CRUD writes; `reads.rs`
//! snapshots and summaries; `actor/` the task that owns one context; `context/` the
//! context in memory; `snapshot.rs` what readers get.

mod actions;
mod actor;
mod autosave;
mod context;
mod error;
mod legacy;
mod log;
mod reads;
mod registry;
mod settings;
mod snapshot;
mod stream_text;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod tree;

pub use context::new_message;
pub use error::{ActionError, EngineError};
pub use log::MessageLog;
pub use settings::{Deps, EngineSettings};
pub use snapshot::{summary, Snapshot, TurnOutcome, Written};

use registry::Live;
use std::sync::{Arc, Mutex};

/// The ids on the active path of a context as loaded, for store tests.
#[cfg(test)]
pub(crate) fn active_path(loaded: crate::store::LoadedContext) -> Vec<uuid::Uuid> {
    context::LiveContext::from_loaded(loaded)
        .messages()
        .iter()
        .map(|m| m.id)
        .collect()
}

#[derive(Debug)]
pub struct Engine {
    deps: Arc<Deps>,
    live: Mutex<Live>,
    /// Serializes loads so one context never gets two actors.
    loading: tokio::sync::Mutex<()>,
}

impl Engine {
    pub fn new(deps: Deps) -> Self {
        Engine {
            deps: Arc::new(deps),
            live: Mutex::new(Live::default()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Arc<dyn crate::store::Store> {
        &self.deps.store
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.deps.metrics
    }
}
