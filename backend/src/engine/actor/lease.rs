//! The context's lease on a shared store: which instance may run its turn.
//!
//! On a store that is not shared there is one instance, so one writer by construction and
//! no lease at all. On a shared store an actor takes the lease before it changes the
//! context, renews it during long waits, and releases it once the turn rests.

use super::{Actor, Request, LEASE_POLL, LEASE_WAIT};
use crate::engine::ActionError;
use crate::store::StoreError;
use tokio::time::Instant;

/// Where this actor stands with the context's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lease {
    /// The store is not shared: this actor is the only writer and needs no lease.
    NotShared,
    /// Shared store, lease not held: this actor reads what the writer saves.
    Released,
    /// Shared store, lease held since it was last renewed at `renewed`.
    Held { renewed: Instant },
    /// The lease could not be renewed during a wait: another instance may write now,
    /// so the running turn stops without writing.
    Lost,
}

impl Lease {
    pub(super) fn new(shared: bool) -> Self {
        if shared {
            Lease::Released
        } else {
            Lease::NotShared
        }
    }

    pub(super) fn is_shared(self) -> bool {
        self != Lease::NotShared
    }

    /// This actor may change the context now.
    pub(super) fn may_write(self) -> bool {
        matches!(self, Lease::NotShared | Lease::Held { .. })
    }

    /// This actor runs no turn under a lease, so it follows what other instances save.
    pub(super) fn follows_others(self) -> bool {
        matches!(self, Lease::NotShared | Lease::Released)
    }

    /// When the lease must be renewed to stay held; `None` when nothing is held.
    pub(super) fn renew_at(self, ttl: std::time::Duration) -> Option<Instant> {
        match self {
            Lease::Held { renewed } => Some(renewed + ttl / 3),
            _ => None,
        }
    }

    pub(super) fn held_now() -> Self {
        Lease::Held {
            renewed: Instant::now(),
        }
    }
}

impl Actor {
    /// Takes the context's lease (waiting while another instance runs a turn) and catches
    /// up with what that instance wrote. A store that is not shared needs neither.
    pub(super) async fn take_lease(&mut self) -> Result<(), ActionError> {
        let deadline = Instant::now() + LEASE_WAIT;
        while !self.try_take_lease().await? {
            if Instant::now() > deadline {
                return Err(StoreError::Unavailable(
                    "the context is busy on another instance; try again".into(),
                )
                .into());
            }
            self.wait_between_turns(tokio::time::sleep(LEASE_POLL))
                .await;
        }
        Ok(())
    }

    /// Takes the lease for `request`. While another instance runs a turn in the context, a
    /// request that cannot run during a turn is refused at once, as during a turn here;
    /// others wait for the lease (see [`Actor::take_lease`]).
    pub(super) async fn take_lease_for(&mut self, request: &Request) -> Result<(), ActionError> {
        if !self.try_take_lease().await? {
            // The state that instance stored: mid-turn unless resting.
            self.catch_up().await?;
            let state = self.ctx.state().name();
            if !state.is_resting() {
                if let Some(error) = request.refusal_during_turn(state) {
                    return Err(error);
                }
            }
        }
        self.take_lease().await
    }

    /// One try at the lease: false while another instance holds it.
    pub(super) async fn try_take_lease(&mut self) -> Result<bool, ActionError> {
        if self.lease.may_write() {
            return Ok(true);
        }
        let ttl = self.deps.settings.lease_ttl;
        if !self.deps.store.acquire_lease(self.ctx.id(), ttl).await? {
            return Ok(false);
        }
        self.lease = Lease::held_now();
        if let Err(e) = self.catch_up().await {
            self.release_lease().await;
            return Err(e);
        }
        // A writer before this one that crashed or lost its lease may have shown
        // versions it never stored.
        if let Err(e) = self.skip_past_ceiling().await {
            self.release_lease().await;
            return Err(e);
        }
        // The last writer may have run what this instance holds as queued, and others
        // may have queued more: the stored queue is the truth.
        self.sync_queue().await;
        Ok(true)
    }

    /// Starts above every version an earlier writer may have shown (see
    /// `LiveContext::skip_past_ceiling`), stored before it is shown. An earlier writer
    /// whose lease expired while it still ran (slow, not dead) and that renews it once this
    /// actor let go would otherwise go on saving below the version shown here, and this
    /// instance, which ignores notices below what it shows, would show a state no one
    /// stored for good; stored, that writer's next save is refused and it steps back.
    pub(super) async fn skip_past_ceiling(&mut self) -> Result<(), ActionError> {
        if self.ctx.skip_past_ceiling() {
            self.save().await?;
            self.publish().await;
        }
        Ok(())
    }

    pub(super) async fn release_lease(&mut self) {
        if !matches!(self.lease, Lease::Held { .. }) {
            return;
        }
        self.lease = Lease::Released;
        if let Err(e) = self.deps.store.release_lease(self.ctx.id()).await {
            // It expires by itself; another instance only waits a little longer.
            tracing::warn!(context_id = %self.ctx.id(), error = %e, "releasing a lease failed");
        }
    }

    /// Renews the lease during a long wait; it becomes `Lost` when another instance took it.
    pub(super) async fn renew_lease(&mut self) {
        let held = match self
            .deps
            .store
            .acquire_lease(self.ctx.id(), self.deps.settings.lease_ttl)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                // The database may be back before the lease runs out; a save tells for sure.
                tracing::warn!(context_id = %self.ctx.id(), error = %e, "renewing a lease failed");
                true
            }
        };
        self.lease = if held { Lease::held_now() } else { Lease::Lost };
    }

    /// After the turn stopped because the lease was lost: step back to reading.
    pub(super) async fn step_back(&mut self) {
        // What runs behind the stream was refused too, or written before the other
        // instance took over; catching up reads the store either way.
        let _ = self.land().await;
        self.lease = Lease::Released;
        let _ = self.catch_up().await;
    }
}
