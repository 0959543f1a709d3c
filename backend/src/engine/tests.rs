//! Engine tests: real turns with the scripted model on a temporary SQLite file.

use super::testing::{self, Fault, FaultStore, Op};
use super::*;
use crate::domain::{ClientTool, MessageContent, NewContext, NewMessage, Owner, TurnOptions};
use crate::fsm::State;
use crate::llm::ScriptedModel;
use crate::metrics::Metrics;
use crate::store::{
    Change, ContextRecord, LoadedContext, MessageRecord, SaveBatch, SqlStore, Store,
};
use crate::tools::ToolRegistry;
use chatsync_protocol::{content_text, Message, MessageStatus, StateName, Status, ToolCallStatus};
use chatsync_protocol::{ContentPart, Role, SwitchBranchRequest};
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A switch to the newest leaf under `message_id`, or under its sibling at `index`.
fn to(message_id: Uuid, index: Option<u32>) -> SwitchBranchRequest {
    SwitchBranchRequest {
        message_id,
        sibling_index: index,
    }
}

fn msg(text: &str) -> NewMessage {
    NewMessage::text(text).expect("content")
}

fn key(k: &str) -> crate::domain::ClientKey {
    crate::domain::ClientKey::parse("key", k.into()).expect("key")
}

fn owner(id: &str) -> Owner {
    Owner::parse(id).expect("owner")
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<FaultStore>,
    engine: Engine,
}

async fn harness(settings: EngineSettings) -> Harness {
    crate::telemetry::init_for_tests();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let store = Arc::new(FaultStore::over(
        SqlStore::connect(&url).await.expect("store"),
    ));
    let engine = engine_on(store.clone(), settings);
    Harness {
        _dir: dir,
        store,
        engine,
    }
}

fn engine_on(store: Arc<FaultStore>, settings: EngineSettings) -> Engine {
    Engine::new(Deps {
        store,
        model: Arc::new(ScriptedModel::new(Duration::ZERO)),
        tools: Arc::new(ToolRegistry::builtin(Duration::from_secs(5))),
        metrics: Arc::new(Metrics::default()),
        settings,
    })
}

fn fast() -> EngineSettings {
    EngineSettings {
        retry_base: Duration::from_millis(5),
        ..EngineSettings::default()
    }
}

impl Harness {
    async fn new_context(&self) -> Uuid {
        let s = self
            .engine
            .create_context(&Owner::local(), NewContext::default())
            .await
            .expect("create");
        s.record.id
    }

    /// A new context with a long turn running (the scripted model's `/slow`).
    async fn busy(&self) -> Uuid {
        self.started("/slow 100").await
    }

    /// A new context whose turn for `text` runs (sent without waiting for the turn).
    async fn started(&self, text: &str) -> Uuid {
        let id = self.new_context().await;
        let started = self
            .engine
            .send_message(id, msg(text), Duration::ZERO)
            .await
            .expect("send");
        assert!(!started.settled);
        id
    }

    async fn send(&self, id: Uuid, text: &str) -> TurnOutcome {
        self.engine
            .send_message(id, msg(text), WAIT)
            .await
            .expect("send")
    }

    async fn stored(&self, id: Uuid) -> LoadedContext {
        self.store
            .load_context(id)
            .await
            .expect("load")
            .expect("stored")
    }
}

fn texts(messages: &MessageLog) -> Vec<(Role, String)> {
    messages
        .iter()
        .map(|m| (m.role, content_text(&m.content)))
        .collect()
}

#[tokio::test]
async fn a_turn_is_durable_and_matches_memory() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let out = h.send(id, "hello").await;
    assert!(out.settled);
    assert_eq!(out.snapshot.status(), Status::Idle);
    let stored = h.stored(id).await;
    assert_eq!(stored.record.version, out.snapshot.version());
    let stored_msgs: Vec<_> = stored.messages.iter().map(|m| m.message.clone()).collect();
    assert_eq!(
        stored_msgs,
        out.snapshot.messages().to_vec(),
        "resting state is durable"
    );
    assert!(content_text(&stored_msgs[1].content).contains("hello"));
}

/// Seed 11.3: transitions nobody waits in are written with the next one, so a short turn
/// costs two commits: the acknowledged user message and the resting state.
#[tokio::test]
async fn a_short_turn_costs_two_commits() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.send(id, "warm up").await;
    let before = Metrics::get(&h.engine.metrics().saves);
    let out = h.send(id, "hello").await;
    assert_eq!(out.snapshot.status(), Status::Idle);
    assert_eq!(Metrics::get(&h.engine.metrics().saves) - before, 2);
    assert_eq!(h.stored(id).await.record.version, out.snapshot.version());
}

