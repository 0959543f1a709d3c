//! The OpenAI-compatible API across a crash: a turn that waits for the client's function
//! tool output rests durably in `AwaitingToolOutput`; after a kill -9 and a restart the
//! chat is still there, and the client's output continues it.

use chatsync_e2e::{expect_json, TestServer};
use chatsync_protocol::{ChatState, ListContextsResponse, StateName, Status};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_turn_waiting_for_a_client_tool_output_survives_a_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = TestServer::start(dir.path(), &[]).await;
    let api = first.api();
    let tools = json!([{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]);
    let asked: Value = expect_json(
        api.post("/v1/responses")
            .json(&json!({"input": "/tool lookup {\"q\": \"x\"}", "tools": tools}))
            .send()
            .await
            .expect("POST /v1/responses"),
        StatusCode::OK,
    )
    .await;
    let call = asked["output"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["type"] == "function_call")
        .cloned()
        .unwrap_or_else(|| panic!("a function call: {asked}"));
    let list: ListContextsResponse = expect_json(
        api.get("/api/contexts").send().await.expect("list"),
        StatusCode::OK,
    )
    .await;
    let chat = list.contexts[0].id;
    assert_eq!(api.state(chat).await.state, StateName::AwaitingToolOutput);

    first.kill9().await;
    let second = TestServer::start(dir.path(), &[]).await;
    let api = second.api();
    let rested: ChatState = api.state(chat).await;
    assert_eq!(rested.state, StateName::AwaitingToolOutput, "{rested:#?}");
    assert_eq!(rested.status, Status::AwaitingToolOutput);
    assert_eq!(
        Some(rested.pending_tool_calls[0].id.as_str()),
        call["call_id"].as_str()
    );

    let output = json!([{"type": "function_call_output", "call_id": call["call_id"],
        "output": "a tall tree"}]);
    let continued: Value = expect_json(
        api.post("/v1/responses")
            .json(&json!({"input": output, "previous_response_id": asked["id"], "tools": tools}))
            .send()
            .await
            .expect("POST the output"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(continued["status"], "completed", "{continued}");
    let text = continued["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("a tall tree"), "{continued}");
    assert_eq!(api.state(chat).await.status, Status::Idle);
}
