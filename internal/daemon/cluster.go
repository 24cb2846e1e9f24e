package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"pontoon/internal/cluster"
	"pontoon/internal/firewall"
	"pontoon/internal/link"
)

// ClusterPrefix is where a pontoon cluster keeps its records in etcd.
const ClusterPrefix = "/pontoon-cluster/"

// clusterMember is the daemon's membership, as the engine wants it: the
// cluster's records (through *cluster.Cluster, which outlives any one
// membership), this node's name and underlay, and its health. keep renews
// the membership when it is lost (etcd unreachable for longer than the
// lease's TTL, or the record deleted) and probes etcd, so that Health can
// say what is wrong while the data plane stays as it is.
type clusterMember struct {
	*cluster.Cluster
	node cluster.Node
	ttl  time.Duration
	dev  string
	addr netip.Addr
	log  *slog.Logger

	mu      sync.Mutex
	member  *cluster.Member // nil while lost
	lostErr error           // why the membership ended, until renewed
	etcdErr error           // the last probe's failure
	since   time.Time       // when the current trouble began
}

func (m *clusterMember) NodeName() string               { return m.node.Name }
func (m *clusterMember) Underlay() (string, netip.Addr) { return m.dev, m.addr }

// VTEPMAC is the VTEP MAC of this node's record (written at the first
// join, the same on every join again).
func (m *clusterMember) VTEPMAC() net.HardwareAddr {
	mac, _ := net.ParseMAC(m.node.VTEPMAC) // Join checked it
	return mac
}

// Health is "" while the node is a member and etcd answers; otherwise what
// is wrong, since when, and that the data plane is kept.
func (m *clusterMember) Health() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var why []string
	if m.etcdErr != nil {
		why = append(why, "etcd unreachable: "+m.etcdErr.Error())
	}
	if m.lostErr != nil {
		why = append(why, "membership lost, rejoining: "+m.lostErr.Error())
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf("degraded since %s (%s ago): %s; the overlays' routes, neighbours and FDB entries stay as they were until etcd is back",
		m.since.Format(time.RFC3339), time.Since(m.since).Round(time.Second), strings.Join(why, "; "))
}

// trouble records a problem (err non-nil) or its end (nil) in *slot.
func (m *clusterMember) trouble(slot *error, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.etcdErr != nil || m.lostErr != nil
	*slot = err
	now := m.etcdErr != nil || m.lostErr != nil
	switch {
	case now && !was:
		m.since = time.Now()
		m.log.Warn("cluster: degraded; the data plane stays as it is", "node", m.node.Name, "err", err)
	case !now && was:
		m.log.Info("cluster: healthy again", "node", m.node.Name, "degraded_for", time.Since(m.since).Round(time.Millisecond).String())
	}
}

// Leave ends the membership at once (on shutdown): the record goes now,
// not after the TTL.
func (m *clusterMember) Leave(ctx context.Context) error {
	m.mu.Lock()
	mem := m.member
	m.member = nil
	m.mu.Unlock()
	if mem == nil {
		return nil
	}
	return mem.Leave(ctx)
}

// probeEvery is how often keep asks etcd whether it answers (for Health,
// and to join again once it does: peers follow a watch), at most a third
// of the lease's TTL.
func (m *clusterMember) probeEvery() time.Duration { return min(2*time.Second, m.ttl/3) }

