//! One behavioural suite that every `Store` implementation must pass.

use super::{
    ContextRecord, Cursor, ListOrder, LoadedContext, MessageRecord, SaveBatch, Store, StoreError,
};
use crate::domain::{ClientTool, SearchQuery, TurnOptions};
use crate::fsm::State;
use chatsync_protocol::{
    ContentPart, ContextConfig, Message, MessageStatus, Role, ToolCall, ToolCallStatus,
};
use chrono::{Duration, TimeZone, Utc};
use std::sync::Arc;
use uuid::Uuid;

pub(crate) fn context(n: i64) -> ContextRecord {
    let at = Utc
        .timestamp_opt(1_700_000_000 + n, 0)
        .single()
        .expect("time");
    ContextRecord {
        id: Uuid::new_v4(),
        title: format!("chat {n}"),
        config: ContextConfig {
            model_id: Some("scripted".into()),
            mode: None,
            system_prompt: Some("be brief".into()),
        },
        state: State::Idle,
        version: 1,
        message_count: 0,
        created_at: at,
        updated_at: at,
        active_leaf: None,
        owner: "alice".into(),
        version_ceiling: 1,
        turn: Default::default(),
    }
}

/// Another user's copy of `context(n)`.
fn bobs(n: i64) -> ContextRecord {
    ContextRecord {
        owner: "bob".into(),
        ..context(n)
    }
}

pub(crate) fn message(seq: u64, version: u64, text: &str) -> MessageRecord {
    MessageRecord {
        message: Arc::new(Message {
            id: Uuid::new_v4(),
            client_message_id: Some(format!("client-{seq}")),
            role: Role::User,
            content: vec![ContentPart::text(text)],
            tool_calls: None,
            tool_call_id: None,
            status: MessageStatus::Complete,
            created_at: crate::store::now(),
            version,
            parent_id: None,
            sibling_index: 0,
            sibling_count: 1,
        }),
        seq,
        idempotency_key: Some(format!("key-{seq}")),
    }
}

fn turn_options() -> TurnOptions {
    TurnOptions {
        client_tools: vec![ClientTool {
            name: "lookup".into(),
            description: Some("Looks a word up".into()),
            parameters: Some(serde_json::json!({"type": "object"})),
        }],
        instructions: Some("Answer in French.".into()),
    }
}

async fn load(store: &dyn Store, id: Uuid) -> LoadedContext {
    store
        .load_context(id)
        .await
        .expect("load")
        .expect("the context exists")
}

