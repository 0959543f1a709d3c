#!/usr/bin/env bash
# Packs the built package (sync-wasm/pkg, from scripts/build.sh) as `npm publish` would and
# checks the tarball: publint, and @arethetypeswrong/cli for every entry point under node10,
# node16 and bundler resolution. Usage: pack.sh OUT.tgz
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=../../scripts/ensure.sh
source "$ROOT/scripts/ensure.sh"
ensure_npm_deps "$HERE/tools"

out=${1:?usage: pack.sh OUT.tgz}
mkdir -p "$(dirname "$out")"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
(cd "$HERE/pkg" && npm pack --silent --pack-destination "$stage" >/dev/null)
tarball=$(echo "$stage"/*.tgz)
# Replaced only when the contents changed, so installs that compare it can skip.
if ! cmp -s "$tarball" "$out"; then
  mv "$tarball" "$out"
fi
log "packed $out: $(stat -c %s "$out") bytes"

log "sync-wasm: publint and arethetypeswrong on the tarball"
"$HERE/tools/node_modules/.bin/publint" --strict "$out"
# The package is ESM only: CommonJS `require` gets a clear error and should use import().
# The .wasm entry point is a file for bundlers and `init()`, not a module with types.
"$HERE/tools/node_modules/.bin/attw" --ignore-rules cjs-resolves-to-esm \
  --exclude-entrypoints sync_wasm_bg.wasm --format table-flipped "$out"
