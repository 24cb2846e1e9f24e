package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"pontoon/internal/cluster"
	"pontoon/internal/daemon"
)

func newDaemonCmd() *cobra.Command {
	o := daemon.DefaultOptions()
	var (
		level     string
		uninstall bool
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run the pontoon daemon (the single writer of network state)",
		Long: `Run the pontoon daemon. It keeps its state in a bbolt file under --root,
serves the API on --socket, pins sandbox namespaces under --netns-dir, and
reconciles the kernel with its state at start-up. SIGTERM or SIGINT stop it
without interrupting sandbox traffic. Networks survive a reboot; sandboxes
and their addresses, like the namespaces they describe, do not.

The socket has mode 0660: root, and with --group the members of that group
(as Docker's docker group), may use the API. Most commands then work
without root; exec and run still need it to enter a namespace.

Several daemons can run side by side, each in its own network namespace,
when each has its own --root, --socket and --netns-dir. Each of the three
is locked while a daemon runs: a second daemon on any of them is refused,
naming the first one's PID, and changes nothing.

--uninstall, with the daemon stopped and the same --root, --socket,
--netns-dir and --etc-netns-dir, removes what pontoon made on the host:
every sandbox (as sandbox rm does), every network's bridge (not one adopted
with --bridge), links and pins with pontoon's names, the nftables tables
inet pontoon and bridge pontoon, its DOCKER-USER rules, the bind mount of
--netns-dir, the state files and the socket. It leaves ip_forward, the
binaries and the CNI config, which the README's "Removing pontoon" lists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
			o.Socket = cmd.Flag("socket").Value.String()
			if uninstall {
				return runUninstall(cmd, o, log)
			}
			return daemon.Run(cmd.Context(), o, log)
		},
	}
	cmd.Flags().BoolVar(&uninstall, "uninstall", false, "remove everything pontoon made on this host (sandboxes, bridges, firewall tables, pins, state) and exit; the daemon must be stopped")
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", o.Root, "state directory")
	f.StringVar(&o.Group, "group", "", "group (name or GID) given the API socket, so that its members may use the CLI without root (default: root's)")
	f.StringVar(&o.NetnsDir, "netns-dir", o.NetnsDir, "directory where sandbox namespaces are pinned")
	f.StringVar(&o.DefaultSubnet, "default-subnet", o.DefaultSubnet, "subnet of the default network (another is picked if it overlaps the host's)")
	f.StringVar(&o.Pool, "pool", o.Pool, "comma-separated prefixes that subnets of networks created without --subnet come from (default 10.89.0.0/16 … 10.127.0.0/16 as /24s, skipping 10.96.0.0/12, Kubernetes' service range)")
	f.IntVar(&o.PoolBits, "pool-size", o.PoolBits, "prefix length of subnets picked from the pool")
	f.StringVar(&o.Pool6, "ipv6-pool", o.Pool6, "comma-separated IPv6 prefixes that subnets of networks created with --ipv6 (and no IPv6 --subnet) come from (default fd2b:225b:c0de::/48, a ULA prefix)")
	f.IntVar(&o.Pool6Bits, "ipv6-pool-size", o.Pool6Bits, "prefix length of IPv6 subnets picked from the IPv6 pool")
	f.StringVar(&o.DockerPlugin, "docker-plugin", "", "serve the Docker network and IPAM driver \"pontoon\" on this unix socket: /run/docker/plugins/pontoon.sock is where dockerd looks (docker network create -d pontoon --ipam-driver pontoon)")
	f.StringVar(&o.DockerAPI, "docker-api", o.DockerAPI, "Docker's API socket, asked for the ID and name of each container the Docker driver joins (\"\": not asked)")
	f.StringVar(&o.Cluster, "cluster", "", "etcd endpoints (comma-separated etcd://host:2379, http(s)://host:2379 or unix:///path) of the cluster this daemon is a node of; overlay networks span its nodes")
	f.StringVar(&o.EtcdCA, "etcd-cacert", "", "with --cluster: PEM file of the CA that signed etcd's certificate (TLS to etcd)")
	f.StringVar(&o.EtcdCert, "etcd-cert", "", "with --cluster: PEM file of this daemon's client certificate for etcd (with --etcd-key)")
	f.StringVar(&o.EtcdKey, "etcd-key", "", "with --cluster: PEM file of the key of --etcd-cert")
	f.StringVar(&o.NodeName, "node-name", "", "this node's name in the cluster (default the host name)")
	f.DurationVar(&o.NodeTTL, "node-ttl", cluster.DefaultTTL, "with --cluster: the TTL of this node's lease in etcd; when the daemon dies, the other nodes drop its peers this long after (whole seconds)")
	f.StringVar(&o.Underlay, "underlay", "", "with --cluster: the link the other nodes reach this one on (its IPv4 address is the VXLAN tunnels' endpoint)")
	f.StringVar(&o.OVSDB, "ovsdb", "", "Open vSwitch's database, for networks of driver ovs: unix:PATH or tcp:IP:PORT (Debian's openvswitch-switch: unix:/run/openvswitch/db.sock)")
	f.StringVar(&o.DNS, "dns", "", "upstream resolvers for names outside pontoon's, comma-separated ip[:port] (default: from --resolv-conf)")
	f.StringVar(&o.ResolvConf, "resolv-conf", o.ResolvConf, "the host's resolv.conf, read for upstream resolvers (a 127.0.0.53 stub is followed to systemd-resolved's upstreams)")
	f.DurationVar(&o.DNSTimeout, "dns-timeout", o.DNSTimeout, "time allowed to one upstream resolver before the next is tried")
	f.StringVar(&o.EtcNetnsDir, "etc-netns-dir", o.EtcNetnsDir, "where sandboxes' resolv.conf files are written (DIR/NAME/resolv.conf, where 'ip netns exec' looks)")
	f.StringVar(&o.MetricsAddr, "metrics-addr", "", "also serve Prometheus metrics (GET /metrics) on this TCP address, e.g. 127.0.0.1:9381; they are always on the API socket")
	f.StringVar(&o.Web, "web", "", "serve a live web page of the host's topology on this address, e.g. 127.0.0.1:9380 (loopback only, unless --web-allow-remote); the ready log line prints its URL with the token it needs")
	f.BoolVar(&o.WebAllowRemote, "web-allow-remote", false, "allow a --web address that is not loopback (the page is plain HTTP: prefer an SSH tunnel)")
	f.BoolVar(&o.WebTrace, "web-trace", false, "give the web page a form that traces a packet, as pontoon trace --predict does (it sends no probe)")
	f.BoolVar(&o.SelfHeal, "self-heal", o.SelfHeal, "repair drift (a deleted bridge or veth, a removed address, route or rule, a flushed firewall, ip_forward off) as soon as the kernel reports it, and release sandboxes whose adopted namespace died; with --self-heal=false drift is only reported by doctor")
	f.DurationVar(&o.HealPeriod, "heal-period", o.HealPeriod, "how often self-healing also checks everything without an event (a backstop; every 10th check also looks inside every adopted sandbox, whose namespace pontoon does not watch)")
	f.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func runUninstall(cmd *cobra.Command, o daemon.Options, log *slog.Logger) error {
	done, err := daemon.Uninstall(cmd.Context(), o, log)
	if done != nil {
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "removed %d sandbox(es), %d network(s), %d leftover link(s), %d leftover pin(s), pontoon's nftables tables\n",
			done.Sandboxes, done.Networks, done.Links, done.Pins)
		for _, p := range done.Paths {
			fmt.Fprintf(w, "removed %s\n", p)
		}
	}
	return err
}