pub(crate) async fn run(store: &dyn Store) {
    store.ping().await.expect("ping");

    // Create, load, save messages, update one, load again.
    let mut c = context(0);
    store.insert_context(&c, None).await.expect("insert");
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.record, c);
    assert!(loaded.messages.is_empty());

    let first = message(0, 2, "hello");
    let mut second = message(1, 2, "world");
    // The tree and the active leaf round-trip: `second` follows `first`.
    Arc::make_mut(&mut second.message).parent_id = Some(first.message.id);
    c.active_leaf = Some(second.message.id);
    c.version = 2;
    c.message_count = 2;
    c.state = State::ProcessingUserMessage;
    // A turn's options (the OpenAI API's function tools, instructions) round-trip.
    c.turn = turn_options();
    // A running turn reserves the versions it may show before its next save.
    c.version_ceiling = 1002;
    let batch = SaveBatch {
        context: c.clone(),
        messages: vec![first.clone(), second.clone()],
        expected_version: 1,
        dequeued: Vec::new(),
    };
    store.save(&batch).await.expect("save");

    let mut changed = (*second.message).clone();
    changed.content = vec![ContentPart::text("world, edited")];
    changed.tool_calls = Some(vec![ToolCall {
        id: "call_1".into(),
        name: "calculator".into(),
        arguments: serde_json::json!({"expression": "1+1"}),
        status: ToolCallStatus::Pending,
        result: None,
    }]);
    changed.version = 3;
    second.message = Arc::new(changed);
    c.version = 3;
    c.state = State::Failed {
        error: "model down".into(),
    };
    c.updated_at += Duration::seconds(5);
    store
        .save(&SaveBatch {
            context: c.clone(),
            messages: vec![second.clone()],
            expected_version: 2,
            dequeued: Vec::new(),
        })
        .await
        .expect("second save writes only the changed message");
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.record, c);
    assert_eq!(loaded.messages, vec![first.clone(), second.clone()]);
    // A reader at version 2 fetches only what changed after it.
    let changes = store
        .load_changes(c.id, 2)
        .await
        .expect("changes")
        .expect("exists");
    assert_eq!(changes.record, c);
    assert_eq!(changes.messages, vec![second.clone()]);
    let nothing = store
        .load_changes(c.id, 3)
        .await
        .expect("changes")
        .expect("exists");
    assert!(nothing.messages.is_empty());

    // A writer that missed a change is refused, and nothing of its batch lands.
    let stale = SaveBatch {
        context: ContextRecord {
            version: 4,
            ..c.clone()
        },
        messages: vec![message(2, 4, "lost?")],
        expected_version: 2,
        dequeued: Vec::new(),
    };
    assert!(matches!(
        store.save(&stale).await,
        Err(StoreError::Conflict { expected: 2, .. })
    ));
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.messages.len(), 2);
    assert_eq!(loaded.record.version, 3);

    // A reservation raises the ceiling and never lowers it; the row is otherwise untouched.
    store.reserve_versions(c.id, 2000).await.expect("reserve");
    store
        .reserve_versions(c.id, 1500)
        .await
        .expect("lower is ignored");
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.record.version_ceiling, 2000);
    assert_eq!(
        ContextRecord {
            version_ceiling: c.version_ceiling,
            ..loaded.record
        },
        c
    );

    // Unfinished contexts are those saved outside a resting state (waiting for a
    // client's tool output is one).
    let mut running = context(1);
    running.state = State::StreamingLlmResponse;
    store.insert_context(&running, None).await.expect("insert");
    let awaiting_output = ContextRecord {
        owner: "dave".into(),
        state: State::AwaitingToolOutput,
        turn: turn_options(),
        ..context(40)
    };
    store
        .insert_context(&awaiting_output, None)
        .await
        .expect("insert");
    assert_eq!(
        load(store, awaiting_output.id).await.record,
        awaiting_output
    );
    let unfinished = store.unfinished_contexts().await.expect("unfinished");
    assert_eq!(unfinished, vec![running.id]);
    // So are idle ones with queued messages (acknowledged sends nobody runs yet); a failed
    // one keeps its queue until a retry. Another owner's, so the listing below is Alice's.
    let waiting = ContextRecord {
        owner: "dave".into(),
        ..context(30)
    };
    let failed = ContextRecord {
        owner: "dave".into(),
        state: State::Failed {
            error: "model down".into(),
        },
        ..context(31)
    };
    for c in [&waiting, &failed] {
        store.insert_context(c, None).await.expect("insert");
        let queued = super::QueuedRecord {
            message: message(1, 1, "later").message,
            idempotency_key: None,
            ahead: false,
            turn: turn_options(),
        };
        assert!(store.enqueue(c.id, &queued, 8).await.expect("enqueue"));
        let stored = store.queued_messages(c.id).await.expect("queued");
        let turns: Vec<TurnOptions> = stored.into_iter().map(|q| q.turn).collect();
        assert_eq!(turns, vec![turn_options()]);
    }
    let unfinished = store.unfinished_contexts().await.expect("unfinished");
    assert_eq!(unfinished, vec![running.id, waiting.id]);

    // Listing is newest first, paged by cursor, with the total.
    let mut more = Vec::new();
    for n in 2..6 {
        let r = context(n);
        store.insert_context(&r, None).await.expect("insert");
        more.push(r);
    }
    // With a limit, an owner's create past it stores nothing.
    let limited: Vec<ContextRecord> = (20..23)
        .map(|n| ContextRecord {
            owner: "carol".into(),
            ..context(n)
        })
        .collect();
    assert!(store
        .insert_context(&limited[0], Some(2))
        .await
        .expect("insert"));
    assert!(store
        .insert_context(&limited[1], Some(2))
        .await
        .expect("insert"));
    assert!(!store
        .insert_context(&limited[2], Some(2))
        .await
        .expect("refused"));
    assert_eq!(store.load_context(limited[2].id).await.expect("load"), None);
    let page = store
        .list_contexts("carol", 10, ListOrder::Created, None)
        .await
        .expect("list");
    assert_eq!(page.total, 2);
    for r in &limited[..2] {
        assert!(store.delete_context("carol", r.id).await.expect("delete"));
    }
    // Concurrent creates count one after another.
    let racing: Vec<ContextRecord> = (30..36)
        .map(|n| ContextRecord {
            owner: "dora".into(),
            ..context(n)
        })
        .collect();
    let inserted =
        futures::future::join_all(racing.iter().map(|r| store.insert_context(r, Some(2)))).await;
    let stored = inserted
        .into_iter()
        .filter(|r| *r.as_ref().expect("insert"))
        .count();
    assert_eq!(stored, 2);
    for r in &racing {
        store.delete_context("dora", r.id).await.expect("delete");
    }

    // Another user's newest context is in no page and no count of alice's.
    let theirs = bobs(9);
    store.insert_context(&theirs, None).await.expect("insert");
    let page = store
        .list_contexts("alice", 4, ListOrder::Created, None)
        .await
        .expect("list");
    assert_eq!(page.total, 6);
    let ids: Vec<_> = page.contexts.iter().map(|r| r.id).collect();
    assert_eq!(ids, [more[3].id, more[2].id, more[1].id, more[0].id]);
    let last = page.contexts.last().expect("page");
    let next = Cursor::after(ListOrder::Created, last);
    let page2 = store
        .list_contexts("alice", 4, ListOrder::Created, Some(next))
        .await
        .expect("list");
    let ids: Vec<_> = page2.contexts.iter().map(|r| r.id).collect();
    assert_eq!(ids, [running.id, c.id]);
    let page = store
        .list_contexts("bob", 4, ListOrder::Created, None)
        .await
        .expect("list");
    let ids: Vec<_> = page.contexts.iter().map(|r| r.id).collect();
    assert_eq!((ids, page.total), (vec![theirs.id], 1));

    // Deleting removes the context and its messages; saving it afterwards says so. Only
    // the owner's delete finds it.
    assert!(!store.delete_context("bob", c.id).await.expect("delete"));
    assert!(store.delete_context("alice", c.id).await.expect("delete"));
    assert!(!store
        .delete_context("alice", c.id)
        .await
        .expect("delete twice"));
    assert!(store
        .delete_context("bob", theirs.id)
        .await
        .expect("delete"));
    assert_eq!(store.load_context(c.id).await.expect("load"), None);
    assert!(matches!(
        store
            .save(&SaveBatch {
                context: ContextRecord {
                    version: 4,
                    ..c.clone()
                },
                messages: vec![message(3, 4, "into a deleted chat")],
                expected_version: 3,
                dequeued: Vec::new(),
            })
            .await,
        Err(StoreError::Gone(id)) if id == c.id
    ));

    search(store).await;
    search_stays_with_the_owner(store).await;
    by_activity(store).await;
    saves_at_once(store).await;
    a_save_takes_its_turns_queued_messages(store).await;
}

