#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests, the end-to-end
# tests against the real server binary, the sync module (native, and its npm package in
# headless Chromium against the real server), and the web app's browser tests. A
# throwaway Postgres (Debian's package, loopback only) is started and removed on exit.
# Installs what is missing first (Rust targets, wasm-bindgen, Chromium, npm packages).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=ensure.sh
source "$ROOT/scripts/ensure.sh"
# shellcheck source=postgres.sh
source "$ROOT/scripts/postgres.sh"
started=$SECONDS

# --locked everywhere: a Cargo.lock that does not match the manifests fails here, not later.
log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --locked --quiet --workspace --all-targets -- -D warnings
ensure_wasm_toolchain
cargo clippy --locked --quiet -p chatsync-sync-wasm --target wasm32-unknown-unknown --all-targets \
  -- -D warnings

log "building the chatsync server"
cargo build --locked --quiet -p chatsync
export CHATSYNC_BIN="$ROOT/target/debug/chatsync"

# The store suite and the two-instance tests run against a throwaway Postgres.
start_test_postgres

log "Rust tests: unit, integration, end-to-end (SQLite and Postgres)"
cargo test --locked --workspace --no-fail-fast

log "the official OpenAI SDKs (Python and Node) against the real server"
"$ROOT/tests/sdk/run.sh"

log "sync-wasm: the npm package in headless Chromium"
"$ROOT/sync-wasm/scripts/test.sh"
"$ROOT/examples/scripts/test.sh"

log "web: browser tests in headless Chromium"
"$ROOT/web/scripts/test.sh"

log "all tests passed in $((SECONDS - started)) s"
