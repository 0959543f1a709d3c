//! The context in memory: streaming, catching up, the queue, branches and deltas.

use super::*;
use crate::engine::testing::context_in;
use crate::store::MessageRecord;
use chatsync_protocol::{content_text, StateName, ToolCall};

fn record_at(ctx: &LiveContext, version: u64, count: u64) -> ContextRecord {
    ContextRecord {
        version,
        message_count: count,
        ..ctx.record.clone()
    }
}

fn stored(seq: u64, text: &str, version: u64, parent: Option<Uuid>) -> MessageRecord {
    let mut m = new_message(Role::User, vec![ContentPart::text(text)], None);
    m.version = version;
    m.parent_id = parent;
    MessageRecord {
        message: Arc::new(m),
        seq,
        idempotency_key: None,
    }
}

fn texts(ctx: &LiveContext) -> Vec<String> {
    ctx.messages()
        .iter()
        .map(|m| content_text(&m.content))
        .collect()
}

fn say(ctx: &mut LiveContext, text: &str) -> Uuid {
    let i = ctx.push(
        new_message(Role::User, vec![ContentPart::text(text)], None),
        None,
    );
    ctx.publish();
    ctx.messages()[i].id
}

#[test]
fn durable_messages_hold_only_what_a_save_wrote() {
    let mut ctx = context_in(StateName::StreamingLlmResponse);
    say(&mut ctx, "question");
    ctx.begin_save();
    ctx.end_save(true);
    let mut reply = new_message(Role::Assistant, vec![ContentPart::text("")], None);
    reply.status = MessageStatus::Streaming;
    let i = ctx.push(reply, None);
    ctx.append_text(i, "shown ");
    ctx.publish();
    let snapshot = ctx.snapshot(Turns::default());
    assert_eq!(
        snapshot.durable_messages().len(),
        1,
        "a reply no save wrote is not durable"
    );
    assert!(!snapshot.is_durable());
    ctx.begin_save();
    ctx.end_save(true);
    ctx.append_text(i, "and more");
    ctx.publish();
    let snapshot = ctx.snapshot(Turns::default());
    let durable = snapshot.durable_messages();
    assert_eq!(durable.len(), 2);
    assert_eq!(content_text(&durable[1].content), "shown ");
    assert_eq!(
        content_text(&snapshot.messages()[i].content),
        "shown and more",
        "readers still see everything"
    );
    ctx.begin_save();
    ctx.end_save(true);
    let snapshot = ctx.snapshot(Turns::default());
    assert!(snapshot.is_durable());
    assert_eq!(
        content_text(&snapshot.durable_messages()[1].content),
        "shown and more"
    );
}

