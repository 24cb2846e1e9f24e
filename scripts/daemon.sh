#!/usr/bin/env bash
# Sets up and runs the pontoon daemon on its embedded defaults (as root):
# installs what is missing, builds, installs the binaries into
# /usr/local/bin and runs `pontoon daemon` in the foreground. Arguments are
# passed to `pontoon daemon`. `pontoon daemon --uninstall` undoes it (see
# the README's "Removing pontoon").
set -euo pipefail
cd "$(dirname "$0")/.."
echo "daemon.sh: checking the packages pontoon needs (scripts/deps.sh)" >&2
./scripts/deps.sh
./scripts/build.sh
echo "daemon.sh: installing /usr/local/bin/pontoon and the CNI plugin as /opt/cni/bin/pontoon and /usr/lib/cni/pontoon" >&2
install -m 0755 bin/pontoon /usr/local/bin/pontoon
# Runtimes differ in where they look for plugins: upstream's in
# /opt/cni/bin, Debian's containerd (CRI) in /usr/lib/cni (docs/runtimes.md).
if [ -f bin/pontoon-cni ]; then
  install -D -m 0755 bin/pontoon-cni /opt/cni/bin/pontoon
  install -D -m 0755 bin/pontoon-cni /usr/lib/cni/pontoon
fi
echo "daemon.sh: starting pontoon daemon $* (Ctrl-C stops it; sandboxes keep their network)" >&2
exec /usr/local/bin/pontoon daemon "$@"
