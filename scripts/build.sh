#!/usr/bin/env bash
# Builds pontoon and pontoon-cni into ./bin.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
mkdir -p bin
# `pontoon version` prints the commit. Go stamps it itself unless told not
# to (-buildvcs=false) or the checkout is a git worktree; say it here too.
rev=$(git describe --always --dirty --abbrev=12 2>/dev/null || true)
ldflags="-X pontoon/internal/api.revision=$rev"
# Static binaries: with cgo (Go's default where a C compiler is installed)
# the net package links libc, and every start of a process pays the
# dynamic loader and libc's thread set-up, ~1 ms for pontoon-cni, which a
# runtime execs for every CNI verb (docs/benchmarks.md). Nothing in pontoon
# needs cgo.
export CGO_ENABLED=0
echo "building bin/pontoon${rev:+ ($rev)}: the first build downloads and compiles the dependencies, about a minute" >&2
go build -trimpath -ldflags "$ldflags" -o bin/pontoon ./cmd/pontoon
if [ -d cmd/pontoon-cni ] && ls cmd/pontoon-cni/*.go >/dev/null 2>&1; then
  echo "building bin/pontoon-cni" >&2
  go build -trimpath -ldflags "$ldflags" -o bin/pontoon-cni ./cmd/pontoon-cni
fi
