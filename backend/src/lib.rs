//! chatsync: backend-first chat state.
//!
//! `main.rs` only parses flags and calls [`Application::build`]; tests build the same
//! application on port 0 and drive it over HTTP.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod engine;
pub mod fsm;
pub mod llm;
pub mod metrics;
pub mod serve;
pub mod snippet;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod v1;

use config::{AuthMode, Config, ModelKind, OnOff};
use engine::{Deps, Engine, EngineSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: api::App,
    /// What the router was built from: the server builds it unboxed, benchmarks with
    /// fewer layers.
    state: api::AppState,
    engine: Arc<Engine>,
    polls: Arc<api::LivePolls>,
    shutdown_grace: Duration,
    connections: serve::ConnectionLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot resume interrupted turns: {0}")]
    Resume(#[from] engine::EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, None).await
    }

    /// Builds the application with `model` in place of the one the flags name: tests bring
    /// model doubles but keep every other part of the real wiring.
    pub async fn build_with_model(
        config: Config,
        model: Arc<dyn llm::Model>,
    ) -> Result<Self, StartError> {
        Self::build_with(config, Some(model)).await
    }

    async fn build_with(
        config: Config,
        model: Option<Arc<dyn llm::Model>>,
    ) -> Result<Self, StartError> {
        // Settings are checked before the store opens, so a typo fails fast and clearly.
        let auth = Arc::new(authenticator(&config).await.map_err(StartError::Config)?);
        let tools = Arc::new(
            tools::ToolRegistry::new(&tools::ToolSettings {
                timeout: Duration::from_millis(config.tool_timeout_ms),
                workspace_root: config.workspace_root.clone(),
                auto_approve: config.auto_approve_tools.clone(),
            })
            .map_err(StartError::Config)?,
        );
        let model: Arc<dyn llm::Model> = match (model, config.model) {
            (Some(model), _) => model,
            (None, kind) => match kind {
                ModelKind::Scripted => Arc::new(llm::ScriptedModel::new(Duration::from_millis(
                    config.scripted_chunk_delay_ms,
                ))),
                ModelKind::Openai => Arc::new(
                    llm::OpenAiModel::new(
                        llm::OpenAiSettings {
                            base_url: config.openai_base_url.clone(),
                            api_key: config.openai_api_key.clone(),
                            model: config.openai_model.clone(),
                            connect_timeout: Duration::from_millis(
                                config.openai_connect_timeout_ms,
                            ),
                            idle_timeout: Duration::from_millis(config.openai_idle_timeout_ms),
                        },
                        &tools.specs(),
                    )
                    .map_err(StartError::Config)?,
                ),
            },
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let store = Arc::new(
            store::SqlStore::connect(&config.database_url)
                .await?
                .with_metrics(metrics.clone()),
        );
        let engine = Arc::new(Engine::new(Deps {
            store,
            model,
            tools,
            metrics,
            settings: EngineSettings {
                stream_flush: Duration::from_millis(config.stream_flush_ms),
                stream_publish: Duration::from_millis(config.stream_publish_ms),
                max_live_contexts: usize::try_from(config.max_live_contexts).unwrap_or(usize::MAX),
                max_live_bytes: config.max_live_bytes,
                lease_ttl: Duration::from_millis(config.lease_ttl_ms),
                // Look for orphaned turns a few times per lease, at most every second.
                sweep_interval: Duration::from_millis(config.lease_ttl_ms / 5)
                    .min(Duration::from_secs(1)),
                max_queued_messages: usize::try_from(config.max_queued_messages)
                    .unwrap_or(usize::MAX),
                max_reply_chars: usize::try_from(config.max_reply_chars).unwrap_or(usize::MAX),
                max_turn: Duration::from_millis(config.max_turn_ms),
                max_contexts_per_user: config.contexts_per_user(),
                ..EngineSettings::default()
            },
        }));
        let resumed = engine.resume_unfinished().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed interrupted turns");
        }
        engine.start_background();
        let metrics = engine.metrics().clone();
        let polls = Arc::new(api::LivePolls::new(
            config.max_waiters,
            config.waiters_per_user(),
            metrics,
        ));
        let state = api::AppState::new(api::AppFields {
            auth,
            polls: polls.clone(),
            turns: budget("turns", config.turns_per_minute()),
            writes: budget("writes", config.writes_per_minute()),
            searches: budget("searches", config.searches_per_minute()),
            engine: engine.clone(),
            config: Arc::new(api::ApiConfig {
                legacy_crud: config.legacy_crud == OnOff::On,
                wait_timeout: Duration::from_millis(config.wait_timeout_ms),
                max_body_bytes: config.max_body_bytes,
                cors_allow_origin: config.cors_allow_origin.clone(),
                web_dir: config.web_dir.clone(),
                max_in_flight: usize::try_from(config.max_in_flight).unwrap_or(usize::MAX),
                body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
                models: Arc::new(config.models()),
                allowed_hosts: Arc::new(api::AllowedHosts::from_flag(&config.allowed_hosts)),
            }),
        });
        let router = api::router(state.clone()).map_err(StartError::Config)?;
        let listener = listen(config.addr).map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        Ok(Application {
            listener,
            router,
            state,
            engine,
            polls,
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
            connections: serve::ConnectionLimits {
                max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
                header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                write_timeout: Duration::from_millis(config.write_timeout_ms),
            },
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The application (routes and every layer), to call in-process
    /// (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> api::App {
        self.router.clone()
    }

    /// The routes with only the first `depth` layers of `api::layers::STACK`, to measure
    /// what each layer costs (`poll-bench --layers`).
    pub fn router_with_layers(&self, depth: usize) -> Result<api::App, String> {
        api::router_with_layers(self.state.clone(), depth)
    }

    /// The application with every layer, unboxed, as [`Application::run_until`] serves it:
    /// for `poll-bench --split`, which serves it in other ways to compare.
    pub fn service(&self) -> Result<impl api::layers::AppService, String> {
        api::service(self.state.clone())
    }

    /// The bounds this server holds every connection to (`serve::serve`).
    pub fn connection_limits(&self) -> serve::ConnectionLimits {
        self.connections
    }

    /// Serves until `shutdown` resolves, lets open requests finish (up to the grace
    /// period), then writes every unsaved change.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let polls = self.polls.clone();
        // The one built in `build`, unboxed: the same layers, without a box per request.
        let service = api::service(self.state).map_err(std::io::Error::other)?;
        let server = serve::serve(self.listener, service, self.connections, async move {
            shutdown.await;
            // Held long polls answer 304 now instead of holding the drain for their wait.
            polls.stop();
            let _ = stopping_tx.send(());
        });
        let grace = self.shutdown_grace;
        let drained = async move {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {}
            () = drained => tracing::warn!("open requests did not finish within the grace period"),
        }
        self.engine.flush_all().await;
        tracing::info!("stopped: every context is flushed");
        Ok(())
    }
}

/// A per-user budget of `what` a minute, when there is one.
fn budget(what: &'static str, per_minute: Option<u32>) -> Option<Arc<api::TurnLimiter>> {
    per_minute
        .and_then(std::num::NonZeroU32::new)
        .map(|n| Arc::new(api::TurnLimiter::of(what, n)))
}

/// The authenticator `--auth` names; `none` only on loopback unless allowed explicitly.
async fn authenticator(config: &Config) -> Result<auth::Authenticator, String> {
    match config.auth {
        AuthMode::None => {
            if !config.addr.ip().is_loopback() && !config.allow_anonymous_remote {
                return Err(format!(
                    "--auth none on {} would let anyone who reaches it use every chat: \
                     use --auth jwt or --auth proxy, or pass --allow-anonymous-remote",
                    config.addr
                ));
            }
            Ok(auth::Authenticator::None)
        }
        AuthMode::Jwt => {
            let key = match (&config.jwt_secret, &config.jwt_public_key, &config.jwks_url) {
                (Some(secret), None, None) => auth::JwtKey::Secret(secret.0.clone()),
                (None, Some(path), None) => auth::JwtKey::PublicKeyFile(path.clone()),
                (None, None, Some(url)) => auth::JwtKey::JwksUrl(url.clone()),
                _ => {
                    return Err(
                        "--auth jwt needs one of --jwt-secret, --jwt-public-key, --jwks-url".into(),
                    )
                }
            };
            auth::JwtVerifier::new(&auth::JwtSettings {
                key,
                issuer: config.jwt_issuer.clone(),
                audience: config.jwt_audience.clone(),
            })
            .await
            .map(|v| auth::Authenticator::Jwt(Box::new(v)))
        }
        AuthMode::Proxy => {
            let trusted = match &config.trusted_proxies {
                Some(list) => list.clone(),
                None if !config.addr.ip().is_loopback() => {
                    return Err(format!(
                        "--auth proxy on {} would believe the {} header from anyone who \
                         reaches it: name the proxies' addresses with --trusted-proxies",
                        config.addr, config.auth_header
                    ))
                }
                None => auth::DEFAULT_TRUSTED_PROXIES
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
            };
            auth::ProxyAuth::new(&config.auth_header, &trusted).map(auth::Authenticator::Proxy)
        }
    }
}

/// Connections the kernel holds for the server before it accepts them (capped by
/// `net.core.somaxconn`). With the usual 128, a burst of a few hundred connections had its
/// excess SYNs dropped and retried a second later: the flood benchmark's slowest answers
/// took 1.2 s instead of a tenth of that.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
