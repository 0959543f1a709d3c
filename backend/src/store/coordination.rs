//! How server processes that share a store stay out of each other's way: a lease per
//! context (a turn runs only where the lease is held) and notices of changes. One process
//! alone needs neither, so `SingleProcess` grants every lease and has nobody to tell; the
//! Postgres version (`postgres.rs`) keeps leases in a table and carries notices over
//! `LISTEN`/`NOTIFY`.

use super::{Change, StoreError};
use async_trait::async_trait;
use sqlx::AnyConnection;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

#[async_trait]
pub trait Coordination: Send + Sync + std::fmt::Debug + 'static {
    /// Whether other processes share the store; then a turn runs only under a lease.
    fn is_shared(&self) -> bool;
    /// Takes or renews this process's lease on a context; `false` while another live
    /// process holds it.
    async fn take_lease(&self, id: Uuid, ttl: Duration) -> Result<bool, StoreError>;
    /// Lets go of this process's lease, if it holds one.
    async fn release_lease(&self, id: Uuid) -> Result<(), StoreError>;
    /// Tells every process about a change, now.
    async fn notify(&self, change: Change) -> Result<(), StoreError>;
    /// Tells every process about a change when (and only if) the transaction `conn` is in
    /// commits.
    async fn notify_on_commit(
        &self,
        conn: &mut AnyConnection,
        change: Change,
    ) -> Result<(), StoreError>;
    /// The changes any process makes, from now on; `None` when there is nobody else.
    fn subscribe(&self) -> Option<broadcast::Receiver<Change>>;
    /// An SQL condition on `contexts` that leaves out the contexts another live process is
    /// running (empty, or starting with ` AND `).
    fn not_leased_elsewhere(&self) -> &'static str;
}

/// One process alone: every lease is granted, and no other process needs telling.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

#[async_trait]
impl Coordination for SingleProcess {
    fn is_shared(&self) -> bool {
        false
    }

    async fn take_lease(&self, _id: Uuid, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
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
        None
    }

    fn not_leased_elsewhere(&self) -> &'static str {
        ""
    }
}
