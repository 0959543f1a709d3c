#!/usr/bin/env bash
# Browser tests of the web app against the real server, in Debian's Chromium.
# Needs CHATSYNC_BIN: the absolute path of a built chatsync binary (scripts/test.sh at the
# repository root builds it and exports this).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WEB="$ROOT/web"
source "$ROOT/scripts/ensure.sh"

if [ -z "${CHATSYNC_BIN:-}" ] || [[ "$CHATSYNC_BIN" != /* ]] || [ ! -x "$CHATSYNC_BIN" ]; then
  echo "web/scripts/test.sh: set CHATSYNC_BIN to the absolute path of the chatsync binary" \
    "(e.g. CHATSYNC_BIN=\$PWD/target/debug/chatsync after cargo build -p chatsync)" >&2
  exit 2
fi
export CHATSYNC_BIN

"$WEB/scripts/check-no-manual-persistence.sh"
"$WEB/scripts/build.sh"
ensure_chromium

log "browser tests"
mkdir -p "$WEB/test-results"
cd "$WEB"
# Each test bounds itself (its own `timeout`); this bounds a whole file, whose tests run one
# after another on a shared machine.
node --test --test-timeout=900000 --test-concurrency=1 tests/*.test.mjs
