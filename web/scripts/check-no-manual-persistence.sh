#!/usr/bin/env bash
# The web app must never persist chat data itself: the server saves after every FSM
# transition, and the app only dispatches actions and reads state through the sync package.
# This fails when web/src talks HTTP on its own, uses the legacy message endpoints, any
# PATCH/PUT, or a browser store that could become a second copy of the chat.
# One exception, held to exactly that: the sign-in (src/hooks/useAuth.ts) asks
# `GET /api/me` and keeps the bearer token, no chat data, in localStorage.
set -euo pipefail
SRC="${1:-$(cd "$(dirname "$0")/.." && pwd)/src}"
AUTH="$SRC/hooks/useAuth.ts"

# pattern :: why
rules=(
  'fetch\( :: direct HTTP; go through @chatsync/sync-wasm'
  'XMLHttpRequest|sendBeacon :: direct HTTP; go through @chatsync/sync-wasm'
  '/messages :: legacy CRUD endpoint'
  '\bPATCH\b|\bPUT\b :: manual update request'
  'localStorage|sessionStorage|indexedDB :: client-side copy of chat data'
)

status=0
for rule in "${rules[@]}"; do
  pattern=${rule%% :: *}
  why=${rule#* :: }
  if hits=$(grep -rnE --exclude=useAuth.ts "$pattern" "$SRC"); then
    printf 'manual persistence check: %s\n%s\n' "$why" "$hits" >&2
    status=1
  fi
done
# In the sign-in: fetch only /api/me, storage only the token's key, nothing else of the rules.
if [ -f "$AUTH" ]; then
  allowed='fetch\("/api/me"|localStorage\.(getItem|setItem|removeItem)\(TOKEN_KEY[,)]'
  if hits=$(grep -nE 'fetch\(|XMLHttpRequest|sendBeacon|/messages|\bPATCH\b|\bPUT\b|localStorage|sessionStorage|indexedDB' "$AUTH" |
    grep -vE "$allowed"); then
    printf 'manual persistence check: the sign-in may fetch only /api/me and store only its token\n%s\n' "$hits" >&2
    status=1
  fi
fi
[ "$status" -eq 0 ] && echo "manual persistence check: $SRC is clean"
exit "$status"
