//! Persistence behind one trait, so the engine never knows which database it talks to.
//!
//! Architecture Invariant: a save writes the context row and the changed messages in one
//! transaction, and only if the stored version is the one the writer last saw. Its cost
//! depends on what changed, never on the length of the history.

#[cfg(test)]
pub(crate) mod conformance;
mod coordination;
mod dialect;
mod group;
mod indexer;
mod postgres;
mod responses;
mod save;
mod sql;

pub use coordination::{Coordination, SingleProcess};
pub use responses::{ResponseRow, ResponseStore};
pub use sql::SqlStore;

use crate::domain::{SearchQuery, TurnOptions};
use crate::fsm::State;
use async_trait::async_trait;
use chatsync_protocol::{ContextConfig, Message};
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The context row: everything about a chat except its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRecord {
    pub id: Uuid,
    pub title: String,
    pub config: ContextConfig,
    pub state: State,
    pub version: u64,
    pub message_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last message of the active path; `None`: the newest message (a chat that
    /// never branched, as stored before branches existed).
    pub active_leaf: Option<Uuid>,
    /// The user who created it; only they see it.
    pub owner: String,
    /// The highest version a writer may have shown before storing it: above `version`
    /// while a turn runs (or after a crash cut one short), else at most `version`.
    pub version_ceiling: u64,
    /// What the running (or resting) turn was given besides its message.
    pub turn: TurnOptions,
}

/// A message as stored: its place in the context (`seq`, the insertion order over the
/// whole tree) and the idempotency key it came with.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub message: Arc<Message>,
    pub seq: u64,
    pub idempotency_key: Option<String>,
}

/// A user message waiting for its turn: the text as sent, kept apart from the history.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRecord {
    /// Always a user message with status `queued`.
    pub message: Arc<Message>,
    pub idempotency_key: Option<String>,
    /// Sent with `if_busy: "interrupt"`: it runs before the others.
    pub ahead: bool,
    /// What its turn is given besides it.
    pub turn: TurnOptions,
}

impl QueuedRecord {
    /// Whether an earlier send with this client id or idempotency key queued this message.
    pub fn sent_as(&self, client_message_id: Option<&str>, key: Option<&str>) -> bool {
        let same_client = client_message_id.is_some()
            && self.message.client_message_id.as_deref() == client_message_id;
        let same_key = key.is_some() && self.idempotency_key.as_deref() == key;
        same_client || same_key
    }
}

/// What one save writes.
#[derive(Debug, Clone)]
pub struct SaveBatch {
    pub context: ContextRecord,
    /// Only the messages that changed since the last save.
    pub messages: Vec<MessageRecord>,
    /// The version the writer last saved; the save fails if the store holds another.
    pub expected_version: u64,
    /// Queued messages whose turn this save starts: they leave the queue in the same
    /// transaction that adds them to the history, so none runs twice or is lost.
    pub dequeued: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadedContext {
    pub record: ContextRecord,
    pub messages: Vec<MessageRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContextPage {
    pub contexts: Vec<ContextRecord>,
    pub total: u64,
}

/// The contexts a search found, best first, and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub total: u64,
}

/// A context a search found, with where it matched best among its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub context: ContextRecord,
    /// The id and text of the message that matched best; none when only the title did.
    pub message: Option<(Uuid, String)>,
}

/// The order of an owner's list of contexts, newest first either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// By `created_at`.
    #[default]
    Created,
    /// By `updated_at`: the latest activity first.
    Updated,
}

impl ListOrder {
    /// The column the list is ordered by.
    pub(crate) fn column(self) -> &'static str {
        match self {
            ListOrder::Created => "created_at",
            ListOrder::Updated => "updated_at",
        }
    }
}

/// Position in a newest-first list of contexts: the last context of the previous page
/// (its time in the list's order, then its id, so equal times page without gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub order: ListOrder,
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

/// What starts the token of a cursor in `updated` order (creation order has none, as
/// before there were orders).
const UPDATED_PREFIX: &str = "u";

impl Cursor {
    /// The cursor after `record` in `order`.
    pub fn after(order: ListOrder, record: &ContextRecord) -> Cursor {
        let at = match order {
            ListOrder::Created => record.created_at,
            ListOrder::Updated => record.updated_at,
        };
        Cursor {
            order,
            at,
            id: record.id,
        }
    }

