//! HTTP API tests in-process: every endpoint's success and failure paths, and a table of
//! bad inputs that must each get the right JSON error and change nothing in the store.

use axum::http::{header, Method, StatusCode};
use serde_json::{json, Value};

mod common;
use common::{eventually, Answer, TestApp};
use std::time::Duration;

/// Bound for what the tests wait on; `eventually` polls until then.
const DEADLINE: Duration = Duration::from_secs(10);

async fn spawn_app(legacy_crud: bool) -> TestApp {
    let legacy = if legacy_crud { "on" } else { "off" };
    TestApp::spawn(&[
        "--legacy-crud",
        legacy,
        "--wait-timeout-ms",
        "20000",
        "--max-body-bytes",
        "4096",
    ])
    .await
}

impl TestApp {
    async fn new_context(&self) -> String {
        let a = self.post_json("/api/contexts", json!({})).await;
        assert_eq!(a.status, StatusCode::CREATED);
        a.body["id"].as_str().expect("id").to_owned()
    }
}

/// method, uri, headers, body, expected status, expected error code.
type Case<'a> = (
    Method,
    String,
    Vec<(&'a str, &'a str)>,
    Option<&'a str>,
    StatusCode,
    &'a str,
);

fn error_code(a: &Answer) -> &str {
    a.body["error"]["code"]
        .as_str()
        .unwrap_or("<no JSON error>")
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    app.post_json(
        &format!("/api/contexts/{id}/actions/send_message"),
        json!({"content": "hi"}),
    )
    .await;
    let before = app.dump(&["local"]).await;
    let missing = "00000000-0000-4000-8000-000000000000";
    let send = format!("/api/contexts/{id}/actions/send_message");
    let big = format!(r#"{{"content": "{}"}}"#, "x".repeat(5000));
    let json_ct = [("content-type", "application/json")];
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some("{\"content\":"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            send.clone(),
            vec![("content-type", "text/plain")],
            Some(r#"{"content":"x"}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            send.clone(),
            vec![],
            Some(r#"{"content":"x"}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"{"content":""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_content",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"{"content":" \n\t"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_content",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"{"content":42}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"{"content":null}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"["content"]"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(r#"{"content":"x","client_message_id":""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_client_message_id",
        ),
        (
            Method::POST,
            send.clone(),
            vec![
                ("content-type", "application/json"),
                ("idempotency-key", "has space"),
            ],
            Some(r#"{"content":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ),
        (
            Method::POST,
            send.clone(),
            json_ct.to_vec(),
            Some(&big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::POST,
            format!("{send}?wait=maybe"),
            json_ct.to_vec(),
            Some(r#"{"content":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::POST,
            "/api/contexts/not-a-uuid/actions/send_message".into(),
            json_ct.to_vec(),
            Some(r#"{"content":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::POST,
            format!("/api/contexts/{missing}/actions/send_message"),
            json_ct.to_vec(),
            Some(r#"{"content":"x"}"#),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/approve_tools"),
            json_ct.to_vec(),
            Some(r#"{"tool_call_ids":["call_1"]}"#),
            StatusCode::BAD_REQUEST,
            "no_pending_approvals",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/approve_tools"),
            json_ct.to_vec(),
            Some(r#"{"tool_call_ids":"call_1"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/cancel"),
            json_ct.to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "nothing_to_cancel",
        ),
        // A POST a cross-site form could send (no JSON type, no custom header) is refused.
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/cancel"),
            vec![],
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/cancel"),
            vec![("content-type", "text/plain")],
            Some("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/retry"),
            vec![("content-type", "application/x-www-form-urlencoded")],
            Some("a=b"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/actions/retry"),
            vec![("x-requested-with", "fetch")],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_state",
        ),
        (
            Method::GET,
            format!("/api/contexts/{id}/state?since=-1"),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            format!("/api/contexts/{id}/state?since=abc"),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            format!("/api/contexts/{missing}/state"),
            vec![],
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/contexts?limit=0".into(),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/contexts?limit=201".into(),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/contexts?limit=ten".into(),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/api/contexts?cursor=garbage".into(),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            Method::POST,
            "/api/contexts".into(),
            json_ct.to_vec(),
            Some(r#"{"title":"   "}"#),
            StatusCode::BAD_REQUEST,
            "invalid_title",
        ),
        (
            Method::POST,
            "/api/contexts".into(),
            json_ct.to_vec(),
            Some(r#"{"title":7}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            "/api/contexts".into(),
            json_ct.to_vec(),
            Some(r#"{"system_prompt_id":"p-1"}"#),
            StatusCode::BAD_REQUEST,
            "unknown_system_prompt",
        ),
        (
            Method::POST,
            "/api/contexts".into(),
            json_ct.to_vec(),
            Some(r#"{"colour":"red"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::DELETE,
            format!("/api/contexts/{missing}"),
            vec![],
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::DELETE,
            "/api/contexts/123".into(),
            vec![],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/messages"),
            json_ct.to_vec(),
            Some(r#"{"role":"robot","content":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/messages"),
            json_ct.to_vec(),
            Some(r#"{"role":"user","content":""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_content",
        ),
        (
            Method::POST,
            format!("/api/contexts/{id}/messages"),
            json_ct.to_vec(),
            Some(r#"{"role":"user","content":"x","branch":"b2"}"#),
            StatusCode::BAD_REQUEST,
            "unsupported_branch",
        ),
        (
            Method::PATCH,
            format!("/api/contexts/{id}/messages/{missing}"),
            json_ct.to_vec(),
            Some(r#"{"content":"x"}"#),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::PATCH,
            format!("/api/contexts/{id}/messages/xyz"),
            json_ct.to_vec(),
            Some(r#"{"content":"x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            Method::PUT,
            "/api/contexts".into(),
            vec![],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/nowhere".into(),
            vec![],
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, uri, headers, body, status, code) in cases {
        let label = format!("{method} {uri} {body:?}");
        let a = app.call(method, &uri, &headers, body).await;
        assert_eq!(a.status, status, "{label}: {:?}", a.body);
        assert_eq!(error_code(&a), code, "{label}");
        assert!(
            !a.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{label}: a message explains the error"
        );
        assert_eq!(
            app.dump(&["local"]).await,
            before,
            "{label} changed the store"
        );
    }
}

#[tokio::test]
async fn contexts_can_be_created_listed_paged_read_and_deleted() {
    let app = spawn_app(true).await;
    let a = app
        .post_json(
            "/api/contexts",
            json!({"title": "  Trip  ", "model_id": null, "system_prompt": "be brief"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["title"], "Trip");
    assert_eq!(a.body["status"], "idle");
    assert_eq!(a.body["config"]["system_prompt"], "be brief");
    let first = a.body["id"].as_str().expect("id").to_owned();
    let mut ids = vec![first.clone()];
    for _ in 0..4 {
        ids.push(app.new_context().await);
    }
    let page = app.get("/api/contexts?limit=3").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["total"], 5);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let page2 = app
        .get(&format!("/api/contexts?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(page2.body["next_cursor"], Value::Null);
    let listed: Vec<String> = [&page, &page2]
        .iter()
        .flat_map(|p| p.body["contexts"].as_array().cloned().unwrap_or_default())
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);

    assert_eq!(
        app.get(&format!("/api/contexts/{first}")).await.body["title"],
        "Trip"
    );
    let del = app
        .call(Method::DELETE, &format!("/api/contexts/{first}"), &[], None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/contexts/{first}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/contexts/{first}/state"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

impl TestApp {
    async fn patch_json(&self, uri: &str, body: &str) -> Answer {
        let headers = [("content-type", "application/json")];
        self.call(Method::PATCH, uri, &headers, Some(body)).await
    }

    /// The ids `GET /api/contexts?q=` answers, in order.
    async fn search(&self, q: &str) -> Vec<String> {
        let a = self.get(&format!("/api/contexts?q={q}")).await;
        assert_eq!(a.status, StatusCode::OK, "{q}: {:?}", a.body);
        assert_eq!(a.body["next_cursor"], Value::Null);
        a.body["contexts"]
            .as_array()
            .expect("contexts")
            .iter()
            .map(|c| c["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

/// The ids of a page of `GET /api/contexts`, and its next cursor.
fn page_ids(page: &Answer) -> (Vec<String>, Option<String>) {
    let ids = page.body["contexts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    (ids, page.body["next_cursor"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn order_updated_pages_by_the_latest_activity() {
    let app = spawn_app(false).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.new_context().await);
    }
    // The oldest two chats get a turn, the oldest last: the latest activity first is
    // ids[0], ids[1], then the rest newest first.
    for id in [&ids[1], &ids[0]] {
        let a = app
            .post_json(
                &format!("/api/contexts/{id}/actions/send_message"),
                json!({"content": "hello"}),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.body);
    }
    let first = app.get("/api/contexts?order=updated&limit=2").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["total"], 5);
    let (mut listed, mut cursor) = page_ids(&first);
    while let Some(c) = cursor {
        let page = app
            .get(&format!("/api/contexts?order=updated&limit=2&cursor={c}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let (more, next) = page_ids(&page);
        listed.extend(more);
        cursor = next;
    }
    let expected = [&ids[0], &ids[1], &ids[4], &ids[3], &ids[2]].map(String::clone);
    assert_eq!(listed, expected);
    // The default stays creation order; a cursor pages only the order it came from.
    let (created, created_cursor) = page_ids(&app.get("/api/contexts?limit=2").await);
    assert_eq!(created, [ids[4].clone(), ids[3].clone()]);
    let (_, updated_cursor) = page_ids(&first);
    for (uri, code) in [
        (
            format!(
                "/api/contexts?order=updated&cursor={}",
                created_cursor.expect("more")
            ),
            "invalid_cursor",
        ),
        (
            format!("/api/contexts?cursor={}", updated_cursor.expect("more")),
            "invalid_cursor",
        ),
        ("/api/contexts?order=title".into(), "invalid_query"),
        (
            "/api/contexts?q=hello&order=updated".into(),
            "invalid_query",
        ),
    ] {
        let a = app.get(&uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(error_code(&a), code, "{uri}");
    }
}

#[tokio::test]
async fn rename_bumps_the_version_and_search_finds_titles_and_messages() {
    let app = spawn_app(false).await;
    let id = app.new_context().await;
    let other = app.new_context().await;
    let before = app.get(&format!("/api/contexts/{id}/state")).await;
    let version = before.body["version"].as_u64().expect("version");

    let uri = format!("/api/contexts/{id}");
    let renamed = app
        .patch_json(&uri, r#"{"title": "  Holiday plans  "}"#)
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_eq!(renamed.body["title"], "Holiday plans");
    assert!(renamed.body["version"].as_u64().expect("version") > version);
    let state = app.get(&format!("/api/contexts/{id}/state")).await;
    assert!(state.body["version"].as_u64().expect("version") > version);
    assert_eq!(app.get(&uri).await.body["title"], "Holiday plans");
    let listed = app.get("/api/contexts").await;
    assert!(listed.body["contexts"]
        .as_array()
        .expect("list")
        .iter()
        .any(|c| c["id"] == id.as_str() && c["title"] == "Holiday plans"));

    // Bad titles and bodies are refused, and nothing changes.
    let stored = app.dump(&["local"]).await;
    let long = format!(r#"{{"title": "{}"}}"#, "x".repeat(201));
    for (body, code) in [
        (r#"{"title": "   "}"#, "invalid_title"),
        (r#"{"title": ""}"#, "invalid_title"),
        (long.as_str(), "invalid_title"),
        (r#"{"title": 5}"#, "invalid_body"),
        (r#"{}"#, "invalid_body"),
        (r#"{"title": "ok", "extra": 1}"#, "invalid_body"),
    ] {
        let a = app.patch_json(&uri, body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&a), code, "{body}: {:?}", a.body);
    }
    assert_eq!(app.dump(&["local"]).await, stored);
    let unknown = app
        .patch_json(
            "/api/contexts/00000000-0000-0000-0000-000000000000",
            r#"{"title": "x"}"#,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Search: by title, and by message text once a turn saved it.
    let sent = app
        .post_json(
            &format!("/api/contexts/{other}/actions/send_message"),
            json!({"content": "what about penguins"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{:?}", sent.body);
    assert_eq!(app.search("holiday").await, [id.as_str()]);
    assert_eq!(app.search("Pengu").await, [other.as_str()]);
    assert!(app.search("walrus").await.is_empty());

    // Each result says where it matched: plain-text parts, the matched words marked; a
    // message that matched names itself, a title that matched has no message id.
    let found = app.get("/api/contexts?q=pengu").await;
    let snippet = &found.body["contexts"][0]["snippet"];
    assert_eq!(
        snippet["parts"],
        json!([
            {"text": "what about ", "matched": false},
            {"text": "penguins", "matched": true}
        ]),
        "{snippet}"
    );
    let state = app.get(&format!("/api/contexts/{other}/state")).await;
    assert_eq!(snippet["message_id"], state.body["messages"][0]["id"]);
    let found = app.get("/api/contexts?q=plans").await;
    let snippet = &found.body["contexts"][0]["snippet"];
    assert_eq!(snippet["message_id"], Value::Null);
    assert_eq!(
        snippet["parts"],
        json!([
            {"text": "Holiday ", "matched": false},
            {"text": "plans", "matched": true}
        ])
    );
    assert!(
        app.get("/api/contexts").await.body["contexts"][0]
            .get("snippet")
            .is_none(),
        "a plain list carries no snippet"
    );

    // Query syntax is only words; input without words, too long, or with a cursor is a 400.
    for q in ["NEAR(holiday", "holiday%22%20OR", "title%3Aholiday*"] {
        assert!(app.search(q).await.len() <= 1, "{q}");
    }
    let too_long = format!("/api/contexts?q={}", "a".repeat(201));
    for uri in [
        "/api/contexts?q=%22%28%29",
        "/api/contexts?q=",
        too_long.as_str(),
        "/api/contexts?q=holiday&cursor=1_00000000000000000000000000000000",
    ] {
        let a = app.get(uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(error_code(&a), "invalid_query", "{uri}");
    }
}

#[tokio::test]
async fn actions_answer_200_when_resting_and_202_when_still_running() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    let send = format!("/api/contexts/{id}/actions/send_message");
    let a = app
        .post_json(
            &send,
            json!({"content": "hello", "client_message_id": "c1"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "idle");
    assert_eq!(a.body["messages"][0]["client_message_id"], "c1");
    assert!(a.body["messages"][1]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .contains("hello"));

    let running = app
        .post_json(
            &format!("{send}?wait=false"),
            json!({"content": "/slow 20"}),
        )
        .await;
    assert_eq!(running.status, StatusCode::ACCEPTED);
    assert_eq!(running.body["status"], "running");
    let cancelled = app
        .call(
            Method::POST,
            &format!("/api/contexts/{id}/actions/cancel"),
            &[("content-type", "application/json")],
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["state"], "Idle");

    let tool = app
        .post_json(
            &send,
            json!({"content": "/tool calculator {\"expression\":\"1+1\"}"}),
        )
        .await;
    assert_eq!(tool.body["status"], "awaiting_approval");
    let call = tool.body["pending_tool_calls"][0]["id"]
        .as_str()
        .expect("call")
        .to_owned();
    let approve = format!("/api/contexts/{id}/actions/approve_tools");
    let unknown = app
        .post_json(&approve, json!({"tool_call_ids": ["call_x"]}))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&unknown), "unknown_tool_call");
    let done = app
        .post_json(&approve, json!({"tool_call_ids": [call]}))
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let last = done.body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .cloned()
        .unwrap_or_default();
    assert!(last["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .contains('2'));

    let failed = app
        .post_json(&send, json!({"content": "/fail fatal"}))
        .await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(failed.body["error"], "scripted fatal failure");
    let retried = app
        .call(
            Method::POST,
            &format!("/api/contexts/{id}/actions/retry"),
            &[("content-type", "application/json")],
            None,
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.body["status"], "failed");
}

#[tokio::test]
async fn state_has_etags_304s_and_deltas() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    let url = format!("/api/contexts/{id}/state");
    let first = app.get(&url).await;
    let etag = first.headers[header::ETAG]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_eq!(etag, format!("\"{}\"", first.body["version"]));
    let same = app
        .call(Method::GET, &url, &[("if-none-match", &etag)], None)
        .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.body, Value::Null);

    app.post_json(
        &format!("/api/contexts/{id}/actions/send_message"),
        json!({"content": "one"}),
    )
    .await;
    let v1 = app.get(&url).await.body["version"]
        .as_u64()
        .expect("version");
    app.post_json(
        &format!("/api/contexts/{id}/actions/send_message"),
        json!({"content": "two"}),
    )
    .await;
    let changed = app
        .call(Method::GET, &url, &[("if-none-match", &etag)], None)
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["message_count"], 4);
    let delta = app.get(&format!("{url}?since={v1}")).await;
    assert_eq!(delta.body["delta"], true);
    assert_eq!(delta.body["message_count"], 4);
    let texts: Vec<_> = delta.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| m["content"][0]["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(texts.len(), 2, "only the second turn: {texts:?}");
    assert_eq!(texts[0], "two");
    // A version from the future (another instance showed it before storing it) is never
    // answered with an older one: a plain poll gets 304, a long poll is held until then.
    for query in ["since=999999", "since=999999&wait_ms=20"] {
        let ahead = app
            .call(Method::GET, &format!("{url}?{query}"), &[], None)
            .await;
        assert_eq!(ahead.status, StatusCode::NOT_MODIFIED, "{query}");
        assert_eq!(ahead.headers[header::ETAG], "\"999999\"", "{query}");
    }
}

#[tokio::test]
async fn legacy_crud_is_deprecated_and_can_be_switched_off() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    let url = format!("/api/contexts/{id}/messages");
    let created = app
        .post_json(&url, json!({"role": "user", "content": "old style"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.headers["deprecation"], "true");
    assert_eq!(
        created.headers[header::LINK],
        "</docs/MIGRATION_GUIDE.md>; rel=\"deprecation\""
    );
    let mid = created.body["id"].as_str().expect("id").to_owned();
    let edited = app
        .call(
            Method::PATCH,
            &format!("{url}/{mid}"),
            &[("content-type", "application/json")],
            Some(r#"{"content":[{"type":"text","text":"edited"}]}"#),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    assert_eq!(edited.body["content"][0]["text"], "edited");
    let listed = app.get(&url).await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["messages"][0]["content"][0]["text"], "edited");
    let state = app.get(&format!("/api/contexts/{id}/state")).await;
    assert_eq!(
        state.body["state"], "Idle",
        "legacy writes do not run the FSM"
    );

    let off = spawn_app(false).await;
    let id = off.new_context().await;
    let gone = off.get(&format!("/api/contexts/{id}/messages")).await;
    assert_eq!(gone.status, StatusCode::GONE);
    assert_eq!(error_code(&gone), "gone");
    assert!(gone.headers[header::LINK]
        .to_str()
        .unwrap_or("")
        .contains("MIGRATION_GUIDE.md"));
    let guide = off.get("/docs/MIGRATION_GUIDE.md").await;
    assert_eq!(guide.status, StatusCode::OK);
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let app = spawn_app(true).await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.body["status"], "ready");
    let id = app.new_context().await;
    let state = app.get(&format!("/api/contexts/{id}/state")).await;
    let etag = state.headers[header::ETAG]
        .to_str()
        .expect("etag")
        .to_owned();
    app.call(
        Method::GET,
        &format!("/api/contexts/{id}/state"),
        &[("if-none-match", &etag)],
        None,
    )
    .await;
    let metrics = app.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default();
    for line in [
        "chatsync_polls_total 2",
        "chatsync_polls_not_modified_total 1",
        "chatsync_live_contexts 1",
        "chatsync_save_duration_seconds_count",
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
}

/// Every route the router serves is in the OpenAPI document, and only the legacy ones are
/// marked deprecated.
#[tokio::test]
async fn openapi_documents_every_route() {
    let app = spawn_app(true).await;
    let doc = app.get("/api/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().expect("paths");
    let routes = [
        ("/api/contexts", "post"),
        ("/api/contexts", "get"),
        ("/api/contexts/{id}", "get"),
        ("/api/contexts/{id}", "patch"),
        ("/api/contexts/{id}", "delete"),
        ("/api/contexts/{id}/actions/send_message", "post"),
        ("/api/contexts/{id}/actions/approve_tools", "post"),
        ("/api/contexts/{id}/actions/cancel", "post"),
        ("/api/contexts/{id}/actions/retry", "post"),
        ("/api/contexts/{id}/state", "get"),
        ("/api/contexts/{id}/messages", "get"),
        ("/api/contexts/{id}/messages", "post"),
        ("/api/contexts/{id}/messages/{message_id}", "patch"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/openapi.json", "get"),
        ("/api/models", "get"),
        ("/docs/MIGRATION_GUIDE.md", "get"),
        ("/v1/models", "get"),
        ("/v1/models/{id}", "get"),
        ("/v1/conversations", "post"),
        ("/v1/conversations/{id}", "get"),
        ("/v1/conversations/{id}", "post"),
        ("/v1/conversations/{id}", "delete"),
        ("/v1/conversations/{id}/items", "get"),
        ("/v1/conversations/{id}/items", "post"),
        ("/v1/responses", "post"),
        ("/v1/responses/{id}", "get"),
        ("/v1/responses/{id}", "delete"),
        ("/v1/responses/{id}/cancel", "post"),
        ("/v1/responses/{id}/input_items", "get"),
        ("/v1/chat/completions", "post"),
    ];
    for (path, method) in routes {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let deprecated = op["deprecated"] == true;
        assert_eq!(
            deprecated,
            path.contains("/messages"),
            "{method} {path} deprecation"
        );
    }
    let documented: usize = paths
        .values()
        .map(|p| p.as_object().map_or(0, |o| o.len()))
        .sum();
    assert!(documented >= routes.len());
}

/// Sends `content` with `?wait=false` and optional extra body fields.
async fn send_no_wait(app: &TestApp, id: &str, content: &str, extra: Value) -> Answer {
    let mut body = json!({"content": content});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    app.post_json(
        &format!("/api/contexts/{id}/actions/send_message?wait=false"),
        body,
    )
    .await
}

fn texts(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap_or("").to_owned(),
                m["content"][0]["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn queued_texts(state: &Value) -> Vec<String> {
    texts(&state["queued"])
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

#[tokio::test]
async fn sends_to_a_busy_chat_queue_in_order_and_run_as_whole_turns() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    let first = send_no_wait(&app, &id, "/slow 10", json!({})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let a = send_no_wait(&app, &id, "queued a", json!({})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
    let b = send_no_wait(&app, &id, "queued b", json!({"client_message_id": "b-1"})).await;
    assert_eq!(b.status, StatusCode::ACCEPTED);
    assert_eq!(queued_texts(&b.body), ["queued a", "queued b"]);
    assert_eq!(b.body["queued"][1]["status"], "queued");
    let in_history = texts(&b.body["messages"]);
    assert!(
        in_history.iter().all(|(_, t)| !t.starts_with("queued")),
        "queued messages are not in the history yet: {in_history:?}"
    );
    // A repeated send of a queued message adds nothing.
    let again = send_no_wait(&app, &id, "queued b", json!({"client_message_id": "b-1"})).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(queued_texts(&again.body), ["queued a", "queued b"]);
    // A waiting send waits for its own turn.
    let last = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "queued c"}),
        )
        .await;
    assert_eq!(last.status, StatusCode::OK, "{:?}", last.body);
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert_eq!(state["status"], "idle");
    assert!(queued_texts(&state).is_empty());
    let history = texts(&state["messages"]);
    let roles: Vec<&str> = history.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ],
        "whole turns: {history:?}"
    );
    let users: Vec<&str> = history
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(users, ["/slow 10", "queued a", "queued b", "queued c"]);
    assert_eq!(state["message_count"], 8);
}

#[tokio::test]
async fn a_queued_message_can_be_cancelled_and_never_runs() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    send_no_wait(&app, &id, "/slow 8", json!({})).await;
    let queued = send_no_wait(&app, &id, "never mind", json!({})).await;
    let message_id = queued.body["queued"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let cancel = format!("/api/contexts/{id}/actions/cancel");
    let dropped = app
        .post_json(&cancel, json!({"message_id": message_id}))
        .await;
    assert_eq!(dropped.status, StatusCode::OK, "{:?}", dropped.body);
    assert!(queued_texts(&dropped.body).is_empty());
    let unknown = app
        .post_json(&cancel, json!({"message_id": message_id}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&unknown), "not_found");
    let done = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "after"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let users: Vec<String> = texts(&done.body["messages"])
        .into_iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(users, ["/slow 8", "after"]);
}

#[tokio::test]
async fn reject_refuses_a_busy_send_and_stores_nothing() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    send_no_wait(&app, &id, "/slow 8", json!({})).await;
    let refused = send_no_wait(&app, &id, "not now", json!({"if_busy": "reject"})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&refused), "busy");
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert!(queued_texts(&state).is_empty());
    assert!(texts(&state["messages"])
        .iter()
        .all(|(_, t)| t != "not now"));
}

#[tokio::test]
async fn interrupt_cancels_the_running_turn_and_runs_ahead_of_the_queue() {
    let app = spawn_app(true).await;
    let id = app.new_context().await;
    send_no_wait(&app, &id, "/slow 200", json!({})).await;
    // Interrupt once the reply streams, so there is a partial reply to keep.
    let (app_ref, state) = (&app, &format!("/api/contexts/{id}/state"));
    eventually(DEADLINE, "the reply streams", || async move {
        (app_ref.get(state).await.body["state"] == "StreamingLLMResponse").then_some(())
    })
    .await;
    send_no_wait(&app, &id, "waiting", json!({})).await;
    let now = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "right now", "if_busy": "interrupt"}),
        )
        .await;
    assert_eq!(now.status, StatusCode::OK, "{:?}", now.body);
    let messages = now.body["messages"].as_array().expect("messages").clone();
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["status"], "cancelled",
        "the partial reply is kept"
    );
    assert_eq!(messages[2]["content"][0]["text"], "right now");
    let done = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "last"}),
        )
        .await;
    let users: Vec<String> = texts(&done.body["messages"])
        .into_iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(users, ["/slow 200", "right now", "waiting", "last"]);
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after_and_stores_nothing() {
    let app = TestApp::spawn(&["--max-queued-messages", "2"]).await;
    let id = app.new_context().await;
    send_no_wait(&app, &id, "/slow 10", json!({})).await;
    for text in ["one", "two"] {
        let a = send_no_wait(&app, &id, text, json!({})).await;
        assert_eq!(a.status, StatusCode::ACCEPTED);
    }
    let full = send_no_wait(&app, &id, "three", json!({})).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&full), "queue_full");
    assert!(full.headers.contains_key(header::RETRY_AFTER));
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert_eq!(queued_texts(&state), ["one", "two"]);
    let id_uuid = id.parse().expect("uuid");
    let stored = app
        .engine()
        .store()
        .queued_messages(id_uuid)
        .await
        .expect("queue");
    assert_eq!(stored.len(), 2, "the refused message was not stored");
}

#[tokio::test]
async fn a_long_stream_publish_interval_never_holds_back_the_end_of_a_reply() {
    let app = TestApp::spawn(&["--stream-publish-ms", "60000"]).await;
    let id = app.new_context().await;
    let done = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "/slow 3"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    let reply = &state["messages"][1];
    assert_eq!(reply["status"], "complete");
    let text = reply["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.ends_with("chunk 3."), "{text}");
}

#[tokio::test]
async fn a_reply_past_max_reply_chars_fails_its_turn_and_keeps_the_text_so_far() {
    let app = TestApp::spawn(&["--max-reply-chars", "30"]).await;
    let id = app.new_context().await;
    let done = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "/slow 20"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert_eq!(state["status"], "failed", "{state}");
    let error = state["error"].as_str().unwrap_or("");
    assert!(error.contains("--max-reply-chars"), "{error}");
    let reply = &state["messages"][1];
    assert_eq!(reply["status"], "cancelled");
    let text = reply["content"][0]["text"].as_str().unwrap_or("");
    // Chunks are "chunk N " (8 characters): the fourth one passes 30 and stops the reply.
    assert_eq!(
        text, "chunk 1 chunk 2 chunk 3 chunk 4 ",
        "the text so far is kept"
    );
}

#[tokio::test]
async fn a_turn_past_max_turn_ms_fails_with_a_clear_error() {
    // `/slow 50` takes 5 s; the budget leaves an instant turn room on a loaded machine
    // (250 ms was once not enough for one there).
    let app = TestApp::spawn(&["--max-turn-ms", "1000"]).await;
    let id = app.new_context().await;
    let done = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "/slow 50"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert_eq!(state["status"], "failed", "{state}");
    let error = state["error"].as_str().unwrap_or("");
    assert!(error.contains("--max-turn-ms"), "{error}");
    let reply = &state["messages"][1];
    assert_eq!(reply["status"], "cancelled");
    let text = reply["content"][0]["text"].as_str().unwrap_or("");
    assert!(!text.contains("chunk 50."), "the reply was stopped: {text}");
    // The next turn gets a fresh budget.
    let retried = app
        .post_json(
            &format!("/api/contexts/{id}/actions/send_message"),
            json!({"content": "short"}),
        )
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    let state = app.get(&format!("/api/contexts/{id}/state")).await.body;
    assert_eq!(state["status"], "idle", "{state}");
}

/// DNS rebinding: a page on a name the attacker points at this server sends that name as
/// `Host`; only names the server was told about (and localhost, and addresses) are served.
#[tokio::test]
async fn only_known_host_names_are_served() {
    let app = TestApp::spawn(&["--allowed-hosts", "chat.example.com"]).await;
    for (host, status) in [
        ("localhost:8080", StatusCode::OK),
        ("127.0.0.1:8080", StatusCode::OK),
        ("[::1]:8080", StatusCode::OK),
        ("chat.example.com", StatusCode::OK),
        ("rebound.example:8080", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let a = app
            .call(Method::GET, "/api/contexts", &[("host", host)], None)
            .await;
        assert_eq!(a.status, status, "{host}: {:?}", a.body);
        if status != StatusCode::OK {
            assert_eq!(error_code(&a), "unknown_host", "{host}");
            let message = a.body["error"]["message"].as_str().expect("message");
            assert!(
                message.contains("--allowed-hosts rebound.example"),
                "{message}"
            );
        }
    }
    let refused = app
        .call(
            Method::POST,
            "/api/contexts",
            &[
                ("host", "rebound.example"),
                ("content-type", "application/json"),
            ],
            Some("{}"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST);
    let list = app
        .call(Method::GET, "/api/contexts", &[("host", "localhost")], None)
        .await;
    assert_eq!(list.body["total"], 0, "nothing was created");
}

/// CORS answers only the configured origin, and with credentials only when it is named.
#[tokio::test]
async fn cors_allows_credentials_only_for_the_named_origin() {
    // The preflight a browser sends before a credentialed POST from `origin`, and the two
    // headers it reads: whom the server allows, and whether with credentials.
    async fn preflight(app: &TestApp, origin: &str) -> (Option<String>, Option<String>) {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,authorization",
            ),
        ];
        let a = app
            .call(Method::OPTIONS, "/api/contexts", &headers, None)
            .await;
        let read = |name: &str| {
            a.headers
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
        };
        (
            read("access-control-allow-origin"),
            read("access-control-allow-credentials"),
        )
    }
    let named = TestApp::spawn(&["--cors-allow-origin", "https://app.example"]).await;
    let app = Some("https://app.example".to_owned());
    assert_eq!(
        preflight(&named, "https://app.example").await,
        (app.clone(), Some("true".into()))
    );
    // Another site is told the one allowed origin, which its browser then refuses.
    assert_eq!(preflight(&named, "https://evil.example").await.0, app);

    let any = TestApp::spawn(&["--cors-allow-origin", "*"]).await;
    assert_eq!(
        preflight(&any, "https://evil.example").await,
        (Some("*".into()), None),
        "any origin, never with credentials"
    );
}
