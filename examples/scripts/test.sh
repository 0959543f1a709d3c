#!/usr/bin/env bash
# The example apps, built from the packed package as a user installs it, driven in Chromium
# against the real chatsync server: Vite in development (`vite`) and production (`vite
# build` + `vite preview`), Next.js in development (`next dev`) and production (`next build`
# + `next start`). Also type-checks the package README's quick start under `tsc --strict`.
# Uses $CHATSYNC_BIN when set, else builds the server; builds the package when needed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../../scripts/ensure.sh
source "$ROOT/scripts/ensure.sh"
ensure_chromium
export NEXT_TELEMETRY_DISABLED=1

"$ROOT/sync-wasm/scripts/build.sh"
TARBALL="$HERE/.pack/chatsync-sync-wasm.tgz"
"$ROOT/sync-wasm/scripts/pack.sh" "$TARBALL"

if [ -z "${CHATSYNC_BIN:-}" ]; then
  log "building the chatsync server"
  (cd "$ROOT" && cargo build --quiet -p chatsync)
  CHATSYNC_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/chatsync"
fi

# Every process started here runs in its own process group, ended on exit.
DATA=$(mktemp -d)
GROUPS_STARTED=()
stop_all() {
  local g
  for g in "${GROUPS_STARTED[@]}"; do
    kill -TERM -- "-$g" 2>/dev/null || true
  done
  for g in "${GROUPS_STARTED[@]}"; do
    for _ in $(seq 50); do
      kill -0 -- "-$g" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$g" 2>/dev/null || true
  done
  GROUPS_STARTED=()
}
trap 'stop_all; rm -rf "$DATA"' EXIT

# start NAME COMMAND...: runs COMMAND in a new process group, output in $DATA/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$DATA/$name.log" 2>&1 &
  GROUPS_STARTED+=("$!")
}

# wait_for_log NAME PATTERN SECONDS: until the log shows PATTERN (printed), or fail.
wait_for_log() {
  local name=$1 pattern=$2 seconds=$3 found=""
  for _ in $(seq $((seconds * 10))); do
    found=$(grep -o -m 1 -E "$pattern" "$DATA/$name.log" || true)
    [ -n "$found" ] && break
    sleep 0.1
  done
  if [ -z "$found" ]; then
    echo "$name did not start within $seconds s:" >&2
    cat "$DATA/$name.log" >&2
    exit 1
  fi
  echo "$found"
}

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Installs an example's locked dependencies (skipped while package-lock.json is unchanged),
# then the freshly packed package, as `npm install <tarball>` does for a user.
install_example() {
  local dir=$1 stamp
  ensure_npm_deps "$dir"
  stamp="$dir/node_modules/.chatsync-package-stamp"
  if ! cmp -s "$TARBALL" "$stamp"; then
    log "installing the packed package into $dir"
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error "$TARBALL")
    cp "$TARBALL" "$stamp"
  fi
}

ensure_npm_deps "$HERE/scripts"
install_example "$HERE/vite-react"
install_example "$HERE/nextjs"

log "examples: the package README's quick start under tsc --strict"
check="$HERE/vite-react/node_modules/.readme-check"
rm -rf "$check"
mkdir -p "$check"
# The first tsx block after the "Quick start" heading.
awk '/^## Quick start/ { on = 1 } on && /^```tsx$/ { code = 1; next } code && /^```$/ { exit } code { print }' \
  "$ROOT/sync-wasm/README.md" >"$check/QuickStart.tsx"
[ -s "$check/QuickStart.tsx" ] || { echo "no quick start found in sync-wasm/README.md" >&2; exit 1; }
cat >"$check/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "target": "es2022",
    "lib": ["ES2022", "DOM"],
    "module": "esnext",
    "moduleResolution": "bundler",
    "jsx": "react-jsx",
    "skipLibCheck": false,
    "types": []
  },
  "files": ["QuickStart.tsx"]
}
JSON
"$HERE/vite-react/node_modules/.bin/tsc" -p "$check/tsconfig.json"

start chatsync "$CHATSYNC_BIN" --addr 127.0.0.1:0 --database-url "sqlite://$DATA/db.sqlite" \
  --scripted-chunk-delay-ms 5
api=$(wait_for_log chatsync 'http://127\.0\.0\.1:[0-9]+' 30)
export CHATSYNC_URL=$api

drive() {
  (cd "$HERE/scripts" && node drive.mjs "$1" "$2")
}

run_vite() {
  local bin="$HERE/vite-react/node_modules/.bin"
  local port
  port=$(free_port)
  log "examples: vite dev on port $port"
  start vite-dev bash -c "cd '$HERE/vite-react' && exec '$bin/vite' --host 127.0.0.1 --strictPort --port $port"
  wait_for_log vite-dev 'ready in' 60 >/dev/null
  drive vite-dev "http://127.0.0.1:$port/"
  stop_all_but_server

  log "examples: vite build"
  (cd "$HERE/vite-react" && npm run --silent build >"$DATA/vite-build.log" 2>&1) || { cat "$DATA/vite-build.log" >&2; exit 1; }
  port=$(free_port)
  log "examples: vite preview on port $port"
  start vite-preview bash -c "cd '$HERE/vite-react' && exec '$bin/vite' preview --host 127.0.0.1 --strictPort --port $port"
  wait_for_log vite-preview 'http://127\.0\.0\.1' 60 >/dev/null
  drive vite-preview "http://127.0.0.1:$port/"
  stop_all_but_server
}

run_next() {
  local bin="$HERE/nextjs/node_modules/.bin"
  local port
  port=$(free_port)
  log "examples: next dev on port $port"
  start next-dev bash -c "cd '$HERE/nextjs' && exec '$bin/next' dev -H 127.0.0.1 -p $port"
  wait_for_log next-dev 'Ready in' 120 >/dev/null
  drive next-dev "http://127.0.0.1:$port/"
  stop_all_but_server

  # The rewrite of /api to the server is fixed at build time, so the build comes after
  # the server started.
  log "examples: next build"
  (cd "$HERE/nextjs" && "$bin/next" build >"$DATA/next-build.log" 2>&1) || { cat "$DATA/next-build.log" >&2; exit 1; }
  port=$(free_port)
  log "examples: next start on port $port"
  start next-start bash -c "cd '$HERE/nextjs' && exec '$bin/next' start -H 127.0.0.1 -p $port"
  wait_for_log next-start 'Ready in' 60 >/dev/null
  drive next-start "http://127.0.0.1:$port/"
  stop_all_but_server
}

# Stops the app servers started since the chatsync server (the first group).
stop_all_but_server() {
  local server=${GROUPS_STARTED[0]}
  local rest=("${GROUPS_STARTED[@]:1}")
  GROUPS_STARTED=("${rest[@]}")
  stop_all
  GROUPS_STARTED=("$server")
}

run_vite
run_next
log "examples: all four modes passed"
