//! `read_file {path}` and `list_dir {path?}`, confined to one workspace directory.
//!
//! Confinement works on resolved paths: the requested path is joined to the root and
//! canonicalized (which follows every symlink and removes every `..`), and the result must
//! still lie under the canonical root. That one check refuses `../` traversal, absolute
//! paths elsewhere and symlinks that point out, whatever their spelling.

use super::Tool;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest file `read_file` returns: its text goes into the conversation sent upstream.
pub const READ_FILE_MAX_BYTES: u64 = 256 * 1024;
/// `list_dir` names at most this many entries, so a huge directory stays a short message.
const LIST_DIR_MAX_ENTRIES: usize = 500;

const READ_FILE: &str = "read_file";
const LIST_DIR: &str = "list_dir";
/// The tools that exist only with a workspace, to explain their absence.
pub(super) const TOOL_NAMES: [&str; 2] = [READ_FILE, LIST_DIR];

/// The answer for a path that is missing or outside the workspace, alike.
pub const NOT_IN_WORKSPACE: &str = "is not in the workspace";

/// The directory the file tools may see.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// Opens the root; the error says why a bad `--workspace-root` cannot be used.
    pub fn open(root: &Path) -> Result<Self, String> {
        let canonical = root
            .canonicalize()
            .map_err(|e| format!("workspace root {}: {e}", root.display()))?;
        if !canonical.is_dir() {
            return Err(format!(
                "workspace root {} is not a directory",
                root.display()
            ));
        }
        Ok(Workspace { root: canonical })
    }

    /// The tools that read this workspace.
    pub fn tools(self) -> [Arc<dyn Tool>; 2] {
        let ws = Arc::new(self);
        [Arc::new(ReadFile(ws.clone())), Arc::new(ListDir(ws))]
    }

    /// Resolves `requested` to a real path inside the root. A path that is missing, cannot
    /// be opened or lies outside the root gets one same answer that quotes the path as the
    /// model wrote it: the answer must not tell which files exist on the host.
    async fn resolve(&self, requested: &str) -> Result<PathBuf, String> {
        let not_here = || format!("{requested:?} {NOT_IN_WORKSPACE}");
        let resolved = tokio::fs::canonicalize(self.root.join(requested))
            .await
            .map_err(|e| {
                tracing::debug!(path = requested, error = %e, "tool path does not resolve");
                not_here()
            })?;
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            tracing::debug!(path = requested, "tool path outside the workspace");
            Err(not_here())
        }
    }
}

fn path_argument<'a>(arguments: &'a Value, default: Option<&'a str>) -> Result<&'a str, String> {
    match arguments.get("path").and_then(Value::as_str).or(default) {
        Some(path) => Ok(path),
        None => Err("missing required argument \"path\"".into()),
    }
}

#[derive(Debug)]
struct ReadFile(Arc<Workspace>);

#[async_trait]
impl Tool for ReadFile {
    fn name(&self) -> &'static str {
        READ_FILE
    }

    fn description(&self) -> &'static str {
        "Reads a UTF-8 text file of the workspace. Paths are relative to the workspace root."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path relative to the workspace root."}
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: &Value) -> Result<String, String> {
        let requested = path_argument(arguments, None)?;
        let path = self.0.resolve(requested).await?;
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| format!("cannot read {requested:?}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{requested:?} is not a file"));
        }
        if meta.len() > READ_FILE_MAX_BYTES {
            return Err(format!(
                "{requested:?} has {} bytes; read_file returns at most {READ_FILE_MAX_BYTES}",
                meta.len()
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("cannot read {requested:?}: {e}"))?;
        // The size check above can race with a writer; the cap holds either way.
        if bytes.len() as u64 > READ_FILE_MAX_BYTES {
            return Err(format!(
                "{requested:?} grew past {READ_FILE_MAX_BYTES} bytes"
            ));
        }
        String::from_utf8(bytes).map_err(|_| format!("{requested:?} is not UTF-8 text"))
    }
}

#[derive(Debug)]
struct ListDir(Arc<Workspace>);

#[async_trait]
impl Tool for ListDir {
    fn name(&self) -> &'static str {
        LIST_DIR
    }

    fn description(&self) -> &'static str {
        "Lists a workspace directory, one name per line; directories end with '/'."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Directory relative to the workspace root; default \".\"."}
            },
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: &Value) -> Result<String, String> {
        let requested = path_argument(arguments, Some("."))?;
        let path = self.0.resolve(requested).await?;
        let mut dir = tokio::fs::read_dir(&path)
            .await
            .map_err(|e| format!("cannot list {requested:?}: {e}"))?;
        let mut names = Vec::new();
        while let Some(entry) = dir
            .next_entry()
            .await
            .map_err(|e| format!("cannot list {requested:?}: {e}"))?
        {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        let total = names.len();
        if total > LIST_DIR_MAX_ENTRIES {
            names.truncate(LIST_DIR_MAX_ENTRIES);
            names.push(format!(
                "... and {} more entries",
                total - LIST_DIR_MAX_ENTRIES
            ));
        }
        if names.is_empty() {
            return Ok("(empty directory)".into());
        }
        Ok(names.join("\n"))
    }
}
