//! Logging set-up shared by the server and the tests.

use tracing_subscriber::EnvFilter;

/// Logs to stderr; `RUST_LOG` overrides the default filter.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Quiet tests unless `TEST_LOG` is set.
#[cfg(test)]
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init("debug,sqlx=warn");
    }
}
