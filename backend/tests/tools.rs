//! The tool registry as the engine uses it: schema checks, the workspace confinement of
//! the file tools, and auto-approval driving real turns (scripted model, temporary SQLite).

mod common;
use common::{last_text, TestApp};

use async_trait::async_trait;
use chatsync::domain::{NewContext, NewMessage, Owner};
use chatsync::llm::{Model, ModelChunk, ModelError, ModelRequest, ModelStream};
use chatsync::tools::{ToolRegistry, ToolSettings, NOT_IN_WORKSPACE, READ_FILE_MAX_BYTES};
use chatsync_protocol::{content_text, ChatState, Role, Status, ToolCallStatus};
use futures::StreamExt;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// A workspace with a file, a subdirectory, and a secret beside it (outside the root).
struct Workspace {
    dir: tempfile::TempDir,
    tools: ToolRegistry,
}

fn workspace() -> Workspace {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("notes.txt"), "hello from the workspace").expect("write");
    std::fs::write(root.join("sub/deep.txt"), "deep").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "outside").expect("write");
    let tools = ToolRegistry::new(&ToolSettings {
        workspace_root: Some(root),
        ..ToolSettings::default()
    })
    .expect("registry");
    Workspace { dir, tools }
}

impl Workspace {
    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    async fn read(&self, path: &str) -> Result<String, String> {
        self.tools.run("read_file", &json!({ "path": path })).await
    }
}

#[tokio::test]
async fn files_inside_the_workspace_can_be_read_and_listed() {
    let ws = workspace();
    assert_eq!(
        ws.read("notes.txt").await,
        Ok("hello from the workspace".into())
    );
    assert_eq!(ws.read("sub/../sub/deep.txt").await, Ok("deep".into()));
    let inside = ws.root().join("notes.txt");
    assert_eq!(
        ws.read(&inside.to_string_lossy()).await,
        Ok("hello from the workspace".into()),
        "an absolute path inside the root is fine"
    );
    assert_eq!(
        ws.tools.run("list_dir", &json!({})).await,
        Ok("notes.txt\nsub/".into())
    );
    assert_eq!(
        ws.tools.run("list_dir", &json!({"path": "sub"})).await,
        Ok("deep.txt".into())
    );
}

