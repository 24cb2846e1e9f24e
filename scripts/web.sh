#!/usr/bin/env bash
# Rebuilds the web page of `pontoon daemon --web` from web/ into
# internal/web/dist, which is committed and embedded into the binary
# (go:embed): building pontoon needs no Node.js, only changing the page does.
#
#   scripts/web.sh          type-check web/src and rebuild internal/web/dist
#   scripts/web.sh --check  rebuild into a temporary folder and fail if the
#                           committed bundle differs (a source change that
#                           was not rebuilt); scripts/test.sh runs it
#
# Needs Node.js 18 or newer and npm; the toolchain (esbuild, typescript) is
# pinned in web/package-lock.json and installed into web/node_modules.
set -euo pipefail
cd "$(dirname "$0")/../web"
if ! command -v npm >/dev/null 2>&1; then
  echo "scripts/web.sh needs Node.js and npm (apt-get install nodejs npm)" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/esbuild ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error; then
    echo "scripts/web.sh: npm ci failed (is the npm registry reachable?): the toolchain is not installed" >&2
    exit 3
  fi
fi
npx --no-install tsc --noEmit -p .
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  node build.mjs "$tmp/dist"
  if ! diff -r "$tmp/dist" ../internal/web/dist >/dev/null; then
    diff -ru ../internal/web/dist "$tmp/dist" | head -40 >&2 || true
    echo "internal/web/dist is not what web/src builds: run scripts/web.sh and commit the result" >&2
    exit 1
  fi
  echo "internal/web/dist matches web/src"
  exit 0
fi
node build.mjs
echo "built internal/web/dist:" && (cd ../internal/web/dist && find . -type f | sort | xargs ls -l | awk '{print "  " $5 "\t" $9}')
