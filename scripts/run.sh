#!/usr/bin/env bash
# Builds everything the service needs (the wasm sync package, the web app, the server) and
# runs the server with the web app on the embedded default, SQLite, at http://127.0.0.1:8080.
# Installs what is missing first; a second run only rebuilds what changed.
# Extra arguments go to the server (see `target/release/chatsync --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=ensure.sh
source "$ROOT/scripts/ensure.sh"

"$ROOT/web/scripts/build.sh"
log "building the chatsync server (release)"
cargo build --locked --release --quiet -p chatsync
log "starting chatsync at http://127.0.0.1:8080 (data in ./data; Ctrl+C stops)"
exec "$ROOT/target/release/chatsync" --web-dir "$ROOT/web/dist" "$@"
