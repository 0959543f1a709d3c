//! The shell in headless Chromium against the real chatsync server, through the Rust API
//! of the exported class. `scripts/test.sh` starts the server and passes its API URL (and
//! a closed port) at compile time; run by `wasm-bindgen-test-runner`.
#![cfg(target_arch = "wasm32")]

use chatsync_protocol::{
    ApproveToolsRequest, CancelRequest, ChatState, ContentPart, ContextConfig, ContextSummary,
    CreateContextRequest, EditMessageRequest, ErrorBody, ErrorDetail, IfBusy, LegacyContent,
    LegacyCreateMessageRequest, LegacyMessagesResponse, LegacyPatchMessageRequest,
    ListContextsResponse, Message, MessageStatus, RegenerateRequest, RenameContextRequest, Role,
    SendMessageRequest, StateName, Status, SwitchBranchRequest, ToolCall, ToolCallStatus,
};
use chatsync_sync_wasm::convert::{from_js, to_js};
use chatsync_sync_wasm::ChatSync;
use gloo_timers::future::TimeoutFuture;
use js_sys::{Array, Object, Promise, Reflect, JSON};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

#[path = "../benches/support/fixture.rs"]
mod fixture;

wasm_bindgen_test_configure!(run_in_browser);

/// Set by `scripts/test.sh`: the API of a server started for these tests.
const API: Option<&str> = option_env!("CHATSYNC_TEST_API");
/// Set by `scripts/test.sh`: an API URL on a 127.0.0.1 port nothing listens on.
const CLOSED_API: Option<&str> = option_env!("CHATSYNC_TEST_CLOSED_API");

#[wasm_bindgen(inline_js = r#"
const log = [];
// Wraps fetch once, so tests can see which requests the module made and how they ended.
export function recordRequests() {
  if (globalThis.fetch.recording) return;
  const original = globalThis.fetch;
  const recording = (input, init) => {
    const request = new Request(input, init);
    const entry = { url: request.url, ifNoneMatch: request.headers.get("If-None-Match"), status: null };
    log.push(entry);
    return original(request).then((response) => {
      entry.status = response.status;
      return response;
    });
  };
  recording.recording = true;
  globalThis.fetch = recording;
}
export function requestsTo(fragment) {
  return log.filter((entry) => entry.url.includes(fragment));
}
export async function sendAsAnotherClient(api, contextId, text) {
  const response = await fetch(`${api}/contexts/${contextId}/actions/send_message?wait=false`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ content: text }),
  });
  if (!response.ok) throw new Error(`send_message answered ${response.status}`);
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = recordRequests)]
    fn record_requests();
    #[wasm_bindgen(js_name = requestsTo)]
    fn requests_to(fragment: &str) -> Array;
    #[wasm_bindgen(js_name = sendAsAnotherClient)]
    fn send_as_another_client(api: &str, context_id: &str, text: &str) -> Promise;
}

fn api() -> &'static str {
    API.expect("CHATSYNC_TEST_API must be set at compile time (scripts/test.sh does)")
}

fn new_sync(options: &str) -> ChatSync {
    let options = JSON::parse(options).expect("options are JSON");
    ChatSync::new(options.unchecked_into()).expect("valid options")
}

async fn settle(promise: impl JsCast) -> Result<JsValue, JsValue> {
    JsFuture::from(promise.unchecked_into::<Promise>()).await
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).expect("an object")
}

fn view(sync: &ChatSync) -> JsValue {
    sync.get_view().into()
}

fn phase(sync: &ChatSync) -> String {
    get(&view(sync), "sync").as_string().unwrap_or_default()
}