#[tokio::test]
async fn concurrent_sends_queue_and_every_turn_stays_whole() {
    let h = Arc::new(harness(fast()).await);
    let id = h.new_context().await;
    let sends = (0..20).map(|n| {
        let h = h.clone();
        tokio::spawn(async move { h.send(id, &format!("message {n:02}")).await })
    });
    for result in futures::future::join_all(sends).await {
        assert!(result.expect("task").settled);
    }
    let snapshot = h.engine.snapshot(id).await.expect("snapshot");
    let all = texts(&snapshot.messages());
    assert_eq!(all.len(), 40);
    let mut seen = std::collections::BTreeSet::new();
    for pair in all.chunks(2) {
        let (Role::User, asked) = &pair[0] else {
            panic!("expected a user message first: {pair:?}");
        };
        assert_eq!(pair[1].0, Role::Assistant);
        assert!(pair[1].1.contains(asked.as_str()), "{pair:?}");
        assert!(seen.insert(asked.clone()), "duplicate {asked}");
    }
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn repeated_client_ids_and_keys_add_nothing() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    for _ in 0..2 {
        h.engine
            .send_message(
                id,
                NewMessage {
                    client_message_id: Some(key("c-1")),
                    ..msg("once")
                },
                WAIT,
            )
            .await
            .expect("send");
        h.engine
            .send_message(
                id,
                NewMessage {
                    idempotency_key: Some(key("k-1")),
                    ..msg("twice")
                },
                WAIT,
            )
            .await
            .expect("send");
    }
    let snapshot = h.engine.snapshot(id).await.expect("snapshot");
    let users: Vec<_> = texts(&snapshot.messages())
        .into_iter()
        .filter(|(r, _)| *r == Role::User)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(users, ["once", "twice"]);
}

#[tokio::test]
async fn tool_calls_wait_for_approval_then_run() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let out = h
        .send(id, r#"/tool calculator {"expression": "6*7"}"#)
        .await;
    assert_eq!(out.snapshot.status(), Status::AwaitingApproval);
    let call = out.snapshot.pending_tool_calls[0].clone();
    let bad = h
        .engine
        .approve_tools(id, vec!["call_nope".into()], WAIT)
        .await;
    assert!(matches!(
        bad,
        Err(EngineError::Action(ActionError::UnknownToolCalls(_)))
    ));
    let out = h
        .engine
        .approve_tools(id, vec![call.id.clone()], WAIT)
        .await
        .expect("approve");
    assert_eq!(out.snapshot.status(), Status::Idle);
    let last = out.snapshot.messages().last().cloned().expect("reply");
    assert!(content_text(&last.content).contains("42"));
    let again = h.engine.approve_tools(id, vec![call.id], WAIT).await;
    assert!(matches!(
        again,
        Err(EngineError::Action(ActionError::NoPendingApprovals))
    ));
}

#[tokio::test]
async fn denying_every_call_answers_without_running_tools() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.send(id, "/tool current_time {}").await;
    let out = h
        .engine
        .approve_tools(id, vec![], WAIT)
        .await
        .expect("deny");
    let call_msg = &out.snapshot.messages()[1];
    let status = call_msg.tool_calls.as_ref().map(|c| c[0].status);
    assert_eq!(status, Some(ToolCallStatus::Denied));
    let last = out.snapshot.messages().last().cloned().expect("reply");
    assert!(content_text(&last.content).contains("denied"));
}

#[tokio::test]
async fn cancel_keeps_the_partial_reply_marked_cancelled() {
    let h = harness(fast()).await;
    let id = h.started("/slow 50").await;
    let handle = h.engine.handle(id).await.expect("handle");
    let mut rx = handle.snapshot.clone();
    rx.wait_for(|s| {
        s.messages()
            .get(1)
            .is_some_and(|m| content_text(&m.content).contains("chunk 1"))
    })
    .await
    .expect("streaming");
    let out = h.engine.cancel(id).await.expect("cancel");
    assert_eq!(out.snapshot.record.state, State::Idle);
    let reply = &out.snapshot.messages()[1];
    assert_eq!(reply.status, MessageStatus::Cancelled);
    assert!(!content_text(&reply.content).contains("chunk 50"));
    assert_eq!(
        h.stored(id).await.messages[1].message.status,
        MessageStatus::Cancelled
    );
    assert!(matches!(
        h.engine.cancel(id).await,
        Err(EngineError::Action(ActionError::NothingToCancel))
    ));
}

#[tokio::test]
async fn transient_failures_retry_and_fatal_ones_fail_until_retried() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let out = h.send(id, "/fail transient").await;
    assert_eq!(out.snapshot.status(), Status::Idle);
    let last = out.snapshot.messages().last().cloned().expect("reply");
    assert!(content_text(&last.content).contains("Recovered"));

    let out = h.send(id, "/fail fatal").await;
    assert_eq!(out.snapshot.record.state.name(), StateName::Failed);
    assert_eq!(
        out.snapshot.record.state.error(),
        Some("scripted fatal failure")
    );
    let out = h.engine.retry(id, WAIT).await.expect("retry");
    assert_eq!(out.snapshot.record.state.name(), StateName::Failed);
    let out = h.send(id, "hello again").await;
    assert_eq!(out.snapshot.status(), Status::Idle);
}

