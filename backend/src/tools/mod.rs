//! Tools the model may call, the registry that runs them, and who must approve a call.
//!
//! Every tool declares a JSON Schema for its arguments. The schemas go upstream so the
//! model knows how to call, and arguments are checked against them before a call runs:
//! bad arguments become an error text for the model, never a crash.

mod calculator;
mod schema;
mod workspace;

pub use workspace::{NOT_IN_WORKSPACE, READ_FILE_MAX_BYTES};

use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one tool call may run before it counts as failed.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
pub trait Tool: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// JSON Schema of the arguments, in the subset `schema` validates.
    fn parameters(&self) -> Value;
    /// The result text for the model, or an error text that is also shown to the model.
    /// The arguments already match [`Tool::parameters`].
    async fn call(&self, arguments: &Value) -> Result<String, String>;
}

/// A tool as a model provider announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
}

/// What the registry is built from (the `--tool-*`, `--workspace-root` and
/// `--auto-approve-tools` flags).
#[derive(Debug, Clone)]
pub struct ToolSettings {
    pub timeout: Duration,
    /// The file tools exist only when this is set.
    pub workspace_root: Option<PathBuf>,
    /// Tools whose calls run without asking; every other call waits for a person.
    pub auto_approve: Vec<String>,
}

impl Default for ToolSettings {
    fn default() -> Self {
        ToolSettings {
            timeout: DEFAULT_TOOL_TIMEOUT,
            workspace_root: None,
            auto_approve: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tool: Arc<dyn Tool>,
    parameters: Value,
    auto_approve: bool,
}

#[derive(Debug, Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Entry>,
    timeout: Duration,
}

impl ToolRegistry {
    /// `current_time` and `calculator`, every call asking for approval.
    pub fn builtin(timeout: Duration) -> Self {
        Self::new(&ToolSettings {
            timeout,
            ..ToolSettings::default()
        })
        .expect("the built-in tools declare schemas inside the supported subset")
    }

    /// The built-in tools, the file tools when a workspace is set, and the approval policy.
    /// The error explains a setting that cannot work, for a clear message at start.
    pub fn new(settings: &ToolSettings) -> Result<Self, String> {
        let mut tools: Vec<Arc<dyn Tool>> =
            vec![Arc::new(CurrentTime), Arc::new(calculator::Calculator)];
        if let Some(root) = &settings.workspace_root {
            tools.extend(workspace::Workspace::open(root)?.tools());
        }
        let mut registry = ToolRegistry {
            tools: BTreeMap::new(),
            timeout: settings.timeout,
        };
        for tool in tools {
            let parameters = tool.parameters();
            schema::check_schema(&parameters).map_err(|e| format!("tool {}: {e}", tool.name()))?;
            registry.tools.insert(
                tool.name(),
                Entry {
                    tool,
                    parameters,
                    auto_approve: false,
                },
            );
        }
        // An empty entry (a trailing comma, an empty env twin) names nothing.
        for name in settings
            .auto_approve
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
        {
            let known: Vec<&str> = registry.tools.keys().copied().collect();
            let entry = registry.tools.get_mut(name).ok_or_else(|| {
                let hint =
                    if settings.workspace_root.is_none() && workspace::TOOL_NAMES.contains(&name) {
                        " (the file tools need --workspace-root)"
                    } else {
                        ""
                    };
                format!(
                    "--auto-approve-tools names unknown tool {name:?}{hint}; known tools: {}",
                    known.join(", ")
                )
            })?;
            entry.auto_approve = true;
        }
        Ok(registry)
    }

    /// Every tool with its schema, in name order, for the model provider.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .values()
            .map(|e| ToolSpec {
                name: e.tool.name().to_owned(),
                description: e.tool.description().to_owned(),
                parameters: e.parameters.clone(),
            })
            .collect()
    }

    /// Whether calls of this tool run without waiting for a person.
    pub fn is_auto_approved(&self, name: &str) -> bool {
        self.tools.get(name).is_some_and(|e| e.auto_approve)
    }

    /// Runs a call. Unknown tools, bad arguments, errors and timeouts all become an error
    /// text for the model: a tool never crashes a turn.
    pub async fn run(&self, name: &str, arguments: &Value) -> Result<String, String> {
        let Some(entry) = self.tools.get(name) else {
            return Err(format!("unknown tool {name:?}"));
        };
        schema::validate(&entry.parameters, arguments)
            .map_err(|e| format!("invalid arguments for {name}: {e}"))?;
        match tokio::time::timeout(self.timeout, entry.tool.call(arguments)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} ms", self.timeout.as_millis())),
        }
    }
}

