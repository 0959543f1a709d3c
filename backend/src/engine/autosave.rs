//! The autosave hook the engine calls after every FSM transition.
//!
//! Architecture Invariant: a clean context costs no I/O; a dirty one is written in one
//! transaction, except while streaming, where the store is written at most every
//! `stream_flush` and once when the stream ends.

use super::context::LiveContext;
use crate::fsm::State;
use crate::metrics::Metrics;
use crate::store::{SaveBatch, Store, StoreError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveOutcome {
    Saved,
    /// Nothing changed: no I/O.
    Skipped,
    /// Streaming within the flush interval: visible in memory, written later.
    Deferred,
}

#[derive(Debug, Clone)]
pub struct Autosaver {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub stream_flush: Duration,
}

impl Autosaver {
    /// After a transition (its changes not stamped yet): `Some` when nothing is written
    /// now (clean: skipped; streaming within the flush interval: deferred), `None` when
    /// the actor stamps the changes and calls [`Autosaver::save`].
    pub fn without_write(&self, ctx: &LiveContext) -> Option<SaveOutcome> {
        if !ctx.has_unpublished() && !ctx.has_unsaved() {
            self.metrics.saves_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(context_id = %ctx.id(), state = ctx.state().name().as_str(), "save skipped: context is clean");
            return Some(SaveOutcome::Skipped);
        }
        if *ctx.state() == State::StreamingLlmResponse
            && ctx.last_save.elapsed() < self.stream_flush
        {
            // Not even published: the chunk gets its version when readers are shown it (at
            // most every `stream_publish`), so versions count what readers saw, not chunks.
            // However many that makes, the actor reserves versions before it shows one above
            // the stored ceiling: a long stream needs no save for that, which would write
            // the whole reply again.
            self.metrics.saves_deferred.fetch_add(1, Ordering::Relaxed);
            return Some(SaveOutcome::Deferred);
        }
        None
    }

    /// For a transition the next one follows at once, in the same FSM cycle (no one waits
    /// in its state, and a crash there resumes exactly as from the state before it): the
    /// change, published already, is written with the next transition's save.
    pub fn after_passing_transition(&self, ctx: &LiveContext) -> SaveOutcome {
        if ctx.has_unsaved() {
            self.metrics.saves_deferred.fetch_add(1, Ordering::Relaxed);
            SaveOutcome::Deferred
        } else {
            self.metrics.saves_skipped.fetch_add(1, Ordering::Relaxed);
            SaveOutcome::Skipped
        }
    }

    /// Writes whatever was published and is unsaved now, whatever the state (after a
    /// transition, on flush, after changes outside a transition).
    pub async fn save(&self, ctx: &mut LiveContext) -> Result<SaveOutcome, StoreError> {
        match self.begin(ctx) {
            None => Ok(SaveOutcome::Skipped),
            Some(write) => {
                let done = write.run().await;
                self.end(ctx, done)
            }
        }
    }

    /// Begins writing whatever was published and is unsaved now: the write runs here
    /// ([`Autosaver::save`]) or behind a streaming reply; [`Autosaver::end`] takes its
    /// outcome. `None` when nothing is unsaved.
    pub fn begin(&self, ctx: &mut LiveContext) -> Option<Write> {
        if !ctx.has_unsaved() {
            return None;
        }
        Some(Write {
            store: self.store.clone(),
            batch: ctx.begin_save(),
        })
    }

    /// A write begun with [`Autosaver::begin`] is over.
    pub fn end(&self, ctx: &mut LiveContext, done: Written) -> Result<SaveOutcome, StoreError> {
        ctx.end_save(done.result.is_ok());
        match done.result {
            Ok(()) => {
                self.metrics.record_save(done.took);
                tracing::debug!(
                    context_id = %ctx.id(),
                    state = ctx.state().name().as_str(),
                    version = done.version,
                    messages = done.messages,
                    micros = done.took.as_micros() as u64,
                    "context saved"
                );
                Ok(SaveOutcome::Saved)
            }
            Err(e) => {
                self.metrics.save_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    context_id = %ctx.id(),
                    state = ctx.state().name().as_str(),
                    error = %e,
                    "saving the context failed"
                );
                Err(e)
            }
        }
    }
}