/// A save that starts a turn takes the queued messages it answers out of the queue, all
/// of them in the one save; a save refused for its version takes none and writes none of
/// its messages.
async fn a_save_takes_its_turns_queued_messages(store: &dyn Store) {
    let c = context(40);
    store.insert_context(&c, None).await.expect("insert");
    let mut queued = Vec::new();
    for text in ["first", "second", "third"] {
        let q = super::QueuedRecord {
            message: message(0, 1, text).message,
            idempotency_key: None,
            ahead: false,
            turn: TurnOptions::default(),
        };
        assert!(store.enqueue(c.id, &q, 8).await.expect("enqueue"));
        queued.push(q.message.id);
    }
    let mut batch = SaveBatch {
        // Renamed too: the title's search triggers run in the same save.
        context: ContextRecord {
            version: 2,
            message_count: 2,
            title: "renamed as it starts".into(),
            ..c.clone()
        },
        messages: vec![message(0, 2, "first"), message(1, 2, "second")],
        expected_version: 5,
        dequeued: queued[..2].to_vec(),
    };
    assert!(matches!(
        store.save(&batch).await,
        Err(StoreError::Conflict { expected: 5, .. })
    ));
    let still = store.queued_messages(c.id).await.expect("queued");
    assert_eq!(still.len(), 3);
    assert!(load(store, c.id).await.messages.is_empty());

    batch.expected_version = 1;
    store.save(&batch).await.expect("save");
    let left: Vec<Uuid> = store
        .queued_messages(c.id)
        .await
        .expect("queued")
        .iter()
        .map(|q| q.message.id)
        .collect();
    assert_eq!(left, vec![queued[2]]);
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.record, batch.context);
    assert_eq!(loaded.messages, batch.messages);
}

