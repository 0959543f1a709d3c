#!/usr/bin/env bash
# Builds the web app into web/dist: the sync package first (web depends on it as a file:
# package), then the npm dependencies, then type-check and bundle. Each step is skipped
# cheaply when its inputs have not changed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WEB="$ROOT/web"
source "$ROOT/scripts/ensure.sh"

"$ROOT/sync-wasm/scripts/build.sh"

# A file: directory dependency is installed as a link, and `npm ci` reads the linked
# package's manifest, so it can only run once sync-wasm/pkg exists (built just above).
ensure_npm_deps "$WEB"

stamp="$WEB/dist/.chatsync-build-stamp"
inputs() {
  find "$WEB/src" "$WEB/index.html" "$WEB/vite.config.ts" "$WEB/tsconfig.json" "$WEB/package-lock.json" \
    "$ROOT/sync-wasm/pkg" -type f -newer "$stamp" -print -quit 2>/dev/null
}
if [ -f "$stamp" ] && [ -z "$(inputs)" ]; then
  log "web/dist is up to date"
  exit 0
fi

log "building web/dist"
(cd "$WEB" && npm run --silent build)
touch "$stamp"
