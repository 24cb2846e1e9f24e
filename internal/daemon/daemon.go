// Package daemon runs `pontoon daemon`: it opens the store, builds the
// kernel adapters and the engine, reconciles, and serves the API on a unix
// socket until it is told to stop. Stopping never touches sandboxes: their
// links, addresses and firewall state stay, so traffic is not interrupted.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"golang.org/x/sys/unix"

	"pontoon/internal/dns"
	"pontoon/internal/dockerdrv"
	"pontoon/internal/engine"
	"pontoon/internal/firewall"
	"pontoon/internal/ipam"
	"pontoon/internal/link"
	"pontoon/internal/model"
	"pontoon/internal/netns"
	"pontoon/internal/relay"
	"pontoon/internal/store"
)

// Options are the daemon's settings (flags of `pontoon daemon`).
type Options struct {
	Root          string // state directory (bbolt file)
	Socket        string // API socket
	Group         string // group owning the socket (name or GID; "" = root's)
	NetnsDir      string // where sandbox namespaces are pinned
	DefaultSubnet string // subnet of the default network
	Pool          string // comma-separated prefixes for networks created without --subnet
	PoolBits      int
	Pool6         string // the same for IPv6 subnets (networks created with --ipv6)
	Pool6Bits     int

	DNS         string        // comma-separated upstream resolvers ("ip[:port]"); "" = from ResolvConf
	ResolvConf  string        // the host's resolv.conf, read for upstreams
	DNSTimeout  time.Duration // per upstream attempt
	EtcNetnsDir string        // sandboxes' resolv.conf files: DIR/NAME/resolv.conf

	MetricsAddr string // also serve GET /metrics on this TCP address ("": only on the socket)

	Web            string // serve the web page on this TCP address ("": no page; see package web)
	WebAllowRemote bool   // allow a --web address that is not loopback
	WebTrace       bool   // give the page a trace form (predictions only)

	// OVSDB is Open vSwitch's database endpoint for networks of driver
	// ovs ("": that driver says how to start OVS).
	OVSDB string
	// DockerPlugin is the unix socket where Docker's network and IPAM
	// driver "pontoon" is served ("": not served;
	// dockerdrv.DefaultSocket is where dockerd looks).
	DockerPlugin string
	// DockerAPI is Docker's API socket, asked for the containers' IDs
	// and names ("": not asked).
	DockerAPI string

	// Cluster is etcd's endpoints (comma-separated) when this daemon is a
	// node of a cluster ("": a single host); NodeName its name there
	// (default the host name), Underlay the link the other nodes reach it
	// on (required with Cluster), NodeTTL the TTL of its record's lease
	// (0: cluster.DefaultTTL): a node that dies is removed from the
	// others' peers this long after its last keep-alive.
	Cluster  string
	NodeName string
	Underlay string
	NodeTTL  time.Duration
	// EtcdCA, EtcdCert and EtcdKey are PEM files for TLS to etcd (the
	// CA that signed etcd's certificate; this daemon's client
	// certificate and key), as etcdctl's --cacert, --cert, --key.
	EtcdCA, EtcdCert, EtcdKey string

	SelfHeal   bool          // repair drift from the store as soon as the kernel reports it
	HealPeriod time.Duration // the periodic backstop check (0: engine.DefaultHealPeriod)

	// Pprof is a unix socket path for Go's profiling handlers ("" = off;
	// default from the PONTOON_PPROF environment variable, see PprofEnv).
	Pprof string
}

// DefaultOptions are the embedded defaults.
func DefaultOptions() Options {
	return Options{
		Root:          "/var/lib/pontoon",
		Socket:        "/run/pontoon/pontoon.sock",
		NetnsDir:      "/run/pontoon/netns",
		DefaultSubnet: ipam.DefaultSubnet.String(),
		PoolBits:      24,
		Pool6Bits:     64,
		ResolvConf:    dns.DefaultResolvConf,
		DNSTimeout:    dns.DefaultTimeout,
		EtcNetnsDir:   "/etc/netns",
		SelfHeal:      true,
		HealPeriod:    engine.DefaultHealPeriod,
		Pprof:         os.Getenv(PprofEnv),
		DockerAPI:     "/var/run/docker.sock",
	}
}

