#!/usr/bin/env bash
# Runs pontoon's whole test suite (as root): unit tests, kernel tests in
# throwaway network namespaces, and end-to-end tests of the real binaries.
# Nothing is changed in the machine's own network namespace or /etc.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
export PATH=$PATH:/usr/local/go/bin
echo "== go vet"
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== web page bundle"
if command -v npm >/dev/null 2>&1; then
  # Exit 3: the toolchain could not be installed (no registry): say so and
  # go on; the Go tests use the committed bundle either way.
  rc=0
  ./scripts/web.sh --check || rc=$?
  if [ "$rc" = 3 ]; then
    echo "warning: could not install the web toolchain; internal/web/dist was not checked against web/src" >&2
  elif [ "$rc" != 0 ]; then
    exit "$rc"
  fi
else
  echo "npm is not installed: not checking that internal/web/dist is built from web/src"
fi
echo "== go test"
go test -count=1 -timeout 45m "$@" ./...
# The engine and the store under parallel load (32 parallel attaches over
# bbolt's group commit, 32 concurrent writers) with the race detector.
echo "== go test -race (engine, store, group, cluster)"
go test -count=1 -race -timeout 10m "$@" ./internal/engine ./internal/store ./internal/group ./internal/cluster