/// One save begun, to run wherever the caller likes (it owns what it writes).
#[derive(Debug)]
pub struct Write {
    store: Arc<dyn Store>,
    batch: SaveBatch,
}

/// How a [`Write`] went.
#[derive(Debug)]
pub struct Written {
    result: Result<(), StoreError>,
    took: Duration,
    version: u64,
    messages: usize,
}

impl Written {
    /// A write whose task ended without an answer (it panicked).
    pub fn lost(why: String) -> Self {
        Written {
            result: Err(StoreError::Database(why)),
            took: Duration::ZERO,
            version: 0,
            messages: 0,
        }
    }
}

impl Write {
    pub async fn run(self) -> Written {
        let started = Instant::now();
        let result = self.store.save(&self.batch).await;
        Written {
            result,
            took: started.elapsed(),
            version: self.batch.context.version,
            messages: self.batch.messages.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::context::MAX_UNSAVED_VERSIONS;
    use crate::engine::testing::{context_in, Fault, FaultStore, Op};
    use crate::metrics::Metrics;
    use chatsync_protocol::{ContentPart, Message, Role, StateName};

    fn user_message(text: &str) -> Message {
        crate::engine::new_message(Role::User, vec![ContentPart::text(text)], None)
    }

    /// The hook as the actor runs it after a transition: changes are stamped before a write.
    async fn after_transition(
        autosave: &Autosaver,
        ctx: &mut LiveContext,
    ) -> Result<SaveOutcome, StoreError> {
        match autosave.without_write(ctx) {
            Some(outcome) => Ok(outcome),
            None => {
                ctx.publish();
                autosave.save(ctx).await
            }
        }
    }

    fn saver(store: Arc<FaultStore>, flush: Duration) -> Autosaver {
        Autosaver {
            store,
            metrics: Arc::new(Metrics::default()),
            stream_flush: flush,
        }
    }

    #[tokio::test]
    async fn every_state_writes_when_dirty_and_skips_when_clean() {
        for name in StateName::ALL {
            let store = Arc::new(FaultStore::empty());
            let autosave = saver(store.clone(), Duration::ZERO);
            let mut ctx = context_in(name);

            // Clean: no I/O, counted as skipped.
            assert_eq!(
                after_transition(&autosave, &mut ctx).await.ok(),
                Some(SaveOutcome::Skipped)
            );
            assert_eq!(store.saves(), 0, "{name:?}");
            assert_eq!(Metrics::get(&autosave.metrics.saves_skipped), 1);

            // Dirty: one write holding just the changed message, version bumped once.
            let before = ctx.version();
            ctx.push(user_message("hi"), None);
            assert_eq!(
                after_transition(&autosave, &mut ctx).await.ok(),
                Some(SaveOutcome::Saved)
            );
            assert_eq!(store.saves(), 1, "{name:?}");
            assert_eq!(Metrics::get(&autosave.metrics.saves), 1);
            assert_eq!(ctx.version(), before + 1);
            let batch = store.last().expect("saved");
            assert_eq!(batch.messages.len(), 1);
            assert_eq!(batch.messages[0].message.version, before + 1);
            assert_eq!(batch.expected_version, before);

            // Clean again after the save.
            assert_eq!(
                after_transition(&autosave, &mut ctx).await.ok(),
                Some(SaveOutcome::Skipped)
            );
            assert_eq!(store.saves(), 1);
        }
    }

    #[tokio::test]
    async fn streaming_chunks_are_deferred_until_the_flush_interval() {
        let store = Arc::new(FaultStore::empty());
        let autosave = saver(store.clone(), Duration::from_secs(3600));
        let mut ctx = context_in(StateName::StreamingLlmResponse);
        let before = ctx.version();
        let i = ctx.push(user_message(""), None);
        for n in 0..5 {
            ctx.message_mut(i).content = vec![ContentPart::text(format!("chunk {n}"))];
            assert_eq!(
                after_transition(&autosave, &mut ctx).await.ok(),
                Some(SaveOutcome::Deferred)
            );
        }
        assert_eq!(store.saves(), 0);
        assert_eq!(Metrics::get(&autosave.metrics.saves_deferred), 5);
        assert_eq!(
            ctx.version(),
            before,
            "deferred chunks wait for the publish"
        );
        // The stream ends: the next transition leaves Streaming and writes everything once.
        ctx.set_state(State::ProcessingLlmResponse);
        assert_eq!(
            after_transition(&autosave, &mut ctx).await.ok(),
            Some(SaveOutcome::Saved)
        );
        assert_eq!(store.saves(), 1);
        let batch = store.last().expect("saved");
        assert_eq!(batch.messages.len(), 1, "one row for the streamed message");
        assert_eq!(batch.context.version, ctx.version());
        assert_eq!(ctx.version(), before + 1, "one version for the five chunks");
    }

    #[tokio::test]
    async fn a_long_stream_is_written_by_time_not_by_its_number_of_versions() {
        let store = Arc::new(FaultStore::empty());
        let autosave = saver(store.clone(), Duration::from_secs(3600));
        let mut ctx = context_in(StateName::StreamingLlmResponse);
        let i = ctx.push(user_message(""), None);
        for n in 0..=MAX_UNSAVED_VERSIONS {
            ctx.append_text(i, &format!("chunk {n} "));
            assert_eq!(
                after_transition(&autosave, &mut ctx).await.ok(),
                Some(SaveOutcome::Deferred)
            );
            // Shown at once, as the actor does with a `stream_publish` of zero.
            ctx.publish();
        }
        assert_eq!(
            store.saves(),
            0,
            "no save rewrites the reply per 1000 versions"
        );
        assert!(
            ctx.needs_reservation(),
            "the actor reserves versions before showing this one"
        );
    }

    #[tokio::test]
    async fn a_passing_transition_is_written_with_the_next_one() {
        let store = Arc::new(FaultStore::empty());
        let autosave = saver(store.clone(), Duration::ZERO);
        let mut ctx = context_in(StateName::ProcessingUserMessage);
        let before = ctx.version();
        ctx.set_state(State::AwaitingLlmResponse);
        ctx.publish();
        assert_eq!(
            autosave.after_passing_transition(&ctx),
            SaveOutcome::Deferred
        );
        assert_eq!(
            (store.saves(), ctx.version()),
            (0, before + 1),
            "published, not written"
        );
        ctx.set_state(State::Idle);
        assert_eq!(
            after_transition(&autosave, &mut ctx).await.ok(),
            Some(SaveOutcome::Saved)
        );
        let batch = store.last().expect("saved");
        assert_eq!(
            (batch.context.version, batch.context.state.clone()),
            (before + 2, State::Idle)
        );
        ctx.publish();
        assert_eq!(
            autosave.after_passing_transition(&ctx),
            SaveOutcome::Skipped
        );
    }

    #[tokio::test]
    async fn a_failed_save_is_reported_and_kept_for_the_next_one() {
        let store = Arc::new(FaultStore::empty());
        let autosave = saver(store.clone(), Duration::ZERO);
        let mut ctx = context_in(StateName::Idle);
        ctx.push(user_message("keep me"), None);
        store.fail(Op::Save, Fault::Once);
        assert!(after_transition(&autosave, &mut ctx).await.is_err());
        assert_eq!(Metrics::get(&autosave.metrics.save_errors), 1);
        assert!(ctx.has_unsaved());
        assert_eq!(
            after_transition(&autosave, &mut ctx).await.ok(),
            Some(SaveOutcome::Saved)
        );
        assert_eq!(store.last().expect("saved").messages.len(), 1);
    }
}