// Run runs the daemon until ctx is done.
//
// A start that is refused changes nothing on disk: options are checked,
// then every lock (see preflight), and only then are --root, --netns-dir
// and the socket created and taken; if anything fails before the daemon
// listens, what this start created is removed again.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	cfg, err := parseOptions(opts)
	if err != nil {
		return err
	}
	var upstreams []string
	if opts.DNS != "" {
		if upstreams, err = dns.ParseUpstreams(strings.Split(opts.DNS, ",")); err != nil {
			return fmt.Errorf("--dns: %w", err)
		}
	}
	if err := checkWeb(opts); err != nil {
		return err
	}
	gid, err := lookupGroup(opts.Group)
	if err != nil {
		return err
	}
	if err := preflight(opts); err != nil {
		return err
	}
	var u undo
	listening := false
	defer func() {
		if !listening {
			u.run()
		}
	}()

	created, err := mkdirAll(opts.Root, 0o700)
	u.add(removeCreated(created, true))
	if err != nil {
		return fmt.Errorf("create state directory %s: %w", opts.Root, err)
	}
	st, err := store.Open(filepath.Join(opts.Root, stateFile), log)
	if err != nil {
		return err
	}
	defer st.Close()
	nsLock, created, err := lockDir(opts.NetnsDir, 0o755)
	u.add(removeCreated(created, false))
	if err != nil {
		return fmt.Errorf("prepare namespace directory: %w", err)
	}
	defer nsLock.Close()
	if !mountedAt(opts.NetnsDir) {
		u.add(func() { _ = unix.Unmount(opts.NetnsDir, unix.MNT_DETACH) })
	}
	if err := netns.EnsureDir(opts.NetnsDir); err != nil {
		return fmt.Errorf("prepare namespace directory %s: %w", opts.NetnsDir, err)
	}
	lk, err := link.New(log)
	if err != nil {
		return err
	}
	fw, err := firewall.New(log)
	if err != nil {
		return fmt.Errorf("nftables: %w (is the nft command installed? apt-get install nftables)", err)
	}
	cfg.Store, cfg.Link, cfg.Firewall, cfg.Netns, cfg.Log = st, lk, fw, Namespaces{}, log
	cfg.NetnsDir = opts.NetnsDir
	cfg.SetIPForward = true
	resolver, err := dns.New(dns.Options{Upstreams: upstreams, ResolvConf: opts.ResolvConf, Timeout: opts.DNSTimeout, Log: log})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	defer resolver.Close()
	// SIGHUP re-reads the host's resolv.conf (upstreams change with the
	// host's network, e.g. after DHCP), without touching anything else.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := resolver.ReloadUpstreams(); err != nil {
				log.Warn("SIGHUP: re-read upstream resolvers", "err", err)
				continue
			}
			log.Info("SIGHUP: upstream resolvers re-read", "upstreams", resolver.Upstreams())
		}
	}()
	cfg.Resolver = resolver
	rl := relay.New(log)
	defer rl.Close()
	cfg.PortProbe = func(m model.PortMapping) error { return probePorts(m, rl.Holds) }
	cfg.EtcNetnsDir = opts.EtcNetnsDir
	cfg.HealPeriod = opts.HealPeriod
	cfg.Relay = rl
	if opts.Cluster != "" {
		m, cli, err := joinCluster(ctx, opts.Cluster, transport.TLSInfo{TrustedCAFile: opts.EtcdCA, CertFile: opts.EtcdCert, KeyFile: opts.EtcdKey}, opts.NodeName, opts.Underlay, opts.Root, opts.NodeTTL, lk, log)
		if err != nil {
			return err
		}
		defer cli.Close()
		// No Leave on the way out: the sandboxes keep their network when
		// the daemon stops, so the other nodes keep their routes to this
		// one; a restart within the TTL takes the record over (instance
		// token), and a node that stays down drops out after the TTL.
		cfg.Cluster = m
		cfg.Node = m.NodeName()
	} else if cfg.Node = opts.NodeName; cfg.Node == "" {
		cfg.Node, _ = os.Hostname() // "" when unknown: records then name no node
	}
	eng, err := engine.New(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()

	if opts.Pprof != "" {
		pctx, stopPprof := context.WithCancel(context.Background())
		defer stopPprof()
		if err := servePprof(pctx, opts.Pprof, log); err != nil {
			return err
		}
	}
	srv := NewServer(eng, log)
	srv.dns = resolver
	srv.doc = &doctor{eng: eng, link: lk, netnsDir: opts.NetnsDir, dns: resolver}
	m := newMetrics(ctx, eng, resolver)
	srv.metrics = m.handler()
	if opts.MetricsAddr != "" {
		ml, err := net.Listen("tcp", opts.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", opts.MetricsAddr, err)
		}
		ms := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ms.Serve(ml) }()
		defer ms.Close()
		log.Info("metrics served over TCP", "addr", ml.Addr().String())
	}
	webURL, stopWeb, err := startWeb(opts, srv, log)
	if err != nil {
		return err
	}
	defer stopWeb()
	created, err = mkdirAll(filepath.Dir(opts.Socket), 0o755)
	u.add(removeCreated(created, false))
	if err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	l, err := Listen(opts.Socket, 0o660, gid)
	if err != nil {
		return err
	}
	listening = true
	defer os.Remove(opts.Socket)
	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, l) }()

	start := time.Now()
	if err := eng.Reconcile(ctx); err != nil {
		// Serve anyway: what could be reconciled is, and the errors say
		// what could not. A daemon that refuses to start helps nobody.
		log.Error("start-up reconciliation had errors", "err", err)
	}
	if err := eng.StartCluster(ctx); err != nil {
		log.Error("cluster: make this host's part of the cluster's networks", "err", err)
	}
	if opts.SelfHeal {
		if err := eng.StartHealing(ctx); err != nil {
			log.Warn("self-healing is off: cannot watch the kernel for drift; `pontoon doctor` still reports it", "err", err)
		}
	}
	if opts.DockerPlugin != "" {
		dd, err := dockerdrv.New(eng, filepath.Join(opts.Root, "docker-endpoints.json"), opts.DockerAPI, log)
		if err != nil {
			return err
		}
		if err := dd.Serve(serveCtx, opts.DockerPlugin); err != nil {
			return err
		}
		log.Info("Docker network and IPAM driver served", "socket", opts.DockerPlugin, "use", "docker network create -d pontoon --ipam-driver pontoon --subnet …")
	}
	srv.SetReady(true)
	ups := resolver.Upstreams()
	log.Info("pontoon daemon ready", "socket", opts.Socket, "root", opts.Root, "netns_dir", opts.NetnsDir,
		"upstream_resolvers", strings.Join(ups, ","), "reconcile_took", time.Since(start).String(), webAttr(webURL))
	if len(ups) == 0 {
		log.Warn("no upstream resolvers: sandboxes resolve only pontoon's names; give --dns, or fix --resolv-conf and send SIGHUP", "resolv_conf", opts.ResolvConf)
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("api server stopped: %w", err)
	}
	log.Info("stopping: sandboxes keep their network")
	stopServe()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("api shutdown", "err", err)
	}
	return nil
}