#[tokio::test]
async fn a_failed_save_fails_the_action_and_the_context_then_recovers() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.store.fail(Op::Save, Fault::Always);
    let err = h
        .engine
        .send_message(id, msg("lost?"), WAIT)
        .await
        .expect_err("save fails");
    assert!(
        matches!(err, EngineError::Action(ActionError::SaveFailed(ref e)) if e.contains("disk I/O error")),
        "{err:?}"
    );
    let snapshot = h.engine.snapshot(id).await.expect("snapshot");
    assert_eq!(snapshot.record.state.name(), StateName::Failed);
    assert_eq!(h.stored(id).await.messages.len(), 0, "nothing acknowledged");

    h.store.heal(Op::Save);
    let out = h.engine.retry(id, WAIT).await.expect("retry");
    assert_eq!(out.snapshot.status(), Status::Idle);
    let stored = h.stored(id).await;
    assert_eq!(stored.messages.len(), 2, "the message is kept and answered");
}

/// Every streamed chunk is due for a flush and shown at once.
fn flush_every_chunk() -> EngineSettings {
    EngineSettings {
        stream_flush: Duration::ZERO,
        stream_publish: Duration::ZERO,
        ..fast()
    }
}

/// A streaming flush is written behind the stream: the model's chunks go on while it is
/// held, a flush due meanwhile waits for it (one save at a time), and the reply's final
/// save comes only after it.
#[tokio::test]
async fn the_stream_goes_on_while_a_flush_save_is_held() {
    let h = harness(flush_every_chunk()).await;
    let gate = Arc::new(testing::Gate::default());
    h.store
        .gate_next_save_in(StateName::StreamingLlmResponse, gate.clone());
    let id = h.started("/slow 4").await;
    gate.entered.notified().await;
    let saves_before = h.store.calls(Op::Save);

    // The flush is held: readers still see every chunk, up to the end of the reply.
    let mut rx = h.engine.subscribe(id).await.expect("subscribe");
    tokio::time::timeout(
        WAIT,
        rx.wait_for(|s| {
            s.messages()
                .get(1)
                .is_some_and(|m| content_text(&m.content).ends_with("chunk 4."))
        }),
    )
    .await
    .expect("the stream went on while the flush was held")
    .expect("streaming");
    assert_eq!(
        h.store.calls(Op::Save),
        saves_before,
        "no save begins while one runs behind the stream"
    );
    let stored = h.stored(id).await;
    assert_ne!(stored.record.state, State::Idle, "the final save waits");

    gate.open.notify_one();
    let rested = tokio::time::timeout(WAIT, rx.wait_for(|s| s.record.state == State::Idle))
        .await
        .expect("rests once the flush is written")
        .expect("snapshot")
        .clone();
    let stored = h.stored(id).await;
    assert_eq!(stored.record.state, State::Idle);
    assert_eq!(stored.record.version, rested.record.version);
    let reply = &stored.messages[1].message;
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(
        content_text(&reply.content),
        "chunk 1 chunk 2 chunk 3 chunk 4."
    );
}

/// A flush that fails behind the stream fails the turn, as a save in line would; the
/// reply streamed so far stays, and a retry answers the message.
#[tokio::test]
async fn a_flush_that_fails_behind_the_stream_fails_the_turn() {
    let h = harness(flush_every_chunk()).await;
    let id = h.started("/slow 3").await;
    h.store.fail(Op::Save, Fault::Once);
    let mut rx = h.engine.subscribe(id).await.expect("subscribe");
    let failed = tokio::time::timeout(WAIT, rx.wait_for(|s| s.record.state.is_resting()))
        .await
        .expect("the turn stops")
        .expect("snapshot")
        .clone();
    assert!(
        matches!(&failed.record.state, State::Failed { error } if error.contains("disk I/O error")),
        "{:?}",
        failed.record.state
    );
    let out = h.engine.retry(id, WAIT).await.expect("retry");
    assert_eq!(out.snapshot.status(), Status::Idle);
    let stored = h.stored(id).await;
    let replies: Vec<String> = stored
        .messages
        .iter()
        .filter(|m| m.message.role == Role::Assistant)
        .map(|m| content_text(&m.message.content))
        .collect();
    assert_eq!(
        replies.last().map(String::as_str),
        Some("chunk 1 chunk 2 chunk 3.")
    );
}

/// A send to a busy chat is acknowledged only once its queued message is stored.
#[tokio::test]
async fn a_queued_send_whose_write_fails_is_refused_and_not_queued() {
    let h = harness(fast()).await;
    let id = h.busy().await;
    h.store.fail(Op::Enqueue, Fault::Once);
    let refused = h
        .engine
        .send_message(id, msg("later"), Duration::ZERO)
        .await;
    assert!(
        matches!(refused, Err(EngineError::Action(ActionError::Store(_)))),
        "{refused:?}"
    );
    assert_eq!(h.store.calls(Op::Enqueue), 1);
    let snapshot = h.engine.snapshot(id).await.expect("snapshot");
    assert!(snapshot.queued.is_empty());
    h.engine.delete(&Owner::local(), id).await.expect("delete");
}

