#!/usr/bin/env bash
# Tests sync-wasm: the pure core natively, then the built npm package in Chromium against
# the real chatsync server. Uses $CHATSYNC_BIN when set, else builds the server.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../../scripts/ensure.sh
source "$ROOT/scripts/ensure.sh"
ensure_chromium

log "sync-wasm: native tests of the core"
(cd "$ROOT" && cargo test --quiet -p chatsync-sync-wasm)

"$HERE/scripts/build.sh"

if [ -z "${CHATSYNC_BIN:-}" ]; then
  log "building the chatsync server"
  (cd "$ROOT" && cargo build --quiet -p chatsync)
  CHATSYNC_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/chatsync"
fi
export CHATSYNC_BIN

ensure_npm_deps "$HERE/tests-js"
log "sync-wasm: the package in Chromium against the server"
(cd "$HERE/tests-js" && npm test)
