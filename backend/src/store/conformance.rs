//! One behavioural suite that every `Store` implementation must pass.

use super::{ContextRecord, Cursor, LoadedContext, MessageRecord, SaveBatch, Store, StoreError};
use crate::fsm::State;
use chatsync_protocol::{
    ContentPart, ContextConfig, Message, MessageStatus, Role, ToolCall, ToolCallStatus,
};
use chrono::{Duration, TimeZone, Utc};
use std::sync::Arc;
use uuid::Uuid;

fn context(n: i64) -> ContextRecord {
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
    }
}

fn message(seq: u64, version: u64, text: &str) -> MessageRecord {
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
        }),
        seq,
        idempotency_key: Some(format!("key-{seq}")),
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
    store.insert_context(&c).await.expect("insert");
    let loaded = load(store, c.id).await;
    assert_eq!(loaded.record, c);
    assert!(loaded.messages.is_empty());

    let first = message(0, 2, "hello");
    let mut second = message(1, 2, "world");
    c.version = 2;
    c.message_count = 2;
    c.state = State::ProcessingUserMessage;
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

    // Unfinished contexts are those saved outside a resting state.
    let mut running = context(1);
    running.state = State::StreamingLlmResponse;
    store.insert_context(&running).await.expect("insert");
    let unfinished = store.unfinished_contexts().await.expect("unfinished");
    assert_eq!(unfinished, vec![running.id]);

    // Listing is newest first, paged by cursor, with the total.
    let mut more = Vec::new();
    for n in 2..6 {
        let r = context(n);
        store.insert_context(&r).await.expect("insert");
        more.push(r);
    }
    let page = store.list_contexts(4, None).await.expect("list");
    assert_eq!(page.total, 6);
    let ids: Vec<_> = page.contexts.iter().map(|r| r.id).collect();
    assert_eq!(ids, [more[3].id, more[2].id, more[1].id, more[0].id]);
    let last = page.contexts.last().expect("page");
    let next = Cursor {
        created_at: last.created_at,
        id: last.id,
    };
    let page2 = store.list_contexts(4, Some(next)).await.expect("list");
    let ids: Vec<_> = page2.contexts.iter().map(|r| r.id).collect();
    assert_eq!(ids, [running.id, c.id]);

    // Deleting removes the context and its messages; saving it afterwards says so.
    assert!(store.delete_context(c.id).await.expect("delete"));
    assert!(!store.delete_context(c.id).await.expect("delete twice"));
    assert_eq!(store.load_context(c.id).await.expect("load"), None);
    assert!(matches!(
        store
            .save(&SaveBatch {
                context: ContextRecord {
                    version: 4,
                    ..c.clone()
                },
                messages: vec![],
                expected_version: 3,
                dequeued: Vec::new(),
            })
            .await,
        Err(StoreError::Gone(id)) if id == c.id
    ));
}