#[tokio::test]
async fn traversal_and_absolute_paths_outside_the_root_are_refused() {
    let ws = workspace();
    let secret = ws.dir.path().join("secret.txt");
    for path in [
        "../secret.txt",
        "sub/../../secret.txt",
        &secret.to_string_lossy(),
        "/",
    ] {
        let err = ws.read(path).await.expect_err(path);
        assert!(err.ends_with(NOT_IN_WORKSPACE), "{path}: {err}");
        assert!(
            !err.contains(&*ws.root().to_string_lossy()),
            "the root is not revealed: {err}"
        );
    }
    let err = ws
        .tools
        .run("list_dir", &json!({"path": ".."}))
        .await
        .expect_err("parent");
    assert!(err.ends_with(NOT_IN_WORKSPACE), "{err}");
    // A file outside that exists and one that does not answer alike: no probing.
    assert_eq!(
        ws.read("../secret.txt")
            .await
            .map_err(|e| e.replace("secret", "x")),
        ws.read("../x.txt").await
    );
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_out_of_the_root_are_refused_and_links_inside_it_work() {
    let ws = workspace();
    let root = ws.root();
    std::os::unix::fs::symlink(ws.dir.path().join("secret.txt"), root.join("leak.txt"))
        .expect("link");
    std::os::unix::fs::symlink(ws.dir.path(), root.join("up")).expect("link");
    std::os::unix::fs::symlink(root.join("notes.txt"), root.join("alias.txt")).expect("link");
    for path in ["leak.txt", "up/secret.txt"] {
        let err = ws.read(path).await.expect_err(path);
        assert!(err.ends_with(NOT_IN_WORKSPACE), "{path}: {err}");
    }
    let err = ws
        .tools
        .run("list_dir", &json!({"path": "up"}))
        .await
        .expect_err("dir link");
    assert!(err.ends_with(NOT_IN_WORKSPACE), "{err}");
    assert_eq!(
        ws.read("alias.txt").await,
        Ok("hello from the workspace".into())
    );
}

#[tokio::test]
async fn large_missing_and_non_text_files_give_clear_errors() {
    let ws = workspace();
    let root = ws.root();
    let big = vec![b'a'; usize::try_from(READ_FILE_MAX_BYTES).expect("size") + 1];
    std::fs::write(root.join("big.txt"), big).expect("write");
    let err = ws.read("big.txt").await.expect_err("too large");
    assert!(
        err.contains(&format!("at most {READ_FILE_MAX_BYTES}")),
        "{err}"
    );
    std::fs::write(root.join("blob.bin"), [0xff, 0xfe, 0x00]).expect("write");
    assert_eq!(
        ws.read("blob.bin").await,
        Err("\"blob.bin\" is not UTF-8 text".into())
    );
    assert_eq!(
        ws.read("nope.txt").await,
        Err(format!("\"nope.txt\" {NOT_IN_WORKSPACE}"))
    );
    assert_eq!(ws.read("sub").await, Err("\"sub\" is not a file".into()));
}

#[tokio::test]
async fn arguments_that_break_the_schema_never_reach_the_tool() {
    let ws = workspace();
    for (tool, args, want) in [
        ("read_file", json!({}), "missing required argument \"path\""),
        (
            "read_file",
            json!({"path": 7}),
            "argument \"path\" must be a string, not a number",
        ),
        (
            "read_file",
            json!({"path": "a", "mode": "rw"}),
            "unexpected argument \"mode\"",
        ),
        (
            "list_dir",
            json!("sub"),
            "the arguments must be a JSON object, not a string",
        ),
        (
            "calculator",
            json!({"expression": ["2+3"]}),
            "argument \"expression\" must be a string, not an array",
        ),
    ] {
        assert_eq!(
            ws.tools.run(tool, &args).await,
            Err(format!("invalid arguments for {tool}: {want}")),
            "{tool} {args}"
        );
    }
}

#[test]
fn the_file_tools_exist_only_with_a_workspace() {
    let plain = ToolRegistry::builtin(Duration::from_secs(1));
    let names: Vec<String> = plain.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["calculator", "current_time"]);
    let with = workspace();
    let read = with
        .tools
        .specs()
        .into_iter()
        .find(|s| s.name == "read_file")
        .expect("read_file");
    assert_eq!(read.parameters["required"], json!(["path"]));
    assert_eq!(read.parameters["additionalProperties"], json!(false));
}

struct Chat {
    app: TestApp,
}

async fn chat(auto_approve: &[&str], workspace_root: Option<&Path>) -> Chat {
    let auto = auto_approve.join(",");
    let root = workspace_root.map(|p| p.display().to_string());
    let mut flags = Vec::new();
    if !auto.is_empty() {
        flags.extend(["--auto-approve-tools", auto.as_str()]);
    }
    if let Some(root) = &root {
        flags.extend(["--workspace-root", root.as_str()]);
    }
    Chat {
        app: TestApp::spawn(&flags).await,
    }
}

impl Chat {
    async fn send(&self, text: &str) -> (Uuid, ChatState) {
        let engine = self.app.engine();
        let id = engine
            .create_context(&Owner::local(), NewContext::default())
            .await
            .expect("create")
            .record
            .id;
        let out = engine
            .send_message(id, NewMessage::text(text).expect("content"), WAIT)
            .await
            .expect("send");
        assert!(out.settled);
        (id, out.snapshot.chat_state(None))
    }
}

