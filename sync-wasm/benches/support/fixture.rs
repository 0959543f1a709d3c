//! The reconcile benchmark's workload, shared by the native benchmark
//! (`benches/reconcile.rs`) and its run in Chromium (`tests/browser.rs`).

use chatsync_protocol::{
    ChatState, ContentPart, Message, MessageStatus, Role, StateName, Status, Timestamp,
};
use chatsync_sync_wasm::core::reconcile::Chat;
use uuid::Uuid;

const MESSAGES: usize = 10_000;
const PENDING: usize = 10;
const RUNS: usize = 200;
const CONTEXT: &str = "6f1c2b8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b";

/// Times `RUNS` reconciles with the clock `now_ms` (milliseconds from any origin) and
/// says how long they took.
pub fn measure(now_ms: impl Fn() -> f64) -> String {
    let (chat, state) = workload();
    let samples = (0..RUNS)
        .map(|_| {
            let (mut chat, state) = (chat.clone(), state.clone());
            let start = now_ms();
            let shown = reconcile(&mut chat, state);
            let elapsed = now_ms() - start;
            assert_eq!(shown, MESSAGES + PENDING, "every message is shown once");
            elapsed
        })
        .collect();
    format!(
        "reconcile of {MESSAGES} messages with {PENDING} pending: {}",
        summary(samples)
    )
}

/// A chat that shows version 1 of a 10,000-message context plus 10 messages still being
/// sent, and the next full state the server answers: version 2, where the last message
/// changed. Applying it is what every poll that sees a change does.
fn workload() -> (Chat, ChatState) {
    let mut chat = Chat::new(Some(CONTEXT.to_owned()));
    chat.apply(state(1));
    let at: Timestamp = "2024-05-06T07:08:09.123456Z".parse().expect("a timestamp");
    for n in 0..PENDING {
        chat.add_local(
            format!("pending-{n}"),
            format!("sending {n}"),
            Timestamp::clone(&at),
        );
    }
    (chat, state(2))
}

/// One reconcile: the state applied and the message list the view shows built. Gives
/// the number of messages shown.
fn reconcile(chat: &mut Chat, state: ChatState) -> usize {
    chat.apply(state);
    chat.messages().len()
}

/// "median X ms, p95 Y ms over N runs" for samples in milliseconds.
fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let nth = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "median {:.3} ms, p95 {:.3} ms over {} runs",
        nth(0.5),
        nth(0.95),
        samples.len()
    )
}

fn state(version: u64) -> ChatState {
    let at: Timestamp = "2024-05-06T07:08:09.123456Z".parse().expect("a timestamp");
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|n| {
            let user = n % 2 == 0;
            let last = n == MESSAGES - 1;
            Message {
                id: Uuid::from_u128(n as u128 + 1),
                client_message_id: user.then(|| format!("client-{n}")),
                role: if user { Role::User } else { Role::Assistant },
                content: vec![ContentPart::text(format!(
                    "message {n}: a sentence or two of chat, about as long as a short reply{}",
                    if last && version > 1 { " (edited)" } else { "" }
                ))],
                tool_calls: None,
                tool_call_id: None,
                status: MessageStatus::Complete,
                created_at: Timestamp::clone(&at),
                version: if last { version } else { 1 },
                parent_id: None,
                sibling_index: 0,
                sibling_count: 1,
            }
        })
        .collect();
    ChatState {
        context_id: CONTEXT.parse().expect("a uuid"),
        version,
        status: Status::Idle,
        state: StateName::Idle,
        error: None,
        message_count: messages.len() as u64,
        messages,
        pending_tool_calls: Vec::new(),
        updated_at: at,
        delta: false,
        queued: Vec::new(),
    }
}
