//! What the engine is built from: its settings (the `--...` flags that shape a turn and
//! the live set) and its dependencies.

use crate::llm::Model;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tools::ToolRegistry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// While streaming, the store is written at most this often.
    pub stream_flush: Duration,
    /// While streaming, the published snapshot is replaced at most this often.
    pub stream_publish: Duration,
    /// Contexts kept in memory; idle ones beyond this leave (and reload on demand).
    pub max_live_contexts: usize,
    /// Bytes the live contexts' messages may take (about) before idle ones are evicted.
    pub max_live_bytes: u64,
    /// First delay before retrying a transient model failure; doubles each retry.
    pub retry_base: Duration,
    /// On a shared store: how long a turn's lease lasts without renewal, so how soon
    /// another instance resumes the turn of a crashed one.
    pub lease_ttl: Duration,
    /// On a shared store: how often each instance looks for turns nobody runs.
    pub sweep_interval: Duration,
    /// Messages a busy context may hold in its queue; more are refused at once.
    pub max_queued_messages: usize,
    /// Characters one streamed reply may reach before its turn fails.
    pub max_reply_chars: usize,
    /// How long one turn may run (model calls, retries, tools) before it fails.
    pub max_turn: Duration,
    /// Contexts one user may own; `None`: no limit.
    pub max_contexts_per_user: Option<u64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            stream_flush: Duration::from_millis(250),
            stream_publish: Duration::from_millis(50),
            max_live_contexts: 1000,
            max_live_bytes: 512 << 20,
            retry_base: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(1),
            max_queued_messages: 32,
            max_reply_chars: 200_000,
            max_turn: Duration::from_secs(600),
            max_contexts_per_user: None,
        }
    }
}

#[derive(Debug)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub model: Arc<dyn Model>,
    pub tools: Arc<ToolRegistry>,
    pub metrics: Arc<Metrics>,
    pub settings: EngineSettings,
}
