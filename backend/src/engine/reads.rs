//! What readers ask for: a context's snapshot (now, or the next one), its owner, and the
//! summaries of many. Reads never go through an actor's mailbox, so they never wait for a
//! running turn.

use super::registry::Handle;
use super::{summary, Engine, EngineError, Snapshot};
use crate::domain::{Owner, SearchQuery};
use crate::snippet::snippet;
use crate::store::{ContextRecord, Cursor, ListOrder};
use chatsync_protocol::{ContextSummary, Snippet};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

impl Engine {
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
    pub async fn check_owner(&self, id: Uuid, owner: &Owner) -> Result<(), EngineError> {
        let owned = |h: &Handle| h.snapshot.borrow().record.owner == owner.as_str();
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
        owner: &Owner,
        limit: u32,
        order: ListOrder,
        after: Option<Cursor>,
    ) -> Result<(Vec<ContextSummary>, u64, Option<Cursor>), EngineError> {
        let store = &self.deps.store;
        let page = store
            .list_contexts(owner.as_str(), limit, order, after)
            .await?;
        let next = match page.contexts.last() {
            Some(last) if page.contexts.len() == limit as usize => Some(Cursor::after(order, last)),
            _ => None,
        };
        Ok((self.summaries(&page.contexts), page.total, next))
    }

    /// Contexts matching a search, best first, each with the snippet of where it matched
    /// (its best message, else its title); live contexts show their latest summary.
    pub async fn search(
        &self,
        owner: &Owner,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<(Vec<ContextSummary>, u64), EngineError> {
        let store = &self.deps.store;
        let page = store.search_contexts(owner.as_str(), query, limit).await?;
        let records: Vec<ContextRecord> = page.hits.iter().map(|h| h.context.clone()).collect();
        let found = self
            .summaries(&records)
            .into_iter()
            .zip(&page.hits)
            .map(|(summary, hit)| {
                let (message_id, text) = match &hit.message {
                    Some((id, text)) => (Some(*id), text.as_str()),
                    None => (None, hit.context.title.as_str()),
                };
                let parts = snippet(text, query.words());
                ContextSummary {
                    snippet: Some(Snippet { message_id, parts }),
                    ..summary
                }
            })
            .collect();
        Ok((found, page.total))
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
}