#[test]
fn a_streamed_reply_shows_whole_to_readers_the_store_and_its_next_change() {
    let mut ctx = context_in(StateName::StreamingLlmResponse);
    say(&mut ctx, "question");
    let mut reply = new_message(Role::Assistant, vec![ContentPart::text("")], None);
    reply.status = MessageStatus::Streaming;
    let i = ctx.push(reply, None);
    let bytes_before = ctx.approx_bytes();
    ctx.append_text(i, "Hello");
    ctx.publish();
    let first = ctx.snapshot(Turns::default());
    let since = first.version();
    ctx.append_text(i, ", wörld");
    ctx.append_tool_call(
        i,
        ToolCall {
            id: "call-1".into(),
            name: "calculator".into(),
            arguments: serde_json::json!({"expression": "1+1"}),
            status: ToolCallStatus::Pending,
            result: None,
        },
    );
    ctx.append_text(i, "!");
    ctx.publish();
    let second = ctx.snapshot(Turns::default());

    // Each snapshot keeps the text it was taken with, also while the writer appends.
    let text = |s: &Snapshot| content_text(&s.messages()[i].content);
    assert_eq!(text(&first), "Hello");
    assert_eq!(text(&second), "Hello, wörld!");
    let whole = second.chat_state_ref(None);
    assert_eq!(content_text(&whole.messages[i].content), "Hello, wörld!");
    assert_eq!(whole.messages[i].content.len(), 1, "one text part");
    let delta = second.chat_state(Some(since));
    assert_eq!(delta.messages.len(), 1, "only the reply changed");
    assert_eq!(content_text(&delta.messages[0].content), "Hello, wörld!");
    assert_eq!(delta.messages[0].tool_calls.as_ref().map(Vec::len), Some(1));
    assert_eq!(
        ctx.approx_bytes() - bytes_before,
        "Hello, wörld!".len() as u64
            + "call-1calculator".len() as u64
            + r#"{"expression":"1+1"}"#.len() as u64
    );

    // The store gets the whole reply.
    let batch = ctx.save_batch();
    let saved = batch
        .messages
        .iter()
        .find(|m| m.message.id == ctx.messages()[i].id);
    assert_eq!(
        saved.map(|m| content_text(&m.message.content)).as_deref(),
        Some("Hello, wörld!")
    );

    // Changing the reply otherwise gives it its text back, for good.
    ctx.message_mut(i).status = MessageStatus::Complete;
    assert_eq!(texts(&ctx)[i], "Hello, wörld!");
    ctx.publish();
    assert_eq!(text(&ctx.snapshot(Turns::default())), "Hello, wörld!");
    assert_eq!(
        text(&second),
        "Hello, wörld!",
        "an older snapshot is unchanged"
    );
}

#[test]
fn changes_from_another_instance_replace_and_append_messages() {
    let mut ctx = context_in(StateName::Idle);
    let base = ctx.record.clone();
    let loaded = |messages: Vec<MessageRecord>, version, count| LoadedContext {
        record: ContextRecord {
            version,
            message_count: count,
            active_leaf: messages.last().map(|m| m.message.id),
            ..base.clone()
        },
        messages,
    };
    let a = stored(0, "a", 8, None);
    let b = stored(1, "b", 8, Some(a.message.id));
    assert!(ctx.apply_changes(loaded(vec![a.clone(), b.clone()], 8, 2)));
    let mut b_edited = b.clone();
    Arc::make_mut(&mut b_edited.message).content = vec![ContentPart::text("b, edited")];
    let c = stored(2, "c", 9, Some(b.message.id));
    assert!(ctx.apply_changes(loaded(vec![b_edited, c.clone()], 9, 3)));
    assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
    assert_eq!((ctx.version(), ctx.saved_version()), (9, 9));
    assert!(!ctx.has_unsaved());

    // A message that does not hang under the end of the path (here: a sibling of c,
    // as an edit makes) moves the path: nothing applies, the caller reloads.
    let sibling = stored(3, "c2", 10, Some(b.message.id));
    assert!(!ctx.apply_changes(loaded(vec![sibling], 10, 3)));
    assert_eq!(texts(&ctx), ["a", "b, edited", "c"]);
    // A new leaf without new messages (a switch) does not apply either.
    let mut switched = loaded(vec![], 10, 2);
    switched.record.active_leaf = Some(b.message.id);
    assert!(!ctx.apply_changes(switched));
    assert_eq!(ctx.version(), 9);
}

fn queued(text: &str) -> QueuedRecord {
    let mut m = new_message(Role::User, vec![ContentPart::text(text)], None);
    m.status = MessageStatus::Queued;
    m.version = 7;
    QueuedRecord {
        message: Arc::new(m),
        idempotency_key: None,
        ahead: text.starts_with("interrupting"),
        turn: Default::default(),
    }
}

fn queued_texts(ctx: &LiveContext) -> Vec<String> {
    ctx.queued()
        .iter()
        .map(|q| content_text(&q.message.content))
        .collect()
}