/// Many chats saving at once (as many actors do): every save is written and reads back,
/// and the one whose version does not match fails alone with `Conflict`, writing nothing.
async fn saves_at_once(store: &dyn Store) {
    let mut batches = Vec::new();
    for n in 0..40 {
        let c = ContextRecord {
            owner: "carol".into(),
            ..context(n)
        };
        store.insert_context(&c, None).await.expect("insert");
        batches.push(SaveBatch {
            context: ContextRecord {
                version: 2,
                message_count: 2,
                ..c
            },
            messages: vec![message(0, 2, "hello"), message(1, 2, "there")],
            expected_version: if n == 7 { 3 } else { 1 },
            dequeued: Vec::new(),
        });
    }
    let outcomes = futures::future::join_all(batches.iter().map(|b| store.save(b))).await;
    for (n, (batch, outcome)) in batches.iter().zip(outcomes).enumerate() {
        let loaded = load(store, batch.context.id).await;
        if n == 7 {
            assert!(
                matches!(outcome, Err(StoreError::Conflict { expected: 3, .. })),
                "{outcome:?}"
            );
            assert_eq!(loaded.record.version, 1);
            assert!(loaded.messages.is_empty());
        } else {
            outcome.expect("saved");
            assert_eq!(loaded.record, batch.context);
            assert_eq!(loaded.messages, batch.messages);
        }
    }
}