/// A new context, followed by a started `ChatSync` with these options added.
async fn following_new_context(extra_options: &str) -> (ChatSync, String) {
    let sync = new_sync(&format!(r#"{{"baseUrl":"{}"{extra_options}}}"#, api()));
    let summary = settle(sync.create_context(None))
        .await
        .expect("context created");
    let id = get(&summary, "id").as_string().expect("an id");
    sync.set_context(Some(id.clone()));
    sync.start();
    until("the first answer", || phase(&sync) == "synced").await;
    (sync, id)
}

/// Waits until `condition` holds; fails at the deadline.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = js_sys::Date::now() + 5_000.0;
    while !condition() {
        assert!(
            js_sys::Date::now() < deadline,
            "timed out waiting for {what}"
        );
        TimeoutFuture::new(10).await;
    }
}

fn polls(context_id: &str) -> Vec<JsValue> {
    requests_to(&format!("/contexts/{context_id}/state")).to_vec()
}

/// Proving that nothing happens takes a wait: this one spans several poll intervals.
async fn quiet_period() {
    TimeoutFuture::new(300).await;
}

/// Makes the page look hidden or visible, as switching tabs does.
fn set_hidden(hidden: bool) {
    let document = web_sys::window()
        .and_then(|w| w.document())
        .expect("a document");
    let descriptor = Object::new();
    let state = if hidden { "hidden" } else { "visible" };
    Reflect::set(&descriptor, &"value".into(), &state.into()).expect("set");
    Reflect::set(&descriptor, &"configurable".into(), &true.into()).expect("set");
    Object::define_property(&document, &"visibilityState".into(), &descriptor);
    let event = web_sys::Event::new("visibilitychange").expect("an event");
    document.dispatch_event(&event).expect("dispatched");
}

#[wasm_bindgen_test]
async fn polling_shows_a_message_another_client_sent() {
    let (sync, id) = following_new_context(r#","baseIntervalMs":50"#).await;
    settle(send_as_another_client(api(), &id, "sent elsewhere"))
        .await
        .expect("the other client's send");
    until("the other client's message", || {
        let messages: Array = get(&view(&sync), "messages").unchecked_into();
        messages
            .iter()
            .any(|m| get(&m, "text").as_string().as_deref() == Some("sent elsewhere"))
    })
    .await;
    drop(sync);
}

#[wasm_bindgen_test]
async fn quiet_polls_are_answered_304_and_back_off_to_the_cap() {
    record_requests();
    let (sync, id) = following_new_context(
        r#","mode":"interval","baseIntervalMs":50,"maxIntervalMs":200,"backoffFactor":2,"unchangedPollsBeforeBackoff":1"#,
    )
    .await;
    until("the longest interval", || {
        get(&view(&sync), "pollIntervalMs").as_f64() == Some(200.0)
    })
    .await;
    let current = view(&sync);
    assert_eq!(phase(&sync), "synced");
    assert!(get(&current, "lastError").is_null());
    let answered: Vec<JsValue> = polls(&id)
        .into_iter()
        .filter(|p| !get(p, "status").is_null())
        .collect();
    let statuses: Vec<f64> = answered
        .iter()
        .filter_map(|p| get(p, "status").as_f64())
        .collect();
    assert_eq!(
        statuses.first(),
        Some(&200.0),
        "the first poll gets everything"
    );
    assert!(statuses.len() >= 3, "polled a few times: {statuses:?}");
    assert!(
        statuses[1..].iter().all(|s| *s == 304.0),
        "an unchanged context costs a 304: {statuses:?}"
    );
    for poll in &answered[1..] {
        assert!(get(poll, "url")
            .as_string()
            .unwrap_or_default()
            .contains("?since="));
        assert!(get(poll, "ifNoneMatch").is_string(), "conditional polls");
    }
    drop(sync);
}

#[wasm_bindgen_test]
async fn a_hidden_page_makes_no_requests_and_polls_at_once_when_visible() {
    record_requests();
    let (sync, id) = following_new_context(r#","baseIntervalMs":50"#).await;
    set_hidden(true);
    let hidden = view(&sync);
    assert_eq!(phase(&sync), "paused");
    assert!(get(&hidden, "nextPollAt").is_null(), "no poll scheduled");
    let before = polls(&id).len();
    quiet_period().await;
    assert_eq!(polls(&id).len(), before, "no requests while hidden");

    set_hidden(false);
    // No timer: the poll goes out at once rather than after an interval.
    assert!(get(&view(&sync), "nextPollAt").is_null());
    assert_eq!(get(&view(&sync), "pollIntervalMs").as_f64(), Some(50.0));
    until("a poll once visible", || polls(&id).len() > before).await;
    drop(sync);
}

#[wasm_bindgen_test]
async fn deleting_the_context_stops_polling_it() {
    record_requests();
    let (sync, id) = following_new_context(r#","baseIntervalMs":50"#).await;
    settle(sync.delete_context(id.clone()))
        .await
        .expect("deleted");
    assert_eq!(phase(&sync), "deleted");
    assert!(get(&view(&sync), "nextPollAt").is_null());
    let after_delete = polls(&id).len();
    quiet_period().await;
    assert_eq!(polls(&id).len(), after_delete, "no polls after deletion");
    drop(sync);
}

#[wasm_bindgen_test]
async fn a_send_to_an_unreachable_server_marks_the_message_failed() {
    let closed = CLOSED_API.expect("CHATSYNC_TEST_CLOSED_API must be set at compile time");
    let sync = new_sync(&format!(
        r#"{{"baseUrl":"{closed}","contextId":"6f1c2b8e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"}}"#
    ));
    let error = settle(sync.send_message("never arrives".into()))
        .await
        .expect_err("the send fails");
    assert_eq!(get(&error, "kind").as_string().as_deref(), Some("network"));
    let messages: Array = get(&view(&sync), "messages").unchecked_into();
    assert_eq!(messages.length(), 1);
    let failed = messages.get(0);
    assert_eq!(
        get(&failed, "status").as_string().as_deref(),
        Some("failed")
    );
    assert!(get(&failed, "error")
        .as_string()
        .is_some_and(|e| !e.is_empty()));
    drop(sync);
}

/// Not a check of speed: it prints the reconcile cost in the browser, as
/// `benches/reconcile.rs` does natively.
#[wasm_bindgen_test]
fn reconcile_benchmark() {
    let performance = web_sys::window()
        .and_then(|w| w.performance())
        .expect("performance");
    let figures = fixture::measure(|| performance.now());
    console_log!("{figures}, Chromium");
}

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

fn stamp() -> chatsync_protocol::Timestamp {
    "2024-05-06T07:08:09.123456Z".parse().expect("a timestamp")
}

fn tool_call(status: ToolCallStatus) -> ToolCall {
    ToolCall {
        id: "call_1".into(),
        name: "calculator".into(),
        arguments: serde_json::json!({"expression": "1+2", "nested": [1, 2.5, null, true]}),
        status,
        result: Some("3".into()),
    }
}

fn sample_message(version: u64) -> Message {
    Message {
        id: uuid::Uuid::from_u128(7),
        client_message_id: Some("c-1".into()),
        role: Role::Assistant,
        content: vec![ContentPart::text("hello \u{1F600}")],
        tool_calls: Some(vec![tool_call(ToolCallStatus::Pending)]),
        tool_call_id: None,
        status: MessageStatus::Streaming,
        created_at: stamp(),
        version,
        parent_id: Some(uuid::Uuid::from_u128(6)),
        sibling_index: 1,
        sibling_count: 2,
    }
}

fn sample_state(version: u64) -> ChatState {
    ChatState {
        context_id: uuid::Uuid::from_u128(9),
        version,
        status: Status::AwaitingApproval,
        state: StateName::AwaitingToolApproval,
        error: Some("e".into()),
        messages: vec![sample_message(version)],
        message_count: 1,
        pending_tool_calls: vec![tool_call(ToolCallStatus::Pending)],
        updated_at: stamp(),
        delta: true,
        queued: vec![Message {
            status: MessageStatus::Queued,
            role: Role::User,
            tool_calls: None,
            ..sample_message(1)
        }],
    }
}

fn sample_summary(version: u64) -> ContextSummary {
    ContextSummary {
        id: uuid::Uuid::from_u128(9),
        title: "t".into(),
        status: Status::Idle,
        state: StateName::Idle,
        message_count: 3,
        version,
        created_at: stamp(),
        updated_at: stamp(),
        config: ContextConfig {
            model_id: Some("m".into()),
            mode: None,
            system_prompt: Some("be brief".into()),
        },
        snippet: None,
    }
}

/// Into JavaScript and back gives the same value, and the JavaScript value is what the
/// server's JSON for it parses to, so the browser's `JSON` and the wire agree.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let js = to_js(&value).expect("into JavaScript");
    let back: T = from_js(js.clone(), "value").expect("out of JavaScript");
    assert_eq!(back, value);
    let written = String::from(JSON::stringify(&js).expect("stringify"));
    let written: serde_json::Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(written, serde_json::to_value(&value).expect("serde_json"));
}

#[wasm_bindgen_test]
fn every_protocol_type_round_trips_through_serde_wasm_bindgen() {
    round_trip(sample_state(MAX_SAFE));
    round_trip(sample_message(3));
    round_trip(sample_summary(4));
    round_trip(ListContextsResponse {
        contexts: vec![sample_summary(1)],
        total: MAX_SAFE,
        next_cursor: Some("next".into()),
    });
    round_trip(CreateContextRequest {
        title: Some("t".into()),
        ..CreateContextRequest::default()
    });
    round_trip(SendMessageRequest {
        content: "hi".into(),
        client_message_id: Some("c-1".into()),
        if_busy: Some(IfBusy::Interrupt),
    });
    round_trip(CancelRequest {
        message_id: Some(uuid::Uuid::from_u128(5)),
    });
    round_trip(ApproveToolsRequest {
        tool_call_ids: vec!["call_1".into()],
    });
    round_trip(ErrorBody {
        error: ErrorDetail {
            code: "busy".into(),
            message: "a turn is running".into(),
            request_id: Some("req-1".into()),
        },
    });
    round_trip(RenameContextRequest {
        title: "renamed".into(),
    });
    round_trip(EditMessageRequest {
        message_id: uuid::Uuid::from_u128(8),
        content: "edited".into(),
        client_message_id: Some("c-2".into()),
    });
    round_trip(RegenerateRequest {
        message_id: Some(uuid::Uuid::from_u128(7)),
    });
    round_trip(SwitchBranchRequest {
        message_id: uuid::Uuid::from_u128(6),
        sibling_index: Some(2),
    });
    round_trip(LegacyMessagesResponse {
        messages: vec![sample_message(2)],
        total: 1,
    });
    round_trip(LegacyCreateMessageRequest {
        role: Role::User,
        content: LegacyContent::Text("plain".into()),
        branch: None,
        tool_call_id: Some("call_1".into()),
    });
    round_trip(LegacyPatchMessageRequest {
        content: LegacyContent::Parts(vec![ContentPart::text("parts")]),
    });
    for status in [
        ToolCallStatus::Approved,
        ToolCallStatus::Denied,
        ToolCallStatus::Running,
        ToolCallStatus::Completed,
        ToolCallStatus::Failed,
    ] {
        round_trip(tool_call(status));
    }
}

#[wasm_bindgen_test]
fn integers_beyond_2_pow_53_are_a_clear_error_both_ways() {
    let out = to_js(&sample_state(MAX_SAFE + 1)).expect_err("no silent rounding");
    assert!(
        out.message
            .contains("can't be represented as a JavaScript number"),
        "{}",
        out.message
    );
    // What `response.json()` makes of a version the server sent past 2^53.
    let mut wire = serde_json::to_value(sample_state(1)).expect("json");
    wire["version"] = serde_json::json!(MAX_SAFE + 2);
    let parsed = JSON::parse(&wire.to_string()).expect("JSON");
    let read = from_js::<ChatState>(parsed, "state").expect_err("no silent rounding");
    // The browser already rounded it on parsing; the error says so instead of using it.
    assert!(
        read.message.contains("invalid type: floating point") && read.message.contains("u64"),
        "{}",
        read.message
    );
}
