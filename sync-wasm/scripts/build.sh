#!/usr/bin/env bash
# Builds the npm package @chatsync/sync-wasm into sync-wasm/pkg/ and reports its size.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../../scripts/ensure.sh
source "$ROOT/scripts/ensure.sh"
ensure_wasm_toolchain
ensure_npm_deps "$HERE/tools"

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PKG="$HERE/pkg"
# Built next to pkg/ and swapped in only when something changed, so an unchanged rebuild
# keeps the files' timestamps and dependants (web/) need not reinstall.
STAGE="$HERE/pkg.new"
# Where the package's source, issues and documentation live (package.json's repository,
# bugs and homepage).
REPOSITORY=https://github.com/chatsync/chatsync
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)

log "compiling chatsync-sync-wasm for wasm32"
# The module is downloaded by every browser: small beats fast. LTO and optimizing every
# crate for size ("z" measured about 8% smaller than "s") are profile-wide settings the
# workspace leaves alone for the server, so they are switched on for this build only.
(cd "$ROOT" && CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
  cargo build --quiet --release -p chatsync-sync-wasm --target wasm32-unknown-unknown \
  --config 'profile.release.package.chatsync-sync-wasm.opt-level="z"')

log "optimizing for size and generating the JavaScript glue"
# wasm-opt runs before wasm-bindgen: Debian's binaryen mangles the externref table that
# wasm-bindgen adds, while it keeps the exports and custom sections wasm-bindgen reads.
# --converge repeats the passes while they still shrink the module (about 400 B gzipped).
# By default -Oz inlines every function that has a single caller, however large; that makes
# the module smaller raw but about 6.7 KB larger gzipped, so such functions stay separate.
OPTIMIZED="$TARGET_DIR/wasm32-unknown-unknown/release/chatsync_sync_wasm.opt.wasm"
wasm-opt -Oz --converge --one-caller-inline-max-function-size=0 "$TARGET_DIR/wasm32-unknown-unknown/release/chatsync_sync_wasm.wasm" -o "$OPTIMIZED"
rm -rf "$STAGE"
# The name and producers sections only help debuggers and cost about 700 B gzipped.
wasm-bindgen --target web --remove-name-section --remove-producers-section \
  --out-dir "$STAGE" --out-name sync_wasm "$OPTIMIZED"
# The glue is downloaded too; minified it is about a third of its gzipped size smaller.
# Export names stay as they are, and the typings describe the same module.
"$HERE/tools/node_modules/.bin/esbuild" "$STAGE/sync_wasm.js" --minify --legal-comments=none \
  --log-level=warning --allow-overwrite --outfile="$STAGE/sync_wasm.js"

# The package's README is for its users; the development notes stay in the repository.
cp "$HERE/README.md" "$STAGE/README.md"
cp "$ROOT/LICENSE-MIT" "$ROOT/LICENSE-APACHE" "$STAGE/"
# The React binding is plain JavaScript with its typings, shipped as they are (so its
# "use client" directive stays the first statement).
mkdir -p "$STAGE/react"
cp "$HERE/react/react.js" "$HERE/react/react.d.ts" "$STAGE/react/"
# The loader sits beside the module it loads (plain JavaScript too).
cp "$HERE/load/load.js" "$HERE/load/load.d.ts" "$STAGE/"
cat >"$STAGE/package.json" <<JSON
{
  "name": "@chatsync/sync-wasm",
  "version": "$VERSION",
  "description": "Keeps a browser's copy of a chatsync chat in sync: polling with backoff, optimistic messages reconciled with the server, a React hook.",
  "keywords": ["chatsync", "chat", "sync", "react", "hook", "webassembly", "wasm", "long-polling", "optimistic-ui", "llm"],
  "license": "MIT OR Apache-2.0",
  "homepage": "$REPOSITORY/tree/main/sync-wasm#readme",
  "bugs": {
    "url": "$REPOSITORY/issues"
  },
  "repository": {
    "type": "git",
    "url": "git+$REPOSITORY.git",
    "directory": "sync-wasm"
  },
  "publishConfig": {
    "access": "public"
  },
  "type": "module",
  "main": "./sync_wasm.js",
  "module": "./sync_wasm.js",
  "types": "./sync_wasm.d.ts",
  "exports": {
    ".": {
      "types": "./sync_wasm.d.ts",
      "default": "./sync_wasm.js"
    },
    "./react": {
      "types": "./react/react.d.ts",
      "default": "./react/react.js"
    },
    "./load": {
      "types": "./load.d.ts",
      "default": "./load.js"
    },
    "./sync_wasm_bg.wasm": "./sync_wasm_bg.wasm",
    "./package.json": "./package.json"
  },
  "typesVersions": {
    "*": {
      "react": ["./react/react.d.ts"],
      "load": ["./load.d.ts"]
    }
  },
  "peerDependencies": {
    "react": ">=18"
  },
  "peerDependenciesMeta": {
    "react": {
      "optional": true
    }
  },
  "files": [
    "sync_wasm.js",
    "sync_wasm.d.ts",
    "sync_wasm_bg.wasm",
    "sync_wasm_bg.wasm.d.ts",
    "react/react.js",
    "react/react.d.ts",
    "load.js",
    "load.d.ts",
    "README.md",
    "LICENSE-MIT",
    "LICENSE-APACHE"
  ],
  "sideEffects": false
}
JSON

if diff -rq "$STAGE" "$PKG" >/dev/null 2>&1; then
  rm -rf "$STAGE"
else
  rm -rf "$PKG"
  mv "$STAGE" "$PKG"
fi

# What a browser downloads: the module and its JavaScript glue.
total_raw=0
total_gz=0
for file in sync_wasm_bg.wasm sync_wasm.js; do
  raw=$(stat -c %s "$PKG/$file")
  gz=$(gzip -9 -c "$PKG/$file" | wc -c)
  log "$file: $raw bytes, $gz bytes gzipped"
  total_raw=$((total_raw + raw))
  total_gz=$((total_gz + gz))
done
log "built $PKG: $total_raw bytes, $total_gz bytes gzipped in all"
