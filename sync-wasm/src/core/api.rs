//! The HTTP calls of the sync module, as plain data: which URL, which headers, which body,
//! and how to read the answer. The shell only moves the values.

use chatsync_protocol::{
    ApproveToolsRequest, ChatState, CreateContextRequest, ErrorBody, RenameContextRequest,
    SendMessageRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::SyncError;
use super::syncer::{PollOutcome, PollRequest};
use super::view::ListOptions;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<RequestBody>,
}

/// The JSON body of a request, written by the shell (through the browser's `JSON`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RequestBody {
    SendMessage(SendMessageRequest),
    ApproveTools(ApproveToolsRequest),
    CreateContext(CreateContextRequest),
    RenameContext(RenameContextRequest),
    MessageRef(MessageRef),
    EditMessage(EditMessageBody),
}

/// The body of the actions that name a message (cancel a queued one, regenerate, switch
/// branch). The protocol's request types hold parsed ids, and parsing them here would pull
/// a UUID parser into the package only to let the server refuse a bad id anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRef {
    /// `None` only for `regenerate`, where the server picks the last reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `switch_branch` only: go to this sibling of the message instead (0-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sibling_index: Option<u32>,
}

/// `edit_message`: a new version of a user message on the active path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditMessageBody {
    pub message_id: String,
    pub content: String,
}

/// The body of an answer, already parsed from JSON by whoever received it: the browser in
/// the shell, `serde_json` in the native tests. Reading it as a type is all the core needs.
pub trait Body {
    /// The body as a `T`, or what does not fit.
    fn read<T: DeserializeOwned>(&self) -> Result<T, String>;
}

/// The actions that take no body and answer with the context's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareAction {
    Cancel,
    Retry,
}

/// Builds requests against one API base URL, such as `/api` or `http://host:8080/api`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    base: String,
}

