#!/usr/bin/env bash
# Sets up and runs the pontoon daemon on its embedded defaults (as root):
# installs what is missing, builds, installs the binaries into
# /usr/local/bin and runs `pontoon daemon` in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh
install -m 0755 bin/pontoon /usr/local/bin/pontoon
[ -f bin/pontoon-cni ] && install -D -m 0755 bin/pontoon-cni /opt/cni/bin/pontoon
exec /usr/local/bin/pontoon daemon "$@"
