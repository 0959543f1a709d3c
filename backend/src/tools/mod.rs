//! Tools the model may call once a person approves, and the registry that runs them.

mod calculator;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one tool call may run before it counts as failed.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait]
pub trait Tool: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// The result text for the model, or an error text that is also shown to the model.
    async fn call(&self, arguments: &serde_json::Value) -> Result<String, String>;
}

#[derive(Debug, Clone)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
    timeout: Duration,
}

impl ToolRegistry {
    /// The built-in tools: `current_time` and `calculator`.
    pub fn builtin(timeout: Duration) -> Self {
        let tools: [Arc<dyn Tool>; 2] = [Arc::new(CurrentTime), Arc::new(calculator::Calculator)];
        ToolRegistry {
            tools: tools.into_iter().map(|t| (t.name(), t)).collect(),
            timeout,
        }
    }

    /// Runs a call. Unknown tools, bad arguments, errors and timeouts all become an error
    /// text for the model: a tool never crashes a turn.
    pub async fn run(&self, name: &str, arguments: &serde_json::Value) -> Result<String, String> {
        let Some(tool) = self.tools.get(name) else {
            return Err(format!("unknown tool {name:?}"));
        };
        match tokio::time::timeout(self.timeout, tool.call(arguments)).await {
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

    async fn call(&self, _arguments: &serde_json::Value) -> Result<String, String> {
        Ok(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