    /// An opaque, URL-safe token.
    pub fn encode(&self) -> String {
        let prefix = match self.order {
            ListOrder::Created => "",
            ListOrder::Updated => UPDATED_PREFIX,
        };
        format!(
            "{prefix}{}_{}",
            self.at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (order, token) = match token.strip_prefix(UPDATED_PREFIX) {
            Some(rest) => (ListOrder::Updated, rest),
            None => (ListOrder::Created, token),
        };
        let (micros, id) = token.split_once('_')?;
        let at = Utc.timestamp_micros(micros.parse().ok()?).single()?;
        Some(Cursor {
            order,
            at,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now; the request may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The context was deleted while it was being written.
    #[error("context {0} no longer exists")]
    Gone(Uuid),
    /// Someone else wrote the context since this writer last saved it.
    #[error("context {id} was changed elsewhere (expected version {expected})")]
    Conflict { id: Uuid, expected: u64 },
    /// A stored row does not decode; the message says which and why.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a context with no messages, unless its owner has `max_per_owner` already
    /// (`false`); the count and the insert are one step, so concurrent creates cannot pass it.
    async fn insert_context(
        &self,
        record: &ContextRecord,
        max_per_owner: Option<u64>,
    ) -> Result<bool, StoreError>;
    async fn load_context(&self, id: Uuid) -> Result<Option<LoadedContext>, StoreError>;
    /// The context row and only the messages changed after version `since`: what a reader
    /// needs to catch up with another instance's save.
    async fn load_changes(
        &self,
        id: Uuid,
        since: u64,
    ) -> Result<Option<LoadedContext>, StoreError> {
        let _ = since;
        self.load_context(id).await
    }
    /// An owner's contexts, newest first in `order`; `after` is the last context of the
    /// previous page (in the same order).
    async fn list_contexts(
        &self,
        owner: &str,
        limit: u32,
        order: ListOrder,
        after: Option<Cursor>,
    ) -> Result<ContextPage, StoreError>;
    /// An owner's contexts whose title or message text matches, best match first, then the
    /// most recently updated; at most `limit`. `total` counts every matching context. The
    /// index is read inside the owner's entries only: other users' matches add no work.
    async fn search_contexts(
        &self,
        owner: &str,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<SearchPage, StoreError>;
    /// Removes an owner's context and its messages; `false` when they have none by that id.
    async fn delete_context(&self, owner: &str, id: Uuid) -> Result<bool, StoreError>;
    /// Writes a batch in one transaction (see the module invariant).
    async fn save(&self, batch: &SaveBatch) -> Result<(), StoreError>;
    /// Contexts with work nobody runs: saved in a state that is not resting (their turn
    /// was interrupted), or idle with queued messages. On a shared store, only those whose
    /// lease is free or expired.
    async fn unfinished_contexts(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How the processes that share this store coordinate: leases and change notices.
    /// By default one process alone (`SingleProcess`); the lease and change methods below
    /// ask it.
    fn coordination(&self) -> &dyn Coordination {
        &SingleProcess
    }
    /// Whether several server processes share this store; then a turn runs only under a
    /// lease, and instances learn of each other's changes through `changes`.
    fn is_shared(&self) -> bool {
        self.coordination().is_shared()
    }
    /// Takes or renews this process's lease on a context; `false` while another live
    /// process holds it. A store that is not shared always grants it.
    async fn acquire_lease(&self, id: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        self.coordination().take_lease(id, ttl).await
    }
    async fn release_lease(&self, id: Uuid) -> Result<(), StoreError> {
        self.coordination().release_lease(id).await
    }
    /// The stored version of a context (`None`: it does not exist).
    async fn stored_version(&self, id: Uuid) -> Result<Option<u64>, StoreError>;
    /// Raises a context's `version_ceiling` to `ceiling` (never lowers it): a writer does
    /// before it shows a version above the ceiling it stored last.
    async fn reserve_versions(&self, id: Uuid, ceiling: u64) -> Result<(), StoreError>;
    /// Changes made by any process, for a shared store.
    fn changes(&self) -> Option<broadcast::Receiver<Change>> {
        self.coordination().subscribe()
    }
    /// Stores a queued message unless `max` are queued already (`false`: the queue is full).
    /// It touches no context row, so any instance may queue while another runs the turn.
    async fn enqueue(
        &self,
        context_id: Uuid,
        queued: &QueuedRecord,
        max: usize,
    ) -> Result<bool, StoreError>;
    /// Drops a queued message before its turn; `false` when it is not queued.
    async fn drop_queued(&self, context_id: Uuid, message_id: Uuid) -> Result<bool, StoreError>;
    /// A context's queued messages in the order they run: interrupting ones first, then
    /// by arrival.
    async fn queued_messages(&self, context_id: Uuid) -> Result<Vec<QueuedRecord>, StoreError>;
    /// Asks whichever process runs a context's turn to cancel it.
    async fn request_cancel(&self, id: Uuid) -> Result<(), StoreError> {
        self.coordination()
            .notify(Change::CancelRequested(id))
            .await
    }
    /// What the OpenAI-compatible API stores; `None` for stores without it (test doubles).
    fn responses(&self) -> Option<&dyn ResponseStore> {
        None
    }
}

/// What one process tells the others about a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Updated {
        id: Uuid,
        version: u64,
    },
    Deleted(Uuid),
    CancelRequested(Uuid),
    /// A message was queued for the context (by any instance): its runner picks it up.
    Queued(Uuid),
    /// Notifications may have been missed (the listener reconnected): recheck everything.
    Resync,
}

impl Change {
    pub fn encode(&self) -> String {
        match self {
            Change::Updated { id, version } => format!("updated:{id}:{version}"),
            Change::Deleted(id) => format!("deleted:{id}"),
            Change::CancelRequested(id) => format!("cancel:{id}"),
            Change::Queued(id) => format!("queued:{id}"),
            Change::Resync => "resync".into(),
        }
    }

    pub fn decode(payload: &str) -> Option<Change> {
        let mut parts = payload.split(':');
        let kind = parts.next()?;
        let id = parts.next().map(Uuid::try_parse);
        let change = match (kind, id) {
            ("updated", Some(Ok(id))) => Change::Updated {
                id,
                version: parts.next()?.parse().ok()?,
            },
            ("deleted", Some(Ok(id))) => Change::Deleted(id),
            ("cancel", Some(Ok(id))) => Change::CancelRequested(id),
            ("queued", Some(Ok(id))) => Change::Queued(id),
            ("resync", None) => Change::Resync,
            _ => return None,
        };
        parts.next().is_none().then_some(change)
    }
}

/// The current time at the precision the stores keep (microseconds), so a timestamp
/// reads back exactly as it was written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Timestamps are stored as fixed-width RFC 3339 text, so text order is time order.
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

/// Opens the store a database URL names.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cursor_round_trips(
            micros in 0i64..4_000_000_000_000_000,
            id in any::<u128>(),
            updated in any::<bool>(),
        ) {
            let at = Utc.timestamp_micros(micros).single().expect("in range");
            let order = if updated { ListOrder::Updated } else { ListOrder::Created };
            let cursor = Cursor { order, at, id: Uuid::from_u128(id) };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }

        #[test]
        fn cursor_decode_never_panics(token in ".*") {
            let _ = Cursor::decode(&token);
        }
    }

    #[test]
    fn changes_round_trip_and_garbage_is_refused() {
        let id = Uuid::new_v4();
        for c in [
            Change::Updated { id, version: 42 },
            Change::Deleted(id),
            Change::CancelRequested(id),
            Change::Resync,
        ] {
            assert_eq!(Change::decode(&c.encode()), Some(c));
        }
        for bad in [
            "",
            "updated",
            "updated:x:1",
            &format!("updated:{id}"),
            &format!("deleted:{id}:9"),
        ] {
            assert_eq!(Change::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_cursors_are_rejected() {
        for token in [
            "",
            "_",
            "abc_def",
            "12",
            "12_nothex",
            "x_00000000000000000000000000000000",
            "u",
            "uu12_00000000000000000000000000000000",
        ] {
            assert_eq!(Cursor::decode(token), None, "{token}");
        }
    }
}