impl Api {
    pub fn new(base_url: &str) -> Self {
        Api {
            base: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// A poll. Asking for a delta also sends the ETag of the version held, so an unchanged
    /// context costs the server a 304 and no body.
    pub fn poll(&self, poll: &PollRequest) -> HttpRequest {
        match poll.since {
            Some(version) => HttpRequest {
                headers: vec![("If-None-Match", format!("\"{version}\""))],
                url: match poll.wait_ms {
                    Some(wait) => format!(
                        "{}?since={version}&wait_ms={wait}",
                        self.state_url(&poll.context_id)
                    ),
                    None => format!("{}?since={version}", self.state_url(&poll.context_id)),
                },
                ..get(String::new())
            },
            None => get(self.state_url(&poll.context_id)),
        }
    }

    /// One plain `GET /state`.
    pub fn state(&self, context_id: &str) -> HttpRequest {
        get(self.state_url(context_id))
    }

    /// `wait=false`: the answer comes once the message is stored, not when the turn ends;
    /// polling shows the reply as it streams.
    pub fn send_message(
        &self,
        context_id: &str,
        text: &str,
        client_message_id: &str,
    ) -> HttpRequest {
        let mut request = post(
            format!("{}/send_message?wait=false", self.actions_url(context_id)),
            RequestBody::SendMessage(SendMessageRequest {
                content: text.to_owned(),
                client_message_id: Some(client_message_id.to_owned()),
                if_busy: None,
            }),
        );
        request
            .headers
            .push(("Idempotency-Key", client_message_id.to_owned()));
        request
    }

    pub fn approve_tools(&self, context_id: &str, tool_call_ids: Vec<String>) -> HttpRequest {
        post(
            format!("{}/approve_tools", self.actions_url(context_id)),
            RequestBody::ApproveTools(ApproveToolsRequest { tool_call_ids }),
        )
    }

    pub fn bare_action(&self, context_id: &str, action: BareAction) -> HttpRequest {
        let name = match action {
            BareAction::Cancel => "cancel",
            BareAction::Retry => "retry",
        };
        // No body, but said to be JSON: the server refuses a POST a cross-site form
        // could send, and takes an empty JSON body as none.
        json_post(format!("{}/{name}", self.actions_url(context_id)), None)
    }

    /// Drops one queued message; it never runs.
    pub fn cancel_queued(&self, context_id: &str, message_id: &str) -> HttpRequest {
        post(
            format!("{}/cancel", self.actions_url(context_id)),
            message_ref(Some(message_id)),
        )
    }

    /// A new version of a user message; its turn runs and streams like a send's
    /// (`wait=false`: the answer comes once the new branch is stored).
    pub fn edit_message(&self, context_id: &str, message_id: &str, content: &str) -> HttpRequest {
        post(
            format!("{}/edit_message?wait=false", self.actions_url(context_id)),
            RequestBody::EditMessage(EditMessageBody {
                message_id: message_id.to_owned(),
                content: content.to_owned(),
            }),
        )
    }

    /// A new reply beside an assistant message (`None`: the last one); it streams.
    pub fn regenerate(&self, context_id: &str, message_id: Option<&str>) -> HttpRequest {
        post(
            format!("{}/regenerate?wait=false", self.actions_url(context_id)),
            message_ref(message_id),
        )
    }

    /// Makes the newest leaf under `message_id` (or under its sibling at `sibling_index`)
    /// the end of the active path.
    pub fn switch_branch(
        &self,
        context_id: &str,
        message_id: &str,
        sibling_index: Option<u32>,
    ) -> HttpRequest {
        post(
            format!("{}/switch_branch", self.actions_url(context_id)),
            RequestBody::MessageRef(MessageRef {
                message_id: Some(message_id.to_owned()),
                sibling_index,
            }),
        )
    }

    pub fn rename_context(&self, context_id: &str, title: &str) -> HttpRequest {
        HttpRequest {
            method: "PATCH",
            ..post(
                self.context_url(context_id),
                RequestBody::RenameContext(RenameContextRequest {
                    title: title.to_owned(),
                }),
            )
        }
    }

    pub fn create_context(&self, request: CreateContextRequest) -> HttpRequest {
        post(
            format!("{}/contexts", self.base),
            RequestBody::CreateContext(request),
        )
    }

    /// A page of the list, or (with `query`) the best matches of a search.
    pub fn list_contexts(&self, options: &ListOptions) -> HttpRequest {
        let mut query = Vec::new();
        if let Some(limit) = options.limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(cursor) = &options.cursor {
            query.push(format!("cursor={}", encode(cursor)));
        }
        if let Some(words) = &options.query {
            query.push(format!("q={}", encode(words)));
        }
        if let Some(order) = options.order {
            query.push(format!("order={}", order.as_str()));
        }
        let mut url = format!("{}/contexts", self.base);
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        get(url)
    }

    pub fn delete_context(&self, context_id: &str) -> HttpRequest {
        HttpRequest {
            method: "DELETE",
            ..get(self.context_url(context_id))
        }
    }

    fn context_url(&self, context_id: &str) -> String {
        format!("{}/contexts/{}", self.base, encode(context_id))
    }

    fn state_url(&self, context_id: &str) -> String {
        format!("{}/state", self.context_url(context_id))
    }

    fn actions_url(&self, context_id: &str) -> String {
        format!("{}/actions", self.context_url(context_id))
    }
}

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: "GET",
        url,
        headers: Vec::new(),
        body: None,
    }
}

fn message_ref(message_id: Option<&str>) -> RequestBody {
    RequestBody::MessageRef(MessageRef {
        message_id: message_id.map(str::to_owned),
        sibling_index: None,
    })
}

fn post(url: String, body: RequestBody) -> HttpRequest {
    json_post(url, Some(body))
}

fn json_post(url: String, body: Option<RequestBody>) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: vec![("Content-Type", "application/json".to_owned())],
        body,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so an id or cursor can
