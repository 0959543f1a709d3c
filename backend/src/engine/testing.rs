//! Test doubles for the engine: a store that counts and can fail.

use super::context::LiveContext;
use crate::domain::SearchQuery;
use crate::fsm::State;
use crate::store::{
    ContextPage, ContextRecord, Cursor, LoadedContext, QueuedRecord, SaveBatch, Store, StoreError,
};
use async_trait::async_trait;
use chatsync_protocol::{ContextConfig, StateName};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Default)]
pub struct CountingStore {
    saved: Mutex<Vec<SaveBatch>>,
    fail_next: AtomicBool,
}

impl CountingStore {
    pub fn saves(&self) -> usize {
        self.saved.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn last(&self) -> Option<SaveBatch> {
        self.saved.lock().ok()?.last().cloned()
    }

    pub fn fail_next(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for CountingStore {
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
    ) -> Result<ContextPage, StoreError> {
        Ok(ContextPage {
            contexts: vec![],
            total: 0,
        })
    }
    async fn delete_context(&self, _: &str, _id: Uuid) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn save(&self, batch: &SaveBatch) -> Result<(), StoreError> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("disk unplugged".into()));
        }
        self.saved
            .lock()
            .map_err(|_| StoreError::Database("poisoned".into()))?
            .push(batch.clone());
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
        },
        messages: vec![],
    })
}