/// No action waits behind a running turn: one that needs a resting chat is refused at once
/// and changes nothing; a deprecated CRUD write answers busy; only a send queues.
#[tokio::test]
async fn actions_that_need_a_resting_chat_are_refused_at_once_during_a_turn() {
    let h = harness(fast()).await;
    let id = h.busy().await;
    let user = h.engine.snapshot(id).await.expect("snapshot").messages()[0].id;
    let edit = h
        .engine
        .edit_user_message(id, user, msg("edited"), WAIT)
        .await;
    assert!(
        matches!(edit, Err(EngineError::Action(ActionError::InvalidState(_)))),
        "{edit:?}"
    );
    let retry = h.engine.retry(id, WAIT).await;
    assert!(
        matches!(
            retry,
            Err(EngineError::Action(ActionError::InvalidState(_)))
        ),
        "{retry:?}"
    );
    let written = h
        .engine
        .append_message(id, Role::User, vec![ContentPart::text("crud")], None)
        .await;
    assert!(
        matches!(written, Err(EngineError::Action(ActionError::TurnRunning))),
        "{written:?}"
    );
    let too_many = h
        .engine
        .approve_tools(id, vec!["call".into(); 129], WAIT)
        .await;
    assert!(
        matches!(
            too_many,
            Err(EngineError::Action(ActionError::TooManyToolCallIds(128)))
        ),
        "{too_many:?}"
    );
    let after = h.engine.snapshot(id).await.expect("snapshot");
    assert!(!after.record.state.is_resting(), "answered during the turn");
    assert_eq!(path_texts(&after)[0], "/slow 100");
    assert_eq!(after.messages()[0].sibling_count, 1);
    assert!(after.messages().len() <= 2, "{:?}", path_texts(&after));
    let queued = h
        .engine
        .send_message(id, msg("later"), Duration::ZERO)
        .await;
    assert!(!queued.expect("queued").snapshot.queued.is_empty());
    h.engine.delete(&Owner::local(), id).await.expect("delete");
}

#[tokio::test]
async fn long_chats_leave_memory_past_the_byte_budget_and_reload_whole() {
    // Room for about one chat of a long message and its reply.
    let long = "x".repeat(4000);
    let h = harness(EngineSettings {
        max_live_contexts: 100,
        max_live_bytes: 12_000,
        ..fast()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = h.new_context().await;
        h.send(id, &long).await;
        ids.push(id);
    }
    let live = Metrics::get(&h.engine.metrics().live_contexts);
    assert!(live <= 2, "{live} chats live");
    assert!(Metrics::get(&h.engine.metrics().live_bytes) <= 12_000);
    for id in ids {
        let snapshot = h.engine.snapshot(id).await.expect("reload");
        assert_eq!(path_texts(&snapshot)[0], long);
    }
}

/// The reply of a running turn counts toward `--max-live-bytes` as it streams, not only
/// once the turn is over (the engine reads the byte count whenever it loads a context).
#[tokio::test]
async fn a_streaming_reply_counts_toward_the_byte_budget_as_it_grows() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let mut snapshots = h.engine.subscribe(id).await.expect("subscribe");
    h.engine
        .send_message(id, msg("/slow 1000"), Duration::ZERO)
        .await
        .expect("send");
    let reply_len = |s: &Snapshot| path_texts(s).get(1).map_or(0, String::len);
    let mut reply_reaches = async |len: usize| {
        let reached = snapshots.wait_for(|s| reply_len(s) >= len);
        let s = tokio::time::timeout(WAIT, reached).await.expect("in time");
        reply_len(&s.expect("the context is live"))
    };
    reply_reaches(24).await;
    let live_bytes = || Metrics::get(&h.engine.metrics().live_bytes);
    h.new_context().await;
    let before = live_bytes();
    let counted = reply_reaches(0).await;
    // Six more chunks of 8 or 9 bytes ("chunk 12 ").
    reply_reaches(counted + 50).await;
    h.new_context().await;
    let grown = live_bytes() - before;
    assert!(grown >= 40, "counted {grown} bytes more");
    h.engine.delete(&Owner::local(), id).await.expect("delete");
}

#[tokio::test]
async fn a_context_whose_save_failed_is_never_evicted_until_it_is_saved() {
    let h = harness(EngineSettings {
        max_live_contexts: 1,
        ..fast()
    })
    .await;
    let id = h.new_context().await;
    h.store.fail(Op::Save, Fault::Always);
    h.engine
        .send_message(id, msg("keep me"), WAIT)
        .await
        .expect_err("save fails");
    // Other chats come and go past the limit; this one holds what the store lacks.
    for _ in 0..3 {
        let other = h.new_context().await;
        h.engine.snapshot(other).await.expect("load");
    }
    let kept = h.engine.snapshot(id).await.expect("still live");
    assert_eq!(
        path_texts(&kept),
        ["keep me"],
        "not reloaded from the store"
    );
    assert_eq!(h.stored(id).await.messages.len(), 0);

    // Once it is saved, it may go, and comes back whole.
    h.store.heal(Op::Save);
    h.engine.retry(id, WAIT).await.expect("retry");
    for _ in 0..2 {
        let other = h.new_context().await;
        h.engine.snapshot(other).await.expect("load");
    }
    assert!(Metrics::get(&h.engine.metrics().live_contexts) <= 1);
    let reloaded = h.engine.snapshot(id).await.expect("reload");
    assert_eq!(reloaded.messages().len(), 2, "{:?}", path_texts(&reloaded));
}