/// never change the shape of the URL.
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads a 2xx answer as `T`, anything else as the API's error.
pub fn decode<T: DeserializeOwned>(status: u16, body: &impl Body) -> Result<T, SyncError> {
    expect_success(status, body)?;
    body.read().map_err(|e| SyncError {
        status: Some(status),
        ..SyncError::invalid(format!("unexpected answer from the server: {e}"))
    })
}

/// Checks an answer whose body does not matter, such as the 204 of a delete.
pub fn expect_success(status: u16, body: &impl Body) -> Result<(), SyncError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(SyncError::from_http(status, body.read::<ErrorBody>().ok()))
    }
}

/// Reads the answer to a poll; `retry_after` is its `Retry-After` header, if any.
pub fn poll_outcome(status: u16, body: &impl Body, retry_after: Option<&str>) -> PollOutcome {
    if status == 304 {
        return PollOutcome::NotModified;
    }
    match decode::<ChatState>(status, body) {
        Ok(state) => PollOutcome::State(state),
        Err(error) => PollOutcome::Failed(SyncError {
            retry_after_ms: retry_after.and_then(retry_after_ms),
            ..error
        }),
    }
}

/// `Retry-After` in whole seconds, as this API sends it, in milliseconds. An HTTP date or
/// anything else unreadable is ignored and the backoff alone decides.
pub fn retry_after_ms(header: &str) -> Option<u32> {
    let seconds: u32 = header.trim().parse().ok()?;
    Some(seconds.saturating_mul(1000))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod tests {
    use super::*;
    use crate::core::error::ErrorKind;
    use crate::core::view::ListOrder;

    /// An answer's body as text, read with `serde_json` the way the browser reads JSON.
    pub struct Json<'a>(pub &'a str);

    impl Body for Json<'_> {
        fn read<T: DeserializeOwned>(&self) -> Result<T, String> {
            serde_json::from_str(self.0).map_err(|e| e.to_string())
        }
    }

    fn poll(since: Option<u64>) -> PollRequest {
        PollRequest {
            ticket: 1,
            context_id: "abc".into(),
            since,
            wait_ms: None,
        }
    }

    #[test]
    fn a_first_poll_asks_for_everything_and_later_ones_for_a_delta() {
        let api = Api::new("http://127.0.0.1:9/api/");
        let first = api.poll(&poll(None));
        assert_eq!(first.url, "http://127.0.0.1:9/api/contexts/abc/state");
        assert!(first.headers.is_empty());
        let next = api.poll(&poll(Some(7)));
        assert_eq!(
            next.url,
            "http://127.0.0.1:9/api/contexts/abc/state?since=7"
        );
        assert_eq!(next.headers, [("If-None-Match", "\"7\"".to_owned())]);
        let held = api.poll(&PollRequest {
            wait_ms: Some(25_000),
            ..poll(Some(7))
        });
        assert_eq!(
            held.url,
            "http://127.0.0.1:9/api/contexts/abc/state?since=7&wait_ms=25000"
        );
    }

    #[test]
    fn a_failed_poll_carries_the_servers_retry_after() {
        let body = r#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        let PollOutcome::Failed(e) = poll_outcome(429, &Json(body), Some("3")) else {
            panic!("429 is an error");
        };
        assert_eq!(
            (e.retry_after_ms, e.code.as_deref()),
            (Some(3000), Some("rate_limited"))
        );
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn send_message_carries_the_client_id_in_body_and_idempotency_key() {
        let r = Api::new("/api").send_message("abc", "hi \"you\"", "c-1");
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "/api/contexts/abc/actions/send_message?wait=false");
        assert!(r.headers.contains(&("Idempotency-Key", "c-1".to_owned())));
        let body = serde_json::to_value(&r.body).expect("json body");
        assert_eq!(
            body,
            serde_json::json!({"content": "hi \"you\"", "client_message_id": "c-1"})
        );
    }

    #[test]
    fn ids_and_cursors_cannot_escape_their_url_segment() {
        let api = Api::new("/api");
        assert_eq!(api.delete_context("../x?y").url, "/api/contexts/..%2Fx%3Fy");
        let page = ListOptions {
            limit: Some(5),
            cursor: Some("a&b=c".into()),
            query: None,
            order: Some(ListOrder::Updated),
        };
        assert_eq!(
            api.list_contexts(&page).url,
            "/api/contexts?limit=5&cursor=a%26b%3Dc&order=updated"
        );
        let search = ListOptions {
            query: Some("rust &q=x".into()),
            ..ListOptions::default()
        };
        assert_eq!(
            api.list_contexts(&search).url,
            "/api/contexts?q=rust%20%26q%3Dx"
        );
        assert_eq!(
            api.list_contexts(&ListOptions::default()).url,
            "/api/contexts"
        );
        assert_eq!(api.rename_context("a/b", "x").url, "/api/contexts/a%2Fb");
    }

    #[test]
    fn bodyless_actions_still_say_json_so_the_server_takes_them() {
        let api = Api::new("/api");
        for (action, name) in [(BareAction::Cancel, "cancel"), (BareAction::Retry, "retry")] {
            let r = api.bare_action("abc", action);
            assert_eq!(r.method, "POST");
            assert_eq!(r.url, format!("/api/contexts/abc/actions/{name}"));
            assert_eq!(r.headers, [("Content-Type", "application/json".to_owned())]);
            assert!(r.body.is_none());
        }
    }

    #[test]
    fn rename_and_queued_cancel_carry_their_bodies() {
        let api = Api::new("/api");
        let r = api.rename_context("abc", "New name");
        assert_eq!((r.method, r.url.as_str()), ("PATCH", "/api/contexts/abc"));
        let body = serde_json::to_value(&r.body).expect("json body");
        assert_eq!(body, serde_json::json!({"title": "New name"}));
        let c = api.cancel_queued("abc", "m-1");
        assert_eq!(c.url, "/api/contexts/abc/actions/cancel");
        let body = serde_json::to_value(&c.body).expect("json body");
        assert_eq!(body, serde_json::json!({"message_id": "m-1"}));
    }

    #[test]
    fn branch_actions_name_their_message_and_do_not_wait_for_the_turn() {
        let api = Api::new("/api");
        let body = |r: &HttpRequest| serde_json::to_value(&r.body).expect("json body");
        let edit = api.edit_message("abc", "m-1", "better question");
        assert_eq!(
            edit.url,
            "/api/contexts/abc/actions/edit_message?wait=false"
        );
        assert_eq!(
            body(&edit),
            serde_json::json!({"message_id": "m-1", "content": "better question"})
        );
        let again = api.regenerate("abc", None);
        assert_eq!(again.url, "/api/contexts/abc/actions/regenerate?wait=false");
        assert_eq!(
            body(&again),
            serde_json::json!({}),
            "the server's default reply"
        );
        assert_eq!(
            body(&api.regenerate("abc", Some("m-2"))),
            serde_json::json!({"message_id": "m-2"})
        );
        let switch = api.switch_branch("abc", "m-3", None);
        assert_eq!(
            (switch.method, switch.url.as_str()),
            ("POST", "/api/contexts/abc/actions/switch_branch")
        );
        assert_eq!(body(&switch), serde_json::json!({"message_id": "m-3"}));
        assert_eq!(
            body(&api.switch_branch("abc", "m-3", Some(0))),
            serde_json::json!({"message_id": "m-3", "sibling_index": 0})
        );
    }

    #[test]
    fn poll_answers_map_to_outcomes() {
        assert_eq!(poll_outcome(304, &Json(""), None), PollOutcome::NotModified);
        let PollOutcome::Failed(gone) = poll_outcome(404, &Json(""), None) else {
            panic!("404 is an error");
        };
        assert_eq!(gone.kind, ErrorKind::Deleted);
        let PollOutcome::Failed(garbled) = poll_outcome(200, &Json("{"), None) else {
            panic!("a garbled body is an error");
        };
        assert_eq!(garbled.kind, ErrorKind::Invalid);
    }
}
