package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"pontoon/internal/cluster"
	"pontoon/internal/link"
)

// ClusterPrefix is where a pontoon cluster keeps its records in etcd.
const ClusterPrefix = "/pontoon-cluster/"

// clusterMember is the daemon's membership, as the engine wants it.
type clusterMember struct {
	*cluster.Member
	dev  string
	addr netip.Addr
}

func (m *clusterMember) NodeName() string               { return m.Node().Name }
func (m *clusterMember) Underlay() (string, netip.Addr) { return m.dev, m.addr }

// joinCluster connects to etcd (endpoints comma-separated: http://host:2379
// or unix:///path), finds the underlay link's address and joins as node.
// The instance token kept under root lets a restart within the lease's
// TTL take this node's record over.
func joinCluster(ctx context.Context, endpoints, node, underlay, root string, lk link.Interface, log *slog.Logger) (*clusterMember, *clientv3.Client, error) {
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
	addr, err := underlayAddr(lk, underlay)
	if err != nil {
		return nil, nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, nil, fmt.Errorf("--cluster %s: %w", endpoints, err)
	}
	token, err := instanceToken(root)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	m, err := cluster.Join(jctx, cli, ClusterPrefix, cluster.Node{Name: node, Underlay: addr, Instance: token}, 0)
	if err != nil {
		cli.Close()
		return nil, nil, fmt.Errorf("join the cluster at %s as %s: %w", endpoints, node, err)
	}
	log.Info("joined the cluster", "etcd", endpoints, "node", node, "underlay", underlay, "address", addr.String())
	return &clusterMember{Member: m, dev: underlay, addr: addr}, cli, nil
}

// underlayAddr is the first IPv4 address of link dev (the VXLAN tunnels'
// endpoint: IPv6 underlays are not supported yet).
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
	return netip.Addr{}, fmt.Errorf("--underlay %s has no IPv4 address: give the link the other nodes reach this one on", dev)
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
