//! Merging the server's state with the messages this client sent but the server has not
//! shown yet.
//!
//! Architecture Invariant: server messages are the truth. Local messages only fill the gap
//! between "sent" and "seen in a poll"; once the server shows a message with the same
//! `client_message_id`, the local copy is gone for good.

use chatsync_protocol::{
    content_text, ChatState, Message, MessageStatus, Role, StateName, Status, Timestamp, ToolCall,
};

use super::outbox::{Queued, MAX_ENTRIES};
use super::view::{ViewMessage, ViewStatus};

/// At most this many other tabs' messages are shown (a tab that would be one more replaces
/// the one heard from longest ago).
pub const MAX_OTHER_TABS: usize = 16;

/// The last state the server reported for the current context.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    version: u64,
    status: Status,
    state: StateName,
    error: Option<String>,
    messages: Vec<Message>,
    /// Sent while a turn ran, waiting for their own; always whole, also in a delta.
    queued: Vec<Message>,
    pending_tool_calls: Vec<ToolCall>,
}

/// A message sent from this client and not yet in the server's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Local {
    client_message_id: String,
    text: String,
    created_at: Timestamp,
    /// Why the send failed; `None` while it is in flight.
    failure: Option<String>,
}

/// What applying a server answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    Unchanged,
    /// Older than what is shown already, or about another context: dropped.
    Ignored,
    /// A delta that does not line up with what this client holds; a full state is needed.
    OutOfStep,
}

/// One context's messages as this client knows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chat {
    context_id: Option<String>,
    server: Option<Snapshot>,
    local: Vec<Local>,
    /// What the other tabs on this chat sent that the server has not shown yet, per tab,
    /// as they last told: shown only, each tab sends and settles its own.
    others: Vec<(String, Vec<Local>)>,
}

impl Chat {
    pub fn new(context_id: Option<String>) -> Self {
        Chat {
            context_id,
            server: None,
            local: Vec::new(),
            others: Vec::new(),
        }
    }

    pub fn context_id(&self) -> Option<&str> {
        self.context_id.as_deref()
    }

    /// The version of the last applied state; 0 before any.
    pub fn version(&self) -> u64 {
        self.server.as_ref().map_or(0, |s| s.version)
    }

    pub fn has_server_state(&self) -> bool {
        self.server.is_some()
    }

    pub fn status(&self) -> Option<Status> {
        self.server.as_ref().map(|s| s.status)
    }

    pub fn state(&self) -> Option<StateName> {
        self.server.as_ref().map(|s| s.state)
    }

    pub fn error(&self) -> Option<String> {
        self.server.as_ref().and_then(|s| s.error.clone())
    }

    pub fn pending_tool_calls(&self) -> Vec<ToolCall> {
        self.server
            .as_ref()
            .map(|s| s.pending_tool_calls.clone())
            .unwrap_or_default()
    }

    /// Applies a full state or a delta from the server.
    pub fn apply(&mut self, state: ChatState) -> Applied {
        let same_context = self
            .context_id
            .as_deref()
            .is_some_and(|id| id.eq_ignore_ascii_case(&state.context_id.to_string()));
        if !same_context {
            return Applied::Ignored;
        }
        let current = self.server.as_ref();
        if current.is_some_and(|s| state.version < s.version) {
            return Applied::Ignored;
        }
        let message_count = state.message_count;
        let messages = if state.delta {
            let Some(current) = current else {
                return Applied::OutOfStep;
            };
            merge(&current.messages, state.messages)
        } else {
            state.messages
        };
        let next = Snapshot {
            version: state.version,
            status: state.status,
            state: state.state,
            error: state.error,
            messages,
            queued: state.queued,
            pending_tool_calls: state.pending_tool_calls,
        };
        // Usize always fits a u64 on the targets this crate builds for.
        let counted = next.messages.len() as u64 == message_count;
        let changed = self.server.as_ref() != Some(&next);
        self.server = Some(next);
        self.forget_seen_locals();
        match (counted, changed) {
            (false, _) => Applied::OutOfStep,
            (true, true) => Applied::Changed,
            (true, false) => Applied::Unchanged,
        }
    }

    /// Adds a message the user just sent, shown as pending until the server has it.
    pub fn add_local(&mut self, client_message_id: String, text: String, created_at: Timestamp) {
        self.local.push(Local {
            client_message_id,
            text,
            created_at,
            failure: None,
        });
    }