func parseOptions(o Options) (engine.Config, error) {
	var cfg engine.Config
	cfg.OVSDB = o.OVSDB
	if o.DefaultSubnet != "" {
		p, err := netip.ParsePrefix(o.DefaultSubnet)
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return cfg, fmt.Errorf("--default-subnet %q is not an IPv4 CIDR like 10.88.0.0/16", o.DefaultSubnet)
		}
		cfg.DefaultSubnet = p
	}
	var err error
	if cfg.Pool, cfg.PoolBits, err = parsePool("--pool", o.Pool, o.PoolBits, false); err != nil {
		return cfg, err
	}
	if cfg.Pool6, cfg.Pool6Bits, err = parsePool("--ipv6-pool", o.Pool6, o.Pool6Bits, true); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parsePool parses a comma-separated pool of one family (--pool,
// --ipv6-pool) and the length of the subnets picked from it (its -size
// flag; 0: the engine's default).
func parsePool(flag, list string, bits int, v6 bool) ([]netip.Prefix, int, error) {
	fam, example, lo, hi := "IPv4", "10.89.0.0/16", 8, 30
	if v6 {
		fam, example, lo, hi = "IPv6", "fd00:1::/48", 16, 124
	}
	var pool []netip.Prefix
	if list != "" {
		for _, s := range strings.Split(list, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil || p.Addr().Is6() != v6 || p.Addr().Is4In6() || p.Masked() != p {
				return nil, 0, fmt.Errorf("%s entry %q is not an %s CIDR like %s", flag, s, fam, example)
			}
			pool = append(pool, p)
		}
	}
	if bits != 0 && (bits < lo || bits > hi) {
		return nil, 0, fmt.Errorf("%s-size /%d is out of range: use %d to %d", flag, bits, lo, hi)
	}
	for _, p := range pool {
		if bits != 0 && p.Bits() > bits {
			return nil, 0, fmt.Errorf("%s entry %s is smaller than %s-size /%d", flag, p, flag, bits)
		}
	}
	return pool, bits, nil
}

// Namespaces adapts package netns to engine.Namespaces.
type Namespaces struct{}

func (Namespaces) Create(path string) error          { return netns.Create(path) }
func (Namespaces) Delete(path string) error          { return netns.Delete(path) }
func (Namespaces) IsPinned(path string) bool         { return netns.IsPinned(path) }
func (Namespaces) Pins(dir string) ([]string, error) { return netns.Pins(dir) }

// Ino identifies the namespace at path (device and inode of its nsfs file).
func (Namespaces) Ino(path string) (uint64, error) { return netns.Ino(path) }
