//! Showing the context to readers, and what it costs in memory.
//!
//! Architecture Invariant: this file is the one place that stamps the context's pending
//! changes with a version (`LiveContext::publish`) and replaces the snapshot readers see.
//! A save writes what was stamped; the autosaver never publishes.

use super::Actor;
use crate::engine::autosave::SaveOutcome;
use crate::engine::context::LiveContext;
use crate::engine::snapshot::{Snapshot, Turns};
use crate::store::StoreError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// What an actor tells the engine about its context after each request.
#[derive(Debug, Default)]
pub struct Footprint {
    /// Changes only in memory (a save failed): the engine never evicts such a context,
    /// so nothing unsaved is dropped.
    pub unsaved: AtomicBool,
    /// About how many bytes its messages take (`--max-live-bytes`).
    pub bytes: AtomicU64,
}

/// The publishing side of one actor.
#[derive(Debug)]
pub(super) struct Publisher {
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// When the last snapshot was published, and when a held-back one is due.
    last: Instant,
    due: Option<Instant>,
    /// What the engine reads to choose what to evict.
    footprint: Arc<Footprint>,
    /// The bytes last noted and the context's streamed bytes then: a publish during a turn
    /// adds what streamed since, without walking the history.
    noted: (u64, u64),
}

impl Publisher {
    /// The first state shown of a context just loaded or created.
    pub(super) fn new(
        ctx: &mut LiveContext,
        shared: bool,
        footprint: Arc<Footprint>,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        // The only writer, loading what the last run left: if that run may have shown
        // versions it never stored (it crashed), the first state shown is above them. It
        // names the stored content, as it would after another crash, so it is shown at
        // once; the next publish stores a ceiling above it.
        if !shared && ctx.skip_past_ceiling() {
            ctx.publish();
        }
        let (snapshot, rx) = watch::channel(Arc::new(ctx.snapshot(Turns::default())));
        let publisher = Publisher {
            snapshot,
            last: Instant::now(),
            due: None,
            footprint,
            noted: (0, 0),
        };
        (publisher, rx)
    }

    /// When a snapshot held back (streaming) is due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }
}

impl Actor {
    /// Shows the context as it is now to every reader, pending changes (a streamed chunk
    /// not saved yet, a change outside a transition) under a new version. A version above
    /// the stored ceiling is shown only once a higher ceiling is stored (so after a crash
    /// the next writer starts above it); if that write fails, readers keep the last state
    /// shown, and the next publish tries again.
    pub(super) async fn publish(&mut self) {
        self.ctx.publish();
        if self.ctx.needs_reservation() {
            // A save behind the stream may store a ceiling high enough, and a reservation
            // must not race it.
            self.wait_behind().await;
        }
        if self.ctx.needs_reservation() {
            let ceiling = self.ctx.next_ceiling();
            match self
                .deps
                .store
                .reserve_versions(self.ctx.id(), ceiling)
                .await
            {
                Ok(()) => self.ctx.reserved(ceiling),
                Err(e) => {
                    tracing::warn!(context_id = %self.ctx.id(), version = self.ctx.version(), error = %e, "not shown yet: reserving versions failed");
                    return;
                }
            }
        }
        let p = &mut self.publisher;
        p.due = None;
        p.last = Instant::now();
        p.snapshot
            .send_replace(Arc::new(self.ctx.snapshot(self.turns)));
        self.note_growth();
    }

    /// Publishes a streamed chunk at most every `stream_publish`, so held readers wake in
    /// small batches instead of once per token; a chunk held back is published when that
    /// time comes (`serve_while`) or with the next state change, whichever is first.
    pub(super) async fn publish_soon(&mut self) {
        let due = self.publisher.last + self.deps.settings.stream_publish;
        if Instant::now() >= due {
            self.publish().await;
        } else {
            self.publisher.due = Some(due);
        }
    }

    /// Writes whatever is unsaved now, pending changes stamped first (without showing
    /// them: that is the caller's choice), once the save behind the stream is over.
    pub(super) async fn save(&mut self) -> Result<SaveOutcome, StoreError> {
        self.land().await?;
        self.ctx.publish();
        self.autosave.save(&mut self.ctx).await
    }

    /// Stamps a change outside a transition (a tool call's progress) with a version now;
    /// the caller shows it with its next publish.
    pub(super) fn stamp(&mut self) {
        self.ctx.publish();
    }

    /// Tells the engine what it needs to choose what to evict (see [`Footprint`]).
    pub(super) fn note_footprint(&mut self) {
        let f = &self.publisher.footprint;
        f.unsaved.store(self.ctx.has_unsaved(), Relaxed);
        let bytes = self.ctx.approx_bytes();
        f.bytes.store(bytes, Relaxed);
        self.publisher.noted = (bytes, self.ctx.streamed_bytes());
    }

    /// A running turn's reply counts as it grows (`--max-live-bytes`), not only once the
    /// turn is over.
    fn note_growth(&self) {
        let (bytes, streamed) = self.publisher.noted;
        let grown = self.ctx.streamed_bytes().saturating_sub(streamed);
        self.publisher.footprint.bytes.store(bytes + grown, Relaxed);
    }
}
