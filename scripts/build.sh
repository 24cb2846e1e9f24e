#!/usr/bin/env bash
# Builds pontoon and pontoon-cni into ./bin.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
mkdir -p bin
go build -trimpath -o bin/pontoon ./cmd/pontoon
if [ -d cmd/pontoon-cni ] && ls cmd/pontoon-cni/*.go >/dev/null 2>&1; then
  go build -trimpath -o bin/pontoon-cni ./cmd/pontoon-cni
fi
