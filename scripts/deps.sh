#!/usr/bin/env bash
# Installs what pontoon needs on a Debian machine (run as root). Only
# packages that are missing are installed, so a second run is quick.
set -euo pipefail

pkgs=(
  nftables          # nft: pontoon's firewall table
  iptables          # iptables-nft: Docker-style firewalls pontoon coexists with
  iproute2          # ip, for tests and for people
  iputils-ping      # ping, for tests
  tcpdump           # pontoon capture runs it; its test (test/e2e/capture_test.go)
  containernetworking-plugins  # the CNI reference plugins (bridge, host-local, …) for tests and benchmarks
  iperf3            # throughput benchmarks
  hyperfine         # start-up benchmark of the binaries (test/e2e BenchmarkStart)
  busybox-static    # nslookup and small tools inside sandboxes in tests; static, so /bin/busybox alone is the runtime tests' image (replaces busybox)
  podman            # the runtime tests: Podman 4 on its CNI backend (test/e2e/podman_test.go)
  runc              # the OCI runtime Podman and containerd run containers with in those tests
  containerd        # the runtime tests: containerd and ctr run --cni (test/e2e/containerd_test.go)
  docker.io         # the runtime tests: dockerd 20.10 and its client /usr/bin/docker, run in the tests' own namespaces and directories (test/e2e/docker_test.go); the tests never use the machine's docker.service (which the package enables and, under systemd, starts)
  openvswitch-switch # ovsdb-server, ovs-vswitchd: internal/ovs and its tests (userspace datapath, so no openvswitch kernel module)
  etcd-server       # etcd 3.4 for the etcd state store's tests (internal/store/etcdtest): each test starts its own server on unix sockets in a network namespace of its own; the tests never use the machine's etcd.service (which the package enables and, under systemd, starts)
  util-linux        # nsenter, unshare
  procps
  ca-certificates
  chromium          # a real browser for the web page's tests (test/e2e/web_test.go, driven by chromedp)
  fonts-dejavu-core # text in that browser's screenshots
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH=$PATH:/usr/local/go/bin
  else
    echo "Go is not installed: install Go 1.26 or newer (see go.mod)" >&2
    exit 1
  fi
fi
