use chatsync::config::{Command, Config};
use chatsync::{telemetry, Application};
use clap::Parser;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Token { sub, secret, ttl }) = &config.command {
        return match chatsync::auth::token::mint(sub, &secret.0, *ttl) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chatsync token: {e}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::init("info,sqlx=warn,tower_http=warn");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("chatsync: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.local_addr() {
        // Scripts and tests read this line to learn the port.
        Ok(addr) => {
            tracing::info!(%addr, "listening");
            println!("chatsync listening on http://{addr}");
        }
        Err(e) => {
            eprintln!("chatsync: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = app.run_until(shutdown_signal()).await {
        eprintln!("chatsync: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing open requests, then flushing");
}