#[derive(Debug)]
struct CurrentTime;

#[async_trait]
impl Tool for CurrentTime {
    fn name(&self) -> &'static str {
        "current_time"
    }

    fn description(&self) -> &'static str {
        "The current date and time in UTC (RFC 3339)."
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }

    async fn call(&self, _arguments: &Value) -> Result<String, String> {
        Ok(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registry_runs_builtins_and_reports_unknown_tools() {
        let tools = ToolRegistry::builtin(DEFAULT_TOOL_TIMEOUT);
        assert_eq!(
            tools.run("calculator", &json!({"expression": "2+3"})).await,
            Ok("5".into())
        );
        let now = tools.run("current_time", &json!({})).await.expect("time");
        assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok(), "{now}");
        assert_eq!(
            tools.run("rm", &json!({})).await,
            Err("unknown tool \"rm\"".into())
        );
    }

    #[tokio::test]
    async fn arguments_are_checked_against_the_schema_before_the_call() {
        let tools = ToolRegistry::builtin(DEFAULT_TOOL_TIMEOUT);
        assert_eq!(
            tools.run("calculator", &json!({"expr": "2+3"})).await,
            Err(
                "invalid arguments for calculator: missing required argument \"expression\"".into()
            )
        );
        assert_eq!(
            tools.run("current_time", &json!({"zone": "UTC"})).await,
            Err("invalid arguments for current_time: unexpected argument \"zone\"".into())
        );
    }

    #[derive(Debug)]
    struct Sleepy;

    #[async_trait]
    impl Tool for Sleepy {
        fn name(&self) -> &'static str {
            "sleepy"
        }
        fn description(&self) -> &'static str {
            "never answers"
        }
        fn parameters(&self) -> Value {
            json!({"type": "object"})
        }
        async fn call(&self, _arguments: &Value) -> Result<String, String> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_call_that_runs_too_long_fails_with_a_timeout() {
        let mut tools = ToolRegistry::builtin(Duration::from_millis(20));
        tools.tools.insert(
            "sleepy",
            Entry {
                tool: Arc::new(Sleepy),
                parameters: Sleepy.parameters(),
                auto_approve: false,
            },
        );
        assert_eq!(
            tools.run("sleepy", &json!({})).await,
            Err("timed out after 20 ms".into())
        );
    }

    #[test]
    fn specs_carry_every_schema_and_the_file_tools_need_a_workspace() {
        let names =
            |r: &ToolRegistry| -> Vec<String> { r.specs().into_iter().map(|s| s.name).collect() };
        let plain = ToolRegistry::builtin(DEFAULT_TOOL_TIMEOUT);
        assert_eq!(names(&plain), ["calculator", "current_time"]);
        let calc = &plain.specs()[0];
        assert_eq!(calc.parameters["required"], json!(["expression"]));
        let dir = tempfile::tempdir().expect("tempdir");
        let with_files = ToolRegistry::new(&ToolSettings {
            workspace_root: Some(dir.path().to_owned()),
            ..ToolSettings::default()
        })
        .expect("registry");
        assert_eq!(
            names(&with_files),
            ["calculator", "current_time", "list_dir", "read_file"]
        );
    }

    #[test]
    fn auto_approval_is_per_tool_and_unknown_names_are_refused() {
        let tools = ToolRegistry::new(&ToolSettings {
            auto_approve: vec!["current_time".into()],
            ..ToolSettings::default()
        })
        .expect("registry");
        assert!(tools.is_auto_approved("current_time"));
        assert!(!tools.is_auto_approved("calculator"));
        assert!(!tools.is_auto_approved("rm"));
        let err = ToolRegistry::new(&ToolSettings {
            auto_approve: vec!["rm".into()],
            ..ToolSettings::default()
        })
        .expect_err("unknown name");
        assert_eq!(
            err,
            "--auto-approve-tools names unknown tool \"rm\"; known tools: calculator, current_time"
        );
        let err = ToolRegistry::new(&ToolSettings {
            auto_approve: vec!["list_dir".into()],
            ..ToolSettings::default()
        })
        .expect_err("no workspace");
        assert!(err.contains("need --workspace-root"), "{err}");
    }

    #[test]
    fn a_workspace_root_that_is_not_a_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "x").expect("write");
        for root in [file, dir.path().join("missing")] {
            let err = ToolRegistry::new(&ToolSettings {
                workspace_root: Some(root.clone()),
                ..ToolSettings::default()
            })
            .expect_err("bad root");
            assert!(err.starts_with("workspace root"), "{err}");
        }
    }
}