    /// Marks a sent message failed; false when it is not (or no longer) a local message,
    /// for instance because the server showed it in the meantime.
    pub fn fail_local(&mut self, client_message_id: &str, reason: String) -> bool {
        match self.local_mut(client_message_id) {
            Some(local) => {
                local.failure = Some(reason);
                true
            }
            None => false,
        }
    }

    /// Makes a failed message pending again and gives back its text to re-send. Another
    /// tab's failed message becomes this tab's to send (the server stores it once
    /// whichever tab's send lands).
    pub fn resend_local(&mut self, client_message_id: &str) -> Option<String> {
        if !self.has_local(client_message_id) {
            let theirs = self
                .others
                .iter()
                .flat_map(|(_, locals)| locals)
                .find(|l| l.client_message_id == client_message_id)?
                .clone();
            self.local.push(theirs);
        }
        let local = self
            .local_mut(client_message_id)
            .filter(|l| l.failure.is_some())?;
        local.failure = None;
        Some(local.text.clone())
    }

    /// Drops a failed message, this tab's or another's. Pending ones stay: their send is
    /// still in flight and the server may well accept it.
    pub fn discard_local(&mut self, client_message_id: &str) -> bool {
        let kept = |l: &Local| l.client_message_id != client_message_id || l.failure.is_none();
        let count = |c: &Chat| c.local.len() + c.others.iter().map(|(_, l)| l.len()).sum::<usize>();
        let before = count(self);
        self.local.retain(kept);
        for (_, locals) in &mut self.others {
            locals.retain(kept);
        }
        before != count(self)
    }

    /// This tab's messages the server has not shown yet, as the other tabs are told.
    pub fn shared_locals(&self) -> Vec<Queued> {
        let context_id = self.context_id.clone().unwrap_or_default();
        self.local
            .iter()
            .map(|l| Queued {
                context_id: context_id.clone(),
                client_message_id: l.client_message_id.clone(),
                text: l.text.clone(),
                created_at: copy(&l.created_at),
                failure: l.failure.clone(),
            })
            .collect()
    }

    /// Forgets what the other tabs told (this tab stopped listening; joining again, it
    /// asks them anew).
    pub fn forget_other_tabs(&mut self) {
        self.others.clear();
    }

    /// What `tab` last told of its messages the server has not shown yet; an empty list
    /// (the tab left) forgets the tab. Messages about another chat are ignored. True when
    /// what other tabs sent changed.
    pub fn others_sent(&mut self, tab: &str, sent: Vec<Queued>) -> bool {
        let before = self.others.clone();
        let mine = self.context_id.as_deref().unwrap_or_default();
        let locals: Vec<Local> = sent
            .into_iter()
            .filter(|q| q.context_id == mine)
            .take(MAX_ENTRIES)
            .map(|q| Local {
                client_message_id: q.client_message_id,
                text: q.text,
                created_at: q.created_at,
                failure: q.failure,
            })
            .collect();
        self.others.retain(|(t, _)| t != tab);
        if !locals.is_empty() {
            if self.others.len() >= MAX_OTHER_TABS {
                self.others.remove(0);
            }
            self.others.push((tab.to_owned(), locals));
        }
        self.forget_seen_locals();
        self.others != before
    }

    /// Server messages in server order, then the server's queue in arrival order, then
    /// this tab's local ones in send order, then other tabs' (each message once).
    pub fn messages(&self) -> Vec<ViewMessage> {
        let server = self
            .server
            .iter()
            .flat_map(|s| s.messages.iter().chain(&s.queued))
            .map(from_server);
        let mut shown: Vec<&str> = Vec::new();
        let locals = self
            .local
            .iter()
            .chain(self.others.iter().flat_map(|(_, l)| l))
            .filter(|l| {
                let first = !shown.contains(&l.client_message_id.as_str());
                shown.push(&l.client_message_id);
                first
            });
        let local = locals.map(|l| ViewMessage {
            id: l.client_message_id.clone(),
            client_message_id: Some(l.client_message_id.clone()),
            role: Role::User,
            text: l.text.clone(),
            tool_calls: None,
            tool_call_id: None,
            status: if l.failure.is_some() {
                ViewStatus::Failed
            } else {
                ViewStatus::Pending
            },
            created_at: copy(&l.created_at),
            version: 0,
            error: l.failure.clone(),
            parent_id: None,
            sibling_index: 0,
            sibling_count: 1,
        });
        server.chain(local).collect()
    }

