#!/usr/bin/env bash
# The soak benchmark (bench/src/bin/soak.rs) on the release server, with a throwaway
# Postgres (loopback only, removed on exit) for runs on several instances. Arguments go to
# the soak; `scripts/soak.sh --help` lists them. Examples:
#   scripts/soak.sh --users 1000 --duration 120                  # one instance, SQLite
#   scripts/soak.sh --users 300 --instances 2 --kill-every 30 --duration 150
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=ensure.sh
source "$ROOT/scripts/ensure.sh"
# shellcheck source=postgres.sh
source "$ROOT/scripts/postgres.sh"

log "building the server and the soak in release mode"
cargo build --locked --quiet --release -p chatsync -p chatsync-bench --bin chatsync --bin soak
export CHATSYNC_BIN="$ROOT/target/release/chatsync"
start_test_postgres
"$ROOT/target/release/soak" "$@"
