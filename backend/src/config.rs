//! Server configuration: every flag has an environment twin. Secrets are never logged.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(name = "chatsync", version, about = "Backend-first chat state server")]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "CHATSYNC_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Database: sqlite://PATH (created when missing).
    #[arg(
        long,
        env = "CHATSYNC_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://./data/chatsync.db"
    )]
    pub database_url: String,

    /// The built web app to serve at / (web/dist).
    #[arg(long, env = "CHATSYNC_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Which model answers.
    #[arg(long, env = "CHATSYNC_MODEL", value_enum, default_value_t = ModelKind::Scripted)]
    pub model: ModelKind,

    /// OpenAI-compatible API root (`--model openai`): OpenAI, Ollama, vLLM, llama.cpp, LM Studio.
    #[arg(long, env = "CHATSYNC_OPENAI_BASE_URL", hide_env_values = true,
          default_value = crate::llm::DEFAULT_BASE_URL)]
    pub openai_base_url: String,

    /// API key sent as a bearer token; local servers usually need none. Never logged.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<crate::llm::ApiKey>,

    /// Model name the server knows (`--model openai`).
    #[arg(long, env = "CHATSYNC_OPENAI_MODEL", default_value = crate::llm::DEFAULT_MODEL)]
    pub openai_model: String,

    /// How long connecting to the model server may take, in milliseconds.
    #[arg(long, env = "CHATSYNC_OPENAI_CONNECT_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub openai_connect_timeout_ms: u64,

    /// Longest silence from the model server (before its answer and between stream
    /// chunks) before the call counts as failed and is retried, in milliseconds.
    #[arg(long, env = "CHATSYNC_OPENAI_IDLE_TIMEOUT_MS", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub openai_idle_timeout_ms: u64,

    /// How long one tool call may run before it fails, in milliseconds.
    #[arg(long, env = "CHATSYNC_TOOL_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tool_timeout_ms: u64,

    /// Directory `read_file` and `list_dir` may read; without it those tools do not exist.
    #[arg(long, env = "CHATSYNC_WORKSPACE_ROOT")]
    pub workspace_root: Option<PathBuf>,

    /// Tools whose calls run without asking (comma-separated, e.g. current_time,list_dir);
    /// every other call waits for approval.
    #[arg(long, env = "CHATSYNC_AUTO_APPROVE_TOOLS", value_delimiter = ',')]
    pub auto_approve_tools: Vec<String>,

    /// Serve the deprecated CRUD message endpoints (off: 410 Gone).
    #[arg(long, env = "CHATSYNC_LEGACY_CRUD", value_enum, default_value_t = OnOff::On)]
    pub legacy_crud: OnOff,

    /// Delay between the scripted model's chunks, in milliseconds.
    #[arg(long, env = "CHATSYNC_SCRIPTED_CHUNK_DELAY_MS", default_value_t = 20)]
    pub scripted_chunk_delay_ms: u64,

    /// While streaming, write the store at most this often, in milliseconds.
    #[arg(long, env = "CHATSYNC_STREAM_FLUSH_MS", default_value_t = 250)]
    pub stream_flush_ms: u64,

    /// While streaming, wake readers with a new snapshot at most this often, in
    /// milliseconds; the end of a stream is always published at once.
    #[arg(long, env = "CHATSYNC_STREAM_PUBLISH_MS", default_value_t = 50)]
    pub stream_publish_ms: u64,

    /// Characters one streamed reply may reach; a longer one ends its turn in Failed
    /// (the text so far is kept, marked cancelled).
    #[arg(long, env = "CHATSYNC_MAX_REPLY_CHARS", default_value_t = 200_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_reply_chars: u64,

    /// How long one turn may run (model calls, retries and tools) before it ends in
    /// Failed, in milliseconds. Waiting for a person's tool approval does not count.
    #[arg(long, env = "CHATSYNC_MAX_TURN_MS", default_value_t = 600_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_turn_ms: u64,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "CHATSYNC_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Requests handled at once, held long polls included (so keep it above
    /// `--max-waiters`); beyond it the server answers 503 with Retry-After at once.
    #[arg(long, env = "CHATSYNC_MAX_IN_FLIGHT", default_value_t = 12_288,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,

    /// How long a client may take to send a request's head, in milliseconds, counted from
    /// the connection's start (whatever it sent) and, for later HTTP/1 requests, from the
    /// head's first byte; a connection that is slower is closed.
    #[arg(long, env = "CHATSYNC_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// Connections open at once; further ones wait in the listen backlog until one closes.
    #[arg(long, env = "CHATSYNC_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// A connection with no request in flight for this long is closed, in milliseconds
    /// (above the longest long poll).
    #[arg(long, env = "CHATSYNC_IDLE_TIMEOUT_MS", default_value_t = 75_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// A response the client reads nothing of for this long is dropped with its
    /// connection, in milliseconds.
    #[arg(long, env = "CHATSYNC_WRITE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout_ms: u64,

    /// Longest silence while a request body is read, in milliseconds (then 408).
    #[arg(long, env = "CHATSYNC_BODY_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,

    /// How long an action waits for its turn to rest before answering 202, in milliseconds.
    #[arg(long, env = "CHATSYNC_WAIT_TIMEOUT_MS", default_value_t = 30_000)]
    pub wait_timeout_ms: u64,

    /// Contexts kept in memory; idle ones beyond this are dropped and reload on demand.
    #[arg(long, env = "CHATSYNC_MAX_LIVE_CONTEXTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_live_contexts: u64,

    /// Bytes the messages of the contexts in memory may take (about) before idle ones
    /// leave memory; running turns count too. Default 512 MiB.
    #[arg(long, env = "CHATSYNC_MAX_LIVE_BYTES", default_value_t = 512 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_live_bytes: u64,

    /// Let pages from this origin call the API (`*` for any); off by default.
    #[arg(long, env = "CHATSYNC_CORS_ALLOW_ORIGIN")]
    pub cors_allow_origin: Option<String>,

    /// On SIGTERM, how long to let open requests finish before flushing and exiting.
    #[arg(long, env = "CHATSYNC_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// With several instances on Postgres: how long a turn's lease lasts without renewal,
    /// so how soon another instance resumes the turn of one that died, in milliseconds.
    #[arg(long, env = "CHATSYNC_LEASE_TTL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(500..))]
    pub lease_ttl_ms: u64,

    /// Messages a busy chat may queue; beyond it a send answers 429 queue_full at once.
    #[arg(long, env = "CHATSYNC_MAX_QUEUED_MESSAGES", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_queued_messages: u64,

    /// Long polls (`GET .../state?wait_ms=`) this instance holds at once; more get 503.
    #[arg(long, env = "CHATSYNC_MAX_WAITERS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_waiters: u64,

    /// How callers are identified: none (everyone is `local`), jwt (bearer tokens) or
    /// proxy (a header set by an authenticating reverse proxy).
    #[arg(long, env = "CHATSYNC_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,

    /// HS256 secret for `--auth jwt` (at least 32 bytes). Never logged.
    #[arg(long, env = "CHATSYNC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// PEM public key file for `--auth jwt`: RSA (RS256) or P-256 (ES256).
    #[arg(long, env = "CHATSYNC_JWT_PUBLIC_KEY", conflicts_with = "jwt_secret")]
    pub jwt_public_key: Option<PathBuf>,

    /// The identity provider's JWKS (`…/.well-known/jwks.json`) for `--auth jwt`: fetched
    /// at start, again once its `Cache-Control: max-age` passed (300 s without one) and
    /// when a token names an unknown `kid`. Each key verifies its own
    /// algorithm (RS*, PS*, ES256/384, EdDSA); shared-secret keys are ignored.
    #[arg(long, env = "CHATSYNC_JWKS_URL", hide_env_values = true, conflicts_with_all = ["jwt_secret", "jwt_public_key"])]
    pub jwks_url: Option<String>,

    /// Required `iss` claim.
    #[arg(long, env = "CHATSYNC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim.
    #[arg(long, env = "CHATSYNC_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Header naming the user with `--auth proxy`.
    #[arg(long, env = "CHATSYNC_AUTH_HEADER", default_value = "X-Forwarded-User")]
    pub auth_header: String,

    /// Peers whose `--auth-header` is believed with `--auth proxy` (comma-separated CIDR
    /// blocks); from anyone else a request answers 401. Default: 127.0.0.0/8,::1/128, and
    /// required when `--addr` is not a loopback address.
    #[arg(long, env = "CHATSYNC_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,

    /// Let `--auth none` listen on a non-loopback address (anyone reaching it is `local`).
    #[arg(long, env = "CHATSYNC_ALLOW_ANONYMOUS_REMOTE")]
    pub allow_anonymous_remote: bool,

    /// Chats one user may own; creating more answers 429 quota_exceeded. Default: 1000
    /// with `--auth jwt|proxy`, no limit with `--auth none`.
    #[arg(long, env = "CHATSYNC_MAX_CONTEXTS_PER_USER",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_contexts_per_user: Option<u64>,

    /// Turns (send, retry, regenerate, edit) one user may start per minute; more answer
    /// 429 rate_limited with Retry-After. Default: 30 with `--auth jwt|proxy`, no limit
    /// with `--auth none`.
    #[arg(long, env = "CHATSYNC_TURNS_PER_MINUTE",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub turns_per_minute: Option<u32>,

    /// Writes (every POST, PATCH and DELETE: actions, approvals, legacy writes) one user
    /// may send per minute; more answer 429 rate_limited with Retry-After. Default: 600
    /// with `--auth jwt|proxy`, no limit with `--auth none`.
    #[arg(long, env = "CHATSYNC_WRITES_PER_MINUTE",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub writes_per_minute: Option<u32>,

    /// Searches (`GET /api/contexts?q=`) one user may run per minute; more answer 429
    /// rate_limited with Retry-After. Default: 60 with `--auth jwt|proxy`, no limit with
    /// `--auth none`.
    #[arg(long, env = "CHATSYNC_SEARCHES_PER_MINUTE",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub searches_per_minute: Option<u32>,

    /// Model ids a chat may name (comma-separated); any other answers 400
    /// invalid_model_id. Default: any.
    #[arg(long, env = "CHATSYNC_ALLOWED_MODELS", value_delimiter = ',')]
    pub allowed_models: Vec<String>,

    /// Host names requests may carry besides `localhost` and IP addresses (comma-separated;
    /// `*` for any): the public name behind a proxy. Others answer 421 unknown_host, which
    /// stops DNS rebinding.
    #[arg(long, env = "CHATSYNC_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Long polls one user may hold at once; more answer 429 too_many_waiters. Default:
    /// 100 with `--auth jwt|proxy`, only `--max-waiters` with `--auth none`.
    #[arg(long, env = "CHATSYNC_MAX_WAITERS_PER_USER",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_waiters_per_user: Option<u64>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Config {
    /// The models a chat may name and the one it gets without `model_id`: the scripted
    /// model answers as `scripted`, an OpenAI-compatible one as `--openai-model`.
    pub fn models(&self) -> crate::llm::ModelCatalog {
        let default = match self.model {
            ModelKind::Scripted => crate::llm::SCRIPTED_MODEL_ID,
            ModelKind::Openai => self.openai_model.as_str(),
        };
        crate::llm::ModelCatalog::new(&self.allowed_models, default)
    }

    /// `--max-contexts-per-user` as it applies: the default only where there are users.
    pub fn contexts_per_user(&self) -> Option<u64> {
        self.max_contexts_per_user
            .or((self.auth != AuthMode::None).then_some(1000))
    }

    /// `--max-waiters-per-user` as it applies: the default only where there are users.
    pub fn waiters_per_user(&self) -> Option<u64> {
        self.max_waiters_per_user
            .or((self.auth != AuthMode::None).then_some(100))
    }

    /// `--turns-per-minute` as it applies: the default only where there are users.
    pub fn turns_per_minute(&self) -> Option<u32> {
        self.per_user(self.turns_per_minute, 30)
    }

    /// `--writes-per-minute` as it applies: the default only where there are users.
    pub fn writes_per_minute(&self) -> Option<u32> {
        self.per_user(self.writes_per_minute, 600)
    }

    /// `--searches-per-minute` as it applies: the default only where there are users.
    pub fn searches_per_minute(&self) -> Option<u32> {
        self.per_user(self.searches_per_minute, 60)
    }

    /// A per-user budget: the flag's value, else `default` where there are users.
    fn per_user(&self, flag: Option<u32>, default: u32) -> Option<u32> {
        flag.or((self.auth != AuthMode::None).then_some(default))
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print an HS256 token for development and curl.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// The server's `--jwt-secret`.
        #[arg(long, env = "CHATSYNC_JWT_SECRET", hide_env_values = true)]
        secret: Secret,
        /// How long the token is valid: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = crate::auth::token::parse_ttl)]
        ttl: std::time::Duration,
    },
}

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Secret(s.to_owned()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    None,
    Jwt,
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelKind {
    /// Deterministic and offline; see the README for its triggers.
    Scripted,
    /// Any OpenAI-compatible chat completions server (`--openai-*` flags).
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::try_parse_from(["chatsync"]).expect("defaults parse");
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://./data/chatsync.db");
        assert_eq!(c.legacy_crud, OnOff::On);
        assert_eq!(c.stream_flush_ms, 250);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.model, ModelKind::Scripted);
        assert_eq!(c.openai_base_url, "https://api.openai.com/v1");
        assert_eq!(c.tool_timeout_ms, 30_000);
        assert_eq!(c.max_in_flight, 12_288);
        assert!(
            c.max_in_flight > c.max_waiters,
            "held polls leave room for other requests"
        );
        assert_eq!(c.header_read_timeout_ms, 10_000);
        assert_eq!(c.body_read_timeout_ms, 10_000);
        assert!(c.auto_approve_tools.is_empty());
        assert!(c.workspace_root.is_none());
        assert_eq!(c.max_waiters, 10_000);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.idle_timeout_ms, 75_000);
        assert_eq!(c.write_timeout_ms, 30_000);
    }

    #[test]
    fn tool_and_openai_flags_parse() {
        let c = Config::try_parse_from([
            "chatsync",
            "--model",
            "openai",
            "--openai-api-key",
            "sk-test",
            "--auto-approve-tools",
            "current_time,list_dir",
        ])
        .expect("parse");
        assert_eq!(c.model, ModelKind::Openai);
        assert_eq!(c.auto_approve_tools, ["current_time", "list_dir"]);
        assert!(!format!("{c:?}").contains("sk-test"), "the key never shows");
    }

    #[test]
    fn bad_values_are_refused_with_a_message() {
        for args in [
            vec!["chatsync", "--legacy-crud", "maybe"],
            vec!["chatsync", "--addr", "nowhere"],
            vec!["chatsync", "--model", "gpt"],
            vec!["chatsync", "--max-live-contexts", "0"],
            vec!["chatsync", "--lease-ttl-ms", "10"],
            vec!["chatsync", "--openai-api-key", "two words"],
            vec!["chatsync", "--tool-timeout-ms", "0"],
            vec!["chatsync", "--max-in-flight", "0"],
            vec!["chatsync", "--header-read-timeout-ms", "0"],
            vec!["chatsync", "--body-read-timeout-ms", "-1"],
            vec!["chatsync", "--max-waiters", "0"],
        ] {
            assert!(Config::try_parse_from(&args).is_err(), "{args:?}");
        }
    }
}