#[test]
fn the_stored_queue_is_the_truth_and_held_entries_keep_their_place() {
    let mut ctx = context_in(StateName::Idle);
    let (first, mine, theirs) = (queued("interrupting"), queued("mine"), queued("theirs"));
    ctx.enqueue(mine.clone());
    ctx.enqueue(first.clone());
    ctx.publish();
    // The store lists by arrival; the interrupting message stays first here.
    let stored = vec![mine.clone(), first.clone(), theirs.clone()];
    assert!(ctx.sync_queued(stored.clone()));
    assert_eq!(queued_texts(&ctx), ["interrupting", "mine", "theirs"]);
    assert_eq!(
        ctx.queued()[2].message.version,
        0,
        "stamped by this writer's next publish"
    );
    ctx.publish();
    assert!(
        !ctx.sync_queued(stored),
        "the same queue again changes nothing"
    );

    // Another instance ran "interrupting" (it is history now) and dropped "mine".
    let started = first.message.id;
    ctx.push(Message::clone(&first.message), None);
    assert_eq!(ctx.messages().last().map(|m| m.id), Some(started));
    assert!(ctx.sync_queued(vec![first, theirs.clone()]));
    assert_eq!(queued_texts(&ctx), ["theirs"]);

    // One another instance queued to interrupt goes first.
    assert!(ctx.sync_queued(vec![theirs, queued("interrupting too")]));
    assert_eq!(queued_texts(&ctx), ["interrupting too", "theirs"]);
}

#[test]
fn a_context_with_its_own_pending_change_is_not_patched() {
    let mut ctx = context_in(StateName::Idle);
    ctx.push(
        new_message(Role::User, vec![ContentPart::text("mine")], None),
        None,
    );
    let changes = LoadedContext {
        record: record_at(&ctx, 8, 1),
        messages: vec![stored(0, "theirs", 8, None)],
    };
    assert!(!ctx.apply_changes(changes));
    assert_eq!(texts(&ctx), ["mine"]);
}

#[test]
fn a_new_branch_keeps_the_old_one_aside_and_saves_seq_in_insertion_order() {
    let mut ctx = context_in(StateName::Idle);
    let first = say(&mut ctx, "first");
    let second = say(&mut ctx, "second");
    assert!(ctx.switch_path(Some(first)));
    let edited = say(&mut ctx, "second, edited");
    assert_eq!(texts(&ctx), ["first", "second, edited"]);
    assert_eq!(ctx.messages()[1].parent_id, Some(first));
    assert_eq!(
        (
            ctx.messages()[1].sibling_index,
            ctx.messages()[1].sibling_count
        ),
        (1, 2)
    );
    let batch = ctx.save_batch();
    let seqs: Vec<(Uuid, u64)> = batch
        .messages
        .iter()
        .map(|m| (m.message.id, m.seq))
        .collect();
    assert_eq!(seqs, [(first, 0), (second, 1), (edited, 2)]);
    assert_eq!(batch.context.active_leaf, Some(edited));
    assert_eq!(batch.context.message_count, 2);

    // Reloading rebuilds the same path and the numbering of siblings.
    let reloaded = LiveContext::from_loaded(LoadedContext {
        record: batch.context.clone(),
        messages: batch.messages.clone(),
    });
    assert_eq!(texts(&reloaded), ["first", "second, edited"]);
    assert_eq!(reloaded.messages()[1].sibling_index, 1);
    let back = reloaded.tree().newest_leaf(second);
    assert_eq!(back, Some(second));
}

#[test]
fn a_delta_from_before_a_path_change_is_the_whole_state() {
    let mut ctx = context_in(StateName::Idle);
    let first = say(&mut ctx, "first");
    say(&mut ctx, "second");
    let before = ctx.snapshot(Turns::default());
    let v = before.version();
    assert!(before.chat_state(Some(v)).delta, "nothing moved: a delta");
    assert!(ctx.switch_path(Some(first)));
    assert!(ctx.publish());
    let after = ctx.snapshot(Turns::default());
    let state = after.chat_state(Some(v));
    assert!(!state.delta);
    assert_eq!(state.messages.len(), 1);
    assert_eq!(state.message_count, 1);
    assert!(after.chat_state(Some(after.version())).delta);
    assert!(!ctx.switch_path(Some(first)), "already there: no change");
}
