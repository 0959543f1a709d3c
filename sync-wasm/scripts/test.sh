#!/usr/bin/env bash
# Tests sync-wasm: the pure core natively, then the shell (wasm-bindgen-test) and the built
# npm package in Chromium against the real chatsync server. Uses $CHATSYNC_BIN when set,
# else builds the server.
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

# The shell's own tests (tests/browser.rs) get a server of their own on a free port; the
# runner serves the test page from another origin, hence CORS.
DATA=$(mktemp -d)
"$CHATSYNC_BIN" --addr 127.0.0.1:0 --database-url "sqlite://$DATA/db.sqlite" \
  --cors-allow-origin '*' --scripted-chunk-delay-ms 5 >"$DATA/stdout" 2>"$DATA/stderr" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$DATA"' EXIT
url=""
for _ in $(seq 300); do
  url=$(sed -n 's/^chatsync listening on //p' "$DATA/stdout")
  [ -n "$url" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$DATA/stderr" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "chatsync did not start" >&2; exit 1; }
# A port that was free a moment ago: a send to it must fail as unreachable.
closed=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')

# The runner reads its browser flags from webdriver.json; it is written from the one list
# every browser test uses.
node -e 'const fs = require("fs");
  const args = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  fs.writeFileSync(process.argv[2], JSON.stringify({ "goog:chromeOptions": { args } }, null, 2) + "\n");' \
  "$ROOT/scripts/chromium-flags.json" "$HERE/webdriver.json"

log "sync-wasm: the shell in Chromium (wasm-bindgen-test) against the server"
(cd "$ROOT" && CHATSYNC_TEST_API="$url/api" CHATSYNC_TEST_CLOSED_API="http://127.0.0.1:$closed/api" \
  CHROMEDRIVER=/usr/bin/chromedriver CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --release -p chatsync-sync-wasm --target wasm32-unknown-unknown --test browser -- --nocapture)

ensure_npm_deps "$HERE/tests-js"
log "sync-wasm: the package in Chromium against the server"
(cd "$HERE/tests-js" && npm test)