    pub fn has_local(&self, client_message_id: &str) -> bool {
        self.local
            .iter()
            .any(|l| l.client_message_id == client_message_id)
    }

    fn local_mut(&mut self, client_message_id: &str) -> Option<&mut Local> {
        self.local
            .iter_mut()
            .find(|l| l.client_message_id == client_message_id)
    }

    fn forget_seen_locals(&mut self) {
        let Some(server) = &self.server else { return };
        let unseen = |l: &Local| {
            !server
                .messages
                .iter()
                .chain(&server.queued)
                .any(|m| m.client_message_id.as_deref() == Some(l.client_message_id.as_str()))
        };
        self.local.retain(unseen);
        for (_, locals) in &mut self.others {
            locals.retain(unseen);
        }
        self.others.retain(|(_, locals)| !locals.is_empty());
    }
}

/// A `client_message_id` in the form of a random (version 4) UUID, from 16 random bytes.
pub fn new_client_message_id(mut random: [u8; 16]) -> String {
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Changed messages replace their old copy in place; new ones go to the end in the order
/// the server sent them, which is the server's order.
fn merge(current: &[Message], changed: Vec<Message>) -> Vec<Message> {
    let mut merged = current.to_vec();
    for message in changed {
        match merged.iter_mut().find(|m| m.id == message.id) {
            Some(slot) => *slot = message,
            None => merged.push(message),
        }
    }
    merged
}

/// `Timestamp` is `Copy` only when the protocol parses timestamps, so neither a plain copy
/// nor `.clone()` suits both builds.
fn copy(timestamp: &Timestamp) -> Timestamp {
    Timestamp::clone(timestamp)
}

fn from_server(m: &Message) -> ViewMessage {
    ViewMessage {
        id: m.id.to_string(),
        client_message_id: m.client_message_id.clone(),
        role: m.role,
        text: content_text(&m.content),
        tool_calls: m.tool_calls.clone(),
        tool_call_id: m.tool_call_id.clone(),
        status: match m.status {
            MessageStatus::Streaming => ViewStatus::Streaming,
            MessageStatus::Complete => ViewStatus::Complete,
            MessageStatus::Cancelled => ViewStatus::Cancelled,
            MessageStatus::Queued => ViewStatus::Queued,
        },
        created_at: copy(&m.created_at),
        version: m.version,
        error: None,
        parent_id: m.parent_id.as_ref().map(ToString::to_string),
        sibling_index: m.sibling_index,
        sibling_count: m.sibling_count,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use chatsync_protocol::ContentPart;
    use proptest::prelude::*;
    use uuid::Uuid;

    pub const CTX: &str = "6f1c2b8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
    /// A timestamp the way the server writes one: microseconds, UTC.
    pub const SENT_AT: &str = "2024-05-06T07:08:09.123456Z";

    /// A wire timestamp, whichever type `Timestamp` is in this build.
    pub fn stamp(rfc3339: &str) -> Timestamp {
        rfc3339.parse().expect("an RFC 3339 timestamp")
    }

    /// A user message when `cid` is given, else an assistant one.
    pub fn message(n: u128, text: &str, cid: Option<&str>, version: u64) -> Message {
        Message {
            id: Uuid::from_u128(n),
            client_message_id: cid.map(str::to_owned),
            role: if cid.is_some() {
                Role::User
            } else {
                Role::Assistant
            },
            content: vec![ContentPart::text(text)],
            tool_calls: None,
            tool_call_id: None,
            status: MessageStatus::Complete,
            created_at: stamp(SENT_AT),
            version,
            parent_id: None,
            sibling_index: 0,
            sibling_count: 1,
        }
    }

    pub fn full(version: u64, messages: Vec<Message>) -> ChatState {
        let count = messages.len() as u64;
        state(version, messages, false, count)
    }

    pub fn state(version: u64, messages: Vec<Message>, delta: bool, count: u64) -> ChatState {
        ChatState {
            context_id: CTX.parse().expect("uuid"),
            version,
            status: Status::Idle,
            state: StateName::Idle,
            error: None,
            messages,
            message_count: count,
            pending_tool_calls: Vec::new(),
            updated_at: stamp(SENT_AT),
            delta,
            queued: Vec::new(),
        }
    }

    fn chat() -> Chat {
        Chat::new(Some(CTX.to_owned()))
    }

    fn texts(chat: &Chat) -> Vec<(String, ViewStatus)> {
        chat.messages()
            .into_iter()
            .map(|m| (m.text, m.status))
            .collect()
    }

    #[test]
    fn the_server_copy_replaces_the_optimistic_one() {
        let mut c = chat();
        c.add_local("c1".into(), "hi".into(), stamp("2024-05-06T07:08:09.000Z"));
        assert_eq!(texts(&c), [("hi".to_owned(), ViewStatus::Pending)]);

        let applied = c.apply(full(2, vec![message(1, "hi", Some("c1"), 2)]));
        assert_eq!(applied, Applied::Changed);
        let view = c.messages();
        assert_eq!(view.len(), 1, "no duplicate");
        assert_eq!(view[0].id, Uuid::from_u128(1).to_string(), "server id wins");
        assert_eq!(
            serde_json::to_value(&view[0]).expect("json")["createdAt"],
            SENT_AT,
            "timestamps reach JavaScript as the server wrote them"
        );
        assert_eq!(view[0].status, ViewStatus::Complete);
    }

    #[test]
    fn the_view_carries_each_messages_place_in_the_tree() {
        let mut c = chat();
        let edited = Message {
            parent_id: Some(Uuid::from_u128(1)),
            sibling_index: 1,
            sibling_count: 2,
            ..message(3, "edited", Some("c3"), 4)
        };
        c.apply(full(4, vec![message(1, "hi", Some("c1"), 1), edited]));
        c.add_local("c9".into(), "later".into(), Timestamp::default());
        let view = serde_json::to_value(c.messages()).expect("json");
        let places: Vec<_> = view
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| {
                (
                    m["parentId"].clone(),
                    m["siblingIndex"].clone(),
                    m["siblingCount"].clone(),
                )
            })
            .collect();
        let root = serde_json::Value::Null;
        let first = serde_json::json!(Uuid::from_u128(1).to_string());
        assert_eq!(
            places,
            [
                (root.clone(), 0.into(), 1.into()),
                (first, 1.into(), 2.into()),
                (root, 0.into(), 1.into()),
            ]
        );
    }

    #[test]
    fn unseen_optimistic_messages_follow_the_server_ones_in_send_order() {
        let mut c = chat();
        c.add_local("c1".into(), "first".into(), Timestamp::default());
        c.add_local("c2".into(), "second".into(), Timestamp::default());
        c.apply(full(3, vec![message(9, "earlier reply", None, 3)]));
        let order: Vec<_> = texts(&c).into_iter().map(|(t, _)| t).collect();
        assert_eq!(order, ["earlier reply", "first", "second"]);
    }

    fn told(cid: &str, text: &str, failure: Option<&str>) -> Queued {
        Queued {
            context_id: CTX.into(),
            client_message_id: cid.into(),
            text: text.into(),
            created_at: stamp(SENT_AT),
            failure: failure.map(str::to_owned),
        }
    }

    #[test]
    fn other_tabs_unsent_messages_show_once_after_this_tabs_until_the_server_has_them() {
        let mut c = chat();
        c.add_local("mine".into(), "from here".into(), stamp(SENT_AT));
        let theirs = vec![
            told("t1", "from there", None),
            told("t2", "lost there", Some("network")),
            told("mine", "from here", Some("queued")),
        ];
        assert!(c.others_sent("tab-b", theirs.clone()));
        assert!(
            !c.others_sent("tab-b", theirs),
            "told again: nothing changes"
        );
        assert_eq!(
            texts(&c),
            [
                ("from here".to_owned(), ViewStatus::Pending),
                ("from there".to_owned(), ViewStatus::Pending),
                ("lost there".to_owned(), ViewStatus::Failed),
            ],
            "this tab's own copy wins, each message once"
        );
        assert_eq!(c.shared_locals().len(), 1, "a tab tells only its own");

        c.apply(full(2, vec![message(1, "from there", Some("t1"), 2)]));
        assert_eq!(texts(&c).len(), 3, "the server's copy replaces theirs too");
        assert_eq!(
            texts(&c)[0],
            ("from there".to_owned(), ViewStatus::Complete)
        );

        let other_chat = Queued {
            context_id: "another".into(),
            ..told("t3", "elsewhere", None)
        };
        assert!(c.others_sent("tab-b", vec![other_chat]), "t2 is gone");
        assert_eq!(texts(&c).len(), 2, "another chat's message is not shown");
        c.others_sent("tab-c", vec![told("t4", "c", None)]);
        c.forget_other_tabs();
        assert_eq!(
            texts(&c).len(),
            2,
            "forgotten when this tab stops listening"
        );
    }

    #[test]
    fn another_tabs_failed_message_can_be_sent_or_discarded_here() {
        let mut c = chat();
        c.others_sent(
            "tab-b",
            vec![
                told("t1", "one", Some("network")),
                told("t2", "two", Some("network")),
            ],
        );
        assert_eq!(c.resend_local("t1").as_deref(), Some("one"));
        assert_eq!(
            c.shared_locals()[0].client_message_id,
            "t1",
            "this tab sends it now"
        );
        assert_eq!(texts(&c)[0], ("one".to_owned(), ViewStatus::Pending));
        assert!(c.discard_local("t2"));
        assert_eq!(texts(&c).len(), 1);
        assert_eq!(c.resend_local("unknown"), None);
    }

    #[test]
    fn at_most_so_many_other_tabs_are_heard() {
        let mut c = chat();
        for tab in 0..MAX_OTHER_TABS + 4 {
            let many = (0..MAX_ENTRIES + 5)
                .map(|i| told(&format!("{tab}-{i}"), "x", None))
                .collect();
            c.others_sent(&tab.to_string(), many);
        }
        assert_eq!(texts(&c).len(), MAX_OTHER_TABS * MAX_ENTRIES);
        assert!(
            !c.messages().iter().any(|m| m.id.starts_with("0-")),
            "the longest-heard tab went first"
        );
    }

    #[test]
    fn an_older_answer_is_ignored() {
        let mut c = chat();
        c.apply(full(5, vec![message(1, "new", None, 5)]));
        assert_eq!(
            c.apply(full(4, vec![message(1, "old", None, 4)])),
            Applied::Ignored
        );
        assert_eq!(texts(&c)[0].0, "new");
        assert_eq!(c.version(), 5);
    }

    #[test]
    fn an_answer_about_another_context_is_ignored() {
        let mut c = Chat::new(Some("00000000-0000-0000-0000-000000000001".into()));
        assert_eq!(c.apply(full(1, Vec::new())), Applied::Ignored);
        assert!(!c.has_server_state());
    }

    #[test]
    fn a_delta_updates_in_place_and_appends_new_messages() {
        let mut c = chat();
        c.apply(full(
            2,
            vec![message(1, "q", Some("c1"), 1), message(2, "par", None, 2)],
        ));
        let delta = state(
            4,
            vec![
                message(2, "partial done", None, 4),
                message(3, "next", None, 4),
            ],
            true,
            3,
        );
        assert_eq!(c.apply(delta), Applied::Changed);
        let order: Vec<_> = texts(&c).into_iter().map(|(t, _)| t).collect();
        assert_eq!(order, ["q", "partial done", "next"]);
    }

    #[test]
    fn a_delta_that_does_not_add_up_asks_for_a_full_state() {
        let mut c = chat();
        assert_eq!(c.apply(state(1, Vec::new(), true, 0)), Applied::OutOfStep);
        c.apply(full(1, vec![message(1, "a", None, 1)]));
        // The server says three messages exist but this client can only account for two.
        let gap = state(3, vec![message(3, "c", None, 3)], true, 3);
        assert_eq!(c.apply(gap), Applied::OutOfStep);
        // The full state at the same version then repairs the list.
        let repaired = full(
            3,
            vec![
                message(1, "a", None, 1),
                message(2, "b", None, 2),
                message(3, "c", None, 3),
            ],
        );
        assert_eq!(c.apply(repaired), Applied::Changed);
        assert_eq!(c.messages().len(), 3);
    }

    #[test]
    fn the_same_state_twice_is_unchanged() {
        let mut c = chat();
        let s = full(2, vec![message(1, "a", None, 2)]);
        assert_eq!(c.apply(s.clone()), Applied::Changed);
        assert_eq!(c.apply(s), Applied::Unchanged);
    }

    #[test]
    fn failed_messages_can_be_retried_or_discarded_but_pending_ones_stay() {
        let mut c = chat();
        c.add_local("c1".into(), "hello".into(), Timestamp::default());
        assert!(!c.discard_local("c1"), "a pending send is not discarded");
        assert_eq!(
            c.resend_local("c1"),
            None,
            "only failed messages are re-sent"
        );

        assert!(c.fail_local("c1", "offline".into()));
        let failed = &c.messages()[0];
        assert_eq!(failed.status, ViewStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("offline"));

        assert_eq!(c.resend_local("c1").as_deref(), Some("hello"));
        assert_eq!(c.messages()[0].status, ViewStatus::Pending);

        c.fail_local("c1", "offline".into());
        assert!(c.discard_local("c1"));
        assert!(c.messages().is_empty());
    }

    #[test]
    fn a_failed_message_the_server_did_store_turns_into_the_server_copy() {
        let mut c = chat();
        c.add_local("c1".into(), "hello".into(), Timestamp::default());
        c.fail_local("c1", "timeout".into());
        c.apply(full(1, vec![message(1, "hello", Some("c1"), 1)]));
        let view = c.messages();
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].status, ViewStatus::Complete);
        assert!(!c.fail_local("c1", "late".into()));
    }

    #[test]
    fn client_message_ids_are_version_4_uuids() {
        let id = new_client_message_id([0xff; 16]);
        let parsed = Uuid::parse_str(&id).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(id, new_client_message_id([0; 16]));
    }

    proptest! {
        /// However answers arrive (reordered, repeated), the view shows each message once,
        /// in server order, and never goes back to an older version.
        #[test]
        fn views_never_duplicate_or_regress(
            order in Just((1..=6u64).collect::<Vec<_>>()).prop_shuffle(),
            repeat in proptest::collection::vec(1..=6u64, 0..6),
        ) {
            let mut c = chat();
            for n in 1..=6u128 {
                c.add_local(format!("c{n}"), format!("m{n}"), Timestamp::default());
            }
            // Version v of the server holds the first v messages.
            let snapshot = |v: u64| full(v, (1..=u128::from(v))
                .map(|n| message(n, &format!("m{n}"), Some(&format!("c{n}")), v))
                .collect());
            let mut highest = 0;
            for v in order.iter().chain(&repeat).copied() {
                c.apply(snapshot(v));
                highest = highest.max(v);
                prop_assert_eq!(c.version(), highest);
                let view: Vec<_> = c.messages().into_iter().map(|m| m.text).collect();
                let expected: Vec<_> = (1..=6).map(|n| format!("m{n}")).collect();
                prop_assert_eq!(view, expected);
            }
        }
    }

    #[test]
    fn queued_messages_show_after_the_history_and_replace_their_local_copy() {
        let mut chat = Chat::new(Some(CTX.to_owned()));
        chat.apply(full(1, vec![message(1, "running", Some("c0"), 1)]));
        chat.add_local("c1".into(), "later".into(), stamp(SENT_AT));
        chat.add_local("c2".into(), "not yet sent".into(), stamp(SENT_AT));
        let mut busy = full(2, vec![message(1, "running", Some("c0"), 1)]);
        busy.queued = vec![Message {
            status: MessageStatus::Queued,
            ..message(2, "later", Some("c1"), 2)
        }];
        assert_eq!(chat.apply(busy), Applied::Changed);
        let shown: Vec<_> = chat
            .messages()
            .into_iter()
            .map(|m| (m.text, m.status))
            .collect();
        assert_eq!(
            shown,
            [
                ("running".to_owned(), ViewStatus::Complete),
                ("later".to_owned(), ViewStatus::Queued),
                ("not yet sent".to_owned(), ViewStatus::Pending),
            ]
        );
        // Its turn starts: it moves into the history and leaves the queue.
        let started = full(
            3,
            vec![
                message(1, "running", Some("c0"), 1),
                message(2, "later", Some("c1"), 3),
            ],
        );
        chat.apply(started);
        assert_eq!(chat.messages().len(), 3);
        assert_eq!(chat.messages()[1].status, ViewStatus::Complete);
    }
}
