#!/usr/bin/env bash
# The official OpenAI SDKs as real clients of the real server: Python `openai` (from PyPI,
# in a venv made here) and Node `openai` (npm, pinned by package-lock.json), each against
# a fresh server on a temporary SQLite file with the scripted model. Identity comes from a
# proxy header (`--auth proxy`, loopback is trusted), so two users can be told apart.
# Usage: CHATSYNC_BIN=target/debug/chatsync tests/sdk/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=../../scripts/ensure.sh
source "$ROOT/scripts/ensure.sh"
BIN=${CHATSYNC_BIN:-$ROOT/target/debug/chatsync}
PYTHON_OPENAI_VERSION=3.63.0
VENV=${CHATSYNC_SDK_VENV:-$ROOT/target/sdk-venv}

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Python: a venv with the pinned SDK (kept between runs; reinstalled when the pin moves).
if ! "$VENV/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$PYTHON_OPENAI_VERSION')" 2>/dev/null; then
  ensure_apt python3-venv
  log "installing the Python openai SDK $PYTHON_OPENAI_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openai==$PYTHON_OPENAI_VERSION"
fi
# Node: exactly what package-lock.json names.
ensure_npm_deps "$HERE/node"

"$BIN" --database-url "sqlite://$work/db.sqlite" --addr 127.0.0.1:0 --auth proxy \
  --scripted-chunk-delay-ms 5 --stream-flush-ms 50 >"$work/server.log" 2>&1 &
server_pid=$!
url=
for _ in $(seq 1 200); do
  url=$(sed -n 's/^chatsync listening on //p' "$work/server.log" | head -n 1)
  [[ -n "$url" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.log" >&2
    echo "the server did not start" >&2
    exit 1
  fi
  sleep 0.05
done
[[ -n "$url" ]] || { echo "the server did not say where it listens" >&2; exit 1; }
export CHATSYNC_URL=$url

status=0
echo "== Python openai $PYTHON_OPENAI_VERSION"
"$VENV/bin/python" "$HERE/python/test_sdk.py" || status=1
echo "== Node openai $(node -p "require('$HERE/node/node_modules/openai/package.json').version")"
node --test "$HERE/node/sdk.test.mjs" || status=1
if [[ $status -ne 0 ]]; then
  echo "--- server log (last 50 lines)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
