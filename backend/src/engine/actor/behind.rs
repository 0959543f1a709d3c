//! A streaming reply's flush, written behind the stream.
//!
//! While a reply streams, the store is written every `stream_flush`. Such a save is no
//! point anyone waits for (the reply's end, a cancel or a failure is saved again, and a
//! crash resumes the turn from what any save left), so the actor does not wait for it:
//! it begins the save, goes on taking the model's chunks, and learns the outcome when the
//! save is over. Invariants: at most one save runs behind the stream, and no other save
//! begins before it is over (each batch expects the version the one before it wrote, and
//! the durability points clients rely on keep their order); a flush due while one runs
//! waits for it, then writes the latest state (the saves coalesce); a failed one fails
//! the turn at the next flush or save, as a failed save in line would.

use super::Actor;
use crate::engine::autosave::{SaveOutcome, Written};
use crate::store::StoreError;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

/// The save behind the stream, if any.
#[derive(Debug, Default)]
pub(super) enum Behind {
    #[default]
    None,
    Running(JoinHandle<Written>),
    /// Over, and failed: the next save reports it.
    Failed(StoreError),
}

impl Actor {
    /// The flush of a streaming reply: begins a save behind the stream, unless one runs
    /// already (this flush is then left to the next one).
    pub(super) fn flush_behind(&mut self) -> Result<SaveOutcome, StoreError> {
        match std::mem::take(&mut self.behind) {
            Behind::Failed(e) => Err(e),
            running @ Behind::Running(_) => {
                self.behind = running;
                self.deps
                    .metrics
                    .saves_deferred
                    .fetch_add(1, Ordering::Relaxed);
                Ok(SaveOutcome::Deferred)
            }
            Behind::None => {
                self.ctx.publish();
                match self.autosave.begin(&mut self.ctx) {
                    None => Ok(SaveOutcome::Skipped),
                    Some(write) => {
                        self.behind = Behind::Running(tokio::spawn(write.run()));
                        Ok(SaveOutcome::Deferred)
                    }
                }
            }
        }
    }

    /// Waits until no save runs behind the stream; a failure is kept for the next save.
    pub(super) async fn wait_behind(&mut self) {
        if let Behind::Running(write) = &mut self.behind {
            let done = write.await;
            self.landed(done);
        }
    }

    /// Before any other save: the one behind the stream is over; its failure is reported
    /// here (its changes are unsaved again, so the next save writes them).
    pub(super) async fn land(&mut self) -> Result<(), StoreError> {
        self.wait_behind().await;
        match std::mem::take(&mut self.behind) {
            Behind::Failed(e) => Err(e),
            Behind::None | Behind::Running(_) => Ok(()),
        }
    }

    /// The save behind the stream is over: `done` as its task answered.
    pub(super) fn landed(&mut self, done: Result<Written, tokio::task::JoinError>) {
        let done = done.unwrap_or_else(|e| Written::lost(format!("the save task ended: {e}")));
        self.behind = match self.autosave.end(&mut self.ctx, done) {
            Ok(_) => Behind::None,
            Err(e) => Behind::Failed(e),
        };
    }
}

/// Resolves when the save behind the stream is over; never while none runs.
pub(super) async fn behind_done(behind: &mut Behind) -> Result<Written, tokio::task::JoinError> {
    match behind {
        Behind::Running(write) => write.await,
        Behind::None | Behind::Failed(_) => std::future::pending().await,
    }
}