#[tokio::test]
async fn an_auto_approved_call_runs_without_waiting_for_a_person() {
    let ws = workspace();
    let c = chat(&["list_dir"], Some(&ws.root())).await;
    let (_, state) = c.send(r#"/tool list_dir {"path": "sub"}"#).await;
    assert_eq!(state.status, Status::Idle, "nobody had to approve");
    assert!(
        last_text(&state).contains("list_dir tool returned deep.txt"),
        "{}",
        last_text(&state)
    );
    let calls = state.messages[1].tool_calls.clone().expect("calls");
    assert_eq!(calls[0].status, ToolCallStatus::Completed);
}

#[tokio::test]
async fn calls_of_other_tools_still_wait_for_approval() {
    let c = chat(&["current_time"], None).await;
    let (id, state) = c.send(r#"/tool calculator {"expression": "2+3"}"#).await;
    assert_eq!(state.status, Status::AwaitingApproval);
    assert_eq!(state.pending_tool_calls.len(), 1);
    let call = state.pending_tool_calls[0].id.clone();
    let out = c
        .app
        .engine()
        .approve_tools(id, vec![call], WAIT)
        .await
        .expect("approve");
    let state = out.snapshot.chat_state(None);
    assert_eq!(state.status, Status::Idle);
    assert!(last_text(&state).contains("calculator tool returned 5"));
}

#[tokio::test]
async fn invalid_arguments_of_an_auto_approved_call_become_a_failed_call_the_model_reads() {
    let c = chat(&["calculator"], None).await;
    let (_, state) = c.send(r#"/tool calculator {"expr": "2+3"}"#).await;
    assert_eq!(
        state.status,
        Status::Idle,
        "the turn goes on: {:?}",
        state.error
    );
    let calls = state.messages[1].tool_calls.clone().expect("calls");
    assert_eq!(calls[0].status, ToolCallStatus::Failed);
    let tool_message = state
        .messages
        .iter()
        .find(|m| m.role == Role::Tool)
        .expect("tool message");
    let error = content_text(&tool_message.content);
    assert_eq!(
        error,
        "invalid arguments for calculator: missing required argument \"expression\""
    );
    assert!(
        last_text(&state).contains("calculator call failed: invalid arguments"),
        "{}",
        last_text(&state)
    );
}

/// Asks for an auto-approved (`current_time`) and a gated (`calculator`) call in the same
/// reply, which the scripted model cannot, then quotes the results.
#[derive(Debug)]
struct TwoCalls;

#[async_trait]
impl Model for TwoCalls {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let results: Vec<String> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::Tool)
            .map(|m| {
                format!(
                    "{}:{}",
                    m.tool_call_id.as_deref().unwrap_or("?"),
                    content_text(&m.content)
                )
            })
            .collect();
        let chunks = if results.is_empty() {
            vec![
                ModelChunk::ToolCall {
                    id: "t".into(),
                    name: "current_time".into(),
                    arguments: json!({}),
                },
                ModelChunk::ToolCall {
                    id: "c".into(),
                    name: "calculator".into(),
                    arguments: json!({"expression": "1+1"}),
                },
            ]
        } else {
            vec![ModelChunk::Text(results.join(" | "))]
        };
        Ok(futures::stream::iter(chunks.into_iter().map(Ok)).boxed())
    }
}

#[tokio::test]
async fn only_the_gated_call_waits_and_a_denial_does_not_stop_the_approved_one() {
    let app = TestApp::spawn_with_model(
        &["--auto-approve-tools", "current_time"],
        Arc::new(TwoCalls),
    )
    .await;
    let engine = app.engine();
    let id = engine
        .create_context(&Owner::local(), NewContext::default())
        .await
        .expect("create")
        .record
        .id;
    let out = engine
        .send_message(id, NewMessage::text("both").expect("content"), WAIT)
        .await
        .expect("send");
    let state = out.snapshot.chat_state(None);
    assert_eq!(state.status, Status::AwaitingApproval);
    let pending: Vec<&str> = state
        .pending_tool_calls
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(pending, ["c"], "only the gated call is pending");
    let statuses: Vec<ToolCallStatus> = state.messages[1]
        .tool_calls
        .iter()
        .flatten()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [ToolCallStatus::Approved, ToolCallStatus::Pending]
    );
    let err = engine
        .approve_tools(id, vec!["t".into()], WAIT)
        .await
        .expect_err("not pending");
    assert!(
        err.to_string().contains("Unknown tool call id(s): t"),
        "{err}"
    );

    let out = engine
        .approve_tools(id, vec![], WAIT)
        .await
        .expect("deny the rest");
    let state = out.snapshot.chat_state(None);
    assert_eq!(state.status, Status::Idle);
    let statuses: Vec<ToolCallStatus> = state.messages[1]
        .tool_calls
        .iter()
        .flatten()
        .map(|c| c.status)
        .collect();
    assert_eq!(
        statuses,
        [ToolCallStatus::Completed, ToolCallStatus::Denied]
    );
    let text = last_text(&state);
    assert!(text.contains("c:The user denied this tool call."), "{text}");
    assert!(text.contains("t:20"), "the auto-approved call ran: {text}");
}