// keep renews the membership when it is lost and probes etcd, until ctx
// ends. A membership lost while etcd was away is renewed at the first
// probe that etcd answers: within the old lease's TTL, which etcd
// extends when it comes back, so the join takes the record over (the
// instance token) and the other nodes never see this one go.
func (m *clusterMember) keep(ctx context.Context) {
	probe := time.NewTicker(m.probeEvery())
	defer probe.Stop()
	for {
		m.mu.Lock()
		mem := m.member
		m.mu.Unlock()
		var lost <-chan struct{}
		if mem != nil {
			lost = mem.Lost()
		}
		select {
		case <-ctx.Done():
			return
		case <-lost:
			m.trouble(&m.lostErr, mem.Err())
			m.mu.Lock()
			if m.member == mem {
				m.member = nil
			}
			m.mu.Unlock()
			m.rejoin(ctx) // at once when etcd answers; else at a probe
		case <-probe.C:
			pctx, cancel := context.WithTimeout(ctx, m.probeEvery())
			err := m.Cluster.Ping(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			m.trouble(&m.etcdErr, err)
			if mem == nil && err == nil {
				m.rejoin(ctx)
			}
		}
	}
}

// rejoin joins again after a lost membership.
func (m *clusterMember) rejoin(ctx context.Context) {
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	nm, err := m.Cluster.Join(jctx, m.node, m.ttl)
	cancel()
	if err != nil {
		m.log.Warn("cluster: join again", "node", m.node.Name, "err", err)
		return
	}
	m.mu.Lock()
	m.member = nm
	m.mu.Unlock()
	m.trouble(&m.lostErr, nil)
	m.log.Info("cluster: joined again", "node", m.node.Name)
}

// joinCluster connects to etcd (endpoints comma-separated: http://host:2379
// or unix:///path), finds the underlay link's address and joins as node
// with a lease of ttl (0: cluster.DefaultTTL). The instance token kept
// under root lets a restart within the lease's TTL take this node's record
// over. The membership is kept (renewed, probed) until ctx ends.
func joinCluster(ctx context.Context, endpoints string, tlsFiles transport.TLSInfo, node, underlay, root string, ttl time.Duration, lk link.Interface, log *slog.Logger) (*clusterMember, *clientv3.Client, error) {
	if node == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, nil, fmt.Errorf("--node-name: %w", err)
		}
		node = h
	}
	if underlay == "" {
		return nil, nil, errors.New("--cluster needs --underlay: the link towards the other nodes (its address is this node's tunnel endpoint)")
	}
	// The underlay goes into the firewall's sets (host-gw's remote
	// members): a name nft cannot take would fail every firewall sync.
	if err := firewall.ValidIfName(underlay); err != nil {
		return nil, nil, fmt.Errorf("--underlay: %w: rename the link (ip link set NAME name NEWNAME) or give another", err)
	}
	addr, err := underlayAddr(lk, underlay)
	if err != nil {
		return nil, nil, err
	}
	eps, err := etcdEndpoints(endpoints, tlsFiles.CertFile != "" || tlsFiles.TrustedCAFile != "")
	if err != nil {
		return nil, nil, err
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if !tlsFiles.Empty() || tlsFiles.TrustedCAFile != "" {
		if (tlsFiles.CertFile == "") != (tlsFiles.KeyFile == "") {
			return nil, nil, errors.New("--etcd-cert and --etcd-key go together: give both (a client certificate and its key), or neither")
		}
		if cfg.TLS, err = tlsFiles.ClientConfig(); err != nil {
			return nil, nil, fmt.Errorf("etcd TLS (--etcd-cacert, --etcd-cert, --etcd-key): %w", err)
		}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--cluster %s: %w", endpoints, err)
	}
	token, err := instanceToken(root)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	// The VTEP MAC goes into the record: the other nodes program it, and
	// this node's VXLAN devices carry it (clusterMember.VTEPMAC).
	n := cluster.Node{Name: node, Underlay: addr, VTEPMAC: link.VTEPMAC(addr).String(), Instance: token}
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	mem, err := cluster.Join(jctx, cli, ClusterPrefix, n, ttl)
	if err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("join the cluster at %s as %s: %w", endpoints, node, err)
	}
	log.Info("joined the cluster", "etcd", endpoints, "node", node, "underlay", underlay, "address", addr.String(), "vtep_mac", mem.Node().VTEPMAC, "ttl", mem.TTL().String())
	m := &clusterMember{Cluster: mem.Cluster, node: mem.Node(), ttl: mem.TTL(), dev: underlay, addr: addr, log: log, member: mem}
	go m.keep(ctx)
	return m, cli, nil
}

// etcdEndpoints turns --cluster's comma-separated endpoints into clientv3's:
// etcd://host:port becomes http:// (https:// with TLS), http(s)://host:port
// and unix:///path stay, a bare host:port is taken as etcd://.
func etcdEndpoints(list string, tls bool) ([]string, error) {
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	var out []string
	for _, ep := range strings.Split(list, ",") {
		ep = strings.TrimSpace(ep)
		switch {
		case ep == "":
			continue
		case strings.HasPrefix(ep, "etcd://"):
			ep = scheme + strings.TrimPrefix(ep, "etcd://")
		case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "https://"), strings.HasPrefix(ep, "unix://"), strings.HasPrefix(ep, "unixs://"):
		case strings.Contains(ep, "://"):
			return nil, fmt.Errorf("--cluster endpoint %q: unknown scheme; give etcd://host:port, http(s)://host:port or unix:///path", ep)
		default:
			ep = scheme + ep
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--cluster %q names no etcd endpoint: give etcd://host:2379[,etcd://host2:2379…]", list)
	}
	return out, nil
}

// underlayAddr is the first IPv4 address of link dev (the VXLAN tunnels'
// endpoint: IPv6 underlays are not supported yet; the overlays carry
// IPv6 inside).
func underlayAddr(lk link.Interface, dev string) (netip.Addr, error) {
	nets, err := lk.HostNets()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, h := range nets {
		if h.Link == dev && h.Kind == link.HostAddress && h.Prefix.Addr().Is4() {
			return h.Prefix.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("--underlay %s has no IPv4 address: overlay networks (IPv6 ones too) run over an IPv4 underlay, an IPv6-only one is not supported yet; give the link the other nodes reach this one on by IPv4", dev)
}

// instanceToken is this daemon's token across restarts, made at the first
// start under root.
func instanceToken(root string) (string, error) {
	p := filepath.Join(root, "cluster-instance")
	if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	t := hex.EncodeToString(b)
	if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cluster instance token: %w", err)
	}
	return t, nil
}