/// The chats-per-user quota holds under concurrent creates: the store counts and inserts
/// in one statement.
#[tokio::test]
async fn concurrent_creates_never_pass_the_chat_quota() {
    let h = harness(EngineSettings {
        max_contexts_per_user: Some(3),
        ..fast()
    })
    .await;
    let carol = owner("carol");
    let creates = (0..12).map(|_| h.engine.create_context(&carol, NewContext::default()));
    let mut created = 0;
    for result in futures::future::join_all(creates).await {
        match result {
            Ok(_) => created += 1,
            Err(EngineError::QuotaExceeded(3)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created, 3);
    let page = h
        .store
        .list_contexts("carol", 100, crate::store::ListOrder::Created, None)
        .await
        .expect("list");
    assert_eq!(page.total, 3);
    assert_eq!(Metrics::get(&h.engine.metrics().context_quota_refusals), 9);
}

/// A version a client saw never names other content: not after a failed save followed by
/// a crash either (a fresh engine on the same store plays the restarted server).
#[tokio::test]
async fn versions_shown_before_a_failed_save_and_a_crash_are_never_reused() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.send(id, "stored").await;
    h.store.fail(Op::Save, Fault::Always);
    h.engine
        .send_message(id, msg("never stored"), WAIT)
        .await
        .expect_err("save fails");
    let seen = h.engine.snapshot(id).await.expect("snapshot");
    assert!(path_texts(&seen).contains(&"never stored".to_owned()));
    h.store.heal(Op::Save);

    let restarted = engine_on(h.store.clone(), fast());
    let reloaded = restarted.snapshot(id).await.expect("reload");
    assert!(
        reloaded.version() > seen.version(),
        "version {} after the crash, but clients saw {} with other content",
        reloaded.version(),
        seen.version()
    );
    assert_eq!(
        path_texts(&reloaded).len(),
        2,
        "the stored turn, nothing more"
    );
    let next = restarted
        .send_message(id, msg("after"), WAIT)
        .await
        .expect("send");
    assert!(next.snapshot.version() > reloaded.version());
    let stored = h.stored(id).await;
    assert_eq!(
        stored.record.version_ceiling, stored.record.version,
        "resting again: nothing shown beyond what is stored"
    );
}

/// Writes a context as a crash would leave it: mid-stream, with a partial reply.
async fn crashed_mid_stream(h: &Harness) -> Uuid {
    let id = h.new_context().await;
    let loaded = h.stored(id).await;
    let now = crate::store::now();
    let message = |role, text: &str, status| {
        Arc::new(Message {
            id: Uuid::new_v4(),
            client_message_id: None,
            role,
            content: vec![ContentPart::text(text)],
            tool_calls: None,
            tool_call_id: None,
            status,
            created_at: now,
            version: 2,
            parent_id: None,
            sibling_index: 0,
            sibling_count: 1,
        })
    };
    let user = message(Role::User, "resume me", MessageStatus::Complete);
    let mut reply = message(Role::Assistant, "You sa", MessageStatus::Streaming);
    Arc::make_mut(&mut reply).parent_id = Some(user.id);
    let batch = SaveBatch {
        context: ContextRecord {
            state: State::StreamingLlmResponse,
            version: 2,
            message_count: 2,
            ..loaded.record
        },
        messages: vec![
            MessageRecord {
                message: user.clone(),
                seq: 0,
                idempotency_key: None,
            },
            MessageRecord {
                message: reply,
                seq: 1,
                idempotency_key: None,
            },
        ],
        expected_version: 1,
        dequeued: Vec::new(),
    };
    h.store.save(&batch).await.expect("save");
    id
}

#[tokio::test]
async fn an_interrupted_turn_resumes_on_start() {
    let h = harness(fast()).await;
    let id = crashed_mid_stream(&h).await;
    // A fresh engine on the same store plays the restarted server.
    let engine = engine_on(h.store.clone(), fast());
    assert_eq!(engine.resume_unfinished().await.expect("resume"), 1);
    let handle = engine.handle(id).await.expect("handle");
    let mut rx = handle.snapshot.clone();
    let done = rx
        .wait_for(|s| s.record.state.is_resting())
        .await
        .expect("rests")
        .clone();
    assert_eq!(done.status(), Status::Idle);
    let all = texts(&done.messages());
    assert_eq!(all.len(), 2, "the partial reply is reused, not duplicated");
    assert!(all[1].1.contains("resume me"), "{all:?}");
    assert_eq!(h.stored(id).await.record.state, State::Idle);
}

#[tokio::test]
async fn idle_contexts_leave_memory_beyond_the_limit_and_reload() {
    let h = harness(EngineSettings {
        max_live_contexts: 2,
        ..fast()
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = h.new_context().await;
        h.send(id, &format!("chat {n}")).await;
        ids.push(id);
    }
    assert!(Metrics::get(&h.engine.metrics().live_contexts) <= 2);
    for (n, id) in ids.iter().enumerate() {
        let snapshot = h.engine.snapshot(*id).await.expect("reload");
        assert_eq!(snapshot.messages().len(), 2);
        assert!(content_text(&snapshot.messages()[0].content).contains(&format!("chat {n}")));
        // Sending after a reload continues the same history.
        let out = h.send(*id, "more").await;
        assert_eq!(out.snapshot.messages().len(), 4);
    }
}

#[tokio::test]
async fn deleting_stops_a_running_turn_and_forgets_the_context() {
    let h = harness(fast()).await;
    let id = h.busy().await;
    // Another user's delete finds nothing and removes nothing.
    assert!(matches!(
        h.engine.delete(&owner("mallory"), id).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(h.store.load_context(id).await.expect("load").is_some());
    h.engine.delete(&Owner::local(), id).await.expect("delete");
    assert!(matches!(
        h.engine.snapshot(id).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(h.store.load_context(id).await.expect("load").is_none());
    assert!(matches!(
        h.engine.delete(&Owner::local(), id).await,
        Err(EngineError::NotFound(_))
    ));
}

fn path_texts(s: &Snapshot) -> Vec<String> {
    s.messages()
        .iter()
        .map(|m| content_text(&m.content))
        .collect()
}

#[tokio::test]
async fn edit_regenerate_and_switch_grow_a_tree_that_a_restart_keeps() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.send(id, "one").await;
    let out = h.send(id, "two").await;
    let two = out.snapshot.messages()[2].clone();
    let before_edit = out.snapshot.version();

    let edited = h
        .engine
        .edit_user_message(id, two.id, msg("two, edited"), WAIT)
        .await
        .expect("edit");
    let s = edited.snapshot.clone();
    assert!(edited.settled);
    assert_eq!(s.messages().len(), 4);
    assert_eq!(path_texts(&s)[2], "two, edited");
    assert_eq!(s.messages()[2].parent_id, two.parent_id);
    assert_eq!(
        (s.messages()[2].sibling_index, s.messages()[2].sibling_count),
        (1, 2)
    );
    assert!(
        path_texts(&s)[3].contains("two, edited"),
        "the edit's turn ran"
    );
    let state = s.chat_state(Some(before_edit));
    assert!(!state.delta, "an edit moves the path: the whole state");
    assert_eq!(state.message_count, 4);

    let regenerated = h
        .engine
        .regenerate(id, None, WAIT)
        .await
        .expect("regenerate");
    let s = regenerated.snapshot.clone();
    assert_eq!(s.messages().len(), 4);
    assert_eq!(s.messages()[3].parent_id, Some(s.messages()[2].id));
    assert_eq!(
        (s.messages()[3].sibling_index, s.messages()[3].sibling_count),
        (1, 2)
    );
    assert_eq!(s.status(), Status::Idle);

    // Back to the first version of "two": its newest leaf is its own reply.
    let saves = Metrics::get(&h.engine.metrics().saves);
    let rows_before: Vec<_> = h.stored(id).await.messages;
    let switched = h
        .engine
        .switch_branch(id, to(two.id, None))
        .await
        .expect("switch");
    let s = switched.snapshot.clone();
    assert_eq!(path_texts(&s)[2], "two");
    assert_eq!(
        (s.messages()[2].sibling_index, s.messages()[2].sibling_count),
        (0, 2)
    );
    assert!(s.version() > regenerated.snapshot.version());
    assert_eq!(Metrics::get(&h.engine.metrics().saves), saves + 1);
    let stored = h.stored(id).await;
    assert_eq!(
        stored.messages, rows_before,
        "a switch writes the context row only"
    );
    assert_eq!(stored.record.active_leaf, s.messages().last().map(|m| m.id));
    assert_eq!(stored.messages.len(), 7);
    let seqs: Vec<u64> = stored.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..7).collect::<Vec<_>>());

    // A restarted server shows the same path and the same sibling numbers.
    let engine = engine_on(h.store.clone(), fast());
    let after = engine.snapshot(id).await.expect("reload");
    assert_eq!(path_texts(&after), path_texts(&s));
    assert_eq!(after.version(), s.version());
    let numbers = |s: &Snapshot| -> Vec<(u32, u32)> {
        s.messages()
            .iter()
            .map(|m| (m.sibling_index, m.sibling_count))
            .collect()
    };
    assert_eq!(numbers(&after), numbers(&s));
    // Switching to the root follows the newest children: the regenerated reply.
    let newest = engine
        .switch_branch(id, to(after.messages()[0].id, None))
        .await
        .expect("switch");
    assert_eq!(
        path_texts(&newest.snapshot),
        path_texts(&regenerated.snapshot)
    );
}

#[tokio::test]
async fn branch_actions_check_the_message_and_the_state() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let out = h.send(id, "one").await;
    let (user, reply) = (out.snapshot.messages()[0].id, out.snapshot.messages()[1].id);
    let wrong_role = h.engine.edit_user_message(id, reply, msg("x"), WAIT).await;
    assert!(matches!(
        wrong_role,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
    let not_reply = h.engine.regenerate(id, Some(user), WAIT).await;
    assert!(matches!(
        not_reply,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
    let unknown = h.engine.switch_branch(id, to(Uuid::new_v4(), None)).await;
    assert!(matches!(
        unknown,
        Err(EngineError::Action(ActionError::MessageNotFound(_)))
    ));
    h.engine
        .edit_user_message(id, user, msg("one, again"), WAIT)
        .await
        .expect("edit");
    // The first version is off the path now: editing it needs a switch first.
    let off_path = h.engine.edit_user_message(id, user, msg("y"), WAIT).await;
    assert!(matches!(
        off_path,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
    // A switcher names the message it shows and the neighbour it wants.
    let edited = h.engine.snapshot(id).await.expect("snapshot").messages()[0].clone();
    assert_eq!((edited.sibling_index, edited.sibling_count), (1, 2));
    let back = h
        .engine
        .switch_branch(id, to(edited.id, Some(0)))
        .await
        .expect("switch to the first version");
    assert_eq!(back.snapshot.messages()[0].id, user);
    assert_eq!(path_texts(&back.snapshot)[0], "one");
    let past_the_end = h.engine.switch_branch(id, to(user, Some(2))).await;
    assert!(matches!(
        past_the_end,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
    let unknown = h
        .engine
        .switch_branch(id, to(Uuid::new_v4(), Some(0)))
        .await;
    assert!(matches!(
        unknown,
        Err(EngineError::Action(ActionError::MessageNotFound(_)))
    ));
    h.engine
        .switch_branch(id, to(user, Some(1)))
        .await
        .expect("switch to the edit again");
    let empty = h.new_context().await;
    let nothing = h.engine.regenerate(empty, None, WAIT).await;
    assert!(matches!(
        nothing,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
}

#[tokio::test]
async fn leaving_a_branch_that_awaits_approval_denies_its_calls() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let asked = h
        .send(id, r#"/tool calculator {"expression": "6*7"}"#)
        .await;
    assert_eq!(asked.snapshot.status(), Status::AwaitingApproval);
    let user = asked.snapshot.messages()[0].id;
    let call = asked.snapshot.messages()[1].id;
    let out = h
        .engine
        .edit_user_message(id, user, msg("no tools after all"), WAIT)
        .await
        .expect("edit");
    assert_eq!(out.snapshot.status(), Status::Idle);
    assert!(out.snapshot.pending_tool_calls.is_empty());
    // The old branch is whole: its call was denied and answered.
    let back = h
        .engine
        .switch_branch(id, to(call, None))
        .await
        .expect("switch");
    let s = back.snapshot;
    assert_eq!(s.status(), Status::Idle);
    let calls = s.messages()[1].tool_calls.clone().unwrap_or_default();
    assert_eq!(calls[0].status, ToolCallStatus::Denied);
    assert_eq!(s.messages()[2].role, Role::Tool);
}

/// A send whose turn may call the client's tool `lookup`.
fn with_client_tool(text: &str) -> NewMessage {
    let mut m = msg(text);
    m.turn = TurnOptions {
        client_tools: vec![ClientTool {
            name: "lookup".into(),
            description: None,
            parameters: None,
        }],
        instructions: None,
    };
    m
}

/// A call to a tool the client declared rests the turn in `AwaitingToolOutput` (saved,
/// shown as such, nothing for a person to approve), and a restart finds it there; only
/// the client's output (or a cancel) moves it on.
#[tokio::test]
async fn a_client_tool_call_waits_for_the_clients_output_across_a_restart() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let asked = h
        .engine
        .send_message(id, with_client_tool(r#"/tool lookup {"q": "x"}"#), WAIT)
        .await
        .expect("send");
    assert_eq!(asked.snapshot.record.state, State::AwaitingToolOutput);
    assert_eq!(asked.snapshot.status(), Status::AwaitingToolOutput);
    let call = asked.snapshot.pending_tool_calls[0].clone();
    assert_eq!(call.name, "lookup");
    assert_eq!(h.stored(id).await.record.state, State::AwaitingToolOutput);

    // Nothing else fits: no approval is pending, a send is refused, nothing is stored.
    let approve = h
        .engine
        .approve_tools(id, vec![call.id.clone()], WAIT)
        .await;
    assert!(matches!(
        approve,
        Err(EngineError::Action(ActionError::NoPendingApprovals))
    ));
    let send = h.engine.send_message(id, msg("hello?"), WAIT).await;
    assert!(matches!(
        send,
        Err(EngineError::Action(ActionError::InvalidState(
            StateName::AwaitingToolOutput
        )))
    ));
    let unknown = h
        .engine
        .submit_tool_outputs(
            id,
            vec![("call_nope".into(), "x".into())],
            vec![],
            TurnOptions::default(),
            WAIT,
        )
        .await;
    assert!(matches!(
        unknown,
        Err(EngineError::Action(ActionError::UnknownToolCalls(_)))
    ));
    let missing = h
        .engine
        .submit_tool_outputs(id, vec![], vec![], TurnOptions::default(), WAIT)
        .await;
    assert!(matches!(
        missing,
        Err(EngineError::Action(ActionError::InvalidMessage(_)))
    ));
    // The client's call is answered by its output, never approved as a server call.
    let approved = h
        .engine
        .submit_tool_outputs(
            id,
            vec![(call.id.clone(), "x".into())],
            vec![call.id.clone()],
            TurnOptions::default(),
            WAIT,
        )
        .await;
    assert!(matches!(
        approved,
        Err(EngineError::Action(ActionError::UnknownToolCalls(_)))
    ));
    assert_eq!(h.stored(id).await.messages.len(), 2);

    // A fresh engine on the same store plays the restarted server: the chat rests there.
    let restarted = engine_on(h.store.clone(), fast());
    let reloaded = restarted.snapshot(id).await.expect("reload");
    assert_eq!(reloaded.record.state, State::AwaitingToolOutput);
    assert_eq!(reloaded.pending_tool_calls, vec![call.clone()]);
    let out = restarted
        .submit_tool_outputs(
            id,
            vec![(call.id.clone(), "a tall tree".into())],
            vec![],
            TurnOptions::default(),
            WAIT,
        )
        .await
        .expect("outputs");
    assert_eq!(out.snapshot.status(), Status::Idle);
    let last = out.snapshot.messages().last().cloned().expect("reply");
    assert!(
        content_text(&last.content).contains("a tall tree"),
        "{last:?}"
    );
    let calls = out.snapshot.messages()[1]
        .tool_calls
        .clone()
        .unwrap_or_default();
    assert_eq!(calls[0].status, ToolCallStatus::Completed);
    let again = restarted
        .submit_tool_outputs(
            id,
            vec![(call.id, "x".into())],
            vec![],
            TurnOptions::default(),
            WAIT,
        )
        .await;
    assert!(matches!(
        again,
        Err(EngineError::Action(ActionError::NoPendingToolOutputs))
    ));
}

/// A person can cancel a turn that waits for a client's output: the call is closed and
/// answered, and the chat is idle again.
#[tokio::test]
async fn cancelling_a_turn_that_waits_for_a_clients_output_closes_the_call() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    h.engine
        .send_message(id, with_client_tool("/tool lookup {}"), WAIT)
        .await
        .expect("send");
    h.engine.cancel(id).await.expect("cancel");
    let s = h.engine.snapshot(id).await.expect("snapshot");
    assert_eq!(s.record.state, State::Idle);
    let calls = s.messages()[1].tool_calls.clone().unwrap_or_default();
    assert_eq!(calls[0].status, ToolCallStatus::Denied);
    assert_eq!(s.messages()[2].role, Role::Tool);
    assert_eq!(h.stored(id).await.record.state, State::Idle);
}

/// User messages sent together are stored one by one before the last, in its turn's
/// save; while a turn runs they are refused at once (the queue holds one message per
/// turn), and nothing is stored.
#[tokio::test]
async fn messages_sent_together_are_stored_one_by_one_at_rest_only() {
    let h = harness(fast()).await;
    let id = h.new_context().await;
    let mut together = msg("and the question");
    together.preceding = vec![MessageContent::parse("some context".into()).expect("content")];
    let out = h
        .engine
        .send_message(id, together.clone(), WAIT)
        .await
        .expect("send");
    let said: Vec<(Role, String)> = out
        .snapshot
        .messages()
        .iter()
        .map(|m| (m.role, content_text(&m.content)))
        .collect();
    assert_eq!(said[0], (Role::User, "some context".to_owned()));
    assert_eq!(said[1], (Role::User, "and the question".to_owned()));
    assert_eq!(said[2].0, Role::Assistant);
    assert_eq!(h.stored(id).await.messages.len(), 3);

    let busy = h.busy().await;
    let refused = h.engine.send_message(busy, together, WAIT).await;
    assert!(matches!(
        refused,
        Err(EngineError::Action(ActionError::TurnRunning))
    ));
    let snapshot = h.engine.snapshot(busy).await.expect("snapshot");
    assert!(snapshot.queued.is_empty());
}

/// Another instance saves a chat while this one is loading it: the notice arrives before
/// there is an actor to tell. The actor still catches up with that save once it is live,
/// instead of showing the version it read for good (the soak saw a restarted instance
/// answer a turn's first state forever while the other had finished it).
#[tokio::test(flavor = "current_thread")]
async fn a_change_announced_while_the_context_loads_is_caught_up_with() {
    // The other instance, and this one on the same database file.
    let other = harness(fast()).await;
    let id = other.new_context().await;
    let url = format!("sqlite://{}/db.sqlite", other._dir.path().display());
    let (changes, _) = tokio::sync::broadcast::channel(16);
    let gate = Arc::new(testing::Gate::default());
    let follower = Arc::new(
        FaultStore::over(SqlStore::connect(&url).await.expect("store"))
            .follower(changes.clone())
            .gate_next_load(gate.clone()),
    );
    let engine = Arc::new(engine_on(follower, fast()));
    engine.start_background();

    let reader = engine.clone();
    let read = tokio::spawn(async move { reader.snapshot(id).await });
    gate.entered.notified().await;
    // The load has read the chat; the other instance runs a turn and says so.
    other.send(id, "hello").await;
    let saved = other.stored(id).await.record.version;
    changes
        .send(Change::Updated { id, version: saved })
        .expect("a listener");
    // The follower's listener takes the notice (no actor to tell yet).
    while !changes.is_empty() {
        tokio::task::yield_now().await;
    }
    gate.open.notify_one();
    let first = read.await.expect("task").expect("snapshot");
    assert!(
        first.version() < saved,
        "the load read the chat before the turn"
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = engine.snapshot(id).await.expect("snapshot");
        if now.version() == saved {
            assert_eq!(now.record.state, State::Idle);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still at version {} after {WAIT:?}; the store has {saved}",
            now.version()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
