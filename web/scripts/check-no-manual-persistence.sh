#!/usr/bin/env bash
# The web app must never persist chat data itself: the server saves after every FSM
# transition, and the app only dispatches actions and reads state through the sync package.
# This fails when web/src talks HTTP on its own, uses the legacy message endpoints, any
# PATCH/PUT, or a browser store that could become a second copy of the chat.
# Three exceptions, each held to exactly that:
# - the sign-in (src/hooks/useAuth.ts) asks `GET /api/me` and keeps the bearer token, no
#   chat data, in localStorage;
# - the model picker (src/hooks/useModels.ts) asks `GET /api/models`, nothing else;
# - src/prefs.ts keeps the user's own unsent drafts and choices (theme, last chat opened)
#   under its `chatsync-pref:` keys, never anything the server holds.
set -euo pipefail
SRC="${1:-$(cd "$(dirname "$0")/.." && pwd)/src}"

# pattern :: why
rules=(
  'fetch\( :: direct HTTP; go through @chatsync/sync-wasm'
  'XMLHttpRequest|sendBeacon :: direct HTTP; go through @chatsync/sync-wasm'
  '/messages :: legacy CRUD endpoint'
  '\bPATCH\b|\bPUT\b :: manual update request'
  'localStorage|sessionStorage|indexedDB :: client-side copy of chat data'
)
ANY='fetch\(|XMLHttpRequest|sendBeacon|/messages|\bPATCH\b|\bPUT\b|localStorage|sessionStorage|indexedDB'

# file (under src) :: what it alone may do of the rules
exceptions=(
  'hooks/useAuth.ts :: fetch\("/api/me"|localStorage\.(getItem|setItem|removeItem)\(TOKEN_KEY[,)]'
  'hooks/useModels.ts :: fetch\("/api/models"'
  'prefs.ts :: localStorage\.(getItem|setItem|removeItem)\(PREFIX \+ key[,)]'
)

status=0
excluded=()
for exception in "${exceptions[@]}"; do
  excluded+=(--exclude="$(basename "${exception%% :: *}")")
done
for rule in "${rules[@]}"; do
  pattern=${rule%% :: *}
  why=${rule#* :: }
  if hits=$(grep -rnE "${excluded[@]}" "$pattern" "$SRC"); then
    printf 'manual persistence check: %s\n%s\n' "$why" "$hits" >&2
    status=1
  fi
done
for exception in "${exceptions[@]}"; do
  file="$SRC/${exception%% :: *}"
  allowed=${exception#* :: }
  [ -f "$file" ] || continue
  if hits=$(grep -nE "$ANY" "$file" | grep -vE "$allowed"); then
    printf 'manual persistence check: %s may only do %s\n%s\n' "${exception%% :: *}" "$allowed" "$hits" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "manual persistence check: $SRC is clean"
exit "$status"