/// A search finds the owner's chats only, however many of another user's match, and says
/// which message matched best.
async fn search_stays_with_the_owner(store: &dyn Store) {
    let many: Vec<String> = (0..40)
        .map(|n| format!("apple {n} and an aardvark"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let mut theirs = Vec::new();
    for n in 0..3 {
        theirs.push(chat_of(store, "mallory", 60 + n, "Aardvark facts", &many).await);
    }
    let almond = chat_with(store, 70, "chat h", &["nothing here", "an almond tree"]).await;
    let named = chat_with(store, 71, "Antelope sightings", &[]).await;
    let mine = [named.id, almond.id];
    for q in ["a", "AN", "aardvark almond antelope apple"] {
        let hits = found(store, q).await;
        assert!(
            hits.iter().all(|id| !theirs.iter().any(|t| t.id == *id)),
            "{q}: {hits:?}"
        );
    }
    let hits = found(store, "a").await;
    assert!(mine.iter().all(|id| hits.contains(id)), "{hits:?}");
    let hits = found_by(store, "mallory", "aardvark").await;
    assert_eq!(hits.len(), theirs.len(), "{hits:?}");

    let query = SearchQuery::parse("almond").expect("words");
    let page = store
        .search_contexts("alice", &query, 10)
        .await
        .expect("search");
    assert_eq!(page.hits.len(), 1);
    let loaded = load(store, almond.id).await;
    assert_eq!(
        page.hits[0].message,
        Some((loaded.messages[1].message.id, "an almond tree".to_owned())),
        "the message that matched"
    );
    let query = SearchQuery::parse("antelope").expect("words");
    let page = store
        .search_contexts("alice", &query, 10)
        .await
        .expect("search");
    assert_eq!(page.hits[0].message, None, "only the title matched");

    for c in &theirs {
        store.delete_context("mallory", c.id).await.expect("delete");
    }
    for id in mine {
        store.delete_context("alice", id).await.expect("delete");
    }
    assert!(
        found_by(store, "mallory", "aardvark").await.is_empty(),
        "deleted with their chats"
    );
}

/// `ListOrder::Updated` pages by the latest activity: equal times by id, no context twice
/// or missed across pages, another owner's in none.
async fn by_activity(store: &dyn Store) {
    let mut mine: Vec<ContextRecord> = (40..47)
        .map(|n| ContextRecord {
            owner: "erin".into(),
            // Created in one order, active in the other, two pairs at the same moment.
            updated_at: context(100 - n / 2).created_at,
            ..context(n)
        })
        .collect();
    for r in &mine {
        store.insert_context(r, None).await.expect("insert");
    }
    let theirs = bobs(200);
    store.insert_context(&theirs, None).await.expect("insert");
    mine.sort_by_key(|r| std::cmp::Reverse((r.updated_at, r.id)));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_contexts("erin", 3, ListOrder::Updated, after)
            .await
            .expect("list");
        assert_eq!(page.total, 7);
        seen.extend(page.contexts.iter().map(|r| r.id));
        match page.contexts.last() {
            Some(last) if page.contexts.len() == 3 => {
                after = Some(Cursor::after(ListOrder::Updated, last));
            }
            _ => break,
        }
    }
    assert_eq!(seen, mine.iter().map(|r| r.id).collect::<Vec<_>>());
    for r in &mine {
        store.delete_context("erin", r.id).await.expect("delete");
    }
    store
        .delete_context("bob", theirs.id)
        .await
        .expect("delete");
}

/// Stores a context with these messages as one save, updated `n` seconds after the epoch
/// the other contexts of the suite use.
async fn chat_with(store: &dyn Store, n: i64, title: &str, texts: &[&str]) -> ContextRecord {
    chat_of(store, "alice", n, title, texts).await
}

/// `chat_with` for another owner.
pub(crate) async fn chat_of(
    store: &dyn Store,
    owner: &str,
    n: i64,
    title: &str,
    texts: &[&str],
) -> ContextRecord {
    let mut c = context(n);
    c.owner = owner.into();
    c.title = title.into();
    store.insert_context(&c, None).await.expect("insert");
    c.version = 2;
    c.message_count = texts.len() as u64;
    store
        .save(&SaveBatch {
            context: c.clone(),
            messages: texts
                .iter()
                .enumerate()
                .map(|(i, t)| message(i as u64, 2, t))
                .collect(),
            expected_version: 1,
            dequeued: Vec::new(),
        })
        .await
        .expect("save");
    c
}

async fn found(store: &dyn Store, q: &str) -> Vec<Uuid> {
    found_by(store, "alice", q).await
}

async fn found_by(store: &dyn Store, owner: &str, q: &str) -> Vec<Uuid> {
    let query = SearchQuery::parse(q).expect("a query with words");
    let page = store
        .search_contexts(owner, &query, 50)
        .await
        .expect("search");
    assert_eq!(page.total, page.hits.len() as u64, "{q}: total");
    page.hits.iter().map(|h| h.context.id).collect()
}

/// Full-text search: titles and message text, kept current by saves, ranked by relevance
/// then recency, safe against query syntax.
async fn search(store: &dyn Store) {
    let named = chat_with(store, 10, "Zebra crossing notes", &[]).await;
    let once = chat_with(
        store,
        11,
        "chat b",
        &["the quick brown fox jumps over a lazy zebra near the river bank today"],
    )
    .await;
    let thrice = chat_with(store, 12, "chat c", &["zebra zebra zebra"]).await;
    let other = chat_with(store, 13, "chat d", &["unrelated words"]).await;

    // A word matches as a prefix, in titles and in message text, case-insensitively.
    let hits = found(store, "ZEB").await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.contains(&named.id) && !hits.contains(&other.id));
    let pos = |id: Uuid| hits.iter().position(|h| *h == id).expect("found");
    assert!(
        pos(thrice.id) < pos(once.id),
        "more mentions in less text rank first"
    );
    // Every word must match.
    assert_eq!(found(store, "quick zebra").await, [once.id]);
    assert!(found(store, "zebra elephant").await.is_empty());

    // Equal matches: the most recently updated first.
    let older = chat_with(store, 20, "chat e", &["giraffe"]).await;
    let newer = chat_with(store, 21, "chat f", &["giraffe"]).await;
    assert_eq!(found(store, "giraffe").await, [newer.id, older.id]);

    // A search after the save that changes a message or a title finds the new text.
    let loaded = load(store, thrice.id).await;
    let mut edited = message(0, 3, "okapi sighting");
    edited.message = Arc::new(Message {
        id: loaded.messages[0].message.id,
        ..(*edited.message).clone()
    });
    let mut c = thrice.clone();
    c.version = 3;
    c.title = "Renamed chat about tapirs".into();
    store
        .save(&SaveBatch {
            context: c.clone(),
            messages: vec![edited],
            expected_version: 2,
            dequeued: Vec::new(),
        })
        .await
        .expect("save");
    assert_eq!(found(store, "okapi").await, [c.id]);
    assert_eq!(found(store, "tapirs").await, [c.id]);
    assert_eq!(
        found(store, "zebra").await.len(),
        2,
        "the old text is no longer found"
    );

    // Query syntax in the input is only words to the database.
    for q in [
        r#"zebra" OR "x"#,
        "NEAR(zebra",
        "title:zebra",
        "zebra*)",
        "-zebra ^",
    ] {
        let hits = found(store, q).await;
        assert!(hits.len() <= 2, "{q}: {hits:?}");
    }

    // Another user's matching chat is found by them only, and counts for nobody else.
    let mut theirs = bobs(40);
    theirs.title = "giraffe facts".into();
    store.insert_context(&theirs, None).await.expect("insert");
    assert_eq!(found_by(store, "bob", "giraffe").await, [theirs.id]);
    assert!(!found(store, "giraffe").await.contains(&theirs.id));

    // A deleted context is not found any more.
    assert!(store
        .delete_context("alice", newer.id)
        .await
        .expect("delete"));
    assert_eq!(found(store, "giraffe").await, [older.id]);

    // A reply is indexed once it is final: not at the saves while it streams.
    let mut c = chat_with(store, 22, "chat g", &[]).await;
    let reply_id = Uuid::new_v4();
    for (version, text, status) in [
        (3, "a wombat", MessageStatus::Streaming),
        (4, "a wombat digs", MessageStatus::Streaming),
        (5, "a wombat digs a burrow", MessageStatus::Complete),
        (6, "a wombat digs a den", MessageStatus::Complete),
    ] {
        let mut m = message(0, version, text);
        m.message = Arc::new(Message {
            id: reply_id,
            role: Role::Assistant,
            client_message_id: None,
            status,
            ..(*m.message).clone()
        });
        c.version = version;
        let batch = SaveBatch {
            context: c.clone(),
            messages: vec![m],
            expected_version: version - 1,
            dequeued: Vec::new(),
        };
        store.save(&batch).await.expect("save");
        let burrow = found(store, "burrow").await;
        let wombat = found(store, "wombat").await;
        match version {
            3 | 4 => assert!(wombat.is_empty(), "streaming: {wombat:?}"),
            5 => assert_eq!((wombat, burrow), (vec![c.id], vec![c.id])),
            _ => assert_eq!((wombat, burrow), (vec![c.id], vec![])),
        }
    }
}

/// Writes one context with a message straight into the tables (as the first schema had
/// them) and returns its id.
pub(crate) async fn stored_before_search(pool: &sqlx::AnyPool) -> Uuid {
    let c = context(30);
    let m = message(0, 1, "a walrus sighting");
    sqlx::query(
        "INSERT INTO contexts (id, title, state, version, message_count, created_at, updated_at) \
         VALUES ($1, 'Archived chat', $2, 1, 1, $3, $3)",
    )
    .bind(c.id.to_string())
    .bind(c.state.name().as_str())
    .bind(super::format_time(&c.created_at))
    .execute(pool)
    .await
    .expect("old context");
    sqlx::query(
        "INSERT INTO messages (id, context_id, seq, role, content, status, created_at, version) \
         VALUES ($1, $2, 0, $3, $4, $5, $6, 1)",
    )
    .bind(m.message.id.to_string())
    .bind(c.id.to_string())
    .bind(m.message.role.as_str())
    .bind(serde_json::to_string(&m.message.content).expect("json"))
    .bind(m.message.status.as_str())
    .bind(super::format_time(&m.message.created_at))
    .execute(pool)
    .await
    .expect("old message");
    c.id
}
