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
  # The tarball changes with every build, so the lockfile must not pin its checksum (npm ci
  # would refuse it): `npm install` writes one, which has to be taken out again.
  if grep -A3 '"node_modules/@chatsync/sync-wasm"' "$dir/package-lock.json" | grep -q '"integrity"'; then
    echo "$dir/package-lock.json pins the packed package's checksum: remove its \"integrity\"" >&2
    exit 1
  fi
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
# As the Vite and Next.js templates set it (the generated typings name Symbol.dispose).
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
    "skipLibCheck": true,
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

# serve_and_drive NAME DIR READY_PATTERN COMMAND...: runs COMMAND --port P in DIR, waits
# for READY_PATTERN in its output, drives the app, and stops it.
serve_and_drive() {
  local name=$1 dir=$2 ready=$3 port
  shift 3
  port=$(free_port)
  log "examples: $name on port $port"
  start "$name" bash -c 'cd "$1" && shift && exec "$@"' _ "$dir" "$@" --port "$port"
  wait_for_log "$name" "$ready" 120 >/dev/null
  drive "$name" "http://127.0.0.1:$port/"
  stop_all_but_server
}

# build NAME DIR COMMAND...: a production build; its output is shown only if it fails.
build() {
  local name=$1 dir=$2
  shift 2
  log "examples: $name"
  (cd "$dir" && "$@" >"$DATA/$name.log" 2>&1) || { cat "$DATA/$name.log" >&2; exit 1; }
}

# Stops the app servers started since the chatsync server (the first group).
stop_all_but_server() {
  local server=${GROUPS_STARTED[0]}
  local rest=("${GROUPS_STARTED[@]:1}")
  GROUPS_STARTED=("${rest[@]}")
  stop_all
  GROUPS_STARTED=("$server")
}

VITE="$HERE/vite-react/node_modules/.bin/vite"
serve_and_drive vite-dev "$HERE/vite-react" 'ready in' "$VITE" --host 127.0.0.1 --strictPort
build vite-build "$HERE/vite-react" npm run --silent build
serve_and_drive vite-preview "$HERE/vite-react" 'http://127\.0\.0\.1' "$VITE" preview --host 127.0.0.1 --strictPort

NEXT="$HERE/nextjs/node_modules/.bin/next"
serve_and_drive next-dev "$HERE/nextjs" 'Ready in' "$NEXT" dev --hostname 127.0.0.1
# The rewrite of /api to the server is fixed at build time, so the build comes after the
# server started.
build next-build "$HERE/nextjs" "$NEXT" build
serve_and_drive next-start "$HERE/nextjs" 'Ready in' "$NEXT" start --hostname 127.0.0.1
log "examples: all four modes passed"
